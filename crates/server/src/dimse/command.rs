//! DIMSE command sets (PS3.7 §9.3, §E): decoding a received command, encoding responses and
//! sub-operation requests. Command sets are always Implicit VR Little Endian with a leading
//! Command Group Length; dicom-object does the element coding, this module the group around it.

use dicom_core::header::Header;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Command Field values (PS3.7 Table E.1-1).
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_GET_RSP: u16 = 0x8010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_MOVE_RSP: u16 = 0x8021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
}

/// Status codes the hub sends (PS3.7 Annex C, PS3.4 Annexes B and C).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const PENDING: u16 = 0xFF00;
    pub const CANCEL: u16 = 0xFE00;
    /// Sub-operations complete, one or more failures or warnings.
    pub const SUB_OPERATIONS_WARNING: u16 = 0xB000;
    pub const NOT_AUTHORIZED: u16 = 0x0124;
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// C-MOVE: unable to calculate number of matches (also used for "cannot store").
    pub const OUT_OF_RESOURCES_SUB_OPERATIONS: u16 = 0xA702;
    pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    pub const IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    pub const UNABLE_TO_PROCESS: u16 = 0xC001;
}

/// Command Data Set Type value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;
/// Any other value means a data set follows; this is the one the hub sends.
pub const DATA_SET_PRESENT: u16 = 0x0000;

/// Why a received command set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the command set could not be decoded: {0}")]
    Decode(String),
    #[error("the command set has no {0}")]
    Missing(&'static str),
}

/// A decoded command set.
#[derive(Debug, Clone)]
pub struct Command {
    obj: InMemDicomObject,
    pub field: u16,
    pub message_id: u16,
}

impl Command {
    /// Decodes a command set received over the wire.
    pub fn parse(bytes: &[u8]) -> Result<Command, CommandError> {
        let obj =
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .map_err(|e| CommandError::Decode(e.to_string()))?;
        let field =
            u16_of(&obj, tags::COMMAND_FIELD).ok_or(CommandError::Missing("Command Field"))?;
        let message_id = u16_of(&obj, tags::MESSAGE_ID)
            .or_else(|| u16_of(&obj, tags::MESSAGE_ID_BEING_RESPONDED_TO))
            .ok_or(CommandError::Missing("Message ID"))?;
        Ok(Command {
            obj,
            field,
            message_id,
        })
    }

    /// Whether a data set follows the command.
    pub fn has_data_set(&self) -> bool {
        u16_of(&self.obj, tags::COMMAND_DATA_SET_TYPE).is_some_and(|v| v != NO_DATA_SET)
    }

    pub fn text(&self, tag: Tag) -> Option<String> {
        let s = self.obj.element_opt(tag).ok().flatten()?.to_str().ok()?;
        let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!s.is_empty()).then(|| s.to_string())
    }

    pub fn u16(&self, tag: Tag) -> Option<u16> {
        u16_of(&self.obj, tag)
    }

    pub fn affected_sop_class_uid(&self) -> Option<String> {
        self.text(tags::AFFECTED_SOP_CLASS_UID)
    }

    pub fn affected_sop_instance_uid(&self) -> Option<String> {
        self.text(tags::AFFECTED_SOP_INSTANCE_UID)
    }
}

/// A UID value padded to even length with NUL, as PS3.5 §9.1 requires (the encoder would pad
/// with a space).
pub fn nul_padded(uid: &str) -> String {
    let mut v = uid.to_string();
    if v.len() % 2 == 1 {
        v.push('\0');
    }
    v
}

/// Pads every UI element of a data set (top level) to even length with NUL.
pub fn pad_uids(obj: &mut InMemDicomObject) {
    let uis: Vec<(Tag, Vec<String>)> = obj
        .iter()
        .filter(|e| e.vr() == VR::UI)
        .filter_map(|e| {
            let v = e.to_multi_str().ok()?;
            Some((
                e.tag(),
                v.iter()
                    .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                    .collect(),
            ))
        })
        .collect();
    for (tag, mut values) in uis {
        let total: usize =
            values.iter().map(|v| v.len()).sum::<usize>() + values.len().saturating_sub(1);
        if total % 2 == 1
            && let Some(last) = values.last_mut()
        {
            last.push('\0');
        }
        let value = if values.len() == 1 {
            PrimitiveValue::from(values.remove(0))
        } else {
            PrimitiveValue::Strs(values.into_iter().collect())
        };
        obj.put(DataElement::new(tag, VR::UI, value));
    }
}

fn u16_of(obj: &InMemDicomObject, tag: Tag) -> Option<u16> {
    obj.element_opt(tag).ok().flatten()?.to_int::<u16>().ok()
}

/// A command set to send, built element by element.
#[derive(Debug, Clone, Default)]
pub struct CommandBuilder {
    elements: Vec<DataElement<InMemDicomObject>>,
}

impl CommandBuilder {
    /// A response to `field` with the request's message ID and a status.
    pub fn response(field: u16, responding_to: u16, status: u16) -> CommandBuilder {
        CommandBuilder::default()
            .u16(tags::COMMAND_FIELD, field)
            .u16(tags::MESSAGE_ID_BEING_RESPONDED_TO, responding_to)
            .u16(tags::STATUS, status)
            .u16(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
    }

    /// A request (used for C-STORE sub-operations).
    pub fn request(field: u16, message_id: u16) -> CommandBuilder {
        CommandBuilder::default()
            .u16(tags::COMMAND_FIELD, field)
            .u16(tags::MESSAGE_ID, message_id)
            .u16(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
    }

    pub fn u16(mut self, tag: Tag, value: u16) -> Self {
        self.elements.retain(|e| e.tag() != tag);
        self.elements
            .push(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
        self
    }

    pub fn uid(mut self, tag: Tag, value: &str) -> Self {
        self.elements.retain(|e| e.tag() != tag);
        self.elements
            .push(DataElement::new(tag, VR::UI, nul_padded(value)));
        self
    }

    pub fn ae(mut self, tag: Tag, value: &str) -> Self {
        self.elements.retain(|e| e.tag() != tag);
        self.elements.push(DataElement::new(tag, VR::AE, value));
        self
    }

    /// Error Comment (0000,0902), an LO: cut to 64 characters.
    pub fn error_comment(mut self, text: &str) -> Self {
        let cut: String = text
            .chars()
            .filter(|c| *c != '\\' && !c.is_control())
            .take(64)
            .collect();
        self.elements.retain(|e| e.tag() != tags::ERROR_COMMENT);
        self.elements
            .push(DataElement::new(tags::ERROR_COMMENT, VR::LO, cut));
        self
    }

    /// Marks that a data set follows the command.
    pub fn with_data_set(self) -> Self {
        self.u16(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT)
    }

    /// Implicit VR Little Endian bytes with the Command Group Length first.
    pub fn encode(self) -> Vec<u8> {
        let obj = InMemDicomObject::from_element_iter(
            self.elements
                .into_iter()
                .filter(|e| e.tag() != tags::COMMAND_GROUP_LENGTH),
        );
        let mut body = Vec::with_capacity(256);
        // Writing known elements into a Vec does not fail; should it, the group stays empty and
        // the peer answers with an error rather than the hub panicking.
        if let Err(e) = obj.write_dataset_with_ts(&mut body, &IMPLICIT_VR_LITTLE_ENDIAN.erased()) {
            tracing::error!(error = %e, "encoding a command set failed");
            body.clear();
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_round_trips_with_its_group_length() {
        let bytes = CommandBuilder::response(field::C_STORE_RSP, 7, status::CANNOT_UNDERSTAND)
            .uid(tags::AFFECTED_SOP_CLASS_UID, "1.2.840.10008.5.1.4.1.1.2")
            .uid(tags::AFFECTED_SOP_INSTANCE_UID, "2.25.12")
            .error_comment(&"x".repeat(100))
            .encode();
        let group_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(group_len, bytes.len() - 12);
        assert_eq!(group_len % 2, 0);
        let cmd = Command::parse(&bytes).unwrap();
        assert_eq!(cmd.field, field::C_STORE_RSP);
        assert_eq!(cmd.message_id, 7);
        assert_eq!(cmd.u16(tags::STATUS), Some(status::CANNOT_UNDERSTAND));
        assert!(!cmd.has_data_set());
        assert_eq!(cmd.affected_sop_instance_uid().as_deref(), Some("2.25.12"));
        assert_eq!(cmd.text(tags::ERROR_COMMENT).unwrap().len(), 64);
        // "2.25.12" is odd: padded with NUL, not a space.
        let at = bytes.windows(7).position(|w| w == b"2.25.12").unwrap();
        assert_eq!(bytes[at + 7], 0);
    }

    #[test]
    fn uid_lists_are_nul_padded() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"));
        obj.put(DataElement::new(
            tags::FAILED_SOP_INSTANCE_UID_LIST,
            VR::UI,
            PrimitiveValue::Strs(
                ["1.2".to_string(), "1.234".to_string()]
                    .into_iter()
                    .collect(),
            ),
        ));
        pad_uids(&mut obj);
        let mut out = Vec::new();
        obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        assert!(out.windows(6).any(|w| w == b"1.2.3\0"));
        assert!(out.windows(10).any(|w| w == b"1.2\\1.234\0"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Command::parse(b"\x01\x02\x03").is_err());
        assert!(Command::parse(&[]).is_err());
        let no_field = CommandBuilder::default().u16(tags::MESSAGE_ID, 1).encode();
        assert!(matches!(
            Command::parse(&no_field),
            Err(CommandError::Missing("Command Field"))
        ));
    }
}
