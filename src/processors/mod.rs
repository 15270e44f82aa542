//! The built-in step kinds, one file each, and how a step is written in the config:
//! `{ publish = { topic = "topic 2" } }`, or just `"uppercase"` for a step without options.

pub mod drop;
pub mod filter;
pub mod for_each;
pub mod http;
pub mod json;
pub mod list_push;
pub mod lookup;
pub mod lowercase;
pub mod payload;
pub mod publish;
mod registry;
pub mod reject;
pub mod script;
pub mod set;
pub mod template;
pub mod uppercase;

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use registry::{BuildContext, ProcessorFactory, ProcessorRegistry};

use crate::pipeline::Processor;

/// Names of the built-in step kinds.
pub const BUILTIN_KINDS: &[&str] = &[
    "uppercase",
    "lowercase",
    "publish",
    "drop",
    "filter",
    "reject",
    "lookup",
    "json",
    "template",
    "list_push",
    "set",
    "http",
    "script",
];

/// The default `cache` of steps that reach a cache: the event's own.
fn event_cache() -> String {
    "{cache}".into()
}

/// A built-in step and its options: a closed set, so a tagged enum.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinStep {
    /// Uppercases the text.
    Uppercase(uppercase::UppercaseConfig),
    /// Lowercases the text.
    Lowercase(lowercase::LowercaseConfig),
    /// Publishes the message to a topic.
    Publish(publish::PublishConfig),
    /// Drops the message.
    Drop(drop::DropConfig),
    /// Drops the message unless a condition holds.
    Filter(filter::FilterConfig),
    /// Refuses the event.
    Reject(reject::RejectConfig),
    /// Attaches a cache item named after the event.
    Lookup(lookup::LookupConfig),
    /// Parses the text as JSON.
    Json(json::JsonConfig),
    /// Rewrites the text from a template.
    Template(template::TemplateConfig),
    /// Appends the message to a cache list.
    ListPush(list_push::ListPushConfig),
    /// Stores the message at a cache key.
    Set(set::SetConfig),
    /// Calls another service over HTTP.
    Http(http::HttpConfig),
    /// Runs a JavaScript function.
    Script(script::ScriptConfig),
}

impl BuiltinStep {
    /// The kind's name, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            BuiltinStep::Uppercase(_) => "uppercase",
            BuiltinStep::Lowercase(_) => "lowercase",
            BuiltinStep::Publish(_) => "publish",
            BuiltinStep::Drop(_) => "drop",
            BuiltinStep::Filter(_) => "filter",
            BuiltinStep::Reject(_) => "reject",
            BuiltinStep::Lookup(_) => "lookup",
            BuiltinStep::Json(_) => "json",
            BuiltinStep::Template(_) => "template",
            BuiltinStep::ListPush(_) => "list_push",
            BuiltinStep::Set(_) => "set",
            BuiltinStep::Http(_) => "http",
            BuiltinStep::Script(_) => "script",
        }
    }

    /// Builds the processor, checking its templates against what earlier steps attach.
    pub fn build(&self, context: &mut BuildContext) -> Result<Arc<dyn Processor>, String> {
        Ok(match self {
            BuiltinStep::Uppercase(_) => Arc::new(uppercase::Uppercase),
            BuiltinStep::Lowercase(_) => Arc::new(lowercase::Lowercase),
            BuiltinStep::Publish(config) => Arc::new(publish::Publish::build(config, context)?),
            BuiltinStep::Drop(config) => Arc::new(drop::DropMessage::build(config)),
            BuiltinStep::Filter(config) => Arc::new(filter::Filter::build(config, context)?),
            BuiltinStep::Reject(config) => Arc::new(reject::Reject::build(config)),
            BuiltinStep::Lookup(config) => Arc::new(lookup::Lookup::build(config, context)?),
            BuiltinStep::Json(config) => Arc::new(json::Json::build(config, context)?),
            BuiltinStep::Template(config) => Arc::new(template::Rewrite::build(config, context)?),
            BuiltinStep::ListPush(config) => Arc::new(list_push::ListPush::build(config, context)?),
            BuiltinStep::Set(config) => Arc::new(set::Set::build(config, context)?),
            BuiltinStep::Http(config) => Arc::new(http::Http::build(config, context)?),
            BuiltinStep::Script(config) => Arc::new(script::Script::build(config, context)?),
        })
    }
}

/// One entry of a route's `steps`.
#[derive(Debug, Clone)]
pub enum StepSettings {
    /// A step with `for_each = [...]` among its options: it and every step after it run once
    /// per item, with the item as `{item}`.
    ForEach {
        /// The items, one branch each.
        items: Vec<String>,
        /// The step itself.
        step: Box<StepSettings>,
    },
    /// A built-in kind.
    Builtin(BuiltinStep),
    /// A kind registered by code embedding the relay; checked when the routes are built.
    Custom {
        /// The kind's name.
        kind: String,
        /// Its options, as written.
        options: toml::Value,
    },
}

impl<'de> Deserialize<'de> for StepSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let table = match toml::Value::deserialize(deserializer)? {
            toml::Value::String(kind) => toml::Table::from_iter([(kind, toml::Table::new().into())]),
            toml::Value::Table(table) => table,
            other => {
                return Err(D::Error::custom(format!(
                    "a step is a kind name or a table such as {{ publish = {{ topic = \"t\" }} }}, not {}",
                    other.type_str()
                )));
            }
        };
        let mut entries = table.into_iter();
        let (Some((kind, mut options)), None) = (entries.next(), entries.next()) else {
            return Err(D::Error::custom("a step has exactly one kind, such as { uppercase = {} }"));
        };
        if let Some(items) = options.as_table_mut().and_then(|options| options.remove(FOR_EACH)) {
            let items = for_each_items(items).map_err(D::Error::custom)?;
            let step = Self::deserialize(toml::Value::Table(toml::Table::from_iter([(kind, options)])))
                .map_err(D::Error::custom)?;
            return Ok(StepSettings::ForEach { items, step: Box::new(step) });
        }
        if !BUILTIN_KINDS.contains(&kind.as_str()) {
            return Ok(StepSettings::Custom { kind, options });
        }
        let tagged = toml::Value::Table(toml::Table::from_iter([(kind, options)]));
        serde_path_to_error::deserialize(tagged)
            .map(StepSettings::Builtin)
            .map_err(|error| D::Error::custom(format!("`{}`: {}", error.path(), error.inner())))
    }
}

/// The option that makes any step fan out.
const FOR_EACH: &str = "for_each";

fn for_each_items(items: toml::Value) -> Result<Vec<String>, String> {
    let toml::Value::Array(items) = items else {
        return Err("`for_each` is a list, such as [\"en\", \"es\"]".into());
    };
    if items.is_empty() {
        return Err("`for_each` is empty, so the step would never run".into());
    }
    items
        .into_iter()
        .map(|item| match item {
            toml::Value::String(text) => Ok(text),
            toml::Value::Integer(number) => Ok(number.to_string()),
            other => Err(format!("`for_each` holds strings or integers, not {}", other.type_str())),
        })
        .collect()
}

impl StepSettings {
    /// The step without its `for_each`, and the items if it has one.
    pub fn for_each(&self) -> (&StepSettings, Option<&[String]>) {
        match self {
            StepSettings::ForEach { items, step } => (step, Some(items)),
            other => (other, None),
        }
    }
}

impl Serialize for StepSettings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StepSettings::ForEach { items, step } => {
                let mut table = toml::Table::try_from(step).map_err(serde::ser::Error::custom)?;
                if let Some((_, toml::Value::Table(options))) = table.iter_mut().next() {
                    options.insert(FOR_EACH.into(), items.clone().into());
                }
                table.serialize(serializer)
            }
            StepSettings::Builtin(step) => step.serialize(serializer),
            StepSettings::Custom { kind, options } => {
                toml::Table::from_iter([(kind.clone(), options.clone())]).serialize(serializer)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::backend::MemoryBackend;
    use crate::event::Message;
    use crate::pipeline::{Flow, Processor, StepContext, StepError};

    /// What running one step did.
    pub struct StepRun {
        pub flow: Result<Flow, StepError>,
        pub message: Message,
        /// (cache, topic, payload) of every publish the step made.
        pub published: Vec<(String, String, String)>,
    }

    /// Runs one step on the embedded backend, recording what it published.
    pub async fn run_with(
        processor: &dyn Processor,
        mut message: Message,
        backend: MemoryBackend,
    ) -> StepRun {
        let mut bus = backend.bus().subscribe_all();
        let context = StepContext { backend: &backend, route: "test" };
        let flow = processor.process(&mut message, &context).await;
        let mut published = Vec::new();
        while let Ok(item) = bus.try_recv() {
            published.push((item.cache.clone(), item.topic.clone(), item.text.clone()));
        }
        StepRun { flow, message, published }
    }

    /// Runs one step on a fresh embedded backend.
    pub async fn run_step(processor: &dyn Processor, message: Message) -> (Result<Flow, StepError>, Message) {
        let run = run_with(processor, message, MemoryBackend::new()).await;
        (run.flow, run.message)
    }
}
