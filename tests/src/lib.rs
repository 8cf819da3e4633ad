//! Shared helpers for the interop scenarios and the load generator.
