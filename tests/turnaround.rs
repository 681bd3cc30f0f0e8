//! Turnaround and `/metrics` over real HTTP on every catalog backend: studies are received, routed,
//! claimed and signed at known clock times; the admin's turnaround report and the Prometheus text show
//! exactly those intervals, the late and the overdue exam as breaches, and the worklist depth. Only an
//! admin's token reads either.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, ManualClock, TestHub, backends};
use yilian_fixtures::{InstanceSpec, instance_bytes};

/// 2026-11-18T11:06:40Z: the clock every step is measured from.
const T0: i64 = 1_795_000_000_000;
const MIN: i64 = 60;

fn ct_study(study: &str) -> Vec<u8> {
    instance_bytes(&InstanceSpec {
        study_uid: study.into(),
        series_uid: format!("{study}.1"),
        sop_uid: format!("{study}.1.1"),
        ..InstanceSpec::ct(1)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnaround_and_metrics_follow_the_clock() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        run(&backend).await;
    }
}

async fn complete(t: &TestHub, tech: &str, study: &str) -> String {
    let r: Value = t
        .post(tech, &format!("/api/v1/studies/{study}/complete"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["state"], "routed", "{r}");
    r["exam_id"].as_str().unwrap().to_string()
}

async fn sign(t: &TestHub, reader: &str, exam: &str) {
    let r = t
        .post_json(
            reader,
            &format!("/api/v1/exams/{exam}/report/sign"),
            &json!({"findings": "双肺纹理清晰。", "impression": "胸部CT未见异常。"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn run(backend: &Backend) {
    let clock = ManualClock::new(T0);
    let t = TestHub::start(backend, Some(clock.clone()), |_| {}).await;
    let tech = t.token("wang.tech").await;
    let reader = t.token("li.reader").await;
    let admin = t.token("admin").await;
    let clinician = t.token("zhao.clinician").await;

    // t = 0: two CT studies arrive from 红星 (rule township-ct-mr: county-rad, routine, 240 min).
    t.stow_all(&tech, &[ct_study("2.25.5001"), ct_study("2.25.5002")])
        .await;
    // t = 5 min: the tech says both are complete; they are routed now (due at 245 min).
    clock.advance_secs(5 * MIN);
    let a = complete(&t, &tech, "2.25.5001").await;
    let b = complete(&t, &tech, "2.25.5002").await;

    // A: claimed at 15 min, the lease renewed at 20 (the first claim stands), signed at 45.
    clock.advance_secs(10 * MIN);
    let claim = t.post(&reader, &format!("/api/v1/exams/{a}/claim")).await;
    assert_eq!(claim.status(), StatusCode::OK);
    clock.advance_secs(5 * MIN);
    let renew = t.post(&reader, &format!("/api/v1/exams/{a}/claim")).await;
    assert_eq!(renew.status(), StatusCode::OK);
    clock.advance_secs(25 * MIN);
    sign(&t, &reader, &a).await;

    // B: taken with "next" at 65 min, signed at 300 min, after its 245-minute due time: a breach.
    clock.advance_secs(20 * MIN);
    let next: Value = t
        .post(&reader, "/api/v1/worklist/next")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["exam_id"], b.as_str());
    clock.advance_secs(235 * MIN);
    sign(&t, &reader, &b).await;

    // C: arrives and is routed at 300 min, nobody claims it; at 546 min it is past due (545).
    t.stow_all(&tech, &[ct_study("2.25.5003")]).await;
    let _c = complete(&t, &tech, "2.25.5003").await;
    clock.advance_secs(246 * MIN);

    // A clinician looks the patient up once (recognition look-ups are counted).
    let found = t
        .get(&clinician, "/api/v1/results?patient_id=HX0001&issuer=HX")
        .await;
    assert_eq!(found.status(), StatusCode::OK);

    // --- The turnaround report.
    let path = "/api/v1/admin/turnaround?from=2026-11-18&to=2026-11-20";
    let report: Value = t.get_json(&admin, path).await;
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{report}");
    let rad = &groups[0];
    assert_eq!(rad["pool_id"], "county-rad");
    assert_eq!(rad["priority"], "routine");
    assert_eq!(rad["count"], 3);
    assert_eq!(rad["signed"], 2);
    assert_eq!(rad["sla_breaches"], 2, "B signed late and C overdue: {rad}");
    // received → signed: A 45 min, B 300 min; routed → claimed: A 10 min, B 60 min.
    assert_eq!(
        rad["received_to_signed_minutes"],
        json!({"n": 2, "p50": 45.0, "p90": 300.0})
    );
    assert_eq!(
        rad["routed_to_claimed_minutes"],
        json!({"n": 2, "p50": 10.0, "p90": 60.0})
    );
    // A range that ends before anything was routed is empty; a reversed one is refused.
    let before: Value = t
        .get_json(
            &admin,
            "/api/v1/admin/turnaround?from=2026-11-01&to=2026-11-18T11:10:00Z",
        )
        .await;
    assert_eq!(before["groups"], json!([]), "{before}");
    let reversed = t
        .get(
            &admin,
            "/api/v1/admin/turnaround?from=2026-11-20&to=2026-11-18",
        )
        .await;
    assert_eq!(reversed.status(), StatusCode::BAD_REQUEST);
    let bad = t
        .get(&admin, "/api/v1/admin/turnaround?from=last-week")
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        t.get(&reader, path).await.status(),
        StatusCode::FORBIDDEN,
        "aggregates are for admins"
    );
    assert_eq!(
        t.http.get(t.url(path)).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // --- /metrics
    let unauthenticated = t.http.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.get(&reader, "/metrics").await.status(),
        StatusCode::FORBIDDEN
    );
    let resp = t.get(&admin, "/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    let size: u64 = ["2.25.5001", "2.25.5002", "2.25.5003"]
        .iter()
        .map(|s| ct_study(s).len() as u64)
        .sum();
    for line in [
        "yilian_ingest_instances_total 3".to_string(),
        format!("yilian_ingest_bytes_total {size}"),
        // C waits; every configured pool and priority has a series, 0 when empty.
        "yilian_worklist_depth{pool=\"county-rad\",priority=\"routine\"} 1".into(),
        "yilian_worklist_depth{pool=\"county-rad\",priority=\"stat\"} 0".into(),
        "yilian_worklist_depth{pool=\"county-ecg\",priority=\"routine\"} 0".into(),
        "yilian_sla_breaches_total{pool=\"county-rad\"} 2".into(),
        "yilian_sla_breaches_total{pool=\"county-ecg\"} 0".into(),
        // 45 min = 2700 s and 300 min = 18000 s.
        "yilian_report_turnaround_seconds_bucket{pool=\"county-rad\",le=\"1800\"} 0".into(),
        "yilian_report_turnaround_seconds_bucket{pool=\"county-rad\",le=\"3600\"} 1".into(),
        "yilian_report_turnaround_seconds_bucket{pool=\"county-rad\",le=\"14400\"} 1".into(),
        "yilian_report_turnaround_seconds_bucket{pool=\"county-rad\",le=\"28800\"} 2".into(),
        "yilian_report_turnaround_seconds_bucket{pool=\"county-rad\",le=\"+Inf\"} 2".into(),
        "yilian_report_turnaround_seconds_sum{pool=\"county-rad\"} 20700".into(),
        "yilian_report_turnaround_seconds_count{pool=\"county-rad\"} 2".into(),
        "yilian_results_lookups_total 1".into(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        !text.contains("HX0001") && !text.contains("2.25.500"),
        "no patient or study identifiers in metrics"
    );
    t.finish().await;
}
