//! Lab review and critical values in the catalog (`migrations/0011_lab_review.sql`): the review queue
//! of a pool, a lab physician's sign-off (released with its signed document, in one transaction), and
//! the critical-value register: cases opened with their panel, acknowledged once, escalated by
//! conditional updates so two sweeps never escalate a case twice.

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use yilian_app::ports::{
    AuditEvent, CriticalAck, CriticalCaseRecord, CriticalFilter, LabPanelRecord, LabSignoff,
    NewCriticalCase, NewLabMessage, NewLabPanel, Notification, PortError,
};
use yilian_domain::lab::{CriticalState, LabPanelState};
use yilian_domain::{LabPanelId, PatientKey, PoolId, SiteId, UnixMillis, Username};

use crate::catalog::{SqlCatalog, corrupt, db, get, insert_audit, insert_notification, uid};
use crate::lab::panel_select;

/// `format!` for SQL whose only interpolations are the column lists below (never input).
macro_rules! sql {
    ($($t:tt)*) => { sqlx::AssertSqlSafe(format!($($t)*)) };
}

const CASE_COLS: &str = "case_id, panel_id, result_seq, site_id, notify_site, review_pool, patient_key, analyte, value_text, \
                         unit, rule_name, explanation, opened_at, ack_due_at, state, escalations, last_escalated_at, \
                         next_escalation_at, acked_at, acked_by, ack_name, ack_role, read_back";

const SIGNOFF_COLS: &str = "panel_id, signer, comment, signed_at, key_id, algorithm, signature, document, countersignature";

/// A case and its notification, inside the panel's transaction.
pub(crate) async fn insert_case(
    tx: &mut Transaction<'static, Any>,
    m: &NewLabMessage,
    p: &NewLabPanel,
    c: &NewCriticalCase,
) -> Result<(), PortError> {
    sqlx::query(sql!(
        "INSERT INTO lab_critical_cases ({CASE_COLS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0, NULL, $16, NULL, NULL, NULL, NULL, NULL)"
    ))
    .bind(&c.case_id)
    .bind(p.panel_id.as_str())
    .bind(c.result_seq)
    .bind(m.site.as_str())
    .bind(c.notify_site.as_str())
    .bind(p.review.review_pool.as_ref().map(|x| x.as_str().to_string()))
    .bind(&p.patient_key.0)
    .bind(&c.analyte)
    .bind(&c.value_text)
    .bind(&c.unit)
    .bind(&c.rule_name)
    .bind(&c.explanation)
    .bind(m.received_at.0)
    .bind(c.ack_due_at.0)
    .bind(CriticalState::Open.as_str())
    .bind(c.ack_due_at.0)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    insert_notification(tx, &c.notification).await
}

fn opt_millis(row: &AnyRow, col: &str) -> Result<Option<UnixMillis>, PortError> {
    Ok(get::<Option<i64>>(row, col)?.map(UnixMillis))
}

fn case_row(row: &AnyRow) -> Result<CriticalCaseRecord, PortError> {
    let state_text: String = get(row, "state")?;
    let state = CriticalState::parse(&state_text)
        .ok_or_else(|| corrupt("lab_critical_cases.state", &state_text))?;
    let acked_at = opt_millis(row, "acked_at")?;
    let ack = match acked_at {
        Some(at) => Some(CriticalAck {
            at,
            by: uid(row, "acked_by", Username::new)?,
            name: get::<Option<String>>(row, "ack_name")?.unwrap_or_default(),
            role: get(row, "ack_role")?,
            read_back: get::<Option<String>>(row, "read_back")?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(CriticalCaseRecord {
        case_id: get(row, "case_id")?,
        panel_id: uid(row, "panel_id", LabPanelId::new)?,
        result_seq: get(row, "result_seq")?,
        site: uid(row, "site_id", SiteId::new)?,
        notify_site: uid(row, "notify_site", SiteId::new)?,
        review_pool: get::<Option<String>>(row, "review_pool")?
            .map(|p| PoolId::new(p).map_err(|e| corrupt("lab_critical_cases.review_pool", e)))
            .transpose()?,
        patient_key: PatientKey(get(row, "patient_key")?),
        analyte: get(row, "analyte")?,
        value_text: get(row, "value_text")?,
        unit: get(row, "unit")?,
        rule_name: get(row, "rule_name")?,
        explanation: get(row, "explanation")?,
        opened_at: UnixMillis(get(row, "opened_at")?),
        ack_due_at: UnixMillis(get(row, "ack_due_at")?),
        state,
        escalations: get(row, "escalations")?,
        last_escalated_at: opt_millis(row, "last_escalated_at")?,
        next_escalation_at: opt_millis(row, "next_escalation_at")?,
        ack,
    })
}

fn signoff_row(row: &AnyRow) -> Result<LabSignoff, PortError> {
    Ok(LabSignoff {
        panel_id: uid(row, "panel_id", LabPanelId::new)?,
        signer: uid(row, "signer", Username::new)?,
        comment: get(row, "comment")?,
        signed_at: UnixMillis(get(row, "signed_at")?),
        key_id: get(row, "key_id")?,
        algorithm: get(row, "algorithm")?,
        signature: get(row, "signature")?,
        document: get(row, "document")?,
        countersignature: get(row, "countersignature")?,
    })
}

impl SqlCatalog {
    pub(crate) async fn lab_review_queue_of(
        &self,
        pool: &PoolId,
        limit: i64,
    ) -> Result<Vec<LabPanelRecord>, PortError> {
        let rows = sqlx::query(sql!(
            "{} WHERE p.review_pool = $1 AND p.state IN ($2, $3) AND p.superseded_by IS NULL \
             ORDER BY CASE WHEN p.critical_count > 0 THEN 0 ELSE 1 END, p.received_at, p.panel_id LIMIT $4",
            panel_select()
        ))
        .bind(pool.as_str())
        .bind(LabPanelState::AwaitingReview.as_str())
        .bind(LabPanelState::Received.as_str())
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        self.with_results(rows).await
    }

    pub(crate) async fn release_panel(
        &self,
        s: &LabSignoff,
        audit: &AuditEvent,
    ) -> Result<bool, PortError> {
        let mut tx = self.pool().begin().await.map_err(db)?;
        let done = sqlx::query(
            "UPDATE lab_panels SET state = $1, released_at = $2, released_by = $3 \
             WHERE panel_id = $4 AND state IN ($5, $6) AND superseded_by IS NULL",
        )
        .bind(LabPanelState::Released.as_str())
        .bind(s.signed_at.0)
        .bind(s.signer.as_str())
        .bind(s.panel_id.as_str())
        .bind(LabPanelState::AwaitingReview.as_str())
        .bind(LabPanelState::Received.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        sqlx::query(sql!(
            "INSERT INTO lab_signoffs ({SIGNOFF_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(s.panel_id.as_str())
        .bind(s.signer.as_str())
        .bind(&s.comment)
        .bind(s.signed_at.0)
        .bind(&s.key_id)
        .bind(&s.algorithm)
        .bind(&s.signature)
        .bind(&s.document)
        .bind(&s.countersignature)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    pub(crate) async fn signoff_of(
        &self,
        panel: &LabPanelId,
    ) -> Result<Option<LabSignoff>, PortError> {
        sqlx::query(sql!(
            "SELECT {SIGNOFF_COLS} FROM lab_signoffs WHERE panel_id = $1"
        ))
        .bind(panel.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(db)?
        .as_ref()
        .map(signoff_row)
        .transpose()
    }

    pub(crate) async fn cases(
        &self,
        f: &CriticalFilter,
    ) -> Result<Vec<CriticalCaseRecord>, PortError> {
        let mut clauses = vec!["opened_at >= $1".to_string(), "opened_at < $2".to_string()];
        if f.only_open {
            clauses.push("acked_at IS NULL".into());
        }
        if !f.sites.is_empty() {
            let n = f.sites.len();
            let a = (0..n).map(|i| format!("${}", i + 4)).collect::<Vec<_>>();
            let b = (0..n)
                .map(|i| format!("${}", i + 4 + n))
                .collect::<Vec<_>>();
            clauses.push(format!(
                "(site_id IN ({}) OR notify_site IN ({}))",
                a.join(", "),
                b.join(", ")
            ));
        }
        let text = sql!(
            "SELECT {CASE_COLS} FROM lab_critical_cases WHERE {} ORDER BY opened_at DESC, case_id DESC LIMIT $3",
            clauses.join(" AND ")
        );
        let mut q = sqlx::query(text)
            .bind(f.from.map_or(i64::MIN, |t| t.0))
            .bind(f.to.map_or(i64::MAX, |t| t.0))
            .bind(f.limit.max(0));
        for _ in 0..2 {
            for s in &f.sites {
                q = q.bind(s.as_str().to_string());
            }
        }
        q.fetch_all(self.pool())
            .await
            .map_err(db)?
            .iter()
            .map(case_row)
            .collect()
    }

    pub(crate) async fn case_by_id(
        &self,
        case_id: &str,
    ) -> Result<Option<CriticalCaseRecord>, PortError> {
        sqlx::query(sql!(
            "SELECT {CASE_COLS} FROM lab_critical_cases WHERE case_id = $1"
        ))
        .bind(case_id)
        .fetch_optional(self.pool())
        .await
        .map_err(db)?
        .as_ref()
        .map(case_row)
        .transpose()
    }

    pub(crate) async fn cases_of_panel(
        &self,
        panel: &LabPanelId,
    ) -> Result<Vec<CriticalCaseRecord>, PortError> {
        sqlx::query(sql!(
            "SELECT {CASE_COLS} FROM lab_critical_cases WHERE panel_id = $1 ORDER BY result_seq, case_id"
        ))
        .bind(panel.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(db)?
        .iter()
        .map(case_row)
        .collect()
    }

    pub(crate) async fn acknowledge_case(
        &self,
        case_id: &str,
        ack: &CriticalAck,
        audit: &AuditEvent,
    ) -> Result<bool, PortError> {
        let mut tx = self.pool().begin().await.map_err(db)?;
        let done = sqlx::query(
            "UPDATE lab_critical_cases SET state = $1, acked_at = $2, acked_by = $3, ack_name = $4, \
             ack_role = $5, read_back = $6, next_escalation_at = NULL \
             WHERE case_id = $7 AND acked_at IS NULL",
        )
        .bind(CriticalState::Acknowledged.as_str())
        .bind(ack.at.0)
        .bind(ack.by.as_str())
        .bind(&ack.name)
        .bind(&ack.role)
        .bind(&ack.read_back)
        .bind(case_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    pub(crate) async fn cases_due(
        &self,
        now: UnixMillis,
        limit: i64,
    ) -> Result<Vec<CriticalCaseRecord>, PortError> {
        sqlx::query(sql!(
            "SELECT {CASE_COLS} FROM lab_critical_cases WHERE next_escalation_at <= $1 AND acked_at IS NULL \
             ORDER BY next_escalation_at, case_id LIMIT $2"
        ))
        .bind(now.0)
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await
        .map_err(db)?
        .iter()
        .map(case_row)
        .collect()
    }

    pub(crate) async fn escalate_case(
        &self,
        case_id: &str,
        escalations: i64,
        now: UnixMillis,
        next: Option<UnixMillis>,
        notification: &Notification,
    ) -> Result<bool, PortError> {
        let mut tx = self.pool().begin().await.map_err(db)?;
        let done = sqlx::query(
            "UPDATE lab_critical_cases SET state = $1, escalations = escalations + 1, last_escalated_at = $2, \
             next_escalation_at = $3 WHERE case_id = $4 AND escalations = $5 AND acked_at IS NULL",
        )
        .bind(CriticalState::Escalated.as_str())
        .bind(now.0)
        .bind(next.map(|t| t.0))
        .bind(case_id)
        .bind(escalations)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        insert_notification(&mut tx, notification).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }
}
