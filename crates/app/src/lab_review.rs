//! Lab review and critical values (危急值): at ingest each panel is assessed against the alliance's
//! critical-value list and either awaits a lab physician's sign-off (审核) or is auto-released by a
//! configured rule; each critical value opens a case that tells the ordering site at once, must be
//! acknowledged by a named person who reads the value back, and escalates when nobody does within
//! `lab.critical_ack_minutes`. Sign-off signs a canonical document exactly as reports are signed.

use chrono::Datelike;
use serde_json::json;
use yilian_domain::lab::{CriticalState, LabPanel, LabPanelState};
use yilian_domain::{ExamId, LabPanelId, PoolId, Priority, Role, SiteId, UnixMillis, Username};
use yilian_policy::lab::{LabDecision, assess, release};
use yilian_signing::{Passphrase, SignatureBlock, SignedDocument, format_time};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{
    AuditEvent, CriticalAck, CriticalCaseRecord, CriticalFilter, LabPanelRecord, LabReview,
    LabSignoff, NewCriticalCase, Notification, PortError,
};

/// The schema id inside every signed lab report document.
pub const LAB_REPORT_SCHEMA: &str = "yilian.lab-report/1";

/// The pool named on critical-value notifications when no review pool is configured (they are
/// addressed to people, so the pool is only a label).
const NO_REVIEW_POOL: &str = "lab-critical";
/// The most panels one review-queue call returns.
const MAX_QUEUE: i64 = 200;
/// The most cases one register call returns.
pub const MAX_REGISTER: i64 = 5000;
/// Cases escalated per sweep at most.
const ESCALATIONS_PER_SWEEP: i64 = 100;

/// A panel on a review queue, with its critical-value cases.
#[derive(Clone, Debug)]
pub struct ReviewItem {
    pub record: LabPanelRecord,
    pub cases: Vec<CriticalCaseRecord>,
}

/// What a person gives when they take a critical value.
#[derive(Clone, Debug, Default)]
pub struct AckInput {
    /// The person who received the value (on the phone, or the caller).
    pub name: String,
    /// Their role or department (主治医师, 护士站…).
    pub role: Option<String>,
    /// The value as they read it back.
    pub read_back: String,
}

/// How quickly the register's critical values were taken: the measure of the limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterSummary {
    pub cases: usize,
    pub acknowledged: usize,
    /// Acknowledged within `critical_ack_minutes` of being opened.
    pub within_limit: usize,
    /// Escalated at least once.
    pub escalated: usize,
    /// Nearest-rank median and 90th percentile of the minutes to acknowledgement.
    pub median_minutes: Option<i64>,
    pub p90_minutes: Option<i64>,
}

/// The summary of a register for a limit in minutes.
pub fn register_summary(cases: &[CriticalCaseRecord], limit_minutes: i64) -> RegisterSummary {
    let mut minutes: Vec<i64> = cases
        .iter()
        .filter_map(|c| c.ack.as_ref().map(|a| (a.at.0 - c.opened_at.0) / 60_000))
        .collect();
    minutes.sort_unstable();
    let rank = |p: usize| -> Option<i64> {
        if minutes.is_empty() {
            return None;
        }
        let i = (p * minutes.len()).div_ceil(100).max(1) - 1;
        minutes.get(i).copied()
    };
    RegisterSummary {
        cases: cases.len(),
        acknowledged: minutes.len(),
        within_limit: cases
            .iter()
            .filter(|c| {
                c.ack
                    .as_ref()
                    .is_some_and(|a| a.at.0 - c.opened_at.0 <= limit_minutes * 60_000)
            })
            .count(),
        escalated: cases.iter().filter(|c| c.escalations > 0).count(),
        median_minutes: rank(50),
        p90_minutes: rank(90),
    }
}

/// The critical-value decisions of a new panel at ingest.
pub(crate) struct PanelDecision {
    pub review: LabReview,
    pub critical: Vec<NewCriticalCase>,
}

/// Whether a read-back repeats the reported value: the same number (any decimal spelling), or for a
/// value that is not a number, the same text.
pub fn read_back_matches(value_text: &str, read_back: &str) -> bool {
    let bare = value_text.trim_start_matches(['<', '>', '=']).trim();
    match bare.parse::<f64>() {
        Ok(v) => numbers_in(read_back).any(|n| (n - v).abs() <= f64::EPSILON * v.abs().max(1.0)),
        Err(_) => !bare.is_empty() && read_back.to_lowercase().contains(&bare.to_lowercase()),
    }
}

/// The decimal numbers in free text (`"血钾 6.80 mmol/L"` → 6.8).
fn numbers_in(text: &str) -> impl Iterator<Item = f64> + '_ {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter(|s| s.bytes().any(|b| b.is_ascii_digit()))
        .filter_map(|s| s.trim_matches('.').parse::<f64>().ok())
}

impl Hub {
    /// Review or release, and the critical-value cases, of a panel about to be stored.
    pub(crate) fn decide_panel(
        &self,
        facility: &str,
        sender_site: &SiteId,
        panel: &LabPanel,
        now: UnixMillis,
    ) -> Result<PanelDecision, PortError> {
        let lab = &self.config.lab;
        let assessment = assess(panel, &lab.critical);
        // QC records name the lab as messages do; a panel that names no performing lab was performed
        // by its sender.
        let mut judged = panel.clone();
        if judged.performing_lab.is_none() {
            judged.performing_lab = Some(facility.to_string());
        }
        let year = panel
            .collected_at
            .map(|t| i32::from(t.local.year))
            .unwrap_or_else(|| self.local_year(now));
        let decision = release(&judged, &assessment, &lab.auto_release, &lab.qc, year);
        let review_pool = self
            .config
            .lab_review_pool(facility)
            .and_then(|p| PoolId::new(p).ok());
        let review = match decision {
            LabDecision::AutoRelease { rule, explanation } => LabReview {
                state: LabPanelState::AutoReleased,
                review_pool: review_pool.clone(),
                decision: explanation,
                release_rule: Some(rule),
            },
            LabDecision::Review { explanation } => LabReview {
                state: LabPanelState::AwaitingReview,
                review_pool: review_pool.clone(),
                decision: match &review_pool {
                    Some(p) => format!("review by pool {p}: {explanation}"),
                    None => format!(
                        "awaiting review, but no review pool is configured (lab.review_pool): {explanation}"
                    ),
                },
                release_rule: None,
            },
        };
        let notify_site = self
            .ordering_site(panel)
            .unwrap_or_else(|| sender_site.clone());
        let due = UnixMillis(now.0.saturating_add(lab.critical_ack_minutes * 60_000));
        let critical = assessment
            .critical
            .iter()
            .map(|f| {
                let case_id = ulid::Ulid::new().to_string();
                let message = format!(
                    "危急值 critical value: {} (panel {}, {facility}); tell the clinician and acknowledge with read-back within {} minutes",
                    f.explanation,
                    panel.service.label(),
                    lab.critical_ack_minutes
                );
                let notification = self.critical_notification(
                    "lab.critical",
                    &case_id,
                    review_pool.as_ref(),
                    &notify_site,
                    due,
                    message,
                    false,
                )?;
                Ok(NewCriticalCase {
                    result_seq: i64::try_from(f.result_index + 1).unwrap_or(i64::MAX),
                    notify_site: notify_site.clone(),
                    analyte: f.analyte.clone(),
                    value_text: f.value.clone(),
                    unit: f.unit.clone(),
                    rule_name: f.rule.clone(),
                    explanation: f.explanation.clone(),
                    ack_due_at: due,
                    notification,
                    case_id,
                })
            })
            .collect::<Result<Vec<_>, PortError>>()?;
        Ok(PanelDecision { review, critical })
    }

    /// The alliance's current year.
    fn local_year(&self, now: UnixMillis) -> i32 {
        let offset = i64::from(self.config.alliance.utc_offset_minutes) * 60_000;
        chrono::DateTime::from_timestamp_millis(now.0.saturating_add(offset))
            .map(|d| d.year())
            .unwrap_or(1970)
    }

    /// The member site a panel's order came from, when the lab named one the hub knows (by site id,
    /// name or patient-ID issuer).
    fn ordering_site(&self, panel: &LabPanel) -> Option<SiteId> {
        let named = panel.ordering_site.as_deref()?.trim();
        let candidates: Vec<&str> = named
            .split(['^', '&'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        self.config
            .sites
            .iter()
            .find(|s| {
                candidates.iter().any(|c| {
                    c.eq_ignore_ascii_case(&s.id)
                        || c.eq_ignore_ascii_case(&s.patient_id_issuer)
                        || *c == s.name
                })
            })
            .and_then(|s| SiteId::new(s.id.clone()).ok())
    }

    /// A critical-value notification addressed to the people of the site told (clinicians and techs),
    /// the readers of the review pool, and on escalation the `critical_escalate_to` users too.
    #[allow(clippy::too_many_arguments)]
    fn critical_notification(
        &self,
        kind: &str,
        case_id: &str,
        review_pool: Option<&PoolId>,
        notify_site: &SiteId,
        due: UnixMillis,
        message: String,
        escalation: bool,
    ) -> Result<Notification, PortError> {
        let mut recipients: Vec<Username> = Vec::new();
        for u in &self.config.users {
            let role = Role::parse(&u.role);
            let at_site = u.site == notify_site.as_str()
                && matches!(role, Some(Role::Clinician | Role::SiteTech));
            let in_pool = role == Some(Role::Reader)
                && review_pool.is_some_and(|p| u.pools.iter().any(|x| x == p.as_str()));
            let named = escalation && self.config.lab.critical_escalate_to.contains(&u.username);
            if (at_site || in_pool || named)
                && let Ok(name) = Username::new(u.username.clone())
                && !recipients.contains(&name)
            {
                recipients.push(name);
            }
        }
        let corrupt = |e: yilian_domain::IdError| PortError::Corrupt(e.to_string());
        let subject = ExamId::new(case_id.to_string()).map_err(corrupt)?;
        let pool = match review_pool {
            Some(p) => p.clone(),
            None => PoolId::new(NO_REVIEW_POOL).map_err(corrupt)?,
        };
        let mut n = self.notification_to(kind, &subject, &pool, Priority::Stat, due, message);
        n.recipients = recipients;
        Ok(n)
    }

    /// The panels awaiting the caller's sign-off: of each lab review pool the caller reads, those
    /// with critical values first, then oldest first.
    pub async fn lab_review_queue(&self, who: &Principal) -> Result<Vec<ReviewItem>, AppError> {
        require(who, Action::ReviewLab)?;
        let mut out = Vec::new();
        for pool in self.lab_pools_of(who) {
            for record in self.catalog.lab_review_queue(&pool, MAX_QUEUE).await? {
                let cases = if record.critical_count > 0 {
                    self.catalog
                        .critical_cases_of_panel(&record.panel_id)
                        .await?
                } else {
                    Vec::new()
                };
                out.push(ReviewItem { record, cases });
            }
        }
        out.sort_by_key(|i| {
            (
                i.record.critical_count == 0,
                i.record.received_at,
                i.record.panel_id.clone(),
            )
        });
        self.audit(
            who,
            "lab.review.list",
            "lab_review_queue",
            "",
            None,
            "ok",
            format!("{} panels", out.len()),
        )
        .await?;
        Ok(out)
    }

    /// The caller's pools that review lab panels.
    fn lab_pools_of(&self, who: &Principal) -> Vec<PoolId> {
        who.pools
            .iter()
            .filter(|p| self.is_lab_review_pool(p))
            .cloned()
            .collect()
    }

    fn is_lab_review_pool(&self, pool: &PoolId) -> bool {
        let lab = &self.config.lab;
        lab.review_pool.as_deref() == Some(pool.as_str())
            || lab
                .senders
                .iter()
                .any(|s| s.review_pool.as_deref() == Some(pool.as_str()))
    }

    /// A panel for a lab physician of its review pool (any state), with its critical-value cases.
    /// Audited (`lab.view`). Outside the caller's pools: not found.
    pub async fn lab_panel_for_review(
        &self,
        who: &Principal,
        id: &LabPanelId,
    ) -> Result<ReviewItem, AppError> {
        require(who, Action::ReviewLab)?;
        let record = self
            .catalog
            .lab_panel(id)
            .await?
            .filter(|r| {
                r.review_pool
                    .as_ref()
                    .is_some_and(|p| who.pools.contains(p))
            })
            .ok_or(AppError::NotFound("lab panel"))?;
        let cases = self.catalog.critical_cases_of_panel(id).await?;
        self.audit(
            who,
            "lab.view",
            "lab_panel",
            id.as_str(),
            Some(&record.patient_key),
            "ok",
            "review",
        )
        .await?;
        Ok(ReviewItem { record, cases })
    }

    /// Signs a panel off (审核): the canonical document (panel identity, the original message's
    /// SHA-256, every result as stored, the critical values, the comment, signer and time) is signed
    /// with the lab physician's key, and the panel is released to the alliance. Audited.
    pub async fn sign_off_lab_panel(
        &self,
        who: &Principal,
        id: &LabPanelId,
        comment: &str,
        passphrase: Option<&Passphrase>,
    ) -> Result<SignedDocument, AppError> {
        require(who, Action::ReviewLab)?;
        let ReviewItem { record, cases } = self.lab_panel_for_review(who, id).await?;
        if record.state.is_published() {
            return Err(AppError::conflict(
                "lab_released",
                "the panel is already released; a released panel never changes (the lab sends a correction)",
            ));
        }
        if let Some(newer) = &record.superseded_by {
            return Err(AppError::conflict(
                "lab_superseded",
                format!("a later report of the order ({newer}) replaces this one: review that"),
            ));
        }
        let now = self.now();
        let (signed, canonical) = self
            .sign_document(&who.username, passphrase, |key| {
                lab_report_document(
                    &self.config.alliance.id,
                    &record,
                    &cases,
                    comment,
                    who,
                    &key.key_id,
                    now,
                )
            })
            .await?;
        let signoff = LabSignoff {
            panel_id: id.clone(),
            signer: who.username.clone(),
            comment: comment.trim().to_string(),
            signed_at: now,
            key_id: signed.signature.key_id.clone(),
            algorithm: signed.signature.algorithm.clone(),
            signature: signed.signature.value.clone(),
            document: canonical,
            countersignature: signed
                .countersignature
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
        };
        let audit = AuditEvent {
            at: now,
            actor: who.username.to_string(),
            action: "lab.sign".into(),
            resource_type: "lab_panel".into(),
            resource_id: id.to_string(),
            patient_key: Some(record.patient_key.clone()),
            outcome: "ok".into(),
            detail: format!("released; key {}", signed.signature.key_id),
        };
        if !self.catalog.release_lab_panel(&signoff, &audit).await? {
            return Err(AppError::conflict(
                "lab_released",
                "the panel was signed off or superseded meanwhile",
            ));
        }
        Ok(signed)
    }

    /// The signed sign-off of a released panel, as `yilian verify` reads it: for the panel's site, its
    /// review pool, and (published results) clinicians and readers. Audited (`lab.read`).
    pub async fn lab_signoff(
        &self,
        who: &Principal,
        id: &LabPanelId,
    ) -> Result<SignedDocument, AppError> {
        let record = self
            .catalog
            .lab_panel(id)
            .await?
            .ok_or(AppError::NotFound("lab sign-off"))?;
        let visible = match who.role {
            Role::Clinician | Role::Reader => true,
            Role::SiteTech => record.site == who.site,
            Role::Admin | Role::Auditor => false,
        };
        let signoff = match self.catalog.lab_signoff(id).await? {
            Some(s) if visible => s,
            _ => return Err(AppError::NotFound("lab sign-off")),
        };
        let report: serde_json::Value = serde_json::from_str(&signoff.document)
            .map_err(|e| PortError::Corrupt(format!("lab sign-off of {id}: {e}")))?;
        self.audit(
            who,
            "lab.read",
            "lab_panel",
            id.as_str(),
            Some(&record.patient_key),
            "ok",
            "sign-off",
        )
        .await?;
        Ok(SignedDocument {
            report,
            signature: SignatureBlock {
                algorithm: signoff.algorithm,
                key_id: signoff.key_id,
                value: signoff.signature,
            },
            countersignature: signoff
                .countersignature
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok()),
        })
    }

    /// Whether a case is the caller's to see and act on: its sites' clinicians and techs, the
    /// readers of its review pool.
    fn case_in_scope(&self, who: &Principal, c: &CriticalCaseRecord) -> bool {
        match who.role {
            Role::Clinician | Role::SiteTech => c.notify_site == who.site || c.site == who.site,
            Role::Reader => c
                .review_pool
                .as_ref()
                .is_some_and(|p| who.pools.contains(p)),
            Role::Admin | Role::Auditor => false,
        }
    }

    /// One case with its panel (patient identity included: the people told must know whom it is
    /// about). Audited (`lab.critical.view`).
    pub async fn critical_case(
        &self,
        who: &Principal,
        case_id: &str,
    ) -> Result<(CriticalCaseRecord, LabPanelRecord), AppError> {
        require(who, Action::AckCritical)?;
        let case = self
            .catalog
            .critical_case(case_id)
            .await?
            .filter(|c| self.case_in_scope(who, c))
            .ok_or(AppError::NotFound("critical-value case"))?;
        let panel = self
            .catalog
            .lab_panel(&case.panel_id)
            .await?
            .ok_or(AppError::NotFound("critical-value case"))?;
        self.audit(
            who,
            "lab.critical.view",
            "critical_case",
            case_id,
            Some(&case.patient_key),
            "ok",
            "",
        )
        .await?;
        Ok((case, panel))
    }

    /// Records who took a critical value: a named person who read the value back. The caller is one
    /// of the people told (the ordering site's clinician or nurse, or a lab physician recording a
    /// phone call). A read-back that does not repeat the value is refused. Audited.
    pub async fn acknowledge_critical(
        &self,
        who: &Principal,
        case_id: &str,
        input: AckInput,
    ) -> Result<CriticalCaseRecord, AppError> {
        require(who, Action::AckCritical)?;
        let case = self
            .catalog
            .critical_case(case_id)
            .await?
            .filter(|c| self.case_in_scope(who, c))
            .ok_or(AppError::NotFound("critical-value case"))?;
        if let Some(ack) = &case.ack {
            return Err(AppError::conflict(
                "critical_acknowledged",
                format!(
                    "already acknowledged by {} at {}",
                    ack.name,
                    format_time(ack.at.0)
                ),
            ));
        }
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AppError::Invalid(
                "name: the person who received the value (1-100 characters)".into(),
            ));
        }
        let read_back = input.read_back.trim();
        if read_back.chars().count() > 200 {
            return Err(AppError::Invalid(
                "read_back: at most 200 characters".into(),
            ));
        }
        if !read_back_matches(&case.value_text, read_back) {
            return Err(AppError::Invalid(format!(
                "read_back {read_back:?} does not repeat the reported value {} {}: read it back again",
                case.value_text, case.unit
            )));
        }
        let now = self.now();
        let ack = CriticalAck {
            at: now,
            by: who.username.clone(),
            name: name.to_string(),
            role: input
                .role
                .map(|r| r.trim().chars().take(100).collect::<String>())
                .filter(|r| !r.is_empty()),
            read_back: read_back.to_string(),
        };
        let minutes = (now.0 - case.opened_at.0) / 60_000;
        let audit = AuditEvent {
            at: now,
            actor: who.username.to_string(),
            action: "lab.critical.ack".into(),
            resource_type: "critical_case".into(),
            resource_id: case_id.to_string(),
            patient_key: Some(case.patient_key.clone()),
            outcome: "ok".into(),
            detail: format!(
                "received by {name}{} after {minutes} min; read back",
                ack.role
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        };
        if !self
            .catalog
            .acknowledge_critical(case_id, &ack, &audit)
            .await?
        {
            return Err(AppError::conflict(
                "critical_acknowledged",
                "acknowledged by someone else meanwhile",
            ));
        }
        self.catalog
            .critical_case(case_id)
            .await?
            .ok_or(AppError::NotFound("critical-value case"))
    }

    /// The critical-value register (newest first): every case of the caller's scope opened in the
    /// window. Clinicians and techs see their site's, readers their review pools', admins all (the
    /// register names no patient, only the alliance key). Audited (`lab.critical.register`).
    pub async fn critical_register(
        &self,
        who: &Principal,
        from: Option<UnixMillis>,
        to: Option<UnixMillis>,
        only_open: bool,
    ) -> Result<Vec<CriticalCaseRecord>, AppError> {
        require(who, Action::ViewCriticalRegister)?;
        let mut filter = CriticalFilter {
            sites: Vec::new(),
            from,
            to,
            only_open,
            limit: MAX_REGISTER,
        };
        let mut pools = Vec::new();
        match who.role {
            Role::Clinician | Role::SiteTech => filter.sites.push(who.site.clone()),
            Role::Reader => pools = self.lab_pools_of(who),
            Role::Admin => {}
            // Not allowed the register (refused above); the narrowest scope should it ever be.
            Role::Auditor => filter.sites.push(who.site.clone()),
        }
        let mut cases = if who.role == Role::Reader && pools.is_empty() {
            Vec::new()
        } else {
            self.catalog.critical_cases(&filter).await?
        };
        if who.role == Role::Reader {
            cases.retain(|c| c.review_pool.as_ref().is_some_and(|p| pools.contains(p)));
        }
        self.audit(
            who,
            "lab.critical.register",
            "critical_register",
            "",
            None,
            "ok",
            format!("{} cases", cases.len()),
        )
        .await?;
        Ok(cases)
    }

    /// The escalation sweep: every unacknowledged case past its due time escalates once (state
    /// `escalated`, a stat notification to the site, the review pool and `critical_escalate_to`),
    /// and is due again after another `critical_ack_minutes` until `critical_max_escalations`.
    pub async fn escalate_critical_cases(&self) -> Result<Vec<String>, PortError> {
        let now = self.now();
        let lab = &self.config.lab;
        let mut done = Vec::new();
        for c in self
            .catalog
            .critical_cases_due(now, ESCALATIONS_PER_SWEEP)
            .await?
        {
            if c.state == CriticalState::Acknowledged {
                continue;
            }
            let level = c.escalations + 1;
            let next = (level < lab.critical_max_escalations)
                .then(|| UnixMillis(now.0.saturating_add(lab.critical_ack_minutes * 60_000)));
            let waited = (now.0 - c.opened_at.0) / 60_000;
            let message = format!(
                "危急值未确认 critical value not acknowledged after {waited} minutes (escalation {level}): {} — case {}",
                c.explanation, c.case_id
            );
            let n = self.critical_notification(
                "lab.critical.escalated",
                &c.case_id,
                c.review_pool.as_ref(),
                &c.notify_site,
                next.unwrap_or(now),
                message,
                true,
            )?;
            if self
                .catalog
                .escalate_critical(&c.case_id, c.escalations, now, next, &n)
                .await?
            {
                tracing::warn!(case = %c.case_id, level, "critical value escalated");
                done.push(c.case_id);
            }
        }
        Ok(done)
    }
}

/// The signed lab report document (schema `yilian.lab-report/1`).
fn lab_report_document(
    alliance: &str,
    r: &LabPanelRecord,
    cases: &[CriticalCaseRecord],
    comment: &str,
    who: &Principal,
    key_id: &str,
    now: UnixMillis,
) -> serde_json::Value {
    let p = &r.panel;
    let results: Vec<serde_json::Value> = p
        .results
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let value = match x.quantity() {
                Some(q) => json!({
                    "decimal": q.decimal,
                    "comparator": q.comparator.map(|c| c.as_str()),
                    "unit": q.unit_code(),
                }),
                None => match &x.value {
                    yilian_domain::lab::LabValue::Coded(c) => {
                        json!({ "code": c.code, "system": c.system, "display": c.display })
                    }
                    yilian_domain::lab::LabValue::Text(t) => json!({ "text": t }),
                    _ => json!(null),
                },
            };
            json!({
                "seq": i + 1,
                "code": x.code.code,
                "display": x.code.display,
                "loinc": x.loinc,
                "value": value,
                "reference_range": x.reference_range.as_ref().map(|rr| json!({
                    "low": rr.low.map(|v| v.to_string()),
                    "high": rr.high.map(|v| v.to_string()),
                    "text": rr.text,
                })),
                "flags": x.abnormal_flags.iter().map(|f| f.code()).collect::<Vec<_>>(),
                "status": x.status.as_str(),
            })
        })
        .collect();
    json!({
        "schema": LAB_REPORT_SCHEMA,
        "alliance": alliance,
        "panel": {
            "panel_id": r.panel_id.as_str(),
            "site_id": r.site.as_str(),
            "sending_facility": r.sending_facility,
            "performing_lab": p.performing_lab,
            "control_id": r.control_id,
            "message_sha256": r.raw_sha256,
            "placer_order": p.placer_order_number,
            "filler_order": p.filler_order_number,
            "service": { "code": p.service.code, "display": p.service.display, "loinc": r.service_loinc },
            "status": p.status.as_str(),
            "collected_at": p.collected_at.map(|t| t.to_hl7()),
            "reported_at": p.reported_at.map(|t| t.to_hl7()),
            "supersedes": r.supersedes.as_ref().map(|s| s.as_str().to_string()),
        },
        "patient": { "patient_key": r.patient_key.0 },
        "results": results,
        "critical_values": cases.iter().map(|c| json!({
            "case_id": c.case_id,
            "result_seq": c.result_seq,
            "explanation": c.explanation,
            "acknowledged": c.ack.is_some(),
        })).collect::<Vec<_>>(),
        "comment": comment.trim(),
        "signer": {
            "username": who.username.as_str(),
            "name": who.name,
            "site_id": who.site.as_str(),
            "key_id": key_id,
        },
        "signed_at": format_time(now.0),
    })
}

#[cfg(test)]
mod tests {
    use super::read_back_matches;

    #[test]
    fn a_read_back_must_repeat_the_value() {
        assert!(read_back_matches("6.8", "血钾6.8"));
        assert!(read_back_matches("6.8", "potassium 6.80 mmol/L"));
        assert!(read_back_matches("<0.5", "below 0.5"));
        assert!(read_back_matches("2.0", "2"));
        assert!(!read_back_matches("6.8", "6.3"));
        assert!(!read_back_matches("6.8", "68"));
        assert!(!read_back_matches("6.8", ""));
        assert!(read_back_matches("POSITIVE", "blood culture positive"));
        assert!(!read_back_matches("POSITIVE", "negative"));
    }
}
