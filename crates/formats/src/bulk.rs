//! Bulk data and frames out of a stored instance (WADO-RS `bulkdata` and `frames`): an element
//! named by its path, or one frame's pixel bytes — native frames sliced, compressed frames as the
//! encapsulated fragments, never decoded or transcoded.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BulkError {
    #[error("bulk data path {0:?} is malformed: use tags as 8 hex digits, items numbered from 1")]
    BadPath(String),
    #[error("the instance has no element at {0:?}")]
    Missing(String),
    #[error("the element at {0:?} has no binary value")]
    NotBinary(String),
    #[error("frame {frame} does not exist: the instance has {frames} frame(s)")]
    NoSuchFrame { frame: u32, frames: u32 },
    #[error("the instance has no pixel data")]
    NoPixels,
    #[error("the pixel data cannot be split into frames: {0}")]
    Unsplittable(&'static str),
}

/// The value of the element at `path` (`7FE00010`, `54000100/1/54001010`) as bytes.
pub fn element_bytes(obj: &DefaultDicomObject, path: &str) -> Result<Vec<u8>, BulkError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.is_empty() || parts.len().is_multiple_of(2) {
        return Err(BulkError::BadPath(path.into()));
    }
    let tag_of = |s: &str| -> Result<Tag, BulkError> {
        if s.len() != 8 {
            return Err(BulkError::BadPath(path.into()));
        }
        let g = u16::from_str_radix(&s[..4], 16).map_err(|_| BulkError::BadPath(path.into()))?;
        let e = u16::from_str_radix(&s[4..], 16).map_err(|_| BulkError::BadPath(path.into()))?;
        Ok(Tag(g, e))
    };
    let mut node: &InMemDicomObject = obj;
    let mut i = 0;
    while i + 1 < parts.len() {
        let tag = tag_of(parts[i])?;
        let idx: usize = parts[i + 1]
            .parse()
            .map_err(|_| BulkError::BadPath(path.into()))?;
        let elem = node
            .element_opt(tag)
            .ok()
            .flatten()
            .ok_or_else(|| BulkError::Missing(path.into()))?;
        let items = elem
            .items()
            .ok_or_else(|| BulkError::Missing(path.into()))?;
        node = idx
            .checked_sub(1)
            .and_then(|k| items.get(k))
            .ok_or_else(|| BulkError::Missing(path.into()))?;
        i += 2;
    }
    let tag = tag_of(parts[parts.len() - 1])?;
    let elem = node
        .element_opt(tag)
        .ok()
        .flatten()
        .ok_or_else(|| BulkError::Missing(path.into()))?;
    if let Some(frags) = elem.value().fragments() {
        return Ok(frags.concat());
    }
    elem.value()
        .to_bytes()
        .map(|b| b.into_owned())
        .map_err(|_| BulkError::NotBinary(path.into()))
}

/// The bytes of frame `frame` (1-based) and whether they are encapsulated (compressed).
pub fn frame_bytes(obj: &DefaultDicomObject, frame: u32) -> Result<(Vec<u8>, bool), BulkError> {
    let int = |t: Tag| -> Option<u64> {
        obj.element_opt(t)
            .ok()
            .flatten()
            .and_then(|e| e.to_int::<i64>().ok())
            .map(|v| v.max(0) as u64)
    };
    let frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u32;
    if frame == 0 || frame > frames {
        return Err(BulkError::NoSuchFrame { frame, frames });
    }
    let pixels = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or(BulkError::NoPixels)?;
    if let Some(frags) = pixels.value().fragments() {
        let k = (frame - 1) as usize;
        return if frames == 1 {
            Ok((frags.concat(), true))
        } else if frags.len() == frames as usize {
            Ok((frags[k].clone(), true))
        } else if let Some(offsets) = pixels
            .value()
            .offset_table()
            .filter(|o| o.len() == frames as usize)
        {
            // Several fragments per frame: the basic offset table says where each frame starts.
            let mut pos = 0u32;
            let mut out = Vec::new();
            for f in frags {
                let start = pos;
                pos = pos.saturating_add(f.len() as u32 + 8);
                let this = offsets.iter().rposition(|&o| o <= start).unwrap_or(0);
                if this == k {
                    out.extend_from_slice(f);
                }
            }
            Ok((out, true))
        } else {
            Err(BulkError::Unsplittable(
                "fragments do not map to frames and there is no offset table",
            ))
        };
    }
    let rows = int(tags::ROWS).unwrap_or(0);
    let cols = int(tags::COLUMNS).unwrap_or(0);
    let spp = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1);
    let bits = int(tags::BITS_ALLOCATED).unwrap_or(0);
    let bits_per_frame = rows * cols * spp * bits;
    if bits_per_frame == 0 || !bits_per_frame.is_multiple_of(8) {
        return Err(BulkError::Unsplittable(
            "frame size is not a whole number of bytes",
        ));
    }
    let size = (bits_per_frame / 8) as usize;
    let bytes = pixels.value().to_bytes().map_err(|_| BulkError::NoPixels)?;
    let start = (frame as usize - 1) * size;
    bytes
        .get(start..start + size)
        .map(|b| (b.to_vec(), false))
        .ok_or(BulkError::Unsplittable(
            "pixel data is shorter than its frames",
        ))
}

/// The media type of a compressed frame of this transfer syntax (PS3.18 Table 8.7.3-2).
pub fn frame_media_type(transfer_syntax: &str) -> &'static str {
    match transfer_syntax {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.5" => "image/x-dicom-rle",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_fixtures::{InstanceSpec, instance_bytes};

    #[test]
    fn native_frames_and_elements_come_out_bit_exact() {
        let bytes = instance_bytes(&InstanceSpec::ct(1));
        let obj = crate::dicom::open(&bytes).unwrap();
        let all = element_bytes(&obj, "7FE00010").unwrap();
        assert_eq!(all.len(), 64 * 64 * 2);
        let (f, compressed) = frame_bytes(&obj, 1).unwrap();
        assert!(!compressed);
        assert_eq!(f, all);
        assert_eq!(
            frame_bytes(&obj, 2),
            Err(BulkError::NoSuchFrame {
                frame: 2,
                frames: 1
            })
        );
        assert_eq!(
            element_bytes(&obj, "7FE0"),
            Err(BulkError::BadPath("7FE0".into()))
        );
        assert_eq!(
            element_bytes(&obj, "54000100/1/54001010"),
            Err(BulkError::Missing("54000100/1/54001010".into()))
        );
    }
}
