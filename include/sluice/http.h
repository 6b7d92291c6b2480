/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The parsed request as the rest of sluice sees it. Every pointer is borrowed
 * from the connection's input buffer and stays valid until the response to
 * this request has been completely sent.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct sl_header {
    const char *name; /* as sent; compare case-insensitively */
    size_t name_len;
    const char *value; /* leading and trailing whitespace removed */
    size_t value_len;
};

struct sl_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent */
    size_t target_len;
    /* The target in origin-form (RFC 9112 section 3.2.1), as it goes up
     * when the path is not rewritten: the target itself, or the path and
     * query of an absolute-form one; length 0 when an absolute-form target
     * has an empty path (the proxy then writes "/" and the query). */
    const char *origin;
    size_t origin_len;
    /* absolute-form (section 3.2.2): its authority, which replaces Host */
    const char *authority; /* NULL for any other form */
    size_t authority_len;
    bool is_asterisk;      /* "OPTIONS *" (section 3.2.4) */
    const char *path;   /* target up to '?'; the proxy then points it at the
                         * normalised path (util/path.h) */
    size_t path_len;
    const char *query;  /* after '?', NULL when there is none */
    size_t query_len;
    const char *host;   /* Host header without port; NULL when absent */
    size_t host_len;
    const struct sl_header *headers;
    size_t nheaders;
    const char *client_ip; /* the address rate-limit keys use, see sl_client_address */
    size_t client_ip_len;
    unsigned http_minor;   /* 0 or 1 (HTTP/1.x) */
};

/*
 * A string literal as the (pointer, length) pair the functions below take,
 * so that no length is ever counted by hand: sl_request_header(req,
 * SL_LIT("x-request-id")). The "" makes anything but a literal fail to build.
 */
#define SL_LIT(lit) ("" lit), (sizeof(lit) - 1)

/* First header of that name (case-insensitive), or NULL. */
const struct sl_header *sl_request_header(const struct sl_request *req, const char *name,
                                          size_t name_len);

/* Case-insensitive ASCII comparison of two byte strings of known length. */
bool sl_http_token_eq(const char *a, size_t a_len, const char *b, size_t b_len);
/* Is the field named `name` (case-insensitive)? Use with SL_LIT. */
bool sl_http_name_is(const struct sl_header *h, const char *name, size_t name_len);
/* tchar of RFC 9110 section 5.6.2: the bytes a token (a field name) is made of. */
bool sl_http_is_tchar(unsigned char c);


/* ---- head parsing glue (http.c) ---------------------------------------- */

#include <stdint.h>
#include <sys/types.h>

#include <http_parser.h>

struct sl_head_span {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
};

typedef void sl_http_body_cb(void *arg, const char *at, size_t len);

/*
 * Incremental parser state for one message head (request or response) and,
 * for chunked or close-delimited bodies, the rest of the message. Spans are
 * kept as offsets from the start of the head so the caller may move the bytes
 * (evbuffer_pullup can reallocate) between feeds.
 */
struct sl_head {
    http_parser parser;
    const char *base;        /* bytes being fed; valid only during a feed */
    size_t fed;              /* head bytes already given to the parser */
    size_t head_len;         /* once complete: length of the head, final CRLF included */
    size_t max_size;
    size_t max_uri_size;     /* requests: 414 past it; 0 = only max_size */
    unsigned max_headers;
    uint32_t url_off, url_len;
    uint32_t reason_off, reason_len;
    struct sl_head_span *spans;
    unsigned nspans, spans_cap;
    bool is_in_value;
    bool is_complete;        /* head parsed */
    bool is_message_complete;
    bool is_skip_body;       /* responses to HEAD */
    int error_status;        /* set by callbacks: 431 too many headers */
    sl_http_body_cb *on_body;
    void *body_arg;
    /* The parser we link is built non-strict; chunk framing is re-checked
     * byte by byte against RFC 9112 section 7.1 as it goes through. */
    int chunk_state;
    unsigned chunk_digits;
    uint64_t chunk_size;
    uint64_t chunk_left;
    const char *chunk_cursor;
};

enum sl_head_result { SL_HEAD_MORE = 0, SL_HEAD_DONE = 1 };

void sl_head_init(struct sl_head *h, enum http_parser_type type, size_t max_size,
                  unsigned max_headers);
void sl_head_fini(struct sl_head *h);
/* Starts over for the next message on the same connection (keeps storage). */
void sl_head_reset(struct sl_head *h, enum http_parser_type type);
/*
 * Feeds the head bytes received so far; `data` always starts at the head's
 * first byte and `len` only grows between calls. Returns SL_HEAD_MORE,
 * SL_HEAD_DONE (head_len set), or the HTTP status that refuses the message
 * (400, 414, 431; 502 for a bad response head). A request line without an
 * HTTP version (HTTP/0.9's "GET /") is a 400 as soon as its line end is seen.
 */
int sl_head_feed(struct sl_head *h, const char *data, size_t len);
/*
 * Feeds body bytes (chunked or close-delimited framing, after the head);
 * decoded data goes to h->on_body. Returns the bytes consumed, or -1 when the
 * framing is invalid. len == 0 signals end of stream. Stops after the message.
 */
ssize_t sl_head_feed_body(struct sl_head *h, const char *data, size_t len);

/* Fills a request from a complete head whose bytes now live at `head`. */
int sl_head_to_request(const struct sl_head *h, const char *head, struct sl_header *headers,
                       struct sl_request *req);
/* Header array of a complete head; returns the count. */
size_t sl_head_headers(const struct sl_head *h, const char *head, struct sl_header *headers);

/* Checks on the raw head that the parser lets through: bare LF, bare CR and
 * obs-fold. Returns 0 or 400. */
int sl_http_check_line_ends(const char *head, size_t len);

/* Field names must be tokens and values free of control bytes (RFC 9110
 * section 5.5): 0 or 400. */
int sl_http_check_fields(const struct sl_header *headers, size_t n);

#define SL_HTTP_MAX_REQUEST_ID 128u

/* W3C Trace Context section 3.2: version-traceid-parentid-flags, lower hex,
 * ids not all zero, version not ff. */
bool sl_http_is_valid_traceparent(const char *value, size_t len);
/* An X-Request-Id we pass on: 1..128 visible ASCII bytes. */
bool sl_http_is_valid_request_id(const char *value, size_t len);
/* Hop-by-hop (RFC 9110 section 7.6.1): Connection, Keep-Alive, TE, Trailer,
 * Transfer-Encoding, Upgrade, Proxy-*, and every field the message's
 * Connection headers name. `h` is one of `headers`. */
bool sl_http_is_hop_by_hop(const struct sl_header *headers, size_t n, const struct sl_header *h);

/* Does any field named `name` list `token` (comma-separated, case-insensitive,
 * RFC 9110 section 5.6.1)? */
bool sl_http_has_token(const struct sl_header *headers, size_t n, const char *name,
                       size_t name_len, const char *token, size_t token_len);
/*
 * A WebSocket opening handshake (RFC 6455 section 4.1) that sluice passes on
 * as an upgrade: GET, HTTP/1.1, no body, "websocket" among the Upgrade
 * protocols and "upgrade" among the Connection options (RFC 9110 section
 * 7.8: an Upgrade not named by Connection is not one). Any other Upgrade is
 * dropped as the hop-by-hop field it is, and the request goes up as plain
 * HTTP.
 */
bool sl_http_is_websocket_upgrade(const struct sl_request *req, bool has_body);
/* Host = uri-host [ ":" port ] (RFC 9112 section 3.2, RFC 3986 section 3.2.2):
 * a reg-name, an IPv4 address or a bracketed IPv6 address; port digits only. */
bool sl_http_is_valid_host(const char *value, size_t len);

/* Reason phrase for a status code ("Unknown" when there is none). */
const char *sl_http_reason(int status);

enum sl_framing {
    SL_FRAMING_NONE,    /* no body */
    SL_FRAMING_LENGTH,  /* Content-Length bytes */
    SL_FRAMING_CHUNKED,
    SL_FRAMING_EOF,     /* responses only: until the connection closes */
};

/*
 * Request body framing under the strict rules of RFC 9112 section 6.3: a
 * Transfer-Encoding other than exactly one "chunked" (or next to a
 * Content-Length, or in HTTP/1.0), several or invalid Content-Length values,
 * are refused with 400 rather than guessed at.
 */
int sl_http_request_framing(const struct sl_request *req, enum sl_framing *framing,
                            uint64_t *length);
/* Response framing from a complete response head. */
enum sl_framing sl_http_response_framing(const struct sl_head *h, bool is_head_request);

#endif
