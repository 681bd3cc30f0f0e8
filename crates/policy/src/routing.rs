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
}

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
        }
        Ok(())
    }
}

/// Picks the first rule whose sites and modalities match. An urgent flag raises the priority one step
/// and quarters the SLA.
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
        let (priority, sla) = if facts.urgent {
            (base.raised(), (rule.sla_minutes / 4).max(1))
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
        if facts.urgent {
            explanation
                .push_str(" (marked urgent by the uploader: priority raised, SLA quartered)");
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
                })
                .collect(),
        }
    }

    fn facts(site: &str, m: &[&str], urgent: bool) -> RoutingFacts {
        RoutingFacts {
            site: SiteId::new(site).unwrap(),
            modalities: m.iter().map(|x| x.to_string()).collect(),
            urgent,
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
