//! DICOMweb search and retrieve (PS3.18): QIDO-RS at every level, WADO-RS study/series/instance
//! retrieval (streamed multipart, as stored), metadata from the catalog, bulk data, frames, and
//! WADO-URI for older viewers. The hub never transcodes: a transfer syntax it does not hold is 406.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use yilian_app::ports::InstanceRecord;
use yilian_domain::{SeriesInstanceUid, SopInstanceUid, StudyInstanceUid};
use yilian_formats::bulk::frame_media_type;
use yilian_formats::query::{Key, Matcher, Query as DicomQuery, QueryLevel, qido_json, qido_keys};
use yilian_render::{OutputFormat, RenderOptions, Viewport, Window};

use crate::AppState;
use crate::auth::{Authorized, Caller, act};
use crate::dicomweb::parse_uid;
use crate::error::ApiError;

const DICOM_JSON: &str = "application/dicom+json";

fn study_uid(s: &str) -> Result<StudyInstanceUid, ApiError> {
    parse_uid(s, StudyInstanceUid::new)
}
fn series_uid(s: &str) -> Result<SeriesInstanceUid, ApiError> {
    parse_uid(s, SeriesInstanceUid::new)
}
fn sop_uid(s: &str) -> Result<SopInstanceUid, ApiError> {
    parse_uid(s, SopInstanceUid::new)
}

fn not_acceptable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", message)
}

// ---------------------------------------------------------------- QIDO-RS

type Params = Query<Vec<(String, String)>>;

async fn qido(
    st: AppState,
    who: yilian_app::Principal,
    level: QueryLevel,
    params: Vec<(String, String)>,
    study: Option<String>,
    series: Option<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let ok = accept.split(',').any(|r| {
            let m = r
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            matches!(
                m.as_str(),
                "application/dicom+json" | "application/json" | "*/*" | "application/*"
            )
        });
        if !ok {
            return Err(not_acceptable(
                "QIDO-RS answers in application/dicom+json only",
            ));
        }
    }
    let mut q =
        DicomQuery::from_qido(level, &params).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(s) = &study {
        study_uid(s)?;
        q.filters.retain(|(k, _)| *k != Key::StudyInstanceUid);
        q.filters
            .push((Key::StudyInstanceUid, Matcher::Single(s.clone())));
    }
    if let Some(s) = &series {
        series_uid(s)?;
        q.filters.retain(|(k, _)| *k != Key::SeriesInstanceUid);
        q.filters
            .push((Key::SeriesInstanceUid, Matcher::Single(s.clone())));
    }
    let result = st.hub.search(&who, &q).await?;
    let keys = qido_keys(&q);
    let base = st.hub.config.public_url();
    let body: Vec<serde_json::Value> = result
        .matches
        .iter()
        .map(|m| {
            let mut j = qido_json(&keys, m);
            let url = match level {
                QueryLevel::Patient => None,
                QueryLevel::Study => Some(format!("{base}/dicomweb/studies/{}", m.study_uid)),
                QueryLevel::Series => Some(format!(
                    "{base}/dicomweb/studies/{}/series/{}",
                    m.study_uid,
                    m.series_uid.as_deref().unwrap_or_default()
                )),
                QueryLevel::Instance => Some(format!(
                    "{base}/dicomweb/studies/{}/series/{}/instances/{}",
                    m.study_uid,
                    m.series_uid.as_deref().unwrap_or_default(),
                    m.sop_instance_uid.as_deref().unwrap_or_default()
                )),
            };
            if let (Some(url), Some(map)) = (url, j.as_object_mut()) {
                map.insert(
                    "00081190".into(),
                    serde_json::json!({ "vr": "UR", "Value": [url] }),
                );
            }
            j
        })
        .collect();
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, DICOM_JSON)],
        serde_json::Value::Array(body).to_string(),
    )
        .into_response();
    let mut warnings = Vec::new();
    if !q.ignored.is_empty() {
        warnings.push(format!(
            "299 yilian \"The following query keys are not supported and were ignored: {}\"",
            q.ignored.join(", ")
        ));
    }
    if result.truncated {
        warnings.push(format!(
            "299 yilian \"The number of results exceeded the maximum of {}; page with limit and offset\"",
            yilian_app::MAX_MATCHES
        ));
    }
    for w in warnings {
        // Header values must be visible ASCII: warnings name query keys, never values.
        let w: String = w
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .collect();
        if let Ok(v) = HeaderValue::from_str(&w) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(resp)
}

pub async fn search_studies(
    State(st): State<AppState>,
    Caller(who): Caller,
    Query(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    qido(st, who, QueryLevel::Study, p, None, None, h).await
}

pub async fn search_all_series(
    State(st): State<AppState>,
    Caller(who): Caller,
    Query(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    qido(st, who, QueryLevel::Series, p, None, None, h).await
}

pub async fn search_study_series(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(study): Path<String>,
    Query(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    qido(st, who, QueryLevel::Series, p, Some(study), None, h).await
}

pub async fn search_all_instances(
    State(st): State<AppState>,
    Caller(who): Caller,
    Query(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    qido(st, who, QueryLevel::Instance, p, None, None, h).await
}

pub async fn search_study_instances(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(study): Path<String>,
    Query(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    qido(st, who, QueryLevel::Instance, p, Some(study), None, h).await
}

pub async fn search_series_instances(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series)): Path<(String, String)>,
    Query(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    qido(
        st,
        who,
        QueryLevel::Instance,
        p,
        Some(study),
        Some(series),
        h,
    )
    .await
}

// ---------------------------------------------------------------- WADO-RS retrieve

/// One media range of an Accept header: type and parameters (lower-cased names).
fn media_ranges(accept: &str) -> Vec<(String, Vec<(String, String)>)> {
    accept
        .split(',')
        .map(|r| {
            let mut it = r.split(';');
            let media = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let params = it
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| {
                    (
                        k.trim().to_ascii_lowercase(),
                        v.trim().trim_matches('"').to_string(),
                    )
                })
                .collect();
            (media, params)
        })
        .filter(|(m, _)| !m.is_empty())
        .collect()
}

/// Checks that the client accepts multipart Part 10 in every stored transfer syntax. No Accept, a
/// wildcard, or `transfer-syntax=*` accept them; a named syntax the hub does not hold is 406.
fn accept_dicom(headers: &HeaderMap, stored: &[&str]) -> Result<(), ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let mut named = Vec::new();
    for (media, params) in media_ranges(accept) {
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let dicom_type = match media.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => {
                param("type").is_none_or(|t| t.eq_ignore_ascii_case("application/dicom"))
            }
            "application/dicom" => true,
            _ => false,
        };
        if !dicom_type {
            continue;
        }
        match param("transfer-syntax") {
            None | Some("*") => return Ok(()),
            Some(ts) if stored.iter().all(|s| *s == ts) => return Ok(()),
            Some(ts) => named.push(ts.to_string()),
        }
    }
    Err(not_acceptable(if named.is_empty() {
        "the hub serves instances as multipart/related; type=\"application/dicom\"".to_string()
    } else {
        format!(
            "the hub serves instances as stored and does not transcode: asked for {}, stored as {}",
            named.join(" or "),
            stored.join(", ")
        )
    }))
}

fn multipart_content_type(boundary: &str, kind: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "multipart/related; type=\"{kind}\"; boundary={boundary}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("multipart/related"))
}

/// A multipart/related response of whole parts held in memory: `(part content type, bytes)`.
fn multipart(kind: &str, parts: Vec<(String, Vec<u8>)>) -> Response {
    let boundary = format!("yilian-{}", ulid::Ulid::new());
    let mut body = Vec::new();
    for (ct, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        multipart_content_type(&boundary, kind),
    );
    resp
}

/// One Part 10 part of a multipart/related body: its header, the instance's chunks as the store
/// yields them, the line end. An instance that fails (missing or damaged blob) ends the body there,
/// without the closing boundary, so the client sees an incomplete response, not a shorter study.
fn dicom_part(
    boundary: &str,
    rec: &InstanceRecord,
    body: Result<yilian_app::ports::BlobStream, yilian_app::AppError>,
) -> futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>> {
    use futures::future::ready;
    use futures::stream::once;
    let sop = rec.sop_instance_uid.clone();
    let failed = move |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, %sop, "retrieve stream failed");
        std::io::Error::other("instance unavailable")
    };
    match body {
        Ok(body) => {
            let head = Bytes::from(format!(
                "--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={}\r\n\r\n",
                rec.transfer_syntax_uid
            ));
            once(ready(Ok(head)))
                .chain(body.map_err(move |e| failed(&e)))
                .chain(once(ready(Ok(Bytes::from_static(b"\r\n")))))
                .boxed()
        }
        Err(e) => once(ready(Err(failed(&e)))).boxed(),
    }
}

/// A multipart/related; type="application/dicom" response whose parts are streamed.
fn dicom_multipart(
    boundary: String,
    parts: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    let end = futures::stream::once(futures::future::ready(Ok::<Bytes, std::io::Error>(
        Bytes::from(format!("--{boundary}--\r\n")),
    )));
    let mut resp = Response::new(Body::from_stream(parts.chain(end)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        multipart_content_type(&boundary, "application/dicom"),
    );
    resp
}

/// Streams the instances as multipart/related Part 10, one after the other, each read from the
/// store as it is sent ([`yilian_app::Hub::instance_stream`]): memory stays bounded whatever the
/// study's size.
fn stream_instances(st: AppState, recs: Vec<InstanceRecord>) -> Response {
    let boundary = format!("yilian-{}", ulid::Ulid::new());
    let b = boundary.clone();
    let parts = futures::stream::iter(recs)
        .then(move |rec| {
            let st = st.clone();
            let b = b.clone();
            async move {
                let body = st.hub.instance_stream(&rec).await;
                dicom_part(&b, &rec, body)
            }
        })
        .flatten();
    dicom_multipart(boundary, parts)
}

pub async fn retrieve_study(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(study): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let study = study_uid(&study)?;
    let recs = st.hub.instances_of(&who, &study, None).await?;
    let ts: Vec<&str> = recs
        .iter()
        .map(|r| r.transfer_syntax_uid.as_str())
        .collect();
    accept_dicom(&headers, &ts)?;
    Ok(stream_instances(st, recs))
}

pub async fn retrieve_series(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (study, series) = (study_uid(&study)?, series_uid(&series)?);
    let recs = st.hub.instances_of(&who, &study, Some(&series)).await?;
    let ts: Vec<&str> = recs
        .iter()
        .map(|r| r.transfer_syntax_uid.as_str())
        .collect();
    accept_dicom(&headers, &ts)?;
    Ok(stream_instances(st, recs))
}

pub async fn retrieve_instance(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series, sop)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (study, series, sop) = (study_uid(&study)?, series_uid(&series)?, sop_uid(&sop)?);
    let (rec, body) = st.hub.open_instance(&who, &study, &series, &sop).await?;
    accept_dicom(&headers, &[rec.transfer_syntax_uid.as_str()])?;
    let boundary = format!("yilian-{}", ulid::Ulid::new());
    let part = dicom_part(&boundary, &rec, Ok(body));
    Ok(dicom_multipart(boundary, part))
}

// ---------------------------------------------------------------- metadata, bulk data, frames

async fn metadata(
    st: AppState,
    who: yilian_app::Principal,
    study: String,
    series: Option<String>,
    sop: Option<String>,
) -> Result<Response, ApiError> {
    let study = study_uid(&study)?;
    let series = series.as_deref().map(series_uid).transpose()?;
    let sop = sop.as_deref().map(sop_uid).transpose()?;
    let docs = st
        .hub
        .metadata(&who, &study, series.as_ref(), sop.as_ref())
        .await?;
    let base = st.hub.config.public_url();
    let mut out = String::from("[");
    for (i, (uid, doc)) in docs.iter().enumerate() {
        let se = doc["0020000E"]["Value"][0].as_str().unwrap_or_default();
        let url = format!("{base}/dicomweb/studies/{study}/series/{se}/instances/{uid}/bulkdata");
        let text = doc.to_string().replace(
            &format!(
                "\"BulkDataURI\":\"{}",
                yilian_formats::dicom::BULK_PLACEHOLDER
            ),
            &format!("\"BulkDataURI\":\"{url}"),
        );
        if i > 0 {
            out.push(',');
        }
        out.push_str(&text);
    }
    out.push(']');
    Ok(([(header::CONTENT_TYPE, DICOM_JSON)], out).into_response())
}

pub async fn metadata_study(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    metadata(st, who, study, None, None).await
}

pub async fn metadata_series(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    metadata(st, who, study, Some(series), None).await
}

pub async fn metadata_instance(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series, sop)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    metadata(st, who, study, Some(series), Some(sop)).await
}

pub async fn bulkdata(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series, sop, path)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let (study, series, sop) = (study_uid(&study)?, series_uid(&series)?, sop_uid(&sop)?);
    let bytes = st.hub.bulkdata(&who, &study, &series, &sop, &path).await?;
    Ok(multipart(
        "application/octet-stream",
        vec![("application/octet-stream".into(), bytes)],
    ))
}

/// `frames/1` or `frames/1,3,5`: multipart of the frames as stored.
pub async fn frames(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series, sop, list)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (study, series, sop) = (study_uid(&study)?, series_uid(&series)?, sop_uid(&sop)?);
    let numbers: Vec<u32> = list
        .split(',')
        .map(|f| f.trim().parse::<u32>().ok().filter(|n| *n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| ApiError::bad_request("frame numbers are positive integers, e.g. 1,2,3"))?;
    let (ts, frames) = st.hub.frames(&who, &study, &series, &sop, numbers).await?;
    let compressed = frames.first().is_some_and(|(_, c)| *c);
    let kind = if compressed {
        frame_media_type(&ts)
    } else {
        "application/octet-stream"
    };
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let ok = media_ranges(accept).iter().any(|(m, params)| {
            let t = params
                .iter()
                .find(|(n, _)| n == "type")
                .map(|(_, v)| v.to_ascii_lowercase());
            m == "*/*"
                || m == "multipart/*"
                || (m == "multipart/related"
                    && t.as_deref().is_none_or(|t| t == kind || t == "*/*"))
                || m == kind
        });
        if !ok {
            return Err(not_acceptable(format!(
                "the frames are stored as {kind} and the hub does not transcode"
            )));
        }
    }
    let extra = if compressed {
        format!("; transfer-syntax={ts}")
    } else {
        String::new()
    };
    Ok(multipart(
        kind,
        frames
            .into_iter()
            .map(|(bytes, _)| (format!("{kind}{extra}"), bytes))
            .collect(),
    ))
}

// ---------------------------------------------------------------- WADO-URI

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WadoUri {
    request_type: Option<String>,
    #[serde(rename = "studyUID")]
    study_uid: Option<String>,
    #[serde(rename = "seriesUID")]
    series_uid: Option<String>,
    #[serde(rename = "objectUID")]
    object_uid: Option<String>,
    content_type: Option<String>,
    transfer_syntax: Option<String>,
    frame_number: Option<u32>,
    window_center: Option<f64>,
    window_width: Option<f64>,
    rows: Option<u32>,
    columns: Option<u32>,
    image_quality: Option<u8>,
}

/// WADO-URI (PS3.18 §9): one object by UIDs, as the file (`contentType=application/dicom`) or a
/// rendered image (default `image/jpeg`).
pub async fn wado_uri(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ViewStudy>,
    Query(q): Query<WadoUri>,
) -> Result<Response, ApiError> {
    if q.request_type.as_deref() != Some("WADO") {
        return Err(ApiError::bad_request("requestType=WADO is required"));
    }
    let (Some(study), Some(series), Some(sop)) = (&q.study_uid, &q.series_uid, &q.object_uid)
    else {
        return Err(ApiError::bad_request(
            "studyUID, seriesUID and objectUID are required",
        ));
    };
    let (study, series, sop) = (study_uid(study)?, series_uid(series)?, sop_uid(sop)?);
    let content_type = q.content_type.as_deref().unwrap_or("image/jpeg");
    let first = content_type.split(',').next().unwrap_or("").trim();
    match first {
        "application/dicom" => {
            let (rec, body) = st.hub.open_instance(&who, &study, &series, &sop).await?;
            if let Some(ts) = &q.transfer_syntax
                && ts != &rec.transfer_syntax_uid
            {
                return Err(not_acceptable(format!(
                    "stored as {}; the hub does not transcode",
                    rec.transfer_syntax_uid
                )));
            }
            let body = body.map_err(|e| {
                tracing::error!(error = %e, "WADO-URI stream failed");
                std::io::Error::other("instance unavailable")
            });
            Ok((
                [(header::CONTENT_TYPE, "application/dicom")],
                Body::from_stream(body),
            )
                .into_response())
        }
        "image/jpeg" | "image/png" => {
            let format = if first == "image/png" {
                OutputFormat::Png
            } else {
                OutputFormat::Jpeg
            };
            let window = match (q.window_center, q.window_width) {
                (Some(c), Some(w)) => Some(
                    Window::parse(&format!("{c},{w}"))
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                ),
                (None, None) => None,
                _ => {
                    return Err(ApiError::bad_request(
                        "windowCenter and windowWidth go together",
                    ));
                }
            };
            let viewport = match (q.columns, q.rows) {
                (None, None) => None,
                (c, r) => {
                    let (w, h) = (c.or(r).unwrap_or(512), r.or(c).unwrap_or(512));
                    if w == 0 || h == 0 || w > 4096 || h > 4096 {
                        return Err(ApiError::bad_request("rows and columns are 1 to 4096"));
                    }
                    Some(Viewport::fit(w, h))
                }
            };
            let opts = RenderOptions {
                frame: q.frame_number.unwrap_or(1).saturating_sub(1),
                window,
                viewport,
                format,
                quality: q.image_quality.unwrap_or(90).clamp(1, 100),
            };
            let image = st
                .hub
                .render_instance(&who, &study, &series, &sop, opts)
                .await?;
            Ok(([(header::CONTENT_TYPE, format.media_type())], image).into_response())
        }
        other => Err(not_acceptable(format!(
            "contentType {other:?} is not served: use application/dicom, image/jpeg or image/png"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn transfer_syntax_negotiation_never_transcodes() {
        let stored = ["1.2.840.10008.1.2.1"];
        assert!(accept_dicom(&HeaderMap::new(), &stored).is_ok());
        assert!(accept_dicom(&accept("*/*"), &stored).is_ok());
        assert!(
            accept_dicom(
                &accept("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
                &stored
            )
            .is_ok()
        );
        assert!(
            accept_dicom(
                &accept("multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1"),
                &stored
            )
            .is_ok()
        );
        let e = accept_dicom(
            &accept("multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50"),
            &stored,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
        assert!(e.message.contains("does not transcode"), "{}", e.message);
        // A second acceptable range rescues the request.
        assert!(
            accept_dicom(
                &accept("multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50, multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
                &stored
            )
            .is_ok()
        );
        assert_eq!(
            accept_dicom(&accept("image/png"), &stored)
                .unwrap_err()
                .status,
            StatusCode::NOT_ACCEPTABLE
        );
    }
}
