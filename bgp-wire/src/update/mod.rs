//! UPDATE (RFC 4271 §4.3): the checked zero-copy [`UpdateView`], the owned [`Update`], the
//! RFC 7606 classification of faults, and the packing of many prefixes into few messages.

pub mod issue;
mod owned;
mod pack;
mod view;

pub use issue::{IssueKind, MAX_ISSUES, Treatment, UpdateIssue};
pub use owned::{EncodeError, Update};
pub use pack::UpdatePacker;
pub use view::{AttrIter, UpdateView};
