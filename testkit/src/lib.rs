//! Fixtures shared by hookflow's end-to-end tests and its benchmark
//! harness: building the first-party plugins once, and starting a server
//! binary and reading the banner it prints when it listens.
//!
//! It is not a test framework: no assertions, no HTTP client. Errors come
//! back as `io::Error` with a sentence saying what failed.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The target the plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Builds the `plugins/` workspace under `root` in release mode into
/// `plugins/target`, and returns the folder holding the `.wasm` files.
/// Cargo's own lock makes concurrent callers wait for one build. The
/// `wasm32-wasip2` target must be installed (hookflow's `ensure_target`).
pub fn build_plugins(root: &Path) -> io::Result<PathBuf> {
    let plugins = root.join("plugins");
    let target = plugins.join("target");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--quiet", "--target-dir"])
        .arg(&target)
        .current_dir(&plugins)
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "building {} failed: cargo exited with {status}",
            plugins.display()
        )));
    }
    Ok(target.join(WASM_TARGET).join("release"))
}

/// A started server: its process, where it listens, and its stdout.
pub struct Spawned {
    pub child: Child,
    /// The rest of the banner line after its prefix (an address or URL).
    pub listening: String,
    /// Every stdout line up to and including the banner line.
    pub banner: Vec<String>,
    /// The stdout lines after the banner, as they come.
    pub rest: Receiver<String>,
}

/// Starts `cmd` with its stdout piped and waits up to `within` for a line
/// starting with `prefix`. The process is killed if it never prints one.
pub fn spawn(cmd: &mut Command, prefix: &str, within: Duration) -> io::Result<Spawned> {
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("the server's stdout was not piped"))?;
    let (tx, rx) = mpsc::channel();
    // Reads stdout to its end, even once nobody listens, so the server
    // never blocks writing to a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + within;
    let mut banner = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.strip_prefix(prefix).map(str::to_string);
                banner.push(line);
                if let Some(listening) = found {
                    return Ok(Spawned {
                        child,
                        listening,
                        banner,
                        rest: rx,
                    });
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "the server printed no `{prefix}` line within {within:?}; it printed: {banner:?}"
                )));
            }
        }
    }
}
