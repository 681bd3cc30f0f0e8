//! Write-behind blobs (`blobs.ack_after = "local"`): an upload is durable, and acknowledged, once it
//! is fsynced in a local outbox (`staging_dir/outbox`, laid out like a `file://` store); a background
//! task ([`Blobs::flush_outbox`], called by the server's sweep loop on every replica) uploads each
//! outbox blob to the object store and removes it from the outbox only after the store acknowledged
//! the whole object. Reads look in the outbox first, then in the store, so an acknowledged instance
//! is readable on this host at once and everywhere once uploaded.
//!
//! What this trades (ARCHITECTURE.md, "Durability"): an S3 outage no longer slows or fails ingest,
//! but until its upload a blob exists only on this host's disk — another replica answers "missing"
//! for it, and losing the disk loses it. The outbox survives restarts: a restarted hub uploads what
//! it holds.

use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use yilian_app::ports::{BlobInfo, BlobStream, Blobs, PortError};

use super::{BlobError, FsBlobs, S3Blobs};

pub struct StagedBlobs {
    outbox: FsBlobs,
    remote: S3Blobs,
}

impl StagedBlobs {
    /// The outbox in `outbox` (created when missing) in front of `remote`.
    pub fn new(outbox: &Path, remote: S3Blobs) -> Result<Self, BlobError> {
        Ok(StagedBlobs {
            outbox: FsBlobs::open(outbox)?,
            remote,
        })
    }

    /// The outbox folder.
    pub fn outbox_root(&self) -> &Path {
        self.outbox.root()
    }
}

#[async_trait]
impl Blobs for StagedBlobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), PortError> {
        self.outbox.put(key, bytes).await
    }

    /// Moves the spooled file into the outbox (same filesystem as `staging_dir`: a rename).
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), PortError> {
        self.outbox.put_file(key, path).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, PortError> {
        match self.outbox.get(key).await {
            Err(PortError::NotFound(_)) => self.remote.get(key).await,
            other => other,
        }
    }

    async fn get_stream(&self, key: &str) -> Result<BlobStream, PortError> {
        match self.outbox.get_stream(key).await {
            Err(PortError::NotFound(_)) => self.remote.get_stream(key).await,
            other => other,
        }
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes, PortError> {
        match self.outbox.size(key).await? {
            Some(_) => self.outbox.get_range(key, range).await,
            None => self.remote.get_range(key, range).await,
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, PortError> {
        match self.outbox.size(key).await? {
            Some(n) => Ok(Some(n)),
            None => self.remote.size(key).await,
        }
    }

    /// The store's blobs and the outbox's (not yet uploaded) under `prefix`, each key once.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, PortError> {
        let mut all = self.remote.list(prefix).await?;
        for b in self.outbox.list(prefix).await? {
            if !all.iter().any(|r| r.key == b.key) {
                all.push(b);
            }
        }
        Ok(all)
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.outbox.delete(key).await?;
        self.remote.delete(key).await
    }

    fn staging_dir(&self) -> Option<std::path::PathBuf> {
        self.remote.staging_dir()
    }

    /// Uploads every outbox blob, oldest first, one at a time; each leaves the outbox only after the
    /// store acknowledged it. Stops at the first failure (the store is likely down; the next call
    /// tries again) and reports it.
    async fn flush_outbox(&self) -> Result<usize, PortError> {
        let mut pending = self.outbox.list("sha256").await?;
        pending.sort_by_key(|b| b.modified.0);
        let mut sent = 0;
        for b in pending {
            let path = self.outbox.root().join(&b.key);
            self.remote.upload_file(&b.key, &path).await?;
            self.outbox.delete(&b.key).await?;
            sent += 1;
        }
        Ok(sent)
    }

    async fn outbox_backlog(&self) -> Result<(u64, u64), PortError> {
        let pending = self.outbox.list("sha256").await?;
        Ok((
            pending.len() as u64,
            pending.iter().map(|b| b.size).sum::<u64>(),
        ))
    }
}
