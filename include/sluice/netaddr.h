/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Socket addresses and CIDR blocks as written in the conf, and the choice of
 * the client address from X-Forwarded-For when the peer is a trusted proxy.
 */
#ifndef SL_NETADDR_H
#define SL_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sl_sockaddr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[120]; /* "127.0.0.1:8080", "[::1]:8080" or "unix:/path" (a sun_path fits) */
};

struct sl_cidr {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t addr[16];  /* network order, masked */
    unsigned prefix;   /* bits */
};

/* "host:port" or "[v6]:port" with a numeric host; -1 on anything else. */
int sl_sockaddr_parse(const char *text, struct sl_sockaddr *out);
/* "unix:/absolute/path" (a path that fits sun_path) into out. 0 or -1. */
int sl_sockaddr_parse_unix(const char *text, struct sl_sockaddr *out);
/*
 * "name:port" with a DNS host name (RFC 1123 labels of letters, digits and
 * '-', at most 253 bytes, a trailing dot allowed, a last label not all
 * digits, so that a mistyped address is no name): copies the name into
 * host (size >= 254) and sets *port; -1 on anything else.
 */
int sl_hostport_parse(const char *text, char *host, size_t host_size, uint16_t *port);
/* An address of a name's answer (port 0) with `port`, and its text. */
void sl_sockaddr_from(const struct sockaddr_storage *ss, uint16_t port, struct sl_sockaddr *out);
/* "10.0.0.0/8", "::1/128" or a bare address (full prefix); -1 on a bad block. */
int sl_cidr_parse(const char *text, struct sl_cidr *out);
bool sl_cidr_match(const struct sl_cidr *cidrs, size_t ncidrs, const struct sockaddr *sa);
/* Same test for an address in text form; false when the text is no address. */
bool sl_cidr_match_text(const struct sl_cidr *cidrs, size_t ncidrs, const char *ip, size_t ip_len);

/* Writes the numeric host of `sa` (no port) into buf; returns its length, 0 on failure. */
size_t sl_sockaddr_host(const struct sockaddr *sa, char *buf, size_t size);

/*
 * The client address for rate-limit keys: the peer itself unless it is a
 * trusted proxy, else the right-most X-Forwarded-For hop that is not trusted
 * (hops are read right to left, skipping trusted ones). When every hop is
 * trusted the left-most one is taken; a malformed hop stops the walk and the
 * last trusted address seen is used, so a client cannot choose its own key by
 * sending garbage. `xff` may be NULL. Writes the address text into buf and
 * returns its length.
 */
size_t sl_client_address(const struct sockaddr *peer, const char *xff, size_t xff_len,
                         const struct sl_cidr *trusted, size_t ntrusted, char *buf, size_t size);

#endif
