//! MRT dumps of the RIB (RFC 6396 TABLE_DUMP_V2, with RFC 8050's ADD-PATH subtypes),
//! encoded sans-IO: a PEER_INDEX_TABLE, then one RIB record per prefix with an entry per
//! stored path (every peer's Adj-RIB-In path, the best first). Served streamed at
//! `GET /v1/mrt` ([`crate::api`]) and written by `rr-daemon ctl dump-mrt FILE`.

use std::net::{IpAddr, Ipv4Addr};

use bgp_wire::SessionCtx;
use bgp_wire::attr::{AttrFlags, AttrType, NextHop, PathAttribute, put_attr_header};
use bytes::{BufMut, BytesMut};
use ipnet::IpNet;
use rib::Attrs;

/// MRT type TABLE_DUMP_V2.
pub const TABLE_DUMP_V2: u16 = 13;

/// TABLE_DUMP_V2 subtypes (RFC 6396 §4.3, RFC 8050 §4).
pub mod subtype {
    /// PEER_INDEX_TABLE.
    pub const PEER_INDEX_TABLE: u16 = 1;
    /// RIB_IPV4_UNICAST.
    pub const RIB_IPV4_UNICAST: u16 = 2;
    /// RIB_IPV6_UNICAST.
    pub const RIB_IPV6_UNICAST: u16 = 4;
    /// RIB_IPV4_UNICAST_ADDPATH.
    pub const RIB_IPV4_UNICAST_ADDPATH: u16 = 8;
    /// RIB_IPV6_UNICAST_ADDPATH.
    pub const RIB_IPV6_UNICAST_ADDPATH: u16 = 10;
}

/// A peer of the PEER_INDEX_TABLE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its BGP identifier (0.0.0.0 when unknown).
    pub bgp_id: Ipv4Addr,
    /// Its address.
    pub address: IpAddr,
    /// Its AS.
    pub asn: u32,
}

/// One RIB entry: a path of the prefix.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Index of its peer in the PEER_INDEX_TABLE.
    pub peer_index: u16,
    /// When it was received (seconds since the epoch; 0 when unknown).
    pub originated: u32,
    /// Its ADD-PATH identifier: with one, the record is of an ADD-PATH subtype.
    pub path_id: Option<u32>,
    /// Its attributes.
    pub attrs: &'a Attrs,
}

fn header(out: &mut BytesMut, ts: u32, sub: u16) -> usize {
    out.put_u32(ts);
    out.put_u16(TABLE_DUMP_V2);
    out.put_u16(sub);
    out.put_u32(0);
    out.len()
}

fn finish(out: &mut BytesMut, body: usize) {
    let len = (out.len() - body) as u32;
    out[body - 4..body].copy_from_slice(&len.to_be_bytes());
}

/// Appends the PEER_INDEX_TABLE (RFC 6396 §4.3.1): every peer with a 4-octet AS.
pub fn peer_index_table(
    out: &mut BytesMut,
    ts: u32,
    collector_id: Ipv4Addr,
    view: &str,
    peers: &[Peer],
) {
    let body = header(out, ts, subtype::PEER_INDEX_TABLE);
    out.put_slice(&collector_id.octets());
    let view = &view.as_bytes()[..view.len().min(usize::from(u16::MAX))];
    out.put_u16(view.len() as u16);
    out.put_slice(view);
    out.put_u16(peers.len().min(usize::from(u16::MAX)) as u16);
    for p in peers.iter().take(usize::from(u16::MAX)) {
        let ty = 0x02 | u8::from(p.address.is_ipv6());
        out.put_u8(ty);
        out.put_slice(&p.bgp_id.octets());
        match p.address {
            IpAddr::V4(a) => out.put_slice(&a.octets()),
            IpAddr::V6(a) => out.put_slice(&a.octets()),
        }
        out.put_u32(p.asn);
    }
    finish(out, body);
}

/// Appends the RIB record of `prefix` (RFC 6396 §4.3.2; RFC 8050 §4 when any entry has
/// a path identifier, and then every entry carries one, 0 for those without).
pub fn rib_record(out: &mut BytesMut, ts: u32, seq: u32, prefix: IpNet, entries: &[Entry<'_>]) {
    let add_path = entries.iter().any(|e| e.path_id.is_some());
    let sub = match (prefix, add_path) {
        (IpNet::V4(_), false) => subtype::RIB_IPV4_UNICAST,
        (IpNet::V4(_), true) => subtype::RIB_IPV4_UNICAST_ADDPATH,
        (IpNet::V6(_), false) => subtype::RIB_IPV6_UNICAST,
        (IpNet::V6(_), true) => subtype::RIB_IPV6_UNICAST_ADDPATH,
    };
    let body = header(out, ts, sub);
    out.put_u32(seq);
    let len = prefix.prefix_len();
    out.put_u8(len);
    let bytes = usize::from(len).div_ceil(8);
    match prefix.addr() {
        IpAddr::V4(a) => out.put_slice(&a.octets()[..bytes]),
        IpAddr::V6(a) => out.put_slice(&a.octets()[..bytes]),
    }
    out.put_u16(entries.len().min(usize::from(u16::MAX)) as u16);
    for e in entries.iter().take(usize::from(u16::MAX)) {
        out.put_u16(e.peer_index);
        out.put_u32(e.originated);
        if add_path {
            out.put_u32(e.path_id.unwrap_or(0));
        }
        let at = out.len();
        out.put_u16(0);
        attributes(out, e.attrs, prefix);
        let alen = (out.len() - at - 2) as u16;
        out[at..at + 2].copy_from_slice(&alen.to_be_bytes());
    }
    finish(out, body);
}

/// The attributes of an entry: 4-octet AS_PATH; the next hop as NEXT_HOP for an IPv4
/// route with an IPv4 next hop, else as RFC 6396 §4.3.4's abbreviated MP_REACH_NLRI
/// (next hop length and next hop only).
fn attributes(out: &mut BytesMut, a: &Attrs, prefix: IpNet) {
    let ctx = SessionCtx::default();
    let mut list = crate::bmp::wire::path_attributes(a);
    let mut mp = None;
    match (prefix, a.next_hop) {
        (IpNet::V4(_), Some(NextHop::V4(nh))) => list.push(PathAttribute::NextHop(nh)),
        (IpNet::V4(_), None) => list.push(PathAttribute::NextHop(Ipv4Addr::UNSPECIFIED)),
        (_, nh) => mp = Some(nh),
    }
    list.sort_by_key(PathAttribute::ty);
    for attr in &list {
        if let Some(nh) = mp
            && attr.ty().0 > AttrType::MP_REACH_NLRI.0
        {
            put_mp(out, nh);
            mp = None;
        }
        attr.encode(&ctx, out);
    }
    if let Some(nh) = mp {
        put_mp(out, nh);
    }
}

fn put_mp(out: &mut BytesMut, nh: Option<NextHop>) {
    let mut v = BytesMut::with_capacity(33);
    match nh {
        Some(NextHop::V4(a)) => v.put_slice(&a.octets()),
        Some(NextHop::V6 { global, link_local }) => {
            v.put_slice(&global.octets());
            if let Some(ll) = link_local {
                v.put_slice(&ll.octets());
            }
        }
        None => v.put_slice(&std::net::Ipv6Addr::UNSPECIFIED.octets()),
    }
    put_attr_header(
        out,
        AttrFlags(AttrFlags::OPTIONAL),
        AttrType::MP_REACH_NLRI,
        v.len() + 1,
    );
    out.put_u8(v.len() as u8);
    out.put_slice(&v);
}

/// Prefixes per visit to the core while dumping.
const PAGE: usize = 1024;

/// The whole dump as a stream of chunks, taken from the speaker page by page: the table
/// is never held whole, in the core or here. Paths of a peer that came after the
/// PEER_INDEX_TABLE was written are left out.
pub fn stream(
    speaker: crate::speaker::Speaker,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, crate::speaker::SpeakerError>> + Send + 'static
{
    use std::collections::HashMap;
    struct St {
        speaker: crate::speaker::Speaker,
        index: HashMap<Option<IpAddr>, u16>,
        next: Option<u32>,
        seq: u32,
        ts: u32,
        started: bool,
    }
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let st = St {
        speaker,
        index: HashMap::new(),
        next: Some(0),
        seq: 0,
        ts,
        started: false,
    };
    futures_util::stream::unfold(st, |mut st| async move {
        let mut out = BytesMut::new();
        if !st.started {
            st.started = true;
            let peers = match st.speaker.mrt_peers().await {
                Ok(p) => p,
                Err(e) => return Some((Err(e), st)),
            };
            for (i, p) in peers.iter().enumerate().take(usize::from(u16::MAX)) {
                let key = (i > 0).then_some(p.address);
                st.index.insert(key, i as u16);
            }
            let id = peers.first().map_or(Ipv4Addr::UNSPECIFIED, |p| p.bgp_id);
            peer_index_table(&mut out, st.ts, id, "rr-daemon", &peers);
            return Some((Ok(out.freeze()), st));
        }
        let from = st.next?;
        let page = match st.speaker.rib_page(from, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                st.next = None;
                return Some((Err(e), st));
            }
        };
        st.next = page.next;
        for (prefix, paths) in &page.prefixes {
            let owned: Vec<Attrs> = paths.iter().map(|p| p.attrs.to_attrs()).collect();
            let entries: Vec<Entry<'_>> = paths
                .iter()
                .zip(&owned)
                .filter_map(|(p, attrs)| {
                    Some(Entry {
                        peer_index: *st.index.get(&p.peer)?,
                        originated: 0,
                        path_id: p.path_id,
                        attrs,
                    })
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            rib_record(&mut out, st.ts, st.seq, *prefix, &entries);
            st.seq = st.seq.wrapping_add(1);
        }
        Some((Ok(out.freeze()), st))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp_wire::attr::{AsPath, AsSegment, AsSegmentType};

    fn attrs(nh: NextHop) -> Attrs {
        Attrs {
            next_hop: Some(nh),
            as_path: AsPath {
                segments: vec![AsSegment {
                    ty: AsSegmentType(2),
                    asns: vec![65001, 4200000000],
                }],
            },
            ..Attrs::default()
        }
    }

    #[test]
    fn peer_index_table_bytes() {
        let mut b = BytesMut::new();
        let peers = [
            Peer {
                bgp_id: Ipv4Addr::new(10, 0, 0, 1),
                address: "192.0.2.1".parse().unwrap(),
                asn: 65001,
            },
            Peer {
                bgp_id: Ipv4Addr::new(10, 0, 0, 2),
                address: "2001:db8::2".parse().unwrap(),
                asn: 65002,
            },
        ];
        peer_index_table(&mut b, 7, Ipv4Addr::new(1, 1, 1, 1), "rr", &peers);
        let mut want = vec![0, 0, 0, 7, 0, 13, 0, 1, 0, 0, 0, 48];
        want.extend([1, 1, 1, 1, 0, 2, b'r', b'r', 0, 2]);
        want.extend([2, 10, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0xfd, 0xe9]);
        want.extend([3, 10, 0, 0, 2]);
        want.extend(
            "2001:db8::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        want.extend([0, 0, 0xfd, 0xea]);
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn rib_ipv4_bytes() {
        let a = attrs(NextHop::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let mut b = BytesMut::new();
        let e = [Entry {
            peer_index: 1,
            originated: 9,
            path_id: None,
            attrs: &a,
        }];
        rib_record(&mut b, 7, 3, "10.1.0.0/16".parse().unwrap(), &e);
        let mut want = vec![0, 0, 0, 7, 0, 13, 0, 2, 0, 0, 0, 41];
        want.extend([0, 0, 0, 3, 16, 10, 1, 0, 1]);
        want.extend([0, 1, 0, 0, 0, 9, 0, 24]);
        want.extend([0x40, 1, 1, 0]);
        want.extend([0x40, 2, 10, 2, 2, 0, 0, 0xfd, 0xe9, 0xfa, 0x56, 0xea, 0x00]);
        want.extend([0x40, 3, 4, 192, 0, 2, 1]);
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn rib_ipv6_addpath_bytes() {
        let g: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let a = attrs(NextHop::V6 {
            global: g,
            link_local: None,
        });
        let mut b = BytesMut::new();
        let e = [Entry {
            peer_index: 0,
            originated: 0,
            path_id: Some(5),
            attrs: &a,
        }];
        rib_record(&mut b, 1, 0, "2001:db8:1::/48".parse().unwrap(), &e);
        assert_eq!(&b[4..8], &[0, 13, 0, 10]);
        let body = &b[12..];
        assert_eq!(&body[..11], &[0, 0, 0, 0, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 1]);
        assert_eq!(&body[11..13], &[0, 1]);
        // peer 0, time 0, path id 5, attribute length.
        assert_eq!(&body[13..23], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        let attrs = &body[25..];
        assert_eq!(
            u16::from_be_bytes([body[23], body[24]]) as usize,
            attrs.len()
        );
        // ORIGIN, AS_PATH, then the abbreviated MP_REACH_NLRI.
        let mp = &attrs[4 + 13..];
        let mut want = vec![0x80, 14, 17, 16];
        want.extend(g.octets());
        assert_eq!(mp, &want[..]);
    }
}
