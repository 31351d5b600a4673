/* The floor of the latency and keepalive benches: the least work a client can do for the same list.
 *
 * Owns: a minimal HTTP/1.1 client in C (non-blocking sockets, one epoll loop per thread, no
 * URL parsing, no HTML, no output file) that fetches every target of a list with a fixed
 * number of requests in flight and prints how long it took. `benches/e2e.sh latency` runs it
 * against the same delay server as ringcrawl, so the gap between the ideal (4.0 s) and what
 * any client can reach on the machine is measured in the same run, not guessed;
 * `benches/e2e.sh keepalive` runs it (-k) on the same nginx hosts and list as `ringcrawl fetch`.
 *
 * Three floors:
 *   - pre-resolved (no DNS argument): one request per connection (Connection: close), the
 *     addresses come from the list, resolved before the clock starts;
 *   - with resolution (a DNS argument): each target's host is resolved inside the timed run
 *     by a minimal stub resolver sharing the epoll loop: one connected UDP socket per
 *     thread, one A query per target (id = the connection slot), at most DNS_WINDOW queries
 *     in flight per thread (many more overflow a local dnsmasq's socket buffer, and a lost
 *     query then waits for its retry), a retry after DNS_RETRY_MS, no cache, no search
 *     list, no AAAA;
 *   - keep-alive (-k, pre-resolved only): targets in list order, each sent as
 *     "GET PATH HTTP/1.1" + Host on an idle connection of the same (address, port, Host) if
 *     the thread has one (a per-host idle list; host ids are given when the list is loaded),
 *     else on a new connection. A response is framed by its Content-Length (any status
 *     counts as ok; none, or chunked, is an error that closes the connection), then the
 *     connection goes back to its host's idle list, unless the response said
 *     "Connection: close". Idle connections stay watched, so one the server closes is
 *     dropped; a request that finds its reused connection closed (EPIPE, or EOF/ECONNRESET
 *     before any byte of the response) is sent once more on a new connection. Threads do
 *     not share connections.
 *
 * Usage: floor_client [-k] TARGETS CONCURRENCY THREADS [DNS]
 *   TARGETS: lines "IPV4 PORT HOST[:PORT] PATH" (the bench derives them from the URL list and
 *   the hosts file before the clock starts; with DNS the address column is not used and may
 *   be "-"). Thread i takes targets i, i + THREADS, ...; each thread has CONCURRENCY / THREADS
 *   requests in flight at most.
 *   DNS: "IPV4[:PORT]" of the server, or "resolv.conf" for the first nameserver of
 *   /etc/resolv.conf.
 *   -k: the keep-alive mode (may come anywhere; not with DNS).
 * Prints: "floor_client: N ok, E failed in S s; last wave-1 send at X s" on stdout, and with
 * DNS "; dns: Q queries, R retries, F failed"; with -k "floor_client: N ok, E failed in S s;
 * C connections" (C: connections opened), and " (R requests retried on a new one)" if any were.
 * Exits 1 if any target failed.
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
    int id; long ok, failed, dns_queries, dns_retries, dns_failed, connections, retries;
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

/* ---------------------------------------------------------------- keep-alive mode (-k)
 * Targets in list order (thread i takes targets i, i + THREADS, ...), at most
 * CONCURRENCY / THREADS requests in flight per thread. Each thread keeps its own idle
 * connections per host (the host id of the (address, port, Host) of a target, given when the
 * list is loaded): a target takes the most recently idle one of its host, or opens a new
 * connection. Idle connections stay registered for input, so one the server closes is seen
 * and dropped; one closed under a request (EPIPE on the send, EOF/ECONNRESET before any byte of
 * the response) is retried once on a new connection. */

struct ktarget { uint32_t req_off; uint16_t req_len; int host; };
struct khost { uint32_t addr; uint16_t port; char *name; };

static struct ktarget *ktargets;
static char *kreqs;                 /* every request, back to back */
static struct khost *khosts;
static int n_hosts;
static int keep_alive;

enum kstate { K_FREE, K_CONNECTING, K_READING, K_IDLE };
struct kconn {
    int fd, host, target;       /* target: the request in flight, -1 when idle */
    unsigned char state, reused, retried, close_after;
    int prev, next;             /* the host's idle list (next: also the free list); -1 ends */
    size_t got;                 /* head bytes in buf */
    long body_left;             /* body bytes still to read; -1 while the head is incomplete */
    char buf[RESPONSE_BUF];
};
struct kloop {
    int ep, in_flight, done;
    struct kconn *cs; int n, cap, free_head;
    int *idle;                  /* per host: the first idle connection, -1 if none */
    struct worker *w;
};

static int k_alloc(struct kloop *L) {
    int i = L->free_head;
    if (i >= 0) { L->free_head = L->cs[i].next; return i; }
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 256;
        L->cs = realloc(L->cs, (size_t)L->cap * sizeof *L->cs);
        if (!L->cs) { perror("floor_client"); exit(2); }
    }
    return L->n++;
}

static void k_close(struct kloop *L, int i) {
    struct kconn *c = &L->cs[i];
    close(c->fd);               /* also leaves the epoll set */
    c->fd = -1; c->state = K_FREE; c->next = L->free_head; L->free_head = i;
}

static void k_unlink_idle(struct kloop *L, int i) {
    struct kconn *c = &L->cs[i];
    if (c->prev >= 0) L->cs[c->prev].next = c->next; else L->idle[c->host] = c->next;
    if (c->next >= 0) L->cs[c->next].prev = c->prev;
    c->prev = c->next = -1;
}

static void k_push_idle(struct kloop *L, int i) {
    struct kconn *c = &L->cs[i];
    c->state = K_IDLE; c->target = -1; c->prev = -1; c->next = L->idle[c->host];
    if (c->next >= 0) L->cs[c->next].prev = i;
    L->idle[c->host] = i;
}

static void k_reset(struct kconn *c, int target, int reused, int retried) {
    c->target = target; c->reused = (unsigned char)reused; c->retried = (unsigned char)retried;
    c->close_after = 0; c->got = 0; c->body_left = -1; c->prev = c->next = -1;
}

static int k_send(struct kconn *c) {
    const struct ktarget *t = &ktargets[c->target];
    return send(c->fd, kreqs + t->req_off, t->req_len, MSG_NOSIGNAL) == (ssize_t)t->req_len ? 0 : -1;
}

/* A new connection for target t; -1 on an immediate error. */
static int k_open(struct kloop *L, int t, int retried) {
    int i = k_alloc(L);
    struct kconn *c = &L->cs[i];
    k_reset(c, t, 0, retried);
    c->host = ktargets[t].host; c->state = K_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) { c->state = K_FREE; c->next = L->free_head; L->free_head = i; return -1; }
    L->w->connections++;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = khosts[c->host].addr; a.sin_port = khosts[c->host].port;
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        k_close(L, i); return -1;
    }
    struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (unsigned)i };
    epoll_ctl(L->ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

/* Send target t on an idle connection of its host, or on a new one; -1 if it failed at once. */
static int k_start(struct kloop *L, int t) {
    int i = L->idle[ktargets[t].host];
    if (i < 0) return k_open(L, t, 0);
    k_unlink_idle(L, i);
    struct kconn *c = &L->cs[i];
    k_reset(c, t, 1, 0);
    c->state = K_READING;
    if (k_send(c) == 0) return 0;
    k_close(L, i);              /* closed while idle: once more on a new connection */
    L->w->retries++;
    return k_open(L, t, 1);
}

static void k_finish(struct kloop *L, int ok) {
    L->in_flight--; L->done++;
    if (ok) L->w->ok++; else L->w->failed++;
}

/* The head in c->buf (head bytes long): the body length, or -1 (no Content-Length,
   chunked, not HTTP/1.x). Sets close_after for "Connection: close" and HTTP/1.0. */
static long k_parse_head(struct kconn *c, const char *end) {
    const char *buf = c->buf;
    if (end - buf < 12 || memcmp(buf, "HTTP/1.", 7) != 0) return -1;
    if (buf[7] == '0') c->close_after = 1;
    long length = -1;
    for (const char *p = memchr(buf, '\n', end - buf); p && p < end; p = memchr(p, '\n', end - p)) {
        p++;
        const char *eol = memchr(p, '\r', end + 2 - p);
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (n > 15 && strncasecmp(p, "content-length:", 15) == 0) {
            char *e;
            length = strtol(p + 15, &e, 10);
            if (e == p + 15 || length < 0) return -1;
        } else if (n > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0) {
            if (memmem(p + 18, n - 18, "chunked", 7)) return -1;
        } else if (n > 11 && strncasecmp(p, "connection:", 11) == 0) {
            for (const char *q = p + 11; q + 5 <= p + n; q++)
                if (strncasecmp(q, "close", 5) == 0) { c->close_after = 1; break; }
        }
    }
    return length;
}

/* Input on a connection with a request in flight. */
static void k_read(struct kloop *L, int i) {
    struct kconn *c = &L->cs[i];
    ssize_t r;
    if (c->body_left < 0) {
        size_t room = RESPONSE_BUF - c->got;
        if (room == 0) { k_close(L, i); k_finish(L, 0); return; }   /* head too large */
        r = read(c->fd, c->buf + c->got, room);
    } else {
        r = read(c->fd, c->buf, RESPONSE_BUF);   /* body bytes: counted, not kept */
    }
    if (r < 0 && errno == EAGAIN) return;
    if (r <= 0) {
        int t = c->target, retry = c->reused && !c->retried && c->got == 0 && c->body_left < 0 &&
                                   (r == 0 || errno == ECONNRESET);
        k_close(L, i);
        if (retry) {            /* closed while idle: once more on a new connection */
            L->w->retries++;
            if (k_open(L, t, 1) == 0) return;
        }
        k_finish(L, 0);
        return;
    }
    if (c->body_left < 0) {
        c->got += r;
        const char *end = memmem(c->buf, c->got, "\r\n\r\n", 4);
        if (!end) return;
        long length = k_parse_head(c, end);
        if (length < 0) { k_close(L, i); k_finish(L, 0); return; }
        c->body_left = length - (long)(c->got - (size_t)(end + 4 - c->buf));
    } else {
        c->body_left -= r;
    }
    if (c->body_left > 0) return;
    if (c->body_left < 0) c->close_after = 1;   /* bytes past the response: not reusable */
    if (c->close_after) k_close(L, i); else k_push_idle(L, i);
    k_finish(L, 1);
}

static void *run_keep_alive(void *arg) {
    struct worker *w = arg;
    int slots = concurrency / n_threads, next = w->id, mine = 0;
    for (int i = w->id; i < n_targets; i += n_threads) mine++;
    struct kloop L = { .ep = epoll_create1(0), .free_head = -1, .w = w };
    L.idle = malloc((size_t)(n_hosts ? n_hosts : 1) * sizeof *L.idle);
    for (int h = 0; h < n_hosts; h++) L.idle[h] = -1;
    struct epoll_event evs[EVENTS_PER_WAIT];
    char scratch[64];
    while (L.done < mine) {
        while (L.in_flight < slots && next < n_targets) {
            int t = next; next += n_threads;
            L.in_flight++;
            if (k_start(&L, t) < 0) k_finish(&L, 0);
        }
        if (L.done == mine) break;
        int m = epoll_wait(L.ep, evs, EVENTS_PER_WAIT, -1);
        for (int e = 0; e < m; e++) {
            int i = evs[e].data.u32;
            struct kconn *c = &L.cs[i];
            if (c->state == K_CONNECTING) {
                int err = 0; socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err || k_send(c) < 0) { k_close(&L, i); k_finish(&L, 0); continue; }
                c->state = K_READING;
                struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)i };
                epoll_ctl(L.ep, EPOLL_CTL_MOD, c->fd, &ev);
            } else if (c->state == K_READING) {
                k_read(&L, i);
            } else if (c->state == K_IDLE) {   /* the server closed it (or sent junk): drop it */
                if (read(c->fd, scratch, sizeof scratch) < 0 && errno == EAGAIN) continue;
                k_unlink_idle(&L, i);
                k_close(&L, i);
            }
        }
    }
    for (int i = 0; i < L.n; i++) if (L.cs[i].state != K_FREE) close(L.cs[i].fd);
    free(L.cs); free(L.idle); close(L.ep);
    return NULL;
}

/* FNV-1a of (address, port, Host): the slot of a host in host_id's table. */
static uint64_t host_hash(uint32_t addr, uint16_t port, const char *name) {
    uint64_t x = 1469598103934665603ull;
    for (const char *p = name; *p; p++) x = (x ^ (unsigned char)*p) * 1099511628211ull;
    return (x ^ addr ^ ((uint64_t)port << 32)) * 1099511628211ull;
}

/* The host id of (address, port, Host), from an open-addressing table of ids. */
static int host_id(uint32_t addr, uint16_t port, const char *name) {
    static int *table; static size_t size;
    if ((size_t)n_hosts * 2 >= size) {
        size_t nsize = size ? 2 * size : 4096;
        int *nt = malloc(nsize * sizeof *nt);
        for (size_t k = 0; k < nsize; k++) nt[k] = -1;
        for (int h = 0; h < n_hosts; h++) {
            size_t k = host_hash(khosts[h].addr, khosts[h].port, khosts[h].name) & (nsize - 1);
            while (nt[k] >= 0) k = (k + 1) & (nsize - 1);
            nt[k] = h;
        }
        free(table); table = nt; size = nsize;
        khosts = realloc(khosts, (size / 2 + 1) * sizeof *khosts);
    }
    size_t k = host_hash(addr, port, name) & (size - 1);
    for (; table[k] >= 0; k = (k + 1) & (size - 1)) {
        struct khost *h = &khosts[table[k]];
        if (h->addr == addr && h->port == port && strcmp(h->name, name) == 0) return table[k];
    }
    khosts[n_hosts] = (struct khost){ addr, port, strdup(name) };
    table[k] = n_hosts;
    return n_hosts++;
}

/* A target of the keep-alive mode, stored compactly (500,000 targets take ~20 MB). */
static void add_ktarget(const char *ip, int port, const char *host, const char *path) {
    static size_t cap, arena_cap, arena_len;
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1 || port <= 0 || port > 65535) return;
    if (n_targets == (int)cap) ktargets = realloc(ktargets, (cap = cap ? 2 * cap : 1024) * sizeof *ktargets);
    if (arena_len + 2 * LINE_MAX_BYTES > arena_cap) kreqs = realloc(kreqs, arena_cap = arena_cap ? 2 * arena_cap : 1 << 16);
    struct ktarget *t = &ktargets[n_targets++];
    t->host = host_id(a.s_addr, htons(port), host);
    t->req_off = (uint32_t)arena_len;
    t->req_len = (uint16_t)sprintf(kreqs + arena_len, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
    arena_len += t->req_len;
}

/* A target of the one-request-per-connection modes (with DNS its address is not used). */
static void add_target(const char *ip, int port, const char *host, const char *path) {
    static size_t cap;
    if (n_targets == (int)cap) targets = realloc(targets, (cap = cap ? 2 * cap : 1024) * sizeof *targets);
    struct target *t = &targets[n_targets];
    memset(&t->addr, 0, sizeof t->addr);
    t->addr.sin_family = AF_INET;
    t->addr.sin_port = htons(port);
    if (!use_dns && inet_pton(AF_INET, ip, &t->addr.sin_addr) != 1) return;
    snprintf(t->host, sizeof t->host, "%.*s", (int)strcspn(host, ":"), host);
    t->request_len = snprintf(t->request, sizeof t->request,
                              "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n\r\n", path, host);
    n_targets++;
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
    int args = 0;               /* "-k" anywhere: the keep-alive mode */
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "-k") == 0) keep_alive = 1; else argv[args++] = argv[i];
    }
    argc = args;
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: floor_client [-k] TARGETS CONCURRENCY THREADS [DNS_IP[:PORT]|resolv.conf]\n");
        return 2;
    }
    if (keep_alive && argc == 5) {
        fprintf(stderr, "floor_client: -k takes the addresses from TARGETS (no DNS)\n");
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
    char line[LINE_MAX_BYTES], ip[64], host[LINE_MAX_BYTES], path[LINE_MAX_BYTES];
    int port;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%63s %d %511s %511s", ip, &port, host, path) != 4) continue;
        (keep_alive ? add_ktarget : add_target)(ip, port, host, path);
    }
    fclose(f);
    struct worker ws[MAX_THREADS] = { 0 };
    t0 = now();
    for (int i = 0; i < n_threads; i++) {
        ws[i].id = i;
        pthread_create(&ws[i].thread, NULL, keep_alive ? run_keep_alive : run, &ws[i]);
    }
    long ok = 0, failed = 0, queries = 0, retries = 0, dns_failed = 0, connections = 0, ka_retries = 0;
    double last = 0;
    for (int i = 0; i < n_threads; i++) {
        pthread_join(ws[i].thread, NULL);
        ok += ws[i].ok; failed += ws[i].failed;
        queries += ws[i].dns_queries; retries += ws[i].dns_retries; dns_failed += ws[i].dns_failed;
        connections += ws[i].connections; ka_retries += ws[i].retries;
        if (ws[i].last_first_wave_send > last) last = ws[i].last_first_wave_send;
    }
    if (keep_alive) {
        printf("floor_client: %ld ok, %ld failed in %.2f s; %ld connections", ok, failed, now() - t0,
               connections);
        if (ka_retries) printf(" (%ld requests retried on a new one)", ka_retries);
        printf("\n");
        return failed ? 1 : 0;
    }
    printf("floor_client: %ld ok, %ld failed in %.2f s; last wave-1 send at %.2f s",
           ok, failed, now() - t0, last);
    if (use_dns) printf("; dns: %ld queries, %ld retries, %ld failed", queries, retries, dns_failed);
    printf("\n");
    return failed ? 1 : 0;
}
