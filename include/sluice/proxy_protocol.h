/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2)
 * that a load balancer sends first on a connection to name the client it
 * accepted. A pure parser: no I/O, no trust decisions (proxy.c refuses
 * peers outside trusted_proxies before a byte is read).
 */
#ifndef SL_PROXY_PROTOCOL_H
#define SL_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SL_PP_V1_MAX 107u               /* "PROXY ... \r\n", CRLF included (spec 2.1) */
#define SL_PP_V2_MAX (16u + 65535u)     /* the 16-byte fixed part + its 16-bit length */

enum sl_pp_result {
    SL_PP_DONE, /* a whole, valid header: out is filled */
    SL_PP_MORE, /* a valid beginning: read more (the caller bounds the wait) */
    SL_PP_BAD,  /* not a PROXY header, or a malformed one: close */
};

struct sl_pp_header {
    int version;               /* 1 or 2 */
    size_t len;                /* bytes the header takes at the start of the stream */
    bool is_local;             /* v2 LOCAL, v1 UNKNOWN, or a family we do not route
                                * (UNSPEC, UNIX): the TCP peer is the client */
    bool is_ssl;               /* v2 PP2_TYPE_SSL with PP2_CLIENT_SSL: came in over TLS */
    struct sockaddr_storage src; /* the client, unless is_local */
    struct sockaddr_storage dst; /* the address the client connected to, unless is_local */
};

/*
 * Looks at the first len bytes of a connection. Never reads past len, nor
 * past the header once its length is known. A v1 header without its CRLF
 * within SL_PP_V1_MAX bytes is SL_PP_BAD, and so is a v2 header of a
 * length too short for its address family or whose TLVs overrun it.
 */
enum sl_pp_result sl_proxy_protocol_parse(const uint8_t *data, size_t len,
                                          struct sl_pp_header *out);

#endif
