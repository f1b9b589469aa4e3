//! hookflow: one binary that receives webhooks, records each accepted event
//! durably in a redb file, and runs the matching workflow, a sequence of
//! sandboxed WebAssembly component steps.
//!
//! A request flows through the modules in this order:
//! [`ingress`] (routing, auth, limits) → [`registry`] (the loaded workflows)
//! → [`runner`] (steps in order, retries, recovery) → [`engine`] (wasmtime)
//! → [`store`] (redb). [`api`] observes executions; [`config`] reads
//! manifests; [`server`] wires it all; [`build`] compiles plugin crates.
//!
//! It is not a general HTTP framework nor a wasm host for arbitrary worlds:
//! plugins target the `step` world in `wit/`.

pub mod api;
pub mod build;
pub mod cli;
pub mod config;
pub mod engine;
pub mod execution;
pub mod ingress;
pub mod registry;
pub mod runner;
pub mod server;
pub mod store;
