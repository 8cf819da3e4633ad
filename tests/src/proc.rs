//! Running commands and the guards of what the harness starts: [`run_cmd`], [`poll`],
//! [`Proc`], [`WorkDir`].

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A number unique within this process, for names of namespaces and work dirs.
pub(crate) fn next_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `program args` to completion (bounded by `timeout`) and returns its stdout, or an
/// error with the exit status and stderr.
pub fn run_cmd(program: &str, args: &[&str], timeout: Duration) -> Result<String, String> {
    let (status, stdout, stderr) = run_capture(program, args, timeout)?;
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{program} {}` failed ({status}): {}{}",
            args.join(" "),
            stderr.trim(),
            if stderr.trim().is_empty() {
                stdout.trim()
            } else {
                ""
            }
        ))
    }
}

/// Runs `program args` to completion (bounded by `timeout`: killed after it) and returns
/// its exit status, stdout and stderr, whatever the status.
pub fn run_capture(
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<(ExitStatus, String, String), String> {
    let show = || format!("`{program} {}`", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", show()))?;
    // Drain both pipes in threads so a chatty command cannot block on a full pipe.
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let t_out = thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut se, &mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not finish within {timeout:?}", show()));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", show())),
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

/// Polls `f` every `every` until it returns `Some`, at most until `timeout` has passed.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Waits (10 s at most) until a freshly started daemon `p` answers on its control channel,
/// or fails saying whether it died or stayed silent, with its stderr and log.
pub(crate) fn await_control(
    p: &mut Proc,
    log: &Path,
    name: &str,
    control: &str,
    mut answers: impl FnMut() -> bool,
) -> Result<(), String> {
    let ready = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        if !p.is_running() {
            return Some(false);
        }
        answers().then_some(true)
    });
    let tails = || {
        format!(
            "stderr:\n{}\nlog:\n{}",
            tail(p.stderr_path(), 20),
            tail(log, 20)
        )
    };
    match ready {
        Some(true) => Ok(()),
        Some(false) => Err(format!("{name} exited at start; {}", tails())),
        None => Err(format!("{control} did not answer within 10 s; {}", tails())),
    }
}

/// Polls `check` every `every` until it returns `Ok`, at most `timeout`: how long it took,
/// or the last error it gave.
/// Sets its flag when dropped, also when the test panics: a watcher thread polling the
/// flag then ends, and the scope that spawned it can join it.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Polls `f` every 20 ms until it gives a value (at most `timeout`); panics with `what`
/// and `f`'s last error when it never does.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    let got = poll(timeout, Duration::from_millis(20), || match f() {
        Ok(v) => Some(v),
        Err(e) => {
            last = e;
            None
        }
    });
    got.unwrap_or_else(|| panic!("{what}: not within {timeout:?}: {last}"))
}

pub fn poll_ok(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let t = Instant::now();
    let mut last = String::new();
    let ok = poll(timeout, every, || match check() {
        Ok(()) => Some(()),
        Err(e) => {
            last = e;
            None
        }
    });
    ok.map(|()| t.elapsed()).ok_or(last)
}

/// The last `lines` lines of a text file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------- WorkDir

/// A scratch directory `/tmp/bgpt-<pid>-<n>-<tag>` for configs, sockets and logs.
///
/// Removed on drop, unless the thread is panicking (a failed test) or `KEEP_WORK=1`: then
/// it is kept and its path printed.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates a fresh directory.
    pub fn new(tag: &str) -> Result<Self, String> {
        let path = PathBuf::from(format!(
            "/tmp/bgpt-{}-{}-{tag}",
            std::process::id(),
            next_id()
        ));
        fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os("KEEP_WORK").is_some_and(|v| v == "1") {
            eprintln!("work dir kept: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------- Proc

/// A child process started by this harness, stopped by its PID when dropped.
///
/// The child is only ever signalled while it has not been reaped, so its PID cannot have
/// been reused by another process.
#[derive(Debug)]
pub struct Proc {
    label: String,
    child: Child,
    exited: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// The name given at spawn time.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file that receives its stdout (unless piped to the harness).
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// The file that receives its stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// Its exit status, once it has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.exited = Some(st);
        }
        self.exited
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Sends `signal` (a name such as `TERM`) to the child, if it has not been reaped.
    pub fn signal(&mut self, signal: &str) -> Result<(), String> {
        if self.exited.is_some() {
            return Ok(());
        }
        // Not reaped yet (a zombie at worst): the PID is still this child's.
        let pid = self.child.id().to_string();
        run_cmd("kill", &["-s", signal, &pid], Duration::from_secs(5)).map(|_| ())
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, Duration::from_millis(20), || self.try_exit())
    }

    /// SIGTERM, wait at most `grace`, then SIGKILL; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exited {
            return Some(st);
        }
        let _ = self.signal("TERM");
        if let Some(st) = self.wait_exit(grace) {
            return Some(st);
        }
        eprintln!(
            "{} (pid {}) ignored SIGTERM for {grace:?}: killing it",
            self.label,
            self.pid()
        );
        let _ = self.child.kill();
        self.wait_exit(Duration::from_secs(5))
    }

    /// Takes the piped stdout (only when spawned with `pipe_stdout`).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(3));
    }
}

/// [`Netns::spawn`](crate::Netns::spawn) by namespace name.
pub(crate) fn spawn_in(
    ns: &str,
    dir: &Path,
    label: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    pipe_stdout: bool,
) -> Result<Proc, String> {
    let stdout = dir.join(format!("{label}.stdout"));
    let stderr = dir.join(format!("{label}.stderr"));
    let open = |p: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| format!("cannot open {}: {e}", p.display()))
    };
    let err_file = open(&stderr)?;
    // `ip netns exec` execs the program (no fork): the child's PID is the program's. An
    // empty `ns` is the host's namespace (a server the test reaches on loopback).
    let mut cmd = if ns.is_empty() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    };
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::from(err_file));
    for (k, v) in env {
        cmd.env(k, v);
    }
    if pipe_stdout {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::from(open(&stdout)?));
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {} in {}: {e}", program.display(), ns))?;
    Ok(Proc {
        label: label.to_owned(),
        child,
        exited: None,
        stdout,
        stderr,
    })
}

/// Finds `program` on `PATH` (or as given, when it contains a slash).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
