//! `yilian repair blobs` (`Hub::repair_blobs`) against the real catalog (SQLite, PostgreSQL when
//! DATABASE_URL is set) and real blob stores (a folder, and the S3 test server when the test script
//! started one): a blob nothing points to is reported and, when asked, removed once older than the
//! grace period; a blob a catalog row points to but the store lost is reported; referenced blobs are
//! never touched; a spool file a crash left in the staging folder is collected like an orphan.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use support::{BlobStore, TestHub, backends, s3_env};
use yilian_app::ingest::blob_key;
use yilian_fixtures::{InstanceSpec, instance_bytes};

async fn exercise(t: &TestHub) {
    let tech = t.token("wang.tech").await;
    let files: Vec<Vec<u8>> = (1..=3)
        .map(|n| instance_bytes(&InstanceSpec::ct(n)))
        .collect();
    t.stow_all(&tech, &files).await;
    let keys: Vec<String> = files
        .iter()
        .map(|f| blob_key(&hex::encode(Sha256::digest(f))))
        .collect();

    // A blob an ingest wrote but never committed a row for, and an instance whose blob was lost.
    let orphan_bytes = b"an upload that crashed before its commit".to_vec();
    let orphan = blob_key(&hex::encode(Sha256::digest(&orphan_bytes)));
    t.hub
        .blobs
        .put(&orphan, Bytes::from(orphan_bytes))
        .await
        .unwrap();
    t.hub.blobs.delete(&keys[1]).await.unwrap();
    // And a spool file a killed hub left behind (an upload cut off mid-transfer).
    let staging = t.hub.blobs.staging_dir().unwrap();
    std::fs::create_dir_all(&staging).unwrap();
    let spool = staging.join("yilian-dimse-cut-off.dcm");
    std::fs::write(&spool, b"half an instance").unwrap();

    // Within the grace period an unreferenced blob may be an upload in progress: left alone.
    let r = t.hub.repair_blobs(true, 3600).await.unwrap();
    assert!(r.orphans.is_empty(), "{r:?}");
    assert_eq!((r.deleted, r.recent_unreferenced), (0, 1));
    assert_eq!(r.missing, vec![keys[1].clone()]);
    assert_eq!(r.blobs, 3, "two instances and the orphan: {r:?}");
    assert_eq!(
        r.stale_spool_files, 0,
        "a young spool file may be an upload"
    );

    // Past it, the report names the orphan; nothing is removed without --delete.
    let r = t.hub.repair_blobs(false, 0).await.unwrap();
    assert_eq!(
        r.orphans.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(),
        vec![orphan.as_str()]
    );
    assert_eq!(r.deleted, 0);
    assert!(t.hub.blobs.get(&orphan).await.is_ok());
    assert_eq!((r.stale_spool_files, r.spool_deleted), (1, 0));
    assert!(spool.exists());

    // With --delete the orphan goes, and only the orphan.
    let r = t.hub.repair_blobs(true, 0).await.unwrap();
    assert_eq!((r.orphans.len(), r.deleted), (1, 1));
    assert_eq!((r.stale_spool_files, r.spool_deleted), (1, 1));
    assert!(!spool.exists());
    assert!(t.hub.blobs.get(&orphan).await.is_err());
    for k in [&keys[0], &keys[2]] {
        assert!(!t.hub.blobs.get(k).await.unwrap().is_empty());
    }
    let r = t.hub.repair_blobs(true, 0).await.unwrap();
    assert!(r.orphans.is_empty());
    assert_eq!(r.stale_spool_files, 0);
    assert_eq!(
        r.missing,
        vec![keys[1].clone()],
        "the loss is still reported"
    );
    // Still served: the instances whose blobs are there.
    let r = t
        .get(
            &tech,
            "/dicomweb/studies/2.25.1001/series/2.25.1001.1/instances/2.25.1001.1.1",
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Each run is in the audit trail.
    let runs = t
        .hub
        .catalog
        .audit_events(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "blobs.repair" && e.outcome == "missing")
        .count();
    assert_eq!(runs, 4);
}

#[tokio::test]
async fn orphans_are_found_and_collected_and_losses_reported() {
    for backend in backends() {
        let t = TestHub::start_with_blobs(&backend, &BlobStore::File, None, |_| {}).await;
        exercise(&t).await;
        t.finish().await;
    }
    if let Some(env) = s3_env() {
        let t = TestHub::start_with_blobs(&backends()[0], &BlobStore::S3(env), None, |_| {}).await;
        exercise(&t).await;
        t.finish().await;
    }
}
