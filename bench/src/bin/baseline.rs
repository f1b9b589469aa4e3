//! The baseline: bare axum on the same machine, built with the same profile
//! as hookflow. `GET /` answers hello world; `POST /echo` reads the whole
//! body (up to 1 MiB) and answers its length.

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new()
        .route("/", get(|| async { "hello world" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
