//! The rtnetlink shell of [`super::learn`]: one netlink socket subscribed to link,
//! address and route notifications of both families, a full dump at the start and after
//! a receive buffer overrun, a dump of addresses and routes every `[learn] resync`, and the
//! [`Learner`]'s diff handed to [`Speaker::originate`] / [`Speaker::withdraw`].
//!
//! ```text
//!  kernel ──RTM_{NEW,DEL}{LINK,ADDR,ROUTE}──▶ messages ─┐
//!  kernel ──dump (start, every resync, overrun)─────────┼─▶ task (run): Learner (pure)
//!  [[route]]/[[originate]], [learn] on reload (watch) ──┘        │ poll_diff()
//!                                                                ▼
//!                                               Speaker::originate / withdraw
//! ```
//!
//! No periodic rescan of interfaces: a link that is created and deleted costs two
//! messages and a map entry for its life, which is what keeps tens of thousands of
//! `cali*` veths coming and going cheap (BIRD's 2-second scans burned a core).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{Handle, RouteMessageBuilder};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::learn::{
    Learner, RouteKind, Rules, Scope, SeenAddr, SeenLink, SeenRoute, Snapshot, Verdict,
};
use super::netlink::KernelError;
use crate::speaker::Speaker;

/// `RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR |
/// RTMGRP_IPV6_ROUTE`: the legacy group bitmask of `bind`.
const GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400;
/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`); an overrun is
/// repaired by a dump.
const RCVBUF: usize = 8 << 20;
/// Messages applied before the diff goes to the speaker, at most.
const BATCH_MAX: usize = 4096;
/// Changes gather this long before they go to the speaker.
const BATCH_DELAY: Duration = Duration::from_millis(5);

/// What the learn task follows, from `[learn]` and `[fib]`; a reload sends a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// What is learned.
    pub rules: Rules,
    /// Period of the full dump (`[learn] resync`).
    pub resync: Duration,
}

impl Settings {
    /// The settings of a configuration.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            rules: Rules::of(config),
            resync: config.learn.resync,
        }
    }
}

/// What differs between two [`Settings`], one phrase each (`pools [..] -> [..]`), for the
/// log of a reload.
pub fn changes(old: &Settings, new: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} {a} -> {b}"));
        }
    };
    let (o, n) = (&old.rules, &new.rules);
    field("table", o.table.to_string(), n.table.to_string());
    field("protocol", o.protocol.to_string(), n.protocol.to_string());
    field("pools", list(&o.pools), list(&n.pools));
    field(
        "elevated_below",
        o.elevated_below.to_string(),
        n.elevated_below.to_string(),
    );
    field("direct", o.direct.to_string(), n.direct.to_string());
    field(
        "direct_exclude",
        list(&o.direct_exclude),
        list(&n.direct_exclude),
    );
    field(
        "local_pref_from_metric",
        o.local_pref_from_metric.to_string(),
        n.local_pref_from_metric.to_string(),
    );
    field(
        "resync",
        format!("{} s", old.resync.as_secs()),
        format!("{} s", new.resync.as_secs()),
    );
    out
}

/// The learn task: watches the kernel and originates or withdraws what `settings` say
/// (and say again on every reload), until the speaker stops.
pub async fn run(
    mut settings: watch::Receiver<Settings>,
    speaker: Speaker,
    mut scope: watch::Receiver<Scope>,
) -> Result<(), KernelError> {
    let mut current = settings.borrow_and_update().clone();
    let (mut conn, handle, mut messages) =
        rtnetlink::new_connection().map_err(KernelError::Open)?;
    {
        let sock = conn.socket_mut().socket_mut();
        if let Err(e) = sock.set_rx_buf_sz(RCVBUF) {
            warn!("learn: cannot enlarge the netlink receive buffer: {e}");
        }
        sock.bind(&rtnetlink::sys::SocketAddr::new(0, GROUPS))
            .map_err(KernelError::Open)?;
    }
    tokio::spawn(conn);
    let mut learner = Learner::new(current.rules.clone(), scope.borrow_and_update().clone());
    let mut tick = tokio::time::interval(current.resync);
    // The first dump, and the one after an overrun, takes links too; the periodic one
    // addresses and routes only: a dump of thousands of links is parsed into megabytes at
    // once, and link notifications are complete unless an overrun said otherwise.
    let mut overrun = true;
    let mut periodic = false;
    tick.tick().await;
    loop {
        tokio::select! {
            m = messages.next() => {
                let Some((m, _)) = m else { break };
                tokio::time::sleep(BATCH_DELAY).await;
                overrun |= apply(&mut learner, m);
                let mut n = 1;
                while n < BATCH_MAX && let Ok((m, _)) = messages.try_recv() {
                    overrun |= apply(&mut learner, m);
                    n += 1;
                }
            }
            _ = tick.tick() => periodic = true,
            r = scope.changed() => {
                if r.is_ok() {
                    learner.set_scope(scope.borrow_and_update().clone());
                }
            }
            r = settings.changed() => {
                if r.is_ok() {
                    let new = settings.borrow_and_update().clone();
                    let what = changes(&current, &new);
                    if !what.is_empty() {
                        info!(changes = %what.join("; "), "learn: [learn] reloaded");
                        if new.resync != current.resync {
                            tick = tokio::time::interval(new.resync);
                            tick.tick().await;
                        }
                        learner.set_rules(new.rules.clone());
                        // Routes of another table or protocol number were never kept:
                        // a full dump decides everything again.
                        periodic = true;
                        current = new;
                    }
                }
            }
        }
        if overrun || periodic {
            let with_links = std::mem::take(&mut overrun);
            periodic = false;
            let t = Instant::now();
            match dump(&handle, with_links).await {
                Ok(snap) => {
                    learner.resync(snap, with_links);
                    let s = learner.stats();
                    debug!(
                        links = s.links,
                        addrs = s.addrs,
                        routes = s.routes,
                        ms = t.elapsed().as_millis() as u64,
                        "learn: full dump"
                    );
                }
                Err(e) => warn!("learn: {e} (next try at the next resync)"),
            }
        }
        let diff = learner.poll_diff();
        if diff.is_empty() {
            continue;
        }
        for p in &diff.withdraw {
            debug!(prefix = %p, "learn: withdraw");
            if speaker.withdraw(*p).await.is_err() {
                return Ok(());
            }
        }
        for p in &diff.originate {
            let why = match learner.explain(p) {
                Some(Verdict::Announce(w)) => w.to_string(),
                _ => String::new(),
            };
            let attrs = rib::Attrs {
                local_pref: learner.local_pref(p),
                ..rib::Attrs::default()
            };
            debug!(prefix = %p, why, local_pref = attrs.local_pref.unwrap_or_default(), "learn: originate");
            if speaker.originate(*p, attrs).await.is_err() {
                return Ok(());
            }
        }
        info!(
            originated = diff.originate.len(),
            withdrawn = diff.withdraw.len(),
            announced = learner.announced().len(),
            "learn: routes from the kernel"
        );
    }
    Ok(())
}

/// Applies one notification; true when the kernel says notifications were lost.
fn apply(learner: &mut Learner, m: NetlinkMessage<RouteNetlinkMessage>) -> bool {
    match m.payload {
        NetlinkPayload::InnerMessage(m) => {
            match m {
                RouteNetlinkMessage::NewLink(l) => learner.link_changed(link(&l)),
                RouteNetlinkMessage::DelLink(l) => learner.link_deleted(l.header.index),
                RouteNetlinkMessage::NewAddress(a) => {
                    if let Some(a) = addr(&a) {
                        learner.addr_added(a);
                    }
                }
                RouteNetlinkMessage::DelAddress(a) => {
                    if let Some(a) = addr(&a) {
                        learner.addr_deleted(&a);
                    }
                }
                RouteNetlinkMessage::NewRoute(r) => {
                    if let Some(r) = route(&r) {
                        learner.route_added(r);
                    }
                }
                RouteNetlinkMessage::DelRoute(r) => {
                    if let Some(r) = route(&r) {
                        learner.route_deleted(&r);
                    }
                }
                _ => {}
            }
            false
        }
        NetlinkPayload::Overrun(_) => {
            warn!("learn: netlink notifications lost (receive buffer full): full dump");
            true
        }
        _ => false,
    }
}

/// Addresses and routes of both families, and links `with_links`.
async fn dump(handle: &Handle, with_links: bool) -> Result<Snapshot, KernelError> {
    let err = |e: rtnetlink::Error| KernelError::Dump {
        table: 0,
        message: e.to_string(),
    };
    let mut snap = Snapshot::default();
    if with_links {
        let mut links = handle.link().get().execute();
        while let Some(l) = links.try_next().await.map_err(err)? {
            snap.links.push(link(&l));
        }
    }
    let mut addrs = handle.address().get().execute();
    while let Some(a) = addrs.try_next().await.map_err(err)? {
        snap.addrs.extend(addr(&a));
    }
    for msg in [
        RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
        RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
    ] {
        let mut routes = handle.route().get(msg).execute();
        while let Some(r) = routes.try_next().await.map_err(err)? {
            snap.routes.extend(route(&r));
        }
    }
    Ok(snap)
}

fn link(m: &LinkMessage) -> SeenLink {
    let name = m
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default();
    SeenLink {
        index: m.header.index,
        name,
        up: m.header.flags.contains(LinkFlags::Up),
    }
}

fn addr(m: &AddressMessage) -> Option<SeenAddr> {
    // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer's on point-to-point links.
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let ip = local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some(SeenAddr {
        index: m.header.index,
        addr: IpNet::new(ip, m.header.prefix_len).ok()?,
        scope: u8::from(m.header.scope),
    })
}

fn route(m: &RouteMessage) -> Option<SeenRoute> {
    let mut dst = None;
    let mut table = u32::from(m.header.table);
    let mut metric = 0;
    let mut oif = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = address(d),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) if oif.is_none() => {
                oif = hops.first().map(|h| h.interface_index);
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
    Some(SeenRoute {
        prefix: IpNet::new(dst, m.header.destination_prefix_length).ok()?,
        table,
        protocol: u8::from(m.header.protocol),
        metric,
        kind: match m.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::BlackHole | RouteType::Unreachable | RouteType::Prohibit => {
                RouteKind::Reject
            }
            _ => RouteKind::Other,
        },
        oif,
    })
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// `[a, b]` of a list's Display forms, for a log line.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}
