//! The read-only control API: HTTP/1.1 with JSON bodies, on `[api] listen`
//! (127.0.0.1:9179 by default).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/peers` | every peer ([`PeerStatus`]), by address; `down_reason` says why one is not Established |
//! | `GET /v1/peers/{address}` | one peer in detail ([`PeerDetail`]: every field of `/v1/peers` and what the session negotiated, its history, routes per family); 404 when there is none |
//! | `GET /v1/peers/{address}/routes?dir=in\|out` | the peer's Adj-RIB-In (after import policy; `view=received` for before, with `soft_reconfiguration_inbound`) or Adj-RIB-Out as sent ([`PeerRoutesResponse`]), paged by `cursor` (or `offset`) and `limit`, filtered by `prefix`, `longest`, `orlonger`, `community`, `large_community`, `as`, `origin_as`, `family` |
//! | `GET /v1/routes?limit=N&offset=M` | best routes ([`RoutesResponse`]) in prefix order (family, address, length), 1000 by default |
//! | `GET /v1/routes/{prefix}` | every path of a prefix, which is best and why the others lost ([`RouteDetail`]); `10.0.0.0/24` or `10.0.0.0%2F24`; a bare address (`10.0.0.7`) gives its longest match |
//! | `GET /v1/status` | speaker summary and readiness ([`StatusResponse`]) |
//! | `GET /v1/fib` | kernel routes: counters, installed routes, failures ([`crate::fib::FibReport`]); 404 when `[fib]` is off |
//! | `GET /metrics` | Prometheus (OpenMetrics) text: per-peer series labelled by address only |
//! | `GET /healthz` | 200 while the core answers, else 503 |
//! | `GET /readyz` | 200 when ready, else 503; both with a [`Readiness`] body |
//!
//! Every request is one message to the speaker's core and waits for its answer at most
//! [`ApiOptions::core_timeout`]; what the core does for it is bounded by the number of
//! peers, or (best routes) one walk of the Loc-RIB that keeps `offset + limit` routes
//! aside to sort them, or (metrics, status) one walk of the Loc-RIB to count paths. Rendering JSON and metrics happens here, off the core.
//!
//! Readiness follows Calico's rule for BIRD (`calico-node -bird-ready`), over the
//! configured peers (dynamic neighbours aside); see [`readiness`]:
//! - no peers: ready;
//! - within [`ApiOptions::readiness_grace`] of the start (Calico: 30 s): ready only when
//!   every peer is Established and none is in graceful-restart recovery (its stale routes
//!   wait for its End-of-RIB), so that a rolling update waits until BGP is back;
//! - after that: ready when at least one peer is Established, so that one dead node does
//!   not make every node of the mesh unready.

use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bgp_wire::attr::NextHop;
use ipnet::IpNet;
use rib::AttrSet;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::speaker::{
    Direction, PeerDetail, PeerRoute, PeerRoutesError, PeerRoutesQuery, PeerStatus, RouteEntry,
    Speaker, SpeakerError,
};

mod metrics;
use metrics::render_metrics;

/// The default `[api] listen` address, which `rr-daemon ctl` also uses.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9179";

/// Routes per page of `GET /v1/routes` without `?limit=`.
pub const DEFAULT_ROUTES_LIMIT: usize = 1000;

/// The default `[api] readiness_grace`: Calico's threshold for `calico-node -bird-ready`.
pub const DEFAULT_READINESS_GRACE: Duration = Duration::from_secs(30);

/// Tunables of the API server.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// For how long after the start every configured peer must be Established for
    /// `/readyz` to answer 200; after it, one Established peer is enough (`[api]
    /// readiness_grace`, Calico's 30 s by default).
    pub readiness_grace: Duration,
    /// How long a request waits for the core before answering 503.
    pub core_timeout: Duration,
    /// The largest `?limit=` of `GET /v1/routes`.
    pub max_routes: usize,
    /// The FIB task, when `[fib]` is on: `GET /v1/fib`, the `rr_fib_*` metrics.
    pub fib: Option<crate::fib::FibHandle>,
    /// `/readyz` also wants the kernel routes programmed (`[api] ready_requires_fib`):
    /// the FIB's initial sync over, no route pending or failing.
    pub ready_requires_fib: bool,
    /// `rr-daemon agent`: why Calico's datastore is stale (unreachable, re-listing), or
    /// `None` while it is followed; a stale datastore makes `/readyz` answer 503 with
    /// [`Readiness::datastore`] (sessions and kernel routes stay as they are).
    pub datastore: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// `rr-daemon agent`: peers that readiness leaves out, its local workload sessions
    /// (`Local_Workload_`): calico-node's readiness looks at `Mesh_`, `Global_` and
    /// `Node_` sessions only.
    pub not_counted: Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<IpAddr>>>,
}

impl Default for ApiOptions {
    /// 30 s of grace (Calico's), 5 s for the core, 100 000 routes a page.
    fn default() -> Self {
        Self {
            readiness_grace: DEFAULT_READINESS_GRACE,
            core_timeout: Duration::from_secs(5),
            max_routes: 100_000,
            fib: None,
            ready_requires_fib: false,
            datastore: None,
            not_counted: None,
        }
    }
}

/// Binds the API's listener (before the speaker starts, so that a taken address fails the
/// start instead of leaving peers up without an API).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the control API ([api] listen)"))
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    speaker: Speaker,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "control API listening");
    }
    axum::serve(listener, router(speaker, options))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr` and serves the API in a task of its own until the task is aborted.
/// Returns the bound address (the port, when `addr` asked for port 0) and the task.
pub async fn spawn(
    addr: SocketAddr,
    speaker: Speaker,
    options: ApiOptions,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = serve(listener, speaker, options, std::future::pending()).await {
            warn!("control API stopped: {e}");
        }
    });
    Ok((bound, task))
}

/// The API's routes, for embedding in another server.
pub fn router(speaker: Speaker, options: ApiOptions) -> Router {
    let app = App {
        speaker,
        options,
        started: Instant::now(),
    };
    Router::new()
        .route("/v1/peers", get(peers))
        .route("/v1/peers/{address}", get(peer))
        .route("/v1/peers/{address}/routes", get(peer_routes))
        .route("/v1/routes", get(routes))
        .route("/v1/routes/{*prefix}", get(route))
        .route("/v1/status", get(status))
        .route("/v1/fib", get(fib))
        .route("/v1/mrt", get(mrt))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(app)
}

#[derive(Clone)]
struct App {
    speaker: Speaker,
    options: ApiOptions,
    started: Instant,
}

impl App {
    /// Waits for the core's answer, at most `core_timeout`.
    async fn ask<T>(
        &self,
        f: impl Future<Output = Result<T, SpeakerError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.options.core_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ApiError::unavailable(e.to_string())),
            Err(_) => Err(ApiError::unavailable(format!(
                "the speaker's core did not answer within {} s",
                self.options.core_timeout.as_secs_f64()
            ))),
        }
    }
}

/// An error answer: status and `{"error": "..."}`.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn unavailable(message: String) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// The body of every error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such endpoint: see /v1/peers, /v1/peers/ADDRESS, /v1/routes, /v1/routes/PREFIX, /v1/status, \
                  /metrics, /healthz, /readyz"
            .to_owned(),
    }
}

async fn peers(State(app): State<App>) -> Result<axum::Json<Vec<PeerStatus>>, ApiError> {
    Ok(axum::Json(app.ask(app.speaker.peers()).await?))
}

/// Parses a peer address of a path: `fe80::2%eth0` names the link-local peer on an
/// interface, and the zone is dropped.
fn peer_address(address: &str) -> Result<IpAddr, ApiError> {
    let text = address.split('%').next().unwrap_or_default();
    text.parse::<IpAddr>().map_err(|_| ApiError {
        status: StatusCode::BAD_REQUEST,
        message: format!("{address:?} is not an IP address"),
    })
}

async fn peer(
    State(app): State<App>,
    Path(address): Path<String>,
) -> Result<axum::Json<PeerDetail>, ApiError> {
    let ip = peer_address(&address)?;
    app.ask(app.speaker.peer_detail(ip))
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no peer {ip}"),
        })
}

/// The query of `GET /v1/peers/{address}/routes`.
#[derive(Debug, Default, Deserialize)]
struct PeerRoutesParams {
    dir: Option<String>,
    view: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    cursor: Option<String>,
    prefix: Option<String>,
    longest: Option<String>,
    orlonger: Option<String>,
    community: Option<String>,
    large_community: Option<String>,
    #[serde(rename = "as")]
    as_path_contains: Option<String>,
    origin_as: Option<String>,
    family: Option<String>,
}

/// A route of a peer's table as `GET /v1/peers/{address}/routes` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRouteView {
    /// The prefix.
    pub prefix: IpNet,
    /// The ADD-PATH identifier received (in) or sent (out), where there is one.
    pub path_id: Option<u32>,
    /// Its attributes (for `out`, as sent: `next_hop` is `null` when the session's
    /// address is sent), every one of them.
    #[serde(flatten)]
    pub attrs: AttrView,
    /// `in`: `best`, `accepted` (usable, not best), `ineligible` or `rejected` (by import
    /// policy, listed with `view=received`); `out`: `sent`.
    pub status: String,
    /// `in`: why the route cannot be used, in words.
    pub reason: Option<String>,
    /// `in`: kept from a gracefully restarting session (RFC 4724).
    pub stale: bool,
    /// `out`: the peer the route came from; `null` for our own.
    pub from: Option<IpAddr>,
}

/// `GET /v1/peers/{address}/routes`: one page of a peer's table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerRoutesResponse {
    /// The peer.
    pub peer: IpAddr,
    /// `in` or `out`.
    pub dir: Direction,
    /// `accepted` (after import policy) or `received` (before); `sent` for `out`.
    pub view: String,
    /// The routes, in the RIB's slot order.
    pub routes: Vec<PeerRouteView>,
    /// The page size asked for (after capping).
    pub limit: usize,
    /// The `cursor` of the next page, if the listing goes on (the next page may come
    /// back empty).
    pub next_cursor: Option<String>,
}

/// A filter from the query string, or a 400 naming the parameter.
fn route_filter(q: &PeerRoutesParams) -> Result<rib::RouteFilter, ApiError> {
    fn bad(param: &str, value: &str, want: &str) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("{param}={value:?}: expected {want}"),
        }
    }
    let mut f = rib::RouteFilter::default();
    let set = [
        q.prefix.is_some(),
        q.longest.is_some(),
        q.orlonger.is_some(),
    ];
    if set.iter().filter(|x| **x).count() > 1 {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "prefix, longest and orlonger exclude each other".to_owned(),
        });
    }
    if let Some(p) = &q.prefix {
        let n = parse_prefix(p).ok_or_else(|| bad("prefix", p, "a prefix (10.0.0.0/24)"))?;
        f.prefix = Some(rib::PrefixQuery::Exact(n));
    }
    if let Some(a) = &q.longest {
        let ip = a
            .parse::<IpAddr>()
            .map_err(|_| bad("longest", a, "an address (10.0.0.7)"))?;
        f.prefix = Some(rib::PrefixQuery::Longest(ip));
    }
    if let Some(p) = &q.orlonger {
        let n = parse_prefix(p).ok_or_else(|| bad("orlonger", p, "a prefix (10.0.0.0/16)"))?;
        f.prefix = Some(rib::PrefixQuery::OrLonger(n));
    }
    if let Some(c) = &q.community {
        f.community =
            Some(parse_community(c).ok_or_else(|| bad("community", c, "ASN:VALUE (65000:100)"))?);
    }
    if let Some(c) = &q.large_community {
        let parts: Vec<Option<u32>> = c.split(':').map(|x| x.parse().ok()).collect();
        match parts.as_slice() {
            [Some(g), Some(a), Some(b)] => {
                f.large_community = Some(bgp_wire::attr::LargeCommunity {
                    global: *g,
                    local1: *a,
                    local2: *b,
                });
            }
            _ => return Err(bad("large_community", c, "GLOBAL:LOCAL1:LOCAL2")),
        }
    }
    if let Some(a) = &q.as_path_contains {
        f.as_path_contains = Some(parse_asn(a).ok_or_else(|| bad("as", a, "an AS number"))?);
    }
    if let Some(a) = &q.origin_as {
        f.origin_as = Some(parse_asn(a).ok_or_else(|| bad("origin_as", a, "an AS number"))?);
    }
    if let Some(fam) = &q.family {
        f.family = Some(match fam.as_str() {
            "ipv4" | "ipv4-unicast" => bgp_wire::Family::Ipv4Unicast,
            "ipv6" | "ipv6-unicast" => bgp_wire::Family::Ipv6Unicast,
            _ => return Err(bad("family", fam, "ipv4 or ipv6")),
        });
    }
    Ok(f)
}

/// `65000:100`, or a well-known name (`no-export`, `no-advertise`, ...).
pub fn parse_community(s: &str) -> Option<bgp_wire::attr::Community> {
    use bgp_wire::attr::Community;
    let named = match s.to_ascii_lowercase().replace('_', "-").as_str() {
        "no-export" => Some(Community::NO_EXPORT),
        "no-advertise" => Some(Community::NO_ADVERTISE),
        "no-export-subconfed" | "local-as" => Some(Community::NO_EXPORT_SUBCONFED),
        "graceful-shutdown" => Some(Community::GRACEFUL_SHUTDOWN),
        "no-peer" => Some(Community::NOPEER),
        "blackhole" => Some(Community::BLACKHOLE),
        _ => None,
    };
    if named.is_some() {
        return named;
    }
    let (a, v) = s.split_once(':')?;
    Some(Community::new(a.parse().ok()?, v.parse().ok()?))
}

/// `65001`, or `AS65001`.
fn parse_asn(s: &str) -> Option<u32> {
    let t = s
        .strip_prefix("AS")
        .or_else(|| s.strip_prefix("as"))
        .unwrap_or(s);
    t.parse().ok()
}

async fn peer_routes(
    State(app): State<App>,
    Path(address): Path<String>,
    Query(q): Query<PeerRoutesParams>,
) -> Result<axum::Json<PeerRoutesResponse>, ApiError> {
    let ip = peer_address(&address)?;
    let bad = |message: String| ApiError {
        status: StatusCode::BAD_REQUEST,
        message,
    };
    let dir = match q.dir.as_deref() {
        Some("in") => Direction::In,
        Some("out") => Direction::Out,
        Some(other) => return Err(bad(format!("dir={other:?}: expected in or out"))),
        None => return Err(bad("dir is required: dir=in or dir=out".to_owned())),
    };
    let received = match (dir, q.view.as_deref()) {
        (_, None | Some("accepted")) => false,
        (Direction::In, Some("received")) => true,
        (Direction::Out, Some(v)) => {
            return Err(bad(format!("view={v:?}: only dir=in has views")));
        }
        (_, Some(v)) => return Err(bad(format!("view={v:?}: expected accepted or received"))),
    };
    let cursor = match &q.cursor {
        None => rib::Cursor::default(),
        Some(c) => c
            .parse()
            .map_err(|_| bad(format!("cursor={c:?}: expected the next_cursor of a page")))?,
    };
    let limit = q
        .limit
        .unwrap_or(DEFAULT_ROUTES_LIMIT)
        .clamp(1, app.options.max_routes.max(1));
    let query = PeerRoutesQuery {
        address: ip,
        dir,
        received,
        filter: route_filter(&q)?,
        cursor,
        offset: q.offset.unwrap_or(0),
        limit,
    };
    let page = app
        .ask(app.speaker.peer_routes(query))
        .await?
        .map_err(|e| ApiError {
            status: match e {
                PeerRoutesError::NoPeer(_) => StatusCode::NOT_FOUND,
                PeerRoutesError::NotKept(_) => StatusCode::CONFLICT,
            },
            message: e.to_string(),
        })?;
    let routes = page.routes.iter().map(peer_route_view).collect();
    Ok(axum::Json(PeerRoutesResponse {
        peer: ip,
        dir,
        view: match (dir, received) {
            (Direction::Out, _) => "sent",
            (Direction::In, true) => "received",
            (Direction::In, false) => "accepted",
        }
        .to_owned(),
        routes,
        limit,
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

fn peer_route_view(r: &PeerRoute) -> PeerRouteView {
    let (prefix, path_id, a, status, reason, stale, from): (_, _, &rib::Attrs, _, _, _, _) = match r
    {
        PeerRoute::In(r) => {
            let status = match r.ineligible {
                Some(rib::Ineligible::RejectedByImport) => "rejected",
                Some(_) => "ineligible",
                None if r.best => "best",
                None => "accepted",
            };
            (
                r.prefix,
                (r.path_id != 0).then_some(r.path_id),
                &r.attrs,
                status,
                r.ineligible.map(|i| i.to_string()),
                r.stale,
                None,
            )
        }
        PeerRoute::Out { route: r, from } => {
            (r.prefix, r.path_id, &r.attrs, "sent", None, false, *from)
        }
    };
    PeerRouteView {
        prefix,
        path_id,
        attrs: AttrView::of(a, true),
        status: status.to_owned(),
        reason,
        stale,
        from,
    }
}

/// A best route as `GET /v1/routes` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    /// The prefix.
    pub prefix: IpNet,
    /// Its attributes, without the lists ([`AttrView::more`] is `None`).
    #[serde(flatten)]
    pub attrs: AttrView,
    /// The source peer's address; `null` for a route this speaker originates.
    pub peer: Option<IpAddr>,
}

/// The attributes of a route as every route view of the API shows them, flattened into
/// the view (`#[serde(flatten)]`): each field is declared and filled here only, and the
/// JSON keeps its field names and order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrView {
    /// The next hop; `null` for a route originated here without one (the session's
    /// address is sent).
    pub next_hop: Option<IpAddr>,
    /// AS_PATH in BIRD's notation (`65001 65002 {65003 65004}`), empty for a route from
    /// our own AS.
    pub as_path: String,
    /// ORIGIN: `IGP`, `EGP` or `INCOMPLETE`.
    pub origin: String,
    /// LOCAL_PREF, if carried.
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC, if carried.
    pub med: Option<u32>,
    /// The communities and the route-reflection attributes: in the views of one path
    /// (`/v1/routes/{prefix}`, `/v1/peers/{address}/routes`); `None`, and absent from
    /// the JSON, in the best-route listing `/v1/routes`.
    #[serde(flatten)]
    pub more: Option<MoreAttrs>,
}

/// The attributes [`AttrView::more`] adds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoreAttrs {
    /// COMMUNITIES (`65000:100`, or well-known names).
    pub communities: Vec<String>,
    /// LARGE_COMMUNITY.
    pub large_communities: Vec<String>,
    /// ORIGINATOR_ID (RFC 4456), if carried.
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456), most recent first.
    pub cluster_list: Vec<Ipv4Addr>,
}

impl AttrView {
    /// The view of `a`; with `more`, the communities and the route-reflection
    /// attributes too.
    fn of(a: &impl Attributes, more: bool) -> Self {
        Self {
            next_hop: a.next_hop().map(|nh| match nh {
                NextHop::V4(v4) => IpAddr::V4(v4),
                NextHop::V6 { global, .. } => IpAddr::V6(global),
            }),
            as_path: a.as_path().to_string(),
            origin: {
                let o = a.origin();
                o.name().map_or_else(|| o.0.to_string(), str::to_owned)
            },
            local_pref: a.local_pref(),
            med: a.med(),
            more: more.then(|| MoreAttrs {
                communities: a.communities().map(|c| c.to_string()).collect(),
                large_communities: a
                    .large_communities()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                originator_id: a.originator_id(),
                cluster_list: a.cluster_list().to_vec(),
            }),
        }
    }

    /// COMMUNITIES; empty without [`AttrView::more`].
    pub fn communities(&self) -> &[String] {
        self.more.as_ref().map_or(&[], |m| &m.communities)
    }

    /// LARGE_COMMUNITY; empty without [`AttrView::more`].
    pub fn large_communities(&self) -> &[String] {
        self.more.as_ref().map_or(&[], |m| &m.large_communities)
    }
}

/// What [`AttrView::of`] reads: the interned [`AttrSet`] of the Loc-RIB and the decoded
/// [`rib::Attrs`] of the per-peer tables.
trait Attributes {
    fn next_hop(&self) -> Option<NextHop>;
    fn as_path(&self) -> bgp_wire::attr::AsPath;
    fn origin(&self) -> bgp_wire::attr::Origin;
    fn local_pref(&self) -> Option<u32>;
    fn med(&self) -> Option<u32>;
    fn communities(&self) -> impl Iterator<Item = bgp_wire::attr::Community> + '_;
    fn large_communities(&self) -> &[bgp_wire::attr::LargeCommunity];
    fn originator_id(&self) -> Option<Ipv4Addr>;
    fn cluster_list(&self) -> &[Ipv4Addr];
}

impl Attributes for AttrSet {
    fn next_hop(&self) -> Option<NextHop> {
        Self::next_hop(self)
    }
    fn as_path(&self) -> bgp_wire::attr::AsPath {
        Self::as_path(self)
    }
    fn origin(&self) -> bgp_wire::attr::Origin {
        Self::origin(self)
    }
    fn local_pref(&self) -> Option<u32> {
        Self::local_pref(self)
    }
    fn med(&self) -> Option<u32> {
        Self::med(self)
    }
    fn communities(&self) -> impl Iterator<Item = bgp_wire::attr::Community> + '_ {
        Self::communities(self)
    }
    fn large_communities(&self) -> &[bgp_wire::attr::LargeCommunity] {
        Self::large_communities(self)
    }
    fn originator_id(&self) -> Option<Ipv4Addr> {
        Self::originator_id(self)
    }
    fn cluster_list(&self) -> &[Ipv4Addr] {
        Self::cluster_list(self)
    }
}

impl Attributes for rib::Attrs {
    fn next_hop(&self) -> Option<NextHop> {
        self.next_hop
    }
    fn as_path(&self) -> bgp_wire::attr::AsPath {
        self.as_path.clone()
    }
    fn origin(&self) -> bgp_wire::attr::Origin {
        self.origin
    }
    fn local_pref(&self) -> Option<u32> {
        self.local_pref
    }
    fn med(&self) -> Option<u32> {
        self.med
    }
    fn communities(&self) -> impl Iterator<Item = bgp_wire::attr::Community> + '_ {
        self.communities.iter().copied()
    }
    fn large_communities(&self) -> &[bgp_wire::attr::LargeCommunity] {
        &self.large_communities
    }
    fn originator_id(&self) -> Option<Ipv4Addr> {
        self.originator_id
    }
    fn cluster_list(&self) -> &[Ipv4Addr] {
        &self.cluster_list
    }
}

/// `GET /v1/routes`: one page of best routes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoutesResponse {
    /// The routes in prefix order: address family (IPv4 first), then address, then length.
    pub routes: Vec<RouteView>,
    /// Routes skipped before this page.
    pub offset: usize,
    /// The page size asked for (after capping).
    pub limit: usize,
    /// The `offset` of the next page, if more routes follow.
    pub next_offset: Option<usize>,
}

/// The query of `GET /v1/routes`.
#[derive(Debug, Deserialize)]
struct RoutesQuery {
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn routes(
    State(app): State<App>,
    Query(q): Query<RoutesQuery>,
) -> Result<axum::Json<RoutesResponse>, ApiError> {
    let limit = q
        .limit
        .unwrap_or(DEFAULT_ROUTES_LIMIT)
        .min(app.options.max_routes);
    let offset = q.offset.unwrap_or(0);
    let page = app.ask(app.speaker.routes(offset, limit)).await?;
    Ok(axum::Json(RoutesResponse {
        routes: page.routes.iter().map(route_view).collect(),
        offset,
        limit,
        next_offset: page.more.then_some(offset + limit),
    }))
}

fn route_view(r: &RouteEntry) -> RouteView {
    RouteView {
        prefix: r.prefix,
        attrs: AttrView::of(&*r.best.attrs, false),
        peer: r.from,
    }
}

/// One path of a prefix as `GET /v1/routes/{prefix}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathView {
    /// The source peer's address; `null` for a route this speaker originates.
    pub peer: Option<IpAddr>,
    /// `best`, `lost` (eligible, beaten at some step) or `ineligible`.
    pub status: String,
    /// Why it lost or is ineligible, in words; `null` for the best path.
    pub reason: Option<String>,
    /// Its attributes, every one of them.
    #[serde(flatten)]
    pub attrs: AttrView,
    /// The ADD-PATH identifier it was received with (0 without ADD-PATH).
    pub path_id: u32,
    /// Kept from a gracefully restarting peer (RFC 4724), still eligible.
    pub stale: bool,
    /// Equal to the best path through the MED step (multipath).
    pub ecmp: bool,
}

/// `GET /v1/routes/{prefix}`: every path of a prefix in decision order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RouteDetail {
    /// The prefix.
    pub prefix: IpNet,
    /// Its paths, the best first.
    pub paths: Vec<PathView>,
}

/// Parses `10.0.0.0/24`, or an address as its host prefix.
fn parse_prefix(s: &str) -> Option<IpNet> {
    let s = s.trim_matches('/');
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

async fn route(
    State(app): State<App>,
    Path(raw): Path<String>,
) -> Result<axum::Json<RouteDetail>, ApiError> {
    let Some(prefix) = parse_prefix(&raw) else {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("not a prefix: {raw:?} (10.0.0.0/24, or 10.0.0.0%2F24)"),
        });
    };
    // A bare address asks for its longest match.
    let bare =
        !raw.trim_matches('/').contains('/') && prefix.prefix_len() == prefix.max_prefix_len();
    let answer = if bare {
        app.ask(app.speaker.lookup(prefix.addr())).await?
    } else {
        app.ask(app.speaker.explain(prefix)).await?
    };
    let Some(e) = answer else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: if bare {
                format!("no route covers {}", prefix.addr())
            } else {
                format!("no route for {}", prefix.trunc())
            },
        });
    };
    let paths = e
        .explanation
        .paths
        .iter()
        .zip(&e.from)
        .map(|(p, from)| path_view(p, *from))
        .collect();
    Ok(axum::Json(RouteDetail {
        prefix: e.explanation.prefix,
        paths,
    }))
}

fn path_view(p: &rib::PathReport, from: Option<IpAddr>) -> PathView {
    PathView {
        peer: from,
        status: p.status.name().to_owned(),
        reason: p.status.reason().map(ToString::to_string),
        attrs: AttrView::of(&*p.attrs, true),
        path_id: p.path_id,
        stale: p.stale,
        ecmp: p.ecmp,
    }
}

/// A peer that keeps the speaker from being ready, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotReady {
    /// The peer's address.
    pub address: IpAddr,
    /// Its state.
    pub state: String,
    /// Why it is not ready, in words.
    pub reason: String,
    /// The peer's `down_reason` from the fixed list, when it is not Established.
    #[serde(default)]
    pub down_reason: Option<crate::speaker::Reason>,
}

/// The body of `/readyz`, and part of `/v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Readiness {
    /// Whether the speaker is ready.
    pub ready: bool,
    /// Configured peers (dynamic neighbours aside).
    pub peers: usize,
    /// Of those, how many are Established.
    pub established: usize,
    /// The peers that make it not ready.
    pub not_ready: Vec<NotReady>,
    /// With `[api] ready_requires_fib`: why the kernel routes make it not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fib: Option<String>,
    /// `rr-daemon agent`: why Calico's datastore is stale (`datastore: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
}

/// Readiness from the peers' status, `since_start` after the speaker started, with
/// `grace` as the start's grace period: Calico's rule for BIRD (`calico-node -bird-ready`,
/// node/pkg/health), see the module documentation. Pure, so that it is tested with any
/// time.
pub fn readiness(peers: &[PeerStatus], since_start: Duration, grace: Duration) -> Readiness {
    let configured: Vec<&PeerStatus> = peers.iter().filter(|p| !p.dynamic).collect();
    let established = configured
        .iter()
        .filter(|p| p.state == "Established")
        .count();
    let starting = since_start < grace;
    // After the grace period one Established peer is enough; without peers there is
    // nothing to wait for.
    let ready_anyway = configured.is_empty() || (!starting && established > 0);
    let mut not_ready = Vec::new();
    for p in configured.iter().filter(|_| !ready_anyway) {
        let reason = if p.graceful_restart_pending {
            Some(if p.state == "Established" {
                "graceful restart: waiting for the peer's End-of-RIB; its stale routes are kept"
                    .to_owned()
            } else {
                format!(
                    "graceful restart: the peer is restarting ({}); its stale routes are kept",
                    p.last_error.as_deref().unwrap_or("no error recorded")
                )
            })
        } else if p.state != "Established" {
            let rule = if starting {
                format!(
                    "every peer must be up in the first {} s after the start",
                    grace.as_secs()
                )
            } else {
                "no peer is Established".to_owned()
            };
            let why = match (&p.down_reason, &p.last_error) {
                (Some(d), _) => format!("{}: {}", d.reason, d.message),
                (None, Some(e)) => e.clone(),
                (None, None) => "no error recorded yet (no answer from the peer)".to_owned(),
            };
            Some(format!(
                "not Established ({} for {} s; {rule}): {why}",
                p.state, p.since_s
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            not_ready.push(NotReady {
                address: p.address,
                state: p.state.to_string(),
                reason,
                down_reason: p.down_reason.as_ref().map(|d| d.reason),
            });
        }
    }
    Readiness {
        ready: not_ready.is_empty(),
        peers: configured.len(),
        established,
        not_ready,
        fib: None,
        datastore: None,
    }
}

/// Why the kernel routes are not programmed yet (`[api] ready_requires_fib`); `None`
/// when they are. `report` is `None` when the FIB task did not answer.
pub fn fib_not_ready(report: Option<&crate::fib::FibReport>) -> Option<String> {
    let Some(r) = report else {
        return Some("fib: the FIB task does not answer (see the log)".to_owned());
    };
    if !r.synced {
        Some("fib: initial sync not over".to_owned())
    } else if r.failing > 0 {
        Some(format!("fib: {} route(s) failing", r.failing))
    } else if r.pending > 0 {
        Some(format!("fib: {} route(s) pending", r.pending))
    } else {
        None
    }
}

/// `GET /v1/fib`: the FIB task's report; 404 when `[fib]` is off.
async fn fib(State(app): State<App>) -> Result<axum::Json<crate::fib::FibReport>, ApiError> {
    let Some(h) = &app.options.fib else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "kernel routes are not programmed: [fib] is off".to_owned(),
        });
    };
    match tokio::time::timeout(app.options.core_timeout, h.report()).await {
        Ok(Some(r)) => Ok(axum::Json(r)),
        Ok(None) => Err(ApiError::unavailable(
            "the FIB task has stopped (see the log)".to_owned(),
        )),
        Err(_) => Err(ApiError::unavailable(
            "the FIB task did not answer in time".to_owned(),
        )),
    }
}

/// `GET /v1/mrt`: an MRT TABLE_DUMP_V2 dump of the RIB ([`crate::mrt`]), streamed.
async fn mrt(State(app): State<App>) -> Response {
    let body = axum::body::Body::from_stream(crate::mrt::stream(app.speaker.clone()));
    ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
}

async fn healthz(State(app): State<App>) -> Result<&'static str, ApiError> {
    app.ask(app.speaker.peers()).await?;
    Ok("ok\n")
}

/// The peers readiness counts: all but [`ApiOptions::not_counted`].
fn counted(options: &ApiOptions, mut peers: Vec<PeerStatus>) -> Vec<PeerStatus> {
    if let Some(n) = &options.not_counted {
        let n = n.borrow();
        peers.retain(|p| !n.contains(&p.address));
    }
    peers
}

async fn readyz(State(app): State<App>) -> Result<Response, ApiError> {
    let peers = counted(&app.options, app.ask(app.speaker.peers()).await?);
    let mut r = readiness(&peers, app.started.elapsed(), app.options.readiness_grace);
    if app.options.ready_requires_fib
        && let Some(h) = &app.options.fib
    {
        let report = tokio::time::timeout(app.options.core_timeout, h.report())
            .await
            .ok()
            .flatten();
        if let Some(why) = fib_not_ready(report.as_ref()) {
            r.ready = false;
            r.fib = Some(why);
        }
    }
    datastore_stale(&app.options, &mut r);
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((code, axum::Json(r)).into_response())
}

/// Table sizes, as `/v1/status` reports them.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct RibSizes {
    /// Prefixes in the Loc-RIB.
    pub prefixes: usize,
    /// Paths over all prefixes.
    pub paths: usize,
    /// Distinct (interned) attribute sets.
    pub attribute_sets: usize,
    /// Paths in the Adj-RIBs-Out, over all update groups.
    pub adj_rib_out_paths: usize,
    /// Update groups.
    pub update_groups: usize,
    /// Prefixes waiting to be sent, over all groups.
    pub pending_prefixes: usize,
    /// Peer slots of the RIB, used and free: the most peers at once.
    #[serde(default)]
    pub peer_slots: usize,
}

/// `GET /v1/status`: who we are, readiness and table sizes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The daemon's version.
    pub version: String,
    /// Our AS.
    pub asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Seconds since the API started (with the daemon).
    pub uptime_s: u64,
    /// Readiness, as `/readyz` reports it.
    pub readiness: Readiness,
    /// Table sizes.
    pub rib: RibSizes,
}

/// `rr-daemon agent`: a stale datastore makes it not ready, and says why.
fn datastore_stale(options: &ApiOptions, r: &mut Readiness) {
    if let Some(why) = options.datastore.as_ref().and_then(|d| d.borrow().clone()) {
        r.ready = false;
        r.datastore = Some(format!("datastore: {why}"));
    }
}

async fn status(State(app): State<App>) -> Result<axum::Json<StatusResponse>, ApiError> {
    let s = app.ask(app.speaker.snapshot()).await?;
    let mut readiness = readiness(
        &counted(&app.options, s.peers.clone()),
        app.started.elapsed(),
        app.options.readiness_grace,
    );
    datastore_stale(&app.options, &mut readiness);
    Ok(axum::Json(StatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        asn: s.local_as,
        router_id: s.router_id,
        uptime_s: app.started.elapsed().as_secs(),
        readiness,
        rib: RibSizes {
            prefixes: s.rib.prefixes,
            paths: s.rib.paths,
            attribute_sets: s.rib.attr_sets,
            adj_rib_out_paths: s.rib.adj_out_paths,
            update_groups: s.rib.groups,
            pending_prefixes: s.rib.pending,
            peer_slots: s.rib.peer_slots,
        },
    }))
}

async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    let s = app.ask(app.speaker.snapshot()).await?;
    let ready = readiness(
        &counted(&app.options, s.peers.clone()),
        app.started.elapsed(),
        app.options.readiness_grace,
    );
    let fib = match &app.options.fib {
        Some(h) => tokio::time::timeout(app.options.core_timeout, h.report())
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let text = render_metrics(&s, &ready, fib.as_ref()).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("cannot encode metrics: {e}"),
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The text of `d` seconds as `birdc` shows times: `hh:mm:ss`, or `Nd hh:mm` past a day.
pub fn format_duration(d: u64) -> String {
    let (days, h, m, s) = (d / 86_400, d / 3600 % 24, d / 60 % 60, d % 60);
    let mut out = String::new();
    if days > 0 {
        let _ = write!(out, "{days}d {h:02}:{m:02}");
    } else {
        let _ = write!(out, "{h:02}:{m:02}:{s:02}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_with_or_without_length() {
        assert_eq!(
            parse_prefix("10.0.0.0/24"),
            Some("10.0.0.0/24".parse().unwrap())
        );
        assert_eq!(
            parse_prefix("10.0.0.1"),
            Some("10.0.0.1/32".parse().unwrap())
        );
        assert_eq!(
            parse_prefix("2001:db8::/32"),
            Some("2001:db8::/32".parse().unwrap())
        );
        assert_eq!(parse_prefix("nonsense"), None);
    }

    #[test]
    fn durations_read_like_birdc() {
        assert_eq!(format_duration(75), "00:01:15");
        assert_eq!(format_duration(2 * 86_400 + 3 * 3600 + 4 * 60), "2d 03:04");
    }

    /// A route carrying every attribute the views show, and a second one with none of
    /// the optional ones, as the three views render them.
    fn every_attribute() -> [rib::Attrs; 2] {
        use bgp_wire::attr::{AsPath, AsSegment, AsSegmentType, Community, LargeCommunity, Origin};
        let full = rib::Attrs {
            origin: Origin(1),
            as_path: AsPath {
                segments: vec![
                    AsSegment {
                        ty: AsSegmentType::AS_SEQUENCE,
                        asns: vec![65001, 4_200_000_000],
                    },
                    AsSegment {
                        ty: AsSegmentType::AS_SET,
                        asns: vec![65003, 65004],
                    },
                ],
            },
            next_hop: Some(NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: Some("fe80::1".parse().unwrap()),
            }),
            med: Some(50),
            local_pref: Some(200),
            communities: vec![Community::new(65000, 100), Community::NO_EXPORT],
            large_communities: vec![LargeCommunity {
                global: 65000,
                local1: 1,
                local2: 2,
            }],
            originator_id: Some(Ipv4Addr::new(192, 0, 2, 9)),
            cluster_list: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
            ..rib::Attrs::default()
        };
        let bare = rib::Attrs {
            next_hop: Some(NextHop::V4(Ipv4Addr::new(192, 0, 2, 1))),
            ..rib::Attrs::default()
        };
        [full, bare]
    }

    /// Renders the three views of each route of [`every_attribute`] as JSON lines.
    fn views_json() -> String {
        let mut out = String::new();
        for (i, a) in every_attribute().into_iter().enumerate() {
            let set = std::sync::Arc::new(AttrSet::from(a.clone()));
            let prefix: IpNet = "2001:db8:1::/48".parse().unwrap();
            let from = (i == 0).then(|| "2001:db8::7".parse::<IpAddr>().unwrap());
            let route = RouteEntry {
                prefix,
                best: rib::BestRoute {
                    peer: rib::PeerId::LOCAL,
                    path_id: Some(3),
                    attrs: set.clone(),
                },
                from,
            };
            let path = rib::PathReport {
                peer: rib::PeerId::LOCAL,
                path_id: 3,
                tx_path_id: 4,
                attrs: set,
                stale: i == 0,
                ecmp: i == 1,
                status: if i == 0 {
                    rib::PathStatus::Best
                } else {
                    rib::PathStatus::Ineligible(rib::Ineligible::ClusterLoop)
                },
            };
            let peer_in = PeerRoute::In(rib::InRoute {
                prefix,
                path_id: 3 * u32::try_from(i).unwrap(),
                attrs: a.clone(),
                ineligible: (i == 1).then_some(rib::Ineligible::RejectedByImport),
                best: i == 0,
                stale: i == 0,
            });
            let peer_out = PeerRoute::Out {
                route: rib::OutRoute {
                    prefix,
                    path_id: (i == 0).then_some(9),
                    attrs: a,
                    source: rib::PeerId::LOCAL,
                },
                from,
            };
            for json in [
                serde_json::to_string(&route_view(&route)).unwrap(),
                serde_json::to_string(&path_view(&path, from)).unwrap(),
                serde_json::to_string(&peer_route_view(&peer_in)).unwrap(),
                serde_json::to_string(&peer_route_view(&peer_out)).unwrap(),
            ] {
                out.push_str(&json);
                out.push('\n');
            }
        }
        out
    }

    /// The JSON of `/v1/routes`, `/v1/routes/{prefix}` and `/v1/peers/{address}/routes`
    /// routes, field names and order, as they were before the attribute fields were
    /// folded into [`AttrView`]: `ctl --json`, tests and scripts read them.
    #[test]
    fn route_views_json_is_unchanged() {
        let got = views_json();
        assert_eq!(got, GOLDEN_VIEWS);
        // `ctl` reads them back: each line parses into its view and renders the same.
        fn again<T: Serialize + serde::de::DeserializeOwned>(line: &str) -> String {
            serde_json::to_string(&serde_json::from_str::<T>(line).unwrap()).unwrap()
        }
        for (i, line) in GOLDEN_VIEWS.lines().enumerate() {
            let back = match i % 4 {
                0 => again::<RouteView>(line),
                1 => again::<PathView>(line),
                _ => again::<PeerRouteView>(line),
            };
            assert_eq!(back, line);
        }
    }

    /// What the views rendered before [`AttrView`]: one JSON line each, in the order
    /// of [`views_json`].
    const GOLDEN_VIEWS: &str = concat!(
        r#"{"prefix":"2001:db8:1::/48","next_hop":"2001:db8::1","as_path":"65001 4200000000 {65003 65004}","origin":"EGP","local_pref":200,"med":50,"peer":"2001:db8::7"}"#,
        "\n",
        r#"{"peer":"2001:db8::7","status":"best","reason":null,"next_hop":"2001:db8::1","as_path":"65001 4200000000 {65003 65004}","origin":"EGP","local_pref":200,"med":50,"communities":["65000:100","NO_EXPORT"],"large_communities":["65000:1:2"],"originator_id":"192.0.2.9","cluster_list":["10.0.0.1","10.0.0.2"],"path_id":3,"stale":true,"ecmp":false}"#,
        "\n",
        r#"{"prefix":"2001:db8:1::/48","path_id":null,"next_hop":"2001:db8::1","as_path":"65001 4200000000 {65003 65004}","origin":"EGP","local_pref":200,"med":50,"communities":["65000:100","NO_EXPORT"],"large_communities":["65000:1:2"],"originator_id":"192.0.2.9","cluster_list":["10.0.0.1","10.0.0.2"],"status":"best","reason":null,"stale":true,"from":null}"#,
        "\n",
        r#"{"prefix":"2001:db8:1::/48","path_id":9,"next_hop":"2001:db8::1","as_path":"65001 4200000000 {65003 65004}","origin":"EGP","local_pref":200,"med":50,"communities":["65000:100","NO_EXPORT"],"large_communities":["65000:1:2"],"originator_id":"192.0.2.9","cluster_list":["10.0.0.1","10.0.0.2"],"status":"sent","reason":null,"stale":false,"from":"2001:db8::7"}"#,
        "\n",
        r#"{"prefix":"2001:db8:1::/48","next_hop":"192.0.2.1","as_path":"","origin":"IGP","local_pref":null,"med":null,"peer":null}"#,
        "\n",
        r#"{"peer":null,"status":"ineligible","reason":"CLUSTER_LIST holds our cluster ID (reflection loop)","next_hop":"192.0.2.1","as_path":"","origin":"IGP","local_pref":null,"med":null,"communities":[],"large_communities":[],"originator_id":null,"cluster_list":[],"path_id":3,"stale":false,"ecmp":true}"#,
        "\n",
        r#"{"prefix":"2001:db8:1::/48","path_id":3,"next_hop":"192.0.2.1","as_path":"","origin":"IGP","local_pref":null,"med":null,"communities":[],"large_communities":[],"originator_id":null,"cluster_list":[],"status":"rejected","reason":"rejected by the import policy (or no policy on an eBGP session, RFC 8212)","stale":false,"from":null}"#,
        "\n",
        r#"{"prefix":"2001:db8:1::/48","path_id":null,"next_hop":"192.0.2.1","as_path":"","origin":"IGP","local_pref":null,"med":null,"communities":[],"large_communities":[],"originator_id":null,"cluster_list":[],"status":"sent","reason":null,"stale":false,"from":null}"#,
        "\n",
    );
}
