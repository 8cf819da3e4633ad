//! The client side of the control socket, blocking (for `rr-daemon ctl --socket`): one
//! request line out, one reply line back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{Reply, Request};

/// How long a reply may take (a reload of a large file included).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Sends `req` to the socket at `path` and returns the reply; the error is one line
/// (`cannot reach the daemon at PATH: ...`).
pub fn call(path: &Path, req: &Request) -> Result<Reply, String> {
    let unreachable = |e: std::io::Error| {
        let cause = match e.kind() {
            std::io::ErrorKind::NotFound => "no such socket".to_owned(),
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (the socket is for its owner and group)".to_owned()
            }
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                "no answer in time".to_owned()
            }
            _ => e.to_string(),
        };
        format!("cannot reach the daemon at {}: {cause}", path.display())
    };
    let mut stream = UnixStream::connect(path).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(unreachable)?;
    if answer.is_empty() {
        return Err(format!(
            "the daemon at {} closed the connection without an answer",
            path.display()
        ));
    }
    if answer.starts_with("0001 BIRD") {
        // BIRD's greeting: `bird -s SOCK` (ours or BIRD's), not `[control] socket`.
        return Err(format!(
            "{} is a BIRD control socket (bird -s): ask it with birdc or birdcl",
            path.display()
        ));
    }
    serde_json::from_str(&answer).map_err(|e| format!("unexpected answer from the daemon: {e}"))
}
