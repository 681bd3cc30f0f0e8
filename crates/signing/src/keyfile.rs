//! The key file: a signer's private key at rest. JSON (`yilian.key/1`) with the public half in clear
//! (algorithm, key id, public key, so the hub can publish and name the key without the passphrase)
//! and the secret either sealed with the signer's passphrase — Argon2id (RFC 9106) derives a 256-bit
//! key, XChaCha20-Poly1305 encrypts the secret with the algorithm and key id as associated data — or,
//! for demo and auto-created keys, in clear. The older format (64 hex digits of an Ed25519 seed) is
//! still read as an unprotected Ed25519 key. Passphrases, derived keys and decrypted secrets are
//! wiped when dropped.

use argon2::Argon2;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{Algorithm, KeyError, SigningKeyPair};

pub const KEY_FILE_FORMAT: &str = "yilian.key/1";

/// Argon2id cost of newly sealed keys: 19 MiB, 2 passes, 1 lane (the RFC 9106 / OWASP minimum
/// profile). Stored per file, so raising it later leaves existing files readable.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

/// A signer's passphrase. Never printed (`Debug` is redacted), wiped when dropped.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl<'de> Deserialize<'de> for Passphrase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Passphrase::new)
    }
}

impl Passphrase {
    pub fn new(s: impl Into<String>) -> Self {
        Passphrase(Zeroizing::new(s.into()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("the key file is not a Yilian key file: {0}")]
    Malformed(String),
    #[error("the key is protected by a passphrase and none was given")]
    PassphraseRequired,
    #[error("the passphrase is wrong")]
    WrongPassphrase,
    #[error(transparent)]
    Key(#[from] KeyError),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// `argon2id`
    pub name: String,
    /// Standard base64, 16 bytes.
    pub salt: String,
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyFile {
    pub format: String,
    pub algorithm: Algorithm,
    pub key_id: String,
    /// Standard base64 of the raw public key.
    pub public_key: String,
    /// `None`: the secret is in clear (no passphrase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfParams>,
    /// `XChaCha20-Poly1305` when sealed; `none` in clear.
    pub cipher: String,
    /// Standard base64 of the 24-byte nonce (sealed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Standard base64 of the sealed secret, or of the secret itself when in clear.
    pub secret: String,
}

fn aad(algorithm: Algorithm, key_id: &str) -> Vec<u8> {
    format!("{KEY_FILE_FORMAT}\n{}\n{key_id}", algorithm.as_str()).into_bytes()
}

fn derive(
    passphrase: &Passphrase,
    salt: &[u8],
    memory_kib: u32,
    passes: u32,
    lanes: u32,
) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let params = argon2::Params::new(memory_kib, passes, lanes, Some(32))
        .map_err(|e| KeyFileError::Malformed(format!("argon2 parameters: {e}")))?;
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.expose().as_bytes(), salt, &mut out[..])
        .map_err(|e| KeyFileError::Malformed(format!("argon2: {e}")))?;
    Ok(out)
}

fn random<const N: usize>() -> Result<[u8; N], KeyFileError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(b)
}

impl KeyFile {
    /// The key file of `key`: sealed with `passphrase` when given (and not empty), else in clear.
    pub fn seal(
        key: &SigningKeyPair,
        passphrase: Option<&Passphrase>,
    ) -> Result<Self, KeyFileError> {
        let algorithm = key.algorithm();
        let key_id = key.key_id();
        let secret = key.secret_bytes();
        match passphrase.filter(|p| !p.is_empty()) {
            None => Ok(KeyFile {
                format: KEY_FILE_FORMAT.into(),
                algorithm,
                key_id,
                public_key: key.public_key_base64(),
                kdf: None,
                cipher: "none".into(),
                nonce: None,
                secret: STANDARD.encode(secret.as_slice()),
            }),
            Some(p) => {
                let salt = random::<16>()?;
                let nonce = random::<24>()?;
                let k = derive(p, &salt, ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES)?;
                let cipher = XChaCha20Poly1305::new_from_slice(&k[..])
                    .map_err(|_| KeyFileError::Malformed("cipher key length".into()))?;
                let sealed = cipher
                    .encrypt(
                        &XNonce::from(nonce),
                        Payload {
                            msg: secret.as_slice(),
                            aad: &aad(algorithm, &key_id),
                        },
                    )
                    .map_err(|_| KeyFileError::Malformed("encryption failed".into()))?;
                Ok(KeyFile {
                    format: KEY_FILE_FORMAT.into(),
                    algorithm,
                    key_id,
                    public_key: key.public_key_base64(),
                    kdf: Some(KdfParams {
                        name: "argon2id".into(),
                        salt: STANDARD.encode(salt),
                        memory_kib: ARGON2_MEMORY_KIB,
                        passes: ARGON2_PASSES,
                        lanes: ARGON2_LANES,
                    }),
                    cipher: "XChaCha20-Poly1305".into(),
                    nonce: Some(STANDARD.encode(nonce)),
                    secret: STANDARD.encode(sealed),
                })
            }
        }
    }

    /// Reads a key file: this format, or the older 64 hex digits of an Ed25519 seed (in clear).
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let t = text.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let key = SigningKeyPair::from_seed_hex(t)?;
            return Self::seal(&key, None);
        }
        let f: KeyFile =
            serde_json::from_str(t).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        if f.format != KEY_FILE_FORMAT {
            return Err(KeyFileError::Malformed(format!("format {}", f.format)));
        }
        Ok(f)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Whether a passphrase protects the secret.
    pub fn is_sealed(&self) -> bool {
        self.kdf.is_some()
    }

    /// The private key. A sealed file needs its passphrase (a wrong one fails authentication and
    /// yields nothing); a file in clear ignores any passphrase given. The decrypted key must match
    /// the file's public key and key id.
    pub fn unlock(&self, passphrase: Option<&Passphrase>) -> Result<SigningKeyPair, KeyFileError> {
        let data = STANDARD
            .decode(&self.secret)
            .map_err(|_| KeyFileError::Malformed("secret is not base64".into()))?;
        let secret = match &self.kdf {
            None => Zeroizing::new(data),
            Some(kdf) => {
                if kdf.name != "argon2id" || self.cipher != "XChaCha20-Poly1305" {
                    return Err(KeyFileError::Malformed(format!(
                        "{} / {} is not supported",
                        kdf.name, self.cipher
                    )));
                }
                let p = passphrase
                    .filter(|p| !p.is_empty())
                    .ok_or(KeyFileError::PassphraseRequired)?;
                let salt = STANDARD
                    .decode(&kdf.salt)
                    .map_err(|_| KeyFileError::Malformed("salt".into()))?;
                let nonce: [u8; 24] = self
                    .nonce
                    .as_deref()
                    .and_then(|n| STANDARD.decode(n).ok())
                    .and_then(|n| n.try_into().ok())
                    .ok_or_else(|| KeyFileError::Malformed("nonce".into()))?;
                let k = derive(p, &salt, kdf.memory_kib, kdf.passes, kdf.lanes)?;
                let cipher = XChaCha20Poly1305::new_from_slice(&k[..])
                    .map_err(|_| KeyFileError::Malformed("cipher key length".into()))?;
                Zeroizing::new(
                    cipher
                        .decrypt(
                            &XNonce::from(nonce),
                            Payload {
                                msg: &data,
                                aad: &aad(self.algorithm, &self.key_id),
                            },
                        )
                        .map_err(|_| KeyFileError::WrongPassphrase)?,
                )
            }
        };
        let key = SigningKeyPair::from_secret(self.algorithm, &secret)?;
        if key.key_id() != self.key_id || key.public_key_base64() != self.public_key {
            return Err(KeyFileError::Malformed(
                "the secret does not belong to the file's public key".into(),
            ));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_need_their_passphrase() {
        for alg in [Algorithm::Sm2, Algorithm::Ed25519] {
            let key = SigningKeyPair::generate_for(alg).unwrap();
            let pass = Passphrase::new("正确 horse battery");
            let file = KeyFile::seal(&key, Some(&pass)).unwrap();
            let text = file.to_json();
            // Neither the secret nor the passphrase appear in the file.
            assert!(!text.contains(&STANDARD.encode(key.secret_bytes().as_slice())));
            assert!(!text.contains("horse"));
            let back = KeyFile::parse(&text).unwrap();
            assert!(back.is_sealed());
            assert_eq!(back.key_id, key.key_id());
            assert_eq!(back.unlock(Some(&pass)).unwrap().key_id(), key.key_id());
            assert!(matches!(
                back.unlock(Some(&Passphrase::new("wrong"))),
                Err(KeyFileError::WrongPassphrase)
            ));
            assert!(matches!(
                back.unlock(None),
                Err(KeyFileError::PassphraseRequired)
            ));
            // The header is bound to the ciphertext: relabelling the key id fails to decrypt.
            let mut relabelled = back.clone();
            relabelled.key_id = "sm2:0000000000000000".into();
            assert!(relabelled.unlock(Some(&pass)).is_err());
        }
        assert_eq!(
            format!("{:?}", Passphrase::new("secret")),
            "Passphrase(***)"
        );
    }

    #[test]
    fn clear_and_legacy_files_are_read() {
        let key = SigningKeyPair::generate_for(Algorithm::Sm2).unwrap();
        let file = KeyFile::parse(&KeyFile::seal(&key, None).unwrap().to_json()).unwrap();
        assert!(!file.is_sealed());
        assert_eq!(file.unlock(None).unwrap().key_id(), key.key_id());
        // Before version 14: 64 hex digits of an Ed25519 seed.
        let legacy = SigningKeyPair::generate().unwrap();
        let file = KeyFile::parse(&format!(
            "{}\n",
            hex::encode(legacy.secret_bytes().as_slice())
        ))
        .unwrap();
        assert_eq!(file.algorithm, Algorithm::Ed25519);
        assert_eq!(file.unlock(None).unwrap().key_id(), legacy.key_id());
        assert!(KeyFile::parse("{}").is_err());
        assert!(KeyFile::parse("not a key").is_err());
    }
}
