//! C-FIND, C-GET and C-MOVE as SCP over the app's query and retrieve use cases.

use super::association::{Session, SessionError};
use super::command::{Command, CommandBuilder, field, status};

/// Answers a Q/R request whose identifier is complete (`Err(())` when it was too large).
pub async fn handle(
    session: &mut Session,
    cmd: Command,
    pc: u8,
    _identifier: Option<Result<Vec<u8>, ()>>,
) -> Result<(), SessionError> {
    let rsp_field = match cmd.field {
        field::C_FIND_RQ => field::C_FIND_RSP,
        field::C_GET_RQ => field::C_GET_RSP,
        _ => field::C_MOVE_RSP,
    };
    let mut rsp = CommandBuilder::response(rsp_field, cmd.message_id, status::UNABLE_TO_PROCESS)
        .error_comment("query/retrieve is not available yet");
    if let Some(c) = cmd.affected_sop_class_uid() {
        rsp = rsp.uid(dicom_dictionary_std::tags::AFFECTED_SOP_CLASS_UID, &c);
    }
    session.send_message(pc, rsp.encode(), None).await
}
