//! An in-process Momento wire emulator for integration tests.
//!
//! [`Emulator::start`] serves Momento's real gRPC services (`Pubsub` and the `Scs` data plane)
//! on `127.0.0.1` over plaintext HTTP/2 for the official `momento` SDK, and Momento's
//! `Token` service (`GenerateDisposableToken`). Supported: `Publish`,
//! `Subscribe`, `Get`, `Set`, `SetIf` (all conditions), `ListPushBack`, `ListConcatenateBack`,
//! `ListFetch`; every other `Scs` call answers `UNIMPLEMENTED` (the SDK's `BadRequestError`).
//! Values expire at their TTL; lists keep theirs recorded only. Scs calls name their cache in
//! the `cache` metadata header (as the SDK sends it); pubsub messages carry `cache_name`
//! themselves.
//!
//! Topics keep their history (up to [`HISTORY`] items), so that a subscription resuming at a
//! sequence number gets what was published since. Tests can publish as a given publisher
//! (`token_id`), cut every stream, start a new sequence page, skip sequence numbers (items
//! missed), forget a topic's history, and refuse subscriptions.
//!
//! Disposable tokens are recorded as asked for ([`Emulator::vended`]); a publish made with
//! one carries its `token_id`, as on Momento.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use momento_protos::cache_client as pb;
use momento_protos::cache_client::pubsub::{self as ps, pubsub_server::Pubsub, pubsub_server::PubsubServer};
use momento_protos::cache_client::scs_server::{Scs, ScsServer};
use momento_protos::common::Empty;
use momento_protos::permission_messages::Permissions;
use momento_protos::token::token_server::{Token, TokenServer};
use momento_protos::token::{GenerateDisposableTokenRequest, GenerateDisposableTokenResponse};
use pb::set_if_request::Condition;
use ps::subscription_item::Kind as ItemKind;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

/// Items each topic keeps for subscriptions that resume.
pub const HISTORY: usize = 10_000;

/// A fake v2 API key that `momento::CredentialProvider::from_api_key_v2` accepts.
///
/// The SDK only checks that the key is a three-segment JWT whose payload has `"t":"g"`.
/// Segments (base64url, no padding): `{"alg":"HS512","typ":"JWT"}`,
/// `{"t":"g","jti":"emulator"}` and the bytes `emulator-signature`.
pub fn test_api_key() -> String {
    concat!(
        "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9",
        ".eyJ0IjoiZyIsImp0aSI6ImVtdWxhdG9yIn0",
        ".ZW11bGF0b3Itc2lnbmF0dXJl"
    )
    .to_string()
}

/// A message the emulator accepted on `Publish`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// Cache name from the request.
    pub cache: String,
    /// Topic name from the request.
    pub topic: String,
    /// The value, when it was published as text.
    pub text: Option<String>,
    /// The value, when it was published as binary.
    pub bytes: Option<Vec<u8>>,
    /// The client's address: which TCP connection the publish came on.
    pub peer: Option<SocketAddr>,
}

/// A disposable token the emulator vended, as it was asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct VendedToken {
    /// The `token_id` Momento stamps on what the token publishes.
    pub token_id: String,
    /// The permissions, as sent on the wire.
    pub permissions: Option<Permissions>,
    /// The lifetime asked for.
    pub valid_for_seconds: u32,
    /// The API key inside the token the SDK hands out.
    pub api_key: String,
}

/// One call the emulator received, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// gRPC method in snake case, e.g. `"publish"`, `"subscribe"`, `"set_if"`, `"list_fetch"`.
    pub method: &'static str,
    /// Cache the call addressed.
    pub cache: String,
    /// The client's address: which TCP connection the call came on.
    pub peer: Option<SocketAddr>,
    /// Whether the emulator answered with an error (injected fault or unimplemented call).
    pub failed: bool,
}

type Key = (String, Vec<u8>);
type Reply<T> = Result<Response<T>, Status>;
type Subscriber = mpsc::UnboundedSender<Result<ps::SubscriptionItem, Status>>;

struct Topic {
    page: u64,
    last_sequence_number: u64,
    history: VecDeque<ps::TopicItem>,
    subscribers: Vec<Subscriber>,
}

impl Default for Topic {
    fn default() -> Self {
        Topic { page: 1, last_sequence_number: 0, history: VecDeque::new(), subscribers: Vec::new() }
    }
}

impl Topic {
    /// Numbers `kind` as the topic's next item, keeps it, and sends it to every live
    /// subscription (forgetting those whose client went away).
    fn append(&mut self, kind: ps::topic_value::Kind, publisher_id: &str) -> u64 {
        self.last_sequence_number += 1;
        let topic_item = ps::TopicItem {
            topic_sequence_number: self.last_sequence_number,
            value: Some(ps::TopicValue { kind: Some(kind) }),
            publisher_id: publisher_id.to_owned(),
            sequence_page: self.page,
        };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(topic_item.clone());
        let message = item(ItemKind::Item(topic_item));
        self.subscribers.retain(|subscriber| subscriber.send(Ok(message.clone())).is_ok());
        self.last_sequence_number
    }

    /// What a subscription resuming at `sequence` on `page` is sent first: the items it asks
    /// for that the topic still holds, after a discontinuity when it cannot have all of them.
    fn replay(&self, sequence: u64, page: u64) -> Vec<ps::SubscriptionItem> {
        if sequence == 0 {
            return Vec::new();
        }
        let from = if page == self.page { sequence } else { 1 };
        let oldest =
            self.history.front().map_or(self.last_sequence_number + 1, |item| item.topic_sequence_number);
        let mut items = Vec::new();
        if page != self.page || from < oldest {
            items.push(item(ItemKind::Discontinuity(ps::Discontinuity {
                last_topic_sequence: sequence.saturating_sub(1),
                new_topic_sequence: oldest.max(from).saturating_sub(1),
                new_sequence_page: self.page,
            })));
        }
        let held = self.history.iter().filter(|item| item.topic_sequence_number >= from);
        items.extend(held.map(|topic_item| item(ItemKind::Item(topic_item.clone()))));
        items
    }
}

#[derive(Default)]
struct State {
    fail_subscribes: Option<(usize, Code)>,
    break_new_streams: bool,
    /// While set, new streams open and then stay silent, as stalled ones do.
    stall_new_streams: bool,
    /// Streams kept open but sent nothing, not even heartbeats.
    stalled: Vec<Subscriber>,
    /// Whether publishes are kept for [`Emulator::published`]; a benchmark's millions would
    /// make each growth of the list a pause for every call.
    forget_publishes: bool,
    subscribe_calls: usize,
    expiries: HashMap<Key, std::time::Instant>,
    fail_next: Option<(usize, Code)>,
    fail_topic: Option<(String, usize, Code)>,
    fail_all: Option<Code>,
    delay_next: Option<(usize, Duration)>,
    delay_publishes: Option<(usize, Duration)>,
    published: Vec<Published>,
    publish_attempts: usize,
    calls: Vec<Call>,
    values: HashMap<Key, Vec<u8>>,
    lists: HashMap<Key, VecDeque<Vec<u8>>>,
    ttls: HashMap<Key, u64>,
    topics: HashMap<(String, String), Topic>,
    vended: Vec<VendedToken>,
    fail_vending: Option<Code>,
}

impl State {
    /// Stores a value that expires after `ttl_ms`.
    fn keep(&mut self, key: Key, value: Vec<u8>, ttl_ms: u64) {
        self.ttls.insert(key.clone(), ttl_ms);
        let expires = std::time::Instant::now() + Duration::from_millis(ttl_ms);
        self.expiries.insert(key.clone(), expires);
        self.values.insert(key, value);
    }

    /// Forgets the value under `key` if its TTL ran out.
    fn expire(&mut self, key: &Key) {
        if self.expiries.get(key).is_some_and(|at| *at <= std::time::Instant::now()) {
            self.values.remove(key);
            self.expiries.remove(key);
        }
    }

    fn topic(&mut self, cache: &str, topic: &str) -> &mut Topic {
        self.topics.entry((cache.to_owned(), topic.to_owned())).or_default()
    }

    fn record(&mut self, method: &'static str, cache: &str, peer: Option<SocketAddr>, failed: bool) {
        let cache = cache.to_string();
        self.calls.push(Call { method, cache, peer, failed });
    }
}

fn key_of(cache: &str, name: &str) -> Key {
    (cache.to_string(), name.as_bytes().to_vec())
}

/// Takes one use of a counted fault, clearing it when it is used up.
fn take_one<T: Copy>(slot: &mut Option<(usize, T)>) -> Option<T> {
    let (left, value) = slot.as_mut()?;
    let value = *value;
    *left -= 1;
    if *left == 0 {
        *slot = None;
    }
    Some(value)
}

fn item(kind: ItemKind) -> ps::SubscriptionItem {
    ps::SubscriptionItem { kind: Some(kind) }
}

/// Shared state behind both gRPC services and the [`Emulator`] handle.
#[derive(Clone, Default)]
struct Service(Arc<Mutex<State>>);

impl Service {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a data-plane call and applies injected delays and failures to it.
    async fn admit(
        &self,
        method: &'static str,
        cache: &str,
        topic: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<(), Status> {
        let (delay, failure) = {
            let mut state = self.lock();
            let delay = match method {
                "publish" => take_one(&mut state.delay_publishes),
                _ => None,
            }
            .or_else(|| take_one(&mut state.delay_next));
            let topic_failure = match (&mut state.fail_topic, topic) {
                (Some((failing, left, code)), Some(topic)) if failing == topic && *left > 0 => {
                    *left -= 1;
                    Some(*code)
                }
                _ => None,
            };
            let failure = state.fail_all.or(topic_failure).or_else(|| take_one(&mut state.fail_next));
            if method == "publish" {
                state.publish_attempts += 1;
            }
            state.record(method, cache, peer, failure.is_some());
            (delay, failure)
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        match failure {
            Some(code) => Err(Status::new(code, format!("injected {method} failure"))),
            None => Ok(()),
        }
    }

    /// Reads the cache name from the `cache` metadata header, admits the call and unwraps it.
    async fn begin<T>(&self, method: &'static str, request: Request<T>) -> Result<(String, T), Status> {
        let cache = cache_header(&request)?;
        self.admit(method, &cache, None, request.remote_addr()).await?;
        Ok((cache, request.into_inner()))
    }

    /// Records a call to an `Scs` method the emulator does not support.
    fn unimplemented<T>(&self, method: &'static str, request: &Request<T>) -> Status {
        let cache = cache_header(request).unwrap_or_default();
        self.lock().record(method, &cache, request.remote_addr(), true);
        Status::unimplemented(format!("emulator does not support {method}"))
    }

    /// Appends to a list, truncates it from the front and records the TTL; returns the length.
    fn append(
        &self,
        cache: String,
        list: Vec<u8>,
        values: Vec<Vec<u8>>,
        ttl_ms: u64,
        truncate_to: u32,
    ) -> u32 {
        let mut state = self.lock();
        let key = (cache, list);
        state.ttls.insert(key.clone(), ttl_ms);
        let list = state.lists.entry(key).or_default();
        list.extend(values);
        while truncate_to > 0 && list.len() > truncate_to as usize {
            list.pop_front();
        }
        list.len() as u32
    }
}

fn cache_header<T>(request: &Request<T>) -> Result<String, Status> {
    let header = request.metadata().get("cache").and_then(|value| value.to_str().ok());
    header
        .map(str::to_string)
        .ok_or_else(|| Status::invalid_argument("emulator: missing `cache` metadata header"))
}

#[tonic::async_trait]
impl Pubsub for Service {
    async fn publish(&self, request: Request<ps::PublishRequest>) -> Reply<Empty> {
        let peer = request.remote_addr();
        let authorization =
            request.metadata().get("authorization").and_then(|value| value.to_str().ok()).map(str::to_owned);
        let cache = request.get_ref().cache_name.clone();
        self.admit("publish", &cache, Some(&request.get_ref().topic), peer).await?;
        let ps::PublishRequest { topic, value, .. } = request.into_inner();
        let kind = value.and_then(|value| value.kind);
        let kind = kind.ok_or_else(|| Status::invalid_argument("publish without a value"))?;
        let (text, bytes) = match &kind {
            ps::topic_value::Kind::Text(text) => (Some(text.clone()), None),
            ps::topic_value::Kind::Binary(bytes) => (None, Some(bytes.clone())),
        };
        let mut state = self.lock();
        let topic_key = (cache.clone(), topic.clone());
        if !state.forget_publishes {
            state.published.push(Published { cache, topic, text, bytes, peer });
        }
        // An API key carries no token_id; a disposable token carries the one it was vended with.
        let token_id = state
            .vended
            .iter()
            .find(|vended| Some(vended.api_key.as_str()) == authorization.as_deref())
            .map(|vended| vended.token_id.clone())
            .unwrap_or_default();
        state.topics.entry(topic_key).or_default().append(kind, &token_id);
        Ok(Response::new(Empty {}))
    }

    type SubscribeStream = UnboundedReceiverStream<Result<ps::SubscriptionItem, Status>>;

    async fn subscribe(&self, request: Request<ps::SubscriptionRequest>) -> Reply<Self::SubscribeStream> {
        let peer = request.remote_addr();
        let presented = request.metadata().get("authorization").and_then(|key| key.to_str().ok());
        // As careless a service as can be: its refusal echoes the key it was sent.
        let refusal = format!("injected subscribe failure for key {}", presented.unwrap_or("none"));
        let ps::SubscriptionRequest { cache_name, topic, resume_at_topic_sequence_number, sequence_page } =
            request.into_inner();
        let mut state = self.lock();
        state.subscribe_calls += 1;
        if let Some(code) = take_one(&mut state.fail_subscribes) {
            state.record("subscribe", &cache_name, peer, true);
            return Err(Status::new(code, refusal));
        }
        state.record("subscribe", &cache_name, peer, false);
        let (sender, receiver) = mpsc::unbounded_channel();
        if state.stall_new_streams {
            state.stalled.push(sender);
            return Ok(Response::new(UnboundedReceiverStream::new(receiver)));
        }
        // Like the real service, open with a heartbeat; the SDK skips heartbeats.
        let _ = sender.send(Ok(item(ItemKind::Heartbeat(ps::Heartbeat {}))));
        let break_at_once = state.break_new_streams;
        let topic = state.topics.entry((cache_name, topic)).or_default();
        // Under the same lock as publishes: nothing is sent twice or falls between the two.
        for held in topic.replay(resume_at_topic_sequence_number, sequence_page) {
            let _ = sender.send(Ok(held));
        }
        if break_at_once {
            let _ = sender.send(Err(Status::unavailable("stream broken at once")));
            return Ok(Response::new(UnboundedReceiverStream::new(receiver)));
        }
        topic.subscribers.push(sender);
        Ok(Response::new(UnboundedReceiverStream::new(receiver)))
    }
}

#[tonic::async_trait]
impl Token for Service {
    async fn generate_disposable_token(
        &self,
        request: Request<GenerateDisposableTokenRequest>,
    ) -> Reply<GenerateDisposableTokenResponse> {
        let request = request.into_inner();
        let mut state = self.lock();
        if let Some(code) = state.fail_vending {
            return Err(Status::new(code, "injected token service failure"));
        }
        let api_key = format!("emulator-disposable-{}", state.vended.len() + 1);
        let valid_for_seconds = request.expires.map_or(0, |expires| expires.valid_for_seconds);
        state.vended.push(VendedToken {
            token_id: request.token_id,
            permissions: request.permissions,
            valid_for_seconds,
            api_key: api_key.clone(),
        });
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(Response::new(GenerateDisposableTokenResponse {
            api_key,
            endpoint: "emulator.invalid".to_owned(),
            valid_until: now.as_secs() + u64::from(valid_for_seconds),
        }))
    }
}

/// Implements `Scs`: the listed supported methods delegate to `Service::scs_*`; every
/// other method answers `UNIMPLEMENTED`.
macro_rules! scs_service {
    (
        supported { $($name:ident => $handler:ident($req:ident) -> $resp:ident;)* }
        unsupported { $($stub:ident($stub_req:ident) -> $stub_resp:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl Scs for Service {
            type GetBatchStream = tokio_stream::Empty<Result<pb::GetResponse, Status>>;
            type SetBatchStream = tokio_stream::Empty<Result<pb::SetResponse, Status>>;

            async fn get_batch(&self, request: Request<pb::GetBatchRequest>) -> Reply<Self::GetBatchStream> {
                Err(self.unimplemented("get_batch", &request))
            }

            async fn set_batch(&self, request: Request<pb::SetBatchRequest>) -> Reply<Self::SetBatchStream> {
                Err(self.unimplemented("set_batch", &request))
            }

            $(async fn $name(&self, request: Request<pb::$req>) -> Reply<pb::$resp> {
                let (cache, message) = self.begin(stringify!($name), request).await?;
                Ok(Response::new(self.$handler(cache, message)))
            })*

            $(async fn $stub(&self, request: Request<pb::$stub_req>) -> Reply<pb::$stub_resp> {
                Err(self.unimplemented(stringify!($stub), &request))
            })*
        }
    };
}

scs_service! {
    supported {
        get => scs_get(GetRequest) -> GetResponse;
        set => scs_set(SetRequest) -> SetResponse;
        set_if => scs_set_if(SetIfRequest) -> SetIfResponse;
        list_push_back => scs_list_push_back(ListPushBackRequest) -> ListPushBackResponse;
        list_concatenate_back => scs_list_concatenate_back(ListConcatenateBackRequest) -> ListConcatenateBackResponse;
        list_fetch => scs_list_fetch(ListFetchRequest) -> ListFetchResponse;
    }
    unsupported {
        get_with_hash(GetWithHashRequest) -> GetWithHashResponse;
        set_if_hash(SetIfHashRequest) -> SetIfHashResponse;
        set_if_not_exists(SetIfNotExistsRequest) -> SetIfNotExistsResponse;
        delete(DeleteRequest) -> DeleteResponse;
        keys_exist(KeysExistRequest) -> KeysExistResponse;
        increment(IncrementRequest) -> IncrementResponse;
        update_ttl(UpdateTtlRequest) -> UpdateTtlResponse;
        item_get_ttl(ItemGetTtlRequest) -> ItemGetTtlResponse;
        item_get_type(ItemGetTypeRequest) -> ItemGetTypeResponse;
        dictionary_get(DictionaryGetRequest) -> DictionaryGetResponse;
        dictionary_fetch(DictionaryFetchRequest) -> DictionaryFetchResponse;
        dictionary_set(DictionarySetRequest) -> DictionarySetResponse;
        dictionary_increment(DictionaryIncrementRequest) -> DictionaryIncrementResponse;
        dictionary_delete(DictionaryDeleteRequest) -> DictionaryDeleteResponse;
        dictionary_length(DictionaryLengthRequest) -> DictionaryLengthResponse;
        set_fetch(SetFetchRequest) -> SetFetchResponse;
        set_sample(SetSampleRequest) -> SetSampleResponse;
        set_union(SetUnionRequest) -> SetUnionResponse;
        set_difference(SetDifferenceRequest) -> SetDifferenceResponse;
        set_contains(SetContainsRequest) -> SetContainsResponse;
        set_length(SetLengthRequest) -> SetLengthResponse;
        set_pop(SetPopRequest) -> SetPopResponse;
        list_push_front(ListPushFrontRequest) -> ListPushFrontResponse;
        list_pop_front(ListPopFrontRequest) -> ListPopFrontResponse;
        list_pop_back(ListPopBackRequest) -> ListPopBackResponse;
        list_erase(ListEraseRequest) -> ListEraseResponse;
        list_remove(ListRemoveRequest) -> ListRemoveResponse;
        list_length(ListLengthRequest) -> ListLengthResponse;
        list_concatenate_front(ListConcatenateFrontRequest) -> ListConcatenateFrontResponse;
        list_retain(ListRetainRequest) -> ListRetainResponse;
        sorted_set_put(SortedSetPutRequest) -> SortedSetPutResponse;
        sorted_set_fetch(SortedSetFetchRequest) -> SortedSetFetchResponse;
        sorted_set_get_score(SortedSetGetScoreRequest) -> SortedSetGetScoreResponse;
        sorted_set_remove(SortedSetRemoveRequest) -> SortedSetRemoveResponse;
        sorted_set_increment(SortedSetIncrementRequest) -> SortedSetIncrementResponse;
        sorted_set_get_rank(SortedSetGetRankRequest) -> SortedSetGetRankResponse;
        sorted_set_length(SortedSetLengthRequest) -> SortedSetLengthResponse;
        sorted_set_length_by_score(SortedSetLengthByScoreRequest) -> SortedSetLengthByScoreResponse;
        sorted_set_union_store(SortedSetUnionStoreRequest) -> SortedSetUnionStoreResponse;
    }
}

/// Handlers of the supported `Scs` calls, after the call was admitted.
impl Service {
    fn scs_get(&self, cache: String, request: pb::GetRequest) -> pb::GetResponse {
        let mut state = self.lock();
        let key = (cache, request.cache_key);
        state.expire(&key);
        match state.values.get(&key) {
            Some(body) => pb::GetResponse {
                result: pb::ECacheResult::Hit.into(),
                cache_body: body.clone(),
                message: String::new(),
            },
            None => pb::GetResponse { result: pb::ECacheResult::Miss.into(), ..Default::default() },
        }
    }

    fn scs_set(&self, cache: String, request: pb::SetRequest) -> pb::SetResponse {
        let mut state = self.lock();
        let key = (cache, request.cache_key);
        state.keep(key, request.cache_body, request.ttl_milliseconds);
        pb::SetResponse { result: pb::ECacheResult::Ok.into(), message: String::new() }
    }

    fn scs_set_if(&self, cache: String, request: pb::SetIfRequest) -> pb::SetIfResponse {
        use pb::set_if_response::{NotStored, Result as Outcome, Stored};
        let mut state = self.lock();
        let key = (cache, request.cache_key);
        state.expire(&key);
        let current = state.values.get(&key);
        let store = match request.condition {
            Some(Condition::Present(_)) => current.is_some(),
            Some(Condition::PresentAndNotEqual(c)) => current.is_some_and(|v| *v != c.value_to_check),
            Some(Condition::Absent(_)) => current.is_none(),
            Some(Condition::Equal(c)) => current == Some(&c.value_to_check),
            Some(Condition::AbsentOrEqual(c)) => current.is_none_or(|v| *v == c.value_to_check),
            Some(Condition::NotEqual(c)) => current != Some(&c.value_to_check),
            None => true,
        };
        let result = Some(if store {
            state.keep(key, request.cache_body, request.ttl_milliseconds);
            Outcome::Stored(Stored {})
        } else {
            Outcome::NotStored(NotStored {})
        });
        pb::SetIfResponse { result }
    }

    fn scs_list_push_back(&self, cache: String, r: pb::ListPushBackRequest) -> pb::ListPushBackResponse {
        let list_length =
            self.append(cache, r.list_name, vec![r.value], r.ttl_milliseconds, r.truncate_front_to_size);
        pb::ListPushBackResponse { list_length }
    }

    fn scs_list_concatenate_back(
        &self,
        cache: String,
        r: pb::ListConcatenateBackRequest,
    ) -> pb::ListConcatenateBackResponse {
        let list_length =
            self.append(cache, r.list_name, r.values, r.ttl_milliseconds, r.truncate_front_to_size);
        pb::ListConcatenateBackResponse { list_length }
    }

    fn scs_list_fetch(&self, cache: String, request: pb::ListFetchRequest) -> pb::ListFetchResponse {
        use pb::list_fetch_request::{EndIndex, StartIndex};
        use pb::list_fetch_response::{Found, List, Missing};
        let state = self.lock();
        let Some(list) = state.lists.get(&(cache, request.list_name)) else {
            let list = Some(List::Missing(Missing {}));
            return pb::ListFetchResponse { list };
        };
        // Indexes may be negative (counted from the end), as in the SDK's list_fetch.
        let len = list.len() as i64;
        let index = |i: i32| (i64::from(i) + if i < 0 { len } else { 0 }).clamp(0, len) as usize;
        let start = match request.start_index {
            Some(StartIndex::InclusiveStart(i)) => index(i),
            _ => 0,
        };
        let end = match request.end_index {
            Some(EndIndex::ExclusiveEnd(i)) => index(i),
            _ => list.len(),
        };
        let values = list.range(start..end.max(start)).cloned().collect();
        let list = Some(List::Found(Found { values }));
        pb::ListFetchResponse { list }
    }
}

/// A running emulator on `127.0.0.1`; dropping it (or [`Emulator::stop`]) shuts it down.
pub struct Emulator {
    address: SocketAddr,
    service: Service,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Binds `127.0.0.1:0` and serves `Pubsub` and `Scs` on it over plaintext HTTP/2.
    pub async fn start() -> Emulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        let service = Service::default();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let serving = tonic::transport::Server::builder()
            .add_service(PubsubServer::new(service.clone()))
            .add_service(ScsServer::new(service.clone()))
            .add_service(TokenServer::new(service.clone()))
            // As gRPC servers do, Momento's among them: without it, a small answer waits for
            // the client's delayed acknowledgement, up to 40 ms, whenever one is in flight.
            .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async {
                let _ = stopped.await;
            });
        let server = tokio::spawn(async move {
            if let Err(error) = serving.await {
                eprintln!("momento emulator failed: {error}");
            }
        });
        Emulator { address, service, shutdown: Some(shutdown), server: Some(server) }
    }

    /// The endpoint to give the SDK, `"http://127.0.0.1:PORT"`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The port the emulator listens on.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Credentials that point every Momento client at this emulator (plaintext, fake key).
    pub fn credential_provider(&self) -> momento::CredentialProvider {
        momento::CredentialProvider::from_api_key_v2(test_api_key(), "emulator.invalid")
            .expect("the fake key is a valid v2 API key")
            .insecure_endpoint_override(&self.endpoint())
    }

    /// Makes the next `n` data-plane calls (publish, get, set, set_if, list ops; not
    /// subscribe) fail with `code`.
    pub fn fail_next(&self, n: usize, code: Code) {
        self.service.lock().fail_next = (n > 0).then_some((n, code));
    }

    /// Makes the next `n` publishes to `topic` (in any cache) fail with `code`; other calls
    /// are not affected.
    pub fn fail_publishes_to(&self, topic: &str, n: usize, code: Code) {
        self.service.lock().fail_topic = Some((topic.to_owned(), n, code));
    }

    /// Makes every data-plane call fail with `code` until [`Emulator::heal`].
    pub fn fail_all(&self, code: Code) {
        self.service.lock().fail_all = Some(code);
    }

    /// Makes the next `n` data-plane calls sleep for `delay` before being answered.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        self.service.lock().delay_next = (n > 0).then_some((n, delay));
    }

    /// Makes the next `n` publishes sleep for `delay` before being answered; lease,
    /// membership and checkpoint calls are not held up.
    pub fn delay_next_publishes(&self, n: usize, delay: Duration) {
        self.service.lock().delay_publishes = (n > 0).then_some((n, delay));
    }

    /// Makes the next `n` subscribe calls fail with `code`.
    pub fn fail_subscribes(&self, n: usize, code: Code) {
        self.service.lock().fail_subscribes = (n > 0).then_some((n, code));
    }

    /// Accepts subscribe calls, and breaks each stream right after it opens.
    pub fn break_new_streams(&self) {
        self.service.lock().break_new_streams = true;
    }

    /// Subscribe calls received so far, refused ones included.
    pub fn subscribe_calls(&self) -> usize {
        self.service.lock().subscribe_calls
    }

    /// Publishes `text` on `topic` as a publisher whose token carries `token_id`, as a
    /// user's app would; returns its sequence number. Not recorded in [`Emulator::published`].
    pub fn publish_as(&self, cache: &str, topic: &str, text: &str, token_id: &str) -> u64 {
        let kind = ps::topic_value::Kind::Text(text.to_owned());
        self.service.lock().topic(cache, topic).append(kind, token_id)
    }

    /// Publishes raw bytes on `topic` as `token_id`; returns the sequence number.
    pub fn publish_bytes_as(&self, cache: &str, topic: &str, bytes: &[u8], token_id: &str) -> u64 {
        let kind = ps::topic_value::Kind::Binary(bytes.to_vec());
        self.service.lock().topic(cache, topic).append(kind, token_id)
    }

    /// Makes every `GenerateDisposableToken` fail with `code` (`None`: succeed again).
    pub fn fail_vending(&self, code: Option<Code>) {
        self.service.lock().fail_vending = code;
    }

    /// The disposable tokens vended so far, oldest first.
    pub fn vended(&self) -> Vec<VendedToken> {
        self.service.lock().vended.clone()
    }

    /// Ends every open subscription stream with an error, as a lost connection would.
    pub fn cut_streams(&self) -> usize {
        let mut state = self.service.lock();
        let mut cut = 0;
        for topic in state.topics.values_mut() {
            for subscriber in topic.subscribers.drain(..) {
                cut += usize::from(subscriber.send(Err(Status::unavailable("stream cut"))).is_ok());
            }
        }
        cut
    }

    /// Stops keeping publishes for [`Emulator::published`], for benchmarks.
    pub fn forget_publishes(&self) {
        self.service.lock().forget_publishes = true;
    }

    /// Stalls every open stream and every one opened from now on, until [`Emulator::heal`]:
    /// each stays open and is sent nothing, neither items nor heartbeats.
    pub fn stall_streams(&self) {
        let mut state = self.service.lock();
        state.stall_new_streams = true;
        let silenced: Vec<Subscriber> =
            state.topics.values_mut().flat_map(|topic| topic.subscribers.drain(..)).collect();
        state.stalled.extend(silenced);
    }

    /// Sends a heartbeat on every open stream of `topic`.
    pub fn heartbeat(&self, cache: &str, topic: &str) {
        let mut state = self.service.lock();
        let topic = state.topic(cache, topic);
        let heartbeat = item(ItemKind::Heartbeat(ps::Heartbeat {}));
        topic.subscribers.retain(|subscriber| subscriber.send(Ok(heartbeat.clone())).is_ok());
    }

    /// Skips `n` items on `topic` and tells its open streams so with a discontinuity, as the
    /// service does when a subscriber falls behind.
    pub fn skip_with_discontinuity(&self, cache: &str, topic: &str, n: u64) {
        let mut state = self.service.lock();
        let topic = state.topic(cache, topic);
        let last = topic.last_sequence_number;
        topic.last_sequence_number += n;
        let gap = item(ItemKind::Discontinuity(ps::Discontinuity {
            last_topic_sequence: last,
            new_topic_sequence: topic.last_sequence_number,
            new_sequence_page: topic.page,
        }));
        topic.subscribers.retain(|subscriber| subscriber.send(Ok(gap.clone())).is_ok());
    }

    /// Open subscription streams on `topic`.
    pub fn subscribers(&self, cache: &str, topic: &str) -> usize {
        let mut state = self.service.lock();
        let topic = state.topic(cache, topic);
        topic.subscribers.retain(|subscriber| !subscriber.is_closed());
        topic.subscribers.len()
    }

    /// Numbers `topic` afresh: the next item is 1, on the next sequence page.
    pub fn start_new_page(&self, cache: &str, topic: &str) {
        let mut state = self.service.lock();
        let topic = state.topic(cache, topic);
        topic.page += 1;
        topic.last_sequence_number = 0;
        topic.history.clear();
    }

    /// Skips `n` sequence numbers on `topic`, as items no subscriber received would.
    pub fn skip_sequence_numbers(&self, cache: &str, topic: &str, n: u64) {
        self.service.lock().topic(cache, topic).last_sequence_number += n;
    }

    /// Forgets what `topic` holds, as Momento does after a while.
    pub fn forget_history(&self, cache: &str, topic: &str) {
        self.service.lock().topic(cache, topic).history.clear();
    }

    /// Clears every injected failure and delay.
    pub fn heal(&self) {
        let mut state = self.service.lock();
        state.fail_next = None;
        state.fail_topic = None;
        state.fail_all = None;
        state.delay_next = None;
        state.delay_publishes = None;
        state.fail_subscribes = None;
        state.break_new_streams = false;
        state.stall_new_streams = false;
    }

    /// Publishes accepted so far, in arrival order (injected failures excluded).
    pub fn published(&self) -> Vec<Published> {
        self.service.lock().published.clone()
    }

    /// Publish calls received so far, including those failed by injection.
    pub fn publish_attempts(&self) -> usize {
        self.service.lock().publish_attempts
    }

    /// Every call received so far (data plane, subscribe and unsupported), in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.service.lock().calls.clone()
    }

    /// Stores `value` under `key` in `cache`, like a set without a TTL.
    pub fn put(&self, cache: &str, key: &str, value: &[u8]) {
        let mut state = self.service.lock();
        let key = key_of(cache, key);
        state.ttls.remove(&key);
        state.values.insert(key, value.to_vec());
    }

    /// The value stored under `key` in `cache`, if any.
    pub fn value(&self, cache: &str, key: &str) -> Option<Vec<u8>> {
        self.service.lock().values.get(&key_of(cache, key)).cloned()
    }

    /// The TTL, in milliseconds, that the last write of this key or list asked for.
    pub fn ttl_ms(&self, cache: &str, key: &str) -> Option<u64> {
        self.service.lock().ttls.get(&key_of(cache, key)).copied()
    }

    /// The elements of the list `list` in `cache`, front first (empty when missing).
    pub fn list(&self, cache: &str, list: &str) -> Vec<Vec<u8>> {
        let state = self.service.lock();
        let list = state.lists.get(&key_of(cache, list));
        list.map(|list| list.iter().cloned().collect()).unwrap_or_default()
    }

    /// Shuts the server down and waits (up to 5 s) for open connections to close.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(mut server) = self.server.take() {
            let finished = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
            if finished.is_err() {
                server.abort();
            }
        }
    }

    /// Stops accepting connections and ends subscription streams, so that graceful
    /// shutdown is not held up by them.
    fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.service.lock().topics.clear();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}
