//! DICOM queries: QIDO-RS parameters and C-FIND identifiers → one typed [`Query`] (PS3.4 C.2.2.2
//! matching: single value, wildcard, range, UID list, universal), and a catalog match →
//! the response data set. Both front ends share it, so a QIDO search and a C-FIND with the same keys
//! match the same studies and return the same attribute values.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// The level of a query (Query/Retrieve Level, or the QIDO resource).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueryLevel {
    Patient,
    Study,
    Series,
    Instance,
}

impl QueryLevel {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "PATIENT" => QueryLevel::Patient,
            "STUDY" => QueryLevel::Study,
            "SERIES" => QueryLevel::Series,
            "IMAGE" | "INSTANCE" => QueryLevel::Instance,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            QueryLevel::Patient => "PATIENT",
            QueryLevel::Study => "STUDY",
            QueryLevel::Series => "SERIES",
            QueryLevel::Instance => "IMAGE",
        }
    }
}

/// The attributes the hub can match on and return. Anything else in a C-FIND identifier is
/// returned empty; in QIDO it is ignored with a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    PatientName,
    PatientId,
    IssuerOfPatientId,
    PatientBirthDate,
    PatientSex,
    StudyInstanceUid,
    StudyDate,
    StudyTime,
    AccessionNumber,
    StudyId,
    StudyDescription,
    ReferringPhysicianName,
    ModalitiesInStudy,
    NumberOfStudyRelatedSeries,
    NumberOfStudyRelatedInstances,
    NumberOfPatientRelatedStudies,
    SeriesInstanceUid,
    Modality,
    SeriesNumber,
    SeriesDescription,
    BodyPartExamined,
    NumberOfSeriesRelatedInstances,
    SopInstanceUid,
    SopClassUid,
    InstanceNumber,
    Rows,
    Columns,
    NumberOfFrames,
    AvailableTransferSyntaxUid,
}

use Key::*;

/// (key, tag, VR, DICOM keyword, level). The level is where the attribute lives; counts are
/// "return only" (never matched).
const KEYS: &[(Key, Tag, VR, &str, QueryLevel)] = &[
    (
        PatientName,
        tags::PATIENT_NAME,
        VR::PN,
        "PatientName",
        QueryLevel::Patient,
    ),
    (
        PatientId,
        tags::PATIENT_ID,
        VR::LO,
        "PatientID",
        QueryLevel::Patient,
    ),
    (
        IssuerOfPatientId,
        tags::ISSUER_OF_PATIENT_ID,
        VR::LO,
        "IssuerOfPatientID",
        QueryLevel::Patient,
    ),
    (
        PatientBirthDate,
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        "PatientBirthDate",
        QueryLevel::Patient,
    ),
    (
        PatientSex,
        tags::PATIENT_SEX,
        VR::CS,
        "PatientSex",
        QueryLevel::Patient,
    ),
    (
        NumberOfPatientRelatedStudies,
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        VR::IS,
        "NumberOfPatientRelatedStudies",
        QueryLevel::Patient,
    ),
    (
        StudyInstanceUid,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        "StudyInstanceUID",
        QueryLevel::Study,
    ),
    (
        StudyDate,
        tags::STUDY_DATE,
        VR::DA,
        "StudyDate",
        QueryLevel::Study,
    ),
    (
        StudyTime,
        tags::STUDY_TIME,
        VR::TM,
        "StudyTime",
        QueryLevel::Study,
    ),
    (
        AccessionNumber,
        tags::ACCESSION_NUMBER,
        VR::SH,
        "AccessionNumber",
        QueryLevel::Study,
    ),
    (
        StudyId,
        tags::STUDY_ID,
        VR::SH,
        "StudyID",
        QueryLevel::Study,
    ),
    (
        StudyDescription,
        tags::STUDY_DESCRIPTION,
        VR::LO,
        "StudyDescription",
        QueryLevel::Study,
    ),
    (
        ReferringPhysicianName,
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        "ReferringPhysicianName",
        QueryLevel::Study,
    ),
    (
        ModalitiesInStudy,
        tags::MODALITIES_IN_STUDY,
        VR::CS,
        "ModalitiesInStudy",
        QueryLevel::Study,
    ),
    (
        NumberOfStudyRelatedSeries,
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        VR::IS,
        "NumberOfStudyRelatedSeries",
        QueryLevel::Study,
    ),
    (
        NumberOfStudyRelatedInstances,
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        VR::IS,
        "NumberOfStudyRelatedInstances",
        QueryLevel::Study,
    ),
    (
        SeriesInstanceUid,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        "SeriesInstanceUID",
        QueryLevel::Series,
    ),
    (
        Modality,
        tags::MODALITY,
        VR::CS,
        "Modality",
        QueryLevel::Series,
    ),
    (
        SeriesNumber,
        tags::SERIES_NUMBER,
        VR::IS,
        "SeriesNumber",
        QueryLevel::Series,
    ),
    (
        SeriesDescription,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        "SeriesDescription",
        QueryLevel::Series,
    ),
    (
        BodyPartExamined,
        tags::BODY_PART_EXAMINED,
        VR::CS,
        "BodyPartExamined",
        QueryLevel::Series,
    ),
    (
        NumberOfSeriesRelatedInstances,
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        VR::IS,
        "NumberOfSeriesRelatedInstances",
        QueryLevel::Series,
    ),
    (
        SopInstanceUid,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        "SOPInstanceUID",
        QueryLevel::Instance,
    ),
    (
        SopClassUid,
        tags::SOP_CLASS_UID,
        VR::UI,
        "SOPClassUID",
        QueryLevel::Instance,
    ),
    (
        InstanceNumber,
        tags::INSTANCE_NUMBER,
        VR::IS,
        "InstanceNumber",
        QueryLevel::Instance,
    ),
    (Rows, tags::ROWS, VR::US, "Rows", QueryLevel::Instance),
    (
        Columns,
        tags::COLUMNS,
        VR::US,
        "Columns",
        QueryLevel::Instance,
    ),
    (
        NumberOfFrames,
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        "NumberOfFrames",
        QueryLevel::Instance,
    ),
    (
        AvailableTransferSyntaxUid,
        tags::AVAILABLE_TRANSFER_SYNTAX_UID,
        VR::UI,
        "AvailableTransferSyntaxUID",
        QueryLevel::Instance,
    ),
];

impl Key {
    fn row(self) -> &'static (Key, Tag, VR, &'static str, QueryLevel) {
        // Every variant has a row (checked by a test); the fallback is unreachable in practice.
        KEYS.iter().find(|r| r.0 == self).unwrap_or(&KEYS[0])
    }
    pub fn tag(self) -> Tag {
        self.row().1
    }
    pub fn vr(self) -> VR {
        self.row().2
    }
    pub fn keyword(self) -> &'static str {
        self.row().3
    }
    pub fn level(self) -> QueryLevel {
        self.row().4
    }
    pub fn from_tag(tag: Tag) -> Option<Key> {
        KEYS.iter().find(|r| r.1 == tag).map(|r| r.0)
    }
    /// By keyword (`PatientName`) or by tag as eight hex digits (`00100010`).
    pub fn from_name(name: &str) -> Option<Key> {
        KEYS.iter()
            .find(|r| r.3 == name || tag_hex(r.1).eq_ignore_ascii_case(name))
            .map(|r| r.0)
    }
    /// Counts and the like are returned, never matched.
    pub fn matchable(self) -> bool {
        !matches!(
            self,
            NumberOfStudyRelatedSeries
                | NumberOfStudyRelatedInstances
                | NumberOfPatientRelatedStudies
                | NumberOfSeriesRelatedInstances
                | AvailableTransferSyntaxUid
                | Rows
                | Columns
                | NumberOfFrames
        )
    }
}

fn tag_hex(t: Tag) -> String {
    format!("{:04X}{:04X}", t.group(), t.element())
}

/// How one key is matched (PS3.4 C.2.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// Exact value (person names case-insensitively).
    Single(String),
    /// `*` any run of characters, `?` exactly one.
    Wildcard(String),
    /// Inclusive range of DA/TM values as `YYYYMMDD` / `HHMMSS`; either end may be open.
    Range {
        from: Option<String>,
        to: Option<String>,
    },
    /// Any of these UIDs.
    List(Vec<String>),
}

/// Why a query was refused. Each text is what the querying user reads.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("unknown query key {0:?}")]
    UnknownKey(String),
    #[error("invalid value {value:?} for {key}: {why}")]
    BadValue {
        key: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("Query/Retrieve Level (0008,0052) is missing or not PATIENT, STUDY, SERIES or IMAGE")]
    BadLevel,
    #[error("invalid {name}: {value:?}")]
    BadParameter { name: &'static str, value: String },
}

/// One query, from QIDO-RS or C-FIND.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub level: QueryLevel,
    pub filters: Vec<(Key, Matcher)>,
    /// Keys to return besides the level's defaults (C-FIND identifier keys, QIDO includefield).
    pub return_keys: Vec<Key>,
    /// `includefield=all`.
    pub include_all: bool,
    /// Person names match any name component by prefix, case-insensitively.
    pub fuzzy: bool,
    pub limit: Option<u32>,
    pub offset: u32,
    /// Keys in the request the hub cannot match on (reported, then ignored).
    pub ignored: Vec<String>,
}

impl Query {
    pub fn new(level: QueryLevel) -> Self {
        Query {
            level,
            filters: Vec::new(),
            return_keys: Vec::new(),
            include_all: false,
            fuzzy: false,
            limit: None,
            offset: 0,
            ignored: Vec::new(),
        }
    }

    /// The matcher for a key, if the query has one.
    pub fn filter(&self, key: Key) -> Option<&Matcher> {
        self.filters.iter().find(|(k, _)| *k == key).map(|(_, m)| m)
    }

    /// Adds a key with its raw value: empty is universal matching (return only).
    pub fn add(&mut self, key: Key, raw: &str) -> Result<(), QueryError> {
        if !self.return_keys.contains(&key) {
            self.return_keys.push(key);
        }
        let raw = raw.trim_matches(|c: char| c == '\0' || c == ' ');
        if raw.is_empty() || raw == "*" || !key.matchable() {
            return Ok(());
        }
        let m = matcher(key, raw)?;
        self.filters.retain(|(k, _)| *k != key);
        self.filters.push((key, m));
        Ok(())
    }

    /// QIDO-RS query parameters (PS3.18 §8.3.4): `{attribute}={value}`, `includefield`, `fuzzymatching`,
    /// `limit`, `offset`. Unknown attributes are kept in `ignored` (the response warns about them).
    pub fn from_qido(level: QueryLevel, params: &[(String, String)]) -> Result<Query, QueryError> {
        let mut q = Query::new(level);
        for (name, value) in params {
            match name.as_str() {
                "includefield" => {
                    for f in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                        if f == "all" {
                            q.include_all = true;
                        } else if let Some(k) = Key::from_name(f) {
                            if !q.return_keys.contains(&k) {
                                q.return_keys.push(k);
                            }
                        } else {
                            q.ignored.push(f.to_string());
                        }
                    }
                }
                "fuzzymatching" => q.fuzzy = value == "true",
                "limit" => {
                    q.limit = Some(value.parse().map_err(|_| QueryError::BadParameter {
                        name: "limit",
                        value: value.clone(),
                    })?)
                }
                "offset" => {
                    q.offset = value.parse().map_err(|_| QueryError::BadParameter {
                        name: "offset",
                        value: value.clone(),
                    })?
                }
                _ => match Key::from_name(name) {
                    Some(k) => q.add(k, value)?,
                    None => q.ignored.push(name.clone()),
                },
            }
        }
        Ok(q)
    }

    /// A C-FIND identifier (PS3.4 C.4.1): the level from (0008,0052), every other element a key.
    pub fn from_identifier(id: &InMemDicomObject) -> Result<Query, QueryError> {
        let level = id
            .element_opt(tags::QUERY_RETRIEVE_LEVEL)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .and_then(|s| QueryLevel::parse(&s))
            .ok_or(QueryError::BadLevel)?;
        let mut q = Query::new(level);
        for elem in id.iter() {
            let tag = elem.header().tag;
            if tag == tags::QUERY_RETRIEVE_LEVEL || tag == tags::SPECIFIC_CHARACTER_SET {
                continue;
            }
            match Key::from_tag(tag) {
                Some(k) => {
                    let raw = elem.to_str().map(|s| s.to_string()).unwrap_or_default();
                    q.add(k, &raw)?;
                }
                None => q.ignored.push(tag_hex(tag)),
            }
        }
        Ok(q)
    }
}

fn matcher(key: Key, raw: &str) -> Result<Matcher, QueryError> {
    let bad = |why| QueryError::BadValue {
        key: key.keyword(),
        value: raw.to_string(),
        why,
    };
    match key.vr() {
        VR::UI => {
            let uids: Vec<String> = raw
                .split('\\')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect();
            if uids
                .iter()
                .any(|u| u.len() > 64 || !u.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            {
                return Err(bad("a UID is digits and dots, at most 64 characters"));
            }
            Ok(if uids.len() == 1 {
                Matcher::Single(uids.into_iter().next().unwrap_or_default())
            } else {
                Matcher::List(uids)
            })
        }
        VR::DA | VR::TM => {
            let norm = |s: &str| -> Result<Option<String>, QueryError> {
                let s: String = s.chars().filter(|c| *c != ':').collect();
                let s = s.split('.').next().unwrap_or("").to_string();
                if s.is_empty() {
                    return Ok(None);
                }
                let ok = match key.vr() {
                    VR::DA => s.len() == 8,
                    _ => (2..=6).contains(&s.len()) && s.len().is_multiple_of(2),
                } && s.bytes().all(|b| b.is_ascii_digit());
                if ok {
                    Ok(Some(s))
                } else if key.vr() == VR::DA {
                    Err(bad("a date is YYYYMMDD, a range YYYYMMDD-YYYYMMDD"))
                } else {
                    Err(bad("a time is HHMMSS, a range HHMMSS-HHMMSS"))
                }
            };
            match raw.split_once('-') {
                Some((a, b)) => {
                    let (from, to) = (norm(a)?, norm(b)?);
                    if from.is_none() && to.is_none() {
                        return Err(bad("a range needs at least one end"));
                    }
                    Ok(Matcher::Range { from, to })
                }
                None => Ok(Matcher::Single(norm(raw)?.unwrap_or_default())),
            }
        }
        _ if raw.contains('\\') && key.vr() == VR::CS => Ok(Matcher::List(
            raw.split('\\').map(|s| s.trim().to_string()).collect(),
        )),
        _ if raw.contains(['*', '?']) => Ok(Matcher::Wildcard(raw.to_string())),
        _ => Ok(Matcher::Single(raw.to_string())),
    }
}

/// One catalog match. Patient and study fields are always set; series and instance fields at
/// their levels. Counts are filled for the level they describe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryMatch {
    pub patient_name: Option<String>,
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub patient_study_count: Option<i64>,
    pub study_uid: String,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub study_description: Option<String>,
    pub referring_physician_name: Option<String>,
    pub modalities_in_study: Vec<String>,
    pub study_series_count: Option<i64>,
    pub study_instance_count: Option<i64>,
    pub series_uid: Option<String>,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    pub series_instance_count: Option<i64>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub number_of_frames: Option<i64>,
    pub transfer_syntax_uid: Option<String>,
}

impl QueryMatch {
    /// The value of one key as DICOM strings (empty when unknown).
    pub fn values(&self, key: Key) -> Vec<String> {
        let one = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
        let num = |v: Option<i64>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        match key {
            PatientName => one(&self.patient_name),
            PatientId => vec![self.patient_id.clone()],
            IssuerOfPatientId => vec![self.issuer_of_patient_id.clone()],
            PatientBirthDate => one(&self.patient_birth_date),
            PatientSex => one(&self.patient_sex),
            NumberOfPatientRelatedStudies => num(self.patient_study_count),
            StudyInstanceUid => vec![self.study_uid.clone()],
            StudyDate => one(&self.study_date),
            StudyTime => one(&self.study_time),
            AccessionNumber => one(&self.accession_number),
            StudyId => one(&self.study_id),
            StudyDescription => one(&self.study_description),
            ReferringPhysicianName => one(&self.referring_physician_name),
            ModalitiesInStudy => self.modalities_in_study.clone(),
            NumberOfStudyRelatedSeries => num(self.study_series_count),
            NumberOfStudyRelatedInstances => num(self.study_instance_count),
            SeriesInstanceUid => one(&self.series_uid),
            Modality => one(&self.modality),
            SeriesNumber => num(self.series_number),
            SeriesDescription => one(&self.series_description),
            BodyPartExamined => one(&self.body_part_examined),
            NumberOfSeriesRelatedInstances => num(self.series_instance_count),
            SopInstanceUid => one(&self.sop_instance_uid),
            SopClassUid => one(&self.sop_class_uid),
            InstanceNumber => num(self.instance_number),
            Rows => num(self.rows),
            Columns => num(self.columns),
            NumberOfFrames => num(self.number_of_frames),
            AvailableTransferSyntaxUid => one(&self.transfer_syntax_uid),
        }
    }
}

/// The attributes QIDO-RS returns by default at each level (PS3.18 Table 10.6.3-3..5), before
/// `includefield`.
pub fn qido_defaults(level: QueryLevel) -> &'static [Key] {
    match level {
        QueryLevel::Patient => &[
            PatientName,
            PatientId,
            IssuerOfPatientId,
            PatientBirthDate,
            PatientSex,
            NumberOfPatientRelatedStudies,
        ],
        QueryLevel::Study => &[
            StudyDate,
            StudyTime,
            AccessionNumber,
            ModalitiesInStudy,
            ReferringPhysicianName,
            PatientName,
            PatientId,
            IssuerOfPatientId,
            PatientBirthDate,
            PatientSex,
            StudyInstanceUid,
            StudyId,
            StudyDescription,
            NumberOfStudyRelatedSeries,
            NumberOfStudyRelatedInstances,
        ],
        QueryLevel::Series => &[
            Modality,
            SeriesInstanceUid,
            SeriesNumber,
            SeriesDescription,
            BodyPartExamined,
            NumberOfSeriesRelatedInstances,
            StudyInstanceUid,
        ],
        QueryLevel::Instance => &[
            SopClassUid,
            SopInstanceUid,
            InstanceNumber,
            Rows,
            Columns,
            NumberOfFrames,
            AvailableTransferSyntaxUid,
            StudyInstanceUid,
            SeriesInstanceUid,
        ],
    }
}

/// Every key the hub knows, for `includefield=all`.
pub fn all_keys() -> impl Iterator<Item = Key> {
    KEYS.iter().map(|r| r.0)
}

/// The C-FIND response identifier: exactly the requested keys (PS3.4 C.4.1.1.3.2), with the level
/// and the character set (UTF-8: names are stored as received, decoded).
pub fn cfind_response(q: &Query, m: &QueryMatch) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(q.level.as_str()),
    ));
    for &k in &q.return_keys {
        put(&mut obj, k, m.values(k));
    }
    obj
}

/// The attributes of one QIDO-RS result: the level's defaults, the query's keys and `includefield`.
pub fn qido_keys(q: &Query) -> Vec<Key> {
    let mut keys: Vec<Key> = qido_defaults(q.level).to_vec();
    let extra: Vec<Key> = if q.include_all {
        all_keys().filter(|k| k.level() <= q.level).collect()
    } else {
        q.return_keys.clone()
    };
    for k in extra {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

fn put(obj: &mut InMemDicomObject, k: Key, values: Vec<String>) {
    let value = match (k.vr(), values.as_slice()) {
        (_, []) => PrimitiveValue::Empty,
        (VR::US, vs) => {
            PrimitiveValue::U16(vs.iter().filter_map(|v| v.parse::<u16>().ok()).collect())
        }
        (_, [v]) => PrimitiveValue::from(v.as_str()),
        (_, vs) => PrimitiveValue::Strs(vs.iter().cloned().collect()),
    };
    obj.put(DataElement::new(k.tag(), k.vr(), value));
}

/// The same attributes as DICOM JSON (PS3.18 Annex F), for QIDO-RS.
pub fn qido_json(keys: &[Key], m: &QueryMatch) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for &k in keys {
        let values = m.values(k);
        let vr = k.vr();
        let mut attr = serde_json::Map::new();
        attr.insert("vr".into(), vr.to_string().into());
        if !values.is_empty() {
            let vs: Vec<serde_json::Value> = values
                .into_iter()
                .map(|v| match vr {
                    VR::PN => serde_json::json!({ "Alphabetic": v }),
                    VR::IS | VR::US => v
                        .parse::<i64>()
                        .map(serde_json::Value::from)
                        .unwrap_or(serde_json::Value::String(v)),
                    _ => serde_json::Value::String(v),
                })
                .collect();
            attr.insert("Value".into(), vs.into());
        }
        map.insert(tag_hex(k.tag()), attr.into());
    }
    map.into()
}

/// Matches a value against a wildcard pattern (`*`, `?`) — for callers that filter in memory.
pub fn wildcard_matches(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| {
        if case_insensitive {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let (p, v): (Vec<char>, Vec<char>) = (
        fold(pattern).chars().collect(),
        fold(value).chars().collect(),
    );
    // Iterative glob with backtracking to the last star.
    let (mut pi, mut vi, mut star, mut mark) = (0usize, 0usize, None, 0usize);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qido(level: QueryLevel, pairs: &[(&str, &str)]) -> Result<Query, QueryError> {
        let params: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Query::from_qido(level, &params)
    }

    #[test]
    fn every_key_has_a_row() {
        for k in all_keys() {
            assert_eq!(Key::from_tag(k.tag()), Some(k));
            assert_eq!(Key::from_name(k.keyword()), Some(k));
        }
        assert_eq!(Key::from_name("00100010"), Some(PatientName));
    }

    #[test]
    fn values_become_the_matchers_of_ps3_4() {
        let q = qido(
            QueryLevel::Study,
            &[
                ("PatientName", "Ces*"),
                ("StudyDate", "20261101-20261130"),
                ("StudyInstanceUID", "1.2.3\\1.2.4"),
                ("AccessionNumber", "A1"),
                ("StudyTime", "-1200"),
                ("ModalitiesInStudy", ""),
                ("limit", "10"),
                ("offset", "5"),
                ("includefield", "StudyDescription,00081030,Nonsense"),
                ("fuzzymatching", "true"),
                ("Colour", "red"),
            ],
        )
        .unwrap();
        assert_eq!(
            q.filter(PatientName),
            Some(&Matcher::Wildcard("Ces*".into()))
        );
        assert_eq!(
            q.filter(StudyDate),
            Some(&Matcher::Range {
                from: Some("20261101".into()),
                to: Some("20261130".into())
            })
        );
        assert_eq!(
            q.filter(StudyInstanceUid),
            Some(&Matcher::List(vec!["1.2.3".into(), "1.2.4".into()]))
        );
        assert_eq!(
            q.filter(AccessionNumber),
            Some(&Matcher::Single("A1".into()))
        );
        assert_eq!(
            q.filter(StudyTime),
            Some(&Matcher::Range {
                from: None,
                to: Some("1200".into())
            })
        );
        assert_eq!(q.filter(ModalitiesInStudy), None, "empty is universal");
        assert!(q.return_keys.contains(&ModalitiesInStudy));
        assert!(q.return_keys.contains(&StudyDescription));
        assert_eq!((q.limit, q.offset, q.fuzzy), (Some(10), 5, true));
        assert_eq!(
            q.ignored,
            vec!["Nonsense".to_string(), "Colour".to_string()]
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        let e = qido(QueryLevel::Study, &[("StudyDate", "2026-11")]).unwrap_err();
        assert!(e.to_string().contains("StudyDate"), "{e}");
        let e = qido(QueryLevel::Study, &[("StudyInstanceUID", "1.2.x")]).unwrap_err();
        assert!(e.to_string().contains("StudyInstanceUID"), "{e}");
        assert!(qido(QueryLevel::Study, &[("limit", "-1")]).is_err());
        assert!(qido(QueryLevel::Study, &[("StudyDate", "-")]).is_err());
    }

    #[test]
    fn a_cfind_identifier_is_a_query_and_the_response_echoes_its_keys() {
        let mut id = InMemDicomObject::new_empty();
        id.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("STUDY"),
        ));
        id.put(DataElement::new(
            tags::PATIENT_ID,
            VR::LO,
            PrimitiveValue::from("HX0001"),
        ));
        id.put(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::Empty,
        ));
        id.put(DataElement::new(
            tags::MODALITIES_IN_STUDY,
            VR::CS,
            PrimitiveValue::from("CT\\MR"),
        ));
        id.put(DataElement::new(
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            VR::IS,
            PrimitiveValue::Empty,
        ));
        id.put(DataElement::new(
            Tag(0x0009, 0x0010),
            VR::LO,
            PrimitiveValue::from("private"),
        ));
        let q = Query::from_identifier(&id).unwrap();
        assert_eq!(q.level, QueryLevel::Study);
        assert_eq!(q.filter(PatientId), Some(&Matcher::Single("HX0001".into())));
        assert_eq!(
            q.filter(ModalitiesInStudy),
            Some(&Matcher::List(vec!["CT".into(), "MR".into()]))
        );
        let m = QueryMatch {
            patient_id: "HX0001".into(),
            study_uid: "2.25.1".into(),
            modalities_in_study: vec!["CT".into()],
            study_instance_count: Some(3),
            ..Default::default()
        };
        let r = cfind_response(&q, &m);
        assert_eq!(
            r.element(tags::STUDY_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap(),
            "2.25.1"
        );
        assert_eq!(
            r.element(tags::QUERY_RETRIEVE_LEVEL)
                .unwrap()
                .to_str()
                .unwrap(),
            "STUDY"
        );
        assert_eq!(
            r.element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES)
                .unwrap()
                .to_str()
                .unwrap(),
            "3"
        );
        assert!(
            r.element_opt(tags::PATIENT_NAME).unwrap().is_none(),
            "only requested keys"
        );

        let mut bad = InMemDicomObject::new_empty();
        bad.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("WARD"),
        ));
        assert_eq!(Query::from_identifier(&bad), Err(QueryError::BadLevel));
    }

    #[test]
    fn qido_json_uses_the_standard_value_forms() {
        let q = qido(QueryLevel::Study, &[]).unwrap();
        let m = QueryMatch {
            patient_name: Some("Ceshi^Yi".into()),
            patient_id: "HX0001".into(),
            study_uid: "2.25.1".into(),
            study_series_count: Some(2),
            ..Default::default()
        };
        let j = qido_json(&qido_keys(&q), &m);
        assert_eq!(j["00100010"]["Value"][0]["Alphabetic"], "Ceshi^Yi");
        assert_eq!(j["00201206"]["Value"][0], 2);
        assert_eq!(j["00080020"], serde_json::json!({ "vr": "DA" }));
    }

    #[test]
    fn wildcards_follow_ps3_4() {
        assert!(wildcard_matches("Ces*", "Ceshi^Yi", false));
        assert!(wildcard_matches("*^Yi", "Ceshi^Yi", false));
        assert!(wildcard_matches("C?shi*", "Ceshi^Yi", false));
        assert!(!wildcard_matches("ces*", "Ceshi^Yi", false));
        assert!(wildcard_matches("ces*", "Ceshi^Yi", true));
        assert!(!wildcard_matches("C?", "Ceshi", false));
    }
}
