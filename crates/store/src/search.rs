//! QIDO-RS / C-FIND matching as SQL: a typed [`Query`] and a [`SearchScope`] become one SELECT with
//! bound parameters (values never enter the SQL text), the same on SQLite and PostgreSQL.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use yilian_app::ports::{PortError, SearchScope};
use yilian_formats::query::{Key, Matcher, Query, QueryLevel, QueryMatch};

/// A bound value.
enum Bind {
    Text(String),
    Int(i64),
}

struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn param(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }
}

/// The column holding a key at a level (aliases: p patient_ids, s studies, se series, i instances).
fn column(key: Key) -> Option<&'static str> {
    Some(match key {
        Key::PatientName => "s.patient_name",
        Key::PatientId => "s.patient_id",
        Key::IssuerOfPatientId => "s.issuer",
        Key::PatientBirthDate => "p.birth_date",
        Key::PatientSex => "p.sex",
        Key::StudyInstanceUid => "s.study_uid",
        Key::StudyDate => "s.study_date",
        Key::StudyTime => "s.study_time",
        Key::AccessionNumber => "s.accession_number",
        Key::StudyId => "s.study_id",
        Key::StudyDescription => "s.description",
        Key::ReferringPhysicianName => "s.referring_physician",
        Key::SeriesInstanceUid => "se.series_uid",
        Key::Modality => "se.modality",
        Key::SeriesNumber => "se.series_number",
        Key::SeriesDescription => "se.description",
        Key::BodyPartExamined => "se.body_part",
        Key::SopInstanceUid => "i.sop_instance_uid",
        Key::SopClassUid => "i.sop_class_uid",
        Key::InstanceNumber => "i.instance_number",
        _ => return None,
    })
}

fn is_person_name(key: Key) -> bool {
    matches!(key, Key::PatientName | Key::ReferringPhysicianName)
}

fn is_number(key: Key) -> bool {
    matches!(key, Key::SeriesNumber | Key::InstanceNumber)
}

/// `*`/`?` → `%`/`_`, escaping the LIKE metacharacters of the value itself with `\`.
fn like_pattern(wildcard: &str) -> String {
    let mut out = String::with_capacity(wildcard.len());
    for c in wildcard.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn condition(sql: &mut Sql, key: Key, m: &Matcher, fuzzy: bool) -> Option<String> {
    if key == Key::ModalitiesInStudy {
        let list: Vec<String> = match m {
            Matcher::Single(v) => vec![v.clone()],
            Matcher::List(vs) => vs.clone(),
            Matcher::Wildcard(v) => {
                let p = sql.param(Bind::Text(like_pattern(v)));
                return Some(format!(
                    "EXISTS (SELECT 1 FROM series ms WHERE ms.study_uid = s.study_uid AND ms.modality LIKE {p} ESCAPE '\\')"
                ));
            }
            Matcher::Range { .. } => return None,
        };
        let ps: Vec<String> = list.into_iter().map(|v| sql.param(Bind::Text(v))).collect();
        return Some(format!(
            "EXISTS (SELECT 1 FROM series ms WHERE ms.study_uid = s.study_uid AND ms.modality IN ({}))",
            ps.join(", ")
        ));
    }
    let col = column(key)?;
    let pn = is_person_name(key);
    Some(match m {
        Matcher::Single(v) if is_number(key) => {
            let n: i64 = v.trim().parse().ok()?;
            format!("{col} = {}", sql.param(Bind::Int(n)))
        }
        Matcher::Single(v) if pn && fuzzy => format!(
            "LOWER({col}) LIKE {} ESCAPE '\\'",
            sql.param(Bind::Text(format!("%{}%", like_pattern(&v.to_lowercase()))))
        ),
        Matcher::Single(v) if pn => {
            format!("LOWER({col}) = {}", sql.param(Bind::Text(v.to_lowercase())))
        }
        Matcher::Single(v) => format!("{col} = {}", sql.param(Bind::Text(v.clone()))),
        Matcher::Wildcard(v) if pn => {
            let pat = like_pattern(&v.to_lowercase());
            let pat = if fuzzy { format!("%{pat}") } else { pat };
            format!(
                "LOWER({col}) LIKE {} ESCAPE '\\'",
                sql.param(Bind::Text(pat))
            )
        }
        Matcher::Wildcard(v) => format!(
            "{col} LIKE {} ESCAPE '\\'",
            sql.param(Bind::Text(like_pattern(v)))
        ),
        Matcher::Range { from, to } => {
            let mut parts = Vec::new();
            if let Some(f) = from {
                parts.push(format!("{col} >= {}", sql.param(Bind::Text(f.clone()))));
            }
            if let Some(t) = to {
                // A time's upper bound covers the whole of its last unit: 1200 → 1200 to 120099.999999.
                let t = if key == Key::StudyTime {
                    format!("{t}{}", &"999999.999999"[t.len().min(6)..])
                } else {
                    t.clone()
                };
                parts.push(format!("{col} <= {}", sql.param(Bind::Text(t))));
            }
            format!("({col} IS NOT NULL AND {})", parts.join(" AND "))
        }
        Matcher::List(vs) => {
            let ps: Vec<String> = vs
                .iter()
                .map(|v| sql.param(Bind::Text(v.clone())))
                .collect();
            format!("{col} IN ({})", ps.join(", "))
        }
    })
}

fn scope_condition(sql: &mut Sql, scope: &SearchScope) -> String {
    match scope {
        SearchScope::Site(site) => {
            format!("s.site_id = {}", sql.param(Bind::Text(site.to_string())))
        }
        SearchScope::Pools(pools) if !pools.is_empty() => {
            let ps: Vec<String> = pools
                .iter()
                .map(|p| sql.param(Bind::Text(p.to_string())))
                .collect();
            format!(
                "EXISTS (SELECT 1 FROM exams e WHERE e.study_uid = s.study_uid AND e.pool_id IN ({}))",
                ps.join(", ")
            )
        }
        SearchScope::Signed => {
            "EXISTS (SELECT 1 FROM exams e WHERE e.study_uid = s.study_uid AND e.state = 'signed')"
                .into()
        }
        SearchScope::Pools(_) | SearchScope::Nothing => "1 = 0".into(),
    }
}

const STUDY_COLS: &str = "s.study_uid, s.patient_name, s.patient_id, s.issuer, p.birth_date, p.sex, \
    s.study_date, s.study_time, s.accession_number, s.study_id, s.description, s.referring_physician";

/// Runs a query. At patient level one row per patient (by issuer and ID) with its study count.
pub async fn search(
    pool: &AnyPool,
    q: &Query,
    scope: &SearchScope,
) -> Result<Vec<QueryMatch>, PortError> {
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
    };
    let mut conds = vec![scope_condition(&mut sql, scope)];
    for (key, m) in &q.filters {
        // Keys below the query's level cannot narrow it (no relational queries).
        if key.level() > q.level && *key != Key::ModalitiesInStudy {
            continue;
        }
        if let Some(c) = condition(&mut sql, *key, m, q.fuzzy) {
            conds.push(c);
        }
    }
    let wh = conds.join(" AND ");
    let from =
        "studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id";
    let page = |sql: &mut Sql| {
        let mut t = String::new();
        if let Some(l) = q.limit {
            t.push_str(&format!(" LIMIT {}", sql.param(Bind::Int(l as i64))));
        } else {
            t.push_str(" LIMIT 100000");
        }
        if q.offset > 0 {
            t.push_str(&format!(
                " OFFSET {}",
                sql.param(Bind::Int(q.offset as i64))
            ));
        }
        t
    };
    sql.text = match q.level {
        QueryLevel::Patient => {
            let pg = page(&mut sql);
            format!(
                "SELECT s.patient_id, s.issuer, MAX(s.patient_name) AS patient_name, MAX(p.birth_date) AS birth_date, \
                 MAX(p.sex) AS sex, COUNT(DISTINCT s.study_uid) AS n \
                 FROM {from} WHERE {wh} GROUP BY s.issuer, s.patient_id ORDER BY s.issuer, s.patient_id{pg}"
            )
        }
        QueryLevel::Study => {
            let pg = page(&mut sql);
            format!(
                "SELECT {STUDY_COLS}, \
                 (SELECT COUNT(*) FROM series c WHERE c.study_uid = s.study_uid) AS n_series, \
                 (SELECT COUNT(*) FROM instances c WHERE c.study_uid = s.study_uid) AS n_instances \
                 FROM {from} WHERE {wh} ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid{pg}"
            )
        }
        QueryLevel::Series => {
            let pg = page(&mut sql);
            format!(
                "SELECT {STUDY_COLS}, se.series_uid, se.modality, se.series_number, se.description AS series_description, \
                 se.body_part, (SELECT COUNT(*) FROM instances c WHERE c.series_uid = se.series_uid) AS n_instances \
                 FROM {from} JOIN series se ON se.study_uid = s.study_uid WHERE {wh} \
                 ORDER BY s.study_date DESC, s.study_uid, se.series_number, se.series_uid{pg}"
            )
        }
        QueryLevel::Instance => {
            let pg = page(&mut sql);
            format!(
                "SELECT {STUDY_COLS}, se.series_uid, se.modality, se.series_number, se.description AS series_description, \
                 se.body_part, i.sop_instance_uid, i.sop_class_uid, i.instance_number, i.pixel_rows, i.pixel_columns, \
                 i.number_of_frames, i.transfer_syntax_uid \
                 FROM {from} JOIN series se ON se.study_uid = s.study_uid JOIN instances i ON i.series_uid = se.series_uid \
                 WHERE {wh} ORDER BY s.study_date DESC, s.study_uid, se.series_number, se.series_uid, i.instance_number, i.sop_instance_uid{pg}"
            )
        }
    };
    let Sql { text, binds } = sql;
    let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
    for b in binds {
        query = match b {
            Bind::Text(t) => query.bind(t),
            Bind::Int(n) => query.bind(n),
        };
    }
    let rows = query
        .fetch_all(pool)
        .await
        .map_err(|e| PortError::Unavailable(e.to_string()))?;
    let mut out: Vec<QueryMatch> = rows
        .iter()
        .map(|r| row(q.level, r))
        .collect::<Result<_, _>>()?;
    if q.level >= QueryLevel::Study {
        modalities(pool, &mut out).await?;
    }
    Ok(out)
}

fn get<T>(r: &AnyRow, col: &str) -> Result<T, PortError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    r.try_get(col)
        .map_err(|e| PortError::Corrupt(format!("search column {col}: {e}")))
}

fn row(level: QueryLevel, r: &AnyRow) -> Result<QueryMatch, PortError> {
    if level == QueryLevel::Patient {
        return Ok(QueryMatch {
            patient_id: get(r, "patient_id")?,
            issuer_of_patient_id: get(r, "issuer")?,
            patient_name: get(r, "patient_name")?,
            patient_birth_date: get(r, "birth_date")?,
            patient_sex: get(r, "sex")?,
            patient_study_count: Some(get(r, "n")?),
            ..Default::default()
        });
    }
    let mut m = QueryMatch {
        study_uid: get(r, "study_uid")?,
        patient_name: get(r, "patient_name")?,
        patient_id: get(r, "patient_id")?,
        issuer_of_patient_id: get(r, "issuer")?,
        patient_birth_date: get(r, "birth_date")?,
        patient_sex: get(r, "sex")?,
        study_date: get(r, "study_date")?,
        study_time: get(r, "study_time")?,
        accession_number: get(r, "accession_number")?,
        study_id: get(r, "study_id")?,
        study_description: get(r, "description")?,
        referring_physician_name: get(r, "referring_physician")?,
        ..Default::default()
    };
    match level {
        QueryLevel::Study => {
            m.study_series_count = Some(get(r, "n_series")?);
            m.study_instance_count = Some(get(r, "n_instances")?);
        }
        QueryLevel::Series | QueryLevel::Instance => {
            m.series_uid = Some(get(r, "series_uid")?);
            m.modality = get(r, "modality")?;
            m.series_number = get(r, "series_number")?;
            m.series_description = get(r, "series_description")?;
            m.body_part_examined = get(r, "body_part")?;
            if level == QueryLevel::Series {
                m.series_instance_count = Some(get(r, "n_instances")?);
            } else {
                m.sop_instance_uid = Some(get(r, "sop_instance_uid")?);
                m.sop_class_uid = Some(get(r, "sop_class_uid")?);
                m.instance_number = get(r, "instance_number")?;
                m.rows = get(r, "pixel_rows")?;
                m.columns = get(r, "pixel_columns")?;
                m.number_of_frames = get(r, "number_of_frames")?;
                m.transfer_syntax_uid = Some(get(r, "transfer_syntax_uid")?);
            }
        }
        QueryLevel::Patient => {}
    }
    Ok(m)
}

/// Fills ModalitiesInStudy for the matched studies with one query.
async fn modalities(pool: &AnyPool, out: &mut [QueryMatch]) -> Result<(), PortError> {
    let mut uids: Vec<&str> = out.iter().map(|m| m.study_uid.as_str()).collect();
    uids.sort_unstable();
    uids.dedup();
    let mut found: Vec<(String, String)> = Vec::new();
    for chunk in uids.chunks(500) {
        let ps: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let text = format!(
            "SELECT DISTINCT study_uid, modality FROM series WHERE modality IS NOT NULL AND study_uid IN ({}) ORDER BY study_uid, modality",
            ps.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
        for u in chunk {
            query = query.bind(u.to_string());
        }
        let rows = query
            .fetch_all(pool)
            .await
            .map_err(|e| PortError::Unavailable(e.to_string()))?;
        for r in &rows {
            found.push((get(r, "study_uid")?, get(r, "modality")?));
        }
    }
    for m in out.iter_mut() {
        m.modalities_in_study = found
            .iter()
            .filter(|(s, _)| *s == m.study_uid)
            .map(|(_, md)| md.clone())
            .collect();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_the_value() {
        assert_eq!(like_pattern("Ces*"), "Ces%");
        assert_eq!(like_pattern("a?b"), "a_b");
        assert_eq!(like_pattern("100%_x"), "100\\%\\_x");
    }
}
