//! Cron triggers (`[[triggers]] kind = "cron"`, and those made through
//! `/api/v1/triggers`): each fire is an execution with trigger kind `cron`,
//! its payload saying which slot it is.
//!
//! A fire claims the idempotency key `cron:{schedule}:{zone}:{slot}` (for
//! a trigger made through the API, `cron:{id}:{slot}`) of its workflow (kept for the trigger's `idempotency_window`), in the
//! transaction that records it: a slot runs once, even when a restart, a
//! reload or a second server on the same database would fire it again. The last slot fired is kept per
//! trigger, so that at start the slots missed while the server was down
//! follow the trigger's `missed` policy: `skip` them, or `run-once` (the
//! latest of them, once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use serde_json::json;

use crate::config::{CronSpec, Missed};
use crate::execution::{Event, RequestMeta, now_ms};
use crate::intake::{Delivery, KeySource, Refusal, Trigger, Wait};
use crate::registry::Workflow;
use crate::state::AppState;

/// How often the scheduler looks at the clock.
const TICK: Duration = Duration::from_millis(100);

/// The first slot of `cron` strictly after `after` (ms since the epoch),
/// in its time zone; `None` when there is none.
pub fn next_slot(cron: &CronSpec, after: u64) -> Option<u64> {
    // Slots are whole seconds; the search keeps any fraction it is given.
    let after = DateTime::<Utc>::from_timestamp(i64::try_from(after / 1000).ok()?, 0)?;
    let local = cron.timezone.from_utc_datetime(&after.naive_utc());
    let next = cron.schedule.find_next_occurrence(&local, false).ok()?;
    u64::try_from(next.timestamp_millis()).ok()
}

/// The slot to fire at start for the slots missed since `last` (the last
/// slot fired, if any) up to `now`: under `run-once` the latest of them,
/// under `skip` none. A trigger never fired before has missed nothing.
pub fn missed_slot(cron: &CronSpec, last: Option<u64>, now: u64) -> Option<u64> {
    let last = last?;
    if cron.missed == Missed::Skip {
        return None;
    }
    let mut slot = next_slot(cron, last)?;
    if slot > now {
        return None;
    }
    // Walk to the latest slot not after `now`.
    while let Some(next) = next_slot(cron, slot).filter(|&n| n <= now) {
        slot = next;
    }
    Some(slot)
}

/// A trigger's identity: its workflow, and its schedule and time zone.
fn trigger_key(workflow: &str, cron: &CronSpec) -> String {
    format!("{workflow}\0{}\0{}", cron.pattern, cron.timezone)
}

/// Fires the cron triggers of the workflows served, until shutdown.
pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(async move {
        // Trigger -> the next slot due.
        let mut due: HashMap<String, u64> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let registry = state.registry.load_full();
            let now = now_ms();
            let mut seen = Vec::new();
            // The manifests' cron triggers, then those made through the
            // API (of workflows loaded): (workflow, schedule, identity,
            // idempotency key prefix).
            let mut all: Vec<(&Arc<Workflow>, CronSpec, String, String)> = Vec::new();
            for workflow in registry.workflows() {
                for cron in &workflow.spec.crons {
                    let key = trigger_key(&workflow.spec.name, cron);
                    let prefix = format!("cron:{}:{}", cron.pattern, cron.timezone);
                    all.push((workflow, cron.clone(), key, prefix));
                }
            }
            for (id, name, cron) in state.triggers.crons() {
                if let Some(workflow) = registry.get(&name) {
                    let key = format!("{name}\0{id}");
                    all.push((workflow, cron, key, format!("cron:{id}")));
                }
            }
            for (workflow, cron, key, prefix) in all {
                let cron = &cron;
                {
                    seen.push(key.clone());
                    let slot = match due.get(&key) {
                        Some(&slot) => slot,
                        None => {
                            // New to this server: catch up as its policy
                            // says, then wait for the next slot.
                            let last = state.store.cron_last(&key).await.ok().flatten();
                            if let Some(missed) = missed_slot(cron, last, now) {
                                fire(&state, workflow, cron, &key, &prefix, missed).await;
                            }
                            let Some(next) = next_slot(cron, now) else {
                                continue;
                            };
                            due.insert(key.clone(), next);
                            next
                        }
                    };
                    if slot <= now {
                        fire(&state, workflow, cron, &key, &prefix, slot).await;
                        if let Some(next) = next_slot(cron, now) {
                            due.insert(key, next);
                        }
                    }
                }
            }
            due.retain(|k, _| seen.contains(k));
        }
    });
}

/// One fire: an execution for `slot`, unless that slot ran already.
async fn fire(
    state: &AppState,
    workflow: &Arc<Workflow>,
    cron: &CronSpec,
    key: &str,
    prefix: &str,
    slot: u64,
) {
    let name = &workflow.spec.name;
    let gate = state.intake.gate(workflow);
    if let Err(refused) = state.intake.admit(workflow, &gate) {
        if !matches!(refused, Refusal::Inactive(_)) {
            tracing::warn!(workflow = %name, slot, error = %refused, "a cron fire was refused");
        }
        return;
    }
    let at = DateTime::<Utc>::from_timestamp_millis(i64::try_from(slot).unwrap_or(0))
        .unwrap_or_default();
    let body = json!({
        "schedule": cron.pattern,
        "timezone": cron.timezone.to_string(),
        "scheduled_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "scheduled_at_ms": slot,
    });
    let request = RequestMeta {
        method: "CRON".into(),
        received_at_ms: now_ms(),
        ..RequestMeta::default()
    };
    let event = Event::new(
        request,
        Some("application/json".into()),
        body.to_string().into(),
    );
    let delivery = Delivery {
        event,
        unparsed_json: false,
        key: KeySource::Given(format!("{prefix}:{slot}")),
        trigger: Trigger::Cron,
        user: None,
        wait: Wait::NoWait,
        replay_of: None,
        environment: None,
    };
    match state.intake.accept(workflow.clone(), delivery).await {
        Ok(_) => {
            if let Err(e) = state.store.set_cron_last(key, slot).await {
                tracing::warn!(workflow = %name, error = %e, "cannot keep the cron trigger's last slot");
            }
        }
        Err(refused) => {
            tracing::warn!(workflow = %name, slot, error = %refused, "a cron fire was refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(pattern: &str, tz: &str, missed: Missed) -> CronSpec {
        CronSpec::parse(pattern, tz, missed).unwrap()
    }

    fn ms(t: &str) -> u64 {
        let t = humantime::parse_rfc3339(t).unwrap();
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    #[test]
    fn slots_follow_the_schedule_in_its_time_zone() {
        let daily = cron("0 9 * * *", "Europe/Paris", Missed::Skip);
        // 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            next_slot(&daily, ms("2026-12-01T10:00:00Z")),
            Some(ms("2026-12-02T08:00:00Z"))
        );
        assert_eq!(
            next_slot(&daily, ms("2026-07-01T06:00:00Z")),
            Some(ms("2026-07-01T07:00:00Z"))
        );
        let seconds = cron("*/2 * * * * *", "UTC", Missed::Skip);
        assert_eq!(
            next_slot(&seconds, ms("2026-12-01T10:00:00Z")),
            Some(ms("2026-12-01T10:00:02Z"))
        );
        // A slot is a whole second, whatever the time it is looked for at.
        assert_eq!(
            next_slot(&seconds, ms("2026-12-01T10:00:01.033Z")),
            Some(ms("2026-12-01T10:00:02Z"))
        );
    }

    #[test]
    fn missed_slots_are_skipped_or_run_once() {
        let run_once = cron("*/5 * * * *", "UTC", Missed::RunOnce);
        let skip = cron("*/5 * * * *", "UTC", Missed::Skip);
        let (last, now) = (ms("2026-12-01T10:00:00Z"), ms("2026-12-01T10:17:30Z"));
        assert_eq!(
            missed_slot(&run_once, Some(last), now),
            Some(ms("2026-12-01T10:15:00Z"))
        );
        assert_eq!(missed_slot(&skip, Some(last), now), None);
        // Nothing missed, or never fired: nothing to catch up.
        assert_eq!(
            missed_slot(&run_once, Some(last), ms("2026-12-01T10:04:59Z")),
            None
        );
        assert_eq!(missed_slot(&run_once, None, now), None);
    }

    #[test]
    fn bad_schedules_and_zones_are_refused() {
        assert!(CronSpec::parse("61 * * * *", "UTC", Missed::Skip).is_err());
        assert!(CronSpec::parse("* * *", "UTC", Missed::Skip).is_err());
        assert!(CronSpec::parse("* * * * *", "Mars/Olympus", Missed::Skip).is_err());
    }
}
