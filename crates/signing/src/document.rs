//! Signed documents, the hub's countersignature, and the one verification routine (online
//! `/api/v1/reports/{id}/verify` and offline `yilian verify`).
//!
//! A document is `{"report": {...}, "signature": {...}, "countersignature": {...}}`. The signature
//! covers exactly the canonical bytes (RFC 8785) of `report`; `report.signer.key_id` must name the key
//! in `signature.key_id`, and the key must have been valid at `report.signed_at`. The countersignature
//! is the hub clock key's signature over [`countersign_message`]: the SM3 digest of the signature value
//! and the hub's time, so it attests that this signature existed at that time (the seam where a
//! GB/T 20520 / RFC 3161 timestamp fits later). Times are UTC in the fixed form
//! `YYYY-MM-DDTHH:MM:SS.mmmZ`, so they order as text.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::canonical::{CanonError, canonicalize};
use crate::keys::{Algorithm, RawVerifyError, key_id_of, sm3_hex, verify_raw};

/// The owner of the hub clock key in the published key list.
pub const HUB_KEY_OWNER: &str = "hub";
/// The schema of the bytes a countersignature signs.
pub const COUNTERSIGNATURE_SCHEMA: &str = "yilian.countersignature/1";
/// How far the hub's countersigning time may lie from the signer's `signed_at` (both come from the
/// hub clock; they differ by the time one request takes).
pub const COUNTERSIGN_TOLERANCE_MS: i64 = 10 * 60 * 1000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SignatureBlock {
    pub algorithm: String,
    pub key_id: String,
    /// Standard base64 of the raw signature.
    pub value: String,
}

/// The hub's countersignature over a signature (see [`countersign_message`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Countersignature {
    pub algorithm: String,
    pub key_id: String,
    /// The hub clock's time, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub time: String,
    /// Standard base64 of the raw signature over [`countersign_message`].
    pub value: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SignedDocument {
    pub report: Value,
    pub signature: SignatureBlock,
    /// Absent only on documents signed before version 14 (they fail the countersignature check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countersignature: Option<Countersignature>,
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

/// The bytes the hub countersigns: the canonical JSON of
/// `{"schema": "yilian.countersignature/1", "signature": {"algorithm", "key_id", "sm3": SM3 of the
/// raw signature value, hex}, "time": the hub clock's time}`.
pub fn countersign_message(signature: &SignatureBlock, time: &str) -> Result<String, VerifyError> {
    let raw = STANDARD
        .decode(&signature.value)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(canonicalize(&json!({
        "schema": COUNTERSIGNATURE_SCHEMA,
        "signature": {
            "algorithm": signature.algorithm,
            "key_id": signature.key_id,
            "sm3": sm3_hex(&raw),
        },
        "time": time,
    }))?)
}

/// The published key `key_id`, checked: known, of a supported algorithm, its id derived from its
/// bytes (a record whose id does not match its key is not trusted).
fn published_key<'a>(
    keys: &'a [PublicKeyRecord],
    key_id: &str,
    algorithm: &str,
) -> Result<(&'a PublicKeyRecord, Algorithm, Vec<u8>), VerifyError> {
    let alg =
        Algorithm::parse(algorithm).ok_or_else(|| VerifyError::Algorithm(algorithm.into()))?;
    let key = keys
        .iter()
        .find(|k| k.key_id == key_id)
        .ok_or_else(|| VerifyError::UnknownKey(key_id.to_string()))?;
    if Algorithm::parse(&key.algorithm) != Some(alg) {
        return Err(VerifyError::Algorithm(key.algorithm.clone()));
    }
    let pk = STANDARD
        .decode(&key.public_key)
        .map_err(|_| VerifyError::BadKey(key.key_id.clone()))?;
    if key_id_of(alg, &pk) != key.key_id {
        return Err(VerifyError::BadKey(key.key_id.clone()));
    }
    Ok((key, alg, pk))
}

fn valid_at(key: &PublicKeyRecord, at_text: &str) -> Result<(), VerifyError> {
    let at = parse_time(at_text).ok_or(VerifyError::MissingField("signed_at"))?;
    let from =
        parse_time(&key.valid_from).ok_or_else(|| VerifyError::BadKey(key.key_id.clone()))?;
    let to = parse_time(&key.valid_to).ok_or_else(|| VerifyError::BadKey(key.key_id.clone()))?;
    if at < from || at > to {
        return Err(VerifyError::KeyNotValid {
            key_id: key.key_id.clone(),
            signed_at: at_text.to_string(),
            valid_from: key.valid_from.clone(),
            valid_to: key.valid_to.clone(),
        });
    }
    Ok(())
}

fn raw_verify(
    alg: Algorithm,
    key: &PublicKeyRecord,
    pk: &[u8],
    message: &[u8],
    value: &str,
) -> Result<(), VerifyError> {
    let sig = STANDARD
        .decode(value)
        .map_err(|_| VerifyError::BadSignature)?;
    verify_raw(alg, pk, message, &sig).map_err(|e| match e {
        RawVerifyError::BadKey => VerifyError::BadKey(key.key_id.clone()),
        RawVerifyError::BadSignature => VerifyError::BadSignature,
    })
}

/// The signature alone: canonical form, signer/key match, key known and of the signature's
/// algorithm, the signature over the canonical bytes. Not the key's validity.
fn check_signature<'a>(
    doc: &SignedDocument,
    keys: &'a [PublicKeyRecord],
) -> Result<(&'a PublicKeyRecord, String), VerifyError> {
    let canonical = canonicalize(&doc.report)?;
    let signer_key = str_at(&doc.report, &["signer", "key_id"])?;
    let signed_at = str_at(&doc.report, &["signed_at"])?;
    if signer_key != doc.signature.key_id {
        return Err(VerifyError::KeyMismatch {
            signature: doc.signature.key_id.clone(),
            report: signer_key.to_string(),
        });
    }
    let (key, alg, pk) = published_key(keys, &doc.signature.key_id, &doc.signature.algorithm)?;
    raw_verify(alg, key, &pk, canonical.as_bytes(), &doc.signature.value)?;
    Ok((key, signed_at.to_string()))
}

/// Verifies a document's signature against published keys: canonical form, signer/key match, key
/// known and of the right algorithm (SM2 or Ed25519), key validity at signing time, the signature.
/// (The countersignature, the referenced blobs and the version are checked by [`verify`].)
pub fn verify_document(
    doc: &SignedDocument,
    keys: &[PublicKeyRecord],
) -> Result<Verified, VerifyError> {
    let (key, signed_at) = check_signature(doc, keys)?;
    valid_at(key, &signed_at)?;
    Ok(Verified {
        key_id: key.key_id.clone(),
        owner: key.owner.clone(),
        signed_at,
    })
}

/// Why a countersignature is not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CountersignError {
    #[error("the document has no countersignature")]
    Missing,
    #[error("countersignature key {0} is not the hub's clock key")]
    NotHubKey(String),
    #[error("countersignature time {time} is more than 10 minutes from signed_at {signed_at}")]
    TimeMismatch { time: String, signed_at: String },
    #[error("countersignature: {0}")]
    Key(VerifyError),
}

/// The hub's countersignature: present, by a published key owned by `hub`, valid at the
/// countersigning time, within [`COUNTERSIGN_TOLERANCE_MS`] of `signed_at`, over this signature.
pub fn verify_countersignature(
    doc: &SignedDocument,
    keys: &[PublicKeyRecord],
) -> Result<Verified, CountersignError> {
    let cs = doc
        .countersignature
        .as_ref()
        .ok_or(CountersignError::Missing)?;
    let (key, alg, pk) =
        published_key(keys, &cs.key_id, &cs.algorithm).map_err(CountersignError::Key)?;
    if key.owner != HUB_KEY_OWNER {
        return Err(CountersignError::NotHubKey(cs.key_id.clone()));
    }
    let message = countersign_message(&doc.signature, &cs.time).map_err(CountersignError::Key)?;
    raw_verify(alg, key, &pk, message.as_bytes(), &cs.value).map_err(CountersignError::Key)?;
    valid_at(key, &cs.time).map_err(CountersignError::Key)?;
    let signed_at = str_at(&doc.report, &["signed_at"]).map_err(CountersignError::Key)?;
    match (parse_time(&cs.time), parse_time(signed_at)) {
        (Some(t), Some(s)) if (t - s).abs() <= COUNTERSIGN_TOLERANCE_MS => {}
        _ => {
            return Err(CountersignError::TimeMismatch {
                time: cs.time.clone(),
                signed_at: signed_at.to_string(),
            });
        }
    }
    Ok(Verified {
        key_id: key.key_id.clone(),
        owner: key.owner.clone(),
        signed_at: cs.time.clone(),
    })
}

/// The outcome of one named check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// The verifier had nothing to check it against (e.g. offline without the instances).
    Skipped,
}

/// One named check of a verification, as people read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: CheckStatus,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: if ok {
                CheckStatus::Pass
            } else {
                CheckStatus::Fail
            },
            detail: detail.into(),
        }
    }
    fn skipped(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: CheckStatus::Skipped,
            detail: detail.into(),
        }
    }
    pub fn ok(&self) -> bool {
        self.status != CheckStatus::Fail
    }
}

/// What the verifier knows about the referenced instances: for each SOP Instance UID the SHA-256 of
/// the bytes it has (`None`: it has none), or nothing.
#[derive(Clone, Debug)]
pub enum ResultsEvidence {
    Hashes(BTreeMap<String, Option<String>>),
    NotChecked(String),
}

/// What the verifier knows about newer versions of the report.
#[derive(Clone, Debug)]
pub enum LatestEvidence {
    Latest,
    /// A newer version exists (its id or version, as people read it).
    SupersededBy(String),
    NotChecked(String),
}

#[derive(Clone, Debug)]
pub struct Evidence {
    pub results: ResultsEvidence,
    pub latest: LatestEvidence,
}

/// Every check of a document, in order: `signature`, `key_validity`, `countersignature`, `results`,
/// `latest`.
#[derive(Clone, Debug)]
pub struct Verification {
    pub checks: Vec<Check>,
}

impl Verification {
    /// No check failed (skipped ones do not count against it).
    pub fn valid(&self) -> bool {
        self.checks.iter().all(Check::ok)
    }
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
    /// `latest` passed (a skipped check is not "latest").
    pub fn latest(&self) -> bool {
        self.check("latest")
            .is_some_and(|c| c.status == CheckStatus::Pass)
    }
}

/// The one verification routine: the signature, the signer's key validity at `signed_at`, the hub's
/// countersignature, the referenced instances' SHA-256 against `evidence`, and whether this version
/// is the latest.
pub fn verify(doc: &SignedDocument, keys: &[PublicKeyRecord], evidence: &Evidence) -> Verification {
    let mut checks = Vec::new();
    match check_signature(doc, keys) {
        Ok((key, signed_at)) => {
            checks.push(Check::new(
                "signature",
                true,
                format!(
                    "{} signature by {} ({}) verifies",
                    doc.signature.algorithm, key.owner, key.key_id
                ),
            ));
            checks.push(match valid_at(key, &signed_at) {
                Ok(()) => Check::new(
                    "key_validity",
                    true,
                    format!(
                        "key {} was valid at {signed_at} ({} to {})",
                        key.key_id, key.valid_from, key.valid_to
                    ),
                ),
                Err(e) => Check::new("key_validity", false, e.to_string()),
            });
        }
        Err(e) => {
            checks.push(Check::new("signature", false, e.to_string()));
            checks.push(Check::new(
                "key_validity",
                false,
                "not checked: the signature does not verify",
            ));
        }
    }
    checks.push(match verify_countersignature(doc, keys) {
        Ok(v) => Check::new(
            "countersignature",
            true,
            format!("countersigned by the hub ({}) at {}", v.key_id, v.signed_at),
        ),
        Err(e) => Check::new("countersignature", false, e.to_string()),
    });
    checks.push(results_check(doc, &evidence.results));
    checks.push(match &evidence.latest {
        LatestEvidence::Latest => Check::new("latest", true, "this is the latest version"),
        LatestEvidence::SupersededBy(x) => {
            Check::new("latest", false, format!("superseded by {x}"))
        }
        LatestEvidence::NotChecked(why) => Check::skipped("latest", why.clone()),
    });
    Verification { checks }
}

/// The `(sop_instance_uid, sha256)` references of `report.results[]` (entries without a checksum,
/// such as lab analytes, are not blob references).
pub fn referenced_instances(report: &Value) -> Vec<(String, String)> {
    report
        .get("results")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    let sha = r.get("sha256")?.as_str()?;
                    let sop = r
                        .get("sop_instance_uid")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default();
                    Some((sop.to_string(), sha.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn results_check(doc: &SignedDocument, evidence: &ResultsEvidence) -> Check {
    let referenced = referenced_instances(&doc.report);
    if referenced.is_empty() {
        return Check::skipped("results", "the document references no stored instances");
    }
    let hashes = match evidence {
        ResultsEvidence::Hashes(h) => h,
        ResultsEvidence::NotChecked(why) => return Check::skipped("results", why.clone()),
    };
    let bad: Vec<&str> = referenced
        .iter()
        .filter(|(sop, sha)| hashes.get(sop).and_then(|h| h.as_deref()) != Some(sha.as_str()))
        .map(|(sop, _)| sop.as_str())
        .collect();
    if bad.is_empty() {
        Check::new(
            "results",
            true,
            format!(
                "{} referenced instances match their checksums",
                referenced.len()
            ),
        )
    } else {
        Check::new(
            "results",
            false,
            format!(
                "{} of {} referenced instances are missing or altered: {}",
                bad.len(),
                referenced.len(),
                bad.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKeyPair;

    const SIGNED_AT: &str = "2026-11-23T10:00:00.000Z";

    struct Fixture {
        doc: SignedDocument,
        keys: Vec<PublicKeyRecord>,
        hub: SigningKeyPair,
    }

    fn record(k: &SigningKeyPair, owner: &str) -> PublicKeyRecord {
        PublicKeyRecord {
            key_id: k.key_id(),
            algorithm: k.algorithm().as_str().into(),
            public_key: k.public_key_base64(),
            owner: owner.into(),
            valid_from: "2026-01-01T00:00:00.000Z".into(),
            valid_to: "2027-01-01T00:00:00.000Z".into(),
        }
    }

    fn countersign(hub: &SigningKeyPair, sig: &SignatureBlock, time: &str) -> Countersignature {
        Countersignature {
            algorithm: hub.algorithm().as_str().into(),
            key_id: hub.key_id(),
            time: time.into(),
            value: hub.sign_base64(countersign_message(sig, time).unwrap().as_bytes()),
        }
    }

    fn setup(alg: Algorithm) -> Fixture {
        let k = SigningKeyPair::generate_for(alg).unwrap();
        let hub = SigningKeyPair::generate_for(Algorithm::Sm2).unwrap();
        let report = json!({
            "schema": "yilian.report.v1",
            "findings": "双肺纹理清晰",
            "results": [{ "sop_instance_uid": "1.2.3", "sha256": "aa" }],
            "signed_at": SIGNED_AT,
            "signer": { "username": "li.reader", "key_id": k.key_id() },
        });
        let sig = k.sign_base64(canonicalize(&report).unwrap().as_bytes());
        let signature = SignatureBlock {
            algorithm: alg.as_str().into(),
            key_id: k.key_id(),
            value: sig,
        };
        let countersignature = Some(countersign(&hub, &signature, "2026-11-23T10:00:00.250Z"));
        let doc = SignedDocument {
            report,
            signature,
            countersignature,
        };
        let keys = vec![record(&k, "li.reader"), record(&hub, HUB_KEY_OWNER)];
        Fixture { doc, keys, hub }
    }

    fn evidence(sha: &str) -> Evidence {
        Evidence {
            results: ResultsEvidence::Hashes(BTreeMap::from([(
                "1.2.3".to_string(),
                Some(sha.to_string()),
            )])),
            latest: LatestEvidence::Latest,
        }
    }

    fn failed(v: &Verification) -> Vec<&'static str> {
        v.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .map(|c| c.name)
            .collect()
    }

    const ALGS: [Algorithm; 2] = [Algorithm::Sm2, Algorithm::Ed25519];

    #[test]
    fn a_signed_document_verifies_with_either_algorithm() {
        for alg in ALGS {
            let f = setup(alg);
            let v = verify_document(&f.doc, &f.keys).unwrap();
            assert_eq!(v.owner, "li.reader");
            let full = verify(&f.doc, &f.keys, &evidence("aa"));
            assert!(full.valid(), "{alg}: {:?}", full.checks);
            assert!(full.latest());
            let names: Vec<_> = full.checks.iter().map(|c| c.name).collect();
            assert_eq!(
                names,
                [
                    "signature",
                    "key_validity",
                    "countersignature",
                    "results",
                    "latest"
                ]
            );
            // Member order and white space in transit do not matter: the canonical form is signed.
            let reparsed: SignedDocument =
                serde_json::from_str(&serde_json::to_string_pretty(&f.doc).unwrap()).unwrap();
            assert!(verify(&reparsed, &f.keys, &evidence("aa")).valid());
        }
    }

    #[test]
    fn any_change_to_the_text_is_detected() {
        for alg in ALGS {
            let mut f = setup(alg);
            f.doc.report["findings"] = json!("双肺纹理增粗");
            assert_eq!(
                verify_document(&f.doc, &f.keys),
                Err(VerifyError::BadSignature)
            );
            let v = verify(&f.doc, &f.keys, &evidence("aa"));
            assert_eq!(failed(&v), ["signature", "key_validity"]);
        }
    }

    #[test]
    fn a_changed_blob_or_a_newer_version_is_reported() {
        let f = setup(Algorithm::Sm2);
        let v = verify(&f.doc, &f.keys, &evidence("bb"));
        assert_eq!(failed(&v), ["results"]);
        assert!(v.check("results").unwrap().detail.contains("1.2.3"));
        let missing = Evidence {
            results: ResultsEvidence::Hashes(BTreeMap::new()),
            latest: LatestEvidence::SupersededBy("version 2 (R2)".into()),
        };
        let v = verify(&f.doc, &f.keys, &missing);
        assert_eq!(failed(&v), ["results", "latest"]);
        assert_eq!(
            v.check("latest").unwrap().detail,
            "superseded by version 2 (R2)"
        );
        let offline = Evidence {
            results: ResultsEvidence::NotChecked("no instances given".into()),
            latest: LatestEvidence::NotChecked("offline".into()),
        };
        let v = verify(&f.doc, &f.keys, &offline);
        assert!(v.valid());
        assert!(!v.latest());
        assert_eq!(v.check("results").unwrap().status, CheckStatus::Skipped);
    }

    #[test]
    fn a_replaced_signature_is_detected() {
        for alg in ALGS {
            // Another key signs the same report: the report still names the first signer.
            let mut f = setup(alg);
            let other = SigningKeyPair::generate_for(alg).unwrap();
            f.keys.push(record(&other, "mallory"));
            f.doc.signature.key_id = other.key_id();
            f.doc.signature.value =
                other.sign_base64(canonicalize(&f.doc.report).unwrap().as_bytes());
            assert!(matches!(
                verify_document(&f.doc, &f.keys),
                Err(VerifyError::KeyMismatch { .. })
            ));
            // A signature value taken from another document does not verify.
            let mut f = setup(alg);
            f.doc.signature.value = setup(alg).doc.signature.value;
            let v = verify(&f.doc, &f.keys, &evidence("aa"));
            assert_eq!(
                failed(&v),
                ["signature", "key_validity", "countersignature"]
            );
        }
    }

    #[test]
    fn countersignature_removed_altered_or_foreign_is_detected() {
        let f = setup(Algorithm::Sm2);
        let mut doc = f.doc.clone();
        doc.countersignature = None;
        assert_eq!(
            verify_countersignature(&doc, &f.keys),
            Err(CountersignError::Missing)
        );
        assert_eq!(
            failed(&verify(&doc, &f.keys, &evidence("aa"))),
            ["countersignature"]
        );
        // Altered time: the hub's signature no longer covers it.
        let mut doc = f.doc.clone();
        if let Some(cs) = doc.countersignature.as_mut() {
            cs.time = "2026-11-23T10:00:01.000Z".into();
        }
        assert_eq!(
            verify_countersignature(&doc, &f.keys),
            Err(CountersignError::Key(VerifyError::BadSignature))
        );
        // Countersigned by a reader's key instead of the hub's.
        let reader = SigningKeyPair::generate_for(Algorithm::Sm2).unwrap();
        let mut keys = f.keys.clone();
        keys.push(record(&reader, "li.reader"));
        let mut doc = f.doc.clone();
        doc.countersignature = Some(countersign(&reader, &doc.signature, SIGNED_AT));
        assert!(matches!(
            verify_countersignature(&doc, &keys),
            Err(CountersignError::NotHubKey(_))
        ));
        // A genuine hub countersignature from a day later does not vouch for signed_at.
        let mut doc = f.doc.clone();
        doc.countersignature = Some(countersign(
            &f.hub,
            &doc.signature,
            "2026-11-24T10:00:00.000Z",
        ));
        assert!(matches!(
            verify_countersignature(&doc, &f.keys),
            Err(CountersignError::TimeMismatch { .. })
        ));
    }

    #[test]
    fn key_validity_and_identity_are_checked() {
        for alg in ALGS {
            let mut f = setup(alg);
            f.keys[0].valid_to = "2026-06-01T00:00:00.000Z".into();
            assert!(matches!(
                verify_document(&f.doc, &f.keys),
                Err(VerifyError::KeyNotValid { .. })
            ));
            assert_eq!(
                failed(&verify(&f.doc, &f.keys, &evidence("aa"))),
                ["key_validity"]
            );
            let mut f = setup(alg);
            f.keys[0].public_key = SigningKeyPair::generate_for(alg)
                .unwrap()
                .public_key_base64();
            assert!(matches!(
                verify_document(&f.doc, &f.keys),
                Err(VerifyError::BadKey(_))
            ));
            let f = setup(alg);
            assert!(matches!(
                verify_document(&f.doc, &[]),
                Err(VerifyError::UnknownKey(_))
            ));
            // The published record's algorithm must be the signature's.
            let mut f = setup(alg);
            f.keys[0].algorithm = "RSA".into();
            assert!(matches!(
                verify_document(&f.doc, &f.keys),
                Err(VerifyError::Algorithm(_))
            ));
        }
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
