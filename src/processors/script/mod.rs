//! `script`: a JavaScript function over each message, for whatever the built-in steps cannot
//! express. `{ script = { file = "scripts/tag.js" } }`, where the file's default export is
//! `function (event)`, or `{ script = { code = "return event.text.toUpperCase()" } }`, the
//! body of that function.
//!
//! The function receives the JSON envelope `publish` sends (`text`, `cache`, `topic`,
//! `token_id`, the timestamps, the sequence number, and everything earlier steps attached)
//! and returns:
//! - `undefined`: the message goes on unchanged;
//! - a string: the new text;
//! - an object: `text` (if present) is the new text, and every other key that is not one of
//!   the event's own fields is attached for later steps;
//! - `null`: the message is dropped;
//! - an array of strings or objects: one branch per element (a fan-out).
//!
//! Each call starts from clean state: a fresh context, with the script loaded into it
//! anew, so that nothing one event leaves behind, in a global, a module-level variable or a
//! built-in prototype, reaches the next event. [`GLOBALS`] lists what a script can use.
//!
//! A throw, a call cut off by `time_limit`, or one that runs out of memory fails the step
//! for good: the event becomes a dead letter, because a script has no I/O and would fail the
//! same way again. Fix the script, then replay the dead letters.

mod engine;
mod sandbox;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Message;
use crate::pipeline::template::EVENT_FIELDS;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;
use crate::processors::payload::envelope;
pub use engine::CallError;
use engine::{Engines, Source};
pub use sandbox::GLOBALS;

/// Options of `script`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// A JavaScript module whose default export is `function (event)`; relative paths start
    /// in the working directory, as every path in the config does.
    pub file: Option<PathBuf>,
    /// The body of `function (event)`, inline.
    pub code: Option<String>,
    /// Names the script may attach, so that later templates can use them (`{user.name}`).
    #[serde(default)]
    pub attaches: Vec<String>,
    /// Longest one call may run; `100ms` by default.
    #[serde(default = "default_time_limit", with = "crate::common::duration")]
    pub time_limit: Duration,
    /// Memory each engine may hold, in MiB; 64 by default.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: usize,
    /// Engines (threads) running this script; one per CPU by default, at most 4.
    pub engines: Option<usize>,
}

/// Engines a script gets by default on a machine with many CPUs.
const DEFAULT_MOST_ENGINES: usize = 4;

fn default_time_limit() -> Duration {
    Duration::from_millis(100)
}

fn default_memory_limit_mib() -> usize {
    64
}

/// Runs a script over each message.
pub struct Script {
    source: Source,
    engines_wanted: usize,
    /// Started on the first call, so `check-config` compiles the script but starts nothing.
    engines: OnceLock<Result<Engines, String>>,
}

impl Script {
    /// Builds the step: reads and compiles the script (a syntax error names the line) and
    /// declares what it attaches.
    pub fn build(config: &ScriptConfig, context: &mut BuildContext) -> Result<Self, String> {
        let (name, module) = match (&config.file, &config.code) {
            (Some(file), None) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|error| format!("`file`: cannot read {}: {error}", file.display()))?;
                (file.display().to_string(), text)
            }
            // On the first line, so that line numbers in errors are the code's own.
            (None, Some(code)) => {
                ("script".to_owned(), format!("export default function (event) {{ {code}\n}}"))
            }
            _ => return Err("give exactly one of `file` and `code`".into()),
        };
        if config.time_limit.is_zero() || config.memory_limit_mib == 0 || config.engines == Some(0) {
            return Err("`time_limit`, `memory_limit_mib` and `engines` must be above zero".into());
        }
        for name in &config.attaches {
            context.attach(name)?;
        }
        let source = Source {
            name,
            module,
            has_module_scope: config.file.is_some(),
            time_limit: config.time_limit,
            memory_limit: config.memory_limit_mib << 20,
        };
        engine::check(&source)?;
        let engines_wanted = config.engines.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |count| count.get()).min(DEFAULT_MOST_ENGINES)
        });
        Ok(Script { source, engines_wanted, engines: OnceLock::new() })
    }

    fn engines(&self) -> Result<&Engines, StepError> {
        self.engines
            .get_or_init(|| Engines::start(self.source.clone(), self.engines_wanted))
            .as_ref()
            .map_err(|error| failed(error.clone()))
    }
}

#[async_trait]
impl Processor for Script {
    async fn process(&self, message: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        let returned = self.engines()?.call(envelope(message)).await.map_err(|error| match error {
            // Only while the relay stops: the event is kept and resumed at the next start.
            CallError::Stopped => StepError::Call {
                message: error.to_string(),
                detail: None,
                retryable: true,
                retry_after: None,
            },
            CallError::Threw(thrown) => {
                StepError::Script { message: "the script threw".into(), detail: Some(thrown) }
            }
            error => failed(error.to_string()),
        })?;
        let Some(returned) = returned else { return Ok(Flow::Continue) };
        let returned: Value = serde_json::from_str(&returned)
            .map_err(|error| failed(format!("the script returned something that is not JSON: {error}")))?;
        match returned {
            Value::Null => Ok(Flow::Drop("the script returned null".into())),
            Value::Array(items) => {
                let branches = items
                    .into_iter()
                    .filter(|item| !item.is_null())
                    .map(|item| {
                        let mut branch = message.clone();
                        apply(&mut branch, item)?;
                        Ok(branch)
                    })
                    .collect::<Result<_, StepError>>()?;
                Ok(Flow::FanOut(branches))
            }
            other => {
                apply(message, other)?;
                Ok(Flow::Continue)
            }
        }
    }
}

/// Applies one returned string or object to `message`.
fn apply(message: &mut Message, returned: Value) -> Result<(), StepError> {
    match returned {
        Value::String(text) => message.text = text,
        Value::Object(fields) => apply_fields(message, fields)?,
        other => {
            return Err(failed(format!(
                "the script returned {}; return a string, an object, an array, null or nothing",
                kind_of(&other)
            )));
        }
    }
    Ok(())
}

fn apply_fields(message: &mut Message, fields: Map<String, Value>) -> Result<(), StepError> {
    for (name, value) in fields {
        if name == "text" {
            message.text = match value {
                Value::String(text) => text,
                other => {
                    return Err(failed(format!("`text` must be a string, not {}", kind_of(&other))));
                }
            };
        } else if !EVENT_FIELDS.contains(&name.as_str()) && !name.is_empty() && !name.contains('.') {
            message.attached.insert(name, value);
        }
    }
    Ok(())
}

/// A script failure whose message quotes nothing of the event.
fn failed(message: String) -> StepError {
    StepError::Script { message, detail: None }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::run_step;

    fn script(code: &str) -> Result<Script, String> {
        let config: ScriptConfig = toml::from_str(&format!(
            "code = {}\ntime_limit = \"200ms\"\nengines = 1",
            toml::Value::from(code)
        ))
        .unwrap();
        Script::build(&config, &mut BuildContext::new("test"))
    }

    async fn run(code: &str, text: &str) -> (Result<Flow, StepError>, Message) {
        let step = script(code).unwrap();
        run_step(&step, Message::new("chat", "room", text)).await
    }

    #[tokio::test]
    async fn a_string_is_the_new_text_and_undefined_changes_nothing() {
        let (flow, message) = run("return event.text.toUpperCase()", "hi").await;
        assert_eq!((flow.unwrap(), message.text.as_str()), (Flow::Continue, "HI"));
        let (flow, message) = run("if (event.text.length > 99) return null;", "hi").await;
        assert_eq!((flow.unwrap(), message.text.as_str()), (Flow::Continue, "hi"));
    }

    #[tokio::test]
    async fn an_object_sets_the_text_and_attaches_the_rest_but_not_event_fields() {
        let code = "return { ...event, text: 'x', lang: 'es', user: { id: 7 }, topic: 'elsewhere' }";
        let (flow, message) = run(code, "hi").await;
        assert_eq!(flow.unwrap(), Flow::Continue);
        assert_eq!(message.text, "x");
        assert_eq!(message.topic, "room");
        assert_eq!(message.attached["lang"], "es");
        assert_eq!(message.attached["user"]["id"], 7);
        assert!(!message.attached.contains_key("topic"));
    }

    #[tokio::test]
    async fn the_function_sees_the_event_and_what_earlier_steps_attached() {
        let step =
            script("return [event.cache, event.topic, event.token_id, event.user.name].join('|')").unwrap();
        let mut message = Message::new("chat", "room", "hi");
        message.token_id = "42:ada".into();
        message.attached.insert("user".into(), serde_json::json!({"name": "Ada"}));
        let (_, message) = run_step(&step, message).await;
        assert_eq!(message.text, "chat|room|42:ada|Ada");
    }

    #[tokio::test]
    async fn null_drops_and_an_array_fans_out_skipping_nulls() {
        let (flow, _) = run("return null", "hi").await;
        assert!(matches!(flow.unwrap(), Flow::Drop(_)));
        let (flow, _) = run("return ['a', null, { text: 'b', n: 2 }]", "hi").await;
        let Ok(Flow::FanOut(branches)) = flow else { panic!("{flow:?}") };
        let texts: Vec<_> = branches.iter().map(|branch| branch.text.as_str()).collect();
        assert_eq!(texts, vec!["a", "b"]);
        assert_eq!(branches[1].attached["n"], 2);
    }

    #[tokio::test]
    async fn a_throw_fails_the_step_for_good_with_its_message() {
        let (flow, _) = run("throw new Error('no such room')", "hi").await;
        let error = flow.unwrap_err();
        assert!(error.detail().contains("no such room"), "{}", error.detail());
        assert!(!error.to_string().contains("no such room"), "what a script throws is never logged");
        assert!(!error.is_retryable() && error.keeps_dead_letter());
        let (flow, _) = run("return 42", "hi").await;
        assert!(flow.unwrap_err().to_string().contains("a number"));
    }

    #[tokio::test]
    async fn an_endless_loop_is_cut_off_and_the_engine_serves_the_next_call() {
        let step = script("if (event.text === 'spin') { for (;;) {} } return 'ok'").unwrap();
        let (flow, _) = run_step(&step, Message::new("c", "t", "spin")).await;
        assert!(flow.unwrap_err().to_string().contains("time limit"));
        let (flow, message) = run_step(&step, Message::new("c", "t", "fine")).await;
        assert_eq!((flow.unwrap(), message.text.as_str()), (Flow::Continue, "ok"));
    }

    #[tokio::test]
    async fn a_memory_bomb_is_stopped_by_the_limit() {
        let config: ScriptConfig = toml::from_str(
            "code = \"const kept = []; for (;;) { kept.push(new Array(100000).fill(1)); }\"\nmemory_limit_mib = 8\ntime_limit = \"5s\"\nengines = 1",
        )
        .unwrap();
        let step = Script::build(&config, &mut BuildContext::new("test")).unwrap();
        let (flow, _) = run_step(&step, Message::new("c", "t", "x")).await;
        let error = flow.unwrap_err().to_string();
        assert!(error.contains("out of memory"), "{error}");
    }

    #[test]
    fn a_syntax_error_is_refused_at_load_with_its_line() {
        let error = script("let a = 1;\nlet b = ;\nreturn a").err().unwrap();
        assert!(error.contains("script:2"), "{error}");
    }

    #[tokio::test]
    async fn a_call_can_neither_leave_a_global_nor_change_a_standard_object_for_the_next() {
        let step = script(
            "const attempts = [\
               () => { globalThis.previous = event.text; },\
               () => { Object.prototype.stolen = event.text; },\
               () => { event.__proto__.stolen = event.text; },\
               () => { Array.prototype.map = () => 'hijacked'; },\
               () => { JSON.parse = () => 'hijacked'; },\
               () => { Object.getPrototypeOf(function* () {}).constructor.stolen = 1; },\
             ];\
             const refused = attempts.filter(attempt => {\
               try { attempt(); return false; } catch (error) { return error instanceof TypeError; }\
             }).length;\
             return [String(globalThis.previous), String(({}).stolen), [1].map(x => x + 1), refused].join('|')",
        )
        .unwrap();
        for text in ["alice's secret", "bob's secret"] {
            let (flow, message) = run_step(&step, Message::new("chat", "room", text)).await;
            assert_eq!((flow.unwrap(), message.text.as_str()), (Flow::Continue, "undefined|undefined|2|6"));
        }
    }

    #[tokio::test]
    async fn module_level_variables_start_afresh_for_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("count.js");
        std::fs::write(
            &file,
            "let count = 0;\nexport default function (event) { count += 1; return String(count) }\n",
        )
        .unwrap();
        let config = ScriptConfig {
            file: Some(file),
            code: None,
            attaches: vec![],
            time_limit: Duration::from_millis(200),
            memory_limit_mib: 2,
            engines: Some(1),
        };
        let step = Script::build(&config, &mut BuildContext::new("test")).unwrap();
        // A memory limit that a context fills within a few hundred calls, so that renewed
        // contexts serve calls too.
        for _ in 0..1_000 {
            let (_, message) = run_step(&step, Message::new("c", "t", "x")).await;
            assert_eq!(message.text, "1");
        }
    }

    #[tokio::test]
    async fn a_script_sees_exactly_the_documented_globals() {
        let (_, message) = run("return Object.getOwnPropertyNames(globalThis).sort().join(',')", "").await;
        let mut documented = GLOBALS.to_vec();
        documented.sort_unstable();
        assert_eq!(message.text, documented.join(","));
    }

    #[tokio::test]
    async fn no_io_globals_are_reachable() {
        let code = "return ['require', 'process', 'fetch', 'Deno', 'std', 'os', 'XMLHttpRequest', 'setTimeout', 'console']\
                    .filter(name => typeof globalThis[name] !== 'undefined').join(',')";
        let (_, message) = run(code, "").await;
        assert_eq!(message.text, "");
        let (flow, _) = run("return import('os').then(() => 'loaded')", "").await;
        assert!(flow.is_err());
    }
}
