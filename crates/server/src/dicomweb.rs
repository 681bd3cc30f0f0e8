//! DICOMweb (PS3.18): STOW-RS store, WADO-RS retrieve (instance, study) and rendered frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use yilian_app::ingest::{Failure, Stored};
use yilian_domain::{SeriesInstanceUid, SopInstanceUid, StudyInstanceUid};
use yilian_formats::dicom_json::{Failed, Referenced, stow_response};
use yilian_render::{OutputFormat, RenderOptions, Window};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

const DICOM_JSON: &str = "application/dicom+json";

fn parse_uid<T>(
    s: &str,
    make: fn(String) -> Result<T, yilian_domain::IdError>,
) -> Result<T, ApiError> {
    // A malformed UID cannot name anything stored: answer as for an unknown one.
    make(s.to_string())
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such object"))
}

/// `boundary` and `type` parameters of a multipart/related Content-Type.
fn multipart_params(content_type: &str) -> Result<(String, Option<String>), ApiError> {
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("multipart/related") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "STOW-RS takes multipart/related; type=\"application/dicom\"",
        ));
    }
    let mut boundary = None;
    let mut kind = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "boundary" => boundary = Some(v),
                "type" => kind = Some(v),
                _ => {}
            }
        }
    }
    let boundary = boundary
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError::bad_request("multipart/related needs a boundary"))?;
    Ok((boundary, kind))
}

pub async fn stow(
    State(st): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    store(st, caller, None, req).await
}

pub async fn stow_to_study(
    State(st): State<AppState>,
    caller: Caller,
    Path(study): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let study = StudyInstanceUid::new(study).map_err(|e| ApiError::bad_request(e.to_string()))?;
    store(st, caller, Some(study), req).await
}

/// STOW-RS. Parts are stored one by one as they stream in; each is durable before the next is read.
/// One bad part fails alone. 200 when all parts are stored, 202 when some failed, 409 when none was.
async fn store(
    st: AppState,
    Caller(who): Caller,
    study: Option<StudyInstanceUid>,
    req: Request,
) -> Result<Response, ApiError> {
    if !yilian_app::allowed(who.role, yilian_app::Action::UploadStudy) {
        return Err(yilian_app::AppError::Forbidden(format!(
            "role {} may not store studies",
            who.role.as_str()
        ))
        .into());
    }
    let limit = st.hub.config.server.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {limit} bytes"),
        )
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (boundary, kind) = multipart_params(&content_type)?;
    if let Some(k) = kind.filter(|k| !k.eq_ignore_ascii_case("application/dicom")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("type={k} is not supported; send Part 10 files as application/dicom"),
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // Count bytes as they arrive so a chunked body over the limit is cut off with 413.
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let mut seen: u64 = 0;
    let stream = req.into_body().into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > limit {
            flag.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other("body limit exceeded"));
        }
        Ok::<Bytes, std::io::Error>(chunk)
    });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let base = st.hub.config.public_url();
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                if over.load(Ordering::SeqCst) {
                    return Err(too_large());
                }
                // Parts before this point are stored and stay stored; say what happened to them.
                if referenced.is_empty() && failed.is_empty() {
                    return Err(ApiError::bad_request(format!(
                        "the multipart body could not be read: {e}"
                    )));
                }
                failed.push(Failure {
                    sop_class_uid: None,
                    sop_instance_uid: None,
                    reason: yilian_formats::dicom_json::FailureReason::CannotUnderstand,
                    message: format!("the rest of the multipart body could not be read: {e}"),
                });
                break;
            }
        };
        let part_type = field.content_type().map(|m| m.essence_str().to_string());
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => {
                if over.load(Ordering::SeqCst) {
                    return Err(too_large());
                }
                failed.push(Failure {
                    sop_class_uid: None,
                    sop_instance_uid: None,
                    reason: yilian_formats::dicom_json::FailureReason::CannotUnderstand,
                    message: format!("the part could not be read: {e}"),
                });
                break;
            }
        };
        if let Some(t) = part_type.filter(|t| !t.eq_ignore_ascii_case("application/dicom")) {
            failed.push(Failure {
                sop_class_uid: None,
                sop_instance_uid: None,
                reason: yilian_formats::dicom_json::FailureReason::CannotUnderstand,
                message: format!("part of type {t} is not application/dicom"),
            });
            continue;
        }
        match st.hub.store_instance(&who, bytes, study.as_ref()).await? {
            Ok(s) => referenced.push(s),
            Err(f) => failed.push(f),
        }
    }
    if referenced.is_empty() && failed.is_empty() {
        return Err(ApiError::bad_request("the request holds no parts"));
    }
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (_, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, false) => StatusCode::CONFLICT,
    };
    let study_url = study
        .as_ref()
        .map(|s| s.to_string())
        .or_else(|| referenced.first().map(|r: &Stored| r.study_uid.clone()));
    let body = stow_response(
        study_url
            .map(|s| format!("{base}/dicomweb/studies/{s}"))
            .as_deref(),
        &referenced
            .iter()
            .map(|r| Referenced {
                sop_class_uid: r.sop_class_uid.clone(),
                sop_instance_uid: r.sop_instance_uid.clone(),
                retrieve_url: format!(
                    "{base}/dicomweb/studies/{}/series/{}/instances/{}",
                    r.study_uid, r.series_uid, r.sop_instance_uid
                ),
            })
            .collect::<Vec<_>>(),
        &failed
            .iter()
            .map(|f| Failed {
                sop_class_uid: f.sop_class_uid.clone(),
                sop_instance_uid: f.sop_instance_uid.clone(),
                reason: f.reason,
                message: f.message.clone(),
            })
            .collect::<Vec<_>>(),
    );
    Ok((
        status,
        [(header::CONTENT_TYPE, DICOM_JSON)],
        body.to_string(),
    )
        .into_response())
}

/// A multipart/related body of Part 10 files, each with its stored transfer syntax.
fn multipart_dicom(parts: Vec<(String, Bytes)>) -> Response {
    let boundary = format!("yilian-{}", ulid::Ulid::new());
    let mut body = Vec::new();
    for (ts, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={ts}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    let mut resp = Response::new(Body::from(body));
    if let Ok(v) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// WADO-RS instance: the original bytes, as stored (no transcoding).
pub async fn retrieve_instance(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series, sop)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (study, series, sop) = (
        parse_uid(&study, StudyInstanceUid::new)?,
        parse_uid(&series, SeriesInstanceUid::new)?,
        parse_uid(&sop, SopInstanceUid::new)?,
    );
    let (inst, bytes) = st
        .hub
        .retrieve_instance(&who, &study, &series, &sop)
        .await?;
    Ok(multipart_dicom(vec![(inst.transfer_syntax_uid, bytes)]))
}

/// WADO-RS study: every instance of the study.
pub async fn retrieve_study(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    let study = parse_uid(&study, StudyInstanceUid::new)?;
    let all = st.hub.retrieve_study(&who, &study).await?;
    Ok(multipart_dicom(
        all.into_iter()
            .map(|(i, b)| (i.transfer_syntax_uid, b))
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct RenderQuery {
    window: Option<String>,
    quality: Option<u8>,
}

fn wants_png(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let png = accept.find("image/png");
    let jpeg = accept.find("image/jpeg");
    match (png, jpeg) {
        (Some(p), Some(j)) => p < j,
        (Some(_), None) => true,
        _ => false,
    }
}

pub async fn rendered(
    State(st): State<AppState>,
    caller: Caller,
    Path((study, series, sop)): Path<(String, String, String)>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    render(st, caller, study, series, sop, 1, q, headers).await
}

pub async fn rendered_frame(
    State(st): State<AppState>,
    caller: Caller,
    Path((study, series, sop, frame)): Path<(String, String, String, u32)>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    render(st, caller, study, series, sop, frame, q, headers).await
}

#[allow(clippy::too_many_arguments)]
async fn render(
    st: AppState,
    Caller(who): Caller,
    study: String,
    series: String,
    sop: String,
    frame: u32,
    q: RenderQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (study, series, sop) = (
        parse_uid(&study, StudyInstanceUid::new)?,
        parse_uid(&series, SeriesInstanceUid::new)?,
        parse_uid(&sop, SopInstanceUid::new)?,
    );
    if frame == 0 {
        return Err(ApiError::bad_request("frame numbers start at 1"));
    }
    let window = q
        .window
        .as_deref()
        .map(Window::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let format = if wants_png(&headers) {
        OutputFormat::Png
    } else {
        OutputFormat::Jpeg
    };
    let opts = RenderOptions {
        frame: frame - 1,
        window,
        format,
        quality: q.quality.unwrap_or(90),
    };
    let image = st
        .hub
        .render_instance(&who, &study, &series, &sop, opts)
        .await?;
    Ok(([(header::CONTENT_TYPE, format.media_type())], image).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parameters() {
        let (b, t) =
            multipart_params("multipart/related; type=\"application/dicom\"; boundary=abc")
                .unwrap();
        assert_eq!(
            (b.as_str(), t.as_deref()),
            ("abc", Some("application/dicom"))
        );
        let (b, t) = multipart_params("Multipart/Related; boundary=\"x y\"").unwrap();
        assert_eq!((b.as_str(), t), ("x y", None));
        assert_eq!(
            multipart_params("application/dicom").unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            multipart_params("multipart/related; type=application/dicom")
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn accept_picks_the_image_format() {
        let mut h = HeaderMap::new();
        assert!(!wants_png(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("image/png"));
        assert!(wants_png(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("image/jpeg, image/png"),
        );
        assert!(!wants_png(&h));
    }
}
