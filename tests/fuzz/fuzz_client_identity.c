/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Fuzz driver: what a balancer (or anyone pretending to be one) says about
 * the client. Input layout:
 *
 *   byte 0: even: the rest is the first bytes of a connection on a PROXY
 *           protocol listener (src/proxy_protocol.c); odd: the rest is a
 *           Forwarded field value from a trusted peer (src/util/forwarded.c)
 *   rest:   the bytes
 *
 * PROXY: a header found is within the input and parses the same from its
 * own bytes alone, every prefix of it asks for more, a refusal stays a
 * refusal whatever follows, and an accepted address is an IPv4 or IPv6 one.
 * Forwarded: the client named is the peer or an address in canonical text,
 * proto= and host= have only the characters they may carry upstream.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "fuzz_util.h"
#include "sluice/netaddr.h"
#include "sluice/proxy_protocol.h"
#include "util/forwarded.h"

static void
fuzz_proxy_header(const uint8_t *data, size_t size)
{
    struct sl_pp_header h, again;
    enum sl_pp_result r = sl_proxy_protocol_parse(data, size, &h);

    if (r == SL_PP_BAD) {
        /* bytes added after a refused start cannot make it a header */
        uint8_t more[8] = { '\r', '\n', 0, 0, 0, 0, 0, 0 };
        uint8_t buf[256 + sizeof(more)];
        if (size <= 256) {
            memcpy(buf, data, size);
            memcpy(buf + size, more, sizeof(more));
            SL_FUZZ_CHECK(sl_proxy_protocol_parse(buf, size + sizeof(more), &again) == SL_PP_BAD);
        }
        return;
    }
    if (r == SL_PP_MORE) {
        SL_FUZZ_CHECK(size < SL_PP_V2_MAX);
        return;
    }
    SL_FUZZ_CHECK(h.len > 0 && h.len <= size);
    SL_FUZZ_CHECK(h.version == 1 ? h.len <= SL_PP_V1_MAX : h.len <= SL_PP_V2_MAX);
    SL_FUZZ_CHECK(sl_proxy_protocol_parse(data, h.len, &again) == SL_PP_DONE);
    SL_FUZZ_CHECK(again.len == h.len && again.is_local == h.is_local);
    for (size_t n = 0; n < h.len && n < 128; n++)
        SL_FUZZ_CHECK(sl_proxy_protocol_parse(data, n, &again) == SL_PP_MORE);
    if (!h.is_local) {
        SL_FUZZ_CHECK(h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6);
        SL_FUZZ_CHECK(h.dst.ss_family == h.src.ss_family);
    }
}

static void
fuzz_forwarded(const uint8_t *data, size_t size)
{
    static const char peer[] = "10.0.0.1";
    struct sl_cidr trusted;
    struct sl_fwd_client out;
    unsigned char bin[16];

    if (sl_cidr_parse("10.0.0.0/8", &trusted) != 0)
        SL_FUZZ_CHECK(false);
    if (!sl_forwarded_client((const char *)data, size, peer, sizeof(peer) - 1, &trusted, 1, &out))
        return;
    SL_FUZZ_CHECK(out.addr_len == strlen(out.addr) && out.addr_len < sizeof(out.addr));
    SL_FUZZ_CHECK(strcmp(out.addr, peer) == 0 || inet_pton(AF_INET, out.addr, bin) == 1
                  || inet_pton(AF_INET6, out.addr, bin) == 1);
    SL_FUZZ_CHECK(out.proto_len == strlen(out.proto));
    for (size_t i = 0; i < out.proto_len; i++)
        SL_FUZZ_CHECK(strchr("abcdefghijklmnopqrstuvwxyz0123456789+-.", out.proto[i]) != NULL);
    SL_FUZZ_CHECK(out.host_len == strlen(out.host));
    for (size_t i = 0; i < out.host_len; i++)
        SL_FUZZ_CHECK(out.host[i] > ' ' && out.host[i] < 0x7f && out.host[i] != '"'
                      && out.host[i] != '\\');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] % 2 == 0)
        fuzz_proxy_header(data + 1, size - 1);
    else
        fuzz_forwarded(data + 1, size - 1);
    return 0;
}
