//! One accepted association: reads P-DATA PDVs, reassembles command sets, streams data sets to
//! their sink, dispatches each DIMSE message to its service, and writes responses. The read side
//! holds at most one PDU; a data set never sits in memory unless it is a small query identifier.

use std::collections::VecDeque;

use dicom_dictionary_std::{tags, uids};
use dicom_ul::Pdu;
use dicom_ul::association::{Association, AsyncAssociation, AsyncServerAssociation};
use dicom_ul::pdu::{
    PDataValue, PDataValueType, PresentationContextNegotiated, PresentationContextResultReason,
};
use tokio::net::TcpStream;
use yilian_app::{Hub, Principal};

use super::command::{Command, CommandBuilder, field, status};
use super::store::{self, Incoming};

/// Largest command set accepted (real ones are a few hundred bytes).
const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Largest query/retrieve identifier kept in memory.
pub const MAX_IDENTIFIER_BYTES: usize = 1024 * 1024;

/// Why an association ends abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("upper layer: {0}")]
    Ul(#[from] dicom_ul::association::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("the peer released or aborted the association during an operation")]
    PeerGone,
}

impl SessionError {
    fn is_timeout(&self) -> bool {
        matches!(
            self,
            SessionError::Ul(dicom_ul::association::Error::Timeout { .. })
        )
    }
}

/// What the next read delivered.
pub enum Event {
    Pdv(PDataValue),
    ReleaseRequested,
    Aborted,
}

/// A data set being received after its command.
enum Pending {
    Store {
        cmd: Command,
        pc: u8,
        sink: Incoming,
    },
    Identifier {
        cmd: Command,
        pc: u8,
        buf: Vec<u8>,
        overflow: bool,
    },
}

pub struct Session {
    pub assoc: AsyncServerAssociation<TcpStream>,
    pub hub: Hub,
    pub who: Principal,
    pub calling: String,
    contexts: Vec<PresentationContextNegotiated>,
    backlog: VecDeque<PDataValue>,
    next_message_id: u16,
}

impl Session {
    pub fn new(assoc: AsyncServerAssociation<TcpStream>, hub: Hub, who: Principal) -> Session {
        let contexts = assoc
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .cloned()
            .collect();
        let calling = assoc.peer_ae_title().to_string();
        Session {
            assoc,
            hub,
            who,
            calling,
            contexts,
            backlog: VecDeque::new(),
            next_message_id: 1,
        }
    }

    /// The accepted presentation context with this ID.
    pub fn context(&self, pc: u8) -> Option<&PresentationContextNegotiated> {
        self.contexts.iter().find(|c| c.id == pc)
    }

    /// Accepted presentation contexts.
    pub fn contexts(&self) -> &[PresentationContextNegotiated] {
        &self.contexts
    }

    /// A fresh Message ID for a request the hub sends (C-STORE sub-operations).
    pub fn message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        id
    }

    /// Serves the association until the peer releases it, aborts it, or goes idle.
    pub async fn run(mut self) {
        let mut command: Vec<u8> = Vec::new();
        let mut pending: Option<Pending> = None;
        loop {
            let event = match self.next_event().await {
                Ok(e) => e,
                Err(e) if e.is_timeout() => {
                    tracing::info!("association idle for too long; aborting");
                    let _ = self.assoc.abort().await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "association ended abnormally");
                    let _ = self.assoc.abort().await;
                    return;
                }
            };
            let step = match event {
                Event::Pdv(pdv) => self.on_pdv(pdv, &mut command, &mut pending).await,
                Event::ReleaseRequested => {
                    let _ = self.assoc.send(&Pdu::ReleaseRP).await;
                    tracing::info!("association released");
                    return;
                }
                Event::Aborted => {
                    tracing::info!("association aborted by peer");
                    return;
                }
            };
            if let Err(e) = step {
                tracing::warn!(error = %e, "aborting association");
                let _ = self.assoc.abort().await;
                return;
            }
        }
    }

    /// The next PDV, release request or abort from the peer.
    pub async fn next_event(&mut self) -> Result<Event, SessionError> {
        loop {
            if let Some(pdv) = self.backlog.pop_front() {
                return Ok(Event::Pdv(pdv));
            }
            match self.assoc.receive().await? {
                Pdu::PData { data } => self.backlog.extend(data),
                Pdu::ReleaseRQ => return Ok(Event::ReleaseRequested),
                Pdu::AbortRQ { .. } => return Ok(Event::Aborted),
                other => {
                    return Err(SessionError::Protocol(format!(
                        "unexpected PDU: {}",
                        other.short_description()
                    )));
                }
            }
        }
    }

    /// Reads the next complete command set that has no data set (a C-STORE-RSP to one of the
    /// hub's sub-operations, or a C-CANCEL-RQ).
    pub async fn receive_command(&mut self) -> Result<(u8, Command), SessionError> {
        let mut buf = Vec::new();
        loop {
            match self.next_event().await? {
                Event::Pdv(pdv) if pdv.value_type == PDataValueType::Command => {
                    if buf.len() + pdv.data.len() > MAX_COMMAND_BYTES {
                        return Err(SessionError::Protocol("command set too large".into()));
                    }
                    buf.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        let cmd = Command::parse(&buf)
                            .map_err(|e| SessionError::Protocol(e.to_string()))?;
                        return Ok((pdv.presentation_context_id, cmd));
                    }
                }
                Event::Pdv(_) => {
                    return Err(SessionError::Protocol(
                        "a data set arrived where a response was expected".into(),
                    ));
                }
                Event::ReleaseRequested | Event::Aborted => return Err(SessionError::PeerGone),
            }
        }
    }

    async fn on_pdv(
        &mut self,
        pdv: PDataValue,
        command: &mut Vec<u8>,
        pending: &mut Option<Pending>,
    ) -> Result<(), SessionError> {
        let pc = pdv.presentation_context_id;
        if self.context(pc).is_none() {
            return Err(SessionError::Protocol(format!(
                "PDV on presentation context {pc}, which was not accepted"
            )));
        }
        match pdv.value_type {
            PDataValueType::Command => {
                if pending.is_some() {
                    return Err(SessionError::Protocol(
                        "a command arrived while a data set was expected".into(),
                    ));
                }
                if command.len() + pdv.data.len() > MAX_COMMAND_BYTES {
                    return Err(SessionError::Protocol("command set too large".into()));
                }
                command.extend_from_slice(&pdv.data);
                if !pdv.is_last {
                    return Ok(());
                }
                let cmd =
                    Command::parse(command).map_err(|e| SessionError::Protocol(e.to_string()));
                command.clear();
                let cmd = cmd?;
                if cmd.has_data_set() {
                    *pending = Some(self.begin_data_set(cmd, pc).await);
                    Ok(())
                } else {
                    self.dispatch(cmd, pc, None).await
                }
            }
            PDataValueType::Data => {
                let Some(p) = pending.as_mut() else {
                    return Err(SessionError::Protocol(
                        "a data set arrived without a command".into(),
                    ));
                };
                match p {
                    Pending::Store {
                        pc: expected, sink, ..
                    } => {
                        if *expected != pc {
                            return Err(SessionError::Protocol(
                                "data set on another presentation context".into(),
                            ));
                        }
                        sink.write(&pdv.data).await;
                    }
                    Pending::Identifier {
                        pc: expected,
                        buf,
                        overflow,
                        ..
                    } => {
                        if *expected != pc {
                            return Err(SessionError::Protocol(
                                "data set on another presentation context".into(),
                            ));
                        }
                        if buf.len() + pdv.data.len() > MAX_IDENTIFIER_BYTES {
                            *overflow = true;
                            buf.clear();
                        } else if !*overflow {
                            buf.extend_from_slice(&pdv.data);
                        }
                    }
                }
                if pdv.is_last {
                    match pending.take() {
                        Some(Pending::Store { cmd, pc, sink }) => {
                            self.finish_store(cmd, pc, sink).await
                        }
                        Some(Pending::Identifier {
                            cmd,
                            pc,
                            buf,
                            overflow,
                        }) => {
                            let identifier = if overflow { Err(()) } else { Ok(buf) };
                            self.dispatch(cmd, pc, Some(identifier)).await
                        }
                        None => Ok(()),
                    }
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn begin_data_set(&mut self, cmd: Command, pc: u8) -> Pending {
        if cmd.field == field::C_STORE_RQ {
            let ts = self
                .context(pc)
                .map(|c| c.transfer_syntax.clone())
                .unwrap_or_default();
            let class = cmd.affected_sop_class_uid().unwrap_or_default();
            let instance = cmd.affected_sop_instance_uid().unwrap_or_default();
            let staging = self.hub.blobs.staging_dir();
            let sink = Incoming::create(staging.as_deref(), &class, &instance, &ts).await;
            Pending::Store { cmd, pc, sink }
        } else {
            Pending::Identifier {
                cmd,
                pc,
                buf: Vec::new(),
                overflow: false,
            }
        }
    }

    /// Handles a command whose data set (if any) is complete.
    async fn dispatch(
        &mut self,
        cmd: Command,
        pc: u8,
        identifier: Option<Result<Vec<u8>, ()>>,
    ) -> Result<(), SessionError> {
        match cmd.field {
            field::C_ECHO_RQ => {
                let rsp =
                    CommandBuilder::response(field::C_ECHO_RSP, cmd.message_id, status::SUCCESS)
                        .uid(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION);
                self.send_message(pc, rsp.encode(), None).await
            }
            field::C_CANCEL_RQ => Ok(()), // nothing in progress to cancel
            field::C_STORE_RQ => {
                // A C-STORE-RQ without a data set.
                self.respond_store(
                    &cmd,
                    pc,
                    status::CANNOT_UNDERSTAND,
                    Some("the C-STORE request carried no data set"),
                )
                .await
            }
            field::C_FIND_RQ | field::C_GET_RQ | field::C_MOVE_RQ => {
                super::query::handle(self, cmd, pc, identifier).await
            }
            other => Err(SessionError::Protocol(format!(
                "unsupported DIMSE command 0x{other:04X}"
            ))),
        }
    }

    async fn finish_store(
        &mut self,
        cmd: Command,
        pc: u8,
        sink: Incoming,
    ) -> Result<(), SessionError> {
        let result = if cmd.affected_sop_instance_uid().is_none()
            || cmd.affected_sop_class_uid().is_none()
        {
            store::StoreStatus {
                status: status::CANNOT_UNDERSTAND,
                comment: Some("the C-STORE request has no Affected SOP Class/Instance UID".into()),
            }
        } else {
            match sink.finish().await {
                Ok(path) => store::ingest(&self.hub, &self.who, &path).await,
                Err(e) => {
                    tracing::error!(error = %e, "incoming instance not buffered");
                    store::StoreStatus {
                        status: status::OUT_OF_RESOURCES,
                        comment: Some("the hub could not buffer the instance".into()),
                    }
                }
            }
        };
        self.respond_store(&cmd, pc, result.status, result.comment.as_deref())
            .await
    }

    async fn respond_store(
        &mut self,
        cmd: &Command,
        pc: u8,
        status: u16,
        comment: Option<&str>,
    ) -> Result<(), SessionError> {
        let mut rsp = CommandBuilder::response(field::C_STORE_RSP, cmd.message_id, status);
        if let Some(c) = cmd.affected_sop_class_uid() {
            rsp = rsp.uid(tags::AFFECTED_SOP_CLASS_UID, &c);
        }
        if let Some(i) = cmd.affected_sop_instance_uid() {
            rsp = rsp.uid(tags::AFFECTED_SOP_INSTANCE_UID, &i);
        }
        if let Some(c) = comment {
            rsp = rsp.error_comment(c);
        }
        self.send_message(pc, rsp.encode(), None).await
    }

    /// Sends a command set and, when given, a data set, each split into PDUs the peer accepts.
    pub async fn send_message(
        &mut self,
        pc: u8,
        command: Vec<u8>,
        data: Option<&[u8]>,
    ) -> Result<(), SessionError> {
        self.send_pdvs(pc, PDataValueType::Command, &command)
            .await?;
        if let Some(d) = data {
            self.send_pdvs(pc, PDataValueType::Data, d).await?;
        }
        Ok(())
    }

    async fn send_pdvs(
        &mut self,
        pc: u8,
        value_type: PDataValueType,
        bytes: &[u8],
    ) -> Result<(), SessionError> {
        send_pdvs(&mut self.assoc, pc, value_type, bytes).await
    }
}

/// Sends bytes as PDVs of one type, split into P-DATA-TF PDUs no larger than the peer accepts.
pub async fn send_pdvs<A>(
    assoc: &mut A,
    pc: u8,
    value_type: PDataValueType,
    bytes: &[u8],
) -> Result<(), SessionError>
where
    A: AsyncAssociation<TcpStream> + Send,
{
    // PDU variable field = 4 (PDV length) + 1 (context) + 1 (control) + data.
    let max = (assoc.peer_max_pdu_length() as usize)
        .saturating_sub(6)
        .max(1);
    let mut chunks = bytes.chunks(max).peekable();
    if chunks.peek().is_none() {
        return send_pdv(assoc, pc, value_type, true, Vec::new()).await;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        send_pdv(assoc, pc, value_type.clone(), last, chunk.to_vec()).await?;
    }
    Ok(())
}

async fn send_pdv<A>(
    assoc: &mut A,
    pc: u8,
    value_type: PDataValueType,
    is_last: bool,
    data: Vec<u8>,
) -> Result<(), SessionError>
where
    A: AsyncAssociation<TcpStream> + Send,
{
    AsyncAssociation::send(
        assoc,
        &Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type,
                is_last,
                data,
            }],
        },
    )
    .await?;
    Ok(())
}
