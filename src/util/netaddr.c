/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Address parsing and CIDR matching. Helpers here never log: they return -1
 * and leave the message to the caller, which knows the conf line.
 */
#include "sluice/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static int
parse_port(const char *text, uint16_t *port)
{
    char *end;
    unsigned long value;

    if (*text < '0' || *text > '9')
        return -1;
    errno = 0;
    value = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || value == 0 || value > 65535)
        return -1;
    *port = (uint16_t)value;
    return 0;
}

static bool
is_label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* RFC 1123 section 2.1 host name, with RFC 3696's all-numeric last label rule. */
static bool
is_host_name(const char *s, size_t len)
{
    size_t label = 0;
    bool is_numeric = true;

    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-')
                return false;
            if (i < len)
                is_numeric = true;
            label = 0;
            continue;
        }
        if (!is_label_char(s[i]))
            return false;
        is_numeric = is_numeric && s[i] >= '0' && s[i] <= '9';
        label++;
    }
    return !is_numeric;
}

int
sl_hostport_parse(const char *text, char *host, size_t host_size, uint16_t *port)
{
    const char *colon = strrchr(text, ':');
    size_t len;

    if (colon == NULL)
        return -1;
    len = (size_t)(colon - text);
    if (!is_host_name(text, len) || len >= host_size || parse_port(colon + 1, port) != 0)
        return -1;
    memcpy(host, text, len);
    host[len] = '\0';
    return 0;
}

int
sl_sockaddr_parse(const char *text, struct sl_sockaddr *out)
{
    char host[48]; /* longest IPv6 text is 45 bytes */
    const char *colon;
    size_t host_len;
    uint16_t port;

    memset(out, 0, sizeof(*out));
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        host_len = (size_t)(close - text - 1);
        colon = close + 1;
        if (host_len == 0 || host_len >= sizeof(host))
            return -1;
        memcpy(host, text + 1, host_len);
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return -1;
        host_len = (size_t)(colon - text);
        if (host_len == 0 || host_len >= sizeof(host))
            return -1;
        memcpy(host, text, host_len);
    }
    host[host_len] = '\0';
    if (parse_port(colon + 1, &port) != 0)
        return -1;

    if (text[0] != '[') {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        if (strcmp(host, "localhost") == 0)
            memcpy(host, "127.0.0.1", sizeof("127.0.0.1"));
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -1;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out->len = sizeof(*sin);
        snprintf(out->text, sizeof(out->text), "%s:%u", host, port);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        out->len = sizeof(*sin6);
        snprintf(out->text, sizeof(out->text), "[%s]:%u", host, port);
    }
    return 0;
}

int
sl_sockaddr_parse_unix(const char *text, struct sl_sockaddr *out)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    const char *path = text + sizeof("unix:") - 1;
    size_t len;

    memset(out, 0, sizeof(*out));
    if (strncmp(text, "unix:", sizeof("unix:") - 1) != 0 || path[0] != '/')
        return -1;
    len = strlen(path);
    /* sun_path keeps its terminating NUL, so the path is one byte shorter */
    if (len >= sizeof(sun->sun_path))
        return -1;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, len + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    snprintf(out->text, sizeof(out->text), "unix:%s", path);
    return 0;
}

static void
mask_bits(uint8_t *addr, unsigned nbytes, unsigned prefix)
{
    for (unsigned i = 0; i < nbytes; i++) {
        unsigned bits = prefix > i * 8 ? prefix - i * 8 : 0;
        if (bits >= 8)
            continue;
        addr[i] &= (uint8_t)(0xff00u >> bits);
    }
}

int
sl_cidr_parse(const char *text, struct sl_cidr *out)
{
    char host[64];
    const char *slash = strchr(text, '/');
    size_t host_len = slash ? (size_t)(slash - text) : strlen(text);
    unsigned max_prefix;

    memset(out, 0, sizeof(*out));
    if (host_len == 0 || host_len >= sizeof(host))
        return -1;
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max_prefix = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max_prefix = 128;
    } else {
        return -1;
    }
    out->prefix = max_prefix;
    if (slash != NULL) {
        char *end;
        unsigned long prefix;
        if (slash[1] < '0' || slash[1] > '9')
            return -1;
        errno = 0;
        prefix = strtoul(slash + 1, &end, 10);
        if (errno != 0 || *end != '\0' || prefix > max_prefix)
            return -1;
        out->prefix = (unsigned)prefix;
    }
    mask_bits(out->addr, max_prefix / 8, out->prefix);
    return 0;
}

static bool
match_raw(const struct sl_cidr *cidrs, size_t ncidrs, int family, const uint8_t *addr)
{
    for (size_t i = 0; i < ncidrs; i++) {
        const struct sl_cidr *c = &cidrs[i];
        unsigned full, rest;
        if (c->family != family)
            continue;
        full = c->prefix / 8;
        rest = c->prefix % 8;
        if (memcmp(c->addr, addr, full) != 0)
            continue;
        if (rest != 0 && ((addr[full] & (uint8_t)(0xff00u >> rest)) != c->addr[full]))
            continue;
        return true;
    }
    return false;
}

bool
sl_cidr_match(const struct sl_cidr *cidrs, size_t ncidrs, const struct sockaddr *sa)
{
    if (ncidrs == 0)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        return match_raw(cidrs, ncidrs, AF_INET, (const uint8_t *)&sin->sin_addr);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        const uint8_t *a = (const uint8_t *)&sin6->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
            return match_raw(cidrs, ncidrs, AF_INET, a + 12)
                || match_raw(cidrs, ncidrs, AF_INET6, a);
        return match_raw(cidrs, ncidrs, AF_INET6, a);
    }
    return false;
}

bool
sl_cidr_match_text(const struct sl_cidr *cidrs, size_t ncidrs, const char *ip, size_t ip_len)
{
    char host[64];
    uint8_t addr[16];

    if (ip_len == 0 || ip_len >= sizeof(host))
        return false;
    memcpy(host, ip, ip_len);
    host[ip_len] = '\0';
    if (inet_pton(AF_INET, host, addr) == 1)
        return match_raw(cidrs, ncidrs, AF_INET, addr);
    if (inet_pton(AF_INET6, host, addr) == 1) {
        /* as sl_cidr_match does for a peer: ::ffff:10.0.0.1 is in 10.0.0.0/8 */
        if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)addr))
            return match_raw(cidrs, ncidrs, AF_INET, addr + 12)
                || match_raw(cidrs, ncidrs, AF_INET6, addr);
        return match_raw(cidrs, ncidrs, AF_INET6, addr);
    }
    return false;
}

size_t
sl_sockaddr_host(const struct sockaddr *sa, char *buf, size_t size)
{
    const void *addr;

    if (sa->sa_family == AF_INET)
        addr = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    else
        return 0;
    if (inet_ntop(sa->sa_family, addr, buf, (socklen_t)size) == NULL)
        return 0;
    return strlen(buf);
}

static bool
is_address(const char *ip, size_t len)
{
    char host[64];
    uint8_t addr[16];

    if (len == 0 || len >= sizeof(host))
        return false;
    memcpy(host, ip, len);
    host[len] = '\0';
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

static size_t
copy_out(char *buf, size_t size, const char *src, size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(buf, src, len);
    buf[len] = '\0';
    return len;
}

/*
 * Rewrites the address in buf in one canonical text form, an IPv4-mapped
 * IPv6 address as plain IPv4: the text is a rate-limit key, and one client
 * must get one key whether it came in on an IPv4 or a dual-stack listener,
 * or through a proxy that writes IPv6 addresses another way.
 */
static size_t
canonical(char *buf, size_t len, size_t size)
{
    char host[64];
    struct in6_addr addr6;

    if (len == 0 || len >= sizeof(host))
        return len;
    memcpy(host, buf, len);
    host[len] = '\0';
    if (inet_pton(AF_INET6, host, &addr6) != 1)
        return len; /* IPv4 text that inet_pton accepts is already canonical */
    if (IN6_IS_ADDR_V4MAPPED(&addr6)) {
        if (inet_ntop(AF_INET, &addr6.s6_addr[12], buf, (socklen_t)size) == NULL)
            return copy_out(buf, size, host, len);
    } else if (inet_ntop(AF_INET6, &addr6, buf, (socklen_t)size) == NULL) {
        return copy_out(buf, size, host, len);
    }
    return strlen(buf);
}

size_t
sl_client_address(const struct sockaddr *peer, const char *xff, size_t xff_len,
                  const struct sl_cidr *trusted, size_t ntrusted, char *buf, size_t size)
{
    size_t len = sl_sockaddr_host(peer, buf, size);
    size_t end = xff_len;

    if (xff == NULL || xff_len == 0 || !sl_cidr_match(trusted, ntrusted, peer))
        return canonical(buf, len, size);
    /* Walk hops right to left: each trusted hop vouches for the one before it. */
    while (end > 0) {
        size_t start = end, hop_start, hop_end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        hop_start = start;
        hop_end = end;
        while (hop_start < hop_end && (xff[hop_start] == ' ' || xff[hop_start] == '\t'))
            hop_start++;
        while (hop_end > hop_start && (xff[hop_end - 1] == ' ' || xff[hop_end - 1] == '\t'))
            hop_end--;
        if (!is_address(xff + hop_start, hop_end - hop_start))
            return canonical(buf, len, size);
        len = copy_out(buf, size, xff + hop_start, hop_end - hop_start);
        if (!sl_cidr_match_text(trusted, ntrusted, xff + hop_start, hop_end - hop_start))
            return canonical(buf, len, size);
        end = start > 0 ? start - 1 : 0;
    }
    return canonical(buf, len, size);
}

void
sl_sockaddr_from(const struct sockaddr_storage *ss, uint16_t port, struct sl_sockaddr *out)
{
    char ip[INET6_ADDRSTRLEN];

    memset(out, 0, sizeof(*out));
    out->ss = *ss;
    if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        sin6->sin6_port = htons(port);
        out->len = sizeof(*sin6);
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(out->text, sizeof(out->text), "[%s]:%u", ip, port);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_port = htons(port);
        out->len = sizeof(*sin);
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(out->text, sizeof(out->text), "%s:%u", ip, port);
    }
}
