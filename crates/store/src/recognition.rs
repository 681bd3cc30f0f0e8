//! Recognition decisions in the catalog (`migrations/0013_recognition_decisions.sql`): one row per
//! receiving clinician's accept/decline, inserted with its audit event in one transaction, and read
//! back by time for the rates.

use sqlx::any::AnyRow;
use yilian_app::ports::{AuditEvent, PortError, RecognitionDecisionRecord};
use yilian_domain::{PatientKey, SiteId, UnixMillis, Username};

use crate::catalog::{SqlCatalog, db, get, insert_audit, uid};

const COLS: &str = "decision_id, result_kind, result_id, result_seq, item, performing_site, patient_key, \
                    deciding_site, decided_by, decision, reason, reason_text, recognised, decided_at";

fn row(r: &AnyRow) -> Result<RecognitionDecisionRecord, PortError> {
    Ok(RecognitionDecisionRecord {
        decision_id: get(r, "decision_id")?,
        result_kind: get(r, "result_kind")?,
        result_id: get(r, "result_id")?,
        result_seq: get(r, "result_seq")?,
        item: get(r, "item")?,
        performing_site: get(r, "performing_site")?,
        patient_key: PatientKey(get(r, "patient_key")?),
        deciding_site: uid(r, "deciding_site", SiteId::new)?,
        decided_by: uid(r, "decided_by", Username::new)?,
        decision: get(r, "decision")?,
        reason: get(r, "reason")?,
        reason_text: get(r, "reason_text")?,
        recognised: get::<i64>(r, "recognised")? != 0,
        decided_at: UnixMillis(get(r, "decided_at")?),
    })
}

impl SqlCatalog {
    pub(crate) async fn insert_decision(
        &self,
        d: &RecognitionDecisionRecord,
        audit: &AuditEvent,
    ) -> Result<(), PortError> {
        let mut tx = self.pool().begin().await.map_err(db)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO recognition_decisions ({COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        )))
        .bind(&d.decision_id)
        .bind(&d.result_kind)
        .bind(&d.result_id)
        .bind(d.result_seq)
        .bind(&d.item)
        .bind(&d.performing_site)
        .bind(&d.patient_key.0)
        .bind(d.deciding_site.as_str())
        .bind(d.decided_by.as_str())
        .bind(&d.decision)
        .bind(&d.reason)
        .bind(&d.reason_text)
        .bind(i64::from(d.recognised))
        .bind(d.decided_at.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    pub(crate) async fn decisions_between(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: i64,
    ) -> Result<Vec<RecognitionDecisionRecord>, PortError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM recognition_decisions WHERE decided_at >= $1 AND decided_at < $2 \
             ORDER BY decided_at, decision_id LIMIT $3"
        )))
        .bind(from.0)
        .bind(to.0)
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await
        .map_err(db)?
        .iter()
        .map(row)
        .collect()
    }
}
