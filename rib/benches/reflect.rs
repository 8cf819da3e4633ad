//! One-shot measurement: one client sends 1,000,000 IPv4 prefixes (50,000 distinct
//! attribute sets, AS paths of 1-10 hops, communities) as real UPDATE messages; they are
//! parsed with `UpdateView`, applied, reflected to N clients in G update groups and drained
//! to the last encoded byte; then everything is withdrawn.
//!
//! `cargo bench -p rib --bench reflect` runs every case in its own process (so that each
//! peak RSS, VmHWM, is its own) and prints a table. `-- CLIENTS GROUPS` runs one case;
//! `-- CLIENTS GROUPS SETS` with another number of attribute sets (222222: the load tool's
//! table, 4.5 prefixes per UPDATE on average).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Instant;

use bgp_wire::attr::{AsPath, Community, Origin, PathAttribute};
use bgp_wire::nlri::Nlri;
use bgp_wire::update::{Update, UpdateView};
use bgp_wire::{FamilySet, SessionCtx};
use bytes::{Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net};
use rib::{LocalAddrs, PeerConfig, PeerId, Rib, RibConfig, Session};

const PREFIXES: u32 = 1_000_000;
const SETS: u32 = 50_000;
const LOCAL_AS: u32 = 65000;

fn vm_hwm_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn vm_rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ctx() -> SessionCtx {
    SessionCtx {
        ibgp: true,
        families: FamilySet::only(bgp_wire::Family::Ipv4Unicast),
        ..SessionCtx::default()
    }
}

fn prefix(i: u32) -> IpNet {
    // Distinct /24s from 11.0.0.0 upward.
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from((11 << 24) + (i << 8)), 24).unwrap())
}

fn attrs(k: u32) -> Vec<PathAttribute> {
    let hops = 1 + k % 10;
    let path = (0..hops).map(|h| 64512 + (k.wrapping_mul(7) + h * 13) % 1000);
    let communities = (0..1 + k % 3)
        .map(|c| Community::new(65000, (k % 5000) as u16 + c as u16))
        .collect();
    vec![
        PathAttribute::Origin(Origin(k as u8 % 3)),
        PathAttribute::AsPath(AsPath::from_sequence(path)),
        PathAttribute::NextHop(Ipv4Addr::new(
            10,
            (k >> 16) as u8 + 1,
            (k >> 8) as u8,
            k as u8,
        )),
        PathAttribute::MultiExitDisc(k % 100),
        PathAttribute::LocalPref(100 + k % 3),
        PathAttribute::Communities(communities),
    ]
}

/// The announcements (one UPDATE per attribute set, ~20 prefixes each) and withdrawals.
fn messages(sets: u32) -> (Vec<Bytes>, Vec<Bytes>) {
    let c = ctx();
    let mut ann = Vec::new();
    for k in 0..sets {
        let nlri = (k..PREFIXES)
            .step_by(sets as usize)
            .map(|i| Nlri::new(prefix(i)))
            .collect();
        let u = Update {
            withdrawn: vec![],
            attributes: attrs(k),
            nlri,
        };
        let mut b = BytesMut::new();
        u.encode(&c, &mut b).expect("fits");
        ann.push(b.freeze());
    }
    let mut wd = Vec::new();
    let all: Vec<Nlri> = (0..PREFIXES).map(|i| Nlri::new(prefix(i))).collect();
    for chunk in all.chunks(1000) {
        let u = Update {
            withdrawn: chunk.to_vec(),
            attributes: vec![],
            nlri: vec![],
        };
        let mut b = BytesMut::new();
        u.encode(&c, &mut b).expect("fits");
        wd.push(b.freeze());
    }
    (ann, wd)
}

fn peer_up(rib: &mut Rib, n: u32, cluster: Option<Ipv4Addr>) -> PeerId {
    let addr = Ipv4Addr::from((10 << 24) + n);
    let mut cfg = PeerConfig::new(IpAddr::V4(addr), LOCAL_AS);
    cfg.rr_client = true;
    cfg.cluster_id = cluster;
    let id = rib.add_peer(cfg);
    rib.peer_up(
        id,
        Session {
            ctx: ctx(),
            router_id: Ipv4Addr::from((172 << 24) + n),
            local: LocalAddrs::from(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        },
    );
    id
}

/// Drains every group round-robin in slices, as writers with room would; returns
/// (bytes encoded, bytes delivered over all members, messages buffers).
fn drain(rib: &mut Rib, members: &[PeerId]) -> (usize, usize, usize) {
    let (mut encoded, mut delivered, mut chunks) = (0, 0, 0);
    loop {
        let groups = rib.pending_groups();
        if groups.is_empty() {
            return (encoded, delivered, chunks);
        }
        for g in groups {
            let in_group = rib.group_members(g);
            for o in rib.drain_group(g, 65_536) {
                encoded += o.bytes.len();
                chunks += 1;
                for m in &in_group {
                    if members.contains(m) && o.audience.includes(*m) {
                        // A writer would take a clone of the shared buffer.
                        let b = o.bytes.clone();
                        delivered += b.len();
                    }
                }
            }
        }
    }
}

fn run(clients: u32, groups: u32, sets: u32) {
    let (ann, wd) = messages(sets);
    let base_kb = vm_rss_kb();
    let mut rib = Rib::new(RibConfig::new(LOCAL_AS, Ipv4Addr::new(172, 0, 0, 1)));
    let src = peer_up(&mut rib, 1, None);
    let mut members = Vec::new();
    for i in 0..clients {
        let g = i % groups;
        let cluster = (g > 0).then(|| Ipv4Addr::new(172, 31, 0, g as u8));
        members.push(peer_up(&mut rib, 100 + i, cluster));
    }
    let c = ctx();
    drain(&mut rib, &members);

    let t0 = Instant::now();
    for m in &ann {
        let view = UpdateView::parse(&m[19..], &c);
        let _ = rib.apply_update(src, &view);
    }
    let t_apply = t0.elapsed();
    let (enc, del, chunks) = drain(&mut rib, &members);
    let t_out = t0.elapsed();
    let st = rib.stats();
    let hwm_kb = vm_hwm_kb();

    let t1 = Instant::now();
    for m in &wd {
        let view = UpdateView::parse(&m[19..], &c);
        let _ = rib.apply_update(src, &view);
    }
    let (wenc, _, _) = drain(&mut rib, &members);
    let t_wd = t1.elapsed();
    let end = rib.stats();
    assert_eq!(
        (
            end.prefixes,
            end.attr_sets,
            end.out_attr_sets,
            end.adj_out_paths
        ),
        (0, 0, 0, 0)
    );

    println!(
        "{clients:>4} clients {groups:>2} groups | apply {:>6.0} ms | last byte {:>6.0} ms | \
         withdraw all {:>5.0} ms | encoded {:>5.1} MB/{:>4} bufs, delivered {:>7.1} MB | \
         sets {} out-sets {} | peak {:>5.0} MB (RIB {:>5.0} MB, {:>3.0} B/route) | wd {:.1} MB",
        t_apply.as_secs_f64() * 1e3,
        t_out.as_secs_f64() * 1e3,
        t_wd.as_secs_f64() * 1e3,
        enc as f64 / 1e6,
        chunks,
        del as f64 / 1e6,
        st.attr_sets,
        st.out_attr_sets,
        hwm_kb as f64 / 1024.0,
        hwm_kb.saturating_sub(base_kb) as f64 / 1024.0,
        (hwm_kb.saturating_sub(base_kb) * 1024) as f64 / f64::from(PREFIXES),
        wenc as f64 / 1e6,
    );
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    match args[..] {
        [clients, groups] => return run(clients, groups, SETS),
        [clients, groups, sets] => return run(clients, groups, sets.clamp(1, PREFIXES)),
        _ => {}
    }
    println!(
        "1M IPv4 prefixes, 50k attribute sets, from one client; times from first UPDATE parsed"
    );
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    for (c, g) in [(1, 1), (10, 1), (100, 1), (10, 10), (100, 10)] {
        let status = Command::new(&exe)
            .arg(c.to_string())
            .arg(g.to_string())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            println!("case {c} clients / {g} groups failed");
        }
    }
}
