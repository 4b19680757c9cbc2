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
        Millis::parse_canonical(text)
            .or_else(|| DateTime::parse_from_rfc3339(text).ok().map(|t| Millis(t.timestamp_millis())))
    }

    /// The form this program writes, `YYYY-MM-DDTHH:MM:SS.mmmZ`, without a general parser:
    /// start-up reads two or three of these per task, and a million tasks must load fast.
    fn parse_canonical(text: &str) -> Option<Millis> {
        let b = text.as_bytes();
        if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        if b[19] != b'.' || b[23] != b'Z' {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            b[range].iter().try_fold(0i64, |n, d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second, milli) = (number(11..13)?, number(14..16)?, number(17..19)?, number(20..23)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        // Days from the civil date (Howard Hinnant's algorithm), valid for the proleptic
        // Gregorian calendar.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        Some(Millis(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli))
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

    #[test]
    fn the_fast_path_agrees_with_the_general_parser() {
        for ms in [0, 951_782_400_000, 1_709_251_199_999, 1_795_471_304_123, 4_102_444_800_000, -86_400_000] {
            let text = Millis(ms).to_string();
            assert_eq!(Millis::parse_canonical(&text), Some(Millis(ms)), "{text}");
        }
        assert_eq!(Millis::parse_canonical("2026-13-01T00:00:00.000Z"), None);
        assert_eq!(Millis::parse_canonical("2026-11-23T22:01:44.123+01:00"), None);
    }
}
