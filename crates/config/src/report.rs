//! Report templates (`[[report.templates]]`): per exam kind (imaging, optionally per modality; ECG) the
//! ordered sections a reader fills in. Built-in defaults apply to every kind the file does not cover.
//! (The lab template is the lab sign-off's review comment, `POST /api/v1/lab/panels/{id}/sign`.)

use std::collections::HashSet;

use serde::Deserialize;

use crate::{ConfigError, invalid};

/// `[report]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Configured templates; looked up before the built-in ones.
    pub templates: Vec<ReportTemplate>,
}

/// One template: which exams it is for and its sections in order.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReportTemplate {
    /// Named in every signed report made from it (`template`).
    pub id: String,
    /// `imaging` or `ecg`.
    pub kind: String,
    /// For imaging: only exams of this modality (absent: every modality without its own template).
    #[serde(default)]
    pub modality: Option<String>,
    pub sections: Vec<ReportSection>,
}

/// One section of a template.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// Lower-case ASCII letters, digits and `_`; the key in request bodies.
    pub key: String,
    pub label_zh: String,
    pub label_en: String,
    /// A report is not signed (or submitted for review) while a required section is empty.
    #[serde(default)]
    pub required: bool,
}

fn section(key: &str, zh: &str, en: &str, required: bool) -> ReportSection {
    ReportSection {
        key: key.into(),
        label_zh: zh.into(),
        label_en: en.into(),
        required,
    }
}

/// The built-in templates: imaging 所见/诊断意见/建议, ECG 心律/测量/心电图诊断.
pub fn default_templates() -> Vec<ReportTemplate> {
    vec![
        ReportTemplate {
            id: "imaging".into(),
            kind: "imaging".into(),
            modality: None,
            sections: vec![
                section("findings", "所见", "Findings", true),
                section("impression", "诊断意见", "Impression", true),
                section("recommendations", "建议", "Recommendations", false),
            ],
        },
        ReportTemplate {
            id: "ecg".into(),
            kind: "ecg".into(),
            modality: None,
            sections: vec![
                section("rhythm", "心律", "Rhythm", true),
                section("measurements", "测量", "Measurements", false),
                section("interpretation", "心电图诊断", "Interpretation", true),
            ],
        },
    ]
}

impl ReportConfig {
    /// The template for an exam of `kind` (`imaging`, `ecg`) and `modality`: a configured one for the
    /// modality, else a configured one for the kind, else the built-in one.
    pub fn template_for(&self, kind: &str, modality: &str) -> Option<ReportTemplate> {
        let defaults = default_templates();
        let all = self.templates.iter().chain(defaults.iter());
        let mut kind_only = None;
        for t in all {
            if t.kind != kind {
                continue;
            }
            match &t.modality {
                Some(m) if m.eq_ignore_ascii_case(modality) => return Some(t.clone()),
                Some(_) => {}
                None => {
                    if kind_only.is_none() {
                        kind_only = Some(t.clone());
                    }
                }
            }
        }
        kind_only
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let mut ids = HashSet::new();
        let mut scopes = HashSet::new();
        for (i, t) in self.templates.iter().enumerate() {
            let at = format!("report.templates[{i}]");
            if t.id.trim().is_empty() || !ids.insert(t.id.as_str()) {
                return Err(invalid(
                    format!("{at}.id"),
                    format!("{:?} is empty or names another template too", t.id),
                ));
            }
            if t.kind != "imaging" && t.kind != "ecg" {
                return Err(invalid(
                    format!("{at}.kind"),
                    format!(
                        "{:?} is not imaging or ecg (the lab template is the sign-off comment)",
                        t.kind
                    ),
                ));
            }
            if let Some(m) = &t.modality
                && (m.trim().is_empty() || t.kind != "imaging")
            {
                return Err(invalid(
                    format!("{at}.modality"),
                    "only an imaging template names a modality, and not an empty one",
                ));
            }
            let scope = (
                t.kind.clone(),
                t.modality.as_deref().map(str::to_ascii_uppercase),
            );
            if !scopes.insert(scope) {
                return Err(invalid(
                    format!("{at}.modality"),
                    "another template covers the same kind and modality",
                ));
            }
            if t.sections.is_empty() {
                return Err(invalid(
                    format!("{at}.sections"),
                    "a template needs sections",
                ));
            }
            let mut keys = HashSet::new();
            for (j, s) in t.sections.iter().enumerate() {
                let sat = format!("{at}.sections[{j}]");
                let well_formed = !s.key.is_empty()
                    && s.key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !well_formed || !keys.insert(s.key.as_str()) {
                    return Err(invalid(
                        format!("{sat}.key"),
                        format!(
                            "{:?} must be lower-case letters, digits or _ and unique in its template",
                            s.key
                        ),
                    ));
                }
                if s.label_zh.trim().is_empty() {
                    return Err(invalid(format!("{sat}.label_zh"), "must not be empty"));
                }
                if s.label_en.trim().is_empty() {
                    return Err(invalid(format!("{sat}.label_en"), "must not be empty"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Result<ReportConfig, String> {
        let c: ReportConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn built_in_templates_cover_imaging_and_ecg() {
        let c = ReportConfig::default();
        let ct = c.template_for("imaging", "CT").unwrap();
        let keys: Vec<_> = ct.sections.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["findings", "impression", "recommendations"]);
        let ecg = c.template_for("ecg", "ECG").unwrap();
        assert_eq!(ecg.id, "ecg");
        assert_eq!(ecg.sections[0].label_zh, "心律");
        assert!(c.template_for("lab", "LAB").is_none());
    }

    #[test]
    fn a_modality_template_wins_over_the_kind_template() {
        let c = parse(
            r#"
            [[templates]]
            id = "us"
            kind = "imaging"
            modality = "US"
            sections = [{ key = "findings", label_zh = "超声所见", label_en = "Findings", required = true }]
            "#,
        )
        .unwrap();
        assert_eq!(c.template_for("imaging", "us").unwrap().id, "us");
        assert_eq!(c.template_for("imaging", "CT").unwrap().id, "imaging");
    }

    #[test]
    fn bad_templates_are_named_by_key() {
        let cases = [
            (
                r#"[[templates]]
                id = "x"
                kind = "lab"
                sections = [{ key = "a", label_zh = "甲", label_en = "A" }]"#,
                "report.templates[0].kind",
            ),
            (
                r#"[[templates]]
                id = "x"
                kind = "ecg"
                sections = [{ key = "A b", label_zh = "甲", label_en = "A" }]"#,
                "report.templates[0].sections[0].key",
            ),
            (
                r#"[[templates]]
                id = "x"
                kind = "ecg"
                sections = [{ key = "a", label_zh = " ", label_en = "A" }]"#,
                "report.templates[0].sections[0].label_zh",
            ),
            (
                r#"[[templates]]
                id = "x"
                kind = "ecg"
                sections = []"#,
                "report.templates[0].sections",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with(key), "{err} should name {key}");
        }
        assert!(
            parse(
                r#"[[templates]]
                id = "x"
                kind = "ecg"
                colour = "red"
                sections = [{ key = "a", label_zh = "甲", label_en = "A" }]"#
            )
            .unwrap_err()
            .contains("colour")
        );
    }
}
