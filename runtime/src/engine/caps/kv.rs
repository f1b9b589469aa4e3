//! `wasi:keyvalue` (`store`, `atomics`) for a step: the bucket its grant
//! names, kept in the hookflow database by a [`KvBackend`]. wasmtime's own
//! `wasmtime-wasi-keyvalue` keeps data in memory only, so the interface's
//! host side is generated here from the same WIT and written against the
//! database.
//!
//! Opening any other bucket is refused (`access-denied`) and audited;
//! every write (key and bytes) is audited. Values are bytes; `increment`
//! keeps a decimal number, as wasmtime's implementation does, so `get`
//! reads it back as text.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Resource;

use super::super::bindings::wasi::keyvalue::{atomics, store};
use super::super::host::Host;
use super::{Audit, KvPolicy, audited_text};
use crate::config::KvGrant;
use crate::execution::HostCall;

/// Why a key-value operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("{0}")]
    Refused(String),
    #[error("the database could not do it: {0}")]
    Failed(String),
}

/// Keys listed per `list-keys` call.
pub const LIST_PAGE: usize = 100;

/// Where buckets are kept. Blocking: called on blocking threads.
pub trait KvBackend: Send + Sync + 'static {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        policy: &KvPolicy,
    ) -> Result<(), KvError>;
    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError>;
    /// Up to [`LIST_PAGE`] keys in order from the `skip`th, and whether
    /// more follow.
    fn list(&self, namespace: &str, skip: u64) -> Result<(Vec<String>, bool), KvError>;
    /// Adds `delta` to the decimal number at `key` (0 when absent).
    fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: u64,
        policy: &KvPolicy,
    ) -> Result<u64, KvError>;
}

/// A step's access to key-value data, if granted.
#[derive(Clone)]
pub struct KvAccess {
    pub backend: Arc<dyn KvBackend>,
    pub grant: KvGrant,
    pub policy: KvPolicy,
}

/// An open bucket (the `bucket` resource).
pub struct Bucket {
    namespace: String,
    name: String,
}

/// Both kinds reach the guest as `other`, with their text.
fn other(e: KvError) -> store::Error {
    store::Error::Other(e.to_string())
}

impl Host {
    /// Runs a backend call on a blocking thread, timed as host time.
    fn kv<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn KvBackend) -> Result<T, KvError> + Send + 'static,
    ) -> impl Future<Output = Result<T, store::Error>> + Send + 'static {
        let access = self.kv.clone();
        let audit = self.audit.clone();
        async move {
            let Some(access) = access else {
                return Err(store::Error::AccessDenied);
            };
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || f(access.backend.as_ref()))
                .await
                .map_err(|e| store::Error::Other(e.to_string()))
                .and_then(|r| r.map_err(other));
            audit.add_time(started.elapsed());
            result
        }
    }

    fn bucket(&self, b: &Resource<Bucket>) -> wasmtime::Result<(String, String)> {
        let b = self.table.get(b)?;
        Ok((b.namespace.clone(), b.name.clone()))
    }

    fn key_fits(&self, key: &str) -> Result<(), store::Error> {
        let max = self.kv.as_ref().map_or(0, |a| a.policy.max_key);
        if key.len() > max {
            return Err(store::Error::Other(format!(
                "a key of {} bytes; the limit is {max}",
                key.len()
            )));
        }
        Ok(())
    }

    fn audit_write(audit: &Audit, op: &str, bucket: &str, key: &str, bytes: u64) {
        audit.record(HostCall::Kv {
            op: op.into(),
            bucket: bucket.into(),
            key: audited_text(key),
            bytes,
            denied: None,
        });
    }
}

impl store::Host for Host {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        let granted = self.kv.as_ref().map(|a| &a.grant);
        let Some(grant) = granted
            .filter(|g| identifier.is_empty() || identifier == "default" || identifier == g.bucket)
        else {
            let denied = match granted {
                None => {
                    format!("bucket `{identifier}`: this step has no key-value grant (allow.kv)")
                }
                Some(g) => format!(
                    "bucket `{identifier}` is not this step's (allow.kv grants `{}`)",
                    g.bucket
                ),
            };
            self.audit.record(HostCall::Kv {
                op: "open".into(),
                bucket: audited_text(&identifier),
                key: String::new(),
                bytes: 0,
                denied: Some(denied),
            });
            return Ok(Err(store::Error::AccessDenied));
        };
        let bucket = Bucket {
            namespace: grant.namespace.clone(),
            name: grant.bucket.clone(),
        };
        Ok(Ok(self.table.push(bucket)?))
    }
}

impl store::HostBucket for Host {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let (ns, _) = self.bucket(&bucket)?;
        Ok(self.kv(move |b| b.get(&ns, &key)).await)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let (ns, name) = self.bucket(&bucket)?;
        if let Err(e) = self.key_fits(&key) {
            return Ok(Err(e));
        }
        let policy = self.kv.as_ref().map(|a| a.policy).unwrap_or_default();
        let bytes = value.len() as u64;
        let audited = key.clone();
        let result = self.kv(move |b| b.set(&ns, &key, &value, &policy)).await;
        if result.is_ok() {
            Self::audit_write(&self.audit, "set", &name, &audited, bytes);
        }
        Ok(result)
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let (ns, name) = self.bucket(&bucket)?;
        let audited = key.clone();
        let result = self.kv(move |b| b.delete(&ns, &key)).await;
        if result.is_ok() {
            Self::audit_write(&self.audit, "delete", &name, &audited, 0);
        }
        Ok(result)
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let (ns, _) = self.bucket(&bucket)?;
        Ok(self
            .kv(move |b| b.get(&ns, &key).map(|v| v.is_some()))
            .await)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let (ns, _) = self.bucket(&bucket)?;
        let skip = cursor.unwrap_or(0);
        Ok(self
            .kv(move |b| b.list(&ns, skip))
            .await
            .map(|(keys, more)| store::KeyResponse {
                cursor: more.then(|| skip + keys.len() as u64),
                keys,
            }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for Host {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        let (ns, name) = self.bucket(&bucket)?;
        if let Err(e) = self.key_fits(&key) {
            return Ok(Err(e));
        }
        let policy = self.kv.as_ref().map(|a| a.policy).unwrap_or_default();
        let audited = key.clone();
        let result = self
            .kv(move |b| b.increment(&ns, &key, delta, &policy))
            .await;
        if result.is_ok() {
            Self::audit_write(&self.audit, "increment", &name, &audited, 8);
        }
        Ok(result)
    }
}
