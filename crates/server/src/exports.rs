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

/// HTML text: `& < > " '` escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `GET /verify/{id}`: the page a printed report's QR code opens, without signing in (see
/// `Hub::verify_public`): genuine, current, not revoked; who signed it and when; the signed
/// document's SHA-256. Never the patient or the report's text. zh-CN with English beside it.
pub async fn verify_page(
    State(st): State<AppState>,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let id = report_id(id)?;
    let source = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "-".into());
    let p = st.hub.verify_public(&id, &source).await?;
    let v = &p.verification;
    let (mark, verdict) = if v.valid {
        (
            "✔",
            "报告有效：签名完整，为最新版本，未作废。 Valid: signed, unaltered, the latest version, not revoked.",
        )
    } else {
        (
            "✘",
            "报告未通过验证（见下表）。 Not valid: see the checks below.",
        )
    };
    let offset = i64::from(st.hub.config.alliance.utc_offset_minutes) * 60_000;
    let signed = p
        .signed_at
        .map(|t| {
            yilian_signing::format_time(t.0 + offset)
                .replace('Z', "")
                .replace('T', " ")
        })
        .unwrap_or_default();
    let mut rows = String::new();
    for c in &v.checks {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(c.name),
            if c.ok {
                "通过 pass"
            } else {
                "未通过 FAIL"
            },
            esc(&c.detail)
        ));
    }
    let page = format!(
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>报告验证 Report verification</title></head><body>\n\
         <h1>{mark} 报告验证 Report verification</h1>\n<p><strong>{verdict}</strong></p>\n\
         <dl><dt>报告编号 Report</dt><dd>{id}</dd>\
         <dt>状态 Status</dt><dd>{status}（第 {version} 版 version {version}）</dd>\
         <dt>检查机构 Site</dt><dd>{site}</dd><dt>检查类型 Modality</dt><dd>{modality}</dd>\
         <dt>签名医师 Signed by</dt><dd>{signer}</dd><dt>签名时间 Signed at</dt><dd>{signed}</dd>\
         <dt>文档摘要 Document SHA-256</dt><dd><code>{sha}</code></dd></dl>\n\
         <table><thead><tr><th>检查项 Check</th><th>结果 Result</th><th>说明 Detail</th></tr></thead>\
         <tbody>\n{rows}</tbody></table>\n\
         <p>本页不显示患者信息与报告内容，请与所持纸质报告核对。 This page shows no patient data or report text: compare with the paper you hold.</p>\n\
         </body></html>\n",
        id = esc(id.as_str()),
        status = esc(v.lifecycle.status()),
        version = v.lifecycle.version,
        site = esc(&p.site_name),
        modality = esc(&p.modality),
        signer = esc(&p.signer_name),
        sha = esc(p.document_sha256.as_deref().unwrap_or("-")),
    );
    let mut resp = page.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
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
