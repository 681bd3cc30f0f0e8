//! Yilian's policy: pure decisions with explanations. `route` puts an exam on a pool's worklist;
//! `recognise` says whether a published result is mutually recognised (互认), `recognise_lab` the same for a lab panel and each of its results; `ecg_alerts` says what in
//! an ECG makes it urgent; `escalate` decides when an overdue exam goes up a tier; `duty` says who is on duty and who is offered an exam; `decision` checks a receiving clinician's accept/decline (互认决定) and computes recognition rates; `lab` finds critical values, checks EQA and decides whether a panel needs review. It only plans; `yilian-app`
//! carries decisions out. No I/O, no clock: time is an argument.

pub mod calendar;
pub mod decision;
pub mod duty;
pub mod ecg;
pub mod lab;
pub mod recognition;
pub mod routing;

pub use decision::{
    Decision, DecisionError, DecisionFact, DeclineReason, RecognitionRate, parse_decision,
    recognition_rates,
};
pub use duty::{
    Candidate, Duty, ExamNeeds, Leave, Offer, Qualifications, Rota, Shift, offer, qualified,
};
pub use ecg::{EcgAlertFacts, EcgAlertRules, ecg_alerts};
pub use recognition::{
    LabRecognition, LabRecognitionFacts, LabResultRecognition, NewerReport, RecognitionDecision,
    RecognitionFacts, RecognitionRule, RecognitionRules, recognise, recognise_lab,
};
pub use routing::{
    DEFAULT_UTC_OFFSET_MINUTES, Escalation, EscalationFacts, RouteDecision, RouteError,
    RoutingFacts, RoutingRule, RoutingRules, RuleProblem, escalate, next_step_due, route,
};
