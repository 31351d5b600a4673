//! Issue 14 behaviour of `ringcrawl fetch` against local servers: the network policy
//! (`--deny`/`--allow`), retries of transient failures, failing hosts, per-host delays and
//! the per-IP cap, robots.txt.

mod support;

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
