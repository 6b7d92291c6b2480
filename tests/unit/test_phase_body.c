/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Request bodies in the phase chain (include/sluice/phase.h): a phase that
 * passed sees the forwarded body and its end; a phase that reads the body
 * for itself (sl_phase_read_body) gets it alone, then answers; a request
 * that ends during the read tells the reader (incomplete), whose
 * continuation abandons the run, each on_end once; without a reader of the
 * owner's, sl_phase_read_body says no.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/phase.h"

struct seen {
    char body[64];
    size_t len;
    int ends;      /* on_request_body_end calls */
    int incomplete; /* ... with is_complete false */
    int on_end;
};

static struct seen hasher_seen, reader_seen;
static bool reader_ok; /* what the owner's reader answers */
static int reads_asked;

static void
add(struct seen *s, const char *at, size_t len)
{
    assert_true(s->len + len < sizeof(s->body));
    memcpy(s->body + s->len, at, len);
    s->len += len;
}

static void
hasher_request(struct sl_phase_run *run, void *conf, void *state)
{
    (void)conf;
    (void)state;
    sl_phase_pass(run);
}

static void
hasher_body(struct sl_phase_run *run, void *conf, void *state, const char *at, size_t len)
{
    (void)run;
    (void)conf;
    (void)state;
    add(&hasher_seen, at, len);
}

static void
hasher_body_end(struct sl_phase_run *run, void *conf, void *state, bool is_complete)
{
    (void)run;
    (void)conf;
    (void)state;
    hasher_seen.ends++;
    hasher_seen.incomplete += !is_complete;
}

static void
hasher_end(struct sl_phase_run *run, void *conf, void *state, const char *reason,
           struct sl_access_entry *log)
{
    (void)run;
    (void)conf;
    (void)state;
    (void)reason;
    (void)log;
    hasher_seen.on_end++;
}

static void
reader_request(struct sl_phase_run *run, void *conf, void *state)
{
    (void)conf;
    (void)state;
    if (!sl_phase_read_body(run))
        sl_phase_answer(run, 400, "{}", 2);
}

static void
reader_body(struct sl_phase_run *run, void *conf, void *state, const char *at, size_t len)
{
    (void)run;
    (void)conf;
    (void)state;
    add(&reader_seen, at, len);
}

static void
reader_body_end(struct sl_phase_run *run, void *conf, void *state, bool is_complete)
{
    (void)conf;
    (void)state;
    reader_seen.ends++;
    if (!is_complete) {
        reader_seen.incomplete++;
        sl_phase_pass(run);
        return;
    }
    sl_phase_answer(run, 422, "{}", 2);
}

static void
reader_end(struct sl_phase_run *run, void *conf, void *state, const char *reason,
           struct sl_access_entry *log)
{
    (void)run;
    (void)conf;
    (void)state;
    (void)reason;
    (void)log;
    reader_seen.on_end++;
}

static const struct sl_phase hasher = {
    .name = "hasher", .state_size = 8, .on_request = hasher_request,
    .on_request_body = hasher_body, .on_request_body_end = hasher_body_end,
    .on_end = hasher_end,
};
static const struct sl_phase reader = {
    .name = "reader", .state_size = 8, .on_request = reader_request,
    .on_request_body = reader_body, .on_request_body_end = reader_body_end,
    .on_end = reader_end,
};

struct owner {
    enum sl_phase_result result;
    int status;
    int ndone;
};

static void
on_done(void *arg, enum sl_phase_result result, int status, const char *body, size_t len)
{
    struct owner *o = arg;

    (void)body;
    (void)len;
    o->ndone++;
    o->result = result;
    o->status = status;
}

static bool
owner_reader(void *arg)
{
    (void)arg;
    reads_asked++;
    return reader_ok;
}

static struct sl_route_conf routes[1] = { { .path = "/", .path_len = 1 } };
static struct sl_config cfg = { .routes = routes, .nroutes = 1 };

static struct sl_phase_table *
table_of(const struct sl_phase *const *phases, size_t n)
{
    struct sl_phase_env env = { .cfg = &cfg };

    memset(&hasher_seen, 0, sizeof(hasher_seen));
    memset(&reader_seen, 0, sizeof(reader_seen));
    reads_asked = 0;
    reader_ok = true;
    return sl_phase_table_new_with(phases, n, &env);
}

static void
test_forwarded(void **state)
{
    const struct sl_phase *const phases[] = { &hasher };
    struct sl_phase_table *t = table_of(phases, 1);
    struct sl_phase_run run;
    struct sl_request req = { 0 };
    struct owner o = { 0 };

    (void)state;
    sl_phase_run_init(&run);
    assert_true(sl_phase_chain_wants_request_body(sl_phase_table_chain(t, 0)));
    sl_phase_run_start(&run, sl_phase_table_chain(t, 0), &req, on_done, &o);
    assert_int_equal(o.result, SL_PHASE_PASSED);
    sl_phase_request_body(&run, "ab", 2);
    sl_phase_request_body(&run, "c", 1);
    sl_phase_request_body_done(&run);
    assert_int_equal(hasher_seen.len, 3);
    assert_memory_equal(hasher_seen.body, "abc", 3);
    assert_int_equal(hasher_seen.ends, 1);
    assert_int_equal(hasher_seen.incomplete, 0);
    sl_phase_run_end(&run, NULL, NULL);
    assert_int_equal(hasher_seen.on_end, 1);
    sl_phase_run_fini(&run);
    sl_phase_table_free(t);
}

static void
test_read_for_a_phase(void **state)
{
    const struct sl_phase *const phases[] = { &hasher, &reader };
    struct sl_phase_table *t = table_of(phases, 2);
    struct sl_phase_run run;
    struct sl_request req = { 0 };
    struct owner o = { 0 };

    (void)state;
    sl_phase_run_init(&run);
    sl_phase_run_set_reader(&run, owner_reader, NULL);
    sl_phase_run_start(&run, sl_phase_table_chain(t, 0), &req, on_done, &o);
    assert_int_equal(reads_asked, 1);
    assert_int_equal(o.ndone, 0);
    assert_true(sl_phase_is_reading_body(&run));
    sl_phase_request_body(&run, "xy", 2);
    assert_int_equal(reader_seen.len, 2);
    assert_int_equal(hasher_seen.len, 0); /* not forwarded: the passed phase sees nothing */
    sl_phase_request_body_end(&run, true);
    assert_false(sl_phase_is_reading_body(&run));
    assert_int_equal(o.ndone, 1);
    assert_int_equal(o.result, SL_PHASE_ANSWERED);
    assert_int_equal(o.status, 422);
    sl_phase_run_end(&run, NULL, NULL);
    assert_int_equal(hasher_seen.on_end, 1);
    assert_int_equal(reader_seen.on_end, 1);
    sl_phase_run_fini(&run);
    sl_phase_table_free(t);
}

static void
test_request_ends_during_read(void **state)
{
    const struct sl_phase *const phases[] = { &hasher, &reader };
    struct sl_phase_table *t = table_of(phases, 2);
    struct sl_phase_run run;
    struct sl_request req = { 0 };
    struct owner o = { 0 };

    (void)state;
    sl_phase_run_init(&run);
    sl_phase_run_set_reader(&run, owner_reader, NULL);
    sl_phase_run_start(&run, sl_phase_table_chain(t, 0), &req, on_done, &o);
    sl_phase_request_body(&run, "x", 1);
    sl_phase_run_end(&run, "client closed", NULL);
    assert_int_equal(reader_seen.ends, 1);
    assert_int_equal(reader_seen.incomplete, 1);
    assert_int_equal(o.ndone, 1);
    assert_int_equal(o.result, SL_PHASE_ABANDONED);
    assert_int_equal(hasher_seen.on_end, 1);
    assert_int_equal(reader_seen.on_end, 1);
    sl_phase_request_body_end(&run, true); /* late: goes nowhere */
    assert_int_equal(reader_seen.ends, 1);
    sl_phase_run_fini(&run);
    sl_phase_table_free(t);
}

static void
test_no_reader(void **state)
{
    const struct sl_phase *const phases[] = { &reader };
    struct sl_phase_table *t = table_of(phases, 1);
    struct sl_phase_run run;
    struct sl_request req = { 0 };
    struct owner o = { 0 };

    (void)state;
    sl_phase_run_init(&run);
    sl_phase_run_start(&run, sl_phase_table_chain(t, 0), &req, on_done, &o);
    assert_int_equal(o.status, 400); /* no owner's reader */
    sl_phase_run_end(&run, NULL, NULL);
    sl_phase_run_set_reader(&run, owner_reader, NULL);
    reader_ok = false; /* the owner has no body to read */
    sl_phase_run_start(&run, sl_phase_table_chain(t, 0), &req, on_done, &o);
    assert_int_equal(reads_asked, 1);
    assert_int_equal(o.status, 400);
    assert_false(sl_phase_is_reading_body(&run));
    sl_phase_run_end(&run, NULL, NULL);
    sl_phase_run_fini(&run);
    sl_phase_table_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forwarded),
        cmocka_unit_test(test_read_for_a_phase),
        cmocka_unit_test(test_request_ends_during_read),
        cmocka_unit_test(test_no_reader),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
