//! Kernel routing tables: compared field by field ([`KernelRoute`], [`kernel_routes`],
//! [`route_diff`]: the scenarios that put BIRD and ours on the same node), or reduced to
//! destination, type, gateways, protocol and metric ([`KRoute`], [`kroutes`]: the FIB's
//! own scenarios).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use crate::netns::Netns;

/// One kernel route, every field `ip -j route` prints, as text, with the defaults made
/// explicit (`type` unicast, `metric` 0, `protocol` 12 spelled `bird`).
pub type KernelRoute = BTreeMap<String, String>;

/// One route of `ip -j route`'s JSON.
pub fn route_of(v: &Value) -> KernelRoute {
    let mut r = KernelRoute::new();
    if let Some(o) = v.as_object() {
        for (k, v) in o {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            r.insert(k.clone(), s);
        }
    }
    r.entry("type".into()).or_insert_with(|| "unicast".into());
    r.entry("metric".into()).or_insert_with(|| "0".into());
    if r.get("protocol").map(String::as_str) == Some("12") {
        r.insert("protocol".into(), "bird".into());
    }
    r
}

/// `ip -j route show table main` of `ns` (`-6` with `ipv6`), sorted.
pub fn kernel_routes(ns: &Netns, ipv6: bool) -> Result<Vec<KernelRoute>, String> {
    let mut args = vec!["-j"];
    if ipv6 {
        args.push("-6");
    }
    args.extend(["route", "show", "table", "main"]);
    let out = ns.ip(&args)?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let mut routes: Vec<KernelRoute> = v
        .as_array()
        .ok_or_else(|| format!("not an array: {out}"))?
        .iter()
        .map(route_of)
        .collect();
    routes.sort();
    Ok(routes)
}

/// A kernel route reduced to what the FIB's checks compare.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KRoute {
    /// The destination, a host route with its length (`ip -j` prints it without).
    pub dst: String,
    /// `unicast`, `blackhole`, ...
    pub kind: String,
    /// The gateways, sorted; several for a multipath route.
    pub gateways: Vec<String>,
    /// The protocol; 12 reads `bird` whether or not `/etc/iproute2/rt_protos` names it.
    pub protocol: String,
    /// The metric (0 when `ip` prints none).
    pub metric: u64,
}

impl KRoute {
    /// A route of protocol 12.
    pub fn new(dst: &str, kind: &str, gateways: &[&str], metric: u64) -> Self {
        let mut gateways: Vec<String> = gateways.iter().map(|g| (*g).to_owned()).collect();
        gateways.sort();
        Self {
            dst: dst.into(),
            kind: kind.into(),
            gateways,
            protocol: "bird".into(),
            metric,
        }
    }

    /// A unicast route of protocol 12 via `gateways`.
    pub fn via(dst: &str, gateways: &[&str], metric: u64) -> Self {
        Self::new(dst, "unicast", gateways, metric)
    }

    /// A blackhole of protocol 12.
    pub fn blackhole(dst: &str, metric: u64) -> Self {
        Self::new(dst, "blackhole", &[], metric)
    }

    /// Of protocol 12 (BIRD's number, and ours).
    pub fn ours(&self) -> bool {
        self.protocol == "bird"
    }

    /// Every route of `ip -j route`'s output, sorted.
    pub fn parse_all(out: &str) -> Result<Vec<Self>, String> {
        let v: Value = serde_json::from_str(out).map_err(|e| format!("{e}: {out}"))?;
        let mut routes: Vec<Self> = v
            .as_array()
            .ok_or_else(|| format!("not an array: {out}"))?
            .iter()
            .map(Self::of)
            .collect();
        routes.sort();
        Ok(routes)
    }

    fn of(r: &Value) -> Self {
        let mut gateways: Vec<String> = r["gateway"]
            .as_str()
            .map(str::to_owned)
            .into_iter()
            .collect();
        if let Some(hops) = r["nexthops"].as_array() {
            gateways.extend(
                hops.iter()
                    .filter_map(|h| h["gateway"].as_str().map(str::to_owned)),
            );
        }
        gateways.sort();
        let mut dst = r["dst"].as_str().unwrap_or_default().to_owned();
        if dst != "default" && !dst.contains('/') {
            dst.push_str(if dst.contains(':') { "/128" } else { "/32" });
        }
        Self {
            dst,
            kind: r["type"].as_str().unwrap_or("unicast").to_owned(),
            gateways,
            protocol: match &r["protocol"] {
                Value::String(s) if s == "12" => "bird".to_owned(),
                Value::String(s) => s.clone(),
                Value::Number(n) if n.as_u64() == Some(12) => "bird".to_owned(),
                Value::Number(n) => n.to_string(),
                _ => "boot".to_owned(),
            },
            metric: r["metric"].as_u64().unwrap_or(0),
        }
    }
}

/// Every route of `family` (`-4`, `-6`) in `table` of `ns`, as [`KRoute`]s; panics when
/// `ip` fails.
pub fn kroutes(ns: &Netns, family: &str, table: &str) -> Vec<KRoute> {
    let out = ns
        .ip(&[family, "-j", "route", "show", "table", table])
        .unwrap_or_else(|e| panic!("ip route: {e}"));
    KRoute::parse_all(&out).unwrap_or_else(|e| panic!("{e}"))
}

/// A field of a route, `""` when absent.
pub fn field<'a>(r: &'a KernelRoute, k: &str) -> &'a str {
    r.get(k).map_or("", String::as_str)
}

/// A route on one line, `key=value ...`.
pub fn show(r: &KernelRoute) -> String {
    r.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every difference between two route lists, keyed by (dst, type, protocol), then field
/// by field; empty when they are the same.
pub fn route_diff(
    want_label: &str,
    want: &[KernelRoute],
    got_label: &str,
    got: &[KernelRoute],
) -> String {
    let key = |r: &KernelRoute| {
        (
            field(r, "dst").to_owned(),
            field(r, "type").to_owned(),
            field(r, "protocol").to_owned(),
        )
    };
    let index = |v: &[KernelRoute]| -> BTreeMap<_, Vec<KernelRoute>> {
        let mut m: BTreeMap<_, Vec<KernelRoute>> = BTreeMap::new();
        for r in v {
            m.entry(key(r)).or_default().push(r.clone());
        }
        m
    };
    let (w, g) = (index(want), index(got));
    let mut out = String::new();
    let keys: BTreeSet<_> = w.keys().chain(g.keys()).cloned().collect();
    for k in keys {
        let (a, b) = (w.get(&k), g.get(&k));
        match (a, b) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) if a.len() == 1 && b.len() == 1 => {
                let (a, b) = (&a[0], &b[0]);
                let fields: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for f in fields {
                    let (x, y) = (field(a, f), field(b, f));
                    if x != y {
                        let _ = writeln!(
                            out,
                            "  {} {}: {f}: {want_label} {x:?}, {got_label} {y:?}",
                            k.0, k.1
                        );
                    }
                }
            }
            _ => {
                for r in a.into_iter().flatten() {
                    if !b.is_some_and(|b| b.contains(r)) {
                        let _ = writeln!(out, "  only {want_label}: {}", show(r));
                    }
                }
                for r in b.into_iter().flatten() {
                    if !a.is_some_and(|a| a.contains(r)) {
                        let _ = writeln!(out, "  only {got_label}: {}", show(r));
                    }
                }
            }
        }
    }
    out
}
