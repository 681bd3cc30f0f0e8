//! Published lab results for the FHIR read API (`migrations/0012_fhir_read.sql`): panels that are
//! released or auto-released, found by patient, order number, code and collection time, each with the
//! hub states of the later reports of its order (to show only the newest published one) and the
//! status of the report it replaced (FHIR `amended`); the patients such panels name.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};
use yilian_app::ports::{LabIdentityRow, PortError, PublishedLabPanel, PublishedLabQuery};
use yilian_domain::lab::{LabPanelState, PanelStatus};
use yilian_domain::{PatientKey, UnixMillis};

use crate::catalog::{SqlCatalog, corrupt, db, get};
use crate::lab::panel_select;

/// How far an order's chain of later reports is followed.
const MAX_CHAIN: i64 = 50;
/// The most identities read for one Patient.
const MAX_IDENTITIES: i64 = 1_000;

/// `'released', 'auto_released'`: the published states as SQL literals (constants, never input).
fn published_states() -> String {
    LabPanelState::PUBLISHED
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value bound to a numbered placeholder.
enum Arg {
    Text(String),
    Int(i64),
}

/// WHERE clauses with their arguments, numbering placeholders as they are added.
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    fn placeholder(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn list(&mut self, values: &[String]) -> String {
        values
            .iter()
            .map(|v| self.placeholder(Arg::Text(v.clone())))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn bind<'q>(&self, mut q: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        for a in &self.args {
            q = match a {
                Arg::Text(t) => q.bind(t.as_str()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SqlCatalog {
    pub(crate) async fn published_panels(
        &self,
        query: &PublishedLabQuery,
    ) -> Result<Vec<PublishedLabPanel>, PortError> {
        let mut f = Filter::default();
        f.clauses
            .push(format!("p.state IN ({})", published_states()));
        if !query.patient_keys.is_empty() {
            let keys: Vec<String> = query.patient_keys.iter().map(|k| k.0.clone()).collect();
            let list = f.list(&keys);
            f.clauses.push(format!("p.patient_key IN ({list})"));
        }
        if !query.panel_ids.is_empty() {
            let ids: Vec<String> = query.panel_ids.iter().map(|p| p.to_string()).collect();
            let list = f.list(&ids);
            f.clauses.push(format!("p.panel_id IN ({list})"));
        }
        if let Some(n) = &query.order_number {
            let a = f.placeholder(Arg::Text(n.clone()));
            let b = f.placeholder(Arg::Text(n.clone()));
            f.clauses
                .push(format!("(p.filler_order = {a} OR p.placer_order = {b})"));
        }
        if !query.service_codes.is_empty() {
            let a = f.list(&query.service_codes);
            let b = f.list(&query.service_codes);
            f.clauses.push(format!(
                "(p.service_code IN ({a}) OR p.service_loinc IN ({b}))"
            ));
        }
        if !query.result_codes.is_empty() {
            let a = f.list(&query.result_codes);
            let b = f.list(&query.result_codes);
            f.clauses.push(format!(
                "EXISTS (SELECT 1 FROM lab_results r WHERE r.panel_id = p.panel_id AND (r.code IN ({a}) OR r.loinc IN ({b})))"
            ));
        }
        if let Some(t) = query.collected_from {
            let a = f.placeholder(Arg::Int(t.0));
            f.clauses.push(format!("p.collected_at >= {a}"));
        }
        if let Some(t) = query.collected_before {
            let a = f.placeholder(Arg::Int(t.0));
            f.clauses.push(format!("p.collected_at < {a}"));
        }
        let limit = f.placeholder(Arg::Int(query.limit.max(0)));
        let sql = format!(
            "{} WHERE {} ORDER BY p.received_at DESC, p.panel_id DESC LIMIT {limit}",
            panel_select(),
            f.clauses.join(" AND ")
        );
        let rows = f
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        let records = self.with_results(rows).await?;
        let later = self
            .later_states(
                &records
                    .iter()
                    .filter(|r| r.superseded_by.is_some())
                    .map(|r| r.panel_id.to_string())
                    .collect::<Vec<_>>(),
            )
            .await?;
        let replaced = self
            .statuses(
                &records
                    .iter()
                    .filter_map(|r| r.supersedes.as_ref().map(|s| s.to_string()))
                    .collect::<Vec<_>>(),
            )
            .await?;
        Ok(records
            .into_iter()
            .map(|record| {
                let id = record.panel_id.as_str();
                let newer = later
                    .iter()
                    .filter(|(origin, _)| origin == id)
                    .map(|(_, s)| *s)
                    .collect();
                let replaced_status = record.supersedes.as_ref().and_then(|s| {
                    replaced
                        .iter()
                        .find(|(pid, _)| pid == s.as_str())
                        .map(|(_, st)| *st)
                });
                PublishedLabPanel {
                    record,
                    newer,
                    replaced_status,
                }
            })
            .collect())
    }

    /// For each panel, the states of the reports that came after it in its order, oldest first.
    async fn later_states(
        &self,
        origins: &[String],
    ) -> Result<Vec<(String, LabPanelState)>, PortError> {
        if origins.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "WITH RECURSIVE later (origin, panel_id, state, depth) AS ( \
               SELECT p.panel_id, n.panel_id, n.state, CAST(1 AS BIGINT) FROM lab_panels p \
                 JOIN lab_panels n ON n.panel_id = p.superseded_by WHERE p.panel_id IN ({}) \
               UNION ALL \
               SELECT l.origin, n.panel_id, n.state, l.depth + 1 FROM later l \
                 JOIN lab_panels c ON c.panel_id = l.panel_id \
                 JOIN lab_panels n ON n.panel_id = c.superseded_by WHERE l.depth < ${} \
             ) SELECT origin, state FROM later ORDER BY origin, depth",
            placeholders(1, origins.len()),
            origins.len() + 1
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for o in origins {
            q = q.bind(o.as_str());
        }
        let rows = q.bind(MAX_CHAIN).fetch_all(self.pool()).await.map_err(db)?;
        rows.iter()
            .map(|row| {
                let state: String = get(row, "state")?;
                Ok((
                    get(row, "origin")?,
                    LabPanelState::parse(&state)
                        .ok_or_else(|| corrupt("lab_panels.state", &state))?,
                ))
            })
            .collect()
    }

    async fn statuses(&self, ids: &[String]) -> Result<Vec<(String, PanelStatus)>, PortError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT panel_id, status FROM lab_panels WHERE panel_id IN ({})",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(id.as_str());
        }
        let rows = q.fetch_all(self.pool()).await.map_err(db)?;
        rows.iter()
            .map(|row| {
                let status: String = get(row, "status")?;
                Ok((
                    get(row, "panel_id")?,
                    PanelStatus::parse(&status)
                        .ok_or_else(|| corrupt("lab_panels.status", &status))?,
                ))
            })
            .collect()
    }

    pub(crate) async fn lab_keys_by_identifier(
        &self,
        issuers: &[String],
        patient_id: &str,
    ) -> Result<Vec<PatientKey>, PortError> {
        let mut f = Filter::default();
        let id = f.placeholder(Arg::Text(patient_id.to_string()));
        f.clauses.push(format!("patient_id = {id}"));
        f.clauses.push(format!("state IN ({})", published_states()));
        if !issuers.is_empty() {
            let list = f.list(issuers);
            f.clauses.push(format!("issuer IN ({list})"));
        }
        let sql = format!(
            "SELECT DISTINCT patient_key FROM lab_panels WHERE {} ORDER BY patient_key",
            f.clauses.join(" AND ")
        );
        let rows = f
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| Ok(PatientKey(get(r, "patient_key")?)))
            .collect()
    }

    pub(crate) async fn lab_keys_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<PatientKey>, PortError> {
        // Keys are lower-case hex: every key starting with the prefix sorts in [prefix, prefix + "g").
        let sql = format!(
            "SELECT DISTINCT patient_key FROM lab_panels WHERE patient_key >= $1 AND patient_key < $2 \
             AND state IN ({}) ORDER BY patient_key",
            published_states()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(prefix)
            .bind(format!("{prefix}g"))
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| Ok(PatientKey(get(r, "patient_key")?)))
            .collect()
    }

    pub(crate) async fn lab_identities(
        &self,
        patients: &[PatientKey],
    ) -> Result<Vec<LabIdentityRow>, PortError> {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT patient_key, issuer, patient_id, patient_name, birth_date, sex, received_at FROM lab_panels \
             WHERE patient_key IN ({}) AND state IN ({}) ORDER BY received_at DESC, panel_id DESC LIMIT ${}",
            placeholders(1, patients.len()),
            published_states(),
            patients.len() + 1
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in patients {
            q = q.bind(p.0.as_str());
        }
        let rows = q
            .bind(MAX_IDENTITIES)
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(LabIdentityRow {
                    patient_key: PatientKey(r.try_get("patient_key").map_err(db)?),
                    issuer: get(r, "issuer")?,
                    patient_id: get(r, "patient_id")?,
                    name: get(r, "patient_name")?,
                    birth_date: get(r, "birth_date")?,
                    sex: get(r, "sex")?,
                    received_at: UnixMillis(get(r, "received_at")?),
                })
            })
            .collect()
    }
}
