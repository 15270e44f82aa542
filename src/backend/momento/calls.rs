//! How each Momento call is made: a per-call timeout, bounded retries with jittered
//! exponential backoff for retryable errors, and a readiness signal from the outcomes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use momento::{MomentoError, MomentoErrorCode};
use rand::Rng;

use crate::backend::BackendError;

/// Consecutive failed calls after which the backend reports itself not ready.
const FAILURES_BEFORE_NOT_READY: u32 = 5;
/// First retry waits up to this long; each further retry doubles it.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// No single wait is longer than this.
const BACKOFF_CAP: Duration = Duration::from_millis(400);

/// Whether recent calls succeed: not ready until one has, and not again after a run of
/// failures.
#[derive(Default)]
pub struct Readiness {
    ready: AtomicBool,
    consecutive_failures: AtomicU32,
}

impl Readiness {
    /// Whether the backend can serve calls.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records a call that reached Momento and was answered.
    pub fn succeeded(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if !self.ready.swap(true, Ordering::AcqRel) {
            tracing::info!("momento backend is ready");
        }
    }

    /// Records a call that could not be served.
    pub fn failed(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= FAILURES_BEFORE_NOT_READY && self.ready.swap(false, Ordering::AcqRel) {
            tracing::warn!(failures, "momento backend is not ready: calls keep failing");
        }
    }
}

/// Limits for one call.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    /// Time allowed for each attempt.
    pub timeout: Duration,
    /// Attempts after the first, for retryable errors only.
    pub max_retries: u32,
}

/// Runs `attempt` until it succeeds, fails for good, or has been retried `max_retries` times.
pub async fn call<T, F, Fut>(
    policy: CallPolicy,
    readiness: &Readiness,
    operation: &str,
    attempt: F,
) -> Result<T, BackendError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, MomentoError>>,
{
    let mut tries = 0;
    loop {
        let error = match tokio::time::timeout(policy.timeout, attempt()).await {
            Ok(Ok(value)) => {
                readiness.succeeded();
                return Ok(value);
            }
            Ok(Err(error)) => classify(&error),
            Err(_elapsed) => BackendError::Timeout,
        };
        if !error.is_retryable() {
            // Momento answered, so it is reachable: the fault is in the request or the key.
            readiness.succeeded();
            return Err(error);
        }
        readiness.failed();
        if tries >= policy.max_retries {
            return Err(error);
        }
        tracing::debug!(operation, attempt = tries + 1, %error, "momento call failed; retrying");
        tokio::time::sleep(backoff(tries)).await;
        tries += 1;
    }
}

/// Full jitter: a random wait up to `BACKOFF_BASE * 2^retry`, capped.
fn backoff(retry: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << retry.min(16)).min(BACKOFF_CAP);
    ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
}

/// Sorts a Momento error into retryable and final kinds.
pub fn classify(error: &MomentoError) -> BackendError {
    use MomentoErrorCode as Code;
    // A service's message could echo what it was sent; it is shown in /v1/status and logs.
    let message = crate::common::scrub(&error.message);
    match error.error_code {
        Code::TimeoutError => BackendError::Timeout,
        Code::ServerUnavailable
        | Code::LimitExceededError
        | Code::InternalServerError
        | Code::CancelledError
        | Code::ClientResourceExhausted
        | Code::UnknownServiceError
        | Code::UnknownError => BackendError::Unavailable(message),
        Code::AuthenticationError | Code::PermissionError => BackendError::Unauthorized(message),
        Code::CacheNotFoundError | Code::StoreNotFoundError | Code::ItemNotFoundError => {
            BackendError::NotFound(message)
        }
        Code::InvalidArgumentError
        | Code::BadRequestError
        | Code::FailedPreconditionError
        | Code::AlreadyExistsError
        | Code::TypeError
        | Code::Miss => BackendError::Invalid(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: MomentoErrorCode) -> MomentoError {
        MomentoError { message: "x".into(), error_code: code, inner_error: None }
    }

    const POLICY: CallPolicy = CallPolicy { timeout: Duration::from_millis(200), max_retries: 2 };

    #[tokio::test]
    async fn a_retryable_error_is_retried_until_the_call_succeeds() {
        let readiness = Readiness::default();
        let attempts = AtomicU32::new(0);
        let result =
            call(POLICY, &readiness, "test", || {
                let attempt = attempts.fetch_add(1, Ordering::Relaxed);
                async move {
                    if attempt < 2 { Err(error(MomentoErrorCode::ServerUnavailable)) } else { Ok(attempt) }
                }
            })
            .await;
        assert_eq!(result, Ok(2));
        assert!(readiness.is_ready());
    }

    #[tokio::test]
    async fn a_final_error_is_not_retried() {
        let attempts = AtomicU32::new(0);
        let result: Result<(), _> = call(POLICY, &Readiness::default(), "test", || {
            attempts.fetch_add(1, Ordering::Relaxed);
            async { Err(error(MomentoErrorCode::PermissionError)) }
        })
        .await;
        assert!(matches!(result, Err(BackendError::Unauthorized(_))));
        assert_eq!(attempts.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_call_that_hangs_times_out_and_retries_are_bounded() {
        let attempts = AtomicU32::new(0);
        let result: Result<(), _> = call(POLICY, &Readiness::default(), "test", || {
            attempts.fetch_add(1, Ordering::Relaxed);
            std::future::pending()
        })
        .await;
        assert_eq!(result, Err(BackendError::Timeout));
        assert_eq!(attempts.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn readiness_turns_off_after_a_run_of_failures_and_back_on_after_a_success() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready(), "not ready before any call");
        readiness.succeeded();
        (0..FAILURES_BEFORE_NOT_READY - 1).for_each(|_| readiness.failed());
        assert!(readiness.is_ready());
        readiness.failed();
        assert!(!readiness.is_ready());
        readiness.succeeded();
        assert!(readiness.is_ready());
    }

    #[test]
    fn backoff_grows_but_stays_under_the_cap() {
        for retry in 0..20 {
            assert!(backoff(retry) <= BACKOFF_CAP);
        }
    }
}
