//! Parsers for values the binaries' flags share.

/// A rate in megabytes (10^6 bytes) per second: a number, 0 or more.
pub fn mb_per_second(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate in MB/s (a number, 0 or more)")),
    }
}

/// A time span: a number with a unit, us, ms, s, m or h (`500us`, `2ms`,
/// `90s`, `15m`, `12h`), or `0` for none.
pub fn span(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a time span (a number with us, ms, s, m or h: 2ms, 90s, 15m, 12h; or 0)");
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let units = [("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
    let Some((number, unit)) = units.iter().find_map(|(u, scale)| s.strip_suffix(u).map(|n| (n, *scale))) else {
        return Err(bad());
    };
    match number.parse::<f64>() {
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
        assert_eq!(super::span("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(super::span("500us"), Ok(Duration::from_micros(500)));
        for bad in ["12", "h", "-1h", "2d", "1e20h", "", "ms"] {
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
