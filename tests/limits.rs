//! Per-client limits and the failed-authentication lockout against the real hub: a client above its
//! rate is told 429 with Retry-After while other clients carry on; a client with too many requests in
//! progress is refused more until one ends; an address that keeps presenting invalid tokens is locked
//! out (even for a valid token, so guessing learns nothing) until the lockout ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::{ManualClock, TestHub, backends};
use tokio::io::AsyncWriteExt;

const NOW: i64 = 1_795_478_400_000;

async fn status_code(r: reqwest::Response) -> (StatusCode, Option<String>, String) {
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        retry,
        body["code"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_client_over_its_rate_waits_and_others_do_not() {
    let backend = &backends()[0];
    let clock = ManualClock::new(NOW);
    let t = TestHub::start(backend, Some(clock.clone()), |c| {
        c.server.limits.requests_per_minute = 60;
        c.server.limits.burst = 2;
    })
    .await;
    let wang = t.token("wang.tech").await;
    let li = t.token("li.reader").await;
    for _ in 0..2 {
        assert_eq!(t.get(&wang, "/api/v1/me").await.status(), StatusCode::OK);
    }
    assert_eq!(
        status_code(t.get(&wang, "/api/v1/me").await).await,
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("1".to_string()),
            "rate_limited".to_string()
        )
    );
    // Another client is not slowed by the first.
    assert_eq!(t.get(&li, "/api/v1/me").await.status(), StatusCode::OK);
    // One request a second is the sustained rate.
    clock.advance_secs(1);
    assert_eq!(t.get(&wang, "/api/v1/me").await.status(), StatusCode::OK);
    assert_eq!(
        t.get(&wang, "/api/v1/me").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    t.finish().await;
}

#[tokio::test]
async fn requests_in_progress_are_capped_per_client() {
    let backend = &backends()[0];
    let t = TestHub::start(backend, None, |c| {
        c.server.limits.concurrent_requests = 1;
    })
    .await;
    let wang = t.token("wang.tech").await;
    // An upload whose body has not all arrived: the request is in progress.
    let addr = t.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /dicomweb/studies HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {wang}\r\n\
         Content-Type: multipart/related; type=\"application/dicom\"; boundary=b\r\n\
         Content-Length: 100000\r\n\r\n--b\r\nContent-Type: application/dicom\r\n\r\n"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.flush().await.unwrap();
    // Until the hub has the upload in hand, a second request may still pass; then it is refused.
    let mut refused = None;
    for _ in 0..100 {
        let r = status_code(t.get(&wang, "/api/v1/me").await).await;
        if r.0 == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        refused,
        Some((
            StatusCode::TOO_MANY_REQUESTS,
            Some("1".to_string()),
            "too_many_concurrent".to_string()
        ))
    );
    // Other clients are not affected.
    let li = t.token("li.reader").await;
    assert_eq!(t.get(&li, "/api/v1/me").await.status(), StatusCode::OK);
    // The client gives up on the upload: its place is free again.
    drop(slow);
    let mut ok = false;
    for _ in 0..100 {
        if t.get(&wang, "/api/v1/me").await.status() == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the abandoned upload still holds the client's place");
    t.finish().await;
}

#[tokio::test]
async fn invalid_tokens_lock_the_address_out_until_the_lockout_ends() {
    for backend in backends() {
        let clock = ManualClock::new(NOW);
        let t = TestHub::start(&backend, Some(clock.clone()), |c| {
            c.server.limits.auth_failures = 3;
            c.server.limits.lockout_secs = 600;
        })
        .await;
        let wang = t.token("wang.tech").await;
        for i in 0..3 {
            let r = t.get(&format!("yl_guess{i}"), "/api/v1/me").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        // Locked out: a valid token from this address is refused too (guessing learns nothing).
        assert_eq!(
            status_code(t.get(&wang, "/api/v1/me").await).await,
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some("600".to_string()),
                "locked_out".to_string()
            )
        );
        assert_eq!(
            t.get("yl_guess9", "/fhir/r4/Patient").await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        // Health checks carry no token and still answer.
        let r = t.http.get(t.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        clock.advance_secs(599);
        assert_eq!(
            t.get(&wang, "/api/v1/me").await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        clock.advance_secs(1);
        assert_eq!(t.get(&wang, "/api/v1/me").await.status(), StatusCode::OK);
        t.finish().await;
    }
}
