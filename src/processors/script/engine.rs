//! The JavaScript engine behind `script` steps: QuickJS (through `rquickjs`), one runtime
//! per worker thread, the script compiled once per runtime to bytecode. Calls run on the
//! workers, never on the async runtime, each under a time limit (an interrupt handler cuts it
//! off) and inside the runtime's memory limit. A runtime that was cut off or ran out of
//! memory is replaced before its next call.
//!
//! Nothing one event's call leaves behind reaches the next:
//! - every standard object, and the global object, is frozen in each context before any
//!   script runs (`lockdown.js`), so a polluted prototype or a new global throws instead;
//! - a script file's module is loaded anew for every call, so its module-level variables
//!   start afresh (inline `code` is only a function body, and has none);
//! - the modules loaded so pile up in their context, which is replaced every so often (at
//!   most every 10,000 calls, sooner for a large script).
//!
//! A fresh context for every call would cost about 130 µs; see `benches/js-engines`.
//!
//! QuickJS gives a script the language and its standard objects only: no filesystem,
//! network, environment, timers or module loading. `sandbox::GLOBALS` lists every global a script
//! sees.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rquickjs::module::WriteOptions;
use rquickjs::{CaughtError, Context, Ctx, Function, Module, Persistent, Runtime, Value};
use tokio::sync::oneshot;

use super::sandbox::locked_context;

/// One script's source and its limits.
#[derive(Clone)]
pub struct Source {
    /// Shown in errors: the file, or the step's key for inline code.
    pub name: String,
    /// A module whose default export is `function (event)`.
    pub module: String,
    /// Whether the module may keep state of its own between calls (a file may; the wrapper
    /// of inline code cannot), and so is loaded anew for each call.
    pub has_module_scope: bool,
    /// Longest one call may run.
    pub time_limit: Duration,
    /// Most memory one engine may hold.
    pub memory_limit: usize,
}

/// Why a call gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The script threw.
    #[error("the script threw: {0}")]
    Threw(String),
    /// It ran past the time limit and was cut off.
    #[error("the script ran longer than its time limit of {0:?} and was stopped")]
    TimedOut(Duration),
    /// It needed more memory than the limit.
    #[error("the script ran out of memory (memory_limit = {0} bytes)")]
    OutOfMemory(usize),
    /// Every engine is gone (the relay is stopping).
    #[error("the script engines have stopped")]
    Stopped,
}

/// What a call returned, as JSON; `None` for `undefined`.
pub type Returned = Option<String>;

struct Job {
    event: String,
    reply: oneshot::Sender<Result<Returned, CallError>>,
}

/// A pool of engines running one script.
pub struct Engines {
    jobs: SyncSender<Job>,
}

/// Jobs waiting per engine before callers wait for room.
const QUEUE_PER_ENGINE: usize = 256;
/// Native stack of a worker; QuickJS's own limit sits well inside it.
const WORKER_STACK: usize = 8 << 20;
const JS_STACK: usize = 1 << 20;

impl Engines {
    /// Starts `count` engines for `source` (see [`check`] for its errors).
    pub fn start(source: Source, count: usize) -> Result<Self, String> {
        let (jobs, queue) = sync_channel(QUEUE_PER_ENGINE * count.max(1));
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..count.max(1) {
            let (source, queue) = (source.clone(), queue.clone());
            std::thread::Builder::new()
                .name(format!("script-{index}"))
                .stack_size(WORKER_STACK)
                .spawn(move || work(&source, &queue))
                .map_err(|error| format!("cannot start a script engine: {error}"))?;
        }
        Ok(Engines { jobs })
    }

    /// Calls the script's function with `event` (JSON) on the next free engine.
    pub async fn call(&self, event: String) -> Result<Returned, CallError> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job { event, reply };
        // The queue is bounded; when it is full, wait a little instead of blocking the runtime.
        loop {
            match self.jobs.try_send(job) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(back)) => {
                    job = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(CallError::Stopped),
            }
        }
        answer.await.map_err(|_| CallError::Stopped)?
    }
}

/// Checks that `source` compiles and its top level runs, naming the line of a syntax error.
pub fn check(source: &Source) -> Result<(), String> {
    Engine::new(source).map(drop)
}

/// A worker: takes jobs until every sender is gone.
fn work(source: &Source, queue: &Mutex<Receiver<Job>>) {
    let mut engine = None;
    loop {
        let job = match queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // The caller gave up (its time budget ran out); the event will come back.
        if job.reply.is_closed() {
            continue;
        }
        if engine.is_none() {
            match Engine::new(source) {
                Ok(made) => engine = Some(made),
                Err(error) => {
                    let _ = job.reply.send(Err(CallError::Threw(error)));
                    continue;
                }
            }
        }
        let Some(current) = &mut engine else { continue };
        let result = current.call(&job.event);
        if matches!(result, Err(CallError::TimedOut(_) | CallError::OutOfMemory(_))) {
            engine = None;
        }
        let _ = job.reply.send(result);
    }
}

/// One runtime with the script compiled to bytecode, and the locked context calls run in.
/// Fields drop in order, and QuickJS requires the function and the context to go before
/// their runtime.
struct Engine {
    /// The default export, kept when the module has no scope of its own to renew.
    kept: Option<Persistent<Function<'static>>>,
    context: Context,
    runtime: Runtime,
    bytecode: Vec<u8>,
    has_module_scope: bool,
    /// Calls made in `context`; it is replaced after `renew_after`.
    calls: usize,
    renew_after: usize,
    deadline: Arc<Mutex<Option<Instant>>>,
    interrupted: Arc<AtomicBool>,
    time_limit: Duration,
    memory_limit: usize,
}

/// The longest a script's top level may run when it is loaded.
const LOAD_TIME_LIMIT: Duration = Duration::from_secs(2);

/// The most calls one context serves when each call of a script file leaves its module
/// behind; fewer when a quarter of the memory limit holds fewer of them.
const MOST_CALLS_PER_CONTEXT: usize = 10_000;

impl Engine {
    fn new(source: &Source) -> Result<Self, String> {
        let runtime = Runtime::new().map_err(|error| format!("cannot start QuickJS: {error}"))?;
        runtime.set_memory_limit(source.memory_limit);
        runtime.set_max_stack_size(JS_STACK);
        let deadline = Arc::new(Mutex::new(None));
        let interrupted = Arc::new(AtomicBool::new(false));
        let (watched, flag) = (deadline.clone(), interrupted.clone());
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let over = watched
                .lock()
                .map(|deadline| deadline.is_some_and(|deadline| Instant::now() >= deadline))
                .unwrap_or(false);
            if over {
                flag.store(true, Ordering::Relaxed);
            }
            over
        })));
        let context = locked_context(&runtime)?;
        let bytecode = context.with(|ctx| compile(&ctx, source))?;
        let mut engine = Engine {
            kept: None,
            context,
            runtime,
            bytecode,
            has_module_scope: source.has_module_scope,
            calls: 0,
            renew_after: usize::MAX,
            deadline,
            interrupted,
            time_limit: source.time_limit,
            memory_limit: source.memory_limit,
        };
        // The top level runs once now, so that a script that throws there is refused at load;
        // what one load takes sets how many a context may hold within a quarter of the limit.
        engine.set_deadline(Some(Instant::now() + LOAD_TIME_LIMIT));
        let before = engine.runtime.memory_usage().malloc_size;
        let loaded =
            engine.context.with(|ctx| engine.load(&ctx).map(|function| Persistent::save(&ctx, function)));
        let per_load = usize::try_from(engine.runtime.memory_usage().malloc_size - before).unwrap_or(0);
        engine.set_deadline(None);
        let function = loaded.map_err(|error| format!("{}: {error}", source.name))?;
        if engine.has_module_scope {
            engine.renew_after = (source.memory_limit / 4 / per_load.max(1)).clamp(1, MOST_CALLS_PER_CONTEXT);
        } else {
            engine.kept = Some(function);
        }
        Ok(engine)
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = deadline;
    }

    /// Loads the script's bytecode into `ctx`, runs its top level, and returns its default
    /// export.
    fn load<'js>(&self, ctx: &Ctx<'js>) -> Result<Function<'js>, String> {
        let fail = |error: rquickjs::Error| describe(ctx, error);
        // SAFETY: `bytecode` was written by `compile` on this runtime, from this same QuickJS
        // build, and is never changed or read from anywhere else.
        let declared = unsafe { Module::load(ctx.clone(), &self.bytecode) }.map_err(fail)?;
        let (module, promise) = declared.eval().map_err(fail)?;
        promise.finish::<()>().map_err(fail)?;
        module.get("default").map_err(|_| "the default export must be a function (event)".to_owned())
    }

    /// Replaces the context once it has served its share of calls, and with it every module
    /// the calls left behind. Inline code leaves none, and keeps its context.
    fn renew_if_due(&mut self) -> Result<(), CallError> {
        self.calls += 1;
        if self.calls <= self.renew_after {
            return Ok(());
        }
        self.calls = 1;
        self.context = locked_context(&self.runtime).map_err(CallError::Threw)?;
        Ok(())
    }

    fn call(&mut self, event: &str) -> Result<Returned, CallError> {
        self.renew_if_due()?;
        self.interrupted.store(false, Ordering::Relaxed);
        self.set_deadline(Some(Instant::now() + self.time_limit));
        let result = self.context.with(|ctx| -> Result<Returned, CallError> {
            let function = match &self.kept {
                Some(kept) => kept.clone().restore(&ctx).map_err(|error| self.failed(&ctx, error))?,
                None => self.load(&ctx).map_err(|error| self.failed_text(error))?,
            };
            let event = ctx.json_parse(event).map_err(|error| self.failed(&ctx, error))?;
            let returned: Value = function.call((event,)).map_err(|error| self.failed(&ctx, error))?;
            if returned.is_undefined() {
                return Ok(None);
            }
            if returned.is_promise() {
                return Err(CallError::Threw(
                    "the function returned a Promise; script functions must not be async".into(),
                ));
            }
            let json = ctx.json_stringify(returned).map_err(|error| self.failed(&ctx, error))?;
            json.map(|json| json.to_string()).transpose().map_err(|error| self.failed(&ctx, error))
        });
        self.set_deadline(None);
        result
    }

    /// Makes a call's error into what the step reports.
    fn failed(&self, ctx: &Ctx<'_>, error: rquickjs::Error) -> CallError {
        self.failed_text(describe(ctx, error))
    }

    fn failed_text(&self, text: String) -> CallError {
        if self.interrupted.load(Ordering::Relaxed) {
            return CallError::TimedOut(self.time_limit);
        }
        if text.contains("out of memory") {
            return CallError::OutOfMemory(self.memory_limit);
        }
        CallError::Threw(text)
    }
}

/// Compiles the module to bytecode, naming the line of a syntax error.
fn compile(ctx: &Ctx<'_>, source: &Source) -> Result<Vec<u8>, String> {
    let fail = |error: rquickjs::Error| format!("{}: {}", source.name, describe(ctx, error));
    let declared =
        Module::declare(ctx.clone(), source.name.as_str(), source.module.as_str()).map_err(fail)?;
    declared.write(WriteOptions::default()).map_err(fail)
}

/// The thrown value as one line: its message and where it was thrown.
pub(super) fn describe(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    match CaughtError::from_error(ctx, error) {
        CaughtError::Exception(exception) => {
            let message = exception.message().unwrap_or_default();
            let place = exception.stack().and_then(|stack| {
                stack.lines().find(|line| line.contains(':')).map(|line| line.trim().to_owned())
            });
            match place {
                Some(place) => format!("{message} ({place})"),
                None => message,
            }
        }
        CaughtError::Value(value) => {
            let shown = ctx.json_stringify(value).ok().flatten().and_then(|text| text.to_string().ok());
            format!("threw {}", shown.unwrap_or_else(|| "a value that is not an Error".into()))
        }
        CaughtError::Error(error) => error.to_string(),
    }
}
