//! Routing: the facts of a complete study (site, modality, kind, body part, description, urgency,
//! patient age) and the alliance's local time → a reading pool, priority, due time and whether a
//! senior review is required, with the rule that decided and why. Also escalation of overdue exams.

use serde::Deserialize;
use yilian_domain::{ExamKind, PoolId, Priority, SiteId, UnixMillis};

use crate::calendar::{Date, HoursWindow, LocalTime, Weekday, age_years};

/// One rule as an alliance admin writes it in `config/` (`[[routing.rules]]`). First match wins. Every
/// matcher is optional: one left out (or empty) matches anything; the ones a rule sets must all match.
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
    /// Exam kinds (`imaging`, `ecg`); empty means any.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// DICOM Body Part Examined values (CHEST, HEAD…), any series of the study, case-insensitive;
    /// empty means any (and a study without the attribute matches only an empty list).
    #[serde(default)]
    pub body_parts: Vec<String>,
    /// Any of these substrings of the Study Description, case-insensitive; empty means any.
    #[serde(default)]
    pub description_contains: Vec<String>,
    /// `true`: only urgent exams (the uploader's flag or an alert in the data); `false`: only
    /// non-urgent ones; absent: both.
    #[serde(default)]
    pub urgent: Option<bool>,
    /// Patient age at routing in whole years, from Patient's Birth Date, inclusive. A rule with an
    /// age bound never matches a patient whose birth date is unknown.
    #[serde(default)]
    pub min_age_years: Option<u32>,
    /// Inclusive upper bound of the age (a patient of 14 years and 11 months is 14).
    #[serde(default)]
    pub max_age_years: Option<u32>,
    /// A daily window of the alliance's local time, `HH:MM-HH:MM` (start in, end out); a start after
    /// the end wraps midnight (`22:00-06:00`).
    #[serde(default)]
    pub hours: Option<String>,
    /// Local days of the week (`mon` … `sun`) on which the rule applies; empty means every day. The
    /// day is the local date at routing time (so with `hours = "22:00-06:00"`, `days = ["sat"]` covers
    /// Saturday 00:00–06:00 and 22:00–24:00).
    #[serde(default)]
    pub days: Vec<String>,
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
    /// First escalation step: a pool (usually of the same tier) whose readers also see the exam once
    /// it is past due and unclaimed. When set, `escalate_to` becomes the second step.
    #[serde(default)]
    pub fallback_pool: Option<String>,
    /// A pool of a higher tier whose readers also see the exam once it is past due and unclaimed
    /// (escalation). After `fallback_pool` when both are set. Without either an overdue exam is still
    /// raised to stat in its own pool.
    #[serde(default)]
    pub escalate_to: Option<String>,
    /// A senior (second) review of the report is required. Stored on the exam and shown on the
    /// worklist; the review workflow itself is not part of routing.
    #[serde(default)]
    pub review: bool,
    /// The exam is offered only to readers with this subspecialty (`[[users]] subspecialties`), e.g.
    /// `neuro` for stroke CTs. Absent: any reader of the pool qualified for the modality.
    #[serde(default)]
    pub subspecialty: Option<String>,
}

/// A rule that matches everything, routine, with no pool or SLA yet: a base for rules built in code.
impl Default for RoutingRule {
    fn default() -> Self {
        RoutingRule {
            name: String::new(),
            sites: Vec::new(),
            modalities: Vec::new(),
            kinds: Vec::new(),
            body_parts: Vec::new(),
            description_contains: Vec::new(),
            urgent: None,
            min_age_years: None,
            max_age_years: None,
            hours: None,
            days: Vec::new(),
            pool: String::new(),
            priority: routine(),
            sla_minutes: 0,
            urgent_sla_minutes: None,
            fallback_pool: None,
            escalate_to: None,
            review: false,
            subspecialty: None,
        }
    }
}

/// The urgent SLA of an ECG when its rule sets none: a STEMI must be read in minutes.
pub const DEFAULT_ECG_URGENT_SLA_MINUTES: i64 = 10;

/// China Standard Time (UTC+08:00), the default of `alliance.utc_offset_minutes`.
pub const DEFAULT_UTC_OFFSET_MINUTES: i32 = 480;

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
    /// Imaging or ECG.
    pub kind: ExamKind,
    /// Body Part Examined of the study's series (those that carry it).
    pub body_parts: Vec<String>,
    /// Study Description, when the study has one.
    pub study_description: Option<String>,
    /// Patient's Birth Date as DICOM DA (`YYYYMMDD`), when known.
    pub patient_birth_date: Option<String>,
    /// The alliance's offset from UTC; `now` plus this is the local time `hours` and `days` see.
    pub utc_offset_minutes: i32,
}

impl RoutingFacts {
    /// Facts with only site and modalities known: not urgent, no alerts, the kind from the first
    /// modality, no body part, description or birth date, China Standard Time.
    pub fn new(site: SiteId, modalities: Vec<String>) -> Self {
        let kind = ExamKind::of_modality(modalities.first().map(String::as_str).unwrap_or(""));
        RoutingFacts {
            site,
            modalities,
            urgent: false,
            alerts: Vec::new(),
            kind,
            body_parts: Vec::new(),
            study_description: None,
            patient_birth_date: None,
            utc_offset_minutes: DEFAULT_UTC_OFFSET_MINUTES,
        }
    }

    /// The uploader's flag or an alert in the data.
    pub fn is_urgent(&self) -> bool {
        self.urgent || !self.alerts.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDecision {
    pub rule: String,
    pub pool: PoolId,
    pub priority: Priority,
    pub due_at: UnixMillis,
    /// A senior review of the report is required.
    pub review: bool,
    /// Only readers with this subspecialty are offered the exam.
    pub subspecialty: Option<String>,
    /// Why, in words a person can read: the rule, every matcher that decided, and the target.
    pub explanation: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no routing rule matches site {site} with modalities {modalities}")]
    NoRule { site: String, modalities: String },
    #[error("routing rule {rule:?} is invalid: {reason}")]
    BadRule { rule: String, reason: String },
}

/// What is wrong with one key of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleProblem {
    /// The key as written in the rule (`days`, `hours`…).
    pub key: &'static str,
    pub message: String,
}

impl RouteError {
    /// The rule an invalid-rule error is about.
    pub fn rule(&self) -> Option<&str> {
        match self {
            RouteError::BadRule { rule, .. } => Some(rule),
            RouteError::NoRule { .. } => None,
        }
    }
}

impl RoutingRule {
    /// Checks one rule (priority and kinds spelled right, pool ids well-formed, SLA positive, age
    /// bounds ordered, hours and days readable). The problem names the key and the offending value.
    pub fn check(&self) -> Result<(), RuleProblem> {
        let problem = |key: &'static str, message: String| RuleProblem { key, message };
        Priority::parse(&self.priority).ok_or_else(|| {
            problem(
                "priority",
                format!(
                    "unknown priority {:?} (stat, urgent, routine)",
                    self.priority
                ),
            )
        })?;
        PoolId::new(self.pool.clone()).map_err(|e| problem("pool", format!("pool: {e}")))?;
        if self.sla_minutes <= 0 {
            return Err(problem(
                "sla_minutes",
                "sla_minutes must be positive".into(),
            ));
        }
        if self.urgent_sla_minutes.is_some_and(|m| m <= 0) {
            return Err(problem(
                "urgent_sla_minutes",
                "urgent_sla_minutes must be positive".into(),
            ));
        }
        for (key, p) in [
            ("escalate_to", &self.escalate_to),
            ("fallback_pool", &self.fallback_pool),
        ] {
            if let Some(p) = p {
                PoolId::new(p.clone()).map_err(|e| problem(key, format!("{key}: {e}")))?;
            }
        }
        for k in &self.kinds {
            ExamKind::parse(k)
                .ok_or_else(|| problem("kinds", format!("unknown kind {k:?} (imaging, ecg)")))?;
        }
        for d in &self.days {
            Weekday::parse(d)
                .ok_or_else(|| problem("days", format!("unknown day {d:?} (mon … sun)")))?;
        }
        if let Some(h) = &self.hours {
            HoursWindow::parse(h).map_err(|m| problem("hours", m))?;
        }
        if let (Some(lo), Some(hi)) = (self.min_age_years, self.max_age_years)
            && lo > hi
        {
            return Err(problem(
                "min_age_years",
                format!("min_age_years {lo} is above max_age_years {hi}"),
            ));
        }
        for (key, list) in [
            ("body_parts", &self.body_parts),
            ("description_contains", &self.description_contains),
            ("sites", &self.sites),
            ("modalities", &self.modalities),
        ] {
            if list.iter().any(|v| v.trim().is_empty()) {
                return Err(problem(key, format!("{key} has an empty entry")));
            }
        }
        Ok(())
    }

    /// The reasons this rule matches the facts at local time `at`, one per matcher it sets, or
    /// `None` when any matcher fails.
    fn matches(&self, facts: &RoutingFacts, at: &LocalTime) -> Option<Vec<String>> {
        let mut why = Vec::new();
        if self.sites.is_empty() {
            why.push("any site".to_string());
        } else if self.sites.iter().any(|s| s == facts.site.as_str()) {
            why.push(format!("site {}", facts.site));
        } else {
            return None;
        }
        if self.modalities.is_empty() {
            if let Some(m) = facts.modalities.first() {
                why.push(format!("modality {m}"));
            }
        } else {
            let m = facts
                .modalities
                .iter()
                .find(|m| self.modalities.iter().any(|r| r.eq_ignore_ascii_case(m)))?;
            why.push(format!("modality {m}"));
        }
        if !self.kinds.is_empty() {
            if !self
                .kinds
                .iter()
                .any(|k| ExamKind::parse(k) == Some(facts.kind))
            {
                return None;
            }
            why.push(format!("kind {}", facts.kind.as_str()));
        }
        if !self.body_parts.is_empty() {
            let part = facts.body_parts.iter().find(|b| {
                self.body_parts
                    .iter()
                    .any(|r| r.trim().eq_ignore_ascii_case(b.trim()))
            })?;
            why.push(format!("body part {}", part.trim()));
        }
        if !self.description_contains.is_empty() {
            let desc = facts.study_description.as_deref()?.to_lowercase();
            let term = self
                .description_contains
                .iter()
                .find(|t| desc.contains(&t.to_lowercase()))?;
            why.push(format!("description contains {term:?}"));
        }
        if let Some(want) = self.urgent {
            if facts.is_urgent() != want {
                return None;
            }
            why.push(if want { "urgent" } else { "not urgent" }.to_string());
        }
        if self.min_age_years.is_some() || self.max_age_years.is_some() {
            let birth = facts
                .patient_birth_date
                .as_deref()
                .and_then(Date::parse_dicom)?;
            let age = age_years(birth, at.date)?;
            if self.min_age_years.is_some_and(|lo| age < lo)
                || self.max_age_years.is_some_and(|hi| age > hi)
            {
                return None;
            }
            let bound = match (self.min_age_years, self.max_age_years) {
                (Some(lo), Some(hi)) => format!("{lo}–{hi}"),
                (Some(lo), None) => format!("≥ {lo}"),
                (None, Some(hi)) => format!("≤ {hi}"),
                (None, None) => String::new(),
            };
            why.push(format!("patient age {age} ({bound})"));
        }
        if let Some(h) = &self.hours {
            let window = HoursWindow::parse(h).ok()?;
            if !window.contains(at.minute_of_day) {
                return None;
            }
            why.push(format!("local time {} within {}", at.hhmm(), h.trim()));
        }
        if !self.days.is_empty() {
            if !self
                .days
                .iter()
                .any(|d| Weekday::parse(d) == Some(at.weekday))
            {
                return None;
            }
            why.push(format!("day {}", at.weekday.as_str()));
        }
        Some(why)
    }
}

impl RoutingRules {
    /// Checks every rule once; the error names the rule.
    pub fn validate(&self) -> Result<(), RouteError> {
        for r in &self.rules {
            r.check().map_err(|p| RouteError::BadRule {
                rule: r.name.clone(),
                reason: p.message,
            })?;
        }
        Ok(())
    }

    /// The names of the rules, in the order they are tried.
    pub fn names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }
}

/// Picks the first rule whose matchers all hold for the facts at `now` (local time: `now` plus
/// `facts.utc_offset_minutes`). An urgent flag raises the priority one step; an alert makes it stat.
/// Either shortens the SLA to the rule's urgent SLA. The explanation names the rule, every matcher
/// that decided and the target.
pub fn route(
    facts: &RoutingFacts,
    rules: &RoutingRules,
    now: UnixMillis,
) -> Result<RouteDecision, RouteError> {
    let at = LocalTime::at(now, facts.utc_offset_minutes);
    for rule in &rules.rules {
        let Some(why) = rule.matches(facts, &at) else {
            continue;
        };
        let bad = |reason: String| RouteError::BadRule {
            rule: rule.name.clone(),
            reason,
        };
        let base = Priority::parse(&rule.priority)
            .ok_or_else(|| bad(format!("unknown priority {:?}", rule.priority)))?;
        let pool = PoolId::new(rule.pool.clone()).map_err(|e| bad(e.to_string()))?;
        let urgent_sla = rule
            .urgent_sla_minutes
            .unwrap_or(if facts.kind == ExamKind::Ecg {
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
        let mut explanation = format!(
            "rule {:?} matched {}: pool {pool}, {} priority, due in {sla} min",
            rule.name,
            why.join(", "),
            priority.as_str()
        );
        if rule.review {
            explanation.push_str(", senior review required");
        }
        if let Some(s) = &rule.subspecialty {
            explanation.push_str(&format!(", for a {s} reader"));
        }
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
            review: rule.review,
            subspecialty: rule.subspecialty.clone(),
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
    /// The pool the first escalation step showed the exam to, if any.
    pub escalated_pool: Option<PoolId>,
    /// When the first step happened.
    pub escalated_at: Option<UnixMillis>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escalation {
    /// The pool that now also sees the exam, when the rule names one.
    pub to_pool: Option<PoolId>,
    pub priority: Priority,
    /// When the next step falls due if the exam is still unclaimed (`fallback_pool` first, then
    /// `escalate_to`); `None` when this is the last step.
    pub next_step_at: Option<UnixMillis>,
    pub explanation: String,
}

fn pool_of(p: Option<&String>) -> Option<PoolId> {
    p.and_then(|p| PoolId::new(p.clone()).ok())
}

/// The rule's fallback pool, its senior (`escalate_to`) pool and the minutes between the two steps, as
/// the rules in force say for an exam routed by `facts.rule` to `facts.pool`.
fn ladder(facts: &EscalationFacts, rules: &RoutingRules) -> (Option<PoolId>, Option<PoolId>, i64) {
    let rule = rules.rules.iter().find(|r| r.name == facts.rule);
    let fallback = rule
        .and_then(|r| pool_of(r.fallback_pool.as_ref()))
        .filter(|p| p != &facts.pool);
    let senior = rule
        .and_then(|r| pool_of(r.escalate_to.as_ref()))
        .filter(|p| p != &facts.pool && Some(p) != fallback.as_ref());
    let step_minutes = rule
        .map(|r| r.urgent_sla_minutes.unwrap_or((r.sla_minutes / 4).max(1)))
        .unwrap_or(60);
    (fallback, senior, step_minutes)
}

/// When the second escalation step of an exam already escalated to its fallback pool falls due under
/// the rules in force; `None` when those rules (after a reload, say) have no second step for it. The
/// sweep uses it to reschedule or drop a step the rules no longer take.
pub fn next_step_due(facts: &EscalationFacts, rules: &RoutingRules) -> Option<UnixMillis> {
    let (fallback, senior, step_minutes) = ladder(facts, rules);
    let at = facts.escalated_at?;
    senior?;
    (facts.escalated_pool.is_some() && facts.escalated_pool == fallback)
        .then(|| at.plus_minutes(step_minutes))
}

/// An exam that is past due, unreported and unclaimed escalates: it becomes stat and, when its rule
/// names `fallback_pool` (else `escalate_to`), appears on that pool's worklist too. With both set,
/// an exam still unclaimed the rule's urgent SLA after that first step moves on to `escalate_to`.
pub fn escalate(
    facts: &EscalationFacts,
    rules: &RoutingRules,
    now: UnixMillis,
) -> Option<Escalation> {
    if facts.claimed {
        return None;
    }
    let rule = rules.rules.iter().find(|r| r.name == facts.rule);
    let (fallback, senior, step_minutes) = ladder(facts, rules);
    if facts.already_escalated {
        // The second step: only from the fallback pool, only once the step's time has come.
        let (Some(at), Some(from), Some(to)) = (facts.escalated_at, &facts.escalated_pool, senior)
        else {
            return None;
        };
        if Some(from) != fallback.as_ref() || now < at.plus_minutes(step_minutes) {
            return None;
        }
        let waited = (now.0 - at.0) / 60_000;
        return Some(Escalation {
            explanation: format!(
                "still unclaimed {waited} min after pool {from} was asked: shown to pool {to}"
            ),
            to_pool: Some(to),
            priority: Priority::Stat,
            next_step_at: None,
        });
    }
    if now < facts.due_at {
        return None;
    }
    let (to_pool, next_step_at) = match (fallback, senior) {
        (Some(f), Some(_)) => (Some(f), Some(now.plus_minutes(step_minutes))),
        (Some(f), None) => (Some(f), None),
        (None, s) => (s, None),
    };
    let overdue_min = (now.0 - facts.due_at.0) / 60_000;
    let mut explanation =
        format!("unclaimed {overdue_min} min past its due time: escalated to stat");
    if let Some(p) = &to_pool {
        explanation.push_str(&format!(" and shown to pool {p}"));
    }
    if let (Some(t), Some(r)) = (next_step_at, rule.and_then(|r| r.escalate_to.as_ref())) {
        explanation.push_str(&format!(
            " (pool {r} next if still unclaimed in {} min)",
            (t.0 - now.0) / 60_000
        ));
    }
    Some(Escalation {
        to_pool,
        priority: Priority::Stat,
        next_step_at,
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
                    ..RoutingRule::default()
                })
                .collect(),
        }
    }

    fn facts(site: &str, m: &[&str], urgent: bool) -> RoutingFacts {
        RoutingFacts {
            urgent,
            ..RoutingFacts::new(
                SiteId::new(site).unwrap(),
                m.iter().map(|x| x.to_string()).collect(),
            )
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
            escalate_to: Some("city-ecg".into()),
            ..RoutingRule::default()
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
            escalated_pool: None,
            escalated_at: None,
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
            "routing rule \"oops\" is invalid: unknown priority \"soon\" (stat, urgent, routine)"
        );
        assert!(rules().validate().is_ok());
    }

    /// 2026-03-03 (a Tuesday) at the given Beijing time.
    fn beijing(h: i64, m: i64) -> UnixMillis {
        // 2026-03-03T00:00+08:00 = 2026-03-02T16:00Z.
        UnixMillis(1_772_467_200_000 + (h * 60 + m) * 60_000)
    }

    fn one(rule: RoutingRule) -> RoutingRules {
        RoutingRules {
            rules: vec![
                rule,
                RoutingRule {
                    name: "default".into(),
                    pool: "county-rad".into(),
                    sla_minutes: 1440,
                    ..RoutingRule::default()
                },
            ],
        }
    }

    fn rule(name: &str) -> RoutingRule {
        RoutingRule {
            name: name.into(),
            pool: "special".into(),
            priority: "routine".into(),
            sla_minutes: 60,
            ..RoutingRule::default()
        }
    }

    fn ct_facts() -> RoutingFacts {
        facts("tw-a", &["CT"], false)
    }

    /// The rule that routes `f` at `now` and its explanation.
    fn decide(r: &RoutingRules, f: &RoutingFacts, now: UnixMillis) -> (String, String) {
        let d = route(f, r, now).unwrap();
        (d.rule, d.explanation)
    }

    #[test]
    fn kind_matches_imaging_or_ecg() {
        let r = one(RoutingRule {
            kinds: vec!["ecg".into()],
            ..rule("ecg-only")
        });
        let ecg = facts("tw-a", &["ECG"], false);
        let (name, why) = decide(&r, &ecg, beijing(9, 0));
        assert_eq!(name, "ecg-only");
        assert!(why.contains("kind ecg"), "{why}");
        assert_eq!(decide(&r, &ct_facts(), beijing(9, 0)).0, "default");
    }

    #[test]
    fn body_part_matches_any_series_case_insensitively() {
        let r = one(RoutingRule {
            body_parts: vec!["CHEST".into()],
            ..rule("chest")
        });
        let mut f = ct_facts();
        f.body_parts = vec!["ABDOMEN".into(), "chest ".into()];
        let (name, why) = decide(&r, &f, beijing(9, 0));
        assert_eq!(name, "chest");
        assert!(why.contains("body part chest"), "{why}");
        f.body_parts = vec!["HEAD".into()];
        assert_eq!(decide(&r, &f, beijing(9, 0)).0, "default");
        f.body_parts.clear();
        assert_eq!(
            decide(&r, &f, beijing(9, 0)).0,
            "default",
            "no body part: no match"
        );
    }

    #[test]
    fn description_matches_any_substring_case_insensitively() {
        let r = one(RoutingRule {
            description_contains: vec!["stroke".into(), "卒中".into()],
            ..rule("stroke")
        });
        let mut f = ct_facts();
        f.study_description = Some("CT Head - STROKE protocol".into());
        let (name, why) = decide(&r, &f, beijing(9, 0));
        assert_eq!(name, "stroke");
        assert!(why.contains("description contains \"stroke\""), "{why}");
        f.study_description = Some("头颅平扫 疑似卒中".into());
        assert_eq!(decide(&r, &f, beijing(9, 0)).0, "stroke");
        f.study_description = Some("CT chest".into());
        assert_eq!(decide(&r, &f, beijing(9, 0)).0, "default");
        f.study_description = None;
        assert_eq!(decide(&r, &f, beijing(9, 0)).0, "default");
    }

    #[test]
    fn urgent_selects_urgent_or_non_urgent_exams() {
        let only_urgent = one(RoutingRule {
            urgent: Some(true),
            ..rule("urgent-ct")
        });
        let (name, why) = decide(&only_urgent, &facts("tw-a", &["CT"], true), beijing(9, 0));
        assert_eq!(name, "urgent-ct");
        assert!(why.contains(", urgent"), "{why}");
        assert_eq!(
            decide(&only_urgent, &ct_facts(), beijing(9, 0)).0,
            "default"
        );
        // An alert in the data makes an exam urgent whatever the uploader said.
        let mut alerted = facts("tw-a", &["ECG"], false);
        alerted.alerts = vec!["heart rate 182 bpm".into()];
        assert_eq!(decide(&only_urgent, &alerted, beijing(9, 0)).0, "urgent-ct");

        let calm = one(RoutingRule {
            urgent: Some(false),
            ..rule("calm-ct")
        });
        let (name, why) = decide(&calm, &ct_facts(), beijing(9, 0));
        assert_eq!(name, "calm-ct");
        assert!(why.contains("not urgent"), "{why}");
        assert_eq!(
            decide(&calm, &facts("tw-a", &["CT"], true), beijing(9, 0)).0,
            "default"
        );
    }

    #[test]
    fn age_bounds_are_inclusive_and_need_a_birth_date() {
        let r = one(RoutingRule {
            min_age_years: Some(65),
            ..rule("elderly")
        });
        let mut f = ct_facts();
        // 65th birthday is 2026-03-03, the day of routing (local date).
        f.patient_birth_date = Some("19610303".into());
        let (name, why) = decide(&r, &f, beijing(9, 0));
        assert_eq!(name, "elderly");
        assert!(why.contains("patient age 65 (≥ 65)"), "{why}");
        f.patient_birth_date = Some("19610304".into());
        assert_eq!(decide(&r, &f, beijing(9, 0)).0, "default", "64 years old");
        f.patient_birth_date = None;
        assert_eq!(decide(&r, &f, beijing(9, 0)).0, "default", "unknown age");
        f.patient_birth_date = Some("not a date".into());
        assert_eq!(decide(&r, &f, beijing(9, 0)).0, "default", "unreadable age");

        let child = one(RoutingRule {
            max_age_years: Some(14),
            ..rule("paediatric")
        });
        f.patient_birth_date = Some("20110304".into()); // 14 until 2026-03-04
        let (name, why) = decide(&child, &f, beijing(9, 0));
        assert_eq!(name, "paediatric");
        assert!(why.contains("patient age 14 (≤ 14)"), "{why}");
        f.patient_birth_date = Some("20110303".into()); // 15 today
        assert_eq!(decide(&child, &f, beijing(9, 0)).0, "default");
        // The age is taken on the local date: at 07:00 Beijing it is already the birthday, though
        // UTC is still on the day before.
        f.patient_birth_date = Some("19610303".into());
        assert_eq!(decide(&r, &f, beijing(7, 0)).0, "elderly");
        f.utc_offset_minutes = 0;
        assert_eq!(decide(&r, &f, beijing(7, 0)).0, "default");
    }

    #[test]
    fn hours_use_the_alliance_local_time_and_may_wrap_midnight() {
        let r = one(RoutingRule {
            hours: Some("22:00-06:00".into()),
            ..rule("night")
        });
        let f = ct_facts();
        let (name, why) = decide(&r, &f, beijing(23, 15));
        assert_eq!(name, "night");
        assert!(why.contains("local time 23:15 within 22:00-06:00"), "{why}");
        assert_eq!(decide(&r, &f, beijing(5, 59)).0, "night");
        assert_eq!(decide(&r, &f, beijing(6, 0)).0, "default");
        assert_eq!(decide(&r, &f, beijing(14, 0)).0, "default");
        // 14:00 Beijing is 06:00 UTC: the offset decides.
        let mut utc = f.clone();
        utc.utc_offset_minutes = 0;
        assert_eq!(decide(&r, &utc, beijing(13, 59)).0, "night");
    }

    #[test]
    fn days_use_the_local_date() {
        let r = one(RoutingRule {
            days: vec!["sat".into(), "sun".into()],
            ..rule("weekend")
        });
        let f = ct_facts();
        assert_eq!(decide(&r, &f, beijing(9, 0)).0, "default", "a Tuesday");
        let saturday = beijing(9, 0).plus_days(4);
        let (name, why) = decide(&r, &f, saturday);
        assert_eq!(name, "weekend");
        assert!(why.contains("day sat"), "{why}");
        // Monday 07:00 in Beijing is still Sunday in UTC.
        let monday_early = beijing(7, 0).plus_days(6);
        assert_eq!(decide(&r, &f, monday_early).0, "default");
        let mut utc = f.clone();
        utc.utc_offset_minutes = 0;
        assert_eq!(decide(&r, &utc, monday_early).0, "weekend");
    }

    #[test]
    fn the_explanation_names_every_matcher_and_the_target() {
        let r = one(RoutingRule {
            sites: vec!["tw-a".into()],
            modalities: vec!["CT".into()],
            kinds: vec!["imaging".into()],
            body_parts: vec!["HEAD".into()],
            description_contains: vec!["stroke".into()],
            urgent: Some(true),
            min_age_years: Some(18),
            hours: Some("18:00-08:00".into()),
            days: vec!["tue".into()],
            priority: "urgent".into(),
            review: true,
            ..rule("night-stroke")
        });
        let mut f = facts("tw-a", &["CT"], true);
        f.body_parts = vec!["HEAD".into()];
        f.study_description = Some("Stroke CT".into());
        f.patient_birth_date = Some("19500101".into());
        let d = route(&f, &r, beijing(2, 30)).unwrap();
        assert!(d.review);
        assert_eq!(d.priority, Priority::Stat);
        assert_eq!(
            d.explanation,
            "rule \"night-stroke\" matched site tw-a, modality CT, kind imaging, body part HEAD, \
             description contains \"stroke\", urgent, patient age 76 (≥ 18), local time 02:30 within \
             18:00-08:00, day tue: pool special, stat priority, due in 15 min, senior review required \
             (marked urgent by the uploader: priority raised, urgent SLA)"
        );
        // Any one matcher failing sends the study on to the next rule.
        let mut other = f.clone();
        other.body_parts = vec!["CHEST".into()];
        assert_eq!(route(&other, &r, beijing(2, 30)).unwrap().rule, "default");
        assert!(!route(&other, &r, beijing(2, 30)).unwrap().review);
    }

    #[test]
    fn validation_refuses_unreadable_matchers() {
        let cases = [
            (
                RoutingRule {
                    days: vec!["mo".into()],
                    ..rule("d")
                },
                "unknown day \"mo\"",
            ),
            (
                RoutingRule {
                    hours: Some("8-17".into()),
                    ..rule("h")
                },
                "hours \"8-17\"",
            ),
            (
                RoutingRule {
                    kinds: vec!["lab".into()],
                    ..rule("k")
                },
                "unknown kind \"lab\"",
            ),
            (
                RoutingRule {
                    min_age_years: Some(70),
                    max_age_years: Some(60),
                    ..rule("a")
                },
                "min_age_years 70 is above max_age_years 60",
            ),
            (
                RoutingRule {
                    fallback_pool: Some("Bad Pool".into()),
                    ..rule("f")
                },
                "fallback_pool:",
            ),
            (
                RoutingRule {
                    body_parts: vec![" ".into()],
                    ..rule("b")
                },
                "body_parts has an empty entry",
            ),
        ];
        for (r, want) in cases {
            let e = one(r).validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        }
    }

    #[test]
    fn escalation_asks_the_fallback_pool_before_the_senior_pool() {
        let r = one(RoutingRule {
            fallback_pool: Some("county-rad-2".into()),
            escalate_to: Some("city-rad".into()),
            urgent_sla_minutes: Some(20),
            ..rule("ladder")
        });
        let due = UnixMillis(600_000);
        let f = EscalationFacts {
            rule: "ladder".into(),
            pool: PoolId::new("special").unwrap(),
            priority: Priority::Routine,
            due_at: due,
            claimed: false,
            already_escalated: false,
            escalated_pool: None,
            escalated_at: None,
        };
        let first = escalate(&f, &r, due).unwrap();
        assert_eq!(
            first.to_pool.as_ref().map(|p| p.as_str()),
            Some("county-rad-2")
        );
        assert_eq!(first.next_step_at, Some(due.plus_minutes(20)));
        assert!(
            first.explanation.contains("city-rad next"),
            "{}",
            first.explanation
        );
        let after_first = EscalationFacts {
            already_escalated: true,
            escalated_pool: first.to_pool.clone(),
            escalated_at: Some(due),
            priority: Priority::Stat,
            ..f.clone()
        };
        assert_eq!(escalate(&after_first, &r, due.plus_minutes(19)), None);
        let second = escalate(&after_first, &r, due.plus_minutes(20)).unwrap();
        assert_eq!(
            second.to_pool.as_ref().map(|p| p.as_str()),
            Some("city-rad")
        );
        assert_eq!(second.next_step_at, None);
        assert!(
            second.explanation.contains("after pool county-rad-2"),
            "{}",
            second.explanation
        );
        // After the second step there is nothing further.
        let done = EscalationFacts {
            escalated_pool: second.to_pool,
            ..after_first.clone()
        };
        assert_eq!(escalate(&done, &r, due.plus_minutes(500)), None);
        // A lease stops the ladder.
        let claimed = EscalationFacts {
            claimed: true,
            ..after_first.clone()
        };
        assert_eq!(escalate(&claimed, &r, due.plus_minutes(500)), None);
        // Only a fallback pool: one step, nothing after it.
        let only = one(RoutingRule {
            fallback_pool: Some("county-rad-2".into()),
            ..rule("ladder")
        });
        let e = escalate(&f, &only, due).unwrap();
        assert_eq!((e.to_pool.is_some(), e.next_step_at), (true, None));

        // The second step under the rules in force: due 20 min after the first; a reload that
        // lengthens the step reschedules it; one that drops escalate_to drops it.
        assert_eq!(next_step_due(&after_first, &r), Some(due.plus_minutes(20)));
        let slower = one(RoutingRule {
            fallback_pool: Some("county-rad-2".into()),
            escalate_to: Some("city-rad".into()),
            urgent_sla_minutes: Some(45),
            ..rule("ladder")
        });
        assert_eq!(
            next_step_due(&after_first, &slower),
            Some(due.plus_minutes(45))
        );
        assert_eq!(next_step_due(&after_first, &only), None);
        assert_eq!(next_step_due(&f, &r), None, "not escalated yet");
    }
}
