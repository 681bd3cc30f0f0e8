//! R-peak detection on one lead: Pan–Tompkins (5–15 Hz band-pass, derivative, squaring, 150 ms
//! moving-window integration, adaptive signal/noise thresholds, 200 ms refractory period, T-wave
//! discrimination, search-back for missed beats), then each beat placed on the R apex (or nadir, for a
//! lead whose QRS points down) of a 0.5–40 Hz trace.

use crate::filter::{ZeroPhase, samples, to_f64};

/// Sample rates the detector accepts; outside them it finds no peaks rather than guess.
pub const MIN_SAMPLE_RATE_HZ: f64 = 100.0;
pub const MAX_SAMPLE_RATE_HZ: f64 = 10_000.0;

/// The smallest band-passed QRS deflection (peak to peak, µV) taken as a beat: below it a trace is
/// treated as flat, whatever its relative shape.
const MIN_QRS_UV: f64 = 40.0;

/// Whether the detector can work at this rate.
pub(crate) fn rate_supported(fs: f64) -> bool {
    fs.is_finite() && (MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&fs)
}

/// The 0.5–40 Hz trace used for peak placement and delineation.
fn clean_trace(x: &[f64], fs: f64) -> Vec<f64> {
    ZeroPhase::band(Some(0.5), Some(40.0), fs).apply(x)
}

/// The 0.5–100 Hz trace the delineator measures on: wide enough that QRS edges are not smeared by
/// the filter (40 Hz would widen a QRS by several milliseconds). At low rates the corner is held
/// under Nyquist.
pub(crate) fn delineation_trace(x: &[f64], fs: f64) -> Vec<f64> {
    ZeroPhase::band(Some(0.5), Some(100.0), fs).apply(x)
}

/// The 5–15 Hz QRS band.
pub(crate) fn qrs_band(x: &[f64], fs: f64) -> Vec<f64> {
    ZeroPhase::band(Some(5.0), Some(15.0), fs).apply(x)
}

/// R-peak sample indexes of one lead (µV samples at `sample_rate_hz`), in increasing order. Empty for
/// a flat or too-short trace or an unsupported rate; never panics. Non-finite samples are read as 0.
pub fn detect_r_peaks(samples_uv: &[f32], sample_rate_hz: f64) -> Vec<usize> {
    detect(&to_f64(samples_uv), sample_rate_hz)
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    at: usize,
    value: f64,
    slope: f64,
}

pub(crate) fn detect(x: &[f64], fs: f64) -> Vec<usize> {
    if !rate_supported(fs) || x.len() < samples(0.5, fs) {
        return Vec::new();
    }
    let band = qrs_band(x, fs);
    let n = band.len();

    // Squared derivative (central difference), then a centred 150 ms moving average: the integrated
    // energy peaks near the middle of each QRS.
    let mut deriv = vec![0.0; n];
    for i in 1..n.saturating_sub(1) {
        deriv[i] = (band[i + 1] - band[i - 1]) * 0.5;
    }
    let half = samples(0.075, fs);
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0);
    let mut acc = 0.0;
    for d in &deriv {
        acc += d * d;
        prefix.push(acc);
    }
    let mwi: Vec<f64> = (0..n)
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(n));
            // The RMS slope rather than the energy: thresholds then scale with amplitude, so a
            // wide ectopic beat of half the height (a quarter of the energy) is not taken for noise.
            ((prefix[b] - prefix[a]) / (b - a) as f64).max(0.0).sqrt()
        })
        .collect();

    let slope_at = |i: usize| {
        deriv[i.saturating_sub(half)..(i + half + 1).min(n)]
            .iter()
            .fold(0.0f64, |m, d| m.max(d.abs()))
    };
    let swing_at = |i: usize| {
        let w = &band[i.saturating_sub(half)..(i + half + 1).min(n)];
        let (lo, hi) = w
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        hi - lo
    };

    // Maxima of the integrated slope that dominate ±100 ms are the candidates; each is then a beat
    // or noise. Smaller ripples on one hump are dropped here, so two humps of fast beats are never
    // merged by the refractory rule as if they were one complex.
    let dominance = samples(0.1, fs);
    let candidates: Vec<Candidate> = (1..n.saturating_sub(1))
        .filter(|&i| mwi[i] > mwi[i - 1] && mwi[i] >= mwi[i + 1])
        .filter(|&i| {
            let (a, b) = (i.saturating_sub(dominance), (i + dominance + 1).min(n));
            mwi[a..i].iter().all(|&v| v < mwi[i]) && mwi[i + 1..b].iter().all(|&v| v <= mwi[i])
        })
        .filter(|&i| swing_at(i) >= MIN_QRS_UV)
        .map(|i| Candidate {
            at: i,
            value: mwi[i],
            slope: slope_at(i),
        })
        .collect();
    let beats = classify(&candidates, &mwi, fs);

    place_on_r(&beats, &clean_trace(x, fs), fs)
}

/// Pan–Tompkins decision rules over the candidates, in time order.
fn classify(candidates: &[Candidate], mwi: &[f64], fs: f64) -> Vec<usize> {
    let refractory = samples(0.2, fs);
    let t_wave_window = samples(0.36, fs);
    // Learning phase: the first 3 s (at least one beat even at 30 bpm) set the initial levels.
    let learn = &mwi[..samples(3.0, fs).min(mwi.len())];
    let learn_max = learn.iter().fold(0.0f64, |m, &v| m.max(v));
    let mut spki = 0.5 * learn_max;
    let mut npki = learn.iter().sum::<f64>() / learn.len().max(1) as f64 * 0.5;
    let threshold = |spki: f64, npki: f64| npki + 0.25 * (spki - npki);

    let mut beats: Vec<Candidate> = Vec::new();
    // Candidates seen since the last beat that fell under the threshold, for the search-back.
    let mut pending: Vec<Candidate> = Vec::new();
    let mut rr: Vec<usize> = Vec::new();
    let rr_average = |rr: &[usize]| {
        let recent = &rr[rr.len().saturating_sub(8)..];
        (!recent.is_empty()).then(|| recent.iter().sum::<usize>() as f64 / recent.len() as f64)
    };

    fn accept(c: Candidate, beats: &mut Vec<Candidate>, rr: &mut Vec<usize>) {
        if let Some(last) = beats.last() {
            rr.push(c.at.saturating_sub(last.at));
        }
        beats.push(c);
    }

    for &c in candidates {
        // Search-back: a beat overdue by 1.66 average RR is looked for among the pending candidates
        // with half the threshold.
        if let (Some(last), Some(avg)) = (beats.last().copied(), rr_average(&rr))
            && (c.at - last.at) as f64 > 1.66 * avg
        {
            let thr2 = 0.5 * threshold(spki, npki);
            let best = pending
                .iter()
                .filter(|p| p.at >= last.at + refractory && p.value > thr2)
                .filter(|p| p.at >= last.at + t_wave_window || p.slope >= 0.5 * last.slope)
                .copied()
                .max_by(|a, b| a.value.total_cmp(&b.value));
            if let Some(b) = best {
                spki = 0.25 * b.value + 0.75 * spki;
                accept(b, &mut beats, &mut rr);
                pending.retain(|p| p.at > b.at);
            }
        }

        if c.value <= threshold(spki, npki) {
            npki = 0.125 * c.value + 0.875 * npki;
            pending.push(c);
            continue;
        }
        if let Some(last) = beats.last_mut() {
            let gap = c.at - last.at;
            if gap < refractory {
                // Two maxima of one complex: keep the stronger.
                if c.value > last.value {
                    *last = c;
                }
                continue;
            }
            if gap < t_wave_window && c.slope < 0.5 * last.slope {
                npki = 0.125 * c.value + 0.875 * npki;
                pending.push(c);
                continue;
            }
        }
        spki = 0.125 * c.value + 0.875 * spki;
        accept(c, &mut beats, &mut rr);
        pending.clear();
    }
    // A beat missed at the very end (no later candidate to trigger the search-back).
    if let (Some(last), Some(avg)) = (beats.last().copied(), rr_average(&rr))
        && (mwi.len() - last.at) as f64 > 1.66 * avg
    {
        let thr2 = 0.5 * threshold(spki, npki);
        if let Some(b) = pending
            .iter()
            .filter(|p| p.at >= last.at + refractory && p.value > thr2)
            .filter(|p| p.at >= last.at + t_wave_window || p.slope >= 0.5 * last.slope)
            .max_by(|a, b| a.value.total_cmp(&b.value))
        {
            beats.push(*b);
        }
    }
    let mut at: Vec<usize> = beats.iter().map(|b| b.at).collect();
    at.sort_unstable();
    at.dedup();
    at
}

/// Moves each beat from the middle of its energy to the R apex of the clean trace: the maximum, or
/// the minimum when most beats of this lead deflect further down than up, so every beat of a record
/// is marked at the same point of its complex.
fn place_on_r(beats: &[usize], clean: &[f64], fs: f64) -> Vec<usize> {
    let reach = samples(0.09, fs);
    let n = clean.len();
    let windows: Vec<(usize, usize)> = beats
        .iter()
        .enumerate()
        .map(|(k, &b)| {
            // Never reach past halfway to a neighbour.
            let prev = k.checked_sub(1).and_then(|j| beats.get(j));
            let next = beats.get(k + 1);
            let lo = prev
                .map_or(0, |&p| (p + b) / 2 + 1)
                .max(b.saturating_sub(reach));
            let hi = next.map_or(n, |&q| (b + q) / 2).min(b + reach + 1).min(n);
            (lo.min(b), hi.max(b + 1).min(n))
        })
        .collect();
    let extremes: Vec<(usize, usize, f64, f64)> = windows
        .iter()
        .filter_map(|&(lo, hi)| {
            let w = clean.get(lo..hi)?;
            let (mut imax, mut imin) = (0, 0);
            for (i, v) in w.iter().enumerate() {
                if *v > w[imax] {
                    imax = i;
                }
                if *v < w[imin] {
                    imin = i;
                }
            }
            Some((lo + imax, lo + imin, w[imax], w[imin]))
        })
        .collect();
    let up = extremes.iter().filter(|&&(_, _, hi, lo)| hi >= -lo).count();
    let positive = 2 * up >= extremes.len();
    let mut peaks: Vec<usize> = extremes
        .iter()
        .map(|&(imax, imin, _, _)| if positive { imax } else { imin })
        .collect();
    peaks.sort_unstable();
    peaks.dedup();
    peaks
}
