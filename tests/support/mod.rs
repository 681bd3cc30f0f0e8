//! Test support: a real hub on 127.0.0.1:0 over a real catalog (SQLite always, PostgreSQL when
//! DATABASE_URL is set), real blobs (on disk; on the S3 test server for the S3 variants, or for every
//! hub when `YILIAN_TEST_BLOBS=s3`), and a real HTTP client.

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

/// Where a test hub keeps its blobs.
#[derive(Clone, Debug)]
pub enum BlobStore {
    /// `file://` in the test's temporary folder.
    File,
    /// The S3-compatible server the test script started (`YILIAN_TEST_S3_*`), under a fresh prefix.
    S3(S3Env),
}

/// The S3 test server, from `YILIAN_TEST_S3_ENDPOINT`, `_BUCKET`, `_ACCESS_KEY_ID`,
/// `_SECRET_ACCESS_KEY`, `_REGION`.
#[derive(Clone)]
pub struct S3Env {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl std::fmt::Debug for S3Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3 {} bucket {}", self.endpoint, self.bucket)
    }
}

/// The S3 test server when the test script started one. Without it: SKIPPED (said on stderr), and
/// under CI a failure.
pub fn s3_env() -> Option<S3Env> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match var("YILIAN_TEST_S3_ENDPOINT") {
        Some(endpoint) => Some(S3Env {
            endpoint,
            bucket: var("YILIAN_TEST_S3_BUCKET").unwrap_or_else(|| "yilian-test".into()),
            access_key_id: var("YILIAN_TEST_S3_ACCESS_KEY_ID").unwrap_or_else(|| "test".into()),
            secret_access_key: var("YILIAN_TEST_S3_SECRET_ACCESS_KEY")
                .unwrap_or_else(|| "test-secret".into()),
            region: var("YILIAN_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        }),
        None => {
            if std::env::var("CI").is_ok() {
                panic!(
                    "CI must set YILIAN_TEST_S3_ENDPOINT so the S3 variants run (scripts/test starts the server)"
                );
            }
            eprintln!(
                "SKIPPED S3 blobs: YILIAN_TEST_S3_ENDPOINT is not set (scripts/test sets it)"
            );
            None
        }
    }
}

/// The blob store hubs use by default: `file://`, or S3 when `YILIAN_TEST_BLOBS=s3` (which needs
/// the S3 test server).
fn default_blob_store() -> BlobStore {
    match std::env::var("YILIAN_TEST_BLOBS").as_deref() {
        Ok("s3") => {
            BlobStore::S3(s3_env().expect("YILIAN_TEST_BLOBS=s3 needs YILIAN_TEST_S3_ENDPOINT"))
        }
        _ => BlobStore::File,
    }
}

/// Points `[blobs]` at the test server under a fresh prefix, spooling in `dir/staging`, with the
/// smallest part size S3 allows (so instances over 5 MiB go multipart).
pub fn use_s3(cfg: &mut Config, env: &S3Env, dir: &std::path::Path) {
    cfg.blobs.url = format!(
        "s3://{}/hub-{}",
        env.bucket,
        ulid::Ulid::new().to_string().to_lowercase()
    );
    cfg.blobs.staging_dir = Some(dir.join("staging"));
    cfg.blobs.endpoint = Some(env.endpoint.clone());
    cfg.blobs.region = env.region.clone();
    cfg.blobs.access_key_id = Some(env.access_key_id.clone());
    cfg.blobs.secret_access_key = Some(env.secret_access_key.clone());
    cfg.blobs.allow_http = env.endpoint.starts_with("http://");
    cfg.blobs.part_size_mib = 5;
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
    pub blob_store: BlobStore,
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
    /// Starts the demo alliance on a fresh catalog; `tweak` adjusts the configuration first. Blobs
    /// on disk (or S3 under `YILIAN_TEST_BLOBS=s3`).
    pub async fn start(
        backend: &Backend,
        clock: Option<Arc<dyn Clock>>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestHub {
        Self::start_with_blobs(backend, &default_blob_store(), clock, tweak).await
    }

    /// Starts the demo alliance on a fresh catalog with blobs in `blobs`.
    pub async fn start_with_blobs(
        backend: &Backend,
        blobs: &BlobStore,
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
        match blobs {
            BlobStore::File => cfg.blobs.url = format!("file://{}/blobs", dir.path().display()),
            BlobStore::S3(env) => use_s3(&mut cfg, env, dir.path()),
        }
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
            blob_store: blobs.clone(),
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
    /// The demo CT (study 2.25.1001, patient HX0001 of issuer HX, three instances) stored by
    /// wang.tech, completed, claimed and signed by li.reader with this text; the report id.
    pub async fn publish_ct(&self, findings: &str, impression: &str) -> String {
        let tech = self.token("wang.tech").await;
        let reader = self.token("li.reader").await;
        let files: Vec<Vec<u8>> = (1..=3)
            .map(|n| yilian_fixtures::instance_bytes(&yilian_fixtures::InstanceSpec::ct(n)))
            .collect();
        self.stow_all(&tech, &files).await;
        let done: serde_json::Value = self
            .post(&tech, "/api/v1/studies/2.25.1001/complete")
            .await
            .json()
            .await
            .expect("complete");
        let exam_id = done["exam_id"].as_str().expect("routed").to_string();
        let r = self
            .post(&reader, &format!("/api/v1/exams/{exam_id}/claim"))
            .await;
        assert_eq!(r.status(), reqwest::StatusCode::OK, "claim");
        let report_url = format!("/api/v1/exams/{exam_id}/report");
        let r = self
            .put_json(
                &reader,
                &report_url,
                &serde_json::json!({"findings": findings, "impression": impression}),
            )
            .await;
        assert_eq!(r.status(), reqwest::StatusCode::OK, "draft");
        let signed: serde_json::Value = self
            .post(&reader, &format!("{report_url}/sign"))
            .await
            .json()
            .await
            .expect("sign");
        signed["report"]["report_id"]
            .as_str()
            .expect("report id")
            .to_string()
    }

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

/// The Python interpreter with the external clients of tests/python/requirements.txt
/// (`YILIAN_TEST_PYTHON`, set by scripts/test). Without it the check is SKIPPED (said on stderr with
/// `what`), and under CI that is a failure.
pub fn python(what: &str) -> Option<String> {
    match std::env::var("YILIAN_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must set YILIAN_TEST_PYTHON (scripts/test does)"
            );
            eprintln!(
                "SKIPPED {what}: YILIAN_TEST_PYTHON is not set (run scripts/test, which installs tests/python/requirements.txt)"
            );
            None
        }
    }
}

/// A one-connection-at-a-time HTTP receiver: answers `status` and hands each request's headers and
/// body to the test.
pub async fn receiver(
    status: u16,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), String::new());
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
                        break (head.to_string(), rest[..len].to_string());
                    }
                }
            };
            let _ = sock
                .write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
            let _ = tx.send((head, body));
        }
    });
    (url, rx)
}

/// A 12-lead ECG (DICOM waveform) whose interpretation says STEMI: routed stat, with a notification.
pub fn stemi_ecg(study: &str) -> Vec<u8> {
    use yilian_fixtures::ecg::{EcgSpec, synthesize};
    let mut rec = synthesize(&EcgSpec::default()).record;
    rec.interpretation = vec!["ACUTE MI / STEMI".into()];
    yilian_formats::ecg::to_dicom(
        &rec,
        &yilian_formats::ecg::EcgDicomIds {
            study_uid: study.into(),
            series_uid: format!("{study}.1"),
            sop_uid: format!("{study}.1.1"),
            patient_id: "HX9001".into(),
            issuer_of_patient_id: Some("HX".into()),
            accession_number: None,
            institution_name: None,
            study_description: Some("ECG".into()),
        },
    )
    .unwrap()
}

/// A throwaway alliance CA (PEM) and a TLS server configuration whose certificate it signed, for
/// 127.0.0.1: the "our own PKI" case (webhook receivers, an S3 endpoint behind the alliance CA).
pub fn test_ca_and_server() -> (String, Arc<tokio_rustls::rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "演示医共体 CA (test)");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    leaf_params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("server config");
    (ca.pem(), Arc::new(config))
}

/// A TLS-terminating proxy on 127.0.0.1 in front of `upstream` (`host:port`): each connection's
/// bytes are passed on unchanged (so a SigV4 signature over the Host header still verifies).
/// Returns the proxy's address.
pub async fn tls_proxy(
    config: Arc<tokio_rustls::rustls::ServerConfig>,
    upstream: String,
) -> std::net::SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// A catalog of its own for a test that runs the real binary: a SQLite file in a folder, or a new
/// PostgreSQL database that is dropped with this value (also when the test fails).
pub struct FreshCatalog {
    pub url: String,
    pg: Option<(String, String)>,
}

impl FreshCatalog {
    pub async fn new(backend: &Backend, dir: &std::path::Path) -> FreshCatalog {
        match backend {
            Backend::Sqlite => FreshCatalog {
                url: format!("sqlite://{}/catalog.db?mode=rwc", dir.display()),
                pg: None,
            },
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
                FreshCatalog {
                    url: replace_database(url, &name),
                    pg: Some((url.clone(), name)),
                }
            }
        }
    }
}

impl Drop for FreshCatalog {
    fn drop(&mut self) {
        let Some((url, name)) = self.pg.take() else {
            return;
        };
        // Drop may run inside a runtime: the database goes from a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(admin) = sqlx::AnyPool::connect(&url).await {
                    let _ = admin
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
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
