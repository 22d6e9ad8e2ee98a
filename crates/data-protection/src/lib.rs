//! Secrets handling for the product.
//!
//! Owns: case tokens (256 random bits; only their SHA-256 is stored), encryption of
//! personal data at rest (AES-256-GCM with the row id as associated data), keyed
//! hashes of one-time codes (HMAC-SHA256), one-time code generation (CSPRNG), and
//! argon2id password hashing run off the async threads behind a concurrency limit.
//! All keys derive from a master secret; several master secrets can be configured
//! at once (`REACTIVATION_SECRET_KEYS`: the current one first, then old ones) so the
//! master secret can be rotated without losing data.
//!
//! Key ids and ciphertext format: every master secret has an 8-byte key id (an HMAC
//! of a fixed label under the secret, so it reveals nothing and needs no naming). A
//! ciphertext is `0x01 || key id || nonce (12) || AES-GCM ciphertext and tag`; it is
//! decrypted with the key its id names. Ciphertexts written before key ids existed
//! (`nonce || ciphertext and tag`, "legacy") are tried with every configured key.
//! New ciphertexts are always sealed under the current key; [`Keys::reseal`] moves
//! an old ciphertext to the current key (`reactivation keys rotate`).
//!
//! Each case's personal data is sealed under its own data key, itself stored only
//! wrapped by the master secrets (envelope encryption, [`CaseKey`]); the case's
//! material (evidence; explanations and the appeal) under one data key per kind
//! ([`MaterialKind`], [`Keys::wrap_material_key`]); destroying a wrapped key shreds
//! what was sealed under it.
//!
//! Keyed hashes of one-time codes carry no key id (the column is the bare 32-byte
//! HMAC): they are written under the current key and [`Keys::otp_matches`] checks a
//! code against every configured key; codes live 10 minutes, so after a rotation no
//! hash under an old key is still useful. Token hashes are plain SHA-256 (no key).
//!
//! Must not: store, log or print any secret or plaintext; do I/O other than the
//! blocking-pool hand-off for argon2.

mod envelope;

use std::sync::{Arc, LazyLock};

pub use envelope::{CASE_KEY_FORMAT, CaseKey, MaterialKind, SEALED_OVERHEAD, derived_id};

use aes_gcm::{
    Aes256Gcm, Key, Nonce,
    aead::{Aead, KeyInit, OsRng, Payload, rand_core::RngCore},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

type HmacSha256 = Hmac<Sha256>;

/// Something about a secret was wrong. Messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtectionError {
    /// The master secret is not base64 of at least 32 bytes.
    #[error("REACTIVATION_SECRET_KEY must be base64 of at least 32 random bytes")]
    WeakMasterKey,
    /// A ciphertext did not decrypt (wrong key, wrong row, or tampered).
    #[error("ciphertext does not decrypt")]
    Undecryptable,
    /// A ciphertext names a key that is not configured (removed from the key list
    /// before `reactivation keys rotate` moved it to the current key).
    #[error("ciphertext is sealed under key {0}, which is not configured")]
    UnknownKey(KeyId),
    /// The same master secret is listed twice (or two secrets share a key id).
    #[error("REACTIVATION_SECRET_KEYS lists the same key twice")]
    DuplicateKey,
    /// The password hash is not a valid PHC string.
    #[error("stored password hash is malformed")]
    BadHash,
    /// The blocking pool is gone (shutdown).
    #[error("password hashing is unavailable")]
    Unavailable,
}

/// A case token handed to the subscriber, and the hash that is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token (43 URL-safe characters): shown once, never stored.
    pub token: String,
    /// SHA-256 of the token: what the database keeps.
    pub hash: [u8; 32],
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedToken(..)")
    }
}

/// Issues a fresh random 256-bit token.
pub fn issue_token() -> IssuedToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    IssuedToken { token, hash }
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The hash of a case token a caller presented ([`hash_token`]), passed from the
/// gateway to the service that reads the case, which compares it in that same read:
/// the token itself never leaves the gateway. Its `Debug` shows nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        Self(hash_token(token))
    }

    /// The 32 bytes, as the database keeps them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Base64url without padding (43 characters), for an internal call's header.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The hash back from [`TokenHash::encode`]'s form; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() != 43 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// SHA-256 of any bytes (request fingerprints, evidence content hashes).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A six-digit one-time code from the CSPRNG, uniformly distributed.
pub fn one_time_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// The 8-byte id of a master secret, written into every ciphertext sealed under it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The first byte of a ciphertext that names its key.
const FORMAT_V1: u8 = 1;
/// Version byte and key id.
pub const PREFIX_LEN: usize = 1 + 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The keys derived from one master secret.
#[derive(Clone)]
struct KeySet {
    id: KeyId,
    pii: Key<Aes256Gcm>,
    otp: [u8; 32],
}

impl KeySet {
    fn from_master(master: &[u8]) -> Self {
        let mut id = [0u8; 8];
        id.copy_from_slice(&derive(master, "reactivation/key-id/v1")[..8]);
        Self {
            id: KeyId(id),
            pii: derive(master, "reactivation/pii-encryption/v1").into(),
            otp: derive(master, "reactivation/otp-hash/v1"),
        }
    }

    fn open(&self, nonce_and_body: &[u8], row_id: &uuid::Uuid) -> Option<String> {
        if nonce_and_body.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = nonce_and_body.split_at(NONCE_LEN);
        let plain = Aes256Gcm::new(&self.pii)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: row_id.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }

    fn otp_hash(&self, case_id: &uuid::Uuid, code: &str) -> [u8; 32] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.otp).expect("HMAC takes any key length");
        mac.update(case_id.as_bytes());
        mac.update(b":");
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The keys derived from the configured master secrets: the current one (every new
/// ciphertext and hash) and old ones (still read, until rotated away).
#[derive(Clone)]
pub struct Keys {
    current: KeySet,
    old: Vec<KeySet>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

fn derive(master: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

fn decode_master(master: &str) -> Result<Vec<u8>, ProtectionError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes = engine
        .decode(master.trim())
        .or_else(|_| URL_SAFE_NO_PAD.decode(master.trim()))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(master.trim()))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(master.trim()))
        .map_err(|_| ProtectionError::WeakMasterKey)?;
    if bytes.len() < 32 {
        return Err(ProtectionError::WeakMasterKey);
    }
    Ok(bytes)
}

impl Keys {
    /// Derives the keys from a base64 master secret of at least 32 bytes (the only,
    /// current key).
    pub fn from_master_base64(master: &str) -> Result<Self, ProtectionError> {
        Ok(Self::from_master(&decode_master(master)?))
    }

    /// Derives the keys from raw master bytes (the only, current key).
    pub fn from_master(master: &[u8]) -> Self {
        Self {
            current: KeySet::from_master(master),
            old: Vec::new(),
        }
    }

    /// The current master secret and old ones, each base64 of at least 32 bytes.
    /// New data is sealed under `current`; data under any of them is read.
    pub fn from_list<S: AsRef<str>>(current: &str, old: &[S]) -> Result<Self, ProtectionError> {
        let mut keys = Self::from_master_base64(current)?;
        for text in old {
            keys = keys.with_old(&decode_master(text.as_ref())?)?;
        }
        Ok(keys)
    }

    /// These keys, also reading data sealed under the raw master secret `old`.
    pub fn with_old(mut self, old: &[u8]) -> Result<Self, ProtectionError> {
        let set = KeySet::from_master(old);
        if self.all().any(|k| k.id == set.id) {
            return Err(ProtectionError::DuplicateKey);
        }
        self.old.push(set);
        Ok(self)
    }

    fn all(&self) -> impl Iterator<Item = &KeySet> {
        std::iter::once(&self.current).chain(&self.old)
    }

    /// The id of the current key.
    pub fn current_id(&self) -> KeyId {
        self.current.id
    }

    /// The ids of every configured key, current first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.all().map(|k| k.id).collect()
    }

    /// The first bytes of every ciphertext sealed under the current key: a
    /// ciphertext that does not start with them is to be rotated.
    pub fn current_prefix(&self) -> [u8; PREFIX_LEN] {
        let mut prefix = [0u8; PREFIX_LEN];
        prefix[0] = FORMAT_V1;
        prefix[1..].copy_from_slice(&self.current.id.0);
        prefix
    }

    /// The key id a ciphertext names, or `None` for a legacy ciphertext (or one too
    /// short to be any).
    pub fn key_id_of(sealed: &[u8]) -> Option<KeyId> {
        if sealed.len() < PREFIX_LEN + NONCE_LEN + TAG_LEN || sealed[0] != FORMAT_V1 {
            return None;
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&sealed[1..PREFIX_LEN]);
        Some(KeyId(id))
    }

    /// Encrypts personal data bound to `row_id` (a ciphertext moved to another row
    /// does not decrypt), under the current key.
    pub fn encrypt(&self, plaintext: &str, row_id: &uuid::Uuid) -> Vec<u8> {
        let cipher = Aes256Gcm::new(&self.current.pii);
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: row_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short string cannot fail");
        let mut out = Vec::with_capacity(PREFIX_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&self.current_prefix());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`Keys::encrypt`] produced for the same `row_id`, under any
    /// configured key (the one the ciphertext names; a legacy ciphertext without a
    /// key id is tried with each).
    pub fn decrypt(&self, sealed: &[u8], row_id: &uuid::Uuid) -> Result<String, ProtectionError> {
        let named = Self::key_id_of(sealed);
        if let Some(id) = named
            && let Some(key) = self.all().find(|k| k.id == id)
            && let Some(plain) = key.open(&sealed[PREFIX_LEN..], row_id)
        {
            return Ok(plain);
        }
        // A legacy ciphertext (its random nonce may happen to start like a prefix).
        if let Some(plain) = self.all().find_map(|k| k.open(sealed, row_id)) {
            return Ok(plain);
        }
        match named {
            Some(id) if !self.all().any(|k| k.id == id) => Err(ProtectionError::UnknownKey(id)),
            _ => Err(ProtectionError::Undecryptable),
        }
    }

    /// Whether `sealed` is already sealed under the current key (in the current
    /// format), judged by its prefix.
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        Self::key_id_of(sealed) == Some(self.current.id)
    }

    /// `sealed` re-encrypted under the current key for the same row, or `None` when
    /// it already is. Fails (and nothing is to be written) when it does not decrypt.
    pub fn reseal(
        &self,
        sealed: &[u8],
        row_id: &uuid::Uuid,
    ) -> Result<Option<Vec<u8>>, ProtectionError> {
        if self.is_current(sealed) && self.current.open(&sealed[PREFIX_LEN..], row_id).is_some() {
            return Ok(None);
        }
        let plain = self.decrypt(sealed, row_id)?;
        Ok(Some(self.encrypt(&plain, row_id)))
    }

    /// The keyed hash of a one-time code for a case, under the current key.
    pub fn otp_hash(&self, case_id: &uuid::Uuid, code: &str) -> [u8; 32] {
        self.current.otp_hash(case_id, code)
    }

    /// Whether `stored` is the keyed hash of `code` for the case under any configured
    /// key (so a code sent just before the current key changed still works), in
    /// constant time per key.
    pub fn otp_matches(&self, case_id: &uuid::Uuid, code: &str, stored: &[u8]) -> bool {
        self.all()
            .map(|k| hashes_equal(stored, &k.otp_hash(case_id, code)))
            .fold(false, |any, this| any | this)
    }
}

/// Compares two hashes in constant time.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// At most this many argon2 computations run at once (19 MiB each).
const PARALLEL_HASHES: usize = 4;
static HASHING: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(PARALLEL_HASHES)));

/// A valid argon2id hash of a random password: verified against when the account
/// does not exist, so timing does not tell which usernames exist.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password_blocking("not-a-real-password-0d5f").unwrap_or_default());

fn hash_password_blocking(password: &str) -> Result<String, ProtectionError> {
    use argon2::{Argon2, PasswordHasher, password_hash::SaltString};
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| ProtectionError::BadHash)
}

fn verify_password_blocking(password: &str, phc: &str) -> Result<bool, ProtectionError> {
    use argon2::{Argon2, PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(phc).map_err(|_| ProtectionError::BadHash)?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// Hashes a password with argon2id (m=19 MiB, t=2, p=1) on the blocking pool,
/// behind the concurrency limit.
pub async fn hash_password(password: String) -> Result<String, ProtectionError> {
    let _permit = HASHING
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ProtectionError::Unavailable)?;
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .map_err(|_| ProtectionError::Unavailable)?
}

/// Verifies a password against a stored hash, or against a dummy hash when there
/// is none (unknown account), so both cases take the same time.
pub async fn verify_password(
    password: String,
    stored: Option<String>,
) -> Result<bool, ProtectionError> {
    let _permit = HASHING
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ProtectionError::Unavailable)?;
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let ok = verify_password_blocking(&password, &phc)?;
        Ok(ok && known)
    })
    .await
    .map_err(|_| ProtectionError::Unavailable)?
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let a = issue_token();
        let b = issue_token();
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 43);
        assert_eq!(hash_token(&a.token), a.hash);
        assert!(!format!("{a:?}").contains(&a.token));
    }

    #[test]
    fn a_token_hash_travels_as_text_and_nothing_else_decodes() {
        let issued = issue_token();
        let hash = TokenHash::of(&issued.token);
        assert_eq!(hash.as_bytes(), &issued.hash);
        assert_eq!(TokenHash::decode(&hash.encode()), Some(hash));
        assert!(!format!("{hash:?}").contains(&hash.encode()));
        for bad in [
            "",
            "short",
            &issued.token[..42],
            &format!("{}A", hash.encode()),
            &"!".repeat(43),
            &format!("{}é", &hash.encode()[..41]),
        ] {
            assert_eq!(TokenHash::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let c = one_time_code();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn encryption_is_bound_to_the_row_and_randomised() {
        let keys = Keys::from_master(&[7u8; 32]);
        let row = Uuid::now_v7();
        let a = keys.encrypt("11010519491231002X", &row);
        let b = keys.encrypt("11010519491231002X", &row);
        assert_ne!(a, b, "same plaintext must not give the same ciphertext");
        assert_eq!(keys.decrypt(&a, &row).unwrap(), "11010519491231002X");
        assert_eq!(
            keys.decrypt(&a, &Uuid::now_v7()),
            Err(ProtectionError::Undecryptable)
        );
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            keys.decrypt(&tampered, &row),
            Err(ProtectionError::Undecryptable)
        );
        // Another key cannot read it (and, since ciphertexts name their key, says so).
        assert_eq!(
            Keys::from_master(&[8u8; 32]).decrypt(&a, &row),
            Err(ProtectionError::UnknownKey(keys.current_id()))
        );
        assert_eq!(
            keys.decrypt(&[1, 2, 3], &row),
            Err(ProtectionError::Undecryptable)
        );
    }

    /// A ciphertext as written before key ids existed: `nonce || ciphertext and tag`.
    fn legacy_encrypt(master: &[u8], plaintext: &str, row: &Uuid) -> Vec<u8> {
        let set = KeySet::from_master(master);
        let nonce = [3u8; NONCE_LEN];
        let mut out = nonce.to_vec();
        out.extend(
            Aes256Gcm::new(&set.pii)
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: plaintext.as_bytes(),
                        aad: row.as_bytes(),
                    },
                )
                .unwrap(),
        );
        out
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn old_key_ciphertexts_are_read_with_the_list_and_new_ones_use_the_current_key() {
        let (a, b) = ([7u8; 32], [8u8; 32]);
        let row = Uuid::now_v7();
        let only_a = Keys::from_master(&a);
        let under_a = only_a.encrypt("Zhang San", &row);
        assert_eq!(Keys::key_id_of(&under_a), Some(only_a.current_id()));
        let legacy = legacy_encrypt(&a, "110105194912310021", &row);
        assert_eq!(Keys::key_id_of(&legacy), None);
        assert_eq!(only_a.decrypt(&legacy, &row).unwrap(), "110105194912310021");

        let b_then_a = Keys::from_list(&b64(&b), &[b64(&a)]).unwrap();
        assert_eq!(
            b_then_a.ids(),
            vec![Keys::from_master(&b).current_id(), only_a.current_id()]
        );
        assert_eq!(b_then_a.decrypt(&under_a, &row).unwrap(), "Zhang San");
        assert_eq!(
            b_then_a.decrypt(&legacy, &row).unwrap(),
            "110105194912310021"
        );
        // New writes use the current key (B): A alone cannot read them, and says why.
        let under_b = b_then_a.encrypt("Li Si", &row);
        assert_eq!(Keys::key_id_of(&under_b), Some(b_then_a.current_id()));
        assert!(b_then_a.is_current(&under_b) && !b_then_a.is_current(&under_a));
        assert!(under_b.starts_with(&b_then_a.current_prefix()));
        assert_eq!(
            only_a.decrypt(&under_b, &row),
            Err(ProtectionError::UnknownKey(b_then_a.current_id()))
        );
        // The row binding holds under every key and format.
        let other = Uuid::now_v7();
        for sealed in [&under_a, &under_b, &legacy] {
            assert_eq!(
                b_then_a.decrypt(sealed, &other),
                Err(ProtectionError::Undecryptable)
            );
        }
    }

    #[test]
    fn reseal_moves_old_ciphertexts_to_the_current_key_once() {
        let (a, b) = ([7u8; 32], [8u8; 32]);
        let row = Uuid::now_v7();
        let keys = Keys::from_master(&b).with_old(&a).unwrap();
        let only_b = Keys::from_master(&b);
        for old in [
            Keys::from_master(&a).encrypt("Wang Wu", &row),
            legacy_encrypt(&a, "Wang Wu", &row),
            legacy_encrypt(&b, "Wang Wu", &row),
        ] {
            let new = keys.reseal(&old, &row).unwrap().expect("moved");
            assert!(keys.is_current(&new));
            assert_eq!(only_b.decrypt(&new, &row).unwrap(), "Wang Wu");
            assert_eq!(keys.reseal(&new, &row).unwrap(), None, "already current");
        }
        // Something no configured key opens is refused, not rewritten.
        let foreign = Keys::from_master(&[9u8; 32]).encrypt("x", &row);
        assert!(matches!(
            keys.reseal(&foreign, &row),
            Err(ProtectionError::UnknownKey(_))
        ));
        assert_eq!(
            keys.reseal(&legacy_encrypt(&[9u8; 32], "x", &row), &row),
            Err(ProtectionError::Undecryptable)
        );
        // A current-looking prefix whose body does not open is not taken for current.
        let mut forged = keys.current_prefix().to_vec();
        forged.extend([0u8; 40]);
        assert_eq!(
            keys.reseal(&forged, &row),
            Err(ProtectionError::Undecryptable)
        );
    }

    #[test]
    fn unknown_key_ids_and_duplicate_keys_are_refused_cleanly() {
        let row = Uuid::now_v7();
        let keys = Keys::from_master(&[7u8; 32]);
        let mut unknown = vec![FORMAT_V1, 1, 2, 3, 4, 5, 6, 7, 8];
        unknown.extend([0u8; NONCE_LEN + TAG_LEN + 4]);
        let err = keys.decrypt(&unknown, &row).unwrap_err();
        assert_eq!(
            err,
            ProtectionError::UnknownKey(KeyId([1, 2, 3, 4, 5, 6, 7, 8]))
        );
        assert_eq!(
            err.to_string(),
            "ciphertext is sealed under key 0102030405060708, which is not configured"
        );
        let a = b64(&[7u8; 32]);
        assert_eq!(
            Keys::from_list(&a, std::slice::from_ref(&a)).unwrap_err(),
            ProtectionError::DuplicateKey
        );
        assert_eq!(
            Keys::from_list(&a, &["c2hvcnQ="]).unwrap_err(),
            ProtectionError::WeakMasterKey
        );
        assert!(Keys::from_list::<&str>(&a, &[]).is_ok());
    }

    #[test]
    fn otp_codes_match_under_any_configured_key_and_are_written_under_the_current_one() {
        let (a, b) = ([7u8; 32], [8u8; 32]);
        let case = Uuid::now_v7();
        let old = Keys::from_master(&a).otp_hash(&case, "123456");
        let keys = Keys::from_master(&b).with_old(&a).unwrap();
        assert!(keys.otp_matches(&case, "123456", &old));
        assert!(!keys.otp_matches(&case, "123457", &old));
        assert_eq!(
            keys.otp_hash(&case, "123456"),
            Keys::from_master(&b).otp_hash(&case, "123456")
        );
        assert!(!Keys::from_master(&b).otp_matches(&case, "123456", &old));
    }

    #[test]
    fn otp_hashes_are_keyed_and_bound_to_the_case() {
        let keys = Keys::from_master(&[7u8; 32]);
        let case = Uuid::now_v7();
        let h = keys.otp_hash(&case, "123456");
        assert!(hashes_equal(&h, &keys.otp_hash(&case, "123456")));
        assert!(!hashes_equal(&h, &keys.otp_hash(&case, "123457")));
        assert!(!hashes_equal(&h, &keys.otp_hash(&Uuid::now_v7(), "123456")));
        assert!(!hashes_equal(
            &h,
            &Keys::from_master(&[9u8; 32]).otp_hash(&case, "123456")
        ));
        assert!(!hashes_equal(&h, &h[..31]));
    }

    #[test]
    fn weak_master_keys_are_refused() {
        assert_eq!(
            Keys::from_master_base64("c2hvcnQ=").unwrap_err(),
            ProtectionError::WeakMasterKey
        );
        assert_eq!(
            Keys::from_master_base64("not base64!").unwrap_err(),
            ProtectionError::WeakMasterKey
        );
        let ok = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(Keys::from_master_base64(&ok).is_ok());
    }

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_unknown_accounts_never_verify() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!verify_password("wrong".into(), Some(hash)).await.unwrap());
        assert!(
            !verify_password("not-a-real-password-0d5f".into(), None)
                .await
                .unwrap()
        );
        assert_eq!(
            verify_password("x".into(), Some("garbage".into())).await,
            Err(ProtectionError::BadHash)
        );
    }
}
