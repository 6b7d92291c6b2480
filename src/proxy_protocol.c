/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The PROXY protocol header, versions 1 (text) and 2 (binary), as HAProxy's
 * doc/proxy-protocol.txt specifies them. Strict: a header that is not
 * exactly what the spec allows is refused, since it comes first on a
 * connection and anything else there is an attack or a misconfigured
 * balancer, not a client to be lenient with. No I/O here.
 */
#include "sluice/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
static const char v1_sig[] = "PROXY ";

#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define PP2_TYPE_SSL 0x20
#define PP2_CLIENT_SSL 0x01

/* Whether data[0..len) could still become sig[0..sig_len). */
static bool
is_prefix(const uint8_t *data, size_t len, const void *sig, size_t sig_len)
{
    return memcmp(data, sig, len < sig_len ? len : sig_len) == 0;
}

/* ---- version 1 ------------------------------------------------------------- */

/* A port: 1 to 5 digits, no leading zero, at most 65535. */
static bool
parse_port(const char *s, size_t len, uint16_t *port)
{
    unsigned v = 0;

    if (len == 0 || len > 5 || (s[0] == '0' && len > 1))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* One address of a TCP4 or TCP6 line, with its port, into ss. */
static bool
v1_address(int family, const char *host, size_t host_len, const char *port, size_t port_len,
           struct sockaddr_storage *ss)
{
    char text[INET6_ADDRSTRLEN];
    uint16_t p;

    if (host_len == 0 || host_len >= sizeof(text) || !parse_port(port, port_len, &p))
        return false;
    memcpy(text, host, host_len);
    text[host_len] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(p);
        return inet_pton(AF_INET, text, &sin->sin_addr) == 1;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(p);
    return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1;
}

/*
 * "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n": fields separated by
 * exactly one space. "PROXY UNKNOWN" (with anything up to the CRLF) means
 * the balancer could not tell: the TCP peer stands.
 */
static enum sl_pp_result
parse_v1(const uint8_t *data, size_t len, struct sl_pp_header *out)
{
    const char *line = (const char *)data;
    size_t max = len < SL_PP_V1_MAX ? len : SL_PP_V1_MAX;
    const char *f[6];
    size_t flen[6], nf = 0, end, start;
    int family;

    /* printable ASCII up to the CRLF, so that nothing else can pass for a header */
    for (end = 0; end < max && line[end] != '\r'; end++) {
        if ((unsigned char)line[end] < 0x20 || (unsigned char)line[end] > 0x7e)
            return SL_PP_BAD;
    }
    if (end + 1 < max && line[end + 1] != '\n')
        return SL_PP_BAD;
    if (end + 1 >= max)
        return len >= SL_PP_V1_MAX ? SL_PP_BAD : SL_PP_MORE;
    out->version = 1;
    out->len = end + 2;
    if (end >= 13 && memcmp(line + 6, "UNKNOWN", 7) == 0 && (end == 13 || line[13] == ' ')) {
        out->is_local = true;
        return SL_PP_DONE;
    }
    for (start = 6; start <= end && nf < 6;) {
        size_t e = start;
        while (e < end && line[e] != ' ')
            e++;
        f[nf] = line + start;
        flen[nf++] = e - start;
        start = e + 1;
    }
    if (nf != 5 || start <= end)
        return SL_PP_BAD;
    if (flen[0] == 4 && memcmp(f[0], "TCP4", 4) == 0)
        family = AF_INET;
    else if (flen[0] == 4 && memcmp(f[0], "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return SL_PP_BAD;
    if (!v1_address(family, f[1], flen[1], f[3], flen[3], &out->src)
        || !v1_address(family, f[2], flen[2], f[4], flen[4], &out->dst))
        return SL_PP_BAD;
    return SL_PP_DONE;
}

/* ---- version 2 ------------------------------------------------------------- */

/* The TLVs after the addresses: each must fit; only PP2_TYPE_SSL is read. */
static bool
v2_tlvs(const uint8_t *p, size_t len, struct sl_pp_header *out)
{
    while (len > 0) {
        size_t vlen;
        if (len < 3)
            return false;
        vlen = ((size_t)p[1] << 8) | p[2];
        if (vlen > len - 3)
            return false;
        if (p[0] == PP2_TYPE_SSL && vlen >= 1 && (p[3] & PP2_CLIENT_SSL))
            out->is_ssl = true;
        p += 3 + vlen;
        len -= 3 + vlen;
    }
    return true;
}

static void
v2_inet(const uint8_t *a, struct sl_pp_header *out)
{
    struct sockaddr_in *src = (struct sockaddr_in *)(void *)&out->src;
    struct sockaddr_in *dst = (struct sockaddr_in *)(void *)&out->dst;

    src->sin_family = dst->sin_family = AF_INET;
    memcpy(&src->sin_addr, a, 4);
    memcpy(&dst->sin_addr, a + 4, 4);
    memcpy(&src->sin_port, a + 8, 2);
    memcpy(&dst->sin_port, a + 10, 2);
}

static void
v2_inet6(const uint8_t *a, struct sl_pp_header *out)
{
    struct sockaddr_in6 *src = (struct sockaddr_in6 *)(void *)&out->src;
    struct sockaddr_in6 *dst = (struct sockaddr_in6 *)(void *)&out->dst;

    src->sin6_family = dst->sin6_family = AF_INET6;
    memcpy(&src->sin6_addr, a, 16);
    memcpy(&dst->sin6_addr, a + 16, 16);
    memcpy(&src->sin6_port, a + 32, 2);
    memcpy(&dst->sin6_port, a + 34, 2);
}

/*
 * 12-byte signature, version/command, family/transport, 16-bit length of
 * what follows: addresses, then TLVs. LOCAL (health checks of the balancer
 * itself) keeps the TCP peer; so do UNSPEC and UNIX families, which name no
 * address a client could be keyed by. Datagram transports are refused.
 */
static enum sl_pp_result
parse_v2(const uint8_t *data, size_t len, struct sl_pp_header *out)
{
    size_t body, need;
    unsigned cmd, fam, proto;

    if (len < 16)
        return SL_PP_MORE;
    if ((data[12] >> 4) != 2)
        return SL_PP_BAD;
    cmd = data[12] & 0x0f;
    fam = data[13] >> 4;
    proto = data[13] & 0x0f;
    body = ((size_t)data[14] << 8) | data[15];
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return SL_PP_BAD;
    if (len < 16 + body)
        return SL_PP_MORE;
    out->version = 2;
    out->len = 16 + body;
    if (cmd == V2_CMD_LOCAL) {
        out->is_local = true;
        return SL_PP_DONE;
    }
    if (fam > 3 || proto > 2 || proto == 2)
        return SL_PP_BAD;
    need = fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0;
    if (body < need)
        return SL_PP_BAD;
    if (fam == 0 || fam == 3 || proto == 0) {
        out->is_local = true;
    } else if (fam == 1) {
        v2_inet(data + 16, out);
    } else {
        v2_inet6(data + 16, out);
    }
    return v2_tlvs(data + 16 + need, body - need, out) ? SL_PP_DONE : SL_PP_BAD;
}

enum sl_pp_result
sl_proxy_protocol_parse(const uint8_t *data, size_t len, struct sl_pp_header *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return SL_PP_MORE;
    if (is_prefix(data, len, v1_sig, sizeof(v1_sig) - 1))
        return len < sizeof(v1_sig) - 1 ? SL_PP_MORE : parse_v1(data, len, out);
    if (is_prefix(data, len, v2_sig, sizeof(v2_sig)))
        return parse_v2(data, len, out);
    return SL_PP_BAD;
}
