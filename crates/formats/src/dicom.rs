//! DICOM Part 10 files → [`DicomMeta`], the attributes the catalog keeps. Pixel data is parsed as
//! bytes (so a truncated file is caught) but never decoded here.

use std::io::Cursor;

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
}

impl DicomMeta {
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

/// Opens a Part 10 file held in memory (with or without the 128-byte preamble).
pub fn open(bytes: &[u8]) -> Result<DefaultDicomObject, DicomError> {
    let body = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        &bytes[128..]
    } else if bytes.starts_with(b"DICM") {
        bytes
    } else {
        return Err(DicomError::NotDicom);
    };
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_fixtures::{InstanceSpec, instance_bytes};

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
