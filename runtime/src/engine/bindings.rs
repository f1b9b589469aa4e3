//! Host bindings for the `step` world in `wit/`: the one `bindgen!` of the
//! crate. Exports are async so that a step yields to the scheduler at every
//! epoch tick instead of holding a worker thread.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "step",
    exports: { default: async },
});

pub use self::hookflow::plugin::log::Level;
pub use self::hookflow::plugin::types::{Event, RequestMeta};
