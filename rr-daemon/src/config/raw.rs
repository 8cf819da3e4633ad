//! The file as written: serde structures, every one with `deny_unknown_fields`. Their
//! value types (`values`) check what needs only the value itself; everything that
//! relates two values is left to `resolve`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU16, NonZeroU32};

use serde::Deserialize;

use super::model::LogFormat;
use super::values::{
    Action, AddPath, Asn, BfdValue, CommunityValue, DefaultAction, Families, GracefulRestart,
    HoldTime, Interface, IpList, LargeCommunityValue, ListenAddr, LogLevel, LongLivedStaleTime,
    MaxPrefixValue, Multihop, NextHopSelf, Password, PasswordFile, PeerAddress, Prefix,
    PrefixEntry, Protocol, SendHoldTime, TtlSecurity,
};

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) speaker: RawSpeaker,
    pub(super) api: Option<RawApi>,
    pub(super) control: Option<RawControl>,
    pub(super) fib: Option<RawFib>,
    pub(super) learn: Option<RawLearn>,
    pub(super) mesh: Option<RawMesh>,
    #[serde(default)]
    pub(super) peer_group: Vec<RawGroup>,
    #[serde(default)]
    pub(super) peer: Vec<RawPeer>,
    #[serde(default)]
    pub(super) dynamic_neighbors: Vec<RawDynamic>,
    #[serde(default)]
    pub(super) policy: Vec<RawPolicy>,
    #[serde(default)]
    pub(super) route: Vec<RawRoute>,
    #[serde(default)]
    pub(super) originate: Vec<RawOriginate>,
    #[serde(default)]
    pub(super) bmp: Vec<RawBmp>,
}

/// `[[bmp]]`: a BMP collector (RFC 7854) the speaker connects to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBmp {
    pub(super) address: IpAddr,
    pub(super) port: NonZeroU16,
    pub(super) route_monitoring: Option<super::model::RouteMonitoring>,
    pub(super) statistics_interval: Option<u32>,
    pub(super) queue_limit: Option<NonZeroU32>,
    pub(super) retry: Option<NonZeroU16>,
}

/// `[[originate]]`: one of the node's blocks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOriginate {
    #[serde(deserialize_with = "super::values::net")]
    pub(super) prefix: ipnet::IpNet,
    pub(super) blackhole: Option<bool>,
    pub(super) metric: Option<u32>,
    pub(super) kernel_metric: Option<u32>,
}

/// `[[route]]`: a route this speaker originates.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    #[serde(deserialize_with = "super::values::net")]
    pub(super) prefix: ipnet::IpNet,
    pub(super) next_hop: Option<IpAddr>,
    pub(super) med: Option<u32>,
    pub(super) local_pref: Option<u32>,
    pub(super) communities: Option<Vec<CommunityValue>>,
    pub(super) large_communities: Option<Vec<LargeCommunityValue>>,
}

/// `[speaker]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpeaker {
    /// Required: missing is reported by `resolve`, after the environment's overrides.
    pub(super) asn: Option<Asn>,
    /// Required, as `asn`.
    pub(super) router_id: Option<IpAddr>,
    pub(super) listen: Option<Vec<ListenAddr>>,
    pub(super) cluster_id: Option<Ipv4Addr>,
    pub(super) hold_time: Option<HoldTime>,
    pub(super) keepalive_time: Option<NonZeroU16>,
    pub(super) send_hold_time: Option<SendHoldTime>,
    pub(super) connect_retry: Option<NonZeroU16>,
    pub(super) client_to_client: Option<bool>,
    pub(super) always_compare_med: Option<bool>,
    pub(super) missing_med_worst: Option<bool>,
    pub(super) default_local_pref: Option<u32>,
    pub(super) graceful_restart: Option<GracefulRestart>,
    pub(super) stale_time: Option<NonZeroU16>,
    pub(super) graceful_stop: Option<bool>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) log_level: Option<LogLevel>,
}

/// `[api]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) enabled: Option<bool>,
    pub(super) listen: Option<SocketAddr>,
    pub(super) readiness_grace: Option<u32>,
    pub(super) ready_requires_fib: Option<bool>,
}

/// `[control]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub(super) enabled: Option<bool>,
    pub(super) socket: Option<std::path::PathBuf>,
}

/// `[fib]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFib {
    pub(super) enabled: Option<bool>,
    pub(super) table: Option<NonZeroU32>,
    pub(super) protocol: Option<Protocol>,
    pub(super) metric: Option<u32>,
    pub(super) metric_from_local_pref: Option<bool>,
    pub(super) bird16_metric: Option<bool>,
    #[serde(default, deserialize_with = "super::values::opt_net")]
    pub(super) node_subnet: Option<ipnet::IpNet>,
    pub(super) tunnel_device: Option<String>,
    #[serde(default)]
    pub(super) ip_pool: Vec<RawIpPool>,
    #[serde(default)]
    pub(super) static_route: Vec<RawStaticRoute>,
}

/// `[[fib.static_route]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaticRoute {
    #[serde(deserialize_with = "super::values::net")]
    pub(super) prefix: ipnet::IpNet,
    pub(super) via: IpAddr,
    pub(super) metric: Option<u32>,
}

/// `[[fib.ip_pool]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIpPool {
    #[serde(deserialize_with = "super::values::net")]
    pub(super) prefix: ipnet::IpNet,
    pub(super) ipip: Option<super::model::IpipMode>,
    pub(super) install: Option<bool>,
}

/// `[learn]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLearn {
    pub(super) enabled: Option<bool>,
    pub(super) pools: Option<Vec<Prefix>>,
    pub(super) elevated_below: Option<u32>,
    pub(super) direct: Option<bool>,
    pub(super) direct_exclude: Option<Vec<String>>,
    pub(super) route_exclude: Option<Vec<String>>,
    pub(super) resync: Option<NonZeroU32>,
}

/// `[mesh]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMesh {
    pub(super) enabled: Option<bool>,
    pub(super) nodes: Vec<IpAddr>,
    pub(super) group: Option<String>,
    pub(super) local_address: Option<IpList>,
    pub(super) bfd: Option<BfdValue>,
}

/// `[[dynamic_neighbors]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDynamic {
    pub(super) prefix: Option<Prefix>,
    pub(super) interface: Option<Interface>,
    pub(super) group: String,
    pub(super) limit: Option<NonZeroU32>,
}

/// `[[policy]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) name: String,
    pub(super) default_action: Option<DefaultAction>,
    #[serde(default)]
    pub(super) rule: Vec<RawRule>,
}

/// `[[policy.rule]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) prefixes: Option<Vec<PrefixEntry>>,
    pub(super) communities: Option<Vec<CommunityValue>>,
    pub(super) large_communities: Option<Vec<LargeCommunityValue>>,
    pub(super) as_path_longer_than: Option<u32>,
    pub(super) set_local_pref: Option<u32>,
    pub(super) set_med: Option<u32>,
    pub(super) set_next_hop: Option<IpAddr>,
    pub(super) add_communities: Option<Vec<CommunityValue>>,
    pub(super) remove_communities: Option<Vec<CommunityValue>>,
    pub(super) add_large_communities: Option<Vec<LargeCommunityValue>>,
    pub(super) remove_large_communities: Option<Vec<LargeCommunityValue>>,
    pub(super) action: Action,
}

/// Declares the peer settings once, for `[[peer]]`, `[[peer_group]]` and the merged
/// [`PeerFields`].
macro_rules! peer_fields {
    ($($f:ident: $t:ty,)*) => {
        /// The peer settings a `[[peer]]` or `[[peer_group]]` sets; `None` where unset.
        #[derive(Clone, Debug, Default)]
        pub(super) struct PeerFields {
            $(pub(super) $f: Option<$t>,)*
        }

        impl PeerFields {
            /// Whether `key` is set.
            pub(super) fn has(&self, key: &str) -> bool {
                match key {
                    $(stringify!($f) => self.$f.is_some(),)*
                    _ => false,
                }
            }
        }

        /// `[[peer]]`.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawPeer {
            pub(super) address: PeerAddress,
            pub(super) group: Option<String>,
            $($f: Option<$t>,)*
        }

        impl RawPeer {
            /// The peer settings.
            pub(super) fn fields(&self) -> PeerFields {
                PeerFields { $($f: self.$f.clone(),)* }
            }
        }

        /// `[[peer_group]]`.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawGroup {
            pub(super) name: String,
            $($f: Option<$t>,)*
        }

        impl RawGroup {
            /// The peer settings.
            pub(super) fn fields(&self) -> PeerFields {
                PeerFields { $($f: self.$f.clone(),)* }
            }
        }
    };
}

peer_fields! {
    asn: Asn,
    port: NonZeroU16,
    source_address: IpAddr,
    passive: bool,
    rr_client: bool,
    cluster_id: Ipv4Addr,
    client_to_client: bool,
    multihop: Multihop,
    ttl_security: TtlSecurity,
    hold_time: HoldTime,
    keepalive_time: NonZeroU16,
    send_hold_time: SendHoldTime,
    connect_retry: NonZeroU16,
    families: Families,
    add_path: AddPath,
    extended_next_hop: bool,
    extended_message: bool,
    enforce_first_as: bool,
    soft_reconfiguration_inbound: bool,
    next_hop_self: NextHopSelf,
    next_hop_keep: bool,
    import: String,
    export: String,
    max_prefix: MaxPrefixValue,
    graceful_restart: GracefulRestart,
    stale_time: NonZeroU16,
    long_lived_stale_time: LongLivedStaleTime,
    password: Password,
    password_file: PasswordFile,
    bfd: BfdValue,
    description: String,
    enabled: bool,
    local_as: Asn,
    allow_local_as: u8,
    idle_hold: NonZeroU16,
    idle_hold_max: NonZeroU16,
}
