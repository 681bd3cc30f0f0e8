//! Reading: a reader's worklist, claims (leases), drafts, and signing a final report.

use serde_json::json;
use yilian_domain::{ExamId, ExamState, ReportId, ReportStatus, Role, UnixMillis, Username};
use yilian_policy::ExamNeeds;
use yilian_signing::{Passphrase, SignedDocument, format_time};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{ExamRecord, InstanceRecord, ReportRecord, StudyRecord};
use crate::templates::{ComposedReport, stored_sections};

/// What the reader writes (text per template section; the legacy findings/impression fields map to
/// sections). Findings describe the result; the impression is the conclusion. They are kept apart
/// because mutual recognition covers result data, not the conclusion.
pub use crate::templates::ReportInput;

/// An exam as the reader opens it.
#[derive(Clone, Debug)]
pub struct ExamDetail {
    pub exam: ExamRecord,
    pub instances: Vec<InstanceRecord>,
    pub draft: Option<ReportRecord>,
}

/// The schema id inside every signed report document.
pub const REPORT_SCHEMA: &str = "yilian.report.v1";

impl Hub {
    /// The caller's pools' exams that still need a report and that the caller is qualified to read
    /// (modality, subspecialty), most urgent first, then by due time. Exams awaiting a senior's
    /// review stay visible to juniors (they cannot claim them).
    pub async fn worklist(&self, who: &Principal) -> Result<Vec<ExamRecord>, AppError> {
        require(who, Action::ReadWorklist)?;
        let q = who.qualifications();
        let mut list = self.catalog.worklist(&who.pools).await?;
        list.retain(|e| {
            let needs = ExamNeeds {
                senior: false,
                ..e.needs()
            };
            yilian_policy::qualified(&q, &needs).is_ok()
        });
        Ok(list)
    }

    /// An exam in one of the caller's pools (else not found).
    pub async fn exam_for_reader(
        &self,
        who: &Principal,
        exam_id: &ExamId,
    ) -> Result<ExamRecord, AppError> {
        require(who, Action::ReadWorklist)?;
        self.catalog
            .exam(exam_id)
            .await?
            .filter(|e| e.visible_to(&who.pools))
            .ok_or(AppError::NotFound("exam"))
    }

    /// What a reader opens: the exam, its instances and the current draft, after one scope check.
    pub async fn exam_detail(
        &self,
        who: &Principal,
        exam_id: &ExamId,
    ) -> Result<ExamDetail, AppError> {
        let exam = self.exam_for_reader(who, exam_id).await?;
        let instances = self.catalog.study_instances(&exam.study_uid).await?;
        let draft = self.catalog.draft_of(exam_id).await?;
        Ok(ExamDetail {
            exam,
            instances,
            draft,
        })
    }

    /// Takes (or renews) the lease. Another reader's live lease is a 409.
    pub async fn claim(&self, who: &Principal, exam_id: &ExamId) -> Result<ExamRecord, AppError> {
        require(who, Action::ReportExam)?;
        let exam = self.exam_for_reader(who, exam_id).await?;
        if exam.state != ExamState::Queued {
            return Err(already_reported());
        }
        if exam.awaiting_review && !who.senior {
            return Err(AppError::conflict(
                "awaiting_review",
                "the report awaits a senior reader's review (审核)",
            ));
        }
        yilian_policy::qualified(&who.qualifications(), &exam.needs())
            .map_err(|why| AppError::conflict("not_qualified", why))?;
        let now = self.now();
        let until = now.plus_secs(self.config.routing.lease_secs);
        if !self
            .catalog
            .try_claim(exam_id, &who.username, who.senior, now, until)
            .await?
        {
            let holder = self
                .catalog
                .exam(exam_id)
                .await?
                .and_then(|e| e.claimed_by)
                .map(|u| u.to_string())
                .unwrap_or_default();
            return Err(AppError::conflict(
                "exam_claimed",
                format!("the exam is being read by {holder}"),
            ));
        }
        self.audit(
            who,
            "exam.claim",
            "exam",
            exam_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            "",
        )
        .await?;
        self.exam_for_reader(who, exam_id).await
    }

    /// "Give me the next one": a lease on the most urgent exam the caller may read in the pools where
    /// they are on duty (an exam offered to them first among equals; none offered to someone else),
    /// or `None` when nothing is waiting. Off duty in every pool: a conflict. Two readers (on any hub
    /// replica) never get the same exam.
    pub async fn claim_next(&self, who: &Principal) -> Result<Option<ExamRecord>, AppError> {
        require(who, Action::ReportExam)?;
        let now = self.now();
        let pools = self.on_duty_pools(who, now);
        if pools.is_empty() && !who.pools.is_empty() {
            let why = who
                .pools
                .iter()
                .map(|p| format!("{p}: {}", self.duty(&who.username, p, now).describe()))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(AppError::conflict(
                "off_duty",
                format!("you are not on duty ({why}); open an exam from the worklist to cover"),
            ));
        }
        let until = now.plus_secs(self.config.routing.lease_secs);
        let Some(exam_id) = self
            .catalog
            .claim_next(&pools, &who.username, &Self::reader_fit(who), now, until)
            .await?
        else {
            return Ok(None);
        };
        let exam = self
            .catalog
            .exam(&exam_id)
            .await?
            .ok_or_else(|| crate::ports::PortError::Corrupt("claimed exam vanished".into()))?;
        self.audit(
            who,
            "exam.claim",
            "exam",
            exam_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            "next",
        )
        .await?;
        Ok(Some(exam))
    }

    /// An admin hands a queued exam to another reader of its pool (the holder went home, a harder case
    /// needs a senior): the lease moves to `to` whoever held it. Returns the previous holder. Audited.
    pub async fn reassign(
        &self,
        who: &Principal,
        exam_id: &ExamId,
        to: &str,
    ) -> Result<(Option<Username>, UnixMillis), AppError> {
        require(who, Action::ReassignExam)?;
        let exam = self
            .catalog
            .exam(exam_id)
            .await?
            .ok_or(AppError::NotFound("exam"))?;
        let target = self
            .config
            .user(to)
            .filter(|u| u.role == Role::Reader && exam.visible_to(&u.pools))
            .ok_or_else(|| {
                AppError::Invalid(format!(
                    "{to} is not a reader of pool {} (or of the pool it escalated to)",
                    exam.pool
                ))
            })?;
        if exam.state != ExamState::Queued {
            return Err(already_reported());
        }
        yilian_policy::qualified(&target.qualifications(), &exam.needs())
            .map_err(|why| AppError::conflict("not_qualified", format!("{to}: {why}")))?;
        let now = self.now();
        let until = now.plus_secs(self.config.routing.lease_secs);
        if !self
            .catalog
            .reassign(exam_id, &target.username, now, until)
            .await?
        {
            return Err(already_reported());
        }
        self.audit(
            who,
            "exam.reassign",
            "exam",
            exam_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            format!(
                "{} -> {}",
                exam.claimed_by.as_ref().map(|u| u.as_str()).unwrap_or("-"),
                target.username
            ),
        )
        .await?;
        Ok((exam.claimed_by, until))
    }

    pub async fn release(&self, who: &Principal, exam_id: &ExamId) -> Result<(), AppError> {
        require(who, Action::ReportExam)?;
        let exam = self.exam_for_reader(who, exam_id).await?;
        if !self.catalog.release(exam_id, &who.username).await? {
            return Err(AppError::conflict(
                "not_claimed",
                "you do not hold this exam",
            ));
        }
        self.audit(
            who,
            "exam.release",
            "exam",
            exam_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            "",
        )
        .await?;
        Ok(())
    }

    fn holds(&self, who: &Principal, exam: &ExamRecord) -> Result<(), AppError> {
        if exam.state != ExamState::Queued {
            return Err(AppError::conflict(
                "exam_reported",
                "the exam is already signed; a signed report never changes",
            ));
        }
        if exam.claimed_by.as_ref() != Some(&who.username) {
            return Err(AppError::conflict(
                "not_claimed",
                "claim the exam before writing its report",
            ));
        }
        Ok(())
    }

    /// A junior reader submits their report on an exam whose routing rule asks for a review: the text is
    /// saved as the draft, the lease released, and the exam waits for a senior of its pool, who claims
    /// it, may edit, and signs with the junior named as drafter. Audited.
    pub async fn submit_for_review(
        &self,
        who: &Principal,
        exam_id: &ExamId,
        input: Option<ReportInput>,
    ) -> Result<ExamRecord, AppError> {
        require(who, Action::ReportExam)?;
        let exam = self.exam_for_reader(who, exam_id).await?;
        if !exam.review || who.senior {
            return Err(AppError::Invalid(
                "only a junior reader's report on an exam that needs review is submitted; sign it instead"
                    .into(),
            ));
        }
        self.holds(who, &exam)?;
        let text = self.composed_text(&exam, input).await?;
        text.check_required("submitted")?;
        self.save_composed_draft(who, &exam, &text).await?;
        if !self
            .catalog
            .submit_for_review(exam_id, &who.username, self.now())
            .await?
        {
            return Err(AppError::conflict(
                "not_claimed",
                "you no longer hold this exam",
            ));
        }
        self.audit(
            who,
            "report.submit",
            "exam",
            exam_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            "for senior review",
        )
        .await?;
        self.catalog
            .exam(exam_id)
            .await?
            .ok_or(AppError::NotFound("exam"))
    }

    /// Saves the draft (autosave). Only the lease holder may write.
    pub async fn save_draft(
        &self,
        who: &Principal,
        exam_id: &ExamId,
        input: ReportInput,
    ) -> Result<ReportRecord, AppError> {
        require(who, Action::ReportExam)?;
        let exam = self.exam_for_reader(who, exam_id).await?;
        self.holds(who, &exam)?;
        let text = ComposedReport::compose(self.template_of(&exam)?, None, &input)?;
        self.save_composed_draft(who, &exam, &text).await
    }

    /// The text a sign or submit works on: `input` laid into the exam's template when given (it
    /// replaces the draft), else the saved draft.
    async fn composed_text(
        &self,
        exam: &ExamRecord,
        input: Option<ReportInput>,
    ) -> Result<ComposedReport, AppError> {
        let template = self.template_of(exam)?;
        match input {
            Some(i) => ComposedReport::compose(template, None, &i),
            None => {
                let base = self
                    .catalog
                    .draft_of(&exam.exam_id)
                    .await?
                    .map(|d| stored_sections(&d, &template));
                ComposedReport::compose(template, base.as_deref(), &ReportInput::default())
            }
        }
    }

    async fn save_composed_draft(
        &self,
        who: &Principal,
        exam: &ExamRecord,
        text: &ComposedReport,
    ) -> Result<ReportRecord, AppError> {
        let exam_id = &exam.exam_id;
        let now = self.now();
        let existing = self.catalog.draft_of(exam_id).await?;
        let draft = ReportRecord {
            report_id: match &existing {
                Some(d) => d.report_id.clone(),
                None => new_report_id()?,
            },
            exam_id: exam_id.clone(),
            version: 1,
            status: ReportStatus::Draft,
            findings: text.findings(),
            impression: text.impression(),
            author: who.username.clone(),
            created_at: existing.as_ref().map(|d| d.created_at).unwrap_or(now),
            updated_at: now,
            signed_at: None,
            key_id: None,
            algorithm: None,
            signature: None,
            document: None,
            template: Some(text.template.id.clone()),
            sections: Some(text.sections_json().to_string()),
            countersignature: None,
        };
        self.catalog.save_draft(&draft).await?;
        Ok(draft)
    }

    pub async fn draft(
        &self,
        who: &Principal,
        exam_id: &ExamId,
    ) -> Result<Option<ReportRecord>, AppError> {
        self.exam_for_reader(who, exam_id).await?;
        Ok(self.catalog.draft_of(exam_id).await?)
    }

    /// Signs the report with the reader's key: the canonical bytes of the document (exam identity,
    /// patient key, result references with checksums, text, signer, time) are signed, and the report
    /// is final from then on. `input` replaces the draft text when given.
    pub async fn sign(
        &self,
        who: &Principal,
        exam_id: &ExamId,
        input: Option<ReportInput>,
    ) -> Result<SignedDocument, AppError> {
        self.sign_with_passphrase(who, exam_id, input, None).await
    }

    /// [`Hub::sign`] with the signer's passphrase, which unlocks a sealed key for this signature only.
    pub async fn sign_with_passphrase(
        &self,
        who: &Principal,
        exam_id: &ExamId,
        input: Option<ReportInput>,
        passphrase: Option<&Passphrase>,
    ) -> Result<SignedDocument, AppError> {
        require(who, Action::ReportExam)?;
        if who.role != Role::Reader {
            return Err(AppError::Forbidden("only readers sign reports".into()));
        }
        let exam = self.exam_for_reader(who, exam_id).await?;
        self.holds(who, &exam)?;
        if exam.review && !who.senior {
            return Err(AppError::conflict(
                "review_required",
                "this exam needs a senior reader's countersign (审核): submit the report for review",
            ));
        }
        let draft = self.catalog.draft_of(exam_id).await?;
        let text = self.composed_text(&exam, input).await?;
        text.check_required("signed")?;
        let (study, instances) = self.study_and_instances(&exam).await?;
        let now = self.now();
        let report_id = draft
            .as_ref()
            .map(|d| d.report_id.clone())
            .map_or_else(new_report_id, Ok)?;
        // A report a junior drafted and a senior countersigned names its drafter; the senior signs.
        let drafted_by = exam.drafted_by.as_ref().map(|junior| {
            json!({
                "username": junior.as_str(),
                "name": self.config.user(junior.as_str()).map(|u| u.name).unwrap_or_default(),
            })
        });
        let (signed, canonical) = self
            .sign_document(&who.username, passphrase, |key| {
                let mut report = self.report_json(&ReportParts {
                    report_id: &report_id,
                    version: 1,
                    exam: &exam,
                    study: &study,
                    instances: &instances,
                    text: &text,
                    who,
                    key_id: &key.key_id,
                    now,
                });
                if let Some(d) = drafted_by {
                    report["drafted_by"] = d;
                }
                report
            })
            .await?;
        let record = ReportRecord {
            report_id: report_id.clone(),
            exam_id: exam_id.clone(),
            version: 1,
            status: ReportStatus::Final,
            findings: text.findings(),
            impression: text.impression(),
            author: who.username.clone(),
            created_at: draft.as_ref().map(|d| d.created_at).unwrap_or(now),
            updated_at: now,
            signed_at: Some(now),
            key_id: Some(signed.signature.key_id.clone()),
            algorithm: Some(signed.signature.algorithm.clone()),
            signature: Some(signed.signature.value.clone()),
            document: Some(canonical),
            template: Some(text.template.id.clone()),
            sections: Some(text.sections_json().to_string()),
            countersignature: signed
                .countersignature
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
        };
        if !self
            .catalog
            .finalize_report(&record, &who.username, now)
            .await?
        {
            return Err(AppError::conflict(
                "exam_reported",
                "the exam was signed or claimed by someone else meanwhile",
            ));
        }
        self.audit(
            who,
            "report.sign",
            "report",
            report_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            signed.signature.key_id.clone(),
        )
        .await?;
        Ok(signed)
    }
}

/// What a signed report document is built from.
pub(crate) struct ReportParts<'a> {
    pub report_id: &'a ReportId,
    pub version: i64,
    pub exam: &'a ExamRecord,
    pub study: &'a StudyRecord,
    /// Sorted by SOP Instance UID.
    pub instances: &'a [InstanceRecord],
    pub text: &'a ComposedReport,
    pub who: &'a Principal,
    pub key_id: &'a str,
    pub now: UnixMillis,
}

impl Hub {
    /// The study and its instances sorted by SOP Instance UID, as a report document lists them.
    pub(crate) async fn study_and_instances(
        &self,
        exam: &ExamRecord,
    ) -> Result<(StudyRecord, Vec<InstanceRecord>), AppError> {
        let study = self
            .catalog
            .study(&exam.study_uid)
            .await?
            .ok_or(AppError::NotFound("study"))?;
        let mut instances = self.catalog.study_instances(&exam.study_uid).await?;
        instances.sort_by(|a, b| a.sop_instance_uid.cmp(&b.sop_instance_uid));
        Ok((study, instances))
    }

    /// The `report` member of a signed report (schema [`REPORT_SCHEMA`]): exam identity, patient key,
    /// result references with checksums, the text (legacy `findings`/`impression` and the template's
    /// `sections`), signer and time. Amendments add `supersedes` and `amendment`.
    pub(crate) fn report_json(&self, p: &ReportParts<'_>) -> serde_json::Value {
        let (exam, study) = (p.exam, p.study);
        json!({
            "schema": REPORT_SCHEMA,
            "report_id": p.report_id.as_str(),
            "version": p.version,
            "alliance": self.config.alliance.id,
            "exam": {
                "exam_id": exam.exam_id.as_str(),
                "kind": exam.kind.as_str(),
                "modality": exam.modality,
                "study_instance_uid": exam.study_uid.as_str(),
                "site_id": exam.site.as_str(),
                "accession_number": study.accession_number,
                "study_date": study.study_date,
            },
            "patient": { "patient_key": exam.patient_key.0 },
            "results": p.instances.iter().map(|i| json!({
                "sop_instance_uid": i.sop_instance_uid.as_str(),
                "sop_class_uid": i.sop_class_uid.as_str(),
                "sha256": i.sha256,
            })).collect::<Vec<_>>(),
            "findings": p.text.findings(),
            "impression": p.text.impression(),
            "template": p.text.template.id,
            "sections": p.text.sections_json(),
            "signer": {
                "username": p.who.username.as_str(),
                "name": p.who.name,
                "site_id": p.who.site.as_str(),
                "key_id": p.key_id,
            },
            "signed_at": format_time(p.now.0),
        })
    }
}

pub(crate) fn new_report_id() -> Result<ReportId, AppError> {
    ReportId::new(ulid::Ulid::new().to_string()).map_err(|e| AppError::Invalid(e.to_string()))
}

/// The 409 for an exam whose report is final.
fn already_reported() -> AppError {
    AppError::conflict("exam_reported", "the exam is already reported")
}
