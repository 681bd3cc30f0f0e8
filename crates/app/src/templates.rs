//! Structured report text: the exam's template (`[[report.templates]]` or the built-in ones), the
//! reader's text per section, the required-section check, and the legacy `findings`/`impression`
//! view that version 1 documents, verifiers and exporters read.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use yilian_config::ReportTemplate;

use crate::access::Principal;
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{ExamRecord, ReportRecord};
use yilian_domain::ExamId;

/// What the reader writes: text per section key, and/or the legacy `findings`/`impression` fields
/// (which fill the section keyed `findings` or else the first section, and the one keyed
/// `impression` or else the last). Findings describe the result; the impression is the conclusion.
#[derive(Clone, Debug, Default)]
pub struct ReportInput {
    pub findings: Option<String>,
    pub impression: Option<String>,
    pub sections: BTreeMap<String, String>,
}

impl ReportInput {
    /// The legacy body: findings and impression only.
    pub fn legacy(findings: impl Into<String>, impression: impl Into<String>) -> Self {
        ReportInput {
            findings: Some(findings.into()),
            impression: Some(impression.into()),
            sections: BTreeMap::new(),
        }
    }
}

/// One section's text as it is stored and signed: label in zh-CN (the document language).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionText {
    pub key: String,
    pub label: String,
    pub text: String,
}

/// A report's text laid out in its template.
#[derive(Clone, Debug)]
pub struct ComposedReport {
    pub template: ReportTemplate,
    pub sections: Vec<SectionText>,
}

impl ComposedReport {
    /// Lays `input` over `base` (a previous draft or version; `None`: start empty). Unknown keys are
    /// refused with a 400 naming them.
    pub fn compose(
        template: ReportTemplate,
        base: Option<&[SectionText]>,
        input: &ReportInput,
    ) -> Result<Self, AppError> {
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        for s in base.unwrap_or_default() {
            texts.insert(s.key.clone(), s.text.clone());
        }
        let keys: Vec<&str> = template.sections.iter().map(|s| s.key.as_str()).collect();
        let findings_key = keys
            .iter()
            .find(|k| **k == "findings")
            .or(keys.first())
            .map(|k| k.to_string());
        let impression_key = keys
            .iter()
            .find(|k| **k == "impression")
            .or(keys.last())
            .map(|k| k.to_string());
        if let (Some(t), Some(k)) = (&input.findings, &findings_key) {
            texts.insert(k.clone(), t.clone());
        }
        if let (Some(t), Some(k)) = (&input.impression, &impression_key) {
            texts.insert(k.clone(), t.clone());
        }
        let unknown: Vec<&str> = input
            .sections
            .keys()
            .filter(|k| !keys.contains(&k.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(AppError::Invalid(format!(
                "template {} has no section {}; its sections are {}",
                template.id,
                unknown.join(", "),
                keys.join(", ")
            )));
        }
        for (k, t) in &input.sections {
            texts.insert(k.clone(), t.clone());
        }
        let sections = template
            .sections
            .iter()
            .map(|s| SectionText {
                key: s.key.clone(),
                label: s.label_zh.clone(),
                text: texts.get(&s.key).cloned().unwrap_or_default(),
            })
            .collect();
        Ok(ComposedReport { template, sections })
    }

    /// 400 naming every required section that is empty.
    pub fn check_required(&self, what: &str) -> Result<(), AppError> {
        let missing: Vec<String> = self
            .template
            .sections
            .iter()
            .zip(&self.sections)
            .filter(|(def, s)| def.required && s.text.trim().is_empty())
            .map(|(def, _)| format!("{} ({})", def.key, def.label_zh))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(AppError::Invalid(format!(
                "required sections are empty before the report is {what}: {}",
                missing.join(", ")
            )))
        }
    }

    fn text_of(&self, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|s| s.key == key)
            .map(|s| s.text.as_str())
    }

    /// The legacy findings: the `findings` section, else every section but the last, joined.
    pub fn findings(&self) -> String {
        if let Some(t) = self.text_of("findings") {
            return t.to_string();
        }
        let n = self.sections.len().saturating_sub(1);
        self.sections[..n]
            .iter()
            .filter(|s| !s.text.trim().is_empty())
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The legacy impression: the `impression` section, else the last section.
    pub fn impression(&self) -> String {
        match self.text_of("impression") {
            Some(t) => t.to_string(),
            None => self
                .sections
                .last()
                .map(|s| s.text.clone())
                .unwrap_or_default(),
        }
    }

    /// The ordered `sections` array of the signed document and the catalog.
    pub fn sections_json(&self) -> Value {
        Value::Array(
            self.sections
                .iter()
                .map(|s| json!({ "key": s.key, "label": s.label, "text": s.text }))
                .collect(),
        )
    }
}

/// The sections a stored report or draft holds: its `sections` JSON, or for a report from before
/// templates its findings and impression laid into the template.
pub fn stored_sections(r: &ReportRecord, template: &ReportTemplate) -> Vec<SectionText> {
    if let Some(list) = r
        .sections
        .as_deref()
        .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok())
    {
        return list
            .iter()
            .map(|v| SectionText {
                key: v["key"].as_str().unwrap_or_default().to_string(),
                label: v["label"].as_str().unwrap_or_default().to_string(),
                text: v["text"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
    }
    ComposedReport::compose(
        template.clone(),
        None,
        &ReportInput::legacy(r.findings.clone(), r.impression.clone()),
    )
    .map(|c| c.sections)
    .unwrap_or_default()
}

impl Hub {
    /// The template an exam's report is written in.
    pub fn template_of(&self, exam: &ExamRecord) -> Result<ReportTemplate, AppError> {
        self.config
            .report
            .template_for(exam.kind.as_str(), &exam.modality)
            .ok_or_else(|| {
                AppError::Invalid(format!(
                    "no report template for {} exams",
                    exam.kind.as_str()
                ))
            })
    }

    /// `GET /api/v1/exams/{id}/report/template`: for readers of the exam's pool. Audited.
    pub async fn exam_template(
        &self,
        who: &Principal,
        exam_id: &ExamId,
    ) -> Result<ReportTemplate, AppError> {
        let exam = self.exam_for_reader(who, exam_id).await?;
        let template = self.template_of(&exam)?;
        self.audit(
            who,
            "report.template.read",
            "exam",
            exam_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            template.id.clone(),
        )
        .await?;
        Ok(template)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use yilian_config::ReportConfig;

    fn ecg() -> ReportTemplate {
        ReportConfig::default().template_for("ecg", "ECG").unwrap()
    }

    #[test]
    fn legacy_fields_fill_the_first_and_last_sections_of_an_ecg_template() {
        let c =
            ComposedReport::compose(ecg(), None, &ReportInput::legacy("窦性心律", "正常心电图"))
                .unwrap();
        assert_eq!(c.sections[0].text, "窦性心律");
        assert_eq!(c.sections[1].text, "");
        assert_eq!(c.sections[2].text, "正常心电图");
        assert_eq!(c.findings(), "窦性心律");
        assert_eq!(c.impression(), "正常心电图");
        c.check_required("signed").unwrap();
    }

    #[test]
    fn sections_override_a_base_and_unknown_keys_are_refused() {
        let base =
            ComposedReport::compose(ecg(), None, &ReportInput::legacy("窦性心律", "正常")).unwrap();
        let mut input = ReportInput::default();
        input
            .sections
            .insert("interpretation".into(), "窦性心动过缓".into());
        let c = ComposedReport::compose(ecg(), Some(&base.sections), &input).unwrap();
        assert_eq!(c.sections[0].text, "窦性心律");
        assert_eq!(c.impression(), "窦性心动过缓");
        input.sections.insert("findings".into(), "x".into());
        let err = ComposedReport::compose(ecg(), None, &input).unwrap_err();
        assert!(err.to_string().contains("findings"), "{err}");
    }

    #[test]
    fn empty_required_sections_are_named() {
        let mut input = ReportInput::default();
        input
            .sections
            .insert("measurements".into(), "PR 160 ms".into());
        let c = ComposedReport::compose(ecg(), None, &input).unwrap();
        let err = c.check_required("signed").unwrap_err().to_string();
        assert!(
            err.contains("rhythm (心律)") && err.contains("interpretation (心电图诊断)"),
            "{err}"
        );
        assert!(!err.contains("measurements"), "{err}");
    }
}
