/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * What the files of the proxy module share, and nothing outside it sees:
 *
 *   proxy.c           the worker: config generations, listeners, the list of
 *                     connections, drain, readiness
 *   proxy_conn.c      one client connection: its state machine, reading
 *                     request heads and bodies, local answers, the access log
 *   proxy_head.c      heads as they leave: the request head rewritten for the
 *                     upstream, the response head for the client, local answers
 *   proxy_upstream.c  the upstream leg: acquire, send, read the response,
 *                     stream it back, timeouts
 *   proxy_tunnel.c    upgraded connections (WebSocket after a 101): bytes
 *                     relayed both ways, half-close, backpressure, idle timeout
 *   proxy_retry.c     what a request needs to go up again: whether it may,
 *                     and the copy of its body kept for it
 *
 * Everything here runs on one worker's event loop.
 */
#ifndef SL_PROXY_INT_H
#define SL_PROXY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/event.h>
#include <event2/util.h>

#include "sluice/http.h"
#include "sluice/log.h"
#include "sluice/phase.h"
#include "sluice/proxy.h"
#include "sluice/upstream.h"
#include "util/forwarded.h"
#include "util/stream.h"
#include "util/timeval.h"

struct evbuffer;
struct evconnlistener;
struct sl_accesslog;
struct sl_config;
struct sl_listen_conf;
struct sl_metrics;
struct sl_metrics_worker;
struct sl_route_conf;
struct sl_upstream_pool;

#define HIGH_WATER (256u * 1024u)
#define LOW_WATER (64u * 1024u)
#define MAX_RESPONSE_HEAD (64u * 1024u)
#define MAX_RESPONSE_HEADERS 256u
#define COPY_BODY_MAX 4096u /* bodies up to this are copied in behind the head */
#define CLIENT_PROBE_MS 1000u /* while waiting for a response head: is the client still there? */
#define FLUSH_TIMEOUT_MS 10000u
#define MAX_REQUEST_ID SL_HTTP_MAX_REQUEST_ID
#define RETRY_BODY_MAX (64u * 1024u) /* request bodies kept for a retry up to this */

/* What one worker built from one config (proxy.c); only proxy.c sees inside. */
struct wgen;

enum conn_state {
    C_IDLE,          /* keep-alive, waiting for a request */
    C_HEAD,          /* reading a request head */
    C_PHASES,        /* the route's phases decide (the limiter waits on its store) */
    C_UPSTREAM_WAIT, /* waiting for an upstream connection */
    C_FORWARD,       /* request going up, response coming down */
    C_FLUSH_CLOSE,   /* last bytes going out, then close */
    C_PROXY_HEADER,  /* reading the PROXY protocol header (proxy_ident.c) */
    C_TUNNEL,        /* upgraded (101): bytes relayed both ways (proxy_tunnel.c) */
};

/* What a request uses of its generation for its route: looked up once, when
 * the route is matched (proxy_gen_route). */
struct route_use {
    const char *name;               /* [host]path, for the access log */
    unsigned slot;                  /* the route's metrics slot */
    unsigned upstream_slot;         /* its upstream's metrics slot */
    struct sl_upstream_pool *pool;  /* its upstream's pool */
    const struct sl_phase_chain *phases;
};

/*
 * What the upstream is told of the client besides X-Forwarded-For
 * (proxy_ident.c decides, proxy_head.c writes). Fields a trusted peer sent
 * are passed on as they came; the others are set by sluice.
 */
struct ident {
    bool is_trusted;        /* the connection's client is in trusted_proxies */
    bool is_xfp_kept, is_xfh_kept, is_xfport_kept;
    bool has_forwarded;     /* a Forwarded field came: sluice appends its element */
    bool is_from_forwarded; /* the client address came from Forwarded, not X-Forwarded-For */
    const char *proto;      /* X-Forwarded-Proto when set by sluice */
    size_t proto_len;
    const char *host;       /* X-Forwarded-Host when set by sluice; NULL: none */
    size_t host_len;
    unsigned port;          /* X-Forwarded-Port when set by sluice; 0: none */
};

/*
 * Everything that belongs to one request and nothing else: reset by one
 * assignment when the connection goes back to idle (request_reset). Storage
 * that outlives requests (parsers, the id and X-Forwarded-For buffers) stays
 * in struct conn; the lengths saying what of it is this request's are here.
 */
struct request_state {
    struct wgen *gen;          /* held from head parsed to reset */
    const struct sl_config *cfg; /* gen's */
    char *head_buf;            /* the head's bytes, then its header array, then path_buf */
    struct sl_header *headers;
    char *path_buf;            /* room for the normalised path (req.path points here) */
    struct sl_request req;
    const struct sl_route_conf *route;
    struct route_use use;      /* valid when route != NULL */
    enum sl_framing framing;
    uint64_t body_left;
    uint64_t content_length; /* SL_FRAMING_LENGTH: the body's length as the client sent it */
    uint64_t body_seen;
    bool is_body_done;
    bool is_body_too_large;
    bool is_phase_body;      /* a phase reads the body (sl_phase_read_body), not the upstream */
    bool is_expect_continue;
    bool is_head_method;
    bool is_keepalive;
    bool is_logged;
    bool is_path_rewritten; /* the upstream gets req.path (normalised), not the target */
    bool is_counted;        /* sl_metrics_request_start was called */
    bool has_ids;           /* conn's request_id (if request_id_len) and traceparent are made */
    bool is_upgrade;        /* a WebSocket handshake we pass on (sl_http_is_websocket_upgrade) */
    bool is_tunnel;         /* a 101 came: counted in the tunnels gauge until the close */
    bool is_metrics_done;   /* counted in the request metrics already (a tunnel, at its 101) */
    size_t xff_len;
    size_t request_id_len;  /* 0: the client's X-Request-Id is kept */
    struct ident ident;     /* X-Forwarded-* and Forwarded, as proxy_ident.c decided */

    /* attempts upstream (proxy_retry.c) */
    unsigned attempts;      /* connections the request was sent on */
    bool is_upstream_asked; /* c->wait is this request's (its retries are counted there) */
    bool is_idempotent;     /* RFC 9110 section 9.2.2 */
    bool is_body_kept;      /* the body sent so far can be sent again: none, or in conn.replay */
    bool is_resp_byte_seen; /* the attempt's upstream sent something */
    uint64_t up_written_base; /* the upstream stream's bytes_written when the attempt began */
    size_t up_head_len;       /* the request head's length in that stream's output */

    /* the response */
    enum sl_framing resp_framing;
    uint64_t resp_left;
    bool is_resp_started;   /* a response head went to the client */
    bool is_resp_chunked;   /* we frame the body to the client as chunked */

    /* accounting: phase boundaries for Server-Timing and slow_request */
    uint64_t up_deadline_us; /* when the upstream timeout runs out */
    uint64_t start_us, head_done_us, upstream_start_us, first_byte_us, upstream_end_us;
    uint64_t decided_us; /* the phases decided */
    uint64_t request_deadline_us; /* client.request_timeout: 0 until the timer is armed */
    uint64_t request_paused_us;   /* its clock stopped (sluice decides or waits) since */
    uint64_t bytes_in, bytes_out;
    int status;
    const char *reason;     /* why sluice answered itself (static text), for the access log */
    char upstream_addr[120];      /* the server's address text; "": none yet */
};

struct conn {
    struct sl_proxy *px;
    struct conn *next, *prev;
    struct sl_stream cs;        /* the client socket */
    struct event timer;
    enum conn_state state;
    unsigned refs;
    bool is_dead;
    bool is_processing;         /* conn_process is on the stack: it will look again */
    bool is_client_read_paused; /* backpressure from the upstream side */
    bool is_up_read_paused;     /* backpressure from the client side */
    bool is_tun_client_eof;     /* tunnel: the client closed its sending side */
    bool is_tun_up_eof;         /* tunnel: the upstream closed its sending side */
    bool is_tun_client_shut;    /* tunnel: we shut down our sending side to the client */
    bool is_tun_up_shut;        /* tunnel: ... to the upstream */
    struct event req_timer;     /* client.request_timeout: the whole request read in time */
    /* The connection's client: the TCP peer, or the address a trusted
     * balancer's PROXY header named. X-Forwarded-For is weighed against it. */
    char peer_ip[48];           /* canonical text, as sl_client_address gives it; "unix:" */
    size_t peer_ip_len;
    struct sockaddr_storage peer;
    char tcp_peer_ip[48];       /* the TCP peer itself, for the access log's `peer` */
    unsigned local_port;        /* the port the client connected to; 0: not known yet */
    bool is_proxy_ssl;          /* the PROXY header says the client came over TLS */
    bool is_unix;               /* accepted on a unix socket */

    struct request_state rq;

    /* storage the requests of this connection reuse */
    struct sl_head head;
    char client_ip[48];
    char xff[1024];
    struct sl_fwd_client fwd;   /* what a trusted peer's Forwarded said (ident.is_from_forwarded) */
    char request_id[MAX_REQUEST_ID + 1];
    char traceparent[56];
    struct sl_phase_run phases; /* the request's way through its route's phases */

    /* upstream side: resources released by proxy_upstream_drop before a reset */
    struct sl_upstream_wait wait;
    struct sl_upconn *up;
    struct sl_stream *us;       /* the upstream socket, while c->up is held */
    struct event up_timer;      /* upstream response timeout, between reads */
    struct sl_head resp;
    struct evbuffer *replay;    /* the request body as sent up, for a retry; NULL: none */
};

struct sl_proxy {
    struct event_base *base;
    unsigned index, nworkers;
    struct sl_limiter_shared *limiter_shared;
    struct sl_resolver *resolver; /* upstream host names; NULL: none */
    struct sl_health *health;     /* upstream server states; NULL: each pool its own */
    struct wgen *gen;
    struct evconnlistener **listeners;
    struct sl_listen_conf *listen_confs; /* each listener's conf, copied when it opened */
    size_t nlisteners;
    struct sl_log_gate refuse_gate;     /* untrusted peers on a PROXY protocol listener */
    struct sl_log_gate proxy_header_gate; /* PROXY headers missing or malformed */
    bool is_accept_paused;      /* the listeners are disabled */
    bool is_accept_backoff;     /* accept() failed: accept_retry re-enables them */
    struct event *accept_retry;
    uint64_t accept_backoff_ms; /* the current pause, doubled while failures go on */
    uint64_t accept_fail_us;    /* the last failure */
    struct sl_log_gate accept_gate;
    bool is_draining;
    sl_proxy_drained_cb *drained_cb;
    void *drained_arg;
    struct conn *conns;
    unsigned nconns, max_conns;
    struct sl_accesslog *accesslog;
    char *accesslog_path;
    struct sl_metrics *metrics;
    struct sl_metrics_worker *mw;
    uint64_t rng[2];
    struct {
        uint64_t ms;
        const struct timeval *tv;
    } common[16];
    size_t ncommon;
};

static inline double
span_ms(uint64_t from_us, uint64_t to_us)
{
    return from_us && to_us >= from_us ? (double)(to_us - from_us) / 1000.0 : 0.0;
}

/* ---- proxy.c: the worker ------------------------------------------------- */

/* Arms `ev` for ms milliseconds, through a common-timeout queue when it can. */
void proxy_timer_add(struct sl_proxy *px, struct event *ev, uint64_t ms);
/* Takes c off the worker's list of connections (it is closing). */
void proxy_conn_unlink(struct sl_proxy *px, struct conn *c);

const struct sl_config *proxy_gen_cfg(const struct wgen *gen);
/* A request's reference to a generation, from head parsed to reset. */
struct wgen *proxy_gen_hold(struct wgen *gen);
void proxy_gen_release(struct wgen *gen);
void proxy_gen_route(const struct wgen *gen, const struct sl_route_conf *route,
                     struct route_use *use);

/* ---- proxy_conn.c: the client connection ---------------------------------- */

/* A new connection on an accepted socket, reading its first request head. */
struct conn *proxy_conn_new(struct sl_proxy *px, evutil_socket_t fd, const struct sockaddr *sa,
                            int socklen);
/* A reference that keeps c's memory (not the connection) alive across a
 * callback that may close it; conn_close frees only when none is left. */
void proxy_conn_hold(struct conn *c);
void proxy_conn_unhold(struct conn *c);
/* Every connection end comes here; reason goes to the access log (NULL: a
 * normal end). */
void proxy_conn_close(struct conn *c, const char *reason);
/* Sends what is buffered, then closes. */
void proxy_conn_flush_close(struct conn *c);
void proxy_timer_set(struct conn *c, uint64_t ms);
/* Counts and logs the request (once). */
void proxy_request_finish(struct conn *c, const char *reason);
/* Counts the request in the metrics now (a tunnel, at its 101); the access
 * log line still waits for proxy_request_finish. */
void proxy_request_count(struct conn *c);
/* Whether the connection outlives the answer being written: not when the
 * caller must close, the client did not ask to keep it, or we drain. The
 * Connection header of the answer says what proxy_request_done will do. */
bool proxy_is_kept(const struct conn *c, bool must_close);
/* The response is complete: log, then close or wait for the next request. */
void proxy_request_done(struct conn *c, bool must_close);
/* Answers with a problem+json body; detail is our own text, never input.
 * reason, as short and static, is the access log's `reason` for it. */
void proxy_respond_error(struct conn *c, int status, const char *reason, const char *detail,
                         bool must_close);
/* The request's body starts to be read (an upstream connection came):
 * client.request_timeout runs again, less the time sluice took. */
void proxy_request_timer_resume(struct conn *c);
/* Moves the request body that has arrived to the upstream. */
void proxy_forward_body(struct conn *c);
/* Feeds a chunked or close-delimited body to h's parser: 0, or -1. */
int proxy_feed_parser(struct sl_head *h, struct evbuffer *in, size_t *consumed);

/* ---- proxy_head.c: heads as they leave ------------------------------------ */

/* X-Forwarded-For fields joined into c->xff (right-most 1 KiB); the length.
 * The client address is chosen from it; write_ident sends the fields whole. */
size_t proxy_collect_xff(struct conn *c);
/* Makes X-Request-Id (unless a valid one came) and traceparent, once. */
void proxy_ensure_ids(struct conn *c);
void proxy_write_request_head(struct conn *c, struct evbuffer *out);
/* false: a phase replaced the response (sl_phase_take_response); nothing written */
bool proxy_write_response_head(struct conn *c, const char *head, bool must_close);
/* A phase's full response (a cache hit); resp's release is called, now or
 * once the client took the body. */
void proxy_write_phase_response(struct conn *c, const struct sl_phase_response *resp,
                                bool must_close);
void proxy_write_local_response(struct conn *c, int status, const char *extra_headers,
                                size_t extra_len, const char *body, size_t body_len,
                                bool must_close);
/* "<hex>\r\n": a chunk-size line */
void proxy_add_chunk_size(struct evbuffer *out, size_t len);

/* ---- proxy_upstream.c: the upstream leg ------------------------------------ */

/* Asks the route's pool for a connection; the request goes up when it comes. */
void proxy_upstream_start(struct conn *c);
/* Cancels a wait, or gives the connection back (kept alive if is_reusable). */
void proxy_upstream_drop(struct conn *c, bool is_reusable);
void proxy_up_timer_set(struct conn *c);
void proxy_up_timer_for_body(struct conn *c);
void proxy_up_timer_cb(evutil_socket_t fd, short what, void *arg);
void proxy_forward_response(struct conn *c);

/* ---- proxy_retry.c: another attempt ---------------------------------------- */

/* An attempt begins on c->us: its first decides what of the body is kept;
 * later ones get the body sent so far again. Call after the head went into
 * c->us->out. */
void proxy_retry_attempt(struct conn *c);
/* Request body bytes went into c->us->out from offset `from` on: kept while
 * the request may want them again. */
void proxy_retry_keep(struct conn *c, size_t from);
/* Whether the request may go up again after the attempt on c->us failed:
 * nothing of it was written to the socket, or it is idempotent and its body
 * is kept. May take a copy of the unsent body from c->us->out. */
bool proxy_retry_resendable(struct conn *c);
/* The request is over: the kept body goes. */
void proxy_retry_end(struct conn *c);

/* ---- proxy_ident.c: who the client is ---------------------------------- */

/* c's listener takes PROXY protocol: its first bytes must be a PROXY header. */
void proxy_conn_expect_proxy_header(struct conn *c);
/* Reads the PROXY header (state C_PROXY_HEADER). True when it is done and
 * the HTTP head may be read; false when more is needed or c was closed. */
bool proxy_read_proxy_header(struct conn *c);
/* The request's client address (c->rq.req.client_ip) and c->rq.ident,
 * from the connection's client and the fields a trusted peer sent. */
void proxy_client_identity(struct conn *c);
/* The port the client connected to, 0 when there is none (unix). */
unsigned proxy_local_port(struct conn *c);

/* ---- proxy_listen.c: unix socket listeners -------------------------------- */

/* A listening socket on l's path for one worker (a dup the caller owns and
 * closes); the first call binds it. -1 with the reason in err. */
int proxy_unix_open(const struct sl_listen_conf *l, char *err, size_t err_size);
/* One worker closed its dup: the last one closes the socket and removes
 * the file (if it is still ours). */
void proxy_unix_release(const char *path);

/* ---- proxy_tunnel.c: upgraded connections ---------------------------------- */

/* The upstream answered 101 to an upgrade and its head went to the client:
 * from now on bytes are relayed both ways until both sides are done. */
void proxy_tunnel_start(struct conn *c);
/* Called by proxy_conn_close: the tunnel is over (gauge down). */
void proxy_tunnel_end(struct conn *c);

#endif
