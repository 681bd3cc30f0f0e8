//! Blobs on the local filesystem. Reads go through `object_store`; writes are done here so the
//! order is durable: write to the staging folder, fsync the file, rename into the content address,
//! fsync the folder — `put` returns after all four, so an acknowledged instance survives a crash and
//! a named blob is never incomplete.

use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::local::LocalFileSystem;
use yilian_app::ports::{Blobs, PortError};

use super::{BlobError, head_size, object_path, port_error, read_range};

/// Blobs on the local filesystem under one root folder.
#[derive(Debug)]
pub struct FsBlobs {
    root: PathBuf,
    staging: PathBuf,
    store: LocalFileSystem,
}

impl FsBlobs {
    /// Blobs under `root`, uploads spooled in `root/.staging` (same filesystem: moved, not copied).
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        Self::open_with_staging(root, &root.join(".staging"))
    }

    /// Blobs under `root`, uploads spooled in `staging` (another filesystem works: the file is
    /// then copied and fsynced instead of renamed).
    pub fn open_with_staging(root: &Path, staging: &Path) -> Result<Self, BlobError> {
        let dir = |path: &Path, source| BlobError::Dir {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(root).map_err(|e| dir(root, e))?;
        let root = root.canonicalize().map_err(|e| dir(root, e))?;
        std::fs::create_dir_all(staging).map_err(|e| dir(staging, e))?;
        let staging = staging.canonicalize().map_err(|e| dir(staging, e))?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(FsBlobs {
            root,
            staging,
            store,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Moves `src` to `dest` (rename when on the same filesystem, else copy), with the file and its
    /// folder fsynced before returning. An existing `dest` holds the same content (content-addressed
    /// keys), so it is kept and `src` dropped.
    fn move_durably(src: &Path, dest: &Path) -> std::io::Result<()> {
        // Keep an existing blob only when its content really is its name: a crash between a rename
        // and its fsync can leave a named file with lost content, and a retry must repair it.
        if dest.is_file() && Self::holds_its_name(dest)? {
            let _ = std::fs::remove_file(src);
            return Ok(());
        }
        let dir = dest
            .parent()
            .ok_or_else(|| std::io::Error::other("blob key without folder"))?;
        std::fs::create_dir_all(dir)?;
        std::fs::File::open(src)?.sync_all()?;
        if std::fs::rename(src, dest).is_err() {
            let tmp = dir.join(format!(
                ".{}.{}.tmp",
                dest.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
                std::process::id()
            ));
            std::fs::copy(src, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, dest)?;
            let _ = std::fs::remove_file(src);
        }
        std::fs::File::open(dir)?.sync_all()
    }

    /// True when the file's SHA-256 is its file name (content-addressed keys end in the hex digest).
    fn holds_its_name(path: &Path) -> std::io::Result<bool> {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Ok(false);
        };
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Not a content address (tests, other keys): trust an existing file of this name.
            return Ok(true);
        }
        Ok(yilian_app::ingest::sha256_file(path)?.0 == name)
    }
}

#[async_trait]
impl Blobs for FsBlobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), PortError> {
        object_path(key)?;
        // Write to `.staging` beside the blobs (same filesystem, whatever the spool folder), fsync,
        // then rename into place and fsync the folder: a named blob is always complete
        // (object_store's local put renames before anything is fsynced).
        let staging = self.root.join(".staging");
        let dest = self.root.join(key);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&staging)?;
            let tmp = staging.join(format!("put-{}", ulid::Ulid::new()));
            std::fs::write(&tmp, &bytes)?;
            let r = Self::move_durably(&tmp, &dest);
            let _ = std::fs::remove_file(&tmp);
            r
        })
        .await
        .map_err(|e| PortError::Unavailable(e.to_string()))?
        .map_err(|e| PortError::Unavailable(format!("store blob: {e}")))
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), PortError> {
        object_path(key)?;
        let dest = self.root.join(key);
        let src = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::move_durably(&src, &dest))
            .await
            .map_err(|e| PortError::Unavailable(e.to_string()))?
            .map_err(|e| PortError::Unavailable(format!("store file: {e}")))
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        Some(self.staging.clone())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<yilian_app::ports::BlobInfo>, PortError> {
        super::list_blobs(&self.store, prefix, "").await
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        let path = object_path(key)?;
        super::delete_blob(&self.store, key, &path).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, PortError> {
        let path = object_path(key)?;
        let got = self
            .store
            .get(&path)
            .await
            .map_err(|e| port_error(key, e))?;
        got.bytes().await.map_err(|e| port_error(key, e))
    }

    async fn get_stream(&self, key: &str) -> Result<yilian_app::ports::BlobStream, PortError> {
        let path = object_path(key)?;
        super::stream_object(&self.store, key, &path).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, PortError> {
        read_range(&self.store, key, range).await
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, PortError> {
        head_size(&self.store, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_then_get_is_bit_exact_and_missing_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobs::open(&dir.path().join("blobs")).unwrap();
        let data = Bytes::from_static(b"\x00\x01DICM\xff");
        blobs.put("sha256/ab/cd/abcd", data.clone()).await.unwrap();
        assert_eq!(blobs.get("sha256/ab/cd/abcd").await.unwrap(), data);
        assert!(dir.path().join("blobs/sha256/ab/cd/abcd").is_file());
        // Writing the same key again (same content, content-addressed) is harmless.
        blobs.put("sha256/ab/cd/abcd", data.clone()).await.unwrap();
        // A spooled file is moved in, durably, and is gone from the staging folder.
        let staging = blobs.staging_dir().unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        let spooled = staging.join("upload-1");
        std::fs::write(&spooled, b"spooled").unwrap();
        blobs.put_file("sha256/ef/01/ef01", &spooled).await.unwrap();
        assert_eq!(
            &blobs.get("sha256/ef/01/ef01").await.unwrap()[..],
            b"spooled"
        );
        assert!(!spooled.exists());
        // A damaged blob under a content address is replaced, not trusted.
        let good = b"content";
        let sha = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(good))
        };
        let key = format!("sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]);
        let dest = blobs.root().join(&key);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, b"\0\0\0\0\0\0\0").unwrap();
        let again = staging.join("upload-2");
        std::fs::write(&again, good).unwrap();
        blobs.put_file(&key, &again).await.unwrap();
        assert_eq!(&blobs.get(&key).await.unwrap()[..], good);
        // From another folder (copy path when rename is impossible is the same code after rename fails).
        let elsewhere = dir.path().join("other-file");
        std::fs::write(&elsewhere, b"other").unwrap();
        blobs
            .put_file("sha256/ef/02/ef02", &elsewhere)
            .await
            .unwrap();
        assert_eq!(&blobs.get("sha256/ef/02/ef02").await.unwrap()[..], b"other");
        assert!(matches!(
            blobs.get("sha256/00/00/none").await,
            Err(PortError::NotFound(_))
        ));
    }
}
