//! A signed imaging or ECG report as a DICOM Basic Text SR (1.2.840.10008.5.1.4.1.1.88.11), so a
//! member hospital's PACS files it with the images: the study's Patient and General Study modules
//! (same Study Instance UID), a new SR series and instance whose UIDs derive from the report id
//! (`2.25.` + a UUID made from SHA-256, so exporting twice gives the same object), CompletionFlag
//! COMPLETE, VerificationFlag VERIFIED with the signer as verifying observer, a content tree of the
//! title and the findings and impression as TEXT items, and the instances the report covers as
//! Current Requested Procedure Evidence. UTF-8 (`ISO_IR 192`). Pure: typed [`ReportExport`] in, Part
//! 10 bytes out.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use sha2::{Digest, Sha256};
use yilian_domain::UnixMillis;

use crate::fhir_lab::out::instant;
use crate::report_export::ReportExport;

/// Basic Text SR Storage.
pub const BASIC_TEXT_SR: &str = "1.2.840.10008.5.1.4.1.1.88.11";

#[derive(Debug, thiserror::Error)]
pub enum SrError {
    #[error("cannot write the SR: {0}")]
    Write(String),
}

/// A UID under the `2.25` arc from a UUID derived from SHA-256 of `label` (version 8, RFC 9562
/// variant bits set), so the same label always gives the same UID.
pub fn derived_uid(label: &str) -> String {
    let digest = Sha256::digest(label.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// The SR's Series and SOP Instance UIDs for a report.
pub fn sr_uids(report_id: &str) -> (String, String) {
    (
        derived_uid(&format!("yilian.sr.series\n{report_id}")),
        derived_uid(&format!("yilian.sr.instance\n{report_id}")),
    )
}

fn el(tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, value.into())
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        el(tags::CODE_VALUE, VR::SH, value),
        el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        el(tags::CODE_MEANING, VR::LO, meaning),
    ])
}

fn text_item(concept: InMemDicomObject, text: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        el(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
        el(tags::VALUE_TYPE, VR::CS, "TEXT"),
        seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![concept]),
        el(tags::TEXT_VALUE, VR::UT, text),
    ])
}

/// Local date (`YYYYMMDD`), time (`HHMMSS`) and date-time with offset of an instant.
fn local(t: UnixMillis, offset_minutes: i16) -> (String, String, String) {
    let shifted = instant(UnixMillis(t.0 + i64::from(offset_minutes) * 60_000));
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`
    let part = |a: usize, b: usize| shifted.get(a..b).unwrap_or("").to_string();
    let date = format!("{}{}{}", part(0, 4), part(5, 7), part(8, 10));
    let time = format!("{}{}{}", part(11, 13), part(14, 16), part(17, 19));
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.unsigned_abs();
    let dt = format!("{date}{time}{sign}{:02}{:02}", off / 60, off % 60);
    (date, time, dt)
}

/// The report as a Basic Text SR, Part 10 bytes (Explicit VR Little Endian).
pub fn basic_text_sr(r: &ReportExport) -> Result<Vec<u8>, SrError> {
    let (series_uid, sop_uid) = sr_uids(&r.report_id);
    let (date, time, date_time) = local(r.signed_at, r.utc_offset_minutes);
    let title = if r.is_ecg() {
        code("11524-6", "LN", "EKG study")
    } else {
        code("18748-4", "LN", "Diagnostic Imaging Report")
    };
    let mut content = Vec::new();
    if !r.findings.trim().is_empty() {
        content.push(text_item(code("121071", "DCM", "Finding"), &r.findings));
    }
    if !r.impression.trim().is_empty() {
        content.push(text_item(
            code("121073", "DCM", "Impression"),
            &r.impression,
        ));
    }
    let observer = InMemDicomObject::from_element_iter([
        el(
            tags::VERIFYING_OBSERVER_NAME,
            VR::PN,
            r.signer.name.as_str(),
        ),
        seq(
            tags::VERIFYING_OBSERVER_IDENTIFICATION_CODE_SEQUENCE,
            vec![code(&r.signer.username, "99YILIAN", &r.signer.name)],
        ),
        el(
            tags::VERIFYING_ORGANIZATION,
            VR::LO,
            r.alliance_name.as_str(),
        ),
        el(tags::VERIFICATION_DATE_TIME, VR::DT, date_time.as_str()),
    ]);
    let referenced_series: Vec<InMemDicomObject> = r
        .series
        .iter()
        .filter(|s| !s.instances.is_empty())
        .map(|s| {
            let sops = s
                .instances
                .iter()
                .map(|i| {
                    InMemDicomObject::from_element_iter([
                        el(
                            tags::REFERENCED_SOP_CLASS_UID,
                            VR::UI,
                            i.sop_class_uid.as_str(),
                        ),
                        el(
                            tags::REFERENCED_SOP_INSTANCE_UID,
                            VR::UI,
                            i.sop_instance_uid.as_str(),
                        ),
                    ])
                })
                .collect();
            InMemDicomObject::from_element_iter([
                el(tags::SERIES_INSTANCE_UID, VR::UI, s.series_uid.as_str()),
                seq(tags::REFERENCED_SOP_SEQUENCE, sops),
            ])
        })
        .collect();
    let mut elements = vec![
        el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        el(tags::INSTANCE_CREATION_DATE, VR::DA, date.as_str()),
        el(tags::INSTANCE_CREATION_TIME, VR::TM, time.as_str()),
        el(tags::SOP_CLASS_UID, VR::UI, BASIC_TEXT_SR),
        el(tags::SOP_INSTANCE_UID, VR::UI, sop_uid.as_str()),
        el(
            tags::STUDY_DATE,
            VR::DA,
            r.study_date.as_deref().unwrap_or(""),
        ),
        el(tags::CONTENT_DATE, VR::DA, date.as_str()),
        el(tags::STUDY_TIME, VR::TM, ""),
        el(tags::CONTENT_TIME, VR::TM, time.as_str()),
        el(
            tags::ACCESSION_NUMBER,
            VR::SH,
            r.accession_number.as_deref().unwrap_or(""),
        ),
        el(tags::MODALITY, VR::CS, "SR"),
        el(tags::MANUFACTURER, VR::LO, "Yilian"),
        el(tags::INSTITUTION_NAME, VR::LO, r.site_name.as_str()),
        el(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
        el(tags::SERIES_DESCRIPTION, VR::LO, "诊断报告"),
        seq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![]),
        el(
            tags::PATIENT_NAME,
            VR::PN,
            r.patient_name.as_deref().unwrap_or(""),
        ),
        el(tags::PATIENT_ID, VR::LO, r.patient_id.as_str()),
        el(tags::PATIENT_BIRTH_DATE, VR::DA, ""),
        el(tags::PATIENT_SEX, VR::CS, ""),
        el(tags::STUDY_INSTANCE_UID, VR::UI, r.study_uid.as_str()),
        el(tags::SERIES_INSTANCE_UID, VR::UI, series_uid.as_str()),
        el(tags::STUDY_ID, VR::SH, ""),
        el(tags::SERIES_NUMBER, VR::IS, "999"),
        el(tags::INSTANCE_NUMBER, VR::IS, r.version.to_string()),
        // SR Document Content: the root container.
        el(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![title]),
        el(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
        // SR Document General.
        el(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"),
        el(tags::VERIFICATION_FLAG, VR::CS, "VERIFIED"),
        seq(tags::VERIFYING_OBSERVER_SEQUENCE, vec![observer]),
        seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]),
    ];
    if !r.issuer_of_patient_id.is_empty() {
        elements.push(el(
            tags::ISSUER_OF_PATIENT_ID,
            VR::LO,
            r.issuer_of_patient_id.as_str(),
        ));
    }
    if let Some(d) = r.study_description.as_deref().filter(|d| !d.is_empty()) {
        elements.push(el(tags::STUDY_DESCRIPTION, VR::LO, d));
    }
    if !referenced_series.is_empty() {
        elements.push(seq(
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                el(tags::STUDY_INSTANCE_UID, VR::UI, r.study_uid.as_str()),
                seq(tags::REFERENCED_SERIES_SEQUENCE, referenced_series),
            ])],
        ));
    }
    if !content.is_empty() {
        elements.push(seq(tags::CONTENT_SEQUENCE, content));
    }
    let file = InMemDicomObject::from_element_iter(elements)
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(BASIC_TEXT_SR)
                .media_storage_sop_instance_uid(sop_uid.as_str())
                .implementation_class_uid("2.25.271828182845904523536")
                .implementation_version_name("YILIAN_SR"),
        )
        .map_err(|e| SrError::Write(e.to_string()))?;
    let mut out = Vec::new();
    file.write_all(&mut out)
        .map_err(|e| SrError::Write(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report_fhir::tests::sample;
    use dicom_object::from_reader;

    #[test]
    fn uids_are_deterministic_and_valid() {
        let (a, b) = sr_uids("01JREPORT");
        assert_eq!(sr_uids("01JREPORT"), (a.clone(), b.clone()));
        assert_ne!(a, b);
        for u in [&a, &b] {
            assert!(u.starts_with("2.25.") && u.len() <= 64, "{u}");
            assert!(!u[5..].starts_with('0'));
        }
    }

    #[test]
    fn sr_keeps_the_study_and_chinese_text() {
        let bytes = basic_text_sr(&sample()).unwrap();
        assert_eq!(&bytes[128..132], b"DICM");
        let obj = from_reader(&bytes[128..]).unwrap();
        let s = |t| obj.element(t).unwrap().to_str().unwrap().to_string();
        assert_eq!(s(tags::SOP_CLASS_UID), BASIC_TEXT_SR);
        assert_eq!(s(tags::STUDY_INSTANCE_UID), "2.25.1001");
        assert_eq!(s(tags::VERIFICATION_FLAG), "VERIFIED");
        let content = obj.element(tags::CONTENT_SEQUENCE).unwrap();
        let items = content.items().unwrap();
        assert_eq!(
            items[1]
                .element(tags::TEXT_VALUE)
                .unwrap()
                .to_str()
                .unwrap(),
            "未见明显异常。"
        );
    }
}
