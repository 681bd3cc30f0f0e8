//! The R-peak detector on real ECG converted by `scripts/wfdb-records`: gross Se and +P over all
//! records must stay above floors set a little under what was measured (BENCHMARKS.md, "ECG R-peak
//! detector validation"). Says SKIPPED when the records are absent; `YILIAN_WFDB_REQUIRED=1` makes
//! their absence a failure (for a CI that runs the script first).

use std::path::{Path, PathBuf};

use yilian_analysis::{BeatMatch, detect_r_peaks, match_beats};

/// (reference, minimum Se, minimum +P). Measured on the committed sources: against GQRS 99.4 / 99.2,
/// against XQRS 99.3 / 89.4 (XQRS itself finds only 452 of the 503 beats GQRS finds on record 208, so
/// most "false positives" against it are its misses). Annotations (`atr`) are ground truth: Pan and
/// Tompkins reported about 99.7 / 99.5 on the MIT-BIH Arrhythmia Database, so 98 / 98 catches a
/// regression without failing on a harder record set.
const FLOORS: [(&str, f64, f64); 3] = [
    ("atr", 0.98, 0.98),
    ("gqrs", 0.98, 0.975),
    ("xqrs", 0.98, 0.85),
];

fn dir() -> PathBuf {
    std::env::var("YILIAN_WFDB_DIR")
        .unwrap_or_else(|_| "/var/tmp/yilian-wfdb".into())
        .into()
}

fn read(dir: &Path, name: &str) -> (Vec<f32>, f64) {
    let bytes = std::fs::read(dir.join(format!("{name}.f32"))).expect("the record's samples");
    let samples = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let meta = std::fs::read_to_string(dir.join(format!("{name}.meta"))).expect("its meta file");
    let fs = meta
        .lines()
        .find_map(|l| l.strip_prefix("fs="))
        .and_then(|v| v.trim().parse().ok())
        .expect("an fs= line");
    (samples, fs)
}

#[test]
fn detector_keeps_its_sensitivity_and_predictivity_on_real_records() {
    let dir = dir();
    let Ok(index) = std::fs::read_to_string(dir.join("index.txt")) else {
        assert!(
            std::env::var("YILIAN_WFDB_REQUIRED").is_err(),
            "YILIAN_WFDB_REQUIRED is set but {} has no records (run scripts/wfdb-records)",
            dir.display()
        );
        eprintln!(
            "SKIPPED: no converted records in {} (run scripts/wfdb-records)",
            dir.display()
        );
        return;
    };
    let mut totals = [BeatMatch::default(); 3];
    for name in index.lines().filter(|l| !l.trim().is_empty()) {
        let (samples, fs) = read(&dir, name);
        let peaks = detect_r_peaks(&samples, fs);
        for (k, (kind, _, _)) in FLOORS.iter().enumerate() {
            let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.ref-{kind}"))) else {
                continue;
            };
            let reference: Vec<usize> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
            totals[k] = totals[k] + match_beats(&reference, &peaks, (0.15 * fs).round() as usize);
        }
    }
    let mut scored = 0;
    for ((kind, min_se, min_pp), m) in FLOORS.iter().zip(totals) {
        let (Some(se), Some(pp)) = (m.sensitivity(), m.positive_predictivity()) else {
            continue;
        };
        scored += 1;
        eprintln!("{kind}: {m:?} Se {:.2}% +P {:.2}%", se * 100.0, pp * 100.0);
        assert!(se >= *min_se, "{kind}: Se {se:.4} under {min_se}");
        assert!(pp >= *min_pp, "{kind}: +P {pp:.4} under {min_pp}");
    }
    assert!(
        scored > 0,
        "{} has records but no references",
        dir.display()
    );
}
