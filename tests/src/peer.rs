//! What the tests ask of a real peer, and of one acting as a route-reflector client:
//! [`Peer`], [`Client`] and their configurations.

use std::net::{IpAddr, Ipv4Addr};

// ---------------------------------------------------------------------------------- peers

/// One BGP session's parameters, seen from the peer being configured.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Name of the session (BIRD protocol name; in file names).
    pub name: String,
    /// The peer's own AS.
    pub local_as: u32,
    /// The peer's own address (also its router id).
    pub local_addr: Ipv4Addr,
    /// Our speaker's AS.
    pub remote_as: u32,
    /// Our speaker's address.
    pub remote_addr: Ipv4Addr,
    /// Hold time, seconds.
    pub hold: u16,
    /// Keepalive interval, seconds.
    pub keepalive: u16,
    /// Connect retry interval, seconds.
    pub connect_retry: u16,
    /// Never connect out.
    pub passive: bool,
}

/// What the tests ask of any real peer.
pub trait Peer {
    /// Which implementation ("BIRD 2", "BIRD 1.6", "FRR").
    fn kind(&self) -> &'static str;
    /// The BGP state of the session as the peer reports it (`Established`, `Active`, ...).
    fn state(&self) -> Result<String, String>;
    /// The peer's full description of the session (for assertions and diagnostics).
    fn details(&self) -> Result<String, String>;
    /// When the session's last error is a Cease / Administrative Shutdown *received* from
    /// our speaker: `Some(shutdown communication)` (empty when there was none).
    fn received_admin_shutdown(&self) -> Result<Option<String>, String>;
    /// Stops the daemon (SIGTERM: it closes its sessions with a Cease).
    fn stop(&mut self) -> Result<(), String>;
    /// Starts it again with the same configuration.
    fn start_again(&mut self) -> Result<(), String>;
    /// Stops and starts it.
    fn restart(&mut self) -> Result<(), String> {
        self.stop()?;
        self.start_again()
    }
    /// The last lines of its log and stderr.
    fn log_tail(&self, lines: usize) -> String;
}

/// One route a reflector client originates.
#[derive(Clone, Debug)]
pub struct ClientRoute {
    /// The prefix: `"198.51.100.0/26"`, `"2001:db8:11::/48"`.
    pub prefix: String,
    /// A standard community to attach, `(65000, 11)`.
    pub community: Option<(u16, u16)>,
    /// The LOCAL_PREF to send (otherwise the client's default, 100).
    pub local_pref: Option<u32>,
}

impl ClientRoute {
    /// A route with no attributes of its own.
    pub fn plain(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
            community: None,
            local_pref: None,
        }
    }

    /// A route with a community and a LOCAL_PREF.
    pub fn tagged(prefix: &str, community: (u16, u16), local_pref: u32) -> Self {
        Self {
            prefix: prefix.into(),
            community: Some(community),
            local_pref: Some(local_pref),
        }
    }

    /// Whether it is an IPv6 prefix.
    pub fn is_ipv6(&self) -> bool {
        self.prefix.contains(':')
    }

    /// Its community as the peers print it: `"65000:11"`.
    pub fn community_text(&self) -> Option<String> {
        self.community.map(|(a, v)| format!("{a}:{v}"))
    }
}

/// A route-reflector client: an iBGP peer of our reflector that originates `routes` and
/// imports everything. Its BGP session is named `upstream` (BIRD), its static routes are in
/// `static1` (IPv4) and `static6` (IPv6).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Names its files (and FRR's hostname).
    pub name: String,
    /// Its BGP identifier.
    pub router_id: Ipv4Addr,
    /// Its AS (the reflector's, for a client).
    pub asn: u32,
    /// Its session address (IPv4 or IPv6).
    pub addr: IpAddr,
    /// The reflector's session address.
    pub rr_addr: IpAddr,
    /// The reflector's AS.
    pub rr_asn: u32,
    /// Hold time, seconds.
    pub hold: u16,
    /// Keepalive interval, seconds.
    pub keepalive: u16,
    /// Connect retry interval, seconds.
    pub connect_retry: u16,
    /// BIRD: seconds before it first connects out, and again after a connection closes
    /// (`connect delay time`; BIRD's default is 5). FRR ignores it.
    pub connect_delay: u16,
    /// Never connect out.
    pub passive: bool,
    /// What it originates.
    pub routes: Vec<ClientRoute>,
}

impl ClientConfig {
    /// The families it needs: the session's, and those of its routes.
    pub(crate) fn families(&self) -> (bool, bool) {
        let v4 = self.addr.is_ipv4() || self.routes.iter().any(|r| !r.is_ipv6());
        let v6 = self.addr.is_ipv6() || self.routes.iter().any(ClientRoute::is_ipv6);
        (v4, v6)
    }
}

/// Settings of a route-reflector client beyond [`ClientConfig`] (default: none of them).
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// ADD-PATH (RFC 7911) on the session to the reflector, receive and send: BIRD 2
    /// `add paths on` in each channel, BIRD 1.6 `add paths on`, FRR
    /// `addpath-tx-all-paths` (FRR 8.4 offers to receive whenever the neighbor has no
    /// `disable-addpath-rx`; it has no `addpath-rx-*` command).
    pub add_path: bool,
    /// Graceful restart (RFC 4724) on the session to the reflector, as restarting speaker
    /// and as helper: BIRD `graceful restart on;` in the protocol, FRR
    /// `bgp graceful-restart` in `router bgp`.
    pub graceful_restart: bool,
    /// BIRD only: configuration appended verbatim after the client's own (another
    /// protocol, such as an eBGP session to an observer). An FRR client refuses it.
    pub extra_config: String,
}

/// A route as a client learned it from the reflector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// The prefix, as the client prints it.
    pub prefix: String,
    /// NEXT_HOP (IPv4) or the MP_REACH next hops (global first).
    pub next_hops: Vec<String>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// Standard communities, `"65000:11"`, sorted.
    pub communities: Vec<String>,
    /// ORIGINATOR_ID.
    pub originator_id: Option<String>,
    /// CLUSTER_LIST, in order.
    pub cluster_list: Vec<String>,
    /// AS_PATH as printed (empty for a route from the own AS).
    pub as_path: String,
}

/// A real peer acting as a route-reflector client (started with `start_client`).
pub trait Client: Peer {
    /// Its configuration.
    fn client(&self) -> &ClientConfig;
    /// The routes it learned over its session with the reflector.
    fn learned(&self) -> Result<Vec<Learned>, String>;
    /// Stops originating `prefix` (BIRD: reconfigure without it; FRR: `no network`).
    fn withdraw(&mut self, prefix: &str) -> Result<(), String>;
    /// Evidence that the reflector sent the client one of its own routes back, if any.
    /// BIRD treats such a route (its own ORIGINATOR_ID) as a withdrawal, so any received
    /// import withdrawal counts (only meaningful before anything was withdrawn); FRR logs
    /// every received prefix (`debug bgp updates in`), also the ones it denies.
    fn own_routes_echoed(&self) -> Result<Option<String>, String>;
    /// When its session last changed state (BIRD: `Since`, to the millisecond with BIRD 2;
    /// FRR: the Established time, to the second): it changes whenever the session resets.
    fn session_since(&self) -> Result<String, String>;
}

pub(crate) const INSTALL_HINT: &str = "run `sudo tests/scripts/install-peers.sh` first";
