/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Who the client is. A connection's client is its TCP peer, or the address
 * that a trusted balancer's PROXY header names (the header is read here,
 * before any HTTP byte, and never reaches the HTTP parser). A request's
 * client is then the connection's, or, when that is a trusted proxy, what
 * its X-Forwarded-For (or, without one, its RFC 7239 Forwarded) says. The
 * limiter's `ip` key, X-Forwarded-For and the access log's `client` all use
 * the result; X-Forwarded-Proto, -Host and -Port from a trusted proxy are
 * passed on, and set by sluice otherwise.
 *
 * Writing the fields is proxy_head.c's; this file only decides.
 */
#include "proxy_int.h"

#include <netinet/in.h>
#include <string.h>

#include <event2/buffer.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/log.h"
#include "sluice/netaddr.h"
#include "sluice/proxy_protocol.h"
#include "util/clock.h"
#include "util/forwarded.h"

#define BAD_HEADER_LOG_INTERVAL_US (10u * 1000000u)

void
proxy_conn_expect_proxy_header(struct conn *c)
{
    c->state = C_PROXY_HEADER;
}

static unsigned
port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
    return 0;
}

/* One line per 10 s and worker: a balancer without PROXY protocol enabled
 * sends every connection here. */
static void
log_bad_header(struct conn *c, const char *why)
{
    uint64_t held;

    if (!sl_log_gate_pass(&c->px->proxy_header_gate, sl_clock_now_us(),
                          BAD_HEADER_LOG_INTERVAL_US, &held))
        return;
    sl_log_warnx("worker %u: connection from %s closed: %s (%llu more since the last line)",
                 c->px->index, c->tcp_peer_ip, why, (unsigned long long)held);
}

bool
proxy_read_proxy_header(struct conn *c)
{
    struct evbuffer *in = c->cs.in;
    size_t len = evbuffer_get_length(in);
    size_t n = len < SL_PP_V2_MAX ? len : SL_PP_V2_MAX;
    const uint8_t *data = n > 0 ? evbuffer_pullup(in, (ev_ssize_t)n) : NULL;
    struct sl_pp_header h;
    size_t ip_len;

    switch (sl_proxy_protocol_parse(data, n, &h)) {
    case SL_PP_MORE:
        return false; /* the header timer runs since the accept */
    case SL_PP_BAD:
        log_bad_header(c, "no valid PROXY protocol header");
        proxy_conn_close(c, "bad proxy protocol header");
        return false;
    case SL_PP_DONE:
        break;
    }
    evbuffer_drain(in, h.len);
    if (!h.is_local) {
        ip_len = sl_client_address((const struct sockaddr *)&h.src, NULL, 0, NULL, 0, c->peer_ip,
                                   sizeof(c->peer_ip));
        if (ip_len > 0) {
            c->peer = h.src;
            c->peer_ip_len = ip_len;
            c->local_port = port_of(&h.dst);
        }
    }
    c->is_proxy_ssl = h.is_ssl;
    c->state = C_HEAD;
    return true;
}

unsigned
proxy_local_port(struct conn *c)
{
    return c->local_port;
}

/*
 * The Forwarded fields joined with "," into c->xff (free: there is no
 * X-Forwarded-For when this is used). Only whole fields, the right-most
 * that fit: a cut element would make the whole value unparseable. One
 * field is used where it is.
 */
static const char *
collect_forwarded(struct conn *c, size_t *len)
{
    const struct sl_request *req = &c->rq.req;
    const char *single = NULL;
    size_t end = sizeof(c->xff), nfields = 0;

    for (size_t i = req->nheaders; i-- > 0;) {
        const struct sl_header *h = &req->headers[i];
        size_t need;
        if (!sl_http_name_is(h, SL_LIT("forwarded")))
            continue;
        if (nfields++ == 0) {
            single = h->value;
            *len = h->value_len;
        }
        need = h->value_len + (end < sizeof(c->xff) ? 1 : 0);
        if (need > end)
            break;
        if (end < sizeof(c->xff))
            c->xff[--end] = ',';
        end -= h->value_len;
        memcpy(c->xff + end, h->value, h->value_len);
    }
    if (nfields <= 1)
        return single;
    if (end == sizeof(c->xff)) {
        return single; /* the last field alone did not fit: as it is */
    }
    *len = sizeof(c->xff) - end;
    return c->xff + end;
}

/* The default port of a scheme we know; 0 for any other. */
static unsigned
scheme_port(const char *proto, size_t len)
{
    if (sl_http_token_eq(proto, len, SL_LIT("https")))
        return 443;
    if (sl_http_token_eq(proto, len, SL_LIT("http")))
        return 80;
    return 0;
}

/* The port of "host:port" or "[v6]:port"; 0 when none is written. */
static unsigned
host_port(const char *host, size_t len)
{
    unsigned port = 0;
    size_t i = len;

    while (i > 0 && host[i - 1] >= '0' && host[i - 1] <= '9')
        i--;
    if (i == 0 || i == len || host[i - 1] != ':' || len - i > 5)
        return 0;
    if (memchr(host, ':', i - 1) != NULL && host[0] != '[')
        return 0; /* a bare IPv6 address: no port */
    for (; i < len; i++)
        port = port * 10 + (unsigned)(host[i] - '0');
    return port <= 65535 ? port : 0;
}

/* X-Forwarded-Proto, -Host and -Port for those a trusted peer did not send. */
static void
set_forwarded_values(struct conn *c)
{
    struct ident *id = &c->rq.ident;
    const struct sl_header *h;

    if (id->is_from_forwarded && c->fwd.proto_len > 0) {
        id->proto = c->fwd.proto;
        id->proto_len = c->fwd.proto_len;
    } else if (c->is_proxy_ssl) {
        id->proto = "https";
        id->proto_len = 5;
    } else {
        id->proto = "http";
        id->proto_len = 4;
    }
    if (id->is_from_forwarded && c->fwd.host_len > 0) {
        id->host = c->fwd.host;
        id->host_len = c->fwd.host_len;
    } else if ((h = sl_request_header(&c->rq.req, SL_LIT("host"))) != NULL) {
        id->host = h->value;
        id->host_len = h->value_len;
    }
    if (id->is_xfport_kept)
        return;
    if (id->is_from_forwarded && c->fwd.host_len > 0 && host_port(c->fwd.host, c->fwd.host_len))
        id->port = host_port(c->fwd.host, c->fwd.host_len);
    else if (id->is_from_forwarded && c->fwd.proto_len > 0)
        id->port = scheme_port(c->fwd.proto, c->fwd.proto_len);
    else if (id->is_xfp_kept && (h = sl_request_header(&c->rq.req, SL_LIT("x-forwarded-proto"))))
        id->port = scheme_port(h->value, h->value_len); /* the balancer's scheme, not our port */
    else
        id->port = c->is_proxy_ssl && c->local_port == 0 ? 443 : c->local_port;
}

void
proxy_client_identity(struct conn *c)
{
    const struct sl_config *cfg = c->rq.cfg;
    struct sl_request *req = &c->rq.req;
    struct ident *id = &c->rq.ident;
    size_t xff_len = c->rq.xff_len = proxy_collect_xff(c);

    req->client_ip = c->peer_ip;
    req->client_ip_len = c->peer_ip_len;
    id->has_forwarded = sl_request_header(req, SL_LIT("forwarded")) != NULL;
    /* a unix peer never matches: trusted_proxies are addresses */
    id->is_trusted = sl_cidr_match(cfg->trusted_proxies, cfg->ntrusted_proxies,
                                   (const struct sockaddr *)&c->peer);
    if (id->is_trusted) {
        id->is_xfp_kept = sl_request_header(req, SL_LIT("x-forwarded-proto")) != NULL;
        id->is_xfh_kept = sl_request_header(req, SL_LIT("x-forwarded-host")) != NULL;
        id->is_xfport_kept = sl_request_header(req, SL_LIT("x-forwarded-port")) != NULL;
    }
    if (id->is_trusted && xff_len > 0) {
        req->client_ip_len = sl_client_address((const struct sockaddr *)&c->peer, c->xff,
                                               xff_len, cfg->trusted_proxies,
                                               cfg->ntrusted_proxies, c->client_ip,
                                               sizeof(c->client_ip));
        req->client_ip = c->client_ip;
    } else if (id->is_trusted && id->has_forwarded) {
        size_t len = 0;
        const char *value = collect_forwarded(c, &len);
        if (sl_forwarded_client(value, len, c->peer_ip, c->peer_ip_len, cfg->trusted_proxies,
                                cfg->ntrusted_proxies, &c->fwd)) {
            id->is_from_forwarded = true;
            req->client_ip = c->fwd.addr;
            req->client_ip_len = c->fwd.addr_len;
        }
    }
    set_forwarded_values(c);
}
