//! What `/metrics` counts beyond the runner's execution counters, and the
//! tracing span of each request. Metric names are constants here; values
//! go through the `metrics` facade (an atomic add per event, rendered by
//! the Prometheus recorder the server installs).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// Counter: HTTP requests answered, by `route` (the route's template, so
/// the label set is bounded) and `status`.
pub const HTTP_REQUESTS: &str = "hookflow_http_requests_total";
/// Histogram: time from a request to its answer's head, by `route`.
pub const HTTP_DURATION: &str = "hookflow_http_request_duration_seconds";
/// Counter: executions that ended, by `workflow` and `status`.
pub const WORKFLOW_EXECUTIONS: &str = "hookflow_workflow_executions_total";
/// Histogram: wall time of each step attempt, by `workflow` and `step`.
pub const STEP_DURATION: &str = "hookflow_step_duration_seconds";
/// Counter: outbound requests steps made or were refused, by `workflow`
/// and `outcome` (`2xx`..`5xx`, `denied`, `error`).
pub const OUTBOUND_REQUESTS: &str = "hookflow_outbound_requests_total";
/// Gauges: executions started and not finished, and their body bytes.
pub const QUEUE_DEPTH: &str = "hookflow_executions_unfinished";
pub const QUEUE_BYTES: &str = "hookflow_executions_unfinished_bytes";
/// Counter: reloads of the workflow directory, by `result` (`ok`, or
/// `problems` when a file did not load).
pub const RELOADS: &str = "hookflow_reloads_total";

/// Histogram buckets, in seconds: 1 ms to 5 minutes.
pub const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// Describes these metrics to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer a request, by route."
    );
    describe_counter!(
        WORKFLOW_EXECUTIONS,
        "Executions that ended, by workflow and status."
    );
    describe_histogram!(
        STEP_DURATION,
        Unit::Seconds,
        "Wall time of step attempts, by workflow and step."
    );
    describe_counter!(
        OUTBOUND_REQUESTS,
        "Outbound requests of steps, by workflow and outcome."
    );
    describe_gauge!(QUEUE_DEPTH, "Executions started and not finished.");
    describe_gauge!(
        QUEUE_BYTES,
        Unit::Bytes,
        "Event bytes of the executions started and not finished."
    );
    describe_counter!(RELOADS, "Reloads of the workflow directory, by result.");
}

/// A route's template as a label: `{name}` as `:name` and `{*name}` as
/// `*name` (`/hooks/*path`, `/api/v1/executions/:id`), so no label value
/// holds braces, which simple Prometheus parsers misread.
fn route_label(template: &str) -> String {
    template
        .replace("{*", "*")
        .replace('{', ":")
        .replace('}', "")
}

/// Middleware: each request in a tracing span (method, route), counted by
/// route and status when its answer's head is ready.
pub async fn requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| route_label(p.as_str()));
    let span = tracing::info_span!("request", method = %request.method(), route = %route);
    let start = Instant::now();
    let response = next.run(request).instrument(span).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(start.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_labels_hold_no_braces() {
        assert_eq!(super::route_label("/hooks/{*path}"), "/hooks/*path");
        assert_eq!(
            super::route_label("/api/v1/executions/{id}/events"),
            "/api/v1/executions/:id/events"
        );
        assert_eq!(super::route_label("/metrics"), "/metrics");
    }
}
