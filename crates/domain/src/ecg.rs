//! ECG records: the one typed trace model every ECG format (DICOM waveform, HL7 aECG, SCP-ECG)
//! normalises into, the measurements a device sends with it, and the hub's own analysis.
//! Samples are physical values in microvolts; time is in samples at `sample_rate_hz`.

use std::fmt;

/// A lead, named as MDC (ISO/IEEE 11073-10101; DICOM CID 3001) and SCP-ECG name it. The twelve standard
/// leads have their own variants; anything else keeps its MDC/SCP-ECG lead number and label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lead {
    I,
    II,
    III,
    AVR,
    AVL,
    AVF,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    /// Another lead: its MDC lead number (the `n` of MDC code `2:n` and of SCP-ECG lead id `n`; 0 when
    /// unknown) and the label it came with.
    Other {
        number: u16,
        label: String,
    },
}

impl Lead {
    /// The standard 12 leads in the order of a printed 12-lead ECG.
    pub const STANDARD_12: [Lead; 12] = [
        Lead::I,
        Lead::II,
        Lead::III,
        Lead::AVR,
        Lead::AVL,
        Lead::AVF,
        Lead::V1,
        Lead::V2,
        Lead::V3,
        Lead::V4,
        Lead::V5,
        Lead::V6,
    ];

    /// The MDC / SCP-ECG lead number (I 1, II 2, V1–V6 3–8, III 61, aVR 62, aVL 63, aVF 64).
    pub fn number(&self) -> u16 {
        match self {
            Lead::I => 1,
            Lead::II => 2,
            Lead::V1 => 3,
            Lead::V2 => 4,
            Lead::V3 => 5,
            Lead::V4 => 6,
            Lead::V5 => 7,
            Lead::V6 => 8,
            Lead::III => 61,
            Lead::AVR => 62,
            Lead::AVL => 63,
            Lead::AVF => 64,
            Lead::Other { number, .. } => *number,
        }
    }

    /// The lead for an MDC / SCP-ECG lead number; numbers outside the standard 12 become `Other` with
    /// the given label (or `"lead {n}"`).
    pub fn from_number(n: u16, label: Option<&str>) -> Lead {
        match n {
            1 => Lead::I,
            2 => Lead::II,
            3 => Lead::V1,
            4 => Lead::V2,
            5 => Lead::V3,
            6 => Lead::V4,
            7 => Lead::V5,
            8 => Lead::V6,
            61 => Lead::III,
            62 => Lead::AVR,
            63 => Lead::AVL,
            64 => Lead::AVF,
            _ => Lead::Other {
                number: n,
                label: label
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("lead {n}")),
            },
        }
    }

    /// The lead for a DICOM MDC code value (`"2:1"` is lead I) or an SCP-ECG-scheme code
    /// (`"5.6.3-9-1"`). `None` when the code is not a lead code.
    pub fn from_code(code: &str, label: Option<&str>) -> Option<Lead> {
        let code = code.trim();
        let n = code
            .strip_prefix("2:")
            .or_else(|| code.strip_prefix("5.6.3-9-"))?;
        n.parse::<u16>().ok().map(|n| Lead::from_number(n, label))
    }

    /// The lead for an HL7 aECG / MDC reference id such as `MDC_ECG_LEAD_AVR`.
    pub fn from_reference_id(id: &str) -> Option<Lead> {
        let name = id.trim().strip_prefix("MDC_ECG_LEAD_")?;
        Some(match name.to_ascii_uppercase().as_str() {
            "I" => Lead::I,
            "II" => Lead::II,
            "III" => Lead::III,
            "AVR" => Lead::AVR,
            "AVL" => Lead::AVL,
            "AVF" => Lead::AVF,
            "V1" => Lead::V1,
            "V2" => Lead::V2,
            "V3" => Lead::V3,
            "V4" => Lead::V4,
            "V5" => Lead::V5,
            "V6" => Lead::V6,
            other => Lead::Other {
                number: 0,
                label: other.to_string(),
            },
        })
    }

    /// How the lead is printed on ECG paper: `I`, `aVR`, `V1`…
    pub fn label(&self) -> &str {
        match self {
            Lead::I => "I",
            Lead::II => "II",
            Lead::III => "III",
            Lead::AVR => "aVR",
            Lead::AVL => "aVL",
            Lead::AVF => "aVF",
            Lead::V1 => "V1",
            Lead::V2 => "V2",
            Lead::V3 => "V3",
            Lead::V4 => "V4",
            Lead::V5 => "V5",
            Lead::V6 => "V6",
            Lead::Other { label, .. } => label,
        }
    }

    /// The MDC reference id (`MDC_ECG_LEAD_II`) of a standard lead.
    pub fn reference_id(&self) -> Option<String> {
        match self {
            Lead::Other { .. } => None,
            l => Some(format!("MDC_ECG_LEAD_{}", l.label().to_ascii_uppercase())),
        }
    }
}

impl fmt::Display for Lead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One lead's samples in microvolts, one per sample period.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadTrace {
    pub lead: Lead,
    pub samples_uv: Vec<f32>,
}

/// A local date and time as the acquiring device recorded it (no time zone: devices rarely send one).
/// Orders chronologically; prints as ISO 8601 (`2026-11-23T08:15:30`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalDateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl LocalDateTime {
    /// Checks ranges (month 1–12, day 1–31, hour < 24, minute < 60, second < 61).
    pub fn new(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<Self> {
        let ok = (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour < 24
            && minute < 60
            && second < 61;
        ok.then_some(LocalDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Parses the leading `YYYYMMDD[HHMMSS]` digits of DICOM DT/DA+TM and HL7 TS values.
    pub fn parse_compact(s: &str) -> Option<Self> {
        let s = s.trim();
        let digits = |from: usize, len: usize| -> Option<u16> {
            let part = s.get(from..from + len)?;
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let year = digits(0, 4)?;
        let month = digits(4, 2)? as u8;
        let day = digits(6, 2)? as u8;
        let hour = digits(8, 2).unwrap_or(0) as u8;
        let minute = digits(10, 2).unwrap_or(0) as u8;
        let second = digits(12, 2).unwrap_or(0) as u8;
        LocalDateTime::new(year, month, day, hour, minute, second)
    }
}

impl fmt::Display for LocalDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// The acquiring device, as far as the file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EcgDevice {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub software_version: Option<String>,
}

/// Global measurements: what a device sent, or what the hub measured. Intervals in milliseconds,
/// axes in degrees (frontal plane), rate in beats per minute. `None` means not given / not measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GlobalMeasurements {
    pub heart_rate_bpm: Option<f64>,
    pub rr_ms: Option<f64>,
    pub pr_ms: Option<f64>,
    pub qrs_ms: Option<f64>,
    pub qt_ms: Option<f64>,
    pub qtc_ms: Option<f64>,
    pub p_axis_deg: Option<f64>,
    pub qrs_axis_deg: Option<f64>,
    pub t_axis_deg: Option<f64>,
}

impl GlobalMeasurements {
    pub fn is_empty(&self) -> bool {
        *self == GlobalMeasurements::default()
    }
}

/// Who the trace belongs to, as the file says. Used when a non-DICOM upload is filed as a DICOM
/// instance; `Debug` is redacted so identifiers never reach logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EcgSubject {
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    /// `YYYYMMDD`.
    pub birth_date: Option<String>,
    /// `M`, `F` or `O`.
    pub sex: Option<String>,
}

impl fmt::Debug for EcgSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcgSubject")
            .field(
                "patient_id",
                &self.patient_id.as_deref().map(crate::mask_identifier),
            )
            .field("patient_name", &self.patient_name.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// Which format a record was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcgSourceFormat {
    DicomWaveform,
    Hl7Aecg,
    ScpEcg,
}

impl EcgSourceFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            EcgSourceFormat::DicomWaveform => "dicom-waveform",
            EcgSourceFormat::Hl7Aecg => "hl7-aecg",
            EcgSourceFormat::ScpEcg => "scp-ecg",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "dicom-waveform" => EcgSourceFormat::DicomWaveform,
            "hl7-aecg" => EcgSourceFormat::Hl7Aecg,
            "scp-ecg" => EcgSourceFormat::ScpEcg,
            _ => return None,
        })
    }
}

/// The most samples per lead the hub accepts (24 h at 1 kHz); longer recordings are refused rather
/// than held in memory.
pub const MAX_SAMPLES_PER_LEAD: usize = 86_400_000;
/// The most leads in one record.
pub const MAX_LEADS: usize = 64;

/// One ECG recording, normalised: every lead has the same sample rate and the same number of samples.
#[derive(Clone, Debug, PartialEq)]
pub struct EcgRecord {
    pub source: EcgSourceFormat,
    pub sample_rate_hz: f64,
    pub leads: Vec<LeadTrace>,
    pub acquired_at: Option<LocalDateTime>,
    pub device: EcgDevice,
    pub subject: EcgSubject,
    /// Measurements the device sent with the trace (kept as sent, shown beside the hub's own).
    pub device_measurements: GlobalMeasurements,
    /// Interpretation statements the device sent, in order, as text.
    pub interpretation: Vec<String>,
}

/// Why a trace is not a usable ECG record.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EcgModelError {
    #[error("the record has no leads")]
    NoLeads,
    #[error("the record has {0} leads; at most {MAX_LEADS} are accepted")]
    TooManyLeads(usize),
    #[error("sample rate {0} Hz is out of range (1 to 100000 Hz)")]
    BadSampleRate(f64),
    #[error("lead {lead} has {found} samples but lead {first} has {expected}")]
    UnequalLengths {
        first: String,
        expected: usize,
        lead: String,
        found: usize,
    },
    #[error("the leads have no samples")]
    Empty,
    #[error("{0} samples per lead is more than the {MAX_SAMPLES_PER_LEAD} accepted")]
    TooLong(usize),
    #[error("lead {0} has a sample that is not a finite number")]
    NotFinite(String),
}

impl EcgRecord {
    /// Checks the invariants every parser must establish before it returns a record.
    pub fn validate(&self) -> Result<(), EcgModelError> {
        if !(self.sample_rate_hz.is_finite()
            && self.sample_rate_hz >= 1.0
            && self.sample_rate_hz <= 100_000.0)
        {
            return Err(EcgModelError::BadSampleRate(self.sample_rate_hz));
        }
        let first = self.leads.first().ok_or(EcgModelError::NoLeads)?;
        if self.leads.len() > MAX_LEADS {
            return Err(EcgModelError::TooManyLeads(self.leads.len()));
        }
        let n = first.samples_uv.len();
        if n == 0 {
            return Err(EcgModelError::Empty);
        }
        if n > MAX_SAMPLES_PER_LEAD {
            return Err(EcgModelError::TooLong(n));
        }
        for l in &self.leads {
            if l.samples_uv.len() != n {
                return Err(EcgModelError::UnequalLengths {
                    first: first.lead.to_string(),
                    expected: n,
                    lead: l.lead.to_string(),
                    found: l.samples_uv.len(),
                });
            }
            if l.samples_uv.iter().any(|v| !v.is_finite()) {
                return Err(EcgModelError::NotFinite(l.lead.to_string()));
            }
        }
        Ok(())
    }

    /// Samples per lead.
    pub fn samples_per_lead(&self) -> usize {
        self.leads.first().map_or(0, |l| l.samples_uv.len())
    }

    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.samples_per_lead() as f64 / self.sample_rate_hz
    }

    /// The samples of one lead, if the record has it.
    pub fn lead(&self, lead: &Lead) -> Option<&[f32]> {
        self.leads
            .iter()
            .find(|l| &l.lead == lead)
            .map(|l| l.samples_uv.as_slice())
    }

    /// The lead's samples, or, for a limb lead the device did not send, the lead derived from I and II
    /// by Einthoven's and Goldberger's equations (III = II − I, aVR = −(I + II)/2, aVL = I − II/2,
    /// aVF = II − I/2).
    pub fn lead_or_derived(&self, lead: &Lead) -> Option<Vec<f32>> {
        if let Some(s) = self.lead(lead) {
            return Some(s.to_vec());
        }
        let (i, ii) = (self.lead(&Lead::I)?, self.lead(&Lead::II)?);
        let f: fn(f32, f32) -> f32 = match lead {
            Lead::III => |i, ii| ii - i,
            Lead::AVR => |i, ii| -(i + ii) / 2.0,
            Lead::AVL => |i, ii| i - ii / 2.0,
            Lead::AVF => |i, ii| ii - i / 2.0,
            _ => return None,
        };
        Some(i.iter().zip(ii).map(|(&a, &b)| f(a, b)).collect())
    }
}

/// Rhythm regularity from RR intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regularity {
    Regular,
    Irregular,
    /// Too few beats to say.
    Unknown,
}

impl Regularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Regularity::Regular => "regular",
            Regularity::Irregular => "irregular",
            Regularity::Unknown => "unknown",
        }
    }
}

/// What the hub measured on a record (yilian-analysis). Fields it could not measure reliably are
/// `None`, with the reason in `notes`.
#[derive(Clone, Debug, PartialEq)]
pub struct EcgAnalysis {
    /// The lead the beats were detected on.
    pub detection_lead: Option<Lead>,
    /// R-peak positions, as sample indexes.
    pub r_peaks: Vec<usize>,
    /// RR intervals in milliseconds (one fewer than the peaks).
    pub rr_ms: Vec<f64>,
    pub rr_sd_ms: Option<f64>,
    pub regularity: Regularity,
    pub measurements: GlobalMeasurements,
    /// QTc by Bazett (QT/√RR) and Fridericia (QT/∛RR), RR in seconds.
    pub qtc_bazett_ms: Option<f64>,
    pub qtc_fridericia_ms: Option<f64>,
    /// Why something was not measured, in plain words.
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_codes_round_trip() {
        for l in Lead::STANDARD_12 {
            assert_eq!(Lead::from_number(l.number(), None), l);
            assert_eq!(
                Lead::from_code(&format!("2:{}", l.number()), None),
                Some(l.clone())
            );
            let rid = l.reference_id().unwrap();
            assert_eq!(Lead::from_reference_id(&rid), Some(l.clone()));
        }
        assert_eq!(Lead::from_code("5.6.3-9-62", None), Some(Lead::AVR));
        assert_eq!(
            Lead::from_code("2:9", Some("V7")).map(|l| l.label().to_string()),
            Some("V7".into())
        );
        assert_eq!(Lead::from_code("10:1", None), None);
    }

    #[test]
    fn derived_limb_leads_follow_einthoven() {
        let rec = EcgRecord {
            source: EcgSourceFormat::Hl7Aecg,
            sample_rate_hz: 500.0,
            leads: vec![
                LeadTrace {
                    lead: Lead::I,
                    samples_uv: vec![100.0, 200.0],
                },
                LeadTrace {
                    lead: Lead::II,
                    samples_uv: vec![300.0, -100.0],
                },
            ],
            acquired_at: None,
            device: EcgDevice::default(),
            subject: EcgSubject::default(),
            device_measurements: GlobalMeasurements::default(),
            interpretation: vec![],
        };
        assert_eq!(rec.validate(), Ok(()));
        assert_eq!(rec.lead_or_derived(&Lead::III), Some(vec![200.0, -300.0]));
        assert_eq!(rec.lead_or_derived(&Lead::AVR), Some(vec![-200.0, -50.0]));
        assert_eq!(rec.lead_or_derived(&Lead::AVL), Some(vec![-50.0, 250.0]));
        assert_eq!(rec.lead_or_derived(&Lead::AVF), Some(vec![250.0, -200.0]));
        assert_eq!(rec.lead_or_derived(&Lead::V1), None);
    }

    #[test]
    fn validation_names_the_problem() {
        let mut rec = EcgRecord {
            source: EcgSourceFormat::ScpEcg,
            sample_rate_hz: 500.0,
            leads: vec![
                LeadTrace {
                    lead: Lead::I,
                    samples_uv: vec![0.0; 10],
                },
                LeadTrace {
                    lead: Lead::II,
                    samples_uv: vec![0.0; 9],
                },
            ],
            acquired_at: None,
            device: EcgDevice::default(),
            subject: EcgSubject::default(),
            device_measurements: GlobalMeasurements::default(),
            interpretation: vec![],
        };
        let e = rec.validate().unwrap_err().to_string();
        assert!(e.contains("lead II has 9 samples"), "{e}");
        rec.leads[1].samples_uv.push(f32::NAN);
        assert!(
            rec.validate()
                .unwrap_err()
                .to_string()
                .contains("not a finite")
        );
        rec.sample_rate_hz = 0.0;
        assert!(matches!(
            rec.validate(),
            Err(EcgModelError::BadSampleRate(_))
        ));
    }

    #[test]
    fn compact_times_parse_and_order() {
        let a = LocalDateTime::parse_compact("20261123081530.123+0800").unwrap();
        assert_eq!(a.to_string(), "2026-11-23T08:15:30");
        let b = LocalDateTime::parse_compact("20261124").unwrap();
        assert!(a < b);
        assert_eq!(LocalDateTime::parse_compact("20261323"), None);
        assert_eq!(LocalDateTime::parse_compact("2026"), None);
    }
}
