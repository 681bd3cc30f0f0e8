//! The rendering parameters a caller may give (PS3.18 §8.3.5.1): `window=center,width[,function]`
//! or a named preset, `viewport=vw,vh[,sx,sy,sw,sh]`, and `quality`.

use std::hash::{Hash, Hasher};

use crate::RenderError;

/// The VOI LUT function of an explicit window (PS3.3 C.11.2.1.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VoiFunction {
    #[default]
    Linear,
    LinearExact,
    Sigmoid,
}

impl VoiFunction {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "linear" => Some(VoiFunction::Linear),
            "linear-exact" => Some(VoiFunction::LinearExact),
            "sigmoid" => Some(VoiFunction::Sigmoid),
            _ => None,
        }
    }
}

/// A window (VOI LUT) given by the caller, PS3.18 §8.3.5.1.4, in modality units (after the
/// rescale slope/intercept: Hounsfield units for CT).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

// Parsing rejects NaN, so comparing and hashing the bit patterns is a sound equality.
impl Eq for Window {}

impl Hash for Window {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.center.to_bits().hash(state);
        self.width.to_bits().hash(state);
        self.function.hash(state);
    }
}

/// Named windows for CT (centre, width in HU), accepted wherever `center,width` is:
/// `window=lung`. Conventional radiology values.
pub const PRESETS: &[(&str, f64, f64)] = &[
    ("lung", -600.0, 1500.0),
    ("mediastinum", 50.0, 350.0),
    ("bone", 400.0, 1800.0),
    ("brain", 40.0, 80.0),
    ("subdural", 75.0, 215.0),
    ("abdomen", 60.0, 400.0),
    ("liver", 30.0, 150.0),
    ("soft-tissue", 40.0, 400.0),
];

impl Window {
    /// A linear window.
    pub fn linear(center: f64, width: f64) -> Self {
        Window {
            center,
            width,
            function: VoiFunction::Linear,
        }
    }

    /// The preset of that name (case-insensitive; `soft_tissue` and `soft-tissue` are the same).
    pub fn preset(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase().replace('_', "-");
        PRESETS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|&(_, c, w)| Window::linear(c, w))
    }

    /// Parses `center,width[,function]` (function `linear` (default), `linear-exact` or `sigmoid`)
    /// or a preset name from [`PRESETS`].
    pub fn parse(s: &str) -> Result<Self, RenderError> {
        if let Some(w) = Window::preset(s) {
            return Ok(w);
        }
        let bad = || RenderError::BadWindow(s.to_string());
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let center: f64 = parts[0].parse().map_err(|_| bad())?;
        let width: f64 = parts[1].parse().map_err(|_| bad())?;
        let function = match parts.get(2) {
            Some(f) => VoiFunction::parse(f).ok_or_else(bad)?,
            None => VoiFunction::Linear,
        };
        let min_width = if function == VoiFunction::Linear {
            1.0
        } else {
            f64::MIN_POSITIVE
        };
        if !center.is_finite() || !width.is_finite() || width < min_width {
            return Err(bad());
        }
        Ok(Window {
            center,
            width,
            function,
        })
    }
}

/// Largest viewport side a caller may ask for: larger would only burn memory.
pub const MAX_VIEWPORT: u32 = 4096;

/// The part of the image to show (PS3.18 §8.3.5.1.3): from column `x`, row `y`, `width` columns
/// and `height` rows. A negative width (height) takes the columns left of `x` (rows above `y`)
/// and flips the result horizontally (vertically).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceRegion {
    pub x: u32,
    pub y: u32,
    pub width: i64,
    pub height: i64,
}

/// `viewport=vw,vh[,sx,sy,sw,sh]`: the image (or its source region) is scaled to fit a `width` ×
/// `height` box, keeping its aspect ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    pub source: Option<SourceRegion>,
}

impl Viewport {
    /// A box with no source region: the whole image is fitted into `width` × `height`.
    pub fn fit(width: u32, height: u32) -> Self {
        Viewport {
            width,
            height,
            source: None,
        }
    }

    pub fn parse(s: &str) -> Result<Self, RenderError> {
        let bad = || RenderError::BadViewport(s.to_string());
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() != 2 && parts.len() != 6 {
            return Err(bad());
        }
        let side = |p: &str| -> Result<u32, RenderError> {
            let v: u32 = p.parse().map_err(|_| bad())?;
            if (1..=MAX_VIEWPORT).contains(&v) {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        let width = side(parts[0])?;
        let height = side(parts[1])?;
        let source = if parts.len() == 6 {
            let x: u32 = parts[2].parse().map_err(|_| bad())?;
            let y: u32 = parts[3].parse().map_err(|_| bad())?;
            let w: i64 = parts[4].parse().map_err(|_| bad())?;
            let h: i64 = parts[5].parse().map_err(|_| bad())?;
            if w == 0 || h == 0 {
                return Err(bad());
            }
            Some(SourceRegion {
                x,
                y,
                width: w,
                height: h,
            })
        } else {
            None
        };
        Ok(Viewport {
            width,
            height,
            source,
        })
    }
}

/// Parses `quality` (JPEG quality, 1–100).
pub fn parse_quality(s: &str) -> Result<u8, RenderError> {
    match s.trim().parse::<u8>() {
        Ok(q) if (1..=100).contains(&q) => Ok(q),
        _ => Err(RenderError::BadQuality(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_parameter_parsing() {
        assert_eq!(
            Window::parse("40,400").unwrap(),
            Window::linear(40.0, 400.0)
        );
        assert_eq!(
            Window::parse(" -600 , 1500 ,LINEAR").unwrap(),
            Window::linear(-600.0, 1500.0)
        );
        assert_eq!(
            Window::parse("40,400,sigmoid").unwrap().function,
            VoiFunction::Sigmoid
        );
        assert_eq!(
            Window::parse("40,0.5,linear-exact").unwrap().function,
            VoiFunction::LinearExact
        );
        for bad in [
            "40",
            "a,b",
            "40,0",
            "40,0.5",
            "NaN,400",
            "40,inf",
            "40,400,cubic",
            "1,2,3,4",
            "",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn presets_by_name() {
        assert_eq!(
            Window::parse("lung").unwrap(),
            Window::linear(-600.0, 1500.0)
        );
        assert_eq!(Window::parse("Brain").unwrap(), Window::linear(40.0, 80.0));
        assert_eq!(
            Window::parse("soft_tissue").unwrap(),
            Window::linear(40.0, 400.0)
        );
        for (name, _, _) in PRESETS {
            assert!(Window::preset(name).is_some());
        }
        assert!(Window::parse("spleen").is_err());
    }

    #[test]
    fn viewport_parameter_parsing() {
        assert_eq!(Viewport::parse("128,128").unwrap(), Viewport::fit(128, 128));
        assert_eq!(
            Viewport::parse("64,32,10,20,-30,40").unwrap().source,
            Some(SourceRegion {
                x: 10,
                y: 20,
                width: -30,
                height: 40
            })
        );
        for bad in [
            "128",
            "0,10",
            "10,-1",
            "5000,10",
            "a,b",
            "10,10,0,0,0,5",
            "10,10,1,2,3",
        ] {
            assert!(Viewport::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn quality_parsing() {
        assert_eq!(parse_quality("1").unwrap(), 1);
        assert_eq!(parse_quality("100").unwrap(), 100);
        for bad in ["0", "101", "-5", "high", ""] {
            assert!(parse_quality(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
