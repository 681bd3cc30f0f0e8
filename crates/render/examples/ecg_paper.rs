//! Writes a current-over-prior ECG comparison drawn from synthetic records as SVG and PNG, to look at
//! the paper by eye: `cargo run -p yilian-render --example ecg_paper -- /tmp/ecg [gain] [speed]`.

use std::time::Instant;

use yilian_fixtures::ecg::{EcgSpec, synthesize};
use yilian_render::ecg::{EcgHeader, EcgPage, Lang, PaperOptions, render_png, render_svg};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "/tmp/ecg".into());
    let gain: f64 = args.next().map_or(Ok(10.0), |s| s.parse())?;
    let speed: f64 = args.next().map_or(Ok(25.0), |s| s.parse())?;
    let opts = PaperOptions::new(gain, speed)?;
    let current = synthesize(&EcgSpec::default());
    let prior = synthesize(&EcgSpec {
        heart_rate_bpm: 58.0,
        qrs_axis_deg: 20.0,
        rr_jitter: 0.1,
        seed: 7,
        ..EcgSpec::default()
    });
    let header = |title: &str, acquired: &str, site: &str, hr: &str| EcgHeader {
        title: title.into(),
        patient: "张*明  男  66岁  ID 3209**********1234".into(),
        acquired: acquired.into(),
        site: site.into(),
        device_measurements: vec![
            ("HR".into(), hr.into()),
            ("PR".into(), "160 ms".into()),
            ("QRS".into(), "90 ms".into()),
            ("QT/QTc".into(), "380/416 ms".into()),
            ("Axis".into(), "60°".into()),
        ],
        hub_measurements: vec![
            ("HR".into(), hr.into()),
            ("QRS".into(), "92 ms".into()),
            ("RR SD".into(), "12 ms".into()),
        ],
    };
    let pages = [
        EcgPage {
            record: &current.record,
            header: header(
                "当前心电图",
                "2026-11-23 08:15:30",
                "阜宁县人民医院",
                "72 bpm",
            ),
        },
        EcgPage {
            record: &prior.record,
            header: header(
                "既往心电图 (prior)",
                "2025-03-02 10:01:12",
                "益林镇卫生院",
                "58 bpm",
            ),
        },
    ];
    let svg = render_svg(&pages, &opts, Lang::ZhCn)?;
    std::fs::write(format!("{out}.svg"), &svg)?;
    let t = Instant::now();
    let png = render_png(&pages[..1], &opts, Lang::En, 5.0)?;
    let one = t.elapsed();
    std::fs::write(format!("{out}-current.png"), &png)?;
    // A 1:1 crop of the top left, to judge line weights and text without scaling.
    let crop = image::load_from_memory(&png)?.crop_imm(0, 0, 700, 420);
    crop.save(format!("{out}-crop.png"))?;
    let both = render_png(&pages, &opts, Lang::En, 5.0)?;
    std::fs::write(format!("{out}.png"), &both)?;
    println!(
        "svg {} bytes; png one page {} bytes in {:?}; png two pages {} bytes",
        svg.len(),
        png.len(),
        one,
        both.len()
    );
    Ok(())
}
