//! What a script's context holds: the standard objects QuickJS brings, less those a call
//! over one message has no use for, every one of them and the global object frozen before
//! any script runs. [`GLOBALS`] is the whole list a script sees.

use rquickjs::context::intrinsic::{Date, Eval, Json, MapSet, Promise, RegExp, RegExpCompiler, TypedArrays};
use rquickjs::{Context, Runtime, Value};

use super::engine::describe;

/// The standard objects a script's context is made with: no `performance`, `WeakRef` or
/// `DOMException`, which a function over one message has no use for.
type Intrinsics = (Date, Eval, RegExpCompiler, RegExp, Json, MapSet, TypedArrays, Promise);

/// Globals the intrinsics bring that are taken out again: shared memory and a microtask queue
/// have no use in a call that must finish at once.
const REMOVED_GLOBALS: [&str; 3] = ["SharedArrayBuffer", "Atomics", "queueMicrotask"];

/// Every global a script sees; a test holds the engine to this list.
pub const GLOBALS: &[&str] = &[
    "AggregateError",
    "Array",
    "ArrayBuffer",
    "AsyncDisposableStack",
    "BigInt",
    "BigInt64Array",
    "BigUint64Array",
    "Boolean",
    "DataView",
    "Date",
    "DisposableStack",
    "Error",
    "EvalError",
    "Float16Array",
    "Float32Array",
    "Float64Array",
    "Function",
    "Infinity",
    "Int16Array",
    "Int32Array",
    "Int8Array",
    "InternalError",
    "Iterator",
    "JSON",
    "Map",
    "Math",
    "NaN",
    "Number",
    "Object",
    "Promise",
    "RangeError",
    "ReferenceError",
    "Reflect",
    "RegExp",
    "Set",
    "String",
    "SuppressedError",
    "Symbol",
    "SyntaxError",
    "TypeError",
    "URIError",
    "Uint16Array",
    "Uint32Array",
    "Uint8Array",
    "Uint8ClampedArray",
    "WeakMap",
    "WeakSet",
    "decodeURI",
    "decodeURIComponent",
    "encodeURI",
    "encodeURIComponent",
    "escape",
    "eval",
    "globalThis",
    "isFinite",
    "isNaN",
    "parseFloat",
    "parseInt",
    "undefined",
    "unescape",
];

/// A fresh context with every standard object and the global object frozen.
pub(super) fn locked_context(runtime: &Runtime) -> Result<Context, String> {
    let context = fresh_context(runtime).map_err(|error| format!("cannot start QuickJS: {error}"))?;
    context
        .with(|ctx| ctx.eval::<Value, _>(LOCKDOWN).map(drop).map_err(|error| describe(&ctx, error)))
        .map_err(|error| format!("cannot lock the script's context: {error}"))?;
    Ok(context)
}

/// Freezes every standard object, then the global object.
const LOCKDOWN: &str = include_str!("lockdown.js");

/// A context with [`Intrinsics`], less [`REMOVED_GLOBALS`].
fn fresh_context(runtime: &Runtime) -> rquickjs::Result<Context> {
    let context = Context::custom::<Intrinsics>(runtime)?;
    context.with(|ctx| {
        let globals = ctx.globals();
        REMOVED_GLOBALS.iter().try_for_each(|name| globals.remove(*name))
    })?;
    Ok(context)
}
