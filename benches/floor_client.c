/* The floor of the latency bench: the least work a client can do for the same list.
 *
 * Owns: a minimal HTTP/1.1 client in C (non-blocking sockets, one epoll loop per thread, no
 * URL parsing, no HTML, no output file) that fetches every target of a list with a fixed
 * number of connections in flight, one request per connection, and prints how long it took.
 * `benches/e2e.sh latency` runs it against the same delay server as ringcrawl, so the gap
 * between the ideal (4.0 s) and what any client can reach on the machine is measured in the
 * same run, not guessed.
 *
 * Two floors:
 *   - pre-resolved (no DNS argument): the addresses come from the list, resolved before the
 *     clock starts;
 *   - with resolution (a DNS argument): each target's host is resolved inside the timed run
 *     by a minimal stub resolver sharing the epoll loop: one connected UDP socket per
 *     thread, one A query per target (id = the connection slot), at most DNS_WINDOW queries
 *     in flight per thread (many more overflow a local dnsmasq's socket buffer, and a lost
 *     query then waits for its retry), a retry after DNS_RETRY_MS, no cache, no search
 *     list, no AAAA.
 *
 * Usage: floor_client TARGETS CONCURRENCY THREADS [DNS]
 *   TARGETS: lines "IPV4 PORT HOST[:PORT] PATH" (the bench derives them from the URL list and
 *   the hosts file before the clock starts; with DNS the address column is not used and may
 *   be "-").
 *   DNS: "IPV4[:PORT]" of the server, or "resolv.conf" for the first nameserver of
 *   /etc/resolv.conf.
 * Prints: "floor_client: N ok, E failed in S s; last wave-1 send at X s" on stdout, and with
 * DNS "; dns: Q queries, R retries, F failed".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define LINE_MAX_BYTES 512
#define RESPONSE_BUF 4096
#define EVENTS_PER_WAIT 256
#ifndef DNS_WINDOW
#define DNS_WINDOW 32           /* A queries in flight per thread at most (cc -DDNS_WINDOW=N) */
#endif
#define DNS_RETRY_MS 1000       /* resend an unanswered query after this */
#define DNS_TRIES 3             /* queries per name at most */
#define DNS_TICK_MS 50          /* epoll timeout while queries are in flight */
#define DNS_MSG 512
#define DNS_TAG 0xffffffffu     /* epoll data of a thread's DNS socket */
#define MAX_SLOTS_PER_THREAD 65535 /* the slot is the query id */

enum state { IDLE, DNS_QUEUED, DNS_SENT, CONNECTING, READING };

struct target {
    struct sockaddr_in addr;
    char host[256];             /* HOST without :PORT, for the DNS query */
    char request[LINE_MAX_BYTES + 64];
    int request_len;
};
struct conn { int fd; int target; enum state state; size_t got; long need; double dns_sent; int dns_tries; };
struct worker {
    int id; long ok, failed, dns_queries, dns_retries, dns_failed;
    double last_first_wave_send; pthread_t thread;
};

static struct target *targets;
static int n_targets, concurrency, n_threads;
static int use_dns;
static struct sockaddr_in dns_server;
static double t0;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Per-thread state of the DNS phase. */
struct dns {
    int fd;
    int *queue; int q_head, q_len;  /* slots waiting for room in the window (a ring) */
    int in_flight;
};

/* Connect slot k to its target; -1 on an immediate error. */
static int connect_slot(int ep, struct conn *c, int k) {
    c->state = CONNECTING; c->got = 0; c->need = -1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&targets[c->target].addr, sizeof targets[c->target].addr) < 0 &&
        errno != EINPROGRESS) { close(c->fd); c->fd = -1; return -1; }
    struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (unsigned)k };
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

/* An A query for the target of slot k (id k). */
static int send_query(struct dns *d, struct conn *c, int k, struct worker *w) {
    unsigned char q[DNS_MSG];
    size_t n = 0;
    q[n++] = k >> 8; q[n++] = k & 0xff;
    q[n++] = 0x01; q[n++] = 0x00;                 /* RD */
    q[n++] = 0; q[n++] = 1; memset(q + n, 0, 6); n += 6;
    const char *p = targets[c->target].host;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0 || len > 63 || n + len + 6 > sizeof q) return -1;
        q[n++] = (unsigned char)len; memcpy(q + n, p, len); n += len;
        p += len; if (*p == '.') p++;
    }
    q[n++] = 0;
    q[n++] = 0; q[n++] = 1; q[n++] = 0; q[n++] = 1; /* A, IN */
    if (send(d->fd, q, n, 0) != (ssize_t)n) return -1;
    c->state = DNS_SENT; c->dns_sent = now(); c->dns_tries++;
    w->dns_queries++;
    return 0;
}

/* The first A record of an answer to query id, or 0. */
static uint32_t answer_a(const unsigned char *m, ssize_t len) {
    if (len < 12 || !(m[2] & 0x80) || (m[3] & 0x0f) != 0) return 0;
    int qd = m[4] << 8 | m[5], an = m[6] << 8 | m[7];
    ssize_t i = 12;
    for (int s = 0; s < qd + an; s++) {
        while (i < len && m[i] != 0 && (m[i] & 0xc0) != 0xc0) i += m[i] + 1;  /* the name */
        if (i >= len) return 0;
        i += (m[i] & 0xc0) == 0xc0 ? 2 : 1;
        if (s < qd) { i += 4; continue; }
        if (i + 10 > len) return 0;
        int type = m[i] << 8 | m[i + 1], rdlen = m[i + 8] << 8 | m[i + 9];
        i += 10;
        if (i + rdlen > len) return 0;
        if (type == 1 && rdlen == 4) { uint32_t a; memcpy(&a, m + i, 4); return a; }
        i += rdlen;
    }
    return 0;
}

/* Bytes of a complete response once its head is in buf, or -1 while the head is incomplete. */
static long response_size(const char *buf, size_t len) {
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) return -1;
    long head = end + 4 - buf, body = 0;
    for (const char *p = buf; p < end; p++) {
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
            body = strtol(p + 15, NULL, 10);
    }
    return head + body;
}

static void *run(void *arg) {
    struct worker *w = arg;
    int slots = concurrency / n_threads, next = w->id, done = 0, mine = 0, started = 0;
    for (int i = w->id; i < n_targets; i += n_threads) mine++;
    int ep = epoll_create1(0);
    struct conn *cs = calloc(slots, sizeof *cs);
    char *bufs = malloc((size_t)slots * RESPONSE_BUF);
    struct dns d = { .fd = -1 };
    if (use_dns) {
        d.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        connect(d.fd, (struct sockaddr *)&dns_server, sizeof dns_server);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = DNS_TAG };
        epoll_ctl(ep, EPOLL_CTL_ADD, d.fd, &ev);
        d.queue = calloc(slots, sizeof *d.queue);
    }
    /* Give slot k its next target (or none): queue its lookup or connect; targets that fail
       at once are counted and skipped. */
    #define ADVANCE(k) do { \
        struct conn *c_ = &cs[k]; c_->state = IDLE; c_->fd = -1; \
        while (next < n_targets) { \
            c_->target = next; next += n_threads; c_->dns_tries = 0; \
            if (use_dns) { c_->state = DNS_QUEUED; d.queue[(d.q_head + d.q_len++) % slots] = (k); break; } \
            if (connect_slot(ep, c_, (k)) == 0) break; \
            w->failed++; done++; c_->state = IDLE; \
        } \
    } while (0)
    for (int k = 0; k < slots; k++) ADVANCE(k);
    struct epoll_event evs[EVENTS_PER_WAIT];
    unsigned char msg[DNS_MSG];
    while (done < mine) {
        /* Queries go out while the window has room. */
        while (use_dns && d.q_len > 0 && d.in_flight < DNS_WINDOW) {
            int k = d.queue[d.q_head]; d.q_head = (d.q_head + 1) % slots; d.q_len--;
            if (send_query(&d, &cs[k], k, w) == 0) { d.in_flight++; continue; }
            w->failed++; w->dns_failed++; done++; ADVANCE(k);
        }
        int m = epoll_wait(ep, evs, EVENTS_PER_WAIT, use_dns && d.in_flight ? DNS_TICK_MS : -1);
        for (int e = 0; e < m; e++) {
            if (evs[e].data.u32 == DNS_TAG) {
                ssize_t r;
                while ((r = recv(d.fd, msg, sizeof msg, 0)) >= 12) {
                    int k = msg[0] << 8 | msg[1];
                    if (k >= slots || cs[k].state != DNS_SENT) continue;
                    struct conn *c = &cs[k];
                    d.in_flight--;
                    uint32_t a = answer_a(msg, r);
                    if (a) {
                        targets[c->target].addr.sin_addr.s_addr = a;
                        if (connect_slot(ep, c, k) == 0) continue;
                    } else {
                        w->dns_failed++;
                    }
                    w->failed++; done++; ADVANCE(k);
                }
                continue;
            }
            int k = evs[e].data.u32;
            struct conn *c = &cs[k];
            char *buf = bufs + (size_t)k * RESPONSE_BUF;
            int finished = 0, failed = 0;
            if (c->state == CONNECTING) {
                int err = 0; socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                struct target *t = &targets[c->target];
                if (err || write(c->fd, t->request, t->request_len) != t->request_len) {
                    finished = failed = 1;
                } else {
                    c->state = READING;
                    if (started++ < slots) w->last_first_wave_send = now() - t0;
                    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)k };
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            } else if (c->state == READING) {
                size_t room = c->got < RESPONSE_BUF ? RESPONSE_BUF - c->got : 0;
                char scratch[RESPONSE_BUF];
                ssize_t r = room ? read(c->fd, buf + c->got, room) : read(c->fd, scratch, sizeof scratch);
                if (r < 0 && errno == EAGAIN) continue;
                if (r <= 0) { finished = failed = 1; }
                else {
                    c->got += r;
                    if (c->need < 0) c->need = response_size(buf, c->got < RESPONSE_BUF ? c->got : RESPONSE_BUF);
                    if (c->need >= 0 && (long)c->got >= c->need) finished = 1;
                }
            } else continue;
            if (!finished) continue;
            close(c->fd);
            if (failed) w->failed++; else w->ok++;
            done++;
            ADVANCE(k);
        }
        /* Unanswered queries: again after DNS_RETRY_MS, DNS_TRIES at most. */
        if (use_dns && d.in_flight) {
            double t = now();
            for (int k = 0; k < slots; k++) {
                struct conn *c = &cs[k];
                if (c->state != DNS_SENT || t - c->dns_sent < DNS_RETRY_MS / 1000.0) continue;
                if (c->dns_tries < DNS_TRIES && send_query(&d, c, k, w) == 0) { w->dns_retries++; continue; }
                d.in_flight--; w->failed++; w->dns_failed++; done++; ADVANCE(k);
            }
        }
    }
    #undef ADVANCE
    if (use_dns) { close(d.fd); free(d.queue); }
    free(bufs); free(cs); close(ep);
    return NULL;
}

/* The first nameserver of /etc/resolv.conf. */
static int resolv_conf_server(char *ip, size_t cap) {
    FILE *f = fopen("/etc/resolv.conf", "r");
    if (!f) return -1;
    char line[LINE_MAX_BYTES], word[32], addr[64];
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "%31s %63s", word, addr) == 2 && strcmp(word, "nameserver") == 0) {
            snprintf(ip, cap, "%s", addr); found = 0;
        }
    fclose(f);
    return found;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: floor_client TARGETS CONCURRENCY THREADS [DNS_IP[:PORT]|resolv.conf]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 2; }
    concurrency = atoi(argv[2]); n_threads = atoi(argv[3]);
    if (n_threads < 1 || n_threads > MAX_THREADS || concurrency < n_threads ||
        concurrency / n_threads > MAX_SLOTS_PER_THREAD) {
        fprintf(stderr, "floor_client: need 1..%d threads and 1..%d slots each\n", MAX_THREADS,
                MAX_SLOTS_PER_THREAD);
        return 2;
    }
    if (argc == 5) {
        char spec[64];
        if (strcmp(argv[4], "resolv.conf") == 0) {
            if (resolv_conf_server(spec, sizeof spec) < 0) {
                fprintf(stderr, "floor_client: no nameserver in /etc/resolv.conf\n");
                return 2;
            }
        } else {
            snprintf(spec, sizeof spec, "%s", argv[4]);
        }
        char *colon = strchr(spec, ':');
        int port = 53;
        if (colon) { *colon = 0; port = atoi(colon + 1); }
        dns_server.sin_family = AF_INET;
        dns_server.sin_port = htons(port);
        if (inet_pton(AF_INET, spec, &dns_server.sin_addr) != 1) {
            fprintf(stderr, "floor_client: DNS server %s is not an IPv4 address\n", spec);
            return 2;
        }
        use_dns = 1;
    }
    size_t cap = 1024;
    targets = malloc(cap * sizeof *targets);
    char line[LINE_MAX_BYTES], ip[64], host[LINE_MAX_BYTES], path[LINE_MAX_BYTES];
    int port;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%63s %d %511s %511s", ip, &port, host, path) != 4) continue;
        if (n_targets == (int)cap) targets = realloc(targets, (cap *= 2) * sizeof *targets);
        struct target *t = &targets[n_targets];
        memset(&t->addr, 0, sizeof t->addr);
        t->addr.sin_family = AF_INET;
        t->addr.sin_port = htons(port);
        if (!use_dns && inet_pton(AF_INET, ip, &t->addr.sin_addr) != 1) continue;
        snprintf(t->host, sizeof t->host, "%.*s", (int)strcspn(host, ":"), host);
        t->request_len = snprintf(t->request, sizeof t->request,
                                  "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n\r\n", path, host);
        n_targets++;
    }
    fclose(f);
    struct worker ws[MAX_THREADS] = { 0 };
    t0 = now();
    for (int i = 0; i < n_threads; i++) { ws[i].id = i; pthread_create(&ws[i].thread, NULL, run, &ws[i]); }
    long ok = 0, failed = 0, queries = 0, retries = 0, dns_failed = 0;
    double last = 0;
    for (int i = 0; i < n_threads; i++) {
        pthread_join(ws[i].thread, NULL);
        ok += ws[i].ok; failed += ws[i].failed;
        queries += ws[i].dns_queries; retries += ws[i].dns_retries; dns_failed += ws[i].dns_failed;
        if (ws[i].last_first_wave_send > last) last = ws[i].last_first_wave_send;
    }
    printf("floor_client: %ld ok, %ld failed in %.2f s; last wave-1 send at %.2f s",
           ok, failed, now() - t0, last);
    if (use_dns) printf("; dns: %ld queries, %ld retries, %ld failed", queries, retries, dns_failed);
    printf("\n");
    return failed ? 1 : 0;
}
