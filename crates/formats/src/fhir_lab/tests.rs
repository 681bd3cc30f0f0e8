//! Tests of the FHIR R4 lab parser: the fixture bundles, a bare DiagnosticReport with contained
//! resources, reference forms, every value type, each error with its JSON path, and mutation fuzzing
//! of bytes and of JSON structure (never a panic).

use serde_json::{Value, json};
use yilian_domain::ecg::LocalDateTime;
use yilian_domain::lab::{
    AbnormalFlag, CodedValue, Comparator, LabTime, LabValue, PanelStatus, ResultStatus, Sex,
};
use yilian_fixtures::lab::{self as fx, LabSpec};

use super::*;

fn t(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, off: Option<i16>) -> LabTime {
    LabTime::new(LocalDateTime::new(y, mo, d, h, mi, s).unwrap(), off)
}

fn parse_value(v: &Value) -> Result<Vec<LabPanel>, FhirError> {
    parse_fhir_lab(v.to_string().as_bytes())
}

#[test]
fn the_cbc_bundle_becomes_one_panel() {
    let text = fx::fhir_bundle_cbc("P001", "HX", "B-1");
    let panels = parse_fhir_lab(text.as_bytes()).unwrap();
    assert_eq!(panels.len(), 1);
    let p = &panels[0];
    p.validate().unwrap();
    assert_eq!(p.source, LabSource::FhirR4);
    assert_eq!(p.version, "R4");
    assert_eq!(p.message_id, "B-1");
    let id = &p.patient.identifiers[0];
    assert_eq!(
        (
            id.id.as_str(),
            id.assigning_authority.as_deref(),
            id.id_type.as_deref()
        ),
        ("P001", Some("urn:yilian:issuer:HX"), Some("MR"))
    );
    assert_eq!(p.patient.name.as_deref(), Some("测试甲"));
    assert_eq!(p.patient.birth_date.as_deref(), Some("19800115"));
    assert_eq!(p.patient.sex, Some(Sex::Male));
    assert_eq!(p.performing_lab.as_deref(), Some("COUNTYLAB"));
    assert_eq!(p.ordering_site.as_deref(), Some("TOWNSHIP01"));
    assert_eq!(p.placer_order_number.as_deref(), Some("PO-B-1"));
    assert_eq!(p.filler_order_number.as_deref(), Some("FO-B-1"));
    assert_eq!(
        p.service,
        CodedValue::new("CBC", Some("血常规"), Some("urn:yilian:local-code"))
    );
    assert_eq!(p.specimen.as_ref().map(|s| s.code.as_str()), Some("BLD"));
    assert_eq!(p.collected_at, Some(t(2026, 11, 23, 8, 15, 0, Some(480))));
    assert_eq!(p.received_at, Some(t(2026, 11, 23, 8, 15, 0, Some(480))));
    assert_eq!(p.reported_at, Some(t(2026, 11, 23, 9, 30, 0, Some(480))));
    assert_eq!(p.status, PanelStatus::Final);
    let codes: Vec<&str> = p.results.iter().map(|r| r.code.code.as_str()).collect();
    assert_eq!(codes, ["WBC", "RBC", "HGB", "PLT", "NEUT%"]);
    let rbc = &p.results[1];
    assert_eq!(rbc.set_id, Some(2));
    assert_eq!(rbc.loinc.as_deref(), Some("789-8"));
    assert_eq!(rbc.other_codes.len(), 1);
    assert!(rbc.other_codes[0].is_loinc());
    let q = rbc.quantity().unwrap();
    assert_eq!((q.value, q.decimal.as_str()), (4.6, "4.6"));
    assert!(q.unit.as_ref().unwrap().is_ucum());
    assert_eq!(q.unit_code(), Some("10*12/L"));
    let rr = rbc.reference_range.as_ref().unwrap();
    assert_eq!(
        (rr.low, rr.high, rr.text.as_deref()),
        (Some(4.3), Some(5.8), Some("4.3-5.8"))
    );
    assert_eq!(rbc.abnormal_flags, [AbnormalFlag::Normal]);
    assert_eq!(rbc.status, ResultStatus::Final);
    assert_eq!(rbc.observed_at, Some(t(2026, 11, 23, 9, 30, 0, Some(480))));
}

#[test]
fn critical_potassium_and_corrections() {
    let text = fx::fhir_bundle_potassium_critical("P002", "HX", "B-K");
    let panels = parse_fhir_lab(text.as_bytes()).unwrap();
    let critical: Vec<_> = panels[0].lab_flagged_critical().collect();
    assert_eq!(critical.len(), 1);
    assert_eq!(critical[0].loinc.as_deref(), Some("2823-3"));
    assert_eq!(critical[0].numeric(), Some(6.8));
    assert_eq!(critical[0].abnormal_flags, [AbnormalFlag::CriticalHigh]);

    let spec = LabSpec::new("P002", "HX", "B-K", "R4").corrected("B-K2");
    let text = fx::fhir_bundle(&spec, &fx::electrolytes_critical());
    let panels = parse_fhir_lab(text.as_bytes()).unwrap();
    assert_eq!(panels[0].status, PanelStatus::Corrected);
    assert!(
        panels[0]
            .results
            .iter()
            .all(|r| r.status == ResultStatus::Corrected)
    );
    assert_eq!(panels[0].filler_order_number.as_deref(), Some("FO-B-K"));

    let tni = fx::fhir_bundle(
        &LabSpec::new("P3", "HX", "B-T", "R4"),
        &fx::troponin("<0.010"),
    );
    let panels = parse_fhir_lab(tni.as_bytes()).unwrap();
    let q = panels[0].results[0].quantity().unwrap();
    assert_eq!((q.comparator, q.value), (Some(Comparator::Lt), 0.01));
}

/// A bare DiagnosticReport whose Patient and Observations are contained.
fn bare_report() -> Value {
    json!({
        "resourceType": "DiagnosticReport",
        "id": "dr-1",
        "status": "amended",
        "code": { "text": "尿常规" },
        "subject": { "reference": "#pat" },
        "effectiveDateTime": "2026-11-23T08:00:00Z",
        "performer": [{ "display": "Township Lab" }],
        "basedOn": [{ "identifier": { "value": "ORDER-9" } }],
        "contained": [
            { "resourceType": "Patient", "id": "pat",
              "identifier": [{ "system": "urn:oid:1.2.156.112604", "value": "11010519491231002X", "type": { "text": "身份证" } }, { "value": "" }],
              "name": [{ "text": "王五" }], "gender": "female", "birthDate": "1949-12" },
            { "resourceType": "Observation", "id": "o1", "status": "final",
              "code": { "coding": [{ "system": "http://loinc.org", "code": "5811-5", "display": "Specific gravity" }] },
              "valueQuantity": { "value": 1.02 } },
            { "resourceType": "Observation", "id": "o2", "status": "final",
              "code": { "coding": [{ "system": "urn:local", "code": "PRO" }] },
              "valueCodeableConcept": { "coding": [{ "system": "urn:local", "code": "NEG", "display": "阴性" }] },
              "interpretation": [{ "coding": [{ "code": "N" }] }] },
            { "resourceType": "Observation", "id": "o3", "status": "preliminary",
              "code": { "coding": [{ "code": "NOTE" }] }, "valueString": "微浑" },
            { "resourceType": "Observation", "id": "o4", "status": "final",
              "code": { "coding": [{ "code": "CNT" }] }, "valueInteger": 3 },
            { "resourceType": "Observation", "id": "o5", "status": "final",
              "code": { "coding": [{ "code": "NIT" }] }, "valueBoolean": false },
            { "resourceType": "Observation", "id": "o6", "status": "final",
              "code": { "coding": [{ "code": "TITER" }] },
              "valueRatio": { "numerator": { "value": 1 }, "denominator": { "value": 128 } } },
            { "resourceType": "Observation", "id": "o7", "status": "final",
              "code": { "coding": [{ "code": "RBC-HPF" }] },
              "valueRange": { "low": { "value": 0 }, "high": { "value": 3 } } },
            { "resourceType": "Observation", "id": "o8", "status": "cancelled",
              "code": { "coding": [{ "code": "GLU" }] },
              "dataAbsentReason": { "coding": [{ "code": "not-performed" }] } },
            { "resourceType": "Observation", "id": "grp", "status": "final",
              "code": { "coding": [{ "code": "MICRO" }] },
              "hasMember": [{ "reference": "#m1" }] },
            { "resourceType": "Observation", "id": "m1", "status": "entered-in-error",
              "code": { "coding": [{ "code": "WBC-HPF" }] },
              "valueQuantity": { "value": 5, "comparator": ">=", "unit": "/HPF" },
              "referenceRange": [{ "text": "0-5" }],
              "effectivePeriod": { "start": "2026-11-23T08:30:00.123+08:00" } }
        ],
        "result": [
            { "reference": "#o1" }, { "reference": "#o2" }, { "reference": "#o3" }, { "reference": "#o4" },
            { "reference": "#o5" }, { "reference": "#o6" }, { "reference": "#o7" }, { "reference": "#o8" },
            { "reference": "#grp" }
        ]
    })
}

#[test]
fn a_bare_report_with_contained_resources() {
    let panels = parse_value(&bare_report()).unwrap();
    let p = &panels[0];
    p.validate().unwrap();
    assert_eq!(p.message_id, "dr-1");
    assert_eq!(p.status, PanelStatus::Corrected);
    assert_eq!(p.service, CodedValue::new("尿常规", Some("尿常规"), None));
    assert_eq!(p.performing_lab.as_deref(), Some("Township Lab"));
    assert_eq!(p.placer_order_number.as_deref(), Some("ORDER-9"));
    assert_eq!(p.collected_at, Some(t(2026, 11, 23, 8, 0, 0, Some(0))));
    assert_eq!(p.patient.identifiers.len(), 1);
    let id = &p.patient.identifiers[0];
    assert_eq!(
        (id.assigning_authority.as_deref(), id.id_type.as_deref()),
        (Some("urn:oid:1.2.156.112604"), Some("身份证"))
    );
    assert_eq!(p.patient.name.as_deref(), Some("王五"));
    assert_eq!(p.patient.birth_date.as_deref(), Some("194912"));
    assert_eq!(p.patient.sex, Some(Sex::Female));

    let values: Vec<(&str, &LabValue)> = p
        .results
        .iter()
        .map(|r| (r.code.code.as_str(), &r.value))
        .collect();
    let q = |value: f64, decimal: &str, comparator, unit: Option<&str>| {
        LabValue::Numeric(Quantity {
            value,
            decimal: decimal.into(),
            comparator,
            unit: unit.map(|u| CodedValue::new(u, Some(u), None)),
        })
    };
    assert_eq!(
        values,
        [
            ("5811-5", &q(1.02, "1.02", None, None)),
            (
                "PRO",
                &LabValue::Coded(CodedValue::new("NEG", Some("阴性"), Some("urn:local")))
            ),
            ("NOTE", &LabValue::Text("微浑".into())),
            ("CNT", &q(3.0, "3", None, None)),
            ("NIT", &LabValue::Text("false".into())),
            ("TITER", &LabValue::Text("1:128".into())),
            ("RBC-HPF", &LabValue::Text("0-3".into())),
            ("GLU", &LabValue::Absent),
            ("WBC-HPF", &q(5.0, "5", Some(Comparator::Ge), Some("/HPF"))),
        ]
    );
    assert_eq!(p.results[0].loinc.as_deref(), Some("5811-5"));
    assert_eq!(p.results[2].status, ResultStatus::Preliminary);
    assert_eq!(p.results[7].status, ResultStatus::Cancelled);
    let member = &p.results[8];
    assert_eq!(member.set_id, Some(9));
    assert_eq!(member.status, ResultStatus::EnteredInError);
    assert_eq!(
        member
            .reference_range
            .as_ref()
            .and_then(|r| r.text.as_deref()),
        Some("0-5")
    );
    assert_eq!(
        member.observed_at,
        Some(t(2026, 11, 23, 8, 30, 0, Some(480)))
    );
}

#[test]
fn references_by_type_and_id_absolute_urls_and_logical_identifiers() {
    let bundle = json!({
        "resourceType": "Bundle", "type": "collection", "identifier": { "value": "COLL-1" },
        "entry": [
            { "fullUrl": "http://lab.example/fhir/Observation/k",
              "resource": { "resourceType": "Observation", "id": "k", "status": "final",
                "code": { "coding": [{ "system": "http://loinc.org", "code": "2823-3" }] },
                "valueQuantity": { "value": 6.8, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L" },
                "interpretation": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "HH" }] }] } },
            { "resource": { "resourceType": "Observation", "id": "na", "status": "final",
                "code": { "coding": [{ "code": "NA" }] }, "valueQuantity": { "value": 138 } } },
            { "resource": { "resourceType": "Organization", "id": "lab", "name": "县检验中心" } },
            { "resource": { "resourceType": "DiagnosticReport", "id": "r", "status": "final",
                "code": { "coding": [{ "code": "LYTES" }] },
                "subject": { "identifier": { "system": "urn:yilian:issuer:HX", "value": "P9" } },
                "performer": [{ "reference": "Organization/lab" }],
                "issued": "2026-11-23",
                "result": [{ "reference": "Observation/k" }, { "reference": "http://lab.example/fhir/Observation/na" }] } },
            { "resource": { "resourceType": "DiagnosticReport", "id": "r2", "status": "registered",
                "code": { "coding": [{ "code": "LIPIDS" }] },
                "subject": { "identifier": { "value": "P9" } } } }
        ]
    });
    let panels = parse_value(&bundle).unwrap();
    assert_eq!(panels.len(), 2);
    let p = &panels[0];
    assert_eq!(p.message_id, "COLL-1");
    assert_eq!(p.patient.identifiers[0].id, "P9");
    assert_eq!(p.performing_lab.as_deref(), Some("县检验中心"));
    assert_eq!(p.reported_at, Some(t(2026, 11, 23, 0, 0, 0, None)));
    assert_eq!(p.results.len(), 2);
    assert!(p.results[0].lab_flagged_critical());
    assert_eq!(p.results[0].code.code, "2823-3");
    assert_eq!(p.results[1].numeric(), Some(138.0));
    assert_eq!(panels[1].status, PanelStatus::Registered);
    assert!(panels[1].results.is_empty());
}

#[test]
fn fhir_date_times() {
    let cases = [
        ("2026-11-23", Some(t(2026, 11, 23, 0, 0, 0, None))),
        (
            "2026-11-23T08:15:30",
            Some(t(2026, 11, 23, 8, 15, 30, None)),
        ),
        (
            "2026-11-23T08:15:30Z",
            Some(t(2026, 11, 23, 8, 15, 30, Some(0))),
        ),
        (
            "2026-11-23T08:15:30.5+08:00",
            Some(t(2026, 11, 23, 8, 15, 30, Some(480))),
        ),
        (
            "2026-11-23T08:15:30-05:30",
            Some(t(2026, 11, 23, 8, 15, 30, Some(-330))),
        ),
        ("2026-11", None),
        ("2026-13-01", None),
        ("2026-11-23T25:00:00Z", None),
        ("2026-11-23T08:15", None),
        ("2026-11-23T08:15:30+0800", None),
        ("2026-11-23T08:15:30.+08:00", None),
        ("20261123", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_time(text), want, "{text}");
    }
}

#[test]
fn every_error_names_its_path() {
    let cbc: Value = serde_json::from_str(&fx::fhir_bundle_cbc("P001", "HX", "B-E")).unwrap();
    // Entry 4 is the DiagnosticReport, 5.. the Observations, 0 the Patient.
    // Sets (or adds) the member at `pointer`.
    let with = |pointer: &str, value: Value| {
        let mut v = cbc.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match v.pointer_mut(parent).unwrap() {
            Value::Object(m) => {
                m.insert(key.to_string(), value);
            }
            Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
            _ => panic!("{pointer}"),
        }
        v
    };
    let without = |pointer: &str, key: &str| {
        let mut v = cbc.clone();
        v.pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        v
    };
    let j = |v: Value| v.to_string().into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not json", b"{ \"resourceType\": ".to_vec(), "not JSON: "),
        ("array", j(json!([1])), "(root): expected a JSON object"),
        (
            "no type",
            j(json!({})),
            "resourceType: required element is missing",
        ),
        (
            "patient",
            j(json!({ "resourceType": "Patient" })),
            "resourceType \"Patient\" is not a lab input",
        ),
        (
            "searchset",
            j(with("/type", json!("searchset"))),
            "type: \"searchset\" is not a bundle type",
        ),
        (
            "no id",
            j(without("", "id")),
            "id: required element is missing",
        ),
        (
            "no report",
            j(json!({ "resourceType": "Bundle", "id": "x", "type": "collection", "entry": [] })),
            "the bundle holds no DiagnosticReport",
        ),
        (
            "entry not array",
            j(with("/entry", json!({}))),
            "entry: expected an array",
        ),
        (
            "resource not object",
            j(with("/entry/1/resource", json!("x"))),
            "entry[1].resource: expected an object",
        ),
        (
            "value as string",
            j(with("/entry/6/resource/valueQuantity/value", json!("4.60"))),
            "entry[6].resource.valueQuantity.value: expected a number",
        ),
        (
            "value missing",
            j(without("/entry/6/resource/valueQuantity", "value")),
            "entry[6].resource.valueQuantity.value: required element is missing",
        ),
        (
            "comparator",
            j(with(
                "/entry/6/resource/valueQuantity/comparator",
                json!("~"),
            )),
            "entry[6].resource.valueQuantity.comparator: \"~\" is not a comparator",
        ),
        (
            "obs status",
            j(with("/entry/5/resource/status", json!("unknown"))),
            "entry[5].resource.status: \"unknown\" is not an Observation status",
        ),
        (
            "obs status missing",
            j(without("/entry/5/resource", "status")),
            "entry[5].resource.status: required element is missing",
        ),
        (
            "report status",
            j(with("/entry/4/resource/status", json!("done"))),
            "entry[4].resource.status: \"done\" is not a DiagnosticReport status",
        ),
        (
            "report code",
            j(without("/entry/4/resource", "code")),
            "entry[4].resource.code: required element is missing",
        ),
        (
            "empty code",
            j(with("/entry/4/resource/code", json!({ "coding": [] }))),
            "entry[4].resource.code.coding: required element is missing",
        ),
        (
            "unresolved",
            j(with(
                "/entry/4/resource/result/2/reference",
                json!("urn:uuid:nope"),
            )),
            "entry[4].resource.result[2].reference: reference \"urn:uuid:nope\" does not resolve to a Observation",
        ),
        (
            "wrong target type",
            j(with(
                "/entry/4/resource/result/0/reference",
                cbc["entry"][0]["fullUrl"].clone(),
            )),
            "entry[4].resource.result[0].reference: reference",
        ),
        (
            "result without reference",
            j(with(
                "/entry/4/resource/result/0",
                json!({ "display": "x" }),
            )),
            "entry[4].resource.result[0].reference: required element is missing",
        ),
        (
            "subject missing",
            j(without("/entry/4/resource", "subject")),
            "entry[4].resource.subject: required element is missing",
        ),
        (
            "subject empty",
            j(with("/entry/4/resource/subject", json!({}))),
            "entry[4].resource.subject.reference: required element is missing",
        ),
        (
            "no identifiers",
            j(without("/entry/0/resource", "identifier")),
            "entry[0].resource.identifier: required element is missing",
        ),
        (
            "gender",
            j(with("/entry/0/resource/gender", json!("m"))),
            "entry[0].resource.gender: \"m\" is not an administrative gender",
        ),
        (
            "birth date",
            j(with("/entry/0/resource/birthDate", json!("15/01/1980"))),
            "entry[0].resource.birthDate: \"…\" is not a date",
        ),
        (
            "given not string",
            j(with("/entry/0/resource/name/0/given", json!([1]))),
            "entry[0].resource.name[0].given[0]: expected a string",
        ),
        (
            "effective",
            j(with(
                "/entry/7/resource/effectiveDateTime",
                json!("yesterday"),
            )),
            "entry[7].resource.effectiveDateTime: \"yesterday\" is not a date/time",
        ),
        (
            "issued",
            j(with("/entry/4/resource/issued", json!(20261123))),
            "entry[4].resource.issued: expected a string",
        ),
        (
            "range low",
            j(with(
                "/entry/5/resource/referenceRange/0/low/value",
                json!(true),
            )),
            "entry[5].resource.referenceRange[0].low.value: expected a number",
        ),
        (
            "two values",
            j(with("/entry/5/resource/valueString", json!("x"))),
            "entry[5].resource.valueString: \"valueString\" is a second value[x]",
        ),
        (
            "attachment",
            j(with(
                "/entry/5/resource/valueAttachment",
                json!({ "data": "AAAA" }),
            )
            .pipe(|mut v| {
                v["entry"][5]["resource"]
                    .as_object_mut()
                    .map(|o| o.remove("valueQuantity"));
                v
            })),
            "entry[5].resource.valueAttachment: \"valueAttachment\" is not a supported lab value type",
        ),
        (
            "interpretation",
            j(with("/entry/5/resource/interpretation", json!("H"))),
            "entry[5].resource.interpretation: expected an array",
        ),
        (
            "integer",
            j(
                with("/entry/5/resource/valueInteger", json!(1.5)).pipe(|mut v| {
                    v["entry"][5]["resource"]
                        .as_object_mut()
                        .map(|o| o.remove("valueQuantity"));
                    v
                }),
            ),
            "entry[5].resource.valueInteger: expected an integer",
        ),
    ];
    for (name, bytes, want) in cases {
        let err = parse_fhir_lab(&bytes).expect_err(name);
        let text = err.to_string();
        assert!(text.contains(want), "{name}: {text}");
        if let Some(path) = err.path() {
            assert!(text.starts_with(path), "{name}: {text}");
        }
    }
}

/// `value.pipe(f)`: lets a table entry adjust a built value in place.
trait Pipe: Sized {
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }
}
impl Pipe for Value {}

#[test]
fn member_loops_are_refused() {
    let mut v = bare_report();
    v["contained"][10]["hasMember"] = json!([{ "reference": "#grp" }]);
    v["contained"][10]
        .as_object_mut()
        .unwrap()
        .remove("valueQuantity");
    v["result"] = json!([{ "reference": "#grp" }]);
    let err = parse_value(&v).unwrap_err();
    assert!(matches!(err, FhirError::TooDeep { .. }), "{err}");

    // Fan-out: four levels of groups, each naming the next 50 times, would be 6 million results
    // from a few kilobytes.
    let mut v = bare_report();
    let contained = v["contained"].as_array_mut().unwrap();
    for level in 0..4 {
        let next = if level == 3 {
            "o1".to_string()
        } else {
            format!("g{}", level + 1)
        };
        contained.push(json!({
            "resourceType": "Observation", "id": format!("g{level}"), "status": "final",
            "code": { "coding": [{ "code": "G" }] },
            "hasMember": vec![json!({ "reference": format!("#{next}") }); 50]
        }));
    }
    v["result"] = json!([{ "reference": "#g0" }]);
    let err = parse_value(&v).unwrap_err();
    assert!(matches!(err, FhirError::TooManyResults { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: byte mutations (mostly JSON errors) and structural mutations (well-formed JSON with
// nodes replaced, removed or moved); every outcome is Ok or a typed refusal.

use crate::mutate::{Mutator, Rng};

fn seeds() -> Vec<Value> {
    vec![
        serde_json::from_str(&fx::fhir_bundle_cbc("P001", "HX", "F1")).unwrap(),
        serde_json::from_str(&fx::fhir_bundle_potassium_critical("P2", "HX", "F2")).unwrap(),
        bare_report(),
    ]
}

/// Every node's JSON pointer.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(
                    child,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn replacement(rng: &mut Rng, seed: &Value) -> Value {
    match rng.below(10) {
        0 => Value::Null,
        1 => json!(rng.next() as f64 / 1e6 - 1e3),
        2 => json!(["x", 1, null]),
        3 => json!({}),
        4 => json!(""),
        5 => json!("#grp"),
        6 => json!(f64::MAX),
        7 => json!(
            [
                "final",
                "corrected",
                "amended",
                "unknown",
                "2026-11-23T08:00:00Z",
                "2026-02-30"
            ][rng.below(6)]
        ),
        _ => {
            // A node from elsewhere in the document (a reference, a resource, a coding…).
            let mut all = Vec::new();
            pointers(seed, String::new(), &mut all);
            let p = &all[rng.below(all.len())];
            seed.pointer(p).cloned().unwrap_or(Value::Null)
        }
    }
}

fn mutate_structure(rng: &mut Rng, seed: &Value) -> Value {
    let mut v = seed.clone();
    for _ in 0..1 + rng.below(3) {
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        let p = all[rng.below(all.len())].clone();
        let new = replacement(rng, seed);
        if let Some(slot) = v.pointer_mut(&p) {
            *slot = new;
        }
    }
    v
}

/// Byte mutations with JSON's punctuation: mostly documents serde_json refuses.
const JSON: Mutator = Mutator {
    alphabet: b"{}[]\",:0-e.tn\\",
    max_insert: 4,
    max_splice: 32,
    max_drain: 16,
    le_ints: false,
};

fn mutate_bytes(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    JSON.mutate(rng, seed)
}

fn check(i: usize, input: &[u8], ok: &mut usize, refused: &mut usize) {
    match std::panic::catch_unwind(|| parse_fhir_lab(input)) {
        Ok(Ok(panels)) => {
            assert!(!panels.is_empty());
            for p in &panels {
                p.validate()
                    .unwrap_or_else(|e| panic!("iteration {i}: invalid panel: {e}"));
            }
            *ok += 1;
        }
        Ok(Err(e)) => {
            assert!(!e.to_string().is_empty());
            *refused += 1;
        }
        Err(_) => panic!(
            "iteration {i} panicked on {}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn fuzz_fhir_parser_never_panics() {
    let seeds = seeds();
    let seed_bytes: Vec<Vec<u8>> = seeds.iter().map(|v| v.to_string().into_bytes()).collect();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..3000 {
        let v = mutate_structure(&mut rng, &seeds[i % seeds.len()]);
        check(i, v.to_string().as_bytes(), &mut ok, &mut refused);
    }
    eprintln!("fuzz fhir structure: 3000 inputs, {ok} parsed, {refused} refused");
    assert!(ok > 100 && refused > 100, "ok {ok}, refused {refused}");
    let (mut ok, mut refused) = (0, 0);
    for i in 0..3000 {
        let b = mutate_bytes(&mut rng, &seed_bytes[i % seed_bytes.len()]);
        check(i, &b, &mut ok, &mut refused);
    }
    eprintln!("fuzz fhir bytes: 3000 inputs, {ok} parsed, {refused} refused");
    assert!(refused > 100);
    // Deep nesting is refused by serde_json's recursion limit, not by a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        parse_fhir_lab(deep.as_bytes()),
        Err(FhirError::Json { .. })
    ));
}
