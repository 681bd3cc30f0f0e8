//! HL7 v2 lab messages: a small typed parser (encoding characters from MSH-1/MSH-2, escapes, character
//! set from MSH-18), ORU^R01 (v2.3–2.5.1) → `LabPanel`s, ACK building, and MLLP framing as a pure codec.
//!
//! Flow for a listener: `mllp::Decoder` yields frames → `parse_oru_r01(frame)` → store the panels →
//! `encode_ack(Some(&oru.header), &build_ack(Some(&oru.header), AckCode::Accept, None, …))` →
//! `mllp::frame`. A parse error is answered with `build_error_ack(frame, &err, …)` (the header is
//! sniffed best effort, also from messages whose MSH cannot be parsed); a storage failure with
//! `build_ack(Some(&oru.header), AckCode::Error, Some(&Hl7Error::Internal(…)), …)`.

mod ack;
mod message;
pub mod mllp;
mod oru;

#[cfg(test)]
mod tests;

pub use ack::{AckCode, build_ack, build_error_ack, encode_ack};
pub use message::{Charset, Delimiters, Hd, Message, MessageHeader, Segment, escape};
pub use oru::{OruR01, SUPPORTED_VERSIONS, parse_oru_r01, parse_oru_r01_with};

use std::fmt;

/// Where in a message something is wrong: segment name, its position in the message (from 1, MSH is
/// 1), its occurrence among segments of that name (from 1; what ERR locations count), field, and
/// optionally repetition and component (from 1). Prints as `OBX-5 at segment 7` or `PID-3.4 at
/// segment 2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub segment: String,
    pub sequence: u32,
    pub occurrence: u32,
    pub field: u32,
    pub repetition: Option<u32>,
    pub component: Option<u32>,
}

/// A count as a location number (saturating; messages never come near it).
fn n32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Location {
    /// Field `field` of a segment.
    pub fn at(segment: &Segment, field: usize) -> Self {
        Location {
            segment: segment.name.clone(),
            sequence: n32(segment.sequence),
            occurrence: n32(segment.occurrence),
            field: n32(field),
            repetition: None,
            component: None,
        }
    }

    /// A field of the MSH segment.
    pub fn msh(field: usize) -> Self {
        Location {
            segment: "MSH".to_string(),
            sequence: 1,
            occurrence: 1,
            field: n32(field),
            repetition: None,
            component: None,
        }
    }

    pub fn component(mut self, component: usize) -> Self {
        self.component = Some(n32(component));
        self
    }

    pub fn repetition(mut self, repetition: usize) -> Self {
        self.repetition = Some(n32(repetition));
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.segment, self.field)?;
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(r) = self.repetition.filter(|&r| r > 1) {
            write!(f, " (repetition {r})")?;
        }
        write!(f, " at segment {}", self.sequence)
    }
}

/// HL7 table 0357 (message error condition codes) as used in ERR segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 100 Segment sequence error.
    SegmentSequence,
    /// 101 Required field missing.
    RequiredFieldMissing,
    /// 102 Data type error.
    DataType,
    /// 103 Table value not found.
    TableValueNotFound,
    /// 200 Unsupported message type.
    UnsupportedMessageType,
    /// 203 Unsupported version id.
    UnsupportedVersion,
    /// 205 Duplicate key identifier.
    DuplicateKey,
    /// 207 Application internal error.
    ApplicationInternal,
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::SegmentSequence => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataType => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedVersion => 203,
            ErrorCode::DuplicateKey => 205,
            ErrorCode::ApplicationInternal => 207,
        }
    }

    /// The table's text for the code.
    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedVersion => "Unsupported version id",
            ErrorCode::DuplicateKey => "Duplicate key identifier",
            ErrorCode::ApplicationInternal => "Application internal error",
        }
    }
}

/// Why a message was refused. The text names the segment, field and value so the sending lab can fix
/// it; values from PID (identifiers, names, birth dates) are never quoted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Hl7Error {
    #[error("the message is empty")]
    Empty,
    #[error("the message does not start with an MSH segment")]
    NoMsh,
    #[error(
        "MSH-1/MSH-2: encoding characters {0:?} are not usable (a field separator and 4 or 5 distinct \
         punctuation characters are needed)"
    )]
    BadEncodingCharacters(String),
    #[error(
        "MSH-18: character set {0:?} is not supported (UNICODE UTF-8, ASCII, 8859/1, GB 18030, GBK, GB2312 and BIG-5 are)"
    )]
    UnsupportedCharset(String),
    #[error("the message is not valid {charset} text (first bad byte at offset {offset})")]
    Undecodable {
        charset: &'static str,
        offset: usize,
    },
    #[error("MSH-9: message type {0:?} is not supported; only ORU^R01 is accepted")]
    UnsupportedMessageType(String),
    #[error("MSH-12: version {0:?} is not supported (2.3, 2.3.1, 2.4, 2.5 and 2.5.1 are)")]
    UnsupportedVersion(String),
    #[error("{segment} at segment {sequence}: {reason}")]
    SegmentSequence {
        segment: String,
        sequence: usize,
        occurrence: usize,
        reason: &'static str,
    },
    #[error("required segment {0} is missing")]
    MissingSegment(&'static str),
    #[error("{0}: required field is empty")]
    RequiredFieldMissing(Location),
    #[error("{location}: {value:?} is {problem}")]
    DataType {
        location: Location,
        /// The offending value (truncated; `"…"` for patient data).
        value: String,
        problem: &'static str,
    },
    #[error("{location}: {value:?} is not a value of HL7 table {table}")]
    TableValue {
        location: Location,
        value: String,
        table: &'static str,
    },
    /// The receiver does not take lab messages from this sending facility (MSH-4): unknown, another
    /// site's, or calling from an address it is not configured at. Built by the caller, never by the
    /// parser.
    #[error("MSH-4: {0}")]
    SenderRefused(String),
    /// The receiver holds another message with this control ID (MSH-10) from the same sender. Built by
    /// the caller, never by the parser.
    #[error("MSH-10: {0}")]
    DuplicateControlId(String),
    /// The receiver could not process a good message (storage failed…). Built by the caller, never by
    /// the parser.
    #[error("application internal error: {0}")]
    Internal(String),
}

impl Hl7Error {
    /// The table 0357 code for the ERR segment.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Hl7Error::Empty
            | Hl7Error::NoMsh
            | Hl7Error::SegmentSequence { .. }
            | Hl7Error::MissingSegment(_) => ErrorCode::SegmentSequence,
            Hl7Error::RequiredFieldMissing(_) => ErrorCode::RequiredFieldMissing,
            Hl7Error::BadEncodingCharacters(_)
            | Hl7Error::Undecodable { .. }
            | Hl7Error::DataType { .. } => ErrorCode::DataType,
            Hl7Error::UnsupportedCharset(_)
            | Hl7Error::TableValue { .. }
            | Hl7Error::SenderRefused(_) => ErrorCode::TableValueNotFound,
            Hl7Error::DuplicateControlId(_) => ErrorCode::DuplicateKey,
            Hl7Error::UnsupportedMessageType(_) => ErrorCode::UnsupportedMessageType,
            Hl7Error::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Hl7Error::Internal(_) => ErrorCode::ApplicationInternal,
        }
    }

    /// The acknowledgment this error deserves: `AR` (reject) when the message cannot be understood as
    /// an ORU^R01 at all (no MSH, bad encoding characters or charset, unsupported type or version) or
    /// its sender is refused, `AE` (error) when its content is wrong, its control ID is taken, or the
    /// receiver failed.
    pub fn ack_code(&self) -> AckCode {
        match self {
            Hl7Error::Empty
            | Hl7Error::NoMsh
            | Hl7Error::BadEncodingCharacters(_)
            | Hl7Error::UnsupportedCharset(_)
            | Hl7Error::Undecodable { .. }
            | Hl7Error::UnsupportedMessageType(_)
            | Hl7Error::UnsupportedVersion(_)
            | Hl7Error::SenderRefused(_) => AckCode::Reject,
            _ => AckCode::Error,
        }
    }

    /// Where the error is, when it is in one field.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Hl7Error::RequiredFieldMissing(l) => Some(l),
            Hl7Error::DataType { location, .. } | Hl7Error::TableValue { location, .. } => {
                Some(location)
            }
            _ => None,
        }
    }

    /// The segment the error is in (name, occurrence), when known: for the ERR location.
    pub(crate) fn segment(&self) -> Option<(&str, usize)> {
        let occurrence = |l: &Location| usize::try_from(l.occurrence).unwrap_or(usize::MAX);
        match self {
            Hl7Error::SegmentSequence {
                segment,
                occurrence,
                ..
            } => Some((segment, *occurrence)),
            Hl7Error::UnsupportedMessageType(_) => Some(("MSH", 1)),
            Hl7Error::UnsupportedVersion(_) => Some(("MSH", 1)),
            Hl7Error::UnsupportedCharset(_) => Some(("MSH", 1)),
            Hl7Error::BadEncodingCharacters(_) => Some(("MSH", 1)),
            Hl7Error::SenderRefused(_) | Hl7Error::DuplicateControlId(_) => Some(("MSH", 1)),
            other => other
                .location()
                .map(|l| (l.segment.as_str(), occurrence(l))),
        }
    }

    /// The field the error is in, when known (MSH errors name theirs).
    pub(crate) fn field(&self) -> Option<usize> {
        match self {
            Hl7Error::UnsupportedMessageType(_) => Some(9),
            Hl7Error::UnsupportedVersion(_) => Some(12),
            Hl7Error::UnsupportedCharset(_) => Some(18),
            Hl7Error::BadEncodingCharacters(_) => Some(2),
            Hl7Error::SenderRefused(_) => Some(4),
            Hl7Error::DuplicateControlId(_) => Some(10),
            other => other
                .location()
                .map(|l| usize::try_from(l.field).unwrap_or(usize::MAX)),
        }
    }
}
