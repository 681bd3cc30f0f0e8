//! Yilian's policy: pure decisions with explanations. `route` puts an exam on a pool's worklist;
//! `recognise` says whether a published result is mutually recognised (互认). It only plans; `yilian-app`
//! carries decisions out. No I/O, no clock: time is an argument.

pub mod recognition;
pub mod routing;

pub use recognition::{
    RecognitionDecision, RecognitionFacts, RecognitionRule, RecognitionRules, recognise,
};
pub use routing::{RouteDecision, RoutingFacts, RoutingRule, RoutingRules, route};
