//! FHIR R4 lab output: typed records in, `serde_json` values out. The read API for member hospitals
//! (`/fhir/r4`) is built from these: `Patient`, `DiagnosticReport` (with a contained `Specimen`),
//! `Observation`, the `searchset` `Bundle`, the `CapabilityStatement` and `OperationOutcome`. Pure:
//! what to show (published, newest, recognised) is decided before; this module only spells it.
//!
//! Naming, a public contract (ARCHITECTURE.md, "FHIR read API"):
//! - ids: a report is its panel's ULID, an observation `<panel>-<seq>` (seq from 1), a patient the
//!   first [`PATIENT_ID_LEN`] hex digits of the alliance patient key;
//! - identifiers and codes keep a URI the sender gave; the hub's own are URNs that do not change when
//!   the hub moves: `urn:yilian:issuer:<issuer>` (patient identifiers), `urn:yilian:filler:<facility>`
//!   and `urn:yilian:placer:<facility>` (order numbers), `urn:yilian:lab-code:<facility>` (the lab's
//!   local codes); HL7 v2 names become their FHIR URIs (`LN`, `UCUM`, `SCT`, `HL7nnnn`);
//! - mutual recognition (互认): `meta.tag` `<base>/CodeSystem/recognition#HR` when recognised, and
//!   always the extension `<base>/StructureDefinition/recognition` (`recognised`, `scope`,
//!   `validUntil`, `eqa`, one `reason` per failed precondition), `<base>` being
//!   `server.public_url` + `/fhir/r4`.
//!
//! Decimals: `valueQuantity.value` is the number the lab sent; an integer stays an integer, but trailing
//! zeros of a decimal (`4.60`) are not kept (JSON numbers through `serde_json`).

use serde_json::{Map, Value, json};
use yilian_domain::UnixMillis;
use yilian_domain::lab::{
    AbnormalFlag, CodedValue, LOINC_URI, LabPanel, LabResult, LabTime, LabValue, PanelStatus,
    Quantity, ReferenceRange, ResultStatus, Sex, UCUM_URI,
};

/// How many hex digits of the alliance patient key make a Patient id (64 bits).
pub const PATIENT_ID_LEN: usize = 16;
/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";
/// The media type of every answer.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The recognition mark's code (the national "HR" mark).
pub const RECOGNISED_CODE: &str = "HR";

const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const DATA_ABSENT: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
const SNOMED: &str = "http://snomed.info/sct";
const SPECIMEN_REF: &str = "specimen";

/// Codes of v3-ObservationInterpretation that labs send in OBX-8 (table 0078 shares them).
const INTERPRETATION_CODES: &[&str] = &[
    "<", ">", "A", "AA", "B", "D", "DET", "E", "EX", "H", "HH", "HU", "HX", "I", "IE", "IND", "L",
    "LL", "LU", "LX", "N", "NCL", "ND", "NEG", "NR", "NS", "POS", "R", "RR", "S", "SDD", "U", "W",
    "WR",
];

/// Where the hub's URLs start.
#[derive(Clone, Debug)]
pub struct FhirBase {
    /// `server.public_url` + `/fhir/r4` when the public URL is configured: full URLs are absolute.
    /// `None`: they are relative (`Patient/…`).
    pub full_url: Option<String>,
    /// The base of the hub's definitions (recognition tag and extension): the public URL, else the
    /// hub's own address, + `/fhir/r4`.
    pub definitions: String,
    /// The alliance's UTC offset in minutes, for lab times sent without one (FHIR needs a zone).
    pub default_offset_minutes: i16,
}

impl FhirBase {
    pub fn recognition_system(&self) -> String {
        format!("{}/CodeSystem/recognition", self.definitions)
    }

    pub fn recognition_extension(&self) -> String {
        format!("{}/StructureDefinition/recognition", self.definitions)
    }

    /// The full URL of `Type/id`.
    pub fn full_url(&self, resource_type: &str, id: &str) -> String {
        match &self.full_url {
            Some(base) => format!("{base}/{resource_type}/{id}"),
            None => format!("{resource_type}/{id}"),
        }
    }
}

/// Mutual recognition of a report or a result, as decided by policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recognition {
    pub recognised: bool,
    pub scope: Option<String>,
    pub valid_until: Option<UnixMillis>,
    /// The EQA pass it rests on (`2026 省临检中心室间质评`), for a result.
    pub eqa: Option<String>,
    /// Each failed precondition; empty when recognised.
    pub reasons: Vec<String>,
}

/// One stored, published lab panel and what the hub knows around it.
#[derive(Clone, Debug)]
pub struct ReportInput<'a> {
    /// The panel's ULID: the DiagnosticReport id.
    pub id: &'a str,
    /// The Patient id ([`patient_id`] of the alliance key).
    pub patient_id: &'a str,
    pub panel: &'a LabPanel,
    /// The service's LOINC (as sent or mapped).
    pub service_loinc: Option<&'a str>,
    /// The configured sender: scope of its order numbers and local codes.
    pub sending_facility: &'a str,
    /// How to name the performing lab to people (its site's name), when known.
    pub performer_display: Option<&'a str>,
    /// When the hub received it (`issued` when the lab sent no report time; `meta.lastUpdated`).
    pub received_at: UnixMillis,
    /// The report replaces an earlier final one of the same order without saying "corrected": FHIR
    /// calls that `amended`.
    pub amended: bool,
    pub recognition: &'a Recognition,
    /// Per result, in order.
    pub result_recognition: &'a [Recognition],
}

/// What the hub shows of a patient.
#[derive(Clone, Debug, Default)]
pub struct PatientInput {
    pub id: String,
    /// (issuer, identifier) pairs to show.
    pub identifiers: Vec<(String, String)>,
    /// `Family^Given`, or a name sent whole.
    pub name: Option<String>,
    /// `YYYYMMDD`, `YYYYMM` or `YYYY`.
    pub birth_date: Option<String>,
    pub sex: Option<Sex>,
    pub last_updated: Option<UnixMillis>,
}

/// The Patient id of an alliance patient key: its first [`PATIENT_ID_LEN`] characters.
pub fn patient_id(patient_key: &str) -> String {
    patient_key.chars().take(PATIENT_ID_LEN).collect()
}

/// Whether `id` has the shape of a Patient id (lower-case hex of the right length).
pub fn is_patient_id(id: &str) -> bool {
    id.len() == PATIENT_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The Observation id of a panel's result (`seq` from 1).
pub fn observation_id(panel_id: &str, seq: usize) -> String {
    format!("{panel_id}-{seq}")
}

/// The inverse of [`observation_id`]: the panel id and the result's position (from 1).
pub fn parse_observation_id(id: &str) -> Option<(&str, usize)> {
    let (panel, seq) = id.rsplit_once('-')?;
    let seq: usize = seq.parse().ok()?;
    (seq >= 1 && !panel.is_empty() && seq.to_string().len() == id.len() - panel.len() - 1)
        .then_some((panel, seq))
}

/// Percent-encodes what may not stand in a URN part.
fn urn_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.trim().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn urn_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn is_uri(s: &str) -> bool {
    s.contains(':')
}

const ISSUER_URN: &str = "urn:yilian:issuer:";

/// The identifier system of a patient identifier's issuer: the issuer itself when it is a URI,
/// else `urn:yilian:issuer:<issuer>`.
pub fn issuer_system(issuer: &str) -> String {
    if is_uri(issuer) {
        issuer.to_string()
    } else {
        format!("{ISSUER_URN}{}", urn_part(issuer))
    }
}

/// The issuers (as stored) an identifier system stands for: the system as sent, and for
/// `urn:yilian:issuer:<issuer>` also the bare issuer.
pub fn issuers_of_system(system: &str) -> Vec<String> {
    let mut out = vec![system.to_string()];
    if let Some(bare) = system.strip_prefix(ISSUER_URN).and_then(urn_decode)
        && !bare.is_empty()
    {
        out.push(bare);
    }
    out
}

/// The FHIR system of a code as the lab sent it: URIs as they are, HL7 v2 table 0396 names as FHIR
/// spells them, anything else (`L`, `99zzz`, none) the lab's local code system.
pub fn code_system(system: Option<&str>, facility: &str) -> String {
    let local = format!("urn:yilian:lab-code:{}", urn_part(facility));
    let Some(s) = system.map(str::trim).filter(|s| !s.is_empty()) else {
        return local;
    };
    if is_uri(s) {
        return s.to_string();
    }
    match s.to_ascii_uppercase().as_str() {
        "LN" => LOINC_URI.to_string(),
        "UCUM" => UCUM_URI.to_string(),
        "SCT" | "SNOMEDCT" => SNOMED.to_string(),
        "L" => local,
        upper => match upper.strip_prefix("HL7") {
            Some(n) if n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()) => {
                format!("http://terminology.hl7.org/CodeSystem/v2-{n}")
            }
            _ => format!("{local}:{}", urn_part(s)),
        },
    }
}

fn filler_system(facility: &str) -> String {
    format!("urn:yilian:filler:{}", urn_part(facility))
}

fn placer_system(facility: &str) -> String {
    format!("urn:yilian:placer:{}", urn_part(facility))
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An instant as FHIR `instant` in UTC: `2026-11-23T00:15:00.000Z`.
pub fn instant(t: UnixMillis) -> String {
    let secs = t.0.div_euclid(1000);
    let ms = t.0.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// A lab time as FHIR `dateTime` (also a valid `instant`): with its own offset, else the alliance's.
fn date_time(t: &LabTime, default_offset: i16) -> String {
    LabTime::new(
        t.local,
        Some(t.utc_offset_minutes.unwrap_or(default_offset)),
    )
    .to_fhir()
}

fn coding(c: &CodedValue, facility: &str) -> Value {
    let mut out = json!({ "system": code_system(c.system.as_deref(), facility), "code": c.code });
    if let Some(d) = c.display.as_deref().filter(|d| !d.trim().is_empty()) {
        out["display"] = json!(d);
    }
    out
}

/// A CodeableConcept of `primary`, `others`, and the LOINC code unless a coding already carries it.
fn concept(
    primary: &CodedValue,
    others: &[CodedValue],
    loinc: Option<&str>,
    facility: &str,
) -> Value {
    let mut codings: Vec<Value> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for c in std::iter::once(primary).chain(others) {
        let v = coding(c, facility);
        let key = (
            v["system"].as_str().unwrap_or_default().to_string(),
            c.code.clone(),
        );
        if !seen.contains(&key) {
            seen.push(key);
            codings.push(v);
        }
    }
    if let Some(l) = loinc.filter(|l| !seen.iter().any(|(s, c)| s == LOINC_URI && c == l)) {
        codings.push(json!({ "system": LOINC_URI, "code": l }));
    }
    let mut out = json!({ "coding": codings });
    if let Some(text) = primary.display.as_deref().filter(|d| !d.trim().is_empty()) {
        out["text"] = json!(text);
    }
    out
}

/// A JSON number for a decimal as sent: an integer when it has no fraction, else the `f64`.
fn decimal(text: &str, value: f64) -> Value {
    let t = text.trim();
    if !t.contains(['.', 'e', 'E'])
        && let Ok(i) = t.parse::<i64>()
    {
        return json!(i);
    }
    json!(value)
}

/// The unit part of a Quantity: `unit` text, and UCUM `system` + `code` only when the unit is UCUM.
fn unit_fields(q: &mut Map<String, Value>, unit: Option<&CodedValue>) {
    let Some(u) = unit.filter(|u| !u.code.trim().is_empty()) else {
        return;
    };
    q.insert(
        "unit".into(),
        json!(
            u.display
                .as_deref()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or(&u.code)
        ),
    );
    if u.is_ucum() {
        q.insert("system".into(), json!(UCUM_URI));
        q.insert("code".into(), json!(u.code));
    }
}

fn quantity(q: &Quantity) -> Value {
    let mut m = Map::new();
    m.insert("value".into(), decimal(&q.decimal, q.value));
    if let Some(c) = q.comparator {
        m.insert("comparator".into(), json!(c.as_str()));
    }
    unit_fields(&mut m, q.unit.as_ref());
    Value::Object(m)
}

fn range_bound(v: f64, unit: Option<&CodedValue>) -> Value {
    let mut m = Map::new();
    m.insert("value".into(), decimal(&v.to_string(), v));
    unit_fields(&mut m, unit);
    Value::Object(m)
}

fn reference_range(rr: &ReferenceRange, unit: Option<&CodedValue>) -> Option<Value> {
    let mut m = Map::new();
    if let Some(l) = rr.low {
        m.insert("low".into(), range_bound(l, unit));
    }
    if let Some(h) = rr.high {
        m.insert("high".into(), range_bound(h, unit));
    }
    if let Some(t) = rr.text.as_deref().filter(|t| !t.trim().is_empty()) {
        m.insert("text".into(), json!(t));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

fn interpretation(flag: &AbnormalFlag) -> Value {
    let code = flag.code();
    if INTERPRETATION_CODES.contains(&code) {
        json!({ "coding": [{ "system": INTERPRETATION, "code": code }] })
    } else {
        json!({ "text": code })
    }
}

/// `meta` with the recognition tag when recognised, and the recognition extension.
pub(crate) fn recognition_parts(
    base: &FhirBase,
    r: &Recognition,
    last_updated: UnixMillis,
) -> (Value, Value) {
    let mut meta = json!({ "lastUpdated": instant(last_updated) });
    if r.recognised {
        meta["tag"] = json!([{
            "system": base.recognition_system(),
            "code": RECOGNISED_CODE,
            "display": "互认 mutually recognised",
        }]);
    }
    let mut parts = vec![json!({ "url": "recognised", "valueBoolean": r.recognised })];
    if let Some(scope) = r.scope.as_deref().filter(|_| r.recognised) {
        parts.push(json!({ "url": "scope", "valueString": scope }));
    }
    if let Some(until) = r.valid_until {
        parts.push(json!({ "url": "validUntil", "valueDateTime": instant(until) }));
    }
    if let Some(eqa) = r.eqa.as_deref() {
        parts.push(json!({ "url": "eqa", "valueString": eqa }));
    }
    for why in &r.reasons {
        parts.push(json!({ "url": "reason", "valueString": why }));
    }
    let ext = json!({ "url": base.recognition_extension(), "extension": parts });
    (meta, ext)
}

fn performer(input: &ReportInput<'_>) -> Option<Value> {
    let lab = input
        .panel
        .performing_lab
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())?;
    Some(json!({
        "type": "Organization",
        "identifier": { "system": "urn:yilian:lab", "value": lab },
        "display": input.performer_display.unwrap_or(lab),
    }))
}

fn issued(input: &ReportInput<'_>, base: &FhirBase) -> String {
    match &input.panel.reported_at {
        Some(t) => date_time(t, base.default_offset_minutes),
        None => instant(input.received_at),
    }
}

fn report_status(input: &ReportInput<'_>) -> &'static str {
    match input.panel.status {
        PanelStatus::Final if input.amended => "amended",
        other => other.fhir_code(),
    }
}

/// The panel as a FHIR R4 `DiagnosticReport` (category LAB), its results referenced as
/// `Observation/<panel>-<seq>`, its specimen contained.
pub fn diagnostic_report(base: &FhirBase, input: &ReportInput<'_>) -> Value {
    let p = input.panel;
    let facility = input.sending_facility;
    let (meta, ext) = recognition_parts(base, input.recognition, input.received_at);
    let mut r = json!({
        "resourceType": "DiagnosticReport",
        "id": input.id,
        "meta": meta,
        "extension": [ext],
    });
    let mut identifiers = Vec::new();
    if let Some(f) = p
        .filler_order_number
        .as_deref()
        .filter(|f| !f.trim().is_empty())
    {
        identifiers.push(json!({
            "type": { "coding": [{ "system": V2_0203, "code": "FILL" }] },
            "system": filler_system(facility),
            "value": f,
        }));
    }
    if let Some(pl) = p
        .placer_order_number
        .as_deref()
        .filter(|f| !f.trim().is_empty())
    {
        identifiers.push(json!({
            "type": { "coding": [{ "system": V2_0203, "code": "PLAC" }] },
            "system": placer_system(facility),
            "value": pl,
        }));
        r["basedOn"] = json!([{
            "type": "ServiceRequest",
            "identifier": { "system": placer_system(facility), "value": pl },
        }]);
    }
    if !identifiers.is_empty() {
        r["identifier"] = json!(identifiers);
    }
    r["status"] = json!(report_status(input));
    r["category"] =
        json!([{ "coding": [{ "system": V2_0074, "code": "LAB", "display": "Laboratory" }] }]);
    r["code"] = concept(&p.service, &[], input.service_loinc, facility);
    r["subject"] = json!({ "reference": format!("Patient/{}", input.patient_id) });
    if let Some(t) = &p.collected_at {
        r["effectiveDateTime"] = json!(date_time(t, base.default_offset_minutes));
    }
    r["issued"] = json!(issued(input, base));
    if let Some(perf) = performer(input) {
        r["performer"] = json!([perf]);
    }
    if p.specimen.is_some() || p.collected_at.is_some() || p.received_at.is_some() {
        let mut s = json!({ "resourceType": "Specimen", "id": SPECIMEN_REF });
        if let Some(ty) = &p.specimen {
            s["type"] = concept(ty, &[], None, facility);
        }
        if let Some(t) = &p.received_at {
            s["receivedTime"] = json!(date_time(t, base.default_offset_minutes));
        }
        if let Some(t) = &p.collected_at {
            s["collection"] =
                json!({ "collectedDateTime": date_time(t, base.default_offset_minutes) });
        }
        r["contained"] = json!([s]);
        r["specimen"] = json!([{ "reference": format!("#{SPECIMEN_REF}") }]);
    }
    let results: Vec<Value> = (1..=p.results.len())
        .map(|seq| json!({ "reference": format!("Observation/{}", observation_id(input.id, seq)) }))
        .collect();
    if !results.is_empty() {
        r["result"] = json!(results);
    }
    r
}

/// Result `seq` (from 1) of the panel as a FHIR R4 `Observation` (category laboratory). `None` when
/// the panel has no such result.
pub fn observation(base: &FhirBase, input: &ReportInput<'_>, seq: usize) -> Option<Value> {
    let p = input.panel;
    let res: &LabResult = p.results.get(seq.checked_sub(1)?)?;
    let facility = input.sending_facility;
    let empty = Recognition::default();
    let rec = input.result_recognition.get(seq - 1).unwrap_or(&empty);
    let (meta, ext) = recognition_parts(base, rec, input.received_at);
    let status = match res.status {
        ResultStatus::Final if input.amended => "amended",
        other => other.fhir_code(),
    };
    let mut o = json!({
        "resourceType": "Observation",
        "id": observation_id(input.id, seq),
        "meta": meta,
        "extension": [ext],
        "status": status,
        "category": [{ "coding": [{ "system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory" }] }],
        "code": concept(&res.code, &res.other_codes, res.loinc.as_deref(), facility),
        "subject": { "reference": format!("Patient/{}", input.patient_id) },
    });
    if let Some(t) = p.collected_at.as_ref().or(res.observed_at.as_ref()) {
        o["effectiveDateTime"] = json!(date_time(t, base.default_offset_minutes));
    }
    o["issued"] = json!(issued(input, base));
    if let Some(perf) = performer(input) {
        o["performer"] = json!([perf]);
    }
    let unit = res.quantity().and_then(|q| q.unit.as_ref());
    match &res.value {
        LabValue::Numeric(q) => o["valueQuantity"] = quantity(q),
        LabValue::Coded(c) => {
            let mut cc = json!({ "coding": [coding(c, facility)] });
            if let Some(d) = c.display.as_deref().filter(|d| !d.trim().is_empty()) {
                cc["text"] = json!(d);
            }
            o["valueCodeableConcept"] = cc;
        }
        LabValue::Text(t) => o["valueString"] = json!(t),
        LabValue::Absent => {
            let code = match res.status {
                ResultStatus::Cancelled => "not-performed",
                _ => "unknown",
            };
            o["dataAbsentReason"] = json!({ "coding": [{ "system": DATA_ABSENT, "code": code }] });
        }
    }
    let interpretations: Vec<Value> = res.abnormal_flags.iter().map(interpretation).collect();
    if !interpretations.is_empty() {
        o["interpretation"] = json!(interpretations);
    }
    if let Some(rr) = res
        .reference_range
        .as_ref()
        .and_then(|rr| reference_range(rr, unit))
    {
        o["referenceRange"] = json!([rr]);
    }
    Some(o)
}

/// Every result of the panel as an Observation, in order.
pub fn observations(base: &FhirBase, input: &ReportInput<'_>) -> Vec<Value> {
    (1..=input.panel.results.len())
        .filter_map(|seq| observation(base, input, seq))
        .collect()
}

/// `YYYYMMDD` / `YYYYMM` / `YYYY` → FHIR `date`.
pub(crate) fn fhir_date(d: &str) -> Option<String> {
    let d = d.trim();
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match d.len() {
        8 => Some(format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8])),
        6 => Some(format!("{}-{}", &d[..4], &d[4..6])),
        4 => Some(d.to_string()),
        _ => None,
    }
}

/// A Patient: the identifiers given, name, gender and birth date; nothing else.
pub fn patient(input: &PatientInput) -> Value {
    let mut p = json!({ "resourceType": "Patient", "id": input.id });
    if let Some(t) = input.last_updated {
        p["meta"] = json!({ "lastUpdated": instant(t) });
    }
    if !input.identifiers.is_empty() {
        p["identifier"] = json!(
            input
                .identifiers
                .iter()
                .map(|(issuer, value)| json!({ "system": issuer_system(issuer), "value": value }))
                .collect::<Vec<_>>()
        );
    }
    if let Some(name) = input
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let n = match name.split_once('^') {
            Some((family, given)) => {
                let mut n = json!({ "family": family.trim() });
                let given: Vec<&str> = given
                    .split('^')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .collect();
                if !given.is_empty() {
                    n["given"] = json!(given);
                }
                n
            }
            None => json!({ "text": name }),
        };
        p["name"] = json!([n]);
    }
    if let Some(sex) = input.sex {
        p["gender"] = json!(sex.fhir_code());
    }
    if let Some(d) = input.birth_date.as_deref().and_then(fhir_date) {
        p["birthDate"] = json!(d);
    }
    p
}

/// How an entry came into a search result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchMode {
    Match,
    Include,
    Outcome,
}

impl SearchMode {
    fn as_str(self) -> &'static str {
        match self {
            SearchMode::Match => "match",
            SearchMode::Include => "include",
            SearchMode::Outcome => "outcome",
        }
    }
}

/// A `searchset` Bundle: `total` counts the matches; each entry has its full URL and search mode.
pub fn searchset(
    base: &FhirBase,
    self_url: &str,
    total: usize,
    entries: &[(Value, SearchMode)],
) -> Value {
    let entries: Vec<Value> = entries
        .iter()
        .map(|(resource, mode)| {
            let ty = resource["resourceType"].as_str().unwrap_or_default();
            let mut e = Map::new();
            if let Some(id) = resource["id"].as_str() {
                e.insert("fullUrl".into(), json!(base.full_url(ty, id)));
            }
            e.insert("resource".into(), resource.clone());
            e.insert("search".into(), json!({ "mode": mode.as_str() }));
            Value::Object(e)
        })
        .collect();
    let mut b = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{ "relation": "self", "url": self_url }],
    });
    if !entries.is_empty() {
        b["entry"] = json!(entries);
    }
    b
}

/// An `OperationOutcome` with one issue (`severity` error/warning, `code` from the IssueType set).
pub fn operation_outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": severity, "code": code, "diagnostics": diagnostics }],
    })
}

/// What the server says about itself (`GET /fhir/r4/metadata`).
pub fn capability_statement(
    base: &FhirBase,
    software_version: &str,
    date: UnixMillis,
    publisher: &str,
) -> Value {
    let token =
        |name: &str, doc: &str| json!({ "name": name, "type": "token", "documentation": doc });
    let patient_param = json!({
        "name": "patient",
        "type": "reference",
        "documentation": "Patient/{id}, or chained: patient.identifier=[system|]value (a resident ID matches with any system)",
    });
    let date_param = json!({
        "name": "date",
        "type": "date",
        "documentation": "specimen collection time (imaging and ECG: the study date); prefixes eq (default), ge, gt, le, lt; repeat to bound both sides",
    });
    let id_param = token("_id", "the resource id");
    let read_search = json!([{ "code": "read" }, { "code": "search-type" }]);
    let interactions = || read_search.clone();
    let mut implementation = json!({ "description": "Yilian (医联) results for member hospitals: published lab panels (the newest report of each order) and signed imaging and ECG reports with their studies, with mutual recognition" });
    if let Some(url) = &base.full_url {
        implementation["url"] = json!(url);
    }
    json!({
        "resourceType": "CapabilityStatement",
        "id": "yilian-lab",
        "status": "active",
        "date": instant(date),
        "publisher": publisher,
        "kind": "instance",
        "software": { "name": "Yilian", "version": software_version },
        "implementation": implementation,
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "documentation": format!(
                "Read-only. Mutually recognised resources carry meta.tag {}#{RECOGNISED_CODE}; every resource carries the extension {} (recognised, scope, validUntil, eqa, reason). Unknown search parameters are refused (400); every match is returned in one page.",
                base.recognition_system(),
                base.recognition_extension()
            ),
            "security": {
                "cors": false,
                "description": "Authorization: Bearer <token> (yilian user token); roles clinician and reader. Every read and search is audited.",
            },
            "resource": [
                {
                    "type": "Patient",
                    "interaction": interactions(),
                    "searchParam": [token("identifier", "[system|]value; a resident ID matches with any system"), id_param.clone()],
                },
                {
                    "type": "DiagnosticReport",
                    "interaction": interactions(),
                    "searchInclude": ["DiagnosticReport:result"],
                    "searchParam": [
                        patient_param.clone(),
                        token("identifier", "the order number (filler or placer), [system|]value"),
                        token("code", "[system|]code: LOINC or the lab's local code (imaging: LOINC 18748-4, ECG: 11524-6, or the DICOM modality); a comma separates alternatives"),
                        token("category", "v2-0074 LAB, RAD (imaging) or EC (ECG); a comma separates alternatives"),
                        date_param.clone(),
                        id_param.clone(),
                    ],
                },
                {
                    "type": "Observation",
                    "interaction": interactions(),
                    "searchParam": [
                        patient_param.clone(),
                        token("code", "[system|]code: LOINC or the lab's local code; a comma separates alternatives"),
                        date_param,
                        id_param,
                    ],
                },
                {
                    "type": "ImagingStudy",
                    "interaction": interactions(),
                    "searchParam": [patient_param, token("_id", "the Study Instance UID")],
                },
            ],
        }],
    })
}

#[cfg(test)]
mod tests;
