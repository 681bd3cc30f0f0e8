//! DICOM Part 10 files → [`DicomMeta`], the attributes the catalog keeps, and the instance's
//! metadata as DICOM JSON with bulk data replaced by references. Pixel data is parsed as bytes (so a
//! truncated file is caught) but never decoded here; files above [`FULL_PARSE_LIMIT`] are parsed up
//! to the pixel data only, so memory stays bounded whatever the instance size.

use std::io::Cursor;
use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions, file::ReadPreamble};
use yilian_domain::{
    IdError, LocalPatientId, SeriesInstanceUid, SopClassUid, SopInstanceUid, StudyInstanceUid,
};

/// Why a DICOM part was refused. Each variant's text is what the uploader reads.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("not a DICOM Part 10 file: the 'DICM' prefix is missing")]
    NotDicom,
    #[error("the DICOM file could not be read (truncated or malformed): {0}")]
    Malformed(String),
    #[error("required attribute {name} {tag} is missing or empty")]
    Missing { name: &'static str, tag: Tag },
    #[error("attribute {name} is invalid: {source}")]
    BadId {
        name: &'static str,
        #[source]
        source: IdError,
    },
    #[error("SOP Instance UID in the file meta ({meta}) differs from the data set ({dataset})")]
    MetaMismatch { meta: String, dataset: String },
}

/// What the catalog keeps of one instance.
#[derive(Clone, Debug)]
pub struct DicomMeta {
    pub sop_class_uid: SopClassUid,
    pub sop_instance_uid: SopInstanceUid,
    pub study_instance_uid: StudyInstanceUid,
    pub series_instance_uid: SeriesInstanceUid,
    pub transfer_syntax_uid: String,
    /// PatientID with IssuerOfPatientID when the file carries one.
    pub patient_id: String,
    pub issuer_of_patient_id: Option<String>,
    /// The patient's other identifiers: Other Patient IDs Sequence (0010,1002) items with their
    /// issuers, then the retired Other Patient IDs (0010,1000) values (no issuer). A resident ID among
    /// them links the study to the patient's results at every site.
    pub other_patient_ids: Vec<OtherPatientId>,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_description: Option<String>,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub number_of_frames: Option<i64>,
    pub study_id: Option<String>,
    pub referring_physician_name: Option<String>,
}

/// One of a patient's other identifiers as the file carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct OtherPatientId {
    pub issuer: Option<String>,
    pub id: String,
}

impl std::fmt::Debug for OtherPatientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OtherPatientId({:?}, {})",
            self.issuer,
            yilian_domain::mask_identifier(&self.id)
        )
    }
}

impl DicomMeta {
    /// Every identifier the file gives the patient, each with its issuer (`default_issuer` for
    /// those without one): PatientID first, then the other IDs, without repeats.
    pub fn all_patient_ids(&self, default_issuer: &str) -> Vec<LocalPatientId> {
        let mut out = vec![self.local_patient_id(default_issuer)];
        for o in &self.other_patient_ids {
            let id = LocalPatientId {
                issuer: o
                    .issuer
                    .clone()
                    .unwrap_or_else(|| default_issuer.to_string()),
                id: o.id.clone(),
            };
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }

    pub fn local_patient_id(&self, default_issuer: &str) -> LocalPatientId {
        LocalPatientId {
            issuer: self
                .issuer_of_patient_id
                .clone()
                .unwrap_or_else(|| default_issuer.to_string()),
            id: self.patient_id.clone(),
        }
    }
}

/// Files up to this size are parsed whole (every element, so any truncation is caught); larger
/// files are parsed up to Pixel Data, whose declared size is then checked against the file size.
pub const FULL_PARSE_LIMIT: u64 = 16 * 1024 * 1024;

/// Binary values longer than this are not inlined in the metadata: they become bulk data references.
pub const BULK_THRESHOLD: usize = 1024;

/// The placeholder that starts every BulkDataURI in stored metadata; the server replaces it with the
/// instance's URL followed by `/bulkdata`.
pub const BULK_PLACEHOLDER: &str = "{bulk}";

/// A parsed instance: the catalog attributes and the metadata document.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub meta: DicomMeta,
    /// DICOM JSON (PS3.18 Annex F) of the data set; bulk values are `BulkDataURI`s that start with
    /// [`BULK_PLACEHOLDER`] followed by the element path (`/7FE00010`, `/54000100/1/54001010`).
    pub metadata: serde_json::Value,
}

/// Parses a Part 10 file held in memory: catalog attributes and metadata.
pub fn parse_bytes(bytes: &[u8]) -> Result<Parsed, DicomError> {
    let mut obj = open(bytes)?;
    let meta = meta_of(&obj)?;
    // Pixel data becomes a bulk reference anyway: drop it before serialising rather than base64-encode
    // megabytes only to throw them away.
    let pixels = obj
        .remove_element(tags::PIXEL_DATA)
        .then(|| pixel_vr(&obj, &meta));
    let mut metadata = metadata_json(&obj)?;
    if let (Some(vr), Some(map)) = (pixels, metadata.as_object_mut()) {
        map.insert(
            "7FE00010".into(),
            serde_json::json!({ "vr": vr, "BulkDataURI": format!("{BULK_PLACEHOLDER}/7FE00010") }),
        );
    }
    Ok(Parsed { meta, metadata })
}

/// OW for native pixel data over 8 bits, else OB (encapsulated pixel data is always OB).
fn pixel_vr(obj: &DefaultDicomObject, meta: &DicomMeta) -> &'static str {
    let encapsulated = meta.transfer_syntax_uid.starts_with("1.2.840.10008.1.2.4")
        || meta.transfer_syntax_uid == "1.2.840.10008.1.2.5";
    if !encapsulated && int(obj, tags::BITS_ALLOCATED).unwrap_or(16) > 8 {
        "OW"
    } else {
        "OB"
    }
}

/// Parses a Part 10 file on disk. Whole when small; above [`FULL_PARSE_LIMIT`] only up to Pixel
/// Data, so a multi-gigabyte instance costs no more memory than its header.
pub fn parse_file(path: &Path) -> Result<Parsed, DicomError> {
    let len = std::fs::metadata(path)
        .map_err(|e| DicomError::Malformed(e.to_string()))?
        .len();
    if len <= FULL_PARSE_LIMIT {
        let bytes = std::fs::read(path).map_err(|e| DicomError::Malformed(e.to_string()))?;
        return parse_bytes(&bytes);
    }
    let mut head = [0u8; 132];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| DicomError::Malformed(e.to_string()))?;
        f.read_exact(&mut head).map_err(|_| DicomError::NotDicom)?;
    }
    let preamble = if &head[128..132] == b"DICM" {
        ReadPreamble::Always
    } else if head.starts_with(b"DICM") {
        ReadPreamble::Never
    } else {
        return Err(DicomError::NotDicom);
    };
    let obj = OpenFileOptions::new()
        .read_preamble(preamble)
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| DicomError::Malformed(e.to_string()))?;
    let meta = meta_of(&obj)?;
    // Native pixel data has a known size: a file shorter than its pixels is truncated.
    let native = !matches!(
        meta.transfer_syntax_uid.as_str(),
        ts if ts.starts_with("1.2.840.10008.1.2.4") || ts == "1.2.840.10008.1.2.5"
    );
    if native {
        let bits = int(&obj, tags::BITS_ALLOCATED).unwrap_or(0).max(0) as u64;
        let spp = int(&obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as u64;
        let pixels = (meta.rows.unwrap_or(0).max(0) as u64)
            .saturating_mul(meta.columns.unwrap_or(0).max(0) as u64)
            .saturating_mul(meta.number_of_frames.unwrap_or(1).max(1) as u64)
            .saturating_mul(spp)
            .saturating_mul(bits)
            / 8;
        if pixels > len {
            return Err(DicomError::Malformed(format!(
                "the pixel data needs {pixels} bytes but the file has only {len}"
            )));
        }
    }
    let mut metadata = metadata_json(&obj)?;
    if let Some(map) = metadata.as_object_mut() {
        let vr = pixel_vr(&obj, &meta);
        map.insert(
            "7FE00010".into(),
            serde_json::json!({ "vr": vr, "BulkDataURI": format!("{BULK_PLACEHOLDER}/7FE00010") }),
        );
    }
    Ok(Parsed { meta, metadata })
}

/// DICOM JSON of the data set (not the file meta group), with binary values longer than
/// [`BULK_THRESHOLD`] and all pixel data replaced by `BulkDataURI` references.
pub fn metadata_json(obj: &DefaultDicomObject) -> Result<serde_json::Value, DicomError> {
    let dataset: &dicom_object::InMemDicomObject = obj;
    let mut v = dicom_json::to_value(dataset)
        .map_err(|e| DicomError::Malformed(format!("cannot express as DICOM JSON: {e}")))?;
    bulk_to_references(&mut v, BULK_PLACEHOLDER);
    Ok(v)
}

fn bulk_to_references(v: &mut serde_json::Value, path: &str) {
    let Some(map) = v.as_object_mut() else {
        return;
    };
    for (tag, attr) in map.iter_mut() {
        let here = format!("{path}/{tag}");
        let Some(a) = attr.as_object_mut() else {
            continue;
        };
        let big_inline = a
            .get("InlineBinary")
            .and_then(|b| b.as_str())
            .is_some_and(|b| b.len() * 3 / 4 > BULK_THRESHOLD);
        let pixels = tag == "7FE00010" || tag == "7FE00008" || tag == "7FE00009";
        if big_inline || (pixels && !a.contains_key("BulkDataURI")) {
            a.remove("InlineBinary");
            a.remove("Value");
            a.insert("BulkDataURI".into(), serde_json::Value::String(here));
            continue;
        }
        if a.get("vr").and_then(|x| x.as_str()) == Some("SQ")
            && let Some(items) = a.get_mut("Value").and_then(|x| x.as_array_mut())
        {
            for (i, item) in items.iter_mut().enumerate() {
                bulk_to_references(item, &format!("{here}/{}", i + 1));
            }
        }
    }
}

/// The data set of a Part 10 file: the bytes after the file meta group (by its group length), so two
/// senders' copies of one instance compare equal whatever file meta each wrote. `None` when the file
/// has no usable group length.
pub fn data_set(part10: &[u8]) -> Option<&[u8]> {
    let body = if part10.len() >= 132 && &part10[128..132] == b"DICM" {
        &part10[128..]
    } else if part10.starts_with(b"DICM") {
        part10
    } else {
        return None;
    };
    // (0002,0000) UL, explicit VR little endian: tag 4 + VR 2 + length 2 + value 4.
    let head = body.get(4..16)?;
    if head[..6] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
        return None;
    }
    let group_len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    body.get(16usize.checked_add(group_len)?..)
}

/// Opens a Part 10 file held in memory (with or without the 128-byte preamble).
pub fn open(bytes: &[u8]) -> Result<DefaultDicomObject, DicomError> {
    let body = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        &bytes[128..]
    } else if bytes.starts_with(b"DICM") {
        bytes
    } else {
        return Err(DicomError::NotDicom);
    };
    crate::lengths::check(body).map_err(DicomError::Malformed)?;
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(Cursor::new(body))
        .map_err(|e| DicomError::Malformed(e.to_string()))
}

fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.element_opt(tag).ok().flatten()?;
    let s = elem.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

/// Other Patient IDs (0010,1000): retired, but older modalities still send it.
const OTHER_PATIENT_IDS: Tag = Tag(0x0010, 0x1000);

/// Other Patient IDs Sequence items (PatientID + IssuerOfPatientID), then the retired multi-valued
/// Other Patient IDs. Items without a PatientID are skipped; at most 16 are kept.
fn other_patient_ids(obj: &DefaultDicomObject) -> Vec<OtherPatientId> {
    fn clean(s: &str) -> Option<String> {
        let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!s.is_empty()).then(|| s.to_string())
    }
    let mut out = Vec::new();
    let items = obj
        .element_opt(tags::OTHER_PATIENT_I_DS_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items());
    for item in items.unwrap_or(&[]) {
        let field = |tag| {
            item.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_str().ok())
                .and_then(|s| clean(&s))
        };
        if let Some(id) = field(tags::PATIENT_ID) {
            out.push(OtherPatientId {
                issuer: field(tags::ISSUER_OF_PATIENT_ID),
                id,
            });
        }
    }
    if let Some(values) = obj
        .element_opt(OTHER_PATIENT_IDS)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_str().ok())
    {
        for v in values.iter() {
            if let Some(id) = clean(v) {
                out.push(OtherPatientId { issuer: None, id });
            }
        }
    }
    out.truncate(16);
    out
}

fn int(obj: &DefaultDicomObject, tag: Tag) -> Option<i64> {
    obj.element_opt(tag).ok().flatten()?.to_int::<i64>().ok()
}

fn required(obj: &DefaultDicomObject, tag: Tag, name: &'static str) -> Result<String, DicomError> {
    text(obj, tag).ok_or(DicomError::Missing { name, tag })
}

fn uid<T>(
    obj: &DefaultDicomObject,
    tag: Tag,
    name: &'static str,
    make: fn(String) -> Result<T, IdError>,
) -> Result<T, DicomError> {
    make(required(obj, tag, name)?).map_err(|source| DicomError::BadId { name, source })
}

/// Parses a whole Part 10 file and extracts its catalog attributes.
pub fn parse_dicom(bytes: &[u8]) -> Result<DicomMeta, DicomError> {
    let obj = open(bytes)?;
    meta_of(&obj)
}

/// Extracts catalog attributes from an opened object.
pub fn meta_of(obj: &DefaultDicomObject) -> Result<DicomMeta, DicomError> {
    let sop_instance_uid = uid(
        obj,
        tags::SOP_INSTANCE_UID,
        "SOP Instance UID",
        SopInstanceUid::new,
    )?;
    let meta_sop = obj
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches(['\0', ' ']);
    if !meta_sop.is_empty() && meta_sop != sop_instance_uid.as_str() {
        return Err(DicomError::MetaMismatch {
            meta: meta_sop.to_string(),
            dataset: sop_instance_uid.to_string(),
        });
    }
    Ok(DicomMeta {
        sop_class_uid: uid(obj, tags::SOP_CLASS_UID, "SOP Class UID", SopClassUid::new)?,
        sop_instance_uid,
        study_instance_uid: uid(
            obj,
            tags::STUDY_INSTANCE_UID,
            "Study Instance UID",
            StudyInstanceUid::new,
        )?,
        series_instance_uid: uid(
            obj,
            tags::SERIES_INSTANCE_UID,
            "Series Instance UID",
            SeriesInstanceUid::new,
        )?,
        transfer_syntax_uid: obj
            .meta()
            .transfer_syntax()
            .trim_end_matches(['\0', ' '])
            .to_string(),
        patient_id: required(obj, tags::PATIENT_ID, "Patient ID")?,
        issuer_of_patient_id: text(obj, tags::ISSUER_OF_PATIENT_ID),
        other_patient_ids: other_patient_ids(obj),
        patient_name: text(obj, tags::PATIENT_NAME),
        patient_birth_date: text(obj, tags::PATIENT_BIRTH_DATE),
        patient_sex: text(obj, tags::PATIENT_SEX),
        study_date: text(obj, tags::STUDY_DATE),
        study_time: text(obj, tags::STUDY_TIME),
        accession_number: text(obj, tags::ACCESSION_NUMBER),
        study_description: text(obj, tags::STUDY_DESCRIPTION),
        modality: text(obj, tags::MODALITY),
        series_number: int(obj, tags::SERIES_NUMBER),
        series_description: text(obj, tags::SERIES_DESCRIPTION),
        body_part_examined: text(obj, tags::BODY_PART_EXAMINED),
        instance_number: int(obj, tags::INSTANCE_NUMBER),
        rows: int(obj, tags::ROWS),
        columns: int(obj, tags::COLUMNS),
        number_of_frames: int(obj, tags::NUMBER_OF_FRAMES),
        study_id: text(obj, tags::STUDY_ID),
        referring_physician_name: text(obj, tags::REFERRING_PHYSICIAN_NAME),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_fixtures::{InstanceSpec, instance_bytes, instance_bytes_with_other_ids};

    #[test]
    fn reads_the_catalog_attributes() {
        let m = parse_dicom(&instance_bytes(&InstanceSpec::ct(2))).unwrap();
        assert_eq!(m.sop_instance_uid.as_str(), "2.25.1001.1.2");
        assert_eq!(m.study_instance_uid.as_str(), "2.25.1001");
        assert_eq!(m.series_instance_uid.as_str(), "2.25.1001.1");
        assert_eq!(m.sop_class_uid.as_str(), "1.2.840.10008.5.1.4.1.1.2");
        assert_eq!(m.transfer_syntax_uid, "1.2.840.10008.1.2.1");
        assert_eq!(m.patient_id, "HX0001");
        assert_eq!(m.issuer_of_patient_id.as_deref(), Some("HX"));
        assert_eq!(m.modality.as_deref(), Some("CT"));
        assert_eq!(m.instance_number, Some(2));
        assert_eq!((m.rows, m.columns), (Some(64), Some(64)));
        assert_eq!(m.study_date.as_deref(), Some("20261120"));
    }

    #[test]
    fn metadata_is_dicom_json_with_pixels_as_bulk_references() {
        let p = parse_bytes(&instance_bytes(&InstanceSpec::ct(2))).unwrap();
        let md = &p.metadata;
        assert_eq!(md["0020000D"]["Value"][0], "2.25.1001");
        assert_eq!(md["00080060"]["Value"][0], "CT");
        assert_eq!(md["00100010"]["vr"], "PN");
        assert_eq!(md["7FE00010"]["BulkDataURI"], "{bulk}/7FE00010");
        assert!(md["7FE00010"].get("InlineBinary").is_none());
        assert!(
            md.get("00020010").is_none(),
            "file meta is not part of the data set"
        );
    }

    #[test]
    fn a_large_file_is_parsed_to_its_header_and_checked_for_truncation() {
        let dir = std::env::temp_dir().join(format!("yl-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 3000 × 3000 × 2 bytes = 18 MB: above the full-parse limit.
        let spec = InstanceSpec {
            rows: 3000,
            columns: 3000,
            ..InstanceSpec::ct(7)
        };
        let bytes = instance_bytes(&spec);
        assert!(bytes.len() as u64 > FULL_PARSE_LIMIT);
        let whole = dir.join("whole.dcm");
        std::fs::write(&whole, &bytes).unwrap();
        let p = parse_file(&whole).unwrap();
        assert_eq!(p.meta.sop_instance_uid.as_str(), "2.25.1001.1.7");
        assert_eq!(p.metadata["7FE00010"]["BulkDataURI"], "{bulk}/7FE00010");
        let cut = dir.join("cut.dcm");
        for keep in [bytes.len() / 2, bytes.len() - 1000] {
            std::fs::write(&cut, &bytes[..keep]).unwrap();
            let e = parse_file(&cut).unwrap_err();
            assert!(matches!(e, DicomError::Malformed(_)), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_data_set_ignores_the_file_meta() {
        let bytes = instance_bytes(&InstanceSpec::ct(2));
        let ds = data_set(&bytes).unwrap();
        assert!(bytes.ends_with(ds) && ds.len() < bytes.len() - 132);
        // Another preamble and another file meta, same data set.
        let mut other = bytes[128..].to_vec();
        assert_eq!(data_set(&other), Some(ds));
        other[20] ^= 0xFF; // inside the meta group
        assert_eq!(data_set(&other), Some(ds));
        assert_eq!(data_set(b"DICM"), None);
    }

    #[test]
    fn refuses_what_is_not_dicom() {
        assert!(matches!(parse_dicom(b"hello"), Err(DicomError::NotDicom)));
        assert!(matches!(
            parse_dicom(&[0u8; 200]),
            Err(DicomError::NotDicom)
        ));
    }

    #[test]
    fn refuses_every_truncation() {
        let bytes = instance_bytes(&InstanceSpec::ct(1));
        // Every cut inside the file fails cleanly, never panics, never succeeds.
        for cut in (132..bytes.len() - 1)
            .step_by(97)
            .chain([bytes.len() - 1, bytes.len() - 2])
        {
            let r = parse_dicom(&bytes[..cut]);
            assert!(
                r.is_err(),
                "a file cut at {cut} of {} bytes was accepted",
                bytes.len()
            );
        }
    }

    #[test]
    fn reads_the_other_patient_ids_with_their_issuers() {
        let bytes = instance_bytes_with_other_ids(
            &InstanceSpec::ct(1),
            &[
                ("RID", "11010519491231002X"),
                ("HX", "HX0001"),
                ("DS", "D-77"),
            ],
        );
        let m = parse_dicom(&bytes).unwrap();
        assert_eq!(m.other_patient_ids.len(), 3);
        assert_eq!(m.other_patient_ids[0].issuer.as_deref(), Some("RID"));
        assert_eq!(m.other_patient_ids[0].id, "11010519491231002X");
        // PatientID first; the repeat of HX/HX0001 is dropped; a missing issuer is the site's.
        let ids: Vec<(String, String)> = m
            .all_patient_ids("SITE")
            .into_iter()
            .map(|l| (l.issuer, l.id))
            .collect();
        assert_eq!(
            ids,
            [
                ("HX", "HX0001"),
                ("RID", "11010519491231002X"),
                ("DS", "D-77")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(
            parse_dicom(&instance_bytes(&InstanceSpec::ct(1)))
                .unwrap()
                .other_patient_ids
                .is_empty()
        );
        // Identifiers never reach a log line whole.
        assert!(!format!("{:?}", m.other_patient_ids).contains("11010519491231002X"));
    }

    #[test]
    fn refuses_a_missing_study_uid() {
        let spec = InstanceSpec {
            study_uid: String::new(),
            ..InstanceSpec::ct(1)
        };
        let e = parse_dicom(&instance_bytes(&spec)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "required attribute Study Instance UID (0020,000D) is missing or empty"
        );
    }

    #[test]
    fn refuses_a_malformed_uid() {
        let spec = InstanceSpec {
            series_uid: "1.2.abc".into(),
            ..InstanceSpec::ct(1)
        };
        let e = parse_dicom(&instance_bytes(&spec)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("attribute Series Instance UID is invalid"),
            "{e}"
        );
    }
}
