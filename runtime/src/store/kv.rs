//! Key-value buckets granted to steps (`wasi:keyvalue`), in the same redb
//! file as the executions: a value table keyed by (namespace, key), and
//! the bytes each namespace holds, so that its cap is checked without a
//! scan. Every write commits durably before the step hears it succeeded.

use std::sync::PoisonError;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Store, write_txn};
use crate::engine::caps::KvPolicy;
use crate::engine::caps::kv::{KvBackend, KvError, LIST_PAGE};

/// (namespace, key) -> value.
const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
/// namespace -> bytes of its keys and values together.
const KV_BYTES: TableDefinition<&str, u64> = TableDefinition::new("kv_bytes");

fn failed(e: impl std::fmt::Display) -> KvError {
    KvError::Failed(e.to_string())
}

impl Store {
    fn with_open<T>(&self, f: impl FnOnce(&Database) -> Result<T, KvError>) -> Result<T, KvError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match db.as_ref() {
            Some(db) => f(db),
            None => Err(KvError::Failed("the database is being reopened".into())),
        }
    }

    /// Replaces `key`'s value with what `update` makes of the old one,
    /// within the namespace's cap, in one durable transaction.
    fn kv_update<T>(
        &self,
        namespace: &str,
        key: &str,
        policy: &KvPolicy,
        update: impl FnOnce(Option<&[u8]>) -> Result<(Option<Vec<u8>>, T), KvError>,
    ) -> Result<T, KvError> {
        self.with_open(|db| {
            let txn = write_txn(db, true).map_err(failed)?;
            let out = {
                let mut values = txn.open_table(KV).map_err(failed)?;
                let mut sizes = txn.open_table(KV_BYTES).map_err(failed)?;
                let old = values.get((namespace, key)).map_err(failed)?;
                let old_bytes = old
                    .as_ref()
                    .map_or(0, |v| (key.len() + v.value().len()) as u64);
                let (new, out) = update(old.as_ref().map(|v| v.value()))?;
                drop(old);
                let new_bytes = new.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
                if let Some(v) = &new
                    && v.len() as u64 > policy.max_value
                {
                    return Err(KvError::Refused(format!(
                        "a value of {} bytes; the limit is {}",
                        v.len(),
                        policy.max_value
                    )));
                }
                let used = sizes
                    .get(namespace)
                    .map_err(failed)?
                    .map_or(0, |v| v.value());
                let total = (used - old_bytes.min(used)).saturating_add(new_bytes);
                if new_bytes > old_bytes && total > policy.max_namespace {
                    return Err(KvError::Refused(format!(
                        "the bucket would hold {total} bytes; the limit is {}",
                        policy.max_namespace
                    )));
                }
                match &new {
                    Some(v) => values.insert((namespace, key), v.as_slice()),
                    None => values.remove((namespace, key)),
                }
                .map_err(failed)?;
                sizes.insert(namespace, total).map_err(failed)?;
                out
            };
            txn.commit().map_err(failed)?;
            Ok(out)
        })
    }
}

impl KvBackend for Store {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.with_open(|db| {
            let txn = db.begin_read().map_err(failed)?;
            let values = match txn.open_table(KV) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(failed(e)),
            };
            Ok(values
                .get((namespace, key))
                .map_err(failed)?
                .map(|v| v.value().to_vec()))
        })
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        policy: &KvPolicy,
    ) -> Result<(), KvError> {
        self.kv_update(namespace, key, policy, |_| Ok((Some(value.to_vec()), ())))
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        self.kv_update(namespace, key, &KvPolicy::default(), |_| Ok((None, ())))
    }

    fn list(&self, namespace: &str, skip: u64) -> Result<(Vec<String>, bool), KvError> {
        self.with_open(|db| {
            let txn = db.begin_read().map_err(failed)?;
            let values = match txn.open_table(KV) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), false)),
                Err(e) => return Err(failed(e)),
            };
            let skip = usize::try_from(skip).unwrap_or(usize::MAX);
            let mut keys = Vec::new();
            let mut more = false;
            for entry in values.range((namespace, "")..).map_err(failed)?.skip(skip) {
                let (k, _) = entry.map_err(failed)?;
                let (ns, key) = k.value();
                if ns != namespace {
                    break;
                }
                if keys.len() == LIST_PAGE {
                    more = true;
                    break;
                }
                keys.push(key.to_string());
            }
            Ok((keys, more))
        })
    }

    fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: u64,
        policy: &KvPolicy,
    ) -> Result<u64, KvError> {
        self.kv_update(namespace, key, policy, |old| {
            let current = match old {
                None => 0,
                Some(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        KvError::Refused(format!("`{key}` does not hold a decimal number"))
                    })?,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| KvError::Refused(format!("`{key}` would overflow a u64")))?;
            Ok((Some(next.to_string().into_bytes()), next))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store, as the engine sees it (its own `get` and `list` are
    /// for executions).
    fn store() -> (tempfile::TempDir, Box<dyn KvBackend>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kv.redb")).unwrap();
        (dir, Box::new(store))
    }

    #[tokio::test]
    async fn namespaces_are_apart_and_capped() {
        let (_dir, s) = store();
        let policy = KvPolicy {
            max_key: 64,
            max_value: 10,
            max_namespace: 20,
        };
        s.set("a", "k", b"12345", &policy).unwrap();
        assert_eq!(s.get("a", "k").unwrap().as_deref(), Some(&b"12345"[..]));
        assert_eq!(s.get("b", "k").unwrap(), None);
        let e = s.set("a", "big", b"12345678901", &policy).unwrap_err();
        assert!(e.to_string().contains("limit is 10"), "{e}");
        // 1 + 5 bytes held; another 3 + 10 is within 20, a third is not.
        s.set("a", "two", b"1234567890", &policy).unwrap();
        let e = s.set("a", "xy", b"123", &policy).unwrap_err();
        assert!(e.to_string().contains("limit is 20"), "{e}");
        // Replacing a value by a smaller one always fits, and frees room.
        s.set("a", "two", b"1", &policy).unwrap();
        s.set("a", "xy", b"123", &policy).unwrap();
        s.delete("a", "xy").unwrap();
        assert_eq!(
            s.list("a", 0).unwrap(),
            (vec!["k".into(), "two".into()], false)
        );
        assert_eq!(s.list("b", 0).unwrap(), (vec![], false));
    }

    #[tokio::test]
    async fn increments_count_in_decimal_and_refuse_other_values() {
        let (_dir, s) = store();
        let policy = KvPolicy::default();
        assert_eq!(s.increment("n", "c", 1, &policy).unwrap(), 1);
        assert_eq!(s.increment("n", "c", 41, &policy).unwrap(), 42);
        assert_eq!(s.get("n", "c").unwrap().as_deref(), Some(&b"42"[..]));
        s.set("n", "text", b"hello", &policy).unwrap();
        assert!(s.increment("n", "text", 1, &policy).is_err());
        s.set("n", "max", u64::MAX.to_string().as_bytes(), &policy)
            .unwrap();
        assert!(s.increment("n", "max", 1, &policy).is_err());
    }

    #[tokio::test]
    async fn listing_pages_through_many_keys() {
        let (_dir, s) = store();
        let policy = KvPolicy::default();
        for i in 0..(LIST_PAGE + 5) {
            s.set("p", &format!("k{i:04}"), b"v", &policy).unwrap();
        }
        let (first, more) = s.list("p", 0).unwrap();
        assert_eq!((first.len(), more), (LIST_PAGE, true));
        let (rest, more) = s.list("p", LIST_PAGE as u64).unwrap();
        assert_eq!((rest.len(), more), (5, false));
        assert_eq!(rest[0], format!("k{LIST_PAGE:04}"));
    }
}
