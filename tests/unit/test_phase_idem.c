/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The idempotency phase (src/phase_idem.c, included for its statics) over
 * the embedded table: which requests it touches, 400 for a missing or bad
 * key, a claim passes, 409 while it is held, the response kept at its last
 * byte and replayed (with the stored head and Idempotent-Replayed), 422
 * for another target or body, scopes kept apart, and release after a 5xx,
 * an oversized response or a response broken off. The run is driven by hand,
 * without a chain: each decision is synchronous with the embedded table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/phase_idem.c"

#define HDR(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

struct fixture {
    struct sl_idempotency_conf ic;
    char *methods[1];
    struct idem_conf conf;
    struct sl_phase_run run;
    struct idem_state st;
    int sync;
    enum sl_phase_result result;
    int status;
    bool is_read_asked;
};

static void
on_done(void *arg, enum sl_phase_result result, int status, const char *body, size_t len)
{
    struct fixture *f = arg;

    (void)body;
    (void)len;
    f->result = result;
    f->status = status;
}

static bool
fake_reader(void *arg)
{
    struct fixture *f = arg;

    f->is_read_asked = true;
    return true;
}

static int
setup(void **state)
{
    struct fixture *f = sl_xcalloc(1, sizeof(*f));
    struct sl_route_conf route = { .path = "/" };

    f->methods[0] = "POST";
    f->ic = (struct sl_idempotency_conf){ .methods = f->methods, .nmethods = 1,
                                          .ttl_ms = 60000, .lock_ms = 60000,
                                          .max_response = 4096,
                                          .scope = { SL_KEY_HEADER, "authorization", 13 } };
    f->conf.ic = &f->ic;
    f->conf.table = sl_idem_table_new(1 << 20);
    f->conf.prefix = "t";
    route_identity(&route, f->conf.route_id);
    sl_phase_run_init(&f->run);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    sl_phase_run_fini(&f->run);
    sl_idem_table_free(f->conf.table);
    free(f);
    return 0;
}

/* One request into the phase; returns what it decided (the status, or 0
 * for a pass; RESPONDED: the response is in f->run). */
static int
start(struct fixture *f, const struct sl_request *req)
{
    memset(&f->st, 0, sizeof(f->st));
    f->run.req = req;
    f->run.done = on_done;
    f->run.done_arg = f;
    f->run.is_pending = true;
    f->run.is_ended = false;
    f->run.is_reading_body = false;
    f->run.headers_len = 0;
    f->sync = 0;
    f->run.sync_result = &f->sync;
    f->status = -1;
    f->is_read_asked = false;
    idem_request(&f->run, &f->conf, &f->st);
    if (f->is_read_asked)
        return -2;
    return f->status == -1 ? 0 : f->status;
}

/* The upstream answers `status` with `body` (Content-Length), and the
 * request ends (reason NULL: completely). */
static void
respond(struct fixture *f, int status, const char *body, const char *reason)
{
    char len[16];
    struct sl_header hs[] = { { "Content-Type", 12, "text/plain", 10 },
                              { "Content-Length", 14, len, 0 },
                              { "Connection", 10, "keep-alive", 10 } };

    hs[1].value_len = (size_t)snprintf(len, sizeof(len), "%zu", strlen(body));
    idem_response_head(&f->run, &f->conf, &f->st, status, hs, 3);
    idem_response_body(&f->run, &f->conf, &f->st, body, strlen(body));
    idem_end(&f->run, &f->conf, &f->st, reason, NULL);
}

static struct sl_request
post(const char *target, struct sl_header *hs, size_t n)
{
    return (struct sl_request){ .method = "POST", .method_len = 4, .target = target,
                                .target_len = strlen(target), .headers = hs, .nheaders = n,
                                .client_ip = "192.0.2.1", .client_ip_len = 9 };
}

static void
test_which_requests(void **state)
{
    struct fixture *f = *state;
    struct sl_header key = HDR("Idempotency-Key", "\"k\"");
    struct sl_header two[] = { HDR("Idempotency-Key", "a"), HDR("idempotency-key", "b") };
    struct sl_header bad = HDR("Idempotency-Key", "");
    struct sl_request req = post("/a", &key, 1);

    req.method = "GET";
    req.method_len = 3;
    assert_int_equal(start(f, &req), 0); /* not a listed method */
    assert_int_equal(f->st.stage, ST_NONE);
    req = post("/a", NULL, 0);
    assert_int_equal(start(f, &req), 0); /* no key, not required */
    f->ic.is_required = true;
    assert_int_equal(start(f, &req), 400);
    assert_string_equal(answer_reason(f->st.status), "idempotency key missing");
    f->ic.is_required = false;
    req = post("/a", two, 2);
    assert_int_equal(start(f, &req), 400);
    req = post("/a", &bad, 1);
    assert_int_equal(start(f, &req), 400);
}

static void
test_claim_replay_mismatch(void **state)
{
    struct fixture *f = *state;
    struct sl_header hs[] = { HDR("Idempotency-Key", "k1"), HDR("Authorization", "alice") };
    struct sl_header bob[] = { HDR("Idempotency-Key", "k1"), HDR("Authorization", "bob") };
    struct sl_request req = post("/a", hs, 2);
    struct sl_request other = post("/b", hs, 2);
    struct sl_request req_bob = post("/a", bob, 2);
    struct sl_phase_response resp;
    struct idem_state first;
    size_t attached;
    const char *lines;

    assert_int_equal(start(f, &req), 0);
    assert_int_equal(f->st.stage, ST_CLAIMED);
    first = f->st;
    assert_int_equal(start(f, &req), 409); /* held by the first */
    assert_int_equal(start(f, &req_bob), 0); /* another scope: another key */
    idem_end(&f->run, &f->conf, &f->st, "client closed", NULL); /* bob's goes */
    f->st = first;
    respond(f, 201, "made", NULL);

    assert_int_equal(start(f, &req), 201);
    assert_int_equal(f->result, SL_PHASE_RESPONDED);
    assert_true(sl_phase_take_response(&f->run, &resp));
    assert_int_equal(resp.status, 201);
    assert_int_equal(resp.body_len, 4);
    assert_memory_equal(resp.body, "made", 4);
    assert_non_null(memmem(resp.headers, resp.headers_len, "Content-Type: text/plain\r\n", 26));
    assert_null(memmem(resp.headers, resp.headers_len, "Connection", 10));
    assert_null(memmem(resp.headers, resp.headers_len, "Content-Length", 14));
    lines = sl_phase_headers(&f->run, &attached);
    assert_int_equal(attached, 27);
    assert_memory_equal(lines, "Idempotent-Replayed: true\r\n", 27);
    resp.release(resp.release_arg);
    idem_end(&f->run, &f->conf, &f->st, NULL, NULL);

    assert_int_equal(start(f, &other), 422); /* same key, another target */
    idem_end(&f->run, &f->conf, &f->st, NULL, NULL);
}

static void
test_body_fingerprint(void **state)
{
    struct fixture *f = *state;
    struct sl_header hs[] = { HDR("Idempotency-Key", "k2") };
    struct sl_request req = post("/a", hs, 1);
    struct sl_phase_response resp;

    assert_int_equal(start(f, &req), 0);
    idem_request_body(&f->run, &f->conf, &f->st, "ab", 2);
    idem_request_body(&f->run, &f->conf, &f->st, "c", 1);
    respond(f, 200, "ok", NULL);

    /* again: the body is read for the phase, in other pieces */
    sl_phase_run_set_reader(&f->run, fake_reader, f);
    assert_int_equal(start(f, &req), -2);
    idem_request_body(&f->run, &f->conf, &f->st, "a", 1);
    idem_request_body(&f->run, &f->conf, &f->st, "bc", 2);
    idem_request_body_end(&f->run, &f->conf, &f->st, true);
    assert_int_equal(f->status, 200);
    assert_true(sl_phase_take_response(&f->run, &resp));
    resp.release(resp.release_arg);
    idem_end(&f->run, &f->conf, &f->st, NULL, NULL);

    /* another body: 422 */
    assert_int_equal(start(f, &req), -2);
    idem_request_body(&f->run, &f->conf, &f->st, "abd", 3);
    idem_request_body_end(&f->run, &f->conf, &f->st, true);
    assert_int_equal(f->status, 422);
    idem_end(&f->run, &f->conf, &f->st, NULL, NULL);
    sl_phase_run_set_reader(&f->run, NULL, NULL);
}

static void
test_release(void **state)
{
    struct fixture *f = *state;
    struct sl_header hs[] = { HDR("Idempotency-Key", "k3") };
    struct sl_request req = post("/a", hs, 1);
    char big[5000];

    assert_int_equal(start(f, &req), 0);
    respond(f, 503, "busy", NULL); /* a 5xx: released */
    assert_int_equal(start(f, &req), 0);
    {
        struct sl_header hs4[] = { HDR("Content-Length", "4") };
        idem_response_head(&f->run, &f->conf, &f->st, 200, hs4, 1);
        idem_response_body(&f->run, &f->conf, &f->st, "ok", 2);
        idem_end(&f->run, &f->conf, &f->st, "upstream closed", NULL); /* broken off */
    }
    assert_int_equal(start(f, &req), 0);
    idem_upstream_error(&f->run, &f->conf, &f->st, 502);
    idem_end(&f->run, &f->conf, &f->st, NULL, NULL);
    assert_int_equal(start(f, &req), 0);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    respond(f, 200, big, NULL); /* over max_response: released */
    assert_int_equal(start(f, &req), 0);
    respond(f, 200, "ok", NULL);
    assert_int_equal(start(f, &req), 200); /* kept at last */
    idem_end(&f->run, &f->conf, &f->st, NULL, NULL);
}

/* An upstream that answers before the body is all up: the fingerprint would
 * be of part of it, so nothing is kept. */
static void
test_early_answer(void **state)
{
    struct fixture *f = *state;
    struct sl_header cl[] = { HDR("Idempotency-Key", "k5"), HDR("Content-Length", "5") };
    struct sl_request req = post("/a", cl, 2);

    assert_int_equal(start(f, &req), 0);
    idem_request_body(&f->run, &f->conf, &f->st, "ab", 2);
    respond(f, 200, "early", NULL);
    assert_int_equal(start(f, &req), 0); /* released */
    idem_request_body(&f->run, &f->conf, &f->st, "abcde", 5);
    idem_request_body_end(&f->run, &f->conf, &f->st, true); /* forwarded whole */
    respond(f, 200, "late", NULL);
    sl_phase_run_set_reader(&f->run, fake_reader, f);
    assert_int_equal(start(f, &req), -2); /* kept: read the body to compare */
    idem_request_body(&f->run, &f->conf, &f->st, "abcde", 5);
    idem_request_body_end(&f->run, &f->conf, &f->st, true);
    assert_int_equal(f->status, 200);
    idem_end(&f->run, &f->conf, &f->st, NULL, NULL);
    sl_phase_run_set_reader(&f->run, NULL, NULL);
}

static void
test_no_store(void **state)
{
    struct fixture *f = *state;
    struct sl_header hs[] = { HDR("Idempotency-Key", "k4") };
    struct sl_request req = post("/a", hs, 1);
    struct sl_idem_table *t = f->conf.table;
    size_t len;

    f->conf.table = NULL;
    assert_int_equal(start(f, &req), 503);
    assert_memory_equal(sl_phase_headers(&f->run, &len), "Retry-After: 1\r\n", 16);
    f->conf.table = t;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_which_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_replay_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_store, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
