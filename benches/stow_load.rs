//! Load harness: STOW-RS ingest into a running hub, against a same-run baseline of writing the same
//! bytes to the same disk with fsync (the floor any durable ingest pays). Bounded in count and time,
//! loopback only.
//!
//! `stow-load URL TOKEN [N] [CONCURRENCY] [BASELINE_DIR]`, e.g.
//! `cargo run --release -p yilian-benches --bin stow-load -- http://127.0.0.1:8080 $TOKEN 300 4 ./yilian-data`

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use yilian_fixtures::{InstanceSpec, instance_bytes};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: stow-load URL TOKEN [N] [CONCURRENCY] [BASELINE_DIR]");
    }
    let (url, token) = (args[1].trim_end_matches('/').to_string(), args[2].clone());
    let n: u32 = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200)
        .min(5000);
    let conc: usize = args
        .get(4)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(4)
        .clamp(1, 32);
    let baseline_dir = args.get(5).cloned().unwrap_or_else(|| ".".into());
    if !(url.starts_with("http://127.")
        || url.starts_with("http://localhost")
        || url.starts_with("http://[::1]"))
    {
        bail!("stow-load only targets loopback addresses");
    }
    let run = std::process::id();
    let files: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            instance_bytes(&InstanceSpec {
                rows: 512,
                columns: 512,
                study_uid: format!("2.25.9{run}"),
                series_uid: format!("2.25.9{run}.1"),
                sop_uid: format!("2.25.9{run}.1.{}", i + 1),
                seed: i as u16,
                ..InstanceSpec::ct(i + 1)
            })
        })
        .collect();
    let total: usize = files.iter().map(Vec::len).sum();

    // Baseline: write + fsync each file (and its folder) on the disk the hub uses.
    let dir = tempfile::tempdir_in(&baseline_dir).context("baseline folder")?;
    let t0 = Instant::now();
    for (i, f) in files.iter().enumerate() {
        let p = dir.path().join(format!("{i}.dcm"));
        std::fs::write(&p, f)?;
        std::fs::File::open(&p)?.sync_all()?;
        std::fs::File::open(dir.path())?.sync_all()?;
    }
    let base = t0.elapsed();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let boundary = "stow-load-boundary";
    let t1 = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(files.iter())
        .map(|f| {
            let client = client.clone();
            let (url, token) = (url.clone(), token.clone());
            async move {
                let mut body =
                    format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
                body.extend_from_slice(f);
                body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
                let r = client
                    .post(format!("{url}/dicomweb/studies"))
                    .bearer_auth(token)
                    .header(
                        "content-type",
                        format!(
                            "multipart/related; type=\"application/dicom\"; boundary={boundary}"
                        ),
                    )
                    .body(body)
                    .send()
                    .await?;
                if r.status() != 200 {
                    bail!("STOW answered {}", r.status());
                }
                Ok(())
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    let hub = t1.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    let mb = total as f64 / 1e6;
    println!(
        "instances {n}, {:.1} MB, concurrency {conc}, failed {failed}",
        mb
    );
    println!(
        "baseline write+fsync: {:>8.1} inst/s {:>7.1} MB/s",
        n as f64 / base.as_secs_f64(),
        mb / base.as_secs_f64()
    );
    println!(
        "hub STOW-RS:          {:>8.1} inst/s {:>7.1} MB/s",
        n as f64 / hub.as_secs_f64(),
        mb / hub.as_secs_f64()
    );
    println!(
        "ratio hub/baseline:   {:.2}",
        base.as_secs_f64() / hub.as_secs_f64()
    );
    if failed > 0 {
        bail!("{failed} uploads failed");
    }
    Ok(())
}
