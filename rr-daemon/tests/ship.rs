//! What packagers and service managers rely on: `--version` with the commit, the manual
//! page and shell completions generated from the CLI, the `sd_notify` protocol spoken to
//! a real datagram socket as `NOTIFY_SOCKET`, the environment's overrides and
//! `password_file`, and `session --password` from a file or standard input. Loopback
//! only (127.0.77.0/24).

use std::io::Write as _;
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_rr-daemon");

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rr-ship-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(EXE)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("rr-daemon runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn test_version_names_the_commit() {
    let (ok, out, _) = run(&["--version"], &[]);
    assert!(ok);
    let line = out.trim_end();
    let rest = line
        .strip_prefix(&format!("rr-daemon {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `rr-daemon VERSION (COMMIT)`: {line:?}"));
    // The commit of the checkout the test was built from; `unknown` only outside git.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match (std::env::var("RR_COMMIT"), head) {
        (Ok(c), _) if !c.is_empty() => assert_eq!(rest, c.trim()),
        (_, Some(head)) => {
            assert!(rest.len() >= 7, "{rest:?}");
            assert!(
                head.starts_with(rest),
                "{rest:?} is not a prefix of HEAD {head}"
            );
        }
        (_, None) => assert_eq!(rest, "unknown"),
    }
}

#[test]
fn test_man_page_is_roff_with_every_subcommand() {
    let (ok, out, _) = run(&["man"], &[]);
    assert!(ok);
    assert!(
        out.contains(".TH rr-daemon 1"),
        "{}",
        &out[..out.len().min(300)]
    );
    let dir = Scratch::new("man");
    let (ok, _, err) = run(&["man", "--dir", dir.0.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    for sub in ["session", "check", "ctl", "man", "completions"] {
        // Listed on the main page, and a page of its own beside it.
        assert!(out.contains(&format!("rr\\-daemon\\-{sub}(1)")), "{sub}");
        let page = std::fs::read_to_string(dir.0.join(format!("rr-daemon-{sub}.1")))
            .unwrap_or_else(|e| panic!("rr-daemon-{sub}.1: {e}"));
        assert!(page.contains(&format!(".TH rr-daemon-{sub} 1")), "{sub}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.0.join("rr-daemon.1")).unwrap(),
        out,
        "`man` and `man --dir` disagree"
    );
    // groff, where installed, must take it without a warning.
    if let Ok(mut groff) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        groff
            .stdin
            .take()
            .unwrap()
            .write_all(out.as_bytes())
            .unwrap();
        let r = groff.wait_with_output().unwrap();
        assert!(r.status.success());
        assert_eq!(String::from_utf8_lossy(&r.stderr), "");
    }
}

#[test]
fn test_completions_parse_in_their_shell() {
    for (shell, check) in [
        ("bash", ["bash", "-n"]),
        ("zsh", ["zsh", "-n"]),
        ("fish", ["fish", "-n"]),
    ] {
        let (ok, out, err) = run(&["completions", shell], &[]);
        assert!(ok, "{shell}: {err}");
        assert!(out.contains("rr-daemon"), "{shell}");
        for sub in ["session", "check", "ctl", "man", "completions"] {
            assert!(out.contains(sub), "{shell} completion lacks {sub}");
        }
        let dir = Scratch::new(&format!("compl-{shell}"));
        let file = dir.write("script", &out);
        match Command::new(check[0]).arg(check[1]).arg(&file).output() {
            Ok(r) => assert!(
                r.status.success(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&r.stderr)
            ),
            // Only bash is sure to be installed; the others are checked where they are.
            Err(_) => assert_ne!(shell, "bash", "bash is missing"),
        }
    }
    let (ok, _, err) = run(&["completions", "tcsh"], &[]);
    assert!(!ok);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
}

/// The daemon as a child; killed and reaped when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// The next datagram on `sock` as text, within `within`.
fn next(sock: &UnixDatagram, within: Duration) -> String {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no notification within {within:?}: {e}"),
    }
}

fn config(listen: &str, api: &str) -> String {
    format!(
        "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\nlisten = [\"{listen}\"]\n\
         [api]\nlisten = \"{api}\"\n\
         [[peer]]\naddress = \"127.0.77.9\"\nasn = 65000\npassive = true\n"
    )
}

/// `NOTIFY_SOCKET` is a real datagram socket, as systemd binds it: `READY=1` comes only
/// once the BGP and API listeners take connections, `RELOADING=1` with `MONOTONIC_USEC`
/// and `READY=1` frame each SIGHUP (a refused file too), `STOPPING=1` comes on SIGTERM.
#[test]
fn test_sd_notify_ready_reloading_stopping() {
    let dir = Scratch::new("notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let (bgp, api) = ("127.0.77.1:17977", "127.0.77.1:19177");
    let cfg = dir.write("rr.toml", &config(bgp, api));
    let started = Instant::now();
    let child = Command::new(EXE)
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(child);

    assert_eq!(next(&sock, Duration::from_secs(20)), "READY=1\n");
    eprintln!("READY=1 after {:?}", started.elapsed());
    // Bound before READY=1, not after.
    TcpStream::connect(bgp).expect("BGP listener bound at READY=1");
    TcpStream::connect(api).expect("API listener bound at READY=1");

    let mut last_usec = 0u64;
    for good in [true, false] {
        if !good {
            dir.write("rr.toml", "[speaker]\nasn = 0\n");
        }
        signal(&daemon.0, "-HUP");
        let msg = next(&sock, Duration::from_secs(10));
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"), "{msg:?}");
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {msg:?}"));
        assert!(usec > last_usec, "MONOTONIC_USEC goes forward");
        last_usec = usec;
        assert_eq!(next(&sock, Duration::from_secs(10)), "READY=1\n");
    }
    // Still serving after the refused file.
    TcpStream::connect(api).expect("API after a refused reload");

    signal(&daemon.0, "-TERM");
    assert_eq!(next(&sock, Duration::from_secs(10)), "STOPPING=1\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// Without `NOTIFY_SOCKET`, or with one nobody listens on, the daemon runs as before.
#[test]
fn test_sd_notify_without_a_listener_is_harmless() {
    let dir = Scratch::new("notify-none");
    let cfg = dir.write("rr.toml", &config("127.0.77.2:17978", "127.0.77.2:19178"));
    let child = Command::new(EXE)
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", dir.0.join("nobody.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect("127.0.77.2:19178").is_err() {
        assert!(Instant::now() < deadline, "the API never came up");
        assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&daemon.0, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            assert!(s.success(), "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `RR_ROUTER_ID`, `RR_ASN` and `RR_CLUSTER_ID` replace the file's values, or supply them
/// when the file leaves them out (one ConfigMap for every replica); a bad value is an
/// error of its variable.
#[test]
fn test_environment_overrides_through_the_binary() {
    let dir = Scratch::new("env");
    let full = dir.write(
        "full.toml",
        "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\nlisten = []\n\
         [[peer]]\naddress = \"10.0.0.9\"\nasn = 65000\nrr_client = true\n",
    );
    let full = full.to_str().unwrap();
    let (ok, out, _) = run(&["check", "--config", full], &[]);
    assert!(ok);
    assert!(
        out.contains("AS 65000, router id 10.0.0.1, route reflector (cluster id 10.0.0.1)"),
        "{out}"
    );
    let env = [
        ("RR_ROUTER_ID", "10.244.1.7"),
        ("RR_ASN", "64512"),
        ("RR_CLUSTER_ID", "1.0.0.1"),
    ];
    let (ok, out, _) = run(&["check", "--config", full], &[env[0], env[2]]);
    assert!(ok);
    assert!(
        out.contains("AS 65000, router id 10.244.1.7, route reflector (cluster id 1.0.0.1)"),
        "{out}"
    );
    // The AS of the file's peers stays: under another AS they are external, and an
    // external peer cannot be a reflector client.
    let (ok, _, err) = run(&["check", "--config", full], &env);
    assert!(!ok);
    assert!(
        err.contains("peer[0].rr_client: rr_client needs an internal peer, but asn 65000 is not speaker.asn 64512"),
        "{err}"
    );
    // A file without router_id and asn, as a shared ConfigMap has it.
    let bare = dir.write("bare.toml", "[speaker]\nlisten = []\n");
    let bare = bare.to_str().unwrap();
    let (ok, _, err) = run(&["check", "--config", bare], &[]);
    assert!(!ok);
    assert_eq!(
        err.trim_end(),
        format!(
            "rr-daemon: {bare}:1:1: speaker.asn: missing (required)\n\
             rr-daemon: {bare}:1:1: speaker.router_id: missing (required)"
        )
    );
    let (ok, out, err) = run(&["check", "--config", bare], &env[..2]);
    assert!(ok, "{err}");
    assert!(out.contains("AS 64512, router id 10.244.1.7;"), "{out}");
    let (ok, _, err) = run(
        &["check", "--config", bare],
        &[("RR_ROUTER_ID", "fd00::7"), ("RR_ASN", "64512")],
    );
    assert!(!ok);
    assert_eq!(
        err.trim_end(),
        format!("rr-daemon: {bare}: RR_ROUTER_ID: \"fd00::7\" is not an IPv4 address")
    );
}

/// `password_file`: read relative to the configuration, one trailing newline dropped,
/// read again at every load (a rotated Secret); never together with `password`; errors
/// name the key and the file, never the key's text.
#[test]
fn test_password_file() {
    use rr_daemon::config::Config;
    let dir = Scratch::new("pwfile");
    std::fs::create_dir_all(dir.0.join("secrets")).unwrap();
    dir.write("secrets/peer", "s3cret\n");
    let text = "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n\
                [[peer_group]]\nname = \"g\"\nasn = 65000\npassword_file = \"secrets/peer\"\n\
                [[peer]]\naddress = \"10.0.0.2\"\ngroup = \"g\"\n\
                [[peer]]\naddress = \"10.0.0.3\"\ngroup = \"g\"\npassword = \"own\"\n";
    let path = dir.write("rr.toml", text);
    let a = Config::load(&path).unwrap();
    let key = |c: &Config, p: &str| {
        c.peers[&p.parse().unwrap()]
            .password
            .as_ref()
            .map(|s| s.expose().to_owned())
    };
    assert_eq!(key(&a, "10.0.0.2").as_deref(), Some("s3cret"));
    // The peer's own `password` replaces the group's file.
    assert_eq!(key(&a, "10.0.0.3").as_deref(), Some("own"));

    dir.write("secrets/peer", "rotated");
    let b = Config::load(&path).unwrap();
    assert_eq!(key(&b, "10.0.0.2").as_deref(), Some("rotated"));
    assert_eq!(
        Config::diff(&a, &b).changed,
        vec!["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]
    );

    let at = path.display().to_string();
    let secrets = dir.0.join("secrets/peer").display().to_string();
    dir.write("secrets/peer", "");
    assert_eq!(
        Config::load(&path).unwrap_err().to_string(),
        format!(
            "{at}:7:17: peer_group[0].password_file: {secrets}: a TCP-MD5 key has 1 to 80 \
             bytes, this one 0"
        )
    );
    std::fs::remove_file(dir.0.join("secrets/peer")).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{at}:7:17: peer_group[0].password_file: cannot read {secrets}: "
        )),
        "{e}"
    );
    let both = dir.write(
        "both.toml",
        "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
         asn = 65000\npassword = \"x\"\npassword_file = \"/dev/null\"\n",
    );
    assert_eq!(
        Config::load(&both).unwrap_err().to_string(),
        format!(
            "{}:8:17: peer[0].password_file: cannot be combined with password: give the key \
             in one place",
            both.display()
        )
    );
}

/// `rr-daemon session --password` takes a file or standard input, never the key itself:
/// two sessions on loopback, one keyed from a file and one from stdin, come up; a wrong
/// key from stdin does not.
#[test]
fn test_session_password_from_file_and_stdin() {
    fn start(
        args: &[&str],
        stdin_key: Option<&str>,
    ) -> (Daemon, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut child = Command::new(EXE)
            .arg("session")
            .args(args)
            .arg("--json")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(k) = stdin_key {
            stdin.write_all(k.as_bytes()).unwrap();
        }
        drop(stdin);
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        (Daemon(child), rx)
    }
    fn established(rx: &std::sync::mpsc::Receiver<String>, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(r#""event":"established""#) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
    let dir = Scratch::new("session-pw");
    let file = dir.write("key", "s3cret\n");
    for (i, (stdin_key, up)) in [("s3cret\n", true), ("wrong", false)]
        .into_iter()
        .enumerate()
    {
        let (listen, active, port) = (
            format!("127.0.77.{}", 31 + 2 * i),
            format!("127.0.77.{}", 32 + 2 * i),
            format!("{}", 17981 + i),
        );
        let (_a, a_rx) = start(
            &[
                "--local-as",
                "65001",
                "--router-id",
                "192.0.2.1",
                "--peer",
                &active,
                "--peer-as",
                "65002",
                "--bind",
                &listen,
                "--listen",
                &format!("{listen}:{port}"),
                "--passive",
                "--hold",
                "3",
                "--password",
                file.to_str().unwrap(),
            ],
            None,
        );
        std::thread::sleep(Duration::from_millis(300));
        let (_b, b_rx) = start(
            &[
                "--local-as",
                "65002",
                "--router-id",
                "192.0.2.2",
                "--peer",
                &listen,
                "--peer-as",
                "65001",
                "--port",
                &port,
                "--bind",
                &active,
                "--hold",
                "3",
                "--connect-retry",
                "1",
                "--password",
                "-",
            ],
            Some(stdin_key),
        );
        if up {
            assert!(established(&a_rx, Duration::from_secs(10)), "file side");
            assert!(established(&b_rx, Duration::from_secs(3)), "stdin side");
        } else {
            assert!(
                !established(&a_rx, Duration::from_secs(4)),
                "a wrong key came up"
            );
            assert!(!established(&b_rx, Duration::from_millis(100)));
        }
    }
    let (ok, _, err) = run(
        &[
            "session",
            "--local-as",
            "1",
            "--router-id",
            "192.0.2.1",
            "--peer",
            "127.0.77.40",
            "--peer-as",
            "1",
            "--password",
            "/nonexistent/key",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        err.starts_with("rr-daemon: --password /nonexistent/key: cannot read: "),
        "{err}"
    );
}

fn ctl_json(api: &str, args: &[&str]) -> Option<serde_json::Value> {
    let mut all = vec!["ctl", "--api", api, "--json"];
    all.extend_from_slice(args);
    let (ok, out, _) = run(&all, &[]);
    if !ok {
        return None;
    }
    serde_json::from_str(&out).ok()
}

/// The restart the manual's upgrade procedure uses: SIGUSR2 closes the sessions without
/// a Cease, so the helper keeps our route, stale, and never withdraws it; the daemon
/// started again with `--graceful-restart` replaces it (no longer stale). SIGTERM with
/// `graceful_stop = false`, by contrast, sends a Cease, which the helper sees.
#[test]
fn test_sigusr2_stops_for_a_graceful_restart() {
    let dir = Scratch::new("restart");
    let (h, r) = ("127.0.77.51", "127.0.77.52");
    let (h_api, r_api) = (format!("{h}:19151"), format!("{r}:19152"));
    let conf = |me: &str, api: &str, peer: &str, extra: &str| {
        format!(
            "[speaker]\nasn = 65000\nrouter_id = \"{me}\"\nlisten = [\"{me}:17951\"]\n\
             connect_retry = 1\n[api]\nlisten = \"{api}\"\n\
             [[peer]]\naddress = \"{peer}\"\nasn = 65000\nport = 17951\n\
             source_address = \"{me}\"\nhold_time = 9\n{extra}"
        )
    };
    let hc = dir.write("h.toml", &conf(h, &h_api, r, ""));
    // `graceful_stop = false`: SIGTERM is a stop for good, with a Cease to every peer (by
    // default it too closes graceful restart sessions without one).
    let rc = dir.write(
        "r.toml",
        &conf(
            r,
            &r_api,
            h,
            "[[route]]\nprefix = \"198.51.100.0/24\"\nnext_hop = \"192.0.2.52\"\n",
        )
        .replace(
            "connect_retry = 1\n",
            "connect_retry = 1\ngraceful_stop = false\n",
        ),
    );
    let spawn = |cfg: &PathBuf, extra: &[&str]| {
        Daemon(
            Command::new(EXE)
                .arg("--config")
                .arg(cfg)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let path = |api: &str| -> Option<serde_json::Value> {
        let v = ctl_json(api, &["routes", "198.51.100.0/24"])?;
        v["paths"].as_array()?.first().cloned()
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "{what} within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let _helper = spawn(&hc, &[]);
    let mut restarting = spawn(&rc, &[]);
    wait("the route at the helper", &|| {
        path(&h_api).is_some_and(|p| p["stale"] == false)
    });

    signal(&restarting.0, "-USR2");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = restarting.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGUSR2");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    wait("the route stale at the helper", &|| {
        path(&h_api).is_some_and(|p| p["stale"] == true)
    });
    // No Cease reached the helper: the session ended with the connection.
    let peers = ctl_json(&h_api, &["peers"]).unwrap();
    let err = peers[0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!err.contains("NOTIFICATION"), "a Cease was sent: {err}");
    // Kept all along while we are away (well within the restart time of 120 s).
    for _ in 0..10 {
        assert!(path(&h_api).is_some(), "the helper withdrew the route");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut back = spawn(&rc, &["--graceful-restart"]);
    wait("the route fresh again at the helper", &|| {
        path(&h_api).is_some_and(|p| p["stale"] == false)
    });

    // SIGTERM: a Cease (Administrative Shutdown) is what the helper sees.
    signal(&back.0, "-TERM");
    wait("the Cease at the helper", &|| {
        ctl_json(&h_api, &["peers"]).is_some_and(|p| {
            p[0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("Cease") && e.contains("received NOTIFICATION"))
        })
    });
    assert!(back.0.wait().unwrap().success());
}
