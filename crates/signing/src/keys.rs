//! Ed25519 key pairs. SM2 joins here later behind the same shape (algorithm + key id + bytes).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

pub const ALGORITHM_ED25519: &str = "Ed25519";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("key material is malformed: expected 64 hex characters")]
    Malformed,
}

/// A private signing key. Its `Debug` shows only the key id.
pub struct SigningKeyPair {
    key: SigningKey,
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeyPair({})", self.key_id())
    }
}

impl SigningKeyPair {
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// From the 32-byte seed written as 64 hex characters (the key file format).
    pub fn from_seed_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(s.trim()).map_err(|_| KeyError::Malformed)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Malformed)?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn seed_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.key.verifying_key().to_bytes())
    }

    /// `ed25519:` + the first 16 hex digits of SHA-256 over the public key.
    pub fn key_id(&self) -> String {
        key_id_for(&self.key.verifying_key().to_bytes())
    }

    /// Signs `message`; the signature in standard base64.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        STANDARD.encode(self.key.sign(message).to_bytes())
    }
}

pub fn key_id_for(public_key: &[u8]) -> String {
    format!("ed25519:{}", &hex::encode(Sha256::digest(public_key))[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_round_trip_keeps_the_key_id() {
        let k = SigningKeyPair::generate().unwrap();
        let k2 = SigningKeyPair::from_seed_hex(&k.seed_hex()).unwrap();
        assert_eq!(k.key_id(), k2.key_id());
        assert!(k.key_id().starts_with("ed25519:"));
        assert_eq!(k.key_id().len(), "ed25519:".len() + 16);
        assert!(!format!("{k:?}").contains(&k.seed_hex()));
        assert!(SigningKeyPair::from_seed_hex("abcd").is_err());
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1 TEST 1: empty message.
        let k = SigningKeyPair::from_seed_hex(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        )
        .unwrap();
        let sig = STANDARD.decode(k.sign_base64(b"")).unwrap();
        assert_eq!(
            hex::encode(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert_eq!(
            hex::encode(STANDARD.decode(k.public_key_base64()).unwrap()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }
}
