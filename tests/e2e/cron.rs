//! Cron triggers (issue 13, item 6): a schedule with seconds fires an
//! execution per slot, with trigger kind `cron`, exactly one per slot
//! across a restart in the middle.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, Workdir, one_step};

/// The cron executions of `tick`, newest first.
async fn fired(server: &Server) -> Vec<Value> {
    let (status, page) = server
        .api("/api/v1/executions?workflow=tick&limit=500")
        .await;
    assert_eq!(status, 200);
    page["executions"].as_array().unwrap().clone()
}

async fn wait_for(server: &Server, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let all = fired(server).await;
        if all.len() >= n {
            return all;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {} fired",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_cron_trigger_fires_once_per_slot_across_a_restart() {
    let work = Workdir::new();
    let manifest = format!(
        "{}\n[[triggers]]\nkind = \"cron\"\nschedule = \"* * * * * *\"\ntimezone = \"Europe/Paris\"\nmissed = \"run-once\"\n",
        one_step("tick", "async", r#"{ kind = "none" }"#, "echo", "{}")
    );
    work.manifest("tick", &manifest);
    let server = work.start();
    let before = wait_for(&server, 3).await.len();
    server.stop();
    // Down for a few slots; `run-once` runs the latest of them at start.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let server = work.start();
    wait_for(&server, before + 3).await;
    server.stop();
    let server = work.start_env(&[]);
    let all = fired(&server).await;

    let mut slots = HashSet::new();
    for e in &all {
        assert_eq!(e["trigger"], "cron", "{e}");
        let id = e["id"].as_str().unwrap();
        let done = server.wait_finished(id, Duration::from_secs(10)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let payload = &done["payload"];
        assert_eq!(payload["schedule"], "* * * * * *");
        assert_eq!(payload["timezone"], "Europe/Paris");
        let slot = payload["scheduled_at_ms"].as_u64().unwrap();
        assert_eq!(slot % 1000, 0, "a slot is a whole second: {payload}");
        assert!(slots.insert(slot), "slot {slot} ran twice: {all:#?}");
    }
}
