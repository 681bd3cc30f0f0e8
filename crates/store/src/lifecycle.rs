//! Report lifecycle in the catalog (`migrations/0015_report_lifecycle.sql`): amendments are new final
//! rows (next version, own report id), revocations rows of `report_revocations`; nothing is updated but
//! the exam's `updated_at`, which serialises concurrent amendments and revocations of one exam on its
//! row (PostgreSQL row lock, SQLite write lock).

use sqlx::any::AnyRow;
use yilian_app::ports::{
    LifecycleOutcome, Notification, PortError, ReportRecord, RevocationRecord,
};
use yilian_domain::{ExamId, ReportId, UnixMillis, Username};

use crate::catalog::{
    REPORT_COLS, SqlCatalog, corrupt, db, get, insert_final_report, insert_notification,
    report_row, uid,
};

const REVOCATION_COLS: &str = "revocation_id, report_id, exam_id, version, reason, revoked_by, revoked_at, key_id, \
                               algorithm, signature, document, countersignature";

fn revocation_row(r: &AnyRow) -> Result<RevocationRecord, PortError> {
    Ok(RevocationRecord {
        revocation_id: get(r, "revocation_id")?,
        report_id: uid(r, "report_id", ReportId::new)?,
        exam_id: uid(r, "exam_id", ExamId::new)?,
        version: get(r, "version")?,
        reason: get(r, "reason")?,
        revoked_by: uid(r, "revoked_by", Username::new)?,
        revoked_at: UnixMillis(get(r, "revoked_at")?),
        key_id: get(r, "key_id")?,
        algorithm: get(r, "algorithm")?,
        signature: get(r, "signature")?,
        document: get(r, "document")?,
        countersignature: get(r, "countersignature")?,
    })
}

pub(crate) async fn final_reports_of(
    c: &SqlCatalog,
    exam: &ExamId,
) -> Result<Vec<ReportRecord>, PortError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REPORT_COLS} FROM reports WHERE exam_id = $1 AND status = 'final' ORDER BY version"
    )))
    .bind(exam.as_str())
    .fetch_all(c.pool())
    .await
    .map_err(db)?;
    rows.iter().map(report_row).collect()
}

pub(crate) async fn revocation_of(
    c: &SqlCatalog,
    exam: &ExamId,
) -> Result<Option<RevocationRecord>, PortError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REVOCATION_COLS} FROM report_revocations WHERE exam_id = $1"
    )))
    .bind(exam.as_str())
    .fetch_optional(c.pool())
    .await
    .map_err(db)?;
    row.as_ref().map(revocation_row).transpose()
}

/// Inside the transaction: takes the exam's row, then tells whether `version` is still the latest
/// final version and the exam's result is not revoked.
async fn check_latest(
    tx: &mut sqlx::AnyConnection,
    exam: &ExamId,
    version: i64,
    now: UnixMillis,
) -> Result<LifecycleOutcome, PortError> {
    let locked =
        sqlx::query("UPDATE exams SET updated_at = $2 WHERE exam_id = $1 AND state = 'signed'")
            .bind(exam.as_str())
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    if locked.rows_affected() != 1 {
        return Err(corrupt("exams.state", format!("exam {exam} is not signed")));
    }
    let revoked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM report_revocations WHERE exam_id = $1")
            .bind(exam.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
    if revoked > 0 {
        return Ok(LifecycleOutcome::Revoked);
    }
    let latest: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(version) FROM reports WHERE exam_id = $1 AND status = 'final'",
    )
    .bind(exam.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    if latest != Some(version) {
        return Ok(LifecycleOutcome::Superseded);
    }
    Ok(LifecycleOutcome::Stored)
}

pub(crate) async fn amend_report(
    c: &SqlCatalog,
    report: &ReportRecord,
    previous_version: i64,
    notification: &Notification,
) -> Result<LifecycleOutcome, PortError> {
    let mut tx = c.pool().begin().await.map_err(db)?;
    let now = report.signed_at.unwrap_or(report.updated_at);
    let outcome = check_latest(&mut tx, &report.exam_id, previous_version, now).await?;
    if outcome != LifecycleOutcome::Stored {
        tx.rollback().await.map_err(db)?;
        return Ok(outcome);
    }
    insert_final_report(&mut tx, report).await?;
    insert_notification(&mut tx, notification).await?;
    tx.commit().await.map_err(db)?;
    Ok(LifecycleOutcome::Stored)
}

pub(crate) async fn revoke_report(
    c: &SqlCatalog,
    r: &RevocationRecord,
    notification: &Notification,
) -> Result<LifecycleOutcome, PortError> {
    let mut tx = c.pool().begin().await.map_err(db)?;
    let outcome = check_latest(&mut tx, &r.exam_id, r.version, r.revoked_at).await?;
    if outcome != LifecycleOutcome::Stored {
        tx.rollback().await.map_err(db)?;
        return Ok(outcome);
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO report_revocations ({REVOCATION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )))
    .bind(&r.revocation_id)
    .bind(r.report_id.as_str())
    .bind(r.exam_id.as_str())
    .bind(r.version)
    .bind(&r.reason)
    .bind(r.revoked_by.as_str())
    .bind(r.revoked_at.0)
    .bind(&r.key_id)
    .bind(&r.algorithm)
    .bind(&r.signature)
    .bind(&r.document)
    .bind(&r.countersignature)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    insert_notification(&mut tx, notification).await?;
    tx.commit().await.map_err(db)?;
    Ok(LifecycleOutcome::Stored)
}
