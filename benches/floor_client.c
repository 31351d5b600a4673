/* The floor of the latency bench: the least work a client can do for the same list.
 *
 * Owns: a minimal HTTP/1.1 client in C (non-blocking sockets, one epoll loop per thread, no
 * URL parsing, no DNS, no HTML, no output file) that fetches every target of a pre-resolved
 * list with a fixed number of connections in flight, one request per connection, and prints
 * how long it took. `benches/e2e.sh latency` runs it against the same delay server as
 * ringcrawl, so the gap between the ideal (4.0 s) and what any client can reach on the
 * machine is measured in the same run, not guessed.
 *
 * Usage: floor_client TARGETS CONCURRENCY THREADS
 *   TARGETS: lines "IPV4 PORT HOST[:PORT] PATH" (the bench derives them from the URL list
 *   and the hosts file before the clock starts).
 * Prints: "floor_client: N ok, E failed in S s; last wave-1 send at X s" on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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

struct target { struct sockaddr_in addr; char request[LINE_MAX_BYTES + 64]; int request_len; };
struct conn { int fd; int target; int connected; size_t got; long need; };
struct worker { int id; long ok, failed; double last_first_wave_send; pthread_t thread; };

static struct target *targets;
static int n_targets, concurrency, n_threads;
static double t0;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Open a connection for target i in slot k; returns -1 (and counts a failure) on error. */
static int start(int ep, struct conn *c, int k, int i, struct worker *w) {
    c->target = i; c->connected = 0; c->got = 0; c->need = -1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) { w->failed++; return -1; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&targets[i].addr, sizeof targets[i].addr) < 0 &&
        errno != EINPROGRESS) { close(c->fd); w->failed++; return -1; }
    struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (unsigned)k };
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
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
    for (int k = 0; k < slots && next < n_targets; k++, next += n_threads)
        if (start(ep, &cs[k], k, next, w) < 0) done++, k--;
    struct epoll_event evs[EVENTS_PER_WAIT];
    while (done < mine) {
        int m = epoll_wait(ep, evs, EVENTS_PER_WAIT, -1);
        for (int e = 0; e < m; e++) {
            int k = evs[e].data.u32;
            struct conn *c = &cs[k];
            char *buf = bufs + (size_t)k * RESPONSE_BUF;
            int finished = 0, failed = 0;
            if (!c->connected) {
                int err = 0; socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                struct target *t = &targets[c->target];
                if (err || write(c->fd, t->request, t->request_len) != t->request_len) {
                    finished = failed = 1;
                } else {
                    c->connected = 1;
                    if (started++ < slots) w->last_first_wave_send = now() - t0;
                    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)k };
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            } else {
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
            }
            if (!finished) continue;
            close(c->fd);
            if (failed) w->failed++; else w->ok++;
            done++;
            while (next < n_targets) {
                int i = next; next += n_threads;
                if (start(ep, c, k, i, w) == 0) break;
                done++;
            }
        }
    }
    free(bufs); free(cs); close(ep);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: floor_client TARGETS CONCURRENCY THREADS\n"); return 2; }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 2; }
    concurrency = atoi(argv[2]); n_threads = atoi(argv[3]);
    if (n_threads < 1 || n_threads > MAX_THREADS || concurrency < n_threads) {
        fprintf(stderr, "floor_client: need 1..%d threads and at least one slot each\n", MAX_THREADS);
        return 2;
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
        if (inet_pton(AF_INET, ip, &t->addr.sin_addr) != 1) continue;
        t->request_len = snprintf(t->request, sizeof t->request,
                                  "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n\r\n", path, host);
        n_targets++;
    }
    fclose(f);
    struct worker ws[MAX_THREADS] = { 0 };
    t0 = now();
    for (int i = 0; i < n_threads; i++) { ws[i].id = i; pthread_create(&ws[i].thread, NULL, run, &ws[i]); }
    long ok = 0, failed = 0;
    double last = 0;
    for (int i = 0; i < n_threads; i++) {
        pthread_join(ws[i].thread, NULL);
        ok += ws[i].ok; failed += ws[i].failed;
        if (ws[i].last_first_wave_send > last) last = ws[i].last_first_wave_send;
    }
    printf("floor_client: %ld ok, %ld failed in %.2f s; last wave-1 send at %.2f s\n",
           ok, failed, now() - t0, last);
    return failed ? 1 : 0;
}
