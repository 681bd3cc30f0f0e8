//! Yilian signing: the canonical bytes of a report (RFC 8785 JSON canonicalisation), Ed25519 keys,
//! and the one verification routine both the hub (`/verify`) and the offline `yilian verify` use.
//! No storage, no HTTP.

pub mod canonical;
pub mod document;
pub mod keys;

pub use canonical::{CanonError, canonicalize};
pub use document::{
    PublicKeyRecord, SignatureBlock, SignedDocument, Verified, VerifyError, format_time,
    parse_time, verify_document,
};
pub use keys::{ALGORITHM_ED25519, KeyError, SigningKeyPair};
