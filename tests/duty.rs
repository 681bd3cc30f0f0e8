//! Duty and offers under a test clock: the demo's on-duty calendar decides who may take "next", the
//! hub offers each waiting exam to the least-loaded on-duty qualified reader and re-offers it to
//! someone else when the offer lapses, readers see and take only what they are qualified for, urgent
//! notifications go to who is on duty, leave takes a reader off, and a reload changes the calendar.
//! SQLite always, PostgreSQL when DATABASE_URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{ManualClock, TestHub, backends};
use yilian_config::{Config, DEMO_TOML};
use yilian_domain::StudyInstanceUid;
use yilian_fixtures::{InstanceSpec, instance_bytes};

/// Monday 2026-03-02, 09:00 Beijing time: the demo's day shift (李, 周, 郑) is on.
const MONDAY_09: i64 = 1_772_413_200_000;
const HOUR: i64 = 3_600;

/// The demo's calendar with 李 on leave on Tuesday; the background sweep effectively off (the test
/// runs the offer sweep itself).
fn with_demo_rota(cfg: &mut Config) {
    cfg.rota = Config::from_toml(DEMO_TOML, "demo").unwrap().rota;
    cfg.rota.leave = vec![yilian_policy::Leave {
        reader: "li.reader".into(),
        from: "2026-03-03".into(),
        to: "2026-03-03".into(),
        reason: Some("年假".into()),
    }];
    cfg.routing.sweep_interval_secs = 3_600;
}

/// Uploads one single-instance study from 红星镇 and completes it; returns its study UID.
async fn exam_of(t: &TestHub, tech: &str, n: u32, modality: &str, urgent: bool) -> String {
    let study = format!("2.25.70{n:02}");
    let spec = InstanceSpec {
        study_uid: study.clone(),
        series_uid: format!("{study}.1"),
        sop_uid: format!("{study}.1.1"),
        modality: modality.into(),
        study_description: format!("{modality} 检查"),
        ..InstanceSpec::ct(1)
    };
    t.stow_all(tech, &[instance_bytes(&spec)]).await;
    let r = t
        .post_json(
            tech,
            &format!("/api/v1/studies/{study}/complete"),
            &json!({"urgent": urgent, "urgent_reason": if urgent { Some("外伤") } else { None }}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    study
}

async fn exam(t: &TestHub, study: &str) -> yilian_app::ports::ExamRecord {
    t.hub
        .catalog
        .exam_of_study(&StudyInstanceUid::new(study.to_string()).unwrap())
        .await
        .unwrap()
        .expect("routed")
}

fn offered_to(e: &yilian_app::ports::ExamRecord) -> String {
    e.offered_to.as_ref().expect("offered").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_balance_on_duty_qualified_readers_and_lapse_to_another() {
    for backend in backends() {
        let clock = ManualClock::new(MONDAY_09);
        let t = TestHub::start(&backend, Some(clock.clone()), with_demo_rota).await;
        let tech = t.token("wang.tech").await;
        let li = t.token("li.reader").await;
        let zhou = t.token("zhou.reader").await;
        let zheng = t.token("zheng.resident").await;

        let cts = [
            exam_of(&t, &tech, 1, "CT", false).await,
            exam_of(&t, &tech, 2, "CT", false).await,
            exam_of(&t, &tech, 3, "CT", false).await,
        ];
        let mr = exam_of(&t, &tech, 4, "MR", false).await;
        t.hub.offer_waiting().await.unwrap();

        // Three CTs, three free readers on the day shift: one each, with the reason.
        let mut first = Vec::new();
        for s in &cts {
            let e = exam(&t, s).await;
            assert!(
                e.offer_reason
                    .as_deref()
                    .unwrap()
                    .contains("on shift 白班, qualified for CT"),
                "{:?}",
                e.offer_reason
            );
            first.push(offered_to(&e));
        }
        let distinct: HashSet<&String> = first.iter().collect();
        assert_eq!(distinct.len(), 3, "{first:?}");
        // Everyone now holds an offer (max_open = 1): the MR waits for a free reader, offered to
        // nobody and open to any qualified reader's "next".
        let mr_exam = exam(&t, &mr).await;
        assert!(mr_exam.offered_to.is_none(), "{:?}", mr_exam.offered_to);

        // The resident's worklist leaves the MR out, shows whose offer each CT is, and a claim of
        // the MR is refused naming why.
        let list = t.get_json(&zheng, "/api/v1/worklist").await;
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 3, "{list}");
        assert!(items.iter().all(|i| i["modality"] == "CT"));
        assert!(
            items.iter().any(|i| i["offer"]["to"] == "zheng.resident"),
            "{list}"
        );
        let r = t
            .post(&zheng, &format!("/api/v1/exams/{}/claim", mr_exam.exam_id))
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "not_qualified", "{v}");

        // "Next" gives 周 the exam offered to him first; then the unoffered MR, never a CT offered
        // to someone else; then nothing while those offers live.
        let zhou_offer = cts
            .iter()
            .zip(&first)
            .find(|(_, who)| who.as_str() == "zhou.reader")
            .map(|(s, _)| s.clone())
            .unwrap();
        for expected in [zhou_offer.as_str(), mr.as_str()] {
            let r = t.post(&zhou, "/api/v1/worklist/next").await;
            assert_eq!(r.status(), StatusCode::OK);
            let got: Value = r.json().await.unwrap();
            assert_eq!(got["study_instance_uid"], expected);
        }
        let r = t.post(&zhou, "/api/v1/worklist/next").await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);

        // Five minutes later the offers nobody took lapse and go to someone else.
        let before: Vec<(String, String)> = {
            let mut v = Vec::new();
            for s in cts.iter().chain(std::iter::once(&mr)) {
                let e = exam(&t, s).await;
                if e.claimed_by.is_none() {
                    v.push((s.clone(), offered_to(&e)));
                }
            }
            v
        };
        assert!(!before.is_empty());
        clock.advance_secs(301);
        let again = t.hub.offer_waiting().await.unwrap();
        assert_eq!(again.len(), before.len(), "{again:?}");
        for (s, was) in &before {
            let now = offered_to(&exam(&t, s).await);
            assert_ne!(&now, was, "study {s} was re-offered to the same reader");
        }

        // The duty board: the admin sees every pool, a reader only theirs; clinicians none.
        let admin = t.token("admin").await;
        let board = t.get_json(&admin, "/api/v1/duty").await;
        let pools = board["pools"].as_array().unwrap();
        assert_eq!(pools.len(), t.hub.config.pools.len(), "every pool: {board}");
        let rad = pools.iter().find(|p| p["pool_id"] == "county-rad").unwrap();
        assert_eq!(rad["keeps_rota"], true);
        let li_row = rad["readers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["username"] == "li.reader")
            .unwrap();
        assert_eq!(li_row["duty"], "on_duty");
        assert_eq!(li_row["shift"], "白班");
        let ecg = pools.iter().find(|p| p["pool_id"] == "county-ecg").unwrap();
        assert_eq!(ecg["keeps_rota"], false);
        let mine = t.get_json(&li, "/api/v1/duty").await;
        assert_eq!(mine["pools"].as_array().unwrap().len(), 1);
        let doc = t.token("zhao.clinician").await;
        assert_eq!(
            t.get(&doc, "/api/v1/duty").await.status(),
            StatusCode::FORBIDDEN
        );
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_duty_readers_get_no_next_and_urgent_news_goes_to_who_is_on() {
    for backend in backends() {
        // Monday 19:00: only 周 (night shift) is on in county-rad.
        let clock = ManualClock::new(MONDAY_09);
        clock.advance_secs(10 * HOUR);
        let t = TestHub::start(&backend, Some(clock.clone()), with_demo_rota).await;
        let tech = t.token("wang.tech").await;
        let li = t.token("li.reader").await;
        let zhou = t.token("zhou.reader").await;

        let urgent = exam_of(&t, &tech, 11, "CT", true).await;
        let e = exam(&t, &urgent).await;
        assert_ne!(e.priority, yilian_domain::Priority::Routine);

        // The urgent notice is addressed to the reader on duty: 周 sees it, 李 does not.
        let for_zhou = t.get_json(&zhou, "/api/v1/notifications").await;
        let n = for_zhou["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["exam_id"] == e.exam_id.as_str() && n["kind"] == "exam.urgent")
            .cloned()
            .expect("周 is told");
        assert_eq!(n["recipients"], json!(["zhou.reader"]));
        let for_li = t.get_json(&li, "/api/v1/notifications").await;
        assert!(
            !for_li["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["exam_id"] == e.exam_id.as_str()),
            "{for_li}"
        );

        // 李 is off duty: no "next", but an explicit claim (covering) still works.
        let r = t.post(&li, "/api/v1/worklist/next").await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "off_duty");
        assert!(v["message"].as_str().unwrap().contains("off duty"), "{v}");
        let r = t
            .post(&li, &format!("/api/v1/exams/{}/claim", e.exam_id))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = t
            .post(&li, &format!("/api/v1/exams/{}/release", e.exam_id))
            .await;
        assert!(r.status().is_success());
        let r = t.post(&zhou, "/api/v1/worklist/next").await;
        assert_eq!(r.status(), StatusCode::OK);

        // Tuesday 09:00: 李 is on leave, and "next" says so.
        clock.advance_secs(14 * HOUR);
        let r = t.post(&li, "/api/v1/worklist/next").await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let v: Value = r.json().await.unwrap();
        assert!(
            v["message"].as_str().unwrap().contains("on leave (年假)"),
            "{v}"
        );
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_puts_a_new_calendar_in_force() {
    let backend = backends().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alliance.toml");
    // 李 takes every night too.
    let night = DEMO_TOML.replace(
        "days = [\"mon\", \"wed\", \"fri\", \"sun\"]\nreaders = [\"zhou.reader\"]",
        "days = [\"mon\", \"wed\", \"fri\", \"sun\"]\nreaders = [\"zhou.reader\", \"li.reader\"]",
    );
    assert_ne!(
        night, DEMO_TOML,
        "the demo's night shift is where the test expects it"
    );
    std::fs::write(&path, DEMO_TOML).unwrap();
    let clock = ManualClock::new(MONDAY_09);
    clock.advance_secs(10 * HOUR);
    let p = path.clone();
    let t = TestHub::start(&backend, Some(clock.clone()), move |cfg| {
        with_demo_rota(cfg);
        cfg.set_source_path(p);
    })
    .await;
    let li = t.token("li.reader").await;
    let admin = t.token("admin").await;
    assert_eq!(
        t.post(&li, "/api/v1/worklist/next").await.status(),
        StatusCode::CONFLICT
    );
    std::fs::write(&path, night).unwrap();
    let r = t.post(&admin, "/api/v1/admin/routing/reload").await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // On duty now; nothing is waiting.
    assert_eq!(
        t.post(&li, "/api/v1/worklist/next").await.status(),
        StatusCode::NO_CONTENT
    );
    t.finish().await;
}
