/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The conf's lease settings (docs/rate-limiting.md, "Leases"): the store-wide
 * `store.lease = { ttl = ..., max_share = ... }` and, per limit,
 * `lease = true`. Only reading and checking the values; the leases
 * themselves are limiter_lease.c's. With the embedded store a limit's
 * `lease` is accepted and has no effect: its checks cost no round trip, so
 * there is nothing to save (a conf may switch stores between environments).
 */
#include "config_int.h"

#include <stddef.h>

static const struct opt lease_opts[] = {
    ROW_DURATION("ttl", "250ms", 10, 10 * MS_SECOND, struct sl_store_conf, lease_ttl_ms),
    ROW_NUMBER("max_share", 0, true, 1, struct sl_store_conf, lease_max_share),
};

void
sl_conf_lease_defaults(struct sl_store_conf *store)
{
    sl_conf_defaults(lease_opts, NOPTS(lease_opts), store);
    store->lease_max_share = 0.1; /* OPT_NUMBER rows have no default text */
}

const char **
sl_conf_lease_names(void)
{
    static const char *names[NOPTS(lease_opts) + 1];

    for (size_t i = 0; i < NOPTS(lease_opts); i++)
        names[i] = lease_opts[i].name;
    return names;
}

bool
sl_conf_set_store_lease(struct loader *ld, void *obj, int idx)
{
    const char *ctx = ld->ctx;
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { ttl = \"250ms\", max_share = 0.1 }"))
        return false;
    ld->ctx = "store.lease";
    w = sl_conf_walk(ld, idx, lease_opts, NOPTS(lease_opts), obj);
    ld->ctx = ctx;
    return w.bad == 0;
}
