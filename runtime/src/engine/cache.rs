//! The compiled-code cache: a plugin compiled once is kept as native code in
//! a private directory, so a restart or a reload of an unchanged plugin
//! skips Cranelift.
//!
//! An entry is named by the SHA-256 of the plugin's bytes and a hash of
//! what makes compiled code fit an engine (wasmtime's version and the
//! engine's settings), and holds the SHA-256 of the compiled code before
//! the code itself. Native code is never loaded from the watched directory,
//! which is untrusted; the cache directory is created readable by its owner
//! only. An entry is loaded only when its checksum matches and wasmtime
//! accepts it as code for this engine; anything else (a torn write, a
//! flipped bit, an entry from another version) is compiled again and
//! replaced.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

pub struct CompiledCache {
    dir: PathBuf,
    /// Hex hash of the engine's compatibility with compiled code.
    engine_key: String,
}

impl CompiledCache {
    /// The cache in `dir`, created (owner-only) if missing.
    pub fn open(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        // SipHash with fixed keys: stable for a given build, which is all
        // an entry's name must be (another build gets other names, and
        // wasmtime checks each entry again anyway).
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The compiled plugin whose bytes hash to `digest`, if a sound entry
    /// for this engine is kept.
    pub fn get(&self, engine: &wasmtime::Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        let (sum, code) = bytes.split_at_checked(32)?;
        if Sha256::digest(code).as_slice() != sum {
            tracing::warn!(entry = %path.display(), "compiled-code cache entry is damaged; compiling again");
            return None;
        }
        // SAFETY: `code` was written by `put` below, from
        // `Component::serialize` of this engine's build, into a directory
        // only this user can write, and its checksum matches; wasmtime
        // also refuses code made by another version or configuration.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(entry = %path.display(), error = %e, "compiled-code cache entry does not fit this engine; compiling again");
                None
            }
        }
    }

    /// Keeps `component` under `digest`: written to a temporary file and
    /// renamed, so a reader sees a whole entry or none. A failure is
    /// logged; the plugin is compiled again next time.
    pub fn put(&self, digest: &str, component: &Component) {
        let path = self.path(digest);
        let write = || -> anyhow::Result<()> {
            let code = component.serialize()?;
            let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
            file.write_all(&Sha256::digest(&code))?;
            file.write_all(&code)?;
            file.persist(&path)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(entry = %path.display(), error = %e, "cannot keep compiled code in the cache");
        }
    }
}
