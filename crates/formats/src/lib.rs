//! Yilian formats: bytes in, typed values out (and back). DICOM Part 10 metadata via `dicom-object`,
//! DICOM JSON (PS3.18 Annex F) for DICOMweb responses, ECG waveforms (DICOM, HL7 aECG, SCP-ECG), lab
//! panels (HL7 v2 ORU^R01 with ACKs and MLLP framing, FHIR R4). No networking, no storage.

pub mod audit;
pub mod bulk;
pub mod dicom;
pub mod dicom_json;
pub mod ecg;
pub mod fhir_lab;
pub mod hl7v2;
pub mod lengths;
#[cfg(test)]
mod mutate;
pub mod query;
pub mod report_export;
pub mod report_fhir;
pub mod report_sr;

pub use dicom::{DicomError, DicomMeta, Parsed, parse_bytes, parse_dicom, parse_file};
