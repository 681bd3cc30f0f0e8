//! RFC 8785 (JCS) canonical JSON. Object members are sorted by their UTF-16 code units, no white
//! space, strings escaped minimally. Numbers are restricted to integers of magnitude below 2^53, which
//! print identically in every JSON implementation; report documents use no other numbers, and a
//! fractional or huge number is refused rather than risk two verifiers disagreeing.

use serde_json::Value;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    #[error(
        "number {0} is not an integer below 2^53: signed documents carry such numbers as strings"
    )]
    Number(String),
}

const MAX_SAFE: u64 = (1 << 53) - 1;

/// The canonical UTF-8 text of `value`.
pub fn canonicalize(value: &Value) -> Result<String, CanonError> {
    let mut out = String::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut String) -> Result<(), CanonError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let ok = n
                .as_i64()
                .map(|i| i.unsigned_abs() <= MAX_SAFE)
                .or_else(|| n.as_u64().map(|u| u <= MAX_SAFE));
            match ok {
                Some(true) => out.push_str(&n.to_string()),
                _ => return Err(CanonError::Number(n.to_string())),
            }
        }
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                write(v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_members_by_utf16_and_drops_whitespace() {
        // RFC 8785 §3.2.3 sorting example (keys given out of order).
        let v: Value = serde_json::from_str(
            r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\
                        \"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canonicalize(&v).unwrap(), expected);
    }

    #[test]
    fn escapes_minimally_and_keeps_unicode() {
        let v = json!({"b": [1, true, null], "a": "报告\n\"x\"\u{1}/"});
        assert_eq!(
            canonicalize(&v).unwrap(),
            "{\"a\":\"报告\\n\\\"x\\\"\\u0001/\",\"b\":[1,true,null]}"
        );
    }

    #[test]
    fn refuses_numbers_that_could_print_differently() {
        assert_eq!(
            canonicalize(&json!(1.5)),
            Err(CanonError::Number("1.5".into()))
        );
        assert!(canonicalize(&json!(9007199254740992_u64)).is_err());
        assert_eq!(
            canonicalize(&json!(-9007199254740991_i64)).unwrap(),
            "-9007199254740991"
        );
    }
}
