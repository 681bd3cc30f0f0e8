//! Rhythm from R peaks: RR intervals, their spread, heart rate and a regular/irregular call.

use yilian_domain::ecg::Regularity;

/// Fewer RR intervals than this and regularity is `Unknown`.
pub const MIN_RR_FOR_REGULARITY: usize = 3;
/// Irregular when the RR coefficient of variation or the RMS of successive RR differences exceeds
/// this fraction of the mean RR. Sinus rhythm at rest stays well under it; atrial fibrillation and
/// frequent ectopy go over it.
pub const IRREGULAR_FRACTION: f64 = 0.10;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rhythm {
    pub rr_ms: Vec<f64>,
    pub mean_rr_ms: Option<f64>,
    pub median_rr_ms: Option<f64>,
    pub rr_sd_ms: Option<f64>,
    pub regularity: Regularity,
}

pub(crate) fn rhythm(peaks: &[usize], fs: f64) -> Rhythm {
    let rr_ms: Vec<f64> = peaks
        .windows(2)
        .map(|w| match w {
            [a, b] => b.saturating_sub(*a) as f64 * 1000.0 / fs,
            _ => 0.0,
        })
        .collect();
    let n = rr_ms.len() as f64;
    let mean = (!rr_ms.is_empty()).then(|| rr_ms.iter().sum::<f64>() / n);
    let median = (!rr_ms.is_empty()).then(|| {
        let mut v = rr_ms.clone();
        crate::filter::median(&mut v)
    });
    let sd = mean
        .filter(|_| rr_ms.len() >= 2)
        .map(|m| (rr_ms.iter().map(|r| (r - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    let regularity = match (mean, sd) {
        (Some(m), Some(sd)) if rr_ms.len() >= MIN_RR_FOR_REGULARITY && m > 0.0 => {
            let rmssd = (rr_ms
                .windows(2)
                .map(|w| match w {
                    [a, b] => (b - a).powi(2),
                    _ => 0.0,
                })
                .sum::<f64>()
                / (n - 1.0))
                .sqrt();
            if sd / m > IRREGULAR_FRACTION || rmssd / m > IRREGULAR_FRACTION {
                Regularity::Irregular
            } else {
                Regularity::Regular
            }
        }
        _ => Regularity::Unknown,
    };
    Rhythm {
        rr_ms,
        mean_rr_ms: mean,
        median_rr_ms: median,
        rr_sd_ms: sd,
        regularity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_beats_are_regular_and_a_premature_beat_is_not() {
        let steady: Vec<usize> = (0..8).map(|k| 100 + k * 400).collect();
        let r = rhythm(&steady, 400.0);
        assert_eq!(r.regularity, Regularity::Regular);
        assert_eq!(r.mean_rr_ms, Some(1000.0));
        assert_eq!(r.rr_sd_ms, Some(0.0));
        let mut ectopic = steady.clone();
        ectopic[4] -= 150;
        assert_eq!(rhythm(&ectopic, 400.0).regularity, Regularity::Irregular);
    }

    #[test]
    fn too_few_beats_say_unknown() {
        assert_eq!(rhythm(&[], 500.0).regularity, Regularity::Unknown);
        assert_eq!(rhythm(&[10], 500.0).rr_ms, Vec::<f64>::new());
        let r = rhythm(&[10, 400, 800], 500.0);
        assert_eq!(r.regularity, Regularity::Unknown);
        assert_eq!(r.rr_ms.len(), 2);
    }
}
