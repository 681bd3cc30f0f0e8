//! DICOMweb (PS3.18): STOW-RS store, WADO-RS retrieve (instance, study), rendered frames and
//! thumbnails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use yilian_app::ingest::{Failure, Stored};
use yilian_app::rendering::ThumbnailOf;
use yilian_domain::{SeriesInstanceUid, SopInstanceUid, StudyInstanceUid};
use yilian_formats::dicom_json::{Failed, Referenced, stow_response};
use yilian_render::{
    DEFAULT_QUALITY, OutputFormat, RenderOptions, Viewport, Window, parse_quality,
};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

const DICOM_JSON: &str = "application/dicom+json";

pub(crate) fn parse_uid<T>(
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

/// PS3.18 rendering query parameters (§8.3.5.1). Unknown parameters (annotation, charset, …)
/// are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct RenderQuery {
    window: Option<String>,
    viewport: Option<String>,
    quality: Option<String>,
    /// Overrides the Accept header (PS3.18 §8.3.3.1).
    accept: Option<String>,
}

/// Picks PNG or JPEG from an Accept value. Each format takes the q of the most specific range that
/// matches it; the highest q above 0 wins, then the one named first. No Accept means JPEG, the
/// PS3.18 default; an Accept that allows neither is 406.
fn negotiate(accept: Option<&str>) -> Result<OutputFormat, ApiError> {
    let accept = accept.map(str::trim).filter(|a| !a.is_empty());
    let Some(accept) = accept else {
        return Ok(OutputFormat::Jpeg);
    };
    // (media range, q, position)
    let ranges: Vec<(String, f32, usize)> = accept
        .split(',')
        .enumerate()
        .map(|(pos, r)| {
            let mut parts = r.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(1.0);
            (media, q, pos)
        })
        .collect();
    let rate = |media: &str| -> Option<(f32, usize)> {
        ranges
            .iter()
            .filter_map(|(range, q, pos)| {
                let specificity = if range == media {
                    2
                } else if range == "image/*" {
                    1
                } else if range == "*/*" {
                    0
                } else {
                    return None;
                };
                Some((specificity, *q, *pos))
            })
            .max_by_key(|(specificity, _, _)| *specificity)
            .map(|(_, q, pos)| (q, pos))
    };
    let mut best: Option<(OutputFormat, f32, usize)> = None;
    for format in [OutputFormat::Jpeg, OutputFormat::Png] {
        if let Some((q, pos)) = rate(format.media_type())
            && q > 0.0
            && best.is_none_or(|(_, bq, bpos)| q > bq || (q == bq && pos < bpos))
        {
            best = Some((format, q, pos));
        }
    }
    best.map(|(f, _, _)| f).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "rendered images are available as image/jpeg or image/png",
        )
    })
}

/// The render options of a query; `frame` is set by the caller.
fn render_options(q: &RenderQuery, headers: &HeaderMap) -> Result<RenderOptions, ApiError> {
    let accept = match &q.accept {
        Some(a) => Some(a.as_str()),
        None => headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    };
    let format = negotiate(accept)?;
    let bad = |e: yilian_render::RenderError| ApiError::bad_request(e.to_string());
    Ok(RenderOptions {
        frame: 0,
        window: q
            .window
            .as_deref()
            .map(Window::parse)
            .transpose()
            .map_err(bad)?,
        viewport: q
            .viewport
            .as_deref()
            .map(Viewport::parse)
            .transpose()
            .map_err(bad)?,
        format,
        quality: q
            .quality
            .as_deref()
            .map(parse_quality)
            .transpose()
            .map_err(bad)?
            .unwrap_or(DEFAULT_QUALITY),
    })
}

/// A 1-based frame number from the path, as a 0-based index. Frame lists are not rendered.
fn frame_index(s: &str) -> Result<u32, ApiError> {
    if s.contains(',') {
        return Err(ApiError::bad_request(
            "one frame at a time: ask for frames/{n}/rendered for each frame",
        ));
    }
    match s.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n - 1),
        _ => Err(ApiError::bad_request(format!(
            "invalid frame number {s:?}: frames are numbered from 1"
        ))),
    }
}

fn image_response(format: OutputFormat, image: Bytes) -> Response {
    ([(header::CONTENT_TYPE, format.media_type())], image).into_response()
}

fn instance_uids(
    study: &str,
    series: &str,
    sop: &str,
) -> Result<(StudyInstanceUid, SeriesInstanceUid, SopInstanceUid), ApiError> {
    Ok((
        parse_uid(study, StudyInstanceUid::new)?,
        parse_uid(series, SeriesInstanceUid::new)?,
        parse_uid(sop, SopInstanceUid::new)?,
    ))
}

/// `GET …/instances/{sop}/rendered`: the first frame.
pub async fn rendered(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series, sop)): Path<(String, String, String)>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (study, series, sop) = instance_uids(&study, &series, &sop)?;
    let opts = render_options(&q, &headers)?;
    let image = st
        .hub
        .render_instance(&who, &study, &series, &sop, opts)
        .await?;
    Ok(image_response(opts.format, image))
}

/// `GET …/frames/{frame}/rendered`.
pub async fn rendered_frame(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series, sop, frame)): Path<(String, String, String, String)>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (study, series, sop) = instance_uids(&study, &series, &sop)?;
    let opts = RenderOptions {
        frame: frame_index(&frame)?,
        ..render_options(&q, &headers)?
    };
    let image = st
        .hub
        .render_instance(&who, &study, &series, &sop, opts)
        .await?;
    Ok(image_response(opts.format, image))
}

async fn thumbnail(
    st: AppState,
    who: yilian_app::Principal,
    of: ThumbnailOf,
    q: RenderQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let opts = render_options(&q, &headers)?;
    let image = st.hub.render_thumbnail(&who, &of, opts).await?;
    Ok(image_response(opts.format, image))
}

/// `GET /dicomweb/studies/{study}/thumbnail`: the middle image of the study.
pub async fn thumbnail_study(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(study): Path<String>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let of = ThumbnailOf::Study(parse_uid(&study, StudyInstanceUid::new)?);
    thumbnail(st, who, of, q, headers).await
}

/// `GET …/series/{series}/thumbnail`: the middle image of the series.
pub async fn thumbnail_series(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series)): Path<(String, String)>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let of = ThumbnailOf::Series(
        parse_uid(&study, StudyInstanceUid::new)?,
        parse_uid(&series, SeriesInstanceUid::new)?,
    );
    thumbnail(st, who, of, q, headers).await
}

/// `GET …/instances/{sop}/thumbnail`: the instance's middle frame.
pub async fn thumbnail_instance(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series, sop)): Path<(String, String, String)>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (study, series, sop) = instance_uids(&study, &series, &sop)?;
    thumbnail(
        st,
        who,
        ThumbnailOf::Instance(study, series, sop),
        q,
        headers,
    )
    .await
}

/// `GET …/frames/{frame}/thumbnail`.
pub async fn thumbnail_frame(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((study, series, sop, frame)): Path<(String, String, String, String)>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (study, series, sop) = instance_uids(&study, &series, &sop)?;
    let of = ThumbnailOf::Frame(study, series, sop, frame_index(&frame)?);
    thumbnail(st, who, of, q, headers).await
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
        use OutputFormat::{Jpeg, Png};
        for (accept, want) in [
            (None, Jpeg),
            (Some(""), Jpeg),
            (Some("*/*"), Jpeg),
            (Some("image/*"), Jpeg),
            (Some("image/png"), Png),
            (Some("image/jpeg, image/png"), Jpeg),
            (Some("image/png, image/jpeg"), Png),
            (Some("image/jpeg;q=0.5, image/png"), Png),
            (Some("image/jpeg;q=0, */*"), Png),
            (Some("text/html, image/*;q=0.8"), Jpeg),
            (Some("image/png;q=0, image/*"), Jpeg),
        ] {
            assert_eq!(negotiate(accept).unwrap(), want, "{accept:?}");
        }
        for accept in [
            "image/gif",
            "application/json",
            "image/jp2, text/plain",
            "image/*;q=0",
        ] {
            assert_eq!(
                negotiate(Some(accept)).unwrap_err().status,
                StatusCode::NOT_ACCEPTABLE,
                "{accept}"
            );
        }
    }

    #[test]
    fn frame_numbers_are_one_based_and_single() {
        assert_eq!(frame_index("1").unwrap(), 0);
        assert_eq!(frame_index("12").unwrap(), 11);
        for bad in ["0", "-1", "x", "1,2", ""] {
            assert_eq!(
                frame_index(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
