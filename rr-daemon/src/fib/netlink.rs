//! The rtnetlink shell: dumps our routes (our table, our protocol number) and carries out
//! the reconciler's operations, IPv4 and IPv6, gateway, multipath and blackhole, each
//! with our protocol number and metric.
//!
//! A batch is sent as many requests in flight on one netlink socket (up to
//! [`IN_FLIGHT`] at a time): the kernel answers them in order, and a failure of one says
//! nothing about the others. Every delete of a batch is answered before any add goes out,
//! so a changed route is "delete ours, then add" and never a REPLACE that could overwrite
//! another protocol's route.

use std::net::IpAddr;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteScope, RouteType,
    RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder, RouteNextHopBuilder};

use super::reconcile::{Batch, KernelRoute, Op, OpError, Target};

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
}

impl Kernel {
    /// Opens a netlink socket (its connection runs as a task on the current tokio runtime)
    /// for routes of `protocol` in `table`.
    pub fn open(table: u32, protocol: u8) -> Result<Self, KernelError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(KernelError::Open)?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            table,
            protocol,
        })
    }

    /// Every route of our protocol number in our table, both families. Routes of kinds
    /// we do not program (unreachable, ...) and next hops we cannot express are left out:
    /// they are never touched.
    pub async fn dump(&self) -> Result<Vec<KernelRoute>, KernelError> {
        let mut out = Vec::new();
        let requests = [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ];
        for msg in requests {
            let mut routes = self.handle.route().get(msg).execute();
            while let Some(m) = routes.try_next().await.map_err(|e| KernelError::Dump {
                table: self.table,
                message: e.to_string(),
            })? {
                if let Some(r) = self.parse(&m) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    fn parse(&self, m: &RouteMessage) -> Option<KernelRoute> {
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
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = address(d),
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Gateway(_) | RouteAttribute::Via(_) => gws.extend(gateway(a)),
                RouteAttribute::MultiPath(hops) => {
                    gws.extend(
                        hops.iter()
                            .flat_map(|h| h.attributes.iter().filter_map(gateway)),
                    );
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
                Target::Via(gws)
            }
            _ => return None,
        };
        Some(KernelRoute {
            prefix,
            target,
            metric,
        })
    }

    fn message(&self, r: &KernelRoute, delete: bool) -> Result<RouteMessage, OpError> {
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
            Target::Via(gws) => match gws.as_slice() {
                [one] => b.gateway(*one).map_err(invalid)?,
                many => {
                    let family = if r.prefix.addr().is_ipv4() {
                        AddressFamily::Inet
                    } else {
                        AddressFamily::Inet6
                    };
                    let hops = many
                        .iter()
                        .map(|g| {
                            RouteNextHopBuilder::new(family)
                                .via(*g)
                                .map(RouteNextHopBuilder::build)
                        })
                        .collect::<Result<Vec<RouteNextHop>, _>>()
                        .map_err(invalid)?;
                    b.multipath(hops)
                }
            },
        };
        Ok(b.build())
    }

    /// Carries out one operation.
    pub async fn apply(&self, op: &Op) -> Result<(), OpError> {
        let result = match op {
            Op::Add(r) => {
                let m = self.message(r, false)?;
                self.handle.route().add(m).execute().await
            }
            Op::Delete(r) => {
                let m = self.message(r, true)?;
                self.handle.route().del(m).execute().await
            }
        };
        result.map_err(|e| match &e {
            rtnetlink::Error::NetlinkError(m)
                if matches!(op, Op::Delete(_))
                    && matches!(-m.raw_code(), libc::ESRCH | libc::ENOENT) =>
            {
                OpError::NotFound
            }
            rtnetlink::Error::NetlinkError(m) => OpError::Failed(m.to_io().to_string()),
            other => OpError::Failed(other.to_string()),
        })
    }

    /// Carries out a batch: the deletes, then the adds, [`IN_FLIGHT`] requests at a time;
    /// returns each operation with its outcome, deletes first.
    pub async fn apply_batch(&self, batch: &Batch) -> Vec<(Op, Result<(), OpError>)> {
        let mut out = Vec::with_capacity(batch.len());
        for ops in [
            batch
                .deletes
                .iter()
                .cloned()
                .map(Op::Delete)
                .collect::<Vec<_>>(),
            batch.adds.iter().cloned().map(Op::Add).collect(),
        ] {
            let results: Vec<_> = stream::iter(ops)
                .map(|op| async move {
                    let r = self.apply(&op).await;
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

fn gateway(a: &RouteAttribute) -> Option<IpAddr> {
    match a {
        RouteAttribute::Gateway(g) => address(g),
        RouteAttribute::Via(RouteVia::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Via(RouteVia::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
