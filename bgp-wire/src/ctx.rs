//! What a session negotiated, which every decode and encode takes.

use std::fmt;

use serde::Serialize;

macro_rules! open_newtype {
    (
        $(#[$meta:meta])*
        $name:ident($inner:ty) { $( $(#[$cmeta:meta])* $konst:ident = $val:expr => $label:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: Self = Self($val); )*

            /// The registered name of this code point, if it is one we know.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $val => Some($label), )*
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(self, f)
            }
        }
    };
}
pub(crate) use open_newtype;

open_newtype! {
    /// Address Family Identifier (IANA registry), as carried in MP-BGP attributes and
    /// capabilities. Unknown values survive decode and re-encode.
    Afi(u16) {
        /// IPv4.
        IPV4 = 1 => "ipv4",
        /// IPv6.
        IPV6 = 2 => "ipv6",
        /// Layer-2 VPN.
        L2VPN = 25 => "l2vpn",
        /// BGP-LS.
        BGP_LS = 16388 => "bgp-ls",
    }
}

open_newtype! {
    /// Subsequent Address Family Identifier (IANA registry).
    Safi(u8) {
        /// Unicast forwarding.
        UNICAST = 1 => "unicast",
        /// Multicast forwarding.
        MULTICAST = 2 => "multicast",
        /// MPLS-labeled (RFC 8277).
        LABELED_UNICAST = 4 => "labeled-unicast",
        /// EVPN (RFC 7432).
        EVPN = 70 => "evpn",
        /// MPLS L3VPN (RFC 4364).
        MPLS_VPN = 128 => "mpls-vpn",
        /// Flow specification (RFC 8955).
        FLOWSPEC = 133 => "flowspec",
    }
}

/// An address family this codec decodes routes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Family {
    /// IPv4 unicast (AFI 1, SAFI 1).
    #[serde(rename = "ipv4-unicast")]
    Ipv4Unicast,
    /// IPv6 unicast (AFI 2, SAFI 1).
    #[serde(rename = "ipv6-unicast")]
    Ipv6Unicast,
}

impl Family {
    /// Both supported families, in index order.
    pub const ALL: [Self; 2] = [Self::Ipv4Unicast, Self::Ipv6Unicast];

    /// The family for an AFI/SAFI pair, if this codec supports it.
    pub const fn from_afi_safi(afi: Afi, safi: Safi) -> Option<Self> {
        match (afi.0, safi.0) {
            (1, 1) => Some(Self::Ipv4Unicast),
            (2, 1) => Some(Self::Ipv6Unicast),
            _ => None,
        }
    }

    /// The AFI of this family.
    pub const fn afi(self) -> Afi {
        match self {
            Self::Ipv4Unicast => Afi::IPV4,
            Self::Ipv6Unicast => Afi::IPV6,
        }
    }

    /// The SAFI of this family.
    pub const fn safi(self) -> Safi {
        Safi::UNICAST
    }

    /// The largest prefix length of this family's addresses.
    pub const fn max_prefix_len(self) -> u8 {
        match self {
            Self::Ipv4Unicast => 32,
            Self::Ipv6Unicast => 128,
        }
    }

    /// The name used in configuration and JSON (`ipv4-unicast`, `ipv6-unicast`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ipv4Unicast => "ipv4-unicast",
            Self::Ipv6Unicast => "ipv6-unicast",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Ipv4Unicast => 1,
            Self::Ipv6Unicast => 2,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Family`] values, as a bitset.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FamilySet(u8);

impl FamilySet {
    /// No family.
    pub const EMPTY: Self = Self(0);
    /// IPv4 and IPv6 unicast.
    pub const ALL: Self = Self(3);

    /// A set holding just `family`.
    pub const fn only(family: Family) -> Self {
        Self(family.bit())
    }

    /// Whether `family` is in the set.
    pub const fn contains(self, family: Family) -> bool {
        self.0 & family.bit() != 0
    }

    /// Adds `family`.
    pub fn insert(&mut self, family: Family) {
        self.0 |= family.bit();
    }

    /// Removes `family`.
    pub fn remove(&mut self, family: Family) {
        self.0 &= !family.bit();
    }

    /// The families in both sets.
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The families in the set, in index order.
    pub fn iter(self) -> impl Iterator<Item = Family> {
        Family::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl FromIterator<Family> for FamilySet {
    fn from_iter<I: IntoIterator<Item = Family>>(iter: I) -> Self {
        let mut set = Self::EMPTY;
        for f in iter {
            set.insert(f);
        }
        set
    }
}

impl fmt::Debug for FamilySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for FamilySet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Local checks on received UPDATEs that are policy rather than syntax; each failing check
/// is a treat-as-withdraw issue (RFC 7606 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct UpdatePolicy {
    /// On eBGP, the leftmost AS of AS_PATH must be this (RFC 4271 §6.3, "enforce-first-as").
    pub enforce_first_as: Option<u32>,
    /// An AS_PATH with more ASes than this is treated as withdrawn.
    pub max_as_path_len: Option<u16>,
    /// AS_SET and AS_CONFED_SET segments are treated as withdrawn (RFC 9774).
    pub reject_as_set: bool,
    /// NEXT_HOP in 0/8, 127/8, 224/4 or 255.255.255.255 makes the route ignored
    /// (RFC 4271 §6.3). Off only for labs that use loopback addresses as next hops.
    pub reject_martian_next_hop: bool,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        Self {
            enforce_first_as: None,
            max_as_path_len: None,
            reject_as_set: true,
            reject_martian_next_hop: true,
        }
    }
}

/// What one session negotiated: every decode and encode of UPDATEs takes it.
///
/// Receive-side fields (`add_path_rx`) govern decoding, send-side fields (`add_path_tx`)
/// govern encoding, so one context serves both directions of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SessionCtx {
    /// Both sides sent the 4-octet AS capability (RFC 6793): AS_PATH carries 4-octet ASes.
    pub four_octet_as: bool,
    /// Both sides sent the extended message capability (RFC 8654): messages up to 65535.
    pub extended_message: bool,
    /// The session is internal (iBGP): LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST are legal.
    pub ibgp: bool,
    /// Families negotiated with the multiprotocol capability (or IPv4 unicast by default).
    pub families: FamilySet,
    /// Families in which the peer sends us path identifiers (RFC 7911).
    pub add_path_rx: FamilySet,
    /// Families in which we send path identifiers (RFC 7911).
    pub add_path_tx: FamilySet,
    /// Families whose next hop may be of the other address family (RFC 8950); in practice
    /// IPv4 unicast with an IPv6 next hop.
    pub extended_next_hop: FamilySet,
    /// Local checks beyond syntax.
    pub policy: UpdatePolicy,
}

impl Default for SessionCtx {
    /// eBGP, IPv4 and IPv6 unicast, 4-octet AS, no ADD-PATH, 4096-byte messages.
    fn default() -> Self {
        Self {
            four_octet_as: true,
            extended_message: false,
            ibgp: false,
            families: FamilySet::ALL,
            add_path_rx: FamilySet::EMPTY,
            add_path_tx: FamilySet::EMPTY,
            extended_next_hop: FamilySet::EMPTY,
            policy: UpdatePolicy::default(),
        }
    }
}

impl SessionCtx {
    /// The largest message this session may carry (RFC 8654).
    pub const fn max_message_len(&self) -> usize {
        if self.extended_message {
            crate::header::MAX_EXTENDED_MESSAGE_LEN
        } else {
            crate::header::MAX_MESSAGE_LEN
        }
    }
}
