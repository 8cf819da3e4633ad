//! Codec benchmarks (in progress).
fn main() {}
