/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The redis backend: one connection per worker, on the worker's event_base,
 * plaintext or TLS, made by sluice itself (store_redis_link.c: hiredis 0.14
 * brings only its reply reader), running lua/token_bucket.lua with EVALSHA.
 *
 * Batching. A script call carries many checks (one per request). When the
 * connection is idle, a check is sent at the end of the current loop pass
 * (so every request parsed in that pass shares the call, and none waits for
 * anything but the pass); while a call is out, new checks queue and all of
 * them go in the next call when it comes back. Calls are capped at
 * BATCH_CHECKS checks; full calls may be pipelined up to INFLIGHT_MAX deep.
 * Redis does the fixed part of a call (EVALSHA lookup, TIME, reply) once per
 * batch instead of once per request.
 *
 * Failures. A call not answered within timeout_ms fails its own checks with
 * SL_STORE_TIMEOUT and becomes an orphan: the connection stays, and the late
 * reply is dropped when it comes. Dropping the connection on every late call
 * (as h2o does) turns a Redis that is slow under load into a reconnection
 * storm from every worker, each reconnect adding a handshake and a SCRIPT
 * LOAD to the overloaded server. A connection that owes more than
 * ORPHANS_MAX late replies, or answers nothing for STALL_MIN_MS (at least ten
 * timeouts) while it owes one, is dropped through sl_redis_conn_down(), the one way
 * down: a lost or refused connection fails every pending check with
 * SL_STORE_CONNECTION, and so are new checks while it is down (fail fast,
 * nothing queues). Reconnection is automatic: at once after
 * losing a working connection, then after 100 ms doubling to 5 s. Every
 * connection is set up with AUTH, SELECT and SCRIPT LOAD pipelined before
 * anything else; checks made while it connects wait at most timeout_ms.
 * A NOSCRIPT reply (Redis restarted, SCRIPT FLUSH) loads the script again
 * and resends the same call, once, so no request notices.
 *
 * Lifetime. The link (store_redis_link.c) calls every command callback
 * exactly once (with a NULL reply when it is freed first) and frees replies
 * after the callback returns; freeing it from inside one of its callbacks
 * is deferred until that returns. The store counts the callbacks the link
 * still owes it and the entry points on the stack, and is freed only when
 * both are zero: sl_store_free() from inside a store callback is safe.
 *
 * The script is embedded in the binary at build time (see the .incbin below
 * and cmake/embed.cmake); Redis computes its SHA1 on SCRIPT LOAD.
 *
 * Files: this one holds the store interface, the URL and the store's
 * lifetime; store_redis_conn.c the connection, store_redis_batch.c the
 * script calls; store_redis_int.h what they share.
 */
#include "sluice/store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "sluice/config.h"
#include "sluice/resolver.h"
#include "store_int.h"
#include "store_redis_int.h"
#include "store_redis_nodes.h"
#include "store_redis_slots.h"
#include "util/alloc.h"

/* ---- the script, embedded at build time ------------------------------------------ */

#ifndef SL_SOURCE_DIR
#define SL_SOURCE_DIR "."
#endif

/* The assembler reads the file when this file is compiled; cmake/embed.cmake
 * makes the object depend on it so an edited script rebuilds it. */
__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".globl sl_token_bucket_lua\n"
        ".hidden sl_token_bucket_lua\n"
        ".type sl_token_bucket_lua, @object\n"
        "sl_token_bucket_lua:\n"
        ".incbin \"" SL_SOURCE_DIR "/lua/token_bucket.lua\"\n"
        ".byte 0\n"
        ".size sl_token_bucket_lua, . - sl_token_bucket_lua\n"
        ".popsection\n");
extern const char sl_token_bucket_lua[] __attribute__((visibility("hidden")));

/* The same script for a cluster's master: the flag lets one call carry the
 * keys of many slots (those the master serves; see the script). */
__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".globl sl_token_bucket_lua_sharded\n"
        ".hidden sl_token_bucket_lua_sharded\n"
        ".type sl_token_bucket_lua_sharded, @object\n"
        "sl_token_bucket_lua_sharded:\n"
        ".ascii \"#!lua flags=allow-cross-slot-keys\\n\"\n"
        ".incbin \"" SL_SOURCE_DIR "/lua/token_bucket.lua\"\n"
        ".byte 0\n"
        ".size sl_token_bucket_lua_sharded, . - sl_token_bucket_lua_sharded\n"
        ".popsection\n");
extern const char sl_token_bucket_lua_sharded[] __attribute__((visibility("hidden")));

/* ---- URL ------------------------------------------------------------------------- */

/* The connect parameters of `url`, read by the parser config validates with
 * (util/redis_url.h), so a URL `sluice -t` accepts is one the store can use. */
static int
parse_url(const struct sl_store_conf *conf, struct sl_redis_url *u, char *err, size_t err_size)
{
    char why[200];

    if (sl_redis_url_parse_flags(conf->url, SL_REDIS_URL_PASSWORD_LATER, u, why, sizeof(why))
        == -1) {
        snprintf(err, err_size, "redis url: %s", why);
        return -1;
    }
    if (conf->password != NULL) {
        /* from password_file: config refused a url with a password of its own */
        free(u->password);
        u->password = sl_xstrdup(conf->password);
    }
    return 0;
}

static const struct sl_store_ops redis_ops;

#define SWAP(T, a, b)                                                                     \
    do {                                                                                  \
        T swap_tmp_ = (a);                                                                \
        (a) = (b);                                                                        \
        (b) = swap_tmp_;                                                                  \
    } while (0)

/* ---- lifetime -------------------------------------------------------------------- */

static void
destroy(struct redis_store *rs)
{
    sl_redis_batch_fini(rs);
    sl_redis_conn_fini(rs);
    sl_redis_sentinel_fini(rs);
    sl_redis_url_fini(&rs->url);
    SSL_CTX_free(rs->ssl_ctx);
    free(rs->server_name);
    if (rs->dns != NULL)
        sl_resolved_unref(rs->dns);
    free(rs->name);
    free(rs);
}

/* Returns true when the store is gone: the caller must return at once. */
bool
sl_redis_leave(struct redis_store *rs)
{
    if (--rs->depth == 0 && rs->is_freeing && rs->nowned == 0) {
        destroy(rs);
        return true;
    }
    return false;
}

/* ---- the store interface --------------------------------------------------------- */

static void
fail_now(struct redis_store *rs, sl_store_cb *cb, void *arg, enum sl_store_status status)
{
    sl_redis_count_status(rs, status, 1);
    cb(arg, status, false, NULL, 0);
}

/* "$<n>\r\n<digits of v>\r\n" at p; returns the end. */
static char *
resp_i64(char *p, int64_t v)
{
    char digits[21];
    size_t n = sl_redis_fmt_i64(digits, v);

    *p++ = '$';
    p += sl_redis_fmt_i64(p, (int64_t)n);
    memcpy(p, "\r\n", 2);
    memcpy(p + 2, digits, n);
    memcpy(p + 2 + n, "\r\n", 2);
    return p + 4 + n;
}

/* The script's numbers for a bucket, RESP-encoded, from a small cache: a
 * worker sees the same few limits over and over. NULL when invalid. */
static const struct param_cache *
params_resp(struct redis_store *rs, const struct sl_store_bucket *b)
{
    struct param_cache *pc;
    struct sl_tb_params pr;
    char *p;

    for (size_t i = 0; i < PARAM_CACHE; i++) {
        pc = &rs->params[i];
        if (pc->len != 0 && pc->rate == b->rate && pc->per_ms == b->per_ms
            && pc->burst == b->burst && pc->cost == b->cost)
            return pc->is_valid ? pc : NULL;
    }
    pc = &rs->params[rs->param_next++ % PARAM_CACHE];
    *pc = (struct param_cache){ .rate = b->rate, .per_ms = b->per_ms, .burst = b->burst,
                                .cost = b->cost, .len = 1 };
    if (sl_tb_params_from_bucket(&pr, b) == -1)
        return NULL;
    pc->is_valid = true;
    p = pc->resp;
    p = resp_i64(p, pr.q);
    p = resp_i64(p, pr.p);
    p = resp_i64(p, pr.tu);
    p = resp_i64(p, pr.burst);
    p = resp_i64(p, pr.cost);
    pc->len = (size_t)(p - pc->resp);
    return pc;
}

/* Appends one check's ARGV and KEYS to b: 0, or -1 (b as it was) when they
 * would pass BATCH_BUF_MAX. The buckets' parameters are valid. */
static int
batch_add(struct redis_store *rs, struct batch *b, const struct sl_store_bucket *buckets,
          size_t n)
{
    size_t args_before = b->args.len, keys_before = b->keys.len;
    char count[21];
    int rc = sl_redis_resp_arg(&b->args, count, sl_redis_fmt_i64(count, (int64_t)n));

    for (size_t i = 0; i < n && rc == 0; i++) {
        /* the cache hands back the text redis_check validated */
        const struct param_cache *pc = params_resp(rs, &buckets[i]);

        rc = sl_buf_append(&b->args, pc->resp, pc->len);
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = sl_redis_resp_arg(&b->keys, buckets[i].key, buckets[i].key_len);
    if (rc == -1) {
        sl_buf_truncate(&b->args, args_before);
        sl_buf_truncate(&b->keys, keys_before);
        return -1;
    }
    b->nargs += 1 + 5 * n;
    b->nkeys += n;
    return 0;
}

/* Whether a new call may queue at all; else it fails now with *status. */
static bool
may_queue(const struct redis_store *rs, size_t key_bytes, enum sl_store_status *status)
{
    if (rs->is_freeing || sl_redis_get_state(rs) == CONN_DOWN
        || (sl_redis_get_state(rs) == CONN_CONNECTING && !rs->is_accepting)) {
        *status = SL_STORE_CONNECTION;
        return false;
    }
    if (rs->nqueued >= QUEUE_CHECKS || rs->queued_bytes + key_bytes > QUEUE_BYTES) {
        *status = SL_STORE_TIMEOUT;
        return false;
    }
    return true;
}

/* Has the queue sent at the end of this loop pass, so the pass's other
 * checks join: only when nothing is out or a batch is full (see the
 * batching notes above). */
static void
schedule_flush(struct redis_store *rs)
{
    if (sl_redis_get_state(rs) == CONN_UP && !rs->is_flush_scheduled
        && (rs->ninflight == 0 || sl_redis_batch_is_full(rs->queue_head))) {
        rs->is_flush_scheduled = true;
        event_active(rs->flush_ev, EV_TIMEOUT, 0);
    }
}

static void
queue_append(struct redis_store *rs, struct batch *b)
{
    if (rs->queue_tail != NULL)
        rs->queue_tail->next = b;
    else
        rs->queue_head = b;
    rs->queue_tail = b;
}

/* Records the check whose keys and args b just took (from the lengths in
 * `before` on), puts a new b at the end of the queue, and has the queue sent
 * at the end of this loop pass, so the pass's other checks join. */
static void
enqueue(struct redis_store *rs, struct batch *b, bool is_new, struct pending before,
        struct pending p)
{
    size_t keys_before = before.keys_off;

    p.keys_off = keys_before;
    p.keys_len = b->keys.len - keys_before;
    p.args_off = before.args_off;
    p.args_len = b->args.len - before.args_off;
    p.nkeys = b->nkeys - before.nkeys;
    p.nargs = b->nargs - before.nargs;
    if (is_new)
        queue_append(rs, b);
    if (b->nchecks == b->checks_cap) {
        b->checks_cap = b->checks_cap == 0 ? 16 : b->checks_cap * 2;
        b->checks = sl_xrealloc(b->checks, b->checks_cap * sizeof(*b->checks));
    }
    b->checks[b->nchecks++] = p;
    rs->nqueued++;
    rs->queued_bytes += b->keys.len - keys_before; /* what batch release takes off */
    schedule_flush(rs);
}

/* The last queued batch, or a new one (which enqueue puts at the end of the
 * queue) when it is full; *before, where the next check starts in it. */
static struct batch *
batch_for(struct redis_store *rs, bool *is_new, struct pending *before)
{
    struct batch *b = rs->queue_tail;

    *is_new = b == NULL || sl_redis_batch_is_full(b);
    if (*is_new)
        b = sl_redis_batch_get(rs);
    *before = (struct pending){ .keys_off = b->keys.len, .args_off = b->args.len,
                                .nkeys = b->nkeys, .nargs = b->nargs };
    return b;
}

void
sl_redis_node_check(struct redis_store *rs, const struct sl_store_bucket *buckets, size_t n,
                    sl_store_cb *cb, void *arg)
{
    struct pending before;
    size_t key_bytes = 0;
    enum sl_store_status status;
    struct batch *b;
    bool is_new;

    sl_redis_enter(rs);
    for (size_t i = 0; i < n; i++)
        key_bytes += buckets[i].key_len;
    if (!may_queue(rs, key_bytes, &status)) {
        fail_now(rs, cb, arg, status);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (params_resp(rs, &buckets[i]) == NULL) {
            fail_now(rs, cb, arg, SL_STORE_REPLY);
            goto out;
        }
    }
    b = batch_for(rs, &is_new, &before);
    if (batch_add(rs, b, buckets, n) == -1) {
        if (is_new)
            sl_redis_batch_release(rs, b);
        fail_now(rs, cb, arg, SL_STORE_TIMEOUT);
        goto out;
    }
    enqueue(rs, b, is_new, before, (struct pending){ .cb = cb, .arg = arg, .nbuckets = n });
out:
    sl_redis_leave(rs);
}

static void
redis_check(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
            sl_store_cb *cb, void *arg)
{
    sl_redis_node_check((struct redis_store *)store, buckets, n, cb, arg);
}

/* A lease operation: a check of one bucket with a negative count (see
 * lua/token_bucket.lua), so it shares the batches, their order, timeouts
 * and failure paths with the checks. */
/* The script's bucket operations beside checks: k = -1 lease take, -2 lease
 * give-back (nums and holder follow), -3 refund (nothing follows). */
static int
batch_add_op(struct redis_store *rs, struct batch *b, const struct sl_store_bucket *bucket,
             const char *k, const int64_t nums[3], const char *holder)
{
    size_t args_before = b->args.len, keys_before = b->keys.len;
    const struct param_cache *pc = params_resp(rs, bucket);
    char tmp[21];
    int rc = sl_redis_resp_arg(&b->args, k, 2);

    if (rc == 0)
        rc = sl_buf_append(&b->args, pc->resp, pc->len);
    for (int i = 0; i < 3 && rc == 0 && holder != NULL; i++)
        rc = sl_redis_resp_arg(&b->args, tmp, sl_redis_fmt_i64(tmp, nums[i]));
    if (rc == 0 && holder != NULL)
        rc = sl_redis_resp_arg(&b->args, holder, strlen(holder));
    if (rc == 0)
        rc = sl_redis_resp_arg(&b->keys, bucket->key, bucket->key_len);
    if (rc == -1) {
        sl_buf_truncate(&b->args, args_before);
        sl_buf_truncate(&b->keys, keys_before);
        return -1;
    }
    b->nargs += holder != NULL ? 10 : 6;
    b->nkeys += 1;
    return 0;
}

static void
lease_fail_now(struct redis_store *rs, sl_store_lease_cb *cb, void *arg,
               enum sl_store_status status)
{
    sl_redis_count_status(rs, status, 1);
    cb(arg, status, 0, NULL);
}

/* One bucket operation of the script (k: "-1", "-2" or "-3"; nums and
 * holder for the lease ones), queued with the checks. `is_valid`: its
 * numbers passed the caller's checks (else SL_STORE_REPLY). */
static void
queue_op(struct redis_store *rs, const struct sl_store_bucket *bucket, const char *k,
         const int64_t nums[3], const char *holder, bool is_valid, sl_store_lease_cb *cb,
         void *arg)
{
    enum sl_store_status status;
    struct pending before;
    struct batch *b;
    bool is_new;

    sl_redis_enter(rs);
    if (!may_queue(rs, bucket->key_len, &status)) {
        lease_fail_now(rs, cb, arg, status);
        goto out;
    }
    if (!is_valid || params_resp(rs, bucket) == NULL) {
        lease_fail_now(rs, cb, arg, SL_STORE_REPLY);
        goto out;
    }
    b = batch_for(rs, &is_new, &before);
    if (batch_add_op(rs, b, bucket, k, nums, holder) == -1) {
        if (is_new)
            sl_redis_batch_release(rs, b);
        lease_fail_now(rs, cb, arg, SL_STORE_TIMEOUT);
        goto out;
    }
    enqueue(rs, b, is_new, before, (struct pending){ .lease_cb = cb, .arg = arg, .nbuckets = 1 });
out:
    sl_redis_leave(rs);
}

void
sl_redis_node_lease(struct redis_store *rs, const struct sl_store_bucket *bucket,
                    enum sl_lease_op op, int64_t milli, int64_t held_milli, uint64_t ttl2_ms,
                    const char *holder, sl_store_lease_cb *cb, void *arg)
{
    int64_t nums[3] = { milli, held_milli, (int64_t)ttl2_ms * 1000 };
    size_t holder_len = strlen(holder);
    bool is_valid = milli >= 0 && held_milli >= 0 && holder_len > 0 && holder_len <= 32
                    && strspn(holder, "0123456789abcdef") == holder_len;

    queue_op(rs, bucket, op == SL_LEASE_TAKE ? "-1" : "-2", nums, holder, is_valid, cb, arg);
}

static void
redis_lease(struct sl_store *store, const struct sl_store_bucket *bucket, enum sl_lease_op op,
            int64_t milli, int64_t held_milli, uint64_t ttl2_ms, const char *holder,
            sl_store_lease_cb *cb, void *arg)
{
    sl_redis_node_lease((struct redis_store *)store, bucket, op, milli, held_milli, ttl2_ms,
                        holder, cb, arg);
}

void
sl_redis_node_refund(struct redis_store *rs, const struct sl_store_bucket *bucket,
                     sl_store_lease_cb *cb, void *arg)
{
    queue_op(rs, bucket, "-3", NULL, NULL, true, cb, arg);
}

void
sl_redis_node_reset(struct redis_store *rs, const char *key, size_t key_len, sl_store_cb *cb,
                    void *arg)
{
    enum sl_store_status status;
    struct batch *b;

    sl_redis_enter(rs);
    if (!may_queue(rs, key_len, &status)) {
        fail_now(rs, cb, arg, status);
        goto out;
    }
    b = sl_redis_batch_get(rs);
    b->is_reset = true;
    if (sl_redis_resp_arg(&b->keys, key, key_len) == -1) {
        sl_redis_batch_release(rs, b);
        fail_now(rs, cb, arg, SL_STORE_TIMEOUT);
        goto out;
    }
    b->nkeys = 1;
    enqueue(rs, b, true, (struct pending){ 0 }, (struct pending){ .cb = cb, .arg = arg });
out:
    sl_redis_leave(rs);
}

bool
sl_redis_is_store(const struct sl_store *store)
{
    return store != NULL && (store->ops == &redis_ops || sl_redis_cluster_is(store));
}

struct redis_store *
sl_redis_store_for_key(struct sl_store *store, const char *key, size_t key_len)
{
    if (store == NULL)
        return NULL;
    if (store->ops == &redis_ops)
        return (struct redis_store *)store;
    return sl_redis_cluster_node_for(store, key, key_len);
}

static void
redis_reset(struct sl_store *store, const char *key, size_t key_len, sl_store_cb *cb, void *arg)
{
    sl_redis_node_reset((struct redis_store *)store, key, key_len, cb, arg);
}

void
sl_redis_batch_move(struct redis_store *from, struct batch *b, struct redis_store *to,
                    bool is_asking)
{
    enum sl_store_status status;
    struct batch *nb;

    if (!may_queue(to, 0, &status)) {
        sl_redis_batch_fail(from, b, status);
        return;
    }
    nb = sl_redis_batch_get(to);
    SWAP(struct sl_buf, nb->keys, b->keys);
    SWAP(struct sl_buf, nb->args, b->args);
    SWAP(struct pending *, nb->checks, b->checks);
    SWAP(size_t, nb->checks_cap, b->checks_cap);
    nb->nchecks = b->nchecks;
    nb->nkeys = b->nkeys;
    nb->nargs = b->nargs;
    nb->is_reset = b->is_reset;
    nb->is_declared = b->is_declared;
    nb->is_asking = is_asking;
    nb->redirects = b->redirects + 1;
    b->nchecks = 0;
    queue_append(to, nb);
    to->nqueued += nb->nchecks;
    to->queued_bytes += nb->keys.len;
    schedule_flush(to);
}

/* One check answered with an error, alone. */
static void
pending_fail(struct redis_store *rs, const struct pending *p, enum sl_store_status status)
{
    if (p->lease_cb != NULL)
        lease_fail_now(rs, p->lease_cb, p->arg, status);
    else
        fail_now(rs, p->cb, p->arg, status);
}

void
sl_redis_check_resend(struct redis_store *rs, const struct batch *b, size_t i)
{
    const struct pending *p = &b->checks[i];
    enum sl_store_status status;
    struct batch *nb;

    if (b->redirects >= NODE_REDIRECTS_MAX) {
        pending_fail(rs, p, SL_STORE_REPLY);
        return;
    }
    if (!may_queue(rs, p->keys_len, &status)) {
        pending_fail(rs, p, status);
        return;
    }
    nb = sl_redis_batch_get(rs);
    nb->is_declared = true;
    nb->redirects = b->redirects + 1;
    if (sl_buf_append(&nb->keys, b->keys.data + p->keys_off, p->keys_len) == -1
        || sl_buf_append(&nb->args, b->args.data + p->args_off, p->args_len) == -1) {
        sl_redis_batch_release(rs, nb);
        pending_fail(rs, p, SL_STORE_TIMEOUT);
        return;
    }
    nb->nkeys = p->nkeys;
    nb->nargs = p->nargs;
    enqueue(rs, nb, true, (struct pending){ 0 }, *p);
}

static bool
redis_is_up(const struct sl_store *store)
{
    return sl_redis_get_state((const struct redis_store *)store) == CONN_UP;
}

static void
redis_stats(const struct sl_store *store, struct sl_store_stats *st)
{
    const struct redis_store *rs = (const struct redis_store *)store;

#define LOAD(f) atomic_load_explicit(&rs->f, memory_order_relaxed)
    st->checks = LOAD(checks);
    st->calls = LOAD(calls);
    st->errors_timeout = LOAD(errors_timeout);
    st->errors_connection = LOAD(errors_connection);
    st->errors_reply = LOAD(errors_reply);
    st->connects = LOAD(connects);
    st->reconnects = LOAD(reconnects);
    st->noscript_reloads = LOAD(noscript_reloads);
#undef LOAD
}

static void
redis_free(struct sl_store *store)
{
    struct redis_store *rs = (struct redis_store *)store;

    sl_redis_enter(rs);
    rs->is_freeing = true;
    sl_redis_sentinel_stop(rs);
    evtimer_del(rs->reconnect_timer);
    event_del(rs->flush_ev);
    sl_redis_conn_down(rs, SL_STORE_CONNECTION, "store closed");
    sl_redis_fail_all(rs, SL_STORE_CONNECTION); /* when it was down already */
    sl_redis_leave(rs);
}

static const struct sl_store_ops redis_ops = {
    .name = "redis",
    .check = redis_check,
    .is_up = redis_is_up,
    .free = redis_free,
    .stats = redis_stats,
    .reset = redis_reset,
    .lease = redis_lease,
};

struct sl_store *
sl_store_redis_new(const struct sl_store_conf *conf, struct event_base *base, char *err,
                   size_t err_size)
{
    return sl_store_redis_new_resolved(conf, base, NULL, err, err_size);
}

/* "host:port", "[v6]:port" or "unix:path": log lines and metrics name a
 * server so, never with credentials. */
static char *
server_name_of(const char *host, int port, const char *path)
{
    char name[512];

    if (path != NULL)
        snprintf(name, sizeof(name), "unix:%s", path);
    else if (strchr(host, ':') != NULL)
        snprintf(name, sizeof(name), "[%s]:%d", host, port);
    else
        snprintf(name, sizeof(name), "%s:%d", host, port);
    return sl_xstrdup(name);
}

/* The parts every store starts with, once url, name and TLS are set. */
static void
store_start(struct redis_store *rs, struct event_base *base, uint64_t timeout_ms)
{
    rs->base.ops = &redis_ops;
    rs->evbase = base;
    rs->timeout_ms = timeout_ms;
    rs->script = sl_token_bucket_lua;
    rs->script_len = strlen(sl_token_bucket_lua);
    rs->backoff_ms = BACKOFF_MIN_MS;
    if (rs->sentinel == NULL && !rs->url.is_sentinel)
        rs->node = sl_redis_node_get(rs->name); /* Sentinel: the master's, at each connect */
    sl_redis_batch_init(rs);
    sl_redis_conn_init(rs);
}

static void
store_connect(struct redis_store *rs)
{
    sl_redis_set_state(rs, CONN_DOWN);
    sl_redis_enter(rs);
    sl_redis_connect_now(rs);
    sl_redis_leave(rs);
}

struct redis_store *
sl_redis_node_new(struct event_base *base, const struct redis_node_spec *spec,
                  struct redis_cluster *cluster)
{
    struct redis_store *rs = sl_xcalloc(1, sizeof(*rs));

    rs->url = (struct sl_redis_url){
        .is_tls = spec->url->is_tls, .host = sl_xstrdup(spec->host), .port = spec->port,
        .user = spec->url->user != NULL ? sl_xstrdup(spec->url->user) : NULL,
        .password = spec->url->password != NULL ? sl_xstrdup(spec->url->password) : NULL,
    };
    rs->name = server_name_of(spec->host, spec->port, NULL);
    if (spec->ssl_ctx != NULL) {
        SSL_CTX_up_ref(spec->ssl_ctx);
        rs->ssl_ctx = spec->ssl_ctx;
        rs->server_name = spec->server_name != NULL ? sl_xstrdup(spec->server_name) : NULL;
        rs->is_tls_verify = spec->is_tls_verify;
    }
    rs->cluster = cluster;
    store_start(rs, base, spec->timeout_ms);
    rs->script = sl_token_bucket_lua_sharded;
    rs->script_len = strlen(sl_token_bucket_lua_sharded);
    store_connect(rs);
    return rs;
}

struct sl_store *
sl_store_redis_new_resolved(const struct sl_store_conf *conf, struct event_base *base,
                            struct sl_resolver *resolver, char *err, size_t err_size)
{
    struct redis_store *rs = sl_xcalloc(1, sizeof(*rs));
    char name[512];

    if (parse_url(conf, &rs->url, err, err_size) == -1) {
        free(rs);
        return NULL;
    }
    if (rs->url.is_cluster) {
        sl_redis_url_fini(&rs->url);
        free(rs);
        return sl_redis_cluster_new(conf, base, resolver, err, err_size);
    }
    if (rs->url.is_sentinel) {
        snprintf(name, sizeof(name), "master \"%s\"", rs->url.master_name);
        rs->name = sl_xstrdup(name);
    } else {
        rs->name = server_name_of(rs->url.host, rs->url.port, rs->url.path);
    }
    if (rs->url.is_tls) {
        if (conf->tls.ssl_ctx == NULL) {
            /* config builds it for every rediss:// url it accepts */
            snprintf(err, err_size, "redis url: rediss:// without a TLS context");
            sl_redis_url_fini(&rs->url);
            free(rs->name);
            free(rs);
            return NULL;
        }
        SSL_CTX_up_ref(conf->tls.ssl_ctx);
        rs->ssl_ctx = conf->tls.ssl_ctx;
        rs->server_name = conf->tls.server_name != NULL ? sl_xstrdup(conf->tls.server_name) : NULL;
        rs->is_tls_verify = conf->tls.is_verify;
    }
    store_start(rs, base, conf->timeout_ms);
    rs->resolver = resolver;
    /* NULL when the conf that named it is gone already: the link looks it up */
    if (resolver != NULL && rs->url.host != NULL && sl_resolver_is_name(rs->url.host))
        rs->dns = sl_resolver_ref(resolver, rs->url.host);
    if (rs->url.is_sentinel)
        sl_redis_sentinel_init(rs, conf);
    store_connect(rs);
    return &rs->base;
}
