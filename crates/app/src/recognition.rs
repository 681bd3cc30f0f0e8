//! Mutual recognition after the look-up: the receiving clinician records whether they accepted or
//! declined a result (`policy::parse_decision`, stored with the recognition shown at the time and
//! audited in one transaction), admins read the rates per item, performing site and month
//! (`policy::recognition_rates`, counts only), and a hospital's order entry asks before ordering
//! whether a recognised prior result of an item exists (the prior-result alert).

use yilian_domain::{LabPanelId, LocalPatientId, PatientKey, ReportId, UnixMillis};
use yilian_policy::calendar::LocalTime;
use yilian_policy::{
    Decision, DecisionFact, DeclineReason, RecognitionDecision, RecognitionRate, parse_decision,
    recognition_rates,
};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::lab_fhir::LabResultView;
use crate::ports::{AuditEvent, PortError, RecognitionDecisionRecord};

/// The most decisions one rates report counts; a wider range is refused, not truncated.
pub const RATES_MAX_DECISIONS: i64 = 200_000;

/// The result a decision is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecisionTarget {
    /// A signed imaging or ECG report.
    Report(ReportId),
    /// A published lab report, or one result of it (position from 1).
    Lab(LabPanelId, Option<i64>),
}

/// A decision as the clinician sent it.
#[derive(Clone, Debug, Default)]
pub struct DecisionInput {
    /// `accepted` or `declined`.
    pub decision: String,
    /// A decline's reason code.
    pub reason: Option<String>,
    pub text: Option<String>,
}

/// The rates over `[from, to)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RatesReport {
    pub from: UnixMillis,
    pub to: UnixMillis,
    pub groups: Vec<RecognitionRate>,
}

/// One candidate prior result of the asked item.
#[derive(Clone, Debug, PartialEq)]
pub struct PriorResult {
    /// `report` or `lab`.
    pub kind: &'static str,
    /// Report id, or `<panel id>-<seq>` (the FHIR Observation id).
    pub id: String,
    pub item: String,
    pub site_id: String,
    pub site_name: String,
    /// Exam date, or specimen collection.
    pub performed_at: UnixMillis,
    pub recognition: RecognitionDecision,
    /// Where to read it.
    pub link: String,
}

/// The prior-result alert's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct PriorAnswer {
    pub item: String,
    /// A recognised (HR) prior of the item exists.
    pub recognised_prior: bool,
    /// The newest recognised prior; else the newest prior of the item (not recognised), for the reasons.
    pub prior: Option<PriorResult>,
    /// One sentence for the ordering clinician.
    pub message: String,
}

fn item_of_lab(loinc: Option<&str>, code: &str) -> String {
    loinc
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or(code)
        .to_string()
}

impl Hub {
    /// The site a lab report was performed at: the configured sender its performing lab names, else
    /// the site that sent it.
    fn lab_site(&self, v: &LabResultView) -> String {
        v.record
            .panel
            .performing_lab
            .as_deref()
            .and_then(|lab| self.config.lab_sender(&[lab]))
            .map(|s| s.site.clone())
            .unwrap_or_else(|| v.record.site.to_string())
    }

    fn local_date(&self, at: UnixMillis) -> String {
        let d = LocalTime::at(at, self.config.alliance.utc_offset_minutes).date;
        format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
    }

    /// Records a clinician's decision on a result they may see: the deciding site is theirs, the
    /// recognition is the one shown now (accepting an unrecognised result is allowed and recorded as
    /// such). The row and its `recognition.decide` audit event commit together.
    pub async fn record_recognition_decision(
        &self,
        who: &Principal,
        target: &DecisionTarget,
        input: &DecisionInput,
    ) -> Result<RecognitionDecisionRecord, AppError> {
        require(who, Action::DecideRecognition)?;
        let (decision, text) = parse_decision(
            &input.decision,
            input.reason.as_deref(),
            input.text.as_deref(),
        )
        .map_err(|e| AppError::Invalid(e.to_string()))?;
        let now = self.now();
        let (kind, result_id, seq, item, site, key, recognised) = match target {
            DecisionTarget::Report(id) => {
                let (report, exam) = self.report_in_scope(who, id).await?;
                let keys = self.catalog.public_keys().await?;
                let v = self.result_view(exam, report, &keys, now).await?;
                (
                    "report",
                    id.to_string(),
                    None,
                    v.exam.modality.trim().to_ascii_uppercase(),
                    v.exam.site.to_string(),
                    v.exam.patient_key.clone(),
                    v.recognition.recognised,
                )
            }
            DecisionTarget::Lab(id, seq) => {
                let v = self
                    .published_lab_view(id)
                    .await?
                    .ok_or(AppError::NotFound("lab report"))?;
                let (item, recognised) = match seq {
                    None => (
                        item_of_lab(
                            v.record.service_loinc.as_deref(),
                            &v.record.panel.service.code,
                        ),
                        v.recognition.report.recognised,
                    ),
                    Some(n) => {
                        let i = usize::try_from(*n)
                            .ok()
                            .and_then(|n| n.checked_sub(1))
                            .ok_or(AppError::NotFound("lab result"))?;
                        let (r, rec) = v
                            .record
                            .panel
                            .results
                            .get(i)
                            .zip(v.recognition.results.get(i))
                            .ok_or(AppError::NotFound("lab result"))?;
                        (
                            item_of_lab(r.loinc.as_deref(), &r.code.code),
                            rec.decision.recognised,
                        )
                    }
                };
                (
                    "lab",
                    id.to_string(),
                    *seq,
                    item,
                    self.lab_site(&v),
                    v.record.patient_key.clone(),
                    recognised,
                )
            }
        };
        let record = RecognitionDecisionRecord {
            decision_id: ulid::Ulid::new().to_string(),
            result_kind: kind.to_string(),
            result_id: result_id.clone(),
            result_seq: seq,
            item: item.clone(),
            performing_site: site,
            patient_key: key.clone(),
            deciding_site: who.site.clone(),
            decided_by: who.username.clone(),
            decision: decision.as_str().to_string(),
            reason: decision.reason().map(|r| r.code().to_string()),
            reason_text: text,
            recognised,
            decided_at: now,
        };
        // The free text stays out of the audit trail (it may name the patient); the row keeps it.
        let audit = AuditEvent {
            at: now,
            actor: who.username.to_string(),
            action: "recognition.decide".into(),
            resource_type: kind.into(),
            resource_id: match seq {
                Some(n) => format!("{result_id}-{n}"),
                None => result_id,
            },
            patient_key: Some(key),
            outcome: decision.as_str().into(),
            detail: format!(
                "item={item}; {}{}; decision {}",
                if recognised {
                    "shown recognised"
                } else {
                    "shown not recognised"
                },
                decision
                    .reason()
                    .map(|r| format!("; reason {}", r.code()))
                    .unwrap_or_default(),
                record.decision_id
            ),
        };
        self.catalog
            .insert_recognition_decision(&record, &audit)
            .await?;
        self.counters
            .record_decision(matches!(decision, Decision::Accepted));
        Ok(record)
    }

    /// Recognition rates over the decisions taken in `[from, to)`, per item, performing site and
    /// month (alliance time). Admins only; counts, no patients.
    pub async fn recognition_rates(
        &self,
        who: &Principal,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<RatesReport, AppError> {
        require(who, Action::ViewMetrics)?;
        if to <= from {
            return Err(AppError::Invalid("`to` must be after `from`".into()));
        }
        let rows = self
            .catalog
            .recognition_decisions(from, to, RATES_MAX_DECISIONS + 1)
            .await?;
        if rows.len() as i64 > RATES_MAX_DECISIONS {
            return Err(AppError::Invalid(format!(
                "more than {RATES_MAX_DECISIONS} decisions in this range; narrow from/to"
            )));
        }
        let mut facts = Vec::with_capacity(rows.len());
        for r in rows {
            let decision = match (r.decision.as_str(), r.reason.as_deref()) {
                ("accepted", _) => Decision::Accepted,
                ("declined", Some(code)) => {
                    Decision::Declined(DeclineReason::parse(code).ok_or_else(|| {
                        PortError::Corrupt(format!("recognition_decisions.reason: {code:?}"))
                    })?)
                }
                (other, _) => {
                    return Err(PortError::Corrupt(format!(
                        "recognition_decisions.decision: {other:?}"
                    ))
                    .into());
                }
            };
            facts.push(DecisionFact {
                item: r.item,
                performing_site: r.performing_site,
                decision,
                recognised: r.recognised,
                decided_at: r.decided_at,
            });
        }
        Ok(RatesReport {
            from,
            to,
            groups: recognition_rates(&facts, self.config.alliance.utc_offset_minutes),
        })
    }

    /// The prior-result alert: does a recognised prior of `item` (a modality such as `CT` or `ECG`,
    /// or a LOINC / lab code) exist for the patient? The patient is found as the look-up finds them.
    /// Audited (`results.prior`) with the patient key.
    pub async fn prior_result(
        &self,
        who: &Principal,
        issuer: &str,
        patient_id: &str,
        item: &str,
    ) -> Result<PriorAnswer, AppError> {
        require(who, Action::CheckPriorResult)?;
        let item = item.trim();
        if patient_id.trim().is_empty() || item.is_empty() {
            return Err(AppError::Invalid("patient_id and item are required".into()));
        }
        let local = LocalPatientId {
            issuer: issuer.trim().to_string(),
            id: patient_id.trim().to_string(),
        };
        let key = self.patient_key_for(&local).await?;
        let candidates = match &key {
            Some(k) => self.prior_candidates(k, item).await?,
            None => Vec::new(),
        };
        let newest = |recognised_only: bool| {
            candidates
                .iter()
                .filter(|c| !recognised_only || c.recognition.recognised)
                .max_by_key(|c| c.performed_at)
                .cloned()
        };
        let recognised = newest(true);
        let recognised_prior = recognised.is_some();
        let prior = recognised.or_else(|| newest(false));
        let message = match &prior {
            Some(p) if recognised_prior => format!(
                "A recognised (HR) {item} result exists: {} at {}, valid until {}. Consider reusing it instead of repeating the {}.",
                self.local_date(p.performed_at),
                p.site_name,
                p.recognition
                    .valid_until
                    .map(|t| self.local_date(t))
                    .unwrap_or_default(),
                if p.kind == "lab" { "test" } else { "exam" },
            ),
            Some(p) => format!(
                "No recognised prior {item} result: the newest ({} at {}) is not recognised: {}.",
                self.local_date(p.performed_at),
                p.site_name,
                p.recognition.reasons.join("; ")
            ),
            None => format!("No prior {item} result in the alliance for this patient."),
        };
        self.audit(
            who,
            "results.prior",
            "patient",
            &yilian_domain::mask_identifier(&local.id),
            key.as_ref(),
            "ok",
            format!(
                "item={item}; {} candidates; recognised prior: {}",
                candidates.len(),
                if recognised_prior { "yes" } else { "no" }
            ),
        )
        .await?;
        self.counters.record_prior_check(recognised_prior);
        Ok(PriorAnswer {
            item: item.to_string(),
            recognised_prior,
            prior,
            message,
        })
    }

    /// Every published result of the patient for `item`: signed reports of that modality, and lab
    /// results whose LOINC or code is `item` (in the newest published report of each order).
    async fn prior_candidates(
        &self,
        key: &PatientKey,
        item: &str,
    ) -> Result<Vec<PriorResult>, AppError> {
        let now = self.now();
        let mut out = Vec::new();
        let keys = self.catalog.public_keys().await?;
        for (exam, report) in self.catalog.results_of_patient(key).await? {
            if !exam.modality.trim().eq_ignore_ascii_case(item) {
                continue;
            }
            let v = self.result_view(exam, report, &keys, now).await?;
            out.push(PriorResult {
                kind: "report",
                id: v.report.report_id.to_string(),
                item: v.exam.modality.trim().to_ascii_uppercase(),
                site_id: v.exam.site.to_string(),
                site_name: v.site_name.clone(),
                performed_at: v.performed_at,
                link: format!("/api/v1/reports/{}", v.report.report_id),
                recognition: v.recognition,
            });
        }
        let offset = i16::try_from(self.config.alliance.utc_offset_minutes).unwrap_or(480);
        for v in self.published_lab_views(key).await? {
            let site_id = self.lab_site(&v);
            let p = &v.record.panel;
            for (i, (r, rec)) in p.results.iter().zip(&v.recognition.results).enumerate() {
                let matches = r.code.code.trim().eq_ignore_ascii_case(item)
                    || r.loinc
                        .as_deref()
                        .is_some_and(|l| l.trim().eq_ignore_ascii_case(item));
                if !matches {
                    continue;
                }
                let performed_at = p
                    .collected_at
                    .or(r.observed_at)
                    .or(p.reported_at)
                    .map(|t| t.to_unix_millis(offset))
                    .unwrap_or(v.record.received_at);
                let id = format!("{}-{}", v.record.panel_id, i + 1);
                out.push(PriorResult {
                    kind: "lab",
                    link: format!("/fhir/r4/Observation/{id}"),
                    id,
                    item: item_of_lab(r.loinc.as_deref(), &r.code.code),
                    site_name: v.site_name.clone().unwrap_or_else(|| site_id.clone()),
                    site_id: site_id.clone(),
                    performed_at,
                    recognition: rec.decision.clone(),
                });
            }
        }
        Ok(out)
    }
}
