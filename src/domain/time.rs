use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

/// A point in time as milliseconds since the Unix epoch, UTC.
///
/// The API and the database both write it the way JavaScript's `Date.toJSON` does
/// (`2026-11-23T22:01:44.123Z`), which also sorts correctly as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub i64);

impl Millis {
    /// The wall clock now.
    pub fn now() -> Millis {
        Millis(Utc::now().timestamp_millis())
    }

    pub fn plus_seconds(self, seconds: u32) -> Millis {
        Millis(self.0.saturating_add(i64::from(seconds) * 1000))
    }

    /// Parses an RFC 3339 timestamp (any offset; the result is UTC).
    pub fn parse(text: &str) -> Option<Millis> {
        DateTime::parse_from_rfc3339(text).ok().map(|t| Millis(t.timestamp_millis()))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_javascript_and_round_trips() {
        let t = Millis(1_795_471_304_123);
        assert_eq!(t.to_string(), "2026-11-23T22:01:44.123Z");
        assert_eq!(Millis::parse(&t.to_string()), Some(t));
        assert_eq!(Millis::parse("2026-11-23T23:01:44.123+01:00"), Some(t));
        assert_eq!(Millis::parse("yesterday"), None);
    }
}
