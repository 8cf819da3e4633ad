//! `bfd-load`: many raw BFD clients (RFC 5880 asynchronous mode, single hop RFC 5881) from
//! consecutive source addresses towards one speaker, to load its BFD sessions and catch
//! a false Down. Written from the RFC, independently of the daemon's implementation.
//!
//! ```text
//! bfd-load --peer 10.80.0.1 --first 10.80.1.0 --count 1000 --interval-ms 300 \
//!          --multiplier 3 --up-within 60 --hold 60
//! ```
//!
//! Each client has its own socket bound to its address and a source port of
//! 49152-65535, sends with TTL 255, answers a Poll with a Final, and follows the three-way
//! handshake. One socket on port 3784 receives the speaker's packets, told apart by Your
//! Discriminator (the client's own). It runs until every session is Up (at most
//! `--up-within` seconds), then `--hold` seconds more, and prints one JSON report:
//! how long all took to come up, every Down seen after Up, by either side, the longest
//! gap between two packets of the speaker on one session, and the longest time this
//! tool itself was away from its loop (a loaded machine descheduling it).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The speaker's address.
    #[arg(long)]
    peer: Ipv4Addr,
    /// The first client address (they must be local, e.g. on the veth).
    #[arg(long)]
    first: Ipv4Addr,
    /// Number of clients.
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Desired Min TX and Required Min RX, ms.
    #[arg(long, default_value_t = 300)]
    interval_ms: u32,
    /// Detect Mult.
    #[arg(long, default_value_t = 3)]
    multiplier: u8,
    /// Seconds within which every session must be Up.
    #[arg(long, default_value_t = 60)]
    up_within: u64,
    /// Seconds to hold every session after all are Up.
    #[arg(long, default_value_t = 60)]
    hold: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

fn st(b: u8) -> St {
    match b >> 6 {
        0 => St::AdminDown,
        1 => St::Down,
        2 => St::Init,
        _ => St::Up,
    }
}

struct Client {
    sock: UdpSocket,
    disc: u32,
    state: St,
    remote_disc: u32,
    remote_tx_us: u32,
    remote_rx_us: u32,
    remote_mult: u8,
    next_tx: Instant,
    detect_at: Option<Instant>,
    final_owed: bool,
    was_up: bool,
    last_rx: Option<Instant>,
}

/// xorshift, for jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// 75..100% of `d`.
    fn jitter(&mut self, d: Duration) -> Duration {
        d.mul_f64(0.75 + 0.25 * (self.next() % 1000) as f64 / 1000.0)
    }
}

fn packet(c: &Client, interval_us: u32, mult: u8, fin: bool, poll: bool) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0] = 1 << 5;
    b[1] = ((c.state as u8) << 6) | (u8::from(poll) << 5) | (u8::from(fin) << 4);
    b[2] = mult;
    b[3] = 24;
    b[4..8].copy_from_slice(&c.disc.to_be_bytes());
    b[8..12].copy_from_slice(&c.remote_disc.to_be_bytes());
    b[12..16].copy_from_slice(&interval_us.to_be_bytes());
    b[16..20].copy_from_slice(&interval_us.to_be_bytes());
    b
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bfd-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<serde_json::Value, String> {
    let rx = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 3784))
        .map_err(|e| format!("cannot bind 0.0.0.0:3784: {e}"))?;
    rx.set_read_timeout(Some(Duration::from_millis(2)))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let mut clients = Vec::with_capacity(a.count as usize);
    let mut by_disc = HashMap::new();
    for i in 0..a.count {
        let ip = Ipv4Addr::from(u32::from(a.first) + i);
        let mut sock = None;
        for k in 0..64u64 {
            let port = 49152 + ((rng.next().wrapping_add(k)) % 16384) as u16;
            if let Ok(s) = UdpSocket::bind(SocketAddr::from((ip, port))) {
                sock = Some(s);
                break;
            }
        }
        let sock = sock.ok_or_else(|| format!("no source port free on {ip}"))?;
        sock.set_ttl(255).map_err(|e| e.to_string())?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let disc = 0x1000_0000 + i;
        by_disc.insert(disc, clients.len());
        clients.push(Client {
            sock,
            disc,
            state: St::Down,
            remote_disc: 0,
            remote_tx_us: 0,
            remote_rx_us: 1,
            remote_mult: 0,
            next_tx: start + Duration::from_millis(rng.next() % 300),
            detect_at: None,
            final_owed: false,
            was_up: false,
            last_rx: None,
        });
    }
    let interval = Duration::from_millis(u64::from(a.interval_ms));
    let interval_us = a.interval_ms * 1000;
    let to = SocketAddr::from((a.peer, 3784));
    let (mut sent, mut received, mut send_errors) = (0u64, 0u64, 0u64);
    let mut downs: Vec<serde_json::Value> = Vec::new();
    let mut all_up_at: Option<Duration> = None;
    let mut max_gap = Duration::ZERO;
    let mut buf = [0u8; 512];
    let (mut last_turn, mut max_stall): (Option<Instant>, Duration) = (None, Duration::ZERO);
    let deadline_up = start + Duration::from_secs(a.up_within);
    loop {
        let now = Instant::now();
        match all_up_at {
            None if now > deadline_up => break,
            Some(t) if now > start + t + Duration::from_secs(a.hold) => break,
            _ => {}
        }
        // Receive everything that is there before any timer is judged (a client that was
        // descheduled must not call a session down whose packets wait in its socket).
        let turn = Instant::now();
        if let Some(prev) = last_turn {
            max_stall = max_stall.max(turn - prev);
        }
        last_turn = Some(turn);
        rx.set_nonblocking(true).map_err(|e| e.to_string())?;
        for _ in 0..100_000 {
            let Ok((n, from)) = rx.recv_from(&mut buf) else {
                break;
            };
            let now = Instant::now();
            if from.ip() != a.peer || n < 24 || buf[0] >> 5 != 1 || buf[2] == 0 {
                continue;
            }
            let your = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            let Some(&i) = by_disc.get(&your) else {
                continue; // Not yet told which client (Your Discriminator 0).
            };
            received += 1;
            let c = &mut clients[i];
            if let Some(l) = c.last_rx
                && c.was_up
            {
                max_gap = max_gap.max(now - l);
            }
            c.last_rx = Some(now);
            let rstate = st(buf[1]);
            c.remote_disc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            c.remote_tx_us = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
            c.remote_rx_us = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]);
            c.remote_mult = buf[2];
            let det = Duration::from_micros(u64::from(c.remote_tx_us.max(interval_us)))
                * u32::from(c.remote_mult);
            c.detect_at = Some(now + det);
            if buf[1] & 0x20 != 0 {
                c.final_owed = true;
            }
            let before = c.state;
            // RFC 5880 §6.8.6.
            c.state = match (c.state, rstate) {
                (St::AdminDown, _) => St::AdminDown,
                (_, St::AdminDown) | (St::Up, St::Down) => St::Down,
                (St::Down, St::Down) => St::Init,
                (St::Down, St::Init) | (St::Init, St::Init | St::Up) => St::Up,
                (s, _) => s,
            };
            if before == St::Up && c.state == St::Down {
                downs.push(serde_json::json!({
                    "client": i, "by": "speaker", "at_ms": (now - start).as_millis() as u64,
                    "speaker_state": format!("{rstate:?}"),
                }));
            }
            if c.state == St::Up {
                c.was_up = true;
            }
        }
        // Timers.
        let now = Instant::now();
        let mut up = 0;
        for (i, c) in clients.iter_mut().enumerate() {
            if c.detect_at.is_some_and(|d| d <= now) {
                c.detect_at = None;
                if matches!(c.state, St::Up | St::Init) {
                    if c.state == St::Up {
                        downs.push(serde_json::json!({
                            "client": i, "by": "client-detection",
                            "at_ms": (now - start).as_millis() as u64,
                        }));
                    }
                    c.state = St::Down;
                }
                c.remote_disc = 0;
            }
            if c.state == St::Up {
                up += 1;
            }
            let due = c.next_tx <= now;
            if (due || c.final_owed) && c.remote_rx_us != 0 {
                let p = packet(c, interval_us, a.multiplier, c.final_owed, false);
                c.final_owed = false;
                match c.sock.send_to(&p, to) {
                    Ok(_) => sent += 1,
                    Err(_) => send_errors += 1,
                }
                if due {
                    let every = interval.max(Duration::from_micros(u64::from(c.remote_rx_us)));
                    c.next_tx = now + rng.jitter(every);
                }
            }
        }
        if all_up_at.is_none() && up == clients.len() {
            all_up_at = Some(now - start);
        }
        // Wait for the next datagram, 2 ms at most.
        rx.set_nonblocking(false).map_err(|e| e.to_string())?;
        let _ = rx.peek_from(&mut [0u8; 1]);
    }
    let up = clients.iter().filter(|c| c.state == St::Up).count();
    Ok(serde_json::json!({
        "sessions": a.count,
        "up": up,
        "all_up_ms": all_up_at.map(|d| d.as_millis() as u64),
        "held_s": a.hold,
        "downs_after_up": downs.len(),
        "downs": downs.iter().take(20).cloned().collect::<Vec<_>>(),
        "packets_sent": sent,
        "packets_received": received,
        "send_errors": send_errors,
        "max_rx_gap_ms": max_gap.as_millis() as u64,
        "max_own_stall_ms": max_stall.as_millis() as u64,
    }))
}
