//! `yilian`: run the hub (`demo`, `serve`), make tokens (`user token`), make a signer's key
//! (`keygen`), verify a signed report offline (`verify`), check the audit chain (`audit verify`), find
//! orphan and missing blobs (`repair blobs`), write the synthetic fixtures (`fixtures`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use yilian_app::KeyVault;
use yilian_config::Config;
use yilian_signing::{
    Algorithm, CheckStatus, Evidence, LatestEvidence, Passphrase, PublicKeyRecord, ResultsEvidence,
    SignedDocument, referenced_instances,
};

#[derive(Parser)]
#[command(
    name = "yilian",
    version,
    about = "医联 Yilian — regional shared diagnostics hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub with the embedded demo alliance (SQLite and blobs under ./yilian-data).
    Demo,
    /// Run the hub with a configuration file.
    Serve {
        #[arg(long, env = "YILIAN_CONFIG")]
        config: PathBuf,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Verify a signed report offline: signature, key validity at signing time, the hub's
    /// countersignature, and (with --instances) the referenced instances' checksums. Exit 1 when
    /// any check fails.
    Verify {
        /// The report document, as `GET /api/v1/reports/{id}` returns it.
        report: PathBuf,
        /// Public keys, as `GET /api/v1/keys` returns them (a file).
        #[arg(long)]
        keys: PathBuf,
        /// A folder holding the report's DICOM instances (any names, searched recursively): each
        /// referenced instance must be there with the SHA-256 the report names.
        #[arg(long)]
        instances: Option<PathBuf>,
    },
    /// Make a signer's key: sealed with a passphrase (from --passphrase-file, else asked on the
    /// terminal or read from stdin), published with its validity period. Prints the key id.
    Keygen {
        /// The signer (a user of the directory).
        #[arg(long)]
        user: String,
        /// `sm2` or `ed25519`; the alliance's `[keys] algorithm` when absent.
        #[arg(long)]
        algorithm: Option<String>,
        /// A file whose first line is the passphrase.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Keep the key in clear, without a passphrase (demo only; refused where
        /// `keys.require_passphrase`).
        #[arg(long)]
        no_passphrase: bool,
        /// Retire the signer's current key (kept beside as `.retired`) and make a new one.
        #[arg(long)]
        replace: bool,
        /// Configuration file; the embedded demo alliance when absent.
        #[arg(long, env = "YILIAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The audit trail (`audit verify`: check the hash chain; exit 1 when it is broken).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Repairs (`repair blobs`): find blobs no catalog row points to and rows whose blob is missing.
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
    /// Replay one synthetic county day (ECG and imaging arrivals, readers on shifts) through the real
    /// hub under a virtual clock, with the hub's priority order and with first-in-first-out, and print
    /// SLA compliance and turnaround per priority.
    Simulate {
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write the synthetic DICOM fixtures and their manifest into a folder (`fixtures DIR`), or the
    /// mixed-SOP-class test corpus (`fixtures corpus DIR`; scripts/make-corpus adds its variants).
    #[command(args_conflicts_with_subcommands = true)]
    Fixtures {
        #[command(subcommand)]
        kind: Option<FixturesCommand>,
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum FixturesCommand {
    /// One synthetic instance per storage class (CR, DX, CT, MR, US, MG, XA, SC, ECG, SR, PDF).
    Corpus { dir: PathBuf },
    /// Synthetic ECGs of one resident for the tour: a prior (HL7 aECG), today's (SCP-ECG), a device
    /// STEMI statement (DICOM 12-lead waveform) and a tachycardia (aECG).
    Ecg { dir: PathBuf },
    /// Synthetic lab messages for the tour: ORU^R01 from the township lab (HX_LIS) and the county lab
    /// centre (COUNTYLAB, with a critical potassium and its correction), and a FHIR R4 Bundle.
    Lab { dir: PathBuf },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the audit hash chain and report the first edited, removed, inserted or reordered event.
    Verify {
        /// Configuration file; the embedded demo alliance when absent.
        #[arg(long, env = "YILIAN_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RepairCommand {
    /// Walk the blob store: report orphan blobs (nothing points to them), missing blobs (a catalog
    /// row points to nothing) and stale spool files (uploads a crash cut off); with --delete, remove
    /// the orphans and spool files older than --grace-secs. Exit 1 when a blob is missing.
    Blobs {
        /// Remove the orphans (otherwise only report them).
        #[arg(long)]
        delete: bool,
        /// Unreferenced blobs younger than this may belong to an upload in progress: left alone.
        #[arg(long, default_value_t = 3600)]
        grace_secs: i64,
        /// Configuration file; the embedded demo alliance when absent.
        #[arg(long, env = "YILIAN_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Print a new API token for a user (stored hashed; shown only now).
    Token {
        username: String,
        #[arg(long, default_value = "cli")]
        label: String,
        /// Configuration file; the embedded demo alliance when absent.
        #[arg(long, env = "YILIAN_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn init_tracing() {
    let filter =
        EnvFilter::try_from_env("YILIAN_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("YILIAN_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match config {
        Some(path) => Config::load(path)?,
        None => Config::demo()?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            init_tracing();
            run(Config::demo()?, true).await
        }
        Command::Simulate { seed } => yilian::simulate::simulate(seed).await,
        Command::Serve { config } => {
            init_tracing();
            run(Config::load(&config)?, false).await
        }
        Command::User {
            command:
                UserCommand::Token {
                    username,
                    label,
                    config,
                },
        } => {
            let hub = yilian::open_hub(load(config.as_ref())?).await?;
            let token = hub
                .issue_token(&username, &label)
                .await
                .with_context(|| format!("making a token for {username}"))?;
            println!("{token}");
            Ok(())
        }
        Command::Verify {
            report,
            keys,
            instances,
        } => verify(&report, &keys, instances.as_deref()),
        Command::Keygen {
            user,
            algorithm,
            passphrase_file,
            no_passphrase,
            replace,
            config,
        } => {
            keygen(
                load(config.as_ref())?,
                &user,
                algorithm.as_deref(),
                passphrase_file.as_deref(),
                no_passphrase,
                replace,
            )
            .await
        }
        Command::Audit {
            command: AuditCommand::Verify { config },
        } => {
            let hub = yilian::open_hub(load(config.as_ref())?).await?;
            let r = hub.catalog.verify_audit_chain().await?;
            match &r.problem {
                None => {
                    println!(
                        "audit chain intact: {} event(s){}",
                        r.events,
                        if r.unchained > 0 {
                            format!(", {} older unchained event(s)", r.unchained)
                        } else {
                            String::new()
                        }
                    );
                    Ok(())
                }
                Some(p) => {
                    println!("audit chain BROKEN after {} intact event(s): {p}", r.events);
                    std::process::exit(1);
                }
            }
        }
        Command::Repair {
            command:
                RepairCommand::Blobs {
                    delete,
                    grace_secs,
                    config,
                },
        } => {
            let hub = yilian::open_hub(load(config.as_ref())?).await?;
            let r = hub
                .repair_blobs(delete, grace_secs)
                .await
                .context("walking the blob store")?;
            let orphan_bytes: u64 = r.orphans.iter().map(|b| b.size).sum();
            println!(
                "{} blobs ({} bytes); {} orphan(s) ({} bytes){}; {} recent unreferenced left alone; {} missing; {} stale spool file(s) ({} bytes){}",
                r.blobs,
                r.bytes,
                r.orphans.len(),
                orphan_bytes,
                if delete {
                    format!(", {} deleted", r.deleted)
                } else {
                    " (report only: --delete removes them)".into()
                },
                r.recent_unreferenced,
                r.missing.len(),
                r.stale_spool_files,
                r.stale_spool_bytes,
                if delete {
                    format!(", {} deleted", r.spool_deleted)
                } else {
                    String::new()
                }
            );
            for b in &r.orphans {
                println!("orphan  {}  {} bytes", b.key, b.size);
            }
            for k in &r.missing {
                println!("MISSING {k}");
            }
            if !r.missing.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Fixtures {
            kind: Some(FixturesCommand::Corpus { dir }),
            ..
        } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let files = yilian_fixtures::corpus::corpus();
            for f in &files {
                let path = dir.join(&f.name);
                std::fs::write(&path, &f.bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("wrote {} corpus files to {}", files.len(), dir.display());
            Ok(())
        }
        Command::Fixtures {
            kind: Some(FixturesCommand::Ecg { dir }),
            ..
        } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let files = demo_ecgs()?;
            for (name, bytes) in &files {
                let path = dir.join(name);
                std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("wrote {} ECG files to {}", files.len(), dir.display());
            Ok(())
        }
        Command::Fixtures {
            kind: Some(FixturesCommand::Lab { dir }),
            ..
        } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let files = demo_lab_messages();
            for (name, text) in &files {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("wrote {} lab messages to {}", files.len(), dir.display());
            Ok(())
        }
        Command::Fixtures {
            kind: None,
            dir: None,
        } => bail!("usage: yilian fixtures DIR, or yilian fixtures corpus DIR"),
        Command::Fixtures {
            kind: None,
            dir: Some(dir),
        } => {
            for (name, bytes) in yilian_fixtures::committed_fixtures() {
                let path = dir.join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            std::fs::write(dir.join("MANIFEST.sha256"), yilian_fixtures::manifest())?;
            println!("wrote fixtures and MANIFEST.sha256 to {}", dir.display());
            Ok(())
        }
    }
}

async fn run(config: Config, demo: bool) -> anyhow::Result<()> {
    let addr = config.server.http_addr.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    let hub = yilian::open_hub(config).await?;
    yilian::check_blob_store(&hub).await?;
    if demo {
        print_demo_banner(&hub, local);
    }
    tracing::info!(%local, "yilian hub listening");
    let background = yilian_server::spawn_background(hub.clone());
    let reloads = spawn_reload_on_sighup(hub.clone())?;
    let dimse = if hub.config.dicom.enabled {
        let addr = hub.config.dicom.listen_addr.clone();
        let dimse_listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding the DIMSE listener on {addr} (dicom.listen_addr)"))?;
        Some(yilian_server::spawn_dimse(hub.clone(), dimse_listener))
    } else {
        None
    };
    let mllp = if hub.config.lab.mllp_enabled {
        let addr = hub.config.lab.mllp_addr.clone();
        let mllp_listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding the MLLP listener on {addr} (lab.mllp_addr)"))?;
        Some(yilian_server::spawn_mllp(hub.clone(), mllp_listener))
    } else {
        None
    };
    let shutdown = async {
        // Ctrl-C, or SIGTERM from systemd, a container runtime or Kubernetes.
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
        tracing::info!("shutting down");
    };
    yilian_server::serve(hub.clone(), listener, shutdown).await?;
    background.abort();
    // Another replica takes the sweeps over at its next round instead of after the lease runs out.
    if let Err(e) = hub.release_sweep_lease().await {
        tracing::warn!(error = %e, "sweep lease not released");
    }
    reloads.abort();
    if let Some(d) = dimse {
        d.abort();
    }
    // Messages in hand are stored and acknowledged before their connections close.
    if let Some(m) = mllp {
        m.shutdown(std::time::Duration::from_secs(10)).await;
    }
    Ok(())
}

/// SIGHUP re-reads the routing rules (and `[routing.ecg]`) from the configuration file; a file that
/// does not validate is logged and the rules in force stay.
fn spawn_reload_on_sighup(hub: yilian_app::Hub) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the routing rules");
            if let Err(e) = hub.reload_routing_on_signal().await {
                tracing::warn!(error = %e, "recording the routing reload failed");
            }
        }
    }))
}

fn print_demo_banner(hub: &yilian_app::Hub, local: std::net::SocketAddr) {
    let c = &hub.config;
    println!();
    println!(
        "医联 Yilian — {} (demo alliance, synthetic data)",
        c.alliance.name
    );
    println!("  HTTP      http://{local}   (API document: http://{local}/api/openapi.json)");
    if c.dicom.enabled {
        println!(
            "  DIMSE     {} on {}",
            c.dicom.ae_title, c.dicom.listen_addr
        );
    }
    if c.lab.mllp_enabled {
        println!(
            "  MLLP      HL7 v2 lab results on {} (senders: {})",
            c.lab.mllp_addr,
            c.lab
                .senders
                .iter()
                .map(|s| s.facility.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("  Data      ./yilian-data  (SQLite catalog, blob folder, signing keys)");
    println!("  Users");
    for u in &c.users {
        let site = c.site(&u.site).map(|s| s.name.as_str()).unwrap_or("");
        println!("    {:<16} {:<10} {} {}", u.username, u.role, site, u.name);
    }
    println!("  Get a token (in another terminal, from this folder):");
    println!("    cargo run --release -p yilian -- user token wang.tech");
    println!("  Then follow the tour in README.md. Ctrl-C stops the hub.");
    println!();
}

fn verify(
    report: &PathBuf,
    keys: &PathBuf,
    instances: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let doc: SignedDocument = serde_json::from_slice(
        &std::fs::read(report).with_context(|| format!("reading {}", report.display()))?,
    )
    .with_context(|| format!("{} is not a signed report document", report.display()))?;
    let keys_json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(keys).with_context(|| format!("reading {}", keys.display()))?,
    )
    .context("keys file is not JSON")?;
    let list = keys_json.get("keys").cloned().unwrap_or(keys_json);
    let keys: Vec<PublicKeyRecord> =
        serde_json::from_value(list).context("keys file holds no key list")?;
    let results = match instances {
        None => ResultsEvidence::NotChecked(
            "not checked: give --instances DIR (or use the hub's /verify)".into(),
        ),
        Some(dir) => {
            let mut have = std::collections::HashSet::new();
            hash_files(dir, &mut have)?;
            ResultsEvidence::Hashes(
                referenced_instances(&doc.report)
                    .into_iter()
                    .map(|(sop, sha)| {
                        let found = have.contains(&sha).then_some(sha);
                        (sop, found)
                    })
                    .collect(),
            )
        }
    };
    let evidence = Evidence {
        results,
        latest: LatestEvidence::NotChecked(
            "not checked offline: the hub's /verify says whether a newer version exists".into(),
        ),
    };
    let v = yilian_signing::verify(&doc, &keys, &evidence);
    let id = doc
        .report
        .get("report_id")
        .or_else(|| doc.report.get("panel").and_then(|p| p.get("panel_id")))
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    println!(
        "{} report {id}",
        if v.valid() { "VALID" } else { "INVALID" }
    );
    for c in &v.checks {
        let mark = match c.status {
            CheckStatus::Pass => "PASS",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skipped => "SKIP",
        };
        println!("  [{mark}] {}: {}", c.name, c.detail);
    }
    if v.valid() {
        Ok(())
    } else {
        let failed: Vec<&str> = v
            .checks
            .iter()
            .filter(|c| !c.ok())
            .map(|c| c.name)
            .collect();
        bail!("INVALID report {id}: {}", failed.join(", "))
    }
}

/// SHA-256 (hex) of every file under `dir`.
fn hash_files(
    dir: &std::path::Path,
    out: &mut std::collections::HashSet<String>,
) -> anyhow::Result<()> {
    use sha2::Digest;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            hash_files(&path, out)?;
        } else {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            out.insert(hex::encode(sha2::Sha256::digest(&bytes)));
        }
    }
    Ok(())
}

/// The passphrase for `keygen`: the first line of `file`, else asked twice on the terminal (echo
/// off), else the first line of stdin.
fn read_passphrase(file: Option<&std::path::Path>) -> anyhow::Result<Passphrase> {
    use std::io::{BufRead, IsTerminal};
    let first_line = |text: &str| text.lines().next().unwrap_or_default().to_string();
    let pass = match file {
        Some(f) => first_line(
            &std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        ),
        None if std::io::stdin().is_terminal() => {
            let ask = |prompt: &str| -> anyhow::Result<String> {
                eprint!("{prompt}");
                let _ = std::process::Command::new("stty").arg("-echo").status();
                let mut line = String::new();
                let r = std::io::stdin().lock().read_line(&mut line);
                let _ = std::process::Command::new("stty").arg("echo").status();
                eprintln!();
                r?;
                Ok(first_line(&line))
            };
            let a = ask("口令 passphrase: ")?;
            if ask("再次输入 again: ")? != a {
                bail!("the two passphrases differ");
            }
            a
        }
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            first_line(&line)
        }
    };
    if pass.chars().count() < 8 {
        bail!("a passphrase has at least 8 characters");
    }
    Ok(Passphrase::new(pass))
}

async fn keygen(
    config: Config,
    user: &str,
    algorithm: Option<&str>,
    passphrase_file: Option<&std::path::Path>,
    no_passphrase: bool,
    replace: bool,
) -> anyhow::Result<()> {
    let algorithm = match algorithm {
        Some(a) => {
            Algorithm::parse(a).with_context(|| format!("unknown algorithm {a}: sm2 or ed25519"))?
        }
        None => yilian_app::hub::key_algorithm(&config),
    };
    if no_passphrase && config.keys.require_passphrase {
        bail!("this alliance requires passphrase-sealed keys (keys.require_passphrase)");
    }
    let username = config
        .user(user)
        .with_context(|| format!("{user} is not a user of the directory"))?
        .username;
    let passphrase = if no_passphrase {
        None
    } else {
        Some(read_passphrase(passphrase_file)?)
    };
    // The key file first: opening the hub would give a reader without one a key in clear (demo).
    let vault = yilian_store::FileKeyVault::new(&config.keys.dir);
    if let Some(k) = vault.key_for(&username).await?
        && !replace
    {
        bail!(
            "{user} already has key {} ({}): --replace retires it and makes a new one",
            k.key_id,
            k.algorithm
        );
    }
    let key = vault
        .create_key(&username, algorithm, passphrase.as_ref(), replace)
        .await?;
    let hub = yilian::open_hub(config).await?;
    let record = hub.publish_key(username.as_str(), &key).await?;
    eprintln!(
        "{} key for {user}, {}, valid {} to {}",
        key.algorithm,
        if key.sealed {
            "sealed with the passphrase"
        } else {
            "in clear (no passphrase)"
        },
        record.valid_from,
        record.valid_to
    );
    println!("{}", key.key_id);
    Ok(())
}

/// The tour's lab messages: a CBC from the township lab, a critical potassium from the county lab
/// centre and its correction, and a FHIR Bundle of a liver panel (synthetic patients).
fn demo_lab_messages() -> Vec<(String, String)> {
    use yilian_fixtures::lab::{LabSpec, cbc, electrolytes_critical, fhir_bundle, liver, oru_r01};
    let mut township = LabSpec::new("HX20261123", "HX", "HX-0001", "2.5.1");
    township.performing_lab = "HX_LIS".into();
    let county = LabSpec::new("XR0042", "XRMYY", "CL-0001", "2.3.1");
    let corrected = county.corrected("CL-0002");
    // The correction: the potassium was a haemolysed specimen; the repeat is normal.
    let corrected_text = oru_r01(&corrected, &electrolytes_critical()).replacen(
        "|6.8|mmol/L^^UCUM|3.5-5.3|HH|",
        "|4.1|mmol/L^^UCUM|3.5-5.3|N|",
        1,
    );
    let bundle = LabSpec::new("XR0042", "XRMYY", "CL-B-0001", "R4");
    vec![
        ("hx-cbc.hl7".into(), oru_r01(&township, &cbc())),
        (
            "county-potassium.hl7".into(),
            oru_r01(&county, &electrolytes_critical()),
        ),
        ("county-potassium-corrected.hl7".into(), corrected_text),
        ("county-liver.json".into(), fhir_bundle(&bundle, &liver())),
    ]
}

/// The tour's ECGs: one resident (a valid GB 11643 number, synthetic) at two townships.
fn demo_ecgs() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use yilian_domain::ecg::{EcgRecord, LocalDateTime};
    use yilian_fixtures::ecg::{EcgSpec, synthesize};
    use yilian_formats::ecg::{EcgDicomIds, aecg, scp, to_dicom};
    const RESIDENT: &str = "11010519491231002X";
    let make = |rate: f64, day: u8, seed: u64| -> EcgRecord {
        let mut r = synthesize(&EcgSpec {
            heart_rate_bpm: rate,
            seed,
            ..EcgSpec::default()
        })
        .record;
        r.subject.patient_id = Some(RESIDENT.into());
        r.acquired_at = LocalDateTime::new(2026, 11, day, 8, 30, 0);
        r
    };
    let mut stemi = make(88.0, 22, 3);
    stemi.interpretation = vec!["Sinus rhythm".into(), "*** ACUTE MI / STEMI ***".into()];
    let stemi_dicom = to_dicom(
        &stemi,
        &EcgDicomIds {
            study_uid: "2.25.6601".into(),
            series_uid: "2.25.6601.1".into(),
            sop_uid: "2.25.6601.1.1".into(),
            patient_id: RESIDENT.into(),
            issuer_of_patient_id: Some("HX".into()),
            accession_number: None,
            institution_name: None,
            study_description: Some("ECG REST".into()),
        },
    )
    .context("encoding the STEMI ECG")?;
    Ok(vec![
        (
            "prior-aecg.xml".into(),
            aecg::write(&make(64.0, 1, 1)).into_bytes(),
        ),
        ("today.scp".into(), scp::write(&make(75.0, 22, 2))),
        ("stemi.dcm".into(), stemi_dicom),
        (
            "tachycardia-aecg.xml".into(),
            aecg::write(&make(170.0, 22, 4)).into_bytes(),
        ),
    ])
}
