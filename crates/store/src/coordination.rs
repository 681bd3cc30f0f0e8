//! Coordination between hub replicas on one catalog (`migrations/0019_coordination.sql`): a lease per
//! background job, so exactly one replica runs each sweep, and signal counters that every replica
//! polls (a routing reload asked of one replica is done by all).

use sqlx::Row;
use yilian_app::ports::PortError;
use yilian_domain::UnixMillis;

use crate::catalog::{SqlCatalog, db};

impl SqlCatalog {
    /// Takes or renews `job`'s lease for `holder` until `until`: one upsert that succeeds only when
    /// nobody holds the lease, `holder` holds it, or the holder's lease has run out. Atomic on both
    /// engines (the row is written under the database's row or write lock).
    pub(crate) async fn lease_job(
        &self,
        job: &str,
        holder: &str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> Result<bool, PortError> {
        let done = sqlx::query(
            "INSERT INTO job_leases (job, holder, lease_until, acquired_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until, \
             acquired_at = CASE WHEN job_leases.holder = excluded.holder THEN job_leases.acquired_at ELSE excluded.acquired_at END \
             WHERE job_leases.holder = excluded.holder OR job_leases.lease_until < excluded.acquired_at",
        )
        .bind(job)
        .bind(holder)
        .bind(until.0)
        .bind(now.0)
        .execute(self.pool())
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up at once (a replica shutting down), so another takes over without waiting.
    pub(crate) async fn release_job(&self, job: &str, holder: &str) -> Result<(), PortError> {
        sqlx::query("DELETE FROM job_leases WHERE job = $1 AND holder = $2")
            .bind(job)
            .bind(holder)
            .execute(self.pool())
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Raises `signal`: its generation goes up by one; returns the new generation.
    pub(crate) async fn raise_signal(
        &self,
        signal: &str,
        by: &str,
        now: UnixMillis,
    ) -> Result<i64, PortError> {
        let row = sqlx::query(
            "INSERT INTO hub_signals (signal, generation, raised_at, raised_by) VALUES ($1, 1, $2, $3) \
             ON CONFLICT (signal) DO UPDATE SET generation = hub_signals.generation + 1, \
             raised_at = excluded.raised_at, raised_by = excluded.raised_by \
             RETURNING generation",
        )
        .bind(signal)
        .bind(now.0)
        .bind(by)
        .fetch_one(self.pool())
        .await
        .map_err(db)?;
        row.try_get::<i64, _>("generation").map_err(db)
    }

    /// The current generation of `signal` (0 when never raised).
    pub(crate) async fn signal_generation(&self, signal: &str) -> Result<i64, PortError> {
        let row = sqlx::query("SELECT generation FROM hub_signals WHERE signal = $1")
            .bind(signal)
            .fetch_optional(self.pool())
            .await
            .map_err(db)?;
        match row {
            Some(r) => r.try_get::<i64, _>("generation").map_err(db),
            None => Ok(0),
        }
    }
}
