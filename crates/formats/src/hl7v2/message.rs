//! The HL7 v2 message structure: character set (MSH-18), encoding characters (MSH-1, MSH-2), segments
//! split on `\r` (also `\n`, `\r\n`), fields, repetitions, components, subcomponents, and escape
//! sequences.
//!
//! Escapes: `\F\ \S\ \T\ \R\ \E\` (and `\P\` when MSH-2 has a truncation character) become the
//! delimiter; `\.br\` and `\.sp\` become a new line; `\H\`, `\N\` (highlighting) and the other
//! formatting commands (`\.fi\`, `\.in…\`, …) are dropped; `\Xhh…\` becomes the bytes decoded in the
//! message's character set. Anything else (`\Cxxyy\`, `\Zxx\`, unknown or unterminated sequences) is
//! kept literally, escape characters included, so nothing the sender wrote is lost.

use std::borrow::Cow;
use std::collections::HashMap;

use super::Hl7Error;

/// A character set named in MSH-18 (HL7 table 0211), decoded with `encoding_rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Charset {
    /// `UNICODE UTF-8`; also the HL7 default `ASCII` (a subset).
    Utf8,
    /// `8859/1` (decoded as windows-1252, its WHATWG superset).
    Latin1,
    /// `GB 18030-2000`, and `GBK`/`GB2312` which Chinese LIS often send (GB 18030 is their superset).
    Gb18030,
    /// `BIG-5`.
    Big5,
}

impl Charset {
    /// The charset an MSH-18 value names; `Ok(None)` when empty (the HL7 default).
    pub fn from_msh18(label: &str) -> Result<Option<Charset>, Hl7Error> {
        let norm: String = label
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '_' | '/' | '.'))
            .collect::<String>()
            .to_ascii_uppercase();
        Ok(Some(match norm.as_str() {
            "" => return Ok(None),
            "ASCII" | "USASCII" | "UNICODEUTF8" | "UTF8" => Charset::Utf8,
            "88591" | "ISO88591" | "LATIN1" => Charset::Latin1,
            "GB180302000" | "GB18030" | "GB180302005" | "GBK" | "GB2312" | "CP936" | "EUCCN" => {
                Charset::Gb18030
            }
            "BIG5" => Charset::Big5,
            _ => return Err(Hl7Error::UnsupportedCharset(label.to_string())),
        }))
    }

    /// The MSH-18 value this hub writes for the charset.
    pub fn msh18(self) -> &'static str {
        match self {
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Latin1 => "8859/1",
            Charset::Gb18030 => "GB 18030-2000",
            Charset::Big5 => "BIG-5",
        }
    }

    fn encoding(self) -> &'static encoding_rs::Encoding {
        match self {
            Charset::Utf8 => encoding_rs::UTF_8,
            Charset::Latin1 => encoding_rs::WINDOWS_1252,
            Charset::Gb18030 => encoding_rs::GB18030,
            Charset::Big5 => encoding_rs::BIG5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Charset::Utf8 => "UTF-8",
            Charset::Latin1 => "ISO 8859-1",
            Charset::Gb18030 => "GB 18030",
            Charset::Big5 => "Big5",
        }
    }

    /// Decodes text, refusing malformed bytes (no replacement characters).
    pub fn decode(self, bytes: &[u8]) -> Result<String, Hl7Error> {
        if self == Charset::Utf8 {
            return match std::str::from_utf8(bytes) {
                Ok(s) => Ok(s.to_string()),
                Err(e) => Err(Hl7Error::Undecodable {
                    charset: self.name(),
                    offset: e.valid_up_to(),
                }),
            };
        }
        let mut decoder = self.encoding().new_decoder_without_bom_handling();
        let mut out = String::with_capacity(bytes.len().saturating_mul(2));
        let mut read_total = 0;
        loop {
            let rest = bytes.get(read_total..).unwrap_or_default();
            if out.capacity() - out.len() < 16 {
                out.reserve(rest.len().saturating_mul(2) + 16);
            }
            let (result, read) = decoder.decode_to_string_without_replacement(rest, &mut out, true);
            read_total += read;
            match result {
                encoding_rs::DecoderResult::InputEmpty => return Ok(out),
                encoding_rs::DecoderResult::OutputFull => continue,
                encoding_rs::DecoderResult::Malformed(bad, after) => {
                    return Err(Hl7Error::Undecodable {
                        charset: self.name(),
                        offset: read_total.saturating_sub(usize::from(bad) + usize::from(after)),
                    });
                }
            }
        }
    }

    /// Encodes text (an ACK) in this charset. Characters the charset lacks (only possible for 8859/1
    /// and Big5) become numeric character references, as `encoding_rs` does.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            other => other.encoding().encode(text).0.into_owned(),
        }
    }
}

/// The encoding characters of a message (MSH-1 and MSH-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
    /// The v2.7 truncation character, when MSH-2 has a fifth character.
    pub truncation: Option<char>,
}

impl Delimiters {
    /// `|^~\&`, what this hub writes.
    pub const STANDARD: Delimiters = Delimiters {
        field: '|',
        component: '^',
        repetition: '~',
        escape: '\\',
        subcomponent: '&',
        truncation: None,
    };

    /// Reads MSH-1 and MSH-2: four or five distinct ASCII punctuation characters, none equal to the
    /// field separator.
    pub fn new(field: char, msh2: &str) -> Result<Self, Hl7Error> {
        let chars: Vec<char> = msh2.chars().collect();
        let bad = || Hl7Error::BadEncodingCharacters(format!("{field}{msh2}"));
        let (component, repetition, escape, subcomponent, truncation) = match chars.as_slice() {
            [c, r, e, s] => (*c, *r, *e, *s, None),
            [c, r, e, s, t] => (*c, *r, *e, *s, Some(*t)),
            _ => return Err(bad()),
        };
        let mut all = vec![field, component, repetition, escape, subcomponent];
        all.extend(truncation);
        if !all.iter().all(char::is_ascii_punctuation) {
            return Err(bad());
        }
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != all.len() {
            return Err(bad());
        }
        Ok(Delimiters {
            field,
            component,
            repetition,
            escape,
            subcomponent,
            truncation,
        })
    }

    /// MSH-2 as written: component, repetition, escape, subcomponent (and truncation).
    pub fn msh2(&self) -> String {
        let mut s: String = [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ]
        .iter()
        .collect();
        s.extend(self.truncation);
        s
    }

    /// The raw repetitions of a raw field (one empty repetition for an empty field).
    pub fn repetitions<'a>(&self, raw: &'a str) -> Vec<&'a str> {
        raw.split(self.repetition).collect()
    }

    /// The raw components of a raw repetition.
    pub fn components<'a>(&self, raw: &'a str) -> Vec<&'a str> {
        raw.split(self.component).collect()
    }

    /// The raw subcomponents of a raw component.
    pub fn subcomponents<'a>(&self, raw: &'a str) -> Vec<&'a str> {
        raw.split(self.subcomponent).collect()
    }

    /// Resolves escape sequences (see the module documentation).
    pub fn unescape<'a>(&self, raw: &'a str, charset: Charset) -> Cow<'a, str> {
        if !raw.contains(self.escape) {
            return Cow::Borrowed(raw);
        }
        let e = self.escape;
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(i) = rest.find(e) {
            out.push_str(rest.get(..i).unwrap_or_default());
            let after = rest.get(i + e.len_utf8()..).unwrap_or_default();
            let Some(j) = after.find(e) else {
                // Unterminated: keep the rest as written.
                out.push_str(rest.get(i..).unwrap_or_default());
                rest = "";
                break;
            };
            let seq = after.get(..j).unwrap_or_default();
            match seq {
                "F" => out.push(self.field),
                "S" => out.push(self.component),
                "T" => out.push(self.subcomponent),
                "R" => out.push(self.repetition),
                "E" => out.push(e),
                "P" if self.truncation.is_some() => out.extend(self.truncation),
                "H" | "N" => {}
                s if s == ".br" || s.starts_with(".sp") => out.push('\n'),
                s if s.starts_with('.')
                    && s.len() > 1
                    && [".fi", ".nf", ".in", ".ti", ".sk", ".ce"]
                        .iter()
                        .any(|p| s.starts_with(p)) => {}
                s if s.starts_with('X')
                    && hex_text(s.get(1..).unwrap_or_default(), charset).is_some() =>
                {
                    out.push_str(
                        &hex_text(s.get(1..).unwrap_or_default(), charset).unwrap_or_default(),
                    );
                }
                _ => {
                    out.push(e);
                    out.push_str(seq);
                    out.push(e);
                }
            }
            rest = after.get(j + e.len_utf8()..).unwrap_or_default();
        }
        out.push_str(rest);
        Cow::Owned(out)
    }
}

/// `\Xhhhh\` content: an even number (at least 2) of hex digits, decoded in the message's charset.
fn hex_text(hex: &str, charset: Charset) -> Option<String> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    charset.decode(&bytes?).ok()
}

/// Escapes text for a field written with `d` (the inverse of `unescape` for the plain delimiters);
/// new lines become `\.br\`.
pub fn escape(text: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let code = match c {
            c if c == d.escape => "E",
            c if c == d.field => "F",
            c if c == d.component => "S",
            c if c == d.subcomponent => "T",
            c if c == d.repetition => "R",
            c if Some(c) == d.truncation => "P",
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                ".br"
            }
            '\n' => ".br",
            c => {
                out.push(c);
                continue;
            }
        };
        out.push(d.escape);
        out.push_str(code);
        out.push(d.escape);
    }
    out
}

/// One segment: its name and raw fields, numbered as HL7 numbers them (for MSH, field 1 is the field
/// separator and field 2 the encoding characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub name: String,
    /// Position in the message, from 1 (MSH is 1).
    pub sequence: usize,
    /// Occurrence among the message's segments of this name, from 1.
    pub occurrence: usize,
    /// Index 0 is the name; index n is field n, raw (escapes unresolved).
    fields: Vec<String>,
    delimiters: Delimiters,
    charset: Charset,
}

impl Segment {
    /// The raw text of field `n` (`""` when absent).
    pub fn raw(&self, n: usize) -> &str {
        if n == 0 {
            return "";
        }
        self.fields.get(n).map_or("", String::as_str)
    }

    /// How many fields the segment has.
    pub fn field_count(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    /// The raw repetitions of field `n`; none when the field is empty. MSH-1 and MSH-2 are never split.
    pub fn repetitions(&self, n: usize) -> Vec<&str> {
        let raw = self.raw(n);
        if raw.is_empty() {
            return Vec::new();
        }
        if self.name == "MSH" && n <= 2 {
            return vec![raw];
        }
        self.delimiters.repetitions(raw)
    }

    /// Component `c` (from 1) of the first repetition of field `n`, unescaped; `None` when empty or
    /// the HL7 null `""`.
    pub fn text(&self, n: usize, c: usize) -> Option<String> {
        let rep = self.repetitions(n).into_iter().next()?;
        self.component_text(rep, c)
    }

    /// Component `c` (from 1) of a raw repetition, unescaped (subcomponents kept joined, as text).
    pub fn component_text(&self, raw_rep: &str, c: usize) -> Option<String> {
        let comps = self.delimiters.components(raw_rep);
        let raw = comps.get(c.checked_sub(1)?)?;
        self.value(raw)
    }

    /// Subcomponent `s` of component `c` of a raw repetition, unescaped.
    pub fn sub_text(&self, raw_rep: &str, c: usize, s: usize) -> Option<String> {
        let comps = self.delimiters.components(raw_rep);
        let comp = comps.get(c.checked_sub(1)?)?;
        let subs = self.delimiters.subcomponents(comp);
        self.value(subs.get(s.checked_sub(1)?)?)
    }

    /// Unescapes a raw piece of this segment; `None` when empty, blank or the HL7 null `""`.
    pub fn value(&self, raw: &str) -> Option<String> {
        let t = raw.trim();
        if t.is_empty() || t == "\"\"" {
            return None;
        }
        let text = self.delimiters.unescape(t, self.charset);
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }

    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }
}

/// A parsed message: decoded text split into segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub delimiters: Delimiters,
    pub charset: Charset,
    pub segments: Vec<Segment>,
}

/// Strips a UTF-8 byte-order mark and leading white space (some senders put a new line first).
fn trim_start(bytes: &[u8]) -> &[u8] {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = b
        .iter()
        .position(|x| !x.is_ascii_whitespace())
        .unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

/// MSH-1, MSH-2 and the first component of MSH-18, read from the first line before the charset is
/// known. The encoding characters are ASCII at fixed places; MSH-18 is read from the line decoded as
/// UTF-8 when it is valid UTF-8, else in the first multi-byte charset (GB 18030, Big5) that decodes it
/// and that its own MSH-18 names (their trail bytes may equal `|` or `^`, so a byte-wise split could
/// misplace MSH-18), else byte by byte (as 8859/1).
fn sniff_msh(bytes: &[u8]) -> Result<(Delimiters, String), Hl7Error> {
    let b = trim_start(bytes);
    if b.is_empty() {
        return Err(Hl7Error::Empty);
    }
    let line_end = b
        .iter()
        .position(|&x| x == b'\r' || x == b'\n')
        .unwrap_or(b.len());
    let line = b.get(..line_end).unwrap_or_default();
    let (Some(b"MSH"), Some(&sep)) = (line.get(..3), line.get(3)) else {
        return Err(Hl7Error::NoMsh);
    };
    if !sep.is_ascii_punctuation() {
        return Err(Hl7Error::BadEncodingCharacters(
            String::from_utf8_lossy(line.get(3..8).unwrap_or(line.get(3..).unwrap_or_default()))
                .into_owned(),
        ));
    }
    let msh2 = line
        .get(4..)
        .unwrap_or_default()
        .split(|&x| x == sep)
        .next()
        .unwrap_or_default();
    let msh2 = std::str::from_utf8(msh2)
        .map_err(|_| Hl7Error::BadEncodingCharacters(String::from_utf8_lossy(msh2).into_owned()))?;
    let d = Delimiters::new(char::from(sep), msh2)?;
    // MSH-n is the (n - 1)th piece of the line split on the field separator; MSH-18's first
    // repetition, first component.
    let label_in = |text: &str| -> String {
        text.split(d.field)
            .nth(17)
            .and_then(|f| f.split(d.repetition).next())
            .and_then(|r| r.split(d.component).next())
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    if let Ok(text) = std::str::from_utf8(line) {
        return Ok((d, label_in(text)));
    }
    for cs in [Charset::Gb18030, Charset::Big5] {
        if let Ok(text) = cs.decode(line) {
            let label = label_in(&text);
            if Charset::from_msh18(&label) == Ok(Some(cs)) {
                return Ok((d, label));
            }
        }
    }
    let text = Charset::Latin1.decode(line).unwrap_or_default();
    Ok((d, label_in(&text)))
}

impl Message {
    /// Decodes and splits a message. `fallback` is the charset to use when MSH-18 is empty and the bytes
    /// are not UTF-8 (for LIS that send GBK without saying so); `None` refuses such messages.
    pub fn parse(bytes: &[u8], fallback: Option<Charset>) -> Result<Message, Hl7Error> {
        let (delimiters, msh18) = sniff_msh(bytes)?;
        let body = trim_start(bytes);
        let (charset, text) = match Charset::from_msh18(&msh18)? {
            Some(cs) => (cs, cs.decode(body)?),
            None => match (Charset::Utf8.decode(body), fallback) {
                (Ok(t), _) => (Charset::Utf8, t),
                (Err(_), Some(cs)) => (cs, cs.decode(body)?),
                (Err(e), None) => return Err(e),
            },
        };
        let mut segments = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for line in text.split(['\r', '\n']) {
            if line.trim().is_empty() {
                continue;
            }
            let sequence = segments.len() + 1;
            let mut seg = split_segment(line, sequence, delimiters, charset)?;
            let count = seen.entry(seg.name.clone()).or_insert(0);
            *count += 1;
            seg.occurrence = *count;
            segments.push(seg);
        }
        Ok(Message {
            delimiters,
            charset,
            segments,
        })
    }

    /// The segments with this name.
    pub fn segments_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.name == name)
    }

    /// The MSH segment (always first in a parsed message).
    pub fn msh(&self) -> Option<&Segment> {
        self.segments.first().filter(|s| s.name == "MSH")
    }
}

fn split_segment(
    line: &str,
    sequence: usize,
    d: Delimiters,
    charset: Charset,
) -> Result<Segment, Hl7Error> {
    let name = line.get(..3).unwrap_or(line);
    let valid_name = name.len() == 3
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && name.bytes().next().is_some_and(|b| b.is_ascii_uppercase());
    let rest = line.get(3..).unwrap_or_default();
    if !valid_name || !(rest.is_empty() || rest.starts_with(d.field)) {
        let shown: String = line
            .chars()
            .take(3)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '?' })
            .collect();
        return Err(Hl7Error::SegmentSequence {
            segment: shown,
            sequence,
            occurrence: 1,
            reason: "not a segment (a segment starts with a three-character name and a field separator)",
        });
    }
    let mut fields = vec![name.to_string()];
    let body = rest.get(d.field.len_utf8()..).unwrap_or_default();
    if name == "MSH" {
        if sequence != 1 {
            return Err(Hl7Error::SegmentSequence {
                segment: "MSH".into(),
                sequence,
                occurrence: 2,
                reason: "a second MSH: send one message per frame",
            });
        }
        fields.push(d.field.to_string());
        fields.extend(body.split(d.field).map(str::to_string));
    } else {
        if sequence == 1 {
            return Err(Hl7Error::NoMsh);
        }
        if !rest.is_empty() {
            fields.extend(body.split(d.field).map(str::to_string));
        }
    }
    Ok(Segment {
        name: name.to_string(),
        sequence,
        occurrence: 1,
        fields,
        delimiters: d,
        charset,
    })
}

/// An HD (hierarchic designator) value: namespace ID, universal ID, universal ID type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hd {
    pub namespace_id: String,
    pub universal_id: String,
    pub universal_id_type: String,
}

impl Hd {
    fn from_field(seg: &Segment, n: usize) -> Hd {
        let rep = seg.repetitions(n).into_iter().next().unwrap_or_default();
        let part = |c| seg.component_text(rep, c).unwrap_or_default();
        Hd {
            namespace_id: part(1),
            universal_id: part(2),
            universal_id_type: part(3),
        }
    }

    /// The namespace ID, else the universal ID; `None` when both are empty.
    pub fn display(&self) -> Option<&str> {
        [&self.namespace_id, &self.universal_id]
            .into_iter()
            .find(|s| !s.is_empty())
            .map(String::as_str)
    }

    /// The HD as a field written with `d`.
    pub fn to_field(&self, d: &Delimiters) -> String {
        let parts = [
            escape(&self.namespace_id, d),
            escape(&self.universal_id, d),
            escape(&self.universal_id_type, d),
        ];
        let mut s = parts.join(&d.component.to_string());
        while s.ends_with(d.component) {
            s.pop();
        }
        s
    }
}

/// What an ACK needs from the original MSH, and what a listener logs about a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageHeader {
    /// MSH-3.
    pub sending_application: Hd,
    /// MSH-4: the performing lab of an ORU.
    pub sending_facility: Hd,
    /// MSH-5.
    pub receiving_application: Hd,
    /// MSH-6.
    pub receiving_facility: Hd,
    /// MSH-9 components joined with `^` (`ORU^R01^ORU_R01`).
    pub message_type: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-11 first component (`P`, `T`, `D`).
    pub processing_id: String,
    /// MSH-12 first component.
    pub version: String,
    /// MSH-18 as sent (first repetition, first component).
    pub charset_label: Option<String>,
    /// The charset the message was decoded with (and its ACK should be encoded with).
    pub charset: Option<Charset>,
}

impl MessageHeader {
    /// The header of a parsed message.
    pub fn from_message(msg: &Message) -> MessageHeader {
        let Some(msh) = msg.msh() else {
            return MessageHeader::default();
        };
        let mut header = header_of(msh);
        header.charset = Some(msg.charset);
        header
    }

    /// Best effort, for answering any message, even one that cannot be parsed: the MSH line's fields
    /// if the bytes start with `MSH` and usable encoding characters (undecodable bytes are replaced).
    /// `None` when not even that can be read.
    pub fn sniff(bytes: &[u8]) -> Option<MessageHeader> {
        let (d, msh18) = sniff_msh(bytes).ok()?;
        let charset = Charset::from_msh18(&msh18).ok().flatten();
        let body = trim_start(bytes);
        let end = body
            .iter()
            .position(|&x| x == b'\r' || x == b'\n')
            .unwrap_or(body.len());
        let line = body.get(..end).unwrap_or_default();
        let text = charset
            .and_then(|cs| cs.decode(line).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(line).into_owned());
        let seg = split_segment(&text, 1, d, charset.unwrap_or(Charset::Utf8)).ok()?;
        let mut header = header_of(&seg);
        header.charset = charset;
        Some(header)
    }
}

fn header_of(msh: &Segment) -> MessageHeader {
    let rep = msh.repetitions(9).into_iter().next().unwrap_or_default();
    let message_type = msh
        .delimiters
        .components(rep)
        .iter()
        .map(|c| msh.value(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("^")
        .trim_end_matches('^')
        .to_string();
    MessageHeader {
        sending_application: Hd::from_field(msh, 3),
        sending_facility: Hd::from_field(msh, 4),
        receiving_application: Hd::from_field(msh, 5),
        receiving_facility: Hd::from_field(msh, 6),
        message_type,
        control_id: msh.text(10, 1).unwrap_or_default(),
        processing_id: msh.text(11, 1).unwrap_or_default(),
        version: msh.text(12, 1).unwrap_or_default(),
        charset_label: msh.text(18, 1),
        charset: None,
    }
}
