//! Signed imaging and ECG reports in FHIR R4: a `DiagnosticReport` (category RAD or EC) that
//! references an `ImagingStudy` (the study's series and instances, with a contained DICOMweb
//! `Endpoint`). Typed [`ReportExport`] in, `serde_json` values out; pure. The lab read API's naming
//! rules hold (`fhir_lab::out`): Patient ids from the alliance key, the recognition tag and extension.
//!
//! Naming, a public contract (ARCHITECTURE.md, "Report exports"):
//! - `DiagnosticReport/{report ULID}`; `ImagingStudy/{Study Instance UID}` (a UID is a valid FHIR id:
//!   digits and dots, at most 64 characters);
//! - identifier: `urn:yilian:report|{report id}`, carrying the verification link in the extension
//!   `<base>/StructureDefinition/verification` (`valueUrl`);
//! - `conclusion` is the impression; the findings travel as `presentedForm` text (zh-CN), with the
//!   printable PDF as a second `presentedForm` by URL.

use base64::Engine;
use serde_json::{Value, json};

use crate::fhir_lab::out::{FhirBase, fhir_date, instant, recognition_parts};
use crate::report_export::ReportExport;

/// The identifier system of report ids.
pub const REPORT_SYSTEM: &str = "urn:yilian:report";
const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const LOINC: &str = "http://loinc.org";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ENDPOINT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type";
const ENDPOINT_REF: &str = "dicomweb";

/// The ImagingStudy id of a study: its Study Instance UID.
pub fn imaging_study_id(study_uid: &str) -> String {
    study_uid.to_string()
}

/// Whether `id` can be an ImagingStudy id (a DICOM UID).
pub fn is_imaging_study_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !id.starts_with('.')
        && !id.ends_with('.')
}

/// The extension that carries the verification link.
pub fn verification_extension(base: &FhirBase) -> String {
    format!("{}/StructureDefinition/verification", base.definitions)
}

/// The category coding (v2-0074) of a report: `EC` for ECG, `RAD` for imaging.
fn category(r: &ReportExport) -> Value {
    if r.is_ecg() {
        json!({ "coding": [{ "system": V2_0074, "code": "EC", "display": "Electrocardiac (e.g., EKG, EEC, Holter)" }] })
    } else {
        json!({ "coding": [{ "system": V2_0074, "code": "RAD", "display": "Radiology" }] })
    }
}

/// The report's code: LOINC 11524-6 (EKG study) or 18748-4 (Diagnostic imaging study), with the
/// study description as text.
fn code(r: &ReportExport) -> Value {
    let (c, display) = if r.is_ecg() {
        ("11524-6", "EKG study")
    } else {
        ("18748-4", "Diagnostic imaging study")
    };
    let text = r
        .study_description
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} {}", r.modality, display));
    json!({ "coding": [{ "system": LOINC, "code": c, "display": display }], "text": text })
}

/// The codes a report answers to in a `code`/`category` search: LOINC and v2-0074 codes with their
/// systems, and the modality (DCM).
pub fn search_codes(r: &ReportExport) -> Vec<(&'static str, String)> {
    let (loinc, cat) = if r.is_ecg() {
        ("11524-6", "EC")
    } else {
        ("18748-4", "RAD")
    };
    vec![
        (LOINC, loinc.to_string()),
        (V2_0074, cat.to_string()),
        (DCM, r.modality.clone()),
    ]
}

fn signer_reference(r: &ReportExport) -> Value {
    json!({
        "type": "Practitioner",
        "identifier": { "system": "urn:yilian:user", "value": r.signer.username },
        "display": r.signer.name,
    })
}

/// The signed report as a FHIR R4 `DiagnosticReport`, status final.
pub fn diagnostic_report(base: &FhirBase, r: &ReportExport) -> Value {
    let (meta, recognition) = recognition_parts(base, &r.recognition, r.signed_at);
    let verification = json!({ "url": verification_extension(base), "valueUrl": r.verify_url });
    let mut d = json!({
        "resourceType": "DiagnosticReport",
        "id": r.report_id,
        "meta": meta,
        "extension": [recognition],
        "identifier": [{
            "extension": [verification],
            "use": "official",
            "system": REPORT_SYSTEM,
            "value": r.report_id,
            "assigner": { "display": r.alliance_name },
        }],
        "status": r.status,
        "category": [category(r)],
        "code": code(r),
        "subject": { "reference": format!("Patient/{}", r.patient_fhir_id) },
        "issued": instant(r.signed_at),
        "performer": [signer_reference(r)],
        "resultsInterpreter": [signer_reference(r)],
        "imagingStudy": [{ "reference": format!("ImagingStudy/{}", imaging_study_id(&r.study_uid)) }],
        "conclusion": r.impression,
    });
    if let Some(date) = r.study_date.as_deref().and_then(fhir_date) {
        d["effectiveDateTime"] = json!(date);
    }
    let mut forms = Vec::new();
    if !r.findings.trim().is_empty() {
        forms.push(json!({
            "contentType": "text/plain; charset=utf-8",
            "language": "zh-CN",
            "data": base64::engine::general_purpose::STANDARD.encode(r.findings.as_bytes()),
            "title": "检查所见",
        }));
    }
    forms.push(json!({
        "contentType": "application/pdf",
        "language": "zh-CN",
        "url": r.pdf_url,
        "title": "报告单 (PDF)",
    }));
    d["presentedForm"] = json!(forms);
    d
}

/// The study as a FHIR R4 `ImagingStudy`: series and instances by UID, with the hub's DICOMweb
/// service as a contained `Endpoint`.
pub fn imaging_study(_base: &FhirBase, r: &ReportExport) -> Value {
    let mut modalities: Vec<String> = Vec::new();
    for m in r.series.iter().filter_map(|s| s.modality.clone()) {
        if !modalities.contains(&m) {
            modalities.push(m);
        }
    }
    if modalities.is_empty() && !r.modality.is_empty() {
        modalities.push(r.modality.clone());
    }
    let coding = |m: &str| json!({ "system": DCM, "code": m });
    let series: Vec<Value> = r
        .series
        .iter()
        .map(|s| {
            let mut v = json!({
                "uid": s.series_uid,
                "modality": coding(s.modality.as_deref().unwrap_or(&r.modality)),
                "numberOfInstances": s.instances.len(),
            });
            if let Some(n) = s.series_number.and_then(|n| u32::try_from(n).ok()) {
                v["number"] = json!(n);
            }
            if let Some(d) = s.description.as_deref().filter(|d| !d.trim().is_empty()) {
                v["description"] = json!(d);
            }
            if let Some(b) = s.body_part.as_deref().filter(|b| !b.trim().is_empty()) {
                v["bodySite"] = json!({ "display": b });
            }
            let instances: Vec<Value> = s
                .instances
                .iter()
                .map(|i| {
                    let mut iv = json!({
                        "uid": i.sop_instance_uid,
                        "sopClass": { "system": "urn:ietf:rfc:3986", "code": format!("urn:oid:{}", i.sop_class_uid) },
                    });
                    if let Some(n) = i.instance_number.and_then(|n| u32::try_from(n).ok()) {
                        iv["number"] = json!(n);
                    }
                    iv
                })
                .collect();
            if !instances.is_empty() {
                v["instance"] = json!(instances);
            }
            v
        })
        .collect();
    let mut identifiers = vec![json!({
        "system": "urn:dicom:uid",
        "value": format!("urn:oid:{}", r.study_uid),
    })];
    if let Some(acc) = r
        .accession_number
        .as_deref()
        .filter(|a| !a.trim().is_empty())
    {
        identifiers.push(json!({
            "type": { "coding": [{ "system": V2_0203, "code": "ACSN" }] },
            "system": format!("urn:yilian:accession:{}", r.site_id),
            "value": acc,
        }));
    }
    let mut s = json!({
        "resourceType": "ImagingStudy",
        "id": imaging_study_id(&r.study_uid),
        "meta": { "lastUpdated": instant(r.signed_at) },
        "contained": [{
            "resourceType": "Endpoint",
            "id": ENDPOINT_REF,
            "status": "active",
            "connectionType": { "system": ENDPOINT_TYPE, "code": "dicom-wado-rs" },
            "name": format!("{} DICOMweb", r.alliance_name),
            "payloadType": [{ "text": "DICOM" }],
            "payloadMimeType": ["application/dicom"],
            "address": r.dicomweb_url,
        }],
        "identifier": identifiers,
        "status": "available",
        "modality": modalities.iter().map(|m| coding(m)).collect::<Vec<_>>(),
        "subject": { "reference": format!("Patient/{}", r.patient_fhir_id) },
        "endpoint": [{ "reference": format!("#{ENDPOINT_REF}") }],
        "numberOfSeries": r.series.len(),
        "numberOfInstances": r.instance_count(),
        "series": series,
    });
    if let Some(date) = r.study_date.as_deref().and_then(fhir_date) {
        s["started"] = json!(date);
    }
    if let Some(d) = r
        .study_description
        .as_deref()
        .filter(|d| !d.trim().is_empty())
    {
        s["description"] = json!(d);
    }
    if s["series"].as_array().is_some_and(Vec::is_empty)
        && let Some(o) = s.as_object_mut()
    {
        o.remove("series");
    }
    // The report that interprets it, so a client that starts at the study finds the reading.
    s["interpreter"] = json!([signer_reference(r)]);
    s
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fhir_lab::out::Recognition;
    use crate::report_export::{ExportInstance, ExportSeries, ExportSigner};
    use yilian_domain::UnixMillis;

    pub fn sample() -> ReportExport {
        ReportExport {
            report_id: "01JREPORT0000000000000000A".into(),
            version: 1,
            status: "final".into(),
            kind: "imaging".into(),
            modality: "CT".into(),
            study_uid: "2.25.1001".into(),
            accession_number: Some("ACC1".into()),
            study_date: Some("20261120".into()),
            study_description: Some("胸部CT平扫".into()),
            alliance_name: "示范县医共体".into(),
            site_id: "hx".into(),
            site_name: "红星乡卫生院".into(),
            patient_fhir_id: "0123456789abcdef".into(),
            patient_id: "HX0001".into(),
            issuer_of_patient_id: "HX".into(),
            patient_name: Some("张^三".into()),
            findings: "双肺纹理清晰。".into(),
            impression: "未见明显异常。".into(),
            signer: ExportSigner {
                username: "li.reader".into(),
                name: "李医生".into(),
                key_id: "ed25519:0011223344556677".into(),
            },
            signed_at: UnixMillis(1_795_478_400_000),
            utc_offset_minutes: 480,
            series: vec![ExportSeries {
                series_uid: "2.25.1001.1".into(),
                modality: Some("CT".into()),
                series_number: Some(1),
                description: None,
                body_part: Some("CHEST".into()),
                instances: vec![ExportInstance {
                    sop_instance_uid: "2.25.1001.1.1".into(),
                    sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                    instance_number: Some(1),
                }],
            }],
            recognition: Recognition {
                recognised: true,
                scope: Some("县域".into()),
                valid_until: Some(UnixMillis(1_798_070_400_000)),
                eqa: None,
                reasons: vec![],
            },
            verify_url: "https://hub.example/api/v1/reports/01JREPORT0000000000000000A/verify"
                .into(),
            dicomweb_url: "https://hub.example/dicomweb".into(),
            pdf_url: "https://hub.example/api/v1/reports/01JREPORT0000000000000000A/pdf".into(),
        }
    }

    fn base() -> FhirBase {
        FhirBase {
            full_url: Some("https://hub.example/fhir/r4".into()),
            definitions: "https://hub.example/fhir/r4".into(),
            default_offset_minutes: 480,
        }
    }

    #[test]
    fn report_names_its_study_conclusion_signer_and_recognition() {
        let d = diagnostic_report(&base(), &sample());
        assert_eq!(d["status"], "final");
        assert_eq!(d["conclusion"], "未见明显异常。");
        assert_eq!(d["imagingStudy"][0]["reference"], "ImagingStudy/2.25.1001");
        assert_eq!(d["performer"][0]["display"], "李医生");
        assert_eq!(d["meta"]["tag"][0]["code"], "HR");
        assert_eq!(d["effectiveDateTime"], "2026-11-20");
        assert_eq!(d["category"][0]["coding"][0]["code"], "RAD");
        let findings = base64::engine::general_purpose::STANDARD
            .decode(d["presentedForm"][0]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(findings).unwrap(), "双肺纹理清晰。");
        let id = &d["identifier"][0];
        assert_eq!(id["value"], "01JREPORT0000000000000000A");
        assert_eq!(
            id["extension"][0]["valueUrl"],
            "https://hub.example/api/v1/reports/01JREPORT0000000000000000A/verify"
        );
    }

    #[test]
    fn imaging_study_lists_series_instances_and_the_dicomweb_endpoint() {
        let s = imaging_study(&base(), &sample());
        assert_eq!(s["id"], "2.25.1001");
        assert_eq!(s["numberOfInstances"], 1);
        assert_eq!(s["series"][0]["instance"][0]["uid"], "2.25.1001.1.1");
        assert_eq!(
            s["series"][0]["instance"][0]["sopClass"]["code"],
            "urn:oid:1.2.840.10008.5.1.4.1.1.2"
        );
        assert_eq!(s["contained"][0]["address"], "https://hub.example/dicomweb");
        assert_eq!(s["endpoint"][0]["reference"], "#dicomweb");
        assert!(is_imaging_study_id("2.25.1001"));
        assert!(!is_imaging_study_id("01JREPORT"));
    }
}
