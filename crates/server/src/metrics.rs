//! Admin views of the service: `GET /metrics` (Prometheus text exposition 0.0.4, written here by hand)
//! and `GET /api/v1/admin/turnaround`. Both need an admin's bearer token; neither carries a patient
//! identifier (labels are pool ids and priorities only).

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};
use yilian_app::metrics::{MetricsSnapshot, Percentiles, TURNAROUND_BUCKETS_SECS};
use yilian_domain::UnixMillis;
use yilian_signing::{format_time, parse_time};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// The exposition format's content type (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The default range of a turnaround report: the 30 days before `to`.
const DEFAULT_RANGE_DAYS: i64 = 30;

pub async fn metrics(
    State(st): State<AppState>,
    Caller(who): Caller,
) -> Result<impl IntoResponse, ApiError> {
    let snapshot = st.hub.metrics_snapshot(&who).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(&snapshot)))
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Seconds from milliseconds, exactly as a decimal (no float rounding in the text).
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    match ms % 1000 {
        0 => format!("{sign}{}", ms / 1000),
        frac => format!("{sign}{}.{frac:03}", ms / 1000),
    }
}

/// The snapshot in the Prometheus text format, one family after the other.
pub fn encode(s: &MetricsSnapshot) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "yilian_ingest_instances_total",
        "counter",
        "DICOM instances newly stored by this hub process (STOW-RS, C-STORE, ECG upload); duplicates not counted.",
    );
    let _ = writeln!(out, "yilian_ingest_instances_total {}", s.ingest_instances);
    family(
        &mut out,
        "yilian_ingest_bytes_total",
        "counter",
        "Bytes of the instances counted in yilian_ingest_instances_total.",
    );
    let _ = writeln!(out, "yilian_ingest_bytes_total {}", s.ingest_bytes);
    family(
        &mut out,
        "yilian_worklist_depth",
        "gauge",
        "Queued (unsigned) exams by their pool and current priority, hub-wide.",
    );
    for (pool, priority, n) in &s.worklist_depth {
        let _ = writeln!(
            out,
            "yilian_worklist_depth{{pool=\"{}\",priority=\"{}\"}} {n}",
            label(pool.as_str()),
            priority.as_str()
        );
    }
    family(
        &mut out,
        "yilian_sla_breaches_total",
        "counter",
        "Exams of the pool signed after due, or unsigned and past due now, hub-wide.",
    );
    for p in &s.pools {
        let _ = writeln!(
            out,
            "yilian_sla_breaches_total{{pool=\"{}\"}} {}",
            label(p.pool.as_str()),
            p.sla_breaches
        );
    }
    family(
        &mut out,
        "yilian_report_turnaround_seconds",
        "histogram",
        "Time from a study's first instance received to its report signed, signed exams of the pool, hub-wide.",
    );
    for p in &s.pools {
        let pool = label(p.pool.as_str());
        for (bound, n) in TURNAROUND_BUCKETS_SECS
            .iter()
            .zip(p.received_to_signed_le.iter())
        {
            let _ = writeln!(
                out,
                "yilian_report_turnaround_seconds_bucket{{pool=\"{pool}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "yilian_report_turnaround_seconds_bucket{{pool=\"{pool}\",le=\"+Inf\"}} {}",
            p.signed
        );
        let _ = writeln!(
            out,
            "yilian_report_turnaround_seconds_sum{{pool=\"{pool}\"}} {}",
            seconds(p.received_to_signed_sum_ms)
        );
        let _ = writeln!(
            out,
            "yilian_report_turnaround_seconds_count{{pool=\"{pool}\"}} {}",
            p.signed
        );
    }
    family(
        &mut out,
        "yilian_results_lookups_total",
        "counter",
        "Patient result look-ups (mutual recognition) answered by this hub process.",
    );
    let _ = writeln!(out, "yilian_results_lookups_total {}", s.results_lookups);
    family(
        &mut out,
        "yilian_lab_messages_total",
        "counter",
        "Lab messages (MLLP, HTTP HL7 v2, FHIR) handled by this hub process, by outcome: stored, duplicate (same bytes again, nothing written), refused.",
    );
    for (outcome, n) in ["stored", "duplicate", "refused"]
        .iter()
        .zip(s.lab_messages)
    {
        let _ = writeln!(
            out,
            "yilian_lab_messages_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    family(
        &mut out,
        "yilian_recognition_decisions_total",
        "counter",
        "Recognition decisions recorded by clinicians through this hub process, by decision.",
    );
    for (decision, n) in ["accepted", "declined"].iter().zip(s.recognition_decisions) {
        let _ = writeln!(
            out,
            "yilian_recognition_decisions_total{{decision=\"{decision}\"}} {n}"
        );
    }
    family(
        &mut out,
        "yilian_prior_checks_total",
        "counter",
        "Prior-result alerts answered by this hub process, by whether a recognised prior was found.",
    );
    for (found, n) in ["true", "false"].iter().zip(s.prior_checks) {
        let _ = writeln!(out, "yilian_prior_checks_total{{found=\"{found}\"}} {n}");
    }
    family(
        &mut out,
        "yilian_sweeper",
        "gauge",
        "1 when this hub process holds the sweep lease and runs the background sweeps for every replica.",
    );
    let _ = writeln!(out, "yilian_sweeper {}", u8::from(s.sweeper));
    family(
        &mut out,
        "yilian_sweeps_total",
        "counter",
        "Background sweep rounds run by this hub process under the sweep lease.",
    );
    let _ = writeln!(out, "yilian_sweeps_total {}", s.sweeps);
    family(
        &mut out,
        "yilian_blob_outbox",
        "gauge",
        "Acknowledged blobs not yet uploaded from this process's write-behind outbox (blobs.ack_after = \"local\").",
    );
    let _ = writeln!(out, "yilian_blob_outbox {}", s.outbox.0);
    family(
        &mut out,
        "yilian_blob_outbox_bytes",
        "gauge",
        "Bytes of the blobs counted in yilian_blob_outbox.",
    );
    let _ = writeln!(out, "yilian_blob_outbox_bytes {}", s.outbox.1);
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnaroundQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `2026-03-01` (UTC midnight) or an RFC 3339 time.
pub(crate) fn parse_bound(name: &str, v: &str) -> Result<UnixMillis, ApiError> {
    if let Some(ms) = parse_time(v) {
        return Ok(UnixMillis(ms));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| UnixMillis(t.and_utc().timestamp_millis()))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} must be a date (YYYY-MM-DD) or an RFC 3339 time"
            ))
        })
}

fn minutes(ms: Option<i64>) -> Value {
    // One decimal: 0.1 min is 6 s, finer than any SLA.
    ms.map(|ms| json!((ms as f64 / 6_000.0).round() / 10.0))
        .unwrap_or(Value::Null)
}

fn percentiles_json(p: &Percentiles) -> Value {
    json!({ "n": p.n, "p50": minutes(p.p50_ms), "p90": minutes(p.p90_ms) })
}

/// `GET /api/v1/admin/turnaround?from=…&to=…`: exams routed in `[from, to)` per pool and priority.
pub async fn turnaround(
    State(st): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<TurnaroundQuery>,
) -> Result<Json<Value>, ApiError> {
    let to = match &q.to {
        Some(v) => parse_bound("to", v)?,
        None => st.hub.now(),
    };
    let from = match &q.from {
        Some(v) => parse_bound("from", v)?,
        None => to.plus_days(-DEFAULT_RANGE_DAYS),
    };
    let report = st.hub.turnaround(&who, from, to).await?;
    Ok(Json(json!({
        "from": format_time(report.from.0),
        "to": format_time(report.to.0),
        "at": format_time(report.at.0),
        "percentiles": "nearest rank, minutes",
        "groups": report.groups.iter().map(|g| json!({
            "pool_id": g.pool.as_str(),
            "priority": g.priority.as_str(),
            "count": g.count,
            "signed": g.signed,
            "sla_breaches": g.sla_breaches,
            "received_to_signed_minutes": percentiles_json(&g.received_to_signed),
            "routed_to_claimed_minutes": percentiles_json(&g.routed_to_claimed),
        })).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_app::ports::PoolTurnaround;
    use yilian_domain::{PoolId, Priority};

    fn pool(s: &str) -> PoolId {
        PoolId::new(s.to_string()).unwrap()
    }

    #[test]
    fn the_exposition_has_every_family_with_type_and_cumulative_buckets() {
        let mut le = vec![0; TURNAROUND_BUCKETS_SECS.len()];
        // One signed in 8 minutes (≤ 600 s) and one in 90 minutes (≤ 7200 s).
        for (i, bound) in TURNAROUND_BUCKETS_SECS.iter().enumerate() {
            le[i] = u64::from(*bound >= 480) + u64::from(*bound >= 5400);
        }
        let text = encode(&MetricsSnapshot {
            ingest_instances: 3,
            ingest_bytes: 4096,
            results_lookups: 2,
            lab_messages: [7, 1, 2],
            recognition_decisions: [4, 1],
            prior_checks: [2, 3],
            worklist_depth: vec![(pool("county-rad"), Priority::Routine, 5)],
            pools: vec![PoolTurnaround {
                pool: pool("county-rad"),
                sla_breaches: 1,
                signed: 2,
                received_to_signed_sum_ms: 5_880_500,
                received_to_signed_le: le,
            }],
            sweeper: true,
            sweeps: 12,
            outbox: (3, 4096),
        });
        for line in [
            "yilian_sweeper 1",
            "yilian_sweeps_total 12",
            "yilian_blob_outbox 3",
            "yilian_blob_outbox_bytes 4096",
            "# TYPE yilian_ingest_instances_total counter",
            "yilian_ingest_instances_total 3",
            "yilian_ingest_bytes_total 4096",
            "# TYPE yilian_worklist_depth gauge",
            "yilian_worklist_depth{pool=\"county-rad\",priority=\"routine\"} 5",
            "yilian_sla_breaches_total{pool=\"county-rad\"} 1",
            "# TYPE yilian_report_turnaround_seconds histogram",
            "yilian_report_turnaround_seconds_bucket{pool=\"county-rad\",le=\"300\"} 0",
            "yilian_report_turnaround_seconds_bucket{pool=\"county-rad\",le=\"600\"} 1",
            "yilian_report_turnaround_seconds_bucket{pool=\"county-rad\",le=\"7200\"} 2",
            "yilian_report_turnaround_seconds_bucket{pool=\"county-rad\",le=\"+Inf\"} 2",
            "yilian_report_turnaround_seconds_sum{pool=\"county-rad\"} 5880.500",
            "yilian_report_turnaround_seconds_count{pool=\"county-rad\"} 2",
            "yilian_results_lookups_total 2",
            "# TYPE yilian_lab_messages_total counter",
            "yilian_lab_messages_total{outcome=\"stored\"} 7",
            "yilian_lab_messages_total{outcome=\"duplicate\"} 1",
            "yilian_lab_messages_total{outcome=\"refused\"} 2",
            "# TYPE yilian_recognition_decisions_total counter",
            "yilian_recognition_decisions_total{decision=\"accepted\"} 4",
            "yilian_recognition_decisions_total{decision=\"declined\"} 1",
            "yilian_prior_checks_total{found=\"true\"} 2",
            "yilian_prior_checks_total{found=\"false\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample belongs to a family declared before it.
        let mut declared = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(
                    declared.iter().any(|d| name.starts_with(d.as_str())),
                    "{name} has no TYPE"
                );
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn labels_and_seconds_are_written_as_the_format_wants() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(61_000), "61");
        assert_eq!(seconds(1_005), "1.005");
        assert_eq!(seconds(-1_500), "-1.500");
    }

    #[test]
    fn range_bounds_take_dates_and_times() {
        assert_eq!(
            parse_bound("from", "2026-03-01").unwrap(),
            UnixMillis(1_772_323_200_000)
        );
        assert_eq!(
            parse_bound("to", "2026-03-01T08:00:00Z").unwrap(),
            UnixMillis(1_772_323_200_000 + 8 * 3_600_000)
        );
        assert!(parse_bound("from", "yesterday").is_err());
        assert_eq!(minutes(Some(90_000)), json!(1.5));
        assert_eq!(minutes(None), Value::Null);
    }
}
