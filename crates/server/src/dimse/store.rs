//! C-STORE as SCP: the data set PDVs of one instance stream into a temporary Part 10 file (file meta
//! built from the command and the presentation context, data set bytes unchanged), which then goes
//! to the one ingest use case. Memory per association stays at one PDU whatever the instance size.

use std::path::Path;

use dicom_object::FileMetaTableBuilder;
use tokio::io::AsyncWriteExt;
use yilian_app::ingest::Failure;
use yilian_app::{AppError, Hub, Principal};
use yilian_formats::dicom_json::FailureReason;

use super::command::status;

/// Implementation Class UID written in the file meta of instances received over DIMSE. Fixed (not
/// the library's) so that the same data set received twice gives the same file, hence a duplicate.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.302174316446392418318405446632391850121";
pub const IMPLEMENTATION_VERSION_NAME: &str = "YILIAN_DIMSE";

/// The file meta group, with the preamble and `DICM`, of an instance received in `transfer_syntax`.
pub fn part10_header(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax: &str,
) -> Result<Vec<u8>, String> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class_uid)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// One instance being received: a temporary file holding the Part 10 header and the data set
/// bytes so far. A write error is kept and reported when the instance is complete, so the
/// association stays in step with the peer.
pub struct Incoming {
    file: Option<(tempfile::TempPath, tokio::fs::File)>,
    error: Option<String>,
}

impl Incoming {
    /// Starts a file in `dir` (the blob store's staging folder, so ingest can move it) or, without
    /// one, in the system's temporary folder.
    pub async fn create(
        dir: Option<&Path>,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        transfer_syntax: &str,
    ) -> Self {
        match Self::try_create(dir, sop_class_uid, sop_instance_uid, transfer_syntax).await {
            Ok(file) => Incoming {
                file: Some(file),
                error: None,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start a temporary file for an incoming instance");
                Incoming {
                    file: None,
                    error: Some(e),
                }
            }
        }
    }

    async fn try_create(
        dir: Option<&Path>,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        transfer_syntax: &str,
    ) -> Result<(tempfile::TempPath, tokio::fs::File), String> {
        let header = part10_header(sop_class_uid, sop_instance_uid, transfer_syntax)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("yilian-dimse-").suffix(".dcm");
        let dir = match dir {
            Some(d) => tokio::fs::create_dir_all(d).await.ok().map(|_| d),
            None => None,
        };
        let named = match dir {
            Some(d) => builder.tempfile_in(d),
            None => builder.tempfile(),
        }
        .map_err(|e| format!("temporary file: {e}"))?;
        let (std_file, path) = named.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        file.write_all(&header)
            .await
            .map_err(|e| format!("temporary file: {e}"))?;
        Ok((path, file))
    }

    /// Appends data set bytes.
    pub async fn write(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Some((_, file)) = &mut self.file
            && let Err(e) = file.write_all(data).await
        {
            tracing::error!(error = %e, "writing an incoming instance to its temporary file");
            self.error = Some(format!("temporary file: {e}"));
        }
    }

    /// The complete Part 10 file (deleted when the returned path is dropped).
    pub async fn finish(self) -> Result<tempfile::TempPath, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let Some((path, mut file)) = self.file else {
            return Err("no temporary file".into());
        };
        file.flush()
            .await
            .map_err(|e| format!("temporary file: {e}"))?;
        drop(file);
        Ok(path)
    }
}

/// The outcome of one C-STORE, as the response carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    pub status: u16,
    pub comment: Option<String>,
}

impl StoreStatus {
    fn ok() -> Self {
        StoreStatus {
            status: status::SUCCESS,
            comment: None,
        }
    }
    fn fail(status: u16, comment: impl Into<String>) -> Self {
        StoreStatus {
            status,
            comment: Some(comment.into()),
        }
    }
}

/// C-STORE failure status for an ingest failure reason.
pub fn failure_status(reason: FailureReason) -> u16 {
    match reason {
        FailureReason::OutOfResources => status::OUT_OF_RESOURCES,
        FailureReason::CannotUnderstand => status::CANNOT_UNDERSTAND,
        FailureReason::StudyMismatch => status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        FailureReason::NotAuthorized => status::NOT_AUTHORIZED,
        // PS3.4 has no C-STORE status for "duplicate with other content": a Cxxx failure.
        FailureReason::DuplicateConflict => status::CANNOT_UNDERSTAND,
    }
}

fn from_failure(f: &Failure) -> StoreStatus {
    StoreStatus::fail(failure_status(f.reason), f.message.clone())
}

/// Hands a complete Part 10 file to the ingest use case, which consumes it. Success only once
/// ingest returned `Ok`, i.e. the instance is durable.
pub async fn ingest(hub: &Hub, who: &Principal, path: &Path) -> StoreStatus {
    match hub.store_instance_file(who, path).await {
        Ok(Ok(stored)) => {
            tracing::info!(duplicate = stored.duplicate, "instance stored");
            StoreStatus::ok()
        }
        Ok(Err(f)) => {
            tracing::info!(reason = ?f.reason, "instance refused");
            from_failure(&f)
        }
        Err(AppError::Forbidden(m)) => StoreStatus::fail(status::NOT_AUTHORIZED, m),
        Err(e) => {
            tracing::error!(error = %e, "ingest failed");
            StoreStatus::fail(
                status::OUT_OF_RESOURCES,
                "the hub could not store the instance now; retry later",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_a_valid_file_meta_group() {
        let mut file =
            part10_header("1.2.840.10008.5.1.4.1.1.7", "2.25.77", "1.2.840.10008.1.2").unwrap();
        assert_eq!(&file[128..132], b"DICM");
        let again =
            part10_header("1.2.840.10008.5.1.4.1.1.7", "2.25.77", "1.2.840.10008.1.2").unwrap();
        assert_eq!(file, again, "deterministic, so a re-send is a duplicate");
        // An (empty) implicit VR data set after it opens as DICOM with that meta.
        file.extend_from_slice(&[]);
        let obj = dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(std::io::Cursor::new(&file))
            .unwrap();
        assert_eq!(obj.meta().media_storage_sop_instance_uid(), "2.25.77");
        assert_eq!(
            obj.meta().transfer_syntax().trim_end_matches('\0'),
            "1.2.840.10008.1.2"
        );
    }

    #[test]
    fn failure_reasons_map_to_c_store_statuses() {
        assert_eq!(failure_status(FailureReason::OutOfResources), 0xA700);
        assert_eq!(failure_status(FailureReason::CannotUnderstand), 0xC000);
        assert_eq!(failure_status(FailureReason::StudyMismatch), 0xA900);
        assert_eq!(failure_status(FailureReason::NotAuthorized), 0x0124);
        assert_eq!(failure_status(FailureReason::DuplicateConflict), 0xC000);
    }
}
