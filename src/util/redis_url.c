/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Redis URLs: the grammar is in redis_url.h. The parser reads the URL once,
 * left to right, and stops at the first problem with a reason meant for an
 * operator; it checks shape only (no name resolution, no socket access).
 */
#include "util/redis_url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/hex.h"

#define HOST_MAX 255
#define USAGE "use redis://[user:password@]host[:port][/db], rediss://... (TLS), " \
              "unix:/path[?db=N], redis-sentinel://ip[:port][,ip[:port]...]/name[/db] or " \
              "redis-cluster://host[:port][,host[:port]...] (rediss-cluster:// for TLS)"
#define SENTINEL_USAGE "write redis-sentinel://ip[:port][,ip[:port]...]/name[/db]"
#define CLUSTER_USAGE "write redis-cluster://host[:port][,host[:port]...][/0]"
#define MASK "********"

/* Percent-decodes [s, s+len) into a new string; NULL on a bad escape or %00. */
static char *
pct_decode(const char *s, size_t len)
{
    char *out = sl_xmalloc(len + 1);
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int hi, lo;

        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        if (i + 2 >= len || (hi = sl_hex_value(s[i + 1])) < 0
            || (lo = sl_hex_value(s[i + 2])) < 0 || (hi | lo) == 0) {
            free(out);
            return NULL;
        }
        out[n++] = (char)(hi << 4 | lo);
        i += 2;
    }
    out[n] = '\0';
    return out;
}

/* A decimal number of 1 to 10 digits within [min, max]. */
static int
parse_number(const char *s, size_t len, long min, long max, long *out)
{
    long v = 0;

    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Decodes one credential into *dst; a second one of the same kind is an error. */
static int
set_credential(char **dst, const char *s, size_t len, const char *what, char *err,
               size_t err_size)
{
    if (*dst != NULL) {
        snprintf(err, err_size, "%s given twice", what);
        return -1;
    }
    if ((*dst = pct_decode(s, len)) == NULL) {
        snprintf(err, err_size, "bad %%-escape in the %s", what);
        return -1;
    }
    return 0;
}

/* "[user]:password" or "user" of [s, s+len), the part before '@'. A user
 * alone is checked by the caller: its password may come from a file. */
static int
parse_userinfo(const char *s, size_t len, struct sl_redis_url *u, char *err, size_t err_size)
{
    const char *colon = memchr(s, ':', len);

    if (colon == NULL)
        return set_credential(&u->user, s, len, "user", err, err_size);
    if (colon > s && set_credential(&u->user, s, (size_t)(colon - s), "user", err, err_size))
        return -1;
    return set_credential(&u->password, colon + 1, (size_t)(len - (size_t)(colon - s) - 1),
                          "password", err, err_size);
}

/* Query parameters of a unix: URL: db, user, password, each once. */
static int
parse_query(const char *q, struct sl_redis_url *u, char *err, size_t err_size)
{
    bool has_db = false;

    while (*q != '\0') {
        const char *amp = strchr(q, '&'), *eq;
        size_t len = amp != NULL ? (size_t)(amp - q) : strlen(q), klen;

        eq = memchr(q, '=', len);
        if (eq == NULL) {
            snprintf(err, err_size, "query parameter without a value");
            return -1;
        }
        klen = (size_t)(eq - q);
        if (klen == 2 && strncmp(q, "db", 2) == 0) {
            if (has_db || parse_number(eq + 1, len - 3, 0, INT_MAX, &u->db) == -1) {
                snprintf(err, err_size, "bad database number (use ?db=0 to ?db=%d, once)",
                         INT_MAX);
                return -1;
            }
            has_db = true;
        } else if (klen == 8 && strncmp(q, "password", 8) == 0) {
            if (set_credential(&u->password, eq + 1, len - 9, "password", err, err_size))
                return -1;
        } else if (klen == 4 && strncmp(q, "user", 4) == 0) {
            if (set_credential(&u->user, eq + 1, len - 5, "user", err, err_size))
                return -1;
        } else {
            snprintf(err, err_size, "unknown query parameter \"%.*s\" (use db, user, "
                     "password)", (int)(klen > 32 ? 32 : klen), q);
            return -1;
        }
        q += len + (amp != NULL);
    }
    return 0;
}

/* unix:/path[?query] or unix://[userinfo@]/path[?query]; p is past "unix:". */
static int
parse_unix(const char *p, struct sl_redis_url *u, char *err, size_t err_size)
{
    const char *q;
    size_t plen;

    u->is_unix = true;
    if (strncmp(p, "//", 2) == 0) {
        const char *slash = strchr(p + 2, '/');
        const char *at = slash != NULL ? memrchr(p + 2, '@', (size_t)(slash - p - 2)) : NULL;

        if (slash == NULL) {
            snprintf(err, err_size, "unix: needs an absolute socket path");
            return -1;
        }
        if (at == NULL && slash != p + 2) {
            snprintf(err, err_size, "unix:// takes no host (write unix:///path or "
                     "unix://user:password@/path)");
            return -1;
        }
        if (at != NULL && at + 1 != slash) {
            snprintf(err, err_size, "unix:// takes no host after the '@'");
            return -1;
        }
        if (at != NULL && parse_userinfo(p + 2, (size_t)(at - p - 2), u, err, err_size) == -1)
            return -1;
        p = slash;
    }
    q = strchr(p, '?');
    plen = q != NULL ? (size_t)(q - p) : strlen(p);
    if (plen < 2 || *p != '/') {
        snprintf(err, err_size, "unix: needs an absolute socket path");
        return -1;
    }
    if ((u->path = pct_decode(p, plen)) == NULL) {
        snprintf(err, err_size, "bad %%-escape in the socket path");
        return -1;
    }
    return q != NULL ? parse_query(q + 1, u, err, err_size) : 0;
}

static bool
host_ok(const char *h, size_t len, bool is_v6)
{
    if (len == 0 || len > HOST_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (is_v6 ? !(isxdigit(c) || c == ':' || c == '.')
                  : !(isalnum(c) || c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* host[:port] or [v6][:port] in [p, end); default_port without one. */
static int
parse_host_port(const char *p, const char *end, int default_port, struct sl_redis_url *u,
                char *err, size_t err_size)
{
    const char *host = p, *host_end, *port = NULL;
    bool is_v6 = *p == '[';
    long v;

    if (is_v6) {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL) {
            snprintf(err, err_size, "unterminated [ in the host");
            return -1;
        }
        if (host_end + 1 < end && host_end[1] != ':') {
            snprintf(err, err_size, "junk after ] in the host (write [v6 address]:port)");
            return -1;
        }
        if (host_end + 1 < end)
            port = host_end + 2;
    } else {
        host_end = memchr(host, ':', (size_t)(end - host));
        if (host_end == NULL)
            host_end = end;
        else
            port = host_end + 1;
    }
    if (host_end == host) {
        snprintf(err, err_size, "missing host");
        return -1;
    }
    if (!host_ok(host, (size_t)(host_end - host), is_v6)) {
        snprintf(err, err_size, "bad host \"%.*s\"", (int)(host_end - host > 64 ? 64
                 : host_end - host), host);
        return -1;
    }
    u->host = sl_xstrndup(host, (size_t)(host_end - host));
    u->port = default_port;
    if (port != NULL) {
        if (parse_number(port, (size_t)(end - port), 1, 65535, &v) == -1) {
            snprintf(err, err_size, "bad port \"%.*s\" (use 1 to 65535)",
                     (int)(end - port > 16 ? 16 : end - port), port);
            return -1;
        }
        u->port = (int)v;
    }
    return 0;
}

/* redis[s]://[userinfo@]host[:port][/[db]]; p is past "redis://" or "rediss://". */
static int
parse_tcp(const char *p, struct sl_redis_url *u, char *err, size_t err_size)
{
    const char *end = p + strcspn(p, "/?#"), *at;

    if (*end == '?' || *end == '#') {
        snprintf(err, err_size, "query and fragment are not supported (put the database "
                 "after a slash)");
        return -1;
    }
    at = memrchr(p, '@', (size_t)(end - p));
    if (at != NULL) {
        if (parse_userinfo(p, (size_t)(at - p), u, err, err_size) == -1)
            return -1;
        p = at + 1;
    }
    if (parse_host_port(p, end, SL_REDIS_DEFAULT_PORT, u, err, err_size) == -1)
        return -1;
    if (*end == '/' && end[1] != '\0'
        && parse_number(end + 1, strlen(end + 1), 0, INT_MAX, &u->db) == -1) {
        snprintf(err, err_size, "bad database number \"%.*s\" (use /0 to /%d)", 16, end + 1,
                 INT_MAX);
        return -1;
    }
    return 0;
}

/* A list of nodes written host[:port],host[:port]...: Sentinels or cluster
 * seeds. Host names are kept as written: the daemon's resolver looks them
 * up, never a worker. */
struct addr_list_kind {
    const char *what;  /* "sentinel", "cluster node" */
    const char *usage; /* how to write the url */
    size_t max;
    int default_port;
};

static const struct addr_list_kind sentinel_kind = {
    "sentinel", SENTINEL_USAGE, SL_REDIS_SENTINELS_MAX, SL_REDIS_SENTINEL_PORT
};
static const struct addr_list_kind cluster_kind = {
    "cluster node", CLUSTER_USAGE, SL_REDIS_SEEDS_MAX, SL_REDIS_DEFAULT_PORT
};

/* The comma-separated host[:port] list in [p, end) into a new *addrs. */
static int
parse_addr_list(const char *p, const char *end, const struct addr_list_kind *kind,
                struct sl_redis_addr **addrs, size_t *n, char *err, size_t err_size)
{
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *seg_end = comma != NULL ? comma : end;
        struct sl_redis_url tmp = { 0 };

        if (*n == kind->max) {
            snprintf(err, err_size, "more than %zu %ss", kind->max, kind->what);
            return -1;
        }
        if (p == seg_end) {
            snprintf(err, err_size, "empty %s address (%s)", kind->what, kind->usage);
            return -1;
        }
        if (parse_host_port(p, seg_end, kind->default_port, &tmp, err, err_size) == -1) {
            free(tmp.host);
            return -1;
        }
        if (*addrs == NULL)
            *addrs = sl_xcalloc(kind->max, sizeof(**addrs));
        (*addrs)[(*n)++] = (struct sl_redis_addr){ tmp.host, tmp.port };
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

/* The master's name as Sentinel knows it: printable ASCII, none of " /%@,?#". */
static bool
master_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > SL_REDIS_MASTER_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || strchr("%@,?#", c) != NULL)
            return false;
    }
    return true;
}

/* [userinfo@]ip[:port][,ip[:port]...]/name[/db]; p is past "redis-sentinel://". */
static int
parse_sentinel(const char *p, struct sl_redis_url *u, char *err, size_t err_size)
{
    const char *end = p + strcspn(p, "/?#"), *at, *name, *name_end;

    u->is_sentinel = true;
    if (*end == '?' || *end == '#') {
        snprintf(err, err_size, "query and fragment are not supported (%s)", SENTINEL_USAGE);
        return -1;
    }
    at = memrchr(p, '@', (size_t)(end - p));
    if (at != NULL) {
        if (parse_userinfo(p, (size_t)(at - p), u, err, err_size) == -1)
            return -1;
        p = at + 1;
    }
    if (parse_addr_list(p, end, &sentinel_kind, &u->sentinels, &u->nsentinels, err,
                        err_size) == -1)
        return -1;
    name = *end == '/' ? end + 1 : end;
    if (strpbrk(name, "?#") != NULL) {
        snprintf(err, err_size, "query and fragment are not supported (%s)", SENTINEL_USAGE);
        return -1;
    }
    name_end = name + strcspn(name, "/");
    if (!master_name_ok(name, (size_t)(name_end - name))) {
        snprintf(err, err_size, "missing or bad master name after the sentinels (%s)",
                 SENTINEL_USAGE);
        return -1;
    }
    u->master_name = sl_xstrndup(name, (size_t)(name_end - name));
    if (*name_end == '/' && name_end[1] != '\0'
        && parse_number(name_end + 1, strlen(name_end + 1), 0, INT_MAX, &u->db) == -1) {
        snprintf(err, err_size, "bad database number \"%.16s\" (use /0 to /%d)", name_end + 1,
                 INT_MAX);
        return -1;
    }
    return 0;
}

/* What may follow the seeds: nothing, "/" or "/0". A cluster has only db 0
 * (SELECT is refused in cluster mode), so another db is an error rather
 * than a silent db 0. */
static int
parse_cluster_path(const char *s, char *err, size_t err_size)
{
    long db;

    if (strpbrk(s, "?#") != NULL) {
        snprintf(err, err_size, "query and fragment are not supported (%s)", CLUSTER_USAGE);
        return -1;
    }
    if (*s == '\0' || strcmp(s, "/") == 0)
        return 0;
    if (parse_number(s + 1, strlen(s + 1), 0, INT_MAX, &db) == -1) {
        snprintf(err, err_size, "bad path \"%.16s\" after the cluster nodes (%s)", s,
                 CLUSTER_USAGE);
        return -1;
    }
    if (db != 0) {
        snprintf(err, err_size, "database %ld: Redis Cluster has only db 0 (write /0 or "
                 "nothing)", db);
        return -1;
    }
    return 0;
}

/* [userinfo@]host[:port][,host[:port]...][/0]; p is past "redis[s]-cluster://". */
static int
parse_cluster(const char *p, struct sl_redis_url *u, char *err, size_t err_size)
{
    const char *end = p + strcspn(p, "/?#"), *at;

    u->is_cluster = true;
    at = memrchr(p, '@', (size_t)(end - p));
    if (at != NULL) {
        if (parse_userinfo(p, (size_t)(at - p), u, err, err_size) == -1)
            return -1;
        p = at + 1;
    }
    if (parse_addr_list(p, end, &cluster_kind, &u->seeds, &u->nseeds, err, err_size) == -1)
        return -1;
    return parse_cluster_path(end, err, err_size);
}

int
sl_redis_url_parse(const char *url, struct sl_redis_url *out, char *err, size_t err_size)
{
    return sl_redis_url_parse_flags(url, 0, out, err, err_size);
}

int
sl_redis_url_parse_flags(const char *url, unsigned flags, struct sl_redis_url *out, char *err,
                         size_t err_size)
{
    int rc;

    *out = (struct sl_redis_url){ 0 };
    if (url == NULL || *url == '\0') {
        snprintf(err, err_size, "missing url (%s)", USAGE);
        return -1;
    }
    if (strncmp(url, "redis://", 8) == 0) {
        rc = parse_tcp(url + 8, out, err, err_size);
    } else if (strncmp(url, "unix:", 5) == 0) {
        rc = parse_unix(url + 5, out, err, err_size);
    } else if (strncmp(url, "rediss://", 9) == 0) {
        out->is_tls = true;
        rc = parse_tcp(url + 9, out, err, err_size);
    } else if (strncmp(url, "redis-sentinel://", 17) == 0) {
        rc = parse_sentinel(url + 17, out, err, err_size);
    } else if (strncmp(url, "redis-cluster://", 16) == 0) {
        rc = parse_cluster(url + 16, out, err, err_size);
    } else if (strncmp(url, "rediss-cluster://", 17) == 0) {
        out->is_tls = true;
        rc = parse_cluster(url + 17, out, err, err_size);
    } else if (strncmp(url, "rediss-sentinel://", 18) == 0) {
        snprintf(err, err_size, "rediss-sentinel:// (TLS) is not supported yet (use "
                 "redis-sentinel://)");
        return -1;
    } else {
        snprintf(err, err_size, "bad url (%s)", USAGE);
        return -1;
    }
    if (rc == 0 && out->user != NULL && out->password == NULL
        && !(flags & SL_REDIS_URL_PASSWORD_LATER)) {
        snprintf(err, err_size, "user without a password (write user:password@, or set "
                 "password_file)");
        rc = -1;
    }
    if (rc != 0)
        sl_redis_url_fini(out);
    return rc;
}

void
sl_redis_url_fini(struct sl_redis_url *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    if (u->password != NULL)
        explicit_bzero(u->password, strlen(u->password));
    free(u->password);
    free(u->master_name);
    for (size_t i = 0; i < u->nsentinels; i++)
        free(u->sentinels[i].host);
    free(u->sentinels);
    for (size_t i = 0; i < u->nseeds; i++)
        free(u->seeds[i].host);
    free(u->seeds);
    *u = (struct sl_redis_url){ 0 };
}

/* The schemes whose authority may hold a userinfo with a password, and
 * what ends that authority as their parser reads it. */
static const struct {
    const char *scheme, *stop;
} userinfo_schemes[] = {
    { "redis://", "/?#" },         { "rediss://", "/?#" },        { "redis-sentinel://", "/?#" },
    { "redis-cluster://", "/?#" }, { "rediss-cluster://", "/?#" }, { "unix://", "/" },
};

char *
sl_redis_url_mask(const char *url)
{
    size_t len = strlen(url), cut = 0, resume = 0;
    const char *auth = NULL, *auth_end = NULL, *q;
    char *out;

    for (size_t i = 0; i < sizeof(userinfo_schemes) / sizeof(userinfo_schemes[0]); i++) {
        size_t n = strlen(userinfo_schemes[i].scheme);

        if (strncmp(url, userinfo_schemes[i].scheme, n) == 0) {
            auth = url + n;
            auth_end = auth + strcspn(auth, userinfo_schemes[i].stop);
            break;
        }
    }
    if (auth != NULL) {
        const char *at = memrchr(auth, '@', (size_t)(auth_end - auth));
        const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon != NULL) {
            cut = (size_t)(colon + 1 - url);
            resume = (size_t)(at - url);
        }
    }
    if (cut == 0 && strncmp(url, "unix:", 5) == 0 && (q = strchr(url, '?')) != NULL) {
        for (const char *p = q + 1; *p != '\0'; p += strcspn(p, "&"), p += *p == '&') {
            if (strncmp(p, "password=", 9) == 0) {
                cut = (size_t)(p + 9 - url);
                resume = cut + strcspn(p + 9, "&");
                break;
            }
        }
    }
    out = sl_xmalloc(len + sizeof(MASK));
    if (cut == 0) {
        memcpy(out, url, len + 1);
    } else {
        memcpy(out, url, cut);
        memcpy(out + cut, MASK, strlen(MASK));
        memcpy(out + cut + strlen(MASK), url + resume, len - resume + 1);
    }
    return out;
}
