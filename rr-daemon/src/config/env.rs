//! Environment overrides of the file, for containers: one ConfigMap serves every replica,
//! and each pod gives its own router ID (its pod IP, from the downward API), and may give
//! its AS and cluster ID, as environment variables. An override replaces the file's value,
//! or supplies it when the file leaves the key out.
//!
//! | variable | replaces | value |
//! | --- | --- | --- |
//! | `RR_ROUTER_ID` | `[speaker] router_id` | IPv4 address, not `0.0.0.0` |
//! | `RR_ASN` | `[speaker] asn` | 1..=4294967295 (`asdot` `X.Y` too) |
//! | `RR_CLUSTER_ID` | `[speaker] cluster_id` | IPv4 address |
//!
//! An empty variable counts as unset, so a manifest can list every variable and leave
//! some empty.

use std::net::Ipv4Addr;

use super::error::{ConfigError, ErrorKind};

/// `RR_ROUTER_ID`.
pub(super) const ROUTER_ID: &str = "RR_ROUTER_ID";
/// `RR_ASN`.
pub(super) const ASN: &str = "RR_ASN";
/// `RR_CLUSTER_ID`.
pub(super) const CLUSTER_ID: &str = "RR_CLUSTER_ID";

/// Values that replace the file's (see the module's table); `None` where not overridden.
/// Kept as text until the file is loaded, so that a bad value is reported as an error of
/// its variable, with the file it overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `RR_ROUTER_ID`.
    pub router_id: Option<String>,
    /// `RR_ASN`.
    pub asn: Option<String>,
    /// `RR_CLUSTER_ID`.
    pub cluster_id: Option<String>,
}

/// The overrides, checked.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Checked {
    pub(super) router_id: Option<Ipv4Addr>,
    pub(super) asn: Option<u32>,
    pub(super) cluster_id: Option<Ipv4Addr>,
}

impl Overrides {
    /// The process environment's `RR_ROUTER_ID`, `RR_ASN` and `RR_CLUSTER_ID`.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The overrides that `lookup` gives (a variable's value by name; tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name| lookup(name).filter(|v: &String| !v.trim().is_empty());
        Self {
            router_id: get(ROUTER_ID),
            asn: get(ASN),
            cluster_id: get(CLUSTER_ID),
        }
    }

    /// Nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.names().is_empty()
    }

    /// The variables that are set, as `NAME=VALUE`, for the start-up log.
    pub fn names(&self) -> Vec<String> {
        [
            (ROUTER_ID, &self.router_id),
            (ASN, &self.asn),
            (CLUSTER_ID, &self.cluster_id),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| format!("{n}={}", v.trim())))
        .collect()
    }

    /// Parses and checks every value; `file` names the configuration in errors.
    pub(super) fn check(&self, file: &str) -> Result<Checked, ConfigError> {
        let error = |name: &str, message: String| ConfigError {
            kind: ErrorKind::Environment,
            file: file.to_owned(),
            line: 0,
            column: 0,
            key: name.to_owned(),
            message,
        };
        let ipv4 = |name: &str, v: &str| -> Result<Ipv4Addr, ConfigError> {
            v.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| error(name, format!("{v:?} is not an IPv4 address")))
        };
        let router_id = match &self.router_id {
            Some(v) => match ipv4(ROUTER_ID, v)? {
                a if a.is_unspecified() => {
                    return Err(error(
                        ROUTER_ID,
                        "must not be 0.0.0.0 (RFC 6286 §2.1)".to_owned(),
                    ));
                }
                a => Some(a),
            },
            None => None,
        };
        let asn = match &self.asn {
            Some(v) => match parse_asn(v.trim()) {
                Some(0) => return Err(error(ASN, "AS 0 is reserved (RFC 7607)".to_owned())),
                Some(n) => Some(n),
                None => {
                    return Err(error(
                        ASN,
                        format!("{v:?} is not an AS number (1..=4294967295, or X.Y)"),
                    ));
                }
            },
            None => None,
        };
        let cluster_id = match &self.cluster_id {
            Some(v) => Some(ipv4(CLUSTER_ID, v)?),
            None => None,
        };
        Ok(Checked {
            router_id,
            asn,
            cluster_id,
        })
    }
}

/// `65000`, or `asdot` (RFC 5396) `1.10` for 65546.
fn parse_asn(s: &str) -> Option<u32> {
    match s.split_once('.') {
        None => s.parse().ok(),
        Some((high, low)) => {
            let high: u16 = high.parse().ok()?;
            let low: u16 = low.parse().ok()?;
            Some(u32::from(high) << 16 | u32::from(low))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(&str, &str)]) -> Overrides {
        Overrides::from_lookup(|n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn test_empty_variables_are_unset() {
        let o = of(&[(ROUTER_ID, ""), (ASN, "  ")]);
        assert!(o.is_empty());
    }

    #[test]
    fn test_values_are_checked_and_named() {
        let c = of(&[
            (ROUTER_ID, " 10.1.2.3 "),
            (ASN, "1.10"),
            (CLUSTER_ID, "1.0.0.1"),
        ])
        .check("f.toml")
        .unwrap();
        assert_eq!(c.router_id, Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(c.asn, Some(65546));
        assert_eq!(c.cluster_id, Some(Ipv4Addr::new(1, 0, 0, 1)));
        for (pairs, msg) in [
            (
                [(ROUTER_ID, "fd00::1")],
                "f.toml: RR_ROUTER_ID: \"fd00::1\" is not an IPv4 address",
            ),
            (
                [(ROUTER_ID, "0.0.0.0")],
                "f.toml: RR_ROUTER_ID: must not be 0.0.0.0 (RFC 6286 §2.1)",
            ),
            ([(ASN, "0")], "f.toml: RR_ASN: AS 0 is reserved (RFC 7607)"),
            (
                [(ASN, "AS65000")],
                "f.toml: RR_ASN: \"AS65000\" is not an AS number (1..=4294967295, or X.Y)",
            ),
            (
                [(CLUSTER_ID, "x")],
                "f.toml: RR_CLUSTER_ID: \"x\" is not an IPv4 address",
            ),
        ] {
            let e = of(&pairs).check("f.toml").unwrap_err();
            assert_eq!(e.to_string(), msg);
            assert_eq!(e.kind, ErrorKind::Environment);
        }
    }
}
