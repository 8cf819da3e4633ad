//! Addresses: the sequence of source addresses, the network rule (loopback only, unless in
//! a network namespace a test created), router ids and next hops, and the file descriptor
//! budget.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;

use crate::cli::NextHopArg;

/// The `i`-th address after `base` (`base` itself for 0), carrying across octets; `None`
/// past the end of the address space.
pub(crate) fn nth(base: IpAddr, i: u64) -> Option<IpAddr> {
    match base {
        IpAddr::V4(a) => {
            let i = u32::try_from(i).ok()?;
            u32::from(a).checked_add(i).map(|v| IpAddr::V4(v.into()))
        }
        IpAddr::V6(a) => u128::from(a)
            .checked_add(u128::from(i))
            .map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    }
}

/// Whether this process runs in the initial network namespace: `/proc/self/ns/net` and
/// `/proc/1/ns/net` are the same namespace. Anything unreadable counts as initial, so
/// that the rule errs on the side of loopback only.
pub(crate) fn in_initial_netns() -> bool {
    let ns = |p: &str| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    match (ns("/proc/self/ns/net"), ns("/proc/1/ns/net")) {
        (Some(own), Some(init)) => own == init,
        _ => true,
    }
}

/// The network rule: in the initial namespace, only loopback addresses.
pub(crate) fn check_allowed(what: &str, addr: IpAddr, initial_netns: bool) -> Result<(), String> {
    if addr.is_loopback() || !initial_netns {
        return Ok(());
    }
    Err(format!(
        "{what} {addr} is not a loopback address (127.0.0.0/8, ::1); other addresses are \
         allowed only inside a network namespace other than the initial one"
    ))
}

/// The source addresses of `count` sessions from `base`, each checked against the rule and
/// in the target's family.
pub(crate) fn sources(
    base: IpAddr,
    count: u64,
    target: SocketAddr,
    initial_netns: bool,
) -> Result<Vec<IpAddr>, String> {
    check_allowed("--target", target.ip(), initial_netns)?;
    if base.is_ipv4() != target.is_ipv4() {
        return Err(format!(
            "--source {base} and --target {target} are of different families"
        ));
    }
    (0..count)
        .map(|i| {
            let a = nth(base, i).ok_or_else(|| {
                format!("--source {base}: session {i} runs past the end of the address space")
            })?;
            if a.is_unspecified() {
                return Err(format!("source address {a} is unspecified"));
            }
            check_allowed("source address", a, initial_netns)?;
            Ok(a)
        })
        .collect()
}

/// The BGP identifier of a session from `source`: the address itself for IPv4, the low
/// 32 bits for IPv6 (`::1` gives 0.0.0.1).
pub(crate) fn router_id(source: IpAddr) -> Result<Ipv4Addr, String> {
    let id = match source {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => Ipv4Addr::from((u128::from(a) & 0xffff_ffff) as u32),
    };
    if id.is_unspecified() {
        return Err(format!("{source} gives router id 0.0.0.0"));
    }
    Ok(id)
}

/// The NEXT_HOP session `i` announces.
pub(crate) fn next_hop(arg: NextHopArg, source: IpAddr, i: u64) -> Result<Ipv4Addr, String> {
    match (arg, source) {
        (NextHopArg::SelfAddr, IpAddr::V4(a)) => Ok(a),
        (NextHopArg::SelfAddr, IpAddr::V6(_)) => {
            Err("an IPv6 session needs an IPv4 --next-hop".into())
        }
        (NextHopArg::Base(b), _) => u32::try_from(i)
            .ok()
            .and_then(|i| u32::from(b).checked_add(i))
            .map(Ipv4Addr::from)
            .ok_or_else(|| format!("--next-hop {b} plus {i} overflows")),
    }
}

/// The soft limit of open files, from `/proc/self/limits` (None if unreadable).
pub(crate) fn open_files_limit() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_nth_carries_across_octets() {
        let b: IpAddr = "127.0.1.1".parse().unwrap();
        assert_eq!(nth(b, 0), Some(b));
        assert_eq!(nth(b, 254), Some("127.0.1.255".parse().unwrap()));
        assert_eq!(nth(b, 255), Some("127.0.2.0".parse().unwrap()));
        assert_eq!(nth(b, 2000), Some("127.0.8.209".parse().unwrap()));
        assert_eq!(nth("255.255.255.255".parse().unwrap(), 1), None);
        assert_eq!(nth("::1".parse().unwrap(), 1), Some("::2".parse().unwrap()));
    }

    #[test]
    fn test_rule_refuses_non_loopback_in_initial_netns() {
        let t: SocketAddr = "127.0.0.1:179".parse().unwrap();
        assert!(sources("127.0.1.1".parse().unwrap(), 3, t, true).is_ok());
        // The sequence leaves 127/8.
        assert!(sources("127.255.255.254".parse().unwrap(), 3, t, true).is_err());
        let far: SocketAddr = "192.0.2.1:179".parse().unwrap();
        assert!(sources("127.0.1.1".parse().unwrap(), 1, far, true).is_err());
        assert!(sources("192.0.2.2".parse().unwrap(), 1, far, false).is_ok());
        let v6: SocketAddr = "[::1]:179".parse().unwrap();
        assert!(sources("::1".parse().unwrap(), 1, v6, true).is_ok());
        assert!(sources("::1".parse().unwrap(), 2, v6, true).is_err());
    }

    #[test]
    fn test_next_hop_and_router_id() {
        let s: IpAddr = "127.0.1.3".parse().unwrap();
        assert_eq!(
            next_hop(NextHopArg::SelfAddr, s, 2).unwrap(),
            Ipv4Addr::new(127, 0, 1, 3)
        );
        let base = NextHopArg::Base(Ipv4Addr::new(192, 0, 2, 250));
        assert_eq!(next_hop(base, s, 10).unwrap(), Ipv4Addr::new(192, 0, 3, 4));
        assert_eq!(
            router_id("::1".parse().unwrap()).unwrap(),
            Ipv4Addr::new(0, 0, 0, 1)
        );
        assert!(router_id("::".parse().unwrap()).is_err());
    }
}
