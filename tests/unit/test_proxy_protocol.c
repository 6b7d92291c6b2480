/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The PROXY protocol parser (src/proxy_protocol.c): v1 and v2 headers as
 * HAProxy's proxy-protocol.txt writes them, every prefix of a valid header
 * asking for more, and hostile input refused: wrong signatures, overlong
 * v1 lines, bad addresses and ports, v2 lengths too short for the family,
 * TLVs that overrun, datagram transports, unknown commands.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "sluice/proxy_protocol.h"

static enum sl_pp_result
parse(const void *data, size_t len, struct sl_pp_header *h)
{
    return sl_proxy_protocol_parse(data, len, h);
}

static enum sl_pp_result
parse_str(const char *s, struct sl_pp_header *h)
{
    return parse(s, strlen(s), h);
}

static void
expect_in(const struct sockaddr_storage *ss, const char *ip, unsigned port)
{
    char text[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
        assert_int_equal(ntohs(sin->sin_port), port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)ss;
        assert_int_equal(ss->ss_family, AF_INET6);
        inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
        assert_int_equal(ntohs(sin6->sin6_port), port);
    }
    assert_string_equal(text, ip);
}

/* ---- v1 ------------------------------------------------------------------- */

static void
test_v1_tcp4(void **state)
{
    const char *hdr = "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
    struct sl_pp_header h;
    (void)state;

    assert_int_equal(parse_str(hdr, &h), SL_PP_DONE);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.len, strlen("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"));
    assert_false(h.is_local);
    expect_in(&h.src, "192.0.2.1", 56324);
    expect_in(&h.dst, "198.51.100.1", 443);
}

static void
test_v1_tcp6_and_unknown(void **state)
{
    struct sl_pp_header h;
    (void)state;

    assert_int_equal(parse_str("PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n", &h), SL_PP_DONE);
    expect_in(&h.src, "2001:db8::1", 65535);
    expect_in(&h.dst, "2001:db8::2", 0);
    assert_int_equal(parse_str("PROXY UNKNOWN\r\n", &h), SL_PP_DONE);
    assert_true(h.is_local);
    assert_int_equal(h.len, 15);
    assert_int_equal(parse_str("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", &h), SL_PP_DONE);
    assert_true(h.is_local);
}

/* Every strict prefix of a valid header wants more; none is DONE early. */
static void
test_v1_prefixes(void **state)
{
    const char *hdr = "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n";
    struct sl_pp_header h;
    (void)state;

    for (size_t n = 0; n < strlen(hdr); n++) {
        if (parse(hdr, n, &h) != SL_PP_MORE)
            fail_msg("prefix of %zu bytes: not MORE", n);
    }
}

static void
test_v1_hostile(void **state)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n\r\n",                               /* no header at all */
        "proxy TCP4 192.0.2.1 198.51.100.1 1 2\r\n",            /* case matters */
        "PROXY TCP4 192.0.2.1 198.51.100.1 1 2\n",              /* bare LF... */
        "PROXY TCP4 192.0.2.1 198.51.100.1 1 2\rX",              /* ...or CR */
        "PROXY TCP4  192.0.2.1 198.51.100.1 1 2\r\n",           /* two spaces */
        "PROXY TCP4 192.0.2.1 198.51.100.1 1 2 \r\n",           /* trailing space */
        "PROXY TCP4 192.0.2.1 198.51.100.1 1\r\n",              /* a field short */
        "PROXY TCP4 192.0.2.1 198.51.100.1 1 2 3\r\n",          /* a field long */
        "PROXY TCP5 192.0.2.1 198.51.100.1 1 2\r\n",            /* no such protocol */
        "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",          /* family mismatch */
        "PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",
        "PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n",          /* not an address */
        "PROXY TCP4 192.0.2.1 198.51.100.1 65536 2\r\n",        /* port too large */
        "PROXY TCP4 192.0.2.1 198.51.100.1 01 2\r\n",           /* leading zero */
        "PROXY TCP4 192.0.2.1 198.51.100.1 -1 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.1 1 2x\r\n",
        "PROXY TCP4 192.0.2.1\0 198.51.100.1 1 2\r\n",          /* NUL (cut by strlen: MORE) */
        "PROXY UNKNOWNX\r\n",
        "PROXY \xff\r\n",                                        /* not printable */
    };
    struct sl_pp_header h;
    char longline[200];
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum sl_pp_result r = parse_str(bad[i], &h);
        if (r != SL_PP_BAD && !(i == 16 && r == SL_PP_MORE))
            fail_msg("case %zu accepted (%d)", i, (int)r);
    }
    /* the NUL case with its real length */
    assert_int_equal(parse("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33, &h), SL_PP_BAD);
    /* no CRLF within 107 bytes: refused, however the line goes on */
    memset(longline, 'A', sizeof(longline));
    memcpy(longline, "PROXY UNKNOWN ", 14);
    assert_int_equal(parse(longline, 106, &h), SL_PP_MORE);
    assert_int_equal(parse(longline, 107, &h), SL_PP_BAD);
    assert_int_equal(parse(longline, sizeof(longline), &h), SL_PP_BAD);
    /* exactly 107 bytes with the CRLF is the longest allowed */
    memcpy(longline + 105, "\r\n", 2);
    assert_int_equal(parse(longline, 107, &h), SL_PP_DONE);
    assert_int_equal(h.len, 107);
}

/* ---- v2 ------------------------------------------------------------------- */

static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* A v2 header: ver_cmd, fam, then body (len bytes); returns its length. */
static size_t
v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t len)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    memcpy(out + 16, body, len);
    return 16 + len;
}

static void
test_v2_inet(void **state)
{
    uint8_t body[12 + 8] = { 192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb,
                             /* PP2_TYPE_SSL: client SSL, verify 0 */
                             0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0 };
    uint8_t buf[64];
    struct sl_pp_header h;
    size_t n;
    (void)state;

    n = v2(buf, 0x21, 0x11, body, 12);
    assert_int_equal(parse(buf, n, &h), SL_PP_DONE);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.len, 28);
    assert_false(h.is_local);
    assert_false(h.is_ssl);
    expect_in(&h.src, "192.0.2.1", 56324);
    expect_in(&h.dst, "198.51.100.1", 443);
    /* with the SSL TLV */
    n = v2(buf, 0x21, 0x11, body, sizeof(body));
    assert_int_equal(parse(buf, n, &h), SL_PP_DONE);
    assert_true(h.is_ssl);
    /* every prefix wants more */
    for (size_t k = 0; k < n; k++) {
        if (parse(buf, k, &h) != SL_PP_MORE)
            fail_msg("prefix of %zu bytes: not MORE", k);
    }
    /* bytes after the header are not its business */
    memcpy(buf + n, "GET", 3);
    assert_int_equal(parse(buf, n + 3, &h), SL_PP_DONE);
    assert_int_equal(h.len, n);
}

static void
test_v2_inet6_local_unspec(void **state)
{
    uint8_t body[36];
    uint8_t buf[300];
    struct sl_pp_header h;
    size_t n;
    (void)state;

    memset(body, 0, sizeof(body));
    inet_pton(AF_INET6, "2001:db8::1", body);
    inet_pton(AF_INET6, "2001:db8::2", body + 16);
    body[32] = 0x12;
    body[33] = 0x34;
    body[35] = 80;
    n = v2(buf, 0x21, 0x21, body, 36);
    assert_int_equal(parse(buf, n, &h), SL_PP_DONE);
    expect_in(&h.src, "2001:db8::1", 0x1234);
    expect_in(&h.dst, "2001:db8::2", 80);
    /* LOCAL: the balancer's own connection (health check); any body */
    n = v2(buf, 0x20, 0x00, body, 7);
    assert_int_equal(parse(buf, n, &h), SL_PP_DONE);
    assert_true(h.is_local);
    assert_int_equal(h.len, 23);
    /* PROXY with UNSPEC or UNIX: no address to use */
    n = v2(buf, 0x21, 0x00, body, 0);
    assert_int_equal(parse(buf, n, &h), SL_PP_DONE);
    assert_true(h.is_local);
    {
        uint8_t unix_body[216];
        memset(unix_body, 'a', sizeof(unix_body));
        n = v2(buf, 0x21, 0x31, unix_body, sizeof(unix_body));
        assert_int_equal(parse(buf, n, &h), SL_PP_DONE);
        assert_true(h.is_local);
    }
}

static void
test_v2_hostile(void **state)
{
    uint8_t body[64];
    uint8_t buf[128];
    struct sl_pp_header h;
    size_t n;
    (void)state;

    memset(body, 0, sizeof(body));
    /* version 1 in the binary form, version 3 */
    n = v2(buf, 0x11, 0x11, body, 12);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    n = v2(buf, 0x31, 0x11, body, 12);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    /* unknown command */
    n = v2(buf, 0x22, 0x11, body, 12);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    /* length too short for the family */
    n = v2(buf, 0x21, 0x11, body, 11);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    n = v2(buf, 0x21, 0x21, body, 35);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    /* datagrams, unknown families */
    n = v2(buf, 0x21, 0x12, body, 12);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    n = v2(buf, 0x21, 0x41, body, 12);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    n = v2(buf, 0x21, 0x13, body, 12);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    /* a TLV whose length overruns the header */
    body[12] = 0x20;
    body[13] = 0x00;
    body[14] = 0x09;
    n = v2(buf, 0x21, 0x11, body, 12 + 3 + 8);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    /* a TLV cut in its own type-length */
    n = v2(buf, 0x21, 0x11, body, 12 + 2);
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    /* a signature broken at its last byte */
    n = v2(buf, 0x21, 0x11, body, 12);
    buf[11] = 0x0b;
    assert_int_equal(parse(buf, n, &h), SL_PP_BAD);
    assert_int_equal(parse(buf, 12, &h), SL_PP_BAD);
    /* the announced length is waited for, never read past */
    n = v2(buf, 0x21, 0x11, body, 12);
    buf[14] = 0xff;
    buf[15] = 0xff;
    assert_int_equal(parse(buf, n, &h), SL_PP_MORE);
    assert_true(SL_PP_V2_MAX == 16 + 65535);
}

int
main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6_and_unknown),
        cmocka_unit_test(test_v1_prefixes),
        cmocka_unit_test(test_v1_hostile),
        cmocka_unit_test(test_v2_inet),
        cmocka_unit_test(test_v2_inet6_local_unspec),
        cmocka_unit_test(test_v2_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
