//! Signatures end to end, on every catalog backend: readers make passphrase-sealed keys with the
//! real `yilian keygen` (one SM2, one Ed25519), sign imaging reports over HTTP with their passphrase,
//! the hub countersigns with its clock key, and the reports verify online (`/verify`) and offline
//! (the real `yilian verify`). Tamper cases: changed text, changed blob, replaced signature,
//! countersignature removed or altered, expired key, missing and wrong passphrase.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, BlobStore, ManualClock, TestHub, backends};
use yilian_fixtures::{InstanceSpec, instance_bytes};

const LI_PASS: &str = "李医生的口令 2026";
const ZHOU_PASS: &str = "zhou-passphrase-42";

#[tokio::test]
async fn sm2_and_ed25519_reports_sign_countersign_and_verify() {
    for backend in backends() {
        signatures(&backend).await;
    }
}

/// Two instances of a fresh CT study (`study`), as stored bytes.
fn study_instances(study: u32) -> Vec<Vec<u8>> {
    (1..=2)
        .map(|n| {
            let mut s = InstanceSpec::ct(n);
            s.study_uid = format!("2.25.{study}");
            s.series_uid = format!("2.25.{study}.1");
            s.sop_uid = format!("2.25.{study}.1.{n}");
            instance_bytes(&s)
        })
        .collect()
}

/// Stores a study, completes it and has `reader` claim it and draft the report; the exam id.
async fn exam_for(t: &TestHub, reader: &str, study: u32, files: &[Vec<u8>]) -> String {
    let tech = t.token("wang.tech").await;
    t.stow_all(&tech, files).await;
    let done: Value = t
        .post(&tech, &format!("/api/v1/studies/2.25.{study}/complete"))
        .await
        .json()
        .await
        .unwrap();
    let exam_id = done["exam_id"].as_str().unwrap().to_string();
    let token = t.token(reader).await;
    let r = t
        .post(&token, &format!("/api/v1/exams/{exam_id}/claim"))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = t
        .put_json(
            &token,
            &format!("/api/v1/exams/{exam_id}/report"),
            &json!({"findings": "双肺纹理清晰。", "impression": "未见明显异常。"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    exam_id
}

async fn sign(t: &TestHub, reader: &str, exam_id: &str, body: Value) -> (StatusCode, Value) {
    let token = t.token(reader).await;
    let r = t
        .post_json(
            &token,
            &format!("/api/v1/exams/{exam_id}/report/sign"),
            &body,
        )
        .await;
    (r.status(), r.json().await.unwrap())
}

/// A configuration file for the binary: the demo alliance on the test hub's catalog and keys.
fn config_file(t: &TestHub) -> PathBuf {
    let path = t.dir.path().join("alliance.toml");
    let text = yilian_config::DEMO_TOML
        .replace(
            "url = \"sqlite://yilian-data/catalog.db?mode=rwc\"",
            &format!("url = \"{}\"", t.hub.config.database.url),
        )
        .replace(
            "dir = \"yilian-data/keys\"",
            &format!("dir = \"{}\"", t.hub.config.keys.dir.display()),
        )
        .replace("require_passphrase = false", "require_passphrase = true");
    assert!(text.contains("require_passphrase = true"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `yilian keygen` for `user`; its output.
fn keygen(t: &TestHub, user: &str, algorithm: Option<&str>, pass: &str, replace: bool) -> Output {
    let pass_file = t.dir.path().join(format!("{user}.pass"));
    std::fs::write(&pass_file, format!("{pass}\n")).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_yilian"));
    cmd.args(["keygen", "--user", user, "--passphrase-file"])
        .arg(&pass_file)
        .arg("--config")
        .arg(config_file(t))
        .env("YILIAN_BLOBS_URL", &t.hub.config.blobs.url)
        .env("YILIAN_DICOM_ENABLED", "false");
    if let Some(a) = algorithm {
        cmd.args(["--algorithm", a]);
    }
    if replace {
        cmd.arg("--replace");
    }
    cmd.output().expect("run yilian keygen")
}

fn key_id_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `yilian verify DOC --keys KEYS [--instances DIR]`: success and stdout.
fn verify_offline(
    dir: &Path,
    doc: &Value,
    keys: &Value,
    instances: Option<&Path>,
) -> (bool, String) {
    let doc_path = dir.join("doc.json");
    let keys_path = dir.join("keys.json");
    std::fs::write(&doc_path, doc.to_string()).unwrap();
    std::fs::write(&keys_path, keys.to_string()).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_yilian"));
    cmd.arg("verify")
        .arg(&doc_path)
        .arg("--keys")
        .arg(&keys_path);
    if let Some(i) = instances {
        cmd.arg("--instances").arg(i);
    }
    let out = cmd.output().expect("run yilian verify");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// The named check of a `/verify` response.
fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v}"))
}

async fn signatures(backend: &Backend) {
    // The hub clock starts at the wall clock: `yilian keygen` (another process) publishes keys valid
    // from the wall clock's now.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = ManualClock::new(start);
    let t = TestHub::start(backend, Some(clock.clone()), |c| {
        c.keys.require_passphrase = true;
    })
    .await;
    let clinician = t.token("wu.doctor").await;

    // Where passphrases are required, readers get no key on first use: they make one.
    let files_a = study_instances(5101);
    let exam_a = exam_for(&t, "li.reader", 5101, &files_a).await;
    let (status, err) = sign(&t, "li.reader", &exam_a, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["code"], "no_signing_key");

    // li.reader takes the alliance default (SM2), zhou.reader chooses Ed25519.
    let li_key = key_id_of(&keygen(&t, "li.reader", None, LI_PASS, false));
    assert!(li_key.starts_with("sm2:"), "{li_key}");
    let zhou_key = key_id_of(&keygen(
        &t,
        "zhou.reader",
        Some("ed25519"),
        ZHOU_PASS,
        false,
    ));
    assert!(zhou_key.starts_with("ed25519:"), "{zhou_key}");
    // A second keygen does not silently replace a key.
    assert!(
        !keygen(&t, "li.reader", None, LI_PASS, false)
            .status
            .success()
    );
    // The key files hold ciphertext only.
    let li_file = std::fs::read_to_string(t.hub.config.keys.dir.join("li.reader.key")).unwrap();
    assert!(li_file.contains("argon2id") && !li_file.contains(LI_PASS));

    let keys: Value = t.get_json(&clinician, "/api/v1/keys").await;
    let published = keys["keys"].as_array().unwrap();
    let owner_of = |id: &str| {
        published
            .iter()
            .find(|k| k["key_id"] == id)
            .map(|k| (k["owner"].clone(), k["algorithm"].clone()))
    };
    assert_eq!(owner_of(&li_key), Some((json!("li.reader"), json!("SM2"))));
    assert_eq!(
        owner_of(&zhou_key),
        Some((json!("zhou.reader"), json!("Ed25519")))
    );
    assert!(
        published
            .iter()
            .any(|k| k["owner"] == "hub" && k["algorithm"] == "SM2"),
        "the hub clock key is published: {keys}"
    );

    clock.advance_secs(60);
    let signing_time = yilian_signing::format_time(start + 60_000);

    // No passphrase, a wrong one: refused with a clear code, and nothing was signed.
    let (status, err) = sign(&t, "li.reader", &exam_a, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["code"], "passphrase_required");
    let (status, err) = sign(
        &t,
        "li.reader",
        &exam_a,
        json!({"passphrase": "not the passphrase"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["code"], "wrong_passphrase");
    let exam = yilian_domain::ExamId::new(exam_a.clone()).unwrap();
    assert!(
        t.hub
            .catalog
            .final_report_of(&exam)
            .await
            .unwrap()
            .is_none()
    );

    // The right passphrase: an SM2 signature, countersigned by the hub clock key.
    let (status, doc_a) = sign(&t, "li.reader", &exam_a, json!({"passphrase": LI_PASS})).await;
    assert_eq!(status, StatusCode::OK, "{doc_a}");
    assert_eq!(doc_a["signature"]["algorithm"], "SM2");
    assert_eq!(doc_a["signature"]["key_id"], li_key.as_str());
    assert_eq!(doc_a["report"]["signer"]["key_id"], li_key.as_str());
    let cs = &doc_a["countersignature"];
    assert_eq!(cs["algorithm"], "SM2");
    assert_eq!(cs["time"], signing_time.as_str());
    assert_eq!(doc_a["report"]["signed_at"], signing_time.as_str());
    assert_eq!(owner_of(cs["key_id"].as_str().unwrap()).unwrap().0, "hub");

    // The other reader signs with Ed25519.
    let files_b = study_instances(5102);
    let exam_b = exam_for(&t, "zhou.reader", 5102, &files_b).await;
    let (status, doc_b) = sign(&t, "zhou.reader", &exam_b, json!({"passphrase": ZHOU_PASS})).await;
    assert_eq!(status, StatusCode::OK, "{doc_b}");
    assert_eq!(doc_b["signature"]["algorithm"], "Ed25519");
    assert_eq!(doc_b["signature"]["key_id"], zhou_key.as_str());

    // Online: every named check passes for both.
    for doc in [&doc_a, &doc_b] {
        let id = doc["report"]["report_id"].as_str().unwrap();
        let v = t
            .get_json(&clinician, &format!("/api/v1/reports/{id}/verify"))
            .await;
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["latest"], true, "{v}");
        for name in [
            "signature",
            "key_validity",
            "countersignature",
            "results",
            "latest",
            "not_revoked",
        ] {
            assert_eq!(check(&v, name)["ok"], true, "{name}: {v}");
        }
        // The stored document is what the signer got back (beside it, the version lifecycle).
        let mut stored = t
            .get_json(&clinician, &format!("/api/v1/reports/{id}"))
            .await;
        assert_eq!(stored["lifecycle"]["status"], "final");
        stored.as_object_mut().unwrap().remove("lifecycle");
        assert_eq!(&stored, doc);
    }

    // Offline with the real binary, against the published keys and the instances on disk.
    let work = t.dir.path().join("offline");
    let instances = work.join("instances");
    std::fs::create_dir_all(&instances).unwrap();
    for (i, f) in files_a.iter().chain(&files_b).enumerate() {
        std::fs::write(instances.join(format!("{i}.dcm")), f).unwrap();
    }
    for doc in [&doc_a, &doc_b] {
        let (ok, out) = verify_offline(&work, doc, &keys, Some(&instances));
        assert!(ok, "{out}");
        assert!(out.starts_with("VALID"), "{out}");
        assert!(out.contains("[PASS] countersignature"), "{out}");
        assert!(out.contains("[PASS] results"), "{out}");
    }
    let (ok, out) = verify_offline(&work, &doc_a, &keys, None);
    assert!(ok && out.contains("[SKIP] results"), "{out}");

    // Tamper: changed text.
    for doc in [&doc_a, &doc_b] {
        let mut d = doc.clone();
        d["report"]["impression"] = json!("右肺结节。");
        let (ok, out) = verify_offline(&work, &d, &keys, Some(&instances));
        assert!(!ok && out.contains("[FAIL] signature"), "{out}");
    }
    // Tamper: a signature replaced by another one (the other report's, or the reader's key swapped).
    let mut d = doc_a.clone();
    d["signature"]["value"] = doc_b["signature"]["value"].clone();
    d["signature"]["algorithm"] = json!("Ed25519");
    let (ok, out) = verify_offline(&work, &d, &keys, Some(&instances));
    assert!(!ok && out.contains("[FAIL] signature"), "{out}");
    let mut d = doc_a.clone();
    d["signature"] = doc_b["signature"].clone();
    let (ok, out) = verify_offline(&work, &d, &keys, Some(&instances));
    assert!(!ok && out.contains("[FAIL] signature"), "{out}");
    assert!(out.contains("[FAIL] countersignature"), "{out}");
    // Tamper: countersignature removed, its time altered, or borrowed from another report.
    let mut d = doc_a.clone();
    d.as_object_mut().unwrap().remove("countersignature");
    let (ok, out) = verify_offline(&work, &d, &keys, Some(&instances));
    assert!(!ok && out.contains("[FAIL] countersignature"), "{out}");
    assert!(out.contains("[PASS] signature"), "{out}");
    let mut d = doc_a.clone();
    d["countersignature"]["time"] = json!("2026-11-23T09:59:00.000Z");
    let (ok, out) = verify_offline(&work, &d, &keys, Some(&instances));
    assert!(!ok && out.contains("[FAIL] countersignature"), "{out}");
    let mut d = doc_a.clone();
    d["countersignature"] = doc_b["countersignature"].clone();
    let (ok, out) = verify_offline(&work, &d, &keys, Some(&instances));
    assert!(!ok && out.contains("[FAIL] countersignature"), "{out}");
    // Tamper: an instance changed on disk.
    let altered = work.join("altered");
    std::fs::create_dir_all(&altered).unwrap();
    std::fs::write(altered.join("0.dcm"), &files_a[0]).unwrap();
    let mut changed = files_a[1].clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xff;
    std::fs::write(altered.join("1.dcm"), &changed).unwrap();
    let (ok, out) = verify_offline(&work, &doc_a, &keys, Some(&altered));
    assert!(!ok && out.contains("[FAIL] results"), "{out}");
    assert!(out.contains("2.25.5101.1.2"), "{out}");
    // Tamper: the key's published validity ends before the signing time.
    let mut k = keys.clone();
    for key in k["keys"].as_array_mut().unwrap() {
        if key["key_id"] == li_key.as_str() {
            key["valid_to"] = json!("2026-11-23T09:00:00.000Z");
        }
    }
    let (ok, out) = verify_offline(&work, &doc_a, &k, Some(&instances));
    assert!(!ok && out.contains("[FAIL] key_validity"), "{out}");

    // Online, a blob overwritten in the blob folder is found by re-hashing.
    if matches!(t.blob_store, BlobStore::File) {
        let sha = doc_b["report"]["results"][0]["sha256"].as_str().unwrap();
        let blob = t
            .dir
            .path()
            .join("blobs")
            .join(yilian_app::ingest::blob_key(sha));
        let mut bytes = std::fs::read(&blob).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&blob, &bytes).unwrap();
        let id = doc_b["report"]["report_id"].as_str().unwrap();
        let v = t
            .get_json(&clinician, &format!("/api/v1/reports/{id}/verify"))
            .await;
        assert_eq!(v["valid"], false, "{v}");
        assert_eq!(check(&v, "results")["ok"], false, "{v}");
        assert_eq!(check(&v, "signature")["ok"], true, "{v}");
    } else {
        eprintln!("SKIPPED blob overwrite: the blobs are not in a local folder");
    }

    // Two years on, li.reader's key has expired: the hub refuses to sign with it. Reports it signed
    // while the key was valid still verify (validity is judged at signing time).
    clock.advance_secs(731 * 24 * 3600);
    let clinician = t.token("wu.doctor").await;
    let files_c = study_instances(5103);
    let exam_c = exam_for(&t, "li.reader", 5103, &files_c).await;
    let (status, err) = sign(&t, "li.reader", &exam_c, json!({"passphrase": LI_PASS})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["code"], "key_expired");
    let id_a = doc_a["report"]["report_id"].as_str().unwrap();
    let v = t
        .get_json(&clinician, &format!("/api/v1/reports/{id_a}/verify"))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    // A new key (the old one retired), made as `yilian keygen --replace` makes it but published by
    // the hub under its (advanced) clock; the hub renews its own expired clock key by itself.
    let li = yilian_domain::Username::new("li.reader").unwrap();
    let key = t
        .hub
        .vault
        .create_key(
            &li,
            yilian_signing::Algorithm::Sm2,
            Some(&yilian_signing::Passphrase::new(LI_PASS)),
            true,
        )
        .await
        .unwrap();
    t.hub.publish_key("li.reader", &key).await.unwrap();
    let new_key = key.key_id;
    assert_ne!(new_key, li_key);
    let (status, doc_c) = sign(&t, "li.reader", &exam_c, json!({"passphrase": LI_PASS})).await;
    assert_eq!(status, StatusCode::OK, "{doc_c}");
    assert_eq!(doc_c["signature"]["key_id"], new_key.as_str());
    assert_ne!(
        doc_c["countersignature"]["key_id"],
        doc_a["countersignature"]["key_id"]
    );
    let id_c = doc_c["report"]["report_id"].as_str().unwrap();
    let v = t
        .get_json(&clinician, &format!("/api/v1/reports/{id_c}/verify"))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    t.finish().await;
}
