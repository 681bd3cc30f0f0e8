//! Duty and offers: who of a pool is on duty now (the rota in force), what an exam asks of its
//! reader, and the offer sweep that hands each waiting exam to the least-loaded on-duty qualified
//! reader for `[rota] offer_secs` before trying another. The choices are `yilian_policy::duty`'s.

use std::collections::HashMap;

use yilian_domain::{ExamId, PoolId, Priority, Role, UnixMillis, Username};
pub use yilian_policy::Duty;
use yilian_policy::{Candidate, ExamNeeds, offer};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{ExamRecord, PortError, ReaderFit};

/// One reader on the duty board.
#[derive(Clone, Debug)]
pub struct ReaderDuty {
    pub username: Username,
    pub name: String,
    pub duty: Duty,
    pub senior: bool,
    pub modalities: Vec<String>,
    pub subspecialties: Vec<String>,
    /// Live leases plus live offers.
    pub open_items: i64,
}

/// A pool on the duty board.
#[derive(Clone, Debug)]
pub struct PoolDuty {
    pub pool: PoolId,
    pub name: String,
    /// The pool keeps a rota (else everybody is always on duty).
    pub keeps_rota: bool,
    pub readers: Vec<ReaderDuty>,
}

/// The most exams one offer sweep places.
const OFFER_BATCH: i64 = 200;

impl ExamRecord {
    /// What the exam asks of its reader now.
    pub fn needs(&self) -> ExamNeeds {
        ExamNeeds {
            modality: self.modality.clone(),
            subspecialty: self.subspecialty.clone(),
            senior: self.awaiting_review,
        }
    }
}

impl Hub {
    /// Who is on duty now in the caller's pools (an admin: every pool), with qualifications and
    /// open work. No patient data, so not audited.
    pub async fn duty_board(&self, who: &Principal) -> Result<Vec<PoolDuty>, AppError> {
        require(who, Action::ViewDuty)?;
        let now = self.now();
        let loads: HashMap<Username, i64> = self
            .catalog
            .reader_loads(now)
            .await?
            .into_iter()
            .map(|l| (l.username, l.open_items))
            .collect();
        let rota = self.rota();
        let mut out = Vec::new();
        for p in &self.config.pools {
            let Ok(pool) = PoolId::new(p.id.clone()) else {
                continue;
            };
            if who.role != Role::Admin && !who.pools.contains(&pool) {
                continue;
            }
            let readers = self
                .readers_of(std::slice::from_ref(&pool), now)
                .into_iter()
                .map(|(u, duty)| ReaderDuty {
                    open_items: loads.get(&u.username).copied().unwrap_or(0),
                    username: u.username,
                    name: u.name,
                    duty,
                    senior: u.senior,
                    modalities: u.modalities,
                    subspecialties: u.subspecialties,
                })
                .collect();
            out.push(PoolDuty {
                keeps_rota: rota.keeps(pool.as_str()),
                pool,
                name: p.name.clone(),
                readers,
            });
        }
        Ok(out)
    }

    /// The user's duty in `pool` now.
    pub fn duty(&self, who: &Username, pool: &PoolId, now: UnixMillis) -> Duty {
        self.rota().duty(
            who.as_str(),
            pool.as_str(),
            now,
            self.config.alliance.utc_offset_minutes,
        )
    }

    /// The caller's pools in which they are on duty now.
    pub fn on_duty_pools(&self, who: &Principal, now: UnixMillis) -> Vec<PoolId> {
        who.pools
            .iter()
            .filter(|p| self.duty(&who.username, p, now).on_duty())
            .cloned()
            .collect()
    }

    /// What the reader may take with "next".
    pub(crate) fn reader_fit(who: &Principal) -> ReaderFit {
        ReaderFit {
            modalities: who.modalities.clone(),
            subspecialties: who.subspecialties.clone(),
            senior: who.senior,
        }
    }

    /// Readers of any of `pools`, each with their best duty among those pools.
    fn readers_of(&self, pools: &[PoolId], now: UnixMillis) -> Vec<(Principal, Duty)> {
        let mut out = Vec::new();
        for u in &self.config.users {
            let Some(user) = self.config.user(&u.username) else {
                continue;
            };
            if user.role != Role::Reader {
                continue;
            }
            let duties: Vec<Duty> = pools
                .iter()
                .filter(|p| user.pools.contains(p))
                .map(|p| self.duty(&user.username, p, now))
                .collect();
            if duties.is_empty() {
                continue;
            }
            let duty = duties
                .iter()
                .find(|d| d.on_duty())
                .or(duties.first())
                .cloned()
                .unwrap_or(Duty::Off);
            out.push((user, duty));
        }
        out
    }

    /// Who a notification about an exam of `pool` is addressed to: the readers on duty in it who are
    /// qualified for the exam. Empty (everybody in the pool) when the pool keeps no rota or nobody
    /// qualified is on duty; the second value says which of the two.
    pub(crate) fn notification_recipients(
        &self,
        pool: &PoolId,
        needs: &ExamNeeds,
    ) -> (Vec<Username>, Option<&'static str>) {
        if !self.rota().keeps(pool.as_str()) {
            return (Vec::new(), None);
        }
        let now = self.now();
        let names: Vec<Username> = self
            .readers_of(std::slice::from_ref(pool), now)
            .into_iter()
            .filter(|(u, d)| {
                d.on_duty() && yilian_policy::qualified(&u.qualifications(), needs).is_ok()
            })
            .map(|(u, _)| u.username)
            .collect();
        if names.is_empty() {
            (
                Vec::new(),
                Some(" (nobody qualified is on duty: every reader of the pool is told)"),
            )
        } else {
            (names, None)
        }
    }

    /// The offer sweep: each queued exam with no live lease or offer is offered to the least-loaded
    /// on-duty qualified reader of its pools. Stat and urgent offers also notify that reader. Returns
    /// what was offered to whom.
    pub async fn offer_waiting(&self) -> Result<Vec<(ExamId, Username)>, PortError> {
        if self.rota().offer_secs == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let exams = self.catalog.offer_candidates(now, OFFER_BATCH).await?;
        if exams.is_empty() {
            return Ok(Vec::new());
        }
        let mut loads: HashMap<Username, (u32, Option<UnixMillis>)> = self
            .catalog
            .reader_loads(now)
            .await?
            .into_iter()
            .map(|l| {
                (
                    l.username,
                    (
                        u32::try_from(l.open_items).unwrap_or(u32::MAX),
                        l.last_assigned_at,
                    ),
                )
            })
            .collect();
        let rota = self.rota();
        let until = now.plus_secs(rota.offer_secs);
        let mut out = Vec::new();
        for exam in exams {
            let pools = exam.pools();
            let candidates: Vec<Candidate> = self
                .readers_of(&pools, now)
                .into_iter()
                .map(|(u, duty)| {
                    let (open_items, last_assigned_at) =
                        loads.get(&u.username).copied().unwrap_or((0, None));
                    Candidate {
                        qualifications: u.qualifications(),
                        username: u.username,
                        duty,
                        open_items,
                        last_assigned_at,
                    }
                })
                .collect();
            let needs = exam.needs();
            let pool_names = pools
                .iter()
                .map(PoolId::as_str)
                .collect::<Vec<_>>()
                .join("+");
            let chosen = match offer(
                &pool_names,
                &needs,
                &candidates,
                exam.offered_to.as_ref(),
                rota.max_open,
            ) {
                Ok(o) => o,
                Err(why) => {
                    tracing::debug!(exam_id = %exam.exam_id, "not offered: {why}");
                    continue;
                }
            };
            let notification = (exam.priority != Priority::Routine).then(|| {
                let mut n = self.notification_to(
                    "exam.offered",
                    &exam.exam_id,
                    &exam.pool,
                    exam.priority,
                    exam.due_at,
                    format!(
                        "{} exam offered to you: {}",
                        exam.priority.as_str(),
                        chosen.explanation
                    ),
                );
                n.recipients = vec![chosen.to.clone()];
                n
            });
            if self
                .catalog
                .offer_exam(
                    &exam.exam_id,
                    &chosen.to,
                    &chosen.explanation,
                    now,
                    until,
                    notification.as_ref(),
                )
                .await?
            {
                let entry = loads.entry(chosen.to.clone()).or_insert((0, None));
                entry.0 = entry.0.saturating_add(1);
                entry.1 = Some(now);
                tracing::info!(exam_id = %exam.exam_id, "{}", chosen.explanation);
                out.push((exam.exam_id, chosen.to));
            }
        }
        Ok(out)
    }
}
