//! Deterministic spool records: a serde_json-encoded event of ~600 bytes.

use crate::stores::{Key, key};
use serde::Serialize;

/// Fixed clock origin, so runs are reproducible.
pub const T0_MS: u64 = 1_750_000_000_000;

#[derive(Serialize)]
struct SpoolEvent<'a> {
    id: u64,
    cache: &'a str,
    topic: String,
    token_id: String,
    text: String,
    publish_timestamp_ms: u64,
    received_at_ms: u64,
    first_attempt_ms: u64,
    next_attempt_ms: u64,
    attempts: u32,
    sequence_number: u64,
}

const WORDS: &[&str] = &[
    "order",
    "shipped",
    "payment",
    "received",
    "customer",
    "webhook",
    "retry",
    "invoice",
    "the",
    "a",
    "of",
    "warehouse",
    "delivered",
    "status",
    "updated",
    "priority",
    "region",
    "eu-west-1",
    "pending",
    "account",
    "notification",
    "sku",
    "quantity",
    "refund",
    "approved",
    "and",
    "to",
];

/// splitmix64: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One spooled event. Ids are global and increasing; one event arrives per
/// millisecond, 90% are due immediately, 10% are retries scheduled up to 1 h later.
pub fn record(rng: &mut Rng, id: u64) -> (Key, Vec<u8>) {
    let received = T0_MS + id;
    let retry = rng.below(10) == 0;
    let next_attempt = if retry {
        received + rng.below(3_600_000)
    } else {
        received
    };
    let mut text = String::with_capacity(420);
    while text.len() < 400 {
        text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    let event = SpoolEvent {
        id,
        cache: "relay-prod-cache",
        topic: format!("orders.region-{}", rng.below(16)),
        token_id: format!("tok_{:016x}", rng.next_u64()),
        text,
        publish_timestamp_ms: received - 3,
        received_at_ms: received,
        first_attempt_ms: received,
        next_attempt_ms: next_attempt,
        attempts: u32::from(retry),
        sequence_number: id * 7 + 1,
    };
    let value = serde_json::to_vec(&event).expect("serializing a plain struct cannot fail");
    (key(next_attempt, id), value)
}

/// `n` records with ids `first_id..first_id + n`.
pub fn records(seed: u64, first_id: u64, n: usize) -> Vec<(Key, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    (0..n as u64)
        .map(|i| record(&mut rng, first_id + i))
        .collect()
}
