use std::os::unix::fs::PermissionsExt;

use super::*;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rr-control-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn bind_makes_0660_replaces_a_stale_socket_and_refuses_a_live_one() {
    let d = dir("bind");
    let path = d.join("sub/control.sock");
    // A stale socket file: bound, then its listener gone.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let s = ControlSocket::bind(&path).expect("a stale file is replaced");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "mode {mode:o}");
    // Nothing of the private staging directory is left.
    let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("control.sock")]);
    // A live one is refused, and left alone.
    let e = ControlSocket::bind(&path).expect_err("a live socket is not replaced");
    assert!(matches!(e, BindError::Live(_)), "{e}");
    assert!(e.to_string().contains("another daemon answers"), "{e}");
    assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    drop(s);
    assert!(!path.exists(), "removed when dropped");
    // Not a socket: never removed.
    std::fs::write(&path, "x").unwrap();
    let e = ControlSocket::bind(&path).expect_err("a regular file is in the way");
    assert!(matches!(e, BindError::NotSocket(_)), "{e}");
    assert!(path.exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn requests_and_replies_read_as_documented() {
    let r: Request =
        serde_json::from_str(r#"{"action":"reset","address":"192.0.2.1","soft":"in"}"#).unwrap();
    assert_eq!(
        r,
        Request::Reset {
            address: "192.0.2.1".into(),
            soft: Some(SoftReset::In),
            message: None
        }
    );
    let r: Request = serde_json::from_str(r#"{"action":"reload"}"#).unwrap();
    assert_eq!(r, Request::Reload);
    let r: Request = serde_json::from_str(
        r#"{"action":"announce","prefix":"203.0.113.0/24","next_hop":"192.0.2.254"}"#,
    )
    .unwrap();
    assert!(matches!(
        r,
        Request::Announce {
            next_hop: Some(_),
            ..
        }
    ));
    assert!(serde_json::from_str::<Request>(r#"{"action":"explode"}"#).is_err());
    assert!(
        serde_json::from_str::<Request>(r#"{"action":"enable","address":"x","extra":1}"#).is_err()
    );
    let line = serde_json::to_string(&Reply::failed("192.0.2.9 is not a peer".into())).unwrap();
    assert_eq!(line, r#"{"ok":false,"error":"192.0.2.9 is not a peer"}"#);
}

#[test]
fn addresses_next_hops_and_the_reload_summary() {
    assert_eq!(
        peer_address("fe80::2%eth0").unwrap(),
        "fe80::2".parse::<IpAddr>().unwrap()
    );
    assert!(
        peer_address("peer1")
            .unwrap_err()
            .contains("not an IP address")
    );
    let p: IpNet = "10.9.0.0/24".parse().unwrap();
    assert!(announced_attrs(p, Some("2001:db8::1".parse().unwrap())).is_err());
    let a = announced_attrs(p, Some("10.0.0.9".parse().unwrap())).unwrap();
    assert_eq!(a.next_hop, Some(NextHop::V4("10.0.0.9".parse().unwrap())));
    let mut r = ReloadReport {
        file: "a.toml".into(),
        unchanged: true,
        ..ReloadReport::default()
    };
    assert_eq!(r.summary(), "a.toml: unchanged, nothing done");
    r.unchanged = false;
    r.added = vec!["10.0.0.3".parse().unwrap()];
    r.other = vec!["[fib]".into()];
    assert_eq!(
        r.summary(),
        "reloaded a.toml: peers added: 10.0.0.3; also changed: [fib]"
    );
    // Hundreds of peers: the first ten named, the rest counted.
    r.added = (1..=500u32)
        .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0100 + i)))
        .collect();
    r.other.clear();
    assert_eq!(
        r.summary(),
        "reloaded a.toml: peers added: 127.0.1.1 127.0.1.2 127.0.1.3 127.0.1.4 127.0.1.5 \
         127.0.1.6 127.0.1.7 127.0.1.8 127.0.1.9 127.0.1.10 and 490 more"
    );
}

/// A reload that changes only a peer's `description` says so, and that the session
/// was kept; one that changes a key of the OPEN says which.
#[test]
fn the_reload_summary_names_what_changed() {
    use crate::config::Config;
    let file = |description: &str, hold: u16| {
        let text = format!(
            "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\nlisten = []\n\
             [[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\ndescription = \"{description}\"\n\
             hold_time = {hold}\n[[peer]]\naddress = \"10.0.0.3\"\nasn = 65001\n"
        );
        Config::parse(&text, "rr.toml").unwrap()
    };
    let old = file("rack 1", 90);
    let mut r = ReloadReport {
        file: "rr.toml".into(),
        ..ReloadReport::default()
    };
    r.set_peers(Config::diff(&old, &file("rack 2", 90)));
    assert_eq!(
        r.summary(),
        "reloaded rr.toml: peers changed: 10.0.0.2 (description); sessions kept: 10.0.0.2"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["changed_keys"]["10.0.0.2"],
        serde_json::json!(["description"])
    );
    r.set_peers(Config::diff(&old, &file("rack 2", 30)));
    assert_eq!(
        r.summary(),
        "reloaded rr.toml: peers changed: 10.0.0.2 (hold_time, description)"
    );
    // A report without the keys (an older daemon's JSON) still reads, and names the peers.
    let mut bare = json.clone();
    bare.as_object_mut().unwrap().remove("changed_keys");
    let back: ReloadReport = serde_json::from_value(bare).unwrap();
    assert_eq!(
        back.summary(),
        "reloaded rr.toml: peers changed: 10.0.0.2; sessions kept: 10.0.0.2"
    );
}

/// `ctl --socket` pointed at a BIRD control socket (`bird -s`) says so instead of a JSON
/// parse error.
#[test]
fn a_bird_socket_is_named_as_such() {
    let d = dir("bird");
    let path = d.join("bird.ctl");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::Write as _;
        let (mut c, _) = l.accept().unwrap();
        c.write_all(b"0001 BIRD v0.3.3+birdv1.6.8 ready.\n")
            .unwrap();
    });
    let e = client::call(&path, &Request::Reload).unwrap_err();
    server.join().unwrap();
    assert_eq!(
        e,
        format!(
            "{} is a BIRD control socket (bird -s): ask it with birdc or birdcl",
            path.display()
        )
    );
    let _ = std::fs::remove_dir_all(&d);
}
