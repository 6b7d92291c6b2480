/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The cache phase's claim on a missed key (src/phase_cache.c), through the
 * phase API: it goes as soon as the response is known not to be stored (an
 * unstorable head, a body past max_object, an upstream error), before the
 * request ends, and a request waiting on it then goes upstream on its own
 * without claiming; a WebSocket handshake never claims and is never a hit.
 * The owner plays the proxy, as in test_phase.c; a real event base runs the
 * waiter's poll timer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "cache_http.h"
#include "sluice/cache.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/phase.h"
#include "util/alloc.h"
#include "util/clock.h"

#define LOCK_US (5000u * 1000u)

static struct sl_cache_conf cache_conf = {
    .ttl_ms = 60000, .max_memory = 1u << 20, .max_object = 16, .lock_timeout_ms = 5000,
};
static struct sl_route_conf route = {
    .path = "/", .path_len = 1, .cache = &cache_conf,
};
static struct sl_upstream_conf upstream_conf;
static struct sl_config cfg = {
    .routes = &route, .nroutes = 1, .upstreams = &upstream_conf, .nupstreams = 1,
};

static const struct sl_header ws_headers[] = {
    { SL_LIT("Upgrade"), SL_LIT("websocket") },
    { SL_LIT("Connection"), SL_LIT("Upgrade") },
};

struct owner {
    struct sl_phase_run run;
    struct sl_request req;
    unsigned ndone;
    enum sl_phase_result result;
};

struct fixture {
    struct event_base *base;
    struct sl_phase_table *table;
    struct sl_cache *store;
    char *key;
    size_t key_len;
};

static void
on_done(void *arg, enum sl_phase_result result, int status, const char *body, size_t body_len)
{
    struct owner *o = arg;

    (void)status;
    (void)body;
    (void)body_len;
    o->ndone++;
    o->result = result;
}

static void
owner_start(struct fixture *f, struct owner *o, const struct sl_header *h, size_t n)
{
    memset(o, 0, sizeof(*o));
    sl_phase_run_init(&o->run);
    o->req.method = "GET";
    o->req.method_len = 3;
    o->req.path = "/u";
    o->req.path_len = 2;
    o->req.host = "test";
    o->req.host_len = 4;
    o->req.http_minor = 1;
    o->req.headers = h;
    o->req.nheaders = n;
    sl_phase_run_start(&o->run, sl_phase_table_chain(f->table, 0), &o->req, on_done, o);
}

static void
owner_end(struct owner *o)
{
    sl_phase_run_end(&o->run, NULL, NULL);
    sl_phase_run_fini(&o->run);
}

static bool
is_claimed(struct fixture *f)
{
    return sl_cache_is_claimed(f->store, f->key, f->key_len, sl_clock_now_us(), LOCK_US);
}

static int
setup(void **state)
{
    static const struct sl_phase *const phases[] = { &sl_phase_cache };
    struct fixture *f = sl_xcalloc(1, sizeof(*f));
    struct sl_phase_env env = { .cfg = &cfg };
    struct owner o = { 0 };

    f->base = event_base_new();
    env.base = f->base;
    f->table = sl_phase_table_new_with(phases, 1, &env);
    f->store = sl_phase_cache_store(&route);
    owner_start(f, &o, NULL, 0); /* only for the key */
    f->key = sl_cache_key(&o.req, &f->key_len);
    owner_end(&o);
    sl_cache_purge(f->store, "", 0, true);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    sl_cache_purge(f->store, "", 0, true);
    sl_phase_table_free(f->table);
    sl_cache_put(f->store);
    event_base_free(f->base);
    free(f->key);
    free(f);
    return 0;
}

/* An unstorable head (no-store, a WebSocket 101) releases the claim at once. */
static void
test_unstorable_head_releases(void **state)
{
    struct fixture *f = *state;
    struct sl_header no_store = { SL_LIT("Cache-Control"), SL_LIT("no-store") };
    struct owner o;

    owner_start(f, &o, NULL, 0);
    assert_int_equal(o.result, SL_PHASE_PASSED);
    assert_true(is_claimed(f));
    sl_phase_response_head(&o.run, 200, &no_store, 1);
    assert_false(is_claimed(f)); /* before the exchange ends */
    sl_phase_response_body(&o.run, "streaming", 9);
    owner_end(&o);
    assert_false(is_claimed(f));

    owner_start(f, &o, NULL, 0);
    assert_true(is_claimed(f));
    sl_phase_upstream_error(&o.run, 502);
    assert_false(is_claimed(f));
    owner_end(&o);
}

/* A storable head keeps the claim until its body passes max_object. */
static void
test_body_past_max_object_releases(void **state)
{
    struct fixture *f = *state;
    struct owner o;

    owner_start(f, &o, NULL, 0);
    sl_phase_response_head(&o.run, 200, NULL, 0);
    sl_phase_response_body(&o.run, "0123456789", 10);
    assert_true(is_claimed(f)); /* may still be stored */
    sl_phase_response_body(&o.run, "0123456789", 10);
    assert_false(is_claimed(f));
    owner_end(&o);
    assert_false(sl_phase_cache_is_hit(f->store, &o.req));
}

/* A waiter woken by the release goes upstream on its own, without a claim. */
static void
test_waiter_goes_alone(void **state)
{
    struct fixture *f = *state;
    struct sl_header no_store = { SL_LIT("Cache-Control"), SL_LIT("no-store") };
    struct owner first, waiter;

    owner_start(f, &first, NULL, 0);
    owner_start(f, &waiter, NULL, 0);
    assert_int_equal(waiter.ndone, 0); /* collapsed */
    sl_phase_response_head(&first.run, 200, &no_store, 1);
    for (int i = 0; i < 100 && waiter.ndone == 0; i++)
        event_base_loop(f->base, EVLOOP_ONCE); /* the 5 ms poll */
    assert_int_equal(waiter.ndone, 1);
    assert_int_equal(waiter.result, SL_PHASE_PASSED);
    assert_false(is_claimed(f)); /* it went alone: no claim to hold others */
    owner_end(&first);
    owner_end(&waiter);
}

/* A WebSocket handshake claims nothing, and a stored entry is no answer to it. */
static void
test_websocket_bypasses(void **state)
{
    struct fixture *f = *state;
    struct owner o;
    const char *lines;
    size_t len;

    owner_start(f, &o, NULL, 0);
    sl_phase_response_head(&o.run, 200, NULL, 0);
    sl_phase_response_body(&o.run, "ok", 2);
    owner_end(&o);
    assert_true(sl_phase_cache_is_hit(f->store, &o.req));

    owner_start(f, &o, ws_headers, 2);
    assert_int_equal(o.result, SL_PHASE_PASSED);
    assert_false(is_claimed(f));
    assert_false(sl_phase_cache_is_hit(f->store, &o.req));
    lines = sl_phase_headers(&o.run, &len);
    assert_int_equal(len, strlen("Cache-Status: sluice; fwd=bypass\r\n"));
    assert_memory_equal(lines, "Cache-Status: sluice; fwd=bypass\r\n", len);
    sl_phase_response_head(&o.run, 101, ws_headers, 2);
    assert_false(is_claimed(f));
    owner_end(&o);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unstorable_head_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_past_max_object_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiter_goes_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_websocket_bypasses, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
