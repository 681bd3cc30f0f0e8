//! The DIMSE front end: a DICOM upper-layer listener (dicom-ul, async) that accepts associations
//! from configured nodes and serves C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE by calling the same
//! `yilian-app` use cases as HTTP, acting as the node's principal (`Config::dicom_principal`).

mod association;
pub mod command;
mod negotiation;
mod query;
pub mod sop_classes;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use dicom_ul::association::Association;
use dicom_ul::association::server::ServerAssociationOptions;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;
use yilian_app::Hub;

use association::Session;
use negotiation::{NodeAccess, Roles};

/// Accepts associations until the task is dropped or aborted: one tokio task per association.
pub async fn serve_dimse(hub: Hub, listener: TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, ae_title = %hub.config.dicom.ae_title, "DIMSE listener ready");
    }
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "DIMSE accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            let span = tracing::info_span!(
                "dimse",
                %peer,
                calling = tracing::field::Empty,
                called = tracing::field::Empty
            );
            associate(hub, socket, peer).instrument(span).await;
        });
    }
}

/// Starts [`serve_dimse`] on its own task.
pub fn spawn_dimse(hub: Hub, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(serve_dimse(hub, listener))
}

async fn associate(hub: Hub, socket: TcpStream, peer: SocketAddr) {
    // DIMSE exchanges are small request/response messages: Nagle would add a delay to each.
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    let cfg = hub.config.clone();
    let idle = Duration::from_secs(cfg.dicom.idle_timeout_secs.max(1));
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(NodeAccess {
            config: &cfg,
            peer_ip: peer.ip(),
        })
        .with_negotiation(Roles)
        .ae_title(cfg.dicom.ae_title.trim())
        .max_pdu_length(cfg.dicom.max_pdu_length)
        .read_timeout(idle)
        .write_timeout(idle);
    for uid in sop_classes::accepted_abstract_syntaxes() {
        options = options.with_abstract_syntax(uid);
    }
    let assoc = match options.establish_async(socket).await {
        Ok(a) => a,
        Err(e) => {
            // Rejections were logged with their reason by the access control.
            tracing::info!(error = %e, "association not established");
            return;
        }
    };
    let span = tracing::Span::current();
    span.record("calling", assoc.peer_ae_title());
    span.record("called", assoc.called_ae_title());
    let Some(who) = cfg.dicom_principal(assoc.peer_ae_title()) else {
        tracing::warn!("accepted node has no principal; aborting");
        let _ = assoc.abort().await;
        return;
    };
    tracing::info!(
        contexts = assoc
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
            .count(),
        user = %who.username,
        "association accepted"
    );
    Session::new(assoc, hub, who).run().await;
}
