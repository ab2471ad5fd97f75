/*
 * Compiled fan-out load generator for the chatroom-server benchmarks: the
 * "throughput" and "rate" modes of loadgen.mjs (one room, N receivers, one
 * sender), with the same timing, bookkeeping and result line, at a fraction of
 * the CPU. benchmarks/run.py builds and runs it; "rooms" and "idle" stay in
 * loadgen.mjs.
 *
 *   cc -O2 -Wall -Wextra -o fanout fanout.c
 *   ./fanout --mode throughput --port 8765 --room 1 --receivers 1000 --window 50
 *   ./fanout --mode rate --port 8765 --room 1 --receivers 1000 --rate 20
 *
 * Flags (defaults): --mode throughput|rate, --host 127.0.0.1, --port (required),
 * --path /ws, --room 1, --receivers 1000, --window 50, --rate 20, --warmup 2,
 * --duration 10, --drain-timeout 10, --close-timeout 10, --connect-concurrency 200,
 * --tokens-file PATH (one token a line; connection i uses token i % count; "x"
 * without one).
 *
 * stdout: {"event":"measure_start"}, {"event":"measure_end"} and, last, ONE line
 * {"event":"result",...} with loadgen.mjs's field names. Progress goes to stderr.
 *
 * One thread, one epoll set (level-triggered), non-blocking sockets. Every read
 * lands in one shared 256 KiB buffer and takes one clock read for all its frames;
 * a connection keeps only the bytes of a frame cut by the end of a read. Nothing
 * is allocated per frame, and the only per-frame system calls are pong replies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ config */

static struct {
    int windowed; /* throughput mode: 1, rate mode: 0 */
    const char *mode;
    const char *host;
    const char *port;
    const char *path;
    long long room;
    int receivers;
    int window;
    double rate;
    double warmup;
    double duration;
    double drain_timeout;
    double close_timeout;
    int connect_concurrency;
    const char *tokens_file;
} cfg = {
    1, "throughput", "127.0.0.1", NULL, "/ws", 1, 1000, 50, 20.0, 2.0, 10.0, 10.0, 10.0, 200, NULL,
};

#define HANDSHAKE_TIMEOUT_NS (30LL * 1000000000LL) /* as ws's handshakeTimeout */

static char **tokens;
static size_t ntokens;

static void vlog(const char *prefix, const char *fmt, va_list ap)
{
    fprintf(stderr, "[fanout %s] %s", cfg.mode, prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void logmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("failed: ", fmt, ap);
    va_end(ap);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL && n > 0)
        die("out of memory (%zu bytes)", n);
    return q;
}

/* Rounding without libm (the build command links none). */
static long long round_ll(double x)
{
    return x >= 0 ? (long long)(x + 0.5) : -(long long)(-x + 0.5);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_seconds(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    return *user + *sys;
}

/* xorshift64*: mask keys and Sec-WebSocket-Key bytes (any key is valid). */
static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void rng_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rng_state = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    FILE *f = fopen("/dev/urandom", "rb");
    if (f != NULL) {
        uint64_t r;
        if (fread(&r, sizeof r, 1, f) == 1)
            rng_state ^= r;
        fclose(f);
    }
    if (rng_state == 0)
        rng_state = 0x9e3779b97f4a7c15ULL;
}

/* ------------------------------------------------------------------ small tallies */

/* "reason" -> count, and close code -> count: a handful of distinct keys at most. */
#define MAX_KEYS 64

struct tally {
    char keys[MAX_KEYS][48];
    long long counts[MAX_KEYS];
    int n;
    long long total;
};

static void tally_add(struct tally *t, const char *key)
{
    t->total++;
    for (int i = 0; i < t->n; i++) {
        if (strcmp(t->keys[i], key) == 0) {
            t->counts[i]++;
            return;
        }
    }
    int i = t->n < MAX_KEYS ? t->n++ : MAX_KEYS - 1; /* overflow: lumped into the last */
    snprintf(t->keys[i], sizeof t->keys[i], "%s", key);
    t->counts[i]++;
}

static struct tally recv_failures, sender_failures, unexpected_codes;

static const char *errno_name(int e)
{
    switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ECONNABORTED: return "ECONNABORTED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EADDRINUSE: return "EADDRINUSE";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EPIPE: return "EPIPE";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno %d", e);
        return buf;
    }
    }
}

/* ------------------------------------------------------------------ byte buffers */

struct buf {
    uint8_t *p;
    uint32_t len, off, cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
    size_t need = (size_t)b->len + extra;
    if (need <= b->cap)
        return;
    if (need > 0xffffffffu)
        die("buffer over 4 GiB");
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = (uint32_t)cap;
}

static void buf_append(struct buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += (uint32_t)n;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->off = b->cap = 0;
}

/* ------------------------------------------------------------------ connections */

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_CLOSED };

struct conn {
    int fd;
    uint8_t state;
    uint8_t sender;
    uint8_t opened;     /* counted in open_conns (and open_receivers) */
    uint8_t close_sent; /* our close frame is out (or queued) */
    uint8_t close_got;  /* the peer's close frame came */
    uint32_t events;    /* registered epoll events */
    int64_t hs_started;
    struct buf hs;   /* handshake response, until the upgrade */
    struct buf pend; /* a frame cut by the end of a read */
    struct buf out;  /* bytes not written yet */
};

static struct conn *conns; /* receivers 0..N-1, the sender at N */
static int nconns;
static int epfd;
static struct addrinfo *server_addr;
static char host_header[300];

static int open_conns;     /* upgraded and not closed */
static int open_receivers; /* counted receivers among them: expected per message */
static int open_fds;
static int hs_inflight;
static int hs_done; /* receivers whose connect finished, either way */
static int recv_connected;
static int closing_all; /* our closeAll: closes from now on are expected */

#define RBUF_SIZE (256 * 1024)
static uint8_t rbuf[RBUF_SIZE];

static void set_events(struct conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)(c - conns)};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->events = events;
}

static void conn_release(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
        open_fds--;
    }
    c->state = ST_CLOSED;
    buf_free(&c->hs);
    buf_free(&c->pend);
    buf_free(&c->out);
}

/* The connection is gone for the benchmark (ws's 'close' event): code as ws reports it. */
static void mark_closed(struct conn *c, int code)
{
    if (!c->opened)
        return;
    c->opened = 0;
    open_conns--;
    if (!c->sender)
        open_receivers--;
    if (!closing_all) {
        char key[16];
        snprintf(key, sizeof key, "%d", code);
        tally_add(&unexpected_codes, key);
    }
}

static void conn_lost(struct conn *c, int code)
{
    mark_closed(c, code);
    conn_release(c);
}

/* Writes what is queued; EPOLLOUT while something is left. 0, or -1 if the socket failed. */
static int conn_flush(struct conn *c)
{
    while (c->out.off < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out.off += (uint32_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, c->events | EPOLLOUT);
            return 0;
        }
        return -1;
    }
    c->out.off = c->out.len = 0;
    if (c->state != ST_CONNECTING && (c->events & EPOLLOUT))
        set_events(c, c->events & ~(uint32_t)EPOLLOUT);
    return 0;
}

/* Appends a masked client frame (FIN set) to c->out. */
static void queue_frame(struct conn *c, int opcode, const void *payload, size_t len)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t key = (uint32_t)(rng() >> 32);
    uint8_t mask[4];
    memcpy(mask, &key, 4);
    memcpy(hdr + h, mask, 4);
    h += 4;
    buf_reserve(&c->out, h + len);
    uint8_t *dst = c->out.p + c->out.len;
    memcpy(dst, hdr, h);
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        dst[h + i] = src[i] ^ mask[i & 3];
    c->out.len += (uint32_t)(h + len);
}

/* Sends our close frame (1000, or echoing the peer's code). */
static void send_close(struct conn *c, int code, const char *reason)
{
    if (c->close_sent)
        return;
    uint8_t payload[125];
    size_t n = 0;
    if (code > 0) {
        payload[n++] = (uint8_t)(code >> 8);
        payload[n++] = (uint8_t)code;
        size_t r = strlen(reason);
        if (r > sizeof payload - 2)
            r = sizeof payload - 2;
        memcpy(payload + n, reason, r);
        n += r;
    }
    queue_frame(c, 0x8, payload, n);
    c->close_sent = 1;
    if (conn_flush(c) < 0)
        conn_lost(c, 1006);
}

/* ------------------------------------------------------------------ message bookkeeping */

static int64_t *send_ns;        /* msgno -> clock at send */
static uint32_t *recv_count;    /* msgno -> frames received by counted receivers */
static uint32_t *expect_count;  /* msgno -> receivers open at send */
static int64_t msg_cap;
static int64_t next_msgno = 1;

static int64_t m0 = INT64_MAX, m1 = INT64_MAX; /* measured: [m0, m1) */
static int measuring, sending;
static long long window_frames, window_reads, pending_measured, error_frames;
static int inflight;
static struct conn *sender;

static void ensure_capacity(int64_t no)
{
    if (no < msg_cap)
        return;
    int64_t cap = msg_cap ? msg_cap : 1 << 16;
    while (cap <= no)
        cap *= 2;
    send_ns = xrealloc(send_ns, (size_t)cap * sizeof *send_ns);
    recv_count = xrealloc(recv_count, (size_t)cap * sizeof *recv_count);
    expect_count = xrealloc(expect_count, (size_t)cap * sizeof *expect_count);
    memset(send_ns + msg_cap, 0, (size_t)(cap - msg_cap) * sizeof *send_ns);
    memset(recv_count + msg_cap, 0, (size_t)(cap - msg_cap) * sizeof *recv_count);
    memset(expect_count + msg_cap, 0, (size_t)(cap - msg_cap) * sizeof *expect_count);
    msg_cap = cap;
}

/* Queues the next message on the sender (written by the caller's flush). */
static int send_message(int64_t now)
{
    if (sender == NULL || sender->state != ST_OPEN)
        return 0;
    int64_t no = next_msgno++;
    ensure_capacity(no);
    if (no >= m0 && no < m1) {
        expect_count[no] = (uint32_t)open_receivers;
        pending_measured += open_receivers;
    }
    send_ns[no] = now;
    char text[96];
    int n = snprintf(text, sizeof text, "{\"chatRoomId\":%lld,\"chatMessage\":\"bench %lld\"}",
                     cfg.room, (long long)no);
    queue_frame(sender, 0x1, text, (size_t)n);
    return 1;
}

static void flush_sender(void)
{
    if (sender != NULL && sender->fd >= 0 && sender->out.len > sender->out.off) {
        if (conn_flush(sender) < 0)
            conn_lost(sender, 1006);
    }
}

static void refill(void)
{
    if (!sending)
        return;
    int64_t now = now_ns();
    while (sending && inflight < cfg.window && send_message(now))
        inflight++;
}

/* ------------------------------------------------------------------ latency histogram */

#define BUCKET_NS 10000LL /* 10 µs */
#define NBUCKETS 1000000  /* up to 10 s; the last bucket holds everything above */
static uint32_t hist[NBUCKETS];
static long long lat_count;
static double lat_sum_ms, lat_max_ms;

static inline void record_latency(int64_t ns)
{
    int64_t b = ns / BUCKET_NS;
    if (b >= NBUCKETS)
        b = NBUCKETS - 1;
    else if (b < 0)
        b = 0;
    hist[b]++;
    double ms = (double)ns / 1e6;
    lat_count++;
    lat_sum_ms += ms;
    if (ms > lat_max_ms)
        lat_max_ms = ms;
}

/* Upper edge of the bucket holding the p-quantile, never above the exact maximum. */
static double percentile(double p)
{
    double want = p * (double)lat_count;
    long long target = (long long)want;
    if ((double)target < want)
        target++; /* ceil */
    if (target < 1)
        target = 1;
    long long cum = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        cum += hist[b];
        if (cum >= target) {
            double edge = (b + 1) * (BUCKET_NS / 1e6);
            return edge < lat_max_ms ? edge : lat_max_ms;
        }
    }
    return lat_max_ms;
}

/* ------------------------------------------------------------------ frame parsing */

static const char MARK[] = "\"chatMessage\":";
static const char BENCH[] = "\"bench ";
static const char ERROR_EVENT[] = "\"Event\":\"error\"";
#define MARK_LEN (sizeof MARK - 1)
#define BENCH_LEN (sizeof BENCH - 1)
#define ERROR_LEN (sizeof ERROR_EVENT - 1)
#define NOT_OURS (-1)
#define ERROR_FRAME (-2)

static size_t mark_hint;

/* The message number of a benchmark message frame, NOT_OURS or ERROR_FRAME. */
static int64_t parse_msgno(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    const uint8_t *at = NULL;
    /* Frames look alike: try where the marker was in the previous one first. */
    if (mark_hint + MARK_LEN < len && memcmp(p + mark_hint, MARK, MARK_LEN) == 0) {
        at = p + mark_hint;
    } else {
        at = memmem(p, len, MARK, MARK_LEN);
        if (at != NULL)
            mark_hint = (size_t)(at - p);
    }
    if (at != NULL) {
        const uint8_t *q = at + MARK_LEN;
        if (q < end && *q == ' ')
            q++; /* tolerate `"chatMessage": "bench 1"` */
        if (q + BENCH_LEN < end && memcmp(q, BENCH, BENCH_LEN) == 0) {
            q += BENCH_LEN;
            int64_t n = 0;
            int digits = 0;
            while (q < end && *q >= '0' && *q <= '9' && digits < 18) {
                n = n * 10 + (*q - '0');
                q++;
                digits++;
            }
            if (digits > 0)
                return n;
        }
    }
    return memmem(p, len, ERROR_EVENT, ERROR_LEN) != NULL ? ERROR_FRAME : NOT_OURS;
}

/* A counted receiver got a text frame at `now`. */
static inline void on_receiver_text(const uint8_t *p, size_t len, int64_t now)
{
    int64_t no = parse_msgno(p, len);
    if (no < 0) {
        if (no == ERROR_FRAME)
            error_frames++;
        return;
    }
    if (measuring)
        window_frames++;
    if (no >= m0 && no < m1 && no < next_msgno && no < msg_cap) {
        record_latency(now - send_ns[no]);
        recv_count[no]++;
        if (recv_count[no] <= expect_count[no])
            pending_measured--;
    }
}

/* The sender got a text frame: its own echo (or a refusal) frees a slot in the window. */
static inline void on_sender_text(const uint8_t *p, size_t len)
{
    int64_t no = parse_msgno(p, len);
    if (no == NOT_OURS)
        return;
    if (no == ERROR_FRAME)
        error_frames++;
    if (cfg.windowed) {
        inflight--;
        refill();
    }
}

/*
 * Header of the frame at p[0, avail): 1 and *hdr, *plen when complete, else 0 with
 * *hdr = the header bytes needed so far.
 */
static inline int frame_header(const uint8_t *p, size_t avail, size_t *hdr, uint64_t *plen)
{
    if (avail < 2) {
        *hdr = 2;
        return 0;
    }
    uint64_t len = p[1] & 0x7f;
    size_t h = 2 + ((p[1] & 0x80) ? 4 : 0);
    if (len == 126)
        h += 2;
    else if (len == 127)
        h += 8;
    *hdr = h;
    if (avail < h)
        return 0;
    if (len == 126) {
        len = ((uint64_t)p[2] << 8) | p[3];
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | p[2 + i];
    }
    *plen = len;
    return 1;
}

#define MAX_FRAME (64ULL << 20)

/* One complete frame; 0 to go on, -1 if the connection is gone. */
static int on_frame(struct conn *c, uint8_t *f, size_t hdr, size_t len, int64_t now)
{
    int opcode = f[0] & 0x0f;
    uint8_t *payload = f + hdr;
    if (f[1] & 0x80) { /* servers do not mask; unmask anyway */
        const uint8_t *mask = f + hdr - 4;
        for (size_t i = 0; i < len; i++)
            payload[i] ^= mask[i & 3];
    }
    switch (opcode) {
    case 0x1: /* text */
        if (c->sender)
            on_sender_text(payload, len);
        else
            on_receiver_text(payload, len, now);
        return 0;
    case 0x9: /* ping: pong with the same payload */
        if (!c->close_sent) {
            queue_frame(c, 0xA, payload, len);
            if (conn_flush(c) < 0) {
                conn_lost(c, 1006);
                return -1;
            }
        }
        return 0;
    case 0x8: { /* close */
        int code = len >= 2 ? (payload[0] << 8 | payload[1]) : 1005;
        c->close_got = 1;
        mark_closed(c, code);
        if (!c->close_sent) {
            send_close(c, len >= 2 ? code : 0, "");
            if (c->state == ST_CLOSED)
                return -1;
        }
        /* Both close frames are out: done (the server closes its side too). */
        conn_release(c);
        return -1;
    }
    default: /* binary, pong, continuation: nothing to count */
        return 0;
    }
}

/* The bytes of one read (or those after the upgrade response). 0, or -1 if gone. */
static int feed(struct conn *c, uint8_t *data, size_t n, int64_t now)
{
    size_t i = 0;
    size_t hdr;
    uint64_t plen = 0;
    /* First complete the frame the previous read cut, copying only its bytes. */
    while (c->pend.len > 0) {
        size_t need;
        int complete = frame_header(c->pend.p, c->pend.len, &hdr, &plen);
        if (complete) {
            if (plen > MAX_FRAME)
                goto too_big;
            need = hdr + (size_t)plen;
            if (c->pend.len == need) {
                c->pend.len = 0;
                if (on_frame(c, c->pend.p, hdr, (size_t)plen, now) < 0)
                    return -1;
                break;
            }
        } else {
            need = hdr;
        }
        size_t take = need - c->pend.len;
        if (take > n - i)
            take = n - i;
        if (take == 0)
            return 0;
        buf_append(&c->pend, data + i, take);
        i += take;
    }
    while (n - i >= 2) {
        if (!frame_header(data + i, n - i, &hdr, &plen))
            break;
        if (plen > MAX_FRAME)
            goto too_big;
        if (plen > n - i - hdr)
            break;
        if (on_frame(c, data + i, hdr, (size_t)plen, now) < 0)
            return -1;
        i += hdr + (size_t)plen;
    }
    if (i < n)
        buf_append(&c->pend, data + i, n - i);
    return 0;
too_big:
    logmsg("frame of %llu bytes from the server: dropping the connection",
           (unsigned long long)plen);
    conn_lost(c, 1009);
    return -1;
}

/* ------------------------------------------------------------------ connecting */

static void connect_failed(struct conn *c, const char *reason)
{
    tally_add(c->sender ? &sender_failures : &recv_failures, reason);
    conn_release(c);
    hs_inflight--;
    if (!c->sender)
        hs_done++;
}

static void connect_opened(struct conn *c)
{
    c->state = ST_OPEN;
    c->opened = 1;
    open_conns++;
    if (!c->sender) {
        open_receivers++;
        recv_connected++;
        hs_done++;
    }
    hs_inflight--;
}

static void url_encode(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == '!' || ch == '*' ||
            ch == '\'' || ch == '(' || ch == ')') {
            buf_append(b, &ch, 1);
        } else {
            char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            buf_append(b, esc, 3);
        }
    }
}

static void queue_request(struct conn *c, const char *token)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t raw[16];
    uint64_t r1 = rng(), r2 = rng();
    memcpy(raw, &r1, 8);
    memcpy(raw + 8, &r2, 8);
    char key[25];
    size_t k = 0;
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        key[k++] = b64[v >> 18];
        key[k++] = b64[(v >> 12) & 63];
        key[k++] = b64[(v >> 6) & 63];
        key[k++] = b64[v & 63];
    }
    uint32_t v = (uint32_t)raw[15] << 16;
    key[k++] = b64[v >> 18];
    key[k++] = b64[(v >> 12) & 63];
    key[k++] = '=';
    key[k++] = '=';
    key[k] = 0;

    char head[128];
    int n = snprintf(head, sizeof head, "GET %s%croom_id=%lld&jwt=", cfg.path,
                     strchr(cfg.path, '?') ? '&' : '?', cfg.room);
    buf_append(&c->out, head, (size_t)n);
    url_encode(&c->out, token);
    char rest[512];
    n = snprintf(rest, sizeof rest,
                 " HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 host_header, key);
    buf_append(&c->out, rest, (size_t)n);
}

static int token_index;

static void start_connect(struct conn *c)
{
    c->hs_started = now_ns();
    hs_inflight++;
    int fd = socket(server_addr->ai_family, server_addr->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    server_addr->ai_protocol);
    if (fd < 0) {
        c->fd = -1;
        connect_failed(c, errno_name(errno));
        return;
    }
    c->fd = fd;
    open_fds++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as ws does */
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)(c - conns)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl add: %s", strerror(errno));
    c->events = EPOLLOUT;
    c->state = ST_CONNECTING;
    queue_request(c, tokens[token_index++ % ntokens]);
    if (connect(fd, server_addr->ai_addr, server_addr->ai_addrlen) < 0 && errno != EINPROGRESS)
        connect_failed(c, errno_name(errno));
    /* The request goes out once EPOLLOUT says the connect is done. */
}

static void on_connecting(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        connect_failed(c, errno_name(err));
        return;
    }
    c->state = ST_HANDSHAKE;
    set_events(c, EPOLLIN);
    if (conn_flush(c) < 0)
        connect_failed(c, errno_name(errno));
}

/* Reads the upgrade response; the bytes after it are the first of the frame stream. */
static void on_handshake_readable(struct conn *c)
{
    enum { HS_MAX = 8192 };
    buf_reserve(&c->hs, HS_MAX - c->hs.len + 1);
    ssize_t n = read(c->fd, c->hs.p + c->hs.len, HS_MAX - c->hs.len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        connect_failed(c, errno_name(errno));
        return;
    }
    if (n == 0) {
        connect_failed(c, "ECONNRESET"); /* Node: "socket hang up" */
        return;
    }
    size_t before = c->hs.len;
    c->hs.len += (uint32_t)n;
    c->hs.p[c->hs.len] = 0;
    size_t from = before >= 3 ? before - 3 : 0;
    uint8_t *end = memmem(c->hs.p + from, c->hs.len - from, "\r\n\r\n", 4);
    if (end == NULL) {
        if (c->hs.len >= HS_MAX)
            connect_failed(c, "bad upgrade response");
        return;
    }
    int status = 0;
    if (sscanf((char *)c->hs.p, "HTTP/%*d.%*d %d", &status) != 1) {
        connect_failed(c, "bad upgrade response");
        return;
    }
    if (status != 101) {
        char reason[32];
        snprintf(reason, sizeof reason, "HTTP %d", status);
        connect_failed(c, reason);
        return;
    }
    size_t header = (size_t)(end - c->hs.p) + 4;
    size_t extra = c->hs.len - header;
    connect_opened(c);
    if (extra > 0) {
        /* Into the shared buffer: feed() may keep a part, hs is freed below. */
        memcpy(rbuf, c->hs.p + header, extra);
        buf_free(&c->hs);
        feed(c, rbuf, extra, now_ns());
    } else {
        buf_free(&c->hs);
    }
}

static void check_handshake_timeouts(int64_t now)
{
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if ((c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) &&
            now - c->hs_started > HANDSHAKE_TIMEOUT_NS)
            connect_failed(c, "Opening handshake has timed out");
    }
}

/* ------------------------------------------------------------------ the event loop */

static void on_readable(struct conn *c)
{
    ssize_t n = read(c->fd, rbuf, RBUF_SIZE);
    if (n > 0) {
        int64_t now = now_ns(); /* one clock read per read: its frames came together */
        if (measuring && !c->sender)
            window_reads++;
        if (feed(c, rbuf, (size_t)n, now) < 0)
            return;
        if (c->sender)
            flush_sender();
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    conn_lost(c, 1006); /* EOF or error without a close frame */
}

#define MAX_EVENTS 1024
static struct epoll_event events[MAX_EVENTS];

/* Rate mode: the next send is due at next_send_ns (every interval_ns, catching up). */
static double next_send_ns, interval_ns;

static void rate_ticks(void)
{
    if (!sending || cfg.windowed)
        return;
    int64_t now = now_ns();
    int sent = 0;
    while (sending && next_send_ns <= (double)now) {
        send_message(now);
        next_send_ns += interval_ns;
        sent = 1;
    }
    if (sent)
        flush_sender();
}

/* One epoll_wait (until `deadline` at the latest) and its events. */
static void loop_once(int64_t deadline)
{
    int64_t now = now_ns();
    int64_t wake = deadline;
    if (sending && !cfg.windowed && next_send_ns < (double)wake)
        wake = (int64_t)next_send_ns;
    int timeout = 0;
    if (wake > now) {
        int64_t ms = (wake - now + 999999) / 1000000;
        timeout = ms > 1000 ? 1000 : (int)ms;
    }
    int n = epoll_wait(epfd, events, MAX_EVENTS, timeout);
    if (n < 0) {
        if (errno == EINTR)
            return;
        die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        struct conn *c = &conns[events[i].data.u64];
        uint32_t ev = events[i].events;
        switch (c->state) {
        case ST_CONNECTING:
            on_connecting(c);
            break;
        case ST_HANDSHAKE:
            if ((ev & EPOLLOUT) && conn_flush(c) < 0) {
                connect_failed(c, errno_name(errno));
                break;
            }
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_handshake_readable(c);
            break;
        case ST_OPEN:
        case ST_CLOSING:
            if ((ev & EPOLLOUT) && conn_flush(c) < 0) {
                conn_lost(c, 1006);
                break;
            }
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
            break;
        default: /* closed earlier in this batch */
            break;
        }
    }
    rate_ticks();
}

static void run_until(int64_t deadline)
{
    while (now_ns() < deadline)
        loop_once(deadline);
}

/* ------------------------------------------------------------------ JSON output */

static char out_line[1 << 16];
static size_t out_len;

static void jraw(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out_line + out_len, sizeof out_line - out_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        out_len += (size_t)n < sizeof out_line - out_len ? (size_t)n : sizeof out_line - out_len - 1;
}

/* Rounded to 3 decimals, printed like JavaScript would (no trailing zeros). */
static void jnum(const char *key, double x)
{
    long long v = round_ll(x * 1000);
    const char *sign = v < 0 ? "-" : "";
    if (v < 0)
        v = -v;
    char frac[8];
    snprintf(frac, sizeof frac, ".%03lld", v % 1000);
    for (int i = 3; i > 0 && frac[i] == '0'; i--)
        frac[i] = 0;
    if (frac[1] == 0)
        frac[0] = 0;
    jraw("\"%s\":%s%lld%s,", key, sign, v / 1000, frac);
}

static void jint(const char *key, long long v) { jraw("\"%s\":%lld,", key, v); }

static void jtally(const char *key, const struct tally *t)
{
    jraw("\"%s\":{", key);
    for (int i = 0; i < t->n; i++)
        jraw("%s\"%s\":%lld", i ? "," : "", t->keys[i], t->counts[i]); /* keys: our own text */
    jraw("},");
}

static void emit(const char *line)
{
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr,
            "usage: fanout --mode throughput|rate --port P [--host H] [--path /ws] [--room ID]\n"
            "              [--receivers N] [--window W] [--rate R] [--warmup S] [--duration S]\n"
            "              [--drain-timeout S] [--close-timeout S] [--connect-concurrency C]\n"
            "              [--tokens-file PATH]\n");
    exit(2);
}

static double num_arg(const char *name, const char *s, double min)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == 0 || *end != 0 || !(v >= min))
        die("bad value for --%s: %s", name, s);
    return v;
}

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"mode", required_argument, 0, 'm'},
        {"host", required_argument, 0, 'h'},
        {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'P'},
        {"room", required_argument, 0, 'r'},
        {"receivers", required_argument, 0, 'n'},
        {"window", required_argument, 0, 'w'},
        {"rate", required_argument, 0, 'R'},
        {"warmup", required_argument, 0, 'W'},
        {"duration", required_argument, 0, 'd'},
        {"drain-timeout", required_argument, 0, 'D'},
        {"close-timeout", required_argument, 0, 'C'},
        {"connect-concurrency", required_argument, 0, 'c'},
        {"tokens-file", required_argument, 0, 't'},
        {"help", no_argument, 0, '?'},
        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': cfg.mode = optarg; break;
        case 'h': cfg.host = optarg; break;
        case 'p': cfg.port = optarg; break;
        case 'P': cfg.path = optarg; break;
        case 'r': cfg.room = (long long)num_arg("room", optarg, 0); break;
        case 'n': cfg.receivers = (int)num_arg("receivers", optarg, 0); break;
        case 'w': cfg.window = (int)num_arg("window", optarg, 1); break;
        case 'R': cfg.rate = num_arg("rate", optarg, 1e-3); break;
        case 'W': cfg.warmup = num_arg("warmup", optarg, 0); break;
        case 'd': cfg.duration = num_arg("duration", optarg, 1e-3); break;
        case 'D': cfg.drain_timeout = num_arg("drain-timeout", optarg, 0); break;
        case 'C': cfg.close_timeout = num_arg("close-timeout", optarg, 0); break;
        case 'c': cfg.connect_concurrency = (int)num_arg("connect-concurrency", optarg, 1); break;
        case 't': cfg.tokens_file = optarg; break;
        default: usage();
        }
    }
    if (optind != argc || cfg.port == NULL)
        usage();
    if (strcmp(cfg.mode, "throughput") == 0)
        cfg.windowed = 1;
    else if (strcmp(cfg.mode, "rate") == 0)
        cfg.windowed = 0;
    else
        die("unknown mode %s (throughput or rate; rooms and idle are loadgen.mjs's)", cfg.mode);
}

static void read_tokens(void)
{
    if (cfg.tokens_file != NULL) {
        FILE *f = fopen(cfg.tokens_file, "r");
        if (f == NULL)
            die("cannot open %s: %s", cfg.tokens_file, strerror(errno));
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) >= 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = 0;
            if (n == 0)
                continue;
            tokens = xrealloc(tokens, (ntokens + 1) * sizeof *tokens);
            tokens[ntokens++] = strdup(line);
        }
        free(line);
        fclose(f);
    }
    if (ntokens == 0) {
        tokens = xrealloc(tokens, sizeof *tokens);
        tokens[ntokens++] = "x";
    }
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Opens conns[from, to) keeping at most connect_concurrency handshakes in flight. */
static void open_range(int from, int to)
{
    int next = from;
    int64_t last_check = now_ns();
    int logged = 0;
    for (;;) {
        while (next < to && hs_inflight < cfg.connect_concurrency)
            start_connect(&conns[next++]);
        if (next >= to && hs_inflight == 0)
            break;
        loop_once(now_ns() + 100000000LL);
        int64_t now = now_ns();
        if (now - last_check > 1000000000LL) {
            check_handshake_timeouts(now);
            last_check = now;
        }
        if (hs_done / 1000 > logged) {
            logged = hs_done / 1000;
            logmsg("%d/%d connections", hs_done, cfg.receivers);
        }
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    rng_seed();
    read_tokens();

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int gai = getaddrinfo(cfg.host, cfg.port, &hints, &server_addr);
    if (gai != 0)
        die("cannot resolve %s:%s: %s", cfg.host, cfg.port, gai_strerror(gai));
    snprintf(host_header, sizeof host_header, "%s:%s", cfg.host, cfg.port);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    nconns = cfg.receivers + 1;
    conns = calloc((size_t)nconns, sizeof *conns);
    if (conns == NULL)
        die("out of memory");
    for (int i = 0; i < nconns; i++)
        conns[i].fd = -1;
    conns[cfg.receivers].sender = 1;
    ensure_capacity(1);

    /* Receivers first, then the sender (as loadgen.mjs's oneRoom). */
    logmsg("opening %d receivers", cfg.receivers);
    int64_t c0 = now_ns();
    open_range(0, cfg.receivers);
    double connect_s = (double)(now_ns() - c0) / 1e9;
    open_range(cfg.receivers, nconns);
    if (conns[cfg.receivers].state != ST_OPEN) {
        char reasons[512] = "";
        size_t k = 0;
        for (int i = 0; i < sender_failures.n && k < sizeof reasons - 64; i++)
            k += (size_t)snprintf(reasons + k, sizeof reasons - k, "%s%s", i ? ", " : "",
                                  sender_failures.keys[i]);
        die("sender could not connect: %s", sender_failures.n ? reasons : "closed at once");
    }
    sender = &conns[cfg.receivers];

    /* measure(): start sending, warm up, then the window. */
    int64_t t = now_ns();
    sending = 1;
    if (cfg.windowed) {
        refill();
        flush_sender();
    } else {
        interval_ns = 1e9 / cfg.rate;
        next_send_ns = (double)t;
        rate_ticks();
    }
    logmsg("warm-up %gs", cfg.warmup);
    run_until(t + (int64_t)(cfg.warmup * 1e9));

    m0 = next_msgno;
    double u0, s0, u1, s1;
    cpu_seconds(&u0, &s0);
    int64_t t0 = now_ns();
    measuring = 1;
    emit("{\"event\":\"measure_start\"}");
    logmsg("measuring %gs", cfg.duration);
    run_until(t0 + (int64_t)(cfg.duration * 1e9));
    /* Window closes: stop sending; what was sent in it is still awaited below. */
    sending = 0;
    measuring = 0;
    m1 = next_msgno;
    int64_t t1 = now_ns();
    cpu_seconds(&u1, &s1);
    emit("{\"event\":\"measure_end\"}");
    double window_s = (double)(t1 - t0) / 1e9;

    /* Drain: every counted receiver should get every measured message. */
    int64_t d0 = now_ns();
    if (pending_measured > 0) {
        logmsg("draining (%lld frames outstanding)", pending_measured);
        int64_t deadline = d0 + (int64_t)(cfg.drain_timeout * 1e9);
        while (pending_measured > 0 && now_ns() < deadline)
            loop_once(deadline);
    }
    int drain_complete = pending_measured <= 0;
    double drain_s = (double)(now_ns() - d0) / 1e9;

    long long expected = 0, received = 0, lost = 0, duplicates = 0;
    for (int64_t no = m0; no < m1; no++) {
        long long e = expect_count[no], r = recv_count[no];
        expected += e;
        received += r < e ? r : e;
        if (r < e)
            lost += e - r;
        else
            duplicates += r - e;
    }
    double p50 = lat_count ? percentile(0.5) : 0, p99 = lat_count ? percentile(0.99) : 0;

    /* closeAll: close frames out, wait for the replies (or EOF), then just close. */
    closing_all = 1;
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state == ST_OPEN) {
            c->state = ST_CLOSING;
            send_close(c, 1000, "bench done");
        }
    }
    int64_t close_deadline = now_ns() + (int64_t)(cfg.close_timeout * 1e9);
    while (open_fds > 0 && now_ns() < close_deadline)
        loop_once(close_deadline);
    if (open_fds > 0)
        logmsg("%d connections still open after %gs: closing them", open_fds, cfg.close_timeout);
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0)
            conn_release(&conns[i]);

    long long measured = m1 - m0;
    out_len = 0;
    jraw("{\"event\":\"result\",\"loadgen\":\"c\",\"mode\":\"%s\",", cfg.mode);
    jint("receivers", cfg.receivers);
    if (cfg.windowed)
        jint("window", cfg.window);
    else
        jnum("rate", cfg.rate);
    jint("connections_wanted", cfg.receivers);
    jint("connected", recv_connected);
    jint("connect_failures", recv_failures.total);
    jtally("connect_failure_reasons", &recv_failures);
    jnum("connect_s", connect_s);
    jint("connects_per_s", connect_s > 0 ? round_ll(recv_connected / connect_s) : 0);
    jnum("window_s", window_s);
    jint("delivered_frames", window_frames);
    jint("delivered_frames_per_s", round_ll(window_frames / window_s));
    jint("sent_msgs", measured);
    jnum("sent_msgs_per_s", measured / window_s);
    jint("expected_frames", expected);
    jint("received_measured_frames", received);
    jint("lost_frames", lost);
    jint("duplicate_frames", duplicates);
    jnum("drain_s", drain_s);
    jraw("\"drain_complete\":%s,", drain_complete ? "true" : "false");
    jraw("\"latency_ms\":{");
    if (lat_count) {
        jnum("p50", p50);
        jnum("p99", p99);
        jnum("max", lat_max_ms);
        jnum("mean", lat_sum_ms / lat_count);
    } else {
        jraw("\"p50\":null,\"p99\":null,\"max\":null,\"mean\":null,");
    }
    jraw("\"count\":%lld},", lat_count);
    jnum("loadgen_cpu", ((u1 + s1) - (u0 + s0)) / window_s);
    jnum("loadgen_cpu_user", (u1 - u0) / window_s);
    jnum("loadgen_cpu_system", (s1 - s0) / window_s);
    jint("receiver_reads_per_s", round_ll(window_reads / window_s));
    jint("error_frames", error_frames);
    jraw("\"closed_unexpectedly\":{\"count\":%lld,", unexpected_codes.total);
    jtally("codes", &unexpected_codes);
    out_len--; /* the last comma */
    jraw("}}");
    emit(out_line);
    freeaddrinfo(server_addr);
    return 0;
}
