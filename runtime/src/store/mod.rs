//! The store: one redb file holding every execution, its event body and its
//! step results.
//!
//! Writes go through one writer thread that commits whatever is pending in
//! a single `Durability::Immediate` transaction (group commit), so many
//! concurrent webhooks share one fsync. A write's future resolves only after
//! its transaction is durable: callers answer 2xx after that, never before.
//!
//! Progress that nobody is told about (a step's result, the end of an
//! async execution) is written with [`Store::put_soon`]: committed at once
//! without an fsync of its own, it becomes durable with the next durable
//! commit, which the writer makes within [`FLUSH_WITHIN`] (sooner under
//! load, when the next accepted event commits). Until then the writer keeps
//! those records, and writes them again should the database have to be
//! reopened after an I/O error. A crash of the process loses at most that
//! window of progress: the executions concerned resume from their last
//! durable step on the next start.
//!
//! Reads open their own read transaction on a blocking thread. redb types
//! stay inside this module.
//!
//! After an I/O error (a full disk, EIO) redb refuses every later operation
//! until the database is closed. The writer then closes it, answers writes
//! with an error at once, and reopens the file with backoff (100 ms doubling
//! to 5 s) until it opens and a small durable commit succeeds; `writable()`
//! is false from the failed commit until then.

mod cron;
mod kv;
mod retention;
mod sessions;
mod switches;
mod tables;
mod triggers;
mod versions;

pub use triggers::{StoredSecret, TriggerKind, TriggerRecord};
pub use versions::{Kept, KeptVersion, Pin};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::execution::{Execution, Status};
use tables::{
    BODIES, BY_STATUS, BY_WORKFLOW, EXECUTIONS, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, KEYS, META,
    QUOTAS, READ_TOKEN_KEY, RecordHead, STATUS_INDEX_BUILT, UNFINISHED, status_code,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the database could not commit: {0}")]
    Write(String),
    #[error("the database could not be read: {0}")]
    Read(String),
    #[error("a stored record could not be decoded: {0}")]
    Corrupt(String),
    #[error("the database writer has stopped")]
    Closed,
    #[error("the database is being reopened after an I/O error: {0}")]
    Reopening(String),
}

/// The open database, `None` while the writer reopens it. Reads hold the
/// read lock for their transaction; only the writer takes the write lock,
/// to close and reopen.
type Slot = Arc<RwLock<Option<Database>>>;

/// How long the writer waits before each attempt to reopen the database:
/// from the first value, doubling up to the second.
const REOPEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Gauge: the database file's size in bytes, set when `/metrics` is read.
pub const DATABASE_BYTES: &str = "hookflow_database_bytes";

/// Page cache of the database, unless told otherwise: redb's own default
/// (1 GiB) would let resident memory climb that far with bodies that are
/// written once and read once.
pub const DEFAULT_CACHE: usize = 64 << 20;

/// Opens (or creates) the database file with `cache_bytes` of page cache.
fn create(path: &Path, cache_bytes: usize) -> Result<Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
}

/// Records the writer takes into one transaction, at most (a single larger
/// batch still commits whole).
const MAX_BATCH: usize = 512;

/// How long a record written with [`Store::put_soon`] may wait for a
/// durable commit: what a crash of the process can lose.
pub const FLUSH_WITHIN: Duration = Duration::from_millis(100);

/// Bytes of records waiting for a durable commit, at most: past this the
/// next commit is durable whatever it holds.
const MAX_UNFLUSHED_BYTES: usize = 16 << 20;

/// A record encoded by its caller, so the single writer thread spends its
/// time on the B-tree and the fsync, not on JSON.
struct Encoded {
    id: u128,
    workflow: String,
    finished: bool,
    status: u8,
    json: Vec<u8>,
    body: Option<Bytes>,
}

impl Encoded {
    /// Bytes held in memory.
    fn size(&self) -> usize {
        self.json.len() + self.workflow.len() + self.body.as_ref().map_or(0, Bytes::len)
    }

    fn new(execution: &Execution, body: Option<Bytes>) -> Self {
        Self {
            id: execution.id.as_u128(),
            workflow: execution.workflow.clone(),
            finished: execution.status.is_finished(),
            status: status_code(execution.status),
            json: encode(execution),
            body,
        }
    }
}

/// An idempotency key to claim together with a new execution.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// `{workflow}\0{key}`: keys are per workflow.
    scoped: String,
    expires_at_ms: u64,
    /// Take the key over from this execution if it still holds it.
    replaces: Option<Uuid>,
}

impl IdempotencyKey {
    pub fn new(workflow: &str, key: &str, expires_at_ms: u64) -> Self {
        Self {
            scoped: format!("{workflow}\0{key}"),
            expires_at_ms,
            replaces: None,
        }
    }

    /// The same key, to be taken over from `holder` (a failed execution of
    /// the same delivery) if it still holds it, and only then.
    pub fn replacing(self, holder: Uuid) -> Self {
        Self {
            replaces: Some(holder),
            ..self
        }
    }
}

/// A quota a new execution counts against, in the transaction that
/// records it: counted only when there is room, so concurrent deliveries
/// never take more than the quota, and a crash loses no count.
#[derive(Debug, Clone)]
pub struct QuotaCount {
    /// `{resets_at_ms:016x}\0{name}`: counters sort by when they expire,
    /// and an expired one is pruned by a range read.
    counter: String,
    limit: u64,
    resets_at_ms: u64,
}

impl QuotaCount {
    /// Counter `name` (say `orders\0day`, or `orders\0user\0u1\0month`) of
    /// the window that ends at `resets_at_ms`, holding at most `limit`.
    pub fn new(name: &str, limit: u64, resets_at_ms: u64) -> Self {
        Self {
            counter: format!("{resets_at_ms:016x}\0{name}"),
            limit,
            resets_at_ms,
        }
    }
}

/// What came of recording a new execution under an idempotency key and
/// its quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The execution was recorded.
    New,
    /// The key was taken (and not expired): nothing was recorded; this is
    /// the execution that holds it.
    Duplicate(Uuid),
    /// A quota is used up: nothing was recorded; the quota (the first of
    /// those given that is full) resets at this time.
    OverQuota { index: usize, resets_at_ms: u64 },
}

/// Records that commit together, and who waits for them.
struct Write {
    records: Vec<Encoded>,
    /// Claimed in the same transaction as `records` (one record then).
    key: Option<IdempotencyKey>,
    /// Counted in the same transaction as `records`, when `key` is free.
    quotas: Vec<QuotaCount>,
    /// Answered only once durable; otherwise once committed (see
    /// [`Store::put_soon`]).
    durable: bool,
    done: oneshot::Sender<Result<Claim, StoreError>>,
}

/// What the writer thread is asked to do.
enum Message {
    Write(Write),
    Prune(retention::Prune),
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Slot,
    path: Arc<PathBuf>,
    /// Unbounded: every write is awaited by its caller, and callers are
    /// bounded by admission (`--max-queued`, `--max-in-flight`).
    writer: mpsc::Sender<Message>,
    /// Whether the last commit succeeded.
    writable: Arc<AtomicBool>,
    /// Signs read tokens; made once, kept in the database.
    read_token_key: Arc<[u8; 32]>,
}

/// Which executions to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub workflow: Option<String>,
    /// Any of these statuses; empty: any status.
    pub statuses: Vec<Status>,
    /// What started them (`webhook`, `api`, `replay`, `test`, `cron`).
    pub trigger: Option<String>,
    pub user: Option<String>,
    /// Only executions created at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only executions created before this time (ms since the epoch).
    pub until_ms: Option<u64>,
    pub limit: usize,
    /// Only executions older than this id.
    pub before: Option<Uuid>,
    /// Only executions whose event body holds this text (ASCII letters in
    /// any case). Bodies are read one by one, so such a search looks at
    /// no more than [`TEXT_SEARCH_BUDGET`] executions per call.
    pub text: Option<String>,
}

/// Executions a text search looks at per call, at most.
pub const TEXT_SEARCH_BUDGET: usize = 5_000;

/// A page of [`Store::list_page`].
#[derive(Debug, Default)]
pub struct Listed {
    pub executions: Vec<Execution>,
    /// The last execution a text search looked at when it used up its
    /// budget: the place to go on from (as `before`).
    pub stopped_at: Option<Uuid>,
}

fn text_finder(text: &str) -> aho_corasick::AhoCorasick {
    // Invariant: one plain pattern builds (no size limit is set).
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build([text])
        .expect("one literal pattern")
}

/// One listing's walk over an index.
struct Walk<'a> {
    filter: &'a ListFilter,
    executions: redb::ReadOnlyTable<u128, &'static [u8]>,
    bodies: redb::ReadOnlyTable<u128, &'static [u8]>,
    text: Option<aho_corasick::AhoCorasick>,
}

impl Walk<'_> {
    /// The executions of `entries` (newest first: each id, with its record
    /// when the walk reads the executions table itself) that pass the
    /// filter, up to the limit, and for a text search up to its budget.
    fn gather(
        &self,
        entries: impl Iterator<Item = Result<(u128, Option<Record>), redb::StorageError>>,
    ) -> Result<Listed, StoreError> {
        let mut out = Listed::default();
        let mut last = None;
        for (looked, entry) in entries.enumerate() {
            let (id, record) = entry.map_err(read_err)?;
            if self.text.is_some() && looked >= TEXT_SEARCH_BUDGET {
                out.stopped_at = last;
                return Ok(out);
            }
            last = Some(Uuid::from_u128(id));
            let record = match record {
                Some(record) => record,
                None => match self.executions.get(id).map_err(read_err)? {
                    Some(record) => record,
                    None => continue,
                },
            };
            let execution = decode(record.value())?;
            let holds_text = || -> Result<bool, StoreError> {
                let Some(finder) = &self.text else {
                    return Ok(true);
                };
                let body = self.bodies.get(id).map_err(read_err)?;
                Ok(body.is_some_and(|b| finder.is_match(b.value())))
            };
            if self.filter.keeps(&execution) && holds_text()? {
                out.executions.push(execution);
                if out.executions.len() >= self.filter.limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

/// A stored execution record, as a walk reads it.
type Record = redb::AccessGuard<'static, &'static [u8]>;

impl ListFilter {
    /// The range of ids to walk, newest first: ids are UUID v7, so their
    /// order is creation order and a time bound is an id bound.
    fn ids(&self) -> std::ops::Range<u128> {
        let until = self.until_ms.map_or(u128::MAX, id_at);
        let before = self.before.map_or(u128::MAX, |id| id.as_u128());
        self.since_ms.map_or(0, id_at)..until.min(before)
    }

    /// Whether `e` passes the filters no index answers.
    fn keeps(&self, e: &Execution) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&e.status))
            && self.trigger.as_ref().is_none_or(|t| *t == e.trigger)
            && self
                .user
                .as_ref()
                .is_none_or(|u| e.user.as_ref() == Some(u))
    }
}

/// The smallest UUID v7 of millisecond `ms`.
fn id_at(ms: u64) -> u128 {
    u128::from(ms.min((1 << 48) - 1)) << 80
}

impl Store {
    /// Opens (or creates) the database with [`DEFAULT_CACHE`] bytes of page
    /// cache and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE)
    }

    /// The same, with `cache_bytes` of page cache.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let db = create(path, cache_bytes).map_err(|e| open_err(e.to_string()))?;
        let txn = db.begin_write().map_err(|e| open_err(e.to_string()))?;
        {
            txn.open_table(EXECUTIONS)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(BODIES)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(BY_WORKFLOW)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(UNFINISHED)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(versions::BLOBS)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(versions::VERSIONS)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(versions::HISTORY)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(versions::PINS)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(switches::SWITCHES)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(cron::CRON_LAST)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(triggers::TRIGGERS)
                .map_err(|e| open_err(e.to_string()))?;
            txn.open_table(sessions::SESSIONS)
                .map_err(|e| open_err(e.to_string()))?;
        }
        build_status_index(&txn).map_err(|e| open_err(e.to_string()))?;
        let read_token_key = key(&txn, READ_TOKEN_KEY).map_err(|e| open_err(e.to_string()))?;
        txn.commit().map_err(|e| open_err(e.to_string()))?;

        let db: Slot = Arc::new(RwLock::new(Some(db)));
        let (tx, rx) = mpsc::channel();
        let writable = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            db: db.clone(),
            path: path.to_path_buf(),
            cache_bytes,
            writable: writable.clone(),
            unflushed: Unflushed::default(),
        };
        std::thread::Builder::new()
            .name("hookflow-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            db,
            path: Arc::new(path.to_path_buf()),
            writer: tx,
            writable,
            read_token_key: Arc::new(read_token_key),
        })
    }

    /// The key that signs per-execution read tokens: 32 random bytes made
    /// when the database is created, the same for every server on it.
    pub fn read_token_key(&self) -> &[u8; 32] {
        &self.read_token_key
    }

    /// Durably records an execution (and, the first time, its event body).
    /// Resolves once the transaction holding it has committed.
    pub async fn put(&self, execution: &Execution, body: Option<Bytes>) -> Result<(), StoreError> {
        self.write(vec![Encoded::new(execution, body)], None, true)
            .await
            .map(drop)
    }

    /// Records an execution's progress without waiting for an fsync: once
    /// this resolves the record is committed and every reader sees it; it
    /// is durable within [`FLUSH_WITHIN`]. For what nobody has been told
    /// about yet; a crash before then leaves the previous durable record.
    pub async fn put_soon(&self, execution: &Execution) -> Result<(), StoreError> {
        self.write(vec![Encoded::new(execution, None)], None, false)
            .await
            .map(drop)
    }

    /// Makes every earlier write durable (a clean shutdown's last write).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(Vec::new(), None, true).await.map(drop)
    }

    /// Records a new execution and its body, claiming `key` in the same
    /// transaction. When the key is already held, nothing is written and
    /// the holder is returned: concurrent duplicates make one execution.
    /// Each of `quotas` with room counts it; when one is full, nothing is
    /// written and that is said.
    pub async fn put_new(
        &self,
        execution: &Execution,
        body: Bytes,
        key: Option<IdempotencyKey>,
        quotas: Vec<QuotaCount>,
    ) -> Result<Claim, StoreError> {
        self.write_claiming(vec![Encoded::new(execution, Some(body))], key, quotas, true)
            .await
    }

    async fn write(
        &self,
        records: Vec<Encoded>,
        key: Option<IdempotencyKey>,
        durable: bool,
    ) -> Result<Claim, StoreError> {
        self.write_claiming(records, key, Vec::new(), durable).await
    }

    async fn write_claiming(
        &self,
        records: Vec<Encoded>,
        key: Option<IdempotencyKey>,
        quotas: Vec<QuotaCount>,
        durable: bool,
    ) -> Result<Claim, StoreError> {
        let (done, wait) = oneshot::channel();
        let write = Write {
            records,
            key,
            quotas,
            durable,
            done,
        };
        self.writer
            .send(Message::Write(write))
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Deletes up to `max` finished executions created before `before_ms`
    /// (milliseconds since the epoch), with their bodies and index entries,
    /// in one transaction; returns how many. Unfinished ones are kept.
    pub async fn prune_before(&self, before_ms: u64, max: usize) -> Result<usize, StoreError> {
        let (done, wait) = oneshot::channel();
        let prune = retention::Prune {
            before_ms,
            max,
            done,
        };
        self.writer
            .send(Message::Prune(prune))
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Whether the last commit succeeded: a store whose commits fail cannot
    /// take new events.
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// The database file's size in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(self.path.as_ref()).map_or(0, |m| m.len())
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Execution>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(EXECUTIONS).map_err(read_err)?;
            table
                .get(id.as_u128())
                .map_err(read_err)?
                .map(|v| decode(v.value()))
                .transpose()
        })
        .await
    }

    pub async fn body(&self, id: Uuid) -> Result<Option<Bytes>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(BODIES).map_err(read_err)?;
            Ok(table
                .get(id.as_u128())
                .map_err(read_err)?
                .map(|v| Bytes::copy_from_slice(v.value())))
        })
        .await
    }

    /// Executions matching `filter`, newest first, at most `filter.limit`.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<Execution>, StoreError> {
        Ok(self.list_page(filter).await?.executions)
    }

    /// The same, saying where a text search stopped looking when it looked
    /// at [`TEXT_SEARCH_BUDGET`] executions before it found `filter.limit`.
    pub async fn list_page(&self, filter: ListFilter) -> Result<Listed, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let ids = filter.ids();
            if ids.is_empty() {
                return Ok(Listed::default());
            }
            let walk = Walk {
                filter: &filter,
                executions: txn.open_table(EXECUTIONS).map_err(read_err)?,
                bodies: txn.open_table(BODIES).map_err(read_err)?,
                text: filter.text.as_deref().map(text_finder),
            };
            let statuses = &filter.statuses;
            if let Some(workflow) = &filter.workflow {
                let index = txn.open_table(BY_WORKFLOW).map_err(read_err)?;
                let range = index
                    .range((workflow.as_str(), ids.start)..(workflow.as_str(), ids.end))
                    .map_err(read_err)?;
                walk.gather(range.rev().map(|e| e.map(|(k, _)| (k.value().1, None))))
            } else if statuses.is_empty() || walk.text.is_some() {
                let range = walk.executions.range(ids).map_err(read_err)?;
                walk.gather(range.rev().map(|e| e.map(|(k, v)| (k.value(), Some(v)))))
            } else {
                // Each status from its index (finished ones from
                // `BY_STATUS`; queued and running among the unfinished, a
                // set bounded by admission), merged newest first.
                let mut found = Vec::new();
                let index = txn.open_table(BY_STATUS).map_err(read_err)?;
                for status in statuses.iter().filter(|s| s.is_finished()) {
                    let code = status_code(*status);
                    let range = index
                        .range((code, ids.start)..(code, ids.end))
                        .map_err(read_err)?;
                    found.extend(
                        walk.gather(range.rev().map(|e| e.map(|(k, _)| (k.value().1, None))))?
                            .executions,
                    );
                }
                if statuses.iter().any(|s| !s.is_finished()) {
                    let unfinished = txn.open_table(UNFINISHED).map_err(read_err)?;
                    let range = unfinished.range(ids).map_err(read_err)?;
                    found.extend(
                        walk.gather(range.rev().map(|e| e.map(|(k, _)| (k.value(), None))))?
                            .executions,
                    );
                }
                found.sort_by_key(|e| std::cmp::Reverse(e.id));
                found.dedup_by_key(|e| e.id);
                found.truncate(filter.limit);
                Ok(Listed {
                    executions: found,
                    stopped_at: None,
                })
            }
        })
        .await
    }

    /// Every execution that was accepted and never finished, oldest first,
    /// read in one transaction (their bodies are not read). A record that
    /// does not decode comes back as its id and the error.
    pub async fn unfinished_records(
        &self,
    ) -> Result<Vec<Result<Execution, (Uuid, StoreError)>>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(read_err)?;
            let unfinished = txn.open_table(UNFINISHED).map_err(read_err)?;
            let executions = txn.open_table(EXECUTIONS).map_err(read_err)?;
            let mut out = Vec::new();
            for entry in unfinished.iter().map_err(read_err)? {
                let id = entry.map_err(read_err)?.0.value();
                let record = match executions.get(id).map_err(read_err)? {
                    Some(v) => decode(v.value()),
                    None => Err(StoreError::Corrupt(
                        "listed as unfinished, no record".into(),
                    )),
                };
                out.push(record.map_err(|e| (Uuid::from_u128(id), e)));
            }
            Ok(out)
        })
        .await
    }

    /// Durably records many executions in one transaction (no bodies): a
    /// restart's resume counts, say.
    pub async fn put_many<'a>(
        &self,
        executions: impl IntoIterator<Item = &'a Execution>,
    ) -> Result<(), StoreError> {
        let records = executions
            .into_iter()
            .map(|e| Encoded::new(e, None))
            .collect();
        self.write(records, None, true).await.map(drop)
    }

    /// Runs `f` in a durable write transaction of its own on a blocking
    /// thread, and commits: the rare writes that do not go through the
    /// writer thread (versions, pins, switches, triggers, cron slots).
    async fn write_now<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
    {
        self.blocking(move |db| {
            let write = || -> Result<T, redb::Error> {
                let txn = write_txn(db, true)?;
                let out = f(&txn)?;
                txn.commit()?;
                Ok(out)
            };
            write().map_err(|e| StoreError::Write(e.to_string()))
        })
        .await
    }

    /// Runs `f` on the open database on a blocking thread (reads, and the
    /// rare writes that do not go through the writer thread).
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let db = db.read().unwrap_or_else(PoisonError::into_inner);
            match db.as_ref() {
                Some(db) => f(db),
                None => Err(StoreError::Reopening("not open yet".into())),
            }
        })
        .await
        .map_err(|e| StoreError::Read(e.to_string()))?
    }
}

pub(super) fn read_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Read(e.to_string())
}

/// A record as stored. A succeeded execution's `output` is its last
/// succeeded step's output, so it is not stored twice: [`decode`] puts it
/// back.
fn encode(execution: &Execution) -> Vec<u8> {
    // Invariant: an `Execution` holds only strings, numbers and JSON
    // values, which always serialise.
    let derivable = execution.status == Status::Succeeded
        && execution.output.as_ref().map(|o| o.get())
            == execution.last_step_output().map(|o| o.get());
    if derivable && execution.output.is_some() {
        let mut lean = execution.clone();
        lean.output = None;
        serde_json::to_vec(&lean).unwrap_or_default()
    } else {
        serde_json::to_vec(execution).unwrap_or_default()
    }
}

fn decode(bytes: &[u8]) -> Result<Execution, StoreError> {
    let mut execution: Execution =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if execution.status == Status::Succeeded && execution.output.is_none() {
        execution.output = execution.last_step_output().cloned();
    }
    Ok(execution)
}

/// The writer thread: the only one that writes, and the one that closes and
/// reopens the database after an I/O error.
struct Writer {
    db: Slot,
    path: PathBuf,
    cache_bytes: usize,
    writable: Arc<AtomicBool>,
    unflushed: Unflushed,
}

/// Records committed without an fsync and not yet made durable by a later
/// commit, oldest first: written again should the database be reopened.
#[derive(Default)]
struct Unflushed {
    records: Vec<Encoded>,
    bytes: usize,
    /// When the oldest of them was committed.
    since: Option<Instant>,
}

impl Unflushed {
    /// Whether the next commit must be durable to keep the promise of
    /// [`FLUSH_WITHIN`] (or the bound on held bytes).
    fn due(&self) -> bool {
        self.bytes >= MAX_UNFLUSHED_BYTES || self.since.is_some_and(|t| t.elapsed() >= FLUSH_WITHIN)
    }

    fn keep(&mut self, records: impl IntoIterator<Item = Encoded>) {
        for r in records {
            self.bytes += r.size();
            self.records.push(r);
        }
        self.since.get_or_insert_with(Instant::now);
    }

    fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
        self.since = None;
    }
}

/// A closed database waiting to be reopened.
struct Broken {
    reason: String,
    wait: Duration,
    next_attempt: Instant,
}

impl Writer {
    /// Takes every pending write into one transaction, commits it (durably
    /// when any write asks for it, or when records wait for an fsync past
    /// [`FLUSH_WITHIN`]), then answers each writer. Ends when every `Store`
    /// handle is dropped, after a last durable commit.
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        // Should the writer ever panic (a bug), the store says it cannot
        // write rather than claim to be ready with nobody writing.
        struct Unwritable(Arc<AtomicBool>);
        impl Drop for Unwritable {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.store(false, Ordering::Relaxed);
                    tracing::error!(
                        "the store's writer stopped; the server cannot take events until it is restarted"
                    );
                }
            }
        }
        let _unwritable = Unwritable(self.writable.clone());
        let mut batch: Vec<Write> = Vec::new();
        // A prune that arrived while a batch was being gathered: run after it.
        let mut prune_next = None;
        let mut broken: Option<Broken> = None;
        loop {
            if let Some(b) = broken.as_mut() {
                match self.heal(b, &rx) {
                    Heal::Healed => broken = None,
                    Heal::Waiting => {}
                    Heal::Closed => return,
                }
                continue;
            }
            // With records waiting for an fsync, wait no longer than their
            // deadline; an empty batch then is a flush.
            let first = match self.unflushed.since {
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(since) => rx.recv_timeout(FLUSH_WITHIN.saturating_sub(since.elapsed())),
            };
            match first {
                Ok(Message::Write(w)) => batch.push(w),
                Ok(Message::Prune(p)) => {
                    // Its transaction is durable: it flushes too.
                    self.prune(p);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if self.unflushed.since.is_some() {
                        self.commit_batch(&mut batch, &mut broken);
                    }
                    return;
                }
            }
            let mut records: usize = batch.iter().map(|w| w.records.len()).sum();
            while records < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Message::Write(w)) => {
                        records += w.records.len();
                        batch.push(w);
                    }
                    Ok(Message::Prune(p)) => {
                        prune_next = Some(p);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch, &mut broken);
            if let Some(p) = prune_next.take() {
                match &broken {
                    Some(b) => refuse(Message::Prune(p), &b.reason),
                    None => self.prune(p),
                }
            }
        }
    }

    /// Runs a prune; its transaction is durable, so it flushes too.
    fn prune(&mut self, p: retention::Prune) {
        if self.with_db(|db| retention::run(db, p)) == Some(true) {
            self.unflushed.clear();
        }
    }

    /// Commits `batch` (durably if any write or the unflushed records need
    /// it; an empty batch always) and answers its writers.
    fn commit_batch(&mut self, batch: &mut Vec<Write>, broken: &mut Option<Broken>) {
        let durable = batch.is_empty() || batch.iter().any(|w| w.durable) || self.unflushed.due();
        let committed = self
            .with_db(|db| commit(db, batch, durable))
            .unwrap_or_else(|| Err(redb::Error::PreviousIo));
        match committed {
            Ok(claims) => {
                if durable {
                    self.unflushed.clear();
                }
                for (mut w, claim) in batch.drain(..).zip(claims) {
                    let _ = w.done.send(Ok(claim));
                    if !durable && claim == Claim::New {
                        self.unflushed.keep(w.records.drain(..));
                    }
                }
            }
            Err(e) => {
                let failed_io = matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo);
                let e = e.to_string();
                tracing::error!(error = %e, writes = batch.len(), "store commit failed");
                for w in batch.drain(..) {
                    let _ = w.done.send(Err(StoreError::Write(e.clone())));
                }
                if failed_io {
                    *broken = Some(self.close(e));
                }
            }
        }
    }

    /// Runs `f` on the open database; `None` when it is closed.
    fn with_db<T>(&self, f: impl FnOnce(&Database) -> T) -> Option<T> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        db.as_ref().map(f)
    }

    /// Closes the database after an I/O error: redb refuses every later
    /// operation on it, and only a reopen clears that.
    fn close(&self, reason: String) -> Broken {
        self.writable.store(false, Ordering::Relaxed);
        drop(
            self.db
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        tracing::warn!("store closed after an I/O error; reopening it with backoff");
        Broken {
            reason,
            wait: REOPEN_BACKOFF.0,
            next_attempt: Instant::now() + REOPEN_BACKOFF.0,
        }
    }

    /// While the database is closed: answers every message with an error at
    /// once (a sender gets its 503 now, not after the disk is fixed) and
    /// tries to reopen when the backoff is up.
    fn heal(&mut self, broken: &mut Broken, rx: &mpsc::Receiver<Message>) -> Heal {
        let now = Instant::now();
        if now >= broken.next_attempt {
            let reopened = create(&self.path, self.cache_bytes)
                .map_err(redb::Error::from)
                .and_then(|db| prove_writable(&db, &self.unflushed.records).map(|()| db));
            match reopened {
                Ok(db) => {
                    *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(db);
                    self.unflushed.clear();
                    self.writable.store(true, Ordering::Relaxed);
                    tracing::info!("store reopened; taking writes again");
                    return Heal::Healed;
                }
                Err(e) => {
                    broken.reason = e.to_string();
                    broken.wait = (broken.wait * 2).min(REOPEN_BACKOFF.1);
                    broken.next_attempt = now + broken.wait;
                    tracing::warn!(error = %e, retry_in = ?broken.wait, "store cannot be reopened yet");
                }
            }
        }
        match rx.try_recv() {
            Ok(message) => refuse(message, &broken.reason),
            Err(mpsc::TryRecvError::Empty) => {
                let until = broken
                    .next_attempt
                    .saturating_duration_since(Instant::now());
                std::thread::sleep(until.min(Duration::from_millis(20)));
            }
            Err(mpsc::TryRecvError::Disconnected) => return Heal::Closed,
        }
        Heal::Waiting
    }
}

/// The secret `name` of `KEYS`, made of 32 random bytes the first time.
fn key(txn: &redb::WriteTransaction, name: &str) -> Result<[u8; 32], redb::Error> {
    let mut keys = txn.open_table(KEYS)?;
    if let Some(stored) = keys.get(name)?
        && let Ok(key) = <[u8; 32]>::try_from(stored.value())
    {
        return Ok(key);
    }
    let key: [u8; 32] = rand::random();
    keys.insert(name, key.as_slice())?;
    Ok(key)
}

/// Fills `BY_STATUS` from the records of a database written before the
/// index existed, once: a scan of every execution, at open.
fn build_status_index(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let mut meta = txn.open_table(META)?;
    if meta.get(STATUS_INDEX_BUILT)?.is_some() {
        return Ok(());
    }
    let executions = txn.open_table(EXECUTIONS)?;
    let mut index = txn.open_table(BY_STATUS)?;
    let mut filled = 0u64;
    for entry in executions.iter()? {
        let (id, record) = entry?;
        // A record that does not decode is left out of the index; `get`
        // reports it when asked for.
        if let Ok(head) = serde_json::from_slice::<RecordHead>(record.value())
            && head.status.is_finished()
        {
            index.insert((status_code(head.status), id.value()), ())?;
            filled += 1;
        }
    }
    if filled > 0 {
        tracing::info!(
            executions = filled,
            "built the status index of an older database"
        );
    }
    meta.insert(STATUS_INDEX_BUILT, crate::execution::now_ms())?;
    Ok(())
}

/// A durable commit of one small record, and of the records whose commit
/// the close undid (`replay`, oldest first): whether the reopened file
/// takes writes again, before any sender's event is trusted to it.
fn prove_writable(db: &Database, replay: &[Encoded]) -> Result<(), redb::Error> {
    let txn = write_txn(db, true)?;
    txn.open_table(META)?
        .insert("opened_ms", crate::execution::now_ms())?;
    {
        let mut tables = Tables::open(&txn)?;
        for r in replay {
            tables.insert(r)?;
        }
    }
    txn.commit()?;
    Ok(())
}

enum Heal {
    Healed,
    Waiting,
    Closed,
}

/// Answers a message with the store's outage.
fn refuse(message: Message, reason: &str) {
    let error = || StoreError::Reopening(reason.to_string());
    match message {
        Message::Write(w) => drop(w.done.send(Err(error()))),
        Message::Prune(p) => drop(p.done.send(Err(error()))),
    }
}

/// The tables a record touches, open in one write transaction.
struct Tables<'t> {
    executions: redb::Table<'t, u128, &'static [u8]>,
    bodies: redb::Table<'t, u128, &'static [u8]>,
    by_workflow: redb::Table<'t, (&'static str, u128), ()>,
    unfinished: redb::Table<'t, u128, ()>,
    by_status: redb::Table<'t, (u8, u128), ()>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, redb::Error> {
        Ok(Self {
            executions: txn.open_table(EXECUTIONS)?,
            bodies: txn.open_table(BODIES)?,
            by_workflow: txn.open_table(BY_WORKFLOW)?,
            unfinished: txn.open_table(UNFINISHED)?,
            by_status: txn.open_table(BY_STATUS)?,
        })
    }

    /// Writes a record, its body (the first time) and its index entries.
    fn insert(&mut self, r: &Encoded) -> Result<(), redb::Error> {
        let id = r.id;
        self.executions.insert(id, r.json.as_slice())?;
        if let Some(body) = &r.body {
            self.bodies.insert(id, body.as_ref())?;
            self.by_workflow.insert((r.workflow.as_str(), id), ())?;
        }
        if r.finished {
            self.unfinished.remove(id)?;
            self.by_status.insert((r.status, id), ())?;
        } else {
            self.unfinished.insert(id, ())?;
        }
        Ok(())
    }
}

/// A write transaction, durable (`Immediate`: persistent when its commit
/// returns) or not (`None`: made durable by the next durable commit).
pub(super) fn write_txn(
    db: &Database,
    durable: bool,
) -> Result<redb::WriteTransaction, redb::Error> {
    let mut txn = db.begin_write()?;
    let durability = if durable {
        Durability::Immediate
    } else {
        Durability::None
    };
    txn.set_durability(durability)
        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
    Ok(txn)
}

/// Commits a batch, durably or not; returns each write's claim, in order.
fn commit(db: &Database, batch: &[Write], durable: bool) -> Result<Vec<Claim>, redb::Error> {
    let txn = write_txn(db, durable)?;
    let mut claims = Vec::with_capacity(batch.len());
    {
        let mut tables = Tables::open(&txn)?;
        let mut keys = txn.open_table(IDEMPOTENCY)?;
        let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY)?;
        let mut counters = txn.open_table(QUOTAS)?;
        let now = crate::execution::now_ms();
        prune_keys(&mut keys, &mut expiry, now)?;
        prune_quotas(&mut counters, now)?;
        for w in batch {
            let held = match (&w.key, w.records.first()) {
                (Some(key), Some(_)) => keys
                    .get(key.scoped.as_str())?
                    .map(|v| v.value())
                    .filter(|&(_, expires)| expires > now)
                    .filter(|&(id, _)| key.replaces != Some(Uuid::from_u128(id))),
                _ => None,
            };
            let mut claim = match held {
                Some((id, _)) => Claim::Duplicate(Uuid::from_u128(id)),
                None => Claim::New,
            };
            if claim == Claim::New {
                let mut counts = Vec::with_capacity(w.quotas.len());
                for (index, q) in w.quotas.iter().enumerate() {
                    let count = counters.get(q.counter.as_str())?.map_or(0, |v| v.value());
                    if count >= q.limit {
                        claim = Claim::OverQuota {
                            index,
                            resets_at_ms: q.resets_at_ms,
                        };
                        break;
                    }
                    counts.push(count);
                }
                if claim == Claim::New {
                    for (q, count) in w.quotas.iter().zip(counts) {
                        counters.insert(q.counter.as_str(), count + 1)?;
                    }
                    if let (Some(key), Some(record)) = (&w.key, w.records.first()) {
                        keys.insert(key.scoped.as_str(), (record.id, key.expires_at_ms))?;
                        expiry.insert((key.expires_at_ms, key.scoped.as_str()), ())?;
                    }
                }
            }
            claims.push(claim);
            if claim != Claim::New {
                continue;
            }
            for r in &w.records {
                tables.insert(r)?;
            }
        }
    }
    txn.commit()?;
    Ok(claims)
}

/// Drops up to 256 counters of quota windows that have ended.
fn prune_quotas(counters: &mut redb::Table<&str, u64>, now: u64) -> Result<(), redb::Error> {
    let ended = format!("{now:016x}");
    let old: Vec<String> = counters
        .range(..ended.as_str())?
        .take(256)
        .map(|e| e.map(|(k, _)| k.value().to_string()))
        .collect::<Result<_, _>>()?;
    for counter in old {
        counters.remove(counter.as_str())?;
    }
    Ok(())
}

/// Drops up to 256 expired idempotency keys: pruning keeps pace with
/// writes without making any one commit long.
fn prune_keys(
    keys: &mut redb::Table<&str, (u128, u64)>,
    expiry: &mut redb::Table<(u64, &str), ()>,
    now: u64,
) -> Result<(), redb::Error> {
    let expired: Vec<(u64, String)> = expiry
        .range((0, "")..(now, ""))?
        .take(256)
        .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_string())))
        .collect::<Result<_, _>>()?;
    for (at, key) in expired {
        expiry.remove((at, key.as_str()))?;
        // A key re-claimed since holds a later expiry: keep it.
        let current = keys.get(key.as_str())?.map(|v| v.value().1);
        if current.is_some_and(|c| c <= now) {
            keys.remove(key.as_str())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::execution::{Event, RequestMeta, Status};

    fn execution() -> Execution {
        let event = Event::new(RequestMeta::default(), None, Bytes::new());
        Execution::queued("w", "webhook", &event, vec![])
    }

    /// Progress written with `put_soon` is read back at once, and what a
    /// reopen after an I/O error would have undone is written again by
    /// the reopen's first commit, index entries included.
    #[tokio::test]
    async fn progress_without_its_own_fsync_is_kept_until_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let mut e = execution();
        {
            let store = Store::open(&path).unwrap();
            store
                .put_new(&e, Bytes::new(), None, Vec::new())
                .await
                .unwrap();
            e.status = Status::Succeeded;
            store.put_soon(&e).await.unwrap();
            let read = store.get(e.id).await.unwrap().unwrap();
            assert_eq!(read.status, Status::Succeeded);
            assert_eq!(listed(&store, Status::Succeeded).await, [e.id]);
        }
        let mut again = execution();
        again.status = Status::Failed;
        {
            // Open once the writer thread has let go of the file.
            let db = (0..500)
                .find_map(|_| {
                    let db = create(&path, DEFAULT_CACHE).ok();
                    if db.is_none() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    db
                })
                .expect("the writer let go of the database");
            prove_writable(&db, &[Encoded::new(&again, None)]).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(listed(&store, Status::Failed).await, [again.id]);
        assert_eq!(listed(&store, Status::Succeeded).await, [e.id]);
    }

    #[tokio::test]
    async fn a_key_is_held_until_it_expires_then_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let far = crate::execution::now_ms() + 60_000;
        let first = execution();
        let key = |exp| Some(IdempotencyKey::new("w", "k", exp));
        assert_eq!(
            store
                .put_new(&first, Bytes::new(), key(far), Vec::new())
                .await
                .unwrap(),
            Claim::New
        );
        let second = execution();
        assert_eq!(
            store
                .put_new(&second, Bytes::new(), key(far), Vec::new())
                .await
                .unwrap(),
            Claim::Duplicate(first.id)
        );
        assert!(
            store.get(second.id).await.unwrap().is_none(),
            "a duplicate writes nothing"
        );
        // Another workflow's key of the same name is another key.
        let other = IdempotencyKey::new("v", "k", far);
        assert_eq!(
            store
                .put_new(&execution(), Bytes::new(), Some(other), Vec::new())
                .await
                .unwrap(),
            Claim::New
        );

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let past = crate::execution::now_ms() - 1;
        assert_eq!(
            store
                .put_new(&execution(), Bytes::new(), key(past), Vec::new())
                .await
                .unwrap(),
            Claim::New
        );
        assert_eq!(held_keys(&store), (1, 1));
        // Expired: claimable again.
        assert_eq!(
            store
                .put_new(&execution(), Bytes::new(), key(far), Vec::new())
                .await
                .unwrap(),
            Claim::New
        );
        // An expired key is pruned by the next commit, whatever it holds.
        let gone = IdempotencyKey::new("w", "gone", past);
        store
            .put_new(&execution(), Bytes::new(), Some(gone), Vec::new())
            .await
            .unwrap();
        assert_eq!(held_keys(&store), (2, 2), "`k` (re-claimed) and `gone`");
        store.put(&execution(), None).await.unwrap();
        assert_eq!(held_keys(&store), (1, 1), "only `k` is left");
    }

    /// Finding 11 of the fault issue: finished executions past the
    /// retention are deleted in bounded batches, bodies and index entries
    /// too; unfinished and recent ones stay.
    #[tokio::test]
    async fn the_disk_does_not_fill_old_executions_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let at = |ms: u64| {
            let nanos = u32::try_from(ms % 1000).unwrap() * 1_000_000;
            Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                nanos,
            ))
        };
        let old_ms = 1_000_000_000_000;
        let body = || Bytes::from_static(b"{}");
        let mut old = Vec::new();
        for i in 0..3 {
            let mut e = execution();
            e.id = at(old_ms + i);
            e.status = Status::Succeeded;
            store.put_new(&e, body(), None, Vec::new()).await.unwrap();
            old.push(e.id);
        }
        let mut stuck = execution();
        stuck.id = at(old_ms + 10);
        store
            .put_new(&stuck, body(), None, Vec::new())
            .await
            .unwrap();
        let mut recent = execution();
        recent.status = Status::Failed;
        store
            .put_new(&recent, body(), None, Vec::new())
            .await
            .unwrap();

        let cutoff = old_ms + 100;
        assert_eq!(store.prune_before(cutoff, 2).await.unwrap(), 2);
        assert_eq!(store.prune_before(cutoff, 2).await.unwrap(), 1);
        assert_eq!(store.prune_before(cutoff, 2).await.unwrap(), 0);
        for id in old {
            assert!(store.get(id).await.unwrap().is_none());
            assert!(store.body(id).await.unwrap().is_none());
        }
        let listed = store
            .list(ListFilter {
                workflow: Some("w".into()),
                limit: 10,
                ..ListFilter::default()
            })
            .await
            .unwrap();
        let ids: Vec<Uuid> = listed.iter().map(|e| e.id).collect();
        assert_eq!(ids, [recent.id, stuck.id]);
        let index = {
            let txn = begin_read(&store);
            txn.open_table(BY_WORKFLOW).unwrap().len().unwrap()
        };
        assert_eq!(index, 2, "index entries of pruned executions remain");
        assert!(store.body(stuck.id).await.unwrap().is_some());
        assert!(store.file_size() > 0);
    }

    /// A succeeded execution's output is its last step's, stored once and
    /// put back when read; any other output is stored as it is.
    #[tokio::test]
    async fn one_write_per_event_output_is_not_stored_twice() {
        use crate::execution::{Attempt, StepRecord, StepStatus};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let output = || {
            serde_json::value::RawValue::from_string(format!("\"{}\"", "o".repeat(4000))).unwrap()
        };
        let mut e = execution();
        e.steps.push(StepRecord {
            id: "s".into(),
            plugin: "p.wasm".into(),
            plugin_digest: String::new(),
            status: StepStatus::Succeeded,
            attempts: vec![Attempt {
                number: 1,
                started_at_ms: 0,
                wall_time_us: 1,
                peak_memory_bytes: 0,
                output: Some(output()),
                error: None,
                logs: Vec::new(),
                logs_dropped_bytes: 0,
                ..Default::default()
            }],
        });
        e.status = Status::Succeeded;
        e.output = Some(output());
        assert!(encode(&e).len() < 5000, "the output was stored twice");
        store
            .put_new(&e, Bytes::new(), None, Vec::new())
            .await
            .unwrap();
        let read = store.get(e.id).await.unwrap().unwrap();
        assert_eq!(read.output.unwrap().get(), e.output.as_ref().unwrap().get());
        // An output that is not the last step's stays in the record.
        let mut other = e.clone();
        other.id = Uuid::now_v7();
        other.output = Some(serde_json::value::RawValue::from_string("7".into()).unwrap());
        assert!(encode(&other).len() > 4000);
        store
            .put_new(&other, Bytes::new(), None, Vec::new())
            .await
            .unwrap();
        let read = store.get(other.id).await.unwrap().unwrap();
        assert_eq!(read.output.unwrap().get(), "7");
    }

    async fn listed(store: &Store, status: Status) -> Vec<Uuid> {
        let filter = ListFilter {
            statuses: vec![status],
            limit: 10,
            ..ListFilter::default()
        };
        store
            .list(filter)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect()
    }

    /// Listing by status reads an index: finished ones from `BY_STATUS`,
    /// open ones from the unfinished set; an execution moves between them
    /// as it finishes and leaves the index when it is pruned.
    #[tokio::test]
    async fn every_list_filter_is_served_from_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let mut a = execution();
        let mut b = execution();
        store
            .put_new(&a, Bytes::new(), None, Vec::new())
            .await
            .unwrap();
        store
            .put_new(&b, Bytes::new(), None, Vec::new())
            .await
            .unwrap();
        assert_eq!(listed(&store, Status::Queued).await, [b.id, a.id]);
        b.status = Status::Running;
        store.put(&b, None).await.unwrap();
        assert_eq!(listed(&store, Status::Queued).await, [a.id]);
        assert_eq!(listed(&store, Status::Running).await, [b.id]);
        a.status = Status::Failed;
        b.status = Status::Succeeded;
        store.put_many([&a, &b]).await.unwrap();
        assert!(listed(&store, Status::Queued).await.is_empty());
        assert!(listed(&store, Status::Running).await.is_empty());
        assert_eq!(listed(&store, Status::Failed).await, [a.id]);
        assert_eq!(listed(&store, Status::Succeeded).await, [b.id]);
        assert!(listed(&store, Status::TimedOut).await.is_empty());
        let index = || {
            let txn = begin_read(&store);
            txn.open_table(BY_STATUS).unwrap().len().unwrap()
        };
        assert_eq!(index(), 2);
        assert_eq!(
            store
                .prune_before(crate::execution::now_ms() + 1000, 10)
                .await
                .unwrap(),
            2
        );
        assert_eq!(index(), 0, "pruned executions left index entries");
    }

    /// A database written before the status index had one gets it filled
    /// when it is opened.
    #[tokio::test]
    async fn every_list_filter_is_served_from_an_index_older_files_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        let mut done = execution();
        done.status = Status::TimedOut;
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(EXECUTIONS)
                .unwrap()
                .insert(
                    done.id.as_u128(),
                    serde_json::to_vec(&done).unwrap().as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(listed(&store, Status::TimedOut).await, [done.id]);
    }

    fn begin_read(store: &Store) -> redb::ReadTransaction {
        let db = store.db.read().unwrap();
        db.as_ref().unwrap().begin_read().unwrap()
    }

    /// Entries in the key table and in the expiry index.
    fn held_keys(store: &Store) -> (u64, u64) {
        let txn = begin_read(store);
        let keys = txn.open_table(IDEMPOTENCY).unwrap().len().unwrap();
        let expiry = txn.open_table(IDEMPOTENCY_EXPIRY).unwrap().len().unwrap();
        (keys, expiry)
    }
}
