//! Scalar parsing exactly as Go's `flag` and `strconv`/`time` packages do it, because
//! etcd's flags are Go flags: `--snapshot-count=0x10` is 16, `--enable-v2=T` is true,
//! `--grpc-keepalive-time=1m30s` is 90 s. Errors are the texts Go's flag package prints
//! (`parse error`, `value out of range`) so ketch's messages match etcd's.

use std::time::Duration;

/// Go's `flag` package turns any `strconv` syntax error into this text.
pub const PARSE_ERROR: &str = "parse error";
/// ... and any `strconv` range error into this one.
pub const RANGE_ERROR: &str = "value out of range";

/// Why a Go integer literal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    Syntax,
    Range,
}

impl NumError {
    /// The text Go's flag package prints for this error.
    pub fn flag_text(self) -> &'static str {
        match self {
            NumError::Syntax => PARSE_ERROR,
            NumError::Range => RANGE_ERROR,
        }
    }
}

/// `strconv.ParseUint(s, 0, bits)`: base prefixes `0x`, `0o`, `0b`, a leading `0` for octal,
/// and underscores between digits (Go literal syntax, so `1_000` is 1000).
pub fn parse_uint(s: &str, bits: u32) -> Result<u64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let (base, digits) = split_base(s);
    if digits.is_empty() && base != 8 {
        return Err(NumError::Syntax);
    }
    if s.contains('_') && !underscores_ok(s) {
        return Err(NumError::Syntax);
    }
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut value: u64 = 0;
    let mut range_error = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(base).ok_or(NumError::Syntax)?;
        match value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) if v <= max => value = v,
            _ => range_error = true,
        }
    }
    if range_error {
        return Err(NumError::Range);
    }
    Ok(value)
}

/// `strconv.ParseInt(s, 0, bits)`: an optional sign, then `parse_uint` rules.
pub fn parse_int(s: &str, bits: u32) -> Result<i64, NumError> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_uint(rest, 64)?;
    let limit = 1u64 << (bits - 1);
    if negative {
        if magnitude > limit {
            return Err(NumError::Range);
        }
        Ok((magnitude as i128).wrapping_neg() as i64)
    } else {
        if magnitude >= limit {
            return Err(NumError::Range);
        }
        Ok(magnitude as i64)
    }
}

fn split_base(s: &str) -> (u32, &str) {
    let lower = s.get(..2).map(str::to_ascii_lowercase);
    match lower.as_deref() {
        Some("0x") => (16, &s[2..]),
        Some("0o") => (8, &s[2..]),
        Some("0b") => (2, &s[2..]),
        _ if s.len() > 1 && s.starts_with('0') => (8, &s[1..]),
        _ => (10, s),
    }
}

/// Go's `underscoreOK`: underscores only between digits (or right after the base prefix).
fn underscores_ok(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    if bytes.len() >= 2 && bytes[0] == b'0' {
        let p = bytes[1].to_ascii_lowercase();
        if p == b'x' || p == b'o' || p == b'b' {
            i = 2;
            saw = b'0';
        }
    }
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_hexdigit() {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, NumError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(NumError::Syntax),
    }
}

/// `time.ParseDuration`, limited to non-negative durations (ketch has no use for negative
/// timeouts; etcd would accept them and behave oddly). Errors are Go's texts.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let (value_ns, after) = duration_term(rest, s)?;
        total_ns += value_ns;
        rest = after;
    }
    if total_ns > u128::from(i64::MAX as u64) {
        return Err(invalid());
    }
    if negative && total_ns != 0 {
        return Err(format!("negative duration \"{s}\" is not supported"));
    }
    Ok(Duration::from_nanos(total_ns as u64))
}

/// One `<number><unit>` term of a Go duration; returns its nanoseconds and the remainder.
fn duration_term<'a>(rest: &'a str, whole: &str) -> Result<(u128, &'a str), String> {
    let invalid = || format!("time: invalid duration \"{whole}\"");
    let int_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (int_part, mut after) = rest.split_at(int_end);
    let mut frac_part = "";
    if let Some(stripped) = after.strip_prefix('.') {
        let frac_end = stripped
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(stripped.len());
        frac_part = &stripped[..frac_end];
        after = &stripped[frac_end..];
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(invalid());
    }
    let unit_end = after
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(after.len());
    let (unit, remainder) = after.split_at(unit_end);
    if unit.is_empty() {
        return Err(format!("time: missing unit in duration \"{whole}\""));
    }
    let unit_ns: u128 = match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "time: unknown unit \"{unit}\" in duration \"{whole}\""
            ));
        }
    };
    let int_value: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| invalid())?
    };
    let mut ns = int_value.checked_mul(unit_ns).ok_or_else(invalid)?;
    let mut scale = unit_ns;
    for digit in frac_part.chars().take(30) {
        scale /= 10;
        ns += u128::from(digit.to_digit(10).unwrap_or(0)) * scale;
    }
    Ok((ns, remainder))
}

/// `time.Duration.String()`: `0s`, `100ms`, `1s`, `1m30s`, `2h0m0s`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("\u{b5}s", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(ns, div));
    }
    let hours = ns / 3_600_000_000_000;
    let minutes = (ns / 60_000_000_000) % 60;
    let seconds = fraction(ns % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `value / div` with the fractional digits Go prints (trailing zeros trimmed).
fn fraction(value: u128, div: u128) -> String {
    let whole = value / div;
    let frac = value % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_accepts_go_base_prefixes_and_underscores() {
        assert_eq!(parse_uint("100", 64), Ok(100));
        assert_eq!(parse_uint("0x10", 64), Ok(16));
        assert_eq!(parse_uint("010", 64), Ok(8));
        assert_eq!(parse_uint("0b11", 64), Ok(3));
        assert_eq!(parse_uint("0", 64), Ok(0));
        // etcd 3.4.23 starts with --heartbeat-interval=1_0 (measured), so Go accepts it.
        assert_eq!(parse_uint("1_0", 64), Ok(10));
        assert_eq!(parse_uint("1__0", 64), Err(NumError::Syntax));
        assert_eq!(parse_uint("_10", 64), Err(NumError::Syntax));
        assert_eq!(parse_uint("0x1_0", 64), Ok(16));
        assert_eq!(parse_uint("-1", 64), Err(NumError::Syntax));
        assert_eq!(parse_uint("0x10x", 64), Err(NumError::Syntax));
        assert_eq!(parse_uint("99999999999999999999", 64), Err(NumError::Range));
        assert_eq!(parse_uint("4294967296", 32), Err(NumError::Range));
    }

    #[test]
    fn int_handles_sign_and_range() {
        assert_eq!(parse_int("-5", 64), Ok(-5));
        assert_eq!(parse_int("+5", 64), Ok(5));
        assert_eq!(parse_int("-9223372036854775808", 64), Ok(i64::MIN));
        assert_eq!(parse_int("9223372036854775808", 64), Err(NumError::Range));
        assert_eq!(parse_int("x", 64), Err(NumError::Syntax));
    }

    #[test]
    fn durations_parse_and_format_like_go() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(
            parse_duration("1"),
            Err("time: missing unit in duration \"1\"".to_owned())
        );
        assert_eq!(
            parse_duration("1x"),
            Err("time: unknown unit \"x\" in duration \"1x\"".to_owned())
        );
        assert_eq!(
            parse_duration("abc"),
            Err("time: invalid duration \"abc\"".to_owned())
        );
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m0s");
    }
}
