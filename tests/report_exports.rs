//! Report exports end to end against the real hub (SQLite always, PostgreSQL when DATABASE_URL is set):
//! a township CT is read and signed, then a member hospital's clinician gets it as FHIR R4
//! (`DiagnosticReport` read and search beside lab, the `ImagingStudy` it references), as a DICOM Basic
//! Text SR, as a printable HTML page and as a PDF; every export is audited, and scope holds (an admin is
//! refused, another site's tech and unknown ids are not found). Clients nobody here wrote check the
//! output once: fhir.resources and fhirclient (FHIR), DCMTK `dsrdump` and pydicom (SR), poppler's
//! `pdftotext`/`pdftoppm` and zbar's `zbarimg` (the PDF's text and its QR code). A missing tool prints
//! `SKIPPED …` and the check returns, except under CI, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::Value;
use support::{TestHub, backends};

const CT: &str = "2.25.1001";
const FINDINGS: &str = "双肺纹理清晰，未见实变影。\n纵隔居中。";
const IMPRESSION: &str = "胸部CT平扫未见明显异常。";
/// The CT fixture's patient as its site files it (issuer HX).
const PATIENT: &str = "urn:yilian:issuer:HX|HX0001";

/// A township CT (patient HX0001 of issuer HX, three instances) stored, routed, read and signed by
/// li.reader (李医生); its report id.
async fn publish_ct(t: &TestHub) -> String {
    t.publish_ct(FINDINGS, IMPRESSION).await
}

async fn fhir(t: &TestHub, token: &str, path: &str) -> Value {
    let r = t.get(token, &format!("/fhir/r4{path}")).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/fhir+json"
    );
    r.json().await.unwrap()
}

fn match_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn recognised(resource: &Value) -> bool {
    resource["extension"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["extension"].as_array().cloned().unwrap_or_default())
        .any(|p| p["url"] == "recognised" && p["valueBoolean"] == true)
}

/// Whether an external tool is on PATH; under CI a missing one fails the test.
fn have(tool: &str, what: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have {tool} (scripts/deps installs it)"
        );
        eprintln!("SKIPPED {what}: {tool} is not installed (scripts/deps)");
    }
    found
}

fn python() -> Option<String> {
    support::python("external checks")
}

fn run_with_stdin(program: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Every resource through fhir.resources (R4B) and fhirclient (R4), by the lab suite's script.
fn validate_fhir(resources: &[Value]) {
    let Some(python) = python() else { return };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/fhir_lab_client.py"
    );
    let out = run_with_stdin(
        &python,
        &[script, "validate"],
        &serde_json::to_vec(resources).unwrap(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install tests/python/requirements.txt: {stderr}"
        );
        eprintln!("SKIPPED FHIR validation: {stderr}");
        return;
    }
    assert_eq!(
        stdout.lines().count(),
        resources.len(),
        "{stdout}\n{stderr}"
    );
    assert!(
        out.status.success(),
        "resources the FHIR libraries refused:\n{stdout}\n{stderr}"
    );
    eprintln!(
        "fhir.resources and fhirclient accepted {} resources",
        resources.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_reports_leave_as_fhir_sr_html_and_pdf() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        let t = TestHub::start(&backend, None, |_| {}).await;
        let id = publish_ct(&t).await;
        let zhao = t.token("zhao.clinician").await;

        // FHIR: the report by id, the study it references, the searches beside lab.
        let dr = fhir(&t, &zhao, &format!("/DiagnosticReport/{id}")).await;
        assert_eq!(dr["resourceType"], "DiagnosticReport");
        assert_eq!(dr["status"], "final");
        assert_eq!(dr["conclusion"], IMPRESSION);
        assert_eq!(dr["category"][0]["coding"][0]["code"], "RAD");
        assert_eq!(dr["performer"][0]["display"], "李医生");
        assert_eq!(
            dr["imagingStudy"][0]["reference"],
            format!("ImagingStudy/{CT}")
        );
        assert_eq!(dr["identifier"][0]["value"], id.as_str());
        let verify_url = format!("{}/verify/{id}", t.base);
        assert_eq!(
            dr["identifier"][0]["extension"][0]["valueUrl"],
            verify_url.as_str()
        );
        let is_recognised = recognised(&dr);
        assert_eq!(
            dr["meta"]["tag"]
                .as_array()
                .is_some_and(|t| t.iter().any(|c| c["code"] == "HR")),
            is_recognised
        );
        let study = fhir(&t, &zhao, &format!("/ImagingStudy/{CT}")).await;
        assert_eq!(study["numberOfInstances"], 3);
        assert_eq!(study["series"][0]["uid"], "2.25.1001.1");
        assert_eq!(study["series"][0]["instance"].as_array().unwrap().len(), 3);
        assert_eq!(
            study["contained"][0]["address"],
            format!("{}/dicomweb", t.base).as_str()
        );
        assert_eq!(study["subject"], dr["subject"]);

        let by_patient = fhir(
            &t,
            &zhao,
            &format!("/DiagnosticReport?patient.identifier={PATIENT}"),
        )
        .await;
        assert_eq!(match_ids(&by_patient), vec![id.clone()]);
        assert_eq!(by_patient["total"], 1);
        let rad = fhir(
            &t,
            &zhao,
            &format!("/DiagnosticReport?patient.identifier={PATIENT}&category=RAD&code=http://loinc.org|18748-4&date=2026-11-20"),
        )
        .await;
        assert_eq!(match_ids(&rad), vec![id.clone()]);
        for narrower in [
            "category=LAB",
            "code=http://loinc.org|11524-6",
            "date=2026-11-21",
        ] {
            let none = fhir(
                &t,
                &zhao,
                &format!("/DiagnosticReport?patient.identifier={PATIENT}&{narrower}"),
            )
            .await;
            assert_eq!(none["total"], 0, "{narrower}");
        }
        // The subject resolves: the patient as the study names them (site identifier, no resident ID).
        let subject = dr["subject"]["reference"].as_str().unwrap().to_string();
        let patient = fhir(&t, &zhao, &format!("/{subject}")).await;
        assert_eq!(patient["identifier"][0]["value"], "HX0001");
        let by_subject = fhir(&t, &zhao, &format!("/DiagnosticReport?patient={subject}")).await;
        assert_eq!(match_ids(&by_subject), vec![id.clone()]);
        let by_id = fhir(&t, &zhao, &format!("/DiagnosticReport?_id={id}")).await;
        assert_eq!(match_ids(&by_id), vec![id.clone()]);
        let studies = fhir(
            &t,
            &zhao,
            &format!("/ImagingStudy?patient.identifier={PATIENT}"),
        )
        .await;
        assert_eq!(match_ids(&studies), vec![CT.to_string()]);
        let meta = fhir(&t, &zhao, "/metadata").await;
        assert!(
            meta["rest"][0]["resource"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["type"] == "ImagingStudy")
        );

        // DICOM SR: the same study, the Chinese text, the same object when exported again.
        let r = t.get(&zhao, &format!("/api/v1/reports/{id}/sr")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/dicom");
        let sr = r.bytes().await.unwrap().to_vec();
        let again = t
            .get(&zhao, &format!("/api/v1/reports/{id}/sr"))
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(sr, again.to_vec(), "the SR is deterministic");
        let obj = dicom_object::from_reader(&sr[128..]).unwrap();
        let text = |tag| obj.element(tag).unwrap().to_str().unwrap().to_string();
        use dicom_dictionary_std::tags;
        assert_eq!(text(tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.88.11");
        assert_eq!(text(tags::STUDY_INSTANCE_UID), CT);
        assert_eq!(text(tags::PATIENT_ID), "HX0001");
        assert_eq!(text(tags::COMPLETION_FLAG), "COMPLETE");
        assert_eq!(text(tags::VERIFICATION_FLAG), "VERIFIED");
        let evidence = obj
            .element(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE)
            .unwrap();
        let series = evidence.items().unwrap()[0]
            .element(tags::REFERENCED_SERIES_SEQUENCE)
            .unwrap();
        assert_eq!(
            series.items().unwrap()[0]
                .element(tags::REFERENCED_SOP_SEQUENCE)
                .unwrap()
                .items()
                .unwrap()
                .len(),
            3
        );

        // The printable page: zh-CN, masked name, no identifier, no script, its own CSP.
        let r = t.get(&zhao, &format!("/reports/{id}/print")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'none'") && csp.contains("style-src 'sha256-"));
        let page = r.text().await.unwrap();
        assert!(page.contains("lang=\"zh-CN\""));
        assert!(page.contains(IMPRESSION));
        assert!(page.contains("李医生"));
        assert!(page.contains(&verify_url));
        assert!(page.contains("C****^Y*"), "masked name");
        assert!(!page.contains("Ceshi") && !page.contains("HX0001"));
        assert!(!page.contains("<script"));
        assert_eq!(page.contains("HR 互认"), is_recognised);

        // The PDF (the font is there where scripts/deps ran).
        let r = t.get(&zhao, &format!("/api/v1/reports/{id}/pdf")).await;
        let pdf_served = r.status() == StatusCode::OK;
        if pdf_served {
            assert_eq!(r.headers()["content-type"], "application/pdf");
            let pdf = r.bytes().await.unwrap();
            assert!(pdf.starts_with(b"%PDF-"));
        } else {
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "pdf_font_missing");
            assert!(
                std::env::var("CI").is_err(),
                "CI must install fonts-wqy-microhei"
            );
            eprintln!("SKIPPED PDF content: no CJK font installed");
        }

        // Scope: admins are refused, another site's tech and unknown reports are not found.
        let admin = t.token("admin").await;
        let chen = t.token("chen.tech").await;
        for path in [
            format!("/api/v1/reports/{id}/sr"),
            format!("/api/v1/reports/{id}/pdf"),
            format!("/reports/{id}/print"),
        ] {
            assert_eq!(t.get(&admin, &path).await.status(), StatusCode::FORBIDDEN);
            assert_eq!(t.get(&chen, &path).await.status(), StatusCode::NOT_FOUND);
            let unknown = path.replace(&id, "01ZZZZZZZZZZZZZZZZZZZZZZZZ");
            assert_eq!(t.get(&zhao, &unknown).await.status(), StatusCode::NOT_FOUND);
        }
        let r = t
            .get(&admin, &format!("/fhir/r4/DiagnosticReport/{id}"))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);

        // Every export audited with its format and the patient.
        let events = t.hub.catalog.audit_events(1000).await.unwrap();
        let exports: Vec<_> = events
            .iter()
            .filter(|e| e.action == "report.export" && e.actor == "zhao.clinician")
            .collect();
        let formats: Vec<&str> = exports.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(
            formats.iter().filter(|f| **f == "format=dicom-sr").count(),
            2
        );
        assert!(formats.contains(&"format=html"));
        assert_eq!(formats.contains(&"format=pdf"), pdf_served);
        assert!(exports.iter().all(|e| e.patient_key.is_some()));
        assert!(
            events
                .iter()
                .any(|e| e.action == "lab.fhir.read" && e.resource_type == "ImagingStudy")
        );

        if matches!(backend, support::Backend::Sqlite) {
            validate_fhir(&[dr, study, by_patient, studies, meta, patient]);
        }
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pdf_font_is_a_clear_503() {
    let backend = support::Backend::Sqlite;
    let t = TestHub::start(&backend, None, |c| {
        c.reports.pdf_font = Some("/nonexistent/yilian-font.ttc".into());
    })
    .await;
    let id = publish_ct(&t).await;
    let zhao = t.token("zhao.clinician").await;
    let r = t.get(&zhao, &format!("/api/v1/reports/{id}/pdf")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "pdf_font_missing");
    assert!(v["message"].as_str().unwrap().contains("pdf_font"));
    t.finish().await;
}

/// DCMTK's dsrdump parses the SR without errors and shows the Chinese impression; pydicom reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcmtk_and_pydicom_read_the_sr() {
    let t = TestHub::start(&support::Backend::Sqlite, None, |_| {}).await;
    let id = publish_ct(&t).await;
    let zhao = t.token("zhao.clinician").await;
    let sr = t
        .get(&zhao, &format!("/api/v1/reports/{id}/sr"))
        .await
        .bytes()
        .await
        .unwrap();
    let path = t.dir.path().join("report.dcm");
    std::fs::write(&path, &sr).unwrap();
    if have("dsrdump", "DCMTK SR check") {
        let out = Command::new("dsrdump")
            .args(["+U8", "+Pl", "+Pc"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        // DCMTK's VR checker cannot check UTF-8 text and says so; anything else is a complaint.
        let complaints: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W:") || l.starts_with("F:"))
            .filter(|l| !l.contains("VR checker does not support this Specific Character Set"))
            .collect();
        assert!(complaints.is_empty(), "dsrdump complained:\n{stderr}");
        assert!(stdout.contains("Basic Text SR"), "{stdout}");
        assert!(stdout.contains(IMPRESSION), "{stdout}");
        assert!(stdout.contains("VERIFIED"), "{stdout}");
        assert!(stdout.contains("(121073,DCM,\"Impression\")"), "{stdout}");
        assert!(
            stdout.contains("(18748-4,LN,\"Diagnostic Imaging Report\")"),
            "{stdout}"
        );
    }
    if let Some(python) = python() {
        let script = "import sys, pydicom\n\
ds = pydicom.dcmread(sys.argv[1])\n\
items = ds.ContentSequence\n\
print(ds.SOPClassUID)\n\
print(ds.StudyInstanceUID)\n\
print(ds.VerifyingObserverSequence[0].VerifyingObserverName)\n\
print(items[-1].TextValue)\n";
        let out = Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            vec!["1.2.840.10008.5.1.4.1.1.88.11", CT, "李医生", IMPRESSION],
            "{stderr}"
        );
    }
    t.finish().await;
}

/// The PDF read back: poppler's pdftotext finds the Chinese impression, the report id and the signer;
/// the page rasterised by pdftoppm has a QR code that zbarimg decodes to the verification URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pdf_reads_back_and_its_qr_code_opens_the_verification() {
    let t = TestHub::start(&support::Backend::Sqlite, None, |_| {}).await;
    let id = publish_ct(&t).await;
    let zhao = t.token("zhao.clinician").await;
    let r = t.get(&zhao, &format!("/api/v1/reports/{id}/pdf")).await;
    if r.status() == StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install fonts-wqy-microhei (scripts/deps)"
        );
        eprintln!("SKIPPED PDF read-back: no CJK font installed (scripts/deps)");
        t.finish().await;
        return;
    }
    assert_eq!(r.status(), StatusCode::OK);
    let pdf = r.bytes().await.unwrap();
    let path = t.dir.path().join("report.pdf");
    std::fs::write(&path, &pdf).unwrap();
    if have("pdftotext", "PDF text check") {
        let out = Command::new("pdftotext")
            .arg("-enc")
            .arg("UTF-8")
            .arg(&path)
            .arg("-")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for wanted in [
            IMPRESSION,
            id.as_str(),
            "李医生",
            "医学影像诊断报告",
            "C****^Y*",
        ] {
            assert!(text.contains(wanted), "{wanted:?} not in:\n{text}");
        }
        assert!(!text.contains("HX0001") && !text.contains("Ceshi"));
    }
    if have("pdftoppm", "PDF rasterising") && have("zbarimg", "QR code check") {
        let prefix = t.dir.path().join("page");
        let out = Command::new("pdftoppm")
            .args(["-r", "150", "-png", "-f", "1", "-l", "1"])
            .arg(&path)
            .arg(&prefix)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let png = std::fs::read_dir(t.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("page"))
            .expect("a rasterised page");
        let out = Command::new("zbarimg")
            .args(["--quiet", "--raw"])
            .arg(&png)
            .output()
            .unwrap();
        let decoded = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(decoded.trim(), format!("{}/verify/{id}", t.base));
        // The page the QR code opens answers without signing in: valid, who signed, and nothing of
        // the patient or the text.
        let r = t.http.get(decoded.trim()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let page = r.text().await.unwrap();
        assert!(page.contains("报告有效"), "{page}");
        assert!(page.contains("李医生"), "{page}");
        assert!(!page.contains(IMPRESSION) && !page.contains("Ceshi") && !page.contains("HX0001"));
        assert!(!page.contains("<script"));
    }
    t.finish().await;
}
