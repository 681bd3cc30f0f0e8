//! The architecture invariants of ARCHITECTURE.md, checked against each crate's manifest: the domain
//! core and the policy do no I/O, only `store` speaks SQL, only `server` speaks HTTP.

use std::collections::BTreeSet;

fn deps(krate: &str) -> BTreeSet<String> {
    let path = format!("{}/../{krate}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let manifest: toml::Table = text.parse().unwrap_or_else(|e| panic!("{path}: {e}"));
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

fn only(krate: &str, allowed: &[&str]) {
    let extra: Vec<String> = deps(krate)
        .into_iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .collect();
    assert!(extra.is_empty(), "{krate} may not depend on {extra:?}");
}

fn none_of(krate: &str, forbidden: &[&str]) {
    let found: Vec<String> = deps(krate)
        .into_iter()
        .filter(|d| forbidden.contains(&d.as_str()))
        .collect();
    assert!(found.is_empty(), "{krate} must not depend on {found:?}");
}

const IO: &[&str] = &[
    "tokio",
    "sqlx",
    "object_store",
    "axum",
    "reqwest",
    "hyper",
    "tower",
    "tower-http",
    "multer",
];

#[test]
fn the_domain_core_and_policy_do_no_io() {
    only("domain", &["thiserror"]);
    only("policy", &["yilian-domain", "serde", "thiserror"]);
    only("analysis", &["yilian-domain"]);
    for k in ["formats", "render", "signing", "config"] {
        none_of(k, IO);
    }
}

#[test]
fn sql_lives_in_store_and_http_in_server() {
    for k in [
        "domain", "policy", "analysis", "formats", "render", "signing", "config", "app", "server",
    ] {
        none_of(k, &["sqlx", "object_store"]);
    }
    for k in [
        "domain", "policy", "formats", "render", "signing", "config", "app", "store",
    ] {
        none_of(k, &["axum", "tower", "tower-http", "multer", "http"]);
    }
}
