//! The compiled-code cache: unchanged plugins skip the compiler on a
//! restart, and an entry that is damaged or not this engine's is compiled
//! again rather than trusted.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{Workdir, hookflow, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

/// The cache's entries.
fn entries(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

#[tokio::test]
async fn compiled_plugins_are_kept_and_a_bad_entry_is_compiled_again() {
    let work = Workdir::new();
    work.manifest("cached", &one_step("cached", "sync", NONE, "echo", "{}"));
    let cache = work.tmp.path().join("compiled");
    let env = [("HOOKFLOW_CACHE_DIR", cache.to_str().unwrap())];
    let log = work.tmp.path().join("server.log");
    let serves = async |server: &crate::support::Server| {
        let r = server.post_json("/hooks/cached", &json!({"k": 1})).await;
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["output"], json!({"k": 1}));
    };

    let server = work.start_env(&env);
    serves(&server).await;
    drop(server);
    let kept = entries(&cache);
    assert_eq!(kept.len(), 1, "one plugin in use, one entry: {kept:?}");
    let entry = &kept[0];
    let mode = std::fs::metadata(&cache).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "the cache is for its owner only");

    // A restart takes the entry as it is (a compile would replace it).
    let inode = std::fs::metadata(entry).unwrap().ino();
    let server = work.start_env(&env);
    serves(&server).await;
    drop(server);
    assert_eq!(
        std::fs::metadata(entry).unwrap().ino(),
        inode,
        "compiled again"
    );

    // A flipped bit: found by the checksum, compiled again, replaced.
    let mut damaged = std::fs::read(entry).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(entry, &damaged).unwrap();
    let server = work.start_env_logging_to(&env, &log);
    serves(&server).await;
    drop(server);
    assert!(std::fs::read_to_string(&log).unwrap().contains("damaged"));
    assert_ne!(std::fs::read(entry).unwrap(), damaged, "not replaced");

    // A sound checksum over code that is not this engine's: wasmtime
    // refuses it, and it is compiled again.
    let foreign = b"not native code for this engine".to_vec();
    let mut entry_bytes = Sha256::digest(&foreign).to_vec();
    entry_bytes.extend_from_slice(&foreign);
    std::fs::write(entry, &entry_bytes).unwrap();
    let server = work.start_env_logging_to(&env, &log);
    serves(&server).await;
    drop(server);
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("does not fit this engine")
    );
    assert_ne!(std::fs::read(entry).unwrap(), entry_bytes, "not replaced");
}

/// Native code is never kept inside the watched directory.
#[test]
fn a_cache_inside_the_watched_directory_is_refused() {
    let work = Workdir::new();
    work.manifest("w", &one_step("w", "async", NONE, "echo", "{}"));
    let out = hookflow()
        .arg("serve")
        .arg("--dir")
        .arg(work.dir())
        .arg("--db")
        .arg(work.db())
        .arg("--cache-dir")
        .arg(work.dir().join("plugins/compiled"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("inside the workflow directory"), "{stderr}");
}
