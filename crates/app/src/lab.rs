//! Lab results in (检验): the one use case every lab front end calls (MLLP, `POST /api/v1/lab/hl7v2`,
//! `POST /api/v1/lab/fhir`). A message is parsed (HL7 v2 ORU^R01 or FHIR R4), its sender checked
//! against `[[lab.senders]]` and the caller's site, local codes mapped to LOINC, patients keyed as
//! imaging keys them; then the original bytes become a durable blob and the message, its panels and
//! results and the audit rows commit in one transaction. Only then is success returned (and an MLLP
//! `AA` sent).
//!
//! Repeats: the same sender and control ID with the same bytes is a success that writes nothing; with
//! other bytes it is refused (a correction needs its own control ID). A new report of an order the hub
//! holds (same sender, filler order number else placer order number, and service) supersedes the
//! latest one: the new panel names it in `supersedes`, the old one gets `superseded_by`; nothing is
//! overwritten.

use std::net::IpAddr;

use bytes::Bytes;
use chrono::{Datelike, Timelike};
use sha2::{Digest, Sha256};
use yilian_config::LabSenderConfig;
use yilian_domain::ecg::LocalDateTime;
use yilian_domain::lab::{LabPanel, LabSource, LabTime, PanelStatus, PatientIdentifier};
use yilian_domain::{LabPanelId, ResidentId, UnixMillis};
use yilian_formats::fhir_lab::{FhirError, parse_fhir_lab};
use yilian_formats::hl7v2::{
    AckCode, Hl7Error, MessageHeader, build_ack, build_error_ack, encode_ack, parse_oru_r01,
};

use crate::access::{Action, Principal, allowed, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ingest::blob_key;
use crate::metrics::LabOutcome;
use crate::ports::{
    AuditEvent, LabInsertOutcome, LabMessageRecord, LabPanelRecord, NewLabMessage, NewLabPanel,
    PortError,
};

/// Messages larger than this are parsed on the blocking pool rather than on the async executor.
const PARSE_INLINE_BYTES: usize = 64 * 1024;
/// How far a correction chain is followed when a panel is shown.
const MAX_HISTORY: usize = 50;

/// What a lab message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabFormat {
    /// HL7 v2 ORU^R01 in ER7 (pipes), as one MLLP frame or an HTTP body.
    Hl7v2,
    /// A FHIR R4 Bundle (or a bare DiagnosticReport) in JSON.
    FhirR4,
}

impl LabFormat {
    fn source(self) -> LabSource {
        match self {
            LabFormat::Hl7v2 => LabSource::Hl7v2,
            LabFormat::FhirR4 => LabSource::FhirR4,
        }
    }
}

/// One panel of an ingested message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestedPanel {
    pub panel_id: LabPanelId,
    /// The earlier report of the same order this one superseded.
    pub supersedes: Option<LabPanelId>,
    /// A correction of an order the hub never received (stored as a new panel, with a note).
    pub unmatched_correction: bool,
}

/// A message the hub holds now (stored by this call, or before: `duplicate`).
#[derive(Clone, Debug)]
pub struct LabIngest {
    /// The hub's id of the message (a ULID).
    pub message_id: String,
    /// HL7 MSH-10; FHIR Bundle id.
    pub control_id: String,
    /// The `[[lab.senders]]` facility it came from.
    pub sending_facility: String,
    /// The same message (sender, control ID, bytes) was stored before; nothing was written now.
    pub duplicate: bool,
    pub panels: Vec<IngestedPanel>,
    /// HL7 v2: the parsed header, for the acknowledgment.
    pub header: Option<MessageHeader>,
}

/// Why a lab message was not stored.
#[derive(Debug, thiserror::Error)]
pub enum LabIngestError {
    /// The caller's role may not send lab results.
    #[error("{0}")]
    Forbidden(String),
    #[error("the message is larger than the {limit} bytes the hub accepts (lab.max_message_bytes)")]
    TooLarge { limit: usize },
    /// Not an ORU^R01 the hub can read, with the segment and field.
    #[error(transparent)]
    Hl7(Hl7Error),
    /// Not a FHIR lab input the hub can read, with the JSON path.
    #[error(transparent)]
    Fhir(FhirError),
    /// The sending lab is not a configured sender, or not of the caller's site.
    #[error("{0}")]
    SenderRefused(String),
    /// The sender's control ID was used before for other bytes.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed; nothing was acknowledged. The sender should retry.
    #[error("the hub could not store the message now; retry later")]
    Unavailable(#[source] PortError),
}

impl LabIngestError {
    /// MSA-1 for this refusal: `AR` when the sender or the message kind is refused, `AE` otherwise.
    pub fn ack_code(&self) -> AckCode {
        match self {
            LabIngestError::Forbidden(_)
            | LabIngestError::TooLarge { .. }
            | LabIngestError::SenderRefused(_) => AckCode::Reject,
            LabIngestError::Hl7(e) => e.ack_code(),
            LabIngestError::Fhir(_)
            | LabIngestError::Conflict(_)
            | LabIngestError::Unavailable(_) => AckCode::Error,
        }
    }

    /// The error as an HL7 ERR segment states it.
    pub fn to_hl7(&self) -> Hl7Error {
        match self {
            LabIngestError::Hl7(e) => e.clone(),
            LabIngestError::Forbidden(m) | LabIngestError::SenderRefused(m) => {
                Hl7Error::SenderRefused(m.clone())
            }
            LabIngestError::Conflict(m) => Hl7Error::DuplicateControlId(m.clone()),
            other => Hl7Error::Internal(other.to_string()),
        }
    }

    /// What the audit row says: never a value from the message (FHIR errors may quote one; only
    /// their path is kept).
    fn audit_text(&self) -> String {
        match self {
            LabIngestError::Fhir(e) => match e.path() {
                Some(path) => format!("unreadable FHIR input at {path}"),
                None => "unreadable FHIR input".to_string(),
            },
            LabIngestError::Unavailable(e) => format!("storage failed: {e}"),
            other => other.to_string(),
        }
    }
}

/// A panel as its site sees it, with the reports of its order before and after it.
#[derive(Clone, Debug)]
pub struct LabPanelView {
    pub record: LabPanelRecord,
    /// The order's reports, oldest first, this one included.
    pub history: Vec<LabHistoryItem>,
}

/// One report in an order's correction chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabHistoryItem {
    pub panel_id: LabPanelId,
    pub status: PanelStatus,
    pub control_id: String,
    pub received_at: UnixMillis,
}

/// The identifier a panel is keyed by: a resident ID when one is among them (the alliance-wide key),
/// else the first one the lab sent.
fn keyed_identifier(ids: &[PatientIdentifier]) -> Option<&PatientIdentifier> {
    ids.iter()
        .find(|i| ResidentId::parse(&i.id).is_some())
        .or_else(|| ids.first())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Hub {
    /// Stores one lab message for the caller's site (see the module documentation). The result is
    /// final: `Ok` only once everything is durable; every refusal is audited (`lab.ingest`).
    pub async fn ingest_lab(
        &self,
        who: &Principal,
        bytes: Bytes,
        format: LabFormat,
    ) -> Result<LabIngest, LabIngestError> {
        if !allowed(who.role, Action::SendLab) {
            self.counters.record_lab(LabOutcome::Refused);
            return Err(LabIngestError::Forbidden(format!(
                "role {} may not send lab results",
                who.role.as_str()
            )));
        }
        let size = bytes.len();
        let outcome = self.ingest_lab_checked(who, bytes, format).await;
        self.counters.record_lab(match &outcome {
            Ok(i) if i.duplicate => LabOutcome::Duplicate,
            Ok(_) => LabOutcome::Stored,
            Err(_) => LabOutcome::Refused,
        });
        match &outcome {
            Ok(i) => {
                tracing::info!(
                    message_id = %i.message_id,
                    facility = %i.sending_facility,
                    panels = i.panels.len(),
                    duplicate = i.duplicate,
                    bytes = size,
                    "lab message stored"
                );
                if i.duplicate {
                    let detail = format!(
                        "control ID {:?} from {} again with the same bytes: nothing written",
                        i.control_id, i.sending_facility
                    );
                    self.audit_quietly(who, "lab_message", &i.message_id, "duplicate", detail)
                        .await;
                }
            }
            Err(e) => {
                match e {
                    LabIngestError::Unavailable(cause) => {
                        tracing::error!(error = %cause, "storing a lab message failed")
                    }
                    other => tracing::warn!(reason = %other.audit_text(), "lab message refused"),
                }
                self.audit_quietly(who, "lab_message", "", "refused", e.audit_text())
                    .await;
            }
        }
        outcome
    }

    /// An audit row for something that wrote no patient data (a refusal, a repeat): a failure to
    /// record it is logged, not passed on, so it cannot turn a refusal into another error.
    async fn audit_quietly(
        &self,
        who: &Principal,
        resource_type: &str,
        resource_id: &str,
        outcome: &str,
        detail: String,
    ) {
        if let Err(e) = self
            .audit(
                who,
                "lab.ingest",
                resource_type,
                resource_id,
                None,
                outcome,
                detail,
            )
            .await
        {
            tracing::warn!(error = %e, "recording a lab audit event failed");
        }
    }

    async fn ingest_lab_checked(
        &self,
        who: &Principal,
        bytes: Bytes,
        format: LabFormat,
    ) -> Result<LabIngest, LabIngestError> {
        let limit = self.config.lab.max_message_bytes;
        if bytes.len() > limit {
            return Err(LabIngestError::TooLarge { limit });
        }
        let (panels, header) = parse(bytes.clone(), format).await?;
        let sender = self.sender_of(&panels, header.as_ref())?;
        if sender.site != who.site.as_str() {
            return Err(LabIngestError::SenderRefused(format!(
                "lab sender {:?} sends for site {}, not for the caller's site {}",
                sender.facility.trim(),
                sender.site,
                who.site
            )));
        }
        let facility = sender.facility.trim().to_string();
        let source = format.source();
        let control_id = match &header {
            Some(h) => h.control_id.clone(),
            None => panels
                .first()
                .map(|p| p.message_id.clone())
                .unwrap_or_default(),
        };
        let sha = sha256_hex(&bytes);
        let unavailable = LabIngestError::Unavailable;
        if let Some(existing) = self
            .catalog
            .lab_message(source, &facility, &control_id)
            .await
            .map_err(unavailable)?
        {
            return repeat(existing, &sha, header);
        }

        let now = self.now();
        let offset = i16::try_from(self.config.alliance.utc_offset_minutes).unwrap_or(480);
        let default_issuer = self
            .config
            .site(&sender.site)
            .map(|s| s.patient_id_issuer.clone())
            .unwrap_or_else(|| sender.site.clone());
        let message_id = ulid::Ulid::new().to_string();
        let mut new_panels = Vec::with_capacity(panels.len());
        let mut audit = Vec::with_capacity(panels.len());
        for mut panel in panels {
            // One patient whatever the format: an identifier system that stands for a site's issuer
            // (its `patient_id_systems`, `urn:yilian:issuer:<issuer>`) is filed under that issuer.
            for id in &mut panel.patient.identifiers {
                if let Some(a) = &id.assigning_authority {
                    let canonical = self.config.canonical_issuer(a);
                    if canonical != a {
                        id.assigning_authority = Some(canonical.to_string());
                    }
                }
            }
            let loinc_mapped = self.map_loinc(&facility, &mut panel);
            let service_loinc = if panel.service.is_loinc() {
                Some(panel.service.code.clone())
            } else {
                self.config
                    .loinc_for(&facility, &panel.service.code)
                    .map(str::to_string)
            };
            let local = keyed_identifier(&panel.patient.identifiers)
                .map(|i| i.local_id(&default_issuer))
                // Parsers never return a panel without an identifier; guard anyway.
                .ok_or(LabIngestError::Hl7(Hl7Error::MissingSegment("PID")))?;
            let patient_key = self.patient_key(&local);
            let all_ids: Vec<_> = panel
                .patient
                .identifiers
                .iter()
                .map(|i| i.local_id(&default_issuer))
                .collect();
            let linked_ids = crate::patients::site_ids(&all_ids);
            let panel_id = LabPanelId::new(ulid::Ulid::new().to_string())
                .map_err(|e| LabIngestError::Unavailable(PortError::Corrupt(e.to_string())))?;
            audit.push(AuditEvent {
                at: now,
                actor: who.username.to_string(),
                action: "lab.ingest".into(),
                resource_type: "lab_panel".into(),
                resource_id: panel_id.to_string(),
                patient_key: Some(patient_key.clone()),
                outcome: "ok".into(),
                detail: format!(
                    "{} {} from {facility} (message {message_id}, control ID {control_id:?}): {} results, {}",
                    source.as_str(),
                    panel.service.code,
                    panel.results.len(),
                    panel.status.as_str()
                ),
            });
            let decided = self
                .decide_panel(&facility, &who.site, &panel, now)
                .map_err(LabIngestError::Unavailable)?;
            if let Some(a) = audit.last_mut() {
                a.detail.push_str(&format!(
                    "; {}{}",
                    decided.review.state.as_str(),
                    if decided.critical.is_empty() {
                        String::new()
                    } else {
                        format!("; {} critical value(s)", decided.critical.len())
                    }
                ));
            }
            new_panels.push(NewLabPanel {
                panel_id,
                patient_key,
                patient: local,
                linked_ids,
                service_loinc,
                loinc_mapped,
                panel,
                review: decided.review,
                critical: decided.critical,
            });
        }
        let key = blob_key(&sha);
        self.blobs
            .put(&key, bytes.clone())
            .await
            .map_err(unavailable)?;
        let version = new_panels
            .first()
            .map(|p| p.panel.version.clone())
            .unwrap_or_default();
        let new = NewLabMessage {
            message_id: message_id.clone(),
            source,
            sending_facility: facility.clone(),
            control_id: control_id.clone(),
            site: who.site.clone(),
            version,
            sha256: sha.clone(),
            size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            blob_key: key,
            received_at: now,
            received_by: who.username.clone(),
            utc_offset_minutes: offset,
            panels: new_panels,
            audit,
        };
        // A blob written for a message that then loses the race for its control ID is complete and
        // content-addressed: shared with the winner (same bytes) or unreferenced (harmless).
        match self
            .catalog
            .insert_lab_message(&new)
            .await
            .map_err(unavailable)?
        {
            LabInsertOutcome::Inserted(stored) => Ok(LabIngest {
                message_id,
                control_id,
                sending_facility: facility,
                duplicate: false,
                panels: stored
                    .into_iter()
                    .map(|s| IngestedPanel {
                        panel_id: s.panel_id,
                        supersedes: s.supersedes,
                        unmatched_correction: s.unmatched_correction,
                    })
                    .collect(),
                header,
            }),
            LabInsertOutcome::Exists(existing) => repeat(*existing, &sha, header),
        }
    }

    /// The configured sender of a parsed message: MSH-4 for HL7 v2; for FHIR, each report's
    /// performer, all of one site.
    fn sender_of(
        &self,
        panels: &[LabPanel],
        header: Option<&MessageHeader>,
    ) -> Result<&LabSenderConfig, LabIngestError> {
        if let Some(h) = header {
            let f = &h.sending_facility;
            return self
                .config
                .lab_sender(&[&f.namespace_id, &f.universal_id])
                .ok_or_else(|| {
                    LabIngestError::SenderRefused(format!(
                        "sending facility {:?} is not a lab sender configured at the hub ([[lab.senders]])",
                        f.display().unwrap_or_default()
                    ))
                });
        }
        let mut found: Option<&LabSenderConfig> = None;
        for (i, p) in panels.iter().enumerate() {
            let lab = p.performing_lab.as_deref().ok_or_else(|| {
                LabIngestError::SenderRefused(format!(
                    "report {} names no performing lab (DiagnosticReport.performer): the hub cannot tell who sent it",
                    i + 1
                ))
            })?;
            let sender = self.config.lab_sender(&[lab]).ok_or_else(|| {
                LabIngestError::SenderRefused(format!(
                    "performer {lab:?} of report {} is not a lab sender configured at the hub ([[lab.senders]])",
                    i + 1
                ))
            })?;
            match found {
                Some(first) if first.site != sender.site => {
                    return Err(LabIngestError::SenderRefused(
                        "the reports of one message come from labs of different sites; send them apart"
                            .into(),
                    ));
                }
                Some(_) => {}
                None => found = Some(sender),
            }
        }
        found.ok_or(LabIngestError::Fhir(FhirError::NoReport))
    }

    /// Fills missing LOINC codes from `[[lab.loinc]]`; per result, whether it was mapped.
    fn map_loinc(&self, facility: &str, panel: &mut LabPanel) -> Vec<bool> {
        panel
            .results
            .iter_mut()
            .map(|r| {
                if r.loinc.is_some() {
                    return false;
                }
                match self.config.loinc_for(facility, &r.code.code) {
                    Some(loinc) => {
                        r.loinc = Some(loinc.to_string());
                        true
                    }
                    None => false,
                }
            })
            .collect()
    }

    /// The principal an MLLP message acts as: the sender its MSH-4 names, when it calls from its
    /// configured address (if one is set). A refusal is audited with the peer address as actor.
    pub async fn lab_sender_principal(
        &self,
        raw: &[u8],
        peer: IpAddr,
    ) -> Result<Principal, LabIngestError> {
        let refused = match MessageHeader::sniff(raw) {
            None => {
                // Not even an MSH line: answer with what the parser says is wrong.
                let e = parse_oru_r01(raw).err().unwrap_or(Hl7Error::NoMsh);
                return Err(LabIngestError::Hl7(e));
            }
            Some(h) => {
                let f = &h.sending_facility;
                match self.config.lab_sender(&[&f.namespace_id, &f.universal_id]) {
                    None => format!(
                        "sending facility {:?} is not a lab sender configured at the hub ([[lab.senders]])",
                        f.display().unwrap_or_default()
                    ),
                    Some(s)
                        if s.host
                            .as_deref()
                            .is_some_and(|h| h.parse::<IpAddr>().ok() != Some(peer)) =>
                    {
                        format!(
                            "lab sender {:?} is accepted only from its configured address",
                            s.facility.trim()
                        )
                    }
                    Some(s) => match self.config.lab_principal(s) {
                        Some(p) => return Ok(p),
                        None => format!("lab sender {:?} cannot act as a user", s.facility.trim()),
                    },
                }
            }
        };
        let event = AuditEvent {
            at: self.now(),
            actor: format!("mllp:{peer}"),
            action: "lab.ingest".into(),
            resource_type: "lab_message".into(),
            resource_id: String::new(),
            patient_key: None,
            outcome: "refused".into(),
            detail: refused.clone(),
        };
        if let Err(e) = self.catalog.audit(&event).await {
            tracing::warn!(error = %e, "recording a refused lab sender failed");
        }
        tracing::warn!(%peer, reason = %refused, "MLLP sender refused");
        self.counters.record_lab(LabOutcome::Refused);
        Err(LabIngestError::SenderRefused(refused))
    }

    /// The HL7 acknowledgment for a message and what became of it (unframed; encoded in the
    /// message's character set). `AA` only for `Ok`.
    pub fn lab_ack(
        &self,
        raw: &[u8],
        outcome: &Result<LabIngest, LabIngestError>,
    ) -> (AckCode, Vec<u8>) {
        let control_id = ulid::Ulid::new().to_string();
        let now = self.lab_now();
        match outcome {
            Ok(done) => {
                let header = done.header.clone().or_else(|| MessageHeader::sniff(raw));
                let ack = build_ack(header.as_ref(), AckCode::Accept, None, &control_id, now);
                (AckCode::Accept, encode_ack(header.as_ref(), &ack))
            }
            Err(LabIngestError::Hl7(e)) => {
                (e.ack_code(), build_error_ack(raw, e, &control_id, now))
            }
            Err(e) => {
                let code = e.ack_code();
                let header = MessageHeader::sniff(raw);
                let ack = build_ack(header.as_ref(), code, Some(&e.to_hl7()), &control_id, now);
                (code, encode_ack(header.as_ref(), &ack))
            }
        }
    }

    /// Now in the alliance's local time, with its offset (for ACK timestamps).
    fn lab_now(&self) -> LabTime {
        let offset = self.config.alliance.utc_offset_minutes;
        let local = chrono::DateTime::from_timestamp_millis(
            self.now().0.saturating_add(i64::from(offset) * 60_000),
        )
        .map(|d| d.naive_utc())
        .and_then(|d| {
            LocalDateTime::new(
                u16::try_from(d.year()).ok()?,
                u8::try_from(d.month()).ok()?,
                u8::try_from(d.day()).ok()?,
                u8::try_from(d.hour()).ok()?,
                u8::try_from(d.minute()).ok()?,
                u8::try_from(d.second()).ok()?,
            )
        })
        .unwrap_or(LocalDateTime {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
        });
        LabTime::new(local, i16::try_from(offset).ok())
    }

    /// A stored panel with its results and its order's history, for the sending site's techs.
    /// Audited (`lab.view`). Another site's panel is "not found".
    pub async fn lab_panel_view(
        &self,
        who: &Principal,
        id: &LabPanelId,
    ) -> Result<LabPanelView, AppError> {
        require(who, Action::ViewLabPanel)?;
        let record = self
            .catalog
            .lab_panel(id)
            .await?
            .filter(|r| r.site == who.site)
            .ok_or(AppError::NotFound("lab panel"))?;
        let history = self.lab_history(&record).await?;
        self.audit(
            who,
            "lab.view",
            "lab_panel",
            id.as_str(),
            Some(&record.patient_key),
            "ok",
            "",
        )
        .await?;
        Ok(LabPanelView { record, history })
    }

    /// The order's reports, oldest first: back along `supersedes`, then forward along `superseded_by`.
    async fn lab_history(&self, record: &LabPanelRecord) -> Result<Vec<LabHistoryItem>, AppError> {
        let item = |r: &LabPanelRecord| LabHistoryItem {
            panel_id: r.panel_id.clone(),
            status: r.panel.status,
            control_id: r.control_id.clone(),
            received_at: r.received_at,
        };
        let mut before = Vec::new();
        let mut cursor = record.supersedes.clone();
        while let Some(id) = cursor.take() {
            if before.len() >= MAX_HISTORY {
                break;
            }
            let Some(r) = self.catalog.lab_panel(&id).await? else {
                break;
            };
            before.push(item(&r));
            cursor = r.supersedes.clone();
        }
        before.reverse();
        before.push(item(record));
        let mut cursor = record.superseded_by.clone();
        let mut after = 0;
        while let Some(id) = cursor.take() {
            if after >= MAX_HISTORY {
                break;
            }
            let Some(r) = self.catalog.lab_panel(&id).await? else {
                break;
            };
            before.push(item(&r));
            cursor = r.superseded_by.clone();
            after += 1;
        }
        Ok(before)
    }
}

/// A message whose sender and control ID the hub holds: the same bytes are a success that writes
/// nothing; other bytes are refused.
fn repeat(
    existing: LabMessageRecord,
    sha: &str,
    header: Option<MessageHeader>,
) -> Result<LabIngest, LabIngestError> {
    if existing.sha256 != sha {
        return Err(LabIngestError::Conflict(format!(
            "control ID {:?} from {} was received before with other content; a corrected report needs a new control ID",
            existing.control_id, existing.sending_facility
        )));
    }
    Ok(LabIngest {
        message_id: existing.message_id,
        control_id: existing.control_id,
        sending_facility: existing.sending_facility,
        duplicate: true,
        panels: existing
            .panel_ids
            .into_iter()
            .map(|panel_id| IngestedPanel {
                panel_id,
                supersedes: None,
                unmatched_correction: false,
            })
            .collect(),
        header,
    })
}

/// Parses the message, on the blocking pool when it is large.
async fn parse(
    bytes: Bytes,
    format: LabFormat,
) -> Result<(Vec<LabPanel>, Option<MessageHeader>), LabIngestError> {
    let inline = bytes.len() <= PARSE_INLINE_BYTES;
    let run = move || match format {
        LabFormat::Hl7v2 => parse_oru_r01(&bytes)
            .map(|oru| (oru.panels, Some(oru.header)))
            .map_err(LabIngestError::Hl7),
        LabFormat::FhirR4 => parse_fhir_lab(&bytes)
            .map(|panels| (panels, None))
            .map_err(LabIngestError::Fhir),
    };
    if inline {
        return run();
    }
    tokio::task::spawn_blocking(run).await.map_err(|e| {
        LabIngestError::Unavailable(PortError::Unavailable(format!("lab parser task: {e}")))
    })?
}
