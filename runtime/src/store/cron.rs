//! The last slot each cron trigger fired, so that a restart knows what it
//! missed (see `crate::cron`).

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Store, StoreError, read_err};

/// "{workflow}\0{schedule}\0{time zone}" -> the last slot fired, ms since
/// the epoch.
pub(super) const CRON_LAST: TableDefinition<&str, u64> = TableDefinition::new("cron_last");

impl Store {
    /// The last slot trigger `key` fired, if any.
    pub async fn cron_last(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(CRON_LAST).map_err(read_err)?;
            Ok(table
                .get(key.as_str())
                .map_err(read_err)?
                .map(|v| v.value()))
        })
        .await
    }

    /// Keeps `slot` as trigger `key`'s last, unless a later one is kept.
    pub async fn set_cron_last(&self, key: &str, slot: u64) -> Result<(), StoreError> {
        let key = key.to_string();
        self.write_now(move |txn| {
            let mut table = txn.open_table(CRON_LAST)?;
            let kept = table.get(key.as_str())?.map(|v| v.value());
            if kept.is_none_or(|kept| kept < slot) {
                table.insert(key.as_str(), slot)?;
            }
            Ok(())
        })
        .await
    }
}
