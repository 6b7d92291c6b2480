/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The resolver against a small DNS server of the test's own, a UDP socket on
 * loopback served by the same event loop: it answers A queries with the
 * address the test sets (or NXDOMAIN while there is none) and AAAA queries
 * with no records. Checks first answers and the wait, a changed address
 * moving the version, a failing lookup keeping the last addresses, and the
 * references that keep a name alive across a conf that drops it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "sluice/config.h"
#include "sluice/resolver.h"

static struct {
    struct event_base *base;
    int fd;
    struct event *ev;
    uint16_t port;
    uint32_t addr;     /* network order; 0: answer NXDOMAIN */
    unsigned nqueries;
    struct sl_config cfg;
    struct sl_upstream_conf up;
    struct sl_server_name name;
    struct sl_sockaddr server;
} f;

static void
answer(evutil_socket_t fd, short what, void *arg)
{
    uint8_t q[512], r[600];
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof(from);
    ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
    size_t qend = 12, len;
    uint16_t qtype;
    bool has_record;

    (void)what;
    (void)arg;
    if (n < 17)
        return;
    while (qend < (size_t)n && q[qend] != 0)
        qend += q[qend] + 1u;
    qend += 5; /* the root label, QTYPE, QCLASS */
    if (qend > (size_t)n)
        return;
    f.nqueries++;
    qtype = (uint16_t)(q[qend - 4] << 8 | q[qend - 3]);
    has_record = qtype == 1 && f.addr != 0;
    memcpy(r, q, qend);
    r[2] = 0x81;
    r[3] = f.addr == 0 ? 0x83 : 0x80; /* NXDOMAIN, or no error */
    r[4] = 0, r[5] = 1, r[6] = 0, r[7] = has_record, r[8] = r[9] = r[10] = r[11] = 0;
    len = qend;
    if (has_record) {
        static const uint8_t rr[] = { 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4 };
        memcpy(r + len, rr, sizeof(rr));
        memcpy(r + len + sizeof(rr), &f.addr, 4);
        len += sizeof(rr) + 4;
    }
    sendto(fd, r, len, 0, (struct sockaddr *)&from, fromlen);
}

static int
setup(void **state)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t slen = sizeof(sin);
    char text[64];

    (void)state;
    memset(&f, 0, sizeof(f));
    f.base = event_base_new();
    f.fd = socket(AF_INET, SOCK_DGRAM, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f.fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(f.fd, (struct sockaddr *)&sin, &slen), 0);
    f.port = ntohs(sin.sin_port);
    f.ev = event_new(f.base, f.fd, EV_READ | EV_PERSIST, answer, NULL);
    event_add(f.ev, NULL);

    snprintf(text, sizeof(text), "127.0.0.1:%u", f.port);
    assert_int_equal(sl_sockaddr_parse(text, &f.server), 0);
    f.name = (struct sl_server_name){ .host = "api.test", .port = 80, .text = "api.test:80" };
    f.up = (struct sl_upstream_conf){ .name = "api", .names = &f.name, .nnames = 1 };
    f.cfg.upstreams = &f.up;
    f.cfg.nupstreams = 1;
    f.cfg.resolver = (struct sl_resolver_conf){ .servers = &f.server, .nservers = 1,
                                                .valid_ms = 1000, .timeout_ms = 500 };
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    event_free(f.ev);
    close(f.fd);
    event_base_free(f.base);
    return 0;
}

static void
settled(void *arg)
{
    (*(int *)arg)++;
    event_base_loopbreak(f.base);
}

/* Runs the loop until the resolver's wait ends; how many times cb ran. */
static int
wait_settled(struct sl_resolver *r)
{
    int calls = 0;

    sl_resolver_wait(r, 3000, settled, &calls);
    if (calls == 0)
        event_base_dispatch(f.base);
    return calls;
}

/* Runs the loop until the name's version moves, at most about 4 s. */
static void
wait_version(struct sl_resolved *name, uint64_t from)
{
    for (int i = 0; i < 40 && sl_resolved_version(name) == from; i++) {
        struct timeval tv = { 0, 100 * 1000 };
        event_base_loopexit(f.base, &tv);
        event_base_dispatch(f.base);
    }
}

static uint32_t
first_address(struct sl_resolved *name, size_t *n)
{
    struct sockaddr_storage out[SL_RESOLVED_MAX];
    uint64_t version;

    *n = sl_resolved_addresses(name, out, SL_RESOLVED_MAX, &version);
    return *n > 0 ? ((struct sockaddr_in *)&out[0])->sin_addr.s_addr : 0;
}

static void
test_no_names(void **state)
{
    struct sl_resolver *r = sl_resolver_new(f.base);
    char err[128];
    (void)state;

    f.up.nnames = 0;
    assert_int_equal(sl_resolver_configure(r, &f.cfg, err, sizeof(err)), 0);
    assert_true(sl_resolver_is_settled(r));
    assert_int_equal(wait_settled(r), 1);
    assert_null(sl_resolver_ref(r, "api.test"));
    assert_int_equal(f.nqueries, 0);
    sl_resolver_free(r);
}

static void
test_answer_change_failure(void **state)
{
    struct sl_resolver *r = sl_resolver_new(f.base);
    struct sl_resolved *name;
    char err[128];
    size_t n;
    uint64_t v;
    (void)state;

    f.addr = htonl(0x7f000005);
    assert_int_equal(sl_resolver_configure(r, &f.cfg, err, sizeof(err)), 1);
    assert_false(sl_resolver_is_settled(r));
    assert_int_equal(wait_settled(r), 1);
    name = sl_resolver_ref(r, "api.test");
    assert_non_null(name);
    v = sl_resolved_version(name);
    assert_true(v > 0);
    assert_int_equal(first_address(name, &n), htonl(0x7f000005));
    assert_int_equal(n, 1);

    /* refreshed at valid (1 s): the new address, a new version */
    f.addr = htonl(0x7f000006);
    wait_version(name, v);
    assert_true(sl_resolved_version(name) > v);
    assert_int_equal(first_address(name, &n), htonl(0x7f000006));

    /* NXDOMAIN from now on: the last addresses stay */
    v = sl_resolved_version(name);
    f.addr = 0;
    {
        unsigned before = f.nqueries;
        for (int i = 0; i < 40 && f.nqueries < before + 2; i++) {
            struct timeval tv = { 0, 100 * 1000 };
            event_base_loopexit(f.base, &tv);
            event_base_dispatch(f.base);
        }
        assert_true(f.nqueries >= before + 2);
    }
    assert_int_equal(sl_resolved_version(name), v);
    assert_int_equal(first_address(name, &n), htonl(0x7f000006));

    /* a conf without the name: a held name lives on, the sweep spares it */
    f.up.nnames = 0;
    assert_int_equal(sl_resolver_configure(r, &f.cfg, err, sizeof(err)), 0);
    sl_resolver_sweep(r);
    assert_int_equal(first_address(name, &n), htonl(0x7f000006));
    sl_resolved_unref(name);
    {
        /* a lookup under way when the conf dropped the name ends first */
        struct timeval tv = { 1, 200 * 1000 };
        event_base_loopexit(f.base, &tv);
        event_base_dispatch(f.base);
    }
    sl_resolver_sweep(r);
    assert_null(sl_resolver_ref(r, "api.test"));
    sl_resolver_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_change_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
