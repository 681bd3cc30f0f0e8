//! A guard run before dicom-object parses untrusted bytes: walks element and item headers and
//! refuses any declared length that runs past the end of the input. dicom-parser reserves and
//! zero-fills a value's declared length before reading it, so without this a 16-byte upload that
//! declares a 2 GB element costs 2 GB of memory and seconds of CPU.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;

/// What follows an undefined-length (or defined-length SQ) header until its delimiter or end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    /// Items of a sequence; each item holds elements. `end` for a defined-length sequence.
    Sequence { end: Option<usize> },
    /// Encapsulated pixel data: items are opaque fragments.
    Fragments,
}

/// Checks a Part 10 body (starting at "DICM"). `Err` names the offending offset.
pub fn check(body: &[u8]) -> Result<(), String> {
    // File meta: always explicit VR little endian; find the group's end and the transfer syntax.
    let mut pos = 4usize;
    let mut ts = String::new();
    while pos + 8 <= body.len() && u16::from_le_bytes([body[pos], body[pos + 1]]) == 0x0002 {
        let (tag, vr, len, next) = header(body, pos, true, false)?;
        if len == UNDEFINED || next + len as usize > body.len() {
            return Err(format!(
                "file meta element {tag} at byte {pos} runs past the end"
            ));
        }
        if tag == Tag(0x0002, 0x0010) {
            ts = String::from_utf8_lossy(&body[next..next + len as usize])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        let _ = vr;
        pos = next + len as usize;
    }
    let (explicit, big) = match ts.as_str() {
        "1.2.840.10008.1.2" => (false, false),
        "1.2.840.10008.1.2.2" => (true, true),
        // Deflated: the data set is compressed; dicom-object inflates it (not checked here).
        "1.2.840.10008.1.2.1.99" => return Ok(()),
        _ => (true, false),
    };
    walk(body, pos, explicit, big)
}

fn u16_at(b: &[u8], p: usize, big: bool) -> u16 {
    let x = [b[p], b[p + 1]];
    if big {
        u16::from_be_bytes(x)
    } else {
        u16::from_le_bytes(x)
    }
}

fn u32_at(b: &[u8], p: usize, big: bool) -> u32 {
    let x = [b[p], b[p + 1], b[p + 2], b[p + 3]];
    if big {
        u32::from_be_bytes(x)
    } else {
        u32::from_le_bytes(x)
    }
}

/// Reads one header at `p`: tag, VR (from the stream or the dictionary), length, value offset.
fn header(b: &[u8], p: usize, explicit: bool, big: bool) -> Result<(Tag, VR, u32, usize), String> {
    if p + 8 > b.len() {
        return Err(format!("an element header at byte {p} is cut off"));
    }
    let tag = Tag(u16_at(b, p, big), u16_at(b, p + 2, big));
    if tag.group() == 0xFFFE || !explicit {
        let vr = if tag.group() == 0xFFFE {
            VR::UN
        } else {
            StandardDataDictionary
                .by_tag(tag)
                .map(|e| e.vr().relaxed())
                .unwrap_or(VR::UN)
        };
        return Ok((tag, vr, u32_at(b, p + 4, big), p + 8));
    }
    let vr = VR::from_binary([b[p + 4], b[p + 5]]).unwrap_or(VR::UN);
    match vr {
        VR::OB
        | VR::OD
        | VR::OF
        | VR::OL
        | VR::OV
        | VR::OW
        | VR::SQ
        | VR::SV
        | VR::UC
        | VR::UN
        | VR::UR
        | VR::UT
        | VR::UV => {
            if p + 12 > b.len() {
                return Err(format!("an element header at byte {p} is cut off"));
            }
            Ok((tag, vr, u32_at(b, p + 8, big), p + 12))
        }
        _ => Ok((tag, vr, u32::from(u16_at(b, p + 6, big)), p + 8)),
    }
}

fn walk(b: &[u8], mut pos: usize, explicit: bool, big: bool) -> Result<(), String> {
    let mut stack: Vec<Context> = Vec::new();
    while pos < b.len() {
        while let Some(Context::Sequence { end: Some(e) }) = stack.last() {
            if pos >= *e {
                stack.pop();
            } else {
                break;
            }
        }
        let (tag, vr, len, next) = header(b, pos, explicit, big)?;
        let fits = |len: u32| len == UNDEFINED || next.saturating_add(len as usize) <= b.len();
        if !fits(len) {
            return Err(format!(
                "element {tag} at byte {pos} declares {len} bytes but only {} follow",
                b.len().saturating_sub(next)
            ));
        }
        match (tag.group() == 0xFFFE, tag.element()) {
            (true, 0xE000) => match stack.last() {
                // A fragment: skip its bytes.
                Some(Context::Fragments) if len != UNDEFINED => pos = next + len as usize,
                Some(Context::Fragments) => {
                    return Err(format!("a fragment at byte {pos} has no length"));
                }
                // An item of a sequence: its elements follow.
                _ => pos = next,
            },
            (true, 0xE00D) => pos = next,
            (true, 0xE0DD) => {
                stack.pop();
                pos = next;
            }
            (true, _) => return Err(format!("unexpected delimiter {tag} at byte {pos}")),
            _ if len == UNDEFINED => {
                stack.push(
                    if vr == VR::SQ || (vr == VR::UN && tag != Tag(0x7FE0, 0x0010)) {
                        Context::Sequence { end: None }
                    } else {
                        Context::Fragments
                    },
                );
                pos = next;
            }
            _ if vr == VR::SQ => {
                stack.push(Context::Sequence {
                    end: Some(next + len as usize),
                });
                pos = next;
            }
            _ => pos = next + len as usize,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_fixtures::{InstanceSpec, instance_bytes};

    #[test]
    fn a_good_file_passes_and_a_lying_length_is_refused_at_once() {
        let good = instance_bytes(&InstanceSpec::ct(1));
        let body = &good[128..];
        check(body).unwrap();
        // Keep the file meta, then 16 bytes declaring a ~2 GB value.
        let meta_len = u32::from_le_bytes([body[12], body[13], body[14], body[15]]) as usize;
        let mut evil = body[..16 + meta_len].to_vec();
        evil.extend_from_slice(b"\x01\x02garbage-bytes!");
        let e = check(&evil).unwrap_err();
        assert!(e.contains("declares"), "{e}");
        let e = crate::dicom::parse_bytes(&evil).unwrap_err().to_string();
        assert!(e.contains("declares"), "{e}");
    }
}
