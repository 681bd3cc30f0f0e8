//! Unit tests of rendering on synthetic instances: one test per behaviour a viewer relies on.

use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::entries;
use image::{GenericImageView, ImageFormat};

use super::*;
use crate::synth::Synth;

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

fn png(obj: &dicom_object::DefaultDicomObject, opts: RenderOptions) -> DynamicImage {
    let bytes = render(obj, &opts).unwrap();
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        match opts.format {
            OutputFormat::Png => ImageFormat::Png,
            OutputFormat::Jpeg => ImageFormat::Jpeg,
        }
    );
    decode(&bytes)
}

fn greys(img: &DynamicImage) -> Vec<u8> {
    img.to_luma8().into_raw()
}

/// PS3.3 C.11.2.1.2.1 linear window, 8-bit output.
fn linear(x: f64, c: f64, w: f64) -> f64 {
    if x <= c - 0.5 - (w - 1.0) / 2.0 {
        0.0
    } else if x > c - 0.5 + (w - 1.0) / 2.0 {
        255.0
    } else {
        ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
    }
}

fn assert_near(actual: &[u8], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len());
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (f64::from(*a) - e).abs() <= 1.0,
            "pixel {i}: got {a}, expected {e:.1} (all: {actual:?})"
        );
    }
}

const HU: [i32; 4] = [-1000, 40, 1000, -60];

/// A CT-like row of four pixels stored with intercept -1024 and a 40/400 window.
fn ct_row() -> Synth {
    let stored: Vec<i32> = HU.iter().map(|h| h + 1024).collect();
    Synth {
        rescale: Some((1.0, -1024.0)),
        window: Some((40.0, 400.0)),
        ..Synth::mono16(1, 4, &stored)
    }
}

#[test]
fn rescale_then_the_file_window_gives_the_standard_grey_levels() {
    let img = png(&ct_row().object(), RenderOptions::default());
    let expected: Vec<f64> = HU.iter().map(|h| linear(*h as f64, 40.0, 400.0)).collect();
    assert_near(&greys(&img), &expected);
    // Sanity: air black, bone white, tissue mid-grey.
    assert_eq!(greys(&img)[0], 0);
    assert_eq!(greys(&img)[2], 255);
}

#[test]
fn rescale_slope_is_applied_before_the_window() {
    // Stored values are half the HU + 1024: slope 2 must bring them back.
    let stored: Vec<i32> = HU.iter().map(|h| (h + 1024) / 2).collect();
    let s = Synth {
        rescale: Some((2.0, -1024.0)),
        window: Some((40.0, 400.0)),
        ..Synth::mono16(1, 4, &stored)
    };
    let img = png(&s.object(), RenderOptions::default());
    let expected: Vec<f64> = stored
        .iter()
        .map(|v| linear(f64::from(*v) * 2.0 - 1024.0, 40.0, 400.0))
        .collect();
    assert_near(&greys(&img), &expected);
}

#[test]
fn signed_16_bit_pixels_render_like_their_unsigned_equivalent() {
    let s = Synth {
        window: Some((40.0, 400.0)),
        ..Synth::mono16(1, 4, &HU)
    };
    assert!(s.signed);
    let img = png(&s.object(), RenderOptions::default());
    let expected: Vec<f64> = HU.iter().map(|h| linear(*h as f64, 40.0, 400.0)).collect();
    assert_near(&greys(&img), &expected);
}

#[test]
fn twelve_bit_unsigned_with_its_window() {
    let stored = [0, 1024, 2048, 4095];
    let s = Synth {
        bits_stored: 12,
        window: Some((2048.0, 4096.0)),
        ..Synth::mono16(1, 4, &stored)
    };
    let img = png(&s.object(), RenderOptions::default());
    let expected: Vec<f64> = stored
        .iter()
        .map(|v| linear(f64::from(*v), 2048.0, 4096.0))
        .collect();
    assert_near(&greys(&img), &expected);
}

#[test]
fn eight_bit_without_a_window_spans_its_range() {
    let s = Synth::mono8(1, 3, &[50, 100, 150]);
    let g = greys(&png(&s.object(), RenderOptions::default()));
    assert_eq!(g[0], 0);
    assert_eq!(g[2], 255);
    assert!((120..=135).contains(&g[1]), "{g:?}");
}

#[test]
fn monochrome1_is_inverted() {
    let mono2 = greys(&png(&ct_row().object(), RenderOptions::default()));
    let s = Synth {
        photometric: "MONOCHROME1",
        ..ct_row()
    };
    let mono1 = greys(&png(&s.object(), RenderOptions::default()));
    assert_eq!(mono1[0], 255, "air is white in MONOCHROME1");
    assert_eq!(mono1[2], 0);
    for (a, b) in mono1.iter().zip(&mono2) {
        assert_eq!(*a, 255 - b);
    }
}

#[test]
fn the_callers_window_overrides_the_files() {
    let obj = ct_row().object();
    let opts = RenderOptions {
        window: Some(Window::parse("-1000,10").unwrap()),
        ..Default::default()
    };
    let g = greys(&png(&obj, opts));
    let expected: Vec<f64> = HU
        .iter()
        .map(|h| linear(*h as f64, -1000.0, 10.0))
        .collect();
    assert_near(&g, &expected);
    assert_eq!(g[1], 255, "tissue is white under a -1000/10 window");
}

#[test]
fn the_bad_window_message_names_every_preset() {
    let msg = Window::parse("wide").unwrap_err().to_string();
    for (name, _, _) in PRESETS {
        assert!(msg.contains(name), "{name} missing from: {msg}");
    }
}

#[test]
fn presets_window_in_hounsfield_units() {
    let obj = ct_row().object();
    for name in ["lung", "brain", "bone", "mediastinum"] {
        let w = Window::preset(name).unwrap();
        let g = greys(&png(
            &obj,
            RenderOptions {
                window: Some(w),
                ..Default::default()
            },
        ));
        let expected: Vec<f64> = HU
            .iter()
            .map(|h| linear(*h as f64, w.center, w.width))
            .collect();
        assert_near(&g, &expected);
    }
}

#[test]
fn a_voi_lut_sequence_wins_over_the_window_but_not_over_the_caller() {
    // A 12-bit ramp through an inverting 8-bit LUT of 4096 entries.
    let stored = [0, 1024, 2048, 4095];
    let lut: Vec<u16> = (0..4096u32).map(|i| (255 - i / 16) as u16).collect();
    let s = Synth {
        bits_stored: 12,
        window: Some((2048.0, 4096.0)),
        voi_lut: Some((0, 8, lut)),
        ..Synth::mono16(1, 4, &stored)
    };
    let obj = s.object();
    let g = greys(&png(&obj, RenderOptions::default()));
    assert_near(&g, &[255.0, 191.0, 127.0, 0.0]);
    let g = greys(&png(
        &obj,
        RenderOptions {
            window: Some(Window::linear(2048.0, 4096.0)),
            ..Default::default()
        },
    ));
    assert!(g[0] < 5 && g[3] > 250, "the caller's window applies: {g:?}");
}

#[test]
fn multi_frame_picks_the_requested_frame_and_refuses_others() {
    // Three 2×2 frames of constant HU -1000, 40 and 1000.
    let stored: Vec<i32> = [-1000, 40, 1000]
        .iter()
        .flat_map(|h| [h + 1024; 4])
        .collect();
    let s = Synth {
        rescale: Some((1.0, -1024.0)),
        window: Some((40.0, 400.0)),
        ..Synth::mono16(2, 2, &stored)
    };
    assert_eq!(s.frames, 3);
    let obj = s.object();
    assert_eq!(number_of_frames(&obj).unwrap(), 3);
    for (frame, hu) in [(0, -1000.0), (1, 40.0), (2, 1000.0)] {
        let g = greys(&png(
            &obj,
            RenderOptions {
                frame,
                ..Default::default()
            },
        ));
        assert_near(&g, &[linear(hu, 40.0, 400.0); 4]);
    }
    let e = render(
        &obj,
        &RenderOptions {
            frame: 3,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.is_bad_request());
    assert_eq!(
        e.to_string(),
        "frame 4 was asked for but the instance has 3 (frames are numbered from 1)"
    );
}

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];

#[test]
fn rgb_renders_in_colour_in_png_and_jpeg() {
    let s = Synth::colour8(1, 3, "RGB", &[RED, GREEN, BLUE]);
    let img = png(&s.object(), RenderOptions::default());
    assert!(img.color().has_color());
    let rgb = img.to_rgb8();
    assert_eq!(rgb.get_pixel(0, 0).0, RED);
    assert_eq!(rgb.get_pixel(1, 0).0, GREEN);
    assert_eq!(rgb.get_pixel(2, 0).0, BLUE);
    // Planar configuration 1: RRR GGG BBB.
    let planar = Synth {
        planar: 1,
        pixels: vec![255, 0, 0, 0, 255, 0, 0, 0, 255],
        ..s.clone()
    };
    let rgb = png(&planar.object(), RenderOptions::default()).to_rgb8();
    assert_eq!(rgb.get_pixel(0, 0).0, RED);
    assert_eq!(rgb.get_pixel(2, 0).0, BLUE);
    // JPEG keeps colour (a red block stays red).
    let block = Synth::colour8(16, 16, "RGB", &[RED; 256]);
    let jpeg = png(
        &block.object(),
        RenderOptions {
            format: OutputFormat::Jpeg,
            ..Default::default()
        },
    );
    let [r, g, b] = jpeg.to_rgb8().get_pixel(8, 8).0;
    assert!(r > 200 && g < 50 && b < 50, "({r},{g},{b})");
}

#[test]
fn ybr_full_is_converted_to_rgb() {
    // Red, green and blue in YCbCr (BT.601 full range).
    let ybr = [[76, 85, 255], [150, 44, 21], [29, 255, 107]];
    let s = Synth::colour8(1, 3, "YBR_FULL", &ybr);
    let rgb = png(&s.object(), RenderOptions::default()).to_rgb8();
    for (x, want) in [RED, GREEN, BLUE].iter().enumerate() {
        let got = rgb.get_pixel(x as u32, 0).0;
        for c in 0..3 {
            assert!(
                (i16::from(got[c]) - i16::from(want[c])).abs() <= 3,
                "pixel {x}: {got:?} vs {want:?}"
            );
        }
    }
}

/// A 64×32 image: left half black, right half white.
fn halves() -> Synth {
    let px: Vec<u8> = (0..32 * 64)
        .map(|i| if i % 64 < 32 { 0 } else { 255 })
        .collect();
    Synth {
        window: Some((127.5, 256.0)),
        ..Synth::mono8(32, 64, &px)
    }
}

#[test]
fn viewport_scales_to_fit_keeping_the_aspect_ratio() {
    let obj = halves().object();
    for (vw, vh, want) in [
        (128, 128, (128, 64)),
        (16, 16, (16, 8)),
        (32, 100, (32, 16)),
        (64, 32, (64, 32)),
    ] {
        let img = png(
            &obj,
            RenderOptions {
                viewport: Some(Viewport::fit(vw, vh)),
                ..Default::default()
            },
        );
        assert_eq!(img.dimensions(), want, "viewport {vw}x{vh}");
    }
}

#[test]
fn viewport_source_region_crops_and_flips() {
    let obj = halves().object();
    // The right half only: all white.
    let img = png(
        &obj,
        RenderOptions {
            viewport: Some(Viewport::parse("32,32,32,0,32,32").unwrap()),
            ..Default::default()
        },
    );
    assert_eq!(img.dimensions(), (32, 32));
    assert!(greys(&img).iter().all(|g| *g == 255));
    // Whole width with a negative extent: flipped, white on the left.
    let img = png(
        &obj,
        RenderOptions {
            viewport: Some(Viewport::parse("64,32,64,0,-64,32").unwrap()),
            ..Default::default()
        },
    );
    let g = img.to_luma8();
    assert_eq!((g.get_pixel(0, 0)[0], g.get_pixel(63, 0)[0]), (255, 0));
    // A region beyond the image is the caller's error.
    let e = render(
        &obj,
        &RenderOptions {
            viewport: Some(Viewport::parse("10,10,100,100,5,5").unwrap()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.is_bad_request(), "{e}");
}

#[test]
fn jpeg_quality_changes_the_bytes() {
    let obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&yilian_fixtures::instance_bytes(&yilian_fixtures::InstanceSpec::ct(1))[128..])
        .unwrap();
    let at = |quality| {
        render(
            &obj,
            &RenderOptions {
                format: OutputFormat::Jpeg,
                quality,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (low, high) = (at(10), at(100));
    assert_eq!(&low[..2], &[0xFF, 0xD8]);
    assert!(low.len() < high.len(), "{} vs {}", low.len(), high.len());
}

/// A 16×16 12-bit CT-like frame with structure, for codec round trips.
fn ct_square(frames: u32) -> Synth {
    let stored: Vec<i32> = (0..frames * 256)
        .map(|i| ((i * 37 + (i / 16) * 11 + i / 256 * 500) % 4096) as i32)
        .collect();
    Synth {
        bits_stored: 12,
        rescale: Some((1.0, -1024.0)),
        window: Some((40.0, 400.0)),
        ..Synth::mono16(16, 16, &stored)
    }
}

fn pixels_of(obj: &dicom_object::DefaultDicomObject, frame: u32) -> Vec<u8> {
    greys(&png(
        obj,
        RenderOptions {
            frame,
            window: Some(Window::linear(1024.0, 4096.0)),
            ..Default::default()
        },
    ))
}

/// Writes and re-reads the object, so the test sees what a stored file holds.
fn reread(obj: &dicom_object::DefaultDicomObject) -> dicom_object::DefaultDicomObject {
    let mut bytes = Vec::new();
    obj.write_all(&mut bytes).unwrap();
    dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&bytes[128..])
        .unwrap()
}

#[test]
fn lossless_encodings_render_exactly_like_the_original() {
    let original = ct_square(2).object();
    for ts in [
        entries::JPEG_LS_LOSSLESS_IMAGE_COMPRESSION.erased(),
        entries::DEFLATED_IMAGE_FRAME_COMPRESSION.erased(),
        entries::ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        entries::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    ] {
        let mut obj = original.clone();
        obj.transcode(&ts).unwrap();
        let obj = reread(&obj);
        assert_eq!(obj.meta().transfer_syntax(), ts.uid());
        for frame in 0..2 {
            assert_eq!(
                pixels_of(&obj, frame),
                pixels_of(&original, frame),
                "{} frame {frame}",
                ts.name()
            );
        }
        assert_eq!(
            render(&obj, &RenderOptions::default()).unwrap(),
            render(&original, &RenderOptions::default()).unwrap(),
            "{}",
            ts.name()
        );
    }
}

#[test]
fn jpeg_baseline_renders_close_to_the_original() {
    let px: Vec<u8> = (0..32 * 32).map(|i| ((i % 32) * 8) as u8).collect();
    let original = Synth {
        window: Some((127.5, 256.0)),
        ..Synth::mono8(32, 32, &px)
    }
    .object();
    let mut obj = original.clone();
    obj.transcode(&entries::JPEG_BASELINE.erased()).unwrap();
    let obj = reread(&obj);
    let (a, b) = (
        greys(&png(&obj, RenderOptions::default())),
        greys(&png(&original, RenderOptions::default())),
    );
    let mean_err: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .sum::<f64>()
        / a.len() as f64;
    assert!(mean_err < 4.0, "mean error {mean_err}");
}

#[test]
fn malformed_pixel_data_is_an_error_not_a_panic() {
    // Pixel data shorter than rows × columns × 2.
    let s = Synth {
        pixels: vec![0; 10],
        ..Synth::mono16(8, 8, &[0; 64])
    };
    assert!(render(&s.object(), &RenderOptions::default()).is_err());
    // A VOI LUT of more bits than the image: dicom-pixeldata panics; we answer with an error.
    let s = Synth {
        bits_allocated: 8,
        bits_stored: 8,
        pixels: vec![0; 4],
        voi_lut: Some((0, 16, vec![65535; 256])),
        ..Synth::mono16(2, 2, &[0; 4])
    };
    let e = render(&s.object(), &RenderOptions::default()).unwrap_err();
    assert!(matches!(e, RenderError::Decode(_)), "{e}");
}

#[test]
fn unsupported_transfer_syntaxes_are_named() {
    let mut obj = ct_row().object();
    obj.meta_mut()
        .set_transfer_syntax(&entries::MPEG2_MAIN_PROFILE_MAIN_LEVEL);
    let e = render(&obj, &RenderOptions::default()).unwrap_err();
    assert!(!e.is_bad_request());
    assert!(e.to_string().contains("1.2.840.10008.1.2.4.100"), "{e}");
}

mod external;
