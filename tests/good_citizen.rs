//! Issue 14 behaviour of `ringcrawl fetch` against local servers: the network policy
//! (`--deny`/`--allow`), retries of transient failures, failing hosts, per-host delays and
//! the per-IP cap, robots.txt.

mod support;

use std::time::{Duration, Instant};
use support::{error_kind, run_fetch, Dnsmasq, FaultServer};

/// A redirect to a denied address is `denied`, and the server behind it never sees a
/// connection; a literal denied address is not connected to either; a name whose only
/// addresses are denied says so.
#[test]
fn the_network_policy_is_checked_on_every_address() {
    let front = FaultServer::start();
    let inner = FaultServer::start_on("127.0.0.2");
    let (ip, port) = (inner.addr.ip(), inner.addr.port());
    let to_inner = front.url(&format!("/goto/{ip}/{port}/ok"));
    let direct = inner.url("/ok");
    let run = run_fetch(&["-q", "--deny", "127.0.0.2/32", &to_inner, &direct], None);
    run.assert_success();
    let recs = run.by_url();
    for url in [&to_inner, &direct] {
        let r = &recs[url.as_str()];
        assert_eq!(error_kind(r), Some("denied"), "{r}");
        assert!(r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.2 in 127.0.0.2/32"));
    }
    assert_eq!(recs[to_inner.as_str()]["redirects"], 1);
    assert_eq!(inner.connections(), 0, "the denied server saw a connection");

    // Allow is the exception to deny: the same fetch with 127.0.0.2 allowed gets through.
    let run = run_fetch(
        &[
            "-q",
            "--deny",
            "loopback",
            "--allow",
            "127.0.0.0/8",
            &to_inner,
        ],
        None,
    );
    let r = &run.by_url()[to_inner.as_str()];
    assert_eq!(r["title"], "OK page", "{r}");

    // A name that resolves only to denied addresses.
    let dns = Dnsmasq::start(&["inner.test".to_string()]);
    let by_name = format!("http://inner.test:{}/ok", front.addr.port());
    let before = front.connections();
    let run = run_fetch(
        &[
            "-q",
            "--deny",
            "loopback",
            "--resolver",
            &dns.resolver_arg(),
            &by_name,
        ],
        None,
    );
    let r = &run.by_url()[by_name.as_str()];
    assert_eq!(error_kind(r), Some("denied"), "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("inner.test resolves only to denied addresses (127.0.0.1 in loopback)"),
        "{msg}"
    );
    assert_eq!(front.connections(), before);
}

/// `--retries N`: transient statuses (503, 429) are tried again, with Retry-After honoured;
/// the record says how many attempts it took; other statuses are final at once.
#[test]
fn transient_failures_are_retried_and_the_record_counts_attempts() {
    let f = FaultServer::start();
    let twice = f.url("/flaky/2/503/a");
    let after = f.url("/flaky/1/429/1/b");
    let final_404 = f.url("/flaky/1/404/c");
    let exhausted = f.url("/flaky/9/503/d");
    let run = run_fetch(
        &[
            "-q",
            "--retries",
            "2",
            &twice,
            &after,
            &final_404,
            &exhausted,
        ],
        None,
    );
    run.assert_success();
    let recs = run.by_url();
    let r = &recs[twice.as_str()];
    assert_eq!(
        (r["status"].as_u64(), r["attempts"].as_u64()),
        (Some(200), Some(3)),
        "{r}"
    );
    assert_eq!(r["title"], "flaky a");
    let r = &recs[after.as_str()];
    assert_eq!(
        (r["status"].as_u64(), r["attempts"].as_u64()),
        (Some(200), Some(2)),
        "{r}"
    );
    assert!(
        r["ms"].as_f64().unwrap() >= 1000.0,
        "Retry-After: 1 honoured: {r}"
    );
    let arrivals = f.arrivals("/flaky/1/429/1/b");
    assert_eq!(arrivals.len(), 2);
    assert!(arrivals[1] - arrivals[0] >= std::time::Duration::from_secs(1));
    let r = &recs[final_404.as_str()];
    assert_eq!(
        (r["status"].as_u64(), r["attempts"].as_u64()),
        (Some(404), Some(1)),
        "{r}"
    );
    let r = &recs[exhausted.as_str()];
    assert_eq!(
        (r["status"].as_u64(), r["attempts"].as_u64()),
        (Some(503), Some(3)),
        "{r}"
    );
    assert_eq!(f.hits("/flaky/2/503/a"), 3);
    assert_eq!(f.hits("/flaky/1/404/c"), 1);
    assert_eq!(f.hits("/flaky/9/503/d"), 3);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

/// How late a fault server's thread may note a request's arrival on a busy machine.
const SERVER_JITTER: Duration = Duration::from_millis(15);

/// `times` (arrivals seen by a fault server) are at least `delay` apart. One request noted
/// a few ms late by the server's thread makes the next gap look short, so each gap may be
/// short by [`SERVER_JITTER`], but the whole span must hold every delay.
fn assert_spaced(times: &[Instant], delay: Duration) {
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= delay - SERVER_JITTER,
            "gap {gap:?} (delay {delay:?})"
        );
    }
    let span = times[times.len() - 1] - times[0];
    let all = delay * (times.len() as u32 - 1);
    assert!(
        span + SERVER_JITTER >= all,
        "span {span:?} for {all:?} of delays"
    );
}

/// `--host-delay 200`: the server sees the requests of one host at least 200 ms apart,
/// whatever the per-host concurrency, while another host is not held back.
#[test]
fn host_delay_spaces_request_starts_on_one_host() {
    let f = FaultServer::start();
    let other = FaultServer::start();
    let mut urls: Vec<String> = (0..6).map(|i| f.url(&format!("/keepalive/d{i}"))).collect();
    urls.extend((0..6).map(|i| other.url(&format!("/keepalive/o{i}"))));
    let mut args = vec!["-q", "--host-delay", "200", "--per-host", "6"];
    args.extend(urls.iter().map(String::as_str));
    let run = run_fetch(&args, None);
    run.assert_success();
    assert!(
        run.records.iter().all(|r| r["status"] == 200),
        "{:?}",
        run.records
    );
    for server in [&f, &other] {
        let times = server.arrivals("/keepalive/");
        assert_eq!(times.len(), 6);
        assert_spaced(&times, Duration::from_millis(200));
    }
    // The two hosts ran side by side: about 5 delays in all, not 11.
    assert!(
        run.elapsed < std::time::Duration::from_millis(200 * 9),
        "{:?}",
        run.elapsed
    );
}

/// One blackholed host with 20,000 URLs ahead of 1,000 URLs on live hosts, at -c 1000 and
/// a 5 s connect timeout: the dead host fails fast after a few connect timeouts, intake is
/// never held up for long, and every live URL gets its title within a minute.
#[test]
fn a_blackholed_host_fails_fast_and_does_not_hold_up_the_live_ones() {
    let hole = support::Blackhole::start();
    let live: Vec<FaultServer> = (0..4).map(|_| FaultServer::start()).collect();
    let mut list = String::new();
    for i in 0..20_000 {
        list.push_str(&format!("http://{}/dead/{i}\n", hole.addr));
    }
    for i in 0..1_000 {
        list.push_str(&live[i % 4].url(&format!("/keepalive/{i}")));
        list.push('\n');
    }
    let run = run_fetch(
        &["-q", "-i", "-", "-c", "1000", "--connect-timeout", "5"],
        Some(list.as_bytes()),
    );
    run.assert_success();
    assert!(
        run.elapsed < std::time::Duration::from_secs(60),
        "{:?}",
        run.elapsed
    );
    assert_eq!(run.records.len(), 21_000);
    let mut fast = 0;
    for r in &run.records {
        let url = r["url"].as_str().unwrap();
        if url.contains("/dead/") {
            assert_eq!(error_kind(r), Some("connect_timeout"), "{r}");
            fast += usize::from(
                r["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("host failing: 5 connect timeouts in a row"),
            );
        } else {
            assert!(
                r["title"].as_str().unwrap().starts_with("keepalive "),
                "{r}"
            );
        }
    }
    assert!(fast > 19_000, "only {fast} dead URLs failed fast");
}

/// `--robots`: one robots.txt request per origin however many URLs ask at once; a
/// disallowed path gets `robots`, an allowed one on the same host its title; no robots.txt
/// (404) allows everything; a 5xx robots.txt disallows the whole origin.
#[test]
fn robots_txt_is_fetched_once_per_origin_and_obeyed() {
    let f = FaultServer::start();
    f.set_robots(
        200,
        "User-agent: otherbot\nDisallow: /\n\nUser-agent: ringcrawl\nDisallow: /keepalive/secret\n",
    );
    let none = FaultServer::start();
    let broken = FaultServer::start();
    broken.set_robots(503, "");
    let mut urls: Vec<String> = (0..20).map(|i| f.url(&format!("/keepalive/{i}"))).collect();
    let secret = f.url("/keepalive/secret-1");
    urls.push(secret.clone());
    let free = none.url("/keepalive/free");
    let down = broken.url("/keepalive/down");
    urls.push(free.clone());
    urls.push(down.clone());
    let mut args = vec!["-q", "--robots", "-c", "50", "--per-host", "8"];
    args.extend(urls.iter().map(String::as_str));
    let run = run_fetch(&args, None);
    run.assert_success();
    let recs = run.by_url();
    for i in 0..20 {
        let r = &recs[f.url(&format!("/keepalive/{i}")).as_str()];
        assert_eq!(r["title"], format!("keepalive {i}"), "{r}");
    }
    let r = &recs[secret.as_str()];
    assert_eq!(error_kind(r), Some("robots"), "{r}");
    assert_eq!(
        r["error"]["message"],
        "robots.txt disallows /keepalive/secret-1"
    );
    assert_eq!(
        f.hits("/keepalive/secret-1"),
        0,
        "a disallowed URL is not fetched"
    );
    assert_eq!(
        f.hits("/robots.txt"),
        1,
        "one robots.txt request per origin"
    );
    assert_eq!(recs[free.as_str()]["title"], "keepalive free");
    assert_eq!(none.hits("/robots.txt"), 1);
    let r = &recs[down.as_str()];
    assert_eq!(error_kind(r), Some("robots"), "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("HTTP 503"),
        "{r}"
    );
    assert_eq!(broken.hits("/keepalive/down"), 0);

    // Without --robots, robots.txt is not asked for (fetch is curl-like by default).
    let run = run_fetch(&["-q", &secret], None);
    assert_eq!(run.by_url()[secret.as_str()]["title"], "keepalive secret-1");
    assert_eq!(f.hits("/robots.txt"), 1);
}

/// A robots.txt Crawl-delay becomes that host's least interval between request starts.
#[test]
fn crawl_delay_spaces_one_hosts_requests() {
    let f = FaultServer::start();
    f.set_robots(200, "User-agent: *\nCrawl-delay: 0.3\n");
    let urls: Vec<String> = (0..4)
        .map(|i| f.url(&format!("/keepalive/cd{i}")))
        .collect();
    let mut args = vec!["-q", "--robots"];
    args.extend(urls.iter().map(String::as_str));
    let run = run_fetch(&args, None);
    run.assert_success();
    assert!(run.records.iter().all(|r| r["status"] == 200));
    let times = f.arrivals("/");
    assert_eq!(times.len(), 5, "robots.txt and four pages");
    assert_spaced(&times[1..], Duration::from_millis(300));
}

/// `--per-ip 2`: twenty host names on one address never have more than two requests in
/// flight to it at once, and every URL still gets its title.
#[test]
fn per_ip_caps_requests_to_one_address_across_host_names() {
    let f = FaultServer::start();
    let names: Vec<String> = (0..20).map(|i| format!("vhost{i}.test")).collect();
    let dns = Dnsmasq::start(&names);
    let port = f.addr.port();
    let urls: Vec<String> = names
        .iter()
        .map(|n| format!("http://{n}:{port}/sleep/150/{n}"))
        .collect();
    let resolver = dns.resolver_arg();
    let mut args = vec!["-q", "-c", "40", "--per-ip", "2", "--resolver", &resolver];
    args.extend(urls.iter().map(String::as_str));
    let run = run_fetch(&args, None);
    run.assert_success();
    let recs = run.by_url();
    for (n, u) in names.iter().zip(&urls) {
        assert_eq!(
            recs[u.as_str()]["title"],
            format!("slept {n}"),
            "{}",
            recs[u.as_str()]
        );
    }
    assert_eq!(f.peak_busy(), 2, "at most (and here exactly) two at once");
    // Twenty 150 ms answers, two at a time.
    assert!(
        run.elapsed >= std::time::Duration::from_millis(1400),
        "{:?}",
        run.elapsed
    );
}

/// A slow host with far more URLs than a worker's queue holds does not hold up intake: the
/// live hosts' URLs after it in the list are fetched at once (its overflow waits on disk),
/// so their records come out long before the slow host's last ones.
#[test]
fn a_slow_host_with_a_long_list_does_not_hold_up_other_hosts() {
    let slow = FaultServer::start();
    let live = FaultServer::start();
    let mut list = String::new();
    for i in 0..20_000 {
        list.push_str(&slow.url(&format!("/sleep/5/{i}")));
        list.push('\n');
    }
    for i in 0..500 {
        list.push_str(&live.url(&format!("/keepalive/{i}")));
        list.push('\n');
    }
    let run = run_fetch(
        &[
            "-q",
            "-i",
            "-",
            "-c",
            "60",
            "--per-host",
            "20",
            "--threads",
            "1",
        ],
        Some(list.as_bytes()),
    );
    run.assert_success();
    assert_eq!(run.records.len(), 20_500);
    let last_live = run
        .records
        .iter()
        .rposition(|r| r["url"].as_str().unwrap().contains("/keepalive/"))
        .unwrap();
    assert!(
        last_live < 5_000,
        "the live URLs waited behind the slow host: the last one was record {last_live}"
    );
    assert!(run.records.iter().all(|r| r["status"] == 200));
}
