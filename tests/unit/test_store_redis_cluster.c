/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * store_redis_cluster: the cluster store read through its statics (the
 * sources are included): MOVED and ASK texts read into a node, and the
 * malformed ones refused; a master's checks of all its slots in one batch
 * (keys in ARGV, "EVALSHA <sha> 0 keys <n> ..."), answered check by check;
 * a check its master does not serve (-9) sent again alone with its keys
 * declared, joined by no other, redirected by MOVED and ASK, failed after
 * NODE_REDIRECTS_MAX; READONLY resending a whole batch declared; checks
 * over several slots split one part per slot, and their outcome (all
 * admitted, one refused, one failed) with the refunds it queues; slot maps
 * applied and a master dropped with its checks; checks before any map and
 * at free answered once, a store freed mid-batch included.
 *
 * The nodes never answer (fakes/cluster_env.h): their checks sit in their
 * queues, where the test answers them as the link would. Nothing leaves
 * the host.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sluice/log.h"

/* store_redis.c and store_redis_cluster.c both have a static destroy():
 * the first comes from the library. */
#include "../../src/store_redis_batch.c"
#include "../../src/store_redis_cluster.c"

#include "fakes/cluster_env.h"
#include "fakes/tb_lua.h"

/* ---- the keys the tests rely on ------------------------------------------------------ */

static void
test_keys(void **state)
{
    (void)state;
    assert_true(slot_of(KEY_A) < 8192);
    assert_true(slot_of(KEY_A2) < 8192);
    assert_true(slot_of(KEY_A) != slot_of(KEY_A2));
    assert_true(slot_of(KEY_B) >= 8192);
    assert_int_equal(slot_of(KEY_B), slot_of(KEY_B_2));
}

/* ---- redirects ----------------------------------------------------------------------- */

static void
test_redirect_moved(void **state)
{
    struct env *e = *state;
    struct redis_cluster *c = e->c;
    struct redis_store *rs;
    struct cluster_node *node;
    char text[128];
    bool is_ask = true;

    /* a MOVED asks for the map unless it is being asked already */
    quiet_ask(c);
    assert_int_equal(c->nnodes, 0);
    snprintf(text, sizeof(text), "MOVED 3999 127.0.0.1:%d", e->a_port);
    rs = sl_redis_cluster_redirect(c, text, &is_ask);
    assert_non_null(rs);
    assert_false(is_ask);
    assert_int_equal(c->nnodes, 1);
    node = c->nodes[0];
    assert_string_equal(node->host, "127.0.0.1");
    assert_int_equal(node->port, e->a_port);
    assert_ptr_equal(node->rs, rs);
    assert_ptr_equal(rs->cluster, c);
    assert_ptr_equal(c->slot_node[3999], node);
    assert_null(c->slot_node[3998]);
    assert_null(c->slot_node[4000]);
    assert_true(node->is_in_map);
    assert_true(evtimer_pending(c->soon_timer, NULL));

    /* the same node again: no second one */
    evtimer_del(c->soon_timer);
    snprintf(text, sizeof(text), "MOVED 4000 127.0.0.1:%d", e->a_port);
    assert_ptr_equal(sl_redis_cluster_redirect(c, text, &is_ask), rs);
    assert_int_equal(c->nnodes, 1);
    assert_ptr_equal(c->slot_node[4000], node);
    assert_true(evtimer_pending(c->soon_timer, NULL));

    /* the edges of the slot range */
    snprintf(text, sizeof(text), "MOVED 0 127.0.0.1:%d", e->b_port);
    rs = sl_redis_cluster_redirect(c, text, &is_ask);
    assert_non_null(rs);
    assert_int_equal(c->nnodes, 2);
    assert_ptr_equal(c->slot_node[0]->rs, rs);
    snprintf(text, sizeof(text), "MOVED 16383 127.0.0.1:%d", e->b_port);
    assert_ptr_equal(sl_redis_cluster_redirect(c, text, &is_ask), rs);
    assert_ptr_equal(c->slot_node[16383]->rs, rs);
}

static void
test_redirect_ask(void **state)
{
    struct env *e = *state;
    struct redis_cluster *c = e->c;
    struct redis_store *rs;
    struct cluster_node *a;
    char text[128];
    bool is_ask = false;

    quiet_ask(c);
    map_two(e, 8192);
    a = node_at(c, e->a_port);
    assert_non_null(a);
    assert_int_equal(c->nnodes, 2);
    /* ASK to a node the map does not name: made, the map left alone */
    snprintf(text, sizeof(text), "ASK 3999 127.0.0.1:%d", e->c_port);
    rs = sl_redis_cluster_redirect(c, text, &is_ask);
    assert_non_null(rs);
    assert_true(is_ask);
    assert_int_equal(c->nnodes, 3);
    assert_ptr_equal(node_at(c, e->c_port)->rs, rs);
    assert_false(node_at(c, e->c_port)->is_in_map);
    assert_ptr_equal(c->slot_node[3999], a);
    assert_false(evtimer_pending(c->soon_timer, NULL));
    /* ASK to a known node */
    is_ask = false;
    snprintf(text, sizeof(text), "ASK 3999 127.0.0.1:%d", e->a_port);
    assert_ptr_equal(sl_redis_cluster_redirect(c, text, &is_ask), a->rs);
    assert_true(is_ask);
    assert_int_equal(c->nnodes, 3);
    assert_ptr_equal(c->slot_node[3999], a);
}

static void
test_redirect_ipv6(void **state)
{
    struct env *e = *state;
    struct redis_cluster *c = e->c;
    struct redis_store *rs;
    char text[128];
    bool is_ask = true;

    quiet_ask(c);
    /* Redis writes an IPv6 address bare: the port is after the last colon */
    snprintf(text, sizeof(text), "MOVED 1 ::1:%d", e->v6_port);
    rs = sl_redis_cluster_redirect(c, text, &is_ask);
    assert_non_null(rs);
    assert_false(is_ask);
    assert_int_equal(c->nnodes, 1);
    assert_string_equal(c->nodes[0]->host, "::1");
    assert_int_equal(c->nodes[0]->port, e->v6_port);
    assert_ptr_equal(c->slot_node[1], c->nodes[0]);
    /* bracketed: the same node */
    snprintf(text, sizeof(text), "MOVED 2 [::1]:%d", e->v6_port);
    assert_ptr_equal(sl_redis_cluster_redirect(c, text, &is_ask), rs);
    assert_int_equal(c->nnodes, 1);
    assert_ptr_equal(c->slot_node[2], c->nodes[0]);
    is_ask = false;
    snprintf(text, sizeof(text), "ASK 3 [::1]:%d", e->v6_port);
    assert_ptr_equal(sl_redis_cluster_redirect(c, text, &is_ask), rs);
    assert_true(is_ask);
    assert_null(c->slot_node[3]);
}

static void
test_redirect_malformed(void **state)
{
    struct env *e = *state;
    struct redis_cluster *c = e->c;
    static const char *const bad[] = {
        "MOVED 16384 127.0.0.1:%d",
        "ASK 16384 127.0.0.1:%d",
        "MOVED 99999999999999999999999 127.0.0.1:%d",
        "MOVED -1 127.0.0.1:%d",
        "MOVED x 127.0.0.1:%d",
        "MOVED  127.0.0.1:%d",
        "MOVED 3999127.0.0.1:%d",
        "MOVED 3999",
        "MOVED 3999 ",
        "MOVED",
        "MOVED ",
        "ASK",
        "MOVED 3999 127.0.0.1",
        "MOVED 3999 127.0.0.1:",
        "MOVED 3999 127.0.0.1:0",
        "MOVED 3999 127.0.0.1:65536",
        "MOVED 3999 127.0.0.1:-1",
        "MOVED 3999 127.0.0.1:63x1",
        "MOVED 3999 127.0.0.1:%d ",
        "MOVED 3999 127.0.0.1:%dx",
        "MOVED 3999 :%d",
        "moved 3999 127.0.0.1:%d",
        "MOVED\t3999 127.0.0.1:%d",
        " MOVED 3999 127.0.0.1:%d",
        "ASKING 3999 127.0.0.1:%d",
        "CROSSSLOT Keys in request don't hash to the same slot",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN The cluster is down",
        "ERR unknown command",
        "",
    };
    char text[128];

    quiet_ask(c);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool is_ask = false;

        /* the port, where a case has one, is a listener's: were it taken,
         * the node made would connect nowhere but here */
        snprintf(text, sizeof(text), bad[i], e->a_port);
        if (sl_redis_cluster_redirect(c, text, &is_ask) != NULL)
            fail_msg("\"%s\" followed", text);
    }
    assert_int_equal(c->nnodes, 0);
    for (unsigned s = 0; s < SL_REDIS_SLOTS; s++)
        assert_null(c->slot_node[s]);
    assert_false(evtimer_pending(c->soon_timer, NULL));
}

/* Hosts Redis never writes: empty ("[]"), with a space (two spaces after
 * the slot) or an unbalanced bracket. Followed, they would make a node that
 * can never connect, and a MOVED would route the slot to it until the map
 * came back. */
static void
test_redirect_odd_hosts(void **state)
{
    struct env *e = *state;
    static const char *const bad[] = {
        "MOVED 3999 []:%d",
        "MOVED 3999  127.0.0.1:%d",
        "MOVED 3999 [::1:%d",
        "MOVED 3999 ::1]:%d",
    };
    char text[128];

    quiet_ask(e->c);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool is_ask = false;

        snprintf(text, sizeof(text), bad[i], e->a_port);
        if (sl_redis_cluster_redirect(e->c, text, &is_ask) != NULL)
            fail_msg("\"%s\" followed to host \"%s\"", text,
                     e->c->nodes[e->c->nnodes - 1]->host);
    }
    assert_int_equal(e->c->nnodes, 0);
    assert_null(e->c->slot_node[3999]);
}

/* ---- splitting ----------------------------------------------------------------------- */

static void
test_split_new(void **state)
{
    struct env *e = *state;
    char keys[5][16] = { KEY_B, KEY_A, KEY_B_2, KEY_A2, "{b}:yy" };
    struct sl_store_bucket b[5];
    unsigned slots[5];
    struct split *s;
    /* slots: A, A2 < 8192 <= B; sorted: KEY_A's slot, KEY_A2's, KEY_B's */
    bool a_first = slot_of(KEY_A) < slot_of(KEY_A2);
    size_t want_origin[5];

    for (size_t i = 0; i < 5; i++) {
        b[i] = bucket(keys[i]);
        b[i].cost = (double)(i + 1);
        slots[i] = slot_of(keys[i]);
    }
    s = split_new(e->c, b, 5, slots);
    memset(keys, 'x', sizeof(keys)); /* the caller's keys need not outlive check */
    assert_ptr_equal(s->c, e->c);
    assert_int_equal(s->n, 5);
    assert_int_equal(s->nparts, 3);
    assert_int_equal(s->nleft, 3);
    /* the parts by slot, each its buckets in the caller's order */
    for (size_t i = 0; i < 3; i++)
        assert_ptr_equal(s->parts[i].s, s);
    assert_true(s->parts[0].slot < s->parts[1].slot);
    assert_true(s->parts[1].slot < s->parts[2].slot);
    assert_int_equal(s->parts[0].slot, (int)slot_of(a_first ? KEY_A : KEY_A2));
    assert_int_equal(s->parts[1].slot, (int)slot_of(a_first ? KEY_A2 : KEY_A));
    assert_int_equal(s->parts[2].slot, (int)slot_of(KEY_B));
    if (a_first) {
        /* [A (1), {b}:yy (4)], [A2 (3)], [B (0), B_2 (2)] */
        size_t o[5] = { 1, 4, 3, 0, 2 };
        memcpy(want_origin, o, sizeof(o));
        assert_int_equal(s->parts[0].count, 2);
        assert_int_equal(s->parts[1].count, 1);
    } else {
        size_t o[5] = { 3, 1, 4, 0, 2 };
        memcpy(want_origin, o, sizeof(o));
        assert_int_equal(s->parts[0].count, 1);
        assert_int_equal(s->parts[1].count, 2);
    }
    assert_int_equal(s->parts[0].first, 0);
    assert_int_equal(s->parts[1].first, s->parts[0].count);
    assert_int_equal(s->parts[2].first, 3);
    assert_int_equal(s->parts[2].count, 2);
    for (size_t i = 0; i < 5; i++) {
        static const char *const orig[5] = { KEY_B, KEY_A, KEY_B_2, KEY_A2, "{b}:yy" };
        const struct sl_store_bucket *sb = &s->buckets[i];

        assert_int_equal(s->origin[i], want_origin[i]);
        assert_int_equal(sb->key_len, strlen(orig[want_origin[i]]));
        assert_memory_equal(sb->key, orig[want_origin[i]], sb->key_len);
        assert_true(sb->key < (const char *)keys || sb->key >= (const char *)keys + sizeof(keys));
        assert_true(sb->cost == (double)(want_origin[i] + 1));
        assert_true(sb->rate == 10 && sb->burst == 10 && sb->per_ms == 1000);
    }
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = s->parts[i].first; j < s->parts[i].first + s->parts[i].count; j++)
            assert_int_equal(s->parts[i].slot, (int)slots[s->origin[j]]);
    }
    split_free(s);
}

/* ---- a split's outcome --------------------------------------------------------------- */

enum part_answer { ADMIT, REFUSE, FAIL_TIMEOUT, FAIL_CONNECTION };

/* Part A holds KEY_A (one bucket), part B holds KEY_B and KEY_B_2 (two),
 * each with its own remaining count, so the order of the results shows. */
static void
answer_part(struct env *e, bool is_b, enum part_answer how)
{
    struct redis_store *rs = node_at(e->c, is_b ? e->b_port : e->a_port)->rs;
    const char *key = is_b ? KEY_B : KEY_A;

    switch (how) {
    case ADMIT:
        answer_reply(rs, key, is_b ? "*7\r\n:1\r\n:2000\r\n:0\r\n:100\r\n:3000\r\n:0\r\n:200\r\n"
                                    : "*4\r\n:1\r\n:1000\r\n:0\r\n:100\r\n");
        break;
    case REFUSE:
        answer_reply(rs, key,
                     is_b ? "*7\r\n:0\r\n:2500\r\n:100\r\n:1000\r\n:3500\r\n:100\r\n:1000\r\n"
                          : "*4\r\n:0\r\n:500\r\n:100\r\n:1000\r\n");
        break;
    case FAIL_TIMEOUT:
        answer_fail(rs, key, SL_STORE_TIMEOUT);
        break;
    case FAIL_CONNECTION:
        answer_fail(rs, key, SL_STORE_CONNECTION);
        break;
    }
}

/* The results of a split of KEY_B, KEY_A, KEY_B_2 whose part on A answered
 * `a` and whose part on B answered `b`: in the caller's order, and only
 * when the split's status is OK. */
static void
expect_split_results(const struct answer *ans, enum part_answer a, enum part_answer b,
                     enum sl_store_status status)
{
    if (status != SL_STORE_OK) {
        assert_false(ans->has_results);
        assert_int_equal(ans->nresults, 0);
        return;
    }
    assert_true(ans->has_results);
    assert_int_equal(ans->nresults, 3);
    if (a == ADMIT)
        assert_true(ans->results[1].remaining == 1.0);
    if (a == REFUSE)
        assert_true(ans->results[1].remaining == 0.5);
    if (b == ADMIT) {
        assert_true(ans->results[0].remaining == 2.0);
        assert_true(ans->results[2].remaining == 3.0);
        assert_int_equal(ans->results[2].reset_ms, 200);
    }
    if (b == REFUSE) {
        assert_true(ans->results[0].remaining == 2.5);
        assert_true(ans->results[2].remaining == 3.5);
    }
}

static void
test_split_outcomes(void **state)
{
    static const struct {
        bool is_b_first;
        enum part_answer a, b;
        enum sl_store_status status;
        bool is_admitted;
        size_t refunds_a, refunds_b;
    } cases[] = {
        { false, ADMIT, ADMIT, SL_STORE_OK, true, 0, 0 },
        { true, ADMIT, ADMIT, SL_STORE_OK, true, 0, 0 },
        { false, ADMIT, REFUSE, SL_STORE_OK, false, 1, 0 },
        { true, REFUSE, ADMIT, SL_STORE_OK, false, 0, 2 },
        { false, REFUSE, ADMIT, SL_STORE_OK, false, 0, 2 },
        { false, REFUSE, REFUSE, SL_STORE_OK, false, 0, 0 },
        { false, FAIL_TIMEOUT, ADMIT, SL_STORE_TIMEOUT, false, 0, 2 },
        { true, ADMIT, FAIL_CONNECTION, SL_STORE_CONNECTION, false, 1, 0 },
        /* a refusal wins over a failure, in either order: with on_error =
         * allow, a failure must not admit what a bucket refused */
        { false, REFUSE, FAIL_CONNECTION, SL_STORE_OK, false, 0, 0 },
        { true, REFUSE, FAIL_TIMEOUT, SL_STORE_OK, false, 0, 0 },
        { false, FAIL_TIMEOUT, REFUSE, SL_STORE_OK, false, 0, 0 },
        /* both failed: the first failure */
        { false, FAIL_TIMEOUT, FAIL_CONNECTION, SL_STORE_TIMEOUT, false, 0, 0 },
        { true, FAIL_TIMEOUT, FAIL_CONNECTION, SL_STORE_CONNECTION, false, 0, 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        void *st;
        struct env *e;
        struct redis_store *a, *b;
        struct answer ans = { 0 };
        char keys[3][8] = { KEY_B, KEY_A, KEY_B_2 };
        struct sl_store_bucket buckets[3] = { bucket(keys[0]), bucket(keys[1]), bucket(keys[2]) };

        setup_mapped(&st);
        e = st;
        a = node_at(e->c, e->a_port)->rs;
        b = node_at(e->c, e->b_port)->rs;
        e->store->ops->check(e->store, buckets, 3, record, &ans);
        memset(keys, 'x', sizeof(keys)); /* refunds use the split's copies */
        assert_int_equal(ans.n, 0);
        assert_non_null(queued(a, KEY_A));
        assert_int_equal(queued(a, KEY_A)->nkeys, 1);
        assert_non_null(queued(b, KEY_B));
        assert_int_equal(queued(b, KEY_B)->nkeys, 2);
        assert_int_equal(a->nqueued + b->nqueued, 2);

        answer_part(e, cases[i].is_b_first, cases[i].is_b_first ? cases[i].b : cases[i].a);
        if (ans.n != 0)
            fail_msg("case %zu: answered after one part", i);
        answer_part(e, !cases[i].is_b_first, cases[i].is_b_first ? cases[i].a : cases[i].b);
        if (ans.n != 1 || ans.status != cases[i].status
            || ans.is_admitted != cases[i].is_admitted)
            fail_msg("case %zu: %d answers, status %d, admitted %d", i, ans.n, ans.status,
                     ans.is_admitted);
        expect_split_results(&ans, cases[i].a, cases[i].b, cases[i].status);
        if (refunds_queued(a, KEY_A) != cases[i].refunds_a
            || refunds_anywhere(a) != cases[i].refunds_a)
            fail_msg("case %zu: %zu refunds on A, want %zu", i, refunds_anywhere(a),
                     cases[i].refunds_a);
        if (refunds_queued(b, KEY_B) + refunds_queued(b, KEY_B_2) != cases[i].refunds_b
            || refunds_anywhere(b) != cases[i].refunds_b)
            fail_msg("case %zu: %zu refunds on B, want %zu", i, refunds_anywhere(b),
                     cases[i].refunds_b);
        if (cases[i].refunds_b == 2) {
            assert_int_equal(refunds_queued(b, KEY_B), 1);
            assert_int_equal(refunds_queued(b, KEY_B_2), 1);
        }
        assert_int_equal(atomic_load(&e->c->refunds), cases[i].refunds_a + cases[i].refunds_b);
        assert_int_equal(atomic_load(&e->c->splits), 1);
        teardown(&st);
    }
}

/* A check with a bucket whose slot has no master fails at once, whole,
 * whichever bucket that is: no part is sent, so nothing is taken and
 * nothing is refunded; the map is asked again. */
static void
test_split_unserved_slot(void **state)
{
    struct env *e = *state;
    char host[] = "127.0.0.1";
    struct sl_redis_slot_range r = { .first = 0, .last = 8191, .host = host, .port = e->a_port };
    struct sl_redis_slot_map map = { .ranges = &r, .n = 1 };
    struct sl_store_bucket first_b[2] = { bucket(KEY_B), bucket(KEY_A) };
    struct sl_store_bucket last_b[3] = { bucket(KEY_A), bucket(KEY_A2), bucket(KEY_B) };
    struct answer ans[2] = { { 0 } };
    struct sl_store_stats st = { 0 };
    struct redis_store *a;

    quiet_ask(e->c);
    apply_map(e->c, &map);
    assert_int_equal(e->c->nnodes, 1);
    a = node_at(e->c, e->a_port)->rs;
    e->store->ops->check(e->store, first_b, 2, record, &ans[0]);
    e->store->ops->check(e->store, last_b, 3, record, &ans[1]);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(ans[i].n, 1);
        assert_int_equal(ans[i].status, SL_STORE_CONNECTION);
        assert_false(ans[i].is_admitted);
    }
    assert_null(a->queue_head);
    assert_int_equal(atomic_load(&e->c->splits), 0);
    assert_true(evtimer_pending(e->c->soon_timer, NULL));
    sl_store_get_stats(e->store, &st);
    assert_int_equal(st.checks, 2);
    assert_int_equal(st.errors_connection, 2);
}

/* ---- slot maps ----------------------------------------------------------------------- */

static void
test_map_applied(void **state)
{
    struct env *e = *state;
    struct redis_cluster *c = e->c;
    struct cluster_node *a, *b;
    enum conn_state was;
    char resp[512];

    quiet_ask(c);
    slots_resp(resp, sizeof(resp), 5000, e->a_port, e->b_port);
    apply_resp(c, resp);
    assert_true(c->has_map);
    assert_int_equal(c->nnodes, 2);
    assert_int_equal(c->nmasters, 2);
    a = node_at(c, e->a_port);
    b = node_at(c, e->b_port);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a->is_in_map && b->is_in_map);
    assert_ptr_equal(a->rs->cluster, c);
    for (unsigned s = 0; s < SL_REDIS_SLOTS; s++) {
        if (c->slot_node[s] != (s < 5000 ? a : b))
            fail_msg("slot %u", s);
    }
    assert_false(e->store->ops->is_up(e->store)); /* the nodes never answer */
    was = sl_redis_get_state(a->rs);
    sl_redis_set_state(a->rs, CONN_UP);
    /* b down fails only b's checks: the store stays up for a's */
    assert_true(e->store->ops->is_up(e->store));
    sl_redis_set_state(a->rs, was);

    /* the same masters, the split moved: the nodes stay */
    slots_resp(resp, sizeof(resp), 8192, e->a_port, e->b_port);
    apply_resp(c, resp);
    assert_int_equal(c->nnodes, 2);
    assert_ptr_equal(node_at(c, e->a_port), a);
    assert_ptr_equal(node_at(c, e->b_port), b);
    assert_ptr_equal(c->slot_node[5000], a);
    assert_ptr_equal(c->slot_node[8191], a);
    assert_ptr_equal(c->slot_node[8192], b);
}

/* A map without a master drops it: its waiting checks fail at once, a
 * split waits for its other part and gives that back. */
static void
test_map_drops_master(void **state)
{
    struct env *e = *state;
    struct redis_cluster *c = e->c;
    struct cluster_node *a, *b;
    struct sl_store_bucket on_b = bucket(KEY_B), both[2] = { bucket(KEY_A), bucket(KEY_B) };
    struct answer single = { 0 }, split = { 0 }, lease = { 0 }, reset = { 0 };
    char resp[512];

    quiet_ask(c);
    slots_resp(resp, sizeof(resp), 8192, e->a_port, e->b_port);
    apply_resp(c, resp);
    a = node_at(c, e->a_port);
    b = node_at(c, e->b_port);
    /* checks waiting on B, then a map without B */
    e->store->ops->check(e->store, &on_b, 1, record, &single);
    e->store->ops->check(e->store, both, 2, record, &split);
    e->store->ops->lease(e->store, &on_b, SL_LEASE_TAKE, 1000, 0, 1000, "ab12", record_lease,
                         &lease);
    e->store->ops->reset(e->store, KEY_B, strlen(KEY_B), record, &reset);
    assert_int_equal(single.n + split.n + lease.n + reset.n, 0);
    assert_int_equal(b->rs->nqueued, 4);
    /* one batch for the check, the split's part and the lease; the reset
     * (a DEL) alone */
    assert_int_equal(queue_length(b->rs), 2);
    assert_int_equal(b->rs->queue_head->nchecks, 3);
    assert_true(b->rs->queue_tail->is_reset);
    slots_resp(resp, sizeof(resp), 0, e->a_port, 0);
    apply_resp(c, resp);
    assert_int_equal(c->nnodes, 1);
    assert_int_equal(c->nmasters, 1);
    assert_ptr_equal(c->nodes[0], a);
    assert_null(node_at(c, e->b_port));
    for (unsigned s = 0; s < SL_REDIS_SLOTS; s++) {
        if (c->slot_node[s] != a)
            fail_msg("slot %u", s);
    }
    assert_int_equal(single.n, 1);
    assert_int_equal(single.status, SL_STORE_CONNECTION);
    assert_int_equal(lease.n, 1);
    assert_int_equal(lease.status, SL_STORE_CONNECTION);
    assert_int_equal(reset.n, 1);
    assert_int_equal(reset.status, SL_STORE_CONNECTION);
    /* the split waits for its part on A, then gives that back */
    assert_int_equal(split.n, 0);
    answer_reply(a->rs, KEY_A, REPLY1(ONE_ADMITTED("1000")));
    assert_int_equal(split.n, 1);
    assert_int_equal(split.status, SL_STORE_CONNECTION);
    assert_false(split.is_admitted);
    assert_int_equal(refunds_queued(a->rs, KEY_A), 1);
    /* B's slots are A's now: a check of KEY_B queues there, in the batch
     * of the refund (one batch for the master's slots) */
    single = (struct answer){ 0 };
    e->store->ops->check(e->store, &on_b, 1, record, &single);
    assert_int_equal(single.n, 0);
    assert_non_null(queued(a->rs, KEY_B));
    assert_ptr_equal(queued(a->rs, KEY_B), queued(a->rs, KEY_A));
    assert_int_equal(queue_length(a->rs), 1);
    free_store(e);
    assert_int_equal(single.n, 1);
    assert_int_equal(single.status, SL_STORE_CONNECTION);
}

/* A map that leaves slots unserved: theirs are no one's now, even those
 * of a master that stays; their checks fail at once, and the map is asked
 * again. */
static void
test_map_gap(void **state)
{
    struct env *e = *state;
    char host[] = "127.0.0.1";
    struct sl_redis_slot_range r = { .first = 0, .last = slot_of(KEY_A) - 1, .host = host,
                                     .port = e->a_port };
    struct sl_redis_slot_map map = { .ranges = &r, .n = 1 };
    struct sl_store_bucket bk = bucket(KEY_A);
    struct answer ans = { 0 };
    struct sl_store_stats st = { 0 };
    struct cluster_node *a = node_at(e->c, e->a_port);

    assert_ptr_equal(e->c->slot_node[slot_of(KEY_A)], a);
    enter(e->c);
    apply_map(e->c, &map);
    leave(e->c);
    assert_int_equal(e->c->nnodes, 1);
    assert_ptr_equal(e->c->slot_node[0], a);
    assert_ptr_equal(e->c->slot_node[slot_of(KEY_A) - 1], a);
    for (unsigned s = slot_of(KEY_A); s < SL_REDIS_SLOTS; s++) {
        if (e->c->slot_node[s] != NULL)
            fail_msg("slot %u still served", s);
    }
    assert_false(evtimer_pending(e->c->soon_timer, NULL));
    e->store->ops->check(e->store, &bk, 1, record, &ans);
    assert_int_equal(ans.n, 1);
    assert_int_equal(ans.status, SL_STORE_CONNECTION);
    assert_true(evtimer_pending(e->c->soon_timer, NULL));
    sl_store_get_stats(e->store, &st);
    assert_int_equal(st.errors_connection, 1);
    assert_int_equal(st.checks, 1);
}

/* Nodes are bounded: a redirect past NODES_MAX of them is not followed. */
static void
test_nodes_max(void **state)
{
    struct env *e = *state;
    int fds[NODES_MAX], ports[NODES_MAX];
    char text[128];
    bool is_ask;

    quiet_ask(e->c);
    for (size_t i = 0; i < NODES_MAX; i++) {
        fds[i] = silent_listener(AF_INET, &ports[i]);
        snprintf(text, sizeof(text), "ASK %zu 127.0.0.1:%d", i, ports[i]);
        assert_non_null(sl_redis_cluster_redirect(e->c, text, &is_ask));
    }
    assert_int_equal(e->c->nnodes, NODES_MAX);
    snprintf(text, sizeof(text), "MOVED 100 127.0.0.1:%d", e->a_port);
    assert_null(sl_redis_cluster_redirect(e->c, text, &is_ask));
    assert_null(e->c->slot_node[100]);
    /* a known one still is */
    snprintf(text, sizeof(text), "MOVED 100 127.0.0.1:%d", ports[7]);
    assert_non_null(sl_redis_cluster_redirect(e->c, text, &is_ask));
    assert_int_equal(e->c->slot_node[100]->port, ports[7]);
    assert_int_equal(e->c->nnodes, NODES_MAX);
    sl_store_free(e->store);
    e->store = NULL;
    for (size_t i = 0; i < NODES_MAX; i++)
        close(fds[i]);
}

/* The seed answers CLUSTER SLOTS: the map comes over the ask link. */
static int
setup_fake_seed(void **state)
{
    struct env *e = &the_env;
    struct fake_seed *f = &e->fake;

    listeners(e);
    e->seed_fd = silent_listener(AF_INET, &e->seed_port);
    f->base = e->base;
    f->fd = e->seed_fd;
    slots_resp(f->reply, sizeof(f->reply), 8192, e->a_port, e->b_port);
    f->accept_ev = event_new(e->base, e->seed_fd, EV_READ | EV_PERSIST, on_fake_accept, f);
    event_add(f->accept_ev, NULL);
    make_store(e);
    *state = e;
    return 0;
}

static void
test_map_from_seed(void **state)
{
    struct env *e = *state;
    struct redis_cluster *c = e->c;
    struct sl_store_bucket bk = bucket(KEY_B);
    struct answer ans = { 0 };

    assert_non_null(c->ask);
    for (int i = 0; i < 200 && !c->has_map; i++) {
        struct timeval tv = { 0, 10000 };

        event_base_loopexit(e->base, &tv);
        event_base_dispatch(e->base);
    }
    assert_true(c->has_map);
    assert_int_equal(e->fake.nasked, 1);
    assert_null(c->ask);
    assert_true(evtimer_pending(c->every_timer, NULL));
    assert_false(evtimer_pending(c->ask_timer, NULL));
    assert_int_equal(c->nnodes, 2);
    assert_ptr_equal(c->slot_node[0], node_at(c, e->a_port));
    assert_ptr_equal(c->slot_node[16383], node_at(c, e->b_port));
    e->store->ops->check(e->store, &bk, 1, record, &ans);
    assert_int_equal(ans.n, 0);
    assert_non_null(queued(node_at(c, e->b_port)->rs, KEY_B));
    free_store(e);
    assert_int_equal(ans.n, 1);
}

/* ---- before any map, and at the end -------------------------------------------------- */

static void
test_before_map(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket one = bucket(KEY_A), both[2] = { bucket(KEY_A), bucket(KEY_B) };
    struct answer single = { 0 }, split = { 0 }, lease = { 0 }, reset = { 0 }, none = { 0 };
    struct sl_store_stats st = { 0 };

    assert_false(e->c->has_map);
    assert_false(e->store->ops->is_up(e->store));
    e->store->ops->check(e->store, &one, 1, record, &single);
    e->store->ops->check(e->store, both, 2, record, &split);
    e->store->ops->lease(e->store, &one, SL_LEASE_TAKE, 1000, 0, 1000, "ab12", record_lease,
                         &lease);
    e->store->ops->reset(e->store, KEY_A, strlen(KEY_A), record, &reset);
    e->store->ops->check(e->store, NULL, 0, record, &none);
    assert_int_equal(single.n, 1);
    assert_int_equal(single.status, SL_STORE_CONNECTION);
    assert_false(single.is_admitted);
    assert_int_equal(split.n, 1);
    assert_int_equal(split.status, SL_STORE_CONNECTION);
    assert_false(split.is_admitted);
    assert_int_equal(lease.n, 1);
    assert_int_equal(lease.status, SL_STORE_CONNECTION);
    assert_int_equal(reset.n, 1);
    assert_int_equal(reset.status, SL_STORE_CONNECTION);
    assert_int_equal(none.n, 1);
    assert_int_equal(none.status, SL_STORE_OK);
    assert_int_equal(e->c->nnodes, 0);
    sl_store_get_stats(e->store, &st);
    assert_int_equal(st.errors_connection, 4); /* one each: single, split, lease, reset */
}

static struct answer nested;

/* A callback that checks again while the store is being freed. */
static void
record_and_recheck(void *arg, enum sl_store_status status, bool is_admitted,
                   const struct sl_store_result *results, size_t n)
{
    struct sl_store_bucket bk = bucket(KEY_A);

    record(arg, status, is_admitted, results, n);
    the_env.store->ops->check(the_env.store, &bk, 1, record, &nested);
}

static void
test_free_pending(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket on_a = bucket(KEY_A), on_b = bucket(KEY_B);
    struct sl_store_bucket both[3] = { bucket(KEY_A), bucket(KEY_B), bucket(KEY_A2) };
    struct answer ans[6] = { { 0 } };

    e->store->ops->check(e->store, both, 3, record, &ans[2]);
    e->store->ops->check(e->store, both, 3, record, &ans[5]);
    /* both splits' parts on A (one batch, four checks) admitted already,
     * their parts on B wait */
    assert_int_equal(queued(node_at(e->c, e->a_port)->rs, KEY_A)->nchecks, 4);
    answer_reply(node_at(e->c, e->a_port)->rs, KEY_A,
                 "*16\r\n" ONE_ADMITTED("1000") ONE_ADMITTED("1000") ONE_ADMITTED("1000")
                     ONE_ADMITTED("1000"));
    e->store->ops->check(e->store, &on_a, 1, record, &ans[0]);
    e->store->ops->check(e->store, &on_b, 1, record_and_recheck, &ans[1]);
    e->store->ops->lease(e->store, &on_a, SL_LEASE_GIVE, 1000, 0, 1000, "ab12", record_lease,
                         &ans[3]);
    e->store->ops->reset(e->store, KEY_B, strlen(KEY_B), record, &ans[4]);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(ans[i].n, 0);
    nested = (struct answer){ 0 };
    sl_store_free(e->store);
    for (size_t i = 0; i < 6; i++) {
        if (ans[i].n != 1 || ans[i].status != SL_STORE_CONNECTION || ans[i].is_admitted)
            fail_msg("check %zu: %d answers, status %d", i, ans[i].n, ans[i].status);
    }
    assert_int_equal(nested.n, 1);
    assert_int_equal(nested.status, SL_STORE_CONNECTION);
    e->store = NULL;
}

/* Another check's answers, as sl_store_free returned: -1 when not watched. */
static struct answer *watched;
static int watched_at_free = -1;

/* A callback that frees the store. */
static void
record_and_free(void *arg, enum sl_store_status status, bool is_admitted,
                const struct sl_store_result *results, size_t n)
{
    record(arg, status, is_admitted, results, n);
    sl_store_free(the_env.store);
    the_env.store = NULL;
    if (watched != NULL)
        watched_at_free = watched->n;
}

/* Freed from a check's callback, inside the node's reply, or inside the
 * split's last part: the rest is answered, nothing is touched after. */
static void
test_free_from_callback(void **state)
{
    static const bool is_split[] = { false, true };

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        void *st;
        struct env *e;
        struct sl_store_bucket one = bucket(KEY_A), both[2] = { bucket(KEY_A), bucket(KEY_A2) };
        struct sl_store_bucket on_b = bucket(KEY_B);
        struct answer ans = { 0 }, other = { 0 };
        struct redis_store *a;

        setup_mapped(&st);
        e = st;
        a = node_at(e->c, e->a_port)->rs;
        e->store->ops->check(e->store, &on_b, 1, record, &other);
        if (is_split[i]) {
            /* its two parts in one batch: KEY_A's refused, KEY_A2's admitted */
            e->store->ops->check(e->store, both, 2, record_and_free, &ans);
            assert_int_equal(queued(a, KEY_A)->nchecks, 2);
            answer_reply(a, KEY_A, REPLY2(ONE_REFUSED, ONE_ADMITTED("1000")));
        } else {
            e->store->ops->check(e->store, &one, 1, record_and_free, &ans);
            answer_reply(a, KEY_A, REPLY1(ONE_ADMITTED("1000")));
        }
        assert_int_equal(ans.n, 1);
        assert_int_equal(ans.status, SL_STORE_OK);
        assert_int_equal(ans.is_admitted, !is_split[i]);
        assert_null(e->store);
        assert_int_equal(other.n, 1);
        assert_int_equal(other.status, SL_STORE_CONNECTION);
        teardown(&st);
    }
}

/* Freed from the callback of a batch's first check while the same batch
 * holds a part of a split: the split (its other part on B) is answered
 * once, SL_STORE_CONNECTION, before sl_store_free returns, and the freed
 * cluster is not touched by the rest of the delivery (under ASan). */
static void
test_free_mid_batch(void **state)
{
    struct env *e = *state;
    struct redis_store *a = node_at(e->c, e->a_port)->rs;
    struct sl_store_bucket one = bucket(KEY_A), pair[2] = { bucket("{b}:yy"), bucket(KEY_B) };
    struct answer first = { 0 }, second = { 0 };

    e->store->ops->check(e->store, &one, 1, record_and_free, &first);
    e->store->ops->check(e->store, pair, 2, record, &second);
    assert_int_equal(queued(a, KEY_A)->nchecks, 2);
    watched = &second;
    watched_at_free = -1;
    /* both checks of the batch admitted: the first frees the store */
    answer_reply(a, KEY_A, REPLY2(ONE_ADMITTED("1000"), ONE_ADMITTED("1000")));
    assert_int_equal(first.n, 1);
    assert_null(e->store);
    watched = NULL;
    assert_int_equal(watched_at_free, 1);
    assert_int_equal(second.n, 1);
    assert_int_equal(second.status, SL_STORE_CONNECTION);
    assert_false(second.is_admitted);
}

/*
 * The case of test_free_mid_batch with the batch failed whole instead of
 * delivered: its connection lost (sl_redis_fail_all's loop over the calls
 * out), a timeout (on_batch_timeout), an error reply that is no redirect
 * (on_eval_reply); each ends in sl_redis_batch_fail. The store freed from
 * check 0's callback must answer the split part at check 1 at once (not
 * admitted), so that nothing of the freed cluster is touched afterwards:
 * without the answering stack, on_part reached the freed cluster (a
 * heap-use-after-free, then a double free).
 */
static void
test_free_mid_batch_fail(void **state)
{
    static const char *const how[] = { "connection lost", "timeout", "error reply" };

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        void *st;
        struct env *e;
        struct redis_store *a;
        struct sl_store_bucket one = bucket(KEY_A), pair[2] = { bucket("{b}:yy"), bucket(KEY_B) };
        struct answer first = { 0 }, second = { 0 };
        struct batch *b;

        setup_mapped(&st);
        e = st;
        a = node_at(e->c, e->a_port)->rs;
        e->store->ops->check(e->store, &one, 1, record_and_free, &first);
        e->store->ops->check(e->store, pair, 2, record, &second);
        assert_int_equal(queued(a, KEY_A)->nchecks, 2);
        watched = &second;
        watched_at_free = -1;
        b = unqueue(a, KEY_A);
        if (i == 2) {
            reply_batch(a, b, "-BUSY Redis is busy running a script.\r\n");
        } else {
            mark_sent(a, b);
            sl_redis_enter(a);
            if (i == 0)
                sl_redis_fail_all(a, SL_STORE_CONNECTION); /* as conn_down does */
            else
                on_batch_timeout(-1, EV_TIMEOUT, b);
            sl_redis_leave(a); /* a lives on: the link owes b's callback */
            on_eval_reply(NULL, NULL, b); /* the link freed hands it back */
        }
        if (first.n != 1 || e->store != NULL || watched_at_free != 1 || second.n != 1
            || second.is_admitted)
            fail_msg("%s: %d, %d answers (%d at free)", how[i], first.n, second.n,
                     watched_at_free);
        watched = NULL;
        teardown(&st);
    }
}

/* A batch delivered is over: its (reused) batch structure filled with new
 * checks, each is answered once at free. */
static void
test_free_after_delivery(void **state)
{
    struct env *e = *state;
    struct redis_store *a = node_at(e->c, e->a_port)->rs;
    struct sl_store_bucket one = bucket(KEY_A), other = bucket(KEY_A2);
    struct answer ans[3] = { { 0 } };
    struct batch *delivered;

    e->store->ops->check(e->store, &one, 1, record, &ans[0]);
    delivered = queued(a, KEY_A);
    answer_reply(a, KEY_A, REPLY1(ONE_ADMITTED("1000")));
    assert_int_equal(ans[0].n, 1);
    e->store->ops->check(e->store, &other, 1, record, &ans[1]);
    e->store->ops->check(e->store, &one, 1, record, &ans[2]);
    assert_ptr_equal(a->queue_head, delivered); /* from the free list */
    assert_int_equal(delivered->nchecks, 2);
    free_store(e);
    assert_int_equal(ans[0].n, 1);
    for (size_t i = 1; i < 3; i++) {
        if (ans[i].n != 1 || ans[i].status != SL_STORE_CONNECTION)
            fail_msg("check %zu: %d answers, status %d", i, ans[i].n, ans[i].status);
    }
}

/* ---- a master's batches -------------------------------------------------------------- */

/* Checks of all of a master's slots share one batch, answered check by
 * check in order; a reset goes alone; B's checks are B's. */
static void
test_batch_per_master(void **state)
{
    struct env *e = *state;
    struct redis_store *a = node_at(e->c, e->a_port)->rs, *b = node_at(e->c, e->b_port)->rs;
    struct sl_store_bucket one = bucket(KEY_A), two[2] = { bucket(KEY_A2), bucket(KEY_A2_2) };
    struct sl_store_bucket on_b = bucket(KEY_B);
    struct answer ans[5] = { { 0 } };
    struct batch *bt;

    e->store->ops->check(e->store, &one, 1, record, &ans[0]);
    e->store->ops->check(e->store, two, 2, record, &ans[1]);
    take(e->store, KEY_A, &ans[2]);
    e->store->ops->check(e->store, &on_b, 1, record, &ans[3]);
    e->store->ops->reset(e->store, KEY_A2, strlen(KEY_A2), record, &ans[4]);
    assert_int_equal(queue_length(a), 2);
    assert_int_equal(queue_length(b), 1);
    bt = a->queue_head;
    assert_ptr_equal(queued(a, KEY_A), bt);
    assert_ptr_equal(queued(a, KEY_A2_2), bt);
    assert_true(a->queue_tail->is_reset);
    assert_false(bt->is_declared);
    assert_int_equal(bt->nchecks, 3);
    assert_int_equal(bt->nkeys, 4);
    assert_int_equal(bt->nargs, 6 + 11 + 10);
    /* each check knows its part of the keys and args */
    assert_int_equal(bt->checks[1].keys_off, strlen("$5\r\n" KEY_A "\r\n"));
    assert_int_equal(bt->checks[1].keys_len, 2 * strlen("$5\r\n" KEY_A "\r\n"));
    assert_int_equal(bt->checks[1].args_off, bt->checks[0].args_len);
    assert_int_equal(bt->checks[1].nkeys, 2);
    assert_int_equal(bt->checks[1].nargs, 11);
    assert_int_equal(bt->checks[2].nkeys, 1);
    assert_int_equal(bt->checks[2].nargs, 10);
    assert_int_equal(bt->checks[2].args_off + bt->checks[2].args_len, bt->args.len);

    answer_reply(a, KEY_A, "*15\r\n" ONE_ADMITTED("1000")
                               ":0\r\n:500\r\n:100\r\n:1000\r\n:600\r\n:100\r\n:1000\r\n"
                               ":2000\r\n:8000\r\n:0\r\n:100\r\n");
    assert_int_equal(ans[0].n, 1);
    assert_true(ans[0].is_admitted);
    assert_int_equal(ans[0].nresults, 1);
    assert_true(ans[0].results[0].remaining == 1.0);
    assert_int_equal(ans[1].n, 1);
    assert_int_equal(ans[1].status, SL_STORE_OK);
    assert_false(ans[1].is_admitted);
    assert_int_equal(ans[1].nresults, 2);
    assert_true(ans[1].results[0].remaining == 0.5 && ans[1].results[1].remaining == 0.6);
    assert_int_equal(ans[2].n, 1);
    assert_int_equal(ans[2].status, SL_STORE_OK);
    assert_int_equal(ans[2].moved_milli, 2000);
    assert_int_equal(ans[3].n + ans[4].n, 0);
    assert_int_equal(atomic_load(&a->checks), 3);
    assert_int_equal(a->nqueued, 1);
    free_store(e);
    assert_int_equal(ans[3].n + ans[4].n, 2);
}

/* One check of a batch on a key its master does not serve (-9): the others
 * are answered, it goes again alone, its keys declared, with its own bytes
 * only; a lease operation too. */
static void
test_not_served(void **state)
{
    struct env *e = *state;
    struct redis_store *a = node_at(e->c, e->a_port)->rs;
    struct sl_store_bucket one = bucket(KEY_A), two[2] = { bucket(KEY_A2), bucket(KEY_A2_2) };
    static const char *const two_keys[2] = { KEY_A2, KEY_A2_2 };
    struct answer ans[4] = { { 0 } };
    struct batch *d;

    e->store->ops->check(e->store, &one, 1, record, &ans[0]);
    e->store->ops->check(e->store, two, 2, record, &ans[1]);
    take(e->store, KEY_A2, &ans[2]);
    e->store->ops->check(e->store, &one, 1, record, &ans[3]);
    assert_int_equal(queue_length(a), 1);
    answer_reply(a, KEY_A, "*19\r\n" ONE_ADMITTED("1000") TWO_NOT_SERVED ONE_NOT_SERVED
                               ONE_REFUSED);
    assert_int_equal(ans[0].n, 1);
    assert_true(ans[0].is_admitted);
    assert_int_equal(ans[3].n, 1);
    assert_int_equal(ans[3].status, SL_STORE_OK);
    assert_false(ans[3].is_admitted);
    assert_int_equal(ans[1].n + ans[2].n, 0);
    assert_int_equal(atomic_load(&a->checks), 2);
    assert_int_equal(atomic_load(&a->errors_reply), 0);

    /* two batches of one operation each, in the batch's order */
    assert_int_equal(queue_length(a), 2);
    assert_int_equal(a->nqueued, 2);
    d = a->queue_head;
    assert_declared(d, "$5\r\n" KEY_A2 "\r\n$5\r\n" KEY_A2_2 "\r\n", 2, "2", two_keys, false);
    assert_int_equal(d->redirects, 1);
    assert_ptr_equal(d->checks[0].cb, record);
    assert_ptr_equal(d->checks[0].arg, &ans[1]);
    assert_int_equal(d->checks[0].nbuckets, 2);
    d = a->queue_tail;
    assert_declared(d, "$5\r\n" KEY_A2 "\r\n", 1, "-1", two_keys, true);
    assert_int_equal(d->redirects, 1);
    assert_ptr_equal(d->checks[0].lease_cb, record_lease);
    assert_ptr_equal(d->checks[0].arg, &ans[2]);
    assert_int_equal(a->queued_bytes, a->queue_head->keys.len + d->keys.len);

    /* answered there */
    answer_reply(a, KEY_A2_2, "*7\r\n:1\r\n:700\r\n:0\r\n:100\r\n:800\r\n:0\r\n:100\r\n");
    assert_int_equal(ans[1].n, 1);
    assert_true(ans[1].is_admitted);
    assert_int_equal(ans[1].nresults, 2);
    assert_true(ans[1].results[1].remaining == 0.8);
    answer_reply(a, KEY_A2, "*4\r\n:1000\r\n:9000\r\n:0\r\n:100\r\n");
    assert_int_equal(ans[2].n, 1);
    assert_int_equal(ans[2].moved_milli, 1000);
    assert_null(a->queue_head);
}

/* No check joins a declared batch (its keys are its one check's), on the
 * master it was resent to or the one it was redirected to. */
static void
test_declared_not_joined(void **state)
{
    struct env *e = *state;
    struct redis_store *a = node_at(e->c, e->a_port)->rs;
    struct sl_store_bucket one = bucket(KEY_A), other = bucket(KEY_A2);
    struct answer ans[4] = { { 0 } };
    struct batch *d;

    e->store->ops->check(e->store, &one, 1, record, &ans[0]);
    answer_reply(a, KEY_A, REPLY1(ONE_NOT_SERVED));
    d = queued(a, KEY_A);
    assert_non_null(d);
    assert_true(d->is_declared);
    assert_true(sl_redis_batch_is_full(d));
    e->store->ops->check(e->store, &other, 1, record, &ans[1]);
    e->store->ops->check(e->store, &one, 1, record, &ans[2]);
    take(e->store, KEY_A, &ans[3]);
    assert_int_equal(queue_length(a), 2);
    assert_ptr_equal(a->queue_head, d);
    assert_int_equal(d->nchecks, 1);
    assert_int_equal(d->nkeys, 1);
    assert_int_equal(a->queue_tail->nchecks, 3);
    assert_false(a->queue_tail->is_declared);
    /* the undeclared batch behind it is answered on its own */
    answer_reply(a, KEY_A2, "*12\r\n" ONE_ADMITTED("1000") ONE_ADMITTED("2000")
                                ":1000\r\n:1000\r\n:0\r\n:100\r\n");
    assert_int_equal(ans[1].n + ans[2].n + ans[3].n, 3);
    assert_int_equal(ans[0].n, 0);
    assert_ptr_equal(a->queue_head, d);
    free_store(e);
    assert_int_equal(ans[0].n, 1);
    assert_int_equal(ans[0].status, SL_STORE_CONNECTION);
}

/* A master turned replica answers READONLY: every check of the batch goes
 * again on its own, declared (for MOVED to send it on), and the map is
 * asked again; READONLY to a declared batch fails it. */
static void
test_readonly(void **state)
{
    struct env *e = *state;
    struct redis_store *a = node_at(e->c, e->a_port)->rs;
    struct sl_store_bucket one = bucket(KEY_A), two[2] = { bucket(KEY_A2), bucket(KEY_A2_2) };
    static const char *const keys[2] = { KEY_A, KEY_A2 };
    static const char *const two_keys[2] = { KEY_A2, KEY_A2_2 };
    struct answer ans[3] = { { 0 } };
    struct batch *d;

    e->store->ops->check(e->store, &one, 1, record, &ans[0]);
    e->store->ops->check(e->store, two, 2, record, &ans[1]);
    take(e->store, KEY_A, &ans[2]);
    assert_false(evtimer_pending(e->c->soon_timer, NULL));
    answer_reply(a, KEY_A, "-READONLY You can't write against a read only replica.\r\n");
    assert_int_equal(ans[0].n + ans[1].n + ans[2].n, 0);
    assert_true(evtimer_pending(e->c->soon_timer, NULL));
    assert_int_equal(queue_length(a), 3);
    assert_int_equal(a->nqueued, 3);
    d = a->queue_head;
    assert_declared(d, "$5\r\n" KEY_A "\r\n", 1, "1", keys, false);
    assert_ptr_equal(d->checks[0].arg, &ans[0]);
    d = d->next;
    assert_declared(d, "$5\r\n" KEY_A2 "\r\n$5\r\n" KEY_A2_2 "\r\n", 2, "2", two_keys, false);
    assert_ptr_equal(d->checks[0].arg, &ans[1]);
    d = d->next;
    assert_declared(d, "$5\r\n" KEY_A "\r\n", 1, "-1", keys, true);
    assert_ptr_equal(d->checks[0].arg, &ans[2]);
    for (d = a->queue_head; d != NULL; d = d->next)
        assert_int_equal(d->redirects, 1);

    /* a declared batch is not resent on READONLY again: an error reply */
    answer_reply(a, KEY_A, "-READONLY You can't write against a read only replica.\r\n");
    assert_int_equal(ans[0].n, 1);
    assert_int_equal(ans[0].status, SL_STORE_REPLY);
    assert_int_equal(queue_length(a), 2);
    free_store(e);
    assert_int_equal(ans[0].n + ans[1].n + ans[2].n, 3);
}

/* ---- redirects followed by a node's batch -------------------------------------------- */

static void
test_follow_redirect(void **state)
{
    struct env *e = *state;
    struct redis_cluster *c = e->c;
    struct redis_store *a = node_at(c, e->a_port)->rs, *b = node_at(c, e->b_port)->rs;
    unsigned slot_a = slot_of(KEY_A), slot_a2 = slot_of(KEY_A2);
    struct sl_store_bucket one = bucket(KEY_A), two = bucket(KEY_A2), on_b = bucket(KEY_B);
    struct answer moved = { 0 }, asked = { 0 }, later = { 0 };
    struct batch *nb;
    redisReply *r;

    /* MOVED (to a declared call): it goes to B, the map says so */
    e->store->ops->check(e->store, &one, 1, record, &moved);
    answer_reply(a, KEY_A, REPLY1(ONE_NOT_SERVED));
    redirect_to(a, KEY_A, "MOVED", e->b_port);
    assert_ptr_equal(c->slot_node[slot_a]->rs, b);
    assert_true(evtimer_pending(c->soon_timer, NULL));
    assert_null(queued(a, KEY_A));
    nb = queued(b, KEY_A);
    assert_non_null(nb);
    assert_true(nb->is_declared);
    assert_false(nb->is_asking);
    assert_int_equal(nb->redirects, 2);
    assert_int_equal(nb->nchecks, 1);
    assert_int_equal(b->nqueued, 1);
    /* B's own checks do not join it */
    e->store->ops->check(e->store, &on_b, 1, record, &later);
    assert_int_equal(queue_length(b), 2);
    assert_int_equal(nb->nchecks, 1);
    assert_int_equal(moved.n, 0);
    answer_reply(b, KEY_A, REPLY1(ONE_ADMITTED("1000")));
    assert_int_equal(moved.n, 1);
    assert_true(moved.is_admitted);
    assert_int_equal(later.n, 0);

    /* ASK: to B with ASKING, this once; the map stays */
    e->store->ops->check(e->store, &two, 1, record, &asked);
    answer_reply(a, KEY_A2, REPLY1(ONE_NOT_SERVED));
    redirect_to(a, KEY_A2, "ASK", e->b_port);
    assert_ptr_equal(c->slot_node[slot_a2]->rs, a);
    nb = queued(b, KEY_A2);
    assert_non_null(nb);
    assert_true(nb->is_asking);
    assert_true(nb->is_declared);
    assert_ptr_equal(b->queue_tail, nb);

    /* redirected NODE_REDIRECTS_MAX times already: it fails */
    nb->redirects = NODE_REDIRECTS_MAX;
    redirect_to(b, KEY_A2, "ASK", e->a_port);
    assert_int_equal(asked.n, 1);
    assert_int_equal(asked.status, SL_STORE_REPLY);
    assert_null(queued(a, KEY_A2));
    assert_null(queued(b, KEY_A2));

    /* other errors are not redirects */
    r = reply_of("-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    assert_false(follow_redirect(a, NULL, r));
    freeReplyObject(r);
    free_store(e);
    assert_int_equal(later.n, 1);
    assert_int_equal(later.status, SL_STORE_CONNECTION);
}

/* A check sent again NODE_REDIRECTS_MAX times (-9, MOVED, ASK, in any mix)
 * fails the next time with SL_STORE_REPLY. */
static void
test_resend_max(void **state)
{
    struct env *e = *state;
    struct redis_store *a = node_at(e->c, e->a_port)->rs, *b = node_at(e->c, e->b_port)->rs;
    struct sl_store_bucket one = bucket(KEY_A), two = bucket(KEY_A2);
    struct answer ans = { 0 }, mixed = { 0 };

    e->store->ops->check(e->store, &one, 1, record, &ans);
    for (unsigned i = 1; i <= NODE_REDIRECTS_MAX; i++) {
        answer_reply(a, KEY_A, REPLY1(ONE_NOT_SERVED));
        assert_int_equal(ans.n, 0);
        assert_int_equal(queued(a, KEY_A)->redirects, i);
    }
    answer_reply(a, KEY_A, REPLY1(ONE_NOT_SERVED));
    assert_int_equal(ans.n, 1);
    assert_int_equal(ans.status, SL_STORE_REPLY);
    assert_null(a->queue_head);
    assert_int_equal(atomic_load(&a->errors_reply), 1);

    e->store->ops->check(e->store, &two, 1, record, &mixed);
    answer_reply(a, KEY_A2, REPLY1(ONE_NOT_SERVED)); /* 1 */
    redirect_to(a, KEY_A2, "MOVED", e->b_port);      /* 2 */
    redirect_to(b, KEY_A2, "ASK", e->a_port);        /* 3 */
    assert_int_equal(queued(a, KEY_A2)->redirects, NODE_REDIRECTS_MAX);
    assert_true(queued(a, KEY_A2)->is_asking);
    assert_int_equal(mixed.n, 0);
    redirect_to(a, KEY_A2, "MOVED", e->b_port);
    assert_int_equal(mixed.n, 1);
    assert_int_equal(mixed.status, SL_STORE_REPLY);
    assert_null(a->queue_head);
    assert_null(b->queue_head);
    assert_int_equal(atomic_load(&a->errors_reply), 2);
}

#define SHA "0123456789abcdef0123456789abcdef01234567"

/* A master's call declares no key ("EVALSHA <sha> 0 keys <n> <keys>
 * <nchecks> <args>"); a check sent again declares its own. */
static void
test_format_call(void **state)
{
    struct env *e = *state;
    struct redis_store *a = node_at(e->c, e->a_port)->rs;
    struct sl_store_bucket one = bucket(KEY_A), two[2] = { bucket(KEY_A2), bucket(KEY_A2_2) };
    struct answer ans[3] = { { 0 } };
    struct sl_tb_params pr = { 0 };
    char p[5][24];

    assert_int_equal(sl_tb_params_from_bucket(&pr, &one), 0);
    snprintf(p[0], sizeof(p[0]), "%lld", (long long)pr.q);
    snprintf(p[1], sizeof(p[1]), "%lld", (long long)pr.p);
    snprintf(p[2], sizeof(p[2]), "%lld", (long long)pr.tu);
    snprintf(p[3], sizeof(p[3]), "%lld", (long long)pr.burst);
    snprintf(p[4], sizeof(p[4]), "%lld", (long long)pr.cost);
    memcpy(a->sha, SHA, sizeof(SHA));
    e->store->ops->check(e->store, &one, 1, record, &ans[0]);
    e->store->ops->check(e->store, two, 2, record, &ans[1]);
    e->store->ops->reset(e->store, KEY_A, strlen(KEY_A), record, &ans[2]);
    {
        const char *const want[] = {
            "EVALSHA", SHA, "0", "keys", "3", KEY_A, KEY_A2, KEY_A2_2, "2",
            "1", p[0], p[1], p[2], p[3], p[4],
            "2", p[0], p[1], p[2], p[3], p[4], p[0], p[1], p[2], p[3], p[4],
        };

        assert_int_equal(format_call(a, queued(a, KEY_A2)), 0);
        assert_command(&a->cmd, want, sizeof(want) / sizeof(want[0]));
    }
    {
        const char *const want[] = { "DEL", KEY_A };

        assert_int_equal(format_call(a, a->queue_tail), 0);
        assert_command(&a->cmd, want, 2);
    }
    answer_reply(a, KEY_A2, "*11\r\n" ONE_ADMITTED("1000") TWO_NOT_SERVED);
    {
        const char *const want[] = {
            "EVALSHA", SHA, "2", KEY_A2, KEY_A2_2, "1",
            "2", p[0], p[1], p[2], p[3], p[4], p[0], p[1], p[2], p[3], p[4],
        };

        assert_true(queued(a, KEY_A2)->is_declared);
        assert_int_equal(format_call(a, queued(a, KEY_A2)), 0);
        assert_command(&a->cmd, want, sizeof(want) / sizeof(want[0]));
    }
    free_store(e);
    assert_int_equal(ans[0].n + ans[1].n + ans[2].n, 3);
}

/* The batch of `key` on rs formatted, run by the real script (tb_lua.h: a
 * master that does not serve keys starting "far:"), and its result handed
 * back as the reply. */
static void
run_call(struct tb_lua *tl, struct redis_store *rs, const char *key)
{
    struct batch *b = unqueue(rs, key);
    const char *keys[16], *argv[64];
    size_t key_lens[16], argv_lens[64], nkeys;
    long long out[64];
    char resp[1024], err[256];
    redisReply *r;
    long n;
    size_t len;

    assert_int_equal(format_call(rs, b), 0);
    r = reply_of_len(rs->cmd.data, rs->cmd.len);
    nkeys = strtoul(r->element[2]->str, NULL, 10);
    assert_true(3 + nkeys <= r->elements && nkeys <= 16 && r->elements - 3 - nkeys <= 64);
    for (size_t i = 0; i < nkeys; i++) {
        keys[i] = r->element[3 + i]->str;
        key_lens[i] = r->element[3 + i]->len;
    }
    for (size_t i = 3 + nkeys; i < r->elements; i++) {
        argv[i - 3 - nkeys] = r->element[i]->str;
        argv_lens[i - 3 - nkeys] = r->element[i]->len;
    }
    n = tb_lua_eval(tl, keys, key_lens, nkeys, argv, argv_lens, r->elements - 3 - nkeys, out,
                    64, err, sizeof(err));
    if (n < 0)
        fail_msg("script: %s", err);
    len = (size_t)snprintf(resp, sizeof(resp), "*%ld\r\n", n);
    for (long i = 0; i < n && i < 64; i++)
        len += (size_t)snprintf(resp + len, sizeof(resp) - len, ":%lld\r\n", out[i]);
    assert_true(len < sizeof(resp));
    freeReplyObject(r);
    reply_batch(rs, b, resp);
}

/* Both forms of the call, as the script reads them: a master's batch with
 * a key it does not serve, and that check sent again declared. */
static void
test_call_runs_script(void **state)
{
    struct env *e = *state;
    struct redis_store *a = node_at(e->c, e->a_port)->rs;
    struct sl_store_bucket one = bucket(KEY_A), far = bucket("far:{b}");
    struct sl_store_bucket two[2] = { bucket(KEY_A2), bucket(KEY_A2_2) };
    struct answer ans[4] = { { 0 } };
    struct tb_lua tl;

    assert_int_equal(slot_of("far:{b}"), slot_of(KEY_A));
    tb_lua_init(&tl);
    tb_lua_set_now(&tl, 1000000);
    e->store->ops->check(e->store, &one, 1, record, &ans[0]);
    e->store->ops->check(e->store, &far, 1, record, &ans[1]);
    e->store->ops->check(e->store, two, 2, record, &ans[2]);
    take(e->store, KEY_A2, &ans[3]);
    run_call(&tl, a, KEY_A);
    assert_int_equal(ans[0].n, 1);
    assert_true(ans[0].is_admitted);
    assert_true(ans[0].results[0].remaining == 9.0);
    assert_int_equal(ans[1].n, 0);
    assert_int_equal(ans[2].n, 1);
    assert_true(ans[2].is_admitted);
    assert_int_equal(ans[2].nresults, 2);
    /* the lease took 1000 of the 9000 left after the check's 1000 */
    assert_int_equal(ans[3].n, 1);
    assert_int_equal(ans[3].status, SL_STORE_OK);
    assert_int_equal(ans[3].moved_milli, 1000);
    assert_true(queued(a, "far:{b}")->is_declared);
    run_call(&tl, a, "far:{b}");
    assert_int_equal(ans[1].n, 1);
    assert_true(ans[1].is_admitted);
    assert_true(ans[1].results[0].remaining == 9.0);
    assert_null(a->queue_head);
    tb_lua_fini(&tl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test_setup_teardown(test_redirect_moved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_ask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_ipv6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_odd_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_new, setup, teardown),
        cmocka_unit_test(test_split_outcomes),
        cmocka_unit_test_setup_teardown(test_split_unserved_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_drops_master, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_gap, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_nodes_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_from_seed, setup_fake_seed, teardown),
        cmocka_unit_test_setup_teardown(test_before_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_pending, setup_mapped, teardown),
        cmocka_unit_test(test_free_from_callback),
        cmocka_unit_test_setup_teardown(test_free_mid_batch, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_free_after_delivery, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_batch_per_master, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_not_served, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_declared_not_joined, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_follow_redirect, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_resend_max, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_format_call, setup_mapped, teardown),
        cmocka_unit_test_setup_teardown(test_call_runs_script, setup_mapped, teardown),
        /* last: until the bug it shows is fixed it aborts the process (a
         * double free without ASan) */
        cmocka_unit_test(test_free_mid_batch_fail),
    };

    sl_log_set_level(SL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
