//! The rtnetlink shell: dumps our routes (our table, our protocol number) and carries out
//! the reconciler's operations, IPv4 and IPv6, gateway, multipath and blackhole, each
//! with our protocol number and metric.
//!
//! A batch is sent as many requests in flight on one netlink socket (up to
//! [`IN_FLIGHT`] at a time): the kernel answers them in order, and a failure of one says
//! nothing about the others. Its phases ([`Batch`]) go one after the other: deletes, then
//! adds and in-place replaces of routes of ours, then the routes of ours that their
//! prefix's new route at another metric retires. A REPLACE only ever names a slot (table,
//! prefix, metric) that a route of ours holds: it never overwrites another protocol's.
//!
//! Tunnel hops go out `dev TUNNEL onlink`, the device's index looked up by name for every
//! batch that needs it (a missing device fails those adds, which are retried: the device
//! may come later, or come back with another index). Next hops are resolved with
//! `RTM_GETROUTE` for the address (what `ip route get` sends).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteScope, RouteType,
    RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder, RouteNextHopBuilder};

use super::reconcile::{Batch, Hop, KernelRoute, Op, OpError, Resolution, Target};

/// Requests of one batch in flight at once.
pub const IN_FLIGHT: usize = 128;

/// Why the kernel could not be reached at all (not one route's failure: see [`OpError`]).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Open(#[source] std::io::Error),
    /// The dump of the routing table failed.
    #[error("cannot dump table {table}: {message}")]
    Dump {
        /// The table.
        table: u32,
        /// What netlink said.
        message: String,
    },
}

/// Our routes in one kernel table.
#[derive(Clone, Debug)]
pub struct Kernel {
    handle: Handle,
    table: u32,
    protocol: u8,
    tunnel_device: String,
}

impl Kernel {
    /// Opens a netlink socket (its connection runs as a task on the current tokio runtime)
    /// for routes of `protocol` in `table`, tunnel hops through `tunnel_device`.
    pub fn open(table: u32, protocol: u8, tunnel_device: String) -> Result<Self, KernelError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(KernelError::Open)?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            table,
            protocol,
            tunnel_device,
        })
    }

    /// The table it programs.
    pub fn table(&self) -> u32 {
        self.table
    }

    /// The tunnel device's index, `None` when there is no such device.
    pub async fn tunnel_index(&self) -> Option<u32> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(self.tunnel_device.clone())
            .execute();
        let link: LinkMessage = links.try_next().await.ok()??;
        Some(link.header.index)
    }

    /// How the kernel reaches `next_hop`: the answer to `ip route get NEXT_HOP` (main
    /// table and policy rules, as forwarding sees them).
    pub async fn resolve(&self, next_hop: IpAddr) -> Resolution {
        let len = if next_hop.is_ipv4() { 32 } else { 128 };
        let Ok(b) = RouteMessageBuilder::<IpAddr>::new().destination_prefix(next_hop, len) else {
            return Resolution::Unreachable;
        };
        let mut answers = self.handle.route().get(b.build()).execute();
        let Ok(Some(m)) = answers.try_next().await else {
            return Resolution::Unreachable;
        };
        if m.header.kind != RouteType::Unicast {
            return Resolution::Unreachable;
        }
        if let IpAddr::V6(v6) = next_hop
            && v6.is_unicast_link_local()
        {
            // Reachable only through an interface: the one the kernel picks for it (the
            // link of the session it came over, when fe80::/64 is on one link only).
            return m
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(Resolution::Link(*i)),
                    _ => None,
                })
                .unwrap_or(Resolution::Unreachable);
        }
        match m.attributes.iter().find_map(gateway) {
            Some(g) if g != next_hop => Resolution::Via(g),
            _ => Resolution::OnLink,
        }
    }

    /// [`Kernel::resolve`] for each, [`IN_FLIGHT`] at a time.
    pub async fn resolve_all(&self, next_hops: &[IpAddr]) -> Vec<(IpAddr, Resolution)> {
        stream::iter(next_hops.iter().copied())
            .map(|nh| async move { (nh, self.resolve(nh).await) })
            .buffered(IN_FLIGHT)
            .collect()
            .await
    }

    /// Every route of our protocol number in our table, both families. Routes of kinds
    /// we do not program (unreachable, ...) and next hops we cannot express are left out:
    /// they are never touched.
    pub async fn dump(&self) -> Result<Vec<KernelRoute>, KernelError> {
        let mut out = Vec::new();
        let tunnel = self.tunnel_index().await;
        let requests = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for msg in requests {
            let mut routes = self.handle.route().get(msg).execute();
            while let Some(m) = routes.try_next().await.map_err(|e| KernelError::Dump {
                table: self.table,
                message: e.to_string(),
            })? {
                if let Some(r) = self.parse(&m, tunnel) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    fn parse(&self, m: &RouteMessage, tunnel: Option<u32>) -> Option<KernelRoute> {
        let table = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(m.header.table));
        if table != self.table || u8::from(m.header.protocol) != self.protocol {
            return None;
        }
        let mut dst = None;
        let mut gws = Vec::new();
        let mut metric = 0;
        let through = |oif: u32| tunnel.is_some_and(|t| t == oif);
        let oif = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
            .unwrap_or(0);
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = address(d),
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Gateway(_) | RouteAttribute::Via(_) => {
                    gws.extend(gateway(a).map(|g| Hop {
                        gateway: g,
                        tunnel: through(oif),
                        dev: link_local(g).then_some(oif),
                    }));
                }
                RouteAttribute::MultiPath(hops) => {
                    gws.extend(hops.iter().flat_map(|h| {
                        h.attributes.iter().filter_map(gateway).map(|g| Hop {
                            gateway: g,
                            tunnel: through(h.interface_index),
                            dev: link_local(g).then_some(h.interface_index),
                        })
                    }));
                }
                _ => {}
            }
        }
        let dst = match (dst, m.header.address_family) {
            (Some(d), _) => d,
            (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
            (None, AddressFamily::Inet6) => IpAddr::from([0u8; 16]),
            _ => return None,
        };
        let prefix = IpNet::new(dst, m.header.destination_prefix_length).ok()?;
        let target = match m.header.kind {
            RouteType::BlackHole => Target::Blackhole,
            RouteType::Unicast if !gws.is_empty() => {
                gws.sort_unstable();
                gws.dedup();
                Target::Via(gws.into())
            }
            _ => return None,
        };
        Some(KernelRoute {
            prefix,
            target,
            metric,
        })
    }

    fn message(
        &self,
        r: &KernelRoute,
        delete: bool,
        tunnel: Option<u32>,
    ) -> Result<RouteMessage, OpError> {
        let tunnel_index = || {
            tunnel.ok_or_else(|| {
                OpError::Failed(format!("no device {} (IP-in-IP)", self.tunnel_device))
            })
        };
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(r.prefix.addr(), r.prefix.prefix_len())
            .map_err(invalid)?
            .table_id(self.table)
            .protocol(RouteProtocol::from(self.protocol))
            .priority(r.metric);
        if delete {
            // Any scope: the route is named by prefix, table, protocol, metric and type.
            b = b.scope(RouteScope::NoWhere);
        }
        b = match &r.target {
            Target::Blackhole => b.kind(RouteType::BlackHole),
            Target::Via(_) if delete => b.kind(RouteType::Unicast),
            Target::Via(gws) => match &gws[..] {
                [one] if one.tunnel => b
                    .gateway(one.gateway)
                    .map_err(invalid)?
                    .output_interface(tunnel_index()?)
                    .onlink(),
                [one] => match one.dev {
                    Some(dev) => b
                        .gateway(one.gateway)
                        .map_err(invalid)?
                        .output_interface(dev),
                    None => b.gateway(one.gateway).map_err(invalid)?,
                },
                many => {
                    let family = if r.prefix.addr().is_ipv4() {
                        AddressFamily::Inet
                    } else {
                        AddressFamily::Inet6
                    };
                    let mut hops = Vec::with_capacity(many.len());
                    for h in many {
                        let mut nh = RouteNextHopBuilder::new(family)
                            .via(h.gateway)
                            .map_err(invalid)?;
                        if h.tunnel {
                            nh = nh.interface(tunnel_index()?).onlink();
                        } else if let Some(dev) = h.dev {
                            nh = nh.interface(dev);
                        }
                        hops.push(nh.build());
                    }
                    let hops: Vec<RouteNextHop> = hops;
                    b.multipath(hops)
                }
            },
        };
        Ok(b.build())
    }

    /// Carries out one operation; `tunnel` is the tunnel device's index, if it exists.
    pub async fn apply(&self, op: &Op, tunnel: Option<u32>) -> Result<(), OpError> {
        let result = match op {
            Op::Add(r) => {
                let m = self.message(r, false, tunnel)?;
                self.handle.route().add(m).execute().await
            }
            Op::Replace(r) => {
                let m = self.message(r, false, tunnel)?;
                self.handle.route().add(m).replace().execute().await
            }
            Op::Delete(r) | Op::Retire(r) => {
                let m = self.message(r, true, tunnel)?;
                self.handle.route().del(m).execute().await
            }
        };
        result.map_err(|e| match &e {
            rtnetlink::Error::NetlinkError(m)
                if matches!(op, Op::Delete(_) | Op::Retire(_))
                    && matches!(-m.raw_code(), libc::ESRCH | libc::ENOENT) =>
            {
                OpError::NotFound
            }
            rtnetlink::Error::NetlinkError(m) => OpError::Failed(m.to_io().to_string()),
            other => OpError::Failed(other.to_string()),
        })
    }

    /// Carries out a batch phase by phase ([`Batch`]), [`IN_FLIGHT`] requests at a time;
    /// returns each operation with its outcome, in the order of [`Batch::ops`].
    pub async fn apply_batch(&self, batch: &Batch) -> Vec<(Op, Result<(), OpError>)> {
        let mut out = Vec::with_capacity(batch.len());
        let tunnels = batch
            .adds
            .iter()
            .chain(&batch.replaces)
            .any(|r| matches!(&r.target, Target::Via(hops) if hops.iter().any(|h| h.tunnel)));
        let tunnel = if tunnels {
            self.tunnel_index().await
        } else {
            None
        };
        for ops in [
            batch
                .deletes
                .iter()
                .cloned()
                .map(Op::Delete)
                .collect::<Vec<_>>(),
            batch
                .adds
                .iter()
                .cloned()
                .map(Op::Add)
                .chain(batch.replaces.iter().cloned().map(Op::Replace))
                .collect(),
            batch.retires.iter().cloned().map(Op::Retire).collect(),
        ] {
            if ops.is_empty() {
                continue;
            }
            let results: Vec<_> = stream::iter(ops)
                .map(|op| async move {
                    let r = self.apply(&op, tunnel).await;
                    (op, r)
                })
                .buffered(IN_FLIGHT)
                .collect()
                .await;
            out.extend(results);
        }
        out
    }
}

/// A message the builder refused (a family mismatch): this route cannot be expressed.
fn invalid(e: impl std::fmt::Display) -> OpError {
    OpError::Failed(e.to_string())
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// An IPv6 link-local address: a gateway the kernel keeps with its interface.
fn link_local(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local())
}

fn gateway(a: &RouteAttribute) -> Option<IpAddr> {
    match a {
        RouteAttribute::Gateway(g) => address(g),
        RouteAttribute::Via(RouteVia::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Via(RouteVia::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
