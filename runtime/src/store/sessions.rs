//! Dashboard sessions (`/ui/`): kept so that a restart does not log the
//! operator out. Only a digest of each session's cookie is stored (see
//! `crate::http::Sessions`), with when it expires.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Store, StoreError, read_err};

/// SHA-256 of the session (bound to the admin token) -> expiry, ms since
/// the epoch.
pub(super) const SESSIONS: TableDefinition<&[u8], u64> = TableDefinition::new("ui_sessions");

impl Store {
    /// Every session kept that has not expired at `now_ms`; expired ones
    /// are dropped on the way.
    pub async fn sessions(&self, now_ms: u64) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        let kept = self
            .blocking(|db| {
                let txn = db.begin_read().map_err(read_err)?;
                let table = txn.open_table(SESSIONS).map_err(read_err)?;
                let mut out = Vec::new();
                for entry in table.iter().map_err(read_err)? {
                    let (key, expires) = entry.map_err(read_err)?;
                    if let Ok(key) = <[u8; 32]>::try_from(key.value()) {
                        out.push((key, expires.value()));
                    }
                }
                Ok(out)
            })
            .await?;
        let (live, expired): (Vec<_>, Vec<_>) = kept.into_iter().partition(|(_, e)| *e > now_ms);
        if !expired.is_empty() {
            self.end_sessions(expired.into_iter().map(|(k, _)| k).collect())
                .await?;
        }
        Ok(live)
    }

    /// Keeps session `key` until `expires_ms`, durably.
    pub async fn start_session(&self, key: [u8; 32], expires_ms: u64) -> Result<(), StoreError> {
        self.write_now(move |txn| {
            txn.open_table(SESSIONS)?
                .insert(key.as_slice(), expires_ms)?;
            Ok(())
        })
        .await
    }

    /// Forgets sessions `keys`, durably.
    pub async fn end_sessions(&self, keys: Vec<[u8; 32]>) -> Result<(), StoreError> {
        self.write_now(move |txn| {
            let mut table = txn.open_table(SESSIONS)?;
            for key in &keys {
                table.remove(key.as_slice())?;
            }
            Ok(())
        })
        .await
    }
}
