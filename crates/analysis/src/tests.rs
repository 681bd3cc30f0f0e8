//! Behaviour of `analyze` and `detect_r_peaks` against synthetic records with known truth
//! (`yilian_fixtures::ecg`), and on inputs that must not break it.

use yilian_domain::ecg::{EcgRecord, Lead, LeadTrace, Regularity};
use yilian_fixtures::ecg::{EcgSpec, SyntheticEcg, synthesize};

use super::*;

fn spec(fs: f64, bpm: f64) -> EcgSpec {
    EcgSpec {
        sample_rate_hz: fs,
        heart_rate_bpm: bpm,
        // A QT the rate allows (Bazett-like shortening at fast rates), so beats do not overlap.
        qt_ms: (400.0 * (60.0 / bpm).sqrt()).min(440.0),
        pr_ms: if bpm > 140.0 { 120.0 } else { 160.0 },
        ..EcgSpec::default()
    }
}

/// Worst distance (ms) from each true peak to the nearest detected one; also checks the counts match.
fn peak_error_ms(found: &[usize], truth: &[usize], fs: f64) -> f64 {
    assert_eq!(found.len(), truth.len(), "found {found:?}\ntruth {truth:?}");
    truth
        .iter()
        .map(|&t| {
            found
                .iter()
                .map(|&f| (f as f64 - t as f64).abs() * 1000.0 / fs)
                .fold(f64::MAX, f64::min)
        })
        .fold(0.0, f64::max)
}

fn clean(spec: EcgSpec) -> SyntheticEcg {
    synthesize(&EcgSpec {
        noise_uv: 0.0,
        wander_uv: 0.0,
        ..spec
    })
}

#[test]
fn peaks_within_20_ms_from_30_to_220_bpm_at_250_to_1000_hz_with_noise_and_wander() {
    let mut worst = 0.0f64;
    for fs in [250.0, 500.0, 1000.0] {
        for bpm in [30.0, 40.0, 72.0, 150.0, 200.0, 220.0] {
            let s = synthesize(&EcgSpec {
                noise_uv: 60.0,
                wander_uv: 300.0,
                ..spec(fs, bpm)
            });
            let a = analyze(&s.record);
            let err = peak_error_ms(&a.r_peaks, &s.truth.r_peaks, fs);
            assert!(err <= 20.0, "fs {fs} bpm {bpm}: {err} ms");
            worst = worst.max(err);
            let ii = s.record.lead(&Lead::II).unwrap();
            let single = detect_r_peaks(ii, fs);
            let err = peak_error_ms(&single, &s.truth.r_peaks, fs);
            assert!(err <= 20.0, "lead II alone, fs {fs} bpm {bpm}: {err} ms");
            let hr = a.measurements.heart_rate_bpm.unwrap();
            assert!((hr - bpm).abs() <= 1.0, "fs {fs} bpm {bpm}: HR {hr}");
            assert_eq!(a.regularity, Regularity::Regular, "fs {fs} bpm {bpm}");
            assert_eq!(a.rr_ms.len(), a.r_peaks.len() - 1);
        }
    }
    eprintln!("worst R-peak error with noise and wander: {worst:.1} ms");
}

#[test]
fn jittered_rhythm_is_irregular_and_its_pr_and_qt_are_withheld() {
    for seed in 1..=6 {
        let s = synthesize(&EcgSpec {
            rr_jitter: 0.25,
            seed,
            ..EcgSpec::default()
        });
        let a = analyze(&s.record);
        peak_error_ms(&a.r_peaks, &s.truth.r_peaks, 500.0);
        assert_eq!(
            a.regularity,
            Regularity::Irregular,
            "seed {seed}: {:?}",
            a.rr_ms
        );
        assert!(a.rr_sd_ms.unwrap() > 40.0);
        assert_eq!(a.measurements.pr_ms, None);
        assert_eq!(a.measurements.qt_ms, None);
        assert!(
            a.notes.iter().any(|n| n.contains("irregular")),
            "{:?}",
            a.notes
        );
        // The QRS still has its width: morphology does not need a regular rhythm.
        assert!(a.measurements.qrs_ms.is_some(), "{:?}", a.notes);
    }
}

#[test]
fn intervals_and_axis_on_clean_records() {
    let (mut e_qrs, mut e_pr, mut e_qt, mut e_axis) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for fs in [250.0, 500.0, 1000.0] {
        for (bpm, pr, qrs, qt) in [
            (60.0, 160.0, 90.0, 400.0),
            (72.0, 200.0, 120.0, 380.0),
            (90.0, 140.0, 80.0, 340.0),
        ] {
            for axis in [-30.0, 0.0, 60.0, 100.0] {
                let s = clean(EcgSpec {
                    sample_rate_hz: fs,
                    heart_rate_bpm: bpm,
                    pr_ms: pr,
                    qrs_ms: qrs,
                    qt_ms: qt,
                    qrs_axis_deg: axis,
                    ..EcgSpec::default()
                });
                let a = analyze(&s.record);
                let m = &a.measurements;
                let ctx = format!("fs {fs} bpm {bpm} axis {axis}: {m:?} {:?}", a.notes);
                let d_qrs = (m.qrs_ms.expect(&ctx) - qrs).abs();
                let d_pr = (m.pr_ms.expect(&ctx) - pr).abs();
                let d_qt = (m.qt_ms.expect(&ctx) - qt).abs();
                let d_axis = (m.qrs_axis_deg.expect(&ctx) - axis).abs();
                assert!(d_qrs <= 12.0, "QRS off by {d_qrs}: {ctx}");
                assert!(d_pr <= 20.0, "PR off by {d_pr}: {ctx}");
                assert!(d_qt <= 25.0, "QT off by {d_qt}: {ctx}");
                assert!(d_axis <= 15.0, "axis off by {d_axis}: {ctx}");
                e_qrs = e_qrs.max(d_qrs);
                e_pr = e_pr.max(d_pr);
                e_qt = e_qt.max(d_qt);
                e_axis = e_axis.max(d_axis);
                let rr_s = 60.0 / bpm;
                let qtc = a.qtc_bazett_ms.unwrap();
                assert!((qtc - m.qt_ms.unwrap() / f64::sqrt(rr_s)).abs() < 1.0);
                assert_eq!(m.qtc_ms, a.qtc_bazett_ms);
                let qtf = a.qtc_fridericia_ms.unwrap();
                assert!((qtf - m.qt_ms.unwrap() / rr_s.cbrt()).abs() < 1.0);
            }
        }
    }
    eprintln!(
        "worst errors on clean records: QRS {e_qrs:.1} ms, PR {e_pr:.1} ms, QT {e_qt:.1} ms, axis {e_axis:.1}°"
    );
}

#[test]
fn at_fast_rates_pr_is_right_or_withheld_never_the_previous_t() {
    for (bpm, pr, qt) in [
        (120.0, 140.0, 300.0),
        (150.0, 120.0, 280.0),
        (180.0, 110.0, 250.0),
    ] {
        for fs in [250.0, 500.0] {
            let s = synthesize(&EcgSpec {
                sample_rate_hz: fs,
                heart_rate_bpm: bpm,
                pr_ms: pr,
                qt_ms: qt,
                ..EcgSpec::default()
            });
            let a = analyze(&s.record);
            let m = &a.measurements;
            match m.pr_ms {
                Some(found) => assert!((found - pr).abs() <= 20.0, "{bpm} bpm {fs} Hz: PR {found}"),
                None => assert!(a.notes.iter().any(|n| n.contains("PR")), "{:?}", a.notes),
            }
            if let Some(qt_found) = m.qt_ms {
                assert!(
                    (qt_found - qt).abs() <= 25.0,
                    "{bpm} bpm {fs} Hz: QT {qt_found}"
                );
            }
            assert!((m.qrs_ms.unwrap() - 90.0).abs() <= 12.0, "{m:?}");
            eprintln!("{bpm} bpm {fs} Hz: PR {:?} QT {:?}", m.pr_ms, m.qt_ms);
        }
    }
}

#[test]
fn intervals_hold_with_noise_and_wander() {
    let s = synthesize(&EcgSpec::default());
    let a = analyze(&s.record);
    let m = &a.measurements;
    assert!((m.qrs_ms.unwrap() - 90.0).abs() <= 12.0, "{m:?}");
    assert!((m.pr_ms.unwrap() - 160.0).abs() <= 20.0, "{m:?}");
    assert!((m.qt_ms.unwrap() - 380.0).abs() <= 25.0, "{m:?}");
    assert!((m.qrs_axis_deg.unwrap() - 60.0).abs() <= 15.0, "{m:?}");
    // The synthetic P and T vectors point at 50° and 45°.
    assert!((m.p_axis_deg.unwrap() - 50.0).abs() <= 20.0, "{m:?}");
    assert!((m.t_axis_deg.unwrap() - 45.0).abs() <= 20.0, "{m:?}");
}

#[test]
fn inverted_polarity_is_found_on_the_nadir() {
    let s = synthesize(&EcgSpec::default());
    for lead in [Lead::II, Lead::AVR, Lead::V1] {
        let x: Vec<f32> = s.record.lead(&lead).unwrap().to_vec();
        let inverted: Vec<f32> = x.iter().map(|v| -v).collect();
        let err = peak_error_ms(&detect_r_peaks(&inverted, 500.0), &s.truth.r_peaks, 500.0);
        assert!(err <= 20.0, "{lead} inverted: {err} ms");
    }
    // A whole record upside down (reversed electrodes) keeps its rate and QRS width.
    let mut rec = s.record.clone();
    for l in &mut rec.leads {
        l.samples_uv.iter_mut().for_each(|v| *v = -*v);
    }
    let a = analyze(&rec);
    peak_error_ms(&a.r_peaks, &s.truth.r_peaks, 500.0);
    assert!((a.measurements.qrs_ms.unwrap() - 90.0).abs() <= 12.0);
    // The axis turns by 180°.
    let axis = a.measurements.qrs_axis_deg.unwrap();
    assert!((axis - (-120.0)).abs() <= 15.0, "{axis}");
}

#[test]
fn detection_lead_is_ii_unless_ii_is_nearly_flat() {
    let a = analyze(&synthesize(&EcgSpec::default()).record);
    assert_eq!(a.detection_lead, Some(Lead::II));
    // Axis −30°: lead II is perpendicular and carries almost no QRS.
    let s = synthesize(&EcgSpec {
        qrs_axis_deg: -30.0,
        ..EcgSpec::default()
    });
    let a = analyze(&s.record);
    assert_ne!(a.detection_lead, Some(Lead::II));
    peak_error_ms(&a.r_peaks, &s.truth.r_peaks, 500.0);
}

fn record(leads: Vec<(Lead, Vec<f32>)>, fs: f64) -> EcgRecord {
    let mut r = synthesize(&EcgSpec::default()).record;
    r.sample_rate_hz = fs;
    r.leads = leads
        .into_iter()
        .map(|(lead, samples_uv)| LeadTrace { lead, samples_uv })
        .collect();
    r
}

#[test]
fn a_flat_line_gives_no_peaks_and_says_why() {
    let a = analyze(&record(vec![(Lead::II, vec![0.0; 5000])], 500.0));
    assert!(a.r_peaks.is_empty());
    assert_eq!(a.regularity, Regularity::Unknown);
    assert_eq!(a.measurements.heart_rate_bpm, None);
    assert!(
        a.notes.iter().any(|n| n.contains("no QRS")),
        "{:?}",
        a.notes
    );
    // Flat at an offset, and flat with quantisation noise, are still flat.
    assert!(detect_r_peaks(&[1234.0; 5000], 500.0).is_empty());
    let fuzz: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 5) as f32).collect();
    assert!(detect_r_peaks(&fuzz, 500.0).is_empty());
}

#[test]
fn beats_found_in_noise_give_no_intervals() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<f32> = (0..5000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 400.0
        })
        .collect();
    let a = analyze(&record(vec![(Lead::II, noise)], 500.0));
    assert_eq!(a.measurements.qrs_ms, None, "{:?}", a.notes);
    assert_eq!(a.measurements.qt_ms, None);
    assert!(
        a.notes.iter().any(|n| n.contains("resemble")),
        "{:?}",
        a.notes
    );
}

#[test]
fn odd_inputs_never_panic() {
    let odd: Vec<Vec<f32>> = vec![
        vec![],
        vec![1.0],
        vec![1.0, -1.0],
        vec![f32::MAX; 3000],
        (0..3000)
            .map(|i| if i % 2 == 0 { f32::MAX } else { f32::MIN })
            .collect(),
        (0..3000)
            .map(|i| if i % 400 == 0 { 3.0e38 } else { 0.0 })
            .collect(),
        vec![f32::NAN, f32::INFINITY, 0.0, 1.0],
    ];
    for x in &odd {
        for fs in [0.0, -1.0, 1.0, 99.0, 250.0, 500.0, 1e9, f64::NAN] {
            let _ = detect_r_peaks(x, fs);
            let _ = analyze(&record(vec![(Lead::II, x.clone())], fs));
        }
    }
    let none = analyze(&record(vec![], 500.0));
    assert!(none.r_peaks.is_empty() && !none.notes.is_empty());
    // Leads of unequal length (not a valid record, but must not break the analysis).
    let s = synthesize(&EcgSpec::default());
    let mut rec = s.record.clone();
    rec.leads[3].samples_uv.truncate(1000);
    let _ = analyze(&rec);
    // A spike train with huge amplitude is found, not overflowed.
    let spikes: Vec<f32> = (0..5000)
        .map(|i| if i % 400 == 200 { 3.0e38 } else { 0.0 })
        .collect();
    assert_eq!(detect_r_peaks(&spikes, 500.0).len(), 12);
}

#[test]
fn too_few_beats_give_a_rate_but_no_intervals() {
    let s = synthesize(&EcgSpec {
        duration_secs: 3.0,
        heart_rate_bpm: 60.0,
        ..EcgSpec::default()
    });
    let a = analyze(&s.record);
    assert_eq!(a.r_peaks.len(), s.truth.r_peaks.len());
    assert_eq!(a.measurements.qrs_ms, None);
    assert!(
        a.notes.iter().any(|n| n.contains("at least")),
        "{:?}",
        a.notes
    );
}

#[test]
fn limb_leads_i_and_ii_alone_still_give_an_axis() {
    let s = clean(EcgSpec {
        qrs_axis_deg: 30.0,
        ..EcgSpec::default()
    });
    let mut rec = s.record.clone();
    rec.leads
        .retain(|l| l.lead == Lead::I || l.lead == Lead::II);
    let a = analyze(&rec);
    let axis = a.measurements.qrs_axis_deg.unwrap();
    assert!((axis - 30.0).abs() <= 15.0, "{axis}");
}
