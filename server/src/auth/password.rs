//! Password hashing with Argon2id, off the async runtime (a hash takes tens of milliseconds and
//! 19 MiB). At most one hash per core runs at a time: a login storm otherwise starts hundreds
//! of hashes at once on the blocking pool, and their memory (measured: 1.6 GiB for 200 logins)
//! could take the server down.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::AppError;

/// Shortest password accepted.
pub const MIN_LEN: usize = 10;

/// Checks a new password against the policy.
pub fn validate(password: &str) -> Result<(), AppError> {
    if password.chars().count() < MIN_LEN {
        return Err(AppError::invalid(
            "password",
            format!("must be at least {MIN_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(AppError::invalid("password", "must be at most 1024 bytes"));
    }
    Ok(())
}

fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        tokio::sync::Semaphore::new(cores)
    })
}

/// Hashes a password to a PHC string.
pub async fn hash(password: String) -> Result<String, AppError> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(|e| anyhow::anyhow!("hashing slots closed: {e}"))?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("hashing task: {e}"))?
    .map_err(AppError::Internal)
}

/// True when `password` matches the stored PHC string. A missing hash is checked against a
/// throwaway one so that unknown accounts take as long as known ones.
pub async fn verify(stored: Option<String>, password: String) -> bool {
    let Ok(_slot) = hashing_slots().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| dummy_hash().to_string());
        match PasswordHash::new(&stored) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(uuid::Uuid::new_v4().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash("correct horse battery".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(Some(h.clone()), "correct horse battery".into()).await);
        assert!(!verify(Some(h), "wrong horse battery".into()).await);
        assert!(!verify(None, "anything at all".into()).await);
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(validate("short").is_err());
        assert!(validate("long enough pass").is_ok());
    }
}
