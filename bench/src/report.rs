//! What the harness prints, kept so that `--report PATH` can write the same
//! figures into a Markdown file between two marker lines, leaving the
//! hand-written text around them as it is.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;

/// Everything printed through [`out!`] in this run.
static PRINTED: Mutex<String> = Mutex::new(String::new());

/// The lines between which `--report` writes the run's figures.
pub const BEGIN: &str =
    "<!-- figures: written by the harness (`--report`); edits here are lost -->";
pub const END: &str = "<!-- end of figures -->";

/// Prints a line and keeps it for the report.
macro_rules! out {
    () => {
        $crate::report::line(String::new())
    };
    ($($arg:tt)*) => {
        $crate::report::line(format!($($arg)*))
    };
}
pub(crate) use out;

pub fn line(text: String) {
    println!("{text}");
    let mut printed = PRINTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    printed.push_str(&text);
    printed.push('\n');
}

/// Replaces what lies between [`BEGIN`] and [`END`] in `path` with this
/// run's figures (both markers are added at the end when missing).
pub fn write(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let printed = PRINTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    // Under the file's own headings: the run's title goes, and each
    // section heading moves one level down.
    let body: Vec<String> = printed
        .trim()
        .lines()
        .filter(|l| !l.starts_with("# "))
        .map(|l| {
            if l.starts_with("##") {
                format!("#{l}")
            } else {
                l.to_string()
            }
        })
        .collect();
    let figures = format!("{BEGIN}\n\n{}\n{END}", body.join("\n").trim());
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{figures}{}", &text[..b], &text[e + END.len()..])
        }
        _ => format!("{}\n\n{figures}\n", text.trim_end()),
    };
    std::fs::write(path, updated).with_context(|| format!("write {}", path.display()))?;
    eprintln!("figures written into {}", path.display());
    Ok(())
}
