//! Tests of the HL7 v2 parser, ACKs and MLLP: realistic ORU^R01 messages (v2.3–2.5.1: CBC, liver
//! function, troponin, critical potassium), escapes, repetitions, custom encoding characters,
//! character sets, corrections, every error variant, and mutation fuzzing (never a panic).

use yilian_domain::ecg::LocalDateTime;
use yilian_domain::lab::{
    AbnormalFlag, CodedValue, Comparator, LabTime, LabValue, PanelStatus, ResultStatus, Sex,
};
use yilian_fixtures::lab::{self as fx, LabSpec};

use super::mllp::{self, Decoder, MllpError};
use super::*;

fn msg(lines: &[&str]) -> String {
    let mut s = lines.join("\r");
    s.push('\r');
    s
}

const MSH: &str = "MSH|^~\\&|LIS|COUNTYLAB|YILIAN|HUB|20261123093000+0800||ORU^R01^ORU_R01|CTRL1|P|2.5.1||||||UNICODE UTF-8";
const PID: &str = "PID|1||P001^^^HX^MR||张三||19800115|M";
const OBR: &str =
    "OBR|1|PO1|FO1|CBC^血常规^L|||20261123081500+0800|||||||||||||||20261123093000+0800|||F";

fn parse(lines: &[&str]) -> Result<OruR01, Hl7Error> {
    parse_oru_r01(msg(lines).as_bytes())
}

fn one_result(obx_line: &str) -> yilian_domain::lab::LabResult {
    let oru = parse(&[MSH, PID, OBR, obx_line]).unwrap();
    oru.panels[0].results[0].clone()
}

fn t(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, off: Option<i16>) -> LabTime {
    LabTime::new(LocalDateTime::new(y, mo, d, h, mi, s).unwrap(), off)
}

// ---------------------------------------------------------------------------------------------
// Realistic messages.

#[test]
fn cbc_in_every_supported_version() {
    for version in SUPPORTED_VERSIONS {
        let text = fx::oru_r01_cbc("P001", "HX", "MSG-CBC", version);
        let oru = parse_oru_r01(text.as_bytes()).unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(oru.header.control_id, "MSG-CBC");
        assert_eq!(oru.header.version, version);
        assert_eq!(oru.panels.len(), 1);
        let p = &oru.panels[0];
        p.validate().unwrap();
        assert_eq!(p.version, version);
        assert_eq!(p.message_id, "MSG-CBC");
        let id = &p.patient.identifiers[0];
        assert_eq!(
            (
                id.id.as_str(),
                id.assigning_authority.as_deref(),
                id.id_type.as_deref()
            ),
            ("P001", Some("HX"), Some("MR"))
        );
        assert_eq!(p.patient.name.as_deref(), Some("测试甲"));
        assert_eq!(p.patient.birth_date.as_deref(), Some("19800115"));
        assert_eq!(p.patient.sex, Some(Sex::Male));
        assert_eq!(p.performing_lab.as_deref(), Some("COUNTYLAB"));
        assert_eq!(p.ordering_site.as_deref(), Some("TOWNSHIP01"), "{version}");
        assert_eq!(p.placer_order_number.as_deref(), Some("PO-MSG-CBC"));
        assert_eq!(p.filler_order_number.as_deref(), Some("FO-MSG-CBC"));
        assert_eq!(p.service, CodedValue::new("CBC", Some("血常规"), Some("L")));
        let specimen = p.specimen.as_ref().unwrap();
        assert_eq!(
            (specimen.code.as_str(), specimen.display.as_deref()),
            ("BLD", Some("全血")),
            "{version}"
        );
        assert_eq!(
            p.collected_at,
            Some(t(2026, 11, 23, 8, 15, 0, Some(480))),
            "{version}"
        );
        assert_eq!(p.reported_at, Some(t(2026, 11, 23, 9, 30, 0, Some(480))));
        assert_eq!(p.status, PanelStatus::Final);
        assert!(p.notes.is_empty(), "{version}: {:?}", p.notes);
        let codes: Vec<&str> = p.results.iter().map(|r| r.code.code.as_str()).collect();
        assert_eq!(codes, ["WBC", "RBC", "HGB", "PLT", "NEUT%"]);
        let rbc = &p.results[1];
        assert_eq!(rbc.loinc.as_deref(), Some("789-8"));
        let q = rbc.quantity().unwrap();
        assert_eq!((q.value, q.decimal.as_str()), (4.6, "4.60"));
        assert_eq!(q.unit_code(), Some("10*12/L"));
        assert!(q.unit.as_ref().unwrap().is_ucum());
        let rr = rbc.reference_range.as_ref().unwrap();
        assert_eq!(
            (rr.low, rr.high, rr.text.as_deref()),
            (Some(4.3), Some(5.8), Some("4.3-5.8"))
        );
        assert_eq!(rbc.abnormal_flags, [AbnormalFlag::Normal]);
        assert_eq!(rbc.status, ResultStatus::Final);
        assert_eq!(rbc.set_id, Some(2));
        assert_eq!(rbc.observed_at, Some(t(2026, 11, 23, 9, 30, 0, Some(480))));
    }
}

#[test]
fn liver_troponin_and_critical_potassium() {
    let spec = LabSpec::new("P002", "TS01", "MSG-LFT", "2.3.1");
    let liver = parse_oru_r01(fx::oru_r01(&spec, &fx::liver()).as_bytes()).unwrap();
    let alt = &liver.panels[0].results[0];
    assert_eq!(alt.code.display.as_deref(), Some("丙氨酸氨基转移酶"));
    assert_eq!(alt.numeric(), Some(62.0));
    assert_eq!(alt.abnormal_flags, [AbnormalFlag::High]);
    assert!(!alt.lab_flagged_critical());

    let spec = LabSpec::new("P003", "TS01", "MSG-TNI", "2.5.1");
    let below = parse_oru_r01(fx::oru_r01(&spec, &fx::troponin("<0.010")).as_bytes()).unwrap();
    let tni = below.panels[0].results[0].quantity().unwrap().clone();
    assert_eq!(
        (tni.comparator, tni.value, tni.decimal.as_str()),
        (Some(Comparator::Lt), 0.01, "0.010")
    );
    let rr = below.panels[0].results[0].reference_range.clone().unwrap();
    assert_eq!((rr.low, rr.high), (None, Some(0.034)));
    let high = parse_oru_r01(fx::oru_r01(&spec, &fx::troponin("0.523")).as_bytes()).unwrap();
    assert_eq!(high.panels[0].results[0].numeric(), Some(0.523));
    assert_eq!(
        high.panels[0].results[0].abnormal_flags,
        [AbnormalFlag::High]
    );

    for version in ["2.3", "2.5.1"] {
        let text = fx::oru_r01_potassium_critical("P004", "HX", "MSG-K", version);
        let oru = parse_oru_r01(text.as_bytes()).unwrap();
        let critical: Vec<_> = oru.panels[0].lab_flagged_critical().collect();
        assert_eq!(critical.len(), 1);
        assert_eq!(critical[0].code.code, "K");
        assert_eq!(critical[0].loinc.as_deref(), Some("2823-3"));
        assert_eq!(critical[0].numeric(), Some(6.8));
        assert_eq!(critical[0].abnormal_flags, [AbnormalFlag::CriticalHigh]);
    }
}

#[test]
fn a_correction_is_marked_corrected() {
    let spec = LabSpec::new("P001", "HX", "MSG-1", "2.5.1");
    let fixed = spec.corrected("MSG-2");
    let oru = parse_oru_r01(fx::oru_r01(&fixed, &fx::cbc()).as_bytes()).unwrap();
    let p = &oru.panels[0];
    assert_eq!(p.message_id, "MSG-2");
    assert_eq!(p.filler_order_number.as_deref(), Some("FO-MSG-1"));
    assert_eq!(p.status, PanelStatus::Corrected);
    assert!(
        p.results
            .iter()
            .all(|r| r.status == ResultStatus::Corrected)
    );
    // A single corrected OBX in an otherwise final panel.
    let r = one_result("OBX|3|NM|K^钾^L||4.1|mmol/L|3.5-5.3|N|||C");
    assert_eq!(r.status, ResultStatus::Corrected);
}

// ---------------------------------------------------------------------------------------------
// Structure: separators, escapes, repetitions, encoding characters, charsets.

#[test]
fn segment_separators_may_be_cr_lf_or_crlf() {
    let lines = [
        MSH,
        PID,
        OBR,
        "OBX|1|NM|WBC^白细胞^L||6.5|10*9/L|3.5-9.5|N|||F",
    ];
    for sep in ["\r", "\n", "\r\n", "\r\r\n"] {
        let text = format!("\u{feff}\n{}{sep}", lines.join(sep));
        let oru = parse_oru_r01(text.as_bytes()).unwrap_or_else(|e| panic!("{sep:?}: {e}"));
        assert_eq!(oru.panels[0].results.len(), 1, "{sep:?}");
    }
}

#[test]
fn escape_sequences_are_resolved() {
    let d = Delimiters::STANDARD;
    let cases = [
        (r"a\F\b", "a|b"),
        (r"a\S\b\T\c\R\d\E\e", "a^b&c~d\\e"),
        (r"line1\.br\line2", "line1\nline2"),
        (r"\H\bold\N\ text", "bold text"),
        (r"\X41\\X4243\", "ABC"),
        (r"\XE4B8AD\", "中"),
        (r"\Zlocal\ kept", r"\Zlocal\ kept"),
        (r"\C2842\ kept", r"\C2842\ kept"),
        (r"unterminated \F", r"unterminated \F"),
        (r"\XZZ\", r"\XZZ\"),
        (r"\.in+4\indent", "indent"),
        (r"\.sp\x", "\nx"),
        ("plain", "plain"),
    ];
    for (raw, want) in cases {
        assert_eq!(d.unescape(raw, Charset::Utf8), want, "{raw}");
    }
    // \P\ is the truncation character only when MSH-2 declares one.
    let d5 = Delimiters::new('|', "^~\\&#").unwrap();
    assert_eq!(d5.unescape(r"a\P\b", Charset::Utf8), "a#b");
    assert_eq!(d.unescape(r"a\P\b", Charset::Utf8), r"a\P\b");
    // Hex in the message's charset.
    assert_eq!(d.unescape(r"\XD6D0\", Charset::Gb18030), "中");

    for text in ["a|b^c&d~e\\f", "两行\n文本", "plain", "", "\\\\"] {
        assert_eq!(d.unescape(&escape(text, &d), Charset::Utf8), text);
    }
    assert_eq!(escape("a\r\nb", &d), r"a\.br\b");

    // In a message: an escaped value in OBX-5 and in a name.
    let r = one_result(r"OBX|1|ST|COMMENT^备注^L||A\F\B \S\ C\E\||||||F");
    assert_eq!(r.value, LabValue::Text("A|B ^ C\\".into()));
}

#[test]
fn repetitions_of_identifiers_flags_and_text() {
    let pid = "PID|1||P001^^^HX&1.2.156.1&ISO^MR~11010519491231002X^^^&2.16.840.1.113883.2.4.6.3&ISO^NI~^^^EMPTY||王^五^^^^^L||19491231|F";
    let oru = parse(&[
        MSH,
        pid,
        OBR,
        "OBX|1|NM|GLU^葡萄糖^L||2.1|mmol/L|3.9-6.1|L~LL|||F",
        "OBX|2|TX|NOTE^说明^L||第一行~第二行||||||F",
        "OBX|3|FT|NOTE2^说明^L||a\\.br\\b||||||F",
    ])
    .unwrap();
    let p = &oru.panels[0];
    let ids: Vec<(&str, Option<&str>, Option<&str>)> = p
        .patient
        .identifiers
        .iter()
        .map(|i| {
            (
                i.id.as_str(),
                i.assigning_authority.as_deref(),
                i.id_type.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("P001", Some("HX"), Some("MR")),
            (
                "11010519491231002X",
                Some("2.16.840.1.113883.2.4.6.3"),
                Some("NI")
            ),
        ]
    );
    assert_eq!(p.patient.name.as_deref(), Some("王^五"));
    assert_eq!(p.patient.sex, Some(Sex::Female));
    assert_eq!(
        p.results[0].abnormal_flags,
        [AbnormalFlag::Low, AbnormalFlag::CriticalLow]
    );
    assert!(p.results[0].lab_flagged_critical());
    assert_eq!(p.results[1].value, LabValue::Text("第一行\n第二行".into()));
    assert_eq!(p.results[2].value, LabValue::Text("a\nb".into()));
}

#[test]
fn custom_encoding_characters_are_honoured() {
    // A fifth (truncation) character.
    let five = msg(&[
        "MSH|^~\\&#|LIS|LAB5|YILIAN|HUB|20261123093000||ORU^R01^ORU_R01|C5|P|2.5.1",
        PID,
        OBR,
        "OBX|1|NM|K^钾#^L||6.8|mmol/L|3.5-5.3|HH|||F",
    ]);
    let oru = parse_oru_r01(five.as_bytes()).unwrap();
    assert_eq!(
        oru.panels[0].results[0].code.display.as_deref(),
        Some("钾#")
    );
    assert_eq!(oru.panels[0].performing_lab.as_deref(), Some("LAB5"));

    // Entirely different delimiters: field '!', component '@', repetition '#', escape '$',
    // subcomponent '%'.
    let custom = msg(&[
        "MSH!@#$%!LIS!LABX@1.2.3@ISO!YILIAN!HUB!20261123093000!!ORU@R01@ORU_R01!CX!P!2.4",
        "PID!1!!P9@@@HX%1.2%ISO@MR#P10@@@TS!!李@四!!19700101!M",
        "OBR!1!PO!FO!CBC@血常规@L!!!20261123081500",
        "OBX!1!NM!HGB@血红蛋白@L!!120!g/L!130-175!L~H!!!F",
        "OBX!2!ST!C@备注@L!!a$F$b$S$c|d^e!!!!!!F",
        "OBX!3!CE!ABO@血型@L!!A@A型@L!!!!!!F",
    ]);
    let oru = parse_oru_r01(custom.as_bytes()).unwrap();
    let p = &oru.panels[0];
    assert_eq!(oru.header.version, "2.4");
    assert_eq!(p.performing_lab.as_deref(), Some("LABX"));
    assert_eq!(p.patient.identifiers.len(), 2);
    assert_eq!(
        p.patient.identifiers[0].assigning_authority.as_deref(),
        Some("HX")
    );
    assert_eq!(p.patient.name.as_deref(), Some("李^四"));
    assert_eq!(p.results[0].numeric(), Some(120.0));
    // '~' is not the repetition character here: one flag code "L~H", kept as sent.
    assert_eq!(
        p.results[0].abnormal_flags,
        [AbnormalFlag::Other("L~H".into())]
    );
    assert_eq!(p.results[1].value, LabValue::Text("a!b@c|d^e".into()));
    assert_eq!(
        p.results[2].value,
        LabValue::Coded(CodedValue::new("A", Some("A型"), Some("L")))
    );
    // The ACK is written with the standard delimiters, the sender's HD re-encoded.
    let ack = build_ack(
        Some(&oru.header),
        AckCode::Accept,
        None,
        "A1",
        t(2026, 11, 23, 9, 31, 0, Some(480)),
    );
    assert!(
        ack.starts_with("MSH|^~\\&|YILIAN|HUB|LIS|LABX^1.2.3^ISO|20261123093100+0800||ACK^R01^ACK|A1|P|2.4\rMSA|AA|CX\r"),
        "{ack}"
    );
}

#[test]
fn character_sets_from_msh18() {
    let text = msg(&[
        "MSH|^~\\&|LIS|县检验中心|YILIAN|HUB|20261123093000||ORU^R01|G1|P|2.3.1||||||GB 18030-2000",
        "PID|1||P001^^^HX^MR||张三丰||19800115|男",
        OBR,
        "OBX|1|ST|RES^结果^L||阴性（－）||||||F",
    ]);
    let (gb, _, _) = encoding_rs::GB18030.encode(&text);
    let oru = parse_oru_r01(&gb).unwrap();
    let p = &oru.panels[0];
    assert_eq!(p.performing_lab.as_deref(), Some("县检验中心"));
    assert_eq!(p.patient.name.as_deref(), Some("张三丰"));
    assert_eq!(p.patient.sex, Some(Sex::Male));
    assert_eq!(p.results[0].value, LabValue::Text("阴性（－）".into()));
    assert_eq!(oru.header.charset, Some(Charset::Gb18030));
    assert_eq!(oru.header.charset_label.as_deref(), Some("GB 18030-2000"));
    // The ACK goes back in the same charset.
    let ack = build_ack(
        Some(&oru.header),
        AckCode::Accept,
        None,
        "A",
        t(2026, 1, 1, 0, 0, 0, None),
    );
    let bytes = Charset::Gb18030.encode(&ack);
    assert!(Message::parse(&bytes, None).is_ok());
    assert!(ack.contains("|||||GB 18030-2000\r"), "{ack}");

    // GB 18030 trail bytes may be '|' (億 = 83 7C), '^' (區 = 85 5E) or '\\' (乗 = 81 5C): MSH-18 is
    // still found, and the body splits on characters, not bytes.
    let tricky = msg(&[
        "MSH|^~\\&|LIS|區億檢驗|YILIAN|HUB|20261123093000||ORU^R01|G2|P|2.4||||||GB18030",
        "PID|1||P001^^^億^MR||乗區||19800115|F",
        OBR,
        "OBX|1|ST|RES^結果^L||乗\\F\\億\\S\\區||||||F",
    ]);
    let (bytes, _, _) = encoding_rs::GB18030.encode(&tricky);
    assert!(bytes.windows(2).any(|w| w == [0x83, 0x7C]));
    let oru = parse_oru_r01(&bytes).unwrap();
    let p = &oru.panels[0];
    assert_eq!(p.performing_lab.as_deref(), Some("區億檢驗"));
    assert_eq!(
        p.patient.identifiers[0].assigning_authority.as_deref(),
        Some("億")
    );
    assert_eq!(p.patient.name.as_deref(), Some("乗區"));
    assert_eq!(p.results[0].value, LabValue::Text("乗|億^區".into()));
    assert_eq!(
        MessageHeader::sniff(&bytes).unwrap().charset,
        Some(Charset::Gb18030)
    );

    for label in ["GBK", "GB2312", "gb18030"] {
        let labelled = text.replace("GB 18030-2000", label);
        let (bytes, _, _) = encoding_rs::GB18030.encode(&labelled);
        assert!(parse_oru_r01(&bytes).is_ok(), "{label}");
    }

    // GBK bytes without MSH-18: refused unless the site is configured with a fallback.
    let unlabelled = text.replace("||||||GB 18030-2000", "");
    let (bytes, _, _) = encoding_rs::GB18030.encode(&unlabelled);
    let err = parse_oru_r01(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Hl7Error::Undecodable {
                charset: "UTF-8",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.ack_code(), AckCode::Reject);
    let oru = parse_oru_r01_with(&bytes, Some(Charset::Gb18030)).unwrap();
    assert_eq!(oru.panels[0].patient.name.as_deref(), Some("张三丰"));

    // Latin-1.
    let latin = msg(&[
        "MSH|^~\\&|LIS|LAB|YILIAN|HUB|20261123093000||ORU^R01|L1|P|2.4||||||8859/1",
        PID,
        OBR,
        "OBX|1|ST|C^c^L||caf\u{e9}||||||F",
    ]);
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&latin);
    let oru = parse_oru_r01(&bytes).unwrap();
    assert_eq!(
        oru.panels[0].results[0].value,
        LabValue::Text("café".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Values.

#[test]
fn value_types_become_typed_values() {
    let cases: Vec<(&str, &str, &str, LabValue)> = vec![
        (
            "NM",
            "6.80",
            "mmol/L",
            numeric(6.8, "6.80", None, Some("mmol/L")),
        ),
        ("NM", "-1.5", "", numeric(-1.5, "-1.5", None, None)),
        ("NM", "+2", "", numeric(2.0, "2", None, None)),
        (
            "NM",
            "<0.01",
            "ng/mL",
            numeric(0.01, "0.01", Some(Comparator::Lt), Some("ng/mL")),
        ),
        ("NM", " 7 ", "", numeric(7.0, "7", None, None)),
        (
            "SN",
            ">^10",
            "U/L",
            numeric(10.0, "10", Some(Comparator::Gt), Some("U/L")),
        ),
        (
            "SN",
            "<=^0.5",
            "",
            numeric(0.5, "0.5", Some(Comparator::Le), None),
        ),
        ("SN", "^5.2", "", numeric(5.2, "5.2", None, None)),
        ("SN", "=^5.2", "", numeric(5.2, "5.2", None, None)),
        ("SN", "^1^:^128", "", LabValue::Text("1:128".into())),
        ("SN", "^2^-^5", "", LabValue::Text("2-5".into())),
        ("SN", "^10^+", "", LabValue::Text("10+".into())),
        ("ST", "阳性", "", LabValue::Text("阳性".into())),
        (
            "CWE",
            "POS^阳性^L",
            "",
            LabValue::Coded(CodedValue::new("POS", Some("阳性"), Some("L"))),
        ),
        (
            "CNE",
            "^^^260373001^Detected^SCT",
            "",
            LabValue::Coded(CodedValue::new("260373001", Some("Detected"), Some("SCT"))),
        ),
        (
            "CE",
            "^阴性",
            "",
            LabValue::Coded(CodedValue::new("阴性", Some("阴性"), None)),
        ),
        ("DT", "20261123", "", LabValue::Text("20261123".into())),
        ("NM", "", "mmol/L", LabValue::Absent),
        ("NM", "\"\"", "", LabValue::Absent),
        ("", "", "", LabValue::Absent),
    ];
    for (vt, value, unit, want) in cases {
        let line = format!("OBX|1|{vt}|X^x^L||{value}|{unit}|||||F");
        assert_eq!(one_result(&line).value, want, "{line}");
    }
}

fn numeric(
    value: f64,
    decimal: &str,
    comparator: Option<Comparator>,
    unit: Option<&str>,
) -> LabValue {
    LabValue::Numeric(yilian_domain::lab::Quantity {
        value,
        decimal: decimal.into(),
        comparator,
        unit: unit.map(|u| CodedValue::new(u, None, None)),
    })
}

#[test]
fn reference_ranges_in_their_usual_forms() {
    let cases: [(&str, Option<f64>, Option<f64>); 10] = [
        ("3.5-5.5", Some(3.5), Some(5.5)),
        ("3.5 - 5.5", Some(3.5), Some(5.5)),
        ("3.5~5.5", Some(3.5), Some(5.5)),
        ("3.5～5.5", Some(3.5), Some(5.5)),
        ("-2.0-3.0", Some(-2.0), Some(3.0)),
        ("-3--1", Some(-3.0), Some(-1.0)),
        ("<5", None, Some(5.0)),
        ("<=5", None, Some(5.0)),
        (">10", Some(10.0), None),
        ("阴性", None, None),
    ];
    for (text, low, high) in cases {
        let rr = oru::parse_range(text);
        assert_eq!((rr.low, rr.high), (low, high), "{text}");
        assert_eq!(rr.text.as_deref(), Some(text));
    }
}

#[test]
fn hl7_times_with_and_without_offsets() {
    let cases = [
        ("20261123", Some(t(2026, 11, 23, 0, 0, 0, None))),
        ("202611230815", Some(t(2026, 11, 23, 8, 15, 0, None))),
        (
            "20261123081530.1234+0800",
            Some(t(2026, 11, 23, 8, 15, 30, Some(480))),
        ),
        (
            "20261123081530-0500",
            Some(t(2026, 11, 23, 8, 15, 30, Some(-300))),
        ),
        ("2026112308", Some(t(2026, 11, 23, 8, 0, 0, None))),
        ("202611", None),
        ("20261323", None),
        ("2026112308153", None),
        ("20261123081530+08", None),
        ("20261123.5", None),
        ("abcdefgh", None),
    ];
    for (text, want) in cases {
        assert_eq!(oru::parse_ts(text), want, "{text}");
    }
}

#[test]
fn groups_patients_specimens_and_leniencies() {
    let oru = parse(&[
        MSH,
        "SFT|Vendor|1.0",
        PID,
        "PV1|1|O",
        "ORC|RE|PO1|FO1||CM||||||||||||TS-ENTERING",
        OBR,
        "NTE|1||comment",
        "OBX|1|NM|WBC^白细胞^L||6.5|10*9/L|3.5-9.5|N|||F",
        "OBX|2|ED|HIST^直方图^L||^IM^BMP^Base64^AAAA||||||F",
        "SPM|1|S1||SER^血清^HL70487|||||||||||||20261123080000+0800|20261123082000+0800",
        "OBX|3|NM|VOL^体积^L||3|mL|||||F",
        "OBR|2|PO2|FO2|CRP^C反应蛋白^L|||20261123081500+0800",
        "OBX|1|NM|CRP^C反应蛋白^L||12|mg/L|0-10|H|||F",
        "ZXX|custom",
        "PID|1||P002^^^HX^MR||Li^Si||19900101|X",
        "OBR|1|PO3|FO3|GLU^血糖^L|||||||||||||||||||||P",
        "SPM|1|S2||PLAS^血浆^HL70487",
        "OBX|1|NM|GLU^血糖^L||5.1|mmol/L|3.9-6.1|N|||P",
        "OBX|2|NM|HBA1C^糖化血红蛋白^L||5.6|%|4-6|N|||P",
    ])
    .unwrap();
    assert_eq!(oru.panels.len(), 3);
    let [a, b, c] = oru.panels.as_slice() else {
        panic!()
    };
    assert_eq!(a.ordering_site.as_deref(), Some("TS-ENTERING"));
    assert_eq!(a.results.len(), 1, "ED skipped, specimen OBX left out");
    assert_eq!(a.specimen.as_ref().map(|s| s.code.as_str()), Some("SER"));
    assert_eq!(a.collected_at, Some(t(2026, 11, 23, 8, 0, 0, Some(480))));
    assert_eq!(a.received_at, Some(t(2026, 11, 23, 8, 20, 0, Some(480))));
    assert_eq!(a.notes.len(), 2, "{:?}", a.notes);
    assert!(a.notes[0].contains("value type ED is not kept"));
    assert!(a.notes[1].contains("follows SPM"));

    // Second OBR of the same patient: no ORC of its own, no OBR-25 and no OBX-11.
    assert_eq!(b.patient, a.patient);
    assert_eq!(b.ordering_site, None);
    assert_eq!(b.placer_order_number.as_deref(), Some("PO2"));
    assert_eq!(b.results[0].abnormal_flags, [AbnormalFlag::High]);
    assert_eq!(b.status, PanelStatus::Final);
    assert!(
        b.notes.iter().any(|n| n.contains("OBR-25")),
        "{:?}",
        b.notes
    );

    // A second patient; its SPM comes before the results, so they are kept.
    assert_eq!(c.patient.identifiers[0].id, "P002");
    assert_eq!(c.patient.name.as_deref(), Some("Li^Si"));
    assert_eq!(c.patient.sex, None);
    assert!(c.notes.iter().any(|n| n.contains("PID-8")));
    assert_eq!(c.status, PanelStatus::Preliminary);
    assert_eq!(c.results.len(), 2);
    assert_eq!(c.results[0].status, ResultStatus::Preliminary);
    assert_eq!(c.specimen.as_ref().map(|s| s.code.as_str()), Some("PLAS"));
}

#[test]
fn empty_statuses_are_derived_or_inherited() {
    let no_obr25 = "OBR|1|PO1|FO1|CBC^血常规^L";
    let oru = parse(&[
        MSH,
        PID,
        no_obr25,
        "OBX|1|NM|A^a^L||1||||||F",
        "OBX|2|NM|B^b^L||2||||||C",
    ])
    .unwrap();
    assert_eq!(oru.panels[0].status, PanelStatus::Corrected);
    let oru = parse(&[MSH, PID, no_obr25, "OBX|1|NM|A^a^L||1||||||F"]).unwrap();
    assert_eq!(oru.panels[0].status, PanelStatus::Final);
    // OBX-11 empty takes OBR-25 (noted).
    let oru = parse(&[MSH, PID, OBR, "OBX|1|NM|A^a^L||1"]).unwrap();
    assert_eq!(oru.panels[0].results[0].status, ResultStatus::Final);
    assert!(oru.panels[0].notes[0].contains("OBX-11"));
}

#[test]
fn loinc_is_lifted_from_either_triple() {
    let r = one_result("OBX|1|NM|6690-2^Leukocytes^LN^WBC^白细胞^L||6.5||||||F");
    assert_eq!(r.loinc.as_deref(), Some("6690-2"));
    assert_eq!(r.code.code, "6690-2");
    assert_eq!(
        r.other_codes,
        [CodedValue::new("WBC", Some("白细胞"), Some("L"))]
    );
    let r = one_result("OBX|1|NM|^^^6690-2^Leukocytes^LN||6.5||||||F");
    assert_eq!(r.code.code, "6690-2");
    assert!(r.other_codes.is_empty());
    let r = one_result("OBX|1|NM|WBC^白细胞^L||6.5||||||F");
    assert_eq!(r.loinc, None);
}

#[test]
fn panel_debug_does_not_show_patient_identifiers() {
    let text = fx::oru_r01_cbc("11010519491231002X", "HX", "DBG", "2.5.1");
    let oru = parse_oru_r01(text.as_bytes()).unwrap();
    let debug = format!("{oru:?}");
    assert!(!debug.contains("11010519491231002X"));
    assert!(!debug.contains("测试甲"));
}

// ---------------------------------------------------------------------------------------------
// Errors: each variant, its text, its table 0357 code and its ACK code.

#[test]
fn every_error_is_named_and_coded() {
    struct Case {
        name: &'static str,
        input: String,
        code: u16,
        ack: AckCode,
        text: &'static str,
    }
    let m = |lines: &[&str]| msg(lines);
    let cases = [
        Case {
            name: "empty",
            input: " \r\n".into(),
            code: 100,
            ack: AckCode::Reject,
            text: "the message is empty",
        },
        Case {
            name: "no MSH",
            input: m(&[PID]),
            code: 100,
            ack: AckCode::Reject,
            text: "does not start with an MSH",
        },
        Case {
            name: "bad MSH-2",
            input: m(&["MSH|^~|LIS"]),
            code: 102,
            ack: AckCode::Reject,
            text: "MSH-1/MSH-2: encoding characters",
        },
        Case {
            name: "duplicate delimiters",
            input: m(&["MSH|^^\\&|LIS"]),
            code: 102,
            ack: AckCode::Reject,
            text: "MSH-1/MSH-2",
        },
        Case {
            name: "alphanumeric separator",
            input: m(&["MSHA^~\\&ALIS"]),
            code: 102,
            ack: AckCode::Reject,
            text: "MSH-1/MSH-2",
        },
        Case {
            name: "charset",
            input: m(&[&MSH.replace("UNICODE UTF-8", "ISO IR87"), PID, OBR]),
            code: 103,
            ack: AckCode::Reject,
            text: "MSH-18: character set \"ISO IR87\" is not supported",
        },
        Case {
            name: "not utf-8",
            input: String::new(),
            code: 102,
            ack: AckCode::Reject,
            text: "not valid UTF-8 text",
        },
        Case {
            name: "message type",
            input: m(&[&MSH.replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"), PID]),
            code: 200,
            ack: AckCode::Reject,
            text: "MSH-9: message type \"ADT^A01^ADT_A01\" is not supported",
        },
        Case {
            name: "message type missing",
            input: m(&[&MSH.replace("ORU^R01^ORU_R01", ""), PID]),
            code: 101,
            ack: AckCode::Error,
            text: "MSH-9 at segment 1: required field is empty",
        },
        Case {
            name: "version",
            input: m(&[&MSH.replace("|2.5.1|", "|2.2|"), PID]),
            code: 203,
            ack: AckCode::Reject,
            text: "MSH-12: version \"2.2\" is not supported",
        },
        Case {
            name: "version missing",
            input: m(&[&MSH.replace("|2.5.1|", "||"), PID]),
            code: 101,
            ack: AckCode::Error,
            text: "MSH-12 at segment 1",
        },
        Case {
            name: "control id",
            input: m(&[&MSH.replace("|CTRL1|", "||"), PID]),
            code: 101,
            ack: AckCode::Error,
            text: "MSH-10 at segment 1: required field is empty",
        },
        Case {
            name: "not a segment",
            input: m(&[MSH, "pid|1"]),
            code: 100,
            ack: AckCode::Error,
            text: "pid at segment 2: not a segment",
        },
        Case {
            name: "second MSH",
            input: m(&[MSH, PID, MSH]),
            code: 100,
            ack: AckCode::Error,
            text: "MSH at segment 3: a second MSH",
        },
        Case {
            name: "OBX before OBR",
            input: m(&[MSH, PID, "OBX|1|NM|A^a^L||1||||||F"]),
            code: 100,
            ack: AckCode::Error,
            text: "OBX at segment 3: OBX before any OBR",
        },
        Case {
            name: "SPM before OBR",
            input: m(&[MSH, PID, "SPM|1"]),
            code: 100,
            ack: AckCode::Error,
            text: "SPM at segment 3: SPM before any OBR",
        },
        Case {
            name: "OBR before PID",
            input: m(&[MSH, OBR, PID]),
            code: 100,
            ack: AckCode::Error,
            text: "OBR at segment 2: OBR before any PID",
        },
        Case {
            name: "no PID",
            input: m(&[MSH, OBR]),
            code: 100,
            ack: AckCode::Error,
            text: "required segment PID is missing",
        },
        Case {
            name: "no OBR",
            input: m(&[MSH, PID]),
            code: 100,
            ack: AckCode::Error,
            text: "required segment OBR is missing",
        },
        Case {
            name: "PID-3",
            input: m(&[MSH, "PID|1||^^^HX||Name", OBR]),
            code: 101,
            ack: AckCode::Error,
            text: "PID-3 at segment 2: required field is empty",
        },
        Case {
            name: "PID-7",
            input: m(&[MSH, "PID|1||P1||N||1980-01-15", OBR]),
            code: 102,
            ack: AckCode::Error,
            text: "PID-7 at segment 2: \"…\" is not a date",
        },
        Case {
            name: "OBR-4",
            input: m(&[MSH, PID, "OBR|1|PO|FO|"]),
            code: 101,
            ack: AckCode::Error,
            text: "OBR-4 at segment 3: required field is empty",
        },
        Case {
            name: "OBR-7",
            input: m(&[MSH, PID, "OBR|1|PO|FO|CBC|||yesterday"]),
            code: 102,
            ack: AckCode::Error,
            text: "OBR-7 at segment 3: \"yesterday\" is not a date/time",
        },
        Case {
            name: "OBR-25",
            input: m(&[MSH, PID, "OBR|1|PO|FO|CBC|||||||||||||||||||||Y"]),
            code: 103,
            ack: AckCode::Error,
            text: "OBR-25 at segment 3: \"Y\" is not a value of HL7 table 0123",
        },
        Case {
            name: "OBX-3",
            input: m(&[MSH, PID, OBR, "OBX|1|NM|||1||||||F"]),
            code: 101,
            ack: AckCode::Error,
            text: "OBX-3 at segment 4: required field is empty",
        },
        Case {
            name: "OBX-2",
            input: m(&[MSH, PID, OBR, "OBX|1||A^a^L||1||||||F"]),
            code: 101,
            ack: AckCode::Error,
            text: "OBX-2 at segment 4",
        },
        Case {
            name: "OBX-2 table",
            input: m(&[MSH, PID, OBR, "OBX|1|ZZ|A^a^L||1||||||F"]),
            code: 103,
            ack: AckCode::Error,
            text: "OBX-2 at segment 4: \"ZZ\" is not a value of HL7 table 0125",
        },
        Case {
            name: "NM",
            input: m(&[
                MSH,
                PID,
                OBR,
                "OBX|1|NM|A^a^L||1||||||F",
                "OBX|2|NM|B^b^L||1||||||F",
                "OBX|3|NM|K^钾^L||abc|mmol/L|||||F",
            ]),
            code: 102,
            ack: AckCode::Error,
            text: "OBX-5 at segment 6: \"abc\" is not a number for value type NM",
        },
        Case {
            name: "NM exponent",
            input: m(&[MSH, PID, OBR, "OBX|1|NM|A^a^L||1e5||||||F"]),
            code: 102,
            ack: AckCode::Error,
            text: "\"1e5\" is not a number",
        },
        Case {
            name: "NM repeated",
            input: m(&[MSH, PID, OBR, "OBX|1|NM|A^a^L||1~2||||||F"]),
            code: 102,
            ack: AckCode::Error,
            text: "repeated; value type NM takes one number",
        },
        Case {
            name: "SN",
            input: m(&[MSH, PID, OBR, "OBX|1|SN|A^a^L||~^x||||||F"]),
            code: 102,
            ack: AckCode::Error,
            text: "OBX-5 at segment 4",
        },
        Case {
            name: "SN comparator",
            input: m(&[MSH, PID, OBR, "OBX|1|SN|A^a^L||!^1||||||F"]),
            code: 102,
            ack: AckCode::Error,
            text: "SN.1 must be",
        },
        Case {
            name: "SN second number",
            input: m(&[MSH, PID, OBR, "OBX|1|SN|A^a^L||^1^:^x||||||F"]),
            code: 102,
            ack: AckCode::Error,
            text: "SN.4 is not a number",
        },
        Case {
            name: "CE",
            input: m(&[MSH, PID, OBR, "OBX|1|CE|A^a^L||^^L||||||F"]),
            code: 102,
            ack: AckCode::Error,
            text: "not a code",
        },
        Case {
            name: "OBX-11 table",
            input: m(&[MSH, PID, OBR, "OBX|1|NM|A^a^L||1||||||Q"]),
            code: 103,
            ack: AckCode::Error,
            text: "OBX-11 at segment 4: \"Q\" is not a value of HL7 table 0085",
        },
        Case {
            name: "OBX-11 missing",
            input: m(&[MSH, PID, "OBR|1|PO|FO|CBC", "OBX|1|NM|A^a^L||1"]),
            code: 101,
            ack: AckCode::Error,
            text: "OBX-11 at segment 4: required field is empty",
        },
        Case {
            name: "OBX-14",
            input: m(&[MSH, PID, OBR, "OBX|1|NM|A^a^L||1||||||F|||2026"]),
            code: 102,
            ack: AckCode::Error,
            text: "OBX-14 at segment 4",
        },
        Case {
            name: "SPM-17",
            input: m(&[MSH, PID, OBR, "SPM|1|S||SER|||||||||||||x"]),
            code: 102,
            ack: AckCode::Error,
            text: "SPM-17 at segment 4",
        },
    ];
    for c in cases {
        let bytes = if c.name == "not utf-8" {
            let mut b = msg(&[MSH.replace("||||||UNICODE UTF-8", "").as_str(), PID]).into_bytes();
            b.extend_from_slice(b"\xff\xfe");
            b
        } else {
            c.input.into_bytes()
        };
        let err = parse_oru_r01(&bytes).expect_err(c.name);
        let text = err.to_string();
        assert!(text.contains(c.text), "{}: {text}", c.name);
        assert_eq!(err.error_code().code(), c.code, "{}: {text}", c.name);
        assert_eq!(err.ack_code(), c.ack, "{}: {text}", c.name);
        // Every error can be answered, and the answer is a well-formed ACK carrying the code.
        let ack = build_error_ack(&bytes, &err, "ACK1", t(2026, 1, 1, 0, 0, 0, None));
        let parsed = Message::parse(&ack, None).unwrap();
        let msa = parsed.segments_named("MSA").next().unwrap();
        assert_eq!(
            msa.text(1, 1).as_deref(),
            Some(c.ack.as_str()),
            "{}",
            c.name
        );
        let err_seg = parsed.segments_named("ERR").next().unwrap();
        let coded = format!("{}^{}^HL70357", c.code, err.error_code().text());
        let coded_old = format!("{}&{}&HL70357", c.code, err.error_code().text());
        assert!(
            err_seg.raw(3) == coded || err_seg.raw(1).ends_with(&coded_old),
            "{}: {}",
            c.name,
            String::from_utf8_lossy(&ack)
        );
    }
    let internal = Hl7Error::Internal("catalog unavailable".into());
    assert_eq!(internal.error_code().code(), 207);
    assert_eq!(internal.ack_code(), AckCode::Error);
    assert_eq!(
        internal.to_string(),
        "application internal error: catalog unavailable"
    );
}

#[test]
fn receiver_refusals_point_at_msh_4_and_msh_10() {
    let text = fx::oru_r01_cbc("P001", "HX", "MSG-7", "2.5.1");
    let oru = parse_oru_r01(text.as_bytes()).unwrap();
    let now = t(2026, 11, 23, 9, 31, 5, Some(480));
    let refused = Hl7Error::SenderRefused("\"COUNTYLAB\" is not a configured lab sender".into());
    assert_eq!(refused.ack_code(), AckCode::Reject);
    assert_eq!(refused.error_code().code(), 103);
    let ack = build_ack(
        Some(&oru.header),
        refused.ack_code(),
        Some(&refused),
        "A1",
        now,
    );
    assert!(ack.contains("\rMSA|AR|MSG-7\r"), "{ack}");
    assert!(
        ack.contains("\rERR||MSH^1^4|103^Table value not found^HL70357|E||||MSH-4: "),
        "{ack}"
    );
    let duplicate = Hl7Error::DuplicateControlId("already received with other content".into());
    assert_eq!(duplicate.ack_code(), AckCode::Error);
    assert_eq!(duplicate.error_code().code(), 205);
    let old = parse_oru_r01(fx::oru_r01_cbc("P001", "HX", "MSG-8", "2.3.1").as_bytes()).unwrap();
    let ack = build_ack(
        Some(&old.header),
        duplicate.ack_code(),
        Some(&duplicate),
        "A2",
        now,
    );
    assert!(
        ack.contains("\rMSA|AE|MSG-8|MSH-10: already received"),
        "{ack}"
    );
    assert!(
        ack.contains("\rERR|MSH^1^10^205&Duplicate key identifier&HL70357"),
        "{ack}"
    );
}

// ---------------------------------------------------------------------------------------------
// ACKs.

#[test]
fn ack_accept_swaps_addresses_and_echoes_the_control_id() {
    let text = fx::oru_r01_cbc("P001", "HX", "MSG-42", "2.5.1");
    let oru = parse_oru_r01(text.as_bytes()).unwrap();
    let ack = build_ack(
        Some(&oru.header),
        AckCode::Accept,
        None,
        "HUB-1",
        t(2026, 11, 23, 9, 31, 5, Some(480)),
    );
    assert_eq!(
        ack,
        "MSH|^~\\&|YILIAN|HUB|LIS|COUNTYLAB|20261123093105+0800||ACK^R01^ACK|HUB-1|P|2.5.1||||||UNICODE UTF-8\r\
         MSA|AA|MSG-42\r"
    );
    // An error passed with AA is ignored.
    let with_error = build_ack(
        Some(&oru.header),
        AckCode::Accept,
        Some(&Hl7Error::Internal("x".into())),
        "HUB-1",
        t(2026, 11, 23, 9, 31, 5, Some(480)),
    );
    assert_eq!(with_error, ack);
}

#[test]
fn ack_errors_in_v25_and_v23_layouts() {
    let bad_nm = |version: &str| {
        msg(&[
            &MSH.replace("|2.5.1|", &format!("|{version}|")),
            PID,
            OBR,
            "OBX|1|NM|A^a^L||1||||||F",
            "OBX|2|NM|K^钾^L||6,8|mmol/L|||||F",
        ])
    };
    let now = t(2026, 11, 23, 9, 31, 5, Some(480));

    let v25 = bad_nm("2.5.1");
    let err = parse_oru_r01(v25.as_bytes()).unwrap_err();
    let ack = String::from_utf8(build_error_ack(v25.as_bytes(), &err, "A2", now)).unwrap();
    let lines: Vec<&str> = ack.trim_end().split('\r').collect();
    assert_eq!(lines[1], "MSA|AE|CTRL1");
    assert_eq!(
        lines[2],
        "ERR||OBX^2^5^1|102^Data type error^HL70357|E||||OBX-5 at segment 5: \"6,8\" is not a number for value type NM"
    );

    let v231 = bad_nm("2.3.1");
    let err = parse_oru_r01(v231.as_bytes()).unwrap_err();
    let ack = String::from_utf8(build_error_ack(v231.as_bytes(), &err, "A3", now)).unwrap();
    let lines: Vec<&str> = ack.trim_end().split('\r').collect();
    assert!(lines[0].contains("|ACK^R01^ACK|A3|P|2.3.1"), "{}", lines[0]);
    assert_eq!(
        lines[1],
        "MSA|AE|CTRL1|OBX-5 at segment 5: \"6,8\" is not a number for value type NM"
    );
    assert_eq!(lines[2], "ERR|OBX^2^5^102&Data type error&HL70357");

    // v2.3: MSH-9 has no message structure.
    let v23 = bad_nm("2.3");
    let err = parse_oru_r01(v23.as_bytes()).unwrap_err();
    let ack = String::from_utf8(build_error_ack(v23.as_bytes(), &err, "A4", now)).unwrap();
    assert!(ack.contains("|ACK^R01|A4|P|2.3"), "{ack}");

    // Unsupported type: AR, located at MSH-9, with the sender's control ID.
    let adt = msg(&[&MSH.replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"), PID]);
    let err = parse_oru_r01(adt.as_bytes()).unwrap_err();
    let ack = String::from_utf8(build_error_ack(adt.as_bytes(), &err, "A5", now)).unwrap();
    assert!(ack.contains("|ACK^A01^ACK|A5|"), "{ack}");
    assert!(ack.contains("\rMSA|AR|CTRL1\r"), "{ack}");
    assert!(
        ack.contains("\rERR||MSH^1^9|200^Unsupported message type^HL70357|E|"),
        "{ack}"
    );

    // A message escape-worthy in the error text is escaped in ERR-8.
    let pipes = msg(&[MSH, PID, OBR, "OBX|1|NM|A^a^L||1\\F\\2||||||F"]);
    let err = parse_oru_r01(pipes.as_bytes()).unwrap_err();
    let ack = String::from_utf8(build_error_ack(pipes.as_bytes(), &err, "A6", now)).unwrap();
    assert!(ack.contains("\"1\\F\\2\" is not a number"), "{ack}");
}

#[test]
fn ack_for_bytes_that_are_not_hl7() {
    let now = t(2026, 11, 23, 9, 31, 5, None);
    for junk in [&b""[..], b"hello world", b"\x00\x01\x02", b"MSH"] {
        let err = parse_oru_r01(junk).unwrap_err();
        assert_eq!(err.ack_code(), AckCode::Reject);
        let ack = String::from_utf8(build_error_ack(junk, &err, "A9", now)).unwrap();
        assert!(
            ack.starts_with(
                "MSH|^~\\&|||||20261123093105||ACK^R01^ACK|A9|P|2.5\rMSA|AR|\"\"\rERR|"
            ),
            "{ack}"
        );
    }
    // A readable MSH with a broken body still gets its control ID echoed.
    let broken = b"MSH|^~\\&|LIS|LAB|HUB|HUB|x||ORU^R01|C77|P|2.4\r\xff\xff";
    let err = parse_oru_r01(broken).unwrap_err();
    let ack = String::from_utf8(build_error_ack(broken, &err, "A10", now)).unwrap();
    assert!(
        ack.contains("\rMSA|AR|C77|the message is not valid UTF-8"),
        "{ack}"
    );
    assert!(ack.contains("|HUB|HUB|LIS|LAB|"), "{ack}");
}

// ---------------------------------------------------------------------------------------------
// MLLP.

#[test]
fn mllp_frames_survive_any_chunking() {
    let a = fx::oru_r01_cbc("P1", "HX", "M1", "2.5.1").into_bytes();
    let b = fx::oru_r01_potassium_critical("P2", "HX", "M2", "2.3.1").into_bytes();
    let mut stream = mllp::frame(&a);
    stream.extend(mllp::frame(&b));
    for chunk in [1, 2, 3, 7, 64, 1000, stream.len()] {
        let mut d = Decoder::new(1 << 20);
        let mut frames = Vec::new();
        for c in stream.chunks(chunk) {
            d.push(c);
            while let Some(f) = d.next_frame() {
                frames.push(f.unwrap());
            }
        }
        assert_eq!(frames, [a.clone(), b.clone()], "chunk {chunk}");
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.finish(), Ok(()));
    }
}

#[test]
fn mllp_decoder_reports_and_recovers() {
    let drain = |d: &mut Decoder| -> Vec<Result<Vec<u8>, MllpError>> {
        std::iter::from_fn(|| d.next_frame()).collect()
    };
    // White space between frames is fine; other bytes are reported once, before the next frame.
    let mut d = Decoder::new(100);
    d.push(b"\r\n\x0bONE\x1c\r \r\nnoise\x0bTWO\x1c\r");
    assert_eq!(
        drain(&mut d),
        [
            Ok(b"ONE".to_vec()),
            Err(MllpError::Garbage { bytes: 5 }),
            Ok(b"TWO".to_vec())
        ]
    );
    // Missing CR after the end block is tolerated.
    d.push(b"\x0bTHREE\x1c\x0bFOUR\x1c\r");
    assert_eq!(drain(&mut d), [Ok(b"THREE".to_vec()), Ok(b"FOUR".to_vec())]);
    // An oversized frame is discarded (its head kept) and the next one decodes.
    let big = vec![b'x'; 250];
    let mut stream = mllp::frame(&big);
    stream.extend(mllp::frame(b"FIVE"));
    for chunk in [1, 13, stream.len()] {
        let mut d = Decoder::new(100);
        for c in stream.chunks(chunk) {
            d.push(c);
            assert!(d.buffered() <= 100);
        }
        let out = drain(&mut d);
        assert_eq!(out.len(), 2, "chunk {chunk}: {out:?}");
        assert!(
            matches!(&out[0], Err(MllpError::FrameTooLarge { limit: 100, head }) if head.len() == 100),
            "chunk {chunk}"
        );
        assert_eq!(out[1], Ok(b"FIVE".to_vec()));
    }
    // A frame cut by a new start block.
    let mut d = Decoder::new(100);
    d.push(b"\x0bHALF\x0bWHOLE\x1c\r");
    assert_eq!(
        drain(&mut d),
        [
            Err(MllpError::Interrupted { bytes: 4 }),
            Ok(b"WHOLE".to_vec())
        ]
    );
    // The stream ends inside a frame, or after garbage.
    d.push(b"\x0bUNFINISHED");
    assert_eq!(d.finish(), Err(MllpError::Incomplete { bytes: 10 }));
    d.push(b"junk");
    assert_eq!(d.finish(), Err(MllpError::Garbage { bytes: 4 }));
    assert_eq!(d.finish(), Ok(()));
    // Endless garbage is counted, never stored, and reported once it passes the frame limit.
    let mut d = Decoder::new(10);
    d.push(&[b'z'; 25]);
    assert_eq!(drain(&mut d), [Err(MllpError::Garbage { bytes: 25 })]);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn an_oversized_frame_can_still_be_answered() {
    let text = fx::oru_r01_cbc("P1", "HX", "BIG-1", "2.5.1");
    let mut d = Decoder::new(200);
    d.push(&mllp::frame(text.as_bytes()));
    let Some(Err(MllpError::FrameTooLarge { head, .. })) = d.next_frame() else {
        panic!("expected FrameTooLarge")
    };
    let header = MessageHeader::sniff(&head).unwrap();
    assert_eq!(header.control_id, "BIG-1");
    let ack = build_ack(
        Some(&header),
        AckCode::Reject,
        Some(&Hl7Error::Internal("message larger than 200 bytes".into())),
        "A",
        t(2026, 1, 1, 0, 0, 0, None),
    );
    assert!(ack.contains("\rMSA|AR|BIG-1\r"), "{ack}");
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: deterministic mutations of valid messages; every outcome must be Ok or a typed refusal.

use crate::mutate::{Mutator, Rng};

/// Bytes that matter to the parser: delimiters, segment and frame bytes, digits, signs, UTF-8 and GB
/// lead bytes.
const INTERESTING: &[u8] = b"|^~\\&#\r\n0123456789.+-<>=FSTREXH\"\x0b\x1c\xe4\xb8\xff\x81";

const HL7: Mutator = Mutator {
    alphabet: INTERESTING,
    max_insert: 8,
    max_splice: 80,
    max_drain: 24,
    le_ints: false,
};

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    HL7.mutate(rng, seed)
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        fx::oru_r01_cbc("P001", "HX", "F1", "2.5.1").into_bytes(),
        fx::oru_r01_potassium_critical("P002", "HX", "F2", "2.3.1").into_bytes(),
        fx::oru_r01(&LabSpec::new("P3", "T", "F3", "2.4"), &fx::liver()).into_bytes(),
        fx::oru_r01(
            &LabSpec::new("P4", "T", "F4", "2.5"),
            &fx::troponin("<0.010"),
        )
        .into_bytes(),
        msg(&[
            "MSH!@#$%!LIS!LABX!YILIAN!HUB!20261123093000!!ORU@R01!CX!P!2.4",
            "PID!1!!P9@@@HX%1.2%ISO@MR#P10@@@TS!!李@四!!19700101!M",
            "OBR!1!PO!FO!CBC@血常规@L!!!20261123081500",
            "OBX!1!SN!HGB@血红蛋白@L!!<@120!g/L!130-175!L#H!!!F",
            "OBX!2!TX!C@备注@L!!a$F$b$.br$c#d!!!!!!F",
        ])
        .into_bytes(),
    ];
    let gb = msg(&[
        "MSH|^~\\&|LIS|县检验中心|YILIAN|HUB|20261123093000||ORU^R01|G1|P|2.3.1||||||GB18030",
        "PID|1||P001^^^HX^MR||张三丰||19800115|男",
        OBR,
        "OBX|1|CE|RES^结果^L||NEG^阴性^L||||||F",
    ]);
    seeds.push(encoding_rs::GB18030.encode(&gb).0.into_owned());
    seeds
}

#[test]
fn fuzz_oru_parser_never_panics() {
    let seeds = seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut refused) = (0, 0);
    let now = t(2026, 1, 1, 0, 0, 0, None);
    for i in 0..6000 {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        let outcome = std::panic::catch_unwind(|| {
            let parsed = parse_oru_r01_with(&input, Some(Charset::Gb18030));
            let ack = match &parsed {
                Ok(oru) => encode_ack(
                    Some(&oru.header),
                    &build_ack(Some(&oru.header), AckCode::Accept, None, "A", now),
                ),
                Err(e) => build_error_ack(&input, e, "A", now),
            };
            (parsed, ack)
        });
        let Ok((parsed, ack)) = outcome else {
            panic!(
                "iteration {i} panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
        };
        // Whatever came in, the ACK is a message this parser reads back, with an MSA.
        let back = Message::parse(&ack, None).unwrap_or_else(|e| {
            panic!(
                "iteration {i}: the ACK does not parse: {e}: {:?}",
                String::from_utf8_lossy(&ack)
            )
        });
        assert!(back.segments_named("MSA").next().is_some());
        match parsed {
            Ok(oru) => {
                assert!(!oru.panels.is_empty());
                for p in &oru.panels {
                    p.validate().unwrap();
                }
                ok += 1;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
    }
    eprintln!("fuzz oru: 6000 inputs, {ok} parsed, {refused} refused");
    assert!(ok > 100 && refused > 100, "ok {ok}, refused {refused}");
}

#[test]
fn fuzz_mllp_decoder_never_panics_and_stays_bounded() {
    let seeds = seeds();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let max = 2048;
    let mut frames = 0;
    for i in 0..3000 {
        let mut stream = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let seed = &seeds[rng.below(seeds.len())];
            stream.extend(mllp::frame(seed));
        }
        let stream = mutate(&mut rng, &stream);
        let outcome = std::panic::catch_unwind(|| {
            let mut d = Decoder::new(max);
            let mut out = Vec::new();
            let mut rest = stream.as_slice();
            let mut step = 1 + i % 97;
            while !rest.is_empty() {
                let (c, r) = rest.split_at(step.min(rest.len()));
                d.push(c);
                assert!(d.buffered() <= max);
                out.extend(std::iter::from_fn(|| d.next_frame()));
                rest = r;
                step = 1 + (step * 31 + 7) % 509;
            }
            let _ = d.finish();
            out
        });
        let Ok(out) = outcome else {
            panic!("iteration {i} panicked");
        };
        for f in out {
            match f {
                Ok(bytes) => {
                    assert!(bytes.len() <= max);
                    assert!(!bytes.contains(&mllp::START) && !bytes.contains(&mllp::END));
                    frames += 1;
                }
                Err(MllpError::FrameTooLarge { head, .. }) => {
                    assert!(head.len() <= mllp::HEAD_BYTES)
                }
                Err(_) => {}
            }
        }
    }
    eprintln!("fuzz mllp: 3000 streams, {frames} frames");
    assert!(frames > 1000);
}
