//! MP_UNREACH_NLRI (RFC 4760 §4; errors RFC 7606 §7.12).

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::ctx::{Family, SessionCtx};
use crate::nlri::{self, Nlri, NlriIter};
use crate::update::issue::{Fault, IssueKind};

/// An MP_UNREACH_NLRI, owned. With no prefixes it is the End-of-RIB marker of its family.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct MpUnreach {
    /// The family of the withdrawn prefixes.
    pub family: Family,
    /// The withdrawn prefixes.
    pub withdrawn: Vec<Nlri>,
}

impl MpUnreach {
    pub(crate) fn value_len(&self, ctx: &SessionCtx) -> usize {
        let ap = ctx.add_path_tx.contains(self.family);
        3 + self
            .withdrawn
            .iter()
            .map(|n| n.encoded_len(ap))
            .sum::<usize>()
    }

    pub(crate) fn encode_value(&self, ctx: &SessionCtx, out: &mut BytesMut) {
        let ap = ctx.add_path_tx.contains(self.family);
        out.put_u16(self.family.afi().0);
        out.put_u8(self.family.safi().0);
        for n in &self.withdrawn {
            n.encode(ap, out);
        }
    }
}

/// An MP_UNREACH_NLRI borrowed from a message, already checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpUnreachView<'a> {
    family: Family,
    withdrawn: &'a [u8],
    add_path: bool,
}

impl<'a> MpUnreachView<'a> {
    /// The family.
    pub const fn family(&self) -> Family {
        self.family
    }

    /// The withdrawn prefixes.
    pub const fn withdrawn(&self) -> NlriIter<'a> {
        NlriIter::new(self.withdrawn, self.family, self.add_path)
    }

    /// The owned form.
    pub fn to_owned_attr(&self) -> MpUnreach {
        MpUnreach {
            family: self.family,
            withdrawn: self.withdrawn().collect(),
        }
    }
}

/// Parses the bytes after a negotiated AFI/SAFI; a fault is an AFI/SAFI disable.
pub(crate) fn parse<'a>(
    family: Family,
    rest: &'a [u8],
    ctx: &SessionCtx,
) -> Result<MpUnreachView<'a>, Fault> {
    let add_path = ctx.add_path_rx.contains(family);
    nlri::validate(rest, family, add_path)
        .map_err(|_| Fault::disable(IssueKind::MalformedMpAttribute))?;
    Ok(MpUnreachView {
        family,
        withdrawn: rest,
        add_path,
    })
}
