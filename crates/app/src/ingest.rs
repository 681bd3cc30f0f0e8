//! Ingest: one DICOM instance from any front end (STOW-RS, DIMSE C-STORE; the site agent and the
//! upload page later) becomes a durable blob plus catalog rows. The order is fixed: parse, check
//! duplicates, write the blob durably, commit the catalog. Only then is the instance acknowledged.
//! An instance arrives in memory (small STOW parts) or spooled to a file (DIMSE), which keeps memory
//! bounded whatever the instance size.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use yilian_domain::{SiteId, StudyInstanceUid};
use yilian_formats::dicom_json::FailureReason;
use yilian_formats::{DicomMeta, Parsed, parse_bytes, parse_file};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{InsertOutcome, InstanceRecord, NewInstance};

/// A stored (or already identical) instance.
#[derive(Clone, Debug)]
pub struct Stored {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    /// True when the same bytes were stored before (a no-op success).
    pub duplicate: bool,
    /// The audit event went into the catalog with the instance.
    audited: bool,
    /// The instance is an ECG waveform (its trace was read and analysed).
    pub ecg: bool,
}

/// The original of an ECG uploaded in another format (HL7 aECG, SCP-ECG) and filed as DICOM: kept
/// as its own blob and named in the ECG record.
#[derive(Clone, Debug)]
pub struct EcgSource {
    pub format: yilian_domain::ecg::EcgSourceFormat,
    pub blob_key: String,
    pub sha256: String,
}

/// Why one instance was not stored; the rest of the request is unaffected.
#[derive(Clone, Debug)]
pub struct Failure {
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub reason: FailureReason,
    pub message: String,
}

impl Failure {
    fn of(meta: Option<&DicomMeta>, reason: FailureReason, message: impl Into<String>) -> Self {
        Failure {
            sop_class_uid: meta.map(|m| m.sop_class_uid.to_string()),
            sop_instance_uid: meta.map(|m| m.sop_instance_uid.to_string()),
            reason,
            message: message.into(),
        }
    }
}

/// `sha256/ab/cd/abcd…`: identical bytes share one object, so concurrent writers are safe.
pub fn blob_key(sha256_hex: &str) -> String {
    format!(
        "sha256/{}/{}/{}",
        &sha256_hex[..2],
        &sha256_hex[2..4],
        sha256_hex
    )
}

impl Hub {
    /// Stores one Part 10 instance for the uploader's site. `expected_study` is the study in the request
    /// URL, when there is one. Outer `Err` is for the caller's role only; per-instance problems are
    /// `Ok(Err(Failure))`.
    pub async fn store_instance(
        &self,
        who: &Principal,
        bytes: Bytes,
        expected_study: Option<&StudyInstanceUid>,
    ) -> Result<Result<Stored, Failure>, AppError> {
        self.store_input(who, Input::Memory(bytes), expected_study, None)
            .await
    }

    /// Stores one Part 10 instance spooled to a file (ideally in `blobs.staging_dir()`, so it is
    /// moved rather than copied). The file is consumed whatever the outcome.
    pub async fn store_instance_file(
        &self,
        who: &Principal,
        path: &Path,
    ) -> Result<Result<Stored, Failure>, AppError> {
        let input = Input::File(path.to_path_buf());
        let r = self.store_input(who, input, None, None).await;
        let _ = tokio::fs::remove_file(path).await;
        r
    }

    pub(crate) async fn store_input(
        &self,
        who: &Principal,
        input: Input,
        expected_study: Option<&StudyInstanceUid>,
        ecg_source: Option<&EcgSource>,
    ) -> Result<Result<Stored, Failure>, AppError> {
        require(who, Action::UploadStudy)?;
        let outcome = self
            .store_checked(who, &who.site, input, expected_study, ecg_source)
            .await;
        let (result, detail) = match &outcome {
            Ok(s) => (
                "ok",
                format!(
                    "{}{}",
                    s.sop_instance_uid,
                    if s.duplicate {
                        " (duplicate, same bytes)"
                    } else {
                        ""
                    }
                ),
            ),
            Err(f) => ("failed", format!("{:?}: {}", f.reason, f.message)),
        };
        let resource = outcome
            .as_ref()
            .map(|s| s.study_uid.clone())
            .unwrap_or_default();
        if !outcome.as_ref().is_ok_and(|s| s.audited) {
            self.audit(who, "dicom.store", "study", &resource, None, result, detail)
                .await?;
        }
        // An ECG is one object, and a STEMI cannot wait for the quiet period: route it now. The
        // non-DICOM upload routes itself after it has recorded the site's urgency.
        if let Ok(s) = &outcome
            && s.ecg
            && !s.duplicate
            && ecg_source.is_none()
            && let Ok(study) = StudyInstanceUid::new(s.study_uid.clone())
            && let Err(e) = self.route_study(&study).await
        {
            // Stored and durable; the routing sweep will try again.
            tracing::warn!(error = %e, study = %study, "routing a new ECG failed");
        }
        Ok(outcome)
    }

    async fn store_checked(
        &self,
        who: &Principal,
        site: &SiteId,
        input: Input,
        expected_study: Option<&StudyInstanceUid>,
        ecg_source: Option<&EcgSource>,
    ) -> Result<Stored, Failure> {
        let (sha, size, parsed) = examine(&input).await?;
        let Parsed { meta, metadata } = parsed;
        let fail = |reason, msg: String| Failure::of(Some(&meta), reason, msg);
        if let Some(expected) = expected_study
            && expected != &meta.study_instance_uid
        {
            return Err(fail(
                FailureReason::StudyMismatch,
                format!(
                    "the instance belongs to study {} but was sent to study {expected}",
                    meta.study_instance_uid
                ),
            ));
        }
        let stored = Stored {
            sop_class_uid: meta.sop_class_uid.to_string(),
            sop_instance_uid: meta.sop_instance_uid.to_string(),
            study_uid: meta.study_instance_uid.to_string(),
            series_uid: meta.series_instance_uid.to_string(),
            duplicate: false,
            audited: false,
            ecg: yilian_formats::ecg::is_ecg_waveform_sop_class(meta.sop_class_uid.as_str()),
        };
        let backend = |e: crate::ports::PortError| {
            tracing::error!(error = %e, "ingest backend failure");
            fail(
                FailureReason::OutOfResources,
                "the hub could not store the instance now; retry later".into(),
            )
        };
        // Cheap checks before writing anything.
        if let Some(existing) = self
            .catalog
            .instance(&meta.sop_instance_uid)
            .await
            .map_err(backend)?
        {
            return if existing.sha256 == sha || self.same_data_set(&input, &existing).await {
                Ok(Stored {
                    duplicate: true,
                    ..stored
                })
            } else {
                Err(conflict(&meta, &existing.sha256))
            };
        }
        if let Some(study) = self
            .catalog
            .study(&meta.study_instance_uid)
            .await
            .map_err(backend)?
            && &study.site != site
        {
            return Err(fail(
                FailureReason::NotAuthorized,
                "the study was uploaded by another site".into(),
            ));
        }
        // An ECG whose waveform cannot be read is refused before anything is written: readers could not
        // see it, and the site must hear why now.
        let ecg = if stored.ecg {
            Some(
                crate::ecg::examine_ecg(&input, &self.routing().ecg)
                    .await
                    .map_err(|m| fail(FailureReason::CannotUnderstand, m))?,
            )
        } else {
            None
        };
        let site_cfg = self.config.site(site.as_str());
        let default_issuer = site_cfg
            .map(|s| s.patient_id_issuer.as_str())
            .unwrap_or(site.as_str());
        let local = meta.local_patient_id(default_issuer);
        let all_ids = meta.all_patient_ids(default_issuer);
        let key = blob_key(&sha);
        match &input {
            Input::Memory(bytes) => self.blobs.put(&key, bytes.clone()).await,
            Input::File(path) => self.blobs.put_file(&key, path).await,
        }
        .map_err(backend)?;
        // Filed under a resident ID when the file carries one (as PatientID or among the other IDs),
        // so the study joins the patient's results from every site; else under the site's own ID.
        let patient_key = self.patient_key(crate::patients::keyed_id(&all_ids).unwrap_or(&local));
        let linked_ids = crate::patients::site_ids(&all_ids);
        let now = self.now();
        let ecg = ecg.map(|facts| {
            facts.into_row(
                &meta.sop_instance_uid,
                &meta.study_instance_uid,
                &patient_key,
                site,
                now,
                ecg_source,
            )
        });
        let new = NewInstance {
            ecg,
            audit: crate::ports::AuditEvent {
                at: now,
                actor: who.username.to_string(),
                action: "dicom.store".into(),
                resource_type: "study".into(),
                resource_id: meta.study_instance_uid.to_string(),
                patient_key: Some(patient_key.clone()),
                outcome: "ok".into(),
                detail: meta.sop_instance_uid.to_string(),
            },
            patient_key,
            issuer_of_patient_id: local.issuer.clone(),
            patient_id: local.id.clone(),
            patient_name: meta.patient_name.clone(),
            patient_birth_date: meta.patient_birth_date.clone(),
            patient_sex: meta.patient_sex.clone(),
            site: site.clone(),
            study_uid: meta.study_instance_uid.clone(),
            study_date: meta.study_date.clone(),
            study_time: meta.study_time.clone(),
            accession_number: meta.accession_number.clone(),
            study_description: meta.study_description.clone(),
            series_uid: meta.series_instance_uid.clone(),
            modality: meta.modality.clone(),
            series_number: meta.series_number,
            series_description: meta.series_description.clone(),
            body_part_examined: meta.body_part_examined.clone(),
            study_id: meta.study_id.clone(),
            referring_physician_name: meta.referring_physician_name.clone(),
            linked_ids,
            metadata: metadata.to_string(),
            instance: InstanceRecord {
                sop_instance_uid: meta.sop_instance_uid.clone(),
                sop_class_uid: meta.sop_class_uid.clone(),
                series_uid: meta.series_instance_uid.clone(),
                study_uid: meta.study_instance_uid.clone(),
                transfer_syntax_uid: meta.transfer_syntax_uid.clone(),
                instance_number: meta.instance_number,
                rows: meta.rows,
                columns: meta.columns,
                number_of_frames: meta.number_of_frames,
                size_bytes: size as i64,
                sha256: sha.clone(),
                blob_key: key,
                received_at: now,
                received_by: who.username.clone(),
            },
        };
        // A blob written for an insert that then loses a race is complete and content-addressed; it is
        // either shared with the winner (same bytes) or unreferenced (see ARCHITECTURE.md, durability).
        match self.catalog.insert_instance(&new).await.map_err(backend)? {
            InsertOutcome::Inserted => {
                self.counters.record_ingest(size);
                Ok(Stored {
                    audited: true,
                    ..stored
                })
            }
            InsertOutcome::SameBytes => Ok(Stored {
                duplicate: true,
                ..stored
            }),
            InsertOutcome::DifferentBytes { existing_sha256 } => {
                Err(conflict(&meta, &existing_sha256))
            }
            InsertOutcome::StudyOfOtherSite => Err(fail(
                FailureReason::NotAuthorized,
                "the study was uploaded by another site".into(),
            )),
        }
    }
}

impl Hub {
    /// True when the input's data set equals the stored instance's: the same instance sent over
    /// another path (STOW-RS, then DIMSE) carries another file meta group, not other content.
    async fn same_data_set(&self, input: &Input, existing: &InstanceRecord) -> bool {
        const CAP: u64 = 256 * 1024 * 1024;
        if existing.size_bytes as u64 > CAP {
            return false;
        }
        let Ok(stored) = self.blobs.get(&existing.blob_key).await else {
            return false;
        };
        let mine = match input {
            Input::Memory(b) => b.clone(),
            Input::File(path) => match tokio::fs::metadata(path).await {
                Ok(m) if m.len() <= CAP => match tokio::fs::read(path).await {
                    Ok(v) => Bytes::from(v),
                    Err(_) => return false,
                },
                _ => return false,
            },
        };
        match (
            yilian_formats::dicom::data_set(&stored),
            yilian_formats::dicom::data_set(&mine),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// Where an instance's bytes are.
pub(crate) enum Input {
    Memory(Bytes),
    File(PathBuf),
}

/// Hashes and parses the input (off the async executor): sha256 hex, size, parse result.
async fn examine(input: &Input) -> Result<(String, u64, Parsed), Failure> {
    let cannot = |m: String| Failure::of(None, FailureReason::CannotUnderstand, m);
    let work = match input {
        Input::Memory(b) => {
            let b = b.clone();
            tokio::task::spawn_blocking(move || {
                let sha = hex::encode(Sha256::digest(&b));
                parse_bytes(&b).map(|p| (sha, b.len() as u64, p))
            })
            .await
        }
        Input::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let io = |e: std::io::Error| yilian_formats::DicomError::Malformed(e.to_string());
                let size = std::fs::metadata(&path).map_err(io)?.len();
                if size <= yilian_formats::dicom::FULL_PARSE_LIMIT {
                    // One read serves both the hash and the parse.
                    let b = std::fs::read(&path).map_err(io)?;
                    let sha = hex::encode(Sha256::digest(&b));
                    return parse_bytes(&b).map(|p| (sha, size, p));
                }
                let (sha, size) = sha256_file(&path).map_err(io)?;
                parse_file(&path).map(|p| (sha, size, p))
            })
            .await
        }
    };
    work.map_err(|e| {
        tracing::error!(error = %e, "ingest worker failed");
        Failure::of(
            None,
            FailureReason::OutOfResources,
            "the hub could not examine the instance now; retry later",
        )
    })?
    .map_err(|e| cannot(e.to_string()))
}

/// SHA-256 (hex) and size of a file, read in 1 MiB chunks (memory stays bounded).
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

fn conflict(meta: &DicomMeta, existing_sha: &str) -> Failure {
    Failure::of(
        Some(meta),
        FailureReason::DuplicateConflict,
        format!(
            "SOP Instance UID {} is already stored with different content (sha256 {}…); an instance is never overwritten — send corrections with a new SOP Instance UID",
            meta.sop_instance_uid,
            &existing_sha[..12.min(existing_sha.len())]
        ),
    )
}
