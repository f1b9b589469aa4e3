//! The step's key-value bucket (`wasi:keyvalue`), as its `allow.kv`
//! grants: kept in hookflow's database across executions and restarts.
//! Without a grant every call fails with an access-denied error.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::wasi::keyvalue::{atomics, store};

fn bucket() -> Result<store::Bucket, Error> {
    store::open("").map_err(from_store)
}

fn from_store(e: store::Error) -> Error {
    match e {
        store::Error::AccessDenied => {
            Error::permanent("key-value access denied: the step has no allow.kv grant")
        }
        store::Error::NoSuchStore => Error::permanent("no such key-value bucket"),
        store::Error::Other(m) => Error::permanent(format!("key-value: {m}")),
    }
}

pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    bucket()?.get(key).map_err(from_store)
}

pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    bucket()?.set(key, value).map_err(from_store)
}

pub fn delete(key: &str) -> Result<(), Error> {
    bucket()?.delete(key).map_err(from_store)
}

pub fn exists(key: &str) -> Result<bool, Error> {
    bucket()?.exists(key).map_err(from_store)
}

/// Adds `delta` to the number at `key` (0 when absent) and returns it.
pub fn increment(key: &str, delta: u64) -> Result<u64, Error> {
    atomics::increment(&bucket()?, key, delta).map_err(from_store)
}

/// Every key in the bucket, in order.
pub fn keys() -> Result<Vec<String>, Error> {
    let bucket = bucket()?;
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor).map_err(from_store)?;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    get(key)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(Error::from))
        .transpose()
}

pub fn set_json(key: &str, value: &impl Serialize) -> Result<(), Error> {
    set(key, &serde_json::to_vec(value)?)
}
