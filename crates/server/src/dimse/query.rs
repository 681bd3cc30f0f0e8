//! C-FIND, C-GET and C-MOVE as SCP (Patient Root and Study Root), over the app's `search` and
//! `instances_to_retrieve` use cases: the identifier becomes a typed `Query`, matches become
//! response identifiers, retrieved instances go out as C-STORE sub-operations (on the same
//! association for C-GET, on a new one to a configured node for C-MOVE).

use std::borrow::Cow;
use std::io::Cursor;
use std::time::Duration;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{FileMetaTable, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::Pdu;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{
    PDataValueType, PresentationContextNegotiated, PresentationContextResultReason,
};
use tokio::net::TcpStream;
use yilian_app::{AppError, InstanceRecord};
use yilian_formats::query::{Query, QueryLevel, cfind_response};

use super::association::{MAX_IDENTIFIER_BYTES, Session, SessionError, send_pdvs};
use super::command::{Command, CommandBuilder, field, pad_uids, status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    PatientRoot,
    StudyRoot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Find,
    Get,
    Move,
}

fn model_of(sop_class: &str) -> Option<(Model, Op)> {
    Some(match sop_class {
        uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND => (Model::PatientRoot, Op::Find),
        uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET => (Model::PatientRoot, Op::Get),
        uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE => (Model::PatientRoot, Op::Move),
        uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND => (Model::StudyRoot, Op::Find),
        uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET => (Model::StudyRoot, Op::Get),
        uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE => (Model::StudyRoot, Op::Move),
        _ => return None,
    })
}

/// Sub-operation counters of a C-GET or C-MOVE.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    remaining: u16,
    completed: u16,
    failed: u16,
    warning: u16,
}

/// The request being answered: where responses go and what they name.
struct Request<'a> {
    cmd: &'a Command,
    pc: u8,
    rsp_field: u16,
    sop_class: String,
    transfer_syntax: String,
}

impl Request<'_> {
    fn response(&self, status: u16) -> CommandBuilder {
        CommandBuilder::response(self.rsp_field, self.cmd.message_id, status)
            .uid(tags::AFFECTED_SOP_CLASS_UID, &self.sop_class)
    }

    async fn fail(
        &self,
        session: &mut Session,
        status: u16,
        comment: &str,
    ) -> Result<(), SessionError> {
        tracing::info!(
            status = format!("{status:04X}"),
            comment,
            "query/retrieve refused"
        );
        let rsp = self.response(status).error_comment(comment);
        session.send_message(self.pc, rsp.encode(), None).await
    }
}

/// Answers a Q/R request whose identifier is complete (`Err(())` when it was too large).
pub async fn handle(
    session: &mut Session,
    cmd: Command,
    pc: u8,
    identifier: Option<Result<Vec<u8>, ()>>,
) -> Result<(), SessionError> {
    let (sop_class, transfer_syntax) = session
        .context(pc)
        .map(|c| (c.abstract_syntax.clone(), c.transfer_syntax.clone()))
        .unwrap_or_default();
    let rsp_field = match cmd.field {
        field::C_FIND_RQ => field::C_FIND_RSP,
        field::C_GET_RQ => field::C_GET_RSP,
        _ => field::C_MOVE_RSP,
    };
    let req = Request {
        cmd: &cmd,
        pc,
        rsp_field,
        sop_class,
        transfer_syntax,
    };
    let wanted = match cmd.field {
        field::C_FIND_RQ => Op::Find,
        field::C_GET_RQ => Op::Get,
        _ => Op::Move,
    };
    let model = match model_of(&req.sop_class) {
        Some((model, op)) if op == wanted => model,
        _ => {
            return req
                .fail(
                    session,
                    status::SOP_CLASS_NOT_SUPPORTED,
                    "the request does not match the presentation context's SOP class",
                )
                .await;
        }
    };
    let bytes = match identifier {
        Some(Ok(b)) => b,
        Some(Err(())) => {
            let msg = format!("the identifier is larger than {MAX_IDENTIFIER_BYTES} bytes");
            return req.fail(session, status::OUT_OF_RESOURCES, &msg).await;
        }
        None => {
            return req
                .fail(
                    session,
                    status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
                    "the request has no identifier",
                )
                .await;
        }
    };
    let query = match decode_data_set(&bytes, &req.transfer_syntax)
        .and_then(|obj| Query::from_identifier(&obj).map_err(|e| e.to_string()))
    {
        Ok(q) => q,
        Err(e) => {
            return req
                .fail(session, status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, &e)
                .await;
        }
    };
    if model == Model::StudyRoot && query.level == QueryLevel::Patient {
        return req
            .fail(
                session,
                status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
                "the Study Root model has no PATIENT level",
            )
            .await;
    }
    tracing::info!(op = ?wanted, model = ?model, level = query.level.as_str(), "query/retrieve request");
    match wanted {
        Op::Find => find(session, &req, &query).await,
        Op::Get => get(session, &req, &query).await,
        Op::Move => move_to(session, &req, &query).await,
    }
}

/// C-FIND: one pending response per match, then success.
async fn find(session: &mut Session, req: &Request<'_>, query: &Query) -> Result<(), SessionError> {
    let result = match session.hub.search(&session.who, query).await {
        Ok(r) => r,
        Err(e) => {
            let (st, msg) = app_error_status(&e);
            return req.fail(session, st, &msg).await;
        }
    };
    // FF01: matches continue, but some optional keys were not supported.
    let pending = if query.ignored.is_empty() {
        status::PENDING
    } else {
        0xFF01
    };
    for m in &result.matches {
        let identifier = match encode_data_set(&cfind_response(query, m), &req.transfer_syntax) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "encoding a C-FIND response failed");
                return req
                    .fail(
                        session,
                        status::UNABLE_TO_PROCESS,
                        "a match could not be encoded",
                    )
                    .await;
            }
        };
        let rsp = req.response(pending).with_data_set();
        session
            .send_message(req.pc, rsp.encode(), Some(&identifier))
            .await?;
    }
    tracing::info!(
        matches = result.matches.len(),
        truncated = result.truncated,
        "C-FIND answered"
    );
    session
        .send_message(req.pc, req.response(status::SUCCESS).encode(), None)
        .await
}

/// How one C-STORE sub-operation ended.
enum SubOutcome {
    Completed,
    Warning,
    Failed(String),
}

fn sub_outcome(st: u16) -> SubOutcome {
    match st {
        status::SUCCESS => SubOutcome::Completed,
        0x0001 | 0xB000..=0xBFFF => SubOutcome::Warning,
        other => SubOutcome::Failed(format!("the receiver answered 0x{other:04X}")),
    }
}

/// C-GET: C-STORE sub-operations on the requester's own association.
async fn get(session: &mut Session, req: &Request<'_>, query: &Query) -> Result<(), SessionError> {
    let records = match session.hub.instances_to_retrieve(&session.who, query).await {
        Ok(r) => r,
        Err(e) => {
            let (st, msg) = app_error_status(&e);
            return req.fail(session, st, &msg).await;
        }
    };
    let mut counts = Counts {
        remaining: clamp16(records.len()),
        ..Counts::default()
    };
    let mut failed_uids = Vec::new();
    let mut cancelled = false;
    for rec in &records {
        if cancelled {
            break;
        }
        let outcome = match prepare(session, rec, session.contexts()).await {
            Ok((pc, data)) => {
                let id = session.message_id();
                let rq = store_request(id, rec, None);
                session.send_message(pc, rq, Some(&data)).await?;
                loop {
                    let (_, rsp) = session.receive_command().await?;
                    match rsp.field {
                        field::C_STORE_RSP if rsp.message_id == id => {
                            break sub_outcome(rsp.u16(tags::STATUS).unwrap_or(0xC000));
                        }
                        field::C_CANCEL_RQ if rsp.message_id == req.cmd.message_id => {
                            cancelled = true
                        }
                        other => {
                            return Err(SessionError::Protocol(format!(
                                "0x{other:04X} received while a C-STORE response was expected"
                            )));
                        }
                    }
                }
            }
            Err(e) => SubOutcome::Failed(e),
        };
        tally(&mut counts, &mut failed_uids, rec, outcome);
        if counts.remaining > 0 && !cancelled {
            let rsp = with_counts(req.response(status::PENDING), counts, true);
            session.send_message(req.pc, rsp.encode(), None).await?;
        }
    }
    finish_retrieve(session, req, counts, &failed_uids, cancelled, None).await
}

/// C-MOVE: C-STORE sub-operations on a new association to a configured destination.
async fn move_to(
    session: &mut Session,
    req: &Request<'_>,
    query: &Query,
) -> Result<(), SessionError> {
    let dest_ae = req.cmd.text(tags::MOVE_DESTINATION).unwrap_or_default();
    let Some(dest) = session.hub.config.move_destination(&dest_ae) else {
        let msg = format!("move destination {dest_ae:?} is not a configured node with an address");
        return req
            .fail(session, status::MOVE_DESTINATION_UNKNOWN, &msg)
            .await;
    };
    let records = match session.hub.instances_to_retrieve(&session.who, query).await {
        Ok(r) => r,
        Err(e) => {
            let (st, msg) = app_error_status(&e);
            return req.fail(session, st, &msg).await;
        }
    };
    let mut counts = Counts {
        remaining: clamp16(records.len()),
        ..Counts::default()
    };
    if records.is_empty() {
        return finish_retrieve(session, req, counts, &[], false, None).await;
    }
    let cfg = session.hub.config.clone();
    let idle = Duration::from_secs(cfg.dicom.idle_timeout_secs.max(1));
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(cfg.dicom.ae_title.trim().to_string())
        .called_ae_title(dest.ae_title.clone())
        .max_pdu_length(cfg.dicom.max_pdu_length)
        .connection_timeout(idle)
        .read_timeout(idle)
        .write_timeout(idle);
    for (class, tss) in proposals(&records) {
        options = options.with_presentation_context(class, tss);
    }
    let mut out = match options
        .establish_async((dest.host.as_str(), dest.port))
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(destination = %dest.ae_title, error = %e, "C-MOVE destination unreachable");
            counts.failed = counts.remaining;
            counts.remaining = 0;
            let failed: Vec<String> = records
                .iter()
                .map(|r| r.sop_instance_uid.to_string())
                .collect();
            let comment = format!("could not associate with {}", dest.ae_title);
            return finish_retrieve(
                session,
                req,
                counts,
                &failed,
                false,
                Some((status::OUT_OF_RESOURCES_SUB_OPERATIONS, comment)),
            )
            .await;
        }
    };
    let _ = out.inner_stream().set_nodelay(true);
    let contexts: Vec<PresentationContextNegotiated> = out
        .presentation_contexts()
        .iter()
        .filter(|c| c.reason == PresentationContextResultReason::Acceptance)
        .cloned()
        .collect();
    let mut failed_uids = Vec::new();
    let mut id: u16 = 0;
    for rec in &records {
        id = id.wrapping_add(1).max(1);
        let outcome = match prepare(session, rec, &contexts).await {
            Ok((pc, data)) => {
                let rq = store_request(
                    id,
                    rec,
                    Some((session.calling.as_str(), req.cmd.message_id)),
                );
                match store_on_client(&mut out, pc, rq, &data, id).await {
                    Ok(st) => sub_outcome(st),
                    Err(e) => {
                        tracing::warn!(error = %e, "C-MOVE destination association failed");
                        SubOutcome::Failed(format!("association with {} failed", dest.ae_title))
                    }
                }
            }
            Err(e) => SubOutcome::Failed(e),
        };
        let broken = matches!(&outcome, SubOutcome::Failed(m) if m.starts_with("association with"));
        tally(&mut counts, &mut failed_uids, rec, outcome);
        if broken {
            // Every remaining instance fails with it.
            for r in records
                .iter()
                .skip((counts.completed + counts.failed + counts.warning) as usize)
            {
                tally(
                    &mut counts,
                    &mut failed_uids,
                    r,
                    SubOutcome::Failed(String::new()),
                );
            }
            break;
        }
        if counts.remaining > 0 {
            let rsp = with_counts(req.response(status::PENDING), counts, true);
            session.send_message(req.pc, rsp.encode(), None).await?;
        }
    }
    if let Err(e) = out.release().await {
        tracing::debug!(error = %e, "releasing the C-MOVE destination association");
    }
    finish_retrieve(session, req, counts, &failed_uids, false, None).await
}

/// Sends one C-STORE-RQ on a client association and reads its response status.
async fn store_on_client<A>(
    assoc: &mut A,
    pc: u8,
    command: Vec<u8>,
    data: &[u8],
    id: u16,
) -> Result<u16, SessionError>
where
    A: AsyncAssociation<TcpStream> + Send,
{
    send_pdvs(assoc, pc, PDataValueType::Command, &command).await?;
    send_pdvs(assoc, pc, PDataValueType::Data, data).await?;
    let mut buf = Vec::new();
    loop {
        match AsyncAssociation::receive(assoc).await? {
            Pdu::PData { data } => {
                for pdv in data {
                    if pdv.value_type != PDataValueType::Command {
                        continue;
                    }
                    buf.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        let cmd = Command::parse(&buf)
                            .map_err(|e| SessionError::Protocol(e.to_string()))?;
                        buf.clear();
                        if cmd.field == field::C_STORE_RSP && cmd.message_id == id {
                            return Ok(cmd.u16(tags::STATUS).unwrap_or(0xC000));
                        }
                    }
                }
            }
            Pdu::AbortRQ { .. } | Pdu::ReleaseRQ => return Err(SessionError::PeerGone),
            other => {
                return Err(SessionError::Protocol(format!(
                    "unexpected PDU: {}",
                    other.short_description()
                )));
            }
        }
    }
}

fn tally(
    counts: &mut Counts,
    failed_uids: &mut Vec<String>,
    rec: &InstanceRecord,
    outcome: SubOutcome,
) {
    counts.remaining = counts.remaining.saturating_sub(1);
    match outcome {
        SubOutcome::Completed => counts.completed = counts.completed.saturating_add(1),
        SubOutcome::Warning => counts.warning = counts.warning.saturating_add(1),
        SubOutcome::Failed(why) => {
            if !why.is_empty() {
                tracing::info!(reason = %why, "C-STORE sub-operation failed");
            }
            counts.failed = counts.failed.saturating_add(1);
            failed_uids.push(rec.sop_instance_uid.to_string());
        }
    }
}

/// The final C-GET/C-MOVE response: success, B000 with the failed instances, FE00 when cancelled,
/// or `refusal` when the sub-operations could not be performed at all.
async fn finish_retrieve(
    session: &mut Session,
    req: &Request<'_>,
    counts: Counts,
    failed_uids: &[String],
    cancelled: bool,
    refusal: Option<(u16, String)>,
) -> Result<(), SessionError> {
    let (st, comment) = match refusal {
        Some((st, c)) => (st, Some(c)),
        None if cancelled => (status::CANCEL, None),
        None if counts.failed > 0 || counts.warning > 0 => (status::SUB_OPERATIONS_WARNING, None),
        None => (status::SUCCESS, None),
    };
    tracing::info!(
        status = format!("{st:04X}"),
        completed = counts.completed,
        failed = counts.failed,
        warning = counts.warning,
        "retrieve finished"
    );
    let mut rsp = with_counts(req.response(st), counts, cancelled);
    if let Some(c) = comment {
        rsp = rsp.error_comment(&c);
    }
    if failed_uids.is_empty() {
        return session.send_message(req.pc, rsp.encode(), None).await;
    }
    let mut id = InMemDicomObject::new_empty();
    id.put(DataElement::new(
        tags::FAILED_SOP_INSTANCE_UID_LIST,
        VR::UI,
        PrimitiveValue::Strs(failed_uids.iter().cloned().collect()),
    ));
    match encode_data_set(&id, &req.transfer_syntax) {
        Ok(data) => {
            session
                .send_message(req.pc, rsp.with_data_set().encode(), Some(&data))
                .await
        }
        Err(e) => {
            tracing::error!(error = %e, "encoding the failed instance list");
            session.send_message(req.pc, rsp.encode(), None).await
        }
    }
}

fn with_counts(rsp: CommandBuilder, c: Counts, remaining: bool) -> CommandBuilder {
    let rsp = if remaining {
        rsp.u16(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, c.remaining)
    } else {
        rsp
    };
    rsp.u16(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, c.completed)
        .u16(tags::NUMBER_OF_FAILED_SUBOPERATIONS, c.failed)
        .u16(tags::NUMBER_OF_WARNING_SUBOPERATIONS, c.warning)
}

fn clamp16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn store_request(id: u16, rec: &InstanceRecord, originator: Option<(&str, u16)>) -> Vec<u8> {
    let mut rq = CommandBuilder::request(field::C_STORE_RQ, id)
        .uid(tags::AFFECTED_SOP_CLASS_UID, rec.sop_class_uid.as_str())
        .uid(
            tags::AFFECTED_SOP_INSTANCE_UID,
            rec.sop_instance_uid.as_str(),
        )
        .u16(tags::PRIORITY, 0)
        .with_data_set();
    if let Some((ae, msg_id)) = originator {
        rq = rq
            .ae(tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE, ae)
            .u16(tags::MOVE_ORIGINATOR_MESSAGE_ID, msg_id);
    }
    rq.encode()
}

/// Presentation contexts to propose to a C-MOVE destination: per SOP class, one per stored
/// transfer syntax, plus explicit/implicit little endian so native data sets can be converted.
fn proposals(records: &[InstanceRecord]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in records {
        let class = r.sop_class_uid.to_string();
        let ts = r.transfer_syntax_uid.clone();
        if !out
            .iter()
            .any(|(c, t)| c == &class && t.len() == 1 && t[0] == ts)
        {
            out.push((class.clone(), vec![ts]));
        }
        if !out.iter().any(|(c, t)| c == &class && t.len() == 2) {
            out.push((
                class,
                vec![
                    uids::EXPLICIT_VR_LITTLE_ENDIAN.into(),
                    uids::IMPLICIT_VR_LITTLE_ENDIAN.into(),
                ],
            ));
        }
    }
    // Presentation context IDs are odd numbers 1–255.
    out.truncate(128);
    out
}

/// The presentation context and data set bytes for sending `rec`: as stored when a context with
/// its transfer syntax was accepted, else converted to an accepted native little endian syntax
/// (possible only when the stored pixel data is not compressed).
async fn prepare(
    session: &Session,
    rec: &InstanceRecord,
    contexts: &[PresentationContextNegotiated],
) -> Result<(u8, Vec<u8>), String> {
    let class = rec.sop_class_uid.as_str();
    let bytes = session
        .hub
        .checked_blob(rec)
        .await
        .map_err(|e| format!("stored instance unavailable: {e}"))?;
    let (start, offset) = data_set_offset(&bytes)?;
    let same = contexts
        .iter()
        .find(|c| c.abstract_syntax == class && c.transfer_syntax == rec.transfer_syntax_uid);
    if let Some(c) = same {
        return Ok((c.id, bytes[offset..].to_vec()));
    }
    let native = TransferSyntaxRegistry
        .get(&rec.transfer_syntax_uid)
        .is_some_and(|ts| !ts.is_encapsulated_pixel_data());
    let target = contexts.iter().find(|c| {
        c.abstract_syntax == class
            && (c.transfer_syntax == uids::EXPLICIT_VR_LITTLE_ENDIAN
                || c.transfer_syntax == uids::IMPLICIT_VR_LITTLE_ENDIAN)
    });
    match (native, target) {
        (true, Some(c)) => {
            let converted = convert(&bytes[start..], &c.transfer_syntax)?;
            Ok((c.id, converted.into_owned()))
        }
        _ => Err(format!(
            "no accepted presentation context for {class} in {}",
            rec.transfer_syntax_uid
        )),
    }
}

/// Where the file starts (`DICM`) and where its data set starts.
fn data_set_offset(bytes: &[u8]) -> Result<(usize, usize), String> {
    let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        128
    } else if bytes.starts_with(b"DICM") {
        0
    } else {
        return Err("stored instance is not a Part 10 file".into());
    };
    let mut cursor = Cursor::new(&bytes[start..]);
    FileMetaTable::from_reader(&mut cursor).map_err(|e| format!("stored file meta: {e}"))?;
    Ok((start, start + cursor.position() as usize))
}

/// Re-encodes a Part 10 file's data set (from `DICM` on) in another transfer syntax.
fn convert(file: &[u8], ts_uid: &str) -> Result<Cow<'static, [u8]>, String> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    let obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(Cursor::new(file))
        .map_err(|e| format!("stored instance: {e}"))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| format!("converting to {ts_uid}: {e}"))?;
    Ok(Cow::Owned(out))
}

fn decode_data_set(bytes: &[u8], ts_uid: &str) -> Result<InMemDicomObject, String> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    InMemDicomObject::read_dataset_with_ts(bytes, ts)
        .map_err(|e| format!("the identifier could not be read: {e}"))
}

fn encode_data_set(obj: &InMemDicomObject, ts_uid: &str) -> Result<Vec<u8>, String> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    let mut obj = obj.clone();
    pad_uids(&mut obj);
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn app_error_status(e: &AppError) -> (u16, String) {
    match e {
        AppError::Forbidden(m) => (status::NOT_AUTHORIZED, m.clone()),
        AppError::Invalid(m) => (status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, m.clone()),
        AppError::NotFound(what) => (status::UNABLE_TO_PROCESS, format!("{what} not found")),
        other => {
            tracing::error!(error = %other, "query/retrieve failed");
            (
                status::OUT_OF_RESOURCES,
                "the hub cannot answer now; retry later".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_set_starts_after_the_file_meta() {
        let file = yilian_fixtures::instance_bytes(&yilian_fixtures::InstanceSpec::ct(1));
        let (start, offset) = data_set_offset(&file).unwrap();
        assert_eq!(start, 128);
        let group_len = u32::from_le_bytes(file[140..144].try_into().unwrap()) as usize;
        assert_eq!(offset, 144 + group_len);
        assert!(data_set_offset(b"not dicom").is_err());
    }

    #[test]
    fn native_data_sets_convert_to_implicit_little_endian() {
        let file = yilian_fixtures::instance_bytes(&yilian_fixtures::InstanceSpec::ct(1));
        let implicit = convert(&file[128..], uids::IMPLICIT_VR_LITTLE_ENDIAN).unwrap();
        let obj = decode_data_set(&implicit, uids::IMPLICIT_VR_LITTLE_ENDIAN).unwrap();
        assert_eq!(
            obj.element(tags::SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0'),
            "2.25.1001.1.1"
        );
    }

    #[test]
    fn models_and_statuses() {
        assert_eq!(
            model_of(uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE),
            Some((Model::StudyRoot, Op::Move))
        );
        assert_eq!(model_of(uids::CT_IMAGE_STORAGE), None);
        assert!(matches!(sub_outcome(0), SubOutcome::Completed));
        assert!(matches!(sub_outcome(0xB007), SubOutcome::Warning));
        assert!(matches!(sub_outcome(0xA700), SubOutcome::Failed(_)));
    }
}
