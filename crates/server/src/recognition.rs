//! Mutual recognition after the look-up, over HTTP: `POST /api/v1/results/{kind}/{id}/decision` (a
//! clinician accepts or declines a result), `GET /api/v1/results/prior` (the prior-result alert for
//! order entry) and `GET /api/v1/admin/recognition` (rates per item, performing site and month; counts
//! only, admins).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use yilian_app::ports::RecognitionDecisionRecord;
use yilian_app::recognition::{DecisionInput, DecisionTarget, PriorResult};
use yilian_domain::{LabPanelId, ReportId};
use yilian_policy::DeclineReason;
use yilian_signing::format_time;

use crate::AppState;
use crate::api::not_found_id;
use crate::auth::{Authorized, act};
use crate::error::ApiError;
use crate::metrics::parse_bound;

/// The default range of a rates report: the 365 days before `to`.
const DEFAULT_RANGE_DAYS: i64 = 365;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// `accepted` or `declined`.
    decision: String,
    /// A decline's reason code (ARCHITECTURE.md lists them).
    reason: Option<String>,
    text: Option<String>,
    /// Lab only: the result's position in the panel (from 1); absent: the whole report.
    seq: Option<i64>,
}

fn reason_json(code: Option<&str>) -> Value {
    match code.and_then(DeclineReason::parse) {
        Some(r) => json!({ "code": r.code(), "zh": r.label_zh(), "en": r.label_en() }),
        None => Value::Null,
    }
}

fn decision_json(d: &RecognitionDecisionRecord) -> Value {
    json!({
        "decision_id": d.decision_id,
        "kind": d.result_kind,
        "result_id": d.result_id,
        "seq": d.result_seq,
        "item": d.item,
        "performing_site": d.performing_site,
        "deciding_site": d.deciding_site.as_str(),
        "decided_by": d.decided_by.as_str(),
        "decision": d.decision,
        "reason": reason_json(d.reason.as_deref()),
        "text": d.reason_text,
        "recognised_when_decided": d.recognised,
        "decided_at": format_time(d.decided_at.0),
    })
}

/// `POST /api/v1/results/{kind}/{id}/decision`, `kind` `report` (imaging, ECG) or `lab`: 201 with the
/// stored decision.
pub async fn decide(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::DecideRecognition>,
    Path((kind, id)): Path<(String, String)>,
    Json(b): Json<DecisionBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let target = match kind.as_str() {
        "report" => {
            if b.seq.is_some() {
                return Err(ApiError::bad_request("seq is for lab results only"));
            }
            DecisionTarget::Report(ReportId::new(id).map_err(|_| not_found_id())?)
        }
        "lab" => DecisionTarget::Lab(LabPanelId::new(id).map_err(|_| not_found_id())?, b.seq),
        _ => return Err(not_found_id()),
    };
    let d = st
        .hub
        .record_recognition_decision(
            &who,
            &target,
            &DecisionInput {
                decision: b.decision,
                reason: b.reason,
                text: b.text,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(decision_json(&d))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorQuery {
    patient_id: String,
    #[serde(default)]
    issuer: String,
    item: String,
}

fn prior_json(p: &PriorResult) -> Value {
    let r = &p.recognition;
    json!({
        "kind": p.kind,
        "id": p.id,
        "item": p.item,
        "site_id": p.site_id,
        "site_name": p.site_name,
        "performed_at": format_time(p.performed_at.0),
        "recognised": r.recognised,
        "mark": r.mark,
        "scope": r.scope,
        "valid_until": r.valid_until.map(|t| format_time(t.0)),
        "reasons": r.reasons,
        "link": p.link,
    })
}

/// `GET /api/v1/results/prior?patient_id=…&issuer=…&item=CT`: whether a recognised prior exists.
pub async fn prior(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::CheckPriorResult>,
    Query(q): Query<PriorQuery>,
) -> Result<Json<Value>, ApiError> {
    let a = st
        .hub
        .prior_result(&who, &q.issuer, &q.patient_id, &q.item)
        .await?;
    Ok(Json(json!({
        "item": a.item,
        "recognised_prior": a.recognised_prior,
        "prior": a.prior.as_ref().map(prior_json),
        "message": a.message,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /api/v1/admin/recognition?from=…&to=…`: decisions taken in `[from, to)` per item, performing
/// site and month.
pub async fn rates(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ViewMetrics>,
    Query(q): Query<RatesQuery>,
) -> Result<Json<Value>, ApiError> {
    let to = match &q.to {
        Some(v) => parse_bound("to", v)?,
        None => st.hub.now(),
    };
    let from = match &q.from {
        Some(v) => parse_bound("from", v)?,
        None => to.plus_days(-DEFAULT_RANGE_DAYS),
    };
    let report = st.hub.recognition_rates(&who, from, to).await?;
    Ok(Json(json!({
        "from": format_time(report.from.0),
        "to": format_time(report.to.0),
        "counted": "recorded decisions (results shown by look-ups are not counted)",
        "groups": report.groups.iter().map(|g| json!({
            "item": g.item,
            "performing_site": g.performing_site,
            "month": g.month,
            "decisions": g.decisions,
            "recognised_shown": g.recognised_shown,
            "accepted": g.accepted,
            "accepted_unrecognised": g.accepted_unrecognised,
            "declined": g.declined,
            "declined_by_reason": g.declined_by_reason,
            "recognition_rate": g.recognition_rate,
            "exams_avoided": g.exams_avoided,
        })).collect::<Vec<_>>(),
    })))
}
