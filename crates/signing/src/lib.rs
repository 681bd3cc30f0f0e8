//! Yilian signing: the canonical bytes of a report (RFC 8785 JSON canonicalisation), SM2/SM3 and
//! Ed25519 keys, passphrase-sealed key files, the hub's countersignature, and the one verification
//! routine both the hub (`/verify`) and the offline `yilian verify` use. No storage, no HTTP.

pub mod canonical;
pub mod document;
pub mod keyfile;
pub mod keys;

pub use canonical::{CanonError, canonicalize};
pub use document::{
    Check, CheckStatus, CountersignError, Countersignature, Evidence, HUB_KEY_OWNER,
    LatestEvidence, PublicKeyRecord, ResultsEvidence, SignatureBlock, SignedDocument, Verification,
    Verified, VerifyError, countersign_message, format_time, parse_time, referenced_instances,
    verify, verify_countersignature, verify_document,
};
pub use keyfile::{KeyFile, KeyFileError, Passphrase};
pub use keys::{
    ALGORITHM_ED25519, ALGORITHM_SM2, Algorithm, KeyError, SM2_DISTID, SigningKeyPair, key_id_of,
    sm3_hex, verify_raw,
};
