//! ECG alerts: what in an ECG itself makes it urgent, whatever the site said. A device statement of
//! acute infarction (STEMI) or a heart rate outside the configured limits puts the exam at the top of
//! the ECG worklist (stat) with the urgent SLA.

use serde::Deserialize;

/// `[routing.ecg]` in config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcgAlertRules {
    /// A heart rate (the hub's measurement, else the device's) below this is an alert.
    #[serde(default = "min_hr")]
    pub min_heart_rate_bpm: f64,
    /// A heart rate above this is an alert.
    #[serde(default = "max_hr")]
    pub max_heart_rate_bpm: f64,
    /// Words in the device's interpretation that mean acute infarction, matched case-insensitively.
    #[serde(default = "stemi_terms")]
    pub stemi_terms: Vec<String>,
}

fn min_hr() -> f64 {
    40.0
}
fn max_hr() -> f64 {
    150.0
}
fn stemi_terms() -> Vec<String> {
    [
        "STEMI",
        "ACUTE MI",
        "ACUTE MYOCARDIAL INFARCTION",
        "ST ELEVATION",
        "ST-ELEVATION",
        "急性心肌梗死",
        "急性心梗",
        "ST段抬高",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for EcgAlertRules {
    fn default() -> Self {
        EcgAlertRules {
            min_heart_rate_bpm: min_hr(),
            max_heart_rate_bpm: max_hr(),
            stemi_terms: stemi_terms(),
        }
    }
}

/// What one ECG says about itself.
#[derive(Clone, Debug, Default)]
pub struct EcgAlertFacts {
    pub hub_heart_rate_bpm: Option<f64>,
    pub device_heart_rate_bpm: Option<f64>,
    pub interpretation: Vec<String>,
}

/// The alerts of one ECG, in words a reader can act on; empty when nothing is alarming.
pub fn ecg_alerts(facts: &EcgAlertFacts, rules: &EcgAlertRules) -> Vec<String> {
    let mut out = Vec::new();
    let statements = facts.interpretation.join(" ").to_uppercase();
    if let Some(term) = rules
        .stemi_terms
        .iter()
        .find(|t| !t.trim().is_empty() && statements.contains(&t.to_uppercase()))
    {
        out.push(format!(
            "the device's interpretation says {term:?} (possible STEMI)"
        ));
    }
    let (hr, whose) = match (facts.hub_heart_rate_bpm, facts.device_heart_rate_bpm) {
        (Some(h), _) => (Some(h), "measured by the hub"),
        (None, Some(d)) => (Some(d), "reported by the device"),
        (None, None) => (None, ""),
    };
    if let Some(hr) = hr {
        if hr < rules.min_heart_rate_bpm {
            out.push(format!(
                "heart rate {hr:.0} bpm ({whose}) is below {:.0} bpm",
                rules.min_heart_rate_bpm
            ));
        } else if hr > rules.max_heart_rate_bpm {
            out.push(format!(
                "heart rate {hr:.0} bpm ({whose}) is above {:.0} bpm",
                rules.max_heart_rate_bpm
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(hub: Option<f64>, dev: Option<f64>, text: &[&str]) -> EcgAlertFacts {
        EcgAlertFacts {
            hub_heart_rate_bpm: hub,
            device_heart_rate_bpm: dev,
            interpretation: text.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn normal_ecgs_raise_nothing() {
        let r = EcgAlertRules::default();
        assert!(
            ecg_alerts(
                &facts(Some(72.0), Some(70.0), &["Sinus rhythm", "Normal ECG"]),
                &r
            )
            .is_empty()
        );
    }

    #[test]
    fn stemi_statements_in_either_language_alert() {
        let r = EcgAlertRules::default();
        let a = ecg_alerts(&facts(Some(80.0), None, &["*** ACUTE MI / STEMI ***"]), &r);
        assert_eq!(a.len(), 1);
        assert!(a[0].contains("STEMI"), "{a:?}");
        let a = ecg_alerts(&facts(None, None, &["窦性心律", "下壁ST段抬高"]), &r);
        assert_eq!(a.len(), 1, "{a:?}");
    }

    #[test]
    fn the_hubs_heart_rate_is_preferred_and_limits_are_configurable() {
        let r = EcgAlertRules::default();
        let a = ecg_alerts(&facts(Some(182.0), Some(90.0), &[]), &r);
        assert_eq!(
            a,
            vec!["heart rate 182 bpm (measured by the hub) is above 150 bpm".to_string()]
        );
        let a = ecg_alerts(&facts(None, Some(35.0), &[]), &r);
        assert_eq!(
            a,
            vec!["heart rate 35 bpm (reported by the device) is below 40 bpm".to_string()]
        );
        let strict = EcgAlertRules {
            max_heart_rate_bpm: 120.0,
            ..EcgAlertRules::default()
        };
        assert_eq!(ecg_alerts(&facts(Some(130.0), None, &[]), &strict).len(), 1);
    }
}
