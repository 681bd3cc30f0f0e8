//! The alliance patient index (患者主索引): how a look-up by one identifier finds a person's results
//! at every site, and refuses to guess when a site identifier names two people.
//!
//! Results are filed under a patient key: the keyed hash of a resident ID (GB 11643) when the message
//! carried one among its identifiers, else of the site identifier (issuer + ID). Every site identifier
//! a message carries is linked to the key it was filed under (`patient_links`). A look-up then:
//! - by resident ID: its key, plus the site-only key of every site identifier linked to it, unless that
//!   identifier is also linked to another person's key (a conflict: those results are left out and
//!   counted as unattributed);
//! - by site identifier: the person keys linked to it. None: the identifier's own key (a patient
//!   known only at that site). One: as the resident-ID look-up of that key. More than one: the
//!   identifier names two people (a number reused or mistyped at the site): refused, so nobody is
//!   shown another person's results; the resident ID finds them.
//!
//! The same local ID at two sites is two identifiers (issuers differ), so it never links two people.

use yilian_domain::{LocalPatientId, PatientKey, ResidentId};

use crate::error::AppError;
use crate::hub::Hub;

/// The identifier a message is filed under: the first resident ID among them, if any.
pub fn keyed_id(ids: &[LocalPatientId]) -> Option<&LocalPatientId> {
    ids.iter().find(|i| ResidentId::parse(&i.id).is_some())
}

/// The identifiers the index links: every one that is not a resident ID (those are only hashed).
pub fn site_ids(ids: &[LocalPatientId]) -> Vec<LocalPatientId> {
    ids.iter()
        .filter(|i| ResidentId::parse(&i.id).is_none() && !i.id.trim().is_empty())
        .cloned()
        .collect()
}

/// What a look-up accepts: a resident ID with a right check character (any issuer), or a site ID
/// with the issuer that gave it. A resident-ID-shaped value whose check character is wrong is a typing
/// error worth saying (400), not a site ID nobody issued.
pub fn check_lookup_id(local: &LocalPatientId) -> Result<(), AppError> {
    if ResidentId::parse(&local.id).is_some() {
        return Ok(());
    }
    let id = local.id.trim();
    let shaped = id.len() == 18
        && id[..17].bytes().all(|b| b.is_ascii_digit())
        && id[17..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'X' || b == b'x');
    if shaped && local.issuer.trim().is_empty() {
        return Err(AppError::Invalid(
            "身份证号校验位不符（GB 11643），请核对。 The resident ID's check character is wrong (GB 11643): please check the number.".into(),
        ));
    }
    if local.issuer.trim().is_empty() {
        return Err(AppError::Invalid(
            "院内号须注明发放机构（issuer）；身份证号无需。 A local patient ID needs its issuer; a resident ID does not.".into(),
        ));
    }
    Ok(())
}

/// Whom a look-up found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatientMatch {
    /// Nobody with this identifier.
    Unknown,
    /// One person: the keys their results are filed under (the first is the person key), and how
    /// many of their site identifiers were left out because they also name someone else.
    Found {
        keys: Vec<PatientKey>,
        unattributed: usize,
    },
    /// The site identifier is linked to more than one person.
    Ambiguous,
}

impl PatientMatch {
    pub fn keys(&self) -> &[PatientKey] {
        match self {
            PatientMatch::Found { keys, .. } => keys,
            _ => &[],
        }
    }

    /// The person key, for the audit trail.
    pub fn person(&self) -> Option<&PatientKey> {
        self.keys().first()
    }

    pub fn unattributed(&self) -> usize {
        match self {
            PatientMatch::Found { unattributed, .. } => *unattributed,
            _ => 0,
        }
    }
}

impl Hub {
    /// Finds the person an identifier names (see the module documentation). A valid resident ID is
    /// taken whatever the issuer; any other identifier needs the issuer that gave it.
    pub async fn find_patient(&self, local: &LocalPatientId) -> Result<PatientMatch, AppError> {
        if ResidentId::parse(&local.id).is_some() {
            return self.expand(self.patient_key(local)).await;
        }
        let own = self.patient_key(local);
        let mut linked = self
            .catalog
            .keys_linked_to_id(&local.issuer, &local.id)
            .await?;
        if linked.is_empty() {
            // Filed before the index existed and not copied into it (see migration 0016).
            if let Some(k) = self
                .catalog
                .patient_key_of(&local.issuer, &local.id)
                .await?
            {
                linked.push(k);
            }
        }
        if linked.is_empty() {
            return Ok(PatientMatch::Unknown);
        }
        let people: Vec<PatientKey> = linked.into_iter().filter(|k| *k != own).collect();
        match people.as_slice() {
            [] => Ok(PatientMatch::Found {
                keys: vec![own],
                unattributed: 0,
            }),
            [person] => self.expand(person.clone()).await,
            _ => Ok(PatientMatch::Ambiguous),
        }
    }

    /// A person key and the site-only keys of their identifiers that name nobody else.
    async fn expand(&self, person: PatientKey) -> Result<PatientMatch, AppError> {
        let mut keys = vec![person.clone()];
        let mut unattributed = 0;
        for id in self.catalog.ids_linked_to_key(&person).await? {
            let own = self.patient_key(&id);
            if own == person {
                continue;
            }
            let others = self
                .catalog
                .keys_linked_to_id(&id.issuer, &id.id)
                .await?
                .into_iter()
                .any(|k| k != own && k != person);
            if others {
                unattributed += 1;
            } else if !keys.contains(&own) {
                keys.push(own);
            }
        }
        Ok(PatientMatch::Found { keys, unattributed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(issuer: &str, id: &str) -> LocalPatientId {
        LocalPatientId {
            issuer: issuer.into(),
            id: id.into(),
        }
    }

    #[test]
    fn a_resident_id_among_the_identifiers_is_the_key_and_is_never_linked() {
        let ids = vec![
            id("HX", "1001"),
            id("RID", "11010519491231002X"),
            id("DS", "77"),
        ];
        assert_eq!(keyed_id(&ids), Some(&ids[1]));
        assert_eq!(site_ids(&ids), vec![id("HX", "1001"), id("DS", "77")]);
        assert_eq!(keyed_id(&ids[..1]), None);
    }

    #[test]
    fn a_look_up_needs_a_valid_resident_id_or_an_issued_local_id() {
        assert!(check_lookup_id(&id("", "11010519491231002X")).is_ok());
        assert!(check_lookup_id(&id("ANY", "11010519491231002x")).is_ok());
        assert!(check_lookup_id(&id("HX", "1001")).is_ok());
        let e = check_lookup_id(&id("", "110105194912310021")).unwrap_err();
        assert!(e.to_string().contains("check character"), "{e}");
        let e = check_lookup_id(&id(" ", "1001")).unwrap_err();
        assert!(e.to_string().contains("needs its issuer"), "{e}");
    }
}
