/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The lifecycle phase (src/phase_lifecycle.c, included for its statics):
 * where a route stands at a given second, how a consumer is shown, and a
 * request walked through the phase on a route that ended, is deprecated, or
 * is in a brownout. Dates are made from the clock now.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/phase_lifecycle.c"

static void
test_stages(void **state)
{
    struct sl_brownout b[] = { { 100, 200 }, { 300, 400 } };
    struct sl_lifecycle_conf lc = { .has_deprecation = true, .deprecation_s = 50,
                                    .has_sunset = true, .sunset_s = 500, .brownouts = b,
                                    .nbrownouts = 2 };
    const struct sl_brownout *in;

    (void)state;
    assert_int_equal(stage_at(&lc, 49, &in), STAGE_ACTIVE);
    assert_int_equal(stage_at(&lc, 50, &in), STAGE_DEPRECATED);
    assert_int_equal(stage_at(&lc, 100, &in), STAGE_BROWNOUT);
    assert_ptr_equal(in, &b[0]);
    assert_int_equal(stage_at(&lc, 199, &in), STAGE_BROWNOUT);
    assert_int_equal(stage_at(&lc, 200, &in), STAGE_DEPRECATED); /* [from, to) */
    assert_null(in);
    assert_int_equal(stage_at(&lc, 399, &in), STAGE_BROWNOUT);
    assert_ptr_equal(in, &b[1]);
    assert_int_equal(stage_at(&lc, 500, &in), STAGE_SUNSET);
    lc.has_deprecation = false;
    assert_int_equal(stage_at(&lc, 60, &in), STAGE_ACTIVE);
}

#define HDR(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

static const char *
label_of(const struct sl_key_part *part, const struct sl_request *req)
{
    static char out[CONSUMER_MAX + 1];
    struct sl_lifecycle_conf lc = { .consumer = *part };
    struct lifecycle_conf conf = { .lc = &lc, .is_secret = is_secret_selector(part) };

    consumer_label(&conf, req, out);
    return out;
}

static void
test_consumer_label(void **state)
{
    struct sl_header hs[] = { HDR("X-Client-Id", "alice"), HDR("Authorization", "Bearer t0k"),
                              HDR("X-Odd", "other"), HDR("X-Quote", "a\"b"),
                              HDR("Cookie", "sid=abc") };
    struct sl_request req = { .headers = hs, .nheaders = 5, .client_ip = "192.0.2.1",
                              .client_ip_len = 9, .query = "app=shop", .query_len = 8 };
    struct sl_key_part ip = { SL_KEY_IP, NULL, 0 };
    struct sl_key_part client = { SL_KEY_HEADER, "x-client-id", 11 };
    struct sl_key_part auth = { SL_KEY_HEADER, "authorization", 13 };
    struct sl_key_part api_key = { SL_KEY_HEADER, "x-api-key", 9 };
    struct sl_key_part odd = { SL_KEY_HEADER, "x-odd", 5 };
    struct sl_key_part quote = { SL_KEY_HEADER, "x-quote", 7 };
    struct sl_key_part app = { SL_KEY_QUERY, "app", 3 };
    struct sl_key_part sid = { SL_KEY_COOKIE, "sid", 3 };

    (void)state;
    assert_string_equal(label_of(&ip, &req), "192.0.2.1");
    assert_string_equal(label_of(&client, &req), "alice");
    assert_string_equal(label_of(&app, &req), "shop");
    /* printf 'Bearer t0k' | sha256sum | cut -c1-16 */
    assert_string_equal(label_of(&auth, &req), "sha256:efb7ce19e81563d1");
    assert_string_equal(label_of(&api_key, &req), "(none)");
    assert_memory_equal(label_of(&sid, &req), "sha256:", 7);
    assert_memory_equal(label_of(&odd, &req), "sha256:", 7);   /* not our "other" */
    assert_memory_equal(label_of(&quote, &req), "sha256:", 7); /* no quote in labels */
    assert_true(is_secret_selector(&api_key));
    assert_true(is_secret_selector(&(struct sl_key_part){ SL_KEY_QUERY, "Access_Token", 12 }));
    assert_false(is_secret_selector(&client));
}

/* ---- a request through the phase ----------------------------------------- */

struct outcome {
    enum sl_phase_result result;
    int status;
    char body[BODY_MAX];
};

static void
on_done(void *arg, enum sl_phase_result result, int status, const char *body, size_t body_len)
{
    struct outcome *o = arg;

    o->result = result;
    o->status = status;
    memcpy(o->body, body ? body : "", body_len);
    o->body[body_len] = '\0';
}

static void
test_through_the_phase(void **state)
{
    int64_t now = (int64_t)sl_clock_wall();
    struct sl_brownout brownout = { now - 10, now + 3600 };
    struct sl_route_conf routes[3] = {
        { .path = "/gone/", .lifecycle = { .has_deprecation = true, .deprecation_s = now - 200,
                                           .has_sunset = true, .sunset_s = now - 100,
                                           .link = "https://example.com/m",
                                           .consumer_top = 10 } },
        { .path = "/dep/", .lifecycle = { .has_deprecation = true, .deprecation_s = now - 100,
                                          .has_sunset = true, .sunset_s = now + 86400,
                                          .consumer_top = 10 } },
        { .path = "/brown/", .lifecycle = { .has_sunset = true, .sunset_s = now + 86400,
                                            .brownouts = &brownout, .nbrownouts = 1,
                                            .consumer_top = 10 } },
    };
    struct sl_config cfg = { .routes = routes, .nroutes = 3 };
    unsigned slots[3] = { 0, 0, 0 };
    struct sl_phase_env env = { .cfg = &cfg, .route_slots = slots };
    const struct sl_phase *const phases[] = { &sl_phase_lifecycle };
    struct sl_phase_table *table = sl_phase_table_new_with(phases, 1, &env);
    struct sl_request req = { .client_ip = "192.0.2.1", .client_ip_len = 9 };
    struct sl_access_entry log = { 0 };
    struct sl_phase_run run;
    struct outcome o;
    char want[128];
    const char *lines;
    size_t len;

    (void)state;
    sl_phase_run_init(&run);

    sl_phase_run_start(&run, sl_phase_table_chain(table, 0), &req, on_done, &o);
    assert_int_equal(o.result, SL_PHASE_ANSWERED);
    assert_int_equal(o.status, 410);
    assert_non_null(strstr(o.body, "\"link\":\"https://example.com/m\""));
    lines = sl_phase_headers(&run, &len);
    snprintf(want, sizeof(want), "Deprecation: @%" PRId64 "\r\n", now - 200);
    assert_non_null(memmem(lines, len, want, strlen(want)));
    assert_non_null(memmem(lines, len, SL_LIT("Link: <https://example.com/m>; rel=\"sunset\"\r\n")));
    sl_phase_run_end(&run, NULL, &log);
    assert_string_equal(log.lifecycle, "sunset");
    assert_string_equal(log.reason, "sunset");
    assert_string_equal(log.consumer, "192.0.2.1");

    sl_phase_run_start(&run, sl_phase_table_chain(table, 1), &req, on_done, &o);
    assert_int_equal(o.result, SL_PHASE_PASSED);
    lines = sl_phase_headers(&run, &len);
    assert_non_null(memmem(lines, len, "Sunset: ", 8));
    assert_null(memmem(lines, len, "Link:", 5)); /* no link written */
    sl_phase_run_end(&run, NULL, NULL);

    sl_phase_run_start(&run, sl_phase_table_chain(table, 2), &req, on_done, &o);
    assert_int_equal(o.status, 410);
    assert_non_null(strstr(o.body, "brownout"));
    lines = sl_phase_headers(&run, &len);
    assert_non_null(memmem(lines, len, "Cache-Control: no-store\r\n", 25));
    assert_null(memmem(lines, len, "Deprecation:", 12));
    sl_phase_run_end(&run, NULL, NULL);

    sl_phase_run_fini(&run);
    sl_phase_table_free(table);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stages),
        cmocka_unit_test(test_consumer_label),
        cmocka_unit_test(test_through_the_phase),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
