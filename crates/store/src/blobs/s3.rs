//! Blobs on an S3-compatible object store (AWS S3, MinIO, Ceph RGW, …) through object_store's AWS
//! backend. A write returns only after the store acknowledged the whole object: one PUT up to the
//! part size, else a multipart upload completed by CompleteMultipartUpload (an S3 object becomes
//! visible whole or not at all, so a named blob is never partial). Spooled uploads stay on local
//! disk until the store has them, then the spool file is removed. Every request to the store holds
//! one permit of a semaphore (`max_concurrency`), which also bounds the part buffers in flight.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use yilian_app::ports::{Blobs, PortError};
use yilian_config::BlobsConfig;

use super::{BlobError, head_size, object_path, port_error, read_range};

/// How objects are sent: the part size (objects up to it go in one PUT), how many requests may be
/// in flight for the whole store, and how many parts of one upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S3Tuning {
    pub part_size: usize,
    pub max_concurrency: usize,
    pub parts_per_upload: usize,
}

impl S3Tuning {
    /// From `[blobs]`: `part_size_mib`, `max_concurrency`; one upload uses at most 4 (or
    /// `max_concurrency`, when lower) requests at once, so one large object cannot take them all.
    pub fn from_config(cfg: &BlobsConfig) -> Self {
        let max_concurrency = cfg.max_concurrency.max(1);
        S3Tuning {
            part_size: usize::try_from(cfg.part_size_mib.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            max_concurrency,
            parts_per_upload: max_concurrency.min(4),
        }
    }
}

/// Blobs in one bucket under one key prefix.
#[derive(Debug)]
pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    /// `""` or `"prefix/"`.
    prefix: String,
    staging: PathBuf,
    tuning: S3Tuning,
    requests: Arc<Semaphore>,
}

impl S3Blobs {
    /// The store `[blobs]` describes (`url = "s3://bucket/prefix"` and the S3 keys). Credentials:
    /// `access_key_id` with its secret, else object_store's AWS environment chain (`AWS_*`
    /// variables, web identity, instance metadata).
    pub fn open(cfg: &BlobsConfig) -> Result<Self, BlobError> {
        let loc = cfg
            .s3_location()
            .ok_or_else(|| BlobError::Unsupported(cfg.url.clone()))?;
        let mut builder = match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(id), Some(secret)) => AmazonS3Builder::new()
                .with_access_key_id(id)
                .with_secret_access_key(secret),
            _ => AmazonS3Builder::from_env(),
        };
        let mut client = ClientOptions::new()
            .with_allow_http(cfg.allow_http)
            .with_timeout(Duration::from_secs(cfg.request_timeout_secs))
            .with_connect_timeout(Duration::from_secs(10));
        // The alliance's own CA(s) for an https:// endpoint, beside the system roots.
        if let Some(pem) = &cfg.ca_pem {
            for cert in object_store::Certificate::from_pem_bundle(pem)? {
                client = client.with_root_certificate(cert);
            }
        }
        builder = builder
            .with_bucket_name(&loc.bucket)
            .with_region(&cfg.region)
            .with_virtual_hosted_style_request(cfg.virtual_hosted_style)
            .with_client_options(client)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: cfg.max_retries,
                retry_timeout: Duration::from_secs(cfg.retry_timeout_secs),
            });
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        let store = builder.build()?;
        Self::with_store(
            Arc::new(store),
            &loc.prefix,
            &cfg.staging(),
            S3Tuning::from_config(cfg),
        )
    }

    /// Blobs in any object store (tests use object_store's in-memory one) under `prefix`, uploads
    /// spooled in `staging`.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        staging: &Path,
        tuning: S3Tuning,
    ) -> Result<Self, BlobError> {
        std::fs::create_dir_all(staging).map_err(|source| BlobError::Dir {
            path: staging.display().to_string(),
            source,
        })?;
        let prefix = prefix.trim_matches('/');
        let tuning = S3Tuning {
            part_size: tuning.part_size.max(1),
            max_concurrency: tuning.max_concurrency.max(1),
            parts_per_upload: tuning
                .parts_per_upload
                .clamp(1, tuning.max_concurrency.max(1)),
        };
        Ok(S3Blobs {
            store,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            staging: staging.to_path_buf(),
            tuning,
            requests: Arc::new(Semaphore::new(tuning.max_concurrency)),
        })
    }

    pub fn tuning(&self) -> S3Tuning {
        self.tuning
    }

    fn path(&self, key: &str) -> Result<ObjectPath, PortError> {
        object_path(key)?;
        object_path(&format!("{}{key}", self.prefix))
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, PortError> {
        self.requests
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| PortError::Unavailable(format!("blob store closed: {e}")))
    }

    /// One PUT of a whole object.
    async fn put_whole(&self, key: &str, bytes: Bytes) -> Result<(), PortError> {
        let path = self.path(key)?;
        let _permit = self.permit().await?;
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| port_error(key, e))
    }

    /// A multipart upload fed part by part from `source`; aborted (its parts deleted) on failure.
    async fn put_parts(&self, key: &str, mut source: Source) -> Result<(), PortError> {
        let path = self.path(key)?;
        let mut upload = {
            let _permit = self.permit().await?;
            self.store
                .put_multipart(&path)
                .await
                .map_err(|e| port_error(key, e))?
        };
        let sent = self.send_parts(key, upload.as_mut(), &mut source).await;
        let done = match sent {
            Ok(()) => {
                let _permit = self.permit().await?;
                upload
                    .complete()
                    .await
                    .map(|_| ())
                    .map_err(|e| port_error(key, e))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &done {
            tracing::warn!(key, error = %e, "multipart upload failed; aborting it");
            if let Err(abort) = upload.abort().await {
                tracing::warn!(key, error = %abort, "aborting a multipart upload failed (a bucket lifecycle rule removes its parts)");
            }
        }
        done
    }

    /// Reads a part only after a permit is free, so at most `max_concurrency` part buffers exist
    /// for the whole store, and at most `parts_per_upload` for this upload.
    async fn send_parts(
        &self,
        key: &str,
        upload: &mut dyn MultipartUpload,
        source: &mut Source,
    ) -> Result<(), PortError> {
        let mut tasks: JoinSet<object_store::Result<()>> = JoinSet::new();
        loop {
            while tasks.len() >= self.tuning.parts_per_upload {
                join_one(key, &mut tasks).await?;
            }
            let permit = self.permit().await?;
            let Some(chunk) = source
                .next(self.tuning.part_size)
                .await
                .map_err(|e| PortError::Unavailable(format!("read the upload of {key}: {e}")))?
            else {
                break;
            };
            let part = upload.put_part(PutPayload::from(chunk));
            tasks.spawn(async move {
                let r = part.await;
                drop(permit);
                r
            });
        }
        while !tasks.is_empty() {
            join_one(key, &mut tasks).await?;
        }
        Ok(())
    }
}

async fn join_one(
    key: &str,
    tasks: &mut JoinSet<object_store::Result<()>>,
) -> Result<(), PortError> {
    match tasks.join_next().await {
        Some(Ok(Ok(()))) | None => Ok(()),
        Some(Ok(Err(e))) => Err(port_error(key, e)),
        Some(Err(e)) => Err(PortError::Unavailable(format!(
            "uploading a part of {key}: {e}"
        ))),
    }
}

/// Where the parts of a multipart upload come from.
enum Source {
    Memory(Bytes),
    File(tokio::fs::File),
}

impl Source {
    /// The next part of at most `size` bytes; `None` at the end.
    async fn next(&mut self, size: usize) -> std::io::Result<Option<Bytes>> {
        match self {
            Source::Memory(b) => {
                if b.is_empty() {
                    return Ok(None);
                }
                let n = size.min(b.len());
                Ok(Some(b.split_to(n)))
            }
            Source::File(f) => {
                let mut buf = Vec::with_capacity(size);
                let mut limited = f.take(size as u64);
                while limited.read_buf(&mut buf).await? > 0 {}
                Ok((!buf.is_empty()).then(|| Bytes::from(buf)))
            }
        }
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn list(&self, prefix: &str) -> Result<Vec<yilian_app::ports::BlobInfo>, PortError> {
        let _permit = self.requests.acquire().await;
        super::list_blobs(
            self.store.as_ref(),
            &format!("{}{prefix}", self.prefix),
            &self.prefix,
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        let path = self.path(key)?;
        let _permit = self.requests.acquire().await;
        super::delete_blob(self.store.as_ref(), key, &path).await
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), PortError> {
        if bytes.len() <= self.tuning.part_size {
            self.put_whole(key, bytes).await
        } else {
            self.put_parts(key, Source::Memory(bytes)).await
        }
    }

    /// Streams the spooled file to the store (S3 has no rename), then removes it. The file is
    /// removed on failure too (the port consumes it; the sender is told to retry).
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), PortError> {
        let r = self.upload_file(key, path).await;
        if let Err(e) = tokio::fs::remove_file(path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a spooled upload");
        }
        r
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        Some(self.staging.clone())
    }

    async fn get(&self, key: &str) -> Result<Bytes, PortError> {
        let path = self.path(key)?;
        let _permit = self.permit().await?;
        let got = self
            .store
            .get(&path)
            .await
            .map_err(|e| port_error(key, e))?;
        got.bytes().await.map_err(|e| port_error(key, e))
    }

    /// The request takes one of the `max_concurrency` permits until the store answered; the body is
    /// then read as the caller polls, without a permit, so a slow client cannot starve ingest.
    async fn get_stream(&self, key: &str) -> Result<yilian_app::ports::BlobStream, PortError> {
        let path = self.path(key)?;
        let _permit = self.permit().await?;
        super::stream_object(self.store.as_ref(), key, &path).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, PortError> {
        self.path(key)?;
        let _permit = self.permit().await?;
        read_range(self.store.as_ref(), &self.full_key(key), range).await
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, PortError> {
        self.path(key)?;
        let _permit = self.permit().await?;
        head_size(self.store.as_ref(), &self.full_key(key)).await
    }
}

impl S3Blobs {
    /// Uploads a file's content under `key` (one PUT or multipart); the file stays where it is.
    pub(crate) async fn upload_file(&self, key: &str, path: &Path) -> Result<(), PortError> {
        let io = |e: std::io::Error| PortError::Unavailable(format!("{}: {e}", path.display()));
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let len = file.metadata().await.map_err(io)?.len();
        if len <= self.tuning.part_size as u64 {
            let mut buf = Vec::with_capacity(len as usize);
            let mut file = file;
            file.read_to_end(&mut buf).await.map_err(io)?;
            self.put_whole(key, Bytes::from(buf)).await
        } else {
            self.put_parts(key, Source::File(file)).await
        }
    }
}

#[cfg(test)]
mod tests {
    //! The upload mechanics over object_store's in-memory store wrapped in a probe that counts
    //! requests in flight and can fail a part; the real S3 server is the contract suite's
    //! (`tests/blobs_contract.rs`).

    use std::fmt;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, ObjectMeta, PutMultipartOptions,
        PutOptions, PutResult, UploadPart,
    };

    use super::*;

    #[derive(Debug, Default)]
    struct Counters {
        in_flight: AtomicUsize,
        peak: AtomicUsize,
        parts: AtomicUsize,
        multipart_uploads: AtomicUsize,
        aborted: AtomicBool,
        /// Peak parts in flight of any one upload.
        peak_per_upload: AtomicUsize,
    }

    impl Counters {
        fn enter(&self) {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
        }
        fn exit(&self) {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[derive(Debug)]
    struct Probe {
        inner: InMemory,
        counters: Arc<Counters>,
        /// The part (counted from 0 in each upload) that fails.
        fail_part: Option<usize>,
    }

    impl fmt::Display for Probe {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Probe")
        }
    }

    /// Lets other requests start while this one is "on the wire".
    async fn on_the_wire() {
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    #[async_trait]
    impl ObjectStore for Probe {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.counters.enter();
            on_the_wire().await;
            let r = self.inner.put_opts(location, payload, opts).await;
            self.counters.exit();
            r
        }

        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.counters
                .multipart_uploads
                .fetch_add(1, Ordering::SeqCst);
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(ProbeUpload {
                inner,
                counters: self.counters.clone(),
                fail_part: self.fail_part,
                next: 0,
                mine: Arc::new(AtomicUsize::new(0)),
            }))
        }

        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[derive(Debug)]
    struct ProbeUpload {
        inner: Box<dyn MultipartUpload>,
        counters: Arc<Counters>,
        fail_part: Option<usize>,
        next: usize,
        /// Parts of this upload in flight.
        mine: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl MultipartUpload for ProbeUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            let index = self.next;
            self.next += 1;
            let fail = self.fail_part == Some(index);
            let upload = self.inner.put_part(data);
            let counters = self.counters.clone();
            let mine = self.mine.clone();
            Box::pin(async move {
                counters.parts.fetch_add(1, Ordering::SeqCst);
                counters.enter();
                let now = mine.fetch_add(1, Ordering::SeqCst) + 1;
                counters.peak_per_upload.fetch_max(now, Ordering::SeqCst);
                on_the_wire().await;
                let r = if fail {
                    Err(object_store::Error::Generic {
                        store: "Probe",
                        source: "connection reset".into(),
                    })
                } else {
                    upload.await
                };
                mine.fetch_sub(1, Ordering::SeqCst);
                counters.exit();
                r
            })
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.inner.complete().await
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            self.counters.aborted.store(true, Ordering::SeqCst);
            self.inner.abort().await
        }
    }

    fn blobs(
        fail_part: Option<usize>,
        tuning: S3Tuning,
    ) -> (S3Blobs, Arc<Counters>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(Counters::default());
        let probe = Probe {
            inner: InMemory::new(),
            counters: counters.clone(),
            fail_part,
        };
        let blobs = S3Blobs::with_store(
            Arc::new(probe),
            "/county-a/",
            &dir.path().join("spool"),
            tuning,
        )
        .unwrap();
        (blobs, counters, dir)
    }

    fn content(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>()
            .into()
    }

    const TUNING: S3Tuning = S3Tuning {
        part_size: 64 * 1024,
        max_concurrency: 3,
        parts_per_upload: 2,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn large_objects_go_in_parts_within_the_request_bound() {
        let (blobs, counters, _dir) = blobs(None, TUNING);
        let blobs = Arc::new(blobs);
        // Four 1 MiB objects at once (16 parts each), two from memory and two from spooled files.
        let mut tasks = JoinSet::new();
        for i in 0..4u8 {
            let blobs = blobs.clone();
            let data = content(1 << 20, i);
            tasks.spawn(async move {
                let key = format!("sha256/00/00/object-{i}");
                if i % 2 == 0 {
                    blobs.put(&key, data.clone()).await.unwrap();
                } else {
                    let spool = blobs.staging_dir().unwrap().join(format!("upload-{i}"));
                    std::fs::write(&spool, &data).unwrap();
                    blobs.put_file(&key, &spool).await.unwrap();
                    assert!(!spool.exists(), "the spool file is removed");
                }
                assert_eq!(blobs.get(&key).await.unwrap(), data, "object {i}");
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        assert_eq!(counters.multipart_uploads.load(Ordering::SeqCst), 4);
        assert_eq!(counters.parts.load(Ordering::SeqCst), 4 * 16);
        let peak = counters.peak.load(Ordering::SeqCst);
        assert!((1..=3).contains(&peak), "{peak} requests at once");
        let per_upload = counters.peak_per_upload.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&per_upload),
            "{per_upload} parts of one upload"
        );
        assert!(!counters.aborted.load(Ordering::SeqCst));

        // Up to the part size: one PUT, no multipart upload. Keys live under the prefix.
        let small = content(64 * 1024, 9);
        blobs
            .put("sha256/00/01/small", small.clone())
            .await
            .unwrap();
        assert_eq!(counters.multipart_uploads.load(Ordering::SeqCst), 4);
        assert_eq!(blobs.get("sha256/00/01/small").await.unwrap(), small);
        assert_eq!(
            blobs
                .store
                .head(&ObjectPath::from("county-a/sha256/00/01/small"))
                .await
                .unwrap()
                .size,
            64 * 1024
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_part_aborts_the_upload_and_leaves_no_object() {
        let (blobs, counters, _dir) = blobs(Some(3), TUNING);
        let data = content(1 << 20, 1);
        let err = blobs
            .put("sha256/00/00/failing", data.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, PortError::Unavailable(_)), "{err}");
        assert!(
            counters.aborted.load(Ordering::SeqCst),
            "the upload is aborted"
        );
        assert!(matches!(
            blobs.get("sha256/00/00/failing").await,
            Err(PortError::NotFound(_))
        ));
        // From a spooled file: the same, and the spool file is consumed either way.
        let spool = blobs.staging_dir().unwrap().join("upload-failing");
        std::fs::write(&spool, &data).unwrap();
        assert!(
            blobs
                .put_file("sha256/00/00/failing", &spool)
                .await
                .is_err()
        );
        assert!(!spool.exists());
        assert_eq!(blobs.size("sha256/00/00/failing").await.unwrap(), None);
    }

    #[test]
    fn tuning_follows_the_configuration() {
        let cfg = BlobsConfig {
            part_size_mib: 16,
            max_concurrency: 2,
            ..BlobsConfig::default()
        };
        assert_eq!(
            S3Tuning::from_config(&cfg),
            S3Tuning {
                part_size: 16 << 20,
                max_concurrency: 2,
                parts_per_upload: 2
            }
        );
        let cfg = BlobsConfig::default();
        assert_eq!(S3Tuning::from_config(&cfg).parts_per_upload, 4);
    }
}
