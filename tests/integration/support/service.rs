//! A fake HTTP service for `http` steps: answers from a script of replies, records every
//! request it gets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One answer the service gives.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    /// `status` with `body` and no delay.
    pub fn new(status: u16, body: &str) -> Reply {
        Reply { status, headers: Vec::new(), body: body.to_owned(), delay: Duration::ZERO }
    }

    /// The same reply with a header added.
    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// The same reply, sent after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A request the service received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

type Answer = Box<dyn Fn(&Received) -> Reply + Send>;

struct Script {
    queued: VecDeque<Reply>,
    otherwise: Answer,
    received: Vec<Received>,
}

/// The running service.
#[derive(Clone)]
pub struct FakeService {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl FakeService {
    /// Starts a service that answers `otherwise` unless replies are queued.
    pub async fn start(otherwise: Reply) -> FakeService {
        Self::answering(move |_| otherwise.clone()).await
    }

    /// Starts a service that answers each request as `answer` says, unless replies are queued.
    pub async fn answering(reply: impl Fn(&Received) -> Reply + Send + 'static) -> FakeService {
        let script = Arc::new(Mutex::new(Script {
            queued: VecDeque::new(),
            otherwise: Box::new(reply),
            received: Vec::new(),
        }));
        let app = Router::new().fallback(answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeService { url, script }
    }

    /// Answers the next requests with `replies`, in order, before going back to the default.
    pub fn queue(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().queued.extend(replies);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut script = script.lock().unwrap();
        let received = Received { method, uri, headers, body, at: Instant::now() };
        let reply = script.queued.pop_front().unwrap_or_else(|| (script.otherwise)(&received));
        script.received.push(received);
        reply
    };
    tokio::time::sleep(reply.delay).await;
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}
