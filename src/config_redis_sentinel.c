/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * store.sentinel = { user = "...", password_file = "/path" }: how sluice
 * authenticates to the Sentinels of a redis-sentinel:// url (the master's
 * own credentials stay in the url's userinfo or store.password_file). The
 * password lives in a file only, read at every load like
 * store.password_file, and is never printed. The sentinels and the master
 * name are the url's (util/redis_url.c).
 */
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "util/alloc.h"
#include "util/redis_url.h"
#include "util/secret.h"

static bool
set_password_file(struct loader *ld, void *obj, int idx)
{
    struct sl_redis_sentinel_conf *sc = obj;

    return sl_conf_read_password_file(ld, idx, &sc->password_file, &sc->password);
}

static const struct opt sentinel_opts[] = {
    ROW_STRING("user", NULL, struct sl_redis_sentinel_conf, user),
    ROW_CUSTOM("password_file", set_password_file),
};

bool
sl_conf_set_store_sentinel(struct loader *ld, void *obj, int idx)
{
    struct sl_store_conf *s = obj;
    const char *ctx = ld->ctx;
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { user = ..., password_file = \"/path\" }"))
        return false;
    ld->ctx = "store.sentinel";
    w = sl_conf_walk(ld, idx, sentinel_opts, NOPTS(sentinel_opts), &s->sentinel);
    ld->ctx = ctx;
    s->sentinel.is_set = true;
    return w.bad == 0;
}

void
sl_conf_redis_sentinel_fini(struct sl_redis_sentinel_conf *sc)
{
    free(sc->user);
    free(sc->password_file);
    sl_secret_free(sc->password);
    *sc = (struct sl_redis_sentinel_conf){ 0 };
}

/* store.sentinel belongs to a redis-sentinel:// url, and a user needs a
 * password (Sentinel's AUTH takes one). */
void
sl_conf_check_store_sentinel(struct loader *ld, const struct sl_store_conf *s,
                             const struct sl_redis_url *u)
{
    if (!s->sentinel.is_set)
        return;
    sl_conf_push_key(ld, "sentinel");
    if (u->is_cluster)
        fail(ld, "sentinel is for a redis-sentinel:// url (a cluster url finds its nodes "
                 "with CLUSTER SLOTS: remove the sentinel table)");
    else if (!u->is_sentinel)
        fail(ld, "sentinel is for a redis-sentinel:// url (write url = "
                 "\"redis-sentinel://ip:26379,ip:26379/name\")");
    else if (s->sentinel.user != NULL && s->sentinel.password_file == NULL)
        fail(ld, "sentinel: user without a password (set password_file)");
    sl_conf_pop_key(ld);
}
