//! Yilian render: one frame of DICOM pixel data → PNG or JPEG, for DICOMweb `rendered` and
//! `thumbnail` resources. Decoding (native, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE,
//! deflate), the modality LUT, the VOI LUT (the caller's window or preset, else the data set's VOI LUT
//! Sequence or window) and MONOCHROME1 inversion are dicom-pixeldata's; this crate chooses the
//! options, crops and scales to the viewport and encodes.
//!
//! [`ecg`] draws ECG traces as standard paper (SVG for the browser, PNG for print).

pub mod ecg;
mod params;
pub mod report;

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use dicom_core::header::HasLength;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutFunction, VoiLutOption, WindowLevel};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use image::imageops::FilterType;
use image::{ColorType, DynamicImage, ImageFormat};

pub use params::{
    MAX_VIEWPORT, PRESETS, SourceRegion, Viewport, VoiFunction, Window, parse_quality,
};

/// The image formats the hub produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Png,
    Jpeg,
}

impl OutputFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
        }
    }
}

/// Default JPEG quality when the caller gives none.
pub const DEFAULT_QUALITY: u8 = 90;

/// Everything that decides the output bytes; equal options on the same instance give equal bytes
/// (the app's render cache relies on that).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RenderOptions {
    /// 0-based frame index (DICOMweb frame numbers are 1-based: subtract one).
    pub frame: u32,
    /// The caller's window; `None` uses the data set's VOI LUT Sequence, else its first window,
    /// else the frame's minimum–maximum range.
    pub window: Option<Window>,
    /// Crop and scale; `None` keeps the image's own size.
    pub viewport: Option<Viewport>,
    pub format: OutputFormat,
    /// JPEG quality 1–100 (ignored for PNG).
    pub quality: u8,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            frame: 0,
            window: None,
            viewport: None,
            format: OutputFormat::Png,
            quality: DEFAULT_QUALITY,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "invalid window {0:?}: expected center,width[,function] (function linear, linear-exact or \
         sigmoid; width >= 1 for linear) or a preset: lung, mediastinum, bone, brain, subdural, \
         abdomen, liver, soft-tissue"
    )]
    BadWindow(String),
    #[error(
        "invalid viewport {0:?}: expected vw,vh[,sx,sy,sw,sh] with 1 <= vw, vh <= 4096, \
         sx, sy >= 0 and sw, sh non-zero"
    )]
    BadViewport(String),
    #[error("the viewport's source region lies outside the {columns}x{rows} image")]
    RegionOutside { columns: u32, rows: u32 },
    #[error("invalid quality {0:?}: expected an integer from 1 to 100")]
    BadQuality(String),
    /// `frame` is 1-based, as callers number frames.
    #[error(
        "frame {frame} was asked for but the instance has {frames} (frames are numbered from 1)"
    )]
    NoSuchFrame { frame: u64, frames: u32 },
    #[error("transfer syntax {uid} ({name}) cannot be decoded by this hub")]
    UnsupportedTransferSyntax { uid: String, name: String },
    #[error("the instance could not be read: {0}")]
    Read(String),
    #[error("the pixel data could not be decoded: {0}")]
    Decode(String),
    #[error("the image could not be encoded: {0}")]
    Encode(String),
}

impl RenderError {
    /// True when the request's parameters are at fault (as opposed to the stored instance).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            RenderError::BadWindow(_)
                | RenderError::BadViewport(_)
                | RenderError::RegionOutside { .. }
                | RenderError::BadQuality(_)
                | RenderError::NoSuchFrame { .. }
        )
    }
}

/// The instance's Number of Frames (1 when absent).
pub fn number_of_frames(obj: &dicom_object::DefaultDicomObject) -> Result<u32, RenderError> {
    let Some(elem) = obj
        .element_opt(tags::NUMBER_OF_FRAMES)
        .map_err(|e| RenderError::Read(e.to_string()))?
    else {
        return Ok(1);
    };
    if elem.is_empty() {
        return Ok(1);
    }
    match elem.to_int::<i64>() {
        Ok(n) if n > 0 => u32::try_from(n)
            .map_err(|_| RenderError::Read(format!("Number of Frames {n} is too large"))),
        _ => Err(RenderError::Read(
            "Number of Frames is not a positive integer".into(),
        )),
    }
}

/// Renders one frame of a Part 10 object to PNG or JPEG. Never panics: a decoder that fails on
/// malformed pixel data is reported as [`RenderError::Decode`].
pub fn render(
    obj: &dicom_object::DefaultDicomObject,
    opts: &RenderOptions,
) -> Result<Vec<u8>, RenderError> {
    catch_unwind(AssertUnwindSafe(|| render_frame(obj, opts))).unwrap_or_else(|_| {
        Err(RenderError::Decode(
            "the decoder failed on this pixel data".into(),
        ))
    })
}

fn render_frame(
    obj: &dicom_object::DefaultDicomObject,
    opts: &RenderOptions,
) -> Result<Vec<u8>, RenderError> {
    let frames = number_of_frames(obj)?;
    if opts.frame >= frames {
        return Err(RenderError::NoSuchFrame {
            frame: u64::from(opts.frame) + 1,
            frames,
        });
    }
    let uid = obj.meta().transfer_syntax();
    let native = match TransferSyntaxRegistry.get(uid) {
        Some(ts) if ts.can_decode_all() => !ts.is_encapsulated_pixel_data(),
        Some(ts) => {
            return Err(RenderError::UnsupportedTransferSyntax {
                uid: uid.to_string(),
                name: ts.name().to_string(),
            });
        }
        None => {
            return Err(RenderError::UnsupportedTransferSyntax {
                uid: uid.to_string(),
                name: "unknown".into(),
            });
        }
    };
    // YBR_FULL(_422) is converted here, not by dicom-pixeldata: its 0.10 conversion adds the Cb
    // term to green with the wrong sign, and it calls every decoded colour frame RGB even when the
    // codec (RLE, JPEG-LS, deflate) kept YCbCr. JPEG and JPEG 2000 decoders convert themselves.
    let pi = text(obj, tags::PHOTOMETRIC_INTERPRETATION);
    let ybr =
        matches!(pi.as_deref(), Some("YBR_FULL" | "YBR_FULL_422")) && !codec_converts_colour(uid);
    if ybr && native && pi.as_deref() == Some("YBR_FULL_422") {
        return Err(RenderError::Decode(
            "uncompressed YBR_FULL_422 (chroma-subsampled) pixel data is not supported".into(),
        ));
    }
    let as_rgb;
    let src = if ybr && native {
        let mut o = obj.clone();
        o.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "RGB",
        ));
        as_rgb = o;
        &as_rgb
    } else {
        obj
    };
    // Decoding one frame keeps that frame's rescale and window (per-frame functional groups).
    let pixels = src
        .decode_pixel_data_frame(opts.frame)
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let voi = match opts.window {
        Some(w) => VoiLutOption::CustomWithFunction(
            WindowLevel {
                center: w.center,
                width: w.width,
            },
            match w.function {
                VoiFunction::Linear => VoiLutFunction::Linear,
                VoiFunction::LinearExact => VoiLutFunction::LinearExact,
                VoiFunction::Sigmoid => VoiLutFunction::Sigmoid,
            },
        ),
        None => VoiLutOption::First,
    };
    let img = pixels
        .to_dynamic_image_with_options(0, &ConvertOptions::new().with_voi_lut(voi).force_8bit())
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let img = match img.color() {
        ColorType::L8 | ColorType::Rgb8 => img,
        c if c.has_color() => DynamicImage::ImageRgb8(img.to_rgb8()),
        _ => DynamicImage::ImageLuma8(img.to_luma8()),
    };
    let img = match img {
        DynamicImage::ImageRgb8(mut rgb) if ybr => {
            rgb.pixels_mut().for_each(|p| p.0 = ybr_full_to_rgb(p.0));
            DynamicImage::ImageRgb8(rgb)
        }
        other => other,
    };
    let img = match &opts.viewport {
        Some(vp) => fit_viewport(img, vp)?,
        None => img,
    };
    encode(&img, opts)
}

fn text(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    Some(e.to_str().ok()?.trim_matches([' ', '\0']).to_string())
}

/// JPEG (baseline, extended, lossless) and JPEG 2000 decoders hand out RGB for colour images.
fn codec_converts_colour(ts_uid: &str) -> bool {
    ts_uid.starts_with("1.2.840.10008.1.2.4.")
        && !matches!(ts_uid, "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81")
}

/// YCbCr (full range, PS3.3 C.7.6.3.1.2) to RGB.
fn ybr_full_to_rgb([y, cb, cr]: [u8; 3]) -> [u8; 3] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        clamp(y + 1.402 * cr),
        clamp(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp(y + 1.772 * cb),
    ]
}

/// Crops to the source region (flipping for a negative extent), then scales to fit the viewport
/// keeping the aspect ratio.
fn fit_viewport(img: DynamicImage, vp: &Viewport) -> Result<DynamicImage, RenderError> {
    let mut img = img;
    if let Some(src) = vp.source {
        let (columns, rows) = (img.width(), img.height());
        let span = |start: u32, len: i64, max: u32| {
            let start = i64::from(start);
            let (a, b) = if len >= 0 {
                (start, start.saturating_add(len))
            } else {
                (start.saturating_add(len), start)
            };
            (a.clamp(0, i64::from(max)), b.clamp(0, i64::from(max)))
        };
        let (x0, x1) = span(src.x, src.width, columns);
        let (y0, y1) = span(src.y, src.height, rows);
        if x1 <= x0 || y1 <= y0 {
            return Err(RenderError::RegionOutside { columns, rows });
        }
        // In range: 0 <= x0 < x1 <= columns, which fits u32.
        let (x0, y0, w, h) = (x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32);
        img = img.crop_imm(x0, y0, w, h);
        if src.width < 0 {
            img = img.fliph();
        }
        if src.height < 0 {
            img = img.flipv();
        }
    }
    if (img.width(), img.height()) == (vp.width, vp.height) {
        return Ok(img);
    }
    Ok(img.resize(vp.width, vp.height, FilterType::Triangle))
}

fn encode(img: &DynamicImage, opts: &RenderOptions) -> Result<Vec<u8>, RenderError> {
    let mut out = Cursor::new(Vec::new());
    match opts.format {
        OutputFormat::Png => img.write_to(&mut out, ImageFormat::Png),
        OutputFormat::Jpeg => {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut out,
                opts.quality.clamp(1, 100),
            );
            img.write_with_encoder(enc)
        }
    }
    .map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod synth;
#[cfg(test)]
mod tests;
