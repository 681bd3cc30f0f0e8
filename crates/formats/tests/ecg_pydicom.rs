//! The ECG reader against a file nobody here wrote: pydicom's `waveform_ecg.dcm` (a Mortara ELI 250
//! 12-lead ECG, anonymised), compared with pydicom's own `waveform_array`. The interpreter comes from
//! YILIAN_TEST_PYTHON (scripts/test sets it to the .venv with pydicom); missing python or pydicom
//! fails in CI and says SKIPPED locally.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use yilian_domain::ecg::{EcgSourceFormat, Lead};
use yilian_formats::ecg::{self, EcgDicomIds};

/// Python that prints the file's path, then per channel: the first sample, sample 5000 and the sum,
/// as pydicom scales them (raw × sensitivity × correction + baseline).
const SCRIPT: &str = r#"
from pydicom import dcmread
from pydicom.data import get_testdata_file
p = get_testdata_file('waveform_ecg.dcm')
print(p)
a = dcmread(p).waveform_array(0)
for c in range(a.shape[1]):
    print(repr(float(a[0, c])), repr(float(a[5000, c])), repr(float(a[:, c].sum())))
"#;

fn pydicom_reference() -> Option<(String, Vec<[f64; 3]>)> {
    let python = match std::env::var("YILIAN_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            if std::env::var("CI").is_ok() {
                panic!("CI must set YILIAN_TEST_PYTHON (scripts/test does)");
            }
            eprintln!(
                "SKIPPED pydicom ECG sample: YILIAN_TEST_PYTHON is not set (run scripts/test, which installs pydicom)"
            );
            return None;
        }
    };
    let out = Command::new(&python).args(["-c", SCRIPT]).output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        other => {
            if std::env::var("CI").is_ok() {
                panic!("pydicom's waveform_ecg.dcm is not available via {python}: {other:?}");
            }
            eprintln!("SKIPPED pydicom ECG sample: {python} could not provide it ({other:?})");
            return None;
        }
    };
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let path = lines.next().unwrap().trim().to_string();
    let rows = lines
        .map(|l| {
            let v: Vec<f64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2]]
        })
        .collect();
    Some((path, rows))
}

#[test]
fn pydicom_waveform_ecg_reads_as_pydicom_scales_it() {
    let Some((path, reference)) = pydicom_reference() else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(ecg::sniff(&bytes), Some(EcgSourceFormat::DicomWaveform));
    let r = ecg::parse_upload(&bytes).unwrap();

    // The RHYTHM group (10 s at 1000 Hz), not the 1.2 s MEDIAN BEAT group after it.
    assert_eq!(r.sample_rate_hz, 1000.0);
    assert_eq!(r.samples_per_lead(), 10_000);
    let leads: Vec<Lead> = r.leads.iter().map(|l| l.lead.clone()).collect();
    assert_eq!(
        leads,
        [
            Lead::I,
            Lead::II,
            Lead::III,
            Lead::AVR,
            Lead::AVL,
            Lead::AVF,
            Lead::V1,
            Lead::V2,
            Lead::V3,
            Lead::V4,
            Lead::V5,
            Lead::V6
        ]
    );
    assert_eq!(reference.len(), 12);
    for (l, [first, mid, sum]) in r.leads.iter().zip(&reference) {
        assert_eq!(f64::from(l.samples_uv[0]), *first, "lead {}", l.lead);
        assert_eq!(f64::from(l.samples_uv[5000]), *mid, "lead {}", l.lead);
        let ours: f64 = l.samples_uv.iter().map(|&v| f64::from(v)).sum();
        assert!(
            (ours - sum).abs() < 1e-3 * sum.abs().max(1.0),
            "lead {}: {ours} vs {sum}",
            l.lead
        );
    }
    // ChannelSensitivity 1.25 µV: the first raw sample of lead I is 0x0050.
    assert_eq!(r.leads[0].samples_uv[0], 100.0);

    assert_eq!(r.acquired_at.unwrap().to_string(), "2013-01-25T10:59:19");
    assert_eq!(
        r.device.manufacturer.as_deref(),
        Some("Mortara Instrument, Inc.")
    );
    assert_eq!(r.device.model.as_deref(), Some("el250"));
    assert_eq!(r.device.software_version.as_deref(), Some("0.0.0"));
    assert_eq!(r.device.serial_number, None);
    assert_eq!(r.subject.patient_id.as_deref(), Some("642341"));
    assert_eq!(r.subject.sex.as_deref(), Some("F"));
    assert_eq!(r.subject.birth_date.as_deref(), Some("19710123"));
    // The cart's measurements (SCP-ECG codes) and its Italian statements.
    let m = &r.device_measurements;
    assert_eq!(m.rr_ms, Some(982.0));
    assert_eq!(m.pr_ms, Some(161.0));
    assert_eq!(m.qrs_ms, Some(75.0));
    assert_eq!(m.qt_ms, Some(368.0));
    assert_eq!(m.qtc_ms, Some(370.0));
    assert_eq!(
        (m.p_axis_deg, m.qrs_axis_deg, m.t_axis_deg),
        (Some(74.0), Some(52.0), Some(57.0))
    );
    assert_eq!(m.heart_rate_bpm, None, "the file sends no heart rate");
    assert_eq!(r.interpretation, ["RITMO SINUSALE", "ECG NORMALE"]);

    // Filing it again as our own instance keeps every sample: multiples of 1.25 µV, stored at 1 µV
    // per unit, so each is off by at most half a microvolt.
    let ids = EcgDicomIds {
        study_uid: "2.25.9001".into(),
        series_uid: "2.25.9001.1".into(),
        sop_uid: "2.25.9001.1.1".into(),
        patient_id: "642341".into(),
        issuer_of_patient_id: None,
        accession_number: None,
        institution_name: None,
        study_description: None,
    };
    let again = ecg::from_dicom_bytes(&ecg::to_dicom(&r, &ids).unwrap()).unwrap();
    assert_eq!(again.device_measurements, r.device_measurements);
    assert_eq!(again.interpretation, r.interpretation);
    for (a, b) in again.leads.iter().zip(&r.leads) {
        assert_eq!(a.lead, b.lead);
        let worst = a
            .samples_uv
            .iter()
            .zip(&b.samples_uv)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 0.5, "lead {}: {worst}", a.lead);
    }
    // And as aECG and SCP-ECG.
    let via_aecg = ecg::aecg::parse(ecg::aecg::write(&r).as_bytes()).unwrap();
    assert_eq!(via_aecg.samples_per_lead(), 10_000);
    let via_scp = ecg::scp::parse(&ecg::scp::write(&r)).unwrap();
    assert_eq!(via_scp.device_measurements.qt_ms, Some(368.0));
    for (a, b) in via_scp.leads.iter().zip(&r.leads) {
        let worst = a
            .samples_uv
            .iter()
            .zip(&b.samples_uv)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 0.5, "SCP lead {}: {worst}", a.lead);
    }
}
