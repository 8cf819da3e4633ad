//! A BGP peer that comes up with graceful restart (RFC 4724, not restarting itself) and
//! then says nothing but KEEPALIVEs: no UPDATE, so never an End-of-RIB. A restarting
//! speaker beside it stays in recovery while the session is Established, the state
//! calico-node's readiness check refuses ("graceful restart in progress").
//!
//! `gr-silent-peer --connect ADDR[:PORT] --asn N --router-id ID [--seconds S]` connects
//! (from the address the route to ADDR gives), sends its OPEN (IPv4 unicast, 4-octet AS, graceful restart with the F bit)
//! and a KEEPALIVE, then reads and drops whatever comes and sends a KEEPALIVE every 10 s,
//! until the connection closes or S seconds (default 120) have passed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bgp_wire::capability::{Capability, GrFamily, GracefulRestart};
use bgp_wire::open::Open;
use bgp_wire::{Afi, Safi};
use bytes::BytesMut;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The speaker's address, port 179 unless given.
    #[arg(long)]
    connect: String,
    /// Our AS.
    #[arg(long)]
    asn: u32,
    /// Our BGP identifier.
    #[arg(long)]
    router_id: Ipv4Addr,
    /// How long to stay, at most.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gr-silent-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<(), String> {
    let to: SocketAddr = match a.connect.parse() {
        Ok(s) => s,
        Err(_) => SocketAddr::new(
            a.connect
                .parse()
                .map_err(|e| format!("--connect {}: {e}", a.connect))?,
            179,
        ),
    };
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .map_err(|e| format!("connect {to}: {e}"))?;
    let open = Open {
        asn: a.asn,
        hold_time: 240,
        bgp_id: a.router_id,
        capabilities: vec![
            Capability::Multiprotocol {
                afi: Afi::IPV4,
                safi: Safi::UNICAST,
            },
            Capability::FourOctetAs(a.asn),
            Capability::GracefulRestart(GracefulRestart {
                restart_state: false,
                notification: false,
                restart_time: 120,
                families: vec![GrFamily {
                    afi: Afi::IPV4,
                    safi: Safi::UNICAST,
                    forwarding: true,
                }],
            }),
        ],
    };
    let mut out = BytesMut::new();
    open.encode(&mut out);
    bgp_wire::keepalive::encode(&mut out);
    s.write_all(&out).map_err(|e| format!("send OPEN: {e}"))?;
    eprintln!("gr-silent-peer: OPEN and KEEPALIVE sent to {to}");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return Err("closed by the speaker".into()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                s.write_all(&bgp_wire::keepalive::KEEPALIVE)
                    .map_err(|e| format!("send KEEPALIVE: {e}"))?;
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(())
}
