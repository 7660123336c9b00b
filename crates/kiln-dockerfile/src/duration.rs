//! Go's `time.ParseDuration` (HEALTHCHECK intervals) and its formatting.

use std::time::Duration;

/// Parses `1h30m`, `1.5s`, `300ms`, `10us`, `0`.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    let bad = || format!("time: invalid duration {}", crate::quote::go_quote(orig));
    let mut s = s;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_len = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        if num_len == 0 {
            return Err(bad());
        }
        let num: f64 = s[..num_len].parse().map_err(|_| bad())?;
        s = &s[num_len..];
        let unit_len = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "time: missing unit in duration {}",
                    crate::quote::go_quote(orig)
                ))
            }
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    crate::quote::go_quote(unit),
                    crate::quote::go_quote(orig)
                ))
            }
        };
        total += num * nanos;
    }
    if neg {
        return Err(format!("duration {orig} cannot be negative"));
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Go's `Duration.String()`: `30s`, `1m30s`, `1.5s`, `500ms`, `0s`.
pub fn format_go_duration(d: Duration) -> String {
    let n = d.as_nanos();
    if n == 0 {
        return "0s".into();
    }
    if n < 1_000 {
        return format!("{n}ns");
    }
    if n < 1_000_000 {
        return format!("{}µs", trim_frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{}ms", trim_frac(n, 1_000_000));
    }
    let mut out = String::new();
    let h = n / 3_600_000_000_000;
    let rem = n % 3_600_000_000_000;
    let m = rem / 60_000_000_000;
    let s = rem % 60_000_000_000;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", trim_frac(s, 1_000_000_000)));
    out
}

fn trim_frac(n: u128, unit: u128) -> String {
    let whole = n / unit;
    let frac = n % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (s, out) in [
            ("30s", "30s"),
            ("1m30s", "1m30s"),
            ("1.5s", "1.5s"),
            ("300ms", "300ms"),
            ("2h", "2h0m0s"),
        ] {
            assert_eq!(format_go_duration(parse_go_duration(s).unwrap()), out);
        }
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("5x").is_err());
    }
}
