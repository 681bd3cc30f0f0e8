//! Two hub processes (the real `yilian serve` binary, twice) on one catalog act as one hub. Exactly one
//! runs the background sweeps (each webhook goes out once; the survivor takes over when it is
//! killed), and a routing reload asked of one is done by the other. And eight simulated readers
//! take "the next exam" from both at once until the queue is empty. No exam is claimed twice and none
//! is lost — the claim is one conditional UPDATE on a row the database locks (`FOR UPDATE SKIP LOCKED`
//! on PostgreSQL), not an in-process lock. Runs on PostgreSQL when DATABASE_URL is set, and on a shared
//! SQLite file; blobs on the S3 test server when the test script started one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::backends;
use yilian_fixtures::{InstanceSpec, instance_bytes};

const READERS: usize = 8;
const STUDIES: u32 = 40;

/// The demo alliance with eight more readers of `county-rad`, without its rota: every reader is on
/// duty and the hub offers nothing, so the readers' "next" calls alone drain the queue.
fn config_text() -> String {
    let mut text = String::new();
    let mut in_rota = false;
    for line in yilian_config::DEMO_TOML.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_rota = t.starts_with("[rota") || t.starts_with("[[rota");
        }
        if !in_rota {
            text.push_str(line);
            text.push('\n');
        }
    }
    assert!(
        !text.contains("[rota") && !text.contains("[[rota"),
        "the rota is stripped"
    );
    text.push_str("\n[rota]\noffer_secs = 0\n");
    for i in 1..=READERS {
        text.push_str(&format!(
            "\n[[users]]\nusername = \"sim.reader{i}\"\nname = \"模拟医生{i}\"\nrole = \"reader\"\nsite = \"county-people\"\npools = [\"county-rad\"]\n"
        ));
    }
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary with the shared catalog, blob store and key folder, DIMSE off. Blobs on the S3
/// test server when the test script started one (a prefix per test folder, shared by the replicas),
/// else in a shared folder.
fn yilian(config: &Path, db: &str, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_yilian"));
    c.env("YILIAN_DATABASE_URL", db);
    match support::s3_env() {
        Some(env) => {
            let prefix = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("replicas")
                .trim_start_matches('.')
                .to_lowercase();
            c.env(
                "YILIAN_BLOBS_URL",
                format!("s3://{}/replicas-{prefix}", env.bucket),
            )
            .env("YILIAN_BLOBS_ENDPOINT", &env.endpoint)
            .env("YILIAN_BLOBS_REGION", &env.region)
            .env("YILIAN_BLOBS_ACCESS_KEY_ID", &env.access_key_id)
            .env("YILIAN_BLOBS_SECRET_ACCESS_KEY", &env.secret_access_key)
            .env(
                "YILIAN_BLOBS_ALLOW_HTTP",
                if env.endpoint.starts_with("http://") {
                    "1"
                } else {
                    "0"
                },
            )
            .env("YILIAN_BLOBS_STAGING_DIR", dir.join("staging"));
        }
        None => {
            c.env(
                "YILIAN_BLOBS_URL",
                format!("file://{}/blobs", dir.display()),
            );
        }
    }
    c.env("YILIAN_KEYS_DIR", dir.join("keys"))
        .env("YILIAN_DICOM_ENABLED", "0")
        .env("YILIAN_MLLP_ENABLED", "0")
        .env("YILIAN_LOG", "warn")
        .env("YILIAN_CONFIG", config);
    c
}

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(config: &Path, db: &str, dir: &Path) -> Replica {
    let port = free_port();
    let child = yilian(config, db, dir)
        .args(["serve", "--config"])
        .arg(config)
        .env("YILIAN_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start yilian serve");
    // Owned by the guard at once: a replica that never becomes ready is still killed and reaped.
    let replica = Replica {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{}/readyz", replica.base)).send().await
            && r.status().is_success()
        {
            return replica;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("replica on {} did not become ready", replica.base);
}

fn token(config: &Path, db: &str, dir: &Path, user: &str) -> String {
    let out = yilian(config, db, dir)
        .args(["user", "token", user, "--config"])
        .arg(config)
        .output()
        .expect("yilian user token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_on_two_replicas_never_claim_the_same_exam_and_lose_none() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = support::FreshCatalog::new(&backend, dir.path()).await;
        let db = catalog.url.clone();
        let config = dir.path().join("alliance.toml");
        std::fs::write(&config, config_text()).unwrap();
        let a = start(&config, &db, dir.path()).await;
        let b = start(&config, &db, dir.path()).await;
        let http = reqwest::Client::new();

        // A township sends STUDIES one-instance studies to replica A and says each is complete.
        let tech = token(&config, &db, dir.path(), "wang.tech");
        for n in 0..STUDIES {
            let spec = InstanceSpec {
                study_uid: format!("2.25.7700{n}"),
                series_uid: format!("2.25.7700{n}.1"),
                sop_uid: format!("2.25.7700{n}.1.1"),
                ..InstanceSpec::ct(1)
            };
            let (ct, body) = support::multipart(&[("application/dicom", &instance_bytes(&spec))]);
            let r = http
                .post(format!("{}/dicomweb/studies", a.base))
                .bearer_auth(&tech)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let r = http
                .post(format!("{}/api/v1/studies/2.25.7700{n}/complete", b.base))
                .bearer_auth(&tech)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }

        // Eight readers, each alternating between the replicas, take the next exam until none is left.
        let tokens: Vec<String> = (1..=READERS)
            .map(|i| token(&config, &db, dir.path(), &format!("sim.reader{i}")))
            .collect();
        let start_line = std::sync::Arc::new(tokio::sync::Barrier::new(READERS));
        let mut tasks = Vec::new();
        for (i, token) in (1..=READERS).zip(tokens) {
            let bases = [a.base.clone(), b.base.clone()];
            let http = http.clone();
            let start_line = start_line.clone();
            tasks.push(tokio::spawn(async move {
                start_line.wait().await;
                // (exam id, when the request that got it was sent) and when "nothing waits" came back.
                let mut mine = Vec::new();
                let mut empty_at = None;
                for k in 0.. {
                    let base = &bases[(i + k) % 2];
                    let sent = Instant::now();
                    let r = http
                        .post(format!("{base}/api/v1/worklist/next"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        200 => {
                            let v: serde_json::Value = r.json().await.unwrap();
                            assert_eq!(v["claimed_by"], format!("sim.reader{i}"));
                            mine.push((v["exam_id"].as_str().unwrap().to_string(), sent));
                        }
                        204 => {
                            empty_at = Some(Instant::now());
                            break;
                        }
                        s => panic!("next: {s} {}", r.text().await.unwrap_or_default()),
                    }
                }
                (mine, empty_at)
            }));
        }
        let mut all = Vec::new();
        let mut per_reader = Vec::new();
        let mut first_empty: Option<Instant> = None;
        let mut claims = Vec::new();
        for t in tasks {
            let (mine, empty_at) = t.await.unwrap();
            per_reader.push(mine.len());
            if let Some(e) = empty_at {
                first_empty = Some(first_empty.map_or(e, |f| f.min(e)));
            }
            for (id, sent) in mine {
                all.push(id);
                claims.push(sent);
            }
        }
        // Nothing is added or released during the run, so once any reader heard "nothing waits", no
        // request sent afterwards may still find an exam: that answer must never be given to a reader
        // who merely lost a race.
        let first_empty = first_empty.expect("every reader ends on 204");
        let late = claims.iter().filter(|&&sent| sent > first_empty).count();
        assert_eq!(
            late, 0,
            "{late} exams were claimed after a reader was told the queue was empty"
        );
        let unique: HashSet<&String> = all.iter().collect();
        assert_eq!(
            unique.len(),
            all.len(),
            "an exam was claimed twice: {all:?}"
        );
        assert_eq!(
            all.len(),
            STUDIES as usize,
            "every exam was claimed once ({per_reader:?})"
        );
        // The catalog agrees: every exam is held by exactly the reader who got it.
        let reader1 = token(&config, &db, dir.path(), "sim.reader1");
        let wl: serde_json::Value = http
            .get(format!("{}/api/v1/worklist", a.base))
            .bearer_auth(&reader1)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let held: HashSet<String> = wl["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["claimed_by"].is_string())
            .map(|e| e["exam_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(held.len(), STUDIES as usize);
        eprintln!("{backend:?}: claims per reader {per_reader:?}");

        drop(a);
        drop(b);
        drop(catalog);
    }
}

/// POSTs one STEMI ECG (a stat exam with a notification) to `base` as the township tech.
async fn send_stemi(http: &reqwest::Client, base: &str, tech: &str, study: &str) {
    let (ct, body) = support::multipart(&[("application/dicom", &support::stemi_ecg(study))]);
    let r = http
        .post(format!("{base}/dicomweb/studies"))
        .bearer_auth(tech)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// Whether the replica at `base` says (in /metrics) that it runs the sweeps.
async fn is_sweeper(http: &reqwest::Client, base: &str, admin: &str) -> bool {
    let text = http
        .get(format!("{base}/metrics"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("yilian_sweeper "))
        .unwrap_or_else(|| panic!("no yilian_sweeper in {text}"));
    line.ends_with(" 1")
}

/// Webhook deliveries (notification ids) until `want` distinct ones arrived, then for `linger` more
/// so that a duplicate sent by a second sweeper would be seen.
async fn deliveries(
    hooks: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    want: usize,
    linger: Duration,
) -> Vec<String> {
    let mut got: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.iter().collect::<HashSet<_>>().len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, hooks.recv()).await {
            Ok(Some((_, body))) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                got.push(v["notification_id"].as_str().unwrap().to_string());
            }
            _ => panic!("only {got:?} of {want} webhook deliveries arrived"),
        }
    }
    let until = Instant::now() + linger;
    while let Ok(Some((_, body))) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        hooks.recv(),
    )
    .await
    {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        got.push(v["notification_id"].as_str().unwrap().to_string());
    }
    got
}

/// Two replicas with a webhook and a one-second sweep: exactly one of them runs the sweeps, so each
/// notification reaches the webhook once, whichever replica took the upload; a routing reload asked of
/// one replica is done by the other too; when the sweeping replica is killed (SIGKILL, no goodbye)
/// the survivor takes the sweeps over and later notifications still go out, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_sweeps_webhooks_go_once_and_reloads_reach_every_replica() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = support::FreshCatalog::new(&backend, dir.path()).await;
        let db = catalog.url.clone();
        let (url, mut hooks) = support::receiver(200).await;
        let text = config_text().replace("sweep_interval_secs = 5", "sweep_interval_secs = 1")
            + &format!("\n[notifications]\nwebhook_url = \"{url}\"\n");
        assert!(text.contains("sweep_interval_secs = 1"));
        let config = dir.path().join("alliance.toml");
        std::fs::write(&config, &text).unwrap();
        let a = start(&config, &db, dir.path()).await;
        let b = start(&config, &db, dir.path()).await;
        let http = reqwest::Client::new();
        let tech = token(&config, &db, dir.path(), "wang.tech");
        let admin = token(&config, &db, dir.path(), "admin");

        for n in 0..6 {
            let base = if n % 2 == 0 { &a.base } else { &b.base };
            send_stemi(&http, base, &tech, &format!("2.25.88100{n}")).await;
        }
        // Four more sweep rounds after the last delivery: a second sweeper would have sent again.
        let got = deliveries(&mut hooks, 6, Duration::from_secs(4)).await;
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(
            (got.len(), distinct.len()),
            (6, 6),
            "each notification once: {got:?}"
        );
        let sweepers = [
            is_sweeper(&http, &a.base, &admin).await,
            is_sweeper(&http, &b.base, &admin).await,
        ];
        assert_eq!(
            sweepers.iter().filter(|s| **s).count(),
            1,
            "exactly one sweeper: {sweepers:?}"
        );

        // A reload asked of A is done by B at its next poll (audited there as a system reload).
        let r = http
            .post(format!("{}/api/v1/admin/routing/reload", a.base))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let pool = sqlx::AnyPool::connect(&db).await.unwrap();
        let mut reloads: Vec<(String, String)> = Vec::new();
        for _ in 0..100 {
            reloads = sqlx::query_as(
                "SELECT actor, detail FROM audit_events WHERE action = 'routing.reload' ORDER BY seq",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            if reloads.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Linger: neither replica reloads twice for one signal.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let reloads_after: Vec<(String, String)> = sqlx::query_as(
            "SELECT actor, detail FROM audit_events WHERE action = 'routing.reload' ORDER BY seq",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(reloads_after.len(), 2, "{reloads_after:?}");
        assert_eq!(reloads_after[0].0, "admin");
        assert_eq!(reloads_after[1].0, "system");
        assert!(
            reloads_after[1].1.contains("signal from another replica"),
            "{reloads_after:?}"
        );
        assert_eq!(reloads, reloads_after);
        pool.close().await;

        // Kill the sweeper; the survivor takes over and the next notifications go out once.
        let (dead, survivor) = if sweepers[0] { (a, b) } else { (b, a) };
        drop(dead);
        for n in 6..8 {
            send_stemi(&http, &survivor.base, &tech, &format!("2.25.88100{n}")).await;
        }
        let got = deliveries(&mut hooks, 2, Duration::from_secs(3)).await;
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!((got.len(), distinct.len()), (2, 2), "{got:?}");
        assert!(is_sweeper(&http, &survivor.base, &admin).await);

        drop(survivor);
        drop(catalog);
    }
}
