//! Lab review and critical-value endpoints: a lab physician's review queue and sign-off (审核), the
//! signed sign-off document, critical-value cases (危急值) with their acknowledgement, and the register
//! as JSON or CSV.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use yilian_app::lab::LabPanelView;
use yilian_app::lab_review::{AckInput, ReviewItem, register_summary};
use yilian_app::ports::CriticalCaseRecord;
use yilian_domain::LabPanelId;
use yilian_signing::{Passphrase, format_time, parse_time};

use crate::AppState;
use crate::api::not_found_id;
use crate::auth::{Authorized, Caller, act};
use crate::error::ApiError;
use crate::lab::panel_json;

type ApiResult = Result<Json<Value>, ApiError>;

fn panel_id(s: String) -> Result<LabPanelId, ApiError> {
    LabPanelId::new(s).map_err(|_| not_found_id())
}

/// A case as the register and the case view show it (the patient only as the alliance key prefix).
fn case_json(c: &CriticalCaseRecord) -> Value {
    json!({
        "case_id": c.case_id,
        "panel_id": c.panel_id.as_str(),
        "result_seq": c.result_seq,
        "site_id": c.site.as_str(),
        "notify_site": c.notify_site.as_str(),
        "review_pool": c.review_pool.as_ref().map(|p| p.as_str()),
        "patient_key_prefix": c.patient_key.0.chars().take(12).collect::<String>(),
        "analyte": c.analyte,
        "value": c.value_text,
        "unit": c.unit,
        "rule": c.rule_name,
        "explanation": c.explanation,
        "opened_at": format_time(c.opened_at.0),
        "ack_due_at": format_time(c.ack_due_at.0),
        "state": c.state.as_str(),
        "escalations": c.escalations,
        "last_escalated_at": c.last_escalated_at.map(|t| format_time(t.0)),
        "acknowledgement": c.ack.as_ref().map(|a| json!({
            "at": format_time(a.at.0),
            "minutes_after_opened": (a.at.0 - c.opened_at.0) / 60_000,
            "recorded_by": a.by.as_str(),
            "name": a.name,
            "role": a.role,
            "read_back": a.read_back,
        })),
    })
}

fn review_item_json(st: &AppState, item: &ReviewItem) -> Value {
    let view = LabPanelView {
        record: item.record.clone(),
        history: Vec::new(),
    };
    let mut v = panel_json(st, &view);
    v["critical_cases"] = Value::Array(item.cases.iter().map(case_json).collect());
    v
}

/// `GET /api/v1/lab/review`: the panels awaiting the caller's sign-off, critical ones first.
pub async fn queue(State(st): State<AppState>, Caller(who): Caller) -> ApiResult {
    let items = st.hub.lab_review_queue(&who).await?;
    Ok(Json(json!({
        "items": items.iter().map(|i| review_item_json(&st, i)).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/lab/review/{id}`: one panel of the caller's review pools, with its cases.
pub async fn review_panel(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let item = st.hub.lab_panel_for_review(&who, &panel_id(id)?).await?;
    Ok(Json(review_item_json(&st, &item)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    #[serde(default)]
    comment: String,
    /// Unlocks the lab physician's sealed signing key for this signature; never logged or stored.
    #[serde(default)]
    passphrase: Option<Passphrase>,
}

/// `POST /api/v1/lab/panels/{id}/sign`: sign off and release; the signed document.
pub async fn sign(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Option<Json<SignBody>>,
) -> ApiResult {
    let (comment, passphrase) = body
        .map(|Json(b)| (b.comment, b.passphrase))
        .unwrap_or_default();
    if comment.chars().count() > 2000 {
        return Err(ApiError::bad_request("comment: at most 2000 characters"));
    }
    let doc = st
        .hub
        .sign_off_lab_panel(&who, &panel_id(id)?, &comment, passphrase.as_ref())
        .await?;
    Ok(Json(serde_json::to_value(doc).unwrap_or(Value::Null)))
}

/// `GET /api/v1/lab/panels/{id}/signoff`: the signed sign-off, as `yilian verify` reads it.
pub async fn signoff(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let doc = st.hub.lab_signoff(&who, &panel_id(id)?).await?;
    Ok(Json(serde_json::to_value(doc).unwrap_or(Value::Null)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterQuery {
    /// RFC 3339 instant or `YYYY-MM-DD` (alliance-local midnight); inclusive.
    from: Option<String>,
    /// Exclusive.
    to: Option<String>,
    /// Only cases not yet acknowledged.
    #[serde(default)]
    open: bool,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

pub(crate) fn instant(st: &AppState, key: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Some(t) = parse_time(v) {
        return Ok(Some(t));
    }
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("{key}: {v:?} is neither an RFC 3339 instant nor a date YYYY-MM-DD"),
        )
    };
    let d = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| bad())?;
    let midnight = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
    let offset = i64::from(st.hub.config.alliance.utc_offset_minutes) * 60_000;
    Ok(Some(midnight.timestamp_millis() - offset))
}

/// A CSV field: quoted when it holds a separator, a quote or a line break; a leading `=`, `+`, `-`
/// or `@` is prefixed with `'` so a spreadsheet does not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

const CSV_HEADER: &str = "case_id,opened_at,site_id,notify_site,panel_id,patient_key_prefix,analyte,value,unit,rule,\
                          ack_due_at,state,escalations,acked_at,minutes_to_ack,received_by,role,read_back,recorded_by";

fn case_csv(c: &CriticalCaseRecord) -> String {
    let ack = c.ack.as_ref();
    let fields = [
        c.case_id.clone(),
        format_time(c.opened_at.0),
        c.site.to_string(),
        c.notify_site.to_string(),
        c.panel_id.to_string(),
        c.patient_key.0.chars().take(12).collect(),
        c.analyte.clone(),
        c.value_text.clone(),
        c.unit.clone(),
        c.rule_name.clone().unwrap_or_default(),
        format_time(c.ack_due_at.0),
        c.state.as_str().to_string(),
        c.escalations.to_string(),
        ack.map(|a| format_time(a.at.0)).unwrap_or_default(),
        ack.map(|a| ((a.at.0 - c.opened_at.0) / 60_000).to_string())
            .unwrap_or_default(),
        ack.map(|a| a.name.clone()).unwrap_or_default(),
        ack.and_then(|a| a.role.clone()).unwrap_or_default(),
        ack.map(|a| a.read_back.clone()).unwrap_or_default(),
        ack.map(|a| a.by.to_string()).unwrap_or_default(),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// `GET /api/v1/lab/critical?from=&to=&open=&format=csv`: the critical-value register of the caller's
/// scope, newest first.
pub async fn register(
    State(st): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<RegisterQuery>,
) -> Result<Response, ApiError> {
    let from = instant(&st, "from", q.from.as_deref())?.map(yilian_domain::UnixMillis);
    let to = instant(&st, "to", q.to.as_deref())?.map(yilian_domain::UnixMillis);
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("format: {other:?} is not json or csv"),
            ));
        }
    };
    let cases = st.hub.critical_register(&who, from, to, q.open).await?;
    if csv {
        let mut body = String::from(CSV_HEADER);
        body.push_str("\r\n");
        for c in &cases {
            body.push_str(&case_csv(c));
            body.push_str("\r\n");
        }
        let mut resp = body.into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        resp.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"critical-values.csv\""),
        );
        return Ok(resp);
    }
    let limit = st.hub.config.lab.critical_ack_minutes;
    let sum = register_summary(&cases, limit);
    Ok(Json(json!({
        "summary": {
            "cases": sum.cases,
            "acknowledged": sum.acknowledged,
            "ack_limit_minutes": limit,
            "acknowledged_within_limit": sum.within_limit,
            "escalated": sum.escalated,
            "median_minutes_to_ack": sum.median_minutes,
            "p90_minutes_to_ack": sum.p90_minutes,
        },
        "items": cases.iter().map(case_json).collect::<Vec<_>>(),
        "truncated": cases.len() as i64 >= yilian_app::lab_review::MAX_REGISTER,
    }))
    .into_response())
}

/// `GET /api/v1/lab/critical/{id}`: one case with its panel; the patient's identifier and name in full
/// for the people who must act on it.
pub async fn case(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let (case, record) = st.hub.critical_case(&who, &id).await?;
    let result = usize::try_from(case.result_seq - 1)
        .ok()
        .and_then(|i| record.panel.results.get(i));
    let mut v = case_json(&case);
    v["patient"] = json!({
        "issuer": record.patient.issuer,
        "patient_id": record.patient.id,
        "name": record.panel.patient.name,
        "sex": record.panel.patient.sex.map(|s| s.as_str()),
        "birth_date": record.panel.patient.birth_date,
    });
    v["panel"] = json!({
        "service": record.panel.service.label(),
        "ordering_site": record.panel.ordering_site,
        "ordering_provider": record.panel.ordering_provider.as_ref().and_then(|p| p.name.clone()),
        "collected_at": record.panel.collected_at.map(|t| t.to_fhir()),
        "reference_range": result.and_then(|r| r.reference_range.as_ref()).and_then(|r| r.text.clone()),
    });
    Ok(Json(v))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// The person who received the value.
    name: String,
    role: Option<String>,
    /// The value as they read it back.
    read_back: String,
}

/// `POST /api/v1/lab/critical/{id}/ack`: a named person took the value and read it back.
pub async fn ack(
    State(st): State<AppState>,
    Authorized(who, _): Authorized<act::AckCritical>,
    Path(id): Path<String>,
    Json(b): Json<AckBody>,
) -> ApiResult {
    let case = st
        .hub
        .acknowledge_critical(
            &who,
            &id,
            AckInput {
                name: b.name,
                role: b.role,
                read_back: b.read_back,
            },
        )
        .await?;
    Ok(Json(case_json(&case)))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
