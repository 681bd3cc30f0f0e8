//! A signed report after signing: amendments (a new signed version that names the one it supersedes;
//! the old one stays retrievable and verifiable) and revocation (作废, entered in error: a signed
//! revocation record; the exam's result is no longer recognised). Both notify the uploading site and
//! are audited. Final rows are never updated: both only add rows.

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use yilian_domain::{ReportId, ReportStatus, Role, UnixMillis, Username};
use yilian_signing::{Passphrase, SignatureBlock, SignedDocument, format_time};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{
    ExamRecord, LifecycleOutcome, Notification, PortError, ReportRecord, RevocationRecord,
};
use crate::reading::{ReportParts, new_report_id};
use crate::results::Check;
use crate::templates::{ComposedReport, ReportInput, stored_sections};

/// The schema id of a signed revocation document.
pub const REVOCATION_SCHEMA: &str = "yilian.report-revocation.v1";

/// One version of an exam's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLink {
    pub report_id: ReportId,
    pub version: i64,
    pub signed_at: Option<UnixMillis>,
    pub signed_by: Username,
}

/// Where one version stands among its exam's versions.
#[derive(Clone, Debug)]
pub struct ReportLifecycle {
    /// Every final version, oldest first.
    pub chain: Vec<ChainLink>,
    /// The version this was asked about.
    pub version: i64,
    /// The exam's revocation (it withdraws the exam's result, whichever version is read).
    pub revocation: Option<RevocationRecord>,
}

impl ReportLifecycle {
    pub fn latest(&self) -> bool {
        self.chain.last().is_none_or(|l| l.version <= self.version)
    }

    /// The version right after this one, if any.
    pub fn superseded_by(&self) -> Option<&ChainLink> {
        self.chain.iter().find(|l| l.version == self.version + 1)
    }

    /// `final`, `amended` (a later version of an amended report), `superseded` or `revoked`.
    pub fn status(&self) -> &'static str {
        if self.revocation.is_some() {
            "revoked"
        } else if !self.latest() {
            "superseded"
        } else if self.version > 1 {
            "amended"
        } else {
            "final"
        }
    }

    /// The verification checks this adds: `latest` (or superseded by whom), `not_revoked`.
    pub fn checks(&self) -> Vec<Check> {
        let latest = self.latest();
        let mut out = vec![Check {
            name: "latest",
            ok: latest,
            detail: match (latest, self.superseded_by(), self.chain.last()) {
                (true, _, _) => "this is the latest version".into(),
                (false, Some(next), Some(last)) => format!(
                    "superseded by version {} (report {}); the latest is version {} (report {})",
                    next.version, next.report_id, last.version, last.report_id
                ),
                _ => "superseded by a later version".into(),
            },
        }];
        out.push(Check {
            name: "not_revoked",
            ok: self.revocation.is_none(),
            detail: match &self.revocation {
                None => "not revoked".into(),
                Some(r) => format!(
                    "revoked (作废) by {} at {} (version {}): {}",
                    r.revoked_by,
                    format_time(r.revoked_at.0),
                    r.version,
                    r.reason
                ),
            },
        });
        out
    }

    /// The `lifecycle` member of report responses.
    pub fn to_json(&self) -> Value {
        let link = |l: &ChainLink| {
            json!({
                "report_id": l.report_id.as_str(),
                "version": l.version,
                "signed_at": l.signed_at.map(|t| format_time(t.0)),
                "signed_by": l.signed_by.as_str(),
            })
        };
        json!({
            "status": self.status(),
            "version": self.version,
            "latest": self.latest(),
            "superseded_by": self.superseded_by().map(link),
            "chain": self.chain.iter().map(link).collect::<Vec<_>>(),
            "revoked": self.revocation.as_ref().map(revocation_json),
        })
    }
}

/// A revocation as responses show it, with its signed document for offline verification.
pub fn revocation_json(r: &RevocationRecord) -> Value {
    json!({
        "revocation_id": r.revocation_id,
        "report_id": r.report_id.as_str(),
        "version": r.version,
        "reason": r.reason,
        "revoked_by": r.revoked_by.as_str(),
        "revoked_at": format_time(r.revoked_at.0),
        "document": revocation_document(r),
    })
}

/// The signed revocation document as `yilian verify` reads it.
pub fn revocation_document(r: &RevocationRecord) -> Option<SignedDocument> {
    Some(SignedDocument {
        report: serde_json::from_str(&r.document).ok()?,
        signature: SignatureBlock {
            algorithm: r.algorithm.clone(),
            key_id: r.key_id.clone(),
            value: r.signature.clone(),
        },
        countersignature: r
            .countersignature
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok()),
    })
}

/// `{report_id, version, document_sha256, signature_sha256}` of a signed version: what an amendment
/// or a revocation names. Both digests are hex SHA-256: of the canonical document text that was
/// signed, and of the raw signature bytes.
fn pin(r: &ReportRecord) -> Value {
    let doc = r.document.as_deref().unwrap_or_default();
    let sig = r.signature.as_deref().unwrap_or_default();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap_or_else(|_| sig.as_bytes().to_vec());
    json!({
        "report_id": r.report_id.as_str(),
        "version": r.version,
        "document_sha256": hex::encode(Sha256::digest(doc.as_bytes())),
        "signature_sha256": hex::encode(Sha256::digest(&raw)),
    })
}

fn required_reason(reason: &str, what: &str) -> Result<String, AppError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::Invalid(format!(
            "a reason is required to {what} a report"
        )));
    }
    Ok(reason.to_string())
}

impl Hub {
    /// The versions of the report's exam and its revocation.
    pub async fn lifecycle_of(&self, report: &ReportRecord) -> Result<ReportLifecycle, PortError> {
        let chain = self
            .catalog
            .final_reports_of(&report.exam_id)
            .await?
            .into_iter()
            .map(|r| ChainLink {
                report_id: r.report_id,
                version: r.version,
                signed_at: r.signed_at,
                signed_by: r.author,
            })
            .collect();
        Ok(ReportLifecycle {
            chain,
            version: report.version,
            revocation: self.catalog.revocation_of(&report.exam_id).await?,
        })
    }

    /// A final report and its exam, for a reader about to amend or revoke it (else not found).
    async fn signed_for_change(
        &self,
        who: &Principal,
        report_id: &ReportId,
    ) -> Result<(ReportRecord, ExamRecord), AppError> {
        require(who, Action::ReportExam)?;
        if who.role != Role::Reader {
            return Err(AppError::Forbidden(
                "only readers amend or revoke reports".into(),
            ));
        }
        self.final_report(report_id).await
    }

    /// 409 unless `report` is the latest version of an exam whose result is not revoked.
    fn must_be_current(life: &ReportLifecycle) -> Result<(), AppError> {
        if let Some(r) = &life.revocation {
            return Err(AppError::conflict(
                "report_revoked",
                format!(
                    "the report was revoked (作废) at {}",
                    format_time(r.revoked_at.0)
                ),
            ));
        }
        if !life.latest() {
            let next = life
                .superseded_by()
                .map(|l| format!("version {} (report {})", l.version, l.report_id))
                .unwrap_or_else(|| "a later version".into());
            return Err(AppError::conflict(
                "report_superseded",
                format!("this version is superseded by {next}; amend the latest"),
            ));
        }
        Ok(())
    }

    fn outcome(outcome: LifecycleOutcome) -> Result<(), AppError> {
        match outcome {
            LifecycleOutcome::Stored => Ok(()),
            LifecycleOutcome::Superseded => Err(AppError::conflict(
                "report_superseded",
                "the report was amended by someone else meanwhile",
            )),
            LifecycleOutcome::Revoked => Err(AppError::conflict(
                "report_revoked",
                "the report was revoked (作废) meanwhile",
            )),
        }
    }

    /// A notification to the uploading site's people (techs and clinicians): no patient identifiers.
    fn site_notification(&self, kind: &str, exam: &ExamRecord, message: String) -> Notification {
        let now = self.now();
        let mut n =
            self.notification_to(kind, &exam.exam_id, &exam.pool, exam.priority, now, message);
        n.recipients = self
            .config
            .users
            .iter()
            .filter(|u| {
                u.site == exam.site.as_str()
                    && matches!(Role::parse(&u.role), Some(Role::SiteTech | Role::Clinician))
            })
            .filter_map(|u| Username::new(u.username.clone()).ok())
            .collect();
        n
    }

    /// `POST /api/v1/reports/{id}/amend`: a reader of the exam's pool (a senior when the exam needed
    /// review) signs version n+1 with its own report id. `input` is laid over version n's sections;
    /// the new document names the old one in `supersedes` and carries the reason.
    pub async fn amend_report(
        &self,
        who: &Principal,
        report_id: &ReportId,
        input: ReportInput,
        reason: &str,
        passphrase: Option<&Passphrase>,
    ) -> Result<SignedDocument, AppError> {
        let (old, exam) = self.signed_for_change(who, report_id).await?;
        if !exam.visible_to(&who.pools) {
            return Err(AppError::NotFound("report"));
        }
        if exam.review && !who.senior {
            return Err(AppError::Forbidden(
                "this exam needed a senior reader's review (审核): a senior amends its report"
                    .into(),
            ));
        }
        let reason = required_reason(reason, "amend")?;
        let life = self.lifecycle_of(&old).await?;
        Self::must_be_current(&life)?;
        let template = self.template_of(&exam)?;
        let base = stored_sections(&old, &template);
        let text = ComposedReport::compose(template, Some(&base), &input)?;
        text.check_required("amended")?;
        let (study, instances) = self.study_and_instances(&exam).await?;
        let now = self.now();
        let new_id = new_report_id()?;
        let version = old.version + 1;
        let supersedes = pin(&old);
        let (signed, canonical) = self
            .sign_document(&who.username, passphrase, |key| {
                let mut report = self.report_json(&ReportParts {
                    report_id: &new_id,
                    version,
                    exam: &exam,
                    study: &study,
                    instances: &instances,
                    text: &text,
                    who,
                    key_id: &key.key_id,
                    now,
                });
                report["supersedes"] = supersedes;
                report["amendment"] = json!({ "reason": reason });
                report
            })
            .await?;
        let record = ReportRecord {
            report_id: new_id.clone(),
            exam_id: exam.exam_id.clone(),
            version,
            status: ReportStatus::Final,
            findings: text.findings(),
            impression: text.impression(),
            author: who.username.clone(),
            created_at: now,
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
        let note = self.site_notification(
            "report.amended",
            &exam,
            format!(
                "检查 {} 的报告已修订为第 {version} 版（报告 {new_id}），第 {} 版（报告 {}）已被取代。",
                exam.exam_id, old.version, old.report_id
            ),
        );
        Self::outcome(
            self.catalog
                .amend_report(&record, old.version, &note)
                .await?,
        )?;
        self.audit(
            who,
            "report.amend",
            "report",
            new_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            format!("supersedes {} (version {})", old.report_id, old.version),
        )
        .await?;
        Ok(signed)
    }

    /// `POST /api/v1/reports/{id}/revoke`: the signer of the latest version, or a senior reader of the
    /// exam's pool, withdraws the exam's result (作废, entered in error) with a reason, as a signed
    /// revocation record. Recognition stops; the report versions stay readable and verifiable.
    pub async fn revoke_report(
        &self,
        who: &Principal,
        report_id: &ReportId,
        reason: &str,
        passphrase: Option<&Passphrase>,
    ) -> Result<RevocationRecord, AppError> {
        let (report, exam) = self.signed_for_change(who, report_id).await?;
        let signer = report.author == who.username;
        if !signer && !exam.visible_to(&who.pools) {
            return Err(AppError::NotFound("report"));
        }
        if !signer && !who.senior {
            return Err(AppError::Forbidden(
                "only the signer or a senior reader of the pool revokes a report".into(),
            ));
        }
        let reason = required_reason(reason, "revoke")?;
        let life = self.lifecycle_of(&report).await?;
        Self::must_be_current(&life)?;
        let now = self.now();
        let revocation_id = ulid::Ulid::new().to_string();
        let pinned = pin(&report);
        let (signed, canonical) = self
            .sign_document(&who.username, passphrase, |key| {
                json!({
                    "schema": REVOCATION_SCHEMA,
                    "revocation_id": revocation_id,
                    "alliance": self.config.alliance.id,
                    "exam": { "exam_id": exam.exam_id.as_str(), "site_id": exam.site.as_str() },
                    "report": pinned,
                    "reason": reason,
                    "signer": {
                        "username": who.username.as_str(),
                        "name": who.name,
                        "site_id": who.site.as_str(),
                        "key_id": key.key_id,
                    },
                    "signed_at": format_time(now.0),
                })
            })
            .await?;
        let record = RevocationRecord {
            revocation_id,
            report_id: report.report_id.clone(),
            exam_id: exam.exam_id.clone(),
            version: report.version,
            reason,
            revoked_by: who.username.clone(),
            revoked_at: now,
            key_id: signed.signature.key_id.clone(),
            algorithm: signed.signature.algorithm.clone(),
            signature: signed.signature.value.clone(),
            document: canonical,
            countersignature: signed
                .countersignature
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
        };
        let note = self.site_notification(
            "report.revoked",
            &exam,
            format!(
                "检查 {} 的报告（第 {} 版，报告 {}）已作废，结果不再互认，请勿继续使用。",
                exam.exam_id, report.version, report.report_id
            ),
        );
        Self::outcome(self.catalog.revoke_report(&record, &note).await?)?;
        self.audit(
            who,
            "report.revoke",
            "report",
            report.report_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            format!("version {}", report.version),
        )
        .await?;
        Ok(record)
    }
}
