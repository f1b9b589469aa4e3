//! Per-workflow runtime limits: the rate limiter that admission consults
//! and the semaphore that bounds a workflow's running executions.
//!
//! They are state, not configuration: they live in a table keyed by
//! workflow name, apart from the immutable [`WorkflowSpec`], so that a new
//! snapshot of the same workflow with the same limits finds the tokens and
//! running executions of the old one. A workflow whose limits change gets
//! fresh ones.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::Semaphore;

use crate::config::{Rate, WorkflowSpec};

/// A workflow's request rate limiter (GCRA): bursts up to the count, then
/// one more every `per / count`, shared by every connection.
pub type RateLimiter = governor::DefaultDirectRateLimiter;

/// The runtime limits of one workflow.
pub struct Gate {
    /// What the gate was made for: a spec asking for other limits gets a
    /// new gate.
    concurrency_limit: usize,
    rate_limit: Option<Rate>,
    receiving_limit: u64,
    /// `limits.rate`, if any.
    pub rate: Option<RateLimiter>,
    /// `limits.concurrency` places for running executions.
    pub running: Arc<Semaphore>,
    /// `limits.max_receiving`, in KiB: room for bodies being received.
    pub receiving: Arc<Semaphore>,
}

impl Gate {
    fn new(spec: &WorkflowSpec) -> Self {
        let limits = spec.limits;
        Self {
            concurrency_limit: limits.concurrency,
            rate_limit: limits.rate,
            rate: limits.rate.and_then(rate_limiter),
            running: Arc::new(Semaphore::new(limits.concurrency)),
            receiving_limit: limits.max_receiving,
            receiving: Arc::new(Semaphore::new(kib(limits.max_receiving) as usize)),
        }
    }

    fn fits(&self, spec: &WorkflowSpec) -> bool {
        self.concurrency_limit == spec.limits.concurrency
            && self.rate_limit == spec.limits.rate
            && self.receiving_limit == spec.limits.max_receiving
    }
}

/// Bytes in whole KiB, rounded up: the unit of receiving room (a
/// semaphore's permits are counted in `u32`).
pub fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

fn rate_limiter(rate: Rate) -> Option<RateLimiter> {
    let count = NonZeroU32::new(rate.count)?;
    let quota = governor::Quota::with_period(rate.per / rate.count)?.allow_burst(count);
    Some(governor::RateLimiter::direct(quota))
}

/// Every workflow's gate, by name.
#[derive(Default)]
pub struct Gates {
    by_name: RwLock<HashMap<String, Arc<Gate>>>,
}

impl Gates {
    /// The gate of `spec`'s workflow, made on first use or when its limits
    /// changed.
    pub fn get(&self, spec: &WorkflowSpec) -> Arc<Gate> {
        {
            let table = self.by_name.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(gate) = table.get(&spec.name).filter(|g| g.fits(spec)) {
                return gate.clone();
            }
        }
        let mut table = self.by_name.write().unwrap_or_else(PoisonError::into_inner);
        let gate = table
            .entry(spec.name.clone())
            .or_insert_with(|| Arc::new(Gate::new(spec)));
        if !gate.fits(spec) {
            *gate = Arc::new(Gate::new(spec));
        }
        gate.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(concurrency: usize, rate: Option<Rate>) -> WorkflowSpec {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("plugins/echo.wasm"), "x").unwrap();
        let file = dir.path().join("w.toml");
        std::fs::write(
            &file,
            "[trigger]\npath = \"w\"\nauth = { kind = \"none\" }\n[[steps]]\nplugin = \"plugins/echo.wasm\"\n",
        )
        .unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut spec = crate::config::load_file(&file, &root).unwrap();
        spec.limits.concurrency = concurrency;
        spec.limits.rate = rate;
        spec
    }

    #[test]
    fn a_gate_outlives_its_spec_until_the_limits_change() {
        let gates = Gates::default();
        let rate = Some(Rate {
            count: 1,
            per: Duration::from_secs(60),
        });
        let first = gates.get(&spec(2, rate));
        assert!(first.rate.as_ref().unwrap().check().is_ok());
        let _running = first.running.clone().try_acquire_owned().unwrap();

        // A new spec of the same workflow with the same limits: same state.
        let again = gates.get(&spec(2, rate));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(again.rate.as_ref().unwrap().check().is_err(), "token spent");
        assert_eq!(again.running.available_permits(), 1);

        // Other limits: a fresh gate.
        let changed = gates.get(&spec(4, rate));
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_eq!(changed.running.available_permits(), 4);
    }
}
