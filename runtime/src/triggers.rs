//! Triggers made at runtime through `/api/v1/triggers` (the RunTools
//! seed): webhook triggers, each served at `/hooks/r/{id}` with its own
//! generated secret (`Authorization: Bearer`), and cron triggers. Kept in
//! the store and held here for routing; a trigger of a workflow not loaded
//! answers `404` until it is back.
//!
//! A webhook secret is shown once, when it is made; only its SHA-256 is
//! kept, and a presented token is hashed and compared in constant time
//! with every secret that still verifies. Rotating adds a new secret and
//! lets the old ones verify for a grace period.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::CronSpec;
use crate::store::{StoredSecret, TriggerKind, TriggerRecord};

/// A trigger as served: its record, and its schedule parsed.
#[derive(Debug, Clone)]
pub struct Live {
    pub record: TriggerRecord,
    pub cron: Option<CronSpec>,
}

impl Live {
    /// `Err` when a stored cron trigger no longer parses.
    pub fn new(record: TriggerRecord) -> Result<Self, String> {
        let cron = match record.kind {
            TriggerKind::Webhook => None,
            TriggerKind::Cron => Some(CronSpec::parse(
                record.schedule.as_deref().unwrap_or_default(),
                record.timezone.as_deref().unwrap_or("UTC"),
                record.missed.unwrap_or_default(),
            )?),
        };
        Ok(Self { record, cron })
    }
}

/// Every trigger made through the API, by id.
#[derive(Default)]
pub struct Triggers {
    live: RwLock<BTreeMap<String, Live>>,
    /// One change at a time: store, then memory.
    pub changing: tokio::sync::Mutex<()>,
}

impl Triggers {
    pub fn new(records: Vec<TriggerRecord>) -> Self {
        let triggers = Self::default();
        for record in records {
            match Live::new(record) {
                Ok(live) => triggers.put(live),
                Err(e) => tracing::error!(error = %e, "a stored trigger does not load"),
            }
        }
        triggers
    }

    pub fn get(&self, id: &str) -> Option<Live> {
        self.read().get(id).cloned()
    }

    pub fn put(&self, live: Live) {
        self.write().insert(live.record.id.clone(), live);
    }

    pub fn remove(&self, id: &str) {
        self.write().remove(id);
    }

    /// Every trigger (of `workflow`, when given), in id order.
    pub fn list(&self, workflow: Option<&str>) -> Vec<Live> {
        self.read()
            .values()
            .filter(|l| workflow.is_none_or(|w| l.record.workflow == w))
            .cloned()
            .collect()
    }

    /// The enabled cron triggers: (id, workflow, schedule).
    pub fn crons(&self) -> Vec<(String, String, CronSpec)> {
        self.read()
            .values()
            .filter(|l| l.record.enabled)
            .filter_map(|l| {
                let cron = l.cron.clone()?;
                Some((l.record.id.clone(), l.record.workflow.clone(), cron))
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Live>> {
        self.live.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Live>> {
        self.live.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new trigger id.
pub fn new_id() -> String {
    format!("trg_{}", uuid::Uuid::now_v7().simple())
}

/// A new secret: the text to show once, and what is kept of it.
pub fn new_secret(now_ms: u64) -> (String, StoredSecret) {
    let bytes: [u8; 32] = rand::random();
    let secret = format!("hfs_{}", URL_SAFE_NO_PAD.encode(bytes));
    let kept = StoredSecret {
        sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        created_at_ms: now_ms,
        expires_at_ms: None,
    };
    (secret, kept)
}

/// Whether `token` is one of `record`'s secrets still in force at `now`,
/// compared in constant time with each.
pub fn verify(record: &TriggerRecord, token: &[u8], now_ms: u64) -> bool {
    let presented = Sha256::digest(token);
    record
        .secrets
        .iter()
        .filter(|s| s.expires_at_ms.is_none_or(|t| t > now_ms))
        .filter_map(|s| hex::decode(&s.sha256).ok())
        .fold(false, |found, kept| {
            bool::from(kept.as_slice().ct_eq(presented.as_slice())) | found
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_until_its_grace_ends() {
        let (secret, mut kept) = new_secret(0);
        assert!(secret.starts_with("hfs_") && secret.len() > 40);
        assert!(!kept.sha256.contains(&secret));
        let mut record = TriggerRecord {
            id: new_id(),
            workflow: "w".into(),
            kind: TriggerKind::Webhook,
            enabled: true,
            created_at_ms: 0,
            secrets: vec![kept.clone()],
            schedule: None,
            timezone: None,
            missed: None,
        };
        assert!(verify(&record, secret.as_bytes(), 10));
        assert!(!verify(&record, b"hfs_wrong", 10));
        kept.expires_at_ms = Some(100);
        record.secrets = vec![kept];
        assert!(verify(&record, secret.as_bytes(), 99));
        assert!(!verify(&record, secret.as_bytes(), 100));
    }
}
