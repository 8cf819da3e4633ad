//! `rr-daemon ctl`'s actions, sent over the control socket ([`super`]): `reset`,
//! `disable`, `enable`, `reload`, `announce`, `withdraw`; and the read commands' GETs
//! when `ctl` is given `--socket`.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use ipnet::IpNet;

use super::{Reply, Request, client};
use crate::ctl::{CtlArgs, CtlError};
use crate::speaker::SoftReset;

/// `ctl reset --soft`'s direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    /// Ask the peer for its routes again (ROUTE-REFRESH).
    In,
    /// Send the peer our routes again.
    Out,
}

/// The actions of `rr-daemon ctl` (over the control socket: `--socket PATH`, else
/// `[control] socket`'s default).
#[derive(Subcommand, Clone, Debug)]
pub enum Action {
    /// Reset a peer's session: hard (Cease / Administrative Reset, a new session after the idle hold time),
    /// or with --soft in|out keeping it (ROUTE-REFRESH to the peer, or our routes sent
    /// again).
    Reset {
        /// The peer's address.
        address: String,
        /// A soft reset: `in` or `out`.
        #[arg(long, value_enum)]
        soft: Option<Direction>,
        /// The hard reset's shutdown communication (RFC 9003).
        #[arg(long, conflicts_with = "soft")]
        message: Option<String>,
    },
    /// Take a peer down (Cease / Administrative Shutdown) until `enable`.
    Disable {
        /// The peer's address.
        address: String,
        /// The shutdown communication the peer logs (RFC 9003, at most 255 bytes).
        #[arg(long)]
        message: Option<String>,
    },
    /// Bring a disabled peer back.
    Enable {
        /// The peer's address.
        address: String,
    },
    /// Read the configuration file again, as SIGHUP does, and print what changed.
    Reload,
    /// Originate a route at run time (kept across reloads until `withdraw`).
    Announce {
        /// The prefix.
        prefix: IpNet,
        /// Its next hop; without, ours towards each peer.
        #[arg(long)]
        next_hop: Option<std::net::IpAddr>,
    },
    /// Withdraw a route of `announce`.
    Withdraw {
        /// The prefix.
        prefix: IpNet,
    },
}

/// The socket `ctl` talks to: `--socket`, else the default.
pub fn socket_of(args: &CtlArgs) -> PathBuf {
    args.socket
        .clone()
        .unwrap_or_else(|| super::DEFAULT_SOCKET.into())
}

/// Runs one action: its one-line result (the reply's JSON with `--json`), or the
/// daemon's one-line error.
pub fn run(args: &CtlArgs, action: &Action) -> Result<String, CtlError> {
    let req = match action.clone() {
        Action::Reset {
            address,
            soft,
            message,
        } => Request::Reset {
            address,
            soft: soft.map(|d| match d {
                Direction::In => SoftReset::In,
                Direction::Out => SoftReset::Out,
            }),
            message,
        },
        Action::Disable { address, message } => Request::Disable { address, message },
        Action::Enable { address } => Request::Enable { address },
        Action::Reload => Request::Reload,
        Action::Announce { prefix, next_hop } => Request::Announce { prefix, next_hop },
        Action::Withdraw { prefix } => Request::Withdraw { prefix },
    };
    let reply = client::call(&socket_of(args), &req).map_err(CtlError::Control)?;
    if !reply.ok {
        return Err(CtlError::Control(
            reply.error.unwrap_or_else(|| "failed".to_owned()),
        ));
    }
    if args.json {
        let line = serde_json::to_string(&reply).map_err(|e| CtlError::BadAnswer(e.to_string()))?;
        return Ok(line + "\n");
    }
    Ok(reply.message.unwrap_or_default() + "\n")
}

/// `GET path` of the API over the socket at `socket`: the status and the body.
pub fn get(socket: &Path, path: &str) -> Result<(u16, String), CtlError> {
    let reply: Reply = client::call(
        socket,
        &Request::Get {
            path: path.to_owned(),
        },
    )
    .map_err(CtlError::Control)?;
    match (reply.ok, reply.status, reply.body) {
        (true, Some(status), Some(body)) => Ok((status, body)),
        _ => Err(CtlError::Control(
            reply.error.unwrap_or_else(|| "no answer".to_owned()),
        )),
    }
}
