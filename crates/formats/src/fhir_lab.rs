//! FHIR R4 lab input → `LabPanel`s (and, in `out` and `search`, the read API's resources and search
//! parameters): a Bundle (`transaction`, `batch` or `collection`) holding
//! DiagnosticReports with their Observations (+ Patient, Specimen, Organization, ServiceRequest), or a
//! bare DiagnosticReport with contained resources. One panel per DiagnosticReport.
//!
//! References resolve by an entry's `fullUrl` (`urn:uuid:…` or absolute), by `Type/id` against the
//! entries' resource ids, and `#id` against the enclosing resource's `contained`. An Observation that
//! groups others (`hasMember`, no value) is replaced by its members (up to `MAX_MEMBER_DEPTH` levels).
//! Errors name the JSON path (`entry[2].resource.valueQuantity.value: expected a number`).
//!
//! Choices: decimals keep the JSON number's shortest form (`6.80` arrives as `6.8`); identifier
//! `system` becomes the assigning authority as sent; `valueBoolean`, `valueDateTime`, `valueTime`,
//! `valueRatio` (`1:128`) and `valueRange` (`2-5`) become text; `valueAttachment`, `valueSampledData` and
//! `valuePeriod` are refused; a value-less Observation is `Absent`.

use std::collections::HashMap;

use serde_json::Value;
use yilian_domain::ecg::LocalDateTime;
use yilian_domain::lab::{
    AbnormalFlag, CodedValue, Comparator, LabPanel, LabPatient, LabResult, LabSource, LabTime,
    LabValue, PanelStatus, PatientIdentifier, Quantity, ReferenceRange, ResultStatus, Sex,
};

/// How deep `hasMember` groups are followed.
pub const MAX_MEMBER_DEPTH: usize = 4;
/// The most results one panel may expand to (groups referenced many times could otherwise multiply a
/// small input into an enormous panel).
pub const MAX_RESULTS_PER_PANEL: usize = 2_000;

/// Why a FHIR lab input was refused. Each variant names the JSON path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FhirError {
    #[error("not JSON: {message} (line {line}, column {column})")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "resourceType {0:?} is not a lab input: send a Bundle (transaction, batch or collection) or a DiagnosticReport"
    )]
    UnsupportedResource(String),
    #[error("{path}: expected {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    #[error("{path}: required element is missing")]
    Missing { path: String },
    #[error("{path}: {value:?} is {problem}")]
    BadValue {
        path: String,
        value: String,
        problem: &'static str,
    },
    #[error("{path}: reference {reference:?} does not resolve to a {expected} in the input")]
    Unresolved {
        path: String,
        reference: String,
        expected: &'static str,
    },
    #[error("{path}: Observation members nest deeper than {MAX_MEMBER_DEPTH} levels (or loop)")]
    TooDeep { path: String },
    #[error("{path}: the report expands to more than {MAX_RESULTS_PER_PANEL} results")]
    TooManyResults { path: String },
    #[error("the bundle holds no DiagnosticReport")]
    NoReport,
}

impl FhirError {
    /// The JSON path the error is at, when it is at one.
    pub fn path(&self) -> Option<&str> {
        match self {
            FhirError::WrongType { path, .. }
            | FhirError::Missing { path }
            | FhirError::BadValue { path, .. }
            | FhirError::Unresolved { path, .. }
            | FhirError::TooDeep { path }
            | FhirError::TooManyResults { path } => Some(path),
            _ => None,
        }
    }
}

/// Parses a FHIR R4 lab input (JSON) into one panel per DiagnosticReport, in input order.
pub fn parse_fhir_lab(bytes: &[u8]) -> Result<Vec<LabPanel>, FhirError> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| FhirError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let root = Node {
        v: &root,
        path: String::new(),
    };
    if !root.v.is_object() {
        return Err(FhirError::WrongType {
            path: "(root)".into(),
            expected: "a JSON object (a FHIR resource)",
        });
    }
    let resource_type = root.req_str("resourceType")?;
    match resource_type {
        "Bundle" => parse_bundle(&root),
        "DiagnosticReport" => {
            let dr = Node {
                v: root.v,
                path: "DiagnosticReport".into(),
            };
            let message_id = dr.req_str("id")?.to_string();
            let index = Index::default();
            let res = Res {
                node: dr,
                container: root.v,
                container_path: "DiagnosticReport".into(),
            };
            Ok(vec![panel(&index, &res, &message_id)?])
        }
        other => Err(FhirError::UnsupportedResource(other.to_string())),
    }
}

/// A JSON value with its path.
#[derive(Clone)]
struct Node<'a> {
    v: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    fn join(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// A member; `None` when missing or null.
    fn get(&self, name: &str) -> Option<Node<'a>> {
        self.v.get(name).filter(|v| !v.is_null()).map(|v| Node {
            v,
            path: self.join(name),
        })
    }

    fn object(&self, name: &str) -> Result<Option<Node<'a>>, FhirError> {
        match self.get(name) {
            Some(n) if !n.v.is_object() => Err(FhirError::WrongType {
                path: n.path,
                expected: "an object",
            }),
            other => Ok(other),
        }
    }

    fn str(&self, name: &str) -> Result<Option<&'a str>, FhirError> {
        match self.get(name) {
            None => Ok(None),
            Some(n) => match n.v.as_str() {
                Some(s) if s.trim().is_empty() => Ok(None),
                Some(s) => Ok(Some(s.trim())),
                None => Err(FhirError::WrongType {
                    path: n.path,
                    expected: "a string",
                }),
            },
        }
    }

    fn req_str(&self, name: &str) -> Result<&'a str, FhirError> {
        self.str(name)?.ok_or_else(|| FhirError::Missing {
            path: self.join(name),
        })
    }

    /// The items of an array member (none when missing).
    fn array(&self, name: &str) -> Result<Vec<Node<'a>>, FhirError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(n) => {
                let items = n.v.as_array().ok_or_else(|| FhirError::WrongType {
                    path: n.path.clone(),
                    expected: "an array",
                })?;
                Ok(items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Node {
                        v,
                        path: format!("{}[{i}]", n.path),
                    })
                    .collect())
            }
        }
    }

    /// A decimal member: the value and its shortest text.
    fn number(&self, name: &str) -> Result<Option<(f64, String)>, FhirError> {
        let Some(n) = self.get(name) else {
            return Ok(None);
        };
        let wrong = || FhirError::WrongType {
            path: n.path.clone(),
            expected: "a number",
        };
        let num = n.v.as_number().ok_or_else(wrong)?;
        let value = num.as_f64().filter(|f| f.is_finite()).ok_or_else(wrong)?;
        Ok(Some((value, num.to_string())))
    }

    fn bad(&self, name: &str, value: &str, problem: &'static str) -> FhirError {
        FhirError::BadValue {
            path: self.join(name),
            value: value.chars().take(60).collect(),
            problem,
        }
    }
}

/// A resource with where it lives: an entry's resource, or a contained one (its container is the
/// resource whose `contained` holds it; `#id` references resolve there).
#[derive(Clone)]
struct Res<'a> {
    node: Node<'a>,
    container: &'a Value,
    container_path: String,
}

/// The bundle's entries, by full URL and by `Type/id`.
#[derive(Default)]
struct Index<'a> {
    entries: Vec<Res<'a>>,
    by_url: HashMap<String, usize>,
}

impl<'a> Index<'a> {
    fn resolve(&self, from: &Res<'a>, reference: &str) -> Option<Res<'a>> {
        if let Some(id) = reference.strip_prefix('#') {
            let contained = from.container.get("contained")?.as_array()?;
            let (i, v) = contained
                .iter()
                .enumerate()
                .find(|(_, v)| v.get("id").and_then(Value::as_str) == Some(id))?;
            return Some(Res {
                node: Node {
                    v,
                    path: format!("{}.contained[{i}]", from.container_path),
                },
                container: from.container,
                container_path: from.container_path.clone(),
            });
        }
        let i = self.by_url.get(reference).or_else(|| {
            // An absolute reference whose tail is `Type/id`.
            let mut parts = reference.rsplitn(3, '/');
            let (id, ty) = (parts.next()?, parts.next()?);
            parts.next()?;
            self.by_url.get(&format!("{ty}/{id}"))
        })?;
        self.entries.get(*i).cloned()
    }

    /// Resolves the `reference` member of a Reference node to a resource of type `expected`.
    fn follow(
        &self,
        from: &Res<'a>,
        reference: &Node<'a>,
        expected: &'static str,
    ) -> Result<Option<Res<'a>>, FhirError> {
        let Some(r) = reference.str("reference")? else {
            return Ok(None);
        };
        let unresolved = || FhirError::Unresolved {
            path: reference.join("reference"),
            reference: r.to_string(),
            expected,
        };
        let res = self.resolve(from, r).ok_or_else(unresolved)?;
        if res.node.v.get("resourceType").and_then(Value::as_str) != Some(expected) {
            return Err(unresolved());
        }
        Ok(Some(res))
    }
}

fn parse_bundle(root: &Node<'_>) -> Result<Vec<LabPanel>, FhirError> {
    let ty = root.req_str("type")?;
    if !matches!(ty, "transaction" | "batch" | "collection") {
        return Err(root.bad(
            "type",
            ty,
            "not a bundle type for lab input (transaction, batch or collection)",
        ));
    }
    let message_id = match root.str("id")? {
        Some(id) => id.to_string(),
        None => root
            .object("identifier")?
            .map(|i| i.req_str("value").map(str::to_string))
            .transpose()?
            .ok_or_else(|| FhirError::Missing { path: "id".into() })?,
    };
    let mut index = Index::default();
    for entry in root.array("entry")? {
        let Some(resource) = entry.object("resource")? else {
            continue;
        };
        let ty = resource.req_str("resourceType")?;
        let i = index.entries.len();
        if let Some(url) = entry.str("fullUrl")? {
            index.by_url.insert(url.to_string(), i);
        }
        if let Some(id) = resource.str("id")? {
            index.by_url.entry(format!("{ty}/{id}")).or_insert(i);
        }
        index.entries.push(Res {
            container: resource.v,
            container_path: resource.path.clone(),
            node: resource,
        });
    }
    let reports: Vec<Res<'_>> = index
        .entries
        .iter()
        .filter(|r| {
            r.node.v.get("resourceType").and_then(Value::as_str) == Some("DiagnosticReport")
        })
        .cloned()
        .collect();
    if reports.is_empty() {
        return Err(FhirError::NoReport);
    }
    reports
        .iter()
        .map(|dr| panel(&index, dr, &message_id))
        .collect()
}

fn panel(index: &Index<'_>, dr: &Res<'_>, message_id: &str) -> Result<LabPanel, FhirError> {
    let n = &dr.node;
    let status_text = n.req_str("status")?;
    let status = PanelStatus::from_fhir(status_text)
        .ok_or_else(|| n.bad("status", status_text, "not a DiagnosticReport status"))?;
    let code = n.object("code")?.ok_or_else(|| FhirError::Missing {
        path: n.join("code"),
    })?;
    let (service, _, _) = concept(&code)?;

    let subject = n.object("subject")?.ok_or_else(|| FhirError::Missing {
        path: n.join("subject"),
    })?;
    let patient = match index.follow(dr, &subject, "Patient")? {
        Some(p) => patient(&p.node)?,
        None => {
            let identifier = subject
                .object("identifier")?
                .ok_or_else(|| FhirError::Missing {
                    path: subject.join("reference"),
                })?;
            LabPatient {
                identifiers: vec![identifier_of(&identifier)?.ok_or_else(|| {
                    FhirError::Missing {
                        path: identifier.join("value"),
                    }
                })?],
                ..LabPatient::default()
            }
        }
    };

    let mut performing_lab = None;
    for performer in n.array("performer")? {
        let org = match index.resolve(dr, performer.str("reference")?.unwrap_or_default()) {
            Some(r)
                if r.node.v.get("resourceType").and_then(Value::as_str) == Some("Organization") =>
            {
                organization(&r.node)?
            }
            _ => None,
        };
        performing_lab = org.or(performer.str("display")?.map(str::to_string));
        if performing_lab.is_some() {
            break;
        }
    }

    let mut placer_order_number = None;
    let mut ordering_site = None;
    if let Some(based_on) = n.array("basedOn")?.into_iter().next() {
        match index.follow(dr, &based_on, "ServiceRequest") {
            Ok(Some(sr)) => {
                placer_order_number = first_identifier_value(&sr.node)?;
                if let Some(req) = sr.node.object("requester")? {
                    ordering_site = match index.follow(&sr, &req, "Organization") {
                        Ok(Some(org)) => organization(&org.node)?,
                        _ => None,
                    }
                    .or(req.str("display")?.map(str::to_string));
                }
            }
            // A reference to an order the input does not carry: its identifier, if given, is enough.
            Ok(None) | Err(FhirError::Unresolved { .. }) => {
                placer_order_number = based_on
                    .object("identifier")?
                    .and_then(|i| i.str("value").ok().flatten().map(str::to_string));
            }
            Err(e) => return Err(e),
        }
    }

    let mut specimen = None;
    let mut collected_at = effective(n)?;
    let mut received_at = None;
    if let Some(sp_ref) = n.array("specimen")?.into_iter().next()
        && let Some(sp) = index.follow(dr, &sp_ref, "Specimen")?
    {
        if let Some(ty) = sp.node.object("type")? {
            specimen = Some(concept(&ty)?.0);
        }
        if let Some(collection) = sp.node.object("collection")? {
            let t = match time(&collection, "collectedDateTime")? {
                Some(t) => Some(t),
                None => match collection.object("collectedPeriod")? {
                    Some(p) => time(&p, "start")?,
                    None => None,
                },
            };
            collected_at = t.or(collected_at);
        }
        received_at = time(&sp.node, "receivedTime")?;
    }

    let mut results = Vec::new();
    for r in n.array("result")? {
        let obs = index
            .follow(dr, &r, "Observation")?
            .ok_or_else(|| FhirError::Missing {
                path: r.join("reference"),
            })?;
        observations(index, &obs, 0, &mut results)?;
    }

    Ok(LabPanel {
        source: LabSource::FhirR4,
        version: "R4".into(),
        message_id: message_id.to_string(),
        patient,
        ordering_site,
        ordering_provider: None,
        performing_lab,
        placer_order_number,
        filler_order_number: first_identifier_value(n)?,
        service,
        specimen,
        collected_at,
        received_at,
        reported_at: time(n, "issued")?,
        status,
        results,
        notes: Vec::new(),
    })
}

/// Adds the result(s) of an Observation: itself, or its `hasMember`s when it only groups them.
fn observations(
    index: &Index<'_>,
    obs: &Res<'_>,
    depth: usize,
    out: &mut Vec<LabResult>,
) -> Result<(), FhirError> {
    let n = &obs.node;
    let members = n.array("hasMember")?;
    let has_value = n.v.as_object().is_some_and(|o| {
        o.keys()
            .any(|k| k.starts_with("value") || k == "dataAbsentReason")
    });
    if members.is_empty() || has_value {
        if out.len() >= MAX_RESULTS_PER_PANEL {
            return Err(FhirError::TooManyResults {
                path: n.path.clone(),
            });
        }
        let set_id = u32::try_from(out.len() + 1).ok();
        out.push(observation(n, set_id)?);
        return Ok(());
    }
    if depth >= MAX_MEMBER_DEPTH {
        return Err(FhirError::TooDeep {
            path: n.join("hasMember"),
        });
    }
    for m in members {
        let member = index
            .follow(obs, &m, "Observation")?
            .ok_or_else(|| FhirError::Missing {
                path: m.join("reference"),
            })?;
        observations(index, &member, depth + 1, out)?;
    }
    Ok(())
}

fn observation(n: &Node<'_>, set_id: Option<u32>) -> Result<LabResult, FhirError> {
    let status_text = n.req_str("status")?;
    let status = ResultStatus::from_fhir(status_text)
        .ok_or_else(|| n.bad("status", status_text, "not an Observation status"))?;
    let code = n.object("code")?.ok_or_else(|| FhirError::Missing {
        path: n.join("code"),
    })?;
    let (code, other_codes, loinc) = concept(&code)?;

    let value_keys: Vec<&String> =
        n.v.as_object()
            .map(|o| o.keys().filter(|k| k.starts_with("value")).collect())
            .unwrap_or_default();
    if let [_, second, ..] = value_keys.as_slice() {
        return Err(n.bad(
            second,
            second,
            "a second value[x]: an Observation has one value",
        ));
    }
    let value = if let Some(q) = n.object("valueQuantity")? {
        let (value, decimal) = q.number("value")?.ok_or_else(|| FhirError::Missing {
            path: q.join("value"),
        })?;
        let comparator = match q.str("comparator")? {
            None => None,
            Some(c) => Some(
                Comparator::parse(c)
                    .ok_or_else(|| q.bad("comparator", c, "not a comparator (<, <=, >=, >)"))?,
            ),
        };
        let unit_code = q.str("code")?;
        let unit_text = q.str("unit")?;
        let unit = unit_code.or(unit_text).map(|c| CodedValue {
            code: c.to_string(),
            display: unit_text.map(str::to_string),
            system: q.str("system").ok().flatten().map(str::to_string),
        });
        LabValue::Numeric(Quantity {
            value,
            decimal,
            comparator,
            unit,
        })
    } else if let Some(c) = n.object("valueCodeableConcept")? {
        LabValue::Coded(concept(&c)?.0)
    } else if let Some(s) = n.get("valueString") {
        LabValue::Text(
            s.v.as_str()
                .ok_or_else(|| FhirError::WrongType {
                    path: s.path.clone(),
                    expected: "a string",
                })?
                .to_string(),
        )
    } else if let Some(i) = n.get("valueInteger") {
        let v = i.v.as_i64().ok_or_else(|| FhirError::WrongType {
            path: i.path.clone(),
            expected: "an integer",
        })?;
        LabValue::Numeric(Quantity {
            value: v as f64,
            decimal: v.to_string(),
            comparator: None,
            unit: None,
        })
    } else if let Some(b) = n.get("valueBoolean") {
        let v = b.v.as_bool().ok_or_else(|| FhirError::WrongType {
            path: b.path.clone(),
            expected: "true or false",
        })?;
        LabValue::Text(v.to_string())
    } else if let Some(s) = n.str("valueDateTime")?.or(n.str("valueTime")?) {
        LabValue::Text(s.to_string())
    } else if let Some(r) = n.object("valueRatio")? {
        let part = |name| -> Result<String, FhirError> {
            let q = r
                .object(name)?
                .ok_or_else(|| FhirError::Missing { path: r.join(name) })?;
            Ok(q.number("value")?
                .ok_or_else(|| FhirError::Missing {
                    path: q.join("value"),
                })?
                .1)
        };
        LabValue::Text(format!("{}:{}", part("numerator")?, part("denominator")?))
    } else if let Some(r) = n.object("valueRange")? {
        let bound = |name| -> Result<String, FhirError> {
            Ok(match r.object(name)? {
                Some(q) => q.number("value")?.map(|v| v.1).unwrap_or_default(),
                None => String::new(),
            })
        };
        LabValue::Text(format!("{}-{}", bound("low")?, bound("high")?))
    } else if let Some(k) = ["valueAttachment", "valueSampledData", "valuePeriod"]
        .into_iter()
        .find(|k| n.get(k).is_some())
    {
        return Err(n.bad(k, k, "not a supported lab value type"));
    } else {
        LabValue::Absent
    };

    let mut abnormal_flags = Vec::new();
    for interp in n.array("interpretation")? {
        for coding in interp.array("coding")? {
            if let Some(flag) = coding.str("code")?.and_then(AbnormalFlag::from_code) {
                abnormal_flags.push(flag);
            }
        }
    }
    let reference_range = match n.array("referenceRange")?.into_iter().next() {
        None => None,
        Some(rr) => {
            let bound = |name| -> Result<Option<f64>, FhirError> {
                Ok(match rr.object(name)? {
                    Some(q) => q.number("value")?.map(|v| v.0),
                    None => None,
                })
            };
            Some(ReferenceRange {
                low: bound("low")?,
                high: bound("high")?,
                text: rr.str("text")?.map(str::to_string),
            })
        }
    };
    Ok(LabResult {
        set_id,
        code,
        other_codes,
        loinc,
        value,
        reference_range,
        abnormal_flags,
        status,
        observed_at: effective(n)?,
    })
}

/// A CodeableConcept: the first non-LOINC coding (else the first, else the text) as the code, the
/// other codings, and the LOINC code when one is there.
fn concept(n: &Node<'_>) -> Result<(CodedValue, Vec<CodedValue>, Option<String>), FhirError> {
    let mut codings = Vec::new();
    for c in n.array("coding")? {
        if let Some(code) = c.str("code")? {
            codings.push(CodedValue {
                code: code.to_string(),
                display: c.str("display")?.map(str::to_string),
                system: c.str("system")?.map(str::to_string),
            });
        }
    }
    let text = n.str("text")?;
    let loinc = codings
        .iter()
        .find(|c| c.is_loinc())
        .map(|c| c.code.clone());
    let primary = codings
        .iter()
        .position(|c| !c.is_loinc())
        .or((!codings.is_empty()).then_some(0));
    match primary {
        Some(i) => {
            let mut first = codings.remove(i);
            if first.display.is_none() {
                first.display = text.map(str::to_string);
            }
            Ok((first, codings, loinc))
        }
        None => match text {
            Some(t) => Ok((CodedValue::new(t, Some(t), None), Vec::new(), None)),
            None => Err(FhirError::Missing {
                path: n.join("coding"),
            }),
        },
    }
}

fn identifier_of(n: &Node<'_>) -> Result<Option<PatientIdentifier>, FhirError> {
    let Some(value) = n.str("value")? else {
        return Ok(None);
    };
    let id_type = match n.object("type")? {
        Some(t) => match t.array("coding")?.into_iter().next() {
            Some(c) => c.str("code")?.map(str::to_string),
            None => t.str("text")?.map(str::to_string),
        },
        None => None,
    };
    Ok(Some(PatientIdentifier {
        id: value.to_string(),
        assigning_authority: n.str("system")?.map(str::to_string),
        id_type,
    }))
}

fn first_identifier_value(n: &Node<'_>) -> Result<Option<String>, FhirError> {
    for i in n.array("identifier")? {
        if let Some(v) = i.str("value")? {
            return Ok(Some(v.to_string()));
        }
    }
    Ok(None)
}

/// An Organization's first identifier value, else its name.
fn organization(n: &Node<'_>) -> Result<Option<String>, FhirError> {
    Ok(first_identifier_value(n)?.or(n.str("name")?.map(str::to_string)))
}

fn patient(n: &Node<'_>) -> Result<LabPatient, FhirError> {
    let mut identifiers = Vec::new();
    for i in n.array("identifier")? {
        identifiers.extend(identifier_of(&i)?);
    }
    if identifiers.is_empty() {
        return Err(FhirError::Missing {
            path: n.join("identifier"),
        });
    }
    let name = match n.array("name")?.into_iter().next() {
        None => None,
        Some(hn) => {
            let family = hn.str("family")?;
            let mut given = Vec::new();
            for g in hn.array("given")? {
                given.push(g.v.as_str().ok_or_else(|| FhirError::WrongType {
                    path: g.path.clone(),
                    expected: "a string",
                })?);
            }
            let given = given.join(" ");
            match (family, given.trim()) {
                (Some(f), "") => Some(f.to_string()),
                (Some(f), g) => Some(format!("{f}^{g}")),
                (None, "") => hn.str("text")?.map(str::to_string),
                (None, g) => Some(format!("^{g}")),
            }
        }
    };
    let birth_date = match n.str("birthDate")? {
        None => None,
        Some(b) => Some(
            birth_date(b).ok_or_else(|| n.bad("birthDate", "…", "not a date (YYYY[-MM[-DD]])"))?,
        ),
    };
    let sex = match n.str("gender")? {
        None => None,
        Some(g) => Some(
            Sex::from_fhir(g).ok_or_else(|| n.bad("gender", g, "not an administrative gender"))?,
        ),
    };
    Ok(LabPatient {
        identifiers,
        name,
        birth_date,
        sex,
    })
}

fn birth_date(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = match parts.as_slice() {
        [y] => y.len() == 4,
        [y, m] => y.len() == 4 && m.len() == 2,
        [y, m, d] => y.len() == 4 && m.len() == 2 && d.len() == 2,
        _ => false,
    };
    let digits = parts.concat();
    if !ok || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |a: usize, b: usize| digits.get(a..b).map_or(Some(1), |s| s.parse::<u8>().ok());
    LocalDateTime::new(
        digits.get(..4)?.parse().ok()?,
        num(4, 6)?,
        num(6, 8)?,
        0,
        0,
        0,
    )?;
    Some(digits)
}

/// `effectiveDateTime`, `effectiveInstant` or `effectivePeriod.start`.
fn effective(n: &Node<'_>) -> Result<Option<LabTime>, FhirError> {
    if let Some(t) = time(n, "effectiveDateTime")? {
        return Ok(Some(t));
    }
    if let Some(t) = time(n, "effectiveInstant")? {
        return Ok(Some(t));
    }
    match n.object("effectivePeriod")? {
        Some(p) => time(&p, "start"),
        None => Ok(None),
    }
}

/// A FHIR dateTime/instant member with at least a day: `YYYY-MM-DD[Thh:mm:ss[.fff](Z|±hh:mm)]`.
fn time(n: &Node<'_>, name: &str) -> Result<Option<LabTime>, FhirError> {
    let Some(s) = n.str(name)? else {
        return Ok(None);
    };
    parse_time(s).map(Some).ok_or_else(|| {
        n.bad(
            name,
            s,
            "not a date/time (YYYY-MM-DD[Thh:mm:ss[.fff]+hh:mm])",
        )
    })
}

pub(crate) fn parse_time(s: &str) -> Option<LabTime> {
    let b = s.as_bytes();
    let digits = |from: usize, len: usize| -> Option<u16> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (digits(0, 4)?, digits(5, 2)? as u8, digits(8, 2)? as u8);
    if s.len() == 10 {
        return Some(LabTime::new(LocalDateTime::new(y, mo, d, 0, 0, 0)?, None));
    }
    if b.get(10) != Some(&b'T') || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (h, mi, se) = (
        digits(11, 2)? as u8,
        digits(14, 2)? as u8,
        digits(17, 2)? as u8,
    );
    let local = LocalDateTime::new(y, mo, d, h, mi, se)?;
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = frac.get(n..)?;
    }
    let offset = match rest {
        "" => None,
        "Z" => Some(0),
        _ => {
            let sign: i16 = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let two = |t: &str| -> Option<i16> {
                (t.len() == 2 && t.bytes().all(|c| c.is_ascii_digit())).then(|| t.parse().ok())?
            };
            if rest.len() != 6 || rest.as_bytes().get(3) != Some(&b':') {
                return None;
            }
            let (oh, om) = (two(rest.get(1..3)?)?, two(rest.get(4..6)?)?);
            if oh > 14 || om > 59 {
                return None;
            }
            Some(sign * (oh * 60 + om))
        }
    };
    Some(LabTime::new(local, offset))
}

pub mod out;
pub mod search;

#[cfg(test)]
mod tests;
