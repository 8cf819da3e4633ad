//! Attributes this codec does not decode, kept byte for byte (RFC 4271 §5, §9.1.3).

use bytes::Bytes;
use serde::Serialize;

use crate::attr::{AttrFlags, AttrType};

/// An attribute kept raw: an unknown optional transitive one passes on unchanged but for
/// the Partial bit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RawAttribute {
    /// The flags as received, less the extended-length bit (recomputed on encode).
    pub flags: AttrFlags,
    /// The type code.
    #[serde(rename = "code")]
    pub ty: AttrType,
    /// The value, unchanged.
    #[serde(serialize_with = "crate::util::serialize_hex")]
    pub value: Bytes,
}

impl RawAttribute {
    /// This attribute as it must be passed on: an optional transitive attribute we do not
    /// recognise gets the Partial bit (RFC 4271 §5); anything else is not passed on at all.
    pub fn for_readvertisement(&self) -> Option<Self> {
        if self.flags.optional() && self.flags.transitive() {
            Some(Self {
                flags: AttrFlags(self.flags.0 | AttrFlags::PARTIAL),
                ty: self.ty,
                value: self.value.clone(),
            })
        } else {
            None
        }
    }
}
