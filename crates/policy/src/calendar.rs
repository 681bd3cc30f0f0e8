//! The alliance's wall clock as rules see it: a UTC instant plus a fixed offset → local date, weekday
//! and minute of the day; DICOM birth dates → age in whole years. Pure arithmetic, no time zone data
//! (China has one offset and no daylight saving; other alliances set `alliance.utc_offset_minutes`).

use yilian_domain::UnixMillis;

/// A day of the week, as rules spell it (`mon` … `sun`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// `mon`, `tue` … `sun`, any case; the full English name is accepted too.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        Weekday::ALL.into_iter().find(|d| {
            let short = d.as_str();
            s == short || (s.len() > 3 && s.starts_with(short) && s == d.full_name())
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }

    fn full_name(self) -> &'static str {
        match self {
            Weekday::Mon => "monday",
            Weekday::Tue => "tuesday",
            Weekday::Wed => "wednesday",
            Weekday::Thu => "thursday",
            Weekday::Fri => "friday",
            Weekday::Sat => "saturday",
            Weekday::Sun => "sunday",
        }
    }
}

/// A calendar date (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i64,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// A DICOM DA value (`YYYYMMDD`; the ACR-NEMA form `YYYY.MM.DD` and ISO `YYYY-MM-DD` too). `None`
    /// when it is not a real date.
    pub fn parse_dicom(s: &str) -> Option<Self> {
        let digits: String = s
            .trim()
            .chars()
            .filter(|c| *c != '.' && *c != '-')
            .collect();
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i64 = digits.get(0..4)?.parse().ok()?;
        let month: u32 = digits.get(4..6)?.parse().ok()?;
        let day: u32 = digits.get(6..8)?.parse().ok()?;
        let d = Date { year, month, day };
        ((1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day)).then_some(d)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// The civil date of a day count since 1970-01-01 (the era-based method: 400-year cycles of
/// 146 097 days, years starting in March so the leap day is last).
fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date { year, month, day }
}

/// The alliance's local time at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub date: Date,
    pub weekday: Weekday,
    /// Minutes since local midnight, 0..1440.
    pub minute_of_day: u32,
}

impl LocalTime {
    pub fn at(now: UnixMillis, utc_offset_minutes: i32) -> Self {
        let local = now.0.saturating_add(i64::from(utc_offset_minutes) * 60_000);
        let days = local.div_euclid(86_400_000);
        let minute_of_day = (local.rem_euclid(86_400_000) / 60_000) as u32;
        // 1970-01-01 was a Thursday (index 3 counting from Monday).
        let weekday = Weekday::ALL
            .get((days + 3).rem_euclid(7) as usize)
            .copied()
            .unwrap_or(Weekday::Mon);
        LocalTime {
            date: civil_from_days(days),
            weekday,
            minute_of_day,
        }
    }

    /// `HH:MM`.
    pub fn hhmm(&self) -> String {
        format!(
            "{:02}:{:02}",
            self.minute_of_day / 60,
            self.minute_of_day % 60
        )
    }
}

/// Whole years from `birth` to `today`; `None` when the birth date is after today.
pub fn age_years(birth: Date, today: Date) -> Option<u32> {
    let mut years = today.year - birth.year;
    if (today.month, today.day) < (birth.month, birth.day) {
        years -= 1;
    }
    u32::try_from(years).ok()
}

/// A daily window of local time, `HH:MM-HH:MM`: the start minute is in, the end minute is not. A start
/// after the end wraps midnight (`22:00-06:00` is the night).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoursWindow {
    pub start: u32,
    pub end: u32,
}

impl HoursWindow {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("hours {s:?} is not HH:MM-HH:MM"))?;
        let minute = |t: &str| -> Result<u32, String> {
            let t = t.trim();
            let (h, m) = t
                .split_once(':')
                .ok_or_else(|| format!("hours {s:?}: {t:?} is not HH:MM"))?;
            let h: u32 = h
                .parse()
                .map_err(|_| format!("hours {s:?}: bad hour {h:?}"))?;
            let m: u32 = m
                .parse()
                .map_err(|_| format!("hours {s:?}: bad minute {m:?}"))?;
            // 24:00 is allowed as an end ("18:00-24:00").
            if m > 59 || h > 24 || (h == 24 && m != 0) {
                return Err(format!("hours {s:?}: {t} is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let (start, end) = (minute(a)?, minute(b)?);
        if start == end || start == 1440 {
            return Err(format!(
                "hours {s:?} is empty (use no hours key for the whole day)"
            ));
        }
        Ok(HoursWindow { start, end })
    }

    pub fn contains(&self, minute_of_day: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute_of_day)
        } else {
            minute_of_day >= self.start || minute_of_day < self.end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_follows_the_offset_across_midnight_and_weekdays() {
        // 2026-03-02T16:30:00Z is a Monday; +08:00 makes it Tuesday 00:30 in Beijing.
        let t = UnixMillis(1_772_469_000_000);
        let utc = LocalTime::at(t, 0);
        assert_eq!(
            (utc.date, utc.weekday, utc.hhmm().as_str()),
            (
                Date {
                    year: 2026,
                    month: 3,
                    day: 2
                },
                Weekday::Mon,
                "16:30"
            )
        );
        let cst = LocalTime::at(t, 480);
        assert_eq!(
            (cst.date.day, cst.weekday, cst.hhmm().as_str()),
            (3, Weekday::Tue, "00:30")
        );
        // Before the epoch and on a leap day.
        let leap = LocalTime::at(UnixMillis(951_782_400_000), 0); // 2000-02-29T00:00Z
        assert_eq!(
            (leap.date.month, leap.date.day, leap.weekday),
            (2, 29, Weekday::Tue)
        );
        let old = LocalTime::at(UnixMillis(-86_400_000), 0);
        assert_eq!(
            (old.date.year, old.date.month, old.date.day, old.weekday),
            (1969, 12, 31, Weekday::Wed)
        );
    }

    #[test]
    fn ages_count_whole_years_and_birth_dates_must_be_real() {
        let today = Date::parse_dicom("20260302").unwrap();
        assert_eq!(
            age_years(Date::parse_dicom("19600302").unwrap(), today),
            Some(66)
        );
        assert_eq!(
            age_years(Date::parse_dicom("19600303").unwrap(), today),
            Some(65)
        );
        assert_eq!(
            age_years(Date::parse_dicom("2026-03-03").unwrap(), today),
            None
        );
        assert_eq!(Date::parse_dicom("19600230"), None);
        assert_eq!(Date::parse_dicom("1960"), None);
        assert!(Date::parse_dicom("20000229").is_some());
        assert_eq!(Date::parse_dicom("19000229"), None);
    }

    #[test]
    fn hour_windows_wrap_midnight_and_refuse_nonsense() {
        let day = HoursWindow::parse("08:00-17:30").unwrap();
        assert!(day.contains(8 * 60) && day.contains(17 * 60 + 29));
        assert!(!day.contains(17 * 60 + 30) && !day.contains(7 * 60 + 59));
        let night = HoursWindow::parse("22:00-06:00").unwrap();
        assert!(night.contains(23 * 60) && night.contains(0) && night.contains(5 * 60 + 59));
        assert!(!night.contains(6 * 60) && !night.contains(12 * 60));
        assert!(
            HoursWindow::parse("18:00-24:00")
                .unwrap()
                .contains(23 * 60 + 59)
        );
        for bad in ["8-17", "08:00", "25:00-06:00", "08:60-09:00", "08:00-08:00"] {
            assert!(HoursWindow::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Weekday::parse("Mon"), Some(Weekday::Mon));
        assert_eq!(Weekday::parse("sunday"), Some(Weekday::Sun));
        assert_eq!(Weekday::parse("mo"), None);
    }
}
