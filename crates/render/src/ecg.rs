//! ECG paper: an [`EcgRecord`] drawn as the classic print (1 mm / 5 mm red grid, calibration pulse,
//! 3 × 4 leads and a lead II rhythm strip, or full-width strips for records that are not 12-lead)
//! under a header band, as SVG for the browser and PNG for print. Several pages stack vertically in
//! one drawing, which is how the reader sees a prior ECG under the current one.
//!
//! Page layout (millimetres, the same at every gain and speed): the page is
//! [`PAGE_WIDTH_MM`] wide; the first [`CAL_WIDTH_MM`] of each row hold the calibration pulse, the next
//! [`TRACE_WIDTH_MM`] the traces, so 25 mm/s shows 10 s (four 2.5 s columns) and 50 mm/s shows the
//! first 5 s (four 1.25 s columns, a 5 s rhythm strip): the page keeps its size and the paper runs
//! faster, as on a cart. Rows are [`ROW_HEIGHT_MM`] high with the baseline in their middle; a trace
//! that leaves its row is clipped at the row's edge. Each displayed window is centred on its own
//! median, so baseline offset and slow wander do not push a trace out of its row; the waveform is
//! otherwise drawn as recorded (no filtering).
//!
//! The SVG is in millimetres (`viewBox` units are mm) and carries the chosen language; its text uses
//! the browser's fonts. The PNG draws its text with an embedded ISO-8859-1 bitmap font, so it needs no
//! system font but cannot show Chinese: its fixed labels are always English, and characters of the
//! caller's text outside ISO-8859-1 are printed as `?`.

mod layout;
mod png;
mod svg;
#[cfg(test)]
mod tests;

use yilian_domain::ecg::{EcgModelError, EcgRecord};

pub use layout::{CAL_WIDTH_MM, PAGE_GAP_MM, PAGE_WIDTH_MM, ROW_HEIGHT_MM, TRACE_WIDTH_MM};

/// Why an ECG could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum EcgRenderError {
    #[error("gain {0} mm/mV is not offered: choose 5, 10 or 20 mm/mV")]
    BadGain(f64),
    #[error("paper speed {0} mm/s is not offered: choose 25 or 50 mm/s")]
    BadSpeed(f64),
    #[error("resolution {0} px/mm is out of range (1 to 20 px/mm)")]
    BadResolution(f32),
    #[error("nothing to render: no pages were given")]
    NoPages,
    #[error("page {page} (counting from 1) holds an unusable record")]
    Record {
        page: usize,
        #[source]
        source: EcgModelError,
    },
    #[error(
        "the drawing would be {width}×{height} px, more than the {MAX_PNG_PIXELS} pixels allowed"
    )]
    TooLarge { width: u32, height: u32 },
    #[error("the PNG could not be encoded: {0}")]
    Encode(String),
}

/// The language of the fixed labels (header field names). The caller's own text is shown as given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lang {
    #[default]
    ZhCn,
    En,
}

/// Gain and paper speed. Only the settings of a standard electrocardiograph are offered:
/// 5, 10 or 20 mm/mV and 25 or 50 mm/s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PaperOptions {
    pub gain_mm_per_mv: f64,
    pub speed_mm_per_s: f64,
}

impl PaperOptions {
    pub const GAINS_MM_PER_MV: [f64; 3] = [5.0, 10.0, 20.0];
    pub const SPEEDS_MM_PER_S: [f64; 2] = [25.0, 50.0];

    pub fn new(gain_mm_per_mv: f64, speed_mm_per_s: f64) -> Result<Self, EcgRenderError> {
        let opts = PaperOptions {
            gain_mm_per_mv,
            speed_mm_per_s,
        };
        opts.validate()?;
        Ok(opts)
    }

    /// Checks the fields again: they are public, so a value may not have come through [`Self::new`].
    pub fn validate(&self) -> Result<(), EcgRenderError> {
        if !Self::GAINS_MM_PER_MV.contains(&self.gain_mm_per_mv) {
            return Err(EcgRenderError::BadGain(self.gain_mm_per_mv));
        }
        if !Self::SPEEDS_MM_PER_S.contains(&self.speed_mm_per_s) {
            return Err(EcgRenderError::BadSpeed(self.speed_mm_per_s));
        }
        Ok(())
    }

    /// Seconds of signal one page shows across its trace area (10 s at 25 mm/s, 5 s at 50 mm/s).
    pub fn page_secs(&self) -> f64 {
        TRACE_WIDTH_MM / self.speed_mm_per_s
    }
}

impl Default for PaperOptions {
    /// 10 mm/mV, 25 mm/s.
    fn default() -> Self {
        PaperOptions {
            gain_mm_per_mv: 10.0,
            speed_mm_per_s: 25.0,
        }
    }
}

/// The header band of one page. Every string is shown as given: the caller masks identifiers and
/// chooses the title (e.g. "当前心电图" / "既往心电图").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EcgHeader {
    pub title: String,
    /// Already masked by the caller.
    pub patient: String,
    pub acquired: String,
    pub site: String,
    /// What the device measured: (label, value), e.g. ("HR", "72 bpm").
    pub device_measurements: Vec<(String, String)>,
    /// What the hub measured, in the same form; shown beside the device's, matched by label.
    pub hub_measurements: Vec<(String, String)>,
}

/// One record and its header: one page of the drawing.
#[derive(Clone, Debug)]
pub struct EcgPage<'a> {
    pub record: &'a EcgRecord,
    pub header: EcgHeader,
}

/// The most pixels a PNG may have (a 12-lead page at 5 px/mm is about 1.3 million).
pub const MAX_PNG_PIXELS: u64 = 64 * 1024 * 1024;

/// Draws the pages, stacked top to bottom, as one SVG document whose units are millimetres.
/// Equal input gives equal output.
pub fn render_svg(
    pages: &[EcgPage<'_>],
    opts: &PaperOptions,
    lang: Lang,
) -> Result<String, EcgRenderError> {
    let scene = layout::build(pages, opts, lang)?;
    Ok(svg::write(&scene))
}

/// Draws the pages, stacked top to bottom, as one PNG at `px_per_mm` pixels per millimetre
/// (5 px/mm ≈ 127 dpi; 12 px/mm ≈ 300 dpi). Labels are English whatever `lang` says, because the
/// embedded font has no Chinese glyphs (see the module docs); `lang` is kept for when it does.
pub fn render_png(
    pages: &[EcgPage<'_>],
    opts: &PaperOptions,
    lang: Lang,
    px_per_mm: f32,
) -> Result<Vec<u8>, EcgRenderError> {
    let _ = lang;
    if !(px_per_mm.is_finite() && (1.0..=20.0).contains(&px_per_mm)) {
        return Err(EcgRenderError::BadResolution(px_per_mm));
    }
    let scene = layout::build(pages, opts, Lang::En)?;
    png::draw(&scene, px_per_mm)
}
