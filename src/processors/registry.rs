//! Builds each route's steps from its configuration: built-in kinds, and any kinds
//! registered by code that embeds the relay.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::for_each::ForEach;
use super::http::DestinationPolicy;
use super::{BUILTIN_KINDS, StepSettings};
use crate::pipeline::template::{EVENT_FIELDS, Template};
use crate::pipeline::{Pipeline, Processor, Step};

/// Builds a processor from its options (the table under the step's kind in the config).
pub type ProcessorFactory =
    Arc<dyn Fn(&toml::Value, &mut BuildContext) -> Result<Arc<dyn Processor>, String> + Send + Sync>;

/// What a step can learn and declare while it is built.
pub struct BuildContext {
    route: String,
    attached: Vec<String>,
    http_destinations: DestinationPolicy,
}

impl BuildContext {
    /// A context for building the steps of `route`, whose `http` steps may call any host
    /// whose addresses are not local.
    pub fn new(route: &str) -> Self {
        Self::with_http_destinations(route, DestinationPolicy::default())
    }

    /// A context for building the steps of `route`, whose `http` steps may call what
    /// `http_destinations` allows.
    pub fn with_http_destinations(route: &str, http_destinations: DestinationPolicy) -> Self {
        BuildContext { route: route.to_owned(), attached: Vec::new(), http_destinations }
    }

    /// Where `http` steps may connect.
    pub fn http_destinations(&self) -> &DestinationPolicy {
        &self.http_destinations
    }

    /// Name of the route being built.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Parses a template that may use event fields and whatever earlier steps attached.
    pub fn template(&self, source: &str) -> Result<Template, String> {
        Template::parse(source, &self.attached)
    }

    /// Declares that this step attaches `name` to the message, for later templates. A name
    /// of the event's own fields is refused: the template would never see the attached value.
    pub fn attach(&mut self, name: &str) -> Result<(), String> {
        if EVENT_FIELDS.contains(&name) || name.is_empty() || name.contains('.') {
            return Err(format!(
                "`into = {name:?}`: choose a name that is not an event field and has no dots"
            ));
        }
        if !self.attached.iter().any(|known| known == name) {
            self.attached.push(name.to_owned());
        }
        Ok(())
    }
}

/// The step kinds a relay knows: the built-ins, plus any registered with [`register`].
///
/// [`register`]: ProcessorRegistry::register
#[derive(Clone, Default)]
pub struct ProcessorRegistry {
    custom: BTreeMap<String, ProcessorFactory>,
}

impl ProcessorRegistry {
    /// A registry with only the built-in kinds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step kind, used in config as `{ <kind> = { ...options } }`. Built-in kinds
    /// cannot be replaced.
    pub fn register(
        &mut self,
        kind: &str,
        factory: impl Fn(&toml::Value, &mut BuildContext) -> Result<Arc<dyn Processor>, String>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self {
        assert!(!BUILTIN_KINDS.contains(&kind), "`{kind}` is a built-in step kind");
        self.custom.insert(kind.to_owned(), Arc::new(factory));
        self
    }

    /// Builds the pipeline of route number `index`, `route`, from its `steps`, fanning out
    /// into `max_branches` at most; its `http` steps may call what `http_destinations`
    /// allows. An error names the step's key.
    pub fn build(
        &self,
        (index, route): (usize, &str),
        settings: &[StepSettings],
        max_branches: usize,
        http_destinations: &DestinationPolicy,
    ) -> Result<Pipeline, (String, String)> {
        let mut context = BuildContext::with_http_destinations(route, http_destinations.clone());
        let mut steps = Vec::with_capacity(settings.len());
        for (position, settings) in settings.iter().enumerate() {
            let key = format!("routes[{index}].steps[{position}]");
            let (settings, items) = settings.for_each();
            if let Some(items) = items {
                let fan_out = ForEach::build(items, &mut context)
                    .map_err(|message| (format!("{key}.for_each"), message))?;
                steps.push(Step { kind: "for_each".into(), processor: Arc::new(fan_out), duration: None });
            }
            let (kind, processor) = match settings {
                StepSettings::Builtin(step) => (step.kind().to_owned(), step.build(&mut context)),
                StepSettings::Custom { kind, options } => {
                    let factory =
                        self.custom.get(kind).ok_or_else(|| (key.clone(), self.unknown_kind(kind)))?;
                    (kind.clone(), factory(options, &mut context))
                }
                StepSettings::ForEach { .. } => {
                    return Err((key, "`for_each` is given twice on one step".into()));
                }
            };
            let processor = processor.map_err(|message| (format!("{key}.{kind}"), message))?;
            steps.push(Step { kind, processor, duration: None });
        }
        Ok(Pipeline::new(route, steps, max_branches))
    }

    fn unknown_kind(&self, kind: &str) -> String {
        let known: Vec<&str> =
            BUILTIN_KINDS.iter().copied().chain(self.custom.keys().map(String::as_str)).collect();
        format!("unknown step kind `{kind}`; known kinds: {}", known.join(", "))
    }
}
