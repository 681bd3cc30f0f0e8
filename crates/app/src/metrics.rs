//! Service metrics: this process's ingest and look-up counters, the turnaround report (per pool and
//! priority, percentiles computed here from catalog rows) and the hub-wide numbers `/metrics` shows.
//! Everything here is counts and durations: no patient data, which is why admins may read it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use yilian_domain::{PoolId, Priority, UnixMillis};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{PoolTurnaround, TurnaroundRow};

/// Upper bounds of the received → signed histogram, in seconds: 5, 10 and 30 minutes, 1, 2, 4, 8
/// hours, 1 and 3 days (the configured SLAs run from 10 minutes to a day).
pub const TURNAROUND_BUCKETS_SECS: [i64; 9] = [
    300, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 86_400, 259_200,
];

/// The most exams one turnaround report aggregates; a wider range is refused, not truncated.
pub const TURNAROUND_MAX_EXAMS: i64 = 100_000;

/// Counters of this hub process since it started. Replicas count separately (as Prometheus expects
/// of counters); a restart starts from zero.
#[derive(Debug, Default)]
pub struct HubCounters {
    ingest_instances: AtomicU64,
    ingest_bytes: AtomicU64,
    results_lookups: AtomicU64,
    lab_stored: AtomicU64,
    lab_duplicates: AtomicU64,
    lab_refused: AtomicU64,
    recognition_accepted: AtomicU64,
    recognition_declined: AtomicU64,
    prior_found: AtomicU64,
    prior_not_found: AtomicU64,
}

impl HubCounters {
    /// A new instance was committed (duplicates of stored bytes are not counted).
    pub fn record_ingest(&self, bytes: u64) {
        self.ingest_instances.fetch_add(1, Ordering::Relaxed);
        self.ingest_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A clinician or reader looked a patient's results up (whatever it found).
    pub fn record_lookup(&self) {
        self.results_lookups.fetch_add(1, Ordering::Relaxed);
    }

    /// A lab message was stored, recognised as a repeat, or refused (any front end).
    pub fn record_lab(&self, outcome: LabOutcome) {
        let c = match outcome {
            LabOutcome::Stored => &self.lab_stored,
            LabOutcome::Duplicate => &self.lab_duplicates,
            LabOutcome::Refused => &self.lab_refused,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A clinician recorded a recognition decision.
    pub fn record_decision(&self, accepted: bool) {
        let c = if accepted {
            &self.recognition_accepted
        } else {
            &self.recognition_declined
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// An order entry asked the prior-result alert; whether a recognised prior was found.
    pub fn record_prior_check(&self, found: bool) {
        let c = if found {
            &self.prior_found
        } else {
            &self.prior_not_found
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Recognition decisions: accepted, declined.
    pub fn recognition_decisions(&self) -> [u64; 2] {
        [
            self.recognition_accepted.load(Ordering::Relaxed),
            self.recognition_declined.load(Ordering::Relaxed),
        ]
    }

    /// Prior-result checks: a recognised prior found, none found.
    pub fn prior_checks(&self) -> [u64; 2] {
        [
            self.prior_found.load(Ordering::Relaxed),
            self.prior_not_found.load(Ordering::Relaxed),
        ]
    }

    /// Lab messages by outcome: stored, duplicate, refused.
    pub fn lab_messages(&self) -> [u64; 3] {
        [
            self.lab_stored.load(Ordering::Relaxed),
            self.lab_duplicates.load(Ordering::Relaxed),
            self.lab_refused.load(Ordering::Relaxed),
        ]
    }

    pub fn ingest_instances(&self) -> u64 {
        self.ingest_instances.load(Ordering::Relaxed)
    }
    pub fn ingest_bytes(&self) -> u64 {
        self.ingest_bytes.load(Ordering::Relaxed)
    }
    pub fn results_lookups(&self) -> u64 {
        self.results_lookups.load(Ordering::Relaxed)
    }
}

/// What became of one lab message, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabOutcome {
    Stored,
    Duplicate,
    Refused,
}

/// p50 and p90 of one interval over the exams that have it, in milliseconds (nearest rank).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// How many exams the interval was measured on.
    pub n: u64,
    pub p50_ms: Option<i64>,
    pub p90_ms: Option<i64>,
}

/// The turnaround of one pool and priority over the exams routed in the report's range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnaroundGroup {
    pub pool: PoolId,
    pub priority: Priority,
    /// Exams routed in the range.
    pub count: u64,
    /// Of those, signed (by the time of the report).
    pub signed: u64,
    /// Signed after due, or still unsigned past due at the time of the report.
    pub sla_breaches: u64,
    pub received_to_signed: Percentiles,
    pub routed_to_claimed: Percentiles,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnaroundReport {
    pub from: UnixMillis,
    pub to: UnixMillis,
    pub at: UnixMillis,
    /// By pool id, then priority (stat first).
    pub groups: Vec<TurnaroundGroup>,
}

/// What `/metrics` shows. Counters are this process's; the rest is the catalog's, the same on every
/// replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub ingest_instances: u64,
    pub ingest_bytes: u64,
    pub results_lookups: u64,
    /// Lab messages by outcome: stored, duplicate, refused.
    pub lab_messages: [u64; 3],
    /// Recognition decisions recorded by this process: accepted, declined.
    pub recognition_decisions: [u64; 2],
    /// Prior-result checks answered by this process: recognised prior found, not found.
    pub prior_checks: [u64; 2],
    /// Queued exams by pool and priority; every configured pool × priority is present (0 when empty).
    pub worklist_depth: Vec<(PoolId, Priority, u64)>,
    /// Per pool (every configured pool, and any other pool with exams): breaches and the received →
    /// signed histogram with bounds [`TURNAROUND_BUCKETS_SECS`].
    pub pools: Vec<PoolTurnaround>,
    /// Whether this process holds the sweep lease (it runs the background sweeps for the hub).
    pub sweeper: bool,
    /// Sweep rounds this process ran under the lease.
    pub sweeps: u64,
    /// Blobs and bytes acknowledged but still in this process's write-behind outbox.
    pub outbox: (u64, u64),
}

const PRIORITIES: [Priority; 3] = [Priority::Stat, Priority::Urgent, Priority::Routine];

/// The value at or below which `p` percent of the sorted values lie (nearest-rank: the smallest value
/// with at least p% of values ≤ it; no interpolation, so it is always a measured duration).
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (n * p.min(100) as usize).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn percentiles(mut values: Vec<i64>) -> Percentiles {
    values.sort_unstable();
    Percentiles {
        n: values.len() as u64,
        p50_ms: percentile(&values, 50),
        p90_ms: percentile(&values, 90),
    }
}

/// Groups turnaround rows by pool and priority. `now` decides whether an unsigned exam is past due.
/// A negative interval (clocks of two replicas disagreeing) counts as zero.
pub fn aggregate(rows: &[TurnaroundRow], now: UnixMillis) -> Vec<TurnaroundGroup> {
    #[derive(Default)]
    struct Acc {
        count: u64,
        signed: u64,
        breaches: u64,
        to_signed: Vec<i64>,
        to_claimed: Vec<i64>,
    }
    let mut groups: BTreeMap<(String, i64), (PoolId, Priority, Acc)> = BTreeMap::new();
    for r in rows {
        let (_, _, acc) = groups
            .entry((r.pool.as_str().to_string(), r.priority.rank()))
            .or_insert_with(|| (r.pool.clone(), r.priority, Acc::default()));
        acc.count += 1;
        match r.signed_at {
            Some(signed) => {
                acc.signed += 1;
                acc.to_signed.push((signed.0 - r.received_at.0).max(0));
                if r.signed_late {
                    acc.breaches += 1;
                }
            }
            None if r.due_at < now => acc.breaches += 1,
            None => {}
        }
        if let Some(claimed) = r.first_claimed_at {
            acc.to_claimed.push((claimed.0 - r.routed_at.0).max(0));
        }
    }
    groups
        .into_values()
        .map(|(pool, priority, acc)| TurnaroundGroup {
            pool,
            priority,
            count: acc.count,
            signed: acc.signed,
            sla_breaches: acc.breaches,
            received_to_signed: percentiles(acc.to_signed),
            routed_to_claimed: percentiles(acc.to_claimed),
        })
        .collect()
}

impl Hub {
    pub fn counters(&self) -> &HubCounters {
        &self.counters
    }

    /// Turnaround of the exams routed in `[from, to)`, per pool and priority. Admins only.
    pub async fn turnaround(
        &self,
        who: &Principal,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<TurnaroundReport, AppError> {
        require(who, Action::ViewMetrics)?;
        if to <= from {
            return Err(AppError::Invalid("`to` must be after `from`".into()));
        }
        let rows = self
            .catalog
            .turnaround_rows(from, to, TURNAROUND_MAX_EXAMS + 1)
            .await?;
        if rows.len() as i64 > TURNAROUND_MAX_EXAMS {
            return Err(AppError::Invalid(format!(
                "more than {TURNAROUND_MAX_EXAMS} exams were routed in this range; narrow from/to"
            )));
        }
        let at = self.now();
        Ok(TurnaroundReport {
            from,
            to,
            at,
            groups: aggregate(&rows, at),
        })
    }

    /// The numbers `/metrics` exposes. Admins only.
    pub async fn metrics_snapshot(&self, who: &Principal) -> Result<MetricsSnapshot, AppError> {
        require(who, Action::ViewMetrics)?;
        // Pool ids were validated when the configuration loaded; one that is not an id has no exams.
        let configured: Vec<PoolId> = self
            .config
            .pools
            .iter()
            .filter_map(|p| PoolId::new(p.id.clone()).ok())
            .collect();
        let mut depth: BTreeMap<(String, i64), (PoolId, Priority, u64)> = BTreeMap::new();
        for pool in &configured {
            for p in PRIORITIES {
                depth.insert((pool.to_string(), p.rank()), (pool.clone(), p, 0));
            }
        }
        for (pool, p, n) in self.catalog.worklist_depth().await? {
            depth.insert((pool.to_string(), p.rank()), (pool, p, n));
        }
        let bounds_ms: Vec<i64> = TURNAROUND_BUCKETS_SECS.iter().map(|s| s * 1000).collect();
        let mut pools: BTreeMap<String, PoolTurnaround> = configured
            .iter()
            .map(|pool| {
                (
                    pool.to_string(),
                    PoolTurnaround {
                        pool: pool.clone(),
                        sla_breaches: 0,
                        signed: 0,
                        received_to_signed_sum_ms: 0,
                        received_to_signed_le: vec![0; bounds_ms.len()],
                    },
                )
            })
            .collect();
        for t in self.catalog.pool_turnaround(self.now(), &bounds_ms).await? {
            pools.insert(t.pool.to_string(), t);
        }
        Ok(MetricsSnapshot {
            ingest_instances: self.counters.ingest_instances(),
            ingest_bytes: self.counters.ingest_bytes(),
            results_lookups: self.counters.results_lookups(),
            lab_messages: self.counters.lab_messages(),
            recognition_decisions: self.counters.recognition_decisions(),
            prior_checks: self.counters.prior_checks(),
            worklist_depth: depth.into_values().collect(),
            pools: pools.into_values().collect(),
            sweeper: self.is_sweeper(),
            sweeps: self.sweeps_run(),
            outbox: self.blobs.outbox_backlog().await.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 90), Some(7));
        // 1..=10: p50 is the 5th value, p90 the 9th.
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 50), Some(5));
        assert_eq!(percentile(&ten, 90), Some(9));
        assert_eq!(percentile(&ten, 100), Some(10));
        assert_eq!(percentile(&ten, 0), Some(1));
        // Two values: the median is the lower (a measured value, not their mean); p90 the upper.
        assert_eq!(percentile(&[10, 30], 50), Some(10));
        assert_eq!(percentile(&[10, 30], 90), Some(30));
        // 1..=11: p90 needs ceil(9.9) = 10 values.
        let eleven: Vec<i64> = (1..=11).collect();
        assert_eq!(percentile(&eleven, 90), Some(10));
        assert_eq!(percentile(&eleven, 50), Some(6));
    }

    const MIN: i64 = 60_000;

    fn row(pool: &str, priority: Priority) -> TurnaroundRow {
        TurnaroundRow {
            pool: PoolId::new(pool.to_string()).unwrap(),
            priority,
            received_at: UnixMillis(0),
            routed_at: UnixMillis(2 * MIN),
            first_claimed_at: None,
            signed_at: None,
            published_at: None,
            due_at: UnixMillis(60 * MIN),
            signed_late: false,
        }
    }

    fn signed(mut r: TurnaroundRow, claimed_min: i64, signed_min: i64) -> TurnaroundRow {
        r.first_claimed_at = Some(UnixMillis(claimed_min * MIN));
        r.signed_at = Some(UnixMillis(signed_min * MIN));
        r.published_at = r.signed_at;
        r.signed_late = r.signed_at > Some(r.due_at);
        r
    }

    #[test]
    fn groups_by_pool_and_priority_with_breaches_and_percentiles() {
        let rows = vec![
            signed(row("rad", Priority::Routine), 12, 30),
            signed(row("rad", Priority::Routine), 4, 20),
            signed(row("rad", Priority::Routine), 22, 90), // signed after due (60 min): a breach
            row("rad", Priority::Routine),                 // unsigned, due at 60 min
            signed(row("ecg", Priority::Stat), 3, 8),
            row("rad", Priority::Stat),
        ];
        let at_50_min = aggregate(&rows, UnixMillis(50 * MIN));
        let keys: Vec<(&str, Priority)> = at_50_min
            .iter()
            .map(|g| (g.pool.as_str(), g.priority))
            .collect();
        assert_eq!(
            keys,
            [
                ("ecg", Priority::Stat),
                ("rad", Priority::Stat),
                ("rad", Priority::Routine)
            ]
        );
        let rad = &at_50_min[2];
        assert_eq!((rad.count, rad.signed, rad.sla_breaches), (4, 3, 1));
        // received → signed: 20, 30, 90 min; routed (2 min) → claimed: 2, 10, 20 min.
        assert_eq!(rad.received_to_signed.n, 3);
        assert_eq!(rad.received_to_signed.p50_ms, Some(30 * MIN));
        assert_eq!(rad.received_to_signed.p90_ms, Some(90 * MIN));
        assert_eq!(rad.routed_to_claimed.p50_ms, Some(10 * MIN));
        assert_eq!(rad.routed_to_claimed.p90_ms, Some(20 * MIN));
        let unclaimed = &at_50_min[1];
        assert_eq!(unclaimed.received_to_signed, Percentiles::default());
        assert_eq!(unclaimed.routed_to_claimed.n, 0);

        // Later, the still-unsigned exams are past due and count as breaches too.
        let at_61_min = aggregate(&rows, UnixMillis(61 * MIN));
        assert_eq!(at_61_min[2].sla_breaches, 2);
        assert_eq!(at_61_min[1].sla_breaches, 1);
        assert_eq!(
            at_61_min[0].sla_breaches, 0,
            "the stat ECG was signed in time"
        );
    }

    #[test]
    fn clock_disagreement_never_gives_negative_durations() {
        let mut r = signed(row("rad", Priority::Routine), 1, 5);
        r.routed_at = UnixMillis(3 * MIN); // claimed "before" it was routed
        let g = aggregate(&[r], UnixMillis(0));
        assert_eq!(g[0].routed_to_claimed.p50_ms, Some(0));
    }
}
