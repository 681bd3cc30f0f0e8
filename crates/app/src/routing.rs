//! Routing: a complete study becomes one exam on a pool's worklist, as the policy decides.

use yilian_domain::{ExamId, StudyInstanceUid};
use yilian_policy::{RoutingFacts, route};

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
        let facts = RoutingFacts {
            site: study.site.clone(),
            modalities: modalities.clone(),
            urgent: study.urgent,
        };
        let now = self.now();
        match route(&facts, &self.config.routing.rules(), now) {
            Ok(decision) => {
                let exam_id = ExamId::new(ulid::Ulid::new().to_string())
                    .map_err(|e| PortError::Corrupt(e.to_string()))?;
                let exam = NewExam {
                    exam_id: exam_id.clone(),
                    study_uid: study_uid.clone(),
                    site: study.site.clone(),
                    patient_key: study.patient_key.clone(),
                    modality: modalities.first().cloned().unwrap_or_else(|| "OT".into()),
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
}
