//! A tiny deterministic generator for timer jitter (RFC 4271 §10), seeded from the config
//! so that tests replay exactly.

/// xorshift64*: statistically fine for jitter, and no dependency.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Self(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A factor in [0.75, 1.0], as RFC 4271 §10 asks for ConnectRetry and Keepalive.
    pub(crate) fn jitter(&mut self, d: std::time::Duration) -> std::time::Duration {
        let frac = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.75 + 0.25 * frac)
    }
}
