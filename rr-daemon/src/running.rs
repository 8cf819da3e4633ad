//! A running speaker with the tasks around it (kernel routes, routes learned from the
//! kernel, the control API), started from one [`Config`] and reloaded with another: the
//! path that `rr-daemon --config FILE` takes on SIGHUP and `rr-daemon agent` on every
//! change of Calico's datastore, so that both apply a configuration the same way.

use std::net::IpAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, warn};

use crate::config::{Api, Config, Diff};
use crate::speaker::{Speaker, SpeakerError};

/// The speaker and the channels that carry a new configuration to the FIB and learn
/// tasks. [`Running::reload`] is the one way to apply a new configuration.
pub struct Running {
    /// The speaker.
    pub speaker: Speaker,
    api: Api,
    api_options: crate::api::ApiOptions,
    fib_enabled: bool,
    learn_enabled: bool,
    fib_tx: watch::Sender<crate::config::Fib>,
    learn_settings_tx: watch::Sender<crate::fib::watcher::Settings>,
    blackholes_tx: watch::Sender<Vec<(ipnet::IpNet, u32)>>,
    learn_tx: watch::Sender<crate::fib::learn::Scope>,
}

/// What [`Running::start`] needs besides the configuration.
#[derive(Default)]
pub struct StartOptions {
    /// Start as a restarting speaker (`--graceful-restart`).
    pub restarting: bool,
    /// The API's listener, bound before the start ([`crate::api::bind`]); `None` when
    /// `[api]` is off.
    pub api_listener: Option<TcpListener>,
    /// The agent's datastore state for `/readyz` ([`crate::api::ApiOptions::datastore`]).
    pub datastore: Option<watch::Receiver<Option<String>>>,
    /// The agent's peers that readiness leaves out
    /// ([`crate::api::ApiOptions::not_counted`]).
    pub not_counted: Option<watch::Receiver<std::collections::BTreeSet<IpAddr>>>,
}

impl Running {
    /// Starts the speaker on `config`, then the FIB task (`[fib]`), the kernel route
    /// learner (`[learn]`) and the API (when a listener is given). Returns the speaker's
    /// core, which owns every session: a process without it must not look alive.
    pub async fn start(
        config: Config,
        options: StartOptions,
    ) -> anyhow::Result<(Self, JoinHandle<()>)> {
        let api = config.api;
        let fib = config.fib.clone();
        let (fib_tx, fib_config) = watch::channel(fib.clone());
        let configured: Vec<IpAddr> = config.peers.keys().copied().collect();
        let (blackholes_tx, blackholes) = watch::channel(config.blackholes());
        let (fib_handle, fib_requests) = crate::fib::FibHandle::new();
        let learn = config.learn.clone();
        let (learn_tx, learn_scope) = watch::channel(crate::fib::learn::Scope::of(&config));
        let (learn_settings_tx, learn_settings) =
            watch::channel(crate::fib::watcher::Settings::of(&config));
        let (speaker, core) = if options.restarting {
            Speaker::start_restarting(config).await?
        } else {
            Speaker::start(config).await?
        };
        if fib.enabled {
            // Subscribed before any session can be up: no best-path change of a peer's
            // route is missed (the ones of our own routes, at the start, are never
            // installed).
            let changes = speaker.subscribe().await?;
            let speaker = speaker.clone();
            tokio::spawn(async move {
                let r = crate::fib::run(
                    fib_config,
                    speaker,
                    configured,
                    changes,
                    blackholes,
                    fib_requests,
                )
                .await;
                if let Err(e) = r {
                    // Never fatal: BGP goes on without kernel routes.
                    error!("fib: kernel routes are not programmed: {e}");
                }
            });
        }
        if learn.enabled {
            let speaker = speaker.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::fib::watcher::run(learn_settings, speaker, learn_scope).await
                {
                    // Never fatal: BGP goes on without learned routes.
                    error!("learn: routes of the kernel are not learned: {e}");
                }
            });
        }
        let api_options = crate::api::ApiOptions {
            readiness_grace: api.readiness_grace,
            fib: fib.enabled.then_some(fib_handle),
            ready_requires_fib: api.ready_requires_fib,
            datastore: options.datastore,
            not_counted: options.not_counted,
            ..crate::api::ApiOptions::default()
        };
        if let Some(listener) = options.api_listener {
            let api_options = api_options.clone();
            let speaker = speaker.clone();
            tokio::spawn(async move {
                let never = std::future::pending();
                if let Err(e) = crate::api::serve(listener, speaker, api_options, never).await {
                    warn!("control API stopped: {e}");
                }
            });
        }
        let running = Self {
            speaker,
            api,
            api_options,
            fib_enabled: fib.enabled,
            learn_enabled: learn.enabled,
            fib_tx,
            learn_settings_tx,
            blackholes_tx,
            learn_tx,
        };
        Ok((running, core))
    }

    /// The API's options (readiness, the FIB's reports), for other servers of the same
    /// routes (the control socket's reads).
    pub fn api_options(&self) -> &crate::api::ApiOptions {
        &self.api_options
    }

    /// Applies `new`: `[fib]` and `[learn]` settings, blackholes and the learner's scope
    /// at once (their tasks log what changed), then the speaker's reload, whose diff
    /// touches only the peers that changed ([`Speaker::reload`]). `[api]` changes and
    /// turning `[fib]` or `[learn]` on or off take effect at the next start (logged).
    pub async fn reload(&self, new: Config) -> Result<Diff, SpeakerError> {
        if new.api != self.api {
            warn!("[api] changes take effect at the next start");
        }
        if new.fib.enabled != self.fib_enabled {
            warn!(
                "[fib] turned {}: takes effect at the next start",
                if new.fib.enabled { "on" } else { "off" }
            );
        }
        if new.learn.enabled != self.learn_enabled {
            warn!(
                "[learn] turned {}: takes effect at the next start",
                if new.learn.enabled { "on" } else { "off" }
            );
        }
        self.fib_tx.send_replace(new.fib.clone());
        self.learn_settings_tx
            .send_replace(crate::fib::watcher::Settings::of(&new));
        self.blackholes_tx.send_replace(new.blackholes());
        self.learn_tx
            .send_replace(crate::fib::learn::Scope::of(&new));
        self.speaker.reload(new).await
    }
}
