//! `GET /api/v1/openapi.json`: the API described as OpenAPI 3.1, generated
//! from the handlers' `#[utoipa::path]` annotations. The router is built
//! from the same annotations ([`routes`]), so the document lists exactly
//! the routes served, with their methods.

use std::sync::{Arc, OnceLock};

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The document, rendered once.
static DOCUMENT: OnceLock<String> = OnceLock::new();

/// Every route, with its OpenAPI description. The API's routes refuse a
/// cross-origin change made with the dashboard's cookie
/// ([`crate::http::same_origin`]); webhooks, judged by their own
/// credentials, do not pass through that check.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    use super::{events, executions, health, manage, run, session, stream, triggers, workflows};
    let api = OpenApiRouter::new()
        .routes(routes!(run::run))
        .routes(routes!(executions::executions))
        .routes(routes!(executions::execution))
        .routes(routes!(executions::body))
        .routes(routes!(events::events))
        .routes(routes!(stream::stream))
        .routes(routes!(session::login, session::current, session::logout))
        .routes(routes!(manage::cancel))
        .routes(routes!(manage::replay))
        .routes(routes!(workflows::workflows))
        .routes(routes!(workflows::rollback))
        .routes(routes!(manage::test_run))
        .routes(routes!(workflows::enable))
        .routes(routes!(workflows::disable))
        .routes(routes!(triggers::list, triggers::create))
        .routes(routes!(triggers::get, triggers::update, triggers::delete))
        .routes(routes!(triggers::rotate))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi))
        .route_layer(axum::middleware::from_fn(crate::http::same_origin));
    OpenApiRouter::new()
        .routes(routes!(crate::ingress::hook))
        .merge(api)
}

/// Completes the generated document (title, security schemes; the
/// webhook route's `{*path}` written as OpenAPI's `{path}`) and keeps it
/// for [`openapi`].
pub fn keep(mut api: OpenApi) {
    api.info.title = "hookflow".into();
    api.info.description =
        Some("Webhooks in, sandboxed WebAssembly workflows out (SPEC §5).".into());
    if let Some(item) = api.paths.paths.remove("/hooks/{*path}") {
        api.paths.paths.insert("/hooks/{path}".into(), item);
    }
    let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme("admin", bearer());
    components.add_security_scheme("api", bearer());
    let _ = DOCUMENT.set(api.to_pretty_json().unwrap_or_default());
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses((status = 200, description = "this document")))]
pub async fn openapi() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        DOCUMENT.get().cloned().unwrap_or_default(),
    )
}
