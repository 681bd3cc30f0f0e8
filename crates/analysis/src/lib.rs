//! The hub's own ECG measurements: R peaks, heart rate, RR intervals and rhythm regularity on every
//! record, and PR, QRS, QT/QTc (Bazett and Fridericia) and the frontal axes where the trace allows a
//! reliable reading. Pure computation over `yilian_domain::ecg`; no I/O. The device's own
//! measurements stay in `EcgRecord::device_measurements`, untouched, to be shown beside these.

mod detect;
mod filter;
mod measure;
mod rhythm;
mod score;

use yilian_domain::ecg::{EcgAnalysis, EcgRecord, GlobalMeasurements, Lead, Regularity};

pub use detect::{MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, detect_r_peaks};
pub use rhythm::{IRREGULAR_FRACTION, MIN_RR_FOR_REGULARITY};
pub use score::{BeatMatch, match_beats};

/// Fewer beats than this (with a whole median-beat window inside the trace) and no interval is
/// measured.
pub const MIN_BEATS_FOR_INTERVALS: usize = 4;

/// Intervals are measured only when at least this share of beats resembles the median beat.
const MIN_ALIKE_BEATS: f64 = 0.5;

/// Lead II is the detection lead unless another lead's QRS band is more than this many times larger
/// (lead II nearly perpendicular to the axis has small, ambiguous complexes).
const PREFER_II_RATIO: f64 = 2.0;

/// Analyses a record: picks the detection lead, detects beats, measures rhythm, and delineates median
/// beats for intervals and axes when there are enough regular beats. Never panics; anything it could
/// not measure is `None` with the reason in `notes`.
pub fn analyze(record: &EcgRecord) -> EcgAnalysis {
    let mut out = EcgAnalysis {
        detection_lead: None,
        r_peaks: Vec::new(),
        rr_ms: Vec::new(),
        rr_sd_ms: None,
        regularity: Regularity::Unknown,
        measurements: GlobalMeasurements::default(),
        qtc_bazett_ms: None,
        qtc_fridericia_ms: None,
        notes: Vec::new(),
    };
    let fs = record.sample_rate_hz;
    if !detect::rate_supported(fs) {
        out.notes.push(format!(
            "sample rate {fs} Hz is outside the {MIN_SAMPLE_RATE_HZ}–{MAX_SAMPLE_RATE_HZ} Hz the analysis supports: nothing measured"
        ));
        return out;
    }
    // Leads of unequal length (an invalid record) are cut to the shortest so beats line up.
    let n = record
        .leads
        .iter()
        .map(|l| l.samples_uv.len())
        .min()
        .unwrap_or(0);
    if n == 0 {
        out.notes
            .push("the record has no samples: nothing measured".into());
        return out;
    }
    let raw: Vec<(Lead, Vec<f64>)> = record
        .leads
        .iter()
        .map(|l| {
            (
                l.lead.clone(),
                filter::to_f64(l.samples_uv.get(..n).unwrap_or(&[])),
            )
        })
        .collect();

    let Some(det_index) = detection_lead(&raw, fs) else {
        out.notes.push("no leads: nothing measured".into());
        return out;
    };
    let Some((det_lead, det_raw)) = raw.get(det_index) else {
        return out;
    };
    out.detection_lead = Some(det_lead.clone());
    let peaks = detect::detect(det_raw, fs);
    if peaks.is_empty() {
        out.notes.push(format!(
            "no QRS complexes found in lead {det_lead}: the trace is flat, too short or too noisy"
        ));
        return out;
    }
    out.r_peaks = peaks;
    let rh = rhythm::rhythm(&out.r_peaks, fs);
    out.rr_ms = rh.rr_ms;
    out.rr_sd_ms = rh.rr_sd_ms;
    out.regularity = rh.regularity;
    out.measurements.rr_ms = rh.mean_rr_ms;
    out.measurements.heart_rate_bpm = rh.mean_rr_ms.filter(|&m| m > 0.0).map(|m| 60_000.0 / m);

    let (Some(median_rr_ms), true) = (
        rh.median_rr_ms,
        out.r_peaks.len() >= MIN_BEATS_FOR_INTERVALS,
    ) else {
        out.notes.push(format!(
            "{} beat(s) found; at least {MIN_BEATS_FOR_INTERVALS} are needed to measure intervals",
            out.r_peaks.len()
        ));
        return out;
    };
    let rr_samples = median_rr_ms * fs / 1000.0;

    let mut clean: Vec<(Lead, Vec<f64>)> = raw
        .iter()
        .map(|(lead, x)| (lead.clone(), detect::delineation_trace(x, fs)))
        .collect();
    // The axis needs I and aVF; a device that sent only I and II still gives aVF by Goldberger.
    if record.lead(&Lead::AVF).is_none()
        && let Some(avf) = record.lead_or_derived(&Lead::AVF)
    {
        let x = filter::to_f64(avf.get(..n).unwrap_or(&[]));
        clean.push((Lead::AVF, detect::delineation_trace(&x, fs)));
    }
    let Some(templates) = measure::templates(
        &clean,
        &out.r_peaks,
        rr_samples,
        fs,
        MIN_BEATS_FOR_INTERVALS,
    ) else {
        out.notes.push(format!(
            "fewer than {MIN_BEATS_FOR_INTERVALS} whole beats inside the trace: intervals not measured"
        ));
        return out;
    };
    if let (Some((_, trace)), Some((_, template))) =
        (clean.get(det_index), templates.leads.get(det_index))
    {
        let alike = measure::consistency(trace, template, templates.r, &out.r_peaks, fs);
        if alike < MIN_ALIKE_BEATS {
            out.notes.push(format!(
                "only {:.0}% of the beats resemble the median beat (noise or artefact?): intervals not measured",
                alike * 100.0
            ));
            return out;
        }
    }
    let regular = out.regularity == Regularity::Regular;
    let m = measure::measure(&templates, rr_samples, fs, regular);
    out.notes.extend(m.notes);
    out.measurements.qrs_ms = m.qrs_ms;
    out.measurements.pr_ms = m.pr_ms;
    out.measurements.qt_ms = m.qt_ms;
    out.measurements.qrs_axis_deg = m.qrs_axis_deg;
    out.measurements.p_axis_deg = m.p_axis_deg;
    out.measurements.t_axis_deg = m.t_axis_deg;
    if let Some(qt) = m.qt_ms {
        let rr_s = median_rr_ms / 1000.0;
        out.qtc_bazett_ms = Some(qt / rr_s.sqrt());
        out.qtc_fridericia_ms = Some(qt / rr_s.cbrt());
        out.measurements.qtc_ms = out.qtc_bazett_ms;
    }
    out
}

/// Lead II when its QRS band is within `PREFER_II_RATIO` of the strongest lead, else the strongest.
/// Strength is the 99th percentile of the 5–15 Hz band's magnitude (robust to a few spikes).
fn detection_lead(raw: &[(Lead, Vec<f64>)], fs: f64) -> Option<usize> {
    let strength: Vec<f64> = raw
        .iter()
        .map(|(_, x)| {
            let mut mag: Vec<f64> = detect::qrs_band(x, fs).iter().map(|v| v.abs()).collect();
            filter::quantile(&mut mag, 0.99)
        })
        .collect();
    let best = (0..raw.len()).max_by(|&a, &b| strength[a].total_cmp(&strength[b]))?;
    let ii = raw.iter().position(|(l, _)| *l == Lead::II);
    match ii {
        Some(i) if strength[i] * PREFER_II_RATIO >= strength[best] => Some(i),
        _ => Some(best),
    }
}

#[cfg(test)]
mod tests;
