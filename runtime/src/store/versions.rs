//! Kept workflow versions, for rollback: the last [`KEEP`] versions of each
//! workflow, content-addressed (the manifest's text and each plugin's bytes
//! stored once by SHA-256, whatever number of versions share them), and
//! the pins a rollback leaves.
//!
//! Rare writes (a reload that loaded a new version, a rollback): each in
//! its own durable write transaction on a blocking thread; redb runs it
//! between the writer thread's commits.

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, read_err, write_txn};

/// Versions kept per workflow.
pub const KEEP: usize = 5;

/// SHA-256 (hex) -> bytes: manifest texts and plugins.
pub(super) const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("version_blobs");
/// Version -> what it is made of (JSON [`Recipe`]).
pub(super) const VERSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("versions");
/// (workflow, loaded at ms) -> version: each workflow's versions in order.
pub(super) const HISTORY: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("version_history");
/// Workflow -> JSON [`Pin`].
pub(super) const PINS: TableDefinition<&str, &[u8]> = TableDefinition::new("version_pins");

/// A workflow version with everything needed to serve it again.
#[derive(Debug, Clone)]
pub struct KeptVersion {
    pub name: String,
    pub version: String,
    /// The manifest file it was loaded from.
    pub file: String,
    pub loaded_at_ms: u64,
    pub manifest: Bytes,
    /// Each step's plugin, in step order.
    pub plugins: Vec<Bytes>,
}

/// A version kept, in a workflow's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub version: String,
    pub loaded_at_ms: u64,
}

/// A rollback: serve `version` while the workflow's files still load as
/// `over` (the version that was serving from them then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub version: String,
    pub over: String,
}

#[derive(Serialize, Deserialize)]
struct Recipe {
    name: String,
    file: String,
    loaded_at_ms: u64,
    manifest: String,
    plugins: Vec<String>,
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Write(e.to_string())
}

impl Store {
    /// Keeps `v` (unless kept already) and lets go of the versions of its
    /// workflow past the newest [`KEEP`], and of the bytes no kept version
    /// uses any more.
    pub async fn keep_version(&self, v: KeptVersion) -> Result<(), StoreError> {
        self.blocking(move |db| keep(db, &v).map_err(write_err))
            .await
    }

    /// The versions kept of `workflow`, newest first.
    pub async fn history(&self, workflow: &str) -> Result<Vec<Kept>, StoreError> {
        let workflow = workflow.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let history = txn.open_table(HISTORY).map_err(read_err)?;
            let mut out = Vec::new();
            for entry in history
                .range((workflow.as_str(), 0)..=(workflow.as_str(), u64::MAX))
                .map_err(read_err)?
                .rev()
            {
                let (key, version) = entry.map_err(read_err)?;
                out.push(Kept {
                    version: version.value().to_string(),
                    loaded_at_ms: key.value().1,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Everything `version` is made of, if it is kept.
    pub async fn kept_version(&self, version: &str) -> Result<Option<KeptVersion>, StoreError> {
        let version = version.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let versions = txn.open_table(VERSIONS).map_err(read_err)?;
            let blobs = txn.open_table(BLOBS).map_err(read_err)?;
            let Some(recipe) = versions.get(version.as_str()).map_err(read_err)? else {
                return Ok(None);
            };
            let recipe: Recipe = serde_json::from_slice(recipe.value())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let blob = |d: &str| -> Result<Bytes, StoreError> {
                blobs
                    .get(d)
                    .map_err(read_err)?
                    .map(|b| Bytes::copy_from_slice(b.value()))
                    .ok_or_else(|| StoreError::Corrupt(format!("kept bytes {d} are missing")))
            };
            Ok(Some(KeptVersion {
                name: recipe.name,
                version,
                file: recipe.file,
                loaded_at_ms: recipe.loaded_at_ms,
                manifest: blob(&recipe.manifest)?,
                plugins: recipe
                    .plugins
                    .iter()
                    .map(|d| blob(d))
                    .collect::<Result<_, _>>()?,
            }))
        })
        .await
    }

    /// Every pin, by workflow.
    pub async fn pins(&self) -> Result<Vec<(String, Pin)>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(read_err)?;
            let pins = txn.open_table(PINS).map_err(read_err)?;
            let mut out = Vec::new();
            for entry in pins.iter().map_err(read_err)? {
                let (name, pin) = entry.map_err(read_err)?;
                let pin: Pin = serde_json::from_slice(pin.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                out.push((name.value().to_string(), pin));
            }
            Ok(out)
        })
        .await
    }

    /// Pins `workflow` to a version, or (`None`) lets it go.
    pub async fn set_pin(&self, workflow: &str, pin: Option<Pin>) -> Result<(), StoreError> {
        let workflow = workflow.to_string();
        self.write_now(move |txn| {
            let mut pins = txn.open_table(PINS)?;
            match &pin {
                Some(pin) => {
                    let json = serde_json::to_vec(pin).unwrap_or_default();
                    pins.insert(workflow.as_str(), json.as_slice())?;
                }
                None => {
                    pins.remove(workflow.as_str())?;
                }
            }
            Ok(())
        })
        .await
    }
}

fn keep(db: &Database, v: &KeptVersion) -> Result<(), redb::Error> {
    let txn = write_txn(db, true)?;
    {
        let mut versions = txn.open_table(VERSIONS)?;
        let mut blobs = txn.open_table(BLOBS)?;
        let mut history = txn.open_table(HISTORY)?;
        if versions.get(v.version.as_str())?.is_some() {
            // Kept already and loaded again (the files went back to it):
            // it moves to the front of the workflow's history.
            let earlier: Vec<u64> = history
                .range((v.name.as_str(), 0)..=(v.name.as_str(), u64::MAX))?
                .filter_map(|e| e.ok())
                .filter(|(_, version)| version.value() == v.version)
                .map(|(k, _)| k.value().1)
                .collect();
            for at in earlier {
                history.remove((v.name.as_str(), at))?;
            }
            history.insert((v.name.as_str(), v.loaded_at_ms), v.version.as_str())?;
            drop((versions, blobs, history));
            txn.commit()?;
            return Ok(());
        }
        let mut put = |bytes: &[u8]| -> Result<String, redb::Error> {
            let d = digest(bytes);
            if blobs.get(d.as_str())?.is_none() {
                blobs.insert(d.as_str(), bytes)?;
            }
            Ok(d)
        };
        let recipe = Recipe {
            name: v.name.clone(),
            file: v.file.clone(),
            loaded_at_ms: v.loaded_at_ms,
            manifest: put(&v.manifest)?,
            plugins: v.plugins.iter().map(|p| put(p)).collect::<Result<_, _>>()?,
        };
        let json = serde_json::to_vec(&recipe).unwrap_or_default();
        versions.insert(v.version.as_str(), json.as_slice())?;
        history.insert((v.name.as_str(), v.loaded_at_ms), v.version.as_str())?;

        // Past the newest KEEP: forgotten, unless still pinned.
        let pinned: Vec<String> = txn
            .open_table(PINS)?
            .iter()?
            .filter_map(|e| e.ok())
            .filter_map(|(_, p)| serde_json::from_slice::<Pin>(p.value()).ok())
            .map(|p| p.version)
            .collect();
        let all: Vec<(u64, String)> = history
            .range((v.name.as_str(), 0)..=(v.name.as_str(), u64::MAX))?
            .map(|e| e.map(|(k, version)| (k.value().1, version.value().to_string())))
            .collect::<Result<_, _>>()?;
        let old = all.len().saturating_sub(KEEP);
        for (at, version) in all.into_iter().take(old) {
            if pinned.contains(&version) {
                continue;
            }
            history.remove((v.name.as_str(), at))?;
            versions.remove(version.as_str())?;
        }
        // Bytes that no kept version names any more.
        let mut used = std::collections::HashSet::new();
        for entry in versions.iter()? {
            let (_, recipe) = entry?;
            if let Ok(r) = serde_json::from_slice::<Recipe>(recipe.value()) {
                used.insert(r.manifest);
                used.extend(r.plugins);
            }
        }
        let unused: Vec<String> = blobs
            .iter()?
            .filter_map(|e| e.ok())
            .map(|(d, _)| d.value().to_string())
            .filter(|d| !used.contains(d))
            .collect();
        for d in unused {
            blobs.remove(d.as_str())?;
        }
    }
    txn.commit()?;
    Ok(())
}
