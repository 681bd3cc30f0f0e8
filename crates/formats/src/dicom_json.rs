//! DICOM JSON (PS3.18 Annex F) for the few DICOMweb responses the hub builds itself: the STOW-RS
//! store response (PS3.18 §10.5.3, attributes of PS3.4 Table CC.2.3-1).

use serde_json::{Map, Value, json};

/// A failure reason (0008,1197) as PS3.4 Annex CC / PS3.7 Annex C name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// 0xC000 "Cannot understand": not DICOM, truncated, required attributes missing.
    CannotUnderstand,
    /// 0xA900 "Data set does not match SOP class" — used when the part's Study Instance UID differs
    /// from the one in the request URL.
    StudyMismatch,
    /// 0x0111 "Duplicate SOP instance" — the SOP Instance UID is stored already with different bytes.
    DuplicateConflict,
    /// 0xA700 "Out of resources" — storage or catalog failed; the client may retry.
    OutOfResources,
    /// 0x0124 "Not authorized" — the study belongs to another site.
    NotAuthorized,
}

impl FailureReason {
    pub fn code(self) -> u16 {
        match self {
            FailureReason::CannotUnderstand => 0xC000,
            FailureReason::StudyMismatch => 0xA900,
            FailureReason::DuplicateConflict => 0x0111,
            FailureReason::OutOfResources => 0xA700,
            FailureReason::NotAuthorized => 0x0124,
        }
    }
}

/// One stored instance in the response.
#[derive(Clone, Debug)]
pub struct Referenced {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub retrieve_url: String,
}

/// One failed part in the response. SOP UIDs are empty when the part could not be parsed at all.
#[derive(Clone, Debug)]
pub struct Failed {
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub reason: FailureReason,
    /// Human text. PS3.18 has no attribute for it, so it travels as Error Comment (0000,0902), the
    /// attribute DIMSE uses for the same purpose (documented in ARCHITECTURE.md).
    pub message: String,
}

fn attr(vr: &str, values: Vec<Value>) -> Value {
    if values.is_empty() {
        json!({ "vr": vr })
    } else {
        json!({ "vr": vr, "Value": values })
    }
}

fn opt(v: &Option<String>) -> Vec<Value> {
    v.iter().map(|s| Value::String(s.clone())).collect()
}

/// Builds the Store Instances Response Module as DICOM JSON.
pub fn stow_response(
    retrieve_url: Option<&str>,
    referenced: &[Referenced],
    failed: &[Failed],
) -> Value {
    let mut out = Map::new();
    if let Some(url) = retrieve_url {
        out.insert("00081190".into(), attr("UR", vec![url.into()]));
    }
    if !referenced.is_empty() {
        let items = referenced
            .iter()
            .map(|r| {
                json!({
                    "00081150": attr("UI", vec![r.sop_class_uid.clone().into()]),
                    "00081155": attr("UI", vec![r.sop_instance_uid.clone().into()]),
                    "00081190": attr("UR", vec![r.retrieve_url.clone().into()]),
                })
            })
            .collect();
        out.insert("00081199".into(), attr("SQ", items));
    }
    if !failed.is_empty() {
        let items = failed
            .iter()
            .map(|f| {
                json!({
                    "00081150": attr("UI", opt(&f.sop_class_uid)),
                    "00081155": attr("UI", opt(&f.sop_instance_uid)),
                    "00081197": attr("US", vec![f.reason.code().into()]),
                    "00000902": attr("LO", vec![f.message.clone().into()]),
                })
            })
            .collect();
        out.insert("00081198".into(), attr("SQ", items));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_response_has_the_standard_sequences() {
        let v = stow_response(
            Some("http://h/dicomweb/studies/1.2"),
            &[Referenced {
                sop_class_uid: "1.2.3".into(),
                sop_instance_uid: "1.2.3.4".into(),
                retrieve_url: "u".into(),
            }],
            &[Failed {
                sop_class_uid: None,
                sop_instance_uid: None,
                reason: FailureReason::CannotUnderstand,
                message: "not DICOM".into(),
            }],
        );
        assert_eq!(v["00081190"]["Value"][0], "http://h/dicomweb/studies/1.2");
        assert_eq!(v["00081199"]["vr"], "SQ");
        assert_eq!(v["00081199"]["Value"][0]["00081155"]["Value"][0], "1.2.3.4");
        assert_eq!(v["00081198"]["Value"][0]["00081197"]["Value"][0], 0xC000);
        assert_eq!(v["00081198"]["Value"][0]["00081155"], json!({"vr": "UI"}));
        assert_eq!(
            v["00081198"]["Value"][0]["00000902"]["Value"][0],
            "not DICOM"
        );
    }
}
