/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The redis store's connection to one Redis: see store_redis_link.h.
 *
 * Events. A persistent read event for the link's life; a write event only
 * while connecting or while the socket (or TLS) cannot take everything;
 * otherwise a command is written from a deferred callback in the same loop
 * pass ("kick"), so that all the commands of a pass go in one write and no
 * epoll_ctl is paid per round trip (as the adapter this replaces did).
 *
 * TLS is OpenSSL on our own non-blocking socket rather than libevent's
 * bufferevent_openssl: the link already has its read and write paths and
 * its buffers, and a bufferevent would add a second layer of buffers and
 * callbacks between the socket and the reply reader for no gain. Only
 * io_read and io_write know whether the bytes are encrypted. An SSL call
 * that wants the other direction (SSL_read wanting to write during a key
 * update, SSL_write wanting to read) is retried when that direction is
 * ready; SSL_write is retried with the same bytes, as OpenSSL asks
 * (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets the buffer move meanwhile).
 */
#include "store_redis_link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sluice/log.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"

#define READ_CHUNK (16u << 10)

enum link_state { LINK_CONNECTING, LINK_HANDSHAKE, LINK_UP, LINK_DEAD };

struct waiter {
    sl_redis_reply_cb *cb;
    void *privdata;
};

struct sl_redis_link {
    struct event_base *base;
    evutil_socket_t fd;
    SSL *ssl;                  /* NULL: plaintext */
    enum link_state state;
    struct event rev, wev, kick;
    bool is_wev_added;
    bool is_read_wants_write;  /* TLS: SSL_read asked for writability */
    bool is_write_wants_read;  /* TLS: SSL_write asked for readability */
    redisReader *reader;
    struct sl_buf out;         /* commands not written yet, from out_off on */
    size_t out_off;
    struct waiter *fifo;       /* a ring: replies owed, oldest first; as long as the
                                * owner lets it be (the store: INFLIGHT_MAX calls,
                                * ORPHANS_MAX late ones, the handshake) */
    size_t fifo_head, fifo_len, fifo_cap;
    sl_redis_down_cb *down;
    void *arg;
    sl_redis_reply_cb *push;   /* subscriber mode: replies no command is owed */
    void *push_arg;
    unsigned depth;            /* our callbacks on the stack */
    bool is_freed;             /* sl_redis_link_free ran: destroy when depth is 0 */
};

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);
static void on_kick(evutil_socket_t fd, short what, void *arg);

/* ---- the reply FIFO -------------------------------------------------------------- */

static void
fifo_push(struct sl_redis_link *l, sl_redis_reply_cb *cb, void *privdata)
{
    if (l->fifo_len == l->fifo_cap) {
        size_t cap = l->fifo_cap == 0 ? 16 : l->fifo_cap * 2;
        struct waiter *w = sl_xmalloc(cap * sizeof(*w));

        /* unroll the ring into the new array, oldest first */
        for (size_t i = 0; i < l->fifo_len; i++)
            w[i] = l->fifo[(l->fifo_head + i) % l->fifo_cap];
        free(l->fifo);
        l->fifo = w;
        l->fifo_cap = cap;
        l->fifo_head = 0;
    }
    l->fifo[(l->fifo_head + l->fifo_len) % l->fifo_cap] = (struct waiter){ cb, privdata };
    l->fifo_len++;
}

static struct waiter
fifo_pop(struct sl_redis_link *l)
{
    struct waiter w = l->fifo[l->fifo_head];

    l->fifo_head = (l->fifo_head + 1) % l->fifo_cap;
    l->fifo_len--;
    return w;
}

void
sl_redis_link_on_push(struct sl_redis_link *link, sl_redis_reply_cb *cb, void *privdata)
{
    link->push = cb;
    link->push_arg = privdata;
}

size_t
sl_redis_link_pending(const struct sl_redis_link *link)
{
    return link->fifo_len;
}

/* ---- lifetime -------------------------------------------------------------------- */

enum io_result { IO_OK, IO_AGAIN, IO_CLOSED, IO_ERROR };
static enum io_result io_write(struct sl_redis_link *l, size_t *n, char *why, size_t why_size);

static void
destroy(struct sl_redis_link *l)
{
    char why[320];

    /* Best effort, never waiting: what was queued before the free goes out
     * if the socket takes it now. A store freed with its generation at a
     * reload would otherwise drop commands sent without waiting for their
     * reply (an idempotency record's completion). */
    while (l->state == LINK_UP && !l->is_write_wants_read && l->out_off < l->out.len) {
        size_t n = 0;
        if (io_write(l, &n, why, sizeof(why)) != IO_OK || n == 0)
            break;
        l->out_off += n;
    }
    event_del(&l->rev);
    event_del(&l->wev);
    event_del(&l->kick);
    if (l->ssl != NULL)
        SSL_free(l->ssl);
    if (l->fd >= 0)
        close(l->fd);
    l->state = LINK_DEAD;
    /* every callback exactly once: those still owed get NULL; they may
     * free other things, never this link again (is_freed is set) */
    l->depth++;
    while (l->fifo_len > 0) {
        struct waiter w = fifo_pop(l);
        w.cb(l, NULL, w.privdata);
    }
    redisReaderFree(l->reader);
    sl_buf_fini(&l->out);
    free(l->fifo);
    free(l);
}

void
sl_redis_link_free(struct sl_redis_link *link)
{
    if (link == NULL || link->is_freed)
        return;
    link->is_freed = true;
    if (link->depth == 0)
        destroy(link);
}

/* Leaves one of our callbacks: true when the link is gone. */
static bool
leave(struct sl_redis_link *l)
{
    if (--l->depth == 0 && l->is_freed) {
        destroy(l);
        return true;
    }
    return false;
}

/* The one way down: the link stops, and its owner hears why (once). */
static void
fail(struct sl_redis_link *l, const char *why)
{
    if (l->state == LINK_DEAD)
        return;
    l->state = LINK_DEAD;
    event_del(&l->rev);
    event_del(&l->wev);
    event_del(&l->kick);
    l->is_wev_added = false;
    if (!l->is_freed)
        l->down(l, l->arg, why);
}

/* ---- TLS errors ------------------------------------------------------------------ */

/* The reason an SSL call failed, for an operator: the certificate check's
 * own words when that was it, else OpenSSL's first queued error. */
static void
tls_reason(struct sl_redis_link *l, int rc, const char *what, char *out, size_t size)
{
    int err = SSL_get_error(l->ssl, rc);
    long verify = SSL_get_verify_result(l->ssl);
    unsigned long e = ERR_peek_error();
    char buf[256];

    if ((SSL_get_verify_mode(l->ssl) & SSL_VERIFY_PEER) && verify != X509_V_OK) {
        snprintf(out, size, "TLS %s: certificate verify failed: %s", what,
                 X509_verify_cert_error_string(verify));
    } else if (err == SSL_ERROR_SSL && e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(out, size, "TLS %s: %s", what, buf);
    } else if (err == SSL_ERROR_SYSCALL && errno != 0) {
        snprintf(out, size, "TLS %s: %s", what, strerror(errno));
    } else {
        snprintf(out, size, "TLS %s: connection closed by the server", what);
    }
    ERR_clear_error();
}

/* ---- raw I/O: the only place plaintext and TLS differ ---------------------------- */

/* Reads into buf: IO_OK with *n > 0, IO_AGAIN, IO_CLOSED, or IO_ERROR with
 * the reason in why. */
static enum io_result
io_read(struct sl_redis_link *l, char *buf, size_t size, size_t *n, char *why, size_t why_size)
{
    if (l->ssl == NULL) {
        ssize_t got = read(l->fd, buf, size);

        if (got > 0) {
            *n = (size_t)got;
            return IO_OK;
        }
        if (got == 0)
            return IO_CLOSED;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return IO_AGAIN;
        snprintf(why, why_size, "read: %s", strerror(errno));
        return IO_ERROR;
    }
    ERR_clear_error();
    int rc = SSL_read(l->ssl, buf, (int)size);
    if (rc > 0) {
        *n = (size_t)rc;
        return IO_OK;
    }
    switch (SSL_get_error(l->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return IO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        l->is_read_wants_write = true;
        return IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return IO_CLOSED;
    default:
        tls_reason(l, rc, "read", why, why_size);
        return IO_ERROR;
    }
}

/* Writes from the output buffer: IO_OK with *n written, IO_AGAIN, IO_ERROR. */
static enum io_result
io_write(struct sl_redis_link *l, size_t *n, char *why, size_t why_size)
{
    const char *p = l->out.data + l->out_off;
    size_t len = l->out.len - l->out_off;

    if (l->ssl == NULL) {
        ssize_t put = send(l->fd, p, len, MSG_NOSIGNAL);

        if (put >= 0) {
            *n = (size_t)put;
            return IO_OK;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return IO_AGAIN;
        snprintf(why, why_size, "write: %s", strerror(errno));
        return IO_ERROR;
    }
    ERR_clear_error();
    int rc = SSL_write(l->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
    if (rc > 0) {
        *n = (size_t)rc;
        return IO_OK;
    }
    switch (SSL_get_error(l->ssl, rc)) {
    case SSL_ERROR_WANT_WRITE:
        return IO_AGAIN;
    case SSL_ERROR_WANT_READ:
        l->is_write_wants_read = true;
        *n = 0;
        return IO_OK;
    default:
        tls_reason(l, rc, "write", why, why_size);
        return IO_ERROR;
    }
}

/* ---- writing --------------------------------------------------------------------- */

static void
want_write(struct sl_redis_link *l, bool is_on)
{
    if (is_on && !l->is_wev_added) {
        event_add(&l->wev, NULL);
        l->is_wev_added = true;
    } else if (!is_on && l->is_wev_added) {
        event_del(&l->wev);
        l->is_wev_added = false;
    }
}

/* Writes what is buffered, as far as the socket takes it. */
static void
do_write(struct sl_redis_link *l)
{
    char why[320];

    l->is_write_wants_read = false;
    while (l->state == LINK_UP && l->out_off < l->out.len) {
        size_t n = 0;
        enum io_result r = io_write(l, &n, why, sizeof(why));

        if (r == IO_ERROR) {
            fail(l, why);
            return;
        }
        if (r == IO_AGAIN || l->is_write_wants_read) {
            want_write(l, r == IO_AGAIN);
            return;
        }
        l->out_off += n;
    }
    if (l->state != LINK_UP)
        return;
    sl_buf_truncate(&l->out, 0);
    l->out_off = 0;
    want_write(l, false);
}

/* Drops what was written from the front of the buffer before it grows,
 * when that is at least half of it (so each byte moves at most once). */
static void
compact(struct sl_redis_link *l)
{
    if (l->out_off > 0 && l->out_off >= l->out.len / 2) {
        memmove(l->out.data, l->out.data + l->out_off, l->out.len - l->out_off);
        sl_buf_truncate(&l->out, l->out.len - l->out_off);
        l->out_off = 0;
    }
}

static void
schedule_write(struct sl_redis_link *l)
{
    /* before UP, the handshake's end writes everything */
    if (l->state == LINK_UP && !l->is_wev_added && !l->is_write_wants_read)
        event_active(&l->kick, EV_WRITE, 0);
}

int
sl_redis_link_send(struct sl_redis_link *link, const char *cmd, size_t len,
                   sl_redis_reply_cb *cb, void *privdata)
{
    if (link->state == LINK_DEAD || link->is_freed)
        return -1;
    compact(link);
    if (sl_buf_append(&link->out, cmd, len) == -1)
        return -1;
    fifo_push(link, cb, privdata);
    schedule_write(link);
    return 0;
}

/* "<type><n>\r\n" */
static int
resp_head(struct sl_buf *b, char type, size_t n)
{
    char head[32];
    int len = snprintf(head, sizeof(head), "%c%zu\r\n", type, n);

    return sl_buf_append(b, head, (size_t)len);
}

int
sl_redis_link_send_argv(struct sl_redis_link *link, int argc, const char **argv,
                        const size_t *lens, sl_redis_reply_cb *cb, void *privdata)
{
    size_t before;
    int rc;

    if (link->state == LINK_DEAD || link->is_freed)
        return -1;
    compact(link);
    before = link->out.len;
    rc = resp_head(&link->out, '*', (size_t)argc);
    for (int i = 0; i < argc && rc == 0; i++) {
        rc = resp_head(&link->out, '$', lens[i]);
        if (rc == 0)
            rc = sl_buf_append(&link->out, argv[i], lens[i]);
        if (rc == 0)
            rc = sl_buf_append(&link->out, "\r\n", 2);
    }
    if (rc == -1) {
        sl_buf_truncate(&link->out, before);
        return -1;
    }
    fifo_push(link, cb, privdata);
    schedule_write(link);
    return 0;
}

/* ---- reading --------------------------------------------------------------------- */

/* Hands out every whole reply the reader holds; false when the link went
 * down or was freed meanwhile (the caller must stop). */
static bool
dispatch(struct sl_redis_link *l)
{
    void *reply;

    for (;;) {
        if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
            char why[160];

            snprintf(why, sizeof(why), "protocol error: %s", l->reader->errstr);
            fail(l, why);
            return false;
        }
        if (reply == NULL)
            return true;
        if (l->fifo_len == 0 && l->push != NULL) {
            l->push(l, reply, l->push_arg);
            l->reader->fn->freeObject(reply);
            if (l->is_freed || l->state == LINK_DEAD)
                return false;
            continue;
        }
        if (l->fifo_len == 0) {
            l->reader->fn->freeObject(reply);
            fail(l, "protocol error: a reply no command asked for");
            return false;
        }
        struct waiter w = fifo_pop(l);
        w.cb(l, reply, w.privdata);
        l->reader->fn->freeObject(reply);
        if (l->is_freed || l->state == LINK_DEAD)
            return false;
    }
}

static void
do_read(struct sl_redis_link *l)
{
    char buf[READ_CHUNK], why[320];

    l->is_read_wants_write = false;
    for (;;) {
        size_t n = 0;
        enum io_result r = io_read(l, buf, sizeof(buf), &n, why, sizeof(why));

        if (r == IO_AGAIN) {
            if (l->is_read_wants_write)
                want_write(l, true);
            return;
        }
        if (r != IO_OK) {
            fail(l, r == IO_CLOSED ? "connection closed by the server" : why);
            return;
        }
        if (redisReaderFeed(l->reader, buf, n) != REDIS_OK) {
            fail(l, "out of memory reading a reply");
            return;
        }
        if (!dispatch(l))
            return;
        /* plaintext: a short read emptied the socket; TLS may hold
         * decrypted bytes the socket no longer shows, so read on */
        if (l->ssl == NULL && n < sizeof(buf))
            return;
    }
}

/* ---- connecting and the TLS handshake --------------------------------------------- */

static void
become_up(struct sl_redis_link *l)
{
    l->state = LINK_UP;
    want_write(l, false);
    do_write(l);
}

static void
do_handshake(struct sl_redis_link *l)
{
    char why[320];
    int rc;

    ERR_clear_error();
    rc = SSL_connect(l->ssl);
    if (rc == 1) {
        become_up(l);
        return;
    }
    switch (SSL_get_error(l->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        want_write(l, false);
        return;
    case SSL_ERROR_WANT_WRITE:
        want_write(l, true);
        return;
    default:
        tls_reason(l, rc, "handshake", why, sizeof(why));
        fail(l, why);
    }
}

/* The TCP or unix connection is made: start TLS, or be ready. */
static void
connected(struct sl_redis_link *l)
{
    event_add(&l->rev, NULL);
    if (l->ssl == NULL) {
        become_up(l);
        return;
    }
    l->state = LINK_HANDSHAKE;
    do_handshake(l);
}

static void
on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct sl_redis_link *l = arg;
    int err = 0;
    socklen_t len = sizeof(err);
    char why[160];

    (void)what;
    l->depth++;
    if (l->state == LINK_CONNECTING) {
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err != 0) {
            snprintf(why, sizeof(why), "connect: %s", strerror(err));
            fail(l, why);
        } else {
            connected(l);
        }
    } else if (l->state == LINK_HANDSHAKE) {
        do_handshake(l);
    } else if (l->state == LINK_UP) {
        do_write(l);
        if (l->is_read_wants_write && l->state == LINK_UP)
            do_read(l);
    }
    leave(l);
}

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct sl_redis_link *l = arg;
    /* the replies' callbacks finish many requests: one clock read for all */
    uint64_t saved = sl_clock_enter();

    (void)fd;
    (void)what;
    l->depth++;
    if (l->state == LINK_HANDSHAKE) {
        do_handshake(l);
    } else if (l->state == LINK_UP) {
        do_read(l);
        if (l->is_write_wants_read && l->state == LINK_UP && !l->is_freed)
            do_write(l);
    }
    leave(l);
    sl_clock_leave(saved);
}

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct sl_redis_link *l = arg;

    (void)fd;
    (void)what;
    l->depth++;
    do_write(l);
    leave(l);
}

/* A non-blocking socket connecting to the first address that takes the
 * attempt; -1 with the reason in err. Name resolution blocks, as hiredis's
 * did: store urls name an address or a host the resolver answers at once. */
static evutil_socket_t
open_tcp(const char *host, int port, char *err, size_t err_size)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
    char service[8];
    int rc, saved = 0;
    evutil_socket_t fd = -1;

    snprintf(service, sizeof(service), "%d", port);
    if ((rc = getaddrinfo(host, service, &hints, &res)) != 0) {
        snprintf(err, err_size, "resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int one = 1;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, err_size, "connect: %s", strerror(saved));
    return fd;
}

static evutil_socket_t
open_unix(const char *path, char *err, size_t err_size)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    evutil_socket_t fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, err_size, "connect: socket path too long");
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_size, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 || errno == EINPROGRESS)
        return fd;
    snprintf(err, err_size, "connect: %s", strerror(errno));
    close(fd);
    return -1;
}

/* The TLS session of a new link: SNI for names (RFC 6066 section 3 allows
 * no address there), and the name or address the certificate must carry. */
static int
tls_setup(struct sl_redis_link *l, const struct sl_redis_target *t, char *err, size_t err_size)
{
    const char *name = t->server_name != NULL ? t->server_name : t->host;
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    int ok = 1;

    ERR_clear_error();
    l->ssl = SSL_new(t->ssl_ctx);
    if (l->ssl == NULL || SSL_set_fd(l->ssl, l->fd) != 1) {
        snprintf(err, err_size, "TLS: cannot create a session");
        return -1;
    }
    SSL_set_mode(l->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!is_ip)
        ok = SSL_set_tlsext_host_name(l->ssl, name);
    if (ok == 1 && t->is_verify) {
        ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), name)
                   : SSL_set1_host(l->ssl, name);
    }
    if (ok != 1) {
        snprintf(err, err_size, "TLS: bad server name \"%.64s\"", name);
        return -1;
    }
    return 0;
}

struct sl_redis_link *
sl_redis_link_new(struct event_base *base, const struct sl_redis_target *t,
                  redisReplyObjectFunctions *fn, void *fn_privdata, size_t out_max,
                  sl_redis_down_cb *down, void *arg, char *err, size_t err_size)
{
    struct sl_redis_link *l;
    evutil_socket_t fd = t->path != NULL ? open_unix(t->path, err, err_size)
                                         : open_tcp(t->host, t->port, err, err_size);

    if (fd < 0)
        return NULL;
    l = sl_xcalloc(1, sizeof(*l));
    l->base = base;
    l->fd = fd;
    l->down = down;
    l->arg = arg;
    sl_buf_init(&l->out, out_max);
    l->reader = fn != NULL ? redisReaderCreateWithFunctions(fn) : redisReaderCreate();
    if (l->reader == NULL)
        sl_fatalx("redis: out of memory");
    l->reader->privdata = fn_privdata;
    event_assign(&l->rev, base, fd, EV_READ | EV_PERSIST, on_readable, l);
    event_assign(&l->wev, base, fd, EV_WRITE | EV_PERSIST, on_writable, l);
    event_assign(&l->kick, base, -1, 0, on_kick, l);
    if (t->ssl_ctx != NULL && tls_setup(l, t, err, err_size) == -1) {
        l->is_freed = true;
        destroy(l);
        return NULL;
    }
    l->state = LINK_CONNECTING;
    want_write(l, true);
    return l;
}
