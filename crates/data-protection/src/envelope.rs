//! Envelope encryption of a case's personal data under its own data key.
//!
//! Every case gets a random 256-bit data key at opening ([`CaseKey::generate`]). The
//! case's personal data is sealed under it ([`CaseKey::encrypt`]: `0x02 || nonce (12)
//! || AES-GCM ciphertext and tag`, the row id as associated data). The data key itself
//! is stored only wrapped by the master secrets ([`Keys::wrap_case_key`]: an ordinary
//! master-key ciphertext, bound to the case id, so `reactivation keys rotate` re-wraps
//! it like any other sealed value without touching the data it protects).
//!
//! The case's material has data keys of its own, one per kind ([`MaterialKind`]:
//! evidence files; explanations and the appeal statement), because each kind has its
//! own retention period. They are made with the first material of the kind, sealed
//! the same way ([`CaseKey::encrypt_bytes`], the material row's id as associated
//! data) and wrapped by the master secrets bound to an id derived from the case id
//! and the kind ([`Keys::wrap_material_key`]), so one kind's wrapped key cannot be
//! swapped in for another's or for the identity key.
//!
//! Destroying a wrapped key (retention) makes every ciphertext under it unreadable
//! in the live database and in every copy that does not also hold the wrapped key:
//! crypto-shredding. (A backup taken before retention holds the wrapped key too; it
//! becomes unreadable once the master secret that wrapped the key is retired after
//! `reactivation keys rotate`.)
//!
//! Must not: log or print a data key or a plaintext.

use aes_gcm::{
    Aes256Gcm, Key, Nonce,
    aead::{Aead, KeyInit, OsRng, Payload, rand_core::RngCore},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{Keys, ProtectionError};

/// The first byte of a ciphertext sealed under a case's data key.
pub const CASE_KEY_FORMAT: u8 = 2;
/// What a wrapped data key's plaintext starts with (so a wrapped key cannot be
/// mistaken for, or swapped with, another sealed value of the same case).
const WRAP_LABEL: &str = "case-data-key/v1:";
/// What a wrapped material key's plaintext starts with (then the kind and `:`).
const MATERIAL_WRAP_LABEL: &str = "case-material-key/v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// One case's data key (256 bits). `Debug` never shows it.
#[derive(Clone)]
pub struct CaseKey(Key<Aes256Gcm>);

impl std::fmt::Debug for CaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaseKey(..)")
    }
}

impl CaseKey {
    /// A fresh random data key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes.into())
    }

    /// Whether `sealed` is in the data-key format (judged by its first byte; a
    /// master-key ciphertext starts with 0x01, a legacy one with a random nonce).
    pub fn is_sealed_under_case_key(sealed: &[u8]) -> bool {
        sealed.len() >= 1 + NONCE_LEN + TAG_LEN && sealed[0] == CASE_KEY_FORMAT
    }

    /// Seals `plaintext` bound to `row_id` under this data key.
    pub fn encrypt(&self, plaintext: &str, row_id: &uuid::Uuid) -> Vec<u8> {
        self.encrypt_bytes(plaintext.as_bytes(), row_id)
    }

    /// Seals any bytes (an evidence file, a JSON document) bound to `row_id` under
    /// this data key: `0x02 || nonce (12) || ciphertext || tag (16)`, so the sealed
    /// form is [`SEALED_OVERHEAD`] bytes longer than the plaintext.
    pub fn encrypt_bytes(&self, plaintext: &[u8], row_id: &uuid::Uuid) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = Aes256Gcm::new(&self.0)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: row_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of less than 64 GiB cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(CASE_KEY_FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`CaseKey::encrypt`] sealed for the same `row_id`.
    pub fn decrypt(&self, sealed: &[u8], row_id: &uuid::Uuid) -> Result<String, ProtectionError> {
        String::from_utf8(self.decrypt_bytes(sealed, row_id)?)
            .map_err(|_| ProtectionError::Undecryptable)
    }

    /// Opens what [`CaseKey::encrypt_bytes`] sealed for the same `row_id`. Fails on
    /// another row's ciphertext, another key's, or any changed byte.
    pub fn decrypt_bytes(
        &self,
        sealed: &[u8],
        row_id: &uuid::Uuid,
    ) -> Result<Vec<u8>, ProtectionError> {
        if !Self::is_sealed_under_case_key(sealed) {
            return Err(ProtectionError::Undecryptable);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        Aes256Gcm::new(&self.0)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: row_id.as_bytes(),
                },
            )
            .map_err(|_| ProtectionError::Undecryptable)
    }
}

/// How many bytes sealing under a data key adds: the format byte, the nonce and the tag.
pub const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// The kinds of a case's material with a data key of their own (each has its own
/// retention period, so each is shredded on its own schedule). Appeal statements
/// count as explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaterialKind {
    /// Evidence files.
    Evidence,
    /// Explanations (statement and counterparties) and the appeal statement.
    Explanations,
}

impl MaterialKind {
    /// Both kinds.
    pub const ALL: [Self; 2] = [Self::Evidence, Self::Explanations];

    /// The name stored in `case_material_keys.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evidence => "evidence",
            Self::Explanations => "explanations",
        }
    }

    /// The id a wrapped material key of `case_id` is bound to (its associated data,
    /// stored as `case_material_keys.wrap_id`): derived from the case id and the
    /// kind, so a wrapped evidence key opens neither as the case's explanations key
    /// nor as its identity data key (bound to the case id itself).
    pub fn wrap_id(self, case_id: &uuid::Uuid) -> uuid::Uuid {
        derived_id(case_id, &format!("material-key/{}", self.as_str()))
    }
}

/// A UUID derived from `base` and `label` (SHA-256, truncated, marked as a version 8
/// UUID): the associated data of a value that belongs to a case but is not a row of
/// its own (a material key, the appeal statement).
pub fn derived_id(base: &uuid::Uuid, label: &str) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"reactivation/derived-id/v1:");
    hash.update(base.as_bytes());
    hash.update(b":");
    hash.update(label.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes)
}

impl Keys {
    /// `key` wrapped for `case_id` under the current master secret: what the
    /// database stores (`case_data_keys.wrapped_key`).
    pub fn wrap_case_key(&self, key: &CaseKey, case_id: &uuid::Uuid) -> Vec<u8> {
        let text = format!("{WRAP_LABEL}{}", URL_SAFE_NO_PAD.encode(key.0.as_slice()));
        self.encrypt(&text, case_id)
    }

    /// The data key of `case_id` from its wrapped form, under any configured master
    /// secret.
    pub fn unwrap_case_key(
        &self,
        wrapped: &[u8],
        case_id: &uuid::Uuid,
    ) -> Result<CaseKey, ProtectionError> {
        let text = self.decrypt(wrapped, case_id)?;
        let bytes = text
            .strip_prefix(WRAP_LABEL)
            .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
            .filter(|b| b.len() == 32)
            .ok_or(ProtectionError::Undecryptable)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(CaseKey(key.into()))
    }

    /// A material key of `case_id` wrapped under the current master secret: what
    /// `case_material_keys.wrapped_key` stores. Bound to [`MaterialKind::wrap_id`]
    /// and labelled with the kind, so it cannot stand in for another kind's key or
    /// the identity data key.
    pub fn wrap_material_key(
        &self,
        key: &CaseKey,
        case_id: &uuid::Uuid,
        kind: MaterialKind,
    ) -> Vec<u8> {
        let text = format!(
            "{MATERIAL_WRAP_LABEL}{}:{}",
            kind.as_str(),
            URL_SAFE_NO_PAD.encode(key.0.as_slice())
        );
        self.encrypt(&text, &kind.wrap_id(case_id))
    }

    /// A material key of `case_id` from its wrapped form, under any configured
    /// master secret.
    pub fn unwrap_material_key(
        &self,
        wrapped: &[u8],
        case_id: &uuid::Uuid,
        kind: MaterialKind,
    ) -> Result<CaseKey, ProtectionError> {
        let text = self.decrypt(wrapped, &kind.wrap_id(case_id))?;
        let bytes = text
            .strip_prefix(MATERIAL_WRAP_LABEL)
            .and_then(|rest| rest.strip_prefix(kind.as_str()))
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
            .filter(|b| b.len() == 32)
            .ok_or(ProtectionError::Undecryptable)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(CaseKey(key.into()))
    }

    /// Opens a sealed personal value of `case_id`: under the case's data key when it
    /// has one (`wrapped`), else under the master secrets (a value written before
    /// data keys existed and not yet moved to one). A value in the data-key format
    /// without a data key (destroyed by retention) does not open.
    pub fn open_personal(
        &self,
        wrapped: Option<&[u8]>,
        sealed: &[u8],
        case_id: &uuid::Uuid,
    ) -> Result<String, ProtectionError> {
        match wrapped {
            Some(wrapped) => self
                .unwrap_case_key(wrapped, case_id)?
                .decrypt(sealed, case_id),
            None if CaseKey::is_sealed_under_case_key(sealed) => {
                Err(ProtectionError::Undecryptable)
            }
            None => self.decrypt(sealed, case_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn personal_data_opens_only_with_its_case_key_and_the_wrapped_key_rotates() {
        let (a, b) = ([7u8; 32], [8u8; 32]);
        let only_a = Keys::from_master(&a);
        let case = Uuid::now_v7();
        let key = CaseKey::generate();
        let sealed = key.encrypt("110105194912310021", &case);
        assert!(CaseKey::is_sealed_under_case_key(&sealed));
        let wrapped = only_a.wrap_case_key(&key, &case);
        assert_eq!(
            only_a
                .open_personal(Some(&wrapped), &sealed, &case)
                .unwrap(),
            "110105194912310021"
        );
        // Bound to the case: another case's row does not open it.
        assert_eq!(
            only_a.open_personal(Some(&wrapped), &sealed, &Uuid::now_v7()),
            Err(ProtectionError::Undecryptable)
        );
        // The master secret alone never opens it: the data key is needed.
        assert_eq!(
            only_a.open_personal(None, &sealed, &case),
            Err(ProtectionError::Undecryptable)
        );
        assert!(only_a.decrypt(&sealed, &case).is_err());
        // Another case's key does not open it.
        assert_eq!(
            CaseKey::generate().decrypt(&sealed, &case),
            Err(ProtectionError::Undecryptable)
        );
        // Rotating the master secret re-wraps the key; the data is untouched.
        let b_then_a = Keys::from_master(&b).with_old(&a).unwrap();
        let rewrapped = b_then_a.reseal(&wrapped, &case).unwrap().expect("moved");
        let only_b = Keys::from_master(&b);
        assert_eq!(
            only_b
                .open_personal(Some(&rewrapped), &sealed, &case)
                .unwrap(),
            "110105194912310021"
        );
        // A sealed value is not a wrapped key.
        let name = only_a.encrypt("Zhang San", &case);
        assert_eq!(
            only_a.unwrap_case_key(&name, &case).unwrap_err(),
            ProtectionError::Undecryptable
        );
        // Values written before data keys existed still open under the master key.
        assert_eq!(
            only_a.open_personal(None, &name, &case).unwrap(),
            "Zhang San"
        );
        assert!(!format!("{key:?}").contains(|c: char| c.is_ascii_digit()));
    }

    #[test]
    fn bytes_round_trip_under_a_data_key_and_fail_on_another_row_key_or_change() {
        let key = CaseKey::generate();
        let row = Uuid::now_v7();
        let file: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let sealed = key.encrypt_bytes(&file, &row);
        assert_eq!(sealed.len(), file.len() + SEALED_OVERHEAD);
        assert_eq!(sealed[0], CASE_KEY_FORMAT);
        assert!(!sealed.windows(64).any(|w| w == &file[..64]));
        assert_eq!(key.decrypt_bytes(&sealed, &row).unwrap(), file);
        // Another row's associated data.
        assert_eq!(
            key.decrypt_bytes(&sealed, &Uuid::now_v7()),
            Err(ProtectionError::Undecryptable)
        );
        // Another key.
        assert_eq!(
            CaseKey::generate().decrypt_bytes(&sealed, &row),
            Err(ProtectionError::Undecryptable)
        );
        // Any changed byte: format, nonce, body, tag.
        for at in [0, 1, 13, 500, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x01;
            assert_eq!(
                key.decrypt_bytes(&tampered, &row),
                Err(ProtectionError::Undecryptable),
                "byte {at}"
            );
        }
        // Truncated, and empty.
        assert!(
            key.decrypt_bytes(&sealed[..sealed.len() - 1], &row)
                .is_err()
        );
        assert!(key.decrypt_bytes(&[], &row).is_err());
        // An empty plaintext seals too.
        let empty = key.encrypt_bytes(b"", &row);
        assert_eq!(key.decrypt_bytes(&empty, &row).unwrap(), b"");
        // Sealing twice gives two ciphertexts (fresh nonce).
        assert_ne!(key.encrypt_bytes(&file, &row), sealed);
    }

    #[test]
    fn material_keys_are_bound_to_their_case_and_kind_and_rotate() {
        let (a, b) = ([7u8; 32], [8u8; 32]);
        let only_a = Keys::from_master(&a);
        let case = Uuid::now_v7();
        let key = CaseKey::generate();
        let wrapped = only_a.wrap_material_key(&key, &case, MaterialKind::Evidence);
        let row = Uuid::now_v7();
        let sealed = key.encrypt_bytes(b"%PDF-1.7 scan", &row);
        let opened = only_a
            .unwrap_material_key(&wrapped, &case, MaterialKind::Evidence)
            .unwrap();
        assert_eq!(
            opened.decrypt_bytes(&sealed, &row).unwrap(),
            b"%PDF-1.7 scan"
        );
        // Not as the explanations key, not as the identity key, not for another case.
        assert_eq!(
            only_a
                .unwrap_material_key(&wrapped, &case, MaterialKind::Explanations)
                .unwrap_err(),
            ProtectionError::Undecryptable
        );
        assert_eq!(
            only_a.unwrap_case_key(&wrapped, &case).unwrap_err(),
            ProtectionError::Undecryptable
        );
        assert!(
            only_a
                .unwrap_material_key(&wrapped, &Uuid::now_v7(), MaterialKind::Evidence)
                .is_err()
        );
        // The identity key does not open as a material key either.
        let identity = only_a.wrap_case_key(&key, &case);
        assert!(
            only_a
                .unwrap_material_key(&identity, &case, MaterialKind::Evidence)
                .is_err()
        );
        // The wrap ids differ per kind and per case, and are stable.
        assert_ne!(
            MaterialKind::Evidence.wrap_id(&case),
            MaterialKind::Explanations.wrap_id(&case)
        );
        assert_ne!(MaterialKind::Evidence.wrap_id(&case), case);
        assert_eq!(
            MaterialKind::Evidence.wrap_id(&case),
            MaterialKind::Evidence.wrap_id(&case)
        );
        assert_eq!(MaterialKind::Evidence.wrap_id(&case).get_version_num(), 8);
        // Rotation re-wraps it like any sealed value, under its wrap id.
        let b_then_a = Keys::from_master(&b).with_old(&a).unwrap();
        let rewrapped = b_then_a
            .reseal(&wrapped, &MaterialKind::Evidence.wrap_id(&case))
            .unwrap()
            .expect("moved");
        let only_b = Keys::from_master(&b);
        let again = only_b
            .unwrap_material_key(&rewrapped, &case, MaterialKind::Evidence)
            .unwrap();
        assert_eq!(
            again.decrypt_bytes(&sealed, &row).unwrap(),
            b"%PDF-1.7 scan"
        );
        // After the old master secret is retired, the old wrapped key (a backup) is dead.
        assert!(
            only_b
                .unwrap_material_key(&wrapped, &case, MaterialKind::Evidence)
                .is_err()
        );
    }
}
