//! Mutual recognition (检查检验结果互认): whether a published result may be reused by another member
//! hospital. Preconditions from the national measures: QC-qualified, within the item's validity window,
//! signed, not revoked. Recognised results carry the "HR" mark and a scope.
//!
//! Lab results (`recognise_lab`) are decided per result and per report: the performing lab passed
//! external quality assessment for the analyte in the collection year (`[[lab.qc]]`), the panel was
//! released (signed off or auto-released), no newer report of its order exists, the result is final or
//! corrected, and it is within the validity window of the `LAB` item (`[[recognition.items]]` with
//! `modality = "LAB"`; an item listing `analytes` gives those analytes their own window).

use serde::Deserialize;
use yilian_domain::UnixMillis;
use yilian_domain::lab::{LabPanel, LabResult, LabValue, PanelStatus, ResultStatus};

use crate::lab::{QcRecord, eqa_passed};

/// The item name lab results are configured under in `[[recognition.items]]`.
pub const LAB_ITEM: &str = "LAB";

/// Validity per item, configured by the alliance (no national window exists).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecognitionRule {
    /// DICOM Modality code the rule covers, or `LAB` for lab results.
    pub modality: String,
    /// Days after the exam (for lab results: after specimen collection) during which the result may be
    /// reused for the same clinical purpose.
    pub validity_days: i64,
    /// `LAB` only: the analytes (LOINC or local codes) this window is for; empty: every lab analyte
    /// without a window of its own. A platelet count ages in days, a lipid panel in weeks.
    #[serde(default)]
    pub analytes: Vec<String>,
    /// Imaging only: the Body Part Examined (DICOM CS, e.g. `CHEST`) this window is for; a rule
    /// naming the exam's body part wins over the modality's rule without one. A chest film ages
    /// faster than a skull CT.
    #[serde(default)]
    pub body_part: Option<String>,
    /// Where results of this item are recognised, when narrower or wider than the alliance's
    /// `scope`: `alliance`, `city` or `province`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// The scopes a recognition may have, narrowest first.
pub const SCOPES: [&str; 3] = ["alliance", "city", "province"];

impl RecognitionRule {
    fn scope_or<'a>(&'a self, rules: &'a RecognitionRules) -> &'a str {
        self.scope.as_deref().unwrap_or(&rules.scope)
    }
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
    /// Body Part Examined of the exam's images, when they say.
    pub body_part: Option<String>,
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
    let of_modality = || {
        rules
            .items
            .iter()
            .filter(|r| r.modality.eq_ignore_ascii_case(&facts.modality))
    };
    let same_part = |r: &&RecognitionRule| match (&r.body_part, &facts.body_part) {
        (Some(a), Some(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
        _ => false,
    };
    let rule = of_modality()
        .find(same_part)
        .or_else(|| of_modality().find(|r| r.body_part.is_none()));
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
        scope: rule
            .filter(|_| recognised)
            .map(|r| r.scope_or(rules).to_string()),
        valid_until,
        reasons,
    }
}

/// A newer report of the same lab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewerReport {
    /// Published: it replaces this one.
    Published,
    /// Received but not yet released: this one is in doubt until it is.
    Pending,
}

/// What the hub knows about a stored lab panel beyond the panel itself.
#[derive(Clone, Debug)]
pub struct LabRecognitionFacts {
    /// Signed off by a lab physician or auto-released.
    pub released: bool,
    pub newer_report: Option<NewerReport>,
    /// When the hub received it: the window's start when the lab sent no time at all.
    pub received_at: UnixMillis,
    /// The offset for lab times sent without one (the alliance's).
    pub default_offset_minutes: i16,
}

/// Recognition of one lab result, with the EQA pass it rests on.
#[derive(Clone, Debug, PartialEq)]
pub struct LabResultRecognition {
    pub decision: RecognitionDecision,
    pub eqa: Option<QcRecord>,
}

/// Recognition of a lab panel: the report as a whole and each of its results (same order).
#[derive(Clone, Debug, PartialEq)]
pub struct LabRecognition {
    pub report: RecognitionDecision,
    pub results: Vec<LabResultRecognition>,
}

fn counts(status: ResultStatus) -> bool {
    !matches!(status, ResultStatus::Cancelled)
}

/// The `LAB` item whose window applies to a result: one listing its code or LOINC, else the general one.
fn lab_rule<'a>(rules: &'a RecognitionRules, r: &LabResult) -> Option<&'a RecognitionRule> {
    let lab = rules
        .items
        .iter()
        .filter(|i| i.modality.eq_ignore_ascii_case(LAB_ITEM));
    let names = |a: &String| {
        a.eq_ignore_ascii_case(&r.code.code)
            || r.loinc
                .as_deref()
                .is_some_and(|l| a.eq_ignore_ascii_case(l))
    };
    lab.clone()
        .find(|i| i.analytes.iter().any(names))
        .or_else(|| lab.into_iter().find(|i| i.analytes.is_empty()))
}

/// Whether each result of a stored lab panel, and the report as a whole, is mutually recognised, with
/// every failed precondition named. The report is recognised when it is and every result that counts
/// (all but cancelled ones) is; its window ends with the earliest result's.
pub fn recognise_lab(
    panel: &LabPanel,
    facts: &LabRecognitionFacts,
    rules: &RecognitionRules,
    qc: &[QcRecord],
    now: UnixMillis,
) -> LabRecognition {
    let mut common = Vec::new();
    if !facts.released {
        common.push("not released: awaiting a lab physician's sign-off".to_string());
    }
    match facts.newer_report {
        Some(NewerReport::Published) => {
            common.push("superseded by a newer report of the same order".to_string())
        }
        Some(NewerReport::Pending) => {
            common.push("a newer report of the same order awaits release".to_string())
        }
        None => {}
    }
    let lab = panel
        .performing_lab
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let offset = facts.default_offset_minutes;
    let mut results = Vec::with_capacity(panel.results.len());
    for r in &panel.results {
        let mut reasons = common.clone();
        let analyte = r.code.label();
        match r.status {
            ResultStatus::Final | ResultStatus::Corrected => {}
            other => reasons.push(format!("{analyte} is {}, not final", other.as_str())),
        }
        if r.value == LabValue::Absent {
            reasons.push(format!("{analyte} has no value"));
        }
        let collected = panel.collected_at.or(r.observed_at).or(panel.reported_at);
        let eqa = match (lab, collected) {
            (None, _) => {
                reasons.push("the report names no performing lab".to_string());
                None
            }
            (Some(_), None) => {
                reasons.push("no collection time: the EQA year cannot be checked".to_string());
                None
            }
            (Some(lab), Some(t)) => {
                let year = i32::from(t.local.year);
                let found = eqa_passed(qc, lab, r, year).cloned();
                if found.is_none() {
                    reasons.push(format!(
                        "performing lab {lab} has no {year} EQA pass for {analyte}"
                    ));
                }
                found
            }
        };
        let start = collected
            .map(|t| t.to_unix_millis(offset))
            .unwrap_or(facts.received_at);
        let rule = lab_rule(rules, r);
        let valid_until = rule.map(|i| start.plus_days(i.validity_days));
        match (rule, valid_until) {
            (Some(i), Some(until)) if until < now => reasons.push(format!(
                "older than its validity window ({} days)",
                i.validity_days
            )),
            (None, _) => reasons.push(format!(
                "{analyte} is not a lab item recognised by this alliance"
            )),
            _ => {}
        }
        let recognised = reasons.is_empty();
        results.push(LabResultRecognition {
            decision: RecognitionDecision {
                recognised,
                mark: recognised.then_some("HR"),
                scope: rule
                    .filter(|_| recognised)
                    .map(|i| i.scope_or(rules).to_string()),
                valid_until,
                reasons,
            },
            eqa,
        });
    }
    let mut reasons = common;
    match panel.status {
        PanelStatus::Final | PanelStatus::Corrected => {}
        other => reasons.push(format!("the report is {}, not final", other.as_str())),
    }
    let counted: Vec<(&LabResult, &LabResultRecognition)> = panel
        .results
        .iter()
        .zip(&results)
        .filter(|(r, _)| counts(r.status))
        .collect();
    if counted.is_empty() {
        reasons.push("the report has no result".to_string());
    }
    // Each result's own reasons, once, naming the analyte when the reason does not.
    let shared = reasons.clone();
    for (r, rec) in &counted {
        let label = r.code.label();
        for why in rec.decision.reasons.iter().filter(|x| !shared.contains(x)) {
            let line = if why.contains(label) {
                why.clone()
            } else {
                format!("{label}: {why}")
            };
            if !reasons.contains(&line) {
                reasons.push(line);
            }
        }
    }
    let valid_until = counted
        .iter()
        .map(|(_, rec)| rec.decision.valid_until)
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().min());
    let recognised = reasons.is_empty();
    LabRecognition {
        report: RecognitionDecision {
            recognised,
            mark: recognised.then_some("HR"),
            scope: recognised.then(|| rules.scope.clone()),
            valid_until,
            reasons,
        },
        results,
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
                analytes: Vec::new(),
                body_part: None,
                scope: None,
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
            body_part: Some("CHEST".into()),
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
    fn a_body_part_rule_wins_and_an_item_may_set_its_own_scope() {
        let mut r = rules();
        r.items.push(RecognitionRule {
            modality: "CT".into(),
            validity_days: 7,
            analytes: Vec::new(),
            body_part: Some("chest".into()),
            scope: Some("province".into()),
        });
        // A chest CT: the chest rule (7 days, recognised province-wide).
        let d = recognise(&facts(), &r, UnixMillis(0).plus_days(5));
        assert_eq!(d.valid_until, Some(UnixMillis(0).plus_days(7)));
        assert_eq!(d.scope.as_deref(), Some("province"));
        let d = recognise(&facts(), &r, UnixMillis(0).plus_days(8));
        assert_eq!(
            d.reasons,
            vec!["older than its validity window".to_string()]
        );
        // A head CT, or one whose images do not say: the modality's rule.
        for part in [Some("HEAD".to_string()), None] {
            let f = RecognitionFacts {
                body_part: part,
                ..facts()
            };
            let d = recognise(&f, &r, UnixMillis(0).plus_days(8));
            assert!(d.recognised);
            assert_eq!(d.valid_until, Some(UnixMillis(0).plus_days(30)));
            assert_eq!(d.scope.as_deref(), Some("alliance"));
        }
        // Only a body part rule: other body parts are not an item.
        r.items.remove(0);
        let f = RecognitionFacts {
            body_part: Some("HEAD".into()),
            ..facts()
        };
        assert!(!recognise(&f, &r, UnixMillis(0)).recognised);
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

    mod lab {
        use super::super::*;
        use yilian_domain::ecg::LocalDateTime;
        use yilian_domain::lab::{
            CodedValue, LabPatient, LabSource, LabTime, LabValue, Quantity, ResultStatus,
        };

        fn result(code: &str, loinc: &str, value: f64) -> LabResult {
            LabResult {
                set_id: None,
                code: CodedValue::new(code, Some(code), Some("L")),
                other_codes: Vec::new(),
                loinc: Some(loinc.into()),
                value: LabValue::Numeric(Quantity {
                    value,
                    decimal: value.to_string(),
                    comparator: None,
                    unit: Some(CodedValue::new("mmol/L", None, Some("UCUM"))),
                }),
                reference_range: None,
                abnormal_flags: Vec::new(),
                status: ResultStatus::Final,
                observed_at: None,
            }
        }

        /// 2026-11-23 08:15 +08:00 = 2026-11-23T00:15:00Z.
        const COLLECTED: i64 = 1_795_392_900_000;

        fn panel() -> LabPanel {
            LabPanel {
                source: LabSource::Hl7v2,
                version: "2.5.1".into(),
                message_id: "M1".into(),
                patient: LabPatient::default(),
                ordering_site: None,
                ordering_provider: None,
                performing_lab: Some("COUNTYLAB".into()),
                placer_order_number: None,
                filler_order_number: None,
                service: CodedValue::new("LYTES", None, Some("L")),
                specimen: None,
                collected_at: Some(LabTime::new(
                    LocalDateTime::new(2026, 11, 23, 8, 15, 0).unwrap(),
                    Some(480),
                )),
                received_at: None,
                reported_at: None,
                status: PanelStatus::Final,
                results: vec![result("K", "2823-3", 4.1), result("PLT", "777-3", 210.0)],
                notes: Vec::new(),
            }
        }

        fn lab_rules() -> RecognitionRules {
            RecognitionRules {
                scope: "alliance".into(),
                items: vec![
                    RecognitionRule {
                        modality: "lab".into(),
                        validity_days: 30,
                        analytes: Vec::new(),
                        body_part: None,
                        scope: None,
                    },
                    RecognitionRule {
                        modality: "LAB".into(),
                        validity_days: 3,
                        analytes: vec!["777-3".into()],
                        body_part: None,
                        scope: Some("city".into()),
                    },
                ],
            }
        }

        fn qc(year: i32, analytes: &[&str]) -> Vec<QcRecord> {
            vec![QcRecord {
                lab: "countylab".into(),
                year,
                analytes: analytes.iter().map(|a| a.to_string()).collect(),
                scheme: "省临检中心室间质评".into(),
                scope: None,
            }]
        }

        fn facts() -> LabRecognitionFacts {
            LabRecognitionFacts {
                released: true,
                newer_report: None,
                received_at: UnixMillis(COLLECTED + 3_600_000),
                default_offset_minutes: 480,
            }
        }

        #[test]
        fn a_released_current_eqa_qualified_panel_is_recognised_per_result_window() {
            let now = UnixMillis(COLLECTED).plus_days(1);
            let d = recognise_lab(&panel(), &facts(), &lab_rules(), &qc(2026, &[]), now);
            assert!(d.report.recognised, "{:?}", d.report.reasons);
            assert_eq!(d.report.mark, Some("HR"));
            assert_eq!(d.report.scope.as_deref(), Some("alliance"));
            // The platelet count's own 3-day window ends the report's.
            assert_eq!(
                d.report.valid_until,
                Some(UnixMillis(COLLECTED).plus_days(3))
            );
            assert_eq!(
                d.results[0].decision.valid_until,
                Some(UnixMillis(COLLECTED).plus_days(30))
            );
            assert_eq!(d.results[0].eqa.as_ref().map(|q| q.year), Some(2026));
            // Potassium is recognised alliance-wide; the platelet item is configured city-wide.
            assert_eq!(d.results[0].decision.scope.as_deref(), Some("alliance"));
            assert_eq!(d.results[1].decision.scope.as_deref(), Some("city"));
            // Four days on, the platelet count is too old and so is the report; potassium is not.
            let later = recognise_lab(
                &panel(),
                &facts(),
                &lab_rules(),
                &qc(2026, &[]),
                UnixMillis(COLLECTED).plus_days(4),
            );
            assert!(later.results[0].decision.recognised);
            assert_eq!(
                later.results[1].decision.reasons,
                vec!["older than its validity window (3 days)".to_string()]
            );
            assert_eq!(
                later.report.reasons,
                vec!["PLT: older than its validity window (3 days)".to_string()]
            );
        }

        #[test]
        fn every_failed_lab_precondition_is_named() {
            let now = UnixMillis(COLLECTED).plus_days(1);
            // EQA for potassium only, and for another year.
            let d = recognise_lab(
                &panel(),
                &facts(),
                &lab_rules(),
                &qc(2026, &["2823-3"]),
                now,
            );
            assert!(d.results[0].decision.recognised);
            assert_eq!(
                d.results[1].decision.reasons,
                vec!["performing lab COUNTYLAB has no 2026 EQA pass for PLT".to_string()]
            );
            assert!(!d.report.recognised);
            assert_eq!(d.report.mark, None);
            let d = recognise_lab(&panel(), &facts(), &lab_rules(), &qc(2025, &[]), now);
            assert!(d.results.iter().all(|r| !r.decision.recognised));
            // Not released, a newer report pending, preliminary: all said, on the report too.
            let mut p = panel();
            p.status = PanelStatus::Preliminary;
            p.results[0].status = ResultStatus::Preliminary;
            let f = LabRecognitionFacts {
                released: false,
                newer_report: Some(NewerReport::Pending),
                ..facts()
            };
            let d = recognise_lab(&p, &f, &lab_rules(), &qc(2026, &[]), now);
            assert_eq!(
                d.results[0].decision.reasons,
                vec![
                    "not released: awaiting a lab physician's sign-off".to_string(),
                    "a newer report of the same order awaits release".to_string(),
                    "K is preliminary, not final".to_string(),
                ]
            );
            assert_eq!(
                d.report.reasons,
                vec![
                    "not released: awaiting a lab physician's sign-off".to_string(),
                    "a newer report of the same order awaits release".to_string(),
                    "the report is preliminary, not final".to_string(),
                    "K is preliminary, not final".to_string(),
                ]
            );
            // No LAB item at all.
            let d = recognise_lab(&panel(), &facts(), &super::rules(), &qc(2026, &[]), now);
            assert_eq!(
                d.results[0].decision.reasons,
                vec!["K is not a lab item recognised by this alliance".to_string()]
            );
            assert_eq!(d.report.valid_until, None);
            // A superseded report is never recognised.
            let f = LabRecognitionFacts {
                newer_report: Some(NewerReport::Published),
                ..facts()
            };
            let d = recognise_lab(&panel(), &f, &lab_rules(), &qc(2026, &[]), now);
            assert_eq!(
                d.report.reasons,
                vec!["superseded by a newer report of the same order".to_string()]
            );
        }
    }
}
