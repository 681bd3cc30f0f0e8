//! Mutual recognition (检查检验结果互认): whether a published result may be reused by another member
//! hospital. Preconditions from the national measures: QC-qualified, within the item's validity window,
//! signed, not revoked. Recognised results carry the "HR" mark and a scope.

use serde::Deserialize;
use yilian_domain::UnixMillis;

/// Validity per item, configured by the alliance (no national window exists).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecognitionRule {
    /// DICOM Modality code the rule covers.
    pub modality: String,
    /// Days after the exam during which the result may be reused for the same clinical purpose.
    pub validity_days: i64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecognitionRules {
    /// Where recognition holds ("alliance", "city", "province").
    #[serde(default = "alliance")]
    pub scope: String,
    #[serde(default)]
    pub items: Vec<RecognitionRule>,
}

fn alliance() -> String {
    "alliance".into()
}

impl Default for RecognitionRules {
    fn default() -> Self {
        Self {
            scope: alliance(),
            items: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RecognitionFacts {
    pub modality: String,
    /// The performing site passed quality control for this modality.
    pub qc_qualified: bool,
    /// A final report exists with a signature that verifies.
    pub signed: bool,
    pub revoked: bool,
    /// When the exam was performed (falls back to when it was received).
    pub performed_at: UnixMillis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecognitionDecision {
    pub recognised: bool,
    /// "HR" when recognised.
    pub mark: Option<&'static str>,
    pub scope: Option<String>,
    pub valid_until: Option<UnixMillis>,
    /// Every precondition that failed, in words a clinician reads; empty when recognised.
    pub reasons: Vec<String>,
}

pub fn recognise(
    facts: &RecognitionFacts,
    rules: &RecognitionRules,
    now: UnixMillis,
) -> RecognitionDecision {
    let mut reasons = Vec::new();
    if !facts.signed {
        reasons.push("not signed".to_string());
    }
    if facts.revoked {
        reasons.push("revoked".to_string());
    }
    if !facts.qc_qualified {
        reasons.push(format!(
            "performing site is not QC-qualified for {}",
            facts.modality
        ));
    }
    let rule = rules
        .items
        .iter()
        .find(|r| r.modality.eq_ignore_ascii_case(&facts.modality));
    let valid_until = rule.map(|r| facts.performed_at.plus_days(r.validity_days));
    match valid_until {
        None => reasons.push(format!(
            "{} is not an item recognised by this alliance",
            facts.modality
        )),
        Some(until) if until < now => reasons.push("older than its validity window".to_string()),
        Some(_) => {}
    }
    let recognised = reasons.is_empty();
    RecognitionDecision {
        recognised,
        mark: recognised.then_some("HR"),
        scope: recognised.then(|| rules.scope.clone()),
        valid_until,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RecognitionRules {
        RecognitionRules {
            scope: "alliance".into(),
            items: vec![RecognitionRule {
                modality: "CT".into(),
                validity_days: 30,
            }],
        }
    }

    fn facts() -> RecognitionFacts {
        RecognitionFacts {
            modality: "CT".into(),
            qc_qualified: true,
            signed: true,
            revoked: false,
            performed_at: UnixMillis(0),
        }
    }

    #[test]
    fn a_fresh_signed_qualified_result_is_recognised() {
        let d = recognise(&facts(), &rules(), UnixMillis(0).plus_days(10));
        assert!(d.recognised);
        assert_eq!(d.mark, Some("HR"));
        assert_eq!(d.scope.as_deref(), Some("alliance"));
        assert_eq!(d.valid_until, Some(UnixMillis(0).plus_days(30)));
        assert!(d.reasons.is_empty());
    }

    #[test]
    fn every_failed_precondition_is_named() {
        let f = RecognitionFacts {
            qc_qualified: false,
            signed: false,
            revoked: true,
            ..facts()
        };
        let d = recognise(&f, &rules(), UnixMillis(0).plus_days(31));
        assert!(!d.recognised);
        assert_eq!(d.mark, None);
        assert_eq!(
            d.reasons,
            vec![
                "not signed".to_string(),
                "revoked".to_string(),
                "performing site is not QC-qualified for CT".to_string(),
                "older than its validity window".to_string()
            ]
        );
        let d = recognise(
            &RecognitionFacts {
                modality: "XA".into(),
                ..facts()
            },
            &rules(),
            UnixMillis(0),
        );
        assert_eq!(
            d.reasons,
            vec!["XA is not an item recognised by this alliance".to_string()]
        );
    }
}
