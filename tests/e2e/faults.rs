//! What the fault issue found, each tested for what a sender sees: nothing
//! acknowledged or recorded is lost, stuck or run twice.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Server, Workdir, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

/// Executions of `workflow` listed by the API, with their states.
async fn states(server: &Server, workflow: &str) -> Vec<String> {
    let (_, page) = server
        .api(&format!("/api/v1/executions?workflow={workflow}&limit=500"))
        .await;
    page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect()
}

/// Finding 1: a sender that hangs up while its event commits must not
/// leave a recorded execution that never runs.
#[tokio::test]
async fn orphaned_executions_run_after_the_sender_hangs_up() {
    let work = Workdir::new();
    work.manifest("gone", &one_step("gone", "async", NONE, "echo", "{}"));
    let server = work.start();
    let addr = server.base.trim_start_matches("http://").to_string();
    let body = r#"{"n":1}"#;
    let request = format!(
        "POST /hooks/gone HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Each sender writes a whole request and hangs up at once, before the
    // answer (which comes only after the commit).
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (addr, request) = (addr.clone(), request.clone());
            std::thread::spawn(move || {
                for _ in 0..40 {
                    let mut s = TcpStream::connect(&addr).unwrap();
                    s.write_all(request.as_bytes()).unwrap();
                    drop(s);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    // Whatever was recorded must run to the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states = states(&server, "gone").await;
        let open = states
            .iter()
            .filter(|s| *s == "queued" || *s == "running")
            .count();
        if open == 0 {
            assert!(!states.is_empty(), "no sender's event was recorded");
            assert!(states.iter().all(|s| s == "succeeded"), "{states:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {} recorded executions never finished",
            states.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
