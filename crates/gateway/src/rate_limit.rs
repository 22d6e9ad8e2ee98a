//! Per-client rate limits on the anonymous routes and on agent login.
//!
//! Two budgets, each a GCRA bucket per client address (the `governor` crate):
//! - **anonymous**: every customer route under `/v1/cases` (opening a case and every
//!   case-token call, the live stream included); one bucket per address for all of them;
//! - **login**: `POST /v1/agent/login` and the console's login form.
//!
//! Carrier webhooks are signed and not limited here; the agent API behind a session is
//! not limited either (an agent is accountable by name). A new anonymous route (e.g.
//! token recovery) under `/v1/cases/…` is covered without a change; one elsewhere is
//! added to [`classify`].
//!
//! The client address is the TCP peer, unless the peer is one of the trusted proxies
//! ([`TRUSTED_PROXIES_ENV`]): then it is the right-most address of `X-Forwarded-For`
//! that is not itself a trusted proxy (what a client writes to the left of that is
//! ignored, as it can be forged). IPv6 clients are counted per /64, the smallest
//! block one subscriber line usually gets, so rotating addresses inside it buys nothing.
//!
//! Past its budget a client gets `429` problem+json with `Retry-After` (whole seconds,
//! rounded up), and the request does not reach its handler.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use ipnet::IpNet;
use service_runtime::Problem;

/// `off` turns every per-client limit off (load tests, the bench); default on.
pub const RATE_LIMITS_ENV: &str = "REACTIVATION_RATE_LIMITS";
/// Comma-separated addresses or CIDR blocks of the reverse proxies in front of the
/// gateway whose `X-Forwarded-For` is believed. Default: none (the header is ignored).
pub const TRUSTED_PROXIES_ENV: &str = "REACTIVATION_TRUSTED_PROXIES";
/// Requests an address may make at once on the anonymous routes (default 30).
pub const ANONYMOUS_BURST_ENV: &str = "REACTIVATION_RATE_LIMIT_ANONYMOUS_BURST";
/// Milliseconds after which one more anonymous request is allowed (default 2000).
pub const ANONYMOUS_PERIOD_ENV: &str = "REACTIVATION_RATE_LIMIT_ANONYMOUS_PERIOD_MS";
/// Login attempts an address may make at once (default 10).
pub const LOGIN_BURST_ENV: &str = "REACTIVATION_RATE_LIMIT_LOGIN_BURST";
/// Milliseconds after which one more login attempt is allowed (default 6000).
pub const LOGIN_PERIOD_ENV: &str = "REACTIVATION_RATE_LIMIT_LOGIN_PERIOD_MS";

/// One budget: `burst` requests at once, one more every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Requests allowed at once.
    pub burst: NonZeroU32,
    /// Time after which one more request is allowed.
    pub period: Duration,
}

impl Budget {
    /// `burst` at once, one more every `period` (`None` when either is zero).
    pub fn new(burst: u32, period: Duration) -> Option<Self> {
        (!period.is_zero()).then_some(())?;
        Some(Self {
            burst: NonZeroU32::new(burst)?,
            period,
        })
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.period)
            .expect("period is not zero")
            .allow_burst(self.burst)
    }
}

/// The rate-limit settings, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Limits are enforced (`REACTIVATION_RATE_LIMITS` is not `off`).
    pub enabled: bool,
    /// The anonymous routes' budget.
    pub anonymous: Budget,
    /// The login budget.
    pub login: Budget,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for RateLimitConfig {
    /// On, 30 anonymous requests at once then one every 2 s (30 a minute), 10 logins at
    /// once then one every 6 s, no trusted proxy.
    fn default() -> Self {
        Self {
            enabled: true,
            anonymous: Budget::new(30, Duration::from_secs(2)).expect("non-zero"),
            login: Budget::new(10, Duration::from_secs(6)).expect("non-zero"),
            trusted_proxies: Vec::new(),
        }
    }
}

impl RateLimitConfig {
    /// Limits off (in-process tests, load tests).
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Reads the settings from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`; a malformed value is an error naming its
    /// variable (the gateway refuses to start rather than run unprotected).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let defaults = Self::default();
        let enabled = match lookup(RATE_LIMITS_ENV)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("" | "on" | "true" | "1") => true,
            Some("off" | "false" | "0") => false,
            Some(_) => anyhow::bail!("{RATE_LIMITS_ENV} must be `on` or `off`"),
        };
        let budget = |burst_var: &str, period_var: &str, default: Budget| {
            let number =
                |var: &str, default: u64| -> anyhow::Result<u64> {
                    match lookup(var).map(|v| v.trim().to_owned()) {
                        None => Ok(default),
                        Some(v) if v.is_empty() => Ok(default),
                        Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                            anyhow::anyhow!("{var} must be a positive whole number")
                        }),
                    }
                };
            let burst = number(burst_var, u64::from(default.burst.get()))?;
            let period_ms = number(period_var, default.period.as_millis() as u64)?;
            let burst = u32::try_from(burst)
                .map_err(|_| anyhow::anyhow!("{burst_var} must be a positive whole number"))?;
            Budget::new(burst, Duration::from_millis(period_ms))
                .ok_or_else(|| anyhow::anyhow!("{burst_var} and {period_var} must be positive"))
        };
        let anonymous = budget(
            ANONYMOUS_BURST_ENV,
            ANONYMOUS_PERIOD_ENV,
            defaults.anonymous,
        )?;
        let login = budget(LOGIN_BURST_ENV, LOGIN_PERIOD_ENV, defaults.login)?;
        let trusted_proxies = lookup(TRUSTED_PROXIES_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "{TRUSTED_PROXIES_ENV}: `{s}` is not an IP address or CIDR block"
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            enabled,
            anonymous,
            login,
            trusted_proxies,
        })
    }
}

/// Which budget a route draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The anonymous customer routes.
    Anonymous,
    /// Agent login (API and console form).
    Login,
}

/// The budget of a request to the route `path` (its matched pattern), if any.
pub fn classify(method: &Method, path: &str) -> Option<Class> {
    if path == "/v1/cases" || path.starts_with("/v1/cases/") {
        return Some(Class::Anonymous);
    }
    if *method == Method::POST && matches!(path, "/v1/agent/login" | "/console/login") {
        return Some(Class::Login);
    }
    None
}

/// The limiters of one gateway (shared by its routes; cheap to clone).
#[derive(Debug, Clone)]
pub struct RateLimits {
    inner: Option<Arc<Limiters>>,
}

#[derive(Debug)]
struct Limiters {
    anonymous: DefaultKeyedRateLimiter<IpAddr>,
    login: DefaultKeyedRateLimiter<IpAddr>,
    trusted_proxies: Vec<IpNet>,
}

impl RateLimits {
    /// The limiters for `config` (none when it is off).
    pub fn new(config: &RateLimitConfig) -> Self {
        let inner = config.enabled.then(|| {
            Arc::new(Limiters {
                anonymous: RateLimiter::keyed(config.anonymous.quota()),
                login: RateLimiter::keyed(config.login.quota()),
                trusted_proxies: config.trusted_proxies.clone(),
            })
        });
        Self { inner }
    }

    /// No limits.
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// Whether any limit is enforced.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Forgets the buckets of clients that are back to a full budget (their state
    /// carries no information), so memory does not grow with every address ever seen.
    pub fn forget_idle(&self) {
        if let Some(limiters) = &self.inner {
            for limiter in [&limiters.anonymous, &limiters.login] {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

/// The client a request is counted against: the peer, or (when the peer is a trusted
/// proxy) the right-most untrusted address of `X-Forwarded-For`.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // Walk from the hop nearest to us; every hop a trusted proxy appended is believed.
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // A trusted proxy wrote something that is not an address: count the
            // request against the last address we can vouch for.
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// IPv4-mapped IPv6 as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The bucket key of a client: IPv4 addresses as they are, IPv6 by their /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The 429 answer.
pub fn too_many_requests(retry_after: Duration) -> Response {
    // Whole seconds, rounded up, at least one: a client that waits that long gets in.
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        format!("Too many requests from this address; retry in {seconds} s."),
    )
    .with("retry_after", seconds)
    .into_response_retrying(seconds)
}

/// The middleware (a route layer: it reads the matched route).
pub async fn enforce(State(limits): State<RateLimits>, request: Request, next: Next) -> Response {
    let Some(limiters) = &limits.inner else {
        return next.run(request).await;
    };
    let Some(path) = request.extensions().get::<MatchedPath>() else {
        return next.run(request).await;
    };
    let Some(class) = classify(request.method(), path.as_str()) else {
        return next.run(request).await;
    };
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        // The server was started without connect info: a wiring bug, not the client's.
        tracing::error!("rate limits on, but the peer address is unknown");
        return Problem::internal().into_response();
    };
    let client = client_address(peer.ip(), request.headers(), &limiters.trusted_proxies);
    let limiter = match class {
        Class::Anonymous => &limiters.anonymous,
        Class::Login => &limiters.login,
    };
    match limiter.check_key(&bucket(client)) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            ::metrics::counter!(
                "gateway_rate_limited_total",
                "class" => match class { Class::Anonymous => "anonymous", Class::Login => "login" }
            )
            .increment(1);
            too_many_requests(not_until.wait_time_from(DefaultClock::default().now()))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let peer: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_address(peer, &xff("203.0.113.1"), &nets(&["10.0.0.0/8"])),
            peer
        );
        assert_eq!(client_address(peer, &xff("203.0.113.1"), &[]), peer);
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_counts() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged a left-most entry; the proxies appended the real one.
        let headers = xff("1.2.3.4, 203.0.113.9, 10.0.0.1");
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // Several header lines are one list, in order.
        let mut headers = xff("1.2.3.4");
        headers.append("x-forwarded-for", "203.0.113.10".parse().unwrap());
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "203.0.113.10".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself.
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
        // Garbage from a trusted hop: the last address vouched for.
        assert_eq!(
            client_address(proxy, &xff("203.0.113.9, garbage"), &trusted),
            proxy
        );
        // Ports and mapped addresses are understood.
        assert_eq!(
            client_address(proxy, &xff("[::ffff:203.0.113.5]:443"), &trusted),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket(c));
    }

    #[test]
    fn settings_default_on_and_refuse_nonsense() {
        let none = RateLimitConfig::from_lookup(|_| None).unwrap();
        assert_eq!(none, RateLimitConfig::default());
        assert!(none.enabled);
        let off = RateLimitConfig::from_lookup(|n| (n == RATE_LIMITS_ENV).then(|| " OFF ".into()))
            .unwrap();
        assert!(!off.enabled);
        let set = RateLimitConfig::from_lookup(|n| match n {
            ANONYMOUS_BURST_ENV => Some("5".into()),
            LOGIN_PERIOD_ENV => Some("1500".into()),
            TRUSTED_PROXIES_ENV => Some("10.0.0.0/8, 192.0.2.1 ,::1".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(set.anonymous.burst.get(), 5);
        assert_eq!(set.login.period, Duration::from_millis(1500));
        assert_eq!(set.trusted_proxies.len(), 3);
        for (var, value) in [
            (RATE_LIMITS_ENV, "maybe"),
            (ANONYMOUS_BURST_ENV, "0"),
            (LOGIN_BURST_ENV, "-1"),
            (ANONYMOUS_PERIOD_ENV, "2s"),
            (TRUSTED_PROXIES_ENV, "10.0.0.0/33"),
        ] {
            let error = RateLimitConfig::from_lookup(|n| (n == var).then(|| value.into()))
                .expect_err(value)
                .to_string();
            assert!(error.contains(var), "{error}");
        }
    }

    #[test]
    fn routes_draw_on_their_budget() {
        assert_eq!(classify(&Method::POST, "/v1/cases"), Some(Class::Anonymous));
        assert_eq!(
            classify(&Method::GET, "/v1/cases/{case_id}/events"),
            Some(Class::Anonymous)
        );
        assert_eq!(
            classify(&Method::POST, "/v1/agent/login"),
            Some(Class::Login)
        );
        assert_eq!(
            classify(&Method::POST, "/console/login"),
            Some(Class::Login)
        );
        assert_eq!(classify(&Method::GET, "/console/login"), None);
        assert_eq!(classify(&Method::POST, "/v1/webhooks/carrier"), None);
        assert_eq!(classify(&Method::GET, "/v1/agent/queue"), None);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        for (wait, expected) in [(0, "1"), (1, "1"), (1001, "2"), (5000, "5")] {
            let response = too_many_requests(Duration::from_millis(wait));
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(response.headers()[header::RETRY_AFTER], expected);
        }
    }
}
