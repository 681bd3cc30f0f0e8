//! Every door locked: every HTTP route the router serves (read from `crates/server/src/lib.rs`, so a
//! new route cannot be forgotten) is called with no token, with a bogus token, and as each role of the
//! demo alliance. Without a valid token everything but health and the API description is 401. Each
//! role gets past authorisation exactly where the table below says it may (any answer but 401/403);
//! everywhere else it is refused with 403 (or 404 where a resource outside one's scope looks absent),
//! before its body or query is even read. No call ends in a 5xx, and every answer carries the
//! security headers (nosniff, no framing, no referrer, a cache policy).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::{Method, StatusCode};
use support::{TestHub, backends};

/// The router's source: its `.route("path", get(…).post(…))` calls are the list of doors.
const ROUTER: &str = include_str!("../crates/server/src/lib.rs");

/// Routes nested under a prefix (`.nest("/fhir/r4", fhir::routes())`), as the FHIR module serves them.
const NESTED: &[(&str, &str)] = &[
    ("GET", "/fhir/r4/metadata"),
    ("GET", "/fhir/r4/{resource}"),
    ("GET", "/fhir/r4/{resource}/{id}"),
];

/// Answered without a token.
const PUBLIC: &[&str] = &["/healthz", "/readyz", "/api/openapi.json"];
/// Answered without a token for a resource that exists, 404 for one that does not (the verification
/// page a printed report's QR code opens; it shows no patient data).
const PUBLIC_BY_ID: &[&str] = &["/verify/{id}"];

/// (method, path) of every route in the router source.
fn routes() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in ROUTER.split(".route(").skip(1) {
        let chunk = chunk.split(".layer(").next().unwrap_or(chunk);
        let path = chunk.split('"').nth(1).expect("quoted path").to_string();
        for (method, call) in [("GET", "get("), ("POST", "post("), ("PUT", "put(")] {
            if chunk.contains(call) {
                out.push((method.to_string(), path.clone()));
            }
        }
    }
    for (m, p) in NESTED {
        out.push((m.to_string(), p.to_string()));
    }
    assert!(out.len() > 60, "found only {} routes", out.len());
    out
}

/// A path with its parameters filled by well-formed values that name nothing.
fn concrete(path: &str) -> String {
    path.replace("{study}", "2.25.999")
        .replace("{series}", "2.25.998")
        .replace("{sop}", "2.25.997")
        .replace("{frame}", "1")
        .replace("{*path}", "x")
        .replace("{resource}", "DiagnosticReport")
        .replace("{id}", "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum R {
    Tech,
    Reader,
    Clinician,
    Admin,
    Auditor,
}

/// The roles that work with results or the service (the auditor reads only the audit trail).
const ALL: &[R] = &[R::Tech, R::Reader, R::Clinician, R::Admin];
/// Every signed-in caller.
const EVERYONE: &[R] = &[R::Tech, R::Reader, R::Clinician, R::Admin, R::Auditor];

/// Who may get past authorisation, by route: the access matrix of ARCHITECTURE.md as the outside
/// sees it. Matched in order; the first pattern that matches the method and path wins.
fn allowed(method: &str, path: &str) -> &'static [R] {
    use R::*;
    let table: &[(&str, &str, &[R])] = &[
        ("POST", "/dicomweb/studies", &[Tech]),
        ("POST", "/dicomweb/studies/{study}", &[Tech]),
        ("GET", "/dicomweb/", &[Tech, Reader, Clinician]),
        ("GET", "/wado", &[Tech, Reader, Clinician]),
        ("GET", "/api/v1/me", EVERYONE),
        // The audit trail: auditors only.
        ("GET", "/api/v1/audit", &[Auditor]),
        ("GET", "/api/v1/keys", ALL),
        ("GET", "/api/v1/worklist", &[Reader]),
        ("POST", "/api/v1/worklist/next", &[Reader]),
        ("GET", "/api/v1/notifications", &[Tech, Reader, Clinician]),
        ("GET", "/api/v1/duty", &[Reader, Admin]),
        ("POST", "/api/v1/exams/{id}/reassign", &[Admin]),
        ("GET", "/api/v1/exams/{id}/ecg", &[Reader]),
        ("", "/api/v1/exams/", &[Reader]),
        ("GET", "/api/v1/studies/{study}", &[Tech]),
        ("POST", "/api/v1/studies/{study}/complete", &[Tech]),
        // Recognition decisions and the prior-result alert: the treating clinician only.
        ("GET", "/api/v1/results/prior", &[Clinician]),
        ("POST", "/api/v1/results/", &[Clinician]),
        ("GET", "/api/v1/results", &[Reader, Clinician]),
        ("GET", "/api/v1/reports/", &[Tech, Reader, Clinician]),
        // Amend and revoke a signed report: readers (scope and seniority decided in app).
        ("POST", "/api/v1/reports/", &[Reader]),
        // The printable report page: the same scope as the report.
        ("GET", "/reports/", &[Tech, Reader, Clinician]),
        ("GET", "/api/v1/admin/", &[Admin]),
        ("POST", "/api/v1/admin/", &[Admin]),
        ("GET", "/metrics", &[Admin]),
        (
            "GET",
            "/api/v1/lab/panels/{id}/signoff",
            &[Tech, Reader, Clinician],
        ),
        ("POST", "/api/v1/lab/panels/{id}/sign", &[Reader]),
        ("GET", "/api/v1/lab/panels/{id}", &[Tech]),
        ("GET", "/api/v1/lab/review", &[Reader]),
        (
            "GET",
            "/api/v1/lab/critical/{id}",
            &[Tech, Reader, Clinician],
        ),
        (
            "POST",
            "/api/v1/lab/critical/{id}/ack",
            &[Tech, Reader, Clinician],
        ),
        ("GET", "/api/v1/lab/critical", ALL),
        ("POST", "/api/v1/lab/", &[Tech]),
        ("POST", "/api/v1/ecg", &[Tech]),
        // The CapabilityStatement names no patient: any signed-in caller may read it.
        ("GET", "/fhir/r4/metadata", EVERYONE),
        ("GET", "/fhir/r4/", &[Reader, Clinician]),
    ];
    table
        .iter()
        .find(|(m, prefix, _)| (m.is_empty() || *m == method) && path.starts_with(prefix))
        .map(|(_, _, roles)| *roles)
        .unwrap_or_else(|| panic!("{method} {path}: not in the access table; add it"))
}

async fn call(t: &TestHub, method: &str, path: &str, token: Option<&str>) -> StatusCode {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = t.http.request(method.clone(), t.url(path));
    if let Some(tok) = token {
        req = req.bearer_auth(tok);
    }
    if method != Method::GET {
        req = req.header("content-type", "application/json").body("{}");
    }
    let resp = req.send().await.expect("request");
    // Every answer, allowed or refused, carries the security headers.
    let h = resp.headers();
    for (name, want) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(
            h.get(name).and_then(|v| v.to_str().ok()),
            Some(want),
            "{method} {path}: {name}"
        );
    }
    assert!(
        h.contains_key("cache-control"),
        "{method} {path}: cache-control"
    );
    resp.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_locked_by_role() {
    let backend = backends().remove(0);
    // Hundreds of calls with made-up tokens from one address: that is the failed-authentication
    // lockout's business (tests/limits.rs), not this matrix's.
    let t = TestHub::start(&backend, None, |c| c.server.limits.auth_failures = 0).await;
    let users = [
        (R::Tech, "wang.tech"),
        (R::Reader, "li.reader"),
        (R::Clinician, "zhao.clinician"),
        (R::Admin, "admin"),
        (R::Auditor, "gao.auditor"),
    ];
    let mut tokens = Vec::new();
    for (role, user) in users {
        tokens.push((role, t.token(user).await));
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for (method, pattern) in routes() {
        let path = concrete(&pattern);
        let anonymous = call(&t, &method, &path, None).await;
        let bogus = call(&t, &method, &path, Some("yl_not-a-token")).await;
        if PUBLIC_BY_ID.contains(&pattern.as_str()) {
            if anonymous != StatusCode::NOT_FOUND || bogus != StatusCode::NOT_FOUND {
                problems.push(format!(
                    "{method} {path}: public by id but {anonymous} / {bogus} for an unknown id"
                ));
            }
            continue;
        }
        if PUBLIC.contains(&pattern.as_str()) {
            if anonymous != StatusCode::OK {
                problems.push(format!(
                    "{method} {path}: public but {anonymous} without a token"
                ));
            }
            continue;
        }
        for (who, got) in [("no token", anonymous), ("a bogus token", bogus)] {
            if got != StatusCode::UNAUTHORIZED {
                problems.push(format!("{method} {path} with {who}: {got}, not 401"));
            }
        }
        let may = allowed(&method, &pattern);
        for (role, token) in &tokens {
            let got = call(&t, &method, &path, Some(token)).await;
            checked += 1;
            if got.is_server_error() {
                problems.push(format!("{method} {path} as {role:?}: {got}"));
            } else if may.contains(role) {
                if got == StatusCode::UNAUTHORIZED || got == StatusCode::FORBIDDEN {
                    problems.push(format!(
                        "{method} {path} as {role:?}: {got}, but the role may"
                    ));
                }
            } else if got != StatusCode::FORBIDDEN && got != StatusCode::NOT_FOUND {
                problems.push(format!("{method} {path} as {role:?}: {got}, not refused"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("{checked} calls as a role, each as the table says");
    assert!(checked > 200, "checked only {checked} calls");
    t.finish().await;
}
