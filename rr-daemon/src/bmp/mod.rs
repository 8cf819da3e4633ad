//! BMP export (RFC 7854): the speaker reports its peers and their routes to monitoring
//! stations ("collectors", `[[bmp]]` in the configuration).
//!
//! ```text
//!  Core (sans-IO, speaker/monitor.rs)      shell (speaker/shell.rs)         collector task
//!  Established ──▶ Event::PeerUp  ─┐                                        (collector.rs)
//!  UPDATE frame ─▶ Event::Update  ─┼─ Action::Monitor ─▶ per collector: ─▶ encode (wire.rs),
//!  post-policy  ─▶ Event::Post    ─┤   (only while a      byte-counted      write to TCP
//!  down / removed ▶ Event::PeerDown┘    collector is      queue; over its
//!  attach ─────▶ Event::Dump (that collector only)  attached) limit: dropped, reconnect, resync
//! ```
//!
//! The core keeps, per Established peer, the few hundred bytes a Peer Up needs (the two
//! OPENs), whether or not a collector is configured; everything else exists only while a
//! collector is attached, and an UPDATE costs the core a reference count on its frame.
//! Pre-policy Route Monitoring carries the UPDATEs the peer sent, byte for byte;
//! post-policy (the L flag) carries the routes as the Adj-RIB-In holds them after import
//! policy, looked up prefix by prefix. A collector that connects (or comes back) gets a
//! Peer Up for each Established peer, the peer's Adj-RIB-In as stored (so a route that
//! import policy rejected without soft-reconfiguration is not in it), End-of-RIB, and then
//! the live stream. Encoding happens in the collector's task, not in the core.
//!
//! Memory per collector is bounded: the live events queued for it are counted in bytes
//! and capped by `queue_limit`; past it the collector is dropped (Termination, out of
//! resources), reconnects after its back-off and is resynchronised from the RIB. The
//! snapshot handed to a collector at (re)connection is a list of shared references to the
//! stored routes (about 40 bytes a route), drained as it is written.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bgp_wire::Family;
use bgp_wire::nlri::Nlri;
use bytes::Bytes;
use rib::AttrSet;

pub(crate) mod collector;
pub mod wire;

/// What a Peer Up says of a peer; kept by the core while the peer is Established.
#[derive(Clone, Debug)]
pub(crate) struct PeerUpInfo {
    /// The per-peer header of every message about this peer.
    pub(crate) header: wire::PeerHeader,
    /// Our end of the connection.
    pub(crate) local: SocketAddr,
    /// The peer's port.
    pub(crate) remote_port: u16,
    /// The OPEN we sent, whole.
    pub(crate) sent_open: Bytes,
    /// The OPEN we received, whole.
    pub(crate) received_open: Bytes,
    /// The families in which the peer sends ADD-PATH identifiers (the session's
    /// negotiated receive side): its stored routes of those families are shown with
    /// them, of the others without, as its own UPDATEs carry them (RFC 7854 §4.6).
    pub(crate) add_path: bgp_wire::FamilySet,
    /// The session takes messages up to 65535 bytes (RFC 8654): so do the UPDATEs made
    /// from its stored routes; else 4096.
    pub(crate) extended_message: bool,
    /// The negotiated families (an End-of-RIB each after a dump).
    pub(crate) families: Vec<Family>,
}

/// One stored route of a peer: its key and its attributes after import policy (`None`:
/// withdrawn).
pub(crate) type Route = (Nlri, Option<Arc<AttrSet>>);

/// A peer's part of a dump: its Peer Up and its Adj-RIB-In.
#[derive(Clone, Debug)]
pub(crate) struct PeerDump {
    pub(crate) up: Arc<PeerUpInfo>,
    pub(crate) routes: Vec<(Nlri, Arc<AttrSet>)>,
}

/// A peer's counters for a Statistics Report.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerStats {
    pub(crate) peer: IpAddr,
    /// Prefixes the import policy rejected in this session.
    pub(crate) rejected: u64,
    /// Routes in its Adj-RIB-In (after policy).
    pub(crate) adj_rib_in: u64,
}

/// What the core tells the collectors, in its order.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// A peer came up.
    PeerUp(Arc<PeerUpInfo>),
    /// An UPDATE the peer sent, whole (pre-policy).
    Update { peer: IpAddr, frame: Bytes },
    /// What an UPDATE changed in the peer's Adj-RIB-In after policy, and the End-of-RIB
    /// it was.
    Post {
        peer: IpAddr,
        routes: Vec<Route>,
        end_of_rib: Option<Family>,
    },
    /// A peer went down ([`wire::down_reason`]) with the reason's data.
    PeerDown {
        peer: IpAddr,
        reason: u8,
        data: Bytes,
    },
    /// Everything a collector that just attached needs before the live stream.
    Dump(Vec<PeerDump>),
    /// The counters of every Established peer.
    Stats(Vec<PeerStats>),
}

impl Event {
    /// About how many bytes the event holds in a queue (for the collector's bound).
    pub(crate) fn cost(&self) -> usize {
        const OVERHEAD: usize = 64;
        OVERHEAD
            + match self {
                Self::PeerUp(u) => u.sent_open.len() + u.received_open.len(),
                Self::Update { frame, .. } => frame.len(),
                Self::Post { routes, .. } => routes.len() * 40,
                Self::PeerDown { data, .. } => data.len(),
                // A dump is bounded by the table, not by churn: not counted.
                Self::Dump(_) => 0,
                Self::Stats(s) => s.len() * 32,
            }
    }
}
