//! Routing rules an admin changes without a restart, on every catalog backend: the rules are re-read
//! from the configuration file through `POST /api/v1/admin/routing/reload`; the next study routes by
//! the new rules (matched on site, modality, description, the patient's age from the catalog, the
//! alliance's local day and hour) with a senior review flag; a broken file is refused with its line
//! and the rules in force stay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::{Backend, ManualClock, TestHub, backends};
use yilian_fixtures::{InstanceSpec, instance_bytes};

/// Tuesday 2026-03-03, 10:00 in Beijing (02:00 UTC).
const TUESDAY_10_BEIJING: i64 = 1_772_467_200_000 + 10 * 3_600_000;

/// A one-slice CT study of the fixtures' patient (born 1960-01-01) with its own UIDs.
fn ct_study(n: u32) -> (String, Vec<u8>) {
    let study = format!("2.25.77{n}");
    let spec = InstanceSpec {
        study_uid: study.clone(),
        series_uid: format!("{study}.1"),
        sop_uid: format!("{study}.1.1"),
        ..InstanceSpec::ct(1)
    };
    (study, instance_bytes(&spec))
}

/// A rule in front of the demo's rules: elderly patients' chest CTs from 红星镇 on weekday office
/// hours go to the on-call pool and need a senior review.
const NEW_RULE: &str = r#"[[routing.rules]]
name = "elderly-chest-daytime"
sites = ["tw-hongxing"]
modalities = ["CT"]
description_contains = ["chest"]
min_age_years = 65
days = ["mon", "tue", "wed", "thu", "fri"]
hours = "08:00-17:30"
pool = "county-ecg-oncall"
sla_minutes = 60
review = true

"#;

fn with_rule_first(rule: &str) -> String {
    yilian_config::DEMO_TOML.replacen(
        "[[routing.rules]]\n",
        &format!("{rule}[[routing.rules]]\n"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reloads_routing_rules_without_a_restart() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        reload(&backend).await;
    }
}

/// Every reader may read every modality of their pools.
fn any_modality(c: &mut yilian_config::Config) {
    for u in &mut c.users {
        u.modalities.clear();
    }
}

async fn route_one(t: &TestHub, tech: &str, n: u32) -> Value {
    let (study, bytes) = ct_study(n);
    t.stow_all(tech, &[bytes]).await;
    let r = t
        .post(tech, &format!("/api/v1/studies/{study}/complete"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["state"], "routed", "{v}");
    v
}

async fn reload(backend: &Backend) {
    let clock = ManualClock::new(TUESDAY_10_BEIJING);
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("yilian.toml");
    std::fs::write(&path, yilian_config::DEMO_TOML).unwrap();
    let p = path.clone();
    let t = TestHub::start(backend, Some(clock.clone()), move |c| {
        c.set_source_path(p);
        // The new rule sends a CT to the ECG on-call pool: its reader must be qualified for CT.
        any_modality(c);
    })
    .await;
    let tech = t.token("wang.tech").await;
    let admin = t.token("admin").await;
    let reader = t.token("li.reader").await;
    let oncall = t.token("qian.cardio").await;
    let reload_path = "/api/v1/admin/routing/reload";

    // The demo rules: a township CT goes to county radiology, no review.
    let first = route_one(&t, &tech, 1).await;
    assert!(
        first["explanation"]
            .as_str()
            .unwrap()
            .contains("township-ct-mr"),
        "{first}"
    );
    let wl: Value = t.get_json(&reader, "/api/v1/worklist").await;
    assert_eq!(wl["items"][0]["review_required"], false, "{wl}");

    // Only an admin may reload.
    assert_eq!(
        t.post(&reader, reload_path).await.status(),
        StatusCode::FORBIDDEN
    );

    std::fs::write(&path, with_rule_first(NEW_RULE)).unwrap();
    let r = t.post(&admin, reload_path).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["rules"][0], "elderly-chest-daytime", "{v}");
    assert_eq!(v["rules"][1], "ecg", "{v}");

    // The next study routes by the new rule, with every matcher named.
    let second = route_one(&t, &tech, 2).await;
    let why = second["explanation"].as_str().unwrap();
    for part in [
        "rule \"elderly-chest-daytime\" matched site tw-hongxing",
        "description contains \"chest\"",
        "patient age 66 (≥ 65)",
        "local time 10:00 within 08:00-17:30",
        "day tue",
        "pool county-ecg-oncall",
        "senior review required",
    ] {
        assert!(why.contains(part), "{part:?} missing from {why}");
    }
    let wl: Value = t.get_json(&oncall, "/api/v1/worklist").await;
    let items = wl["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{wl}");
    assert_eq!(items[0]["exam_id"], second["exam_id"]);
    assert_eq!(items[0]["review_required"], true);
    assert_eq!(items[0]["route"]["rule"], "elderly-chest-daytime");

    // Outside office hours the same study falls through to the demo's rule.
    clock.advance_secs(8 * 3600); // 18:00 Beijing
    let evening = route_one(&t, &tech, 3).await;
    assert!(
        evening["explanation"]
            .as_str()
            .unwrap()
            .contains("township-ct-mr"),
        "{evening}"
    );

    // A broken file is refused with its line; the rules in force stay.
    let broken = with_rule_first(&NEW_RULE.replace("\"fri\"]", "\"fri\", \"mo\"]"));
    std::fs::write(&path, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.starts_with("days = "))
        .unwrap()
        + 1;
    let r = t.post(&admin, reload_path).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_config");
    assert_eq!(
        v["message"],
        format!(
            "{} line {line}: routing rule \"elderly-chest-daytime\": unknown day \"mo\" (mon … sun)",
            path.display()
        )
    );
    clock.advance_secs(-8 * 3600 + 24 * 3600); // Wednesday 10:00
    let kept = route_one(&t, &tech, 4).await;
    assert!(
        kept["explanation"]
            .as_str()
            .unwrap()
            .contains("elderly-chest-daytime"),
        "the previous rules stay in force: {kept}"
    );

    let events = t.hub.catalog.audit_events(500).await.unwrap();
    let reloads: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.action == "routing.reload")
        .map(|e| (e.actor.as_str(), e.outcome.as_str()))
        .collect();
    assert!(reloads.contains(&("admin", "ok")), "{reloads:?}");
    assert!(reloads.contains(&("admin", "invalid")), "{reloads:?}");
    t.finish().await;
}

/// The escalation ladder on the catalog: an overdue, unclaimed exam is shown to the rule's
/// `fallback_pool` first and, still unclaimed after the rule's urgent SLA, to `escalate_to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_asks_the_fallback_pool_before_the_senior_pool() {
    for backend in backends() {
        let clock = ManualClock::new(TUESDAY_10_BEIJING);
        let t = TestHub::start(&backend, Some(clock.clone()), |c| {
            let rule = c
                .routing
                .rules
                .iter_mut()
                .find(|r| r.name == "township-ct-mr")
                .unwrap();
            rule.fallback_pool = Some("county-ecg".into());
            rule.escalate_to = Some("county-ecg-oncall".into());
            rule.urgent_sla_minutes = Some(30);
            // The ECG pools stand in for a second imaging tier: their readers may read the CT.
            any_modality(c);
        })
        .await;
        let tech = t.token("wang.tech").await;
        let fallback = t.token("sun.ecg").await;
        let senior = t.token("qian.cardio").await;
        let routed = route_one(&t, &tech, 9).await;
        let exam = routed["exam_id"].as_str().unwrap().to_string();
        let sees = |token: String| {
            let t = &t;
            let exam = exam.clone();
            async move {
                let wl: Value = t.get_json(&token, "/api/v1/worklist").await;
                wl["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["exam_id"] == exam.as_str())
            }
        };

        clock.advance_secs(240 * 60 - 1);
        assert!(
            t.hub.escalate_overdue().await.unwrap().is_empty(),
            "not yet due"
        );
        clock.advance_secs(1);
        let first = t.hub.escalate_overdue().await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(first[0].1.contains("shown to pool county-ecg"), "{first:?}");
        assert!(sees(fallback.clone()).await && !sees(senior.clone()).await);

        clock.advance_secs(29 * 60);
        assert!(
            t.hub.escalate_overdue().await.unwrap().is_empty(),
            "the fallback pool has 30 min"
        );
        clock.advance_secs(60);
        let second = t.hub.escalate_overdue().await.unwrap();
        assert_eq!(second.len(), 1, "{second:?}");
        assert!(
            second[0].1.contains("shown to pool county-ecg-oncall"),
            "{second:?}"
        );
        assert!(sees(senior.clone()).await);
        let e = t
            .hub
            .catalog
            .exam(&exam.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            e.escalated_pool.as_ref().map(|p| p.as_str()),
            Some("county-ecg-oncall")
        );
        assert_eq!(e.escalate_next_at, None);
        let reason = e.escalation_reason.unwrap_or_default();
        assert!(
            reason.starts_with("unclaimed 0 min past its due time: escalated to stat and shown to pool county-ecg ")
                && reason.ends_with("; still unclaimed 30 min after pool county-ecg was asked: shown to pool county-ecg-oncall"),
            "the reason keeps both steps: {reason}"
        );
        clock.advance_secs(24 * 3600);
        assert!(
            t.hub.escalate_overdue().await.unwrap().is_empty(),
            "the ladder ends"
        );
        t.finish().await;
    }
}

/// The real `yilian serve`: SIGHUP re-reads the rules from its `--config` file; a broken file is
/// refused (logged) and the rules in force stay. SQLite only: the reload path is the same on both
/// catalogs (the suite above runs it on both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules_of_a_running_hub() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("yilian.toml");
    std::fs::write(&config, yilian_config::DEMO_TOML).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yilian = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_yilian"));
        c.args(args)
            .arg("--config")
            .arg(&config)
            .env(
                "YILIAN_DATABASE_URL",
                format!("sqlite://{}/catalog.db?mode=rwc", dir.path().display()),
            )
            .env(
                "YILIAN_BLOBS_URL",
                format!("file://{}/blobs", dir.path().display()),
            )
            .env("YILIAN_KEYS_DIR", dir.path().join("keys"))
            .env("YILIAN_DICOM_ENABLED", "0")
            .env("YILIAN_MLLP_ENABLED", "0")
            .env("YILIAN_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("YILIAN_LOG", "info,sqlx=warn");
        c
    };
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut hub = Killed(
        yilian(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start yilian serve"),
    );
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = hub.0.stderr.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "yilian serve did not become ready: {}",
        log.lock().unwrap()
    );
    let out = yilian(&["user", "token", "wang.tech"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tech = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let route = |n: u32| {
        let (http, base, tech) = (http.clone(), base.clone(), tech.clone());
        async move {
            let (study, bytes) = ct_study(n);
            let (ct, body) = support::multipart(&[("application/dicom", &bytes)]);
            let r = http
                .post(format!("{base}/dicomweb/studies"))
                .bearer_auth(&tech)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let v: Value = http
                .post(format!("{base}/api/v1/studies/{study}/complete"))
                .bearer_auth(&tech)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["explanation"].as_str().unwrap_or_default().to_string()
        }
    };
    let hangup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    };
    let wait_for_log = |needle: &'static str| {
        let log = Arc::clone(&log);
        async move {
            for _ in 0..100 {
                if log.lock().unwrap().contains(needle) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("no {needle:?} in the hub's log: {}", log.lock().unwrap());
        }
    };

    assert!(route(21).await.contains("township-ct-mr"));
    let all_ct = "[[routing.rules]]\nname = \"all-ct-on-call\"\nmodalities = [\"CT\"]\npool = \"county-ecg-oncall\"\nsla_minutes = 60\n\n";
    std::fs::write(&config, with_rule_first(all_ct)).unwrap();
    hangup(hub.0.id());
    wait_for_log("routing rules reloaded").await;
    let why = route(22).await;
    assert!(why.contains("rule \"all-ct-on-call\""), "{why}");

    std::fs::write(&config, with_rule_first(&all_ct.replace("60", "-5"))).unwrap();
    hangup(hub.0.id());
    wait_for_log("routing reload refused").await;
    assert!(
        log.lock()
            .unwrap()
            .contains("routing rule \"all-ct-on-call\": sla_minutes must be positive"),
        "{}",
        log.lock().unwrap()
    );
    let why = route(23).await;
    assert!(
        why.contains("rule \"all-ct-on-call\""),
        "the old rules stay: {why}"
    );
}
