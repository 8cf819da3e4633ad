//! `rr-daemon agent`: follows Calico's datastore ([`super::etcd::follow`]), keeps a
//! [`Datastore`] of it, and after each burst of changes plans the node again and applies
//! the plan's [`Config`] through [`Running::reload`], the path SIGHUP takes in
//! `rr-daemon --config FILE`: the speaker's diff touches only the peers and routes that
//! changed.
//!
//! - Bursts are merged: after a change the agent waits until the datastore has been quiet
//!   for [`QUIET`] (at most [`MAX_DELAY`] after the first change), so 1,000 writes make a
//!   few reloads, not 1,000. A burst whose wait another event cuts short is applied at
//!   the next look at the workloads ([`WORKLOAD_POLL`]) at the latest.
//! - A re-list (after a compaction or a reconnection) rebuilds the `Datastore` from
//!   scratch and applies the result like any change: only the difference reaches the
//!   speaker.
//! - While the datastore cannot be read, sessions and kernel routes stay as they are and
//!   `/readyz` reports the datastore as stale ([`crate::api::Readiness::datastore`]).
//! - Every resource that cannot be used is logged once with its key and field, and
//!   skipped.
//! - `[control]` of `--config`: the actions of `ctl --socket`, whose `reload` lists the
//!   datastore again on a connection of its own (changes of the watch up to the list's
//!   revision are then skipped) and answers with what changed.
//! - A peer that leaves the plan keeps running for [`super::departing::LINGER`]: a move
//!   between resources (the mesh off, then a `BGPPeer` to the reflector) is a change of
//!   its settings, not a removal and an addition with a gap in every kernel between.
//! - `logSeverityScreen` (or `BGP_LOGSEVERITYSCREEN`, or the file's `[speaker]
//!   log_level`) sets the log level at each plan ([`crate::logging::reloaded`]).
//! - Local workload peering: Felix's endpoint status files
//!   (`$CALICO_ENDPOINT_STATUS_PATH_PREFIX/endpoint-status/`, `/var/run/calico` by
//!   default, as confd reads them) are looked at every [`WORKLOAD_POLL`]; a change of the
//!   workloads chosen for local BGP peering plans the node again. Their sessions
//!   (`Local_Workload_`) are left out of `/readyz`, as calico-node's readiness leaves
//!   them out ([`crate::api::ApiOptions::not_counted`]).

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::departing::Departing;
use super::etcd::{Change, Etcd, EtcdSettings, Snapshot, Update, follow};
use super::model::{Datastore, ResourceError};
use super::plan::{NodeEnv, Plan, RouterId, plan};
use crate::config::{Config, Overrides};
use crate::control::{ReloadReport, ReloadRequest};
use crate::running::{Running, StartOptions};

/// How long the datastore must be quiet after a change before the agent plans again.
pub const QUIET: Duration = Duration::from_millis(150);

/// The longest a change waits for a quiet datastore before it is applied anyway.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// How often Felix's endpoint status directory is looked at (confd watches it with
/// inotify, and polls every 30 s where it cannot).
pub const WORKLOAD_POLL: Duration = Duration::from_secs(1);

/// `rr-daemon agent`: Calico's datastore (etcd v3) drives the speaker.
///
/// Environment, as calico-node takes it: DATASTORE_TYPE (etcdv3, the default; no other is
/// supported), ETCD_ENDPOINTS (comma-separated URLs), ETCD_CA_CERT_FILE, ETCD_CERT_FILE and
/// ETCD_KEY_FILE (TLS with a client certificate), NODENAME (this node's Node resource),
/// CALICO_ROUTER_ID (`hash`, or an IPv4 address; the node's IPv4 address by default),
/// CALICO_ENDPOINT_STATUS_PATH_PREFIX (where Felix writes `endpoint-status/`, the
/// workloads for local BGP peering; `/var/run/calico` by default).
#[derive(Args, Clone, Debug)]
pub struct AgentArgs {
    /// etcd endpoints, comma-separated URLs (instead of ETCD_ENDPOINTS).
    #[arg(long, value_name = "URLS")]
    pub etcd_endpoints: Option<String>,
    /// This node's name (instead of NODENAME).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Settings beside the datastore's: `[api]`, `[fib]`, `[learn]`, `[control]` (CONFIG.md);
    /// the speaker and its peers come from the datastore.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of BGPPeer password secrets, one file per secret (see CONFIG.md).
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Where Felix writes its endpoint status files, `DIR/endpoint-status/` (instead of
    /// CALICO_ENDPOINT_STATUS_PATH_PREFIX; default /var/run/calico).
    #[arg(long, value_name = "DIR")]
    pub endpoint_status_prefix: Option<PathBuf>,
    /// Read the datastore once and exit (with --print-sessions).
    #[arg(long)]
    pub once: bool,
    /// With --once: print the node's BGP sessions, one JSON object per line.
    #[arg(long, requires = "once")]
    pub print_sessions: bool,
}

/// Everything the agent runs with, from the arguments and the environment.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// How to reach etcd.
    pub etcd: EtcdSettings,
    /// The node.
    pub env: NodeEnv,
    /// The `--config` file's settings (or the defaults), that the plan completes.
    pub base: Config,
    /// Felix's endpoint status directory (`<prefix>/endpoint-status`).
    pub endpoint_status: PathBuf,
}

impl AgentSettings {
    /// Settings from `args`, with `lookup` giving environment variables by name (flags
    /// win over the environment). The error is one line.
    pub fn new(args: &AgentArgs, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(t) = get("DATASTORE_TYPE")
            && t.trim() != "etcdv3"
        {
            anyhow::bail!(
                "DATASTORE_TYPE={t}: only etcdv3 is supported (Calico's datastore in etcd v3)"
            );
        }
        let endpoints = args
            .etcd_endpoints
            .clone()
            .or_else(|| get("ETCD_ENDPOINTS"))
            .context("no etcd endpoint: set ETCD_ENDPOINTS or --etcd-endpoints")?;
        let file = |name: &str| get(name).map(PathBuf::from);
        let etcd = EtcdSettings::new(
            &endpoints,
            file("ETCD_CA_CERT_FILE"),
            file("ETCD_CERT_FILE"),
            file("ETCD_KEY_FILE"),
        )?;
        let node_name = args
            .node_name
            .clone()
            .or_else(|| get("NODENAME"))
            .context("no node name: set NODENAME or --node-name")?;
        let router_id = match get("CALICO_ROUTER_ID") {
            None => RouterId::Address,
            Some(v) if v.trim() == "hash" => RouterId::Hash,
            Some(v) => RouterId::Fixed(v.trim().parse().map_err(|_| {
                anyhow::anyhow!("CALICO_ROUTER_ID={v}: neither `hash` nor an IPv4 address")
            })?),
        };
        let mut base = base_config(args.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
        // calico-node's override of logSeverityScreen wins over the datastore's.
        if let Some(v) = get("BGP_LOGSEVERITYSCREEN") {
            let f = super::plan::log_filter(&v).ok_or_else(|| {
                anyhow::anyhow!(
                    "BGP_LOGSEVERITYSCREEN={v}: Debug, Info, Warning, Error, Fatal or None"
                )
            })?;
            base.speaker.log_level = Some(f.to_owned());
        }
        let prefix = args
            .endpoint_status_prefix
            .clone()
            .or_else(|| file("CALICO_ENDPOINT_STATUS_PATH_PREFIX"))
            .unwrap_or_else(|| PathBuf::from(super::model::ENDPOINT_STATUS_PREFIX));
        Ok(Self {
            endpoint_status: prefix.join(super::model::ENDPOINT_STATUS_DIR),
            etcd,
            env: NodeEnv {
                node_name,
                router_id,
                secrets_dir: args.secrets_dir.clone(),
            },
            base,
        })
    }
}

/// The `--config` file, or the defaults: its `[speaker]` AS and router ID may be absent,
/// since the plan sets them from the datastore.
pub fn base_config(path: Option<&Path>) -> Result<Config, String> {
    // Placeholders only, replaced by the plan's speaker.
    let placeholders = Overrides::from_lookup(|name| match name {
        "RR_ROUTER_ID" => Some("192.0.2.1".to_owned()),
        "RR_ASN" => Some("64512".to_owned()),
        _ => None,
    });
    let (text, name) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?,
            p.to_owned(),
        ),
        None => (String::new(), PathBuf::from("<agent defaults>")),
    };
    // `[speaker]` is required by the file's schema; the agent's file may leave it out
    // (appended, so that the file's own lines keep their numbers in errors).
    let has_speaker = text
        .parse::<toml::Table>()
        .is_ok_and(|t| t.contains_key("speaker"));
    let text = if has_speaker {
        text
    } else {
        format!("{text}\n[speaker]\n")
    };
    Config::parse_with(&text, &name, &placeholders).map_err(|e| e.to_string())
}

/// An error and its causes on one line (the client's errors say little at the top).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s.replace('\n', " ")
}

/// The datastore of one snapshot; every unusable resource is in the returned list.
pub fn datastore_of(snapshot: &Snapshot) -> (Datastore, Vec<ResourceError>) {
    let mut ds = Datastore::new();
    let mut skipped = Vec::new();
    for (key, value) in &snapshot.kvs {
        if let Err(e) = ds.apply(key, Some(value)) {
            skipped.push(e);
        }
    }
    (ds, skipped)
}

/// `rr-daemon agent --once`: lists the datastore once and plans the node.
pub async fn once(settings: &AgentSettings) -> anyhow::Result<Plan> {
    let mut etcd = Etcd::connect(&settings.etcd)
        .await
        .map_err(|e| anyhow::anyhow!("{}", one_line(&e)))?;
    let snapshot = etcd
        .list()
        .await
        .map_err(|e| anyhow::anyhow!("{}", one_line(&e)))?;
    let (mut ds, mut skipped) = datastore_of(&snapshot);
    let (workloads, bad) = super::model::read_endpoint_status(&settings.endpoint_status);
    ds.workloads = workloads;
    skipped.extend(bad);
    for e in &skipped {
        warn!("skipped: {e}");
    }
    let p = plan(&ds, &settings.env)
        .map_err(|e| anyhow::anyhow!("node {}: {e}", settings.env.node_name))?;
    for e in p.static_routes_without_fib(&settings.base) {
        warn_fib_off(&e);
    }
    Ok(p)
}

/// `rr-daemon agent` (and `--once --print-sessions`).
pub async fn main(args: AgentArgs) -> anyhow::Result<()> {
    let settings = AgentSettings::new(&args, |n| std::env::var(n).ok())?;
    if args.once {
        let plan = once(&settings).await?;
        if args.print_sessions {
            let mut out = String::new();
            for s in &plan.sessions {
                out.push_str(&serde_json::to_string(s)?);
                out.push('\n');
            }
            print!("{out}");
        }
        return Ok(());
    }
    run(settings, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The agent's view of the datastore, and what it last logged as skipped.
struct View {
    ds: Datastore,
    revision: i64,
    logged: HashSet<String>,
    /// Static routes (`reachableBy`) already warned of as not installed, `[fib]` being
    /// off ([`View::warn_fib_off`]): each is warned of once.
    fib_warned: HashSet<String>,
    /// Changes taken in and not planned yet: a burst ([`next_burst`]) whose wait was cut
    /// short by another branch of the agent's loop (the workload poll, a departing
    /// peer's time, `ctl reload`) leaves them here, and the next look at the workloads
    /// applies them.
    unapplied: bool,
}

impl View {
    fn new() -> Self {
        Self {
            ds: Datastore::new(),
            revision: 0,
            logged: HashSet::new(),
            fib_warned: HashSet::new(),
            unapplied: false,
        }
    }

    /// Takes in one update; returns whether the datastore may have changed.
    fn take(&mut self, update: Update, stale: &watch::Sender<Option<String>>) -> bool {
        let changed = self.take_one(update, stale);
        self.unapplied |= changed;
        changed
    }

    fn take_one(&mut self, update: Update, stale: &watch::Sender<Option<String>>) -> bool {
        match update {
            Update::Snapshot(s) => {
                let (ds, skipped) = datastore_of(&s);
                info!(
                    revision = s.revision,
                    keys = s.kvs.len(),
                    "datastore rebuilt from a list"
                );
                // The workloads come from Felix's files, not from etcd.
                let workloads = std::mem::take(&mut self.ds.workloads);
                self.ds = ds;
                self.ds.workloads = workloads;
                self.revision = s.revision;
                self.log_skipped(&skipped, true);
                stale.send_replace(None);
                true
            }
            // Already in a list taken since (`ctl reload`): the watch catches up.
            Update::Changes { revision, .. } if revision <= self.revision => false,
            Update::Changes { revision, changes } => {
                let mut skipped = Vec::new();
                for c in changes {
                    let r = match &c {
                        Change::Put(k, v) => self.ds.apply(k, Some(v)),
                        Change::Delete(k) => self.ds.apply(k, None),
                    };
                    if let Err(e) = r {
                        skipped.push(e);
                    }
                }
                self.revision = revision;
                self.log_skipped(&skipped, false);
                true
            }
            Update::Stale(why) => {
                stale.send_replace(Some(why));
                false
            }
        }
    }

    /// Warns, once each, of the plan's static routes (`reachableBy`) that are not
    /// installed because `[fib]` is off in the agent's `--config`; returns the warnings
    /// given now.
    fn warn_fib_off(&mut self, plan: &Plan, base: &Config) -> Vec<ResourceError> {
        let fresh: Vec<ResourceError> = plan
            .static_routes_without_fib(base)
            .into_iter()
            .filter(|e| self.fib_warned.insert(e.to_string()))
            .collect();
        for e in &fresh {
            warn_fib_off(e);
        }
        fresh
    }

    /// Logs each skipped resource once (again after it was usable); `all` says the list
    /// is complete, so that what is no longer in it may be logged again later.
    fn log_skipped(&mut self, skipped: &[ResourceError], all: bool) {
        let now: HashSet<String> = skipped.iter().map(ToString::to_string).collect();
        for e in skipped {
            if !self.logged.contains(&e.to_string()) {
                warn!(key = %e.key, field = %e.field, "resource skipped: {}", e.message);
            }
        }
        if all {
            self.logged = now;
        } else {
            self.logged.extend(now);
        }
    }
}

/// Felix's endpoint status directory, as last read.
struct Workloads {
    dir: PathBuf,
    /// Name, length and modification time of each file at the last read.
    seen: Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)>,
    /// The last read had files that could not be used (being written): read again.
    retry: bool,
}

impl Workloads {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            seen: Vec::new(),
            retry: true,
        }
    }

    /// Reads the directory when anything in it changed since the last read (or the last
    /// read found a file that could not be used); returns whether the view's workloads
    /// changed.
    fn poll(&mut self, view: &mut View) -> bool {
        let mut now: Vec<_> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                let m = e.metadata().ok();
                (
                    e.file_name(),
                    m.as_ref().map_or(0, std::fs::Metadata::len),
                    m.and_then(|m| m.modified().ok()),
                )
            })
            .collect();
        now.sort();
        if now == self.seen && !self.retry {
            return false;
        }
        self.seen = now;
        let (workloads, bad) = super::model::read_endpoint_status(&self.dir);
        self.retry = !bad.is_empty();
        view.log_skipped(&bad, false);
        if workloads == view.ds.workloads {
            return false;
        }
        info!(
            workloads = workloads.len(),
            dir = %self.dir.display(),
            "workloads for local BGP peering changed"
        );
        view.ds.workloads = workloads;
        true
    }
}

/// Waits for the first update, then for a quiet datastore ([`QUIET`], at most
/// [`MAX_DELAY`]), taking every update in; `None` when the updates ended.
async fn next_burst(
    rx: &mut mpsc::Receiver<Update>,
    view: &mut View,
    stale: &watch::Sender<Option<String>>,
) -> Option<bool> {
    let first = rx.recv().await?;
    let mut changed = view.take(first, stale);
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(QUIET.min(left), rx.recv()).await {
            Ok(Some(u)) => changed |= view.take(u, stale),
            Ok(None) => return None,
            Err(_) => break,
        }
    }
    Some(changed)
}

/// One warning of a static route (`reachableBy`) not installed, `[fib]` being off.
fn warn_fib_off(e: &ResourceError) {
    let peer = e.key.rsplit('/').next().unwrap_or_default();
    warn!(peer, field = %e.field, "BGPPeer {peer}: {}", e.message);
}

/// Plans the node; logs what was skipped (once each), the static routes `[fib]` off
/// leaves out (once each) and why no plan can be made.
fn plan_view(view: &mut View, settings: &AgentSettings) -> Option<Plan> {
    match plan(&view.ds, &settings.env) {
        Ok(p) => {
            view.warn_fib_off(&p, &settings.base);
            let fresh: Vec<ResourceError> = p
                .skipped
                .iter()
                .filter(|e| !view.logged.contains(&e.to_string()))
                .cloned()
                .collect();
            view.log_skipped(&fresh, false);
            Some(p)
        }
        Err(e) => {
            warn!(
                revision = view.revision,
                "node {}: no plan: {e}", settings.env.node_name
            );
            None
        }
    }
}

/// Runs the agent until `shutdown` completes: follows the datastore, starts the speaker
/// with the node's first plan, and applies every later plan.
pub async fn run(
    settings: AgentSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(64);
    let follower = tokio::spawn(follow(settings.etcd.clone(), tx));
    let (stale_tx, stale_rx) = watch::channel(Some("not listed yet".to_owned()));
    let mut view = View::new();
    let mut workloads = Workloads::new(settings.endpoint_status.clone());
    workloads.poll(&mut view);
    let mut workload_poll = tokio::time::interval(WORKLOAD_POLL);
    workload_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    // Until the node's own resources are there, nothing runs.
    let first = loop {
        tokio::select! {
            () = &mut shutdown => {
                follower.abort();
                return Ok(());
            }
            burst = next_burst(&mut rx, &mut view, &stale_tx) => {
                if burst.is_none() {
                    anyhow::bail!("the datastore follower stopped");
                }
                workloads.poll(&mut view);
                if let Some(p) = plan_view(&mut view, &settings) {
                    break p;
                }
            }
        }
    };
    let mut applied = first.config(&settings.base);
    let mut departing = Departing::new(&applied);
    info!(
        sessions = first.sessions.len(),
        "node {}: starting with {}",
        settings.env.node_name,
        applied.summary()
    );
    log_level(None, applied.speaker.log_level.as_deref());
    let api = applied.api;
    let api_listener = if api.enabled {
        Some(crate::api::bind(api.listen).await?)
    } else {
        None
    };
    let (not_counted, not_counted_rx) = watch::channel(BTreeSet::new());
    not_counted.send_replace(local_workloads(&first, &BTreeSet::new(), &departing));
    let options = StartOptions {
        restarting: false,
        api_listener,
        datastore: Some(stale_rx),
        not_counted: Some(not_counted_rx),
    };
    let (running, mut core) = Running::start(applied.clone(), options).await?;
    // `[control] socket`: the actions of `ctl --socket`; its `reload` lists the
    // datastore again. Never closed without a socket: its `recv` then waits for ever.
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ReloadRequest>(4);
    let ctl_task = crate::cli::actions_socket(
        &applied.control,
        &running.speaker,
        running.api_options(),
        &ctl_tx,
    )?;
    crate::notify::ready();
    let result = loop {
        tokio::select! {
            r = &mut core => break match r {
                Err(e) if e.is_panic() => Err(anyhow::anyhow!("the speaker's core panicked")),
                _ => Err(anyhow::anyhow!("the speaker's core stopped unexpectedly")),
            },
            () = &mut shutdown => break Ok(()),
            burst = next_burst(&mut rx, &mut view, &stale_tx) => {
                match burst {
                    None => break Err(anyhow::anyhow!("the datastore follower stopped")),
                    Some(false) => continue,
                    Some(true) => {}
                }
                if let Err(e) = apply(&mut view, &settings, &running, &mut applied, &mut departing, &not_counted).await {
                    break Err(e);
                }
            }
            _ = workload_poll.tick() => {
                if (workloads.poll(&mut view) || view.unapplied)
                    && let Err(e) = apply(&mut view, &settings, &running, &mut applied, &mut departing, &not_counted).await
                {
                    break Err(e);
                }
            }
            () = sleep_until(departing.next()), if departing.next().is_some() => {
                if let Err(e) = apply(&mut view, &settings, &running, &mut applied, &mut departing, &not_counted).await {
                    break Err(e);
                }
            }
            Some(done) = ctl_rx.recv() => {
                let r = relist(&mut view, &settings, &stale_tx, &running, &mut applied, &mut departing, &not_counted).await;
                if let Err(e) = &r {
                    warn!("ctl reload: {e}");
                }
                let _ = done.send(r);
            }
        }
    };
    crate::notify::stopping();
    follower.abort();
    if let Some(t) = ctl_task {
        // The socket's file goes with its task.
        t.abort();
        let _ = t.await;
    }
    result?;
    // Kernel routes stay (BIRD's `persist`): the next start adopts them.
    info!("stopping: every session ends");
    running.speaker.shutdown().await?;
    let _ = tokio::time::timeout(Duration::from_secs(3), core).await;
    Ok(())
}

/// Applies a change of the log level (`logSeverityScreen`, or the `--config` file's).
fn log_level(old: Option<&str>, new: Option<&str>) {
    match crate::logging::reloaded(old, new) {
        Ok(Some(f)) => info!("log level now {f}"),
        Ok(None) => {}
        Err(e) => warn!("log level unchanged: {e}"),
    }
}

/// The addresses of `plan`'s local workload sessions, and of the ones `counted` held that
/// are still kept while departing: readiness leaves them out.
fn local_workloads(
    plan: &Plan,
    counted: &BTreeSet<IpAddr>,
    departing: &Departing,
) -> BTreeSet<IpAddr> {
    let mut out: BTreeSet<IpAddr> = plan
        .sessions
        .iter()
        .filter(|s| s.name.starts_with("Local_Workload_"))
        .map(|s| s.neighbor)
        .collect();
    out.extend(departing.leaving().filter(|a| counted.contains(a)));
    out
}

/// Sleeps until `deadline` (for ever without one).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Plans the node from `view` and applies the plan, with the peers that left it kept a
/// moment ([`Departing`]), when it differs from `applied`; the report says what changed
/// (`None`: no plan, what runs is kept).
async fn apply(
    view: &mut View,
    settings: &AgentSettings,
    running: &Running,
    applied: &mut Config,
    departing: &mut Departing,
    not_counted: &watch::Sender<BTreeSet<IpAddr>>,
) -> anyhow::Result<Option<ReloadReport>> {
    view.unapplied = false;
    // No plan (the node's resource went or broke): keep what runs.
    let Some(p) = plan_view(view, settings) else {
        return Ok(None);
    };
    let config = departing.hold(Instant::now(), applied, p.config(&settings.base));
    let before = not_counted.borrow().clone();
    not_counted.send_if_modified(|n| {
        let new = local_workloads(&p, &before, departing);
        let changed = *n != new;
        *n = new;
        changed
    });
    let kept: Vec<String> = departing.leaving().map(|a| a.to_string()).collect();
    if !kept.is_empty() {
        info!(
            peers = kept.join(","),
            "left the plan: kept for {:?} in case they come back with the next change",
            super::departing::LINGER
        );
    }
    let mut report = ReloadReport {
        file: format!("the datastore at revision {}", view.revision),
        ..ReloadReport::default()
    };
    if config == *applied {
        report.unchanged = true;
        return Ok(Some(report));
    }
    log_level(
        applied.speaker.log_level.as_deref(),
        config.speaker.log_level.as_deref(),
    );
    for (what, changed) in [
        ("[speaker]", applied.speaker != config.speaker),
        ("[fib]", applied.fib != config.fib),
        ("[learn]", applied.learn != config.learn),
        ("[[policy]]", applied.policies != config.policies),
        (
            "[[route]]/[[originate]]",
            applied.routes != config.routes || applied.originate != config.originate,
        ),
    ] {
        if changed {
            report.other.push(what.to_owned());
        }
    }
    let diff = running.reload(config.clone()).await?;
    info!(
        revision = view.revision,
        added = diff.added.len(),
        removed = diff.removed.len(),
        changed = diff.changed.len(),
        unchanged = diff.unchanged.len(),
        "applied the datastore"
    );
    report.set_peers(diff);
    *applied = config;
    Ok(Some(report))
}

/// `ctl reload`: lists the datastore again on a connection of its own, rebuilds the
/// view from it and applies the difference (the watch goes on; its changes up to the
/// list's revision are then skipped).
async fn relist(
    view: &mut View,
    settings: &AgentSettings,
    stale: &watch::Sender<Option<String>>,
    running: &Running,
    applied: &mut Config,
    departing: &mut Departing,
    not_counted: &watch::Sender<BTreeSet<IpAddr>>,
) -> Result<ReloadReport, String> {
    let mut etcd = Etcd::connect(&settings.etcd)
        .await
        .map_err(|e| format!("the datastore cannot be read: {}", one_line(&e)))?;
    let snapshot = etcd
        .list()
        .await
        .map_err(|e| format!("the datastore cannot be read: {}", one_line(&e)))?;
    info!(
        revision = snapshot.revision,
        "ctl reload: the datastore listed again"
    );
    if snapshot.revision < view.revision {
        // An endpoint behind the one watched: what runs is newer.
        return Err(format!(
            "the endpoint answered at revision {}, behind the watched {}: nothing done",
            snapshot.revision, view.revision
        ));
    }
    view.take(Update::Snapshot(snapshot), stale);
    match apply(view, settings, running, applied, departing, not_counted).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(format!(
            "node {}: no plan (see the log): what runs is kept",
            settings.env.node_name
        )),
        Err(e) => Err(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AgentArgs {
        AgentArgs {
            etcd_endpoints: None,
            node_name: None,
            config: None,
            secrets_dir: None,
            endpoint_status_prefix: None,
            once: false,
            print_sessions: false,
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_come_from_calico_nodes_environment_and_flags_win() {
        let vars = [
            ("DATASTORE_TYPE", "etcdv3"),
            (
                "ETCD_ENDPOINTS",
                "http://10.0.0.1:2379,http://10.0.0.2:2379",
            ),
            ("NODENAME", "node-a"),
            ("CALICO_ROUTER_ID", "hash"),
        ];
        let s = AgentSettings::new(&args(), env(&vars)).unwrap();
        assert_eq!(s.etcd.endpoints.len(), 2);
        assert_eq!(s.env.node_name, "node-a");
        assert_eq!(s.env.router_id, RouterId::Hash);
        // Felix's endpoint status files, where confd reads them.
        assert_eq!(
            s.endpoint_status,
            Path::new("/var/run/calico/endpoint-status")
        );
        let mut with_prefix = vars.to_vec();
        with_prefix.push(("CALICO_ENDPOINT_STATUS_PATH_PREFIX", "/run/felix"));
        let s = AgentSettings::new(&args(), env(&with_prefix)).unwrap();
        assert_eq!(s.endpoint_status, Path::new("/run/felix/endpoint-status"));
        let mut a = args();
        a.etcd_endpoints = Some("http://127.0.0.1:2379".into());
        a.node_name = Some("node-b".into());
        let s = AgentSettings::new(&a, env(&vars)).unwrap();
        assert_eq!(s.etcd.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(s.env.node_name, "node-b");
        // DATASTORE_TYPE unset is etcdv3 (calico-node's default); the router ID defaults
        // to the node's address.
        let s = AgentSettings::new(&a, env(&[])).unwrap();
        assert_eq!(s.env.router_id, RouterId::Address);
    }

    #[test]
    fn bad_settings_are_one_line_errors() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (
                &[("DATASTORE_TYPE", "kubernetes")],
                "DATASTORE_TYPE=kubernetes",
            ),
            (&[("NODENAME", "n")], "ETCD_ENDPOINTS"),
            (&[("ETCD_ENDPOINTS", "http://e:2379")], "NODENAME"),
            (
                &[
                    ("ETCD_ENDPOINTS", "http://e:2379"),
                    ("NODENAME", "n"),
                    ("CALICO_ROUTER_ID", "x"),
                ],
                "CALICO_ROUTER_ID=x",
            ),
        ];
        for (vars, want) in cases {
            let e = AgentSettings::new(&args(), env(vars)).unwrap_err();
            let e = format!("{e:#}");
            assert!(e.contains(want) && !e.contains('\n'), "{e}");
        }
    }

    /// After a list at revision 10 (`ctl reload`), the watch's changes up to 10 are in
    /// it already: skipped; later ones apply.
    #[test]
    fn changes_a_list_already_holds_are_skipped() {
        let (stale, _rx) = watch::channel(None);
        let mut v = View::new();
        let key = format!("{}nodes/n1", super::super::model::RESOURCES);
        let node = br#"{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"n1"},"spec":{"bgp":{"ipv4Address":"10.0.0.1/24"}}}"#;
        let snapshot = Snapshot {
            revision: 10,
            kvs: vec![(key.clone(), node.to_vec())],
        };
        assert!(v.take(Update::Snapshot(snapshot), &stale));
        let delete = |revision| Update::Changes {
            revision,
            changes: vec![Change::Delete(key.clone())],
        };
        assert!(!v.take(delete(9), &stale));
        assert!(!v.take(delete(10), &stale));
        assert!(v.ds.nodes.contains_key("n1"));
        assert!(v.take(delete(11), &stale));
        assert!(!v.ds.nodes.contains_key("n1"));
        assert_eq!(v.revision, 11);
    }

    #[test]
    fn bgp_logseverityscreen_wins_and_is_checked() {
        let vars = [
            ("ETCD_ENDPOINTS", "http://127.0.0.1:2379"),
            ("NODENAME", "n"),
            ("BGP_LOGSEVERITYSCREEN", "Warning"),
        ];
        let s = AgentSettings::new(&args(), env(&vars)).unwrap();
        assert_eq!(s.base.speaker.log_level.as_deref(), Some("warn"));
        let vars = [
            ("ETCD_ENDPOINTS", "http://127.0.0.1:2379"),
            ("NODENAME", "n"),
            ("BGP_LOGSEVERITYSCREEN", "loud"),
        ];
        let e = AgentSettings::new(&args(), env(&vars)).unwrap_err();
        assert!(e.to_string().contains("BGP_LOGSEVERITYSCREEN=loud"), "{e}");
    }

    #[test]
    fn the_config_file_may_leave_the_speaker_out() {
        let base = base_config(None).unwrap();
        assert!(!base.fib.enabled);
        let dir = std::env::temp_dir().join(format!("rr-agent-base-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.toml");
        std::fs::write(
            &file,
            "[fib]\nenabled = true\n[api]\nlisten = \"127.0.0.1:19179\"\n",
        )
        .unwrap();
        let base = base_config(Some(&file)).unwrap();
        assert!(base.fib.enabled);
        assert_eq!(base.api.listen.port(), 19179);
        std::fs::write(&file, "[fib]\nenabled = 3\n").unwrap();
        let e = base_config(Some(&file)).unwrap_err();
        assert!(e.contains("agent.toml:2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    /// A BGPPeer's `reachableBy` plans a static route; with `[fib]` off in `--config`
    /// the agent warns once, naming the peer and the field, and not with `[fib]` on.
    #[test]
    fn static_routes_with_fib_off_are_warned_of_once() {
        let (stale, _rx) = watch::channel(None);
        let mut v = View::new();
        let r = super::super::model::RESOURCES;
        let kvs = vec![
            (
                format!("{r}nodes/n1"),
                br#"{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"n1"},"spec":{"bgp":{"ipv4Address":"10.0.0.1/24"}}}"#.to_vec(),
            ),
            (
                format!("{r}bgppeers/tor-a"),
                br#"{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"tor-a"},"spec":{"peerIP":"10.9.0.1","asNumber":65001,"reachableBy":"10.0.0.254"}}"#.to_vec(),
            ),
        ];
        assert!(v.take(Update::Snapshot(Snapshot { revision: 5, kvs }), &stale));
        let mut settings = AgentSettings::new(
            &args(),
            env(&[
                ("ETCD_ENDPOINTS", "http://127.0.0.1:2379"),
                ("NODENAME", "n1"),
            ]),
        )
        .unwrap();
        assert!(!settings.base.fib.enabled);
        let p = plan(&v.ds, &settings.env).unwrap();
        assert_eq!(
            p.static_routes,
            [(
                "10.9.0.1/32".parse().unwrap(),
                "10.0.0.254".parse().unwrap()
            )]
        );
        let warned = v.warn_fib_off(&p, &settings.base);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0].key, format!("{r}bgppeers/tor-a"));
        assert_eq!(warned[0].field, "spec.reachableBy");
        assert!(
            warned[0].message.contains("10.9.0.1/32 via 10.0.0.254")
                && warned[0].message.contains("[fib]"),
            "{}",
            warned[0].message
        );
        assert!(v.warn_fib_off(&p, &settings.base).is_empty(), "once");
        assert!(plan_view(&mut v, &settings).is_some());
        assert!(v.fib_warned.len() == 1, "plan_view warns of nothing new");
        settings.base.fib.enabled = true;
        assert!(p.static_routes_without_fib(&settings.base).is_empty());
    }
    /// calico-node's TLS variables name the CA and the client certificate and key.
    #[test]
    fn tls_files_come_from_calico_nodes_environment() {
        let vars = [
            ("ETCD_ENDPOINTS", "https://127.0.0.1:2379"),
            ("NODENAME", "n"),
            ("ETCD_CA_CERT_FILE", "/calico-secrets/etcd-ca"),
            ("ETCD_CERT_FILE", "/calico-secrets/etcd-cert"),
            ("ETCD_KEY_FILE", "/calico-secrets/etcd-key"),
        ];
        let s = AgentSettings::new(&args(), env(&vars)).unwrap();
        let p = |f: &str| Some(PathBuf::from(f));
        assert_eq!(s.etcd.ca_cert, p("/calico-secrets/etcd-ca"));
        assert_eq!(s.etcd.cert, p("/calico-secrets/etcd-cert"));
        assert_eq!(s.etcd.key, p("/calico-secrets/etcd-key"));
        assert_eq!(s.etcd.endpoints, ["https://127.0.0.1:2379"]);
    }
}
