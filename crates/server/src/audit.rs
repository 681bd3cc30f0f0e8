//! `GET /api/v1/audit`: the auditor's export of the audit trail as JSON, as a FHIR R4 Bundle of
//! AuditEvents (`format=fhir`) or as RFC 5424 syslog lines (`format=syslog`).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use yilian_app::ports::AuditRecord;
use yilian_domain::UnixMillis;
use yilian_formats::audit::{AuditLine, fhir_bundle, syslog_line};
use yilian_signing::format_time;

use crate::AppState;
use crate::auth::{Authorized, act};
use crate::error::ApiError;
use crate::lab_review::instant;

#[derive(Deserialize)]
pub struct AuditQuery {
    /// Inclusive; an RFC 3339 instant or a date (alliance local midnight). Default: a day before `to`.
    from: Option<String>,
    /// Exclusive. Default: now.
    to: Option<String>,
    limit: Option<i64>,
    /// `json` (default), `fhir` or `syslog`.
    format: Option<String>,
}

fn line(r: &AuditRecord) -> AuditLine<'_> {
    AuditLine {
        seq: r.seq,
        hash: r.hash.as_deref(),
        at: r.event.at.0,
        actor: &r.event.actor,
        action: &r.event.action,
        resource_type: &r.event.resource_type,
        resource_id: &r.event.resource_id,
        patient_key: r.event.patient_key.as_ref().map(|k| k.0.as_str()),
        outcome: &r.event.outcome,
        detail: &r.event.detail,
    }
}

pub async fn export(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::ReadAudit>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "fhir" | "syslog") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "format must be json, fhir or syslog",
        ));
    }
    let from = instant(&st, "from", q.from.as_deref())?.map(UnixMillis);
    let to = instant(&st, "to", q.to.as_deref())?.map(UnixMillis);
    let events = st.hub.audit_trail(&who, from, to, q.limit).await?;
    let base = st.hub.config.public_url();
    Ok(match format {
        "fhir" => (
            [(header::CONTENT_TYPE, "application/fhir+json")],
            Json(fhir_bundle(
                &events.iter().map(line).collect::<Vec<_>>(),
                &base,
            )),
        )
            .into_response(),
        "syslog" => {
            let host = base
                .split("://")
                .nth(1)
                .unwrap_or(&base)
                .split(['/', ':'])
                .next()
                .unwrap_or("-")
                .to_string();
            let mut body = String::new();
            for r in &events {
                body.push_str(&syslog_line(&line(r), &host));
                body.push('\n');
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
        }
        _ => Json(json!({
            "events": events.iter().map(|r| json!({
                "seq": r.seq,
                "hash": r.hash,
                "at": format_time(r.event.at.0),
                "actor": r.event.actor,
                "action": r.event.action,
                "resource_type": r.event.resource_type,
                "resource_id": r.event.resource_id,
                "patient_key": r.event.patient_key.as_ref().map(|k| k.0.clone()),
                "outcome": r.event.outcome,
                "detail": r.event.detail,
            })).collect::<Vec<Value>>(),
        }))
        .into_response(),
    })
}
