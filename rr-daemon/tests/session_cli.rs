//! `rr-daemon session` on loopback (127.0.0.0/8 only): two processes, one passive and
//! listening, one connecting, with TCP-MD5 keys (RFC 2385) that match or not. The kernel
//! drops badly signed segments, so a wrong key never gets past the TCP handshake.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// One `rr-daemon session` process; killed (SIGKILL) and reaped when dropped.
struct Session {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Session {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rr-daemon"))
            .arg("session")
            .args(args)
            .arg("--json")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("rr-daemon runs");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// Whether an `established` event arrives within `within`.
    fn established(&self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(r#""event":"established""#) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key` in a file of its own (`--password` takes a file, never the key itself).
fn key_file(name: &str, key: &str) -> String {
    let p = std::env::temp_dir().join(format!("rr-session-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, key).expect("key file");
    p.display().to_string()
}

/// A passive listener on `listen` and an active peer, each with its own key.
fn pair(listen: &str, active: &str, port: &str, keys: (&str, &str)) -> (Session, Session) {
    let files = (
        key_file(&format!("{listen}-a"), keys.0),
        key_file(&format!("{listen}-b"), keys.1),
    );
    let passive = Session::start(&[
        "--local-as",
        "65001",
        "--router-id",
        "192.0.2.1",
        "--peer",
        active,
        "--peer-as",
        "65002",
        "--bind",
        listen,
        "--listen",
        &format!("{listen}:{port}"),
        "--passive",
        "--hold",
        "3",
        "--password",
        &files.0,
    ]);
    // Give the listener its key before the first SYN.
    std::thread::sleep(Duration::from_millis(300));
    let connecting = Session::start(&[
        "--local-as",
        "65002",
        "--router-id",
        "192.0.2.2",
        "--peer",
        listen,
        "--peer-as",
        "65001",
        "--port",
        port,
        "--bind",
        active,
        "--hold",
        "3",
        "--connect-retry",
        "1",
        "--password",
        &files.1,
    ]);
    // Read at the start: wait until both have, then remove them.
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::fs::remove_file(&files.0);
    let _ = std::fs::remove_file(&files.1);
    (passive, connecting)
}

#[test]
fn matching_tcp_md5_keys_come_up() {
    let (a, b) = pair("127.0.0.21", "127.0.0.22", "17901", ("s3cret", "s3cret"));
    assert!(a.established(Duration::from_secs(10)), "passive side");
    assert!(b.established(Duration::from_secs(2)), "connecting side");
}

#[test]
fn a_wrong_tcp_md5_key_never_comes_up() {
    let (a, b) = pair("127.0.0.23", "127.0.0.24", "17902", ("s3cret", "wrong"));
    assert!(!a.established(Duration::from_secs(4)));
    assert!(!b.established(Duration::from_millis(100)));
}
