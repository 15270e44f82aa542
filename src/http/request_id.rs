//! Request ids that cost no system call: a random prefix chosen at startup and a counter,
//! such as `9f2c41d0-1842`. tower-http's UUIDs read the kernel's random source on every
//! request, which showed in the relay's profile. Each HTTP thread has a maker, and so a
//! prefix and a counter, of its own, so that no two threads count on one cache line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// Makes `<prefix>-<n>` ids; the prefix tells this maker's ids from another's, in this
/// process or another replica.
#[derive(Clone)]
pub struct SequentialRequestId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl SequentialRequestId {
    /// A maker with a fresh random prefix.
    pub fn new() -> Self {
        SequentialRequestId { prefix: format!("{:08x}", rand::random::<u32>()).into(), next: Arc::default() }
    }
}

impl Default for SequentialRequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(self.prefix.len() + 21);
        id.push_str(&self.prefix);
        id.push('-');
        id.push_str(itoa::Buffer::new().format(n));
        HeaderValue::try_from(id).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_share_a_prefix_and_never_repeat() {
        let mut maker = SequentialRequestId::new();
        let request = Request::new(());
        let ids: Vec<String> = (0..3)
            .map(|_| maker.make_request_id(&request).unwrap().header_value().to_str().unwrap().to_owned())
            .collect();
        let prefix = ids[0].split('-').next().unwrap();
        assert_eq!(prefix.len(), 8);
        assert!(ids.iter().all(|id| id.starts_with(prefix)));
        assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 3);
    }
}
