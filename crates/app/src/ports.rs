//! Ports: what the use cases need from the outside world. `yilian-store` implements the catalog,
//! blobs and key vault; the clock is here. Records are plain data with typed ids.

use async_trait::async_trait;
use bytes::Bytes;
use yilian_domain::lab::{CriticalState, LabPanel, LabPanelState, LabSource};
use yilian_domain::{
    ExamId, ExamKind, ExamState, LabPanelId, LocalPatientId, PatientKey, PoolId, Priority,
    ReportId, ReportStatus, SeriesInstanceUid, SiteId, SopClassUid, SopInstanceUid,
    StudyInstanceUid, UnixMillis, Username,
};
use yilian_signing::{Algorithm, Countersignature, Passphrase, PublicKeyRecord, SignatureBlock};

/// A failure of a backend. The text is for logs, never for API clients.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
}

/// When the hub's clock says it is. Tests substitute a clock they move.
pub trait Clock: Send + Sync {
    fn now(&self) -> UnixMillis;
}

/// One stored blob as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    pub modified: UnixMillis,
}

/// A blob's bytes as a stream of chunks: a response that must not hold a whole large blob in memory.
pub type BlobStream = futures::stream::BoxStream<'static, Result<Bytes, PortError>>;

/// Content-addressed blob storage. `put` returns only once the bytes are durable.
#[async_trait]
pub trait Blobs: Send + Sync {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), PortError>;
    async fn get(&self, key: &str) -> Result<Bytes, PortError>;
    /// The blob as chunks read from the store while they are sent on, so memory stays bounded
    /// whatever its size. A missing blob fails here, before any chunk. The default reads it whole.
    async fn get_stream(&self, key: &str) -> Result<BlobStream, PortError> {
        use futures::StreamExt;
        let all = self.get(key).await?;
        Ok(futures::stream::once(async move { Ok(all) }).boxed())
    }
    /// Stores a file's content under `key`, durable on return. The file is consumed: it may be
    /// moved into the store (no copy when on the same filesystem). The default reads it into memory.
    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), PortError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| PortError::Unavailable(format!("read {}: {e}", path.display())))?;
        self.put(key, Bytes::from(bytes)).await?;
        let _ = tokio::fs::remove_file(path).await;
        Ok(())
    }
    /// The blobs whose keys start with `prefix` (for the repair command). The default: not supported.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, PortError> {
        Err(PortError::Unavailable(format!(
            "this blob store cannot list {prefix}"
        )))
    }
    /// Removes a blob (the repair command's orphans); a missing blob is not an error.
    async fn delete(&self, key: &str) -> Result<(), PortError> {
        Err(PortError::Unavailable(format!(
            "this blob store cannot delete {key}"
        )))
    }
    /// A local folder where front ends spool uploads before `put_file` (on the blob store's
    /// filesystem for `file://`, so the file is moved instead of copied). `None`: the system's
    /// temporary folder.
    fn staging_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// Bytes `range` of a blob, the end clamped to its size; an empty range is empty. A start at or
    /// past the end is an error. The default reads the whole blob.
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes, PortError> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let all = self.get(key).await?;
        let len = all.len() as u64;
        if range.start >= len {
            return Err(PortError::NotFound(format!(
                "{key}: bytes from {} (size {len})",
                range.start
            )));
        }
        Ok(all.slice(range.start as usize..range.end.min(len) as usize))
    }
    /// The blob's size in bytes; `None` when there is no such blob.
    async fn size(&self, key: &str) -> Result<Option<u64>, PortError> {
        match self.get(key).await {
            Ok(b) => Ok(Some(b.len() as u64)),
            Err(PortError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// Write-behind stores (`blobs.ack_after = "local"`): uploads what waits in the local outbox and
    /// returns how many blobs went out. Others have no outbox: 0.
    async fn flush_outbox(&self) -> Result<usize, PortError> {
        Ok(0)
    }
    /// Blobs and bytes waiting in the local outbox (write-behind stores; others: none).
    async fn outbox_backlog(&self) -> Result<(u64, u64), PortError> {
        Ok((0, 0))
    }
}

/// The signer's key as the vault reports it: the public half only.
#[derive(Clone, Debug)]
pub struct VaultKey {
    pub key_id: String,
    pub algorithm: String,
    pub public_key: String,
    /// The private key is sealed with the signer's passphrase (not only protected by file mode).
    pub sealed: bool,
}

/// Why the vault did not sign.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("the signing key is protected by a passphrase: give it with the request")]
    PassphraseRequired,
    #[error("the passphrase does not unlock the signing key")]
    WrongPassphrase,
}

/// Holds private signing keys at rest (sealed with the signer's passphrase, or in clear for demo and
/// the hub's own clock key); a key is unlocked in memory for one signature and dropped.
#[async_trait]
pub trait KeyVault: Send + Sync {
    /// The owner's current key; `None` when the owner has none.
    async fn key_for(&self, owner: &Username) -> Result<Option<VaultKey>, PortError>;
    /// Creates a key of `algorithm` for the owner, sealed with `passphrase` when given. Without
    /// `replace`, an existing key is kept and returned; with it, the existing key file is retired
    /// (kept beside, no longer current) and the new key becomes current.
    async fn create_key(
        &self,
        owner: &Username,
        algorithm: Algorithm,
        passphrase: Option<&Passphrase>,
        replace: bool,
    ) -> Result<VaultKey, PortError>;
    /// Signs with the named key of the owner, unlocking it with `passphrase` when it is sealed;
    /// standard base64 of the signature.
    async fn sign(
        &self,
        owner: &Username,
        key_id: &str,
        message: &[u8],
        passphrase: Option<&Passphrase>,
    ) -> Result<String, VaultError>;
}

/// The trusted-time seam: countersigns a signature with the time it saw it. Today the hub's own
/// clock key (`HubClockStamper`); a GB/T 20520 / RFC 3161 time-stamping service can replace it.
#[async_trait]
pub trait TimeStamper: Send + Sync {
    /// The key that countersigns, published under the owner `hub`.
    async fn stamp_key(&self) -> Result<VaultKey, PortError>;
    /// A new countersigning key, when the published one is outside its validity period.
    async fn renew_key(&self) -> Result<VaultKey, PortError>;
    /// The countersignature over `signature` (see `yilian_signing::countersign_message`).
    async fn countersign(&self, signature: &SignatureBlock) -> Result<Countersignature, PortError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StudyState {
    /// Instances may still arrive.
    Receiving,
    /// The uploader said it is complete; routing is next.
    Complete,
    /// An exam exists on a worklist.
    Routed,
    /// No rule matched; an admin must look.
    Unroutable,
}

impl StudyState {
    pub fn as_str(self) -> &'static str {
        match self {
            StudyState::Receiving => "receiving",
            StudyState::Complete => "complete",
            StudyState::Routed => "routed",
            StudyState::Unroutable => "unroutable",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "receiving" => StudyState::Receiving,
            "complete" => StudyState::Complete,
            "routed" => StudyState::Routed,
            "unroutable" => StudyState::Unroutable,
            _ => return None,
        })
    }
}

/// Everything the catalog records when one instance is stored.
#[derive(Clone, Debug)]
pub struct NewInstance {
    pub patient_key: PatientKey,
    pub issuer_of_patient_id: String,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub site: SiteId,
    pub study_uid: StudyInstanceUid,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_description: Option<String>,
    pub series_uid: SeriesInstanceUid,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    pub study_id: Option<String>,
    pub referring_physician_name: Option<String>,
    /// The site identifiers to link to `patient_key` in the patient index (resident IDs excluded).
    pub linked_ids: Vec<LocalPatientId>,
    /// DICOM JSON of the data set, bulk data as references.
    pub metadata: String,
    pub instance: InstanceRecord,
    /// The store's audit event, written in the same transaction when the instance is inserted (one
    /// commit, one fsync, per stored instance).
    pub audit: AuditEvent,
    /// For an ECG waveform instance: what the hub read from it, inserted in the same transaction.
    pub ecg: Option<EcgRow>,
}

/// One stored ECG as the catalog keeps it (`ecg_records`).
#[derive(Clone, Debug, PartialEq)]
pub struct EcgRow {
    pub sop_instance_uid: SopInstanceUid,
    pub study_uid: StudyInstanceUid,
    pub patient_key: PatientKey,
    pub site: SiteId,
    /// The device's local acquisition time, ISO 8601 without zone (orders as text).
    pub acquired_at: Option<String>,
    pub received_at: UnixMillis,
    pub source_format: String,
    pub source_blob_key: Option<String>,
    pub source_sha256: Option<String>,
    pub sample_rate_hz: f64,
    pub samples_per_lead: i64,
    /// Lead labels, comma separated.
    pub leads: String,
    pub heart_rate_bpm: Option<f64>,
    /// JSON array of alert texts.
    pub alerts: String,
    /// JSON: device, device measurements, interpretation, the hub's analysis.
    pub summary: String,
}

/// Which studies a search may see: the caller's scope as data, applied inside the query so that
/// `limit`/`offset` page through visible studies only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchScope {
    /// Studies uploaded by this site.
    Site(SiteId),
    /// Studies whose exam is on one of these pools.
    Pools(Vec<PoolId>),
    /// Studies whose exam is signed (published results).
    Signed,
    /// Nothing.
    Nothing,
}

#[derive(Clone, Debug)]
pub struct InstanceRecord {
    pub sop_instance_uid: SopInstanceUid,
    pub sop_class_uid: SopClassUid,
    pub series_uid: SeriesInstanceUid,
    pub study_uid: StudyInstanceUid,
    pub transfer_syntax_uid: String,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub number_of_frames: Option<i64>,
    pub size_bytes: i64,
    pub sha256: String,
    pub blob_key: String,
    pub received_at: UnixMillis,
    pub received_by: Username,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// The same SOP Instance UID with the same bytes is stored already.
    SameBytes,
    /// The same SOP Instance UID is stored with other bytes.
    DifferentBytes {
        existing_sha256: String,
    },
    /// The study was first uploaded by another site.
    StudyOfOtherSite,
}

#[derive(Clone, Debug)]
pub struct StudyRecord {
    pub study_uid: StudyInstanceUid,
    pub site: SiteId,
    pub patient_key: PatientKey,
    pub issuer_of_patient_id: String,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub accession_number: Option<String>,
    pub study_description: Option<String>,
    pub state: StudyState,
    pub urgent: bool,
    pub urgent_reason: Option<String>,
    pub first_received_at: UnixMillis,
    pub last_received_at: UnixMillis,
}

#[derive(Clone, Debug)]
pub struct SeriesRecord {
    pub series_uid: SeriesInstanceUid,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    /// DICOM Body Part Examined, as stored.
    pub body_part: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewExam {
    pub exam_id: ExamId,
    pub study_uid: StudyInstanceUid,
    pub site: SiteId,
    pub patient_key: PatientKey,
    pub modality: String,
    pub pool: PoolId,
    pub priority: Priority,
    pub due_at: UnixMillis,
    pub route_rule: String,
    pub route_reason: String,
    pub created_at: UnixMillis,
    pub kind: ExamKind,
    /// JSON array of the alerts that made the exam stat, if any.
    pub alerts: Option<String>,
    /// Inserted with the exam (one transaction) when the exam is urgent.
    pub notification: Option<Notification>,
    /// The routing rule requires a senior (second) review of the report.
    pub review: bool,
    /// Only readers with this subspecialty are offered the exam.
    pub subspecialty: Option<String>,
}

/// A notice to a pool's readers that an exam needs them now (urgent routing, escalation). Carries no
/// patient identifiers, so it may leave the hub by webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// A ULID: time-ordered, the polling cursor.
    pub notification_id: String,
    pub at: UnixMillis,
    /// `exam.urgent` or `exam.escalated`.
    pub kind: String,
    pub exam_id: ExamId,
    pub pool: PoolId,
    pub priority: Priority,
    pub due_at: UnixMillis,
    pub message: String,
    /// `none` (no webhook configured), `pending`, `sent` or `failed`.
    pub webhook_state: String,
    pub webhook_attempts: i64,
    /// The readers told (those on duty when it was raised). Empty: every reader of the pool.
    /// Filled on insert and for webhook delivery; reader polls leave it empty.
    pub recipients: Vec<Username>,
}

/// What a reader may take with "next": their qualifications as the claim query filters them.
#[derive(Clone, Debug, Default)]
pub struct ReaderFit {
    /// Modalities (empty: any).
    pub modalities: Vec<String>,
    /// Subspecialties; an exam that asks for one is taken only by a reader who has it.
    pub subspecialties: Vec<String>,
    /// May take exams awaiting review.
    pub senior: bool,
}

/// A reader's open work, for balancing offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderLoad {
    pub username: Username,
    /// Live leases plus live unclaimed offers.
    pub open_items: i64,
    /// The latest offer or first claim that named them.
    pub last_assigned_at: Option<UnixMillis>,
}

/// An exam with the study facts a worklist shows.
#[derive(Clone, Debug)]
pub struct ExamRecord {
    pub exam_id: ExamId,
    pub study_uid: StudyInstanceUid,
    pub site: SiteId,
    pub patient_key: PatientKey,
    pub modality: String,
    pub pool: PoolId,
    pub priority: Priority,
    pub due_at: UnixMillis,
    pub route_rule: String,
    pub route_reason: String,
    pub state: ExamState,
    pub claimed_by: Option<Username>,
    pub lease_until: Option<UnixMillis>,
    pub created_at: UnixMillis,
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: Option<String>,
    pub study_description: Option<String>,
    pub study_date: Option<String>,
    pub first_received_at: UnixMillis,
    pub kind: ExamKind,
    pub alerts: Option<String>,
    pub escalated_pool: Option<PoolId>,
    pub escalated_at: Option<UnixMillis>,
    pub escalation_reason: Option<String>,
    /// The routing rule requires a senior (second) review of the report.
    pub review: bool,
    /// A junior's draft waits for a senior's countersign; only seniors may claim the exam now.
    pub awaiting_review: bool,
    /// The junior reader who drafted and submitted the report, if one did.
    pub drafted_by: Option<Username>,
    /// When the next escalation step falls due (the rule's `escalate_to` after its `fallback_pool`).
    pub escalate_next_at: Option<UnixMillis>,
    /// Only readers with this subspecialty (lower case) may read it.
    pub subspecialty: Option<String>,
    /// The reader last offered the exam (or who last released it).
    pub offered_to: Option<Username>,
    pub offered_at: Option<UnixMillis>,
    /// Until when the offer holds; past or `None`: no live offer.
    pub offer_until: Option<UnixMillis>,
    /// Why it was offered to that reader.
    pub offer_reason: Option<String>,
}

impl ExamRecord {
    /// The reader the exam is offered to right now, if any.
    pub fn live_offer(&self, now: UnixMillis) -> Option<&Username> {
        match (self.offered_to.as_ref(), self.offer_until) {
            (Some(u), Some(until)) if until >= now => Some(u),
            _ => None,
        }
    }

    /// The pools whose readers see the exam: its own and the one it escalated to.
    pub fn pools(&self) -> Vec<PoolId> {
        let mut out = vec![self.pool.clone()];
        out.extend(self.escalated_pool.clone());
        out
    }

    /// True when the reader's pools include the exam's pool or the pool it escalated to.
    pub fn visible_to(&self, pools: &[PoolId]) -> bool {
        pools.contains(&self.pool)
            || self
                .escalated_pool
                .as_ref()
                .is_some_and(|p| pools.contains(p))
    }
}

#[derive(Clone, Debug)]
pub struct ReportRecord {
    pub report_id: ReportId,
    pub exam_id: ExamId,
    pub version: i64,
    pub status: ReportStatus,
    pub findings: String,
    pub impression: String,
    pub author: Username,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// For final reports: the signed document's canonical `report` text and its signature.
    pub signed_at: Option<UnixMillis>,
    pub key_id: Option<String>,
    pub algorithm: Option<String>,
    pub signature: Option<String>,
    pub document: Option<String>,
    /// The template the text was written in (`None`: a report from before templates).
    pub template: Option<String>,
    /// JSON array of `{key, label, text}` in template order (`None`: before templates).
    pub sections: Option<String>,
    /// The hub's countersignature of a final report (JSON of `yilian_signing::Countersignature`);
    /// `None` for drafts and for reports signed before version 14.
    pub countersignature: Option<String>,
}

/// A signed revocation (作废) of a report's latest version: the exam's result is withdrawn.
#[derive(Clone, Debug)]
pub struct RevocationRecord {
    pub revocation_id: String,
    pub report_id: ReportId,
    pub exam_id: ExamId,
    pub version: i64,
    pub reason: String,
    pub revoked_by: Username,
    pub revoked_at: UnixMillis,
    pub key_id: String,
    pub algorithm: String,
    pub signature: String,
    /// The canonical revocation document that was signed.
    pub document: String,
    /// The hub's countersignature (JSON of `yilian_signing::Countersignature`).
    pub countersignature: Option<String>,
}

/// How an amendment or a revocation went in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleOutcome {
    Stored,
    /// A later version exists (someone amended first).
    Superseded,
    /// The exam's result is revoked.
    Revoked,
}

/// One exam's turnaround as the catalog records it. No patient data: aggregates are built from these
/// for admins, who see no patient data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnaroundRow {
    pub pool: PoolId,
    /// The exam's priority now (after any raise or escalation).
    pub priority: Priority,
    /// `studies.first_received_at`: the study's first instance arrived.
    pub received_at: UnixMillis,
    /// `exams.created_at`: the study was routed to the pool.
    pub routed_at: UnixMillis,
    /// The first lease anyone took; renewals and later claims keep it.
    pub first_claimed_at: Option<UnixMillis>,
    pub signed_at: Option<UnixMillis>,
    /// The final report became visible to the alliance (today the same moment as signing).
    pub published_at: Option<UnixMillis>,
    pub due_at: UnixMillis,
    /// Signed after `due_at` (set in the signing transaction).
    pub signed_late: bool,
}

/// One pool's SLA and turnaround totals over every exam it ever had, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolTurnaround {
    pub pool: PoolId,
    /// Exams signed after due, plus queued exams already past due.
    pub sla_breaches: u64,
    /// Signed exams (the histogram's count).
    pub signed: u64,
    /// Sum of received → signed over signed exams, in milliseconds.
    pub received_to_signed_sum_ms: i64,
    /// For each bound asked for, the signed exams whose received → signed took at most that long
    /// (cumulative, as a Prometheus histogram counts).
    pub received_to_signed_le: Vec<u64>,
}

/// The note a corrected panel gets when the hub holds no earlier report of its order.
pub const UNMATCHED_CORRECTION_NOTE: &str = "a correction for an order the hub has never received: stored as a new panel, nothing superseded";

/// One received lab message with its panels, committed in one transaction (`lab_messages`,
/// `lab_panels`, `lab_results`, the patients' identifiers, and the audit rows).
#[derive(Clone, Debug)]
pub struct NewLabMessage {
    /// A ULID.
    pub message_id: String,
    pub source: LabSource,
    /// The `[[lab.senders]]` facility it came from.
    pub sending_facility: String,
    /// HL7 MSH-10; FHIR Bundle id.
    pub control_id: String,
    /// The sender's site.
    pub site: SiteId,
    pub version: String,
    pub sha256: String,
    pub size_bytes: i64,
    /// The original bytes, already durable in the blob store.
    pub blob_key: String,
    pub received_at: UnixMillis,
    pub received_by: Username,
    /// The offset lab times without their own are read in (the alliance's).
    pub utc_offset_minutes: i16,
    pub panels: Vec<NewLabPanel>,
    /// Written in the same transaction (one per panel, completed with its supersession).
    pub audit: Vec<AuditEvent>,
}

/// One panel of a new message.
#[derive(Clone, Debug)]
pub struct NewLabPanel {
    pub panel_id: LabPanelId,
    pub patient_key: PatientKey,
    /// The identifier the key was computed from (issuer: assigning authority, else the site's).
    pub patient: LocalPatientId,
    /// The site identifiers to link to `patient_key` in the patient index (resident IDs excluded).
    pub linked_ids: Vec<LocalPatientId>,
    /// The service's LOINC: as sent when its code is LOINC, else from `[[lab.loinc]]`.
    pub service_loinc: Option<String>,
    /// Per result, in order: its LOINC came from `[[lab.loinc]]` (not from the sender).
    pub loinc_mapped: Vec<bool>,
    /// The panel as parsed (LOINC mapped), its notes included.
    pub panel: LabPanel,
    /// Review or release, decided at ingest.
    pub review: LabReview,
    /// Critical values found in it: each opens a case (with its notification) in the same commit.
    pub critical: Vec<NewCriticalCase>,
}

/// What happens to a new panel: review by a lab physician of a pool, or release by a rule.
#[derive(Clone, Debug)]
pub struct LabReview {
    /// `AwaitingReview` or `AutoReleased`.
    pub state: LabPanelState,
    pub review_pool: Option<PoolId>,
    /// The policy's explanation, for people.
    pub decision: String,
    /// The auto-release rule that applied.
    pub release_rule: Option<String>,
}

/// A critical-value case opened with its panel.
#[derive(Clone, Debug)]
pub struct NewCriticalCase {
    pub case_id: String,
    /// The result's position in the panel, from 1.
    pub result_seq: i64,
    pub notify_site: SiteId,
    pub analyte: String,
    pub value_text: String,
    pub unit: String,
    pub rule_name: Option<String>,
    pub explanation: String,
    pub ack_due_at: UnixMillis,
    /// Addressed to the ordering site's people and the review pool; no patient identifiers.
    pub notification: Notification,
}

/// A critical-value case as the register keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriticalCaseRecord {
    pub case_id: String,
    pub panel_id: LabPanelId,
    pub result_seq: i64,
    /// The sending lab's site.
    pub site: SiteId,
    pub notify_site: SiteId,
    pub review_pool: Option<PoolId>,
    pub patient_key: PatientKey,
    pub analyte: String,
    pub value_text: String,
    pub unit: String,
    pub rule_name: Option<String>,
    pub explanation: String,
    pub opened_at: UnixMillis,
    pub ack_due_at: UnixMillis,
    pub state: CriticalState,
    pub escalations: i64,
    pub last_escalated_at: Option<UnixMillis>,
    pub next_escalation_at: Option<UnixMillis>,
    pub ack: Option<CriticalAck>,
}

/// Who took a critical value, and what they read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriticalAck {
    pub at: UnixMillis,
    /// The account that recorded it.
    pub by: Username,
    /// The person who received the value (may be someone on the phone).
    pub name: String,
    pub role: Option<String>,
    pub read_back: String,
}

/// Which cases the register lists: opened in `[from, to)`, of these sites (sending or told; empty:
/// all), newest first.
#[derive(Clone, Debug, Default)]
pub struct CriticalFilter {
    pub sites: Vec<SiteId>,
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
    pub only_open: bool,
    pub limit: i64,
}

/// A lab physician's sign-off of a panel: the signed canonical document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabSignoff {
    pub panel_id: LabPanelId,
    pub signer: Username,
    pub comment: String,
    pub signed_at: UnixMillis,
    pub key_id: String,
    pub algorithm: String,
    pub signature: String,
    /// The canonical JSON (RFC 8785) that was signed.
    pub document: String,
    /// The hub's countersignature (JSON of `yilian_signing::Countersignature`); `None` before v14.
    pub countersignature: Option<String>,
}

/// How a new panel was filed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLabPanel {
    pub panel_id: LabPanelId,
    /// The earlier report of the same order and service it replaces, now marked `superseded_by`.
    pub supersedes: Option<LabPanelId>,
    /// A correction whose order the hub never saw (stored with `UNMATCHED_CORRECTION_NOTE`).
    pub unmatched_correction: bool,
}

#[derive(Clone, Debug)]
pub enum LabInsertOutcome {
    Inserted(Vec<StoredLabPanel>),
    /// The sender's control ID was taken meanwhile (a concurrent insert won); nothing was written.
    Exists(Box<LabMessageRecord>),
}

/// A stored lab message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabMessageRecord {
    pub message_id: String,
    pub source: LabSource,
    pub sending_facility: String,
    pub control_id: String,
    pub site: SiteId,
    pub version: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub blob_key: String,
    pub received_at: UnixMillis,
    pub received_by: Username,
    /// Its panels, in message order.
    pub panel_ids: Vec<LabPanelId>,
}

/// A stored panel as the catalog returns it: the domain panel rebuilt from its rows (the patient with
/// the one identifier the hub keyed it by; everything else is in the original message's blob).
#[derive(Clone, Debug)]
pub struct LabPanelRecord {
    pub panel_id: LabPanelId,
    pub message_id: String,
    /// HL7 MSH-10 / FHIR Bundle id of its message.
    pub control_id: String,
    /// Position in its message, from 1.
    pub seq: i64,
    pub site: SiteId,
    pub sending_facility: String,
    pub patient_key: PatientKey,
    pub patient: LocalPatientId,
    pub service_loinc: Option<String>,
    pub loinc_mapped: Vec<bool>,
    pub panel: LabPanel,
    pub received_at: UnixMillis,
    pub received_by: Username,
    pub state: LabPanelState,
    /// The pool that reviews it, when one is configured.
    pub review_pool: Option<PoolId>,
    /// Why it awaits review or how it was released (the policy's words).
    pub decision: Option<String>,
    pub release_rule: Option<String>,
    pub released_at: Option<UnixMillis>,
    /// The lab physician who signed it off.
    pub released_by: Option<Username>,
    /// Critical values found at ingest.
    pub critical_count: i64,
    pub supersedes: Option<LabPanelId>,
    pub superseded_by: Option<LabPanelId>,
    /// The original message (blob key and SHA-256).
    pub raw_blob_key: String,
    pub raw_sha256: String,
}

/// Which earlier panel a new report of an order replaces: the sender's order numbers and the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabOrderRef {
    pub sending_facility: String,
    pub filler_order_number: Option<String>,
    pub placer_order_number: Option<String>,
    pub service_code: String,
}

/// Which published lab panels a FHIR search wants (`lab_fhir`). Criteria combine with AND; an empty
/// list or `None` does not restrict. Only released or auto-released panels are ever returned.
#[derive(Clone, Debug, Default)]
pub struct PublishedLabQuery {
    /// Any of these patients.
    pub patient_keys: Vec<PatientKey>,
    /// Any of these panels.
    pub panel_ids: Vec<LabPanelId>,
    /// The filler or placer order number.
    pub order_number: Option<String>,
    /// The service code or its LOINC is one of these.
    pub service_codes: Vec<String>,
    /// The panel has a result whose code or LOINC is one of these.
    pub result_codes: Vec<String>,
    /// Specimen collected at or after.
    pub collected_from: Option<UnixMillis>,
    /// Specimen collected before.
    pub collected_before: Option<UnixMillis>,
    /// At most this many panels, newest received first.
    pub limit: i64,
}

/// A published panel with what decides how it is shown: the reports of its order after it, and the
/// status of the one it replaced.
#[derive(Clone, Debug)]
pub struct PublishedLabPanel {
    pub record: LabPanelRecord,
    /// The hub states of the later reports of its order (its `superseded_by` chain), oldest first.
    pub newer: Vec<LabPanelState>,
    /// The status of the report it superseded, if any.
    pub replaced_status: Option<yilian_domain::lab::PanelStatus>,
}

/// How a published panel named its patient (for the FHIR Patient).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabIdentityRow {
    pub patient_key: PatientKey,
    pub issuer: String,
    pub patient_id: String,
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub received_at: UnixMillis,
}

/// An audit record: who did what to which resource, and whether it was allowed.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub at: UnixMillis,
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub patient_key: Option<PatientKey>,
    pub outcome: String,
    pub detail: String,
}

/// A stored audit event with its place in the hash chain (`None` for events older than the chain).
#[derive(Clone, Debug)]
pub struct AuditRecord {
    pub seq: Option<i64>,
    pub hash: Option<String>,
    pub event: AuditEvent,
}

/// What walking the audit hash chain found (`yilian audit verify`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditChainReport {
    /// Chained events checked.
    pub events: u64,
    /// Events from before the chain existed (no sequence number).
    pub unchained: u64,
    /// The first break, in words; `None` when the chain is whole.
    pub problem: Option<String>,
}

/// One receiving clinician's recognition decision on one result (`recognition_decisions`). The decision
/// and reason are the policy's codes (`policy::Decision::as_str`, `DeclineReason::code`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecognitionDecisionRecord {
    pub decision_id: String,
    /// `report` (imaging/ECG) or `lab`.
    pub result_kind: String,
    /// Report id or lab panel id.
    pub result_id: String,
    /// Lab: the result's position in its panel (from 1); `None`: the whole panel or a report.
    pub result_seq: Option<i64>,
    /// Modality, or LOINC (else the lab's code).
    pub item: String,
    pub performing_site: String,
    pub patient_key: PatientKey,
    pub deciding_site: SiteId,
    pub decided_by: Username,
    pub decision: String,
    pub reason: Option<String>,
    pub reason_text: Option<String>,
    /// Shown recognised (HR) when decided.
    pub recognised: bool,
    pub decided_at: UnixMillis,
}

/// The catalog: patients, studies, instances, exams, reports, keys, tokens, audit.
#[async_trait]
pub trait Catalog: Send + Sync {
    async fn ping(&self) -> Result<(), PortError>;

    // --- ingest
    async fn instance(&self, sop: &SopInstanceUid) -> Result<Option<InstanceRecord>, PortError>;
    /// One transaction: patient, study, series and instance rows, with duplicate detection.
    async fn insert_instance(&self, new: &NewInstance) -> Result<InsertOutcome, PortError>;
    async fn study(&self, study: &StudyInstanceUid) -> Result<Option<StudyRecord>, PortError>;
    async fn study_series(&self, study: &StudyInstanceUid) -> Result<Vec<SeriesRecord>, PortError>;
    async fn study_instances(
        &self,
        study: &StudyInstanceUid,
    ) -> Result<Vec<InstanceRecord>, PortError>;
    /// Matches at the query's level within the scope, ordered newest study first, then series and
    /// instance number; `limit`/`offset` of the query apply.
    async fn search(
        &self,
        query: &yilian_formats::query::Query,
        scope: &SearchScope,
    ) -> Result<Vec<yilian_formats::query::QueryMatch>, PortError>;
    /// Stored metadata documents of a study, optionally one series or one instance, in instance
    /// order. Instances stored before metadata was kept have none (the caller reads the blob).
    async fn metadata(
        &self,
        study: &StudyInstanceUid,
        series: Option<&SeriesInstanceUid>,
        sop: Option<&SopInstanceUid>,
    ) -> Result<Vec<(SopInstanceUid, String)>, PortError>;
    async fn patient_key_of(
        &self,
        issuer: &str,
        patient_id: &str,
    ) -> Result<Option<PatientKey>, PortError>;
    /// The blob keys in `[from, to)` that catalog rows point to (instances, ECG originals, lab
    /// messages), without repeats.
    async fn referenced_blob_keys(&self, from: &str, to: &str) -> Result<Vec<String>, PortError>;
    /// The patient keys a site identifier was filed under (the alliance patient index).
    async fn keys_linked_to_id(
        &self,
        issuer: &str,
        patient_id: &str,
    ) -> Result<Vec<PatientKey>, PortError>;
    /// The site identifiers filed under a patient key (at most 64).
    async fn ids_linked_to_key(&self, key: &PatientKey) -> Result<Vec<LocalPatientId>, PortError>;
    /// Patient's Birth Date (DICOM DA text) last recorded for this identifier, if any.
    async fn patient_birth_date(
        &self,
        issuer: &str,
        patient_id: &str,
    ) -> Result<Option<String>, PortError>;

    // --- routing
    /// Receiving → complete (with the uploader's urgency). False when the study is not receiving.
    async fn mark_study_complete(
        &self,
        study: &StudyInstanceUid,
        urgent: bool,
        reason: Option<&str>,
    ) -> Result<bool, PortError>;
    /// Studies that are complete, or receiving and quiet since `quiet_before`.
    async fn studies_to_route(
        &self,
        quiet_before: UnixMillis,
        limit: i64,
    ) -> Result<Vec<StudyInstanceUid>, PortError>;
    /// Creates the exam and marks the study routed, once. False when the study already has one.
    async fn create_exam(&self, exam: &NewExam) -> Result<bool, PortError>;
    async fn mark_study_unroutable(&self, study: &StudyInstanceUid) -> Result<(), PortError>;
    /// A queued exam becomes more urgent (the uploader flagged it after routing): new priority and due
    /// time, the reason appended to the routing explanation. False when it is no longer queued.
    async fn raise_exam(
        &self,
        exam: &ExamId,
        priority: Priority,
        due_at: UnixMillis,
        reason: &str,
        notification: &Notification,
    ) -> Result<bool, PortError>;
    /// Queued exams with no live lease that are past due and not escalated, or whose next escalation
    /// step is due: escalation candidates, oldest due first.
    async fn overdue_exams(
        &self,
        now: UnixMillis,
        limit: i64,
    ) -> Result<Vec<ExamRecord>, PortError>;
    /// Escalates once (conditional on not escalated and still queued), recording when the next step
    /// falls due, if there is one. False when it was not.
    #[allow(clippy::too_many_arguments)]
    async fn escalate_exam(
        &self,
        exam: &ExamId,
        priority: Priority,
        to_pool: Option<&PoolId>,
        reason: &str,
        now: UnixMillis,
        next_step_at: Option<UnixMillis>,
        notification: &Notification,
    ) -> Result<bool, PortError>;
    /// The next escalation step (conditional on one being due and the exam still queued): the exam
    /// moves to `to_pool`'s worklist as its escalation pool, the reason is appended, and `to_pool` is
    /// notified. False when not.
    async fn escalate_exam_further(
        &self,
        exam: &ExamId,
        to_pool: &PoolId,
        reason: &str,
        now: UnixMillis,
        notification: &Notification,
    ) -> Result<bool, PortError>;

    /// Reschedules (or, with `None`, drops) an escalated exam's next escalation step.
    async fn set_next_escalation(
        &self,
        exam: &ExamId,
        at: Option<UnixMillis>,
    ) -> Result<(), PortError>;

    // --- notifications
    /// Notifications for these pools after the cursor (oldest first): those addressed to the whole
    /// pool and those addressed to `who`.
    async fn notifications_for(
        &self,
        pools: &[PoolId],
        who: &Username,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Notification>, PortError>;
    /// Notifications whose webhook delivery is pending, oldest first.
    async fn pending_webhooks(&self, limit: i64) -> Result<Vec<Notification>, PortError>;
    async fn set_webhook_state(
        &self,
        notification_id: &str,
        state: &str,
        attempts: i64,
    ) -> Result<(), PortError>;

    // --- ECG
    async fn ecg_records_of_study(
        &self,
        study: &StudyInstanceUid,
    ) -> Result<Vec<EcgRow>, PortError>;
    /// The patient's most recent ECG outside `not_study` that was acquired (else received) before the
    /// given time, from any site.
    async fn prior_ecg(
        &self,
        patient: &PatientKey,
        not_study: &StudyInstanceUid,
        acquired_before: Option<&str>,
        received_before: UnixMillis,
    ) -> Result<Option<EcgRow>, PortError>;

    // --- reading
    /// Queued exams of these pools, or escalated to them, most urgent first, then by due time.
    async fn worklist(&self, pools: &[PoolId]) -> Result<Vec<ExamRecord>, PortError>;
    async fn exam(&self, exam: &ExamId) -> Result<Option<ExamRecord>, PortError>;
    async fn exam_of_study(
        &self,
        study: &StudyInstanceUid,
    ) -> Result<Option<ExamRecord>, PortError>;
    /// Takes or renews the lease when the exam is queued and unclaimed, claimed by `who`, or its lease
    /// lapsed. Atomic in the database: two readers never both succeed.
    /// The first successful claim also records `first_claimed_at` (same statement).
    /// `senior`: the caller may take an exam that awaits review (juniors may not).
    async fn try_claim(
        &self,
        exam: &ExamId,
        who: &Username,
        senior: bool,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<bool, PortError>;
    /// A junior hands the exam they hold to the seniors: it awaits review, the lease is released and
    /// the junior is recorded as drafter. False when `who` does not hold the queued exam.
    async fn submit_for_review(
        &self,
        exam: &ExamId,
        who: &Username,
        now: UnixMillis,
    ) -> Result<bool, PortError>;
    /// Takes a lease on the most urgent claimable exam of these pools (or escalated to them): queued,
    /// unclaimed or with a lapsed lease, by priority then due time. Atomic across hub replicas (the
    /// candidate row is locked with `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer).
    /// Only exams the reader fits are taken, and none offered to another reader while that offer
    /// lives; among equal priority the caller's own offers come first.
    async fn claim_next(
        &self,
        pools: &[PoolId],
        who: &Username,
        fit: &ReaderFit,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<Option<ExamId>, PortError>;
    /// Drops `who`'s lease; `who` is remembered as the last reader offered the exam.
    async fn release(&self, exam: &ExamId, who: &Username) -> Result<bool, PortError>;
    /// Queued exams with no live lease and no live offer, most urgent first: what the offer sweep
    /// places.
    async fn offer_candidates(
        &self,
        now: UnixMillis,
        limit: i64,
    ) -> Result<Vec<ExamRecord>, PortError>;
    /// Every reader who holds or was offered an exam, with their open items.
    async fn reader_loads(&self, now: UnixMillis) -> Result<Vec<ReaderLoad>, PortError>;
    /// Offers the exam to `to` until `until` (conditional on no live lease or offer), with an
    /// optional notification in the same transaction. False when it was not offered.
    async fn offer_exam(
        &self,
        exam: &ExamId,
        to: &Username,
        reason: &str,
        now: UnixMillis,
        until: UnixMillis,
        notification: Option<&Notification>,
    ) -> Result<bool, PortError>;
    /// Gives a queued exam's lease to `to`, whoever held it. False when the exam is not queued.
    async fn reassign(
        &self,
        exam: &ExamId,
        to: &Username,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<bool, PortError>;
    async fn save_draft(&self, draft: &ReportRecord) -> Result<(), PortError>;
    async fn draft_of(&self, exam: &ExamId) -> Result<Option<ReportRecord>, PortError>;
    /// One transaction: the exam (queued, claimed by `who`) becomes signed and the final report is
    /// stored; the draft goes. False when the exam was not in that state.
    /// The exam's `signed_at`, `published_at` and `sla_breached` (signed after `due_at`) are written
    /// by the same UPDATE that marks it signed.
    async fn finalize_report(
        &self,
        report: &ReportRecord,
        who: &Username,
        now: UnixMillis,
    ) -> Result<bool, PortError>;

    // --- turnaround and metrics (aggregates only, never patient data)
    /// Turnaround of the exams routed in `[from, to)`, oldest first, at most `limit` rows.
    async fn turnaround_rows(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: i64,
    ) -> Result<Vec<TurnaroundRow>, PortError>;
    /// Queued exams counted by their own pool (not the pool they escalated to) and priority.
    async fn worklist_depth(&self) -> Result<Vec<(PoolId, Priority, u64)>, PortError>;
    /// Per pool with any exam: SLA breaches as of `now` and the received → signed histogram with
    /// these upper bounds (milliseconds, ascending). One aggregate query.
    async fn pool_turnaround(
        &self,
        now: UnixMillis,
        bounds_ms: &[i64],
    ) -> Result<Vec<PoolTurnaround>, PortError>;

    // --- results
    async fn report(&self, report: &ReportId) -> Result<Option<ReportRecord>, PortError>;
    /// The latest final report of an exam.
    async fn final_report_of(&self, exam: &ExamId) -> Result<Option<ReportRecord>, PortError>;
    async fn latest_final_version(&self, exam: &ExamId) -> Result<Option<i64>, PortError>;
    /// Every final version of an exam's report, oldest first.
    async fn final_reports_of(&self, exam: &ExamId) -> Result<Vec<ReportRecord>, PortError>;
    /// The exam's revocation, if its result was revoked.
    async fn revocation_of(&self, exam: &ExamId) -> Result<Option<RevocationRecord>, PortError>;
    /// One transaction, serialised on the exam's row: stores `report` (a final row, version
    /// `previous_version + 1`) and the notification, when `previous_version` is still the latest
    /// and the exam's result is not revoked. Nothing is updated.
    async fn amend_report(
        &self,
        report: &ReportRecord,
        previous_version: i64,
        notification: &Notification,
    ) -> Result<LifecycleOutcome, PortError>;
    /// One transaction, serialised on the exam's row: stores the revocation and the notification
    /// when the revoked version is still the latest and the exam is not revoked yet.
    async fn revoke_report(
        &self,
        revocation: &RevocationRecord,
        notification: &Notification,
    ) -> Result<LifecycleOutcome, PortError>;
    /// The latest final report of each of a patient's exams, newest first.
    async fn results_of_patient(
        &self,
        patient: &PatientKey,
    ) -> Result<Vec<(ExamRecord, ReportRecord)>, PortError>;

    // --- lab
    /// The stored message with this sender's control ID, if any.
    async fn lab_message(
        &self,
        source: LabSource,
        sending_facility: &str,
        control_id: &str,
    ) -> Result<Option<LabMessageRecord>, PortError>;
    /// One transaction: the message row, each panel with its results (superseding the latest
    /// unsuperseded panel of the same order and service, found by filler order number, else placer
    /// order number; a correction that finds none gets `UNMATCHED_CORRECTION_NOTE`), the patients'
    /// identifiers, and the audit rows. `Exists` when the control ID is taken; nothing is written then.
    async fn insert_lab_message(
        &self,
        message: &NewLabMessage,
    ) -> Result<LabInsertOutcome, PortError>;
    /// The latest panel of this order and service that nothing supersedes yet: the one a new report
    /// (a correction) would supersede.
    async fn latest_lab_panel_of_order(
        &self,
        order: &LabOrderRef,
    ) -> Result<Option<LabPanelId>, PortError>;
    /// A panel with its results.
    async fn lab_panel(&self, panel: &LabPanelId) -> Result<Option<LabPanelRecord>, PortError>;
    /// A patient's panels with their results, newest received first, at most `limit`.
    async fn lab_panels_of_patient(
        &self,
        patient: &PatientKey,
        limit: i64,
    ) -> Result<Vec<LabPanelRecord>, PortError>;
    /// Published (released or auto-released) panels matching the query, with their results, newest
    /// received first.
    async fn published_lab_panels(
        &self,
        query: &PublishedLabQuery,
    ) -> Result<Vec<PublishedLabPanel>, PortError>;
    /// The patients with a published panel filed under this identifier (any of `issuers`; empty:
    /// any issuer).
    async fn lab_patient_keys(
        &self,
        issuers: &[String],
        patient_id: &str,
    ) -> Result<Vec<PatientKey>, PortError>;
    /// The patients with a published panel whose key starts with `prefix`.
    async fn lab_patient_keys_by_prefix(&self, prefix: &str) -> Result<Vec<PatientKey>, PortError>;
    /// The patients with a final imaging or ECG report whose key starts with `prefix`.
    async fn reported_patient_keys_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<PatientKey>, PortError>;
    /// How the published panels of these patients named them, newest received first.
    async fn published_lab_identities(
        &self,
        patients: &[PatientKey],
    ) -> Result<Vec<LabIdentityRow>, PortError>;
    /// Panels a pool reviews that await sign-off and that nothing supersedes: those with critical
    /// values first, then oldest first; at most `limit`.
    async fn lab_review_queue(
        &self,
        pool: &PoolId,
        limit: i64,
    ) -> Result<Vec<LabPanelRecord>, PortError>;
    /// Releases a panel awaiting review with its sign-off and audit row, in one transaction; `false`
    /// (nothing written) when it was released or superseded meanwhile.
    async fn release_lab_panel(
        &self,
        signoff: &LabSignoff,
        audit: &AuditEvent,
    ) -> Result<bool, PortError>;
    async fn lab_signoff(&self, panel: &LabPanelId) -> Result<Option<LabSignoff>, PortError>;
    /// The critical-value register.
    async fn critical_cases(
        &self,
        filter: &CriticalFilter,
    ) -> Result<Vec<CriticalCaseRecord>, PortError>;
    async fn critical_case(&self, case_id: &str) -> Result<Option<CriticalCaseRecord>, PortError>;
    async fn critical_cases_of_panel(
        &self,
        panel: &LabPanelId,
    ) -> Result<Vec<CriticalCaseRecord>, PortError>;
    /// Records the acknowledgement with its audit row; `false` when it was acknowledged meanwhile.
    async fn acknowledge_critical(
        &self,
        case_id: &str,
        ack: &CriticalAck,
        audit: &AuditEvent,
    ) -> Result<bool, PortError>;
    /// Unacknowledged cases whose escalation is due at `now`, oldest due first.
    async fn critical_cases_due(
        &self,
        now: UnixMillis,
        limit: i64,
    ) -> Result<Vec<CriticalCaseRecord>, PortError>;
    /// One escalation of a case still at `escalations` escalations and unacknowledged: state
    /// `escalated`, the count up, the next due time (None: no more), the notification, in one
    /// transaction; `false` when another sweep or an acknowledgement got there first.
    async fn escalate_critical(
        &self,
        case_id: &str,
        escalations: i64,
        now: UnixMillis,
        next: Option<UnixMillis>,
        notification: &Notification,
    ) -> Result<bool, PortError>;

    // --- recognition decisions
    /// Stores a decision and its audit event in one transaction.
    async fn insert_recognition_decision(
        &self,
        d: &RecognitionDecisionRecord,
        audit: &AuditEvent,
    ) -> Result<(), PortError>;
    /// Decisions taken in `[from, to)`, oldest first, at most `limit`.
    async fn recognition_decisions(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: i64,
    ) -> Result<Vec<RecognitionDecisionRecord>, PortError>;

    // --- keys, tokens, audit
    async fn publish_key(&self, key: &PublicKeyRecord) -> Result<(), PortError>;
    async fn public_keys(&self) -> Result<Vec<PublicKeyRecord>, PortError>;
    async fn insert_token(
        &self,
        token_hash: &str,
        owner: &Username,
        label: &str,
        created: UnixMillis,
        expires: UnixMillis,
    ) -> Result<(), PortError>;
    async fn token_owner(
        &self,
        token_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<Username>, PortError>;
    /// Appends to the audit hash chain.
    async fn audit(&self, event: &AuditEvent) -> Result<(), PortError>;
    /// Walks the audit hash chain: every event in sequence, each naming the previous hash and
    /// hashing to its own, the head at the end.
    async fn verify_audit_chain(&self) -> Result<AuditChainReport, PortError>;
    async fn audit_events(&self, limit: i64) -> Result<Vec<AuditEvent>, PortError>;
    /// Events with `from <= at < to`, oldest first (by chain position), at most `limit`.
    async fn audit_trail(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, PortError>;

    // --- coordination between replicas
    /// Takes or renews the lease on background job `job` for `holder` until `until`; false when
    /// another holder's lease is still live.
    async fn lease_job(
        &self,
        job: &str,
        holder: &str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> Result<bool, PortError>;
    /// Gives up `holder`'s lease on `job` (no-op when it holds none).
    async fn release_job(&self, job: &str, holder: &str) -> Result<(), PortError>;
    /// Raises a hub-wide signal; returns its new generation.
    async fn raise_signal(&self, signal: &str, by: &str, now: UnixMillis)
    -> Result<i64, PortError>;
    /// A signal's generation (0 when never raised).
    async fn signal_generation(&self, signal: &str) -> Result<i64, PortError>;
}
