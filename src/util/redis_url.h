/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The one parser of Redis URLs: config uses it to validate store.url (and to
 * word its error), store_redis to get its connect parameters, so a URL that
 * `sluice -t` accepts is one the store can connect with. Accepted forms:
 *
 *   redis://host[:port][/db]                      port 6379, db 0 by default
 *   redis://[user]:password@host[:port][/db]      AUTH password, or AUTH user password
 *   redis://user@host[:port][/db]                 the user's password comes from elsewhere
 *                                                 (store.password_file; see SL_REDIS_URL_PASSWORD_LATER)
 *   redis://[::1]:6379/0                          IPv6 literal in brackets
 *   rediss://...                                  the same as redis://, over TLS
 *   unix:/path/to.sock[?db=N&user=U&password=P]
 *   unix://[[user]:password@]/path/to.sock[?db=N] as redis-py and redis-cli -u write it
 *   redis-sentinel://[userinfo@]ip[:port][,ip[:port]...]/NAME[/db]
 *                                                 the master NAME, asked of these Sentinels
 *                                                 (port 26379 by default; addresses or host
 *                                                 names, at most SL_REDIS_SENTINELS_MAX); the
 *                                                 userinfo is the master's, as in redis://
 *   redis-cluster://[userinfo@]host[:port][,host[:port]...][/0]
 *                                                 a Redis Cluster, found from these seed nodes
 *                                                 (port 6379 by default; addresses or host
 *                                                 names, at most SL_REDIS_SEEDS_MAX); the
 *                                                 userinfo is every node's; db 0 only
 *   rediss-cluster://...                          the same, over TLS
 *
 * user, password and the socket path are %-decoded (%00 is refused).
 */
#ifndef SL_UTIL_REDIS_URL_H
#define SL_UTIL_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define SL_REDIS_DEFAULT_PORT 6379
#define SL_REDIS_SENTINEL_PORT 26379
#define SL_REDIS_SENTINELS_MAX 16
#define SL_REDIS_MASTER_NAME_MAX 128
#define SL_REDIS_SEEDS_MAX 16

struct sl_redis_addr {
    char *host;     /* an address (IPv6 without brackets) or a host name */
    int port;
};

struct sl_redis_url {
    bool is_unix;
    bool is_tls;    /* rediss://, rediss-cluster:// */
    char *host;     /* TCP: a host name or an IPv6 literal without brackets; else NULL */
    int port;       /* TCP: 1..65535; 0 for a unix socket */
    char *path;     /* unix socket path; NULL for TCP */
    char *user;     /* NULL: AUTH with the password alone */
    char *password; /* NULL: no AUTH */
    long db;        /* SELECT on connect when not 0 */
    /* redis-sentinel://: host and path are NULL, the master is asked of these */
    bool is_sentinel;
    char *master_name;
    struct sl_redis_addr *sentinels;
    size_t nsentinels;
    /* redis-[s]cluster://: host and path are NULL, db is 0, the slot map is
     * asked of these seeds */
    bool is_cluster;
    struct sl_redis_addr *seeds;
    size_t nseeds;
};

/* Flags of sl_redis_url_parse_flags. */
#define SL_REDIS_URL_PASSWORD_LATER 0x1 /* a user without a password is fine: the caller
                                           supplies the password (from a file) */

/*
 * Parses `url` into *out, whose strings are new and owned by it (release with
 * sl_redis_url_fini). Returns 0, or -1 with *out zeroed and a short reason in
 * err, such as `bad port "0" (use 1 to 65535)`; the reason never quotes the
 * user or the password. A user without a password is refused (AUTH needs
 * one) unless flags has SL_REDIS_URL_PASSWORD_LATER.
 */
int sl_redis_url_parse_flags(const char *url, unsigned flags, struct sl_redis_url *out, char *err,
                             size_t err_size);
/* sl_redis_url_parse_flags with no flags. */
int sl_redis_url_parse(const char *url, struct sl_redis_url *out, char *err, size_t err_size);

/*
 * A new copy of `url` (one that parses) with its password replaced by
 * "********", in the form it was written: the userinfo of redis://,
 * rediss://, redis-sentinel://, redis[s]-cluster:// and unix:// URLs, the
 * password= parameter of a unix: query. The masked URL still parses. For
 * every place a URL is shown: logs, errors, sluice -T.
 */
char *sl_redis_url_mask(const char *url);

/* Frees the strings of *u and zeroes it; a zeroed struct is fine. */
void sl_redis_url_fini(struct sl_redis_url *u);

#endif
