//! Several hub processes on one catalog behave as one hub.
//!
//! - **One sweeper.** The background sweeps (routing, escalation, offers, critical values, webhook
//!   delivery) run only on the replica holding the `sweeps` lease in the catalog. The holder renews it
//!   every sweep; a replica that dies stops renewing and another takes over when the lease runs out
//!   (`ttl`). The sweeps' own writes are conditional as well, so even two sweepers (a lease lost during
//!   a long pause) never double-escalate; the lease makes webhooks go out once and saves the work.
//! - **Reloads reach every replica.** A routing reload asked of one replica (admin endpoint or
//!   SIGHUP) raises the `routing.reload` signal; every replica polls the signal's generation each
//!   sweep interval and reloads its own configuration file when it moved.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use yilian_domain::UnixMillis;

use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::PortError;

/// The lease that names the one replica running the background sweeps.
pub const SWEEP_JOB: &str = "sweeps";
/// Raised after a successful routing reload on any replica.
pub const ROUTING_RELOAD: &str = "routing.reload";

/// Per process: its name among the replicas and what it has seen.
#[derive(Debug)]
pub struct ReplicaState {
    /// Unique per process start (a ULID), so a restarted replica is a new holder.
    pub id: String,
    leader: AtomicBool,
    sweeps: AtomicU64,
    /// The reload signal's generation this process has acted on; -1 before the first poll.
    reload_seen: AtomicI64,
}

impl ReplicaState {
    pub(crate) fn new() -> Self {
        ReplicaState {
            id: format!("replica-{}", ulid::Ulid::new()),
            leader: AtomicBool::new(false),
            sweeps: AtomicU64::new(0),
            reload_seen: AtomicI64::new(-1),
        }
    }
}

impl Hub {
    /// This process's name among the replicas.
    pub fn replica_id(&self) -> &str {
        &self.replica.id
    }

    /// Whether this process held the sweep lease at its last attempt.
    pub fn is_sweeper(&self) -> bool {
        self.replica.leader.load(Ordering::Relaxed)
    }

    /// Sweep rounds this process ran (it held the lease).
    pub fn sweeps_run(&self) -> u64 {
        self.replica.sweeps.load(Ordering::Relaxed)
    }

    /// Takes or renews the sweep lease for `ttl`; true when this process may run the sweeps now.
    /// A catalog error counts as "not held": better no sweep this round than two.
    pub async fn hold_sweep_lease(&self, ttl: Duration) -> bool {
        let now = self.now();
        let until = UnixMillis(now.0.saturating_add(ttl.as_millis() as i64));
        let held = match self
            .catalog
            .lease_job(SWEEP_JOB, &self.replica.id, now, until)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "sweep lease not renewed");
                false
            }
        };
        let was = self.replica.leader.swap(held, Ordering::Relaxed);
        if held != was {
            tracing::info!(replica = %self.replica.id, sweeper = held, "sweep lease changed hands");
        }
        held
    }

    /// Counts a sweep round this process ran under the lease (`/metrics`).
    pub fn record_sweep(&self) {
        self.replica.sweeps.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives the sweep lease up (shutdown), so another replica takes over at its next sweep.
    pub async fn release_sweep_lease(&self) -> Result<(), PortError> {
        self.replica.leader.store(false, Ordering::Relaxed);
        self.catalog.release_job(SWEEP_JOB, &self.replica.id).await
    }

    /// Tells the other replicas that the routing rules were reloaded here.
    pub(crate) async fn announce_routing_reload(&self) -> Result<(), PortError> {
        let generation = self
            .catalog
            .raise_signal(ROUTING_RELOAD, &self.replica.id, self.now())
            .await?;
        self.replica
            .reload_seen
            .fetch_max(generation, Ordering::Relaxed);
        Ok(())
    }

    /// Reloads the routing rules from this process's configuration file when another replica
    /// announced a reload since the last poll. True when it reloaded (successfully or not: a file
    /// that does not validate here keeps the rules in force and is logged, as with SIGHUP).
    pub async fn follow_routing_reload(&self) -> Result<bool, AppError> {
        let generation = self.catalog.signal_generation(ROUTING_RELOAD).await?;
        let seen = self.replica.reload_seen.load(Ordering::Relaxed);
        if seen < 0 {
            // First poll: the rules in force were read at start, after any earlier reload.
            self.replica
                .reload_seen
                .fetch_max(generation, Ordering::Relaxed);
            return Ok(false);
        }
        if generation <= seen {
            return Ok(false);
        }
        self.replica
            .reload_seen
            .fetch_max(generation, Ordering::Relaxed);
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || this.reload_routing())
            .await
            .map_err(|e| PortError::Unavailable(format!("reload task: {e}")))?;
        let why = format!("signal from another replica, seen by {}", self.replica.id);
        self.audit_system_reload(&why, &result).await?;
        Ok(true)
    }
}
