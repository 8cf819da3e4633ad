//! What one session is configured with: RFC 4271 §8.1.1 optional session attributes and
//! §10 timer values.

use std::net::Ipv4Addr;
use std::time::Duration;

use bgp_wire::capability::Capability;
use bgp_wire::open::Open;
use bgp_wire::{Afi, Family, FamilySet, Safi};

/// Timer values (RFC 4271 §10, with the defaults BIRD and Calico use where the RFC
/// suggests none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Hold time we propose in our OPEN, in seconds (0: no keepalives; else at least 3).
    pub hold_time: u16,
    /// Seconds between KEEPALIVEs; `None` for a third of the negotiated hold time.
    pub keepalive_time: Option<u16>,
    /// Smallest hold time we accept from the peer; 0 sets no minimum, so a peer's 0 ("no
    /// keepalives") is accepted, as RFC 4271 §4.2 allows.
    pub min_hold_time: u16,
    /// Between outbound connection attempts (RFC 4271 suggests 120 s; Calico uses 5 s).
    pub connect_retry: Duration,
    /// Hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
    pub open_hold: Duration,
    /// Time in Idle after an error before we connect out again (the peer's connection is
    /// accepted meanwhile).
    pub idle_hold: Duration,
    /// Ceiling of the damped idle hold time (DampPeerOscillations).
    pub idle_hold_max: Duration,
    /// Established this long, a session is stable: the damping backoff starts over.
    pub stable_time: Duration,
    /// Our output may stay blocked this long before the peer is dropped (RFC 9687);
    /// `None`: the larger of 8 minutes and twice the hold time.
    pub send_hold: Option<Duration>,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            hold_time: 90,
            keepalive_time: None,
            min_hold_time: 0,
            connect_retry: Duration::from_secs(120),
            open_hold: Duration::from_secs(240),
            idle_hold: Duration::from_secs(5),
            idle_hold_max: Duration::from_secs(120),
            stable_time: Duration::from_secs(60),
            send_hold: None,
        }
    }
}

/// One session's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our AS number (4-octet).
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The AS the peer must claim.
    pub peer_as: u32,
    /// Capabilities of our OPEN. [`Config::new`] fills in multiprotocol for
    /// `families`, route refresh and 4-octet AS. Not enhanced route refresh: its answer
    /// needs BoRR and EoRR markers (RFC 7313 §4) that the speaker does not send.
    pub capabilities: Vec<Capability>,
    /// Families the session is useless without: a peer lacking one is refused with 2/7.
    pub required_families: FamilySet,
    /// PassiveTcpEstablishment: never connect out, wait for the peer.
    pub passive: bool,
    /// AllowAutomaticStart: after an error, restart by itself once the idle hold time is
    /// over, and accept the peer's connection meanwhile. Without it, a session that failed
    /// stays in Idle, refusing the peer, until a manual start.
    pub allow_automatic_start: bool,
    /// DampPeerOscillations: double the idle hold time after each failure in a row. Failed
    /// outbound attempts, Ceases received and graceful restarts are not failures.
    pub damp_peer_oscillations: bool,
    /// CollisionDetectEstablishedState: resolve collisions with an Established connection too.
    pub collision_detect_established: bool,
    /// SendNOTIFICATIONwithoutOPEN: a NOTIFICATION may go out before our OPEN did.
    pub send_notification_without_open: bool,
    /// DelayOpen: wait this long for the peer's OPEN before sending ours.
    pub delay_open: Option<Duration>,
    /// Timer values.
    pub timing: Timing,
    /// Seed of the jitter generator, so that a session replays exactly in tests.
    pub jitter_seed: u64,
}

impl Config {
    /// A session to `peer_as` for IPv4 and IPv6 unicast, active, restarting by itself,
    /// with damping, and the timers of [`Timing::default`].
    pub fn new(local_as: u32, router_id: Ipv4Addr, peer_as: u32) -> Self {
        let mut c = Self {
            local_as,
            router_id,
            peer_as,
            capabilities: Vec::new(),
            required_families: FamilySet::EMPTY,
            passive: false,
            allow_automatic_start: true,
            damp_peer_oscillations: true,
            collision_detect_established: false,
            send_notification_without_open: false,
            delay_open: None,
            timing: Timing::default(),
            jitter_seed: u64::from(u32::from(router_id)) ^ u64::from(peer_as),
        };
        c.set_families(FamilySet::ALL);
        c
    }

    /// Replaces the capabilities with the defaults for `families`.
    pub fn set_families(&mut self, families: FamilySet) {
        self.capabilities = families
            .iter()
            .map(|f| Capability::Multiprotocol {
                afi: f.afi(),
                safi: f.safi(),
            })
            .chain([
                Capability::RouteRefresh,
                Capability::FourOctetAs(self.local_as),
            ])
            .collect();
    }

    /// Whether the session is internal.
    pub const fn ibgp(&self) -> bool {
        self.local_as == self.peer_as
    }

    /// The OPEN we send. A 4-octet AS capability is added if the list lacks one, since
    /// the codec always speaks 4-octet AS when the peer does (RFC 6793).
    pub fn open(&self) -> Open {
        let mut capabilities = self.capabilities.clone();
        if !capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
        {
            capabilities.push(Capability::FourOctetAs(self.local_as));
        }
        Open {
            asn: self.local_as,
            hold_time: self.timing.hold_time,
            bgp_id: self.router_id,
            capabilities,
        }
    }

    /// The families of our multiprotocol capabilities.
    pub fn families(&self) -> FamilySet {
        self.capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol { afi, safi } => Family::from_afi_safi(*afi, *safi),
                _ => None,
            })
            .collect()
    }
}

/// The multiprotocol capability of `f`, encoded, for a 2/7 NOTIFICATION's data.
pub(crate) fn mp_capability(f: Family) -> Capability {
    let (afi, safi): (Afi, Safi) = (f.afi(), f.safi());
    Capability::Multiprotocol { afi, safi }
}
