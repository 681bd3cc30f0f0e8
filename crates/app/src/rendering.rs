//! Rendered frames and thumbnails (DICOMweb `rendered` and `thumbnail`) for callers whose scope
//! includes the study. Decoding runs on tokio's blocking pool, never on the async executor;
//! results go through the render cache, and every access (hit or miss) is scope-checked and audited.

use bytes::Bytes;
use yilian_domain::{SeriesInstanceUid, SopInstanceUid, StudyInstanceUid};
use yilian_render::{RenderError, RenderOptions, Viewport, render};

use crate::access::Principal;
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{InstanceRecord, PortError, StudyRecord};
use crate::render_cache::RenderKey;

/// Side of the box a thumbnail fits in when the caller gives no viewport.
pub const THUMBNAIL_SIZE: u32 = 128;

/// What a thumbnail represents (PS3.18 thumbnail resources).
#[derive(Clone, Debug)]
pub enum ThumbnailOf {
    /// The middle image instance of the study by Instance Number.
    Study(StudyInstanceUid),
    /// The middle image instance of the series by Instance Number.
    Series(StudyInstanceUid, SeriesInstanceUid),
    /// The instance's middle frame.
    Instance(StudyInstanceUid, SeriesInstanceUid, SopInstanceUid),
    /// One frame, 0-based.
    Frame(StudyInstanceUid, SeriesInstanceUid, SopInstanceUid, u32),
}

/// The representative of a set of instances: the middle image by Instance Number (then SOP UID).
fn middle_image(mut instances: Vec<InstanceRecord>) -> Option<InstanceRecord> {
    instances.retain(|i| i.rows.is_some_and(|r| r > 0));
    instances.sort_by(|a, b| {
        (
            a.instance_number.is_none(),
            a.instance_number,
            &a.sop_instance_uid,
        )
            .cmp(&(
                b.instance_number.is_none(),
                b.instance_number,
                &b.sop_instance_uid,
            ))
    });
    let mid = instances.len().checked_sub(1)? / 2;
    instances.into_iter().nth(mid)
}

fn middle_frame(inst: &InstanceRecord) -> u32 {
    let frames = inst
        .number_of_frames
        .unwrap_or(1)
        .clamp(1, i64::from(u32::MAX));
    ((frames - 1) / 2) as u32
}

impl Hub {
    /// A rendered frame (PNG/JPEG) of an instance in scope.
    pub async fn render_instance(
        &self,
        who: &Principal,
        study_uid: &StudyInstanceUid,
        series_uid: &SeriesInstanceUid,
        sop: &SopInstanceUid,
        opts: RenderOptions,
    ) -> Result<Bytes, AppError> {
        let (study, inst) = self
            .instance_in_scope(who, study_uid, series_uid, sop)
            .await?;
        self.render_checked(who, &study, &inst, opts, "rendered")
            .await
    }

    /// A small representative image: `opts.frame` is replaced by the representative frame and
    /// the viewport defaults to [`THUMBNAIL_SIZE`] square.
    pub async fn render_thumbnail(
        &self,
        who: &Principal,
        of: &ThumbnailOf,
        opts: RenderOptions,
    ) -> Result<Bytes, AppError> {
        let (study, inst, frame) = match of {
            ThumbnailOf::Study(study_uid) => {
                let study = self.study_in_scope(who, study_uid).await?;
                let inst = middle_image(self.catalog.study_instances(study_uid).await?)
                    .ok_or(AppError::NotFound("image in this study"))?;
                let frame = middle_frame(&inst);
                (study, inst, frame)
            }
            ThumbnailOf::Series(study_uid, series_uid) => {
                let study = self.study_in_scope(who, study_uid).await?;
                let in_series: Vec<InstanceRecord> = self
                    .catalog
                    .study_instances(study_uid)
                    .await?
                    .into_iter()
                    .filter(|i| &i.series_uid == series_uid)
                    .collect();
                if in_series.is_empty() {
                    return Err(AppError::NotFound("series"));
                }
                let inst =
                    middle_image(in_series).ok_or(AppError::NotFound("image in this series"))?;
                let frame = middle_frame(&inst);
                (study, inst, frame)
            }
            ThumbnailOf::Instance(study_uid, series_uid, sop) => {
                let (study, inst) = self
                    .instance_in_scope(who, study_uid, series_uid, sop)
                    .await?;
                let frame = middle_frame(&inst);
                (study, inst, frame)
            }
            ThumbnailOf::Frame(study_uid, series_uid, sop, frame) => {
                let (study, inst) = self
                    .instance_in_scope(who, study_uid, series_uid, sop)
                    .await?;
                (study, inst, *frame)
            }
        };
        let opts = RenderOptions {
            frame,
            viewport: opts
                .viewport
                .or(Some(Viewport::fit(THUMBNAIL_SIZE, THUMBNAIL_SIZE))),
            ..opts
        };
        self.render_checked(who, &study, &inst, opts, "thumbnail")
            .await
    }

    /// Renders (or finds in the cache) and audits. The caller has checked scope.
    async fn render_checked(
        &self,
        who: &Principal,
        study: &StudyRecord,
        inst: &InstanceRecord,
        opts: RenderOptions,
        what: &str,
    ) -> Result<Bytes, AppError> {
        let key = RenderKey {
            sop_instance_uid: inst.sop_instance_uid.clone(),
            options: opts,
        };
        let (image, cached) = match self.render_cache.get(&key) {
            Some(image) => (image, true),
            None => {
                let bytes = self.checked_blob(inst).await?;
                let image = tokio::task::spawn_blocking(move || decode_and_render(&bytes, &opts))
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "render task did not finish");
                        PortError::Unavailable("rendering was interrupted".into())
                    })??;
                let image = Bytes::from(image);
                self.render_cache.insert(key, image.clone());
                (image, false)
            }
        };
        self.audit(
            who,
            "dicom.render",
            "instance",
            inst.sop_instance_uid.as_str(),
            Some(&study.patient_key),
            "ok",
            format!(
                "{what} frame {}{}",
                u64::from(opts.frame) + 1,
                if cached { " (cached)" } else { "" }
            ),
        )
        .await?;
        Ok(image)
    }
}

fn decode_and_render(bytes: &[u8], opts: &RenderOptions) -> Result<Vec<u8>, AppError> {
    let obj = yilian_formats::dicom::open(bytes).map_err(|e| PortError::Corrupt(e.to_string()))?;
    render(&obj, opts).map_err(|e: RenderError| {
        if e.is_bad_request() {
            AppError::Invalid(e.to_string())
        } else {
            AppError::Invalid(format!("this instance cannot be rendered: {e}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_domain::{SopClassUid, UnixMillis, Username};

    fn inst(
        sop: &str,
        number: Option<i64>,
        rows: Option<i64>,
        frames: Option<i64>,
    ) -> InstanceRecord {
        InstanceRecord {
            sop_instance_uid: SopInstanceUid::new(sop).unwrap(),
            sop_class_uid: SopClassUid::new("1.2.840.10008.5.1.4.1.1.2").unwrap(),
            series_uid: SeriesInstanceUid::new("1.2.3").unwrap(),
            study_uid: StudyInstanceUid::new("1.2").unwrap(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            instance_number: number,
            rows,
            columns: rows,
            number_of_frames: frames,
            size_bytes: 0,
            sha256: String::new(),
            blob_key: String::new(),
            received_at: UnixMillis(0),
            received_by: Username::new("t").unwrap(),
        }
    }

    #[test]
    fn the_representative_is_the_middle_image_by_instance_number() {
        let picked = middle_image(vec![
            inst("1.9", Some(3), Some(64), None),
            inst("1.8", Some(1), Some(64), None),
            inst("1.7", Some(2), Some(64), None),
            // Not an image (a report): never picked, not counted.
            inst("1.6", Some(2), None, None),
        ])
        .unwrap();
        assert_eq!(picked.sop_instance_uid.as_str(), "1.7");
        // Even count: the lower middle; missing numbers sort last.
        let picked = middle_image(vec![
            inst("1.4", None, Some(64), None),
            inst("1.3", Some(5), Some(64), None),
            inst("1.2", Some(9), Some(64), None),
            inst("1.1", Some(7), Some(64), None),
        ])
        .unwrap();
        assert_eq!(picked.sop_instance_uid.as_str(), "1.1");
        assert!(middle_image(vec![inst("1.6", Some(1), None, None)]).is_none());
    }

    #[test]
    fn the_representative_frame_is_the_middle_one() {
        assert_eq!(middle_frame(&inst("1.1", None, Some(8), None)), 0);
        assert_eq!(middle_frame(&inst("1.1", None, Some(8), Some(1))), 0);
        assert_eq!(middle_frame(&inst("1.1", None, Some(8), Some(3))), 1);
        assert_eq!(middle_frame(&inst("1.1", None, Some(8), Some(10))), 4);
    }
}
