//! Signed report documents and their verification.
//!
//! A document is `{"report": {...}, "signature": {...}}`. The signature covers exactly the canonical
//! bytes (RFC 8785) of `report`. `report.signer.key_id` must name the key in `signature.key_id`, and the
//! key must have been valid at `report.signed_at`. Times are UTC in the fixed form
//! `YYYY-MM-DDTHH:MM:SS.mmmZ`, so they order as text.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{CanonError, canonicalize};
use crate::keys::{ALGORITHM_ED25519, key_id_for};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SignatureBlock {
    pub algorithm: String,
    pub key_id: String,
    /// Standard base64 of the raw signature.
    pub value: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SignedDocument {
    pub report: Value,
    pub signature: SignatureBlock,
}

/// A published public key (`GET /api/v1/keys`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PublicKeyRecord {
    pub key_id: String,
    pub algorithm: String,
    /// Standard base64 of the raw public key.
    pub public_key: String,
    pub owner: String,
    pub valid_from: String,
    pub valid_to: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    pub owner: String,
    pub signed_at: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the report cannot be canonicalised: {0}")]
    Canonical(#[from] CanonError),
    #[error("the report lacks {0}")]
    MissingField(&'static str),
    #[error("no published key has id {0}")]
    UnknownKey(String),
    #[error("unsupported signature algorithm {0}")]
    Algorithm(String),
    #[error("the signature names key {signature} but the report's signer is {report}")]
    KeyMismatch { signature: String, report: String },
    #[error("key {key_id} was not valid at {signed_at} (valid {valid_from} to {valid_to})")]
    KeyNotValid {
        key_id: String,
        signed_at: String,
        valid_from: String,
        valid_to: String,
    },
    #[error("the published key {0} is malformed")]
    BadKey(String),
    #[error("the signature does not verify: the report or the signature was altered")]
    BadSignature,
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for epoch milliseconds.
pub fn format_time(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The inverse of [`format_time`].
pub fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

fn str_at<'a>(v: &'a Value, path: &[&'static str]) -> Result<&'a str, VerifyError> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p).ok_or(VerifyError::MissingField(p))?;
    }
    cur.as_str()
        .ok_or(VerifyError::MissingField(path[path.len() - 1]))
}

/// Verifies a document against published keys. Checks, in order: canonical form, signer/key match,
/// key known and of the right algorithm, key validity at signing time, the signature itself.
pub fn verify_document(
    doc: &SignedDocument,
    keys: &[PublicKeyRecord],
) -> Result<Verified, VerifyError> {
    let canonical = canonicalize(&doc.report)?;
    let signer_key = str_at(&doc.report, &["signer", "key_id"])?;
    let signed_at = str_at(&doc.report, &["signed_at"])?;
    if signer_key != doc.signature.key_id {
        return Err(VerifyError::KeyMismatch {
            signature: doc.signature.key_id.clone(),
            report: signer_key.to_string(),
        });
    }
    if doc.signature.algorithm != ALGORITHM_ED25519 {
        return Err(VerifyError::Algorithm(doc.signature.algorithm.clone()));
    }
    let key = keys
        .iter()
        .find(|k| k.key_id == doc.signature.key_id)
        .ok_or_else(|| VerifyError::UnknownKey(doc.signature.key_id.clone()))?;
    if key.algorithm != ALGORITHM_ED25519 {
        return Err(VerifyError::Algorithm(key.algorithm.clone()));
    }
    let at = parse_time(signed_at).ok_or(VerifyError::MissingField("signed_at"))?;
    let from =
        parse_time(&key.valid_from).ok_or_else(|| VerifyError::BadKey(key.key_id.clone()))?;
    let to = parse_time(&key.valid_to).ok_or_else(|| VerifyError::BadKey(key.key_id.clone()))?;
    if at < from || at > to {
        return Err(VerifyError::KeyNotValid {
            key_id: key.key_id.clone(),
            signed_at: signed_at.to_string(),
            valid_from: key.valid_from.clone(),
            valid_to: key.valid_to.clone(),
        });
    }
    let pk_bytes: [u8; 32] = STANDARD
        .decode(&key.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| VerifyError::BadKey(key.key_id.clone()))?;
    // The key id is derived from the key: a record whose id does not match its key is not trusted.
    if key_id_for(&pk_bytes) != key.key_id {
        return Err(VerifyError::BadKey(key.key_id.clone()));
    }
    let vk =
        VerifyingKey::from_bytes(&pk_bytes).map_err(|_| VerifyError::BadKey(key.key_id.clone()))?;
    let sig_bytes: [u8; 64] = STANDARD
        .decode(&doc.signature.value)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(VerifyError::BadSignature)?;
    vk.verify_strict(canonical.as_bytes(), &Signature::from_bytes(&sig_bytes))
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(Verified {
        key_id: key.key_id.clone(),
        owner: key.owner.clone(),
        signed_at: signed_at.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKeyPair;
    use serde_json::json;

    fn setup() -> (SignedDocument, Vec<PublicKeyRecord>) {
        let k = SigningKeyPair::generate().unwrap();
        let report = json!({
            "schema": "yilian.report.v1",
            "findings": "双肺纹理清晰",
            "signed_at": "2026-11-23T10:00:00.000Z",
            "signer": { "username": "li.reader", "key_id": k.key_id() },
        });
        let sig = k.sign_base64(canonicalize(&report).unwrap().as_bytes());
        let doc = SignedDocument {
            report,
            signature: SignatureBlock {
                algorithm: ALGORITHM_ED25519.into(),
                key_id: k.key_id(),
                value: sig,
            },
        };
        let keys = vec![PublicKeyRecord {
            key_id: k.key_id(),
            algorithm: ALGORITHM_ED25519.into(),
            public_key: k.public_key_base64(),
            owner: "li.reader".into(),
            valid_from: "2026-01-01T00:00:00.000Z".into(),
            valid_to: "2027-01-01T00:00:00.000Z".into(),
        }];
        (doc, keys)
    }

    #[test]
    fn a_signed_document_verifies() {
        let (doc, keys) = setup();
        let v = verify_document(&doc, &keys).unwrap();
        assert_eq!(v.owner, "li.reader");
        // Member order and white space in transit do not matter: the canonical form is what is signed.
        let reparsed: SignedDocument =
            serde_json::from_str(&serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        assert!(verify_document(&reparsed, &keys).is_ok());
    }

    #[test]
    fn any_change_to_the_text_is_detected() {
        let (mut doc, keys) = setup();
        doc.report["findings"] = json!("双肺纹理增粗");
        assert_eq!(verify_document(&doc, &keys), Err(VerifyError::BadSignature));
    }

    #[test]
    fn key_validity_and_identity_are_checked() {
        let (doc, mut keys) = setup();
        keys[0].valid_to = "2026-06-01T00:00:00.000Z".into();
        assert!(matches!(
            verify_document(&doc, &keys),
            Err(VerifyError::KeyNotValid { .. })
        ));
        let (doc, mut keys) = setup();
        keys[0].public_key = SigningKeyPair::generate().unwrap().public_key_base64();
        assert!(matches!(
            verify_document(&doc, &keys),
            Err(VerifyError::BadKey(_))
        ));
        let (doc, _) = setup();
        assert!(matches!(
            verify_document(&doc, &[]),
            Err(VerifyError::UnknownKey(_))
        ));
    }

    #[test]
    fn time_format_is_fixed_width() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_time("2026-11-23T10:00:00.000Z"),
            Some(1_795_428_000_000)
        );
        assert_eq!(
            parse_time(&format_time(1_795_428_000_123)),
            Some(1_795_428_000_123)
        );
    }
}
