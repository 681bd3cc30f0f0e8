//! Worklist operations beyond a reader's own claim: an admin reassigns a queued exam to another reader of
//! its pool (the lease moves, the old holder can no longer write), with the checks a workflow needs.
//! SQLite always, PostgreSQL when DATABASE_URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestHub, backends};
use yilian_fixtures::{InstanceSpec, instance_bytes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reassigns_a_claimed_exam_to_another_reader_of_its_pool() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let tech = t.token("wang.tech").await;
        let li = t.token("li.reader").await;
        let zhou = t.token("zhou.reader").await;
        let admin = t.token("admin").await;
        t.stow_all(&tech, &[instance_bytes(&InstanceSpec::ct(1))])
            .await;
        let r = t.post(&tech, "/api/v1/studies/2.25.1001/complete").await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = t.post(&li, "/api/v1/worklist/next").await;
        assert_eq!(r.status(), StatusCode::OK);
        let exam = r.json::<Value>().await.unwrap()["exam_id"]
            .as_str()
            .unwrap()
            .to_string();
        let path = format!("/api/v1/exams/{exam}/reassign");

        // Only admins reassign; the target must read the exam's pool.
        let r = t.post_json(&li, &path, &json!({"to": "zhou.reader"})).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        for to in ["sun.ecg", "zhao.clinician", "nobody"] {
            let r = t.post_json(&admin, &path, &json!({ "to": to })).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{to}");
        }

        let r = t
            .post_json(&admin, &path, &json!({"to": "zhou.reader"}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["previous_holder"], "li.reader");
        assert_eq!(v["claimed_by"], "zhou.reader");

        // The old holder lost the exam; the new one reports it.
        let draft = json!({"findings": "双肺清晰。", "impression": "未见异常。"});
        let r = t
            .put_json(&li, &format!("/api/v1/exams/{exam}/report"), &draft)
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let r = t
            .post_json(&zhou, &format!("/api/v1/exams/{exam}/report/sign"), &draft)
            .await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{}",
            r.text().await.unwrap_or_default()
        );

        // A signed exam is not reassigned; the reassignment was audited.
        let r = t
            .post_json(&admin, &path, &json!({"to": "li.reader"}))
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let events = t.hub.catalog.audit_events(200).await.unwrap();
        let e = events
            .iter()
            .find(|e| e.action == "exam.reassign")
            .expect("audited");
        assert_eq!(e.actor, "admin");
        assert_eq!(e.detail, "li.reader -> zhou.reader");
        t.finish().await;
    }
}
