//! The auditor's export of the audit trail against the real hub (SQLite, PostgreSQL when DATABASE_URL
//! is set): a clinician's look-up shows up with its patient key and chain position as JSON, as FHIR R4
//! AuditEvents (checked by fhir.resources and fhirclient when YILIAN_TEST_PYTHON is set) and as
//! RFC 5424 syslog lines; nobody but the auditor may export; the export itself is audited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;

use reqwest::StatusCode;
use serde_json::Value;
use support::{TestHub, backends};

fn python() -> Option<String> {
    support::python("AuditEvent validation")
}

/// fhir.resources and fhirclient check each resource strictly (tests/python/fhir_lab_client.py).
fn validate_fhir(python: &str, resources: &[Value]) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/fhir_lab_client.py"
    );
    let mut child = std::process::Command::new(python)
        .arg(script)
        .arg("validate")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(resources).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn the_auditor_exports_the_trail_as_json_fhir_and_syslog() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let doc = t.token("zhao.clinician").await;
        let auditor = t.token("gao.auditor").await;
        let r = t
            .get(
                &doc,
                "/api/v1/results?patient_id=11010519491231002X&purpose=treatment",
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);

        let v = t.get_json(&auditor, "/api/v1/audit").await;
        let events = v["events"].as_array().unwrap();
        let lookup = events
            .iter()
            .find(|e| e["action"] == "results.lookup")
            .unwrap_or_else(|| panic!("{v}"));
        assert_eq!(lookup["actor"], "zhao.clinician");
        assert_eq!(lookup["patient_key"].as_str().unwrap().len(), 64);
        assert!(lookup["seq"].as_i64().unwrap() > 0);
        assert_eq!(lookup["hash"].as_str().unwrap().len(), 64);
        // Never the resident ID itself.
        assert!(!v.to_string().contains("11010519491231002X"));

        let r = t.get(&auditor, "/api/v1/audit?format=fhir").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/fhir+json");
        let bundle: Value = r.json().await.unwrap();
        assert_eq!(bundle["resourceType"], "Bundle");
        let resources: Vec<Value> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"].clone())
            .collect();
        let ev = resources
            .iter()
            .find(|r| r["subtype"][0]["code"] == "results.lookup")
            .unwrap();
        assert_eq!(ev["action"], "E");
        assert_eq!(
            ev["agent"][0]["who"]["identifier"]["value"],
            "zhao.clinician"
        );
        if let Some(py) = python() {
            let mut all = resources.clone();
            all.push(bundle.clone());
            validate_fhir(&py, &all);
        }

        let r = t
            .get(&auditor, "/api/v1/audit?format=syslog&from=2000-01-01")
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("action=\"results.lookup\""))
            .unwrap();
        assert!(line.starts_with("<110>1 "), "{line}");
        assert!(
            line.contains(" yilian - AUDIT [yilian@32473 seq=\""),
            "{line}"
        );
        assert!(line.contains("actor=\"zhao.clinician\""), "{line}");

        // Only the auditor; and a bad request says what is wrong.
        for user in ["admin", "zhao.clinician", "li.reader", "wang.tech"] {
            let tok = t.token(user).await;
            assert_eq!(
                t.get(&tok, "/api/v1/audit").await.status(),
                StatusCode::FORBIDDEN,
                "{user}"
            );
        }
        for q in ["format=xml", "limit=0", "from=2026-11-24&to=2026-11-23"] {
            assert_eq!(
                t.get(&auditor, &format!("/api/v1/audit?{q}"))
                    .await
                    .status(),
                StatusCode::BAD_REQUEST,
                "{q}"
            );
        }
        // Each export is itself in the trail.
        let v = t.get_json(&auditor, "/api/v1/audit").await;
        let reads = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "audit.read" && e["actor"] == "gao.auditor")
            .count();
        assert_eq!(reads, 3, "{v}");
        t.finish().await;
    }
}
