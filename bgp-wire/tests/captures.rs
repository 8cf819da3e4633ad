//! Recorded traffic: byte streams captured from real BIRD 2.0.12 and FRR 8.4.4 sessions
//! (`tests/data/captures/`, made by `tests/scripts/capture-vectors.sh` in network
//! namespaces; its README says how each was made).
//!
//! Each stream is decoded with the session context negotiated from the two OPENs of its
//! session, exactly as a receiving speaker would, and rendered as one line per message.
//! The lines are compared with a golden file beside the capture; `UPDATE_GOLDENS=1`
//! rewrites the goldens. Every message must also survive decode → encode → decode.

use std::fmt::Write as _;
use std::path::PathBuf;

use bgp_wire::negotiate::negotiate;
use bgp_wire::open::{Open, OpenView};
use bgp_wire::update::Treatment;
use bgp_wire::{Framer, Message, MessageView, SessionCtx};
use bytes::{Bytes, BytesMut};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/captures")
}

fn read(name: &str) -> Bytes {
    let path = dir().join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn first_open(stream: &Bytes) -> Open {
    let frame = Framer::new()
        .frames(stream.clone())
        .next()
        .expect("a message")
        .expect("framed");
    Open::decode(frame.body()).expect("the capture starts with a valid OPEN")
}

/// The context the receiver of `sender`'s stream negotiated with it.
fn ctx_for(sender: &Bytes, receiver: &Bytes) -> SessionCtx {
    let remote = first_open(sender);
    let local = first_open(receiver);
    let mut body = BytesMut::new();
    remote.encode(&mut body);
    let view = OpenView::new(&body[19..]).expect("valid");
    let n = negotiate(&local, &view, local.asn == remote.asn);
    assert!(n.missing_families.is_empty(), "both families negotiated");
    n.ctx
}

fn render(stream: &Bytes, ctx: &SessionCtx) -> String {
    let mut out = String::new();
    let mut framer = Framer::new();
    framer.set_extended_message(ctx.extended_message);
    for (i, frame) in framer.frames(stream.clone()).enumerate() {
        let frame = frame.expect("real peers frame correctly");
        let view = MessageView::parse(&frame.bytes, ctx).expect("real peers send valid messages");
        write!(out, "{i:3} {:<13}", view.ty().to_string()).unwrap();
        match &view {
            MessageView::Open(o) => {
                write!(
                    out,
                    " AS {} hold {} id {}",
                    o.asn(),
                    o.hold_time(),
                    o.bgp_id()
                )
                .unwrap();
                for c in o.capabilities() {
                    write!(out, " {:?}", c.decode().expect("valid")).unwrap();
                }
            }
            MessageView::Update(u) => {
                assert_eq!(
                    u.treatment(),
                    Treatment::Normal,
                    "message {i}: {:?}",
                    u.issues()
                );
                if let Some(f) = u.end_of_rib() {
                    write!(out, " End-of-RIB {f}").unwrap();
                }
                let owned = u.to_update();
                for w in &owned.withdrawn {
                    write!(out, " -{w}").unwrap();
                }
                for a in &owned.attributes {
                    write!(out, " {}={a}", a.ty()).unwrap();
                }
                for n in &owned.nlri {
                    write!(out, " +{n}").unwrap();
                }
            }
            MessageView::Notification(n) => {
                let owned = bgp_wire::Notification::with_data(
                    n.code,
                    n.subcode,
                    Bytes::copy_from_slice(n.data),
                );
                write!(out, " {owned}").unwrap();
            }
            MessageView::RouteRefresh(r) => write!(out, " {r:?}").unwrap(),
            MessageView::Keepalive => {}
        }
        out.push('\n');

        // Owned round trip: what we decode, we encode so that it decodes the same.
        let owned = Message::decode(&frame.bytes, ctx).expect("decodes");
        let mut again = BytesMut::new();
        owned.encode(ctx, &mut again).expect("fits");
        assert_eq!(
            Message::decode(&again, ctx).expect("re-decodes"),
            owned,
            "message {i}"
        );
    }
    out
}

fn check(sender: &str, receiver: &str) {
    let (s, r) = (read(sender), read(receiver));
    let ctx = ctx_for(&s, &r);
    let text = render(&s, &ctx);
    let golden = dir().join(format!("{sender}.txt"));
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        std::fs::write(&golden, &text).expect("write golden");
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDENS=1)", golden.display()));
    assert_eq!(text, want, "{sender} differs from its golden");
}

#[test]
fn bird2_frr_ebgp() {
    check("bird2-frr-ebgp.bird2.bgp", "bird2-frr-ebgp.frr.bgp");
    check("bird2-frr-ebgp.frr.bgp", "bird2-frr-ebgp.bird2.bgp");
}

#[test]
fn bird2_route_reflector() {
    check(
        "bird2-ibgp-rr.rr-to-bird2.bgp",
        "bird2-ibgp-rr.bird2-client.bgp",
    );
    check(
        "bird2-ibgp-rr.bird2-client.bgp",
        "bird2-ibgp-rr.rr-to-bird2.bgp",
    );
    check(
        "bird2-ibgp-rr.rr-to-frr.bgp",
        "bird2-ibgp-rr.frr-client.bgp",
    );
    check(
        "bird2-ibgp-rr.frr-client.bgp",
        "bird2-ibgp-rr.rr-to-frr.bgp",
    );
}

#[test]
fn add_path() {
    check("addpath.bird2.bgp", "addpath.frr.bgp");
    check("addpath.frr.bgp", "addpath.bird2.bgp");
}

#[test]
fn extended_next_hop() {
    check("frr-extnh.bird2.bgp", "frr-extnh.frr.bgp");
    check("frr-extnh.frr.bgp", "frr-extnh.bird2.bgp");
}
