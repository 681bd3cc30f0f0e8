//! Lab results out (FHIR R4 read API, `/fhir/r4`): member hospitals' clinicians and readers search and
//! read `Patient`, `DiagnosticReport` and `Observation`. Only published panels (released or
//! auto-released) are shown, and of each order only the newest published report; each report and
//! result carries its mutual-recognition decision (`policy::recognise_lab` over `[[lab.qc]]` and
//! `[recognition]`). Every search and read is audited with the patient key before the answer leaves.
//!
//! The catalog narrows by patient, order number, code value and collection time; what a token's system
//! adds (`code=http://loinc.org|2823-3`, `identifier=urn:yilian:filler:X|FO-1`) is checked here on the
//! built resources, so a system matches exactly what the API shows.

use std::collections::BTreeSet;

use serde_json::Value;
use yilian_domain::lab::PanelStatus;
use yilian_domain::{LabPanelId, LocalPatientId, PatientKey, ResidentId, UnixMillis};
use yilian_formats::fhir_lab::out::{
    self, FhirBase, PatientInput, Recognition, ReportInput, SearchMode,
};
use yilian_formats::fhir_lab::search::{
    LabSearch, SearchError, SearchResource, Token, parse_search,
};
use yilian_formats::report_export::ReportExport;
use yilian_formats::report_fhir;
use yilian_policy::{
    LabRecognition, LabRecognitionFacts, NewerReport, RecognitionDecision, recognise_lab,
};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{LabPanelRecord, PublishedLabPanel, PublishedLabQuery};

/// The most reports one search reads; past it the answer says so (an `OperationOutcome` entry).
pub const MAX_FHIR_REPORTS: usize = 1_000;

const SEARCH: &str = "lab.fhir.search";
const READ: &str = "lab.fhir.read";

impl From<SearchError> for AppError {
    fn from(e: SearchError) -> Self {
        AppError::Invalid(e.to_string())
    }
}

/// A shown panel with its recognition, ready to be spelled in FHIR.
struct Shown {
    panel: PublishedLabPanel,
    patient_id: String,
    recognition: LabRecognition,
    report: Recognition,
    results: Vec<Recognition>,
}

fn to_fhir(d: &RecognitionDecision, eqa: Option<String>) -> Recognition {
    Recognition {
        recognised: d.recognised,
        scope: d.scope.clone(),
        valid_until: d.valid_until,
        eqa,
        reasons: d.reasons.clone(),
    }
}

/// A published lab report as the JSON look-up (`GET /api/v1/results`) shows it: the newest published
/// report of its order, with its recognition.
#[derive(Clone, Debug)]
pub struct LabResultView {
    pub record: LabPanelRecord,
    /// The performing lab's site, for people.
    pub site_name: Option<String>,
    pub recognition: LabRecognition,
}

/// Whether any `coding` of `concept` satisfies any token (no tokens: yes).
fn codes_match(concept: &Value, tokens: &[Token]) -> bool {
    tokens.is_empty()
        || concept["coding"].as_array().is_some_and(|codings| {
            codings.iter().any(|c| {
                let code = c["code"].as_str().unwrap_or_default();
                tokens.iter().any(|t| t.matches(c["system"].as_str(), code))
            })
        })
}

/// Whether any identifier of the resource satisfies the token.
fn identifier_matches(resource: &Value, token: &Token) -> bool {
    resource["identifier"].as_array().is_some_and(|ids| {
        ids.iter().any(|i| {
            token.matches(
                i["system"].as_str(),
                i["value"].as_str().unwrap_or_default(),
            )
        })
    })
}

/// Whether any `category` of the report satisfies any token (no tokens: yes).
fn categories_match(report: &Value, tokens: &[Token]) -> bool {
    tokens.is_empty()
        || report["category"]
            .as_array()
            .is_some_and(|cats| cats.iter().any(|c| codes_match(c, tokens)))
}

/// The parameter names of a search, for the audit row (never their values).
fn param_names(params: &[(String, String)]) -> String {
    let names: BTreeSet<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

impl Hub {
    /// Where the API's URLs start: `server.public_url` + `/fhir/r4` for full URLs (relative when no
    /// public URL is configured); the hub's address when not, for its definitions.
    pub fn fhir_base(&self) -> FhirBase {
        FhirBase {
            full_url: self
                .config
                .server
                .public_url
                .as_deref()
                .map(|u| format!("{}/fhir/r4", u.trim_end_matches('/'))),
            definitions: format!("{}/fhir/r4", self.config.public_url()),
            default_offset_minutes: self.offset(),
        }
    }

    fn offset(&self) -> i16 {
        i16::try_from(self.config.alliance.utc_offset_minutes).unwrap_or(480)
    }

    /// The CapabilityStatement. Any authenticated caller may read it: it holds no patient data.
    pub fn fhir_capability(&self, _who: &Principal) -> Value {
        out::capability_statement(
            &self.fhir_base(),
            env!("CARGO_PKG_VERSION"),
            self.now(),
            &self.config.alliance.name,
        )
    }

    /// The patients an identifier names: a resident ID (any system) by the alliance key it hashes
    /// to; any other by the published panels filed under it (with its system's issuer when given).
    async fn keys_for_identifier(&self, t: &Token) -> Result<Vec<PatientKey>, AppError> {
        if ResidentId::parse(&t.code).is_some() {
            return Ok(vec![self.patient_key(&LocalPatientId {
                issuer: String::new(),
                id: t.code.clone(),
            })]);
        }
        let issuers = match t.system.as_deref() {
            None => Vec::new(),
            // `|value`: an identifier without an issuer; the hub files none.
            Some("") => return Ok(Vec::new()),
            Some(s) => out::issuers_of_system(s),
        };
        let mut keys = self.catalog.lab_patient_keys(&issuers, &t.code).await?;
        // Imaging and ECG patients by the site-local ID their studies carry (an issuer is needed).
        for issuer in &issuers {
            if let Some(k) = self.catalog.patient_key_of(issuer, &t.code).await?
                && !keys.contains(&k)
            {
                keys.push(k);
            }
        }
        Ok(keys)
    }

    /// The patient a Patient id stands for, when exactly one published patient has it.
    async fn key_for_patient_id(&self, id: &str) -> Result<Option<PatientKey>, AppError> {
        if !out::is_patient_id(id) {
            return Ok(None);
        }
        let mut keys = self.catalog.lab_patient_keys_by_prefix(id).await?;
        for k in self.catalog.reported_patient_keys_by_prefix(id).await? {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        Ok(if keys.len() == 1 { keys.pop() } else { None })
    }

    /// The patients a search names (`None`: it names none).
    async fn search_keys(&self, s: &LabSearch) -> Result<Option<Vec<PatientKey>>, AppError> {
        let mut keys: Option<Vec<PatientKey>> = None;
        if let Some(t) = &s.patient_identifier {
            keys = Some(self.keys_for_identifier(t).await?);
        }
        if let Some(pid) = &s.patient {
            let one: Vec<PatientKey> = self.key_for_patient_id(pid).await?.into_iter().collect();
            keys = Some(match keys {
                None => one,
                Some(prev) => prev.into_iter().filter(|k| one.contains(k)).collect(),
            });
        }
        Ok(keys)
    }

    /// Decides recognition for a published panel and names its patient.
    fn shown(&self, panel: PublishedLabPanel) -> Shown {
        let newer_report = if panel.newer.iter().any(|s| s.is_published()) {
            Some(NewerReport::Published)
        } else if panel.newer.is_empty() {
            None
        } else {
            Some(NewerReport::Pending)
        };
        let r = &panel.record;
        let facts = LabRecognitionFacts {
            released: r.state.is_published(),
            newer_report,
            received_at: r.received_at,
            default_offset_minutes: self.offset(),
        };
        let recognition = recognise_lab(
            &r.panel,
            &facts,
            &self.config.recognition,
            &self.config.lab.qc,
            self.now(),
        );
        let report = to_fhir(&recognition.report, None);
        let results = recognition
            .results
            .iter()
            .map(|x| {
                to_fhir(
                    &x.decision,
                    x.eqa.as_ref().map(|q| format!("{} {}", q.year, q.scheme)),
                )
            })
            .collect();
        Shown {
            patient_id: out::patient_id(&r.patient_key.0),
            panel,
            recognition,
            report,
            results,
        }
    }

    fn report_input<'a>(&self, s: &'a Shown, performer: Option<&'a str>) -> ReportInput<'a> {
        let r = &s.panel.record;
        ReportInput {
            id: r.panel_id.as_str(),
            patient_id: &s.patient_id,
            panel: &r.panel,
            service_loinc: r.service_loinc.as_deref(),
            sending_facility: &r.sending_facility,
            performer_display: performer,
            received_at: r.received_at,
            amended: r.panel.status == PanelStatus::Final
                && matches!(
                    s.panel.replaced_status,
                    Some(PanelStatus::Final | PanelStatus::Corrected)
                ),
            recognition: &s.report,
            result_recognition: &s.results,
        }
    }

    /// The name of the performing lab's site, for people.
    fn performer_name(&self, s: &Shown) -> Option<String> {
        let lab = s.panel.record.panel.performing_lab.as_deref()?;
        let sender = self.config.lab_sender(&[lab])?;
        self.config.site(&sender.site).map(|site| site.name.clone())
    }

    /// Audits one look: one row per patient it concerned (one without a patient when none).
    async fn audit_fhir(
        &self,
        who: &Principal,
        action: &str,
        resource_type: &str,
        resource_id: &str,
        keys: &BTreeSet<String>,
        detail: &str,
    ) -> Result<(), AppError> {
        if keys.is_empty() {
            self.audit(who, action, resource_type, resource_id, None, "ok", detail)
                .await?;
        }
        for k in keys {
            self.audit(
                who,
                action,
                resource_type,
                resource_id,
                Some(&PatientKey(k.clone())),
                "ok",
                detail,
            )
            .await?;
        }
        Ok(())
    }

    /// A search (`GET /fhir/r4/{type}?…`) as a `searchset` Bundle. `self_url` is the request as the
    /// caller sent it (the Bundle's `self` link).
    pub async fn fhir_lab_search(
        &self,
        who: &Principal,
        resource: SearchResource,
        params: &[(String, String)],
        self_url: &str,
    ) -> Result<Value, AppError> {
        require(who, Action::LookupResults)?;
        let s = parse_search(resource, params, self.offset())?;
        let base = self.fhir_base();
        let mut audited: BTreeSet<String> = BTreeSet::new();
        let (entries, total, detail) = match resource {
            SearchResource::Patient => {
                let mut keys = Vec::new();
                if let Some(t) = &s.patient_identifier {
                    keys = self.keys_for_identifier(t).await?;
                } else if s.ids.is_empty() {
                    return Err(AppError::Invalid(
                        "a Patient search needs identifier (or _id)".into(),
                    ));
                }
                if !s.ids.is_empty() {
                    let mut by_id = Vec::new();
                    for id in &s.ids {
                        by_id.extend(self.key_for_patient_id(id).await?);
                    }
                    keys = if s.patient_identifier.is_some() {
                        keys.into_iter().filter(|k| by_id.contains(k)).collect()
                    } else {
                        by_id
                    };
                }
                audited.extend(keys.iter().map(|k| k.0.clone()));
                let patients = self.patients(&keys).await?;
                let n = patients.len();
                let entries: Vec<(Value, SearchMode)> = patients
                    .into_iter()
                    .map(|p| (p, SearchMode::Match))
                    .collect();
                (entries, n, format!("{n} patients"))
            }
            SearchResource::ImagingStudy => {
                let keys = self.search_keys(&s).await?;
                if keys.is_none() && s.ids.is_empty() {
                    return Err(AppError::Invalid(
                        "an ImagingStudy search needs patient, patient.identifier or _id".into(),
                    ));
                }
                if let Some(k) = &keys {
                    audited.extend(k.iter().map(|k| k.0.clone()));
                }
                let mut found = match &keys {
                    Some(k) => self.fhir_imaging_reports_of(k).await?,
                    None => Vec::new(),
                };
                if keys.is_none() {
                    for id in &s.ids {
                        found.extend(self.fhir_imaging_study(id).await?);
                    }
                }
                let mut studies = BTreeSet::new();
                let mut entries = Vec::new();
                for (e, key) in found {
                    let wanted = s.ids.is_empty() || s.ids.contains(&e.study_uid);
                    if wanted && studies.insert(e.study_uid.clone()) {
                        audited.insert(key.0);
                        entries.push((report_fhir::imaging_study(&base, &e), SearchMode::Match));
                    }
                }
                let n = entries.len();
                (entries, n, format!("{n} imaging studies"))
            }
            SearchResource::DiagnosticReport | SearchResource::Observation => {
                let keys = self.search_keys(&s).await?;
                let observation = resource == SearchResource::Observation;
                let mut panel_ids = Vec::new();
                for id in &s.ids {
                    let panel = if observation {
                        out::parse_observation_id(id).map(|(p, _)| p)
                    } else {
                        Some(id.as_str())
                    };
                    panel_ids.extend(panel.and_then(|p| LabPanelId::new(p).ok()));
                }
                if keys.is_none() && s.identifier.is_none() && s.ids.is_empty() {
                    return Err(AppError::Invalid(format!(
                        "a {} search needs patient, patient.identifier{} or _id",
                        resource.as_str(),
                        if observation { "" } else { ", identifier" }
                    )));
                }
                if let Some(k) = &keys {
                    audited.extend(k.iter().map(|k| k.0.clone()));
                }
                let imaging_keys = keys.clone();
                let nothing = keys.as_ref().is_some_and(Vec::is_empty)
                    || (!s.ids.is_empty() && panel_ids.is_empty());
                let codes: Vec<String> = s.codes.iter().map(|t| t.code.clone()).collect();
                let found = if nothing {
                    Vec::new()
                } else {
                    self.catalog
                        .published_lab_panels(&PublishedLabQuery {
                            patient_keys: keys.unwrap_or_default(),
                            panel_ids,
                            order_number: s.identifier.as_ref().map(|t| t.code.clone()),
                            service_codes: if observation {
                                Vec::new()
                            } else {
                                codes.clone()
                            },
                            result_codes: if observation { codes } else { Vec::new() },
                            collected_from: s.from,
                            collected_before: s.before,
                            limit: i64::try_from(MAX_FHIR_REPORTS + 1).unwrap_or(i64::MAX),
                        })
                        .await?
                };
                let truncated = found.len() > MAX_FHIR_REPORTS;
                let shown: Vec<Shown> = found
                    .into_iter()
                    .take(MAX_FHIR_REPORTS)
                    // Of each order only the newest published report.
                    .filter(|p| !p.newer.iter().any(|st| st.is_published()))
                    .map(|p| self.shown(p))
                    .collect();
                let mut entries = Vec::new();
                let mut included = Vec::new();
                let mut reports = 0;
                for sh in &shown {
                    let performer = self.performer_name(sh);
                    let input = self.report_input(sh, performer.as_deref());
                    if observation {
                        for o in out::observations(&base, &input) {
                            let wanted = codes_match(&o["code"], &s.codes)
                                && (s.ids.is_empty()
                                    || s.ids.iter().any(|id| o["id"].as_str() == Some(id)));
                            if wanted {
                                audited.insert(sh.panel.record.patient_key.0.clone());
                                entries.push((o, SearchMode::Match));
                            }
                        }
                    } else {
                        let report = out::diagnostic_report(&base, &input);
                        let wanted = codes_match(&report["code"], &s.codes)
                            && categories_match(&report, &s.categories)
                            && s.identifier
                                .as_ref()
                                .is_none_or(|t| identifier_matches(&report, t));
                        if wanted {
                            audited.insert(sh.panel.record.patient_key.0.clone());
                            reports += 1;
                            entries.push((report, SearchMode::Match));
                            if s.include_results {
                                included.extend(
                                    out::observations(&base, &input)
                                        .into_iter()
                                        .map(|o| (o, SearchMode::Include)),
                                );
                            }
                        }
                    }
                }
                if !observation {
                    for (e, key) in self
                        .imaging_report_matches(&s, imaging_keys.as_deref())
                        .await?
                    {
                        audited.insert(key.0);
                        reports += 1;
                        entries
                            .push((report_fhir::diagnostic_report(&base, &e), SearchMode::Match));
                    }
                }
                let total = entries.len();
                let detail = if observation {
                    format!("{total} observations")
                } else {
                    format!(
                        "{reports} reports, {} observations included",
                        included.len()
                    )
                };
                entries.extend(included);
                if truncated {
                    entries.push((
                        out::operation_outcome(
                            "warning",
                            "too-costly",
                            &format!(
                                "more than {MAX_FHIR_REPORTS} reports match: only the newest {MAX_FHIR_REPORTS} were searched; narrow the search (date, code)"
                            ),
                        ),
                        SearchMode::Outcome,
                    ));
                }
                (entries, total, detail)
            }
        };
        self.audit_fhir(
            who,
            SEARCH,
            resource.as_str(),
            "",
            &audited,
            &format!(
                "{} search by {}: {detail}",
                resource.as_str(),
                param_names(params)
            ),
        )
        .await?;
        Ok(out::searchset(&base, self_url, total, &entries))
    }

    /// A read (`GET /fhir/r4/{type}/{id}`). A published report that a newer published one replaced is
    /// still readable by its id (shown not recognised, saying why); anything unpublished is not found.
    pub async fn fhir_lab_read(
        &self,
        who: &Principal,
        resource: SearchResource,
        id: &str,
    ) -> Result<Value, AppError> {
        require(who, Action::LookupResults)?;
        let not_found = || AppError::NotFound("resource");
        let imaging = match resource {
            SearchResource::DiagnosticReport => self.fhir_imaging_report(id).await?,
            _ => None,
        };
        let (value, key) = match resource {
            SearchResource::DiagnosticReport if imaging.is_some() => {
                let (e, key) = imaging.ok_or_else(not_found)?;
                (report_fhir::diagnostic_report(&self.fhir_base(), &e), key)
            }
            SearchResource::Patient => {
                let key = self.key_for_patient_id(id).await?.ok_or_else(not_found)?;
                let p = self
                    .patients(std::slice::from_ref(&key))
                    .await?
                    .pop()
                    .ok_or_else(not_found)?;
                (p, key)
            }
            SearchResource::ImagingStudy => {
                let (e, key) = self.fhir_imaging_study(id).await?.ok_or_else(not_found)?;
                (report_fhir::imaging_study(&self.fhir_base(), &e), key)
            }
            SearchResource::DiagnosticReport | SearchResource::Observation => {
                let (panel, seq) = match resource {
                    SearchResource::Observation => {
                        out::parse_observation_id(id).ok_or_else(not_found)?
                    }
                    _ => (id, 0),
                };
                let panel_id = LabPanelId::new(panel).map_err(|_| not_found())?;
                let found = self
                    .catalog
                    .published_lab_panels(&PublishedLabQuery {
                        panel_ids: vec![panel_id],
                        limit: 1,
                        ..PublishedLabQuery::default()
                    })
                    .await?
                    .pop()
                    .ok_or_else(not_found)?;
                let sh = self.shown(found);
                let performer = self.performer_name(&sh);
                let input = self.report_input(&sh, performer.as_deref());
                let base = self.fhir_base();
                let value = if seq == 0 {
                    out::diagnostic_report(&base, &input)
                } else {
                    out::observation(&base, &input, seq).ok_or_else(not_found)?
                };
                (value, sh.panel.record.patient_key.clone())
            }
        };
        let keys = BTreeSet::from([key.0]);
        self.audit_fhir(
            who,
            READ,
            resource.as_str(),
            id,
            &keys,
            &format!("{} read", resource.as_str()),
        )
        .await?;
        Ok(value)
    }

    /// Patients as their published panels name them: the site identifiers in full (a resident ID is
    /// never shown: a caller who searched by it has it), the newest name, sex and birth date sent.
    async fn patients(&self, keys: &[PatientKey]) -> Result<Vec<Value>, AppError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.catalog.published_lab_identities(keys).await?;
        let mut out_list = Vec::new();
        for key in keys {
            let mine: Vec<_> = rows.iter().filter(|r| &r.patient_key == key).collect();
            let Some(newest) = mine.first() else {
                // No published lab report: as their signed imaging and ECG exams name them.
                if let Some(p) = self.reported_patient(key).await? {
                    out_list.push(p);
                }
                continue;
            };
            let mut input = PatientInput {
                id: out::patient_id(&key.0),
                last_updated: Some(newest.received_at),
                ..PatientInput::default()
            };
            for r in &mine {
                let pair = (r.issuer.clone(), r.patient_id.clone());
                if ResidentId::parse(&r.patient_id).is_none() && !input.identifiers.contains(&pair)
                {
                    input.identifiers.push(pair);
                }
            }
            input.name = mine.iter().find_map(|r| r.name.clone());
            input.birth_date = mine.iter().find_map(|r| r.birth_date.clone());
            input.sex = mine
                .iter()
                .find_map(|r| r.sex.as_deref().and_then(yilian_domain::lab::Sex::parse));
            out_list.push(out::patient(&input));
        }
        Ok(out_list)
    }

    /// One published lab report by its id, with its recognition (a superseded one too, then not
    /// recognised); `None` when unknown or unpublished. Not audited: the caller audits.
    pub(crate) async fn published_lab_view(
        &self,
        id: &LabPanelId,
    ) -> Result<Option<LabResultView>, AppError> {
        let found = self
            .catalog
            .published_lab_panels(&PublishedLabQuery {
                panel_ids: vec![id.clone()],
                limit: 1,
                ..PublishedLabQuery::default()
            })
            .await?
            .pop();
        Ok(found.map(|p| {
            let sh = self.shown(p);
            LabResultView {
                site_name: self.performer_name(&sh),
                record: sh.panel.record,
                recognition: sh.recognition,
            }
        }))
    }

    /// A patient's published lab reports (the newest of each order), newest received first, with
    /// their recognition: for the JSON look-up, which audits.
    pub(crate) async fn published_lab_views(
        &self,
        key: &PatientKey,
    ) -> Result<Vec<LabResultView>, AppError> {
        let found = self
            .catalog
            .published_lab_panels(&PublishedLabQuery {
                patient_keys: vec![key.clone()],
                limit: i64::try_from(MAX_FHIR_REPORTS).unwrap_or(i64::MAX),
                ..PublishedLabQuery::default()
            })
            .await?;
        Ok(found
            .into_iter()
            .filter(|p| !p.newer.iter().any(|st| st.is_published()))
            .map(|p| {
                let sh = self.shown(p);
                LabResultView {
                    site_name: self.performer_name(&sh),
                    record: sh.panel.record,
                    recognition: sh.recognition,
                }
            })
            .collect())
    }

    /// The signed imaging and ECG reports a DiagnosticReport search matches: of the patients it names
    /// (else by `_id` or report `identifier`), filtered by `_id`, `identifier`, `code`, `category` and
    /// `date` (the study date).
    async fn imaging_report_matches(
        &self,
        s: &LabSearch,
        keys: Option<&[PatientKey]>,
    ) -> Result<Vec<(ReportExport, PatientKey)>, AppError> {
        let mut found = match keys {
            Some(k) => self.fhir_imaging_reports_of(k).await?,
            None => {
                let mut by_id = Vec::new();
                let named = s.ids.iter().chain(s.identifier.as_ref().map(|t| &t.code));
                for id in named {
                    by_id.extend(self.fhir_imaging_report(id).await?);
                }
                by_id
            }
        };
        let offset = i64::from(self.offset());
        found.retain(|(e, _)| {
            let codes = report_fhir::search_codes(e);
            let studied = e.study_date.as_deref().and_then(|d| {
                chrono::NaiveDate::parse_from_str(d, "%Y%m%d")
                    .ok()?
                    .and_hms_opt(0, 0, 0)
                    .map(|t| UnixMillis(t.and_utc().timestamp_millis() - offset * 60_000))
            });
            (s.ids.is_empty() || s.ids.contains(&e.report_id))
                && s.identifier
                    .as_ref()
                    .is_none_or(|t| t.matches(Some(report_fhir::REPORT_SYSTEM), &e.report_id))
                && (s.codes.is_empty()
                    || s.codes
                        .iter()
                        .any(|t| codes.iter().any(|(sys, c)| t.matches(Some(sys), c))))
                && (s.categories.is_empty()
                    || s.categories.iter().any(|t| {
                        codes
                            .iter()
                            .any(|(sys, c)| sys.ends_with("v2-0074") && t.matches(Some(sys), c))
                    }))
                && s.date_matches(studied)
        });
        let mut seen = BTreeSet::new();
        found.retain(|(e, _)| seen.insert(e.report_id.clone()));
        Ok(found)
    }

    /// A patient as the exams of their final imaging and ECG reports name them (site identifiers,
    /// never a resident ID; the newest name); `None` without such a report.
    async fn reported_patient(&self, key: &PatientKey) -> Result<Option<Value>, AppError> {
        let exams = self.catalog.results_of_patient(key).await?;
        let Some((newest, report)) = exams.first() else {
            return Ok(None);
        };
        let mut input = PatientInput {
            id: out::patient_id(&key.0),
            last_updated: report.signed_at,
            ..PatientInput::default()
        };
        for (e, _) in &exams {
            let pair = (e.issuer_of_patient_id.clone(), e.patient_id.clone());
            if ResidentId::parse(&e.patient_id).is_none() && !input.identifiers.contains(&pair) {
                input.identifiers.push(pair);
            }
        }
        input.name = newest.patient_name.clone();
        Ok(Some(out::patient(&input)))
    }
}
