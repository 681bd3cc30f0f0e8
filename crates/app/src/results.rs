//! Publish and reuse: a member hospital looks a patient up and gets each published result with its
//! mutual-recognition status; reports verify online here and offline with the same routine.
//! Also retrieval of a study's instances (bytes) for everyone whose scope includes it; rendering is
//! in `rendering`.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::NaiveDate;
use sha2::{Digest, Sha256};
use yilian_domain::{
    ExamState, LocalPatientId, ReportId, ReportStatus, Role, SeriesInstanceUid, SopInstanceUid,
    StudyInstanceUid, UnixMillis,
};
use yilian_policy::{RecognitionDecision, RecognitionFacts, recognise};
use yilian_signing::{
    Evidence, LatestEvidence, PublicKeyRecord, ResultsEvidence, SignatureBlock, SignedDocument,
    referenced_instances, verify, verify_document,
};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::lifecycle::ReportLifecycle;
use crate::ports::{ExamRecord, InstanceRecord, PortError, ReportRecord, StudyRecord};

/// One published result as a clinician sees it.
#[derive(Clone, Debug)]
pub struct ResultView {
    pub exam: ExamRecord,
    pub report: ReportRecord,
    pub site_name: String,
    pub performed_at: UnixMillis,
    pub signature_valid: bool,
    pub recognition: RecognitionDecision,
    /// The exam's versions and revocation (a revoked result is never recognised).
    pub lifecycle: ReportLifecycle,
}

/// What a look-up found: signed imaging/ECG reports and published lab reports.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    pub results: Vec<ResultView>,
    pub lab: Vec<crate::lab_fhir::LabResultView>,
    /// Site identifiers of this person left out because they also name someone else: their
    /// results are not shown (see `patients`).
    pub unattributed: usize,
}

/// What an uploader watches of a study: its state, its exam and the report once signed.
#[derive(Clone, Debug)]
pub struct StudyStatus {
    pub study: StudyRecord,
    pub instance_count: usize,
    pub exam: Option<ExamRecord>,
    pub report_id: Option<ReportId>,
}

/// One check of a verification, as people read it.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct PublicVerification {
    pub verification: Verification,
    pub site_name: String,
    pub modality: String,
    pub signer_name: String,
    pub signed_at: Option<UnixMillis>,
    /// SHA-256 of the canonical signed document: compare with the one printed on the report.
    pub document_sha256: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Verification {
    pub report_id: ReportId,
    pub valid: bool,
    pub latest: bool,
    pub checks: Vec<Check>,
    /// Superseded by, the version chain, revoked.
    pub lifecycle: ReportLifecycle,
}

fn study_date_millis(d: Option<&str>) -> Option<UnixMillis> {
    let d = NaiveDate::parse_from_str(d?, "%Y%m%d").ok()?;
    Some(UnixMillis(
        d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis(),
    ))
}

impl Hub {
    /// The study if it is in the caller's scope: a tech's own site; a reader's pools; a clinician's
    /// published (signed) exams. Anything else is "not found".
    pub async fn study_in_scope(
        &self,
        who: &Principal,
        study_uid: &StudyInstanceUid,
    ) -> Result<StudyRecord, AppError> {
        require(who, Action::ViewStudy)?;
        let study = self
            .catalog
            .study(study_uid)
            .await?
            .ok_or(AppError::NotFound("study"))?;
        let visible = match who.role {
            Role::SiteTech => study.site == who.site,
            Role::Reader => self
                .catalog
                .exam_of_study(study_uid)
                .await?
                .is_some_and(|e| e.visible_to(&who.pools)),
            Role::Clinician => self
                .catalog
                .exam_of_study(study_uid)
                .await?
                .is_some_and(|e| e.state == ExamState::Signed),
            Role::Admin | Role::Auditor => false,
        };
        if visible {
            Ok(study)
        } else {
            Err(AppError::NotFound("study"))
        }
    }

    /// The status of a study in the caller's scope.
    pub async fn study_status(
        &self,
        who: &Principal,
        study_uid: &StudyInstanceUid,
    ) -> Result<StudyStatus, AppError> {
        let study = self.study_in_scope(who, study_uid).await?;
        let exam = self.catalog.exam_of_study(study_uid).await?;
        let instance_count = self.catalog.study_instances(study_uid).await?.len();
        let report_id = match &exam {
            Some(e) => self
                .catalog
                .final_report_of(&e.exam_id)
                .await?
                .map(|r| r.report_id),
            None => None,
        };
        Ok(StudyStatus {
            study,
            instance_count,
            exam,
            report_id,
        })
    }

    pub(crate) async fn instance_in_scope(
        &self,
        who: &Principal,
        study_uid: &StudyInstanceUid,
        series_uid: &SeriesInstanceUid,
        sop: &SopInstanceUid,
    ) -> Result<(StudyRecord, InstanceRecord), AppError> {
        let study = self.study_in_scope(who, study_uid).await?;
        let inst = self
            .catalog
            .instance(sop)
            .await?
            .filter(|i| &i.study_uid == study_uid && &i.series_uid == series_uid)
            .ok_or(AppError::NotFound("instance"))?;
        Ok((study, inst))
    }

    /// The original bytes of an instance in memory, checked against the catalog's SHA-256 (for
    /// parsing: bulk data, frames). Audited as a retrieve.
    pub async fn retrieve_instance(
        &self,
        who: &Principal,
        study_uid: &StudyInstanceUid,
        series_uid: &SeriesInstanceUid,
        sop: &SopInstanceUid,
    ) -> Result<(InstanceRecord, Bytes), AppError> {
        use futures::TryStreamExt;
        let (inst, stream) = self.open_instance(who, study_uid, series_uid, sop).await?;
        let mut chunks: Vec<Bytes> = stream.try_collect().await?;
        let bytes = if chunks.len() == 1 {
            chunks.pop().unwrap_or_default()
        } else {
            Bytes::from(chunks.concat())
        };
        Ok((inst, bytes))
    }

    /// An instance in scope as a stream for a response ([`Hub::instance_stream`]: checked whole when
    /// small, hashed on the way when large). Audited as a retrieve.
    pub async fn open_instance(
        &self,
        who: &Principal,
        study_uid: &StudyInstanceUid,
        series_uid: &SeriesInstanceUid,
        sop: &SopInstanceUid,
    ) -> Result<(InstanceRecord, crate::ports::BlobStream), AppError> {
        let (study, inst) = self
            .instance_in_scope(who, study_uid, series_uid, sop)
            .await?;
        let bytes = self.instance_stream(&inst).await?;
        self.audit(
            who,
            "dicom.retrieve",
            "instance",
            sop.as_str(),
            Some(&study.patient_key),
            "ok",
            "",
        )
        .await?;
        Ok((inst, bytes))
    }

    /// Every instance of a study the caller may see, for WADO-RS study retrieval.
    pub async fn retrieve_study(
        &self,
        who: &Principal,
        study_uid: &StudyInstanceUid,
    ) -> Result<Vec<(InstanceRecord, Bytes)>, AppError> {
        let study = self.study_in_scope(who, study_uid).await?;
        let mut out = Vec::new();
        for inst in self.catalog.study_instances(study_uid).await? {
            let bytes = self.checked_blob(&inst).await?;
            out.push((inst, bytes));
        }
        self.audit(
            who,
            "dicom.retrieve",
            "study",
            study_uid.as_str(),
            Some(&study.patient_key),
            "ok",
            format!("{} instances", out.len()),
        )
        .await?;
        Ok(out)
    }

    /// The stored bytes of an instance, checked against the catalog's SHA-256. For records a
    /// scoped, audited use case returned (e.g. [`Hub::instances_to_retrieve`] for C-GET/C-MOVE).
    pub async fn checked_blob(&self, inst: &InstanceRecord) -> Result<Bytes, AppError> {
        let bytes = self.blobs.get(&inst.blob_key).await?;
        if hex::encode(Sha256::digest(&bytes)) != inst.sha256 {
            tracing::error!(sop = %inst.sop_instance_uid, "blob checksum mismatch");
            return Err(PortError::Corrupt(format!(
                "blob {} does not match its checksum",
                inst.blob_key
            ))
            .into());
        }
        Ok(bytes)
    }

    /// A patient's published results across the alliance with their recognition status: signed
    /// imaging and ECG reports, and published lab reports (the newest of each order). The patient is
    /// found by a resident ID (any issuer) or by a site-local ID with its issuer. `purpose` is recorded.
    pub async fn lookup_results(
        &self,
        who: &Principal,
        issuer: &str,
        patient_id: &str,
        purpose: &str,
    ) -> Result<Lookup, AppError> {
        require(who, Action::LookupResults)?;
        if patient_id.trim().is_empty() {
            return Err(AppError::Invalid("patient_id is required".into()));
        }
        let local = LocalPatientId {
            issuer: issuer.trim().to_string(),
            id: patient_id.trim().to_string(),
        };
        let found = self
            .find_patient_for_lookup(who, &local, "results.lookup")
            .await?;
        let mut out = Vec::new();
        let mut lab = Vec::new();
        let keys = self.catalog.public_keys().await?;
        let now = self.now();
        for key in found.keys() {
            lab.extend(self.published_lab_views(key).await?);
            for (exam, report) in self.catalog.results_of_patient(key).await? {
                out.push(self.result_view(exam, report, &keys, now).await?);
            }
        }
        out.sort_by_key(|v| std::cmp::Reverse(v.report.signed_at));
        self.audit(
            who,
            "results.lookup",
            "patient",
            &yilian_domain::mask_identifier(&local.id),
            found.person(),
            "ok",
            format!(
                "purpose={purpose}; {} results, {} lab reports; {} identifiers unattributed",
                out.len(),
                lab.len(),
                found.unattributed()
            ),
        )
        .await?;
        self.counters.record_lookup();
        Ok(Lookup {
            results: out,
            lab,
            unattributed: found.unattributed(),
        })
    }

    /// The person an identifier names, for a look-up: an identifier that names two people is refused
    /// (409 `patient_ambiguous`, audited as `conflict`).
    pub(crate) async fn find_patient_for_lookup(
        &self,
        who: &Principal,
        local: &LocalPatientId,
        action: &str,
    ) -> Result<crate::patients::PatientMatch, AppError> {
        crate::patients::check_lookup_id(local)?;
        let found = self.find_patient(local).await?;
        if found == crate::patients::PatientMatch::Ambiguous {
            self.audit(
                who,
                action,
                "patient",
                &yilian_domain::mask_identifier(&local.id),
                None,
                "conflict",
                format!(
                    "identifier of issuer {} names more than one person",
                    local.issuer
                ),
            )
            .await?;
            return Err(AppError::conflict(
                "patient_ambiguous",
                "这个院内号在本院关联到不止一位患者（号码重复或录入错误），请用身份证号查询。 This local ID is linked to more than one person at its site: search by resident ID.",
            ));
        }
        Ok(found)
    }

    /// A signed report as a clinician sees it, with its signature checked, its versions and
    /// revocation, and its recognition decided at `now`.
    pub(crate) async fn result_view(
        &self,
        exam: ExamRecord,
        report: ReportRecord,
        keys: &[PublicKeyRecord],
        now: UnixMillis,
    ) -> Result<ResultView, AppError> {
        // The body part its images say (the first series that says), for body-part items.
        let body_part = self
            .catalog
            .study_series(&exam.study_uid)
            .await?
            .into_iter()
            .find_map(|s| s.body_part.filter(|b| !b.trim().is_empty()));
        let lifecycle = self.lifecycle_of(&report).await?;
        let signature_valid =
            report_document(&report).is_some_and(|doc| verify_document(&doc, keys).is_ok());
        let site = self.config.site(exam.site.as_str());
        let performed_at =
            study_date_millis(exam.study_date.as_deref()).unwrap_or(exam.first_received_at);
        let facts = RecognitionFacts {
            modality: exam.modality.clone(),
            qc_qualified: site.is_some_and(|s| {
                s.qc_qualified
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&exam.modality))
            }),
            signed: report.status == ReportStatus::Final && signature_valid,
            revoked: lifecycle.revocation.is_some(),
            performed_at,
            body_part,
        };
        let recognition = recognise(&facts, &self.config.recognition, now);
        Ok(ResultView {
            site_name: site
                .map(|s| s.name.clone())
                .unwrap_or_else(|| exam.site.to_string()),
            exam,
            report,
            performed_at,
            signature_valid,
            recognition,
            lifecycle,
        })
    }

    /// A final report with its exam, whoever asks; anything else is "report not found". Callers
    /// check scope.
    pub(crate) async fn final_report(
        &self,
        report_id: &ReportId,
    ) -> Result<(ReportRecord, ExamRecord), AppError> {
        let report = self
            .catalog
            .report(report_id)
            .await?
            .filter(|r| r.status == ReportStatus::Final)
            .ok_or(AppError::NotFound("report"))?;
        let exam = self
            .catalog
            .exam(&report.exam_id)
            .await?
            .ok_or(AppError::NotFound("report"))?;
        Ok((report, exam))
    }

    /// A final report the caller may see: clinicians and readers any published report, a tech their
    /// own site's.
    pub(crate) async fn report_in_scope(
        &self,
        who: &Principal,
        report_id: &ReportId,
    ) -> Result<(ReportRecord, ExamRecord), AppError> {
        require(who, Action::ViewReport)?;
        let (report, exam) = self.final_report(report_id).await?;
        let visible = match who.role {
            Role::Clinician | Role::Reader => true,
            Role::SiteTech => exam.site == who.site,
            Role::Admin | Role::Auditor => false,
        };
        if visible {
            Ok((report, exam))
        } else {
            Err(AppError::NotFound("report"))
        }
    }

    /// The signed document, as `yilian verify` reads it, and where the version stands (superseded
    /// by, revoked).
    pub async fn signed_report(
        &self,
        who: &Principal,
        report_id: &ReportId,
    ) -> Result<(SignedDocument, ReportLifecycle), AppError> {
        let (report, exam) = self.report_in_scope(who, report_id).await?;
        let doc = report_document(&report)
            .ok_or_else(|| PortError::Corrupt(format!("report {report_id} has no document")))?;
        let lifecycle = self.lifecycle_of(&report).await?;
        self.audit(
            who,
            "report.read",
            "report",
            report_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            "",
        )
        .await?;
        Ok((doc, lifecycle))
    }

    /// Online verification, by the same routine as `yilian verify` (`yilian_signing::verify`): the
    /// signature, the key's validity at signing time, the hub's countersignature, the referenced
    /// instances re-hashed from the stored blobs, and whether a newer version exists in the catalog.
    pub async fn verify_report(
        &self,
        who: &Principal,
        report_id: &ReportId,
    ) -> Result<Verification, AppError> {
        let (report, exam) = self.report_in_scope(who, report_id).await?;
        let v = self.verification_of(&report).await?;
        self.audit(
            who,
            "report.verify",
            "report",
            report_id.as_str(),
            Some(&exam.patient_key),
            if v.valid { "valid" } else { "invalid" },
            "",
        )
        .await?;
        Ok(v)
    }

    /// The verification page a printed report's QR code opens (`/verify/{id}`), without signing in:
    /// whoever holds the paper learns whether it is genuine, current and not revoked, who signed it
    /// and when, and the SHA-256 of the signed document — never the patient or the text (they have
    /// the paper). Only final reports; anything else is not found. Audited (`report.verify.public`,
    /// actor `public`, with the source address).
    pub async fn verify_public(
        &self,
        report_id: &ReportId,
        source: &str,
    ) -> Result<PublicVerification, AppError> {
        let (report, exam) = self.final_report(report_id).await?;
        let verification = self.verification_of(&report).await?;
        let now = self.now();
        self.catalog
            .audit(&crate::ports::AuditEvent {
                at: now,
                actor: "public".into(),
                action: "report.verify.public".into(),
                resource_type: "report".into(),
                resource_id: report_id.to_string(),
                patient_key: Some(exam.patient_key.clone()),
                outcome: if verification.valid {
                    "valid"
                } else {
                    "invalid"
                }
                .into(),
                detail: format!("from {source}"),
            })
            .await?;
        let signer_name = report_document(&report)
            .and_then(|d| {
                d.report
                    .get("signer")
                    .and_then(|s| s.get("name"))
                    .and_then(|n| n.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| report.author.to_string());
        Ok(PublicVerification {
            site_name: self
                .config
                .site(exam.site.as_str())
                .map(|s| s.name.clone())
                .unwrap_or_else(|| exam.site.to_string()),
            modality: exam.modality.clone(),
            signer_name,
            signed_at: report.signed_at,
            document_sha256: report
                .document
                .as_deref()
                .map(|d| hex::encode(Sha256::digest(d.as_bytes()))),
            verification,
        })
    }

    /// The checks of a final report: signature, key validity, countersignature, the referenced
    /// instances' checksums, latest version, not revoked.
    async fn verification_of(&self, report: &ReportRecord) -> Result<Verification, AppError> {
        let report_id = &report.report_id;
        let keys = self.catalog.public_keys().await?;
        // Latest (or superseded by which version) and not revoked: `lifecycle`.
        let lifecycle = self.lifecycle_of(report).await?;
        let latest = lifecycle.latest();
        let latest_evidence = if latest {
            LatestEvidence::Latest
        } else {
            LatestEvidence::SupersededBy(match lifecycle.superseded_by() {
                Some(next) => format!("version {} (report {})", next.version, next.report_id),
                None => "a later version".into(),
            })
        };
        let mut checks: Vec<Check> = match report_document(report) {
            Some(doc) => {
                let mut hashes = BTreeMap::new();
                for (sop, _) in referenced_instances(&doc.report) {
                    let actual = self.stored_sha256(&sop).await?;
                    hashes.insert(sop, actual);
                }
                let evidence = Evidence {
                    results: ResultsEvidence::Hashes(hashes),
                    latest: latest_evidence,
                };
                verify(&doc, &keys, &evidence)
                    .checks
                    .into_iter()
                    .map(|c| Check {
                        ok: c.ok(),
                        name: c.name,
                        detail: c.detail,
                    })
                    .collect()
            }
            None => vec![Check {
                name: "signature",
                ok: false,
                detail: "no signed document stored".into(),
            }],
        };
        // The signing routine says `latest`; the lifecycle adds `not_revoked`.
        checks.extend(
            lifecycle
                .checks()
                .into_iter()
                .filter(|c| c.name != "latest"),
        );
        let valid = checks.iter().all(|c| c.ok);
        Ok(Verification {
            report_id: report_id.clone(),
            valid,
            latest,
            checks,
            lifecycle,
        })
    }

    /// SHA-256 of the stored bytes of an instance (`None`: unknown or unreadable).
    async fn stored_sha256(&self, sop: &str) -> Result<Option<String>, AppError> {
        let Ok(uid) = SopInstanceUid::new(sop) else {
            return Ok(None);
        };
        Ok(match self.catalog.instance(&uid).await? {
            Some(inst) => match self.blobs.get(&inst.blob_key).await {
                Ok(bytes) => Some(hex::encode(Sha256::digest(&bytes))),
                Err(_) => None,
            },
            None => None,
        })
    }

    pub async fn public_keys(&self, who: &Principal) -> Result<Vec<PublicKeyRecord>, AppError> {
        require(who, Action::ListKeys)?;
        Ok(self.catalog.public_keys().await?)
    }
}

/// Rebuilds the signed document from what the catalog stored.
pub fn report_document(r: &ReportRecord) -> Option<SignedDocument> {
    let report = serde_json::from_str(r.document.as_deref()?).ok()?;
    Some(SignedDocument {
        report,
        signature: SignatureBlock {
            algorithm: r.algorithm.clone()?,
            key_id: r.key_id.clone()?,
            value: r.signature.clone()?,
        },
        countersignature: r
            .countersignature
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok()),
    })
}
