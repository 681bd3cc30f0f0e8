//! Zero-phase IIR filtering (second-order Butterworth sections run forward and backward) and the small
//! numeric helpers the detector and the delineator share. Filters are designed for the record's own
//! sample rate, so no resampling is needed between 200 and 1000 Hz.

/// One second-order section in transposed direct form II, coefficients normalised by a0.
#[derive(Clone, Copy, Debug)]
struct Biquad {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
}

impl Biquad {
    /// Butterworth (Q = 1/√2) low- or high-pass by the bilinear transform. The corner is kept below
    /// Nyquist so a low sample rate gives a weaker filter, never an unstable one.
    fn butterworth(corner_hz: f64, fs: f64, high_pass: bool) -> Biquad {
        let fc = corner_hz.clamp(1e-3 * fs, 0.45 * fs);
        let w0 = 2.0 * std::f64::consts::PI * fc / fs;
        let (sin, cos) = w0.sin_cos();
        let alpha = sin / std::f64::consts::SQRT_2;
        let a0 = 1.0 + alpha;
        let (b0, b1) = if high_pass {
            ((1.0 + cos) / 2.0, -(1.0 + cos))
        } else {
            ((1.0 - cos) / 2.0, 1.0 - cos)
        };
        Biquad {
            b0: b0 / a0,
            b1: b1 / a0,
            b2: b0 / a0,
            a1: -2.0 * cos / a0,
            a2: (1.0 - alpha) / a0,
        }
    }

    /// Filters in place, starting from the steady state for the first sample so a constant offset
    /// does not ring.
    fn run(&self, x: &mut [f64]) {
        let Some(&x0) = x.first() else { return };
        let den = 1.0 + self.a1 + self.a2;
        let dc_gain = if den.abs() > 1e-12 {
            (self.b0 + self.b1 + self.b2) / den
        } else {
            0.0
        };
        let y0 = dc_gain * x0;
        let mut z1 = (self.b1 + self.b2) * x0 - (self.a1 + self.a2) * y0;
        let mut z2 = self.b2 * x0 - self.a2 * y0;
        for v in x.iter_mut() {
            let input = *v;
            let y = self.b0 * input + z1;
            z1 = self.b1 * input - self.a1 * y + z2;
            z2 = self.b2 * input - self.a2 * y;
            *v = y;
        }
    }
}

/// A cascade of sections applied forward then backward (zero phase: a symmetric peak stays where it is).
#[derive(Clone, Debug)]
pub(crate) struct ZeroPhase {
    sections: Vec<Biquad>,
    /// Samples of odd reflection added at each end to keep edge transients out of the signal.
    pad: usize,
}

impl ZeroPhase {
    /// Band-pass from `low_hz` to `high_hz` (either may be `None` to leave that side open).
    pub(crate) fn band(low_hz: Option<f64>, high_hz: Option<f64>, fs: f64) -> ZeroPhase {
        let mut sections = Vec::new();
        if let Some(f) = low_hz {
            sections.push(Biquad::butterworth(f, fs, true));
        }
        if let Some(f) = high_hz {
            sections.push(Biquad::butterworth(f, fs, false));
        }
        // Long enough for the slowest corner to settle: about 1.5 time constants of the high-pass.
        let slowest = low_hz
            .unwrap_or(5.0)
            .min(high_hz.unwrap_or(f64::MAX))
            .max(0.1);
        let pad = (fs * 0.5 / slowest).round().max(3.0) as usize;
        ZeroPhase { sections, pad }
    }

    pub(crate) fn apply(&self, x: &[f64]) -> Vec<f64> {
        let n = x.len();
        let (Some(&first), Some(&last)) = (x.first(), x.last()) else {
            return Vec::new();
        };
        let pad = self.pad.min(n.saturating_sub(1));
        let mut ext = Vec::with_capacity(n + 2 * pad);
        ext.extend(x[1..=pad].iter().rev().map(|&v| 2.0 * first - v));
        ext.extend_from_slice(x);
        ext.extend(x[n - 1 - pad..n - 1].iter().rev().map(|&v| 2.0 * last - v));
        for s in &self.sections {
            s.run(&mut ext);
        }
        ext.reverse();
        for s in &self.sections {
            s.run(&mut ext);
        }
        ext.reverse();
        ext.drain(..pad);
        ext.truncate(n);
        ext
    }
}

/// Samples as f64, with anything not finite read as 0 so one bad sample cannot poison a filter.
pub(crate) fn to_f64(samples: &[f32]) -> Vec<f64> {
    samples
        .iter()
        .map(|&v| if v.is_finite() { f64::from(v) } else { 0.0 })
        .collect()
}

/// The median of the values (empty: 0). Reorders `v`.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

/// The `q`-quantile (0–1) of the values (empty: 0). Reorders `v`.
pub(crate) fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let k = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, m, _) = v.select_nth_unstable_by(k.min(v.len() - 1), f64::total_cmp);
    *m
}

/// A sample count for a duration, at least one.
pub(crate) fn samples(secs: f64, fs: f64) -> usize {
    (secs * fs).round().max(1.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(f: f64, fs: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / fs).sin())
            .collect()
    }

    fn rms(x: &[f64]) -> f64 {
        (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn band_pass_keeps_the_band_and_drops_the_rest_at_any_rate() {
        for fs in [250.0, 360.0, 500.0, 1000.0] {
            let bp = ZeroPhase::band(Some(5.0), Some(15.0), fs);
            let n = (fs * 8.0) as usize;
            let mid = |x: &[f64]| rms(&x[n / 4..3 * n / 4]);
            let pass = mid(&bp.apply(&sine(9.0, fs, n)));
            let wander = mid(&bp.apply(&sine(0.3, fs, n)));
            let hum = mid(&bp.apply(&sine(50.0, fs, n)));
            assert!(pass > 0.5, "fs {fs}: 9 Hz rms {pass}");
            assert!(wander < 0.01, "fs {fs}: 0.3 Hz rms {wander}");
            assert!(hum < 0.05, "fs {fs}: 50 Hz rms {hum}");
        }
    }

    #[test]
    fn zero_phase_keeps_a_symmetric_peak_in_place() {
        let fs = 500.0;
        let mut x = vec![0.0; 2000];
        for (k, v) in x.iter_mut().enumerate().skip(990).take(21) {
            *v = 10.0 - (k as f64 - 1000.0).abs();
        }
        let y = ZeroPhase::band(Some(0.5), Some(40.0), fs).apply(&x);
        let peak = (0..y.len()).max_by(|&a, &b| y[a].total_cmp(&y[b])).unwrap();
        assert_eq!(peak, 1000);
    }

    #[test]
    fn short_and_empty_inputs_do_not_panic() {
        let f = ZeroPhase::band(Some(0.5), Some(40.0), 500.0);
        assert!(f.apply(&[]).is_empty());
        assert_eq!(f.apply(&[3.0]).len(), 1);
        assert_eq!(f.apply(&[3.0, 4.0]).len(), 2);
        let constant = f.apply(&[7.0; 100]);
        assert!(constant.iter().all(|v| v.abs() < 1e-6), "{constant:?}");
    }
}
