//! The receiving clinician's recognition decision (互认决定): accepted, or declined with one of the
//! standard reasons of the national measures, and the rates an alliance reports from those decisions
//! (recognition rate, exams avoided) per item, performing site and month. Pure: the rows and the
//! alliance's UTC offset are arguments.
//!
//! The reason codes are a public contract (ARCHITECTURE.md): clients send them and rate reports name
//! them, so a code is never renamed; new ones may be added.

use std::collections::BTreeMap;

use yilian_domain::UnixMillis;

use crate::calendar::LocalTime;

/// The longest free text a decision keeps (characters).
pub const MAX_DECISION_TEXT: usize = 500;

/// Why a receiving physician did not reuse a result (医疗机构检查检验结果互认管理办法).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeclineReason {
    /// The patient's condition changed since the result.
    ConditionChanged,
    /// The result does not fit the clinical picture.
    InconsistentWithClinicalPicture,
    /// The value changes fast (potassium, platelets, troponin…).
    FastChanging,
    /// A major decision rests on it (surgery, transfusion…).
    MajorDecision,
    /// An emergency (急诊、急救).
    Emergency,
    /// A forensic or disability assessment needs its own result.
    ForensicAssessment,
    /// The performing lab failed external quality assessment.
    LabFailedEqa,
    /// The result is too old for this purpose.
    TooOld,
    /// Anything else, said in the decision's text.
    Other,
}

impl DeclineReason {
    pub const ALL: [DeclineReason; 9] = [
        DeclineReason::ConditionChanged,
        DeclineReason::InconsistentWithClinicalPicture,
        DeclineReason::FastChanging,
        DeclineReason::MajorDecision,
        DeclineReason::Emergency,
        DeclineReason::ForensicAssessment,
        DeclineReason::LabFailedEqa,
        DeclineReason::TooOld,
        DeclineReason::Other,
    ];

    /// The stable code clients send and reports name.
    pub fn code(self) -> &'static str {
        match self {
            DeclineReason::ConditionChanged => "condition_changed",
            DeclineReason::InconsistentWithClinicalPicture => "inconsistent_with_clinical_picture",
            DeclineReason::FastChanging => "fast_changing",
            DeclineReason::MajorDecision => "major_decision",
            DeclineReason::Emergency => "emergency",
            DeclineReason::ForensicAssessment => "forensic_assessment",
            DeclineReason::LabFailedEqa => "lab_failed_eqa",
            DeclineReason::TooOld => "too_old",
            DeclineReason::Other => "other",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        let code = code.trim();
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The label a Chinese user interface shows.
    pub fn label_zh(self) -> &'static str {
        match self {
            DeclineReason::ConditionChanged => "病情发生变化",
            DeclineReason::InconsistentWithClinicalPicture => "结果与临床表现不符",
            DeclineReason::FastChanging => "检查检验指标变化快",
            DeclineReason::MajorDecision => "涉及重大医疗决策（手术、输血等）",
            DeclineReason::Emergency => "急诊、急救",
            DeclineReason::ForensicAssessment => "司法鉴定、伤残评定",
            DeclineReason::LabFailedEqa => "检验机构室间质评不合格",
            DeclineReason::TooOld => "结果超出有效期",
            DeclineReason::Other => "其他",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            DeclineReason::ConditionChanged => "the patient's condition changed",
            DeclineReason::InconsistentWithClinicalPicture => {
                "inconsistent with the clinical picture"
            }
            DeclineReason::FastChanging => "fast-changing values",
            DeclineReason::MajorDecision => "a major decision (surgery, transfusion)",
            DeclineReason::Emergency => "emergency",
            DeclineReason::ForensicAssessment => "forensic or disability assessment",
            DeclineReason::LabFailedEqa => "the performing lab failed EQA",
            DeclineReason::TooOld => "the result is too old",
            DeclineReason::Other => "other",
        }
    }
}

/// What the clinician decided about one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accepted,
    Declined(DeclineReason),
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accepted => "accepted",
            Decision::Declined(_) => "declined",
        }
    }

    pub fn reason(self) -> Option<DeclineReason> {
        match self {
            Decision::Accepted => None,
            Decision::Declined(r) => Some(r),
        }
    }
}

/// Why a decision as sent cannot be recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("decision must be \"accepted\" or \"declined\", not {0:?}")]
    UnknownDecision(String),
    #[error("a declined result needs a reason: one of {}", codes())]
    MissingReason,
    #[error("unknown reason {0:?}: one of {codes}", codes = codes())]
    UnknownReason(String),
    #[error("an accepted result takes no reason")]
    ReasonOnAccept,
    #[error("reason \"other\" needs a text saying why")]
    MissingText,
    #[error("text is longer than {MAX_DECISION_TEXT} characters")]
    TextTooLong,
}

fn codes() -> String {
    DeclineReason::ALL
        .iter()
        .map(|r| r.code())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A decision as the clinician sent it, checked: `decision` is `accepted` or `declined`; a decline
/// names a known reason; `other` says why in `text`; `text` (optional otherwise) is at most
/// [`MAX_DECISION_TEXT`] characters and kept trimmed (`None` when empty).
pub fn parse_decision(
    decision: &str,
    reason: Option<&str>,
    text: Option<&str>,
) -> Result<(Decision, Option<String>), DecisionError> {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    if text.is_some_and(|t| t.chars().count() > MAX_DECISION_TEXT) {
        return Err(DecisionError::TextTooLong);
    }
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    let d = match decision.trim() {
        "accepted" => {
            if reason.is_some() {
                return Err(DecisionError::ReasonOnAccept);
            }
            Decision::Accepted
        }
        "declined" => {
            let code = reason.ok_or(DecisionError::MissingReason)?;
            let r = DeclineReason::parse(code)
                .ok_or_else(|| DecisionError::UnknownReason(code.to_string()))?;
            if r == DeclineReason::Other && text.is_none() {
                return Err(DecisionError::MissingText);
            }
            Decision::Declined(r)
        }
        other => return Err(DecisionError::UnknownDecision(other.to_string())),
    };
    Ok((d, text.map(str::to_string)))
}

/// The local month (`YYYY-MM`) of an instant in the alliance's time.
pub fn local_month(at: UnixMillis, utc_offset_minutes: i32) -> String {
    let d = LocalTime::at(at, utc_offset_minutes).date;
    format!("{:04}-{:02}", d.year, d.month)
}

/// One stored decision as the rates need it (no patient, no people).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionFact {
    /// Modality (`CT`, `ECG`…) or lab code (LOINC, else the lab's code).
    pub item: String,
    pub performing_site: String,
    pub decision: Decision,
    /// Whether the result was shown recognised (HR) when the decision was taken.
    pub recognised: bool,
    pub decided_at: UnixMillis,
}

/// The decisions on one item from one performing site in one local month.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecognitionRate {
    pub item: String,
    pub performing_site: String,
    /// `YYYY-MM`, alliance time.
    pub month: String,
    pub decisions: u64,
    /// Decisions on results shown recognised (HR).
    pub recognised_shown: u64,
    pub accepted: u64,
    /// Accepted results that were recognised: each one an exam or test not repeated.
    pub exams_avoided: u64,
    /// Accepted although not recognised (the clinician's call, recorded as such).
    pub accepted_unrecognised: u64,
    pub declined: u64,
    /// Declines by reason (every reason present, 0 when none).
    pub declined_by_reason: BTreeMap<&'static str, u64>,
    /// `exams_avoided / recognised_shown`: the share of recognised results the receiving physicians
    /// reused. `None` when no recognised result was decided on.
    pub recognition_rate: Option<f64>,
}

/// Groups decisions by item, performing site and local month (sorted by those), counting each.
pub fn recognition_rates(facts: &[DecisionFact], utc_offset_minutes: i32) -> Vec<RecognitionRate> {
    let mut groups: BTreeMap<(String, String, String), RecognitionRate> = BTreeMap::new();
    for f in facts {
        let month = local_month(f.decided_at, utc_offset_minutes);
        let g = groups
            .entry((f.item.clone(), f.performing_site.clone(), month.clone()))
            .or_insert_with(|| RecognitionRate {
                item: f.item.clone(),
                performing_site: f.performing_site.clone(),
                month,
                declined_by_reason: DeclineReason::ALL.iter().map(|r| (r.code(), 0)).collect(),
                ..RecognitionRate::default()
            });
        g.decisions += 1;
        g.recognised_shown += u64::from(f.recognised);
        match f.decision {
            Decision::Accepted => {
                g.accepted += 1;
                if f.recognised {
                    g.exams_avoided += 1;
                } else {
                    g.accepted_unrecognised += 1;
                }
            }
            Decision::Declined(r) => {
                g.declined += 1;
                *g.declined_by_reason.entry(r.code()).or_insert(0) += 1;
            }
        }
    }
    groups
        .into_values()
        .map(|mut g| {
            g.recognition_rate = (g.recognised_shown > 0)
                .then(|| g.exams_avoided as f64 / g.recognised_shown as f64);
            g
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_checked_as_sent() {
        assert_eq!(
            parse_decision("accepted", None, Some("  ")),
            Ok((Decision::Accepted, None))
        );
        assert_eq!(
            parse_decision("declined", Some("too_old"), None),
            Ok((Decision::Declined(DeclineReason::TooOld), None))
        );
        assert_eq!(
            parse_decision("declined", Some("other"), Some(" 患者要求复查 ")),
            Ok((
                Decision::Declined(DeclineReason::Other),
                Some("患者要求复查".into())
            ))
        );
        assert_eq!(
            parse_decision("declined", None, None),
            Err(DecisionError::MissingReason)
        );
        assert_eq!(
            parse_decision("declined", Some("bored"), None),
            Err(DecisionError::UnknownReason("bored".into()))
        );
        assert_eq!(
            parse_decision("declined", Some("other"), None),
            Err(DecisionError::MissingText)
        );
        assert_eq!(
            parse_decision("accepted", Some("too_old"), None),
            Err(DecisionError::ReasonOnAccept)
        );
        assert_eq!(
            parse_decision("maybe", None, None),
            Err(DecisionError::UnknownDecision("maybe".into()))
        );
        let long = "字".repeat(MAX_DECISION_TEXT + 1);
        assert_eq!(
            parse_decision("accepted", None, Some(&long)),
            Err(DecisionError::TextTooLong)
        );
        // Every code reads back, and every reason has both labels.
        for r in DeclineReason::ALL {
            assert_eq!(DeclineReason::parse(r.code()), Some(r));
            assert!(!r.label_zh().is_empty() && !r.label_en().is_empty());
        }
        assert!(
            DecisionError::MissingReason
                .to_string()
                .contains("lab_failed_eqa")
        );
    }

    #[test]
    fn months_are_the_alliances() {
        // 2026-03-31T16:30Z is 2026-04-01 00:30 in Beijing.
        let t = UnixMillis(1_774_974_600_000);
        assert_eq!(local_month(t, 0), "2026-03");
        assert_eq!(local_month(t, 480), "2026-04");
    }

    #[test]
    fn rates_count_per_item_site_and_month() {
        let march = UnixMillis(1_772_323_200_000 + 86_400_000); // 2026-03-02
        let april = UnixMillis(1_775_001_600_000 + 86_400_000); // 2026-04-02
        let fact = |item: &str, decision, recognised, at| DecisionFact {
            item: item.into(),
            performing_site: "tw-hongxing".into(),
            decision,
            recognised,
            decided_at: at,
        };
        let rows = [
            fact("CT", Decision::Accepted, true, march),
            fact("CT", Decision::Accepted, true, march),
            fact(
                "CT",
                Decision::Declined(DeclineReason::ConditionChanged),
                true,
                march,
            ),
            fact("CT", Decision::Accepted, false, march),
            fact(
                "CT",
                Decision::Declined(DeclineReason::TooOld),
                false,
                march,
            ),
            fact("CT", Decision::Accepted, true, april),
            fact(
                "2823-3",
                Decision::Declined(DeclineReason::FastChanging),
                false,
                march,
            ),
        ];
        let rates = recognition_rates(&rows, 480);
        assert_eq!(rates.len(), 3);
        let (k, ct_march, ct_april) = (&rates[0], &rates[1], &rates[2]);
        assert_eq!((k.item.as_str(), k.month.as_str()), ("2823-3", "2026-03"));
        assert_eq!(
            k.recognition_rate, None,
            "nothing recognised was decided on"
        );
        assert_eq!(k.declined_by_reason["fast_changing"], 1);
        assert_eq!(
            (ct_march.item.as_str(), ct_march.month.as_str()),
            ("CT", "2026-03")
        );
        assert_eq!(ct_march.decisions, 5);
        assert_eq!(ct_march.recognised_shown, 3);
        assert_eq!(ct_march.accepted, 3);
        assert_eq!(ct_march.exams_avoided, 2);
        assert_eq!(ct_march.accepted_unrecognised, 1);
        assert_eq!(ct_march.declined, 2);
        assert_eq!(ct_march.declined_by_reason["condition_changed"], 1);
        assert_eq!(ct_march.declined_by_reason["too_old"], 1);
        assert_eq!(ct_march.declined_by_reason["emergency"], 0);
        assert_eq!(ct_march.recognition_rate, Some(2.0 / 3.0));
        assert_eq!(ct_april.month, "2026-04");
        assert_eq!(ct_april.recognition_rate, Some(1.0));
    }
}
