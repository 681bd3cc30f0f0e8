//! The drawing of ECG pages as a scene in millimetres (header text, grid, calibration pulses, trace
//! polylines, lead labels), shared by the SVG and PNG writers so both print the same page.

use yilian_domain::ecg::{EcgDevice, EcgRecord, EcgSubject, Lead, LeadTrace};

use super::{EcgHeader, EcgPage, EcgRenderError, Lang, PaperOptions};

/// Width of the calibration zone at the start of every row.
pub const CAL_WIDTH_MM: f64 = 15.0;
/// Width of the trace area: 10 s at 25 mm/s.
pub const TRACE_WIDTH_MM: f64 = 250.0;
/// Width of a page (and of the grid).
pub const PAGE_WIDTH_MM: f64 = CAL_WIDTH_MM + TRACE_WIDTH_MM;
/// Height of one row of traces; the baseline is in its middle.
pub const ROW_HEIGHT_MM: f64 = 40.0;
/// White space between stacked pages.
pub const PAGE_GAP_MM: f64 = 6.0;

const COLUMNS: usize = 4;
/// Traces are thinned to at most a minimum and a maximum per this many millimetres, which keeps every
/// peak while bounding the point count for high sample rates.
const BIN_MM: f64 = 0.1;
const LEAD_LABEL_MM: f64 = 3.5;
const TITLE_MM: f64 = 4.5;
const TEXT_MM: f64 = 3.2;
const LINE_MM: f64 = 4.6;
const HEADER_LEFT_MM: f64 = 3.0;
const TABLE_X_MM: f64 = 115.0;
const TABLE_LABEL_W_MM: f64 = 18.0;
const TABLE_COL_W_MM: f64 = 20.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextKind {
    Title,
    Field,
    Measurement,
    LeadLabel,
}

impl TextKind {
    pub fn class(self) -> &'static str {
        match self {
            TextKind::Title => "title",
            TextKind::Field => "field",
            TextKind::Measurement => "measurement",
            TextKind::LeadLabel => "lead-label",
        }
    }
}

/// A line of text, `y` at its baseline; it is cut with an ellipsis where it would pass `max_width`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Text {
    pub x: f64,
    pub y: f64,
    pub size: f64,
    pub bold: bool,
    pub kind: TextKind,
    pub text: String,
    pub max_width: f64,
}

/// What a trace is on the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// One of the 3 × 4 lead cells.
    Lead,
    /// The full-width lead II rhythm strip of a 12-lead page.
    Rhythm,
    /// A full-width lead of a record that is not 12-lead (or an extra lead of one that is).
    Strip,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lead => "lead",
            Role::Rhythm => "rhythm",
            Role::Strip => "strip",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Trace {
    pub lead: String,
    pub role: Role,
    pub label: Text,
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub clip: Rect,
    pub baseline: f64,
    /// The 1 mV calibration pulse.
    pub cal: Vec<(f64, f64)>,
    pub traces: Vec<Trace>,
    /// Short vertical marks where one lead's column ends and the next begins: (x, y0, y1).
    pub separators: Vec<(f64, f64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Page {
    pub top: f64,
    pub height: f64,
    pub texts: Vec<Text>,
    /// Whole millimetres, so grid lines fall on integers.
    pub grid: Rect,
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Scene {
    pub width: f64,
    pub height: f64,
    pub pages: Vec<Page>,
}

pub(crate) fn build(
    pages: &[EcgPage<'_>],
    opts: &PaperOptions,
    lang: Lang,
) -> Result<Scene, EcgRenderError> {
    opts.validate()?;
    if pages.is_empty() {
        return Err(EcgRenderError::NoPages);
    }
    let mut out = Vec::with_capacity(pages.len());
    let mut top = 0.0;
    for (i, page) in pages.iter().enumerate() {
        page.record
            .validate()
            .map_err(|source| EcgRenderError::Record {
                page: i + 1,
                source,
            })?;
        let p = build_page(page, opts, lang, top);
        top = p.top + p.height + PAGE_GAP_MM;
        out.push(p);
    }
    Ok(Scene {
        width: PAGE_WIDTH_MM,
        height: top - PAGE_GAP_MM,
        pages: out,
    })
}

/// The leads of a 12-lead print, column by column, top to bottom.
const COLUMN_LEADS: [[Lead; 3]; COLUMNS] = [
    [Lead::I, Lead::II, Lead::III],
    [Lead::AVR, Lead::AVL, Lead::AVF],
    [Lead::V1, Lead::V2, Lead::V3],
    [Lead::V4, Lead::V5, Lead::V6],
];

fn build_page(page: &EcgPage<'_>, opts: &PaperOptions, lang: Lang, top: f64) -> Page {
    let (texts, header_height) = header(&page.header, opts, lang, top);
    let visible = visible_part(page.record, opts);
    let fs = visible.sample_rate_hz;
    let grid_top = top + header_height;
    let mut rows: Vec<Row> = Vec::new();
    let row_at = |k: usize| grid_top + k as f64 * ROW_HEIGHT_MM;
    let paper = Paper {
        fs,
        gain: opts.gain_mm_per_mv,
        speed: opts.speed_mm_per_s,
    };

    let twelve: Option<Vec<[Vec<f32>; 3]>> = COLUMN_LEADS
        .iter()
        .map(|col| {
            Some([
                visible.lead_or_derived(&col[0])?,
                visible.lead_or_derived(&col[1])?,
                visible.lead_or_derived(&col[2])?,
            ])
        })
        .collect();
    let strips: Vec<&LeadTrace> = match &twelve {
        Some(columns) => {
            let col_secs = opts.page_secs() / COLUMNS as f64;
            for r in 0..3 {
                let mut row = empty_row(row_at(r), &paper);
                for (c, (leads, samples)) in COLUMN_LEADS.iter().zip(columns).enumerate() {
                    let (Some(lead), Some(s)) = (leads.get(r), samples.get(r)) else {
                        continue;
                    };
                    let t0 = c as f64 * col_secs;
                    row.traces.push(trace(
                        lead.label(),
                        Role::Lead,
                        s,
                        t0,
                        t0 + col_secs,
                        &paper,
                        &row,
                    ));
                    if c > 0 {
                        let x = CAL_WIDTH_MM + t0 * paper.speed;
                        row.separators
                            .push((x, row.baseline - 3.0, row.baseline + 3.0));
                    }
                }
                rows.push(row);
            }
            let mut row = empty_row(row_at(3), &paper);
            if let Some(ii) = visible.lead(&Lead::II) {
                row.traces.push(trace(
                    Lead::II.label(),
                    Role::Rhythm,
                    ii,
                    0.0,
                    opts.page_secs(),
                    &paper,
                    &row,
                ));
            }
            rows.push(row);
            visible
                .leads
                .iter()
                .filter(|l| matches!(l.lead, Lead::Other { .. }))
                .collect()
        }
        None => visible.leads.iter().collect(),
    };
    for l in strips {
        let mut row = empty_row(row_at(rows.len()), &paper);
        row.traces.push(trace(
            l.lead.label(),
            Role::Strip,
            &l.samples_uv,
            0.0,
            opts.page_secs(),
            &paper,
            &row,
        ));
        rows.push(row);
    }
    let grid = Rect {
        x: 0.0,
        y: grid_top,
        w: PAGE_WIDTH_MM,
        h: rows.len() as f64 * ROW_HEIGHT_MM,
    };
    Page {
        top,
        height: header_height + grid.h,
        texts,
        grid,
        rows,
    }
}

/// The part of the record one page can show, as a record of its own, so a long (ambulatory) record
/// is never copied whole and limb leads are derived only over what is drawn.
fn visible_part(record: &EcgRecord, opts: &PaperOptions) -> EcgRecord {
    let fs = record.sample_rate_hz;
    // validate() bounds fs to 100 kHz and page_secs to 10 s: at most a million samples.
    let n = ((opts.page_secs() * fs).ceil() as usize).saturating_add(1);
    EcgRecord {
        source: record.source,
        sample_rate_hz: fs,
        leads: record
            .leads
            .iter()
            .map(|l| LeadTrace {
                lead: l.lead.clone(),
                samples_uv: l.samples_uv.get(..n).unwrap_or(&l.samples_uv).to_vec(),
            })
            .collect(),
        acquired_at: record.acquired_at,
        device: EcgDevice::default(),
        subject: EcgSubject::default(),
        device_measurements: Default::default(),
        interpretation: Vec::new(),
    }
}

struct Paper {
    fs: f64,
    gain: f64,
    speed: f64,
}

fn empty_row(top: f64, paper: &Paper) -> Row {
    let baseline = top + ROW_HEIGHT_MM / 2.0;
    let (x0, pulse) = (3.0, 0.2 * paper.speed);
    let high = baseline - paper.gain;
    Row {
        clip: Rect {
            x: 0.0,
            y: top,
            w: PAGE_WIDTH_MM,
            h: ROW_HEIGHT_MM,
        },
        baseline,
        cal: vec![
            (1.0, baseline),
            (x0, baseline),
            (x0, high),
            (x0 + pulse, high),
            (x0 + pulse, baseline),
            (CAL_WIDTH_MM - 1.0, baseline),
        ],
        traces: Vec::new(),
        separators: Vec::new(),
    }
}

/// The samples between `t0` and `t1` seconds as a polyline: x from the speed (time 0 at the start of
/// the trace area, so every lead keeps its place in time), y from the gain around the row's baseline
/// after taking off the window's median.
fn trace(
    label: &str,
    role: Role,
    samples: &[f32],
    t0: f64,
    t1: f64,
    paper: &Paper,
    row: &Row,
) -> Trace {
    let i0 = ((t0 * paper.fs).ceil().max(0.0) as usize).min(samples.len());
    let i1 = ((t1 * paper.fs).floor().max(0.0) as usize)
        .saturating_add(1)
        .min(samples.len());
    let window = samples.get(i0..i1).unwrap_or(&[]);
    let centre = median(window);
    let x_of = |i: usize| CAL_WIDTH_MM + i as f64 / paper.fs * paper.speed;
    let y_of = |v: f32| row.baseline - f64::from(v - centre) / 1000.0 * paper.gain;

    // Sample indexes of the lowest and highest value in each BIN_MM of paper, in time order.
    let mut kept: Vec<usize> = Vec::new();
    let mut bin: Option<Bin> = None;
    for (k, &v) in window.iter().enumerate() {
        let i = i0 + k;
        let index = ((x_of(i) - CAL_WIDTH_MM) / BIN_MM).floor() as i64;
        match &mut bin {
            Some(b) if b.index == index => {
                if v < b.lo.1 {
                    b.lo = (i, v);
                }
                if v > b.hi.1 {
                    b.hi = (i, v);
                }
            }
            _ => {
                kept.extend(
                    bin.take()
                        .map(Bin::in_order)
                        .into_iter()
                        .flatten()
                        .flatten(),
                );
                bin = Some(Bin {
                    index,
                    lo: (i, v),
                    hi: (i, v),
                });
            }
        }
    }
    kept.extend(bin.map(Bin::in_order).into_iter().flatten().flatten());
    let points = kept
        .into_iter()
        .filter_map(|i| Some((x_of(i), y_of(*samples.get(i)?))))
        .collect();
    let x0 = CAL_WIDTH_MM + t0 * paper.speed;
    Trace {
        lead: label.to_string(),
        role,
        label: Text {
            x: x0 + 1.2,
            y: row.clip.y + 5.0,
            size: LEAD_LABEL_MM,
            bold: true,
            kind: TextKind::LeadLabel,
            text: label.to_string(),
            max_width: 20.0,
        },
        points,
    }
}

/// The extremes of the samples falling into one thinning bin: (sample index, value).
struct Bin {
    index: i64,
    lo: (usize, f32),
    hi: (usize, f32),
}

impl Bin {
    fn in_order(self) -> [Option<usize>; 2] {
        let (a, b) = (self.lo.0.min(self.hi.0), self.lo.0.max(self.hi.0));
        [Some(a), (b != a).then_some(b)]
    }
}

fn median(v: &[f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    let mid = s.len() / 2;
    let (_, m, _) = s.select_nth_unstable_by(mid, f32::total_cmp);
    *m
}

struct Labels {
    patient: &'static str,
    acquired: &'static str,
    site: &'static str,
    speed: &'static str,
    gain: &'static str,
    device: &'static str,
    hub: &'static str,
    none: &'static str,
}

fn labels(lang: Lang) -> Labels {
    match lang {
        Lang::ZhCn => Labels {
            patient: "患者",
            acquired: "采集时间",
            site: "检查机构",
            speed: "走纸速度",
            gain: "增益",
            device: "设备测量",
            hub: "中心测量",
            none: "—",
        },
        Lang::En => Labels {
            patient: "Patient",
            acquired: "Acquired",
            site: "Site",
            speed: "Speed",
            gain: "Gain",
            device: "Device",
            hub: "Hub",
            none: "-",
        },
    }
}

/// The header band's text and its height. Left: title, patient, time and site, speed and gain.
/// Right: a table whose columns are the measurement labels (device's first, then any the hub adds)
/// and whose two rows are the device's and the hub's values, so the two read side by side.
fn header(h: &EcgHeader, opts: &PaperOptions, lang: Lang, top: f64) -> (Vec<Text>, f64) {
    let l = labels(lang);
    let left_w = TABLE_X_MM - HEADER_LEFT_MM - 3.0;
    let field = |y: f64, text: String| Text {
        x: HEADER_LEFT_MM,
        y,
        size: TEXT_MM,
        bold: false,
        kind: TextKind::Field,
        text,
        max_width: left_w,
    };
    let first = top + 6.0;
    let mut texts = vec![
        Text {
            x: HEADER_LEFT_MM,
            y: first,
            size: TITLE_MM,
            bold: true,
            kind: TextKind::Title,
            text: h.title.clone(),
            max_width: left_w,
        },
        field(first + LINE_MM, format!("{}: {}", l.patient, h.patient)),
        field(
            first + 2.0 * LINE_MM,
            format!("{}: {}   {}: {}", l.acquired, h.acquired, l.site, h.site),
        ),
        field(
            first + 3.0 * LINE_MM,
            format!(
                "{} {} mm/s   {} {} mm/mV",
                l.speed, opts.speed_mm_per_s, l.gain, opts.gain_mm_per_mv
            ),
        ),
    ];
    let mut bottom = first + 3.0 * LINE_MM;

    let mut names: Vec<&str> = Vec::new();
    for (name, _) in h.device_measurements.iter().chain(&h.hub_measurements) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let value = |list: &[(String, String)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| l.none.to_string(), |(_, v)| v.clone())
    };
    let per_block =
        (((PAGE_WIDTH_MM - 3.0 - TABLE_X_MM - TABLE_LABEL_W_MM) / TABLE_COL_W_MM) as usize).max(1);
    let cell = |x: f64, y: f64, text: String, bold: bool, max_width: f64| Text {
        x,
        y,
        size: TEXT_MM,
        bold,
        kind: TextKind::Measurement,
        text,
        max_width,
    };
    for (b, block) in names.chunks(per_block).enumerate() {
        let y = first + b as f64 * 3.3 * LINE_MM;
        texts.push(cell(
            TABLE_X_MM,
            y + LINE_MM,
            l.device.into(),
            true,
            TABLE_LABEL_W_MM - 1.0,
        ));
        texts.push(cell(
            TABLE_X_MM,
            y + 2.0 * LINE_MM,
            l.hub.into(),
            true,
            TABLE_LABEL_W_MM - 1.0,
        ));
        for (k, name) in block.iter().enumerate() {
            let x = TABLE_X_MM + TABLE_LABEL_W_MM + k as f64 * TABLE_COL_W_MM;
            let w = TABLE_COL_W_MM - 1.0;
            texts.push(cell(x, y, (*name).to_string(), true, w));
            texts.push(cell(
                x,
                y + LINE_MM,
                value(&h.device_measurements, name),
                false,
                w,
            ));
            texts.push(cell(
                x,
                y + 2.0 * LINE_MM,
                value(&h.hub_measurements, name),
                false,
                w,
            ));
        }
        bottom = bottom.max(y + 2.0 * LINE_MM);
    }
    // Whole millimetres, so the grid below starts on a grid line.
    let height = (bottom - top + 3.0).ceil();
    (texts, height)
}
