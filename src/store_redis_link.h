/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * One connection to one Redis, the bytes both ways, for the redis store:
 * it owns the socket (TCP or unix, plaintext or TLS through OpenSSL on the
 * non-blocking socket), writes the commands it is handed as they are, in
 * one write per loop pass, feeds what it reads to a hiredis redisReader and
 * hands each reply to the callback of the oldest command still owed one
 * (RESP replies come in the order of the commands).
 *
 * It replaces hiredis's redisAsyncContext, which reads and writes the fd
 * itself and so cannot carry TLS in Debian's hiredis 0.14: plaintext and
 * TLS take one code path, and only the lowest read and write differ. It
 * knows nothing of the store's scripts or policies, and one store may hold
 * several (Sentinel and Cluster will: addresses come at run time, one link
 * per node).
 *
 * Callbacks. Every command's callback runs exactly once: with its reply
 * (freed by the link once the callback returns), or with a NULL reply when
 * the link is freed before the reply came. When the link fails (connect
 * refused, closed, a TLS or protocol error) its down callback runs once;
 * the owner must then free it (it sends nothing more). sl_redis_link_free
 * is safe from inside any of the link's callbacks: the link goes when the
 * stack unwinds, and the NULL replies are handed out then.
 */
#ifndef SL_STORE_REDIS_LINK_H
#define SL_STORE_REDIS_LINK_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/read.h>

struct event_base;
struct ssl_ctx_st;
struct sl_redis_link;

/* Where to connect and how. The strings are copied. */
struct sl_redis_target {
    const char *host;              /* TCP: a name or an address; NULL for a unix socket */
    int port;
    const char *path;              /* unix socket path; NULL for TCP */
    struct ssl_ctx_st *ssl_ctx;    /* NULL: plaintext; else TLS with it (up-referenced) */
    const char *server_name;       /* TLS: SNI and the name or address checked; NULL: host */
    bool is_verify;                /* TLS: check the peer's certificate chain and name */
};

typedef void sl_redis_reply_cb(struct sl_redis_link *link, void *reply, void *privdata);
typedef void sl_redis_down_cb(struct sl_redis_link *link, void *arg, const char *why);

/*
 * Starts connecting to `t` on `base`. Replies are built with `fn` (its
 * privdata `fn_privdata`; NULL: hiredis's own functions, redisReply);
 * commands waiting to be written may hold at most out_max bytes. Returns
 * the link, or NULL with the reason in err when the connection fails at
 * once (a name that does not resolve, nothing listening on a unix path).
 * Never calls back before it returns.
 */
struct sl_redis_link *sl_redis_link_new(struct event_base *base, const struct sl_redis_target *t,
                                        redisReplyObjectFunctions *fn, void *fn_privdata,
                                        size_t out_max, sl_redis_down_cb *down, void *arg,
                                        char *err, size_t err_size);

/*
 * Queues one command, RESP-encoded already (cmd, len), or given as argv;
 * cb(link, reply, privdata) gets its reply. Commands queued before the
 * connection is ready go first, in order, once it is. 0, or -1 (nothing
 * queued, cb never called) when the link is down or past out_max.
 */
int sl_redis_link_send(struct sl_redis_link *link, const char *cmd, size_t len,
                       sl_redis_reply_cb *cb, void *privdata);
int sl_redis_link_send_argv(struct sl_redis_link *link, int argc, const char **argv,
                            const size_t *lens, sl_redis_reply_cb *cb, void *privdata);

/* Closes the connection and frees the link; see the header comment. NULL
 * is a no-op. */
void sl_redis_link_free(struct sl_redis_link *link);

/* Replies owed (commands sent or queued, not answered yet). */
size_t sl_redis_link_pending(const struct sl_redis_link *link);

#endif
