//! R-peak detector validation: runs `yilian_analysis::detect_r_peaks` on the records that
//! `scripts/wfdb-records` converted and scores it beat by beat (150 ms window) against each
//! reference it finds — `atr` (annotations: ground truth) or `xqrs`/`gqrs` (wfdb's detectors:
//! agreement only). Prints per-record and total TP/FN/FP, Se and +P as a Markdown table.
//!
//! Usage: `ecg-validate [DIR]` (default `$YILIAN_WFDB_DIR` or `/var/tmp/yilian-wfdb`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use yilian_analysis::{BeatMatch, detect_r_peaks, match_beats};

const REFERENCES: [&str; 3] = ["atr", "xqrs", "gqrs"];

fn read_record(dir: &Path, name: &str) -> Result<(Vec<f32>, f64)> {
    let bytes = std::fs::read(dir.join(format!("{name}.f32")))
        .with_context(|| format!("reading {name}.f32"))?;
    let samples = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let meta = std::fs::read_to_string(dir.join(format!("{name}.meta")))
        .with_context(|| format!("reading {name}.meta"))?;
    let fs = meta
        .lines()
        .find_map(|l| l.strip_prefix("fs="))
        .context("no fs= in meta")?
        .trim()
        .parse::<f64>()
        .context("fs= is not a number")?;
    Ok((samples, fs))
}

fn read_beats(path: &Path) -> Result<Option<Vec<usize>>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)?;
    let beats = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some(beats))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.2}", v * 100.0))
}

fn main() -> Result<()> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("YILIAN_WFDB_DIR").ok())
        .unwrap_or_else(|| "/var/tmp/yilian-wfdb".into())
        .into();
    let index = std::fs::read_to_string(dir.join("index.txt")).with_context(|| {
        format!(
            "no converted records in {} (run scripts/wfdb-records)",
            dir.display()
        )
    })?;
    let names: Vec<&str> = index.lines().filter(|l| !l.trim().is_empty()).collect();
    if names.is_empty() {
        bail!("{} lists no records", dir.display());
    }
    println!("| record | reference | beats (ref) | TP | FN | FP | Se % | +P % | detect time |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut totals: BTreeMap<&str, BeatMatch> = BTreeMap::new();
    for name in names {
        let (samples, fs) = read_record(&dir, name)?;
        let started = Instant::now();
        let peaks = detect_r_peaks(&samples, fs);
        let took = started.elapsed();
        let window = (0.15 * fs).round() as usize;
        for kind in REFERENCES {
            let Some(reference) = read_beats(&dir.join(format!("{name}.ref-{kind}")))? else {
                continue;
            };
            let m = match_beats(&reference, &peaks, window);
            println!(
                "| {name} | {kind} | {} | {} | {} | {} | {} | {} | {:.1} ms |",
                reference.len(),
                m.true_positives,
                m.false_negatives,
                m.false_positives,
                pct(m.sensitivity()),
                pct(m.positive_predictivity()),
                took.as_secs_f64() * 1000.0
            );
            let t = totals.entry(kind).or_default();
            *t = *t + m;
        }
    }
    for (kind, m) in &totals {
        println!(
            "| **total** | {kind} | {} | {} | {} | {} | {} | {} | |",
            m.true_positives + m.false_negatives,
            m.true_positives,
            m.false_negatives,
            m.false_positives,
            pct(m.sensitivity()),
            pct(m.positive_predictivity())
        );
    }
    Ok(())
}
