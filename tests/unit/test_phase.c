/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The phase chain through its API (include/sluice/phase.h), with fake
 * phases: every phase passing (synchronously and not), a phase answering
 * (later phases not run), an asynchronous phase completing later, headers
 * attached and the response hooks, the request ending while a phase waits
 * (the continuation still comes exactly once, on_end after it, the owner
 * freed in done: ASan sees any use after free), and a generation freed
 * under an abandoned run; full responses (respond, replace, released
 * exactly once) and lines for the upstream request. The owner plays the
 * proxy: a heap object holding the run, freed only once done has been
 * called.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/accesslog.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/phase.h"
#include "util/alloc.h"

/* ---- fake phases ------------------------------------------------------------ */

enum fake_mode { PASS_NOW, PASS_LATER, ANSWER_NOW, ANSWER_LATER, RESPOND_NOW, RESPOND_LATER };

struct fake_conf {
    enum fake_mode mode;
    const char *attach;       /* attached in on_request, before deciding */
    const char *attach_head;  /* attached in on_response_head */
    const char *attach_up;    /* attached to the upstream request in on_request */
    bool is_replacing;        /* replaces the response in on_response_head */
    int answer_status;
};

static int releases; /* full responses released */

static void
release(void *arg)
{
    (void)arg;
    releases++;
}

static const struct sl_phase_response cached = {
    .status = 200, .headers = "X-R: 1\r\n", .headers_len = 8, .body = "cached", .body_len = 6,
    .release = release,
};

/* What happened, in order, across all fake phases of a test. */
static char events[512];
static struct sl_phase_run *waiting_run; /* an ASYNC phase's request, until it decides */
static struct fake_conf *waiting_conf;
static int teardowns;

static void
note(const char *fmt, const char *name)
{
    size_t len = strlen(events);

    snprintf(events + len, sizeof(events) - len, fmt, name);
}

static const char *
name_of(const void *conf, const struct fake_conf *confs)
{
    static const char *const names[] = { "a", "b", "c" };

    return names[(const struct fake_conf *)conf - confs];
}

static struct fake_conf confs[3];

struct fake_state {
    unsigned requests;
};

static void
decide(struct sl_phase_run *run, struct fake_conf *fc)
{
    if (fc->mode == ANSWER_NOW || fc->mode == ANSWER_LATER)
        sl_phase_answer(run, fc->answer_status, SL_LIT("{\"status\":403}"));
    else if (fc->mode == RESPOND_NOW || fc->mode == RESPOND_LATER)
        sl_phase_respond(run, &cached);
    else
        sl_phase_pass(run);
}

static void
fake_request(struct sl_phase_run *run, void *conf, void *state)
{
    struct fake_conf *fc = conf;
    struct fake_state *st = state;

    assert_int_equal(st->requests, 0); /* zeroed for every request */
    st->requests++;
    note("req:%s ", name_of(fc, confs));
    assert_non_null(sl_phase_request(run));
    assert_false(sl_phase_is_abandoned(run));
    if (fc->attach != NULL)
        sl_phase_attach(run, fc->attach, strlen(fc->attach));
    if (fc->attach_up != NULL)
        sl_phase_attach_upstream(run, fc->attach_up, strlen(fc->attach_up));
    if (fc->mode == PASS_LATER || fc->mode == ANSWER_LATER || fc->mode == RESPOND_LATER) {
        waiting_run = run;
        waiting_conf = fc;
        return;
    }
    decide(run, fc);
}

static void
fake_head(struct sl_phase_run *run, void *conf, void *state, int status,
          const struct sl_header *headers, size_t n)
{
    struct fake_conf *fc = conf;

    (void)state;
    note("head:%s ", name_of(fc, confs));
    assert_int_equal(status, 200);
    assert_int_equal(n, 1);
    assert_true(sl_http_name_is(&headers[0], SL_LIT("content-type")));
    if (fc->attach_head != NULL)
        sl_phase_attach(run, fc->attach_head, strlen(fc->attach_head));
    if (fc->is_replacing)
        sl_phase_replace(run, &cached);
}

static void
fake_upstream_error(struct sl_phase_run *run, void *conf, void *state, int status)
{
    struct fake_conf *fc = conf;

    (void)state;
    note("error:%s ", name_of(fc, confs));
    assert_int_equal(status, 502);
    if (fc->is_replacing)
        sl_phase_replace(run, &cached);
}

static void
fake_body(struct sl_phase_run *run, void *conf, void *state, const char *at, size_t len)
{
    (void)run;
    (void)state;
    note("body:%s ", name_of(conf, confs));
    assert_memory_equal(at, "hello", len);
}

static void
fake_end(struct sl_phase_run *run, void *conf, void *state, const char *reason,
         struct sl_access_entry *log)
{
    (void)run;
    (void)state;
    note("end:%s", name_of(conf, confs));
    note("(%s) ", reason ? reason : "ok");
    if (log != NULL)
        log->limit = "fake";
}

static bool
fake_setup(const struct sl_phase_env *env, const struct sl_route_conf *route, void **conf)
{
    (void)env;
    /* route 1 runs no phase at all */
    if (route->path_len != 1)
        return false;
    *conf = NULL;
    return true;
}

static void
fake_teardown(void *conf)
{
    (void)conf;
    teardowns++;
    /* a generation going while a run it abandoned still waits: the
     * continuation comes now, as the limiter's does when it is freed */
    if (waiting_run != NULL) {
        struct sl_phase_run *run = waiting_run;
        waiting_run = NULL;
        decide(run, waiting_conf);
    }
}

/* Three instances of one phase kind, so that each has its own conf. */
static bool setup_a(const struct sl_phase_env *e, const struct sl_route_conf *r, void **c);
static bool setup_b(const struct sl_phase_env *e, const struct sl_route_conf *r, void **c);
static bool setup_c(const struct sl_phase_env *e, const struct sl_route_conf *r, void **c);

#define FAKE(setup_fn)                                                                           \
    {                                                                                            \
        .name = "fake", .state_size = sizeof(struct fake_state), .setup = setup_fn,              \
        .teardown = fake_teardown, .on_request = fake_request, .on_response_head = fake_head,   \
        .on_response_body = fake_body, .on_upstream_error = fake_upstream_error,                \
        .on_end = fake_end,                                                                      \
    }

static const struct sl_phase phase_a = FAKE(setup_a);
static const struct sl_phase phase_b = FAKE(setup_b);
static const struct sl_phase phase_c = FAKE(setup_c);
static const struct sl_phase *const fakes[] = { &phase_a, &phase_b, &phase_c };

#define SETUP(fn, i)                                                                             \
    static bool fn(const struct sl_phase_env *e, const struct sl_route_conf *r, void **c)       \
    {                                                                                            \
        if (!fake_setup(e, r, c))                                                                \
            return false;                                                                        \
        *c = &confs[i];                                                                          \
        return true;                                                                             \
    }
SETUP(setup_a, 0)
SETUP(setup_b, 1)
SETUP(setup_c, 2)

/* ---- the owner (the proxy's part) ---------------------------------------------- */

struct owner {
    struct sl_phase_run run;
    struct sl_request req;
    unsigned ndone;
    enum sl_phase_result result;
    int status;
    char body[64];
    bool is_dead;        /* the connection died: free on done */
};

static struct sl_route_conf routes[2] = {
    { .path = "/", .path_len = 1 },
    { .path = "/x", .path_len = 2 },
};
static struct sl_config cfg = { .routes = routes, .nroutes = 2 };
static struct sl_phase_table *table;

static void
on_done(void *arg, enum sl_phase_result result, int status, const char *body, size_t body_len)
{
    struct owner *o = arg;

    o->ndone++;
    o->result = result;
    o->status = status;
    note("done%s ", result == SL_PHASE_PASSED      ? ":passed"
                    : result == SL_PHASE_ANSWERED  ? ":answered"
                    : result == SL_PHASE_RESPONDED ? ":responded"
                                                   : ":abandoned");
    if (result == SL_PHASE_ANSWERED) {
        assert_true(body_len < sizeof(o->body));
        memcpy(o->body, body, body_len);
        o->body[body_len] = '\0';
    } else {
        assert_null(body);
    }
    if (o->is_dead) {
        assert_int_equal(result, SL_PHASE_ABANDONED);
        sl_phase_run_fini(&o->run);
        free(o);
    }
}

static struct owner *
owner_new(void)
{
    struct owner *o = sl_xcalloc(1, sizeof(*o));

    sl_phase_run_init(&o->run);
    o->req.method = "GET";
    o->req.method_len = 3;
    return o;
}

static void
owner_free(struct owner *o)
{
    sl_phase_run_fini(&o->run);
    free(o);
}

static void
start(struct owner *o, size_t route)
{
    sl_phase_run_start(&o->run, sl_phase_table_chain(table, route), &o->req, on_done, o);
}

static int
setup(void **state)
{
    struct sl_phase_env env = { .cfg = &cfg };

    (void)state;
    memset(confs, 0, sizeof(confs));
    confs[0].answer_status = confs[1].answer_status = confs[2].answer_status = 403;
    events[0] = '\0';
    waiting_run = NULL;
    teardowns = 0;
    releases = 0;
    table = sl_phase_table_new_with(fakes, 3, &env);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    sl_phase_table_free(table);
    assert_int_equal(teardowns, 3);
    return 0;
}

/* ---- tests -------------------------------------------------------------------- */

static void
test_pass_through(void **state)
{
    struct owner *o = owner_new();
    struct sl_access_entry log = { 0 };

    (void)state;
    start(o, 0);
    /* every phase decided at once: done came before start returned */
    assert_int_equal(o->ndone, 1);
    assert_int_equal(o->result, SL_PHASE_PASSED);
    assert_string_equal(events, "req:a req:b req:c done:passed ");
    sl_phase_run_end(&o->run, NULL, &log);
    sl_phase_run_end(&o->run, NULL, &log); /* a second end is nothing */
    assert_string_equal(events,
                        "req:a req:b req:c done:passed end:a(ok) end:b(ok) end:c(ok) ");
    assert_string_equal(log.limit, "fake");
    owner_free(o);
}

static void
test_route_without_phases(void **state)
{
    struct owner *o = owner_new();

    (void)state;
    assert_false(sl_phase_chain_wants_body(sl_phase_table_chain(table, 1)));
    start(o, 1);
    assert_int_equal(o->ndone, 1);
    assert_int_equal(o->result, SL_PHASE_PASSED);
    sl_phase_run_end(&o->run, NULL, NULL);
    assert_string_equal(events, "done:passed ");
    owner_free(o);
}

static void
test_answer_stops_the_chain(void **state)
{
    struct owner *o = owner_new();
    size_t len;
    const char *headers;

    (void)state;
    confs[0].attach = "X-A: 1\r\n";
    confs[1].mode = ANSWER_NOW;
    confs[1].attach = "Retry-After: 3\r\n";
    start(o, 0);
    assert_int_equal(o->ndone, 1);
    assert_int_equal(o->result, SL_PHASE_ANSWERED);
    assert_int_equal(o->status, 403);
    assert_string_equal(o->body, "{\"status\":403}");
    headers = sl_phase_headers(&o->run, &len);
    assert_int_equal(len, strlen("X-A: 1\r\nRetry-After: 3\r\n"));
    assert_memory_equal(headers, "X-A: 1\r\nRetry-After: 3\r\n", len);
    sl_phase_run_end(&o->run, NULL, NULL);
    /* c never ran, so it is not told the request ended either */
    assert_string_equal(events, "req:a req:b done:answered end:a(ok) end:b(ok) ");
    owner_free(o);
}

static void
test_async_phase_completes_later(void **state)
{
    struct owner *o = owner_new();

    (void)state;
    confs[1].mode = PASS_LATER;
    start(o, 0);
    assert_int_equal(o->ndone, 0);
    assert_string_equal(events, "req:a req:b ");
    assert_non_null(waiting_run);
    waiting_run = NULL;
    sl_phase_pass(&o->run); /* the store answered */
    assert_int_equal(o->ndone, 1);
    assert_int_equal(o->result, SL_PHASE_PASSED);
    assert_string_equal(events, "req:a req:b req:c done:passed ");

    /* later an answer, for the connection's next request: state starts zeroed */
    confs[1].mode = ANSWER_LATER;
    sl_phase_run_end(&o->run, NULL, NULL);
    events[0] = '\0';
    start(o, 0);
    assert_int_equal(o->ndone, 1);
    waiting_run = NULL;
    sl_phase_answer(&o->run, 429, SL_LIT("{}"));
    assert_int_equal(o->ndone, 2);
    assert_int_equal(o->status, 429);
    assert_string_equal(events, "req:a req:b done:answered ");
    sl_phase_run_end(&o->run, NULL, NULL);
    owner_free(o);
}

static void
test_headers_and_response_hooks(void **state)
{
    struct owner *o = owner_new();
    struct sl_header h = { SL_LIT("Content-Type"), SL_LIT("text/plain") };
    size_t len;
    const char *headers;

    (void)state;
    confs[0].attach = "RateLimit: \"p\";r=9;t=1\r\n";
    confs[2].attach_head = "X-Cache: MISS\r\n";
    start(o, 0);
    assert_int_equal(o->result, SL_PHASE_PASSED);
    assert_true(sl_phase_chain_wants_body(sl_phase_table_chain(table, 0)));
    sl_phase_response_head(&o->run, 200, &h, 1);
    sl_phase_response_body(&o->run, "hello", 5);
    headers = sl_phase_headers(&o->run, &len);
    assert_int_equal(len, strlen("RateLimit: \"p\";r=9;t=1\r\nX-Cache: MISS\r\n"));
    assert_memory_equal(headers, "RateLimit: \"p\";r=9;t=1\r\nX-Cache: MISS\r\n", len);
    sl_phase_run_end(&o->run, NULL, NULL);
    assert_string_equal(events, "req:a req:b req:c done:passed head:a head:b head:c "
                                "body:a body:b body:c end:a(ok) end:b(ok) end:c(ok) ");
    /* the next request on the connection starts with no headers attached */
    confs[0].attach = NULL;
    confs[2].attach_head = NULL;
    start(o, 0);
    sl_phase_headers(&o->run, &len);
    assert_int_equal(len, 0);
    sl_phase_run_end(&o->run, NULL, NULL);
    owner_free(o);
}

static void
test_connection_dies_while_pending(void **state)
{
    struct owner *o = owner_new();
    struct sl_phase_run *run;

    (void)state;
    confs[1].mode = ANSWER_LATER;
    start(o, 0);
    assert_int_equal(o->ndone, 0);
    /* the client goes away: the proxy ends the request and marks itself dead,
     * keeping its memory (the run) until done */
    sl_phase_run_end(&o->run, "client closed", NULL);
    o->is_dead = true;
    assert_string_equal(events, "req:a req:b end:a(client closed) ");
    assert_true(sl_phase_is_abandoned(&o->run));
    /* the store answers at last; the owner frees itself inside done */
    run = waiting_run;
    waiting_run = NULL;
    sl_phase_answer(run, 429, SL_LIT("{}"));
    assert_string_equal(events,
                        "req:a req:b end:a(client closed) end:b(client closed) done:abandoned ");
}

static void
test_generation_freed_under_abandoned_run(void **state)
{
    struct owner *o = owner_new();

    (void)state;
    confs[0].mode = PASS_LATER;
    start(o, 0);
    sl_phase_run_end(&o->run, "shutdown", NULL);
    o->is_dead = true;
    /* the teardown completes the waiting phase (fake_teardown) */
    sl_phase_table_free(table);
    table = NULL;
    assert_null(waiting_run);
    assert_string_equal(events, "req:a end:a(shutdown) done:abandoned ");
}

/* A full response: taken by the owner, released once, later phases not run. */
static void
test_respond(void **state)
{
    struct owner *o = owner_new();
    struct sl_phase_response r;

    (void)state;
    confs[1].mode = RESPOND_NOW;
    start(o, 0);
    assert_int_equal(o->result, SL_PHASE_RESPONDED);
    assert_int_equal(o->status, 200);
    assert_true(sl_phase_take_response(&o->run, &r));
    assert_false(sl_phase_take_response(&o->run, &r)); /* taken: gone from the run */
    assert_int_equal(r.body_len, 6);
    assert_memory_equal(r.body, "cached", 6);
    assert_int_equal(releases, 0);
    r.release(r.release_arg);
    sl_phase_run_end(&o->run, NULL, NULL);
    assert_string_equal(events, "req:a req:b done:responded end:a(ok) end:b(ok) ");
    owner_free(o);
    assert_int_equal(releases, 1);
}

/* Responding after the request ended: the response is released, not sent;
 * one left untaken in the run is released by the next start or fini. */
static void
test_respond_abandoned(void **state)
{
    struct owner *o = owner_new();

    (void)state;
    confs[0].mode = RESPOND_LATER;
    start(o, 0);
    sl_phase_run_end(&o->run, "client closed", NULL);
    decide(waiting_run, waiting_conf);
    waiting_run = NULL;
    assert_int_equal(releases, 1);
    assert_string_equal(events, "req:a end:a(client closed) done:abandoned ");
    confs[0].mode = RESPOND_NOW;
    start(o, 0); /* the owner leaves the response in the run */
    owner_free(o);
    assert_int_equal(releases, 2);
}

/* Lines for the upstream request; a phase replacing the upstream's head or
 * error; the last replacement wins, the one it replaced is released. */
static void
test_replace_and_upstream_lines(void **state)
{
    struct owner *o = owner_new();
    struct sl_header h = { SL_LIT("Content-Type"), SL_LIT("text/plain") };
    struct sl_phase_response r;
    const char *up;
    size_t len;

    (void)state;
    confs[0].attach_up = "If-None-Match: \"a\"\r\n";
    confs[2].attach_up = "X-B: 2\r\n";
    confs[1].is_replacing = true;
    confs[2].is_replacing = true;
    start(o, 0);
    {
        struct sl_header inm = { SL_LIT("If-None-Match"), SL_LIT("\"x\"") };
        assert_false(sl_phase_is_hidden(&o->run, &inm));
        for (int i = 0; i < SL_PHASE_HIDE_MAX; i++)
            assert_true(sl_phase_hide_upstream(&o->run, SL_LIT("if-none-match")));
        assert_false(sl_phase_hide_upstream(&o->run, SL_LIT("if-modified-since")));
        assert_true(sl_phase_is_hidden(&o->run, &inm));
        assert_false(sl_phase_is_hidden(&o->run, &h));
    }
    up = sl_phase_upstream_headers(&o->run, &len);
    assert_int_equal(len, strlen("If-None-Match: \"a\"\r\nX-B: 2\r\n"));
    assert_memory_equal(up, "If-None-Match: \"a\"\r\nX-B: 2\r\n", len);
    sl_phase_response_head(&o->run, 200, &h, 1);
    assert_int_equal(releases, 1); /* b's, replaced by c's */
    assert_true(sl_phase_take_response(&o->run, &r));
    r.release(r.release_arg);
    sl_phase_upstream_error(&o->run, 502);
    assert_int_equal(releases, 3);
    assert_true(sl_phase_take_response(&o->run, &r));
    r.release(r.release_arg);
    sl_phase_run_end(&o->run, NULL, NULL);
    assert_string_equal(events, "req:a req:b req:c done:passed head:a head:b head:c error:a "
                                "error:b error:c end:a(ok) end:b(ok) end:c(ok) ");
    owner_free(o);
    assert_int_equal(releases, 4);
}

/* A route may have every built-in phase at once (a deprecated, cached,
 * limited route): their states together must fit, or the load aborts. */
static void
test_builtin_states_fit(void **state)
{
    const struct sl_phase *const all[] = { &sl_phase_lifecycle, &sl_phase_limit,
                                           &sl_phase_idem, &sl_phase_cache };
    size_t total = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        total += (all[i]->state_size + 15) & ~(size_t)15;
    assert_true(total <= SL_PHASE_STATE_MAX);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_states_fit),
        cmocka_unit_test_setup_teardown(test_pass_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_without_phases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_stops_the_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_phase_completes_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_headers_and_response_hooks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_dies_while_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generation_freed_under_abandoned_run, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_respond, setup, teardown),
        cmocka_unit_test_setup_teardown(test_respond_abandoned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_and_upstream_lines, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
