//! HL7 v3 Annotated ECG (aECG) XML ↔ `EcgRecord`: the RHYTHM series (else a representative beat),
//! its GLIST_TS time axis and one SLIST_PQ per lead, annotations as device measurements and
//! interpretation, subject and device. Parsed with roxmltree; DTDs (and so entity tricks) are refused.

use std::fmt::Write as _;

use roxmltree::{Document, Node, ParsingOptions};
use yilian_domain::ecg::{
    EcgDevice, EcgRecord, EcgSourceFormat, EcgSubject, GlobalMeasurements, Lead, LeadTrace,
    LocalDateTime, MAX_SAMPLES_PER_LEAD,
};

use super::{EcgError, Measure, microvolts_per};

const FORMAT: &str = "aECG";
/// XML nodes one document may hold: a 12-lead aECG has a few hundred; samples are text, not nodes.
const NODES_LIMIT: u32 = 1_000_000;
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// True when the bytes look like an XML document whose root is `AnnotatedECG`.
pub(crate) fn looks_like_aecg(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let head = &bytes[..bytes.len().min(4096)];
    let start = head.iter().position(|b| !b.is_ascii_whitespace());
    start.is_some_and(|s| head.get(s) == Some(&b'<'))
        && head.windows(12).any(|w| w == b"AnnotatedECG")
}

/// Parses an HL7 aECG document.
pub fn parse(xml: &[u8]) -> Result<EcgRecord, EcgError> {
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text = std::str::from_utf8(xml)
        .map_err(|e| EcgError::Xml(format!("the document is not UTF-8 ({e})")))?;
    let doc = Document::parse_with_options(
        text,
        ParsingOptions {
            allow_dtd: false,
            nodes_limit: NODES_LIMIT,
            ..ParsingOptions::default()
        },
    )
    .map_err(|e| EcgError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "AnnotatedECG" {
        return Err(EcgError::Xml(format!(
            "the root element is <{}>, not <AnnotatedECG>",
            root.tag_name().name()
        )));
    }

    let series: Vec<Node> = children(root, "component")
        .flat_map(|c| children(c, "series"))
        .collect();
    fn series_code<'a>(s: &Node<'a, '_>) -> Option<&'a str> {
        child(*s, "code").and_then(|c| c.attribute("code"))
    }
    let chosen = series
        .iter()
        .find(|s| series_code(s) == Some("RHYTHM"))
        .or_else(|| {
            series
                .iter()
                .find(|s| series_code(s) == Some("REPRESENTATIVE_BEAT"))
        })
        .or_else(|| series.first())
        .copied()
        .ok_or(EcgError::Missing {
            format: FORMAT,
            what: "series (component/series)",
        })?;
    let set = children(chosen, "component")
        .flat_map(|c| children(c, "sequenceSet"))
        .next()
        .ok_or(EcgError::Missing {
            format: FORMAT,
            what: "sequenceSet in the series",
        })?;

    let mut increment_s = None;
    let mut head = None;
    let mut leads = Vec::new();
    for seq in children(set, "component").flat_map(|c| children(c, "sequence")) {
        let code = child(seq, "code")
            .and_then(|c| c.attribute("code"))
            .unwrap_or("");
        let Some(value) = child(seq, "value") else {
            continue;
        };
        if code == "TIME_ABSOLUTE" || code == "TIME_RELATIVE" {
            increment_s = Some(time_increment(value)?);
            head = child(value, "head").and_then(|h| h.attribute("value"));
        } else if let Some(lead) = Lead::from_reference_id(code) {
            if leads.len() >= yilian_domain::ecg::MAX_LEADS {
                return Err(EcgError::Invalid {
                    format: FORMAT,
                    what: "number of leads",
                    value: format!("more than {}", yilian_domain::ecg::MAX_LEADS),
                });
            }
            leads.push(LeadTrace {
                samples_uv: slist_pq(value, &lead)?,
                lead,
            });
        }
    }
    let increment_s = increment_s.ok_or(EcgError::Missing {
        format: FORMAT,
        what: "time sequence (TIME_ABSOLUTE or TIME_RELATIVE GLIST_TS)",
    })?;
    let sample_rate_hz = tidy_rate(1.0 / increment_s);

    let time_of = |n: Node| {
        child(n, "effectiveTime")
            .and_then(|t| child(t, "low"))
            .and_then(|l| l.attribute("value"))
            .and_then(LocalDateTime::parse_compact)
    };
    let acquired_at = time_of(root)
        .or_else(|| time_of(chosen))
        .or_else(|| head.and_then(LocalDateTime::parse_compact));

    let (device_measurements, interpretation) = annotations(chosen)?;
    let record = EcgRecord {
        source: EcgSourceFormat::Hl7Aecg,
        sample_rate_hz,
        leads,
        acquired_at,
        device: device(chosen),
        subject: subject(root),
        device_measurements,
        interpretation,
    };
    record.validate()?;
    Ok(record)
}

/// A rate within a millionth of a whole number is that number (0.002 s increments give 500 Hz).
pub(crate) fn tidy_rate(r: f64) -> f64 {
    if (r - r.round()).abs() < 1e-6 {
        r.round()
    } else {
        r
    }
}

fn time_increment(value: Node) -> Result<f64, EcgError> {
    let inc = child(value, "increment").ok_or(EcgError::Missing {
        format: FORMAT,
        what: "GLIST_TS increment",
    })?;
    let raw = inc.attribute("value").unwrap_or("");
    let v: f64 = raw.trim().parse().map_err(|_| EcgError::Invalid {
        format: FORMAT,
        what: "GLIST_TS increment value",
        value: raw.into(),
    })?;
    let unit = inc.attribute("unit").unwrap_or("s");
    let seconds = match unit.trim() {
        "s" => v,
        "ms" => v / 1000.0,
        "us" | "µs" => v / 1_000_000.0,
        other => {
            return Err(EcgError::UnknownUnit {
                format: FORMAT,
                what: "the time increment",
                unit: other.into(),
                expected: "s or ms",
            });
        }
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(EcgError::Invalid {
            format: FORMAT,
            what: "GLIST_TS increment value",
            value: raw.into(),
        });
    }
    Ok(seconds)
}

/// origin + scale × digit, in µV.
fn slist_pq(value: Node, lead: &Lead) -> Result<Vec<f32>, EcgError> {
    let pq = |name: &'static str| -> Result<f64, EcgError> {
        let Some(n) = child(value, name) else {
            return Ok(if name == "scale" { 1.0 } else { 0.0 });
        };
        let raw = n.attribute("value").unwrap_or("");
        let v: f64 = raw.trim().parse().map_err(|_| EcgError::Invalid {
            format: FORMAT,
            what: if name == "scale" {
                "SLIST_PQ scale value"
            } else {
                "SLIST_PQ origin value"
            },
            value: raw.into(),
        })?;
        let unit = n.attribute("unit").unwrap_or("");
        let per = microvolts_per(unit).ok_or_else(|| EcgError::UnknownUnit {
            format: FORMAT,
            what: if name == "scale" {
                "the lead scale"
            } else {
                "the lead origin"
            },
            unit: unit.into(),
            expected: "uV, mV or V",
        })?;
        let uv = v * per;
        if uv.is_finite() {
            Ok(uv)
        } else {
            Err(EcgError::Invalid {
                format: FORMAT,
                what: "SLIST_PQ origin or scale",
                value: raw.into(),
            })
        }
    };
    let origin = pq("origin")?;
    let scale = pq("scale")?;
    let digits = child(value, "digits")
        .and_then(|d| d.text())
        .ok_or(EcgError::Missing {
            format: FORMAT,
            what: "SLIST_PQ digits",
        })?;
    let mut out = Vec::new();
    for (i, tok) in digits.split_ascii_whitespace().enumerate() {
        if i >= MAX_SAMPLES_PER_LEAD {
            return Err(EcgError::TooManySamples {
                format: FORMAT,
                count: digits.split_ascii_whitespace().count() as u64,
            });
        }
        let d: f64 = tok.parse().map_err(|_| EcgError::Invalid {
            format: FORMAT,
            what: "SLIST_PQ digit",
            value: format!("{tok} (lead {lead}, sample {})", i + 1),
        })?;
        out.push((origin + scale * d) as f32);
    }
    Ok(out)
}

fn annotations(series: Node) -> Result<(GlobalMeasurements, Vec<String>), EcgError> {
    let mut m = GlobalMeasurements::default();
    let mut statements = Vec::new();
    for set in children(series, "subjectOf").flat_map(|s| children(s, "annotationSet")) {
        for ann in set.descendants().filter(|n| is(n, "annotation")) {
            let code = child(ann, "code")
                .and_then(|c| c.attribute("code"))
                .unwrap_or("");
            let Some(value) = child(ann, "value") else {
                continue;
            };
            if code.contains("INTERPRETATION") {
                if let Some(t) = value.text().map(str::trim).filter(|t| !t.is_empty()) {
                    statements.push(t.to_string());
                }
                continue;
            }
            let Some(measure) = Measure::from_code(code) else {
                continue;
            };
            let Some(v) = value
                .attribute("value")
                .and_then(|v| v.trim().parse::<f64>().ok())
            else {
                continue;
            };
            let unit = value.attribute("unit").unwrap_or("");
            let v = measure
                .normalise(v, unit)
                .ok_or_else(|| EcgError::UnknownUnit {
                    format: FORMAT,
                    what: measure.name(),
                    unit: unit.into(),
                    expected: measure.expected_units(),
                })?;
            let slot = measure.slot(&mut m);
            if slot.is_none() && v.is_finite() {
                *slot = Some(v);
            }
        }
    }
    Ok((m, statements))
}

fn device(series: Node) -> EcgDevice {
    let author = series
        .descendants()
        .find(|n| is(n, "seriesAuthor"))
        .or_else(|| series.descendants().find(|n| is(n, "author")));
    let dev = author.and_then(|a| a.descendants().find(|n| is(n, "manufacturedSeriesDevice")));
    let text_of = |n: Option<Node>, name: &str| {
        n.and_then(|n| child(n, name))
            .and_then(|c| c.text())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    EcgDevice {
        manufacturer: text_of(
            author.and_then(|a| a.descendants().find(|n| is(n, "manufacturerOrganization"))),
            "name",
        ),
        model: text_of(dev, "manufacturerModelName"),
        serial_number: dev
            .and_then(|d| child(d, "id"))
            .and_then(|i| i.attribute("extension").or_else(|| i.attribute("root")))
            .map(str::to_string),
        software_version: text_of(dev, "softwareName"),
    }
}

fn subject(root: Node) -> EcgSubject {
    let Some(ts) = root.descendants().find(|n| is(n, "trialSubject")) else {
        return EcgSubject::default();
    };
    let person = ts.descendants().find(|n| is(n, "subjectDemographicPerson"));
    let name = person.and_then(|p| child(p, "name")).and_then(|n| {
        let family = child(n, "family").and_then(|f| f.text());
        let given = child(n, "given").and_then(|g| g.text());
        let s = match (family, given) {
            (None, None) => n.text().unwrap_or("").trim().to_string(),
            (f, g) => format!("{}^{}", f.unwrap_or("").trim(), g.unwrap_or("").trim())
                .trim_end_matches('^')
                .to_string(),
        };
        (!s.is_empty()).then_some(s)
    });
    let sex = person
        .and_then(|p| child(p, "administrativeGenderCode"))
        .and_then(|g| g.attribute("code"))
        .map(|c| match c.trim() {
            "M" => "M",
            "F" => "F",
            _ => "O",
        })
        .map(str::to_string);
    let birth_date = person
        .and_then(|p| child(p, "birthTime"))
        .and_then(|b| b.attribute("value"))
        .and_then(|v| v.get(..8))
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string);
    EcgSubject {
        patient_id: child(ts, "id")
            .and_then(|i| i.attribute("extension").or_else(|| i.attribute("root")))
            .map(str::to_string),
        patient_name: name,
        birth_date,
        sex,
    }
}

fn is(n: &Node, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| is(c, name))
}

fn children<'a, 'i: 'a>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| is(c, name))
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Writes a record as an HL7 aECG document: one RHYTHM series, a TIME_ABSOLUTE GLIST_TS, one
/// SLIST_PQ per lead at 1 µV per digit, device measurements and interpretation as annotations.
pub fn write(record: &EcgRecord) -> String {
    let mut x = String::with_capacity(record.leads.len() * record.samples_per_lead() * 6 + 4096);
    let start = record
        .acquired_at
        .map(|t| {
            format!(
                "{:04}{:02}{:02}{:02}{:02}{:02}",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            )
        })
        .unwrap_or_else(|| "19700101000000".into());
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<AnnotatedECG xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"{XSI}\" classCode=\"OBS\" moodCode=\"EVN\">"
    );
    let _ = writeln!(x, "  <id root=\"2.25.{}\"/>", fingerprint(record));
    x.push_str(
        "  <code code=\"93000\" codeSystem=\"2.16.840.1.113883.6.12\" codeSystemName=\"CPT-4\"/>\n",
    );
    let _ = writeln!(
        x,
        "  <effectiveTime><low value=\"{start}\" inclusive=\"true\"/></effectiveTime>"
    );

    let s = &record.subject;
    x.push_str(
        "  <componentOf><timepointEvent><componentOf><subjectAssignment><subject><trialSubject>\n",
    );
    if let Some(id) = &s.patient_id {
        let _ = writeln!(x, "    <id extension=\"{}\"/>", esc(id));
    }
    x.push_str("    <subjectDemographicPerson>\n");
    if let Some(n) = &s.patient_name {
        let _ = writeln!(x, "      <name>{}</name>", esc(n));
    }
    if let Some(sex) = &s.sex {
        let code = match sex.as_str() {
            "M" => "M",
            "F" => "F",
            _ => "UN",
        };
        let _ = writeln!(
            x,
            "      <administrativeGenderCode code=\"{code}\" codeSystem=\"2.16.840.1.113883.5.1\"/>"
        );
    }
    if let Some(b) = &s.birth_date {
        let _ = writeln!(x, "      <birthTime value=\"{}\"/>", esc(b));
    }
    x.push_str("    </subjectDemographicPerson>\n");
    x.push_str("  </trialSubject></subject></subjectAssignment></componentOf></timepointEvent></componentOf>\n");

    x.push_str("  <component><series>\n");
    x.push_str("    <code code=\"RHYTHM\" codeSystem=\"2.16.840.1.113883.5.4\"/>\n");
    let _ = writeln!(
        x,
        "    <effectiveTime><low value=\"{start}\" inclusive=\"true\"/></effectiveTime>"
    );
    let d = &record.device;
    x.push_str("    <author><seriesAuthor><manufacturedSeriesDevice>\n");
    if let Some(v) = &d.serial_number {
        let _ = writeln!(x, "      <id extension=\"{}\"/>", esc(v));
    }
    if let Some(v) = &d.model {
        let _ = writeln!(
            x,
            "      <manufacturerModelName>{}</manufacturerModelName>",
            esc(v)
        );
    }
    if let Some(v) = &d.software_version {
        let _ = writeln!(x, "      <softwareName>{}</softwareName>", esc(v));
    }
    x.push_str("    </manufacturedSeriesDevice>\n");
    if let Some(v) = &d.manufacturer {
        let _ = writeln!(
            x,
            "    <manufacturerOrganization><name>{}</name></manufacturerOrganization>",
            esc(v)
        );
    }
    x.push_str("    </seriesAuthor></author>\n");

    x.push_str("    <component><sequenceSet>\n");
    let _ = writeln!(
        x,
        "      <component><sequence><code code=\"TIME_ABSOLUTE\" codeSystem=\"2.16.840.1.113883.5.4\"/>\
<value xsi:type=\"GLIST_TS\"><head value=\"{start}.000\"/><increment value=\"{}\" unit=\"s\"/></value></sequence></component>",
        1.0 / record.sample_rate_hz
    );
    for l in &record.leads {
        let code = l.lead.reference_id().unwrap_or_else(|| {
            let label: String = l
                .lead
                .label()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            format!("MDC_ECG_LEAD_{}", label.to_ascii_uppercase())
        });
        let _ = write!(
            x,
            "      <component><sequence><code code=\"{code}\" codeSystem=\"2.16.840.1.113883.6.24\" codeSystemName=\"MDC\"/>\
<value xsi:type=\"SLIST_PQ\"><origin value=\"0\" unit=\"uV\"/><scale value=\"1\" unit=\"uV\"/><digits>"
        );
        for (i, v) in l.samples_uv.iter().enumerate() {
            if i > 0 {
                x.push(' ');
            }
            let _ = write!(x, "{}", v.round() as i64);
        }
        x.push_str("</digits></value></sequence></component>\n");
    }
    x.push_str("    </sequenceSet></component>\n");

    let m = &record.device_measurements;
    if !m.is_empty() || !record.interpretation.is_empty() {
        x.push_str("    <subjectOf><annotationSet>\n");
        for measure in Measure::ALL {
            let Some(v) = measure.get(m) else { continue };
            let (code, unit) = match measure {
                Measure::HeartRate => ("MDC_ECG_HEART_RATE", "bpm"),
                Measure::Rr => ("MDC_ECG_TIME_PD_RR", "ms"),
                Measure::Pr => ("MDC_ECG_TIME_PD_PR", "ms"),
                Measure::Qrs => ("MDC_ECG_TIME_PD_QRS", "ms"),
                Measure::Qt => ("MDC_ECG_TIME_PD_QT", "ms"),
                Measure::Qtc => ("MDC_ECG_TIME_PD_QTc", "ms"),
                Measure::PAxis => ("MDC_ECG_ANGLE_P_FRONT", "deg"),
                Measure::QrsAxis => ("MDC_ECG_ANGLE_QRS_FRONT", "deg"),
                Measure::TAxis => ("MDC_ECG_ANGLE_T_FRONT", "deg"),
            };
            let _ = writeln!(
                x,
                "      <component><annotation><code code=\"{code}\" codeSystem=\"2.16.840.1.113883.6.24\"/>\
<value xsi:type=\"PQ\" value=\"{v}\" unit=\"{unit}\"/></annotation></component>"
            );
        }
        if !record.interpretation.is_empty() {
            x.push_str("      <component><annotation><code code=\"MDC_ECG_INTERPRETATION\" codeSystem=\"2.16.840.1.113883.6.24\"/>\n");
            for st in &record.interpretation {
                let _ = writeln!(
                    x,
                    "        <component><annotation><code code=\"MDC_ECG_INTERPRETATION_STATEMENT\" codeSystem=\"2.16.840.1.113883.6.24\"/>\
<value xsi:type=\"ST\">{}</value></annotation></component>",
                    esc(st)
                );
            }
            x.push_str("      </annotation></component>\n");
        }
        x.push_str("    </annotationSet></subjectOf>\n");
    }
    x.push_str("  </series></component>\n</AnnotatedECG>\n");
    x
}

/// A stable number for the document id, from the samples (FNV-1a): the same record gets the same id.
fn fingerprint(record: &EcgRecord) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for l in &record.leads {
        for v in &l.samples_uv {
            for b in v.to_bits().to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    h
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}
