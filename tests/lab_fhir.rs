//! The FHIR R4 lab read API (`/fhir/r4`) end to end against the real hub (SQLite always, PostgreSQL
//! when DATABASE_URL is set): ORU^R01 messages over MLLP and HTTP and a FHIR Bundle go in, panels are
//! published (auto-released at ingest, or signed off by a lab physician), and a member hospital's
//! clinician searches and reads them over HTTP. Only published
//! panels and the newest report of an order come out, with the mutual-recognition tag as the QC
//! registry and the validity windows say; every look is audited; errors are OperationOutcomes. Every
//! resource the hub answered is checked by libraries nobody here wrote (python fhir.resources R4B and
//! fhirclient's R4 models), and fhirclient searches the hub itself, when YILIAN_TEST_PYTHON is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::{Backend, ManualClock, TestHub, backends};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yilian_app::ports::AuditEvent;
use yilian_domain::LocalPatientId;
use yilian_fixtures::lab::{
    LabSpec, cbc, electrolytes_critical, fhir_bundle, liver, oru_r01, troponin,
};

/// 2026-11-24T00:00:00Z: the day after the fixtures' specimens were collected (2026-11-23 08:15 +08:00).
const NOW: i64 = 1_795_478_400_000;
/// A valid resident ID (GB 11643): panels keyed by it match whatever issuer the lab named.
const RESIDENT: &str = "11010519491231002X";
/// The county hospital's record number of the second patient.
const MRN: &str = "XR0100";
const MRN_SYSTEM: &str = "urn:yilian:issuer:XRMYY";

/// Every FHIR answer of a test, for the external validators.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<Value>>);

impl Seen {
    fn keep(&self, v: &Value) {
        self.0.lock().unwrap().push(v.clone());
    }
    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

/// GET with an optional token: status, content type, body (JSON).
async fn fhir(
    t: &TestHub,
    seen: &Seen,
    token: Option<&str>,
    path: &str,
) -> (StatusCode, String, Value) {
    let mut req = t.http.get(t.url(path));
    if let Some(tok) = token {
        req = req.bearer_auth(tok);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    seen.keep(&body);
    (status, ct, body)
}

/// A search that must succeed: the Bundle.
async fn search(t: &TestHub, seen: &Seen, token: &str, path: &str) -> Value {
    let (status, ct, body) = fhir(t, seen, Some(token), path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    assert_eq!(ct, "application/fhir+json");
    assert_eq!(body["resourceType"], "Bundle", "{body}");
    assert_eq!(body["type"], "searchset");
    body
}

fn entries<'a>(b: &'a Value, mode: &str) -> Vec<&'a Value> {
    b["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| &e["resource"])
                .collect()
        })
        .unwrap_or_default()
}

fn ids(resources: &[&Value]) -> Vec<String> {
    resources
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn tagged_hr(r: &Value) -> bool {
    r["meta"]["tag"].as_array().is_some_and(|tags| {
        tags.iter().any(|t| {
            t["code"] == "HR"
                && t["system"]
                    .as_str()
                    .unwrap()
                    .ends_with("/fhir/r4/CodeSystem/recognition")
        })
    })
}

/// The recognition extension's reasons.
fn reasons(r: &Value) -> Vec<String> {
    r["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["url"]
                .as_str()
                .unwrap()
                .ends_with("/StructureDefinition/recognition")
        })
        .expect("recognition extension")["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["url"] == "reason")
        .map(|x| x["valueString"].as_str().unwrap().to_string())
        .collect()
}

/// Sends one ORU^R01 over MLLP; returns MSA-1.
async fn mllp_send(t: &TestHub, message: &str) -> String {
    let mut s = TcpStream::connect(t.mllp_addr).await.unwrap();
    let mut framed = vec![0x0b];
    framed.extend_from_slice(message.as_bytes());
    framed.extend_from_slice(&[0x1c, 0x0d]);
    s.write_all(&framed).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == [0x1c, 0x0d]) {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the hub closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let msa = text.split('\r').find(|l| l.starts_with("MSA|")).unwrap();
    msa.split('|').nth(1).unwrap().to_string()
}

/// Posts one ORU^R01 over HTTP; returns the stored panel id.
async fn http_hl7(t: &TestHub, token: &str, message: &str) -> String {
    let r = t
        .http
        .post(t.url("/api/v1/lab/hl7v2"))
        .bearer_auth(token)
        .header("content-type", "x-application/hl7-v2+er7")
        .body(message.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let panels = r
        .headers()
        .get("x-yilian-lab-panels")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let ack = r.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "{}", ack.replace('\r', "\n"));
    panels
}

/// Posts one FHIR Bundle; returns the stored panel id.
async fn http_fhir(t: &TestHub, token: &str, bundle: &str) -> String {
    let r = t
        .http
        .post(t.url("/api/v1/lab/fhir"))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    v["panels"][0]["panel_id"].as_str().unwrap().to_string()
}

/// A lab physician of the review pool signs the panel off: it is released (published).
async fn release(t: &TestHub, panel_id: &str) {
    let huang = t.token("huang.labdoc").await;
    let r = t
        .post_json(
            &huang,
            &format!("/api/v1/lab/panels/{panel_id}/sign"),
            &serde_json::json!({ "comment": "已复核" }),
        )
        .await;
    let status = r.status();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        r.text().await.unwrap_or_default()
    );
}

/// The county lab corrects the electrolytes (K 6.8 → 5.1, a haemolysed specimen): a new report of
/// the order, waiting for review.
async fn correct(t: &TestHub) -> String {
    let liu = t.token("liu.lab").await;
    let mut first = LabSpec::new(MRN, "XRMYY", "CL-1", "2.5.1");
    first.performing_lab = "COUNTYLAB".into();
    http_hl7(
        t,
        &liu,
        &oru_r01(&first.corrected("CL-2"), &electrolytes_critical()).replace("|6.8|", "|5.1|"),
    )
    .await
}

/// Publishes the electrolytes and their correction; returns the correction.
async fn publish_corrected(t: &TestHub, lab: &Lab) -> String {
    release(t, &lab.lytes).await;
    let corrected = correct(t).await;
    release(t, &corrected).await;
    corrected
}

/// What `setup` stored (the township and critical panels wait for review; the county CBC, final and
/// normal from an EQA-qualified lab, is auto-released).
struct Lab {
    /// Resident-ID patient: a township CBC (HX_LIS: EQA for WBC, RBC, HGB, PLT only), a township liver
    /// panel (no EQA), a county CBC sent as a FHIR Bundle.
    hx_cbc: String,
    hx_liver: String,
    county_cbc: String,
    /// Record-number patient: electrolytes with a critical potassium, and a troponin never released.
    lytes: String,
    troponin: String,
}

async fn start(backend: &Backend) -> TestHub {
    let clock: Arc<dyn yilian_app::Clock> = ManualClock::new(NOW);
    TestHub::start(backend, Some(clock), |_| {}).await
}

async fn setup(t: &TestHub) -> Lab {
    let liu = t.token("liu.lab").await;
    let spec = |patient: &str, issuer: &str, control: &str, lab: &str| {
        let mut s = LabSpec::new(patient, issuer, control, "2.5.1");
        s.performing_lab = lab.to_string();
        s
    };
    // The township lab over MLLP, the resident ID in PID-3.
    assert_eq!(
        mllp_send(t, &oru_r01(&spec(RESIDENT, "HX", "HX-1", "HX_LIS"), &cbc())).await,
        "AA"
    );
    assert_eq!(
        mllp_send(
            t,
            &oru_r01(&spec(RESIDENT, "HX", "HX-2", "HX_LIS"), &liver())
        )
        .await,
        "AA"
    );
    let key = t.hub.patient_key(&LocalPatientId {
        issuer: "HX".into(),
        id: RESIDENT.into(),
    });
    let mine = t.hub.catalog.lab_panels_of_patient(&key, 10).await.unwrap();
    let by_service = |code: &str| {
        mine.iter()
            .find(|p| p.panel.service.code == code)
            .unwrap()
            .panel_id
            .to_string()
    };
    let hx_cbc = by_service("CBC");
    let hx_liver = by_service("LFT");
    // The county lab: a FHIR Bundle for the same resident, and HL7 over HTTP for a record number.
    let county_cbc = http_fhir(
        t,
        &liu,
        &fhir_bundle(&spec(RESIDENT, "XRMYY", "CL-B1", "COUNTYLAB"), &cbc()),
    )
    .await;
    let first = spec(MRN, "XRMYY", "CL-1", "COUNTYLAB");
    let lytes = http_hl7(t, &liu, &oru_r01(&first, &electrolytes_critical())).await;
    let troponin = http_hl7(
        t,
        &liu,
        &oru_r01(&spec(MRN, "XRMYY", "CL-3", "COUNTYLAB"), &troponin("0.523")),
    )
    .await;
    Lab {
        hx_cbc,
        hx_liver,
        county_cbc,
        lytes,
        troponin,
    }
}

fn mrn_query() -> String {
    format!("patient.identifier={MRN_SYSTEM}%7C{MRN}")
}

fn audit_rows(events: &[AuditEvent], action: &str, actor: &str) -> Vec<AuditEvent> {
    events
        .iter()
        .filter(|e| e.action == action && e.actor == actor)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_newest_reports_reach_member_hospitals_with_recognition() {
    for backend in backends() {
        let t = start(&backend).await;
        let seen = Seen::default();
        let lab = setup(&t).await;
        let zhao = t.token("zhao.clinician").await; // 县中医院: a member hospital
        let dr = format!("/fhir/r4/DiagnosticReport?{}", mrn_query());

        // Nothing is published yet: nothing to see, though the panels are stored.
        let b = search(&t, &seen, &zhao, &dr).await;
        assert_eq!(b["total"], 0, "{b}");
        assert!(b.get("entry").is_none());

        // A lab physician signs the electrolytes off: published, recognised.
        release(&t, &lab.lytes).await;
        let b = search(&t, &seen, &zhao, &dr).await;
        assert_eq!(b["total"], 1, "{b}");
        let r = entries(&b, "match")[0];
        assert_eq!(r["id"], lab.lytes.as_str());
        assert_eq!(r["status"], "final");
        assert!(tagged_hr(r), "{r}");
        // The lab corrects it; until the correction is signed off the report is shown, not recognised.
        let corrected = correct(&t).await;
        let b = search(&t, &seen, &zhao, &dr).await;
        assert_eq!(ids(&entries(&b, "match")), [lab.lytes.as_str()]);
        let r = entries(&b, "match")[0];
        assert!(!tagged_hr(r), "a correction awaits release: {r}");
        assert!(
            reasons(r).contains(&"a newer report of the same order awaits release".to_string()),
            "{r}"
        );

        // Released, the correction replaces it: one report of the order, corrected, recognised.
        release(&t, &corrected).await;
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!("{dr}&_include=DiagnosticReport:result"),
        )
        .await;
        assert_eq!(b["total"], 1, "{b}");
        let matches = entries(&b, "match");
        assert_eq!(
            ids(&matches),
            [corrected.as_str()],
            "the newest published only"
        );
        let r = matches[0];
        assert_eq!(r["status"], "corrected");
        assert!(tagged_hr(r), "{r}");
        assert_eq!(r["category"][0]["coding"][0]["code"], "LAB");
        assert_eq!(r["effectiveDateTime"], "2026-11-23T08:15:00+08:00");
        assert_eq!(r["performer"][0]["display"], "县人民医院");
        assert!(b["link"][0]["url"].as_str().unwrap().starts_with(&t.base));
        let full = b["entry"][0]["fullUrl"].as_str().unwrap();
        assert_eq!(
            full,
            format!("{}/fhir/r4/DiagnosticReport/{}", t.base, corrected)
        );
        // The results are included, each an Observation of the report.
        let obs = entries(&b, "include");
        assert_eq!(
            ids(&obs),
            (1..=3)
                .map(|i| format!("{}-{i}", corrected))
                .collect::<Vec<_>>()
        );
        let k = obs[0];
        assert_eq!(k["status"], "corrected");
        assert_eq!(k["valueQuantity"]["value"], 5.1);
        assert_eq!(k["valueQuantity"]["system"], "http://unitsofmeasure.org");
        assert_eq!(k["valueQuantity"]["code"], "mmol/L");
        assert_eq!(k["referenceRange"][0]["low"]["value"], 3.5);
        assert_eq!(k["interpretation"][0]["coding"][0]["code"], "HH");
        assert_eq!(k["subject"]["reference"], r["subject"]["reference"]);
        assert!(tagged_hr(k));

        // The superseded report is still readable by its id, not recognised, saying why.
        let (status, _, old) = fhir(
            &t,
            &seen,
            Some(&zhao),
            &format!("/fhir/r4/DiagnosticReport/{}", lab.lytes),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!tagged_hr(&old));
        assert!(
            reasons(&old).contains(&"superseded by a newer report of the same order".to_string()),
            "{old}"
        );
        // The unreleased troponin is nowhere: not in a search, not by its id.
        let (status, ct, oo) = fhir(
            &t,
            &seen,
            Some(&zhao),
            &format!("/fhir/r4/DiagnosticReport/{}", lab.troponin),
        )
        .await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::NOT_FOUND, "application/fhir+json")
        );
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert_eq!(oo["issue"][0]["code"], "not-found");
        let (status, _, _) = fhir(
            &t,
            &seen,
            Some(&zhao),
            &format!("/fhir/r4/Observation/{}-1", lab.troponin),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Observations by code (LOINC with its system) and by local code.
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!(
                "/fhir/r4/Observation?{}&code=http://loinc.org%7C2823-3",
                mrn_query()
            ),
        )
        .await;
        assert_eq!(b["total"], 1, "{b}");
        assert_eq!(ids(&entries(&b, "match")), [format!("{}-1", corrected)]);
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!("/fhir/r4/Observation?{}&code=NA", mrn_query()),
        )
        .await;
        assert_eq!(b["total"], 1, "{b}");
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!(
                "/fhir/r4/Observation?{}&code=urn:other%7C2823-3",
                mrn_query()
            ),
        )
        .await;
        assert_eq!(b["total"], 0, "another system is another code");
        let (status, _, o) = fhir(
            &t,
            &seen,
            Some(&zhao),
            &format!("/fhir/r4/Observation/{}-2", corrected),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(o["code"]["coding"][0]["code"], "NA");

        // By order number, by report code, by collection date.
        let b = search(
            &t,
            &seen,
            &zhao,
            "/fhir/r4/DiagnosticReport?identifier=urn:yilian:filler:COUNTYLAB%7CFO-CL-1",
        )
        .await;
        assert_eq!(ids(&entries(&b, "match")), [corrected.as_str()]);
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!("{dr}&code=urn:yilian:lab-code:COUNTYLAB%7CLYTES"),
        )
        .await;
        assert_eq!(b["total"], 1);
        let b = search(&t, &seen, &zhao, &format!("{dr}&code=CBC")).await;
        assert_eq!(b["total"], 0);
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!("{dr}&date=ge2026-11-23&date=lt2026-11-24"),
        )
        .await;
        assert_eq!(b["total"], 1);
        let b = search(&t, &seen, &zhao, &format!("{dr}&date=gt2026-11-23")).await;
        assert_eq!(b["total"], 0);

        // The patient as the hub knows them: the record number with its system, demographics.
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!("/fhir/r4/Patient?identifier={MRN_SYSTEM}%7C{MRN}"),
        )
        .await;
        assert_eq!(b["total"], 1, "{b}");
        let p = entries(&b, "match")[0];
        let pid = p["id"].as_str().unwrap().to_string();
        assert_eq!(pid.len(), 16);
        assert_eq!(r["subject"]["reference"], format!("Patient/{pid}"));
        let key = t.hub.patient_key(&LocalPatientId {
            issuer: "XRMYY".into(),
            id: MRN.into(),
        });
        assert!(
            key.0.starts_with(&pid) && !pid.contains(MRN),
            "a short prefix of the patient key"
        );
        assert_eq!(
            p["identifier"],
            serde_json::json!([{ "system": MRN_SYSTEM, "value": MRN }])
        );
        assert_eq!(p["gender"], "male");
        assert_eq!(p["birthDate"], "1980-01-15");
        assert_eq!(p["name"][0]["text"], "测试甲");
        let (status, _, read) =
            fhir(&t, &seen, Some(&zhao), &format!("/fhir/r4/Patient/{pid}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(read["id"], pid.as_str());
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!("/fhir/r4/DiagnosticReport?patient=Patient/{pid}"),
        )
        .await;
        assert_eq!(b["total"], 1);

        // The resident: found by the resident ID with any system; EQA decides recognition per lab.
        // The county CBC was auto-released at ingest; the township panels are signed off now.
        let resident = format!("/fhir/r4/DiagnosticReport?patient.identifier={RESIDENT}");
        let b = search(&t, &seen, &zhao, &resident).await;
        assert_eq!(ids(&entries(&b, "match")), [lab.county_cbc.as_str()]);
        for id in [&lab.hx_cbc, &lab.hx_liver] {
            release(&t, id).await;
        }
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!("/fhir/r4/Patient?identifier={RESIDENT}"),
        )
        .await;
        assert_eq!(b["total"], 1, "{b}");
        let rp = entries(&b, "match")[0];
        let shown = rp.to_string();
        assert!(
            !shown.contains(RESIDENT),
            "the resident ID is never shown: {shown}"
        );
        let rpid = rp["id"].as_str().unwrap();
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!("/fhir/r4/DiagnosticReport?patient={rpid}&_include=DiagnosticReport:result"),
        )
        .await;
        assert_eq!(b["total"], 3, "{b}");
        let reports = entries(&b, "match");
        let by_id = |id: &str| *reports.iter().find(|r| r["id"] == id).unwrap();
        assert!(
            tagged_hr(by_id(&lab.county_cbc)),
            "COUNTYLAB passed EQA for every analyte"
        );
        // HX_LIS passed EQA for WBC, RBC, HGB and PLT, not for the neutrophil percentage: those four
        // results are recognised, the fifth and so the report are not.
        let township_cbc = by_id(&lab.hx_cbc);
        assert!(!tagged_hr(township_cbc));
        assert_eq!(
            reasons(township_cbc),
            ["performing lab HX_LIS has no 2026 EQA pass for 中性粒细胞百分比"]
        );
        let included = entries(&b, "include");
        let obs_of = |panel: &str, seq: usize| {
            *included
                .iter()
                .find(|o| o["id"] == format!("{panel}-{seq}"))
                .unwrap()
        };
        assert!((1..=4).all(|i| tagged_hr(obs_of(&lab.hx_cbc, i))));
        assert!(!tagged_hr(obs_of(&lab.hx_cbc, 5)));
        let township_liver = by_id(&lab.hx_liver);
        assert!(!tagged_hr(township_liver));
        assert!(
            reasons(township_liver)
                .iter()
                .any(|x| x.contains("HX_LIS has no 2026 EQA pass for 丙氨酸氨基转移酶")),
            "{:?}",
            reasons(township_liver)
        );
        let alt = obs_of(&lab.hx_liver, 1);
        assert!(!tagged_hr(alt));
        assert_eq!(alt["interpretation"][0]["coding"][0]["code"], "H");
        // The county CBC came in as FHIR: its codes come back with the systems it was sent with.
        assert_eq!(
            by_id(&lab.county_cbc)["code"]["coding"][0]["system"],
            "urn:yilian:local-code"
        );
        let b = search(
            &t,
            &seen,
            &zhao,
            &format!("/fhir/r4/DiagnosticReport?patient.identifier=urn:any%7C{RESIDENT}"),
        )
        .await;
        assert_eq!(b["total"], 3);

        // The JSON look-up lists the same published lab reports, newest of each order.
        let look = t
            .get_json(
                &zhao,
                &format!("/api/v1/results?patient_id={MRN}&issuer=XRMYY&purpose=test"),
            )
            .await;
        let lab_items: Vec<&Value> = look["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == "lab")
            .collect();
        assert_eq!(lab_items.len(), 1, "{look}");
        assert_eq!(lab_items[0]["panel_id"], corrected.as_str());
        assert_eq!(lab_items[0]["recognition"]["mark"], "HR");
        assert_eq!(lab_items[0]["results"][0]["value"], "5.1");
        assert_eq!(
            lab_items[0]["results"][0]["fhir"],
            format!("/fhir/r4/Observation/{}-1", corrected)
        );
        assert!(
            !look.to_string().contains(MRN),
            "identifiers stay masked in the JSON look-up"
        );

        // A reader may search too.
        let li = t.token("li.reader").await;
        assert_eq!(search(&t, &seen, &li, &dr).await["total"], 1);

        let events = t.hub.catalog.audit_events(1000).await.unwrap();
        let searches = audit_rows(&events, "lab.fhir.search", "zhao.clinician");
        assert!(
            searches
                .iter()
                .any(|e| e.patient_key.as_ref() == Some(&key)
                    && e.resource_type == "DiagnosticReport"),
            "searches are audited with the patient key"
        );
        assert!(
            searches
                .iter()
                .all(|e| !e.detail.contains(MRN) && !e.detail.contains(RESIDENT))
        );
        let reads = audit_rows(&events, "lab.fhir.read", "zhao.clinician");
        assert!(
            reads
                .iter()
                .any(|e| e.resource_id == lab.lytes && e.patient_key.as_ref() == Some(&key))
        );
        assert!(
            reads
                .iter()
                .any(|e| e.resource_type == "Patient" && e.patient_key.as_ref() == Some(&key))
        );
        assert!(
            audit_rows(&events, "lab.fhir.search", "li.reader")
                .iter()
                .all(|e| e.patient_key.is_some()),
            "a search that named a patient is audited with the key"
        );

        validate_externally(&seen.all()).await;
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recognition_ends_with_the_validity_window() {
    for backend in backends() {
        let clock = ManualClock::new(NOW);
        let c: Arc<dyn yilian_app::Clock> = clock.clone();
        let t = TestHub::start(&backend, Some(c), |_| {}).await;
        let seen = Seen::default();
        let lab = setup(&t).await;
        publish_corrected(&t, &lab).await;
        let zhao = t.token("zhao.clinician").await;
        let path = format!(
            "/fhir/r4/DiagnosticReport?{}&_include=DiagnosticReport:result",
            mrn_query()
        );
        let b = search(&t, &seen, &zhao, &path).await;
        assert!(tagged_hr(entries(&b, "match")[0]));
        // Ten days after collection: potassium's own 7-day window has passed, sodium's 30 days not.
        clock.advance_secs(10 * 86_400);
        let b = search(&t, &seen, &zhao, &path).await;
        let report = entries(&b, "match")[0];
        assert!(!tagged_hr(report));
        assert_eq!(
            reasons(report),
            ["钾: older than its validity window (7 days)"]
        );
        let obs = entries(&b, "include");
        assert!(!tagged_hr(obs[0]) && tagged_hr(obs[1]) && tagged_hr(obs[2]));
        // Forty days on, nothing is (the token has expired too: a fresh one).
        clock.advance_secs(30 * 86_400);
        let zhao = t.token("zhao.clinician").await;
        let b = search(&t, &seen, &zhao, &path).await;
        assert!(entries(&b, "include").iter().all(|o| !tagged_hr(o)));
        validate_externally(&seen.all()).await;
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_errors_are_operation_outcomes() {
    for backend in backends() {
        let t = start(&backend).await;
        let seen = Seen::default();
        let lab = setup(&t).await;
        release(&t, &lab.lytes).await;
        let dr = format!("/fhir/r4/DiagnosticReport?{}", mrn_query());
        // No token, a wrong token: 401 as an OperationOutcome, with the challenge.
        for token in [None, Some("yl_not-a-token")] {
            let mut req = t.http.get(t.url(&dr));
            if let Some(tok) = token {
                req = req.bearer_auth(tok);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            assert_eq!(r.headers()["content-type"], "application/fhir+json");
            let oo: Value = r.json().await.unwrap();
            assert_eq!(oo["resourceType"], "OperationOutcome");
            assert_eq!(oo["issue"][0]["code"], "login");
            seen.keep(&oo);
        }
        let (status, _, oo) = fhir(&t, &seen, None, "/fhir/r4/metadata").await;
        assert_eq!(
            (status, oo["issue"][0]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("login"))
        );
        // A site tech, even of the sending site, and an admin: 403. Another site's tech sees nothing.
        for user in ["wang.tech", "liu.lab", "admin"] {
            let tok = t.token(user).await;
            let (status, _, oo) = fhir(&t, &seen, Some(&tok), &dr).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{user}");
            assert_eq!(oo["issue"][0]["code"], "forbidden");
            let (status, _, _) = fhir(
                &t,
                &seen,
                Some(&tok),
                &format!("/fhir/r4/DiagnosticReport/{}", lab.lytes),
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{user}");
        }
        let zhao = t.token("zhao.clinician").await;
        // Bad requests: 400 naming what is wrong.
        for (path, needle) in [
            ("/fhir/r4/DiagnosticReport?code=CBC", "needs patient"),
            ("/fhir/r4/Observation?patient=Patient/x&_count=5", "_count"),
            ("/fhir/r4/Patient?name=x", "name"),
            ("/fhir/r4/DiagnosticReport?patient=x&date=2026-13", "date"),
            (
                "/fhir/r4/DiagnosticReport?patient=x&_include=DiagnosticReport:subject",
                "_include",
            ),
        ] {
            let (status, ct, oo) = fhir(&t, &seen, Some(&zhao), path).await;
            assert_eq!(
                (status, ct.as_str()),
                (StatusCode::BAD_REQUEST, "application/fhir+json"),
                "{path}: {oo}"
            );
            assert_eq!(oo["issue"][0]["code"], "invalid");
            assert!(
                oo["issue"][0]["diagnostics"]
                    .as_str()
                    .unwrap()
                    .contains(needle),
                "{path}: {oo}"
            );
        }
        // Unknown: 404; not a GET: 405; both OperationOutcomes.
        for path in [
            "/fhir/r4/Encounter?patient=x",
            "/fhir/r4/Patient/0123456789abcdef",
            "/fhir/r4/Patient/not-an-id",
            "/fhir/r4/DiagnosticReport/01NOSUCHPANEL00000000000000",
            "/fhir/r4/Observation/nonsense",
            "/fhir/r4/Patient/x/_history",
        ] {
            let (status, _, oo) = fhir(&t, &seen, Some(&zhao), path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {oo}");
            assert_eq!(oo["issue"][0]["code"], "not-found", "{path}");
        }
        let r = t
            .http
            .post(t.url("/fhir/r4/Patient"))
            .bearer_auth(&zhao)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let oo: Value = r.json().await.unwrap();
        assert_eq!(oo["issue"][0]["code"], "not-supported");
        seen.keep(&oo);
        // A patient the hub does not know: an empty Bundle, and the search is still audited.
        let b = search(
            &t,
            &seen,
            &zhao,
            "/fhir/r4/Patient?identifier=urn:yilian:issuer:XRMYY%7CNOBODY",
        )
        .await;
        assert_eq!(b["total"], 0);
        let events = t.hub.catalog.audit_events(1000).await.unwrap();
        assert!(
            audit_rows(&events, "lab.fhir.search", "zhao.clinician")
                .iter()
                .any(|e| e.patient_key.is_none() && e.detail.contains("0 patients"))
        );
        // The CapabilityStatement for any authenticated caller.
        let (status, _, cs) = fhir(&t, &seen, Some(&zhao), "/fhir/r4/metadata").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cs["resourceType"], "CapabilityStatement");
        assert_eq!(cs["fhirVersion"], "4.0.1");
        validate_externally(&seen.all()).await;
        t.finish().await;
    }
}

fn python() -> Option<String> {
    support::python("FHIR validation")
}

/// Exit status of the script when a package is missing (an older .venv).
const MISSING_PACKAGE: i32 = 3;

fn script() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/fhir_lab_client.py"
    )
    .to_string()
}

/// Every answer through fhir.resources (R4B) and fhirclient (R4).
async fn validate_externally(answers: &[Value]) {
    let Some(python) = python() else { return };
    let answers: Vec<Value> = answers.iter().filter(|v| v.is_object()).cloned().collect();
    let input = serde_json::to_vec(&answers).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(&python)
            .arg(script())
            .arg("validate")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(MISSING_PACKAGE) {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install tests/python/requirements.txt: {stderr}"
        );
        eprintln!("SKIPPED FHIR validation: {stderr}");
        return;
    }
    let checked = stdout.lines().count();
    assert_eq!(checked, answers.len(), "{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "resources the FHIR libraries refused:\n{}\n{stderr}",
        stdout
            .lines()
            .filter(|l| !l.contains("\"errors\": []"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("fhir.resources and fhirclient accepted {checked} answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fhir_client_nobody_here_wrote_searches_the_hub() {
    let Some(python) = python() else { return };
    for backend in backends() {
        let t = start(&backend).await;
        let lab = setup(&t).await;
        let corrected = publish_corrected(&t, &lab).await;
        let zhao = t.token("zhao.clinician").await;
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(&python)
                .arg(script())
                .arg("search")
                .arg(format!("{}/fhir/r4", t.base))
                .arg(&zhao)
                .arg(format!("{MRN_SYSTEM}|{MRN}"))
                .arg("http://loinc.org|2823-3")
                .output(),
        )
        .await
        .expect("the client finished in time")
        .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(MISSING_PACKAGE) {
            assert!(
                std::env::var("CI").is_err(),
                "CI must install tests/python/requirements.txt: {stderr}"
            );
            eprintln!("SKIPPED FHIR client: {stderr}");
            t.finish().await;
            return;
        }
        assert!(out.status.success(), "{backend:?}:\n{stdout}\n{stderr}");
        let v: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["fhirVersion"], "4.0.1");
        assert_eq!(
            v["resources"],
            serde_json::json!(["Patient", "DiagnosticReport", "Observation", "ImagingStudy"])
        );
        assert_eq!(v["report_total"], 1, "{v}");
        assert_eq!(v["reports"][0]["id"], corrected.as_str());
        assert_eq!(v["reports"][0]["status"], "corrected");
        assert_eq!(v["reports"][0]["tags"], serde_json::json!(["HR"]));
        assert_eq!(v["included"].as_array().unwrap().len(), 3);
        assert_eq!(
            v["observations"],
            serde_json::json!([{
                "id": format!("{}-1", corrected), "value": 5.1, "unit": "mmol/L", "status": "corrected"
            }])
        );
        assert_eq!(v["patients"][0]["gender"], "male");
        assert_eq!(v["patients"][0]["birthDate"], "1980-01-15");
        assert_eq!(
            v["patients"][0]["identifiers"],
            serde_json::json!([[MRN_SYSTEM, MRN]])
        );
        assert_eq!(v["read"], v["patients"][0]["id"]);
        t.finish().await;
    }
}
