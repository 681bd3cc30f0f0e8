//! The MLLP front end: HL7 v2 lab messages over TCP (default port 2575). Each connection has its own
//! `mllp::Decoder` (frames capped at `lab.max_message_bytes`) and carries any number of messages, one
//! at a time: a message is identified by its MSH-4 (and the peer address, when its sender has a
//! `host`), handed to the one lab ingest use case as that sender's principal, and answered with an
//! ACK only once the use case returned: `AA` after the panels are durable, `AE`/`AR` with an ERR
//! segment otherwise. Bad bytes never end the connection; silence does (`lab.idle_timeout_secs`), as
//! does the peer closing it. A frame cut off by a disconnect is never stored.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;
use yilian_app::Hub;
use yilian_app::lab::{LabFormat, LabIngestError};
use yilian_formats::hl7v2::AckCode;
use yilian_formats::hl7v2::mllp::{Decoder, MllpError, frame};

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A running MLLP listener.
pub struct MllpServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MllpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MllpServer").finish_non_exhaustive()
    }
}

impl MllpServer {
    /// Stops accepting connections; open connections finish the message in hand (stored and
    /// acknowledged) and close. Waits up to `grace` for them, then abandons the rest (a message cut
    /// there was not acknowledged, so its sender sends it again).
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }

    /// Stops at once (tests).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts the listener on its own task.
pub fn spawn_mllp(hub: Hub, listener: TcpListener) -> MllpServer {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(serve_mllp(hub, listener, stopped));
    MllpServer { stop, task }
}

/// Resolves when a stop was asked for; never when the `MllpServer` was dropped without asking.
async fn stop_requested(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Accepts connections until a stop is asked for, then waits for the open ones to finish.
async fn serve_mllp(hub: Hub, listener: TcpListener, stopped: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "MLLP listener ready");
    }
    let mut connections = JoinSet::new();
    let stop = stop_requested(stopped.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "MLLP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let max = hub.config.lab.max_connections;
                if connections.len() >= max {
                    // A misbehaving LIS (or anyone) opening connections without end gets closed
                    // connections; the senders already connected keep working.
                    tracing::warn!(%peer, max, "MLLP connection refused: lab.max_connections open");
                    drop(socket);
                    continue;
                }
                let span = tracing::info_span!("mllp", %peer);
                connections.spawn(
                    connection(hub.clone(), socket, peer, stopped.clone()).instrument(span),
                );
            }
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done && e.is_panic() {
                    tracing::error!("an MLLP connection task panicked");
                }
            }
        }
    }
    drop(listener);
    tracing::info!(open = connections.len(), "MLLP listener stopping");
    while connections.join_next().await.is_some() {}
}

/// One connection: frames in, one ACK per message out, in order.
async fn connection(
    hub: Hub,
    mut socket: TcpStream,
    peer: SocketAddr,
    stopped: watch::Receiver<bool>,
) {
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    let idle = Duration::from_secs(hub.config.lab.idle_timeout_secs.max(1));
    let mut decoder = Decoder::new(hub.config.lab.max_message_bytes);
    let mut buf = vec![0u8; READ_CHUNK];
    let stop = stop_requested(stopped);
    tokio::pin!(stop);
    let mut messages = 0u64;
    tracing::debug!("MLLP connection open");
    'conn: loop {
        while let Some(next) = decoder.next_frame() {
            let ack = match next {
                Ok(message) => {
                    messages += 1;
                    Some(handle(&hub, Bytes::from(message), peer).await)
                }
                Err(MllpError::FrameTooLarge { limit, head }) => {
                    let refused = Err(LabIngestError::TooLarge { limit });
                    let (code, ack) = hub.lab_ack(&head, &refused);
                    tracing::warn!(
                        limit,
                        ack = code.as_str(),
                        "MLLP frame over the limit refused"
                    );
                    Some(ack)
                }
                Err(e @ MllpError::Interrupted { .. }) => {
                    // No whole message to answer: the sender sees no ACK and sends it again.
                    tracing::warn!(error = %e, "MLLP frame cut by a new start block");
                    None
                }
                Err(e) => {
                    tracing::debug!(error = %e, "MLLP bytes between frames skipped");
                    None
                }
            };
            if let Some(ack) = ack {
                match tokio::time::timeout(idle, socket.write_all(&frame(&ack))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::info!(error = %e, "MLLP peer gone before its ACK");
                        break 'conn;
                    }
                    Err(_) => {
                        tracing::info!("MLLP peer does not read its ACK; closing");
                        break 'conn;
                    }
                }
            }
        }
        let read = tokio::select! {
            () = &mut stop => {
                tracing::info!("MLLP connection closed for shutdown");
                break;
            }
            r = tokio::time::timeout(idle, socket.read(&mut buf)) => r,
        };
        match read {
            Err(_) => {
                tracing::info!(idle_secs = idle.as_secs(), "MLLP connection idle; closing");
                break;
            }
            Ok(Ok(0)) => {
                if let Err(e) = decoder.finish() {
                    tracing::info!(error = %e, "MLLP peer closed mid-frame; that message was not stored");
                }
                break;
            }
            Ok(Ok(n)) => decoder.push(buf.get(..n).unwrap_or_default()),
            Ok(Err(e)) => {
                tracing::info!(error = %e, "MLLP read failed");
                break;
            }
        }
    }
    let _ = socket.shutdown().await;
    tracing::debug!(messages, "MLLP connection closed");
}

/// One message: who sent it, store it, the ACK for what happened.
async fn handle(hub: &Hub, message: Bytes, peer: SocketAddr) -> Vec<u8> {
    let outcome = match hub.lab_sender_principal(&message, peer.ip()).await {
        Ok(sender) => {
            hub.ingest_lab(&sender, message.clone(), LabFormat::Hl7v2)
                .await
        }
        Err(e) => Err(e),
    };
    let (code, ack) = hub.lab_ack(&message, &outcome);
    match &outcome {
        Ok(done) => tracing::debug!(
            message_id = %done.message_id,
            facility = %done.sending_facility,
            duplicate = done.duplicate,
            ack = code.as_str(),
            "MLLP message acknowledged"
        ),
        Err(_) if code == AckCode::Accept => {}
        Err(_) => tracing::info!(ack = code.as_str(), "MLLP message refused"),
    }
    ack
}
