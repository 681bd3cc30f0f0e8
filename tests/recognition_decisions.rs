//! Recognition decisions and the prior-result alert end to end against the real hub (SQLite always,
//! PostgreSQL when DATABASE_URL is set): a member hospital's clinician accepts or declines a published
//! CT report and lab results with the standard reasons (their own site deciding, audited with the
//! patient key), is refused for what they may not see or say; an admin reads the rates per item,
//! performing site and month (counts only); and order entry learns whether a recognised prior exists,
//! until its validity window ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{ManualClock, TestHub, backends};
use yilian_domain::LocalPatientId;
use yilian_fixtures::lab::{LabSpec, cbc, fhir_bundle, oru_r01, troponin};

/// 2026-11-24T00:00:00Z (08:00 in the alliance): the day after the lab fixtures' specimens were
/// collected, four days after the CT fixture's study date (2026-11-20).
const NOW: i64 = 1_795_478_400_000;
/// A valid resident ID (GB 11643): the county lab's patient.
const RESIDENT: &str = "11010519491231002X";

/// A township CT (patient HX0001 of issuer HX) stored, routed, read and signed; its report id.
async fn publish_ct(t: &TestHub) -> String {
    t.publish_ct("双肺纹理清晰。", "未见明显异常。").await
}

/// The county lab's CBC for the resident as a FHIR Bundle (final, normal, EQA-qualified lab: auto-
/// released, so published) and a troponin for the same patient over HL7 v2 (awaits a lab physician:
/// unpublished). Their panel ids.
async fn publish_lab(t: &TestHub) -> (String, String) {
    let liu = t.token("liu.lab").await;
    let spec = |control: &str| {
        let mut s = LabSpec::new(RESIDENT, "XRMYY", control, "2.5.1");
        s.performing_lab = "COUNTYLAB".into();
        s
    };
    let r = t
        .http
        .post(t.url("/api/v1/lab/fhir"))
        .bearer_auth(&liu)
        .header("content-type", "application/fhir+json")
        .body(fhir_bundle(&spec("CL-B1"), &cbc()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let cbc_id = v["panels"][0]["panel_id"].as_str().unwrap().to_string();
    let r = t
        .http
        .post(t.url("/api/v1/lab/hl7v2"))
        .bearer_auth(&liu)
        .header("content-type", "x-application/hl7-v2+er7")
        .body(oru_r01(&spec("CL-3"), &troponin("0.523")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let trop_id = r.headers()["x-yilian-lab-panels"]
        .to_str()
        .unwrap()
        .to_string();
    (cbc_id, trop_id)
}

async fn decide(t: &TestHub, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = t.post_json(token, path, &body).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn group<'a>(rates: &'a Value, item: &str, site: &str, month: &str) -> &'a Value {
    rates["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["item"] == item && g["performing_site"] == site && g["month"] == month)
        .unwrap_or_else(|| panic!("no group {item} {site} {month} in {rates}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinicians_accept_and_decline_results_and_admins_read_the_rates() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        let clock = ManualClock::new(NOW);
        let c: Arc<dyn yilian_app::Clock> = clock.clone();
        let t = TestHub::start(&backend, Some(c), |_| {}).await;
        let report_id = publish_ct(&t).await;
        let (cbc_id, trop_id) = publish_lab(&t).await;
        let zhao = t.token("zhao.clinician").await; // 中医院 (member-tcm)
        let report_path = format!("/api/v1/results/report/{report_id}/decision");
        let lab_path = format!("/api/v1/results/lab/{cbc_id}/decision");

        // Accepted: recorded for the clinician's own site, with the recognition shown now.
        let (s, d) = decide(&t, &zhao, &report_path, json!({"decision": "accepted"})).await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        assert_eq!(d["kind"], "report");
        assert_eq!(d["item"], "CT");
        assert_eq!(d["performing_site"], "tw-hongxing");
        assert_eq!(d["deciding_site"], "member-tcm");
        assert_eq!(d["decided_by"], "zhao.clinician");
        assert_eq!(d["recognised_when_decided"], true);
        assert_eq!(d["reason"], Value::Null);
        assert_eq!(d["decided_at"], "2026-11-24T00:00:00.000Z");
        // Declined with a standard reason, labelled in both languages.
        let (s, d) = decide(
            &t,
            &zhao,
            &report_path,
            json!({"decision": "declined", "reason": "condition_changed"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        assert_eq!(d["reason"]["code"], "condition_changed");
        assert_eq!(d["reason"]["zh"], "病情发生变化");
        // Lab: one result (platelets, seq 4) declined as fast-changing, one accepted, the whole report
        // declined for a reason of the clinician's own.
        let (s, d) = decide(
            &t,
            &zhao,
            &lab_path,
            json!({"decision": "declined", "reason": "fast_changing", "seq": 4}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        assert_eq!(d["item"], "777-3");
        assert_eq!(d["seq"], 4);
        assert_eq!(d["performing_site"], "county-people");
        assert_eq!(d["recognised_when_decided"], true);
        let (s, d) = decide(
            &t,
            &zhao,
            &lab_path,
            json!({"decision": "accepted", "seq": 1}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        assert_eq!(d["item"], "6690-2");
        let (s, d) = decide(
            &t,
            &zhao,
            &lab_path,
            json!({"decision": "declined", "reason": "other", "text": "术前需当日复查"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        // The whole report is its service: LOINC when the hub has one, else the lab's code.
        assert_eq!(d["item"], "CBC");
        assert_eq!(d["text"], "术前需当日复查");

        // What cannot be recorded.
        for (body, needle) in [
            (
                json!({"decision": "declined", "reason": "bored"}),
                "unknown reason",
            ),
            (json!({"decision": "declined"}), "needs a reason"),
            (
                json!({"decision": "declined", "reason": "other"}),
                "needs a text",
            ),
            (
                json!({"decision": "accepted", "reason": "too_old"}),
                "takes no reason",
            ),
            (json!({"decision": "maybe"}), "accepted"),
        ] {
            let (s, e) = decide(&t, &zhao, &report_path, body.clone()).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {e}");
            assert!(
                e["message"].as_str().unwrap().contains(needle),
                "{body} → {e}"
            );
        }
        let (s, _) = decide(
            &t,
            &zhao,
            &report_path,
            json!({"decision": "accepted", "seq": 1}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "seq is for lab results");
        // Results the clinician may not see look like unknown ones: an unreleased troponin, a result
        // past the panel's end, an unknown report, an unknown kind.
        for path in [
            format!("/api/v1/results/lab/{trop_id}/decision"),
            format!(
                "/api/v1/results/report/{}/decision",
                "01JZZZZZZZZZZZZZZZZZZZZZZZ"
            ),
            format!("/api/v1/results/exam/{report_id}/decision"),
        ] {
            let (s, e) = decide(&t, &zhao, &path, json!({"decision": "accepted"})).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path} → {e}");
        }
        let (s, _) = decide(
            &t,
            &zhao,
            &lab_path,
            json!({"decision": "accepted", "seq": 99}),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        // Only clinicians decide: not the site tech, the reader, the admin.
        for user in ["wang.tech", "li.reader", "admin"] {
            let tok = t.token(user).await;
            let (s, _) = decide(&t, &tok, &report_path, json!({"decision": "accepted"})).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{user}");
        }

        // 200 days on (2027-06-12) the CT is past its 180-day window: accepting it anyway is allowed
        // and recorded as accepting an unrecognised result.
        clock.advance_secs(200 * 86_400);
        let zhao = t.token("zhao.clinician").await;
        let (s, d) = decide(&t, &zhao, &report_path, json!({"decision": "accepted"})).await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        assert_eq!(d["recognised_when_decided"], false);

        // Audit: one recognition.decide row per stored decision, with the patient key; none for refusals.
        let events = t.hub.catalog.audit_events(10_000).await.unwrap();
        let decided: Vec<_> = events
            .iter()
            .filter(|e| e.action == "recognition.decide")
            .collect();
        assert_eq!(decided.len(), 6, "{decided:?}");
        let ct_key = t.hub.patient_key(&LocalPatientId {
            issuer: "HX".into(),
            id: "HX0001".into(),
        });
        let lab_key = t.hub.patient_key(&LocalPatientId {
            issuer: String::new(),
            id: RESIDENT.into(),
        });
        for e in &decided {
            assert_eq!(e.actor, "zhao.clinician");
            let want = if e.resource_type == "report" {
                &ct_key
            } else {
                &lab_key
            };
            assert_eq!(e.patient_key.as_ref(), Some(want), "{e:?}");
            assert!(
                !e.detail.contains("术前"),
                "free text stays out of the audit"
            );
        }
        assert!(
            decided
                .iter()
                .any(|e| e.resource_id == format!("{cbc_id}-4") && e.outcome == "declined")
        );

        // Rates: admins only, counts per item, performing site and month (alliance time).
        let r = t
            .get(&zhao, "/api/v1/admin/recognition?from=2026-11-01")
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let admin = t.token("admin").await;
        let r = t
            .get(
                &admin,
                "/api/v1/admin/recognition?from=2026-11-01&to=2027-12-31",
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(&ct_key.0) && !text.contains("HX0001") && !text.contains(RESIDENT),
            "no patient in the rates"
        );
        let rates: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(rates["groups"].as_array().unwrap().len(), 5, "{rates}");
        let ct_nov = group(&rates, "CT", "tw-hongxing", "2026-11");
        assert_eq!(ct_nov["decisions"], 2);
        assert_eq!(ct_nov["recognised_shown"], 2);
        assert_eq!(ct_nov["accepted"], 1);
        assert_eq!(ct_nov["declined"], 1);
        assert_eq!(ct_nov["declined_by_reason"]["condition_changed"], 1);
        assert_eq!(ct_nov["declined_by_reason"]["too_old"], 0);
        assert_eq!(ct_nov["exams_avoided"], 1);
        assert_eq!(ct_nov["recognition_rate"], 0.5);
        let ct_jun = group(&rates, "CT", "tw-hongxing", "2027-06");
        assert_eq!(ct_jun["accepted"], 1);
        assert_eq!(ct_jun["accepted_unrecognised"], 1);
        assert_eq!(ct_jun["exams_avoided"], 0);
        assert_eq!(ct_jun["recognition_rate"], Value::Null);
        let plt = group(&rates, "777-3", "county-people", "2026-11");
        assert_eq!(plt["declined_by_reason"]["fast_changing"], 1);
        assert_eq!(plt["recognition_rate"], 0.0);
        let wbc = group(&rates, "6690-2", "county-people", "2026-11");
        assert_eq!(wbc["exams_avoided"], 1);
        assert_eq!(wbc["recognition_rate"], 1.0);
        assert_eq!(
            group(&rates, "CBC", "county-people", "2026-11")["declined_by_reason"]["other"],
            1
        );
        // A range before any decision is empty; a reversed one is refused.
        let empty: Value = t
            .get_json(
                &admin,
                "/api/v1/admin/recognition?from=2026-01-01&to=2026-11-01",
            )
            .await;
        assert_eq!(empty["groups"], json!([]));
        let r = t
            .get(
                &admin,
                "/api/v1/admin/recognition?from=2027-01-01&to=2026-01-01",
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);

        // This process's counters.
        let metrics = t.get(&admin, "/metrics").await.text().await.unwrap();
        for line in [
            "yilian_recognition_decisions_total{decision=\"accepted\"} 3",
            "yilian_recognition_decisions_total{decision=\"declined\"} 3",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
        }
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_entry_learns_of_a_recognised_prior_until_it_expires() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        let clock = ManualClock::new(NOW);
        let c: Arc<dyn yilian_app::Clock> = clock.clone();
        let t = TestHub::start(&backend, Some(c), |_| {}).await;
        let report_id = publish_ct(&t).await;
        let (cbc_id, _) = publish_lab(&t).await;
        let zhao = t.token("zhao.clinician").await;
        let prior = |q: &str| format!("/api/v1/results/prior?{q}");

        // A recognised CT: its id, site, date, window and a sentence.
        let a = t
            .get_json(&zhao, &prior("patient_id=HX0001&issuer=HX&item=CT"))
            .await;
        assert_eq!(a["recognised_prior"], true, "{a}");
        assert_eq!(a["prior"]["kind"], "report");
        assert_eq!(a["prior"]["id"], json!(report_id));
        assert_eq!(a["prior"]["site_id"], "tw-hongxing");
        assert_eq!(a["prior"]["performed_at"], "2026-11-20T00:00:00.000Z");
        assert_eq!(a["prior"]["valid_until"], "2027-05-19T00:00:00.000Z");
        assert_eq!(a["prior"]["mark"], "HR");
        let msg = a["message"].as_str().unwrap();
        assert!(
            msg.contains("recognised (HR) CT") && msg.contains("2027-05-19"),
            "{msg}"
        );
        // No MR for this patient; the same CT is not found under another issuer's ID.
        let a = t
            .get_json(&zhao, &prior("patient_id=HX0001&issuer=HX&item=MR"))
            .await;
        assert_eq!(a["recognised_prior"], false);
        assert_eq!(a["prior"], Value::Null);
        let a = t
            .get_json(&zhao, &prior("patient_id=HX0001&issuer=DS&item=CT"))
            .await;
        assert_eq!(a["recognised_prior"], false);
        assert!(a["message"].as_str().unwrap().starts_with("No prior CT"));
        // Lab by LOINC, the patient by resident ID (any issuer).
        let a = t
            .get_json(&zhao, &prior(&format!("patient_id={RESIDENT}&item=777-3")))
            .await;
        assert_eq!(a["recognised_prior"], true, "{a}");
        assert_eq!(a["prior"]["id"], json!(format!("{cbc_id}-4")));
        assert_eq!(
            a["prior"]["link"],
            json!(format!("/fhir/r4/Observation/{cbc_id}-4"))
        );
        assert_eq!(a["prior"]["site_id"], "county-people");

        // Ten days on: platelets (7-day window) have expired, leukocytes (30 days) have not.
        clock.advance_secs(10 * 86_400);
        let zhao = t.token("zhao.clinician").await;
        let a = t
            .get_json(&zhao, &prior(&format!("patient_id={RESIDENT}&item=777-3")))
            .await;
        assert_eq!(a["recognised_prior"], false, "{a}");
        assert_eq!(
            a["prior"]["id"],
            json!(format!("{cbc_id}-4")),
            "the newest, to say why"
        );
        assert!(
            a["message"]
                .as_str()
                .unwrap()
                .contains("older than its validity window"),
            "{a}"
        );
        let a = t
            .get_json(&zhao, &prior(&format!("patient_id={RESIDENT}&item=6690-2")))
            .await;
        assert_eq!(a["recognised_prior"], true, "{a}");
        // 200 days on the CT has expired too.
        clock.advance_secs(190 * 86_400);
        let zhao = t.token("zhao.clinician").await;
        let a = t
            .get_json(&zhao, &prior("patient_id=HX0001&issuer=HX&item=CT"))
            .await;
        assert_eq!(a["recognised_prior"], false, "{a}");
        assert_eq!(a["prior"]["recognised"], false);
        assert!(
            a["message"].as_str().unwrap().contains("not recognised"),
            "{a}"
        );

        // Clinicians only; patient and item required.
        for user in ["wang.tech", "li.reader", "admin"] {
            let tok = t.token(user).await;
            let r = t
                .get(&tok, &prior("patient_id=HX0001&issuer=HX&item=CT"))
                .await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{user}");
        }
        let r = t
            .get(&zhao, &prior("patient_id=HX0001&issuer=HX&item="))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);

        // Every answer is audited; a found patient with their key.
        let events = t.hub.catalog.audit_events(10_000).await.unwrap();
        let checks: Vec<_> = events
            .iter()
            .filter(|e| e.action == "results.prior")
            .collect();
        assert_eq!(checks.len(), 7, "{checks:?}");
        let ct_key = t.hub.patient_key(&LocalPatientId {
            issuer: "HX".into(),
            id: "HX0001".into(),
        });
        assert_eq!(
            checks
                .iter()
                .filter(|e| e.patient_key.as_ref() == Some(&ct_key))
                .count(),
            3
        );
        assert_eq!(
            checks.iter().filter(|e| e.patient_key.is_none()).count(),
            1,
            "the unknown issuer's patient"
        );
        assert!(checks.iter().all(|e| !e.resource_id.contains("HX0001")));
        let admin = t.token("admin").await;
        let metrics = t.get(&admin, "/metrics").await.text().await.unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l == "yilian_prior_checks_total{found=\"true\"} 3"),
            "{metrics}"
        );
        t.finish().await;
    }
}
