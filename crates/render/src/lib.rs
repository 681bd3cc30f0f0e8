//! Yilian render: a frame of DICOM pixel data → PNG or JPEG, honouring the data set's window
//! centre/width or one the caller gives (DICOMweb `window=center,width,function`).

use std::io::Cursor;

use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutOption, WindowLevel};
use image::{DynamicImage, ImageFormat};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// A window (VOI LUT) given by the caller, PS3.18 §8.3.5.1.4.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

impl Window {
    /// Parses `center,width[,function]` (function `linear` only, the default).
    pub fn parse(s: &str) -> Result<Self, RenderError> {
        let mut it = s.split(',');
        let bad = || RenderError::BadWindow(s.to_string());
        let center: f64 = it
            .next()
            .ok_or_else(bad)?
            .trim()
            .parse()
            .map_err(|_| bad())?;
        let width: f64 = it
            .next()
            .ok_or_else(bad)?
            .trim()
            .parse()
            .map_err(|_| bad())?;
        if let Some(f) = it.next()
            && !f.trim().eq_ignore_ascii_case("linear")
        {
            return Err(RenderError::BadWindow(format!(
                "{s} (only the linear function is supported)"
            )));
        }
        if it.next().is_some() || !center.is_finite() || !width.is_finite() || width < 1.0 {
            return Err(bad());
        }
        Ok(Window { center, width })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    /// 0-based frame index.
    pub frame: u32,
    pub window: Option<Window>,
    pub format: OutputFormat,
    /// JPEG quality 1–100.
    pub quality: u8,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            frame: 0,
            window: None,
            format: OutputFormat::Png,
            quality: 90,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("invalid window {0:?}: expected center,width[,linear] with width >= 1")]
    BadWindow(String),
    #[error("the instance has no frame {frame} (it has {frames})")]
    NoSuchFrame { frame: u32, frames: u32 },
    #[error("the instance could not be read: {0}")]
    Read(String),
    #[error("the pixel data could not be decoded: {0}")]
    Decode(String),
    #[error("the image could not be encoded: {0}")]
    Encode(String),
}

/// Renders one frame of a Part 10 file to an 8-bit image.
pub fn render(
    obj: &dicom_object::DefaultDicomObject,
    opts: &RenderOptions,
) -> Result<Vec<u8>, RenderError> {
    let pixels = obj
        .decode_pixel_data()
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let frames = pixels.number_of_frames();
    if opts.frame >= frames {
        return Err(RenderError::NoSuchFrame {
            frame: opts.frame,
            frames,
        });
    }
    let voi = match opts.window {
        Some(w) => VoiLutOption::Custom(WindowLevel {
            center: w.center,
            width: w.width,
        }),
        None => VoiLutOption::First,
    };
    let img = pixels
        .to_dynamic_image_with_options(
            opts.frame,
            &ConvertOptions::new().with_voi_lut(voi).force_8bit(),
        )
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    encode(img, opts)
}

fn encode(img: DynamicImage, opts: &RenderOptions) -> Result<Vec<u8>, RenderError> {
    let mut out = Cursor::new(Vec::new());
    match opts.format {
        OutputFormat::Png => img.write_to(&mut out, ImageFormat::Png),
        OutputFormat::Jpeg => {
            let rgb = img.to_luma8();
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut out,
                opts.quality.clamp(1, 100),
            );
            rgb.write_with_encoder(enc)
        }
    }
    .map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_fixtures::{InstanceSpec, instance_bytes};

    fn open(spec: &InstanceSpec) -> dicom_object::DefaultDicomObject {
        let bytes = instance_bytes(spec);
        dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Never)
            .from_reader(&bytes[128..])
            .unwrap()
    }

    fn decode_png(png: &[u8]) -> image::GrayImage {
        image::load_from_memory_with_format(png, ImageFormat::Png)
            .unwrap()
            .to_luma8()
    }

    #[test]
    fn the_dataset_window_shows_tissue_grey_and_air_black() {
        let spec = InstanceSpec::ct(1);
        let img = decode_png(&render(&open(&spec), &RenderOptions::default()).unwrap());
        assert_eq!((img.width(), img.height()), (64, 64));
        // Corner is air (-1000 HU): black under a 40/400 window. Centre is ~40 HU: mid grey.
        assert_eq!(img.get_pixel(0, 0)[0], 0);
        let centre = img.get_pixel(32, 32)[0];
        assert!((60..=200).contains(&centre), "centre grey level {centre}");
    }

    #[test]
    fn a_caller_window_changes_the_image() {
        let spec = InstanceSpec::ct(1);
        let obj = open(&spec);
        let narrow = decode_png(
            &render(
                &obj,
                &RenderOptions {
                    window: Some(Window::parse("-1000,10").unwrap()),
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        // Under a -1000/10 window, tissue at +40 HU is white.
        assert_eq!(narrow.get_pixel(32, 32)[0], 255);
    }

    #[test]
    fn jpeg_output_and_frame_bounds() {
        let obj = open(&InstanceSpec::ct(1));
        let jpg = render(
            &obj,
            &RenderOptions {
                format: OutputFormat::Jpeg,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(&jpg[..2], &[0xFF, 0xD8]);
        let e = render(
            &obj,
            &RenderOptions {
                frame: 1,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "the instance has no frame 1 (it has 1)");
    }

    #[test]
    fn window_parameter_parsing() {
        assert_eq!(
            Window::parse("40,400").unwrap(),
            Window {
                center: 40.0,
                width: 400.0
            }
        );
        assert!(Window::parse("40,400,LINEAR").is_ok());
        assert!(Window::parse("40,400,sigmoid").is_err());
        assert!(Window::parse("40").is_err());
        assert!(Window::parse("a,b").is_err());
        assert!(Window::parse("40,0").is_err());
        assert!(Window::parse("NaN,400").is_err());
    }
}
