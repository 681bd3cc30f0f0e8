//! Signing key pairs behind one type: SM2 over SM3 (GM/T 0003 / GM/T 0004, the alliance default)
//! and Ed25519 (RFC 8032, for international partners). An [`Algorithm`] names which; a key id is
//! `sm2:` or `ed25519:` + 16 hex digits of a digest of the public key (SM3 for SM2, SHA-256 for
//! Ed25519), so the id is derived from the key and a verifier can check the pair.
//!
//! SM2 signatures use the distinguishing ID [`SM2_DISTID`] (`1234567812345678`, the default of
//! GM/T 0009), which enters `Z_A`; a verifier must use the same ID. Public keys are SEC1
//! uncompressed points (65 bytes), signatures the 64-byte `r || s`; Ed25519 keys are 32 bytes,
//! signatures 64 bytes, verified with `verify_strict`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sm2::dsa::signature::Verifier as _;
use sm3::Sm3;
use zeroize::Zeroizing;

pub const ALGORITHM_ED25519: &str = "Ed25519";
pub const ALGORITHM_SM2: &str = "SM2";
/// The SM2 distinguishing ID every Yilian SM2 signature uses (GM/T 0009 default).
pub const SM2_DISTID: &str = "1234567812345678";

/// A signature algorithm the hub signs and verifies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// SM2 signature over SM3 with [`SM2_DISTID`].
    #[serde(rename = "SM2")]
    Sm2,
    #[serde(rename = "Ed25519")]
    Ed25519,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sm2 => ALGORITHM_SM2,
            Algorithm::Ed25519 => ALGORITHM_ED25519,
        }
    }

    /// `SM2` / `Ed25519`, any case.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case(ALGORITHM_SM2) {
            Some(Algorithm::Sm2)
        } else if s.eq_ignore_ascii_case(ALGORITHM_ED25519) {
            Some(Algorithm::Ed25519)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("key material is malformed")]
    Malformed,
}

enum Inner {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    Sm2(Box<sm2::dsa::SigningKey>),
}

/// A private signing key. Its `Debug` shows only the algorithm and key id.
pub struct SigningKeyPair {
    inner: Inner,
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeyPair({})", self.key_id())
    }
}

fn random32() -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut b = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut b[..]).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(b)
}

impl SigningKeyPair {
    /// A new Ed25519 key.
    pub fn generate() -> Result<Self, KeyError> {
        Self::generate_for(Algorithm::Ed25519)
    }

    /// A new key of `algorithm` from the system random number generator.
    pub fn generate_for(algorithm: Algorithm) -> Result<Self, KeyError> {
        loop {
            // For SM2 a random 32-byte string is a valid scalar unless it is 0 or ≥ n (p ≈ 2^-32).
            match Self::from_secret(algorithm, &random32()?[..]) {
                Ok(k) => return Ok(k),
                Err(KeyError::Malformed) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// From the secret: the 32-byte Ed25519 seed, or the 32-byte big-endian SM2 scalar.
    pub fn from_secret(algorithm: Algorithm, secret: &[u8]) -> Result<Self, KeyError> {
        let inner = match algorithm {
            Algorithm::Ed25519 => {
                let seed: [u8; 32] = secret.try_into().map_err(|_| KeyError::Malformed)?;
                let seed = Zeroizing::new(seed);
                Inner::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            Algorithm::Sm2 => {
                if secret.len() != 32 {
                    return Err(KeyError::Malformed);
                }
                Inner::Sm2(Box::new(
                    sm2::dsa::SigningKey::from_slice(SM2_DISTID, secret)
                        .map_err(|_| KeyError::Malformed)?,
                ))
            }
        };
        Ok(SigningKeyPair { inner })
    }

    /// From the 32-byte Ed25519 seed written as 64 hex characters (the key file format before
    /// version 14; still read).
    pub fn from_seed_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(hex::decode(s.trim()).map_err(|_| KeyError::Malformed)?);
        Self::from_secret(Algorithm::Ed25519, &bytes)
    }

    /// The secret (see [`SigningKeyPair::from_secret`]); wiped when dropped.
    pub fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match &self.inner {
            Inner::Ed25519(k) => k.to_bytes().to_vec(),
            Inner::Sm2(k) => k.to_bytes().to_vec(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match &self.inner {
            Inner::Ed25519(_) => Algorithm::Ed25519,
            Inner::Sm2(_) => Algorithm::Sm2,
        }
    }

    /// The raw public key: 32 bytes (Ed25519) or the 65-byte uncompressed SEC1 point (SM2).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.inner {
            Inner::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            Inner::Sm2(k) => k.verifying_key().to_sec1_bytes().to_vec(),
        }
    }

    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.public_key_bytes())
    }

    /// See [`key_id_of`].
    pub fn key_id(&self) -> String {
        key_id_of(self.algorithm(), &self.public_key_bytes())
    }

    /// Signs `message`: Ed25519, or SM2 over SM3 with [`SM2_DISTID`] (deterministic nonce).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.inner {
            Inner::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            Inner::Sm2(k) => {
                let sig: sm2::dsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
        }
    }

    /// Signs `message`; the signature in standard base64.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        STANDARD.encode(self.sign(message))
    }
}

/// The Ed25519 key id (kept for callers from before SM2): see [`key_id_of`].
pub fn key_id_for(public_key: &[u8]) -> String {
    key_id_of(Algorithm::Ed25519, public_key)
}

/// `ed25519:` + the first 16 hex digits of SHA-256 over the raw public key, or `sm2:` + the first
/// 16 hex digits of SM3 over the uncompressed SEC1 point.
pub fn key_id_of(algorithm: Algorithm, public_key: &[u8]) -> String {
    match algorithm {
        Algorithm::Ed25519 => format!("ed25519:{}", &hex::encode(Sha256::digest(public_key))[..16]),
        Algorithm::Sm2 => format!("sm2:{}", &sm3_hex(public_key)[..16]),
    }
}

/// SM3 (GB/T 32905) of `bytes`, lower-case hex.
pub fn sm3_hex(bytes: &[u8]) -> String {
    hex::encode(Sm3::digest(bytes))
}

/// Why a signature did not verify under a public key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RawVerifyError {
    #[error("the public key is malformed")]
    BadKey,
    #[error("the signature does not verify")]
    BadSignature,
}

/// Verifies a raw signature over `message` with a raw public key of `algorithm`.
pub fn verify_raw(
    algorithm: Algorithm,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), RawVerifyError> {
    match algorithm {
        Algorithm::Ed25519 => {
            let pk: [u8; 32] = public_key.try_into().map_err(|_| RawVerifyError::BadKey)?;
            let vk =
                ed25519_dalek::VerifyingKey::from_bytes(&pk).map_err(|_| RawVerifyError::BadKey)?;
            let sig: [u8; 64] = signature
                .try_into()
                .map_err(|_| RawVerifyError::BadSignature)?;
            vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .map_err(|_| RawVerifyError::BadSignature)
        }
        Algorithm::Sm2 => {
            let vk = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DISTID, public_key)
                .map_err(|_| RawVerifyError::BadKey)?;
            let sig = sm2::dsa::Signature::from_slice(signature)
                .map_err(|_| RawVerifyError::BadSignature)?;
            vk.verify(message, &sig)
                .map_err(|_| RawVerifyError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_round_trip_keeps_the_key_id() {
        let k = SigningKeyPair::generate().unwrap();
        let k2 = SigningKeyPair::from_seed_hex(&hex::encode(k.secret_bytes().as_slice())).unwrap();
        assert_eq!(k.key_id(), k2.key_id());
        assert!(k.key_id().starts_with("ed25519:"));
        assert_eq!(k.key_id().len(), "ed25519:".len() + 16);
        assert!(!format!("{k:?}").contains(&hex::encode(k.secret_bytes().as_slice())));
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

    #[test]
    fn sm3_published_test_vectors() {
        // GB/T 32905-2016 (GM/T 0004-2012) Appendix A, examples 1 and 2.
        assert_eq!(
            sm3_hex(b"abc"),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(
            sm3_hex("abcd".repeat(16).as_bytes()),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
    }

    #[test]
    fn sm2_signs_and_verifies_and_detects_tampering() {
        let k = SigningKeyPair::generate_for(Algorithm::Sm2).unwrap();
        assert_eq!(k.algorithm(), Algorithm::Sm2);
        assert!(k.key_id().starts_with("sm2:"));
        assert_eq!(k.key_id().len(), "sm2:".len() + 16);
        let pk = k.public_key_bytes();
        assert_eq!(pk.len(), 65);
        assert_eq!(pk[0], 0x04, "uncompressed SEC1 point");
        let msg = "双肺纹理清晰".as_bytes();
        let sig = k.sign(msg);
        assert_eq!(sig.len(), 64);
        assert_eq!(verify_raw(Algorithm::Sm2, &pk, msg, &sig), Ok(()));
        // The secret round-trips to the same key.
        let k2 = SigningKeyPair::from_secret(Algorithm::Sm2, &k.secret_bytes()).unwrap();
        assert_eq!(k2.key_id(), k.key_id());
        // Changed message, changed signature, other key, other algorithm: all refused.
        assert_eq!(
            verify_raw(Algorithm::Sm2, &pk, "双肺纹理增粗".as_bytes(), &sig),
            Err(RawVerifyError::BadSignature)
        );
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert_eq!(
            verify_raw(Algorithm::Sm2, &pk, msg, &bad),
            Err(RawVerifyError::BadSignature)
        );
        let other = SigningKeyPair::generate_for(Algorithm::Sm2).unwrap();
        assert_eq!(
            verify_raw(Algorithm::Sm2, &other.public_key_bytes(), msg, &sig),
            Err(RawVerifyError::BadSignature)
        );
        assert!(verify_raw(Algorithm::Ed25519, &pk, msg, &sig).is_err());
        // The zero scalar is no key.
        assert!(SigningKeyPair::from_secret(Algorithm::Sm2, &[0u8; 32]).is_err());
    }

    #[test]
    fn sm2_signatures_depend_on_the_distinguishing_id() {
        use sm2::dsa::signature::Verifier as _;
        // A verifier using another ID (e.g. the signer's e-mail) must not accept our signatures:
        // the ID is part of the signed hash Z_A, which is why SM2_DISTID is fixed and documented.
        let k = SigningKeyPair::generate_for(Algorithm::Sm2).unwrap();
        let sig = sm2::dsa::Signature::from_slice(&k.sign(b"report")).unwrap();
        let vk =
            sm2::dsa::VerifyingKey::from_sec1_bytes("li.reader@example", &k.public_key_bytes())
                .unwrap();
        assert!(vk.verify(b"report", &sig).is_err());
    }
}
