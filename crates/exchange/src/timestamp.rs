use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// An RFC 3339 instant as written in the log: the text is kept for output (`first_flagged`
/// echoes it verbatim) and the parsed milliseconds since the Unix epoch drive all arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Timestamp {
    millis: i64,
    text: String,
}

impl Timestamp {
    /// Parses RFC 3339 text (offset required).
    pub fn parse(text: &str) -> Result<Self, chrono::ParseError> {
        let parsed = chrono::DateTime::parse_from_rfc3339(text)?;
        Ok(Self {
            millis: parsed.timestamp_millis(),
            text: text.to_owned(),
        })
    }

    /// The UTC instant `millis` after the epoch, written with millisecond precision and `Z`.
    pub fn from_millis(millis: i64) -> Self {
        let dt = chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default();
        Self {
            millis,
            text: dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        }
    }

    pub fn millis(&self) -> i64 {
        self.millis
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v)
                    .map_err(|e| E::custom(format_args!("invalid timestamp {v:?}: {e}")))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_text_and_parses_offsets() {
        let a = Timestamp::parse("2026-03-01T12:00:00.123Z").unwrap();
        let b = Timestamp::parse("2026-03-01T13:00:00.123+01:00").unwrap();
        assert_eq!(a.millis(), b.millis());
        assert_eq!(b.as_str(), "2026-03-01T13:00:00.123+01:00");
        assert!(Timestamp::parse("2026-03-01 12:00:00").is_err());
    }

    #[test]
    fn from_millis_round_trips() {
        let t = Timestamp::from_millis(1_772_366_400_123);
        assert_eq!(
            Timestamp::parse(t.as_str()).unwrap().millis(),
            1_772_366_400_123
        );
    }
}
