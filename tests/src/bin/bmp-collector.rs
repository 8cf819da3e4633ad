//! A BMP (RFC 7854) monitoring station for the tests, with a decoder of its own (it
//! shares nothing with the daemon's encoder): it listens, takes one speaker's connection
//! after another, and prints one JSON line per BMP message to stdout, flushed at once:
//!
//! `{"conn":1,"type":"peer_up","peer":"192.0.2.11","asn":65000,"bgp_id":"...",
//!   "local":"192.0.2.1","local_port":179,"remote_port":40000,"sent_open":true,"received_open":true}`
//! `{"conn":1,"type":"route_monitoring","peer":"...","post":false,"announce":[..],
//!   "withdraw":[..],"eor":false}` (prefixes as text; IPv4 NLRI and MP_REACH/MP_UNREACH;
//!   where the peer's Peer Up OPENs negotiated ADD-PATH receive for the family, RFC 7911,
//!   each prefix is followed by `#` and its path identifier: `2001:db8::/48#2`)
//! `{"conn":1,"type":"peer_down","peer":"...","reason":3,"notification":[6,2]}`
//! `{"conn":1,"type":"stats","peer":"...","stats":{"0":N,"7":M}}`
//! `{"conn":1,"type":"initiation","sys_name":"...","sys_descr":"..."}`
//! `{"conn":1,"type":"termination","reason":0}`, `{"conn":1,"type":"closed"}`
//!
//! `bmp-collector --listen ADDR:PORT [--raw-dir DIR] [--stall-after N]`: with `--raw-dir`
//! each connection's bytes also go to DIR/conn-N.bmp; with `--stall-after`, it stops
//! reading the first connection after N messages (a collector that does not keep up)
//! and holds it open (`--rcvbuf BYTES` makes its receive buffer small, so the speaker
//! sees it soon). Each connection is served by a thread of its own.
//! Any decoding error ends the process with a message on stderr (exit 2).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Where to listen.
    #[arg(long)]
    listen: String,
    /// Where to save each connection's bytes.
    #[arg(long)]
    raw_dir: Option<PathBuf>,
    /// Stop reading the first connection after this many messages.
    #[arg(long)]
    stall_after: Option<u64>,
    /// The receive buffer of accepted connections (small: the speaker's writes block
    /// soon after the collector stops reading).
    #[arg(long)]
    rcvbuf: Option<usize>,
}

fn listen(addr: &str, rcvbuf: Option<usize>) -> std::io::Result<TcpListener> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_address(true)?;
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    s.bind(&addr.into())?;
    s.listen(16)?;
    Ok(s.into())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match listen(&args.listen, args.rcvbuf) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bmp-collector: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut conn = 0u64;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        conn += 1;
        let stall = if conn == 1 { args.stall_after } else { None };
        let raw_dir = args.raw_dir.clone();
        // A thread per connection: a stalled first one does not hold up the next.
        std::thread::spawn(move || {
            if let Err(e) = serve(conn, stream, raw_dir.as_ref(), stall) {
                eprintln!("bmp-collector: connection {conn}: {e}");
                std::process::exit(2);
            }
            emit(&json!({"conn": conn, "type": "closed"}));
        });
    }
    ExitCode::SUCCESS
}

fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn serve(
    conn: u64,
    mut s: TcpStream,
    raw_dir: Option<&PathBuf>,
    stall: Option<u64>,
) -> Result<(), String> {
    let mut raw = match raw_dir {
        Some(d) => {
            Some(File::create(d.join(format!("conn-{conn}.bmp"))).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    let mut count = 0u64;
    let mut add_path = AddPaths::new();
    loop {
        if stall.is_some_and(|n| count >= n) {
            // Hold the connection without reading until the speaker gives up on it.
            let mut one = [0u8; 1];
            s.set_read_timeout(None).map_err(|e| e.to_string())?;
            std::thread::sleep(std::time::Duration::from_secs(3600));
            let _ = s.read(&mut one);
            return Ok(());
        }
        let n = match s.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if let Some(f) = raw.as_mut() {
            f.write_all(&chunk[..n]).map_err(|e| e.to_string())?;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while buf.len() - at >= 6 {
            let len =
                u32::from_be_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]) as usize;
            if buf[at] != 3 {
                return Err(format!("BMP version {} (want 3)", buf[at]));
            }
            if len < 6 {
                return Err(format!("BMP message length {len}"));
            }
            if buf.len() - at < len {
                break;
            }
            let v = message(conn, buf[at + 5], &buf[at + 6..at + len], &mut add_path)?;
            emit(&v);
            count += 1;
            at += len;
        }
        buf.drain(..at);
    }
}

fn be16(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|x| u16::from_be_bytes([x[0], x[1]]))
        .ok_or_else(|| format!("short at {at}"))
}

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
        .ok_or_else(|| format!("short at {at}"))
}

fn addr16(b: &[u8], v6: bool) -> IpAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    if v6 {
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    }
}

/// The per-peer header: the peer, its flags, and the rest of the message.
fn per_peer(b: &[u8]) -> Result<(Value, u8, &[u8]), String> {
    if b.len() < 42 {
        return Err("short per-peer header".into());
    }
    let flags = b[1];
    let peer = addr16(&b[10..26], flags & 0x80 != 0);
    let asn = be32(b, 26)?;
    let id = Ipv4Addr::new(b[30], b[31], b[32], b[33]);
    Ok((
        json!({"peer": peer.to_string(), "asn": asn, "bgp_id": id.to_string()}),
        flags,
        &b[42..],
    ))
}

fn tlvs(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let ty = be16(b, 0)?;
        let len = usize::from(be16(b, 2)?);
        let val = b.get(4..4 + len).ok_or("short TLV")?;
        v.push((ty, val));
        b = &b[4 + len..];
    }
    Ok(v)
}

/// A whole BGP message at the start of `b`: its type and length.
fn bgp_message(b: &[u8]) -> Result<(u8, usize), String> {
    if b.len() < 19 || b[..16] != [0xff; 16] {
        return Err("not a BGP message (marker)".into());
    }
    let len = usize::from(be16(b, 16)?);
    if len < 19 || len > b.len() {
        return Err(format!("BGP message length {len} of {}", b.len()));
    }
    Ok((b[18], len))
}

/// For each peer of a connection (by address), whether its routes carry ADD-PATH
/// identifiers: `[IPv4 unicast, IPv6 unicast]`.
type AddPaths = HashMap<String, [bool; 2]>;

/// The ADD-PATH capability (69) of an OPEN: for each family (IPv4 and IPv6 unicast), its
/// send/receive field (1 receive, 2 send, 3 both; 0 without).
fn open_add_path(open: &[u8]) -> Result<[u8; 2], String> {
    let mut out = [0u8; 2];
    let body = open.get(19..).ok_or("short OPEN")?;
    let optlen = usize::from(*body.get(9).ok_or("short OPEN")?);
    let mut params = body.get(10..10 + optlen).ok_or("short OPEN parameters")?;
    while params.len() >= 2 {
        let (pty, plen) = (params[0], usize::from(params[1]));
        let val = params.get(2..2 + plen).ok_or("short OPEN parameter")?;
        if pty == 2 {
            let mut caps = val;
            while caps.len() >= 2 {
                let (code, clen) = (caps[0], usize::from(caps[1]));
                let cv = caps.get(2..2 + clen).ok_or("short capability")?;
                if code == 69 {
                    for t in cv.chunks_exact(4) {
                        let (afi, safi) = (u16::from_be_bytes([t[0], t[1]]), t[2]);
                        match (afi, safi) {
                            (1, 1) => out[0] = t[3],
                            (2, 1) => out[1] = t[3],
                            _ => {}
                        }
                    }
                }
                caps = &caps[2 + clen..];
            }
        }
        params = &params[2 + plen..];
    }
    Ok(out)
}

fn message(conn: u64, ty: u8, b: &[u8], add_path: &mut AddPaths) -> Result<Value, String> {
    Ok(match ty {
        4 => {
            let mut v = json!({"conn": conn, "type": "initiation"});
            for (t, val) in tlvs(b)? {
                let text = String::from_utf8_lossy(val).into_owned();
                match t {
                    1 => v["sys_descr"] = text.into(),
                    2 => v["sys_name"] = text.into(),
                    _ => {}
                }
            }
            v
        }
        5 => {
            let mut v = json!({"conn": conn, "type": "termination"});
            for (t, val) in tlvs(b)? {
                if t == 1 {
                    v["reason"] = be16(val, 0)?.into();
                }
            }
            v
        }
        3 => {
            let (mut v, _, rest) = per_peer(b)?;
            if rest.len() < 20 {
                return Err("short Peer Up".into());
            }
            let local = addr16(&rest[..16], rest[..12].iter().any(|x| *x != 0));
            let (sent_ty, sent_len) = bgp_message(&rest[20..])?;
            let (recv_ty, recv_len) = bgp_message(&rest[20 + sent_len..])?;
            // The speaker receives identifiers where it said receive and the peer send.
            let sent = open_add_path(&rest[20..20 + sent_len])?;
            let received = open_add_path(&rest[20 + sent_len..20 + sent_len + recv_len])?;
            add_path.insert(
                v["peer"].as_str().unwrap_or_default().to_owned(),
                [0, 1].map(|i| sent[i] & 1 != 0 && received[i] & 2 != 0),
            );
            v["conn"] = conn.into();
            v["type"] = "peer_up".into();
            v["local"] = local.to_string().into();
            v["local_port"] = be16(rest, 16)?.into();
            v["remote_port"] = be16(rest, 18)?.into();
            v["sent_open"] = (sent_ty == 1).into();
            v["received_open"] = (recv_ty == 1).into();
            v
        }
        2 => {
            let (mut v, _, rest) = per_peer(b)?;
            let reason = *rest.first().ok_or("short Peer Down")?;
            v["conn"] = conn.into();
            v["type"] = "peer_down".into();
            v["reason"] = reason.into();
            if matches!(reason, 1 | 3) {
                let (t, _) = bgp_message(&rest[1..])?;
                if t != 3 {
                    return Err(format!("Peer Down reason {reason} without a NOTIFICATION"));
                }
                v["notification"] = json!([rest[20], rest[21]]);
            }
            v
        }
        1 => {
            let (mut v, _, rest) = per_peer(b)?;
            let count = be32(rest, 0)?;
            let list = tlvs(&rest[4..])?;
            if list.len() != count as usize {
                return Err(format!("stats count {count}, {} TLVs", list.len()));
            }
            let mut stats = serde_json::Map::new();
            for (t, val) in list {
                let n = match val.len() {
                    4 => u64::from(be32(val, 0)?),
                    8 => (u64::from(be32(val, 0)?) << 32) | u64::from(be32(val, 4)?),
                    l => return Err(format!("stat {t} of {l} bytes")),
                };
                stats.insert(t.to_string(), n.into());
            }
            v["conn"] = conn.into();
            v["type"] = "stats".into();
            v["stats"] = stats.into();
            v
        }
        0 => {
            let (mut v, flags, rest) = per_peer(b)?;
            let (t, len) = bgp_message(rest)?;
            if t != 2 || len != rest.len() {
                return Err(format!(
                    "Route Monitoring with BGP type {t}, {len} of {}",
                    rest.len()
                ));
            }
            let ap = add_path
                .get(v["peer"].as_str().unwrap_or_default())
                .copied()
                .unwrap_or_default();
            let (announce, withdraw, eor) = update(&rest[19..len], flags & 0x20 == 0, ap)?;
            v["conn"] = conn.into();
            v["type"] = "route_monitoring".into();
            v["post"] = (flags & 0x40 != 0).into();
            v["announce"] = announce.into();
            v["withdraw"] = withdraw.into();
            v["eor"] = eor.into();
            v
        }
        t => return Err(format!("unknown BMP message type {t}")),
    })
}

fn prefixes(mut b: &[u8], v6: bool, add_path: bool, out: &mut Vec<String>) -> Result<(), String> {
    while !b.is_empty() {
        let id = if add_path {
            let id = be32(b, 0)?;
            b = &b[4..];
            Some(id)
        } else {
            None
        };
        let len = *b.first().ok_or("short prefix")?;
        let n = usize::from(len).div_ceil(8);
        let bytes = b.get(1..1 + n).ok_or("short prefix")?;
        let text = if v6 {
            let mut o = [0u8; 16];
            o[..n].copy_from_slice(bytes);
            format!("{}/{len}", Ipv6Addr::from(o))
        } else {
            let mut o = [0u8; 4];
            o[..n].copy_from_slice(bytes);
            format!("{}/{len}", Ipv4Addr::from(o))
        };
        out.push(match id {
            Some(id) => format!("{text}#{id}"),
            None => text,
        });
        b = &b[1 + n..];
    }
    Ok(())
}

/// An UPDATE body: announced and withdrawn prefixes, and whether it is an End-of-RIB.
fn update(
    b: &[u8],
    _four_octet: bool,
    add_path: [bool; 2],
) -> Result<(Vec<String>, Vec<String>, bool), String> {
    let wlen = usize::from(be16(b, 0)?);
    let withdrawn = b.get(2..2 + wlen).ok_or("short withdrawn")?;
    let alen = usize::from(be16(b, 2 + wlen)?);
    let attrs = b.get(4 + wlen..4 + wlen + alen).ok_or("short attributes")?;
    let nlri = &b[4 + wlen + alen..];
    let (mut ann, mut wd) = (Vec::new(), Vec::new());
    prefixes(withdrawn, false, add_path[0], &mut wd)?;
    prefixes(nlri, false, add_path[0], &mut ann)?;
    let mut a = attrs;
    let mut eor = wlen == 0 && alen == 0 && nlri.is_empty();
    while !a.is_empty() {
        let flags = a[0];
        let ty = *a.get(1).ok_or("short attribute")?;
        let (len, hdr) = if flags & 0x10 != 0 {
            (usize::from(be16(a, 2)?), 4)
        } else {
            (usize::from(*a.get(2).ok_or("short attribute")?), 3)
        };
        let val = a.get(hdr..hdr + len).ok_or("short attribute value")?;
        match ty {
            14 => {
                let afi = be16(val, 0)?;
                let nhl = usize::from(val[3]);
                let rest = val.get(5 + nhl..).ok_or("short MP_REACH_NLRI")?;
                prefixes(rest, afi == 2, add_path[usize::from(afi == 2)], &mut ann)?;
            }
            15 => {
                let afi = be16(val, 0)?;
                let rest = &val[3..];
                if rest.is_empty() && alen == len + hdr && wlen == 0 && nlri.is_empty() {
                    eor = true;
                }
                prefixes(rest, afi == 2, add_path[usize::from(afi == 2)], &mut wd)?;
            }
            _ => {}
        }
        a = &a[hdr + len..];
    }
    Ok((ann, wd, eor))
}
