//! `yilian simulate`: one synthetic county day replayed through the real hub — ingest (ECG waveforms
//! measured, CT/DX studies), the routing policy, escalation, claims and signatures on a SQLite catalog
//! — under a virtual clock, with readers who work shifts. The same arrivals are replayed twice: readers
//! taking "the next exam" the hub's way (priority, then due time) and first-in-first-out, and the
//! report prints SLA compliance and turnaround per priority for both.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::{Context, bail};
use yilian_app::reading::ReportInput;
use yilian_app::{Clock, Hub};
use yilian_config::{Config, UserConfig};
use yilian_domain::{ExamId, Priority, UnixMillis};

/// The virtual clock the hub reads.
#[derive(Debug)]
struct SimClock(AtomicI64);

impl Clock for SimClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}

/// xorshift64*: deterministic arrivals for a seed.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How readers pick their next exam.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The hub's `claim_next`: priority, then due time.
    Priority,
    /// The oldest exam first, whatever its priority.
    Fifo,
}

impl Order {
    fn label(self) -> &'static str {
        match self {
            Order::Priority => "priority (hub)",
            Order::Fifo => "first in, first out",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ecg { stemi: bool },
    Ct,
    Dx,
}

/// One exam arriving from a township.
#[derive(Clone, Debug)]
struct Arrival {
    minute: i64,
    kind: Kind,
    /// The site flags it (chest pain, trauma).
    urgent: bool,
    read_minutes: i64,
}

/// A county day: ~195 remote ECGs and ~72 imaging exams (Funing's yearly volumes / 365, see
/// ../shared/domain.md), 80% of them during clinic hours 08–17.
fn arrivals(seed: u64) -> Vec<Arrival> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::new();
    let minute_of_day = |rng: &mut Rng| -> i64 {
        if rng.unit() < 0.8 {
            8 * 60 + (rng.unit() * 9.0 * 60.0) as i64
        } else {
            let m = (rng.unit() * 15.0 * 60.0) as i64;
            if m < 8 * 60 { m } else { m + 9 * 60 }
        }
    };
    for _ in 0..195 {
        let stemi = rng.unit() < 0.03;
        let urgent = !stemi && rng.unit() < 0.08;
        let minute = minute_of_day(&mut rng);
        out.push(Arrival {
            minute,
            kind: Kind::Ecg { stemi },
            urgent,
            read_minutes: 3 + (rng.unit() * 4.0) as i64,
        });
    }
    for i in 0..72 {
        let ct = i % 3 == 0;
        let urgent = rng.unit() < 0.1;
        let minute = minute_of_day(&mut rng);
        out.push(Arrival {
            minute,
            kind: if ct { Kind::Ct } else { Kind::Dx },
            urgent,
            read_minutes: if ct {
                12 + (rng.unit() * 10.0) as i64
            } else {
                5 + (rng.unit() * 6.0) as i64
            },
        });
    }
    out.sort_by_key(|a| a.minute);
    out
}

/// A reader and the hours they work (minutes of the day, end exclusive; may wrap midnight).
struct Shift {
    username: &'static str,
    from: i64,
    to: i64,
}

const SHIFTS: &[Shift] = &[
    Shift {
        username: "li.reader",
        from: 8 * 60,
        to: 17 * 60,
    },
    Shift {
        username: "zhou.reader",
        from: 13 * 60,
        to: 22 * 60,
    },
    Shift {
        username: "sun.ecg",
        from: 8 * 60,
        to: 17 * 60,
    },
    Shift {
        username: "sim.ecg.late",
        from: 14 * 60,
        to: 23 * 60,
    },
    Shift {
        username: "sim.ecg.night",
        from: 23 * 60,
        to: 8 * 60,
    },
    Shift {
        username: "qian.cardio",
        from: 0,
        to: 24 * 60,
    },
];

/// The shifts as the hub's on-duty calendar (`[rota]`): each reader's shift in their first pool,
/// every day. The hub, not the simulator, decides who is on duty.
fn rota_shifts(cfg: &Config) -> Vec<yilian_policy::Shift> {
    let hhmm = |m: i64| format!("{:02}:{:02}", m / 60, m % 60);
    SHIFTS
        .iter()
        .map(|s| yilian_policy::Shift {
            name: format!("{}-{}", hhmm(s.from), hhmm(s.to)),
            pool: cfg
                .users
                .iter()
                .find(|u| u.username == s.username)
                .and_then(|u| u.pools.first().cloned())
                .unwrap_or_default(),
            hours: (s.to - s.from != 24 * 60).then(|| format!("{}-{}", hhmm(s.from), hhmm(s.to))),
            days: Vec::new(),
            dates: Vec::new(),
            readers: vec![s.username.into()],
        })
        .collect()
}

/// What happened to one exam.
#[derive(Clone, Debug)]
struct Outcome {
    priority: Priority,
    arrived: i64,
    due: i64,
    signed: Option<i64>,
}

/// Per-priority results of one run.
#[derive(Clone, Debug)]
pub struct Row {
    pub priority: Priority,
    pub exams: usize,
    pub within_sla: usize,
    pub p50_minutes: Option<i64>,
    pub p90_minutes: Option<i64>,
    pub max_minutes: Option<i64>,
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted.get(i).copied()
}

fn summarise(outcomes: &[Outcome]) -> Vec<Row> {
    [Priority::Stat, Priority::Urgent, Priority::Routine]
        .into_iter()
        .map(|p| {
            let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.priority == p).collect();
            let mut t: Vec<i64> = of
                .iter()
                .filter_map(|o| o.signed.map(|s| s - o.arrived))
                .collect();
            t.sort_unstable();
            Row {
                priority: p,
                exams: of.len(),
                within_sla: of
                    .iter()
                    .filter(|o| o.signed.is_some_and(|s| s <= o.due))
                    .count(),
                p50_minutes: percentile(&t, 0.5),
                p90_minutes: percentile(&t, 0.9),
                max_minutes: t.last().copied(),
            }
        })
        .collect()
}

fn ecg_file(n: usize, stemi: bool) -> anyhow::Result<Vec<u8>> {
    use yilian_fixtures::ecg::{EcgSpec, synthesize};
    let mut rec = synthesize(&EcgSpec {
        heart_rate_bpm: 60.0 + (n % 40) as f64,
        seed: n as u64,
        ..EcgSpec::default()
    })
    .record;
    if stemi {
        rec.interpretation = vec!["*** ACUTE MI / STEMI ***".into()];
    }
    yilian_formats::ecg::to_dicom(
        &rec,
        &yilian_formats::ecg::EcgDicomIds {
            study_uid: format!("2.25.99{n}"),
            series_uid: format!("2.25.99{n}.1"),
            sop_uid: format!("2.25.99{n}.1.1"),
            patient_id: format!("SIM{n:05}"),
            issuer_of_patient_id: Some("HX".into()),
            accession_number: None,
            institution_name: None,
            study_description: Some("ECG".into()),
        },
    )
    .context("writing a simulated ECG")
}

fn image_file(n: usize, kind: Kind) -> Vec<u8> {
    let spec = yilian_fixtures::InstanceSpec {
        study_uid: format!("2.25.99{n}"),
        series_uid: format!("2.25.99{n}.1"),
        sop_uid: format!("2.25.99{n}.1.1"),
        patient_id: format!("SIM{n:05}"),
        modality: if kind == Kind::Ct { "CT" } else { "DX" }.into(),
        ..yilian_fixtures::InstanceSpec::ct(1)
    };
    yilian_fixtures::instance_bytes(&spec)
}

/// The demo's readers plus two simulated ECG readers, all on the simulation's shifts.
fn add_sim_readers(cfg: &mut Config) {
    for (name, label) in [
        ("sim.ecg.late", "模拟心电医生(中班)"),
        ("sim.ecg.night", "模拟心电医生(夜班)"),
    ] {
        cfg.users.push(UserConfig {
            username: name.into(),
            name: label.into(),
            role: "reader".into(),
            site: "county-people".into(),
            pools: vec!["county-ecg".into()],
            seniority: None,
            modalities: vec!["ECG".into()],
            subspecialties: Vec::new(),
        });
    }
    cfg.rota.shifts = rota_shifts(cfg);
    cfg.rota.leave.clear();
}

/// One replay: the results per priority and how many exams each reader signed.
#[derive(Clone, Debug)]
pub struct Run {
    pub rows: Vec<Row>,
    pub reads: std::collections::BTreeMap<String, usize>,
}

/// Replays the day once with readers taking exams in `order`; returns the results per priority.
async fn run(seed: u64, order: Order, dir: &std::path::Path) -> anyhow::Result<Run> {
    let mut cfg = Config::demo()?;
    cfg.database.url = format!("sqlite://{}/catalog.db?mode=rwc", dir.display());
    cfg.blobs.url = format!("file://{}/blobs", dir.display());
    cfg.keys.dir = dir.join("keys");
    cfg.dicom.enabled = false;
    add_sim_readers(&mut cfg);
    cfg.validate()?;
    // Day 1, 00:00 China Standard Time.
    let start = 1_795_104_000_000_i64;
    let clock = Arc::new(SimClock(AtomicI64::new(start)));
    let hub: Hub = crate::open_hub_with_clock(cfg, clock.clone()).await?;
    let tech = hub.config.user("wang.tech").context("demo tech")?;
    let readers: Vec<_> = SHIFTS
        .iter()
        .map(|s| {
            hub.config
                .user(s.username)
                .context("shift reader")
                .map(|u| (s, u))
        })
        .collect::<anyhow::Result<_>>()?;

    let day = arrivals(seed);
    let mut outcomes: std::collections::HashMap<String, Outcome> = Default::default();
    let mut read_time: std::collections::HashMap<String, i64> = Default::default();
    // Per reader: the exam being read and the minute it is done.
    let mut busy: Vec<Option<(ExamId, i64)>> = vec![None; readers.len()];
    let mut reads = std::collections::BTreeMap::new();
    let mut next = 0;
    let horizon = 48 * 60;
    for minute in 0..horizon {
        clock.0.store(start + minute * 60_000, Ordering::SeqCst);
        while let Some(a) = day.get(next).filter(|a| a.minute == minute) {
            let n = next;
            next += 1;
            let bytes = match a.kind {
                Kind::Ecg { stemi } => ecg_file(n, stemi)?,
                k => image_file(n, k),
            };
            let stored = hub
                .store_instance(&tech, bytes.into(), None)
                .await?
                .map_err(|f| anyhow::anyhow!("simulated instance refused: {}", f.message))?;
            let study = yilian_domain::StudyInstanceUid::new(stored.study_uid.clone())?;
            hub.complete_study(
                &tech,
                &study,
                a.urgent,
                a.urgent.then_some("模拟: 胸痛/外伤"),
            )
            .await?;
            let exam = hub
                .catalog
                .exam_of_study(&study)
                .await?
                .context("the simulated exam was not routed")?;
            read_time.insert(exam.exam_id.to_string(), a.read_minutes);
            outcomes.insert(
                exam.exam_id.to_string(),
                Outcome {
                    priority: exam.priority,
                    arrived: minute,
                    due: (exam.due_at.0 - start) / 60_000,
                    signed: None,
                },
            );
        }
        hub.escalate_overdue().await?;
        if order == Order::Priority {
            hub.offer_waiting().await?;
        }
        for (slot, (_shift, reader)) in busy.iter_mut().zip(&readers) {
            if let Some((exam, done)) = slot.clone() {
                if done > minute {
                    continue;
                }
                let input = ReportInput::legacy("模拟所见。", "模拟结论。");
                hub.sign(reader, &exam, Some(input)).await?;
                *reads.entry(reader.username.to_string()).or_insert(0) += 1;
                if let Some(o) = outcomes.get_mut(exam.as_str()) {
                    o.signed = Some(minute);
                }
                *slot = None;
            }
            if hub.on_duty_pools(reader, hub.now()).is_empty() {
                continue;
            }
            let claimed = match order {
                Order::Priority => hub.claim_next(reader).await?,
                Order::Fifo => {
                    let mut list = hub.worklist(reader).await?;
                    list.retain(|e| e.claimed_by.is_none());
                    list.sort_by_key(|e| (e.created_at, e.exam_id.to_string()));
                    match list.first() {
                        Some(e) => Some(hub.claim(reader, &e.exam_id).await?),
                        None => None,
                    }
                }
            };
            if let Some(e) = claimed {
                let t = read_time.get(e.exam_id.as_str()).copied().unwrap_or(5);
                *slot = Some((e.exam_id.clone(), minute + t));
            }
        }
        if next >= day.len()
            && busy.iter().all(Option::is_none)
            && outcomes.values().all(|o| o.signed.is_some())
        {
            break;
        }
    }
    let outcomes: Vec<Outcome> = outcomes.into_values().collect();
    if outcomes.len() != day.len() {
        bail!("{} arrivals but {} exams", day.len(), outcomes.len());
    }
    Ok(Run {
        rows: summarise(&outcomes),
        reads,
    })
}

/// Runs the day both ways and prints the comparison.
pub async fn simulate(seed: u64) -> anyhow::Result<()> {
    let mut tables = Vec::new();
    for order in [Order::Priority, Order::Fifo] {
        let dir = tempfile::tempdir().context("a folder for the simulated catalog")?;
        let t0 = std::time::Instant::now();
        let r = run(seed, order, dir.path()).await?;
        tables.push((order, r, t0.elapsed()));
    }
    let day = arrivals(seed);
    let ecg = day
        .iter()
        .filter(|a| matches!(a.kind, Kind::Ecg { .. }))
        .count();
    println!(
        "one simulated county day (seed {seed}): {} exams ({ecg} ECG, {} imaging), readers on shifts",
        day.len(),
        day.len() - ecg
    );
    println!("| order | priority | exams | signed within SLA | p50 min | p90 min | max min |");
    println!("|---|---|---|---|---|---|---|");
    let show = |v: Option<i64>| v.map_or("—".to_string(), |m| m.to_string());
    for (order, run, took) in &tables {
        for r in &run.rows {
            println!(
                "| {} | {} | {} | {} ({:.0}%) | {} | {} | {} |",
                order.label(),
                r.priority.as_str(),
                r.exams,
                r.within_sla,
                if r.exams == 0 {
                    0.0
                } else {
                    100.0 * r.within_sla as f64 / r.exams as f64
                },
                show(r.p50_minutes),
                show(r.p90_minutes),
                show(r.max_minutes),
            );
        }
        eprintln!(
            "{}: simulated in {:.1} s",
            order.label(),
            took.as_secs_f64()
        );
    }
    for (order, run, _) in &tables {
        let reads: Vec<String> = run.reads.iter().map(|(u, n)| format!("{u} {n}")).collect();
        println!(
            "exams signed per reader, {}: {}",
            order.label(),
            reads.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_has_the_county_volumes_and_shifts_cover_every_hour() {
        let day = arrivals(1);
        assert_eq!(day.len(), 267);
        assert!(day.windows(2).all(|w| w[0].minute <= w[1].minute));
        assert!(day.iter().all(|a| (0..24 * 60).contains(&a.minute)));
        let mut cfg = Config::demo().unwrap();
        add_sim_readers(&mut cfg);
        cfg.validate().unwrap();
        let rota = cfg.rota.clone();
        let start = 1_795_104_000_000_i64;
        for m in (0..24 * 60).step_by(30) {
            let at = UnixMillis(start + m * 60_000);
            let ecg = ["sun.ecg", "sim.ecg.late", "sim.ecg.night"]
                .iter()
                .any(|r| rota.duty(r, "county-ecg", at, 480).on_duty());
            assert!(ecg, "an ECG reader is on duty at minute {m}");
        }
    }

    /// The point of the priority order: on the reference day every stat exam is read within its SLA,
    /// and urgent work does at least as well as first-in-first-out on the same arrivals.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hub_order_reads_stat_exams_in_time_and_beats_fifo_on_urgent_work() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let hub = run(1, Order::Priority, a.path()).await.unwrap().rows;
        let fifo = run(1, Order::Fifo, b.path()).await.unwrap().rows;
        let total: usize = hub.iter().map(|r| r.exams).sum();
        assert_eq!(total, arrivals(1).len(), "every arrival became an exam");
        let stat = &hub[0];
        assert!(stat.exams > 0);
        assert_eq!(stat.within_sla, stat.exams, "{hub:?}");
        for i in 0..2 {
            assert!(
                hub[i].within_sla >= fifo[i].within_sla,
                "{hub:?} vs {fifo:?}"
            );
        }
    }

    #[test]
    fn percentiles_pick_the_ranked_value() {
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&v, 0.5), Some(5));
        assert_eq!(percentile(&v, 0.9), Some(9));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
