//! A reflector client that stops reading must neither hold back the rest of its update
//! group nor stay up forever: the send hold timer (RFC 9687, `send_hold_time`) drops it.
//!
//! Each test starts one speaker in-process on its own loopback /24 (127.0.N.0, the
//! speaker at .1; N is 91 and 92 here, unused by the other tests), so the tests run in
//! parallel with each other and with the other end-to-end tests. Its peers are raw BGP
//! peers, all iBGP route-reflector clients offering IPv4 unicast only, so that every
//! receiver lands in one update group:
//!
//! - the injector (.2) announces 100,000 distinct IPv4 prefixes (10.0.0.0/8 cut into
//!   /28s) in UPDATEs of at most 4096 bytes, spread over several attribute sets, then
//!   End-of-RIB;
//! - two normal receivers (.3, .4) read everything, count the prefixes exactly in a
//!   bitmap and answer keepalives;
//! - the stalled receiver (.5) shrinks its receive buffer before it connects, completes
//!   OPEN/KEEPALIVE and never reads again (it still sends KEEPALIVEs, so only the send
//!   hold timer can tell that it is stuck). Its group sets `send_hold_time = 4`.
//!
//! Meanwhile a monitor asks the speaker for its peers every 100 ms: each answer must come
//! within 3 s; it records when the stalled peer's session leaves Established and with
//! which NOTIFICATION. Every wait is bounded; a test reports every failed check at once.
//!
//! The two tests differ in how much the table weighs on the wire. With eight attribute
//! sets it is about 0.5 MB per receiver, less than what the kernel buffers on loopback
//! between the speaker and a peer that reads nothing (the speaker's send buffer grows to
//! about 4 MB there). With 2,500 attribute sets of 900 communities each it is about
//! 10 MB, so the speaker's socket stops taking bytes.

#[allow(dead_code)] // Shared with robustness_e2e.rs, which uses the rest.
mod rawpeer;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bgp_wire::{ErrorCode, Framer, Notification};
use bytes::BytesMut;
use rawpeer::{
    Event, KEEPALIVE, NOTIFICATION, OPEN, RawPeer, UPDATE, V4, caps, describe_notification,
    keepalive, open, update,
};
use rr_daemon::config::Config;
use rr_daemon::speaker::{PeerStatus, Speaker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const AS: u32 = 65000;
const INJECTOR: u8 = 2;
const RECEIVERS: [u8; 2] = [3, 4];
const STALLED: u8 = 5;

/// Prefixes the injector announces.
const PREFIXES: u32 = 100_000;
/// Length of every announced prefix: /28s from 10.0.0.0 on.
const PREFIX_LEN: u8 = 28;
/// The largest UPDATE the injector sends (no extended messages).
const MAX_UPDATE: usize = 4096;

/// `send_hold_time` of the stalled receiver's group.
const SEND_HOLD: Duration = Duration::from_secs(4);
/// Slack on top of the send hold time: the table reaching the speaker and filling the
/// stalled socket, the session's second for the NOTIFICATION on close, polling.
const DROP_MARGIN: Duration = Duration::from_secs(6);
/// Both normal receivers hold the whole table and End-of-RIB within this.
const TABLE_BOUND: Duration = Duration::from_secs(60);
/// The longest a `peers()` call may take. A core that stops answering while it pushes the
/// table takes seconds (the whole table); a debug build on a loaded 2-core machine answers
/// in well under a second, but has been seen at 1.2-1.6 s with other builds running.
const ANSWER_BOUND: Duration = Duration::from_secs(3);
/// How long a handshake may take.
const WAIT: Duration = Duration::from_secs(5);

/// A test's loopback /24: 127.0.N.0.
#[derive(Clone, Copy, Debug)]
struct Net(u8);

impl Net {
    fn host(self, h: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, self.0, h))
    }
}

/// How the injected table is built.
#[derive(Clone, Copy, Debug)]
struct Load {
    /// Attribute sets the prefixes are spread over (prefix `i` takes set `i % sets`).
    sets: u32,
    /// COMMUNITIES in every set (65000:0, 65000:1, ...), which weigh the table.
    communities: u16,
}

/// Prefix `i` as NLRI: 10.0.0.0 + 16 i, /28.
fn nlri(i: u32) -> [u8; 5] {
    let [a, b, c, d] = (0x0a00_0000 + (i << 4)).to_be_bytes();
    [PREFIX_LEN, a, b, c, d]
}

/// The index of an IPv4 prefix (length, address octets), if it is one of ours.
fn index_of(len: u8, octets: [u8; 4]) -> Option<u32> {
    let a = u32::from_be_bytes(octets);
    let off = a.checked_sub(0x0a00_0000)?;
    let i = off >> 4;
    (len == PREFIX_LEN && off & 0xf == 0 && i < PREFIXES).then_some(i)
}

/// Attribute set `k`, as a route-reflector client sends it: ORIGIN IGP, empty AS_PATH,
/// NEXT_HOP 192.0.2.(k % 250 + 1), LOCAL_PREF 100, MED k, and `communities` COMMUNITIES.
fn attrs(k: u32, communities: u16) -> Vec<u8> {
    let nh = u8::try_from(k % 250).unwrap() + 1;
    let mut a = vec![0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4, 192, 0, 2, nh];
    a.extend_from_slice(&[0x40, 5, 4, 0, 0, 0, 100]);
    a.extend_from_slice(&[0x80, 4, 4]);
    a.extend_from_slice(&k.to_be_bytes());
    if communities > 0 {
        // Optional transitive, extended length.
        a.extend_from_slice(&[0xd0, 8]);
        a.extend_from_slice(&(communities * 4).to_be_bytes());
        for c in 0..communities {
            a.extend_from_slice(&[0xfd, 0xe8]);
            a.extend_from_slice(&c.to_be_bytes());
        }
    }
    a
}

/// The injector's UPDATEs: every prefix once, each message at most [`MAX_UPDATE`] bytes,
/// then End-of-RIB.
fn table(load: Load) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for k in 0..load.sets {
        let a = attrs(k, load.communities);
        let room = MAX_UPDATE - 19 - 2 - 2 - a.len();
        let mut nl = Vec::with_capacity(room);
        for i in (k..PREFIXES).step_by(load.sets as usize) {
            if nl.len() + 5 > room {
                out.push(update(&[], &a, &nl));
                nl.clear();
            }
            nl.extend_from_slice(&nlri(i));
        }
        if !nl.is_empty() {
            out.push(update(&[], &a, &nl));
        }
    }
    assert!(out.iter().all(|m| m.len() <= MAX_UPDATE));
    out.push(update(&[], &[], &[]));
    out
}

/// The OPEN of the raw peer at host `h`: our AS, hold time 90, IPv4 unicast only.
fn open_of(h: u8) -> Vec<u8> {
    open(
        u16::try_from(AS).unwrap(),
        90,
        Ipv4Addr::new(192, 0, 2, 100 + h),
        &caps(AS, &[V4]),
    )
}

// ---------------------------------------------------------------------------------------
// The speaker.
// ---------------------------------------------------------------------------------------

/// Starts the speaker at `net`.1 (a free port) with the four peers, all passive; returns
/// it, its core task and where it listens.
async fn start_speaker(net: Net) -> (Speaker, JoinHandle<()>, SocketAddr) {
    let ip = net.host(1);
    let port = {
        let l = std::net::TcpListener::bind((ip, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let mut toml = format!(
        r#"
[speaker]
asn = {AS}
router_id = "{ip}"
cluster_id = "10.255.{}.1"
listen = ["{ip}:{port}"]

[api]
enabled = false

[[peer_group]]
name = "clients"
asn = {AS}
rr_client = true
passive = true

[[peer_group]]
name = "stalled"
asn = {AS}
rr_client = true
passive = true
send_hold_time = {}
"#,
        net.0,
        SEND_HOLD.as_secs()
    );
    for h in [INJECTOR, RECEIVERS[0], RECEIVERS[1]] {
        let _ = write!(
            toml,
            "\n[[peer]]\naddress = \"{}\"\ngroup = \"clients\"\n",
            net.host(h)
        );
    }
    let _ = write!(
        toml,
        "\n[[peer]]\naddress = \"{}\"\ngroup = \"stalled\"\n",
        net.host(STALLED)
    );
    // Logs with RUST_LOG=rr_daemon=debug (and --nocapture).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = Config::parse(&toml, "stalled.toml").unwrap_or_else(|e| panic!("{e}"));
    let stalled = config.peer(net.host(STALLED)).unwrap();
    assert_eq!(
        stalled.fsm_config(&config.speaker).timing.send_hold,
        Some(SEND_HOLD)
    );
    let (speaker, core) = Speaker::start(config).await.unwrap();
    (speaker, core, SocketAddr::new(ip, port))
}

// ---------------------------------------------------------------------------------------
// Normal receivers.
// ---------------------------------------------------------------------------------------

/// What a normal receiver has counted.
#[derive(Debug)]
struct Count {
    /// One bit per prefix index: announced and not withdrawn since.
    bits: Vec<u64>,
    /// Bits set.
    distinct: u32,
    /// NLRI announced, repeats included.
    announced: u64,
    /// NLRI withdrawn.
    withdrawn: u64,
    /// NLRI that are none of the injector's prefixes.
    foreign: u64,
    updates: u64,
    /// When End-of-RIB (IPv4 unicast) came, and how many prefixes were held then.
    eor: Option<(Instant, u32)>,
    /// When the count first reached [`PREFIXES`].
    full_at: Option<Instant>,
    /// Why the session ended, if it did.
    down: Option<String>,
}

impl Count {
    fn new() -> Self {
        Self {
            bits: vec![0; (PREFIXES as usize).div_ceil(64)],
            distinct: 0,
            announced: 0,
            withdrawn: 0,
            foreign: 0,
            updates: 0,
            eor: None,
            full_at: None,
            down: None,
        }
    }

    fn done(&self) -> bool {
        self.distinct == PREFIXES && self.eor.is_some()
    }

    /// Applies one UPDATE (whole message). Only IPv4 unicast is negotiated, so NLRI and
    /// withdrawals are in the classic fields.
    fn apply(&mut self, msg: &[u8]) -> Result<(), String> {
        self.updates += 1;
        let body = &msg[19..];
        let bad = || format!("malformed UPDATE from the speaker: {}", rawpeer::show(msg));
        let wl = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let withdrawn = body.get(2..2 + wl).ok_or_else(bad)?;
        let rest = &body[2 + wl..];
        let al = usize::from(u16::from_be_bytes([
            *rest.first().ok_or_else(bad)?,
            *rest.get(1).ok_or_else(bad)?,
        ]));
        let nlri = rest.get(2 + al..).ok_or_else(bad)?;
        if wl == 0 && al == 0 && nlri.is_empty() {
            self.eor.get_or_insert((Instant::now(), self.distinct));
            return Ok(());
        }
        for (len, octets) in prefixes(withdrawn).ok_or_else(bad)? {
            self.withdrawn += 1;
            if let Some(i) = index_of(len, octets) {
                self.set(i, false);
            }
        }
        for (len, octets) in prefixes(nlri).ok_or_else(bad)? {
            self.announced += 1;
            match index_of(len, octets) {
                Some(i) => self.set(i, true),
                None => self.foreign += 1,
            }
        }
        if self.distinct == PREFIXES {
            self.full_at.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    fn set(&mut self, i: u32, on: bool) {
        let (w, b) = ((i / 64) as usize, 1u64 << (i % 64));
        let was = self.bits[w] & b != 0;
        match (was, on) {
            (false, true) => {
                self.bits[w] |= b;
                self.distinct += 1;
            }
            (true, false) => {
                self.bits[w] &= !b;
                self.distinct -= 1;
            }
            _ => {}
        }
    }
}

/// IPv4 prefixes of an NLRI field: (length, address); `None` if it does not parse.
fn prefixes(mut b: &[u8]) -> Option<Vec<(u8, [u8; 4])>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        if len > 32 {
            return None;
        }
        let n = usize::from(len).div_ceil(8);
        let mut octets = [0; 4];
        octets[..n].copy_from_slice(rest.get(..n)?);
        out.push((len, octets));
        b = &rest[n..];
    }
    Some(out)
}

/// A receiver that reads everything, counts, and answers KEEPALIVEs (and sends one every
/// second of its own).
struct Receiver {
    count: Arc<Mutex<Count>>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(net: Net, h: u8, to: SocketAddr) -> Result<Self, String> {
        let name = format!("receiver {}", net.host(h));
        let mut peer = RawPeer::connect(&name, net.host(h), to)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        peer.establish(&open_of(h)).await?;
        let count = Arc::new(Mutex::new(Count::new()));
        let c = count.clone();
        let task = tokio::spawn(async move {
            let mut last_keepalive = Instant::now();
            loop {
                if last_keepalive.elapsed() >= Duration::from_secs(1) {
                    last_keepalive = Instant::now();
                    if let Err(e) = peer.send(&keepalive()).await {
                        c.lock().unwrap().down = Some(e);
                        return;
                    }
                }
                let Some(ev) = peer.next(Duration::from_millis(200)).await else {
                    continue;
                };
                match ev {
                    Event::Msg(UPDATE, b) => {
                        let r = c.lock().unwrap().apply(&b);
                        if let Err(e) = r {
                            c.lock().unwrap().down = Some(e);
                            return;
                        }
                    }
                    Event::Msg(KEEPALIVE, _) => {
                        last_keepalive = Instant::now();
                        if let Err(e) = peer.send(&keepalive()).await {
                            c.lock().unwrap().down = Some(e);
                            return;
                        }
                    }
                    Event::Msg(NOTIFICATION, b) => {
                        c.lock().unwrap().down = Some(describe_notification(&b));
                        return;
                    }
                    Event::Closed(r) => {
                        c.lock().unwrap().down = Some(r);
                        return;
                    }
                    Event::Msg(..) => {}
                }
            }
        });
        Ok(Self { count, task })
    }
}

// ---------------------------------------------------------------------------------------
// The stalled receiver.
// ---------------------------------------------------------------------------------------

/// Its receive buffer, asked for before connecting (the kernel doubles it and has a
/// floor): the speaker's window to it closes after a few kilobytes.
const STALLED_RCVBUF: u32 = 4096;

/// A receiver that completes OPEN/KEEPALIVE and never reads again, but keeps sending
/// KEEPALIVEs (so the hold timer has no reason to drop it).
struct Stalled {
    /// Never read until [`Stalled::drain`].
    reader: OwnedReadHalf,
    /// What the handshake read beyond its last message.
    rbuf: BytesMut,
    /// Sends KEEPALIVEs until told to stop; gives the write half back, so that the
    /// connection stays open (half-closing it would tell the speaker to go).
    keepalives: JoinHandle<OwnedWriteHalf>,
    stop_keepalives: oneshot::Sender<()>,
    /// When it stopped reading.
    since: Instant,
}

impl Stalled {
    async fn start(net: Net, to: SocketAddr) -> Result<Self, String> {
        let err = |what: &str, e: &dyn std::fmt::Display| format!("stalled: {what}: {e}");
        let socket = TcpSocket::new_v4().map_err(|e| err("socket", &e))?;
        socket
            .set_recv_buffer_size(STALLED_RCVBUF)
            .map_err(|e| err("SO_RCVBUF", &e))?;
        socket
            .bind(SocketAddr::new(net.host(STALLED), 0))
            .map_err(|e| err("bind", &e))?;
        let stream = tokio::time::timeout(WAIT, socket.connect(to))
            .await
            .map_err(|_| "stalled: connect timed out".to_string())?
            .map_err(|e| err("connect", &e))?;
        let (mut reader, mut writer) = stream.into_split();
        writer
            .write_all(&open_of(STALLED))
            .await
            .map_err(|e| err("write", &e))?;
        let framer = Framer::new();
        let mut rbuf = BytesMut::with_capacity(4096);
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut got_open = false;
        loop {
            let frame = framer
                .next_frame(&mut rbuf)
                .map_err(|e| err("framing", &e))?;
            let Some(f) = frame else {
                let n = tokio::time::timeout_at(deadline, reader.read_buf(&mut rbuf))
                    .await
                    .map_err(|_| "stalled: no Established within 5 s".to_string())?
                    .map_err(|e| err("read", &e))?;
                if n == 0 {
                    return Err("stalled: closed while opening".into());
                }
                continue;
            };
            match f.ty.0 {
                OPEN => {
                    got_open = true;
                    writer
                        .write_all(&keepalive())
                        .await
                        .map_err(|e| err("write", &e))?;
                }
                KEEPALIVE if got_open => break,
                NOTIFICATION => {
                    return Err(format!(
                        "stalled: refused: {}",
                        describe_notification(&f.bytes)
                    ));
                }
                _ => {}
            }
        }
        let since = Instant::now();
        let (stop_keepalives, mut stop) = oneshot::channel();
        let keepalives = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut failed = false;
            loop {
                tokio::select! {
                    _ = &mut stop => return writer,
                    _ = tick.tick() => {
                        // Once the speaker has dropped us, writes fail: that is expected.
                        if !failed {
                            failed = writer.write_all(&keepalive()).await.is_err();
                        }
                    }
                }
            }
        });
        Ok(Self {
            reader,
            rbuf,
            keepalives,
            stop_keepalives,
            since,
        })
    }

    /// Reads at last, for at most `within`: every NOTIFICATION the speaker left in the
    /// socket, how many UPDATEs, and how the connection ended (`None`: still open).
    async fn drain(mut self, within: Duration) -> (Vec<Vec<u8>>, usize, Option<String>) {
        let _ = self.stop_keepalives.send(());
        let _writer = self.keepalives.await;
        let framer = Framer::new();
        let deadline = tokio::time::Instant::now() + within;
        let (mut notifications, mut updates) = (Vec::new(), 0);
        let end = loop {
            match framer.next_frame(&mut self.rbuf) {
                Ok(Some(f)) => {
                    match f.ty.0 {
                        NOTIFICATION => notifications.push(f.bytes.to_vec()),
                        UPDATE => updates += 1,
                        _ => {}
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => break Some(format!("bytes that do not frame: {e}")),
            }
            match tokio::time::timeout_at(deadline, self.reader.read_buf(&mut self.rbuf)).await {
                Err(_) => break None,
                Ok(Ok(0)) => break Some("EOF".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break Some(e.to_string()),
            }
        };
        (notifications, updates, end)
    }
}

// ---------------------------------------------------------------------------------------
// The monitor.
// ---------------------------------------------------------------------------------------

/// What the monitor saw of the speaker.
#[derive(Debug, Default)]
struct Watch {
    /// `peers()` calls answered, and the slowest answer.
    answers: u64,
    slowest: Duration,
    /// Calls that failed or took longer than [`ANSWER_BOUND`] (when, and what).
    late: Vec<String>,
    /// The stalled peer: when it was first seen with unwritten output, and when first
    /// seen out of Established after it had been in it.
    stalled_backlog_at: Option<Instant>,
    stalled_down_at: Option<Instant>,
    /// Its status at that moment.
    stalled_down: Option<PeerStatus>,
    stalled_was_up: bool,
    /// The most unwritten output seen on the stalled peer.
    stalled_max_queued: u64,
    /// The normal receivers' statuses at the last answer.
    last: HashMap<IpAddr, PeerStatus>,
}

fn monitor(
    speaker: Speaker,
    stalled: IpAddr,
    t0: Instant,
    stop: watch::Receiver<bool>,
) -> (Arc<Mutex<Watch>>, JoinHandle<()>) {
    let w = Arc::new(Mutex::new(Watch::default()));
    let state = w.clone();
    let task = tokio::spawn(async move {
        while !*stop.borrow() {
            let asked = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(10), speaker.peers()).await;
            if !record(&state, stalled, t0, asked, r) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (w, task)
}

/// Records one answer of `peers()` asked at `asked`; `false` when the speaker is gone.
fn record(
    state: &Mutex<Watch>,
    stalled: IpAddr,
    t0: Instant,
    asked: Instant,
    r: Result<
        Result<Vec<PeerStatus>, rr_daemon::speaker::SpeakerError>,
        tokio::time::error::Elapsed,
    >,
) -> bool {
    let took = asked.elapsed();
    let mut w = state.lock().unwrap();
    let at = format!("at {:.1} s", (asked - t0).as_secs_f64());
    let peers = match r {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            w.late.push(format!("{at}: peers() failed: {e}"));
            return false;
        }
        Err(_) => {
            w.late.push(format!("{at}: peers() unanswered after 10 s"));
            return true;
        }
    };
    w.answers += 1;
    w.slowest = w.slowest.max(took);
    if took > ANSWER_BOUND {
        w.late.push(format!("{at}: peers() took {took:?}"));
    }
    for p in peers {
        if p.address == stalled {
            w.stalled_max_queued = w.stalled_max_queued.max(p.queued_bytes);
            if p.state == "Established" {
                w.stalled_was_up = true;
                if p.queued_bytes > 0 && w.stalled_backlog_at.is_none() {
                    w.stalled_backlog_at = Some(asked);
                }
            } else if w.stalled_was_up && w.stalled_down_at.is_none() {
                w.stalled_down_at = Some(asked);
                w.stalled_down = Some(p.clone());
            }
        }
        w.last.insert(p.address, p);
    }
    true
}

// ---------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Eight attribute sets, about 0.5 MB on the wire per receiver.
///
/// Fails against the speaker as it is: the session arms the send hold timer only when
/// its socket refuses bytes (`Driver::flush` in `session.rs`), and on loopback the kernel
/// takes the whole table for the stalled peer (about 4 MB of send buffer: `ss -tmi` shows
/// `notsent` 0.5 MB, `rwnd_limited` 100 %), so the peer stays Established with
/// `queued_bytes` 0 and `prefixes_sent` 100,000 while it has read none of them. Setting
/// `TCP_NOTSENT_LOWAT` on the session's sockets (64 KiB) makes it pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_established_stalled_client_send_hold_expires() {
    let load = Load {
        sets: 8,
        communities: 1,
    };
    stalled_client(Net(91), load).await;
}

/// The same with a table of about 10 MB per receiver (2,500 attribute sets of 900
/// communities): more than the kernel buffers between the speaker and the stalled peer,
/// so the speaker's socket stops taking bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_established_stalled_client_socket_full_send_hold_expires() {
    let load = Load {
        sets: 2500,
        communities: 900,
    };
    stalled_client(Net(92), load).await;
}

/// The speaker's whole table reaches both normal receivers while a third member of their
/// update group reads nothing; the send hold timer drops that one; the core answers
/// throughout.
async fn stalled_client(net: Net, load: Load) {
    let t0 = Instant::now();
    let (speaker, core, to) = start_speaker(net).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (watch, monitor_task) = monitor(speaker.clone(), net.host(STALLED), t0, stop_rx);
    let mut failures: Vec<String> = Vec::new();

    // Every receiver is up, the stalled one included, before the first route arrives, so
    // all three are members of one update group when the table streams through it.
    let mut receivers = Vec::new();
    for h in RECEIVERS {
        receivers.push(
            Receiver::start(net, h, to)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let stalled = Stalled::start(net, to)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let msgs = table(load);
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    let mut injector = RawPeer::connect("injector", net.host(INJECTOR), to)
        .await
        .unwrap_or_else(|e| panic!("injector: {e}"));
    injector
        .establish(&open_of(INJECTOR))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t_inject = Instant::now();
    for m in &msgs {
        injector.send(m).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let t_sent = Instant::now();

    // (a) and (b): wait for both receivers' tables and the stalled peer's drop.
    let table_deadline = t_inject + TABLE_BOUND;
    let drop_deadline = t_inject + SEND_HOLD + DROP_MARGIN;
    loop {
        let tables = receivers.iter().all(|r| {
            let c = r.count.lock().unwrap();
            c.done() || c.down.is_some()
        });
        let dropped = watch.lock().unwrap().stalled_down_at.is_some();
        let now = Instant::now();
        if (tables || now >= table_deadline) && (dropped || now >= drop_deadline) {
            break;
        }
        if now >= table_deadline.max(drop_deadline) {
            break;
        }
        if let Err(e) = injector.check_alive() {
            failures.push(format!("injector: {e}"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t_end = Instant::now();

    // (c) once more, directly, and the core task.
    let asked = Instant::now();
    let last = tokio::time::timeout(ANSWER_BOUND, speaker.peers()).await;
    if !matches!(last, Ok(Ok(_))) {
        failures.push(format!(
            "(c) final peers() did not answer within {ANSWER_BOUND:?}: {last:?}"
        ));
    }
    let final_answer = asked.elapsed();
    if core.is_finished() {
        failures.push("(c) the speaker's core task ended".into());
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(12), monitor_task).await;

    let mut report = format!(
        "{net:?} {load:?}\ninjector: {} UPDATEs, {bytes} bytes, sent in {}\n",
        msgs.len(),
        secs(t_sent - t_inject)
    );

    // (a) Both receivers: exactly the table, End-of-RIB, in time.
    for (h, r) in RECEIVERS.iter().zip(&receivers) {
        let c = r.count.lock().unwrap();
        let full = c.full_at.map(|t| secs(t - t_inject));
        let _ = writeln!(
            report,
            "receiver {}: {} distinct of {PREFIXES}, {} announced, {} withdrawn, {} foreign, \
             {} UPDATEs; full after {full:?}; End-of-RIB {:?}; down: {:?}",
            net.host(*h),
            c.distinct,
            c.announced,
            c.withdrawn,
            c.foreign,
            c.updates,
            c.eor
                .map(|(t, n)| format!("after {} holding {n}", secs(t - t_inject))),
            c.down
        );
        if !c.done() {
            failures.push(format!(
                "(a) receiver {}: {} of {PREFIXES} prefixes, End-of-RIB {}, after {} (bound \
                 {TABLE_BOUND:?}); session down: {:?}",
                net.host(*h),
                c.distinct,
                if c.eor.is_some() { "seen" } else { "missing" },
                secs(t_end - t_inject),
                c.down
            ));
        }
        if c.foreign > 0 || c.withdrawn > 0 {
            failures.push(format!(
                "(a) receiver {}: {} prefixes that were never announced, {} withdrawals",
                net.host(*h),
                c.foreign,
                c.withdrawn
            ));
        }
        if let Some(d) = &c.down {
            failures.push(format!("(a) receiver {}: session ended: {d}", net.host(*h)));
        }
    }

    // (b) The stalled peer: dropped by its send hold timer, not before it ran out. The
    // monitor has stopped: what it saw is taken whole.
    let w = std::mem::take(&mut *watch.lock().unwrap());
    let expected = Notification::new(ErrorCode::SEND_HOLD_TIMER_EXPIRED, 0).to_string();
    let _ = writeln!(
        report,
        "stalled {}: stopped reading {} before the injection; unwritten output first seen \
         after {:?}, at most {} bytes; out of Established after {:?}: {:?}",
        net.host(STALLED),
        secs(t_inject - stalled.since),
        w.stalled_backlog_at.map(|t| secs(t - t_inject)),
        w.stalled_max_queued,
        w.stalled_down_at.map(|t| secs(t - t_inject)),
        w.stalled_down
            .as_ref()
            .map(|p| (&p.state, &p.last_notification_sent, &p.last_error)),
    );
    match (w.stalled_down_at, &w.stalled_down) {
        (Some(at), Some(p)) => {
            let after = at - t_inject;
            if after > SEND_HOLD + DROP_MARGIN {
                failures.push(format!(
                    "(b) stalled peer dropped {} after the injection began, later than \
                     send_hold_time {SEND_HOLD:?} + {DROP_MARGIN:?}",
                    secs(after)
                ));
            }
            // The timer starts when the socket stops taking bytes, which is after the
            // injection began: an earlier drop is something else.
            if after + Duration::from_millis(250) < SEND_HOLD {
                failures.push(format!(
                    "(b) stalled peer dropped {} after the injection began, before \
                     send_hold_time {SEND_HOLD:?} could run out",
                    secs(after)
                ));
            }
            if p.last_notification_sent.as_deref() != Some(expected.as_str()) {
                failures.push(format!(
                    "(b) stalled peer dropped with last_notification_sent {:?} (last_error \
                     {:?}), not {expected:?}",
                    p.last_notification_sent, p.last_error
                ));
            }
        }
        _ => failures.push(format!(
            "(b) stalled peer never left Established within {} after the injection began \
             (send_hold_time {SEND_HOLD:?}); its last status: {:?}",
            secs(t_end - t_inject),
            w.last.get(&net.host(STALLED))
        )),
    }

    // (c) The core answered every time, quickly.
    let _ = writeln!(
        report,
        "monitor: {} answers, slowest {:?}; final answer {:?}",
        w.answers, w.slowest, final_answer
    );
    if w.answers == 0 {
        failures.push("(c) peers() never answered".into());
    }
    failures.extend(w.late.iter().map(|l| format!("(c) {l}")));

    // The stalled socket, read at last: the speaker's NOTIFICATION (if it got through
    // behind the unread UPDATEs) and the end of the connection.
    let (notifications, updates, end) = stalled.drain(Duration::from_secs(3)).await;
    let codes: Vec<String> = notifications
        .iter()
        .map(|n| describe_notification(n))
        .collect();
    let _ = writeln!(
        report,
        "stalled socket read at last: {updates} UPDATEs, NOTIFICATIONs {codes:?}, end: {end:?}"
    );
    if let Some(n) = notifications.first()
        && rawpeer::notification_parts(n).0 != 8
    {
        failures.push(format!(
            "(b) the stalled socket holds {}, not Send Hold Timer Expired",
            describe_notification(n)
        ));
    }
    if end.is_none() && notifications.is_empty() {
        failures.push("(b) the stalled connection is still open and holds no NOTIFICATION".into());
    }

    println!("{report}");
    assert!(
        failures.is_empty(),
        "{} failed check(s):\n  {}\n{report}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// A receiver that reads, only slowly: RFC 9687's send hold timer measures how long a
/// peer takes no bytes at all, so a peer that takes some every half second is never
/// dropped, however far behind it is. It reads 32 KiB every 500 ms for three send hold
/// times (its socket blocked throughout: the 10 MB table is far more than that), then at
/// full speed, and must end with exactly the whole table and End-of-RIB.
///
/// Fails when the timer runs from the first blocked write until the queue is empty: the
/// session is dropped with 8/0 after the send hold time although the peer kept reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_established_slow_client_is_not_dropped() {
    const SLOW_FOR: Duration = Duration::from_secs(3 * SEND_HOLD.as_secs());
    const SIP: usize = 32 << 10;
    let net = Net(93);
    let load = Load {
        sets: 2500,
        communities: 900,
    };
    let (speaker, core, to) = start_speaker(net).await;
    let slow = Stalled::start(net, to)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let Stalled {
        mut reader,
        mut rbuf,
        stop_keepalives,
        keepalives,
        ..
    } = slow;
    let msgs = table(load);
    let mut injector = RawPeer::connect("injector", net.host(INJECTOR), to)
        .await
        .unwrap_or_else(|e| panic!("injector: {e}"));
    injector
        .establish(&open_of(INJECTOR))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t_inject = Instant::now();
    for m in &msgs {
        injector.send(m).await.unwrap_or_else(|e| panic!("{e}"));
    }

    let framer = Framer::new();
    let mut count = Count::new();
    let mut notifications = Vec::new();
    let mut read_slow = 0usize;
    let mut max_queued = 0u64;
    let mut ended: Option<String> = None;
    let eat = |rbuf: &mut BytesMut, count: &mut Count, notifications: &mut Vec<String>| {
        while let Ok(Some(f)) = framer.next_frame(rbuf) {
            match f.ty.0 {
                UPDATE => count.apply(&f.bytes).unwrap_or_else(|e| panic!("{e}")),
                NOTIFICATION => notifications.push(describe_notification(&f.bytes)),
                _ => {}
            }
        }
    };
    // Slow: one sip every half second, the peer's status looked at each time.
    let slow_until = Instant::now() + SLOW_FOR;
    while Instant::now() < slow_until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut sip = vec![0u8; SIP];
        match tokio::time::timeout(Duration::from_millis(100), reader.read(&mut sip)).await {
            Ok(Ok(0)) => {
                ended = Some("EOF while reading slowly".into());
                break;
            }
            Ok(Ok(n)) => {
                read_slow += n;
                rbuf.extend_from_slice(&sip[..n]);
            }
            Ok(Err(e)) => {
                ended = Some(format!("read: {e}"));
                break;
            }
            Err(_) => {}
        }
        eat(&mut rbuf, &mut count, &mut notifications);
        if let Ok(Ok(peers)) = tokio::time::timeout(ANSWER_BOUND, speaker.peers()).await
            && let Some(p) = peers.iter().find(|p| p.address == net.host(STALLED))
        {
            max_queued = max_queued.max(p.queued_bytes);
            if p.state != "Established" {
                ended = Some(format!("left Established: {:?}", p.last_error));
                break;
            }
        }
    }
    let slow_prefixes = count.distinct;
    // Fast: everything else, bounded.
    let deadline = tokio::time::Instant::now() + TABLE_BOUND;
    while ended.is_none() && !count.done() {
        match tokio::time::timeout_at(deadline, reader.read_buf(&mut rbuf)).await {
            Err(_) => break,
            Ok(Ok(0)) => ended = Some("EOF".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => ended = Some(format!("read: {e}")),
        }
        eat(&mut rbuf, &mut count, &mut notifications);
    }
    let _ = stop_keepalives.send(());
    let _writer = keepalives.await;
    let report = format!(
        "slow phase {}: read {read_slow} bytes, {slow_prefixes} prefixes, unwritten output \
         up to {max_queued} bytes; then {} of {PREFIXES} prefixes, End-of-RIB {:?}, after {}; \
         notifications {notifications:?}; ended {ended:?}",
        secs(SLOW_FOR),
        count.distinct,
        count.eor.map(|(t, _)| secs(t - t_inject)),
        secs(t_inject.elapsed()),
    );
    eprintln!("{report}");
    assert!(ended.is_none() && notifications.is_empty(), "{report}");
    assert!(
        max_queued > 0 && slow_prefixes < PREFIXES,
        "the slow phase never had output waiting: the test proves nothing: {report}"
    );
    assert!(
        count.done() && count.foreign == 0 && count.withdrawn == 0,
        "{report}"
    );
    assert!(!core.is_finished());
}
