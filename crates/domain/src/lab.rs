//! Lab panels (检验): the one typed model every lab input (HL7 v2 ORU^R01, FHIR R4 DiagnosticReport +
//! Observations) normalises into. A panel is one ordered service (HL7 OBR group, FHIR DiagnosticReport)
//! with its results (HL7 OBX, FHIR Observation).
//!
//! Choices:
//! - Codes keep the system they came with (`"LN"`, `"L"`, `"99LIS"` from HL7; `"http://loinc.org"` from
//!   FHIR). The LOINC code, when the sender states one, is also lifted into `LabResult::loinc`; mapping
//!   local codes to LOINC through a table is done later, not here.
//! - Numbers keep their decimal text as sent (`"6.80"`) beside the parsed `f64`, so precision survives a
//!   round trip to FHIR and to a printed report.
//! - Statuses are a small set both HL7 and FHIR map onto (documented at each variant); FHIR `amended`
//!   and HL7 `C` both become `Corrected`, the one thing a corrections workflow needs to know.
//! - Patient demographics sit in `LabPatient`, whose `Debug` is redacted.

use std::fmt;

use crate::LocalPatientId;
use crate::ecg::LocalDateTime;
use crate::time::UnixMillis;

/// A lab time: the local date and time as the lab sent it, with its UTC offset when the sender gave one
/// (HL7 TS `20261123081500+0800`, FHIR dateTime `2026-11-23T08:15:00+08:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LabTime {
    pub local: LocalDateTime,
    /// Minutes east of UTC (`+0800` is 480). `None` when the sender gave no offset.
    pub utc_offset_minutes: Option<i16>,
}

impl LabTime {
    pub fn new(local: LocalDateTime, utc_offset_minutes: Option<i16>) -> Self {
        LabTime {
            local,
            utc_offset_minutes,
        }
    }

    /// The instant, using the sender's offset, or `default_offset_minutes` (the alliance's zone,
    /// e.g. 480 for China Standard Time) when the sender gave none.
    pub fn to_unix_millis(&self, default_offset_minutes: i16) -> UnixMillis {
        let l = &self.local;
        let days = days_from_civil(i64::from(l.year), i64::from(l.month), i64::from(l.day));
        let secs = days * 86_400
            + i64::from(l.hour) * 3_600
            + i64::from(l.minute) * 60
            + i64::from(l.second)
            - i64::from(self.utc_offset_minutes.unwrap_or(default_offset_minutes)) * 60;
        UnixMillis(secs * 1_000)
    }

    /// HL7 TS form: `YYYYMMDDHHMMSS` plus `+ZZZZ` when the offset is known.
    pub fn to_hl7(&self) -> String {
        let l = &self.local;
        let mut s = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            l.year, l.month, l.day, l.hour, l.minute, l.second
        );
        if let Some(off) = self.utc_offset_minutes {
            let sign = if off < 0 { '-' } else { '+' };
            let a = off.unsigned_abs();
            s.push_str(&format!("{sign}{:02}{:02}", a / 60, a % 60));
        }
        s
    }

    /// The inverse of [`LabTime::to_hl7`]: `YYYYMMDDHHMMSS` and an optional `+ZZZZ`/`-ZZZZ`. `None` for
    /// anything else (the catalog stores lab times in this form).
    pub fn parse_hl7(s: &str) -> Option<Self> {
        let digits = s.get(..14)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let local = LocalDateTime::parse_compact(digits)?;
        let utc_offset_minutes = match s.get(14..)? {
            "" => None,
            zone => {
                let sign = match zone.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let hhmm = zone.get(1..)?;
                if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let h: i16 = hhmm.get(..2)?.parse().ok()?;
                let m: i16 = hhmm.get(2..)?.parse().ok()?;
                if h > 23 || m > 59 {
                    return None;
                }
                Some(sign * (h * 60 + m))
            }
        };
        Some(LabTime::new(local, utc_offset_minutes))
    }

    /// FHIR dateTime form: `YYYY-MM-DDTHH:MM:SS` plus `+hh:mm` when the offset is known.
    pub fn to_fhir(&self) -> String {
        let mut s = self.local.to_string();
        if let Some(off) = self.utc_offset_minutes {
            let sign = if off < 0 { '-' } else { '+' };
            let a = off.unsigned_abs();
            s.push_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60));
        }
        s
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil` algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A code with its display text and coding system, as one HL7 CE/CWE/CNE triple or one FHIR Coding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CodedValue {
    pub code: String,
    pub display: Option<String>,
    /// As sent: HL7 table 0396 names (`LN` LOINC, `L` local, `99zzz` site-defined, `UCUM`) or a FHIR
    /// system URI (`http://loinc.org`).
    pub system: Option<String>,
}

/// The LOINC system as HL7 v2 names it (table 0396).
pub const LOINC_V2: &str = "LN";
/// The LOINC system as FHIR names it.
pub const LOINC_URI: &str = "http://loinc.org";
/// UCUM as HL7 v2 names it.
pub const UCUM_V2: &str = "UCUM";
/// UCUM as FHIR names it.
pub const UCUM_URI: &str = "http://unitsofmeasure.org";

impl CodedValue {
    pub fn new(code: impl Into<String>, display: Option<&str>, system: Option<&str>) -> Self {
        CodedValue {
            code: code.into(),
            display: display.map(str::to_string),
            system: system.map(str::to_string),
        }
    }

    /// Whether the system is LOINC (`LN` or `http://loinc.org`).
    pub fn is_loinc(&self) -> bool {
        matches!(self.system.as_deref(), Some(LOINC_V2 | LOINC_URI))
    }

    /// Whether the system is UCUM (`UCUM` or `http://unitsofmeasure.org`).
    pub fn is_ucum(&self) -> bool {
        matches!(self.system.as_deref(), Some(UCUM_V2 | UCUM_URI))
    }

    /// The display text, or the code when there is none.
    pub fn label(&self) -> &str {
        self.display.as_deref().unwrap_or(&self.code)
    }
}

/// A patient identifier as the lab sent it: HL7 PID-3 (CX: ID, CX.4 assigning authority, CX.5 identifier
/// type code) or FHIR `Patient.identifier` (value, system, type). `Debug` masks the ID.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PatientIdentifier {
    pub id: String,
    /// HL7 CX.4 (HD namespace ID, else universal ID); FHIR `identifier.system`.
    pub assigning_authority: Option<String>,
    /// HL7 CX.5 (table 0203: `MR`, `PI`, `NI`…); FHIR `identifier.type.coding[0].code`.
    pub id_type: Option<String>,
}

impl PatientIdentifier {
    /// The hub's local patient ID: the assigning authority as issuer, or `default_issuer` (the sending
    /// site's configured issuer) when the lab named none.
    pub fn local_id(&self, default_issuer: &str) -> LocalPatientId {
        LocalPatientId {
            issuer: self
                .assigning_authority
                .clone()
                .unwrap_or_else(|| default_issuer.to_string()),
            id: self.id.clone(),
        }
    }
}

impl fmt::Debug for PatientIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientIdentifier")
            .field("id", &crate::mask_identifier(&self.id))
            .field("assigning_authority", &self.assigning_authority)
            .field("id_type", &self.id_type)
            .finish()
    }
}

/// Administrative sex: HL7 table 0001, FHIR `AdministrativeGender`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sex {
    Male,
    Female,
    Other,
    Unknown,
}

impl Sex {
    /// `M`, `F`, `O`, `U` (as `EcgSubject` and DICOM spell them).
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
            Sex::Other => "O",
            Sex::Unknown => "U",
        }
    }

    /// HL7 table 0001 (`M F O U A N`; `A` ambiguous and `N` not applicable count as `Other`/`Unknown`)
    /// and the Chinese words 男/女/未知 some LIS send.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "M" | "m" | "男" => Sex::Male,
            "F" | "f" | "女" => Sex::Female,
            "O" | "o" | "A" => Sex::Other,
            "U" | "u" | "N" | "未知" => Sex::Unknown,
            _ => return None,
        })
    }

    /// FHIR `AdministrativeGender`.
    pub fn from_fhir(code: &str) -> Option<Self> {
        Some(match code {
            "male" => Sex::Male,
            "female" => Sex::Female,
            "other" => Sex::Other,
            "unknown" => Sex::Unknown,
            _ => return None,
        })
    }

    pub fn fhir_code(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }
}

/// Who the panel is about, as the lab sent it. `Debug` is redacted: identifiers masked, name hidden.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LabPatient {
    /// HL7 PID-3 repetitions; FHIR `Patient.identifier`. Never empty in a parsed panel.
    pub identifiers: Vec<PatientIdentifier>,
    /// `Family^Given` (DICOM PN style); a name sent whole (Chinese names usually are) is just the family
    /// part. HL7 PID-5; FHIR `Patient.name[0]` (family + given, else text).
    pub name: Option<String>,
    /// `YYYYMMDD` (or `YYYYMM` / `YYYY` when the sender gave less). HL7 PID-7; FHIR `birthDate`.
    pub birth_date: Option<String>,
    /// HL7 PID-8; FHIR `gender`.
    pub sex: Option<Sex>,
}

impl fmt::Debug for LabPatient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabPatient")
            .field("identifiers", &self.identifiers)
            .field("name", &self.name.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// A panel's status: HL7 OBR-25 (table 0123) and FHIR `DiagnosticReport.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PanelStatus {
    /// HL7 `O` order received, `I` in process, `S` scheduled; FHIR `registered`.
    Registered,
    /// HL7 `A` some results available; FHIR `partial`.
    Partial,
    /// HL7 `P` preliminary, `R` results stored, not verified; FHIR `preliminary`.
    Preliminary,
    /// HL7 `F`; FHIR `final`.
    Final,
    /// HL7 `C`; FHIR `corrected`, `amended`, `appended`.
    Corrected,
    /// HL7 `X` no results, order cancelled; FHIR `cancelled`.
    Cancelled,
    /// FHIR `entered-in-error` (no HL7 v2 OBR-25 code).
    EnteredInError,
}

impl PanelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PanelStatus::Registered => "registered",
            PanelStatus::Partial => "partial",
            PanelStatus::Preliminary => "preliminary",
            PanelStatus::Final => "final",
            PanelStatus::Corrected => "corrected",
            PanelStatus::Cancelled => "cancelled",
            PanelStatus::EnteredInError => "entered-in-error",
        }
    }

    /// The inverse of `as_str`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "registered" => PanelStatus::Registered,
            "partial" => PanelStatus::Partial,
            "preliminary" => PanelStatus::Preliminary,
            "final" => PanelStatus::Final,
            "corrected" => PanelStatus::Corrected,
            "cancelled" => PanelStatus::Cancelled,
            "entered-in-error" => PanelStatus::EnteredInError,
            _ => return None,
        })
    }

    /// HL7 v2 OBR-25 code (table 0123). `Y`/`Z` (no order / no patient record) are not panel states.
    pub fn from_hl7(code: &str) -> Option<Self> {
        Some(match code.trim() {
            "O" | "I" | "S" => PanelStatus::Registered,
            "A" => PanelStatus::Partial,
            "P" | "R" => PanelStatus::Preliminary,
            "F" => PanelStatus::Final,
            "C" => PanelStatus::Corrected,
            "X" => PanelStatus::Cancelled,
            _ => return None,
        })
    }

    /// The OBR-25 code this status is sent as (`EnteredInError` has none in v2 and goes out as `X`).
    pub fn hl7_code(self) -> &'static str {
        match self {
            PanelStatus::Registered => "I",
            PanelStatus::Partial => "A",
            PanelStatus::Preliminary => "P",
            PanelStatus::Final => "F",
            PanelStatus::Corrected => "C",
            PanelStatus::Cancelled | PanelStatus::EnteredInError => "X",
        }
    }

    /// FHIR `DiagnosticReport.status` (R4 value set `diagnostic-report-status`).
    pub fn from_fhir(code: &str) -> Option<Self> {
        Some(match code {
            "amended" | "appended" => PanelStatus::Corrected,
            other => return PanelStatus::parse(other),
        })
    }

    /// The FHIR code: the same words as `as_str`.
    pub fn fhir_code(self) -> &'static str {
        self.as_str()
    }
}

/// A result's status: HL7 OBX-11 (table 0085) and FHIR `Observation.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResultStatus {
    /// HL7 `I` specimen in lab, `O` order detail only; FHIR `registered`.
    Registered,
    /// HL7 `P` preliminary, `R` entered not verified, `S` partial; FHIR `preliminary`.
    Preliminary,
    /// HL7 `F` final, `U` changed to final without retransmitting; FHIR `final`.
    Final,
    /// HL7 `C` correction of a final result; FHIR `corrected`, `amended`. Supersedes the earlier result
    /// with the same code in the same order.
    Corrected,
    /// HL7 `X` result cannot be obtained, `N` not asked; FHIR `cancelled`.
    Cancelled,
    /// HL7 `D` delete the prior result, `W` post original as wrong; FHIR `entered-in-error`.
    EnteredInError,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Registered => "registered",
            ResultStatus::Preliminary => "preliminary",
            ResultStatus::Final => "final",
            ResultStatus::Corrected => "corrected",
            ResultStatus::Cancelled => "cancelled",
            ResultStatus::EnteredInError => "entered-in-error",
        }
    }

    /// The inverse of `as_str`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "registered" => ResultStatus::Registered,
            "preliminary" => ResultStatus::Preliminary,
            "final" => ResultStatus::Final,
            "corrected" => ResultStatus::Corrected,
            "cancelled" => ResultStatus::Cancelled,
            "entered-in-error" => ResultStatus::EnteredInError,
            _ => return None,
        })
    }

    /// HL7 v2 OBX-11 code (table 0085).
    pub fn from_hl7(code: &str) -> Option<Self> {
        Some(match code.trim() {
            "I" | "O" => ResultStatus::Registered,
            "P" | "R" | "S" => ResultStatus::Preliminary,
            "F" | "U" => ResultStatus::Final,
            "C" => ResultStatus::Corrected,
            "X" | "N" => ResultStatus::Cancelled,
            "D" | "W" => ResultStatus::EnteredInError,
            _ => return None,
        })
    }

    /// The OBX-11 code this status is sent as.
    pub fn hl7_code(self) -> &'static str {
        match self {
            ResultStatus::Registered => "I",
            ResultStatus::Preliminary => "P",
            ResultStatus::Final => "F",
            ResultStatus::Corrected => "C",
            ResultStatus::Cancelled => "X",
            ResultStatus::EnteredInError => "W",
        }
    }

    /// FHIR `Observation.status` (R4 value set `observation-status`; `unknown` is not accepted).
    pub fn from_fhir(code: &str) -> Option<Self> {
        Some(match code {
            "amended" => ResultStatus::Corrected,
            other => return ResultStatus::parse(other),
        })
    }

    pub fn fhir_code(self) -> &'static str {
        self.as_str()
    }
}

/// An abnormal flag: HL7 OBX-8 (table 0078) and FHIR `Observation.interpretation`
/// (v3-ObservationInterpretation, whose codes for these are the same).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AbnormalFlag {
    /// `L` below the low normal.
    Low,
    /// `H` above the high normal.
    High,
    /// `LL` below the lower panic limit (危急值).
    CriticalLow,
    /// `HH` above the upper panic limit (危急值).
    CriticalHigh,
    /// `N` normal.
    Normal,
    /// `A` abnormal (non-numeric results).
    Abnormal,
    /// `AA` very abnormal (危急值 for non-numeric results).
    CriticalAbnormal,
    /// `<` below the absolute low-off instrument scale.
    BelowScale,
    /// `>` above the absolute high-off instrument scale.
    AboveScale,
    /// Any other code, kept as sent (`POS`, `NEG`, `S`, `R`, `I`, `W`, `HU`, …).
    Other(String),
}

impl AbnormalFlag {
    /// A flag from its code (case as sent; HL7 and FHIR codes are upper case). `None` for an empty code.
    pub fn from_code(code: &str) -> Option<Self> {
        let code = code.trim();
        Some(match code {
            "" => return None,
            "L" => AbnormalFlag::Low,
            "H" => AbnormalFlag::High,
            "LL" => AbnormalFlag::CriticalLow,
            "HH" => AbnormalFlag::CriticalHigh,
            "N" => AbnormalFlag::Normal,
            "A" => AbnormalFlag::Abnormal,
            "AA" => AbnormalFlag::CriticalAbnormal,
            "<" => AbnormalFlag::BelowScale,
            ">" => AbnormalFlag::AboveScale,
            other => AbnormalFlag::Other(other.to_string()),
        })
    }

    /// The code (the same in HL7 table 0078 and FHIR v3-ObservationInterpretation).
    pub fn code(&self) -> &str {
        match self {
            AbnormalFlag::Low => "L",
            AbnormalFlag::High => "H",
            AbnormalFlag::CriticalLow => "LL",
            AbnormalFlag::CriticalHigh => "HH",
            AbnormalFlag::Normal => "N",
            AbnormalFlag::Abnormal => "A",
            AbnormalFlag::CriticalAbnormal => "AA",
            AbnormalFlag::BelowScale => "<",
            AbnormalFlag::AboveScale => ">",
            AbnormalFlag::Other(code) => code,
        }
    }

    /// Whether the lab itself flagged a panic value (`LL`, `HH`, `AA`). The hub's own critical-value
    /// list is applied separately; this is what the lab said.
    pub fn is_critical(&self) -> bool {
        matches!(
            self,
            AbnormalFlag::CriticalLow | AbnormalFlag::CriticalHigh | AbnormalFlag::CriticalAbnormal
        )
    }

    /// Whether the flag says "outside normal" (everything known except `N`; `Other` codes are not
    /// judged).
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, AbnormalFlag::Normal | AbnormalFlag::Other(_))
    }
}

/// `<`, `<=`, `>`, `>=` before a number (HL7 SN.1, FHIR `Quantity.comparator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Comparator {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparator {
    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::Lt => "<",
            Comparator::Le => "<=",
            Comparator::Gt => ">",
            Comparator::Ge => ">=",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "<" => Comparator::Lt,
            "<=" | "≤" => Comparator::Le,
            ">" => Comparator::Gt,
            ">=" | "≥" => Comparator::Ge,
            _ => return None,
        })
    }
}

/// A measured number with its unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    /// Always finite.
    pub value: f64,
    /// The decimal as sent (`"6.80"`), without sign padding or comparator.
    pub decimal: String,
    pub comparator: Option<Comparator>,
    /// HL7 OBX-6 (CE: code, text, system); FHIR `Quantity.code`/`unit`/`system`. The code is the UCUM
    /// code when the sender gave one, else the unit text.
    pub unit: Option<CodedValue>,
}

impl Quantity {
    /// The unit code (`mmol/L`), if any.
    pub fn unit_code(&self) -> Option<&str> {
        self.unit.as_ref().map(|u| u.code.as_str())
    }
}

/// A result value: HL7 OBX-2/OBX-5; FHIR `Observation.value[x]`.
#[derive(Clone, Debug, PartialEq)]
pub enum LabValue {
    /// HL7 `NM`, `SN` with one number; FHIR `valueQuantity`, `valueInteger`.
    Numeric(Quantity),
    /// HL7 `CE`, `CWE`, `CNE`; FHIR `valueCodeableConcept`.
    Coded(CodedValue),
    /// HL7 `ST`, `TX`, `FT` (repetitions joined by new lines), `SN` ratios and ranges (`1:128`, `2-5`),
    /// dates and times as sent; FHIR `valueString` and the other scalar types as text.
    Text(String),
    /// No value: a pending or cancelled result (empty OBX-5; FHIR `dataAbsentReason`).
    Absent,
}

/// A reference range: HL7 OBX-7 (`3.5-5.5`, `<5`, `>10`, free text); FHIR `referenceRange[0]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceRange {
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// The range as sent (HL7) or `referenceRange.text` (FHIR).
    pub text: Option<String>,
}

/// One result (HL7 OBX; FHIR Observation).
#[derive(Clone, Debug, PartialEq)]
pub struct LabResult {
    /// HL7 OBX-1; FHIR: position in `DiagnosticReport.result` (from 1).
    pub set_id: Option<u32>,
    /// The analyte as the lab codes it: HL7 OBX-3 first triple; FHIR `code.coding` (the first non-LOINC
    /// coding, else the first).
    pub code: CodedValue,
    /// The other codings sent for the analyte (HL7 OBX-3 alternate triple; other FHIR codings).
    pub other_codes: Vec<CodedValue>,
    /// The LOINC code, when the sender stated one (system `LN` / `http://loinc.org`).
    pub loinc: Option<String>,
    pub value: LabValue,
    pub reference_range: Option<ReferenceRange>,
    /// HL7 OBX-8 (repeating); FHIR `interpretation`.
    pub abnormal_flags: Vec<AbnormalFlag>,
    /// HL7 OBX-11; FHIR `Observation.status`.
    pub status: ResultStatus,
    /// HL7 OBX-14 (else OBX-19 analysis time); FHIR `effective[x]`.
    pub observed_at: Option<LabTime>,
}

impl LabResult {
    /// The number, for numeric results.
    pub fn numeric(&self) -> Option<f64> {
        match &self.value {
            LabValue::Numeric(q) => Some(q.value),
            _ => None,
        }
    }

    /// The numeric value with its unit, for numeric results.
    pub fn quantity(&self) -> Option<&Quantity> {
        match &self.value {
            LabValue::Numeric(q) => Some(q),
            _ => None,
        }
    }

    /// Whether the lab flagged this result as a panic value (`LL`, `HH`, `AA`).
    pub fn lab_flagged_critical(&self) -> bool {
        self.abnormal_flags.iter().any(AbnormalFlag::is_critical)
    }
}

/// Where a panel came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabSource {
    /// HL7 v2 ORU^R01 (over MLLP or HTTP).
    Hl7v2,
    /// FHIR R4 Bundle or DiagnosticReport.
    FhirR4,
}

impl LabSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LabSource::Hl7v2 => "hl7v2",
            LabSource::FhirR4 => "fhir-r4",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hl7v2" => LabSource::Hl7v2,
            "fhir-r4" => LabSource::FhirR4,
            _ => return None,
        })
    }
}

/// Where a stored panel is in the hub's own workflow (not the lab's status): waiting for a lab
/// physician's sign-off (审核), or released to the alliance, by a person or by an auto-release rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabPanelState {
    /// Stored before review existed (catalog version 9); treated like `AwaitingReview`.
    Received,
    /// Waiting for a lab physician of the review pool to sign it off.
    AwaitingReview,
    /// Signed off by a lab physician: published.
    Released,
    /// Released without review by a configured rule: published.
    AutoReleased,
}

impl LabPanelState {
    /// The states in which a panel is published, as the catalog spells them.
    pub const PUBLISHED: [LabPanelState; 2] =
        [LabPanelState::Released, LabPanelState::AutoReleased];

    pub fn as_str(self) -> &'static str {
        match self {
            LabPanelState::Received => "received",
            LabPanelState::AwaitingReview => "awaiting_review",
            LabPanelState::Released => "released",
            LabPanelState::AutoReleased => "auto_released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "received" => LabPanelState::Received,
            "awaiting_review" => LabPanelState::AwaitingReview,
            "released" => LabPanelState::Released,
            "auto_released" => LabPanelState::AutoReleased,
            _ => return None,
        })
    }

    /// Visible to the other member hospitals.
    pub fn is_published(self) -> bool {
        matches!(self, LabPanelState::Released | LabPanelState::AutoReleased)
    }
}

/// Where a critical-value case (危急值) is: waiting for an acknowledgement, escalated for lack of one,
/// or acknowledged by a named person who read the value back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CriticalState {
    Open,
    Escalated,
    Acknowledged,
}

impl CriticalState {
    pub fn as_str(self) -> &'static str {
        match self {
            CriticalState::Open => "open",
            CriticalState::Escalated => "escalated",
            CriticalState::Acknowledged => "acknowledged",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => CriticalState::Open,
            "escalated" => CriticalState::Escalated,
            "acknowledged" => CriticalState::Acknowledged,
            _ => return None,
        })
    }
}

/// A person named on an order (HL7 XCN: OBR-16 ordering provider).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Practitioner {
    pub id: Option<String>,
    /// `Family^Given` or the name sent whole.
    pub name: Option<String>,
}

/// One lab panel: an ordered service with its results (HL7 OBR group; FHIR DiagnosticReport).
#[derive(Clone, Debug, PartialEq)]
pub struct LabPanel {
    pub source: LabSource,
    /// HL7 MSH-12 version (`2.5.1`), or `R4`.
    pub version: String,
    /// HL7 MSH-10 message control ID; FHIR Bundle `id` (else `identifier.value`), or the
    /// DiagnosticReport `id` when it came alone. Panels of one message share it.
    pub message_id: String,
    pub patient: LabPatient,
    /// The site that ordered the test: HL7 ORC-21 ordering facility (XON.10 identifier, else XON.1
    /// name), else ORC-17 entering organisation; FHIR: the requester of a `basedOn` ServiceRequest
    /// in the bundle (Organization identifier/name or reference display).
    pub ordering_site: Option<String>,
    /// HL7 OBR-16; FHIR: not carried.
    pub ordering_provider: Option<Practitioner>,
    /// The lab that did the test: HL7 MSH-4 sending facility (HD namespace ID, else universal ID);
    /// FHIR `DiagnosticReport.performer[0]` (Organization identifier/name or reference display).
    pub performing_lab: Option<String>,
    /// HL7 OBR-2 (else ORC-2) entity ID; FHIR `basedOn` ServiceRequest identifier.
    pub placer_order_number: Option<String>,
    /// HL7 OBR-3 (else ORC-3) entity ID; FHIR `DiagnosticReport.identifier[0].value`.
    pub filler_order_number: Option<String>,
    /// HL7 OBR-4; FHIR `DiagnosticReport.code`.
    pub service: CodedValue,
    /// HL7 SPM-4 (v2.5) else OBR-15.1; FHIR `Specimen.type`.
    pub specimen: Option<CodedValue>,
    /// Specimen collection: HL7 SPM-17.1 else OBR-7; FHIR `Specimen.collection.collected[x]`, else
    /// `DiagnosticReport.effective[x]`.
    pub collected_at: Option<LabTime>,
    /// Specimen received in the lab: HL7 SPM-18 else OBR-14; FHIR `Specimen.receivedTime`.
    pub received_at: Option<LabTime>,
    /// Results reported / status changed: HL7 OBR-22; FHIR `DiagnosticReport.issued`.
    pub reported_at: Option<LabTime>,
    pub status: PanelStatus,
    pub results: Vec<LabResult>,
    /// What the parser tolerated or left out, in plain words (an unknown sex code taken as unknown,
    /// an ED histogram observation not kept…). Empty for a clean message.
    pub notes: Vec<String>,
}

/// Why a panel breaks the model's invariants.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabModelError {
    #[error("the panel has no message ID")]
    NoMessageId,
    #[error("the panel has no patient identifier")]
    NoPatientIdentifier,
    #[error("a patient identifier is empty")]
    EmptyPatientIdentifier,
    #[error("the panel has no service code")]
    NoServiceCode,
    #[error("result {index} has no code")]
    NoResultCode { index: usize },
    #[error("result {index} ({code}) has a value that is not a finite number")]
    NotFinite { index: usize, code: String },
}

impl LabPanel {
    /// Checks the invariants every parser establishes before it returns a panel.
    pub fn validate(&self) -> Result<(), LabModelError> {
        if self.message_id.trim().is_empty() {
            return Err(LabModelError::NoMessageId);
        }
        if self.patient.identifiers.is_empty() {
            return Err(LabModelError::NoPatientIdentifier);
        }
        if self
            .patient
            .identifiers
            .iter()
            .any(|p| p.id.trim().is_empty())
        {
            return Err(LabModelError::EmptyPatientIdentifier);
        }
        if self.service.code.trim().is_empty() {
            return Err(LabModelError::NoServiceCode);
        }
        for (index, r) in self.results.iter().enumerate() {
            if r.code.code.trim().is_empty() {
                return Err(LabModelError::NoResultCode { index });
            }
            let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
            let range_ok = r
                .reference_range
                .as_ref()
                .is_none_or(|rr| finite(rr.low) && finite(rr.high));
            if !finite(r.numeric()) || !range_ok {
                return Err(LabModelError::NotFinite {
                    index,
                    code: r.code.code.clone(),
                });
            }
        }
        Ok(())
    }

    /// The results the lab flagged as panic values.
    pub fn lab_flagged_critical(&self) -> impl Iterator<Item = &LabResult> {
        self.results.iter().filter(|r| r.lab_flagged_critical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_their_words_and_codes() {
        for s in [
            PanelStatus::Registered,
            PanelStatus::Partial,
            PanelStatus::Preliminary,
            PanelStatus::Final,
            PanelStatus::Corrected,
            PanelStatus::Cancelled,
            PanelStatus::EnteredInError,
        ] {
            assert_eq!(PanelStatus::parse(s.as_str()), Some(s));
            assert_eq!(PanelStatus::from_fhir(s.fhir_code()), Some(s));
            if s != PanelStatus::EnteredInError {
                assert_eq!(PanelStatus::from_hl7(s.hl7_code()), Some(s));
            }
        }
        for s in [
            ResultStatus::Registered,
            ResultStatus::Preliminary,
            ResultStatus::Final,
            ResultStatus::Corrected,
            ResultStatus::Cancelled,
            ResultStatus::EnteredInError,
        ] {
            assert_eq!(ResultStatus::parse(s.as_str()), Some(s));
            assert_eq!(ResultStatus::from_hl7(s.hl7_code()), Some(s));
            assert_eq!(ResultStatus::from_fhir(s.fhir_code()), Some(s));
        }
        assert_eq!(ResultStatus::from_hl7("U"), Some(ResultStatus::Final));
        assert_eq!(
            ResultStatus::from_fhir("amended"),
            Some(ResultStatus::Corrected)
        );
        assert_eq!(ResultStatus::from_hl7("Q"), None);
        assert_eq!(ResultStatus::from_fhir("unknown"), None);
        assert_eq!(PanelStatus::from_hl7("Y"), None);
        assert_eq!(
            PanelStatus::from_fhir("appended"),
            Some(PanelStatus::Corrected)
        );
    }

    #[test]
    fn flags_know_what_is_critical() {
        let flags: Vec<_> = ["L", "H", "LL", "HH", "N", "A", "AA", "<", ">", "POS"]
            .iter()
            .filter_map(|c| AbnormalFlag::from_code(c))
            .collect();
        let codes: Vec<&str> = flags.iter().map(AbnormalFlag::code).collect();
        assert_eq!(
            codes,
            ["L", "H", "LL", "HH", "N", "A", "AA", "<", ">", "POS"]
        );
        let critical: Vec<&str> = flags
            .iter()
            .filter(|f| f.is_critical())
            .map(AbnormalFlag::code)
            .collect();
        assert_eq!(critical, ["LL", "HH", "AA"]);
        assert!(!AbnormalFlag::Normal.is_abnormal());
        assert!(AbnormalFlag::Low.is_abnormal());
        assert_eq!(AbnormalFlag::from_code(" "), None);
    }

    #[test]
    fn lab_time_converts_with_its_offset_or_the_default() {
        let local = LocalDateTime::new(2026, 11, 23, 8, 15, 0).unwrap();
        // 2026-11-23T00:15:00Z = 1_795_392_900 s.
        let with = LabTime::new(local, Some(480));
        assert_eq!(with.to_unix_millis(0), UnixMillis(1_795_392_900_000));
        let without = LabTime::new(local, None);
        assert_eq!(without.to_unix_millis(480), UnixMillis(1_795_392_900_000));
        assert_eq!(without.to_unix_millis(0), UnixMillis(1_795_421_700_000));
        let epoch = LabTime::new(LocalDateTime::new(1970, 1, 1, 0, 0, 0).unwrap(), Some(0));
        assert_eq!(epoch.to_unix_millis(480), UnixMillis(0));
        let leap = LabTime::new(LocalDateTime::new(2024, 2, 29, 12, 0, 0).unwrap(), Some(0));
        assert_eq!(leap.to_unix_millis(0), UnixMillis(1_709_208_000_000));
        assert_eq!(with.to_hl7(), "20261123081500+0800");
        assert_eq!(with.to_fhir(), "2026-11-23T08:15:00+08:00");
        let west = LabTime::new(local, Some(-330));
        assert_eq!(west.to_hl7(), "20261123081500-0530");
        assert_eq!(without.to_fhir(), "2026-11-23T08:15:00");
        for t in [with, without, west] {
            assert_eq!(LabTime::parse_hl7(&t.to_hl7()), Some(t));
        }
        for bad in [
            "",
            "2026112308150",
            "20261123081500+08",
            "20261123081500Z",
            "2026112308150x",
        ] {
            assert_eq!(LabTime::parse_hl7(bad), None, "{bad}");
        }
    }

    #[test]
    fn patient_debug_is_redacted() {
        let p = LabPatient {
            identifiers: vec![PatientIdentifier {
                id: "11010519491231002X".into(),
                assigning_authority: Some("HX".into()),
                id_type: Some("NI".into()),
            }],
            name: Some("张三丰".into()),
            birth_date: Some("19491231".into()),
            sex: Some(Sex::Male),
        };
        let debug = format!("{p:?}");
        assert!(!debug.contains("11010519491231002X"), "{debug}");
        assert!(!debug.contains("张三丰"), "{debug}");
        assert!(!debug.contains("19491231"), "{debug}");
        assert_eq!(p.identifiers[0].local_id("DEFAULT").issuer, "HX");
    }

    #[test]
    fn validate_refuses_what_a_parser_must_not_return() {
        let result = LabResult {
            set_id: Some(1),
            code: CodedValue::new("K", Some("钾"), Some("L")),
            other_codes: vec![],
            loinc: Some("2823-3".into()),
            value: LabValue::Numeric(Quantity {
                value: 6.8,
                decimal: "6.8".into(),
                comparator: None,
                unit: Some(CodedValue::new("mmol/L", None, Some("UCUM"))),
            }),
            reference_range: None,
            abnormal_flags: vec![AbnormalFlag::CriticalHigh],
            status: ResultStatus::Final,
            observed_at: None,
        };
        let mut panel = LabPanel {
            source: LabSource::Hl7v2,
            version: "2.5.1".into(),
            message_id: "MSG1".into(),
            patient: LabPatient {
                identifiers: vec![PatientIdentifier {
                    id: "P1".into(),
                    assigning_authority: None,
                    id_type: None,
                }],
                ..LabPatient::default()
            },
            ordering_site: None,
            ordering_provider: None,
            performing_lab: None,
            placer_order_number: None,
            filler_order_number: None,
            service: CodedValue::new("LYTES", None, None),
            specimen: None,
            collected_at: None,
            received_at: None,
            reported_at: None,
            status: PanelStatus::Final,
            results: vec![result],
            notes: vec![],
        };
        assert_eq!(panel.validate(), Ok(()));
        assert_eq!(panel.lab_flagged_critical().count(), 1);
        assert_eq!(panel.results[0].numeric(), Some(6.8));
        if let LabValue::Numeric(q) = &mut panel.results[0].value {
            q.value = f64::NAN;
        }
        assert!(matches!(
            panel.validate(),
            Err(LabModelError::NotFinite { index: 0, .. })
        ));
        panel.results.clear();
        panel.patient.identifiers.clear();
        assert_eq!(panel.validate(), Err(LabModelError::NoPatientIdentifier));
    }
}
