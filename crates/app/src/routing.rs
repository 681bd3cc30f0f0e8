//! Routing: a complete study becomes one exam on a pool's worklist, as the policy decides.

use yilian_domain::{ExamId, ExamKind, ExamState, Priority, StudyInstanceUid};
use yilian_policy::{EscalationFacts, RoutingFacts, escalate, route};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{NewExam, PortError, StudyState};

/// What happened to a study that was offered for routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOutcome {
    Routed {
        exam_id: ExamId,
        explanation: String,
    },
    AlreadyRouted {
        exam_id: ExamId,
    },
    Unroutable {
        reason: String,
    },
    NotReady,
}

impl Hub {
    /// The uploader says the study is complete (optionally urgent, with a reason). Routes it now.
    pub async fn complete_study(
        &self,
        who: &Principal,
        study_uid: &StudyInstanceUid,
        urgent: bool,
        urgent_reason: Option<&str>,
    ) -> Result<RouteOutcome, AppError> {
        require(who, Action::CompleteStudy)?;
        let study = self
            .catalog
            .study(study_uid)
            .await?
            .filter(|s| s.site == who.site)
            .ok_or(AppError::NotFound("study"))?;
        if urgent && urgent_reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(AppError::Invalid(
                "an urgent study needs urgent_reason".into(),
            ));
        }
        if study.state == StudyState::Receiving {
            self.catalog
                .mark_study_complete(study_uid, urgent, urgent_reason)
                .await?;
        }
        // An ECG is routed as soon as it arrives, so the site's "chest pain" flag often comes after
        // routing: it raises the queued exam instead.
        if urgent && let Some(exam) = self.catalog.exam_of_study(study_uid).await? {
            self.raise_urgent(&exam, urgent_reason.unwrap_or_default())
                .await?;
        }
        self.audit(
            who,
            "study.complete",
            "study",
            study_uid.as_str(),
            Some(&study.patient_key),
            "ok",
            if urgent { "urgent" } else { "" },
        )
        .await?;
        Ok(self.route_study(study_uid).await?)
    }

    /// Routes every study that is complete or has been quiet for the configured period.
    pub async fn route_due_studies(
        &self,
    ) -> Result<Vec<(StudyInstanceUid, RouteOutcome)>, PortError> {
        let quiet_before = self.now().plus_secs(-self.config.routing.quiet_period_secs);
        let mut out = Vec::new();
        for uid in self.catalog.studies_to_route(quiet_before, 100).await? {
            let outcome = self.route_study(&uid).await?;
            out.push((uid, outcome));
        }
        Ok(out)
    }

    /// Applies the routing policy to one study and carries the decision out. Idempotent.
    pub async fn route_study(
        &self,
        study_uid: &StudyInstanceUid,
    ) -> Result<RouteOutcome, PortError> {
        if let Some(exam) = self.catalog.exam_of_study(study_uid).await? {
            return Ok(RouteOutcome::AlreadyRouted {
                exam_id: exam.exam_id,
            });
        }
        let Some(study) = self.catalog.study(study_uid).await? else {
            return Ok(RouteOutcome::NotReady);
        };
        let modalities: Vec<String> = self
            .catalog
            .study_series(study_uid)
            .await?
            .into_iter()
            .filter_map(|s| s.modality)
            .collect();
        let alerts = self.ecg_alerts_of_study(study_uid).await?;
        let facts = RoutingFacts {
            site: study.site.clone(),
            modalities: modalities.clone(),
            urgent: study.urgent,
            alerts: alerts.clone(),
        };
        let now = self.now();
        match route(&facts, &self.config.routing.rules(), now) {
            Ok(decision) => {
                let exam_id = ExamId::new(ulid::Ulid::new().to_string())
                    .map_err(|e| PortError::Corrupt(e.to_string()))?;
                let modality = modalities.first().cloned().unwrap_or_else(|| "OT".into());
                let notification = (decision.priority != Priority::Routine).then(|| {
                    self.notification(
                        "exam.urgent",
                        &exam_id,
                        &decision.pool,
                        decision.priority,
                        decision.due_at,
                        decision.explanation.clone(),
                    )
                });
                let exam = NewExam {
                    notification,
                    kind: ExamKind::of_modality(&modality),
                    alerts: (!alerts.is_empty())
                        .then(|| serde_json::Value::from(alerts.clone()).to_string()),
                    exam_id: exam_id.clone(),
                    study_uid: study_uid.clone(),
                    site: study.site.clone(),
                    patient_key: study.patient_key.clone(),
                    modality,
                    pool: decision.pool,
                    priority: decision.priority,
                    due_at: decision.due_at,
                    route_rule: decision.rule,
                    route_reason: decision.explanation.clone(),
                    created_at: now,
                };
                if self.catalog.create_exam(&exam).await? {
                    tracing::info!(exam_id = %exam_id, study = %study_uid, "routed: {}", decision.explanation);
                    Ok(RouteOutcome::Routed {
                        exam_id,
                        explanation: decision.explanation,
                    })
                } else {
                    let existing = self
                        .catalog
                        .exam_of_study(study_uid)
                        .await?
                        .ok_or_else(|| PortError::Corrupt("exam vanished".into()))?;
                    Ok(RouteOutcome::AlreadyRouted {
                        exam_id: existing.exam_id,
                    })
                }
            }
            Err(e) => {
                tracing::warn!(study = %study_uid, "not routed: {e}");
                self.catalog.mark_study_unroutable(study_uid).await?;
                Ok(RouteOutcome::Unroutable {
                    reason: e.to_string(),
                })
            }
        }
    }

    /// A queued exam the uploader flags urgent after routing: re-planned by the same policy with the
    /// urgent flag, kept only when that is more urgent than what it has.
    async fn raise_urgent(
        &self,
        exam: &crate::ports::ExamRecord,
        reason: &str,
    ) -> Result<(), PortError> {
        if exam.state != ExamState::Queued {
            return Ok(());
        }
        let facts = RoutingFacts {
            site: exam.site.clone(),
            modalities: vec![exam.modality.clone()],
            urgent: true,
            alerts: vec![],
        };
        let now = self.now();
        let Ok(d) = route(&facts, &self.config.routing.rules(), now) else {
            return Ok(());
        };
        let priority = if d.priority.rank() < exam.priority.rank() {
            d.priority
        } else {
            exam.priority
        };
        let due_at = d.due_at.min(exam.due_at);
        if priority == exam.priority && due_at == exam.due_at {
            return Ok(());
        }
        let note = format!(
            "; flagged urgent by the site after routing ({}): {} priority, due in {} min",
            reason.trim(),
            priority.as_str(),
            (due_at.0 - now.0).max(0) / 60_000
        );
        let notification = self.notification(
            "exam.urgent",
            &exam.exam_id,
            &exam.pool,
            priority,
            due_at,
            format!("flagged urgent by the site: {}", reason.trim()),
        );
        self.catalog
            .raise_exam(&exam.exam_id, priority, due_at, &note, &notification)
            .await?;
        Ok(())
    }

    /// The escalation sweep: every overdue, unclaimed exam goes up once, as the policy decides.
    pub async fn escalate_overdue(&self) -> Result<Vec<(ExamId, String)>, PortError> {
        let now = self.now();
        let rules = self.config.routing.rules();
        let mut out = Vec::new();
        for exam in self.catalog.overdue_exams(now, 100).await? {
            let facts = EscalationFacts {
                rule: exam.route_rule.clone(),
                pool: exam.pool.clone(),
                priority: exam.priority,
                due_at: exam.due_at,
                claimed: exam.claimed_by.is_some() && exam.lease_until.is_some_and(|t| t > now),
                already_escalated: exam.escalated_at.is_some(),
            };
            let Some(e) = escalate(&facts, &rules, now) else {
                continue;
            };
            let notification = self.notification(
                "exam.escalated",
                &exam.exam_id,
                e.to_pool.as_ref().unwrap_or(&exam.pool),
                e.priority,
                exam.due_at,
                e.explanation.clone(),
            );
            if self
                .catalog
                .escalate_exam(
                    &exam.exam_id,
                    e.priority,
                    e.to_pool.as_ref(),
                    &e.explanation,
                    now,
                    &notification,
                )
                .await?
            {
                tracing::warn!(exam_id = %exam.exam_id, "escalated: {}", e.explanation);
                self.catalog
                    .audit(&crate::ports::AuditEvent {
                        at: now,
                        actor: "system".into(),
                        action: "exam.escalate".into(),
                        resource_type: "exam".into(),
                        resource_id: exam.exam_id.to_string(),
                        patient_key: Some(exam.patient_key.clone()),
                        outcome: "ok".into(),
                        detail: e.explanation.clone(),
                    })
                    .await?;
                out.push((exam.exam_id.clone(), e.explanation));
            }
        }
        Ok(out)
    }
}
