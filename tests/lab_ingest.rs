//! Lab results in, end to end against the real hub (SQLite always, PostgreSQL when DATABASE_URL is
//! set): ORU^R01 over real MLLP connections (many messages per connection, bad ones answered AE/AR
//! with ERR while the connection keeps working, v2.3.1 and v2.5.1, GB 18030), duplicates, corrections
//! that supersede with history, refused senders, a FHIR Bundle and an HL7 message over HTTP, oversized
//! messages, and a client that disconnects mid-frame. An HL7 sender nobody here wrote (python `hl7`'s
//! MLLPClient, messages built with hl7apy) runs when YILIAN_TEST_PYTHON is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::{TestHub, backends};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yilian_app::ports::LabPanelRecord;
use yilian_domain::lab::{LabSource, LabValue, PanelStatus};
use yilian_domain::{LocalPatientId, PatientKey};
use yilian_fixtures::lab::{
    LabSpec, cbc, electrolytes_critical, fhir_bundle, liver, oru_r01, oru_r01_cbc,
};

/// An MLLP connection as a sending LIS holds it.
struct Lis {
    stream: TcpStream,
}

/// What an ACK says.
#[derive(Debug)]
struct Ack {
    text: String,
    msh: Vec<String>,
    code: String,
    control_id: String,
    err: Option<String>,
}

fn ack_of(bytes: &[u8]) -> Ack {
    // MSA and ERR are ASCII in every charset the hub answers in; names do not matter here.
    let text = String::from_utf8_lossy(bytes).into_owned();
    let seg = |name: &str| {
        text.split('\r')
            .find(|s| s.starts_with(&format!("{name}|")))
            .map(str::to_string)
    };
    let msa = seg("MSA").unwrap_or_else(|| panic!("no MSA in {text:?}"));
    let fields: Vec<&str> = msa.split('|').collect();
    Ack {
        msh: seg("MSH")
            .unwrap_or_default()
            .split('|')
            .map(str::to_string)
            .collect(),
        code: fields.get(1).unwrap_or(&"").to_string(),
        control_id: fields.get(2).unwrap_or(&"").to_string(),
        err: seg("ERR"),
        text: text.clone(),
    }
}

impl Lis {
    async fn connect(addr: SocketAddr) -> Lis {
        Lis {
            stream: TcpStream::connect(addr).await.expect("connect MLLP"),
        }
    }

    /// Sends raw bytes as they are (framing included or not).
    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next framed reply.
    async fn read_ack(&mut self) -> Ack {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = got.windows(2).position(|w| w == [0x1c, 0x0d]) {
                assert_eq!(got.first(), Some(&0x0b), "an ACK starts with 0x0B");
                return ack_of(&got[1..end]);
            }
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut buf))
                .await
                .expect("an ACK within 30 s")
                .expect("read");
            assert!(n > 0, "the hub closed the connection; so far {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    }

    async fn send(&mut self, message: &[u8]) -> Ack {
        let mut framed = vec![0x0b];
        framed.extend_from_slice(message);
        framed.extend_from_slice(&[0x1c, 0x0d]);
        self.write(&framed).await;
        self.read_ack().await
    }
}

fn spec(patient: &str, lab: &str, control: &str, version: &str) -> LabSpec {
    let mut s = LabSpec::new(patient, "HX", control, version);
    s.performing_lab = lab.to_string();
    s
}

fn key(t: &TestHub, issuer: &str, id: &str) -> PatientKey {
    t.hub.patient_key(&LocalPatientId {
        issuer: issuer.into(),
        id: id.into(),
    })
}

async fn panels_of(t: &TestHub, issuer: &str, id: &str) -> Vec<LabPanelRecord> {
    t.hub
        .catalog
        .lab_panels_of_patient(&key(t, issuer, id), 100)
        .await
        .unwrap()
}

async fn stored(t: &TestHub, facility: &str, control: &str) -> bool {
    t.hub
        .catalog
        .lab_message(LabSource::Hl7v2, facility, control)
        .await
        .unwrap()
        .is_some()
}

fn number(p: &LabPanelRecord, code: &str) -> f64 {
    p.panel
        .results
        .iter()
        .find(|r| r.code.code == code)
        .and_then(|r| r.numeric())
        .unwrap_or_else(|| panic!("no numeric {code}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_many_messages_and_survives_bad_ones() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut lis = Lis::connect(t.mllp_addr).await;

        // A v2.5.1 CBC: AA only once the panel is in the catalog.
        let cbc_msg = oru_r01(&spec("P100", "HX_LIS", "HX-1", "2.5.1"), &cbc());
        let ack = lis.send(cbc_msg.as_bytes()).await;
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AA", "HX-1"),
            "{}",
            ack.text
        );
        assert!(ack.err.is_none());
        // Sender and receiver swapped, version echoed.
        assert_eq!(ack.msh.get(2).map(String::as_str), Some("YILIAN"));
        assert_eq!(ack.msh.get(4).map(String::as_str), Some("LIS"));
        assert_eq!(ack.msh.get(11).map(String::as_str), Some("2.5.1"));
        let panels = panels_of(&t, "HX", "P100").await;
        assert_eq!(panels.len(), 1, "the ACKed panel is readable at once");
        let p = &panels[0];
        assert_eq!(p.panel.results.len(), 5);
        assert_eq!(number(p, "WBC"), 6.5);
        assert_eq!(p.site.as_str(), "tw-hongxing");
        assert_eq!(p.received_by.as_str(), "lab.hx_lis");
        assert_eq!(
            p.service_loinc.as_deref(),
            None,
            "OBR-4's primary code is local"
        );
        assert_eq!(p.panel.status, PanelStatus::Final);
        // The original bytes are kept as a content-addressed blob.
        let raw = t.hub.blobs.get(&p.raw_blob_key).await.unwrap();
        assert_eq!(raw.as_ref(), cbc_msg.as_bytes());

        // Not an ORU^R01 at all: AR with ERR at MSH-9, and the connection goes on.
        let adt = cbc_msg.replacen("ORU^R01^ORU_R01|HX-1", "ADT^A01^ADT_A01|HX-2", 1);
        let ack = lis.send(adt.as_bytes()).await;
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AR", "HX-2"),
            "{}",
            ack.text
        );
        let err = ack.err.expect("ERR segment");
        assert!(err.contains("MSH^1^9") && err.contains("200^"), "{err}");

        // Bytes outside any frame are skipped; a wrong value is AE with ERR naming the field.
        lis.write(b"  \r\n garbage \r\n").await;
        let bad_value = oru_r01(&spec("P101", "HX_LIS", "HX-3", "2.5.1"), &cbc()).replacen(
            "|6.5|10*9/L",
            "|six|10*9/L",
            1,
        );
        let ack = lis.send(bad_value.as_bytes()).await;
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AE", "HX-3"),
            "{}",
            ack.text
        );
        let err = ack.err.expect("ERR segment");
        assert!(err.contains("OBX^1^5") && err.contains("102^"), "{err}");
        assert!(!stored(&t, "HX_LIS", "HX-3").await);
        assert!(panels_of(&t, "HX", "P101").await.is_empty());

        // A v2.3.1 message from the county lab centre on the same connection.
        let mut county = LabSpec::new("XR0042", "XRMYY", "CL-1", "2.3.1");
        county.performing_lab = "COUNTYLAB".into();
        let ack = lis
            .send(oru_r01(&county, &electrolytes_critical()).as_bytes())
            .await;
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AA", "CL-1"),
            "{}",
            ack.text
        );
        assert_eq!(ack.msh.get(11).map(String::as_str), Some("2.3.1"));
        let k = &panels_of(&t, "XRMYY", "XR0042").await[0];
        assert_eq!(k.site.as_str(), "county-people");
        let potassium = k.panel.results.iter().find(|r| r.code.code == "K").unwrap();
        let LabValue::Numeric(q) = &potassium.value else {
            panic!("numeric potassium")
        };
        assert_eq!((q.value, q.decimal.as_str()), (6.8, "6.8"));
        assert_eq!(q.unit_code(), Some("mmol/L"));
        assert_eq!(potassium.loinc.as_deref(), Some("2823-3"));
        assert!(potassium.lab_flagged_critical());
        let range = potassium.reference_range.as_ref().unwrap();
        assert_eq!((range.low, range.high), (Some(3.5), Some(5.3)));
        assert_eq!(
            k.panel.specimen.as_ref().map(|s| s.code.as_str()),
            Some("SER")
        );
        assert_eq!(
            k.panel.collected_at.map(|c| c.to_hl7()).as_deref(),
            Some("20261123081500+0800")
        );

        // GB 18030 (MSH-18), as many Chinese LIS send: names decoded, the ACK in the same charset.
        let text = oru_r01(&spec("P102", "HX_LIS", "HX-4", "2.4"), &cbc()).replacen(
            "UNICODE UTF-8",
            "GB 18030-2000",
            1,
        );
        let (gb, _, unmappable) = encoding_rs::GB18030.encode(&text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&gb).is_err(), "really not UTF-8");
        let ack = lis.send(&gb).await;
        assert_eq!(ack.code, "AA", "{}", ack.text);
        assert_eq!(ack.msh.get(17).map(String::as_str), Some("GB 18030-2000"));
        let p = &panels_of(&t, "HX", "P102").await[0];
        assert_eq!(p.panel.patient.name.as_deref(), Some("测试甲"));
        assert_eq!(p.panel.service.display.as_deref(), Some("血常规"));

        // Audit: one lab.ingest per stored panel with the patient key, refusals too; no identifier.
        let audit = t.hub.catalog.audit_events(200).await.unwrap();
        let ingests: Vec<_> = audit.iter().filter(|a| a.action == "lab.ingest").collect();
        assert_eq!(ingests.iter().filter(|a| a.outcome == "ok").count(), 3);
        assert_eq!(ingests.iter().filter(|a| a.outcome == "refused").count(), 2);
        assert!(
            ingests
                .iter()
                .filter(|a| a.outcome == "ok")
                .all(|a| a.patient_key.is_some())
        );
        for a in &ingests {
            assert!(
                !a.detail.contains("P10") && !a.detail.contains("XR0042"),
                "{a:?}"
            );
        }
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_acknowledged_once_stored_and_reused_ids_refused() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut lis = Lis::connect(t.mllp_addr).await;
        let msg = oru_r01(&spec("P200", "HX_LIS", "HX-D1", "2.5.1"), &cbc());
        assert_eq!(lis.send(msg.as_bytes()).await.code, "AA");
        // The LIS did not see the ACK and sends again, on a new connection: AA, nothing written.
        let mut again = Lis::connect(t.mllp_addr).await;
        let ack = again.send(msg.as_bytes()).await;
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AA", "HX-D1")
        );
        assert_eq!(panels_of(&t, "HX", "P200").await.len(), 1);
        // The same control ID with other content: AE, ERR 205 at MSH-10; the stored one stays.
        let other = oru_r01(&spec("P201", "HX_LIS", "HX-D1", "2.5.1"), &cbc());
        let ack = again.send(other.as_bytes()).await;
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AE", "HX-D1"),
            "{}",
            ack.text
        );
        let err = ack.err.expect("ERR");
        assert!(err.contains("MSH^1^10") && err.contains("205^"), "{err}");
        assert!(panels_of(&t, "HX", "P201").await.is_empty());
        let m = t
            .hub
            .catalog
            .lab_message(LabSource::Hl7v2, "HX_LIS", "HX-D1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.panel_ids.len(), 1);
        // Over HTTP the duplicate is the same success.
        let token = t.token("wang.tech").await;
        let r = post_hl7(&t, &token, msg.as_bytes()).await;
        assert_eq!(r.0, StatusCode::OK);
        assert_eq!(ack_of(&r.1).code, "AA");
        assert_eq!(panels_of(&t, "HX", "P200").await.len(), 1);
        // Stored once, seen again twice, one refusal: what /metrics counts.
        assert_eq!(t.hub.counters.lab_messages(), [1, 2, 1]);
        let admin = t.token("admin").await;
        let metrics = t.get(&admin, "/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains("yilian_lab_messages_total{outcome=\"duplicate\"} 2"),
            "{metrics}"
        );
        t.finish().await;
    }
}

async fn post_hl7(t: &TestHub, token: &str, body: &[u8]) -> (StatusCode, Vec<u8>, String) {
    let r = t
        .http
        .post(t.url("/api/v1/lab/hl7v2"))
        .bearer_auth(token)
        .header("content-type", "x-application/hl7-v2+er7")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, r.bytes().await.unwrap().to_vec(), ct)
}

/// POSTs a FHIR Bundle; the status and the JSON answer.
async fn post_fhir(t: &TestHub, token: &str, body: String) -> (StatusCode, Value) {
    let r = t
        .http
        .post(t.url("/api/v1/lab/fhir"))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

async fn get_panel(t: &TestHub, token: &str, id: &str) -> (StatusCode, Value) {
    let r = t.get(token, &format!("/api/v1/lab/panels/{id}")).await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrections_supersede_with_the_history_kept() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut lis = Lis::connect(t.mllp_addr).await;
        let mut first = LabSpec::new("XR0043", "XRMYY", "CL-C1", "2.5.1");
        first.performing_lab = "COUNTYLAB".into();
        first.result_status = 'P';
        assert_eq!(
            lis.send(oru_r01(&first, &electrolytes_critical()).as_bytes())
                .await
                .code,
            "AA"
        );
        let mut fin = first.clone();
        fin.control_id = "CL-C2".into();
        fin.result_status = 'F';
        assert_eq!(
            lis.send(oru_r01(&fin, &electrolytes_critical()).as_bytes())
                .await
                .code,
            "AA"
        );
        // The lab corrects the potassium: 6.8 (haemolysed specimen) becomes 4.1.
        let corrected = oru_r01(&first.corrected("CL-C3"), &electrolytes_critical()).replacen(
            "|6.8|mmol/L^^UCUM|3.5-5.3|HH|",
            "|4.1|mmol/L^^UCUM|3.5-5.3|N|",
            1,
        );
        assert_eq!(lis.send(corrected.as_bytes()).await.code, "AA");

        let panels = panels_of(&t, "XRMYY", "XR0043").await;
        assert_eq!(panels.len(), 3, "nothing is overwritten");
        let by_status = |s: PanelStatus| panels.iter().find(|p| p.panel.status == s).unwrap();
        let (newest, middle, oldest) = (
            by_status(PanelStatus::Corrected),
            by_status(PanelStatus::Final),
            by_status(PanelStatus::Preliminary),
        );
        assert_eq!(number(newest, "K"), 4.1);
        assert_eq!(
            number(middle, "K"),
            6.8,
            "the superseded values stay as they were"
        );
        assert_eq!(newest.supersedes.as_ref(), Some(&middle.panel_id));
        assert_eq!(middle.superseded_by.as_ref(), Some(&newest.panel_id));
        assert_eq!(middle.supersedes.as_ref(), Some(&oldest.panel_id));
        assert!(newest.superseded_by.is_none());
        assert_eq!(
            t.hub
                .catalog
                .latest_lab_panel_of_order(&yilian_app::ports::LabOrderRef {
                    sending_facility: "COUNTYLAB".into(),
                    filler_order_number: Some("FO-CL-C1".into()),
                    placer_order_number: None,
                    service_code: "LYTES".into(),
                })
                .await
                .unwrap()
                .as_ref(),
            Some(&newest.panel_id)
        );

        // The county lab's tech sees the chain over HTTP; the old report says what replaced it.
        let token = t.token("liu.lab").await;
        let (status, v) = get_panel(&t, &token, middle.panel_id.as_str()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["superseded_by"], newest.panel_id.as_str());
        assert_eq!(v["current"], false);
        let history: Vec<&str> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap())
            .collect();
        assert_eq!(history, ["preliminary", "final", "corrected"]);
        let k = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["code"]["code"] == "K")
            .unwrap()
            .clone();
        assert_eq!(k["value"]["decimal"], "6.8");
        assert_eq!(k["flags"], serde_json::json!(["HH"]));
        assert_eq!(k["lab_flagged_critical"], true);
        assert_eq!(v["patient"]["patient_id_masked"], "XR0*43");
        assert!(
            !v.to_string().contains("XR0043"),
            "identifiers leave masked: {v}"
        );

        // A correction for an order the hub never saw: stored as a new panel, with a note.
        let mut orphan = LabSpec::new("XR0044", "XRMYY", "CL-C9", "2.5.1");
        orphan.performing_lab = "COUNTYLAB".into();
        let orphan = orphan.corrected("CL-C10");
        assert_eq!(
            lis.send(oru_r01(&orphan, &electrolytes_critical()).as_bytes())
                .await
                .code,
            "AA"
        );
        let p = &panels_of(&t, "XRMYY", "XR0044").await[0];
        assert!(p.supersedes.is_none());
        assert!(
            p.panel
                .notes
                .iter()
                .any(|n| n == yilian_app::ports::UNMATCHED_CORRECTION_NOTE),
            "{:?}",
            p.panel.notes
        );
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_are_checked_against_the_configuration() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |c| {
            // The county LIS is pinned to an address the test does not call from.
            if let Some(s) = c.lab.senders.iter_mut().find(|s| s.facility == "COUNTYLAB") {
                s.host = Some("10.9.9.9".into());
            }
        })
        .await;
        let mut lis = Lis::connect(t.mllp_addr).await;
        let unknown = oru_r01(&spec("P300", "NOBODY_LIS", "NB-1", "2.5.1"), &cbc());
        let ack = lis.send(unknown.as_bytes()).await;
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AR", "NB-1"),
            "{}",
            ack.text
        );
        let err = ack.err.expect("ERR");
        assert!(
            err.contains("MSH^1^4") && err.contains("NOBODY_LIS"),
            "{err}"
        );
        let pinned = oru_r01(&spec("P301", "COUNTYLAB", "CL-P1", "2.5.1"), &cbc());
        let ack = lis.send(pinned.as_bytes()).await;
        assert_eq!(ack.code, "AR", "{}", ack.text);
        assert!(ack.err.unwrap().contains("configured address"));
        // The connection still serves an allowed sender.
        let ok = oru_r01(&spec("P302", "HX_LIS", "HX-S1", "2.5.1"), &cbc());
        assert_eq!(lis.send(ok.as_bytes()).await.code, "AA");
        assert!(panels_of(&t, "HX", "P300").await.is_empty());
        assert!(panels_of(&t, "HX", "P301").await.is_empty());
        let refused = t
            .hub
            .catalog
            .audit_events(50)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.action == "lab.ingest" && a.outcome == "refused")
            .count();
        assert_eq!(refused, 2);

        // Over HTTP the caller's site must be the sender's: a township tech cannot send the county's.
        let wang = t.token("wang.tech").await;
        let county = oru_r01(&spec("P303", "COUNTYLAB", "CL-P2", "2.5.1"), &cbc());
        let (status, body, ct) = post_hl7(&t, &wang, county.as_bytes()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(ct.starts_with("x-application/hl7-v2+er7"), "{ct}");
        let ack = ack_of(&body);
        assert_eq!(ack.code, "AR");
        assert!(ack.err.unwrap().contains("MSH^1^4"));
        // Roles other than site techs send nothing.
        let reader = t.token("li.reader").await;
        let (status, body, _) = post_hl7(&t, &reader, ok.as_bytes()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(ack_of(&body).code, "AR");
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_takes_hl7_and_fhir_and_shows_panels_to_their_site_only() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let liu = t.token("liu.lab").await;
        // HL7 v2 over HTTP: the ACK is the body.
        let msg = oru_r01_cbc("XR0050", "XRMYY", "CL-H1", "2.5.1");
        let r = t
            .http
            .post(t.url("/api/v1/lab/hl7v2"))
            .bearer_auth(&liu)
            .header("content-type", "x-application/hl7-v2+er7")
            .body(msg.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let hl7_panel = r.headers()["x-yilian-lab-panels"]
            .to_str()
            .unwrap()
            .to_string();
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let body = r.bytes().await.unwrap().to_vec();
        assert_eq!(ct, "x-application/hl7-v2+er7; charset=utf-8");
        assert_eq!(
            get_panel(&t, &liu, &hl7_panel).await.1["message"]["control_id"],
            "CL-H1"
        );
        let ack = ack_of(&body);
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AA", "CL-H1")
        );
        let bad = msg.replacen("|6.5|10*9/L", "|six|10*9/L", 1);
        assert_ne!(bad, msg);
        let bad = bad.replacen("CL-H1", "CL-H2", 1);
        let (status, body, _) = post_hl7(&t, &liu, bad.as_bytes()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ack_of(&body).code, "AE");
        let (status, body, _) = post_hl7(&t, &liu, b"hello").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let ack = ack_of(&body);
        assert_eq!((ack.code.as_str(), ack.control_id.as_str()), ("AR", "\"\""));

        // FHIR R4 Bundle: 201 with the panel ids.
        let bundle = fhir_bundle(&LabSpec::new("XR0051", "XRMYY", "B-1", "R4"), &liver());
        let post_fhir = |body: String, token: String| {
            let t = &t;
            async move { post_fhir(t, &token, body).await }
        };
        let (status, v) = post_fhir(bundle.clone(), liu.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["duplicate"], false);
        let panel_id = v["panels"][0]["panel_id"].as_str().unwrap().to_string();
        let (status, again) = post_fhir(bundle.clone(), liu.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["duplicate"], true);
        assert_eq!(again["panels"][0]["panel_id"], panel_id.as_str());
        // Unreadable: an OperationOutcome naming the path.
        let broken = bundle.replacen("\"status\": \"final\"", "\"status\": \"done\"", 1);
        let broken = broken.replacen("\"id\": \"B-1\"", "\"id\": \"B-2\"", 1);
        let (status, oo) = post_fhir(broken, liu.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert_eq!(oo["issue"][0]["code"], "invalid");
        assert!(
            oo["issue"][0]["expression"][0]
                .as_str()
                .unwrap()
                .contains("status")
        );
        // A township tech cannot send the county lab's Bundle.
        let wang = t.token("wang.tech").await;
        let other = bundle.replacen("\"id\": \"B-1\"", "\"id\": \"B-3\"", 1);
        let (status, oo) = post_fhir(other, wang.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{oo}");
        assert_eq!(oo["issue"][0]["code"], "forbidden");

        // The panel: the sending site's tech reads it; another site's gets 404; admins 403.
        let (status, v) = get_panel(&t, &liu, &panel_id).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["message"]["source"], "fhir-r4");
        assert_eq!(v["site_id"], "county-people");
        assert_eq!(v["performing_lab"], "COUNTYLAB");
        assert_eq!(v["results"].as_array().unwrap().len(), 4);
        assert_eq!(v["results"][0]["loinc_source"], "sent");
        assert_eq!(v["collected_at"], "2026-11-23T08:15:00+08:00");
        assert_eq!(
            get_panel(&t, &wang, &panel_id).await.0,
            StatusCode::NOT_FOUND
        );
        let admin = t.token("admin").await;
        assert_eq!(
            get_panel(&t, &admin, &panel_id).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get_panel(&t, &liu, "01NOSUCHPANEL").await.0,
            StatusCode::NOT_FOUND
        );
        let views = t
            .hub
            .catalog
            .audit_events(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.action == "lab.view" && a.resource_id == panel_id)
            .count();
        assert_eq!(views, 1, "the read is audited");
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_codes_are_mapped_to_loinc() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut lis = Lis::connect(t.mllp_addr).await;
        let mut s = LabSpec::new("XR0060", "XRMYY", "CL-L1", "2.5.1");
        s.performing_lab = "COUNTYLAB".into();
        // The LIS sends its local codes only (no LOINC triple).
        let msg = oru_r01(&s, &electrolytes_critical())
            .replace("^L^2823-3^^LN", "^L")
            .replace("^L^2951-2^^LN", "^L")
            .replace("^L^2075-0^^LN", "^L");
        assert_eq!(lis.send(msg.as_bytes()).await.code, "AA");
        let p = &panels_of(&t, "XRMYY", "XR0060").await[0];
        let of = |code: &str| {
            let i = p
                .panel
                .results
                .iter()
                .position(|r| r.code.code == code)
                .unwrap();
            (p.panel.results[i].loinc.clone(), p.loinc_mapped[i])
        };
        assert_eq!(of("K"), (Some("2823-3".into()), true));
        assert_eq!(of("NA"), (Some("2951-2".into()), true));
        assert_eq!(of("CL"), (None, false), "not in the demo's table");
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_clearly() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |c| c.lab.max_message_bytes = 4096).await;
        let mut big = oru_r01(&spec("P400", "HX_LIS", "HX-BIG", "2.5.1"), &cbc());
        big.push_str(&format!("NTE|1||{}\r", "x".repeat(5000)));
        // HTTP: 413 with a JSON error naming the limit.
        let wang = t.token("wang.tech").await;
        let (status, body, _) = post_hl7(&t, &wang, big.as_bytes()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "too_large");
        assert!(v["message"].as_str().unwrap().contains("4096"), "{v}");
        // MLLP: AR for the frame (its MSH is read from its head), then the connection goes on.
        let mut lis = Lis::connect(t.mllp_addr).await;
        let ack = lis.send(big.as_bytes()).await;
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AR", "HX-BIG"),
            "{}",
            ack.text
        );
        assert!(ack.text.contains("4096"), "{}", ack.text);
        let small = oru_r01(&spec("P401", "HX_LIS", "HX-SMALL", "2.5.1"), &cbc());
        assert_eq!(lis.send(small.as_bytes()).await.code, "AA");
        assert!(!stored(&t, "HX_LIS", "HX-BIG").await);
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_loses_nothing_acknowledged_and_stores_nothing_half_written() {
    for backend in backends() {
        let mut t = TestHub::start(&backend, None, |_| {}).await;
        let a = oru_r01(&spec("P500", "HX_LIS", "HX-A", "2.5.1"), &cbc());
        let b = oru_r01(&spec("P501", "HX_LIS", "HX-B", "2.5.1"), &cbc());
        let mut lis = Lis::connect(t.mllp_addr).await;
        assert_eq!(lis.send(a.as_bytes()).await.code, "AA");
        // Half of B, then the LIS goes away.
        let mut half = vec![0x0b];
        half.extend_from_slice(&b.as_bytes()[..b.len() / 2]);
        lis.write(&half).await;
        drop(lis);
        // The LIS comes back and sends B whole (its ACK never came): stored exactly once.
        let mut lis = Lis::connect(t.mllp_addr).await;
        assert!(stored(&t, "HX_LIS", "HX-A").await);
        let panels = panels_of(&t, "HX", "P500").await;
        assert_eq!((panels.len(), panels[0].panel.results.len()), (1, 5));
        assert!(panels_of(&t, "HX", "P501").await.is_empty());
        assert_eq!(lis.send(b.as_bytes()).await.code, "AA");
        assert_eq!(panels_of(&t, "HX", "P501").await.len(), 1);

        // A whole frame whose sender leaves before reading the ACK is still stored: a resend is a
        // duplicate.
        let c = oru_r01(&spec("P502", "HX_LIS", "HX-C", "2.5.1"), &cbc());
        let mut gone = Lis::connect(t.mllp_addr).await;
        let mut framed = vec![0x0b];
        framed.extend_from_slice(c.as_bytes());
        framed.extend_from_slice(&[0x1c, 0x0d]);
        gone.write(&framed).await;
        drop(gone);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !stored(&t, "HX_LIS", "HX-C").await {
            assert!(tokio::time::Instant::now() < deadline, "HX-C never stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(lis.send(c.as_bytes()).await.code, "AA");
        assert_eq!(panels_of(&t, "HX", "P502").await.len(), 1);

        // A graceful stop closes idle connections; what was acknowledged stays.
        t.stop_mllp().await;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(30), lis.stream.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "the hub closed the idle connection");
        assert_eq!(panels_of(&t, "HX", "P500").await.len(), 1);
        t.finish().await;
    }
}

fn python() -> Option<String> {
    support::python("external HL7 sender")
}

/// Exit status of the script when the `hl7` package is missing (an older .venv).
const MISSING_PACKAGE: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hl7_sender_nobody_here_wrote_gets_acks() {
    let Some(python) = python() else { return };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(&python)
                .arg(format!("{root}/tests/python/hl7_mllp_send.py"))
                .arg(t.mllp_addr.ip().to_string())
                .arg(t.mllp_addr.port().to_string())
                .output(),
        )
        .await
        .expect("the sender finished in time")
        .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(MISSING_PACKAGE) {
            assert!(
                std::env::var("CI").is_err(),
                "CI must install tests/python/requirements.txt: {stderr}"
            );
            eprintln!("SKIPPED external HL7 sender: {stderr}");
            t.finish().await;
            return;
        }
        assert!(out.status.success(), "{backend:?}:\n{stdout}\n{stderr}");
        eprintln!("{backend:?}: {stdout}");
        // What the external sender built is stored as it said.
        let p = &panels_of(&t, "HX", "EXT-P1").await;
        assert_eq!(p.len(), 1, "{stdout}");
        let glu = p[0]
            .panel
            .results
            .iter()
            .find(|r| r.code.code == "GLU")
            .expect("glucose");
        assert_eq!(glu.numeric(), Some(11.2));
        assert_eq!(
            glu.loinc.as_deref(),
            Some("2345-7"),
            "mapped from the demo table"
        );
        assert_eq!(p[0].received_by.as_str(), "lab.hx_lis");
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reports_of_one_order_form_one_chain() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut base = LabSpec::new("XR0070", "XRMYY", "CL-R0", "2.5.1");
        base.performing_lab = "COUNTYLAB".into();
        let mut lis = Lis::connect(t.mllp_addr).await;
        assert_eq!(
            lis.send(oru_r01(&base, &electrolytes_critical()).as_bytes())
                .await
                .code,
            "AA"
        );
        // Four corrections of the same order race on four connections.
        let sends = (1..=4).map(|i| {
            let text = oru_r01(
                &base.corrected(&format!("CL-R{i}")),
                &electrolytes_critical(),
            );
            let addr = t.mllp_addr;
            tokio::spawn(async move {
                let mut lis = Lis::connect(addr).await;
                lis.send(text.as_bytes()).await.code
            })
        });
        for code in futures::future::join_all(sends).await {
            assert_eq!(code.unwrap(), "AA");
        }
        let panels = panels_of(&t, "XRMYY", "XR0070").await;
        assert_eq!(panels.len(), 5);
        // One current report; every other is superseded exactly once, by a distinct successor.
        let current: Vec<_> = panels
            .iter()
            .filter(|p| p.superseded_by.is_none())
            .collect();
        assert_eq!(current.len(), 1, "{panels:#?}");
        let mut superseded: Vec<_> = panels.iter().filter_map(|p| p.supersedes.clone()).collect();
        superseded.sort();
        superseded.dedup();
        assert_eq!(superseded.len(), 4, "no report is superseded twice");
        // Following the links back from the current one visits all five.
        let mut seen = 1;
        let mut cursor = current[0].supersedes.clone();
        while let Some(id) = cursor {
            let p = panels.iter().find(|p| p.panel_id == id).unwrap();
            cursor = p.supersedes.clone();
            seen += 1;
        }
        assert_eq!(seen, 5);
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_is_ae_207_and_nothing_is_acknowledged() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        // The blob store's staging folder becomes a file: every write fails (even as root).
        let staging = t.dir.path().join("blobs").join(".staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(staging.parent().unwrap()).unwrap();
        std::fs::write(&staging, b"not a folder").unwrap();
        let msg = oru_r01(&spec("P600", "HX_LIS", "HX-F1", "2.5.1"), &cbc());
        let mut lis = Lis::connect(t.mllp_addr).await;
        let ack = lis.send(msg.as_bytes()).await;
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AE", "HX-F1"),
            "{}",
            ack.text
        );
        assert!(ack.err.unwrap().contains("207^"));
        assert!(!stored(&t, "HX_LIS", "HX-F1").await);
        let wang = t.token("wang.tech").await;
        let (status, body, _) = post_hl7(&t, &wang, msg.as_bytes()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ack_of(&body).code, "AE");
        // Storage is back: the LIS's resend on the same connection is stored.
        std::fs::remove_file(&staging).unwrap();
        assert_eq!(lis.send(msg.as_bytes()).await.code, "AA");
        assert_eq!(panels_of(&t, "HX", "P600").await.len(), 1);
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_never_ends_the_listener_and_idle_connections_close() {
    let backend = backends().remove(0);
    let t = TestHub::start(&backend, None, |c| c.lab.idle_timeout_secs = 1).await;
    let mut lis = Lis::connect(t.mllp_addr).await;
    // Deterministic junk frames: random bytes, stray start blocks, MSH lines that go nowhere.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let good = oru_r01(&spec("P700", "HX_LIS", "HX-G1", "2.5.1"), &cbc());
    for i in 0..60 {
        let mut frame: Vec<u8> = match i % 4 {
            0 => (0..(i * 7 + 3))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x & 0xff) as u8
                })
                .filter(|b| *b != 0x0b && *b != 0x1c)
                .collect(),
            1 => b"MSH|".to_vec(),
            // A cut message may still be whole at a segment boundary: its own control ID.
            2 => {
                let cut = good.replacen("HX-G1", &format!("HX-T{i}"), 1);
                cut.as_bytes()[..cut.len() * (i % 9 + 1) / 10].to_vec()
            }
            _ => {
                let mut g = good.clone().into_bytes();
                let at = (i * 37) % g.len();
                g[at] = 0xff;
                g
            }
        };
        frame.insert(0, 0x0b);
        frame.extend_from_slice(&[0x1c, 0x0d]);
        lis.write(&frame).await;
        let ack = lis.read_ack().await;
        let allowed: &[&str] = if i % 4 == 2 {
            &["AA", "AE", "AR"]
        } else {
            &["AE", "AR"]
        };
        assert!(allowed.contains(&ack.code.as_str()), "{i}: {}", ack.text);
    }
    assert_eq!(lis.send(good.as_bytes()).await.code, "AA");
    // Silence longer than lab.idle_timeout_secs: the hub closes the connection.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(30), lis.stream.read(&mut buf))
        .await
        .expect("closed within 30 s")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The listener still serves.
    let mut again = Lis::connect(t.mllp_addr).await;
    assert_eq!(again.send(good.as_bytes()).await.code, "AA");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_and_the_others_keep_working() {
    let backend = backends().remove(0);
    let t = TestHub::start(&backend, None, |c| c.lab.max_connections = 2).await;
    let mut first = Lis::connect(t.mllp_addr).await;
    let mut second = Lis::connect(t.mllp_addr).await;
    // Both are open and served (an ACK proves the listener has taken each before the third comes).
    let msg = |control: &str| oru_r01(&spec("P800", "HX_LIS", control, "2.5.1"), &cbc());
    assert_eq!(first.send(msg("HX-C1").as_bytes()).await.code, "AA");
    assert_eq!(second.send(msg("HX-C2").as_bytes()).await.code, "AA");
    // The third is closed at once: nothing is read, nothing is stored.
    let mut third = Lis::connect(t.mllp_addr).await;
    let mut framed = vec![0x0b];
    framed.extend_from_slice(msg("HX-C3").as_bytes());
    framed.extend_from_slice(&[0x1c, 0x0d]);
    let _ = third.stream.write_all(&framed).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), third.stream.read(&mut buf))
        .await
        .expect("closed within 30 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "no ACK on a refused connection");
    assert!(!stored(&t, "HX_LIS", "HX-C3").await);
    // The senders already connected keep working; once one leaves, a new one is taken.
    assert_eq!(first.send(msg("HX-C4").as_bytes()).await.code, "AA");
    drop(second);
    let mut taken = None;
    for _ in 0..50 {
        let mut lis = Lis::connect(t.mllp_addr).await;
        let _ = lis.stream.write_all(&framed).await;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(5), lis.stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                taken = Some(n);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(
        taken.is_some(),
        "a slot freed by a closed connection is reused"
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7_and_fhir_of_one_patient_reach_one_patient() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let liu = t.token("liu.lab").await;
        // HL7 v2: PID-3 CX.4 is the county hospital's issuer as its HIS spells it.
        let (status, _, _) = post_hl7(
            &t,
            &liu,
            oru_r01_cbc("XR0900", "XRMYY", "CL-ONE-1", "2.5.1").as_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        // FHIR: the same ID under the hub's URN for that issuer, then under the site's own OID.
        for (control, system) in [
            ("CL-ONE-2", "urn:yilian:issuer:XRMYY"),
            ("CL-ONE-3", "urn:oid:2.16.156.10011.1.1.999.1"),
        ] {
            let bundle = fhir_bundle(&LabSpec::new("XR0900", "XRMYY", control, "R4"), &liver())
                .replace("urn:yilian:issuer:XRMYY", system);
            let (status, _) = post_fhir(&t, &liu, bundle).await;
            assert_eq!(status, StatusCode::CREATED, "{system}");
        }
        let panels = panels_of(&t, "XRMYY", "XR0900").await;
        assert_eq!(panels.len(), 3, "one patient, three panels");
        assert!(panels.iter().all(|p| p.patient.issuer == "XRMYY"));
        // An issuer nobody configured stays what it is: another patient.
        let bundle = fhir_bundle(&LabSpec::new("XR0900", "XRMYY", "CL-ONE-4", "R4"), &liver())
            .replace("urn:yilian:issuer:XRMYY", "urn:oid:1.2.3");
        assert_eq!(post_fhir(&t, &liu, bundle).await.0, StatusCode::CREATED);
        assert_eq!(panels_of(&t, "XRMYY", "XR0900").await.len(), 3);
        assert_eq!(panels_of(&t, "urn:oid:1.2.3", "XR0900").await.len(), 1);
        t.finish().await;
    }
}
