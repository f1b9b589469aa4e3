//! Environments (issue 13, item 8): a workflow's steps run with the config
//! and settings of the environment a request names (`?environment=`, the
//! run API's `environment`), or its default; the execution records it.

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, Go, Manifest, Server, Workdir, error_body, hookflow};

fn manifest() -> String {
    let steps = Manifest::new("env", r#"{ kind = "none" }"#)
        .trigger("mode", "\"sync\"")
        .step_with(
            "template",
            r##"{ json = { channel = "#general" } }"##,
            &[r#"id = "render""#],
        )
        .step_with(
            "caps",
            r#"{ config = ["API_URL"] }"#,
            &[r#"id = "read""#, r#"allow = { config = ["API_URL"] }"#],
        )
        .section("[settings]\nAPI_URL = \"https://api.example\"")
        .section("[environments.production]")
        .section("[environments.staging]\nsettings = { API_URL = \"https://staging.example\" }")
        .section(
            "[environments.staging.steps.render]\nconfig = { json = { channel = \"#staging\" } }",
        )
        .to_string();
    format!("default_environment = \"production\"\n{steps}")
}

/// The sync answer's output at `url`, and the execution's record.
async fn run(server: &Server, url: &str) -> (Value, Value) {
    let r = server.post_json(url, &json!({"n": 1})).await;
    assert_eq!(r.status(), 200, "{url}");
    let body: Value = r.json().await.unwrap();
    let id = body["execution_id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    (body["output"].clone(), record)
}

#[tokio::test]
async fn a_request_picks_the_environment_its_steps_run_in() {
    let work = Workdir::new();
    work.manifest("env", &manifest());
    let server = work.start();

    // No environment named: the default, `production`, as written.
    let (_, record) = run(&server, "/hooks/env").await;
    assert_eq!(record["environment"], "production");
    let render = &record["steps"][0]["attempts"][0]["output"];
    assert_eq!(render["channel"], "#general", "{record}");
    let read = &record["steps"][1]["attempts"][0]["output"];
    assert_eq!(read["config"]["API_URL"], "https://api.example", "{record}");

    // `staging`: its step config and its setting.
    let (_, record) = run(&server, "/hooks/env?environment=staging").await;
    assert_eq!(record["environment"], "staging");
    let render = &record["steps"][0]["attempts"][0]["output"];
    assert_eq!(render["channel"], "#staging", "{record}");
    let read = &record["steps"][1]["attempts"][0]["output"];
    assert_eq!(
        read["config"]["API_URL"], "https://staging.example",
        "{record}"
    );
    let staging_id = record["id"].as_str().unwrap().to_string();

    // An environment the workflow does not have: 400, nothing recorded.
    let r = server
        .post_json("/hooks/env?environment=qa", &json!({}))
        .await;
    let err = error_body(r, 400, "bad-request").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("`production`, `staging`"),
        "{err}"
    );

    // The run API names it in its body; a replay keeps the original's.
    let r = server
        .post("/api/v1/run")
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"workflow": "env", "environment": "staging", "data": {}}))
        .go()
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let (_, record) = server
        .api(&format!(
            "/api/v1/executions/{}",
            body["execution_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(record["environment"], "staging");
    let r = server
        .post(&format!("/api/v1/executions/{staging_id}/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .go()
        .await;
    let body: Value = r.json().await.unwrap();
    let (_, record) = server
        .api(&format!(
            "/api/v1/executions/{}",
            body["execution_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(record["environment"], "staging", "{record}");
}

#[test]
fn environments_that_name_nothing_are_load_errors() {
    let work = Workdir::new();
    let bad = manifest()
        .replace(
            "default_environment = \"production\"",
            "default_environment = \"prod\"",
        )
        .replace(
            "[environments.staging.steps.render]",
            "[environments.staging.steps.draw]",
        )
        .replace("settings = { API_URL", "settings = { API_KEY");
    work.manifest("env", &bad);
    let out = hookflow().arg("check").arg(work.dir()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for expected in [
        "default_environment `prod` is not one of the [environments.NAME] tables",
        "environments.staging.steps: no step `draw`",
        "environments.staging: `API_KEY` is in neither the workflow's [settings] nor its [secrets]",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
}
