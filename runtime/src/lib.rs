//! hookflow: one binary that receives webhooks, records each accepted event
//! durably in a redb file, and runs the matching workflow, a sequence of
//! sandboxed WebAssembly component steps.
//!
//! A request flows through the modules in this order: [`ingress`] (routing,
//! auth, signatures) or [`api`] (run by name) → [`intake`] (admission,
//! payload checks, idempotency, the durable record) → [`runner`] (steps in
//! order, retries, recovery, per-workflow limits) → [`engine`] (wasmtime) →
//! [`store`] (redb). [`registry`] holds the loaded workflows; [`config`]
//! reads manifests; [`http`] is what ingress and api share; [`state`] is
//! the handlers' shared state; [`observe`] names what `/metrics` counts; [`server`] wires it all; [`plugin_build`]
//! compiles plugin crates; [`author`] is for plugin authors (`new plugin`,
//! `run-step`). Dependencies point one way, down this list.
//!
//! It is not a general HTTP framework nor a wasm host for arbitrary worlds:
//! plugins target the `step` world in `wit/`.

pub mod api;
pub mod author;
pub mod cli;
pub mod client;
pub mod config;
pub mod cron;
pub mod engine;
pub mod execution;
pub mod http;
pub mod ingress;
pub mod intake;
pub mod observe;
pub mod operate;
pub mod plugin_build;
pub mod registry;
pub mod runner;
pub mod server;
pub mod state;
pub mod store;
pub mod triggers;
pub mod ui;
