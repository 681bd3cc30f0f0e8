//! The REST API under `/api/v1` and the health endpoints. JSON in, JSON out; times are
//! `YYYY-MM-DDTHH:MM:SS.mmmZ`; patient identifiers leave the hub masked.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use yilian_app::duty::Duty;
use yilian_app::lifecycle::revocation_json;
use yilian_app::ports::{ExamRecord, ReportRecord};
use yilian_app::reading::ReportInput;
use yilian_app::routing::RouteOutcome;
use yilian_domain::lab::LabValue;
use yilian_domain::{ExamId, ReportId, StudyInstanceUid, mask_identifier, mask_name};
use yilian_signing::{Passphrase, format_time};

use crate::AppState;
use crate::auth::{Authorized, Caller, act};
use crate::error::ApiError;

type ApiResult = Result<Json<Value>, ApiError>;

pub(crate) fn not_found_id() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such object")
}

pub(crate) fn exam_id(s: String) -> Result<ExamId, ApiError> {
    ExamId::new(s).map_err(|_| not_found_id())
}

fn report_id(s: String) -> Result<ReportId, ApiError> {
    ReportId::new(s).map_err(|_| not_found_id())
}

fn study_uid(s: String) -> Result<StudyInstanceUid, ApiError> {
    StudyInstanceUid::new(s).map_err(|_| not_found_id())
}

fn exam_json(st: &AppState, e: &ExamRecord) -> Value {
    let site_name = st.hub.config.site(e.site.as_str()).map(|s| s.name.clone());
    let now = st.hub.now();
    json!({
        "exam_id": e.exam_id.as_str(),
        "study_instance_uid": e.study_uid.as_str(),
        "site_id": e.site.as_str(),
        "site_name": site_name,
        "modality": e.modality,
        "study_description": e.study_description,
        "study_date": e.study_date,
        "pool_id": e.pool.as_str(),
        "priority": e.priority.as_str(),
        "due_at": format_time(e.due_at.0),
        "state": e.state.as_str(),
        "claimed_by": e.claimed_by.as_ref().map(|u| u.as_str()),
        "lease_until": e.lease_until.map(|t| format_time(t.0)),
        "route": { "rule": e.route_rule, "explanation": e.route_reason },
        "patient": {
            "issuer": e.issuer_of_patient_id,
            "patient_id_masked": mask_identifier(&e.patient_id),
            "name_masked": e.patient_name.as_deref().map(mask_name),
        },
        "created_at": format_time(e.created_at.0),
        "kind": e.kind.as_str(),
        "review_required": e.review,
        "awaiting_review": e.awaiting_review,
        "drafted_by": e.drafted_by.as_ref().map(|u| u.as_str()),
        "alerts": e.alerts.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()).unwrap_or_else(|| json!([])),
        "subspecialty": e.subspecialty,
        "offer": e.live_offer(now).map(|to| json!({
            "to": to.as_str(),
            "until": e.offer_until.map(|t| format_time(t.0)),
            "reason": e.offer_reason,
        })),
        "escalation": e.escalated_at.map(|t| json!({
            "at": format_time(t.0),
            "pool_id": e.escalated_pool.as_ref().map(|p| p.as_str()),
            "reason": e.escalation_reason,
        })),
    })
}

/// A stored report's `sections` (JSON text) as JSON; `null` for a report from before templates.
fn sections_value(r: &ReportRecord) -> Value {
    r.sections
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

fn draft_json(r: &ReportRecord) -> Value {
    json!({
        "report_id": r.report_id.as_str(),
        "status": r.status.as_str(),
        "template": r.template,
        "sections": sections_value(r),
        "findings": r.findings,
        "impression": r.impression,
        "author": r.author.as_str(),
        "updated_at": format_time(r.updated_at.0),
    })
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    st.hub.catalog.ping().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the catalog is not reachable",
        )
    })?;
    Ok(Json(json!({ "status": "ready" })))
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub async fn me(Caller(who): Caller) -> ApiResult {
    Ok(Json(json!({
        "username": who.username.as_str(),
        "name": who.name,
        "role": who.role.as_str(),
        "site_id": who.site.as_str(),
        "pools": who.pools.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
    })))
}

pub async fn worklist(State(st): State<AppState>, Caller(who): Caller) -> ApiResult {
    let items = st.hub.worklist(&who).await?;
    Ok(Json(
        json!({ "items": items.iter().map(|e| exam_json(&st, e)).collect::<Vec<_>>() }),
    ))
}

/// `POST /api/v1/worklist/next`: a lease on the most urgent claimable exam; 204 when none waits.
pub async fn claim_next(
    State(st): State<AppState>,
    Caller(who): Caller,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    Ok(match st.hub.claim_next(&who).await? {
        Some(e) => Json(exam_json(&st, &e)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Debug, Deserialize)]
pub struct ReassignBody {
    pub to: String,
}

/// `POST /api/v1/exams/{id}/reassign` (admin): the lease moves to another reader of the exam's pool.
pub async fn reassign(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ReassignExam>,
    Path(id): Path<String>,
    Json(body): Json<ReassignBody>,
) -> ApiResult {
    let exam = exam_id(id)?;
    let (previous, until) = st.hub.reassign(&who, &exam, &body.to).await?;
    Ok(Json(json!({
        "exam_id": exam.as_str(),
        "claimed_by": body.to,
        "previous_holder": previous.as_ref().map(|u| u.as_str()),
        "lease_until": format_time(until.0),
    })))
}

#[derive(Debug, Default, Deserialize)]
pub struct NotificationsQuery {
    /// The last `notification_id` the caller has seen.
    pub after: Option<String>,
}

/// The JSON of a notification, for readers and for the webhook alike (no patient identifiers).
pub(crate) fn notification_json(alliance: &str, n: &yilian_app::ports::Notification) -> Value {
    json!({
        "notification_id": n.notification_id,
        "alliance": alliance,
        "at": format_time(n.at.0),
        "kind": n.kind,
        // Lab critical-value notifications name a case, exam notifications an exam.
        (if n.kind.starts_with("lab.") { "case_id" } else { "exam_id" }): n.exam_id.as_str(),
        "pool_id": n.pool.as_str(),
        "priority": n.priority.as_str(),
        "due_at": format_time(n.due_at.0),
        "message": n.message,
        "recipients": n.recipients.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/duty`: who is on duty now in the caller's pools (an admin: all pools).
pub async fn duty(State(st): State<AppState>, Caller(who): Caller) -> ApiResult {
    let board = st.hub.duty_board(&who).await?;
    let pools: Vec<Value> = board
        .iter()
        .map(|p| {
            json!({
                "pool_id": p.pool.as_str(),
                "name": p.name,
                "keeps_rota": p.keeps_rota,
                "readers": p.readers.iter().map(|r| {
                    let (state, shift) = match &r.duty {
                        Duty::NoRota => ("on_duty", None),
                        Duty::OnShift(s) => ("on_duty", Some(s.clone())),
                        Duty::OnLeave(_) => ("on_leave", None),
                        Duty::Off => ("off_duty", None),
                    };
                    json!({
                        "username": r.username.as_str(),
                        "name": r.name,
                        "duty": state,
                        "shift": shift,
                        "explanation": r.duty.describe(),
                        "seniority": if r.senior { "senior" } else { "junior" },
                        "modalities": r.modalities,
                        "subspecialties": r.subspecialties,
                        "open_items": r.open_items,
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(
        json!({ "at": format_time(st.hub.now().0), "pools": pools }),
    ))
}

/// `GET /api/v1/notifications?after=…`: urgent and escalated exams of the caller's pools.
pub async fn notifications(
    State(st): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<NotificationsQuery>,
) -> ApiResult {
    let items = st.hub.notifications(&who, q.after.as_deref()).await?;
    let alliance = st.hub.config.alliance.id.clone();
    Ok(Json(json!({
        "items": items.iter().map(|n| notification_json(&alliance, n)).collect::<Vec<_>>(),
        "last": items.last().map(|n| n.notification_id.clone()),
    })))
}

/// `POST /api/v1/exams/{id}/report/submit`: a junior's report goes to a senior for countersign.
pub async fn submit_for_review(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ReportExam>,
    Path(id): Path<String>,
    body: Option<Json<ReportBody>>,
) -> ApiResult {
    let input = body.map(|Json(b)| b.into_input());
    let exam = st.hub.submit_for_review(&who, &exam_id(id)?, input).await?;
    Ok(Json(exam_json(&st, &exam)))
}

pub async fn exam(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let detail = st.hub.exam_detail(&who, &exam_id(id)?).await?;
    let (exam, instances, draft) = (detail.exam, detail.instances, detail.draft);
    let mut v = exam_json(&st, &exam);
    v["instances"] = instances
        .iter()
        .map(|i| {
            let base = format!(
                "/dicomweb/studies/{}/series/{}/instances/{}",
                i.study_uid, i.series_uid, i.sop_instance_uid
            );
            json!({
                "series_instance_uid": i.series_uid.as_str(),
                "sop_instance_uid": i.sop_instance_uid.as_str(),
                "instance_number": i.instance_number,
                "frames": i.number_of_frames.unwrap_or(1),
                "retrieve_url": base,
                "rendered_url": format!("{base}/rendered"),
            })
        })
        .collect();
    v["draft"] = draft.as_ref().map(draft_json).unwrap_or(Value::Null);
    Ok(Json(v))
}

pub async fn claim(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let exam = st.hub.claim(&who, &exam_id(id)?).await?;
    Ok(Json(exam_json(&st, &exam)))
}

pub async fn release(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    st.hub.release(&who, &exam_id(id)?).await?;
    Ok(Json(json!({ "released": true })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// Legacy: fills the template's `findings` section (else its first).
    #[serde(default)]
    findings: Option<String>,
    /// Legacy: fills the template's `impression` section (else its last).
    #[serde(default)]
    impression: Option<String>,
    /// Text per section key of the exam's template.
    #[serde(default)]
    sections: BTreeMap<String, String>,
}

impl ReportBody {
    fn into_input(self) -> ReportInput {
        ReportInput {
            findings: self.findings,
            impression: self.impression,
            sections: self.sections,
        }
    }
}

/// `POST /api/v1/reports/{id}/amend`: sections (and/or the legacy fields) over the amended version's,
/// and the reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmendBody {
    #[serde(default)]
    findings: Option<String>,
    #[serde(default)]
    impression: Option<String>,
    #[serde(default)]
    sections: BTreeMap<String, String>,
    #[serde(default)]
    reason: String,
    /// Unlocks the reader's sealed key for this signature (never logged, never stored).
    #[serde(default)]
    passphrase: Option<Passphrase>,
}

/// `POST /api/v1/reports/{id}/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[serde(default)]
    reason: String,
    /// Unlocks the reader's sealed key for this signature (never logged, never stored).
    #[serde(default)]
    passphrase: Option<Passphrase>,
}

/// `GET /api/v1/exams/{id}/report/template`: the sections the exam's report is written in.
pub async fn report_template(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let t = st.hub.exam_template(&who, &exam_id(id)?).await?;
    Ok(Json(json!({
        "id": t.id,
        "kind": t.kind,
        "modality": t.modality,
        "sections": t.sections.iter().map(|s| json!({
            "key": s.key,
            "label_zh": s.label_zh,
            "label_en": s.label_en,
            "required": s.required,
        })).collect::<Vec<_>>(),
    })))
}

/// `POST /api/v1/reports/{id}/amend`: a new signed version; answers its signed document.
pub async fn amend(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ReportExam>,
    Path(id): Path<String>,
    Json(body): Json<AmendBody>,
) -> ApiResult {
    let doc = st
        .hub
        .amend_report(
            &who,
            &report_id(id)?,
            ReportInput {
                findings: body.findings,
                impression: body.impression,
                sections: body.sections,
            },
            &body.reason,
            body.passphrase.as_ref(),
        )
        .await?;
    Ok(Json(serde_json::to_value(doc).unwrap_or(Value::Null)))
}

/// `POST /api/v1/reports/{id}/revoke`: a signed revocation (作废); answers the revocation.
pub async fn revoke(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ReportExam>,
    Path(id): Path<String>,
    Json(body): Json<RevokeBody>,
) -> ApiResult {
    let r = st
        .hub
        .revoke_report(
            &who,
            &report_id(id)?,
            &body.reason,
            body.passphrase.as_ref(),
        )
        .await?;
    Ok(Json(revocation_json(&r)))
}

pub async fn get_draft(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let draft = st.hub.draft(&who, &exam_id(id)?).await?;
    Ok(Json(draft.as_ref().map(draft_json).unwrap_or(Value::Null)))
}

pub async fn save_draft(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ReportExam>,
    Path(id): Path<String>,
    Json(body): Json<ReportBody>,
) -> ApiResult {
    let draft = st
        .hub
        .save_draft(&who, &exam_id(id)?, body.into_input())
        .await?;
    Ok(Json(draft_json(&draft)))
}

/// The body of `POST /api/v1/exams/{id}/report/sign`: the text (else the draft's) and the passphrase
/// that unlocks the reader's sealed key for this signature (never logged, never stored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignReportBody {
    findings: Option<String>,
    impression: Option<String>,
    /// Text per section key of the exam's template.
    #[serde(default)]
    sections: BTreeMap<String, String>,
    passphrase: Option<Passphrase>,
}

pub async fn sign(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ReportExam>,
    Path(id): Path<String>,
    body: Option<Json<SignReportBody>>,
) -> ApiResult {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    // No text: the draft is signed.
    let input = (body.findings.is_some() || body.impression.is_some() || !body.sections.is_empty())
        .then_some(ReportInput {
            findings: body.findings,
            impression: body.impression,
            sections: body.sections,
        });
    let doc = st
        .hub
        .sign_with_passphrase(&who, &exam_id(id)?, input, body.passphrase.as_ref())
        .await?;
    Ok(Json(serde_json::to_value(doc).unwrap_or(Value::Null)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    #[serde(default)]
    urgent: bool,
    urgent_reason: Option<String>,
}

pub async fn complete_study(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(study): Path<String>,
    body: Option<Json<CompleteBody>>,
) -> ApiResult {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let outcome = st
        .hub
        .complete_study(
            &who,
            &study_uid(study)?,
            body.urgent,
            body.urgent_reason.as_deref(),
        )
        .await?;
    Ok(Json(route_json(&outcome)))
}

/// A routing outcome as the uploader sees it.
pub(crate) fn route_json(outcome: &RouteOutcome) -> Value {
    match outcome {
        RouteOutcome::Routed {
            exam_id,
            explanation,
        } => json!({ "state": "routed", "exam_id": exam_id.as_str(), "explanation": explanation }),
        RouteOutcome::AlreadyRouted { exam_id } => {
            json!({ "state": "routed", "exam_id": exam_id.as_str() })
        }
        RouteOutcome::Unroutable { reason } => json!({ "state": "unroutable", "reason": reason }),
        RouteOutcome::NotReady => json!({ "state": "receiving" }),
    }
}

/// What an uploader watches: the study's state, its exam, and the report once signed.
pub async fn study_status(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(study): Path<String>,
) -> ApiResult {
    let uid = study_uid(study)?;
    let status = st.hub.study_status(&who, &uid).await?;
    let (study, exam) = (&status.study, &status.exam);
    Ok(Json(json!({
        "study_instance_uid": uid.as_str(),
        "state": study.state.as_str(),
        "urgent": study.urgent,
        "instances": status.instance_count,
        "last_received_at": format_time(study.last_received_at.0),
        "exam": exam.as_ref().map(|e| json!({ "exam_id": e.exam_id.as_str(), "state": e.state.as_str(), "priority": e.priority.as_str(), "due_at": format_time(e.due_at.0) })),
        "report_id": status.report_id.as_ref().map(|r| r.as_str()),
    })))
}

#[derive(Debug, Deserialize)]
pub struct ResultsQuery {
    patient_id: String,
    #[serde(default)]
    issuer: String,
    purpose: Option<String>,
}

pub async fn results(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::LookupResults>,
    Query(q): Query<ResultsQuery>,
) -> ApiResult {
    let purpose = q.purpose.as_deref().unwrap_or("unspecified");
    let views = st
        .hub
        .lookup_results(&who, &q.issuer, &q.patient_id, purpose)
        .await?;
    let mut items: Vec<Value> = views
        .results
        .iter()
        .map(|v| {
            let r = &v.recognition;
            json!({
                "report_id": v.report.report_id.as_str(),
                "exam_id": v.exam.exam_id.as_str(),
                "kind": v.exam.kind.as_str(),
                // The latest version only; `status` final | amended | revoked, the chain of versions.
                "status": v.lifecycle.status(),
                "version": v.report.version,
                "lifecycle": v.lifecycle.to_json(),
                "template": v.report.template,
                "sections": sections_value(&v.report),
                "modality": v.exam.modality,
                "study_instance_uid": v.exam.study_uid.as_str(),
                "study_description": v.exam.study_description,
                "site_id": v.exam.site.as_str(),
                "site_name": v.site_name,
                "performed_at": format_time(v.performed_at.0),
                "signed_at": v.report.signed_at.map(|t| format_time(t.0)),
                "signed_by": v.report.author.as_str(),
                "signature_valid": v.signature_valid,
                "patient": {
                    "issuer": v.exam.issuer_of_patient_id,
                    "patient_id_masked": mask_identifier(&v.exam.patient_id),
                    "name_masked": v.exam.patient_name.as_deref().map(mask_name),
                },
                // Result data and the reader's conclusion are kept apart: recognition covers the former.
                "findings": v.report.findings,
                "impression": v.report.impression,
                "recognition": {
                    "recognised": r.recognised,
                    "mark": r.mark,
                    "scope": r.scope,
                    "valid_until": r.valid_until.map(|t| format_time(t.0)),
                    "reasons": r.reasons,
                },
                "links": {
                    "report": format!("/api/v1/reports/{}", v.report.report_id),
                    "verify": format!("/api/v1/reports/{}/verify", v.report.report_id),
                    "study": format!("/dicomweb/studies/{}", v.exam.study_uid),
                    // ECG: the traces and the paper rendering.
                    "ecg": (v.exam.kind == yilian_domain::ExamKind::Ecg)
                        .then(|| format!("/api/v1/exams/{}/ecg", v.exam.exam_id)),
                },
            })
        })
        .collect();
    items.extend(views.lab.iter().map(lab_result_json));
    let mut body = json!({ "items": items, "unattributed": views.unattributed });
    if views.unattributed > 0 {
        body["warning"] = json!(format!(
            "该患者有 {n} 个院内号同时关联到其他患者，这些号码下的结果未列出。 {n} of this patient's local IDs also name someone else: results filed only under them are not listed.",
            n = views.unattributed
        ));
    }
    Ok(Json(body))
}

fn recognition_json(r: &yilian_policy::RecognitionDecision) -> Value {
    json!({
        "recognised": r.recognised,
        "mark": r.mark,
        "scope": r.scope,
        "valid_until": r.valid_until.map(|t| format_time(t.0)),
        "reasons": r.reasons,
    })
}

/// A published lab report in the look-up: its results as values, each with its recognition (the full
/// resources are in the FHIR API, linked).
fn lab_result_json(v: &yilian_app::lab_fhir::LabResultView) -> Value {
    let r = &v.record;
    let p = &r.panel;
    let results: Vec<Value> = p
        .results
        .iter()
        .zip(&v.recognition.results)
        .enumerate()
        .map(|(i, (res, rec))| {
            let (value, unit) = match &res.value {
                LabValue::Numeric(q) => (
                    Some(format!(
                        "{}{}",
                        q.comparator.map(|c| c.as_str()).unwrap_or(""),
                        q.decimal
                    )),
                    q.unit_code().map(str::to_string),
                ),
                LabValue::Coded(c) => (Some(c.label().to_string()), None),
                LabValue::Text(t) => (Some(t.clone()), None),
                LabValue::Absent => (None, None),
            };
            json!({
                "code": res.code.code,
                "display": res.code.display,
                "loinc": res.loinc,
                "value": value,
                "unit": unit,
                "reference_range": res.reference_range.as_ref().and_then(|rr| rr.text.clone()),
                "flags": res.abnormal_flags.iter().map(|f| f.code()).collect::<Vec<_>>(),
                "status": res.status.as_str(),
                "recognition": recognition_json(&rec.decision),
                "fhir": format!("/fhir/r4/Observation/{}-{}", r.panel_id, i + 1),
            })
        })
        .collect();
    json!({
        "kind": "lab",
        "panel_id": r.panel_id.as_str(),
        "service": { "code": p.service.code, "display": p.service.display, "loinc": r.service_loinc },
        "status": p.status.as_str(),
        "state": r.state.as_str(),
        "performing_lab": p.performing_lab,
        "site_name": v.site_name,
        "collected_at": p.collected_at.map(|t| t.to_fhir()),
        "reported_at": p.reported_at.map(|t| t.to_fhir()),
        "patient": {
            "issuer": r.patient.issuer,
            "patient_id_masked": mask_identifier(&r.patient.id),
            "name_masked": p.patient.name.as_deref().map(mask_name),
        },
        "results": results,
        "recognition": recognition_json(&v.recognition.report),
        "links": { "fhir": format!("/fhir/r4/DiagnosticReport/{}", r.panel_id) },
    })
}

pub async fn report(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let (doc, lifecycle) = st.hub.signed_report(&who, &report_id(id)?).await?;
    // `report` and `signature` as `yilian verify` reads them; `lifecycle` beside them (superseded
    // by, the chain, revoked) is not signed and verifiers ignore it.
    let mut v = serde_json::to_value(doc).unwrap_or(Value::Null);
    v["lifecycle"] = lifecycle.to_json();
    Ok(Json(v))
}

pub async fn verify(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let v = st.hub.verify_report(&who, &report_id(id)?).await?;
    Ok(Json(json!({
        "report_id": v.report_id.as_str(),
        "valid": v.valid,
        "latest": v.latest,
        "status": v.lifecycle.status(),
        "superseded_by": v.lifecycle.to_json()["superseded_by"],
        "revoked": v.lifecycle.revocation.as_ref().map(revocation_json),
        "lifecycle": v.lifecycle.to_json(),
        "checks": v.checks.iter().map(|c| json!({ "name": c.name, "ok": c.ok, "detail": c.detail })).collect::<Vec<_>>(),
    })))
}

/// `POST /api/v1/admin/routing/reload`: re-reads the routing rules from the configuration file. 200
/// with the rule names now in force, or 422 with the validation error (the old rules stay).
pub async fn reload_routing(State(st): State<AppState>, Caller(who): Caller) -> ApiResult {
    match st.hub.admin_reload_routing(&who).await? {
        Ok(rules) => Ok(Json(json!({ "reloaded": true, "rules": rules }))),
        Err(message) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            message,
        )),
    }
}

pub async fn keys(State(st): State<AppState>, Caller(who): Caller) -> ApiResult {
    let keys = st.hub.public_keys(&who).await?;
    Ok(Json(json!({ "keys": keys })))
}
