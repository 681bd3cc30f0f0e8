//! ORU^R01 (HL7 v2.3, 2.3.1, 2.4, 2.5, 2.5.1) → `LabPanel`s: one panel per OBR group, since one message
//! may carry several ordered services (a CBC and a CRP) and even several patients (one PID each).
//!
//! Segment order: `MSH [SFT] { PID [PD1 NTE NK1 PV1 PV2] { [ORC] OBR [NTE TQ1 CTD] { OBX [NTE] } [SPM
//! { OBX }] } }`. Segments the model does not use (NTE, PV1, Z-segments…) are skipped. OBX after an SPM
//! are specimen observations and are left out (noted), unless the OBR group has no result yet: some
//! LIS put SPM before the results.
//!
//! Leniencies, each noted in `LabPanel::notes` where something is lost: an NM value may carry a
//! comparator (`<0.01`, as SN would); an empty OBX-11 takes the OBR-25 status; an empty OBR-25 is
//! derived from the results; a PID-8 outside table 0001 leaves the sex unknown; ED and RP
//! observations (analyser histograms, attachments) are not kept.

use yilian_domain::ecg::LocalDateTime;
use yilian_domain::lab::{
    AbnormalFlag, CodedValue, Comparator, LOINC_V2, LabPanel, LabPatient, LabResult, LabSource,
    LabTime, LabValue, PanelStatus, PatientIdentifier, Practitioner, Quantity, ReferenceRange,
    ResultStatus, Sex,
};

use super::message::{Charset, Message, MessageHeader, Segment};
use super::{Hl7Error, Location};

/// The versions (MSH-12) accepted.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"];

/// A parsed ORU^R01: its header (for the ACK) and its panels, in message order (never empty).
#[derive(Clone, Debug, PartialEq)]
pub struct OruR01 {
    pub header: MessageHeader,
    pub panels: Vec<LabPanel>,
}

/// Parses an ORU^R01; a message without MSH-18 must be UTF-8 (or ASCII).
pub fn parse_oru_r01(bytes: &[u8]) -> Result<OruR01, Hl7Error> {
    parse_oru_r01_with(bytes, None)
}

/// Parses an ORU^R01; `fallback` decodes messages without MSH-18 that are not UTF-8 (a site whose LIS
/// sends GBK without saying so is configured with `Some(Charset::Gb18030)`).
pub fn parse_oru_r01_with(bytes: &[u8], fallback: Option<Charset>) -> Result<OruR01, Hl7Error> {
    let msg = Message::parse(bytes, fallback)?;
    let msh = msg.msh().ok_or(Hl7Error::NoMsh)?;
    let header = MessageHeader::from_message(&msg);
    check_message_type(msh)?;
    if header.version.is_empty() {
        return Err(Hl7Error::RequiredFieldMissing(Location::msh(12)));
    }
    if !SUPPORTED_VERSIONS.contains(&header.version.as_str()) {
        return Err(Hl7Error::UnsupportedVersion(header.version.clone()));
    }
    if header.control_id.is_empty() {
        return Err(Hl7Error::RequiredFieldMissing(Location::msh(10)));
    }
    let ctx = Context {
        message_id: header.control_id.clone(),
        version: header.version.clone(),
        performing_lab: header.sending_facility.display().map(str::to_string),
    };

    let mut patient: Option<LabPatient> = None;
    let mut patient_notes: Vec<String> = Vec::new();
    let mut pending_orc: Option<&Segment> = None;
    let mut panels: Vec<LabPanel> = Vec::new();
    // Per panel: whether OBR-25 was empty (the status is then derived from the results).
    let mut derived: Vec<bool> = Vec::new();
    let mut after_spm = false;
    for seg in msg.segments.iter().skip(1) {
        match seg.name.as_str() {
            "PID" => {
                patient_notes.clear();
                patient = Some(parse_pid(seg, &mut patient_notes)?);
                pending_orc = None;
            }
            "ORC" => pending_orc = Some(seg),
            "OBR" => {
                let Some(p) = patient.clone() else {
                    return Err(if msg.segments_named("PID").next().is_some() {
                        sequence(seg, "OBR before any PID: the patient is unknown")
                    } else {
                        Hl7Error::MissingSegment("PID")
                    });
                };
                let (mut panel, status_derived) = start_panel(seg, pending_orc.take(), p, &ctx)?;
                panel.notes.extend(patient_notes.iter().cloned());
                panels.push(panel);
                derived.push(status_derived);
                after_spm = false;
            }
            "OBX" => {
                let panel = panels
                    .last_mut()
                    .ok_or_else(|| sequence(seg, "OBX before any OBR"))?;
                if after_spm {
                    panel.notes.push(format!(
                        "OBX at segment {} follows SPM: a specimen observation, not kept",
                        seg.sequence
                    ));
                    continue;
                }
                let status_derived = derived.last().copied().unwrap_or(false);
                if let Some(r) = parse_obx(seg, panel, status_derived)? {
                    panel.results.push(r);
                }
            }
            "SPM" => {
                let panel = panels
                    .last_mut()
                    .ok_or_else(|| sequence(seg, "SPM before any OBR"))?;
                apply_spm(seg, panel)?;
                // An SPM before any result is the sender's order quirk: what follows are results.
                after_spm = !panel.results.is_empty();
            }
            _ => {}
        }
    }
    if panels.is_empty() {
        return Err(Hl7Error::MissingSegment(if patient.is_none() {
            "PID"
        } else {
            "OBR"
        }));
    }
    for (panel, status_derived) in panels.iter_mut().zip(derived) {
        if status_derived {
            derive_status(panel);
        }
    }
    Ok(OruR01 { header, panels })
}

struct Context {
    message_id: String,
    version: String,
    performing_lab: Option<String>,
}

fn sequence(seg: &Segment, reason: &'static str) -> Hl7Error {
    Hl7Error::SegmentSequence {
        segment: seg.name.clone(),
        sequence: seg.sequence,
        occurrence: seg.occurrence,
        reason,
    }
}

fn loc(seg: &Segment, field: usize) -> Location {
    Location::at(seg, field)
}

/// A value as quoted in an error: at most 40 characters.
fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(40).collect();
    if value.chars().count() > 40 {
        s.push('…');
    }
    s
}

fn check_message_type(msh: &Segment) -> Result<(), Hl7Error> {
    let rep = msh.repetitions(9).into_iter().next().unwrap_or_default();
    let ty = msh.component_text(rep, 1).unwrap_or_default();
    let event = msh.component_text(rep, 2).unwrap_or_default();
    let structure = msh.component_text(rep, 3).unwrap_or_default();
    if ty.is_empty() {
        return Err(Hl7Error::RequiredFieldMissing(Location::msh(9)));
    }
    if ty == "ORU" && event == "R01" && (structure.is_empty() || structure == "ORU_R01") {
        Ok(())
    } else {
        let mut shown_type = ty;
        for part in [event, structure].into_iter().filter(|p| !p.is_empty()) {
            shown_type.push('^');
            shown_type.push_str(&part);
        }
        Err(Hl7Error::UnsupportedMessageType(shown_type))
    }
}

fn parse_pid(seg: &Segment, notes: &mut Vec<String>) -> Result<LabPatient, Hl7Error> {
    let mut identifiers = cx_list(seg, 3);
    if identifiers.is_empty() {
        // v2.3 external patient ID, for senders that still use it.
        identifiers = cx_list(seg, 2);
    }
    if identifiers.is_empty() {
        return Err(Hl7Error::RequiredFieldMissing(loc(seg, 3)));
    }
    let name = seg.repetitions(5).into_iter().next().and_then(|rep| {
        let family = seg.sub_text(rep, 1, 1);
        let given = seg.component_text(rep, 2);
        match (family, given) {
            (Some(f), Some(g)) => Some(format!("{f}^{g}")),
            (Some(f), None) => Some(f),
            (None, Some(g)) => Some(format!("^{g}")),
            (None, None) => None,
        }
    });
    let birth_date = match seg.text(7, 1) {
        None => None,
        Some(t) => Some(birth_date(&t).ok_or_else(|| Hl7Error::DataType {
            location: loc(seg, 7),
            value: "…".into(),
            problem: "not a date (YYYY[MM[DD]])",
        })?),
    };
    let sex = match seg.text(8, 1) {
        None => None,
        Some(t) => match Sex::parse(&t) {
            Some(s) => Some(s),
            None => {
                notes.push("PID-8 is not a code of table 0001; sex left unknown".into());
                None
            }
        },
    };
    Ok(LabPatient {
        identifiers,
        name,
        birth_date,
        sex,
    })
}

/// The CX repetitions of a field with an ID: ID (CX.1), assigning authority (CX.4 namespace ID, else
/// universal ID), identifier type (CX.5).
fn cx_list(seg: &Segment, field: usize) -> Vec<PatientIdentifier> {
    seg.repetitions(field)
        .into_iter()
        .filter_map(|rep| {
            let id = seg.component_text(rep, 1)?;
            let assigning_authority = seg.sub_text(rep, 4, 1).or_else(|| seg.sub_text(rep, 4, 2));
            Some(PatientIdentifier {
                id,
                assigning_authority,
                id_type: seg.component_text(rep, 5),
            })
        })
        .collect()
}

/// PID-7: `YYYY[MM[DD[HHMM[SS[.S]]]]][+/-ZZZZ]`, kept as `YYYY`, `YYYYMM` or `YYYYMMDD`.
fn birth_date(t: &str) -> Option<String> {
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let mut rest = t.get(digits.len()..).unwrap_or_default();
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = fraction.get(n..).unwrap_or_default();
    }
    let offset_ok = rest.is_empty()
        || (rest.len() == 5
            && rest.starts_with(['+', '-'])
            && rest.bytes().skip(1).all(|b| b.is_ascii_digit()));
    if !offset_ok {
        return None;
    }
    let date = match digits.len() {
        4 | 6 => digits.clone(),
        n if n >= 8 => digits.get(..8)?.to_string(),
        _ => return None,
    };
    let year: u16 = date.get(..4)?.parse().ok()?;
    let month: u8 = date.get(4..6).map_or(Some(1), |m| m.parse().ok())?;
    let day: u8 = date.get(6..8).map_or(Some(1), |d| d.parse().ok())?;
    LocalDateTime::new(year, month, day, 0, 0, 0)?;
    Some(date)
}

/// An HL7 TS/DTM: `YYYYMMDD[HH[MM[SS[.S…]]]][+/-ZZZZ]` (v2.3 TS: its first component). At least a
/// date is needed for a lab time.
pub(crate) fn parse_ts(t: &str) -> Option<LabTime> {
    let t = t.trim();
    let (local, offset) = match t.find(['+', '-']) {
        Some(i) => (t.get(..i)?, Some(t.get(i..)?)),
        None => (t, None),
    };
    let (digits, fraction) = match local.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (local, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 10, 12, 14].contains(&digits.len()) {
        return None;
    }
    if let Some(f) = fraction
        && (digits.len() != 14 || f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let num = |from: usize| -> Option<u8> {
        digits
            .get(from..from + 2)
            .map_or(Some(0), |s| s.parse().ok())
    };
    let local = LocalDateTime::new(
        digits.get(..4)?.parse().ok()?,
        num(4)?,
        num(6)?,
        num(8)?,
        num(10)?,
        num(12)?,
    )?;
    let utc_offset_minutes = match offset {
        None => None,
        Some(o) => {
            let sign: i16 = if o.starts_with('-') { -1 } else { 1 };
            let hhmm = o.get(1..)?;
            if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let h: i16 = hhmm.get(..2)?.parse().ok()?;
            let m: i16 = hhmm.get(2..)?.parse().ok()?;
            if h > 14 || m > 59 {
                return None;
            }
            Some(sign * (h * 60 + m))
        }
    };
    Some(LabTime::new(local, utc_offset_minutes))
}

/// The time in field `n` (component 1), or a data type error naming the field.
fn time_field(seg: &Segment, n: usize) -> Result<Option<LabTime>, Hl7Error> {
    let Some(t) = seg.text(n, 1) else {
        return Ok(None);
    };
    parse_ts(&t).map(Some).ok_or_else(|| Hl7Error::DataType {
        location: loc(seg, n),
        value: shown(&t),
        problem: "not a date/time (YYYYMMDD[HHMM[SS[.S]]][+ZZZZ])",
    })
}

/// A coded triple (CE/CWE/CNE) from components `first`, `first + 1`, `first + 2` of a raw repetition.
fn coded_at(seg: &Segment, rep: &str, first: usize) -> Option<CodedValue> {
    let code = seg.component_text(rep, first);
    let display = seg.component_text(rep, first + 1);
    let system = seg.component_text(rep, first + 2);
    Some(CodedValue {
        code: code.or_else(|| display.clone())?,
        display,
        system,
    })
}

/// The first repetition of a CE/CWE field: the primary triple, else the alternate one.
fn coded_field(seg: &Segment, n: usize) -> Option<CodedValue> {
    let rep = seg.repetitions(n).into_iter().next()?;
    coded_at(seg, rep, 1).or_else(|| coded_at(seg, rep, 4))
}

fn start_panel(
    obr: &Segment,
    orc: Option<&Segment>,
    patient: LabPatient,
    ctx: &Context,
) -> Result<(LabPanel, bool), Hl7Error> {
    let service = coded_field(obr, 4).ok_or_else(|| Hl7Error::RequiredFieldMissing(loc(obr, 4)))?;
    let order_number = |n: usize| obr.text(n, 1).or_else(|| orc.and_then(|o| o.text(n, 1)));
    let specimen = obr.repetitions(15).into_iter().next().and_then(|rep| {
        let code = obr.sub_text(rep, 1, 1);
        let display = obr.sub_text(rep, 1, 2);
        Some(CodedValue {
            code: code.or_else(|| display.clone())?,
            display,
            system: obr.sub_text(rep, 1, 3),
        })
    });
    let ordering_provider = obr.repetitions(16).into_iter().next().and_then(|rep| {
        let id = obr.component_text(rep, 1);
        let family = obr.sub_text(rep, 2, 1);
        let given = obr.component_text(rep, 3);
        let name = match (family, given) {
            (Some(f), Some(g)) => Some(format!("{f}^{g}")),
            (f, g) => f.or(g),
        };
        (id.is_some() || name.is_some()).then_some(Practitioner { id, name })
    });
    let ordering_site = orc.and_then(|o| {
        o.text(21, 10)
            .or_else(|| o.text(21, 3))
            .or_else(|| o.text(21, 1))
            .or_else(|| o.text(17, 1))
            .or_else(|| o.text(17, 2))
    });
    let status_text = obr.text(25, 1);
    let status = match &status_text {
        None => PanelStatus::Registered, // replaced in finish_panel
        Some(t) => PanelStatus::from_hl7(t).ok_or_else(|| Hl7Error::TableValue {
            location: loc(obr, 25),
            value: shown(t),
            table: "0123",
        })?,
    };
    let mut notes = Vec::new();
    if status_text.is_none() {
        notes.push(format!(
            "OBR-25 at segment {} is empty; the panel status is derived from its results",
            obr.sequence
        ));
    }
    let panel = LabPanel {
        source: LabSource::Hl7v2,
        version: ctx.version.clone(),
        message_id: ctx.message_id.clone(),
        patient,
        ordering_site,
        ordering_provider,
        performing_lab: ctx.performing_lab.clone(),
        placer_order_number: order_number(2),
        filler_order_number: order_number(3),
        service,
        specimen,
        collected_at: time_field(obr, 7)?,
        received_at: time_field(obr, 14)?,
        reported_at: time_field(obr, 22)?,
        status,
        results: Vec::new(),
        notes,
    };
    Ok((panel, status_text.is_none()))
}

fn apply_spm(spm: &Segment, panel: &mut LabPanel) -> Result<(), Hl7Error> {
    if let Some(specimen) = coded_field(spm, 4) {
        panel.specimen = Some(specimen);
    }
    if let Some(t) = time_field(spm, 17)? {
        panel.collected_at = Some(t);
    }
    if let Some(t) = time_field(spm, 18)? {
        panel.received_at = Some(t);
    }
    Ok(())
}

/// The panel status when OBR-25 was empty: corrected if any result is, final if all are final,
/// preliminary otherwise (registered when there are no results).
fn derive_status(panel: &mut LabPanel) {
    let statuses: Vec<ResultStatus> = panel.results.iter().map(|r| r.status).collect();
    panel.status = if statuses.is_empty() {
        PanelStatus::Registered
    } else if statuses.contains(&ResultStatus::Corrected) {
        PanelStatus::Corrected
    } else if statuses.iter().all(|s| *s == ResultStatus::Final) {
        PanelStatus::Final
    } else {
        PanelStatus::Preliminary
    };
}

/// A decimal as HL7 NM writes it: optional sign, digits, at most one point; no exponent. Returns the
/// value and the decimal text (without a leading `+`).
pub(crate) fn parse_decimal(t: &str) -> Option<(f64, String)> {
    let t = t.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let digits = body.bytes().filter(u8::is_ascii_digit).count();
    let points = body.bytes().filter(|&b| b == b'.').count();
    if digits == 0 || points > 1 || digits + points != body.len() {
        return None;
    }
    let v: f64 = t.parse().ok()?;
    v.is_finite()
        .then(|| (v, t.strip_prefix('+').unwrap_or(t).to_string()))
}

/// A number with an optional comparator prefix (`<0.01`, `>= 10`).
fn parse_compared(t: &str) -> Option<(Option<Comparator>, f64, String)> {
    let t = t.trim();
    for prefix in ["<=", ">=", "≤", "≥", "<", ">"] {
        if let Some(rest) = t.strip_prefix(prefix) {
            let (v, d) = parse_decimal(rest)?;
            return Some((Comparator::parse(prefix), v, d));
        }
    }
    let (v, d) = parse_decimal(t)?;
    Some((None, v, d))
}

/// OBX-7: `3.5-5.5`, `3.5~5.5`, `-2--1`, `<5`, `<=5`, `>10`; anything else is kept as text only.
pub(crate) fn parse_range(t: &str) -> ReferenceRange {
    let text = t.trim();
    let mut range = ReferenceRange {
        low: None,
        high: None,
        text: Some(text.to_string()),
    };
    if let Some((Some(cmp), v, _)) = parse_compared(text) {
        match cmp {
            Comparator::Lt | Comparator::Le => range.high = Some(v),
            Comparator::Gt | Comparator::Ge => range.low = Some(v),
        }
        return range;
    }
    for (i, c) in text.char_indices() {
        if !(matches!(c, '~' | '～' | '–' | '—') || (c == '-' && i > 0)) {
            continue;
        }
        let (Some(left), Some(right)) = (text.get(..i), text.get(i + c.len_utf8()..)) else {
            continue;
        };
        if let (Some((lo, _)), Some((hi, _))) = (parse_decimal(left), parse_decimal(right)) {
            range.low = Some(lo);
            range.high = Some(hi);
            break;
        }
    }
    range
}

fn parse_obx(
    seg: &Segment,
    panel: &mut LabPanel,
    status_derived: bool,
) -> Result<Option<LabResult>, Hl7Error> {
    let set_id = seg.text(1, 1).and_then(|t| t.parse::<u32>().ok());
    let value_type = seg.text(2, 1).unwrap_or_default().to_ascii_uppercase();
    let rep3 = seg.repetitions(3).into_iter().next().unwrap_or_default();
    let primary = coded_at(seg, rep3, 1);
    let alternate = coded_at(seg, rep3, 4);
    let (code, other_codes) = match (primary, alternate) {
        (Some(p), alt) => (p, alt.into_iter().collect::<Vec<_>>()),
        (None, Some(a)) => (a, Vec::new()),
        (None, None) => return Err(Hl7Error::RequiredFieldMissing(loc(seg, 3))),
    };
    let loinc = std::iter::once(&code)
        .chain(&other_codes)
        .find(|c| c.system.as_deref() == Some(LOINC_V2))
        .map(|c| c.code.clone());

    let reps: Vec<&str> = seg
        .repetitions(5)
        .into_iter()
        .filter(|r| seg.value(r).is_some())
        .collect();
    let data_type = |value: &str, problem: &'static str| Hl7Error::DataType {
        location: loc(seg, 5),
        value: shown(value),
        problem,
    };
    let value = if reps.is_empty() {
        LabValue::Absent
    } else {
        match value_type.as_str() {
            "" => return Err(Hl7Error::RequiredFieldMissing(loc(seg, 2))),
            "NM" => {
                let [rep] = reps.as_slice() else {
                    return Err(data_type(
                        &reps.join("~"),
                        "repeated; value type NM takes one number",
                    ));
                };
                let t = seg.value(rep).unwrap_or_default();
                let (comparator, value, decimal) = parse_compared(&t)
                    .ok_or_else(|| data_type(&t, "not a number for value type NM"))?;
                LabValue::Numeric(Quantity {
                    value,
                    decimal,
                    comparator,
                    unit: None,
                })
            }
            "SN" => structured_numeric(seg, reps.first().copied().unwrap_or_default())?,
            "ST" | "TX" | "FT" => LabValue::Text(
                reps.iter()
                    .filter_map(|r| seg.value(r))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            "DT" | "TM" | "TS" | "DTM" | "ID" | "IS" => LabValue::Text(
                seg.value(reps.first().copied().unwrap_or_default())
                    .unwrap_or_default(),
            ),
            "CE" | "CWE" | "CNE" => {
                let rep = reps.first().copied().unwrap_or_default();
                let coded = coded_at(seg, rep, 1)
                    .or_else(|| coded_at(seg, rep, 4))
                    .ok_or_else(|| data_type(rep, "not a code (value type CE, CWE or CNE)"))?;
                if reps.len() > 1 {
                    panel.notes.push(format!(
                        "OBX-5 at segment {} has {} coded values; the first is kept",
                        seg.sequence,
                        reps.len()
                    ));
                }
                LabValue::Coded(coded)
            }
            "ED" | "RP" => {
                panel.notes.push(format!(
                    "OBX at segment {} ({}): value type {value_type} is not kept",
                    seg.sequence,
                    code.label()
                ));
                return Ok(None);
            }
            other => {
                return Err(Hl7Error::TableValue {
                    location: loc(seg, 2),
                    value: shown(other),
                    table: "0125",
                });
            }
        }
    };
    let value = match value {
        LabValue::Numeric(mut q) => {
            q.unit = coded_field(seg, 6);
            LabValue::Numeric(q)
        }
        other => other,
    };

    let abnormal_flags = seg
        .repetitions(8)
        .into_iter()
        .filter_map(|rep| seg.component_text(rep, 1))
        .filter_map(|t| AbnormalFlag::from_code(&t))
        .collect();
    let status = match seg.text(11, 1) {
        Some(t) => ResultStatus::from_hl7(&t).ok_or_else(|| Hl7Error::TableValue {
            location: loc(seg, 11),
            value: shown(&t),
            table: "0085",
        })?,
        None => {
            if status_derived {
                return Err(Hl7Error::RequiredFieldMissing(loc(seg, 11)));
            }
            panel.notes.push(format!(
                "OBX-11 at segment {} is empty; the OBR-25 status is used",
                seg.sequence
            ));
            match panel.status {
                PanelStatus::Registered => ResultStatus::Registered,
                PanelStatus::Partial | PanelStatus::Preliminary => ResultStatus::Preliminary,
                PanelStatus::Final => ResultStatus::Final,
                PanelStatus::Corrected => ResultStatus::Corrected,
                PanelStatus::Cancelled => ResultStatus::Cancelled,
                PanelStatus::EnteredInError => ResultStatus::EnteredInError,
            }
        }
    };
    let observed_at = match time_field(seg, 14)? {
        Some(t) => Some(t),
        None => time_field(seg, 19)?,
    };
    Ok(Some(LabResult {
        set_id,
        code,
        other_codes,
        loinc,
        value,
        reference_range: seg.text(7, 1).map(|t| parse_range(&t)),
        abnormal_flags,
        status,
        observed_at,
    }))
}

/// SN: comparator ^ number ^ separator/suffix ^ number. One number (with its comparator) is numeric;
/// a ratio or range (`1:128`, `2-5`) is kept as text.
fn structured_numeric(seg: &Segment, rep: &str) -> Result<LabValue, Hl7Error> {
    let part = |c| seg.component_text(rep, c).unwrap_or_default();
    let (cmp, n1, sep, n2) = (part(1), part(2), part(3), part(4));
    let bad = |problem: &'static str| Hl7Error::DataType {
        location: loc(seg, 5),
        value: shown(&seg.value(rep).unwrap_or_default()),
        problem,
    };
    let comparator = match cmp.as_str() {
        "" | "=" => None,
        c => Some(Comparator::parse(c).ok_or_else(|| {
            bad("not a structured numeric (SN.1 must be <, >, <=, >=, = or empty)")
        })?),
    };
    let (value, decimal) =
        parse_decimal(&n1).ok_or_else(|| bad("not a structured numeric (SN.2 is not a number)"))?;
    if sep.is_empty() && n2.is_empty() {
        return Ok(LabValue::Numeric(Quantity {
            value,
            decimal,
            comparator,
            unit: None,
        }));
    }
    if !n2.is_empty() && parse_decimal(&n2).is_none() {
        return Err(bad("not a structured numeric (SN.4 is not a number)"));
    }
    Ok(LabValue::Text(format!("{cmp}{decimal}{sep}{n2}")))
}
