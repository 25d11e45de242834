//! Kubernetes timestamps: RFC 3339 in UTC to the second (`2006-01-02T15:04:05Z`, Go's `metav1.Time`), as
//! Unix seconds and nanoseconds. The one formatter and parser of timestamps the API machinery uses, on jiff's
//! calendar.
//!
//! Invariants:
//! - Every year RFC 3339 can write (0000 to 9999) formats and parses; anything else is `None`, never a panic.
//! - Parsing is RFC 3339's grammar (a `T`, seconds, an optional fraction, `Z` or `±hh:mm`); a fraction longer
//!   than nanoseconds is truncated, as Go reads it.

use jiff::civil::{Date, DateTime};
use jiff::fmt::temporal::DateTimeParser;
use jiff::{Span, Unit};

const SECONDS_PER_DAY: i64 = 86_400;

/// Go's zero `time.Time`, which Kubernetes prints for a missing timestamp.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds.
pub const ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// The Unix seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the years RFC 3339 can write.
pub const FIRST_SECOND: i64 = -62_167_219_200;
pub const LAST_SECOND: i64 = 253_402_300_799;

fn epoch() -> Date {
    jiff::civil::date(1970, 1, 1)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`, for the years 0000 to 9999.
pub fn format(seconds: i64) -> Option<String> {
    if !(FIRST_SECOND..=LAST_SECOND).contains(&seconds) {
        return None;
    }
    let day = epoch().checked_add(Span::new().days(seconds.div_euclid(SECONDS_PER_DAY))).ok()?;
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let time =
        jiff::civil::time((second_of_day / 3600) as i8, (second_of_day / 60 % 60) as i8, (second_of_day % 60) as i8, 0);
    Some(day.to_datetime(time).strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Parses an RFC 3339 timestamp into Unix seconds and nanoseconds.
pub fn parse(text: &str) -> Option<(i64, u32)> {
    let b = text.as_bytes();
    // jiff's parser also reads ISO 8601 forms RFC 3339 does not allow (a space for the `T`, no seconds, a
    // fraction with a comma); those are refused here first.
    let rfc3339_shape = b.len() >= 20 && matches!(b[10], b'T' | b't') && b[16] == b':' && b[19] != b',';
    if !rfc3339_shape || b[19] == b'.' && !b.get(20).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let text = truncate_fraction(text);
    let pieces = DateTimeParser::new().parse_pieces(text.as_bytes()).ok()?;
    let offset = pieces.to_numeric_offset()?;
    if pieces.time().is_none() || pieces.time_zone_annotation().is_some() {
        return None;
    }
    let datetime: DateTime = pieces.date().to_datetime(pieces.time()?);
    let days = datetime.date().since((Unit::Day, epoch())).ok()?.get_days();
    let time = datetime.time();
    let second_of_day = i64::from(time.hour()) * 3600 + i64::from(time.minute()) * 60 + i64::from(time.second());
    let seconds = i64::from(days) * SECONDS_PER_DAY + second_of_day - i64::from(offset.seconds());
    Some((seconds, time.subsec_nanosecond() as u32))
}

/// `text` with a fraction of more than nine digits cut to nine (jiff reads nanoseconds at most).
fn truncate_fraction(text: &str) -> std::borrow::Cow<'_, str> {
    const DOT: usize = 19;
    if text.get(DOT..=DOT) != Some(".") {
        return text.into();
    }
    let digits = text[DOT + 1..].bytes().take_while(u8::is_ascii_digit).count();
    if digits <= 9 {
        return text.into();
    }
    format!("{}{}", &text[..DOT + 10], &text[DOT + 1 + digits..]).into()
}

/// A timestamp as Kubernetes prints it, Go's zero time when it is missing or out of range.
pub fn format_or_zero(instant: Option<(i64, u32)>) -> String {
    instant.and_then(|(seconds, _)| format(seconds)).unwrap_or_else(|| ZERO_TIME.to_owned())
}

/// Now, to the second.
pub fn now() -> String {
    let now = jiff::Timestamp::now().as_second();
    format(now).unwrap_or_else(|| ZERO_TIME.to_owned())
}

/// `seconds` from now, to the second.
pub fn from_now(seconds: i64) -> String {
    let at = jiff::Timestamp::now().as_second().saturating_add(seconds);
    format(at.clamp(FIRST_SECOND, LAST_SECOND)).unwrap_or_else(|| ZERO_TIME.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-05-01T12:00:00Z.
    const NOW: i64 = 1_714_564_800;

    #[test]
    fn format_covers_the_representable_years() {
        assert_eq!(format(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(format(1_700_000_000).as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(format(951_782_400).as_deref(), Some("2000-02-29T00:00:00Z"));
        assert_eq!(format(-1).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(format(LAST_SECOND).as_deref(), Some("9999-12-31T23:59:59Z"));
        assert_eq!(format(FIRST_SECOND).as_deref(), Some("0000-01-01T00:00:00Z"));
        assert_eq!(format(ZERO_TIME_SECONDS).as_deref(), Some(ZERO_TIME));
        assert_eq!(format(LAST_SECOND + 1), None);
        assert_eq!(format(i64::MIN), None);
        assert_eq!(format_or_zero(None), ZERO_TIME);
    }

    #[test]
    fn parse_reads_rfc3339_only() {
        let cases: &[(&str, Option<(i64, u32)>)] = &[
            ("1970-01-01T00:00:00Z", Some((0, 0))),
            ("2024-05-01T12:00:00Z", Some((NOW, 0))),
            ("2024-05-01t12:00:00z", Some((NOW, 0))),
            ("2024-05-01T12:00:00.5Z", Some((NOW, 500_000_000))),
            ("2024-05-01T12:00:00.123456789123Z", Some((NOW, 123_456_789))),
            ("2024-05-01T14:30:00+02:30", Some((NOW, 0))),
            ("2024-05-01T09:00:00-03:00", Some((NOW, 0))),
            ("2024-02-29T00:00:00Z", Some((1_709_164_800, 0))),
            ("1969-12-31T23:59:59Z", Some((-1, 0))),
            ("2023-02-29T00:00:00Z", None),
            ("2024-13-01T00:00:00Z", None),
            ("2024-05-01 12:00:00Z", None),
            ("2024-05-01T12:00:00", None),
            ("2024-05-01T12:00:00.Z", None),
            ("2024-05-01T12:00:00,5Z", None),
            ("2024-05-01T24:00:00Z", None),
            ("2024-05-01T12:00:00+2:00", None),
            ("2024-05-01T12:00:00Z[UTC]", None),
            ("", None),
            ("not a time at all, really", None),
        ];
        for &(input, expected) in cases {
            assert_eq!(parse(input), expected, "{input:?}");
        }
        for secs in [0, NOW, -86_400 * 365, FIRST_SECOND, ZERO_TIME_SECONDS, LAST_SECOND] {
            assert_eq!(parse(&format(secs).unwrap()), Some((secs, 0)));
        }
    }

    #[test]
    fn now_is_a_timestamp_to_the_second() {
        let (seconds, nanos) = parse(&now()).unwrap();
        assert_eq!(nanos, 0);
        assert!((jiff::Timestamp::now().as_second() - seconds).abs() <= 1);
        assert!(parse(&from_now(30)).unwrap().0 >= seconds + 29);
    }
}
