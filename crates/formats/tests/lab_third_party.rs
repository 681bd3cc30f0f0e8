//! The lab fixtures and the ACKs this crate builds, read by libraries nobody here wrote: hl7apy
//! (strict validation, every supported version) and fhir.resources (FHIR R4B models, which R4 lab
//! bundles satisfy). What they read must match what `yilian_formats` reads. The interpreter comes from
//! YILIAN_TEST_PYTHON (scripts/test sets it to the .venv); missing python or packages fail in CI and
//! say SKIPPED locally.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use yilian_domain::ecg::LocalDateTime;
use yilian_domain::lab::{LabTime, LabValue};
use yilian_fixtures::lab::{self as fx, LabSpec};
use yilian_formats::fhir_lab::parse_fhir_lab;
use yilian_formats::hl7v2::{
    AckCode, Hl7Error, SUPPORTED_VERSIONS, build_ack, build_error_ack, parse_oru_r01,
};

/// Reads a JSON list of {kind, name, text} from stdin; prints one JSON line per item: what the
/// library read, or the error it raised.
const SCRIPT: &str = r#"
import json, sys
from hl7apy.parser import parse_message
from hl7apy.consts import VALIDATION_LEVEL
from fhir.resources.R4B.bundle import Bundle
for item in json.load(sys.stdin):
    out = {"name": item["name"]}
    try:
        if item["kind"] == "fhir":
            b = Bundle.model_validate_json(item["text"])
            out["observations"] = [
                [e.resource.code.coding[0].code, float(e.resource.valueQuantity.value) if e.resource.valueQuantity else None]
                for e in b.entry if e.resource.__resource_type__ == "Observation"]
        else:
            strict = item["kind"] != "ack-tolerant"
            level = VALIDATION_LEVEL.STRICT if strict else VALIDATION_LEVEL.TOLERANT
            m = parse_message(item["text"], validation_level=level, find_groups=strict)
            if strict:
                m.validate()
            if item["kind"] == "oru":
                out["obx"] = [[s.obx_3.obx_3_1.to_er7(), s.obx_5.to_er7()] for s in _all(m, "OBX")]
            else:
                out["msa"] = [m.msa.msa_1.to_er7(), m.msa.msa_2.to_er7()]
    except Exception as e:
        out["error"] = type(e).__name__ + ": " + str(e)
    print(json.dumps(out, ensure_ascii=False))
"#;

/// hl7apy keeps OBX inside groups: a helper that walks them.
const HELPER: &str = r#"
def _all(node, name):
    found = []
    for c in getattr(node, "children", []):
        if c.name == name:
            found.append(c)
        elif c.classname == "Group":
            found.extend(_all(c, name))
    return found
"#;

fn python() -> Option<String> {
    let python = match std::env::var("YILIAN_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            if std::env::var("CI").is_ok() {
                panic!("CI must set YILIAN_TEST_PYTHON (scripts/test does)");
            }
            eprintln!(
                "SKIPPED lab third-party checks: YILIAN_TEST_PYTHON is not set (run scripts/test)"
            );
            return None;
        }
    };
    let probe = Command::new(&python)
        .args(["-c", "import hl7apy, fhir.resources.R4B"])
        .output();
    match probe {
        Ok(o) if o.status.success() => Some(python),
        other => {
            if std::env::var("CI").is_ok() {
                panic!("hl7apy / fhir.resources are not importable by {python}: {other:?}");
            }
            eprintln!("SKIPPED lab third-party checks: {python} lacks hl7apy or fhir.resources");
            None
        }
    }
}

fn run(python: &str, items: &[Value]) -> Vec<Value> {
    let script = format!("{HELPER}\n{SCRIPT}");
    let mut child = Command::new(python)
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(items.to_vec()).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn now() -> LabTime {
    LabTime::new(
        LocalDateTime::new(2026, 11, 23, 9, 31, 5).unwrap(),
        Some(480),
    )
}

#[test]
fn hl7apy_and_fhir_resources_read_what_we_read() {
    let Some(python) = python() else {
        return;
    };
    let mut items = Vec::new();
    let mut ours: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for version in SUPPORTED_VERSIONS {
        let spec = LabSpec::new("P001", "HX", &format!("M-{version}"), version);
        for (panel_name, panel) in [
            ("cbc", fx::cbc()),
            ("liver", fx::liver()),
            ("tni", fx::troponin("<0.010")),
            ("k", fx::electrolytes_critical()),
        ] {
            let text = fx::oru_r01(&spec, &panel);
            let name = format!("{panel_name}-{version}");
            let oru = parse_oru_r01(text.as_bytes()).unwrap();
            let values = oru.panels[0]
                .results
                .iter()
                .map(|r| {
                    let v = match &r.value {
                        LabValue::Numeric(q) => q.decimal.clone(),
                        other => format!("{other:?}"),
                    };
                    (r.code.code.clone(), v)
                })
                .collect();
            ours.push((name.clone(), values));
            items.push(json!({ "kind": "oru", "name": name, "text": text }));

            // ACKs: accept, a content error, an internal error. hl7apy has no v2.3 ACK structure
            // (it keys messages by MSH-9.3, which v2.3 lacks), so those are read tolerantly.
            let kind = if version == "2.3" {
                "ack-tolerant"
            } else {
                "ack"
            };
            let aa = build_ack(Some(&oru.header), AckCode::Accept, None, "A1", now());
            items.push(json!({ "kind": kind, "name": format!("aa-{name}"), "text": aa }));
            let bad = text
                .replacen("|6.5|", "|6,5|", 1)
                .replacen("|62|", "|6 2|", 1);
            if let Err(e) = parse_oru_r01(bad.as_bytes()) {
                let ae =
                    String::from_utf8(build_error_ack(bad.as_bytes(), &e, "A2", now())).unwrap();
                items.push(json!({ "kind": kind, "name": format!("ae-{name}"), "text": ae }));
            }
            let ie = build_ack(
                Some(&oru.header),
                AckCode::Error,
                Some(&Hl7Error::Internal("storage unavailable".into())),
                "A3",
                now(),
            );
            items.push(json!({ "kind": kind, "name": format!("ie-{name}"), "text": ie }));
        }
    }
    let junk = b"not hl7 at all";
    let err = parse_oru_r01(junk).unwrap_err();
    let ar = String::from_utf8(build_error_ack(junk, &err, "A4", now())).unwrap();
    items.push(json!({ "kind": "ack", "name": "ar-junk", "text": ar }));

    let mut fhir_ours = Vec::new();
    for (name, panel) in [
        ("cbc", fx::cbc()),
        ("liver", fx::liver()),
        ("tni", fx::troponin("<0.010")),
        ("k", fx::electrolytes_critical()),
    ] {
        let text = fx::fhir_bundle(&LabSpec::new("P001", "HX", "B-1", "R4"), &panel);
        let panels = parse_fhir_lab(text.as_bytes()).unwrap();
        fhir_ours.push((
            name,
            panels[0]
                .results
                .iter()
                .map(|r| (r.loinc.clone().unwrap(), r.numeric().unwrap()))
                .collect::<Vec<_>>(),
        ));
        items.push(json!({ "kind": "fhir", "name": format!("fhir-{name}"), "text": text }));
    }

    let results = run(&python, &items);
    assert_eq!(results.len(), items.len());
    let mut checked = 0;
    for r in &results {
        let name = r["name"].as_str().unwrap();
        assert!(r.get("error").is_none(), "{name}: {}", r["error"]);
        if let Some(obx) = r.get("obx") {
            let theirs: Vec<(String, String)> = obx
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let code = p[0].as_str().unwrap().to_string();
                    // SN "<^0.010" is the comparator and the number; ours keeps the decimal.
                    let v = p[1].as_str().unwrap();
                    let v = v.rsplit('^').next().unwrap().to_string();
                    (code, v)
                })
                .collect();
            let (_, mine) = ours.iter().find(|(n, _)| n == name).unwrap();
            assert_eq!(&theirs, mine, "{name}");
            checked += 1;
        }
        if let Some(msa) = r.get("msa") {
            let code = msa[0].as_str().unwrap();
            let expected = match name.split('-').next().unwrap() {
                "aa" => "AA",
                "ae" | "ie" => "AE",
                _ => "AR",
            };
            assert_eq!(code, expected, "{name}");
            if name == "ar-junk" {
                assert_eq!(msa[1], "\"\"");
            } else {
                assert!(msa[1].as_str().unwrap().starts_with("M-"), "{name}");
            }
            checked += 1;
        }
        if let Some(obs) = r.get("observations") {
            let theirs: Vec<(String, f64)> = obs
                .as_array()
                .unwrap()
                .iter()
                .map(|o| (o[0].as_str().unwrap().to_string(), o[1].as_f64().unwrap()))
                .collect();
            let (_, mine) = fhir_ours
                .iter()
                .find(|(n, _)| format!("fhir-{n}") == name)
                .unwrap();
            // fhir.resources reads the first coding (local); ours lifts LOINC: compare the values.
            let their_values: Vec<f64> = theirs.iter().map(|t| t.1).collect();
            let my_values: Vec<f64> = mine.iter().map(|m| m.1).collect();
            assert_eq!(their_values, my_values, "{name}");
            checked += 1;
        }
    }
    eprintln!("lab third-party checks: {checked} documents read alike");
    assert_eq!(checked, items.len());
}
