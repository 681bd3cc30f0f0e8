//! The file key vault: one Ed25519 seed per signer in `keys.dir/<username>.ed25519`, created with
//! mode 0600 by the hub process. Private keys never leave the vault; it signs on the owner's behalf
//! (the passphrase-protected, signer-held model arrives with the signatures issue; see ARCHITECTURE.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use yilian_app::ports::{KeyVault, PortError, VaultKey};
use yilian_domain::Username;
use yilian_signing::{ALGORITHM_ED25519, SigningKeyPair};

#[derive(Debug, Clone)]
pub struct FileKeyVault {
    dir: PathBuf,
}

impl FileKeyVault {
    pub fn new(dir: &Path) -> Self {
        FileKeyVault {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, owner: &Username) -> PathBuf {
        // Usernames are checked slugs (no '/' or '..' components), so this stays inside `dir`.
        self.dir.join(format!("{}.ed25519", owner.as_str()))
    }

    fn load_or_create(&self, owner: &Username) -> Result<SigningKeyPair, PortError> {
        let path = self.path(owner);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return SigningKeyPair::from_seed_hex(&text)
                    .map_err(|e| PortError::Corrupt(format!("{}: {e}", path.display())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PortError::Unavailable(format!("{}: {e}", path.display()))),
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| PortError::Unavailable(format!("{}: {e}", self.dir.display())))?;
        let key = SigningKeyPair::generate().map_err(|e| PortError::Unavailable(e.to_string()))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(&path) {
            Ok(mut f) => {
                f.write_all(key.seed_hex().as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| PortError::Unavailable(e.to_string()))?;
                Ok(key)
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.load_or_create(owner),
            Err(e) => Err(PortError::Unavailable(format!("{}: {e}", path.display()))),
        }
    }
}

#[async_trait]
impl KeyVault for FileKeyVault {
    async fn key_for(&self, owner: &Username) -> Result<VaultKey, PortError> {
        let me = self.clone();
        let owner = owner.clone();
        let key = tokio::task::spawn_blocking(move || me.load_or_create(&owner))
            .await
            .map_err(|e| PortError::Unavailable(e.to_string()))??;
        Ok(VaultKey {
            key_id: key.key_id(),
            algorithm: ALGORITHM_ED25519.into(),
            public_key: key.public_key_base64(),
        })
    }

    async fn sign(
        &self,
        owner: &Username,
        key_id: &str,
        message: &[u8],
    ) -> Result<String, PortError> {
        let me = self.clone();
        let o = owner.clone();
        let key = tokio::task::spawn_blocking(move || me.load_or_create(&o))
            .await
            .map_err(|e| PortError::Unavailable(e.to_string()))??;
        if key.key_id() != key_id {
            return Err(PortError::NotFound(format!("key {key_id} of {owner}")));
        }
        Ok(key.sign_base64(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_persist_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let v = FileKeyVault::new(dir.path());
        let u = Username::new("li.reader").unwrap();
        let k1 = v.key_for(&u).await.unwrap();
        let k2 = FileKeyVault::new(dir.path()).key_for(&u).await.unwrap();
        assert_eq!(k1.key_id, k2.key_id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("li.reader.ed25519"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(v.sign(&u, "ed25519:0000", b"x").await.is_err());
        assert!(!v.sign(&u, &k1.key_id, b"x").await.unwrap().is_empty());
    }
}
