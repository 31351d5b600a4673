//! robots.txt (RFC 9309), sans-IO: what a fetched robots.txt (or its absence) means for
//! the URLs of its origin, and the per-origin cache of one worker (callers pass `now`).
//!
//! - A 2xx body (at most [`ROBOTS_MAX_BYTES`] of it) is parsed by the `texting_robots`
//!   crate, whose rules are matched against ringcrawl's product token (the user agent up
//!   to its first `/` or space); its `Crawl-delay` becomes the host's least interval,
//!   capped at [`MAX_CRAWL_DELAY`].
//! - A 4xx (or a redirect chain longer than [`MAX_ROBOTS_REDIRECTS`]) means there is no
//!   robots.txt: everything is allowed.
//! - A 5xx, or a robots.txt that could not be fetched at all (no connection, a timeout),
//!   means everything is disallowed, for [`ROBOTS_RETRY`]; then it is fetched again.
//! - Answers are cached per origin (scheme, host, port) for [`ROBOTS_TTL`], at most
//!   [`MAX_ORIGINS`] per worker. While one fetch of an origin's robots.txt is in progress,
//!   every other URL of that origin waits for it ([`Lookup::Fetching`]): one request per
//!   origin.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Bytes of a robots.txt body read and parsed at most (RFC 9309 asks for 500 KiB).
pub(crate) const ROBOTS_MAX_BYTES: usize = 500 * 1024;
/// How long a fetched robots.txt is trusted.
pub(crate) const ROBOTS_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a robots.txt that could not be had (5xx, unreachable) disallows everything.
pub(crate) const ROBOTS_RETRY: Duration = Duration::from_secs(10 * 60);
/// Redirects followed for one robots.txt.
pub(crate) const MAX_ROBOTS_REDIRECTS: u32 = 5;
/// Longest Crawl-delay honoured.
pub(crate) const MAX_CRAWL_DELAY: Duration = Duration::from_secs(60);
/// Origins cached per worker at most (the oldest answers go first).
pub(crate) const MAX_ORIGINS: usize = 16_384;

/// What one origin's robots.txt says.
#[derive(Debug)]
pub(crate) enum Rules {
    /// No robots.txt (4xx): every URL may be fetched.
    AllowAll,
    /// It could not be had (5xx, unreachable): no URL may be fetched; why.
    DisallowAll(String),
    Parsed(Box<texting_robots::Robot>),
}

impl Rules {
    /// The rules a robots.txt response means for `agent` (a product token).
    pub(crate) fn from_response(status: u16, body: &[u8], agent: &str) -> Rules {
        match status {
            200..=299 => {
                let body = &body[..body.len().min(ROBOTS_MAX_BYTES)];
                match texting_robots::Robot::new(agent, body) {
                    Ok(robot) => Rules::Parsed(Box::new(robot)),
                    // The parser is forgiving; what it cannot read is taken as no rules.
                    Err(_) => Rules::AllowAll,
                }
            }
            300..=499 => Rules::AllowAll,
            _ => Rules::DisallowAll(format!("robots.txt answered HTTP {status}")),
        }
    }

    /// The robots.txt could not be fetched (`why`: the network error).
    pub(crate) fn unreachable(why: &str) -> Rules {
        Rules::DisallowAll(format!("robots.txt could not be fetched ({why})"))
    }

    /// Whether `path_and_query` may be fetched; the refusal's message otherwise.
    pub(crate) fn allows(&self, path_and_query: &str) -> Result<(), String> {
        match self {
            Rules::AllowAll => Ok(()),
            Rules::DisallowAll(why) => Err(format!(
                "{why}: every URL of this origin is disallowed for now"
            )),
            Rules::Parsed(robot) if robot.allowed(path_and_query) => Ok(()),
            Rules::Parsed(_) => Err(format!("robots.txt disallows {path_and_query}")),
        }
    }

    /// The Crawl-delay for us, capped.
    pub(crate) fn crawl_delay(&self) -> Option<Duration> {
        match self {
            Rules::Parsed(robot) => robot
                .delay
                .filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| Duration::from_secs_f32(d).min(MAX_CRAWL_DELAY)),
            _ => None,
        }
    }

    /// How long these rules are kept.
    fn ttl(&self) -> Duration {
        match self {
            Rules::DisallowAll(_) => ROBOTS_RETRY,
            _ => ROBOTS_TTL,
        }
    }
}

/// The robots.txt product token of a user agent: up to its first `/` or space.
pub(crate) fn product_token(user_agent: &str) -> &str {
    let end = user_agent
        .find(|c: char| c == '/' || c.is_whitespace())
        .unwrap_or(user_agent.len());
    &user_agent[..end]
}

enum Entry {
    /// A fetch is in progress; it wakes the waiters when done.
    Fetching(Rc<Notify>),
    Ready {
        rules: Rc<Rules>,
        expires: Instant,
    },
}

/// What the cache knows of an origin.
pub(crate) enum Lookup {
    Known(Rc<Rules>),
    /// Another URL is fetching it: wait on this, then look again.
    Fetching(Rc<Notify>),
    /// Nobody has it: fetch it (after [`RobotsCache::begin`]).
    Missing,
}

/// The robots.txt answers of one worker's origins.
#[derive(Default)]
pub(crate) struct RobotsCache {
    origins: HashMap<String, Entry>,
}

impl RobotsCache {
    pub(crate) fn lookup(&mut self, origin: &str, now: Instant) -> Lookup {
        match self.origins.get(origin) {
            Some(Entry::Ready { rules, expires }) if *expires > now => Lookup::Known(rules.clone()),
            Some(Entry::Fetching(n)) => Lookup::Fetching(n.clone()),
            Some(Entry::Ready { .. }) | None => Lookup::Missing,
        }
    }

    /// This caller fetches `origin`'s robots.txt; others wait.
    pub(crate) fn begin(&mut self, origin: &str, now: Instant) {
        if self.origins.len() >= MAX_ORIGINS {
            self.evict(now);
        }
        self.origins
            .insert(origin.to_string(), Entry::Fetching(Rc::new(Notify::new())));
    }

    /// The fetch of `origin`'s robots.txt ended with `rules`: keep them, wake the waiters.
    pub(crate) fn finish(&mut self, origin: &str, rules: Rules, now: Instant) -> Rc<Rules> {
        let expires = now + rules.ttl();
        let rules = Rc::new(rules);
        let old = self.origins.insert(
            origin.to_string(),
            Entry::Ready {
                rules: rules.clone(),
                expires,
            },
        );
        if let Some(Entry::Fetching(n)) = old {
            n.notify_waiters();
        }
        rules
    }

    /// The fetch of `origin`'s robots.txt was abandoned: forget it, wake the waiters (one
    /// of them fetches it then).
    pub(crate) fn abort(&mut self, origin: &str) {
        if let Some(Entry::Fetching(n)) = self.origins.remove(origin) {
            n.notify_waiters();
        }
    }

    /// Make room: drop expired answers, then the oldest-expiring half if still full.
    fn evict(&mut self, now: Instant) {
        self.origins.retain(|_, e| match e {
            Entry::Fetching(_) => true,
            Entry::Ready { expires, .. } => *expires > now,
        });
        if self.origins.len() < MAX_ORIGINS {
            return;
        }
        let mut expiries: Vec<Instant> = self
            .origins
            .values()
            .filter_map(|e| match e {
                Entry::Ready { expires, .. } => Some(*expires),
                Entry::Fetching(_) => None,
            })
            .collect();
        expiries.sort_unstable();
        if let Some(cut) = expiries.get(expiries.len() / 2).copied() {
            self.origins.retain(|_, e| match e {
                Entry::Fetching(_) => true,
                Entry::Ready { expires, .. } => *expires > cut,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    const TXT: &[u8] = b"User-agent: otherbot\nDisallow: /\n\n\
        User-agent: ringcrawl\nDisallow: /private\nAllow: /private/ok\nCrawl-delay: 2.5\n\n\
        User-agent: *\nDisallow: /all-bots-out\n";

    #[test]
    fn rules_match_our_product_token() {
        assert_eq!(product_token("ringcrawl/0.1.0"), "ringcrawl");
        assert_eq!(product_token("MyBot (+https://x.test)"), "MyBot");
        let r = Rules::from_response(200, TXT, "ringcrawl");
        assert!(r.allows("/").is_ok());
        assert!(r.allows("/all-bots-out").is_ok(), "our group, not *");
        let e = r.allows("/private/x?q=1").unwrap_err();
        assert_eq!(e, "robots.txt disallows /private/x?q=1");
        assert!(r.allows("/private/ok/page").is_ok(), "longest match wins");
        assert_eq!(r.crawl_delay(), Some(Duration::from_millis(2500)));
        let other = Rules::from_response(200, TXT, "nobody");
        assert!(other.allows("/all-bots-out").is_err());
        assert!(other.allows("/private").is_ok());
        assert_eq!(other.crawl_delay(), None);
    }

    #[test]
    fn statuses_mean_what_rfc_9309_says() {
        for s in [400, 401, 403, 404, 410, 301] {
            assert!(
                Rules::from_response(s, b"Disallow: /", "rc")
                    .allows("/x")
                    .is_ok(),
                "{s}"
            );
        }
        for s in [500, 503] {
            let r = Rules::from_response(s, b"", "rc");
            let e = r.allows("/x").unwrap_err();
            assert!(e.contains(&format!("HTTP {s}")), "{e}");
            assert_eq!(r.ttl(), ROBOTS_RETRY);
        }
        let r = Rules::unreachable("connection refused");
        assert!(r.allows("/").unwrap_err().contains("connection refused"));
    }

    #[test]
    fn the_body_limit_and_the_delay_cap_hold() {
        let mut big = b"User-agent: *\nCrawl-delay: 3600\n".to_vec();
        big.resize(ROBOTS_MAX_BYTES, b'\n');
        big.extend_from_slice(b"Disallow: /beyond-the-limit\n");
        let r = Rules::from_response(200, &big, "rc");
        assert!(
            r.allows("/beyond-the-limit").is_ok(),
            "bytes past 500 KiB are not read"
        );
        assert_eq!(r.crawl_delay(), Some(MAX_CRAWL_DELAY));
    }

    #[test]
    fn one_fetch_per_origin_and_answers_expire() {
        let mut c = RobotsCache::default();
        let t = Instant::now();
        assert!(matches!(c.lookup("http://a:80", t), Lookup::Missing));
        c.begin("http://a:80", t);
        let Lookup::Fetching(n) = c.lookup("http://a:80", t) else {
            panic!("a second caller waits")
        };
        let woken = n.notified();
        c.finish("http://a:80", Rules::AllowAll, t);
        // The waiter was woken (its future completes without a runtime's help).
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut woken = std::pin::pin!(woken);
        assert!(woken.as_mut().poll(&mut cx).is_ready());
        assert!(matches!(c.lookup("http://a:80", t), Lookup::Known(_)));
        assert!(matches!(
            c.lookup("http://a:80", t + ROBOTS_TTL),
            Lookup::Missing
        ));
        c.begin("http://b:80", t);
        c.finish("http://b:80", Rules::unreachable("reset"), t);
        assert!(matches!(
            c.lookup("http://b:80", t + ROBOTS_RETRY),
            Lookup::Missing
        ));
        // An abandoned fetch wakes its waiters, and the next caller fetches.
        c.begin("http://c:80", t);
        c.abort("http://c:80");
        assert!(matches!(c.lookup("http://c:80", t), Lookup::Missing));
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = RobotsCache::default();
        let t = Instant::now();
        for i in 0..MAX_ORIGINS + 10 {
            let o = format!("http://h{i}:80");
            c.begin(&o, t);
            c.finish(&o, Rules::AllowAll, t + Duration::from_millis(i as u64));
        }
        assert!(c.origins.len() <= MAX_ORIGINS);
    }
}
