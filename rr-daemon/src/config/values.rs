//! Value types of the file, each checking what needs only the value itself, inside
//! the deserializer so that errors are located at the value (list items included).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use bgp_wire::attr::{Community, LargeCommunity};
use bgp_wire::{Family, FamilySet};
use ipnet::IpNet;
use rib::AddPathMode;
use rib::policy::PrefixMatch;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Unexpected, Visitor};

/// A bool, an integer or a string: values that take more than one form.
enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    Str(&'a str),
}

/// Why a [`Scalar`] was refused.
enum Bad {
    /// Not one of the expected forms.
    Form,
    /// The right form, with this problem.
    Msg(String),
}

/// Deserializes a [`Scalar`] and converts it inside the visitor, so that an error is
/// located at the value itself, list items included.
fn scalar<'de, D: Deserializer<'de>, T>(
    d: D,
    expected: &'static str,
    conv: fn(&Scalar<'_>) -> Result<T, Bad>,
) -> Result<T, D::Error> {
    struct V<T> {
        expected: &'static str,
        conv: fn(&Scalar<'_>) -> Result<T, Bad>,
    }

    impl<T> V<T> {
        fn finish<E: de::Error>(self, s: &Scalar<'_>) -> Result<T, E> {
            (self.conv)(s).map_err(|bad| match bad {
                Bad::Msg(m) => E::custom(m),
                Bad::Form => {
                    let unexpected = match *s {
                        Scalar::Bool(b) => Unexpected::Bool(b),
                        Scalar::Int(n) => Unexpected::Signed(n),
                        Scalar::Str(s) => Unexpected::Str(s),
                    };
                    E::invalid_value(unexpected, &self.expected)
                }
            })
        }
    }

    impl<T> Visitor<'_> for V<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expected)
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
            self.finish(&Scalar::Bool(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.finish(&Scalar::Int(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.finish(&Scalar::Int(i64::try_from(v).unwrap_or(i64::MAX)))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            self.finish(&Scalar::Str(v))
        }
    }

    d.deserialize_any(V { expected, conv })
}

/// Implements `Deserialize` from a string through `parse(&str) -> Result<Self, String>`.
macro_rules! from_string {
    ($t:ty, $expected:literal) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                scalar(d, $expected, |s| match s {
                    Scalar::Str(s) => Self::parse(s).map_err(Bad::Msg),
                    _ => Err(Bad::Form),
                })
            }
        }
    };
}

/// An AS number other than 0 (RFC 7607).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Asn(pub(super) u32);

impl<'de> Deserialize<'de> for Asn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            0 => Err(de::Error::custom("AS 0 is reserved (RFC 7607)")),
            n => Ok(Self(n)),
        }
    }
}

/// A hold time: 0 or at least 3 seconds (RFC 4271 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HoldTime(pub(super) u16);

impl<'de> Deserialize<'de> for HoldTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u16::deserialize(d)? {
            n @ (1 | 2) => Err(de::Error::custom(format!(
                "hold time {n} is not allowed: 0 (no keepalives) or at least 3 seconds \
                 (RFC 4271 §4.2)"
            ))),
            n => Ok(Self(n)),
        }
    }
}

/// A send hold time (RFC 9687): at least 1 second. There is no "off": unset, the
/// session layer takes the RFC's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SendHoldTime(pub(super) u16);

impl<'de> Deserialize<'de> for SendHoldTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u16::deserialize(d)? {
            0 => Err(de::Error::custom(
                "send hold time 0 is not allowed: at least 1 second; leave it out for the \
                 default, the larger of 480 s and twice the hold time (RFC 9687)",
            )),
            n => Ok(Self(n)),
        }
    }
}

/// The routing protocol number of kernel routes: 1 to 255.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Protocol(pub(super) u8);

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            0 => Err(de::Error::custom(
                "protocol 0 is RTPROT_UNSPEC: use 1 to 255",
            )),
            n => Ok(Self(n)),
        }
    }
}

/// The TTL of outgoing packets: `true` is 255, `false` is 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Multihop(pub(super) u8);

impl<'de> Deserialize<'de> for Multihop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "true, false or a TTL from 1 to 255", |s| match *s {
            Scalar::Bool(b) => Ok(Self(if b { 255 } else { 1 })),
            Scalar::Int(n @ 1..=255) => Ok(Self(n as u8)),
            _ => Err(Bad::Form),
        })
    }
}

/// GTSM (RFC 5082): the most hops the peer may be away (`true` is 1); `None` for off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TtlSecurity(pub(super) Option<u8>);

impl<'de> Deserialize<'de> for TtlSecurity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(
            d,
            "true, false or a hop count from 1 to 254",
            |s| match *s {
                Scalar::Bool(b) => Ok(Self(b.then_some(1))),
                Scalar::Int(n @ 1..=254) => Ok(Self(Some(n as u8))),
                _ => Err(Bad::Form),
            },
        )
    }
}

/// Graceful restart: `true` is 120 s, `false` off, else the restart time (1 to 4095 s,
/// the 12 bits of RFC 4724 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GracefulRestart(pub(super) Option<u16>);

/// Restart time of `graceful_restart = true`.
pub(super) const DEFAULT_RESTART_TIME: u16 = 120;

impl<'de> Deserialize<'de> for GracefulRestart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WHAT: &str = "true, false or a restart time from 1 to 4095 seconds";
        scalar(d, WHAT, |s| match *s {
            Scalar::Bool(b) => Ok(Self(b.then_some(DEFAULT_RESTART_TIME))),
            Scalar::Int(n @ 1..=4095) => Ok(Self(Some(n as u16))),
            _ => Err(Bad::Form),
        })
    }
}

/// `long_lived_stale_time`: `false` (off) or the long-lived stale time (1 to 16777215 s,
/// the 24 bits of RFC 9494 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LongLivedStaleTime(pub(super) Option<u32>);

impl<'de> Deserialize<'de> for LongLivedStaleTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WHAT: &str = "false or a long-lived stale time from 1 to 16777215 seconds";
        scalar(d, WHAT, |s| match *s {
            Scalar::Bool(false) => Ok(Self(None)),
            Scalar::Int(n @ 1..=0xff_ffff) => Ok(Self(Some(n as u32))),
            _ => Err(Bad::Form),
        })
    }
}

/// `next_hop_self`: `false`, `true` (not on reflected routes) or `"force"` (on all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NextHopSelf {
    Off,
    On,
    Force,
}

impl<'de> Deserialize<'de> for NextHopSelf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "true, false or \"force\"", |s| match *s {
            Scalar::Bool(false) => Ok(Self::Off),
            Scalar::Bool(true) => Ok(Self::On),
            Scalar::Str("force") => Ok(Self::Force),
            _ => Err(Bad::Form),
        })
    }
}

/// A TCP-MD5 key (RFC 2385): 1 to 80 bytes, the Linux limit.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Password(pub(super) String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_md5_key(&s).map_err(de::Error::custom)?;
        Ok(Self(s))
    }
}

/// A TCP-MD5 key has 1 to 80 bytes, the Linux limit.
pub(super) fn check_md5_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 80 {
        return Err(format!(
            "a TCP-MD5 key has 1 to 80 bytes, this one {}",
            key.len()
        ));
    }
    Ok(())
}

/// `password_file`: the file that holds a TCP-MD5 key (a mounted Kubernetes Secret, a
/// file only root reads), read when the configuration is loaded, so at every reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PasswordFile(pub(super) std::path::PathBuf);

impl<'de> Deserialize<'de> for PasswordFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(de::Error::custom("must not be empty"));
        }
        Ok(Self(s.into()))
    }
}

/// A non-empty list of distinct families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Families(pub(super) FamilySet);

/// A family name: `ipv4-unicast` (or `ipv4`), `ipv6-unicast` (or `ipv6`).
struct FamilyName(Family);

impl FamilyName {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ipv4-unicast" | "ipv4" => Ok(Self(Family::Ipv4Unicast)),
            "ipv6-unicast" | "ipv6" => Ok(Self(Family::Ipv6Unicast)),
            _ => Err(format!(
                "unknown family {s:?}, expected \"ipv4-unicast\" or \"ipv6-unicast\""
            )),
        }
    }
}

from_string!(FamilyName, "a family name");

impl<'de> Deserialize<'de> for Families {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<FamilyName>::deserialize(d)?;
        let mut set = FamilySet::EMPTY;
        for FamilyName(f) in names {
            if set.contains(f) {
                return Err(de::Error::custom(format!("{f} is listed twice")));
            }
            set.insert(f);
        }
        if set.is_empty() {
            return Err(de::Error::custom(
                "at least one family is needed (\"ipv4-unicast\", \"ipv6-unicast\")",
            ));
        }
        Ok(Self(set))
    }
}

/// ADD-PATH (RFC 7911): `true` is receive and send all, `false` neither, or a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AddPath {
    pub(super) receive: bool,
    pub(super) send: Option<AddPathMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPathTable {
    #[serde(default)]
    receive: bool,
    send: Option<SendMode>,
}

/// `add_path.send`: `"all"`, `"ecmp"`, `"best-N"` (N from 2 to 255) or `false`.
struct SendMode(Option<AddPathMode>);

impl<'de> Deserialize<'de> for SendMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WHAT: &str = "\"all\", \"ecmp\", \"best-N\" (N from 2 to 255) or false";
        scalar(d, WHAT, |s| match *s {
            Scalar::Bool(false) => Ok(Self(None)),
            Scalar::Str("all") => Ok(Self(Some(AddPathMode::All))),
            Scalar::Str("ecmp") => Ok(Self(Some(AddPathMode::Ecmp))),
            Scalar::Str(m) => match m.strip_prefix("best-").map(str::parse::<u8>) {
                Some(Ok(n @ 2..)) => Ok(Self(Some(AddPathMode::Best(n)))),
                _ => Err(Bad::Form),
            },
            _ => Err(Bad::Form),
        })
    }
}

impl<'de> Deserialize<'de> for AddPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AddPath;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a table { receive = BOOL, send = MODE }")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<AddPath, E> {
                Ok(AddPath {
                    receive: v,
                    send: v.then_some(AddPathMode::All),
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AddPath, A::Error> {
                let t = AddPathTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(AddPath {
                    receive: t.receive,
                    send: t.send.and_then(|s| s.0),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `max_prefix`: `false`, a limit, or `{ limit = N, warn_only = BOOL, restart = SECONDS }`;
/// with the hold-down time of a peer that crosses the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MaxPrefixValue(pub(super) Option<rib::MaxPrefix>, pub(super) u32);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxPrefixTable {
    limit: NonZeroU32,
    #[serde(default)]
    warn_only: bool,
    restart: Option<NonZeroU32>,
}

impl<'de> Deserialize<'de> for MaxPrefixValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WHAT: &str = "false, a limit from 1 to 4294967295, or a table \
                            { limit = N, warn_only = BOOL, restart = SECONDS }";
        const RESTART: u32 = super::resolve::MAX_PREFIX_RESTART;
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaxPrefixValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(WHAT)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<MaxPrefixValue, E> {
                if v {
                    return Err(E::invalid_value(Unexpected::Bool(v), &WHAT));
                }
                Ok(MaxPrefixValue(None, RESTART))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaxPrefixValue, E> {
                match u32::try_from(v) {
                    Ok(limit @ 1..) => Ok(MaxPrefixValue(
                        Some(rib::MaxPrefix {
                            limit,
                            warn_only: false,
                        }),
                        RESTART,
                    )),
                    _ => Err(E::invalid_value(Unexpected::Signed(v), &WHAT)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaxPrefixValue, A::Error> {
                let t = MaxPrefixTable::deserialize(MapAccessDeserializer::new(map))?;
                if t.warn_only && t.restart.is_some() {
                    return Err(de::Error::custom(
                        "restart has no meaning with warn_only = true: the session stays up",
                    ));
                }
                Ok(MaxPrefixValue(
                    Some(rib::MaxPrefix {
                        limit: t.limit.get(),
                        warn_only: t.warn_only,
                    }),
                    t.restart.map_or(RESTART, NonZeroU32::get),
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// `bfd`: `true` (300 ms x 3, single hop, not strict), `false`, or a table
/// `{ interval = MS, multiplier = N, multihop = BOOL, strict = BOOL, password = "...",
/// key_id = N, meticulous = BOOL }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BfdValue(pub(super) Option<super::model::Bfd>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BfdTable {
    interval: Option<u32>,
    multiplier: Option<u8>,
    #[serde(default)]
    multihop: bool,
    #[serde(default)]
    strict: bool,
    password: Option<String>,
    key_id: Option<u8>,
    meticulous: Option<bool>,
}

impl<'de> Deserialize<'de> for BfdValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WHAT: &str = "true, false, or a table { interval = MS (10 to 60000), \
                            multiplier = 1 to 255, multihop = BOOL, strict = BOOL, \
                            password = \"1 to 20 bytes\", key_id = 0 to 255, meticulous = BOOL }";
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BfdValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(WHAT)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<BfdValue, E> {
                Ok(BfdValue(v.then(super::model::Bfd::default)))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BfdValue, A::Error> {
                let t = BfdTable::deserialize(MapAccessDeserializer::new(map))?;
                let mut b = super::model::Bfd::default();
                if let Some(i) = t.interval {
                    if !(10..=60_000).contains(&i) {
                        return Err(de::Error::custom(format!(
                            "bfd interval {i} ms is out of range (10 to 60000)"
                        )));
                    }
                    b.interval_ms = i;
                }
                if let Some(m) = t.multiplier {
                    if m == 0 {
                        return Err(de::Error::custom("bfd multiplier must be 1 to 255"));
                    }
                    b.multiplier = m;
                }
                b.multihop = t.multihop;
                b.strict = t.strict;
                match t.password {
                    Some(p) if (1..=20).contains(&p.len()) => {
                        b.sha1 = Some(super::model::BfdSha1 {
                            password: super::model::Secret::new(p),
                            key_id: t.key_id.unwrap_or(1),
                            meticulous: t.meticulous.unwrap_or(false),
                        });
                    }
                    Some(p) => {
                        return Err(de::Error::custom(format!(
                            "bfd password of {} bytes: Keyed SHA1 takes 1 to 20",
                            p.len()
                        )));
                    }
                    None if t.key_id.is_some() || t.meticulous.is_some() => {
                        return Err(de::Error::custom(
                            "bfd key_id and meticulous need a password",
                        ));
                    }
                    None => {}
                }
                Ok(BfdValue(Some(b)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A listening socket: `"ADDR:PORT"`, `"[V6]:PORT"` or a bare address (port 179).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ListenAddr(pub(super) SocketAddr);

impl ListenAddr {
    fn parse(s: &str) -> Result<Self, String> {
        let a = s
            .parse::<SocketAddr>()
            .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 179)))
            .map_err(|_| format!("{s:?} is not ADDRESS:PORT or an address"))?;
        if a.port() == 0 {
            return Err("port 0 cannot be listened on".to_owned());
        }
        Ok(Self(a))
    }
}

from_string!(ListenAddr, "an address and port such as \"10.0.0.1:179\"");

/// One address or a list of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct IpList(pub(super) Vec<IpAddr>);

impl<'de> Deserialize<'de> for IpList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "an address or a list of addresses")]
        enum OneOrMany {
            One(IpAddr),
            Many(Vec<IpAddr>),
        }
        Ok(Self(match OneOrMany::deserialize(d)? {
            OneOrMany::One(a) => vec![a],
            OneOrMany::Many(v) => v,
        }))
    }
}

/// A peer's address, with the interface of a link-local one: `"192.0.2.1"`,
/// `"fe80::2%eth0"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PeerAddress {
    pub(super) ip: IpAddr,
    /// The zone: an interface name.
    pub(super) zone: Option<String>,
}

impl PeerAddress {
    fn parse(s: &str) -> Result<Self, String> {
        let (ip, zone) = match s.split_once('%') {
            Some((ip, zone)) => (ip, Some(zone)),
            None => (s, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| {
            format!("{s:?} is not an IP address (a link-local one as \"fe80::2%eth0\")")
        })?;
        let link_local = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
        match zone {
            None if link_local => Err(format!(
                "{s:?} is link-local: name its interface, as \"{ip}%eth0\""
            )),
            Some(_) if !link_local => Err(format!(
                "{s:?}: only a link-local (fe80::/10) address takes an interface after %"
            )),
            Some(z) => Ok(Self {
                ip,
                zone: Some(interface_name(z)?),
            }),
            None => Ok(Self { ip, zone: None }),
        }
    }
}

from_string!(
    PeerAddress,
    "an IP address such as \"192.0.2.1\" or \"fe80::2%eth0\""
);

/// Checks an interface name as Linux takes it: 1..=15 bytes, no `/`, no white space.
pub(super) fn interface_name(z: &str) -> Result<String, String> {
    if z.is_empty() || z.len() > 15 || z.contains('/') || z.chars().any(char::is_whitespace) {
        return Err(format!(
            "{z:?} is not an interface name (1 to 15 characters, no '/' or spaces)"
        ));
    }
    Ok(z.to_owned())
}

/// A log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or a `RUST_LOG`
/// directive list (`info,rr_daemon::session=debug`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LogLevel(pub(super) String);

impl LogLevel {
    fn parse(s: &str) -> Result<Self, String> {
        crate::logging::check(s).map(|()| Self(s.to_owned()))
    }
}

from_string!(
    LogLevel,
    "a log level (error, warn, info, debug, trace) or RUST_LOG directives"
);

/// An interface name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Interface(pub(super) String);

impl Interface {
    fn parse(s: &str) -> Result<Self, String> {
        interface_name(s).map(Self)
    }
}

from_string!(Interface, "an interface name such as \"eth0\"");

/// A prefix without host bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Prefix(pub(super) IpNet);

/// `s` as a prefix; the error says which part is wrong: an address, or a length beyond
/// its family's (`"10.0.0.0/33"`).
pub(super) fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!(
            "{s:?} is not a prefix such as \"10.0.0.0/8\" (no /LENGTH)"
        ));
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return Err(format!(
            "{s:?} is not a prefix: {addr:?} is not an IP address"
        ));
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match len.parse::<u32>() {
        Ok(n) if n > max => Err(format!(
            "{s:?}: prefix length {n} is longer than {max}, the most for an IPv{} address",
            if addr.is_ipv4() { 4 } else { 6 }
        )),
        _ => Err(format!(
            "{s:?} is not a prefix: the length {len:?} is not a number from 0 to {max}"
        )),
    }
}

/// A prefix, host bits allowed, with [`parse_net`]'s errors (`deserialize_with`).
pub(super) fn net<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let s = String::deserialize(d)?;
    parse_net(&s).map_err(de::Error::custom)
}

/// [`net`] of an optional key (`#[serde(default, deserialize_with = ...)]`).
pub(super) fn opt_net<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
    net(d).map(Some)
}

impl Prefix {
    fn parse(s: &str) -> Result<Self, String> {
        let net = parse_net(s)?;
        if net.trunc() != net {
            return Err(format!(
                "{s:?} has host bits set: did you mean \"{}\"?",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

from_string!(Prefix, "a prefix such as \"10.0.0.0/8\"");

/// A prefix list entry: `"P"`, `"P le N"`, `"P ge N"`, `"P ge N le M"`, or a table
/// `{ prefix = "P", ge = N, le = M }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PrefixEntry(pub(super) PrefixMatch);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixTable {
    prefix: Prefix,
    ge: Option<u8>,
    le: Option<u8>,
}

impl PrefixEntry {
    fn parse(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let prefix = Prefix::parse(words.next().unwrap_or_default())?.0;
        let (mut ge, mut le) = (None, None);
        while let Some(w) = words.next() {
            let slot = match w {
                "ge" if ge.is_none() && le.is_none() => &mut ge,
                "le" if le.is_none() => &mut le,
                _ => return Err(format!("{s:?}: expected \"PREFIX [ge N] [le M]\"")),
            };
            let n = words.next().and_then(|n| n.parse::<u8>().ok());
            *slot = Some(n.ok_or_else(|| format!("{s:?}: {w} needs a length"))?);
        }
        Self::new(prefix, ge, le)
    }

    fn new(prefix: IpNet, ge: Option<u8>, le: Option<u8>) -> Result<Self, String> {
        let (own, max) = (prefix.prefix_len(), prefix.max_prefix_len());
        for (name, v) in [("ge", ge), ("le", le)] {
            if let Some(v) = v
                && !(own..=max).contains(&v)
            {
                return Err(format!("{name} {v} is outside {own}..={max} for {prefix}"));
            }
        }
        if let (Some(g), Some(l)) = (ge, le)
            && g > l
        {
            return Err(format!("ge {g} is greater than le {l}"));
        }
        Ok(Self(PrefixMatch { prefix, ge, le }))
    }
}

impl<'de> Deserialize<'de> for PrefixEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PrefixEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"PREFIX [ge N] [le M]\" or { prefix = P, ge = N, le = M }")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PrefixEntry, E> {
                PrefixEntry::parse(v).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PrefixEntry, A::Error> {
                let t = PrefixTable::deserialize(MapAccessDeserializer::new(map))?;
                PrefixEntry::new(t.prefix.0, t.ge, t.le).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A community: `"ASN:VALUE"` (16 bits each) or a well-known name such as `"no-export"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CommunityValue(pub(super) Community);

impl CommunityValue {
    fn parse(s: &str) -> Result<Self, String> {
        let name = s.to_ascii_uppercase().replace('-', "_");
        let known = [
            Community::NO_EXPORT,
            Community::NO_ADVERTISE,
            Community::NO_EXPORT_SUBCONFED,
            Community::NOPEER,
            Community::BLACKHOLE,
            Community::GRACEFUL_SHUTDOWN,
            Community::LLGR_STALE,
            Community::NO_LLGR,
        ];
        if let Some(c) = known.into_iter().find(|c| c.name() == Some(name.as_str())) {
            return Ok(Self(c));
        }
        let parsed = s
            .split_once(':')
            .and_then(|(a, v)| Some((a.parse::<u16>().ok()?, v.parse::<u16>().ok()?)));
        parsed
            .map(|(a, v)| Self(Community::new(a, v)))
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a community: \"ASN:VALUE\" (0-65535 each) or a well-known name"
                )
            })
    }
}

from_string!(CommunityValue, "a community such as \"65000:100\"");

/// A large community: `"GLOBAL:LOCAL1:LOCAL2"` (32 bits each, RFC 8092).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LargeCommunityValue(pub(super) LargeCommunity);

impl LargeCommunityValue {
    fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<Option<u32>> = s.split(':').map(|p| p.parse().ok()).collect();
        match parts[..] {
            [Some(global), Some(local1), Some(local2)] => Ok(Self(LargeCommunity {
                global,
                local1,
                local2,
            })),
            _ => Err(format!(
                "{s:?} is not a large community: \"GLOBAL:LOCAL1:LOCAL2\" (32 bits each)"
            )),
        }
    }
}

from_string!(
    LargeCommunityValue,
    "a large community such as \"65000:1:2\""
);

/// What a rule decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Action {
    Accept,
    Reject,
    Continue,
}

/// What happens to a route no rule decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum DefaultAction {
    Accept,
    Reject,
}
