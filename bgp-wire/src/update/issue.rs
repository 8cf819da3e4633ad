//! RFC 7606 classification of UPDATE faults.

use std::fmt;

use serde::Serialize;

use crate::attr::AttrType;
use crate::ctx::Family;
use crate::notification::subcode::update as sub;

/// What to do with an UPDATE (RFC 7606 §2), ordered from mildest to harshest: an update's
/// treatment is the harshest of its issues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Treatment {
    /// Process as received.
    #[default]
    Normal,
    /// Drop the faulty attributes and process the rest.
    AttributeDiscard,
    /// Withdraw every prefix the update announces, as if it were a withdrawal.
    TreatAsWithdraw,
    /// Disable the affected address family for the session (RFC 4760 §7), or reset.
    AfiSafiDisable,
    /// Send the NOTIFICATION and close the session.
    SessionReset,
}

impl Treatment {
    /// The name used in logs and JSON (`treat-as-withdraw`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::AttributeDiscard => "attribute-discard",
            Self::TreatAsWithdraw => "treat-as-withdraw",
            Self::AfiSafiDisable => "afi-safi-disable",
            Self::SessionReset => "session-reset",
        }
    }
}

impl fmt::Display for Treatment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum IssueKind {
    /// Withdrawn Routes Length runs past the message (RFC 4271 §6.3).
    WithdrawnRoutesLength,
    /// Total Path Attribute Length runs past the message (RFC 4271 §6.3).
    TotalAttributeLength,
    /// An attribute's header or length runs past the attribute list (RFC 7606 §4).
    AttributeOverrun,
    /// An attribute appears again; the later ones are dropped (RFC 7606 §3(g)).
    DuplicateAttribute,
    /// MP_REACH_NLRI or MP_UNREACH_NLRI appears twice (RFC 7606 §3(g)).
    DuplicateMpAttribute,
    /// A well-known attribute we do not know (RFC 4271 §6.3).
    UnrecognizedWellKnown,
    /// ORIGIN, AS_PATH or (with NLRI) NEXT_HOP is missing (RFC 7606 §3(d)).
    MissingWellKnown,
    /// Optional/transitive flags conflict with the attribute's definition (RFC 7606 §3(c)).
    AttributeFlags,
    /// The attribute's length is wrong for its type.
    AttributeLength,
    /// ORIGIN value other than 0, 1, 2 (RFC 7606 §7.1).
    InvalidOrigin,
    /// AS_PATH (or AS4_PATH) segments do not parse (RFC 7606 §7.2).
    MalformedAsPath,
    /// AS 0 in a path or aggregator (RFC 7607).
    AsZero,
    /// AS_SET or AS_CONFED_SET, refused by policy (RFC 9774).
    AsSet,
    /// Confederation segments from an external peer (RFC 7606 §7.2, RFC 5065).
    ConfedFromEbgp,
    /// The leftmost AS is not the peer's (RFC 4271 §6.3, enforce-first-as).
    FirstAsMismatch,
    /// More ASes than the configured maximum.
    AsPathTooLong,
    /// NEXT_HOP is not a usable unicast address (RFC 4271 §6.3).
    MartianNextHop,
    /// LOCAL_PREF, ORIGINATOR_ID or CLUSTER_LIST from an external peer (RFC 7606 §7.5,
    /// §7.9, §7.10).
    NotFromExternalPeer,
    /// AS4_PATH / AS4_AGGREGATOR between 4-octet speakers (RFC 6793 §3).
    As4OnFourOctetSession,
    /// Prefix length or truncation in the IPv4 NLRI or withdrawn field (RFC 7606 §5.3).
    InvalidNetworkField,
    /// MP_REACH_NLRI / MP_UNREACH_NLRI malformed: next hop length, reserved octet or NLRI
    /// (RFC 7606 §7.11, RFC 4760 §7).
    MalformedMpAttribute,
    /// MP attribute too short to tell its AFI/SAFI (RFC 7606 §7.11).
    MpAttributeTooShort,
    /// MP attribute for an AFI/SAFI the session did not negotiate: ignored, never decoded.
    UnnegotiatedFamily,
    /// Errors that call for treat-as-withdraw in an update with nothing to withdraw
    /// (RFC 7606 §5.2): reset instead.
    NothingToWithdraw,
}

impl IssueKind {
    /// The UPDATE Message Error subcode RFC 4271 gives this fault, sent when it leads to a
    /// session reset.
    pub const fn subcode(self) -> u8 {
        match self {
            Self::WithdrawnRoutesLength
            | Self::TotalAttributeLength
            | Self::AttributeOverrun
            | Self::DuplicateAttribute
            | Self::DuplicateMpAttribute
            | Self::NothingToWithdraw => sub::MALFORMED_ATTRIBUTE_LIST,
            Self::UnrecognizedWellKnown => sub::UNRECOGNIZED_WELL_KNOWN,
            Self::MissingWellKnown => sub::MISSING_WELL_KNOWN,
            Self::AttributeFlags => sub::ATTRIBUTE_FLAGS,
            Self::AttributeLength => sub::ATTRIBUTE_LENGTH,
            Self::InvalidOrigin => sub::INVALID_ORIGIN,
            Self::MalformedAsPath
            | Self::AsZero
            | Self::AsSet
            | Self::ConfedFromEbgp
            | Self::FirstAsMismatch
            | Self::AsPathTooLong => sub::MALFORMED_AS_PATH,
            Self::MartianNextHop => sub::INVALID_NEXT_HOP,
            Self::NotFromExternalPeer
            | Self::As4OnFourOctetSession
            | Self::MalformedMpAttribute
            | Self::MpAttributeTooShort
            | Self::UnnegotiatedFamily => sub::OPTIONAL_ATTRIBUTE,
            Self::InvalidNetworkField => sub::INVALID_NETWORK_FIELD,
        }
    }
}

/// One fault found in an UPDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UpdateIssue {
    /// What is wrong.
    pub kind: IssueKind,
    /// What RFC 7606 says to do about it.
    pub treatment: Treatment,
    /// The attribute at fault, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attr: Option<AttrType>,
    /// The family at fault, for MP attributes and AFI/SAFI disable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// Offset of the fault from the start of the message header.
    pub offset: u32,
    /// Length of the faulty attribute, for a NOTIFICATION's data; 0 when none applies.
    #[serde(skip)]
    pub(crate) len: u16,
}

impl fmt::Display for UpdateIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(a) = self.attr {
            write!(f, " in {a}")?;
        }
        if let Some(fam) = self.family {
            write!(f, " ({fam})")?;
        }
        write!(f, " at byte {}: {}", self.offset, self.treatment)
    }
}

/// A fault found by one attribute's check: its kind and treatment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) kind: IssueKind,
    pub(crate) treatment: Treatment,
}

impl Fault {
    pub(crate) const fn withdraw(kind: IssueKind) -> Self {
        Self {
            kind,
            treatment: Treatment::TreatAsWithdraw,
        }
    }
    pub(crate) const fn discard(kind: IssueKind) -> Self {
        Self {
            kind,
            treatment: Treatment::AttributeDiscard,
        }
    }
    pub(crate) const fn reset(kind: IssueKind) -> Self {
        Self {
            kind,
            treatment: Treatment::SessionReset,
        }
    }
    pub(crate) const fn disable(kind: IssueKind) -> Self {
        Self {
            kind,
            treatment: Treatment::AfiSafiDisable,
        }
    }
}

/// The most issues an update keeps; more are only counted, so a hostile update of a
/// thousand bad attributes costs no memory in proportion.
pub const MAX_ISSUES: usize = 8;
