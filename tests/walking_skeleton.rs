//! The walking skeleton end to end, over real HTTP, on every catalog backend: a township tech stores a
//! study with STOW-RS, it is routed to the county pool, a reader claims, views, reports and signs it,
//! and a member-hospital clinician finds it recognised and verifies it online and offline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, BlobStore, ManualClock, TestHub, backends, multipart};
use yilian_fixtures::{InstanceSpec, instance_bytes};

const CT: &str = "2.25.1001";
const SERIES: &str = "2.25.1001.1";

fn ct(n: u32) -> Vec<u8> {
    instance_bytes(&InstanceSpec::ct(n))
}

async fn stow(
    t: &TestHub,
    token: &str,
    path: &str,
    parts: &[(&str, &[u8])],
) -> (StatusCode, Value) {
    let (ct, body) = multipart(parts);
    let resp = t
        .http
        .post(t.url(path))
        .bearer_auth(token)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .expect("stow");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn failed_reasons(v: &Value) -> Vec<(u64, String)> {
    v["00081198"]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["00081197"]["Value"][0].as_u64().unwrap_or(0),
                        i["00000902"]["Value"][0].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn referenced(v: &Value) -> Vec<String> {
    v["00081199"]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["00081155"]["Value"][0].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_imaging_exam_from_upload_to_recognised_result() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        skeleton(&backend).await;
    }
}

/// The whole walk again with blobs on the S3 test server (and the last catalog backend: PostgreSQL
/// when set, the production profile): every blob the walk writes and reads goes through S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_imaging_exam_with_blobs_on_s3() {
    let Some(env) = support::s3_env() else {
        return;
    };
    let backend = backends().pop().expect("a catalog backend");
    eprintln!("backend: {backend:?}, blobs on {env:?}");
    skeleton_on(&backend, &BlobStore::S3(env)).await;
}

/// STOW-RS → WADO-RS on S3 blobs: a small instance (one PUT) and an 8 MiB one (multipart in 5 MiB
/// parts) come back bit-exact, and the bytes are in the bucket, not on the hub's disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stow_then_wado_with_blobs_on_s3() {
    let Some(env) = support::s3_env() else {
        return;
    };
    let backend = backends().pop().expect("a catalog backend");
    let t = TestHub::start_with_blobs(&backend, &BlobStore::S3(env), None, |_| {}).await;
    let tech = t.token("wang.tech").await;
    let small = ct(1);
    let large = instance_bytes(&InstanceSpec {
        rows: 2048,
        columns: 2048,
        ..InstanceSpec::ct(2)
    });
    assert!(large.len() > 8 << 20, "{} bytes", large.len());
    let (status, body) = stow(
        &t,
        &tech,
        "/dicomweb/studies",
        &[("application/dicom", &small), ("application/dicom", &large)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (n, sent) in [(1, &small), (2, &large)] {
        let sop = format!("{SERIES}.{n}");
        let rsp = t
            .get(
                &tech,
                &format!("/dicomweb/studies/{CT}/series/{SERIES}/instances/{sop}"),
            )
            .await;
        assert_eq!(rsp.status(), StatusCode::OK);
        let boundary = boundary_of(&rsp);
        let body = rsp.bytes().await.unwrap();
        let got = one_part(&body, &boundary);
        assert!(got == sent.as_slice(), "instance {n} came back bit-exact");
        let rec = t
            .hub
            .catalog
            .instance(&sop.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            t.hub.blobs.size(&rec.blob_key).await.unwrap(),
            Some(sent.len() as u64)
        );
    }
    assert!(
        !t.dir.path().join("blobs").exists(),
        "no blob was written to the local disk"
    );
    t.finish().await;
}

/// An instance above the whole-read limit (16 MiB) is streamed from the store: it comes back
/// bit-exact over WADO-RS (instance and study) and WADO-URI. When its blob is damaged on disk after
/// the upload, the streamed response is cut off (no closing boundary, or a broken body) instead of
/// delivering different bytes; a small damaged instance is refused before any byte is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_instance_is_streamed_and_a_damaged_one_is_cut_off() {
    let backend = backends().pop().expect("a catalog backend");
    let t = TestHub::start_with_blobs(&backend, &BlobStore::File, None, |_| {}).await;
    let tech = t.token("wang.tech").await;
    let small = ct(1);
    let large = instance_bytes(&InstanceSpec {
        rows: 3072,
        columns: 3072,
        ..InstanceSpec::ct(2)
    });
    assert!(large.len() as i64 > yilian_app::search::VERIFY_WHOLE_BYTES);
    let (status, body) = stow(
        &t,
        &tech,
        "/dicomweb/studies",
        &[("application/dicom", &small), ("application/dicom", &large)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let large_path = format!("/dicomweb/studies/{CT}/series/{SERIES}/instances/{SERIES}.2");
    let rsp = t.get(&tech, &large_path).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let boundary = boundary_of(&rsp);
    let body = rsp.bytes().await.unwrap();
    assert!(one_part(&body, &boundary) == large.as_slice(), "bit-exact");
    assert!(body.ends_with(format!("--{boundary}--\r\n").as_bytes()));

    // The study: both instances, in two parts, closed.
    let rsp = t.get(&tech, &format!("/dicomweb/studies/{CT}")).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let boundary = boundary_of(&rsp);
    let body = rsp.bytes().await.unwrap();
    assert!(body.ends_with(format!("--{boundary}--\r\n").as_bytes()));
    assert!(find(&body, &large).is_some() && find(&body, &small).is_some());

    // WADO-URI, the raw Part 10.
    let uri = format!(
        "/wado?requestType=WADO&studyUID={CT}&seriesUID={SERIES}&objectUID={SERIES}.2&contentType=application/dicom"
    );
    let rsp = t.get(&tech, &uri).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(rsp.bytes().await.unwrap() == large.as_slice());

    // Damage both blobs on disk (one byte each, in the middle).
    for n in [1, 2] {
        let rec = t
            .hub
            .catalog
            .instance(&format!("{SERIES}.{n}").parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let path = t.dir.path().join("blobs").join(&rec.blob_key);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
    }
    let rsp = t.get(&tech, &large_path).await;
    assert_eq!(
        rsp.status(),
        StatusCode::OK,
        "headers go out before the end is hashed"
    );
    let boundary = boundary_of(&rsp);
    match rsp.bytes().await {
        Err(_) => {}
        Ok(body) => assert!(
            !body.ends_with(format!("--{boundary}--\r\n").as_bytes()),
            "a damaged large instance must not arrive as a complete response"
        ),
    }
    let rsp = t
        .get(
            &tech,
            &format!("/dicomweb/studies/{CT}/series/{SERIES}/instances/{SERIES}.1"),
        )
        .await;
    assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    t.finish().await;
}

/// An S3 endpoint on the alliance's own PKI (`https://`, a certificate signed by the alliance CA):
/// trusted with `blobs.ca_file`, refused without it (the system roots do not know that CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_store_on_the_alliance_ca_is_trusted_with_ca_file() {
    let Some(env) = support::s3_env() else {
        return;
    };
    let (ca_pem, server) = support::test_ca_and_server();
    let upstream = env
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = support::tls_proxy(server, upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("alliance-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let text = format!(
        "{}\n",
        yilian_config::DEMO_TOML.replacen(
            "[blobs]\nurl = \"file://yilian-data/blobs\"\n",
            &format!(
                "[blobs]\nurl = \"s3://{}/ca-{}\"\nendpoint = \"https://{proxy}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nca_file = \"{}\"\nstaging_dir = \"{}\"\nmax_retries = 0\n",
                env.bucket,
                ulid::Ulid::new().to_string().to_lowercase(),
                env.region,
                env.access_key_id,
                ca_file.display(),
                dir.path().join("staging").display(),
            ),
            1,
        )
    );
    let mut cfg = yilian_config::Config::from_toml(&text, "ca.toml").unwrap();
    let secret = env.secret_access_key.clone();
    cfg.finish(|k| (k == "YILIAN_BLOBS_SECRET_ACCESS_KEY").then(|| secret.clone()))
        .unwrap();
    assert!(cfg.blobs.ca_pem.is_some(), "the CA file was read at load");
    let data = bytes::Bytes::from(instance_bytes(&InstanceSpec::ct(9)));
    let key = "sha256/00/00/ca-check";
    let blobs = yilian_store::open_blobs(&cfg.blobs).unwrap();
    blobs.put(key, data.clone()).await.unwrap();
    assert_eq!(blobs.get(key).await.unwrap(), data);

    // The same store without the CA: the TLS handshake fails and nothing is acknowledged.
    let mut no_ca = cfg.blobs.clone();
    no_ca.ca_file = None;
    no_ca.ca_pem = None;
    let blobs = yilian_store::open_blobs(&no_ca).unwrap();
    assert!(
        blobs.put(key, data).await.is_err(),
        "an unknown CA is refused"
    );
}

/// `yilian serve` does not start on an S3 store that refuses its credentials: the start-up check
/// (`check_blob_store`) fails and names the store. (A missing bucket fails the same way on S3 and MinIO; s3s-fs creates it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_does_not_start_on_an_s3_store_it_cannot_write() {
    let Some(env) = support::s3_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = yilian_config::Config::from_toml(yilian_config::DEMO_TOML, "demo").unwrap();
    cfg.database.url = format!("sqlite://{}/catalog.db?mode=rwc", dir.path().display());
    cfg.keys.dir = dir.path().join("keys");
    let env = support::S3Env {
        secret_access_key: "not-the-secret".into(),
        ..env
    };
    support::use_s3(&mut cfg, &env, dir.path());
    cfg.blobs.max_retries = 0;
    let hub = yilian::open_hub(cfg).await.unwrap();
    let Err(err) = yilian::check_blob_store(&hub).await else {
        panic!("the start-up check passed with a wrong S3 secret");
    };
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "writing to the blob store at s3://{}/",
            env.bucket
        )),
        "{msg}"
    );
}

/// The boundary a multipart response's Content-Type names.
fn boundary_of(rsp: &reqwest::Response) -> String {
    let ct = rsp.headers()["content-type"].to_str().unwrap();
    ct.split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// The bytes of the single part of a multipart/related body.
fn one_part<'a>(body: &'a [u8], boundary: &str) -> &'a [u8] {
    let start = format!("--{boundary}\r\n");
    let from = find(body, start.as_bytes()).unwrap() + start.len();
    let head_end = find(&body[from..], b"\r\n\r\n").unwrap() + from + 4;
    let end = find(&body[head_end..], format!("\r\n--{boundary}").as_bytes()).unwrap() + head_end;
    &body[head_end..end]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn skeleton(backend: &Backend) {
    skeleton_on(backend, &BlobStore::File).await;
}

async fn skeleton_on(backend: &Backend, blobs: &BlobStore) {
    let t = TestHub::start_with_blobs(backend, blobs, None, |_| {}).await;
    let tech = t.token("wang.tech").await;
    let other_tech = t.token("chen.tech").await;
    let reader = t.token("li.reader").await;
    let reader2 = t.token("zhou.reader").await;
    let clinician = t.token("zhao.clinician").await;
    let admin = t.token("admin").await;

    // --- 1. Upload
    let (c1, c2, c3) = (ct(1), ct(2), ct(3));
    let (status, _) = stow(
        &t,
        "yl_not-a-token",
        "/dicomweb/studies",
        &[("application/dicom", &c1)],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = stow(
        &t,
        &clinician,
        "/dicomweb/studies",
        &[("application/dicom", &c1)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a clinician may not upload");

    let truncated = &c3[..c3.len() - 100];
    let no_study = instance_bytes(&InstanceSpec {
        study_uid: String::new(),
        sop_uid: "2.25.1001.1.99".into(),
        ..InstanceSpec::ct(9)
    });
    let (status, body) = stow(
        &t,
        &tech,
        "/dicomweb/studies",
        &[
            ("application/dicom", &c1),
            ("application/dicom", b"this is not DICOM"),
            ("application/dicom", &c2),
            ("application/dicom", truncated),
            ("application/dicom", &no_study),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "some parts failed: {body}");
    assert_eq!(referenced(&body), vec!["2.25.1001.1.1", "2.25.1001.1.2"]);
    let reasons = failed_reasons(&body);
    assert_eq!(reasons.len(), 3, "{body}");
    assert!(reasons.iter().all(|(code, _)| *code == 0xC000));
    assert!(reasons[0].1.contains("DICM"), "{:?}", reasons[0]);
    assert!(reasons[1].1.contains("truncated"), "{:?}", reasons[1]);
    assert!(
        reasons[2].1.contains("Study Instance UID"),
        "{:?}",
        reasons[2]
    );
    assert_eq!(
        body["00081190"]["Value"][0],
        json!(format!("{}/dicomweb/studies/{CT}", t.base))
    );
    // Nothing half-written: the failed instances left no catalog rows.
    assert!(
        t.hub
            .catalog
            .instance(&"2.25.1001.1.3".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        t.hub
            .catalog
            .instance(&"2.25.1001.1.99".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // The original bytes are kept unchanged, with their SHA-256.
    let stored = t
        .hub
        .catalog
        .instance(&"2.25.1001.1.1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t.hub.blobs.get(&stored.blob_key).await.unwrap().as_ref(),
        c1.as_slice()
    );
    assert_eq!(stored.sha256.len(), 64);

    // The third instance again, now complete, into the study URL; the first again (same bytes) is a no-op.
    let (status, body) = stow(
        &t,
        &tech,
        &format!("/dicomweb/studies/{CT}"),
        &[("application/dicom", &c3), ("application/dicom", &c1)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(referenced(&body).len(), 2);
    // Same SOP Instance UID, different bytes: refused with a reason, the stored copy untouched.
    let altered = instance_bytes(&InstanceSpec {
        patient_name: "Ceshi^Bian".into(),
        ..InstanceSpec::ct(1)
    });
    let (status, body) = stow(
        &t,
        &tech,
        "/dicomweb/studies",
        &[("application/dicom", &altered)],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let reasons = failed_reasons(&body);
    assert_eq!(reasons[0].0, 0x0111);
    assert!(reasons[0].1.contains("different content"), "{reasons:?}");
    let stored_again = t
        .hub
        .catalog
        .instance(&"2.25.1001.1.1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_again.sha256, stored.sha256);
    // A part sent to the wrong study URL fails alone.
    let (status, body) = stow(
        &t,
        &tech,
        "/dicomweb/studies/2.25.777",
        &[("application/dicom", &c2)],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(failed_reasons(&body)[0].0, 0xA900);
    // Another township cannot add to (or see) this site's study.
    let (status, body) = stow(
        &t,
        &other_tech,
        "/dicomweb/studies",
        &[("application/dicom", &ct(4))],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(failed_reasons(&body)[0].0, 0x0124);

    let rendered =
        format!("/dicomweb/studies/{CT}/series/{SERIES}/instances/2.25.1001.1.1/rendered");
    let r = t.get(&other_tech, &rendered).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "another site's study looks absent"
    );
    let r = t.get(&tech, &rendered).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the uploading site sees its own study"
    );

    // --- 2. Route: nothing on the worklist until the study is complete.
    let wl: Value = t.get_json(&reader, "/api/v1/worklist").await;
    assert_eq!(wl["items"], json!([]));
    let r = t
        .post(&other_tech, &format!("/api/v1/studies/{CT}/complete"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let done: Value = t
        .post(&tech, &format!("/api/v1/studies/{CT}/complete"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["state"], "routed", "{done}");
    let exam_id = done["exam_id"].as_str().unwrap().to_string();
    assert!(
        done["explanation"]
            .as_str()
            .unwrap()
            .contains("township-ct-mr"),
        "{done}"
    );

    let wl: Value = t.get_json(&reader, "/api/v1/worklist").await;
    let items = wl["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{wl}");
    assert_eq!(items[0]["exam_id"], json!(exam_id));
    assert_eq!(items[0]["pool_id"], "county-rad");
    assert_eq!(items[0]["priority"], "routine");
    assert_eq!(items[0]["modality"], "CT");
    assert!(items[0]["due_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        items[0]["patient"]["patient_id_masked"], "HX0*01",
        "identifiers leave masked"
    );
    let r = t.get(&clinician, "/api/v1/worklist").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // --- 3. Read
    let claim = format!("/api/v1/exams/{exam_id}/claim");
    let r = t.post(&clinician, &claim).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a clinician cannot claim"
    );
    let r = t.post(&reader, &claim).await;
    assert_eq!(r.status(), StatusCode::OK);
    let claimed: Value = r.json().await.unwrap();
    assert_eq!(claimed["claimed_by"], "li.reader");
    let r = t.post(&reader2, &claim).await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "one exam, one reader");
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["code"], "exam_claimed");

    let exam: Value = t
        .get_json(&reader, &format!("/api/v1/exams/{exam_id}"))
        .await;
    assert_eq!(exam["instances"].as_array().unwrap().len(), 3);
    let png = t
        .http
        .get(t.url(&rendered))
        .bearer_auth(&reader)
        .header("accept", "image/png")
        .send()
        .await
        .unwrap();
    assert_eq!(png.status(), StatusCode::OK);
    assert_eq!(png.headers()["content-type"], "image/png");
    let img = image::load_from_memory(&png.bytes().await.unwrap())
        .unwrap()
        .to_luma8();
    assert_eq!((img.width(), img.height()), (64, 64));
    let (air, tissue) = (img.get_pixel(0, 0)[0], img.get_pixel(32, 32)[0]);
    assert_eq!(air, 0, "air is black under the dataset's 40/400 window");
    assert!(tissue > 40 && tissue < 220, "tissue is grey: {tissue}");
    let wide = t
        .http
        .get(t.url(&format!("{rendered}?window=-1000,10")))
        .bearer_auth(&reader)
        .header("accept", "image/png")
        .send()
        .await
        .unwrap();
    let img2 = image::load_from_memory(&wide.bytes().await.unwrap())
        .unwrap()
        .to_luma8();
    assert_eq!(
        img2.get_pixel(32, 32)[0],
        255,
        "window= overrides the dataset's window"
    );
    let jpeg = t.get(&reader, &rendered).await;
    assert_eq!(jpeg.headers()["content-type"], "image/jpeg");
    assert_eq!(&jpeg.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);
    let bad = t.get(&reader, &format!("{rendered}?window=wide")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // --- 4. Report and sign
    let report_url = format!("/api/v1/exams/{exam_id}/report");
    let r = t
        .put_json(
            &reader2,
            &report_url,
            &json!({"findings": "x", "impression": "y"}),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "only the lease holder writes"
    );
    let r = t.put_json(&reader, &report_url, &json!({"findings": "双肺纹理清晰，未见实变影。", "impression": "胸部CT平扫未见明显异常。"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let signed: Value = t
        .post(&reader, &format!("{report_url}/sign"))
        .await
        .json()
        .await
        .unwrap();
    let report_id = signed["report"]["report_id"]
        .as_str()
        .expect("signed document")
        .to_string();
    assert_eq!(signed["report"]["findings"], "双肺纹理清晰，未见实变影。");
    assert_eq!(signed["report"]["results"].as_array().unwrap().len(), 3);
    assert_eq!(signed["report"]["signer"]["username"], "li.reader");
    // The alliance default since version 14: SM2 over SM3, countersigned by the hub clock key.
    assert_eq!(signed["signature"]["algorithm"], "SM2");
    assert_eq!(signed["countersignature"]["algorithm"], "SM2");
    // A signed report can no longer change.
    let r = t
        .put_json(
            &reader,
            &report_url,
            &json!({"findings": "改", "impression": "改"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = t.post(&reader, &format!("{report_url}/sign")).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let wl: Value = t.get_json(&reader, "/api/v1/worklist").await;
    assert_eq!(wl["items"], json!([]), "a signed exam leaves the worklist");
    let status: Value = t.get_json(&tech, &format!("/api/v1/studies/{CT}")).await;
    assert_eq!(
        status["report_id"],
        json!(report_id),
        "the uploader sees the report is back"
    );

    // --- 5. Publish and reuse
    let r = t
        .get(&tech, "/api/v1/results?patient_id=HX0001&issuer=HX")
        .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a tech does not search patients"
    );
    let r = t
        .get(&admin, "/api/v1/results?patient_id=HX0001&issuer=HX")
        .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "an admin reads no clinical data"
    );
    let results: Value = t
        .get_json(
            &clinician,
            "/api/v1/results?patient_id=HX0001&issuer=HX&purpose=outpatient-followup",
        )
        .await;
    let items = results["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{results}");
    let item = &items[0];
    assert_eq!(item["report_id"], json!(report_id));
    assert_eq!(item["signature_valid"], true);
    assert_eq!(item["recognition"]["recognised"], true, "{item}");
    assert_eq!(item["recognition"]["mark"], "HR");
    assert_eq!(item["recognition"]["scope"], "alliance");
    assert_eq!(
        item["recognition"]["valid_until"], "2027-05-19T00:00:00.000Z",
        "study date 2026-11-20 + 180 days"
    );
    assert_eq!(item["patient"]["name_masked"], "C****^Y*");
    let unknown: Value = t
        .get_json(&clinician, "/api/v1/results?patient_id=HX0001&issuer=DS")
        .await;
    assert_eq!(
        unknown["items"],
        json!([]),
        "a local ID means nothing without its issuer"
    );

    // The clinician can now open the images of the published study.
    let r = t.get(&clinician, &rendered).await;
    assert_eq!(r.status(), StatusCode::OK);

    let verify: Value = t
        .get_json(&clinician, &format!("/api/v1/reports/{report_id}/verify"))
        .await;
    assert_eq!(verify["valid"], true, "{verify}");
    assert_eq!(verify["latest"], true);

    let doc_text = t
        .get(&clinician, &format!("/api/v1/reports/{report_id}"))
        .await
        .text()
        .await
        .unwrap();
    let keys_text = t
        .get(&clinician, "/api/v1/keys")
        .await
        .text()
        .await
        .unwrap();
    let doc: yilian_signing::SignedDocument = serde_json::from_str(&doc_text).unwrap();
    let keys: Value = serde_json::from_str(&keys_text).unwrap();
    let keys: Vec<yilian_signing::PublicKeyRecord> =
        serde_json::from_value(keys["keys"].clone()).unwrap();
    assert!(yilian_signing::verify_document(&doc, &keys).is_ok());

    // Offline, with the real binary: the untouched document verifies, an altered one does not.
    let dir = t.dir.path();
    std::fs::write(dir.join("report.json"), &doc_text).unwrap();
    std::fs::write(dir.join("keys.json"), &keys_text).unwrap();
    let mut altered: Value = serde_json::from_str(&doc_text).unwrap();
    altered["report"]["impression"] = json!("胸部CT平扫：右肺结节。");
    std::fs::write(dir.join("altered.json"), altered.to_string()).unwrap();
    let run = |file: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_yilian"))
            .args([
                "verify",
                dir.join(file).to_str().unwrap(),
                "--keys",
                dir.join("keys.json").to_str().unwrap(),
            ])
            .output()
            .expect("run yilian verify")
    };
    let ok = run("report.json");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("VALID"));
    let bad = run("altered.json");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("INVALID"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Every look at patient data was recorded.
    let audit = t.hub.catalog.audit_events(500).await.unwrap();
    for action in [
        "dicom.store",
        "dicom.render",
        "exam.claim",
        "report.sign",
        "results.lookup",
        "report.verify",
        "report.read",
    ] {
        assert!(
            audit.iter().any(|e| e.action == action),
            "no audit event {action}"
        );
    }
    let lookup = audit
        .iter()
        .find(|e| e.action == "results.lookup" && e.detail.contains("purpose=outpatient-followup"))
        .unwrap();
    assert_eq!(lookup.actor, "zhao.clinician");
    assert!(
        !lookup.resource_id.contains("HX0001"),
        "audit keeps identifiers masked"
    );
    t.finish().await;
}

/// A study nobody completes is routed after the quiet period; a silent reader's lease lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_period_routing_and_lease_expiry() {
    for backend in backends() {
        let clock = ManualClock::new(1_795_000_000_000);
        let t = TestHub::start(&backend, Some(clock.clone()), |c| {
            c.routing.quiet_period_secs = 60;
            c.routing.lease_secs = 300;
        })
        .await;
        let tech = t.token("chen.tech").await;
        let dx = yilian_fixtures::committed_fixtures()
            .into_iter()
            .find(|(n, _)| n.starts_with("dx"))
            .unwrap()
            .1;
        let (status, _) = stow(
            &t,
            &tech,
            "/dicomweb/studies",
            &[("application/dicom", &dx)],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            t.hub.route_due_studies().await.unwrap().is_empty(),
            "still within the quiet period"
        );
        clock.advance_secs(61);
        let routed = t.hub.route_due_studies().await.unwrap();
        assert_eq!(routed.len(), 1);
        assert!(
            t.hub.route_due_studies().await.unwrap().is_empty(),
            "routing happens once"
        );

        let (a, b) = (t.token("li.reader").await, t.token("zhou.reader").await);
        let wl: Value = t.get_json(&a, "/api/v1/worklist").await;
        let exam_id = wl["items"][0]["exam_id"].as_str().unwrap().to_string();
        assert!(
            wl["items"][0]["route"]["explanation"]
                .as_str()
                .unwrap()
                .contains("\"xray\""),
            "{wl}"
        );
        let claim = t.url(&format!("/api/v1/exams/{exam_id}/claim"));
        assert_eq!(
            t.http
                .post(&claim)
                .bearer_auth(&a)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            t.http
                .post(&claim)
                .bearer_auth(&b)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::CONFLICT
        );
        clock.advance_secs(301);
        assert_eq!(
            t.http
                .post(&claim)
                .bearer_auth(&b)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK,
            "the lapsed lease is claimable"
        );
        let r = t
            .put_json(
                &a,
                &format!("/api/v1/exams/{exam_id}/report"),
                &json!({"findings": "a", "impression": "b"}),
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CONFLICT,
            "the first reader lost the exam"
        );

        // DX from 东山 is QC-qualified; its result is recognised until the DX window (90 days) ends.
        let sign = t
            .post_json(
                &b,
                &format!("/api/v1/exams/{exam_id}/report/sign"),
                &json!({"findings": "心肺膈未见异常。", "impression": "胸片未见异常。"}),
            )
            .await;
        assert_eq!(sign.status(), StatusCode::OK);
        let clinician = t.token("zhao.clinician").await;
        let results: Value = t
            .get_json(&clinician, "/api/v1/results?patient_id=DS0042&issuer=DS")
            .await;
        assert_eq!(
            results["items"][0]["recognition"]["recognised"], true,
            "{results}"
        );
        clock.advance_secs(200 * 86_400);
        let expired = t
            .get(&clinician, "/api/v1/results?patient_id=DS0042&issuer=DS")
            .await;
        assert_eq!(
            expired.status(),
            StatusCode::UNAUTHORIZED,
            "tokens expire (30 days in the demo)"
        );
        let clinician = t.token("zhao.clinician").await;
        let results: Value = t
            .get_json(&clinician, "/api/v1/results?patient_id=DS0042&issuer=DS")
            .await;
        assert_eq!(results["items"][0]["recognition"]["recognised"], false);
        assert_eq!(
            results["items"][0]["recognition"]["reasons"],
            json!(["older than its validity window"])
        );
        t.finish().await;
    }
}

/// A site that is not QC-qualified for a modality gets its results published but not recognised; a
/// patient with a resident ID is found from any site's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recognition_needs_qc_and_links_by_resident_id() {
    let t = TestHub::start(&Backend::Sqlite, None, |_| {}).await;
    let tech = t.token("chen.tech").await;
    let spec = InstanceSpec {
        patient_id: "11010519491231002X".into(),
        issuer_of_patient_id: None,
        study_uid: "2.25.3003".into(),
        series_uid: "2.25.3003.1".into(),
        sop_uid: "2.25.3003.1.1".into(),
        ..InstanceSpec::ct(1)
    };
    let (status, _) = stow(
        &t,
        &tech,
        "/dicomweb/studies",
        &[("application/dicom", &instance_bytes(&spec))],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let done: Value = t
        .post_json(
            &tech,
            "/api/v1/studies/2.25.3003/complete",
            &json!({"urgent": true, "urgent_reason": "胸痛待查"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let exam_id = done["exam_id"].as_str().unwrap();
    let reader = t.token("li.reader").await;
    let wl: Value = t.get_json(&reader, "/api/v1/worklist").await;
    assert_eq!(
        wl["items"][0]["priority"], "urgent",
        "the uploader's urgency raises priority"
    );
    t.post(&reader, &format!("/api/v1/exams/{exam_id}/claim"))
        .await;
    let r = t
        .post_json(
            &reader,
            &format!("/api/v1/exams/{exam_id}/report/sign"),
            &json!({"findings": "", "impression": "x"}),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "an empty report is not signed"
    );
    let r = t
        .post_json(
            &reader,
            &format!("/api/v1/exams/{exam_id}/report/sign"),
            &json!({"findings": "见结节", "impression": "右肺小结节"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let clinician = t.token("zhao.clinician").await;
    // Found by resident ID alone, whatever issuer the caller names.
    let results: Value = t
        .get_json(&clinician, "/api/v1/results?patient_id=11010519491231002X")
        .await;
    let item = &results["items"][0];
    assert_eq!(item["recognition"]["recognised"], false, "{results}");
    assert_eq!(
        item["recognition"]["reasons"],
        json!(["performing site is not QC-qualified for CT"])
    );
    assert_eq!(item["patient"]["patient_id_masked"], "110*************2X");
    t.finish().await;
}

/// Oversized bodies get 413 and wrong media types 415. A declared oversize body stores nothing; a
/// streamed one is cut off at the limit, and only parts that arrived whole before it may stay stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_media_types() {
    let t = TestHub::start(&Backend::Sqlite, None, |c| c.server.max_body_bytes = 12_000).await;
    let tech = t.token("wang.tech").await;
    let (c1, c2) = (ct(1), ct(2));
    // The hub answers 413 as soon as it sees the declared length and closes without reading the body
    // (no lingering close), so a client still writing can get a broken pipe instead of the answer;
    // a real client retries, and so does this test (a response, when one arrives, must be the 413).
    let (ctype, whole) = multipart(&[("application/dicom", &c1), ("application/dicom", &c2)]);
    let mut answered = None;
    for _ in 0..5 {
        match t
            .http
            .post(t.url("/dicomweb/studies"))
            .bearer_auth(&tech)
            .header("content-type", ctype.clone())
            .body(whole.clone())
            .send()
            .await
        {
            Ok(r) => {
                answered = Some((r.status(), r.json::<Value>().await.unwrap_or(Value::Null)));
                break;
            }
            Err(e) if e.is_request() => continue,
            Err(e) => panic!("stow: {e}"),
        }
    }
    let (status, body) = answered.expect("the 413 reached the client on some attempt");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    assert!(
        t.hub
            .catalog
            .instance(&"2.25.1001.1.1".parse().unwrap())
            .await
            .unwrap()
            .is_none(),
        "a declared oversize body stores nothing"
    );
    // The same with a streamed (chunked) body that declares no length.
    let (ctype, bytes) = multipart(&[("application/dicom", &c1), ("application/dicom", &c2)]);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let r = t
        .http
        .post(t.url("/dicomweb/studies"))
        .bearer_auth(&tech)
        .header("content-type", ctype)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Whether the first (whole) part was stored depends on how far the parser read ahead before the limit
    // hit; the part that crossed the limit is never stored, and resending is safe either way.
    assert!(
        t.hub
            .catalog
            .instance(&"2.25.1001.1.2".parse().unwrap())
            .await
            .unwrap()
            .is_none(),
        "the cut part was not stored"
    );
    let (status, _) = stow(
        &t,
        &tech,
        "/dicomweb/studies",
        &[("application/dicom", &c1)],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "resending what was stored is a no-op success"
    );
    let r = t
        .http
        .post(t.url("/dicomweb/studies"))
        .bearer_auth(&tech)
        .header("content-type", "application/dicom")
        .body(c1.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = stow(&t, &tech, "/dicomweb/studies", &[("text/plain", b"hello")]).await;
    assert_eq!(status, StatusCode::CONFLICT, "a non-DICOM part fails");
    let r = t
        .http
        .get(t.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = t.http.get(t.url("/api/v1/worklist")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let h: Value = t
        .http
        .get(t.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ready");
    let doc: Value = t
        .http
        .get(t.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/results"]["get"].is_object());
    t.finish().await;
}
