//! Lab results in the catalog (`migrations/0009_lab.sql`): a received message, its panels and their
//! results in one transaction, the supersession of an order's earlier report, and reading panels back
//! into the domain model.

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use yilian_app::ports::{
    LabInsertOutcome, LabMessageRecord, LabOrderRef, LabPanelRecord, NewLabMessage, NewLabPanel,
    PortError, StoredLabPanel, UNMATCHED_CORRECTION_NOTE,
};
use yilian_domain::lab::{
    AbnormalFlag, CodedValue, Comparator, LabPanel, LabPanelState, LabPatient, LabResult,
    LabSource, LabTime, LabValue, PanelStatus, PatientIdentifier, Practitioner, Quantity,
    ReferenceRange, ResultStatus, Sex,
};
use yilian_domain::{LabPanelId, LocalPatientId, PatientKey, PoolId, SiteId, UnixMillis, Username};

use crate::catalog::{SqlCatalog, corrupt, db, get, insert_audit, uid};

/// `format!` for SQL whose only interpolations are the column lists below (never input).
macro_rules! sql {
    ($($t:tt)*) => { sqlx::AssertSqlSafe(format!($($t)*)) };
}

const MESSAGE_COLS: &str = "message_id, source, sending_facility, control_id, site_id, version, sha256, size_bytes, blob_key, \
                            received_at, received_by, panel_count, outcome";

const PANEL_COLS: &str = "panel_id, message_id, seq, source, version, site_id, sending_facility, performing_lab, ordering_site, \
                          ordering_provider, patient_key, issuer, patient_id, patient_name, birth_date, sex, placer_order, \
                          filler_order, service_code, service_display, service_system, service_loinc, specimen_code, \
                          specimen_display, specimen_system, collected_at, specimen_received_at, reported_at, collected_text, \
                          specimen_received_text, reported_text, received_at, status, state, supersedes, superseded_by, notes, \
                          review_pool, decision, release_rule, released_at, released_by, critical_count";

/// The panel columns qualified with `p.`, plus what a record takes from its message.
pub(crate) fn panel_select() -> String {
    let cols: Vec<String> = PANEL_COLS
        .split(',')
        .map(|c| format!("p.{}", c.trim()))
        .collect();
    format!(
        "SELECT {}, m.control_id AS m_control_id, m.blob_key AS m_blob_key, m.sha256 AS m_sha256, \
         m.received_by AS m_received_by FROM lab_panels p JOIN lab_messages m ON m.message_id = p.message_id",
        cols.join(", ")
    )
}

const RESULT_COLS: &str = "panel_id, seq, set_id, code, code_display, code_system, other_codes, loinc, loinc_source, value_kind, \
                           value_num, value_decimal, comparator, unit, unit_display, unit_system, value_code, value_code_system, \
                           value_text, ref_low, ref_high, ref_text, flags, status, observed_at, observed_text";

fn json_text(v: serde_json::Value) -> String {
    v.to_string()
}

fn coded_json(c: &CodedValue) -> serde_json::Value {
    serde_json::json!({ "code": c.code, "display": c.display, "system": c.system })
}

fn coded_from_json(v: &serde_json::Value) -> Option<CodedValue> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Some(CodedValue {
        code: s("code")?,
        display: s("display"),
        system: s("system"),
    })
}

fn parse_json(col: &str, text: &str) -> Result<serde_json::Value, PortError> {
    serde_json::from_str(text).map_err(|e| corrupt(col, e))
}

/// True when the panel reports a correction: its status, or any result's.
fn is_correction(p: &LabPanel) -> bool {
    p.status == PanelStatus::Corrected
        || p.results
            .iter()
            .any(|r| r.status == ResultStatus::Corrected)
}

fn order_of(facility: &str, p: &LabPanel) -> LabOrderRef {
    LabOrderRef {
        sending_facility: facility.to_string(),
        filler_order_number: p.filler_order_number.clone(),
        placer_order_number: p.placer_order_number.clone(),
        service_code: p.service.code.clone(),
    }
}

/// The latest unsuperseded panel of the order: by filler order number, else by placer order number.
async fn latest_of_order(
    conn: &mut sqlx::AnyConnection,
    order: &LabOrderRef,
) -> Result<Option<String>, PortError> {
    for (col, number) in [
        ("filler_order", &order.filler_order_number),
        ("placer_order", &order.placer_order_number),
    ] {
        let Some(number) = number.as_deref().filter(|n| !n.trim().is_empty()) else {
            continue;
        };
        let found: Option<String> = sqlx::query_scalar(sql!(
            "SELECT panel_id FROM lab_panels WHERE sending_facility = $1 AND {col} = $2 AND service_code = $3 \
             AND superseded_by IS NULL ORDER BY received_at DESC, panel_id DESC LIMIT 1"
        ))
        .bind(&order.sending_facility)
        .bind(number)
        .bind(&order.service_code)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Inside the transaction: marks the order's latest panel as superseded by `new_id` and returns it.
/// The UPDATE is conditional, so of two concurrent reports of one order, the second supersedes the
/// first (PostgreSQL re-reads after the winner commits); SQLite serialises writers anyway.
async fn supersede(
    tx: &mut Transaction<'static, Any>,
    order: &LabOrderRef,
    new_id: &LabPanelId,
) -> Result<Option<LabPanelId>, PortError> {
    for _ in 0..5 {
        let Some(prev) = latest_of_order(tx, order).await? else {
            return Ok(None);
        };
        let done = sqlx::query(
            "UPDATE lab_panels SET superseded_by = $1 WHERE panel_id = $2 AND superseded_by IS NULL",
        )
        .bind(new_id.as_str())
        .bind(&prev)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            return Ok(Some(
                LabPanelId::new(prev.clone()).map_err(|e| corrupt("lab_panels.panel_id", e))?,
            ));
        }
    }
    Err(PortError::Unavailable(
        "lab order kept changing while a report of it was stored".into(),
    ))
}

impl SqlCatalog {
    pub(crate) async fn lab_message_by_key(
        &self,
        source: LabSource,
        sending_facility: &str,
        control_id: &str,
    ) -> Result<Option<LabMessageRecord>, PortError> {
        let row = sqlx::query(sql!(
            "SELECT {MESSAGE_COLS} FROM lab_messages WHERE source = $1 AND sending_facility = $2 AND control_id = $3"
        ))
        .bind(source.as_str())
        .bind(sending_facility)
        .bind(control_id)
        .fetch_optional(self.pool())
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let message_id: String = get(&row, "message_id")?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT panel_id FROM lab_panels WHERE message_id = $1 ORDER BY seq",
        )
        .bind(&message_id)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        let source_text: String = get(&row, "source")?;
        Ok(Some(LabMessageRecord {
            source: LabSource::parse(&source_text)
                .ok_or_else(|| corrupt("lab_messages.source", &source_text))?,
            sending_facility: get(&row, "sending_facility")?,
            control_id: get(&row, "control_id")?,
            site: uid(&row, "site_id", SiteId::new)?,
            version: get(&row, "version")?,
            sha256: get(&row, "sha256")?,
            size_bytes: get(&row, "size_bytes")?,
            blob_key: get(&row, "blob_key")?,
            received_at: UnixMillis(get(&row, "received_at")?),
            received_by: uid(&row, "received_by", Username::new)?,
            panel_ids: ids
                .into_iter()
                .map(|id| LabPanelId::new(id).map_err(|e| corrupt("lab_panels.panel_id", e)))
                .collect::<Result<_, _>>()?,
            message_id,
        }))
    }

    pub(crate) async fn insert_lab(
        &self,
        m: &NewLabMessage,
    ) -> Result<LabInsertOutcome, PortError> {
        let mut tx = self.pool().begin().await.map_err(db)?;
        // The message row first: it takes SQLite's write lock at once, and it is the duplicate check
        // that holds across concurrent writers (the unique sender + control ID).
        let inserted = sqlx::query(sql!(
            "INSERT INTO lab_messages ({MESSAGE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'accepted') \
             ON CONFLICT (source, sending_facility, control_id) DO NOTHING"
        ))
        .bind(&m.message_id)
        .bind(m.source.as_str())
        .bind(&m.sending_facility)
        .bind(&m.control_id)
        .bind(m.site.as_str())
        .bind(&m.version)
        .bind(&m.sha256)
        .bind(m.size_bytes)
        .bind(&m.blob_key)
        .bind(m.received_at.0)
        .bind(m.received_by.as_str())
        .bind(i64::try_from(m.panels.len()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return match self
                .lab_message_by_key(m.source, &m.sending_facility, &m.control_id)
                .await?
            {
                Some(existing) => Ok(LabInsertOutcome::Exists(Box::new(existing))),
                None => Err(PortError::Unavailable(
                    "a lab message's control ID was taken and released meanwhile; retry".into(),
                )),
            };
        }
        let mut stored = Vec::with_capacity(m.panels.len());
        for (i, p) in m.panels.iter().enumerate() {
            self.upsert_patient(&mut tx, m, p).await?;
            crate::patients::link_ids(
                &mut tx,
                &p.linked_ids,
                &p.patient_key,
                &m.site,
                m.received_at.0,
            )
            .await?;
            let order = order_of(&m.sending_facility, &p.panel);
            let has_order = order
                .filler_order_number
                .iter()
                .chain(order.placer_order_number.iter())
                .any(|n| !n.trim().is_empty());
            let supersedes = if has_order {
                supersede(&mut tx, &order, &p.panel_id).await?
            } else {
                None
            };
            let unmatched_correction = supersedes.is_none() && is_correction(&p.panel);
            let mut notes = p.panel.notes.clone();
            if unmatched_correction {
                notes.push(UNMATCHED_CORRECTION_NOTE.to_string());
            }
            insert_panel(&mut tx, m, p, i, supersedes.as_ref(), &notes).await?;
            for (j, r) in p.panel.results.iter().enumerate() {
                let mapped = p.loinc_mapped.get(j).copied().unwrap_or(false);
                insert_result(&mut tx, m, &p.panel_id, j, r, mapped).await?;
            }
            for case in &p.critical {
                crate::lab_review::insert_case(&mut tx, m, p, case).await?;
            }
            if let Some(audit) = m.audit.get(i) {
                let mut audit = audit.clone();
                if let Some(prev) = &supersedes {
                    audit.detail.push_str(&format!("; supersedes {prev}"));
                }
                if unmatched_correction {
                    audit.detail.push_str("; correction of an unknown order");
                }
                insert_audit(&mut tx, &audit).await?;
            }
            stored.push(StoredLabPanel {
                panel_id: p.panel_id.clone(),
                supersedes,
                unmatched_correction,
            });
        }
        // Audit rows beyond one per panel (none today) still belong to the same commit.
        for audit in m.audit.iter().skip(m.panels.len()) {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(LabInsertOutcome::Inserted(stored))
    }

    /// The patient and the identifier the panel was keyed by, as imaging records them; demographics
    /// the lab left empty keep what was known.
    async fn upsert_patient(
        &self,
        tx: &mut Transaction<'static, Any>,
        m: &NewLabMessage,
        p: &NewLabPanel,
    ) -> Result<(), PortError> {
        sqlx::query(
            "INSERT INTO patients (patient_key, created_at) VALUES ($1, $2) ON CONFLICT (patient_key) DO NOTHING",
        )
        .bind(&p.patient_key.0)
        .bind(m.received_at.0)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        let patient = &p.panel.patient;
        sqlx::query(
            "INSERT INTO patient_ids (issuer, patient_id, patient_key, site_id, patient_name, birth_date, sex, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (issuer, patient_id) DO UPDATE SET \
             patient_name = COALESCE(excluded.patient_name, patient_ids.patient_name), \
             birth_date = COALESCE(excluded.birth_date, patient_ids.birth_date), \
             sex = COALESCE(excluded.sex, patient_ids.sex), updated_at = excluded.updated_at",
        )
        .bind(&p.patient.issuer)
        .bind(&p.patient.id)
        .bind(&p.patient_key.0)
        .bind(m.site.as_str())
        .bind(&patient.name)
        .bind(&patient.birth_date)
        .bind(patient.sex.map(|s| s.as_str()))
        .bind(m.received_at.0)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn latest_lab_panel(
        &self,
        order: &LabOrderRef,
    ) -> Result<Option<LabPanelId>, PortError> {
        let mut conn = self.pool().acquire().await.map_err(db)?;
        latest_of_order(&mut conn, order)
            .await?
            .map(|id| LabPanelId::new(id).map_err(|e| corrupt("lab_panels.panel_id", e)))
            .transpose()
    }

    pub(crate) async fn lab_panel_by_id(
        &self,
        panel: &LabPanelId,
    ) -> Result<Option<LabPanelRecord>, PortError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE p.panel_id = $1",
            panel_select()
        )))
        .bind(panel.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut records = self.with_results(vec![row]).await?;
        Ok(records.pop())
    }

    pub(crate) async fn lab_panels_by_patient(
        &self,
        patient: &PatientKey,
        limit: i64,
    ) -> Result<Vec<LabPanelRecord>, PortError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE p.patient_key = $1 ORDER BY p.received_at DESC, p.panel_id DESC LIMIT $2",
            panel_select()
        )))
        .bind(&patient.0)
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        self.with_results(rows).await
    }

    /// Panel rows → records, with their results read in one query.
    pub(crate) async fn with_results(
        &self,
        rows: Vec<AnyRow>,
    ) -> Result<Vec<LabPanelRecord>, PortError> {
        let mut records = rows
            .iter()
            .map(panel_record)
            .collect::<Result<Vec<_>, _>>()?;
        if records.is_empty() {
            return Ok(records);
        }
        let placeholders = (1..=records.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut q = sqlx::query(sql!(
            "SELECT {RESULT_COLS} FROM lab_results WHERE panel_id IN ({placeholders}) ORDER BY panel_id, seq"
        ));
        for r in &records {
            q = q.bind(r.panel_id.as_str().to_string());
        }
        let rows = q.fetch_all(self.pool()).await.map_err(db)?;
        for row in &rows {
            let panel_id: String = get(row, "panel_id")?;
            let (result, mapped) = result_of(row)?;
            if let Some(rec) = records.iter_mut().find(|r| r.panel_id.as_str() == panel_id) {
                rec.panel.results.push(result);
                rec.loinc_mapped.push(mapped);
            }
        }
        Ok(records)
    }
}

async fn insert_panel(
    tx: &mut Transaction<'static, Any>,
    m: &NewLabMessage,
    p: &NewLabPanel,
    index: usize,
    supersedes: Option<&LabPanelId>,
    notes: &[String],
) -> Result<(), PortError> {
    let panel = &p.panel;
    let offset = m.utc_offset_minutes;
    let instant = |t: &Option<LabTime>| t.map(|t| t.to_unix_millis(offset).0);
    let text = |t: &Option<LabTime>| t.map(|t| t.to_hl7());
    let provider = panel
        .ordering_provider
        .as_ref()
        .map(|pr| json_text(serde_json::json!({ "id": pr.id, "name": pr.name })));
    let specimen = panel.specimen.as_ref();
    let placeholders = (1..=43)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(sql!(
        "INSERT INTO lab_panels ({PANEL_COLS}) VALUES ({placeholders})"
    ))
    .bind(p.panel_id.as_str())
    .bind(&m.message_id)
    .bind(i64::try_from(index + 1).unwrap_or(i64::MAX))
    .bind(panel.source.as_str())
    .bind(&panel.version)
    .bind(m.site.as_str())
    .bind(&m.sending_facility)
    .bind(&panel.performing_lab)
    .bind(&panel.ordering_site)
    .bind(provider)
    .bind(&p.patient_key.0)
    .bind(&p.patient.issuer)
    .bind(&p.patient.id)
    .bind(&panel.patient.name)
    .bind(&panel.patient.birth_date)
    .bind(panel.patient.sex.map(|s| s.as_str()))
    .bind(&panel.placer_order_number)
    .bind(&panel.filler_order_number)
    .bind(&panel.service.code)
    .bind(&panel.service.display)
    .bind(&panel.service.system)
    .bind(&p.service_loinc)
    .bind(specimen.map(|s| s.code.clone()))
    .bind(specimen.and_then(|s| s.display.clone()))
    .bind(specimen.and_then(|s| s.system.clone()))
    .bind(instant(&panel.collected_at))
    .bind(instant(&panel.received_at))
    .bind(instant(&panel.reported_at))
    .bind(text(&panel.collected_at))
    .bind(text(&panel.received_at))
    .bind(text(&panel.reported_at))
    .bind(m.received_at.0)
    .bind(panel.status.as_str())
    .bind(p.review.state.as_str())
    .bind(supersedes.map(|s| s.as_str().to_string()))
    .bind(None::<String>)
    .bind(json_text(serde_json::json!(notes)))
    .bind(
        p.review
            .review_pool
            .as_ref()
            .map(|x| x.as_str().to_string()),
    )
    .bind(&p.review.decision)
    .bind(&p.review.release_rule)
    .bind((p.review.state == LabPanelState::AutoReleased).then_some(m.received_at.0))
    .bind(None::<String>)
    .bind(i64::try_from(p.critical.len()).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

async fn insert_result(
    tx: &mut Transaction<'static, Any>,
    m: &NewLabMessage,
    panel_id: &LabPanelId,
    index: usize,
    r: &LabResult,
    mapped: bool,
) -> Result<(), PortError> {
    let (kind, num, decimal, comparator, unit, code, text) = match &r.value {
        LabValue::Numeric(q) => (
            "numeric",
            Some(q.value),
            Some(q.decimal.clone()),
            q.comparator.map(|c| c.as_str()),
            q.unit.as_ref(),
            None,
            None,
        ),
        LabValue::Coded(c) => ("coded", None, None, None, None, Some(c), c.display.clone()),
        LabValue::Text(t) => ("text", None, None, None, None, None, Some(t.clone())),
        LabValue::Absent => ("absent", None, None, None, None, None, None),
    };
    let range = r.reference_range.as_ref();
    let loinc_source = r
        .loinc
        .as_ref()
        .map(|_| if mapped { "mapped" } else { "sent" });
    let flags: Vec<&str> = r.abnormal_flags.iter().map(AbnormalFlag::code).collect();
    let others: Vec<serde_json::Value> = r.other_codes.iter().map(coded_json).collect();
    let placeholders = (1..=26)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(sql!(
        "INSERT INTO lab_results ({RESULT_COLS}) VALUES ({placeholders})"
    ))
    .bind(panel_id.as_str())
    .bind(i64::try_from(index + 1).unwrap_or(i64::MAX))
    .bind(r.set_id.map(i64::from))
    .bind(&r.code.code)
    .bind(&r.code.display)
    .bind(&r.code.system)
    .bind(json_text(serde_json::json!(others)))
    .bind(&r.loinc)
    .bind(loinc_source)
    .bind(kind)
    .bind(num)
    .bind(decimal)
    .bind(comparator)
    .bind(unit.map(|u| u.code.clone()))
    .bind(unit.and_then(|u| u.display.clone()))
    .bind(unit.and_then(|u| u.system.clone()))
    .bind(code.map(|c| c.code.clone()))
    .bind(code.and_then(|c| c.system.clone()))
    .bind(text)
    .bind(range.and_then(|x| x.low))
    .bind(range.and_then(|x| x.high))
    .bind(range.and_then(|x| x.text.clone()))
    .bind(json_text(serde_json::json!(flags)))
    .bind(r.status.as_str())
    .bind(
        r.observed_at
            .map(|t| t.to_unix_millis(m.utc_offset_minutes).0),
    )
    .bind(r.observed_at.map(|t| t.to_hl7()))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

fn lab_time(row: &AnyRow, col: &str) -> Result<Option<LabTime>, PortError> {
    let text: Option<String> = get(row, col)?;
    text.map(|t| LabTime::parse_hl7(&t).ok_or_else(|| corrupt(col, &t)))
        .transpose()
}

fn panel_id_of(row: &AnyRow, col: &str) -> Result<Option<LabPanelId>, PortError> {
    let v: Option<String> = get(row, col)?;
    v.map(|s| LabPanelId::new(s).map_err(|e| corrupt(col, e)))
        .transpose()
}

fn panel_record(row: &AnyRow) -> Result<LabPanelRecord, PortError> {
    let source_text: String = get(row, "source")?;
    let source =
        LabSource::parse(&source_text).ok_or_else(|| corrupt("lab_panels.source", &source_text))?;
    let status_text: String = get(row, "status")?;
    let status = PanelStatus::parse(&status_text)
        .ok_or_else(|| corrupt("lab_panels.status", &status_text))?;
    let state_text: String = get(row, "state")?;
    let state = LabPanelState::parse(&state_text)
        .ok_or_else(|| corrupt("lab_panels.state", &state_text))?;
    let issuer: String = get(row, "issuer")?;
    let patient_id: String = get(row, "patient_id")?;
    let sex: Option<String> = get(row, "sex")?;
    let provider: Option<String> = get(row, "ordering_provider")?;
    let ordering_provider = match provider {
        Some(text) => {
            let v = parse_json("lab_panels.ordering_provider", &text)?;
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            Some(Practitioner {
                id: s("id"),
                name: s("name"),
            })
        }
        None => None,
    };
    let specimen_code: Option<String> = get(row, "specimen_code")?;
    let notes_text: String = get(row, "notes")?;
    let notes = parse_json("lab_panels.notes", &notes_text)?
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let control_id: String = get(row, "m_control_id")?;
    let panel = LabPanel {
        source,
        version: get(row, "version")?,
        message_id: control_id.clone(),
        patient: LabPatient {
            identifiers: vec![PatientIdentifier {
                id: patient_id.clone(),
                assigning_authority: Some(issuer.clone()),
                id_type: None,
            }],
            name: get(row, "patient_name")?,
            birth_date: get(row, "birth_date")?,
            sex: sex.as_deref().and_then(Sex::parse),
        },
        ordering_site: get(row, "ordering_site")?,
        ordering_provider,
        performing_lab: get(row, "performing_lab")?,
        placer_order_number: get(row, "placer_order")?,
        filler_order_number: get(row, "filler_order")?,
        service: CodedValue {
            code: get(row, "service_code")?,
            display: get(row, "service_display")?,
            system: get(row, "service_system")?,
        },
        specimen: specimen_code
            .map(|code| -> Result<CodedValue, PortError> {
                Ok(CodedValue {
                    code,
                    display: get(row, "specimen_display")?,
                    system: get(row, "specimen_system")?,
                })
            })
            .transpose()?,
        collected_at: lab_time(row, "collected_text")?,
        received_at: lab_time(row, "specimen_received_text")?,
        reported_at: lab_time(row, "reported_text")?,
        status,
        results: Vec::new(),
        notes,
    };
    Ok(LabPanelRecord {
        panel_id: uid(row, "panel_id", LabPanelId::new)?,
        message_id: get(row, "message_id")?,
        control_id,
        seq: get(row, "seq")?,
        site: uid(row, "site_id", SiteId::new)?,
        sending_facility: get(row, "sending_facility")?,
        patient_key: PatientKey(get(row, "patient_key")?),
        patient: LocalPatientId {
            issuer,
            id: patient_id,
        },
        service_loinc: get(row, "service_loinc")?,
        loinc_mapped: Vec::new(),
        panel,
        received_at: UnixMillis(get(row, "received_at")?),
        received_by: uid(row, "m_received_by", Username::new)?,
        state,
        review_pool: get::<Option<String>>(row, "review_pool")?
            .map(|p| PoolId::new(p).map_err(|e| corrupt("lab_panels.review_pool", e)))
            .transpose()?,
        decision: get(row, "decision")?,
        release_rule: get(row, "release_rule")?,
        released_at: get::<Option<i64>>(row, "released_at")?.map(UnixMillis),
        released_by: get::<Option<String>>(row, "released_by")?
            .map(|u| Username::new(u).map_err(|e| corrupt("lab_panels.released_by", e)))
            .transpose()?,
        critical_count: get(row, "critical_count")?,
        supersedes: panel_id_of(row, "supersedes")?,
        superseded_by: panel_id_of(row, "superseded_by")?,
        raw_blob_key: get(row, "m_blob_key")?,
        raw_sha256: get(row, "m_sha256")?,
    })
}

fn result_of(row: &AnyRow) -> Result<(LabResult, bool), PortError> {
    let kind: String = get(row, "value_kind")?;
    let value = match kind.as_str() {
        "numeric" => {
            let unit_code: Option<String> = get(row, "unit")?;
            let comparator: Option<String> = get(row, "comparator")?;
            LabValue::Numeric(Quantity {
                value: get::<Option<f64>>(row, "value_num")?
                    .ok_or_else(|| corrupt("lab_results.value_num", "missing"))?,
                decimal: get::<Option<String>>(row, "value_decimal")?.unwrap_or_default(),
                comparator: comparator.as_deref().and_then(Comparator::parse),
                unit: unit_code
                    .map(|code| -> Result<CodedValue, PortError> {
                        Ok(CodedValue {
                            code,
                            display: get(row, "unit_display")?,
                            system: get(row, "unit_system")?,
                        })
                    })
                    .transpose()?,
            })
        }
        "coded" => LabValue::Coded(CodedValue {
            code: get::<Option<String>>(row, "value_code")?
                .ok_or_else(|| corrupt("lab_results.value_code", "missing"))?,
            display: get(row, "value_text")?,
            system: get(row, "value_code_system")?,
        }),
        "text" => LabValue::Text(get::<Option<String>>(row, "value_text")?.unwrap_or_default()),
        "absent" => LabValue::Absent,
        other => return Err(corrupt("lab_results.value_kind", other)),
    };
    let low: Option<f64> = get(row, "ref_low")?;
    let high: Option<f64> = get(row, "ref_high")?;
    let range_text: Option<String> = get(row, "ref_text")?;
    let reference_range =
        (low.is_some() || high.is_some() || range_text.is_some()).then_some(ReferenceRange {
            low,
            high,
            text: range_text,
        });
    let flags_text: String = get(row, "flags")?;
    let abnormal_flags = parse_json("lab_results.flags", &flags_text)?
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().and_then(AbnormalFlag::from_code))
                .collect()
        })
        .unwrap_or_default();
    let others_text: String = get(row, "other_codes")?;
    let other_codes = parse_json("lab_results.other_codes", &others_text)?
        .as_array()
        .map(|a| a.iter().filter_map(coded_from_json).collect())
        .unwrap_or_default();
    let status_text: String = get(row, "status")?;
    let set_id: Option<i64> = get(row, "set_id")?;
    let loinc_source: Option<String> = get(row, "loinc_source")?;
    Ok((
        LabResult {
            set_id: set_id.and_then(|n| u32::try_from(n).ok()),
            code: CodedValue {
                code: get(row, "code")?,
                display: get(row, "code_display")?,
                system: get(row, "code_system")?,
            },
            other_codes,
            loinc: get(row, "loinc")?,
            value,
            reference_range,
            abnormal_flags,
            status: ResultStatus::parse(&status_text)
                .ok_or_else(|| corrupt("lab_results.status", &status_text))?,
            observed_at: lab_time(row, "observed_text")?,
        },
        loinc_source.as_deref() == Some("mapped"),
    ))
}
