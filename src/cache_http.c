/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * HTTP caching rules as pure functions (src/cache_http.h): Cache-Control
 * directives, HTTP dates, freshness (RFC 9111 section 4.2), cache and Vary
 * keys (section 4.1), entity-tag comparison (RFC 9110 section 13.1.2).
 */
#include "cache_http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/http.h"
#include "util/alloc.h"

static bool
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* "delta-seconds" (RFC 9111 section 1.2.2), quoted or not; -1 when it is
 * not one. A value too large to hold is the largest one (2^31). */
static int64_t
delta_seconds(const char *v, size_t len)
{
    int64_t n = 0;

    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        if (n < 2147483648LL)
            n = n * 10 + (v[i] - '0');
    }
    return n < 2147483648LL ? n : 2147483648LL;
}

static void
cc_directive(struct sl_cc *cc, const char *name, size_t name_len, const char *v, size_t v_len,
             bool has_value)
{
#define IS(lit) sl_http_token_eq(name, name_len, SL_LIT(lit))
    if (IS("no-store"))
        cc->no_store = true;
    else if (IS("private"))
        cc->is_private = true; /* with or without field names: not for a shared cache */
    else if (IS("no-cache"))
        cc->no_cache = true; /* field names too: revalidate the whole response */
    else if (IS("public"))
        cc->is_public = true;
    else if (IS("must-revalidate") || IS("proxy-revalidate"))
        cc->must_revalidate = true;
    else if (IS("max-age") && has_value)
        cc->max_age_s = delta_seconds(v, v_len);
    else if (IS("s-maxage") && has_value)
        cc->s_maxage_s = delta_seconds(v, v_len);
    else if (IS("stale-while-revalidate") && has_value)
        cc->swr_s = delta_seconds(v, v_len);
    else if (IS("stale-if-error") && has_value)
        cc->sie_s = delta_seconds(v, v_len);
#undef IS
}

/* One Cache-Control value: directives separated by commas, a value after
 * "=" token or quoted-string (a comma inside quotes does not separate). */
static void
cc_parse_value(struct sl_cc *cc, const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t name_start, name_end, v_start, v_end;
        bool has_value = false;

        while (i < len && (is_ows(s[i]) || s[i] == ','))
            i++;
        name_start = i;
        while (i < len && s[i] != '=' && s[i] != ',' && !is_ows(s[i]))
            i++;
        name_end = i;
        while (i < len && is_ows(s[i]))
            i++;
        v_start = v_end = i;
        if (i < len && s[i] == '=') {
            has_value = true;
            i++;
            while (i < len && is_ows(s[i]))
                i++;
            v_start = i;
            if (i < len && s[i] == '"') {
                for (i++; i < len && s[i] != '"'; i++) {
                    if (s[i] == '\\' && i + 1 < len)
                        i++;
                }
                if (i < len)
                    i++;
            } else {
                while (i < len && s[i] != ',' && !is_ows(s[i]))
                    i++;
            }
            v_end = i;
        }
        if (name_end > name_start)
            cc_directive(cc, s + name_start, name_end - name_start, s + v_start,
                         v_end - v_start, has_value);
        while (i < len && s[i] != ',')
            i++;
    }
}

void
sl_cc_parse(const struct sl_header *headers, size_t n, struct sl_cc *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age_s = cc->s_maxage_s = cc->swr_s = cc->sie_s = -1;
    for (size_t i = 0; i < n; i++) {
        if (sl_http_name_is(&headers[i], SL_LIT("cache-control")))
            cc_parse_value(cc, headers[i].value, headers[i].value_len);
    }
}

/* ---- dates ------------------------------------------------------------------ */

static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static int
month_index(const char *m)
{
    for (int i = 0; i < 12; i++) {
        if (strncmp(m, months[i], 3) == 0)
            return i;
    }
    return -1;
}

int64_t
sl_http_date_parse(const char *s, size_t len)
{
    char buf[64], mon[4] = "", wday[16];
    struct tm tm;
    int d = 0, y = 0, hh = 0, mm = 0, ss = 0, used = 0;
    time_t t;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(&tm, 0, sizeof(tm));
    /* IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", then rfc850-date
     * "Sunday, 06-Nov-94 08:49:37 GMT", then asctime "Sun Nov  6 08:49:37 1994" */
    if (sscanf(buf, "%15[A-Za-z], %2d %3s %4d %2d:%2d:%2d GMT%n", wday, &d, mon, &y, &hh, &mm,
               &ss, &used) == 7 && (size_t)used == len) {
    } else if (sscanf(buf, "%15[A-Za-z], %2d-%3s-%2d %2d:%2d:%2d GMT%n", wday, &d, mon, &y, &hh,
                      &mm, &ss, &used) == 7 && (size_t)used == len) {
        y += y < 70 ? 2000 : 1900;
    } else if (sscanf(buf, "%15[A-Za-z] %3s %2d %2d:%2d:%2d %4d%n", wday, mon, &d, &hh, &mm, &ss,
                      &y, &used) == 7 && (size_t)used == len) {
    } else {
        return -1;
    }
    tm.tm_mon = month_index(mon);
    if (tm.tm_mon < 0 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60 || y < 1970)
        return -1;
    tm.tm_mday = d;
    tm.tm_year = y - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t;
}

/* ---- freshness ----------------------------------------------------------------- */

/* RFC 9110 section 15.1: heuristically cacheable status codes. */
static bool
is_heuristic_status(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return true;
    default:
        return false;
    }
}

bool
sl_cache_status_storable(int status, bool has_explicit)
{
    /* 206 needs range handling we do not have; 1xx are not final; 304 is
     * an answer to a condition, not a representation */
    if (status < 200 || status == 206 || status == 304)
        return false;
    return is_heuristic_status(status) || (has_explicit && status < 500);
}

const struct sl_header *
sl_cache_header(const struct sl_header *headers, size_t n, const char *name, size_t name_len)
{
    for (size_t i = 0; i < n; i++) {
        if (sl_http_name_is(&headers[i], name, name_len))
            return &headers[i];
    }
    return NULL;
}

uint64_t
sl_cache_freshness_ms(int status, const struct sl_header *headers, size_t n,
                      const struct sl_cc *cc, int64_t now_s, uint64_t default_ms,
                      uint64_t *age_s)
{
    const struct sl_header *date = sl_cache_header(headers, n, SL_LIT("date"));
    const struct sl_header *age = sl_cache_header(headers, n, SL_LIT("age"));
    const struct sl_header *expires = sl_cache_header(headers, n, SL_LIT("expires"));
    int64_t date_s = date != NULL ? sl_http_date_parse(date->value, date->value_len) : -1;
    int64_t age_v = age != NULL ? delta_seconds(age->value, age->value_len) : -1;

    if (date_s < 0)
        date_s = now_s;
    /* RFC 9111 section 4.2.3: the larger of the apparent age and Age */
    *age_s = (uint64_t)(age_v > 0 ? age_v : 0);
    if (now_s > date_s && (uint64_t)(now_s - date_s) > *age_s)
        *age_s = (uint64_t)(now_s - date_s);
    if (cc->s_maxage_s >= 0)
        return (uint64_t)cc->s_maxage_s * 1000u;
    if (cc->max_age_s >= 0)
        return (uint64_t)cc->max_age_s * 1000u;
    if (expires != NULL) {
        /* an invalid Expires, "0" included, means already expired (5.3) */
        int64_t exp_s = sl_http_date_parse(expires->value, expires->value_len);
        return exp_s > date_s ? (uint64_t)(exp_s - date_s) * 1000u : 0;
    }
    return is_heuristic_status(status) ? default_ms : 0;
}

/* ---- keys ---------------------------------------------------------------------- */

char *
sl_cache_key(const struct sl_request *req, size_t *len)
{
    size_t host_len = req->host != NULL ? req->host_len : 0;
    size_t n = host_len + req->path_len + (req->query != NULL ? 1 + req->query_len : 0);
    char *key = sl_xmalloc(n + 1);
    size_t at = 0;

    for (size_t i = 0; i < host_len; i++)
        key[at++] = (char)tolower((unsigned char)req->host[i]);
    memcpy(key + at, req->path, req->path_len);
    at += req->path_len;
    if (req->query != NULL) {
        key[at++] = '?';
        memcpy(key + at, req->query, req->query_len);
        at += req->query_len;
    }
    key[at] = '\0';
    *len = at;
    return key;
}

char *
sl_cache_vary_names(const struct sl_header *headers, size_t n, size_t *len, bool *is_star)
{
    char *names = NULL;
    size_t at = 0, cap = 0;

    *is_star = false;
    for (size_t i = 0; i < n; i++) {
        const char *v = headers[i].value;
        size_t vl = headers[i].value_len, p = 0;

        if (!sl_http_name_is(&headers[i], SL_LIT("vary")))
            continue;
        while (p < vl) {
            size_t start;
            while (p < vl && (is_ows(v[p]) || v[p] == ','))
                p++;
            start = p;
            while (p < vl && v[p] != ',' && !is_ows(v[p]))
                p++;
            if (p == start)
                continue;
            if (p - start == 1 && v[start] == '*')
                *is_star = true;
            if (at + (p - start) + 2 > cap) {
                cap = (at + (p - start) + 2) * 2;
                names = sl_xrealloc(names, cap);
            }
            if (at > 0)
                names[at++] = '\n';
            for (size_t k = start; k < p; k++)
                names[at++] = (char)tolower((unsigned char)v[k]);
        }
    }
    if (names != NULL)
        names[at] = '\0';
    *len = at;
    return names;
}

char *
sl_cache_variant_key(const char *key, size_t key_len, const char *names, size_t names_len,
                     const struct sl_request *req, size_t *len)
{
    size_t cap = key_len + 1 + names_len + 2, at = 0, p = 0;
    char *out;

    for (size_t i = 0; i < req->nheaders; i++)
        cap += req->headers[i].value_len + 1;
    out = sl_xmalloc(cap + 1);
    memcpy(out, key, key_len);
    at = key_len;
    out[at++] = '\0';
    while (p < names_len) {
        const char *name = names + p;
        const char *nl = memchr(name, '\n', names_len - p);
        size_t nlen = nl != NULL ? (size_t)(nl - name) : names_len - p;
        bool is_first = true;

        memcpy(out + at, name, nlen);
        at += nlen;
        out[at++] = ':';
        for (size_t i = 0; i < req->nheaders; i++) {
            const struct sl_header *h = &req->headers[i];
            if (!sl_http_token_eq(h->name, h->name_len, name, nlen))
                continue;
            if (!is_first)
                out[at++] = ',';
            memcpy(out + at, h->value, h->value_len);
            at += h->value_len;
            is_first = false;
        }
        out[at++] = '\n';
        p += nlen + 1;
    }
    *len = at;
    return out;
}

/* ---- validators ------------------------------------------------------------------ */

/* Weak comparison: W/ prefixes ignored, the opaque tags equal. */
static bool
etag_eq(const char *a, size_t a_len, const char *b, size_t b_len)
{
    if (a_len >= 2 && a[0] == 'W' && a[1] == '/') {
        a += 2;
        a_len -= 2;
    }
    if (b_len >= 2 && b[0] == 'W' && b[1] == '/') {
        b += 2;
        b_len -= 2;
    }
    return a_len == b_len && memcmp(a, b, a_len) == 0;
}

bool
sl_cache_etag_match(const char *inm, size_t inm_len, const char *etag, size_t etag_len)
{
    size_t p = 0;

    while (p < inm_len) {
        size_t start;
        while (p < inm_len && (is_ows(inm[p]) || inm[p] == ','))
            p++;
        start = p;
        if (p < inm_len && inm[p] == '*')
            return true;
        if (p + 1 < inm_len && inm[p] == 'W' && inm[p + 1] == '/')
            p += 2;
        if (p < inm_len && inm[p] == '"') {
            for (p++; p < inm_len && inm[p] != '"'; p++)
                ;
            if (p < inm_len)
                p++;
        } else {
            while (p < inm_len && inm[p] != ',')
                p++;
        }
        if (etag != NULL && p > start && etag_eq(inm + start, p - start, etag, etag_len))
            return true;
    }
    return false;
}
