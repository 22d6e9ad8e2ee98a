//! Where outbound webhooks may go: the SSRF check of endpoint URLs.
//!
//! A URL is parsed by the `url` crate (WHATWG rules, so hex, octal, dotless-decimal
//! and short IPv4 spellings such as `0x7f.1` or `2130706433` come out as the address
//! they mean), must be `http` or `https` without credentials, and every address its
//! host stands for — the literal, or every A and AAAA record — must be public. The
//! check runs at registration and again before every delivery, and the delivery
//! connects to the addresses that were checked (no second lookup to rebind).

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// What the operator allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// Development only (`REACTIVATION_WEBHOOKS_ALLOW_PRIVATE=true`): loopback and
    /// private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed.
    /// Link-local (and the metadata address), CGNAT, multicast, unspecified and
    /// reserved addresses stay refused.
    pub allow_private: bool,
}

/// Why a destination is refused. Messages are safe to show to the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a URL at all.
    #[error("is not a valid absolute URL")]
    Unparsable,
    /// Longer than 2048 characters.
    #[error("is longer than {MAX_URL_LEN} characters")]
    TooLong,
    /// Not http or https.
    #[error("must use http or https")]
    Scheme,
    /// `user:password@` in the URL.
    #[error("must not contain credentials")]
    Credentials,
    /// No host.
    #[error("must name a host")]
    NoHost,
    /// The host resolves to nothing.
    #[error("the host does not resolve to any address")]
    Unresolvable,
    /// An address of the host is in a refused range.
    #[error("points at a {0} address, which webhooks may not reach")]
    Blocked(&'static str),
}

/// The host of an endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A name to resolve.
    Domain(String),
    /// A literal address.
    Ip(IpAddr),
}

/// A parsed endpoint URL that passed the static checks (scheme, credentials, a
/// literal address's range). A domain's addresses are checked by [`resolve_checked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    url: url::Url,
    host: Host,
    port: u16,
}

impl EndpointUrl {
    /// The normalised URL to send to.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port (explicit or the scheme's default).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as written in the URL (for pinning a resolved address to it).
    pub fn host_str(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }
}

/// Parses and statically checks an endpoint URL.
pub fn parse_endpoint_url(raw: &str, policy: DestinationPolicy) -> Result<EndpointUrl, Refusal> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(Refusal::TooLong);
    }
    let url = url::Url::parse(raw).map_err(|_| Refusal::Unparsable)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    let host = match url.host() {
        None => return Err(Refusal::NoHost),
        Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            // The WHATWG parser already turns IPv4 spellings into addresses; a
            // domain that std still reads as an address is treated as one.
            match name.trim_end_matches('.').parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) if name.is_empty() => return Err(Refusal::NoHost),
                Err(_) => Host::Domain(name.to_ascii_lowercase()),
            }
        }
    };
    if let Host::Ip(ip) = host {
        check_ip(ip, policy)?;
    }
    let port = url.port_or_known_default().ok_or(Refusal::Scheme)?;
    Ok(EndpointUrl { url, host, port })
}

/// Resolves the URL's host with `resolve` (A and AAAA; e.g. `tokio::net::lookup_host`)
/// and checks every address. Returns the socket addresses to connect to.
pub async fn resolve_checked<R, Fut>(
    endpoint: &EndpointUrl,
    policy: DestinationPolicy,
    resolve: R,
) -> Result<Vec<SocketAddr>, Refusal>
where
    R: FnOnce(String, u16) -> Fut,
    Fut: Future<Output = std::io::Result<Vec<SocketAddr>>>,
{
    let addrs = match &endpoint.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, endpoint.port)],
        Host::Domain(name) => resolve(name.clone(), endpoint.port)
            .await
            .map_err(|_| Refusal::Unresolvable)?,
    };
    if addrs.is_empty() {
        return Err(Refusal::Unresolvable);
    }
    for addr in &addrs {
        check_ip(addr.ip(), policy)?;
    }
    Ok(addrs)
}

/// Checks one address against the refused ranges.
pub fn check_ip(ip: IpAddr, policy: DestinationPolicy) -> Result<(), Refusal> {
    match classify(ip) {
        None => Ok(()),
        Some(Class::Loopback | Class::Private) if policy.allow_private => Ok(()),
        Some(class) => Err(Refusal::Blocked(class.name())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Loopback,
    Private,
    LinkLocal,
    Metadata,
    SharedCgnat,
    Unspecified,
    Multicast,
    Reserved,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::Metadata => "cloud metadata",
            Self::SharedCgnat => "carrier-grade NAT",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast",
            Self::Reserved => "reserved",
        }
    }
}

fn classify(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Class> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => Class::Metadata,
        (0, _, _) => Class::Unspecified,
        (127, _, _) => Class::Loopback,
        (10, _, _) | (192, 168, _) => Class::Private,
        (172, b, _) if (16..32).contains(&b) => Class::Private,
        (169, 254, _) => Class::LinkLocal,
        (100, b, _) if (64..128).contains(&b) => Class::SharedCgnat,
        (224..=239, _, _) => Class::Multicast,
        // 240/4 (incl. broadcast), IETF protocol assignments, documentation, benchmarking.
        (240..=255, _, _)
        | (192, 0, 0)
        | (192, 0, 2)
        | (198, 51, 100)
        | (203, 0, 113)
        | (198, 18 | 19, _) => Class::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Class> {
    if ip.is_unspecified() {
        return Some(Class::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Class::Loopback);
    }
    // Addresses that carry an IPv4 address: judge the IPv4 address.
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => Class::Private,
        x if x & 0xffc0 == 0xfe80 => Class::LinkLocal,
        x if x & 0xffc0 == 0xfec0 => Class::Reserved, // deprecated site-local
        x if x & 0xff00 == 0xff00 => Class::Multicast,
        0x2001 if s[1] == 0x0db8 || s[1] == 0 => Class::Reserved, // documentation, Teredo
        0x0100 if s[1..4] == [0, 0, 0] => Class::Reserved,        // discard-only
        0 => Class::Reserved,                                     // the rest of ::/8 (not routable)
        _ => return None,
    })
}

/// The IPv4 address inside an IPv4-mapped (::ffff:0:0/96), IPv4-compatible (::/96),
/// NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: DestinationPolicy = DestinationPolicy {
        allow_private: false,
    };
    const DEV: DestinationPolicy = DestinationPolicy {
        allow_private: true,
    };

    fn refused(raw: &str, policy: DestinationPolicy) -> Refusal {
        parse_endpoint_url(raw, policy).expect_err(raw)
    }

    #[test]
    fn public_http_and_https_urls_pass() {
        for raw in [
            "https://hooks.example.com/carrier?x=1",
            "http://93.184.216.34:8080/in",
            "https://[2606:4700::1111]/hook",
        ] {
            let url = parse_endpoint_url(raw, STRICT).expect(raw);
            assert!(url.as_str().starts_with("http"));
        }
        let url = parse_endpoint_url("https://Hooks.Example.com/", STRICT).unwrap();
        assert_eq!(url.host(), &Host::Domain("hooks.example.com".into()));
        assert_eq!(url.port(), 443);
    }

    #[test]
    fn schemes_credentials_and_garbage_are_refused() {
        assert_eq!(refused("ftp://example.com/", STRICT), Refusal::Scheme);
        assert_eq!(refused("file:///etc/passwd", STRICT), Refusal::Scheme);
        assert_eq!(refused("gopher://x/", STRICT), Refusal::Scheme);
        assert_eq!(
            refused("https://user:pw@example.com/", STRICT),
            Refusal::Credentials
        );
        assert_eq!(refused("not a url", STRICT), Refusal::Unparsable);
        assert_eq!(refused("/relative", STRICT), Refusal::Unparsable);
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(refused(&long, STRICT), Refusal::TooLong);
    }

    #[test]
    fn loopback_in_every_spelling_is_refused() {
        for raw in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://127.0.0.1.:80/",
        ] {
            assert_eq!(refused(raw, STRICT), Refusal::Blocked("loopback"), "{raw}");
            assert!(
                parse_endpoint_url(raw, DEV).is_ok(),
                "{raw} with the dev flag"
            );
        }
    }

    #[test]
    fn private_link_local_metadata_and_the_rest_are_refused() {
        let cases = [
            ("http://10.1.2.3/", "private"),
            ("http://172.16.0.1/", "private"),
            ("http://172.31.255.255/", "private"),
            ("http://192.168.1.1/", "private"),
            ("http://[fd00::1]/", "private"),
            ("http://[fc00::1]/", "private"),
            ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
            ("http://0xa9fea9fe/", "cloud metadata"),
            ("http://2852039166/", "cloud metadata"),
            ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
            ("http://169.254.1.1/", "link-local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://100.64.0.1/", "carrier-grade NAT"),
            ("http://100.127.255.254/", "carrier-grade NAT"),
            ("http://0.0.0.0/", "unspecified"),
            ("http://0/", "unspecified"),
            ("http://[::]/", "unspecified"),
            ("http://224.0.0.1/", "multicast"),
            ("http://[ff02::1]/", "multicast"),
            ("http://255.255.255.255/", "reserved"),
            ("http://240.0.0.1/", "reserved"),
            ("http://192.0.2.1/", "reserved"),
            ("http://[2001:db8::1]/", "reserved"),
        ];
        for (raw, class) in cases {
            assert_eq!(refused(raw, STRICT), Refusal::Blocked(class), "{raw}");
        }
        // The dev flag opens loopback and private ranges only.
        for (raw, class) in cases {
            let dev = parse_endpoint_url(raw, DEV);
            if class == "private" {
                assert!(dev.is_ok(), "{raw}");
            } else {
                assert_eq!(dev, Err(Refusal::Blocked(class)), "{raw} with the dev flag");
            }
        }
    }

    #[test]
    fn neighbours_of_refused_ranges_pass() {
        for raw in [
            "http://172.15.255.255/",
            "http://172.32.0.1/",
            "http://100.63.255.255/",
            "http://100.128.0.1/",
            "http://11.0.0.1/",
            "http://169.253.255.255/",
            "http://[2606:4700::1]/",
        ] {
            assert!(parse_endpoint_url(raw, STRICT).is_ok(), "{raw}");
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn every_resolved_address_must_pass() {
        let url = parse_endpoint_url("https://hooks.example.com/x", STRICT).unwrap();
        let public = vec![addr("93.184.216.34:443"), addr("[2606:4700::1]:443")];
        let got = resolve_checked(&url, STRICT, |host, port| {
            assert_eq!((host.as_str(), port), ("hooks.example.com", 443));
            let public = public.clone();
            async move { Ok(public) }
        })
        .await;
        assert_eq!(got.unwrap().len(), 2);

        // One private AAAA among public A records is enough to refuse (rebinding).
        let mixed = vec![addr("93.184.216.34:443"), addr("[fd12::1]:443")];
        let got = resolve_checked(&url, STRICT, |_, _| async move { Ok(mixed) }).await;
        assert_eq!(got, Err(Refusal::Blocked("private")));

        let got = resolve_checked(&url, STRICT, |_, _| async { Ok(vec![]) }).await;
        assert_eq!(got, Err(Refusal::Unresolvable));
        let got = resolve_checked(&url, STRICT, |_, _| async {
            Err(std::io::Error::other("nxdomain"))
        })
        .await;
        assert_eq!(got, Err(Refusal::Unresolvable));

        let metadata = vec![addr("169.254.169.254:443")];
        let got = resolve_checked(&url, DEV, |_, _| async move { Ok(metadata) }).await;
        assert_eq!(got, Err(Refusal::Blocked("cloud metadata")));
    }

    #[tokio::test]
    async fn literal_addresses_are_not_resolved() {
        let url = parse_endpoint_url("http://127.0.0.1:9/x", DEV).unwrap();
        let got = resolve_checked(&url, DEV, |_, _| async {
            panic!("a literal address must not be resolved")
        })
        .await;
        assert_eq!(got.unwrap(), vec![addr("127.0.0.1:9")]);
    }
}
