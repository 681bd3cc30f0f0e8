//! DICOM ECG waveform objects (12-lead, General, Ambulatory ECG; PS3.3 C.10.9) ↔ `EcgRecord`:
//! the reader picks the rhythm multiplex group and scales samples to µV; the writer files any record
//! as a DICOM instance (how the hub stores aECG and SCP-ECG uploads).

use std::borrow::Cow;

use dicom_core::header::HasLength;
use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use yilian_domain::ecg::{
    EcgDevice, EcgRecord, EcgSourceFormat, EcgSubject, GlobalMeasurements, Lead, LeadTrace,
    LocalDateTime, MAX_SAMPLES_PER_LEAD,
};

use super::{
    EcgError, GENERAL_ECG_SOP_CLASS, Measure, TWELVE_LEAD_ECG_SOP_CLASS, is_ecg_waveform_sop_class,
    microvolts_per,
};

const FORMAT: &str = "DICOM waveform";

/// The identifiers a DICOM instance needs that an ECG record does not carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcgDicomIds {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    pub patient_id: String,
    pub issuer_of_patient_id: Option<String>,
    pub accession_number: Option<String>,
    pub institution_name: Option<String>,
    pub study_description: Option<String>,
}

/// Reads an ECG waveform data set (the file meta group is not needed).
pub fn from_dicom(obj: &InMemDicomObject) -> Result<EcgRecord, EcgError> {
    if let Some(class) = text(obj, tags::SOP_CLASS_UID)
        && !is_ecg_waveform_sop_class(&class)
    {
        return Err(EcgError::NotEcgWaveform(class));
    }
    let groups = items(obj, tags::WAVEFORM_SEQUENCE);
    if groups.is_empty() {
        return Err(EcgError::Missing {
            format: FORMAT,
            what: "WaveformSequence",
        });
    }
    let has_channels = |g: &&InMemDicomObject| {
        uint(
            g,
            tags::NUMBER_OF_WAVEFORM_CHANNELS,
            "NumberOfWaveformChannels",
        )
        .ok()
        .flatten()
        .is_some_and(|n| n >= 1)
    };
    let group = groups
        .iter()
        .find(|g| {
            text(g, tags::MULTIPLEX_GROUP_LABEL).is_some_and(|l| l.eq_ignore_ascii_case("RHYTHM"))
        })
        .or_else(|| groups.iter().find(has_channels))
        .ok_or(EcgError::NoWaveformGroup)?;
    let (sample_rate_hz, leads) = read_group(group)?;

    let record = EcgRecord {
        source: EcgSourceFormat::DicomWaveform,
        sample_rate_hz,
        leads,
        acquired_at: acquired_at(obj),
        device: EcgDevice {
            manufacturer: text(obj, tags::MANUFACTURER),
            model: text(obj, tags::MANUFACTURER_MODEL_NAME),
            serial_number: text(obj, tags::DEVICE_SERIAL_NUMBER),
            software_version: text(obj, tags::SOFTWARE_VERSIONS),
        },
        subject: EcgSubject {
            patient_id: text(obj, tags::PATIENT_ID),
            patient_name: text(obj, tags::PATIENT_NAME),
            birth_date: text(obj, tags::PATIENT_BIRTH_DATE),
            sex: text(obj, tags::PATIENT_SEX),
        },
        device_measurements: measurements(obj)?,
        interpretation: interpretation(obj),
    };
    record.validate()?;
    Ok(record)
}

/// Reads a DICOM Part 10 file holding an ECG waveform object. Declared lengths are checked before
/// dicom-object allocates (see `crate::lengths`).
pub fn from_dicom_bytes(part10: &[u8]) -> Result<EcgRecord, EcgError> {
    let obj = super::guarded(|| {
        crate::dicom::open(part10).map_err(|e| EcgError::DicomUnreadable(e.to_string()))
    })?;
    from_dicom(&obj)
}

fn read_group(group: &InMemDicomObject) -> Result<(f64, Vec<LeadTrace>), EcgError> {
    let declared = uint(
        group,
        tags::NUMBER_OF_WAVEFORM_CHANNELS,
        "NumberOfWaveformChannels",
    )?
    .ok_or(EcgError::Missing {
        format: FORMAT,
        what: "NumberOfWaveformChannels",
    })?;
    let channels = items(group, tags::CHANNEL_DEFINITION_SEQUENCE);
    if declared != channels.len() as u64 {
        return Err(EcgError::ChannelCountMismatch {
            declared,
            defined: channels.len(),
        });
    }
    if channels.is_empty() {
        return Err(EcgError::NoWaveformGroup);
    }
    let samples = uint(
        group,
        tags::NUMBER_OF_WAVEFORM_SAMPLES,
        "NumberOfWaveformSamples",
    )?
    .ok_or(EcgError::Missing {
        format: FORMAT,
        what: "NumberOfWaveformSamples",
    })?;
    if samples > MAX_SAMPLES_PER_LEAD as u64 {
        return Err(EcgError::TooManySamples {
            format: FORMAT,
            count: samples,
        });
    }
    let rate =
        float(group, tags::SAMPLING_FREQUENCY, "SamplingFrequency")?.ok_or(EcgError::Missing {
            format: FORMAT,
            what: "SamplingFrequency",
        })?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(EcgError::Invalid {
            format: FORMAT,
            what: "SamplingFrequency",
            value: rate.to_string(),
        });
    }
    let bits = uint(
        group,
        tags::WAVEFORM_BITS_ALLOCATED,
        "WaveformBitsAllocated",
    )?
    .ok_or(EcgError::Missing {
        format: FORMAT,
        what: "WaveformBitsAllocated",
    })?;
    let interp = text(group, tags::WAVEFORM_SAMPLE_INTERPRETATION).ok_or(EcgError::Missing {
        format: FORMAT,
        what: "WaveformSampleInterpretation",
    })?;
    let kind = SampleKind::of(bits, &interp)?;
    let data = group
        .get(tags::WAVEFORM_DATA)
        .ok_or(EcgError::Missing {
            format: FORMAT,
            what: "WaveformData",
        })?
        .value()
        .primitive()
        .map(le_bytes)
        .ok_or(EcgError::Invalid {
            format: FORMAT,
            what: "WaveformData",
            value: "a sequence".into(),
        })?;
    let width = kind.width();
    let expected = declared
        .checked_mul(samples)
        .and_then(|n| n.checked_mul(width))
        .ok_or(EcgError::TooManySamples {
            format: FORMAT,
            count: samples,
        })?;
    // An odd byte count is padded to even length on the wire.
    let found = data.len() as u64;
    if found != expected && !(expected % 2 == 1 && found == expected + 1) {
        return Err(EcgError::DataLengthMismatch {
            found: data.len(),
            channels: declared,
            samples,
            bytes_per_sample: width,
            expected,
        });
    }

    let n = samples as usize;
    let stride = channels.len() * width as usize;
    let mut leads = Vec::with_capacity(channels.len());
    for (c, def) in channels.iter().enumerate() {
        let scale = ChannelScale::of(def)?;
        let lead = channel_lead(def, c);
        let offset = c * width as usize;
        let samples_uv = (0..n)
            .map(|s| {
                let at = s * stride + offset;
                let raw = data
                    .get(at..at + width as usize)
                    .map(|b| kind.decode(b))
                    .unwrap_or(0.0);
                scale.apply(raw)
            })
            .collect();
        leads.push(LeadTrace { lead, samples_uv });
    }
    Ok((rate, leads))
}

/// How samples are stored (PS3.3 C.10.9.1.5).
#[derive(Clone, Copy, Debug)]
enum SampleKind {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
}

impl SampleKind {
    fn of(bits: u64, interp: &str) -> Result<Self, EcgError> {
        Ok(match (bits, interp.trim()) {
            (8, "SB") => SampleKind::I8,
            (8, "UB") => SampleKind::U8,
            (16, "SS") => SampleKind::I16,
            (16, "US") => SampleKind::U16,
            (32, "SL") => SampleKind::I32,
            (32, "UL") => SampleKind::U32,
            (8 | 16 | 32, other) => {
                return Err(EcgError::Unsupported {
                    format: FORMAT,
                    feature: format!(
                        "WaveformSampleInterpretation {other} with {bits} bits allocated"
                    ),
                });
            }
            _ => {
                return Err(EcgError::Unsupported {
                    format: FORMAT,
                    feature: format!("WaveformBitsAllocated {bits} (8, 16 or 32 are read)"),
                });
            }
        })
    }

    fn width(self) -> u64 {
        match self {
            SampleKind::I8 | SampleKind::U8 => 1,
            SampleKind::I16 | SampleKind::U16 => 2,
            SampleKind::I32 | SampleKind::U32 => 4,
        }
    }

    /// `b` has exactly `width()` bytes, little endian.
    fn decode(self, b: &[u8]) -> f64 {
        let byte = |i: usize| b.get(i).copied().unwrap_or(0);
        match self {
            SampleKind::I8 => f64::from(byte(0) as i8),
            SampleKind::U8 => f64::from(byte(0)),
            SampleKind::I16 => f64::from(i16::from_le_bytes([byte(0), byte(1)])),
            SampleKind::U16 => f64::from(u16::from_le_bytes([byte(0), byte(1)])),
            SampleKind::I32 => f64::from(i32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)])),
            SampleKind::U32 => f64::from(u32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)])),
        }
    }
}

/// raw × ChannelSensitivity × ChannelSensitivityCorrectionFactor + ChannelBaseline, in the
/// sensitivity's units, then × µV per unit (PS3.3 C.10.9.1.4.3).
struct ChannelScale {
    sensitivity: f64,
    correction: f64,
    baseline: f64,
    uv_per_unit: f64,
}

impl ChannelScale {
    fn of(def: &InMemDicomObject) -> Result<Self, EcgError> {
        let sensitivity = float(def, tags::CHANNEL_SENSITIVITY, "ChannelSensitivity")?.ok_or(
            EcgError::Missing {
                format: FORMAT,
                what: "ChannelSensitivity (samples without a sensitivity have no physical unit)",
            },
        )?;
        let correction = float(
            def,
            tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR,
            "ChannelSensitivityCorrectionFactor",
        )?
        .unwrap_or(1.0);
        let baseline = float(def, tags::CHANNEL_BASELINE, "ChannelBaseline")?.unwrap_or(0.0);
        for (what, v) in [
            ("ChannelSensitivity", sensitivity),
            ("ChannelSensitivityCorrectionFactor", correction),
            ("ChannelBaseline", baseline),
        ] {
            if !v.is_finite() {
                return Err(EcgError::Invalid {
                    format: FORMAT,
                    what,
                    value: v.to_string(),
                });
            }
        }
        let unit = items(def, tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE)
            .first()
            .and_then(|u| text(u, tags::CODE_VALUE))
            .ok_or(EcgError::Missing {
                format: FORMAT,
                what: "ChannelSensitivityUnitsSequence code value",
            })?;
        let uv_per_unit = microvolts_per(&unit).ok_or(EcgError::UnknownUnit {
            format: FORMAT,
            what: "ChannelSensitivityUnitsSequence",
            unit,
            expected: "uV, mV or V",
        })?;
        Ok(ChannelScale {
            sensitivity,
            correction,
            baseline,
            uv_per_unit,
        })
    }

    fn apply(&self, raw: f64) -> f32 {
        ((raw * self.sensitivity * self.correction + self.baseline) * self.uv_per_unit) as f32
    }
}

/// The lead of a channel: MDC `2:n` or SCP-ECG `5.6.3-9-n` codes; any other code keeps its meaning
/// as the label.
fn channel_lead(def: &InMemDicomObject, index: usize) -> Lead {
    let source = items(def, tags::CHANNEL_SOURCE_SEQUENCE).first();
    let code = source.and_then(|s| text(s, tags::CODE_VALUE));
    let meaning = source.and_then(|s| text(s, tags::CODE_MEANING));
    code.as_deref()
        .and_then(|c| Lead::from_code(c, meaning.as_deref()))
        .unwrap_or_else(|| Lead::Other {
            number: 0,
            label: meaning
                .or(code)
                .unwrap_or_else(|| format!("channel {}", index + 1)),
        })
}

fn acquired_at(obj: &InMemDicomObject) -> Option<LocalDateTime> {
    let joined = |d: Tag, t: Tag| {
        let date = text(obj, d)?;
        Some(format!("{date}{}", text(obj, t).unwrap_or_default()))
    };
    [
        text(obj, tags::ACQUISITION_DATE_TIME),
        joined(tags::ACQUISITION_DATE, tags::ACQUISITION_TIME),
        joined(tags::CONTENT_DATE, tags::CONTENT_TIME),
    ]
    .into_iter()
    .flatten()
    .find_map(|s| LocalDateTime::parse_compact(&s))
}

fn measurements(obj: &InMemDicomObject) -> Result<GlobalMeasurements, EcgError> {
    let mut m = GlobalMeasurements::default();
    for item in items(obj, tags::WAVEFORM_ANNOTATION_SEQUENCE) {
        let Some(concept) = items(item, tags::CONCEPT_NAME_CODE_SEQUENCE).first() else {
            continue;
        };
        let measure = text(concept, tags::CODE_VALUE)
            .and_then(|c| Measure::from_code(&c))
            .or_else(|| text(concept, tags::CODE_MEANING).and_then(|c| Measure::from_meaning(&c)));
        let (Some(measure), Some(value)) =
            (measure, float(item, tags::NUMERIC_VALUE, "NumericValue")?)
        else {
            continue;
        };
        let unit = items(item, tags::MEASUREMENT_UNITS_CODE_SEQUENCE)
            .first()
            .and_then(|u| text(u, tags::CODE_VALUE))
            .unwrap_or_default();
        let v = measure
            .normalise(value, &unit)
            .ok_or(EcgError::UnknownUnit {
                format: FORMAT,
                what: measure.name(),
                unit,
                expected: measure.expected_units(),
            })?;
        let slot = measure.slot(&mut m);
        if slot.is_none() && v.is_finite() {
            *slot = Some(v);
        }
    }
    Ok(m)
}

fn interpretation(obj: &InMemDicomObject) -> Vec<String> {
    items(obj, tags::WAVEFORM_ANNOTATION_SEQUENCE)
        .iter()
        .filter_map(|i| text(i, tags::UNFORMATTED_TEXT_VALUE))
        .collect()
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

/// An absent or empty attribute is `None`; one that is present but not a number is an error.
fn float(obj: &InMemDicomObject, tag: Tag, what: &'static str) -> Result<Option<f64>, EcgError> {
    let Some(e) = obj.get(tag) else {
        return Ok(None);
    };
    if e.is_empty() {
        return Ok(None);
    }
    e.to_float64().map(Some).map_err(|_| EcgError::Invalid {
        format: FORMAT,
        what,
        value: e.to_str().map(Cow::into_owned).unwrap_or_default(),
    })
}

fn uint(obj: &InMemDicomObject, tag: Tag, what: &'static str) -> Result<Option<u64>, EcgError> {
    let Some(e) = obj.get(tag) else {
        return Ok(None);
    };
    if e.is_empty() {
        return Ok(None);
    }
    e.to_int::<u64>().map(Some).map_err(|_| EcgError::Invalid {
        format: FORMAT,
        what,
        value: e.to_str().map(Cow::into_owned).unwrap_or_default(),
    })
}

/// The value's bytes in little-endian order, whatever VR dicom-object decoded it as.
fn le_bytes(v: &PrimitiveValue) -> Vec<u8> {
    match v {
        PrimitiveValue::U8(b) => b.to_vec(),
        PrimitiveValue::U16(w) => w.iter().flat_map(|x| x.to_le_bytes()).collect(),
        PrimitiveValue::I16(w) => w.iter().flat_map(|x| x.to_le_bytes()).collect(),
        PrimitiveValue::U32(w) => w.iter().flat_map(|x| x.to_le_bytes()).collect(),
        PrimitiveValue::I32(w) => w.iter().flat_map(|x| x.to_le_bytes()).collect(),
        other => other.to_bytes().into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

/// The 12-lead ECG IOD's limits (PS3.3 A.34.3.4): at most 12 channels, 200–1000 Hz, ≤ 16384 samples.
fn fits_twelve_lead(record: &EcgRecord) -> bool {
    record.leads.len() <= 12
        && (200.0..=1000.0).contains(&record.sample_rate_hz)
        && record.samples_per_lead() <= 16_384
}

/// The most channels in a General ECG multiplex group (PS3.3 A.34.4.4).
const GENERAL_ECG_MAX_CHANNELS: usize = 24;

/// Writes a record as a DICOM Part 10 file (explicit VR little endian): 12-lead ECG Waveform Storage
/// when it fits that IOD, else General ECG. One RHYTHM multiplex group of SS samples whose
/// ChannelSensitivity keeps the largest sample within i16 (1 µV per unit whenever that fits);
/// device measurements and interpretation become WaveformAnnotationSequence items, so
/// `from_dicom_bytes(to_dicom(r))` gives `r` back up to quantisation.
pub fn to_dicom(record: &EcgRecord, ids: &EcgDicomIds) -> Result<Vec<u8>, EcgError> {
    record.validate()?;
    if record.leads.len() > GENERAL_ECG_MAX_CHANNELS {
        return Err(EcgError::Write(format!(
            "{} leads do not fit one ECG multiplex group (at most {GENERAL_ECG_MAX_CHANNELS})",
            record.leads.len()
        )));
    }
    let n = record.samples_per_lead();
    let n_u32 = u32::try_from(n).map_err(|_| EcgError::TooManySamples {
        format: FORMAT,
        count: n as u64,
    })?;
    let sop_class = if fits_twelve_lead(record) {
        TWELVE_LEAD_ECG_SOP_CLASS
    } else {
        GENERAL_ECG_SOP_CLASS
    };

    let mut elements = vec![
        el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        el(tags::SOP_CLASS_UID, VR::UI, sop_class),
        el(tags::SOP_INSTANCE_UID, VR::UI, ids.sop_uid.as_str()),
        el(tags::STUDY_INSTANCE_UID, VR::UI, ids.study_uid.as_str()),
        el(tags::SERIES_INSTANCE_UID, VR::UI, ids.series_uid.as_str()),
        el(tags::MODALITY, VR::CS, "ECG"),
        el(tags::PATIENT_ID, VR::LO, ids.patient_id.as_str()),
        el(tags::SERIES_NUMBER, VR::IS, "1"),
        el(tags::INSTANCE_NUMBER, VR::IS, "1"),
        el(tags::STUDY_ID, VR::SH, ""),
        el(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
        el(
            tags::PATIENT_NAME,
            VR::PN,
            record.subject.patient_name.as_deref().unwrap_or(""),
        ),
        el(
            tags::PATIENT_BIRTH_DATE,
            VR::DA,
            record.subject.birth_date.as_deref().unwrap_or(""),
        ),
        el(
            tags::PATIENT_SEX,
            VR::CS,
            record.subject.sex.as_deref().unwrap_or(""),
        ),
        el(
            tags::ACCESSION_NUMBER,
            VR::SH,
            ids.accession_number.as_deref().unwrap_or(""),
        ),
        el(
            tags::MANUFACTURER,
            VR::LO,
            record.device.manufacturer.as_deref().unwrap_or(""),
        ),
    ];
    let optional = [
        (
            tags::ISSUER_OF_PATIENT_ID,
            VR::LO,
            &ids.issuer_of_patient_id,
        ),
        (tags::INSTITUTION_NAME, VR::LO, &ids.institution_name),
        (tags::STUDY_DESCRIPTION, VR::LO, &ids.study_description),
        (tags::MANUFACTURER_MODEL_NAME, VR::LO, &record.device.model),
        (
            tags::DEVICE_SERIAL_NUMBER,
            VR::LO,
            &record.device.serial_number,
        ),
        (
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            &record.device.software_version,
        ),
    ];
    for (tag, vr, value) in optional {
        if let Some(v) = value {
            elements.push(el(tag, vr, v.as_str()));
        }
    }
    let (date, time) = match record.acquired_at {
        Some(t) => (
            format!("{:04}{:02}{:02}", t.year, t.month, t.day),
            format!("{:02}{:02}{:02}", t.hour, t.minute, t.second),
        ),
        None => (String::new(), String::new()),
    };
    elements.extend([
        el(tags::STUDY_DATE, VR::DA, date.as_str()),
        el(tags::STUDY_TIME, VR::TM, time.as_str()),
        el(tags::CONTENT_DATE, VR::DA, date.as_str()),
        el(tags::CONTENT_TIME, VR::TM, time.as_str()),
    ]);
    if record.acquired_at.is_some() {
        elements.push(el(
            tags::ACQUISITION_DATE_TIME,
            VR::DT,
            format!("{date}{time}"),
        ));
    }

    let (sensitivity_ds, sensitivity) = choose_sensitivity(record);
    let channel_defs: Vec<InMemDicomObject> = record
        .leads
        .iter()
        .map(|l| {
            InMemDicomObject::from_element_iter([
                seq(
                    tags::CHANNEL_SOURCE_SEQUENCE,
                    vec![code(
                        &format!("2:{}", l.lead.number()),
                        "MDC",
                        &lead_meaning(&l.lead),
                    )],
                ),
                el(tags::CHANNEL_SENSITIVITY, VR::DS, sensitivity_ds.as_str()),
                seq(
                    tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE,
                    vec![code("uV", "UCUM", "microvolt")],
                ),
                el(tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR, VR::DS, "1"),
                el(tags::CHANNEL_BASELINE, VR::DS, "0"),
                el(tags::CHANNEL_SAMPLE_SKEW, VR::DS, "0"),
                el(
                    tags::WAVEFORM_BITS_STORED,
                    VR::US,
                    PrimitiveValue::from(16u16),
                ),
            ])
        })
        .collect();
    let mut data = Vec::with_capacity(n * record.leads.len());
    for s in 0..n {
        for l in &record.leads {
            let v = l.samples_uv.get(s).copied().unwrap_or(0.0);
            let q = (f64::from(v) / sensitivity)
                .round()
                .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
            data.push(q as u16);
        }
    }
    let rate = format_ds(record.sample_rate_hz);
    let group = InMemDicomObject::from_element_iter([
        el(tags::MULTIPLEX_GROUP_TIME_OFFSET, VR::DS, "0"),
        el(tags::WAVEFORM_ORIGINALITY, VR::CS, "ORIGINAL"),
        el(
            tags::NUMBER_OF_WAVEFORM_CHANNELS,
            VR::US,
            PrimitiveValue::from(record.leads.len() as u16),
        ),
        el(
            tags::NUMBER_OF_WAVEFORM_SAMPLES,
            VR::UL,
            PrimitiveValue::from(n_u32),
        ),
        el(tags::SAMPLING_FREQUENCY, VR::DS, rate.as_str()),
        el(tags::MULTIPLEX_GROUP_LABEL, VR::SH, "RHYTHM"),
        seq(tags::CHANNEL_DEFINITION_SEQUENCE, channel_defs),
        el(
            tags::WAVEFORM_BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(16u16),
        ),
        el(tags::WAVEFORM_SAMPLE_INTERPRETATION, VR::CS, "SS"),
        el(
            tags::WAVEFORM_DATA,
            VR::OW,
            PrimitiveValue::U16(data.into()),
        ),
    ]);
    elements.push(seq(tags::WAVEFORM_SEQUENCE, vec![group]));
    let annotations = annotation_items(record);
    if !annotations.is_empty() {
        elements.push(seq(tags::WAVEFORM_ANNOTATION_SEQUENCE, annotations));
    }

    let file = InMemDicomObject::from_element_iter(elements)
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid("2.25.271828182845904523536")
                .implementation_version_name("YILIAN_ECG"),
        )
        .map_err(|e| EcgError::Write(e.to_string()))?;
    let mut out = Vec::new();
    file.write_all(&mut out)
        .map_err(|e| EcgError::Write(e.to_string()))?;
    Ok(out)
}

/// µV per stored unit: 1 when every sample fits i16, else the smallest step that fits the largest
/// sample. Returned as written (DS text) and as the value a reader will parse back from it.
fn choose_sensitivity(record: &EcgRecord) -> (String, f64) {
    let max = record
        .leads
        .iter()
        .flat_map(|l| l.samples_uv.iter())
        .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    if max <= f64::from(i16::MAX) - 1.0 {
        return ("1".into(), 1.0);
    }
    // A little headroom so rounding the DS text down cannot push the peak past i16.
    let ds = format_ds(max / 32_000.0);
    let parsed = ds.parse::<f64>().unwrap_or(1.0);
    (ds, parsed)
}

/// A decimal string that fits DS (16 characters).
fn format_ds(v: f64) -> String {
    for precision in (0..=6).rev() {
        let s = format!("{v:.precision$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.3e}")
}

fn lead_meaning(lead: &Lead) -> String {
    match lead {
        Lead::Other { label, .. } => label.clone(),
        l => format!("Lead {}", l.label()),
    }
}

/// The code each measurement is written with: MDC where its numeric code is in DICOM CID 3689 /
/// the MDC rate term, SCP-ECG codes (as carts write them) for QTc and the axes.
fn measurement_code(m: Measure) -> (&'static str, &'static str, &'static str, &'static str) {
    // (code value, scheme, meaning, UCUM unit)
    match m {
        Measure::HeartRate => ("2:16770", "MDC", "Heart Rate", "/min"),
        Measure::Rr => ("2:16000", "MDC", "RR Interval", "ms"),
        Measure::Pr => ("2:15872", "MDC", "PR Interval", "ms"),
        Measure::Qrs => ("2:16156", "MDC", "QRS Duration", "ms"),
        Measure::Qt => ("2:16160", "MDC", "QT Interval", "ms"),
        Measure::Qtc => ("5.10.2.5-5", "SCPECG", "QTc Interval", "ms"),
        Measure::PAxis => ("5.10.3-11", "SCPECG", "P Axis", "deg"),
        Measure::QrsAxis => ("5.10.3-13", "SCPECG", "QRS Axis", "deg"),
        Measure::TAxis => ("5.10.3-15", "SCPECG", "T Axis", "deg"),
    }
}

fn annotation_items(record: &EcgRecord) -> Vec<InMemDicomObject> {
    let all_channels = || {
        el(
            tags::REFERENCED_WAVEFORM_CHANNELS,
            VR::US,
            PrimitiveValue::U16([1u16, 0].as_slice().into()),
        )
    };
    let mut out: Vec<InMemDicomObject> = record
        .interpretation
        .iter()
        .map(|s| {
            InMemDicomObject::from_element_iter([
                all_channels(),
                el(
                    tags::ANNOTATION_GROUP_NUMBER,
                    VR::US,
                    PrimitiveValue::from(0u16),
                ),
                el(tags::UNFORMATTED_TEXT_VALUE, VR::ST, s.as_str()),
            ])
        })
        .collect();
    for m in Measure::ALL {
        let Some(v) = m.get(&record.device_measurements) else {
            continue;
        };
        let (value, scheme, meaning, unit) = measurement_code(m);
        let unit_meaning = match unit {
            "ms" => "millisecond",
            "deg" => "degree",
            _ => "per minute",
        };
        out.push(InMemDicomObject::from_element_iter([
            seq(
                tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
                vec![code(unit, "UCUM", unit_meaning)],
            ),
            seq(
                tags::CONCEPT_NAME_CODE_SEQUENCE,
                vec![code(value, scheme, meaning)],
            ),
            all_channels(),
            el(
                tags::ANNOTATION_GROUP_NUMBER,
                VR::US,
                PrimitiveValue::from(1u16),
            ),
            el(tags::NUMERIC_VALUE, VR::DS, format_ds(v)),
        ]));
    }
    out
}

fn el(tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, value.into())
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        el(tags::CODE_VALUE, VR::SH, value),
        el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        el(tags::CODE_MEANING, VR::LO, meaning),
    ])
}
