//! The file's tables and their keys, read from the parser's own structures: what the
//! documentation must list (rr-daemon/tests/config_docs.rs compares it with CONFIG.md),
//! so that neither can drift from the other.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::raw;

/// Every table of the file by its TOML path (`speaker`, `peer`, `fib.ip_pool`,
/// `policy.rule`, ...) with the keys it accepts, and last the top level (`""`) with its
/// table names; in the order of the file's structures.
pub fn tables() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("speaker", fields::<raw::RawSpeaker>()),
        ("api", fields::<raw::RawApi>()),
        ("control", fields::<raw::RawControl>()),
        ("fib", fields::<raw::RawFib>()),
        ("fib.ip_pool", fields::<raw::RawIpPool>()),
        ("fib.static_route", fields::<raw::RawStaticRoute>()),
        ("learn", fields::<raw::RawLearn>()),
        ("mesh", fields::<raw::RawMesh>()),
        ("peer_group", fields::<raw::RawGroup>()),
        ("peer", fields::<raw::RawPeer>()),
        ("dynamic_neighbors", fields::<raw::RawDynamic>()),
        ("policy", fields::<raw::RawPolicy>()),
        ("policy.rule", fields::<raw::RawRule>()),
        ("route", fields::<raw::RawRoute>()),
        ("originate", fields::<raw::RawOriginate>()),
        ("bmp", fields::<raw::RawBmp>()),
        ("", fields::<raw::RawFile>()),
    ]
}

/// The field names serde's derive passes to `deserialize_struct`: every key of `T`.
fn fields<T: Deserialize<'static>>() -> &'static [&'static str] {
    let mut seen = None;
    let _ = T::deserialize(Probe(&mut seen));
    seen.unwrap_or(&[])
}

/// A deserializer that only records the struct's field names, then stops.
struct Probe<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Self
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn test_every_table_has_keys() {
        for (t, keys) in super::tables() {
            assert!(!keys.is_empty(), "{t:?}");
        }
        let peer = super::tables()
            .into_iter()
            .find(|(t, _)| *t == "peer")
            .unwrap()
            .1;
        assert!(peer.contains(&"address") && peer.contains(&"password_file"));
    }
}
