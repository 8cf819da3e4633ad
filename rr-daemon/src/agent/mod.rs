//! The node agent (`rr-daemon agent`): Calico's datastore (etcd v3) drives the embedded
//! [`Speaker`](crate::speaker::Speaker), with no confd and no rendered files.
//!
//! Two halves meet at [`plan::Plan`]:
//! - the pure half reads Calico's resources into a [`model::Datastore`] (one etcd key at a
//!   time, put or delete) and computes what this node runs: its sessions, named as confd
//!   names BIRD's protocols, its blocks and pools, and from them a whole [`Config`]
//!   ([`plan::Plan::config`]). Selectors have their own parser ([`selector`]). One
//!   input is not in etcd: the workloads of this node chosen for local workload peering,
//!   read, as confd reads them, from the endpoint status files Felix writes
//!   ([`model::read_endpoint_status`]).
//! - the runtime half ([`etcd`], [`run`]) lists and watches the datastore, feeds every
//!   change (and every change of Felix's endpoint status files) into the `Datastore`,
//!   plans again and hands the new `Config` to
//!   [`Speaker::reload`](crate::speaker::Speaker::reload), whose diff touches only the
//!   peers and routes that changed.
//!
//! [`Config`]: crate::config::Config

pub mod departing;
pub mod etcd;
pub mod model;
pub mod plan;
pub mod run;
pub mod selector;
