//! Yilian app: the use cases (ingest, route, claim, report, sign, publish, look up) over ports for the
//! catalog, blobs, signing keys and the clock. Every protocol front end (DICOMweb today; DIMSE, MLLP
//! and the upload page later) calls these same functions. Authorisation is decided here, once.

pub mod access;
pub mod audit_trail;
pub mod coordination;
pub mod duty;
pub mod ecg;
pub mod error;
pub mod exports;
pub mod hub;
pub mod ingest;
pub mod lab;
pub mod lab_fhir;
pub mod lab_review;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod patients;
pub mod ports;
pub mod reading;
pub mod recognition;
pub mod render_cache;
pub mod rendering;
pub mod repair;
pub mod results;
pub mod routing;
pub mod search;
pub mod templates;
pub mod timestamp;
pub mod tokens;

pub use access::{Action, Principal, allowed};
pub use error::AppError;
pub use hub::{Hub, SystemClock};
pub use ports::*;
pub use search::{MAX_MATCHES, SearchResult, uid_query};
