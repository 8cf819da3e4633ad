//! End-to-end robustness: every row of `docs/robustness.md` sent by a scripted raw peer to a
//! RUNNING speaker over a live session, the outcome checked on the wire (what the attacker
//! gets back) and at a second, observing client (what the speaker announces and withdraws).
//!
//! Each test starts one speaker in-process on its own loopback /24 (127.0.N.0: the speaker
//! at .1, the observer, an iBGP route-reflector client, at .2, peers from .3 up), so the
//! tests can run in parallel. A row that resets a session uses a peer of its own: after an
//! error the speaker holds the peer down (idle hold, damped), so one address is good for
//! one reset. Rows that keep the session up share one attacker session.
//!
//! Every row is named in its failure message; a test reports all failing rows at once.
//! Next hops are in 192.0.2.0/24 (attribute bytes only: no traffic goes anywhere), prefixes
//! in 198.51.100.0/24 (P, the prefix a row attacks), 203.0.113.0/24 (Q, announced after a
//! row to show the session still works) and 2001:db8::/32. Every wait is bounded.

#[allow(dead_code)] // Shared with the other end-to-end tests.
mod rawpeer;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rawpeer::{
    KEEPALIVE, NOTIFICATION, Observer, RawPeer, Route, UPDATE, V4, V6, WAIT, attr, caps,
    describe_notification, hex, keepalive, message, nlri, notification_parts, open, show, update,
    value, with_length,
};
use rr_daemon::config::Config;
use rr_daemon::speaker::Speaker;

// ---------------------------------------------------------------------------------------
// The table's base messages (robustness.md), as parts.
// ---------------------------------------------------------------------------------------

/// Peer AS 65001 = FDE9; our AS 65000 = FDE8.
const PEER_AS: u32 = 65001;
const OUR_AS: u32 = 65000;
const ORIGIN: &str = "40 01 01 00";
const AS_PATH: &str = "40 02 06 02 01 0000FDE9";
/// NEXT_HOP 192.0.2.1, the base UPDATE's.
const NEXT_HOP: &str = "40 03 04 C0000201";
/// NEXT_HOP 192.0.2.99: a first announcement that a later (processed) one replaces.
const NEXT_HOP_99: &str = "40 03 04 C0000263";
/// iBGP from a client: empty AS_PATH and a LOCAL_PREF.
const IBGP_AS_PATH: &str = "40 02 00";
const LOCAL_PREF_100: &str = "40 05 04 00000064";
const ATTACKER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// An UPDATE announcing `p` with the attributes `parts` (hex), lengths computed.
fn upd(parts: &[&str], p: IpNet) -> Vec<u8> {
    update(&[], &hex(&parts.concat()), &nlri(p))
}

/// UPD6: ORIGIN + AS_PATH + MP_REACH_NLRI (IPv6, next hop 2001:db8::1) for `p`.
fn upd6(p: IpNet) -> Vec<u8> {
    let mut attrs = hex(&[ORIGIN, AS_PATH].concat());
    attrs.extend_from_slice(&mp_reach_v6(&nlri(p)));
    update(&[], &attrs, &[])
}

/// MP_REACH_NLRI for IPv6 unicast, next hop 2001:db8::1, these NLRI.
fn mp_reach_v6(nlri: &[u8]) -> Vec<u8> {
    let mut v = hex("0002 01 10 20010DB8000000000000000000000001 00");
    v.extend_from_slice(nlri);
    let mut a = vec![0x80, 0x0e, u8::try_from(v.len()).unwrap()];
    a.extend_from_slice(&v);
    a
}

/// The base OPEN for AS `asn` with the given families, hold 90.
fn open_for(asn: u32, id: Ipv4Addr, families: &[(u16, u8)]) -> Vec<u8> {
    let my_as = u16::try_from(asn).unwrap_or(23456);
    open(my_as, 90, id, &caps(asn, families))
}

fn ebgp_open() -> Vec<u8> {
    open_for(PEER_AS, ATTACKER_ID, &[V4, V6])
}

/// The OPEN body fields before the optional parameters, with this Opt Parm Len.
fn open_body(my_as: u16, hold: u16, id: &str, opt_len: u8) -> String {
    format!("04 {my_as:04X} {hold:04X} {id} {opt_len:02X}")
}

fn p4(n: u8) -> IpNet {
    format!("198.51.100.{n}/32").parse().unwrap()
}

fn q4(n: u8) -> IpNet {
    format!("203.0.113.{n}/32").parse().unwrap()
}

fn p6(n: u16) -> IpNet {
    format!("2001:db8:{n:x}::/48").parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// The speaker.
// ---------------------------------------------------------------------------------------

struct Daemon {
    speaker: Speaker,
    addr: SocketAddr,
    net: u8,
    core: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Starts a speaker at 127.0.`net`.1 with the observer (127.0.`net`.2, iBGP client) and
    /// the peers in `peers` (TOML).
    async fn start(net: u8, peers: &str) -> Self {
        let ip = format!("127.0.{net}.1");
        let port = {
            let l = std::net::TcpListener::bind((ip.as_str(), 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let toml = format!(
            r#"
[speaker]
asn = {OUR_AS}
router_id = "{ip}"
cluster_id = "10.255.{net}.1"
listen = ["{ip}:{port}"]

[api]
enabled = false

[[peer]]
address = "127.0.{net}.2"
asn = {OUR_AS}
rr_client = true
passive = true
{peers}"#
        );
        // Logs with RUST_LOG=rr_daemon=debug (and --nocapture).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let config = Config::parse(&toml, "robustness.toml").unwrap_or_else(|e| panic!("{e}"));
        let (speaker, core) = Speaker::start(config).await.unwrap();
        Self {
            speaker,
            addr: format!("{ip}:{port}").parse().unwrap(),
            net,
            core,
        }
    }

    fn ip(&self, host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, self.net, host))
    }

    fn router_id(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.net, 1)
    }

    async fn observer(&self) -> Observer {
        let open = open_for(OUR_AS, Ipv4Addr::new(192, 0, 2, 200), &[V4, V6]);
        Observer::start(self.ip(2), self.addr, &open)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn connect(&self, name: &str, host: u8) -> Result<RawPeer, String> {
        RawPeer::connect(name, self.ip(host), self.addr)
            .await
            .map_err(|e| format!("{name}: connect: {e}"))
    }

    /// After all rows: the speaker still runs and the observer session never dropped, and
    /// nothing malformed reached the observer.
    async fn finish(&self, obs: &Observer) -> Result<(), String> {
        if self.core.is_finished() {
            return Err("the speaker's core task ended".into());
        }
        let peers = tokio::time::timeout(WAIT, self.speaker.peers())
            .await
            .map_err(|_| "the speaker does not answer".to_string())?
            .map_err(|e| e.to_string())?;
        let me = peers
            .iter()
            .find(|p| p.address == self.ip(2))
            .ok_or("observer not in the peer table")?;
        if me.state != "Established" {
            return Err(format!("observer session is {}", me.state));
        }
        let s = obs.seen.lock().unwrap();
        if let Some(d) = &s.down {
            return Err(format!("observer session dropped: {d}"));
        }
        if !s.malformed.is_empty() {
            return Err(format!(
                "malformed UPDATEs reached the observer: {:?}",
                s.malformed
            ));
        }
        Ok(())
    }
}

/// `[[peer]]` in AS 65001 (eBGP, import all) at 127.0.`net`.`host`, plus `extra` keys.
fn ebgp_peer(net: u8, host: u8, extra: &str) -> String {
    format!(
        "\n[[peer]]\naddress = \"127.0.{net}.{host}\"\nasn = {PEER_AS}\npassive = true\nimport = \"all\"\n{extra}\n"
    )
}

/// `[[peer]]` in our AS, a route-reflector client, at 127.0.`net`.`host`.
fn ibgp_client(net: u8, host: u8) -> String {
    format!(
        "\n[[peer]]\naddress = \"127.0.{net}.{host}\"\nasn = {OUR_AS}\nrr_client = true\npassive = true\n"
    )
}

/// Rows and their outcomes; `check` fails the test with every failing row.
#[derive(Default)]
struct Report(Vec<(String, Result<(), String>)>);

impl Report {
    fn record(&mut self, row: &str, r: Result<(), String>) {
        self.0.push((row.to_owned(), r));
    }

    fn check(self) {
        let failed: Vec<String> = self
            .0
            .iter()
            .filter_map(|(row, r)| r.as_ref().err().map(|e| format!("  {row}: {e}")))
            .collect();
        let rows: Vec<&str> = self.0.iter().map(|(r, _)| r.as_str()).collect();
        assert!(
            failed.is_empty(),
            "{} of {} rows failed:\n{}",
            failed.len(),
            rows.len(),
            failed.join("\n")
        );
        eprintln!("rows passed: {}", rows.join(" "));
    }
}

// ---------------------------------------------------------------------------------------
// Expectations.
// ---------------------------------------------------------------------------------------

/// The NOTIFICATION a reset row must bring.
struct Want {
    code: u8,
    subcode: u8,
    /// `None`: the data is not checked.
    data: Option<Vec<u8>>,
}

fn want(code: u8, subcode: u8) -> Want {
    Want {
        code,
        subcode,
        data: None,
    }
}

fn want_data(code: u8, subcode: u8, data: &[u8]) -> Want {
    Want {
        code,
        subcode,
        data: Some(data.to_vec()),
    }
}

fn check_notification(got: &[u8], want: &Want) -> Result<(), String> {
    let (c, s, d) = notification_parts(got);
    let data_ok = want.data.as_ref().is_none_or(|w| *w == d);
    if c == want.code && s == want.subcode && data_ok {
        return Ok(());
    }
    let wd = want
        .data
        .as_ref()
        .map_or("(not checked)".to_string(), |w| format!("[{}]", show(w)));
    Err(format!(
        "expected NOTIFICATION {}/{} data {wd}, got {}",
        want.code,
        want.subcode,
        describe_notification(got)
    ))
}

/// Reset: a fresh peer at `host` establishes with `open`, announces P (`announce`), sends
/// `bad`; it must get `want`, the session must close, and P must be withdrawn at the
/// observer.
#[allow(clippy::too_many_arguments)]
async fn reset_row(
    d: &Daemon,
    obs: &Observer,
    row: &str,
    host: u8,
    open: &[u8],
    p: IpNet,
    announce: &[u8],
    bad: &[u8],
    want: &Want,
) -> Result<(), String> {
    let mut a = d.connect(row, host).await?;
    a.establish(open).await?;
    a.send(announce).await?;
    obs.present(p).await.map_err(|e| format!("setup: {e}"))?;
    a.send(bad).await?;
    let n = a.expect_notification(WAIT).await?;
    check_notification(&n, want)?;
    a.expect_closed(true)
        .await
        .map_err(|e| format!("after the NOTIFICATION: {e}"))?;
    obs.absent(p)
        .await
        .map_err(|e| format!("P after the reset: {e}"))
}

/// A refused OPEN: a fresh peer at `host` sends `open` (and nothing else); it must get
/// `want` and the connection must close.
async fn open_refused(
    d: &Daemon,
    row: &str,
    host: u8,
    open: &[u8],
    want: &Want,
) -> Result<(), String> {
    let mut a = d.connect(row, host).await?;
    a.send(open).await?;
    let n = a.expect_notification(WAIT).await?;
    check_notification(&n, want)?;
    a.expect_closed(true).await
}

/// An accepted OPEN: a fresh peer at `host` establishes with `open`, and a route it then
/// announces reaches the observer.
async fn open_accepted(
    d: &Daemon,
    obs: &Observer,
    row: &str,
    host: u8,
    open: &[u8],
    p: IpNet,
) -> Result<(), String> {
    let mut a = d.connect(row, host).await?;
    a.establish(open).await?;
    a.send(&upd(&[ORIGIN, AS_PATH, NEXT_HOP], p)).await?;
    obs.present(p).await?;
    a.check_alive()
}

/// N1: a peer at `host` establishes, announces P, then sends the NOTIFICATION `bad`: the
/// speaker closes without answering with a NOTIFICATION (RFC 4271 §6.4) and withdraws P.
async fn n1_row(
    d: &Daemon,
    obs: &Observer,
    row: &str,
    host: u8,
    bad: &[u8],
    p: IpNet,
) -> Result<(), String> {
    let mut a = d.connect(row, host).await?;
    a.establish(&ebgp_open()).await?;
    a.send(&upd(&[ORIGIN, AS_PATH, NEXT_HOP], p)).await?;
    obs.present(p).await?;
    a.send(bad).await?;
    a.expect_closed(false).await?;
    obs.absent(p).await
}

// ---------------------------------------------------------------------------------------
// H1-H4, N1, N4: headers, NOTIFICATIONs, messages out of state.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_notification_and_fsm_rows() {
    const NET: u8 = 21;
    let rows: [(&str, u8); 11] = [
        ("H1", 10),
        ("H2 length 18", 11),
        ("H2 length 4097", 12),
        ("H3 KEEPALIVE length 20", 13),
        ("H3 OPEN length 28", 14),
        ("H3 UPDATE length 22", 15),
        ("H4 type 00", 16),
        ("H4 type FF", 17),
        ("N1 unknown code 0A", 19),
        ("N4 UPDATE in OpenSent", 20),
        ("N4 UPDATE in OpenConfirm", 21),
    ];
    // Host 22: a peer for the N4 barrier.
    let peers: String = rows
        .iter()
        .map(|(_, h)| *h)
        .chain([22])
        .map(|h| ebgp_peer(NET, h, ""))
        .collect();
    let d = Daemon::start(NET, &peers).await;
    let obs = d.observer().await;
    let mut report = Report::default();
    let open = ebgp_open();
    let header = |len: u16, ty: u8| with_length(ty, len, &[]);

    let mut marker = keepalive();
    marker[15] = 0x00; // FF×15 00
    let header_rows: [(&str, Vec<u8>, Want); 8] = [
        ("H1", marker, want(1, 1)),
        // Only the 19 header bytes go out: the error is in the header, and bytes the
        // speaker never reads would turn its close into a reset that eats the NOTIFICATION.
        (
            "H2 length 18",
            header(18, UPDATE),
            want_data(1, 2, &hex("0012")),
        ),
        (
            "H2 length 4097",
            header(4097, UPDATE),
            want_data(1, 2, &hex("1001")),
        ),
        (
            "H3 KEEPALIVE length 20",
            with_length(KEEPALIVE, 20, &[0]),
            want_data(1, 2, &hex("0014")),
        ),
        (
            "H3 OPEN length 28",
            with_length(1, 28, &hex("04 FDE9 005A C0000201 00")[..9]),
            want_data(1, 2, &hex("001C")),
        ),
        (
            "H3 UPDATE length 22",
            with_length(UPDATE, 22, &hex("000000")),
            want_data(1, 2, &hex("0016")),
        ),
        ("H4 type 00", header(19, 0x00), want_data(1, 3, &hex("00"))),
        ("H4 type FF", header(19, 0xff), want_data(1, 3, &hex("FF"))),
    ];
    for (i, (row, bad, w)) in header_rows.iter().enumerate() {
        let host = rows.iter().find(|(r, _)| r == row).unwrap().1;
        let p = p4(i as u8 + 1);
        let announce = upd(&[ORIGIN, AS_PATH, NEXT_HOP], p);
        let r = reset_row(&d, &obs, row, host, &open, p, &announce, bad, w).await;
        report.record(row, r);
    }

    // N1 (unknown code; the length-20 form is its own test, see below).
    let r = n1_row(
        &d,
        &obs,
        "N1 unknown code 0A",
        19,
        &message(NOTIFICATION, &[0x0a, 0x00]),
        p4(21),
    )
    .await;
    report.record("N1 unknown code 0A", r);

    // N4: an UPDATE before the session is up: 5/1 in OpenSent, 5/2 in OpenConfirm, and
    // the UPDATE is not processed.
    let never = p4(30);
    let r = async {
        let mut a = d.connect("N4", 20).await?;
        a.expect_open().await?; // the speaker is in OpenSent
        a.send(&upd(&[ORIGIN, AS_PATH, NEXT_HOP], never)).await?;
        check_notification(&a.expect_notification(WAIT).await?, &want(5, 1))?;
        a.expect_closed(true).await
    }
    .await;
    report.record("N4 UPDATE in OpenSent", r);
    let r = async {
        let mut a = d.connect("N4", 21).await?;
        a.expect_open().await?;
        // Our OPEN takes the speaker to OpenConfirm; the UPDATE comes before our KEEPALIVE.
        let mut both = open.clone();
        both.extend_from_slice(&upd(&[ORIGIN, AS_PATH, NEXT_HOP], never));
        a.send(&both).await?;
        check_notification(&a.expect_notification(WAIT).await?, &want(5, 2))?;
        a.expect_closed(true).await
    }
    .await;
    report.record("N4 UPDATE in OpenConfirm", r);
    // Barrier: a later route from another peer arrives, the N4 prefix never did.
    let r = async {
        let mut b = d.connect("barrier", 22).await?;
        b.establish(&open).await?;
        b.send(&upd(&[ORIGIN, AS_PATH, NEXT_HOP], q4(30))).await?;
        obs.present(q4(30)).await?;
        match obs.times_announced(never) {
            0 => Ok(()),
            n => Err(format!(
                "the UPDATE sent before Established was processed: {never} announced {n}×"
            )),
        }
    }
    .await;
    report.record("N4 not processed", r);

    report.record("after all rows", d.finish(&obs).await);
    report.check();
}

/// N1, length 20: `FF×16 0014 03 06` (a NOTIFICATION with a code and no subcode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n1_notification_of_length_20() {
    const NET: u8 = 26;
    let d = Daemon::start(NET, &ebgp_peer(NET, 10, "")).await;
    let obs = d.observer().await;
    let mut report = Report::default();
    let r = n1_row(
        &d,
        &obs,
        "N1 length 20",
        10,
        &with_length(NOTIFICATION, 20, &[6]),
        p4(20),
    )
    .await;
    report.record("N1 length 20", r);
    report.record("after all rows", d.finish(&obs).await);
    report.check();
}

// ---------------------------------------------------------------------------------------
// O1-O9: OPEN.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_rows() {
    const NET: u8 = 22;
    // Hosts 10..=30; 25 is iBGP (O3 "equal to our own").
    let mut peers = String::new();
    for h in 10..=30 {
        peers += &if h == 25 {
            format!("\n[[peer]]\naddress = \"127.0.{NET}.{h}\"\nasn = {OUR_AS}\npassive = true\n")
        } else {
            ebgp_peer(NET, h, "")
        };
    }
    let d = Daemon::start(NET, &peers).await;
    let obs = d.observer().await;
    let mut report = Report::default();
    let id = "C0000201";
    let base_params = "02 06 01 04 0001 00 01 | 02 06 41 04 0000FDE9";
    let open_hex = |fields: String, params: &str| message(1, &hex(&format!("{fields} {params}")));
    let base_with =
        |my_as: u16, hold: u16, id: &str| open_hex(open_body(my_as, hold, id, 0x10), base_params);
    let our_id = format!("{:08X}", u32::from(d.router_id()));

    let refused: Vec<(&str, u8, Vec<u8>, Want)> = vec![
        (
            "O1 version 5",
            10,
            {
                let mut m = base_with(0xFDE9, 90, id);
                m[19] = 5;
                m
            },
            want_data(2, 1, &hex("0004")),
        ),
        (
            "O1 version 3",
            11,
            {
                let mut m = base_with(0xFDE9, 90, id);
                m[19] = 3;
                m
            },
            want_data(2, 1, &hex("0004")),
        ),
        ("O2 hold 1", 12, base_with(0xFDE9, 1, id), want(2, 6)),
        ("O2 hold 2", 13, base_with(0xFDE9, 2, id), want(2, 6)),
        (
            "O3 BGP-ID 0",
            14,
            base_with(0xFDE9, 90, "00000000"),
            want(2, 3),
        ),
        (
            "O3 iBGP ID equal to ours",
            25,
            open_hex(
                open_body(0xFDE8, 90, &our_id, 0x10),
                "02 06 01 04 0001 00 01 | 02 06 41 04 0000FDE8",
            ),
            want(2, 3),
        ),
        (
            "O4 My AS FDEA",
            15,
            open_hex(
                open_body(0xFDEA, 90, id, 0x10),
                "02 06 01 04 0001 00 01 | 02 06 41 04 0000FDEA",
            ),
            want(2, 2),
        ),
        (
            "O4 AS4 capability != My AS",
            16,
            open_hex(
                open_body(0xFDE9, 90, id, 0x10),
                "02 06 01 04 0001 00 01 | 02 06 41 04 0000FDEA",
            ),
            want(2, 2),
        ),
        (
            "O5 parameter type 3",
            17,
            open_hex(
                open_body(0xFDE9, 90, id, 0x14),
                &format!("{base_params} 03 02 0000"),
            ),
            want(2, 4),
        ),
        (
            "O6 Opt Parm Len 16, 8 bytes",
            18,
            open_hex(open_body(0xFDE9, 90, id, 0x10), "02 06 01 04 0001 00 01"),
            want(2, 0),
        ),
        (
            "O6 ends on a parameter length",
            19,
            open_hex(
                open_body(0xFDE9, 90, id, 0x0A),
                "02 06 01 04 0001 00 01 | 02 06",
            ),
            want(2, 0),
        ),
        (
            "O7 capability overflows parameter",
            20,
            open_hex(
                open_body(0xFDE9, 90, id, 0x10),
                "02 06 01 04 0001 00 01 | 02 06 41 08 0000FDE9",
            ),
            want(2, 0),
        ),
        (
            "O8 extended inner length > extended length",
            21,
            open_hex(
                open_body(0xFDE9, 90, id, 0xFF),
                "FF 0010 | 02 0020 01 04 0001 00 01 41 04 0000FDE9 00",
            ),
            want(2, 0),
        ),
    ];
    for (row, host, bad, w) in &refused {
        report.record(row, open_refused(&d, row, *host, bad, w).await);
    }

    let accepted: Vec<(&str, u8, Vec<u8>)> = vec![
        ("O2 hold 0", 22, base_with(0xFDE9, 0, id)),
        (
            "O8 valid extended parameters",
            23,
            open_hex(
                open_body(0xFDE9, 90, id, 0xFF),
                "FF 0012 | 02 0006 01 04 0001 00 01 | 02 0006 41 04 0000FDE9",
            ),
        ),
        (
            "O9 unknown capability",
            24,
            open_hex(
                open_body(0xFDE9, 90, id, 0x16),
                &format!("{base_params} 02 04 EE 02 0000"),
            ),
        ),
    ];
    for (i, (row, host, o)) in accepted.iter().enumerate() {
        let r = open_accepted(&d, &obs, row, *host, o, p4(40 + i as u8)).await;
        report.record(row, r);
    }

    report.record("after all rows", d.finish(&obs).await);
    report.check();
}

// ---------------------------------------------------------------------------------------
// UPDATE rows that reset the session: U1, U2, U4, U7, U8 (not an EoR), A4, A25, A29, A30.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_reset_rows() {
    const NET: u8 = 23;
    let attrs = [ORIGIN, AS_PATH, NEXT_HOP].concat();
    let body = |s: String| message(UPDATE, &hex(&s));
    // Each row: name, P (v4 or v6), malformed message for P, expected NOTIFICATION.
    let v4 = |n: u8| p4(50 + n);
    let v6 = |n: u16| p6(0x50 + n);
    let n_hex = |p: IpNet| show(&nlri(p));
    let rows: Vec<(&str, IpNet, Vec<u8>, Want)> = vec![
        (
            "U1 Withdrawn Routes Length FFFF",
            v4(1),
            body(format!("FFFF 0014 {attrs} {}", n_hex(v4(1)))),
            want(3, 1),
        ),
        (
            "U2 Total Path Attribute Length 0100",
            v4(2),
            body(format!("0000 0100 {attrs} {}", n_hex(v4(2)))),
            want(3, 1),
        ),
        (
            "U4 ORIGIN length past TPAL, no NLRI",
            v4(3),
            body(format!("0000 0014 40 01 20 00 {AS_PATH} {NEXT_HOP}")),
            want(3, 1),
        ),
        (
            "U7 NLRI /33",
            v4(4),
            body(format!("0000 0014 {attrs} 21 C6336400 00")),
            want(3, 10),
        ),
        (
            "U7 NLRI truncated",
            v4(5),
            body(format!("0000 0014 {attrs} 18 C633")),
            want(3, 10),
        ),
        (
            "U7 withdrawn /40",
            v4(6),
            body("0006 28 C6336400 00 0000".into()),
            want(3, 10),
        ),
        // Attributes, no NLRI, one treat-as-withdraw error (ORIGIN 3): nothing to withdraw,
        // so a reset (RFC 7606 §5.2), with the subcode and data of that error (RFC 4271 §6.3).
        (
            "U8 attributes + no NLRI + malformed ORIGIN",
            v4(7),
            update(&[], &hex(&format!("40 01 01 03 {AS_PATH} {NEXT_HOP}")), &[]),
            want_data(3, 6, &hex("40 01 01 03")),
        ),
        (
            "A4 two MP_REACH_NLRI",
            v6(1),
            {
                let mut a = hex(&[ORIGIN, AS_PATH].concat());
                a.extend_from_slice(&mp_reach_v6(&nlri(v6(1))));
                a.extend_from_slice(&mp_reach_v6(&nlri(v6(1))));
                update(&[], &a, &[])
            },
            want(3, 1),
        ),
        (
            "A25 unknown well-known attribute",
            v4(8),
            upd(&[ORIGIN, AS_PATH, NEXT_HOP, "40 F0 01 00"], v4(8)),
            want_data(3, 2, &hex("40 F0 01 00")),
        ),
        (
            "A29 MP_REACH next hop length 15",
            v6(2),
            {
                let mp = format!(
                    "80 0E 19 0002 01 0F 20010DB80000000000000000000000 00 {}",
                    n_hex(v6(2))
                );
                update(&[], &hex(&format!("{ORIGIN} {AS_PATH} {mp}")), &[])
            },
            want(3, 9),
        ),
        (
            "A30 MP_REACH too short",
            v6(3),
            update(
                &[],
                &hex(&format!("{ORIGIN} {AS_PATH} 80 0E 03 0002 01")),
                &[],
            ),
            want(3, 9),
        ),
    ];
    let peers: String = (0..rows.len())
        .map(|i| ebgp_peer(NET, 10 + i as u8, ""))
        .collect();
    let d = Daemon::start(NET, &peers).await;
    let obs = d.observer().await;
    let mut report = Report::default();
    let open = ebgp_open();
    for (i, (row, p, bad, w)) in rows.iter().enumerate() {
        let announce = match p {
            IpNet::V4(_) => upd(&[ORIGIN, AS_PATH, NEXT_HOP], *p),
            IpNet::V6(_) => upd6(*p),
        };
        // A29/A30: RFC 4760 §7 allows AFI/SAFI disable instead of the reset; this
        // speaker does not implement it and resets, which is what is checked.
        let r = reset_row(&d, &obs, row, 10 + i as u8, &open, *p, &announce, bad, w).await;
        report.record(row, r);
    }
    report.record("after all rows", d.finish(&obs).await);
    report.check();
}

// ---------------------------------------------------------------------------------------
// Rows that keep the session up: treat-as-withdraw, attribute discard, accepted.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    /// eBGP, AS 65001, IPv4 and IPv6.
    Ebgp,
    /// iBGP route-reflector client.
    Ibgp,
    /// eBGP, IPv4 unicast only (configured and offered).
    V4Only,
}

/// The live sessions of the keep-the-session-up rows.
struct Live {
    d: Daemon,
    obs: Observer,
    ebgp: RawPeer,
    ibgp: RawPeer,
    v4only: RawPeer,
    /// Next P/Q number.
    n: u8,
    report: Report,
}

/// A check of the route the observer holds after a processed row.
type RouteCheck = Box<dyn Fn(&Route) -> Result<(), String>>;

impl Live {
    fn peer(&mut self, who: Who) -> &mut RawPeer {
        match who {
            Who::Ebgp => &mut self.ebgp,
            Who::Ibgp => &mut self.ibgp,
            Who::V4Only => &mut self.v4only,
        }
    }

    fn next_prefixes(&mut self) -> (IpNet, IpNet) {
        self.n += 1;
        (p4(100 + self.n), q4(100 + self.n))
    }

    /// A valid announcement of `p` from `who` with this NEXT_HOP attribute.
    fn valid(who: Who, p: IpNet, next_hop: &str) -> Vec<u8> {
        match who {
            Who::Ibgp => upd(&[ORIGIN, IBGP_AS_PATH, next_hop, LOCAL_PREF_100], p),
            _ => upd(&[ORIGIN, AS_PATH, next_hop], p),
        }
    }

    /// The session still works: a KEEPALIVE and a fresh route Q reach the speaker, Q
    /// reaches the observer, and no NOTIFICATION came back.
    async fn still_up(&mut self, who: Who, q: IpNet) -> Result<(), String> {
        let a = self.peer(who);
        a.send(&keepalive()).await?;
        a.send(&Self::valid(who, q, NEXT_HOP)).await?;
        let seen = self.obs.present(q).await;
        let a = self.peer(who);
        a.check_alive()?;
        seen.map(drop)
            .map_err(|e| format!("session not working after the row: {e}"))
    }

    async fn record(&mut self, row: &str, r: Result<(), String>) {
        self.report.record(row, r);
    }

    /// Treat-as-withdraw: P announced (base message), then `bad(P)`: no NOTIFICATION, the
    /// session stays up, P is withdrawn at the observer and the bad announcement never
    /// reached it.
    async fn taw(&mut self, row: &str, who: Who, bad: impl FnOnce(IpNet) -> Vec<u8>) {
        let (p, q) = self.next_prefixes();
        let r = async {
            self.peer(who)
                .check_alive()
                .map_err(|e| format!("before the row: {e}"))?;
            self.peer(who).send(&Self::valid(who, p, NEXT_HOP)).await?;
            self.obs
                .present(p)
                .await
                .map_err(|e| format!("setup: {e}"))?;
            self.peer(who).send(&bad(p)).await?;
            let gone = self.obs.absent(p).await;
            self.still_up(who, q).await?;
            gone.map_err(|e| format!("P not treated as withdrawn: {e}"))?;
            match self.obs.times_announced(p) {
                1 => Ok(()),
                n => Err(format!(
                    "the malformed announcement reached the observer ({p} announced {n}×)"
                )),
            }
        }
        .await;
        self.record(row, r).await;
    }

    /// Attribute discard (or plain acceptance): P announced with NEXT_HOP 192.0.2.99, then
    /// `bad(P)` (which carries the base NEXT_HOP 192.0.2.1): the session stays up, P is
    /// replaced at the observer (so the update was processed), and `check` holds for it.
    async fn processed(
        &mut self,
        row: &str,
        who: Who,
        first: &[&str],
        bad: impl FnOnce(IpNet) -> Vec<u8>,
        check: RouteCheck,
    ) {
        let (p, q) = self.next_prefixes();
        let r = async {
            self.peer(who)
                .check_alive()
                .map_err(|e| format!("before the row: {e}"))?;
            self.peer(who).send(&upd(first, p)).await?;
            self.obs
                .present(p)
                .await
                .map_err(|e| format!("setup: {e}"))?;
            self.peer(who).send(&bad(p)).await?;
            let replaced = self
                .obs
                .wait(&format!("{p} with NEXT_HOP 192.0.2.1"), |s| {
                    s.routes
                        .get(&p)
                        .and_then(|r| attr(r, 3))
                        .is_some_and(|a| value(a) == [192, 0, 2, 1])
                })
                .await;
            self.still_up(who, q).await?;
            if let Err(e) = replaced {
                let rib = self.d.speaker.route(p).await.map_err(|e| e.to_string())?;
                return Err(format!(
                    "the update was not applied: {e}; the speaker's RIB has {rib:?}"
                ));
            }
            let route = self.obs.route(p).ok_or("P gone at the observer")?;
            check(&route).map_err(|e| {
                let attrs: Vec<String> = route.iter().map(|a| show(a)).collect();
                format!("{e}; observer got [{}]", attrs.join(" | "))
            })
        }
        .await;
        self.record(row, r).await;
    }

    /// Discard from eBGP: first announcement base attributes with NEXT_HOP 192.0.2.99.
    async fn discard(&mut self, row: &str, bad: impl FnOnce(IpNet) -> Vec<u8>, check: RouteCheck) {
        self.processed(row, Who::Ebgp, &[ORIGIN, AS_PATH, NEXT_HOP_99], bad, check)
            .await;
    }

    /// Never installed: `bad` (about `p`, a prefix not announced before) is ignored, the
    /// session stays up, and `p` is neither at the observer nor in the speaker's RIB.
    async fn ignored(&mut self, row: &str, who: Who, p: IpNet, bad: Vec<u8>) {
        let (_, q) = self.next_prefixes();
        let r = async {
            self.peer(who)
                .check_alive()
                .map_err(|e| format!("before the row: {e}"))?;
            self.peer(who).send(&bad).await?;
            self.still_up(who, q).await?;
            if self.obs.times_announced(p) != 0 {
                return Err(format!("{p} reached the observer"));
            }
            match self.d.speaker.route(p).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(e) => Err(format!("{p} is in the RIB: {e:?}")),
            }
        }
        .await;
        self.record(row, r).await;
    }
}

fn absent_attr(ty: u8, name: &'static str) -> RouteCheck {
    Box::new(move |r: &Route| match attr(r, ty) {
        None => Ok(()),
        Some(a) => Err(format!("{name} passed on: [{}]", show(a))),
    })
}

fn attr_value(ty: u8, name: &'static str, want: Vec<u8>) -> RouteCheck {
    Box::new(move |r: &Route| match attr(r, ty) {
        Some(a) if value(a) == want.as_slice() => Ok(()),
        Some(a) => Err(format!(
            "{name} is [{}], expected value [{}]",
            show(a),
            show(&want)
        )),
        None => Err(format!("{name} missing")),
    })
}

/// The ASNs of an AS_PATH value (4-octet), with their segment types, flattened: the
/// speaker may re-pack segments.
fn flat_path(v: &[u8]) -> Vec<(u8, u32)> {
    let mut out = Vec::new();
    let mut rest = v;
    while rest.len() >= 2 {
        let (ty, n) = (rest[0], usize::from(rest[1]));
        let Some(asns) = rest.get(2..2 + 4 * n) else {
            break;
        };
        out.extend(
            asns.chunks_exact(4)
                .map(|c| (ty, u32::from_be_bytes([c[0], c[1], c[2], c[3]]))),
        );
        rest = &rest[2 + 4 * n..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_withdraw_discard_and_accept_rows() {
    const NET: u8 = 24;
    // The IPv4-only peer is also the route server (enforce_first_as off) of row A9.
    let peers = ebgp_peer(NET, 10, "")
        + &ibgp_client(NET, 11)
        + &ebgp_peer(
            NET,
            12,
            "families = [\"ipv4-unicast\"]\nenforce_first_as = false",
        );
    let d = Daemon::start(NET, &peers).await;
    let obs = d.observer().await;
    let mut ebgp = d.connect("ebgp attacker", 10).await.unwrap();
    ebgp.establish(&ebgp_open()).await.unwrap();
    let mut ibgp = d.connect("ibgp attacker", 11).await.unwrap();
    ibgp.establish(&open_for(OUR_AS, Ipv4Addr::new(192, 0, 2, 2), &[V4, V6]))
        .await
        .unwrap();
    let mut v4only = d.connect("v4-only attacker", 12).await.unwrap();
    v4only
        .establish(&open_for(PEER_AS, Ipv4Addr::new(192, 0, 2, 3), &[V4]))
        .await
        .unwrap();
    let router_id = format!("{:08X}", u32::from(d.router_id()));
    let mut s = Live {
        d,
        obs,
        ebgp,
        ibgp,
        v4only,
        n: 0,
        report: Report::default(),
    };
    let e = Who::Ebgp;
    let n_hex = |p: IpNet| show(&nlri(p));

    // --- Treat-as-withdraw, eBGP ---
    s.taw("U3 ORIGIN length past TPAL, NLRI present", e, |p| {
        message(
            UPDATE,
            &hex(&format!(
                "0000 0014 40 01 20 00 {AS_PATH} {NEXT_HOP} {}",
                n_hex(p)
            )),
        )
    })
    .await;
    s.taw("U5 2 trailing octets in TPAL", e, |p| {
        message(
            UPDATE,
            &hex(&format!(
                "0000 0016 {ORIGIN} {AS_PATH} {NEXT_HOP} 40 01 {}",
                n_hex(p)
            )),
        )
    })
    .await;
    s.taw("U6 TPAL 0 with NLRI", e, |p| {
        message(UPDATE, &hex(&format!("0000 0000 {}", n_hex(p))))
    })
    .await;
    s.taw("A1 ORIGIN 3", e, |p| {
        upd(&["40 01 01 03", AS_PATH, NEXT_HOP], p)
    })
    .await;
    s.taw("A1 ORIGIN length 2", e, |p| {
        upd(&["40 01 02 0000", AS_PATH, NEXT_HOP], p)
    })
    .await;
    s.taw("A2 ORIGIN flags 80", e, |p| {
        upd(&["80 01 01 00", AS_PATH, NEXT_HOP], p)
    })
    .await;
    s.taw("A2 ORIGIN flags 00", e, |p| {
        upd(&["00 01 01 00", AS_PATH, NEXT_HOP], p)
    })
    .await;
    s.taw("A5 ORIGIN missing", e, |p| upd(&[AS_PATH, NEXT_HOP], p))
        .await;
    s.taw("A5 AS_PATH missing", e, |p| upd(&[ORIGIN, NEXT_HOP], p))
        .await;
    s.taw("A5 NEXT_HOP missing", e, |p| upd(&[ORIGIN, AS_PATH], p))
        .await;
    s.taw("A6 AS_PATH overrun", e, |p| {
        upd(&[ORIGIN, "40 02 06 02 02 0000FDE9", NEXT_HOP], p)
    })
    .await;
    s.taw("A6 AS_PATH 1-byte underrun", e, |p| {
        upd(&[ORIGIN, "40 02 05 02 01 0000FD", NEXT_HOP], p)
    })
    .await;
    s.taw("A6 AS_PATH 1 trailing byte", e, |p| {
        upd(&[ORIGIN, "40 02 07 02 01 0000FDE9 00", NEXT_HOP], p)
    })
    .await;
    s.taw("A7 AS_PATH zero-length segment", e, |p| {
        upd(&[ORIGIN, "40 02 02 02 00", NEXT_HOP], p)
    })
    .await;
    s.taw("A8 AS_PATH segment type 5", e, |p| {
        upd(&[ORIGIN, "40 02 06 05 01 0000FDE9", NEXT_HOP], p)
    })
    .await;
    s.taw("A11 AS_SET", e, |p| {
        upd(
            &[ORIGIN, "40 02 0C 02 01 0000FDE9 01 01 0000FDEA", NEXT_HOP],
            p,
        )
    })
    .await;
    s.taw("A13 NEXT_HOP length 3", e, |p| {
        upd(&[ORIGIN, AS_PATH, "40 03 03 C00002"], p)
    })
    .await;
    let own = format!("40 03 04 {:08X}", u32::from(s.d.router_id()));
    for (row, nh) in [
        ("A14 NEXT_HOP 127.0.0.1", "40 03 04 7F000001"),
        ("A14 NEXT_HOP 0.0.0.0", "40 03 04 00000000"),
        ("A14 NEXT_HOP 224.0.0.1", "40 03 04 E0000001"),
        ("A14 NEXT_HOP our own address", own.as_str()),
    ] {
        s.taw(row, e, |p| upd(&[ORIGIN, AS_PATH, nh], p)).await;
    }
    s.taw("A15 MED length 5", e, |p| {
        upd(&[ORIGIN, AS_PATH, NEXT_HOP, "80 04 05 0000000064"], p)
    })
    .await;
    for (row, a) in [
        ("A19 COMMUNITIES length 0", "C0 08 00"),
        ("A19 COMMUNITIES length 5", "C0 08 05 0001000200"),
        ("A19 EXT_COMM length 0", "C0 10 00"),
        ("A19 EXT_COMM length 7", "C0 10 07 00020001000000"),
        ("A19 LARGE_COMM length 0", "C0 20 00"),
        (
            "A19 LARGE_COMM length 13",
            "C0 20 0D 0000FDE9 00000001 00000002 00",
        ),
    ] {
        s.taw(row, e, |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, a], p))
            .await;
    }

    // --- Treat-as-withdraw and loops, iBGP client ---
    let i = Who::Ibgp;
    s.taw("A16 LOCAL_PREF length 2 (iBGP)", i, |p| {
        upd(&[ORIGIN, IBGP_AS_PATH, NEXT_HOP, "40 05 02 0064"], p)
    })
    .await;
    s.taw("A20 ORIGINATOR_ID length 3 (iBGP)", i, |p| {
        upd(
            &[
                ORIGIN,
                IBGP_AS_PATH,
                NEXT_HOP,
                LOCAL_PREF_100,
                "80 09 03 C00002",
            ],
            p,
        )
    })
    .await;
    s.taw("A21 CLUSTER_LIST length 6 (iBGP)", i, |p| {
        upd(
            &[
                ORIGIN,
                IBGP_AS_PATH,
                NEXT_HOP,
                LOCAL_PREF_100,
                "80 0A 06 C0000209 0000",
            ],
            p,
        )
    })
    .await;
    // A22: the looped announcement replaces P and is not reflected (no error).
    let originator = format!("80 09 04 {router_id}");
    s.taw("A22 ORIGINATOR_ID = our router id", i, |p| {
        upd(
            &[ORIGIN, IBGP_AS_PATH, NEXT_HOP, LOCAL_PREF_100, &originator],
            p,
        )
    })
    .await;
    let cluster = format!("80 0A 08 C0000209 0AFF{NET:02X}01");
    s.taw("A22 CLUSTER_LIST with our cluster id", i, |p| {
        upd(
            &[ORIGIN, IBGP_AS_PATH, NEXT_HOP, LOCAL_PREF_100, &cluster],
            p,
        )
    })
    .await;

    // --- Discard (and accept), eBGP ---
    s.processed(
        "A3 ORIGIN twice: first kept",
        e,
        &["40 01 01 02", AS_PATH, NEXT_HOP_99],
        |p| upd(&[ORIGIN, "40 01 01 02", AS_PATH, NEXT_HOP], p),
        attr_value(1, "ORIGIN", vec![0]),
    )
    .await;
    s.discard(
        "A16 LOCAL_PREF from eBGP",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "40 05 04 00000309"], p),
        attr_value(5, "LOCAL_PREF", vec![0, 0, 0, 100]),
    )
    .await;
    s.discard(
        "A17 ATOMIC_AGGREGATE length 1",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "40 06 01 00"], p),
        absent_attr(6, "ATOMIC_AGGREGATE"),
    )
    .await;
    s.discard(
        "A18 AGGREGATOR length 6 on a 4-octet session",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "C0 07 06 FDE9 C0000201"], p),
        absent_attr(7, "AGGREGATOR"),
    )
    .await;
    s.discard(
        "A20 ORIGINATOR_ID from eBGP",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "80 09 04 C0000209"], p),
        absent_attr(9, "ORIGINATOR_ID"),
    )
    .await;
    s.discard(
        "A21 CLUSTER_LIST from eBGP",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "80 0A 04 C0000209"], p),
        absent_attr(10, "CLUSTER_LIST"),
    )
    .await;
    s.discard(
        "A26 unknown optional non-transitive",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "80 F0 02 ABCD"], p),
        absent_attr(0xf0, "attribute F0"),
    )
    .await;
    s.discard(
        "A27 unknown optional transitive",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "C0 F0 02 ABCD"], p),
        Box::new(|r: &Route| match attr(r, 0xf0) {
            Some(a) if a == hex("E0 F0 02 ABCD") => Ok(()),
            Some(a) => Err(format!(
                "re-emitted as [{}], expected [E0 F0 02 AB CD]",
                show(a)
            )),
            None => Err("not passed on".into()),
        }),
    )
    .await;
    s.discard(
        "A32 AS4_PATH length 0",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "C0 11 00"], p),
        absent_attr(17, "AS4_PATH"),
    )
    .await;
    s.discard(
        "A32 AS4_PATH segment overrun",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "C0 11 06 02 02 0000FDE9"], p),
        absent_attr(17, "AS4_PATH"),
    )
    .await;
    s.discard(
        "A32 AS4_AGGREGATOR length 6",
        |p| upd(&[ORIGIN, AS_PATH, NEXT_HOP, "C0 12 06 FDE9 C0000201"], p),
        absent_attr(18, "AS4_AGGREGATOR"),
    )
    .await;
    // A9: the first AS of an eBGP peer's AS_PATH must be its own (RFC 4271 §6.3;
    // `enforce_first_as`, on by default): treat-as-withdraw. With the knob off (a route
    // server) the route is accepted as it is.
    s.taw(
        "A9 first AS != peer (enforce_first_as on by default)",
        Who::Ebgp,
        |p| upd(&[ORIGIN, "40 02 06 02 01 0000FDEA", NEXT_HOP], p),
    )
    .await;
    s.processed(
        "A9 first AS != peer (enforce_first_as = false)",
        Who::V4Only,
        &[ORIGIN, AS_PATH, NEXT_HOP_99],
        |p| upd(&[ORIGIN, "40 02 06 02 01 0000FDEA", NEXT_HOP], p),
        attr_value(2, "AS_PATH", hex("02 01 0000FDEA")),
    )
    .await;
    // A12: without RFC 8654 (the raw peer does not offer it) a 4096-byte message holds ~1000 ASNs. No knob
    // limits the length, so the TaW half of the row cannot be tried; what is checked is
    // that a long path is carried intact, and that one too long to re-send never goes out
    // truncated nor leaves a stale route behind.
    let as_path_attr = |asns: &[u32]| {
        let mut v = Vec::new();
        for seg in asns.chunks(250) {
            v.extend_from_slice(&[2, u8::try_from(seg.len()).unwrap()]);
            for a in seg {
                v.extend_from_slice(&a.to_be_bytes());
            }
        }
        format!("50 02 {:04X} {}", v.len(), show(&v))
    };
    let path_of = |n: u32| -> Vec<u32> {
        std::iter::once(PEER_AS)
            .chain((1..n).map(|i| 4_200_000_000 + i))
            .collect()
    };
    let long = path_of(900);
    let long_attr = as_path_attr(&long);
    let want_path: Vec<(u8, u32)> = long.iter().map(|a| (2, *a)).collect();
    s.discard(
        "A12 AS_PATH of 900 ASNs",
        |p| upd(&[ORIGIN, &long_attr, NEXT_HOP], p),
        Box::new(move |r: &Route| match attr(r, 2) {
            Some(a) if flat_path(value(a)) == want_path => Ok(()),
            Some(a) => Err(format!(
                "AS_PATH changed: {} ASNs",
                flat_path(value(a)).len()
            )),
            None => Err("AS_PATH missing".into()),
        }),
    )
    .await;
    let longest = path_of(1000);
    let longest_attr = as_path_attr(&longest);
    let (p, q) = s.next_prefixes();
    let r = async {
        s.ebgp
            .send(&upd(&[ORIGIN, AS_PATH, NEXT_HOP_99], p))
            .await?;
        s.obs.present(p).await?;
        let m = upd(&[ORIGIN, &longest_attr, NEXT_HOP], p);
        assert!(m.len() <= 4096, "{}", m.len());
        s.ebgp.send(&m).await?;
        s.still_up(Who::Ebgp, q).await?;
        // Either the route as sent, or (if the speaker finds it too big to re-send) no
        // route: never the replaced one, never a cut path.
        let want: Vec<(u8, u32)> = longest.iter().map(|a| (2, *a)).collect();
        match s.obs.route(p) {
            None => Ok(()),
            Some(r) if attr(&r, 2).is_some_and(|a| flat_path(value(a)) == want) => Ok(()),
            Some(r) => Err(format!(
                "observer holds [{}]",
                r.iter()
                    .map(|a| show(a).chars().take(60).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(" | ")
            )),
        }
    }
    .await;
    s.report
        .record("A12 AS_PATH of 1000 ASNs (4051-byte UPDATE)", r);

    // U8: the empty UPDATE (length 23) is the IPv4 End-of-RIB: valid, changes nothing.
    let (p, q) = s.next_prefixes();
    let r = async {
        s.ebgp.send(&upd(&[ORIGIN, AS_PATH, NEXT_HOP], p)).await?;
        s.obs.present(p).await?;
        let eor = update(&[], &[], &[]);
        assert_eq!(eor.len(), 23);
        s.ebgp.send(&eor).await?;
        s.still_up(Who::Ebgp, q).await?;
        match (s.obs.route(p).is_some(), s.obs.times_announced(p)) {
            (true, 1) => Ok(()),
            (present, n) => Err(format!(
                "End-of-RIB changed P: present {present}, announced {n}x"
            )),
        }
    }
    .await;
    s.report.record("U8 End-of-RIB (empty UPDATE)", r);

    // --- A31: MP_REACH_NLRI of a family not negotiated ---
    let v6p = p6(0x31);
    s.ignored(
        "A31 IPv6 MP_REACH on an IPv4-only session",
        Who::V4Only,
        v6p,
        upd6(v6p),
    )
    .await;
    let flowspec = update(
        &[],
        &hex(&format!("{ORIGIN} {AS_PATH} 80 0E 06 0001 85 00 00 00")),
        &[],
    );
    s.ignored(
        "A31 SAFI 133 with NLRI length 0",
        Who::V4Only,
        p4(231),
        flowspec,
    )
    .await;

    let fin = s.d.finish(&s.obs).await;
    s.report.record("after all rows", fin);
    s.report.check();
}

// ---------------------------------------------------------------------------------------
// H5: half a message, then silence.
// ---------------------------------------------------------------------------------------

/// CPU time this process has used (user + system), from /proc (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of proc(5); the first after the name is field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h5_half_message_then_silence() {
    const NET: u8 = 25;
    let peers = ebgp_peer(NET, 10, "hold_time = 3") + &ebgp_peer(NET, 11, "");
    let d = Daemon::start(NET, &peers).await;
    let obs = d.observer().await;
    let mut report = Report::default();
    let r = async {
        let mut a = d.connect("H5 attacker", 10).await?;
        a.establish(&open(0xFDE9, 3, ATTACKER_ID, &caps(PEER_AS, &[V4])))
            .await?;
        let mut third = d.connect("third peer", 11).await?;
        third.establish(&ebgp_open()).await?;
        let p = p4(200);
        a.send(&upd(&[ORIGIN, AS_PATH, NEXT_HOP], p)).await?;
        obs.present(p).await?;

        // The header says 47 (the base UPDATE, NLRI 18 C63364), 30 bytes go out, then
        // nothing.
        let base_p: IpNet = "198.51.100.0/24".parse().unwrap();
        let whole = upd(&[ORIGIN, AS_PATH, NEXT_HOP], base_p);
        assert_eq!(whole.len(), 47);
        a.send(&keepalive()).await?;
        a.send(&whole[..30]).await?;
        let (t0, cpu0) = (Instant::now(), cpu_time());

        // Other peers are unaffected meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
        third
            .send(&upd(&[ORIGIN, AS_PATH, NEXT_HOP], q4(200)))
            .await?;
        obs.present(q4(200))
            .await
            .map_err(|e| format!("another peer's route during the stall: {e}"))?;

        // Hold expiry: 4/0, about 3 s after our last whole message.
        let n = a.expect_notification(Duration::from_secs(6)).await?;
        let (waited, cpu) = (t0.elapsed(), cpu_time().saturating_sub(cpu0));
        check_notification(&n, &want(4, 0))?;
        if waited < Duration::from_millis(2500) {
            return Err(format!(
                "hold timer fired after {waited:?}, hold time is 3 s"
            ));
        }
        // A busy loop on the stalled connection would burn a core for the whole wait.
        if cpu > waited / 2 {
            return Err(format!("{cpu:?} of CPU in {waited:?} of stall: busy loop?"));
        }
        a.expect_closed(true).await?;
        obs.absent(p).await?;
        if obs.times_announced(base_p) != 0 {
            return Err("the partial UPDATE was processed".into());
        }
        third.check_alive()?;
        eprintln!("H5: 4/0 after {waited:?}, {cpu:?} CPU meanwhile");
        Ok(())
    }
    .await;
    report.record("H5", r);
    report.record("after all rows", d.finish(&obs).await);
    report.check();
}
