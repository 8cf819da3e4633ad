//! The `bfd` key of `[[peer]]`, `[[peer_group]]` and `[mesh]`: forms, defaults,
//! inheritance, errors located at the key, and reloads that keep the BGP session.

use std::net::IpAddr;

use rr_daemon::config::{Bfd, Config};

const HEAD: &str = "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn parse(text: &str) -> Config {
    Config::parse(&format!("{HEAD}{text}"), "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> String {
    match Config::parse(&format!("{HEAD}{text}"), "test.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn peer_bfd(text: &str) -> Option<Bfd> {
    parse(text).peer(ip("10.0.0.2")).unwrap().bfd.clone()
}

#[test]
fn forms_and_defaults() {
    let p = |v: &str| format!("[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\nbfd = {v}\n");
    assert_eq!(peer_bfd(&p("false")), None);
    assert_eq!(peer_bfd(&p("true")), Some(Bfd::default()));
    let d = Bfd::default();
    assert_eq!(
        (d.interval_ms, d.multiplier, d.multihop, d.strict),
        (300, 3, false, false)
    );
    let b = peer_bfd(&p(
        "{ interval = 50, multiplier = 5, multihop = true, strict = true }",
    ))
    .unwrap();
    assert_eq!(
        (b.interval_ms, b.multiplier, b.multihop, b.strict),
        (50, 5, true, true)
    );
    assert!(b.sha1.is_none());
    let b = peer_bfd(&p(
        "{ password = \"s3cret\", key_id = 9, meticulous = true }",
    ))
    .unwrap();
    let a = b.sha1.unwrap();
    assert_eq!(
        (a.password.expose(), a.key_id, a.meticulous),
        ("s3cret", 9, true)
    );
    assert!(!format!("{:?}", peer_bfd(&p("{ password = \"s3cret\" }"))).contains("s3cret"));
    assert_eq!(
        peer_bfd("[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\n"),
        None
    );
}

#[test]
fn errors_name_the_key() {
    let p = |v: &str| {
        error(&format!(
            "[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\nbfd = {v}\n"
        ))
    };
    let e = p("{ interval = 5 }");
    assert!(
        e.contains("test.toml:7") && e.contains("peer[0].bfd") && e.contains("10 to 60000"),
        "{e}"
    );
    let e = p("{ multiplier = 0 }");
    assert!(e.contains("multiplier"), "{e}");
    let e = p("{ intervall = 300 }");
    assert!(
        e.contains("peer[0].bfd.intervall") && e.contains("unknown"),
        "{e}"
    );
    let e = p("{ password = \"123456789012345678901\" }");
    assert!(e.contains("21 bytes"), "{e}");
    let e = p("{ key_id = 3 }");
    assert!(e.contains("need a password"), "{e}");
    let e = p("300");
    assert!(e.contains("peer[0].bfd"), "{e}");
}

#[test]
fn groups_and_the_mesh_pass_it_on() {
    let c = parse(
        "[[peer_group]]\nname = \"g\"\nasn = 65000\nbfd = { interval = 200 }\n\
         [[peer]]\naddress = \"10.0.0.2\"\ngroup = \"g\"\n\
         [[peer]]\naddress = \"10.0.0.3\"\ngroup = \"g\"\nbfd = false\n",
    );
    assert_eq!(
        c.peer(ip("10.0.0.2"))
            .unwrap()
            .bfd
            .as_ref()
            .unwrap()
            .interval_ms,
        200
    );
    assert_eq!(c.peer(ip("10.0.0.3")).unwrap().bfd, None);
    let c = parse("[mesh]\nnodes = [\"10.0.0.1\", \"10.0.0.5\", \"10.0.0.6\"]\nbfd = true\n");
    for n in ["10.0.0.5", "10.0.0.6"] {
        assert_eq!(c.peer(ip(n)).unwrap().bfd, Some(Bfd::default()), "{n}");
    }
}

#[test]
fn a_bfd_change_needs_no_new_session() {
    let a = parse("[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\nbfd = true\n");
    let b = parse("[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\nbfd = { interval = 900 }\n");
    let (pa, pb) = (
        a.peer(ip("10.0.0.2")).unwrap(),
        b.peer(ip("10.0.0.2")).unwrap(),
    );
    assert_ne!(pa, pb);
    assert_eq!(pa.reset_key(pb), None);
    assert_eq!(Config::diff(&a, &b).changed, [ip("10.0.0.2")]);
}
