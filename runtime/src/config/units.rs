//! Human units in manifests: durations (`"10s"`, `"250ms"`) and sizes
//! (`"1MiB"`, `"64 KB"`).

use std::time::Duration;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. \"500ms\", \"10s\", \"2m\"")
    })
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    parse_size::parse_size(text.trim())
        .map_err(|e| format!("`{text}` is not a size ({e}); write e.g. \"64KiB\", \"1MiB\""))
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
    }
}
