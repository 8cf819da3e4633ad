//! The core's side of BMP ([`crate::bmp`]), sans-IO: what the collectors are told, as
//! [`Action::Monitor`]s. Nothing here runs while no collector is attached, except keeping
//! each Established peer's Peer Up (its two OPENs).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bgp_fsm::DownReason;
use bgp_wire::update::UpdateView;
use bgp_wire::{Notification, SessionCtx};
use bytes::{Bytes, BytesMut};

use super::core::{Action, Core};
use crate::bmp::wire::{PeerHeader, down_reason};
use crate::bmp::{Event, PeerDump, PeerStats, PeerUpInfo};

/// The BMP state of the core.
#[derive(Default)]
pub(super) struct Monitor {
    /// Attached collectors: id, wants pre-policy, wants post-policy.
    attached: Vec<(u64, bool, bool)>,
    /// The Peer Up of every Established peer.
    up: HashMap<IpAddr, Arc<PeerUpInfo>>,
    /// Prefixes rejected by import policy, per Established peer, this session.
    rejected: HashMap<IpAddr, u64>,
}

impl Monitor {
    fn on(&self) -> bool {
        !self.attached.is_empty()
    }

    fn pre(&self) -> bool {
        self.attached.iter().any(|a| a.1)
    }

    fn post(&self) -> bool {
        self.attached.iter().any(|a| a.2)
    }
}

/// The BMP reason (and its data) of a session that went down for `reason`.
pub(super) fn reason_of(reason: &DownReason) -> (u8, Bytes) {
    let pdu = |n: &Notification| {
        let mut b = BytesMut::with_capacity(n.encoded_len());
        n.encode(&mut b);
        b.freeze()
    };
    match reason {
        DownReason::NotificationSent(n)
        | DownReason::OpenRefused {
            notification: n,
            sent: true,
            ..
        } => (down_reason::LOCAL_NOTIFICATION, pdu(n)),
        DownReason::NotificationReceived(n) => (down_reason::REMOTE_NOTIFICATION, pdu(n)),
        DownReason::ConnectionFailed(_) => (down_reason::REMOTE_NO_NOTIFICATION, Bytes::new()),
        // FSM event 2, ManualStop (RFC 4271 §8.1.2).
        DownReason::Stopped | DownReason::NotSent(_) | DownReason::OpenRefused { .. } => (
            down_reason::LOCAL_NO_NOTIFICATION,
            Bytes::from_static(&[0, 2]),
        ),
    }
}

impl Core {
    /// Whether a collector is attached.
    pub(super) fn bmp_on(&self) -> bool {
        self.bmp.on()
    }

    fn monitor(&mut self, to: Option<u64>, event: Event) {
        self.actions.push_back(Action::Monitor { to, event });
    }

    /// A collector attached (`pre`/`post`: the route monitoring it wants): it gets, in
    /// the core's order, a Peer Up and the Adj-RIB-In of every Established peer, then the
    /// live stream.
    pub(crate) fn bmp_attach(&mut self, id: u64, pre: bool, post: bool) {
        self.bmp.attached.retain(|a| a.0 != id);
        self.bmp.attached.push((id, pre, post));
        let mut dump = Vec::with_capacity(self.bmp.up.len());
        let mut ups: Vec<_> = self.bmp.up.iter().collect();
        ups.sort_by_key(|(a, _)| **a);
        for (addr, up) in ups {
            let Some(p) = self.peers.get(addr) else {
                continue;
            };
            dump.push(PeerDump {
                up: up.clone(),
                routes: self.rib.adj_rib_in(p.id),
            });
        }
        self.monitor(Some(id), Event::Dump(dump));
    }

    /// A collector is gone (its connection closed, or it fell behind).
    pub(crate) fn bmp_detach(&mut self, id: u64) {
        self.bmp.attached.retain(|a| a.0 != id);
    }

    /// The counters of every Established peer, for the collector `id`.
    pub(crate) fn bmp_stats(&mut self, id: u64) {
        let mut stats: Vec<PeerStats> = self
            .bmp
            .up
            .keys()
            .filter_map(|a| {
                let p = self.peers.get(a)?;
                Some(PeerStats {
                    peer: *a,
                    rejected: self.bmp.rejected.get(a).copied().unwrap_or(0),
                    adj_rib_in: self.rib.adj_rib_in_len(p.id) as u64,
                })
            })
            .collect();
        stats.sort_by_key(|s| s.peer);
        self.monitor(Some(id), Event::Stats(stats));
    }

    /// The session of `peer` is Established.
    pub(super) fn bmp_up(
        &mut self,
        peer: IpAddr,
        ctx: &SessionCtx,
        peer_open: &bgp_wire::open::Open,
        local: Option<SocketAddr>,
        opened: Option<&crate::session::Opened>,
    ) {
        let (Some(local), Some(opened)) = (local, opened) else {
            return;
        };
        let mut received_open = BytesMut::with_capacity(peer_open.encoded_len());
        peer_open.encode(&mut received_open);
        let up = Arc::new(PeerUpInfo {
            header: PeerHeader {
                address: peer,
                asn: peer_open.asn,
                bgp_id: peer_open.bgp_id,
                legacy_as_path: !ctx.four_octet_as,
            },
            local,
            remote_port: opened.remote.port(),
            sent_open: opened.sent_open.clone(),
            received_open: received_open.freeze(),
            add_path: ctx.add_path_rx,
            extended_message: ctx.extended_message,
            families: ctx.families.iter().collect(),
        });
        self.bmp.up.insert(peer, up.clone());
        self.bmp.rejected.insert(peer, 0);
        if self.bmp.on() {
            self.monitor(None, Event::PeerUp(up));
        }
    }

    /// The session of `peer` left Established, or the peer is gone.
    pub(super) fn bmp_down(&mut self, peer: IpAddr, reason: u8, data: Bytes) {
        self.bmp.rejected.remove(&peer);
        if self.bmp.up.remove(&peer).is_some() && self.bmp.on() {
            self.monitor(None, Event::PeerDown { peer, reason, data });
        }
    }

    /// `peer` sent `frame`, which the RIB applied (`applied`).
    pub(super) fn bmp_update(
        &mut self,
        peer: IpAddr,
        id: rib::PeerId,
        frame: &bgp_wire::Frame,
        view: &UpdateView<'_>,
        applied: &rib::Applied,
    ) {
        if applied.rejected > 0
            && let Some(r) = self.bmp.rejected.get_mut(&peer)
        {
            *r += applied.rejected as u64;
        }
        if !self.bmp.on() || !self.bmp.up.contains_key(&peer) {
            return;
        }
        if self.bmp.pre() {
            self.monitor(
                None,
                Event::Update {
                    peer,
                    frame: frame.bytes.clone(),
                },
            );
        }
        if self.bmp.post() {
            let mut routes = Vec::new();
            for n in view.announced().chain(view.withdrawals()) {
                let attrs = self
                    .rib
                    .adj_rib_in_path(id, &n.prefix, n.path_id.unwrap_or(0));
                routes.push((n, attrs));
            }
            self.monitor(
                None,
                Event::Post {
                    peer,
                    routes,
                    end_of_rib: applied.end_of_rib,
                },
            );
        }
    }
}

impl Core {
    /// The peers of an MRT PEER_INDEX_TABLE: this speaker first (its own routes), then
    /// every peer in the table, by address.
    pub(crate) fn mrt_peers(&self) -> Vec<crate::mrt::Peer> {
        let mut v: Vec<crate::mrt::Peer> = self
            .peers
            .values()
            .map(|p| crate::mrt::Peer {
                bgp_id: self
                    .bmp
                    .up
                    .get(&p.address())
                    .map_or(std::net::Ipv4Addr::UNSPECIFIED, |u| u.header.bgp_id),
                address: p.address(),
                asn: p.settings.asn,
            })
            .collect();
        v.sort_by_key(|p| p.address);
        let me = crate::mrt::Peer {
            bgp_id: self.config.speaker.router_id,
            address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            asn: self.config.speaker.asn,
        };
        v.insert(0, me);
        v
    }

    /// Up to `limit` prefixes of the RIB from slot `from` on with their usable paths,
    /// each path with its peer's address (`None` for our own); see
    /// [`rib::Rib::paths_page`].
    pub(crate) fn rib_page(&self, from: u32, limit: usize) -> super::RibPage {
        let (page, next) = self.rib.paths_page(from, limit);
        let prefixes = page
            .into_iter()
            .map(|pp| {
                let paths = pp
                    .paths
                    .into_iter()
                    .filter_map(|sp| {
                        if sp.peer == rib::PeerId::LOCAL {
                            return Some(super::DumpPath {
                                peer: None,
                                path_id: None,
                                attrs: sp.attrs,
                            });
                        }
                        let addr = self.source(sp.peer)?;
                        // Identifiers in the families the peer sends them in (RFC 8050's
                        // ADD-PATH records for those only).
                        let family = match pp.prefix {
                            ipnet::IpNet::V4(_) => bgp_wire::Family::Ipv4Unicast,
                            ipnet::IpNet::V6(_) => bgp_wire::Family::Ipv6Unicast,
                        };
                        let add_path = self
                            .peers
                            .get(&addr)
                            .and_then(|p| p.session.ctx)
                            .is_some_and(|c| c.add_path_rx.contains(family));
                        Some(super::DumpPath {
                            peer: Some(addr),
                            path_id: add_path.then_some(sp.path_id),
                            attrs: sp.attrs,
                        })
                    })
                    .collect();
                (pp.prefix, paths)
            })
            .collect();
        super::RibPage { prefixes, next }
    }
}
