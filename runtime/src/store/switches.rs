//! Workflows enabled or disabled through the API: kept by name, so the
//! choice holds across restarts and reloads, whatever the manifest's
//! `enabled` says, until the API changes it again.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Store, StoreError, read_err};

/// Workflow name -> enabled.
pub(super) const SWITCHES: TableDefinition<&str, bool> = TableDefinition::new("workflow_switches");

impl Store {
    /// Every workflow the API enabled or disabled, by name.
    pub async fn switches(&self) -> Result<Vec<(String, bool)>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(SWITCHES).map_err(read_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(read_err)? {
                let (name, enabled) = entry.map_err(read_err)?;
                out.push((name.value().to_string(), enabled.value()));
            }
            Ok(out)
        })
        .await
    }

    /// Records that `workflow` is enabled or disabled, durably.
    pub async fn set_switch(&self, workflow: &str, enabled: bool) -> Result<(), StoreError> {
        let workflow = workflow.to_string();
        self.write_now(move |txn| {
            txn.open_table(SWITCHES)?
                .insert(workflow.as_str(), enabled)?;
            Ok(())
        })
        .await
    }
}
