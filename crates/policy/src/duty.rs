//! Who reads now: readers' qualifications, the on-duty calendar (排班: weekly shifts, dated extra
//! shifts, leave) and which on-duty qualified reader an exam is offered to (the least loaded). Pure:
//! the time, the readers and their open work are arguments, and every answer explains itself.

use serde::Deserialize;
use yilian_domain::{UnixMillis, Username};

use crate::calendar::{Date, HoursWindow, LocalTime, Weekday};

/// A reader holding this many open items is not offered more (`[rota] max_open`).
pub const DEFAULT_MAX_OPEN: u32 = 1;

/// Offers to one reader last this long before the exam is offered again (`[rota] offer_secs`).
pub const DEFAULT_OFFER_SECS: i64 = 300;

/// The on-duty calendar (`[rota]`). A pool with no shift at all has everybody on duty all the time;
/// a pool with shifts has on duty only the readers a shift names, while it runs, unless on leave.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rota {
    /// How long an exam offered to one reader waits for them before it is offered to another.
    /// 0: the hub offers nothing and readers only pull ("next").
    pub offer_secs: i64,
    /// A reader is offered an exam only while they hold fewer open items (leases plus offers) than
    /// this: a reader busy reading is not handed more work that someone free could take.
    pub max_open: u32,
    pub shifts: Vec<Shift>,
    pub leave: Vec<Leave>,
}

impl Default for Rota {
    fn default() -> Self {
        Rota {
            offer_secs: DEFAULT_OFFER_SECS,
            max_open: DEFAULT_MAX_OPEN,
            shifts: Vec::new(),
            leave: Vec::new(),
        }
    }
}

/// One shift (`[[rota.shifts]]`): a pool, a daily window of local time, the days it starts on (or the
/// dates, for an extra shift on a holiday), and the readers who work it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// Shown to people: 白班, 夜班, 周末值班…
    pub name: String,
    pub pool: String,
    /// `HH:MM-HH:MM` local time; a window that wraps midnight belongs to the day it starts on.
    /// Absent: the whole day.
    #[serde(default)]
    pub hours: Option<String>,
    /// Weekdays the shift starts on (`mon` … `sun`); empty with no `dates`: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Dates (`YYYY-MM-DD`) the shift starts on; when set, only these (days are ignored).
    #[serde(default)]
    pub dates: Vec<String>,
    pub readers: Vec<String>,
}

/// A reader away (`[[rota.leave]]`): from the start of `from` to the end of `to`, local dates.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    pub reader: String,
    pub from: String,
    pub to: String,
    /// Why (年假, 外出进修…), for the people reading the calendar.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a reader may read (`[[users]]` keys `modalities`, `subspecialties`, `seniority`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Qualifications {
    /// Modalities the reader reads (`CT`, `DX`, `ECG`…); empty: every modality of their pools.
    pub modalities: Vec<String>,
    /// Subspecialties (`neuro`, `chest`, `cardiac`…).
    pub subspecialties: Vec<String>,
    /// May countersign a junior's report.
    pub senior: bool,
}

/// What an exam asks of its reader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExamNeeds {
    pub modality: String,
    /// From the routing rule that placed the exam.
    pub subspecialty: Option<String>,
    /// A junior's report waits for a senior's countersign.
    pub senior: bool,
}

/// Why a reader may not read an exam, in words a person can read.
pub fn qualified(q: &Qualifications, needs: &ExamNeeds) -> Result<(), String> {
    if !q.modalities.is_empty()
        && !q
            .modalities
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&needs.modality))
    {
        return Err(format!(
            "not qualified for {} (reads {})",
            needs.modality,
            q.modalities.join(", ")
        ));
    }
    if let Some(s) = &needs.subspecialty
        && !q.subspecialties.iter().any(|x| x.eq_ignore_ascii_case(s))
    {
        return Err(format!("the exam needs subspecialty {s}"));
    }
    if needs.senior && !q.senior {
        return Err("the report awaits a senior reader's review (审核)".into());
    }
    Ok(())
}

/// A reader's duty in one pool at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Duty {
    /// The pool keeps no calendar: its readers are always on duty.
    NoRota,
    /// On this shift (its name).
    OnShift(String),
    /// On leave (the leave's reason, if given).
    OnLeave(Option<String>),
    /// No shift of theirs runs now.
    Off,
}

impl Duty {
    pub fn on_duty(&self) -> bool {
        matches!(self, Duty::NoRota | Duty::OnShift(_))
    }

    /// 在班 / 休息 as a short phrase for explanations.
    pub fn describe(&self) -> String {
        match self {
            Duty::NoRota => "always on duty (the pool keeps no rota)".into(),
            Duty::OnShift(name) => format!("on shift {name}"),
            Duty::OnLeave(Some(r)) => format!("on leave ({r})"),
            Duty::OnLeave(None) => "on leave".into(),
            Duty::Off => "off duty".into(),
        }
    }
}

/// What is wrong with one shift or leave entry, naming the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotaProblem {
    pub key: &'static str,
    pub message: String,
}

/// A `YYYY-MM-DD` date.
fn parse_date(s: &str) -> Option<Date> {
    let b = s.trim().as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    Date::parse_dicom(s)
}

impl Shift {
    /// Hours, days and dates readable; at least one reader.
    pub fn check(&self) -> Result<(), RotaProblem> {
        let problem = |key: &'static str, message: String| RotaProblem { key, message };
        if let Some(h) = &self.hours {
            HoursWindow::parse(h).map_err(|m| problem("hours", m))?;
        }
        for d in &self.days {
            Weekday::parse(d)
                .ok_or_else(|| problem("days", format!("unknown day {d:?} (mon … sun)")))?;
        }
        for d in &self.dates {
            parse_date(d)
                .ok_or_else(|| problem("dates", format!("{d:?} is not a date (YYYY-MM-DD)")))?;
        }
        if self.readers.is_empty() {
            return Err(problem(
                "readers",
                "a shift needs at least one reader".into(),
            ));
        }
        Ok(())
    }

    /// The shift runs at `at`. A window wrapping midnight that started yesterday still runs.
    fn runs(&self, now: UnixMillis, utc_offset_minutes: i32) -> bool {
        let today = LocalTime::at(now, utc_offset_minutes);
        let window = match self.hours.as_deref().map(HoursWindow::parse) {
            Some(Ok(w)) => Some(w),
            Some(Err(_)) => return false,
            None => None,
        };
        let Some(w) = window else {
            return self.starts_on(&today);
        };
        if !w.contains(today.minute_of_day) {
            return false;
        }
        // Before the end of a wrapping window: the shift began on the previous day.
        let start_day = if w.start > w.end && today.minute_of_day < w.end {
            LocalTime::at(
                UnixMillis(now.0.saturating_sub(86_400_000)),
                utc_offset_minutes,
            )
        } else {
            today
        };
        self.starts_on(&start_day)
    }

    fn starts_on(&self, day: &LocalTime) -> bool {
        if !self.dates.is_empty() {
            return self.dates.iter().any(|d| parse_date(d) == Some(day.date));
        }
        self.days.is_empty()
            || self
                .days
                .iter()
                .any(|d| Weekday::parse(d) == Some(day.weekday))
    }
}

impl Leave {
    /// Dates readable and in order.
    pub fn check(&self) -> Result<(), RotaProblem> {
        let from = parse_date(&self.from).ok_or_else(|| RotaProblem {
            key: "from",
            message: format!("{:?} is not a date (YYYY-MM-DD)", self.from),
        })?;
        let to = parse_date(&self.to).ok_or_else(|| RotaProblem {
            key: "to",
            message: format!("{:?} is not a date (YYYY-MM-DD)", self.to),
        })?;
        if to < from {
            return Err(RotaProblem {
                key: "to",
                message: format!("leave ends ({}) before it starts ({})", self.to, self.from),
            });
        }
        Ok(())
    }

    fn covers(&self, date: Date) -> bool {
        match (parse_date(&self.from), parse_date(&self.to)) {
            (Some(from), Some(to)) => from <= date && date <= to,
            _ => false,
        }
    }
}

impl Rota {
    /// True when the pool keeps a calendar (some shift names it).
    pub fn keeps(&self, pool: &str) -> bool {
        self.shifts.iter().any(|s| s.pool == pool)
    }

    /// The reader's duty in `pool` at `now`.
    pub fn duty(&self, reader: &str, pool: &str, now: UnixMillis, utc_offset_minutes: i32) -> Duty {
        if !self.keeps(pool) {
            return Duty::NoRota;
        }
        let today = LocalTime::at(now, utc_offset_minutes).date;
        if let Some(l) = self
            .leave
            .iter()
            .find(|l| l.reader == reader && l.covers(today))
        {
            return Duty::OnLeave(l.reason.clone());
        }
        self.shifts
            .iter()
            .find(|s| {
                s.pool == pool
                    && s.readers.iter().any(|r| r == reader)
                    && s.runs(now, utc_offset_minutes)
            })
            .map(|s| Duty::OnShift(s.name.clone()))
            .unwrap_or(Duty::Off)
    }
}

/// A reader who might be offered an exam: their qualifications, duty and open work.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub username: Username,
    pub qualifications: Qualifications,
    pub duty: Duty,
    /// Exams they hold a live lease or a live offer on.
    pub open_items: u32,
    /// When they last took or were offered an exam (ties go to who waited longest).
    pub last_assigned_at: Option<UnixMillis>,
}

/// The reader an exam is offered to, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub to: Username,
    pub explanation: String,
}

/// Offers the exam to the least-loaded on-duty qualified candidate holding fewer than `max_open`
/// open items (ties: the one idle longest, then by name). `avoid` (who let the last offer lapse, or
/// released the exam) is offered it again only when nobody else is eligible. The error says why
/// nobody is offered it.
pub fn offer(
    pool: &str,
    needs: &ExamNeeds,
    candidates: &[Candidate],
    avoid: Option<&Username>,
    max_open: u32,
) -> Result<Offer, String> {
    let qualified_on_duty: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.duty.on_duty() && qualified(&c.qualifications, needs).is_ok())
        .collect();
    let mut eligible: Vec<&Candidate> = qualified_on_duty
        .iter()
        .copied()
        .filter(|c| c.open_items < max_open)
        .collect();
    if eligible.is_empty() && !qualified_on_duty.is_empty() {
        return Err(format!(
            "all {} qualified reader(s) on duty in {pool} are busy ({max_open} open item(s) each)",
            qualified_on_duty.len()
        ));
    }
    if eligible.len() > 1
        && let Some(a) = avoid
    {
        eligible.retain(|c| &c.username != a);
    }
    let best = eligible.iter().min_by(|a, b| {
        (
            a.open_items,
            a.last_assigned_at.map(|t| t.0),
            a.username.as_str(),
        )
            .cmp(&(
                b.open_items,
                b.last_assigned_at.map(|t| t.0),
                b.username.as_str(),
            ))
    });
    let Some(best) = best else {
        let on_duty = candidates.iter().filter(|c| c.duty.on_duty()).count();
        return Err(if on_duty == 0 {
            format!("nobody in {pool} is on duty")
        } else {
            format!(
                "none of the {on_duty} reader(s) on duty in {pool} is qualified for {}{}",
                needs.modality,
                needs
                    .subspecialty
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            )
        });
    };
    Ok(Offer {
        to: best.username.clone(),
        explanation: format!(
            "offered to {} ({}, qualified for {}): {} open item(s), the fewest of {} eligible reader(s) in {pool}",
            best.username,
            best.duty.describe(),
            needs.modality,
            best.open_items,
            eligible.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-02 (a Monday) at `hh:mm` Beijing time.
    fn monday(hh: i64, mm: i64) -> UnixMillis {
        // 2026-03-02T00:00+08:00 = 2026-03-01T16:00Z.
        UnixMillis(1_772_380_800_000 + (hh * 60 + mm) * 60_000)
    }

    fn shift(
        name: &str,
        pool: &str,
        hours: Option<&str>,
        days: &[&str],
        readers: &[&str],
    ) -> Shift {
        Shift {
            name: name.into(),
            pool: pool.into(),
            hours: hours.map(Into::into),
            days: days.iter().map(|d| d.to_string()).collect(),
            dates: Vec::new(),
            readers: readers.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn rota() -> Rota {
        Rota {
            offer_secs: 300,
            max_open: 1,
            shifts: vec![
                shift(
                    "白班",
                    "rad",
                    Some("08:00-18:00"),
                    &["mon", "tue", "wed", "thu", "fri"],
                    &["li", "zhou"],
                ),
                shift("夜班", "rad", Some("18:00-08:00"), &["mon"], &["zhou"]),
            ],
            leave: vec![Leave {
                reader: "li".into(),
                from: "2026-03-03".into(),
                to: "2026-03-04".into(),
                reason: Some("年假".into()),
            }],
        }
    }

    #[test]
    fn day_and_night_shifts_and_leave_decide_duty() {
        let r = rota();
        assert_eq!(
            r.duty("li", "rad", monday(9, 0), 480),
            Duty::OnShift("白班".into())
        );
        assert_eq!(r.duty("li", "rad", monday(18, 0), 480), Duty::Off);
        assert_eq!(
            r.duty("zhou", "rad", monday(23, 0), 480),
            Duty::OnShift("夜班".into())
        );
        // Tuesday 03:00 still belongs to Monday's night shift; Tuesday 19:00 has no night shift.
        assert_eq!(
            r.duty("zhou", "rad", monday(27, 0), 480),
            Duty::OnShift("夜班".into())
        );
        assert_eq!(r.duty("zhou", "rad", monday(24 + 19, 0), 480), Duty::Off);
        // Li is on leave on Tuesday, even during the day shift.
        assert_eq!(
            r.duty("li", "rad", monday(24 + 9, 0), 480),
            Duty::OnLeave(Some("年假".into()))
        );
        assert!(!r.duty("li", "rad", monday(24 + 9, 0), 480).on_duty());
        // A pool without shifts has everybody on duty.
        assert_eq!(r.duty("li", "ecg", monday(3, 0), 480), Duty::NoRota);
        assert!(Duty::NoRota.on_duty());
        // The same instant in UTC is Monday 01:00 there: nobody on the day shift.
        assert_eq!(r.duty("li", "rad", monday(9, 0), 0), Duty::Off);
    }

    #[test]
    fn dated_shifts_run_only_on_their_dates() {
        let mut s = shift("春节值班", "rad", None, &["sun"], &["li"]);
        s.dates = vec!["2026-03-02".into()];
        let r = Rota {
            shifts: vec![s],
            ..Rota::default()
        };
        assert!(r.duty("li", "rad", monday(12, 0), 480).on_duty());
        assert_eq!(r.duty("li", "rad", monday(24 + 12, 0), 480), Duty::Off);
    }

    #[test]
    fn shifts_and_leave_refuse_nonsense_naming_the_key() {
        let mut s = shift("x", "rad", Some("8-17"), &[], &["li"]);
        assert_eq!(s.check().unwrap_err().key, "hours");
        s.hours = None;
        s.days = vec!["funday".into()];
        assert_eq!(s.check().unwrap_err().key, "days");
        s.days.clear();
        s.dates = vec!["20260302".into()];
        assert_eq!(s.check().unwrap_err().key, "dates");
        s.dates = vec!["2026-02-30".into()];
        assert_eq!(s.check().unwrap_err().key, "dates");
        s.dates.clear();
        s.readers.clear();
        assert_eq!(s.check().unwrap_err().key, "readers");
        let l = Leave {
            reader: "li".into(),
            from: "2026-03-05".into(),
            to: "2026-03-04".into(),
            reason: None,
        };
        let p = l.check().unwrap_err();
        assert_eq!(p.key, "to");
        assert!(p.message.contains("before it starts"), "{}", p.message);
    }

    #[test]
    fn qualification_covers_modality_subspecialty_and_seniority() {
        let ct_neuro = Qualifications {
            modalities: vec!["CT".into(), "MR".into()],
            subspecialties: vec!["neuro".into()],
            senior: false,
        };
        let needs = |m: &str, s: Option<&str>, senior: bool| ExamNeeds {
            modality: m.into(),
            subspecialty: s.map(Into::into),
            senior,
        };
        assert!(qualified(&ct_neuro, &needs("ct", Some("Neuro"), false)).is_ok());
        assert_eq!(
            qualified(&ct_neuro, &needs("DX", None, false)).unwrap_err(),
            "not qualified for DX (reads CT, MR)"
        );
        assert_eq!(
            qualified(&ct_neuro, &needs("CT", Some("chest"), false)).unwrap_err(),
            "the exam needs subspecialty chest"
        );
        assert!(qualified(&ct_neuro, &needs("CT", None, true)).is_err());
        // No modality list: every modality of the pool.
        assert!(qualified(&Qualifications::default(), &needs("US", None, false)).is_ok());
    }

    fn candidate(name: &str, open: u32, last: Option<i64>, duty: Duty) -> Candidate {
        Candidate {
            username: Username::new(name).unwrap(),
            qualifications: Qualifications {
                senior: true,
                ..Qualifications::default()
            },
            duty,
            open_items: open,
            last_assigned_at: last.map(UnixMillis),
        }
    }

    #[test]
    fn offers_go_to_the_least_loaded_on_duty_qualified_reader() {
        let on = || Duty::OnShift("白班".into());
        let needs = ExamNeeds {
            modality: "CT".into(),
            ..ExamNeeds::default()
        };
        let cs = vec![
            candidate("li", 2, Some(10), on()),
            candidate("zhou", 1, Some(50), on()),
            candidate("sun", 0, Some(5), Duty::Off),
            candidate("qian", 1, Some(20), on()),
        ];
        let o = offer("rad", &needs, &cs, None, 3).unwrap();
        // zhou and qian both hold one item; qian has waited longer. sun holds none but is off duty.
        assert_eq!(o.to.as_str(), "qian");
        assert_eq!(
            o.explanation,
            "offered to qian (on shift 白班, qualified for CT): 1 open item(s), the fewest of 3 eligible reader(s) in rad"
        );
        let mut unqualified = cs.clone();
        for c in &mut unqualified {
            c.qualifications.modalities = vec!["DX".into()];
        }
        // The last offer to qian lapsed: zhou gets it; were qian the only one, qian would again.
        let zhou = Username::new("zhou").unwrap();
        let qian = Username::new("qian").unwrap();
        assert_eq!(offer("rad", &needs, &cs, Some(&qian), 3).unwrap().to, zhou);
        // With at most one open item each, only a free reader is offered work: nobody here.
        assert_eq!(
            offer("rad", &needs, &cs, None, 1).unwrap_err(),
            "all 3 qualified reader(s) on duty in rad are busy (1 open item(s) each)"
        );
        let mut free = cs.clone();
        free[0].open_items = 0;
        assert_eq!(
            offer("rad", &needs, &free, None, 1).unwrap().to.as_str(),
            "li"
        );
        let only_qian = vec![cs[3].clone()];
        assert_eq!(
            offer("rad", &needs, &only_qian, Some(&qian), 3).unwrap().to,
            qian
        );
        assert_eq!(
            offer("rad", &needs, &unqualified, None, 3).unwrap_err(),
            "none of the 3 reader(s) on duty in rad is qualified for CT"
        );
        let off: Vec<Candidate> = cs
            .iter()
            .cloned()
            .map(|mut c| {
                c.duty = Duty::Off;
                c
            })
            .collect();
        assert_eq!(
            offer("rad", &needs, &off, None, 3).unwrap_err(),
            "nobody in rad is on duty"
        );
    }
}
