//! `audit-append`: what the hash chain costs per audit event. Appends N events through the catalog
//! (chained: head row update, hash, insert, one transaction) and, as the baseline in the same run and
//! database, N plain single-row inserts of the same columns into a scratch table (what audit cost before
//! the chain). SQLite in a temporary folder; PostgreSQL too when DATABASE_URL is set. Sequential and
//! with 8 concurrent writers.
//!
//! `createdb -h 127.0.0.1 -U postgres yilian_bench` then
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/yilian_bench cargo run --release -p yilian-benches --bin audit-append -- 2000`

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use yilian_app::ports::{AuditEvent, Catalog};
use yilian_domain::UnixMillis;
use yilian_store::SqlCatalog;

fn event(i: i64) -> AuditEvent {
    AuditEvent {
        at: UnixMillis(1_795_000_000_000 + i),
        actor: "li.reader".into(),
        action: "exam.claim".into(),
        resource_type: "exam".into(),
        resource_id: format!("01JEXAM{i:020}"),
        patient_key: Some(yilian_domain::PatientKey(format!("{i:064}"))),
        outcome: "ok".into(),
        detail: "next".into(),
    }
}

async fn run(label: &str, url: &str, n: i64) -> anyhow::Result<()> {
    let cat = Arc::new(SqlCatalog::connect(url, 8).await.context("connect")?);
    let pool = cat.pool().clone();
    sqlx::query("DROP TABLE IF EXISTS bench_plain_audit")
        .execute(&pool)
        .await?;
    sqlx::query(
        "CREATE TABLE bench_plain_audit (event_id TEXT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, \
         resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, patient_key TEXT, outcome TEXT NOT NULL, detail TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let plain_pool = pool.clone();
    let plain = move |i: i64| {
        let pool = plain_pool.clone();
        async move {
            let e = event(i);
            sqlx::query(
                "INSERT INTO bench_plain_audit (event_id, at, actor, action, resource_type, resource_id, patient_key, outcome, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(format!("{i:026}"))
            .bind(e.at.0)
            .bind(e.actor)
            .bind(e.action)
            .bind(e.resource_type)
            .bind(e.resource_id)
            .bind(e.patient_key.map(|k| k.0))
            .bind(e.outcome)
            .bind(e.detail)
            .execute(&pool)
            .await
            .map(|_| ())
        }
    };
    for writers in [1_i64, 8] {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let plain = plain.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..n).step_by(writers as usize) {
                    plain(i + writers * 1_000_000).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let base = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let cat = cat.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..n).step_by(writers as usize) {
                    cat.audit(&event(i)).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let chained = t0.elapsed().as_secs_f64();
        let r = cat.verify_audit_chain().await?;
        anyhow::ensure!(r.problem.is_none(), "chain broken: {r:?}");
        println!(
            "| {label} | {writers} | {n} | {:.0} | {:.0} | {:.2}× |",
            n as f64 / base,
            n as f64 / chained,
            chained / base
        );
    }
    sqlx::query("DROP TABLE bench_plain_audit")
        .execute(&pool)
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: i64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    println!(
        "| catalog | writers | events | plain insert/s (baseline) | chained append/s | time ratio |"
    );
    println!("|---|---|---|---|---|---|");
    let dir = tempfile::tempdir()?;
    run(
        "SQLite",
        &format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
        n,
    )
    .await?;
    if let Ok(url) = std::env::var("DATABASE_URL") {
        run("PostgreSQL", &url, n).await?;
    }
    Ok(())
}
