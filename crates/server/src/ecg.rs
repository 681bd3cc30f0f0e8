//! ECG endpoints: the upload of HL7 aECG / SCP-ECG / DICOM ECG files, and what a reader opens for an
//! ECG exam (records with the device's and the hub's measurements, the prior, the paper rendering).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use yilian_app::ecg::{EcgItem, EcgRenderRequest, EcgUploadError};
use yilian_domain::SopInstanceUid;
use yilian_formats::dicom_json::FailureReason;
use yilian_render::ecg::{Lang, PaperOptions};
use yilian_signing::format_time;

use crate::AppState;
use crate::api::{exam_id, not_found_id, route_json};
use crate::auth::Caller;
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize)]
pub struct UploadQuery {
    /// The site's reason to read this ECG first (e.g. 胸痛 / chest pain).
    pub urgent_reason: Option<String>,
}

/// `POST /api/v1/ecg`: the body is the file itself. 201 when stored, 200 when the same file was
/// stored before, 422 when it is not a usable ECG (with the reason).
pub async fn upload(
    State(st): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<UploadQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unreadable_ecg",
            "the request body is empty; send the ECG file as the body",
        ));
    }
    let outcome = st
        .hub
        .upload_ecg(&who, body, q.urgent_reason.as_deref())
        .await?;
    match outcome {
        Ok(u) => {
            let status = if u.stored.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((
                status,
                Json(json!({
                    "format": u.format.as_str(),
                    "duplicate": u.stored.duplicate,
                    "study_instance_uid": u.stored.study_uid,
                    "series_instance_uid": u.stored.series_uid,
                    "sop_instance_uid": u.stored.sop_instance_uid,
                    "sop_class_uid": u.stored.sop_class_uid,
                    "route": route_json(&u.route),
                })),
            )
                .into_response())
        }
        Err(EcgUploadError::Unreadable(m)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unreadable_ecg",
            m,
        )),
        Err(EcgUploadError::Refused(f)) => {
            let (status, code) = match f.reason {
                FailureReason::DuplicateConflict => (StatusCode::CONFLICT, "duplicate_conflict"),
                FailureReason::NotAuthorized => (StatusCode::CONFLICT, "study_of_other_site"),
                FailureReason::OutOfResources => {
                    (StatusCode::SERVICE_UNAVAILABLE, "out_of_resources")
                }
                FailureReason::CannotUnderstand | FailureReason::StudyMismatch => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "unreadable_ecg")
                }
            };
            Err(ApiError::new(status, code, f.message))
        }
    }
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn item_json(i: &EcgItem) -> Value {
    let r = &i.row;
    let summary = parse_json(&r.summary);
    json!({
        "sop_instance_uid": r.sop_instance_uid.as_str(),
        "study_instance_uid": r.study_uid.as_str(),
        "exam_id": i.exam_id.as_ref().map(|e| e.as_str()),
        "site_id": r.site.as_str(),
        "site_name": i.site_name,
        "acquired_at": r.acquired_at,
        "received_at": format_time(r.received_at.0),
        "source_format": r.source_format,
        "sample_rate_hz": r.sample_rate_hz,
        "samples_per_lead": r.samples_per_lead,
        "duration_s": summary["duration_s"],
        "leads": r.leads.split(',').filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        "alerts": parse_json(&r.alerts),
        "device": summary["device"],
        "device_measurements": summary["device_measurements"],
        "interpretation": summary["interpretation"],
        "hub_measurements": summary["hub"],
    })
}

/// `GET /api/v1/exams/{id}/ecg`.
pub async fn view(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = st.hub.ecg_view(&who, &exam_id(id)?).await?;
    Ok(Json(json!({
        "exam_id": v.exam.exam_id.as_str(),
        "records": v.records.iter().map(item_json).collect::<Vec<_>>(),
        "prior": v.prior.as_ref().map(item_json),
    })))
}

#[derive(Debug, Default, Deserialize)]
pub struct RenderQuery {
    /// `svg` or `png`; otherwise the Accept header decides (SVG by default).
    pub format: Option<String>,
    /// mm/mV: 5, 10 or 20.
    pub gain: Option<f64>,
    /// mm/s: 25 or 50.
    pub speed: Option<f64>,
    /// `zh-CN` (default) or `en`.
    pub lang: Option<String>,
    /// `true`: the patient's prior ECG under the current one.
    pub prior: Option<bool>,
    /// One ECG instance of the exam; the first when absent.
    pub instance: Option<String>,
}

/// `GET /api/v1/exams/{id}/ecg/rendered`.
pub async fn rendered(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let png = match q.format.as_deref() {
        Some("png") => true,
        Some("svg") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format {other:?} is not offered; use svg or png"
            )));
        }
        None => accept.contains("image/png") && !accept.contains("image/svg+xml"),
    };
    let paper = PaperOptions::new(q.gain.unwrap_or(10.0), q.speed.unwrap_or(25.0))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let lang = match q.lang.as_deref() {
        None | Some("zh-CN") | Some("zh") => Lang::ZhCn,
        Some("en") => Lang::En,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "lang {other:?} is not offered; use zh-CN or en"
            )));
        }
    };
    let sop_instance_uid = q
        .instance
        .map(SopInstanceUid::new)
        .transpose()
        .map_err(|_| not_found_id())?;
    let req = EcgRenderRequest {
        sop_instance_uid,
        paper,
        png,
        lang,
        with_prior: q.prior.unwrap_or(false),
    };
    let (bytes, media_type) = st.hub.ecg_rendering(&who, &exam_id(id)?, &req).await?;
    Ok((
        [
            (header::CONTENT_TYPE, media_type),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        bytes,
    )
        .into_response())
}
