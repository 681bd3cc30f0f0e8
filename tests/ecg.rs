//! ECG end to end against the real hub (SQLite always, PostgreSQL when DATABASE_URL is set): township
//! sites send ECGs as HL7 aECG, SCP-ECG and DICOM waveforms; each is measured, routed to the ECG pool
//! (a STEMI statement, an extreme rate or the site's chest-pain flag first, with the short SLA); the
//! county ECG reader sees it rendered on paper with the patient's prior ECG from another site,
//! unclaimed urgent ECGs escalate, and the report is signed through the same flow as imaging.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{ManualClock, TestHub, backends};
use yilian_domain::ecg::{EcgRecord, GlobalMeasurements, LocalDateTime};
use yilian_fixtures::ecg::{EcgSpec, synthesize};
use yilian_formats::ecg::{EcgDicomIds, aecg, scp, to_dicom};

/// A valid resident ID (GB 11643): the same person at both townships.
const RESIDENT: &str = "11010519491231002X";

fn record(rate: f64, acquired: (u16, u8, u8), seed: u64) -> EcgRecord {
    let mut r = synthesize(&EcgSpec {
        heart_rate_bpm: rate,
        seed,
        ..EcgSpec::default()
    })
    .record;
    r.subject.patient_id = Some(RESIDENT.into());
    r.acquired_at = LocalDateTime::new(acquired.0, acquired.1, acquired.2, 8, 30, 0);
    r
}

fn dicom_ecg(r: &EcgRecord, n: u32) -> Vec<u8> {
    to_dicom(
        r,
        &EcgDicomIds {
            study_uid: format!("2.25.4400{n}"),
            series_uid: format!("2.25.4400{n}.1"),
            sop_uid: format!("2.25.4400{n}.1.1"),
            patient_id: "HX7001".into(),
            issuer_of_patient_id: Some("HX".into()),
            accession_number: None,
            institution_name: None,
            study_description: Some("ECG REST".into()),
        },
    )
    .unwrap()
}

async fn upload(
    t: &TestHub,
    token: &str,
    body: Vec<u8>,
    urgent: Option<&str>,
) -> (StatusCode, Value) {
    let url = match urgent {
        Some(reason) => {
            reqwest::Url::parse_with_params(&t.url("/api/v1/ecg"), &[("urgent_reason", reason)])
                .unwrap()
        }
        None => reqwest::Url::parse(&t.url("/api/v1/ecg")).unwrap(),
    };
    let r = t
        .http
        .post(url)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn exam_of(v: &Value) -> String {
    v["route"]["exam_id"]
        .as_str()
        .unwrap_or_else(|| panic!("not routed: {v}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecgs_are_measured_routed_rendered_with_prior_escalated_and_signed() {
    for backend in backends() {
        let clock = ManualClock::new(1_795_000_000_000);
        let t = TestHub::start(
            &backend,
            Some(clock.clone() as Arc<dyn yilian_app::Clock>),
            |_| {},
        )
        .await;
        let hx = t.token("wang.tech").await;
        let ds = t.token("chen.tech").await;
        let ecg_reader = t.token("sun.ecg").await;
        let rad_reader = t.token("li.reader").await;
        let oncall = t.token("qian.cardio").await;

        // 1. The prior: an HL7 aECG from 红星镇, three weeks earlier. Sent twice: the second is a no-op.
        let prior = record(64.0, (2026, 11, 1), 7);
        let xml = aecg::write(&prior).into_bytes();
        let (s, v) = upload(&t, &hx, xml.clone(), None).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["format"], "hl7-aecg");
        let prior_exam = exam_of(&v);
        let (s, again) = upload(&t, &hx, xml, None).await;
        assert_eq!(s, StatusCode::OK, "{again}");
        assert_eq!(again["duplicate"], true);
        assert_eq!(again["sop_instance_uid"], v["sop_instance_uid"]);

        // 2. Today's routine ECG from 东山 as SCP-ECG: same resident, another site.
        let current = record(75.0, (2026, 11, 22), 8);
        let (s, v) = upload(&t, &ds, scp::write(&current), None).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["format"], "scp-ecg");
        let routine_exam = exam_of(&v);

        // 3. A device STEMI statement, sent as a DICOM waveform over STOW-RS: stat, due in 10 minutes.
        let mut stemi = record(88.0, (2026, 11, 22), 9);
        stemi.interpretation = vec!["Sinus rhythm".into(), "*** ACUTE MI / STEMI ***".into()];
        stemi.device_measurements = GlobalMeasurements {
            heart_rate_bpm: Some(88.0),
            qrs_ms: Some(96.0),
            ..GlobalMeasurements::default()
        };
        t.stow_all(&hx, &[dicom_ecg(&stemi, 1)]).await;

        // 4. Chest pain flagged by the site on an aECG upload: urgent, 10 minutes.
        let chest = record(80.0, (2026, 11, 22), 10);
        let mut chest_xml = aecg::write(&chest);
        // Another person: a different local patient at 红星镇.
        chest_xml = chest_xml.replace(RESIDENT, "HX7002");
        let (s, v) = upload(&t, &hx, chest_xml.into_bytes(), Some("胸痛 chest pain")).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let chest_exam = exam_of(&v);
        assert!(
            v["route"]["explanation"]
                .as_str()
                .unwrap_or_default()
                .contains("urgent"),
            "{v}"
        );

        // The ECG pool lists them most urgent first; radiology sees none of them.
        let wl = t.get_json(&ecg_reader, "/api/v1/worklist").await;
        let items = wl["items"].as_array().unwrap();
        let order: Vec<(&str, &str)> = items
            .iter()
            .map(|e| (e["priority"].as_str().unwrap(), e["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            order,
            vec![
                ("stat", "ecg"),
                ("urgent", "ecg"),
                ("routine", "ecg"),
                ("routine", "ecg")
            ],
            "{wl}"
        );
        let stemi_item = &items[0];
        assert!(
            stemi_item["alerts"][0].as_str().unwrap().contains("STEMI"),
            "{stemi_item}"
        );
        let due = |e: &Value| {
            chrono::DateTime::parse_from_rfc3339(e["due_at"].as_str().unwrap()).unwrap()
        };
        let created = |e: &Value| {
            chrono::DateTime::parse_from_rfc3339(e["created_at"].as_str().unwrap()).unwrap()
        };
        assert_eq!((due(stemi_item) - created(stemi_item)).num_minutes(), 10);
        assert_eq!(items[1]["exam_id"], chest_exam.as_str());
        let stemi_exam = stemi_item["exam_id"].as_str().unwrap().to_string();
        let rad = t.get_json(&rad_reader, "/api/v1/worklist").await;
        assert_eq!(rad["items"], json!([]), "ECGs do not go to radiology");
        let r = t
            .get(&rad_reader, &format!("/api/v1/exams/{routine_exam}/ecg"))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        // 5. The reader opens the routine ECG: the hub's measurements beside the device's, and the prior
        //    from the other township.
        let view = t
            .get_json(&ecg_reader, &format!("/api/v1/exams/{routine_exam}/ecg"))
            .await;
        let rec = &view["records"][0];
        assert_eq!(rec["source_format"], "scp-ecg");
        assert_eq!(rec["leads"].as_array().unwrap().len(), 12, "{rec}");
        let hr = rec["hub_measurements"]["heart_rate_bpm"].as_f64().unwrap();
        assert!((hr - 75.0).abs() <= 2.0, "hub HR {hr} for a 75 bpm trace");
        assert_eq!(rec["alerts"], json!([]));
        assert_eq!(view["prior"]["exam_id"], prior_exam.as_str(), "{view}");
        assert_eq!(view["prior"]["site_name"], "红星镇卫生院");
        assert_eq!(view["prior"]["acquired_at"], "2026-11-01T08:30:00");
        let prior_hr = view["prior"]["hub_measurements"]["heart_rate_bpm"]
            .as_f64()
            .unwrap();
        assert!((prior_hr - 64.0).abs() <= 2.0, "{prior_hr}");

        // The STEMI record keeps what the device said.
        let sv = t
            .get_json(&ecg_reader, &format!("/api/v1/exams/{stemi_exam}/ecg"))
            .await;
        assert_eq!(
            sv["records"][0]["device_measurements"]["qrs_ms"], 96.0,
            "{sv}"
        );
        assert_eq!(
            sv["records"][0]["interpretation"][1],
            "*** ACUTE MI / STEMI ***"
        );

        // 6. Paper: SVG with the prior under it, PNG for print, options checked.
        let r = t
            .get(
                &ecg_reader,
                &format!("/api/v1/exams/{routine_exam}/ecg/rendered?prior=true"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
        let svg = r.text().await.unwrap();
        assert!(
            svg.contains("当前心电图") && svg.contains("既往心电图"),
            "both pages are there"
        );
        assert!(svg.contains("25 mm/s") && svg.contains("10 mm/mV"));
        assert!(!svg.contains(RESIDENT), "the patient is masked on paper");
        let r = t
            .get(
                &ecg_reader,
                &format!(
                    "/api/v1/exams/{routine_exam}/ecg/rendered?format=png&gain=20&speed=50&lang=en"
                ),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "image/png");
        let png = r.bytes().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let r = t
            .get(
                &ecg_reader,
                &format!("/api/v1/exams/{routine_exam}/ecg/rendered?gain=7"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);

        // 7. Nobody claims the urgent ECGs: past their 10 minutes they escalate to the on-call pool.
        assert_eq!(
            t.get_json(&oncall, "/api/v1/worklist").await["items"],
            json!([])
        );
        clock.advance_secs(11 * 60);
        let escalated = t.hub.escalate_overdue().await.unwrap();
        assert_eq!(escalated.len(), 2, "{escalated:?}");
        let wl = t.get_json(&oncall, "/api/v1/worklist").await;
        let ids: Vec<&str> = wl["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["exam_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![stemi_exam.as_str(), chest_exam.as_str()], "{wl}");
        assert_eq!(
            wl["items"][1]["priority"], "stat",
            "escalation raises to stat"
        );
        assert_eq!(wl["items"][0]["escalation"]["pool_id"], "county-ecg-oncall");
        assert!(
            t.hub.escalate_overdue().await.unwrap().is_empty(),
            "once only"
        );
        // The on-call cardiologist may read it.
        let r = t
            .post(&oncall, &format!("/api/v1/exams/{stemi_exam}/claim"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);

        // 8. The routine ECG is signed through the same report flow as imaging and published: the
        //    ECG result of a QC-qualified site is recognised (HR) for 30 days.
        let r = t
            .post(&ecg_reader, &format!("/api/v1/exams/{routine_exam}/claim"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let sign = t
            .post_json(
                &ecg_reader,
                &format!("/api/v1/exams/{routine_exam}/report/sign"),
                &json!({"findings": "窦性心律，心率75次/分，PR 160 ms，QRS 90 ms。", "impression": "正常心电图。"}),
            )
            .await;
        assert_eq!(
            sign.status(),
            StatusCode::OK,
            "{}",
            sign.text().await.unwrap_or_default()
        );
        let clinician = t.token("zhao.clinician").await;
        // The published ECG is on paper for the member hospital too (without the reader-only prior);
        // an unpublished one is not visible to it, and the sending site sees its own.
        let view = t
            .get_json(&clinician, &format!("/api/v1/exams/{routine_exam}/ecg"))
            .await;
        assert_eq!(view["records"][0]["source_format"], "scp-ecg", "{view}");
        assert_eq!(view["prior"], Value::Null);
        let r = t
            .get(
                &clinician,
                &format!("/api/v1/exams/{routine_exam}/ecg/rendered?format=png"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = t
            .get(&clinician, &format!("/api/v1/exams/{chest_exam}/ecg"))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "not published");
        let r = t
            .get(&ds, &format!("/api/v1/exams/{routine_exam}/ecg"))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "the sending site");
        let r = t.get(&ds, &format!("/api/v1/exams/{prior_exam}/ecg")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "another site's ECG");
        let results = t
            .get_json(
                &clinician,
                &format!("/api/v1/results?patient_id={RESIDENT}"),
            )
            .await;
        let ecg_result = results["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["modality"] == "ECG" || i["exam"]["modality"] == "ECG")
            .unwrap_or_else(|| panic!("{results}"));
        assert_eq!(
            ecg_result["recognition"]["recognised"], true,
            "{ecg_result}"
        );
        // It says what it is and links to its traces, which the clinician may open.
        assert_eq!(ecg_result["kind"], "ecg");
        let traces = ecg_result["links"]["ecg"].as_str().unwrap();
        assert_eq!(t.get(&clinician, traces).await.status(), StatusCode::OK);

        // Every look was audited.
        let events = t.hub.catalog.audit_events(500).await.unwrap();
        for action in ["ecg.view", "ecg.render", "exam.escalate"] {
            assert!(
                events.iter().any(|e| e.action == action),
                "no {action} audit event"
            );
        }
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ecgs_are_refused_with_a_reason_and_store_nothing() {
    let t = TestHub::start(&support::Backend::Sqlite, None, |_| {}).await;
    let hx = t.token("wang.tech").await;
    let (s, v) = upload(&t, &hx, b"hello, not an ECG".to_vec(), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "unreadable_ecg");

    // A truncated SCP-ECG file: its CRC / section lengths no longer hold.
    let good = scp::write(&record(70.0, (2026, 11, 22), 3));
    let (s, v) = upload(&t, &hx, good[..good.len() / 2].to_vec(), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(!v["message"].as_str().unwrap_or_default().is_empty());

    // An aECG without a patient ID cannot be filed.
    let mut anon = record(70.0, (2026, 11, 22), 4);
    anon.subject.patient_id = None;
    let (s, v) = upload(&t, &hx, aecg::write(&anon).into_bytes(), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().unwrap().contains("patient ID"), "{v}");

    // A reader may not upload.
    let reader = t.token("sun.ecg").await;
    let (s, _) = upload(&t, &reader, good.clone(), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Nothing above reached the catalog.
    let studies = t.get_json(&hx, "/dicomweb/studies").await;
    assert_eq!(studies, json!([]), "{studies}");
    t.finish().await;
}

/// A Holter excerpt as an Ambulatory ECG waveform (two leads, 200 Hz, one minute) over STOW-RS: read,
/// measured, routed to the ECG pool, and printed as full-width strips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambulatory_ecg_is_read_measured_and_printed() {
    use yilian_domain::ecg::Lead;
    let t = TestHub::start(&support::Backend::Sqlite, None, |_| {}).await;
    let hx = t.token("wang.tech").await;
    let reader = t.token("sun.ecg").await;
    let mut rec = synthesize(&EcgSpec {
        sample_rate_hz: 200.0,
        duration_secs: 60.0,
        heart_rate_bpm: 58.0,
        ..EcgSpec::default()
    })
    .record;
    rec.leads.retain(|l| matches!(l.lead, Lead::II | Lead::V5));
    let file = dicom_ecg(&rec, 9);
    let mut obj = dicom_object::from_reader(std::io::Cursor::new(&file[128..])).unwrap();
    const AMBULATORY: &str = "1.2.840.10008.5.1.4.1.1.9.1.3";
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::SOP_CLASS_UID,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from(AMBULATORY),
    ));
    obj.update_meta(|m| m.media_storage_sop_class_uid = AMBULATORY.into());
    let mut holter = Vec::new();
    obj.write_all(&mut holter).unwrap();
    t.stow_all(&hx, &[holter]).await;

    let wl = t.get_json(&reader, "/api/v1/worklist").await;
    let exam = wl["items"][0]["exam_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{wl}"))
        .to_string();
    assert_eq!(wl["items"][0]["priority"], "routine");
    let view = t
        .get_json(&reader, &format!("/api/v1/exams/{exam}/ecg"))
        .await;
    let rec = &view["records"][0];
    assert_eq!(rec["leads"], json!(["II", "V5"]), "{rec}");
    assert_eq!(rec["sample_rate_hz"], 200.0);
    assert_eq!(rec["duration_s"], 60.0);
    let hr = rec["hub_measurements"]["heart_rate_bpm"].as_f64().unwrap();
    assert!((hr - 58.0).abs() <= 2.0, "{hr}");
    let r = t
        .get(&reader, &format!("/api/v1/exams/{exam}/ecg/rendered"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let svg = r.text().await.unwrap();
    assert!(
        svg.contains(">V5<") && !svg.contains(">aVR<"),
        "two strips, no derived 12-lead layout"
    );
    t.finish().await;
}
