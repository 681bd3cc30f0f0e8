//! Criterion benches for the hot paths of the walking skeleton. Each group carries its own baseline so
//! BENCHMARKS.md can quote ratios measured in one run:
//! - ingest parse: full Part 10 parse (what ingest does, pixels read as bytes, not decoded) vs. a
//!   metadata-only read that stops at Pixel Data;
//! - render: PNG vs JPEG of a 512×512 16-bit CT frame with the dataset window;
//! - render cache: a cold render (open the stored bytes, decode, window, encode; uncompressed and
//!   JPEG-LS) vs. a hit in the app's render cache, for a full frame and a 128-px thumbnail;
//! - ECG paper: one synthetic 12-lead page (10 s, 500 Hz) as SVG and as PNG at 5 px/mm;
//! - signing: RFC 8785 canonicalisation + Ed25519 sign + verify of a report vs. SHA-256 of the same bytes;
//! - ecg analysis: `yilian_analysis::analyze` on a 10 s 12-lead 500 Hz record (detection, rhythm,
//!   median beats, intervals, axes) vs. R-peak detection alone on lead II.

use std::hint::black_box;
use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dicom_object::{OpenFileOptions, file::ReadPreamble};
use sha2::{Digest, Sha256};
use yilian_fixtures::{InstanceSpec, instance_bytes};
use yilian_render::{OutputFormat, RenderOptions, render};
use yilian_signing::{
    PublicKeyRecord, SignatureBlock, SignedDocument, SigningKeyPair, canonicalize, verify_document,
};

fn ct512() -> Vec<u8> {
    instance_bytes(&InstanceSpec {
        rows: 512,
        columns: 512,
        ..InstanceSpec::ct(1)
    })
}

fn ingest_parse(c: &mut Criterion) {
    let bytes = ct512();
    let mut g = c.benchmark_group("ingest_parse_ct512");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("metadata_only_baseline", |b| {
        b.iter(|| {
            OpenFileOptions::new()
                .read_preamble(ReadPreamble::Never)
                .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
                .from_reader(Cursor::new(&bytes[128..]))
                .map(|o| black_box(o.meta().transfer_syntax().len()))
        })
    });
    g.bench_function("parse_dicom_full", |b| {
        b.iter(|| yilian_formats::parse_dicom(black_box(&bytes)).map(|m| m.rows))
    });
    g.finish();
}

fn rendering(c: &mut Criterion) {
    let bytes = ct512();
    let obj = yilian_formats::dicom::open(&bytes).expect("fixture opens");
    let mut g = c.benchmark_group("render_ct512");
    g.sample_size(20);
    g.bench_function("png", |b| {
        b.iter(|| {
            render(
                &obj,
                &RenderOptions {
                    format: OutputFormat::Png,
                    ..Default::default()
                },
            )
            .map(|v| v.len())
        })
    });
    g.bench_function("jpeg_q90", |b| {
        b.iter(|| {
            render(
                &obj,
                &RenderOptions {
                    format: OutputFormat::Jpeg,
                    ..Default::default()
                },
            )
            .map(|v| v.len())
        })
    });
    g.finish();
}

fn ecg_paper(c: &mut Criterion) {
    use yilian_fixtures::ecg::{EcgSpec, synthesize};
    use yilian_render::ecg::{EcgHeader, EcgPage, Lang, PaperOptions, render_png, render_svg};
    let ecg = synthesize(&EcgSpec::default());
    let pages = [EcgPage {
        record: &ecg.record,
        header: EcgHeader {
            title: "ECG".into(),
            patient: "Z*M".into(),
            device_measurements: vec![("HR".into(), "72 bpm".into())],
            hub_measurements: vec![("HR".into(), "72 bpm".into())],
            ..EcgHeader::default()
        },
    }];
    let opts = PaperOptions::default();
    let mut g = c.benchmark_group("ecg_page_12_lead");
    g.sample_size(20);
    g.bench_function("svg", |b| {
        b.iter(|| render_svg(black_box(&pages), &opts, Lang::ZhCn).map(|s| s.len()))
    });
    g.bench_function("png_5px_per_mm", |b| {
        b.iter(|| render_png(black_box(&pages), &opts, Lang::En, 5.0).map(|v| v.len()))
    });
    g.finish();
}

fn render_cache(c: &mut Criterion) {
    use dicom_pixeldata::Transcode;
    use yilian_app::render_cache::{RenderCache, RenderKey};
    use yilian_render::Viewport;

    let plain = ct512();
    let jpegls = {
        let mut obj = yilian_formats::dicom::open(&plain).expect("fixture opens");
        obj.transcode(
            &dicom_transfer_syntax_registry::entries::JPEG_LS_LOSSLESS_IMAGE_COMPRESSION.erased(),
        )
        .expect("JPEG-LS encoder");
        let mut out = Vec::new();
        obj.write_all(&mut out).expect("write to memory");
        out
    };
    let cold = |bytes: &[u8], opts: &RenderOptions| {
        yilian_formats::dicom::open(bytes)
            .ok()
            .and_then(|o| render(&o, opts).ok())
            .map(|v| v.len())
    };
    let full = RenderOptions {
        format: OutputFormat::Jpeg,
        ..Default::default()
    };
    let thumb = RenderOptions {
        viewport: Some(Viewport::fit(128, 128)),
        ..full
    };
    let cache = RenderCache::default();
    let key = |options| RenderKey {
        sop_instance_uid: yilian_domain::SopInstanceUid::new("2.25.1001.1.1").expect("uid"),
        options,
    };
    for opts in [full, thumb] {
        let image = render(
            &yilian_formats::dicom::open(&plain).expect("fixture opens"),
            &opts,
        )
        .expect("renders");
        cache.insert(key(opts), bytes::Bytes::from(image));
    }
    let mut g = c.benchmark_group("render_cache_ct512");
    g.sample_size(20);
    g.bench_function("cold_jpeg_uncompressed", |b| {
        b.iter(|| cold(black_box(&plain), &full))
    });
    g.bench_function("cold_jpeg_from_jpegls", |b| {
        b.iter(|| cold(black_box(&jpegls), &full))
    });
    g.bench_function("cold_thumbnail_128", |b| {
        b.iter(|| cold(black_box(&plain), &thumb))
    });
    let (kf, kt) = (key(full), key(thumb));
    g.bench_function("cached_jpeg", |b| {
        b.iter(|| cache.get(black_box(&kf)).map(|i| i.len()))
    });
    g.bench_function("cached_thumbnail_128", |b| {
        b.iter(|| cache.get(black_box(&kt)).map(|i| i.len()))
    });
    g.finish();
}

fn signing(c: &mut Criterion) {
    let key = SigningKeyPair::generate().expect("random");
    let results: Vec<serde_json::Value> = (0..200)
        .map(|i| serde_json::json!({"sop_instance_uid": format!("2.25.1001.1.{i}"), "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "sha256": "ab".repeat(32)}))
        .collect();
    let report = serde_json::json!({
        "schema": "yilian.report.v1", "report_id": "01JABCDEF", "version": 1,
        "results": results, "findings": "双肺纹理清晰，未见实变影。".repeat(10), "impression": "胸部CT平扫未见明显异常。",
        "signer": {"username": "li.reader", "key_id": key.key_id()}, "signed_at": "2026-11-23T10:00:00.000Z",
    });
    let canonical = canonicalize(&report).expect("canonical");
    let doc = SignedDocument {
        report: report.clone(),
        signature: SignatureBlock {
            algorithm: "Ed25519".into(),
            key_id: key.key_id(),
            value: key.sign_base64(canonical.as_bytes()),
        },
        countersignature: None,
    };
    let keys = vec![PublicKeyRecord {
        key_id: key.key_id(),
        algorithm: "Ed25519".into(),
        public_key: key.public_key_base64(),
        owner: "li.reader".into(),
        valid_from: "2026-01-01T00:00:00.000Z".into(),
        valid_to: "2028-01-01T00:00:00.000Z".into(),
    }];
    let mut g = c.benchmark_group("report_200_instances");
    g.bench_function("sha256_baseline", |b| {
        b.iter(|| Sha256::digest(black_box(canonical.as_bytes())))
    });
    g.bench_function("canonicalize_and_sign", |b| {
        b.iter(|| canonicalize(black_box(&report)).map(|c| key.sign_base64(c.as_bytes())))
    });
    g.bench_function("verify_document", |b| {
        b.iter(|| verify_document(black_box(&doc), &keys).is_ok())
    });
    g.finish();
}

fn ecg_analysis(c: &mut Criterion) {
    let ecg = yilian_fixtures::ecg::synthesize(&yilian_fixtures::ecg::EcgSpec::default());
    let record = ecg.record;
    let lead_ii = record
        .lead(&yilian_domain::ecg::Lead::II)
        .map(<[f32]>::to_vec)
        .unwrap_or_default();
    let mut g = c.benchmark_group("ecg_10s_12lead_500hz");
    g.bench_function("detect_r_peaks_lead_ii_baseline", |b| {
        b.iter(|| yilian_analysis::detect_r_peaks(black_box(&lead_ii), 500.0).len())
    });
    g.bench_function("analyze_12_leads", |b| {
        b.iter(|| yilian_analysis::analyze(black_box(&record)).r_peaks.len())
    });
    g.finish();
}

criterion_group!(
    benches,
    ingest_parse,
    rendering,
    ecg_paper,
    render_cache,
    signing,
    ecg_analysis
);
criterion_main!(benches);
