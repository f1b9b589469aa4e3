//! `stall`: a hostile test fixture that never answers. Both `describe` and
//! `run` block inside a host call (a WASI sleep of an hour), where epoch
//! interruption cannot reach them: only the host's own outer timeout ends
//! them.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "step" });

struct Stall;

fn block() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

impl Guest for Stall {
    fn describe() -> PluginInfo {
        block()
    }

    fn run(_input: StepInput) -> Result<StepOutput, StepError> {
        block()
    }
}

export!(Stall);
