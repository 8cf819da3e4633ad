//! What one node runs, computed from a [`Datastore`]: its sessions as confd renders them,
//! its blocks, and the whole [`Config`].

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Serialize;

use super::model::{Datastore, ResourceError};
use crate::config::Config;

/// Where the node's router ID comes from (`CALICO_ROUTER_ID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterId {
    /// The node's IPv4 address (the default).
    Address,
    /// `hash`: a hash of the node name.
    Hash,
    /// An explicit address.
    Fixed(Ipv4Addr),
}

/// What the agent knows of its node from outside the datastore.
#[derive(Clone, Debug)]
pub struct NodeEnv {
    /// `NODENAME` / `--node-name`.
    pub node_name: String,
    /// `CALICO_ROUTER_ID`.
    pub router_id: RouterId,
    /// Where BGPPeer password secrets are read from in etcd mode (one file per secret).
    pub secrets_dir: Option<PathBuf>,
}

/// One BGP session of the node, as `rr-daemon agent --once --print-sessions` prints it
/// (exactly these keys, in this order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionPlan {
    /// The protocol name confd renders (`Mesh_10_0_0_2`, `Node_...`, `Global_...`).
    pub name: String,
    /// The neighbour's address.
    pub neighbor: std::net::IpAddr,
    /// Its port (179 unless set).
    pub port: u16,
    /// The peer's AS.
    pub asn: u32,
    /// Ours on this session.
    pub local_asn: u32,
    /// We wait for the peer to connect.
    pub passive: bool,
    /// The peer is our route-reflector client.
    pub rr_client: bool,
    /// The cluster ID we reflect with on this session.
    pub cluster_id: Option<String>,
    /// The source address to bind.
    pub source_address: Option<String>,
    /// GTSM: the hops, or `None` when off.
    pub ttl_security: Option<u8>,
    /// `"self"`, `"keep"` or `None`.
    pub next_hop: Option<String>,
    /// Whether a password is set (never the secret).
    pub password: bool,
    /// Graceful restart time in seconds, `None` for the default.
    pub graceful_restart_time: Option<u32>,
    /// The BGPFilter names applied on import, in order.
    pub import_filters: Vec<String>,
    /// The BGPFilter names applied on export, in order.
    pub export_filters: Vec<String>,
}

/// Everything the node runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Its sessions, sorted by name.
    pub sessions: Vec<SessionPlan>,
    /// Resources that could not be used, and why.
    pub skipped: Vec<ResourceError>,
}

/// Why no plan can be made (the node's own resource is missing or unusable).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// Computes the node's plan.
pub fn plan(ds: &Datastore, env: &NodeEnv) -> Result<Plan, PlanError> {
    let _ = (ds, env);
    todo!("agentmodel")
}

impl Plan {
    /// The whole configuration the speaker runs: `base` (the optional `--config` file's
    /// `[api]`, `[fib]`, `[control]`...) with the speaker, peers, routes and pools of the
    /// plan.
    pub fn config(&self, base: &Config) -> Config {
        let _ = base;
        todo!("agentmodel")
    }
}
