//! Storing subscribers (shared by `POST /sim/subscribers` and the demo seed) and the
//! argon2id service-password hash, computed off the async runtime.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use rand::RngCore;
use sqlx::PgPool;

use crate::{
    db::{self, OnExisting},
    model::{FieldError, NewSubscriber, ValidSubscriber},
};

/// Why a subscriber could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("invalid subscriber")]
    Invalid(Vec<FieldError>),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("password hashing: {0}")]
    Hash(String),
}

/// Validates, hashes the password and stores the subscriber. Returns the record and
/// whether anything was written (with [`OnExisting::Keep`] an existing one stays).
pub(crate) async fn store(
    pool: &PgPool,
    body: &NewSubscriber,
    on_existing: OnExisting,
) -> Result<(ValidSubscriber, bool), StoreError> {
    let valid = body.validate().map_err(StoreError::Invalid)?;
    let hash = match &valid.service_password {
        Some(password) => Some(hash_password(password.clone()).await?),
        None => None,
    };
    let written = db::put_subscriber(pool, &valid, hash, on_existing).await?;
    Ok((valid, written))
}

/// An argon2id PHC string for `password` (default parameters, random 16-byte salt).
async fn hash_password(password: String) -> Result<String, StoreError> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Hash(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| StoreError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| StoreError::Hash(e.to_string()))?
}

/// Whether `password` matches the stored hash (an unreadable hash matches nothing).
pub(crate) async fn verify_password(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("135790".into()).await.unwrap();
        let b = hash_password("135790".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password(a.clone(), "135790".into()).await);
        assert!(!verify_password(a, "135791".into()).await);
        assert!(!verify_password("garbage".into(), "135790".into()).await);
    }
}
