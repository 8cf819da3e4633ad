//! The local control socket (`[control] socket`, `/run/rr-daemon/control.sock` by
//! default): the actions of `rr-daemon ctl --socket PATH` (reset, disable, enable,
//! reload, announce, withdraw), and the read-only API's answers over it. Reaching it is
//! the authorisation, as for `birdc`: the socket is created mode 0660 (owner and group),
//! and the HTTP API stays read-only.
//!
//! The protocol: one JSON object per line in, one JSON object per line out, as many
//! requests as the client likes on one connection ([`Request`], [`Reply`]):
//!
//! ```text
//! > {"action":"reset","address":"192.0.2.1"}
//! < {"ok":true,"message":"192.0.2.1: hard reset (Cease / Administrative Reset), a new session after the idle hold time"}
//! > {"action":"reset","address":"192.0.2.1","soft":"out"}
//! > {"action":"disable","address":"192.0.2.1","message":"maintenance until 14:00"}
//! > {"action":"enable","address":"192.0.2.1"}
//! > {"action":"reload"}
//! < {"ok":true,"message":"reloaded /etc/rr-daemon.toml: ...","reload":{...}}
//! > {"action":"announce","prefix":"203.0.113.0/24","next_hop":"192.0.2.254"}
//! > {"action":"withdraw","prefix":"203.0.113.0/24"}
//! > {"action":"get","path":"/v1/peers"}
//! < {"ok":true,"status":200,"body":"[...the HTTP API's JSON, as text...]"}
//! < {"ok":false,"error":"192.0.2.9 is not a peer"}
//! ```
//!
//! Every action is logged at info with its result and the caller's uid and pid
//! (`SO_PEERCRED`). Bounds: [`MAX_CONNECTIONS`] connections at once (more wait in the
//! backlog), a request line of at most [`MAX_LINE`] bytes, a connection idle for
//! [`IDLE`] is closed.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bgp_wire::attr::NextHop;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::speaker::{SoftReset, Speaker};

pub mod cli;
pub mod client;

/// The default `[control] socket`.
pub const DEFAULT_SOCKET: &str = "/run/rr-daemon/control.sock";
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// The longest request line.
pub const MAX_LINE: usize = 64 << 10;
/// A connection with no request for this long is closed.
pub const IDLE: Duration = Duration::from_secs(300);

/// One request: a JSON object on one line, its `action` saying which.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// What `GET path` of the HTTP API answers (`/v1/peers`, `/v1/status`, ...).
    Get {
        /// The path, with its query.
        path: String,
    },
    /// `ctl reset ADDRESS [--soft in|out]`: a hard reset, or a soft one.
    Reset {
        /// The peer (`192.0.2.1`, `fe80::2%eth0`).
        address: String,
        /// `in` or `out` for a soft reset; absent for a hard one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        soft: Option<SoftReset>,
        /// The hard reset's shutdown communication (RFC 9003).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// `ctl disable ADDRESS [--message TEXT]`.
    Disable {
        /// The peer.
        address: String,
        /// The shutdown communication (RFC 9003), at most 255 bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// `ctl enable ADDRESS`.
    Enable {
        /// The peer.
        address: String,
    },
    /// `ctl reload`: read the configuration again, as SIGHUP does.
    Reload,
    /// `ctl announce PREFIX [--next-hop ADDR]`.
    Announce {
        /// The prefix.
        prefix: IpNet,
        /// Its next hop; without, ours towards each peer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_hop: Option<IpAddr>,
    },
    /// `ctl withdraw PREFIX`: a prefix of `announce`.
    Withdraw {
        /// The prefix.
        prefix: IpNet,
    },
}

/// One reply: a JSON object on one line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was done, in one line (actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `get`: the HTTP status the API answers with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `get`: the API's body, as text (JSON for the `/v1` paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `reload`: what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadReport>,
}

impl Reply {
    fn done(message: String) -> Self {
        Self {
            ok: true,
            message: Some(message),
            ..Self::default()
        }
    }

    fn failed(error: String) -> Self {
        Self {
            ok: false,
            error: Some(error),
            ..Self::default()
        }
    }
}

/// What a reload changed ([`crate::cli`]'s reload, shared by SIGHUP, BIRD's `configure`
/// and `ctl reload`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The file read.
    pub file: String,
    /// Nothing differs from the running configuration: nothing was touched.
    pub unchanged: bool,
    /// Peers added.
    pub added: Vec<IpAddr>,
    /// Peers removed (Cease, Peer De-configured).
    pub removed: Vec<IpAddr>,
    /// Peers whose settings changed (a new session, or new policies on the running one).
    pub changed: Vec<IpAddr>,
    /// Of `changed`, those that kept their session (their change was to policy, or to
    /// what applies to the running session or is only shown, such as `description`).
    pub policy_only: Vec<IpAddr>,
    /// For each peer of `changed`, the keys that changed, as the file names them
    /// (`description`, `hold_time`, `export` ...); absent from the JSON when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changed_keys: BTreeMap<IpAddr, Vec<String>>,
    /// Other parts that changed, in words (`[fib]`, `[[route]]`, `[speaker]` ...).
    pub other: Vec<String>,
}

/// Peers a [`ReloadReport::summary`] names in each list (the JSON has them all).
pub const SUMMARY_PEERS: usize = 10;

impl ReloadReport {
    /// Fills in the peers' lists from the speaker's difference.
    pub fn set_peers(&mut self, diff: crate::config::Diff) {
        self.added = diff.added;
        self.removed = diff.removed;
        self.changed = diff.changed;
        self.policy_only = diff.policy_only;
        self.changed_keys = diff
            .changed_keys
            .into_iter()
            .map(|(a, keys)| (a, keys.into_iter().map(str::to_owned).collect()))
            .collect();
    }

    /// One line: what changed, or that nothing did.
    pub fn summary(&self) -> String {
        if self.unchanged {
            return format!("{}: unchanged, nothing done", self.file);
        }
        // A reload of hundreds of peers stays one readable line; `--json` lists them all.
        let list = |v: &[IpAddr]| {
            let mut s = v
                .iter()
                .take(SUMMARY_PEERS)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            if v.len() > SUMMARY_PEERS {
                s.push_str(&format!(" and {} more", v.len() - SUMMARY_PEERS));
            }
            s
        };
        let mut parts = Vec::new();
        for (what, v) in [("added", &self.added), ("removed", &self.removed)] {
            if !v.is_empty() {
                parts.push(format!("peers {what}: {}", list(v)));
            }
        }
        if !self.changed.is_empty() {
            // Each peer with what changed in it, as far as the report knows.
            let mut s = self
                .changed
                .iter()
                .take(SUMMARY_PEERS)
                .map(|a| match self.changed_keys.get(a) {
                    Some(keys) if !keys.is_empty() => format!("{a} ({})", keys.join(", ")),
                    _ => a.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            if self.changed.len() > SUMMARY_PEERS {
                s.push_str(&format!(" and {} more", self.changed.len() - SUMMARY_PEERS));
            }
            parts.push(format!("peers changed: {s}"));
        }
        if !self.policy_only.is_empty() {
            parts.push(format!("sessions kept: {}", list(&self.policy_only)));
        }
        if !self.other.is_empty() {
            parts.push(format!("also changed: {}", self.other.join(", ")));
        }
        if parts.is_empty() {
            parts.push("no peer changed".to_owned());
        }
        format!("reloaded {}: {}", self.file, parts.join("; "))
    }
}

/// What the socket asks of the daemon's loop: a reload, whose result (the report, or
/// the error as `FILE:LINE:COL: message`) comes back on the sender.
pub type ReloadRequest = oneshot::Sender<Result<ReloadReport, String>>;

/// The bound socket; its file is removed when this is dropped (if it is still ours).
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the file we bound: a file put there since is not removed.
    ino: (u64, u64),
}

/// Why the socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another process answers on the path.
    #[error(
        "{0}: another daemon answers on this control socket (stop it, or set [control] socket)"
    )]
    Live(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0}: exists and is not a socket: not replaced")]
    NotSocket(PathBuf),
    /// The system refused.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

impl BindError {
    /// The system refused for want of permission (a default path under `/run` for a
    /// user other than root).
    pub fn is_permission(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
    }
}

impl ControlSocket {
    /// Binds `path`, mode 0660 from the start: the socket is bound in a private
    /// directory (0700) next to it, its mode set, and only then linked into place, so
    /// nobody can connect while it is wider. A missing directory is created (0750); a
    /// socket file nobody answers on is replaced; one a process answers on is not
    /// ([`BindError::Live`]), nor a file that is no socket.
    pub fn bind(path: &Path) -> Result<Self, BindError> {
        let io_err = |source: io::Error| BindError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&dir)
                .map_err(io_err)?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(BindError::NotSocket(path.to_owned()));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(BindError::Live(path.to_owned())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    info!(path = %path.display(), "control socket: a stale socket file replaced");
                    std::fs::remove_file(path).map_err(io_err)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let name = path.file_name().map_or_else(
            || "control.sock".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let private = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_dir_all(&private);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(io_err)?;
        let staged = private.join("s");
        // Linked, not renamed, into place: link() never replaces a file, so of two
        // daemons starting at once the second finds the first's socket.
        let bound = (|| {
            let l = std::os::unix::net::UnixListener::bind(&staged)?;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o660))?;
            std::fs::hard_link(&staged, path)?;
            l.set_nonblocking(true)?;
            Ok::<_, io::Error>(l)
        })();
        let _ = std::fs::remove_dir_all(&private);
        let listener = match bound {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BindError::Live(path.to_owned()));
            }
            r => r.map_err(io_err)?,
        };
        let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
        let listener = UnixListener::from_std(listener).map_err(io_err)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            ino: (meta.dev(), meta.ino()),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until the task is dropped. `api` answers `get` (the HTTP API's
    /// router); `reload` goes to the daemon's loop.
    pub async fn serve(
        &self,
        speaker: Speaker,
        api: axum::Router,
        reload: mpsc::Sender<ReloadRequest>,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let ctx = Arc::new(Context {
            speaker,
            api,
            reload,
        });
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                if let Err(e) = ctx.connection(stream).await {
                    debug!("control socket: connection ended: {e}");
                }
                drop(permit);
            });
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct Context {
    speaker: Speaker,
    api: axum::Router,
    reload: mpsc::Sender<ReloadRequest>,
}

/// Who is on the other end, for the log.
#[derive(Clone, Copy, Debug)]
struct Caller {
    uid: Option<u32>,
    pid: Option<i32>,
}

impl Context {
    async fn connection(&self, stream: UnixStream) -> io::Result<()> {
        let cred = stream.peer_cred().ok();
        let caller = Caller {
            uid: cred.map(|c| c.uid()),
            pid: cred.and_then(|c| c.pid()),
        };
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = tokio::time::timeout(
                IDLE,
                AsyncReadExt::take(&mut r, MAX_LINE as u64 + 1).read_until(b'\n', &mut line),
            )
            .await;
            let n = match read {
                Err(_) => return Ok(()),
                Ok(r) => r?,
            };
            if n == 0 {
                return Ok(());
            }
            if line.len() > MAX_LINE {
                let reply = Reply::failed(format!("request longer than {MAX_LINE} bytes"));
                write_reply(&mut w, &reply).await?;
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            let reply = match serde_json::from_str::<Request>(text.trim()) {
                Ok(req) => self.handle(req, caller).await,
                Err(e) => Reply::failed(format!("bad request: {e}")),
            };
            write_reply(&mut w, &reply).await?;
        }
    }

    async fn handle(&self, req: Request, caller: Caller) -> Reply {
        if let Request::Get { path } = &req {
            return self.get(path).await;
        }
        let what = describe(&req);
        let reply = self.act(req).await;
        let uid = caller.uid.map(|u| u.to_string()).unwrap_or_default();
        let pid = caller.pid.map(|p| p.to_string()).unwrap_or_default();
        match (&reply.message, &reply.error) {
            (Some(m), _) if reply.ok => {
                info!(action = what, uid, pid, result = %m, "control: action done");
            }
            (_, e) => {
                let e = e.as_deref().unwrap_or("");
                info!(action = what, uid, pid, error = %e, "control: action failed");
            }
        }
        reply
    }

    async fn get(&self, path: &str) -> Reply {
        use tower::ServiceExt;
        let req = match axum::http::Request::get(path).body(axum::body::Body::empty()) {
            Ok(r) => r,
            Err(e) => return Reply::failed(format!("bad path {path:?}: {e}")),
        };
        let resp = match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        };
        let status = resp.status().as_u16();
        match axum::body::to_bytes(resp.into_body(), 1 << 30).await {
            Ok(b) => Reply {
                ok: true,
                status: Some(status),
                body: Some(String::from_utf8_lossy(&b).into_owned()),
                ..Reply::default()
            },
            Err(e) => Reply::failed(format!("reading the answer: {e}")),
        }
    }

    async fn act(&self, req: Request) -> Reply {
        if req == Request::Reload {
            return self.reload().await;
        }
        match self.action(req).await {
            Ok(m) => Reply::done(m),
            Err(e) => Reply::failed(e),
        }
    }

    async fn action(&self, req: Request) -> Result<String, String> {
        let s = &self.speaker;
        match req {
            Request::Get { .. } | Request::Reload => Err("not an action".to_owned()),
            Request::Reset {
                address,
                soft: None,
                message,
            } => {
                let a = peer_address(&address)?;
                check_communication(message.as_deref())?;
                s.reset_peer(a, message).await.map_err(|e| e.to_string())?;
                Ok(format!(
                    "{a}: hard reset (Cease / Administrative Reset), a new session after the idle hold time"
                ))
            }
            Request::Reset {
                address,
                soft: Some(d),
                message: _,
            } => {
                let a = peer_address(&address)?;
                s.soft_reset(a, d).await.map_err(|e| e.to_string())?;
                Ok(match d {
                    SoftReset::In => format!("{a}: soft reset in: ROUTE-REFRESH sent"),
                    SoftReset::Out => format!("{a}: soft reset out: the Adj-RIB-Out is sent again"),
                })
            }
            Request::Disable { address, message } => {
                let a = peer_address(&address)?;
                check_communication(message.as_deref())?;
                let changed = s
                    .set_peer_enabled(a, false, message)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(if changed {
                    format!("{a}: disabled (Cease / Administrative Shutdown)")
                } else {
                    format!("{a}: already disabled")
                })
            }
            Request::Enable { address } => {
                let a = peer_address(&address)?;
                let changed = s
                    .set_peer_enabled(a, true, None)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(if changed {
                    format!("{a}: enabled, the session starts")
                } else {
                    format!("{a}: already enabled")
                })
            }
            Request::Announce { prefix, next_hop } => {
                let p = prefix.trunc();
                let attrs = announced_attrs(p, next_hop)?;
                let replaced = s.announce(p, attrs).await.map_err(|e| e.to_string())?;
                Ok(format!(
                    "{p} announced{}",
                    if replaced {
                        " (replacing the earlier one)"
                    } else {
                        ""
                    }
                ))
            }
            Request::Withdraw { prefix } => {
                let p = prefix.trunc();
                if s.withdraw_announced(p).await.map_err(|e| e.to_string())? {
                    Ok(format!("{p} withdrawn"))
                } else {
                    Err(format!("{p} was not announced with `ctl announce`"))
                }
            }
        }
    }

    async fn reload(&self) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.reload.send(tx).await.is_err() {
            return Reply::failed("the daemon is stopping".to_owned());
        }
        match rx.await {
            Ok(Ok(report)) => Reply {
                ok: true,
                message: Some(report.summary()),
                reload: Some(report),
                ..Reply::default()
            },
            Ok(Err(e)) => Reply::failed(e),
            Err(_) => Reply::failed("the daemon is stopping".to_owned()),
        }
    }
}

/// A shutdown communication fits its NOTIFICATION (RFC 9003: 255 bytes of UTF-8).
fn check_communication(m: Option<&str>) -> Result<(), String> {
    let max = bgp_wire::notification::MAX_SHUTDOWN_COMMUNICATION;
    match m {
        Some(m) if m.len() > max => Err(format!(
            "--message is {} bytes: a shutdown communication holds at most {max} (RFC 9003)",
            m.len()
        )),
        _ => Ok(()),
    }
}

/// The request in a few words, for the log.
fn describe(r: &Request) -> String {
    match r {
        Request::Get { path } => format!("get {path}"),
        Request::Reset {
            address,
            soft: None,
            ..
        } => format!("reset {address}"),
        Request::Reset {
            address,
            soft: Some(d),
            ..
        } => format!(
            "reset {address} --soft {}",
            if *d == SoftReset::In { "in" } else { "out" }
        ),
        Request::Disable { address, .. } => format!("disable {address}"),
        Request::Enable { address } => format!("enable {address}"),
        Request::Reload => "reload".to_owned(),
        Request::Announce { prefix, next_hop } => match next_hop {
            Some(n) => format!("announce {prefix} --next-hop {n}"),
            None => format!("announce {prefix}"),
        },
        Request::Withdraw { prefix } => format!("withdraw {prefix}"),
    }
}

/// A peer's address as `ctl` takes it: `192.0.2.1`, `fe80::2%eth0` (the interface is
/// not part of the peer's key).
pub fn peer_address(s: &str) -> Result<IpAddr, String> {
    let bare = s.split('%').next().unwrap_or(s);
    bare.parse()
        .map_err(|_| format!("{s:?} is not an IP address"))
}

/// The attributes of a route of `ctl announce`: origin IGP, `next_hop` if given (of the
/// prefix's family), else ours towards each peer.
pub fn announced_attrs(prefix: IpNet, next_hop: Option<IpAddr>) -> Result<rib::Attrs, String> {
    let next_hop = match (prefix, next_hop) {
        (_, None) => None,
        (IpNet::V4(_), Some(IpAddr::V4(a))) => Some(NextHop::V4(a)),
        (IpNet::V6(_), Some(IpAddr::V6(a))) => Some(NextHop::V6 {
            global: a,
            link_local: None,
        }),
        (_, Some(a)) => {
            return Err(format!("next hop {a} is not of the family of {prefix}"));
        }
    };
    Ok(rib::Attrs {
        next_hop,
        ..rib::Attrs::default()
    })
}

async fn write_reply(w: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> io::Result<()> {
    let mut text = serde_json::to_string(reply).map_err(io::Error::other)?;
    text.push('\n');
    w.write_all(text.as_bytes()).await
}

#[cfg(test)]
mod tests;
