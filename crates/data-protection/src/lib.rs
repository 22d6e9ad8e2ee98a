//! Secrets handling for the product.
//!
//! Owns: case tokens (256 random bits; only their SHA-256 is stored), encryption of
//! personal data at rest (AES-256-GCM with the row id as associated data), keyed
//! hashes of one-time codes (HMAC-SHA256), one-time code generation (CSPRNG), and
//! argon2id password hashing run off the async threads behind a concurrency limit.
//! All keys derive from one master secret (`REACTIVATION_SECRET_KEY`).
//!
//! Must not: store, log or print any secret or plaintext; do I/O other than the
//! blocking-pool hand-off for argon2.

use std::sync::{Arc, LazyLock};

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

/// SHA-256 of any bytes (request fingerprints, evidence content hashes).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A six-digit one-time code from the CSPRNG, uniformly distributed.
pub fn one_time_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// The keys derived from the master secret.
#[derive(Clone)]
pub struct Keys {
    pii: Key<Aes256Gcm>,
    otp: [u8; 32],
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

impl Keys {
    /// Derives the keys from a base64 master secret of at least 32 bytes.
    pub fn from_master_base64(master: &str) -> Result<Self, ProtectionError> {
        let engine = base64::engine::general_purpose::STANDARD;
        let bytes = engine
            .decode(master.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(master.trim()))
            .map_err(|_| ProtectionError::WeakMasterKey)?;
        if bytes.len() < 32 {
            return Err(ProtectionError::WeakMasterKey);
        }
        Ok(Self::from_master(&bytes))
    }

    /// Derives the keys from raw master bytes.
    pub fn from_master(master: &[u8]) -> Self {
        Self {
            pii: derive(master, "reactivation/pii-encryption/v1").into(),
            otp: derive(master, "reactivation/otp-hash/v1"),
        }
    }

    /// Encrypts personal data bound to `row_id` (a ciphertext moved to another row does not decrypt).
    pub fn encrypt(&self, plaintext: &str, row_id: &uuid::Uuid) -> Vec<u8> {
        let cipher = Aes256Gcm::new(&self.pii);
        let mut nonce = [0u8; 12];
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
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`Keys::encrypt`] produced for the same `row_id`.
    pub fn decrypt(&self, sealed: &[u8], row_id: &uuid::Uuid) -> Result<String, ProtectionError> {
        if sealed.len() < 12 + 16 {
            return Err(ProtectionError::Undecryptable);
        }
        let (nonce, body) = sealed.split_at(12);
        let plain = Aes256Gcm::new(&self.pii)
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

    /// The keyed hash of a one-time code for a case.
    pub fn otp_hash(&self, case_id: &uuid::Uuid, code: &str) -> [u8; 32] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.otp).expect("HMAC takes any key length");
        mac.update(case_id.as_bytes());
        mac.update(b":");
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
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
        assert_eq!(
            Keys::from_master(&[8u8; 32]).decrypt(&a, &row),
            Err(ProtectionError::Undecryptable)
        );
        assert_eq!(
            keys.decrypt(&[1, 2, 3], &row),
            Err(ProtectionError::Undecryptable)
        );
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
