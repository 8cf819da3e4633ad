//! A real etcd (Debian's `etcd-server`, 3.4) for the agent's tests: one member, its data in
//! a directory of the test, listening on loopback at free ports ([`Etcd::start`]) or on an
//! address inside a namespace of the test ([`Etcd::start_in`]); stopped by its PID and
//! started again on the same data ([`Etcd::stop`], [`Etcd::start_again`]). Keys are
//! written with `etcdctl` (Debian's `etcd-client`), in the same namespace, or many at
//! one revision each through etcd's JSON gateway ([`Etcd::put_each`]).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::proc::{Proc, poll, run_cmd, spawn_in, tail, which};

/// How to install etcd when it is missing.
pub const ETCD_INSTALL_HINT: &str =
    "etcd missing: run tests/scripts/install-peers.sh (Debian etcd-server and etcd-client)";

/// One etcd member started by the test.
#[derive(Debug)]
pub struct Etcd {
    proc: Option<Proc>,
    /// The namespace's name, empty for the host's.
    ns: String,
    dir: PathBuf,
    addr: IpAddr,
    client_port: u16,
    peer_port: u16,
    extra: Vec<String>,
    starts: usize,
    tls: Option<TlsFiles>,
}

/// The PEM files of a TLS etcd ([`Etcd::start_tls`]): a test CA, the server's certificate
/// (for 127.0.0.1) and a client certificate, both signed by it.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA's certificate (`ETCD_CA_CERT_FILE`).
    pub ca: PathBuf,
    /// The client's certificate (`ETCD_CERT_FILE`).
    pub cert: PathBuf,
    /// The client's key (`ETCD_KEY_FILE`).
    pub key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

/// Makes a CA, a server certificate for `ip` and a client certificate in `dir` with
/// `openssl` (P-256 keys, valid two days).
fn make_certs(dir: &Path, ip: &str) -> Result<TlsFiles, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let script = format!(
        r#"set -e
cd '{dir}'
key() {{ openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }}
key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=bgpt-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
sign() {{
    key "$1.key"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=IP:{ip}\n' "$2" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}}
sign server serverAuth
sign client clientAuth
"#,
        dir = dir.display()
    );
    run_cmd("sh", &["-c", &script], Duration::from_secs(30))?;
    Ok(TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("client.pem"),
        key: dir.join("client.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    })
}

/// A free TCP port on 127.0.0.1 (the OS's pick; free when returned).
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot pick a free port: {e}"))
}

impl Etcd {
    /// Starts etcd on 127.0.0.1 (host namespace) at free ports, its data in `dir/etcd`.
    /// `extra` are more `etcd` flags (`--max-txn-ops=2000`).
    pub fn start(dir: &Path, extra: &[&str]) -> Result<Self, String> {
        let (client_port, peer_port) = (free_port()?, free_port()?);
        Self::launch(
            String::new(),
            dir,
            Ipv4Addr::LOCALHOST.into(),
            client_port,
            peer_port,
            extra,
        )
    }

    /// Starts etcd on 127.0.0.1 at free ports, serving HTTPS only and asking every client
    /// for a certificate of the test CA ([`Etcd::tls`]).
    pub fn start_tls(dir: &Path) -> Result<Self, String> {
        let tls = make_certs(&dir.join("tls"), "127.0.0.1")?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let mut etcd = Self::new(
            String::new(),
            dir,
            Ipv4Addr::LOCALHOST.into(),
            client_port,
            peer_port,
            &[],
        )?;
        etcd.extra = vec![
            format!("--cert-file={}", tls.server_cert.display()),
            format!("--key-file={}", tls.server_key.display()),
            format!("--trusted-ca-file={}", tls.ca.display()),
            "--client-cert-auth".to_owned(),
        ];
        etcd.tls = Some(tls);
        etcd.start_again()?;
        Ok(etcd)
    }

    /// The certificates, for a TLS etcd.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Starts etcd inside `ns` on `addr` (ports 2379 and 2380, the namespace's own).
    pub fn start_in(ns: &Netns, dir: &Path, addr: IpAddr, extra: &[&str]) -> Result<Self, String> {
        Self::launch(ns.name().to_owned(), dir, addr, 2379, 2380, extra)
    }

    fn launch(
        ns: String,
        dir: &Path,
        addr: IpAddr,
        client_port: u16,
        peer_port: u16,
        extra: &[&str],
    ) -> Result<Self, String> {
        let mut etcd = Self::new(ns, dir, addr, client_port, peer_port, extra)?;
        etcd.start_again()?;
        Ok(etcd)
    }

    fn new(
        ns: String,
        dir: &Path,
        addr: IpAddr,
        client_port: u16,
        peer_port: u16,
        extra: &[&str],
    ) -> Result<Self, String> {
        if which("etcd").is_none() || which("etcdctl").is_none() {
            return Err(ETCD_INSTALL_HINT.to_owned());
        }
        let data = dir.join("etcd");
        std::fs::create_dir_all(&data)
            .map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        Ok(Self {
            proc: None,
            ns,
            dir: dir.to_owned(),
            addr,
            client_port,
            peer_port,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            starts: 0,
            tls: None,
        })
    }

    fn host(&self) -> String {
        match self.addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        }
    }

    /// The client URL (`http://ADDR:PORT`, `https://` with TLS), for `ETCD_ENDPOINTS`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host(), self.client_port)
    }

    /// Where its data is.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("etcd")
    }

    /// Its PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Starts it (again, after [`Etcd::stop`]) on the same data and ports; waits until it
    /// answers (at most 20 s).
    pub fn start_again(&mut self) -> Result<(), String> {
        if self.proc.is_some() {
            return Ok(());
        }
        self.starts += 1;
        let peer = format!("http://{}:{}", self.host(), self.peer_port);
        let name = format!("bgpt{}", std::process::id());
        let mut args: Vec<String> = vec![
            format!("--name={name}"),
            format!("--data-dir={}", self.data_dir().display()),
            format!("--listen-client-urls={}", self.endpoint()),
            format!("--advertise-client-urls={}", self.endpoint()),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={name}={peer}"),
            "--initial-cluster-state=new".to_owned(),
            "--log-level=warn".to_owned(),
            "--logger=zap".to_owned(),
        ];
        args.extend(self.extra.iter().cloned());
        let etcd = which("etcd").ok_or(ETCD_INSTALL_HINT)?;
        let label = format!("etcd-{}", self.starts);
        // Debian's etcd 3.4 refuses to start on arm64 etc. without this; harmless here.
        let env = [("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)];
        let proc = spawn_in(&self.ns, &self.dir, &label, &etcd, &args, &env, false)?;
        let stderr = proc.stderr_path().to_owned();
        self.proc = Some(proc);
        let up = poll(Duration::from_secs(20), Duration::from_millis(100), || {
            self.ctl(&["endpoint", "health"]).ok()
        });
        if up.is_none() {
            let running = self.proc.as_mut().is_some_and(Proc::is_running);
            return Err(format!(
                "etcd did not answer within 20 s (running: {running}); its log:\n{}",
                tail(&stderr, 20)
            ));
        }
        Ok(())
    }

    /// Stops it by its PID (SIGTERM, then SIGKILL); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(5));
        }
    }

    /// Runs `etcdctl ARGS` against it (in its namespace), bounded to 30 s; its stdout.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let endpoint = format!("--endpoints={}", self.endpoint());
        let mut argv: Vec<&str> = Vec::new();
        if !self.ns.is_empty() {
            argv.extend(["netns", "exec", &self.ns, "etcdctl"]);
        }
        argv.push(&endpoint);
        let certs: Vec<String> = self
            .tls
            .iter()
            .flat_map(|t| {
                [
                    format!("--cacert={}", t.ca.display()),
                    format!("--cert={}", t.cert.display()),
                    format!("--key={}", t.key.display()),
                ]
            })
            .collect();
        argv.extend(certs.iter().map(String::as_str));
        argv.push("--dial-timeout=2s");
        argv.push("--command-timeout=20s");
        argv.extend_from_slice(args);
        let program = if self.ns.is_empty() { "etcdctl" } else { "ip" };
        run_cmd(program, &argv, Duration::from_secs(30))
    }

    /// Puts `key` = `value`.
    pub fn put(&self, key: &str, value: &str) -> Result<(), String> {
        // `--` so that a value starting with `-` is not a flag.
        self.ctl(&["put", "--", key, value]).map(|_| ())
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<(), String> {
        self.ctl(&["del", "--", key]).map(|_| ())
    }

    /// Puts every pair in one transaction (one revision): needs `--max-txn-ops` at least
    /// `kvs.len()` on the server (etcd's default is 128). Keys must not contain spaces.
    pub fn put_all(&self, kvs: &[(String, String)]) -> Result<(), String> {
        let mut script = String::from("\n");
        for (k, v) in kvs {
            // etcdctl reads a double-quoted argument as a Go string literal, of which a
            // JSON string is one.
            let quoted = serde_json::Value::String(v.clone()).to_string();
            script.push_str(&format!("put {k} {quoted}\n"));
        }
        // Ends the success requests, then the (empty) failure requests.
        script.push_str("\n\n");
        let endpoint = format!("--endpoints={}", self.endpoint());
        let mut cmd = if self.ns.is_empty() {
            Command::new("etcdctl")
        } else {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.ns, "etcdctl"]);
            c
        };
        let mut child = cmd
            .args([endpoint.as_str(), "--command-timeout=60s", "txn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run etcdctl txn: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("etcdctl stdin not piped")?;
        // A writer thread: etcdctl may answer before it has read everything.
        let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                let _ = writer.join();
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                let stdout = String::from_utf8_lossy(&out.stdout);
                return if st.success() && stdout.starts_with("SUCCESS") {
                    Ok(())
                } else {
                    Err(format!(
                        "etcdctl txn failed ({st}): {} {}",
                        stdout.lines().next().unwrap_or(""),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("etcdctl txn did not finish within 90 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Puts every pair with a request of its own (one revision each) through etcd's
    /// JSON gateway (`POST /v3/kv/put`), on 16 HTTP connections at once (etcd commits
    /// concurrent requests together: hundreds per second where `etcdctl put` takes a
    /// process and a disk sync each), opened from threads that enter etcd's namespace;
    /// the pairs of one connection go in order. Plain HTTP only; each request bounded to
    /// 10 s.
    pub fn put_each(&self, kvs: &[(String, String)]) -> Result<(), String> {
        if self.tls.is_some() {
            return Err("put_each: plain HTTP only".to_owned());
        }
        let addr = std::net::SocketAddr::new(self.addr, self.client_port);
        let bodies: Vec<String> = kvs
            .iter()
            .map(|(k, v)| {
                serde_json::json!({ "key": base64(k.as_bytes()), "value": base64(v.as_bytes()) })
                    .to_string()
            })
            .collect();
        let per = bodies.len().div_ceil(16).max(1);
        let threads: Vec<_> = bodies
            .chunks(per)
            .map(|chunk| {
                let ns = self.ns.clone();
                let chunk = chunk.to_vec();
                std::thread::spawn(move || put_on_one_connection(&ns, addr, &chunk))
            })
            .collect();
        for t in threads {
            t.join()
                .map_err(|_| "put_each: a thread panicked".to_owned())??;
        }
        Ok(())
    }

    /// The store's current revision.
    pub fn revision(&self) -> Result<i64, String> {
        let out = self.ctl(&["endpoint", "status", "--write-out=json"])?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| format!("etcdctl endpoint status: {e}: {out}"))?;
        v[0]["Status"]["header"]["revision"]
            .as_i64()
            .ok_or_else(|| format!("no revision in {out}"))
    }

    /// Compacts the history up to `revision` (physically: watches from before it are
    /// cancelled with its compact revision).
    pub fn compact(&self, revision: i64) -> Result<(), String> {
        self.ctl(&["compaction", "--physical", &revision.to_string()])
            .map(|_| ())
    }
}

/// Standard base64 with padding (the gateway's `bytes` fields).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `POST /v3/kv/put` of each body in order on one connection to `addr`, from inside
/// namespace `ns` (the host's when empty).
fn put_on_one_connection(
    ns: &str,
    addr: std::net::SocketAddr,
    bodies: &[String],
) -> Result<(), String> {
    if !ns.is_empty() {
        enter_netns(ns)?;
    }
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| s.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| e.to_string())?;
    let mut reader = std::io::BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    for body in bodies {
        write!(
            s,
            "POST /v3/kv/put HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| format!("put: {e}"))?;
        read_response(&mut reader)?;
    }
    Ok(())
}

/// Moves the calling thread into network namespace `ns` (`/var/run/netns/NS`).
#[allow(unsafe_code)]
fn enter_netns(ns: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd as _;
    let f = std::fs::File::open(format!("/var/run/netns/{ns}"))
        .map_err(|e| format!("namespace {ns}: {e}"))?;
    // SAFETY: setns on a valid namespace file descriptor; it changes this thread only.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Reads one HTTP/1.1 response with a `Content-Length`; an error unless its status is 200.
fn read_response(r: &mut impl std::io::BufRead) -> Result<(), String> {
    let mut status = String::new();
    r.read_line(&mut status)
        .map_err(|e| format!("response: {e}"))?;
    let mut len = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)
            .map_err(|e| format!("response: {e}"))?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let len = len.ok_or_else(|| format!("response without Content-Length: {status}"))?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .map_err(|e| format!("response body: {e}"))?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{}: {}",
            status.trim_end(),
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(())
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `projectcalico.org/v3` resource as Calico's client stores it in etcd: `kind`, the
/// API version, the name and `spec`, as JSON.
pub fn calico_resource(kind: &str, name: &str, spec: serde_json::Value) -> String {
    serde_json::json!({
        "kind": kind,
        "apiVersion": "projectcalico.org/v3",
        "metadata": { "name": name },
        "spec": spec,
    })
    .to_string()
}

/// One node beside etcd, the layout of the single-agent tests: a fresh work dir for
/// `tag`, a hub namespace `etcd` holding etcd on `etcd` (a /24), and a namespace `n1`
/// attached to the hub on `node` (a /24). Panics without root.
pub fn etcd_and_node(
    tag: &str,
    etcd: &str,
    node: &str,
) -> (crate::WorkDir, crate::Hub, Etcd, Netns) {
    if let Err(e) = crate::require_root() {
        panic!("{e}");
    }
    let dir = crate::WorkDir::new(tag).expect("work dir");
    let hub = crate::Hub::create("etcd", &[&format!("{etcd}/24")]).expect("hub");
    let store = Etcd::start_in(hub.ns(), dir.path(), etcd.parse().unwrap(), &[]).expect("etcd");
    let n1 = Netns::create("n1").expect("netns");
    hub.attach(&n1, &[&format!("{node}/24")]).expect("attach");
    (dir, hub, store, n1)
}
