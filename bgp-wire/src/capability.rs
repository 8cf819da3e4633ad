//! BGP capabilities (RFC 5492), carried in the OPEN's optional parameter of type 2.
//!
//! Parsed: multiprotocol (RFC 4760), route refresh (RFC 2918), extended next hop (RFC 8950),
//! extended message (RFC 8654), BGP role (RFC 9234), graceful restart (RFC 4724, RFC 8538),
//! 4-octet AS (RFC 6793), ADD-PATH (RFC 7911), enhanced route refresh (RFC 7313), long-lived
//! graceful restart (RFC 9494) and FQDN (draft-walton-bgp-hostname-capability). Everything
//! else (ORF, the pre-standard route refresh 128, codes we do not know) is kept raw in
//! [`Capability::Unknown`] so it survives decode and re-encode.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::ctx::{Afi, Safi, open_newtype};
use crate::error::{DecodeError, ErrorKind};

/// Largest capability value: its length is one octet (RFC 5492 §4).
pub const MAX_VALUE_LEN: usize = 255;

open_newtype! {
    /// Capability code (IANA "Capability Codes" registry, RFC 5492 §4).
    CapabilityCode(u8) {
        /// Multiprotocol extensions (RFC 4760 §8).
        MULTIPROTOCOL = 1 => "multiprotocol",
        /// Route refresh (RFC 2918).
        ROUTE_REFRESH = 2 => "route-refresh",
        /// Outbound route filtering (RFC 5291); kept raw.
        ORF = 3 => "ORF",
        /// Extended next hop encoding (RFC 8950).
        EXTENDED_NEXT_HOP = 5 => "extended-next-hop",
        /// Extended message (RFC 8654).
        EXTENDED_MESSAGE = 6 => "extended-message",
        /// BGP role (RFC 9234).
        BGP_ROLE = 9 => "bgp-role",
        /// Graceful restart (RFC 4724).
        GRACEFUL_RESTART = 64 => "graceful-restart",
        /// 4-octet AS numbers (RFC 6793).
        FOUR_OCTET_AS = 65 => "four-octet-as",
        /// ADD-PATH (RFC 7911).
        ADD_PATH = 69 => "add-path",
        /// Enhanced route refresh (RFC 7313).
        ENHANCED_ROUTE_REFRESH = 70 => "enhanced-route-refresh",
        /// Long-lived graceful restart (RFC 9494).
        LONG_LIVED_GRACEFUL_RESTART = 71 => "long-lived-graceful-restart",
        /// Hostname and domain (draft-walton-bgp-hostname-capability).
        FQDN = 73 => "fqdn",
        /// Pre-standard route refresh (Cisco); kept raw, but counts as route refresh.
        ROUTE_REFRESH_OLD = 128 => "route-refresh-old",
    }
}

open_newtype! {
    /// The BGP role a speaker claims on a session (RFC 9234 §4.1).
    BgpRole(u8) {
        /// The speaker is the peer's transit provider.
        PROVIDER = 0 => "provider",
        /// The speaker is a route server.
        ROUTE_SERVER = 1 => "route-server",
        /// The speaker is a route server client.
        ROUTE_SERVER_CLIENT = 2 => "route-server-client",
        /// The speaker is the peer's customer.
        CUSTOMER = 3 => "customer",
        /// The speaker is a lateral peer.
        PEER = 4 => "peer",
    }
}

/// One family of the extended next hop capability (RFC 8950 §3): routes of `afi`/`safi`
/// may carry a next hop of `next_hop_afi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ExtendedNextHopEntry {
    /// NLRI address family.
    pub afi: Afi,
    /// NLRI subsequent address family (two octets on the wire; the registry is 8 bits).
    pub safi: Safi,
    /// Address family of the next hop.
    pub next_hop_afi: Afi,
}

/// The graceful restart capability (RFC 4724 §3, N bit from RFC 8538 §2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted.
    pub restart_state: bool,
    /// N bit: the sender supports graceful NOTIFICATION handling (RFC 8538).
    pub notification: bool,
    /// Seconds the sender needs to re-establish the session; 12 bits, larger values are cut
    /// to their low 12 bits on encode.
    pub restart_time: u16,
    /// Families whose routes the sender preserves across a restart.
    pub families: Vec<GrFamily>,
}

/// One family of the graceful restart capability (RFC 4724 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct GrFamily {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
    /// F bit: forwarding state was preserved across the restart.
    pub forwarding: bool,
}

/// Direction of ADD-PATH for one family (RFC 7911 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum AddPathMode {
    /// The sender can receive path identifiers.
    Receive = 1,
    /// The sender can send path identifiers.
    Send = 2,
    /// Both.
    Both = 3,
}

impl AddPathMode {
    /// The mode for a Send/Receive octet; `None` for values RFC 7911 does not define.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Receive),
            2 => Some(Self::Send),
            3 => Some(Self::Both),
            _ => None,
        }
    }

    /// Whether the sender can receive path identifiers.
    pub const fn receives(self) -> bool {
        matches!(self, Self::Receive | Self::Both)
    }

    /// Whether the sender can send path identifiers.
    pub const fn sends(self) -> bool {
        matches!(self, Self::Send | Self::Both)
    }
}

/// One family of the ADD-PATH capability (RFC 7911 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AddPathEntry {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
    /// Which directions the sender supports.
    pub mode: AddPathMode,
}

/// One family of the long-lived graceful restart capability (RFC 9494 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct LlgrFamily {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
    /// F bit: forwarding state was preserved.
    pub forwarding: bool,
    /// Seconds stale routes are kept; 24 bits, larger values are cut to their low 24 bits on
    /// encode.
    pub stale_time: u32,
}

/// A capability, owned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Multiprotocol extensions for one family (RFC 4760 §8).
    Multiprotocol {
        /// Address family.
        afi: Afi,
        /// Subsequent address family.
        safi: Safi,
    },
    /// Route refresh (RFC 2918 §2).
    RouteRefresh,
    /// Enhanced route refresh (RFC 7313 §3.1).
    EnhancedRouteRefresh,
    /// Extended next hop encoding (RFC 8950 §3).
    ExtendedNextHop(Vec<ExtendedNextHopEntry>),
    /// Messages up to 65535 bytes (RFC 8654 §3).
    ExtendedMessage,
    /// Graceful restart (RFC 4724).
    GracefulRestart(GracefulRestart),
    /// 4-octet AS numbers, with the sender's AS (RFC 6793 §3).
    FourOctetAs(u32),
    /// ADD-PATH (RFC 7911 §4).
    AddPath(Vec<AddPathEntry>),
    /// Long-lived graceful restart (RFC 9494 §3).
    LongLivedGracefulRestart(Vec<LlgrFamily>),
    /// The sender's BGP role (RFC 9234 §4.1).
    Role(BgpRole),
    /// Hostname and domain name (draft-walton-bgp-hostname-capability §3); informational,
    /// so bytes that are not UTF-8 are decoded lossily rather than refused.
    Fqdn {
        /// Host name.
        hostname: String,
        /// Domain name.
        domain: String,
    },
    /// A capability kept as received: codes we do not parse (RFC 5492 §4 says to ignore
    /// them), ORF, and the pre-standard route refresh.
    Unknown {
        /// Capability code.
        code: CapabilityCode,
        /// Capability value; values over 255 bytes are cut on encode.
        #[serde(serialize_with = "crate::util::serialize_hex")]
        value: Bytes,
    },
}

// Entry sizes of the list-shaped capabilities.
const ENH_ENTRY: usize = 6;
const GR_ENTRY: usize = 4;
const ADD_PATH_ENTRY: usize = 4;
const LLGR_ENTRY: usize = 7;

const GR_RESTART_STATE: u16 = 0x8000;
const GR_NOTIFICATION: u16 = 0x4000;
const GR_TIME_MASK: u16 = 0x0fff;
const FORWARDING: u8 = 0x80;
const LLGR_STALE_MASK: u32 = 0x00ff_ffff;

/// Checks that a known capability's value has a length (and, for FQDN, a structure) its RFC
/// allows, so that [`decode_value`] cannot fail. Unknown codes are always accepted.
///
/// Lengths are strict, as in BIRD: a peer that gets the size of a fixed capability wrong
/// has a bug we would rather surface at OPEN than misread later.
pub(crate) fn check_value(code: CapabilityCode, value: &[u8]) -> Result<(), &'static str> {
    let len = value.len();
    let ok = match code {
        CapabilityCode::MULTIPROTOCOL => len == 4,
        CapabilityCode::ROUTE_REFRESH
        | CapabilityCode::ENHANCED_ROUTE_REFRESH
        | CapabilityCode::EXTENDED_MESSAGE => len == 0,
        CapabilityCode::EXTENDED_NEXT_HOP => len.is_multiple_of(ENH_ENTRY),
        CapabilityCode::GRACEFUL_RESTART => len >= 2 && (len - 2).is_multiple_of(GR_ENTRY),
        CapabilityCode::FOUR_OCTET_AS => len == 4,
        CapabilityCode::ADD_PATH => len.is_multiple_of(ADD_PATH_ENTRY),
        CapabilityCode::LONG_LIVED_GRACEFUL_RESTART => len.is_multiple_of(LLGR_ENTRY),
        CapabilityCode::BGP_ROLE => len == 1,
        CapabilityCode::FQDN => return split_fqdn(value).map(|_| ()),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(match code {
            CapabilityCode::MULTIPROTOCOL => "multiprotocol capability length is not 4",
            CapabilityCode::ROUTE_REFRESH => "route refresh capability length is not 0",
            CapabilityCode::ENHANCED_ROUTE_REFRESH => {
                "enhanced route refresh capability length is not 0"
            }
            CapabilityCode::EXTENDED_MESSAGE => "extended message capability length is not 0",
            CapabilityCode::EXTENDED_NEXT_HOP => {
                "extended next hop capability length is not a multiple of 6"
            }
            CapabilityCode::GRACEFUL_RESTART => "graceful restart capability length is not 2+4n",
            CapabilityCode::FOUR_OCTET_AS => "4-octet AS capability length is not 4",
            CapabilityCode::ADD_PATH => "ADD-PATH capability length is not a multiple of 4",
            CapabilityCode::LONG_LIVED_GRACEFUL_RESTART => {
                "LLGR capability length is not a multiple of 7"
            }
            _ => "BGP role capability length is not 1",
        })
    }
}

/// Splits an FQDN value into host name and domain name bytes: `len host len domain`, with
/// nothing after.
fn split_fqdn(value: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    const BAD: &str = "FQDN capability lengths do not fit its value";
    let (&hlen, rest) = value.split_first().ok_or(BAD)?;
    let (host, rest) = rest.split_at_checked(usize::from(hlen)).ok_or(BAD)?;
    let (&dlen, domain) = rest.split_first().ok_or(BAD)?;
    if domain.len() != usize::from(dlen) {
        return Err(BAD);
    }
    Ok((host, domain))
}

/// Decodes a value [`check_value`] accepted. Entries that name nothing we can represent
/// are skipped rather than refused, because RFC 5492 §3 wants a speaker to ignore what it
/// does not understand: an extended next hop SAFI over 255 (the field is two octets, the
/// registry eight bits), an ADD-PATH mode outside 1..=3.
fn decode_value(code: CapabilityCode, value: &[u8]) -> Capability {
    match code {
        CapabilityCode::MULTIPROTOCOL => match value {
            // RFC 4760 §8: the reserved octet is ignored by the receiver.
            &[a0, a1, _reserved, safi] => Capability::Multiprotocol {
                afi: Afi(u16::from_be_bytes([a0, a1])),
                safi: Safi(safi),
            },
            _ => unknown(code, value),
        },
        CapabilityCode::ROUTE_REFRESH => Capability::RouteRefresh,
        CapabilityCode::ENHANCED_ROUTE_REFRESH => Capability::EnhancedRouteRefresh,
        CapabilityCode::EXTENDED_MESSAGE => Capability::ExtendedMessage,
        CapabilityCode::EXTENDED_NEXT_HOP => {
            let (entries, _) = value.as_chunks::<ENH_ENTRY>();
            Capability::ExtendedNextHop(
                entries
                    .iter()
                    .filter_map(|&[a0, a1, s0, s1, n0, n1]| {
                        (s0 == 0).then_some(ExtendedNextHopEntry {
                            afi: Afi(u16::from_be_bytes([a0, a1])),
                            safi: Safi(s1),
                            next_hop_afi: Afi(u16::from_be_bytes([n0, n1])),
                        })
                    })
                    .collect(),
            )
        }
        CapabilityCode::GRACEFUL_RESTART => {
            let Some((&head, rest)) = value.split_first_chunk::<2>() else {
                return unknown(code, value);
            };
            let head = u16::from_be_bytes(head);
            let (families, _) = rest.as_chunks::<GR_ENTRY>();
            Capability::GracefulRestart(GracefulRestart {
                restart_state: head & GR_RESTART_STATE != 0,
                notification: head & GR_NOTIFICATION != 0,
                restart_time: head & GR_TIME_MASK,
                families: families
                    .iter()
                    .map(|&[a0, a1, safi, flags]| GrFamily {
                        afi: Afi(u16::from_be_bytes([a0, a1])),
                        safi: Safi(safi),
                        forwarding: flags & FORWARDING != 0,
                    })
                    .collect(),
            })
        }
        CapabilityCode::FOUR_OCTET_AS => match value.first_chunk::<4>() {
            Some(&asn) => Capability::FourOctetAs(u32::from_be_bytes(asn)),
            None => unknown(code, value),
        },
        CapabilityCode::ADD_PATH => {
            let (entries, _) = value.as_chunks::<ADD_PATH_ENTRY>();
            Capability::AddPath(
                entries
                    .iter()
                    .filter_map(|&[a0, a1, safi, mode]| {
                        Some(AddPathEntry {
                            afi: Afi(u16::from_be_bytes([a0, a1])),
                            safi: Safi(safi),
                            mode: AddPathMode::from_u8(mode)?,
                        })
                    })
                    .collect(),
            )
        }
        CapabilityCode::LONG_LIVED_GRACEFUL_RESTART => {
            let (families, _) = value.as_chunks::<LLGR_ENTRY>();
            Capability::LongLivedGracefulRestart(
                families
                    .iter()
                    .map(|&[a0, a1, safi, flags, t0, t1, t2]| LlgrFamily {
                        afi: Afi(u16::from_be_bytes([a0, a1])),
                        safi: Safi(safi),
                        forwarding: flags & FORWARDING != 0,
                        stale_time: u32::from_be_bytes([0, t0, t1, t2]),
                    })
                    .collect(),
            )
        }
        CapabilityCode::BGP_ROLE => match value {
            &[role] => Capability::Role(BgpRole(role)),
            _ => unknown(code, value),
        },
        CapabilityCode::FQDN => match split_fqdn(value) {
            Ok((host, domain)) => Capability::Fqdn {
                hostname: String::from_utf8_lossy(host).into_owned(),
                domain: String::from_utf8_lossy(domain).into_owned(),
            },
            Err(_) => unknown(code, value),
        },
        _ => unknown(code, value),
    }
}

fn unknown(code: CapabilityCode, value: &[u8]) -> Capability {
    Capability::Unknown {
        code,
        value: Bytes::copy_from_slice(value),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

impl Capability {
    /// Decodes a capability value received with `code`.
    ///
    /// A known capability whose length its RFC does not allow is
    /// [`ErrorKind::MalformedOpen`] (NOTIFICATION 2/0); the error's offset is 0, as this
    /// function does not know where the value sits ([`crate::open::OpenView::new`] reports
    /// message offsets). Unknown codes never fail.
    pub fn decode(code: CapabilityCode, value: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_at(code, value, 0)
    }

    /// [`Capability::decode`] reporting errors at `offset`.
    pub(crate) fn decode_at(
        code: CapabilityCode,
        value: &[u8],
        offset: usize,
    ) -> Result<Self, DecodeError> {
        check_value(code, value)
            .map_err(|why| DecodeError::new(offset, ErrorKind::MalformedOpen(why)))?;
        Ok(decode_value(code, value))
    }

    /// The capability code.
    pub const fn code(&self) -> CapabilityCode {
        match self {
            Self::Multiprotocol { .. } => CapabilityCode::MULTIPROTOCOL,
            Self::RouteRefresh => CapabilityCode::ROUTE_REFRESH,
            Self::EnhancedRouteRefresh => CapabilityCode::ENHANCED_ROUTE_REFRESH,
            Self::ExtendedNextHop(_) => CapabilityCode::EXTENDED_NEXT_HOP,
            Self::ExtendedMessage => CapabilityCode::EXTENDED_MESSAGE,
            Self::GracefulRestart(_) => CapabilityCode::GRACEFUL_RESTART,
            Self::FourOctetAs(_) => CapabilityCode::FOUR_OCTET_AS,
            Self::AddPath(_) => CapabilityCode::ADD_PATH,
            Self::LongLivedGracefulRestart(_) => CapabilityCode::LONG_LIVED_GRACEFUL_RESTART,
            Self::Role(_) => CapabilityCode::BGP_ROLE,
            Self::Fqdn { .. } => CapabilityCode::FQDN,
            Self::Unknown { code, .. } => *code,
        }
    }

    /// The FQDN strings as encoded: the capability value is at most 255 bytes, so the host
    /// name is cut to leave room for both length octets and the domain to fill what is left.
    fn fqdn_parts<'s>(hostname: &'s str, domain: &'s str) -> (&'s str, &'s str) {
        let host = cut_str(hostname, MAX_VALUE_LEN - 2);
        let domain = cut_str(domain, MAX_VALUE_LEN - 2 - host.len());
        (host, domain)
    }

    /// How many entries of a list-shaped capability fit in a 255-byte value.
    const fn max_entries(fixed: usize, entry: usize) -> usize {
        (MAX_VALUE_LEN - fixed) / entry
    }

    /// Length of the encoded value. Lists too long for a 255-byte value are cut to whole
    /// entries that fit; this only happens to capabilities built locally, never decoded.
    fn value_len(&self) -> usize {
        match self {
            Self::Multiprotocol { .. } | Self::FourOctetAs(_) => 4,
            Self::RouteRefresh | Self::EnhancedRouteRefresh | Self::ExtendedMessage => 0,
            Self::ExtendedNextHop(v) => v.len().min(Self::max_entries(0, ENH_ENTRY)) * ENH_ENTRY,
            Self::GracefulRestart(gr) => {
                2 + gr.families.len().min(Self::max_entries(2, GR_ENTRY)) * GR_ENTRY
            }
            Self::AddPath(v) => v.len().min(Self::max_entries(0, ADD_PATH_ENTRY)) * ADD_PATH_ENTRY,
            Self::LongLivedGracefulRestart(v) => {
                v.len().min(Self::max_entries(0, LLGR_ENTRY)) * LLGR_ENTRY
            }
            Self::Role(_) => 1,
            Self::Fqdn { hostname, domain } => {
                let (h, d) = Self::fqdn_parts(hostname, domain);
                2 + h.len() + d.len()
            }
            Self::Unknown { value, .. } => value.len().min(MAX_VALUE_LEN),
        }
    }

    /// Length of the encoded capability: code, length and value.
    pub fn encoded_len(&self) -> usize {
        2 + self.value_len()
    }

    /// Appends the capability (code, length, value; RFC 5492 §4) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let len = self.value_len();
        out.put_u8(self.code().0);
        // `value_len` never exceeds 255.
        out.put_u8(len as u8);
        match self {
            Self::Multiprotocol { afi, safi } => {
                out.put_u16(afi.0);
                out.put_u8(0);
                out.put_u8(safi.0);
            }
            Self::RouteRefresh | Self::EnhancedRouteRefresh | Self::ExtendedMessage => {}
            Self::ExtendedNextHop(v) => {
                for e in v.iter().take(Self::max_entries(0, ENH_ENTRY)) {
                    out.put_u16(e.afi.0);
                    out.put_u16(u16::from(e.safi.0));
                    out.put_u16(e.next_hop_afi.0);
                }
            }
            Self::GracefulRestart(gr) => {
                let mut head = gr.restart_time & GR_TIME_MASK;
                if gr.restart_state {
                    head |= GR_RESTART_STATE;
                }
                if gr.notification {
                    head |= GR_NOTIFICATION;
                }
                out.put_u16(head);
                for f in gr.families.iter().take(Self::max_entries(2, GR_ENTRY)) {
                    out.put_u16(f.afi.0);
                    out.put_u8(f.safi.0);
                    out.put_u8(if f.forwarding { FORWARDING } else { 0 });
                }
            }
            Self::FourOctetAs(asn) => out.put_u32(*asn),
            Self::AddPath(v) => {
                for e in v.iter().take(Self::max_entries(0, ADD_PATH_ENTRY)) {
                    out.put_u16(e.afi.0);
                    out.put_u8(e.safi.0);
                    out.put_u8(e.mode as u8);
                }
            }
            Self::LongLivedGracefulRestart(v) => {
                for f in v.iter().take(Self::max_entries(0, LLGR_ENTRY)) {
                    out.put_u16(f.afi.0);
                    out.put_u8(f.safi.0);
                    out.put_u8(if f.forwarding { FORWARDING } else { 0 });
                    let [_, t0, t1, t2] = (f.stale_time & LLGR_STALE_MASK).to_be_bytes();
                    out.put_slice(&[t0, t1, t2]);
                }
            }
            Self::Role(role) => out.put_u8(role.0),
            Self::Fqdn { hostname, domain } => {
                let (h, d) = Self::fqdn_parts(hostname, domain);
                out.put_u8(h.len() as u8);
                out.put_slice(h.as_bytes());
                out.put_u8(d.len() as u8);
                out.put_slice(d.as_bytes());
            }
            Self::Unknown { value, .. } => out.put_slice(value.get(..len).unwrap_or_default()),
        }
    }
}

/// A capability borrowed from a received OPEN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapabilityView<'a> {
    /// Capability code.
    pub code: CapabilityCode,
    /// Capability value, without code and length.
    pub value: &'a [u8],
}

impl CapabilityView<'_> {
    /// Decodes the value into an owned [`Capability`]. Views yielded by a validated
    /// [`crate::open::OpenView`] never fail here.
    pub fn decode(&self) -> Result<Capability, DecodeError> {
        Capability::decode(self.code, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Notification;
    use hex_literal::hex;

    /// Encodes `cap`, checks the bytes, and decodes them back to `cap`.
    fn both_ways(cap: &Capability, bytes: &[u8]) {
        let mut out = BytesMut::new();
        cap.encode(&mut out);
        assert_eq!(&out[..], bytes, "encode {cap:?}");
        assert_eq!(cap.encoded_len(), bytes.len());
        let back = Capability::decode(CapabilityCode(bytes[0]), &bytes[2..]).unwrap();
        assert_eq!(&back, cap);
        assert_eq!(usize::from(bytes[1]), bytes.len() - 2);
    }

    fn malformed(code: u8, value: &[u8]) {
        let e = Capability::decode(CapabilityCode(code), value).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::MalformedOpen(_)), "{e:?}");
        let n = Notification::from(&e);
        assert_eq!((n.code.0, n.subcode), (2, 0));
    }

    #[test]
    fn multiprotocol_both_ways() {
        both_ways(
            &Capability::Multiprotocol {
                afi: Afi::IPV6,
                safi: Safi::UNICAST,
            },
            &hex!("01 04 0002 00 01"),
        );
        // RFC 4760 §8: the reserved octet is ignored.
        assert_eq!(
            Capability::decode(CapabilityCode::MULTIPROTOCOL, &hex!("0001 ff 01")).unwrap(),
            Capability::Multiprotocol {
                afi: Afi::IPV4,
                safi: Safi::UNICAST
            }
        );
        malformed(1, &hex!("0001 00"));
        malformed(1, &hex!("0001 00 01 00"));
    }

    #[test]
    fn empty_capabilities_both_ways() {
        both_ways(&Capability::RouteRefresh, &hex!("02 00"));
        both_ways(&Capability::EnhancedRouteRefresh, &hex!("46 00"));
        both_ways(&Capability::ExtendedMessage, &hex!("06 00"));
        malformed(2, &hex!("00"));
        malformed(70, &hex!("00"));
        malformed(6, &hex!("0000"));
    }

    #[test]
    fn four_octet_as_both_ways() {
        both_ways(
            &Capability::FourOctetAs(4_200_000_000),
            &hex!("41 04 FA56EA00"),
        );
        malformed(65, &hex!("0000FDE9 00"));
        malformed(65, &hex!("FDE9"));
    }

    #[test]
    fn graceful_restart_r_bit_two_families() {
        let gr = Capability::GracefulRestart(GracefulRestart {
            restart_state: true,
            notification: false,
            restart_time: 120,
            families: vec![
                GrFamily {
                    afi: Afi::IPV4,
                    safi: Safi::UNICAST,
                    forwarding: true,
                },
                GrFamily {
                    afi: Afi::IPV6,
                    safi: Safi::UNICAST,
                    forwarding: false,
                },
            ],
        });
        both_ways(&gr, &hex!("40 0A 8078 0001 01 80 0002 01 00"));
        // RFC 8538 N bit, no families (helper-only speaker).
        let n = Capability::GracefulRestart(GracefulRestart {
            restart_state: false,
            notification: true,
            restart_time: 4095,
            families: vec![],
        });
        both_ways(&n, &hex!("40 02 4FFF"));
        malformed(64, &hex!("00"));
        malformed(64, &hex!("0078 0001 01"));
    }

    #[test]
    fn add_path_both_ways() {
        let ap = Capability::AddPath(vec![
            AddPathEntry {
                afi: Afi::IPV4,
                safi: Safi::UNICAST,
                mode: AddPathMode::Both,
            },
            AddPathEntry {
                afi: Afi::IPV6,
                safi: Safi::UNICAST,
                mode: AddPathMode::Receive,
            },
        ]);
        both_ways(&ap, &hex!("45 08 0001 01 03 0002 01 01"));
        malformed(69, &hex!("0001 01"));
        // Mode 0 and 4 are not defined: the entry is ignored, not the session.
        assert_eq!(
            Capability::decode(CapabilityCode::ADD_PATH, &hex!("0001 01 00 0002 01 04")).unwrap(),
            Capability::AddPath(vec![])
        );
    }

    #[test]
    fn extended_next_hop_both_ways() {
        let enh = Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            next_hop_afi: Afi::IPV6,
        }]);
        both_ways(&enh, &hex!("05 06 0001 0001 0002"));
        malformed(5, &hex!("0001 0001 00"));
        // A SAFI over 255 names no family we can hold: that entry is ignored.
        assert_eq!(
            Capability::decode(CapabilityCode::EXTENDED_NEXT_HOP, &hex!("0001 0101 0002")).unwrap(),
            Capability::ExtendedNextHop(vec![])
        );
    }

    #[test]
    fn llgr_both_ways() {
        let llgr = Capability::LongLivedGracefulRestart(vec![
            LlgrFamily {
                afi: Afi::IPV4,
                safi: Safi::UNICAST,
                forwarding: true,
                stale_time: 0x00ff_ffff,
            },
            LlgrFamily {
                afi: Afi::IPV6,
                safi: Safi::UNICAST,
                forwarding: false,
                stale_time: 3600,
            },
        ]);
        both_ways(&llgr, &hex!("47 0E 0001 01 80 FFFFFF 0002 01 00 000E10"));
        malformed(71, &hex!("0001 01 80 FFFF"));
    }

    #[test]
    fn role_both_ways() {
        both_ways(&Capability::Role(BgpRole::CUSTOMER), &hex!("09 01 03"));
        both_ways(&Capability::Role(BgpRole(9)), &hex!("09 01 09"));
        assert_eq!(
            format!("{:?}", BgpRole::ROUTE_SERVER_CLIENT),
            "route-server-client"
        );
        assert_eq!(format!("{:?}", BgpRole(9)), "BgpRole(9)");
        malformed(9, &[]);
        malformed(9, &hex!("0303"));
    }

    #[test]
    fn fqdn_both_ways() {
        let fqdn = Capability::Fqdn {
            hostname: "rr1".into(),
            domain: "example.net".into(),
        };
        both_ways(&fqdn, &hex!("49 10 03 727231 0B 6578616d706c652e6e6574"));
        both_ways(
            &Capability::Fqdn {
                hostname: String::new(),
                domain: String::new(),
            },
            &hex!("49 02 00 00"),
        );
        // Not UTF-8: decoded lossily, never refused.
        assert_eq!(
            Capability::decode(CapabilityCode::FQDN, &hex!("02 ff41 00")).unwrap(),
            Capability::Fqdn {
                hostname: "\u{fffd}A".into(),
                domain: String::new(),
            }
        );
        malformed(73, &[]);
        malformed(73, &hex!("05 7272"));
        malformed(73, &hex!("01 72"));
        malformed(73, &hex!("01 72 01"));
        malformed(73, &hex!("01 72 00 00"));
    }

    #[test]
    fn fqdn_is_cut_to_fit_255() {
        let cap = Capability::Fqdn {
            hostname: "h".repeat(200),
            domain: "é".repeat(100),
        };
        let mut out = BytesMut::new();
        cap.encode(&mut out);
        assert_eq!(out.len(), cap.encoded_len());
        assert_eq!(out.len(), 256);
        let back = Capability::decode(CapabilityCode(out[0]), &out[2..]).unwrap();
        let Capability::Fqdn { hostname, domain } = back else {
            panic!("not FQDN")
        };
        assert_eq!(hostname.len(), 200);
        // 53 bytes left for the domain: 26 two-byte characters fit.
        assert_eq!(domain, "é".repeat(26));
    }

    #[test]
    fn unknown_kept_raw() {
        both_ways(
            &Capability::Unknown {
                code: CapabilityCode(0xEE),
                value: Bytes::from_static(&hex!("0000")),
            },
            &hex!("EE 02 0000"),
        );
        // ORF and the old route refresh are known by name but kept raw.
        both_ways(
            &Capability::Unknown {
                code: CapabilityCode::ROUTE_REFRESH_OLD,
                value: Bytes::new(),
            },
            &hex!("80 00"),
        );
        both_ways(
            &Capability::Unknown {
                code: CapabilityCode::ORF,
                value: Bytes::from_static(&hex!("0001 00 01 01 40 03")),
            },
            &hex!("03 07 0001 00 01 01 40 03"),
        );
        assert_eq!(format!("{:?}", CapabilityCode(0xEE)), "CapabilityCode(238)");
        assert_eq!(format!("{:?}", CapabilityCode::ADD_PATH), "add-path");
    }

    #[test]
    fn long_lists_are_cut_to_whole_entries() {
        let ap = Capability::AddPath(vec![
            AddPathEntry {
                afi: Afi::IPV4,
                safi: Safi::UNICAST,
                mode: AddPathMode::Send,
            };
            100
        ]);
        assert_eq!(ap.encoded_len(), 2 + 252);
        let mut out = BytesMut::new();
        ap.encode(&mut out);
        assert_eq!(out.len(), ap.encoded_len());
        assert_eq!(out[1], 252);
    }

    #[test]
    fn serializes_to_json() {
        let v = serde_json::to_value(Capability::Unknown {
            code: CapabilityCode(0xEE),
            value: Bytes::from_static(&hex!("beef")),
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"unknown": {"code": 238, "value": "beef"}})
        );
        let v = serde_json::to_value(Capability::AddPath(vec![AddPathEntry {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            mode: AddPathMode::Both,
        }]))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"add-path": [{"afi": 1, "safi": 1, "mode": "both"}]})
        );
    }
}
