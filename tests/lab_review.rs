//! Lab review and critical values end to end against the real hub (SQLite always, PostgreSQL when
//! DATABASE_URL is set): a critical potassium over MLLP opens a case in the same commit as its panel
//! (before the AA), tells the ordering site's clinician and the lab physicians, escalates when nobody
//! acknowledges within the limit, takes an acknowledgement only from a named person whose read-back
//! repeats the value, and lands in the register (JSON and CSV). Panels are auto-released by a rule
//! (final, normal, EQA-qualified lab) or wait for a lab physician whose sign-off is a signed document
//! anyone can verify; a correction goes back to review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{ManualClock, TestHub, backends};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yilian_fixtures::lab::{LabSpec, cbc, electrolytes_critical, fhir_bundle, oru_r01};
use yilian_signing::{PublicKeyRecord, SignedDocument, verify_document};

/// 2026-11-23 09:00 in the alliance (+08:00).
const MONDAY_09: i64 = 1_795_395_600_000;

/// Sends one framed message over a fresh MLLP connection; the ACK's MSA-1.
async fn mllp_send(t: &TestHub, message: &str) -> String {
    let mut s = TcpStream::connect(t.mllp_addr).await.unwrap();
    let mut framed = vec![0x0b];
    framed.extend_from_slice(message.as_bytes());
    framed.extend_from_slice(&[0x1c, 0x0d]);
    s.write_all(&framed).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(&[0x1c, 0x0d]) {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("ACK in time")
            .unwrap();
        assert!(n > 0, "connection closed before the ACK");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let msa = text
        .split('\r')
        .find(|s| s.starts_with("MSA|"))
        .unwrap_or_else(|| panic!("no MSA in {text:?}"))
        .to_string();
    msa.split('|').nth(1).unwrap_or_default().to_string()
}

/// POSTs an ORU^R01 over HTTP; the panel ids.
async fn post_hl7(t: &TestHub, token: &str, message: &str) -> Vec<String> {
    let r = t
        .http
        .post(t.url("/api/v1/lab/hl7v2"))
        .bearer_auth(token)
        .header("content-type", "x-application/hl7-v2+er7")
        .body(message.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.headers()["x-yilian-lab-panels"]
        .to_str()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect()
}

fn spec(patient: &str, issuer: &str, lab: &str, control: &str) -> LabSpec {
    let mut s = LabSpec::new(patient, issuer, control, "2.5.1");
    s.performing_lab = lab.to_string();
    s
}

async fn notifications(t: &TestHub, token: &str) -> Vec<Value> {
    let v = t.get_json(token, "/api/v1/notifications").await;
    v["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_value_is_told_escalated_and_acknowledged_with_read_back() {
    for backend in backends() {
        let clock = ManualClock::new(MONDAY_09);
        let t = TestHub::start(&backend, Some(clock.clone()), |_| {}).await;
        let wu = t.token("wu.doctor").await; // clinician of 红星镇卫生院
        let chen = t.token("chen.tech").await; // tech of another township
        let zhao = t.token("zhao.clinician").await; // clinician of another member hospital
        let huang = t.token("huang.labdoc").await; // lab physician
        let admin = t.token("admin").await;

        // The township lab's LIS sends a critical potassium over MLLP: AA only once the case is durable.
        let mut s = spec("HX-9001", "HX", "HX_LIS", "HX-K1");
        s.ordering_site = "tw-hongxing".into();
        assert_eq!(
            mllp_send(&t, &oru_r01(&s, &electrolytes_critical())).await,
            "AA"
        );
        let key = t.hub.patient_key(&yilian_domain::LocalPatientId {
            issuer: "HX".into(),
            id: "HX-9001".into(),
        });
        let panels = t.hub.catalog.lab_panels_of_patient(&key, 10).await.unwrap();
        assert_eq!(panels.len(), 1);
        let panel = &panels[0];
        assert_eq!(
            panel.state.as_str(),
            "awaiting_review",
            "never auto-released"
        );
        assert_eq!(panel.critical_count, 1);
        assert!(
            panel.decision.as_deref().unwrap().contains("critical"),
            "{:?}",
            panel.decision
        );

        // The ordering site's clinician and the lab physicians are told; nobody else is.
        let told = notifications(&t, &wu).await;
        assert_eq!(told.len(), 1, "{told:?}");
        let n = &told[0];
        assert_eq!(n["kind"], "lab.critical");
        assert_eq!(n["priority"], "stat");
        let case_id = n["case_id"].as_str().unwrap().to_string();
        let message = n["message"].as_str().unwrap();
        assert!(message.contains("6.8"), "{message}");
        assert!(
            !message.contains("HX-9001"),
            "no patient identifier: {message}"
        );
        assert_eq!(notifications(&t, &huang).await.len(), 1);
        assert!(notifications(&t, &zhao).await.is_empty());
        assert!(notifications(&t, &chen).await.is_empty());

        // The people told see whom it is about; others do not see it at all.
        let r = t.get(&wu, &format!("/api/v1/lab/critical/{case_id}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let case: Value = r.json().await.unwrap();
        assert_eq!(case["patient"]["patient_id"], "HX-9001");
        assert_eq!(case["analyte"], "钾");
        assert_eq!(case["value"], "6.8");
        assert_eq!(case["unit"], "mmol/L");
        assert_eq!(case["rule"], "血钾");
        assert_eq!(case["state"], "open");
        for other in [&zhao, &chen] {
            let r = t
                .get(other, &format!("/api/v1/lab/critical/{case_id}"))
                .await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
        }
        assert_eq!(
            t.get(&admin, &format!("/api/v1/lab/critical/{case_id}"))
                .await
                .status(),
            StatusCode::FORBIDDEN,
            "the admin keeps the register, not the patient's case"
        );

        // Not yet due: the sweep leaves it.
        clock.advance_secs(14 * 60);
        assert!(t.hub.escalate_critical_cases().await.unwrap().is_empty());
        // 16 minutes without an acknowledgement: escalated once, and told again.
        clock.advance_secs(2 * 60);
        assert_eq!(
            t.hub.escalate_critical_cases().await.unwrap(),
            vec![case_id.clone()]
        );
        assert!(
            t.hub.escalate_critical_cases().await.unwrap().is_empty(),
            "once per period"
        );
        let told = notifications(&t, &wu).await;
        assert_eq!(told.len(), 2);
        assert_eq!(told[1]["kind"], "lab.critical.escalated");
        assert!(told[1]["message"].as_str().unwrap().contains("16 minutes"));
        let case = t
            .get_json(&wu, &format!("/api/v1/lab/critical/{case_id}"))
            .await;
        assert_eq!(case["state"], "escalated");
        assert_eq!(case["escalations"], 1);

        // The acknowledgement needs a named person and a read-back that repeats the value.
        let ack = |token: String, body: Value| {
            let t = &t;
            let path = format!("/api/v1/lab/critical/{case_id}/ack");
            async move { t.post_json(&token, &path, &body).await }
        };
        let r = ack(wu.clone(), json!({"name": "吴医生", "read_back": "钾 6.3"})).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains("does not repeat"));
        let r = ack(wu.clone(), json!({"name": " ", "read_back": "6.8"})).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = ack(chen.clone(), json!({"name": "陈", "read_back": "6.8"})).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        clock.advance_secs(60);
        let r = ack(
            wu.clone(),
            json!({"name": "吴医生", "role": "主治医师", "read_back": "血钾 6.80 mmol/L"}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let done: Value = r.json().await.unwrap();
        assert_eq!(done["state"], "acknowledged");
        assert_eq!(done["acknowledgement"]["name"], "吴医生");
        assert_eq!(done["acknowledgement"]["minutes_after_opened"], 17);
        assert_eq!(done["acknowledgement"]["recorded_by"], "wu.doctor");
        let r = ack(huang.clone(), json!({"name": "黄", "read_back": "6.8"})).await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "acknowledged once");
        // Acknowledged: no more escalations.
        clock.advance_secs(3600);
        assert!(t.hub.escalate_critical_cases().await.unwrap().is_empty());

        // The register: the site's and the lab physicians' own; the admin's whole, as CSV.
        let reg = t.get_json(&wu, "/api/v1/lab/critical").await;
        assert_eq!(reg["items"].as_array().unwrap().len(), 1);
        let reg = t.get_json(&huang, "/api/v1/lab/critical").await;
        assert_eq!(reg["items"].as_array().unwrap().len(), 1);
        let sum = &reg["summary"];
        assert_eq!(
            (
                &sum["cases"],
                &sum["acknowledged"],
                &sum["acknowledged_within_limit"],
                &sum["escalated"]
            ),
            (&json!(1), &json!(1), &json!(0), &json!(1)),
            "{sum}"
        );
        assert_eq!(sum["median_minutes_to_ack"], 17);
        let reg = t.get_json(&chen, "/api/v1/lab/critical").await;
        assert!(reg["items"].as_array().unwrap().is_empty());
        let reg = t.get_json(&wu, "/api/v1/lab/critical?open=true").await;
        assert!(reg["items"].as_array().unwrap().is_empty(), "acknowledged");
        let reg = t
            .get_json(&wu, "/api/v1/lab/critical?from=2026-11-24")
            .await;
        assert!(
            reg["items"].as_array().unwrap().is_empty(),
            "opened the day before"
        );
        let r = t
            .get(&admin, "/api/v1/lab/critical?format=csv&from=2026-11-23")
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = r.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2, "{csv}");
        assert!(lines[0].starts_with("case_id,opened_at,"));
        let row = lines[1];
        for want in [
            case_id.as_str(),
            "钾",
            "6.8",
            "血钾",
            "acknowledged",
            "吴医生",
            "主治医师",
            ",17,",
        ] {
            assert!(row.contains(want), "{want} in {row}");
        }
        assert!(!csv.contains("HX-9001"), "the register names no patient");
        assert_eq!(
            t.get(&admin, "/api/v1/lab/critical?format=xml")
                .await
                .status(),
            StatusCode::BAD_REQUEST
        );

        // Every look and the acknowledgement are in the audit trail.
        let events = t.hub.catalog.audit_events(500).await.unwrap();
        let ack_event = events
            .iter()
            .find(|e| e.action == "lab.critical.ack")
            .expect("ack audited");
        assert_eq!(ack_event.actor, "wu.doctor");
        assert_eq!(ack_event.patient_key.as_ref(), Some(&key));
        assert!(events.iter().any(|e| e.action == "lab.critical.view"));
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_from_another_member_hospital_tells_that_hospital() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let liu = t.token("liu.lab").await; // the county lab centre
        let zhao = t.token("zhao.clinician").await; // member-tcm
        let wu = t.token("wu.doctor").await;
        let mut s = spec("XR-7001", "XRMYY", "COUNTYLAB", "CL-K1");
        s.ordering_site = "member-tcm".into();
        let ids = post_hl7(&t, &liu, &oru_r01(&s, &electrolytes_critical())).await;
        assert_eq!(ids.len(), 1);
        let told = notifications(&t, &zhao).await;
        assert_eq!(told.len(), 1, "the ordering hospital is told");
        assert!(notifications(&t, &wu).await.is_empty());
        let case_id = told[0]["case_id"].as_str().unwrap();
        let case = t
            .get_json(&zhao, &format!("/api/v1/lab/critical/{case_id}"))
            .await;
        assert_eq!(case["notify_site"], "member-tcm");
        assert_eq!(case["site_id"], "county-people");
        // The lab's own site keeps it in its register too.
        let reg = t.get_json(&liu, "/api/v1/lab/critical").await;
        assert_eq!(reg["items"].as_array().unwrap().len(), 1);
        // A critical panel is never auto-released, even from a QC-qualified lab with a rule.
        let panel = t
            .get_json(&liu, &format!("/api/v1/lab/panels/{}", ids[0]))
            .await;
        assert_eq!(panel["state"], "awaiting_review");
        assert_eq!(panel["published"], false);
        t.finish().await;
    }
}

async fn keys(t: &TestHub, token: &str) -> Vec<PublicKeyRecord> {
    serde_json::from_value(t.get_json(token, "/api/v1/keys").await["keys"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panels_are_auto_released_or_signed_off_and_corrections_go_back_to_review() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let liu = t.token("liu.lab").await;
        let wang = t.token("wang.tech").await;
        let huang = t.token("huang.labdoc").await;
        let li = t.token("li.reader").await; // a radiologist: no lab pool
        let zhao = t.token("zhao.clinician").await;
        let chen = t.token("chen.tech").await;

        // The county lab (EQA-qualified for everything in 2026, rule county-lab-normal): a normal
        // final CBC is released without review, by HL7 and by FHIR alike.
        let ids = post_hl7(
            &t,
            &liu,
            &oru_r01(&spec("XR-1", "XRMYY", "COUNTYLAB", "CL-1"), &cbc()),
        )
        .await;
        let p = t
            .get_json(&liu, &format!("/api/v1/lab/panels/{}", ids[0]))
            .await;
        assert_eq!(p["state"], "auto_released", "{p}");
        assert_eq!(p["published"], true);
        assert_eq!(p["review"]["auto_release_rule"], "county-lab-normal");
        assert!(
            p["review"]["decision"]
                .as_str()
                .unwrap()
                .contains("EQA-qualified")
        );
        let bundle = fhir_bundle(&LabSpec::new("XR-2", "XRMYY", "CL-B1", "R4"), &cbc());
        let r = t
            .http
            .post(t.url("/api/v1/lab/fhir"))
            .bearer_auth(&liu)
            .header("content-type", "application/fhir+json")
            .body(bundle)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        let fhir_panel = v["panels"][0]["panel_id"].as_str().unwrap().to_string();
        let p = t
            .get_json(&liu, &format!("/api/v1/lab/panels/{fhir_panel}"))
            .await;
        assert_eq!(p["state"], "auto_released", "{p}");

        // The township lab has no auto-release rule: its panels wait for the lab physicians, the
        // one with a critical value first.
        let township = spec("HX-1", "HX", "HX_LIS", "HX-1");
        let normal = post_hl7(&t, &wang, &oru_r01(&township, &cbc())).await;
        let critical = post_hl7(
            &t,
            &wang,
            &oru_r01(
                &spec("HX-2", "HX", "HX_LIS", "HX-2"),
                &electrolytes_critical(),
            ),
        )
        .await;
        let p = t
            .get_json(&wang, &format!("/api/v1/lab/panels/{}", normal[0]))
            .await;
        assert_eq!(p["state"], "awaiting_review");
        assert_eq!(p["review"]["pool_id"], "county-lab");
        let queue = t.get_json(&huang, "/api/v1/lab/review").await;
        let ids: Vec<&str> = queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["panel_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![critical[0].as_str(), normal[0].as_str()]);
        assert_eq!(queue["items"][0]["critical_cases"][0]["analyte"], "钾");
        let empty = t.get_json(&li, "/api/v1/lab/review").await;
        assert!(
            empty["items"].as_array().unwrap().is_empty(),
            "not a lab physician"
        );
        assert_eq!(
            t.get(&wang, "/api/v1/lab/review").await.status(),
            StatusCode::FORBIDDEN
        );
        let sign_path = format!("/api/v1/lab/panels/{}/sign", normal[0]);
        assert_eq!(
            t.post_json(&li, &sign_path, &json!({})).await.status(),
            StatusCode::NOT_FOUND,
            "another pool's reader cannot sign"
        );
        // Nothing published yet: no sign-off to read.
        let signoff_path = format!("/api/v1/lab/panels/{}/signoff", normal[0]);
        assert_eq!(
            t.get(&zhao, &signoff_path).await.status(),
            StatusCode::NOT_FOUND
        );

        // The lab physician signs off: a signed document over the stored results and the message.
        let r = t
            .post_json(&huang, &sign_path, &json!({"comment": "结果已审核"}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let doc: SignedDocument = r.json().await.unwrap();
        assert_eq!(doc.report["schema"], "yilian.lab-report/1");
        assert_eq!(doc.report["panel"]["panel_id"], normal[0]);
        assert_eq!(doc.report["signer"]["username"], "huang.labdoc");
        assert_eq!(doc.report["comment"], "结果已审核");
        assert_eq!(doc.report["results"].as_array().unwrap().len(), 5);
        let published = keys(&t, &zhao).await;
        verify_document(&doc, &published).expect("the sign-off verifies");
        let mut forged = doc.clone();
        forged.report["results"][0]["value"]["decimal"] = json!("99");
        assert!(
            verify_document(&forged, &published).is_err(),
            "a change breaks it"
        );
        assert_eq!(
            t.post_json(&huang, &sign_path, &json!({})).await.status(),
            StatusCode::CONFLICT,
            "signed once"
        );
        let p = t
            .get_json(&wang, &format!("/api/v1/lab/panels/{}", normal[0]))
            .await;
        assert_eq!(p["state"], "released");
        assert_eq!(p["review"]["released_by"], "huang.labdoc");
        // Anyone who may read results gets the same signed document; another site's tech does not.
        let r = t.get(&zhao, &signoff_path).await;
        assert_eq!(r.status(), StatusCode::OK);
        let again: SignedDocument = r.json().await.unwrap();
        assert_eq!(again, doc);
        assert_eq!(
            t.get(&chen, &signoff_path).await.status(),
            StatusCode::NOT_FOUND
        );

        // The lab corrects the released report: the correction waits for review again, the released
        // panel is superseded and leaves the queue for good.
        let corrected = post_hl7(&t, &wang, &oru_r01(&township.corrected("HX-1C"), &cbc())).await;
        let p = t
            .get_json(&wang, &format!("/api/v1/lab/panels/{}", corrected[0]))
            .await;
        assert_eq!(p["state"], "awaiting_review");
        assert!(
            p["review"]["decision"]
                .as_str()
                .unwrap()
                .contains("corrected"),
            "{p}"
        );
        let queue = t.get_json(&huang, "/api/v1/lab/review").await;
        let ids: Vec<&str> = queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["panel_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![critical[0].as_str(), corrected[0].as_str()]);
        // A superseded panel awaiting review cannot be signed: the newer report is the one to review.
        let twice = spec("HX-3", "HX", "HX_LIS", "HX-3");
        let first = post_hl7(&t, &wang, &oru_r01(&twice, &cbc())).await;
        post_hl7(&t, &wang, &oru_r01(&twice.corrected("HX-3C"), &cbc())).await;
        let r = t
            .post_json(
                &huang,
                &format!("/api/v1/lab/panels/{}/sign", first[0]),
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert!(r.text().await.unwrap().contains("replaces"));

        let events = t.hub.catalog.audit_events(500).await.unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.action == "lab.sign" && e.actor == "huang.labdoc")
        );
        t.finish().await;
    }
}
