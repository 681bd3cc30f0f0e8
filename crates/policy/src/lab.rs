//! Lab panels: which results are critical values (危急值) by the alliance's list, whether the performing
//! lab passed external quality assessment (室间质评) for an analyte, and whether a panel may be released
//! without a lab physician's review. Pure: the panel, the lists and the year are arguments, and each
//! answer carries a sentence a person can read.

use serde::Deserialize;
use yilian_domain::lab::{Comparator, LabPanel, LabResult, PanelStatus, ResultStatus};

/// The default time a critical value may wait for an acknowledgement before it escalates: the
/// median target of 973 Chinese labs (../shared/domain.md).
pub const DEFAULT_CRITICAL_ACK_MINUTES: i64 = 15;

/// One analyte on the critical-value list (`[[lab.critical]]`): matched by LOINC or a local code,
/// compared in one unit; below `low` or above `high` is critical.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CriticalRule {
    /// Shown to people: 血钾, 血糖, 肌钙蛋白I…
    pub name: String,
    #[serde(default)]
    pub loinc: Option<String>,
    /// Local (LIS) codes of the analyte.
    #[serde(default)]
    pub codes: Vec<String>,
    /// UCUM unit the thresholds are in; a result in another unit is not compared (a person checks).
    pub unit: String,
    #[serde(default)]
    pub low: Option<f64>,
    #[serde(default)]
    pub high: Option<f64>,
}

impl CriticalRule {
    /// Something to match on, a threshold, low below high.
    pub fn check(&self) -> Result<(), String> {
        if self.loinc.is_none() && self.codes.is_empty() {
            return Err(format!("{}: needs loinc or codes", self.name));
        }
        match (self.low, self.high) {
            (None, None) => Err(format!("{}: needs low or high", self.name)),
            (Some(l), Some(h)) if l >= h => {
                Err(format!("{}: low {l} is not below high {h}", self.name))
            }
            (l, h) if l.is_some_and(|v| !v.is_finite()) || h.is_some_and(|v| !v.is_finite()) => {
                Err(format!("{}: thresholds must be numbers", self.name))
            }
            _ => Ok(()),
        }
    }

    fn matches(&self, r: &LabResult) -> bool {
        let by_loinc =
            matches!((&self.loinc, &r.loinc), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b));
        by_loinc
            || self
                .codes
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&r.code.code))
    }
}

/// A critical value found in a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct CriticalFinding {
    /// Index into `panel.results`.
    pub result_index: usize,
    pub analyte: String,
    /// The value as reported (with its comparator) and its unit.
    pub value: String,
    pub unit: String,
    /// The list entry that made it critical; `None` when the lab itself flagged it (HH/LL…).
    pub rule: Option<String>,
    pub explanation: String,
}

/// What the lists say about a panel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabAssessment {
    pub critical: Vec<CriticalFinding>,
    /// Results the list covers but that could not be compared (another unit, a bound like ">30"
    /// that may or may not pass the threshold, a non-numeric value): a person must look.
    pub unchecked: Vec<String>,
    /// Results outside their reference range or flagged abnormal by the lab.
    pub abnormal: Vec<String>,
}

fn counts(status: ResultStatus) -> bool {
    !matches!(status, ResultStatus::Cancelled)
}

/// UCUM codes compared as the labs write them; `mmol/L` and `mmol/l` are one unit.
fn same_unit(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Which results are critical by `rules` (or by the lab's own critical flag), which the list covers
/// but cannot decide, and which are abnormal. Cancelled results are ignored.
pub fn assess(panel: &LabPanel, rules: &[CriticalRule]) -> LabAssessment {
    let mut out = LabAssessment::default();
    for (i, r) in panel.results.iter().enumerate() {
        if !counts(r.status) {
            continue;
        }
        let analyte = r.code.label().to_string();
        let q = r.quantity();
        let shown = q
            .map(|q| {
                format!(
                    "{}{}",
                    q.comparator.map(Comparator::as_str).unwrap_or(""),
                    q.decimal
                )
            })
            .unwrap_or_default();
        let unit = q
            .and_then(|q| q.unit_code())
            .unwrap_or_default()
            .to_string();
        let mut critical = false;
        for rule in rules.iter().filter(|rule| rule.matches(r)) {
            let Some(q) = q else {
                out.unchecked.push(format!(
                    "{analyte}: not a number, the {} list cannot compare it",
                    rule.name
                ));
                continue;
            };
            if !same_unit(&unit, &rule.unit) {
                out.unchecked.push(format!(
                    "{analyte}: unit {unit:?} is not the list's {:?} for {}",
                    rule.unit, rule.name
                ));
                continue;
            }
            match verdict(q.value, q.comparator, rule) {
                Verdict::Critical(why) => {
                    critical = true;
                    out.critical.push(CriticalFinding {
                        result_index: i,
                        analyte: analyte.clone(),
                        value: shown.clone(),
                        unit: unit.clone(),
                        rule: Some(rule.name.clone()),
                        explanation: format!("{analyte} {shown} {unit} {why} ({})", rule.name),
                    });
                }
                Verdict::Unknown(why) => out
                    .unchecked
                    .push(format!("{analyte} {shown} {unit}: {why}")),
                Verdict::Fine => {}
            }
        }
        if !critical && r.lab_flagged_critical() {
            let flags: Vec<&str> = r.abnormal_flags.iter().map(|f| f.code()).collect();
            out.critical.push(CriticalFinding {
                result_index: i,
                analyte: analyte.clone(),
                value: shown.clone(),
                unit: unit.clone(),
                rule: None,
                explanation: format!(
                    "{analyte} {shown} {unit} flagged {} by the lab",
                    flags.join(",")
                ),
            });
        }
        let out_of_range = match (q, &r.reference_range) {
            (Some(q), Some(rr)) if q.comparator.is_none() => {
                rr.low.is_some_and(|l| q.value < l) || rr.high.is_some_and(|h| q.value > h)
            }
            _ => false,
        };
        if out_of_range || r.abnormal_flags.iter().any(|f| f.is_abnormal()) {
            out.abnormal.push(analyte);
        }
    }
    out
}

enum Verdict {
    Critical(String),
    Unknown(String),
    Fine,
}

/// A value (possibly only a bound, `<0.01`, `>50`) against a rule's thresholds.
fn verdict(v: f64, cmp: Option<Comparator>, rule: &CriticalRule) -> Verdict {
    // The interval the true value lies in.
    let (lo, hi) = match cmp {
        None => (v, v),
        Some(Comparator::Lt | Comparator::Le) => (f64::NEG_INFINITY, v),
        Some(Comparator::Gt | Comparator::Ge) => (v, f64::INFINITY),
    };
    if let Some(low) = rule.low {
        if hi < low {
            return Verdict::Critical(format!("below the critical limit {low}"));
        }
        if lo < low {
            return Verdict::Unknown(format!("may be below the critical limit {low}"));
        }
    }
    if let Some(high) = rule.high {
        if lo > high {
            return Verdict::Critical(format!("above the critical limit {high}"));
        }
        if hi > high {
            return Verdict::Unknown(format!("may be above the critical limit {high}"));
        }
    }
    Verdict::Fine
}

/// One external-quality-assessment pass (`[[lab.qc]]`): a lab, a year, the analytes it covers.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QcRecord {
    /// The performing lab as messages name it (MSH-4 / the FHIR performer's identifier).
    pub lab: String,
    pub year: i32,
    /// LOINC or local codes; empty: every analyte of the lab.
    #[serde(default)]
    pub analytes: Vec<String>,
    /// The scheme and its organiser, e.g. 国家卫生健康委临床检验中心室间质评.
    pub scheme: String,
    /// Where a recognised result counts (alliance, city, province…).
    #[serde(default)]
    pub scope: Option<String>,
}

/// The EQA record that qualifies `lab` for the result's analyte in `year`, if any.
pub fn eqa_passed<'a>(
    registry: &'a [QcRecord],
    lab: &str,
    result: &LabResult,
    year: i32,
) -> Option<&'a QcRecord> {
    registry.iter().find(|q| {
        q.lab.eq_ignore_ascii_case(lab)
            && q.year == year
            && (q.analytes.is_empty()
                || q.analytes.iter().any(|a| {
                    a.eq_ignore_ascii_case(&result.code.code)
                        || result
                            .loinc
                            .as_deref()
                            .is_some_and(|l| a.eq_ignore_ascii_case(l))
                }))
    })
}

/// When a panel may skip the lab physician (`[[lab.auto_release]]`): from these labs, for these
/// services, when every result is normal and every analyte is EQA-qualified.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AutoReleaseRule {
    pub name: String,
    /// Performing labs; empty: any.
    #[serde(default)]
    pub labs: Vec<String>,
    /// Service codes (OBR-4 / DiagnosticReport.code: local or LOINC); empty: any.
    #[serde(default)]
    pub services: Vec<String>,
    /// Every result within its reference range and not flagged abnormal (default true).
    #[serde(default = "yes")]
    pub all_normal: bool,
    /// Every result's analyte EQA-qualified for the lab in the collection year (default true).
    #[serde(default = "yes")]
    pub qc_qualified: bool,
}

fn yes() -> bool {
    true
}

/// Review by a lab physician, or release without one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabDecision {
    AutoRelease { rule: String, explanation: String },
    Review { explanation: String },
}

/// Decides whether the panel needs review. Never released without one: a critical value, a result
/// the list could not decide, a panel that is not final (preliminary, corrected, cancelled), or no
/// rule whose conditions all hold.
pub fn release(
    panel: &LabPanel,
    assessment: &LabAssessment,
    rules: &[AutoReleaseRule],
    qc: &[QcRecord],
    year: i32,
) -> LabDecision {
    let review = |explanation: String| LabDecision::Review { explanation };
    if !assessment.critical.is_empty() {
        return review(format!(
            "critical value(s): {}",
            assessment
                .critical
                .iter()
                .map(|c| c.explanation.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if !assessment.unchecked.is_empty() {
        return review(format!(
            "not decidable by the critical-value list: {}",
            assessment.unchecked.join("; ")
        ));
    }
    if panel.status != PanelStatus::Final {
        return review(format!("the panel is {}, not final", panel.status.as_str()));
    }
    let lab = panel.performing_lab.as_deref().unwrap_or("");
    let mut why_not = Vec::new();
    for rule in rules {
        if !rule.labs.is_empty() && !rule.labs.iter().any(|l| l.eq_ignore_ascii_case(lab)) {
            why_not.push(format!("{}: lab {lab:?} not listed", rule.name));
            continue;
        }
        if !rule.services.is_empty()
            && !rule
                .services
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&panel.service.code))
        {
            why_not.push(format!(
                "{}: service {} not listed",
                rule.name, panel.service.code
            ));
            continue;
        }
        if rule.all_normal && !assessment.abnormal.is_empty() {
            why_not.push(format!(
                "{}: abnormal {}",
                rule.name,
                assessment.abnormal.join(", ")
            ));
            continue;
        }
        if rule.qc_qualified {
            let missing: Vec<&str> = panel
                .results
                .iter()
                .filter(|r| counts(r.status) && eqa_passed(qc, lab, r, year).is_none())
                .map(|r| r.code.label())
                .collect();
            if !missing.is_empty() {
                why_not.push(format!(
                    "{}: no {year} EQA pass for {}",
                    rule.name,
                    missing.join(", ")
                ));
                continue;
            }
        }
        return LabDecision::AutoRelease {
            rule: rule.name.clone(),
            explanation: format!(
                "auto-released by rule {:?}: final, {} result(s){}{}",
                rule.name,
                panel.results.iter().filter(|r| counts(r.status)).count(),
                if rule.all_normal { ", all normal" } else { "" },
                if rule.qc_qualified {
                    format!(", lab {lab} EQA-qualified for {year}")
                } else {
                    String::new()
                }
            ),
        };
    }
    if why_not.is_empty() {
        review("no auto-release rule is configured".into())
    } else {
        review(format!(
            "no auto-release rule holds ({})",
            why_not.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_domain::lab::{
        AbnormalFlag, CodedValue, LabPatient, LabSource, LabValue, Quantity, ReferenceRange,
    };

    fn result(
        code: &str,
        loinc: &str,
        value: &str,
        cmp: Option<Comparator>,
        unit: &str,
    ) -> LabResult {
        LabResult {
            set_id: None,
            code: CodedValue::new(code, Some(code), Some("L")),
            other_codes: Vec::new(),
            loinc: Some(loinc.into()),
            value: LabValue::Numeric(Quantity {
                value: value.parse().unwrap(),
                decimal: value.into(),
                comparator: cmp,
                unit: Some(CodedValue::new(unit, None, Some("UCUM"))),
            }),
            reference_range: None,
            abnormal_flags: Vec::new(),
            status: ResultStatus::Final,
            observed_at: None,
        }
    }

    fn panel(results: Vec<LabResult>) -> LabPanel {
        LabPanel {
            source: LabSource::Hl7v2,
            version: "2.5.1".into(),
            message_id: "M1".into(),
            patient: LabPatient::default(),
            ordering_site: None,
            ordering_provider: None,
            performing_lab: Some("COUNTY_LIS".into()),
            placer_order_number: None,
            filler_order_number: None,
            service: CodedValue::new("ELEC", Some("电解质"), Some("L")),
            specimen: None,
            collected_at: None,
            received_at: None,
            reported_at: None,
            status: PanelStatus::Final,
            results,
            notes: Vec::new(),
        }
    }

    fn potassium() -> CriticalRule {
        CriticalRule {
            name: "血钾".into(),
            loinc: Some("2823-3".into()),
            codes: vec!["K".into()],
            unit: "mmol/L".into(),
            low: Some(2.8),
            high: Some(6.2),
        }
    }

    #[test]
    fn critical_values_by_the_list_by_bounds_and_by_the_labs_flag() {
        let rules = [potassium()];
        let a = assess(
            &panel(vec![result("K", "2823-3", "6.8", None, "mmol/L")]),
            &rules,
        );
        assert_eq!(a.critical.len(), 1);
        assert_eq!(
            a.critical[0].explanation,
            "K 6.8 mmol/L above the critical limit 6.2 (血钾)"
        );
        // Matched by local code with another LOINC spelling, low side, unit case.
        let a = assess(
            &panel(vec![result("k", "x", "2.1", None, "mmol/l")]),
            &rules,
        );
        assert_eq!(a.critical[0].rule.as_deref(), Some("血钾"));
        assert!(
            a.critical[0]
                .explanation
                .contains("below the critical limit 2.8")
        );
        // Normal; a bound that does not settle it (">5" may be above 6.2) is left to a person.
        assert!(
            assess(
                &panel(vec![result("K", "2823-3", "4.1", None, "mmol/L")]),
                &rules
            ) == LabAssessment::default()
        );
        let a = assess(
            &panel(vec![result(
                "K",
                "2823-3",
                "5",
                Some(Comparator::Gt),
                "mmol/L",
            )]),
            &rules,
        );
        assert!(a.critical.is_empty());
        assert_eq!(
            a.unchecked,
            vec!["K >5 mmol/L: may be above the critical limit 6.2"]
        );
        let a = assess(
            &panel(vec![result(
                "K",
                "2823-3",
                "8",
                Some(Comparator::Gt),
                "mmol/L",
            )]),
            &rules,
        );
        assert_eq!(a.critical.len(), 1);
        // Another unit is not compared but is not let through either.
        let a = assess(
            &panel(vec![result("K", "2823-3", "6.8", None, "mEq/L")]),
            &rules,
        );
        assert!(a.critical.is_empty());
        assert!(
            a.unchecked[0].contains("unit \"mEq/L\""),
            "{:?}",
            a.unchecked
        );
        // The lab's own HH flag on an analyte not on the list.
        let mut glu = result("GLU", "2345-7", "33.5", None, "mmol/L");
        glu.abnormal_flags = vec![AbnormalFlag::from_code("HH").unwrap()];
        let a = assess(&panel(vec![glu]), &rules);
        assert_eq!(a.critical[0].rule, None);
        assert!(a.critical[0].explanation.contains("flagged HH by the lab"));
        assert_eq!(a.abnormal, vec!["GLU"]);
        // Cancelled results do not count.
        let mut gone = result("K", "2823-3", "9.9", None, "mmol/L");
        gone.status = ResultStatus::Cancelled;
        assert!(assess(&panel(vec![gone]), &rules).critical.is_empty());
    }

    #[test]
    fn rules_need_a_match_and_a_sane_threshold() {
        let mut r = potassium();
        assert!(r.check().is_ok());
        r.low = Some(7.0);
        assert!(r.check().unwrap_err().contains("not below"));
        r.low = None;
        r.high = None;
        assert!(r.check().unwrap_err().contains("needs low or high"));
        r.high = Some(6.2);
        r.loinc = None;
        r.codes.clear();
        assert!(r.check().unwrap_err().contains("needs loinc or codes"));
    }

    fn qc(year: i32, analytes: &[&str]) -> Vec<QcRecord> {
        vec![QcRecord {
            lab: "COUNTY_LIS".into(),
            year,
            analytes: analytes.iter().map(|a| a.to_string()).collect(),
            scheme: "省临检中心室间质评".into(),
            scope: Some("province".into()),
        }]
    }

    fn normal_panel() -> LabPanel {
        let mut na = result("NA", "2951-2", "140", None, "mmol/L");
        na.reference_range = Some(ReferenceRange {
            low: Some(137.0),
            high: Some(147.0),
            text: None,
        });
        panel(vec![na, result("K", "2823-3", "4.1", None, "mmol/L")])
    }

    #[test]
    fn release_without_review_only_when_a_rule_holds_and_nothing_is_critical() {
        let rule = AutoReleaseRule {
            name: "县检验中心电解质".into(),
            labs: vec!["COUNTY_LIS".into()],
            services: vec!["ELEC".into()],
            all_normal: true,
            qc_qualified: true,
        };
        let p = normal_panel();
        let a = assess(&p, &[potassium()]);
        match release(&p, &a, std::slice::from_ref(&rule), &qc(2026, &[]), 2026) {
            LabDecision::AutoRelease { rule, explanation } => {
                assert_eq!(rule, "县检验中心电解质");
                assert!(
                    explanation.contains("EQA-qualified for 2026"),
                    "{explanation}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Last year's EQA, or one that does not cover sodium: review, naming why.
        let LabDecision::Review { explanation } =
            release(&p, &a, std::slice::from_ref(&rule), &qc(2025, &[]), 2026)
        else {
            panic!("released without a 2026 EQA pass")
        };
        assert!(
            explanation.contains("no 2026 EQA pass for NA, K"),
            "{explanation}"
        );
        let LabDecision::Review { explanation } = release(
            &p,
            &a,
            std::slice::from_ref(&rule),
            &qc(2026, &["2823-3"]),
            2026,
        ) else {
            panic!()
        };
        assert!(explanation.contains("for NA"), "{explanation}");
        // An abnormal result, a preliminary panel, a critical value, no rule at all.
        let mut high = normal_panel();
        high.results[0].value = LabValue::Numeric(Quantity {
            value: 150.0,
            decimal: "150".into(),
            comparator: None,
            unit: None,
        });
        let ah = assess(&high, &[potassium()]);
        assert!(
            matches!(release(&high, &ah, std::slice::from_ref(&rule), &qc(2026, &[]), 2026), LabDecision::Review { explanation } if explanation.contains("abnormal NA"))
        );
        let mut pre = normal_panel();
        pre.status = PanelStatus::Preliminary;
        assert!(
            matches!(release(&pre, &a, std::slice::from_ref(&rule), &qc(2026, &[]), 2026), LabDecision::Review { explanation } if explanation.contains("preliminary"))
        );
        let crit = panel(vec![result("K", "2823-3", "6.8", None, "mmol/L")]);
        let ac = assess(&crit, &[potassium()]);
        assert!(
            matches!(release(&crit, &ac, std::slice::from_ref(&rule), &qc(2026, &[]), 2026), LabDecision::Review { explanation } if explanation.starts_with("critical value(s): K 6.8"))
        );
        assert_eq!(
            release(&p, &a, &[], &[], 2026),
            LabDecision::Review {
                explanation: "no auto-release rule is configured".into()
            }
        );
    }
}
