//! Report exports over HTTP: `GET /api/v1/reports/{id}/sr` (DICOM Basic Text SR,
//! `application/dicom`), `GET /api/v1/reports/{id}/pdf` (the printable report, `application/pdf`) and
//! `GET /reports/{id}/print` (the same as an HTML page for the browser's print). The FHIR exports are
//! part of `/fhir/r4` (`fhir.rs`). Use cases: `yilian_app::exports`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use yilian_domain::ReportId;

use crate::AppState;
use crate::api::not_found_id;
use crate::auth::{Authorized, act};
use crate::error::ApiError;

fn report_id(s: String) -> Result<ReportId, ApiError> {
    ReportId::new(s).map_err(|_| not_found_id())
}

fn file(body: Vec<u8>, content_type: &'static str, name: String) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// `GET /api/v1/reports/{id}/sr`.
pub async fn sr(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ViewReport>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = report_id(id)?;
    let bytes = st.hub.report_sr(&who, &id).await?;
    Ok(file(bytes, "application/dicom", format!("report-{id}.dcm")))
}

/// `GET /api/v1/reports/{id}/pdf`.
pub async fn pdf(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ViewReport>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = report_id(id)?;
    let bytes = st.hub.report_pdf(&who, &id).await?;
    Ok(file(bytes, "application/pdf", format!("report-{id}.pdf")))
}

/// The page's Content-Security-Policy: nothing may load; its one style element is allowed by hash;
/// no script at all.
fn print_csp() -> String {
    let hash = base64::engine::general_purpose::STANDARD
        .encode(Sha256::digest(yilian_render::report::PRINT_CSS.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src data:; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
    )
}

/// `GET /reports/{id}/print`: the printable report as HTML (zh-CN).
pub async fn print(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ViewReport>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = report_id(id)?;
    let page = st.hub.report_print_html(&who, &id).await?;
    let mut resp = page.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&print_csp()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_csp_allows_the_style_by_hash_and_no_script() {
        let csp = print_csp();
        assert!(csp.contains("style-src 'sha256-"));
        assert!(!csp.contains("script-src"));
        assert!(!csp.contains("unsafe-inline"));
    }
}
