use serde_json::json;
use yilian_domain::lab::{CodedValue, Comparator, LabValue, Quantity, ResultStatus};
use yilian_fixtures::lab::{self as fx, LabSpec};

use super::*;
use crate::fhir_lab::parse_fhir_lab;
use crate::hl7v2::parse_oru_r01;

fn base(absolute: bool) -> FhirBase {
    FhirBase {
        full_url: absolute.then(|| "https://hub.example/fhir/r4".to_string()),
        definitions: "https://hub.example/fhir/r4".into(),
        default_offset_minutes: 480,
    }
}

fn cbc_panel() -> LabPanel {
    let msg = fx::oru_r01(&LabSpec::new("P001", "HX", "M1", "2.5.1"), &fx::cbc());
    parse_oru_r01(msg.as_bytes()).unwrap().panels.remove(0)
}

const PANEL: &str = "01JD0000000000000000000000";
const RECEIVED: UnixMillis = UnixMillis(1_795_400_000_000);

fn recognised() -> Recognition {
    Recognition {
        recognised: true,
        scope: Some("alliance".into()),
        valid_until: Some(UnixMillis(1_797_984_900_000)),
        eqa: Some("2026 省临检中心室间质评".into()),
        reasons: Vec::new(),
    }
}

fn input<'a>(
    panel: &'a LabPanel,
    report: &'a Recognition,
    results: &'a [Recognition],
) -> ReportInput<'a> {
    ReportInput {
        id: PANEL,
        patient_id: "0123456789abcdef",
        panel,
        service_loinc: Some("58410-2"),
        sending_facility: "COUNTYLAB",
        performer_display: Some("县人民医院"),
        received_at: RECEIVED,
        amended: false,
        recognition: report,
        result_recognition: results,
    }
}

#[test]
fn a_report_carries_codes_times_performer_specimen_and_the_hr_tag() {
    let panel = cbc_panel();
    let rec = recognised();
    let per_result = vec![recognised(); panel.results.len()];
    let r = diagnostic_report(&base(true), &input(&panel, &rec, &per_result));
    assert_eq!(r["resourceType"], "DiagnosticReport");
    assert_eq!(r["id"], PANEL);
    assert_eq!(r["status"], "final");
    assert_eq!(r["category"][0]["coding"][0]["code"], "LAB");
    assert_eq!(
        r["category"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0074"
    );
    // The local service code in the lab's code system, then its LOINC (sent as the alternate triple).
    assert_eq!(
        r["code"]["coding"],
        json!([
            { "system": "urn:yilian:lab-code:COUNTYLAB", "code": "CBC", "display": "血常规" },
            { "system": "http://loinc.org", "code": "58410-2" }
        ])
    );
    assert_eq!(r["subject"]["reference"], "Patient/0123456789abcdef");
    assert_eq!(r["effectiveDateTime"], "2026-11-23T08:15:00+08:00");
    assert_eq!(r["issued"], "2026-11-23T09:30:00+08:00");
    assert_eq!(r["performer"][0]["display"], "县人民医院");
    assert_eq!(r["performer"][0]["identifier"]["value"], "COUNTYLAB");
    assert_eq!(r["identifier"][0]["system"], "urn:yilian:filler:COUNTYLAB");
    assert_eq!(r["identifier"][0]["value"], "FO-M1");
    assert_eq!(r["identifier"][1]["type"]["coding"][0]["code"], "PLAC");
    assert_eq!(r["basedOn"][0]["identifier"]["value"], "PO-M1");
    // The specimen is contained and referenced locally.
    assert_eq!(r["specimen"][0]["reference"], "#specimen");
    assert_eq!(r["contained"][0]["resourceType"], "Specimen");
    assert_eq!(r["contained"][0]["type"]["coding"][0]["code"], "BLD");
    assert_eq!(
        r["contained"][0]["type"]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0487"
    );
    assert_eq!(r["result"].as_array().unwrap().len(), 5);
    assert_eq!(
        r["result"][4]["reference"],
        format!("Observation/{PANEL}-5")
    );
    // Recognition: the tag and the extension.
    assert_eq!(r["meta"]["tag"][0]["code"], "HR");
    assert_eq!(
        r["meta"]["tag"][0]["system"],
        "https://hub.example/fhir/r4/CodeSystem/recognition"
    );
    let ext = &r["extension"][0];
    assert_eq!(
        ext["url"],
        "https://hub.example/fhir/r4/StructureDefinition/recognition"
    );
    assert_eq!(
        ext["extension"][0],
        json!({ "url": "recognised", "valueBoolean": true })
    );
    assert_eq!(
        ext["extension"][1],
        json!({ "url": "scope", "valueString": "alliance" })
    );
    assert_eq!(ext["extension"][2]["url"], "validUntil");
    assert_eq!(r["meta"]["lastUpdated"], instant(RECEIVED));
}

#[test]
fn observations_carry_ucum_quantities_ranges_and_interpretations() {
    let mut panel = cbc_panel();
    panel.results[1].abnormal_flags = vec![AbnormalFlag::High, AbnormalFlag::Other("XYZ".into())];
    let rec = recognised();
    let mut per_result = vec![recognised(); panel.results.len()];
    per_result[1] = Recognition {
        reasons: vec!["performing lab COUNTYLAB has no 2026 EQA pass for RBC".into()],
        ..Recognition::default()
    };
    let input = input(&panel, &rec, &per_result);
    let obs = observations(&base(true), &input);
    assert_eq!(obs.len(), 5);
    let wbc = &obs[0];
    assert_eq!(wbc["id"], format!("{PANEL}-1"));
    assert_eq!(wbc["status"], "final");
    assert_eq!(wbc["category"][0]["coding"][0]["code"], "laboratory");
    assert_eq!(
        wbc["code"]["coding"],
        json!([
            { "system": "urn:yilian:lab-code:COUNTYLAB", "code": "WBC", "display": "白细胞计数" },
            { "system": "http://loinc.org", "code": "6690-2" }
        ])
    );
    assert_eq!(
        wbc["valueQuantity"],
        json!({ "value": 6.5, "unit": "10*9/L", "system": "http://unitsofmeasure.org", "code": "10*9/L" })
    );
    assert_eq!(wbc["referenceRange"][0]["low"]["value"], 3.5);
    assert_eq!(
        wbc["referenceRange"][0]["high"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(wbc["referenceRange"][0]["text"], "3.5-9.5");
    assert_eq!(
        wbc["interpretation"][0]["coding"][0],
        json!({ "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N" })
    );
    assert_eq!(wbc["effectiveDateTime"], "2026-11-23T08:15:00+08:00");
    assert_eq!(wbc["meta"]["tag"][0]["code"], "HR");
    // An integer stays an integer.
    assert_eq!(obs[2]["valueQuantity"]["value"], json!(145));
    // Not recognised: no tag, the reasons in the extension; an unknown flag as text.
    let rbc = &obs[1];
    assert!(rbc["meta"].get("tag").is_none(), "{rbc}");
    assert_eq!(
        rbc["extension"][0]["extension"],
        json!([
            { "url": "recognised", "valueBoolean": false },
            { "url": "reason", "valueString": "performing lab COUNTYLAB has no 2026 EQA pass for RBC" }
        ])
    );
    assert_eq!(rbc["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(rbc["interpretation"][1], json!({ "text": "XYZ" }));
    assert!(observation(&base(true), &input, 6).is_none());
    assert!(observation(&base(true), &input, 0).is_none());
}

#[test]
fn other_values_statuses_and_units_follow_fhir() {
    let mut panel = cbc_panel();
    panel.status = PanelStatus::Corrected;
    panel.collected_at = None;
    panel.reported_at = None;
    panel.specimen = None;
    panel.received_at = None;
    panel.results[0].value = LabValue::Coded(CodedValue::new("POS", Some("阳性"), Some("HL70078")));
    panel.results[1].value = LabValue::Text("1:128".into());
    panel.results[2].value = LabValue::Absent;
    panel.results[2].status = ResultStatus::Cancelled;
    panel.results[3].value = LabValue::Numeric(Quantity {
        value: 0.01,
        decimal: "0.010".into(),
        comparator: Some(Comparator::Lt),
        unit: Some(CodedValue::new("ng/mL", None, None)),
    });
    panel.results[3].status = ResultStatus::Corrected;
    panel.results[4].observed_at = None;
    let rec = Recognition::default();
    let input = input(&panel, &rec, &[]);
    let r = diagnostic_report(&base(false), &input);
    assert_eq!(r["status"], "corrected");
    assert!(r.get("effectiveDateTime").is_none());
    assert!(r.get("specimen").is_none() && r.get("contained").is_none());
    assert_eq!(
        r["issued"],
        instant(RECEIVED),
        "no report time: when the hub received it"
    );
    assert!(r["meta"].get("tag").is_none());
    let obs = observations(&base(false), &input);
    assert_eq!(
        obs[0]["valueCodeableConcept"],
        json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0078", "code": "POS", "display": "阳性" }], "text": "阳性" })
    );
    assert_eq!(obs[1]["valueString"], "1:128");
    assert_eq!(obs[2]["status"], "cancelled");
    assert_eq!(
        obs[2]["dataAbsentReason"]["coding"][0]["code"],
        "not-performed"
    );
    assert!(obs[2].get("valueQuantity").is_none());
    // A unit that is not UCUM is text only; the comparator is kept.
    assert_eq!(
        obs[3]["valueQuantity"],
        json!({ "value": 0.01, "comparator": "<", "unit": "ng/mL" })
    );
    assert_eq!(obs[3]["status"], "corrected");
    // Falls back to the result's own time when the panel has no collection time.
    assert!(obs[4].get("effectiveDateTime").is_none());
    assert_eq!(obs[0]["effectiveDateTime"], "2026-11-23T09:30:00+08:00");
    // A final report replacing an earlier final one is amended.
    let mut panel = cbc_panel();
    panel.status = PanelStatus::Final;
    let mut amended = input.clone();
    amended.panel = &panel;
    amended.amended = true;
    assert_eq!(
        diagnostic_report(&base(false), &amended)["status"],
        "amended"
    );
    assert_eq!(observations(&base(false), &amended)[0]["status"], "amended");
}

#[test]
fn lab_times_without_an_offset_get_the_alliances() {
    let bundle =
        fx::fhir_bundle(&LabSpec::new("P1", "HX", "B1", "R4"), &fx::liver()).replace("+08:00", "");
    let panel = parse_fhir_lab(bundle.as_bytes()).unwrap().remove(0);
    assert_eq!(panel.collected_at.unwrap().utc_offset_minutes, None);
    let rec = Recognition::default();
    let mut i = input(&panel, &rec, &[]);
    i.sending_facility = "COUNTY LAB";
    let r = diagnostic_report(&base(true), &i);
    assert_eq!(r["effectiveDateTime"], "2026-11-23T08:15:00+08:00");
    // A code system sent as a URI is kept; a facility with a space is escaped in the hub's URNs.
    assert_eq!(r["code"]["coding"][0]["system"], "urn:yilian:local-code");
    assert_eq!(
        r["identifier"][0]["system"],
        "urn:yilian:filler:COUNTY%20LAB"
    );
}

#[test]
fn patients_show_identifiers_name_gender_birth_date_only() {
    let p = patient(&PatientInput {
        id: "0123456789abcdef".into(),
        identifiers: vec![
            ("HX".into(), "P001".into()),
            ("urn:oid:1.2.3".into(), "M-9".into()),
        ],
        name: Some("测试^甲".into()),
        birth_date: Some("19800115".into()),
        sex: Some(Sex::Male),
        last_updated: None,
    });
    assert_eq!(
        p,
        json!({
            "resourceType": "Patient",
            "id": "0123456789abcdef",
            "identifier": [
                { "system": "urn:yilian:issuer:HX", "value": "P001" },
                { "system": "urn:oid:1.2.3", "value": "M-9" }
            ],
            "name": [{ "family": "测试", "given": ["甲"] }],
            "gender": "male",
            "birthDate": "1980-01-15"
        })
    );
    let whole = patient(&PatientInput {
        id: "x".into(),
        name: Some("张三丰".into()),
        birth_date: Some("198001".into()),
        ..PatientInput::default()
    });
    assert_eq!(whole["name"], json!([{ "text": "张三丰" }]));
    assert_eq!(whole["birthDate"], "1980-01");
    assert!(whole.get("identifier").is_none() && whole.get("gender").is_none());
}

#[test]
fn names_ids_and_systems_round_trip() {
    assert_eq!(patient_id(&"ab".repeat(32)), "abababababababab");
    assert!(is_patient_id("0123456789abcdef"));
    assert!(!is_patient_id("0123456789ABCDEF") && !is_patient_id("0123"));
    assert_eq!(observation_id(PANEL, 12), format!("{PANEL}-12"));
    assert_eq!(
        parse_observation_id(&format!("{PANEL}-12")),
        Some((PANEL, 12))
    );
    for bad in ["", "-1", "X-0", "X-", "X-01", "X-+1", "X"] {
        assert_eq!(parse_observation_id(bad), None, "{bad}");
    }
    assert_eq!(issuer_system("HX"), "urn:yilian:issuer:HX");
    assert_eq!(
        issuers_of_system("urn:yilian:issuer:HX"),
        vec!["urn:yilian:issuer:HX", "HX"]
    );
    assert_eq!(issuers_of_system("urn:yilian:issuer:A%20B")[1], "A B");
    assert_eq!(issuers_of_system("urn:oid:1.2"), vec!["urn:oid:1.2"]);
    assert_eq!(code_system(Some("LN"), "F"), "http://loinc.org");
    assert_eq!(code_system(Some("ucum"), "F"), "http://unitsofmeasure.org");
    assert_eq!(
        code_system(Some("HL70487"), "F"),
        "http://terminology.hl7.org/CodeSystem/v2-0487"
    );
    assert_eq!(code_system(Some("L"), "F"), "urn:yilian:lab-code:F");
    assert_eq!(code_system(None, "F"), "urn:yilian:lab-code:F");
    assert_eq!(
        code_system(Some("99LIS"), "F"),
        "urn:yilian:lab-code:F:99LIS"
    );
    assert_eq!(code_system(Some("http://x.org/cs"), "F"), "http://x.org/cs");
    assert_eq!(instant(UnixMillis(0)), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        instant(UnixMillis(1_709_208_000_123)),
        "2024-02-29T12:00:00.123Z"
    );
    assert_eq!(instant(UnixMillis(-1)), "1969-12-31T23:59:59.999Z");
}

#[test]
fn bundles_count_matches_and_name_their_entries() {
    let panel = cbc_panel();
    let rec = recognised();
    let input = input(&panel, &rec, &[]);
    let report = diagnostic_report(&base(true), &input);
    let obs = observations(&base(true), &input);
    let mut entries = vec![(report, SearchMode::Match)];
    entries.extend(obs.into_iter().map(|o| (o, SearchMode::Include)));
    let b = searchset(
        &base(true),
        "https://hub.example/fhir/r4/DiagnosticReport?code=CBC",
        1,
        &entries,
    );
    assert_eq!(b["type"], "searchset");
    assert_eq!(b["total"], 1);
    assert_eq!(b["link"][0]["relation"], "self");
    assert_eq!(b["entry"].as_array().unwrap().len(), 6);
    assert_eq!(
        b["entry"][0]["fullUrl"],
        format!("https://hub.example/fhir/r4/DiagnosticReport/{PANEL}")
    );
    assert_eq!(b["entry"][0]["search"]["mode"], "match");
    assert_eq!(b["entry"][1]["search"]["mode"], "include");
    let relative = searchset(&base(false), "DiagnosticReport", 1, &entries);
    assert_eq!(
        relative["entry"][1]["fullUrl"],
        format!("Observation/{PANEL}-1")
    );
    let empty = searchset(&base(false), "Patient?identifier=x", 0, &[]);
    assert_eq!(empty["total"], 0);
    assert!(empty.get("entry").is_none());
    let oo = operation_outcome("error", "not-found", "no such report");
    assert_eq!(oo["issue"][0]["code"], "not-found");
    let cs = capability_statement(&base(true), "0.1.0", RECEIVED, "演示县医共体");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    let types: Vec<&str> = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["Patient", "DiagnosticReport", "Observation", "ImagingStudy"]
    );
    assert_eq!(
        cs["rest"][0]["resource"][1]["searchInclude"][0],
        "DiagnosticReport:result"
    );
}
