//! Server key material: the Ed25519 key that signs access tokens and the P-256 VAPID key for web
//! push. Generated on first start and kept in the database, so every node of a deployment signs
//! with the same key and a restart does not log everybody out.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::db::{Db, now_ms};
use crate::{on_reader, on_writer};

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

/// The keys a running server signs with.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Key id placed in every token header and in the JWKS.
    pub kid: String,
    /// The public JSON Web Key Set served at `/.well-known/jwks.json`.
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
            .field("kid", &self.kid)
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

impl Keys {
    /// The key that signs access tokens.
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The key that verifies access tokens.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// Loads the deployment's keys, generating and storing any that are missing.
    pub async fn load_or_create(db: &Db) -> Result<Keys, KeyError> {
        let seed = stored_or_new(db, JWT_KEY, || {
            STANDARD.encode(SigningKey::generate(&mut OsRng).to_bytes())
        })
        .await?;
        let vapid_secret = stored_or_new(db, VAPID_KEY, || {
            URL_SAFE_NO_PAD.encode(p256::SecretKey::random(&mut OsRng).to_bytes())
        })
        .await?;
        Keys::from_stored(&seed, &vapid_secret)
    }

    fn from_stored(seed_b64: &str, vapid_b64: &str) -> Result<Keys, KeyError> {
        let seed: [u8; 32] = STANDARD
            .decode(seed_b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Corrupt(JWT_KEY, "not 32 base64 bytes".into()))?;
        let signing = SigningKey::from_bytes(&seed);
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| KeyError::Corrupt(JWT_KEY, e.to_string()))?;
        let public = signing.verifying_key().to_bytes();
        let x = URL_SAFE_NO_PAD.encode(public);
        let kid = hex_prefix(&Sha256::digest(public), 8);
        let decoding = DecodingKey::from_ed_components(&x)
            .map_err(|e| KeyError::Corrupt(JWT_KEY, e.to_string()))?;
        let jwks = serde_json::json!({
            "keys": [{ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x }]
        });
        Ok(Keys {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding,
            kid,
            jwks,
            vapid: vapid_from_secret(vapid_b64)?,
        })
    }
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

    #[test]
    fn stored_keys_rebuild_the_same_kid_and_reject_corruption() {
        let seed = STANDARD.encode([7u8; 32]);
        let vapid = generate_vapid().expect("vapid");
        let a = Keys::from_stored(&seed, &vapid.private_key).expect("keys");
        let b = Keys::from_stored(&seed, &vapid.private_key).expect("keys");
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.vapid.public_key, vapid.public_key);
        assert!(Keys::from_stored("short", &vapid.private_key).is_err());
    }
}
