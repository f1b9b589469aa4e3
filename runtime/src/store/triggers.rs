//! Triggers made through the API (`/api/v1/triggers`), kept by id: they
//! hold across restarts and reloads, whatever the manifests say.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, read_err};
use crate::config::Missed;

/// id -> JSON [`TriggerRecord`].
pub(super) const TRIGGERS: TableDefinition<&str, &[u8]> = TableDefinition::new("triggers");

/// A webhook trigger's secret, as kept: its SHA-256 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    pub created_at_ms: u64,
    /// After a rotation: when the old secret stops verifying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Webhook,
    Cron,
}

/// A trigger made through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRecord {
    pub id: String,
    pub workflow: String,
    pub kind: TriggerKind,
    pub enabled: bool,
    pub created_at_ms: u64,
    /// Webhook: the secrets that verify (`Authorization: Bearer`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<StoredSecret>,
    /// Cron: the schedule, its time zone and missed-slot policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<Missed>,
}

impl Store {
    /// Every trigger made through the API.
    pub async fn triggers(&self) -> Result<Vec<TriggerRecord>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(TRIGGERS).map_err(read_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(read_err)? {
                let (_, v) = entry.map_err(read_err)?;
                out.push(
                    serde_json::from_slice(v.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            Ok(out)
        })
        .await
    }

    /// Writes `record` (new or changed), durably.
    pub async fn put_trigger(&self, record: &TriggerRecord) -> Result<(), StoreError> {
        let (id, json) = (
            record.id.clone(),
            serde_json::to_vec(record).unwrap_or_default(),
        );
        self.write_now(move |txn| {
            txn.open_table(TRIGGERS)?
                .insert(id.as_str(), json.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Deletes trigger `id`, durably; whether it was there.
    pub async fn delete_trigger(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write_now(move |txn| Ok(txn.open_table(TRIGGERS)?.remove(id.as_str())?.is_some()))
            .await
    }
}
