//! One collector's task: connects (with back-off), sends Initiation, attaches to the
//! speaker (which answers with a dump and then the live stream), encodes what comes and
//! writes it; Termination on shutdown or when it fell behind.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bgp_wire::Family;
use bgp_wire::nlri::Nlri;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::wire::{self, PeerHeader, Stat, Timestamp};
use super::{Event, PeerDump, PeerUpInfo};
use crate::config::{BmpCollector, RouteMonitoring};

/// Default `queue_limit`: bytes of live events a collector may lag behind by.
pub(crate) const QUEUE_LIMIT: usize = 32 << 20;

/// Bytes encoded before they are written.
const WRITE_CHUNK: usize = 256 << 10;

/// First back-off after a failed connection.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a collector's task asks of the speaker's shell.
#[derive(Debug)]
pub(crate) enum ToCore {
    /// Connected: send the dump and then the live stream on `tx`.
    Attach(Attach),
    /// Time for a Statistics Report.
    Stats(u64),
}

/// A connected collector's queue.
#[derive(Debug)]
pub(crate) struct Attach {
    /// The collector's id (its index in `[[bmp]]`).
    pub(crate) id: u64,
    /// Where events go.
    pub(crate) tx: mpsc::UnboundedSender<Item>,
    /// Bytes queued on `tx` and not written yet ([`Event::cost`]).
    pub(crate) queued: Arc<AtomicUsize>,
    /// The bound on `queued`.
    pub(crate) limit: usize,
    /// Set by the shell when it drops the collector for passing `limit`: the task stops
    /// at once (what is still queued is dropped unsent) and resynchronises.
    pub(crate) dropped: Arc<AtomicBool>,
    /// Pre-policy route monitoring wanted.
    pub(crate) pre: bool,
    /// Post-policy route monitoring wanted.
    pub(crate) post: bool,
}

/// An item on a collector's queue.
#[derive(Debug)]
pub(crate) enum Item {
    /// Something to report.
    Event(Event),
    /// The speaker stops: send Termination and end.
    Terminate,
}

/// Starts the task of collector `id`.
pub(crate) fn spawn(
    id: u64,
    cfg: BmpCollector,
    sys_name: String,
    to_core: mpsc::Sender<ToCore>,
) -> JoinHandle<()> {
    tokio::spawn(run(id, cfg, sys_name, to_core))
}

async fn run(id: u64, cfg: BmpCollector, sys_name: String, to_core: mpsc::Sender<ToCore>) {
    let mut backoff = FIRST_RETRY;
    loop {
        let addr = cfg.address;
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(collector = %addr, error = %e, retry_s = backoff.as_secs(), "BMP: cannot connect");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.retry);
                continue;
            }
            Err(_) => {
                warn!(collector = %addr, retry_s = backoff.as_secs(), "BMP: connection timed out");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.retry);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        info!(collector = %addr, "BMP: connected");
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let (pre, post) = match cfg.route_monitoring {
            RouteMonitoring::PrePolicy => (true, false),
            RouteMonitoring::PostPolicy => (false, true),
            RouteMonitoring::Both => (true, true),
        };
        let attach = Attach {
            id,
            tx,
            queued: queued.clone(),
            limit: cfg.queue_limit,
            dropped: dropped.clone(),
            pre,
            post,
        };
        if to_core.send(ToCore::Attach(attach)).await.is_err() {
            return;
        }
        let dropped_flag = dropped.clone();
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(WRITE_CHUNK),
            peers: HashMap::new(),
            queued,
            dropped,
            pre,
            post,
        };
        let end = conn.serve(id, rx, &cfg, &sys_name, &to_core).await;
        match end {
            End::Shutdown => {
                info!(collector = %addr, "BMP: Termination sent");
                return;
            }
            End::Behind => {
                warn!(collector = %addr, limit = cfg.queue_limit, "BMP: the collector fell behind: dropped, to be resynchronised on reconnection");
            }
            End::Lost(_) if dropped_flag.load(Ordering::Relaxed) => {
                warn!(collector = %addr, limit = cfg.queue_limit, "BMP: the collector fell behind (and stopped reading): dropped, to be resynchronised on reconnection");
            }
            End::Lost(e) => warn!(collector = %addr, error = %e, "BMP: connection lost"),
        }
        backoff = FIRST_RETRY;
        tokio::time::sleep(backoff).await;
    }
}

enum End {
    Shutdown,
    Behind,
    Lost(std::io::Error),
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    peers: HashMap<IpAddr, Arc<PeerUpInfo>>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
    pre: bool,
    post: bool,
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        secs: d.as_secs() as u32,
        micros: d.subsec_micros(),
    }
}

impl Conn {
    async fn serve(
        &mut self,
        id: u64,
        mut rx: mpsc::UnboundedReceiver<Item>,
        cfg: &BmpCollector,
        sys_name: &str,
        to_core: &mpsc::Sender<ToCore>,
    ) -> End {
        let descr = format!("rr-daemon {}", env!("CARGO_PKG_VERSION"));
        wire::initiation(&mut self.buf, sys_name, &descr);
        if let Err(e) = self.flush().await {
            return End::Lost(e);
        }
        let mut stats = cfg.statistics_interval.map(|i| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + i, i);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut scratch = [0u8; 512];
        loop {
            tokio::select! {
                item = rx.recv() => {
                    let Some(item) = item else {
                        return self.behind().await;
                    };
                    let mut item = Some(item);
                    // Take what is ready, up to a chunk, before writing.
                    while let Some(it) = item.take() {
                        if self.dropped.load(Ordering::Relaxed) {
                            return self.behind().await;
                        }
                        match it {
                            Item::Terminate => {
                                wire::termination(&mut self.buf, wire::term_reason::ADMIN_CLOSED);
                                let _ = self.flush().await;
                                let _ = self.stream.shutdown().await;
                                return End::Shutdown;
                            }
                            Item::Event(e) => {
                                let cost = e.cost();
                                if let Err(err) = self.event(e).await {
                                    return End::Lost(err);
                                }
                                self.queued.fetch_sub(cost, Ordering::Relaxed);
                            }
                        }
                        if self.buf.len() < WRITE_CHUNK {
                            item = rx.try_recv().ok();
                        }
                    }
                    if let Err(e) = self.flush().await {
                        return End::Lost(e);
                    }
                }
                () = tick(stats.as_mut()) => {
                    let _ = to_core.try_send(ToCore::Stats(id));
                }
                r = self.stream.read(&mut scratch) => match r {
                    Ok(0) => return End::Lost(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => {} // A collector sends nothing we use (RFC 7854 §3.2).
                    Err(e) => return End::Lost(e),
                },
            }
        }
    }

    /// Dropped by the shell for falling behind: Termination (out of resources) if it
    /// goes out within a moment, and the connection ends.
    async fn behind(&mut self) -> End {
        self.buf.clear();
        wire::termination(&mut self.buf, wire::term_reason::OUT_OF_RESOURCES);
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.stream.write_all(&self.buf)).await;
        End::Behind
    }

    /// Writes what is encoded. A collector that stops reading blocks it until the shell
    /// drops the collector (checked every second), never longer.
    async fn flush(&mut self) -> std::io::Result<()> {
        let mut at = 0;
        while at < self.buf.len() {
            tokio::select! {
                r = self.stream.write(&self.buf[at..]) => match r {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => at += n,
                    Err(e) => return Err(e),
                },
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if self.dropped.load(Ordering::Relaxed) {
                        return Err(std::io::Error::other("dropped while the collector did not read"));
                    }
                }
            }
        }
        self.buf.clear();
        Ok(())
    }

    async fn flush_if_full(&mut self) -> std::io::Result<()> {
        if self.buf.len() >= WRITE_CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    fn header(&self, peer: IpAddr) -> Option<PeerHeader> {
        self.peers.get(&peer).map(|u| u.header)
    }

    async fn event(&mut self, e: Event) -> std::io::Result<()> {
        match e {
            Event::PeerUp(up) => self.peer_up(up),
            Event::Update { peer, frame } => {
                if let Some(h) = self.header(peer) {
                    wire::route_monitoring(&mut self.buf, &h, false, now(), &frame);
                }
            }
            Event::Post {
                peer,
                routes,
                end_of_rib,
            } => {
                let Some(up) = self.peers.get(&peer).cloned() else {
                    return Ok(());
                };
                let (announced, withdrawn): (Vec<_>, Vec<_>) =
                    routes.into_iter().partition(|r| r.1.is_some());
                let announced: Vec<(Nlri, Arc<rib::AttrSet>)> = announced
                    .into_iter()
                    .filter_map(|(n, a)| Some((n, a?)))
                    .collect();
                self.routes(&up, true, &announced).await?;
                let ctx = wire::stored_ctx(up.add_path, up.extended_message);
                for f in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
                    let nlri: Vec<Nlri> = withdrawn
                        .iter()
                        .map(|r| r.0)
                        .filter(|n| n.family() == f)
                        .map(|n| key(n, up.add_path.contains(f)))
                        .collect();
                    if nlri.is_empty() {
                        continue;
                    }
                    let mut upd = BytesMut::new();
                    wire::withdraw(&mut upd, &ctx, f, &nlri);
                    self.wrap_updates(&up.header, true, &upd);
                }
                if let Some(f) = end_of_rib {
                    let mut upd = BytesMut::new();
                    wire::end_of_rib(&mut upd, f);
                    self.wrap_updates(&up.header, true, &upd);
                }
            }
            Event::PeerDown { peer, reason, data } => {
                if let Some(up) = self.peers.remove(&peer) {
                    wire::peer_down(&mut self.buf, &up.header, now(), reason, &data);
                }
            }
            Event::Dump(peers) => {
                for PeerDump { up, routes } in peers {
                    self.peer_up(up.clone());
                    for (post, on) in [(false, self.pre), (true, self.post)] {
                        if !on {
                            continue;
                        }
                        self.routes(&up, post, &routes).await?;
                        for &f in &up.families {
                            let mut upd = BytesMut::new();
                            wire::end_of_rib(&mut upd, f);
                            self.wrap_updates(&up.header, post, &upd);
                        }
                    }
                    self.flush_if_full().await?;
                }
            }
            Event::Stats(stats) => {
                for s in stats {
                    if let Some(h) = self.header(s.peer) {
                        let list = [
                            Stat::Counter(wire::stat_type::REJECTED, s.rejected as u32),
                            Stat::Gauge(wire::stat_type::ADJ_RIB_IN, s.adj_rib_in),
                        ];
                        wire::statistics(&mut self.buf, &h, now(), &list);
                    }
                }
            }
        }
        self.flush_if_full().await
    }

    fn peer_up(&mut self, up: Arc<PeerUpInfo>) {
        wire::peer_up(
            &mut self.buf,
            &up.header,
            now(),
            (up.local.ip(), up.local.port()),
            up.remote_port,
            &up.sent_open,
            &up.received_open,
        );
        self.peers.insert(up.header.address, up);
    }

    /// Route Monitoring of stored routes of `up`: packed into UPDATEs by attribute set
    /// and family, in the order the sets first appear.
    async fn routes(
        &mut self,
        up: &PeerUpInfo,
        post: bool,
        routes: &[(Nlri, Arc<rib::AttrSet>)],
    ) -> std::io::Result<()> {
        let ctx = wire::stored_ctx(up.add_path, up.extended_message);
        // Groups by attribute set (the RIB shares one `Arc` per distinct set).
        let mut order: Vec<(usize, Family)> = Vec::new();
        let mut groups: HashMap<(usize, Family), (Arc<rib::AttrSet>, Vec<Nlri>)> = HashMap::new();
        for (n, a) in routes {
            let k = (Arc::as_ptr(a) as usize, n.family());
            groups
                .entry(k)
                .or_insert_with(|| {
                    order.push(k);
                    (a.clone(), Vec::new())
                })
                .1
                .push(key(*n, up.add_path.contains(n.family())));
        }
        for k in order {
            let Some((attrs, nlri)) = groups.remove(&k) else {
                continue;
            };
            let mut upd = BytesMut::new();
            wire::announce(&mut upd, &ctx, k.1, &attrs.to_attrs(), &nlri);
            self.wrap_updates(&up.header, post, &upd);
            self.flush_if_full().await?;
        }
        Ok(())
    }

    /// Wraps each BGP message of `updates` in a Route Monitoring message.
    fn wrap_updates(&mut self, h: &PeerHeader, post: bool, updates: &[u8]) {
        let ts = now();
        let mut at = 0;
        while at + bgp_wire::header::HEADER_LEN <= updates.len() {
            let len = usize::from(u16::from_be_bytes([updates[at + 16], updates[at + 17]]));
            if len < bgp_wire::header::HEADER_LEN || at + len > updates.len() {
                break;
            }
            wire::route_monitoring(&mut self.buf, h, post, ts, &updates[at..at + len]);
            at += len;
        }
    }
}

/// The route key as the peer's session encodes it: with its path id under ADD-PATH.
fn key(n: Nlri, add_path: bool) -> Nlri {
    if add_path {
        Nlri::with_path_id(n.prefix, n.path_id.unwrap_or(0))
    } else {
        Nlri::new(n.prefix)
    }
}

async fn tick(t: Option<&mut tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
