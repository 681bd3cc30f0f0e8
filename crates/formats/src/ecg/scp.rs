//! SCP-ECG (EN 1064 / ISO 11073-91064) files ↔ `EcgRecord`: CRC-checked sections, section 0
//! pointers, section 1 header tags, section 2 Huffman tables (the standard's default table),
//! section 3 lead definitions, section 6 rhythm data (difference encoding), sections 7 and 8
//! (global measurements and statements). Reference-beat subtraction (sections 4/5), bimodal
//! compression and custom Huffman tables are refused by name.

use yilian_domain::ecg::{
    EcgDevice, EcgRecord, EcgSourceFormat, EcgSubject, GlobalMeasurements, Lead, LeadTrace,
    LocalDateTime, MAX_LEADS, MAX_SAMPLES_PER_LEAD,
};

use super::EcgError;

const FORMAT: &str = "SCP-ECG";
const SECTION_HEADER: usize = 16;
/// Sections 7 and 8 write this for "not computed".
const UNDEFINED_INTERVAL: u16 = 29_999;
const UNDEFINED_AXIS: i16 = 999;
/// Section 2's table count that means "the default table of the standard".
const DEFAULT_TABLE: u16 = 19_999;

/// CRC-CCITT as SCP-ECG uses it: polynomial 0x1021, initial 0xFFFF, no reflection.
pub fn crc_ccitt(data: &[u8]) -> u16 {
    data.iter().fold(0xFFFF, |crc: u16, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The CRC of each byte value shifted through the register, one table look-up per byte.
const CRC_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// True when the bytes start like an SCP-ECG record: the record length field equals the byte count
/// and section 0's header follows.
pub(crate) fn looks_like_scp(bytes: &[u8]) -> bool {
    let (Some(len), Some(id)) = (le32(bytes, 2), le16(bytes, 8)) else {
        return false;
    };
    id == 0 && (len as usize == bytes.len() || bytes.get(16..22) == Some(b"SCPECG"))
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn truncated(what: impl Into<String>) -> EcgError {
    EcgError::Truncated {
        format: FORMAT,
        what: what.into(),
    }
}

fn scp(msg: impl Into<String>) -> EcgError {
    EcgError::Scp(msg.into())
}

/// A bounds-checked little-endian reader over one section's data.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], what: &'static str) -> Self {
        Reader { b, pos: 0, what }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], EcgError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| truncated(self.what))?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or_else(|| truncated(self.what))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, EcgError> {
        Ok(self.bytes(1)?.first().copied().unwrap_or(0))
    }
    fn u16(&mut self) -> Result<u16, EcgError> {
        let s = self.bytes(2)?;
        Ok(le16(s, 0).unwrap_or(0))
    }
    fn i16(&mut self) -> Result<i16, EcgError> {
        Ok(self.u16()? as i16)
    }
    fn u32(&mut self) -> Result<u32, EcgError> {
        let s = self.bytes(4)?;
        Ok(le32(s, 0).unwrap_or(0))
    }
    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }
}

/// The sections of a checked record, by id: their data after the 16-byte header.
struct Sections<'a> {
    found: Vec<(u16, &'a [u8])>,
}

impl<'a> Sections<'a> {
    fn get(&self, id: u16) -> Option<&'a [u8]> {
        self.found.iter().find(|(i, _)| *i == id).map(|(_, d)| *d)
    }
}

/// Checks the record CRC and length, walks section 0's pointers and checks every section's header
/// and CRC.
fn sections(bytes: &[u8]) -> Result<Sections<'_>, EcgError> {
    let stored = le16(bytes, 0).ok_or_else(|| truncated("the record header"))?;
    let declared = le32(bytes, 2).ok_or_else(|| truncated("the record header"))? as usize;
    if declared > bytes.len() {
        return Err(truncated(format!(
            "the record (it declares {declared} bytes, {} are present)",
            bytes.len()
        )));
    }
    if declared < 6 + SECTION_HEADER {
        return Err(scp(format!(
            "the record length {declared} is too short for section 0"
        )));
    }
    let record = bytes.get(..declared).unwrap_or(bytes);
    if declared != bytes.len() {
        return Err(scp(format!(
            "the record declares {declared} bytes but the file has {}",
            bytes.len()
        )));
    }
    let computed = crc_ccitt(record.get(2..).unwrap_or(&[]));
    if stored != computed {
        return Err(EcgError::BadCrc {
            part: "the whole record".into(),
            stored,
            computed,
        });
    }
    let s0 = section_at(record, 6, 0)?;
    let mut r = Reader::new(s0, "section 0 (pointers)");
    let mut found = vec![(0u16, s0)];
    while r.remaining() >= 10 {
        let id = r.u16()?;
        let len = r.u32()? as usize;
        let index = r.u32()? as usize;
        if id == 0 || len == 0 {
            continue;
        }
        if found.iter().any(|(i, _)| *i == id) {
            return Err(scp(format!("section {id} is listed twice in section 0")));
        }
        let at = index
            .checked_sub(1)
            .ok_or_else(|| scp(format!("section {id} has pointer index 0")))?;
        let data = section_at(record, at, id)?;
        if data.len() + SECTION_HEADER != len {
            return Err(scp(format!(
                "section {id} is {} bytes long but section 0 says {len}",
                data.len() + SECTION_HEADER
            )));
        }
        found.push((id, data));
    }
    Ok(Sections { found })
}

/// The data of the section starting at byte `at`, after checking its id, length and CRC.
fn section_at(record: &[u8], at: usize, id: u16) -> Result<&[u8], EcgError> {
    let head = record
        .get(at..at.saturating_add(SECTION_HEADER))
        .ok_or_else(|| truncated(format!("section {id} header")))?;
    let stored = le16(head, 0).unwrap_or(0);
    let found_id = le16(head, 2).unwrap_or(0);
    let len = le32(head, 4).unwrap_or(0) as usize;
    if found_id != id {
        return Err(scp(format!(
            "section 0 points to section {id} at byte {} but section {found_id} is there",
            at + 1
        )));
    }
    if len < SECTION_HEADER {
        return Err(scp(format!("section {id} declares length {len}")));
    }
    let whole = record
        .get(at..at.saturating_add(len))
        .ok_or_else(|| truncated(format!("section {id}")))?;
    let computed = crc_ccitt(whole.get(2..).unwrap_or(&[]));
    if stored != computed {
        return Err(EcgError::BadCrc {
            part: format!("section {id}"),
            stored,
            computed,
        });
    }
    Ok(whole.get(SECTION_HEADER..).unwrap_or(&[]))
}

/// Parses an SCP-ECG record.
pub fn parse(bytes: &[u8]) -> Result<EcgRecord, EcgError> {
    let s = sections(bytes)?;
    let header = s.get(1).map(header_tags).transpose()?.unwrap_or_default();

    let s3 = s.get(3).ok_or(EcgError::Missing {
        format: FORMAT,
        what: "section 3 (lead definitions)",
    })?;
    let leads = lead_definitions(s3)?;
    if leads.reference_subtracted {
        return Err(EcgError::Unsupported {
            format: FORMAT,
            feature: "reference beat subtraction (sections 4 and 5)".into(),
        });
    }
    let huffman = match s.get(2) {
        None => Huffman::None,
        Some(s2) => {
            let n = Reader::new(s2, "section 2 (Huffman tables)").u16()?;
            match n {
                DEFAULT_TABLE => Huffman::Default,
                0 => Huffman::None,
                n => {
                    return Err(EcgError::Unsupported {
                        format: FORMAT,
                        feature: format!("custom Huffman tables ({n} in section 2)"),
                    });
                }
            }
        }
    };
    let s6 = s.get(6).ok_or(EcgError::Missing {
        format: FORMAT,
        what: "section 6 (rhythm data)",
    })?;
    let (sample_rate_hz, traces) = rhythm(s6, &leads, huffman)?;

    let device_measurements = s
        .get(7)
        .map(global_measurements)
        .transpose()?
        .unwrap_or_default();
    let interpretation = s.get(8).map(statements).transpose()?.unwrap_or_default();

    let record = EcgRecord {
        source: EcgSourceFormat::ScpEcg,
        sample_rate_hz,
        leads: traces,
        acquired_at: header.acquired_at,
        device: header.device,
        subject: header.subject,
        device_measurements,
        interpretation,
    };
    record.validate()?;
    Ok(record)
}

#[derive(Default)]
struct Header {
    subject: EcgSubject,
    device: EcgDevice,
    acquired_at: Option<LocalDateTime>,
}

fn cstr(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(b.get(..end).unwrap_or(&[]))
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// Section 1: tag (1 byte), length (2 bytes), value; tag 255 ends the list.
fn header_tags(data: &[u8]) -> Result<Header, EcgError> {
    let mut h = Header::default();
    let mut r = Reader::new(data, "section 1 (header)");
    let (mut last, mut first) = (None, None);
    let (mut date, mut time) = (None, None);
    while r.remaining() >= 3 {
        let tag = r.u8()?;
        let len = r.u16()? as usize;
        if tag == 255 {
            break;
        }
        let v = r.bytes(len)?;
        match tag {
            0 => last = cstr(v),
            1 => first = cstr(v),
            2 => h.subject.patient_id = cstr(v),
            5 => {
                let y = le16(v, 0).unwrap_or(0);
                let (m, d) = (v.get(2).copied(), v.get(3).copied());
                if let (Some(m), Some(d)) = (m, d)
                    && LocalDateTime::new(y, m, d, 0, 0, 0).is_some()
                {
                    h.subject.birth_date = Some(format!("{y:04}{m:02}{d:02}"));
                }
            }
            8 => {
                h.subject.sex = match v.first() {
                    Some(1) => Some("M".into()),
                    Some(2) => Some("F".into()),
                    Some(9) => Some("O".into()),
                    _ => None,
                }
            }
            14 => h.device = machine_id(v),
            25 => date = Some(v),
            26 => time = Some(v),
            _ => {}
        }
    }
    h.subject.patient_name = match (last, first) {
        (None, None) => None,
        (l, None) => l,
        (l, Some(f)) => Some(format!("{}^{f}", l.unwrap_or_default())),
    };
    if let Some(d) = date {
        let y = le16(d, 0).unwrap_or(0);
        let t = time.unwrap_or(&[]);
        let at = |b: &[u8], i: usize| b.get(i).copied().unwrap_or(0);
        h.acquired_at = LocalDateTime::new(y, at(d, 2), at(d, 3), at(t, 0), at(t, 1), at(t, 2));
    }
    Ok(h)
}

/// Tag 14 (acquiring device): fixed fields, then length-prefixed and NUL-terminated strings.
fn machine_id(v: &[u8]) -> EcgDevice {
    // 2+2+2 ids, device type, manufacturer code, then 6 bytes of model description.
    let mut dev = EcgDevice {
        model: v.get(8..14).and_then(cstr),
        ..EcgDevice::default()
    };
    // protocol, compatibility, language, capabilities, mains frequency, 16 reserved bytes.
    let Some(rest) = v.get(35..) else {
        return dev;
    };
    let Some((&prog_len, rest)) = rest.split_first() else {
        return dev;
    };
    let Some(rest) = rest.get(prog_len as usize..) else {
        return dev;
    };
    let mut strings = rest.split(|&c| c == 0).map(cstr);
    dev.serial_number = strings.next().flatten();
    dev.software_version = strings.next().flatten();
    let _scp_implementation = strings.next();
    dev.manufacturer = strings.next().flatten();
    dev
}

struct LeadDefs {
    reference_subtracted: bool,
    leads: Vec<(Lead, usize)>,
}

/// Section 3: lead count, flags, then start/end sample numbers (1-based) and id per lead.
fn lead_definitions(data: &[u8]) -> Result<LeadDefs, EcgError> {
    let mut r = Reader::new(data, "section 3 (lead definitions)");
    let n = r.u8()? as usize;
    let flags = r.u8()?;
    if n == 0 {
        return Err(scp("section 3 defines no leads"));
    }
    if n > MAX_LEADS {
        return Err(scp(format!(
            "section 3 defines {n} leads; at most {MAX_LEADS} are accepted"
        )));
    }
    let mut leads = Vec::with_capacity(n);
    for i in 0..n {
        let start = r.u32()?;
        let end = r.u32()?;
        let id = r.u8()?;
        if start == 0 || end < start {
            return Err(scp(format!(
                "lead {} has samples {start} to {end}, which is no range",
                i + 1
            )));
        }
        let count = (end - start) as u64 + 1;
        if count > MAX_SAMPLES_PER_LEAD as u64 {
            return Err(EcgError::TooManySamples {
                format: FORMAT,
                count,
            });
        }
        leads.push((Lead::from_number(u16::from(id), None), count as usize));
    }
    Ok(LeadDefs {
        reference_subtracted: flags & 1 != 0,
        leads,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Huffman {
    None,
    Default,
}

/// Section 6: amplitude multiplier (nV), sample interval (µs), difference encoding, bimodal flag,
/// bytes per lead, then each lead's encoded data.
fn rhythm(
    data: &[u8],
    defs: &LeadDefs,
    huffman: Huffman,
) -> Result<(f64, Vec<LeadTrace>), EcgError> {
    let mut r = Reader::new(data, "section 6 (rhythm data)");
    let multiplier_nv = r.u16()?;
    let interval_us = r.u16()?;
    let encoding = r.u8()?;
    let bimodal = r.u8()?;
    if multiplier_nv == 0 {
        return Err(EcgError::Invalid {
            format: FORMAT,
            what: "amplitude value multiplier (section 6)",
            value: "0".into(),
        });
    }
    if interval_us == 0 {
        return Err(EcgError::Invalid {
            format: FORMAT,
            what: "sample time interval (section 6)",
            value: "0".into(),
        });
    }
    if bimodal != 0 {
        return Err(EcgError::Unsupported {
            format: FORMAT,
            feature: "bimodal compression (section 6)".into(),
        });
    }
    if encoding > 2 {
        return Err(EcgError::Invalid {
            format: FORMAT,
            what: "difference data used (section 6)",
            value: encoding.to_string(),
        });
    }
    let lengths = (0..defs.leads.len())
        .map(|_| r.u16().map(usize::from))
        .collect::<Result<Vec<_>, _>>()?;
    let expected = defs.leads.first().map_or(0, |(_, n)| *n);
    let mut traces = Vec::with_capacity(defs.leads.len());
    for ((lead, count), len) in defs.leads.iter().zip(lengths) {
        if *count != expected {
            return Err(scp(format!(
                "lead {lead} has {count} samples but the first lead has {expected}; leads of unequal length are not supported"
            )));
        }
        let bytes = r.bytes(len).map_err(|_| {
            truncated(format!(
                "section 6 data of lead {lead} ({len} bytes declared)"
            ))
        })?;
        let raw = match huffman {
            Huffman::Default => decode_default(bytes, *count)
                .ok_or_else(|| truncated(format!("the Huffman-coded data of lead {lead}")))?,
            Huffman::None => {
                if bytes.len() < count * 2 {
                    return Err(truncated(format!("the data of lead {lead}")));
                }
                bytes
                    .chunks_exact(2)
                    .take(*count)
                    .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
                    .collect()
            }
        };
        let values = undifference(raw, encoding)
            .ok_or_else(|| scp(format!("lead {lead}: reconstructed samples overflow")))?;
        let scale = f64::from(multiplier_nv) / 1000.0;
        traces.push(LeadTrace {
            lead: lead.clone(),
            samples_uv: values.iter().map(|&v| (v as f64 * scale) as f32).collect(),
        });
    }
    Ok((
        super::aecg::tidy_rate(1_000_000.0 / f64::from(interval_us)),
        traces,
    ))
}

/// Reverses first (1) or second (2) differences; the first one or two values are stored as is.
fn undifference(mut d: Vec<i64>, encoding: u8) -> Option<Vec<i64>> {
    match encoding {
        1 => {
            for i in 1..d.len() {
                d[i] = d[i].checked_add(d[i - 1])?;
            }
        }
        2 => {
            for i in 2..d.len() {
                d[i] = d[i]
                    .checked_add(d[i - 1].checked_mul(2)?)?
                    .checked_sub(d[i - 2])?;
                // Real samples are far below this; anything above is corrupt data, not an ECG.
                if d[i].abs() > i64::from(i32::MAX) {
                    return None;
                }
            }
        }
        _ => {}
    }
    Some(d)
}

/// MSB-first bit reader.
struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u8> {
        let byte = *self.b.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(bit)
    }
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Some(v)
    }
}

/// Decodes `count` values with the standard's default Huffman table: `0` is 0; a run of k ones
/// (1 ≤ k ≤ 8) then 0 then a sign bit is ±k; nine ones then 0 escapes an 8-bit value, ten ones a
/// 16-bit value (both two's complement). `None` when the data runs out first.
fn decode_default(bytes: &[u8], count: usize) -> Option<Vec<i64>> {
    let mut bits = Bits { b: bytes, pos: 0 };
    // Every value takes at least one bit: a lead cannot claim more values than it has bits.
    if count > bytes.len().saturating_mul(8) {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let mut ones = 0u32;
        while ones < 10 && bits.bit()? == 1 {
            ones += 1;
        }
        let v = match ones {
            0 => 0,
            1..=8 => {
                let k = i64::from(ones);
                if bits.bit()? == 0 { k } else { -k }
            }
            9 => i64::from(bits.bits(8)? as u8 as i8),
            _ => i64::from(bits.bits(16)? as u16 as i16),
        };
        out.push(v);
    }
    Some(out)
}

/// Section 7: RR/PP, then one measurement block per reference beat type (onsets/offsets and axes),
/// then (v2) pacemaker data, QRS types and the extra global measurements (rates, QTc).
fn global_measurements(data: &[u8]) -> Result<GlobalMeasurements, EcgError> {
    let mut r = Reader::new(data, "section 7 (global measurements)");
    let blocks = r.u8()?;
    let spikes = r.u8()?;
    let interval = |v: u16| (v != UNDEFINED_INTERVAL && v != 0).then_some(f64::from(v));
    let mut m = GlobalMeasurements {
        rr_ms: interval(r.u16()?),
        ..GlobalMeasurements::default()
    };
    let _pp = r.u16()?;
    if blocks >= 1 {
        let p_on = r.u16()?;
        let _p_off = r.u16()?;
        let qrs_on = r.u16()?;
        let qrs_off = r.u16()?;
        let t_off = r.u16()?;
        let axis = |v: i16| (v != UNDEFINED_AXIS).then_some(f64::from(v));
        m.p_axis_deg = axis(r.i16()?);
        m.qrs_axis_deg = axis(r.i16()?);
        m.t_axis_deg = axis(r.i16()?);
        let known = |v: u16| v != UNDEFINED_INTERVAL;
        if known(qrs_on) {
            if known(p_on) && p_on <= qrs_on {
                m.pr_ms = Some(f64::from(qrs_on - p_on));
            }
            if known(qrs_off) && qrs_off >= qrs_on {
                m.qrs_ms = Some(f64::from(qrs_off - qrs_on));
            }
            if known(t_off) && t_off >= qrs_on {
                m.qt_ms = Some(f64::from(t_off - qrs_on));
            }
        }
        // Further reference beat types are per-type detail the model does not keep.
        r.bytes((usize::from(blocks) - 1) * 16)?;
    }
    // The rest is optional in older files: stop quietly where the section ends.
    let rest = || -> Result<(Option<u16>, Option<u16>), EcgError> {
        let mut r2 = Reader {
            b: r.b,
            pos: r.pos,
            what: r.what,
        };
        r2.bytes(usize::from(spikes) * 4)?;
        r2.bytes(usize::from(spikes) * 6)?;
        let qrs_count = r2.u16()?;
        r2.bytes(usize::from(qrs_count))?;
        let vent_rate = r2.u16()?;
        let _atrial_rate = r2.u16()?;
        let qtc = r2.u16()?;
        Ok((Some(vent_rate), Some(qtc)))
    };
    if let Ok((rate, qtc)) = rest() {
        m.heart_rate_bpm = rate.and_then(interval);
        m.qtc_ms = qtc.and_then(interval);
    }
    Ok(m)
}

/// Section 8: confirmation flag, date, time, then numbered NUL-terminated statements.
fn statements(data: &[u8]) -> Result<Vec<String>, EcgError> {
    let mut r = Reader::new(data, "section 8 (statements)");
    r.bytes(1 + 4 + 3)?;
    let n = r.u8()?;
    let mut out = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let _seq = r.u8()?;
        let len = r.u16()?;
        if let Some(s) = cstr(r.bytes(usize::from(len))?) {
            out.push(s);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Writer

/// MSB-first bit writer.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    bits: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, n: u32) {
        for i in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.out.push(0);
            }
            if (value >> i) & 1 == 1
                && let Some(last) = self.out.last_mut()
            {
                *last |= 1 << (7 - self.bits % 8);
            }
            self.bits += 1;
        }
    }
}

fn encode_default(values: &[i64]) -> Vec<u8> {
    let mut w = BitWriter::default();
    for &v in values {
        match v {
            0 => w.put(0, 1),
            -8..=8 => {
                let k = v.unsigned_abs() as u32;
                // k ones, a zero, then the sign.
                w.put((1 << k) - 1, k);
                w.put(0, 1);
                w.put(u32::from(v < 0), 1);
            }
            -128..=127 => {
                w.put(0b11_1111_1110, 10);
                w.put(u32::from(v as i8 as u8), 8);
            }
            _ => {
                w.put(0b11_1111_1111, 10);
                w.put(u32::from(v.clamp(-32768, 32767) as i16 as u16), 16);
            }
        }
    }
    w.out
}

fn second_differences(q: &[i64]) -> Vec<i64> {
    (0..q.len())
        .map(|i| match i {
            0 | 1 => q[i],
            _ => q[i] - 2 * q[i - 1] + q[i - 2],
        })
        .collect()
}

fn section(id: u16, mut data: Vec<u8>) -> Vec<u8> {
    // Sections have an even length.
    if !data.len().is_multiple_of(2) {
        data.push(0);
    }
    let len = (SECTION_HEADER + data.len()) as u32;
    let mut s = Vec::with_capacity(len as usize);
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(&id.to_le_bytes());
    s.extend_from_slice(&len.to_le_bytes());
    s.push(20); // section version 2.0
    s.push(20); // protocol version 2.0
    if id == 0 {
        s.extend_from_slice(b"SCPECG");
    } else {
        s.extend_from_slice(&[0; 6]);
    }
    s.extend_from_slice(&data);
    let crc = crc_ccitt(&s[2..]);
    s[..2].copy_from_slice(&crc.to_le_bytes());
    s
}

fn tag(out: &mut Vec<u8>, t: u8, v: &[u8]) {
    out.push(t);
    out.extend_from_slice(&(v.len().min(u16::MAX as usize) as u16).to_le_bytes());
    out.extend_from_slice(v.get(..v.len().min(u16::MAX as usize)).unwrap_or(&[]));
}

fn text_value(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().filter(|&b| b != 0).take(60_000).collect();
    v.push(0);
    v
}

fn section1(record: &EcgRecord) -> Vec<u8> {
    let mut d = Vec::new();
    let s = &record.subject;
    if let Some(name) = &s.patient_name {
        let mut parts = name.splitn(2, '^');
        tag(&mut d, 0, &text_value(parts.next().unwrap_or("")));
        if let Some(first) = parts.next() {
            tag(&mut d, 1, &text_value(&first.replace('^', " ")));
        }
    }
    tag(
        &mut d,
        2,
        &text_value(s.patient_id.as_deref().unwrap_or("")),
    );
    if let Some(b) = s
        .birth_date
        .as_deref()
        .and_then(LocalDateTime::parse_compact)
    {
        let mut v = b.year.to_le_bytes().to_vec();
        v.extend_from_slice(&[b.month, b.day]);
        tag(&mut d, 5, &v);
    }
    if let Some(sex) = &s.sex {
        let code = match sex.as_str() {
            "M" => 1,
            "F" => 2,
            _ => 9,
        };
        tag(&mut d, 8, &[code]);
    }
    let dev = &record.device;
    let mut m = Vec::new();
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // institution, department, device ids
    m.push(0); // device type: cart
    m.push(255); // manufacturer code: other (named below)
    let mut model = [0u8; 6];
    for (slot, b) in model
        .iter_mut()
        .zip(dev.model.as_deref().unwrap_or("").bytes())
    {
        *slot = b;
    }
    m.extend_from_slice(&model);
    m.extend_from_slice(&[20, 0xA0, 0, 0, 1]); // protocol 2.0, level, language, capabilities, 50 Hz
    m.extend_from_slice(&[0; 16]);
    m.extend_from_slice(&[1, 0]); // analysing program revision: empty
    m.extend_from_slice(&text_value(dev.serial_number.as_deref().unwrap_or("")));
    m.extend_from_slice(&text_value(dev.software_version.as_deref().unwrap_or("")));
    m.extend_from_slice(&text_value("yilian"));
    m.extend_from_slice(&text_value(dev.manufacturer.as_deref().unwrap_or("")));
    tag(&mut d, 14, &m);
    if let Some(t) = record.acquired_at {
        let mut v = t.year.to_le_bytes().to_vec();
        v.extend_from_slice(&[t.month, t.day]);
        tag(&mut d, 25, &v);
        tag(&mut d, 26, &[t.hour, t.minute, t.second]);
    }
    tag(&mut d, 255, &[]);
    d
}

fn section7(m: &GlobalMeasurements) -> Vec<u8> {
    let ms = |v: Option<f64>| {
        v.filter(|v| v.is_finite() && *v >= 0.0 && *v < f64::from(UNDEFINED_INTERVAL))
            .map_or(UNDEFINED_INTERVAL, |v| v.round() as u16)
    };
    let axis = |v: Option<f64>| {
        v.filter(|v| v.is_finite() && v.abs() < 360.0)
            .map_or(UNDEFINED_AXIS, |v| v.round() as i16)
    };
    let mut d = vec![1u8, 0];
    d.extend_from_slice(&ms(m.rr_ms).to_le_bytes());
    d.extend_from_slice(&UNDEFINED_INTERVAL.to_le_bytes());
    // Fiducials relative to the reference beat: QRS onset at a fixed 400 ms so PR fits before it.
    let qrs_on: u16 = 400;
    let before = |v: Option<f64>| {
        v.filter(|v| v.is_finite() && (0.0..=400.0).contains(v))
            .map_or(UNDEFINED_INTERVAL, |v| qrs_on - v.round() as u16)
    };
    let after = |v: Option<f64>| {
        v.filter(|v| v.is_finite() && (0.0..20_000.0).contains(v))
            .map_or(UNDEFINED_INTERVAL, |v| qrs_on + v.round() as u16)
    };
    d.extend_from_slice(&before(m.pr_ms).to_le_bytes()); // P onset
    d.extend_from_slice(&UNDEFINED_INTERVAL.to_le_bytes()); // P offset
    d.extend_from_slice(&qrs_on.to_le_bytes());
    d.extend_from_slice(&after(m.qrs_ms).to_le_bytes());
    d.extend_from_slice(&after(m.qt_ms).to_le_bytes());
    d.extend_from_slice(&axis(m.p_axis_deg).to_le_bytes());
    d.extend_from_slice(&axis(m.qrs_axis_deg).to_le_bytes());
    d.extend_from_slice(&axis(m.t_axis_deg).to_le_bytes());
    d.extend_from_slice(&0u16.to_le_bytes()); // no QRS type list
    d.extend_from_slice(&ms(m.heart_rate_bpm).to_le_bytes());
    d.extend_from_slice(&UNDEFINED_INTERVAL.to_le_bytes()); // atrial rate
    d.extend_from_slice(&ms(m.qtc_ms).to_le_bytes());
    d.push(0); // QTc formula: unknown
    d.extend_from_slice(&0u16.to_le_bytes()); // no tagged fields
    d
}

fn section8(record: &EcgRecord) -> Vec<u8> {
    let mut d = vec![0u8];
    let t = record.acquired_at;
    d.extend_from_slice(&t.map_or(0, |t| t.year).to_le_bytes());
    d.extend_from_slice(&[
        t.map_or(0, |t| t.month),
        t.map_or(0, |t| t.day),
        t.map_or(0, |t| t.hour),
        t.map_or(0, |t| t.minute),
        t.map_or(0, |t| t.second),
    ]);
    let statements: Vec<&String> = record.interpretation.iter().take(255).collect();
    d.push(statements.len() as u8);
    for (i, s) in statements.iter().enumerate() {
        let v = text_value(s);
        let v = v.get(..v.len().min(u16::MAX as usize)).unwrap_or(&[]);
        d.push((i + 1) as u8);
        d.extend_from_slice(&(v.len() as u16).to_le_bytes());
        d.extend_from_slice(v);
    }
    d
}

/// The amplitude multiplier (nV per unit) and each lead's Huffman-coded second differences.
/// 1 µV per unit when every second difference fits the table's 16-bit escape; else the smallest
/// multiplier that keeps |sample| ≤ 8191 units, which bounds second differences to i16.
fn encode_leads(record: &EcgRecord, n: usize) -> (u16, Vec<Vec<u8>>) {
    let quantise = |mult: f64| -> Vec<Vec<i64>> {
        record
            .leads
            .iter()
            .map(|l| {
                let q: Vec<i64> = l
                    .samples_uv
                    .iter()
                    .take(n)
                    .map(|&v| (f64::from(v) * 1000.0 / mult).round().clamp(-1e12, 1e12) as i64)
                    .collect();
                second_differences(&q)
            })
            .collect()
    };
    let fits = |d: &[Vec<i64>]| d.iter().flatten().all(|&v| i16::try_from(v).is_ok());
    let mut mult = 1000u16;
    let mut diffs = quantise(1000.0);
    if !fits(&diffs) {
        let max = record
            .leads
            .iter()
            .flat_map(|l| l.samples_uv.iter())
            .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        mult = (max * 1000.0 / 8191.0).ceil().clamp(1000.0, 65_535.0) as u16;
        diffs = quantise(f64::from(mult))
            .into_iter()
            .map(|d| d.into_iter().map(|v| v.clamp(-32768, 32767)).collect())
            .collect();
    }
    (mult, diffs.iter().map(|d| encode_default(d)).collect())
}

/// Writes a record as an SCP-ECG (v2.0) file: sections 0, 1, 2 (the default Huffman table), 3, 6
/// (second differences, Huffman coded), 7 and 8 when the record has measurements or statements.
/// SCP-ECG counts each lead's bytes in 16 bits; a record too long for that is cut to the samples
/// that fit, so check `samples_per_lead` of the parsed result when writing very long records.
pub fn write(record: &EcgRecord) -> Vec<u8> {
    let leads: Vec<&LeadTrace> = record.leads.iter().take(MAX_LEADS.min(255)).collect();
    let mut n = record.samples_per_lead();
    let (mult, encoded) = loop {
        let (mult, enc) = encode_leads(record, n);
        let longest = enc.iter().map(Vec::len).max().unwrap_or(0);
        if longest <= usize::from(u16::MAX) || n == 0 {
            break (mult, enc);
        }
        n = n * usize::from(u16::MAX) / longest * 95 / 100;
    };

    let mut s3 = vec![
        leads.len() as u8,
        0b100 | ((leads.len().min(31) as u8) << 3),
    ];
    for l in &leads {
        s3.extend_from_slice(&1u32.to_le_bytes());
        s3.extend_from_slice(&(n as u32).to_le_bytes());
        s3.push(u8::try_from(l.lead.number()).unwrap_or(0));
    }
    let interval = (1_000_000.0 / record.sample_rate_hz)
        .round()
        .clamp(1.0, 65_535.0) as u16;
    let mut s6 = Vec::new();
    s6.extend_from_slice(&mult.to_le_bytes());
    s6.extend_from_slice(&interval.to_le_bytes());
    s6.push(2); // second differences
    s6.push(0); // no bimodal compression
    for e in encoded.iter().take(leads.len()) {
        s6.extend_from_slice(&(e.len() as u16).to_le_bytes());
    }
    for e in encoded.iter().take(leads.len()) {
        s6.extend_from_slice(e);
    }

    let mut body: Vec<(u16, Vec<u8>)> = vec![
        (1, section(1, section1(record))),
        (2, section(2, DEFAULT_TABLE.to_le_bytes().to_vec())),
        (3, section(3, s3)),
        (6, section(6, s6)),
    ];
    if !record.device_measurements.is_empty() {
        body.push((7, section(7, section7(&record.device_measurements))));
    }
    if !record.interpretation.is_empty() {
        body.push((8, section(8, section8(record))));
    }
    // Section 0 lists sections 0–11 (absent ones with length 0), so its size is fixed.
    let s0_len = SECTION_HEADER + 12 * 10;
    let mut pointers = Vec::with_capacity(12 * 10);
    let mut at = 6 + s0_len; // byte offset where the next section starts
    let mut offsets = Vec::new();
    for (_, s) in &body {
        offsets.push(at);
        at += s.len();
    }
    for id in 0u16..12 {
        let (len, index) = if id == 0 {
            (s0_len, 7)
        } else {
            body.iter()
                .zip(&offsets)
                .find(|((i, _), _)| *i == id)
                .map_or((0, 0), |((_, s), off)| (s.len(), off + 1))
        };
        pointers.extend_from_slice(&id.to_le_bytes());
        pointers.extend_from_slice(&(len as u32).to_le_bytes());
        pointers.extend_from_slice(&(index as u32).to_le_bytes());
    }
    let mut out = vec![0u8; 6];
    out.extend_from_slice(&section(0, pointers));
    for (_, s) in &body {
        out.extend_from_slice(s);
    }
    let total = out.len() as u32;
    out[2..6].copy_from_slice(&total.to_le_bytes());
    let crc = crc_ccitt(&out[2..]);
    out[..2].copy_from_slice(&crc.to_le_bytes());
    out
}
