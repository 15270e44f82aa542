//! The HTTP server's threads. Each runs its own single-threaded tokio runtime, accepts
//! connections from the one listening socket, and serves each connection it accepted to the
//! end. A request never changes threads, so the hot path pays no work-stealing scheduler:
//! no wake-ups of other threads, no shared run queue. A busy thread accepts nothing new, so
//! new connections go to the threads that are free. The relay's background work
//! (subscriptions, redelivery, backend connections) stays on the main runtime.

use std::io;
use std::num::NonZeroUsize;
use std::thread::JoinHandle;

use axum::ServiceExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::FrontDoor;

/// The threads serving HTTP.
pub struct HttpServer {
    threads: Vec<JoinHandle<()>>,
    ended: Vec<oneshot::Receiver<io::Result<()>>>,
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
    /// Starts `threads` threads serving `front_door` on `listener`. Once `close` is
    /// cancelled they stop accepting and finish the connections they hold.
    pub fn start(
        listener: TcpListener,
        front_door: FrontDoor,
        threads: NonZeroUsize,
        close: CancellationToken,
    ) -> io::Result<HttpServer> {
        let listener = listener.into_std()?;
        let cut_off = CancellationToken::new();
        let mut server = HttpServer { threads: Vec::new(), ended: Vec::new(), cut_off: cut_off.clone() };
        for index in 0..threads.get() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (listener, front_door) = (listener.try_clone()?, front_door.clone());
            let (close, cut_off) = (close.clone(), cut_off.clone());
            let (end, ended) = oneshot::channel();
            let thread = std::thread::Builder::new().name(format!("http-{index}")).spawn(move || {
                let served = runtime.block_on(serve(listener, front_door, close, cut_off));
                let _ = end.send(served);
            })?;
            server.threads.push(thread);
            server.ended.push(ended);
        }
        Ok(server)
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
    }
}

/// One thread's server: serves until `close`, then finishes its connections, or drops them
/// at `cut_off`.
async fn serve(
    listener: std::net::TcpListener,
    front_door: FrontDoor,
    close: CancellationToken,
    cut_off: CancellationToken,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let serving =
        axum::serve(listener, front_door.into_make_service()).with_graceful_shutdown(close.cancelled_owned());
    tokio::select! {
        served = serving => served,
        () = cut_off.cancelled() => Ok(()),
    }
}
