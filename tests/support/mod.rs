//! Test support: a real hub on 127.0.0.1:0 over a real catalog (SQLite always, PostgreSQL when
//! DATABASE_URL is set), real blobs on disk, and a real HTTP client.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::Executor;
use yilian_app::{Clock, Hub};
use yilian_config::Config;
use yilian_domain::UnixMillis;

/// The catalog engines a suite runs against.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

/// SQLite always; PostgreSQL too when DATABASE_URL is set. A skipped backend says so.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => out.push(Backend::Postgres(url)),
        _ => {
            if std::env::var("CI").is_ok() {
                panic!("CI must set DATABASE_URL so the suite also runs on PostgreSQL");
            }
            eprintln!("SKIPPED PostgreSQL backend: DATABASE_URL is not set (CI sets it)");
        }
    }
    out
}

/// A clock the test moves.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: i64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(start)))
    }
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}

pub struct TestHub {
    pub hub: Hub,
    pub base: String,
    /// The DIMSE listener (AE title `hub.config.dicom.ae_title`).
    pub dimse_addr: std::net::SocketAddr,
    /// The MLLP listener (HL7 v2 lab messages).
    pub mllp_addr: std::net::SocketAddr,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pg_admin: Option<(String, String)>,
    server: tokio::task::JoinHandle<()>,
    dimse: tokio::task::JoinHandle<()>,
    mllp: Option<yilian_server::MllpServer>,
}

fn replace_database(url: &str, db: &str) -> String {
    let (head, tail) = match url.split_once('?') {
        Some((h, t)) => (h, Some(t)),
        None => (url, None),
    };
    let base = match head.rfind('/') {
        Some(i) if i > head.find("://").map(|s| s + 2).unwrap_or(0) => &head[..i],
        _ => head,
    };
    match tail {
        Some(t) => format!("{base}/{db}?{t}"),
        None => format!("{base}/{db}"),
    }
}

impl TestHub {
    /// Starts the demo alliance on a fresh catalog; `tweak` adjusts the configuration first.
    pub async fn start(
        backend: &Backend,
        clock: Option<Arc<dyn Clock>>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestHub {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::from_toml(yilian_config::DEMO_TOML, "demo").expect("demo config");
        let mut pg_admin = None;
        cfg.database.url = match backend {
            Backend::Sqlite => format!("sqlite://{}/catalog.db?mode=rwc", dir.path().display()),
            Backend::Postgres(url) => {
                sqlx::any::install_default_drivers();
                let name = format!("yilian_t_{}", ulid::Ulid::new().to_string().to_lowercase());
                let admin = sqlx::AnyPool::connect(url)
                    .await
                    .expect("connect to DATABASE_URL");
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create test database");
                admin.close().await;
                pg_admin = Some((url.clone(), name.clone()));
                replace_database(url, &name)
            }
        };
        cfg.blobs.url = format!("file://{}/blobs", dir.path().display());
        cfg.keys.dir = dir.path().join("keys");
        cfg.server.http_addr = "127.0.0.1:0".into();
        // Tests that are not about duty run with every reader always on duty and no offers (pure
        // pull); the duty tests put a calendar back in `tweak`.
        cfg.rota = yilian_policy::Rota {
            offer_secs: 0,
            ..yilian_policy::Rota::default()
        };
        tweak(&mut cfg);
        cfg.validate().expect("valid test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        cfg.server.public_url = Some(format!("http://{addr}"));
        let hub = match clock {
            Some(c) => yilian::open_hub_with_clock(cfg, c).await,
            None => yilian::open_hub(cfg).await,
        }
        .expect("open hub");
        let h = hub.clone();
        let server = tokio::spawn(async move {
            let _ = yilian_server::serve(h, listener, std::future::pending()).await;
        });
        let dimse_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind DIMSE");
        let dimse_addr = dimse_listener.local_addr().expect("DIMSE addr");
        let dimse = yilian_server::spawn_dimse(hub.clone(), dimse_listener);
        let mllp_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind MLLP");
        let mllp_addr = mllp_listener.local_addr().expect("MLLP addr");
        let mllp = yilian_server::spawn_mllp(hub.clone(), mllp_listener);
        TestHub {
            hub,
            base: format!("http://{addr}"),
            dimse_addr,
            dimse,
            mllp_addr,
            mllp: Some(mllp),
            http: reqwest::Client::new(),
            dir,
            backend: backend.clone(),
            pg_admin,
            server,
        }
    }

    pub async fn token(&self, user: &str) -> String {
        self.hub.issue_token(user, "test").await.expect("token")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with a bearer token.
    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    /// GET with a bearer token, the body parsed as JSON.
    pub async fn get_json(&self, token: &str, path: &str) -> serde_json::Value {
        self.get(token, path).await.json().await.expect("JSON body")
    }

    /// POST without a body.
    pub async fn post(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST")
    }

    /// POST a JSON body.
    pub async fn post_json(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// PUT a JSON body.
    pub async fn put_json(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("PUT")
    }

    /// Stops the server and drops a PostgreSQL test database.
    /// STOW-RS of whole Part 10 files to `/dicomweb/studies`; asserts every part was stored (200).
    #[allow(dead_code)]
    pub async fn stow_all(&self, token: &str, files: &[Vec<u8>]) {
        let parts: Vec<(&str, &[u8])> = files
            .iter()
            .map(|f| ("application/dicom", f.as_slice()))
            .collect();
        let (ct, body) = multipart(&parts);
        let r = self
            .http
            .post(self.url("/dicomweb/studies"))
            .bearer_auth(token)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .expect("stow");
        let status = r.status();
        assert_eq!(
            status,
            reqwest::StatusCode::OK,
            "{}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Stops the MLLP listener gracefully: open connections finish the message in hand.
    pub async fn stop_mllp(&mut self) {
        if let Some(m) = self.mllp.take() {
            m.shutdown(std::time::Duration::from_secs(10)).await;
        }
    }

    pub async fn finish(self) {
        self.server.abort();
        self.dimse.abort();
        if let Some(m) = &self.mllp {
            m.abort();
        }
        drop(self.hub);
        if let Some((url, name)) = self.pg_admin
            && let Ok(admin) = sqlx::AnyPool::connect(&url).await
        {
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
}

/// A multipart/related body of parts, each `application/dicom` unless a type is given.
pub fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "yilian-test-boundary-7f3a";
    let mut body = Vec::new();
    for (ct, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        body,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            super::replace_database("postgres://127.0.0.1:5432/test", "x"),
            "postgres://127.0.0.1:5432/x"
        );
        assert_eq!(
            super::replace_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            super::replace_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
