/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The redis store's connection (see store_redis.c for the whole picture):
 * a link (store_redis_link.c: the socket, TLS, the replies) made and
 * dropped here, the pipelined handshake (AUTH, SELECT, SCRIPT LOAD), the
 * timers that bound connecting and waiting, the stall watch over late
 * replies, and reconnection with backoff. sl_redis_conn_down() is the one
 * way down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netdb.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "sluice/log.h"
#include "sluice/resolver.h"
#include "store_redis_int.h"
#include "store_redis_nodes.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/timeval.h"

static void on_reconnect(evutil_socket_t fd, short what, void *arg);
static void on_stall(evutil_socket_t fd, short what, void *arg);
static void on_connect_timeout(evutil_socket_t fd, short what, void *arg);
static void on_queue_timeout(evutil_socket_t fd, short what, void *arg);

/* ---- down and up ----------------------------------------------------------------- */

static void
schedule_reconnect(struct redis_store *rs, uint64_t delay_ms)
{
    struct timeval tv = sl_timeval_from_ms(delay_ms);

    if (!rs->is_freeing)
        evtimer_add(rs->reconnect_timer, &tv);
}

/*
 * The one way down: detaches the link, fails every pending check with
 * `status`, schedules the reconnection, and frees the link (at once, or
 * when its callback on the stack returns; the replies it still owed come
 * back NULL and only release what they held).
 */
void
sl_redis_conn_down(struct redis_store *rs, enum sl_store_status status, const char *why)
{
    struct sl_redis_link *link = rs->link;
    bool was_up = sl_redis_get_state(rs) == CONN_UP;

    if (link == NULL && sl_redis_get_state(rs) == CONN_DOWN)
        return;
    rs->link = NULL;
    sl_redis_set_state(rs, CONN_DOWN);
    sl_redis_sentinel_forget(rs);
    rs->is_accepting = false;
    evtimer_del(rs->connect_timer);
    evtimer_del(rs->queue_timer);
    /* the orphans' callbacks come with a NULL reply as the link goes */
    rs->norphans = 0;
    evtimer_del(rs->stall_timer);
    if (!rs->is_freeing && !rs->is_logged_down) {
        sl_log_warnx("redis %s: %s; %s", rs->name, why,
                     was_up ? "reconnecting" : "retrying with backoff");
        rs->is_logged_down = true;
    }
    if (was_up) {
        sl_redis_node_conn(rs->node, -1);
        rs->backoff_ms = BACKOFF_MIN_MS;
        schedule_reconnect(rs, 0);
    } else {
        schedule_reconnect(rs, rs->backoff_ms);
        rs->backoff_ms = rs->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rs->backoff_ms * 2;
    }
    sl_redis_fail_all(rs, status);
    sl_redis_link_free(link);
    if (rs->cluster != NULL && !rs->is_freeing)
        sl_redis_cluster_node_down(rs->cluster);
}

/* ---- link callbacks -------------------------------------------------------------- */

/* Refused, closed, reset, a TLS or protocol error: `why` says which. */
static void
on_link_down(struct sl_redis_link *link, void *arg, const char *why)
{
    struct redis_store *rs = arg;

    if (link != rs->link)
        return; /* an old link going away */
    sl_redis_enter(rs);
    sl_redis_conn_down(rs, SL_STORE_CONNECTION, why);
    sl_redis_leave(rs);
}

/* Common head of the handshake callbacks: true when the reply is usable. */
bool
sl_redis_handshake_reply_ok(struct redis_store *rs, struct sl_redis_link *link,
                            const redisReply *reply, const char *what)
{
    char why[256];

    if (link != rs->link)
        return false; /* an old link going away */
    if (reply == NULL) {
        sl_redis_conn_down(rs, SL_STORE_CONNECTION, "connection lost");
        return false;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s: %s", what, reply->str);
        /* the server's refusal is the line that says what to fix: logged
         * even within an outage logged for another reason (a connection
         * closed, then the password changed), once per distinct refusal */
        if (strcmp(rs->refused_why, why) != 0) {
            memcpy(rs->refused_why, why, sizeof(rs->refused_why));
            rs->is_logged_down = false;
        }
        sl_redis_conn_down(rs, SL_STORE_CONNECTION, why);
        return false;
    }
    return true;
}

static void
on_setup_reply(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_store *rs = privdata;

    sl_redis_enter(rs);
    rs->nowned--;
    sl_redis_handshake_reply_ok(rs, link, r, "AUTH/SELECT");
    sl_redis_leave(rs);
}

/* Sentinel: the server named as master must say it is one. A stale answer
 * (a sentinel that has not seen the failover yet) drops the connection, and
 * the sentinels are asked again after the backoff. */
static void
on_role(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_store *rs = privdata;
    const redisReply *reply = r;

    sl_redis_enter(rs);
    rs->nowned--;
    if (!sl_redis_handshake_reply_ok(rs, link, reply, "ROLE"))
        goto out;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
        || reply->element[0]->type != REDIS_REPLY_STRING
        || strcmp(reply->element[0]->str, "master") != 0)
        sl_redis_conn_down(rs, SL_STORE_CONNECTION, "ROLE: not a master (stale sentinel answer)");
out:
    sl_redis_leave(rs);
}

static void
on_script_loaded(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_store *rs = privdata;
    const redisReply *reply = r;

    sl_redis_enter(rs);
    rs->nowned--;
    if (!sl_redis_handshake_reply_ok(rs, link, reply, "SCRIPT LOAD"))
        goto out;
    if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        sl_redis_conn_down(rs, SL_STORE_CONNECTION, "SCRIPT LOAD: unexpected reply");
        goto out;
    }
    memcpy(rs->sha, reply->str, 40);
    rs->sha[40] = '\0';
    rs->has_sha = true;
    if (sl_redis_get_state(rs) == CONN_CONNECTING) {
        evtimer_del(rs->connect_timer);
        evtimer_del(rs->queue_timer);
        sl_redis_set_state(rs, CONN_UP);
        sl_redis_node_conn(rs->node, +1);
        rs->is_accepting = false;
        rs->backoff_ms = BACKOFF_MIN_MS;
        sl_redis_bump(&rs->connects, 1);
        if (rs->was_ever_up)
            sl_redis_bump(&rs->reconnects, 1);
        if (rs->is_logged_down || !rs->was_ever_up)
            sl_log_info("redis %s: connected", rs->name);
        rs->was_ever_up = true;
        rs->is_logged_down = false;
        rs->refused_why[0] = '\0';
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
    sl_redis_conn_down(rs, SL_STORE_TIMEOUT, why);
    sl_redis_leave(rs);
}

static void
on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    sl_redis_conn_down(rs, SL_STORE_TIMEOUT, "connect timeout");
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
sl_redis_retry_later(struct redis_store *rs)
{
    schedule_reconnect(rs, rs->backoff_ms);
    rs->backoff_ms = rs->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rs->backoff_ms * 2;
}

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
command(struct redis_store *rs, sl_redis_reply_cb *fn, int argc, const char **argv,
        const size_t *lens)
{
    if (sl_redis_link_send_argv(rs->link, argc, argv, lens, fn, rs) == 0)
        rs->nowned++;
}

/* AUTH and SELECT when the url asks for them, ROLE for Sentinel, then
 * SCRIPT LOAD: pipelined, written once the link is ready, in this order. */
static void
send_handshake(struct redis_store *rs)
{
    char db[21];

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
    if (rs->url.is_sentinel) {
        const char *argv[1] = { "ROLE" };
        size_t lens[1] = { 4 };

        command(rs, on_role, 1, argv, lens);
    }
    {
        const char *argv[3] = { "SCRIPT", "LOAD", rs->script };
        size_t lens[3] = { 6, 4, rs->script_len };

        command(rs, on_script_loaded, 3, argv, lens);
    }
}

/*
 * The address to connect to when the daemon's resolver looks the host up:
 * its addresses taken in turn, one per connect, so that a reconnect after a
 * failure tries the next. TLS still checks (and names in SNI) the host
 * itself. -1 with err while the name has no address.
 */
static int
resolved_target(struct redis_store *rs, struct sl_redis_target *t, char *host, size_t size,
                char *err, size_t err_size)
{
    struct sockaddr_storage ss[SL_RESOLVED_MAX];
    uint64_t version;
    size_t n = sl_resolved_addresses(rs->dns, ss, SL_RESOLVED_MAX, &version);
    socklen_t len;

    if (n == 0) {
        snprintf(err, err_size, "no address for %s (yet)", rs->url.host);
        return -1;
    }
    n = rs->dns_turn++ % n;
    len = ss[n].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (getnameinfo((const struct sockaddr *)&ss[n], len, host, (socklen_t)size, NULL, 0,
                    NI_NUMERICHOST)
        != 0) {
        snprintf(err, err_size, "no usable address for %s", rs->url.host);
        return -1;
    }
    t->host = host;
    if (t->server_name == NULL)
        t->server_name = rs->url.host;
    return 0;
}

/* The master's counters: per address, so a failover shows as a new node. */
static struct sl_redis_node *
sentinel_master_node(const struct sl_redis_target *t)
{
    char name[NI_MAXHOST + 16];

    snprintf(name, sizeof(name), strchr(t->host, ':') != NULL ? "[%s]:%d" : "%s:%d", t->host,
             t->port);
    return sl_redis_node_get(name);
}

void
sl_redis_connect_now(struct redis_store *rs)
{
    struct sl_redis_target target = {
        .host = rs->url.host, .port = rs->url.port, .path = rs->url.path,
        .ssl_ctx = rs->ssl_ctx, .server_name = rs->server_name,
        .is_verify = rs->is_tls_verify,
    };
    struct timeval tv;
    char err[256], host[NI_MAXHOST];

    if (rs->is_freeing || rs->link != NULL)
        return;
    if (rs->sentinel != NULL) {
        if (!sl_redis_sentinel_target(rs, &target))
            return; /* the sentinels are asked; they call again */
        rs->node = sentinel_master_node(&target);
    }
    if (rs->dns == NULL || resolved_target(rs, &target, host, sizeof(host), err, sizeof(err)) == 0)
        rs->link = sl_redis_link_new(rs->evbase, &target, &sl_redis_reply_functions, rs->replies,
                                     LINK_OUT_MAX, on_link_down, rs, err, sizeof(err));
    if (rs->link == NULL) {
        /* refused at once (nothing listens on a unix path, ...) */
        sl_redis_sentinel_forget(rs);
        if (!rs->is_logged_down) {
            sl_log_warnx("redis %s: %s; retrying with backoff", rs->name, err);
            rs->is_logged_down = true;
        }
        sl_redis_retry_later(rs);
        return;
    }
    sl_redis_set_state(rs, CONN_CONNECTING);
    rs->is_accepting = true;
    send_handshake(rs);
    tv = sl_timeval_from_ms(rs->timeout_ms > CONNECT_TIMEOUT_MIN_MS ? rs->timeout_ms
                                                                    : CONNECT_TIMEOUT_MIN_MS);
    evtimer_add(rs->connect_timer, &tv);
    if (rs->timeout_ms > 0) {
        tv = sl_timeval_from_ms(rs->timeout_ms);
        evtimer_add(rs->queue_timer, &tv);
    }
}
