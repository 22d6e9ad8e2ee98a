//! Envelope encryption of a case's personal data under its own data key.
//!
//! Every case gets a random 256-bit data key at opening ([`CaseKey::generate`]). The
//! case's personal data is sealed under it ([`CaseKey::encrypt`]: `0x02 || nonce (12)
//! || AES-GCM ciphertext and tag`, the row id as associated data). The data key itself
//! is stored only wrapped by the master secrets ([`Keys::wrap_case_key`]: an ordinary
//! master-key ciphertext, bound to the case id, so `reactivation keys rotate` re-wraps
//! it like any other sealed value without touching the data it protects).
//!
//! Destroying the wrapped key (retention) makes every ciphertext of the case
//! unreadable, in the live database and in every backup taken before or after:
//! crypto-shredding.
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
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = Aes256Gcm::new(&self.0)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: row_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short string cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(CASE_KEY_FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`CaseKey::encrypt`] sealed for the same `row_id`.
    pub fn decrypt(&self, sealed: &[u8], row_id: &uuid::Uuid) -> Result<String, ProtectionError> {
        if !Self::is_sealed_under_case_key(sealed) {
            return Err(ProtectionError::Undecryptable);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        let plain = Aes256Gcm::new(&self.0)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: row_id.as_bytes(),
                },
            )
            .map_err(|_| ProtectionError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| ProtectionError::Undecryptable)
    }
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
}
