//! ECG waveform formats → the one trace model (`yilian_domain::ecg::EcgRecord`) and back: DICOM
//! 12-lead / General / Ambulatory ECG waveform objects, HL7 aECG XML and SCP-ECG (EN 1064) files.
//! Content sniffing picks the parser for an upload; every parser refuses malformed or inconsistent
//! input with a reason a site technician can act on, and ends with `EcgRecord::validate`.

pub mod aecg;
mod dicom;
pub mod scp;

pub use dicom::{EcgDicomIds, from_dicom, from_dicom_bytes, to_dicom};
pub use yilian_domain::ecg::EcgSourceFormat;

use yilian_domain::ecg::{EcgModelError, EcgRecord, GlobalMeasurements};

/// 12-lead ECG Waveform Storage.
pub const TWELVE_LEAD_ECG_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.9.1.1";
/// General ECG Waveform Storage.
pub const GENERAL_ECG_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.9.1.2";
/// Ambulatory ECG Waveform Storage.
pub const AMBULATORY_ECG_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.9.1.3";

/// Why an ECG upload was refused. The text names the field and the value so the sender can fix it.
#[derive(Debug, thiserror::Error)]
pub enum EcgError {
    #[error("not a recognised ECG file: expected DICOM waveform, HL7 aECG XML or SCP-ECG")]
    UnknownFormat,
    #[error("the DICOM file could not be read (truncated or malformed): {0}")]
    DicomUnreadable(String),
    #[error("SOP class {0} is not an ECG waveform (12-lead, General or Ambulatory ECG)")]
    NotEcgWaveform(String),
    #[error("{format}: required {what} is missing")]
    Missing {
        format: &'static str,
        what: &'static str,
    },
    #[error("{format}: {what} has an unusable value {value:?}")]
    Invalid {
        format: &'static str,
        what: &'static str,
        value: String,
    },
    #[error("the DICOM object has no waveform multiplex group with at least one channel")]
    NoWaveformGroup,
    #[error(
        "NumberOfWaveformChannels says {declared} but ChannelDefinitionSequence has {defined} items"
    )]
    ChannelCountMismatch { declared: u64, defined: usize },
    #[error(
        "WaveformData has {found} bytes but {channels} channels × {samples} samples × {bytes_per_sample} bytes need {expected}"
    )]
    DataLengthMismatch {
        found: usize,
        channels: u64,
        samples: u64,
        bytes_per_sample: u64,
        expected: u64,
    },
    #[error(
        "{format}: {count} samples per lead is more than the {max} accepted (or overflows the size arithmetic)",
        max = yilian_domain::ecg::MAX_SAMPLES_PER_LEAD
    )]
    TooManySamples { format: &'static str, count: u64 },
    #[error("{format}: unknown unit {unit:?} for {what} (expected {expected})")]
    UnknownUnit {
        format: &'static str,
        what: &'static str,
        unit: String,
        expected: &'static str,
    },
    #[error("{format}: {feature} is not supported")]
    Unsupported {
        format: &'static str,
        feature: String,
    },
    #[error("the aECG XML could not be parsed: {0}")]
    Xml(String),
    #[error("SCP-ECG: {0}")]
    Scp(String),
    #[error(
        "SCP-ECG: CRC of {part} is wrong (stored {stored:#06x}, computed {computed:#06x}): the file is corrupt"
    )]
    BadCrc {
        part: String,
        stored: u16,
        computed: u16,
    },
    #[error("{format}: {what} is cut off: the file is truncated")]
    Truncated { format: &'static str, what: String },
    #[error("the ECG cannot be written as DICOM: {0}")]
    Write(String),
    #[error("the ECG parser failed unexpectedly on this input; the file is refused")]
    ParserFault,
    #[error("the ECG is not usable: {0}")]
    Model(#[from] EcgModelError),
}

/// True for the three ECG waveform storage SOP classes (12-lead, General, Ambulatory).
pub fn is_ecg_waveform_sop_class(sop_class_uid: &str) -> bool {
    matches!(
        sop_class_uid.trim_end_matches(['\0', ' ']),
        TWELVE_LEAD_ECG_SOP_CLASS | GENERAL_ECG_SOP_CLASS | AMBULATORY_ECG_SOP_CLASS
    )
}

/// Which ECG format the bytes hold, by content (never by file name): a DICOM Part 10 prefix, an XML
/// document whose root is `AnnotatedECG`, or an SCP-ECG record whose length field and section 0
/// header agree with the bytes.
pub fn sniff(bytes: &[u8]) -> Option<EcgSourceFormat> {
    if bytes.get(128..132) == Some(b"DICM") || bytes.starts_with(b"DICM") {
        return Some(EcgSourceFormat::DicomWaveform);
    }
    if aecg::looks_like_aecg(bytes) {
        return Some(EcgSourceFormat::Hl7Aecg);
    }
    if scp::looks_like_scp(bytes) {
        return Some(EcgSourceFormat::ScpEcg);
    }
    None
}

/// Parses an uploaded ECG of any supported format (sniffed by content).
pub fn parse_upload(bytes: &[u8]) -> Result<EcgRecord, EcgError> {
    match sniff(bytes).ok_or(EcgError::UnknownFormat)? {
        EcgSourceFormat::DicomWaveform => from_dicom_bytes(bytes),
        EcgSourceFormat::Hl7Aecg => aecg::parse(bytes),
        EcgSourceFormat::ScpEcg => scp::parse(bytes),
    }
}

/// Microvolts per unit for the voltage units ECG files use (UCUM spellings, plus the micro sign).
pub(crate) fn microvolts_per(unit: &str) -> Option<f64> {
    match unit.trim() {
        "uV" | "µV" | "μV" => Some(1.0),
        "mV" => Some(1_000.0),
        "V" => Some(1_000_000.0),
        "nV" => Some(0.001),
        _ => None,
    }
}

/// A global measurement the parsers recognise, whatever code system named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Measure {
    HeartRate,
    Rr,
    Pr,
    Qrs,
    Qt,
    Qtc,
    PAxis,
    QrsAxis,
    TAxis,
}

impl Measure {
    pub(crate) const ALL: [Measure; 9] = [
        Measure::HeartRate,
        Measure::Rr,
        Measure::Pr,
        Measure::Qrs,
        Measure::Qt,
        Measure::Qtc,
        Measure::PAxis,
        Measure::QrsAxis,
        Measure::TAxis,
    ];

    /// By code value: MDC reference ids (aECG), MDC numeric codes and LOINC (DICOM), SCP-ECG codes
    /// (DICOM files written by SCP-ECG-minded carts, e.g. the pydicom sample).
    pub(crate) fn from_code(code: &str) -> Option<Measure> {
        Some(match code.trim() {
            "MDC_ECG_HEART_RATE" | "MDC_ECG_VENT_RATE" | "2:16770" | "8867-4" | "76282-3"
            | "5.10.2.1-1" => Measure::HeartRate,
            "MDC_ECG_TIME_PD_RR" | "MDC_ECG_TIME_PD_RR_GL" | "2:16000" | "5.10.2.1-3" => {
                Measure::Rr
            }
            "MDC_ECG_TIME_PD_PR" | "MDC_ECG_TIME_PD_PR_GL" | "2:15872" | "8625-6" | "5.13.5-7" => {
                Measure::Pr
            }
            "MDC_ECG_TIME_PD_QRS"
            | "MDC_ECG_TIME_PD_QRS_GL"
            | "2:16156"
            | "8633-0"
            | "5.13.5-9" => Measure::Qrs,
            "MDC_ECG_TIME_PD_QT" | "MDC_ECG_TIME_PD_QT_GL" | "2:16160" | "8634-8" | "5.13.5-11" => {
                Measure::Qt
            }
            "MDC_ECG_TIME_PD_QTc"
            | "MDC_ECG_TIME_PD_QTC"
            | "MDC_ECG_TIME_PD_QTc_GL"
            | "8636-3"
            | "5.10.2.5-5" => Measure::Qtc,
            "MDC_ECG_ANGLE_P_FRONT" | "MDC_ECG_ANGLE_P_FRONT_GL" | "8626-4" | "5.10.3-11" => {
                Measure::PAxis
            }
            "MDC_ECG_ANGLE_QRS_FRONT" | "MDC_ECG_ANGLE_QRS_FRONT_GL" | "8632-2" | "5.10.3-13" => {
                Measure::QrsAxis
            }
            "MDC_ECG_ANGLE_T_FRONT" | "MDC_ECG_ANGLE_T_FRONT_GL" | "8638-1" | "5.10.3-15" => {
                Measure::TAxis
            }
            _ => return None,
        })
    }

    /// By code meaning, for files whose codes are vendor-private but whose meanings are plain.
    pub(crate) fn from_meaning(meaning: &str) -> Option<Measure> {
        let m = meaning.trim().to_ascii_lowercase();
        Some(match m.as_str() {
            "heart rate" | "ventricular rate" | "ventricular heart rate" => Measure::HeartRate,
            "rr interval" => Measure::Rr,
            "pr interval" => Measure::Pr,
            "qrs duration" => Measure::Qrs,
            "qt interval" => Measure::Qt,
            "qtc interval" => Measure::Qtc,
            "p axis" => Measure::PAxis,
            "qrs axis" => Measure::QrsAxis,
            "t axis" => Measure::TAxis,
            _ => return None,
        })
    }

    pub(crate) fn slot(self, m: &mut GlobalMeasurements) -> &mut Option<f64> {
        match self {
            Measure::HeartRate => &mut m.heart_rate_bpm,
            Measure::Rr => &mut m.rr_ms,
            Measure::Pr => &mut m.pr_ms,
            Measure::Qrs => &mut m.qrs_ms,
            Measure::Qt => &mut m.qt_ms,
            Measure::Qtc => &mut m.qtc_ms,
            Measure::PAxis => &mut m.p_axis_deg,
            Measure::QrsAxis => &mut m.qrs_axis_deg,
            Measure::TAxis => &mut m.t_axis_deg,
        }
    }

    pub(crate) fn get(self, m: &GlobalMeasurements) -> Option<f64> {
        let mut copy = m.clone();
        *self.slot(&mut copy)
    }

    /// The value in the model's unit (ms, degrees, beats per minute) from a value in `unit`;
    /// `None` when the unit does not fit the measurement.
    pub(crate) fn normalise(self, value: f64, unit: &str) -> Option<f64> {
        let unit = unit.trim();
        match self {
            Measure::HeartRate => match unit {
                "bpm" | "/min" | "1/min" | "{beats}/min" | "{beat}/min" | "beats/min" => {
                    Some(value)
                }
                _ => None,
            },
            Measure::PAxis | Measure::QrsAxis | Measure::TAxis => match unit {
                "deg" | "°" | "degrees" => Some(value),
                _ => None,
            },
            _ => match unit {
                "ms" => Some(value),
                "s" => Some(value * 1000.0),
                "us" | "µs" => Some(value / 1000.0),
                _ => None,
            },
        }
    }

    pub(crate) fn expected_units(self) -> &'static str {
        match self {
            Measure::HeartRate => "bpm or /min",
            Measure::PAxis | Measure::QrsAxis | Measure::TAxis => "deg",
            _ => "ms or s",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Measure::HeartRate => "heart rate",
            Measure::Rr => "RR interval",
            Measure::Pr => "PR interval",
            Measure::Qrs => "QRS duration",
            Measure::Qt => "QT interval",
            Measure::Qtc => "QTc interval",
            Measure::PAxis => "P axis",
            Measure::QrsAxis => "QRS axis",
            Measure::TAxis => "T axis",
        }
    }
}

/// Runs a parser so that a panic deep in a dependency becomes a refusal instead of taking the
/// request (or the hub) down; our own code does not panic, the fuzz tests check that.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, EcgError>) -> Result<T, EcgError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(Err(EcgError::ParserFault))
}

#[cfg(test)]
mod tests;
