//! Patients: site-local identifiers, the alliance patient key, resident-ID checks and masking.

use std::fmt;

/// A patient identifier as one site issues it (DICOM PatientID + IssuerOfPatientID, HL7 PID-3 + authority).
/// Never unique across sites on its own. Its `Debug` is redacted so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LocalPatientId {
    pub issuer: String,
    pub id: String,
}

impl fmt::Debug for LocalPatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LocalPatientId({}, {})",
            self.issuer,
            mask_identifier(&self.id)
        )
    }
}

/// The alliance-wide patient key: a keyed hash (hex) of the resident ID when one is known, else of the
/// local identifier. It links a patient's results across sites without storing the resident ID itself.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PatientKey(pub String);

/// A resident ID number (居民身份证号, GB 11643-1999), checked with its check character.
#[derive(Clone, PartialEq, Eq)]
pub struct ResidentId(String);

impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", mask_identifier(&self.0))
    }
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

impl ResidentId {
    /// Accepts an 18-character resident ID whose check character is right (a lower-case `x` is accepted).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() != 18 || !s.is_ascii() {
            return None;
        }
        let upper = s.to_ascii_uppercase();
        let (body, check) = upper.split_at(17);
        let mut sum = 0u32;
        for (c, w) in body.chars().zip(WEIGHTS) {
            sum += c.to_digit(10)? * w;
        }
        let expected = CHECK[(sum % 11) as usize];
        check.starts_with(expected).then_some(ResidentId(upper))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shows the first 3 and last 2 characters of an identifier: `110105********123X` style.
pub fn mask_identifier(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let keep_tail = 2.min(chars.len() - 3);
    let mut out: String = chars[..3].iter().collect();
    out.push_str(&"*".repeat(chars.len() - 3 - keep_tail));
    out.extend(&chars[chars.len() - keep_tail..]);
    out
}

/// Masks a person's name for display: `张三丰` → `张*丰`, `王五` → `王*`, DICOM `Doe^John` → `D***^J***`.
pub fn mask_name(name: &str) -> String {
    name.split('^')
        .map(|part| {
            let chars: Vec<char> = part.trim().chars().collect();
            match chars.len() {
                0 => String::new(),
                1 | 2 => format!("{}*", chars[0]),
                n if chars.iter().all(|c| c.is_ascii()) => {
                    format!("{}{}", chars[0], "*".repeat(n - 1))
                }
                n => format!("{}{}{}", chars[0], "*".repeat(n - 2), chars[n - 1]),
            }
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("^")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_id_check_character() {
        // Published GB 11643 example.
        assert!(ResidentId::parse("11010519491231002X").is_some());
        assert!(ResidentId::parse("11010519491231002x").is_some());
        assert!(ResidentId::parse("110105194912310021").is_none());
        assert!(ResidentId::parse("440524188001010014").is_some());
        assert!(ResidentId::parse("44052418800101001").is_none());
        assert!(ResidentId::parse("4405241880010100１4").is_none());
    }

    #[test]
    fn masking_hides_the_middle() {
        assert_eq!(mask_identifier("11010519491231002X"), "110*************2X");
        assert_eq!(mask_identifier("P123"), "****");
        assert_eq!(mask_identifier("P12345"), "P12*45");
        assert_eq!(mask_name("张三丰"), "张*丰");
        assert_eq!(mask_name("王五"), "王*");
        assert_eq!(mask_name("Doe^John"), "D**^J***");
        let debug = format!(
            "{:?}",
            LocalPatientId {
                issuer: "HX".into(),
                id: "HX0001234".into()
            }
        );
        assert!(!debug.contains("HX0001234"));
    }
}
