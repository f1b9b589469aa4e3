//! Retention: finished executions older than a cutoff are deleted, with
//! their bodies and index entries, a bounded batch per transaction, on the
//! writer thread between group commits, so the writer is never held long.

use redb::{Database, ReadableTable};
use tokio::sync::oneshot;

use super::StoreError;
use super::tables::{
    BODIES, BY_STATUS, BY_WORKFLOW, EXECUTIONS, RecordHead, UNFINISHED, status_code,
};

/// A request to the writer: delete up to `max` finished executions created
/// before `before_ms`.
pub(super) struct Prune {
    pub before_ms: u64,
    pub max: usize,
    pub done: oneshot::Sender<Result<usize, StoreError>>,
}

/// The smallest UUID v7 of millisecond `ms`: ids below it are older.
fn first_id_of(ms: u64) -> u128 {
    u128::from(ms) << 80
}

/// Runs one prune in its own durable transaction and answers its caller;
/// whether it committed.
pub(super) fn run(db: &Database, prune: Prune) -> bool {
    let result = delete_old(db, prune.before_ms, prune.max).map_err(|e| {
        tracing::error!(error = %e, "pruning old executions failed");
        StoreError::Write(e.to_string())
    });
    let committed = result.is_ok();
    let _ = prune.done.send(result);
    committed
}

fn delete_old(db: &Database, before_ms: u64, max: usize) -> Result<usize, redb::Error> {
    let txn = super::write_txn(db, true)?;
    let mut deleted = 0;
    {
        let mut executions = txn.open_table(EXECUTIONS)?;
        let mut bodies = txn.open_table(BODIES)?;
        let mut by_workflow = txn.open_table(BY_WORKFLOW)?;
        let mut by_status = txn.open_table(BY_STATUS)?;
        let unfinished = txn.open_table(UNFINISHED)?;
        let mut old = Vec::new();
        for entry in executions.range(..first_id_of(before_ms))? {
            let (id, record) = entry?;
            let id = id.value();
            if unfinished.get(id)?.is_some() {
                continue; // kept until it finishes, however old
            }
            // Invariant: records are written by this store as JSON with a
            // `workflow` field; one that does not decode is deleted all the
            // same, without its index entry.
            let head = serde_json::from_slice::<RecordHead>(record.value()).ok();
            old.push((id, head));
            if old.len() >= max {
                break;
            }
        }
        for (id, head) in old {
            executions.remove(id)?;
            bodies.remove(id)?;
            if let Some(RecordHead { workflow, status }) = head {
                by_workflow.remove((workflow.as_str(), id))?;
                by_status.remove((status_code(status), id))?;
            }
            deleted += 1;
        }
    }
    txn.commit()?;
    Ok(deleted)
}
