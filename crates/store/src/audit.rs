//! The audit trail as a hash chain: every event carries a sequence number, the previous event's hash
//! and its own, and a one-row head moves with every insert in the same transaction. `verify` walks the
//! chain and names the first event that was edited, removed, inserted or reordered.

use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use yilian_app::ports::{AuditEvent, PortError};

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn db(e: sqlx::Error) -> PortError {
    PortError::Unavailable(e.to_string())
}

/// SHA-256 (hex) of the previous hash and the event's fields, as a JSON array: unambiguous field
/// boundaries, and the same bytes on every backend.
pub fn event_hash(seq: i64, prev_hash: &str, event_id: &str, e: &AuditEvent) -> String {
    let canonical = serde_json::json!([
        seq,
        prev_hash,
        event_id,
        e.at.0,
        e.actor,
        e.action,
        e.resource_type,
        e.resource_id,
        e.patient_key.as_ref().map(|k| k.0.as_str()),
        e.outcome,
        e.detail,
    ])
    .to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Appends one event to the chain on the caller's connection, inside the caller's transaction: the
/// head row is written first (it takes the write lock on SQLite and the row lock on PostgreSQL, so
/// concurrent writers, also on other replicas, queue there instead of forking the chain).
pub(crate) async fn append(
    conn: &mut sqlx::AnyConnection,
    e: &AuditEvent,
) -> Result<(), PortError> {
    sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let seq: i64 = row.try_get("seq").map_err(db)?;
    let prev: String = row.try_get("hash").map_err(db)?;
    let event_id = ulid::Ulid::new().to_string();
    let hash = event_hash(seq, &prev, &event_id, e);
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    sqlx::query(
        "INSERT INTO audit_events (event_id, at, actor, action, resource_type, resource_id, patient_key, outcome, detail, seq, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&event_id)
    .bind(e.at.0)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.resource_type)
    .bind(&e.resource_id)
    .bind(e.patient_key.as_ref().map(|k| k.0.clone()))
    .bind(&e.outcome)
    .bind(&e.detail)
    .bind(seq)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

pub use yilian_app::ports::AuditChainReport as ChainReport;

fn event_of(r: &AnyRow) -> Result<(i64, String, String, String, AuditEvent), sqlx::Error> {
    Ok((
        r.try_get("seq")?,
        r.try_get("prev_hash")?,
        r.try_get("hash")?,
        r.try_get("event_id")?,
        AuditEvent {
            at: yilian_domain::UnixMillis(r.try_get("at")?),
            actor: r.try_get("actor")?,
            action: r.try_get("action")?,
            resource_type: r.try_get("resource_type")?,
            resource_id: r.try_get("resource_id")?,
            patient_key: r
                .try_get::<Option<String>, _>("patient_key")?
                .map(yilian_domain::PatientKey),
            outcome: r.try_get("outcome")?,
            detail: r.try_get("detail")?,
        },
    ))
}

/// Walks the whole chain in sequence order, a page at a time: sequence numbers must run 1, 2, 3…
/// without a gap, each event must name the previous event's hash and hash to its own, and the head
/// must end where the last event does.
pub async fn verify(pool: &sqlx::AnyPool) -> Result<ChainReport, PortError> {
    const PAGE: i64 = 5_000;
    let unchained: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE seq IS NULL")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    let mut report = ChainReport {
        events: 0,
        unchained: u64::try_from(unchained).unwrap_or(0),
        problem: None,
    };
    let mut expected_seq = 1_i64;
    let mut prev = GENESIS.to_string();
    loop {
        let rows = sqlx::query(
            "SELECT seq, prev_hash, hash, event_id, at, actor, action, resource_type, resource_id, patient_key, outcome, detail \
             FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(expected_seq)
        .bind(PAGE)
        .fetch_all(pool)
        .await
        .map_err(db)?;
        let last_page = (rows.len() as i64) < PAGE;
        for r in &rows {
            let (seq, prev_hash, hash, event_id, e) = event_of(r).map_err(db)?;
            let fail = |m: String| Some(m);
            if seq != expected_seq {
                report.problem = fail(format!(
                    "event {expected_seq} is missing (the next one is {seq})"
                ));
            } else if prev_hash != prev {
                report.problem = fail(format!(
                    "event {seq} ({event_id}) does not follow event {}: its previous hash differs",
                    seq - 1
                ));
            } else if event_hash(seq, &prev_hash, &event_id, &e) != hash {
                report.problem = fail(format!(
                    "event {seq} ({event_id}, {} by {}) was altered: its content no longer hashes to its hash",
                    e.action, e.actor
                ));
            }
            if report.problem.is_some() {
                return Ok(report);
            }
            report.events += 1;
            expected_seq += 1;
            prev = hash;
        }
        if last_page {
            break;
        }
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    let head_seq: i64 = head.try_get("seq").map_err(db)?;
    let head_hash: String = head.try_get("hash").map_err(db)?;
    if head_seq != expected_seq - 1 || head_hash != prev {
        report.problem = Some(format!(
            "the chain ends at event {} but the head says {head_seq}: events at the end were removed",
            expected_seq - 1
        ));
    }
    Ok(report)
}
