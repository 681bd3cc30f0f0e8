//! The ECG scene as a raster: the grid snapped to whole pixels (crisp at any resolution), traces
//! as antialiased tiny-skia strokes clipped to their row, text in an embedded ISO-8859-1 bitmap font
//! (embedded-graphics), encoded as an RGB PNG.

use std::convert::Infallible;

use embedded_graphics::Drawable;
use embedded_graphics::mono_font::iso_8859_1 as fonts;
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::{DrawTarget, OriginDimensions, Point, Size};
use embedded_graphics::text::Text as EgText;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use tiny_skia::{Color, LineCap, LineJoin, Mask, Paint, PathBuilder, Pixmap, Stroke, Transform};

use super::layout::{Rect, Scene, Text};
use super::{EcgRenderError, MAX_PNG_PIXELS};

pub(crate) const GRID_MINOR: [u8; 3] = [244, 196, 196];
pub(crate) const GRID_MAJOR: [u8; 3] = [227, 138, 138];
const INK: [u8; 3] = [20, 20, 20];

pub(crate) fn draw(scene: &Scene, px_per_mm: f32) -> Result<Vec<u8>, EcgRenderError> {
    let k = f64::from(px_per_mm);
    // Bounded below: scene sizes are at most a few metres and k at most 20.
    let width = (scene.width * k).ceil() as u32;
    let height = (scene.height * k).ceil() as u32;
    if u64::from(width) * u64::from(height) > MAX_PNG_PIXELS {
        return Err(EcgRenderError::TooLarge { width, height });
    }
    let mut pixmap = Pixmap::new(width.max(1), height.max(1))
        .ok_or(EcgRenderError::TooLarge { width, height })?;
    pixmap.fill(Color::WHITE);
    let mut clip = RowClip {
        mask: Mask::new(width.max(1), height.max(1))
            .ok_or(EcgRenderError::TooLarge { width, height })?,
        band: 0..0,
    };
    let mut canvas = Canvas { pixmap, k };

    for page in &scene.pages {
        canvas.grid(&page.grid);
        for t in &page.texts {
            canvas.text(t);
        }
        for row in &page.rows {
            clip.set(&row.clip, k);
            let mask = Some(&clip.mask);
            canvas.polyline(&row.cal, 0.3, mask);
            for tr in &row.traces {
                canvas.polyline(&tr.points, 0.28, mask);
            }
            for &(x, y0, y1) in &row.separators {
                canvas.polyline(&[(x, y0), (x, y1)], 0.3, mask);
            }
            for tr in &row.traces {
                canvas.text(&tr.label);
            }
        }
    }
    encode(&canvas.pixmap)
}

/// One mask reused for every row: rows span the page's width, so a row's clip is a band of whole
/// pixel lines, and only the previous band has to be cleared.
struct RowClip {
    mask: Mask,
    band: std::ops::Range<usize>,
}

impl RowClip {
    fn set(&mut self, r: &Rect, k: f64) {
        let w = self.mask.width() as usize;
        let h = self.mask.height() as f64;
        let line = |mm: f64| (mm * k).round().clamp(0.0, h) as usize * w;
        let band = line(r.y)..line(r.y + r.h);
        let data = self.mask.data_mut();
        if let Some(old) = data.get_mut(self.band.clone()) {
            old.fill(0);
        }
        if let Some(new) = data.get_mut(band.clone()) {
            new.fill(255);
        }
        self.band = band;
    }
}

struct Canvas {
    pixmap: Pixmap,
    k: f64,
}

impl Canvas {
    fn px(&self, mm: f64) -> i64 {
        (mm * self.k).round() as i64
    }

    /// Fills whole pixels with an opaque colour, clipped to the pixmap.
    fn fill_px(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, rgb: [u8; 3]) {
        let (w, h) = (
            i64::from(self.pixmap.width()),
            i64::from(self.pixmap.height()),
        );
        let (x0, x1) = (x0.clamp(0, w), x1.clamp(0, w));
        let (y0, y1) = (y0.clamp(0, h), y1.clamp(0, h));
        let c = tiny_skia::ColorU8::from_rgba(rgb[0], rgb[1], rgb[2], 255).premultiply();
        let pixels = self.pixmap.pixels_mut();
        for y in y0..y1 {
            // In range after the clamps above; the product fits usize on every target we build for.
            let start = (y * w + x0) as usize;
            let end = (y * w + x1) as usize;
            if let Some(run) = pixels.get_mut(start..end) {
                run.fill(c);
            }
        }
    }

    /// 1 mm and 5 mm lines on whole pixels: antialiased hairlines would blur into a pink haze.
    fn grid(&mut self, g: &Rect) {
        let thin = ((0.1 * self.k).round() as i64).max(1);
        let bold = ((0.3 * self.k).round() as i64).max(1);
        let (mm_x0, mm_y0) = (g.x.round() as i64, g.y.round() as i64);
        let (mm_w, mm_h) = (g.w.round() as i64, g.h.round() as i64);
        let (px_x0, px_y0) = (self.px(g.x), self.px(g.y));
        let (px_x1, px_y1) = (self.px(g.x + g.w), self.px(g.y + g.h));
        for major in [false, true] {
            let (lw, colour) = if major {
                (bold, GRID_MAJOR)
            } else {
                (thin, GRID_MINOR)
            };
            for i in 0..=mm_w {
                if (i % 5 == 0) == major {
                    let x = self.px((mm_x0 + i) as f64) - lw / 2;
                    self.fill_px(x, px_y0, x + lw, px_y1 + 1, colour);
                }
            }
            for j in 0..=mm_h {
                if (j % 5 == 0) == major {
                    let y = self.px((mm_y0 + j) as f64) - lw / 2;
                    self.fill_px(px_x0, y, px_x1 + 1, y + lw, colour);
                }
            }
        }
    }

    fn polyline(&mut self, points: &[(f64, f64)], width_mm: f64, mask: Option<&Mask>) {
        let mut pb = PathBuilder::with_capacity(points.len(), points.len());
        for (i, &(x, y)) in points.iter().enumerate() {
            let (x, y) = ((x * self.k) as f32, (y * self.k) as f32);
            if i == 0 {
                pb.move_to(x, y);
            } else {
                pb.line_to(x, y);
            }
        }
        let Some(path) = pb.finish() else {
            return;
        };
        let mut paint = Paint::default();
        paint.set_color_rgba8(INK[0], INK[1], INK[2], 255);
        paint.anti_alias = true;
        let stroke = Stroke {
            width: (width_mm * self.k).max(1.0) as f32,
            line_cap: LineCap::Round,
            line_join: LineJoin::Round,
            ..Stroke::default()
        };
        self.pixmap
            .stroke_path(&path, &paint, &stroke, Transform::identity(), mask);
    }

    fn text(&mut self, t: &Text) {
        let (font, scale) = pick_font(t.size * self.k, t.bold);
        let advance = f64::from((font.character_size.width + font.character_spacing) * scale);
        let max_chars = ((t.max_width * self.k) / advance).floor().max(0.0) as usize;
        let text = fit_latin1(&t.text, max_chars);
        let origin = (self.px(t.x), self.px(t.y));
        let mut target = TextTarget {
            canvas: self,
            origin,
            scale: i64::from(scale),
        };
        let style = MonoTextStyle::new(font, BinaryColor::On);
        let _ = EgText::new(&text, Point::zero(), style).draw(&mut target);
    }
}

/// The bitmap font and whole-number magnification for text `height_px` tall: the least magnification
/// at which some font fills at least three quarters of that height without passing it (a native
/// glyph reads better than a doubled small one), the tallest such font; the smallest font when none
/// fits.
pub(crate) fn pick_font(height_px: f64, bold: bool) -> (&'static MonoFont<'static>, u32) {
    const REGULAR: [&MonoFont<'static>; 9] = [
        &fonts::FONT_4X6,
        &fonts::FONT_5X8,
        &fonts::FONT_6X10,
        &fonts::FONT_6X12,
        &fonts::FONT_7X13,
        &fonts::FONT_7X14,
        &fonts::FONT_9X15,
        &fonts::FONT_9X18,
        &fonts::FONT_10X20,
    ];
    const BOLD: [&MonoFont<'static>; 9] = [
        &fonts::FONT_4X6,
        &fonts::FONT_5X8,
        &fonts::FONT_6X10,
        &fonts::FONT_6X13_BOLD,
        &fonts::FONT_7X13_BOLD,
        &fonts::FONT_7X14_BOLD,
        &fonts::FONT_9X15_BOLD,
        &fonts::FONT_9X18_BOLD,
        &fonts::FONT_9X18_BOLD,
    ];
    let list = if bold { &BOLD } else { &REGULAR };
    for scale in 1..=8u32 {
        let tallest = list
            .iter()
            .filter(|f| f64::from(f.character_size.height * scale) <= height_px)
            .max_by_key(|f| f.character_size.height);
        if let Some(font) = tallest
            && f64::from(font.character_size.height * scale) >= 0.75 * height_px
        {
            return (font, scale);
        }
    }
    (&fonts::FONT_4X6, 1)
}

/// At most `max_chars` characters, with `...` when cut; characters outside ISO-8859-1 (the font's
/// repertoire) become `?`.
pub(crate) fn fit_latin1(text: &str, max_chars: usize) -> String {
    let chars: Vec<char> = text
        .chars()
        .map(|c| {
            if (c as u32) < 0x100 && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if chars.len() <= max_chars {
        return chars.into_iter().collect();
    }
    let keep = max_chars.saturating_sub(3);
    let mut out: String = chars.into_iter().take(keep).collect();
    out.push_str(&"..."[..max_chars.min(3)]);
    out
}

/// Draws embedded-graphics pixels as `scale` × `scale` squares, relative to a baseline origin.
struct TextTarget<'a> {
    canvas: &'a mut Canvas,
    origin: (i64, i64),
    scale: i64,
}

impl OriginDimensions for TextTarget<'_> {
    fn size(&self) -> Size {
        Size::new(self.canvas.pixmap.width(), self.canvas.pixmap.height())
    }
}

impl DrawTarget for TextTarget<'_> {
    type Color = BinaryColor;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = embedded_graphics::Pixel<Self::Color>>,
    {
        for embedded_graphics::Pixel(p, colour) in pixels {
            if colour == BinaryColor::On {
                let x = self.origin.0 + i64::from(p.x) * self.scale;
                let y = self.origin.1 + i64::from(p.y) * self.scale;
                self.canvas
                    .fill_px(x, y, x + self.scale, y + self.scale, INK);
            }
        }
        Ok(())
    }
}

/// RGB without alpha (the page is opaque). Level 6 with adaptive filtering: a 12-lead page at 5 px/mm
/// is about 80 KB, against 120 KB at the fastest level, for a few more milliseconds.
fn encode(pixmap: &Pixmap) -> Result<Vec<u8>, EcgRenderError> {
    let rgb: Vec<u8> = pixmap
        .pixels()
        .iter()
        .flat_map(|p| [p.red(), p.green(), p.blue()])
        .collect();
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Level(6), FilterType::Adaptive)
        .write_image(
            &rgb,
            pixmap.width(),
            pixmap.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| EcgRenderError::Encode(e.to_string()))?;
    Ok(out)
}
