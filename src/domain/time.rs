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

impl Millis {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` for the years 0 to 9999, without a general formatter: the
    /// persister writes several per task it saves, and the API one per time it shows.
    fn format_canonical(self) -> Option<[u8; 24]> {
        let (days, millis_of_day) = (self.0.div_euclid(86_400_000), self.0.rem_euclid(86_400_000));
        // The civil date from days (Howard Hinnant's algorithm), the inverse of the parser's.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut text = *b"0000-00-00T00:00:00.000Z";
        let mut digits = |at: usize, width: usize, mut n: i64| {
            for i in (at..at + width).rev() {
                text[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        digits(0, 4, year);
        digits(5, 2, month);
        digits(8, 2, day);
        digits(11, 2, millis_of_day / 3_600_000);
        digits(14, 2, millis_of_day / 60_000 % 60);
        digits(17, 2, millis_of_day / 1000 % 60);
        digits(20, 3, millis_of_day % 1000);
        Some(text)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.format_canonical() {
            return f.write_str(std::str::from_utf8(&text).expect("ASCII digits and separators"));
        }
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

    fn general_format(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    #[test]
    fn the_fast_format_agrees_with_the_general_one() {
        let year_0 = -62_167_219_200_000;
        let after_year_9999 = 253_402_300_800_000;
        for ms in [year_0, -86_400_001, -1, 0, 951_782_400_000, 1_709_251_199_999, after_year_9999 - 1] {
            assert_eq!(Millis(ms).to_string(), general_format(ms));
        }
        assert_eq!(Millis(year_0 - 1).format_canonical(), None, "year -1 takes the general path");
        assert_eq!(Millis(after_year_9999).format_canonical(), None, "year 10000 takes the general path");
        assert_eq!(Millis(after_year_9999).to_string(), general_format(after_year_9999));
        assert_eq!(Millis(i64::MIN).to_string(), i64::MIN.to_string(), "beyond any calendar: the number");
        assert_eq!(Millis(i64::MAX).to_string(), i64::MAX.to_string());
    }

    proptest::proptest! {
        #[test]
        fn any_time_in_years_0_to_9999_formats_as_chrono_does(ms in -62_167_219_200_000i64..253_402_300_800_000) {
            proptest::prop_assert_eq!(Millis(ms).to_string(), general_format(ms));
        }
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
