//! Yilian configuration: one TOML file (`--config` or `YILIAN_CONFIG`), then `YILIAN_*` environment
//! overrides, then secrets from `*_file` paths. Unknown keys are refused; everything is validated at
//! start-up with messages that name the key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use yilian_domain::{PoolId, Role, SiteId, Username};
use yilian_policy::lab::{AutoReleaseRule, CriticalRule, DEFAULT_CRITICAL_ACK_MINUTES, QcRecord};
use yilian_policy::{
    EcgAlertRules, Qualifications, RecognitionRules, Rota, RoutingRule, RoutingRules,
};

mod report;
pub use report::{ReportConfig, ReportSection, ReportTemplate, default_templates};

/// The demo alliance, embedded so `yilian demo` works from any directory.
pub const DEMO_TOML: &str = include_str!("../../../config/demo.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// A routing rule that does not validate, located in its file (`config/demo.toml line 142:
    /// routing rule "ecg": unknown day "mo"`). The line is missing only when the rule was not
    /// written as a `[[routing.rules]]` table (or not read from text).
    #[error("{origin}{}: routing rule {rule:?}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Rule {
        origin: String,
        line: Option<usize>,
        rule: String,
        message: String,
    },
    #[error("{origin}: routing cannot be reloaded: {message}")]
    Reload { origin: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub blobs: BlobsConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    pub alliance: AllianceConfig,
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub routing: RoutingConfig,
    #[serde(default)]
    pub recognition: RecognitionRules,
    #[serde(default)]
    pub dicom: DicomConfig,
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// The on-duty calendar (排班): shifts per pool, leave, how long an offer waits.
    #[serde(default)]
    pub rota: Rota,
    /// Lab messages in (`[lab]`): the MLLP listener, the LIS senders of each site, the LOINC table.
    #[serde(default)]
    pub lab: LabConfig,
    /// Report templates (`[[report.templates]]`); built-in imaging and ECG templates otherwise.
    #[serde(default)]
    pub report: ReportConfig,
    /// Report exports (`[reports]`): the font of the printable PDF.
    #[serde(default)]
    pub reports: ReportsConfig,
    /// Where the configuration was read from, and where each routing rule sits in it.
    #[serde(skip)]
    source: Source,
}

/// Report exports (`[reports]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// A TrueType/OpenType font (or collection: its first face) with Chinese glyphs, embedded (subset)
    /// in printable PDFs. Unset: the standard Debian paths of fonts-wqy-microhei, fonts-wqy-zenhei and
    /// fonts-noto-cjk are tried in that order. None found: the PDF export answers 503
    /// `pdf_font_missing`.
    pub pdf_font: Option<PathBuf>,
}

/// Notifications of urgent and escalated exams (`[notifications]`): always kept for readers to poll;
/// also POSTed to a webhook when one is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// `https://…` (or `http://…`) endpoint that receives each notification as JSON (no patient
    /// identifiers).
    pub webhook_url: Option<String>,
    /// PEM file of the CA(s) that vouch for an `https://` webhook (an alliance-internal CA). When set,
    /// only these are trusted; when absent, the operating system's roots are.
    pub webhook_ca_file: Option<PathBuf>,
    /// Read from `webhook_ca_file` at load.
    #[serde(skip)]
    pub webhook_ca_pem: Option<Vec<u8>>,
    /// A file whose content keys an HMAC-SHA256 of each body (`X-Yilian-Signature: sha256=<hex>`).
    pub webhook_secret_file: Option<PathBuf>,
    /// Read from `webhook_secret_file` at load; never in the TOML.
    #[serde(skip)]
    pub webhook_secret: Option<String>,
}

/// The origin of a configuration (for messages and reloads) and the line of every key of every
/// `[[routing.rules]]` table, found by scanning the text.
#[derive(Clone, Debug, Default)]
struct Source {
    origin: String,
    path: Option<PathBuf>,
    /// Per rule, in order: the line of its `[[routing.rules]]` header and of each `key =` in it.
    rules: Vec<RuleLines>,
}

#[derive(Clone, Debug, Default)]
struct RuleLines {
    header: usize,
    keys: Vec<(String, usize)>,
}

/// Scans TOML text for `[[routing.rules]]` tables: their header lines and the lines of their keys
/// (1-based). A multi-line array is located by its first line, which is where its key is.
fn scan_rule_lines(text: &str) -> Vec<RuleLines> {
    let mut out: Vec<RuleLines> = Vec::new();
    let mut in_rule = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name: String = line
                .split('#')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            in_rule = name == "[[routing.rules]]";
            if in_rule {
                out.push(RuleLines {
                    header: i + 1,
                    keys: Vec::new(),
                });
            }
        } else if in_rule
            && let Some((key, _)) = line.split_once('=')
            && !line.starts_with('#')
            && let Some(rule) = out.last_mut()
        {
            let key = key.trim().trim_matches('"').trim_matches('\'').to_string();
            if !key.is_empty() && !key.contains(' ') {
                rule.keys.push((key, i + 1));
            }
        }
    }
    out
}

/// The DIMSE listener and the DICOM nodes (modalities, PACS) allowed to associate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DicomConfig {
    /// Start the DIMSE listener with the hub.
    pub enabled: bool,
    /// The hub's own AE title (called AE title of incoming associations).
    pub ae_title: String,
    /// Address the DIMSE listener binds.
    pub listen_addr: String,
    /// Largest PDU the hub accepts (and the size of one read buffer per association).
    pub max_pdu_length: u32,
    /// Seconds of silence after which an association is aborted.
    pub idle_timeout_secs: u64,
    /// Nodes allowed to associate. Unknown calling AE titles are rejected at association time.
    pub nodes: Vec<DicomNodeConfig>,
}

impl Default for DicomConfig {
    fn default() -> Self {
        DicomConfig {
            enabled: true,
            ae_title: "YILIAN".into(),
            listen_addr: "127.0.0.1:11112".into(),
            max_pdu_length: 65536,
            idle_timeout_secs: 60,
            nodes: Vec::new(),
        }
    }
}

/// One DICOM node: a township modality that stores, or a member hospital's PACS or workstation that
/// queries and retrieves. It acts with the role and site given here, like a user.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomNodeConfig {
    /// Calling AE title of the node (1–16 characters, no backslash).
    pub ae_title: String,
    pub site: String,
    /// `site_tech` (stores studies of its site) or `clinician` (queries and retrieves results).
    pub role: String,
    /// When set, associations from this AE title are accepted only from this IP address.
    pub host: Option<String>,
    /// The node's own DIMSE port: set it to make the node a C-MOVE destination (with `host`).
    pub port: Option<u16>,
}

/// Lab results in (`[lab]`): the MLLP listener for HL7 v2, which laboratory information systems (LIS)
/// send for which site, and the local-code → LOINC table applied when a message carries no LOINC.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabConfig {
    /// Start the MLLP listener with the hub.
    pub mllp_enabled: bool,
    /// Address the MLLP listener binds (`YILIAN_MLLP_ADDR` overrides).
    pub mllp_addr: String,
    /// The largest lab message accepted (one MLLP frame, one HTTP body); larger ones are refused.
    pub max_message_bytes: usize,
    /// Seconds of silence after which an MLLP connection is closed.
    pub idle_timeout_secs: u64,
    /// Open MLLP connections at most; more are closed at once.
    pub max_connections: usize,
    /// The LIS allowed to send lab results, each for one site.
    pub senders: Vec<LabSenderConfig>,
    /// Local analyte/service codes → LOINC (`[[lab.loinc]]`).
    pub loinc: Vec<LoincMappingConfig>,
    /// The pool of lab physicians who review and sign off panels (审核); a sender may name its own.
    /// Without one, panels that need review wait for a pool to be configured.
    pub review_pool: Option<String>,
    /// The critical-value list (危急值): analyte, unit, thresholds (`[[lab.critical]]`).
    pub critical: Vec<CriticalRule>,
    /// Minutes a critical value may wait for an acknowledgement before it escalates (and again
    /// after each escalation, up to `critical_max_escalations`).
    pub critical_ack_minutes: i64,
    /// How many times an unacknowledged critical value escalates.
    pub critical_max_escalations: i64,
    /// Users told as well when a critical value escalates (e.g. the duty head of the medical
    /// office, 医务科), besides the review pool and the ordering site.
    pub critical_escalate_to: Vec<String>,
    /// External quality assessment passes (室间质评) per performing lab, year and analyte.
    pub qc: Vec<QcRecord>,
    /// When a panel may be released without review (`[[lab.auto_release]]`); none: every panel is
    /// reviewed.
    pub auto_release: Vec<AutoReleaseRule>,
}

/// The default MLLP port (the IANA-registered HL7 port).
pub const DEFAULT_MLLP_ADDR: &str = "127.0.0.1:2575";

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            mllp_enabled: true,
            mllp_addr: DEFAULT_MLLP_ADDR.into(),
            max_message_bytes: 4 * 1024 * 1024,
            idle_timeout_secs: 300,
            max_connections: 64,
            senders: Vec::new(),
            loinc: Vec::new(),
            review_pool: None,
            critical: Vec::new(),
            critical_ack_minutes: DEFAULT_CRITICAL_ACK_MINUTES,
            critical_max_escalations: 3,
            critical_escalate_to: Vec::new(),
            qc: Vec::new(),
            auto_release: Vec::new(),
        }
    }
}

/// One laboratory information system that sends results for a site: over MLLP it is recognised by
/// MSH-4 (and its address, when `host` is set) and acts as user `lab.<facility>` (a site tech of
/// `site`); over HTTP the caller's site must be the sender's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSenderConfig {
    /// HL7 MSH-4 sending facility (HD namespace ID or universal ID) and FHIR
    /// `DiagnosticReport.performer` Organization identifier (or name); compared case-insensitively.
    pub facility: String,
    /// The site whose lab this is: its panels belong to that site.
    pub site: String,
    /// When set, MLLP messages from this facility are accepted only from this IP address.
    pub host: Option<String>,
    /// The pool that reviews this lab's panels, instead of `lab.review_pool`.
    #[serde(default)]
    pub review_pool: Option<String>,
}

/// A local code → LOINC mapping, applied at ingest to results (and services) that carry no LOINC.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoincMappingConfig {
    /// The code as the LIS sends it (HL7 OBX-3.1 / OBR-4.1, FHIR local coding code).
    pub code: String,
    /// The LOINC code (`2823-3`); its check digit is verified at load.
    pub loinc: String,
    /// Only for this sender's codes (a `[[lab.senders]]` facility); without it, for every sender
    /// that has no mapping of its own for the code.
    pub sender: Option<String>,
}

/// Whether `code` is a LOINC code with a correct check digit (`2823-3`: digits, a hyphen, the mod-10
/// check digit LOINC defines).
pub fn valid_loinc(code: &str) -> bool {
    let Some((body, check)) = code.split_once('-') else {
        return false;
    };
    if body.is_empty()
        || body.len() > 7
        || check.len() != 1
        || !body
            .bytes()
            .chain(check.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return false;
    }
    // LOINC's mod 10: from the right, the 1st, 3rd, … digits are doubled (digits of the product
    // summed), the others added as they are; the check digit brings the sum to a multiple of 10.
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let twice = d * 2;
                twice / 10 + twice % 10
            } else {
                d
            }
        })
        .sum();
    let want = (10 - sum % 10) % 10;
    check.bytes().next().map(|b| u32::from(b - b'0')) == Some(want)
}

/// Where C-MOVE sends instances: a node with an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveDestination {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

/// A valid AE title: 1–16 characters of printable ASCII without backslash, not all spaces.
pub fn valid_ae_title(ae: &str) -> bool {
    !ae.trim().is_empty()
        && ae.len() <= 16
        && ae.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub http_addr: String,
    /// Base URL clients use to reach the hub (for RetrieveURL in DICOMweb responses). Defaults to
    /// `http://{http_addr}`.
    pub public_url: Option<String>,
    /// Largest request body accepted; larger bodies get 413.
    pub max_body_bytes: u64,
    /// Memory for recently rendered frames and thumbnails (encoded bytes); 0 disables the cache.
    pub render_cache_bytes: u64,
    /// Per-client request limits and the lockout after failed authentications (`[server.limits]`).
    pub limits: LimitsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: "127.0.0.1:8080".into(),
            public_url: None,
            max_body_bytes: 512 * 1024 * 1024,
            render_cache_bytes: 64 * 1024 * 1024,
            limits: LimitsConfig::default(),
        }
    }
}

/// Limits per client (a bearer token) and per source address, kept by each hub process (with several
/// replicas, each enforces them on the requests it serves). 0 turns a limit off.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Sustained requests per minute per token; a client above it gets 429 with Retry-After.
    pub requests_per_minute: u32,
    /// Requests a token may make at once above the sustained rate (the bucket's size).
    pub burst: u32,
    /// Requests of one token in progress at once; more get 429 at once.
    pub concurrent_requests: u32,
    /// Failed authentications (a presented token that is not valid) from one source address within
    /// `failure_window_secs` before that address is locked out.
    pub auth_failures: u32,
    pub failure_window_secs: u64,
    /// How long a locked-out address gets 429 for every request carrying a token.
    pub lockout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            requests_per_minute: 6000,
            burst: 600,
            concurrent_requests: 32,
            auth_failures: 20,
            failure_window_secs: 300,
            lockout_secs: 900,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` (default) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://yilian-data/catalog.db?mode=rwc".into(),
            max_connections: 8,
        }
    }
}

/// Where instance bytes live (`[blobs]`): a folder (`file://…`) or any S3-compatible object store
/// (`s3://bucket/prefix`). The S3 keys are refused with a `file://` URL.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobsConfig {
    /// `file://relative/or/absolute/path` (default) or `s3://bucket[/prefix]`.
    pub url: String,
    /// Local folder where uploads (DIMSE C-STORE) are spooled before they are stored. Default: the
    /// blob folder's `.staging` (`file://`, so a spooled file is renamed into place), else
    /// `yilian-data/staging`.
    pub staging_dir: Option<PathBuf>,
    /// S3 endpoint, e.g. `https://minio.alliance.local:9000`. Absent: AWS
    /// (`https://s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    /// S3 region (signatures name it; MinIO and Ceph accept the default).
    pub region: String,
    /// S3 access key id. With `secret_access_key_file` (or `YILIAN_BLOBS_SECRET_ACCESS_KEY`); with
    /// neither, the standard AWS environment and instance credentials are used.
    pub access_key_id: Option<String>,
    /// A file holding the S3 secret access key (never the key itself in the TOML).
    pub secret_access_key_file: Option<PathBuf>,
    /// Read from `secret_access_key_file` or `YILIAN_BLOBS_SECRET_ACCESS_KEY` at load.
    #[serde(skip)]
    pub secret_access_key: Option<String>,
    /// Allow an `http://` endpoint (test servers, a store on the same host). Default false.
    pub allow_http: bool,
    /// `https://bucket.endpoint/key` requests instead of `https://endpoint/bucket/key` (path style,
    /// the default, which MinIO and Ceph expect). With an endpoint, the endpoint must then name the
    /// bucket.
    pub virtual_hosted_style: bool,
    /// At most this many requests to the store at once, all uploads and reads together; multipart
    /// part buffers in flight are bounded by it too (`max_concurrency × part_size_mib`).
    pub max_concurrency: usize,
    /// Objects larger than this are uploaded in parts of this size (S3 allows 5 … 5120 MiB).
    pub part_size_mib: u64,
    /// Retries of one failed request (connection errors, 5xx, throttling), with exponential backoff
    /// from 100 ms up to 5 s between tries.
    pub max_retries: usize,
    /// No retry is started this long after a request's first try.
    pub retry_timeout_secs: u64,
    /// One request (a whole small object or one part) may take this long.
    pub request_timeout_secs: u64,
    /// When an upload is acknowledged on an `s3://` store: `"store"` (default) once the object store
    /// has the whole object; `"local"` once it is fsynced in the local outbox
    /// (`staging_dir/outbox`), from which a background task uploads it (write-behind), so an S3
    /// outage does not slow or fail ingest. See ARCHITECTURE.md ("Durability") for what each
    /// promises; `"local"` ties a blob to this host's disk until it is uploaded.
    pub ack_after: AckAfter,
    /// PEM file of the CA(s) that sign an `https://` endpoint's certificate (a MinIO or Ceph behind the
    /// alliance's own PKI); added to the system roots. `YILIAN_BLOBS_CA_FILE` overrides.
    pub ca_file: Option<PathBuf>,
    /// Read from `ca_file` at load.
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
}

/// `blobs.ack_after`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckAfter {
    #[default]
    Store,
    Local,
}

impl std::fmt::Debug for BlobsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobsConfig")
            .field("url", &self.url)
            .field("staging_dir", &self.staging_dir)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("max_concurrency", &self.max_concurrency)
            .field("part_size_mib", &self.part_size_mib)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout_secs", &self.retry_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("ack_after", &self.ack_after)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Default for BlobsConfig {
    fn default() -> Self {
        BlobsConfig {
            url: "file://yilian-data/blobs".into(),
            staging_dir: None,
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key_file: None,
            secret_access_key: None,
            allow_http: false,
            virtual_hosted_style: false,
            max_concurrency: 16,
            part_size_mib: 8,
            max_retries: 5,
            retry_timeout_secs: 60,
            ack_after: AckAfter::Store,
            request_timeout_secs: 120,
            ca_file: None,
            ca_pem: None,
        }
    }
}

/// An `s3://bucket/prefix` URL taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Object key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl BlobsConfig {
    /// The folder of a `file://` URL.
    pub fn file_root(&self) -> Option<PathBuf> {
        self.url.strip_prefix("file://").map(PathBuf::from)
    }

    /// Bucket and prefix of an `s3://` URL (`None`: not S3, or malformed; `validate` says why).
    pub fn s3_location(&self) -> Option<S3Location> {
        parse_s3_url(&self.url).ok()
    }

    /// Where uploads are spooled: `staging_dir`, else the blob folder's `.staging` (`file://`), else
    /// `yilian-data/staging`.
    pub fn staging(&self) -> PathBuf {
        match (&self.staging_dir, self.file_root()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(root)) => root.join(".staging"),
            (None, None) => PathBuf::from("yilian-data/staging"),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.url.starts_with("file://") {
            if self.file_root().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(invalid("blobs.url", "file:// needs a folder"));
            }
            let s3_only = [
                ("blobs.endpoint", self.endpoint.is_some()),
                ("blobs.access_key_id", self.access_key_id.is_some()),
                (
                    "blobs.secret_access_key_file",
                    self.secret_access_key.is_some() || self.secret_access_key_file.is_some(),
                ),
                ("blobs.allow_http", self.allow_http),
                ("blobs.virtual_hosted_style", self.virtual_hosted_style),
                ("blobs.ack_after", self.ack_after == AckAfter::Local),
                ("blobs.ca_file", self.ca_file.is_some()),
            ];
            if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    *key,
                    "applies to an s3:// blobs.url only (blobs.url is file://)",
                ));
            }
            return Ok(());
        }
        if !self.url.starts_with("s3://") {
            return Err(invalid(
                "blobs.url",
                "must start with file:// (a folder) or s3:// (s3://bucket/prefix)",
            ));
        }
        parse_s3_url(&self.url).map_err(|m| invalid("blobs.url", m))?;
        if let Some(endpoint) = &self.endpoint {
            if endpoint.starts_with("http://") {
                if !self.allow_http {
                    return Err(invalid(
                        "blobs.endpoint",
                        "is http://: set blobs.allow_http = true (test servers only) or use https://",
                    ));
                }
            } else if !endpoint.starts_with("https://") {
                return Err(invalid(
                    "blobs.endpoint",
                    "must be an https:// (or, with allow_http, http://) URL",
                ));
            }
            if endpoint.trim_end_matches('/').len() <= "https://".len() {
                return Err(invalid("blobs.endpoint", "names no host"));
            }
        }
        if self.region.trim().is_empty() {
            return Err(invalid("blobs.region", "must not be empty"));
        }
        if let Some(pem) = &self.ca_pem
            && !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----")
        {
            return Err(invalid(
                "blobs.ca_file",
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ));
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), _) if id.trim().is_empty() => {
                return Err(invalid("blobs.access_key_id", "must not be empty"));
            }
            (Some(_), None) => {
                return Err(invalid(
                    "blobs.secret_access_key_file",
                    "blobs.access_key_id needs its secret: set secret_access_key_file or YILIAN_BLOBS_SECRET_ACCESS_KEY",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "blobs.access_key_id",
                    "a secret access key is set but no access_key_id",
                ));
            }
            (Some(_), Some(secret)) if secret.is_empty() => {
                return Err(invalid(
                    "blobs.secret_access_key_file",
                    "the secret access key is empty",
                ));
            }
            _ => {}
        }
        if !(1..=1024).contains(&self.max_concurrency) {
            return Err(invalid("blobs.max_concurrency", "must be 1 … 1024"));
        }
        if !(5..=5120).contains(&self.part_size_mib) {
            return Err(invalid(
                "blobs.part_size_mib",
                "must be 5 … 5120 (S3's part size limits)",
            ));
        }
        if self.max_retries > 20 {
            return Err(invalid("blobs.max_retries", "must be 0 … 20"));
        }
        if !(1..=600).contains(&self.retry_timeout_secs) {
            return Err(invalid("blobs.retry_timeout_secs", "must be 1 … 600"));
        }
        if !(1..=3600).contains(&self.request_timeout_secs) {
            return Err(invalid("blobs.request_timeout_secs", "must be 1 … 3600"));
        }
        Ok(())
    }
}

/// `s3://bucket[/prefix]` → bucket and prefix; the message says what is wrong.
fn parse_s3_url(url: &str) -> Result<S3Location, String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| "not an s3:// URL".to_string())?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !bucket_ok {
        return Err(format!(
            "bucket {bucket:?} is not an S3 bucket name (3 … 63 of a-z 0-9 . -, starting and ending with a letter or digit)"
        ));
    }
    let prefix = prefix.trim_matches('/');
    for segment in prefix.split('/').filter(|_| !prefix.is_empty()) {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("prefix {prefix:?} has an empty, . or .. segment"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "prefix segment {segment:?}: use a-z A-Z 0-9 - _ . only"
            ));
        }
    }
    Ok(S3Location {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Folder holding the signers' key files (mode 0600) and the hub's clock key.
    pub dir: PathBuf,
    /// How long a newly generated key is valid.
    pub validity_days: i64,
    /// The alliance's signature algorithm for new keys: SM2 over SM3 (national, the default) or
    /// Ed25519. `yilian keygen --algorithm` chooses per signer.
    pub algorithm: KeyAlgorithm,
    /// Readers sign only with passphrase-sealed keys made by `yilian keygen`, giving the passphrase
    /// with each sign request. `false` (the demo): keys are created on first use, in clear.
    pub require_passphrase: bool,
}

/// A signature algorithm, as configuration names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum KeyAlgorithm {
    #[serde(rename = "SM2", alias = "sm2")]
    Sm2,
    #[serde(rename = "Ed25519", alias = "ed25519")]
    Ed25519,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            dir: "yilian-data/keys".into(),
            validity_days: 730,
            algorithm: KeyAlgorithm::Sm2,
            require_passphrase: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllianceConfig {
    pub id: String,
    pub name: String,
    /// Secret for the keyed hash that links a patient across sites. Prefer `patient_key_secret_file`.
    pub patient_key_secret: Option<String>,
    pub patient_key_secret_file: Option<PathBuf>,
    /// Lifetime of API tokens made by `yilian user token`.
    #[serde(default = "default_token_days")]
    pub token_ttl_days: i64,
    /// The alliance's offset from UTC in minutes: routing rules' `hours` and `days` and patient ages
    /// are taken in this local time. Default 480 (China Standard Time, UTC+08:00).
    #[serde(default = "default_utc_offset")]
    pub utc_offset_minutes: i32,
}

fn default_token_days() -> i64 {
    30
}

fn default_utc_offset() -> i32 {
    yilian_policy::DEFAULT_UTC_OFFSET_MINUTES
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    /// 乡镇卫生院
    Township,
    /// 县级医院 (leads the alliance, hosts the reading pools)
    County,
    /// 成员医院
    Member,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub id: String,
    pub name: String,
    pub kind: SiteKind,
    /// Issuer of Patient ID assumed when a file carries none.
    pub patient_id_issuer: String,
    /// Modalities for which the site passed quality control (a precondition of mutual recognition).
    #[serde(default)]
    pub qc_qualified: Vec<String>,
    /// Other names of `patient_id_issuer` in messages: FHIR `identifier.system` URIs (an OID
    /// `urn:oid:…`) and HL7 CX.4 spellings under which this site's patient IDs arrive. A lab message
    /// naming one is filed under `patient_id_issuer`, so HL7 and FHIR reach one patient.
    /// (`urn:yilian:issuer:<patient_id_issuer>` is always understood.)
    #[serde(default)]
    pub patient_id_systems: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub id: String,
    pub name: String,
    pub site: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    pub name: String,
    /// site_tech, reader, clinician or admin.
    pub role: String,
    pub site: String,
    #[serde(default)]
    pub pools: Vec<String>,
    /// Readers: `senior` (default) signs anything; `junior` drafts exams whose routing rule asks for a
    /// review and submits them for a senior's countersign (审核).
    #[serde(default)]
    pub seniority: Option<String>,
    /// Readers: modalities they read (`CT`, `DX`, `ECG`…). Empty: every modality of their pools.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Readers: subspecialties (`neuro`, `chest`…), matched by rules that ask for one.
    #[serde(default)]
    pub subspecialties: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// A study with no new instance for this long is complete and gets routed.
    pub quiet_period_secs: i64,
    /// How long a claim holds an exam.
    pub lease_secs: i64,
    /// How often the hub looks for complete studies.
    pub sweep_interval_secs: u64,
    pub rules: Vec<RoutingRule>,
    /// What in an ECG makes it stat (`[routing.ecg]`).
    pub ecg: EcgAlertRules,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            quiet_period_secs: 300,
            lease_secs: 1800,
            sweep_interval_secs: 5,
            rules: Vec::new(),
            ecg: EcgAlertRules::default(),
        }
    }
}

impl RoutingConfig {
    pub fn rules(&self) -> RoutingRules {
        RoutingRules {
            rules: self.rules.clone(),
        }
    }
}

/// A user resolved against the directory, with typed ids.
#[derive(Clone, Debug)]
pub struct User {
    pub username: Username,
    pub name: String,
    pub role: Role,
    pub site: SiteId,
    pub pools: Vec<PoolId>,
    /// May countersign (a senior reader); false for junior readers.
    pub senior: bool,
    /// Modalities read (empty: all of the pools').
    pub modalities: Vec<String>,
    pub subspecialties: Vec<String>,
}

impl User {
    /// What the user may read, for `yilian_policy::qualified` and offers.
    pub fn qualifications(&self) -> Qualifications {
        Qualifications {
            modalities: self.modalities.clone(),
            subspecialties: self.subspecialties.clone(),
            senior: self.senior,
        }
    }
}

impl Config {
    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        cfg.source = Source {
            origin: origin.to_string(),
            path: None,
            rules: scan_rule_lines(text),
        };
        Ok(cfg)
    }

    /// The file this configuration was loaded from (`None`: embedded or built in memory). Routing
    /// reloads re-read it.
    pub fn source_path(&self) -> Option<&Path> {
        self.source.path.as_deref()
    }

    /// Names the file routing reloads re-read (tests and callers that parsed the text themselves).
    pub fn set_source_path(&mut self, path: impl Into<PathBuf>) {
        self.source.path = Some(path.into());
    }

    /// Reads the routing section again from where this configuration came from (its file, else the
    /// embedded demo) and validates it against this configuration's sites and pools. Only
    /// `[[routing.rules]]`, `[routing.ecg]` and `[rota]` (shifts, leave) are taken; other changes need a restart. On any
    /// error the caller keeps the rules it has.
    pub fn reload_routing(&self) -> Result<Config, ConfigError> {
        let mut fresh = match &self.source.path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let mut c = Self::from_toml(&text, &path.display().to_string())?;
                c.source.path = Some(path.clone());
                c
            }
            None if self.source.origin.contains("demo.toml") => {
                Self::from_toml(DEMO_TOML, &self.source.origin)?
            }
            None => {
                return Err(ConfigError::Reload {
                    origin: self.source.origin.clone(),
                    message: "the configuration was not read from a file".into(),
                });
            }
        };
        let mut next = self.clone();
        next.routing.rules = std::mem::take(&mut fresh.routing.rules);
        next.routing.ecg = fresh.routing.ecg.clone();
        next.rota = fresh.rota;
        next.source = fresh.source;
        next.validate()?;
        Ok(next)
    }

    /// The error for rule `i`, located at the line of `key` in it (else its header).
    fn rule_error(&self, i: usize, key: &str, message: impl Into<String>) -> ConfigError {
        let lines = self.source.rules.get(i);
        let line = lines.map(|r| {
            r.keys
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, l)| *l)
                .unwrap_or(r.header)
        });
        ConfigError::Rule {
            origin: if self.source.origin.is_empty() {
                "configuration".into()
            } else {
                self.source.origin.clone()
            },
            line,
            rule: self
                .routing
                .rules
                .get(i)
                .map(|r| r.name.clone())
                .unwrap_or_default(),
            message: message.into(),
        }
    }

    /// Reads a file, applies environment overrides and secrets, validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::from_toml(&text, &path.display().to_string())?;
        cfg.source.path = Some(path.to_path_buf());
        cfg.finish(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// The embedded demo alliance, with environment overrides.
    pub fn demo() -> Result<Self, ConfigError> {
        let mut cfg = Self::from_toml(DEMO_TOML, "config/demo.toml (embedded)")?;
        cfg.finish(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Applies `YILIAN_*` overrides (from `env`), reads `*_file` secrets, validates.
    pub fn finish(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("YILIAN_HTTP_ADDR") {
            self.server.http_addr = v;
        }
        if let Some(v) = env("YILIAN_PUBLIC_URL") {
            self.server.public_url = Some(v);
        }
        if let Some(v) = env("YILIAN_DATABASE_URL") {
            self.database.url = v;
        }
        if let Some(v) = env("YILIAN_BLOBS_URL") {
            self.blobs.url = v;
        }
        if let Some(v) = env("YILIAN_BLOBS_STAGING_DIR") {
            self.blobs.staging_dir = Some(v.into());
        }
        if let Some(v) = env("YILIAN_BLOBS_ENDPOINT") {
            self.blobs.endpoint = Some(v);
        }
        if let Some(v) = env("YILIAN_BLOBS_REGION") {
            self.blobs.region = v;
        }
        if let Some(v) = env("YILIAN_BLOBS_ACCESS_KEY_ID") {
            self.blobs.access_key_id = Some(v);
        }
        if let Some(v) = env("YILIAN_BLOBS_SECRET_ACCESS_KEY_FILE") {
            self.blobs.secret_access_key_file = Some(v.into());
        }
        if let Some(v) = env("YILIAN_BLOBS_ALLOW_HTTP") {
            self.blobs.allow_http = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = env("YILIAN_BLOBS_CA_FILE") {
            self.blobs.ca_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env("YILIAN_BLOBS_ACK_AFTER") {
            self.blobs.ack_after = match v.as_str() {
                "local" => AckAfter::Local,
                "store" => AckAfter::Store,
                other => {
                    return Err(invalid(
                        "YILIAN_BLOBS_ACK_AFTER",
                        format!("{other:?}: must be store or local"),
                    ));
                }
            };
        }
        if let Some(v) = env("YILIAN_DICOM_ADDR") {
            self.dicom.listen_addr = v;
        }
        if let Some(v) = env("YILIAN_DICOM_ENABLED") {
            self.dicom.enabled = !matches!(v.as_str(), "0" | "false" | "no");
        }
        if let Some(v) = env("YILIAN_MLLP_ADDR") {
            self.lab.mllp_addr = v;
        }
        if let Some(v) = env("YILIAN_MLLP_ENABLED") {
            self.lab.mllp_enabled = !matches!(v.as_str(), "0" | "false" | "no");
        }
        if let Some(v) = env("YILIAN_KEYS_DIR") {
            self.keys.dir = v.into();
        }
        if let Some(v) = env("YILIAN_PATIENT_KEY_SECRET_FILE") {
            self.alliance.patient_key_secret_file = Some(v.into());
        }
        if let Some(path) = &self.alliance.patient_key_secret_file {
            let secret = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            self.alliance.patient_key_secret = Some(secret.trim().to_string());
        }
        if let Some(path) = &self.blobs.secret_access_key_file {
            let secret = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            self.blobs.secret_access_key = Some(secret.trim().to_string());
        } else if let Some(v) = env("YILIAN_BLOBS_SECRET_ACCESS_KEY") {
            self.blobs.secret_access_key = Some(v.trim().to_string());
        }
        if let Some(path) = &self.blobs.ca_file {
            let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            self.blobs.ca_pem = Some(pem);
        }
        if let Some(path) = &self.notifications.webhook_ca_file {
            let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            self.notifications.webhook_ca_pem = Some(pem);
        }
        if let Some(path) = &self.notifications.webhook_secret_file {
            let secret = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            self.notifications.webhook_secret = Some(secret.trim().to_string());
        }
        self.validate()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.notifications.webhook_url
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            return Err(invalid(
                "notifications.webhook_url",
                "must be an https:// (or http://) URL",
            ));
        }
        if let Some(pem) = &self.notifications.webhook_ca_pem {
            if !self
                .notifications
                .webhook_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
            {
                return Err(invalid(
                    "notifications.webhook_ca_file",
                    "a CA file needs an https:// webhook_url",
                ));
            }
            if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(invalid(
                    "notifications.webhook_ca_file",
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
        }
        match &self.alliance.patient_key_secret {
            Some(s) if s.len() >= 16 => {}
            _ => {
                return Err(invalid(
                    "alliance.patient_key_secret",
                    "set it (or patient_key_secret_file) to at least 16 characters",
                ));
            }
        }
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                "must start with sqlite: or postgres://",
            ));
        }
        self.blobs.validate()?;
        let mut site_ids = HashSet::new();
        for (i, s) in self.sites.iter().enumerate() {
            SiteId::new(s.id.clone())
                .map_err(|e| invalid(format!("sites[{i}].id"), e.to_string()))?;
            if !site_ids.insert(s.id.as_str()) {
                return Err(invalid(
                    format!("sites[{i}].id"),
                    format!("site {:?} is defined twice", s.id),
                ));
            }
        }
        let mut systems = HashSet::new();
        for (i, s) in self.sites.iter().enumerate() {
            for sys in &s.patient_id_systems {
                let sys = sys.trim();
                if sys.is_empty() || !systems.insert(sys) {
                    return Err(invalid(
                        format!("sites[{i}].patient_id_systems"),
                        format!("{sys:?} is empty or names another site's patient IDs too"),
                    ));
                }
            }
        }
        let mut pool_ids = HashSet::new();
        for (i, p) in self.pools.iter().enumerate() {
            PoolId::new(p.id.clone())
                .map_err(|e| invalid(format!("pools[{i}].id"), e.to_string()))?;
            if !site_ids.contains(p.site.as_str()) {
                return Err(invalid(
                    format!("pools[{i}].site"),
                    format!("unknown site {:?}", p.site),
                ));
            }
            pool_ids.insert(p.id.as_str());
        }
        let mut names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            Username::new(u.username.clone())
                .map_err(|e| invalid(format!("users[{i}].username"), e.to_string()))?;
            if u.username == "hub" {
                return Err(invalid(
                    format!("users[{i}].username"),
                    "\"hub\" is reserved: it owns the hub's clock key",
                ));
            }
            if !names.insert(u.username.as_str()) {
                return Err(invalid(
                    format!("users[{i}].username"),
                    format!("{:?} is defined twice", u.username),
                ));
            }
            let role = Role::parse(&u.role).ok_or_else(|| {
                invalid(
                    format!("users[{i}].role"),
                    format!(
                        "unknown role {:?} (site_tech, reader, clinician, admin)",
                        u.role
                    ),
                )
            })?;
            if !site_ids.contains(u.site.as_str()) {
                return Err(invalid(
                    format!("users[{i}].site"),
                    format!("unknown site {:?}", u.site),
                ));
            }
            for p in &u.pools {
                if !pool_ids.contains(p.as_str()) {
                    return Err(invalid(
                        format!("users[{i}].pools"),
                        format!("unknown pool {p:?}"),
                    ));
                }
            }
            if let Some(level) = &u.seniority
                && !matches!(level.as_str(), "junior" | "senior")
            {
                return Err(invalid(
                    format!("users[{i}].seniority"),
                    format!("{level:?} is not junior or senior"),
                ));
            }
            if role == Role::Reader && u.pools.is_empty() {
                return Err(invalid(
                    format!("users[{i}].pools"),
                    "a reader needs at least one pool",
                ));
            }
        }
        if !(-720..=840).contains(&self.alliance.utc_offset_minutes) {
            return Err(invalid(
                "alliance.utc_offset_minutes",
                "must be between -720 and 840 (UTC-12:00 to UTC+14:00)",
            ));
        }
        let mut rule_names = HashSet::new();
        for (i, r) in self.routing.rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(self.rule_error(i, "name", "name must not be empty"));
            }
            if !rule_names.insert(r.name.as_str()) {
                return Err(self.rule_error(
                    i,
                    "name",
                    "another rule has this name (explanations and escalation find rules by name)",
                ));
            }
            r.check()
                .map_err(|p| self.rule_error(i, p.key, p.message))?;
            if !pool_ids.contains(r.pool.as_str()) {
                return Err(self.rule_error(i, "pool", format!("unknown pool {:?}", r.pool)));
            }
            if let Some(sub) = &r.subspecialty
                && !self.users.iter().any(|u| {
                    u.pools.contains(&r.pool)
                        && u.subspecialties.iter().any(|x| x.eq_ignore_ascii_case(sub))
                })
            {
                return Err(self.rule_error(
                    i,
                    "subspecialty",
                    format!(
                        "no reader of pool {:?} has subspecialty {sub:?}: its exams could never be offered",
                        r.pool
                    ),
                ));
            }
            for s in &r.sites {
                if !site_ids.contains(s.as_str()) {
                    return Err(self.rule_error(i, "sites", format!("unknown site {s:?}")));
                }
            }
            for (key, p) in [
                ("escalate_to", &r.escalate_to),
                ("fallback_pool", &r.fallback_pool),
            ] {
                if let Some(p) = p
                    && !pool_ids.contains(p.as_str())
                {
                    return Err(self.rule_error(i, key, format!("unknown pool {p:?}")));
                }
            }
        }
        let ecg = &self.routing.ecg;
        if !(ecg.min_heart_rate_bpm > 0.0 && ecg.min_heart_rate_bpm < ecg.max_heart_rate_bpm) {
            return Err(invalid(
                "routing.ecg",
                "min_heart_rate_bpm must be positive and below max_heart_rate_bpm",
            ));
        }
        if self.routing.quiet_period_secs < 0 || self.routing.lease_secs <= 0 {
            return Err(invalid(
                "routing",
                "quiet_period_secs must be >= 0 and lease_secs > 0",
            ));
        }
        self.validate_dicom(&site_ids)?;
        self.validate_rota()?;
        self.validate_lab(&site_ids)?;
        if !yilian_policy::recognition::SCOPES.contains(&self.recognition.scope.as_str()) {
            return Err(invalid(
                "recognition.scope",
                "must be alliance, city or province",
            ));
        }
        self.report.validate()?;
        for (i, it) in self.recognition.items.iter().enumerate() {
            if it.validity_days <= 0 {
                return Err(invalid(
                    format!("recognition.items[{i}].validity_days"),
                    "must be positive",
                ));
            }
            if !it.analytes.is_empty()
                && !it
                    .modality
                    .eq_ignore_ascii_case(yilian_policy::recognition::LAB_ITEM)
            {
                return Err(invalid(
                    format!("recognition.items[{i}].analytes"),
                    "only the LAB item lists analytes",
                ));
            }
            if let Some(scope) = &it.scope
                && !yilian_policy::recognition::SCOPES.contains(&scope.as_str())
            {
                return Err(invalid(
                    format!("recognition.items[{i}].scope"),
                    "must be alliance, city or province",
                ));
            }
            if it.body_part.is_some()
                && it
                    .modality
                    .eq_ignore_ascii_case(yilian_policy::recognition::LAB_ITEM)
            {
                return Err(invalid(
                    format!("recognition.items[{i}].body_part"),
                    "only imaging items name a body part",
                ));
            }
            if it.analytes.iter().any(|a| a.trim().is_empty()) {
                return Err(invalid(
                    format!("recognition.items[{i}].analytes"),
                    "an analyte code is empty",
                ));
            }
        }
        Ok(())
    }

    /// Shifts name known pools and readers of those pools; leave names known readers; times readable.
    fn validate_rota(&self) -> Result<(), ConfigError> {
        if self.rota.offer_secs < 0 {
            return Err(invalid(
                "rota.offer_secs",
                "must be 0 (no offers: readers only pull) or positive",
            ));
        }
        if self.rota.max_open == 0 {
            return Err(invalid(
                "rota.max_open",
                "must be at least 1 (nobody would ever be offered an exam)",
            ));
        }
        for (i, s) in self.rota.shifts.iter().enumerate() {
            let key = |k: &str| format!("rota.shifts[{i}] ({}).{k}", s.name);
            s.check().map_err(|p| invalid(key(p.key), p.message))?;
            if self.pool(&s.pool).is_none() {
                return Err(invalid(key("pool"), format!("unknown pool {:?}", s.pool)));
            }
            for r in &s.readers {
                match self.users.iter().find(|u| &u.username == r) {
                    None => {
                        return Err(invalid(key("readers"), format!("unknown user {r:?}")));
                    }
                    Some(u) if !u.pools.contains(&s.pool) => {
                        return Err(invalid(
                            key("readers"),
                            format!("{r:?} is not a reader of pool {:?}", s.pool),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        for (i, l) in self.rota.leave.iter().enumerate() {
            let key = |k: &str| format!("rota.leave[{i}].{k}");
            l.check().map_err(|p| invalid(key(p.key), p.message))?;
            if !self.users.iter().any(|u| u.username == l.reader) {
                return Err(invalid(
                    key("reader"),
                    format!("unknown user {:?}", l.reader),
                ));
            }
        }
        Ok(())
    }

    /// Senders name known sites, once each, with a usable address; LOINC codes are well formed and
    /// name known senders; limits are sane.
    fn validate_lab(&self, site_ids: &HashSet<&str>) -> Result<(), ConfigError> {
        let lab = &self.lab;
        if !(1024..=64 * 1024 * 1024).contains(&lab.max_message_bytes) {
            return Err(invalid(
                "lab.max_message_bytes",
                "must be between 1024 and 67108864 (64 MiB)",
            ));
        }
        if lab.idle_timeout_secs == 0 {
            return Err(invalid("lab.idle_timeout_secs", "must be at least 1"));
        }
        if !(1..=10_000).contains(&lab.max_connections) {
            return Err(invalid(
                "lab.max_connections",
                "must be between 1 and 10000",
            ));
        }
        if lab.mllp_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "lab.mllp_addr",
                format!("{:?} is not an IP address with a port", lab.mllp_addr),
            ));
        }
        let mut seen: HashSet<String> = HashSet::new();
        for (i, s) in lab.senders.iter().enumerate() {
            let key = |k: &str| format!("lab.senders[{i}].{k}");
            let facility = s.facility.trim();
            if facility.is_empty() || facility.len() > 180 {
                return Err(invalid(key("facility"), "1-180 characters"));
            }
            if !seen.insert(facility.to_ascii_lowercase()) {
                return Err(invalid(
                    key("facility"),
                    format!("{facility:?} is defined twice"),
                ));
            }
            if !site_ids.contains(s.site.as_str()) {
                return Err(invalid(key("site"), format!("unknown site {:?}", s.site)));
            }
            if let Some(h) = &s.host
                && h.parse::<std::net::IpAddr>().is_err()
            {
                return Err(invalid(key("host"), format!("{h:?} is not an IP address")));
            }
            if let Some(p) = &s.review_pool
                && self.pool(p).is_none()
            {
                return Err(invalid(key("review_pool"), format!("unknown pool {p:?}")));
            }
        }
        if let Some(p) = &lab.review_pool
            && self.pool(p).is_none()
        {
            return Err(invalid("lab.review_pool", format!("unknown pool {p:?}")));
        }
        if !(1..=24 * 60).contains(&lab.critical_ack_minutes) {
            return Err(invalid(
                "lab.critical_ack_minutes",
                "must be between 1 and 1440",
            ));
        }
        if !(0..=10).contains(&lab.critical_max_escalations) {
            return Err(invalid(
                "lab.critical_max_escalations",
                "must be between 0 and 10",
            ));
        }
        for (i, u) in lab.critical_escalate_to.iter().enumerate() {
            if self.user(u).is_none() {
                return Err(invalid(
                    format!("lab.critical_escalate_to[{i}]"),
                    format!("unknown user {u:?}"),
                ));
            }
        }
        for (i, c) in lab.critical.iter().enumerate() {
            c.check()
                .map_err(|e| invalid(format!("lab.critical[{i}]"), e))?;
            if let Some(l) = &c.loinc
                && !valid_loinc(l.trim())
            {
                return Err(invalid(
                    format!("lab.critical[{i}].loinc"),
                    format!("{l:?} is not a LOINC code"),
                ));
            }
        }
        for (i, q) in lab.qc.iter().enumerate() {
            if self.lab_sender(&[q.lab.as_str()]).is_none() {
                return Err(invalid(
                    format!("lab.qc[{i}].lab"),
                    format!("unknown lab {:?} (not a lab.senders facility)", q.lab),
                ));
            }
            if !(2000..=2100).contains(&q.year) {
                return Err(invalid(format!("lab.qc[{i}].year"), "not a plausible year"));
            }
        }
        for (i, r) in lab.auto_release.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(invalid(
                    format!("lab.auto_release[{i}].name"),
                    "must not be empty",
                ));
            }
            for l in &r.labs {
                if self.lab_sender(&[l.as_str()]).is_none() {
                    return Err(invalid(
                        format!("lab.auto_release[{i}].labs"),
                        format!("unknown lab {l:?} (not a lab.senders facility)"),
                    ));
                }
            }
        }
        let mut mapped = HashSet::new();
        for (i, m) in lab.loinc.iter().enumerate() {
            let key = |k: &str| format!("lab.loinc[{i}].{k}");
            if m.code.trim().is_empty() {
                return Err(invalid(key("code"), "must not be empty"));
            }
            if !valid_loinc(m.loinc.trim()) {
                return Err(invalid(
                    key("loinc"),
                    format!(
                        "{:?} is not a LOINC code (digits, hyphen, check digit, e.g. 2823-3)",
                        m.loinc
                    ),
                ));
            }
            if let Some(sender) = &m.sender
                && self.lab_sender(&[sender.as_str()]).is_none()
            {
                return Err(invalid(
                    key("sender"),
                    format!("unknown sender {sender:?} (not a lab.senders facility)"),
                ));
            }
            let scope = m.sender.as_deref().map(str::to_ascii_lowercase);
            if !mapped.insert((scope, m.code.trim().to_string())) {
                return Err(invalid(
                    key("code"),
                    format!("{:?} is mapped twice for the same sender", m.code),
                ));
            }
        }
        Ok(())
    }

    /// The lab sender one of these identifiers names (MSH-4 namespace ID, universal ID; a FHIR
    /// performer), compared case-insensitively without surrounding spaces.
    pub fn lab_sender(&self, ids: &[&str]) -> Option<&LabSenderConfig> {
        self.lab.senders.iter().find(|s| {
            let f = s.facility.trim();
            ids.iter().any(|id| id.trim().eq_ignore_ascii_case(f))
        })
    }

    /// The issuer a patient identifier's assigning authority stands for: a site's `patient_id_issuer`
    /// when it names one of its `patient_id_systems` or is `urn:yilian:issuer:<issuer>`, else itself.
    pub fn canonical_issuer<'a>(&'a self, authority: &'a str) -> &'a str {
        let a = authority.trim();
        if let Some(bare) = a.strip_prefix("urn:yilian:issuer:")
            && let Some(site) = self.sites.iter().find(|s| s.patient_id_issuer == bare)
        {
            return &site.patient_id_issuer;
        }
        self.sites
            .iter()
            .find(|s| s.patient_id_systems.iter().any(|x| x.trim() == a))
            .map_or(a, |s| s.patient_id_issuer.as_str())
    }

    /// The pool that reviews a sender's panels: its own `review_pool`, else `lab.review_pool`.
    pub fn lab_review_pool(&self, facility: &str) -> Option<&str> {
        self.lab_sender(&[facility])
            .and_then(|s| s.review_pool.as_deref())
            .or(self.lab.review_pool.as_deref())
    }

    /// The principal a lab sender acts as over MLLP: user `lab.<facility>` (a site tech of its site).
    pub fn lab_principal(&self, sender: &LabSenderConfig) -> Option<User> {
        let slug: String = sender
            .facility
            .trim()
            .chars()
            .take(60)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        Some(User {
            username: Username::new(format!("lab.{slug}")).ok()?,
            name: format!("LIS {}", sender.facility.trim()),
            role: Role::SiteTech,
            site: SiteId::new(sender.site.clone()).ok()?,
            pools: Vec::new(),
            senior: false,
            modalities: Vec::new(),
            subspecialties: Vec::new(),
        })
    }

    /// The LOINC code `[[lab.loinc]]` maps a local code to: the sender's own mapping first, then a
    /// mapping for every sender.
    pub fn loinc_for(&self, sender_facility: &str, code: &str) -> Option<&str> {
        let code = code.trim();
        let sender = sender_facility.trim();
        let of = |specific: bool| {
            self.lab.loinc.iter().find(|m| {
                m.code.trim() == code
                    && match &m.sender {
                        Some(s) => specific && s.trim().eq_ignore_ascii_case(sender),
                        None => !specific,
                    }
            })
        };
        of(true).or_else(|| of(false)).map(|m| m.loinc.trim())
    }

    fn validate_dicom(&self, site_ids: &HashSet<&str>) -> Result<(), ConfigError> {
        let d = &self.dicom;
        if !valid_ae_title(&d.ae_title) {
            return Err(invalid(
                "dicom.ae_title",
                "1-16 printable ASCII characters, no backslash",
            ));
        }
        if d.max_pdu_length < 4096 {
            return Err(invalid("dicom.max_pdu_length", "must be at least 4096"));
        }
        let mut seen = HashSet::new();
        for (i, n) in d.nodes.iter().enumerate() {
            let key = |k: &str| format!("dicom.nodes[{i}].{k}");
            if !valid_ae_title(&n.ae_title) {
                return Err(invalid(
                    key("ae_title"),
                    "1-16 printable ASCII characters, no backslash",
                ));
            }
            if !seen.insert(n.ae_title.trim()) {
                return Err(invalid(
                    key("ae_title"),
                    format!("{:?} is defined twice", n.ae_title),
                ));
            }
            if !site_ids.contains(n.site.as_str()) {
                return Err(invalid(key("site"), format!("unknown site {:?}", n.site)));
            }
            match Role::parse(&n.role) {
                Some(Role::SiteTech | Role::Clinician) => {}
                _ => {
                    return Err(invalid(
                        key("role"),
                        format!("{:?}: a DICOM node is site_tech or clinician", n.role),
                    ));
                }
            }
            if let Some(h) = &n.host
                && h.parse::<std::net::IpAddr>().is_err()
            {
                return Err(invalid(key("host"), format!("{h:?} is not an IP address")));
            }
            if n.port.is_some() && n.host.is_none() {
                return Err(invalid(key("port"), "a C-MOVE destination needs host too"));
            }
        }
        Ok(())
    }

    /// The node with this calling AE title (compared without padding spaces).
    pub fn dicom_node(&self, ae_title: &str) -> Option<&DicomNodeConfig> {
        let ae = ae_title.trim();
        self.dicom.nodes.iter().find(|n| n.ae_title.trim() == ae)
    }

    /// The principal a DICOM node acts as: user `dicom.<ae title>` with the node's role and site.
    pub fn dicom_principal(&self, ae_title: &str) -> Option<User> {
        let n = self.dicom_node(ae_title)?;
        let slug: String = n
            .ae_title
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        Some(User {
            username: Username::new(format!("dicom.{slug}")).ok()?,
            name: format!("DICOM {}", n.ae_title.trim()),
            role: Role::parse(&n.role)?,
            site: SiteId::new(n.site.clone()).ok()?,
            pools: Vec::new(),
            senior: false,
            modalities: Vec::new(),
            subspecialties: Vec::new(),
        })
    }

    /// The C-MOVE destination with this AE title, when the node has an address.
    pub fn move_destination(&self, ae_title: &str) -> Option<MoveDestination> {
        let n = self.dicom_node(ae_title)?;
        Some(MoveDestination {
            ae_title: n.ae_title.trim().to_string(),
            host: n.host.clone()?,
            port: n.port?,
        })
    }

    pub fn site(&self, id: &str) -> Option<&SiteConfig> {
        self.sites.iter().find(|s| s.id == id)
    }

    pub fn pool(&self, id: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.id == id)
    }

    /// A user from the directory, typed. `None` for an unknown name.
    pub fn user(&self, username: &str) -> Option<User> {
        let u = self.users.iter().find(|u| u.username == username)?;
        Some(User {
            username: Username::new(u.username.clone()).ok()?,
            name: u.name.clone(),
            role: Role::parse(&u.role)?,
            site: SiteId::new(u.site.clone()).ok()?,
            pools: u
                .pools
                .iter()
                .filter_map(|p| PoolId::new(p.clone()).ok())
                .collect(),
            senior: u.seniority.as_deref() != Some("junior"),
            modalities: u.modalities.clone(),
            subspecialties: u.subspecialties.clone(),
        })
    }

    pub fn public_url(&self) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.server.http_addr))
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Config {
        let mut c = Config::from_toml(DEMO_TOML, "demo").unwrap();
        c.finish(|_| None).unwrap();
        c
    }

    #[test]
    fn the_demo_alliance_is_valid_and_complete() {
        let c = demo();
        assert!(
            c.sites
                .iter()
                .filter(|s| s.kind == SiteKind::Township)
                .count()
                >= 2
        );
        assert!(c.sites.iter().any(|s| s.kind == SiteKind::County));
        assert!(
            c.sites
                .iter()
                .filter(|s| s.kind == SiteKind::Member)
                .count()
                >= 2
        );
        for role in [Role::SiteTech, Role::Reader, Role::Clinician, Role::Admin] {
            assert!(
                c.users.iter().any(|u| Role::parse(&u.role) == Some(role)),
                "no {role:?} in the demo"
            );
        }
        assert!(!c.routing.rules.is_empty());
    }

    #[test]
    fn keys_default_to_sm2_and_hub_is_a_reserved_username() {
        assert_eq!(KeysConfig::default().algorithm, KeyAlgorithm::Sm2);
        assert!(KeysConfig::default().require_passphrase);
        let c = demo();
        assert_eq!(c.keys.algorithm, KeyAlgorithm::Sm2);
        assert!(
            !c.keys.require_passphrase,
            "the demo creates keys on first use"
        );
        let text = DEMO_TOML.replacen("username = \"li.reader\"", "username = \"hub\"", 1);
        let mut c = Config::from_toml(&text, "demo").unwrap();
        c.alliance.patient_key_secret = Some("x".repeat(16));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
    }

    #[test]
    fn the_example_file_documents_valid_keys() {
        let text = include_str!("../../../config/yilian.example.toml");
        let mut c = Config::from_toml(text, "yilian.example.toml").unwrap();
        // The example points at a secret file; supply the secret instead for the check.
        c.alliance.patient_key_secret_file = None;
        c.alliance.patient_key_secret = Some("x".repeat(16));
        c.validate().unwrap();
    }

    #[test]
    fn dicom_nodes_act_as_principals_and_move_destinations() {
        let c = demo();
        let node = c
            .dicom
            .nodes
            .iter()
            .find(|n| n.role == "site_tech")
            .unwrap();
        let p = c.dicom_principal(&format!("{}  ", node.ae_title)).unwrap();
        assert_eq!(p.role, Role::SiteTech);
        assert_eq!(p.site.as_str(), node.site);
        assert!(p.username.as_str().starts_with("dicom."));
        assert!(c.dicom_principal("NOBODY").is_none());
        let dest = c
            .dicom
            .nodes
            .iter()
            .find(|n| n.port.is_some())
            .expect("the demo has a C-MOVE destination");
        assert!(c.move_destination(&dest.ae_title).is_some());
        assert!(c.move_destination(&node.ae_title).is_none());

        let bad = DEMO_TOML.replacen("role = \"clinician\"\nhost", "role = \"admin\"\nhost", 1);
        let mut c = Config::from_toml(&bad, "demo").unwrap();
        let e = c.finish(|_| None).unwrap_err().to_string();
        assert!(e.starts_with("dicom.nodes[") && e.contains("].role"), "{e}");
        assert!(valid_ae_title("HX_DR01"));
        assert!(!valid_ae_title("A\\B"));
        assert!(!valid_ae_title("SEVENTEEN_CHARS_X"));
        assert!(!valid_ae_title("   "));
    }

    #[test]
    fn lab_senders_are_principals_of_their_site() {
        let c = demo();
        assert!(c.lab.mllp_enabled);
        assert_eq!(c.lab.max_message_bytes, 4 * 1024 * 1024);
        let sender = c.lab_sender(&["hx_lis "]).expect("the demo township lab");
        assert_eq!(sender.site, "tw-hongxing");
        let p = c.lab_principal(sender).unwrap();
        assert_eq!(p.username.as_str(), "lab.hx_lis");
        assert_eq!(p.role, Role::SiteTech);
        assert_eq!(p.site.as_str(), "tw-hongxing");
        assert!(c.lab_sender(&["NOBODY", ""]).is_none());
        // Either HD component may name the sender.
        assert_eq!(
            c.lab_sender(&["", "COUNTYLAB"]).map(|s| s.site.as_str()),
            Some("county-people")
        );

        let mut c = demo();
        c.lab.senders[0].site = "nowhere".into();
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(e, "lab.senders[0].site: unknown site \"nowhere\"");
        let mut c = demo();
        c.lab.senders[1].facility = " hx_lis".into();
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(e, "lab.senders[1].facility: \"hx_lis\" is defined twice");
        let mut c = demo();
        c.lab.senders[0].host = Some("lab-pc".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("lab.senders[0].host"), "{e}");
        let mut c = demo();
        c.lab.max_message_bytes = 10;
        assert!(c.validate().is_err());
    }

    #[test]
    fn lab_recognition_windows_are_checked() {
        let c = demo();
        assert!(
            c.recognition
                .items
                .iter()
                .any(|i| i.modality == "LAB" && i.analytes.contains(&"2823-3".to_string()))
        );
        let mut c = demo();
        let ct = c
            .recognition
            .items
            .iter()
            .position(|i| i.modality == "CT")
            .unwrap();
        c.recognition.items[ct].analytes = vec!["777-3".into()];
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            format!("recognition.items[{ct}].analytes: only the LAB item lists analytes")
        );
        let lab = c
            .recognition
            .items
            .iter()
            .position(|i| i.modality == "LAB")
            .unwrap();
        c.recognition.items[ct].analytes.clear();
        c.recognition.items[lab].analytes = vec![" ".into()];
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            format!("recognition.items[{lab}].analytes: an analyte code is empty")
        );
    }

    #[test]

    fn lab_review_critical_qc_and_release_settings_are_checked() {
        let c = demo();
        assert_eq!(c.lab.critical_ack_minutes, 15);
        assert_eq!(c.lab_review_pool("HX_LIS"), Some("county-lab"));
        assert!(c.lab.critical.iter().any(|r| r.name == "血钾"));
        assert!(c.lab.qc.iter().any(|q| q.lab == "COUNTYLAB"));
        let mut c = demo();
        c.lab.senders[0].review_pool = Some("county-rad".into());
        c.validate().unwrap();
        assert_eq!(
            c.lab_review_pool("hx_lis"),
            Some("county-rad"),
            "a sender's own pool"
        );
        let refused = |tweak: &dyn Fn(&mut Config), key: &str| {
            let mut c = demo();
            tweak(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(key), "{key}: {e}");
        };
        refused(
            &|c| c.lab.review_pool = Some("nowhere".into()),
            "lab.review_pool",
        );
        refused(
            &|c| c.lab.senders[0].review_pool = Some("nowhere".into()),
            "lab.senders[0].review_pool",
        );
        refused(
            &|c| c.lab.critical_ack_minutes = 0,
            "lab.critical_ack_minutes",
        );
        refused(
            &|c| c.lab.critical_escalate_to = vec!["ghost".into()],
            "lab.critical_escalate_to[0]",
        );
        refused(&|c| c.lab.critical[0].low = Some(9.0), "lab.critical[0]");
        refused(
            &|c| {
                c.lab.critical[0].low = None;
                c.lab.critical[0].high = None;
            },
            "lab.critical[0]",
        );
        refused(
            &|c| c.lab.critical[0].loinc = Some("2823-4".into()),
            "lab.critical[0].loinc",
        );
        refused(&|c| c.lab.qc[0].lab = "NOLAB".into(), "lab.qc[0].lab");
        refused(&|c| c.lab.qc[0].year = 26, "lab.qc[0].year");
        refused(
            &|c| c.lab.auto_release[0].labs = vec!["NOLAB".into()],
            "lab.auto_release[0].labs",
        );
        // Unknown keys are refused with their name.
        let bad = DEMO_TOML.replace("critical_ack_minutes = 15", "critical_ack_minute = 15");
        let e = Config::from_toml(&bad, "demo").unwrap_err().to_string();
        assert!(e.contains("critical_ack_minute"), "{e}");
    }

    #[test]
    fn loinc_mappings_are_checked_and_sender_specific_first() {
        assert!(valid_loinc("2823-3"));
        assert!(valid_loinc("58410-2"));
        assert!(valid_loinc("6690-2"));
        assert!(!valid_loinc("2823-4"), "wrong check digit");
        assert!(!valid_loinc("2823"));
        assert!(!valid_loinc("K-3"));
        assert!(!valid_loinc("12345678-9"));
        let mut c = demo();
        assert_eq!(c.loinc_for("HX_LIS", "K"), Some("2823-3"));
        c.lab.loinc.push(LoincMappingConfig {
            code: "K".into(),
            loinc: "6298-4".into(),
            sender: Some("hx_lis".into()),
        });
        c.validate().unwrap();
        assert_eq!(c.loinc_for("HX_LIS", "K"), Some("6298-4"));
        assert_eq!(c.loinc_for("COUNTYLAB", "K"), Some("2823-3"));
        assert_eq!(c.loinc_for("COUNTYLAB", "UNMAPPED"), None);
        c.lab.loinc.push(LoincMappingConfig {
            code: "NA".into(),
            loinc: "2951-2".into(),
            sender: Some("NOBODY".into()),
        });
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("].sender: unknown sender \"NOBODY\""), "{e}");
        let mut c = demo();
        c.lab.loinc[0].loinc = "2823-4".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("lab.loinc[0].loinc"), "{e}");
    }

    #[test]
    fn environment_overrides_apply() {
        let mut c = Config::from_toml(DEMO_TOML, "demo").unwrap();
        c.finish(|k| (k == "YILIAN_DATABASE_URL").then(|| "postgres://x/y".to_string()))
            .unwrap();
        assert_eq!(c.database.url, "postgres://x/y");
        let mut c = Config::from_toml(DEMO_TOML, "demo").unwrap();
        c.finish(|k| match k {
            "YILIAN_MLLP_ADDR" => Some("0.0.0.0:12575".to_string()),
            "YILIAN_MLLP_ENABLED" => Some("0".to_string()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.lab.mllp_addr, "0.0.0.0:12575");
        assert!(!c.lab.mllp_enabled);
    }

    /// `[blobs]` on S3: keys from the TOML, the secret from a file or the environment (never the
    /// TOML), each mistake named by its key.
    #[test]
    fn s3_blobs_are_configured_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s3-secret");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        let with_blobs = |blobs: &str| {
            DEMO_TOML.replacen(
                "[blobs]\nurl = \"file://yilian-data/blobs\"\n",
                &format!("[blobs]\n{blobs}\n"),
                1,
            )
        };
        let ok = with_blobs(&format!(
            "url = \"s3://pacs-blobs/county-a\"\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\naccess_key_id = \"yilian\"\nsecret_access_key_file = \"{}\"\nstaging_dir = \"/var/spool/yilian\"",
            secret.display()
        ));
        let mut c = Config::from_toml(&ok, "demo").unwrap();
        c.finish(|_| None).unwrap();
        assert_eq!(c.blobs.secret_access_key.as_deref(), Some("s3cr3t"));
        assert_eq!(
            c.blobs.s3_location(),
            Some(S3Location {
                bucket: "pacs-blobs".into(),
                prefix: "county-a".into()
            })
        );
        assert_eq!(c.blobs.staging(), PathBuf::from("/var/spool/yilian"));
        assert!(
            !format!("{:?}", c.blobs).contains("s3cr3t"),
            "Debug hides the secret"
        );

        // The whole S3 setup from the environment, the secret itself included.
        let mut c = Config::from_toml(DEMO_TOML, "demo").unwrap();
        c.finish(|k| {
            let v = match k {
                "YILIAN_BLOBS_URL" => "s3://bucket-b",
                "YILIAN_BLOBS_ENDPOINT" => "https://minio.alliance.local",
                "YILIAN_BLOBS_ACCESS_KEY_ID" => "id",
                "YILIAN_BLOBS_SECRET_ACCESS_KEY" => "from-env",
                _ => return None,
            };
            Some(v.to_string())
        })
        .unwrap();
        assert_eq!(c.blobs.secret_access_key.as_deref(), Some("from-env"));
        assert_eq!(c.blobs.s3_location().unwrap().prefix, "");
        assert_eq!(c.blobs.staging(), PathBuf::from("yilian-data/staging"));
        assert_eq!(
            demo().blobs.staging(),
            PathBuf::from("yilian-data/blobs/.staging")
        );

        // The secret never goes in the TOML.
        let e = Config::from_toml(
            &with_blobs("url = \"s3://bucket\"\nsecret_access_key = \"x\""),
            "demo",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("secret_access_key"), "{e}");

        for (blobs, key, says) in [
            ("url = \"s3://B\"", "blobs.url", "bucket"),
            ("url = \"s3://ok-bucket/a//b\"", "blobs.url", "empty"),
            ("url = \"s3://ok-bucket/../b\"", "blobs.url", ".."),
            ("url = \"gs://bucket\"", "blobs.url", "s3://"),
            (
                "url = \"s3://bucket\"\nendpoint = \"http://127.0.0.1:9000\"",
                "blobs.endpoint",
                "allow_http",
            ),
            (
                "url = \"s3://bucket\"\nendpoint = \"minio:9000\"",
                "blobs.endpoint",
                "https://",
            ),
            (
                "url = \"s3://bucket\"\naccess_key_id = \"id\"",
                "blobs.secret_access_key_file",
                "secret",
            ),
            (
                "url = \"s3://bucket\"\npart_size_mib = 4",
                "blobs.part_size_mib",
                "5",
            ),
            (
                "url = \"s3://bucket\"\nmax_concurrency = 0",
                "blobs.max_concurrency",
                "1",
            ),
            (
                "url = \"s3://bucket\"\nregion = \"\"",
                "blobs.region",
                "empty",
            ),
            (
                "url = \"file://yilian-data/blobs\"\nendpoint = \"https://s3.example\"",
                "blobs.endpoint",
                "s3://",
            ),
            (
                "url = \"file://yilian-data/blobs\"\nack_after = \"local\"",
                "blobs.ack_after",
                "s3://",
            ),
        ] {
            let mut c = Config::from_toml(&with_blobs(blobs), "demo").unwrap();
            let e = c.finish(|_| None).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{key}: ")) && e.contains(says),
                "{blobs}: {e}"
            );
        }
        // A secret without its key id.
        let mut c = Config::from_toml(&with_blobs("url = \"s3://bucket\""), "demo").unwrap();
        let e = c
            .finish(|k| (k == "YILIAN_BLOBS_SECRET_ACCESS_KEY").then(|| "x".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("blobs.access_key_id: "), "{e}");

        // A CA file: read at load, for s3:// only, and it must hold a PEM certificate.
        for (url, says) in [
            ("s3://bucket", "holds no PEM certificate"),
            ("file://yilian-data/blobs", "s3://"),
        ] {
            let mut c = Config::from_toml(
                &with_blobs(&format!(
                    "url = \"{url}\"\nca_file = \"{}\"",
                    secret.display()
                )),
                "demo",
            )
            .unwrap();
            let e = c.finish(|_| None).unwrap_err().to_string();
            assert!(e.starts_with("blobs.ca_file: ") && e.contains(says), "{e}");
        }

        // Write-behind: from the TOML or the environment; anything else is refused by name.
        let mut c = Config::from_toml(
            &with_blobs("url = \"s3://bucket\"\nack_after = \"local\""),
            "demo",
        )
        .unwrap();
        c.finish(|_| None).unwrap();
        assert_eq!(c.blobs.ack_after, AckAfter::Local);
        let mut c = Config::from_toml(&with_blobs("url = \"s3://bucket\""), "demo").unwrap();
        c.finish(|k| (k == "YILIAN_BLOBS_ACK_AFTER").then(|| "local".to_string()))
            .unwrap();
        assert_eq!(c.blobs.ack_after, AckAfter::Local);
        let mut c = Config::from_toml(&with_blobs("url = \"s3://bucket\""), "demo").unwrap();
        let e = c
            .finish(|k| (k == "YILIAN_BLOBS_ACK_AFTER").then(|| "later".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("YILIAN_BLOBS_ACK_AFTER: "), "{e}");
        assert!(
            Config::from_toml(
                &with_blobs("url = \"s3://bucket\"\nack_after = \"later\""),
                "demo"
            )
            .is_err()
        );
    }

    #[test]
    fn errors_name_the_key() {
        let bad = DEMO_TOML.replacen("role = \"reader\"", "role = \"radiologist\"", 1);
        let mut c = Config::from_toml(&bad, "demo").unwrap();
        let e = c.finish(|_| None).unwrap_err().to_string();
        assert!(
            e.starts_with("users[") && e.contains("].role: unknown role \"radiologist\""),
            "{e}"
        );

        let e = Config::from_toml("[alliance]\nid='a'\nname='b'\ncolour='red'\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");

        let bad = DEMO_TOML.replacen("pool = \"county-rad\"", "pool = \"nowhere\"", 1);
        let mut c = Config::from_toml(&bad, "demo").unwrap();
        let e = c.finish(|_| None).unwrap_err().to_string();
        assert!(e.contains("unknown pool \"nowhere\""), "{e}");
    }

    /// The 1-based line of the first line of `text` that starts with `needle` (after indentation).
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.trim_start().starts_with(needle))
            .map(|i| i + 1)
            .unwrap()
    }

    #[test]
    fn a_bad_rule_is_named_with_its_line() {
        let bad = DEMO_TOML.replacen("name = \"ecg\"\n", "name = \"ecg\"\ndays = [\"mo\"]\n", 1);
        let mut c = Config::from_toml(&bad, "config/demo.toml").unwrap();
        let e = c.finish(|_| None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "config/demo.toml line {}: routing rule \"ecg\": unknown day \"mo\" (mon … sun)",
                line_of(&bad, "days = [\"mo\"]")
            )
        );

        // A cross-reference (a pool nobody defined) points at its key too.
        let bad = DEMO_TOML.replacen(
            "name = \"xray\"\n",
            "name = \"xray\"\nfallback_pool = \"nowhere\"\n",
            1,
        );
        let mut c = Config::from_toml(&bad, "site.toml").unwrap();
        let e = c.finish(|_| None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "site.toml line {}: routing rule \"xray\": unknown pool \"nowhere\"",
                line_of(&bad, "fallback_pool = \"nowhere\"")
            )
        );

        // A problem without a key of its own (two rules with one name) points at the name.
        let bad = DEMO_TOML.replacen("name = \"xray\"", "name = \"ecg\"", 1);
        let mut c = Config::from_toml(&bad, "site.toml").unwrap();
        let e = c.finish(|_| None).unwrap_err().to_string();
        let second = bad
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim() == "name = \"ecg\"")
            .nth(1)
            .unwrap()
            .0
            + 1;
        assert!(
            e.starts_with(&format!(
                "site.toml line {second}: routing rule \"ecg\": another rule has this name"
            )),
            "{e}"
        );

        for (edit, want) in [
            ("hours = \"8-17\"", "hours \"8-17\": \"8\" is not HH:MM"),
            ("kinds = [\"lab\"]", "unknown kind \"lab\""),
            (
                "min_age_years = 80\nmax_age_years = 18",
                "min_age_years 80 is above max_age_years 18",
            ),
        ] {
            let bad = DEMO_TOML.replacen(
                "name = \"everything-else\"\n",
                &format!("name = \"everything-else\"\n{edit}\n"),
                1,
            );
            let mut c = Config::from_toml(&bad, "x.toml").unwrap();
            let e = c.finish(|_| None).unwrap_err().to_string();
            let first_line = edit.lines().next().unwrap();
            assert!(
                e.starts_with(&format!(
                    "x.toml line {}: routing rule \"everything-else\": {want}",
                    line_of(&bad, first_line)
                )),
                "{e}"
            );
        }

        let mut c = demo();
        c.alliance.utc_offset_minutes = 900;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("alliance.utc_offset_minutes"), "{e}");
        assert_eq!(demo().alliance.utc_offset_minutes, 480);
    }

    #[test]
    fn routing_reloads_from_the_file_only_when_it_validates() {
        let dir = std::env::temp_dir().join(format!(
            "yilian-config-reload-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("yilian.toml");
        std::fs::write(&path, DEMO_TOML).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.source_path(), Some(path.as_path()));

        let renamed = DEMO_TOML.replacen("name = \"xray\"", "name = \"plain-films\"", 1);
        std::fs::write(&path, &renamed).unwrap();
        let next = c.reload_routing().unwrap();
        assert!(next.routing.rules.iter().any(|r| r.name == "plain-films"));
        assert_eq!(next.users.len(), c.users.len());

        let broken = renamed.replacen(
            "name = \"plain-films\"\n",
            "name = \"plain-films\"\nhours = \"25:00-26:00\"\n",
            1,
        );
        std::fs::write(&path, &broken).unwrap();
        let e = next.reload_routing().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{} line {}: routing rule \"plain-films\"",
                path.display(),
                line_of(&broken, "hours = \"25:00")
            )),
            "{e}"
        );
        // A rule may only name pools the running hub has: a new pool needs a restart.
        let new_pool = renamed.replacen("pool = \"county-rad\"", "pool = \"elsewhere\"", 1);
        let new_pool = new_pool.replacen(
            "[[pools]]",
            "[[pools]]\nid = \"elsewhere\"\nname = \"x\"\nsite = \"county-people\"\n\n[[pools]]",
            1,
        );
        std::fs::write(&path, &new_pool).unwrap();
        let e = next.reload_routing().unwrap_err().to_string();
        assert!(e.contains("unknown pool \"elsewhere\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();

        let mut in_memory = Config::from_toml(DEMO_TOML, "test").unwrap();
        in_memory.finish(|_| None).unwrap();
        assert!(in_memory.reload_routing().is_err());
    }

    #[test]
    fn the_demo_night_stroke_rule_routes_only_at_night() {
        use yilian_domain::{SiteId, UnixMillis};
        use yilian_policy::{RoutingFacts, route};
        let c = demo();
        let facts = RoutingFacts {
            study_description: Some("CT 头颅平扫 急性卒中?".into()),
            ..RoutingFacts::new(SiteId::new("tw-hongxing").unwrap(), vec!["CT".into()])
        };
        // 2026-03-03 00:00 Beijing time, then 23:00 and 10:00.
        let midnight = UnixMillis(1_772_467_200_000);
        let night = route(&facts, &c.routing.rules(), midnight.plus_minutes(23 * 60)).unwrap();
        assert_eq!(night.rule, "night-stroke");
        assert!(night.review);
        let day = route(&facts, &c.routing.rules(), midnight.plus_minutes(10 * 60)).unwrap();
        assert_eq!(day.rule, "township-ct-mr");
        assert!(!day.review);
    }
}
