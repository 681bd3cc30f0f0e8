//! Viewer-grade rendering over real HTTP, on every catalog backend: thumbnails of a study, a series,
//! an instance and a frame; viewports that keep the aspect ratio; content negotiation (406); the
//! render cache still checks scope and audits; and compressed instances stored with STOW-RS render
//! exactly like their uncompressed originals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use dicom_pixeldata::Transcode;
use reqwest::StatusCode;
use serde_json::Value;
use support::{TestHub, backends};
use yilian_fixtures::{InstanceSpec, instance_bytes};

const STUDY: &str = "2.25.1001";
const SERIES: &str = "2.25.1001.1";

/// GET with an Accept header; the status, content type and body.
async fn fetch(
    t: &TestHub,
    token: &str,
    path: &str,
    accept: &str,
) -> (StatusCode, String, Vec<u8>) {
    let r = t
        .http
        .get(t.url(path))
        .bearer_auth(token)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height())
}

fn instance(n: u32) -> String {
    format!("/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{STUDY}.1.{n}")
}

async fn render_events(t: &TestHub) -> usize {
    t.hub
        .catalog
        .audit_events(1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "dicom.render")
        .count()
}

#[tokio::test]
async fn thumbnails_viewports_and_negotiation() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let tech = t.token("wang.tech").await;
        let other_tech = t.token("chen.tech").await;
        // Sent out of order: the middle by Instance Number is instance 2, not the middle upload.
        t.stow_all(
            &tech,
            &[
                instance_bytes(&InstanceSpec::ct(3)),
                instance_bytes(&InstanceSpec::ct(1)),
                instance_bytes(&InstanceSpec::ct(2)),
            ],
        )
        .await;

        // Study and series thumbnails are the middle instance's rendering, same options.
        let q = "viewport=64,64";
        let (s, ct, middle) =
            fetch(&t, &tech, &format!("{}/rendered?{q}", instance(2)), "*/*").await;
        assert_eq!((s, ct.as_str()), (StatusCode::OK, "image/jpeg"));
        for path in [
            format!("/dicomweb/studies/{STUDY}/thumbnail?{q}"),
            format!("/dicomweb/studies/{STUDY}/series/{SERIES}/thumbnail?{q}"),
            format!("{}/thumbnail?{q}", instance(2)),
            format!("{}/frames/1/thumbnail?{q}", instance(2)),
        ] {
            let (s, ct, img) = fetch(&t, &tech, &path, "image/jpeg").await;
            assert_eq!((s, ct.as_str()), (StatusCode::OK, "image/jpeg"), "{path}");
            assert_eq!(img, middle, "{path} shows instance 2");
        }
        for n in [1, 3] {
            let (_, _, other) =
                fetch(&t, &tech, &format!("{}/rendered?{q}", instance(n)), "*/*").await;
            assert_ne!(other, middle, "instance {n} differs from instance 2");
        }

        // Without a viewport a thumbnail fits a 128-pixel box.
        let (s, _, img) = fetch(
            &t,
            &tech,
            &format!("/dicomweb/studies/{STUDY}/thumbnail"),
            "image/png",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(dims(&img), (128, 128));

        // A 64x32 instance keeps its 2:1 aspect in any viewport.
        let wide = InstanceSpec {
            rows: 32,
            columns: 64,
            ..InstanceSpec::ct(4)
        };
        t.stow_all(&tech, &[instance_bytes(&wide)]).await;
        for (viewport, want) in [
            ("128,128", (128, 64)),
            ("16,100", (16, 8)),
            ("200,50", (100, 50)),
        ] {
            let (s, ct, img) = fetch(
                &t,
                &tech,
                &format!("{}/rendered?viewport={viewport}", instance(4)),
                "image/png",
            )
            .await;
            assert_eq!((s, ct.as_str()), (StatusCode::OK, "image/png"));
            assert_eq!(dims(&img), want, "viewport {viewport}");
        }
        let (_, _, thumb) = fetch(
            &t,
            &tech,
            &format!("{}/thumbnail", instance(4)),
            "image/png",
        )
        .await;
        assert_eq!(dims(&thumb), (128, 64));

        // Negotiation: only JPEG and PNG; the accept parameter overrides the header.
        let rendered = format!("{}/rendered", instance(1));
        let (s, _, body) = fetch(&t, &tech, &rendered, "image/gif").await;
        assert_eq!(s, StatusCode::NOT_ACCEPTABLE);
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["code"], "not_acceptable");
        let (s, _, _) = fetch(
            &t,
            &tech,
            &format!("/dicomweb/studies/{STUDY}/thumbnail"),
            "application/json",
        )
        .await;
        assert_eq!(s, StatusCode::NOT_ACCEPTABLE);
        let (s, ct, _) = fetch(
            &t,
            &tech,
            &format!("{rendered}?accept=image/png"),
            "image/gif",
        )
        .await;
        assert_eq!((s, ct.as_str()), (StatusCode::OK, "image/png"));

        // Parameters a caller gets wrong are 400 with a message saying what is expected.
        for (query, needle) in [
            ("window=wide", "preset"),
            ("viewport=0,10", "viewport"),
            ("quality=0", "quality"),
            ("viewport=10,10,500,500,5,5", "outside"),
        ] {
            let (s, _, body) = fetch(&t, &tech, &format!("{rendered}?{query}"), "image/jpeg").await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{query}");
            let err: Value = serde_json::from_slice(&body).unwrap();
            assert!(
                err["message"].as_str().unwrap().contains(needle),
                "{query}: {err}"
            );
        }
        let (s, _, body) = fetch(
            &t,
            &tech,
            &format!("{}/frames/2/rendered", instance(1)),
            "image/jpeg",
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            err["message"],
            "frame 2 was asked for but the instance has 1 (frames are numbered from 1)"
        );
        let (s, _, _) = fetch(
            &t,
            &tech,
            &format!("{}/frames/1,2/rendered", instance(1)),
            "image/jpeg",
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _, _) = fetch(
            &t,
            &tech,
            &format!("{}/frames/0/thumbnail", instance(1)),
            "image/jpeg",
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        // A window preset by name: lung shows tissue (+40 HU) bright, bone window shows it dark.
        let grey = |bytes: &[u8]| {
            image::load_from_memory(bytes)
                .unwrap()
                .to_luma8()
                .get_pixel(32, 32)[0]
        };
        let (_, _, lung) = fetch(&t, &tech, &format!("{rendered}?window=lung"), "image/png").await;
        let (_, _, bone) = fetch(&t, &tech, &format!("{rendered}?window=bone"), "image/png").await;
        assert!(
            grey(&lung) > grey(&bone) + 40,
            "lung {} bone {}",
            grey(&lung),
            grey(&bone)
        );

        // The cache serves repeats, but every request is still scope-checked and audited.
        let before = render_events(&t).await;
        let hits = t.hub.render_cache.stats().hits;
        let (s, _, again) = fetch(&t, &tech, &format!("{}/rendered?{q}", instance(2)), "*/*").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(again, middle);
        assert_eq!(
            t.hub.render_cache.stats().hits,
            hits + 1,
            "served from the cache"
        );
        assert_eq!(
            render_events(&t).await,
            before + 1,
            "a cache hit is audited"
        );
        for path in [
            format!("{}/rendered?{q}", instance(2)),
            format!("/dicomweb/studies/{STUDY}/thumbnail?{q}"),
            format!("/dicomweb/studies/{STUDY}/series/{SERIES}/thumbnail"),
        ] {
            let (s, _, _) = fetch(&t, &other_tech, &path, "image/jpeg").await;
            assert_eq!(
                s,
                StatusCode::NOT_FOUND,
                "another site's study looks absent: {path}"
            );
        }
        let (s, _, _) = fetch(
            &t,
            &tech,
            &format!("/dicomweb/studies/{STUDY}/series/2.25.9/thumbnail"),
            "image/jpeg",
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        t.finish().await;
    }
}

fn transcoded(spec: &InstanceSpec, ts: &dicom_transfer_syntax_registry::TransferSyntax) -> Vec<u8> {
    let bytes = instance_bytes(spec);
    let mut obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&bytes[128..])
        .unwrap();
    obj.transcode(ts).unwrap();
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    out
}

/// gdcmconv --j2k on the spec's file, or None (SKIPPED) where GDCM is not installed.
fn j2k(spec: &InstanceSpec) -> Option<Vec<u8>> {
    if std::process::Command::new("gdcmconv")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install gdcmconv (apt libgdcm-tools)"
        );
        eprintln!("SKIPPED JPEG 2000 via gdcmconv: not installed (apt libgdcm-tools)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in.dcm"), dir.path().join("out.dcm"));
    std::fs::write(&src, instance_bytes(spec)).unwrap();
    let out = std::process::Command::new("gdcmconv")
        .arg("--j2k")
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(std::fs::read(&dst).unwrap())
}

#[tokio::test]
async fn compressed_instances_stored_with_stow_render_like_the_original() {
    use dicom_transfer_syntax_registry::entries;
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let tech = t.token("wang.tech").await;
        let original = InstanceSpec {
            rows: 96,
            columns: 80,
            ..InstanceSpec::ct(1)
        };
        // Same pixels under other SOP Instance UIDs.
        let copy = |n: u32| InstanceSpec {
            sop_uid: format!("{STUDY}.1.{n}"),
            instance_number: n as i32,
            ..original.clone()
        };
        let mut files = vec![
            instance_bytes(&original),
            transcoded(
                &copy(2),
                &entries::JPEG_LS_LOSSLESS_IMAGE_COMPRESSION.erased(),
            ),
            transcoded(
                &copy(3),
                &entries::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            ),
        ];
        let mut variants = vec![(2, "JPEG-LS lossless"), (3, "deflated")];
        if let Some(f) = j2k(&copy(4)) {
            files.push(f);
            variants.push((4, "JPEG 2000 (gdcmconv)"));
        }
        t.stow_all(&tech, &files).await;
        let want = fetch(&t, &tech, &format!("{}/rendered", instance(1)), "image/png").await;
        assert_eq!(want.0, StatusCode::OK);
        assert_eq!(dims(&want.2), (80, 96));
        for (n, name) in variants {
            let got = fetch(&t, &tech, &format!("{}/rendered", instance(n)), "image/png").await;
            assert_eq!(
                got.0,
                StatusCode::OK,
                "{name}: {}",
                String::from_utf8_lossy(&got.2)
            );
            assert_eq!(got.2, want.2, "{name} renders exactly like the original");
            let frame = fetch(
                &t,
                &tech,
                &format!(
                    "{}/frames/1/rendered?window=40,400&viewport=40,48",
                    instance(n)
                ),
                "image/jpeg",
            )
            .await;
            assert_eq!(
                (frame.0, dims(&frame.2)),
                (StatusCode::OK, (40, 48)),
                "{name}"
            );
        }
        t.finish().await;
    }
}
