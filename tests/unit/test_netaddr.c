/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * netaddr tests: socket address and CIDR parsing, matching (IPv4, IPv6,
 * IPv4-mapped), and the choice of the client address from X-Forwarded-For.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cmocka.h>

#include "sluice/netaddr.h"

static struct sl_cidr trusted[3];
static size_t ntrusted;

static int
setup_trusted(void **state)
{
    (void)state;
    ntrusted = 0;
    assert_int_equal(sl_cidr_parse("10.0.0.0/8", &trusted[ntrusted++]), 0);
    assert_int_equal(sl_cidr_parse("::1", &trusted[ntrusted++]), 0);
    assert_int_equal(sl_cidr_parse("fd00::/8", &trusted[ntrusted++]), 0);
    return 0;
}

/* A peer address for sl_cidr_match and sl_client_address. */
static struct sockaddr_storage *
peer(const char *ip)
{
    static struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    }
    return &ss;
}

static const char *
client(const char *peer_ip, const char *xff)
{
    static char buf[64];
    size_t len;

    len = sl_client_address((const struct sockaddr *)peer(peer_ip), xff,
                            xff != NULL ? strlen(xff) : 0, trusted, ntrusted, buf,
                            sizeof(buf));
    assert_int_equal(len, strlen(buf));
    return buf;
}

/* ---- parsing ----------------------------------------------------------- */

static void
test_sockaddr_parse(void **state)
{
    struct sl_sockaddr sa;

    (void)state;
    assert_int_equal(sl_sockaddr_parse("127.0.0.1:8080", &sa), 0);
    assert_string_equal(sa.text, "127.0.0.1:8080");
    assert_int_equal(sa.ss.ss_family, AF_INET);
    assert_int_equal(sl_sockaddr_parse("[::1]:9901", &sa), 0);
    assert_string_equal(sa.text, "[::1]:9901");
    assert_int_equal(sa.ss.ss_family, AF_INET6);
    assert_int_equal(sl_sockaddr_parse("localhost:80", &sa), 0);
    assert_string_equal(sa.text, "127.0.0.1:80");

    assert_int_equal(sl_sockaddr_parse("127.0.0.1", &sa), -1);
    assert_int_equal(sl_sockaddr_parse("127.0.0.1:0", &sa), -1);
    assert_int_equal(sl_sockaddr_parse("127.0.0.1:65536", &sa), -1);
    assert_int_equal(sl_sockaddr_parse("127.0.0.1:80x", &sa), -1);
    assert_int_equal(sl_sockaddr_parse("::1:80", &sa), -1);
    assert_int_equal(sl_sockaddr_parse("[::1]80", &sa), -1);
    assert_int_equal(sl_sockaddr_parse("example.com:80", &sa), -1);
    assert_int_equal(sl_sockaddr_parse(":80", &sa), -1);
}

/* unix:/path: absolute, fits sun_path with its NUL; nothing else */
static void
test_sockaddr_parse_unix(void **state)
{
    struct sl_sockaddr a;
    char longest[sizeof("unix:") + 107], too_long[sizeof("unix:") + 108];
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&a.ss;
    (void)state;

    assert_int_equal(sl_sockaddr_parse_unix("unix:/run/app.sock", &a), 0);
    assert_int_equal(a.ss.ss_family, AF_UNIX);
    assert_string_equal(sun->sun_path, "/run/app.sock");
    assert_string_equal(a.text, "unix:/run/app.sock");
    assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) + sizeof("/run/app.sock"));

    memcpy(longest, "unix:/", 6);
    memset(longest + 6, 'x', 106);
    longest[112] = '\0';
    assert_int_equal(sl_sockaddr_parse_unix(longest, &a), 0);
    memcpy(too_long, "unix:/", 6);
    memset(too_long + 6, 'x', 107);
    too_long[113] = '\0';
    assert_int_equal(sl_sockaddr_parse_unix(too_long, &a), -1);

    assert_int_equal(sl_sockaddr_parse_unix("unix:run/app.sock", &a), -1);
    assert_int_equal(sl_sockaddr_parse_unix("unix:", &a), -1);
    assert_int_equal(sl_sockaddr_parse_unix("/run/app.sock", &a), -1);
    assert_int_equal(sl_sockaddr_parse_unix("127.0.0.1:80", &a), -1);
    /* the TCP parser does not take them */
    assert_int_equal(sl_sockaddr_parse("unix:/run/app.sock", &a), -1);
}

/* host names: RFC 1123 labels; an address-looking text is no name */
static void
test_hostport_parse(void **state)
{
    char host[254], long_label[80], long_name[300];
    uint16_t port = 0;
    (void)state;

    assert_int_equal(sl_hostport_parse("api.default.svc.cluster.local:8080", host, sizeof(host),
                                       &port), 0);
    assert_string_equal(host, "api.default.svc.cluster.local");
    assert_int_equal(port, 8080);
    assert_int_equal(sl_hostport_parse("localhost:80", host, sizeof(host), &port), 0);
    assert_int_equal(sl_hostport_parse("api.example.:443", host, sizeof(host), &port), 0);
    assert_int_equal(sl_hostport_parse("a-b.example:1", host, sizeof(host), &port), 0);

    assert_int_equal(sl_hostport_parse("api.example", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse("api.example:0", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse("api.example:70000", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse("-api.example:80", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse("api-.example:80", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse("api..example:80", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse("api_x.example:80", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse(":80", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse("10.0.0.300:80", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse("[::1]:80", host, sizeof(host), &port), -1);
    assert_int_equal(sl_hostport_parse("unix:/run/app.sock", host, sizeof(host), &port), -1);

    memset(long_label, 'a', 64);
    strcpy(long_label + 64, ".example:80");
    assert_int_equal(sl_hostport_parse(long_label, host, sizeof(host), &port), -1);
    for (size_t i = 0; i < 254; i += 2)
        memcpy(long_name + i, "a.", 2);
    strcpy(long_name + 254, "x:80");
    assert_int_equal(sl_hostport_parse(long_name, host, sizeof(host), &port), -1);
}

static void
test_cidr_parse(void **state)
{
    struct sl_cidr c;
    static const char *const bad[] = { "", "abc", "10.0.0.0/", "/8", "10.0.0.0/33",
                                       "10.0.0.0/8x", "10.0.0.0/-1", "::/129", "10.0.0/8",
                                       "10.0.0.0/+8" };

    (void)state;
    assert_int_equal(sl_cidr_parse("10.1.2.3/8", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_memory_equal(c.addr, "\x0a\x00\x00\x00", 4); /* host bits masked */
    assert_int_equal(sl_cidr_parse("192.168.1.1", &c), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(sl_cidr_parse("2001:db8:ffff::/36", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 36);
    assert_memory_equal(c.addr, "\x20\x01\x0d\xb8\xf0\x00", 6);
    assert_int_equal(sl_cidr_parse("0.0.0.0/0", &c), 0);
    assert_int_equal(c.prefix, 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sl_cidr_parse(bad[i], &c) != -1)
            fail_msg("\"%s\" parsed", bad[i]);
    }
}

/* ---- matching ---------------------------------------------------------- */

static void
test_cidr_match(void **state)
{
    struct sl_cidr c[2];

    (void)state;
    assert_int_equal(sl_cidr_parse("172.16.0.0/12", &c[0]), 0);
    assert_int_equal(sl_cidr_parse("2001:db8::/32", &c[1]), 0);
    assert_true(sl_cidr_match(c, 2, (const struct sockaddr *)peer("172.16.0.1")));
    assert_true(sl_cidr_match(c, 2, (const struct sockaddr *)peer("172.31.255.255")));
    assert_false(sl_cidr_match(c, 2, (const struct sockaddr *)peer("172.32.0.0")));
    assert_false(sl_cidr_match(c, 2, (const struct sockaddr *)peer("172.15.255.255")));
    assert_true(sl_cidr_match(c, 2, (const struct sockaddr *)peer("2001:db8:1::5")));
    assert_false(sl_cidr_match(c, 2, (const struct sockaddr *)peer("2001:db9::5")));
    /* an IPv4 client on a dual-stack socket */
    assert_true(sl_cidr_match(c, 2, (const struct sockaddr *)peer("::ffff:172.20.1.1")));
    assert_false(sl_cidr_match(c, 2, (const struct sockaddr *)peer("::ffff:8.8.8.8")));
    assert_false(sl_cidr_match(c, 0, (const struct sockaddr *)peer("172.16.0.1")));

    assert_true(sl_cidr_match_text(c, 2, "172.16.9.9", 10));
    assert_false(sl_cidr_match_text(c, 2, "172.160.9.9", 11));
    assert_true(sl_cidr_match_text(c, 2, "2001:db8::1", 11));
    assert_true(sl_cidr_match_text(c, 2, "::ffff:172.16.0.1", 17));
    assert_false(sl_cidr_match_text(c, 2, "garbage", 7));
    assert_false(sl_cidr_match_text(c, 2, "", 0));
    /* a length that stops inside the text */
    assert_true(sl_cidr_match_text(c, 2, "172.16.0.1, 9.9.9.9", 10));
}

static void
test_cidr_match_any(void **state)
{
    struct sl_cidr c;

    (void)state;
    assert_int_equal(sl_cidr_parse("0.0.0.0/0", &c), 0);
    assert_true(sl_cidr_match(&c, 1, (const struct sockaddr *)peer("203.0.113.9")));
    assert_false(sl_cidr_match(&c, 1, (const struct sockaddr *)peer("2001:db8::1")));
    assert_int_equal(sl_cidr_parse("::/0", &c), 0);
    assert_true(sl_cidr_match(&c, 1, (const struct sockaddr *)peer("2001:db8::1")));
}

static void
test_sockaddr_host(void **state)
{
    char buf[64];

    (void)state;
    assert_int_equal(sl_sockaddr_host((const struct sockaddr *)peer("10.9.8.7"), buf,
                                      sizeof(buf)), 8);
    assert_string_equal(buf, "10.9.8.7");
    assert_int_equal(sl_sockaddr_host((const struct sockaddr *)peer("2001:db8::1"), buf,
                                      sizeof(buf)), 11);
    assert_string_equal(buf, "2001:db8::1");
}

/* ---- X-Forwarded-For ---------------------------------------------------------- */

static void
test_xff_untrusted_peer(void **state)
{
    (void)state;
    /* anyone can send the header: from an untrusted peer it is ignored */
    assert_string_equal(client("203.0.113.5", "198.51.100.1"), "203.0.113.5");
    assert_string_equal(client("203.0.113.5", NULL), "203.0.113.5");
}

static void
test_xff_trusted_peer(void **state)
{
    (void)state;
    assert_string_equal(client("10.0.0.1", "198.51.100.1"), "198.51.100.1");
    /* the right-most untrusted hop: what the client wrote itself is skipped */
    assert_string_equal(client("10.0.0.1", "1.1.1.1, 198.51.100.1, 10.0.0.2"),
                        "198.51.100.1");
    assert_string_equal(client("10.0.0.1", "  198.51.100.1 ,\t10.0.0.2 "), "198.51.100.1");
    /* no header: the peer */
    assert_string_equal(client("10.0.0.1", NULL), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", ""), "10.0.0.1");
}

static void
test_xff_all_trusted(void **state)
{
    (void)state;
    assert_string_equal(client("10.0.0.1", "10.0.0.3, 10.0.0.2"), "10.0.0.3");
}

static void
test_xff_garbage(void **state)
{
    (void)state;
    /* garbage stops the walk at the last trusted address seen */
    assert_string_equal(client("10.0.0.1", "198.51.100.1, garbage, 10.0.0.2"), "10.0.0.2");
    assert_string_equal(client("10.0.0.1", "198.51.100.1, garbage"), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "198.51.100.1,"), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "198.51.100.1,,10.0.0.2"), "10.0.0.2");
    assert_string_equal(client("10.0.0.1", "198.51.100.1:4711"), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "unknown"), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "[2001:db8::1]"), "10.0.0.1");
}

static void
test_xff_ipv6(void **state)
{
    (void)state;
    assert_string_equal(client("::1", "2001:db8::5"), "2001:db8::5");
    assert_string_equal(client("::1", "2001:db8::5, fd00::7"), "2001:db8::5");
    assert_string_equal(client("2001:db8::9", "198.51.100.1"), "2001:db8::9");
    /* one address, one key: written the long way, it still comes out short */
    assert_string_equal(client("::1", "2001:DB8:0:0:0:0:0:5"), "2001:db8::5");
}

static void
test_xff_v4_mapped(void **state)
{
    (void)state;
    /* a trusted proxy reaching a dual-stack listener over IPv4 */
    assert_string_equal(client("::ffff:10.0.0.1", "198.51.100.1"), "198.51.100.1");
    /* an untrusted IPv4 client on a dual-stack listener: the same key as on IPv4 */
    assert_string_equal(client("::ffff:203.0.113.5", "198.51.100.1"), "203.0.113.5");
    /* a mapped hop is trusted like the IPv4 address it maps */
    assert_string_equal(client("10.0.0.1", "198.51.100.1, ::ffff:10.0.0.2"), "198.51.100.1");
    assert_string_equal(client("10.0.0.1", "::ffff:198.51.100.1"), "198.51.100.1");
}

static void
test_xff_small_buffer(void **state)
{
    char buf[8];

    (void)state;
    /* truncated, but terminated */
    sl_client_address((const struct sockaddr *)peer("10.0.0.1"), "198.51.100.1", 12, trusted,
                      ntrusted, buf, sizeof(buf));
    assert_int_equal(strlen(buf), 7);
}

/* A resolved address (port 0) with the port of its name, and its text. */
static void
test_sockaddr_from(void **state)
{
    struct sockaddr_storage ss;
    struct sl_sockaddr a;

    (void)state;
    memset(&ss, 0, sizeof(ss));
    ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
    inet_pton(AF_INET, "10.1.2.3", &((struct sockaddr_in *)&ss)->sin_addr);
    sl_sockaddr_from(&ss, 8080, &a);
    assert_string_equal(a.text, "10.1.2.3:8080");
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 8080);

    memset(&ss, 0, sizeof(ss));
    ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
    inet_pton(AF_INET6, "fd00::1", &((struct sockaddr_in6 *)&ss)->sin6_addr);
    sl_sockaddr_from(&ss, 443, &a);
    assert_string_equal(a.text, "[fd00::1]:443");
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sockaddr_from),
        cmocka_unit_test(test_sockaddr_parse),
        cmocka_unit_test(test_sockaddr_parse_unix),
        cmocka_unit_test(test_hostport_parse),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_cidr_match_any),
        cmocka_unit_test(test_sockaddr_host),
        cmocka_unit_test_setup(test_xff_untrusted_peer, setup_trusted),
        cmocka_unit_test_setup(test_xff_trusted_peer, setup_trusted),
        cmocka_unit_test_setup(test_xff_all_trusted, setup_trusted),
        cmocka_unit_test_setup(test_xff_garbage, setup_trusted),
        cmocka_unit_test_setup(test_xff_ipv6, setup_trusted),
        cmocka_unit_test_setup(test_xff_v4_mapped, setup_trusted),
        cmocka_unit_test_setup(test_xff_small_buffer, setup_trusted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
