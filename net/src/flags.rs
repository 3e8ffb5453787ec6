//! Parsers for values the binaries' flags share.

/// A rate in megabytes (10^6 bytes) per second: a number, 0 or more.
pub fn mb_per_second(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate in MB/s (a number, 0 or more)")),
    }
}

#[cfg(test)]
mod tests {
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
