//! Crash consistency under SIGKILL (issue 10). The real `yilian serve` binary (HTTP and DIMSE on
//! fixed free ports, MLLP off) takes a continuous load — one task sending STOW-RS (a few instances
//! per request), one sending C-STORE (several instances per association) — while it is killed with
//! SIGKILL at seeded pseudo-random moments and restarted on the same ports, catalog and blobs, ten
//! times by default. An instance counts as acknowledged only when the STOW response lists it in its
//! ReferencedSOPSequence or its C-STORE-RSP says success; anything else during a kill is "unknown"
//! and is sent again later (a repeat of identical bytes is a no-op success). Afterwards:
//! - every acknowledged instance is retrieved over WADO-RS and its SHA-256 matches what was sent (the
//!   whole Part 10 file for STOW-RS; the data set for C-STORE, whose file meta the hub writes);
//! - the catalog holds each sent SOP Instance UID exactly once, and nothing else;
//! - `yilian repair blobs` finds no catalog row whose blob is missing and reports the orphans; with
//!   `--delete --grace-secs 0` it collects them, a second run finds none, and every acknowledged
//!   instance is still served after a restart;
//! - every study is routed exactly once (one `exams` row per study, the study `routed`);
//! - the audit hash chain is intact (`yilian audit verify`).
//!
//! Catalogs: a SQLite file, and a fresh PostgreSQL database when DATABASE_URL is set (dropped
//! after). Blobs: a folder, and a fresh prefix on the S3 test server when `YILIAN_TEST_S3_*` is set
//! (part size 5 MiB and some instances above it, so kills interrupt multipart uploads), once
//! acknowledging after the store and once write-behind (`blobs.ack_after = "local"`).
//! `YILIAN_CRASH_SEED` replays a run (the seed is printed); `YILIAN_CRASH_CYCLES=N` soaks longer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use dicom_dictionary_std::{tags, uids};
use dicom_ul::Pdu;
use dicom_ul::association::Association;
use dicom_ul::association::client::{AsyncClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use sha2::{Digest, Sha256};
use sqlx::Row;
use support::{Backend, FreshCatalog, S3Env, backends, s3_env};
use yilian_fixtures::{InstanceSpec, instance_bytes};
use yilian_server::dimse::command::{Command as DimseCommand, CommandBuilder, field};

const DEFAULT_CYCLES: u32 = 10;
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Instances per STOW-RS request and per C-STORE association.
const STOW_BATCH: usize = 3;
const DIMSE_BATCH: usize = 4;
/// Per study: 3 series of 4 instances.
const PER_SERIES: u32 = 4;
const SERIES: u32 = 3;

// ------------------------------------------------------------------------------------ randomness

/// SplitMix64: a seeded, reproducible sequence (no dependency needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ------------------------------------------------------------------------------------ instances

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Channel {
    Stow,
    Dimse,
}

impl Channel {
    fn number(self) -> u32 {
        match self {
            Channel::Stow => 1,
            Channel::Dimse => 2,
        }
    }
}

/// One distinct instance of the load: regenerated from its spec whenever it is (re)sent.
#[derive(Clone, Debug)]
struct Item {
    spec: InstanceSpec,
    channel: Channel,
    /// SHA-256 of what the hub must give back: the whole file (STOW-RS) or the data set (C-STORE).
    sha256: [u8; 32],
    size: usize,
}

/// The `n`th instance a channel sends. Most are small; every 7th is 512×512 (≈ 512 KiB, so kills
/// land mid-write); with `huge`, every 20th is 1700×1700 (≈ 5.5 MiB, over the 5 MiB part size).
fn make_item(run: u64, channel: Channel, n: u32, huge: bool) -> Item {
    let per_study = PER_SERIES * SERIES;
    let (study, series, inst) = (n / per_study, (n / PER_SERIES) % SERIES, n % PER_SERIES);
    let ch = channel.number();
    let study_uid = format!("2.25.{run}.{ch}.{study}");
    let series_uid = format!("{study_uid}.{}", series + 1);
    let side: u16 = if huge && n % 20 == 13 {
        1700
    } else if n % 7 == 3 {
        512
    } else {
        64
    };
    let spec = InstanceSpec {
        patient_id: format!("CR{ch}{study:04}"),
        study_uid,
        sop_uid: format!("{series_uid}.{}", inst + 1),
        series_uid,
        instance_number: (inst + 1) as i32,
        rows: side,
        columns: side,
        seed: (n % 1000) as u16,
        ..InstanceSpec::ct(1)
    };
    let bytes = instance_bytes(&spec);
    let sha256 = match channel {
        Channel::Stow => Sha256::digest(&bytes).into(),
        Channel::Dimse => Sha256::digest(data_set_of(&bytes)).into(),
    };
    Item {
        spec,
        channel,
        sha256,
        size: bytes.len(),
    }
}

/// The data set of a Part 10 file: what follows the file meta group.
fn data_set_of(part10: &[u8]) -> &[u8] {
    assert_eq!(&part10[128..132], b"DICM");
    let group_len = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    &part10[144 + group_len..]
}

// ------------------------------------------------------------------------------------ the hub

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything that stays the same across restarts: config, catalog, blobs, ports.
struct HubSetup {
    dir: tempfile::TempDir,
    config: PathBuf,
    s3: Option<S3Env>,
    http_port: u16,
    dimse_port: u16,
    /// Where unfinished uploads are spooled (a kill can leave files here).
    staging: PathBuf,
    /// The run's catalog (a PostgreSQL database is dropped with the run).
    catalog: FreshCatalog,
}

/// The demo alliance, with routing quick (a study quiet for 2 s is routed, swept every second), no
/// offers, per-token limits out of the way, and blobs as given (S3 parts of 5 MiB).
fn config_text(blobs: &toml::Table) -> String {
    let mut t: toml::Table = yilian_config::DEMO_TOML.parse().unwrap();
    let routing = t["routing"].as_table_mut().unwrap();
    routing.insert("quiet_period_secs".into(), 2.into());
    routing.insert("sweep_interval_secs".into(), 1.into());
    let mut rota = toml::Table::new();
    rota.insert("offer_secs".into(), 0.into());
    t.insert("rota".into(), rota.into());
    t.insert("blobs".into(), blobs.clone().into());
    // The verification re-reads every acknowledged instance with one token, far above the default
    // per-token burst (a long soak acknowledges thousands): limits are not what this test is about.
    let server = t["server"].as_table_mut().unwrap();
    let mut limits = toml::Table::new();
    limits.insert("requests_per_minute".into(), 1_000_000.into());
    limits.insert("burst".into(), 100_000.into());
    limits.insert("concurrent_requests".into(), 1_000.into());
    server.insert("limits".into(), limits.into());
    t.to_string()
}

impl HubSetup {
    async fn new(backend: &Backend, s3: Option<S3Env>, write_behind: bool) -> HubSetup {
        let dir = tempfile::tempdir().unwrap();
        let catalog = FreshCatalog::new(backend, dir.path()).await;
        let mut blobs = toml::Table::new();
        blobs.insert("part_size_mib".into(), 5.into());
        let staging = match &s3 {
            None => {
                blobs.insert(
                    "url".into(),
                    format!("file://{}/blobs", dir.path().display()).into(),
                );
                dir.path().join("blobs").join(".staging")
            }
            Some(env) => {
                let prefix = format!("crash-{}", ulid::Ulid::new().to_string().to_lowercase());
                blobs.insert("url".into(), format!("s3://{}/{prefix}", env.bucket).into());
                blobs.insert("endpoint".into(), env.endpoint.clone().into());
                blobs.insert("region".into(), env.region.clone().into());
                blobs.insert("access_key_id".into(), env.access_key_id.clone().into());
                blobs.insert(
                    "allow_http".into(),
                    env.endpoint.starts_with("http://").into(),
                );
                let staging = dir.path().join("staging");
                blobs.insert("staging_dir".into(), staging.display().to_string().into());
                if write_behind {
                    blobs.insert("ack_after".into(), "local".into());
                }
                staging
            }
        };
        let config = dir.path().join("alliance.toml");
        std::fs::write(&config, config_text(&blobs)).unwrap();
        HubSetup {
            config,
            s3,
            http_port: free_port(),
            dimse_port: free_port(),
            staging,
            catalog,
            dir,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn dimse_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dimse_port))
    }

    /// The binary with this run's catalog, blobs, keys and ports.
    fn yilian(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_yilian"));
        c.env("YILIAN_CONFIG", &self.config)
            .env("YILIAN_DATABASE_URL", &self.catalog.url)
            .env("YILIAN_KEYS_DIR", self.dir.path().join("keys"))
            .env("YILIAN_HTTP_ADDR", format!("127.0.0.1:{}", self.http_port))
            .env("YILIAN_DICOM_ENABLED", "1")
            .env(
                "YILIAN_DICOM_ADDR",
                format!("127.0.0.1:{}", self.dimse_port),
            )
            .env("YILIAN_MLLP_ENABLED", "0")
            .env("YILIAN_LOG", "error");
        if let Some(env) = &self.s3 {
            c.env("YILIAN_BLOBS_SECRET_ACCESS_KEY", &env.secret_access_key);
        }
        c
    }

    /// Starts `yilian serve` and waits until `/readyz` answers.
    async fn start(&self) -> Running {
        let child = self
            .yilian()
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start yilian serve");
        let mut running = Running { child };
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(Some(status)) = running.child.try_wait() {
                panic!("yilian serve exited during start: {status}");
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.base())).send().await
                && r.status().is_success()
            {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running.kill();
        panic!("yilian serve on {} did not become ready", self.base());
    }

    /// Runs a `yilian` subcommand to completion: (exit success, stdout).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = self
            .yilian()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run yilian");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            eprintln!(
                "yilian {args:?}: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (out.status.success(), stdout)
    }

    /// Spool files (regular files; the write-behind outbox is a folder in there and holds
    /// acknowledged blobs, not spool files).
    fn staged_files(&self) -> usize {
        std::fs::read_dir(&self.staging)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// A running hub process; killed (SIGKILL) and reaped when dropped.
struct Running {
    child: Child,
}

impl Running {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------------------------------------------ load

/// What one send told the sender about an instance.
enum Outcome {
    Acked,
    /// No answer (connection refused or cut), or a status that is not success: send again later.
    Unknown(String),
}

const RUN: u8 = 0;
const DRAIN: u8 = 1;

/// What one load task did.
#[derive(Default)]
struct Ledger {
    acked: Vec<Item>,
    /// Sends whose outcome was unknown (an instance may be counted more than once).
    unknown_sends: usize,
    /// Distinct instances that were unknown at least once.
    unknown_instances: HashSet<String>,
    /// Still unknown when the task gave up (must be none).
    pending: Vec<Item>,
    /// A sample of the reasons, for the log.
    reasons: BTreeMap<String, usize>,
}

struct Load {
    run: u64,
    huge: bool,
    base: String,
    dimse: SocketAddr,
    token: String,
    phase: Arc<AtomicU8>,
}

impl Load {
    /// Sends fresh instances (and the unknown ones again) until told to drain, then only the
    /// unknown ones until each is acknowledged.
    async fn run(self, channel: Channel) -> Ledger {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let mut ledger = Ledger::default();
        let mut retry: Vec<Item> = Vec::new();
        let mut next = 0u32;
        let batch = match channel {
            Channel::Stow => STOW_BATCH,
            Channel::Dimse => DIMSE_BATCH,
        };
        let mut drain_until = None;
        loop {
            let draining = self.phase.load(Ordering::SeqCst) == DRAIN;
            if draining {
                if retry.is_empty() {
                    break;
                }
                // The hub is up for good now: two minutes to get every unknown one acknowledged.
                let until = *drain_until
                    .get_or_insert_with(|| std::time::Instant::now() + Duration::from_secs(120));
                if std::time::Instant::now() > until {
                    ledger.pending = retry;
                    break;
                }
            }
            let mut items: Vec<Item> = retry.drain(..retry.len().min(batch)).collect();
            while !draining && items.len() < batch {
                let (run, huge, n) = (self.run, self.huge, next);
                next += 1;
                items.push(
                    tokio::task::spawn_blocking(move || make_item(run, channel, n, huge))
                        .await
                        .unwrap(),
                );
            }
            let outcomes = match channel {
                Channel::Stow => self.stow(&http, &items).await,
                Channel::Dimse => self.c_store(&items).await,
            };
            let mut any_unknown = false;
            for (item, outcome) in items.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Acked => ledger.acked.push(item),
                    Outcome::Unknown(why) => {
                        any_unknown = true;
                        ledger.unknown_sends += 1;
                        ledger.unknown_instances.insert(item.spec.sop_uid.clone());
                        let key: String = why.chars().take(80).collect();
                        *ledger.reasons.entry(key).or_default() += 1;
                        retry.push(item);
                    }
                }
            }
            if any_unknown {
                // The hub is probably down: give it a moment before the next try.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        ledger
    }

    /// One STOW-RS request; an instance is acknowledged only when the response's
    /// ReferencedSOPSequence lists it.
    async fn stow(&self, http: &reqwest::Client, items: &[Item]) -> Vec<Outcome> {
        let files: Vec<Vec<u8>> = items.iter().map(|i| instance_bytes(&i.spec)).collect();
        let parts: Vec<(&str, &[u8])> = files
            .iter()
            .map(|f| ("application/dicom", f.as_slice()))
            .collect();
        let (ct, body) = support::multipart(&parts);
        let unknown = |why: String| {
            items
                .iter()
                .map(|_| Outcome::Unknown(why.clone()))
                .collect()
        };
        let r = match http
            .post(format!("{}/dicomweb/studies", self.base))
            .bearer_auth(&self.token)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return unknown(format!("STOW send: {}", error_kind(&e))),
        };
        let status = r.status();
        let body: serde_json::Value = match r.json().await {
            Ok(v) => v,
            Err(e) => return unknown(format!("STOW {status} body: {}", error_kind(&e))),
        };
        let uid_of = |item: &serde_json::Value| {
            item["00081155"]["Value"][0]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let referenced: HashSet<String> = body["00081199"]["Value"]
            .as_array()
            .map(|a| a.iter().map(uid_of).collect())
            .unwrap_or_default();
        let failed: HashMap<String, String> = body["00081198"]["Value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        (
                            uid_of(f),
                            format!(
                                "STOW failed {} {}",
                                f["00081197"]["Value"][0],
                                f["00000902"]["Value"][0].as_str().unwrap_or_default()
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        items
            .iter()
            .map(|i| {
                if referenced.contains(&i.spec.sop_uid) {
                    Outcome::Acked
                } else {
                    Outcome::Unknown(
                        failed
                            .get(&i.spec.sop_uid)
                            .cloned()
                            .unwrap_or_else(|| format!("STOW {status}: not referenced")),
                    )
                }
            })
            .collect()
    }

    /// One association of C-STOREs; an instance is acknowledged only on a success (0000) or
    /// warning (Bxxx) C-STORE-RSP.
    async fn c_store(&self, items: &[Item]) -> Vec<Outcome> {
        let mut out = Vec::new();
        let mut scu =
            match tokio::time::timeout(Duration::from_secs(30), Scu::connect(self.dimse)).await {
                Ok(Ok(scu)) => scu,
                Ok(Err(e)) => {
                    return items
                        .iter()
                        .map(|_| Outcome::Unknown(format!("associate: {e}")))
                        .collect();
                }
                Err(_) => {
                    return items
                        .iter()
                        .map(|_| Outcome::Unknown("associate: timeout".into()))
                        .collect();
                }
            };
        let mut broken = None;
        for item in items {
            if let Some(why) = &broken {
                out.push(Outcome::Unknown(format!("after {why}")));
                continue;
            }
            let file = instance_bytes(&item.spec);
            match tokio::time::timeout(
                Duration::from_secs(120),
                scu.store(&item.spec.sop_uid, data_set_of(&file)),
            )
            .await
            {
                Ok(Ok(status)) if status == 0 || (0xB000..=0xBFFF).contains(&status) => {
                    out.push(Outcome::Acked)
                }
                Ok(Ok(status)) => {
                    out.push(Outcome::Unknown(format!("C-STORE status {status:04X}")))
                }
                Ok(Err(e)) => {
                    broken = Some(format!("C-STORE: {e}"));
                    out.push(Outcome::Unknown(format!("C-STORE: {e}")));
                }
                Err(_) => {
                    broken = Some("C-STORE timeout".to_string());
                    out.push(Outcome::Unknown("C-STORE timeout".into()));
                }
            }
        }
        if broken.is_none() {
            let _ = tokio::time::timeout(Duration::from_secs(10), scu.assoc.release()).await;
        }
        out
    }
}

/// A short, stable description of a reqwest error (connection refused, reset, …).
fn error_kind(e: &reqwest::Error) -> String {
    let mut s = if e.is_connect() {
        "connect".to_string()
    } else if e.is_timeout() {
        "timeout".to_string()
    } else if e.is_body() || e.is_decode() {
        "body".to_string()
    } else {
        "request".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(inner) = src {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            s = format!("{s} ({:?})", io.kind());
            break;
        }
        src = inner.source();
    }
    s
}

/// A minimal C-STORE SCU over a dicom-ul association (calling AE HX_CT01, a demo node).
struct Scu {
    assoc: AsyncClientAssociation<tokio::net::TcpStream>,
    next_id: u16,
}

type ScuResult<T> = Result<T, String>;

impl Scu {
    async fn connect(addr: SocketAddr) -> ScuResult<Scu> {
        let assoc = ClientAssociationOptions::new()
            .calling_ae_title("HX_CT01")
            .called_ae_title("YILIAN")
            .with_presentation_context(
                uids::CT_IMAGE_STORAGE.to_string(),
                vec![EXPLICIT_LE.to_string()],
            )
            .establish_async(addr)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Scu { assoc, next_id: 0 })
    }

    async fn send_pdvs(&mut self, pc: u8, ty: PDataValueType, bytes: &[u8]) -> ScuResult<()> {
        let max = (self.assoc.peer_max_pdu_length() as usize).clamp(1024, 1 << 20) - 6;
        let chunks: Vec<&[u8]> = bytes.chunks(max).collect();
        for (i, c) in chunks.iter().enumerate() {
            self.assoc
                .send(&Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id: pc,
                        value_type: ty.clone(),
                        is_last: i + 1 == chunks.len(),
                        data: c.to_vec(),
                    }],
                })
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// C-STORE of a CT data set; the response status.
    async fn store(&mut self, sop_uid: &str, data_set: &[u8]) -> ScuResult<u16> {
        let pc = self
            .assoc
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.abstract_syntax == uids::CT_IMAGE_STORAGE
                    && pc.reason == PresentationContextResultReason::Acceptance
            })
            .map(|pc| pc.id)
            .ok_or("CT storage not accepted")?;
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let cmd = CommandBuilder::request(field::C_STORE_RQ, id)
            .uid(tags::AFFECTED_SOP_CLASS_UID, uids::CT_IMAGE_STORAGE)
            .uid(tags::AFFECTED_SOP_INSTANCE_UID, sop_uid)
            .u16(tags::PRIORITY, 0)
            .with_data_set()
            .encode();
        self.send_pdvs(pc, PDataValueType::Command, &cmd).await?;
        self.send_pdvs(pc, PDataValueType::Data, data_set).await?;
        let mut bytes = Vec::new();
        loop {
            match self.assoc.receive().await.map_err(|e| e.to_string())? {
                Pdu::PData { data } => {
                    for pdv in data {
                        if pdv.value_type == PDataValueType::Command {
                            bytes.extend_from_slice(&pdv.data);
                            if pdv.is_last {
                                let rsp = DimseCommand::parse(&bytes).map_err(|e| e.to_string())?;
                                if rsp.field != field::C_STORE_RSP || rsp.message_id != id {
                                    return Err(format!("unexpected response {rsp:?}"));
                                }
                                return rsp.u16(tags::STATUS).ok_or_else(|| "no status".into());
                            }
                        }
                    }
                }
                other => return Err(format!("unexpected PDU {other:?}")),
            }
        }
    }
}

// ------------------------------------------------------------------------------------ checks

/// The single part of a multipart/related response body.
fn single_part(content_type: &str, body: &[u8]) -> Option<Vec<u8>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let start = find(body, delim.as_bytes(), 0)?;
    let headers_end = find(body, b"\r\n\r\n", start)? + 4;
    let end = find(body, format!("\r\n{delim}").as_bytes(), headers_end)?;
    Some(body[headers_end..end].to_vec())
}

/// Retrieves every acknowledged instance over WADO-RS (as stored) and compares SHA-256s; returns
/// the instances that are missing or differ.
async fn retrieve_all(base: &str, token: &str, acked: &[Item]) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut bad = Vec::new();
    for item in acked {
        let s = &item.spec;
        let r = http
            .get(format!(
                "{base}/dicomweb/studies/{}/series/{}/instances/{}",
                s.study_uid, s.series_uid, s.sop_uid
            ))
            .bearer_auth(token)
            .header(
                "accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )
            .send()
            .await
            .expect("WADO-RS");
        let status = r.status();
        if !status.is_success() {
            bad.push(format!("{} ({:?}): {status}", s.sop_uid, item.channel));
            continue;
        }
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = r.bytes().await.expect("WADO-RS body");
        let Some(file) = single_part(&ct, &body) else {
            bad.push(format!("{}: not one multipart part", s.sop_uid));
            continue;
        };
        let got: [u8; 32] = match item.channel {
            Channel::Stow => Sha256::digest(&file).into(),
            Channel::Dimse => Sha256::digest(data_set_of(&file)).into(),
        };
        if got != item.sha256 {
            bad.push(format!(
                "{} ({:?}): sha256 {} != sent {}",
                s.sop_uid,
                item.channel,
                hex::encode(got),
                hex::encode(item.sha256)
            ));
        }
    }
    bad
}

/// What one `yilian repair blobs` run printed on its first line.
#[derive(Debug, PartialEq, Eq)]
struct RepairLine {
    orphans: usize,
    recent: usize,
    missing: usize,
    stale_spool: usize,
}

fn repair_counts(out: &str) -> RepairLine {
    let line = out.lines().next().unwrap_or_default();
    let number_before = |word: &str| -> usize {
        let i = line
            .find(word)
            .unwrap_or_else(|| panic!("no {word:?} in {line:?}"));
        line[..i]
            .split(|c: char| !c.is_ascii_digit())
            .rfind(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    RepairLine {
        orphans: number_before(" orphan(s)"),
        recent: number_before(" recent unreferenced"),
        missing: number_before(" missing"),
        stale_spool: number_before(" stale spool"),
    }
}

// ------------------------------------------------------------------------------------ the run

struct Summary {
    cycles: u32,
    acknowledged: usize,
    unknown_instances: usize,
    unknown_sends: usize,
    orphans: usize,
    missing: usize,
    staged_left: usize,
    bytes_acked: usize,
}

async fn crash_run(
    backend: &Backend,
    s3: Option<S3Env>,
    write_behind: bool,
    seed: u64,
    cycles: u32,
) -> Summary {
    let label = format!(
        "{} + {}",
        match backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        },
        match (&s3, write_behind) {
            (None, _) => "files",
            (Some(_), false) => "S3",
            (Some(_), true) => "S3 write-behind",
        }
    );
    let huge = s3.is_some();
    let setup = HubSetup::new(backend, s3, write_behind).await;
    let mut rng = Rng(seed);
    let mut hub = setup.start().await;
    let (ok, token) = setup.run(&["user", "token", "wang.tech"]);
    assert!(ok, "yilian user token");
    let token = token.trim().to_string();

    let phase = Arc::new(AtomicU8::new(RUN));
    let load = || Load {
        run: seed,
        huge,
        base: setup.base(),
        dimse: setup.dimse_addr(),
        token: token.clone(),
        phase: phase.clone(),
    };
    let stow = tokio::spawn(load().run(Channel::Stow));
    let dimse = tokio::spawn(load().run(Channel::Dimse));

    // The killer: SIGKILL 150–900 ms after the hub became ready, restart on the same everything.
    for cycle in 1..=cycles {
        let after = rng.between(150, 900);
        tokio::time::sleep(Duration::from_millis(after)).await;
        hub.kill();
        eprintln!("{label}: cycle {cycle}: SIGKILL {after} ms after ready");
        hub = setup.start().await;
    }
    // Load stops; whatever was unknown is sent again to the running hub until acknowledged.
    phase.store(DRAIN, Ordering::SeqCst);
    let mut ledgers = [stow.await.unwrap(), dimse.await.unwrap()];
    for (l, name) in ledgers.iter().zip(["STOW-RS", "C-STORE"]) {
        eprintln!(
            "{label}: {name}: {} acknowledged, {} unknown sends ({} instances); reasons {:?}",
            l.acked.len(),
            l.unknown_sends,
            l.unknown_instances.len(),
            l.reasons
        );
    }
    let pending: Vec<String> = ledgers
        .iter()
        .flat_map(|l| l.pending.iter().map(|i| i.spec.sop_uid.clone()))
        .collect();
    assert!(
        pending.is_empty(),
        "{label}: instances never acknowledged once the hub was up again: {pending:?}"
    );
    let acked: Vec<Item> = ledgers.iter_mut().flat_map(|l| l.acked.drain(..)).collect();
    let sent: HashSet<&str> = acked.iter().map(|i| i.spec.sop_uid.as_str()).collect();
    // An instance acknowledged twice (a retry of one whose first answer was lost, or both) is still
    // one instance.
    let mut acked_once: HashMap<&str, &Item> = HashMap::new();
    for i in &acked {
        acked_once.insert(i.spec.sop_uid.as_str(), i);
    }
    let acked_unique: Vec<Item> = acked_once.values().map(|i| (*i).clone()).collect();
    assert!(
        acked_unique.len() >= 20,
        "{label}: the load acknowledged too little to test anything ({})",
        acked_unique.len()
    );

    // Every acknowledged instance is there, bit-exact.
    let bad = retrieve_all(&setup.base(), &token, &acked_unique).await;
    assert!(
        bad.is_empty(),
        "{label}: acknowledged instances lost or changed: {bad:?}"
    );

    // The catalog holds each sent instance exactly once, and nothing it was not sent.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&setup.catalog.url).await.unwrap();
    let rows = sqlx::query("SELECT sop_instance_uid, blob_key, sha256 FROM instances")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut in_catalog: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        let uid: String = r.get(0);
        let key: String = r.get(1);
        let sha: String = r.get(2);
        assert_eq!(
            key,
            yilian_app::ingest::blob_key(&sha),
            "{label}: {uid} names a blob that is not its content address"
        );
        *in_catalog.entry(uid).or_default() += 1;
    }
    let twice: Vec<&String> = in_catalog
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(u, _)| u)
        .collect();
    assert!(twice.is_empty(), "{label}: stored twice: {twice:?}");
    let strangers: Vec<&String> = in_catalog
        .keys()
        .filter(|u| !sent.contains(u.as_str()))
        .collect();
    assert!(
        strangers.is_empty(),
        "{label}: catalog rows for instances never acknowledged: {strangers:?}"
    );
    assert_eq!(in_catalog.len(), acked_unique.len(), "{label}: instances");

    // Every study is routed once: one exam each, the study marked routed.
    let studies: HashSet<&str> = acked_unique
        .iter()
        .map(|i| i.spec.study_uid.as_str())
        .collect();
    let mut waited = 0;
    let exams: HashMap<String, i64> = loop {
        let exams: HashMap<String, i64> =
            sqlx::query("SELECT study_uid, COUNT(*) FROM exams GROUP BY study_uid")
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
                .collect();
        if studies.iter().all(|s| exams.contains_key(*s)) || waited >= 60 {
            break exams;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += 1;
    };
    let unrouted: Vec<&&str> = studies
        .iter()
        .filter(|s| !exams.contains_key(**s))
        .collect();
    assert!(unrouted.is_empty(), "{label}: never routed: {unrouted:?}");
    let routed_twice: Vec<(&String, &i64)> = exams.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        routed_twice.is_empty(),
        "{label}: studies with more than one exam: {routed_twice:?}"
    );
    assert_eq!(exams.len(), studies.len(), "{label}: one exam per study");
    let states: Vec<(String, String)> = sqlx::query("SELECT study_uid, state FROM studies")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .filter(|(_, s)| s != "routed")
        .collect();
    assert!(states.is_empty(), "{label}: studies not routed: {states:?}");
    let notified: Vec<(String, i64)> = sqlx::query(
        "SELECT exam_id, COUNT(*) FROM notifications WHERE kind = 'exam.urgent' GROUP BY exam_id HAVING COUNT(*) > 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
    .collect();
    assert!(
        notified.is_empty(),
        "{label}: routing notified twice: {notified:?}"
    );
    pool.close().await;

    // Repair: stop the hub, report, collect, report again.
    hub.kill();
    let staged_left = setup.staged_files();
    let (ok, out) = setup.run(&["repair", "blobs", "--grace-secs", "0"]);
    eprintln!(
        "{label}: repair blobs: {}",
        out.lines().next().unwrap_or_default()
    );
    assert!(ok, "{label}: repair blobs found missing blobs:\n{out}");
    let found = repair_counts(&out);
    assert_eq!((found.recent, found.missing), (0, 0), "{label}: {out}");
    assert_eq!(found.stale_spool, staged_left, "{label}: {out}");
    let (ok, out) = setup.run(&["repair", "blobs", "--delete", "--grace-secs", "0"]);
    assert!(ok, "{label}: {out}");
    assert_eq!(repair_counts(&out), found, "{label}: {out}");
    let (ok, out) = setup.run(&["repair", "blobs", "--grace-secs", "0"]);
    assert!(ok, "{label}: {out}");
    assert_eq!(
        repair_counts(&out),
        RepairLine {
            orphans: 0,
            recent: 0,
            missing: 0,
            stale_spool: 0
        },
        "{label}: left after --delete: {out}"
    );
    assert_eq!(setup.staged_files(), 0, "{label}: spool files left");
    let orphans = found.orphans;
    let missing = found.missing;
    let (ok, out) = setup.run(&["audit", "verify"]);
    assert!(ok, "{label}: audit chain after the crashes: {out}");

    // Still everything there after the collection.
    let hub = setup.start().await;
    let bad = retrieve_all(&setup.base(), &token, &acked_unique).await;
    assert!(
        bad.is_empty(),
        "{label}: acknowledged instances lost after repair --delete: {bad:?}"
    );
    drop(hub);

    let summary = Summary {
        cycles,
        acknowledged: acked_unique.len(),
        unknown_instances: ledgers.iter().map(|l| l.unknown_instances.len()).sum(),
        unknown_sends: ledgers.iter().map(|l| l.unknown_sends).sum(),
        orphans,
        missing,
        staged_left,
        bytes_acked: acked_unique.iter().map(|i| i.size).sum(),
    };
    // Straight to stderr, past the test harness's capture, so CI logs always show the numbers.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "crash consistency [{label}] seed {seed}: cycles {}, acknowledged {} ({} bytes, {} studies), unknown {} instances ({} sends), orphans {}, missing {}, spool files left by the kills {} (collected)",
        summary.cycles,
        summary.acknowledged,
        summary.bytes_acked,
        studies.len(),
        summary.unknown_instances,
        summary.unknown_sends,
        summary.orphans,
        summary.missing,
        summary.staged_left
    );
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_uploads_survive_sigkill_and_repair_collects_the_rest() {
    let seed = match std::env::var("YILIAN_CRASH_SEED") {
        Ok(s) => s.parse().expect("YILIAN_CRASH_SEED is a number"),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_000
        }
    };
    let cycles = std::env::var("YILIAN_CRASH_CYCLES")
        .ok()
        .map(|c| c.parse().expect("YILIAN_CRASH_CYCLES is a number"))
        .unwrap_or(DEFAULT_CYCLES);
    eprintln!(
        "crash consistency: seed {seed} (YILIAN_CRASH_SEED={seed} replays it), {cycles} cycles"
    );
    let mut runs = Vec::new();
    for backend in backends() {
        runs.push(crash_run(&backend, None, false, seed, cycles).await);
    }
    if let Some(env) = s3_env() {
        runs.push(crash_run(&backends()[0], Some(env.clone()), false, seed, cycles).await);
        // Acknowledged from the local outbox, uploaded behind: a kill must lose nothing either.
        runs.push(crash_run(&backends()[0], Some(env), true, seed, cycles).await);
    }
    let total: usize = runs.iter().map(|s| s.acknowledged).sum();
    let missing: usize = runs.iter().map(|s| s.missing).sum();
    assert_eq!(missing, 0);
    assert!(total > 0);
}
