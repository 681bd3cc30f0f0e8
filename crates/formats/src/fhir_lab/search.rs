//! FHIR R4 search parameters of the lab read API → one typed [`LabSearch`]. Parameters the hub does not
//! support are refused by name rather than ignored: a clinician who filters by something the hub cannot
//! apply must not get a broader answer without knowing it.

use yilian_domain::UnixMillis;
use yilian_domain::ecg::LocalDateTime;
use yilian_domain::lab::LabTime;

/// The resource type a search is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchResource {
    Patient,
    DiagnosticReport,
    Observation,
    /// Imaging and ECG studies with a signed report (`report_fhir`).
    ImagingStudy,
}

impl SearchResource {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchResource::Patient => "Patient",
            SearchResource::DiagnosticReport => "DiagnosticReport",
            SearchResource::Observation => "Observation",
            SearchResource::ImagingStudy => "ImagingStudy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Patient" => SearchResource::Patient,
            "DiagnosticReport" => SearchResource::DiagnosticReport,
            "Observation" => SearchResource::Observation,
            "ImagingStudy" => SearchResource::ImagingStudy,
            _ => return None,
        })
    }
}

/// A token: `[system|]code`. `system` is `None` when no `|` was given (any system), `Some("")` for
/// `|code` (no system).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub system: Option<String>,
    pub code: String,
}

impl Token {
    fn parse(name: &str, v: &str) -> Result<Self, SearchError> {
        let (system, code) = match v.split_once('|') {
            Some((s, c)) => (Some(s.trim().to_string()), c.trim()),
            None => (None, v.trim()),
        };
        if code.is_empty() {
            return Err(SearchError::Invalid(format!(
                "{name}: a code or value is required"
            )));
        }
        Ok(Token {
            system,
            code: code.to_string(),
        })
    }

    /// Whether a coding (system, code) satisfies the token.
    pub fn matches(&self, system: Option<&str>, code: &str) -> bool {
        code == self.code
            && match self.system.as_deref() {
                None => true,
                Some("") => system.is_none_or(str::is_empty),
                Some(s) => system == Some(s),
            }
    }
}

/// A search over published lab results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabSearch {
    /// `_id`.
    pub ids: Vec<String>,
    /// `patient` / `subject`: a Patient id.
    pub patient: Option<String>,
    /// `patient.identifier` (DiagnosticReport, Observation) or `identifier` (Patient).
    pub patient_identifier: Option<Token>,
    /// `identifier` of a DiagnosticReport: the order number.
    pub identifier: Option<Token>,
    /// `code`, alternatives.
    pub codes: Vec<Token>,
    /// `category` of a DiagnosticReport, alternatives (v2-0074 `LAB`, `RAD`, `EC`).
    pub categories: Vec<Token>,
    /// `date`: specimen collected at or after this instant.
    pub from: Option<UnixMillis>,
    /// `date`: specimen collected before this instant.
    pub before: Option<UnixMillis>,
    /// `_include=DiagnosticReport:result`.
    pub include_results: bool,
}

impl LabSearch {
    /// Whether a collection instant satisfies the date bounds (no bounds: anything, even unknown).
    pub fn date_matches(&self, collected: Option<UnixMillis>) -> bool {
        if self.from.is_none() && self.before.is_none() {
            return true;
        }
        collected
            .is_some_and(|t| self.from.is_none_or(|f| t >= f) && self.before.is_none_or(|b| t < b))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// A parameter the hub does not support for this resource (or at all).
    #[error("search parameter {0:?} is not supported here; see /fhir/r4/metadata")]
    Unsupported(String),
    /// A supported parameter with a value the hub cannot read.
    #[error("{0}")]
    Invalid(String),
}

/// Parses the decoded query pairs of a search. `default_offset_minutes` reads dates without a zone.
pub fn parse_search(
    resource: SearchResource,
    params: &[(String, String)],
    default_offset_minutes: i16,
) -> Result<LabSearch, SearchError> {
    use SearchResource::*;
    let mut s = LabSearch::default();
    let once = |name: &str, seen: bool| {
        if seen {
            Err(SearchError::Invalid(format!("{name} may be given once")))
        } else {
            Ok(())
        }
    };
    for (name, value) in params {
        let value = value.trim();
        match (resource, name.as_str()) {
            (_, "_format") => {
                if !matches!(value, "json" | "application/fhir+json" | "application/json") {
                    return Err(SearchError::Invalid(format!(
                        "_format {value:?}: only json is served"
                    )));
                }
            }
            (_, "_id") => s.ids.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string),
            ),
            (Patient, "identifier")
            | (DiagnosticReport | Observation | ImagingStudy, "patient.identifier") => {
                once(name, s.patient_identifier.is_some())?;
                if value.contains(',') {
                    return Err(SearchError::Invalid(format!(
                        "{name}: one identifier per search"
                    )));
                }
                s.patient_identifier = Some(Token::parse(name, value)?);
            }
            (DiagnosticReport | Observation | ImagingStudy, "patient" | "subject") => {
                once("patient", s.patient.is_some())?;
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                if id.is_empty() || id.contains(['/', ',']) {
                    return Err(SearchError::Invalid(format!(
                        "{name}: expected Patient/{{id}} or {{id}}"
                    )));
                }
                s.patient = Some(id.to_string());
            }
            (DiagnosticReport, "identifier") => {
                once(name, s.identifier.is_some())?;
                s.identifier = Some(Token::parse(name, value)?);
            }
            (DiagnosticReport, "category") => {
                for alt in value.split(',') {
                    s.categories.push(Token::parse(name, alt)?);
                }
            }
            (DiagnosticReport | Observation, "code") => {
                for alt in value.split(',') {
                    s.codes.push(Token::parse(name, alt)?);
                }
            }
            (DiagnosticReport | Observation, "date") => {
                let (from, before) = date_bounds(value, default_offset_minutes)?;
                if let Some(f) = from {
                    s.from = Some(s.from.map_or(f, |x| x.max(f)));
                }
                if let Some(b) = before {
                    s.before = Some(s.before.map_or(b, |x| x.min(b)));
                }
            }
            (DiagnosticReport, "_include") => match value {
                "DiagnosticReport:result" | "DiagnosticReport:result:Observation" => {
                    s.include_results = true
                }
                other => {
                    return Err(SearchError::Invalid(format!(
                        "_include {other:?}: only DiagnosticReport:result is supported"
                    )));
                }
            },
            (_, other) => return Err(SearchError::Unsupported(other.to_string())),
        }
    }
    Ok(s)
}

/// A date search value → the instants it bounds: `[from, before)`.
fn date_bounds(
    v: &str,
    default_offset: i16,
) -> Result<(Option<UnixMillis>, Option<UnixMillis>), SearchError> {
    let bad = || {
        SearchError::Invalid(format!(
            "date {v:?}: expected [eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]]"
        ))
    };
    let (prefix, rest) = match v.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &v[2..]),
        Some("ne" | "sa" | "eb" | "ap") => {
            return Err(SearchError::Invalid(format!(
                "date {v:?}: prefixes ne, sa, eb and ap are not supported"
            )));
        }
        _ => ("eq", v),
    };
    let (lower, upper) = date_range(rest, default_offset).ok_or_else(bad)?;
    Ok(match prefix {
        "ge" => (Some(lower), None),
        "gt" => (Some(upper), None),
        "le" => (None, Some(upper)),
        "lt" => (None, Some(lower)),
        _ => (Some(lower), Some(upper)),
    })
}

/// The instants `[lower, upper)` a FHIR date or dateTime of any precision covers.
fn date_range(s: &str, default_offset: i16) -> Option<(UnixMillis, UnixMillis)> {
    let num = |a: usize, b: usize| -> Option<u16> {
        let t = s.get(a..b)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let year = num(0, 4)?;
    let at = |m: u8, d: u8, h: u8, mi: u8, sec: u8, off: i16| {
        LocalDateTime::new(year, m, d, h, mi, sec)
            .map(|l| LabTime::new(l, Some(off)).to_unix_millis(off))
    };
    let off = default_offset;
    match s.len() {
        4 => Some((at(1, 1, 0, 0, 0, off)?, next_year(year, off)?)),
        7 if s.as_bytes()[4] == b'-' => {
            let m = u8::try_from(num(5, 7)?).ok()?;
            let lower = at(m, 1, 0, 0, 0, off)?;
            let upper = if m == 12 {
                next_year(year, off)?
            } else {
                at(m + 1, 1, 0, 0, 0, off)?
            };
            Some((lower, upper))
        }
        10 if s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' => {
            let m = u8::try_from(num(5, 7)?).ok()?;
            let d = u8::try_from(num(8, 10)?).ok()?;
            let lower = at(m, d, 0, 0, 0, off)?;
            Some((lower, lower.plus_days(1)))
        }
        n if n >= 16 && s.as_bytes().get(10) == Some(&b'T') => {
            let m = u8::try_from(num(5, 7)?).ok()?;
            let d = u8::try_from(num(8, 10)?).ok()?;
            let h = u8::try_from(num(11, 13)?).ok()?;
            let mi = u8::try_from(num(14, 16)?).ok()?;
            let mut rest = &s[16..];
            let (sec, width) = if rest.starts_with(':') {
                let sec = u8::try_from(num(17, 19)?).ok()?;
                rest = &s[19..];
                // Fractions are dropped: the catalog keeps lab times to the second.
                if let Some(r) = rest.strip_prefix('.') {
                    let digits = r.bytes().take_while(u8::is_ascii_digit).count();
                    rest = &r[digits..];
                }
                (sec, 1_000)
            } else {
                (0, 60_000)
            };
            let zone = match rest {
                "" => off,
                "Z" => 0,
                z => {
                    let sign: i16 = match z.as_bytes()[0] {
                        b'+' => 1,
                        b'-' => -1,
                        _ => return None,
                    };
                    let hh: i16 = z.get(1..3)?.parse().ok()?;
                    let mm: i16 = z.get(4..6)?.parse().ok()?;
                    if z.len() != 6 || z.as_bytes()[3] != b':' || hh > 23 || mm > 59 {
                        return None;
                    }
                    sign * (hh * 60 + mm)
                }
            };
            let lower = at(m, d, h, mi, sec, zone)?;
            Some((lower, UnixMillis(lower.0 + width)))
        }
        _ => None,
    }
}

fn next_year(year: u16, off: i16) -> Option<UnixMillis> {
    LocalDateTime::new(year.checked_add(1)?, 1, 1, 0, 0, 0)
        .map(|l| LabTime::new(l, Some(off)).to_unix_millis(off))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// 2026-11-23T00:00:00+08:00.
    const DAY: i64 = 1_795_363_200_000;

    #[test]
    fn report_searches_read_every_supported_parameter() {
        let s = parse_search(
            SearchResource::DiagnosticReport,
            &pairs(&[
                ("patient.identifier", "urn:yilian:issuer:HX|P001"),
                ("code", "http://loinc.org|58410-2,CBC"),
                ("date", "ge2026-11-23"),
                ("date", "lt2026-11-24T00:00:00+08:00"),
                ("_include", "DiagnosticReport:result"),
                ("identifier", "FO-1"),
            ]),
            480,
        )
        .unwrap();
        assert_eq!(
            s.patient_identifier,
            Some(Token {
                system: Some("urn:yilian:issuer:HX".into()),
                code: "P001".into()
            })
        );
        assert_eq!(s.codes.len(), 2);
        assert!(s.codes[0].matches(Some("http://loinc.org"), "58410-2"));
        assert!(!s.codes[0].matches(Some("urn:x"), "58410-2"));
        assert!(s.codes[1].matches(Some("urn:anything"), "CBC"));
        assert_eq!(s.from, Some(UnixMillis(DAY)));
        assert_eq!(s.before, Some(UnixMillis(DAY).plus_days(1)));
        assert!(s.include_results);
        assert_eq!(s.identifier.as_ref().unwrap().code, "FO-1");
        assert!(s.date_matches(Some(UnixMillis(DAY + 1))));
        assert!(!s.date_matches(Some(UnixMillis(DAY).plus_days(1))));
        assert!(!s.date_matches(None));
        let p = parse_search(
            SearchResource::Observation,
            &pairs(&[("patient", "Patient/0123456789abcdef")]),
            480,
        )
        .unwrap();
        assert_eq!(p.patient.as_deref(), Some("0123456789abcdef"));
        assert!(p.date_matches(None), "no date bounds: anything");
    }

    #[test]
    fn dates_of_every_precision_bound_the_right_instants() {
        let r = |v: &str| date_bounds(v, 480).unwrap();
        assert_eq!(
            r("2026-11-23"),
            (Some(UnixMillis(DAY)), Some(UnixMillis(DAY).plus_days(1)))
        );
        assert_eq!(
            r("gt2026-11-23"),
            (Some(UnixMillis(DAY).plus_days(1)), None)
        );
        assert_eq!(
            r("le2026-11-23"),
            (None, Some(UnixMillis(DAY).plus_days(1)))
        );
        let (from, before) = r("2026-11");
        assert_eq!(from, Some(UnixMillis(DAY).plus_days(-22)));
        assert_eq!(before, Some(UnixMillis(DAY).plus_days(8)));
        let (from, before) = r("2026");
        assert_eq!(before.unwrap().0 - from.unwrap().0, 365 * 86_400_000);
        assert_eq!(
            r("ge2026-11-23T00:15:00Z"),
            (Some(UnixMillis(DAY + 8 * 3_600_000 + 15 * 60_000)), None)
        );
        assert_eq!(
            r("eq2026-11-23T08:15"),
            (
                Some(UnixMillis(DAY + 8 * 3_600_000 + 15 * 60_000)),
                Some(UnixMillis(DAY + 8 * 3_600_000 + 16 * 60_000))
            )
        );
        for bad in [
            "",
            "26-11-23",
            "2026-13-01",
            "2026-11-23T25:00",
            "ne2026",
            "2026-11-23T08:15+8",
            "2026-11-23X",
        ] {
            assert!(date_bounds(bad, 480).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_the_hub_cannot_apply_is_refused_by_name() {
        let e = |r, q: &[(&str, &str)]| parse_search(r, &pairs(q), 480).unwrap_err();
        assert_eq!(
            e(SearchResource::Observation, &[("_count", "10")]),
            SearchError::Unsupported("_count".into())
        );
        assert_eq!(
            e(SearchResource::Patient, &[("name", "张")]),
            SearchError::Unsupported("name".into())
        );
        assert_eq!(
            e(SearchResource::Observation, &[("identifier", "x")]),
            SearchError::Unsupported("identifier".into())
        );
        assert!(matches!(
            e(
                SearchResource::Observation,
                &[("_include", "Observation:subject")]
            ),
            SearchError::Unsupported(_)
        ));
        assert!(matches!(
            e(
                SearchResource::DiagnosticReport,
                &[("_include", "DiagnosticReport:subject")]
            ),
            SearchError::Invalid(_)
        ));
        assert!(matches!(
            e(SearchResource::Patient, &[("identifier", "HX|")]),
            SearchError::Invalid(_)
        ));
        assert!(matches!(
            e(SearchResource::DiagnosticReport, &[("patient", "Group/1")]),
            SearchError::Invalid(_)
        ));
        assert!(matches!(
            e(SearchResource::Patient, &[("_format", "xml")]),
            SearchError::Invalid(_)
        ));
        let t = Token::parse("code", "|X").unwrap();
        assert!(t.matches(None, "X") && !t.matches(Some("urn:a"), "X"));
    }
}
