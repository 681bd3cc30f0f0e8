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

/// A STEMI routed stat tells the ECG pool (a row its readers poll, and a signed webhook POST without
/// patient identifiers); escalation tells the on-call pool; a webhook that keeps failing gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_and_escalated_exams_notify_their_readers_and_the_webhook() {
    use hmac::{KeyInit, Mac};
    for backend in backends() {
        let (url, mut hooks) = support::receiver(200).await;
        let clock = support::ManualClock::new(1_795_000_000_000);
        let t = TestHub::start(
            &backend,
            Some(clock.clone() as std::sync::Arc<dyn yilian_app::Clock>),
            |c| {
                c.notifications.webhook_url = Some(url.clone());
                c.notifications.webhook_secret = Some("webhook-secret-for-tests".into());
            },
        )
        .await;
        let tech = t.token("wang.tech").await;
        let ecg = t.token("sun.ecg").await;
        let rad = t.token("li.reader").await;
        let oncall = t.token("qian.cardio").await;
        t.stow_all(&tech, &[support::stemi_ecg("2.25.880001")])
            .await;

        let v = t.get_json(&ecg, "/api/v1/notifications").await;
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{v}");
        assert_eq!(items[0]["kind"], "exam.urgent");
        assert_eq!(items[0]["priority"], "stat");
        assert_eq!(items[0]["pool_id"], "county-ecg");
        assert!(items[0]["message"].as_str().unwrap().contains("STEMI"));
        let after = v["last"].as_str().unwrap().to_string();
        let v = t
            .get_json(&ecg, &format!("/api/v1/notifications?after={after}"))
            .await;
        assert_eq!(v["items"], json!([]), "the cursor moves on");
        let v = t.get_json(&rad, "/api/v1/notifications").await;
        assert_eq!(v["items"], json!([]), "radiology is not told");
        // A site tech polls only what is addressed to them (critical lab values): no exam alerts.
        let v = t.get_json(&tech, "/api/v1/notifications").await;
        assert_eq!(v["items"], json!([]), "the uploading site is not told");

        // The webhook gets the same JSON, signed, once.
        assert_eq!(yilian_server::deliver_webhooks(&t.hub).await.unwrap(), 1);
        let (head, body) = hooks.recv().await.unwrap();
        let sent: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(sent["exam_id"], items[0]["exam_id"]);
        assert!(
            !body.contains("HX9001") && !body.contains("Ceshi"),
            "no patient identifiers: {body}"
        );
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"webhook-secret-for-tests")
                .unwrap();
        mac.update(body.as_bytes());
        let want = format!(
            "x-yilian-signature: sha256={}",
            hex::encode(mac.finalize().into_bytes())
        );
        assert!(head.to_ascii_lowercase().contains(&want), "{head}");
        assert_eq!(
            yilian_server::deliver_webhooks(&t.hub).await.unwrap(),
            0,
            "sent once"
        );

        // Unclaimed past its 10 minutes: the on-call pool is told.
        clock.advance_secs(11 * 60);
        t.hub.escalate_overdue().await.unwrap();
        let v = t.get_json(&oncall, "/api/v1/notifications").await;
        assert_eq!(v["items"][0]["kind"], "exam.escalated", "{v}");
        assert_eq!(v["items"][0]["pool_id"], "county-ecg-oncall");
        assert_eq!(yilian_server::deliver_webhooks(&t.hub).await.unwrap(), 1);
        t.finish().await;
    }

    // A receiver that always fails: retried, then given up after the last attempt.
    let (url, _hooks) = support::receiver(500).await;
    let t = TestHub::start(&support::Backend::Sqlite, None, |c| {
        c.notifications.webhook_url = Some(url.clone())
    })
    .await;
    let tech = t.token("wang.tech").await;
    t.stow_all(&tech, &[support::stemi_ecg("2.25.880002")])
        .await;
    for _ in 0..yilian_app::notify::MAX_WEBHOOK_ATTEMPTS {
        assert_eq!(t.hub.pending_webhooks(10).await.unwrap().len(), 1);
        assert_eq!(yilian_server::deliver_webhooks(&t.hub).await.unwrap(), 0);
    }
    assert!(
        t.hub.pending_webhooks(10).await.unwrap().is_empty(),
        "failed for good"
    );
    t.finish().await;
}

/// Review (审核): where the routing rule asks for it, a junior reader cannot sign. The junior submits the
/// report; only a senior of the pool can then claim the exam, and the senior signs the final report,
/// which names the junior as drafter and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junior_report_needs_a_senior_countersign_where_the_rule_asks_for_review() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |c| {
            for u in c.users.iter_mut().filter(|u| u.username == "li.reader") {
                u.seniority = Some("junior".into());
            }
            for r in c
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
        let junior = t.token("li.reader").await;
        let senior = t.token("zhou.reader").await;
        t.stow_all(&tech, &[instance_bytes(&InstanceSpec::ct(1))])
            .await;
        assert_eq!(
            t.post(&tech, "/api/v1/studies/2.25.1001/complete")
                .await
                .status(),
            StatusCode::OK
        );
        let r = t.post(&junior, "/api/v1/worklist/next").await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["review_required"], true, "{v}");
        let exam = v["exam_id"].as_str().unwrap().to_string();
        let text = json!({"findings": "右肺上叶小结节，约5 mm。", "impression": "右肺上叶小结节，建议随访。"});

        let r = t
            .post_json(&junior, &format!("/api/v1/exams/{exam}/report/sign"), &text)
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "review_required");
        let r = t
            .post_json(
                &senior,
                &format!("/api/v1/exams/{exam}/report/submit"),
                &text,
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::BAD_REQUEST,
            "a senior signs directly"
        );
        let r = t
            .post_json(
                &junior,
                &format!("/api/v1/exams/{exam}/report/submit"),
                &text,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (
                v["awaiting_review"].clone(),
                v["drafted_by"].clone(),
                v["claimed_by"].clone()
            ),
            (json!(true), json!("li.reader"), Value::Null)
        );

        // The junior can no longer take it back; the senior can.
        let r = t
            .post(&junior, &format!("/api/v1/exams/{exam}/claim"))
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert_eq!(
            t.post(&junior, "/api/v1/worklist/next").await.status(),
            StatusCode::NO_CONTENT
        );
        let r = t.post(&senior, "/api/v1/worklist/next").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["exam_id"], exam.as_str());
        let draft = t
            .get_json(&senior, &format!("/api/v1/exams/{exam}/report"))
            .await;
        assert!(draft.to_string().contains("建议随访"), "{draft}");
        let r = t
            .post(&senior, &format!("/api/v1/exams/{exam}/report/sign"))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{}",
            r.text().await.unwrap_or_default()
        );
        let doc: Value = r.json().await.unwrap();
        assert_eq!(
            doc["report"]["drafted_by"]["username"], "li.reader",
            "{doc}"
        );
        assert_eq!(doc["report"]["signer"]["username"], "zhou.reader");
        let report_id = doc["report"]["report_id"].as_str().unwrap();
        let verify = t
            .get_json(&senior, &format!("/api/v1/reports/{report_id}/verify"))
            .await;
        assert_eq!(verify["valid"], true, "{verify}");
        let events = t.hub.catalog.audit_events(200).await.unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.action == "report.submit" && e.actor == "li.reader")
        );
        t.finish().await;
    }
}

/// A TLS receiver whose certificate (for 127.0.0.1) an alliance CA signed: answers 200 and hands each
/// request's body to the test. Returns the URL, the CA's PEM and the bodies.
async fn tls_receiver() -> (String, String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ca_pem, config) = support::test_ca_and_server();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            // A client that refuses the certificate ends the handshake: just wait for the next one.
            let Ok(mut tls) = acceptor.accept(sock).await else {
                continue;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = tls.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break String::new();
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if rest.len() >= len {
                        break rest[..len].to_string();
                    }
                }
            };
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            let _ = tls.shutdown().await;
            let _ = tx.send(body);
        }
    });
    (url, ca_pem, rx)
}

/// An https:// webhook signed by the alliance's own CA (`webhook_ca_file`) is delivered; the same
/// receiver without that CA configured is refused by certificate verification and retried later, not
/// marked sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_go_over_https_to_a_receiver_the_alliance_ca_vouches_for() {
    let (url, ca_pem, mut bodies) = tls_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("alliance-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();

    let t = TestHub::start(&support::Backend::Sqlite, None, |c| {
        c.notifications.webhook_url = Some(url.clone());
        c.notifications.webhook_ca_file = Some(ca_file.clone());
        c.notifications.webhook_ca_pem = Some(std::fs::read(&ca_file).unwrap());
    })
    .await;
    let tech = t.token("wang.tech").await;
    t.stow_all(&tech, &[support::stemi_ecg("2.25.880003")])
        .await;
    assert_eq!(yilian_server::deliver_webhooks(&t.hub).await.unwrap(), 1);
    let body = bodies.recv().await.unwrap();
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sent["kind"], "exam.urgent");
    assert_eq!(sent["priority"], "stat");
    t.finish().await;

    // Without the CA the receiver's certificate is not trusted: nothing is sent, the attempt counts.
    let t = TestHub::start(&support::Backend::Sqlite, None, |c| {
        c.notifications.webhook_url = Some(url.clone());
    })
    .await;
    let tech = t.token("wang.tech").await;
    t.stow_all(&tech, &[support::stemi_ecg("2.25.880004")])
        .await;
    assert_eq!(yilian_server::deliver_webhooks(&t.hub).await.unwrap(), 0);
    let pending = t.hub.pending_webhooks(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].webhook_attempts, 1);
    t.finish().await;

    // A CA file with an http:// URL, or without a certificate, is refused at load.
    let mut c = yilian_config::Config::from_toml(yilian_config::DEMO_TOML, "demo").unwrap();
    c.notifications.webhook_url = Some("http://127.0.0.1:9/hook".into());
    c.notifications.webhook_ca_pem = Some(ca_pem.into_bytes());
    assert!(c.validate().unwrap_err().to_string().contains("https://"));
    c.notifications.webhook_url = Some(url);
    c.notifications.webhook_ca_pem = Some(b"not a certificate".to_vec());
    assert!(c.validate().unwrap_err().to_string().contains("PEM"));
}
