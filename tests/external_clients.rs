//! Interoperability with clients nobody here wrote: the Python `dicomweb-client` stores the fixtures
//! through STOW-RS and reads them back with WADO-RS, against the real hub on 127.0.0.1:0.
//! `scripts/test` installs the client into `.venv` and sets YILIAN_TEST_PYTHON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{TestHub, backends};

fn python() -> Option<String> {
    support::python("external clients")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dicomweb_client_stores_and_reads_back() {
    let Some(python) = python() else { return };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let files: Vec<String> = ["ct-1", "ct-2", "ct-3"]
        .iter()
        .map(|n| format!("{root}/fixtures/ct-study-1001/{n}.dcm"))
        .collect();
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let token = t.token("wang.tech").await;
        let base = t.base.clone();
        let mut cmd = tokio::process::Command::new(&python);
        cmd.arg(format!("{root}/tests/python/dicomweb_roundtrip.py"))
            .arg(&base)
            .arg(&token)
            .args(&files);
        let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
            .await
            .expect("dicomweb-client finished in time")
            .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "dicomweb-client round trip failed on {backend:?}:\n{stdout}\n{stderr}"
        );
        eprintln!("{backend:?}: {stdout}");
        // What the client stored is in the catalog and the blob store.
        let inst = t
            .hub
            .catalog
            .instance(&"2.25.1001.1.2".parse().unwrap())
            .await
            .unwrap()
            .expect("stored by dicomweb-client");
        assert_eq!(inst.received_by.as_str(), "wang.tech");
        t.finish().await;
    }
}
