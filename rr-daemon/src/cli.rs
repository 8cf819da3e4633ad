//! The command line. `rr-daemon --config FILE` runs the daemon in the foreground: SIGHUP
//! reloads the file, SIGTERM (or SIGINT) stops every session and exits 0: a planned
//! restart, where peers that negotiated graceful restart keep our routes until we are
//! back (`--graceful-restart`), the others get a Cease (`[speaker] graceful_stop`);
//! SIGUSR2 closes every session without a Cease and exits 0 (a restart for every peer,
//! graceful restart helpers or not).
//! `rr-daemon session ...` brings up one BGP session and reports its
//! events, one line each (JSON with `--json`), until SIGINT or SIGTERM, when it sends a
//! Cease and exits 0. `rr-daemon check --config FILE` checks a configuration file
//! ([`crate::config`]) and prints a one-line summary, or every error, one a line, as
//! `FILE:LINE:COL: KEY: message` and exits 1. `rr-daemon ctl ...` asks a running daemon
//! through its control API ([`crate::ctl`]). The daemon serves that API ([`crate::api`])
//! on `[api] listen` unless `[api] enabled = false`. `rr-daemon man` prints the manual
//! page (roff) and `rr-daemon completions SHELL` a shell completion script, both
//! generated from this definition. Under systemd (`NOTIFY_SOCKET` set) the daemon reports
//! its state ([`crate::notify`]); `RR_ROUTER_ID`, `RR_ASN` and `RR_CLUSTER_ID` override
//! the file ([`crate::config::Overrides`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use bgp_fsm::Config;
use bgp_wire::{Family, FamilySet, Notification};
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::session::{Command, SessionEvent, SessionSpec, spawn};

/// `rr-daemon --version`: the crate's version and the commit it was built from (`unknown`
/// when built outside git without `RR_COMMIT`; see `build.rs`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RR_COMMIT"), ")");

/// BGP speaker and route reflector.
///
/// With --config FILE, runs the daemon in the foreground: SIGHUP reloads the file (peers
/// whose settings did not change keep their sessions), SIGTERM or SIGINT stops and exits
/// 0: by default ([speaker] graceful_stop) a planned restart, where the sessions that
/// negotiated graceful restart close without a Cease and the others get one
/// (graceful_stop = false: a Cease to every peer); SIGUSR2 stops for a restart: every
/// session closes without a Cease, so that graceful restart helpers keep our routes until
/// we are back with --graceful-restart (an upgrade without traffic loss). The file's keys are in CONFIG.md and in the operator's manual
/// (docs/manual.md).
///
/// Environment: RR_ROUTER_ID, RR_ASN and RR_CLUSTER_ID replace [speaker] router_id, asn
/// and cluster_id of the file (an empty variable counts as unset). With NOTIFY_SOCKET set
/// (systemd's Type=notify), READY=1 is sent once the listeners are bound and the
/// configuration applied, RELOADING=1 and READY=1 around a reload, STOPPING=1 when
/// stopping. RUST_LOG sets the log filter (default info).
#[derive(Parser)]
#[command(name = "rr-daemon", version = VERSION)]
struct Cli {
    /// Run the daemon with this configuration file (see CONFIG.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start as a restarting speaker (RFC 4724, BIRD's -R): helpers keep our routes, and
    /// ours go out only once every peer's End-of-RIB is in (or the restart time passed).
    #[arg(long, requires = "config")]
    graceful_restart: bool,
    /// Log filter: error, warn, info, debug, trace, or RUST_LOG directives. Over RUST_LOG
    /// and [speaker] log_level at the start; a reload that changes log_level changes it.
    #[arg(long, value_name = "LEVEL", value_parser = log_level)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring up one BGP session and print its events until interrupted.
    Session(SessionArgs),
    /// Check a configuration file: print a one-line summary, or every error (one a line, exit 1).
    Check(CheckArgs),
    /// Ask a running daemon: peers, routes, status (HTTP API); reset, disable, enable,
    /// reload, announce, withdraw (control socket).
    Ctl(crate::ctl::CtlArgs),
    /// Print the manual page (roff): `rr-daemon man > rr-daemon.1`.
    Man(ManArgs),
    /// Print a shell completion script: `rr-daemon completions bash > rr-daemon.bash`.
    Completions(CompletionsArgs),
    /// The node agent: Calico's datastore (etcd v3) drives the speaker, no confd.
    Agent(crate::agent::run::AgentArgs),
}

#[derive(Args)]
struct ManArgs {
    /// Instead, write every page (rr-daemon.1 and one per subcommand, such as
    /// rr-daemon-ctl.1) into this directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct CheckArgs {
    /// The configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A BIRD 1.6 file (`bird.cfg`, with its includes): print the native TOML it
    /// translates to.
    #[arg(long)]
    bird: Option<PathBuf>,
    /// A BIRD 1.6 file for IPv6 (`bird6.cfg`): print the native TOML it translates to.
    #[arg(long)]
    bird6: Option<PathBuf>,
}

#[derive(Args)]
struct SessionArgs {
    /// Our AS number.
    #[arg(long)]
    local_as: u32,
    /// Our BGP identifier.
    #[arg(long)]
    router_id: Ipv4Addr,
    /// The peer's address.
    #[arg(long)]
    peer: IpAddr,
    /// The peer's AS number.
    #[arg(long)]
    peer_as: u32,
    /// The peer's port.
    #[arg(long, default_value_t = 179)]
    port: u16,
    /// Source address of our connections (and the address to listen on, with --listen).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Accept the peer's connections on this address and port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Never connect out; wait for the peer.
    #[arg(long)]
    passive: bool,
    /// Hold time we propose, in seconds.
    #[arg(long, default_value_t = 90)]
    hold: u16,
    /// Seconds between connection attempts.
    #[arg(long, default_value_t = 5)]
    connect_retry: u64,
    /// Seconds idle after an error before trying again (doubled on repeated errors).
    #[arg(long, default_value_t = 5)]
    idle_hold: u64,
    /// Seconds to wait for the peer's OPEN before sending ours (DelayOpen).
    #[arg(long)]
    delay_open: Option<u64>,
    /// Address families to offer.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ipv4-unicast,ipv6-unicast"
    )]
    families: Vec<String>,
    /// File holding the TCP-MD5 key (RFC 2385) of the session, `-` for standard input;
    /// one trailing newline is dropped. Keys are never given on the command line, where
    /// every user of the machine could read them.
    #[arg(long, value_name = "FILE")]
    password: Option<PathBuf>,
    /// GTSM (RFC 5082): send with TTL 255, accept packets from at most this many hops.
    #[arg(long)]
    ttl_security: Option<u8>,
    /// Print events as JSON lines.
    #[arg(long)]
    json: bool,
}

/// The process entry point: parses arguments, runs, and turns errors into a one-line
/// cause and a non-zero exit.
pub fn main() -> ExitCode {
    crate::memory::limit_arenas();
    // Started as `bird` or `bird6` (a symlink or a copy): BIRD's command line.
    let mut argv = std::env::args_os();
    if let Some(dialect) = argv
        .next()
        .as_deref()
        .and_then(crate::bird::argv::dialect_of)
    {
        let rest: Vec<std::ffi::OsString> = argv.collect();
        return crate::bird::argv::main(dialect, &rest);
    }
    let cli = Cli::parse();
    if let Some(l) = &cli.log_level {
        let _ = LOG_LEVEL.set(l.clone());
    }
    let job = match (cli.command, cli.config) {
        (Some(Cmd::Check(args)), _) => return check(&args),
        (Some(Cmd::Ctl(args)), _) => return crate::ctl::main(&args),
        (Some(Cmd::Man(args)), _) => return man(&args),
        (Some(Cmd::Completions(args)), _) => return completions(args.shell),
        (Some(Cmd::Session(args)), _) => Job::Session(args),
        (Some(Cmd::Agent(args)), _) => Job::Agent(args),
        (None, Some(path)) => {
            return run_daemon(ConfigSource::Toml(path), cli.graceful_restart, None);
        }
        (None, None) => {
            eprintln!("rr-daemon: nothing to do: give --config FILE (or a subcommand, see --help)");
            return ExitCode::FAILURE;
        }
    };
    run(job)
}

/// Where the daemon's configuration comes from: a native TOML file, or a BIRD file
/// translated ([`crate::bird`]). Read at the start and again at each SIGHUP.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// `rr-daemon --config FILE`.
    Toml(PathBuf),
    /// `bird -c FILE` / `bird6 -c FILE`.
    Bird(PathBuf, crate::bird::Dialect),
}

impl ConfigSource {
    /// The file.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Toml(p) | Self::Bird(p, _) => p,
        }
    }

    /// Reads and resolves the configuration; the error is one line, located.
    pub fn load(&self) -> Result<crate::config::Config, String> {
        self.load_translated().map(|(c, _)| c)
    }

    /// [`ConfigSource::load`], with the BIRD file's translation (its protocols as BIRD
    /// lists them, for the control socket) when the source is one.
    pub fn load_translated(
        &self,
    ) -> Result<(crate::config::Config, Option<crate::bird::Translation>), String> {
        match self {
            // The environment's overrides apply to the native file only: a BIRD file
            // comes from confd, which has already put the node's values in.
            Self::Toml(p) => crate::config::Config::load_with(p, &overrides())
                .map(|c| (c, None))
                .map_err(|e| e.to_string()),
            Self::Bird(p, d) => crate::bird::load(p, *d)
                .map(|t| (t.config.clone(), Some(t)))
                .map_err(|e| e.to_string()),
        }
    }
}

/// Runs the daemon on `source` in the foreground until SIGTERM or SIGINT (SIGHUP
/// reloads). `socket` is BIRD's `-s`: the control socket ([`crate::bird::control`]),
/// served for a BIRD file only, removed on exit.
pub fn run_daemon(
    source: ConfigSource,
    restarting: bool,
    socket: Option<&std::path::Path>,
) -> ExitCode {
    run(Job::Daemon(source, restarting, socket.map(PathBuf::from)))
}

fn run(job: Job) -> ExitCode {
    // `[speaker] log_format` decides text or JSON; a file that does not load is reported
    // by `daemon()` itself, in text. Loaded once, here, and handed on: a file of 100,000
    // routes takes seconds to read in a debug build.
    let mut loaded = None;
    let (json, level) = match &job {
        Job::Daemon(source, ..) => {
            let l = source.load_translated();
            let r = l.as_ref().map_or((false, None), |(c, _)| {
                (
                    c.speaker.log_format == crate::config::LogFormat::Json,
                    c.speaker.log_level.clone(),
                )
            });
            loaded = Some(l);
            r
        }
        // `agent --once` prints sessions; only warnings go to standard error.
        Job::Agent(a) if a.once => (false, Some("warn".to_owned())),
        Job::Session(_) | Job::Agent(_) => (false, None),
    };
    let flag = LOG_LEVEL.get().map(String::as_str);
    if let Err(e) = crate::logging::init(json, flag, level.as_deref()) {
        eprintln!("rr-daemon: cannot start logging: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rr-daemon: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match job {
            Job::Session(args) => session(args).await,
            Job::Daemon(source, restarting, socket) => {
                let loaded = loaded.unwrap_or_else(|| source.load_translated());
                daemon(source, loaded, restarting, socket).await
            }
            Job::Agent(args) => crate::agent::run::main(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rr-daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--log-level`, for [`run`].
static LOG_LEVEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn log_level(s: &str) -> Result<String, String> {
    crate::logging::check(s).map(|()| s.to_owned())
}

enum Job {
    Session(SessionArgs),
    Agent(crate::agent::run::AgentArgs),
    Daemon(ConfigSource, bool, Option<PathBuf>),
}

/// The daemon: the speaker on the configuration, until SIGTERM; SIGHUP reloads. With
/// `socket`, BIRD's control socket is served there (`configure` reloads as SIGHUP does,
/// `down` stops as SIGTERM does).
async fn daemon(
    source: ConfigSource,
    loaded: Result<(crate::config::Config, Option<crate::bird::Translation>), String>,
    restarting: bool,
    socket: Option<PathBuf>,
) -> anyhow::Result<()> {
    use crate::bird::control::{ControlSocket, Loaded, Request};
    use tokio::signal::unix::{SignalKind, signal};
    // Watched before anything is bound: a SIGTERM as soon as the API answers must stop
    // the daemon cleanly (its sockets' files removed), not kill it.
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("cannot watch SIGUSR2")?;
    let overrides = overrides();
    let (config, translation) = loaded.map_err(|e| anyhow::anyhow!("{e}"))?;
    if matches!(source, ConfigSource::Toml(_)) && !overrides.is_empty() {
        info!(
            "overridden from the environment: {}",
            overrides.names().join(", ")
        );
    }
    info!("{}", config.summary());
    let api = config.api;
    // Bound before the speaker starts: a taken address fails the start cleanly.
    let api_listener = if api.enabled {
        Some(crate::api::bind(api.listen).await?)
    } else {
        None
    };
    // Bound before the speaker starts too; its file goes when `control` is dropped.
    let control = match (&socket, &source, &translation) {
        (None, ..) => None,
        (Some(path), ConfigSource::Bird(file, dialect), Some(t)) => {
            let s = ControlSocket::bind(path)
                .await
                .with_context(|| format!("cannot create control socket {}", path.display()))?;
            let loaded = Loaded {
                config: config.clone(),
                translation: t.clone(),
                file: file.clone(),
                dialect: *dialect,
                at: jiff::Timestamp::now(),
            };
            Some((s, tokio::sync::watch::channel(std::sync::Arc::new(loaded))))
        }
        (Some(_), ..) => anyhow::bail!("a control socket is served for a BIRD file only"),
    };
    // Never closed without a socket: its `recv` then waits for ever.
    let (control_tx, mut control_rx) = mpsc::channel::<Request>(8);
    let running_control = config.control.clone();
    let running_config = config.clone();
    let options = crate::running::StartOptions {
        restarting,
        api_listener,
        datastore: None,
        not_counted: None,
    };
    let (running, mut core) = crate::running::Running::start(config, options).await?;
    let speaker = running.speaker.clone();
    let mut loaded_tx = None;
    let control_task = control.map(|(socket, (tx, rx))| {
        loaded_tx = Some(tx);
        info!("control socket at {}", socket.path().display());
        let speaker = speaker.clone();
        let requests = control_tx.clone();
        tokio::spawn(async move { socket.serve(speaker, rx, requests).await })
    });
    // `[control] socket`: the actions of `ctl --socket` (reload comes back here).
    // Never closed without a socket: its `recv` then waits for ever.
    let (ctl_reload_tx, mut ctl_reload_rx) = mpsc::channel::<crate::control::ReloadRequest>(4);
    let ctl_task = actions_socket(
        &running_control,
        &speaker,
        running.api_options(),
        &ctl_reload_tx,
    )?;
    let mut reloader = Reloader {
        current: running_config,
        loaded_tx,
        running,
    };
    let mut for_restart = false;
    // Listeners bound (by `Speaker::start` and `api::bind` above), the configuration
    // applied, signals watched: systemd may now start what depends on us.
    crate::notify::ready();
    loop {
        tokio::select! {
            // The core owns every session: a process without it must not look alive.
            r = &mut core => match r {
                Err(e) if e.is_panic() => anyhow::bail!("the speaker's core panicked"),
                _ => anyhow::bail!("the speaker's core stopped unexpectedly"),
            },
            r = tokio::signal::ctrl_c() => { r.context("cannot watch SIGINT")?; break; }
            _ = term.recv() => break,
            _ = usr2.recv() => { for_restart = true; break; }
            _ = hup.recv() => {
                if let Err(e) = reloader.reload(&source).await {
                    warn!("reload refused: {e}");
                }
            }
            Some(done) = ctl_reload_rx.recv() => {
                let r = reloader.reload(&source).await;
                if let Err(e) = &r {
                    warn!("reload refused: {e}");
                }
                let _ = done.send(r);
            }
            Some(req) = control_rx.recv() => match req {
                Request::Down => {
                    info!("shutdown requested on the control socket");
                    break;
                }
                Request::Configure { check, file, done } => {
                    let from = match (file, &source) {
                        (Some(f), ConfigSource::Bird(_, d)) => ConfigSource::Bird(f, *d),
                        (_, s) => s.clone(),
                    };
                    let path = from.path().display().to_string();
                    if check {
                        let r = from.load_translated().map(|_| ());
                        let _ = done.send(crate::bird::socket::configure_reply(&path, r, false));
                        continue;
                    }
                    let r = reloader.reload(&from).await.map(|_| ());
                    if let Err(e) = &r {
                        warn!("reload refused: {e}");
                    }
                    let _ = done.send(crate::bird::socket::configure_reply(&path, r, true));
                }
            },
        }
    }
    crate::notify::stopping();
    // The sockets' files go with their tasks.
    for t in [control_task, ctl_task].into_iter().flatten() {
        t.abort();
        let _ = t.await;
    }
    if for_restart {
        // No Cease: the connections just close (the runtime goes, and every socket with
        // it), which a graceful restart helper (RFC 4724 §4.2) takes as our restart and
        // keeps our routes, stale, until we are back with `--graceful-restart`.
        info!("stopping for a restart (SIGUSR2): sessions closed without a Cease");
        return Ok(());
    }
    // Kernel routes stay (BIRD's `persist`): the next start adopts them.
    info!("stopping: every session ends (see the speaker's line on how)");
    speaker.shutdown().await?;
    let _ = tokio::time::timeout(Duration::from_secs(3), core).await;
    Ok(())
}

/// What a reload changes besides the speaker: the watched settings of the FIB and
/// learning tasks, and the BIRD control socket's view of the file. One reload for
/// SIGHUP, BIRD's `configure` and `ctl reload` alike.
struct Reloader {
    /// The configuration running now.
    current: crate::config::Config,
    loaded_tx: Option<tokio::sync::watch::Sender<std::sync::Arc<crate::bird::control::Loaded>>>,
    /// The speaker and its tasks; [`crate::running::Running::reload`] applies.
    running: crate::running::Running,
}

impl Reloader {
    /// Reads `from` and applies it: the speaker's peers and routes, `[fib]`, `[learn]`,
    /// the BIRD socket's view. A file equal to the running configuration changes
    /// nothing; a bad one changes nothing and is the error, `FILE:LINE:COL: message`.
    async fn reload(
        &mut self,
        from: &ConfigSource,
    ) -> Result<crate::control::ReloadReport, String> {
        let file = from.path().display().to_string();
        crate::notify::reloading();
        let r = self.apply(from, file).await;
        crate::notify::ready();
        r
    }

    async fn apply(
        &mut self,
        from: &ConfigSource,
        file: String,
    ) -> Result<crate::control::ReloadReport, String> {
        let (new, translation) = from.load_translated()?;
        if let (Some(tx), Some(t), ConfigSource::Bird(_, dialect)) =
            (&self.loaded_tx, translation, from)
        {
            tx.send_replace(std::sync::Arc::new(crate::bird::control::Loaded {
                config: new.clone(),
                translation: t,
                file: from.path().to_owned(),
                dialect: *dialect,
                at: jiff::Timestamp::now(),
            }));
        }
        let mut report = crate::control::ReloadReport {
            file,
            ..Default::default()
        };
        if new == self.current {
            info!(file = report.file, "configuration unchanged: nothing to do");
            report.unchanged = true;
            return Ok(report);
        }
        let old = &self.current;
        for (what, changed) in [
            ("[speaker]", old.speaker != new.speaker),
            ("[api] (at the next start)", old.api != new.api),
            ("[control] (at the next start)", old.control != new.control),
            ("[fib]", old.fib != new.fib),
            ("[learn]", old.learn != new.learn),
            ("[[policy]]", old.policies != new.policies),
            (
                "[[route]]/[[originate]]",
                old.routes != new.routes || old.originate != new.originate,
            ),
            (
                "[[dynamic_neighbors]]",
                old.dynamic_neighbors != new.dynamic_neighbors,
            ),
            ("[mesh]", old.mesh != new.mesh),
        ] {
            if changed {
                report.other.push(what.to_owned());
            }
        }
        match crate::logging::reloaded(
            self.current.speaker.log_level.as_deref(),
            new.speaker.log_level.as_deref(),
        ) {
            Ok(Some(f)) => info!("log level now {f}"),
            Ok(None) => {}
            Err(e) => warn!("log level unchanged: {e}"),
        }
        // [fib] and [learn] apply at once (their tasks log what changed); turning either
        // on or off, and [api], need a start (logged by `Running::reload`).
        self.current = new.clone();
        let diff = self.running.reload(new).await.map_err(|e| e.to_string())?;
        report.set_peers(diff);
        Ok(report)
    }
}

/// Creates `[control] socket` and serves the actions on it. The default path that
/// cannot be created (not root, or another daemon's) is logged and left out; one set in
/// the file is an error.
pub(crate) fn actions_socket(
    control: &crate::config::Control,
    speaker: &crate::speaker::Speaker,
    api: &crate::api::ApiOptions,
    reload: &mpsc::Sender<crate::control::ReloadRequest>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if !control.enabled {
        return Ok(None);
    }
    let socket = match crate::control::ControlSocket::bind(&control.socket) {
        Ok(s) => s,
        Err(e) if control.explicit => {
            return Err(anyhow::anyhow!("cannot create the control socket: {e}"));
        }
        Err(e) => {
            warn!(
                "no control socket (ctl --socket): {e}; set [control] socket to a path this user can create"
            );
            return Ok(None);
        }
    };
    info!(path = %socket.path().display(), "control socket for actions (ctl --socket)");
    let router = crate::api::router(speaker.clone(), api.clone());
    let speaker = speaker.clone();
    let reload = reload.clone();
    Ok(Some(tokio::spawn(async move {
        socket.serve(speaker, router, reload).await;
    })))
}

/// The environment's overrides of the file; a bad value is reported when the file is
/// loaded, as an error of its variable.
fn overrides() -> crate::config::Overrides {
    crate::config::Overrides::from_env()
}

/// `rr-daemon man`: the manual page, roff, on standard output; with `--dir`, every page
/// into that directory.
fn man(args: &ManArgs) -> ExitCode {
    if let Some(dir) = &args.dir {
        return match clap_mangen::generate_to(Cli::command(), dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "rr-daemon: cannot write the manual pages into {}: {e}",
                    dir.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    // As `generate_to` renders the main page of `--dir`, so that both are the same.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut page = Vec::new();
    match clap_mangen::Man::new(cmd).render(&mut page) {
        Ok(()) => write_out(&page, "the manual page"),
        Err(e) => {
            eprintln!("rr-daemon: cannot render the manual page: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `rr-daemon completions SHELL`: the completion script on standard output.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    // Into a buffer first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "rr-daemon", &mut script);
    write_out(&script, "the completion script")
}

fn write_out(bytes: &[u8], what: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rr-daemon: cannot write {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `rr-daemon check`: no runtime, no logging, one line out. The environment's overrides
/// apply, as they would to the daemon.
fn check(args: &CheckArgs) -> ExitCode {
    let bird = match (&args.bird, &args.bird6) {
        (Some(p), _) => Some((p, crate::bird::Dialect::Bird)),
        (_, Some(p)) => Some((p, crate::bird::Dialect::Bird6)),
        _ => None,
    };
    if let Some((path, dialect)) = bird {
        return match crate::bird::load(path, dialect) {
            Ok(t) => {
                print!("{}", t.toml);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rr-daemon: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(config) = &args.config else {
        eprintln!("rr-daemon: check needs --config, --bird or --bird6");
        return ExitCode::FAILURE;
    };
    match crate::config::Config::load_all(config, &overrides()) {
        Ok(cfg) => {
            println!("{}: ok: {}", config.display(), cfg.summary());
            ExitCode::SUCCESS
        }
        // Every mistake, one a line, in file order.
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("rr-daemon: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn family(name: &str) -> anyhow::Result<Family> {
    match name {
        "ipv4-unicast" | "ipv4" => Ok(Family::Ipv4Unicast),
        "ipv6-unicast" | "ipv6" => Ok(Family::Ipv6Unicast),
        other => anyhow::bail!("unknown family {other:?} (ipv4-unicast or ipv6-unicast)"),
    }
}

async fn session(a: SessionArgs) -> anyhow::Result<()> {
    let mut cfg = Config::new(a.local_as, a.router_id, a.peer_as);
    let families = a
        .families
        .iter()
        .map(|f| family(f))
        .collect::<anyhow::Result<FamilySet>>()?;
    cfg.set_families(families);
    cfg.passive = a.passive;
    cfg.timing.hold_time = a.hold;
    cfg.timing.connect_retry = Duration::from_secs(a.connect_retry);
    cfg.timing.idle_hold = Duration::from_secs(a.idle_hold);
    cfg.delay_open = a.delay_open.map(Duration::from_secs);
    anyhow::ensure!(
        a.hold == 0 || a.hold >= 3,
        "--hold must be 0 or at least 3 (RFC 4271 §4.2)"
    );
    let spec = SessionSpec {
        fsm: cfg,
        peer: a.peer,
        port: a.port,
        local: a.bind,
        interface: None,
        connect_timeout: Duration::from_secs(a.connect_retry.max(1)),
        password: match &a.password {
            Some(path) => Some(read_password(path)?),
            None => None,
        },
        // As the daemon's defaults: directly connected for eBGP, any distance for iBGP.
        ttl: match a.ttl_security {
            Some(hops) => crate::config::Ttl::Security(hops.max(1)),
            None => crate::config::Ttl::Multihop(if a.local_as == a.peer_as { 255 } else { 1 }),
        },
        admin_down: false,
    };
    let key = spec.password.clone();
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    let handle = spawn(spec, 0, ev_tx, Default::default());
    let in_tx = handle.inbound.clone();
    if let Some(addr) = a.listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        if let Some(k) = &key {
            // The peer's connections are signed too (RFC 2385): key it on the listener.
            crate::sockopt::set_md5_key(&listener, a.peer, k.expose().as_bytes())
                .with_context(|| format!("TCP-MD5 for {}", a.peer))?;
        }
        let peer = a.peer;
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, from)) if from.ip() == peer => {
                        if in_tx.send(stream).await.is_err() {
                            return;
                        }
                    }
                    Ok((_, from)) => {
                        warn!(%from, "refused connection: not a configured peer");
                    }
                    Err(e) => warn!("accept failed: {e}"),
                }
            }
        });
    }
    let started = Instant::now();
    let json = a.json;
    let printer = tokio::spawn(async move {
        while let Some(e) = ev_rx.recv().await {
            print_event(&e, started.elapsed(), json);
        }
    });
    shutdown_signal().await?;
    info!("stopping: sending Cease");
    let cease = Notification::cease_with_communication(
        bgp_wire::notification::subcode::cease::ADMIN_SHUTDOWN,
        "rr-daemon session stopped",
    );
    let _ = handle.commands.send(Command::Stop(Some(cease)));
    drop(handle.commands);
    let _ = tokio::time::timeout(Duration::from_secs(3), handle.task).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    Ok(())
}

/// The TCP-MD5 key of `rr-daemon session --password FILE` (`-`: standard input), with
/// one trailing newline dropped; checked as the configuration checks `password`.
fn read_password(path: &std::path::Path) -> anyhow::Result<crate::config::Secret> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("--password -: cannot read stdin")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("--password {}: cannot read", path.display()))?
    };
    crate::config::Secret::from_file_text(&text)
        .map_err(|e| anyhow::anyhow!("--password {}: {e}", path.display()))
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn print_event(e: &SessionEvent, t: Duration, json: bool) {
    use bgp_fsm::News;
    let t = t.as_secs_f64();
    let v = match &e.news {
        News::StateChanged { from, to } => {
            json!({"t": t, "event": "state", "from": from.name(), "to": to.name()})
        }
        News::Established {
            negotiated,
            peer_open,
            ..
        } => json!({
            "t": t, "event": "established", "peer_as": peer_open.asn,
            "peer_id": peer_open.bgp_id.to_string(), "hold_time": negotiated.hold_time,
            "families": negotiated.ctx.families, "four_octet_as": negotiated.ctx.four_octet_as,
            "add_path_rx": negotiated.ctx.add_path_rx, "add_path_tx": negotiated.ctx.add_path_tx,
            "extended_message": negotiated.ctx.extended_message,
            "route_refresh": negotiated.route_refresh,
            "graceful_restart": negotiated.peer_graceful_restart.is_some(),
        }),
        News::Down { reason, graceful } => {
            json!({"t": t, "event": "down", "reason": reason.to_string(), "graceful": graceful})
        }
        News::Failed(reason) => {
            json!({"t": t, "event": "failed", "reason": reason.to_string()})
        }
        News::Update(_) => {
            // One line per UPDATE, however many the event carries.
            for f in e.updates() {
                let v = json!({"t": t, "event": "update", "length": f.bytes.len()});
                print_line(&v, t, json);
            }
            return;
        }
        News::RouteRefresh(r) => {
            json!({"t": t, "event": "route-refresh", "afi": r.afi.0, "safi": r.safi.0})
        }
    };
    print_line(&v, t, json);
}

fn print_line(v: &serde_json::Value, t: f64, json: bool) {
    if json {
        println!("{v}");
    } else {
        println!("{t:9.3} {}", v["event"].as_str().unwrap_or("?"));
    }
}
