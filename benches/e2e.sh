#!/bin/bash
#! End-to-end benchmark of ringcrawl against peer clients (curl --parallel, aiohttp, Twisted, wrk).
#! Owns: building the release binary and the delay server, the bench network namespace
#! (loopback only, /etc/netns/NS/hosts and /etc/netns/NS/resolv.conf for name resolution),
#! nginx/dnsmasq/delay-server lifecycles, timing every client with /usr/bin/time -v and
#! printing ratios vs ringcrawl.
#!
#! Usage (root): benches/e2e.sh [broad|https|follow|latency|load|latency-dns|latency-tls|latency-real|keepalive|cluster ...]
#!   (default: broad https follow latency load)
#! Env: CARGO_TARGET_DIR (binary location), RCBENCH_DATA (corpus cache, default /tmp/rcbench-data),
#!      RCBENCH_PEERS (peer scripts, default benches/peers), RCBENCH_NOBUILD=1 (skip cargo build),
#!      RCBENCH_TIMEOUT (seconds one client may run, default 150; exit 124 = killed),
#!      RCBENCH_KA_URLS (URLs of the keepalive scenario, default 500000), RCBENCH_PERF=FILE
#!      (keepalive: also record a `perf` profile of one more ringcrawl run into FILE),
#!      RCBENCH_CALLGRIND=FILE (keepalive: count one more run's instructions with callgrind:
#!      per URL, in user space, repeatable whatever else the machine does).
#!      RCBENCH_BASELINE (latency, latency-dns, latency-real: another ringcrawl binary, run
#!      right after this one with the same arguments, for A/B), RCBENCH_ROUNDS (latency-real:
#!      rounds, default 1), RCBENCH_CLUSTER_ROUNDS (cluster: rounds, default 1).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export BIN=$TARGET/release/ringcrawl
export DELAY=$TARGET/release/examples/delay_server
export FLOOR=$TARGET/release/floor_client   # benches/floor_client.c, built below with cc
export DATA=${RCBENCH_DATA:-/tmp/rcbench-data}
export PEERS=${RCBENCH_PEERS:-$HERE/peers}
export LIMIT=${RCBENCH_TIMEOUT:-150}   # seconds any one client may run
ALL="broad https follow latency load"

# ---------------------------------------------------------------- inside the namespace
if [[ ${1:-} == __inside ]]; then
    shift
    W=$(mktemp -d /tmp/rcbench-work.XXXXXX)
    chmod 755 "$W"
    PIDS=()
    cleanup_inner() {
        for p in "${PIDS[@]:-}"; do [[ -n $p ]] && kill "$p" 2>/dev/null || true; done
        [[ -f $W/nginx.pid ]] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
        wait 2>/dev/null || true
        rm -rf "$W"
    }
    trap cleanup_inner EXIT
    ulimit -n "$(ulimit -Hn)"
    # Ephemeral ports start above the servers' ports (8080 for the delay server), so a
    # client connection of an earlier scenario can never hold the port a server binds.
    sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 \
        net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1 || true

    hosts() { cat "$1" > "$HOSTS_FILE"; }   # in place: the netns bind mount sees it
    resolv() { printf '%s\n' "$1" > "$RESOLV_FILE"; }   # likewise for /etc/resolv.conf

    # measure NAME CMD...: run under /usr/bin/time -v, keep stdout/stderr, record figures.
    measure() {
        local name=$1; shift
        echo "  running $name ..." >&2
        /usr/bin/time -v -o "$W/$name.time" timeout -k 5 "$LIMIT" "$@" >"$W/$name.out" 2>"$W/$name.err" || \
            echo "  ($name exited $?)" >&2
        python3 - "$W/$name.time" "$name" >>"$W/results.tsv" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
def g(p):
    m = re.search(p, t); return m.group(1) if m else "0"
w = g(r"Elapsed \(wall clock\) time.*: (\S+)")
secs = 0.0
for part in w.split(":"):
    secs = secs * 60 + float(part)
cpu = float(g(r"User time \(seconds\): (\S+)")) + float(g(r"System time \(seconds\): (\S+)"))
rss = int(g(r"Maximum resident set size \(kbytes\): (\d+)")) // 1024
print(f"{sys.argv[2]}\t{secs:.2f}\t{cpu:.2f}\t{rss}")
EOF
    }
    # table SCENARIO: print the rows of this scenario with ratios vs ringcrawl.
    table() {
        python3 - "$W/results.tsv" "$1" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.startswith(sys.argv[2] + ".")]
rc = next((r for r in rows if r[0].endswith(".ringcrawl")), None)
print(f"  {'client':<28}{'wall s':>8}{'cpu s':>8}{'rss MB':>8}{'wall/rc':>9}{'cpu/rc':>8}")
for r in rows:
    wr = f"{float(r[1]) / max(float(rc[1]), 1e-3):.2f}x" if rc else "-"
    cr = f"{float(r[2]) / max(float(rc[2]), 1e-3):.2f}x" if rc else "-"
    print(f"  {r[0]:<28}{r[1]:>8}{r[2]:>8}{r[3]:>8}{wr:>9}{cr:>8}")
EOF
    }
    # titled FILE: "records N, with title M, errors E" for a JSON Lines output.
    titled() {
        [[ -f $1 ]] || { echo "no output"; return; }
        python3 - "$1" <<'EOF'
import json, sys
n = t = e = 0
for l in open(sys.argv[1], errors="replace"):
    try: r = json.loads(l)
    except ValueError: continue
    n += 1; t += r.get("title") is not None; e += bool(r.get("error"))
print(f"records {n}, with title {t}, errors {e}")
EOF
    }
    rc_summary() { grep '^ringcrawl:' "$1" | sed 's/^/    /' || true; }

    start_nginx() {
        [[ -f $W/nginx.pid ]] && return
        local tls=""
        if [[ -f $W/tls/leaf.pem ]]; then
            tls="listen 443 ssl reuseport; ssl_certificate $W/tls/leaf.pem; ssl_certificate_key $W/tls/leaf.key;
                 ssl_session_cache shared:SSL:20m; ssl_session_tickets on; ssl_protocols TLSv1.2 TLSv1.3;"
        fi
        mkdir -p "$W/nginx"
        cat > "$W/nginx.conf" <<EOF
worker_processes 2;
pid $W/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 16384; }
worker_rlimit_nofile 40000;
http {
    log_format tls '\$ssl_session_reused \$connection_requests \$ssl_protocol';
    access_log off;
    client_body_temp_path $W/nginx/body; proxy_temp_path $W/nginx/proxy;
    fastcgi_temp_path $W/nginx/fcgi; uwsgi_temp_path $W/nginx/uwsgi; scgi_temp_path $W/nginx/scgi;
    types { text/html html; }
    default_type text/html;
    sendfile on; tcp_nopush on; keepalive_requests 100000; keepalive_timeout 60;
    server {
        listen 80 default_server reuseport backlog=65535;
        $tls
        server_name _;
        root $DATA/www/\$host;
        index index.html;
        location / { if (\$scheme = https) { access_log $W/nginx/tls.log tls; } }
    }
}
EOF
        nginx -p "$W/nginx" -c "$W/nginx.conf"
        sleep 0.5
    }
    stop_nginx() {
        [[ -f $W/nginx.pid ]] || return 0
        local p; p=$(cat "$W/nginx.pid"); kill "$p"; rm -f "$W/nginx.pid"
        while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    }
    make_ca() {
        [[ -f $W/tls/leaf.pem ]] && return
        mkdir -p "$W/tls"; cd "$W/tls"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=rcbench CA" -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=site.test" \
            -keyout leaf.key -out leaf.csr 2>/dev/null
        printf 'subjectAltName=DNS:*.site.test,DNS:*.blog.test,DNS:load.test,DNS:*.lat.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out leaf.pem 2>/dev/null
        cd - >/dev/null
    }

    # floor_targets LIST HOSTS OUT [DNS_OUT]: floor_client's targets ("IP PORT HOST[:PORT]
    # PATH") for a URL list, the addresses taken from a hosts file before any clock starts;
    # DNS_OUT gets the same lines with "-" for the address (the floor resolves them itself).
    floor_targets() {
        python3 - "$@" <<'EOF'
import sys, urllib.parse
ip = {}
for l in open(sys.argv[2]):
    f = l.split()
    if len(f) >= 2: ip.setdefault(f[1], f[0])
pre = open(sys.argv[3], "w")
dns = open(sys.argv[4], "w") if len(sys.argv) > 4 else None
for l in open(sys.argv[1]):
    u = urllib.parse.urlsplit(l.strip())
    rest = f"{u.port or 80} {u.netloc} {u.path or '/'}\n"
    pre.write(f"{ip[u.hostname]} {rest}")
    if dns: dns.write(f"- {rest}")
EOF
    }

    # Compare ringcrawl records with the expected titles (and links with --follow).
    check() {
        python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
exp = {}
for l in open(sys.argv[2]):
    r = json.loads(l); exp[r["url"].replace("http://", sys.argv[3] + "://", 1)] = r
got = {}
bad = []
for l in open(sys.argv[1]):
    r = json.loads(l); got[r["url"]] = r
for u, e in exp.items():
    r = got.get(u)
    if r is None: bad.append(f"missing {u}"); continue
    if r.get("title") != e["title"]: bad.append(f"title {u}: {r.get('title')!r} != {e['title']!r} err={r.get('error')}")
    elif "link" in e and r.get("link") != e["link"]: bad.append(f"link {u}: {r.get('link')!r} != {e['link']!r}")
print(f"    check: {len(got)} records for {len(exp)} URLs, {len(bad)} wrong")
for b in bad[:5]: print("     ", b)
EOF
    }

    # Read the whole site once, untimed: the first client of a scenario must not pay for the
    # page cache alone (cold, ringcrawl's broad took 1.34 s instead of 0.4-0.7 s; curl and
    # aiohttp, running after it, got the warm cache).
    warm() { find "$DATA/www" -type f -print0 | xargs -0 cat > /dev/null; }

    sc_broad() {
        echo "== broad: 11,000 pages on 1,000 hosts, nginx, -c 300 =="
        hosts "$DATA/hosts_nginx"; start_nginx; warm
        local L=$DATA/lists/broad_http.txt
        measure broad.ringcrawl "$BIN" fetch -i "$L" -o "$W/broad.rc.jsonl" -c 300
        measure broad.curl "$PEERS/curl_fetch.sh" "$L" 300 "$W/curl-broad"
        measure broad.aiohttp python3 "$PEERS/aiohttp_titles.py" "$L" 300 "$W/broad.aio.jsonl"
        table broad
        echo "    ringcrawl: $(titled "$W/broad.rc.jsonl")"; rc_summary "$W/broad.ringcrawl.err"
        check "$W/broad.rc.jsonl" "$DATA/expect_broad.jsonl" http
        echo "    curl: $(find "$W/curl-broad" -name '*.html' -size +0 | wc -l) files; aiohttp: $(titled "$W/broad.aio.jsonl")"
        rm -rf "$W/curl-broad"
    }
    sc_https() {
        echo "== https: the same 11,000 pages over TLS (private CA), -c 300 =="
        hosts "$DATA/hosts_nginx"; stop_nginx; make_ca; start_nginx; warm
        local L=$DATA/lists/broad_https.txt
        : > "$W/nginx/tls.log"
        measure https.ringcrawl "$BIN" fetch -i "$L" -o "$W/https.rc.jsonl" -c 300 --ca-file "$W/tls/ca.pem"
        local rcnew rcres
        rcnew=$(awk '$2==1 && $1=="."' "$W/nginx/tls.log" | wc -l); rcres=$(awk '$2==1 && $1=="r"' "$W/nginx/tls.log" | wc -l)
        : > "$W/nginx/tls.log"
        CURL_CA_BUNDLE=$W/tls/ca.pem measure https.curl "$PEERS/curl_fetch.sh" "$L" 300 "$W/curl-https"
        local cunew cures
        cunew=$(awk '$2==1 && $1=="."' "$W/nginx/tls.log" | wc -l); cures=$(awk '$2==1 && $1=="r"' "$W/nginx/tls.log" | wc -l)
        SSL_CERT_FILE=$W/tls/ca.pem measure https.aiohttp python3 "$PEERS/aiohttp_titles.py" "$L" 300 "$W/https.aio.jsonl"
        table https
        echo "    ringcrawl: $(titled "$W/https.rc.jsonl")"; rc_summary "$W/https.ringcrawl.err"
        check "$W/https.rc.jsonl" "$DATA/expect_broad.jsonl" https
        echo "    nginx saw (new TLS connections): ringcrawl $rcnew full / $rcres resumed; curl $cunew full / $cures resumed"
        echo "    curl: $(find "$W/curl-https" -name '*.html' -size +0 | wc -l) files; aiohttp: $(titled "$W/https.aio.jsonl")"
        rm -rf "$W/curl-https"
    }
    sc_follow() {
        echo "== follow: 1,000 blog indexes -> first h3 a -> title, concurrency 100 =="
        hosts "$DATA/hosts_nginx"; start_nginx; warm
        local L=$DATA/lists/follow.txt
        measure follow.ringcrawl "$BIN" fetch --follow 'h3 a' -i "$L" -o "$W/follow.rc.jsonl" -c 100
        measure follow.twisted python3 "$PEERS/twisted_titles.py" "$L" 100 "$W/follow.tw.jsonl" --first
        measure follow.aiohttp python3 "$PEERS/aiohttp_titles.py" "$L" 100 "$W/follow.aio.jsonl" --first
        table follow
        echo "    ringcrawl: $(titled "$W/follow.rc.jsonl")"; rc_summary "$W/follow.ringcrawl.err"
        check "$W/follow.rc.jsonl" "$DATA/expect_follow.jsonl" http
        echo "    twisted: $(titled "$W/follow.tw.jsonl"); aiohttp: $(titled "$W/follow.aio.jsonl")"
    }
    start_delay() {   # a fresh delay server per client, so no client inherits another's state
        "$DELAY" 0.0.0.0:8080 2000 ${DELAY_PAGE:-} > "$W/delay.log" &
        DELAY_PID=$!
        for _ in $(seq 50); do grep -q listening "$W/delay.log" 2>/dev/null && break; sleep 0.1; done
    }
    stop_delay() { kill "$DELAY_PID"; wait "$DELAY_PID" 2>/dev/null || true; }
    latency_run() {   # latency_run NAME LIST [extra ringcrawl args]
        local name=$1 list=$2; shift 2
        start_delay
        measure "$name.ringcrawl" "$BIN" fetch -i "$list" -o "$W/$name.rc.jsonl" -c 10000 "$@"
        stop_delay
        python3 - "$W/results.tsv" "$name.ringcrawl" <<'EOF'
import sys
r = [l.split("\t") for l in open(sys.argv[1]) if l.startswith(sys.argv[2] + "\t")][-1]
print(f"    total {r[1]} s vs ideal 4.0 s: {float(r[1]) / 4.0:.2f}x (the floor client, measured next, is the target); cpu {r[2]} s; peak RSS {r[3].strip()} MB (target <= 100)")
EOF
        echo "    ringcrawl: $(titled "$W/$name.rc.jsonl")"; rc_summary "$W/$name.ringcrawl.err"
        python3 - "$W/$name.rc.jsonl" <<'EOF'
import json, sys, collections
c = collections.Counter((json.loads(l).get("error") or {}).get("kind") for l in open(sys.argv[1]))
print("    error kinds:", dict(c))
EOF
        sed 's/^/    delay server: /' "$W/delay.log" | grep -v listening || true
        if [[ -n ${RCBENCH_BASELINE:-} ]]; then   # A/B: the other binary, same arguments
            start_delay
            measure "$name.baseline" "$RCBENCH_BASELINE" fetch -i "$list" -o "$W/$name.base.jsonl" -c 10000 "$@"
            stop_delay
            echo "    baseline: $(titled "$W/$name.base.jsonl")"
            table "$name"
        fi
    }
    sc_latency() {
        echo "== latency: 20,000 hosts, every answer after 2 s, -c 10000 (ideal 4.0 s) =="
        stop_nginx; hosts "$DATA/hosts_latency"
        latency_run latency "$DATA/lists/latency.txt"
        # The floor: a minimal C epoll client (no DNS, URL parsing, HTML or journal) on the same
        # list, addresses resolved before its clock starts. What it cannot reach, no client can
        # on this machine; ringcrawl's distance to it is ringcrawl's own overhead.
        floor_targets "$DATA/lists/latency.txt" "$DATA/hosts_latency" "$W/floor.targets"
        start_delay
        measure latency.floor_client "$FLOOR" "$W/floor.targets" 10000 "$(nproc)"
        stop_delay
        start_delay
        measure latency.aiohttp python3 "$PEERS/aiohttp_titles.py" "$DATA/lists/latency.txt" 10000 "$W/latency.aio.jsonl"
        stop_delay
        table latency
        sed 's/^/    /' "$W/latency.floor_client.out"
        echo "    aiohttp: $(titled "$W/latency.aio.jsonl")"
        python3 - "$W/results.tsv" <<'EOF'
import sys
rows = {l.split("\t")[0]: l.split("\t") for l in open(sys.argv[1])}
rc, fl = rows.get("latency.ringcrawl"), rows.get("latency.floor_client")
if rc and fl:
    print(f"    floor client {fl[1]} s ({float(fl[1]) / 4.0:.2f}x ideal, cpu {fl[2]} s); "
          f"ringcrawl / floor: {float(rc[1]) / float(fl[1]):.2f}x wall, {float(rc[2]) / max(float(fl[2]), 0.01):.2f}x cpu")
EOF
    }
    sc_latency_dns() {
        echo "== latency-dns: as latency, names from dnsmasq via --resolver 127.0.0.53:53 =="
        stop_nginx; hosts "$DATA/hosts_nginx"
        dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --addn-hosts="$DATA/dnsmasq_hosts" \
            --listen-address=127.0.0.53 --bind-interfaces --port=53 --cache-size=10000 \
            --local-ttl=300 --user=root --pid-file="$W/dnsmasq.pid" 2>"$W/dnsmasq.log" &
        local dm=$!; PIDS+=("$dm"); sleep 1
        latency_run latency_dns "$DATA/lists/latency_dns.txt" --resolver 127.0.0.53:53
        kill "$dm"; wait "$dm" 2>/dev/null || true
    }
    # latency-real: the latency scenario with what a real small site and a real resolver add:
    # names only in dnsmasq, found through the system path (/etc/resolv.conf: nameserver
    # 127.0.0.53; no --resolver, nothing in /etc/hosts), and Go net/http style pages
    # (delay_server --go-page: ~2.3 KB, chunked). Floors: the C client with addresses
    # resolved before its clock starts, and with its own resolution (same dnsmasq, through
    # /etc/resolv.conf) inside the timed run.
    sc_latency_real() {
        local rounds=${RCBENCH_ROUNDS:-1} r list=$DATA/lists/latency_dns.txt saved
        echo "== latency-real: 20,000 hosts via dnsmasq + resolv.conf, 2.3 KB chunked pages after 2 s, -c 10000 =="
        stop_nginx; hosts "$DATA/hosts_nginx"
        saved=$(cat "$RESOLV_FILE")
        resolv "nameserver 127.0.0.53"
        dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --addn-hosts="$DATA/dnsmasq_hosts" \
            --listen-address=127.0.0.53 --bind-interfaces --port=53 --cache-size=10000 \
            --local-ttl=300 --user=root --pid-file="$W/dnsmasq.pid" 2>"$W/dnsmasq.log" &
        local dm=$!; PIDS+=("$dm"); sleep 1
        floor_targets "$list" "$DATA/dnsmasq_hosts" "$W/real.targets" "$W/real.dns.targets"
        DELAY_PAGE=--go-page
        for r in $(seq "$rounds"); do
            start_delay
            measure "real$r.ringcrawl" "$BIN" fetch -i "$list" -o "$W/real$r.rc.jsonl" -c 10000
            stop_delay
            if [[ -n ${RCBENCH_BASELINE:-} ]]; then
                start_delay
                measure "real$r.baseline" "$RCBENCH_BASELINE" fetch -i "$list" -o "$W/real$r.base.jsonl" -c 10000
                stop_delay
            fi
            start_delay
            measure "real$r.floor_client" "$FLOOR" "$W/real.targets" 10000 "$(nproc)"
            stop_delay
            start_delay
            measure "real$r.floor_dns" "$FLOOR" "$W/real.dns.targets" 10000 "$(nproc)" resolv.conf
            stop_delay
            table "real$r"
            echo "    ringcrawl: $(titled "$W/real$r.rc.jsonl")"; rc_summary "$W/real$r.ringcrawl.err"
            if [[ -n ${RCBENCH_BASELINE:-} ]]; then echo "    baseline: $(titled "$W/real$r.base.jsonl")"; fi
            sed 's/^/    /' "$W/real$r.floor_client.out" "$W/real$r.floor_dns.out"
        done
        unset DELAY_PAGE
        python3 - "$W/results.tsv" "$rounds" <<'EOF'
import sys
rows = {l.split("\t")[0]: [float(x) for x in l.split("\t")[1:]] for l in open(sys.argv[1])}
for r in range(1, int(sys.argv[2]) + 1):
    rc, base, fl, fd = (rows.get(f"real{r}.{c}") for c in ("ringcrawl", "baseline", "floor_client", "floor_dns"))
    line = f"    round {r}: ringcrawl {rc[0]:.2f} s, {rc[2]:.0f} MB"
    if base: line += f"; baseline {base[0]:.2f} s, {base[2]:.0f} MB"
    line += f"; floor {fl[0]:.2f} s pre-resolved, {fd[0]:.2f} s resolving"
    line += f"; ringcrawl / floor {rc[0] / fl[0]:.2f}x pre-resolved, {rc[0] / fd[0]:.2f}x resolving"
    if base: line += f"; baseline / floor {base[0] / fl[0]:.2f}x, {base[0] / fd[0]:.2f}x"
    print(line)
EOF
        kill "$dm"; wait "$dm" 2>/dev/null || true
        resolv "$saved"
    }
    sc_latency_tls() {
        echo "== latency-tls: 10,000 https hosts, nginx TLS in front of the delay server, -c 10000 =="
        stop_nginx; hosts "$DATA/hosts_latency"; make_ca
        mkdir -p "$W/nginx-tls"
        cat > "$W/nginx-tls.conf" <<EOF
worker_processes 2;
pid $W/nginx-tls.pid;
error_log $W/nginx-tls/error.log warn;
events { worker_connections 30000; }
worker_rlimit_nofile 70000;
http {
    access_log off;
    client_body_temp_path $W/nginx-tls/body; proxy_temp_path $W/nginx-tls/proxy;
    fastcgi_temp_path $W/nginx-tls/fcgi; uwsgi_temp_path $W/nginx-tls/uwsgi; scgi_temp_path $W/nginx-tls/scgi;
    server {
        listen 443 ssl reuseport backlog=65535;
        ssl_certificate $W/tls/leaf.pem; ssl_certificate_key $W/tls/leaf.key;
        ssl_session_cache shared:SSL:50m; ssl_protocols TLSv1.2 TLSv1.3;
        location / { proxy_pass http://127.0.0.1:8080; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
        nginx -p "$W/nginx-tls" -c "$W/nginx-tls.conf"; sleep 0.5
        head -10000 "$DATA/lists/latency.txt" | sed 's#^http://\(.*\):8080/#https://\1/#' > "$W/latency_tls.txt"
        start_delay
        measure latency_tls.ringcrawl "$BIN" fetch -i "$W/latency_tls.txt" -o "$W/latency_tls.rc.jsonl" \
            -c 10000 --ca-file "$W/tls/ca.pem"
        stop_delay
        kill "$(cat "$W/nginx-tls.pid")"
        table latency_tls
        echo "    ringcrawl: $(titled "$W/latency_tls.rc.jsonl")"; rc_summary "$W/latency_tls.ringcrawl.err"
    }
    sc_keepalive() {
        local n=${RCBENCH_KA_URLS:-500000}
        echo "== keepalive: $n URLs round-robin on 1,000 nginx hosts (small 404 pages, keep-alive), -c 300, next to load on one of them =="
        hosts "$DATA/hosts_nginx"; start_nginx
        python3 - "$n" > "$W/keepalive.txt" <<'EOF2'
import sys
n = int(sys.argv[1])
for i in range(n):
    print(f"http://h{i % 1000:04d}.site.test/missing/{i // 1000}")
EOF2
        # The floor: floor_client -k (keep-alive, per-host idle connections, Content-Length
        # framing; no URL parsing, HTML or output) on the same list, same -c, addresses
        # resolved before its clock starts. ringcrawl's distance to it is its own overhead.
        floor_targets "$W/keepalive.txt" "$DATA/hosts_nginx" "$W/keepalive.floor.targets"
        measure keepalive.ringcrawl "$BIN" fetch -i "$W/keepalive.txt" -o "$W/keepalive.rc.jsonl" -c 300
        measure keepalive.floor_client "$FLOOR" "$W/keepalive.floor.targets" 300 "$(nproc)" -k
        if [[ -n ${RCBENCH_CALLGRIND:-} ]]; then   # instructions of one more run (user space)
            valgrind --tool=callgrind --callgrind-out-file="$RCBENCH_CALLGRIND" \
                "$BIN" fetch -i "$W/keepalive.txt" -o "$W/keepalive.rc.jsonl" -c 300 -q 2>/dev/null || true
            python3 - "$RCBENCH_CALLGRIND" "$n" <<'EOF2'
import re, sys
total = 0
for l in open(sys.argv[1]):
    m = re.match(r"summary: (\d+)", l) or re.match(r"totals: (\d+)", l)
    if m:
        total = int(m.group(1))
print(f"    callgrind: {total / int(sys.argv[2]):.0f} instructions per URL in user space ({total} in all)")
EOF2
        fi
        if [[ -n ${RCBENCH_PERF:-} ]]; then   # a profile of one more run, for `perf report -i`
            perf record -F 499 --call-graph dwarf,32768 -o "$RCBENCH_PERF" -- \
                "$BIN" fetch -i "$W/keepalive.txt" -o "$W/keepalive.rc.jsonl" -c 300 -q 2>/dev/null || true
        fi
        measure keepalive.load "$BIN" load http://h0000.site.test/missing/0 -c 100 -d 5 --json
        table keepalive
        echo "    ringcrawl: $(titled "$W/keepalive.rc.jsonl")"; rc_summary "$W/keepalive.ringcrawl.err"
        sed 's/^/    /' "$W/keepalive.floor_client.out"
        python3 - "$W/results.tsv" "$n" "$W/keepalive.load.out" "$W/keepalive.floor_client.out" <<'EOF2'
import json, re, sys
rows = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open(sys.argv[1])}
n = int(sys.argv[2])
rc = rows["keepalive.ringcrawl"]
ups, cpu_us = n / float(rc[1]), float(rc[2]) * 1e6 / n
try:
    rps = json.load(open(sys.argv[3]))["rps"]
except Exception:
    rps = 0
line = (f"    fetch {ups:.0f} URLs/s, {cpu_us:.1f} us CPU per URL, peak RSS {rc[3]} MB; "
        f"load {rps:.0f} req/s on one of the pages; fetch/load {ups / max(rps, 1):.2f}x (target >= 0.80x)")
# The floor, timed like fetch (/usr/bin/time: its wall and CPU include loading its list).
fl = rows.get("keepalive.floor_client")
m = re.search(r"(\d+) ok, (\d+) failed", open(sys.argv[4]).read())
if fl and m and int(m.group(2)) == 0:
    fups, fcpu_us = n / max(float(fl[1]), 1e-3), float(fl[2]) * 1e6 / n
    line += (f"; floor {fups:.0f} URLs/s, {fcpu_us:.1f} us CPU per URL; "
             f"fetch/floor {ups / fups:.2f}x, floor/load {fups / max(rps, 1):.2f}x")
else:
    line += "; floor: no clean run (see its line above)"
print(line)
EOF2
        rm -f "$W/keepalive.txt" "$W/keepalive.rc.jsonl" "$W/keepalive.floor.targets"
    }
    # cluster: the broad list through the spool daemon, then through NATS JetStream with one
    # node and with three nodes (each a `ringcrawl run` with [cluster], -c 300, a fresh
    # nats-server -js per run, all on this machine). Timed from the submit until every record
    # is stored: in the journal with the list in done/ (spool); in the records stream with the
    # URL stream empty, i.e. every line acked (cluster; read from the server's monitoring
    # port). Then `collect` writes the records stream to a file (timed on its own) and the
    # titles are checked.
    now() { date +%s.%N; }
    # start_waiter N READY NODES: a poller that exits once the records stream holds N and the
    # URL streams 0 (nonzero after $LIMIT s). Started before the clock, so the interpreter's
    # start-up (python3 may be a shim that runs a few shell processes first) is not counted as
    # the cluster's time; it touches READY after its first answer. While the crawl runs it
    # reads the nodes' own counters of stored records (`/metrics` on 127.0.0.1:946I for node
    # I, every 20 ms, like the spool daemon's waiter); only once they add up to N does it ask
    # nats-server for its streams (`/jsz?streams=true`, about 2 ms of the server's CPU each,
    # which every 20 ms for the whole crawl would be a tenth of a core taken from the cluster).
    start_waiter() {
        python3 - "$1" "$LIMIT" "$2" "$3" <<'EOF' &
import json, pathlib, re, sys, time, urllib.request
n, limit, ready, nodes = int(sys.argv[1]), float(sys.argv[2]), pathlib.Path(sys.argv[3]), int(sys.argv[4])
stored_re = re.compile(r"^ringcrawl_cluster_records_stored_total (\S+)$", re.M)
def stored():
    total = 0
    for i in range(1, nodes + 1):
        text = urllib.request.urlopen(f"http://127.0.0.1:{9460 + i}/metrics").read().decode()
        total += sum(float(v) for v in stored_re.findall(text))
    return total
s, end = {}, time.time() + limit
while time.time() < end:
    try:
        done = stored() >= n
        ready.touch()
        if done:
            d = json.load(urllib.request.urlopen("http://127.0.0.1:8222/jsz?streams=true"))
            s = {x["name"]: x["state"]["messages"]
                 for a in d.get("account_details", []) for x in a.get("stream_detail", [])}
            urls = [v for k, v in s.items() if k.startswith("ringcrawl-urls")]
            if s.get("ringcrawl-records", 0) >= n and urls and sum(urls) == 0:
                sys.exit(0)
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(0.02)
print(f"    (timed out: {s})")
sys.exit(1)
EOF
        waiter=$!
        until [[ -f $2 ]]; do sleep 0.02; done
    }
    cluster_conf() {   # cluster_conf DIR [NATS_URL METRICS_PORT]
        mkdir -p "$1"
        printf '[daemon]\nspool = "%s"\njournal = "%s"\nrescan_secs = 0.2\n' "$1/spool" "$1/journal.jsonl" > "$1/rc.toml"
        [[ -n ${3:-} ]] && printf 'metrics_listen = "127.0.0.1:%s"\n' "$3" >> "$1/rc.toml"
        printf '[fetch]\nconcurrency = 300\nallow = ["loopback"]\nrobots = false\nretries = 0\n' >> "$1/rc.toml"
        if [[ -n ${2:-} ]]; then
            printf '[cluster]\nservers = ["%s"]\npartitions = 64\n' "$2" >> "$1/rc.toml"
        fi
    }
    sc_cluster() {
        echo "== cluster: the broad list (11,000 pages, 1,000 hosts), spool daemon vs NATS JetStream nodes, -c 300 each =="
        command -v nats-server >/dev/null || { echo "    missing nats-server (apt-get install nats-server)"; return; }
        hosts "$DATA/hosts_nginx"; start_nginx; warm
        local L=$DATA/lists/broad_http.txt n round t0 t1 t2 d pid nats nodes i spool_s s waiter
        local -a pids
        n=$(grep -c . "$L")
        for round in $(seq 1 "${RCBENCH_CLUSTER_ROUNDS:-1}"); do
            d=$W/cl-spool-$round; cluster_conf "$d"
            "$BIN" run --config "$d/rc.toml" 2>"$d/node.log" & pid=$!
            until [[ -d $d/spool/cur ]]; do sleep 0.05; done
            t0=$(now)
            "$BIN" submit --spool "$d/spool" "$L" >/dev/null
            until compgen -G "$d/spool/done/broad_http.txt*" >/dev/null; do sleep 0.02; done
            t1=$(now)
            kill -TERM "$pid"; wait "$pid" || true
            spool_s=$(echo "$t1 - $t0" | bc)
            printf 'cluster.spool_daemon\t%.2f\t0\t0\n' "$spool_s" >> "$W/results.tsv"
            echo "    round $round, spool daemon: $spool_s s, $(titled "$d/journal.jsonl")"
            for nodes in 1 3; do
                d=$W/cl-nats$nodes-$round; mkdir -p "$d"
                nats-server -js -sd "$d/js" -a 127.0.0.1 -p 4222 -m 8222 2>"$d/nats.log" & nats=$!
                until (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; do sleep 0.05; done
                pids=()
                for i in $(seq 1 "$nodes"); do
                    cluster_conf "$d/n$i" nats://127.0.0.1:4222 $((9460 + i))
                    RINGCRAWL_LOG=ringcrawl=info "$BIN" run --config "$d/n$i/rc.toml" 2>"$d/n$i/node.log" & pids+=($!)
                done
                for i in $(seq 1 "$nodes"); do
                    until grep -q "joined the cluster" "$d/n$i/node.log"; do sleep 0.05; done
                done
                sleep $(( 1 + nodes ))   # the leases settle at the fair share
                start_waiter "$n" "$d/waiter.ready" "$nodes"
                t0=$(now)
                "$BIN" submit --nats nats://127.0.0.1:4222 "$L" >/dev/null
                wait "$waiter" || true
                t1=$(now)
                "$BIN" collect --nats nats://127.0.0.1:4222 -o "$d/records.jsonl" 2>/dev/null
                t2=$(now)
                kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
                kill "$nats"; wait "$nats" || true
                s=$(echo "$t1 - $t0" | bc)
                printf 'cluster.nats_%s_node\t%.2f\t0\t0\n' "$nodes" "$s" >> "$W/results.tsv"
                echo "    round $round, NATS with $nodes node(s): $s s ($(echo "scale=2; $s / $spool_s" | bc)x the spool daemon); then collect $(echo "$t2 - $t1" | bc) s, $(titled "$d/records.jsonl")"
                check "$d/records.jsonl" "$DATA/expect_broad.jsonl" http
            done
        done
        table cluster
    }
    sc_load() {
        echo "== load: one small page, 100 connections, 5 s =="
        hosts "$DATA/hosts_nginx"; start_nginx
        local U=http://load.test/small.html
        measure load.ringcrawl "$BIN" load "$U" -c 100 -d 5 --json
        measure load.wrk wrk -t2 -c100 -d5s "$U"
        # ringcrawl load uses one thread against a loopback target on 2 cores: wrk with one
        # thread too, for comparison (the target is wrk -t2).
        measure load.wrk_t1 wrk -t1 -c100 -d5s "$U"
        local a b c
        a=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["rps"]))' "$W/load.ringcrawl.out" 2>/dev/null || echo 0)
        b=$(awk '/Requests\/sec/ {print int($2)}' "$W/load.wrk.out")
        c=$(awk '/Requests\/sec/ {print int($2)}' "$W/load.wrk_t1.out")
        table load
        echo "    requests/s: ringcrawl $a, wrk -t2 $b, ratio ringcrawl/wrk $(python3 -c "print(f'{$a/max($b,1):.2f}')"); wrk -t1 $c ($(python3 -c "print(f'{$a/max($c,1):.2f}')"))"
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("    ringcrawl latency_ms", d.get("latency_ms"), "status", d.get("status"), "errors", d.get("errors"))' "$W/load.ringcrawl.out" 2>/dev/null || sed 's/^/    /' "$W/load.ringcrawl.err"
        grep -E "Latency|Socket errors|Non-2xx" "$W/load.wrk.out" | sed 's/^/    wrk /' || true
        # Client CPU per request: what decides the rate when the server shares the cores,
        # and steadier than the rate on a shared machine.
        python3 - "$W/results.tsv" "$W/load.ringcrawl.out" "$W/load.wrk.out" <<'EOF2'
import json, re, sys
rows = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open(sys.argv[1])}
try:
    rc = json.load(open(sys.argv[2]))["requests"]
except Exception:
    rc = 0
m = re.search(r"(\d+) requests in", open(sys.argv[3]).read())
wrk = int(m.group(1)) if m else 0
def us(name, n):
    return f"{float(rows[name][2]) * 1e6 / n:.1f}" if n else "-"
print(f"    client CPU per request: ringcrawl {us('load.ringcrawl', rc)} us, wrk -t2 {us('load.wrk', wrk)} us")
EOF2
    }

    echo "ringcrawl e2e bench $(date -u +%FT%TZ) on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    for s in "$@"; do
        case $s in
            broad) sc_broad ;; https) sc_https ;; follow) sc_follow ;;
            latency) sc_latency ;; latency-dns) sc_latency_dns ;; latency-tls) sc_latency_tls ;; load) sc_load ;;
            latency-real) sc_latency_real ;; keepalive) sc_keepalive ;; cluster) sc_cluster ;;
            *) echo "unknown scenario $s (known: $ALL latency-dns latency-tls latency-real keepalive cluster)" >&2; exit 2 ;;
        esac
    done
    exit 0
fi

# ---------------------------------------------------------------- outside: build, set up, enter
[[ $(id -u) == 0 ]] || { echo "e2e.sh must run as root (network namespace)" >&2; exit 1; }
for t in nginx curl wrk dnsmasq openssl python3 /usr/bin/time ip cc; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
python3 -c 'import aiohttp, lxml, twisted.internet.ssl' 2>/dev/null || {
    echo "missing Python modules: pip install aiohttp lxml twisted pyopenssl service_identity" >&2; exit 1; }
if [[ -z ${RCBENCH_NOBUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release --bin ringcrawl --example delay_server)
fi
cc -O2 -pthread -o "$FLOOR" "$HERE/floor_client.c"
for f in "$BIN" "$DELAY" "$FLOOR"; do [[ -x $f ]] || { echo "not built: $f (set CARGO_TARGET_DIR?)" >&2; exit 1; }; done
echo "generating the corpus in $DATA (cached)" >&2
python3 "$HERE/gen_site.py" "$DATA"

NS=rcbench-$$
export HOSTS_FILE=/etc/netns/$NS/hosts RESOLV_FILE=/etc/netns/$NS/resolv.conf
cleanup() {
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "/etc/netns/$NS"
}
trap cleanup EXIT
mkdir -p "/etc/netns/$NS"
cp "$DATA/hosts_nginx" "$HOSTS_FILE"
# resolv.conf: the host's (a copy, rewritten in place by latency-real); its server is
# unreachable inside the netns (fails fast, ENETUNREACH)
cat /etc/resolv.conf > "$RESOLV_FILE"
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
[[ $# -eq 0 ]] && set -- $ALL
ip netns exec "$NS" bash "$0" __inside "$@"
