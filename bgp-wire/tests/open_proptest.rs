//! Property tests of OPEN and capabilities: owned forms survive encode and decode, and no
//! input makes validation panic.

use std::net::Ipv4Addr;

use bgp_wire::capability::{
    AddPathEntry, AddPathMode, BgpRole, Capability, CapabilityCode, ExtendedNextHopEntry, GrFamily,
    GracefulRestart, LlgrFamily,
};
use bgp_wire::header::HEADER_LEN;
use bgp_wire::open::{Open, OpenView};
use bgp_wire::{Afi, Safi};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

/// Codes that decode to a variant other than `Unknown`.
const PARSED_CODES: [u8; 11] = [1, 2, 5, 6, 9, 64, 65, 69, 70, 71, 73];

fn afi() -> impl Strategy<Value = Afi> {
    prop_oneof![Just(Afi::IPV4), Just(Afi::IPV6), any::<u16>().prop_map(Afi)]
}

fn safi() -> impl Strategy<Value = Safi> {
    prop_oneof![Just(Safi::UNICAST), any::<u8>().prop_map(Safi)]
}

fn add_path_mode() -> impl Strategy<Value = AddPathMode> {
    prop_oneof![
        Just(AddPathMode::Receive),
        Just(AddPathMode::Send),
        Just(AddPathMode::Both)
    ]
}

/// Any capability except `FourOctetAs`, whose value must agree with the OPEN's AS.
fn capability_but_as4() -> impl Strategy<Value = Capability> {
    prop_oneof![
        (afi(), safi()).prop_map(|(afi, safi)| Capability::Multiprotocol { afi, safi }),
        Just(Capability::RouteRefresh),
        Just(Capability::EnhancedRouteRefresh),
        Just(Capability::ExtendedMessage),
        prop::collection::vec(
            (afi(), safi(), afi()).prop_map(|(afi, safi, next_hop_afi)| ExtendedNextHopEntry {
                afi,
                safi,
                next_hop_afi
            }),
            0..42,
        )
        .prop_map(Capability::ExtendedNextHop),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            prop::collection::vec(
                (afi(), safi(), any::<bool>()).prop_map(|(afi, safi, forwarding)| GrFamily {
                    afi,
                    safi,
                    forwarding
                }),
                0..63,
            ),
        )
            .prop_map(|(restart_state, notification, restart_time, families)| {
                Capability::GracefulRestart(GracefulRestart {
                    restart_state,
                    notification,
                    restart_time,
                    families,
                })
            }),
        prop::collection::vec(
            (afi(), safi(), add_path_mode()).prop_map(|(afi, safi, mode)| AddPathEntry {
                afi,
                safi,
                mode
            }),
            0..63,
        )
        .prop_map(Capability::AddPath),
        prop::collection::vec(
            (afi(), safi(), any::<bool>(), 0u32..(1 << 24)).prop_map(
                |(afi, safi, forwarding, stale_time)| LlgrFamily {
                    afi,
                    safi,
                    forwarding,
                    stale_time,
                }
            ),
            0..36,
        )
        .prop_map(Capability::LongLivedGracefulRestart),
        any::<u8>().prop_map(|r| Capability::Role(BgpRole(r))),
        // At most 30 characters of up to 4 bytes: both fit the 255-byte value uncut.
        ("\\PC{0,30}", "[a-z0-9.-]{0,60}")
            .prop_map(|(hostname, domain)| Capability::Fqdn { hostname, domain }),
        (
            any::<u8>().prop_filter("parsed code", |c| !PARSED_CODES.contains(c)),
            prop::collection::vec(any::<u8>(), 0..=255),
        )
            .prop_map(|(code, value)| Capability::Unknown {
                code: CapabilityCode(code),
                value: Bytes::from(value),
            }),
    ]
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        capability_but_as4(),
        any::<u32>().prop_map(Capability::FourOctetAs)
    ]
}

/// An OPEN that a correct peer could send: hold time 0 or at least 3, a nonzero
/// identifier, a nonzero AS carried by the 4-octet AS capability when it needs four
/// octets, and BGP roles that agree (RFC 9234 §4.2). Small enough for 4096 bytes.
fn open() -> impl Strategy<Value = Open> {
    (
        prop_oneof![1u32..=65535, 1u32..=u32::MAX],
        prop_oneof![Just(0u16), 3u16..=u16::MAX],
        1u32..=u32::MAX,
        prop::collection::vec(capability_but_as4(), 0..12),
        any::<bool>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(asn, hold_time, id, mut caps, with_as4, at)| {
            if let Some(first) = caps.iter().find_map(|c| match c {
                Capability::Role(r) => Some(*r),
                _ => None,
            }) {
                caps.retain(|c| !matches!(c, Capability::Role(r) if *r != first));
            }
            if with_as4 || asn > 65535 {
                let at = at.index(caps.len() + 1);
                caps.insert(at, Capability::FourOctetAs(asn));
            }
            Open {
                asn,
                hold_time,
                bgp_id: Ipv4Addr::from(id),
                capabilities: caps,
            }
        })
}

proptest! {
    #[test]
    fn capability_round_trips(cap in capability()) {
        let mut out = BytesMut::new();
        cap.encode(&mut out);
        prop_assert_eq!(out.len(), cap.encoded_len());
        prop_assert_eq!(usize::from(out[1]), out.len() - 2);
        let back = Capability::decode(CapabilityCode(out[0]), &out[2..]).unwrap();
        prop_assert_eq!(back, cap);
    }

    #[test]
    fn open_round_trips(open in open()) {
        let mut out = BytesMut::new();
        open.encode(&mut out);
        prop_assert_eq!(out.len(), open.encoded_len());
        prop_assert!(out.len() <= 4096);
        prop_assert_eq!(usize::from(u16::from_be_bytes([out[16], out[17]])), out.len());
        let view = OpenView::new(&out[HEADER_LEN..]).unwrap();
        let caps_len: usize = open.capabilities.iter().map(Capability::encoded_len).sum();
        prop_assert_eq!(view.extended_params(), caps_len > 253);
        prop_assert_eq!(view.capabilities().count(), open.capabilities.len());
        let back = Open::decode(&out[HEADER_LEN..]).unwrap();
        prop_assert_eq!(&back, &open);
        // Canonical bytes re-encode byte for byte.
        let mut again = BytesMut::new();
        back.encode(&mut again);
        prop_assert_eq!(again, out);
    }

    #[test]
    fn open_view_never_panics(body in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(view) = OpenView::new(&body) {
            // Whatever validated can be iterated and decoded in full.
            for cap in view.capabilities() {
                prop_assert!(cap.decode().is_ok());
            }
            let _ = Open::from(&view);
        }
    }

    /// Random bytes rarely get past the fixed part, so also mutate valid OPENs.
    #[test]
    fn mutated_open_never_panics(
        open in open(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut out = BytesMut::new();
        open.encode(&mut out);
        let mut body = out[HEADER_LEN..].to_vec();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        body.truncate(cut.index(body.len() + 1));
        if let Ok(view) = OpenView::new(&body) {
            for cap in view.capabilities() {
                prop_assert!(cap.decode().is_ok());
            }
        }
    }
}
