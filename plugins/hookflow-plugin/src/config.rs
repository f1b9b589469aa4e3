//! Settings and secrets (`wasi:config/store`): the names the step's
//! `allow.config` grants, from the manifest's `[settings]` and
//! `[secrets]`. A name not granted reads as absent. Secret values are
//! redacted from everything hookflow keeps of the attempt, so logging one
//! shows `[redacted]`.

use crate::Error;
use crate::bindings::wasi::config::store;

/// The value of `name`, if granted and set.
pub fn get(name: &str) -> Result<Option<String>, Error> {
    store::get(name).map_err(|e| Error::permanent(format!("config `{name}`: {e:?}")))
}

/// The value of `name`, or an error naming it.
pub fn require(name: &str) -> Result<String, Error> {
    get(name)?.ok_or_else(|| {
        Error::permanent(format!(
            "config `{name}` is not set: grant it with allow.config and give it in [settings] or [secrets]"
        ))
    })
}
