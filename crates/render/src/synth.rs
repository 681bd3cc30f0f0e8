//! Test-only: synthetic image instances with exactly the pixel module a test needs (bit depth,
//! signedness, photometric interpretation, frames, rescale, window, VOI LUT Sequence).

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject};

#[derive(Clone, Debug)]
pub struct Synth {
    pub rows: u16,
    pub columns: u16,
    pub frames: u32,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub photometric: &'static str,
    pub samples: u16,
    pub planar: u16,
    pub rescale: Option<(f64, f64)>,
    pub window: Option<(f64, f64)>,
    /// (first mapped value, LUT bits, entries)
    pub voi_lut: Option<(i32, u16, Vec<u16>)>,
    /// Raw samples, little endian, frame after frame.
    pub pixels: Vec<u8>,
}

impl Synth {
    /// 16-bit monochrome from stored values, row-major; signed when any value is negative.
    pub fn mono16(rows: u16, columns: u16, stored: &[i32]) -> Self {
        let signed = stored.iter().any(|v| *v < 0);
        let pixels = stored
            .iter()
            .flat_map(|v| {
                if signed {
                    (*v as i16).to_le_bytes()
                } else {
                    (*v as u16).to_le_bytes()
                }
            })
            .collect();
        Synth {
            rows,
            columns,
            frames: (stored.len() / (rows as usize * columns as usize)) as u32,
            bits_allocated: 16,
            bits_stored: 16,
            signed,
            photometric: "MONOCHROME2",
            samples: 1,
            planar: 0,
            rescale: None,
            window: None,
            voi_lut: None,
            pixels,
        }
    }

    /// 8-bit monochrome.
    pub fn mono8(rows: u16, columns: u16, stored: &[u8]) -> Self {
        Synth {
            bits_allocated: 8,
            bits_stored: 8,
            signed: false,
            pixels: stored.to_vec(),
            ..Synth::mono16(rows, columns, &vec![0; stored.len()])
        }
    }

    /// 8-bit colour, pixel-interleaved triplets (planar configuration 0).
    pub fn colour8(
        rows: u16,
        columns: u16,
        photometric: &'static str,
        triplets: &[[u8; 3]],
    ) -> Self {
        Synth {
            samples: 3,
            photometric,
            pixels: triplets.iter().flatten().copied().collect(),
            ..Synth::mono8(rows, columns, &vec![0; triplets.len()])
        }
    }

    pub fn object(&self) -> DefaultDicomObject {
        self.object_with_uid("2.25.4242")
    }

    pub fn object_with_uid(&self, sop: &str) -> DefaultDicomObject {
        let us = |t, v: u16| DataElement::new(t, VR::US, PrimitiveValue::from(v));
        let mut e = vec![
            DataElement::new(
                tags::SOP_CLASS_UID,
                VR::UI,
                uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
            ),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, sop),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.4243"),
            DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.4244"),
            DataElement::new(tags::MODALITY, VR::CS, "OT"),
            DataElement::new(tags::PATIENT_ID, VR::LO, "SYNTH"),
            us(tags::SAMPLES_PER_PIXEL, self.samples),
            DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, self.photometric),
            us(tags::ROWS, self.rows),
            us(tags::COLUMNS, self.columns),
            us(tags::BITS_ALLOCATED, self.bits_allocated),
            us(tags::BITS_STORED, self.bits_stored),
            us(tags::HIGH_BIT, self.bits_stored - 1),
            us(tags::PIXEL_REPRESENTATION, u16::from(self.signed)),
        ];
        if self.samples == 3 {
            e.push(us(tags::PLANAR_CONFIGURATION, self.planar));
        }
        if self.frames > 1 {
            e.push(DataElement::new(
                tags::NUMBER_OF_FRAMES,
                VR::IS,
                self.frames.to_string(),
            ));
        }
        if let Some((slope, intercept)) = self.rescale {
            e.push(DataElement::new(
                tags::RESCALE_SLOPE,
                VR::DS,
                slope.to_string(),
            ));
            e.push(DataElement::new(
                tags::RESCALE_INTERCEPT,
                VR::DS,
                intercept.to_string(),
            ));
        }
        if let Some((c, w)) = self.window {
            e.push(DataElement::new(tags::WINDOW_CENTER, VR::DS, c.to_string()));
            e.push(DataElement::new(tags::WINDOW_WIDTH, VR::DS, w.to_string()));
        }
        if let Some((first, bits, data)) = &self.voi_lut {
            let item = InMemDicomObject::from_element_iter([
                DataElement::new(
                    tags::LUT_DESCRIPTOR,
                    VR::US,
                    PrimitiveValue::U16(vec![data.len() as u16, *first as u16, *bits].into()),
                ),
                DataElement::new(
                    tags::LUT_DATA,
                    VR::OW,
                    PrimitiveValue::U16(data.clone().into()),
                ),
            ]);
            e.push(DataElement::new(
                tags::VOILUT_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ));
        }
        let pixel_vr = if self.bits_allocated > 8 {
            VR::OW
        } else {
            VR::OB
        };
        e.push(DataElement::new(
            tags::PIXEL_DATA,
            pixel_vr,
            PrimitiveValue::from(self.pixels.clone()),
        ));
        InMemDicomObject::from_element_iter(e)
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                    .implementation_class_uid("2.25.271828182845904523536"),
            )
            .unwrap()
    }
}
