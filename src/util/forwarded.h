/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The Forwarded header field of RFC 7239: a parser of its list of elements
 * and the walk that picks the client out of it, given which peers are
 * trusted. No allocation; values point into the field's text.
 */
#ifndef SL_UTIL_FORWARDED_H
#define SL_UTIL_FORWARDED_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/netaddr.h"

#define SL_FORWARDED_MAX 64u /* elements parsed; a longer list is refused */

/* A parameter's value as written: a token, or a quoted-string with its
 * quotes (is_quoted). at == NULL: the element does not have it. */
struct sl_fwd_value {
    const char *at;
    size_t len;
    bool is_quoted;
};

/* One forwarded-element: the parameters sluice reads (by= and extensions
 * are checked for syntax only). */
struct sl_fwd_element {
    struct sl_fwd_value node; /* for= */
    struct sl_fwd_value proto;
    struct sl_fwd_value host;
};

/*
 * Parses a Forwarded field value (RFC 7239 section 4; several fields are
 * joined with ","). Fills out[] with the elements in order, empty list
 * members skipped. Returns their number, or -1 when the value is malformed
 * (bad token or quoted-string, a parameter twice in one element) or holds
 * more than max elements. OWS is accepted around "," and ";".
 */
int sl_forwarded_parse(const char *value, size_t len, struct sl_fwd_element *out, size_t max);

/* The text of v with its quotes and quoted-pairs undone, NUL-terminated.
 * False when it does not fit in size bytes. */
bool sl_forwarded_text(const struct sl_fwd_value *v, char *buf, size_t size, size_t *len);

enum sl_fwd_node {
    SL_FWD_NODE_ADDRESS,    /* an IPv4 address or a bracketed IPv6 one, maybe with a port */
    SL_FWD_NODE_UNKNOWN,    /* "unknown" (section 6.2) */
    SL_FWD_NODE_OBFUSCATED, /* "_name" (section 6.3) */
    SL_FWD_NODE_BAD,
};

/* Classifies a node (unquoted text, section 6). For an address, writes it
 * without brackets or port into addr, in canonical text (an IPv4-mapped
 * IPv6 address as plain IPv4). */
enum sl_fwd_node sl_forwarded_node(const char *node, size_t len, char *addr, size_t size);

struct sl_fwd_client {
    char addr[48];   /* the client address, canonical text */
    size_t addr_len;
    char proto[16];  /* proto= of the element that named the client, lower-cased; "" if none */
    size_t proto_len;
    char host[256];  /* host= of that element; "" if none */
    size_t host_len;
};

/*
 * What a trusted peer's Forwarded field says about the client. The elements
 * are read right to left from the peer (`peer`, its address text): each
 * for= that is an address in `trusted` vouches for the element before it;
 * the first one that is not trusted is the client (the left-most one when
 * all are). A for= that is "unknown", obfuscated, malformed or missing
 * hides the client: the last trusted address stands (as for a malformed
 * X-Forwarded-For hop), so no client can choose its own key. proto= and
 * host= come from the element where the walk stopped, written by a trusted
 * proxy, and only when valid (a URI scheme; a uri-host[:port]). False when
 * the field is malformed: nothing in it is believed.
 */
bool sl_forwarded_client(const char *value, size_t len, const char *peer, size_t peer_len,
                         const struct sl_cidr *trusted, size_t ntrusted,
                         struct sl_fwd_client *out);

#endif
