//! Signed webhooks (Standard Webhooks, GitHub, Stripe, generic HMAC) and
//! path tokens, against the real server: what verifies and what is 401.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::{Go, Server, Workdir, error_body};

const SW1: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW2: &str = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=";
const STRIPE: &str = "whsec_stripe_test_secret";
const GITHUB: &str = "It's a Secret to Everybody";
const TOKEN: &str = "tok_0123456789abcdefXYZ";

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn sw_key(secret: &str) -> Vec<u8> {
    B64.decode(secret.trim_start_matches("whsec_")).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn workdir() -> Workdir {
    let work = Workdir::new();
    let step = "\n[[steps]]\nplugin = \"plugins/echo.wasm\"\n";
    work.file("sw1", SW1)
        .file("sw2", SW2)
        .file("stripe", STRIPE)
        .file("github", GITHUB)
        .file("token", TOKEN)
        .manifest("sw", &format!("[trigger]\npath = \"sw\"\nauth = {{ kind = \"standard-webhooks\", secrets = [\"file:sw1\", \"file:sw2\"] }}\n{step}"))
        .manifest("gh", &format!("[trigger]\npath = \"gh\"\nauth = {{ kind = \"github\", secrets = [\"file:github\"] }}\n{step}"))
        .manifest("st", &format!("[trigger]\npath = \"st\"\nauth = {{ kind = \"stripe\", secrets = [\"file:stripe\"] }}\n{step}"))
        .manifest("hm", &format!("[trigger]\npath = \"hm\"\nauth = {{ kind = \"hmac-sha256\", header = \"X-Signature\", encoding = \"base64\", prefix = \"v=\", secrets = [\"file:github\"] }}\n{step}"))
        .manifest("pt", &format!("[trigger]\nauth = {{ kind = \"path-token\", secrets = [\"file:token\"] }}\n{step}"));
    work
}

struct Sw<'a> {
    id: &'a str,
    ts: String,
    sig: Option<String>,
    body: &'a str,
    drop: Option<&'a str>,
}

async fn send_sw(server: &Server, c: Sw<'_>) -> reqwest::Response {
    let mut r = server
        .post("/hooks/sw")
        .header("content-type", "application/json")
        .body(c.body.to_string());
    for (name, value) in [
        ("webhook-id", Some(c.id.to_string())),
        ("webhook-timestamp", Some(c.ts.clone())),
        ("webhook-signature", c.sig.clone()),
    ] {
        if c.drop != Some(name)
            && let Some(v) = value
        {
            r = r.header(name, v);
        }
    }
    r.go().await
}

fn sign_sw(secret: &str, id: &str, ts: &str, body: &str) -> String {
    format!(
        "v1,{}",
        B64.encode(mac(
            &sw_key(secret),
            &[id.as_bytes(), b".", ts.as_bytes(), b".", body.as_bytes()]
        ))
    )
}

#[tokio::test]
async fn standard_webhooks_signature_table() {
    let work = workdir();
    let server = work.start();
    let body = r#"{"type":"invoice.paid"}"#;
    let ts = now().to_string();
    let good = sign_sw(SW1, "msg_1", &ts, body);
    let case = |sig: Option<String>, ts: String| Sw {
        id: "msg_1",
        ts,
        sig,
        body,
        drop: None,
    };

    // Either active secret verifies.
    assert_eq!(
        send_sw(&server, case(Some(good.clone()), ts.clone()))
            .await
            .status(),
        202
    );
    assert_eq!(
        send_sw(
            &server,
            case(Some(sign_sw(SW2, "msg_1", &ts, body)), ts.clone())
        )
        .await
        .status(),
        202
    );
    // Several signatures: one match is enough.
    let several = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {good}");
    assert_eq!(
        send_sw(&server, case(Some(several), ts.clone()))
            .await
            .status(),
        202
    );

    // Well past the 5-minute tolerance, so that the time the cases take to
    // send (seconds, on a loaded machine) cannot bring one back within it;
    // the exact edge is the unit test `timestamps_are_checked_both_ways`.
    let old = (now() - 330).to_string();
    let ahead = (now() + 330).to_string();
    let short = format!("v1,{}", B64.encode(&mac(&sw_key(SW1), &[b"x"])[..16]));
    let v2 = good.replacen("v1,", "v2,", 1);
    let refused: Vec<(&str, Sw)> = vec![
        (
            "tampered body",
            Sw {
                body: r#"{"type":"invoice.unpaid"}"#,
                ..case(Some(good.clone()), ts.clone())
            },
        ),
        (
            "tampered id",
            Sw {
                id: "msg_2",
                ..case(Some(good.clone()), ts.clone())
            },
        ),
        (
            "tampered timestamp",
            // One second off the signed one, whatever the clock says now
            // (on a loaded machine `now() - 1` can be the signed second).
            case(
                Some(good.clone()),
                (ts.parse::<i64>().unwrap() - 1).to_string(),
            ),
        ),
        (
            "wrong secret",
            case(
                Some(sign_sw("whsec_d3Jvbmc=", "msg_1", &ts, body)),
                ts.clone(),
            ),
        ),
        (
            "330 s old",
            case(Some(sign_sw(SW1, "msg_1", &old, body)), old.clone()),
        ),
        (
            "330 s ahead",
            case(Some(sign_sw(SW1, "msg_1", &ahead, body)), ahead.clone()),
        ),
        (
            "no webhook-id",
            Sw {
                drop: Some("webhook-id"),
                ..case(Some(good.clone()), ts.clone())
            },
        ),
        (
            "no webhook-timestamp",
            Sw {
                drop: Some("webhook-timestamp"),
                ..case(Some(good.clone()), ts.clone())
            },
        ),
        ("no webhook-signature", case(None, ts.clone())),
        ("empty v1", case(Some("v1,".into()), ts.clone())),
        ("short signature", case(Some(short), ts.clone())),
        ("v2 prefix", case(Some(v2), ts.clone())),
    ];
    for (what, c) in refused {
        let r = send_sw(&server, c).await;
        assert_eq!(r.status(), 401, "{what} must be refused");
        error_body(r, 401, "unauthorized").await;
    }
    let (_, page) = server.api("/api/v1/executions?workflow=sw").await;
    // The three verified deliveries share one `webhook-id`: one execution,
    // the other two replayed; nothing refused was recorded.
    assert_eq!(page["executions"].as_array().unwrap().len(), 1);
    let id = page["executions"][0]["id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert!(
        !record.to_string().contains("webhook-signature"),
        "signature stored: {record}"
    );
}

/// The executions one signed delivery made when sent once without an
/// `Idempotency-Key` and once with each of `keys`.
async fn executions_of(
    server: &Server,
    path: &str,
    signed: &[(&str, String)],
    body: &str,
    keys: &[&str],
) -> std::collections::HashSet<String> {
    let mut executions = std::collections::HashSet::new();
    for key in std::iter::once(None).chain(keys.iter().map(Some)) {
        let mut r = server
            .post(path)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in signed {
            r = r.header(*name, value);
        }
        if let Some(key) = key {
            r = r.header("idempotency-key", *key);
        }
        let r = r.go().await;
        assert_eq!(r.status(), 202, "key {key:?}");
        let ack: serde_json::Value = r.json().await.unwrap();
        executions.insert(ack["execution_id"].as_str().unwrap().to_string());
    }
    executions
}

/// Finding 2 of the fault issue: an unsigned `Idempotency-Key` must not
/// turn a captured signed delivery into a new execution.
#[tokio::test]
async fn replay_past_a_signature_makes_no_new_execution() {
    let work = workdir();
    let server = work.start();
    let body = r#"{"order":7}"#;
    let ts = now().to_string();
    let signed = [
        ("webhook-id", "msg_replayed".to_string()),
        ("webhook-timestamp", ts.clone()),
        ("webhook-signature", sign_sw(SW1, "msg_replayed", &ts, body)),
    ];
    let made = executions_of(&server, "/hooks/sw", &signed, body, &["a", "b", "c", "d"]).await;
    assert_eq!(made.len(), 1, "standard-webhooks: {made:?}");

    // Stripe: the signed event id is the key, whatever the header says.
    let body = r#"{"id":"evt_replayed","type":"charge.succeeded"}"#;
    let t = now();
    let sig = hex::encode(mac(
        STRIPE.as_bytes(),
        &[t.to_string().as_bytes(), b".", body.as_bytes()],
    ));
    let signed = [("stripe-signature", format!("t={t},v1={sig}"))];
    let made = executions_of(&server, "/hooks/st", &signed, body, &["a", "b"]).await;
    assert_eq!(made.len(), 1, "stripe: {made:?}");
}

#[tokio::test]
async fn github_stripe_and_generic_hmac_verify_and_refuse() {
    let work = workdir();
    let server = work.start();
    // GitHub's documented example.
    let gh = |sig: &str, body: &'static str| {
        server
            .post("/hooks/gh")
            .header("content-type", "text/plain")
            .header("x-hub-signature-256", sig.to_string())
            .body(body)
            .go()
    };
    let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(gh(good, "Hello, World!").await.status(), 202);
    assert_eq!(gh(good, "Hello, World?").await.status(), 401);
    assert_eq!(
        gh(&good.replace("sha256=75", "sha256=76"), "Hello, World!")
            .await
            .status(),
        401
    );
    assert_eq!(gh("sha256=", "Hello, World!").await.status(), 401);
    // The delivery id deduplicates redeliveries.
    let delivery = |id: &'static str| {
        server
            .post("/hooks/gh")
            .header("content-type", "text/plain")
            .header("x-hub-signature-256", good)
            .header("x-github-delivery", id)
            .body("Hello, World!")
            .go()
    };
    let first = delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958").await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let again = delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958").await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let (a, b): (serde_json::Value, serde_json::Value) =
        (first.json().await.unwrap(), again.json().await.unwrap());
    assert_eq!(a["execution_id"], b["execution_id"]);

    // Stripe: `t.body` keyed by the endpoint secret as written.
    let body = r#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let stripe = |t: i64, key: &str, body: &'static str| {
        let sig = hex::encode(mac(
            key.as_bytes(),
            &[t.to_string().as_bytes(), b".", body.as_bytes()],
        ));
        server
            .post("/hooks/st")
            .header("content-type", "application/json")
            .header("stripe-signature", format!("t={t},v1={sig},v0=ignored"))
            .body(body)
            .go()
    };
    assert_eq!(stripe(now(), STRIPE, body).await.status(), 202);
    assert_eq!(stripe(now(), "whsec_other", body).await.status(), 401);
    assert_eq!(stripe(now() - 301, STRIPE, body).await.status(), 401);
    let t = now();
    let sig = hex::encode(mac(
        STRIPE.as_bytes(),
        &[t.to_string().as_bytes(), b".", body.as_bytes()],
    ));
    let r = server
        .post("/hooks/st")
        .header("stripe-signature", format!("t={t},v1={sig}"))
        .header("content-type", "application/json")
        .body(r#"{"id":"evt_2"}"#)
        .go()
        .await;
    assert_eq!(r.status(), 401, "altered body");

    // Generic: base64 with a prefix, in a header of the workflow's choice.
    let body = r#"{"n":1}"#;
    let sig = format!(
        "v={}",
        B64.encode(mac(GITHUB.as_bytes(), &[body.as_bytes()]))
    );
    let hm = |sig: String| {
        server
            .post("/hooks/hm")
            .header("content-type", "application/json")
            .header("x-signature", sig)
            .body(body)
            .go()
    };
    assert_eq!(hm(sig.clone()).await.status(), 202);
    assert_eq!(hm(sig.replacen("v=", "", 1)).await.status(), 401);
    assert_eq!(hm("v=AAAA".into()).await.status(), 401);
}

#[tokio::test]
async fn a_path_token_is_the_credential_and_is_never_kept() {
    let work = workdir();
    let server = work.start();
    let r = server
        .post(&format!("/hooks/t/{TOKEN}"))
        .json(&serde_json::json!({"from": "altostrat"}))
        .go()
        .await;
    assert_eq!(r.status(), 202);
    let ack: serde_json::Value = r.json().await.unwrap();
    let r = server
        .post("/hooks/t/tok_0123456789abcdefXYz")
        .json(&serde_json::json!({}))
        .go()
        .await;
    let err = error_body(r, 404, "not-found").await;
    assert!(!err.to_string().contains("tok_"), "{err}");
    let done = server
        .wait_finished(
            ack["execution_id"].as_str().unwrap(),
            std::time::Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["payload"]["from"], "altostrat");
    assert!(!done.to_string().contains(TOKEN), "token stored: {done}");
}
