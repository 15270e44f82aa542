//! What one `script` step call costs in two embedded JavaScript engines: QuickJS (through
//! `rquickjs`, which the relay uses) and Boa (pure Rust). Each call does what the step does:
//! parse the event's JSON, call `function (event) { return event.text.toUpperCase() }`, and
//! turn the result back into JSON.
//!
//!     cargo run --release --manifest-path benches/js-engines/Cargo.toml -- quickjs
//!     cargo run --release --manifest-path benches/js-engines/Cargo.toml -- boa
//!
//! Run each engine in its own process, so that the resident memory each adds is its own.

use std::time::Instant;

const EVENT: &str = r#"{"text":"hello momento hello momento hello momento","cache":"chat","topic":"topic 1","token_id":"42:ada","event_timestamp":1,"publish_timestamp":1,"topic_sequence_number":7}"#;
const CALLS: usize = 200_000;
const FUNCTION: &str = "function (event) { return event.text.toUpperCase() }";

/// Milliseconds to start an engine with the script, and nanoseconds per call.
struct Cost {
    setup_ms: f64,
    call_ns: f64,
}

fn quickjs() -> Cost {
    use rquickjs::{Context, Function, Module, Runtime, Value};
    let started = Instant::now();
    let runtime = Runtime::new().unwrap();
    let context = Context::full(&runtime).unwrap();
    context.with(|ctx| {
        let source = format!("export default {FUNCTION}");
        let (module, promise) = Module::declare(ctx.clone(), "script", source).unwrap().eval().unwrap();
        promise.finish::<()>().unwrap();
        let function: Function = module.get("default").unwrap();
        let setup_ms = started.elapsed().as_secs_f64() * 1e3;
        let calls = Instant::now();
        for _ in 0..CALLS {
            let event = ctx.json_parse(EVENT).unwrap();
            let returned: Value = function.call((event,)).unwrap();
            let json = ctx.json_stringify(returned).unwrap().unwrap().to_string().unwrap();
            std::hint::black_box(json);
        }
        Cost { setup_ms, call_ns: calls.elapsed().as_secs_f64() * 1e9 / CALLS as f64 }
    })
}

fn boa() -> Cost {
    use boa_engine::{Context, JsValue, Source, js_string};
    let started = Instant::now();
    let mut context = Context::default();
    let source = format!("const f = {FUNCTION}; function run(event) {{ return JSON.stringify(f(JSON.parse(event))) }}");
    context.eval(Source::from_bytes(&source)).unwrap();
    let run = context.global_object().get(js_string!("run"), &mut context).unwrap();
    let run = run.as_callable().unwrap().clone();
    let setup_ms = started.elapsed().as_secs_f64() * 1e3;
    let calls = Instant::now();
    for _ in 0..CALLS {
        let returned = run.call(&JsValue::undefined(), &[JsValue::from(js_string!(EVENT))], &mut context).unwrap();
        std::hint::black_box(returned.to_string(&mut context).unwrap().to_std_string_escaped());
    }
    Cost { setup_ms, call_ns: calls.elapsed().as_secs_f64() * 1e9 / CALLS as f64 }
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let engine = std::env::args().nth(1).unwrap_or_else(|| "quickjs".into());
    let before = resident_kib();
    let cost = match engine.as_str() {
        "quickjs" => quickjs(),
        "boa" => boa(),
        other => panic!("unknown engine {other}: quickjs or boa"),
    };
    println!(
        "{engine}: {:.2} ms to start with the script, {:.0} ns per call, resident memory +{} KiB after {CALLS} calls",
        cost.setup_ms,
        cost.call_ns,
        resident_kib().saturating_sub(before)
    );
}
