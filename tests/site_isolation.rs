//! Two township sites' data never leak to each other: each uploads a CT study (STOW-RS) and sends a
//! lab panel with a critical value; the other site's tech finds nothing of it through QIDO at every
//! level, WADO-RS, metadata, rendered frames, WADO-URI, the study status, the lab panel, the
//! critical-value register and case, the sign-off, or notifications — every answer is "not found" or
//! an empty list, exactly as for a UID that does not exist. (Clinicians of member hospitals see
//! published results across sites by design; that is tested with recognition.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::{TestHub, backends, multipart};
use yilian_fixtures::lab::{LabSpec, electrolytes_critical, oru_r01};
use yilian_fixtures::{InstanceSpec, instance_bytes};

fn study(site: &str, n: u32) -> (String, Vec<u8>) {
    let mut spec = InstanceSpec::ct(1);
    spec.study_uid = format!("2.25.77{n}");
    spec.series_uid = format!("2.25.77{n}.1");
    spec.sop_uid = format!("2.25.77{n}.1.1");
    spec.patient_id = format!("{site}-P{n}");
    spec.issuer_of_patient_id = Some(site.to_string());
    (spec.study_uid.clone(), instance_bytes(&spec))
}

async fn stow(t: &TestHub, token: &str, file: &[u8]) {
    let (ct, body) = multipart(&[("application/dicom", file)]);
    let r = t
        .http
        .post(t.url("/dicomweb/studies"))
        .bearer_auth(token)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn lab(t: &TestHub, token: &str, issuer: &str, facility: &str, control: &str) -> String {
    let mut spec = LabSpec::new(&format!("{issuer}-L1"), issuer, control, "2.5.1");
    spec.performing_lab = facility.to_string();
    let r = t
        .http
        .post(t.url("/api/v1/lab/hl7v2"))
        .bearer_auth(token)
        .header("content-type", "x-application/hl7-v2+er7")
        .body(oru_r01(&spec, &electrolytes_critical()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.headers()["x-yilian-lab-panels"]
        .to_str()
        .unwrap()
        .to_string()
}

/// What one site's tech may see of a study, a panel and a case of the site `own`: everything; of the
/// other site's: nothing.
async fn probe(
    t: &TestHub,
    token: &str,
    study: &str,
    panel: &str,
    case: &str,
) -> Vec<(String, StatusCode, usize)> {
    let mut out = Vec::new();
    for path in [
        format!("/dicomweb/studies?StudyInstanceUID={study}"),
        format!("/dicomweb/series?StudyInstanceUID={study}"),
        format!("/dicomweb/instances?StudyInstanceUID={study}"),
        format!("/dicomweb/studies/{study}/series"),
        format!("/dicomweb/studies/{study}/metadata"),
        format!("/dicomweb/studies/{study}"),
        format!("/dicomweb/studies/{study}/series/{study}.1/instances/{study}.1.1/rendered"),
        format!(
            "/wado?requestType=WADO&studyUID={study}&seriesUID={study}.1&objectUID={study}.1.1"
        ),
        format!("/api/v1/studies/{study}"),
        format!("/api/v1/lab/panels/{panel}"),
        format!("/api/v1/lab/panels/{panel}/signoff"),
        format!("/api/v1/lab/critical/{case}"),
    ] {
        let r = t.get(token, &path).await;
        let status = r.status();
        let body = r.bytes().await.unwrap();
        // A search answer: how many matches it lists.
        let n = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(usize::from(status.is_success()));
        out.push((path, status, n));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_never_see_each_others_data() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let wang = t.token("wang.tech").await; // 红星镇 tw-hongxing
        let chen = t.token("chen.tech").await; // 东山镇 tw-dongshan
        let (hx_study, hx_file) = study("HX", 1);
        let (ds_study, ds_file) = study("DS", 2);
        stow(&t, &wang, &hx_file).await;
        stow(&t, &chen, &ds_file).await;
        // The demo's only township LIS is 红星镇's; 东山镇's panels come from its own lab below.
        let hx_panel = lab(&t, &wang, "HX", "HX_LIS", "ISO-1").await;
        let hx_case = {
            let v = t.get_json(&wang, "/api/v1/lab/critical").await;
            v["items"][0]["case_id"]
                .as_str()
                .expect("a case")
                .to_string()
        };

        // 红星镇 sees its own study, panel and case.
        for (path, status, n) in probe(&t, &wang, &hx_study, &hx_panel, &hx_case).await {
            if path.ends_with("/signoff") {
                assert_eq!(status, StatusCode::NOT_FOUND, "{path}: nothing signed yet");
                continue;
            }
            assert!(
                status.is_success() && n > 0,
                "{path}: {status}, {n} matches"
            );
        }
        // 东山镇 sees none of it: searches are empty, reads are 404, as for a UID that does not exist.
        let theirs = probe(&t, &chen, &hx_study, &hx_panel, &hx_case).await;
        let absent = probe(
            &t,
            &chen,
            "2.25.999999",
            "01ZZZZZZZZZZZZZZZZZZZZZZZZ",
            "01ZZZZZZZZZZZZZZZZZZZZZZZZ",
        )
        .await;
        for ((path, status, n), (_, absent_status, absent_n)) in theirs.iter().zip(&absent) {
            assert_eq!(
                n, absent_n,
                "{path}: match count differs from a UID that does not exist"
            );
            assert_eq!(n, &0, "{path}: {status} lists another site's data");
            assert_eq!(
                status, absent_status,
                "{path}: differs from a UID that does not exist"
            );
            assert!(!status.is_success() || *n == 0, "{path}: {status}");
        }
        // Its own study is there for it, and not for 红星镇.
        let mine = t
            .get_json(
                &chen,
                &format!("/dicomweb/studies?StudyInstanceUID={ds_study}"),
            )
            .await;
        assert_eq!(mine.as_array().unwrap().len(), 1);
        let not_mine = t
            .get_json(
                &wang,
                &format!("/dicomweb/studies?StudyInstanceUID={ds_study}"),
            )
            .await;
        assert_eq!(not_mine.as_array().map(Vec::len).unwrap_or(0), 0);
        // An unfiltered QIDO lists only one's own studies; the register and notifications likewise.
        let all = t.get_json(&chen, "/dicomweb/studies").await;
        let uids: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["0020000D"]["Value"][0].as_str())
            .collect();
        assert_eq!(uids, vec![ds_study.as_str()]);
        let reg = t.get_json(&chen, "/api/v1/lab/critical").await;
        assert!(reg["items"].as_array().unwrap().is_empty());
        let notes = t.get_json(&chen, "/api/v1/notifications").await;
        assert!(notes["items"].as_array().unwrap().is_empty());
        t.finish().await;
    }
}
