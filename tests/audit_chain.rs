//! The audit trail is a hash chain: the hub's own actions and many concurrent writers leave it whole,
//! and `verify` (and `yilian audit verify`) names an edited, removed, reordered or truncated event.
//! SQLite always, PostgreSQL when DATABASE_URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sqlx::Executor;
use support::{TestHub, backends};
use yilian_app::ports::AuditEvent;
use yilian_domain::UnixMillis;
use yilian_fixtures::{InstanceSpec, instance_bytes};

async fn raw(t: &TestHub) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&t.hub.config.database.url)
        .await
        .unwrap()
}

async fn exec(pool: &sqlx::AnyPool, sql: &str) {
    pool.execute(sqlx::AssertSqlSafe(sql.to_string()))
        .await
        .unwrap();
}

async fn problem(t: &TestHub) -> Option<String> {
    t.hub.catalog.verify_audit_chain().await.unwrap().problem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_holds_under_concurrency_and_names_each_kind_of_tampering() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        // Real audited work: an upload, a completion, a worklist claim.
        let tech = t.token("wang.tech").await;
        let li = t.token("li.reader").await;
        t.stow_all(&tech, &[instance_bytes(&InstanceSpec::ct(1))])
            .await;
        t.post(&tech, "/api/v1/studies/2.25.1001/complete").await;
        t.post(&li, "/api/v1/worklist/next").await;
        // And 40 writers at once (on PostgreSQL several connections race for the head row).
        let mut tasks = Vec::new();
        for i in 0..40 {
            let hub = t.hub.clone();
            tasks.push(tokio::spawn(async move {
                hub.catalog
                    .audit(&AuditEvent {
                        at: UnixMillis(1_795_000_000_000 + i),
                        actor: format!("writer{i}"),
                        action: "test.write".into(),
                        resource_type: "test".into(),
                        resource_id: i.to_string(),
                        patient_key: None,
                        outcome: "ok".into(),
                        detail: "并发写入".into(),
                    })
                    .await
                    .unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let r = t.hub.catalog.verify_audit_chain().await.unwrap();
        assert_eq!(r.problem, None, "{r:?}");
        assert!(r.events >= 43, "{r:?}");
        let n = r.events;

        let pool = raw(&t).await;
        // An edited event; putting the original text back makes the chain whole again.
        let original: String = sqlx::query_scalar("SELECT detail FROM audit_events WHERE seq = 5")
            .fetch_one(&pool)
            .await
            .unwrap();
        exec(
            &pool,
            "UPDATE audit_events SET detail = 'nothing to see' WHERE seq = 5",
        )
        .await;
        let p = problem(&t).await.unwrap();
        assert!(
            p.starts_with("event 5 ") && p.contains("was altered"),
            "{p}"
        );
        sqlx::query("UPDATE audit_events SET detail = $1 WHERE seq = 5")
            .bind(&original)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(problem(&t).await, None);
        // A stored hash changed: the event no longer hashes to it.
        exec(&pool, "UPDATE audit_events SET hash = 'f00d' WHERE seq = 5").await;
        let p = problem(&t).await.unwrap();
        assert!(p.starts_with("event 5 "), "{p}");

        // Start again on a fresh hub for removal, reordering and truncation.
        drop(pool);
        t.finish().await;
        let t = TestHub::start(&backend, None, |_| {}).await;
        for i in 0..10 {
            t.hub
                .catalog
                .audit(&AuditEvent {
                    at: UnixMillis(1_795_000_000_000 + i),
                    actor: format!("writer{i}"),
                    action: "test.write".into(),
                    resource_type: "test".into(),
                    resource_id: i.to_string(),
                    patient_key: None,
                    outcome: "ok".into(),
                    detail: String::new(),
                })
                .await
                .unwrap();
        }
        let pool = raw(&t).await;
        let total = t.hub.catalog.verify_audit_chain().await.unwrap().events;
        assert_eq!(total, 10);
        // Reordered: events 3 and 4 swap their sequence numbers.
        exec(&pool, "UPDATE audit_events SET seq = -1 WHERE seq = 3").await;
        exec(&pool, "UPDATE audit_events SET seq = 3 WHERE seq = 4").await;
        exec(&pool, "UPDATE audit_events SET seq = 4 WHERE seq = -1").await;
        let p = problem(&t).await.unwrap();
        assert!(p.starts_with("event 3 "), "{p}");
        exec(&pool, "UPDATE audit_events SET seq = -1 WHERE seq = 3").await;
        exec(&pool, "UPDATE audit_events SET seq = 3 WHERE seq = 4").await;
        exec(&pool, "UPDATE audit_events SET seq = 4 WHERE seq = -1").await;
        assert_eq!(problem(&t).await, None, "swapped back, whole again");
        // Removed from the middle, then from the end.
        exec(&pool, "DELETE FROM audit_events WHERE seq = 7").await;
        assert_eq!(
            problem(&t).await.unwrap(),
            "event 7 is missing (the next one is 8)"
        );
        t.finish().await;
        let t = TestHub::start(&backend, None, |_| {}).await;
        for i in 0..3 {
            t.hub
                .catalog
                .audit(&AuditEvent {
                    at: UnixMillis(i),
                    actor: "a".into(),
                    action: "test.write".into(),
                    resource_type: "test".into(),
                    resource_id: i.to_string(),
                    patient_key: None,
                    outcome: "ok".into(),
                    detail: String::new(),
                })
                .await
                .unwrap();
        }
        let pool = raw(&t).await;
        exec(&pool, "DELETE FROM audit_events WHERE seq = 3").await;
        let p = problem(&t).await.unwrap();
        assert!(p.contains("events at the end were removed"), "{p}");
        assert!(n >= 43);
        drop(pool);
        t.finish().await;
    }
}

/// `yilian audit verify` says so, and exits 1 on a broken chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_the_chain_of_a_catalog() {
    let t = TestHub::start(&support::Backend::Sqlite, None, |_| {}).await;
    let tech = t.token("wang.tech").await;
    t.stow_all(&tech, &[instance_bytes(&InstanceSpec::ct(1))])
        .await;
    let config = t.dir.path().join("alliance.toml");
    let text = yilian_config::DEMO_TOML
        .replace(
            "url = \"sqlite://yilian-data/catalog.db?mode=rwc\"",
            &format!("url = \"{}\"", t.hub.config.database.url),
        )
        .replace(
            "dir = \"yilian-data/keys\"",
            &format!("dir = \"{}\"", t.dir.path().join("keys").display()),
        );
    std::fs::write(&config, text).unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_yilian"))
            .args(["audit", "verify", "--config"])
            .arg(&config)
            .env("YILIAN_DICOM_ENABLED", "false")
            .output()
            .unwrap()
    };
    let ok = run();
    let out = String::from_utf8_lossy(&ok.stdout).to_string();
    assert!(
        ok.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.starts_with("audit chain intact: "), "{out}");
    let pool = raw(&t).await;
    exec(
        &pool,
        "UPDATE audit_events SET actor = 'someone else' WHERE seq = 1",
    )
    .await;
    let bad = run();
    let out = String::from_utf8_lossy(&bad.stdout).to_string();
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("BROKEN") && out.contains("event 1 "), "{out}");
    drop(pool);
    t.finish().await;
}
