//! Beat-by-beat comparison of detected R peaks with reference beats (ANSI/AAMI EC57 style): a
//! detection within the match window of a reference beat is a true positive, each beat pairs at most
//! once, leftovers are false negatives (reference) or false positives (detections).

/// Counts from one comparison; add them up over records for gross statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BeatMatch {
    pub true_positives: usize,
    pub false_negatives: usize,
    pub false_positives: usize,
}

impl BeatMatch {
    /// Se = TP / (TP + FN); `None` with no reference beats.
    pub fn sensitivity(&self) -> Option<f64> {
        let d = self.true_positives + self.false_negatives;
        (d > 0).then(|| self.true_positives as f64 / d as f64)
    }

    /// +P = TP / (TP + FP); `None` with no detections.
    pub fn positive_predictivity(&self) -> Option<f64> {
        let d = self.true_positives + self.false_positives;
        (d > 0).then(|| self.true_positives as f64 / d as f64)
    }
}

impl std::ops::Add for BeatMatch {
    type Output = BeatMatch;
    fn add(self, o: BeatMatch) -> BeatMatch {
        BeatMatch {
            true_positives: self.true_positives + o.true_positives,
            false_negatives: self.false_negatives + o.false_negatives,
            false_positives: self.false_positives + o.false_positives,
        }
    }
}

/// Pairs sorted reference beats with sorted detections within `window` samples (EC57 uses 150 ms).
/// When two detections compete for one beat the nearer one wins.
pub fn match_beats(reference: &[usize], detected: &[usize], window: usize) -> BeatMatch {
    let mut m = BeatMatch::default();
    let (mut i, mut j) = (0, 0);
    while let (Some(&r), Some(&d)) = (reference.get(i), detected.get(j)) {
        if d + window < r {
            m.false_positives += 1;
            j += 1;
        } else if r + window < d {
            m.false_negatives += 1;
            i += 1;
        } else if detected
            .get(j + 1)
            .is_some_and(|&d2| d2.abs_diff(r) < d.abs_diff(r))
            && reference
                .get(i + 1)
                .is_none_or(|&r2| d.abs_diff(r2) > window || d.abs_diff(r) <= d.abs_diff(r2))
        {
            // The next detection is nearer this beat and this one has no beat of its own.
            m.false_positives += 1;
            j += 1;
        } else {
            m.true_positives += 1;
            i += 1;
            j += 1;
        }
    }
    m.false_negatives += reference.len().saturating_sub(i);
    m.false_positives += detected.len().saturating_sub(j);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_misses_and_extras() {
        let m = match_beats(&[100, 400, 700, 1000], &[105, 390, 550, 1200], 54);
        assert_eq!(
            m,
            BeatMatch {
                true_positives: 2,
                false_negatives: 2,
                false_positives: 2
            }
        );
        assert_eq!(m.sensitivity(), Some(0.5));
        assert_eq!(m.positive_predictivity(), Some(0.5));
    }

    #[test]
    fn a_double_detection_counts_once_and_the_nearer_one_matches() {
        let m = match_beats(&[1000], &[960, 998], 54);
        assert_eq!(m.true_positives, 1);
        assert_eq!(m.false_positives, 1);
        assert_eq!(match_beats(&[], &[], 54).sensitivity(), None);
        assert_eq!(match_beats(&[5], &[], 54).false_negatives, 1);
    }
}
