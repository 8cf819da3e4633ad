//! The control socket's shell: a Unix stream socket at BIRD's `-s PATH` (mode 0660)
//! serving [`super::socket`]'s protocol from the running speaker.
//!
//! Each connection gets the greeting, then one reply per command line. A reply is made
//! from views ([`StatusView`], [`ProtoView`], [`RouteRow`]) gathered for that command
//! from the speaker's public API ([`Speaker::snapshot`], [`Speaker::routes`],
//! [`Speaker::explain`]) and the BIRD file's translation (protocol names, filters, the
//! configuration); next hops' interfaces come from the kernel (`ip route get`). `configure` and `down` go to the daemon's loop
//! ([`Request`]), which reloads or stops as on SIGHUP or SIGTERM and says how it went.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (more wait in the backlog), a
//! command line of at most [`socket::MAX_COMMAND`] bytes, `show route` listings written
//! page by page ([`PAGE`] routes), `show route for` walks at most [`MAX_WALK`] routes.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{debug, warn};

use super::socket::{
    self, BgpView, Clock, Command, Dest, Framer, ProtoState, ProtoView, Reply, RouteCounts,
    RouteQuery, RouteRow, StatusView,
};
use super::{ProtoKind, Translation};

use crate::config::Config;
use crate::speaker::{PeerState, PeerStatus, RouteEntry, Snapshot, Speaker};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Routes per page of a `show route` listing.
pub const PAGE: usize = 4096;
/// Routes `show route for ADDRESS` walks at most for the longest match.
pub const MAX_WALK: usize = 1_000_000;

/// What the socket answers from: the running configuration, as last (re)loaded.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The resolved configuration.
    pub config: Config,
    /// The BIRD file's translation (protocol names and filters).
    pub translation: Translation,
    /// The BIRD file's path.
    pub file: PathBuf,
    /// `bird` or `bird6`.
    pub dialect: super::Dialect,
    /// When it was loaded.
    pub at: Timestamp,
}

/// What the socket asks of the daemon's loop.
#[derive(Debug)]
pub enum Request {
    /// `configure` (`check`: read only) of `file` (the running one when `None`); the reply
    /// comes back on `done`.
    Configure {
        /// Only read and check.
        check: bool,
        /// Another file than the daemon's.
        file: Option<PathBuf>,
        /// The reply to send.
        done: oneshot::Sender<Reply>,
    },
    /// `down`: stop as on SIGTERM (the reply is already sent).
    Down,
}

/// The bound socket; its file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` with mode 0660. A file left there by a daemon that is gone is
    /// replaced (as BIRD does); a socket some process still answers on is not.
    pub async fn bind(path: &Path) -> io::Result<Self> {
        if std::fs::symlink_metadata(path).is_ok() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{}: another daemon answers on this control socket",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let guard = Self {
            listener,
            path: path.to_owned(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        Ok(guard)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until the task is dropped.
    pub async fn serve(
        &self,
        speaker: Speaker,
        loaded: watch::Receiver<Arc<Loaded>>,
        requests: mpsc::Sender<Request>,
    ) {
        let boot = Timestamp::now();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ctx = Context {
                speaker: speaker.clone(),
                loaded: loaded.clone(),
                requests: requests.clone(),
                boot,
            };
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
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Context {
    speaker: Speaker,
    loaded: watch::Receiver<Arc<Loaded>>,
    requests: mpsc::Sender<Request>,
    boot: Timestamp,
}

impl Context {
    async fn connection(&self, mut stream: UnixStream) -> io::Result<()> {
        let mut framer = Framer::new();
        stream.write_all(framer.greeting().as_bytes()).await?;
        let mut buf: Vec<u8> = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        // Discarding the rest of an overlong line.
        let mut skipping = false;
        loop {
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if skipping {
                    skipping = false;
                    continue;
                }
                let text = String::from_utf8_lossy(&line[..nl]);
                let text = text.strip_suffix('\r').unwrap_or(&text);
                let stop = self.command(text, &mut framer, &mut stream).await?;
                if stop {
                    return Ok(());
                }
            }
            if buf.len() > socket::MAX_COMMAND {
                buf.clear();
                if !skipping {
                    let mut out = String::new();
                    framer.write(&socket::too_long(), &mut out);
                    stream.write_all(out.as_bytes()).await?;
                }
                skipping = true;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Answers one command line; `true` when the connection is to end (`down`).
    async fn command(
        &self,
        line: &str,
        framer: &mut Framer,
        stream: &mut UnixStream,
    ) -> io::Result<bool> {
        let mut out = String::new();
        let dialect = self.loaded.borrow().dialect;
        let cmd = match socket::parse(line, dialect) {
            Ok(c) => c,
            Err(reply) => {
                framer.write(&reply, &mut out);
                stream.write_all(out.as_bytes()).await?;
                return Ok(false);
            }
        };
        let loaded = self.loaded.borrow().clone();
        let clock = Clock {
            now: Timestamp::now(),
            tz: TimeZone::system(),
        };
        let stopped = || Reply::one(8000, "the speaker has stopped");
        let mut down = false;
        let reply = match cmd {
            Command::ShowStatus => match self.speaker.snapshot().await {
                Ok(s) => socket::show_status(&self.status(&s, &loaded), &clock),
                Err(_) => stopped(),
            },
            Command::ShowProtocols { all, which } => match self.protocols(&loaded, all).await {
                Some(protos) => socket::show_protocols(&protos, all, &which, &clock),
                None => stopped(),
            },
            Command::ShowRoute(q) => {
                return self
                    .show_route(&q, &loaded, &clock, framer, stream)
                    .await
                    .map(|()| false);
            }
            Command::Configure { check, file } => {
                let (done, answer) = oneshot::channel();
                let req = Request::Configure {
                    check,
                    file: file.map(PathBuf::from),
                    done,
                };
                if self.requests.send(req).await.is_err() {
                    Reply::one(6, "Reconfiguration ignored, shutting down")
                } else {
                    answer
                        .await
                        .unwrap_or_else(|_| Reply::one(6, "Reconfiguration ignored, shutting down"))
                }
            }
            Command::Down => {
                down = true;
                socket::down_reply()
            }
        };
        framer.write(&reply, &mut out);
        stream.write_all(out.as_bytes()).await?;
        if down {
            stream.flush().await?;
            let _ = self.requests.send(Request::Down).await;
        }
        Ok(down)
    }

    fn status(&self, s: &Snapshot, loaded: &Loaded) -> StatusView {
        StatusView {
            router_id: s.router_id,
            boot: self.boot,
            reconfigured: loaded.at,
            recovery: s.recovery.map(|r| socket::Recovery {
                waiting: r.waiting,
                remaining_s: r.remaining_s,
                wait_s: r.wait_s,
            }),
            shutting_down: false,
        }
    }

    /// Every protocol of the file with its state; `None` when the speaker has stopped.
    async fn protocols(&self, loaded: &Loaded, all: bool) -> Option<Vec<ProtoView>> {
        let snap = self.speaker.snapshot().await.ok()?;
        let now = Timestamp::now();
        let ago = |s: u64| {
            now.checked_sub(jiff::SignedDuration::from_secs(
                i64::try_from(s).unwrap_or(i64::MAX),
            ))
            .unwrap_or(now)
        };
        let peers: HashMap<IpAddr, &PeerStatus> =
            snap.peers.iter().map(|p| (p.address, p)).collect();
        // Best routes per source, for `Routes: ... preferred` (only with `all`).
        let mut preferred: HashMap<Option<IpAddr>, u64> = HashMap::new();
        if all {
            self.walk(MAX_WALK, |e| {
                *preferred.entry(e.from).or_default() += 1;
                false
            })
            .await;
        }
        let recovering = snap.recovery.is_some();
        let originated = loaded.config.originate.len() as u64;
        let mut out = Vec::new();
        for p in &loaded.translation.protocols {
            let mut v = ProtoView {
                name: p.name.clone(),
                kind: p.kind,
                state: ProtoState::Up,
                since: self.boot,
                description: p.description.clone(),
                preference: socket::default_preference(p.kind),
                import: p.import.clone(),
                export: p.export.clone(),
                recovery: None,
                routes: RouteCounts::default(),
                bgp: None,
            };
            match p.kind {
                ProtoKind::Bgp => {
                    let Some(addr) = p.peer else { continue };
                    let settings = loaded.config.peers.get(&addr);
                    match peers.get(&addr) {
                        Some(s) => {
                            let up = s.state == PeerState::Established;
                            v.state = if up {
                                ProtoState::Up
                            } else {
                                ProtoState::Start
                            };
                            v.since = ago(s.since_s);
                            v.routes = RouteCounts {
                                imported: s.prefixes_accepted,
                                exported: s.prefixes_sent,
                                preferred: preferred.get(&Some(addr)).copied().unwrap_or(0),
                            };
                            if recovering {
                                v.recovery = Some(if up { "" } else { " pending" });
                            }
                            let passive = settings.is_some_and(|c| c.passive);
                            let error = match snap.last_down.get(&addr) {
                                Some(d) => socket::bgp_error(d),
                                None => s.last_error.as_ref().map(|e| format!("Error: {e}")),
                            };
                            let session = up.then(|| {
                                let mut k = String::from(if s.asn == snap.local_as {
                                    "internal"
                                } else {
                                    "external"
                                });
                                if settings.is_some_and(|c| match c.ttl {
                                    crate::config::Ttl::Multihop(t)
                                    | crate::config::Ttl::Security(t) => t > 1,
                                }) {
                                    k.push_str(" multihop");
                                }
                                if settings.is_some_and(|c| c.rr_client) {
                                    k.push_str(" route-reflector");
                                }
                                k.push_str(" AS4");
                                // As configured: whether the peer agreed is not in the
                                // speaker's status.
                                if settings.is_some_and(|c| c.add_path.receive) {
                                    k.push_str(" add-path-rx");
                                }
                                if settings.is_some_and(|c| c.add_path.send.is_some()) {
                                    k.push_str(" add-path-tx");
                                }
                                k
                            });
                            v.bgp = Some(BgpView {
                                state: bgp_state(s.state, passive),
                                neighbor: addr,
                                neighbor_as: s.asn,
                                helping: s.graceful_restart_pending,
                                last_error: error,
                                session,
                                source: if up {
                                    settings.and_then(|c| c.source_address)
                                } else {
                                    None
                                },
                            });
                        }
                        None => {
                            v.state = ProtoState::Down;
                            v.bgp = Some(BgpView {
                                state: "Down",
                                neighbor: addr,
                                neighbor_as: settings.map_or(0, |c| c.asn),
                                helping: false,
                                last_error: None,
                                session: None,
                                source: None,
                            });
                        }
                    }
                }
                ProtoKind::Kernel => {
                    if recovering {
                        // BIRD holds its kernel protocol until the recovery ends.
                        v.state = ProtoState::Wait;
                        v.recovery = Some(" waiting");
                    }
                    v.routes.exported = snap.rib.prefixes as u64;
                }
                ProtoKind::Static => {
                    v.routes = RouteCounts {
                        imported: originated,
                        exported: 0,
                        preferred: originated,
                    };
                }
                ProtoKind::Device | ProtoKind::Direct => {}
            }
            out.push(v);
        }
        Some(out)
    }

    /// Calls `f` on every best route, page by page, until it returns `true` or `limit`
    /// routes were seen.
    async fn walk(&self, limit: usize, mut f: impl FnMut(&RouteEntry) -> bool) {
        let (mut seen, mut after) = (0, None);
        while seen < limit {
            let Ok(page) = self
                .speaker
                .routes_after(after, PAGE.min(limit - seen))
                .await
            else {
                return;
            };
            for e in &page.routes {
                if f(e) {
                    return;
                }
            }
            seen += page.routes.len();
            after = page.routes.last().map(|e| e.prefix);
            if !page.more || page.routes.is_empty() {
                return;
            }
        }
    }

    async fn show_route(
        &self,
        q: &RouteQuery,
        loaded: &Loaded,
        clock: &Clock,
        framer: &mut Framer,
        stream: &mut UnixStream,
    ) -> io::Result<()> {
        let names: Vec<&str> = loaded
            .translation
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let mut rows = Rows::new(self, loaded, clock).await;
        let reply = match q.prefix {
            Some((net, longest)) => {
                let target = if longest {
                    let mut best: Option<IpNet> = None;
                    self.walk(MAX_WALK, |e| {
                        if e.prefix.contains(&net)
                            && best.is_none_or(|b| e.prefix.prefix_len() > b.prefix_len())
                        {
                            best = Some(e.prefix);
                        }
                        false
                    })
                    .await;
                    best
                } else {
                    Some(net)
                };
                let mut list = Vec::new();
                if let Some(t) = target
                    && let Ok(Some(x)) = self.speaker.explain(t).await
                {
                    for (i, path) in x.explanation.paths.iter().enumerate() {
                        let from = x.from.get(i).copied().flatten();
                        let best = matches!(path.status, rib::PathStatus::Best);
                        list.push(
                            rows.row(t, &path.attrs.to_attrs(), from, best, path.stale)
                                .await,
                        );
                    }
                }
                socket::show_route(&list, q, &names, clock)
            }
            None => {
                // Streamed: one page of rows at a time, one reply.
                if let Some(p) = &q.protocol
                    && !names.contains(&p.as_str())
                {
                    socket::show_route(&[], q, &names, clock)
                } else {
                    let (mut shown, mut total) = (0usize, 0usize);
                    let mut after = None;
                    loop {
                        let Ok(page) = self.speaker.routes_after(after, PAGE).await else {
                            break;
                        };
                        let mut list = Vec::with_capacity(page.routes.len());
                        for e in &page.routes {
                            total += 1;
                            // Rows are only made (kernel lookups and all) when shown.
                            if let Some(p) = rows.quick_protocol(e.prefix, e.from) {
                                let wanted = q.protocol.as_ref().is_none_or(|w| *w == p);
                                if q.count || !wanted {
                                    shown += usize::from(wanted);
                                    continue;
                                }
                            }
                            let row = rows
                                .row(e.prefix, &e.best.attrs.to_attrs(), e.from, true, false)
                                .await;
                            if q.protocol.as_ref().is_none_or(|p| *p == row.protocol) {
                                shown += 1;
                                list.push(row);
                            }
                        }
                        after = page.routes.last().map(|e| e.prefix);
                        if !q.count {
                            let part = socket::show_route(&list, q, &names, clock);
                            // Every line but the closing `0000 `.
                            let body = Reply {
                                lines: part.lines.into_iter().filter(|l| !l.last).collect(),
                            };
                            let mut out = String::new();
                            framer.write(&body, &mut out);
                            stream.write_all(out.as_bytes()).await?;
                        }
                        if !page.more || page.routes.is_empty() {
                            break;
                        }
                    }
                    if q.count {
                        Reply::one(
                            14,
                            format!("{shown} of {total} routes for {total} networks"),
                        )
                    } else {
                        Reply::one(0, "")
                    }
                }
            }
        };
        let mut out = String::new();
        framer.write(&reply, &mut out);
        stream.write_all(out.as_bytes()).await
    }
}

/// BIRD's name of a session state; a passive peer waiting is `Passive`.
fn bgp_state(s: PeerState, passive: bool) -> &'static str {
    match s {
        PeerState::Idle | PeerState::Active if passive => "Passive",
        other => other.as_str(),
    }
}

/// Makes [`RouteRow`]s, with the kernel's answers for next hops' interfaces.
struct Rows {
    kernel: Option<rtnetlink::Handle>,
    cache: HashMap<IpAddr, Option<Hop>>,
    peers: HashMap<IpAddr, (String, Timestamp)>,
    static_name: String,
    kernel_name: String,
    direct_name: String,
    static_since: Timestamp,
    /// The file's static routes (`[[originate]]`).
    originated: std::collections::HashSet<IpNet>,
}

/// The kernel's answer to `ip route get`.
#[derive(Clone, Debug)]
struct Hop {
    /// The gateway, when not on-link.
    gateway: Option<IpAddr>,
    /// The output interface's name.
    iface: String,
    /// The route is the kernel's own interface route (`proto kernel`), which BIRD's
    /// `direct` protocol shows.
    interface_route: bool,
}

impl Rows {
    async fn new(ctx: &Context, loaded: &Loaded, clock: &Clock) -> Self {
        let kernel = match rtnetlink::new_connection() {
            Ok((conn, handle, _)) => {
                tokio::spawn(conn);
                Some(handle)
            }
            Err(e) => {
                debug!("control socket: no netlink for interface names: {e}");
                None
            }
        };
        let name_of = |k: ProtoKind, default: &str| {
            loaded
                .translation
                .protocols
                .iter()
                .find(|p| p.kind == k)
                .map_or_else(|| default.to_owned(), |p| p.name.clone())
        };
        let mut peers = HashMap::new();
        if let Ok(snap) = ctx.speaker.snapshot().await {
            for s in &snap.peers {
                let name = loaded
                    .translation
                    .protocol_of_peer(s.address)
                    .map_or_else(|| s.address.to_string(), |p| p.name.clone());
                let since = clock
                    .now
                    .checked_sub(jiff::SignedDuration::from_secs(
                        i64::try_from(s.uptime_s.unwrap_or(s.since_s)).unwrap_or(0),
                    ))
                    .unwrap_or(clock.now);
                peers.insert(s.address, (name, since));
            }
        }
        Self {
            kernel,
            cache: HashMap::new(),
            peers,
            static_name: name_of(ProtoKind::Static, "static1"),
            kernel_name: name_of(ProtoKind::Kernel, "kernel1"),
            direct_name: name_of(ProtoKind::Direct, "direct1"),
            static_since: loaded.at,
            originated: loaded.config.originate.iter().map(|o| o.prefix).collect(),
        }
    }

    /// The protocol of a route when it is known without asking the kernel (a peer's,
    /// the static protocol's); `None` for a route learned from the kernel.
    fn quick_protocol(&self, prefix: IpNet, from: Option<IpAddr>) -> Option<String> {
        match from {
            Some(peer) => Some(
                self.peers
                    .get(&peer)
                    .map_or_else(|| peer.to_string(), |(n, _)| n.clone()),
            ),
            None if self.originated.contains(&prefix) => Some(self.static_name.clone()),
            None => None,
        }
    }

    /// How the kernel reaches `addr`: the gateway (if not on-link) and the interface.
    async fn lookup(&mut self, addr: IpAddr) -> Option<Hop> {
        if let Some(hit) = self.cache.get(&addr) {
            return hit.clone();
        }
        let answer = match &self.kernel {
            Some(h) => route_get(h, addr).await,
            None => None,
        };
        self.cache.insert(addr, answer.clone());
        answer
    }

    async fn row(
        &mut self,
        prefix: IpNet,
        attrs: &rib::Attrs,
        from: Option<IpAddr>,
        primary: bool,
        stale: bool,
    ) -> RouteRow {
        let next_hop: Option<IpAddr> = attrs.next_hop.as_ref().map(|nh| match nh {
            bgp_wire::attr::NextHop::V4(a) => IpAddr::V4(*a),
            bgp_wire::attr::NextHop::V6 { global, .. } => IpAddr::V6(*global),
        });
        match from {
            Some(peer) => {
                let (protocol, since) = self
                    .peers
                    .get(&peer)
                    .cloned()
                    .unwrap_or_else(|| (peer.to_string(), self.static_since));
                let gateway = next_hop.unwrap_or(peer);
                let (dest, igp) = match self.lookup(gateway).await {
                    Some(h) => {
                        let igp = if h.gateway.is_none() { "/0" } else { "/?" };
                        let iface = h.iface;
                        (Dest::Router { gateway, iface }, igp)
                    }
                    None => (Dest::Unreachable, "/-"),
                };
                RouteRow {
                    prefix,
                    dest,
                    protocol,
                    since,
                    from: Some(peer),
                    primary,
                    info: socket::bgp_route_info(attrs, 100, stale, igp),
                    attrs: socket::bgp_attr_lines(attrs, next_hop),
                }
            }
            None if self.originated.contains(&prefix) => RouteRow {
                prefix,
                dest: Dest::Blackhole,
                protocol: self.static_name.clone(),
                since: self.static_since,
                from: None,
                primary,
                info: " (200)".to_owned(),
                attrs: vec![(1008, "Type: static unicast univ".to_owned())],
            },
            None => {
                // Learned from the kernel: where the kernel sends it. An interface's own
                // route is what BIRD's `direct` protocol has; others its `kernel`'s.
                let hop = self.lookup(prefix.addr()).await;
                let direct = hop.as_ref().is_some_and(|h| h.interface_route);
                let dest = match hop {
                    Some(Hop {
                        gateway: Some(gateway),
                        iface,
                        ..
                    }) => Dest::Router { gateway, iface },
                    Some(Hop { iface, .. }) => Dest::Device(iface),
                    None => Dest::Unreachable,
                };
                let (protocol, info, kind) = if direct {
                    (self.direct_name.clone(), " (240)", "device")
                } else {
                    (self.kernel_name.clone(), " (10)", "inherit")
                };
                RouteRow {
                    prefix,
                    dest,
                    protocol,
                    since: self.static_since,
                    from: None,
                    primary,
                    info: info.to_owned(),
                    attrs: vec![(1008, format!("Type: {kind} unicast univ"))],
                }
            }
        }
    }
}

/// `ip route get ADDR`.
async fn route_get(h: &rtnetlink::Handle, addr: IpAddr) -> Option<Hop> {
    use futures_util::TryStreamExt;
    use rtnetlink::packet_route::link::LinkAttribute;
    use rtnetlink::packet_route::route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteProtocol, RouteType,
    };
    let len = if addr.is_ipv4() { 32 } else { 128 };
    let mut msg = rtnetlink::RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(addr, len)
        .ok()?
        .build();
    // The matching route as the table holds it (with its protocol), not a lookup's result.
    msg.header.flags = RouteFlags::FibMatch;
    let m = h.route().get(msg).execute().try_next().await.ok()??;
    if m.header.kind != RouteType::Unicast {
        return None;
    }
    let mut gateway = None;
    let mut oif = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(IpAddr::V4(*g)),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gateway = Some(IpAddr::V6(*g)),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let link = h
        .link()
        .get()
        .match_index(oif?)
        .execute()
        .try_next()
        .await
        .ok()??;
    let name = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    Some(Hop {
        gateway: gateway.filter(|g| *g != addr),
        iface: name,
        interface_route: m.header.protocol == RouteProtocol::Kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    const FILE: &str = "router id 10.0.0.1;\n\
        protocol device { scan time 2; }\n\
        protocol static { route 192.168.0.0/26 blackhole; }\n\
        protocol bgp Mesh_127_0_0_2 {\n  description \"Connection to BGP peer\";\n  \
        local as 64512;\n  neighbor 127.0.0.2 as 64512;\n  passive on;\n  \
        import all;\n  export all;\n}\n";

    fn path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rr-birdsock-{}-{tag}.ctl", std::process::id()))
    }

    /// Reads one reply: up to and with its `NNNN ` line.
    async fn reply(r: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), r.read_line(&mut line))
                .await
                .expect("a reply within 5 s")
                .unwrap();
            assert!(n > 0, "closed after {out:?}");
            out.push_str(&line);
            let b = line.as_bytes();
            if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b' ' {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn bind_sets_the_mode_replaces_a_stale_file_and_refuses_a_live_socket() {
        let p = path("bind");
        std::fs::write(&p, b"stale").unwrap();
        let s = ControlSocket::bind(&p).await.unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        let e = ControlSocket::bind(&p).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        drop(s);
        assert!(!p.exists(), "the socket file is removed with the socket");
    }

    #[tokio::test]
    async fn several_commands_on_one_connection_from_the_speaker() {
        let t = super::super::translate_str(FILE, "bird.cfg", super::super::Dialect::Bird).unwrap();
        let mut config = t.config.clone();
        config.speaker.listen.clear();
        let (speaker, _core) = Speaker::start(config.clone()).await.unwrap();
        let loaded = Loaded {
            config,
            translation: t,
            file: "bird.cfg".into(),
            dialect: super::super::Dialect::Bird,
            at: Timestamp::now(),
        };
        let (_loaded_tx, loaded_rx) = watch::channel(Arc::new(loaded));
        let (req_tx, mut req_rx) = mpsc::channel(4);
        let p = path("serve");
        let socket = ControlSocket::bind(&p).await.unwrap();
        let server = tokio::spawn(async move { socket.serve(speaker, loaded_rx, req_tx).await });

        let (rd, mut wr) = UnixStream::connect(&p).await.unwrap().into_split();
        let mut rd = BufReader::new(rd);
        assert_eq!(reply(&mut rd).await, "0001 BIRD v0.3.3+birdv1.6.8 ready.\n");
        // Three commands in one write, one overlong line, then a fourth.
        wr.write_all(b"show protocols\nbogus\nshow route\n")
            .await
            .unwrap();
        let protocols = reply(&mut rd).await;
        let rows: Vec<&str> = protocols.lines().collect();
        assert_eq!(rows.len(), 5, "{protocols}");
        assert_eq!(
            rows[0],
            "2002-name     proto    table    state  since       info"
        );
        assert!(
            rows[1].starts_with("1002-device1  Device   master   up     "),
            "{protocols}"
        );
        assert!(
            rows[2].starts_with(" static1  Static   master   up     "),
            "{protocols}"
        );
        assert!(
            rows[3].starts_with(" Mesh_127_0_0_2 BGP      master   start  ")
                && rows[3].ends_with("  Passive       "),
            "{protocols}"
        );
        assert_eq!(rows[4], "0000 ");
        assert_eq!(reply(&mut rd).await, "9001 syntax error\n");
        let routes = reply(&mut rd).await;
        assert!(
            routes.starts_with("1007-192.168.0.0/26     blackhole [static1 ")
                && routes.ends_with("] * (200)\n0000 \n"),
            "{routes}"
        );
        let long = format!("show {}\n", "x".repeat(socket::MAX_COMMAND + 10));
        wr.write_all(long.as_bytes()).await.unwrap();
        assert_eq!(reply(&mut rd).await, "9000 Command too long\n");
        wr.write_all(b"show status\n").await.unwrap();
        let status = reply(&mut rd).await;
        assert!(
            status.starts_with("1000-BIRD v0.3.3+birdv1.6.8\n1011-Router ID is 10.0.0.1\n")
                && status.ends_with("0013 Daemon is up and running\n"),
            "{status}"
        );
        // `configure check` is the daemon loop's: the request reaches it.
        wr.write_all(b"configure check\n").await.unwrap();
        match req_rx.recv().await {
            Some(Request::Configure { check, file, done }) => {
                assert!(check && file.is_none());
                let _ = done.send(socket::configure_reply("bird.cfg", Ok(()), false));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            reply(&mut rd).await,
            "0002-Reading configuration from bird.cfg\n0020 Configuration OK\n"
        );
        server.abort();
        let _ = server.await;
        assert!(!p.exists(), "the socket file goes with the serving task");
    }

    /// `show route` of a 100,000-route table (the file's static routes), timed:
    /// `cargo test --release -p rr-daemon --lib bird::control::tests::show_route_of_100k -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a timing, run by hand"]
    async fn show_route_of_100k_routes() {
        const N: usize = 100_000;
        let mut file = String::from("router id 10.0.0.1;\nprotocol static {\n");
        for i in 0..N {
            let _ = std::fmt::Write::write_fmt(
                &mut file,
                format_args!(
                    "  route {}.{}.{}.0/24 blackhole;\n",
                    10 + (i >> 16),
                    (i >> 8) & 0xff,
                    i & 0xff
                ),
            );
        }
        file.push_str("}\n");
        let t =
            super::super::translate_str(&file, "bird.cfg", super::super::Dialect::Bird).unwrap();
        let mut config = t.config.clone();
        config.speaker.listen.clear();
        let (speaker, _core) = Speaker::start(config.clone()).await.unwrap();
        let loaded = Loaded {
            config,
            translation: t,
            file: "bird.cfg".into(),
            dialect: super::super::Dialect::Bird,
            at: Timestamp::now(),
        };
        let (_loaded_tx, loaded_rx) = watch::channel(Arc::new(loaded));
        let (req_tx, _req_rx) = mpsc::channel(4);
        let p = path("bench");
        let socket = ControlSocket::bind(&p).await.unwrap();
        let server = tokio::spawn(async move { socket.serve(speaker, loaded_rx, req_tx).await });
        let (rd, mut wr) = UnixStream::connect(&p).await.unwrap().into_split();
        let mut rd = BufReader::new(rd);
        reply(&mut rd).await;
        for cmd in [
            "show route count",
            "show route",
            "show protocols all static1",
        ] {
            let t0 = std::time::Instant::now();
            wr.write_all(format!("{cmd}\n").as_bytes()).await.unwrap();
            let r = reply(&mut rd).await;
            eprintln!(
                "{cmd:?}: {} lines, {} bytes in {:.3} s",
                r.lines().count(),
                r.len(),
                t0.elapsed().as_secs_f64()
            );
            if cmd == "show route count" {
                assert_eq!(r, format!("0014 {N} of {N} routes for {N} networks\n"));
            }
            if cmd == "show route" {
                assert_eq!(r.lines().count(), N + 1);
            }
        }
        server.abort();
    }
}
