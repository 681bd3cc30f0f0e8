//! The alliance patient index end to end (SQLite always, PostgreSQL when DATABASE_URL is set): a
//! member-hospital clinician finds one person's results from every site by a resident ID or by any
//! site's local ID linked to it, never another person's — even when two sites use the same local ID
//! for different people — and is refused, not misled, when a site's local ID has come to name two
//! people.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestHub, backends, multipart};
use yilian_fixtures::lab::{LabSpec, cbc, oru_r01};
use yilian_fixtures::{InstanceSpec, instance_bytes_with_other_ids};

/// Three people's resident IDs (valid GB 11643 check characters, synthetic).
const R1: &str = "11010519491231002X";
const R2: &str = "440304198001011239";
const R3: &str = "320102197512124563";

/// A DX study stored by a township tech, completed, claimed and signed by the county reader.
async fn publish(
    t: &TestHub,
    tech: &str,
    study: &str,
    issuer: &str,
    patient_id: &str,
    other_ids: &[(&str, &str)],
) -> String {
    let tech = t.token(tech).await;
    let reader = t.token("li.reader").await;
    let spec = InstanceSpec {
        patient_id: patient_id.into(),
        issuer_of_patient_id: Some(issuer.into()),
        study_uid: study.into(),
        series_uid: format!("{study}.1"),
        sop_uid: format!("{study}.1.1"),
        modality: "DX".into(),
        study_description: "DX CHEST".into(),
        ..InstanceSpec::ct(1)
    };
    let file = instance_bytes_with_other_ids(&spec, other_ids);
    let (ct, body) = multipart(&[("application/dicom", file.as_slice())]);
    let r = t
        .http
        .post(t.url("/dicomweb/studies"))
        .bearer_auth(&tech)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "stow {study}");
    let done: Value = t
        .post(&tech, &format!("/api/v1/studies/{study}/complete"))
        .await
        .json()
        .await
        .unwrap();
    let exam_id = done["exam_id"].as_str().expect("routed").to_string();
    let r = t
        .post(&reader, &format!("/api/v1/exams/{exam_id}/claim"))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "claim {study}");
    let r = t
        .post_json(
            &reader,
            &format!("/api/v1/exams/{exam_id}/report/sign"),
            &json!({"findings": format!("{study} 所见。"), "impression": "未见明显异常。"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "sign {study}");
    let signed: Value = r.json().await.unwrap();
    signed["report"]["report_id"].as_str().unwrap().to_string()
}

/// The studies a clinician's look-up by (issuer, id) returns, sorted, and its `unattributed` count;
/// or the refusal's status and code.
async fn lookup(
    t: &TestHub,
    issuer: &str,
    id: &str,
) -> Result<(Vec<String>, u64, usize), (StatusCode, String)> {
    let doc = t.token("zhao.clinician").await;
    let r = t
        .get(
            &doc,
            &format!("/api/v1/results?issuer={issuer}&patient_id={id}&purpose=treatment"),
        )
        .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    if status != StatusCode::OK {
        return Err((status, v["code"].as_str().unwrap_or_default().to_string()));
    }
    let items = v["items"].as_array().unwrap();
    let mut studies: Vec<String> = items
        .iter()
        .filter_map(|i| i["study_instance_uid"].as_str().map(str::to_string))
        .collect();
    studies.sort();
    let lab = items.iter().filter(|i| i["kind"] == "lab").count();
    Ok((studies, v["unattributed"].as_u64().unwrap(), lab))
}

fn uids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn one_person_across_sites_never_another() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        // Person 1 at 红星 as HX/1001 (the PACS passes the resident ID on), at 东山 as DS/D-77.
        publish(&t, "wang.tech", "2.25.7001", "HX", "1001", &[("RID", R1)]).await;
        publish(&t, "chen.tech", "2.25.7003", "DS", "D-77", &[("RID", R1)]).await;
        // An older 红星 study of person 1 that carried only the local ID.
        publish(&t, "wang.tech", "2.25.7004", "HX", "1001", &[]).await;
        // Person 2 is DS/1001 at 东山: the same local number as person 1 at 红星.
        publish(&t, "chen.tech", "2.25.7002", "DS", "1001", &[("RID", R2)]).await;
        // Person 1's blood count from the county lab: PID-3 carries the lab's number and the
        // resident ID (two repetitions).
        let liu = t.token("liu.lab").await;
        let mut spec = LabSpec::new(&format!("C-555^^^XRMYY^MR~{R1}"), "RID", "PL-1", "2.5.1");
        spec.performing_lab = "COUNTYLAB".into();
        let r = t
            .http
            .post(t.url("/api/v1/lab/hl7v2"))
            .bearer_auth(&liu)
            .header("content-type", "x-application/hl7-v2+er7")
            .body(oru_r01(&spec, &cbc()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        let person1 = uids(&["2.25.7001", "2.25.7003", "2.25.7004"]);
        // By the resident ID, and by each site's local ID of person 1: the same person, every site.
        for (issuer, id) in [("", R1), ("HX", "1001"), ("DS", "D-77"), ("XRMYY", "C-555")] {
            let (studies, unattributed, lab) = lookup(&t, issuer, id).await.unwrap();
            assert_eq!(studies, person1, "{issuer}/{id} on {backend:?}");
            assert_eq!(unattributed, 0);
            assert_eq!(lab, 1, "the county CBC is person 1's ({issuer}/{id})");
        }
        // The same number at the other township is person 2, and only person 2.
        let (studies, _, lab) = lookup(&t, "DS", "1001").await.unwrap();
        assert_eq!(studies, uids(&["2.25.7002"]));
        assert_eq!(lab, 0);
        assert_eq!(lookup(&t, "", R2).await.unwrap().0, uids(&["2.25.7002"]));
        // A local number nobody issued finds nobody; one without its issuer, or a resident ID with a
        // wrong check character, is a question to fix, not an empty answer.
        assert!(lookup(&t, "HX", "9999").await.unwrap().0.is_empty());
        assert_eq!(
            lookup(&t, "", "1001").await.unwrap_err(),
            (StatusCode::BAD_REQUEST, "bad_request".to_string())
        );
        assert_eq!(
            lookup(&t, "", "110105194912310021").await.unwrap_err(),
            (StatusCode::BAD_REQUEST, "bad_request".to_string())
        );

        // 红星 reuses HX/1001 for person 3 (a data-entry error, or a recycled number).
        publish(&t, "wang.tech", "2.25.7005", "HX", "1001", &[("RID", R3)]).await;
        // HX/1001 now names two people: refused, not guessed.
        assert_eq!(
            lookup(&t, "HX", "1001").await.unwrap_err(),
            (StatusCode::CONFLICT, "patient_ambiguous".to_string())
        );
        // By resident ID each person still gets their own studies; the study filed only under the
        // disputed number is nobody's until the site resolves it, and the answer says so.
        let (studies, unattributed, lab) = lookup(&t, "", R1).await.unwrap();
        assert_eq!(studies, uids(&["2.25.7001", "2.25.7003"]));
        assert_eq!((unattributed, lab), (1, 1));
        let (studies, unattributed, _) = lookup(&t, "", R3).await.unwrap();
        assert_eq!(studies, uids(&["2.25.7005"]));
        assert_eq!(unattributed, 1);
        // Person 1's other local IDs are unaffected.
        assert_eq!(
            lookup(&t, "DS", "D-77").await.unwrap().0,
            uids(&["2.25.7001", "2.25.7003"])
        );
        // The refused look-up is in the audit trail as a conflict.
        let events = t.hub.catalog.audit_events(1000).await.unwrap();
        let conflicts = events
            .iter()
            .filter(|e| e.action == "results.lookup" && e.outcome == "conflict")
            .count();
        assert_eq!(conflicts, 1);
        t.finish().await;
    }
}
