//! Unit tests of the ECG formats: round trips of synthetic records against their truth, every
//! refusal reason, and mutation fuzzing (Ok or Err, never a panic) of each parser.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use yilian_domain::ecg::{EcgRecord, GlobalMeasurements, Lead};
use yilian_fixtures::ecg::{EcgSpec, synthesize};

use super::*;

fn ids() -> EcgDicomIds {
    EcgDicomIds {
        study_uid: "2.25.7001".into(),
        series_uid: "2.25.7001.1".into(),
        sop_uid: "2.25.7001.1.1".into(),
        patient_id: "HX0001".into(),
        issuer_of_patient_id: Some("HX".into()),
        accession_number: Some("E0001".into()),
        institution_name: Some("红星镇卫生院".into()),
        study_description: Some("12-lead ECG".into()),
    }
}

/// A synthetic record with the measurements and statements a cart would send.
fn sample(spec: &EcgSpec) -> EcgRecord {
    let mut r = synthesize(spec).record;
    r.device_measurements = GlobalMeasurements {
        heart_rate_bpm: Some(72.0),
        rr_ms: Some(833.0),
        pr_ms: Some(160.0),
        qrs_ms: Some(90.0),
        qt_ms: Some(380.0),
        qtc_ms: Some(416.0),
        p_axis_deg: Some(50.0),
        qrs_axis_deg: Some(60.0),
        t_axis_deg: Some(-45.0),
    };
    r.interpretation = vec![
        "Sinus rhythm".into(),
        "Normal ECG <no & \"changes\">".into(),
    ];
    r
}

/// Everything but the source and the samples matches; samples within `tol` µV.
fn assert_same(got: &EcgRecord, want: &EcgRecord, tol: f32) {
    assert_eq!(got.sample_rate_hz, want.sample_rate_hz);
    let names = |r: &EcgRecord| r.leads.iter().map(|l| l.lead.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want));
    assert_eq!(got.samples_per_lead(), want.samples_per_lead());
    for (g, w) in got.leads.iter().zip(&want.leads) {
        let worst = g
            .samples_uv
            .iter()
            .zip(&w.samples_uv)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst <= tol, "lead {}: off by {worst} µV", g.lead);
    }
    assert_eq!(got.acquired_at, want.acquired_at);
    assert_eq!(got.device, want.device);
    assert_eq!(got.subject, want.subject);
    assert_eq!(got.device_measurements, want.device_measurements);
    assert_eq!(got.interpretation, want.interpretation);
}

// ---------------------------------------------------------------------------------------------
// DICOM

#[test]
fn dicom_round_trip_keeps_leads_samples_and_device_data() {
    let want = sample(&EcgSpec::default());
    let bytes = to_dicom(&want, &ids()).unwrap();
    assert_eq!(sniff(&bytes), Some(EcgSourceFormat::DicomWaveform));
    let meta = crate::dicom::parse_dicom(&bytes).unwrap();
    assert_eq!(meta.sop_class_uid.as_str(), TWELVE_LEAD_ECG_SOP_CLASS);
    assert_eq!(meta.modality.as_deref(), Some("ECG"));
    assert_eq!(meta.patient_id, "HX0001");
    assert_eq!(meta.issuer_of_patient_id.as_deref(), Some("HX"));
    assert_eq!(meta.study_date.as_deref(), Some("20261120"));
    let got = parse_upload(&bytes).unwrap();
    assert_eq!(got.source, EcgSourceFormat::DicomWaveform);
    // 1 µV per unit: rounding is the only loss.
    assert_same(&got, &want, 0.5);
}

#[test]
fn dicom_writer_picks_general_ecg_and_a_coarser_sensitivity_when_needed() {
    let mut want = sample(&EcgSpec {
        sample_rate_hz: 2000.0,
        duration_secs: 2.0,
        r_amplitude_uv: 60_000.0,
        ..EcgSpec::default()
    });
    want.device_measurements = GlobalMeasurements::default();
    let bytes = to_dicom(&want, &ids()).unwrap();
    let meta = crate::dicom::parse_dicom(&bytes).unwrap();
    assert_eq!(meta.sop_class_uid.as_str(), GENERAL_ECG_SOP_CLASS);
    let got = from_dicom_bytes(&bytes).unwrap();
    let max = want
        .leads
        .iter()
        .flat_map(|l| &l.samples_uv)
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max > 32_767.0, "the spec must overflow 1 µV per unit");
    // Quantisation step is max/32000; error at most half a step.
    assert_same(&got, &want, max / 32_000.0 / 2.0 + 0.01);
}

/// The writer's data set, opened again so a test can break one thing in it.
fn dicom_object() -> InMemDicomObject {
    let bytes = to_dicom(
        &sample(&EcgSpec {
            duration_secs: 1.0,
            ..EcgSpec::default()
        }),
        &ids(),
    )
    .unwrap();
    let file = crate::dicom::open(&bytes).unwrap();
    (*file).clone()
}

/// Replaces one element of the (only) waveform multiplex group.
fn with_group(obj: &mut InMemDicomObject, change: impl FnOnce(&mut InMemDicomObject)) {
    let mut group = obj.get(tags::WAVEFORM_SEQUENCE).unwrap().items().unwrap()[0].clone();
    change(&mut group);
    obj.put(DataElement::new(
        tags::WAVEFORM_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![group]),
    ));
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: impl Into<PrimitiveValue>) {
    obj.put(DataElement::new(tag, vr, v.into()));
}

#[test]
fn dicom_refuses_a_channel_count_that_does_not_match_the_definitions() {
    let mut obj = dicom_object();
    with_group(&mut obj, |g| {
        put(
            g,
            tags::NUMBER_OF_WAVEFORM_CHANNELS,
            VR::US,
            PrimitiveValue::from(11u16),
        )
    });
    let e = from_dicom(&obj).unwrap_err();
    assert!(
        matches!(
            e,
            EcgError::ChannelCountMismatch {
                declared: 11,
                defined: 12
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("NumberOfWaveformChannels says 11"),
        "{e}"
    );
}

#[test]
fn dicom_refuses_waveform_data_of_the_wrong_length() {
    let mut obj = dicom_object();
    with_group(&mut obj, |g| {
        put(
            g,
            tags::WAVEFORM_DATA,
            VR::OW,
            PrimitiveValue::U16(vec![0u16; 100].into()),
        )
    });
    let e = from_dicom(&obj).unwrap_err();
    assert!(
        matches!(
            e,
            EcgError::DataLengthMismatch {
                found: 200,
                expected: 12000,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("12 channels × 500 samples × 2 bytes"),
        "{e}"
    );
}

#[test]
fn dicom_refuses_sample_counts_beyond_the_limit_before_allocating() {
    let mut obj = dicom_object();
    with_group(&mut obj, |g| {
        put(
            g,
            tags::NUMBER_OF_WAVEFORM_SAMPLES,
            VR::UL,
            PrimitiveValue::from(u32::MAX),
        )
    });
    let e = from_dicom(&obj).unwrap_err();
    assert!(
        matches!(e, EcgError::TooManySamples { count, .. } if count == u64::from(u32::MAX)),
        "{e}"
    );
}

#[test]
fn dicom_refuses_unknown_units_naming_them() {
    let mut obj = dicom_object();
    with_group(&mut obj, |g| {
        let mut defs = g
            .get(tags::CHANNEL_DEFINITION_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .to_vec();
        let unit = InMemDicomObject::from_element_iter([
            DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from("mm[Hg]")),
            DataElement::new(
                tags::CODING_SCHEME_DESIGNATOR,
                VR::SH,
                PrimitiveValue::from("UCUM"),
            ),
        ]);
        defs[3].put(DataElement::new(
            tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![unit]),
        ));
        g.put(DataElement::new(
            tags::CHANNEL_DEFINITION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(defs),
        ));
    });
    let e = from_dicom(&obj).unwrap_err();
    assert!(
        matches!(&e, EcgError::UnknownUnit { unit, .. } if unit == "mm[Hg]"),
        "{e}"
    );
    assert!(e.to_string().contains("\"mm[Hg]\""), "{e}");
}

#[test]
fn dicom_reads_8_bit_unsigned_samples_with_baseline_and_millivolts() {
    let mut obj = dicom_object();
    with_group(&mut obj, |g| {
        put(
            g,
            tags::NUMBER_OF_WAVEFORM_CHANNELS,
            VR::US,
            PrimitiveValue::from(1u16),
        );
        put(
            g,
            tags::NUMBER_OF_WAVEFORM_SAMPLES,
            VR::UL,
            PrimitiveValue::from(4u32),
        );
        put(
            g,
            tags::WAVEFORM_BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(8u16),
        );
        put(g, tags::WAVEFORM_SAMPLE_INTERPRETATION, VR::CS, "UB");
        put(
            g,
            tags::WAVEFORM_DATA,
            VR::OB,
            PrimitiveValue::U8(vec![0u8, 128, 255, 10].into()),
        );
        let mut def = g
            .get(tags::CHANNEL_DEFINITION_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[1]
            .clone();
        // raw × 0.01 mV × 2 − 1.28 mV
        put(&mut def, tags::CHANNEL_SENSITIVITY, VR::DS, "0.01");
        put(
            &mut def,
            tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR,
            VR::DS,
            "2",
        );
        put(&mut def, tags::CHANNEL_BASELINE, VR::DS, "-1.28");
        def.put(DataElement::new(
            tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![InMemDicomObject::from_element_iter([
                DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from("mV")),
            ])]),
        ));
        g.put(DataElement::new(
            tags::CHANNEL_DEFINITION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![def]),
        ));
    });
    let r = from_dicom(&obj).unwrap();
    assert_eq!(r.leads.len(), 1);
    assert_eq!(r.leads[0].lead, Lead::II);
    let want = [-1280.0f32, 1280.0, 3820.0, -1080.0];
    for (g, w) in r.leads[0].samples_uv.iter().zip(want) {
        assert!((g - w).abs() < 0.01, "{g} vs {w}");
    }
}

#[test]
fn dicom_refuses_other_sop_classes_and_missing_waveforms() {
    let mut obj = dicom_object();
    put(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        "1.2.840.10008.5.1.4.1.1.2",
    );
    assert!(matches!(from_dicom(&obj), Err(EcgError::NotEcgWaveform(_))));
    let mut obj = dicom_object();
    obj.remove_element(tags::WAVEFORM_SEQUENCE);
    let e = from_dicom(&obj).unwrap_err().to_string();
    assert!(e.contains("WaveformSequence"), "{e}");
    assert!(is_ecg_waveform_sop_class("1.2.840.10008.5.1.4.1.1.9.1.3"));
    assert!(!is_ecg_waveform_sop_class("1.2.840.10008.5.1.4.1.1.9.2.1"));
}

// ---------------------------------------------------------------------------------------------
// aECG

#[test]
fn aecg_round_trip_keeps_leads_samples_and_device_data() {
    let want = sample(&EcgSpec::default());
    let xml = aecg::write(&want);
    assert_eq!(sniff(xml.as_bytes()), Some(EcgSourceFormat::Hl7Aecg));
    let got = parse_upload(xml.as_bytes()).unwrap();
    assert_eq!(got.source, EcgSourceFormat::Hl7Aecg);
    assert_same(&got, &want, 0.5);
}

#[test]
fn aecg_reads_scale_origin_and_millisecond_increments() {
    let xml = r#"<?xml version="1.0"?>
<AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <effectiveTime><low value="20240102030405"/></effectiveTime>
 <component><series><code code="REPRESENTATIVE_BEAT"/>
  <component><sequenceSet>
   <component><sequence><code code="TIME_RELATIVE"/><value xsi:type="GLIST_PQ"><head value="0" unit="s"/><increment value="4" unit="ms"/></value></sequence></component>
   <component><sequence><code code="MDC_ECG_LEAD_V1"/><value xsi:type="SLIST_PQ"><origin value="0.1" unit="mV"/><scale value="5" unit="uV"/><digits>0 1 -2</digits></value></sequence></component>
  </sequenceSet></component></series></component>
 <component><series><code code="RHYTHM"/>
  <component><sequenceSet>
   <component><sequence><code code="TIME_ABSOLUTE"/><value xsi:type="GLIST_TS"><head value="20240102030405"/><increment value="2" unit="ms"/></value></sequence></component>
   <component><sequence><code code="MDC_ECG_LEAD_AVF"/><value xsi:type="SLIST_PQ"><origin value="0.1" unit="mV"/><scale value="5" unit="uV"/><digits>0 1 -2 3</digits></value></sequence></component>
  </sequenceSet></component>
  <subjectOf><annotationSet><component><annotation><code code="MDC_ECG_TIME_PD_QT"/><value xsi:type="PQ" value="0.4" unit="s"/></annotation></component></annotationSet></subjectOf>
 </series></component>
</AnnotatedECG>"#;
    let r = aecg::parse(xml.as_bytes()).unwrap();
    assert_eq!(r.sample_rate_hz, 500.0);
    assert_eq!(r.leads[0].lead, Lead::AVF);
    assert_eq!(r.leads[0].samples_uv, vec![100.0, 105.0, 90.0, 115.0]);
    assert_eq!(r.device_measurements.qt_ms, Some(400.0));
    assert_eq!(r.acquired_at.unwrap().to_string(), "2024-01-02T03:04:05");
}

#[test]
fn aecg_refuses_unknown_units_dtds_and_missing_time() {
    let good = aecg::write(&sample(&EcgSpec {
        duration_secs: 0.5,
        ..EcgSpec::default()
    }));
    let bad_unit = good.replacen(
        "<scale value=\"1\" unit=\"uV\"/>",
        "<scale value=\"1\" unit=\"furlong\"/>",
        1,
    );
    let e = aecg::parse(bad_unit.as_bytes()).unwrap_err();
    assert!(
        matches!(&e, EcgError::UnknownUnit { unit, .. } if unit == "furlong"),
        "{e}"
    );

    let bad_time = good.replacen("unit=\"s\"/>", "unit=\"fortnight\"/>", 1);
    assert!(matches!(
        aecg::parse(bad_time.as_bytes()),
        Err(EcgError::UnknownUnit { .. })
    ));

    let bad_hr = good.replacen("unit=\"bpm\"", "unit=\"Hz\"", 1);
    let e = aecg::parse(bad_hr.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("heart rate") && e.contains("\"Hz\""), "{e}");

    let laughs = good.replacen(
        "<AnnotatedECG",
        "<!DOCTYPE AnnotatedECG [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;\">]>\n<AnnotatedECG",
        1,
    );
    assert!(matches!(
        aecg::parse(laughs.as_bytes()),
        Err(EcgError::Xml(_))
    ));

    let start = good
        .find("<component><sequence><code code=\"TIME_ABSOLUTE\"")
        .unwrap();
    let end = start + good[start..].find("</component>").unwrap() + "</component>".len();
    let no_time = format!("{}{}", &good[..start], &good[end..]);
    let e = aecg::parse(no_time.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("time sequence"), "{e}");

    let short_lead = good.replacen("</digits>", " 7 8</digits>", 1);
    let e = aecg::parse(short_lead.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("samples but lead I has"), "{e}");

    assert!(matches!(
        aecg::parse(b"<AnnotatedECG><unclosed>"),
        Err(EcgError::Xml(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// SCP-ECG

#[test]
fn crc_ccitt_matches_the_published_check_value() {
    // CRC-16/CCITT-FALSE of "123456789".
    assert_eq!(scp::crc_ccitt(b"123456789"), 0x29B1);
}

#[test]
fn scp_round_trip_keeps_leads_samples_and_device_data() {
    let want = sample(&EcgSpec::default());
    let bytes = scp::write(&want);
    assert_eq!(sniff(&bytes), Some(EcgSourceFormat::ScpEcg));
    let got = parse_upload(&bytes).unwrap();
    assert_eq!(got.source, EcgSourceFormat::ScpEcg);
    assert_same(&got, &want, 0.5);
}

#[test]
fn scp_huffman_coding_compresses_a_clean_trace() {
    // Second differences of a noiseless trace are mostly within ±8: one to ten bits each.
    let want = sample(&EcgSpec {
        noise_uv: 0.0,
        ..EcgSpec::default()
    });
    let bytes = scp::write(&want);
    let raw = want.leads.len() * want.samples_per_lead() * 2;
    assert!(bytes.len() * 3 < raw, "{} bytes vs {raw} raw", bytes.len());
    assert_same(&scp::parse(&bytes).unwrap(), &want, 0.5);
}

#[test]
fn scp_large_amplitudes_use_a_coarser_multiplier() {
    let mut want = sample(&EcgSpec {
        duration_secs: 2.0,
        r_amplitude_uv: 40_000.0,
        ..EcgSpec::default()
    });
    want.device_measurements = GlobalMeasurements::default();
    want.interpretation.clear();
    let got = scp::parse(&scp::write(&want)).unwrap();
    let max = want
        .leads
        .iter()
        .flat_map(|l| &l.samples_uv)
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let step = (f64::from(max) * 1000.0 / 8191.0).ceil() as f32 / 1000.0;
    assert!(step > 1.0);
    assert_same(&got, &want, step / 2.0 + 0.01);
}

/// Where a section starts (0-based), from section 0's pointers.
fn section_offset(bytes: &[u8], id: u16) -> Option<usize> {
    let s0_len = u32::from_le_bytes(bytes.get(10..14)?.try_into().ok()?) as usize;
    let mut p = 6 + 16;
    while p + 10 <= 6 + s0_len {
        let sid = u16::from_le_bytes(bytes.get(p..p + 2)?.try_into().ok()?);
        let len = u32::from_le_bytes(bytes.get(p + 2..p + 6)?.try_into().ok()?);
        let index = u32::from_le_bytes(bytes.get(p + 6..p + 10)?.try_into().ok()?) as usize;
        if sid == id && len > 0 && index > 0 {
            return Some(index - 1);
        }
        p += 10;
    }
    None
}

/// Recomputes every section's CRC that section 0 can locate, then the record length and CRC.
fn fix_crcs(bytes: &mut [u8]) {
    for id in 0..12u16 {
        let Some(at) = (if id == 0 {
            Some(6)
        } else {
            section_offset(bytes, id)
        }) else {
            continue;
        };
        let Some(len) = bytes
            .get(at + 4..at + 8)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
        else {
            continue;
        };
        if len < 16 || at.checked_add(len).is_none_or(|e| e > bytes.len()) {
            continue;
        }
        let crc = scp::crc_ccitt(&bytes[at + 2..at + len]);
        bytes[at..at + 2].copy_from_slice(&crc.to_le_bytes());
    }
    if bytes.len() >= 6 {
        let n = bytes.len() as u32;
        bytes[2..6].copy_from_slice(&n.to_le_bytes());
        let crc = scp::crc_ccitt(&bytes[2..]);
        bytes[..2].copy_from_slice(&crc.to_le_bytes());
    }
}

fn small_scp() -> Vec<u8> {
    scp::write(&sample(&EcgSpec {
        duration_secs: 1.0,
        ..EcgSpec::default()
    }))
}

#[test]
fn scp_refuses_bad_crcs_of_the_record_and_of_a_section() {
    let mut bytes = small_scp();
    let s6 = section_offset(&bytes, 6).unwrap();
    bytes[s6 + 40] ^= 0x10;
    let e = scp::parse(&bytes).unwrap_err();
    assert!(
        matches!(&e, EcgError::BadCrc { part, .. } if part == "the whole record"),
        "{e}"
    );
    // With the record CRC made right again, the section's own CRC still catches the change.
    let n = bytes.len();
    let crc = scp::crc_ccitt(&bytes[2..n]);
    bytes[..2].copy_from_slice(&crc.to_le_bytes());
    let e = scp::parse(&bytes).unwrap_err();
    assert!(
        matches!(&e, EcgError::BadCrc { part, .. } if part == "section 6"),
        "{e}"
    );
    assert!(e.to_string().contains("CRC of section 6 is wrong"), "{e}");
}

#[test]
fn scp_refuses_truncated_files_and_sections() {
    let bytes = small_scp();
    let e = scp::parse(&bytes[..bytes.len() - 7]).unwrap_err();
    assert!(matches!(e, EcgError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");

    // Section 6 claims more lead bytes than it holds (CRCs made consistent).
    let mut bytes = small_scp();
    let s6 = section_offset(&bytes, 6).unwrap();
    let at = s6 + 16 + 6;
    bytes[at..at + 2].copy_from_slice(&60_000u16.to_le_bytes());
    fix_crcs(&mut bytes);
    let e = scp::parse(&bytes).unwrap_err().to_string();
    assert!(
        e.contains("section 6 data of lead I") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn scp_refuses_overflowing_sample_counts() {
    let mut bytes = small_scp();
    let s3 = section_offset(&bytes, 3).unwrap();
    // Lead 1: start 1, end u32::MAX.
    bytes[s3 + 16 + 2 + 4..s3 + 16 + 2 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_crcs(&mut bytes);
    let e = scp::parse(&bytes).unwrap_err();
    assert!(
        matches!(e, EcgError::TooManySamples { count, .. } if count == u64::from(u32::MAX)),
        "{e}"
    );
}

#[test]
fn scp_refuses_features_it_does_not_decode_by_name() {
    let mut bytes = small_scp();
    let s6 = section_offset(&bytes, 6).unwrap();
    bytes[s6 + 16 + 5] = 1;
    fix_crcs(&mut bytes);
    let e = scp::parse(&bytes).unwrap_err().to_string();
    assert!(e.contains("bimodal compression"), "{e}");

    let mut bytes = small_scp();
    let s3 = section_offset(&bytes, 3).unwrap();
    bytes[s3 + 16 + 1] |= 1;
    fix_crcs(&mut bytes);
    let e = scp::parse(&bytes).unwrap_err().to_string();
    assert!(e.contains("reference beat subtraction"), "{e}");

    let mut bytes = small_scp();
    let s2 = section_offset(&bytes, 2).unwrap();
    bytes[s2 + 16..s2 + 18].copy_from_slice(&3u16.to_le_bytes());
    fix_crcs(&mut bytes);
    let e = scp::parse(&bytes).unwrap_err().to_string();
    assert!(e.contains("custom Huffman tables"), "{e}");
}

#[test]
fn unknown_content_is_refused() {
    assert_eq!(sniff(b"hello"), None);
    assert!(matches!(
        parse_upload(b"%PDF-1.4"),
        Err(EcgError::UnknownFormat)
    ));
    assert!(matches!(parse_upload(&[]), Err(EcgError::UnknownFormat)));
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: deterministic mutations of valid files; every outcome must be Ok or a refusal.

use crate::mutate::{Mutator, Rng};

/// Text formats (aECG XML) get markup and digits; binary ones (DICOM, SCP-ECG) any byte and extreme
/// integers where lengths live.
const TEXT: Mutator = Mutator {
    alphabet: b"<>/\"= 0123456789-e.&;",
    max_insert: 16,
    max_splice: 64,
    max_drain: 32,
    le_ints: false,
};
const BINARY: Mutator = Mutator {
    alphabet: b"",
    max_insert: 16,
    max_splice: 64,
    max_drain: 32,
    le_ints: true,
};

fn fuzz(
    name: &str,
    seeds: &[Vec<u8>],
    iterations: usize,
    text: bool,
    fix: bool,
    parse: fn(&[u8]) -> Result<EcgRecord, EcgError>,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..iterations {
        let seed = &seeds[i % seeds.len()];
        let mut input = if text { &TEXT } else { &BINARY }.mutate(&mut rng, seed);
        if fix && i % 2 == 0 {
            fix_crcs(&mut input);
        }
        let outcome = std::panic::catch_unwind(|| parse(&input));
        match outcome {
            Ok(Ok(r)) => {
                r.validate().unwrap();
                ok += 1;
            }
            Ok(Err(EcgError::ParserFault)) => {
                panic!("{name}: iteration {i}: a dependency panicked")
            }
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
            Err(_) => panic!("{name}: iteration {i} panicked on {} bytes", input.len()),
        }
    }
    eprintln!("fuzz {name}: {iterations} inputs, {ok} parsed, {refused} refused");
    assert!(refused > 0);
}

#[test]
fn fuzz_dicom_parser_never_panics() {
    let seeds: Vec<Vec<u8>> = [0.4, 0.2]
        .iter()
        .map(|&d| {
            to_dicom(
                &sample(&EcgSpec {
                    duration_secs: d,
                    ..EcgSpec::default()
                }),
                &ids(),
            )
            .unwrap()
        })
        .collect();
    fuzz("dicom", &seeds, 3000, false, false, from_dicom_bytes);
}

#[test]
fn fuzz_aecg_parser_never_panics() {
    let seeds: Vec<Vec<u8>> = [0.2, 0.1]
        .iter()
        .map(|&d| {
            aecg::write(&sample(&EcgSpec {
                duration_secs: d,
                ..EcgSpec::default()
            }))
            .into_bytes()
        })
        .collect();
    fuzz("aecg", &seeds, 3000, true, false, aecg::parse);
}

#[test]
fn fuzz_scp_parser_never_panics() {
    let seeds: Vec<Vec<u8>> = [0.2, 0.1]
        .iter()
        .map(|&d| {
            scp::write(&sample(&EcgSpec {
                duration_secs: d,
                ..EcgSpec::default()
            }))
        })
        .collect();
    fuzz("scp", &seeds, 6000, false, true, scp::parse);
}
