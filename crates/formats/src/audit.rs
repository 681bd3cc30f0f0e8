//! The audit trail out: FHIR R4 `AuditEvent` resources (in a `collection` Bundle) and RFC 5424 syslog
//! lines, the two forms an ATNA-style audit repository takes. Pure: typed events in, JSON or text out.

use serde_json::{Value, json};

/// One audit event as exported.
#[derive(Clone, Debug)]
pub struct AuditLine<'a> {
    /// Position in the hash chain (`None`: older than the chain).
    pub seq: Option<i64>,
    /// The event's chain hash (hex SHA-256).
    pub hash: Option<&'a str>,
    /// Epoch milliseconds.
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    /// The alliance patient key (a keyed hash: no identifier).
    pub patient_key: Option<&'a str>,
    pub outcome: &'a str,
    pub detail: &'a str,
}

/// The structured-data ID of the syslog lines: `yilian@32473`, under the enterprise number RFC 5612
/// reserves for documentation, until the project has its own.
pub const SD_ID: &str = "yilian@32473";

fn time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// FHIR `AuditEvent.action`: what kind of thing the hub did.
fn fhir_action(action: &str) -> &'static str {
    let verb = action.rsplit('.').next().unwrap_or(action);
    match verb {
        "store" | "ingest" | "upload" | "submit" | "stow" | "complete" => "C",
        "lookup" | "search" | "query" | "prior" | "find" => "E",
        "read" | "view" | "render" | "retrieve" | "verify" | "export" | "download" | "signoff" => {
            "R"
        }
        "delete" => "D",
        _ => "U",
    }
}

/// `0` success; `4` a refusal or a finding (the request was handled and said no); `8` anything else.
fn fhir_outcome(outcome: &str) -> &'static str {
    match outcome {
        "ok" => "0",
        "refused" | "denied" | "conflict" | "missing" | "invalid" | "duplicate" => "4",
        _ => "8",
    }
}

/// One event as a FHIR R4 AuditEvent. `base`: the hub's public URL (the observer).
pub fn fhir_audit_event(l: &AuditLine, base: &str) -> Value {
    let mut entity = vec![json!({
        "what": { "identifier": { "system": format!("urn:yilian:{}", l.resource_type), "value": l.resource_id } },
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" },
    })];
    if let Some(k) = l.patient_key {
        entity.push(json!({
            "what": { "identifier": { "system": "urn:yilian:patient-key", "value": k } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" },
        }));
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation" },
        "subtype": [{ "system": "urn:yilian:audit-action", "code": l.action }],
        "action": fhir_action(l.action),
        "recorded": time(l.at),
        "outcome": fhir_outcome(l.outcome),
        "agent": [{
            "who": { "identifier": { "system": "urn:yilian:user", "value": l.actor } },
            "requestor": true,
        }],
        "source": {
            "observer": { "display": format!("Yilian hub {base}") },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server" }],
        },
        "entity": entity,
    });
    if !l.detail.is_empty() {
        ev["outcomeDesc"] = json!(l.detail);
    }
    if let Some(seq) = l.seq {
        ev["id"] = json!(format!("seq-{seq}"));
        let mut chain = vec![json!({ "url": "seq", "valueInteger": seq })];
        if let Some(h) = l.hash {
            chain.push(json!({ "url": "hash", "valueString": h }));
        }
        ev["extension"] = json!([{ "url": "urn:yilian:audit-chain", "extension": chain }]);
    }
    ev
}

/// A `collection` Bundle of AuditEvents.
pub fn fhir_bundle(lines: &[AuditLine], base: &str) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "total": lines.len(),
        "entry": lines.iter().map(|l| json!({ "resource": fhir_audit_event(l, base) })).collect::<Vec<_>>(),
    })
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn sd_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field: printable US-ASCII without spaces, `-` when empty (RFC 5424 §6.2).
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() { "-".into() } else { f }
}

/// One event as an RFC 5424 line: facility 13 (log audit), severity info (6) for `ok` and warning
/// (4) otherwise; APP-NAME `yilian`, MSGID `AUDIT`, the fields as structured data, the detail as
/// the UTF-8 message (with its BOM).
pub fn syslog_line(l: &AuditLine, hostname: &str) -> String {
    let severity = if l.outcome == "ok" { 6 } else { 4 };
    let pri = 13 * 8 + severity;
    let mut sd = format!("[{SD_ID}");
    if let Some(seq) = l.seq {
        sd.push_str(&format!(" seq=\"{seq}\""));
    }
    for (k, v) in [
        ("action", Some(l.action)),
        ("actor", Some(l.actor)),
        ("resourceType", Some(l.resource_type)),
        ("resource", Some(l.resource_id)),
        ("patientKey", l.patient_key),
        ("outcome", Some(l.outcome)),
        ("hash", l.hash),
    ] {
        if let Some(v) = v {
            sd.push_str(&format!(" {k}=\"{}\"", sd_value(v)));
        }
    }
    sd.push(']');
    let msg = l.detail.replace(['\r', '\n'], " ");
    format!(
        "<{pri}>1 {} {} yilian - AUDIT {sd} \u{feff}{msg}",
        time(l.at),
        header_field(hostname, 255)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> AuditLine<'static> {
        AuditLine {
            seq: Some(7),
            hash: Some("ab12"),
            at: 1_795_478_400_000,
            actor: "zhao.clinician",
            action: "results.lookup",
            resource_type: "patient",
            resource_id: "HX0***01",
            patient_key: Some("9f86d081"),
            outcome: "ok",
            detail: "purpose=\"随访\"]\nnext",
        }
    }

    #[test]
    fn a_syslog_line_is_rfc5424_with_escaped_structured_data() {
        let s = syslog_line(&line(), "hub 1");
        assert_eq!(
            s,
            "<110>1 2026-11-24T00:00:00.000Z hub1 yilian - AUDIT [yilian@32473 seq=\"7\" \
             action=\"results.lookup\" actor=\"zhao.clinician\" resourceType=\"patient\" \
             resource=\"HX0***01\" patientKey=\"9f86d081\" outcome=\"ok\" hash=\"ab12\"] \
             \u{feff}purpose=\"随访\"] next"
        );
        let refused = AuditLine {
            outcome: "conflict",
            resource_id: "a\"b]c\\",
            ..line()
        };
        let s = syslog_line(&refused, "");
        assert!(
            s.starts_with("<108>1 2026-11-24T00:00:00.000Z - yilian - AUDIT "),
            "{s}"
        );
        assert!(s.contains("resource=\"a\\\"b\\]c\\\\\""), "{s}");
    }

    #[test]
    fn a_fhir_audit_event_names_who_what_when_and_the_outcome() {
        let e = fhir_audit_event(&line(), "http://hub");
        assert_eq!(e["resourceType"], "AuditEvent");
        assert_eq!(e["action"], "E");
        assert_eq!(e["outcome"], "0");
        assert_eq!(e["recorded"], "2026-11-24T00:00:00.000Z");
        assert_eq!(
            e["agent"][0]["who"]["identifier"]["value"],
            "zhao.clinician"
        );
        assert_eq!(e["entity"][1]["what"]["identifier"]["value"], "9f86d081");
        assert_eq!(e["extension"][0]["extension"][0]["valueInteger"], 7);
        assert_eq!(fhir_action("report.sign"), "U");
        assert_eq!(fhir_action("dicom.store"), "C");
        assert_eq!(fhir_action("wado.render"), "R");
        assert_eq!(fhir_outcome("conflict"), "4");
    }
}
