//! Lab endpoints: HL7 v2 ORU^R01 and FHIR R4 Bundles in over HTTP (the same use case as MLLP), and a
//! stored panel with its results and correction history.
//!
//! `POST /api/v1/lab/hl7v2` answers with the HL7 acknowledgment as the body (`x-application/hl7-v2+er7`):
//! 200 with `AA` when stored (or stored before, same bytes), the hub's ids in `X-Yilian-Lab-Message`
//! and `X-Yilian-Lab-Panels` (comma separated); 400 `AR` when the body is not an ORU^R01
//! the hub reads (not HL7, wrong type or version, bad charset), 422 `AE` when its content is wrong,
//! 403 `AR` when the sending facility (MSH-4) is not a lab sender of the caller's site, 409 `AE` when
//! its control ID was used before for other bytes, 503 `AE` when storage failed (retry). 413 (JSON)
//! when the body is larger than `lab.max_message_bytes`.
//!
//! `POST /api/v1/lab/fhir` answers 201 with the panel ids (200 when the same Bundle was stored before)
//! or a FHIR `OperationOutcome`: 400 unreadable, 403 sender refused, 409 id reused, 413 too large,
//! 415 not JSON, 503 storage failed.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use yilian_app::lab::{LabFormat, LabIngest, LabIngestError, LabPanelView};
use yilian_domain::lab::{LabResult, LabTime, LabValue};
use yilian_domain::{LabPanelId, mask_identifier, mask_name};
use yilian_formats::hl7v2::{AckCode, Charset, MessageHeader};
use yilian_signing::format_time;

use crate::AppState;
use crate::api::not_found_id;
use crate::auth::Caller;
use crate::error::ApiError;

/// The media type of HL7 v2 ER7 text (HL7's registration; `application/hl7-v2` is also accepted).
pub const HL7_V2_ER7: &str = "x-application/hl7-v2+er7";

fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

/// The body, refused past `limit` bytes (by its Content-Length first, else while reading).
async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, String> {
    let too_large = || {
        format!(
            "the message is larger than the {limit} bytes the hub accepts (lab.max_message_bytes)"
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

fn charset_param(raw: &[u8]) -> &'static str {
    match MessageHeader::sniff(raw).and_then(|h| h.charset) {
        Some(Charset::Gb18030) => "gb18030",
        Some(Charset::Latin1) => "iso-8859-1",
        Some(Charset::Big5) => "big5",
        _ => "utf-8",
    }
}

/// `POST /api/v1/lab/hl7v2`.
pub async fn hl7v2(
    State(st): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // A role that may not send lab results gets the ingest's refusal below (403 with an AR ACK),
    // whatever it sent: the media type is checked only for those who may send.
    let may_send = yilian_app::allowed(who.role, yilian_app::Action::SendLab);
    match media_type(&headers).as_deref() {
        None | Some(HL7_V2_ER7 | "application/hl7-v2" | "text/plain") => {}
        Some(_) if !may_send => {}
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "{other} is not HL7 v2: send one ER7 message as {HL7_V2_ER7} or text/plain"
                ),
            ));
        }
    }
    let limit = st.hub.config.lab.max_message_bytes;
    let raw = read_limited(&headers, body, limit)
        .await
        .map_err(|m| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m))?;
    let outcome = st.hub.ingest_lab(&who, raw.clone(), LabFormat::Hl7v2).await;
    let (code, ack) = st.hub.lab_ack(&raw, &outcome);
    let status = match &outcome {
        Ok(_) => StatusCode::OK,
        Err(LabIngestError::Hl7(_)) if code == AckCode::Reject => StatusCode::BAD_REQUEST,
        Err(LabIngestError::Hl7(_) | LabIngestError::Fhir(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        Err(LabIngestError::Forbidden(_) | LabIngestError::SenderRefused(_)) => {
            StatusCode::FORBIDDEN
        }
        Err(LabIngestError::Conflict(_)) => StatusCode::CONFLICT,
        Err(LabIngestError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        Err(LabIngestError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let content_type = format!("{HL7_V2_ER7}; charset={}", charset_param(&raw));
    let mut resp = (status, ack).into_response();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Ok(done) = &outcome {
        let panels = done
            .panels
            .iter()
            .map(|p| p.panel_id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        for (name, value) in [
            ("x-yilian-lab-message", done.message_id.as_str()),
            ("x-yilian-lab-panels", panels.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                resp.headers_mut().insert(name, v);
            }
        }
    }
    Ok(resp)
}

/// A FHIR `OperationOutcome` with one error issue.
fn outcome(status: StatusCode, code: &str, diagnostics: String, path: Option<&str>) -> Response {
    let mut issue = json!({ "severity": "error", "code": code, "diagnostics": diagnostics });
    if let Some(p) = path {
        issue["expression"] = json!([p]);
    }
    let body = json!({ "resourceType": "OperationOutcome", "issue": [issue] });
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json"),
    );
    resp
}

fn ingest_json(done: &LabIngest) -> Value {
    json!({
        "message_id": done.message_id,
        "control_id": done.control_id,
        "sending_facility": done.sending_facility,
        "duplicate": done.duplicate,
        "panels": done.panels.iter().map(|p| json!({
            "panel_id": p.panel_id.as_str(),
            "url": format!("/api/v1/lab/panels/{}", p.panel_id),
            "supersedes": p.supersedes.as_ref().map(|s| s.as_str()),
            "unmatched_correction": p.unmatched_correction,
        })).collect::<Vec<_>>(),
    })
}

/// `POST /api/v1/lab/fhir`.
pub async fn fhir(
    State(st): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match media_type(&headers).as_deref() {
        None | Some("application/fhir+json" | "application/json") => {}
        Some(other) => {
            return outcome(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                format!("{other} is not FHIR JSON: send application/fhir+json"),
                None,
            );
        }
    }
    let limit = st.hub.config.lab.max_message_bytes;
    let raw = match read_limited(&headers, body, limit).await {
        Ok(b) => b,
        Err(m) => return outcome(StatusCode::PAYLOAD_TOO_LARGE, "too-costly", m, None),
    };
    match st.hub.ingest_lab(&who, raw, LabFormat::FhirR4).await {
        Ok(done) => {
            let status = if done.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (status, Json(ingest_json(&done))).into_response()
        }
        Err(e) => {
            let (status, code) = match &e {
                LabIngestError::Fhir(_) | LabIngestError::Hl7(_) => {
                    (StatusCode::BAD_REQUEST, "invalid")
                }
                LabIngestError::Forbidden(_) | LabIngestError::SenderRefused(_) => {
                    (StatusCode::FORBIDDEN, "forbidden")
                }
                LabIngestError::Conflict(_) => (StatusCode::CONFLICT, "duplicate"),
                LabIngestError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too-costly"),
                LabIngestError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
            };
            let path = match &e {
                LabIngestError::Fhir(f) => f.path(),
                _ => None,
            };
            outcome(status, code, e.to_string(), path)
        }
    }
}

fn time_json(t: &Option<LabTime>) -> Value {
    t.map(|t| json!(t.to_fhir())).unwrap_or(Value::Null)
}

fn coded(c: &yilian_domain::lab::CodedValue) -> Value {
    json!({ "code": c.code, "display": c.display, "system": c.system })
}

fn result_json(seq: usize, r: &LabResult, mapped: bool) -> Value {
    let value = match &r.value {
        LabValue::Numeric(q) => json!({
            "kind": "numeric",
            "number": q.value,
            "decimal": q.decimal,
            "comparator": q.comparator.map(|c| c.as_str()),
            "unit": q.unit.as_ref().map(coded),
        }),
        LabValue::Coded(c) => json!({ "kind": "coded", "coded": coded(c) }),
        LabValue::Text(t) => json!({ "kind": "text", "text": t }),
        LabValue::Absent => json!({ "kind": "absent" }),
    };
    json!({
        "seq": seq,
        "set_id": r.set_id,
        "code": coded(&r.code),
        "other_codes": r.other_codes.iter().map(coded).collect::<Vec<_>>(),
        "loinc": r.loinc,
        "loinc_source": r.loinc.as_ref().map(|_| if mapped { "mapped" } else { "sent" }),
        "value": value,
        "reference_range": r.reference_range.as_ref().map(|rr| json!({
            "low": rr.low, "high": rr.high, "text": rr.text,
        })),
        "flags": r.abnormal_flags.iter().map(|f| f.code()).collect::<Vec<_>>(),
        "lab_flagged_critical": r.lab_flagged_critical(),
        "status": r.status.as_str(),
        "observed_at": time_json(&r.observed_at),
    })
}

pub(crate) fn panel_json(st: &AppState, v: &LabPanelView) -> Value {
    let r = &v.record;
    let p = &r.panel;
    json!({
        "panel_id": r.panel_id.as_str(),
        "message": {
            "message_id": r.message_id,
            "control_id": r.control_id,
            "source": p.source.as_str(),
            "version": p.version,
            "sending_facility": r.sending_facility,
            "received_by": r.received_by.as_str(),
            "sha256": r.raw_sha256,
        },
        "site_id": r.site.as_str(),
        "site_name": st.hub.config.site(r.site.as_str()).map(|s| s.name.clone()),
        "performing_lab": p.performing_lab,
        "ordering_site": p.ordering_site,
        "patient": {
            "issuer": r.patient.issuer,
            "patient_id_masked": mask_identifier(&r.patient.id),
            "name_masked": p.patient.name.as_deref().map(mask_name),
            "sex": p.patient.sex.map(|s| s.as_str()),
        },
        "placer_order_number": p.placer_order_number,
        "filler_order_number": p.filler_order_number,
        "service": {
            "code": p.service.code,
            "display": p.service.display,
            "system": p.service.system,
            "loinc": r.service_loinc,
        },
        "specimen": p.specimen.as_ref().map(coded),
        "collected_at": time_json(&p.collected_at),
        "specimen_received_at": time_json(&p.received_at),
        "reported_at": time_json(&p.reported_at),
        "received_at": format_time(r.received_at.0),
        "status": p.status.as_str(),
        "state": r.state.as_str(),
        "published": r.state.is_published(),
        "review": {
            "pool_id": r.review_pool.as_ref().map(|p| p.as_str()),
            "decision": r.decision,
            "auto_release_rule": r.release_rule,
            "released_at": r.released_at.map(|t| format_time(t.0)),
            "released_by": r.released_by.as_ref().map(|u| u.as_str()),
        },
        "critical_count": r.critical_count,
        "supersedes": r.supersedes.as_ref().map(|s| s.as_str()),
        "superseded_by": r.superseded_by.as_ref().map(|s| s.as_str()),
        "current": r.superseded_by.is_none(),
        "history": v.history.iter().map(|h| json!({
            "panel_id": h.panel_id.as_str(),
            "status": h.status.as_str(),
            "control_id": h.control_id,
            "received_at": format_time(h.received_at.0),
        })).collect::<Vec<_>>(),
        "notes": p.notes,
        "results": p.results.iter().enumerate().map(|(i, res)| {
            result_json(i + 1, res, r.loinc_mapped.get(i).copied().unwrap_or(false))
        }).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/lab/panels/{id}`.
pub async fn panel(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = LabPanelId::new(id).map_err(|_| not_found_id())?;
    let view = st.hub.lab_panel_view(&who, &id).await?;
    Ok(Json(panel_json(&st, &view)))
}
