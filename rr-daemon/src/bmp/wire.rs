//! BMP messages (RFC 7854 §4), encoded sans-IO: each function appends one whole message
//! to a buffer. Tests check them byte for byte.

use std::net::{IpAddr, Ipv4Addr};

use bgp_wire::attr::{NextHop, PathAttribute};
use bgp_wire::nlri::Nlri;
use bgp_wire::update::UpdatePacker;
use bgp_wire::{Family, SessionCtx};
use bytes::{BufMut, BytesMut};
use rib::Attrs;

/// The BMP version this encoder speaks (RFC 7854 §4.1).
pub const VERSION: u8 = 3;
/// Length of the common header.
pub const COMMON_HEADER_LEN: usize = 6;
/// Length of the per-peer header (RFC 7854 §4.2).
pub const PER_PEER_HEADER_LEN: usize = 42;

/// BMP message types (RFC 7854 §4.1).
pub mod msg_type {
    /// Route Monitoring.
    pub const ROUTE_MONITORING: u8 = 0;
    /// Statistics Report.
    pub const STATISTICS_REPORT: u8 = 1;
    /// Peer Down Notification.
    pub const PEER_DOWN: u8 = 2;
    /// Peer Up Notification.
    pub const PEER_UP: u8 = 3;
    /// Initiation.
    pub const INITIATION: u8 = 4;
    /// Termination.
    pub const TERMINATION: u8 = 5;
}

/// Peer Down reasons (RFC 7854 §4.9).
pub mod down_reason {
    /// We closed the session with a NOTIFICATION (the PDU follows).
    pub const LOCAL_NOTIFICATION: u8 = 1;
    /// We closed the session without a NOTIFICATION (a 2-byte FSM event code follows).
    pub const LOCAL_NO_NOTIFICATION: u8 = 2;
    /// The peer closed the session with a NOTIFICATION (the PDU follows).
    pub const REMOTE_NOTIFICATION: u8 = 3;
    /// The peer closed the session without a NOTIFICATION (the TCP connection ended).
    pub const REMOTE_NO_NOTIFICATION: u8 = 4;
    /// The peer was de-configured: nothing more of it will be sent.
    pub const DECONFIGURED: u8 = 5;
}

/// Statistics types used here (RFC 7854 §4.8).
pub mod stat_type {
    /// Prefixes rejected by inbound policy (32-bit counter).
    pub const REJECTED: u16 = 0;
    /// Routes in Adj-RIBs-In (64-bit gauge).
    pub const ADJ_RIB_IN: u16 = 7;
    /// Routes in Loc-RIB (64-bit gauge).
    pub const LOC_RIB: u16 = 8;
}

/// Termination reasons (RFC 7854 §4.5).
pub mod term_reason {
    /// Session administratively closed.
    pub const ADMIN_CLOSED: u16 = 0;
    /// Out of resources: the collector fell too far behind.
    pub const OUT_OF_RESOURCES: u16 = 2;
}

/// The peer a per-peer header describes (RFC 7854 §4.2): a global instance peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerHeader {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's AS.
    pub asn: u32,
    /// The peer's BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// The messages of this peer carry 2-octet AS_PATHs (the A flag).
    pub legacy_as_path: bool,
}

/// When a route was received or a statistic sampled: seconds and microseconds since the
/// Unix epoch (zero when unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds.
    pub secs: u32,
    /// Microseconds.
    pub micros: u32,
}

fn begin(out: &mut BytesMut, ty: u8) -> usize {
    let start = out.len();
    out.put_u8(VERSION);
    out.put_u32(0);
    out.put_u8(ty);
    start
}

fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn put_addr16(out: &mut BytesMut, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            out.put_bytes(0, 12);
            out.put_slice(&v4.octets());
        }
        IpAddr::V6(v6) => out.put_slice(&v6.octets()),
    }
}

fn put_peer(out: &mut BytesMut, p: &PeerHeader, post_policy: bool, ts: Timestamp) {
    out.put_u8(0); // Global Instance Peer.
    let mut flags = 0u8;
    if p.address.is_ipv6() {
        flags |= 0x80;
    }
    if post_policy {
        flags |= 0x40;
    }
    if p.legacy_as_path {
        flags |= 0x20;
    }
    out.put_u8(flags);
    out.put_u64(0); // Peer Distinguisher.
    put_addr16(out, p.address);
    out.put_u32(p.asn);
    out.put_slice(&p.bgp_id.octets());
    out.put_u32(ts.secs);
    out.put_u32(ts.micros);
}

fn put_tlv(out: &mut BytesMut, ty: u16, value: &[u8]) {
    out.put_u16(ty);
    out.put_u16(value.len().min(usize::from(u16::MAX)) as u16);
    out.put_slice(&value[..value.len().min(usize::from(u16::MAX))]);
}

/// Initiation (RFC 7854 §4.3): sysDescr and sysName.
pub fn initiation(out: &mut BytesMut, sys_name: &str, sys_descr: &str) {
    let start = begin(out, msg_type::INITIATION);
    put_tlv(out, 1, sys_descr.as_bytes());
    put_tlv(out, 2, sys_name.as_bytes());
    finish(out, start);
}

/// Termination (RFC 7854 §4.5) with a reason code ([`term_reason`]).
pub fn termination(out: &mut BytesMut, reason: u16) {
    let start = begin(out, msg_type::TERMINATION);
    put_tlv(out, 1, &reason.to_be_bytes());
    finish(out, start);
}

/// Peer Up (RFC 7854 §4.10): our address and port on the session, the peer's port, the
/// OPEN we sent and the OPEN we received (whole BGP messages).
pub fn peer_up(
    out: &mut BytesMut,
    peer: &PeerHeader,
    ts: Timestamp,
    local: (IpAddr, u16),
    remote_port: u16,
    sent_open: &[u8],
    received_open: &[u8],
) {
    let start = begin(out, msg_type::PEER_UP);
    put_peer(out, peer, false, ts);
    put_addr16(out, local.0);
    out.put_u16(local.1);
    out.put_u16(remote_port);
    out.put_slice(sent_open);
    out.put_slice(received_open);
    finish(out, start);
}

/// Peer Down (RFC 7854 §4.9): `reason` ([`down_reason`]) and its data (a NOTIFICATION
/// PDU, an FSM event code, or nothing).
pub fn peer_down(out: &mut BytesMut, peer: &PeerHeader, ts: Timestamp, reason: u8, data: &[u8]) {
    let start = begin(out, msg_type::PEER_DOWN);
    put_peer(out, peer, false, ts);
    out.put_u8(reason);
    out.put_slice(data);
    finish(out, start);
}

/// Route Monitoring (RFC 7854 §4.6) around one whole BGP UPDATE message; `post_policy`
/// sets the L flag.
pub fn route_monitoring(
    out: &mut BytesMut,
    peer: &PeerHeader,
    post_policy: bool,
    ts: Timestamp,
    update: &[u8],
) {
    let start = begin(out, msg_type::ROUTE_MONITORING);
    put_peer(out, peer, post_policy, ts);
    out.put_slice(update);
    finish(out, start);
}

/// One statistic of a Statistics Report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// A 32-bit counter.
    Counter(u16, u32),
    /// A 64-bit gauge.
    Gauge(u16, u64),
}

/// Statistics Report (RFC 7854 §4.8).
pub fn statistics(out: &mut BytesMut, peer: &PeerHeader, ts: Timestamp, stats: &[Stat]) {
    let start = begin(out, msg_type::STATISTICS_REPORT);
    put_peer(out, peer, false, ts);
    out.put_u32(stats.len() as u32);
    for s in stats {
        match *s {
            Stat::Counter(ty, v) => put_tlv(out, ty, &v.to_be_bytes()),
            Stat::Gauge(ty, v) => put_tlv(out, ty, &v.to_be_bytes()),
        }
    }
    finish(out, start);
}

/// The path attributes of `a` as a speaker would send them on an iBGP session, without
/// NEXT_HOP and MP attributes (which depend on the family), in type order. Shared by
/// BMP's Route Monitoring of stored routes and by MRT's RIB entries.
pub fn path_attributes(a: &Attrs) -> Vec<PathAttribute> {
    let mut v = Vec::with_capacity(8);
    v.push(PathAttribute::Origin(a.origin));
    v.push(PathAttribute::AsPath(a.as_path.clone()));
    if let Some(m) = a.med {
        v.push(PathAttribute::MultiExitDisc(m));
    }
    if let Some(lp) = a.local_pref {
        v.push(PathAttribute::LocalPref(lp));
    }
    if a.atomic_aggregate {
        v.push(PathAttribute::AtomicAggregate);
    }
    if let Some(ag) = a.aggregator {
        v.push(PathAttribute::Aggregator(ag));
    }
    if !a.communities.is_empty() {
        v.push(PathAttribute::Communities(a.communities.clone()));
    }
    if let Some(o) = a.originator_id {
        v.push(PathAttribute::OriginatorId(o));
    }
    if !a.cluster_list.is_empty() {
        v.push(PathAttribute::ClusterList(a.cluster_list.clone()));
    }
    if !a.ext_communities.is_empty() {
        v.push(PathAttribute::ExtendedCommunities(
            a.ext_communities.clone(),
        ));
    }
    if !a.large_communities.is_empty() {
        v.push(PathAttribute::LargeCommunities(a.large_communities.clone()));
    }
    if let Some(o) = a.only_to_customer {
        v.push(PathAttribute::OnlyToCustomer(o));
    }
    v.extend(a.other.iter().cloned().map(PathAttribute::Unknown));
    v.sort_by_key(PathAttribute::ty);
    v
}

/// The encoding context of UPDATEs made from stored routes: 4-octet AS, iBGP (every
/// attribute kept), messages up to 65535 bytes with `extended_message` (RFC 8654, as the
/// peer's session), ADD-PATH in the families of `add_path` (the peer's session's).
pub fn stored_ctx(add_path: bgp_wire::FamilySet, extended_message: bool) -> SessionCtx {
    let families = add_path;
    SessionCtx {
        four_octet_as: true,
        extended_message,
        ibgp: true,
        add_path_tx: families,
        add_path_rx: families,
        ..SessionCtx::default()
    }
}

/// Appends BGP UPDATE messages announcing `nlri` (all of `family`) with `attrs`, as a
/// stored route of the peer is shown to a collector: attributes from
/// [`path_attributes`], the IPv4 next hop as NEXT_HOP, others in MP_REACH_NLRI. A route
/// that fits no message (a next hop of the wrong family) is left out. Returns the
/// number of messages.
pub fn announce(
    out: &mut BytesMut,
    ctx: &SessionCtx,
    family: Family,
    attrs: &Attrs,
    nlri: &[Nlri],
) -> usize {
    let mut list = path_attributes(attrs);
    let next_hop = match (family, attrs.next_hop) {
        (Family::Ipv4Unicast, Some(NextHop::V4(a))) => {
            list.push(PathAttribute::NextHop(a));
            list.sort_by_key(PathAttribute::ty);
            None
        }
        (Family::Ipv4Unicast, None) => {
            list.push(PathAttribute::NextHop(Ipv4Addr::UNSPECIFIED));
            list.sort_by_key(PathAttribute::ty);
            None
        }
        (_, nh) => nh,
    };
    let mut encoded = BytesMut::new();
    for a in &list {
        a.encode(ctx, &mut encoded);
    }
    UpdatePacker::new(ctx)
        .announce(family, &encoded, next_hop.as_ref(), nlri, out)
        .unwrap_or(0)
}

/// Appends BGP UPDATE messages withdrawing `nlri` (all of `family`).
pub fn withdraw(out: &mut BytesMut, ctx: &SessionCtx, family: Family, nlri: &[Nlri]) -> usize {
    UpdatePacker::new(ctx)
        .withdraw(family, nlri, out)
        .unwrap_or(0)
}

/// Appends the End-of-RIB marker of `family` (RFC 4724 §2) as a BGP UPDATE.
pub fn end_of_rib(out: &mut BytesMut, family: Family) {
    let _ = bgp_wire::update::Update::end_of_rib(family).encode(&SessionCtx::default(), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer4() -> PeerHeader {
        PeerHeader {
            address: "192.0.2.1".parse().unwrap(),
            asn: 65001,
            bgp_id: Ipv4Addr::new(10, 0, 0, 1),
            legacy_as_path: false,
        }
    }

    const TS: Timestamp = Timestamp {
        secs: 0x01020304,
        micros: 5,
    };

    fn per_peer_v4(flags: u8) -> Vec<u8> {
        let mut v = vec![0, flags, 0, 0, 0, 0, 0, 0, 0, 0];
        v.extend([0; 12]);
        v.extend([192, 0, 2, 1]);
        v.extend(65001u32.to_be_bytes());
        v.extend([10, 0, 0, 1]);
        v.extend([1, 2, 3, 4, 0, 0, 0, 5]);
        v
    }

    #[test]
    fn initiation_bytes() {
        let mut b = BytesMut::new();
        initiation(&mut b, "rr1", "rr-daemon");
        let mut want = vec![3, 0, 0, 0, 26, 4];
        want.extend([0, 1, 0, 9]);
        want.extend(b"rr-daemon");
        want.extend([0, 2, 0, 3]);
        want.extend(b"rr1");
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn termination_bytes() {
        let mut b = BytesMut::new();
        termination(&mut b, term_reason::ADMIN_CLOSED);
        assert_eq!(&b[..], &[3, 0, 0, 0, 12, 5, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn route_monitoring_bytes_and_flags() {
        let mut eor = BytesMut::new();
        end_of_rib(&mut eor, Family::Ipv4Unicast);
        assert_eq!(eor.len(), 23);
        let mut b = BytesMut::new();
        route_monitoring(&mut b, &peer4(), true, TS, &eor);
        let mut want = vec![3, 0, 0, 0, 6 + 42 + 23, 0];
        want.extend(per_peer_v4(0x40));
        want.extend(&eor[..]);
        assert_eq!(&b[..], &want[..]);

        let v6 = PeerHeader {
            address: "2001:db8::1".parse().unwrap(),
            legacy_as_path: true,
            ..peer4()
        };
        let mut b = BytesMut::new();
        route_monitoring(&mut b, &v6, false, Timestamp::default(), &eor);
        assert_eq!(b[7], 0x80 | 0x20);
        assert_eq!(
            &b[16..32],
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
    }

    #[test]
    fn peer_up_bytes() {
        let mut b = BytesMut::new();
        let open_a = [0xffu8; 29];
        let open_b = [0xeeu8; 29];
        peer_up(
            &mut b,
            &peer4(),
            TS,
            ("192.0.2.2".parse().unwrap(), 179),
            40000,
            &open_a,
            &open_b,
        );
        let mut want = vec![3, 0, 0, 0, (6 + 42 + 20 + 58) as u8, 3];
        want.extend(per_peer_v4(0));
        want.extend([0; 12]);
        want.extend([192, 0, 2, 2, 0, 179]);
        want.extend(40000u16.to_be_bytes());
        want.extend(open_a);
        want.extend(open_b);
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn peer_down_bytes() {
        let mut b = BytesMut::new();
        peer_down(
            &mut b,
            &peer4(),
            TS,
            down_reason::REMOTE_NO_NOTIFICATION,
            &[],
        );
        let mut want = vec![3, 0, 0, 0, 49, 2];
        want.extend(per_peer_v4(0));
        want.push(4);
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn statistics_bytes() {
        let mut b = BytesMut::new();
        statistics(
            &mut b,
            &peer4(),
            TS,
            &[
                Stat::Counter(stat_type::REJECTED, 7),
                Stat::Gauge(stat_type::ADJ_RIB_IN, 100_000),
            ],
        );
        let mut want = vec![3, 0, 0, 0, (6 + 42 + 4 + 8 + 12) as u8, 1];
        want.extend(per_peer_v4(0));
        want.extend([0, 0, 0, 2]);
        want.extend([0, 0, 0, 4, 0, 0, 0, 7]);
        want.extend([0, 7, 0, 8]);
        want.extend(100_000u64.to_be_bytes());
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn stored_routes_encode_as_updates() {
        let attrs = Attrs {
            next_hop: Some(NextHop::V4(Ipv4Addr::new(192, 0, 2, 1))),
            as_path: bgp_wire::attr::AsPath {
                segments: vec![bgp_wire::attr::AsSegment {
                    ty: bgp_wire::attr::AsSegmentType(2),
                    asns: vec![65001],
                }],
            },
            ..Attrs::default()
        };
        let nlri = [Nlri::new("10.0.0.0/24".parse().unwrap())];
        let mut b = BytesMut::new();
        let n = announce(
            &mut b,
            &stored_ctx(bgp_wire::FamilySet::EMPTY, false),
            Family::Ipv4Unicast,
            &attrs,
            &nlri,
        );
        assert_eq!(n, 1);
        let mut want = vec![0xff; 16];
        // 19 header + 2 + 2 + attrs (4 ORIGIN + 9 AS_PATH + 7 NEXT_HOP) + 4 NLRI.
        want.extend([0, 47, 2, 0, 0, 0, 20]);
        want.extend([0x40, 1, 1, 0]);
        want.extend([0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9]);
        want.extend([0x40, 3, 4, 192, 0, 2, 1]);
        want.extend([24, 10, 0, 0]);
        assert_eq!(&b[..], &want[..]);
    }
}
