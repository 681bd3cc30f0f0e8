//! The file key vault: one key file per signer in `keys.dir/<username>.key` (`yilian.key/1`, see
//! `yilian_signing::keyfile`), written with mode 0600. A signer's file holds the private key sealed
//! with their passphrase (Argon2id + XChaCha20-Poly1305), so the hub stores only ciphertext; the
//! passphrase comes with each sign request, the key is unlocked in memory for that one signature and
//! dropped. Demo keys and the hub's clock key (owner `hub`) are in clear. Files from before version 14
//! (`<username>.ed25519`: 64 hex digits of an Ed25519 seed) are still read. A replaced key's file is
//! kept as `<username>.<algorithm>-<hex>.retired`.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use yilian_app::ports::{KeyVault, PortError, VaultError, VaultKey};
use yilian_domain::Username;
use yilian_signing::{Algorithm, KeyFile, KeyFileError, Passphrase, SigningKeyPair};

#[derive(Debug, Clone)]
pub struct FileKeyVault {
    dir: PathBuf,
}

fn vault_key(f: &KeyFile) -> VaultKey {
    VaultKey {
        key_id: f.key_id.clone(),
        algorithm: f.algorithm.as_str().into(),
        public_key: f.public_key.clone(),
        sealed: f.is_sealed(),
    }
}

impl FileKeyVault {
    pub fn new(dir: &Path) -> Self {
        FileKeyVault {
            dir: dir.to_path_buf(),
        }
    }

    // Usernames are checked slugs (no '/' or '..' components), so these stay inside `dir`.
    fn path(&self, owner: &Username) -> PathBuf {
        self.dir.join(format!("{}.key", owner.as_str()))
    }

    fn legacy_path(&self, owner: &Username) -> PathBuf {
        self.dir.join(format!("{}.ed25519", owner.as_str()))
    }

    /// The owner's current key file and where it is; `None` when there is none.
    fn load(&self, owner: &Username) -> Result<Option<(KeyFile, PathBuf)>, PortError> {
        for path in [self.path(owner), self.legacy_path(owner)] {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let f = KeyFile::parse(&text)
                        .map_err(|e| PortError::Corrupt(format!("{}: {e}", path.display())))?;
                    return Ok(Some((f, path)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(PortError::Unavailable(format!("{}: {e}", path.display()))),
            }
        }
        Ok(None)
    }

    fn create(
        &self,
        owner: &Username,
        algorithm: Algorithm,
        passphrase: Option<&Passphrase>,
        replace: bool,
    ) -> Result<KeyFile, PortError> {
        if let Some((existing, path)) = self.load(owner)? {
            if !replace {
                return Ok(existing);
            }
            let retired = self.dir.join(format!(
                "{}.{}.retired",
                owner.as_str(),
                existing.key_id.replace(':', "-")
            ));
            std::fs::rename(&path, &retired)
                .map_err(|e| PortError::Unavailable(format!("{}: {e}", path.display())))?;
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| PortError::Unavailable(format!("{}: {e}", self.dir.display())))?;
        let key = SigningKeyPair::generate_for(algorithm)
            .map_err(|e| PortError::Unavailable(e.to_string()))?;
        let file = KeyFile::seal(&key, passphrase)
            .map_err(|e| PortError::Unavailable(format!("sealing the key: {e}")))?;
        let path = self.path(owner);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(&path) {
            Ok(mut f) => {
                f.write_all(file.to_json().as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| PortError::Unavailable(e.to_string()))?;
                Ok(file)
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self
                .load(owner)?
                .map(|(f, _)| f)
                .ok_or_else(|| PortError::Unavailable(format!("{} vanished", path.display()))),
            Err(e) => Err(PortError::Unavailable(format!("{}: {e}", path.display()))),
        }
    }

    fn sign_blocking(
        &self,
        owner: &Username,
        key_id: &str,
        message: &[u8],
        passphrase: Option<&Passphrase>,
    ) -> Result<String, VaultError> {
        let (file, _) = self
            .load(owner)?
            .filter(|(f, _)| f.key_id == key_id)
            .ok_or_else(|| PortError::NotFound(format!("key {key_id} of {owner}")))?;
        let key = file.unlock(passphrase).map_err(|e| match e {
            KeyFileError::PassphraseRequired => VaultError::PassphraseRequired,
            KeyFileError::WrongPassphrase => VaultError::WrongPassphrase,
            other => VaultError::Port(PortError::Corrupt(format!("key {key_id}: {other}"))),
        })?;
        Ok(key.sign_base64(message))
        // `key` (and the decrypted secret inside it) is dropped here.
    }
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, PortError> {
    r.map_err(|e| PortError::Unavailable(e.to_string()))
}

#[async_trait]
impl KeyVault for FileKeyVault {
    async fn key_for(&self, owner: &Username) -> Result<Option<VaultKey>, PortError> {
        let me = self.clone();
        let owner = owner.clone();
        let found = joined(tokio::task::spawn_blocking(move || me.load(&owner)).await)??;
        Ok(found.map(|(f, _)| vault_key(&f)))
    }

    async fn create_key(
        &self,
        owner: &Username,
        algorithm: Algorithm,
        passphrase: Option<&Passphrase>,
        replace: bool,
    ) -> Result<VaultKey, PortError> {
        let me = self.clone();
        let owner = owner.clone();
        let passphrase = passphrase.cloned();
        let file = joined(
            tokio::task::spawn_blocking(move || {
                me.create(&owner, algorithm, passphrase.as_ref(), replace)
            })
            .await,
        )??;
        Ok(vault_key(&file))
    }

    async fn sign(
        &self,
        owner: &Username,
        key_id: &str,
        message: &[u8],
        passphrase: Option<&Passphrase>,
    ) -> Result<String, VaultError> {
        let me = self.clone();
        let owner = owner.clone();
        let key_id = key_id.to_string();
        let message = message.to_vec();
        let passphrase = passphrase.cloned();
        // Argon2id is deliberately slow: off the executor.
        joined(
            tokio::task::spawn_blocking(move || {
                me.sign_blocking(&owner, &key_id, &message, passphrase.as_ref())
            })
            .await,
        )?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_signing::{ALGORITHM_SM2, verify_raw};

    #[tokio::test]
    async fn keys_persist_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let v = FileKeyVault::new(dir.path());
        let u = Username::new("li.reader").unwrap();
        assert!(v.key_for(&u).await.unwrap().is_none());
        let k1 = v.create_key(&u, Algorithm::Sm2, None, false).await.unwrap();
        assert_eq!(k1.algorithm, ALGORITHM_SM2);
        assert!(!k1.sealed);
        // Without `replace` an existing key is kept.
        let again = v
            .create_key(&u, Algorithm::Ed25519, None, false)
            .await
            .unwrap();
        assert_eq!(again.key_id, k1.key_id);
        let k2 = FileKeyVault::new(dir.path())
            .key_for(&u)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(k1.key_id, k2.key_id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("li.reader.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(v.sign(&u, "sm2:0000", b"x", None).await.is_err());
        assert!(!v.sign(&u, &k1.key_id, b"x", None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn sealed_keys_sign_only_with_their_passphrase() {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let dir = tempfile::tempdir().unwrap();
        let v = FileKeyVault::new(dir.path());
        let u = Username::new("zhao.reader").unwrap();
        let old = v.create_key(&u, Algorithm::Sm2, None, false).await.unwrap();
        let pass = Passphrase::new("县医院 2026");
        let k = v
            .create_key(&u, Algorithm::Sm2, Some(&pass), true)
            .await
            .unwrap();
        assert!(k.sealed);
        assert_ne!(k.key_id, old.key_id);
        // The replaced key is retired beside, not deleted; the file holds no clear secret.
        assert!(
            dir.path()
                .join(format!(
                    "zhao.reader.{}.retired",
                    old.key_id.replace(':', "-")
                ))
                .exists()
        );
        let text = std::fs::read_to_string(dir.path().join("zhao.reader.key")).unwrap();
        assert!(text.contains("argon2id") && !text.contains("县医院"));
        assert!(matches!(
            v.sign(&u, &k.key_id, b"m", None).await,
            Err(VaultError::PassphraseRequired)
        ));
        assert!(matches!(
            v.sign(&u, &k.key_id, b"m", Some(&Passphrase::new("wrong")))
                .await,
            Err(VaultError::WrongPassphrase)
        ));
        let sig = v.sign(&u, &k.key_id, b"m", Some(&pass)).await.unwrap();
        let pk = STANDARD.decode(&k.public_key).unwrap();
        let sig = STANDARD.decode(sig).unwrap();
        assert_eq!(verify_raw(Algorithm::Sm2, &pk, b"m", &sig), Ok(()));
    }

    #[tokio::test]
    async fn ed25519_key_files_from_before_version_14_still_sign() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = SigningKeyPair::generate().unwrap();
        std::fs::write(
            dir.path().join("li.reader.ed25519"),
            hex::encode(legacy.secret_bytes().as_slice()),
        )
        .unwrap();
        let v = FileKeyVault::new(dir.path());
        let u = Username::new("li.reader").unwrap();
        let k = v.key_for(&u).await.unwrap().unwrap();
        assert_eq!(k.key_id, legacy.key_id());
        assert_eq!(
            v.sign(&u, &k.key_id, b"m", None).await.unwrap(),
            legacy.sign_base64(b"m")
        );
    }
}
