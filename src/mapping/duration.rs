//! Durations in mapping files: a whole number and a unit, `90d`, `12h`, `2w`, `30m`, `2s`.
//! Seconds exist for tests and demos; the units are fixed lengths (a day is 24 hours, a week
//! seven days), never calendar arithmetic.

use std::time::Duration;

/// The longest duration a mapping file may give: ten years. Longer is a typo (or "forever",
/// which a status map says by leaving the duration out).
pub const MAX: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// Parses `<n><unit>` with `n` ≥ 1 and unit `s`, `m`, `h`, `d` or `w`. The error says what is
/// accepted.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a duration: a whole number and a unit, s, m, h, d or w (`90d`, `12h`)"
        )
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let seconds: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 24 * 3600,
        'w' => 7 * 24 * 3600,
        _ => return Err(bad()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("{text:?}: a duration must be longer than zero"));
    }
    let duration = n
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX)
        .ok_or_else(|| format!("{text:?}: longer than ten years"))?;
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_with_a_unit() {
        let day = 24 * 3600;
        for (text, secs) in [
            ("2s", 2),
            ("30m", 1800),
            ("12h", 12 * 3600),
            ("90d", 90 * day),
            (" 2w ", 14 * day),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_form() {
        for text in [
            "", "d", "90", "90D", "1.5d", "-1d", "+1d", "1 d", "90days", "P90D",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("not a duration"), "{text}: {err}");
        }
        assert!(parse("0d").unwrap_err().contains("longer than zero"));
        assert!(parse("4000d").unwrap_err().contains("ten years"));
        assert!(
            parse("99999999999999999999w")
                .unwrap_err()
                .contains("not a duration")
        );
    }
}
