//! Server key material: the Ed25519 key that signs access tokens and the P-256 VAPID key for web
//! push. Generated on first start and kept in the database, so every node of a deployment signs
//! with the same key and a restart does not log everybody out.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::db::{Db, now_ms};
use crate::{in_tx, on_reader, on_writer};

const JWT_KEY: &str = "jwt_ed25519_seed";
const VAPID_KEY: &str = "vapid_p256_private";

/// Why keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A stored key is corrupt.
    #[error("stored key {0} is corrupt: {1}")]
    Corrupt(&'static str, String),
}

/// The keys a running server signs and verifies with at one moment.
pub struct Keys {
    signer: (String, EncodingKey),
    verifiers: Vec<(String, DecodingKey)>,
    /// The public JSON Web Key Set served at `/.well-known/jwks.json`: every key that signs,
    /// will sign, or signed tokens that may still be valid.
    pub jwks: serde_json::Value,
    /// Web push (VAPID) keys.
    pub vapid: VapidKeys,
}

/// A VAPID key pair in the encodings browsers and push libraries expect.
#[derive(Clone)]
pub struct VapidKeys {
    /// Uncompressed P-256 public point, base64url: the browser's `applicationServerKey`.
    pub public_key: String,
    /// The private scalar, base64url.
    pub private_key: String,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("kid", &self.signer.0)
            .field("verifying", &self.verifiers.len())
            .field("vapid_public", &self.vapid.public_key)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for VapidKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidKeys")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// One stored token-signing key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKey {
    /// Key id, in token headers and the JWKS.
    pub kid: String,
    seed: String,
    /// When it was made (ms).
    pub created_at: i64,
    /// From when it signs (ms).
    pub signs_from: i64,
    /// Until when tokens it signed are accepted (ms); `None` while it is the newest.
    pub verify_until: Option<i64>,
}

impl Keys {
    /// The id of the key that signs new tokens.
    pub fn kid(&self) -> &str {
        &self.signer.0
    }

    /// The key that signs access tokens.
    pub fn encoding(&self) -> &EncodingKey {
        &self.signer.1
    }

    /// The key that verifies tokens carrying `kid`, if it is still accepted.
    pub fn decoding(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifiers
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, key)| key)
    }

    /// Loads the deployment's keys as they stand at `now`, generating and storing any that
    /// are missing.
    pub async fn load_or_create(db: &Db) -> Result<Keys, KeyError> {
        first_signing_key(db).await?;
        let vapid_secret = stored_or_new(db, VAPID_KEY, || {
            URL_SAFE_NO_PAD.encode(p256::SecretKey::random(&mut OsRng).to_bytes())
        })
        .await?;
        let vapid = vapid_from_secret(&vapid_secret)?;
        Keys::from_stored(&signing_keys(db).await?, vapid, now_ms())
    }

    fn from_stored(stored: &[SigningKey], vapid: VapidKeys, now: i64) -> Result<Keys, KeyError> {
        let live: Vec<&SigningKey> = stored
            .iter()
            .filter(|k| k.verify_until.is_none_or(|until| until > now))
            .collect();
        // The newest key whose time has come signs; one published for later only verifies.
        let signing = live
            .iter()
            .filter(|k| k.signs_from <= now)
            .max_by_key(|k| (k.signs_from, k.created_at))
            .ok_or_else(|| KeyError::Corrupt(JWT_KEY, "no signing key is in force".into()))?;
        let mut verifiers = Vec::new();
        let mut published = Vec::new();
        let mut signer = None;
        for key in &live {
            let signing_key = ed25519_from_seed(&key.seed)?;
            let public = signing_key.verifying_key().to_bytes();
            let x = URL_SAFE_NO_PAD.encode(public);
            if key.kid != kid_of(&public) {
                return Err(KeyError::Corrupt(
                    JWT_KEY,
                    format!("key {} does not match its id", key.kid),
                ));
            }
            if key.kid == signing.kid {
                let der = signing_key
                    .to_pkcs8_der()
                    .map_err(|e| KeyError::Corrupt(JWT_KEY, e.to_string()))?;
                signer = Some((key.kid.clone(), EncodingKey::from_ed_der(der.as_bytes())));
            }
            verifiers.push((
                key.kid.clone(),
                DecodingKey::from_ed_components(&x)
                    .map_err(|e| KeyError::Corrupt(JWT_KEY, e.to_string()))?,
            ));
            published.push(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": key.kid, "x": x
            }));
        }
        let signer =
            signer.ok_or_else(|| KeyError::Corrupt(JWT_KEY, "signing key vanished".into()))?;
        Ok(Keys {
            signer,
            verifiers,
            jwks: serde_json::json!({ "keys": published }),
            vapid,
        })
    }
}

/// The keys in force, re-read from the database as rotations happen.
pub struct KeyRing {
    current: std::sync::RwLock<std::sync::Arc<Keys>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.get())
            .finish()
    }
}

impl KeyRing {
    /// A ring holding `keys`.
    pub fn new(keys: Keys) -> KeyRing {
        KeyRing {
            current: std::sync::RwLock::new(std::sync::Arc::new(keys)),
        }
    }

    /// The keys in force now.
    pub fn get(&self) -> std::sync::Arc<Keys> {
        match self.current.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the stored keys as they stand at `now`, and deletes those no token can need.
    pub async fn reload(&self, db: &Db, now: i64) -> Result<(), KeyError> {
        on_writer!(db, pool => sqlx::query(
            "DELETE FROM signing_keys WHERE verify_until IS NOT NULL AND verify_until <= $1")
            .bind(now).execute(pool).await.map(drop))?;
        let vapid = self.get().vapid.clone();
        let keys = Keys::from_stored(&signing_keys(db).await?, vapid, now)?;
        match self.current.write() {
            Ok(mut current) => *current = std::sync::Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = std::sync::Arc::new(keys),
        }
        Ok(())
    }
}

/// Re-reads the keys every `key_reload_secs`, so that a rotation reaches every node. A failed
/// read keeps the keys in memory in force: it must not stop the signing.
pub fn spawn_reload(state: &crate::AppState) {
    let period = std::time::Duration::from_secs(state.settings.key_reload_secs.max(1));
    crate::sweeper::every_node(state, "key reload", period, |state| async move {
        state.keys.reload(&state.db, now_ms()).await.map(|()| 0)
    });
}

/// Adds a new signing key that signs from `signs_after_secs` on, and sets when each older key
/// stops being accepted: once the new one signs, once every node has re-read the keys, and
/// once the last access token an old key signed has expired (with the verifier's leeway).
pub async fn rotate(
    db: &Db,
    settings: &crate::config::Settings,
    signs_after_secs: u64,
    now: i64,
) -> Result<SigningKey, KeyError> {
    let seed = STANDARD.encode(ed25519_dalek::SigningKey::generate(&mut OsRng).to_bytes());
    let kid = kid_of(&ed25519_from_seed(&seed)?.verifying_key().to_bytes());
    let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX / 4_000) * 1000;
    let signs_from = now + secs(signs_after_secs);
    let verify_until = signs_from
        + secs(settings.key_reload_secs)
        + secs(settings.access_token_ttl_secs)
        + secs(TOKEN_LEEWAY_SECS);
    in_tx!(db, tx => {
        sqlx::query("UPDATE signing_keys SET verify_until = $1 WHERE verify_until IS NULL")
            .bind(verify_until).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO signing_keys (kid, seed, created_at, signs_from) VALUES ($1, $2, $3, $4)")
            .bind(&kid).bind(&seed).bind(now).bind(signs_from).execute(&mut *tx).await?;
    });
    tracing::info!(kid, signs_from, "signing key added");
    Ok(SigningKey {
        kid,
        seed,
        created_at: now,
        signs_from,
        verify_until: None,
    })
}

/// Every stored signing key, oldest first.
pub async fn signing_keys(db: &Db) -> Result<Vec<SigningKey>, sqlx::Error> {
    on_reader!(db, pool => sqlx::query_as(
        "SELECT kid, seed, created_at, signs_from, verify_until FROM signing_keys ORDER BY created_at, kid")
        .fetch_all(pool).await)
}

/// Seconds of clock skew the token verifier allows past `exp`.
pub const TOKEN_LEEWAY_SECS: u64 = 5;

/// Stores the deployment's first signing key when there is none. Its seed comes from
/// `server_keys`, where nodes starting together agree on one (and deployments from before
/// rotation keep the key their tokens were signed with).
async fn first_signing_key(db: &Db) -> Result<(), KeyError> {
    let seed = stored_or_new(db, JWT_KEY, || {
        STANDARD.encode(ed25519_dalek::SigningKey::generate(&mut OsRng).to_bytes())
    })
    .await?;
    let kid = kid_of(&ed25519_from_seed(&seed)?.verifying_key().to_bytes());
    on_writer!(db, pool => sqlx::query(
        "INSERT INTO signing_keys (kid, seed, created_at, signs_from) \
         SELECT $1, $2, $3, 0 WHERE NOT EXISTS (SELECT 1 FROM signing_keys) ON CONFLICT (kid) DO NOTHING")
        .bind(&kid).bind(&seed).bind(now_ms()).execute(pool).await.map(drop))?;
    Ok(())
}

fn ed25519_from_seed(seed_b64: &str) -> Result<ed25519_dalek::SigningKey, KeyError> {
    let seed: [u8; 32] = STANDARD
        .decode(seed_b64)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::Corrupt(JWT_KEY, "not 32 base64 bytes".into()))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

fn kid_of(public: &[u8]) -> String {
    hex_prefix(&Sha256::digest(public), 8)
}

/// Makes a fresh VAPID key pair (for `vigil vapid-keys`).
pub fn generate_vapid() -> Result<VapidKeys, KeyError> {
    vapid_from_secret(&URL_SAFE_NO_PAD.encode(p256::SecretKey::random(&mut OsRng).to_bytes()))
}

fn vapid_from_secret(secret_b64: &str) -> Result<VapidKeys, KeyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(secret_b64)
        .map_err(|e| KeyError::Corrupt(VAPID_KEY, e.to_string()))?;
    let secret = p256::SecretKey::from_slice(&bytes)
        .map_err(|e| KeyError::Corrupt(VAPID_KEY, e.to_string()))?;
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
    Ok(VapidKeys {
        public_key: URL_SAFE_NO_PAD.encode(point.as_bytes()),
        private_key: secret_b64.to_string(),
    })
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

/// Reads a stored key or stores `make()`; when two nodes race, the first insert wins for both.
async fn stored_or_new(
    db: &Db,
    name: &'static str,
    make: impl FnOnce() -> String,
) -> Result<String, sqlx::Error> {
    let candidate = make();
    on_writer!(db, pool => {
        sqlx::query("INSERT INTO server_keys (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name).bind(&candidate).bind(now_ms())
            .execute(pool).await.map(drop)
    })?;
    on_reader!(db, pool => {
        sqlx::query_scalar::<_, String>("SELECT value FROM server_keys WHERE name = $1")
            .bind(name).fetch_one(pool).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vapid_public_key_is_an_uncompressed_p256_point() {
        let k = generate_vapid().expect("vapid");
        let raw = URL_SAFE_NO_PAD.decode(&k.public_key).expect("base64url");
        assert_eq!(raw.len(), 65);
        assert_eq!(raw[0], 4);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&k.private_key).expect("b64").len(),
            32
        );
    }

    fn key(seed: u8, signs_from: i64, verify_until: Option<i64>) -> SigningKey {
        let seed = STANDARD.encode([seed; 32]);
        let kid = kid_of(
            &ed25519_from_seed(&seed)
                .expect("seed")
                .verifying_key()
                .to_bytes(),
        );
        SigningKey {
            kid,
            seed,
            created_at: signs_from,
            signs_from,
            verify_until,
        }
    }

    #[test]
    fn the_newest_key_in_force_signs_and_every_live_one_verifies() {
        let vapid = generate_vapid().expect("vapid");
        let (old, new) = (key(1, 0, Some(2_000)), key(2, 1_000, None));
        let stored = [old.clone(), new.clone()];
        let before = Keys::from_stored(&stored, vapid.clone(), 500).expect("keys");
        assert_eq!(
            before.kid(),
            old.kid,
            "a published key does not sign before its time"
        );
        assert!(
            before.decoding(&new.kid).is_some(),
            "but it verifies already"
        );
        let during = Keys::from_stored(&stored, vapid.clone(), 1_500).expect("keys");
        assert_eq!(during.kid(), new.kid);
        assert!(during.decoding(&old.kid).is_some());
        assert_eq!(during.jwks["keys"].as_array().map(Vec::len), Some(2));
        let after = Keys::from_stored(&stored, vapid.clone(), 2_000).expect("keys");
        assert!(
            after.decoding(&old.kid).is_none(),
            "retired once its tokens have expired"
        );
        assert_eq!(after.jwks["keys"].as_array().map(Vec::len), Some(1));
        let mut corrupt = key(3, 0, None);
        corrupt.seed = "short".into();
        assert!(Keys::from_stored(&[corrupt], vapid.clone(), 0).is_err());
        let mut swapped = key(4, 0, None);
        swapped.kid = old.kid.clone();
        assert!(
            Keys::from_stored(&[swapped], vapid, 0).is_err(),
            "a seed must match its id"
        );
    }
}
