//! Blob storage behind the `Blobs` port: content-addressed objects (`sha256/ab/cd/<sha256>`) on the
//! local filesystem (`file://`, [`FsBlobs`]) or any S3-compatible object store (`s3://`,
//! [`S3Blobs`]). Both return from a write only when the whole object is durable; both keep uploads
//! spooled on local disk (`staging_dir`) until they are stored.

mod fs;
mod s3;
mod staged;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use yilian_app::ports::{BlobStream, Blobs, PortError};
use yilian_config::BlobsConfig;

pub use fs::FsBlobs;
pub use s3::{S3Blobs, S3Tuning};
pub use staged::StagedBlobs;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blobs.url {0:?} is not supported: use file://path or s3://bucket/prefix")]
    Unsupported(String),
    #[error("cannot prepare the folder {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the blob store: {0}")]
    Open(#[from] object_store::Error),
}

/// Opens the store `[blobs]` names: `file://relative` or `file:///absolute`, or `s3://bucket/prefix`
/// with the S3 keys of the section.
pub fn open_blobs(cfg: &BlobsConfig) -> Result<Arc<dyn Blobs>, BlobError> {
    if let Some(root) = cfg.file_root() {
        return Ok(Arc::new(FsBlobs::open_with_staging(&root, &cfg.staging())?));
    }
    if cfg.s3_location().is_some() {
        let remote = S3Blobs::open(cfg)?;
        if cfg.ack_after == yilian_config::AckAfter::Local {
            return Ok(Arc::new(StagedBlobs::new(
                &cfg.staging().join("outbox"),
                remote,
            )?));
        }
        return Ok(Arc::new(remote));
    }
    Err(BlobError::Unsupported(cfg.url.clone()))
}

/// The object path of a blob key; keys come from `ingest::blob_key`, so a bad one is a bug or a
/// damaged catalog row.
pub(crate) fn object_path(key: &str) -> Result<object_store::path::Path, PortError> {
    object_store::path::Path::parse(key)
        .map_err(|e| PortError::Corrupt(format!("blob key {key:?}: {e}")))
}

/// Maps a store error: a missing object is `NotFound`, anything else `Unavailable`.
pub(crate) fn port_error(key: &str, e: object_store::Error) -> PortError {
    match e {
        object_store::Error::NotFound { .. } => PortError::NotFound(key.to_string()),
        other => PortError::Unavailable(format!("blob {key}: {other}")),
    }
}

/// An object as the store's chunks (`Blobs::get_stream`): the request is made here, so a missing
/// object fails before any chunk; the chunks are read as the caller polls.
pub(crate) async fn stream_object(
    store: &dyn ObjectStore,
    key: &str,
    path: &object_store::path::Path,
) -> Result<BlobStream, PortError> {
    use futures::{StreamExt, TryStreamExt};
    let got = store
        .get_opts(path, GetOptions::default())
        .await
        .map_err(|e| port_error(key, e))?;
    let key = key.to_string();
    Ok(got
        .into_stream()
        .map_err(move |e| port_error(&key, e))
        .boxed())
}

/// Bytes `range` of an object (the `Blobs::get_range` contract: end clamped, empty range empty, a
/// start at or past the end `NotFound`).
pub(crate) async fn read_range(
    store: &dyn ObjectStore,
    key: &str,
    range: Range<u64>,
) -> Result<Bytes, PortError> {
    if range.start >= range.end {
        return Ok(Bytes::new());
    }
    let path = object_path(key)?;
    let opts = GetOptions::default().with_range(Some(GetRange::Bounded(range.clone())));
    let got = match store.get_opts(&path, opts).await {
        Ok(got) => got,
        Err(e) => {
            // Out of range is an error whose form differs between stores: ask for the size.
            return Err(match head_size(store, key).await {
                Ok(None) => PortError::NotFound(key.to_string()),
                Ok(Some(size)) if range.start >= size => {
                    PortError::NotFound(format!("{key}: bytes from {} (size {size})", range.start))
                }
                _ => port_error(key, e),
            });
        }
    };
    got.bytes().await.map_err(|e| port_error(key, e))
}

/// The object's size; `None` when it does not exist.
pub(crate) async fn head_size(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<u64>, PortError> {
    let path = object_path(key)?;
    match store.head(&path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(port_error(key, e)),
    }
}

/// Lists `prefix` in `store`, keys given back without `strip` (an S3 store's own prefix).
pub(crate) async fn list_blobs(
    store: &dyn ObjectStore,
    prefix: &str,
    strip: &str,
) -> Result<Vec<yilian_app::ports::BlobInfo>, PortError> {
    use futures::TryStreamExt;
    let path = object_path(prefix.trim_end_matches('/'))?;
    let metas: Vec<object_store::ObjectMeta> = match store.list(Some(&path)).try_collect().await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(port_error(prefix, e)),
    };
    Ok(metas
        .into_iter()
        .filter_map(|m| {
            let full = m.location.to_string();
            let key = full.strip_prefix(strip)?.to_string();
            Some(yilian_app::ports::BlobInfo {
                key,
                size: m.size,
                modified: yilian_domain::UnixMillis(m.last_modified.timestamp_millis()),
            })
        })
        .collect())
}

/// Deletes `path`; already gone is fine.
pub(crate) async fn delete_blob(
    store: &dyn ObjectStore,
    key: &str,
    path: &object_store::path::Path,
) -> Result<(), PortError> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(port_error(key, e)),
    }
}
