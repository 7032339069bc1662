//! Human durations on the command line (`30s`, `10m`, `2h`, `1d`, `1h30m`,
//! `250ms`) and their compact display ([`format_duration`]).
//!
//! A unit is always required: a bare `10` could mean seconds to one operator
//! and minutes to the next, and lifetimes are too important to guess.

use std::fmt;
use std::time::Duration;

/// A string that is not a duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError(pub(crate) &'static str);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected a duration such as 30s, 10m, 2h, 1d or 1h30m",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses one or more `<integer><unit>` parts, unit one of `ms`, `s`, `m`,
/// `h`, `d`, and adds them up.
///
/// # Errors
/// [`DurationError`] for an empty string, a part without a number or unit, an
/// unknown unit or an overflow.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError("empty duration"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError("missing number"));
        }
        let (number, tail) = rest.split_at(digits);
        let value: u64 = number
            .parse()
            .map_err(|_| DurationError("number too large"))?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return Err(DurationError("missing unit"));
        }
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Some(Duration::from_millis(value)),
            "s" => Some(Duration::from_secs(value)),
            "m" => value.checked_mul(60).map(Duration::from_secs),
            "h" => value.checked_mul(3_600).map(Duration::from_secs),
            "d" => value.checked_mul(86_400).map(Duration::from_secs),
            _ => return Err(DurationError("unknown unit")),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or(DurationError("duration too large"))?;
        rest = tail;
    }
    Ok(total)
}

/// The text of a default duration, for `--help` and clap's `default_value`:
/// [`format_duration`] of `d`, which must read back as `d` exactly.
///
/// # Panics
/// When it does not (a default with more than two units, or sub-millisecond
/// parts): defaults are constants, and the CLI default tests build every one.
pub fn default_text(d: Duration) -> String {
    let text = format_duration(d);
    assert!(
        parse_duration(&text) == Ok(d),
        "the default {d:?} has no exact text ({text})"
    );
    text
}

/// The `default_value` of a duration flag, derived from its [`Duration`]
/// constant so that each default is written once, where its behaviour lives:
/// `default_value = duration_default!(DEFAULT_STALE_AFTER)`. The text
/// ([`default_text`]) is built once per flag. (clap's `default_value_t` needs
/// the field type to be `Display`, which `Duration` is not.)
macro_rules! duration_default {
    ($value:expr) => {{
        static TEXT: ::std::sync::OnceLock<String> = ::std::sync::OnceLock::new();
        TEXT.get_or_init(|| $crate::duration::default_text($value))
            .as_str()
    }};
}
pub(crate) use duration_default;

/// A compact rendering: `1d2h`, `9m58s`, `3s`, `250ms`, `0s`. Whole seconds
/// are shown without milliseconds; the two largest units are kept.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        let ms = d.subsec_millis();
        return if ms == 0 {
            "0s".to_owned()
        } else {
            format!("{ms}ms")
        };
    }
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut out = String::new();
    let mut left = secs;
    let mut shown = 0;
    for (size, name) in units {
        let n = left / size;
        left %= size;
        if n > 0 || shown > 0 {
            if n > 0 {
                out.push_str(&format!("{n}{name}"));
            }
            shown += 1;
        }
        if shown == 2 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_compounds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "1.5h",
            "-1s",
            "1h30",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("999999999999999d").is_err(), "overflow");
        let text = parse_duration("10").unwrap_err().to_string();
        assert!(text.contains("30s, 10m, 2h, 1d"), "{text}");
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(3)), "3s");
        assert_eq!(format_duration(Duration::from_secs(598)), "9m58s");
        assert_eq!(format_duration(Duration::from_secs(3_600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(3_605)), "1h");
        assert_eq!(format_duration(Duration::from_secs(93_600)), "1d2h");
    }
}
