//! Human units in manifests: durations (`"10s"`, `"250ms"`), sizes
//! (`"1MiB"`, `"64 KB"`) and rates (`"100/min"`).

use std::time::Duration;

use super::spec::Rate;

/// The longest duration a manifest may give: every deadline computed from
/// one stays far inside what the clock can represent.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. \"500ms\", \"10s\", \"2m\"")
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than a duration may be (366 days)"
        ));
    }
    Ok(d)
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    parse_size::parse_size(text.trim())
        .map_err(|e| format!("`{text}` is not a size ({e}); write e.g. \"64KiB\", \"1MiB\""))
}

/// `"100/min"`, `"5/s"`, `"1000/hour"`, `"10/30s"`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("`{text}` is not a rate: write e.g. \"100/min\", \"5/s\", \"1000/hour\"");
    let (count, per) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86400),
        other => parse_duration(other).map_err(|_| bad())?,
    };
    if count == 0 || per.is_zero() {
        return Err(bad());
    }
    Ok(Rate { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_and_reject() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1 KB"), Ok(1000));
        assert!(parse_duration("soon").unwrap_err().contains("10s"));
        assert!(parse_size("big").unwrap_err().contains("1MiB"));
        assert_eq!(parse_duration("366d"), Ok(MAX_DURATION));
        assert!(
            parse_duration("300000000000y")
                .unwrap_err()
                .contains("366 days")
        );
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rate("100/min"),
            Ok(Rate {
                count: 100,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(
            parse_rate("10/30s"),
            Ok(Rate {
                count: 10,
                per: Duration::from_secs(30)
            })
        );
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
