//! Routing: site + modality (+ the uploader's urgency flag) → a reading pool, priority and due time.

use serde::Deserialize;
use yilian_domain::{PoolId, Priority, SiteId, UnixMillis};

/// One rule as an alliance admin writes it in `config/` (`[[routing.rules]]`). First match wins.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    /// A name people can recognise in explanations ("township-ct").
    pub name: String,
    /// Uploading sites this rule covers; empty means any site.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Modalities (DICOM Modality codes: CT, DX, CR, MR, US…); empty means any.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// The pool whose worklist receives the exam.
    pub pool: String,
    /// Priority: "stat", "urgent" or "routine".
    #[serde(default = "routine")]
    pub priority: String,
    /// Minutes from routing until the report is due.
    pub sla_minutes: i64,
    /// Minutes until due when the exam is urgent (the uploader's flag or an alert). Default: 10 for
    /// an ECG, else a quarter of `sla_minutes`.
    #[serde(default)]
    pub urgent_sla_minutes: Option<i64>,
    /// A pool of a higher tier whose readers also see the exam once it is past due and unclaimed
    /// (escalation). Without it an overdue exam is still raised to stat in its own pool.
    #[serde(default)]
    pub escalate_to: Option<String>,
}

/// The urgent SLA of an ECG when its rule sets none: a STEMI must be read in minutes.
pub const DEFAULT_ECG_URGENT_SLA_MINUTES: i64 = 10;

fn routine() -> String {
    "routine".into()
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRules {
    #[serde(default)]
    pub rules: Vec<RoutingRule>,
}

/// What is known about a study when it is complete.
#[derive(Clone, Debug)]
pub struct RoutingFacts {
    pub site: SiteId,
    /// Modalities in the study (from its series), in arrival order.
    pub modalities: Vec<String>,
    /// The uploader marked the exam urgent.
    pub urgent: bool,
    /// Findings in the data itself that make the exam urgent whatever the uploader said (an ECG the
    /// device flags as STEMI, an extreme heart rate), in words a person can read. Any alert makes
    /// the exam stat.
    pub alerts: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDecision {
    pub rule: String,
    pub pool: PoolId,
    pub priority: Priority,
    pub due_at: UnixMillis,
    /// Why, in words a person can read.
    pub explanation: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no routing rule matches site {site} with modalities {modalities}")]
    NoRule { site: String, modalities: String },
    #[error("routing rule {rule:?} is invalid: {reason}")]
    BadRule { rule: String, reason: String },
}

impl RoutingRules {
    /// Checks every rule once (priority spelled right, pool id well-formed, SLA positive).
    pub fn validate(&self) -> Result<(), RouteError> {
        for r in &self.rules {
            let bad = |reason: String| RouteError::BadRule {
                rule: r.name.clone(),
                reason,
            };
            Priority::parse(&r.priority)
                .ok_or_else(|| bad(format!("unknown priority {:?}", r.priority)))?;
            PoolId::new(r.pool.clone()).map_err(|e| bad(e.to_string()))?;
            if r.sla_minutes <= 0 {
                return Err(bad("sla_minutes must be positive".into()));
            }
            if r.urgent_sla_minutes.is_some_and(|m| m <= 0) {
                return Err(bad("urgent_sla_minutes must be positive".into()));
            }
            if let Some(p) = &r.escalate_to {
                PoolId::new(p.clone()).map_err(|e| bad(format!("escalate_to: {e}")))?;
            }
        }
        Ok(())
    }
}

/// Picks the first rule whose sites and modalities match. An urgent flag raises the priority one step;
/// an alert makes it stat. Either shortens the SLA to the rule's urgent SLA.
pub fn route(
    facts: &RoutingFacts,
    rules: &RoutingRules,
    now: UnixMillis,
) -> Result<RouteDecision, RouteError> {
    for rule in &rules.rules {
        let site_ok = rule.sites.is_empty() || rule.sites.iter().any(|s| s == facts.site.as_str());
        let matched_modality = if rule.modalities.is_empty() {
            Some(facts.modalities.first().cloned().unwrap_or_default())
        } else {
            facts
                .modalities
                .iter()
                .find(|m| rule.modalities.iter().any(|r| r.eq_ignore_ascii_case(m)))
                .cloned()
        };
        let (true, Some(modality)) = (site_ok, matched_modality) else {
            continue;
        };
        let bad = |reason: String| RouteError::BadRule {
            rule: rule.name.clone(),
            reason,
        };
        let base = Priority::parse(&rule.priority)
            .ok_or_else(|| bad(format!("unknown priority {:?}", rule.priority)))?;
        let pool = PoolId::new(rule.pool.clone()).map_err(|e| bad(e.to_string()))?;
        let urgent_sla =
            rule.urgent_sla_minutes
                .unwrap_or(if modality.eq_ignore_ascii_case("ECG") {
                    DEFAULT_ECG_URGENT_SLA_MINUTES
                } else {
                    (rule.sla_minutes / 4).max(1)
                });
        let (priority, sla) = if !facts.alerts.is_empty() {
            (Priority::Stat, urgent_sla.min(rule.sla_minutes))
        } else if facts.urgent {
            (base.raised(), urgent_sla.min(rule.sla_minutes))
        } else {
            (base, rule.sla_minutes)
        };
        let site_part = if rule.sites.is_empty() {
            "any site".to_string()
        } else {
            format!("site {}", facts.site)
        };
        let mut explanation = format!(
            "rule {:?} matched {site_part} and modality {modality}: pool {pool}, {} priority, due in {sla} min",
            rule.name,
            priority.as_str()
        );
        if !facts.alerts.is_empty() {
            explanation.push_str(&format!(" (stat: {})", facts.alerts.join("; ")));
        }
        if facts.urgent {
            explanation.push_str(" (marked urgent by the uploader: priority raised, urgent SLA)");
        }
        return Ok(RouteDecision {
            rule: rule.name.clone(),
            pool,
            priority,
            due_at: now.plus_minutes(sla),
            explanation,
        });
    }
    Err(RouteError::NoRule {
        site: facts.site.to_string(),
        modalities: facts.modalities.join(","),
    })
}

/// What is known about an exam when the escalation sweep looks at it.
#[derive(Clone, Debug)]
pub struct EscalationFacts {
    /// The rule that routed the exam (by name).
    pub rule: String,
    pub pool: PoolId,
    pub priority: Priority,
    pub due_at: UnixMillis,
    /// Someone holds a live lease: the exam is being read, so it is not escalated.
    pub claimed: bool,
    pub already_escalated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escalation {
    /// The higher-tier pool that now also sees the exam, when the rule names one.
    pub to_pool: Option<PoolId>,
    pub priority: Priority,
    pub explanation: String,
}

/// An exam that is past due, unreported and unclaimed escalates once: it becomes stat and, when its
/// rule names `escalate_to`, appears on that pool's worklist too.
pub fn escalate(
    facts: &EscalationFacts,
    rules: &RoutingRules,
    now: UnixMillis,
) -> Option<Escalation> {
    if facts.already_escalated || facts.claimed || now < facts.due_at {
        return None;
    }
    let rule = rules.rules.iter().find(|r| r.name == facts.rule);
    let to_pool = rule
        .and_then(|r| r.escalate_to.as_ref())
        .and_then(|p| PoolId::new(p.clone()).ok())
        .filter(|p| p != &facts.pool);
    let overdue_min = (now.0 - facts.due_at.0) / 60_000;
    let mut explanation =
        format!("unclaimed {overdue_min} min past its due time: escalated to stat");
    if let Some(p) = &to_pool {
        explanation.push_str(&format!(" and shown to pool {p}"));
    }
    Some(Escalation {
        to_pool,
        priority: Priority::Stat,
        explanation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RoutingRules {
        toml_rules(&[
            (
                "township-ct",
                &["tw-a", "tw-b"][..],
                &["CT"][..],
                "county-rad",
                "routine",
                240,
            ),
            (
                "any-xray",
                &[][..],
                &["DX", "CR"][..],
                "county-rad",
                "routine",
                480,
            ),
        ])
    }

    /// (name, sites, modalities, pool, priority, sla_minutes)
    type RuleRow<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a str, &'a str, i64);

    fn toml_rules(r: &[RuleRow<'_>]) -> RoutingRules {
        RoutingRules {
            rules: r
                .iter()
                .map(|(n, s, m, p, pr, sla)| RoutingRule {
                    name: n.to_string(),
                    sites: s.iter().map(|x| x.to_string()).collect(),
                    modalities: m.iter().map(|x| x.to_string()).collect(),
                    pool: p.to_string(),
                    priority: pr.to_string(),
                    sla_minutes: *sla,
                    urgent_sla_minutes: None,
                    escalate_to: None,
                })
                .collect(),
        }
    }

    fn facts(site: &str, m: &[&str], urgent: bool) -> RoutingFacts {
        RoutingFacts {
            site: SiteId::new(site).unwrap(),
            modalities: m.iter().map(|x| x.to_string()).collect(),
            urgent,
            alerts: vec![],
        }
    }

    #[test]
    fn first_matching_rule_wins_with_its_explanation() {
        let now = UnixMillis(1_000_000);
        let d = route(&facts("tw-a", &["CT"], false), &rules(), now).unwrap();
        assert_eq!(d.rule, "township-ct");
        assert_eq!(d.pool.as_str(), "county-rad");
        assert_eq!(d.priority, Priority::Routine);
        assert_eq!(d.due_at, now.plus_minutes(240));
        assert!(d.explanation.contains("site tw-a"), "{}", d.explanation);

        let d = route(&facts("tw-z", &["SR", "dx"], false), &rules(), now).unwrap();
        assert_eq!(d.rule, "any-xray");
        assert_eq!(d.due_at, now.plus_minutes(480));
    }

    #[test]
    fn urgent_raises_priority_and_shortens_sla() {
        let now = UnixMillis(0);
        let d = route(&facts("tw-b", &["CT"], true), &rules(), now).unwrap();
        assert_eq!(d.priority, Priority::Urgent);
        assert_eq!(d.due_at, now.plus_minutes(60));
        assert!(d.explanation.contains("urgent"));
    }

    #[test]
    fn an_ecg_alert_is_stat_with_the_ecg_urgent_sla() {
        let mut r = rules();
        r.rules.push(RoutingRule {
            name: "ecg".into(),
            sites: vec![],
            modalities: vec!["ECG".into()],
            pool: "county-ecg".into(),
            priority: "routine".into(),
            sla_minutes: 120,
            urgent_sla_minutes: None,
            escalate_to: Some("city-ecg".into()),
        });
        let now = UnixMillis(0);
        let plain = route(&facts("tw-a", &["ECG"], false), &r, now).unwrap();
        assert_eq!(
            (plain.priority, plain.due_at),
            (Priority::Routine, now.plus_minutes(120))
        );
        let mut f = facts("tw-a", &["ECG"], false);
        f.alerts = vec!["the device reports ACUTE MI / STEMI".into()];
        let d = route(&f, &r, now).unwrap();
        assert_eq!(d.priority, Priority::Stat);
        assert_eq!(d.due_at, now.plus_minutes(DEFAULT_ECG_URGENT_SLA_MINUTES));
        assert!(d.explanation.contains("STEMI"), "{}", d.explanation);
        // Chest pain from the site: urgent (one step), same short SLA.
        let d = route(&facts("tw-a", &["ECG"], true), &r, now).unwrap();
        assert_eq!(
            (d.priority, d.due_at),
            (Priority::Urgent, now.plus_minutes(10))
        );
        // A rule's own urgent SLA wins.
        r.rules.last_mut().unwrap().urgent_sla_minutes = Some(5);
        let d = route(&f, &r, now).unwrap();
        assert_eq!(d.due_at, now.plus_minutes(5));
    }

    #[test]
    fn overdue_unclaimed_exams_escalate_once() {
        let mut r = rules();
        r.rules[0].escalate_to = Some("city-rad".into());
        let due = UnixMillis(600_000);
        let f = EscalationFacts {
            rule: "township-ct".into(),
            pool: PoolId::new("county-rad").unwrap(),
            priority: Priority::Urgent,
            due_at: due,
            claimed: false,
            already_escalated: false,
        };
        assert_eq!(escalate(&f, &r, UnixMillis(599_999)), None);
        let e = escalate(&f, &r, UnixMillis(600_000 + 3 * 60_000)).unwrap();
        assert_eq!(e.priority, Priority::Stat);
        assert_eq!(e.to_pool.as_ref().map(|p| p.as_str()), Some("city-rad"));
        assert!(e.explanation.contains("3 min"), "{}", e.explanation);
        let claimed = EscalationFacts {
            claimed: true,
            ..f.clone()
        };
        assert_eq!(escalate(&claimed, &r, UnixMillis(10_000_000)), None);
        let done = EscalationFacts {
            already_escalated: true,
            ..f.clone()
        };
        assert_eq!(escalate(&done, &r, UnixMillis(10_000_000)), None);
        // A rule without escalate_to still raises the exam to stat in its own pool.
        let other = EscalationFacts {
            rule: "any-xray".into(),
            ..f
        };
        assert_eq!(
            escalate(&other, &r, UnixMillis(10_000_000))
                .unwrap()
                .to_pool,
            None
        );
    }

    #[test]
    fn no_match_says_what_was_looked_for() {
        let e = route(&facts("tw-c", &["CT"], false), &rules(), UnixMillis(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no routing rule matches site tw-c with modalities CT"
        );
    }

    #[test]
    fn validation_names_the_rule() {
        let bad = toml_rules(&[("oops", &[][..], &[][..], "county-rad", "soon", 10)]);
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "routing rule \"oops\" is invalid: unknown priority \"soon\""
        );
        assert!(rules().validate().is_ok());
    }
}
