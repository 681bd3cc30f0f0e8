//! Blob store throughput: `put` (from memory), `put_file` (a spooled upload) and `get` of 1 MiB and
//! 64 MiB objects, on the filesystem backend and on an S3-compatible server, in one run. Bounded in
//! count; the S3 server must be on loopback (`YILIAN_TEST_S3_*`, as scripts/test exports them).
//!
//! `blob-throughput [DIR]`, e.g. `cargo run -p yilian-benches --bin blob-throughput -- /var/tmp`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use yilian_app::ports::Blobs;
use yilian_config::BlobsConfig;
use yilian_store::open_blobs;

const MIB: usize = 1 << 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let dir = tempfile::tempdir_in(&base).context("bench folder")?;
    let mut backends: Vec<(String, Arc<dyn Blobs>)> = Vec::new();
    let file_cfg = BlobsConfig {
        url: format!("file://{}/blobs", dir.path().display()),
        ..BlobsConfig::default()
    };
    backends.push(("file".into(), open_blobs(&file_cfg)?));
    match std::env::var("YILIAN_TEST_S3_ENDPOINT") {
        Ok(endpoint) => {
            if !(endpoint.starts_with("http://127.") || endpoint.starts_with("http://localhost")) {
                bail!("blob-throughput only targets an S3 server on loopback");
            }
            let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
            let cfg = BlobsConfig {
                url: format!(
                    "s3://{}/bench-{}",
                    var("YILIAN_TEST_S3_BUCKET", "yilian-test"),
                    std::process::id()
                ),
                staging_dir: Some(dir.path().join("s3-staging")),
                endpoint: Some(endpoint.clone()),
                region: var("YILIAN_TEST_S3_REGION", "us-east-1"),
                access_key_id: Some(var("YILIAN_TEST_S3_ACCESS_KEY_ID", "test")),
                secret_access_key: Some(var("YILIAN_TEST_S3_SECRET_ACCESS_KEY", "test-secret")),
                allow_http: true,
                ..BlobsConfig::default()
            };
            backends.push((format!("s3 ({endpoint})"), open_blobs(&cfg)?));
        }
        Err(_) => eprintln!("YILIAN_TEST_S3_ENDPOINT not set: file backend only"),
    }
    println!(
        "| backend | object | n | put (memory) MiB/s | put_file (spooled) MiB/s | get MiB/s |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, blobs) in &backends {
        for (size, n) in [(MIB, 32usize), (64 * MIB, 4)] {
            let objects: Vec<Bytes> = (0..n)
                .map(|i| pattern(size, (label.len() + i * 7 + size / MIB) as u64))
                .collect();
            let keys: Vec<String> = objects.iter().map(|o| key_of(o)).collect();
            // put from memory
            let t = Instant::now();
            for (k, o) in keys.iter().zip(&objects) {
                blobs.put(k, o.clone()).await?;
            }
            let put = rate(size * n, t.elapsed());
            // put_file: other contents (a put of existing content would measure nothing new)
            let staging = blobs.staging_dir().context("staging folder")?;
            std::fs::create_dir_all(&staging)?;
            let mut spooled = Vec::new();
            for i in 0..n {
                let o = pattern(size, 1_000 + (label.len() + i * 7 + size / MIB) as u64);
                let p = staging.join(format!("bench-{i}"));
                std::fs::write(&p, &o)?;
                spooled.push((key_of(&o), p));
            }
            let t = Instant::now();
            for (k, p) in &spooled {
                blobs.put_file(k, p).await?;
            }
            let put_file = rate(size * n, t.elapsed());
            // get, checked
            let t = Instant::now();
            for k in &keys {
                let got = blobs.get(k).await?;
                if got.len() != size {
                    bail!("{label}: {k} came back with {} bytes", got.len());
                }
            }
            let get = rate(size * n, t.elapsed());
            println!(
                "| {label} | {} MiB | {n} | {put:.0} | {put_file:.0} | {get:.0} |",
                size / MIB
            );
        }
    }
    Ok(())
}

fn rate(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64().max(1e-9)
}

fn key_of(b: &[u8]) -> String {
    let sha = hex(&Sha256::digest(b));
    format!("sha256/{}/{}/{sha}", &sha[..2], &sha[2..4])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Distinct pseudo-random bytes per seed (incompressible, so no layer can shortcut them).
fn pattern(len: usize, seed: u64) -> Bytes {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}
