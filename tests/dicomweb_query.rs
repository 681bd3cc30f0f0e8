//! DICOMweb search and retrieve over real HTTP on every catalog backend: QIDO-RS matching (single,
//! wildcard, range, list, paging, includefield), scope by role and site, WADO-RS metadata from the
//! catalog with working bulk data references, series retrieve, frames, 406 and WADO-URI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::{TestHub, backends};
use yilian_fixtures::{InstanceSpec, instance_bytes};

/// Two studies of two patients at one township: a CT (3 slices) and a DX.
fn corpus() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (1..=3)
        .map(|n| instance_bytes(&InstanceSpec::ct(n)))
        .collect();
    out.push(instance_bytes(&InstanceSpec {
        patient_id: "HX0002".into(),
        patient_name: "Wang^Er".into(),
        study_uid: "2.25.2002".into(),
        series_uid: "2.25.2002.1".into(),
        sop_uid: "2.25.2002.1.1".into(),
        modality: "DX".into(),
        study_description: "胸部正位".into(),
        ..InstanceSpec::ct(1)
    }));
    out
}

fn uids(v: &Value, tag: &str) -> Vec<String> {
    let mut u: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[tag]["Value"][0].as_str().unwrap().to_string())
        .collect();
    u.sort();
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qido_matches_as_ps3_4_says_within_the_callers_scope() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let tech = t.token("wang.tech").await;
        t.stow_all(&tech, &corpus()).await;
        // Each stored instance has exactly one store audit event (written with the instance), and a
        // repeat of the same bytes is audited too.
        t.stow_all(&tech, &corpus()[..1]).await;
        let audit = t.hub.catalog.audit_events(1000).await.unwrap();
        let stores: Vec<_> = audit.iter().filter(|e| e.action == "dicom.store").collect();
        for sop in ["2.25.1001.1.2", "2.25.1001.1.3", "2.25.2002.1.1"] {
            let ev: Vec<_> = stores.iter().filter(|e| e.detail == sop).collect();
            assert_eq!(ev.len(), 1, "{sop}: {ev:?}");
            assert!(ev[0].patient_key.is_some() && ev[0].actor == "wang.tech");
        }
        assert_eq!(
            stores
                .iter()
                .filter(|e| e.detail.starts_with("2.25.1001.1.1"))
                .count(),
            2,
            "the first store and its duplicate"
        );

        let all = t.get_json(&tech, "/dicomweb/studies").await;
        assert_eq!(uids(&all, "0020000D"), vec!["2.25.1001", "2.25.2002"]);
        let ct = all
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["0020000D"]["Value"][0] == "2.25.1001")
            .unwrap();
        assert_eq!(ct["00201208"]["Value"][0], 3, "instances in study");
        assert_eq!(ct["00201206"]["Value"][0], 1, "series in study");
        assert_eq!(ct["00080061"]["Value"][0], "CT");
        assert!(
            ct["00081190"]["Value"][0]
                .as_str()
                .unwrap()
                .ends_with("/dicomweb/studies/2.25.1001")
        );

        for (query, want) in [
            ("PatientID=HX0002", vec!["2.25.2002"]),
            ("PatientName=cesh*", vec!["2.25.1001"]),
            ("PatientName=ceshi%5Eyi", vec!["2.25.1001"]),
            ("PatientName=Yi&fuzzymatching=true", vec!["2.25.1001"]),
            ("ModalitiesInStudy=DX", vec!["2.25.2002"]),
            ("ModalitiesInStudy=MR%5CDX", vec!["2.25.2002"]),
            ("StudyInstanceUID=2.25.1001%5C2.25.9", vec!["2.25.1001"]),
            (
                "StudyDate=20261101-20261130",
                vec!["2.25.1001", "2.25.2002"],
            ),
            ("StudyDate=20270101-", vec![]),
            ("AccessionNumber=NONE", vec![]),
        ] {
            let got = t
                .get_json(&tech, &format!("/dicomweb/studies?{query}"))
                .await;
            assert_eq!(uids(&got, "0020000D"), want, "{query}");
        }
        // Paging: newest first, then stable by UID.
        let p1 = t.get_json(&tech, "/dicomweb/studies?limit=1").await;
        let p2 = t
            .get_json(&tech, "/dicomweb/studies?limit=1&offset=1")
            .await;
        assert_eq!(p1.as_array().unwrap().len(), 1);
        assert_ne!(uids(&p1, "0020000D"), uids(&p2, "0020000D"));
        // includefield adds attributes; unknown keys are ignored with a Warning.
        let resp = t
            .get(
                &tech,
                "/dicomweb/studies?PatientID=HX0002&includefield=StudyDescription&Colour=red",
            )
            .await;
        assert!(
            resp.headers()["warning"]
                .to_str()
                .unwrap()
                .contains("Colour")
        );
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v[0]["00081030"]["Value"][0], "胸部正位");
        // A bad value is a 400 naming the key.
        let resp = t.get(&tech, "/dicomweb/studies?StudyDate=2026-11").await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.text().await.unwrap().contains("StudyDate"));

        // Series and instance levels.
        let series = t
            .get_json(&tech, "/dicomweb/studies/2.25.1001/series")
            .await;
        assert_eq!(uids(&series, "0020000E"), vec!["2.25.1001.1"]);
        assert_eq!(series[0]["00201209"]["Value"][0], 3);
        let inst = t
            .get_json(
                &tech,
                "/dicomweb/studies/2.25.1001/series/2.25.1001.1/instances?InstanceNumber=2",
            )
            .await;
        assert_eq!(uids(&inst, "00080018"), vec!["2.25.1001.1.2"]);
        let dx = t.get_json(&tech, "/dicomweb/series?Modality=DX").await;
        assert_eq!(uids(&dx, "0020000E"), vec!["2.25.2002.1"]);

        // Scope: another township's technician finds nothing; a clinician finds nothing unsigned.
        let other = t.token("chen.tech").await;
        assert_eq!(
            t.get_json(&other, "/dicomweb/studies").await,
            Value::Array(vec![])
        );
        let clin = t.token("zhao.clinician").await;
        assert_eq!(
            t.get_json(&clin, "/dicomweb/instances").await,
            Value::Array(vec![])
        );
        let admin = t.token("admin").await;
        assert_eq!(
            t.get(&admin, "/dicomweb/studies").await.status(),
            StatusCode::FORBIDDEN
        );
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wado_serves_metadata_bulk_data_frames_and_series_as_stored() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let tech = t.token("wang.tech").await;
        let files = corpus();
        t.stow_all(&tech, &files).await;
        let original = yilian_formats::dicom::open(&files[0]).unwrap();
        let pixels = yilian_formats::bulk::element_bytes(&original, "7FE00010").unwrap();

        let md = t
            .get_json(&tech, "/dicomweb/studies/2.25.1001/metadata")
            .await;
        assert_eq!(md.as_array().unwrap().len(), 3);
        let first = md
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["00080018"]["Value"][0] == "2.25.1001.1.1")
            .unwrap();
        assert_eq!(first["00100020"]["Value"][0], "HX0001");
        let uri = first["7FE00010"]["BulkDataURI"].as_str().unwrap();
        assert!(uri.starts_with(&t.base), "{uri}");
        let bulk = t.http.get(uri).bearer_auth(&tech).send().await.unwrap();
        assert_eq!(bulk.status(), StatusCode::OK);
        let body = bulk.bytes().await.unwrap();
        assert!(
            body.windows(pixels.len()).any(|w| w == pixels.as_slice()),
            "bulk data does not carry the pixel data"
        );

        let frame = t
            .get(
                &tech,
                "/dicomweb/studies/2.25.1001/series/2.25.1001.1/instances/2.25.1001.1.1/frames/1",
            )
            .await;
        assert_eq!(frame.status(), StatusCode::OK);
        let body = frame.bytes().await.unwrap();
        assert!(body.windows(pixels.len()).any(|w| w == pixels.as_slice()));
        assert_eq!(
            t.get(
                &tech,
                "/dicomweb/studies/2.25.1001/series/2.25.1001.1/instances/2.25.1001.1.1/frames/2"
            )
            .await
            .status(),
            StatusCode::BAD_REQUEST
        );

        // Series retrieve streams every instance, bit-exact.
        let series = t
            .get(&tech, "/dicomweb/studies/2.25.1001/series/2.25.1001.1")
            .await;
        assert_eq!(series.status(), StatusCode::OK);
        let body = series.bytes().await.unwrap();
        for f in &files[..3] {
            assert!(body.windows(f.len()).any(|w| w == f.as_slice()));
        }
        // A transfer syntax the hub does not hold is 406: it never transcodes.
        let resp = t
            .http
            .get(t.url("/dicomweb/studies/2.25.1001/series/2.25.1001.1"))
            .bearer_auth(&tech)
            .header(
                "accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);

        // WADO-URI: the file bit-exact, or a JPEG.
        let q = "requestType=WADO&studyUID=2.25.1001&seriesUID=2.25.1001.1&objectUID=2.25.1001.1.1";
        let file = t
            .get(&tech, &format!("/wado?{q}&contentType=application/dicom"))
            .await;
        assert_eq!(file.status(), StatusCode::OK);
        assert_eq!(file.bytes().await.unwrap().as_ref(), files[0].as_slice());
        let jpeg = t.get(&tech, &format!("/wado?{q}&rows=32")).await;
        assert_eq!(jpeg.headers()["content-type"], "image/jpeg");
        assert_eq!(&jpeg.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);
        assert_eq!(
            t.get(&tech, "/wado?studyUID=2.25.1001").await.status(),
            StatusCode::BAD_REQUEST
        );

        // Out of scope looks like absent.
        let other = t.token("chen.tech").await;
        assert_eq!(
            t.get(&other, "/dicomweb/studies/2.25.1001/metadata")
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
        t.finish().await;
    }
}
