//! Tests of the ECG paper against synthetic records whose R peaks are known: what a reader relies on
//! (every lead labelled, the grid pitch, calibration, beats where the paper speed puts them, the
//! header, escaping, stacking) read back from the SVG as XML and from the decoded PNG.

use roxmltree::{Document, Node};
use yilian_domain::ecg::{EcgModelError, EcgRecord, Lead};
use yilian_fixtures::ecg::{EcgSpec, SyntheticEcg, synthesize};

use super::*;

fn header(patient: &str) -> EcgHeader {
    EcgHeader {
        title: "当前心电图".into(),
        patient: patient.into(),
        acquired: "2026-11-23 08:15:30".into(),
        site: "阜宁县人民医院".into(),
        device_measurements: vec![
            ("HR".into(), "72 bpm".into()),
            ("QRS".into(), "90 ms".into()),
        ],
        hub_measurements: vec![
            ("HR".into(), "71 bpm".into()),
            ("RR SD".into(), "9 ms".into()),
        ],
    }
}

fn page(record: &EcgRecord) -> EcgPage<'_> {
    EcgPage {
        record,
        header: header("张*明"),
    }
}

fn ecg() -> SyntheticEcg {
    synthesize(&EcgSpec::default())
}

fn svg(record: &EcgRecord, opts: &PaperOptions) -> String {
    render_svg(&[page(record)], opts, Lang::ZhCn).unwrap()
}

fn opts(gain: f64, speed: f64) -> PaperOptions {
    PaperOptions::new(gain, speed).unwrap()
}

fn elements<'a, 'i>(doc: &'a Document<'i>, tag: &str, class: &str) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.has_tag_name(tag) && n.attribute("class") == Some(class))
        .collect()
}

/// The points of an `M x y x y …` polyline.
fn points(d: &str) -> Vec<(f64, f64)> {
    let nums: Vec<f64> = d
        .trim_start_matches('M')
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    nums.chunks(2).map(|c| (c[0], c[1])).collect()
}

/// The row group (`<g class="row">`) holding the trace of `lead` in `role`, with that trace's points
/// and the row's baseline (where the calibration pulse starts).
fn trace_in(doc: &Document<'_>, lead: &str, role: &str) -> (Vec<(f64, f64)>, f64) {
    let path = elements(doc, "path", "trace")
        .into_iter()
        .find(|n| n.attribute("data-lead") == Some(lead) && n.attribute("data-role") == Some(role))
        .unwrap_or_else(|| panic!("no {role} trace of {lead}"));
    let row = path.parent().unwrap();
    let cal = row
        .children()
        .find(|n| n.attribute("class") == Some("cal"))
        .unwrap();
    let baseline = points(cal.attribute("d").unwrap())[0].1;
    (points(path.attribute("d").unwrap()), baseline)
}

/// x of each R apex: the highest point of every run of points more than `above` mm over the baseline.
fn r_apexes(points: &[(f64, f64)], baseline: f64, above: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut best: Option<(f64, f64)> = None;
    for &(x, y) in points {
        if y < baseline - above {
            if best.is_none_or(|(_, by)| y < by) {
                best = Some((x, y));
            }
        } else if let Some((bx, _)) = best.take() {
            out.push(bx);
        }
    }
    out.extend(best.map(|(x, _)| x));
    out
}

fn texts(doc: &Document<'_>) -> String {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_lead_and_the_rhythm_strip_are_labelled() {
    let s = ecg();
    let out = svg(&s.record, &PaperOptions::default());
    let doc = Document::parse(&out).unwrap();
    let labels = elements(&doc, "text", "lead-label");
    let of_role = |role: &str| -> Vec<&str> {
        labels
            .iter()
            .filter(|n| n.attribute("data-role") == Some(role))
            .map(|n| n.text().unwrap())
            .collect()
    };
    let mut leads = of_role("lead");
    leads.sort_unstable();
    let mut want: Vec<&str> = Lead::STANDARD_12.iter().map(|l| l.label()).collect();
    want.sort_unstable();
    assert_eq!(leads, want);
    assert_eq!(of_role("rhythm"), ["II"]);
    // The standard arrangement: I, aVR, V1, V4 across the first row.
    let (i, avr, v1, v4) = (
        trace_in(&doc, "I", "lead"),
        trace_in(&doc, "aVR", "lead"),
        trace_in(&doc, "V1", "lead"),
        trace_in(&doc, "V4", "lead"),
    );
    assert!([avr.1, v1.1, v4.1].iter().all(|&b| b == i.1));
    let x0 = |t: &(Vec<(f64, f64)>, f64)| t.0[0].0;
    assert!(x0(&i) < x0(&avr) && x0(&avr) < x0(&v1) && x0(&v1) < x0(&v4));
    assert!((x0(&v4) - (CAL_WIDTH_MM + 3.0 * 62.5)).abs() < 0.1);
}

#[test]
fn grid_has_a_line_every_millimetre_and_a_bold_one_every_five() {
    let s = ecg();
    let out = svg(&s.record, &PaperOptions::default());
    let doc = Document::parse(&out).unwrap();
    let lines = |class: &str| -> (Vec<i64>, Vec<i64>) {
        let d = elements(&doc, "path", class)[0].attribute("d").unwrap();
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for seg in d.split('M').filter(|s| !s.is_empty()) {
            if let Some((start, _)) = seg.split_once('V') {
                xs.push(start.split(' ').next().unwrap().parse().unwrap());
            } else if let Some((start, _)) = seg.split_once('H') {
                ys.push(start.split(' ').nth(1).unwrap().parse().unwrap());
            }
        }
        (xs, ys)
    };
    let (minor_x, minor_y) = lines("grid-minor");
    let (major_x, major_y) = lines("grid-major");
    let mut all_x: Vec<i64> = minor_x.iter().chain(&major_x).copied().collect();
    all_x.sort_unstable();
    all_x.dedup();
    // 265 mm wide: 266 vertical lines at a 1 mm pitch, every fifth bold.
    assert_eq!(all_x, (0..=PAGE_WIDTH_MM as i64).collect::<Vec<_>>());
    assert_eq!(major_x, (0..=265).step_by(5).collect::<Vec<_>>());
    // Four rows of 40 mm: 161 horizontal lines.
    let mut all_y: Vec<i64> = minor_y.iter().chain(&major_y).copied().collect();
    all_y.sort_unstable();
    all_y.dedup();
    assert_eq!(all_y.len(), 161);
    assert!(all_y.windows(2).all(|w| w[1] - w[0] == 1));
    assert_eq!(major_y.len(), 33);
    // The grid starts below the header's last text line.
    let lowest_text = elements(&doc, "text", "field")
        .iter()
        .map(|n| n.attribute("y").unwrap().parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    assert!(all_y[0] as f64 > lowest_text);
}

#[test]
fn calibration_pulse_is_one_millivolt_at_the_chosen_gain() {
    let s = ecg();
    for gain in PaperOptions::GAINS_MM_PER_MV {
        let out = svg(&s.record, &opts(gain, 25.0));
        let doc = Document::parse(&out).unwrap();
        let cals = elements(&doc, "path", "cal");
        assert_eq!(cals.len(), 4);
        for cal in cals {
            let p = points(cal.attribute("d").unwrap());
            let (lo, hi) = p.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &(_, y)| {
                (lo.min(y), hi.max(y))
            });
            assert!((hi - lo - gain).abs() < 1e-9, "{gain}: {}", hi - lo);
            // 200 ms wide.
            let top: Vec<f64> = p.iter().filter(|q| q.1 == lo).map(|q| q.0).collect();
            assert!((top[1] - top[0] - 5.0).abs() < 1e-9);
        }
    }
}

#[test]
fn r_peaks_of_lead_ii_land_where_the_paper_speed_puts_them() {
    // At 1 kHz the trace is thinned to a minimum and maximum per 0.1 mm; the peaks must survive.
    for fs in [500.0, 1000.0] {
        r_peaks_land_at(fs);
    }
}

fn r_peaks_land_at(fs: f64) {
    let s = synthesize(&EcgSpec {
        sample_rate_hz: fs,
        ..EcgSpec::default()
    });
    for speed in PaperOptions::SPEEDS_MM_PER_S {
        let o = opts(10.0, speed);
        let doc_text = svg(&s.record, &o);
        let doc = Document::parse(&doc_text).unwrap();
        let (pts, baseline) = trace_in(&doc, "II", "rhythm");
        assert!(pts.len() <= 2 * 2500 + 2, "{} points", pts.len());
        let found = r_apexes(&pts, baseline, 6.0);
        let want: Vec<f64> = s
            .truth
            .r_peaks
            .iter()
            .map(|&r| r as f64 / fs)
            .filter(|&t| t < o.page_secs())
            .map(|t| CAL_WIDTH_MM + speed * t)
            .collect();
        assert_eq!(
            found.len(),
            want.len(),
            "{speed} mm/s: {found:?} vs {want:?}"
        );
        for (f, w) in found.iter().zip(&want) {
            assert!(
                (f - w).abs() <= 0.5,
                "{speed} mm/s: R at {f} mm, expected {w}"
            );
        }
        // The first column's lead II shows the same beats at the same places.
        let (cell, cell_base) = trace_in(&doc, "II", "lead");
        let in_cell = r_apexes(&cell, cell_base, 6.0);
        assert!(!in_cell.is_empty());
        for (f, w) in in_cell.iter().zip(&want) {
            assert!((f - w).abs() <= 0.5);
        }
    }
}

#[test]
fn fifty_mm_per_second_doubles_the_distance_between_beats() {
    let s = ecg();
    let spacing = |speed: f64| {
        let out = svg(&s.record, &opts(10.0, speed));
        let doc = Document::parse(&out).unwrap();
        let (pts, baseline) = trace_in(&doc, "II", "rhythm");
        let r = r_apexes(&pts, baseline, 6.0);
        (r[2] - r[1], r.len())
    };
    let ((d25, n25), (d50, n50)) = (spacing(25.0), spacing(50.0));
    // 72 bpm: 0.833 s between beats, 20.8 mm at 25 mm/s.
    assert!((d25 - 20.83).abs() < 0.2, "{d25}");
    assert!((d50 / d25 - 2.0).abs() < 0.02, "{d25} {d50}");
    // The page keeps its width, so it shows half the beats.
    assert!(n50 < n25);
}

#[test]
fn gain_scales_the_trace_height() {
    let s = ecg();
    let height = |gain: f64| {
        let out = svg(&s.record, &opts(gain, 25.0));
        let doc = Document::parse(&out).unwrap();
        let (pts, _) = trace_in(&doc, "II", "rhythm");
        let (lo, hi) = pts.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &(_, y)| {
            (lo.min(y), hi.max(y))
        });
        hi - lo
    };
    let (h5, h10) = (height(5.0), height(10.0));
    // Lead II's QRS is about 1.5 mV peak to peak (R 1.2 mV, S −0.34 mV).
    assert!((13.0..17.0).contains(&h10), "{h10}");
    assert!((h10 / h5 - 2.0).abs() < 0.01, "{h5} {h10}");
}

#[test]
fn traces_are_clipped_to_their_row_below_the_header() {
    // 3 mV R waves at 20 mm/mV reach 60 mm, past a 40 mm row.
    let s = synthesize(&EcgSpec {
        r_amplitude_uv: 3000.0,
        ..EcgSpec::default()
    });
    let out = svg(&s.record, &opts(20.0, 25.0));
    let doc = Document::parse(&out).unwrap();
    let grid_top = elements(&doc, "path", "grid-major")[0]
        .attribute("d")
        .unwrap()
        .split('M')
        .filter_map(|seg| seg.split_once('H'))
        .map(|(start, _)| start.split(' ').nth(1).unwrap().parse::<f64>().unwrap())
        .fold(f64::MAX, f64::min);
    let rows = elements(&doc, "g", "row");
    assert_eq!(rows.len(), 4);
    for row in rows {
        let url = row.attribute("clip-path").unwrap();
        let id = url.trim_start_matches("url(#").trim_end_matches(')');
        let clip = doc
            .descendants()
            .find(|n| n.has_tag_name("clipPath") && n.attribute("id") == Some(id))
            .unwrap();
        let rect = clip.first_element_child().unwrap();
        let num = |a: &str| rect.attribute(a).unwrap().parse::<f64>().unwrap();
        assert!(num("y") >= grid_top);
        assert_eq!(num("height"), ROW_HEIGHT_MM);
        // The trace does leave the row, so the clip is doing work.
        let lowest_y = row
            .children()
            .filter(|n| n.attribute("class") == Some("trace"))
            .flat_map(|n| points(n.attribute("d").unwrap()))
            .map(|p| p.1)
            .fold(f64::MAX, f64::min);
        assert!(lowest_y < num("y"));
    }
}

#[test]
fn header_shows_patient_speed_and_gain_in_chinese_by_default() {
    let s = ecg();
    let out = svg(&s.record, &PaperOptions::default());
    let doc = Document::parse(&out).unwrap();
    let t = texts(&doc);
    for want in [
        "当前心电图",
        "患者: 张*明",
        "25 mm/s",
        "10 mm/mV",
        "设备测量",
        "中心测量",
        "阜宁县人民医院",
    ] {
        assert!(t.contains(want), "{want} missing from {t}");
    }
    let en = render_svg(&[page(&s.record)], &opts(20.0, 50.0), Lang::En).unwrap();
    let t = texts(&Document::parse(&en).unwrap());
    for want in [
        "Patient: 张*明",
        "Speed 50 mm/s",
        "Gain 20 mm/mV",
        "Device",
        "Hub",
    ] {
        assert!(t.contains(want), "{want} missing from {t}");
    }
    assert!(!t.contains("患者"));
}

#[test]
fn device_and_hub_measurements_line_up_by_label() {
    let s = ecg();
    let out = svg(&s.record, &PaperOptions::default());
    let doc = Document::parse(&out).unwrap();
    let cells = elements(&doc, "text", "measurement");
    let at = |text: &str| {
        let n = cells
            .iter()
            .find(|n| n.text() == Some(text))
            .unwrap_or_else(|| panic!("{text}"));
        let num = |a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
        (num("x"), num("y"))
    };
    let (hr, device_hr, hub_hr) = (at("HR"), at("72 bpm"), at("71 bpm"));
    assert_eq!((device_hr.0, hub_hr.0), (hr.0, hr.0));
    assert!(hr.1 < device_hr.1 && device_hr.1 < hub_hr.1);
    // A label only one side has: the other shows a dash.
    let (qrs, rr) = (at("QRS"), at("RR SD"));
    let in_column = |x: f64| -> Vec<&str> {
        let mut v: Vec<(f64, &str)> = cells
            .iter()
            .filter(|n| n.attribute("x").unwrap().parse::<f64>().unwrap() == x)
            .map(|n| {
                (
                    n.attribute("y").unwrap().parse().unwrap(),
                    n.text().unwrap(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v.into_iter().map(|(_, t)| t).collect()
    };
    assert_eq!(in_column(qrs.0), ["QRS", "90 ms", "—"]);
    assert_eq!(in_column(rr.0), ["RR SD", "—", "9 ms"]);
}

#[test]
fn text_is_escaped() {
    let s = ecg();
    let nasty = "<script>alert('x')</script> & \"Wang\"\u{1}";
    let mut p = page(&s.record);
    p.header.patient = nasty.into();
    p.header.title = "A&B <c>".into();
    let out = render_svg(&[p], &PaperOptions::default(), Lang::ZhCn).unwrap();
    assert!(!out.contains("<script>"));
    let doc = Document::parse(&out).unwrap();
    let t = texts(&doc);
    assert!(t.contains("A&B <c>"));
    assert!(
        t.contains("患者: <script>alert('x')</script> & \"Wang\"\u{FFFD}"),
        "{t}"
    );
}

#[test]
fn pages_stack_current_above_prior() {
    let current = ecg();
    let prior = synthesize(&EcgSpec {
        heart_rate_bpm: 55.0,
        seed: 3,
        ..EcgSpec::default()
    });
    let one = svg(&current.record, &PaperOptions::default());
    let mut prior_page = page(&prior.record);
    prior_page.header.title = "既往心电图".into();
    let two = render_svg(
        &[page(&current.record), prior_page],
        &PaperOptions::default(),
        Lang::ZhCn,
    )
    .unwrap();
    let height = |s: &str| {
        let doc = Document::parse(s).unwrap();
        let v = doc.root_element().attribute("viewBox").unwrap().to_string();
        v.split(' ').nth(3).unwrap().parse::<f64>().unwrap()
    };
    assert!((height(&two) - (2.0 * height(&one) + PAGE_GAP_MM)).abs() < 1e-6);
    let doc = Document::parse(&two).unwrap();
    let pages = elements(&doc, "g", "ecg-page");
    assert_eq!(pages.len(), 2);
    let title_y = |p: &Node<'_, '_>| {
        let t = p
            .descendants()
            .find(|n| n.attribute("class") == Some("title"))
            .unwrap();
        (
            t.text().unwrap().to_string(),
            t.attribute("y").unwrap().parse::<f64>().unwrap(),
        )
    };
    let (t0, y0) = title_y(&pages[0]);
    let (t1, y1) = title_y(&pages[1]);
    assert_eq!((t0.as_str(), t1.as_str()), ("当前心电图", "既往心电图"));
    assert!(y1 > height(&one) && y0 < y1);
    // Each page has its own rhythm strip, and clip ids do not collide.
    assert_eq!(
        elements(&doc, "text", "lead-label")
            .iter()
            .filter(|n| n.attribute("data-role") == Some("rhythm"))
            .count(),
        2
    );
    let mut ids: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("clipPath"))
        .map(|n| n.attribute("id").unwrap())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn limb_leads_missing_from_the_record_are_derived() {
    let mut s = ecg();
    s.record
        .leads
        .retain(|l| !matches!(l.lead, Lead::III | Lead::AVR | Lead::AVL | Lead::AVF));
    assert_eq!(s.record.leads.len(), 8);
    let out = svg(&s.record, &PaperOptions::default());
    let doc = Document::parse(&out).unwrap();
    let leads = elements(&doc, "text", "lead-label")
        .iter()
        .filter(|n| n.attribute("data-role") == Some("lead"))
        .count();
    assert_eq!(leads, 12);
    // aVR = −(I + II)/2 is negative where II peaks.
    let (avr, base) = trace_in(&doc, "aVR", "lead");
    let deepest = avr.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    assert!(deepest - base > 5.0, "{}", deepest - base);
}

#[test]
fn a_record_that_is_not_twelve_lead_prints_full_width_strips() {
    let mut s = ecg();
    s.record
        .leads
        .retain(|l| matches!(l.lead, Lead::II | Lead::V5));
    let out = svg(&s.record, &PaperOptions::default());
    let doc = Document::parse(&out).unwrap();
    let strips: Vec<Node<'_, '_>> = elements(&doc, "path", "trace");
    assert_eq!(strips.len(), 2);
    for (n, lead) in strips.iter().zip(["II", "V5"]) {
        assert_eq!(n.attribute("data-role"), Some("strip"));
        assert_eq!(n.attribute("data-lead"), Some(lead));
        let p = points(n.attribute("d").unwrap());
        let span = p.last().unwrap().0 - p[0].0;
        assert!((span - TRACE_WIDTH_MM).abs() < 0.2, "{span}");
    }
    assert_eq!(elements(&doc, "g", "row").len(), 2);
}

#[test]
fn a_short_record_fills_only_its_own_time() {
    let s = synthesize(&EcgSpec {
        duration_secs: 4.0,
        ..EcgSpec::default()
    });
    let out = svg(&s.record, &PaperOptions::default());
    let doc = Document::parse(&out).unwrap();
    let (rhythm, _) = trace_in(&doc, "II", "rhythm");
    let end = rhythm.last().unwrap().0;
    assert!((end - (CAL_WIDTH_MM + 100.0)).abs() < 0.2, "{end}");
    // Columns past the end of the record are empty rather than missing.
    let (v4, _) = trace_in(&doc, "V4", "lead");
    assert!(v4.is_empty());
}

#[test]
fn equal_input_gives_equal_output() {
    let s = ecg();
    let o = PaperOptions::default();
    assert_eq!(svg(&s.record, &o), svg(&s.record, &o));
    let png = || render_png(&[page(&s.record)], &o, Lang::ZhCn, 3.0).unwrap();
    assert_eq!(png(), png());
}

#[test]
fn bad_options_and_records_are_refused() {
    assert!(matches!(
        PaperOptions::new(15.0, 25.0),
        Err(EcgRenderError::BadGain(_))
    ));
    assert!(matches!(
        PaperOptions::new(10.0, 12.5),
        Err(EcgRenderError::BadSpeed(_))
    ));
    assert!(matches!(
        PaperOptions::new(f64::NAN, 25.0),
        Err(EcgRenderError::BadGain(_))
    ));
    let s = ecg();
    let literal = PaperOptions {
        gain_mm_per_mv: 0.0,
        speed_mm_per_s: 25.0,
    };
    assert!(matches!(
        render_svg(&[page(&s.record)], &literal, Lang::En),
        Err(EcgRenderError::BadGain(_))
    ));
    assert!(matches!(
        render_svg(&[], &PaperOptions::default(), Lang::En),
        Err(EcgRenderError::NoPages)
    ));
    let mut broken = s.record.clone();
    broken.leads[3].samples_uv.pop();
    let r = render_svg(
        &[page(&s.record), page(&broken)],
        &PaperOptions::default(),
        Lang::En,
    );
    assert!(
        matches!(
            r,
            Err(EcgRenderError::Record {
                page: 2,
                source: EcgModelError::UnequalLengths { .. }
            })
        ),
        "{r:?}"
    );
    for px in [0.0, -1.0, f32::NAN, 50.0] {
        assert!(matches!(
            render_png(&[page(&s.record)], &PaperOptions::default(), Lang::En, px),
            Err(EcgRenderError::BadResolution(_))
        ));
    }
    // 64 strips at 20 px/mm would be a 5300 × 52,000 px image.
    let mut wide = s.record.clone();
    wide.leads = (0..64)
        .map(|n| yilian_domain::ecg::LeadTrace {
            lead: Lead::from_number(100 + n, None),
            samples_uv: s.record.leads[0].samples_uv.clone(),
        })
        .collect();
    assert!(matches!(
        render_png(&[page(&wide)], &PaperOptions::default(), Lang::En, 20.0),
        Err(EcgRenderError::TooLarge { .. })
    ));
}

#[test]
fn png_has_the_page_size_dark_traces_and_a_red_grid() {
    let s = ecg();
    let o = PaperOptions::default();
    let k = 5.0_f32;
    let bytes = render_png(&[page(&s.record)], &o, Lang::ZhCn, k).unwrap();
    // A few hundred KB at most for a page at print resolution.
    assert!(bytes.len() < 300_000, "{}", bytes.len());
    let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
    let scene = layout::build(&[page(&s.record)], &o, Lang::En).unwrap();
    let px = |mm: f64| (mm * f64::from(k)).round() as u32;
    assert_eq!(img.width(), px(PAGE_WIDTH_MM));
    assert_eq!(img.height(), px(scene.height));

    // Every R apex of the rhythm strip, at x = speed × t, is inked.
    let rhythm_row = &scene.pages[0].rows[3];
    let fs = s.record.sample_rate_hz;
    let points = &rhythm_row.traces[0].points;
    for &r in &s.truth.r_peaks {
        let x = CAL_WIDTH_MM + o.speed_mm_per_s * r as f64 / fs;
        let &(_, y) = points
            .iter()
            .min_by(|a, b| (a.0 - x).abs().total_cmp(&(b.0 - x).abs()))
            .unwrap();
        // The darkest pixel around the apex: antialiasing spreads a point over its neighbours.
        let (cx, cy) = (px(x), px(y));
        let darkest = (cx - 1..=cx + 1)
            .flat_map(|x| (cy - 1..=cy + 1).map(move |y| (x, y)))
            .map(|(x, y)| img.get_pixel(x, y).0[0])
            .min()
            .unwrap();
        assert!(darkest < 80, "R at {x} mm: {darkest}");
    }

    // Above the first row's trace, away from labels: grid colours on the lines, white between.
    let row = &scene.pages[0].rows[0];
    let y = row.clip.y + 2.5;
    let at = |x: f64| img.get_pixel(px(x), px(y)).0;
    assert_eq!(at(CAL_WIDTH_MM + 50.0), png::GRID_MAJOR);
    assert_eq!(at(CAL_WIDTH_MM + 51.0), png::GRID_MINOR);
    assert_eq!(at(CAL_WIDTH_MM + 51.5), [255, 255, 255]);
    // The header band is white paper with black text, no grid.
    let header_mid = px(scene.pages[0].grid.y / 2.0);
    let header_row: Vec<[u8; 3]> = (0..img.width())
        .map(|x| img.get_pixel(x, header_mid).0)
        .collect();
    assert!(!header_row.contains(&png::GRID_MINOR));
}

#[test]
fn png_traces_stop_at_the_header() {
    let s = synthesize(&EcgSpec {
        r_amplitude_uv: 3000.0,
        ..EcgSpec::default()
    });
    let o = opts(20.0, 25.0);
    let k = 5.0;
    let bytes = render_png(&[page(&s.record)], &o, Lang::En, k).unwrap();
    let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
    let scene = layout::build(&[page(&s.record)], &o, Lang::En).unwrap();
    let grid_top = scene.pages[0].grid.y;
    // Lead I's R reaches 30 mm above a baseline 20 mm below the grid's top edge.
    let first_row = &scene.pages[0].rows[0];
    let highest = first_row.traces[0]
        .points
        .iter()
        .map(|p| p.1)
        .fold(f64::MAX, f64::min);
    assert!(highest < grid_top - 5.0, "{highest}");
    let y = ((grid_top - 0.6) * f64::from(k)).round() as u32;
    let dark = (0..img.width())
        .filter(|&x| img.get_pixel(x, y).0[0] < 128)
        .count();
    assert_eq!(dark, 0);
}

#[test]
fn png_text_is_latin1_with_a_question_mark_for_the_rest() {
    assert_eq!(png::fit_latin1("张*明 60°", 20), "?*? 60°");
    assert_eq!(png::fit_latin1("abcdefghij", 6), "abc...");
    assert_eq!(png::fit_latin1("abcdefghij", 2), "..");
}

#[test]
fn png_text_uses_native_glyphs_before_magnified_ones() {
    let height = |px: f64| {
        let (font, scale) = png::pick_font(px, false);
        (font.character_size.height, scale)
    };
    // 3.2 mm at 5 px/mm: the 15 px font, not the 8 px one doubled.
    assert_eq!(height(16.0), (15, 1));
    assert_eq!(height(32.0), (15, 2));
    assert_eq!(height(3.0), (6, 1));
}
