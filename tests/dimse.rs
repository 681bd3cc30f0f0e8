//! DIMSE front end end to end, with dicom-ul as the SCU against the real hub on 127.0.0.1:0 (SQLite
//! always, PostgreSQL when DATABASE_URL is set): association acceptance, C-ECHO, C-STORE into the
//! catalog and back out over DICOMweb, failures that leave the association usable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex as _;
use dicom_ul::Pdu;
use dicom_ul::association::client::{AsyncClientAssociation, ClientAssociationOptions};
use dicom_ul::association::{Association, Error as UlError};
use dicom_ul::pdu::{
    AssociationRJResult, AssociationRJServiceUserReason, AssociationRJSource, PDataValue,
    PDataValueType, PresentationContextResultReason,
};
use support::{BlobStore, TestHub, backends};
use yilian_fixtures::{InstanceSpec, instance_bytes};
use yilian_server::dimse::command::{Command, CommandBuilder, field};

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

/// A minimal SCU over a dicom-ul client association.
struct Scu {
    assoc: AsyncClientAssociation<tokio::net::TcpStream>,
    next_id: u16,
}

async fn connect(
    t: &TestHub,
    calling: &str,
    called: &str,
    contexts: &[(&str, &[&str])],
) -> Result<Scu, UlError> {
    let mut opts = ClientAssociationOptions::new()
        .calling_ae_title(calling.to_string())
        .called_ae_title(called.to_string());
    for (abs, ts) in contexts {
        opts = opts
            .with_presentation_context(abs.to_string(), ts.iter().map(|s| s.to_string()).collect());
    }
    let assoc = opts.establish_async(t.dimse_addr).await?;
    Ok(Scu { assoc, next_id: 1 })
}

impl Scu {
    fn pc(&self, abstract_syntax: &str) -> (u8, String) {
        let pc = self
            .assoc
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.abstract_syntax == abstract_syntax
                    && pc.reason == PresentationContextResultReason::Acceptance
            })
            .unwrap_or_else(|| panic!("{abstract_syntax} not accepted"));
        (pc.id, pc.transfer_syntax.clone())
    }

    async fn send_pdvs(&mut self, pc: u8, ty: PDataValueType, bytes: &[u8]) {
        let max = self.assoc.peer_max_pdu_length() as usize - 6;
        let chunks: Vec<&[u8]> = bytes.chunks(max).collect();
        for (i, c) in chunks.iter().enumerate() {
            self.assoc
                .send(&Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id: pc,
                        value_type: ty.clone(),
                        is_last: i + 1 == chunks.len(),
                        data: c.to_vec(),
                    }],
                })
                .await
                .unwrap();
        }
    }

    /// The next complete command (and its data set, if any).
    async fn read_message(&mut self) -> (Command, Option<Vec<u8>>) {
        let mut cmd = Vec::new();
        let mut data = Vec::new();
        let mut command: Option<Command> = None;
        loop {
            match self.assoc.receive().await.unwrap() {
                Pdu::PData { data: pdvs } => {
                    for pdv in pdvs {
                        match pdv.value_type {
                            PDataValueType::Command => {
                                cmd.extend_from_slice(&pdv.data);
                                if pdv.is_last {
                                    let c = Command::parse(&cmd).unwrap();
                                    if !c.has_data_set() {
                                        return (c, None);
                                    }
                                    command = Some(c);
                                }
                            }
                            PDataValueType::Data => {
                                data.extend_from_slice(&pdv.data);
                                if pdv.is_last {
                                    return (command.take().unwrap(), Some(data));
                                }
                            }
                        }
                    }
                }
                other => panic!("unexpected PDU {other:?}"),
            }
        }
    }

    async fn echo(&mut self) -> u16 {
        let (pc, _) = self.pc(uids::VERIFICATION);
        let id = self.id();
        let cmd = CommandBuilder::request(field::C_ECHO_RQ, id)
            .uid(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION)
            .encode();
        self.send_pdvs(pc, PDataValueType::Command, &cmd).await;
        let (rsp, _) = self.read_message().await;
        assert_eq!(rsp.field, field::C_ECHO_RSP);
        assert_eq!(rsp.message_id, id);
        rsp.u16(tags::STATUS).unwrap()
    }

    /// C-STORE of a data set; returns the status and Error Comment.
    async fn store(
        &mut self,
        class: &str,
        instance: &str,
        data_set: &[u8],
    ) -> (u16, Option<String>) {
        let (pc, _) = self.pc(class);
        let id = self.id();
        let cmd = CommandBuilder::request(field::C_STORE_RQ, id)
            .uid(tags::AFFECTED_SOP_CLASS_UID, class)
            .uid(tags::AFFECTED_SOP_INSTANCE_UID, instance)
            .u16(tags::PRIORITY, 0)
            .with_data_set()
            .encode();
        self.send_pdvs(pc, PDataValueType::Command, &cmd).await;
        self.send_pdvs(pc, PDataValueType::Data, data_set).await;
        let (rsp, _) = self.read_message().await;
        assert_eq!(rsp.field, field::C_STORE_RSP);
        assert_eq!(rsp.message_id, id);
        assert_eq!(rsp.affected_sop_instance_uid().as_deref(), Some(instance));
        (
            rsp.u16(tags::STATUS).unwrap(),
            rsp.text(tags::ERROR_COMMENT),
        )
    }

    fn id(&mut self) -> u16 {
        self.next_id += 1;
        self.next_id
    }

    async fn release(self) {
        self.assoc.release().await.unwrap();
    }
}

/// The data set of a Part 10 file: what follows the file meta group.
fn data_set_of(part10: &[u8]) -> &[u8] {
    assert_eq!(&part10[128..132], b"DICM");
    let group_len = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    &part10[144 + group_len..]
}

/// The single part of a multipart/related response body.
fn single_part(content_type: &str, body: &[u8]) -> Vec<u8> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .unwrap()
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let start = find(body, delim.as_bytes(), 0).unwrap();
    let headers_end = find(body, b"\r\n\r\n", start).unwrap() + 4;
    let end = find(body, format!("\r\n{delim}").as_bytes(), headers_end).unwrap();
    body[headers_end..end].to_vec()
}

const CT: &[(&str, &[&str])] = &[
    (uids::VERIFICATION, &[IMPLICIT_LE]),
    (uids::CT_IMAGE_STORAGE, &[EXPLICIT_LE]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_acceptance_policy() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |c| {
            // DS_DR01 may only associate from an address the test never uses.
            let n = c
                .dicom
                .nodes
                .iter_mut()
                .find(|n| n.ae_title == "DS_DR01")
                .unwrap();
            n.host = Some("10.255.255.1".into());
        })
        .await;

        let mut scu = connect(&t, "HX_DR01", "YILIAN", CT)
            .await
            .expect("known node accepted");
        assert_eq!(scu.echo().await, 0x0000);
        assert_eq!(
            scu.echo().await,
            0x0000,
            "the association serves more than one message"
        );
        scu.release().await;

        let rejected = |r: Result<Scu, UlError>| match r {
            Err(UlError::Rejected { association_rj, .. }) => {
                assert_eq!(association_rj.result, AssociationRJResult::Permanent);
                match association_rj.source {
                    AssociationRJSource::ServiceUser(reason) => reason,
                    other => panic!("rejected by {other:?}"),
                }
            }
            Ok(_) => panic!("association accepted"),
            Err(e) => panic!("not a rejection: {e}"),
        };
        assert_eq!(
            rejected(connect(&t, "STRANGER", "YILIAN", CT).await),
            AssociationRJServiceUserReason::CallingAETitleNotRecognized
        );
        assert_eq!(
            rejected(connect(&t, "HX_DR01", "SOMEONE_ELSE", CT).await),
            AssociationRJServiceUserReason::CalledAETitleNotRecognized
        );
        assert_eq!(
            rejected(connect(&t, "DS_DR01", "YILIAN", CT).await),
            AssociationRJServiceUserReason::CallingAETitleNotRecognized,
            "a node bound to another address"
        );
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_then_retrieve_over_http_bit_exact() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut scu = connect(&t, "HX_DR01", "YILIAN", CT).await.unwrap();
        let file = instance_bytes(&InstanceSpec::ct(1));
        let sent = data_set_of(&file).to_vec();
        let (st, comment) = scu
            .store(uids::CT_IMAGE_STORAGE, "2.25.1001.1.1", &sent)
            .await;
        assert_eq!(st, 0x0000, "{comment:?}");
        // The same instance again is a duplicate with the same bytes: success.
        let (st, comment) = scu
            .store(uids::CT_IMAGE_STORAGE, "2.25.1001.1.1", &sent)
            .await;
        assert_eq!(st, 0x0000, "{comment:?}");
        scu.release().await;

        let inst = t
            .hub
            .catalog
            .instance(&"2.25.1001.1.1".parse().unwrap())
            .await
            .unwrap()
            .expect("in the catalog");
        assert_eq!(inst.received_by.as_str(), "dicom.hx_dr01");
        assert_eq!(inst.transfer_syntax_uid, EXPLICIT_LE);

        let token = t.token("wang.tech").await;
        let rsp = t
            .get(
                &token,
                "/dicomweb/studies/2.25.1001/series/2.25.1001.1/instances/2.25.1001.1.1",
            )
            .await;
        assert_eq!(rsp.status(), 200);
        let ct = rsp.headers()["content-type"].to_str().unwrap().to_string();
        let body = rsp.bytes().await.unwrap();
        let stored = single_part(&ct, &body);
        assert_eq!(data_set_of(&stored), &sent[..], "data set bytes unchanged");
        let obj = dicom_object::from_reader(std::io::Cursor::new(&stored[128..])).unwrap();
        assert_eq!(
            obj.meta()
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0'),
            "2.25.1001.1.1"
        );
        assert_eq!(
            obj.meta().transfer_syntax().trim_end_matches('\0'),
            EXPLICIT_LE
        );
        t.finish().await;
    }
}

/// C-STORE with blobs on the S3 test server: the real DIMSE ingest path spools each instance to the
/// local staging folder, streams it to S3 (an 8 MiB instance as a multipart upload in 5 MiB parts),
/// removes the spool file and only then answers success; WADO-RS returns the data set unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_store_with_blobs_on_s3() {
    let Some(env) = support::s3_env() else {
        return;
    };
    let backend = backends().pop().expect("a catalog backend");
    let t = TestHub::start_with_blobs(&backend, &BlobStore::S3(env), None, |_| {}).await;
    let staging = t
        .hub
        .blobs
        .staging_dir()
        .expect("S3 blobs spool on local disk");
    assert!(staging.starts_with(t.dir.path()), "{}", staging.display());
    let mut scu = connect(&t, "HX_DR01", "YILIAN", CT).await.unwrap();
    let small = instance_bytes(&InstanceSpec::ct(1));
    let large = instance_bytes(&InstanceSpec {
        rows: 2048,
        columns: 2048,
        ..InstanceSpec::ct(2)
    });
    let token = t.token("wang.tech").await;
    for (sop, file) in [("2.25.1001.1.1", &small), ("2.25.1001.1.2", &large)] {
        let sent = data_set_of(file).to_vec();
        let (st, comment) = scu.store(uids::CT_IMAGE_STORAGE, sop, &sent).await;
        assert_eq!(st, 0x0000, "{comment:?}");
        let leftovers: Vec<_> = std::fs::read_dir(&staging)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "spool files left: {leftovers:?}");
        let inst = t
            .hub
            .catalog
            .instance(&sop.parse().unwrap())
            .await
            .unwrap()
            .expect("in the catalog");
        assert_eq!(
            t.hub.blobs.size(&inst.blob_key).await.unwrap(),
            Some(inst.size_bytes as u64),
            "the object is in the bucket"
        );
        let rsp = t
            .get(
                &token,
                &format!("/dicomweb/studies/2.25.1001/series/2.25.1001.1/instances/{sop}"),
            )
            .await;
        assert_eq!(rsp.status(), 200);
        let ct = rsp.headers()["content-type"].to_str().unwrap().to_string();
        let body = rsp.bytes().await.unwrap();
        let stored = single_part(&ct, &body);
        assert!(
            data_set_of(&stored) == &sent[..],
            "{sop}: data set bytes unchanged"
        );
    }
    scu.release().await;
    assert!(
        !t.dir.path().join("blobs").exists(),
        "no blob was written to the local disk"
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_instance_fails_and_the_next_one_is_stored() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut scu = connect(&t, "HX_DR01", "YILIAN", CT).await.unwrap();

        // Truncated: the element header promises more bytes than follow.
        let good = instance_bytes(&InstanceSpec::ct(2));
        let ds = data_set_of(&good);
        let (st, comment) = scu
            .store(
                uids::CT_IMAGE_STORAGE,
                "2.25.1001.1.2",
                &ds[..ds.len() - 100],
            )
            .await;
        assert_eq!(st, 0xC000);
        assert!(comment.is_some_and(|c| !c.is_empty()));

        // Not DICOM at all.
        let (st, _) = scu
            .store(
                uids::CT_IMAGE_STORAGE,
                "2.25.1001.1.9",
                b"\x01\x02garbage-bytes!",
            )
            .await;
        assert_eq!(st, 0xC000);

        // The association is still in step: the next instance is stored.
        let (st, comment) = scu.store(uids::CT_IMAGE_STORAGE, "2.25.1001.1.2", ds).await;
        assert_eq!(st, 0x0000, "{comment:?}");
        assert_eq!(scu.echo().await, 0x0000);
        scu.release().await;
        assert!(
            t.hub
                .catalog
                .instance(&"2.25.1001.1.2".parse().unwrap())
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            t.hub
                .catalog
                .instance(&"2.25.1001.1.9".parse().unwrap())
                .await
                .unwrap()
                .is_none()
        );
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stores_only_what_its_role_allows() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let good = instance_bytes(&InstanceSpec::ct(3));

        // TCM_PACS is a clinician node (127.0.0.1): it may query and retrieve, not upload.
        let mut scu = connect(&t, "TCM_PACS", "YILIAN", CT).await.unwrap();
        let (st, comment) = scu
            .store(uids::CT_IMAGE_STORAGE, "2.25.1001.1.3", data_set_of(&good))
            .await;
        assert_eq!(st, 0x0124, "{comment:?}");
        scu.release().await;

        // DS_DR01 (another township) may not add to a study owned by HX.
        let mut hx = connect(&t, "HX_DR01", "YILIAN", CT).await.unwrap();
        let first = instance_bytes(&InstanceSpec::ct(1));
        assert_eq!(
            hx.store(uids::CT_IMAGE_STORAGE, "2.25.1001.1.1", data_set_of(&first))
                .await
                .0,
            0x0000
        );
        hx.release().await;
        let mut ds = connect(&t, "DS_DR01", "YILIAN", CT).await.unwrap();
        let (st, comment) = ds
            .store(uids::CT_IMAGE_STORAGE, "2.25.1001.1.3", data_set_of(&good))
            .await;
        assert_eq!(st, 0x0124, "{comment:?}");
        ds.release().await;
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_little_endian_is_stored_as_received() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut scu = connect(
            &t,
            "HX_CT01",
            "YILIAN",
            &[(uids::CT_IMAGE_STORAGE, &[IMPLICIT_LE])],
        )
        .await
        .unwrap();
        let (_, ts) = scu.pc(uids::CT_IMAGE_STORAGE);
        assert_eq!(ts, IMPLICIT_LE);
        // Re-encode the fixture's data set as implicit VR little endian.
        let file = instance_bytes(&InstanceSpec::ct(4));
        let obj = dicom_object::from_reader(std::io::Cursor::new(&file[128..])).unwrap();
        let mut implicit = Vec::new();
        obj.write_dataset_with_ts(
            &mut implicit,
            &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
        let (st, comment) = scu
            .store(uids::CT_IMAGE_STORAGE, "2.25.1001.1.4", &implicit)
            .await;
        assert_eq!(st, 0x0000, "{comment:?}");
        scu.release().await;
        let inst = t
            .hub
            .catalog
            .instance(&"2.25.1001.1.4".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(inst.transfer_syntax_uid, IMPLICIT_LE);
        assert_eq!(inst.rows, Some(64));
        t.finish().await;
    }
}

impl Scu {
    /// C-FIND; returns the final status and the pending responses' identifiers.
    async fn find(
        &mut self,
        model: &str,
        keys: &[(dicom_core::Tag, dicom_core::VR, &str)],
    ) -> (u16, Vec<dicom_object::InMemDicomObject>) {
        let (pc, ts) = self.pc(model);
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(&ts)
            .unwrap();
        let mut id = dicom_object::InMemDicomObject::new_empty();
        for (tag, vr, v) in keys {
            id.put(dicom_core::DataElement::new(
                *tag,
                *vr,
                dicom_core::PrimitiveValue::from(*v),
            ));
        }
        let mut data = Vec::new();
        id.write_dataset_with_ts(&mut data, ts).unwrap();
        let msg_id = self.id();
        let cmd = CommandBuilder::request(field::C_FIND_RQ, msg_id)
            .uid(tags::AFFECTED_SOP_CLASS_UID, model)
            .u16(tags::PRIORITY, 0)
            .with_data_set()
            .encode();
        self.send_pdvs(pc, PDataValueType::Command, &cmd).await;
        self.send_pdvs(pc, PDataValueType::Data, &data).await;
        let mut out = Vec::new();
        loop {
            let (rsp, data) = self.read_message().await;
            assert_eq!(rsp.field, field::C_FIND_RSP);
            let st = rsp.u16(tags::STATUS).unwrap();
            if st == 0xFF00 || st == 0xFF01 {
                let obj =
                    dicom_object::InMemDicomObject::read_dataset_with_ts(&data.unwrap()[..], ts)
                        .unwrap();
                out.push(obj);
            } else {
                return (st, out);
            }
        }
    }
}

fn text_of(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .map(|e| {
            e.to_str()
                .unwrap()
                .trim_end_matches(['\0', ' '])
                .to_string()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_find_levels_matching_and_scope() {
    use dicom_core::VR;
    const PATIENT_FIND: &str = uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;
    const STUDY_FIND: &str = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;
    let qr: &[(&str, &[&str])] = &[
        (uids::CT_IMAGE_STORAGE, &[EXPLICIT_LE]),
        (PATIENT_FIND, &[EXPLICIT_LE]),
        (STUDY_FIND, &[IMPLICIT_LE]),
    ];
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut hx = connect(&t, "HX_DR01", "YILIAN", qr).await.unwrap();
        for n in 1..=3 {
            let f = instance_bytes(&InstanceSpec::ct(n));
            let uid = format!("2.25.1001.1.{n}");
            assert_eq!(
                hx.store(uids::CT_IMAGE_STORAGE, &uid, data_set_of(&f))
                    .await
                    .0,
                0
            );
        }
        let mut other = InstanceSpec::ct(1);
        other.study_uid = "2.25.1002".into();
        other.series_uid = "2.25.1002.1".into();
        other.sop_uid = "2.25.1002.1.1".into();
        other.modality = "DX".into();
        let f = instance_bytes(&other);
        assert_eq!(
            hx.store(uids::CT_IMAGE_STORAGE, "2.25.1002.1.1", data_set_of(&f))
                .await
                .0,
            0
        );

        // Patient Root, PATIENT level.
        let (st, m) = hx
            .find(
                PATIENT_FIND,
                &[
                    (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT"),
                    (tags::PATIENT_ID, VR::LO, "HX0001"),
                    (tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS, ""),
                ],
            )
            .await;
        assert_eq!(st, 0);
        assert_eq!(m.len(), 1);
        assert_eq!(text_of(&m[0], tags::PATIENT_ID), "HX0001");
        assert_eq!(text_of(&m[0], tags::NUMBER_OF_PATIENT_RELATED_STUDIES), "2");

        // Study Root, STUDY level: UID list matching, then wildcard and a date range.
        let (st, m) = hx
            .find(
                STUDY_FIND,
                &[
                    (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
                    (
                        tags::STUDY_INSTANCE_UID,
                        VR::UI,
                        "2.25.1001\\2.25.1002\\2.25.9999",
                    ),
                ],
            )
            .await;
        assert_eq!(st, 0);
        let mut studies: Vec<String> = m
            .iter()
            .map(|o| text_of(o, tags::STUDY_INSTANCE_UID))
            .collect();
        studies.sort();
        assert_eq!(studies, ["2.25.1001", "2.25.1002"]);
        let (_, m) = hx
            .find(
                STUDY_FIND,
                &[
                    (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
                    (tags::PATIENT_NAME, VR::PN, "Ceshi*"),
                    (tags::STUDY_DATE, VR::DA, "20261101-20261130"),
                    (tags::MODALITIES_IN_STUDY, VR::CS, "DX"),
                    (tags::STUDY_INSTANCE_UID, VR::UI, ""),
                ],
            )
            .await;
        assert_eq!(m.len(), 1);
        assert_eq!(text_of(&m[0], tags::STUDY_INSTANCE_UID), "2.25.1002");
        let (_, m) = hx
            .find(
                STUDY_FIND,
                &[
                    (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
                    (tags::STUDY_DATE, VR::DA, "20250101-20251231"),
                ],
            )
            .await;
        assert!(m.is_empty(), "date range excludes both studies");

        // SERIES and IMAGE levels.
        let (_, m) = hx
            .find(
                STUDY_FIND,
                &[
                    (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"),
                    (tags::STUDY_INSTANCE_UID, VR::UI, "2.25.1001"),
                    (tags::SERIES_INSTANCE_UID, VR::UI, ""),
                    (tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""),
                ],
            )
            .await;
        assert_eq!(m.len(), 1);
        assert_eq!(text_of(&m[0], tags::SERIES_INSTANCE_UID), "2.25.1001.1");
        assert_eq!(
            text_of(&m[0], tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
            "3"
        );
        let (_, m) = hx
            .find(
                STUDY_FIND,
                &[
                    (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "IMAGE"),
                    (tags::STUDY_INSTANCE_UID, VR::UI, "2.25.1001"),
                    (tags::SERIES_INSTANCE_UID, VR::UI, "2.25.1001.1"),
                    (tags::SOP_INSTANCE_UID, VR::UI, ""),
                ],
            )
            .await;
        let mut sops: Vec<String> = m
            .iter()
            .map(|o| text_of(o, tags::SOP_INSTANCE_UID))
            .collect();
        sops.sort();
        assert_eq!(sops, ["2.25.1001.1.1", "2.25.1001.1.2", "2.25.1001.1.3"]);

        // A bad identifier fails; the association goes on.
        let (st, m) = hx
            .find(STUDY_FIND, &[(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "WARD")])
            .await;
        assert_eq!((st, m.len()), (0xA900, 0));
        let (st, _) = hx
            .find(
                STUDY_FIND,
                &[(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT")],
            )
            .await;
        assert_eq!(st, 0xA900, "Study Root has no PATIENT level");
        hx.release().await;

        // Another township and a clinician (nothing signed yet) find nothing.
        for node in ["DS_DR01", "TCM_PACS"] {
            let mut scu = connect(&t, node, "YILIAN", qr).await.unwrap();
            let (st, m) = scu
                .find(
                    STUDY_FIND,
                    &[
                        (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
                        (tags::STUDY_INSTANCE_UID, VR::UI, ""),
                    ],
                )
                .await;
            assert_eq!((st, m.len()), (0, 0), "{node}");
            scu.release().await;
        }
        t.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_sent_over_stow_and_then_c_store_is_one_instance() {
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let tech = t.token("wang.tech").await;
        let file = instance_bytes(&InstanceSpec::ct(4));
        t.stow_all(&tech, std::slice::from_ref(&file)).await;

        // The modality resends it: another file meta, the same data set → a duplicate success.
        let mut scu = connect(&t, "HX_CT01", "YILIAN", CT).await.unwrap();
        let (st, comment) = scu
            .store(uids::CT_IMAGE_STORAGE, "2.25.1001.1.4", data_set_of(&file))
            .await;
        assert_eq!(st, 0x0000, "{comment:?}");
        // Other content under the same SOP Instance UID is still refused.
        let other = instance_bytes(&InstanceSpec {
            seed: 99,
            ..InstanceSpec::ct(4)
        });
        let (st, comment) = scu
            .store(uids::CT_IMAGE_STORAGE, "2.25.1001.1.4", data_set_of(&other))
            .await;
        assert_ne!(st, 0x0000, "{comment:?}");
        scu.release().await;
        let stored = t
            .hub
            .catalog
            .study_instances(&"2.25.1001".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        t.finish().await;
    }
}

/// An ECG cart sends over C-STORE: the waveform is read and measured before the C-STORE-RSP, a STEMI
/// statement from the device puts the exam at the top of the ECG worklist at once (no quiet period), and
/// a waveform whose channel count does not match its data is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecg_over_c_store_is_measured_and_routed_at_once() {
    use yilian_domain::ecg::LocalDateTime;
    use yilian_fixtures::ecg::{EcgSpec, synthesize};
    use yilian_formats::ecg::{EcgDicomIds, to_dicom};

    const ECG: &[(&str, &[&str])] = &[(uids::TWELVE_LEAD_ECG_WAVEFORM_STORAGE, &[EXPLICIT_LE])];
    for backend in backends() {
        let t = TestHub::start(&backend, None, |_| {}).await;
        let mut rec = synthesize(&EcgSpec {
            heart_rate_bpm: 96.0,
            ..EcgSpec::default()
        })
        .record;
        rec.acquired_at = LocalDateTime::new(2026, 11, 23, 7, 5, 0);
        rec.interpretation = vec!["Acute MI / STEMI".into()];
        let ids = |n: u32| EcgDicomIds {
            study_uid: format!("2.25.5500{n}"),
            series_uid: format!("2.25.5500{n}.1"),
            sop_uid: format!("2.25.5500{n}.1.1"),
            patient_id: "HX8001".into(),
            issuer_of_patient_id: Some("HX".into()),
            accession_number: None,
            institution_name: None,
            study_description: Some("ECG".into()),
        };
        let file = to_dicom(&rec, &ids(1)).unwrap();
        let mut scu = connect(&t, "HX_ECG01", "YILIAN", ECG).await.unwrap();
        let (st, comment) = scu
            .store(
                uids::TWELVE_LEAD_ECG_WAVEFORM_STORAGE,
                "2.25.55001.1.1",
                data_set_of(&file),
            )
            .await;
        assert_eq!(st, 0x0000, "{comment:?}");

        // The exam exists as soon as the C-STORE-RSP came back: stat on the ECG pool.
        let exam = t
            .hub
            .catalog
            .exam_of_study(&"2.25.55001".parse().unwrap())
            .await
            .unwrap()
            .expect("routed at once");
        assert_eq!(exam.pool.as_str(), "county-ecg");
        assert_eq!(exam.priority.as_str(), "stat");
        assert_eq!(exam.due_at.0 - exam.created_at.0, 10 * 60_000);
        assert!(exam.route_reason.contains("STEMI"), "{}", exam.route_reason);
        let ecg = t
            .hub
            .catalog
            .ecg_records_of_study(&exam.study_uid)
            .await
            .unwrap();
        assert_eq!(ecg.len(), 1);
        let hr = ecg[0].heart_rate_bpm.expect("measured");
        assert!((hr - 96.0).abs() <= 2.0, "{hr}");

        // One channel definition removed: the data no longer matches the channel count.
        let mut obj = dicom_object::from_reader(std::io::Cursor::new(
            &to_dicom(&rec, &ids(2)).unwrap()[128..],
        ))
        .unwrap();
        let wf = obj.element(tags::WAVEFORM_SEQUENCE).unwrap().clone();
        let mut items = wf.items().unwrap().to_vec();
        let chans = items[0]
            .element(tags::CHANNEL_DEFINITION_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .to_vec();
        items[0].put(dicom_core::DataElement::new(
            tags::CHANNEL_DEFINITION_SEQUENCE,
            dicom_core::VR::SQ,
            dicom_core::value::DataSetSequence::from(chans[..11].to_vec()),
        ));
        obj.put(dicom_core::DataElement::new(
            tags::WAVEFORM_SEQUENCE,
            dicom_core::VR::SQ,
            dicom_core::value::DataSetSequence::from(items),
        ));
        let mut broken = Vec::new();
        obj.write_all(&mut broken).unwrap();
        let full = broken;
        let (st, comment) = scu
            .store(
                uids::TWELVE_LEAD_ECG_WAVEFORM_STORAGE,
                "2.25.55002.1.1",
                data_set_of(&full),
            )
            .await;
        assert_eq!(st, 0xC000, "refused");
        let comment = comment.unwrap_or_default();
        assert!(
            comment.to_lowercase().contains("channels"),
            "the reason names the channels: {comment}"
        );
        scu.release().await;
        assert!(
            t.hub
                .catalog
                .instance(&"2.25.55002.1.1".parse().unwrap())
                .await
                .unwrap()
                .is_none(),
            "nothing stored"
        );
        t.finish().await;
    }
}
