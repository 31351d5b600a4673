//! The fetch path through an HTTP proxy (`--proxy`, `http_proxy`...): connecting to the
//! proxy (its own name resolved locally, the origin's left to the proxy), the `CONNECT`
//! tunnel and TLS to the origin for `https://`, the network policy for origins written as IP
//! literals, and the mapping of proxy failures to [`ProxyError`] (error kind `proxy`). The
//! route itself is chosen by `proxy::Proxies::route`; `on_connection` in the parent module
//! pools the connections (per proxy for forwarded requests, per origin for tunnels).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Instant;

use url::Url;

use super::{allowed_addrs, deadline_error, FetchCtx, FetchError, REQUEST_BUF};
use crate::http::{write_connect, ResponseHead};
use crate::net::{NetError, Stream, TunnelFailure};
use crate::proxy::{Proxy, ProxyError, Route};
use crate::retry;

/// The network policy for a URL going through a proxy: the proxy resolves the origin's
/// name, so only an origin written as an IP literal can be checked (before every request,
/// since one connection to a proxy serves every origin). The proxy's own address is
/// configured by the user and not subject to the policy.
pub(super) fn check_origin(ctx: &FetchCtx, url: &Url) -> Result<(), FetchError> {
    if ctx.opts.policy.allows_everything() {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    let port = url.port_or_known_default().unwrap_or(0);
    allowed_addrs(&ctx.opts.policy, url, vec![SocketAddr::new(ip, port)]).map(|_| ())
}

/// A 407 to a request forwarded to a proxy is the proxy's answer, not the origin's.
pub(super) fn check_answer(
    route: Route<'_>,
    head: ResponseHead,
) -> Result<ResponseHead, FetchError> {
    match route {
        Route::Forward(proxy) if head.status == 407 => Err(ProxyError::AuthRequired {
            proxy: proxy.to_string(),
            sent: proxy.authorization().is_some(),
        }
        .into()),
        _ => Ok(head),
    }
}

/// A new connection for `url` on a proxy `route`: to the proxy for a forwarded request, a
/// tunnel with TLS to the origin for `https://`. A failed attempt leaves the proxy address
/// it tried in `tried` (a record's `ip` is the proxy's).
pub(super) async fn connect(
    ctx: &FetchCtx,
    url: &Url,
    route: Route<'_>,
    deadline: Instant,
    tried: &mut Option<IpAddr>,
) -> Result<Stream, FetchError> {
    let Some(proxy) = route.proxy() else {
        unreachable!("a direct route does not come here");
    };
    let addrs = proxy_addrs(ctx, proxy, deadline).await?;
    let unreachable = |e: NetError| match e {
        NetError::Timeout(_) if Instant::now() >= deadline => deadline_error(ctx),
        e => ProxyError::Unreachable {
            proxy: proxy.to_string(),
            transient: retry::transient_kind(e.kind()),
            why: e.to_string(),
        }
        .into(),
    };
    let stream = if let Route::Tunnel(_) = route {
        let mut request = Vec::with_capacity(REQUEST_BUF);
        write_connect(
            &mut request,
            url,
            &ctx.opts.user_agent,
            proxy.authorization(),
        );
        let tls = (&ctx.tls, url.host_str().unwrap_or(""));
        let idle = ctx.opts.read_timeout;
        Stream::connect_tunnel(&addrs, &ctx.connect, request, idle, tls, deadline)
            .await
            .map_err(|failure| {
                *tried = failure.peer().map(|p| p.ip()).or(*tried);
                match failure {
                    TunnelFailure::Proxy { error, .. } => unreachable(error),
                    TunnelFailure::Answer { error, .. } => {
                        ProxyError::from_tunnel(error, proxy, url).into()
                    }
                    TunnelFailure::Origin { error, .. } => super::net_error(ctx, error, deadline),
                }
            })?
    } else {
        Stream::connect(&addrs, &ctx.connect, None, deadline)
            .await
            .map_err(|e| {
                *tried = e.peer().map(|p| p.ip()).or(*tried);
                unreachable(e)
            })?
    };
    ctx.counters.conns_opened.fetch_add(1, Ordering::Relaxed);
    Ok(stream)
}

/// The proxy's addresses: its IP, or its name resolved through the worker's resolver (and
/// cache) like any other.
async fn proxy_addrs(
    ctx: &FetchCtx,
    proxy: &Proxy,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, FetchError> {
    let port = proxy.port();
    let name = match proxy.host() {
        url::Host::Ipv4(ip) => return Ok(vec![SocketAddr::new(IpAddr::V4(*ip), port)]),
        url::Host::Ipv6(ip) => return Ok(vec![SocketAddr::new(IpAddr::V6(*ip), port)]),
        url::Host::Domain(name) => name,
    };
    let ips = super::lookup_until(ctx, name, deadline)
        .await?
        .map_err(|e| ProxyError::Unreachable {
            proxy: proxy.to_string(),
            transient: retry::transient_kind(e.kind()),
            why: e.to_string(),
        })?;
    Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
}
