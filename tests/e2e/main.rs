//! End-to-end tests: the real `hookflow` binary on 127.0.0.1:0, real plugins
//! built from `plugins/`, a real redb file, a real HTTP client.

mod support;

mod author;
mod cache;
mod caps;
mod cli;
mod cron;
mod dashboard;
mod environments;
mod events;
mod executions;
mod failures;
mod faults;
mod first_party;
mod hostile;
mod idempotency;
mod ingress;
mod input;
mod javascript;
mod limits;
mod manage;
mod observe;
mod openapi;
mod operate;
mod python;
mod quotas;
mod readme;
mod reload;
mod run_api;
mod signatures;
mod triggers;
