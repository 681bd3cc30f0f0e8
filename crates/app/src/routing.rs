//! Routing: a complete study becomes one exam on a pool's worklist, as the policy decides; overdue
//! exams escalate; an admin reloads the rules without a restart.

use yilian_domain::{ExamId, ExamKind, ExamState, Priority, StudyInstanceUid};
use yilian_policy::{EscalationFacts, ExamNeeds, RoutingFacts, escalate, next_step_due, route};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{NewExam, PortError, StudyRecord, StudyState};

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
        let alerts = self.ecg_alerts_of_study(study_uid).await?;
        let facts = RoutingFacts {
            urgent: study.urgent,
            alerts: alerts.clone(),
            ..self.routing_facts(&study, None).await?
        };
        let modalities = facts.modalities.clone();
        let now = self.now();
        match route(&facts, &self.routing().rules(), now) {
            Ok(decision) => {
                let exam_id = ExamId::new(ulid::Ulid::new().to_string())
                    .map_err(|e| PortError::Corrupt(e.to_string()))?;
                let modality = modalities.first().cloned().unwrap_or_else(|| "OT".into());
                let needs = ExamNeeds {
                    modality: modality.clone(),
                    subspecialty: decision.subspecialty.clone(),
                    senior: false,
                };
                let notification = (decision.priority != Priority::Routine).then(|| {
                    self.notification(
                        "exam.urgent",
                        &exam_id,
                        &decision.pool,
                        decision.priority,
                        decision.due_at,
                        &needs,
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
                    review: decision.review,
                    subspecialty: decision.subspecialty.clone(),
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
        // The same facts as at routing, now urgent; only priority and due time are taken from the
        // new plan (the exam stays on its pool).
        let Some(study) = self.catalog.study(&exam.study_uid).await? else {
            return Ok(());
        };
        let facts = RoutingFacts {
            urgent: true,
            ..self
                .routing_facts(&study, Some(vec![exam.modality.clone()]))
                .await?
        };
        let now = self.now();
        let Ok(d) = route(&facts, &self.routing().rules(), now) else {
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
            &exam.needs(),
            format!("flagged urgent by the site: {}", reason.trim()),
        );
        self.catalog
            .raise_exam(&exam.exam_id, priority, due_at, &note, &notification)
            .await?;
        Ok(())
    }

    /// What the catalog knows about a study that rules match on: modalities (from its series, unless
    /// given), body parts, description, the patient's birth date, the alliance's UTC offset. Not
    /// urgent, no alerts: the caller adds those.
    async fn routing_facts(
        &self,
        study: &StudyRecord,
        modalities: Option<Vec<String>>,
    ) -> Result<RoutingFacts, PortError> {
        let series = self.catalog.study_series(&study.study_uid).await?;
        let modalities = modalities
            .unwrap_or_else(|| series.iter().filter_map(|s| s.modality.clone()).collect());
        Ok(RoutingFacts {
            body_parts: series.iter().filter_map(|s| s.body_part.clone()).collect(),
            study_description: study.study_description.clone(),
            patient_birth_date: self
                .catalog
                .patient_birth_date(&study.issuer_of_patient_id, &study.patient_id)
                .await?,
            utc_offset_minutes: self.config.alliance.utc_offset_minutes,
            ..RoutingFacts::new(study.site.clone(), modalities)
        })
    }

    /// The escalation sweep: every overdue, unclaimed exam goes up once, as the policy decides.
    pub async fn escalate_overdue(&self) -> Result<Vec<(ExamId, String)>, PortError> {
        let now = self.now();
        let rules = self.routing().rules();
        let mut out = Vec::new();
        for exam in self.catalog.overdue_exams(now, 100).await? {
            let facts = EscalationFacts {
                rule: exam.route_rule.clone(),
                pool: exam.pool.clone(),
                priority: exam.priority,
                due_at: exam.due_at,
                claimed: exam.claimed_by.is_some() && exam.lease_until.is_some_and(|t| t > now),
                already_escalated: exam.escalated_at.is_some(),
                escalated_pool: exam.escalated_pool.clone(),
                escalated_at: exam.escalated_at,
            };
            let Some(e) = escalate(&facts, &rules, now) else {
                // Picked for a second step the rules in force (after a reload) time differently or
                // no longer take: reschedule or drop it, so the exam does not come back every sweep.
                if exam.escalate_next_at.is_some_and(|t| t <= now) {
                    let due = next_step_due(&facts, &rules).filter(|t| *t > now);
                    self.catalog.set_next_escalation(&exam.exam_id, due).await?;
                }
                continue;
            };
            let notification = self.notification(
                "exam.escalated",
                &exam.exam_id,
                e.to_pool.as_ref().unwrap_or(&exam.pool),
                e.priority,
                exam.due_at,
                &exam.needs(),
                e.explanation.clone(),
            );
            let done = match (exam.escalated_at, &e.to_pool) {
                (None, _) => {
                    self.catalog
                        .escalate_exam(
                            &exam.exam_id,
                            e.priority,
                            e.to_pool.as_ref(),
                            &e.explanation,
                            now,
                            e.next_step_at,
                            &notification,
                        )
                        .await?
                }
                (Some(_), Some(to)) => {
                    self.catalog
                        .escalate_exam_further(
                            &exam.exam_id,
                            to,
                            &e.explanation,
                            now,
                            &notification,
                        )
                        .await?
                }
                (Some(_), None) => false,
            };
            if done {
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

    /// Re-reads the routing rules and `[routing.ecg]` from the configuration's file and puts them in
    /// force when they validate (against this hub's sites and pools); otherwise the rules in force
    /// stay. Returns the names of the rules now in force. Logged either way.
    pub fn reload_routing(&self) -> Result<Vec<String>, yilian_config::ConfigError> {
        match self.config.reload_routing() {
            Ok(next) => {
                let names = next.routing.rules().names();
                self.swap_routing(next.routing, next.rota);
                tracing::info!(rules = ?names, "routing rules reloaded");
                Ok(names)
            }
            Err(e) => {
                tracing::error!(error = %e, "routing reload refused; the previous rules stay in force");
                Err(e)
            }
        }
    }

    /// An admin asks for a reload (`POST /api/v1/admin/routing/reload`). Audited with the outcome.
    /// The inner result is the rule names now in force, or why the file was refused.
    pub async fn admin_reload_routing(
        &self,
        who: &Principal,
    ) -> Result<Result<Vec<String>, String>, AppError> {
        require(who, Action::ManageRouting)?;
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || this.reload_routing())
            .await
            .map_err(|e| PortError::Unavailable(format!("reload task: {e}")))?
            .map_err(|e| e.to_string());
        if result.is_ok() {
            self.announce_routing_reload().await?;
        }
        let (outcome, detail) = match &result {
            Ok(names) => ("ok", names.join(",")),
            Err(message) => ("invalid", message.clone()),
        };
        self.audit(
            who,
            "routing.reload",
            "config",
            "routing",
            None,
            outcome,
            detail,
        )
        .await?;
        Ok(result)
    }

    /// The operator sent SIGHUP: reload, audited as `system`, and announced to the other replicas
    /// when it took. Errors are logged by `reload_routing` and recorded; nothing else changes.
    pub async fn reload_routing_on_signal(&self) -> Result<(), PortError> {
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || this.reload_routing())
            .await
            .map_err(|e| PortError::Unavailable(format!("reload task: {e}")))?;
        if result.is_ok() {
            self.announce_routing_reload().await?;
        }
        self.audit_system_reload("SIGHUP", &result).await
    }

    /// A reload nobody signed in asked for (SIGHUP, another replica's signal), audited as `system`.
    pub(crate) async fn audit_system_reload(
        &self,
        why: &str,
        result: &Result<Vec<String>, yilian_config::ConfigError>,
    ) -> Result<(), PortError> {
        let (outcome, detail) = match result {
            Ok(names) => ("ok", names.join(",")),
            Err(e) => ("invalid", e.to_string()),
        };
        self.catalog
            .audit(&crate::ports::AuditEvent {
                at: self.now(),
                actor: "system".into(),
                action: "routing.reload".into(),
                resource_type: "config".into(),
                resource_id: "routing".into(),
                patient_key: None,
                outcome: outcome.into(),
                detail: format!("{why}: {detail}"),
            })
            .await
    }
}
