/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * RFC 7239 Forwarded (src/util/forwarded.c): the list parser with quoted
 * values and empty members, node names (IPv4, bracketed IPv6, ports,
 * "unknown", obfuscated), hostile input refused, and the walk that picks
 * the client from a trusted peer's field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/netaddr.h"
#include "util/forwarded.h"

static int
parse_str(const char *s, struct sl_fwd_element *e, size_t max)
{
    return sl_forwarded_parse(s, strlen(s), e, max);
}

static void
expect_text(const struct sl_fwd_value *v, const char *want)
{
    char buf[256];
    size_t len;

    assert_non_null(v->at);
    assert_true(sl_forwarded_text(v, buf, sizeof(buf), &len));
    assert_string_equal(buf, want);
    assert_int_equal(len, strlen(want));
}

static void
test_parse_elements(void **state)
{
    struct sl_fwd_element e[8];
    (void)state;

    /* RFC 7239 section 4's examples */
    assert_int_equal(parse_str("for=\"_gazonk\"", e, 8), 1);
    expect_text(&e[0].node, "_gazonk");
    assert_int_equal(parse_str("For=\"[2001:db8:cafe::17]:4711\"", e, 8), 1);
    expect_text(&e[0].node, "[2001:db8:cafe::17]:4711");
    assert_int_equal(parse_str("for=192.0.2.60;proto=http;by=203.0.113.43", e, 8), 1);
    expect_text(&e[0].node, "192.0.2.60");
    expect_text(&e[0].proto, "http");
    assert_null(e[0].host.at);
    assert_int_equal(parse_str("for=192.0.2.43, for=198.51.100.17", e, 8), 2);
    expect_text(&e[1].node, "198.51.100.17");
    /* empty list members, OWS around separators, quoted-pairs, extensions */
    assert_int_equal(parse_str(" , for=1.2.3.4 ;\thost=\"a\\\"b\" ,, ;, ext=x;for=5.6.7.8 ,",
                               e, 8),
                     2);
    expect_text(&e[0].host, "a\"b");
    expect_text(&e[1].node, "5.6.7.8");
    assert_int_equal(parse_str("", e, 8), 0);
}

static void
test_parse_hostile(void **state)
{
    static const char *const bad[] = {
        "for",                       /* no = */
        "for=",                      /* no value */
        "=1.2.3.4",                  /* no name */
        "for=\"1.2.3.4",             /* unterminated quote */
        "for=\"1.2.3.4\\",           /* quoted-pair at the end */
        "for=1.2.3.4 proto=http",    /* missing ; */
        "for=1.2.3.4;for=5.6.7.8",   /* a parameter twice in one element */
        "by=a;by=b",
        "for=[2001:db8::1]",         /* brackets need quotes */
        "for=\"a\x01\"",             /* control byte */
        "for=1.2.3.4:80",            /* ':' is not a tchar: must be quoted */
        "for=a b",
        "f(r=1",
    };
    struct sl_fwd_element e[8];
    char many[1024];
    size_t n = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_str(bad[i], e, 4) != -1)
            fail_msg("%s: accepted", bad[i]);
    }
    /* more elements than room: refused, not cut */
    for (int i = 0; i < 5; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%sfor=10.0.0.%d", i ? "," : "", i);
    assert_int_equal(parse_str(many, e, 4), -1);
    assert_int_equal(parse_str(many, e, 5), 5);
}

static void
test_nodes(void **state)
{
    static const struct {
        const char *node;
        enum sl_fwd_node kind;
        const char *addr;
    } cases[] = {
        { "192.0.2.43", SL_FWD_NODE_ADDRESS, "192.0.2.43" },
        { "192.0.2.43:47011", SL_FWD_NODE_ADDRESS, "192.0.2.43" },
        { "192.0.2.43:_port", SL_FWD_NODE_ADDRESS, "192.0.2.43" },
        { "[2001:db8:cafe::17]", SL_FWD_NODE_ADDRESS, "2001:db8:cafe::17" },
        { "[2001:DB8:cafe:0::17]:4711", SL_FWD_NODE_ADDRESS, "2001:db8:cafe::17" },
        { "[::ffff:192.0.2.1]", SL_FWD_NODE_ADDRESS, "192.0.2.1" },
        { "unknown", SL_FWD_NODE_UNKNOWN, NULL },
        { "UNKNOWN:8080", SL_FWD_NODE_UNKNOWN, NULL },
        { "_hidden", SL_FWD_NODE_OBFUSCATED, NULL },
        { "_SEVKISEK:_abc", SL_FWD_NODE_OBFUSCATED, NULL },
        { "_", SL_FWD_NODE_BAD, NULL },
        { "_a/b", SL_FWD_NODE_BAD, NULL },
        { "2001:db8::1", SL_FWD_NODE_BAD, NULL },      /* IPv6 without brackets */
        { "[2001:db8::1", SL_FWD_NODE_BAD, NULL },
        { "[2001:db8::1]x", SL_FWD_NODE_BAD, NULL },
        { "[2001:db8::1]:", SL_FWD_NODE_BAD, NULL },
        { "[192.0.2.1]", SL_FWD_NODE_BAD, NULL },
        { "192.0.2.1:65536", SL_FWD_NODE_BAD, NULL },
        { "192.0.2.1:", SL_FWD_NODE_BAD, NULL },
        { "192.0.2", SL_FWD_NODE_BAD, NULL },
        { "example.com", SL_FWD_NODE_BAD, NULL },
        { "", SL_FWD_NODE_BAD, NULL },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char addr[48] = "";
        enum sl_fwd_node k = sl_forwarded_node(cases[i].node, strlen(cases[i].node), addr,
                                               sizeof(addr));
        if (k != cases[i].kind)
            fail_msg("%s: kind %d, want %d", cases[i].node, (int)k, (int)cases[i].kind);
        if (cases[i].addr != NULL)
            assert_string_equal(addr, cases[i].addr);
    }
}

static struct sl_cidr trusted[2];

static void
client(const char *field, const char *peer, const char *addr, const char *proto,
       const char *host)
{
    struct sl_fwd_client out;

    assert_int_equal(sl_cidr_parse("10.0.0.0/8", &trusted[0]), 0);
    assert_int_equal(sl_cidr_parse("fd00::/8", &trusted[1]), 0);
    if (addr == NULL) {
        assert_false(sl_forwarded_client(field, strlen(field), peer, strlen(peer), trusted, 2,
                                         &out));
        return;
    }
    if (!sl_forwarded_client(field, strlen(field), peer, strlen(peer), trusted, 2, &out))
        fail_msg("%s: refused", field);
    assert_string_equal(out.addr, addr);
    assert_int_equal(out.addr_len, strlen(addr));
    assert_string_equal(out.proto, proto);
    assert_string_equal(out.host, host);
}

static void
test_client_walk(void **state)
{
    (void)state;
    /* the right-most untrusted node; proto and host of its element */
    client("for=198.51.100.1;proto=https;host=api.example.com", "10.0.0.1", "198.51.100.1",
           "https", "api.example.com");
    client("for=203.0.113.9, for=198.51.100.1;proto=https, for=10.0.0.7;proto=http",
           "10.0.0.1", "198.51.100.1", "https", "");
    /* all trusted: the left-most */
    client("for=10.0.0.9;host=\"a.example:8443\", for=10.0.0.8", "10.0.0.1", "10.0.0.9", "",
           "a.example:8443");
    /* IPv6, quoted with a port */
    client("for=\"[2001:db8::5]:1234\";proto=HTTP", "10.0.0.1", "2001:db8::5", "http", "");
    client("for=\"[fd00::1]\", for=\"[fd00::2]\"", "fd00::3", "fd00::1", "", "");
    /* unknown, obfuscated, missing, malformed for=: the last trusted stands */
    client("for=unknown;proto=https", "10.0.0.1", "10.0.0.1", "https", "");
    client("for=198.51.100.1, for=_hidden", "10.0.0.1", "10.0.0.1", "", "");
    client("for=198.51.100.1, for=10.0.0.5, for=\"_x:_y\"", "10.0.0.1", "10.0.0.1", "", "");
    client("for=198.51.100.1, for=unknown, for=10.0.0.5", "10.0.0.1", "10.0.0.5", "", "");
    client("proto=https", "10.0.0.1", "10.0.0.1", "https", "");
    client("for=example.com", "10.0.0.1", "10.0.0.1", "", "");
    /* hostile proto= and host= values are dropped, the address kept */
    client("for=198.51.100.1;proto=\"ht tp\";host=\"a\\\"b\"", "10.0.0.1", "198.51.100.1", "",
           "");
    client("for=198.51.100.1;proto=1http;host=\"a\\\\b\"", "10.0.0.1", "198.51.100.1", "", "");
    /* malformed or empty: nothing believed */
    client("for=198.51.100.1;for=1.1.1.1", "10.0.0.1", NULL, NULL, NULL);
    client(",,", "10.0.0.1", NULL, NULL, NULL);
    client("for=\"198.51.100.1", "10.0.0.1", NULL, NULL, NULL);
}

int
main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_elements),
        cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_client_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
