//! Table definitions. Keys are execution ids as `u128` (UUID v7, so key
//! order is creation order).

use redb::TableDefinition;

/// id -> the execution record, JSON.
pub const EXECUTIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("executions");
/// id -> the event body, as received.
pub const BODIES: TableDefinition<u128, &[u8]> = TableDefinition::new("bodies");
/// (workflow, id) -> (): executions of one workflow, in id order.
pub const BY_WORKFLOW: TableDefinition<(&str, u128), ()> = TableDefinition::new("by_workflow");
/// (status code, id) -> (): finished executions by status, in id order
/// (see [`status_code`]); open ones are in `UNFINISHED`.
pub const BY_STATUS: TableDefinition<(u8, u128), ()> = TableDefinition::new("by_status");
/// id -> (): executions accepted and not yet finished.
pub const UNFINISHED: TableDefinition<u128, ()> = TableDefinition::new("unfinished");
/// "{workflow}\0{key}" -> (execution id, expires at ms): idempotency keys.
pub const IDEMPOTENCY: TableDefinition<&str, (u128, u64)> = TableDefinition::new("idempotency");
/// (expires at ms, "{workflow}\0{key}") -> (): keys in expiry order, for
/// pruning.
pub const IDEMPOTENCY_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("idempotency_expiry");
/// "{resets at ms, hex}\0{workflow}\0{scope}" -> executions counted in
/// that quota window (see `QuotaCount`).
pub const QUOTAS: TableDefinition<&str, u64> = TableDefinition::new("quotas");
/// name -> value: facts about the database itself; `"opened_ms"` is
/// rewritten by each reopen after an I/O error, to prove writes work.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// name -> secret bytes the server keeps for itself: `"read_token_key"`
/// signs the per-execution read tokens of `status_url` (SPEC §5.3).
pub const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
/// The `KEYS` entry of the read-token key.
pub const READ_TOKEN_KEY: &str = "read_token_key";

/// A status as the key byte of `BY_STATUS`.
pub fn status_code(status: crate::execution::Status) -> u8 {
    use crate::execution::Status;
    match status {
        Status::Queued => 0,
        Status::Running => 1,
        Status::Succeeded => 2,
        Status::Failed => 3,
        Status::TimedOut => 4,
        Status::Cancelled => 5,
    }
}

/// `META` key set once `BY_STATUS` holds every finished execution (a
/// database written before the index is filled when it is opened).
pub const STATUS_INDEX_BUILT: &str = "status_index_built";

/// The fields of a stored record that index upkeep needs, read without
/// decoding the rest.
#[derive(serde::Deserialize)]
pub struct RecordHead {
    pub workflow: String,
    pub status: crate::execution::Status,
}
