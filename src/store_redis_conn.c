/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The redis store's connection (see store_redis.c for the whole picture):
 * an event adapter of its own between hiredis and the worker's event_base,
 * the pipelined handshake (AUTH, SELECT, SCRIPT LOAD), the timers that
 * bound connecting and waiting, the stall watch over late replies, and
 * reconnection with backoff. sl_redis_conn_down() is the one way down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "sluice/log.h"
#include "store_redis_int.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/timeval.h"

static void on_reconnect(evutil_socket_t fd, short what, void *arg);
static void on_stall(evutil_socket_t fd, short what, void *arg);
static void on_connect_timeout(evutil_socket_t fd, short what, void *arg);
static void on_queue_timeout(evutil_socket_t fd, short what, void *arg);

/*
 * hiredis's own libevent adapter re-registers its events with the kernel for
 * every command (a one-shot read event, a write event added and deleted):
 * two epoll_ctl per round trip. This one keeps a persistent read event for
 * the connection's life and writes from a deferred callback in the same loop
 * pass; a real write event is registered only while the socket is full or
 * the connect is pending.
 */
struct redis_events {
    redisAsyncContext *ac;
    struct event rev;  /* persistent, level-triggered */
    struct event wev;  /* only while a write could not finish, or connecting */
    struct event kick; /* "write now", without asking the kernel */
    bool is_reading;
    bool is_wev_added;
    bool is_writing;   /* inside redisAsyncHandleWrite */
    bool *freed;       /* set when cleanup runs inside our own write call */
};

static void
events_write(evutil_socket_t fd, short what, void *arg)
{
    struct redis_events *e = arg;
    bool freed = false;

    (void)fd;
    (void)what;
    e->is_writing = true;
    e->freed = &freed;
    redisAsyncHandleWrite(e->ac);
    if (freed)
        return; /* the context and e went away in there */
    e->is_writing = false;
    e->freed = NULL;
}

static void
events_read(evutil_socket_t fd, short what, void *arg)
{
    struct redis_events *e = arg;
    /* the replies' callbacks finish many requests: one clock read for all */
    uint64_t saved = sl_clock_enter();

    (void)fd;
    (void)what;
    redisAsyncHandleRead(e->ac);
    sl_clock_leave(saved);
}

static void
events_add_read(void *privdata)
{
    struct redis_events *e = privdata;

    if (!e->is_reading) {
        event_add(&e->rev, NULL);
        e->is_reading = true;
    }
}

static void
events_del_read(void *privdata)
{
    struct redis_events *e = privdata;

    if (e->is_reading) {
        event_del(&e->rev);
        e->is_reading = false;
    }
}

static void
events_add_write(void *privdata)
{
    struct redis_events *e = privdata;

    /* A write that stopped short, or a connect in progress: wait for the
     * kernel to say writable. Otherwise just write later in this pass. */
    if (e->is_writing || !(e->ac->c.flags & REDIS_CONNECTED)) {
        if (!e->is_wev_added) {
            event_add(&e->wev, NULL);
            e->is_wev_added = true;
        }
        return;
    }
    event_active(&e->kick, EV_WRITE, 0);
}

static void
events_del_write(void *privdata)
{
    struct redis_events *e = privdata;

    if (e->is_wev_added) {
        event_del(&e->wev);
        e->is_wev_added = false;
    }
}

static void
events_cleanup(void *privdata)
{
    struct redis_events *e = privdata;

    event_del(&e->rev);
    event_del(&e->wev);
    event_del(&e->kick);
    if (e->freed != NULL)
        *e->freed = true;
    free(e);
}

static int
attach(redisAsyncContext *ac, struct event_base *base)
{
    struct redis_events *e;

    if (ac->ev.data != NULL)
        return REDIS_ERR;
    e = sl_xcalloc(1, sizeof(*e));
    e->ac = ac;
    event_assign(&e->rev, base, ac->c.fd, EV_READ | EV_PERSIST, events_read, e);
    event_assign(&e->wev, base, ac->c.fd, EV_WRITE | EV_PERSIST, events_write, e);
    event_assign(&e->kick, base, -1, 0, events_write, e);
    ac->ev.addRead = events_add_read;
    ac->ev.delRead = events_del_read;
    ac->ev.addWrite = events_add_write;
    ac->ev.delWrite = events_del_write;
    ac->ev.cleanup = events_cleanup;
    ac->ev.data = e;
    events_add_read(e);
    events_add_write(e);
    return REDIS_OK;
}

/* ---- down and up ----------------------------------------------------------------- */

static void
schedule_reconnect(struct redis_store *rs, uint64_t delay_ms)
{
    struct timeval tv = sl_timeval_from_ms(delay_ms);

    if (!rs->is_freeing)
        evtimer_add(rs->reconnect_timer, &tv);
}

/*
 * The one way down: detaches the connection, fails every pending check with
 * `status`, schedules the reconnection, and frees the hiredis context when
 * `free_ac` (hiredis defers that while one of its callbacks runs). Pass
 * free_ac false from the connect/disconnect callbacks and for NULL replies:
 * hiredis is already freeing the context then.
 */
void
sl_redis_conn_down(struct redis_store *rs, bool free_ac, enum sl_store_status status,
                   const char *why)
{
    redisAsyncContext *ac = rs->ac;
    bool was_up = sl_redis_get_state(rs) == CONN_UP;

    if (ac == NULL && sl_redis_get_state(rs) == CONN_DOWN)
        return;
    rs->ac = NULL;
    sl_redis_set_state(rs, CONN_DOWN);
    rs->is_accepting = false;
    evtimer_del(rs->connect_timer);
    evtimer_del(rs->queue_timer);
    /* the orphans' callbacks come with a NULL reply as the context goes */
    rs->norphans = 0;
    evtimer_del(rs->stall_timer);
    if (ac != NULL)
        ac->data = NULL;
    if (!rs->is_freeing && !rs->is_logged_down) {
        sl_log_warnx("redis %s: %s; %s", rs->name, why,
                     was_up ? "reconnecting" : "retrying with backoff");
        rs->is_logged_down = true;
    }
    if (was_up) {
        rs->backoff_ms = BACKOFF_MIN_MS;
        schedule_reconnect(rs, 0);
    } else {
        schedule_reconnect(rs, rs->backoff_ms);
        rs->backoff_ms = rs->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rs->backoff_ms * 2;
    }
    sl_redis_fail_all(rs, status);
    if (ac != NULL && free_ac)
        redisAsyncFree(ac);
}

/* ---- hiredis callbacks ----------------------------------------------------------- */

static void
on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_store *rs = ac->data;

    if (rs == NULL || status == REDIS_OK)
        return; /* the handshake replies tell when it is ready */
    sl_redis_enter(rs);
    /* hiredis frees the context after this returns */
    sl_redis_conn_down(rs, false, SL_STORE_CONNECTION,
                       ac->errstr != NULL ? ac->errstr : "connect failed");
    sl_redis_leave(rs);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_store *rs = ac->data;

    (void)status;
    if (rs == NULL)
        return;
    sl_redis_enter(rs);
    sl_redis_conn_down(rs, false, SL_STORE_CONNECTION,
                       ac->err != 0 && ac->errstr != NULL ? ac->errstr : "connection closed");
    sl_redis_leave(rs);
}

/* Common head of the handshake callbacks: true when the reply is usable. */
bool
sl_redis_handshake_reply_ok(struct redis_store *rs, redisAsyncContext *ac,
                            const redisReply *reply, const char *what)
{
    char why[256];

    if (ac != rs->ac)
        return false; /* an old connection going away */
    if (reply == NULL) {
        sl_redis_conn_down(rs, false, SL_STORE_CONNECTION,
                           ac->errstr != NULL && ac->err != 0 ? ac->errstr : "connection lost");
        return false;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s: %s", what, reply->str);
        sl_redis_conn_down(rs, true, SL_STORE_CONNECTION, why);
        return false;
    }
    return true;
}

static void
on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_store *rs = privdata;

    sl_redis_enter(rs);
    rs->nowned--;
    sl_redis_handshake_reply_ok(rs, ac, r, "AUTH/SELECT");
    sl_redis_leave(rs);
}

static void
on_script_loaded(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_store *rs = privdata;
    const redisReply *reply = r;

    sl_redis_enter(rs);
    rs->nowned--;
    if (!sl_redis_handshake_reply_ok(rs, ac, reply, "SCRIPT LOAD"))
        goto out;
    if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        sl_redis_conn_down(rs, true, SL_STORE_CONNECTION, "SCRIPT LOAD: unexpected reply");
        goto out;
    }
    memcpy(rs->sha, reply->str, 40);
    rs->sha[40] = '\0';
    rs->has_sha = true;
    if (sl_redis_get_state(rs) == CONN_CONNECTING) {
        evtimer_del(rs->connect_timer);
        evtimer_del(rs->queue_timer);
        sl_redis_set_state(rs, CONN_UP);
        rs->is_accepting = false;
        rs->backoff_ms = BACKOFF_MIN_MS;
        sl_redis_bump(&rs->connects, 1);
        if (rs->was_ever_up)
            sl_redis_bump(&rs->reconnects, 1);
        if (rs->is_logged_down || !rs->was_ever_up)
            sl_log_info("redis %s: connected", rs->name);
        rs->was_ever_up = true;
        rs->is_logged_down = false;
        sl_redis_flush(rs);
    }
out:
    sl_redis_leave(rs);
}

/* ---- timers ---------------------------------------------------------------------- */

static uint64_t
stall_ms(const struct redis_store *rs)
{
    return rs->timeout_ms * 10 > STALL_MIN_MS ? rs->timeout_ms * 10 : STALL_MIN_MS;
}

static void
stall_timer_restart(struct redis_store *rs)
{
    struct timeval tv = sl_timeval_from_ms(stall_ms(rs));

    evtimer_add(rs->stall_timer, &tv);
}

void
sl_redis_orphan_added(struct redis_store *rs)
{
    if (++rs->norphans == 1)
        stall_timer_restart(rs);
}

/* A late reply came: the connection is slow, not dead. */
void
sl_redis_orphan_answered(struct redis_store *rs)
{
    if (rs->norphans > 0 && --rs->norphans > 0)
        stall_timer_restart(rs);
    else
        evtimer_del(rs->stall_timer);
}

static void
on_stall(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;
    char why[96];

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    snprintf(why, sizeof(why), "no reply for %llu ms", (unsigned long long)stall_ms(rs));
    sl_redis_conn_down(rs, true, SL_STORE_TIMEOUT, why);
    sl_redis_leave(rs);
}

static void
on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    sl_redis_conn_down(rs, true, SL_STORE_TIMEOUT, "connect timeout");
    sl_redis_leave(rs);
}

/* Checks made while connecting waited timeout_ms: they fail, later ones fail
 * fast until the connection is ready. */
static void
on_queue_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    rs->is_accepting = false;
    sl_redis_fail_queue(rs, SL_STORE_TIMEOUT);
    sl_redis_leave(rs);
}

static void
on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    sl_redis_connect_now(rs);
    sl_redis_leave(rs);
}

/* ---- connecting ------------------------------------------------------------------ */

void
sl_redis_conn_init(struct redis_store *rs)
{
    rs->reconnect_timer = evtimer_new(rs->evbase, on_reconnect, rs);
    rs->stall_timer = evtimer_new(rs->evbase, on_stall, rs);
    rs->connect_timer = evtimer_new(rs->evbase, on_connect_timeout, rs);
    rs->queue_timer = evtimer_new(rs->evbase, on_queue_timeout, rs);
    if (rs->reconnect_timer == NULL || rs->stall_timer == NULL || rs->connect_timer == NULL
        || rs->queue_timer == NULL)
        sl_fatalx("redis store: cannot create timers");
}

void
sl_redis_conn_fini(struct redis_store *rs)
{
    event_free(rs->reconnect_timer);
    event_free(rs->stall_timer);
    event_free(rs->connect_timer);
    event_free(rs->queue_timer);
}

static void
command(struct redis_store *rs, redisCallbackFn *fn, int argc, const char **argv,
        const size_t *lens)
{
    if (redisAsyncCommandArgv(rs->ac, fn, rs, argc, argv, lens) == REDIS_OK)
        rs->nowned++;
}

void
sl_redis_connect_now(struct redis_store *rs)
{
    redisAsyncContext *ac;
    struct timeval tv;
    char db[21];

    if (rs->is_freeing || rs->ac != NULL)
        return;
    ac = rs->url.path != NULL ? redisAsyncConnectUnix(rs->url.path)
                              : redisAsyncConnect(rs->url.host, rs->url.port);
    if (ac == NULL)
        sl_fatalx("redis %s: out of memory", rs->name);
    if (ac->err != 0) {
        /* refused at once (nothing listens on a unix path, ...) */
        if (!rs->is_logged_down) {
            sl_log_warnx("redis %s: %s; retrying with backoff", rs->name, ac->errstr);
            rs->is_logged_down = true;
        }
        redisAsyncFree(ac);
        schedule_reconnect(rs, rs->backoff_ms);
        rs->backoff_ms = rs->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rs->backoff_ms * 2;
        return;
    }
    ac->data = rs;
    sl_redis_use_reply_pool(rs, ac);
    if (attach(ac, rs->evbase) != REDIS_OK)
        sl_fatalx("redis %s: cannot attach to the event loop", rs->name);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rs->ac = ac;
    sl_redis_set_state(rs, CONN_CONNECTING);
    rs->is_accepting = true;

    /* pipelined: hiredis sends them once connected, in this order */
    if (rs->url.password != NULL) {
        const char *argv[3] = { "AUTH", rs->url.user, rs->url.password };
        size_t lens[3] = { 4, rs->url.user != NULL ? strlen(rs->url.user) : 0,
                           strlen(rs->url.password) };

        if (rs->url.user != NULL) {
            command(rs, on_setup_reply, 3, argv, lens);
        } else {
            argv[1] = argv[2];
            lens[1] = lens[2];
            command(rs, on_setup_reply, 2, argv, lens);
        }
    }
    if (rs->url.db != 0) {
        const char *argv[2] = { "SELECT", db };
        size_t lens[2] = { 6, sl_redis_fmt_i64(db, rs->url.db) };

        command(rs, on_setup_reply, 2, argv, lens);
    }
    {
        const char *argv[3] = { "SCRIPT", "LOAD", rs->script };
        size_t lens[3] = { 6, 4, rs->script_len };

        command(rs, on_script_loaded, 3, argv, lens);
    }
    tv = sl_timeval_from_ms(rs->timeout_ms > CONNECT_TIMEOUT_MIN_MS ? rs->timeout_ms
                                                                    : CONNECT_TIMEOUT_MIN_MS);
    evtimer_add(rs->connect_timer, &tv);
    if (rs->timeout_ms > 0) {
        tv = sl_timeval_from_ms(rs->timeout_ms);
        evtimer_add(rs->queue_timer, &tv);
    }
}
