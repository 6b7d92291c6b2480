/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Glue between http-parser and the rest of sluice: incremental head parsing
 * into offsets, the framing rules we add on top of the parser (RFC 9112
 * section 6.3), and small header helpers. It does no I/O.
 */
#include "sluice/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/alloc.h"
#include "util/hex.h"

static struct sl_head *
head_of(http_parser *p)
{
    return p->data;
}

static uint32_t
offset_of(const struct sl_head *h, const char *at)
{
    return (uint32_t)(at - h->base);
}

static int
on_url(http_parser *p, const char *at, size_t len)
{
    struct sl_head *h = head_of(p);

    if (h->url_len == 0)
        h->url_off = offset_of(h, at);
    h->url_len += (uint32_t)len;
    return 0;
}

static int
on_status(http_parser *p, const char *at, size_t len)
{
    struct sl_head *h = head_of(p);

    if (h->reason_len == 0)
        h->reason_off = offset_of(h, at);
    h->reason_len += (uint32_t)len;
    return 0;
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    struct sl_head *h = head_of(p);
    struct sl_head_span *span;

    if (h->is_in_value || h->nspans == 0) {
        if (h->nspans == h->max_headers) {
            h->error_status = 431;
            return -1;
        }
        if (h->nspans == h->spans_cap) {
            h->spans_cap = h->spans_cap ? h->spans_cap * 2 : 16;
            if (h->spans_cap > h->max_headers)
                h->spans_cap = h->max_headers;
            h->spans = sl_xrealloc(h->spans, h->spans_cap * sizeof(*h->spans));
        }
        span = &h->spans[h->nspans++];
        memset(span, 0, sizeof(*span));
        span->name_off = offset_of(h, at);
        h->is_in_value = false;
    }
    h->spans[h->nspans - 1].name_len += (uint32_t)len;
    return 0;
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    struct sl_head *h = head_of(p);
    struct sl_head_span *span = &h->spans[h->nspans - 1];

    if (!h->is_in_value) {
        span->value_off = offset_of(h, at);
        h->is_in_value = true;
    }
    span->value_len += (uint32_t)len;
    return 0;
}

static int
on_headers_complete(http_parser *p)
{
    struct sl_head *h = head_of(p);

    /* status-code = 3DIGIT (RFC 9112 section 4); the parser takes 1 to 3 */
    if (p->type == HTTP_RESPONSE && p->status_code < 100) {
        h->error_status = 502;
        return -1;
    }
    /*
     * We trim HTAB around field values, the parser does not: it reads
     * "chunked<HTAB>" as some other coding, and only fails the request once
     * the body starts, after the head went upstream. Refuse it here.
     */
    if (p->type == HTTP_REQUEST && !(p->flags & F_CHUNKED)) {
        for (unsigned i = 0; i < h->nspans; i++) {
            if (sl_http_token_eq(h->base + h->spans[i].name_off, h->spans[i].name_len,
                                 SL_LIT("transfer-encoding"))) {
                h->error_status = 400;
                return -1;
            }
        }
    }
    h->is_complete = true;
    /* Stop here so the caller sees exactly where the head ends. */
    http_parser_pause(p, 1);
    return h->is_skip_body ? 1 : 0;
}

/* ---- chunk framing check ------------------------------------------------ */

enum {
    CK_OFF,           /* not a chunked body */
    CK_SIZE,          /* chunk-size digits */
    CK_SIZE_WS,       /* BWS before a chunk extension */
    CK_EXT_NAME_START, /* after ';': BWS, then a token */
    CK_EXT_NAME,
    CK_EXT_NAME_WS,   /* BWS after a name: '=', ';' or CR */
    CK_EXT_VAL_START, /* after '=': BWS, then a token or a quoted-string */
    CK_EXT_TOKEN,
    CK_EXT_QUOTED,
    CK_EXT_QUOTED_ESC,
    CK_EXT_AFTER,     /* BWS after a value: ';' or CR */
    CK_SIZE_LF,
    CK_DATA,          /* only on_body may consume these bytes */
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER_START, /* a trailer line, or the final CRLF */
    CK_TRAILER,
    CK_TRAILER_LF,
    CK_END_LF,
    CK_DONE,
    CK_BAD,
};

static bool
is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static bool
is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ),
 * RFC 9112 section 7.1.1. */
static int
chunk_ext_step(int state, unsigned char c)
{
    switch (state) {
    case CK_EXT_NAME_START:
        if (is_ws(c))
            return CK_EXT_NAME_START;
        return sl_http_is_tchar(c) ? CK_EXT_NAME : CK_BAD;
    case CK_EXT_NAME:
        if (sl_http_is_tchar(c))
            return CK_EXT_NAME;
        /* fall through */
    case CK_EXT_NAME_WS:
        if (is_ws(c))
            return CK_EXT_NAME_WS;
        if (c == '=')
            return CK_EXT_VAL_START;
        if (c == ';')
            return CK_EXT_NAME_START;
        return c == '\r' ? CK_SIZE_LF : CK_BAD;
    case CK_EXT_VAL_START:
        if (is_ws(c))
            return CK_EXT_VAL_START;
        if (c == '"')
            return CK_EXT_QUOTED;
        return sl_http_is_tchar(c) ? CK_EXT_TOKEN : CK_BAD;
    case CK_EXT_TOKEN:
        if (sl_http_is_tchar(c))
            return CK_EXT_TOKEN;
        /* fall through */
    case CK_EXT_AFTER:
        if (is_ws(c))
            return CK_EXT_AFTER;
        if (c == ';')
            return CK_EXT_NAME_START;
        return c == '\r' ? CK_SIZE_LF : CK_BAD;
    case CK_EXT_QUOTED:
        if (c == '"')
            return CK_EXT_AFTER;
        if (c == '\\')
            return CK_EXT_QUOTED_ESC;
        return is_ctl(c) ? CK_BAD : CK_EXT_QUOTED;
    case CK_EXT_QUOTED_ESC:
        return is_ctl(c) ? CK_BAD : CK_EXT_QUOTED;
    default:
        return CK_BAD;
    }
}

static int
chunk_step(struct sl_head *h, unsigned char c)
{
    int v;

    switch (h->chunk_state) {
    case CK_SIZE:
        v = sl_hex_value((char)c);
        if (v >= 0) {
            if (++h->chunk_digits > 15)
                return CK_BAD;
            h->chunk_size = h->chunk_size * 16 + (uint64_t)v;
            return CK_SIZE;
        }
        if (h->chunk_digits == 0)
            return CK_BAD;
        if (c == ';')
            return CK_EXT_NAME_START;
        if (is_ws(c))
            return CK_SIZE_WS;
        return c == '\r' ? CK_SIZE_LF : CK_BAD;
    case CK_SIZE_WS:
        if (is_ws(c))
            return CK_SIZE_WS;
        return c == ';' ? CK_EXT_NAME_START : CK_BAD;
    case CK_EXT_NAME_START:
    case CK_EXT_NAME:
    case CK_EXT_NAME_WS:
    case CK_EXT_VAL_START:
    case CK_EXT_TOKEN:
    case CK_EXT_QUOTED:
    case CK_EXT_QUOTED_ESC:
    case CK_EXT_AFTER:
        return chunk_ext_step(h->chunk_state, c);
    case CK_SIZE_LF:
        if (c != '\n')
            return CK_BAD;
        h->chunk_left = h->chunk_size;
        return h->chunk_size == 0 ? CK_TRAILER_START : CK_DATA;
    case CK_DATA_CR:
        return c == '\r' ? CK_DATA_LF : CK_BAD;
    case CK_DATA_LF:
        h->chunk_size = 0;
        h->chunk_digits = 0;
        return c == '\n' ? CK_SIZE : CK_BAD;
    case CK_TRAILER_START:
        if (c == '\r')
            return CK_END_LF;
        return (is_ctl(c) || c == ' ' || c == '\t') ? CK_BAD : CK_TRAILER;
    case CK_TRAILER:
        if (c == '\r')
            return CK_TRAILER_LF;
        return is_ctl(c) ? CK_BAD : CK_TRAILER;
    case CK_TRAILER_LF:
        return c == '\n' ? CK_TRAILER_START : CK_BAD;
    case CK_END_LF:
        return c == '\n' ? CK_DONE : CK_BAD;
    default:
        return CK_BAD;
    }
}

/* Checks the framing bytes between the last checked position and `to`. */
static void
chunk_check_until(struct sl_head *h, const char *to)
{
    if (h->chunk_state == CK_OFF || h->chunk_cursor == NULL)
        return;
    while (h->chunk_cursor < to && h->chunk_state != CK_BAD)
        h->chunk_state = chunk_step(h, (unsigned char)*h->chunk_cursor++);
    h->chunk_cursor = to;
}

static void
chunk_check_data(struct sl_head *h, const char *at, size_t len)
{
    if (h->chunk_state == CK_OFF || h->chunk_cursor == NULL)
        return;
    chunk_check_until(h, at);
    if (h->chunk_state != CK_DATA || len > h->chunk_left) {
        h->chunk_state = CK_BAD;
        return;
    }
    h->chunk_left -= len;
    if (h->chunk_left == 0)
        h->chunk_state = CK_DATA_CR;
    h->chunk_cursor = at + len;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    struct sl_head *h = head_of(p);

    chunk_check_data(h, at, len);
    if (h->on_body != NULL)
        h->on_body(h->body_arg, at, len);
    return 0;
}

static int
on_message_complete(http_parser *p)
{
    struct sl_head *h = head_of(p);

    h->is_message_complete = true;
    /* Pipelined bytes after this message belong to the next one. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void
sl_head_init(struct sl_head *h, enum http_parser_type type, size_t max_size, unsigned max_headers)
{
    memset(h, 0, sizeof(*h));
    h->max_size = max_size;
    h->max_headers = max_headers;
    sl_head_reset(h, type);
}

void
sl_head_fini(struct sl_head *h)
{
    free(h->spans);
    h->spans = NULL;
    h->spans_cap = 0;
}

void
sl_head_reset(struct sl_head *h, enum http_parser_type type)
{
    http_parser_init(&h->parser, type);
    h->parser.data = h;
    h->base = NULL;
    h->fed = 0;
    h->head_len = 0;
    h->url_off = h->url_len = 0;
    h->reason_off = h->reason_len = 0;
    h->nspans = 0;
    h->is_in_value = false;
    h->is_complete = false;
    h->is_message_complete = false;
    h->is_skip_body = false;
    h->error_status = 0;
    h->chunk_state = CK_OFF;
    h->chunk_cursor = NULL;
    h->chunk_size = h->chunk_left = 0;
    h->chunk_digits = 0;
}

static int
status_for_errno(const struct sl_head *h)
{
    if (h->error_status != 0)
        return h->error_status;
    if (h->parser.type == HTTP_RESPONSE)
        return 502;
    return 400;
}

/* RFC 9110 section 5.5, RFC 9112 section 5.1: names are tokens (no
 * whitespace before the colon), values free of control bytes. The
 * non-strict parser lets spaces into names and DEL into the start of a
 * value; requests are checked in sl_head_to_request, response fields go to
 * the client as they are. */
static bool
are_fields_valid(const struct sl_head *h, const char *head)
{
    for (unsigned i = 0; i < h->nspans; i++) {
        const struct sl_head_span *s = &h->spans[i];
        for (uint32_t j = 0; j < s->name_len; j++) {
            if (!sl_http_is_tchar((unsigned char)head[s->name_off + j]))
                return false;
        }
        for (uint32_t j = 0; j < s->value_len; j++) {
            if (is_ctl((unsigned char)head[s->value_off + j]))
                return false;
        }
    }
    return true;
}

int
sl_head_feed(struct sl_head *h, const char *data, size_t len)
{
    size_t limit = len < h->max_size ? len : h->max_size;
    size_t n;

    if (limit > h->fed) {
        h->base = data;
        n = http_parser_execute(&h->parser, &parser_settings, data + h->fed, limit - h->fed);
        h->base = NULL;
        if (h->max_uri_size != 0 && h->url_len > h->max_uri_size)
            return 414;
        if (HTTP_PARSER_ERRNO(&h->parser) == HPE_PAUSED && h->is_complete) {
            /*
             * Paused inside on_headers_complete, the parser has not consumed
             * the head's final LF yet; it takes it again when resumed.
             */
            h->head_len = h->fed + n + 1;
            http_parser_pause(&h->parser, 0);
            if (h->parser.type == HTTP_RESPONSE && !are_fields_valid(h, data))
                return 502;
            return SL_HEAD_DONE;
        }
        if (HTTP_PARSER_ERRNO(&h->parser) != HPE_OK)
            return status_for_errno(h);
        /*
         * The parser takes a request line that ends after its target as
         * HTTP/0.9 (version 0.9) and goes on to read headers, which would
         * keep a client that never sends any waiting for the header
         * timeout. There is no HTTP/0.9 here: refuse it now.
         */
        if (h->parser.type == HTTP_REQUEST && h->parser.http_major == 0
            && h->parser.http_minor == 9)
            return 400;
        h->fed += n;
    }
    if (h->max_uri_size != 0 && h->url_len > h->max_uri_size)
        return 414;
    if (h->fed >= h->max_size) {
        /* Still inside the request line: the target is what is too long. */
        if (h->parser.type == HTTP_REQUEST && h->nspans == 0)
            return 414;
        return h->parser.type == HTTP_REQUEST ? 431 : 502;
    }
    return SL_HEAD_MORE;
}

ssize_t
sl_head_feed_body(struct sl_head *h, const char *data, size_t len)
{
    size_t n;

    if (h->is_message_complete)
        return 0;
    if (h->fed != SIZE_MAX) {
        h->chunk_state = (h->parser.flags & F_CHUNKED) ? CK_SIZE : CK_OFF;
        /* Give back the head's final LF the pause left unconsumed. */
        h->fed = SIZE_MAX;
        http_parser_execute(&h->parser, &parser_settings, "\n", 1);
        if (HTTP_PARSER_ERRNO(&h->parser) == HPE_PAUSED && h->is_message_complete)
            return 0;
        if (HTTP_PARSER_ERRNO(&h->parser) != HPE_OK)
            return -1;
    }
    h->chunk_cursor = data;
    n = http_parser_execute(&h->parser, &parser_settings, data, len);
    /* at end of stream data is NULL, and the parser may return 1 on error */
    if (len > 0)
        chunk_check_until(h, data + n);
    h->chunk_cursor = NULL;
    if (h->chunk_state == CK_BAD)
        return -1;
    if (HTTP_PARSER_ERRNO(&h->parser) == HPE_PAUSED && h->is_message_complete)
        return (ssize_t)n;
    if (HTTP_PARSER_ERRNO(&h->parser) != HPE_OK)
        return -1;
    if (len == 0 && !h->is_message_complete)
        return -1;
    return (ssize_t)n;
}

static void
trim(const char **p, size_t *len)
{
    while (*len > 0 && ((*p)[0] == ' ' || (*p)[0] == '\t')) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

size_t
sl_head_headers(const struct sl_head *h, const char *head, struct sl_header *headers)
{
    for (unsigned i = 0; i < h->nspans; i++) {
        const struct sl_head_span *s = &h->spans[i];
        headers[i].name = head + s->name_off;
        headers[i].name_len = s->name_len;
        headers[i].value = s->value_len ? head + s->value_off : head + s->name_off + s->name_len;
        headers[i].value_len = s->value_len;
        trim(&headers[i].value, &headers[i].value_len);
    }
    return h->nspans;
}

/* RFC 9110 section 5.6.2 tchar, as a table: it runs over every header byte */
static const bool tchar_table[256] = {
    ['!'] = true, ['#'] = true, ['$'] = true, ['%'] = true, ['&'] = true, ['\''] = true,
    ['*'] = true, ['+'] = true, ['-'] = true, ['.'] = true, ['^'] = true, ['_'] = true,
    ['`'] = true, ['|'] = true, ['~'] = true,
    ['0'] = true, ['1'] = true, ['2'] = true, ['3'] = true, ['4'] = true, ['5'] = true,
    ['6'] = true, ['7'] = true, ['8'] = true, ['9'] = true,
    ['A'] = true, ['B'] = true, ['C'] = true, ['D'] = true, ['E'] = true, ['F'] = true,
    ['G'] = true, ['H'] = true, ['I'] = true, ['J'] = true, ['K'] = true, ['L'] = true,
    ['M'] = true, ['N'] = true, ['O'] = true, ['P'] = true, ['Q'] = true, ['R'] = true,
    ['S'] = true, ['T'] = true, ['U'] = true, ['V'] = true, ['W'] = true, ['X'] = true,
    ['Y'] = true, ['Z'] = true,
    ['a'] = true, ['b'] = true, ['c'] = true, ['d'] = true, ['e'] = true, ['f'] = true,
    ['g'] = true, ['h'] = true, ['i'] = true, ['j'] = true, ['k'] = true, ['l'] = true,
    ['m'] = true, ['n'] = true, ['o'] = true, ['p'] = true, ['q'] = true, ['r'] = true,
    ['s'] = true, ['t'] = true, ['u'] = true, ['v'] = true, ['w'] = true, ['x'] = true,
    ['y'] = true, ['z'] = true,
};

bool
sl_http_is_tchar(unsigned char c)
{
    return tchar_table[c];
}

int
sl_http_check_fields(const struct sl_header *headers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (headers[i].name_len == 0)
            return 400;
        for (size_t j = 0; j < headers[i].name_len; j++) {
            if (!sl_http_is_tchar((unsigned char)headers[i].name[j]))
                return 400;
        }
        for (size_t j = 0; j < headers[i].value_len; j++) {
            if (is_ctl((unsigned char)headers[i].value[j]))
                return 400;
        }
    }
    return 0;
}

/* The end of a host (reg-name, IPv4 or [IPv6]) before its ":port". */
static size_t
host_name_len(const char *v, size_t len)
{
    const char *end;

    if (len > 0 && v[0] == '[') {
        end = memchr(v, ']', len);
        return end != NULL ? (size_t)(end - v) + 1 : len;
    }
    end = memchr(v, ':', len);
    return end != NULL ? (size_t)(end - v) : len;
}

static bool
has_prefix_ci(const char *s, size_t len, const char *prefix, size_t prefix_len)
{
    return len >= prefix_len && strncasecmp(s, prefix, prefix_len) == 0;
}

/*
 * absolute-form (RFC 9112 section 3.2.2): "http://authority/path?query".
 * The authority routes the request in place of Host; the path and query go
 * up in origin-form. userinfo is refused (RFC 9110 section 4.2.4 forbids it
 * in http URIs), as is an authority that is no valid host[:port].
 */
static int
parse_absolute_form(struct sl_request *req)
{
    const char *t = req->target, *end = t + req->target_len, *a, *rest;
    size_t skip;

    if (has_prefix_ci(t, req->target_len, SL_LIT("http://")))
        skip = sizeof("http://") - 1;
    else if (has_prefix_ci(t, req->target_len, SL_LIT("https://")))
        skip = sizeof("https://") - 1;
    else
        return 400;
    a = t + skip;
    for (rest = a; rest < end && *rest != '/' && *rest != '?' && *rest != '#'; rest++)
        ;
    if (rest == a || !sl_http_is_valid_host(a, (size_t)(rest - a)))
        return 400;
    req->authority = a;
    req->authority_len = (size_t)(rest - a);
    if (rest < end && *rest == '/') {
        req->origin = rest;
        req->origin_len = (size_t)(end - rest);
    } else {
        req->origin = NULL; /* "http://h" or "http://h?q": the path is "/" */
        req->origin_len = 0;
    }
    return 0;
}

/* The request-target's form decides the path, query and authority. */
static int
parse_target(struct sl_request *req, enum http_method method)
{
    const char *q;

    if (req->target_len == 0)
        return 400;
    if (req->target_len == 1 && req->target[0] == '*') {
        /* asterisk-form is for OPTIONS only (section 3.2.4) */
        if (method != HTTP_OPTIONS)
            return 400;
        req->is_asterisk = true;
        req->origin = req->path = req->target;
        req->origin_len = req->path_len = 1;
        return 0;
    }
    if (req->target[0] == '/') {
        req->origin = req->target;
        req->origin_len = req->target_len;
    } else if (parse_absolute_form(req) != 0) {
        return 400;
    }
    if (req->origin_len == 0) {
        q = req->authority + req->authority_len;
        req->path = "/";
        req->path_len = 1;
        if (q < req->target + req->target_len && *q == '?') {
            req->query = q + 1;
            req->query_len = req->target_len - (size_t)(q + 1 - req->target);
        }
        return 0;
    }
    q = memchr(req->origin, '?', req->origin_len);
    req->path = req->origin;
    req->path_len = q ? (size_t)(q - req->origin) : req->origin_len;
    if (q != NULL) {
        req->query = q + 1;
        req->query_len = req->origin_len - req->path_len - 1;
    }
    return 0;
}

int
sl_head_to_request(const struct sl_head *h, const char *head, struct sl_header *headers,
                   struct sl_request *req)
{
    const struct sl_header *host;

    memset(req, 0, sizeof(*req));
    req->method = http_method_str((enum http_method)h->parser.method);
    req->method_len = strlen(req->method);
    req->target = head + h->url_off;
    req->target_len = h->url_len;
    req->http_minor = h->parser.http_minor;
    req->headers = headers;
    req->nheaders = sl_head_headers(h, head, headers);
    if (h->parser.http_major != 1)
        return 505;
    if (sl_http_check_fields(headers, req->nheaders) != 0)
        return 400;
    /* the non-strict parser lets HTAB and FF into a target; we forward it */
    for (size_t i = 0; i < req->target_len; i++) {
        if ((unsigned char)req->target[i] <= 0x20 || req->target[i] == 0x7f)
            return 400;
    }
    if (parse_target(req, (enum http_method)h->parser.method) != 0)
        return 400;
    host = NULL;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (sl_http_token_eq(headers[i].name, headers[i].name_len, SL_LIT("host"))) {
            if (host != NULL)
                return 400; /* RFC 9112 section 3.2: more than one Host */
            host = &headers[i];
        }
    }
    /* Never forwarded, even when the target's authority overrides it: an
     * upstream that reads Host must not be handed one we could not parse. */
    if (host != NULL && !sl_http_is_valid_host(host->value, host->value_len))
        return 400;
    if (host == NULL && req->http_minor >= 1)
        return 400;
    if (req->authority != NULL) {
        req->host = req->authority;
        req->host_len = host_name_len(req->authority, req->authority_len);
    } else if (host != NULL) {
        req->host = host->value;
        req->host_len = host_name_len(host->value, host->value_len);
    }
    return 0;
}

int
sl_http_check_line_ends(const char *head, size_t len)
{
    const char *end = head + len;
    const char *p;

    /* bare CR: section 2.2; the parser takes "\r" + any byte as the head's
     * last line end, and skips a lone CR before the request line */
    for (p = head; (p = memchr(p, '\r', (size_t)(end - p))) != NULL; p++) {
        if (p + 1 == end || p[1] != '\n')
            return 400;
    }
    for (p = head; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) {
        if (p == head || p[-1] != '\r')
            return 400; /* bare LF: RFC 9112 section 2.2 lets us refuse */
        if (p + 1 < end && (p[1] == ' ' || p[1] == '\t'))
            return 400; /* obs-fold: section 5.2, refuse rather than unfold */
    }
    return 0;
}

const struct sl_header *
sl_request_header(const struct sl_request *req, const char *name, size_t name_len)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (sl_http_token_eq(req->headers[i].name, req->headers[i].name_len, name, name_len))
            return &req->headers[i];
    }
    return NULL;
}

bool
sl_http_token_eq(const char *a, size_t a_len, const char *b, size_t b_len)
{
    return a_len == b_len && strncasecmp(a, b, a_len) == 0;
}

const char *
sl_http_reason(int status)
{
    const char *reason;

    if (status == 429)
        return "Too Many Requests";
    reason = http_status_str((enum http_status)status);
    return (reason != NULL && strcmp(reason, "<unknown>") != 0) ? reason : "Unknown";
}

static int
parse_content_length(const char *value, size_t len, uint64_t *length)
{
    uint64_t n = 0;

    if (len == 0 || len > 18)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(value[i] - '0');
    }
    *length = n;
    return 0;
}

int
sl_http_request_framing(const struct sl_request *req, enum sl_framing *framing, uint64_t *length)
{
    const struct sl_header *cl = NULL, *te = NULL;

    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sl_header *hd = &req->headers[i];
        if (sl_http_token_eq(hd->name, hd->name_len, SL_LIT("content-length"))) {
            if (cl != NULL)
                return 400;
            cl = hd;
        } else if (sl_http_token_eq(hd->name, hd->name_len, SL_LIT("transfer-encoding"))) {
            if (te != NULL)
                return 400;
            te = hd;
        }
    }
    *length = 0;
    if (te != NULL) {
        if (cl != NULL || req->http_minor == 0)
            return 400;
        if (!sl_http_token_eq(te->value, te->value_len, SL_LIT("chunked")))
            return 400;
        *framing = SL_FRAMING_CHUNKED;
        return 0;
    }
    if (cl != NULL) {
        if (parse_content_length(cl->value, cl->value_len, length) != 0)
            return 400;
        *framing = *length > 0 ? SL_FRAMING_LENGTH : SL_FRAMING_NONE;
        return 0;
    }
    *framing = SL_FRAMING_NONE;
    return 0;
}

enum sl_framing
sl_http_response_framing(const struct sl_head *h, bool is_head_request)
{
    unsigned status = h->parser.status_code;

    if (is_head_request || status / 100 == 1 || status == 204 || status == 304)
        return SL_FRAMING_NONE;
    if (h->parser.flags & F_CHUNKED)
        return SL_FRAMING_CHUNKED;
    if (h->parser.flags & F_CONTENTLENGTH)
        return h->parser.content_length > 0 ? SL_FRAMING_LENGTH : SL_FRAMING_NONE;
    return SL_FRAMING_EOF;
}

/* ---- forwarding rules ---------------------------------------------------- */

static bool
is_lower_hex(const char *s, size_t n, bool may_be_zero)
{
    bool is_nonzero = false;

    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        if (s[i] != '0')
            is_nonzero = true;
    }
    return may_be_zero || is_nonzero;
}

/* W3C Trace Context section 3.2: version-traceid-parentid-flags. */
bool
sl_http_is_valid_traceparent(const char *v, size_t n)
{
    if (n != 55 || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    if (!is_lower_hex(v, 2, true) || (v[0] == 'f' && v[1] == 'f'))
        return false;
    return is_lower_hex(v + 3, 32, false) && is_lower_hex(v + 36, 16, false)
        && is_lower_hex(v + 53, 2, true);
}

bool
sl_http_is_valid_request_id(const char *v, size_t n)
{
    if (n == 0 || n > SL_HTTP_MAX_REQUEST_ID)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] <= 0x20 || v[i] >= 0x7f)
            return false;
    }
    return true;
}

bool
sl_http_name_is(const struct sl_header *h, const char *name, size_t name_len)
{
    return sl_http_token_eq(h->name, h->name_len, name, name_len);
}

bool
sl_http_has_token(const struct sl_header *headers, size_t n, const char *name, size_t name_len,
                  const char *token, size_t token_len)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = headers[i].value, *end = v + headers[i].value_len;
        if (!sl_http_token_eq(headers[i].name, headers[i].name_len, name, name_len))
            continue;
        while (v < end) {
            const char *comma = memchr(v, ',', (size_t)(end - v));
            const char *tok_end = comma ? comma : end;
            const char *t = v;
            size_t tlen;
            while (t < tok_end && (*t == ' ' || *t == '\t'))
                t++;
            tlen = (size_t)(tok_end - t);
            while (tlen > 0 && (t[tlen - 1] == ' ' || t[tlen - 1] == '\t'))
                tlen--;
            if (sl_http_token_eq(t, tlen, token, token_len))
                return true;
            v = comma ? comma + 1 : end;
        }
    }
    return false;
}

/* Is `name` listed in any Connection header of the message? (RFC 9110 7.6.1) */
static bool
is_connection_token(const struct sl_header *headers, size_t n, const struct sl_header *h)
{
    return sl_http_has_token(headers, n, SL_LIT("connection"), h->name, h->name_len);
}

bool
sl_http_is_websocket_upgrade(const struct sl_request *req, bool has_body)
{
    /* RFC 9110 section 7.8: an HTTP/1.0 Upgrade is ignored; RFC 6455 4.1: GET */
    if (req->http_minor < 1 || has_body || !sl_http_token_eq(req->method, req->method_len,
                                                             SL_LIT("GET")))
        return false;
    return sl_http_has_token(req->headers, req->nheaders, SL_LIT("connection"), SL_LIT("upgrade"))
        && sl_http_has_token(req->headers, req->nheaders, SL_LIT("upgrade"), SL_LIT("websocket"));
}

/* unreserved / pct-encoded / sub-delims (RFC 3986 section 3.2.2 reg-name) */
static bool
is_reg_name(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '%') {
            if (i + 2 >= len || sl_hex_value(v[i + 1]) < 0 || sl_hex_value(v[i + 2]) < 0)
                return false;
            i += 2;
            continue;
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c == '\0' || strchr("-._~!$&'()*+,;=", c) == NULL)
            return false;
    }
    return true;
}

/* IPv6address or IPvFuture inside the brackets, checked by the C library */
static bool
is_ip_literal(const char *v, size_t len)
{
    char buf[64];
    struct in6_addr a;

    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, &a) == 1;
}

bool
sl_http_is_valid_host(const char *v, size_t len)
{
    size_t name_len = host_name_len(v, len);

    if (len > 0 && v[0] == '[') {
        if (name_len < 2 || v[name_len - 1] != ']' || !is_ip_literal(v + 1, name_len - 2))
            return false;
    } else if (!is_reg_name(v, name_len)) {
        return false; /* an IPv4address is a reg-name too */
    }
    if (name_len == len)
        return true;
    if (v[name_len] != ':' || len - name_len - 1 > 5)
        return false;
    for (size_t i = name_len + 1; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
    }
    return true;
}

bool
sl_http_is_hop_by_hop(const struct sl_header *headers, size_t n, const struct sl_header *h)
{
    /* First letter first: this runs for every header, both ways. */
    switch (h->name_len > 0 ? h->name[0] | 0x20 : 0) {
    case 'c':
        if (sl_http_name_is(h, SL_LIT("connection")))
            return true;
        break;
    case 'k':
        if (sl_http_name_is(h, SL_LIT("keep-alive")))
            return true;
        break;
    case 't':
        if (sl_http_name_is(h, SL_LIT("te")) || sl_http_name_is(h, SL_LIT("trailer"))
            || sl_http_name_is(h, SL_LIT("transfer-encoding")))
            return true;
        break;
    case 'u':
        if (sl_http_name_is(h, SL_LIT("upgrade")))
            return true;
        break;
    case 'p':
        if (h->name_len >= sizeof("proxy-") - 1
            && sl_http_token_eq(h->name, sizeof("proxy-") - 1, SL_LIT("proxy-")))
            return true;
        break;
    default:
        break;
    }
    return is_connection_token(headers, n, h);
}
