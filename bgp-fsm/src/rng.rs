//! A tiny deterministic generator for timer jitter (RFC 4271 §10), seeded from the config
//! so that tests replay exactly. The daemon's BFD sessions jitter their timers with it
//! too.

/// xorshift64*: statistically fine for jitter, and no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Self(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A fraction in [0, 1), from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A factor in [0.75, 1.0], as RFC 4271 §10 asks for ConnectRetry and Keepalive.
    pub(crate) fn jitter(&mut self, d: std::time::Duration) -> std::time::Duration {
        d.mul_f64(0.75 + 0.25 * self.unit())
    }
}
