//! Calico's datastore in etcd v3, as the agent follows it: a consistent list of the keys
//! it reads, then a watch from the list's revision + 1; on compaction or a lost watch,
//! a full re-list. The client is the `etcd-client` crate (gRPC over tonic).
//!
//! [`follow`] runs that loop for ever and hands each step to the agent as an [`Update`]:
//! a whole [`Snapshot`] (after every list, the first one and every re-list), a batch of
//! [`Change`]s, or [`Update::Stale`] when the datastore cannot be read (the agent keeps
//! its sessions and routes, reports the datastore stale and waits; the loop reconnects
//! with back-off).

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, TlsOptions, WatchOptions,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// The prefixes the agent lists and watches: Calico's `projectcalico.org/v3` resources,
/// and the IPAM block affinities of every host (a node's own blocks are its blackholes;
/// the other hosts' are read as confd reads them, for the plan to use or ignore).
pub const PREFIXES: [&str; 2] = [
    "/calico/resources/v3/projectcalico.org/",
    "/calico/ipam/v2/host/",
];

/// Keys fetched per range request of a list (several pages at the same revision).
pub const PAGE: i64 = 1000;

/// How the agent reaches etcd: calico-node's `ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`,
/// `ETCD_CERT_FILE` and `ETCD_KEY_FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    /// The endpoints' URLs (`http://127.0.0.1:2379`, `https://etcd:2379`).
    pub endpoints: Vec<String>,
    /// The CA certificate that signed the servers' certificates (PEM).
    pub ca_cert: Option<PathBuf>,
    /// Our client certificate (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// Our client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// The bound on connecting and on each list request.
    pub timeout: Duration,
}

impl EtcdSettings {
    /// Settings from `ETCD_ENDPOINTS` (comma-separated URLs) and the three certificate
    /// files; empty values count as unset.
    pub fn new(
        endpoints: &str,
        ca_cert: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Self, EtcdError> {
        let endpoints: Vec<String> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() {
            return Err(EtcdError::Settings(
                "no etcd endpoint: set ETCD_ENDPOINTS or --etcd-endpoints".to_owned(),
            ));
        }
        let empty = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let (cert, key) = (empty(cert), empty(key));
        if cert.is_some() != key.is_some() {
            return Err(EtcdError::Settings(
                "ETCD_CERT_FILE and ETCD_KEY_FILE go together: set both or neither".to_owned(),
            ));
        }
        Ok(Self {
            endpoints,
            ca_cert: empty(ca_cert),
            cert,
            key,
            timeout: Duration::from_secs(5),
        })
    }

    fn uses_tls(&self) -> bool {
        self.ca_cert.is_some()
            || self.cert.is_some()
            || self.endpoints.iter().any(|e| e.starts_with("https://"))
    }
}

/// Why etcd cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The settings are unusable (no endpoint, half a client certificate).
    #[error("{0}")]
    Settings(String),
    /// A certificate or key file cannot be read.
    #[error("cannot read {path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The client's error (connection refused, TLS, gRPC status).
    #[error("etcd at {endpoints}: {error}")]
    Client {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// The error.
        error: etcd_client::Error,
    },
    /// No answer within the bound.
    #[error("etcd at {0}: no answer within {1:?}")]
    Timeout(String, Duration),
    /// A key that is not UTF-8 (Calico writes none).
    #[error("etcd key is not UTF-8: {0:?}")]
    Key(Vec<u8>),
}

/// Every key under [`PREFIXES`] at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The store's revision of the list.
    pub revision: i64,
    /// The keys and their values, by prefix then key order.
    pub kvs: Vec<(String, Vec<u8>)>,
}

/// One change of a watched key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key was written.
    Put(String, Vec<u8>),
    /// The key was deleted.
    Delete(String),
}

/// What [`follow`] hands to the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// The whole datastore (the first list, and each re-list after a compaction or a
    /// lost watch): the agent rebuilds its view from it.
    Snapshot(Snapshot),
    /// Changes of one watch response, in the store's order, up to `revision`.
    Changes {
        /// The store's revision after these changes.
        revision: i64,
        /// The changes.
        changes: Vec<Change>,
    },
    /// The datastore cannot be read (why); [`follow`] retries with back-off and sends a
    /// [`Update::Snapshot`] once it can again.
    Stale(String),
}

/// A connection to etcd.
pub struct Etcd {
    client: Client,
    settings: EtcdSettings,
}

impl Etcd {
    /// Connects (bounded by `settings.timeout`), with TLS when a certificate is given or
    /// an endpoint is `https://`.
    pub async fn connect(settings: &EtcdSettings) -> Result<Self, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(settings.timeout)
            // A peer that goes silent (a dead host, a cut link) is noticed in ~15 s.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if settings.uses_tls() {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|error| EtcdError::File {
                    path: p.clone(),
                    error,
                })
            };
            let mut tls = TlsOptions::new();
            if let Some(ca) = &settings.ca_cert {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&settings.cert, &settings.key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(tls);
        }
        let endpoints = settings.endpoints.join(",");
        let connect = Client::connect(&settings.endpoints, Some(options));
        let client = tokio::time::timeout(settings.timeout, connect)
            .await
            .map_err(|_| EtcdError::Timeout(endpoints.clone(), settings.timeout))?
            .map_err(|error| EtcdError::Client { endpoints, error })?;
        Ok(Self {
            client,
            settings: settings.clone(),
        })
    }

    fn error(&self, error: etcd_client::Error) -> EtcdError {
        EtcdError::Client {
            endpoints: self.settings.endpoints.join(","),
            error,
        }
    }

    /// Lists every key under [`PREFIXES`] at one revision (the first page's), in pages
    /// of [`PAGE`] keys; each request is bounded by the settings' timeout. A page larger
    /// than the client takes in one message (4 MiB: big values) is asked again with half
    /// as many keys, down to one.
    pub async fn list(&mut self) -> Result<Snapshot, EtcdError> {
        let mut snapshot = Snapshot::default();
        let mut revision = 0;
        let mut page = PAGE;
        for prefix in PREFIXES {
            let end = prefix_end(prefix.as_bytes());
            let mut from = prefix.as_bytes().to_vec();
            loop {
                let mut options = GetOptions::new().with_range(end.clone()).with_limit(page);
                if revision > 0 {
                    options = options.with_revision(revision);
                }
                let get = self.client.get(from.clone(), Some(options));
                let resp = tokio::time::timeout(self.settings.timeout, get)
                    .await
                    .map_err(|_| {
                        EtcdError::Timeout(self.settings.endpoints.join(","), self.settings.timeout)
                    })?;
                let resp = match resp {
                    Err(etcd_client::Error::GRpcStatus(s))
                        if page > 1 && s.message().contains("message length too large") =>
                    {
                        page = (page / 2).max(1);
                        continue;
                    }
                    r => r.map_err(|e| self.error(e))?,
                };
                if revision == 0 {
                    revision = resp.header().map_or(0, |h| h.revision());
                }
                for kv in resp.kvs() {
                    let key = String::from_utf8(kv.key().to_vec())
                        .map_err(|e| EtcdError::Key(e.into_bytes()))?;
                    snapshot.kvs.push((key, kv.value().to_vec()));
                }
                match resp.kvs().last() {
                    Some(last) if resp.more() => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => break,
                }
            }
        }
        snapshot.revision = revision;
        Ok(snapshot)
    }

    /// Watches [`PREFIXES`] from `revision` (inclusive) on one stream.
    pub async fn watch(&mut self, revision: i64) -> Result<Watch, EtcdError> {
        let options = |p: &str| {
            WatchOptions::new()
                .with_range(prefix_end(p.as_bytes()))
                .with_start_revision(revision)
        };
        let mut stream = self
            .client
            .watch(PREFIXES[0], Some(options(PREFIXES[0])))
            .await
            .map_err(|e| self.error(e))?;
        for p in &PREFIXES[1..] {
            stream
                .watch(*p, Some(options(p)))
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(Watch {
            stream,
            endpoints: self.settings.endpoints.join(","),
        })
    }
}

/// A watch of [`PREFIXES`].
pub struct Watch {
    stream: etcd_client::WatchStream,
    endpoints: String,
}

/// What a watch gives next.
#[derive(Debug)]
pub enum WatchEvent {
    /// Changes up to `revision` (empty for a watch's creation or a progress notice).
    Changes {
        /// The store's revision after these changes.
        revision: i64,
        /// The changes.
        changes: Vec<Change>,
    },
    /// The revision watched from has been compacted away: a re-list is needed.
    Compacted(i64),
    /// The watch ended (cancelled by the server, the stream closed or failed): why.
    Lost(String),
}

impl Watch {
    /// The next response.
    pub async fn next(&mut self) -> WatchEvent {
        let resp = match self.stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return WatchEvent::Lost(format!("etcd at {}: watch closed", self.endpoints));
            }
            Err(e) => return WatchEvent::Lost(format!("etcd at {}: {e}", self.endpoints)),
        };
        if resp.compact_revision() > 0 {
            return WatchEvent::Compacted(resp.compact_revision());
        }
        if resp.canceled() {
            return WatchEvent::Lost(format!(
                "etcd at {}: watch cancelled: {}",
                self.endpoints,
                resp.cancel_reason()
            ));
        }
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut changes = Vec::with_capacity(resp.events().len());
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let Ok(key) = std::str::from_utf8(kv.key()) else {
                warn!(key = ?kv.key(), "etcd: a key that is not UTF-8 is ignored");
                continue;
            };
            changes.push(match event.event_type() {
                EventType::Put => Change::Put(key.to_owned(), kv.value().to_vec()),
                EventType::Delete => Change::Delete(key.to_owned()),
            });
        }
        WatchEvent::Changes { revision, changes }
    }
}

/// The end of the range of keys that start with `prefix` (etcd's `WithPrefix`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

/// Back-off between attempts to reach etcd: doubling from `MIN` to `MAX`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff(Duration);

impl Backoff {
    /// The first wait.
    pub const MIN: Duration = Duration::from_millis(250);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(8);

    /// A back-off at its first wait.
    pub fn new() -> Self {
        Self(Self::MIN)
    }

    /// The wait to take now; the next one is twice as long, up to [`Backoff::MAX`].
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Follows the datastore for ever: list, hand the [`Snapshot`] over, watch from its
/// revision + 1 and hand each batch of changes over; on compaction re-list at once; on a
/// lost watch or an unreachable datastore send [`Update::Stale`], wait ([`Backoff`]),
/// reconnect and re-list. Returns when `updates` is closed.
pub async fn follow(settings: EtcdSettings, updates: mpsc::Sender<Update>) {
    let mut backoff = Backoff::new();
    let mut etcd: Option<Etcd> = None;
    'follow: loop {
        let failure = 'attempt: {
            let conn = match &mut etcd {
                Some(c) => c,
                None => match Etcd::connect(&settings).await {
                    Ok(c) => etcd.insert(c),
                    Err(e) => break 'attempt e.to_string(),
                },
            };
            let snapshot = match conn.list().await {
                Ok(s) => s,
                Err(e) => break 'attempt e.to_string(),
            };
            let revision = snapshot.revision;
            info!(
                revision,
                keys = snapshot.kvs.len(),
                "etcd: listed the datastore"
            );
            if updates.send(Update::Snapshot(snapshot)).await.is_err() {
                return;
            }
            backoff = Backoff::new();
            let mut watch = match conn.watch(revision + 1).await {
                Ok(w) => w,
                Err(e) => break 'attempt e.to_string(),
            };
            loop {
                match watch.next().await {
                    WatchEvent::Changes { revision, changes } => {
                        if changes.is_empty() {
                            continue;
                        }
                        let update = Update::Changes { revision, changes };
                        if updates.send(update).await.is_err() {
                            return;
                        }
                    }
                    WatchEvent::Compacted(at) => {
                        // Not a failure: the data is there, only the history went.
                        info!(
                            compact_revision = at,
                            "etcd: the watch's revision was compacted: listing again"
                        );
                        break;
                    }
                    WatchEvent::Lost(why) => break 'attempt why,
                }
            }
            // Compacted: list again at once, on the same connection.
            continue 'follow;
        };
        warn!("etcd: the datastore cannot be read, retrying: {failure}");
        // A fresh connection next time: the old one may be to a dead endpoint.
        etcd = None;
        if updates.send(Update::Stale(failure)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/calico/"), b"/calico0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        assert_eq!(waits[0], Backoff::MIN);
        assert_eq!(waits[1], Backoff::MIN * 2);
        assert_eq!(*waits.last().unwrap(), Backoff::MAX);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn settings_need_an_endpoint_and_a_whole_client_certificate() {
        let s = EtcdSettings::new(
            " http://127.0.0.1:2379 ,http://127.0.0.2:2379,",
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            s.endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
        );
        assert!(!s.uses_tls());
        assert!(EtcdSettings::new(" , ", None, None, None).is_err());
        let half = EtcdSettings::new("https://e:2379", None, Some("c.pem".into()), None);
        assert!(half.unwrap_err().to_string().contains("ETCD_KEY_FILE"));
        let empty = EtcdSettings::new("https://e:2379", Some("".into()), None, None).unwrap();
        assert_eq!(empty.ca_cert, None);
        assert!(empty.uses_tls());
    }
}
