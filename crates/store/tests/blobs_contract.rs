//! The blob contract, one suite for every backend: the filesystem always, a real S3-compatible server
//! when `YILIAN_TEST_S3_ENDPOINT` is set (scripts/test starts one and sets it; under CI its absence
//! fails). Each S3 run writes under a fresh prefix of `YILIAN_TEST_S3_BUCKET`.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use yilian_app::ports::{Blobs, PortError};
use yilian_config::BlobsConfig;
use yilian_store::open_blobs;

/// The S3 server the test script started, from `YILIAN_TEST_S3_*`.
struct S3Env {
    endpoint: String,
    bucket: String,
    access_key_id: String,
    secret_access_key: String,
    region: String,
}

fn s3_env() -> Option<S3Env> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match var("YILIAN_TEST_S3_ENDPOINT") {
        Some(endpoint) => Some(S3Env {
            endpoint,
            bucket: var("YILIAN_TEST_S3_BUCKET").unwrap_or_else(|| "yilian-test".into()),
            access_key_id: var("YILIAN_TEST_S3_ACCESS_KEY_ID").unwrap_or_else(|| "test".into()),
            secret_access_key: var("YILIAN_TEST_S3_SECRET_ACCESS_KEY")
                .unwrap_or_else(|| "test-secret".into()),
            region: var("YILIAN_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        }),
        None => {
            if std::env::var("CI").is_ok() {
                panic!("CI must set YILIAN_TEST_S3_ENDPOINT so the blob suite also runs on S3");
            }
            eprintln!(
                "SKIPPED S3 blob backend: YILIAN_TEST_S3_ENDPOINT is not set (scripts/test sets it)"
            );
            None
        }
    }
}

/// `[blobs]` for the test server, under a fresh prefix, with the smallest part size S3 allows.
fn s3_config(env: &S3Env, staging: &std::path::Path) -> BlobsConfig {
    BlobsConfig {
        url: format!(
            "s3://{}/contract-{}",
            env.bucket,
            ulid::Ulid::new().to_string().to_lowercase()
        ),
        staging_dir: Some(staging.to_path_buf()),
        endpoint: Some(env.endpoint.clone()),
        region: env.region.clone(),
        access_key_id: Some(env.access_key_id.clone()),
        secret_access_key: Some(env.secret_access_key.clone()),
        allow_http: env.endpoint.starts_with("http://"),
        part_size_mib: 5,
        max_concurrency: 8,
        ..BlobsConfig::default()
    }
}

/// Every backend the suite runs on, with a label and the temporary folder that holds its files.
fn backends() -> Vec<(String, Arc<dyn Blobs>, tempfile::TempDir)> {
    let mut out: Vec<(String, Arc<dyn Blobs>, tempfile::TempDir)> = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = BlobsConfig {
        url: format!("file://{}/blobs", dir.path().display()),
        ..BlobsConfig::default()
    };
    out.push(("file".into(), open_blobs(&cfg).expect("file blobs"), dir));
    if let Some(env) = s3_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = s3_config(&env, &dir.path().join("staging"));
        out.push((
            format!("s3 {}", env.endpoint),
            open_blobs(&cfg).expect("S3 blobs"),
            dir,
        ));
        // Write-behind in front of the same server: acknowledged from the local outbox.
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = BlobsConfig {
            ack_after: yilian_config::AckAfter::Local,
            ..s3_config(&env, &dir.path().join("staging"))
        };
        out.push((
            format!("s3 write-behind {}", env.endpoint),
            open_blobs(&cfg).expect("write-behind blobs"),
            dir,
        ));
    }
    out
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The content address ingest uses.
fn key_of(b: &[u8]) -> String {
    let sha = sha256_hex(b);
    format!("sha256/{}/{}/{sha}", &sha[..2], &sha[2..4])
}

/// Deterministic bytes that differ in every part (so a misplaced part changes the hash).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_size_and_missing() {
    for (label, blobs, _dir) in backends() {
        let data = Bytes::from_static(b"\x00\x01DICM\xff\x00 yilian");
        let key = key_of(&data);
        assert_eq!(blobs.size(&key).await.unwrap(), None, "{label}");
        blobs.put(&key, data.clone()).await.unwrap();
        assert_eq!(blobs.get(&key).await.unwrap(), data, "{label}");
        assert_eq!(
            blobs.size(&key).await.unwrap(),
            Some(data.len() as u64),
            "{label}"
        );
        // Writing the same content again is a harmless success.
        blobs.put(&key, data.clone()).await.unwrap();
        assert_eq!(blobs.get(&key).await.unwrap(), data, "{label}");

        let missing = key_of(b"never stored");
        assert!(
            matches!(blobs.get(&missing).await, Err(PortError::NotFound(_))),
            "{label}: a missing blob is NotFound"
        );
        assert!(
            matches!(
                blobs.get_range(&missing, 0..4).await,
                Err(PortError::NotFound(_))
            ),
            "{label}"
        );
        assert_eq!(blobs.size(&missing).await.unwrap(), None, "{label}");
        // An empty object is an object.
        let empty = key_of(b"");
        blobs.put(&empty, Bytes::new()).await.unwrap();
        assert_eq!(blobs.get(&empty).await.unwrap().len(), 0, "{label}");
        assert_eq!(blobs.size(&empty).await.unwrap(), Some(0), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads() {
    for (label, blobs, _dir) in backends() {
        let data = Bytes::from(pattern(100_000, 1));
        let key = key_of(&data);
        blobs.put(&key, data.clone()).await.unwrap();
        for range in [0..1, 0..100_000, 17..4096, 99_990..100_000, 50_000..50_001] {
            let got = blobs.get_range(&key, range.clone()).await.unwrap();
            assert_eq!(
                &got[..],
                &data[range.start as usize..range.end as usize],
                "{label}: {range:?}"
            );
        }
        // The end is clamped to the size; an empty range is empty; a start past the end is an error.
        let tail = blobs.get_range(&key, 99_000..200_000).await.unwrap();
        assert_eq!(&tail[..], &data[99_000..], "{label}");
        assert!(blobs.get_range(&key, 10..10).await.unwrap().is_empty());
        assert!(
            blobs.get_range(&key, 100_000..100_010).await.is_err(),
            "{label}: a range past the end"
        );
    }
}

/// A large blob read as a stream arrives in many bounded chunks, bit-exact; a missing blob fails
/// before the first chunk (so a response can still say 404 / fail cleanly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_reads_come_in_bounded_chunks() {
    use futures::StreamExt;
    for (label, blobs, _dir) in backends() {
        let data = Bytes::from(pattern(12 * 1024 * 1024 + 17, 3));
        let key = key_of(&data);
        blobs.put(&key, data.clone()).await.unwrap();
        let mut stream = blobs.get_stream(&key).await.unwrap();
        let mut hasher = Sha256::new();
        let (mut chunks, mut largest, mut total) = (0usize, 0usize, 0usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            hasher.update(&chunk);
            chunks += 1;
            largest = largest.max(chunk.len());
            total += chunk.len();
        }
        assert_eq!(total, data.len(), "{label}");
        assert_eq!(
            hex::encode(hasher.finalize()),
            hex::encode(Sha256::digest(&data)),
            "{label}: bit-exact"
        );
        assert!(chunks > 1, "{label}: one chunk of {total} bytes");
        assert!(
            largest < data.len() / 2,
            "{label}: a chunk of {largest} bytes holds most of the blob"
        );
        let missing = key_of(b"never stored");
        assert!(
            matches!(
                blobs.get_stream(&missing).await,
                Err(PortError::NotFound(_))
            ),
            "{label}: a missing blob is NotFound before any chunk"
        );
    }
}

/// Write-behind (`ack_after = "local"`) through an outage: with the store unreachable, uploads are
/// still acknowledged (fsynced in the outbox) and readable; uploading the outbox fails and keeps
/// everything; a hub restarted on the same outbox with the store back uploads it all (one blob
/// multipart), bit-exact, and the outbox empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_acknowledges_through_an_outage_and_uploads_when_the_store_is_back() {
    let Some(env) = s3_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let up = BlobsConfig {
        ack_after: yilian_config::AckAfter::Local,
        ..s3_config(&env, &staging)
    };
    // Nothing listens on port 1 of the loopback: every request is refused at once.
    let down = BlobsConfig {
        endpoint: Some("http://127.0.0.1:1".into()),
        max_retries: 0,
        retry_timeout_secs: 1,
        ..up.clone()
    };
    let direct = open_blobs(&BlobsConfig {
        ack_after: yilian_config::AckAfter::Store,
        ..up.clone()
    })
    .unwrap();

    let small = Bytes::from(pattern(70_000, 7));
    let large = Bytes::from(pattern(5 * 1024 * 1024 + 4321, 8));
    let spooled = pattern(1234, 9);
    let (ks, kl, kf) = (key_of(&small), key_of(&large), key_of(&spooled));
    {
        let blobs = open_blobs(&down).unwrap();
        blobs.put(&ks, small.clone()).await.unwrap();
        blobs.put(&kl, large.clone()).await.unwrap();
        let spool = blobs.staging_dir().unwrap().join("upload.part");
        std::fs::write(&spool, &spooled).unwrap();
        blobs.put_file(&kf, &spool).await.unwrap();
        assert!(!spool.exists(), "the spooled file moved into the outbox");
        assert_eq!(blobs.get(&ks).await.unwrap(), small);
        assert_eq!(
            blobs.get_range(&kl, 10..20).await.unwrap(),
            large.slice(10..20)
        );
        assert_eq!(blobs.size(&kf).await.unwrap(), Some(spooled.len() as u64));
        assert!(blobs.flush_outbox().await.is_err(), "the store is down");
        let total = (small.len() + large.len() + spooled.len()) as u64;
        assert_eq!(blobs.outbox_backlog().await.unwrap(), (3, total));
        for k in [&ks, &kl, &kf] {
            assert_eq!(direct.size(k).await.unwrap(), None, "not in the store yet");
        }
    }
    // "Restart" with the store reachable: the outbox goes out.
    let blobs = open_blobs(&up).unwrap();
    assert_eq!(blobs.outbox_backlog().await.unwrap().0, 3);
    assert_eq!(blobs.flush_outbox().await.unwrap(), 3);
    assert_eq!(blobs.outbox_backlog().await.unwrap(), (0, 0));
    assert_eq!(direct.get(&ks).await.unwrap(), small);
    assert_eq!(
        sha256_hex(&direct.get(&kl).await.unwrap()),
        sha256_hex(&large)
    );
    assert_eq!(direct.get(&kf).await.unwrap(), Bytes::from(spooled));
    // Reads now come from the store.
    assert_eq!(blobs.get(&kl).await.unwrap().len(), large.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_file_is_stored_and_removed_from_staging() {
    for (label, blobs, dir) in backends() {
        let staging = blobs
            .staging_dir()
            .expect("every backend spools on local disk");
        std::fs::create_dir_all(&staging).unwrap();
        let small = pattern(70_000, 2);
        let spooled = staging.join("upload-small");
        std::fs::write(&spooled, &small).unwrap();
        let key = key_of(&small);
        blobs.put_file(&key, &spooled).await.unwrap();
        assert_eq!(&blobs.get(&key).await.unwrap()[..], &small[..], "{label}");
        assert!(!spooled.exists(), "{label}: the spool file is consumed");
        // A file outside the staging folder works too (copied rather than moved on file://).
        let elsewhere = dir.path().join("elsewhere.bin");
        let other = pattern(3_000, 3);
        std::fs::write(&elsewhere, &other).unwrap();
        blobs.put_file(&key_of(&other), &elsewhere).await.unwrap();
        assert_eq!(
            &blobs.get(&key_of(&other)).await.unwrap()[..],
            &other[..],
            "{label}"
        );
    }
}

/// 20 MiB from memory and 20 MiB from a spooled file: on S3 (5 MiB parts) both are multipart
/// uploads; read back whole and across part boundaries, the SHA-256 is the key's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_round_trip_bit_exact() {
    const SIZE: usize = 20 * 1024 * 1024 + 12_345;
    const PART: u64 = 5 * 1024 * 1024;
    for (label, blobs, _dir) in backends() {
        let data = Bytes::from(pattern(SIZE, 4));
        let key = key_of(&data);
        blobs.put(&key, data.clone()).await.unwrap();
        let got = blobs.get(&key).await.unwrap();
        assert_eq!(got.len(), SIZE, "{label}");
        assert_eq!(key_of(&got), key, "{label}: SHA-256 of what came back");
        let across = blobs.get_range(&key, PART - 10..PART + 10).await.unwrap();
        assert_eq!(
            &across[..],
            &data[(PART - 10) as usize..(PART + 10) as usize],
            "{label}"
        );
        assert_eq!(blobs.size(&key).await.unwrap(), Some(SIZE as u64));

        let staging = blobs.staging_dir().unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        let file_data = pattern(SIZE, 5);
        let spooled = staging.join("upload-large");
        std::fs::write(&spooled, &file_data).unwrap();
        let file_key = key_of(&file_data);
        blobs.put_file(&file_key, &spooled).await.unwrap();
        assert!(!spooled.exists(), "{label}");
        let got = blobs.get(&file_key).await.unwrap();
        assert_eq!(
            key_of(&got),
            file_key,
            "{label}: SHA-256 of the spooled file"
        );
    }
}

/// Several writers of the same content at once (two uploads of one instance, two replicas): all
/// succeed and the object is that content, small or multipart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_puts_are_safe() {
    for (label, blobs, dir) in backends() {
        for size in [40_000usize, 6 * 1024 * 1024 + 7] {
            let data = Bytes::from(pattern(size, 6));
            let key = key_of(&data);
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..6 {
                let blobs = blobs.clone();
                let key = key.clone();
                let data = data.clone();
                // Half from memory, half from a spooled file of their own.
                let spool = (i % 2 == 1).then(|| {
                    let staging = blobs.staging_dir().unwrap_or_else(|| dir.path().into());
                    std::fs::create_dir_all(&staging).unwrap();
                    let p = staging.join(format!("same-{size}-{i}"));
                    std::fs::write(&p, &data).unwrap();
                    p
                });
                tasks.spawn(async move {
                    match spool {
                        Some(p) => blobs.put_file(&key, &p).await,
                        None => blobs.put(&key, data).await,
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap().unwrap_or_else(|e| panic!("{label}: {e}"));
            }
            let got = blobs.get(&key).await.unwrap();
            assert_eq!(key_of(&got), key, "{label}: {size} bytes");
        }
    }
}

/// Credentials are really used: a wrong secret is refused by the server (it checks signatures),
/// and the hub reports the store unavailable, not a missing blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused() {
    let Some(env) = s3_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = s3_config(&env, dir.path());
    cfg.secret_access_key = Some("not-the-secret".into());
    cfg.max_retries = 0;
    let blobs = open_blobs(&cfg).unwrap();
    let data = Bytes::from_static(b"refused");
    let err = blobs.put(&key_of(&data), data).await.unwrap_err();
    assert!(matches!(err, PortError::Unavailable(_)), "{err}");
}
