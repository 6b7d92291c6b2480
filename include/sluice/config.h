/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The validated configuration: plain C structs built once from the Lua conf
 * file and never modified afterwards. Runtime modules only ever see a
 * `const struct sl_config *`. Lua functions in the conf (key and cost
 * functions) cannot cross into C; the struct records that they exist and
 * lua_rt loads `source` again in each worker's own state to call them.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "sluice/netaddr.h"

struct sl_client_conf {
    uint64_t header_timeout_ms; /* whole request head must arrive within this: 408 */
    uint64_t body_timeout_ms;   /* between two reads of the request body: 408 */
    uint64_t idle_timeout_ms;   /* keep-alive wait for the next request: close */
    size_t max_header_size;     /* request line + headers, bytes: 431 */
    size_t max_uri_size;        /* request-target, bytes: 414 */
    unsigned max_headers;       /* header field count: 431 */
    uint64_t max_body_size;     /* bytes, 0 = unlimited: 413 */
    unsigned max_connections;   /* per process; accept pauses at the cap */
    uint64_t request_timeout_ms; /* whole request, head and body: 408; 0 = off */
};

/* A server given by host name: each of its addresses becomes a server. */
struct sl_server_name {
    char *host;
    uint16_t port;
    char *text; /* "host:port" as written */
    unsigned weight; /* given to each of its addresses */
};

/* How a pool picks a server for a request (docs/configuration.md, "balance"). */
enum sl_balance {
    SL_BALANCE_ROUND_ROBIN, /* smooth weighted round-robin */
    SL_BALANCE_LEAST_CONN,  /* fewest requests in flight for the weight, per worker */
    SL_BALANCE_RANDOM2,     /* two random choices, the less loaded */
    SL_BALANCE_HASH,        /* consistent hashing of a key selector */
};

#define SL_UPSTREAM_WEIGHT_MAX 256

struct sl_key_part;
/* What makes sluice send a request again (src/upstream_retry.c). */
enum sl_retry_on {
    SL_RETRY_ON_CONNECT_FAILURE = 1u << 0, /* refused, unreachable, connect timed out */
    SL_RETRY_ON_RESET = 1u << 1, /* closed or reset before any byte of a response */
    SL_RETRY_ON_502 = 1u << 2,   /* the upstream answered 502 (opt-in) */
    SL_RETRY_ON_503 = 1u << 3,   /* the upstream answered 503 (opt-in) */
};

/*
 * An upstream's retries: at most `retries` further attempts per request,
 * each on another server when there is one, and per worker no more retries
 * in flight than max(budget_min, budget_percent % of the requests in flight)
 * (Envoy's retry_budget).
 */
struct sl_retry_conf {
    unsigned retries;        /* 0: never */
    unsigned on;             /* SL_RETRY_ON_* bits */
    unsigned budget_percent; /* 0..100 */
    unsigned budget_min;
};

/*
 * An upstream's health (src/health.c): active checks, on when path is set,
 * and passive ejection after consecutive failures seen by the proxy.
 */
struct sl_health_conf {
    char *path;                   /* GET this; NULL: no active checks */
    uint64_t interval_ms;         /* between two checks of a server */
    uint64_t timeout_ms;          /* connect + response status line; at most interval */
    unsigned fails;               /* consecutive failed checks that mark a server down */
    unsigned passes;              /* consecutive good checks that mark it up again */
    unsigned max_fails;           /* consecutive passive failures that eject; 0: never */
    uint64_t fail_timeout_ms;     /* the first ejection; doubles while the server fails */
    uint64_t max_fail_timeout_ms; /* the cap of the doubling */
    bool is_passive_5xx;          /* a 5xx response is a passive failure too */
};

struct sl_upstream_conf {
    char *name;
    struct sl_sockaddr *servers; /* numeric ones */
    size_t nservers;
    struct sl_server_name *names; /* by host name, resolved by the daemon */
    size_t nnames;
    unsigned *weights;           /* of servers[i], 1..SL_UPSTREAM_WEIGHT_MAX; default 1 */
    enum sl_balance balance;     /* default round-robin */
    struct sl_key_part *hash_key; /* SL_BALANCE_HASH: what is hashed; NULL otherwise */
    unsigned keepalive;          /* idle connections kept per worker */
    uint64_t connect_timeout_ms;
    uint64_t timeout_ms;         /* response head, and between reads of the body: 504 */
    uint64_t idle_timeout_ms;    /* how long an idle pooled connection is kept */
    unsigned max_inflight;       /* per process, split between workers */
    unsigned queue;              /* waiting requests per process; past it 503 */
    uint64_t tunnel_idle_timeout_ms; /* an upgraded connection with no byte either way: closed */
    struct sl_retry_conf retry;
    struct sl_health_conf health;
    const char *file;            /* where it was defined, for later checks */
    int line;
};

enum sl_key_kind {
    SL_KEY_IP,
    SL_KEY_HEADER,
    SL_KEY_QUERY,
    SL_KEY_COOKIE,
    SL_KEY_PATH,
    SL_KEY_METHOD,
    SL_KEY_GLOBAL,
    SL_KEY_FUNCTION, /* a Lua function of the request, run by lua_rt */
};

struct sl_key_part {
    enum sl_key_kind kind;
    char *name; /* header (lower-cased), query or cookie name; NULL otherwise */
    size_t name_len;
};

/* One proxy listener: listen = "host:port", "unix:/path" or a table. */
struct sl_listen_conf {
    struct sockaddr_storage ss; /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t len;
    char text[128];             /* "127.0.0.1:8080", "[::1]:8080" or "unix:/path", as written */
    bool is_unix;
    bool is_proxy_protocol;     /* every connection opens with a PROXY header (v1 or v2) */
    bool has_mode;              /* unix: mode was written */
    unsigned mode;              /* unix: permission bits given to the socket file */
};

struct sl_limit_conf {
    char *name;
    struct sl_key_part *parts; /* several parts: a composite key */
    size_t nparts;
    double rate;     /* tokens added per `per_ms` */
    uint64_t per_ms;
    double burst;    /* capacity; defaults to rate */
    double cost;     /* tokens per request when cost is not a function; default 1 */
    bool is_cost_function;
    bool is_shadow;  /* evaluate and count, never refuse */
    uint64_t delay_ms; /* a refused request may wait this long for its tokens; 0: 429 at once */
    unsigned ipv6_prefix; /* `ip` key parts: an IPv6 client counts as its /N; default 128 */
    bool is_cache_hits; /* also applies to responses served from the cache; default true */
    bool is_leased;  /* lease = true: hot keys are admitted from leased blocks (redis) */
    const char *file;
    int line;
};

/* headers = { ["API-Version"] = "2024-06-01" }: one condition of a route. */
struct sl_route_header {
    char *name;  /* lower-cased */
    size_t name_len;
    char *value; /* compared byte for byte with a field's whole (trimmed) value */
    size_t value_len;
};

/* A window [from_s, to_s) in which a route already answers 410. */
struct sl_brownout {
    int64_t from_s; /* seconds since the epoch */
    int64_t to_s;
};

/* Routes that end: deprecation, sunset, brownouts (src/config_lifecycle.c). */
struct sl_lifecycle_conf {
    bool has_deprecation;
    bool has_sunset;
    int64_t deprecation_s;  /* seconds since the epoch, when has_deprecation */
    int64_t sunset_s;       /* from then on 410, when has_sunset */
    char *link;             /* migration guide URI; NULL: none */
    struct sl_brownout *brownouts; /* sorted by from_s */
    size_t nbrownouts;
    struct sl_key_part consumer; /* who calls: a key selector, default "ip" */
    bool has_consumer;           /* consumer was written */
    unsigned consumer_top;       /* consumers shown by name in metrics; default 10 */
};

/* A route's Idempotency-Key handling (src/phase_idem.c, docs/idempotency.md). */
struct sl_idempotency_conf {
    char **methods;     /* upper-case method names it applies to; default POST, PATCH */
    size_t nmethods;
    bool is_required;   /* no key on those methods: 400 */
    uint64_t ttl_ms;    /* how long a completed response is kept; default 24h */
    uint64_t lock_ms;   /* how long a claim outlives an instance that died; default 5m */
    size_t max_response; /* head and body; a larger response is not kept; default 1m */
    struct sl_key_part scope; /* whose keys: the same key of two scopes never meet */
};

/* A route's response cache (src/config_cache.c, docs/caching.md). */
struct sl_cache_conf {
    uint64_t ttl_ms;         /* freshness when the upstream gives none; default 60s */
    uint64_t max_memory;     /* bytes, the route's store; default 64m */
    uint64_t max_object;     /* bytes, a larger response is not stored; default 1m */
    uint64_t stale_while_revalidate_ms; /* default 0: off; the upstream's own wins */
    uint64_t stale_if_error_ms;         /* default 0: off; the upstream's own wins */
    uint64_t lock_timeout_ms; /* collapsed misses wait this long at most; default 5s */
};

struct sl_route_conf {
    char *host;    /* NULL: any host; matched case-insensitively, without port */
    struct sl_route_header *headers; /* all must match; none: any request */
    size_t nheaders;
    struct sl_lifecycle_conf lifecycle;
    char *path;    /* prefix */
    size_t path_len;
    size_t upstream; /* index into sl_config.upstreams */
    size_t *limits;  /* indexes into sl_config.limits, in the order written */
    size_t nlimits;
    bool has_ratelimit_headers; /* RateLimit fields on admitted responses; default true */
    bool has_server_timing;     /* Server-Timing header; default false */
    bool has_websocket;         /* WebSocket upgrades pass; default true, else 403 */
    struct sl_idempotency_conf *idempotency; /* NULL: Idempotency-Key passes untouched */
    struct sl_cache_conf *cache; /* NULL: responses are not cached */
};

/* Does the route end some day (deprecation or sunset written)? */
static inline bool
sl_route_has_lifecycle(const struct sl_route_conf *r)
{
    return r->lifecycle.has_deprecation || r->lifecycle.has_sunset;
}

enum sl_store_kind { SL_STORE_LOCAL, SL_STORE_REDIS };
/* An encoded slash (%2F) in a request path: kept as it is, or refused with 400. */
enum sl_path_encoded_slash { SL_PATH_SLASH_KEEP, SL_PATH_SLASH_REJECT };
/* What the upstream gets as the path: the normalised one, or the client's. */
enum sl_path_forward { SL_PATH_FORWARD_NORMALIZED, SL_PATH_FORWARD_ORIGINAL };
enum sl_on_error { SL_ON_ERROR_ALLOW, SL_ON_ERROR_DENY, SL_ON_ERROR_LOCAL };

struct ssl_ctx_st;

/* store.tls: how a rediss:// url connects (src/config_redis_tls.c). */
struct sl_redis_tls_conf {
    char *ca_file;      /* PEM CAs to trust; NULL: the system's trust store */
    char *cert_file;    /* client certificate chain (PEM), for mutual TLS; with key_file */
    char *key_file;     /* its private key (PEM) */
    char *server_name;  /* SNI and the name checked; NULL: the url's host */
    bool is_verify;     /* check the chain and the name; default true (false: tests only) */
    bool is_set;        /* a tls table was written */
    /* Built at load for a rediss:// url, one per config generation, shared
     * by every worker's connections (each takes a reference). */
    struct ssl_ctx_st *ssl_ctx;
};

/* store.sentinel: how to AUTH to the Sentinels of a redis-sentinel:// url. */
struct sl_redis_sentinel_conf {
    char *user;           /* NULL: AUTH with the password alone */
    char *password_file;  /* NULL: the Sentinels take no AUTH */
    char *password;       /* the file's content, never printed */
    bool is_set;          /* a sentinel table was written */
};

struct sl_store_conf {
    enum sl_store_kind kind;
    char *url;            /* redis://[user:password@]host:port/db or unix:/path[?db=N] */
    /* The password kept out of the conf: the file is read at every load
     * (start and reload) and its content kept here, never printed. */
    char *password_file;  /* NULL: the password, if any, is in the url */
    char *password;       /* the file's password; NULL without a file */
    struct sl_redis_tls_conf tls;
    struct sl_redis_sentinel_conf sentinel;
    uint64_t timeout_ms;  /* per script call; default 20ms */
    enum sl_on_error on_error;
    char *prefix;         /* key namespace, default "sluice" */
    size_t max_keys;      /* local store: bound on live buckets, default 2,000,000 */
    size_t idempotency_memory; /* local store: idempotency records, bytes; default 64m */
    uint64_t lease_ttl_ms;   /* lease.ttl: a block is spent within it; default 250ms */
    double lease_max_share;  /* lease.max_share: a block is at most this share of burst; 0.1 */
};

/* A file the conf included, kept so that every Lua state runs the same bytes. */
struct sl_conf_file {
    char *path;        /* the match of the include() pattern, under the includer's directory */
    char *source;
    size_t source_len;
};

/* One include() pattern, as resolved, and the files it matched, in order. */
struct sl_conf_include {
    char *pattern;
    size_t *files;     /* indexes into sl_config.files */
    size_t nfiles;
};

/* How upstream host names are looked up (src/resolver.c). */
struct sl_resolver_conf {
    struct sl_sockaddr *servers; /* NULL: those of /etc/resolv.conf */
    size_t nservers;
    uint64_t valid_ms;           /* refresh at least this often; a shorter TTL wins */
    uint64_t timeout_ms;         /* per query attempt */
};

struct sl_config {
    char *path;            /* the conf file, as given */
    char *source;          /* its text, so every Lua state loads the same bytes */
    size_t source_len;
    /* NULL-terminated: the names the conf may read before it assigns them
     * (the top-level keys), declared to every sandbox that runs `source` */
    const char **conf_names;
    struct sl_conf_file *files;        /* included files, in the order first included */
    size_t nfiles;
    struct sl_conf_include *includes;  /* every include() pattern run */
    size_t nincludes;

    struct sl_listen_conf *listen;
    size_t nlisten;
    struct sl_sockaddr admin;
    bool has_admin;
    /* With a token file, every admin path but /healthz and /readyz asks for
     * "Authorization: Bearer <token>". The file is read at every load
     * (start and reload); only the token's SHA-256 is kept. */
    char *admin_token_file;           /* NULL: no token is asked for */
    uint8_t admin_token_sha256[32];
    unsigned workers;      /* "auto" resolved to the number of online CPUs */
    bool is_workers_auto;  /* workers = "auto" (the default) */
    struct sl_cidr *trusted_proxies;
    size_t ntrusted_proxies;
    uint64_t shutdown_timeout_ms; /* graceful drain bound, default 30s */

    struct sl_client_conf client;
    struct sl_store_conf store;

    struct sl_upstream_conf *upstreams;
    size_t nupstreams;
    struct sl_resolver_conf resolver;
    struct sl_limit_conf *limits;
    size_t nlimits;
    struct sl_route_conf *routes;
    size_t nroutes;

    char *access_log;      /* path, "stderr" or "off"; default "stderr" */
    char *error_log;       /* path or "stderr"; default "stderr" */
    char *log_level;       /* "debug" | "info" | "warn" | "error"; default "info" */
    char *pidfile;         /* NULL: none */

    uint64_t slow_request_ms;   /* 0: off; slower requests log their phase breakdown */
    enum sl_path_encoded_slash path_encoded_slash; /* default keep */
    enum sl_path_forward path_forward;             /* default normalized */
    size_t lua_max_value_size; /* request values cut to this for Lua; 0: SL_LUA_VALUE_MAX */
    unsigned max_delayed;      /* requests waiting out a limit's delay, per worker; default 1024 */
    double *metrics_buckets;    /* histogram bounds in seconds; NULL: the defaults */
    size_t nmetrics_buckets;
};

/* The bound on checking a conf, wall clock (see sl_config_load_within). */
#define SL_CONFIG_TIME_MAX_MS 3000u

/*
 * Runs the conf file at `path` in a sandboxed LuaJIT state and validates it.
 * On success returns a config owned by the caller (free with sl_config_free)
 * and leaves *errors NULL. On failure returns NULL and sets *errors to a
 * malloc'd string of one "file:line: message" per line, every error found.
 * Takes at most about SL_CONFIG_TIME_MAX_MS, see sl_config_load_within.
 */
struct sl_config *sl_config_load(const char *path, char **errors);

/*
 * sl_config_load within `time_max_ms` of wall-clock time. The instruction
 * budget cannot see time spent inside C (a pattern that backtracks in the
 * string library), so the conf is first checked in a child process that is
 * killed at the deadline; it hands back the bytes it read (the conf and its
 * included files), which this process then loads again without the disk:
 * the same bytes, the same work. A conf that runs out of time is refused
 * with "path: conf still running after N ms ...". Blocks the calling thread
 * only, for at most the bound (plus this process's own load).
 */
struct sl_config *sl_config_load_within(const char *path, uint64_t time_max_ms,
                                        char **errors);
/* argv[1] of the process sl_config_load_within starts to check a conf. */
#define SL_CONF_CHECK_ARG "--conf-check-child"
/* In main, first: says this process is sluice, so that conf checks exec it
 * again (other programs, the tests, check in the forked child itself); when
 * argv is such a check (SL_CONF_CHECK_ARG FD PATH MS), runs it and never
 * returns; -1 otherwise. */
int sl_config_check_child(int argc, char **argv);
void sl_config_free(struct sl_config *cfg);

/*
 * Writes cfg as conf text (sluice -T): every key with its value, defaults
 * included, in a form that loads again to the same config. Passwords in
 * store.url are masked. Key and cost functions are printed from their
 * source text, with the locals they use; the conf runs again in a sandbox
 * to find them. Returns 0; -1 with the reason in err when the conf does not
 * run again or a function cannot be printed (it is written as an error()
 * call naming its file:line, so the text refuses to load; the rest is
 * written all the same).
 */
int sl_config_dump(const struct sl_config *cfg, FILE *out, char *err, size_t err_size);

/* Parses "250ms", "10s", "1m", "2h" into milliseconds; -1 on a bad string. */
int sl_config_parse_duration(const char *text, uint64_t *ms);
/* Parses "512", "16k", "8m", "1g" (powers of 1024) into bytes; -1 on a bad string. */
int sl_config_parse_size(const char *text, uint64_t *bytes);

/* Whether the limit runs conf code per request (a key function or a cost
 * function): only those need a worker's Lua state. */
bool sl_limit_uses_lua(const struct sl_limit_conf *limit);

#endif
