/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * RFC 7239 Forwarded: the list parser (section 4), node names (section 6)
 * and the right-to-left walk over trusted proxies that picks the client.
 * Strict on syntax, since a value that does not parse cannot be believed;
 * the caller falls back to the TCP peer then. Nothing here logs.
 */
#include "util/forwarded.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 section 5.6.2 */
static bool
is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static size_t
skip_ows(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* A token or a quoted-string at s[i]; the index past it, 0 when neither. */
static size_t
scan_value(const char *s, size_t len, size_t i, struct sl_fwd_value *v)
{
    size_t start = i;

    if (i < len && s[i] == '"') {
        for (i++; i < len && s[i] != '"'; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\\') {
                if (++i >= len)
                    return 0;
                c = (unsigned char)s[i];
                if (c != '\t' && (c < 0x20 || c == 0x7f))
                    return 0;
            } else if (c != '\t' && (c < 0x20 || c == 0x7f)) {
                return 0;
            }
        }
        if (i >= len)
            return 0; /* no closing quote */
        *v = (struct sl_fwd_value){ s + start, i + 1 - start, true };
        return i + 1;
    }
    while (i < len && is_tchar((unsigned char)s[i]))
        i++;
    if (i == start)
        return 0;
    *v = (struct sl_fwd_value){ s + start, i - start, false };
    return i;
}

static bool
name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* One forwarded-pair at s[i] into e; the index past it, 0 when malformed. */
static size_t
scan_pair(const char *s, size_t len, size_t i, struct sl_fwd_element *e, bool *has_by)
{
    const char *name = s + i;
    size_t name_len;
    struct sl_fwd_value v, *slot = NULL;

    while (i < len && is_tchar((unsigned char)s[i]))
        i++;
    name_len = (size_t)(s + i - name);
    if (name_len == 0 || i >= len || s[i] != '=')
        return 0;
    i = scan_value(s, len, i + 1, &v);
    if (i == 0)
        return 0;
    if (name_is(name, name_len, "for"))
        slot = &e->node;
    else if (name_is(name, name_len, "proto"))
        slot = &e->proto;
    else if (name_is(name, name_len, "host"))
        slot = &e->host;
    else if (name_is(name, name_len, "by")) {
        if (*has_by)
            return 0;
        *has_by = true;
    }
    if (slot != NULL) {
        if (slot->at != NULL)
            return 0; /* section 4: a parameter MUST NOT occur twice in an element */
        *slot = v;
    }
    return i;
}

int
sl_forwarded_parse(const char *value, size_t len, struct sl_fwd_element *out, size_t max)
{
    size_t i = 0;
    int n = 0;

    for (;;) {
        struct sl_fwd_element e = { { NULL, 0, false }, { NULL, 0, false }, { NULL, 0, false } };
        bool has_pair = false, has_by = false;

        i = skip_ows(value, len, i);
        if (i >= len)
            return n;
        if (value[i] == ',') {
            i++; /* an empty list member (RFC 9110 section 5.6.1) */
            continue;
        }
        for (;;) {
            i = skip_ows(value, len, i);
            if (i >= len || value[i] == ',')
                break;
            if (value[i] == ';') {
                i++;
                continue;
            }
            i = scan_pair(value, len, i, &e, &has_by);
            if (i == 0)
                return -1;
            has_pair = true;
            i = skip_ows(value, len, i);
            if (i < len && value[i] != ';' && value[i] != ',')
                return -1;
        }
        if (has_pair) {
            if ((size_t)n >= max)
                return -1;
            out[n++] = e;
        }
    }
}

bool
sl_forwarded_text(const struct sl_fwd_value *v, char *buf, size_t size, size_t *len)
{
    size_t n = 0;
    size_t from = v->is_quoted ? 1 : 0, to = v->is_quoted ? v->len - 1 : v->len;

    for (size_t i = from; i < to; i++) {
        if (v->is_quoted && v->at[i] == '\\')
            i++; /* scan_value made sure a character follows */
        if (n + 1 >= size)
            return false;
        buf[n++] = v->at[i];
    }
    if (size == 0)
        return false;
    buf[n] = '\0';
    *len = n;
    return true;
}

/* ALPHA / DIGIT / "." / "_" / "-": the characters of obfnode and obfport. */
static bool
is_obf(const char *s, size_t len)
{
    if (len < 2 || s[0] != '_')
        return false;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* node-port = port / obfport; port = 1*5DIGIT up to 65535 */
static bool
is_node_port(const char *s, size_t len)
{
    unsigned v = 0;

    if (is_obf(s, len))
        return true;
    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535;
}

/* The address text in canonical form; 0 when it is not one of `family`. */
static size_t
canonical(int family, const char *s, size_t len, char *addr, size_t size)
{
    char text[INET6_ADDRSTRLEN];
    unsigned char bin[16];

    if (len == 0 || len >= sizeof(text))
        return 0;
    memcpy(text, s, len);
    text[len] = '\0';
    if (inet_pton(family, text, bin) != 1)
        return 0;
    if (family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)bin)) {
        if (inet_ntop(AF_INET, bin + 12, addr, (socklen_t)size) == NULL)
            return 0;
    } else if (inet_ntop(family, bin, addr, (socklen_t)size) == NULL) {
        return 0;
    }
    return strlen(addr);
}

enum sl_fwd_node
sl_forwarded_node(const char *node, size_t len, char *addr, size_t size)
{
    const char *colon;
    size_t name_len = len;

    if (len > 0 && node[0] == '[') {
        const char *close = memchr(node, ']', len);
        size_t after;
        if (close == NULL)
            return SL_FWD_NODE_BAD;
        after = (size_t)(node + len - close) - 1;
        if (after > 0 && (close[1] != ':' || !is_node_port(close + 2, after - 1)))
            return SL_FWD_NODE_BAD;
        return canonical(AF_INET6, node + 1, (size_t)(close - node) - 1, addr, size)
                   ? SL_FWD_NODE_ADDRESS
                   : SL_FWD_NODE_BAD;
    }
    colon = memchr(node, ':', len);
    if (colon != NULL) {
        name_len = (size_t)(colon - node);
        if (!is_node_port(colon + 1, len - name_len - 1))
            return SL_FWD_NODE_BAD;
    }
    if (name_is(node, name_len, "unknown"))
        return SL_FWD_NODE_UNKNOWN;
    if (is_obf(node, name_len))
        return SL_FWD_NODE_OBFUSCATED;
    return canonical(AF_INET, node, name_len, addr, size) ? SL_FWD_NODE_ADDRESS
                                                          : SL_FWD_NODE_BAD;
}

/* proto=: a URI scheme (RFC 3986 section 3.1), kept lower-cased. */
static bool
take_proto(const struct sl_fwd_value *v, struct sl_fwd_client *out)
{
    size_t n;

    if (v->at == NULL || !sl_forwarded_text(v, out->proto, sizeof(out->proto), &n) || n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out->proto[i];
        bool is_alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!is_alpha && (i == 0 || !((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')))
            return false;
        if (c >= 'A' && c <= 'Z')
            out->proto[i] = (char)(c - 'A' + 'a');
    }
    out->proto_len = n;
    return true;
}

/* host=: uri-host [ ":" port ] characters only (RFC 3986 section 3.2.2),
 * since it goes on as X-Forwarded-Host. */
static bool
take_host(const struct sl_fwd_value *v, struct sl_fwd_client *out)
{
    size_t n;

    if (v->at == NULL || !sl_forwarded_text(v, out->host, sizeof(out->host), &n) || n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out->host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || (c != 0 && strchr("-._~!$&'()*+,;=:[]%", c) != NULL)))
            return false;
    }
    out->host_len = n;
    return true;
}

bool
sl_forwarded_client(const char *value, size_t len, const char *peer, size_t peer_len,
                    const struct sl_cidr *trusted, size_t ntrusted, struct sl_fwd_client *out)
{
    struct sl_fwd_element e[SL_FORWARDED_MAX];
    int n = sl_forwarded_parse(value, len, e, SL_FORWARDED_MAX);
    size_t i;

    memset(out, 0, sizeof(*out));
    if (n <= 0 || peer_len >= sizeof(out->addr))
        return false;
    memcpy(out->addr, peer, peer_len);
    out->addr_len = peer_len;
    for (i = (size_t)n; i-- > 0;) {
        char node[256], addr[sizeof(out->addr)];
        size_t node_len, addr_len;
        if (e[i].node.at == NULL || !sl_forwarded_text(&e[i].node, node, sizeof(node), &node_len)
            || sl_forwarded_node(node, node_len, addr, sizeof(addr)) != SL_FWD_NODE_ADDRESS)
            break; /* the client is hidden: the last trusted address stands */
        addr_len = strlen(addr);
        memcpy(out->addr, addr, addr_len + 1);
        out->addr_len = addr_len;
        if (i == 0 || !sl_cidr_match_text(trusted, ntrusted, addr, addr_len))
            break;
    }
    if (!take_proto(&e[i].proto, out)) {
        out->proto[0] = '\0';
        out->proto_len = 0;
    }
    if (!take_host(&e[i].host, out)) {
        out->host[0] = '\0';
        out->host_len = 0;
    }
    return true;
}
