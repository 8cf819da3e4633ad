//! What two OPENs agree on (RFC 5492 §3: a capability is used only if both sides sent it).

use serde::Serialize;

use crate::capability::{
    AddPathMode, BgpRole, Capability, CapabilityCode, GracefulRestart, LlgrFamily,
};
use crate::ctx::{Afi, Family, FamilySet, Safi, SessionCtx, UpdatePolicy};
use crate::open::{Open, OpenView};

/// The outcome of [`negotiate`]: the [`SessionCtx`] for UPDATEs and what the FSM and RIB
/// need from the peer's OPEN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Negotiated {
    /// What UPDATE decoding and encoding use on this session.
    pub ctx: SessionCtx,
    /// The smaller of both hold times (RFC 4271 §4.2); 0 means no keepalives.
    pub hold_time: u16,
    /// Both sides support route refresh (RFC 2918; the peer may use code 128).
    pub route_refresh: bool,
    /// Both sides support enhanced route refresh (RFC 7313), and route refresh with it.
    pub enhanced_route_refresh: bool,
    /// The peer's graceful restart capability as sent (RFC 4724).
    pub peer_graceful_restart: Option<GracefulRestart>,
    /// The peer's long-lived graceful restart families as sent (RFC 9494).
    pub peer_llgr: Option<Vec<LlgrFamily>>,
    /// The role the peer claims (RFC 9234); checking it against ours is the FSM's job.
    pub peer_role: Option<BgpRole>,
    /// The peer's host name and domain name (draft-walton-bgp-hostname-capability).
    pub peer_fqdn: Option<(String, String)>,
    /// Families we offered that the peer did not; the FSM may refuse the session for them
    /// (RFC 5492 §3, 2/7) or carry on without.
    pub missing_families: FamilySet,
}

/// The capabilities of one side, reduced to what negotiation compares.
#[derive(Default)]
struct Side {
    /// Sent at least one multiprotocol capability.
    any_mp: bool,
    /// Tracked families among the multiprotocol capabilities.
    mp: FamilySet,
    four_octet_as: bool,
    extended_message: bool,
    route_refresh: bool,
    enhanced_route_refresh: bool,
    /// ADD-PATH modes for each of [`Family::ALL`], first entry wins.
    add_path: [Option<AddPathMode>; 2],
    /// Advertised IPv4 unicast with an IPv6 next hop (RFC 8950 §3).
    ipv4_over_ipv6: bool,
    graceful_restart: Option<GracefulRestart>,
    llgr: Option<Vec<LlgrFamily>>,
    role: Option<BgpRole>,
    fqdn: Option<(String, String)>,
}

const fn family_index(f: Family) -> usize {
    match f {
        Family::Ipv4Unicast => 0,
        Family::Ipv6Unicast => 1,
    }
}

impl Side {
    fn new<'c>(caps: impl IntoIterator<Item = &'c Capability>) -> Self {
        let mut s = Self::default();
        for cap in caps {
            s.add(cap);
        }
        s
    }

    /// Records one capability; where RFCs leave repeats undefined the first one wins.
    fn add(&mut self, cap: &Capability) {
        match cap {
            Capability::Multiprotocol { afi, safi } => {
                self.any_mp = true;
                if let Some(f) = Family::from_afi_safi(*afi, *safi) {
                    self.mp.insert(f);
                }
            }
            Capability::RouteRefresh => self.route_refresh = true,
            Capability::Unknown { code, .. } if *code == CapabilityCode::ROUTE_REFRESH_OLD => {
                self.route_refresh = true;
            }
            Capability::EnhancedRouteRefresh => self.enhanced_route_refresh = true,
            Capability::ExtendedMessage => self.extended_message = true,
            Capability::FourOctetAs(_) => self.four_octet_as = true,
            Capability::ExtendedNextHop(entries) => {
                self.ipv4_over_ipv6 |= entries.iter().any(|e| {
                    (e.afi, e.safi, e.next_hop_afi) == (Afi::IPV4, Safi::UNICAST, Afi::IPV6)
                });
            }
            Capability::AddPath(entries) => {
                for e in entries {
                    if let Some(f) = Family::from_afi_safi(e.afi, e.safi) {
                        let slot = &mut self.add_path[family_index(f)];
                        slot.get_or_insert(e.mode);
                    }
                }
            }
            Capability::GracefulRestart(gr) => {
                self.graceful_restart.get_or_insert_with(|| gr.clone());
            }
            Capability::LongLivedGracefulRestart(fams) => {
                self.llgr.get_or_insert_with(|| fams.clone());
            }
            Capability::Role(role) => {
                self.role.get_or_insert(*role);
            }
            Capability::Fqdn { hostname, domain } => {
                self.fqdn
                    .get_or_insert_with(|| (hostname.clone(), domain.clone()));
            }
            Capability::Unknown { .. } => {}
        }
    }

    /// The families this side can carry: RFC 4760 §8 leaves a speaker that sent no
    /// multiprotocol capability with IPv4 unicast only.
    fn families(&self) -> FamilySet {
        if self.any_mp {
            self.mp
        } else {
            FamilySet::only(Family::Ipv4Unicast)
        }
    }

    fn add_path(&self, f: Family) -> Option<AddPathMode> {
        self.add_path.get(family_index(f)).copied().flatten()
    }
}

/// Negotiates a session from our OPEN and the peer's validated OPEN.
///
/// * families: both sides' multiprotocol families (IPv4 unicast for a side that sent no
///   multiprotocol capability, RFC 4760 §8), limited to those [`Family`] tracks;
/// * 4-octet AS (RFC 6793 §4) and extended messages (RFC 8654 §3): both sent it;
/// * ADD-PATH (RFC 7911 §5), per negotiated family: we receive path identifiers if we can
///   receive and the peer can send, and send them if we can send and the peer can receive;
/// * extended next hop (RFC 8950 §3): IPv4 unicast, when negotiated and both sides
///   advertised it with an IPv6 next hop;
/// * hold time: the smaller one (RFC 4271 §4.2).
pub fn negotiate(local: &Open, remote: &OpenView<'_>, ibgp: bool) -> Negotiated {
    let ours = Side::new(&local.capabilities);
    // A validated view decodes every capability, so none is lost to `ok()`.
    let peer_caps: Vec<Capability> = remote
        .capabilities()
        .filter_map(|c| c.decode().ok())
        .collect();
    let theirs = Side::new(&peer_caps);

    let families = ours.families().intersection(theirs.families());
    let missing_families = ours
        .families()
        .iter()
        .filter(|f| !theirs.families().contains(*f))
        .collect();
    let add_path_rx = families
        .iter()
        .filter(|f| {
            ours.add_path(*f).is_some_and(AddPathMode::receives)
                && theirs.add_path(*f).is_some_and(AddPathMode::sends)
        })
        .collect();
    let add_path_tx = families
        .iter()
        .filter(|f| {
            ours.add_path(*f).is_some_and(AddPathMode::sends)
                && theirs.add_path(*f).is_some_and(AddPathMode::receives)
        })
        .collect();
    let mut extended_next_hop = FamilySet::EMPTY;
    if ours.ipv4_over_ipv6 && theirs.ipv4_over_ipv6 && families.contains(Family::Ipv4Unicast) {
        extended_next_hop.insert(Family::Ipv4Unicast);
    }
    let route_refresh = ours.route_refresh && theirs.route_refresh;

    Negotiated {
        ctx: SessionCtx {
            four_octet_as: ours.four_octet_as && theirs.four_octet_as,
            extended_message: ours.extended_message && theirs.extended_message,
            ibgp,
            families,
            add_path_rx,
            add_path_tx,
            extended_next_hop,
            policy: UpdatePolicy::default(),
        },
        hold_time: local.hold_time.min(remote.hold_time()),
        route_refresh,
        // RFC 7313 §3: enhanced route refresh comes with route refresh.
        enhanced_route_refresh: route_refresh
            && ours.enhanced_route_refresh
            && theirs.enhanced_route_refresh,
        peer_graceful_restart: theirs.graceful_restart,
        peer_llgr: theirs.llgr,
        peer_role: theirs.role,
        peer_fqdn: theirs.fqdn,
        missing_families,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{AddPathEntry, ExtendedNextHopEntry, GrFamily};
    use crate::header::HEADER_LEN;
    use bytes::BytesMut;
    use std::net::Ipv4Addr;

    fn open(asn: u32, hold_time: u16, capabilities: Vec<Capability>) -> Open {
        Open {
            asn,
            hold_time,
            bgp_id: Ipv4Addr::new(192, 0, 2, 1),
            capabilities,
        }
    }

    /// Negotiates `local` against `remote` sent over the wire.
    fn run(local: &Open, remote: &Open, ibgp: bool) -> Negotiated {
        let mut wire = BytesMut::new();
        remote.encode(&mut wire);
        let view = OpenView::new(&wire[HEADER_LEN..]).unwrap();
        negotiate(local, &view, ibgp)
    }

    fn mp(f: Family) -> Capability {
        Capability::Multiprotocol {
            afi: f.afi(),
            safi: f.safi(),
        }
    }

    fn add_path(entries: &[(Family, AddPathMode)]) -> Capability {
        Capability::AddPath(
            entries
                .iter()
                .map(|&(f, mode)| AddPathEntry {
                    afi: f.afi(),
                    safi: f.safi(),
                    mode,
                })
                .collect(),
        )
    }

    const V4: Family = Family::Ipv4Unicast;
    const V6: Family = Family::Ipv6Unicast;

    #[test]
    fn no_mp_caps_means_ipv4_only() {
        let local = open(
            65000,
            90,
            vec![mp(V4), mp(V6), Capability::FourOctetAs(65000)],
        );
        let remote = open(65001, 30, vec![Capability::RouteRefresh]);
        let n = run(&local, &remote, false);
        assert_eq!(n.ctx.families, FamilySet::only(V4));
        assert_eq!(n.missing_families, FamilySet::only(V6));
        assert!(!n.ctx.four_octet_as);
        assert!(!n.route_refresh);
        assert_eq!(n.hold_time, 30);
        assert!(!n.ctx.ibgp);
        assert_eq!(n.ctx.policy, UpdatePolicy::default());

        // Neither side sent multiprotocol capabilities.
        let n = run(&open(65000, 0, vec![]), &remote, true);
        assert_eq!(n.ctx.families, FamilySet::only(V4));
        assert!(n.missing_families.is_empty());
        assert_eq!(n.hold_time, 0);
        assert!(n.ctx.ibgp);
    }

    #[test]
    fn missing_families() {
        // We offer both; the peer only IPv6 (and a family we do not track).
        let local = open(65000, 90, vec![mp(V4), mp(V6)]);
        let remote = open(
            65001,
            90,
            vec![
                mp(V6),
                Capability::Multiprotocol {
                    afi: Afi::L2VPN,
                    safi: Safi::EVPN,
                },
            ],
        );
        let n = run(&local, &remote, false);
        assert_eq!(n.ctx.families, FamilySet::only(V6));
        assert_eq!(n.missing_families, FamilySet::only(V4));
    }

    #[test]
    fn add_path_directions() {
        let local = open(
            65000,
            90,
            vec![
                mp(V4),
                mp(V6),
                add_path(&[(V4, AddPathMode::Both), (V6, AddPathMode::Send)]),
            ],
        );
        // Peer: IPv4 send only; IPv6 both.
        let remote = open(
            65000,
            90,
            vec![
                mp(V4),
                mp(V6),
                add_path(&[(V4, AddPathMode::Send), (V6, AddPathMode::Both)]),
            ],
        );
        let n = run(&local, &remote, true);
        assert_eq!(n.ctx.add_path_rx, FamilySet::only(V4));
        assert_eq!(n.ctx.add_path_tx, FamilySet::only(V6));

        // Peer: receive only, both families.
        let remote = open(
            65000,
            90,
            vec![
                mp(V4),
                mp(V6),
                add_path(&[(V4, AddPathMode::Receive), (V6, AddPathMode::Receive)]),
            ],
        );
        let n = run(&local, &remote, true);
        assert!(n.ctx.add_path_rx.is_empty());
        assert_eq!(n.ctx.add_path_tx, FamilySet::ALL);

        // ADD-PATH for a family that was not negotiated counts for nothing.
        let remote = open(
            65000,
            90,
            vec![mp(V4), add_path(&[(V6, AddPathMode::Both)])],
        );
        let n = run(&local, &remote, true);
        assert!(n.ctx.add_path_rx.is_empty());
        assert!(n.ctx.add_path_tx.is_empty());
    }

    #[test]
    fn flags_need_both_sides() {
        let enh = Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            next_hop_afi: Afi::IPV6,
        }]);
        let all = |asn| {
            vec![
                mp(V4),
                Capability::FourOctetAs(asn),
                Capability::ExtendedMessage,
                Capability::RouteRefresh,
                Capability::EnhancedRouteRefresh,
                enh.clone(),
            ]
        };
        let local = open(65000, 90, all(65000));
        let n = run(&local, &open(65001, 90, all(65001)), false);
        assert!(n.ctx.four_octet_as && n.ctx.extended_message);
        assert!(n.route_refresh && n.enhanced_route_refresh);
        assert_eq!(n.ctx.extended_next_hop, FamilySet::only(V4));

        let n = run(&local, &open(65001, 90, vec![mp(V4), enh]), false);
        assert!(!n.ctx.four_octet_as && !n.ctx.extended_message);
        assert!(!n.route_refresh && !n.enhanced_route_refresh);
        assert_eq!(n.ctx.extended_next_hop, FamilySet::only(V4));

        // An IPv6 next hop for IPv6 routes is not extended next hop.
        let other = Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
            afi: Afi::IPV6,
            safi: Safi::UNICAST,
            next_hop_afi: Afi::IPV6,
        }]);
        let n = run(&local, &open(65001, 90, vec![mp(V4), other]), false);
        assert!(n.ctx.extended_next_hop.is_empty());
    }

    #[test]
    fn old_route_refresh_from_the_peer_counts() {
        let local = open(65000, 90, vec![Capability::RouteRefresh]);
        let remote = open(
            65001,
            90,
            vec![Capability::Unknown {
                code: CapabilityCode::ROUTE_REFRESH_OLD,
                value: bytes::Bytes::new(),
            }],
        );
        assert!(run(&local, &remote, false).route_refresh);
    }

    #[test]
    fn peer_informational_capabilities() {
        let gr = GracefulRestart {
            restart_state: true,
            notification: true,
            restart_time: 120,
            families: vec![GrFamily {
                afi: Afi::IPV4,
                safi: Safi::UNICAST,
                forwarding: true,
            }],
        };
        let llgr = vec![LlgrFamily {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            forwarding: false,
            stale_time: 3600,
        }];
        let remote = open(
            65001,
            90,
            vec![
                Capability::GracefulRestart(gr.clone()),
                Capability::LongLivedGracefulRestart(llgr.clone()),
                Capability::Role(BgpRole::CUSTOMER),
                Capability::Fqdn {
                    hostname: "edge1".into(),
                    domain: "example.net".into(),
                },
            ],
        );
        let n = run(&open(65000, 90, vec![]), &remote, false);
        assert_eq!(n.peer_graceful_restart, Some(gr));
        assert_eq!(n.peer_llgr, Some(llgr));
        assert_eq!(n.peer_role, Some(BgpRole::CUSTOMER));
        assert_eq!(
            n.peer_fqdn,
            Some(("edge1".to_owned(), "example.net".to_owned()))
        );

        let n = run(&open(65000, 90, vec![]), &open(65001, 90, vec![]), false);
        assert_eq!(n.peer_graceful_restart, None);
        assert_eq!(n.peer_llgr, None);
        assert_eq!(n.peer_role, None);
        assert_eq!(n.peer_fqdn, None);
    }
}
