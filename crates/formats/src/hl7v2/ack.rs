//! General acknowledgments (ACK) in original mode: MSH with sender and receiver swapped, MSA, and an
//! ERR segment that says what was wrong where. Written with the standard delimiters `|^~\&`, segments
//! ended by `\r`, in the original message's version.
//!
//! ERR layout by version: v2.5 and later `ERR||SEG^occurrence^field^repetition^component|code^text^HL70357|E||||message`
//! (ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 user message); v2.3/2.4
//! `ERR|SEG^occurrence^field^code&text&HL70357` (ERR-1) with the message in MSA-3.

use yilian_domain::lab::LabTime;

use super::Hl7Error;
use super::message::{Charset, Delimiters, MessageHeader, escape};

/// MSA-1 acknowledgment code (table 0008, original mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// `AA`: accepted (send only once the panel is durable).
    Accept,
    /// `AE`: error in the message content, or the receiver failed; the sender may correct and resend.
    Error,
    /// `AR`: rejected (not an ORU^R01 this hub can read at all).
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "AA" => AckCode::Accept,
            "AE" => AckCode::Error,
            "AR" => AckCode::Reject,
            _ => return None,
        })
    }
}

/// The version written when the original's is unreadable.
const DEFAULT_VERSION: &str = "2.5";

/// Builds an ACK for `original` (`None` when not even its MSH could be read: the ACK then has empty
/// addressing fields and MSA-2 is the HL7 null `""`). `control_id` is the ACK's own MSH-10, chosen by the caller; `error`
/// adds an ERR segment (ignored for `AA`). Encode the result with the original's `charset` (UTF-8 when
/// `None`) before framing: MSH-18 repeats the original's label only when that charset is known.
pub fn build_ack(
    original: Option<&MessageHeader>,
    code: AckCode,
    error: Option<&Hl7Error>,
    control_id: &str,
    now: LabTime,
) -> String {
    let d = Delimiters::STANDARD;
    let default = MessageHeader::default();
    let h = original.unwrap_or(&default);
    let version = if is_version(&h.version) {
        h.version.as_str()
    } else {
        DEFAULT_VERSION
    };
    let trigger = h
        .message_type
        .split('^')
        .nth(1)
        .filter(|t| !t.is_empty() && t.len() <= 3 && t.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("R01");
    let message_type = if version == "2.3" {
        format!("ACK^{trigger}")
    } else {
        format!("ACK^{trigger}^ACK")
    };
    let processing_id = match h.processing_id.as_str() {
        p @ ("P" | "T" | "D") => p,
        _ => "P",
    };
    let mut msh = vec![
        "MSH".to_string(),
        d.msh2(),
        h.receiving_application.to_field(&d),
        h.receiving_facility.to_field(&d),
        h.sending_application.to_field(&d),
        h.sending_facility.to_field(&d),
        now.to_hl7(),
        String::new(),
        message_type,
        escape(control_id, &d),
        processing_id.to_string(),
        version.to_string(),
    ];
    // MSH-18: the original's label when this hub can encode in that charset; the charset's own name
    // when the original was decoded with a configured fallback; nothing for UTF-8 or unknown.
    let msh18 = match (&h.charset_label, h.charset) {
        (Some(label), Some(_)) => Some(label.as_str()),
        (None, Some(cs)) if cs != Charset::Utf8 => Some(cs.msh18()),
        _ => None,
    };
    if let Some(label) = msh18 {
        msh.extend(std::iter::repeat_n(String::new(), 5));
        msh.push(escape(label, &d));
    }
    let mut segments = vec![msh.join("|")];

    let error = error.filter(|_| code != AckCode::Accept);
    let new_style = version_at_least_2_5(version);
    // MSA-2 is required: the HL7 null `""` when the original's control ID could not be read.
    let original_id = if h.control_id.is_empty() {
        "\"\"".to_string()
    } else {
        escape(&h.control_id, &d)
    };
    let mut msa = vec!["MSA".to_string(), code.as_str().to_string(), original_id];
    if let (Some(e), false) = (error, new_style) {
        let text: String = e.to_string().chars().take(80).collect();
        msa.push(escape(&text, &d));
    }
    segments.push(msa.join("|"));

    if let Some(e) = error {
        let ec = e.error_code();
        let location = e.segment().map(|(segment, occurrence)| {
            let mut parts = vec![segment.to_string(), occurrence.to_string()];
            if let Some(field) = e.field() {
                parts.push(field.to_string());
            }
            parts
        });
        if new_style {
            let mut erl = location.unwrap_or_default();
            if let Some(l) = e.location() {
                erl.push(l.repetition.unwrap_or(1).to_string());
                erl.extend(l.component.map(|c| c.to_string()));
            }
            let message: String = e.to_string().chars().take(2000).collect();
            segments.push(format!(
                "ERR||{}|{}^{}^HL70357|E||||{}",
                erl.join("^"),
                ec.code(),
                ec.text(),
                escape(&message, &d)
            ));
        } else {
            let mut eld = location.unwrap_or_default();
            eld.resize(3, String::new());
            eld.push(format!("{}&{}&HL70357", ec.code(), ec.text()));
            segments.push(format!("ERR|{}", eld.join("^")));
        }
    }
    let mut out = segments.join("\r");
    out.push('\r');
    out
}

/// The ACK's bytes: encoded in the original's charset (UTF-8 when unknown), ready for `mllp::frame`.
pub fn encode_ack(original: Option<&MessageHeader>, ack: &str) -> Vec<u8> {
    original
        .and_then(|h| h.charset)
        .unwrap_or(Charset::Utf8)
        .encode(ack)
}

/// The ACK bytes for a message that failed to parse: the header is read best effort from the raw bytes
/// (`MessageHeader::sniff`), the code is the one the error deserves (`AR` or `AE`), the text is encoded
/// as `encode_ack` does.
pub fn build_error_ack(raw: &[u8], error: &Hl7Error, control_id: &str, now: LabTime) -> Vec<u8> {
    let header = MessageHeader::sniff(raw);
    let ack = build_ack(
        header.as_ref(),
        error.ack_code(),
        Some(error),
        control_id,
        now,
    );
    encode_ack(header.as_ref(), &ack)
}

/// `2`, `2.3`, `2.5.1`: digits and dots, short.
fn is_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 8
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn version_at_least_2_5(v: &str) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (2, 5)
}
