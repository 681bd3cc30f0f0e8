//! Report templates, amendments and revocation end to end against the real hub (SQLite always,
//! PostgreSQL when DATABASE_URL is set): a reader writes a CT report in the imaging template (required
//! sections enforced), amends it twice (each old version still verifies and says which version
//! superseded it; the clinician's look-up shows the latest with its chain), then a senior revokes it
//! (作废): the look-up shows it revoked with the reason and not recognised, verification says revoked,
//! nothing more can be amended, and the uploading site is told each time. An ECG report is written
//! in the ECG template.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{ManualClock, TestHub, backends};
use yilian_domain::ecg::LocalDateTime;
use yilian_fixtures::ecg::{EcgSpec, synthesize};
use yilian_fixtures::{InstanceSpec, instance_bytes};
use yilian_formats::ecg::aecg;
use yilian_signing::{PublicKeyRecord, SignedDocument, canonicalize, verify_document};

/// 2026-11-24T00:00:00Z: four days after the CT fixture's study date, inside CT's recognition window.
const NOW: i64 = 1_795_478_400_000;

async fn keys(t: &TestHub, token: &str) -> Vec<PublicKeyRecord> {
    let v = t.get_json(token, "/api/v1/keys").await;
    serde_json::from_value(v["keys"].clone()).unwrap()
}

async fn lookup(t: &TestHub, token: &str) -> Vec<Value> {
    let v = t
        .get_json(
            token,
            "/api/v1/results?patient_id=HX0001&issuer=HX&purpose=test",
        )
        .await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] != "lab")
        .cloned()
        .collect()
}

async fn notification_kinds(t: &TestHub, token: &str) -> Vec<String> {
    let v = t.get_json(token, "/api/v1/notifications").await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_string())
        .collect()
}

async fn ok_json(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn code(r: reqwest::Response, status: StatusCode) -> String {
    let got = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ct_report_is_templated_amended_twice_and_revoked() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        let clock = ManualClock::new(NOW);
        let c: Arc<dyn yilian_app::Clock> = clock.clone();
        // The township CT rule asks for a senior's review (审核): juniors may not amend its report.
        let t = TestHub::start(&backend, Some(c), |cfg| {
            for r in cfg
                .routing
                .rules
                .iter_mut()
                .filter(|r| r.name == "township-ct-mr")
            {
                r.review = true;
            }
        })
        .await;
        let tech = t.token("wang.tech").await;
        let li = t.token("li.reader").await;
        let zhou = t.token("zhou.reader").await;
        let junior = t.token("zheng.resident").await;
        let ecg = t.token("sun.ecg").await;
        let zhao = t.token("zhao.clinician").await;
        let township_doctor = t.token("wu.doctor").await;

        t.stow_all(&tech, &[instance_bytes(&InstanceSpec::ct(1))])
            .await;
        let done = ok_json(t.post(&tech, "/api/v1/studies/2.25.1001/complete").await).await;
        let exam = done["exam_id"].as_str().unwrap().to_string();
        ok_json(t.post(&li, &format!("/api/v1/exams/{exam}/claim")).await).await;

        // The template: readers of the exam's pool only.
        let template_url = format!("/api/v1/exams/{exam}/report/template");
        let tpl = ok_json(t.get(&li, &template_url).await).await;
        assert_eq!(tpl["id"], "imaging");
        let sections: Vec<(&str, &str, bool)> = tpl["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["key"].as_str().unwrap(),
                    s["label_zh"].as_str().unwrap(),
                    s["required"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            sections,
            [
                ("findings", "所见", true),
                ("impression", "诊断意见", true),
                ("recommendations", "建议", false)
            ]
        );
        assert_eq!(
            t.get(&ecg, &template_url).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            t.get(&tech, &template_url).await.status(),
            StatusCode::FORBIDDEN
        );

        // Required sections are enforced, named in the 400; unknown sections are refused.
        let sign_url = format!("/api/v1/exams/{exam}/report/sign");
        let r = t
            .post_json(
                &li,
                &sign_url,
                &json!({"sections": {"findings": "右肺上叶结节，约6 mm。", "recommendations": "随访"}}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let msg = r.json::<Value>().await.unwrap()["message"].to_string();
        assert!(
            msg.contains("impression") && !msg.contains("findings"),
            "{msg}"
        );
        let r = t
            .post_json(
                &li,
                &sign_url,
                &json!({"sections": {"findings": "x", "impression": "y", "rhythm": "z"}}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);

        let v1: SignedDocument = serde_json::from_value(
            ok_json(
                t.post_json(
                    &li,
                    &sign_url,
                    &json!({"sections": {
                        "findings": "右肺上叶结节，约6 mm。",
                        "impression": "右肺上叶小结节。",
                        "recommendations": "12个月后复查CT。"
                    }}),
                )
                .await,
            )
            .await,
        )
        .unwrap();
        assert_eq!(v1.report["template"], "imaging");
        assert_eq!(v1.report["version"], 1);
        // Version 1 readers still find findings and impression; the sections are ordered.
        assert_eq!(v1.report["findings"], "右肺上叶结节，约6 mm。");
        assert_eq!(v1.report["impression"], "右肺上叶小结节。");
        assert_eq!(
            v1.report["sections"][2],
            json!({"key": "recommendations", "label": "建议", "text": "12个月后复查CT。"})
        );
        let id1 = v1.report["report_id"].as_str().unwrap().to_string();

        // Amending: readers of the pool, a senior where the exam needed review, with a reason.
        let amend = |id: &str| format!("/api/v1/reports/{id}/amend");
        let body = json!({"sections": {"impression": "右肺上叶小结节，考虑良性。"}, "reason": "补充诊断意见"});
        for (who, status) in [
            (&ecg, StatusCode::NOT_FOUND),
            (&junior, StatusCode::FORBIDDEN),
            (&zhao, StatusCode::FORBIDDEN),
            (&tech, StatusCode::FORBIDDEN),
        ] {
            assert_eq!(t.post_json(who, &amend(&id1), &body).await.status(), status);
        }
        let r = t
            .post_json(
                &zhou,
                &amend(&id1),
                &json!({"sections": {"impression": "z"}}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a reason is required");

        clock.advance_secs(60);
        let v2: SignedDocument =
            serde_json::from_value(ok_json(t.post_json(&zhou, &amend(&id1), &body).await).await)
                .unwrap();
        let id2 = v2.report["report_id"].as_str().unwrap().to_string();
        assert_ne!(id1, id2, "a new version has its own report id");
        assert_eq!(v2.report["version"], 2);
        assert_eq!(v2.report["signer"]["username"], "zhou.reader");
        assert_eq!(v2.report["amendment"]["reason"], "补充诊断意见");
        // The untouched sections carry over; the amended one changes.
        assert_eq!(v2.report["findings"], "右肺上叶结节，约6 mm。");
        assert_eq!(v2.report["impression"], "右肺上叶小结节，考虑良性。");
        let sup = &v2.report["supersedes"];
        assert_eq!(
            (sup["report_id"].as_str(), sup["version"].as_i64()),
            (Some(id1.as_str()), Some(1))
        );
        let v1_canonical = canonicalize(&v1.report).unwrap();
        assert_eq!(
            sup["document_sha256"],
            hex::encode(Sha256::digest(v1_canonical.as_bytes()))
        );
        assert_eq!(sup["signature_sha256"].as_str().unwrap().len(), 64);

        // An old version cannot be amended again: 409.
        let r = t.post_json(&li, &amend(&id1), &body).await;
        assert_eq!(code(r, StatusCode::CONFLICT).await, "report_superseded");

        clock.advance_secs(60);
        let v3: SignedDocument = serde_json::from_value(
            ok_json(
                t.post_json(
                    &li,
                    &amend(&id2),
                    &json!({"findings": "右肺上叶结节，约7 mm（复核测量）。", "reason": "更正测量值"}),
                )
                .await,
            )
            .await,
        )
        .unwrap();
        let id3 = v3.report["report_id"].as_str().unwrap().to_string();
        assert_eq!(v3.report["version"], 3);
        assert_eq!(v3.report["supersedes"]["report_id"], id2.as_str());

        // Every version still verifies; the old ones say who superseded them, the last is latest.
        let published = keys(&t, &zhao).await;
        let chain = [(&id1, Some(&id2)), (&id2, Some(&id3)), (&id3, None)];
        for (id, next) in chain {
            let got = ok_json(t.get(&zhao, &format!("/api/v1/reports/{id}")).await).await;
            let doc: SignedDocument = serde_json::from_value(got.clone()).unwrap();
            verify_document(&doc, &published).expect("every version stays verifiable");
            assert_eq!(got["lifecycle"]["latest"], next.is_none(), "{got}");
            assert_eq!(
                got["lifecycle"]["superseded_by"]["report_id"].as_str(),
                next.map(|s| s.as_str()),
                "{got}"
            );
            let v = ok_json(t.get(&zhao, &format!("/api/v1/reports/{id}/verify")).await).await;
            let check = |name: &str| {
                v["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["name"] == name)
                    .unwrap_or_else(|| panic!("no {name} check in {v}"))["ok"]
                    .clone()
            };
            assert_eq!(check("signature"), true, "{v}");
            assert_eq!(check("latest"), next.is_none(), "{v}");
            assert_eq!(v["latest"], next.is_none());
            assert_eq!(v["valid"], next.is_none(), "{v}");
            assert_eq!(
                v["superseded_by"]["report_id"].as_str(),
                next.map(|s| s.as_str()),
                "{v}"
            );
        }

        // The clinician's look-up shows only the latest version, with its chain, recognised.
        let items = lookup(&t, &zhao).await;
        assert_eq!(items.len(), 1, "{items:?}");
        let item = &items[0];
        assert_eq!(item["report_id"], id3.as_str());
        assert_eq!(item["status"], "amended");
        assert_eq!(item["version"], 3);
        let chain_ids: Vec<&str> = item["lifecycle"]["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["report_id"].as_str().unwrap())
            .collect();
        assert_eq!(chain_ids, [id1.as_str(), id2.as_str(), id3.as_str()]);
        assert_eq!(item["recognition"]["recognised"], true, "{item}");

        // The uploading site was told of both amendments.
        let kinds = notification_kinds(&t, &tech).await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "report.amended").count(),
            2,
            "{kinds:?}"
        );
        assert!(
            notification_kinds(&t, &township_doctor)
                .await
                .contains(&"report.amended".to_string())
        );

        // Revocation: the signer or a senior of the pool, with a reason, of the latest version only.
        let revoke = |id: &str| format!("/api/v1/reports/{id}/revoke");
        let reason = json!({"reason": "患者信息登记错误（entered in error）"});
        assert_eq!(
            t.post_json(&junior, &revoke(&id3), &reason).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            t.post_json(&ecg, &revoke(&id3), &reason).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            t.post_json(&zhao, &revoke(&id3), &reason).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            t.post_json(&zhou, &revoke(&id3), &json!({"reason": "  "}))
                .await
                .status(),
            StatusCode::BAD_REQUEST
        );
        let r = t.post_json(&zhou, &revoke(&id2), &reason).await;
        assert_eq!(code(r, StatusCode::CONFLICT).await, "report_superseded");
        let rev = ok_json(t.post_json(&zhou, &revoke(&id3), &reason).await).await;
        assert_eq!(rev["report_id"], id3.as_str());
        assert_eq!(rev["revoked_by"], "zhou.reader");
        let rev_doc: SignedDocument = serde_json::from_value(rev["document"].clone()).unwrap();
        assert_eq!(rev_doc.report["schema"], "yilian.report-revocation.v1");
        assert_eq!(rev_doc.report["report"]["report_id"], id3.as_str());
        verify_document(&rev_doc, &keys(&t, &zhao).await).expect("the revocation is signed");

        // The look-up shows it revoked with the reason, not recognised.
        let items = lookup(&t, &zhao).await;
        assert_eq!(items.len(), 1);
        let item = &items[0];
        assert_eq!(item["status"], "revoked", "{item}");
        assert_eq!(
            item["lifecycle"]["revoked"]["reason"],
            "患者信息登记错误（entered in error）"
        );
        assert_eq!(item["recognition"]["recognised"], false);
        assert!(
            item["recognition"]["reasons"]
                .as_array()
                .unwrap()
                .contains(&json!("revoked")),
            "{item}"
        );

        // Verification says revoked (the signature itself still holds).
        let v = ok_json(t.get(&zhao, &format!("/api/v1/reports/{id3}/verify")).await).await;
        assert_eq!(v["valid"], false);
        assert_eq!(v["status"], "revoked");
        assert_eq!(v["revoked"]["revoked_by"], "zhou.reader");
        let checks: Vec<(String, bool)> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["ok"].as_bool().unwrap(),
                )
            })
            .collect();
        assert!(checks.contains(&("signature".into(), true)), "{v}");
        assert!(checks.contains(&("not_revoked".into(), false)), "{v}");
        // A member hospital's EMR importing it as FHIR learns it was entered in error.
        let fhir = t
            .get_json(&zhao, &format!("/fhir/r4/DiagnosticReport/{id3}"))
            .await;
        assert_eq!(fhir["status"], "entered-in-error", "{fhir}");

        // Nothing more: no amendment, no second revocation.
        let r = t.post_json(&li, &amend(&id3), &body).await;
        assert_eq!(code(r, StatusCode::CONFLICT).await, "report_revoked");
        let r = t.post_json(&li, &revoke(&id3), &reason).await;
        assert_eq!(code(r, StatusCode::CONFLICT).await, "report_revoked");

        assert!(
            notification_kinds(&t, &tech)
                .await
                .contains(&"report.revoked".to_string())
        );
        let events = t.hub.catalog.audit_events(500).await.unwrap();
        for (action, actor) in [
            ("report.template.read", "li.reader"),
            ("report.amend", "zhou.reader"),
            ("report.amend", "li.reader"),
            ("report.revoke", "zhou.reader"),
        ] {
            assert!(
                events
                    .iter()
                    .any(|e| e.action == action && e.actor == actor),
                "no {action} by {actor}"
            );
        }
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecg_report_is_written_in_the_ecg_template() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        let t = TestHub::start(&backend, None, |_| {}).await;
        let tech = t.token("wang.tech").await;
        let reader = t.token("sun.ecg").await;
        let mut record = synthesize(&EcgSpec {
            heart_rate_bpm: 72.0,
            seed: 3,
            ..EcgSpec::default()
        })
        .record;
        record.subject.patient_id = Some("HX7101".into());
        record.acquired_at = LocalDateTime::new(2026, 11, 22, 8, 30, 0);
        let r = t
            .http
            .post(t.url("/api/v1/ecg"))
            .bearer_auth(&tech)
            .body(aecg::write(&record).into_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        let exam = v["route"]["exam_id"].as_str().unwrap().to_string();
        ok_json(
            t.post(&reader, &format!("/api/v1/exams/{exam}/claim"))
                .await,
        )
        .await;

        let tpl = ok_json(
            t.get(&reader, &format!("/api/v1/exams/{exam}/report/template"))
                .await,
        )
        .await;
        assert_eq!(tpl["id"], "ecg");
        let labels: Vec<&str> = tpl["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["label_zh"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["心律", "测量", "心电图诊断"]);

        // A draft in sections; signing without the interpretation is refused, naming it.
        let draft_url = format!("/api/v1/exams/{exam}/report");
        let draft = ok_json(
            t.put_json(
                &reader,
                &draft_url,
                &json!({"sections": {"rhythm": "窦性心律", "measurements": "心率72次/分，PR 160 ms，QRS 90 ms，QTc 410 ms"}}),
            )
            .await,
        )
        .await;
        assert_eq!(draft["template"], "ecg");
        let r = t.post(&reader, &format!("{draft_url}/sign")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let msg = r.json::<Value>().await.unwrap()["message"].to_string();
        assert!(
            msg.contains("interpretation") && !msg.contains("rhythm"),
            "{msg}"
        );

        let doc = ok_json(
            t.post_json(
                &reader,
                &format!("{draft_url}/sign"),
                &json!({"sections": {
                    "rhythm": "窦性心律",
                    "measurements": "心率72次/分，PR 160 ms，QRS 90 ms，QTc 410 ms",
                    "interpretation": "正常心电图。"
                }}),
            )
            .await,
        )
        .await;
        let r = &doc["report"];
        assert_eq!(r["template"], "ecg");
        assert_eq!(r["exam"]["kind"], "ecg");
        let keys: Vec<&str> = r["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["rhythm", "measurements", "interpretation"]);
        assert_eq!(r["sections"][2]["label"], "心电图诊断");
        assert_eq!(r["impression"], "正常心电图。");
        let id = r["report_id"].as_str().unwrap();
        let v = ok_json(
            t.get(&reader, &format!("/api/v1/reports/{id}/verify"))
                .await,
        )
        .await;
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["status"], "final");
        t.finish().await;
    }
}
