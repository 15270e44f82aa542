//! The per-identity limit on vending: `rate_limit = "10/min"` lets each `token_id` get ten
//! tokens at once, then one every six seconds. Past it, 429 with `Retry-After`.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `"N/s"`, `"N/min"` or `"N/h"`: N tokens per identity per period, all usable at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens per period.
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a rate; write it as \"10/min\" (per s, min or h)");
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(RateLimit { count, per })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// One bucket per identity.
pub struct VendLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl VendLimiter {
    /// A limiter for `rate`.
    pub fn new(rate: RateLimit) -> Self {
        let quota = Quota::with_period(rate.per / rate.count.get())
            .unwrap_or_else(|| Quota::per_second(rate.count))
            .allow_burst(rate.count);
        VendLimiter { limiter: RateLimiter::keyed(quota) }
    }

    /// `Ok` when `identity` may have another token now; otherwise how long until it may.
    pub fn check(&self, identity: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&identity.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets identities whose buckets are full again, so that memory follows the number of
    /// recent callers rather than all callers ever.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_the_units_users_write() {
        let rate: RateLimit = "10/min".parse().unwrap();
        assert_eq!((rate.count.get(), rate.per), (10, Duration::from_secs(60)));
        assert_eq!(rate.to_string(), "10/min");
        for bad in ["10", "0/min", "x/min", "10/day", "-1/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn each_identity_gets_its_own_burst_then_waits() {
        let limiter = VendLimiter::new("2/min".parse().unwrap());
        assert!(limiter.check("a").is_ok() && limiter.check("a").is_ok());
        let wait = limiter.check("a").unwrap_err();
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(limiter.check("b").is_ok(), "another identity is not held back");
    }
}
