//! Host bindings for the `step` world in `wit/` (`hookflow:plugin@0.2.0`),
//! and for the same world at `0.1.0` (`wit/0.1.0/`), whose components keep
//! loading: the two export the same functions with the same types, and a
//! 0.1.0 component imports `log` and `types` at 0.1.0, which are linked
//! too. Exports are async so that a step yields to the scheduler at every
//! epoch tick instead of holding a worker thread; the key-value imports are
//! async because they reach the database.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "step",
    imports: { "wasi:keyvalue": async | trappable },
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:keyvalue/store.bucket": super::caps::kv::Bucket,
    },
    require_store_data_send: true,
});

pub use self::hookflow::plugin::log::Level;
pub use self::hookflow::plugin::types::{Event, RequestMeta};

/// The 0.1.0 package: its `log` and `types` imports, linked beside
/// 0.2.0's.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "step",
        exports: { default: async },
    });
}
