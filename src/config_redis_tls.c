/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The redis store's credentials and TLS options: store.password_file, read
 * at every load so that a reload picks up a rotated password, and the
 * checks that tie them to store.url. Nothing here prints a password: errors
 * name the file, never its content, and URLs are shown masked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "util/alloc.h"
#include "util/redis_url.h"
#include "util/secret.h"

/* Read now, at every load: a password that cannot be used is an error of
 * the conf, at the line that names the file. */
bool
sl_conf_set_store_password_file(struct loader *ld, void *obj, int idx)
{
    struct sl_store_conf *s = obj;
    const char *path = sl_conf_get_string(ld, idx, NULL);
    char why[160];
    char *password;

    if (path == NULL)
        return false;
    if (sl_secret_read(path, &password, why, sizeof(why)) == -1) {
        sl_conf_fail_value(ld, idx, "%s", why);
        return false;
    }
    free(s->password_file);
    s->password_file = sl_xstrdup(path);
    sl_secret_free(s->password);
    s->password = password;
    return true;
}

/* One place for a password: in the url, or in password_file. */
static void
check_password(struct loader *ld, const struct sl_store_conf *s, const struct sl_redis_url *u)
{
    if (s->password_file != NULL && u->password != NULL) {
        sl_conf_push_key(ld, "password_file");
        fail(ld, "the url has a password too (keep it in one place: remove it from the url)");
        sl_conf_pop_key(ld);
    } else if (s->password_file == NULL && u->user != NULL && u->password == NULL) {
        sl_conf_push_key(ld, "url");
        fail(ld, "url: user without a password (write user:password@, or set password_file)");
        sl_conf_pop_key(ld);
    }
}

bool
sl_conf_check_store_redis(struct loader *ld, const struct sl_store_conf *s)
{
    struct sl_redis_url u;
    size_t nerrs = ld->nerrs;
    char why[200];

    if (s->url == NULL)
        return true;
    /* the url passed its own check when it was set */
    if (sl_redis_url_parse_flags(s->url, SL_REDIS_URL_PASSWORD_LATER, &u, why, sizeof(why)) != 0)
        return true;
    check_password(ld, s, &u);
    sl_redis_url_fini(&u);
    return ld->nerrs == nerrs;
}
