//! Load harness: HL7 v2 ORU^R01 over MLLP into a running hub, each message waiting for its ACK (as a
//! LIS in original mode does), on `CONNECTIONS` connections at once, against a same-run baseline of
//! writing the same bytes to the same disk with fsync (file + folder). Bounded in count, loopback only.
//!
//! `mllp-load ADDR [N] [CONNECTIONS] [FACILITY] [BASELINE_DIR]`, e.g.
//! `cargo run --release -p yilian-benches --bin mllp-load -- 127.0.0.1:2575 500 1 HX_LIS ./yilian-data`

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yilian_fixtures::lab::{LabSpec, cbc, oru_r01};

/// Sends one framed message and reads its ACK; the ACK's MSA-1.
async fn send(stream: &mut TcpStream, message: &[u8]) -> anyhow::Result<String> {
    let mut framed = Vec::with_capacity(message.len() + 3);
    framed.push(0x0b);
    framed.extend_from_slice(message);
    framed.extend_from_slice(&[0x1c, 0x0d]);
    stream.write_all(&framed).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(2).position(|w| w == [0x1c, 0x0d]) {
            let text = String::from_utf8_lossy(got.get(1..end).unwrap_or_default()).into_owned();
            let code = text
                .split('\r')
                .find(|s| s.starts_with("MSA|"))
                .and_then(|s| s.split('|').nth(1))
                .unwrap_or_default()
                .to_string();
            return Ok(code);
        }
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf))
            .await
            .context("no ACK within 60 s")??;
        if n == 0 {
            bail!("the hub closed the connection");
        }
        got.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(addr) = args.get(1).cloned() else {
        bail!("usage: mllp-load ADDR [N] [CONNECTIONS] [FACILITY] [BASELINE_DIR]");
    };
    let n: usize = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(500)
        .min(20_000);
    let conns: usize = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1)
        .clamp(1, 32);
    let facility = args.get(4).cloned().unwrap_or_else(|| "HX_LIS".into());
    let baseline_dir = args.get(5).cloned().unwrap_or_else(|| ".".into());
    let ip: std::net::SocketAddr = addr.parse().context("ADDR is IP:PORT")?;
    if !ip.ip().is_loopback() {
        bail!("mllp-load only targets loopback addresses");
    }
    let run = std::process::id();
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut spec = LabSpec::new(
                &format!("LOAD{run}-{}", i % 97),
                "HX",
                &format!("LOAD-{run}-{i}"),
                "2.5.1",
            );
            spec.performing_lab = facility.clone();
            oru_r01(&spec, &cbc()).into_bytes()
        })
        .collect();
    let total: usize = messages.iter().map(Vec::len).sum();

    // Baseline: write + fsync each message (and its folder) on the disk the hub uses.
    let dir = tempfile::tempdir_in(&baseline_dir).context("baseline folder")?;
    let t0 = Instant::now();
    for (i, m) in messages.iter().enumerate() {
        let p = dir.path().join(format!("{i}.hl7"));
        std::fs::write(&p, m)?;
        std::fs::File::open(&p)?.sync_all()?;
        std::fs::File::open(dir.path())?.sync_all()?;
    }
    let base = t0.elapsed();

    let t1 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mine: Vec<Vec<u8>> = messages.iter().skip(c).step_by(conns).cloned().collect();
        let addr = ip;
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut refused = 0usize;
            for m in &mine {
                if send(&mut stream, m).await? != "AA" {
                    refused += 1;
                }
            }
            anyhow::Ok(refused)
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await??;
    }
    let hub = t1.elapsed();
    println!(
        "messages {n} ({:.1} KB each), connections {conns}, not AA {refused}",
        total as f64 / n.max(1) as f64 / 1e3
    );
    println!(
        "baseline write+fsync: {:>8.1} msg/s",
        n as f64 / base.as_secs_f64()
    );
    println!(
        "hub MLLP (AA each):   {:>8.1} msg/s  ({:.2} ms per message per connection)",
        n as f64 / hub.as_secs_f64(),
        hub.as_secs_f64() * 1e3 * conns as f64 / n.max(1) as f64
    );
    println!(
        "ratio hub/baseline:   {:.2}",
        base.as_secs_f64() / hub.as_secs_f64()
    );
    if refused > 0 {
        bail!("{refused} messages were not accepted (is {facility} a [[lab.senders]] facility?)");
    }
    Ok(())
}
