//! What one `script` step call costs in two embedded JavaScript engines: QuickJS (through
//! `rquickjs`, which the relay uses) and Boa (pure Rust). Each call does what the step does:
//! parse the event's JSON, call `function (event) { return event.text.toUpperCase() }`, and
//! turn the result back into JSON.
//!
//!     cargo run --release --manifest-path benches/js-engines/Cargo.toml -- quickjs
//!     cargo run --release --manifest-path benches/js-engines/Cargo.toml -- boa
//!
//! Three more modes price the clean state each call of the relay starts from, against
//! `quickjs` (one context reused, as the relay once did): `quickjs-locked`, what the relay
//! does for inline `code` (one context whose standard objects and global object are frozen);
//! `quickjs-locked-module`, what it does for a small script file (the same, with the module
//! loaded anew for each call, and the context renewed every 5,000 calls to let go of the
//! modules); and `quickjs-fresh`, a new context for every call.
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

/// The context intrinsics the relay gives scripts.
type Intrinsics = (
    rquickjs::context::intrinsic::Date,
    rquickjs::context::intrinsic::Eval,
    rquickjs::context::intrinsic::RegExpCompiler,
    rquickjs::context::intrinsic::RegExp,
    rquickjs::context::intrinsic::Json,
    rquickjs::context::intrinsic::MapSet,
    rquickjs::context::intrinsic::TypedArrays,
    rquickjs::context::intrinsic::Promise,
);

/// What the relay runs in each new context before any script: it freezes every standard
/// object and the global object.
const LOCKDOWN: &str = include_str!("../../../src/processors/script/lockdown.js");

/// The script compiled to bytecode once, as the relay compiles it.
fn compiled(runtime: &rquickjs::Runtime) -> Vec<u8> {
    use rquickjs::module::WriteOptions;
    use rquickjs::{Context, Module};
    let source = format!("export default {FUNCTION}");
    Context::custom::<Intrinsics>(runtime).unwrap().with(|ctx| {
        Module::declare(ctx, "script", source.as_str()).unwrap().write(WriteOptions::default()).unwrap()
    })
}

fn locked_context(runtime: &rquickjs::Runtime) -> rquickjs::Context {
    let context = rquickjs::Context::custom::<Intrinsics>(runtime).unwrap();
    context.with(|ctx| drop(ctx.eval::<rquickjs::Value, _>(LOCKDOWN).unwrap()));
    context
}

/// One call: the module loaded from `bytecode` into `ctx`, or `kept`, called with the event.
fn call_once<'js>(ctx: &rquickjs::Ctx<'js>, bytecode: &[u8], kept: Option<rquickjs::Function<'js>>) {
    use rquickjs::{Function, Module, Value};
    let function = kept.unwrap_or_else(|| {
        // SAFETY: the bytes were written by this runtime's own QuickJS in `compiled`.
        let (module, promise) = unsafe { Module::load(ctx.clone(), bytecode) }.unwrap().eval().unwrap();
        promise.finish::<()>().unwrap();
        module.get::<_, Function>("default").unwrap()
    });
    let event = ctx.json_parse(EVENT).unwrap();
    let returned: Value = function.call((event,)).unwrap();
    std::hint::black_box(ctx.json_stringify(returned).unwrap().unwrap().to_string().unwrap());
}

/// A fresh context for every call, the script loaded into it from bytecode compiled once:
/// the cleanest state, at the price of a whole context.
fn quickjs_fresh() -> Cost {
    let started = Instant::now();
    let runtime = rquickjs::Runtime::new().unwrap();
    let bytecode = compiled(&runtime);
    let setup_ms = started.elapsed().as_secs_f64() * 1e3;
    let calls = Instant::now();
    for _ in 0..CALLS {
        rquickjs::Context::custom::<Intrinsics>(&runtime)
            .unwrap()
            .with(|ctx| call_once(&ctx, &bytecode, None));
    }
    Cost { setup_ms, call_ns: calls.elapsed().as_secs_f64() * 1e9 / CALLS as f64 }
}

/// What the relay does: a locked context; with `per_call_module` (a script file), the module
/// is loaded anew for each call, and with it its module-level variables, and the context is
/// renewed every 5,000 calls (a quarter of 64 MiB holds about that many loads of this script);
/// without (inline code), the function is loaded once.
fn quickjs_locked(per_call_module: bool) -> Cost {
    use rquickjs::{Function, Module, Persistent};
    let started = Instant::now();
    let runtime = rquickjs::Runtime::new().unwrap();
    let bytecode = compiled(&runtime);
    let load = |context: &rquickjs::Context| {
        context.with(|ctx| {
            // SAFETY: as in `call_once`.
            let (module, promise) = unsafe { Module::load(ctx.clone(), &bytecode) }.unwrap().eval().unwrap();
            promise.finish::<()>().unwrap();
            Persistent::save(&ctx, module.get::<_, Function>("default").unwrap())
        })
    };
    let mut context = locked_context(&runtime);
    let mut kept = (!per_call_module).then(|| load(&context));
    let setup_ms = started.elapsed().as_secs_f64() * 1e3;
    let calls = Instant::now();
    for call in 1..=CALLS {
        if per_call_module && call % 5000 == 0 {
            drop(kept.take());
            context = locked_context(&runtime);
            kept = (!per_call_module).then(|| load(&context));
        }
        context.with(|ctx| {
            let function = kept.clone().map(|kept| kept.restore(&ctx).unwrap());
            call_once(&ctx, &bytecode, function);
        });
    }
    drop(kept);
    Cost { setup_ms, call_ns: calls.elapsed().as_secs_f64() * 1e9 / CALLS as f64 }
}

fn boa() -> Cost {
    use boa_engine::{Context, JsValue, Source, js_string};
    let started = Instant::now();
    let mut context = Context::default();
    let source = format!(
        "const f = {FUNCTION}; function run(event) {{ return JSON.stringify(f(JSON.parse(event))) }}"
    );
    context.eval(Source::from_bytes(&source)).unwrap();
    let run = context.global_object().get(js_string!("run"), &mut context).unwrap();
    let run = run.as_callable().unwrap().clone();
    let setup_ms = started.elapsed().as_secs_f64() * 1e3;
    let calls = Instant::now();
    for _ in 0..CALLS {
        let returned =
            run.call(&JsValue::undefined(), &[JsValue::from(js_string!(EVENT))], &mut context).unwrap();
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
        "quickjs-fresh" => quickjs_fresh(),
        "quickjs-locked" => quickjs_locked(false),
        "quickjs-locked-module" => quickjs_locked(true),
        "boa" => boa(),
        other => panic!(
            "unknown engine {other}: quickjs, quickjs-fresh, quickjs-locked, quickjs-locked-module or boa"
        ),
    };
    println!(
        "{engine}: {:.2} ms to start with the script, {:.0} ns per call, resident memory +{} KiB after {CALLS} calls",
        cost.setup_ms,
        cost.call_ns,
        resident_kib().saturating_sub(before)
    );
}
