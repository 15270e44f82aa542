//! The JavaScript engine behind `script` steps: QuickJS (through `rquickjs`), one runtime
//! per worker thread, the script compiled once per runtime and reused for every call. Calls
//! run on the workers, never on the async runtime, each under a time limit (an interrupt
//! handler cuts it off) and inside the runtime's memory limit. A runtime that was cut off or
//! ran out of memory is replaced before its next call.
//!
//! QuickJS gives a script the language and its standard objects only: no filesystem,
//! network, environment, timers or module loading.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rquickjs::{CaughtError, Context, Ctx, Function, Module, Persistent, Runtime, Value};
use tokio::sync::oneshot;

/// One script's source and its limits.
#[derive(Clone)]
pub struct Source {
    /// Shown in errors: the file, or the step's key for inline code.
    pub name: String,
    /// A module whose default export is `function (event)`.
    pub module: String,
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
        let Some(current) = &engine else { continue };
        let result = current.call(&job.event);
        if matches!(result, Err(CallError::TimedOut(_) | CallError::OutOfMemory(_))) {
            engine = None;
        }
        let _ = job.reply.send(result);
    }
}

/// One runtime with the script compiled. Fields drop in order, and QuickJS requires the
/// function and the context to go before their runtime.
struct Engine {
    function: Persistent<Function<'static>>,
    context: Context,
    _runtime: Runtime,
    deadline: Arc<Mutex<Option<Instant>>>,
    interrupted: Arc<AtomicBool>,
    time_limit: Duration,
    memory_limit: usize,
}

/// The longest a script's top level may run when it is loaded.
const LOAD_TIME_LIMIT: Duration = Duration::from_secs(2);

impl Engine {
    fn new(source: &Source) -> Result<Self, String> {
        let runtime = Runtime::new().map_err(|error| format!("cannot start QuickJS: {error}"))?;
        runtime.set_memory_limit(source.memory_limit);
        runtime.set_max_stack_size(JS_STACK);
        let deadline = Arc::new(Mutex::new(Some(Instant::now() + LOAD_TIME_LIMIT)));
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
        let context = Context::full(&runtime).map_err(|error| format!("cannot start QuickJS: {error}"))?;
        let function = context.with(|ctx| load(&ctx, source))?;
        *deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        Ok(Engine {
            function,
            context,
            _runtime: runtime,
            deadline,
            interrupted,
            time_limit: source.time_limit,
            memory_limit: source.memory_limit,
        })
    }

    fn call(&self, event: &str) -> Result<Returned, CallError> {
        self.interrupted.store(false, Ordering::Relaxed);
        *self.deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(Instant::now() + self.time_limit);
        let result = self.context.with(|ctx| -> Result<Returned, CallError> {
            let function = self.function.clone().restore(&ctx).map_err(|error| self.failed(&ctx, error))?;
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
        *self.deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        result
    }

    /// Makes a call's error into what the step reports.
    fn failed(&self, ctx: &Ctx<'_>, error: rquickjs::Error) -> CallError {
        if self.interrupted.load(Ordering::Relaxed) {
            return CallError::TimedOut(self.time_limit);
        }
        let text = describe(ctx, error);
        if text.contains("out of memory") {
            return CallError::OutOfMemory(self.memory_limit);
        }
        CallError::Threw(text)
    }
}

/// Compiles and runs the module, and returns its default export.
fn load(ctx: &Ctx<'_>, source: &Source) -> Result<Persistent<Function<'static>>, String> {
    let fail = |error: rquickjs::Error| format!("{}: {}", source.name, describe(ctx, error));
    let module = Module::declare(ctx.clone(), source.name.as_str(), source.module.as_str()).map_err(fail)?;
    let (module, promise) = module.eval().map_err(fail)?;
    promise.finish::<()>().map_err(fail)?;
    let function: Function = module
        .get("default")
        .map_err(|_| format!("{}: the default export must be a function (event)", source.name))?;
    Ok(Persistent::save(ctx, function))
}

/// The thrown value as one line: its message and where it was thrown.
fn describe(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
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
