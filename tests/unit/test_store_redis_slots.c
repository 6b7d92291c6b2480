/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * store_redis_slots: CLUSTER SLOTS replies, fed as RESP bytes to hiredis's
 * reader, into slot maps. Replies captured from a real redis-server 7.0
 * cluster (3 masters, 3 replicas, each cluster-preferred-endpoint-type),
 * hand-made ones for old and partial clusters, and every malformed shape
 * refused with its reason and nothing left allocated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store_redis_slots.h"

/* One reply from its RESP bytes; the test fails on bytes hiredis refuses. */
static redisReply *
reply_of(const char *resp, size_t len)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, resp, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(r);
    return reply;
}

#define REPLY(s) reply_of((s), sizeof(s) - 1)

/* A node [ip, port, id, metadata]; ip NULL: a nil endpoint. */
static void
put_node(FILE *f, const char *ip, int port)
{
    if (ip == NULL)
        fputs("*4\r\n$-1\r\n", f);
    else
        fprintf(f, "*4\r\n$%zu\r\n%s\r\n", strlen(ip), ip);
    fprintf(f, ":%d\r\n$40\r\n%040d\r\n*0\r\n", port, port);
}

/* A reply of n entries, entry i [first[i], last[i], master at ips[i]:port
 * 7000+i, one replica]. */
static redisReply *
build(size_t n, const long *first, const long *last, const char *const *ips)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    redisReply *reply;

    fprintf(f, "*%zu\r\n", n);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "*4\r\n:%ld\r\n:%ld\r\n", first[i], last[i]);
        put_node(f, ips != NULL ? ips[i] : "127.0.0.1", 7000 + (int)i);
        put_node(f, "127.0.0.1", 8000 + (int)i);
    }
    fclose(f);
    reply = reply_of(text, len);
    free(text);
    return reply;
}

static void
expect_range(const struct sl_redis_slot_map *m, size_t i, unsigned first, unsigned last,
             const char *host, int port)
{
    assert_true(i < m->n);
    assert_int_equal(m->ranges[i].first, first);
    assert_int_equal(m->ranges[i].last, last);
    assert_string_equal(m->ranges[i].host, host);
    assert_int_equal(m->ranges[i].port, port);
}

/* As redis-server 7.0.15 sent it: cluster-announce-hostname node-N.test,
 * cluster-preferred-endpoint-type ip (the default). */
static const char real_ip[] =
    "*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:35217\r\n$40\r\n"
    "0bfd75d0eb14ac12f8bd6f211245dcacef81df8a\r\n*2\r\n$8\r\nhostname\r\n$11\r\nnode-0.test\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:35222\r\n$40\r\nab4f6d988db11cfb45b77aa761d608bd72c49f83\r\n"
    "*2\r\n$8\r\nhostname\r\n$11\r\nnode-5.test\r\n*4\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n"
    "127.0.0.1\r\n:35218\r\n$40\r\n7bc9949c69127e55465d5c6e358388322e13dc28\r\n*2\r\n$8\r\n"
    "hostname\r\n$11\r\nnode-1.test\r\n*4\r\n$9\r\n127.0.0.1\r\n:35220\r\n$40\r\n"
    "c1b17bbff045e5036ed82c684aa9ca2b86422cd1\r\n*2\r\n$8\r\nhostname\r\n$11\r\nnode-3.test\r\n"
    "*4\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:35219\r\n$40\r\n"
    "caf6341cc96534780c2bb5e9fc0efdf4fc14de32\r\n*2\r\n$8\r\nhostname\r\n$11\r\nnode-2.test\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:35221\r\n$40\r\na4b159eb26abd83d2de59dae92d341da070a2478\r\n"
    "*2\r\n$8\r\nhostname\r\n$11\r\nnode-4.test\r\n";

/* The same cluster with cluster-preferred-endpoint-type hostname. */
static const char real_hostname[] =
    "*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$11\r\nnode-0.test\r\n:35217\r\n$40\r\n"
    "0bfd75d0eb14ac12f8bd6f211245dcacef81df8a\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*4\r\n"
    "$11\r\nnode-5.test\r\n:35222\r\n$40\r\nab4f6d988db11cfb45b77aa761d608bd72c49f83\r\n*2\r\n"
    "$2\r\nip\r\n$9\r\n127.0.0.1\r\n*4\r\n:5461\r\n:10922\r\n*4\r\n$11\r\nnode-1.test\r\n"
    ":35218\r\n$40\r\n7bc9949c69127e55465d5c6e358388322e13dc28\r\n*2\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n*4\r\n$11\r\nnode-3.test\r\n:35220\r\n$40\r\n"
    "c1b17bbff045e5036ed82c684aa9ca2b86422cd1\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*4\r\n"
    ":10923\r\n:16383\r\n*4\r\n$11\r\nnode-2.test\r\n:35219\r\n$40\r\n"
    "caf6341cc96534780c2bb5e9fc0efdf4fc14de32\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*4\r\n"
    "$11\r\nnode-4.test\r\n:35221\r\n$40\r\na4b159eb26abd83d2de59dae92d341da070a2478\r\n*2\r\n"
    "$2\r\nip\r\n$9\r\n127.0.0.1\r\n";

/* The same with cluster-preferred-endpoint-type unknown-endpoint: nil
 * endpoints (one entry kept). */
static const char real_unknown[] =
    "*1\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$-1\r\n:35217\r\n$40\r\n"
    "0bfd75d0eb14ac12f8bd6f211245dcacef81df8a\r\n*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\n"
    "hostname\r\n$11\r\nnode-0.test\r\n*4\r\n$-1\r\n:35222\r\n$40\r\n"
    "ab4f6d988db11cfb45b77aa761d608bd72c49f83\r\n*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\n"
    "hostname\r\n$11\r\nnode-5.test\r\n";

/* And hostname preferred on a node whose hostname is unset: "?". */
static const char real_question[] =
    "*1\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$1\r\n?\r\n:35217\r\n$40\r\n"
    "0bfd75d0eb14ac12f8bd6f211245dcacef81df8a\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*4\r\n"
    "$11\r\nnode-5.test\r\n:35222\r\n$40\r\nab4f6d988db11cfb45b77aa761d608bd72c49f83\r\n*2\r\n"
    "$2\r\nip\r\n$9\r\n127.0.0.1\r\n";

static void
test_real_cluster(void **state)
{
    struct sl_redis_slot_map m;
    redisReply *reply;
    char err[256];

    (void)state;
    reply = REPLY(real_ip);
    assert_int_equal(sl_redis_slot_map_parse(reply, "10.9.9.9", &m, err, sizeof(err)), 0);
    assert_int_equal(m.n, 3);
    expect_range(&m, 0, 0, 5460, "127.0.0.1", 35217);
    expect_range(&m, 1, 5461, 10922, "127.0.0.1", 35218);
    expect_range(&m, 2, 10923, 16383, "127.0.0.1", 35219);
    sl_redis_slot_map_fini(&m);
    assert_null(m.ranges);
    assert_int_equal(m.n, 0);
    freeReplyObject(reply);

    reply = REPLY(real_hostname);
    assert_int_equal(sl_redis_slot_map_parse(reply, "10.9.9.9", &m, err, sizeof(err)), 0);
    assert_int_equal(m.n, 3);
    expect_range(&m, 0, 0, 5460, "node-0.test", 35217);
    expect_range(&m, 1, 5461, 10922, "node-1.test", 35218);
    expect_range(&m, 2, 10923, 16383, "node-2.test", 35219);
    sl_redis_slot_map_fini(&m);
    freeReplyObject(reply);

    /* an endpoint the cluster does not know: the node that answered */
    reply = REPLY(real_unknown);
    assert_int_equal(sl_redis_slot_map_parse(reply, "lb.example", &m, err, sizeof(err)), 0);
    assert_int_equal(m.n, 1);
    expect_range(&m, 0, 0, 5460, "lb.example", 35217);
    sl_redis_slot_map_fini(&m);
    freeReplyObject(reply);
    reply = REPLY(real_question);
    assert_int_equal(sl_redis_slot_map_parse(reply, "10.0.0.7", &m, err, sizeof(err)), 0);
    expect_range(&m, 0, 0, 5460, "10.0.0.7", 35217);
    sl_redis_slot_map_fini(&m);
    freeReplyObject(reply);
}

/* Entries in any order come out sorted; the asked host is copied. */
static void
test_sorted_and_asked_host(void **state)
{
    static const long first[] = { 10923, 0, 5461 }, last[] = { 16383, 5460, 10922 };
    static const char *const ips[] = { "", "::1", "redis-2.redis.svc" };
    struct sl_redis_slot_map m;
    redisReply *reply = build(3, first, last, ips);
    char err[256], asked[] = "10.1.2.3";

    (void)state;
    assert_int_equal(sl_redis_slot_map_parse(reply, asked, &m, err, sizeof(err)), 0);
    asked[0] = 'X';
    assert_int_equal(m.n, 3);
    expect_range(&m, 0, 0, 5460, "::1", 7001);
    expect_range(&m, 1, 5461, 10922, "redis-2.redis.svc", 7002);
    expect_range(&m, 2, 10923, 16383, "10.1.2.3", 7000);
    sl_redis_slot_map_fini(&m);
    freeReplyObject(reply);
}

/* Slots without a master, an empty cluster, one-slot ranges, old and
 * newer node shapes. */
static void
test_partial_and_lenient(void **state)
{
    static const long first[] = { 0, 100, 16383 }, last[] = { 0, 199, 16383 };
    struct sl_redis_slot_map m;
    redisReply *reply;
    char err[256];

    (void)state;
    reply = build(3, first, last, NULL);
    assert_int_equal(sl_redis_slot_map_parse(reply, "h", &m, err, sizeof(err)), 0);
    assert_int_equal(m.n, 3);
    expect_range(&m, 0, 0, 0, "127.0.0.1", 7000);
    expect_range(&m, 1, 100, 199, "127.0.0.1", 7001);
    expect_range(&m, 2, 16383, 16383, "127.0.0.1", 7002);
    sl_redis_slot_map_fini(&m);
    freeReplyObject(reply);

    reply = REPLY("*0\r\n");
    assert_int_equal(sl_redis_slot_map_parse(reply, "h", &m, err, sizeof(err)), 0);
    assert_int_equal(m.n, 0);
    assert_null(m.ranges);
    sl_redis_slot_map_fini(&m);
    freeReplyObject(reply);

    /* Redis 3.x: [ip, port] with no id; extra elements after the master's
     * replicas and after a node's metadata are ignored */
    reply = REPLY("*2\r\n"
                  "*3\r\n:0\r\n:8191\r\n*2\r\n$8\r\n10.0.0.1\r\n:7000\r\n"
                  "*5\r\n:8192\r\n:16383\r\n*6\r\n$8\r\n10.0.0.2\r\n:7001\r\n$2\r\nid\r\n*0\r\n"
                  ":1\r\n$5\r\nextra\r\n*2\r\n$8\r\n10.0.0.3\r\n:7002\r\n$3\r\nnew\r\n");
    assert_int_equal(sl_redis_slot_map_parse(reply, "h", &m, err, sizeof(err)), 0);
    assert_int_equal(m.n, 2);
    expect_range(&m, 0, 0, 8191, "10.0.0.1", 7000);
    expect_range(&m, 1, 8192, 16383, "10.0.0.2", 7001);
    sl_redis_slot_map_fini(&m);
    freeReplyObject(reply);
}

static void
expect_refused(redisReply *reply, const char *why)
{
    struct sl_redis_slot_map m = { (void *)&m, 99 };
    char err[256] = "";

    if (sl_redis_slot_map_parse(reply, "h", &m, err, sizeof(err)) != -1)
        fail_msg("accepted; want \"%s\"", why);
    if (strstr(err, why) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", err, why);
    assert_null(m.ranges);
    assert_int_equal(m.n, 0);
    freeReplyObject(reply);
}

#define NODE_A "*3\r\n$8\r\n10.0.0.1\r\n:7000\r\n$2\r\nid\r\n"

static void
test_malformed(void **state)
{
    /* R: the bytes and their length, NULs included */
#define R(resp) resp, sizeof(resp) - 1
    static const struct {
        const char *resp;
        size_t len;
        const char *why;
    } bad[] = {
        { R("+OK\r\n"), "not an array" },
        { R(":3\r\n"), "not an array" },
        { R("$5\r\nslots\r\n"), "not an array" },
        { R("$-1\r\n"), "not an array" },
        { R("-ERR This instance has cluster support disabled\r\n"),
          "error reply \"ERR This instance has cluster support disabled\"" },
        { R("*1\r\n:0\r\n"), "entry 0: not an array [first, last, master, ...]" },
        { R("*1\r\n*2\r\n:0\r\n:16383\r\n"), "entry 0: not an array" },
        { R("*1\r\n*0\r\n"), "entry 0: not an array" },
        { R("*2\r\n*3\r\n:0\r\n:1\r\n" NODE_A "*3\r\n$1\r\n2\r\n:3\r\n" NODE_A),
          "entry 1: the slots are not integers" },
        { R("*1\r\n*3\r\n:0\r\n$-1\r\n" NODE_A), "entry 0: the slots are not integers" },
        { R("*1\r\n*3\r\n:0\r\n:16384\r\n" NODE_A), "entry 0: slots 0..16384 outside 0..16383" },
        { R("*1\r\n*3\r\n:16384\r\n:16384\r\n" NODE_A), "outside 0..16383" },
        { R("*1\r\n*3\r\n:-1\r\n:5\r\n" NODE_A), "slots -1..5 outside" },
        { R("*1\r\n*3\r\n:0\r\n:9223372036854775807\r\n" NODE_A), "outside 0..16383" },
        { R("*1\r\n*3\r\n:10\r\n:9\r\n" NODE_A), "entry 0: slots 10..9 end before they start" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n$8\r\n10.0.0.1\r\n"),
          "entry 0: the master is not an array" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n*1\r\n$8\r\n10.0.0.1\r\n"), "the master is not an array" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n:1\r\n:7000\r\n"), "the master's ip is not a host" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n$5\r\na b c\r\n:7000\r\n"), "ip is not a host" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n$3\r\na\0b\r\n:7000\r\n"), "ip is not a host" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n$2\r\n?!\r\n:7000\r\n"), "ip is not a host" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n$1\r\nh\r\n$4\r\n7000\r\n"),
          "entry 0: the master's port is not 1 to 65535" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n$1\r\nh\r\n:0\r\n"), "port is not 1 to 65535" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n$1\r\nh\r\n:65536\r\n"), "port is not 1 to 65535" },
        { R("*1\r\n*3\r\n:0\r\n:9\r\n*3\r\n$1\r\nh\r\n:1\r\n:5\r\n"),
          "the master's id is not a string" },
        /* overlaps, whatever the order they come in */
        { R("*2\r\n*3\r\n:0\r\n:100\r\n" NODE_A "*3\r\n:0\r\n:100\r\n" NODE_A),
          "slots 0..100 and 0..100 overlap" },
        { R("*2\r\n*3\r\n:50\r\n:200\r\n" NODE_A "*3\r\n:0\r\n:50\r\n" NODE_A),
          "slots 0..50 and 50..200 overlap" },
        { R("*3\r\n*3\r\n:300\r\n:400\r\n" NODE_A "*3\r\n:0\r\n:16383\r\n" NODE_A
          "*3\r\n:500\r\n:600\r\n" NODE_A), "slots 0..16383 and 300..400 overlap" },
    };
#undef R
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(reply_of(bad[i].resp, bad[i].len), bad[i].why);
    /* more entries than slots: refused before any is read */
    f = open_memstream(&text, &len);
    fprintf(f, "*%d\r\n", SL_REDIS_SLOTS + 1);
    for (int i = 0; i <= SL_REDIS_SLOTS; i++)
        fprintf(f, "*3\r\n:%d\r\n:%d\r\n" NODE_A, i, i);
    fclose(f);
    expect_refused(reply_of(text, len), "16385 entries, more than there are slots");
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_cluster),
        cmocka_unit_test(test_sorted_and_asked_host),
        cmocka_unit_test(test_partial_and_lenient),
        cmocka_unit_test(test_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
