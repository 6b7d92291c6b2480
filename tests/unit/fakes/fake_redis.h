/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Test helper: a tiny Redis on a unix socket in a temporary directory, on
 * the test's own event_base, speaking RESP2 for the commands store_redis
 * sends (AUTH, SELECT, SCRIPT LOAD/FLUSH, EVALSHA, DEL, PING). EVALSHA runs the
 * real lua/token_bucket.lua through tb_lua.h. Knobs make it forget the
 * script (NOSCRIPT), hang (timeouts), answer errors, drop connections or
 * stop listening, so store_redis' failure paths run without a network.
 * Header-only, like tb_lua.h.
 */
#ifndef SL_TEST_FAKE_REDIS_H
#define SL_TEST_FAKE_REDIS_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "fakes/tb_lua.h"

#define FAKE_SHA "0123456789abcdef0123456789abcdef01234567"
#define FAKE_MAX_ARGS 4096

struct fake_redis;

struct fake_conn {
    struct fake_redis *fr;
    struct bufferevent *bev;
    struct fake_conn *next;
    struct evbuffer *held;    /* replies kept back while the fake is holding */
    bool is_authed;
    long db;
};

struct fake_redis {
    struct event_base *base;
    char dir[64];
    char path[100];
    struct evconnlistener *listener;
    struct fake_conn *conns;
    struct tb_lua lua;
    uint64_t now_us;          /* TIME seen by the script */

    /* knobs */
    bool has_script;          /* false: EVALSHA gets NOSCRIPT */
    bool is_silent;           /* read commands, answer none */
    bool is_holding;          /* run commands, keep the replies until released */
    const char *user;         /* AUTH needs these when password is set */
    const char *password;
    const char *eval_error;   /* answer EVALSHA with this error line */

    /* what it saw */
    int naccepts;
    int nevalsha;
    int nchecks;              /* checks carried by EVALSHA calls that ran */
    int nscript_loads;
    int nnoscript;
    char trace[2048];         /* command names, space-separated */
};

static inline void
fake_trace(struct fake_redis *fr, const char *word)
{
    size_t len = strlen(fr->trace);

    if (len + strlen(word) + 2 < sizeof(fr->trace))
        snprintf(fr->trace + len, sizeof(fr->trace) - len, "%s%s", len ? " " : "", word);
}

static inline void
fake_conn_free(struct fake_conn *c)
{
    struct fake_redis *fr = c->fr;

    for (struct fake_conn **p = &fr->conns; *p != NULL; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    bufferevent_free(c->bev);
    if (c->held != NULL)
        evbuffer_free(c->held);
    free(c);
}

/* Parses one RESP array of bulk strings at the head of buf: 1 and argv
 * (pointing into the pulled-up buffer), 0 when incomplete, -1 on garbage. */
static inline int
fake_parse(struct evbuffer *buf, size_t *used, int *argc, const char **argv, size_t *lens)
{
    size_t len = evbuffer_get_length(buf), pos = 0;
    const char *d = (const char *)evbuffer_pullup(buf, -1);
    long n;
    char *end;

    if (len == 0)
        return 0;
    if (d[0] != '*')
        return -1;
    if (memchr(d, '\n', len) == NULL)
        return 0;
    n = strtol(d + 1, &end, 10);
    if (n < 1 || n > FAKE_MAX_ARGS)
        return -1;
    pos = (size_t)(end - d) + 2;
    for (long i = 0; i < n; i++) {
        long blen;

        if (pos >= len || memchr(d + pos, '\n', len - pos) == NULL)
            return 0;
        if (d[pos] != '$')
            return -1;
        blen = strtol(d + pos + 1, &end, 10);
        pos = (size_t)(end - d) + 2;
        if (pos + (size_t)blen + 2 > len)
            return 0;
        argv[i] = d + pos;
        lens[i] = (size_t)blen;
        pos += (size_t)blen + 2;
    }
    *argc = (int)n;
    *used = pos;
    return 1;
}

static inline bool
fake_is(const char *arg, size_t len, const char *word)
{
    return len == strlen(word) && strncasecmp(arg, word, len) == 0;
}

static inline void
fake_eval(struct fake_redis *fr, struct evbuffer *out, int argc, const char **argv,
          const size_t *lens)
{
    long nkeys;
    long long reply[8192];
    char err[512], num[32];
    long n;

    if (!fr->has_script || lens[1] != 40 || memcmp(argv[1], FAKE_SHA, 40) != 0) {
        fr->nnoscript++;
        evbuffer_add_printf(out, "-NOSCRIPT No matching script. Please use EVAL.\r\n");
        return;
    }
    if (fr->eval_error != NULL) {
        evbuffer_add_printf(out, "-%s\r\n", fr->eval_error);
        return;
    }
    snprintf(num, sizeof(num), "%.*s", (int)lens[2], argv[2]);
    nkeys = strtol(num, NULL, 10);
    if (nkeys < 0 || 3 + nkeys > argc) {
        evbuffer_add_printf(out, "-ERR Number of keys can't be greater than number of args\r\n");
        return;
    }
    snprintf(num, sizeof(num), "%.*s", (int)lens[3 + nkeys], argv[3 + nkeys]);
    fr->nchecks += (int)strtol(num, NULL, 10);
    tb_lua_set_now(&fr->lua, fr->now_us);
    n = tb_lua_eval(&fr->lua, argv + 3, lens + 3, (size_t)nkeys, argv + 3 + nkeys,
                    lens + 3 + nkeys, (size_t)(argc - 3 - nkeys), reply, 8192, err, sizeof(err));
    if (n < 0) {
        evbuffer_add_printf(out, "-ERR Error running script: %s\r\n", err);
        return;
    }
    evbuffer_add_printf(out, "*%ld\r\n", n);
    for (long i = 0; i < n; i++)
        evbuffer_add_printf(out, ":%lld\r\n", reply[i]);
}

static inline void
fake_command(struct fake_conn *c, struct evbuffer *out, int argc, const char **argv,
             const size_t *lens)
{
    struct fake_redis *fr = c->fr;

    if (fake_is(argv[0], lens[0], "AUTH")) {
        bool ok = fr->password != NULL
                  && (argc == 2 ? fr->user == NULL && fake_is(argv[1], lens[1], fr->password)
                                : fr->user != NULL && fake_is(argv[1], lens[1], fr->user)
                                      && fake_is(argv[2], lens[2], fr->password));

        fake_trace(fr, argc == 3 ? "AUTH3" : "AUTH2");
        c->is_authed = ok;
        evbuffer_add_printf(out, ok ? "+OK\r\n" : "-WRONGPASS invalid username-password pair\r\n");
        return;
    }
    if (fr->password != NULL && !c->is_authed) {
        fake_trace(fr, "NOAUTH");
        evbuffer_add_printf(out, "-NOAUTH Authentication required.\r\n");
        return;
    }
    if (fake_is(argv[0], lens[0], "SELECT") && argc == 2) {
        char num[32];

        snprintf(num, sizeof(num), "%.*s", (int)lens[1], argv[1]);
        c->db = strtol(num, NULL, 10);
        fake_trace(fr, "SELECT");
        evbuffer_add_printf(out, "+OK\r\n");
    } else if (fake_is(argv[0], lens[0], "SCRIPT") && argc == 3
               && fake_is(argv[1], lens[1], "LOAD")) {
        fake_trace(fr, "LOAD");
        fr->nscript_loads++;
        if (lens[2] != fr->lua.script_len || memcmp(argv[2], fr->lua.script, lens[2]) != 0) {
            evbuffer_add_printf(out, "-ERR not the token bucket script\r\n");
            return;
        }
        fr->has_script = true;
        evbuffer_add_printf(out, "$40\r\n%s\r\n", FAKE_SHA);
    } else if (fake_is(argv[0], lens[0], "EVALSHA") && argc >= 3) {
        fake_trace(fr, "EVALSHA");
        fr->nevalsha++;
        fake_eval(fr, out, argc, argv, lens);
    } else if (fake_is(argv[0], lens[0], "DEL") && argc == 2) {
        char key[512];

        fake_trace(fr, "DEL");
        snprintf(key, sizeof(key), "%.*s", (int)lens[1], argv[1]);
        evbuffer_add_printf(out, ":%ld\r\n", tb_lua_shim_int(&fr->lua, "del", key));
    } else if (fake_is(argv[0], lens[0], "PING")) {
        evbuffer_add_printf(out, "+PONG\r\n");
    } else {
        evbuffer_add_printf(out, "-ERR unknown command\r\n");
    }
}

static inline void
fake_on_read(struct bufferevent *bev, void *arg)
{
    struct fake_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    static const char *argv[FAKE_MAX_ARGS];
    static size_t lens[FAKE_MAX_ARGS];

    for (;;) {
        struct evbuffer *out = evbuffer_new();
        size_t used;
        int argc, rc = fake_parse(in, &used, &argc, argv, lens);

        if (rc <= 0) {
            evbuffer_free(out);
            if (rc < 0)
                fake_conn_free(c);
            return;
        }
        if (!c->fr->is_silent)
            fake_command(c, out, argc, argv, lens);
        evbuffer_drain(in, used);
        if (c->fr->is_holding) {
            if (c->held == NULL)
                c->held = evbuffer_new();
            evbuffer_add_buffer(c->held, out);
        } else {
            bufferevent_write_buffer(bev, out);
        }
        evbuffer_free(out);
    }
}

static inline void
fake_on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        fake_conn_free(arg);
}

static inline void
fake_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
               void *arg)
{
    struct fake_redis *fr = arg;
    struct fake_conn *c = calloc(1, sizeof(*c));

    (void)l;
    (void)sa;
    (void)salen;
    c->fr = fr;
    c->bev = bufferevent_socket_new(fr->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, fake_on_read, NULL, fake_on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = fr->conns;
    fr->conns = c;
    fr->naccepts++;
}

/* Starts listening (again) on fr->path. */
static inline void
fake_redis_listen(struct fake_redis *fr)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    unlink(fr->path);
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", fr->path);
    fr->listener = evconnlistener_new_bind(fr->base, fake_on_accept, fr,
                                           LEV_OPT_CLOSE_ON_FREE, 64, (struct sockaddr *)&sun,
                                           sizeof(sun));
    if (fr->listener == NULL) {
        fprintf(stderr, "fake_redis: listen %s: %s\n", fr->path, strerror(errno));
        abort();
    }
}

/* Closes every connection (clients see EOF). */
/* Stops holding and sends every reply kept back, in order: late replies. */
static inline void
fake_redis_release(struct fake_redis *fr)
{
    fr->is_holding = false;
    for (struct fake_conn *c = fr->conns; c != NULL; c = c->next) {
        if (c->held != NULL)
            bufferevent_write_buffer(c->bev, c->held);
    }
}

static inline void
fake_redis_drop_all(struct fake_redis *fr)
{
    while (fr->conns != NULL)
        fake_conn_free(fr->conns);
}

/* Stops listening and removes the socket: connects fail at once. */
static inline void
fake_redis_stop(struct fake_redis *fr)
{
    fake_redis_drop_all(fr);
    if (fr->listener != NULL)
        evconnlistener_free(fr->listener);
    fr->listener = NULL;
    unlink(fr->path);
}

static inline void
fake_redis_init(struct fake_redis *fr, struct event_base *base)
{
    memset(fr, 0, sizeof(*fr));
    fr->base = base;
    fr->now_us = 1700000000000000ull;
    snprintf(fr->dir, sizeof(fr->dir), "/tmp/sl-fake-redis-XXXXXX");
    if (mkdtemp(fr->dir) == NULL)
        abort();
    snprintf(fr->path, sizeof(fr->path), "%s/redis.sock", fr->dir);
    tb_lua_init(&fr->lua);
    fake_redis_listen(fr);
}

static inline void
fake_redis_fini(struct fake_redis *fr)
{
    fake_redis_stop(fr);
    rmdir(fr->dir);
    tb_lua_fini(&fr->lua);
}

#endif
