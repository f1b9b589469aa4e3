//! Names a manifest gives: workflow names and step ids (slugs), and the
//! trigger paths webhooks are served at.

use std::path::Path;

/// A step's id when the manifest gives none: the plugin's file stem with
/// `_` written as `-` (`plugins/json_map.wasm` is `json-map`), or `step-N`
/// (1-based) when that stem is not a valid id.
pub(super) fn default_step_id(plugin: &str, index: usize) -> String {
    Path::new(plugin)
        .file_stem()
        .map(|s| s.to_string_lossy().replace('_', "-"))
        .filter(|s| is_slug(s))
        .unwrap_or_else(|| format!("step-{}", index + 1))
}

/// A workflow name or step id: lower-case letters, digits, `-` and `_`,
/// starting with a letter or digit, at most 64 bytes.
pub(super) fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A trigger path: `/`-separated segments of unreserved URL characters.
pub(super) fn check_route(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
        return Err(format!(
            "trigger path `{path}` must be non-empty with no leading or trailing `/` (it is served under /hooks/)"
        ));
    }
    for seg in path.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            return Err(format!(
                "trigger path `{path}`: segment `{seg}` may hold only letters, digits, `-`, `.`, `_`, `~`"
            ));
        }
    }
    if path == "t" || path.starts_with("t/") {
        return Err("trigger paths under `t/` are reserved for path-token triggers".into());
    }
    if path == "r" || path.starts_with("r/") {
        return Err(
            "trigger paths under `r/` are reserved for triggers made through the API".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_checked() {
        assert!(check_route("leads/new").is_ok());
        assert!(check_route("a//b").is_err());
        assert!(check_route("a/../b").is_err());
        assert!(check_route("t/abc").is_err());
        assert!(check_route("r/abc").is_err());
        assert!(check_route("a b").is_err());
    }

    #[test]
    fn step_ids_default_to_the_plugin_stem() {
        assert_eq!(default_step_id("plugins/echo.wasm", 0), "echo");
        assert_eq!(default_step_id("plugins/json_map.wasm", 0), "json-map");
        assert_eq!(default_step_id("plugins/Bad Name.wasm", 2), "step-3");
    }
}
