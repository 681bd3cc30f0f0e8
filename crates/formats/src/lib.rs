//! Yilian formats: bytes in, typed values out (and back). DICOM Part 10 metadata via `dicom-object`,
//! DICOM JSON (PS3.18 Annex F) for DICOMweb responses. No networking, no storage.

pub mod dicom;
pub mod dicom_json;

pub use dicom::{DicomError, DicomMeta, parse_dicom};
