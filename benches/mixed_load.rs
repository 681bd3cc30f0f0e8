//! Load harness: a sustained mixed load on one or more hub replicas (client-side round robin, as a
//! load balancer would spread it): township techs uploading studies (STOW-RS, then "complete"),
//! readers polling their worklist and rendering an image of an exam on it, clinicians looking
//! patients' results up. Reports per operation: count, errors, throughput, p50/p99 latency; and the
//! peak resident memory of each hub process given with `--pid`. Loopback only; bounded in time.
//!
//! `mixed-load --hub URL [--hub URL ...] --tech TOKEN --reader TOKEN --clinician TOKEN
//!  [--secs 60] [--uploaders 2] [--readers 2] [--clinicians 2] [--pid PID ...]`
//!
//! `benches/replica_load.sh` starts PostgreSQL-backed replicas on an S3 store and runs this.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use yilian_fixtures::{InstanceSpec, instance_bytes};

#[derive(Default)]
struct Samples {
    ok: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

type Stats = Arc<Mutex<HashMap<&'static str, Samples>>>;

fn record(stats: &Stats, op: &'static str, took: Duration, outcome: Result<(), String>) {
    if let Ok(mut m) = stats.lock() {
        let s = m.entry(op).or_default();
        match outcome {
            Ok(()) => s.ok.push(took),
            Err(e) => {
                s.errors += 1;
                s.first_error.get_or_insert(e);
            }
        }
    }
}

/// What every simulated user shares: the client, the results, the stop flag, the arguments, and the
/// round-robin position over the replicas.
#[derive(Clone)]
struct Ctx {
    client: reqwest::Client,
    stats: Stats,
    stop: Arc<AtomicBool>,
    args: Arc<Args>,
    next: Arc<AtomicU64>,
}

impl Ctx {
    /// The next replica's base URL, as a round-robin balancer would pick it.
    fn hub(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        self.args.hubs[i % self.args.hubs.len()].clone()
    }
}

struct Args {
    hubs: Vec<String>,
    tech: String,
    reader: String,
    clinician: String,
    secs: u64,
    uploaders: usize,
    readers: usize,
    clinicians: usize,
    pids: Vec<u32>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        hubs: Vec::new(),
        tech: String::new(),
        reader: String::new(),
        clinician: String::new(),
        secs: 60,
        uploaders: 2,
        readers: 2,
        clinicians: 2,
        pids: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--hub" => a.hubs.push(v.trim_end_matches('/').to_string()),
            "--tech" => a.tech = v,
            "--reader" => a.reader = v,
            "--clinician" => a.clinician = v,
            "--secs" => a.secs = v.parse::<u64>()?.clamp(5, 3600),
            "--uploaders" => a.uploaders = v.parse::<usize>()?.min(32),
            "--readers" => a.readers = v.parse::<usize>()?.min(32),
            "--clinicians" => a.clinicians = v.parse::<usize>()?.min(32),
            "--pid" => a.pids.push(v.parse()?),
            other => bail!("unknown flag {other}"),
        }
    }
    if a.hubs.is_empty() || a.tech.is_empty() || a.reader.is_empty() || a.clinician.is_empty() {
        bail!(
            "usage: mixed-load --hub URL [--hub URL ...] --tech T --reader T --clinician T [--secs N] [--uploaders N] [--readers N] [--clinicians N] [--pid PID ...]"
        );
    }
    for h in &a.hubs {
        if !(h.starts_with("http://127.") || h.starts_with("http://localhost")) {
            bail!("mixed-load only targets loopback addresses ({h})");
        }
    }
    Ok(a)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

async fn check(r: reqwest::Result<reqwest::Response>) -> Result<reqwest::Response, String> {
    let r = r.map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(r)
    } else {
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        Err(format!(
            "{status}: {}",
            text.chars().take(200).collect::<String>()
        ))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(parse_args()?);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let stats: Stats = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let cx = Ctx {
        client: client.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
        args: args.clone(),
        next: Arc::new(AtomicU64::new(0)),
    };
    let run = std::process::id();
    let mut tasks = Vec::new();

    for u in 0..args.uploaders {
        let cx = cx.clone();
        tasks.push(tokio::spawn(async move {
            let Ctx {
                client,
                stats,
                stop,
                args,
                ..
            } = &cx;
            let boundary = "mixed-load-boundary";
            for n in 0u32.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let study = format!("2.25.6{run}{u:02}{n:06}");
                let spec = InstanceSpec {
                    patient_id: format!("LD{:04}", n % 200),
                    rows: 256,
                    columns: 256,
                    study_uid: study.clone(),
                    series_uid: format!("{study}.1"),
                    sop_uid: format!("{study}.1.1"),
                    seed: n as u16,
                    ..InstanceSpec::ct(1)
                };
                let mut body =
                    format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
                body.extend_from_slice(&instance_bytes(&spec));
                body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
                let t = Instant::now();
                let r = check(
                    client
                        .post(format!("{}/dicomweb/studies", cx.hub()))
                        .bearer_auth(&args.tech)
                        .header(
                            "content-type",
                            format!(
                                "multipart/related; type=\"application/dicom\"; boundary={boundary}"
                            ),
                        )
                        .body(body)
                        .send()
                        .await,
                )
                .await
                .map(|_| ());
                record(stats, "upload (STOW-RS, 1 instance)", t.elapsed(), r);
                let t = Instant::now();
                let r = check(
                    client
                        .post(format!("{}/api/v1/studies/{study}/complete", cx.hub()))
                        .bearer_auth(&args.tech)
                        .send()
                        .await,
                )
                .await
                .map(|_| ());
                record(stats, "study complete", t.elapsed(), r);
            }
        }));
    }

    for _ in 0..args.readers {
        let cx = cx.clone();
        tasks.push(tokio::spawn(async move {
            let Ctx {
                client,
                stats,
                stop,
                args,
                ..
            } = &cx;
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let got = match check(
                    client
                        .get(format!("{}/api/v1/worklist", cx.hub()))
                        .bearer_auth(&args.reader)
                        .send()
                        .await,
                )
                .await
                {
                    Ok(r) => r.json::<serde_json::Value>().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                let studies: Vec<String> = match &got {
                    Ok(v) => v["items"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|e| e["study_instance_uid"].as_str().map(str::to_string))
                                .filter(|s| s.starts_with("2.25.6"))
                                .collect()
                        })
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                record(stats, "worklist poll", t.elapsed(), got.map(|_| ()));
                if let Some(study) = (!studies.is_empty()).then(|| &studies[k % studies.len()]) {
                    k = k.wrapping_add(7);
                    let t = Instant::now();
                    let r = match check(
                        client
                            .get(format!(
                                "{}/dicomweb/studies/{study}/series/{study}.1/instances/{study}.1.1/rendered",
                                cx.hub()
                            ))
                            .bearer_auth(&args.reader)
                            .header("accept", "image/jpeg")
                            .send()
                            .await,
                    )
                    .await
                    {
                        Ok(r) => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    record(stats, "render (JPEG)", t.elapsed(), r);
                } else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }

    for c in 0..args.clinicians {
        let cx = cx.clone();
        tasks.push(tokio::spawn(async move {
            let Ctx {
                client,
                stats,
                stop,
                args,
                ..
            } = &cx;
            let mut n = c;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_add(13);
                let t = Instant::now();
                let r = check(
                    client
                        .get(format!(
                            "{}/api/v1/results?issuer=HX&patient_id=LD{:04}&purpose=treatment",
                            cx.hub(),
                            n % 200
                        ))
                        .bearer_auth(&args.clinician)
                        .send()
                        .await,
                )
                .await;
                let r = match r {
                    Ok(r) => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                record(stats, "results look-up", t.elapsed(), r);
            }
        }));
    }

    // Peak resident memory of each hub process, sampled twice a second.
    let peaks: Arc<Mutex<HashMap<u32, (u64, u64)>>> = Arc::default();
    let sampler = {
        let (stop, args, peaks) = (stop.clone(), args.clone(), peaks.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for &pid in &args.pids {
                    if let (Some(kib), Ok(mut m)) = (rss_kib(pid), peaks.lock()) {
                        let e = m.entry(pid).or_insert((kib, kib));
                        e.1 = e.1.max(kib);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let _ = sampler.await;
    let wall = started.elapsed().as_secs_f64();

    println!(
        "replicas: {}; {} s; uploaders {}, readers {}, clinicians {}",
        args.hubs.len(),
        args.secs,
        args.uploaders,
        args.readers,
        args.clinicians
    );
    println!("| operation | ok | errors | per second | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    let mut total_errors = 0;
    let m = stats.lock().map_err(|_| anyhow::anyhow!("stats lock"))?;
    let mut ops: Vec<_> = m.iter().collect();
    ops.sort_by_key(|(k, _)| *k);
    for (op, s) in ops {
        let mut v = s.ok.clone();
        v.sort();
        total_errors += s.errors;
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        println!(
            "| {op} | {} | {} | {:.1} | {} | {} | {} |",
            v.len(),
            s.errors,
            v.len() as f64 / wall,
            ms(percentile(&v, 50)),
            ms(percentile(&v, 99)),
            ms(v.last().copied().unwrap_or_default()),
        );
        if let Some(e) = &s.first_error {
            eprintln!("{op}: first error: {e}");
        }
    }
    if let Ok(p) = peaks.lock() {
        for (pid, (first, peak)) in p.iter() {
            println!(
                "hub pid {pid}: RSS {:.0} MiB at start of sampling, peak {:.0} MiB",
                *first as f64 / 1024.0,
                *peak as f64 / 1024.0
            );
        }
    }
    println!("errors: {total_errors}");
    Ok(())
}
