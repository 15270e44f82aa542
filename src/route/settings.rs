//! `[[routes]]` and `[unmatched]`: which events each route takes, its steps, and what
//! happens to an event no route takes.

use serde::{Deserialize, Serialize};

use crate::processors::StepSettings;

/// `[[routes]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// Shown in logs, metrics and error messages.
    pub name: String,
    /// Which events this route takes.
    #[serde(rename = "match", default)]
    pub matcher: MatchSettings,
    /// Processing steps, run in order.
    #[serde(default)]
    pub steps: Vec<StepSettings>,
    /// Branches one event may fan out into (through `for_each` or a script that returns an
    /// array), so that no event explodes into millions.
    #[serde(default = "default_max_branches")]
    pub max_branches: usize,
    /// Allows a route to publish into a topic its own match receives. Without it,
    /// `check-config` and startup refuse such a route, since it would loop through Momento.
    #[serde(default)]
    pub allow_loop: bool,
    /// Allows a route that names no source to take a subscription's topic while webhooks are
    /// configured. Without it, `check-config` and startup refuse such a route, since an item
    /// published there would arrive twice, through both.
    #[serde(default)]
    pub allow_overlap: bool,
}

fn default_max_branches() -> usize {
    crate::pipeline::DEFAULT_MAX_BRANCHES
}

/// The `match` of a route. Omitted keys match everything.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSettings {
    /// Name of the webhook the event came in on (exact or glob); the route then takes no
    /// subscription items.
    pub webhook: Option<String>,
    /// Name of the subscription the item came from (exact or glob); the route then takes no
    /// webhook events.
    pub subscription: Option<String>,
    /// Cache name (exact or glob such as `chat-*`).
    pub cache: Option<String>,
    /// Topic name (exact or glob such as `room-*`).
    pub topic: Option<String>,
    /// `"required"` (any non-empty token id), `"absent"` (anonymous publishers only), or a
    /// glob over the token id.
    pub token_id: Option<String>,
}

/// `[unmatched]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnmatchedSettings {
    /// `ack` answers 200 (counted and logged); `reject` answers 404 `no_route`.
    #[serde(default)]
    pub action: UnmatchedAction,
}

/// What happens to a verified event that no route matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedAction {
    /// Answer 200 with outcome `unmatched`.
    #[default]
    Ack,
    /// Answer 404 with error `no_route`.
    Reject,
}
