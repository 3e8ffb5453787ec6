//! Parsers for values the binaries' flags share.

/// A rate in megabytes (10^6 bytes) per second: a number, 0 or more.
pub fn mb_per_second(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate in MB/s (a number, 0 or more)")),
    }
}

/// A time span: a number with a unit, s, m or h (`90s`, `15m`, `12h`), or
/// `0` for none.
pub fn span(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a time span (a number with s, m or h: 90s, 15m, 12h; or 0)");
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let unit = match s.chars().last() {
        Some('s') => 1.0,
        Some('m') => 60.0,
        Some('h') => 3600.0,
        _ => return Err(bad()),
    };
    match s[..s.len() - 1].parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * unit < 1e9 => Ok(std::time::Duration::from_secs_f64(n * unit)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans_take_a_unit() {
        use std::time::Duration;
        assert_eq!(super::span("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(super::span("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(super::span("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(super::span("0"), Ok(Duration::ZERO));
        for bad in ["12", "h", "-1h", "2d", "1e20h", ""] {
            assert!(super::span(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates_are_numbers_of_zero_or_more() {
        assert_eq!(super::mb_per_second("8"), Ok(8.0));
        assert_eq!(super::mb_per_second("0.5"), Ok(0.5));
        assert_eq!(super::mb_per_second("0"), Ok(0.0));
        for bad in ["-1", "fast", "inf", "NaN", ""] {
            assert!(super::mb_per_second(bad).is_err(), "{bad:?}");
        }
    }
}
