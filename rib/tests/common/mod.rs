//! Test harness: build UPDATEs with bgp-wire, feed them to a RIB, drain its groups and
//! parse what each peer would receive.
#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bgp_wire::attr::{AsPath, MpReach, NextHop, Origin, PathAttribute};
use bgp_wire::nlri::Nlri;
use bgp_wire::update::{Update, UpdateView};
use bgp_wire::{Family, FamilySet, Framer, SessionCtx};
use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use rib::{Applied, GroupId, LocalAddrs, Outbound, PeerConfig, PeerId, Rib, RibConfig, Session};

pub const LOCAL_AS: u32 = 65000;
pub const RR_ID: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
pub const RR_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn ibgp_ctx() -> SessionCtx {
    SessionCtx {
        ibgp: true,
        ..SessionCtx::default()
    }
}

pub fn ebgp_ctx() -> SessionCtx {
    SessionCtx::default()
}

pub fn rr() -> Rib {
    Rib::new(RibConfig::new(LOCAL_AS, RR_ID))
}

/// A peer at 10.0.0.`n` with router id 10.255.0.`n`, brought up with `ctx`.
pub fn up(rib: &mut Rib, mut cfg: PeerConfig, n: u8, ctx: SessionCtx) -> PeerId {
    cfg.address = IpAddr::V4(Ipv4Addr::new(10, 0, 0, n));
    let id = rib.add_peer(cfg);
    rib.peer_up(
        id,
        Session {
            ctx,
            router_id: Ipv4Addr::new(10, 255, 0, n),
            local: LocalAddrs {
                v4: Some(RR_ADDR),
                v6: Some("2001:db8::1".parse().unwrap()),
                link_local: Some("fe80::1".parse().unwrap()),
            },
        },
    )
    .unwrap();
    id
}

pub fn client(rib: &mut Rib, n: u8) -> PeerId {
    let mut c = PeerConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), LOCAL_AS);
    c.rr_client = true;
    up(rib, c, n, ibgp_ctx())
}

pub fn nonclient(rib: &mut Rib, n: u8) -> PeerId {
    let c = PeerConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), LOCAL_AS);
    up(rib, c, n, ibgp_ctx())
}

pub fn router_id(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, 0, n)
}

/// Mandatory attributes for an IPv4 route via `nh` with AS_PATH `path`.
pub fn base(nh: &str, path: &[u32]) -> Vec<PathAttribute> {
    vec![
        PathAttribute::Origin(Origin::IGP),
        PathAttribute::AsPath(AsPath::from_sequence(path.iter().copied())),
        PathAttribute::NextHop(v4(nh)),
    ]
}

/// An IPv4 UPDATE announcing `prefixes` with `attrs`, as `ctx` encodes it.
pub fn announce(prefixes: &[&str], attrs: Vec<PathAttribute>, ctx: &SessionCtx) -> Bytes {
    let u = Update {
        withdrawn: vec![],
        attributes: attrs,
        nlri: prefixes.iter().map(|p| Nlri::new(net(p))).collect(),
    };
    let mut b = BytesMut::new();
    u.encode(&tx(ctx), &mut b).unwrap();
    b.freeze()
}

/// An IPv6 UPDATE via MP_REACH_NLRI.
pub fn announce_v6(
    prefixes: &[&str],
    mut attrs: Vec<PathAttribute>,
    nh: NextHop,
    ctx: &SessionCtx,
) -> Bytes {
    attrs.retain(|a| !matches!(a, PathAttribute::NextHop(_)));
    attrs.push(PathAttribute::MpReachNlri(MpReach {
        family: Family::Ipv6Unicast,
        next_hop: nh,
        nlri: prefixes.iter().map(|p| Nlri::new(net(p))).collect(),
    }));
    let u = Update {
        withdrawn: vec![],
        attributes: attrs,
        nlri: vec![],
    };
    let mut b = BytesMut::new();
    u.encode(&tx(ctx), &mut b).unwrap();
    b.freeze()
}

pub fn withdraw(prefixes: &[&str], ctx: &SessionCtx) -> Bytes {
    let u = Update {
        withdrawn: prefixes.iter().map(|p| Nlri::new(net(p))).collect(),
        attributes: vec![],
        nlri: vec![],
    };
    let mut b = BytesMut::new();
    u.encode(&tx(ctx), &mut b).unwrap();
    b.freeze()
}

/// The sender's context for what `ctx` (the receiver's) decodes.
pub fn tx(ctx: &SessionCtx) -> SessionCtx {
    SessionCtx {
        add_path_tx: ctx.add_path_rx,
        ..*ctx
    }
}

pub fn apply(rib: &mut Rib, peer: PeerId, ctx: &SessionCtx, msg: &Bytes) -> Applied {
    let view = UpdateView::parse(&msg[19..], ctx);
    rib.apply_update(peer, &view)
}

/// Drains every group fully.
pub fn drain(rib: &mut Rib) -> Vec<(GroupId, Outbound)> {
    let mut out = Vec::new();
    loop {
        let groups = rib.pending_groups();
        if groups.is_empty() {
            return out;
        }
        for g in groups {
            for o in rib.drain_group(g, usize::MAX) {
                out.push((g, o));
            }
        }
    }
}

/// The UPDATEs `peer` receives from `outs`, parsed with `ctx` (its side of the session).
pub fn received(
    rib: &Rib,
    peer: PeerId,
    outs: &[(GroupId, Outbound)],
    ctx: &SessionCtx,
) -> Vec<Update> {
    let mut v = Vec::new();
    let Some(g) = rib.group_of(peer) else {
        return v;
    };
    for (gid, o) in outs {
        if *gid != g || !o.audience.includes(peer) {
            continue;
        }
        for f in Framer::new().frames(o.bytes.clone()) {
            let f = f.unwrap();
            assert!(f.bytes.len() <= ctx.max_message_len());
            let view = UpdateView::parse(f.body(), ctx);
            assert_eq!(
                view.treatment(),
                bgp_wire::update::Treatment::Normal,
                "{:?}",
                view.issues()
            );
            v.push(view.to_update());
        }
    }
    v
}

/// Announced (prefix, path id) -> attributes, over a list of received updates, with
/// End-of-RIB markers and withdrawals applied in order.
pub fn table(updates: &[Update]) -> std::collections::BTreeMap<Nlri, Vec<PathAttribute>> {
    let mut t = std::collections::BTreeMap::new();
    for u in updates {
        for w in &u.withdrawn {
            t.remove(w);
        }
        for a in &u.attributes {
            if let PathAttribute::MpUnreachNlri(m) = a {
                for w in &m.withdrawn {
                    t.remove(w);
                }
            }
        }
        let attrs: Vec<PathAttribute> = u
            .attributes
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    PathAttribute::MpReachNlri(_) | PathAttribute::MpUnreachNlri(_)
                )
            })
            .cloned()
            .collect();
        for n in &u.nlri {
            t.insert(*n, attrs.clone());
        }
        for a in &u.attributes {
            if let PathAttribute::MpReachNlri(m) = a {
                let mut at = attrs.clone();
                at.push(PathAttribute::MpReachNlri(MpReach {
                    family: m.family,
                    next_hop: m.next_hop,
                    nlri: vec![],
                }));
                for n in &m.nlri {
                    t.insert(*n, at.clone());
                }
            }
        }
    }
    t
}

pub fn attr(attrs: &[PathAttribute], ty: bgp_wire::attr::AttrType) -> Option<&PathAttribute> {
    attrs.iter().find(|a| a.ty() == ty)
}

pub fn is_eor(u: &Update) -> bool {
    *u == Update::end_of_rib(Family::Ipv4Unicast) || *u == Update::end_of_rib(Family::Ipv6Unicast)
}

pub fn v6_only_ctx() -> SessionCtx {
    SessionCtx {
        ibgp: true,
        families: FamilySet::only(Family::Ipv6Unicast),
        ..SessionCtx::default()
    }
}

pub fn ll() -> Ipv6Addr {
    "fe80::1".parse().unwrap()
}
