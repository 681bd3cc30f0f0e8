//! Two hub processes (the real `yilian serve` binary, twice) on one catalog: eight simulated readers
//! take "the next exam" from both at once until the queue is empty. No exam is claimed twice and none
//! is lost — the claim is one conditional UPDATE on a row the database locks (`FOR UPDATE SKIP LOCKED`
//! on PostgreSQL), not an in-process lock. Runs on PostgreSQL when DATABASE_URL is set, and on a shared
//! SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Executor;
use support::{Backend, backends};
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

/// The real binary with the shared catalog, blob folder and key folder, DIMSE off.
fn yilian(config: &Path, db: &str, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_yilian"));
    c.env("YILIAN_DATABASE_URL", db)
        .env(
            "YILIAN_BLOBS_URL",
            format!("file://{}/blobs", dir.display()),
        )
        .env("YILIAN_KEYS_DIR", dir.join("keys"))
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
        let (db, pg_admin) = match &backend {
            Backend::Sqlite => (
                format!("sqlite://{}/catalog.db?mode=rwc", dir.path().display()),
                None,
            ),
            Backend::Postgres(url) => {
                sqlx::any::install_default_drivers();
                let name = format!("yilian_r_{}", ulid::Ulid::new().to_string().to_lowercase());
                let admin = sqlx::AnyPool::connect(url).await.unwrap();
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
                let (head, _) = url.rsplit_once('/').unwrap();
                (format!("{head}/{name}"), Some((admin, name)))
            }
        };
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
        if let Some((admin, name)) = pg_admin {
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
}
