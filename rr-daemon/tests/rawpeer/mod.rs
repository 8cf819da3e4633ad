//! A scripted raw BGP peer and an observing client, for end-to-end tests against a running
//! speaker. Raw peers write exactly the bytes a test gives them (valid or not) and report
//! what the speaker sends back; the observer keeps the routes the speaker announces to it,
//! attribute bytes as received.
//!
//! Loopback only (127.0.0.0/8); every wait is bounded.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{FamilySet, Framer, SessionCtx, UpdatePolicy};
use bytes::BytesMut;
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A session's spec for `peer` as the end-to-end tests run it on loopback: `port`, from
/// `local` if given, a second to connect, no password, any TTL, no interface.
pub(crate) fn loopback_spec(
    fsm: bgp_fsm::Config,
    peer: IpAddr,
    port: u16,
    local: Option<IpAddr>,
) -> rr_daemon::session::SessionSpec {
    rr_daemon::session::SessionSpec {
        fsm,
        peer,
        port,
        local,
        connect_timeout: Duration::from_secs(1),
        password: None,
        ttl: rr_daemon::config::Ttl::Multihop(255),
        interface: None,
        admin_down: false,
    }
}

/// Connects a raw peer from `src` to `listener` and hands the session `h` its end of the
/// connection at once, as the speaker's shell does with what its listener accepts.
pub(crate) async fn hand_over(
    listener: &tokio::net::TcpListener,
    h: &rr_daemon::session::SessionHandle,
    src: IpAddr,
    name: &str,
) -> RawPeer {
    let to = listener.local_addr().unwrap();
    let (peer, accepted) = tokio::join!(RawPeer::connect(name, src, to), async {
        tokio::time::timeout(WAIT, listener.accept()).await
    });
    let peer = peer.unwrap_or_else(|e| panic!("{name}: connect: {e}"));
    let (stream, _) = accepted
        .unwrap_or_else(|_| panic!("{name}: not accepted"))
        .unwrap();
    h.inbound.send(stream).await.expect("the session task runs");
    peer
}

/// How long any single expected event may take on loopback.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

pub(crate) const OPEN: u8 = 1;
pub(crate) const UPDATE: u8 = 2;
pub(crate) const NOTIFICATION: u8 = 3;
pub(crate) const KEEPALIVE: u8 = 4;

// ---------------------------------------------------------------------------------------
// Bytes.
// ---------------------------------------------------------------------------------------

/// Hex digits to bytes; spaces and `|` are ignored (the notation of robustness.md).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'|')
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|d| u8::from_str_radix(std::str::from_utf8(d).unwrap(), 16).unwrap())
        .collect()
}

/// Bytes as spaced hex, for messages.
pub(crate) fn show(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A header with this length field and type, then `body` (the length is not checked).
pub(crate) fn with_length(ty: u8, length: u16, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&length.to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

/// A message with a correct header.
pub(crate) fn message(ty: u8, body: &[u8]) -> Vec<u8> {
    with_length(ty, u16::try_from(19 + body.len()).unwrap(), body)
}

pub(crate) fn keepalive() -> Vec<u8> {
    message(KEEPALIVE, &[])
}

/// An UPDATE with correct Withdrawn Routes Length and Total Path Attribute Length.
pub(crate) fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(withdrawn.len()).unwrap().to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    message(UPDATE, &body)
}

/// A prefix as NLRI: length in bits, then the octets it needs.
pub(crate) fn nlri(p: IpNet) -> Vec<u8> {
    let bits = p.prefix_len();
    let octets = match p.network() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut v = vec![bits];
    v.extend_from_slice(&octets[..usize::from(bits).div_ceil(8)]);
    v
}

/// An OPEN: version 4, `my_as`, `hold`, `id`, and `params` as the optional parameters
/// (Opt Parm Len = their length).
pub(crate) fn open(my_as: u16, hold: u16, id: Ipv4Addr, params: &[u8]) -> Vec<u8> {
    let mut body = vec![4];
    body.extend_from_slice(&my_as.to_be_bytes());
    body.extend_from_slice(&hold.to_be_bytes());
    body.extend_from_slice(&id.octets());
    body.push(u8::try_from(params.len()).unwrap());
    body.extend_from_slice(params);
    message(OPEN, &body)
}

/// Capability parameters as robustness.md writes them: one multiprotocol capability per
/// family (`02 06 01 04 AFI 00 SAFI`), then 4-octet AS (`02 06 41 04 ASN`).
pub(crate) fn caps(asn: u32, families: &[(u16, u8)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (afi, safi) in families {
        v.extend_from_slice(&[2, 6, 1, 4]);
        v.extend_from_slice(&afi.to_be_bytes());
        v.extend_from_slice(&[0, *safi]);
    }
    v.extend_from_slice(&[2, 6, 0x41, 4]);
    v.extend_from_slice(&asn.to_be_bytes());
    v
}

pub(crate) const V4: (u16, u8) = (1, 1);
pub(crate) const V6: (u16, u8) = (2, 1);

/// A NOTIFICATION from received bytes: code, subcode, data.
pub(crate) fn notification_parts(msg: &[u8]) -> (u8, u8, Vec<u8>) {
    let body = msg.get(19..).unwrap_or_default();
    (
        body.first().copied().unwrap_or(0),
        body.get(1).copied().unwrap_or(0),
        body.get(2..).unwrap_or_default().to_vec(),
    )
}

pub(crate) fn describe_notification(msg: &[u8]) -> String {
    let (c, s, d) = notification_parts(msg);
    format!("NOTIFICATION {c}/{s} data [{}]", show(&d))
}

// ---------------------------------------------------------------------------------------
// The raw peer.
// ---------------------------------------------------------------------------------------

/// What the speaker did on the raw peer's connection.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// A whole message: its type and bytes (header included).
    Msg(u8, Vec<u8>),
    /// The connection ended (EOF, reset, or bytes that do not frame).
    Closed(String),
}

/// One TCP connection to the speaker from a chosen loopback source address.
pub(crate) struct RawPeer {
    pub(crate) name: String,
    writer: OwnedWriteHalf,
    events: mpsc::UnboundedReceiver<Event>,
    /// Every NOTIFICATION received so far (raw), for failure messages.
    pub(crate) notifications: Vec<Vec<u8>>,
    closed: Option<String>,
    reader: JoinHandle<()>,
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_loop(mut rd: OwnedReadHalf, tx: mpsc::UnboundedSender<Event>) {
    let framer = Framer::new();
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        match framer.next_frame(&mut buf) {
            Ok(Some(f)) => {
                let _ = tx.send(Event::Msg(f.ty.0, f.bytes.to_vec()));
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(Event::Closed(format!(
                    "the speaker sent bytes that do not frame: {e}"
                )));
                return;
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = tx.send(Event::Closed("EOF".into()));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Event::Closed(e.to_string()));
                return;
            }
        }
    }
}

impl RawPeer {
    /// Connects from `src` (port chosen by the kernel) to the speaker at `to`.
    pub(crate) async fn connect(name: &str, src: IpAddr, to: SocketAddr) -> io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(src, 0))?;
        let stream = tokio::time::timeout(WAIT, socket.connect(to))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let (rd, writer) = stream.into_split();
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(rd, tx));
        Ok(Self {
            name: name.to_owned(),
            writer,
            events,
            notifications: Vec::new(),
            closed: None,
            reader,
        })
    }

    /// Writes `bytes` as they are.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        tokio::time::timeout(WAIT, self.writer.write_all(bytes))
            .await
            .map_err(|_| format!("{}: write timed out", self.name))?
            .map_err(|e| format!("{}: write failed: {e}", self.name))
    }

    /// The next event within `within`; `None` on timeout.
    pub(crate) async fn next(&mut self, within: Duration) -> Option<Event> {
        if let Some(r) = &self.closed {
            return Some(Event::Closed(r.clone()));
        }
        let ev = match tokio::time::timeout(within, self.events.recv()).await {
            Err(_) => return None,
            Ok(None) => Event::Closed("reader gone".into()),
            Ok(Some(ev)) => ev,
        };
        match &ev {
            Event::Closed(r) => self.closed = Some(r.clone()),
            Event::Msg(NOTIFICATION, b) => self.notifications.push(b.clone()),
            Event::Msg(..) => {}
        }
        Some(ev)
    }

    /// Sends `open`, answers the speaker's OPEN with a KEEPALIVE and waits for its
    /// KEEPALIVE: the session is Established.
    pub(crate) async fn establish(&mut self, open: &[u8]) -> Result<(), String> {
        self.send(open).await?;
        let deadline = Instant::now() + WAIT;
        let mut got_open = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                None => return Err(format!("{}: no Established within {WAIT:?}", self.name)),
                Some(Event::Msg(OPEN, _)) => {
                    got_open = true;
                    self.send(&keepalive()).await?;
                }
                Some(Event::Msg(KEEPALIVE, _)) if got_open => return Ok(()),
                Some(Event::Msg(NOTIFICATION, b)) => {
                    return Err(format!(
                        "{}: refused: {}",
                        self.name,
                        describe_notification(&b)
                    ));
                }
                Some(Event::Closed(r)) => {
                    return Err(format!("{}: closed while opening: {r}", self.name));
                }
                Some(Event::Msg(..)) => {}
            }
        }
    }

    /// Waits for the speaker's OPEN (the connection is in OpenSent on its side).
    pub(crate) async fn expect_open(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                None => return Err(format!("{}: no OPEN from the speaker", self.name)),
                Some(Event::Msg(OPEN, _)) => return Ok(()),
                Some(Event::Msg(NOTIFICATION, b)) => {
                    return Err(format!("{}: {}", self.name, describe_notification(&b)));
                }
                Some(Event::Closed(r)) => return Err(format!("{}: closed: {r}", self.name)),
                Some(Event::Msg(..)) => {}
            }
        }
    }

    /// The first NOTIFICATION within `within` (other messages are skipped): its bytes.
    pub(crate) async fn expect_notification(
        &mut self,
        within: Duration,
    ) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                None => return Err(format!("no NOTIFICATION within {within:?}")),
                Some(Event::Msg(NOTIFICATION, b)) => return Ok(b),
                Some(Event::Closed(r)) => {
                    return Err(format!("closed without a NOTIFICATION ({r})"));
                }
                Some(Event::Msg(..)) => {}
            }
        }
    }

    /// Waits until the speaker closes the connection; messages other than NOTIFICATION are
    /// skipped, a NOTIFICATION is an error when `notification_allowed` is false.
    pub(crate) async fn expect_closed(&mut self, notification_allowed: bool) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                None => return Err(format!("connection still open after {WAIT:?}")),
                Some(Event::Closed(_)) => return Ok(()),
                Some(Event::Msg(NOTIFICATION, b)) if !notification_allowed => {
                    return Err(format!(
                        "the speaker answered with {}",
                        describe_notification(&b)
                    ));
                }
                Some(Event::Msg(..)) => {}
            }
        }
    }

    /// Takes what has arrived without waiting: an error if it holds a NOTIFICATION or the
    /// end of the connection.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        if let Some(r) = &self.closed {
            return Err(format!("{}: session down ({r})", self.name));
        }
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                Event::Msg(NOTIFICATION, b) => {
                    let d = describe_notification(&b);
                    self.notifications.push(b);
                    return Err(format!("{}: the speaker sent {d}", self.name));
                }
                Event::Closed(r) => {
                    self.closed = Some(r.clone());
                    return Err(format!("{}: session down ({r})", self.name));
                }
                Event::Msg(..) => {}
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The observer.
// ---------------------------------------------------------------------------------------

/// A route as the observer received it: every path attribute, raw (flags, type, length,
/// value), in the order sent.
pub(crate) type Route = Vec<Vec<u8>>;

/// The attribute of type `ty` in `route`, raw.
pub(crate) fn attr(route: &Route, ty: u8) -> Option<&[u8]> {
    route.iter().find(|a| a[1] == ty).map(Vec::as_slice)
}

/// The value of a raw attribute.
pub(crate) fn value(raw: &[u8]) -> &[u8] {
    if raw[0] & 0x10 != 0 {
        &raw[4..]
    } else {
        &raw[3..]
    }
}

/// What the observer has seen.
#[derive(Default, Debug)]
pub(crate) struct Seen {
    /// The speaker's current announcements to us.
    pub(crate) routes: HashMap<IpNet, Route>,
    /// How many times each prefix was announced to us.
    pub(crate) announced: HashMap<IpNet, usize>,
    /// UPDATEs received.
    pub(crate) updates: usize,
    /// UPDATEs from the speaker that were not well-formed: a malformed attribute propagated.
    pub(crate) malformed: Vec<String>,
    /// The session ended (with the reason).
    pub(crate) down: Option<String>,
}

/// An iBGP route-reflector client that records what the speaker sends it.
pub(crate) struct Observer {
    pub(crate) seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The raw attributes of an UPDATE body (whose lengths the speaker got right).
fn raw_attrs(body: &[u8]) -> Route {
    let mut out = Vec::new();
    let Some(w) = body.get(..2) else { return out };
    let at = 2 + usize::from(u16::from_be_bytes([w[0], w[1]]));
    let Some(t) = body.get(at..at + 2) else {
        return out;
    };
    let tpal = usize::from(u16::from_be_bytes([t[0], t[1]]));
    let Some(mut attrs) = body.get(at + 2..at + 2 + tpal) else {
        return out;
    };
    while attrs.len() >= 3 {
        let (len, hdr) = if attrs[0] & 0x10 != 0 {
            match attrs.get(2..4) {
                Some(l) => (usize::from(u16::from_be_bytes([l[0], l[1]])), 4),
                None => break,
            }
        } else {
            (usize::from(attrs[2]), 3)
        };
        let Some(a) = attrs.get(..hdr + len) else {
            break;
        };
        out.push(a.to_vec());
        attrs = &attrs[hdr + len..];
    }
    out
}

impl Observer {
    /// Connects from `src`, establishes with `open` and starts recording.
    pub(crate) async fn start(src: IpAddr, to: SocketAddr, open: &[u8]) -> Result<Self, String> {
        let mut peer = RawPeer::connect("observer", src, to)
            .await
            .map_err(|e| format!("observer: {e}"))?;
        peer.establish(open).await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = seen.clone();
        // What we accept from the speaker: iBGP, both families, nothing refused by local
        // policy, so that what is checked is exactly what was sent.
        let ctx = SessionCtx {
            ibgp: true,
            families: FamilySet::ALL,
            policy: UpdatePolicy {
                enforce_first_as: None,
                max_as_path_len: None,
                reject_as_set: false,
                reject_martian_next_hop: false,
            },
            ..SessionCtx::default()
        };
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = peer.send(&keepalive()).await {
                            state.lock().unwrap().down = Some(e);
                            return;
                        }
                    }
                    ev = peer.next(Duration::from_secs(3600)) => {
                        let mut s = state.lock().unwrap();
                        match ev {
                            Some(Event::Msg(UPDATE, b)) => {
                                s.updates += 1;
                                let body = &b[19..];
                                let view = UpdateView::parse(body, &ctx);
                                if view.treatment() != Treatment::Normal {
                                    s.malformed.push(format!(
                                        "{}: {:?} in [{}]",
                                        view.treatment(),
                                        view.issues(),
                                        show(&b)
                                    ));
                                    continue;
                                }
                                for n in view.withdrawals() {
                                    s.routes.remove(&n.prefix);
                                }
                                let attrs = raw_attrs(body);
                                for n in view.announced() {
                                    *s.announced.entry(n.prefix).or_default() += 1;
                                    s.routes.insert(n.prefix, attrs.clone());
                                }
                            }
                            Some(Event::Msg(NOTIFICATION, b)) => {
                                s.down = Some(describe_notification(&b));
                                return;
                            }
                            Some(Event::Closed(r)) => {
                                s.down = Some(r);
                                return;
                            }
                            Some(Event::Msg(..)) | None => {}
                        }
                    }
                }
            }
        });
        Ok(Self { seen, task })
    }

    /// Waits (bounded) until `cond` holds; the error says `what` was not seen.
    pub(crate) async fn wait(
        &self,
        what: &str,
        cond: impl Fn(&Seen) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let s = self.seen.lock().unwrap();
                if cond(&s) {
                    return Ok(());
                }
                if let Some(d) = &s.down {
                    return Err(format!(
                        "observer session down ({d}) while waiting for {what}"
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("observer: {what}: not seen within {WAIT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the speaker announces `p` to us; returns the route.
    pub(crate) async fn present(&self, p: IpNet) -> Result<Route, String> {
        self.wait(&format!("{p} announced"), |s| s.routes.contains_key(&p))
            .await?;
        Ok(self.route(p).unwrap_or_default())
    }

    /// Waits until the speaker withdraws `p` from us.
    pub(crate) async fn absent(&self, p: IpNet) -> Result<(), String> {
        self.wait(&format!("{p} withdrawn"), |s| !s.routes.contains_key(&p))
            .await
    }

    pub(crate) fn route(&self, p: IpNet) -> Option<Route> {
        self.seen.lock().unwrap().routes.get(&p).cloned()
    }

    pub(crate) fn times_announced(&self, p: IpNet) -> usize {
        self.seen
            .lock()
            .unwrap()
            .announced
            .get(&p)
            .copied()
            .unwrap_or(0)
    }
}
