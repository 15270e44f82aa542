//! The HTTP server's threads. One acceptor, on the main runtime, hands each new connection to
//! the thread serving the fewest; each thread runs its own single-threaded tokio runtime and
//! serves the connections handed to it to the end. A request never changes threads, so the
//! hot path pays no work-stealing scheduler: no wake-ups of other threads, no shared run
//! queue. The relay's background work (subscriptions, redelivery, backend connections) stays
//! on the main runtime.
//!
//! Connections are handed out rather than taken by whichever thread wakes first: a burst of
//! new connections, as a load balancer opens them, would otherwise all go to one thread.
//!
//! Each thread first puts itself under the configured scheduling policy (`scheduling`).
//!
//! Past `server.max_connections` open at once, a new connection is answered 503 `overloaded`
//! and closed before anything of it is read; each connection's own time limits are in
//! `connection`.

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::ServiceExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::FrontDoor;
use super::connection::{Connection, ConnectionLimits, Held, OVER_LIMIT_ANSWER};
use super::scheduling::ThreadScheduling;

/// How long the acceptor waits after an accept error that is not one connection's own, such
/// as running out of file descriptors, before it accepts again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The threads serving HTTP.
pub struct HttpServer {
    threads: Vec<JoinHandle<()>>,
    ended: Vec<oneshot::Receiver<io::Result<()>>>,
    acceptor: tokio::task::JoinHandle<()>,
    cut_off: CancellationToken,
}

/// How [`HttpServer::finish`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// Every connection finished.
    Drained,
    /// The deadline came first; the connections still open were dropped.
    CutOff,
}

impl HttpServer {
    /// Starts one thread per gauge of `open` serving a front door of its own, made by
    /// `front_door`, on `listener`, under `scheduling`; each counts the connections it holds
    /// in its gauge, and holds each within `limits`. Once `close` is cancelled, the listener
    /// closes and the threads finish the connections they hold. Call from within the main
    /// runtime, which runs the acceptor.
    pub fn start(
        listener: TcpListener,
        front_door: impl Fn() -> FrontDoor,
        open: Vec<Gauge>,
        limits: ServerLimits,
        scheduling: ThreadScheduling,
        close: CancellationToken,
    ) -> io::Result<HttpServer> {
        if open.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no HTTP threads to start"));
        }
        let local_addr = listener.local_addr()?;
        let cut_off = CancellationToken::new();
        let mut hands = Vec::new();
        let mut server_threads = Vec::new();
        let mut ended = Vec::new();
        let (scheduled, scheduling_results) = std::sync::mpsc::channel();
        for index in 0..open.len() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (hand, inbox) = mpsc::unbounded_channel();
            hands.push(hand);
            let inbox = Inbox { handed: inbox, local_addr, limits: limits.connection.clone() };
            let (front_door, stop_accepting, stop_serving) = (front_door(), close.clone(), cut_off.clone());
            let (end, thread_ended) = oneshot::channel();
            let scheduled = scheduled.clone();
            let thread = std::thread::Builder::new().name(format!("http-{index}")).spawn(move || {
                let _ = scheduled.send(scheduling.apply_to_this_thread());
                drop(scheduled);
                let served = runtime.block_on(serve(inbox, front_door, stop_accepting, stop_serving));
                let _ = end.send(served);
            });
            let thread = match thread {
                Ok(thread) => thread,
                Err(error) => {
                    cut_off.cancel();
                    return Err(error);
                }
            };
            server_threads.push(thread);
            ended.push(thread_ended);
        }
        drop(scheduled);
        // Each thread reports once, first thing; a refusal is the same for all, so it is told once.
        if let Some(error) = scheduling_results.iter().find_map(Result::err) {
            tracing::warn!(
                %error,
                scheduling = scheduling.as_str(),
                "cannot set the HTTP threads' scheduling policy; they keep the one they started with"
            );
        }
        let acceptor = tokio::spawn(hand_out(listener, hands, open, limits, close, cut_off.clone()));
        Ok(HttpServer { threads: server_threads, ended, acceptor, cut_off })
    }

    /// Resolves when a thread has stopped serving before it was told to: the server failed.
    pub async fn failed(&mut self) -> io::Error {
        if self.ended.is_empty() {
            return std::future::pending().await;
        }
        let (ended, index, _) = futures::future::select_all(self.ended.iter_mut()).await;
        self.ended.remove(index);
        match ended {
            Ok(Err(error)) => error,
            Ok(Ok(())) => io::Error::other("an HTTP thread stopped serving"),
            Err(_panicked) => io::Error::other("an HTTP thread panicked"),
        }
    }

    /// Waits, after `close`, for every thread to finish its connections, until `deadline`;
    /// then drops what is still open. The error is the first thread's failure.
    pub async fn finish(mut self, deadline: tokio::time::Instant) -> io::Result<Finished> {
        let all_ended = futures::future::join_all(std::mem::take(&mut self.ended));
        let (finished, ended) = match tokio::time::timeout_at(deadline, all_ended).await {
            Ok(ended) => (Finished::Drained, ended),
            Err(_elapsed) => (Finished::CutOff, Vec::new()),
        };
        self.cut_off.cancel();
        let _ = (&mut self.acceptor).await;
        let threads = std::mem::take(&mut self.threads);
        let _ =
            tokio::task::spawn_blocking(move || threads.into_iter().for_each(|thread| drop(thread.join())))
                .await;
        for ended in ended {
            match ended {
                Ok(served) => served?,
                Err(_panicked) => return Err(io::Error::other("an HTTP thread panicked")),
            }
        }
        Ok(finished)
    }
}

impl Drop for HttpServer {
    /// A server given up on (the relay failed, or the future running it was dropped) stops
    /// its threads rather than leave them serving.
    fn drop(&mut self) {
        self.cut_off.cancel();
        self.acceptor.abort();
    }
}

/// A connection on its way to the thread that will serve it.
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    held: Held,
}

/// What the server allows its clients.
#[derive(Clone)]
pub struct ServerLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections answered 503 and closed for being past `max_connections`.
    pub over_limit: Counter,
    /// Each connection's time limits.
    pub connection: ConnectionLimits,
}

/// Accepts connections until `close` or `cut_off`, handing each through `hands` to the thread
/// holding the fewest, as counted in `open`; past `limits.max_connections`, answers and closes.
async fn hand_out(
    listener: TcpListener,
    hands: Vec<mpsc::UnboundedSender<Handed>>,
    open: Vec<Gauge>,
    limits: ServerLimits,
    close: CancellationToken,
    cut_off: CancellationToken,
) {
    let mut turn = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = close.cancelled() => return,
            () = cut_off.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_the_connections_own(&error) => continue,
            Err(error) => {
                tracing::error!(%error, "cannot accept a connection; pausing before the next");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if open.iter().map(Gauge::get).sum::<i64>() >= limits.max_connections as i64 {
            limits.over_limit.inc();
            // A fresh socket's send buffer is empty, so this short write does not block.
            let _ = stream.try_write(OVER_LIMIT_ANSWER);
            continue;
        }
        // An answer goes out at once, rather than waiting under Nagle's algorithm for the
        // client's (delayed) acknowledgement of the one before.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
        }
        turn = (turn + 1) % hands.len();
        let least = least_busy(&open, turn);
        let held = Held::take(&open[least]);
        match stream.into_std() {
            // A thread that has stopped drops what it is handed; its failure is reported by
            // `HttpServer::failed`.
            Ok(stream) => drop(hands[least].send(Handed { stream, peer, held })),
            Err(error) => tracing::warn!(%error, "cannot hand over an accepted connection"),
        }
    }
}

/// The index of the fewest open connections; of equals, the first from `turn` on, so that
/// ties go round.
fn least_busy(open: &[Gauge], turn: usize) -> usize {
    (0..open.len())
        .map(|offset| (turn + offset) % open.len())
        .min_by_key(|&index| open[index].get())
        .unwrap_or(0)
}

/// Errors of one connection, which end it but not the listener.
fn is_the_connections_own(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// The connections handed to one thread, as an [`axum::serve::Listener`].
struct Inbox {
    handed: mpsc::UnboundedReceiver<Handed>,
    local_addr: SocketAddr,
    limits: ConnectionLimits,
}

impl axum::serve::Listener for Inbox {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            let Some(handed) = self.handed.recv().await else {
                // The acceptor has stopped: nothing more comes, and shutdown is under way.
                return std::future::pending().await;
            };
            match TcpStream::from_std(handed.stream) {
                Ok(stream) => {
                    return (Connection::new(stream, handed.held, self.limits.clone()), handed.peer);
                }
                Err(error) => tracing::warn!(%error, "cannot serve a connection handed to this thread"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// One thread's server: serves until `close`, then finishes its connections, or drops them
/// at `cut_off`.
async fn serve(
    inbox: Inbox,
    front_door: FrontDoor,
    close: CancellationToken,
    cut_off: CancellationToken,
) -> io::Result<()> {
    let serving =
        axum::serve(inbox, front_door.into_make_service()).with_graceful_shutdown(close.cancelled_owned());
    tokio::select! {
        served = serving => served,
        () = cut_off.cancelled() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::least_busy;
    use prometheus_client::metrics::gauge::Gauge;

    fn open(counts: &[i64]) -> Vec<Gauge> {
        counts
            .iter()
            .map(|count| {
                let gauge = Gauge::default();
                gauge.set(*count);
                gauge
            })
            .collect()
    }

    #[test]
    fn a_connection_goes_to_the_thread_holding_the_fewest() {
        assert_eq!(least_busy(&open(&[3, 1, 2]), 0), 1);
        assert_eq!(least_busy(&open(&[3, 1, 2]), 2), 1);
        assert_eq!(least_busy(&open(&[0, 5]), 1), 0);
    }

    #[test]
    fn ties_go_round_from_the_turn() {
        let even = open(&[2, 2, 2]);
        let picks: Vec<usize> = (0..4).map(|turn| least_busy(&even, turn)).collect();
        assert_eq!(picks, [0, 1, 2, 0]);
        assert_eq!(least_busy(&open(&[1, 4, 1]), 1), 2);
    }
}
