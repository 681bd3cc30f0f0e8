//! Interval and axis measurement on median beats: every lead's beats are aligned on the R peaks and
//! reduced to a median beat; the QRS boundaries come from the summed absolute slope of all leads, the
//! P onset and T end from tangents to the leads' RMS curve, the axes from net areas in I and aVF.
//! Each measurement is returned only when its wave is clearly there; otherwise a note says why.

use yilian_domain::ecg::Lead;

use crate::filter::{median, samples};

/// Plausible ranges (ms): a boundary found outside them is a failed delineation, not a finding.
const QRS_RANGE_MS: (f64, f64) = (40.0, 220.0);
const QT_RANGE_MS: (f64, f64) = (200.0, 700.0);
const PR_RANGE_MS: (f64, f64) = (60.0, 400.0);
/// The QRS boundary is where the summed slope falls under this fraction of its peak.
const QRS_SLOPE_FRACTION: f64 = 0.12;

/// Median beats of every lead, aligned so that the R peak sits at `r`.
#[derive(Debug)]
pub(crate) struct Templates {
    pub r: usize,
    pub leads: Vec<(Lead, Vec<f64>)>,
    /// Estimated noise left in a median beat (µV, standard deviation).
    pub noise_uv: f64,
}

/// What the delineator found, in milliseconds and degrees.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Measured {
    pub qrs_ms: Option<f64>,
    pub pr_ms: Option<f64>,
    pub qt_ms: Option<f64>,
    pub qrs_axis_deg: Option<f64>,
    pub p_axis_deg: Option<f64>,
    pub t_axis_deg: Option<f64>,
    pub notes: Vec<String>,
}

/// Median beats over the peaks whose whole window lies inside the trace. `None` with fewer than
/// `min_beats` such peaks.
pub(crate) fn templates(
    clean: &[(Lead, Vec<f64>)],
    peaks: &[usize],
    rr_samples: f64,
    fs: f64,
    min_beats: usize,
) -> Option<Templates> {
    let n = clean.iter().map(|(_, x)| x.len()).min()?;
    let pre = samples(0.45_f64.min(0.6 * rr_samples / fs), fs);
    let post = samples(0.75_f64.min(0.95 * rr_samples / fs), fs);
    let used: Vec<usize> = peaks
        .iter()
        .copied()
        .filter(|&p| p >= pre && p + post < n)
        .collect();
    if used.len() < min_beats.max(1) {
        return None;
    }
    let len = pre + post;
    let mut column = vec![0.0; used.len()];
    let mut spread = 0.0;
    let mut leads = Vec::with_capacity(clean.len());
    for (lead, x) in clean {
        let mut m = vec![0.0; len];
        for (k, slot) in m.iter_mut().enumerate() {
            for (c, &p) in column.iter_mut().zip(&used) {
                *c = x.get(p - pre + k).copied().unwrap_or(0.0);
            }
            *slot = median(&mut column);
        }
        // Spread of the beats about their median (median absolute deviation, as a standard
        // deviation), averaged over the
        // window, sampled at ~100 points (an estimate needs no more, and it halves the cost).
        let step = (len / 100).max(1);
        let (mut lead_spread, mut points) = (0.0, 0);
        for (k, &mk) in m.iter().enumerate().step_by(step) {
            for (c, &p) in column.iter_mut().zip(&used) {
                *c = (x.get(p - pre + k).copied().unwrap_or(0.0) - mk).abs();
            }
            lead_spread += 1.4826 * median(&mut column);
            points += 1;
        }
        spread += lead_spread / f64::from(points.max(1));
        leads.push((lead.clone(), m));
    }
    let noise_uv = spread / clean.len().max(1) as f64 / (used.len() as f64).sqrt();
    Some(Templates {
        r: pre,
        leads,
        noise_uv,
    })
}

/// The share of beats whose QRS (±60 ms about R) correlates with the median beat's at 0.7 or more.
/// Beats of one rhythm resemble each other, even with ectopics among them; "beats" found in noise
/// or artefact do not.
pub(crate) fn consistency(
    trace: &[f64],
    template: &[f64],
    r: usize,
    peaks: &[usize],
    fs: f64,
) -> f64 {
    let half = samples(0.06, fs);
    let Some(t) = template.get(r.saturating_sub(half)..(r + half + 1).min(template.len())) else {
        return 0.0;
    };
    let centred = |w: &[f64]| {
        let m = mean(w);
        w.iter().map(|v| v - m).collect::<Vec<f64>>()
    };
    let t = centred(t);
    let t_norm = t.iter().map(|v| v * v).sum::<f64>().sqrt();
    let lead = r.saturating_sub(half).min(r);
    let mut scored = 0usize;
    let mut alike = 0usize;
    for &p in peaks {
        let Some(w) = p
            .checked_sub(r - lead)
            .and_then(|start| trace.get(start..start + t.len()))
        else {
            continue;
        };
        let w = centred(w);
        let w_norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
        scored += 1;
        if t_norm > 0.0 && w_norm > 0.0 {
            let corr = t.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() / (t_norm * w_norm);
            if corr >= 0.7 {
                alike += 1;
            }
        }
    }
    if scored == 0 {
        0.0
    } else {
        alike as f64 / scored as f64
    }
}

fn argmax(v: &[f64], lo: usize, hi: usize) -> Option<usize> {
    let hi = hi.min(v.len());
    (lo..hi).max_by(|&a, &b| v[a].total_cmp(&v[b]))
}

fn argmin(v: &[f64], lo: usize, hi: usize) -> Option<usize> {
    let hi = hi.min(v.len());
    (lo..hi).min_by(|&a, &b| v[a].total_cmp(&v[b]))
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Central difference over ±h samples, per sample.
fn derivative(x: &[f64], h: usize) -> Vec<f64> {
    let n = x.len();
    (0..n)
        .map(|k| {
            let (a, b) = (k.saturating_sub(h), (k + h).min(n.saturating_sub(1)));
            if b > a {
                (x[b] - x[a]) / (b - a) as f64
            } else {
                0.0
            }
        })
        .collect()
}

/// Net area (µV·samples) of a lead's baseline-corrected median beat over `lo..hi`.
fn net_area(t: &Templates, lead: &Lead, base: &[f64], lo: usize, hi: usize) -> Option<(f64, f64)> {
    let i = t.leads.iter().position(|(l, _)| l == lead)?;
    let (_, m) = t.leads.get(i)?;
    let b = base.get(i)?;
    let w = m.get(lo..hi.min(m.len()))?;
    Some((
        w.iter().map(|v| v - b).sum(),
        w.iter().map(|v| (v - b).abs()).sum(),
    ))
}

/// The frontal axis from net areas in I and aVF; `None` when both are too small against the total
/// area to give a direction.
fn axis(t: &Templates, base: &[f64], lo: usize, hi: usize) -> Option<f64> {
    let (i_net, i_abs) = net_area(t, &Lead::I, base, lo, hi)?;
    let (f_net, f_abs) = net_area(t, &Lead::AVF, base, lo, hi)?;
    let net = i_net.hypot(f_net);
    let total = i_abs.hypot(f_abs);
    let noise = t.noise_uv * (hi.saturating_sub(lo) as f64).sqrt() * 3.0;
    (net > 0.1 * total && net > noise).then(|| f_net.atan2(i_net).to_degrees())
}

/// Delineates the median beats. `rr_samples` is the median RR; `measure_pr_qt` is false when the
/// rhythm does not allow PR and QT (irregular), in which case only QRS and axes are measured.
pub(crate) fn measure(t: &Templates, rr_samples: f64, fs: f64, measure_pr_qt: bool) -> Measured {
    let mut out = Measured::default();
    let ms = |k: f64| k * 1000.0 / fs;
    let len = t.leads.first().map_or(0, |(_, m)| m.len());
    let r = t.r;

    // Summed absolute slope of all leads: large only inside the QRS.
    let h2 = samples(0.002, fs);
    let mut slope = vec![0.0; len];
    for (_, m) in &t.leads {
        for (s, d) in slope.iter_mut().zip(derivative(m, h2)) {
            *s += d.abs();
        }
    }
    let reach = samples(0.06, fs);
    let (Some(up), Some(down)) = (
        argmax(&slope, r.saturating_sub(reach), r + 1),
        argmax(&slope, r, r + reach + 1),
    ) else {
        out.notes
            .push("QRS boundaries unclear: intervals not measured".into());
        return out;
    };
    let smax = slope[up].max(slope[down]);
    let mut floor_v = slope.clone();
    let floor = median(&mut floor_v);
    let thr = QRS_SLOPE_FRACTION * smax;
    let run = samples(0.012, fs);
    let onset = {
        let mut below = 0;
        let lo = up.saturating_sub(samples(0.15, fs));
        (lo..=up).rev().find_map(|j| {
            below = if slope[j] < thr { below + 1 } else { 0 };
            (below == run).then_some(j + run - 1)
        })
    };
    let offset = {
        let mut below = 0;
        let hi = (down + samples(0.2, fs)).min(len);
        (down..hi).find_map(|j| {
            below = if slope[j] < thr { below + 1 } else { 0 };
            (below == run).then(|| j + 1 - run)
        })
    };
    let (Some(onset), Some(offset)) = (onset, offset) else {
        out.notes
            .push("QRS boundaries unclear: intervals not measured".into());
        return out;
    };
    let qrs = ms(offset.saturating_sub(onset) as f64);
    if smax < 8.0 * floor || !(QRS_RANGE_MS.0..=QRS_RANGE_MS.1).contains(&qrs) {
        out.notes.push(format!(
            "QRS boundaries unclear (found {qrs:.0} ms): intervals not measured"
        ));
        return out;
    }
    out.qrs_ms = Some(qrs);

    // Each lead's level in the PR segment is its zero.
    let (b_lo, b_hi) = (
        onset.saturating_sub(samples(0.016, fs)),
        onset
            .saturating_sub(samples(0.002, fs))
            .max(onset.saturating_sub(samples(0.016, fs)) + 1),
    );
    let base: Vec<f64> = t
        .leads
        .iter()
        .map(|(_, m)| mean(m.get(b_lo..b_hi).unwrap_or(&[])))
        .collect();
    match axis(t, &base, onset, offset + 1) {
        Some(a) => out.qrs_axis_deg = Some(a),
        None if t.leads.iter().any(|(l, _)| *l == Lead::I) => out
            .notes
            .push("QRS axis indeterminate: net QRS area near zero in I and aVF".into()),
        None => out
            .notes
            .push("QRS axis not measured: leads I and aVF not available".into()),
    }
    if !measure_pr_qt {
        out.notes
            .push("rhythm irregular: PR, QT and QTc not measured".into());
        return out;
    }

    // RMS of the leads about their PR-segment level: the P and T waves are its humps.
    let nl = t.leads.len().max(1) as f64;
    let rms: Vec<f64> = (0..len)
        .map(|k| {
            let sum: f64 = t
                .leads
                .iter()
                .zip(&base)
                .map(|((_, m), b)| (m.get(k).copied().unwrap_or(0.0) - b).powi(2))
                .sum();
            (sum / nl).sqrt()
        })
        .collect();
    let d_rms = derivative(&rms, samples(0.004, fs));
    let rms_base = mean(rms.get(b_lo..b_hi).unwrap_or(&[]));
    let noise = t.noise_uv;

    // T: the largest hump after the QRS and before the next beat; its end where the tangent at the
    // steepest descent meets the baseline.
    let rr = rr_samples.round() as usize;
    let t_limit = (r + rr.saturating_sub(samples(0.1, fs))).min(len);
    let t_peak = argmax(
        &rms,
        offset + samples(0.04, fs),
        (r + rr * 62 / 100).min(t_limit),
    );
    let t_end = t_peak.and_then(|tp| {
        let amp = rms[tp] - rms_base;
        if amp < 25.0_f64.max(5.0 * noise) {
            return None;
        }
        let ks = argmin(&d_rms, tp, (tp + samples(0.25, fs)).min(t_limit))?;
        let slope = -d_rms[ks];
        if slope <= 0.0 {
            return None;
        }
        let end = ks as f64 + (rms[ks] - rms_base).max(0.0) / slope;
        (end < t_limit as f64).then_some(end)
    });
    match t_end {
        Some(end) => {
            let qt = ms(end - onset as f64);
            if (QT_RANGE_MS.0..=QT_RANGE_MS.1).contains(&qt) {
                out.qt_ms = Some(qt);
                out.t_axis_deg = axis(t, &base, offset, end.round() as usize);
            } else {
                out.notes.push(format!(
                    "T-wave end unclear (QT {qt:.0} ms): QT not measured"
                ));
            }
        }
        None => out.notes.push("T-wave end unclear: QT not measured".into()),
    }

    // P: the largest hump before the QRS that falls back to the baseline before it; its onset where
    // the tangent at the steepest rise meets the baseline.
    // It starts no earlier than the previous beat's T end (this beat's, one RR back; without one,
    // 40% of an RR before the R), so at fast rates the previous T is not taken for this P.
    let prev_t_end = t_end.map_or(r as f64 - 0.4 * rr_samples, |e| e - rr_samples);
    let p_lo = onset
        .saturating_sub(samples(0.3_f64.min(0.6 * rr_samples / fs), fs))
        .max((prev_t_end + 0.01 * fs).max(0.0).ceil() as usize);
    let p_hi = onset.saturating_sub(samples(0.02, fs));
    let p_on = argmax(&rms, p_lo, p_hi).and_then(|pp| {
        let amp = rms[pp] - rms_base;
        if amp < 15.0_f64.max(5.0 * noise) {
            return None;
        }
        let dip = rms.get(pp..onset)?.iter().fold(f64::MAX, |m, &v| m.min(v));
        if dip - rms_base > 0.5 * amp {
            return None;
        }
        let ks = argmax(
            &d_rms,
            pp.saturating_sub(samples(0.12, fs)).max(p_lo),
            pp + 1,
        )?;
        let slope = d_rms[ks];
        if slope <= 0.0 {
            return None;
        }
        Some(ks as f64 - (rms[ks] - rms_base).max(0.0) / slope)
    });
    match p_on {
        Some(p) => {
            let pr = ms(onset as f64 - p);
            if (PR_RANGE_MS.0..=PR_RANGE_MS.1).contains(&pr) {
                out.pr_ms = Some(pr);
                out.p_axis_deg = axis(t, &base, p.max(0.0).round() as usize, onset);
            } else {
                out.notes.push(format!(
                    "P-wave onset unclear (PR {pr:.0} ms): PR not measured"
                ));
            }
        }
        None => out
            .notes
            .push("no clear P wave before the QRS: PR not measured".into()),
    }
    out
}
