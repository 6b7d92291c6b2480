/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The redis store's credentials and TLS options: store.password_file, read
 * at every load so that a reload picks up a rotated password; store.tls,
 * whose files are loaded into an OpenSSL context at every load (so that
 * `sluice -t` checks them and a reload picks up renewed certificates); and
 * the checks that tie them to store.url. Nothing here prints a password:
 * errors name the file, never its content, and URLs are shown masked.
 *
 * One SSL_CTX per config generation: made here, shared by the workers'
 * connections (OpenSSL allows a context to be used from many threads once
 * it is set up; each connection makes its own SSL from it and holds a
 * reference), freed with the config.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config_int.h"
#include "util/alloc.h"
#include "util/redis_url.h"
#include "util/secret.h"

/* Read now, at every load: a password that cannot be used is an error of
 * the conf, at the line that names the file, and a rotated one comes with a
 * reload. */
bool
sl_conf_read_password_file(struct loader *ld, int idx, char **file, char **password)
{
    const char *path = sl_conf_get_string(ld, idx, NULL);
    char why[160];
    char *secret;

    if (path == NULL)
        return false;
    if (sl_secret_read(path, &secret, why, sizeof(why)) == -1) {
        sl_conf_fail_value(ld, idx, "%s", why);
        return false;
    }
    free(*file);
    *file = sl_xstrdup(path);
    sl_secret_free(*password);
    *password = secret;
    return true;
}

bool
sl_conf_set_store_password_file(struct loader *ld, void *obj, int idx)
{
    struct sl_store_conf *s = obj;

    return sl_conf_read_password_file(ld, idx, &s->password_file, &s->password);
}

/* ---- store.tls ------------------------------------------------------------ */

/* A DNS name or an address: what SNI and the certificate check take. */
static bool
set_server_name(struct loader *ld, void *obj, int idx)
{
    struct sl_redis_tls_conf *tls = obj;
    size_t len;
    const char *name = sl_conf_get_string(ld, idx, &len);

    if (name == NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(c == '.' || c == '-' || c == '_' || c == ':' || (c >= '0' && c <= '9')
              || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))) {
            sl_conf_fail_value(ld, idx, "not a host name or an address");
            return false;
        }
    }
    if (len > 253) {
        sl_conf_fail_value(ld, idx, "longer than 253 bytes");
        return false;
    }
    free(tls->server_name);
    tls->server_name = sl_xstrdup(name);
    return true;
}

static const struct opt tls_opts[] = {
    ROW_STRING("ca_file", NULL, struct sl_redis_tls_conf, ca_file),
    ROW_STRING("cert_file", NULL, struct sl_redis_tls_conf, cert_file),
    ROW_STRING("key_file", NULL, struct sl_redis_tls_conf, key_file),
    ROW_CUSTOM("server_name", set_server_name),
    ROW_BOOL("verify", "true", struct sl_redis_tls_conf, is_verify),
};

void
sl_conf_redis_tls_defaults(struct sl_redis_tls_conf *tls)
{
    sl_conf_defaults(tls_opts, NOPTS(tls_opts), tls);
}

void
sl_conf_redis_tls_fini(struct sl_redis_tls_conf *tls)
{
    free(tls->ca_file);
    free(tls->cert_file);
    free(tls->key_file);
    free(tls->server_name);
    SSL_CTX_free(tls->ssl_ctx);
    *tls = (struct sl_redis_tls_conf){ 0 };
}

bool
sl_conf_set_store_tls(struct loader *ld, void *obj, int idx)
{
    struct sl_store_conf *s = obj;
    const char *ctx = ld->ctx;
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { ca_file = ..., verify = true, ... }"))
        return false;
    ld->ctx = "store.tls";
    w = sl_conf_walk(ld, idx, tls_opts, NOPTS(tls_opts), &s->tls);
    ld->ctx = ctx;
    s->tls.is_set = true;
    return w.bad == 0;
}

/* "<what> <file>: <OpenSSL's first error>" at the key of that file. */
static void
fail_ssl(struct loader *ld, const char *key, const char *what, const char *file)
{
    char buf[256];
    unsigned long e = ERR_get_error();

    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    else
        snprintf(buf, sizeof(buf), "unknown error");
    ERR_clear_error();
    sl_conf_push_key(ld, "tls");
    sl_conf_push_key(ld, key);
    fail(ld, "tls.%s \"%.200s\": %s: %s", key, file, what, buf);
    sl_conf_pop_key(ld);
    sl_conf_pop_key(ld);
}

/* The trust anchors: the ca_file's, or the system's. */
static bool
load_verify(struct loader *ld, SSL_CTX *ctx, const struct sl_redis_tls_conf *tls)
{
    if (tls->ca_file == NULL) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            fail_ssl(ld, "ca_file", "cannot load the system's trust store", "(default)");
            return false;
        }
        return true;
    }
    if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1) {
        fail_ssl(ld, "ca_file", "cannot load CA certificates", tls->ca_file);
        return false;
    }
    return true;
}

/* The client certificate and key, for mutual TLS: both or neither. */
static bool
load_identity(struct loader *ld, SSL_CTX *ctx, const struct sl_redis_tls_conf *tls)
{
    if ((tls->cert_file == NULL) != (tls->key_file == NULL)) {
        sl_conf_push_key(ld, "tls");
        sl_conf_push_key(ld, tls->cert_file == NULL ? "key_file" : "cert_file");
        fail(ld, "tls: cert_file and key_file go together (mutual TLS needs both)");
        sl_conf_pop_key(ld);
        sl_conf_pop_key(ld);
        return false;
    }
    if (tls->cert_file == NULL)
        return true;
    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1) {
        fail_ssl(ld, "cert_file", "cannot load the certificate", tls->cert_file);
        return false;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1) {
        fail_ssl(ld, "key_file", "cannot load the private key", tls->key_file);
        return false;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        fail_ssl(ld, "key_file", "the key does not match cert_file", tls->key_file);
        return false;
    }
    return true;
}

/* The context every connection of this config generation starts from:
 * TLS 1.2 or newer, the peer checked unless verify = false. */
static bool
build_ctx(struct loader *ld, struct sl_redis_tls_conf *tls)
{
    SSL_CTX *ctx;
    bool ok;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        fail_ssl(ld, "verify", "cannot create a TLS context", "");
        return false;
    }
    /* every bad file is reported, not only the first */
    ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1;
    ok = load_verify(ld, ctx, tls) && ok;
    ok = load_identity(ld, ctx, tls) && ok;
    if (!ok) {
        SSL_CTX_free(ctx);
        return false;
    }
    SSL_CTX_set_verify(ctx, tls->is_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    tls->ssl_ctx = ctx;
    return true;
}

/* ---- checks across the store's keys ----------------------------------------- */

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
sl_conf_check_store_redis(struct loader *ld, struct sl_store_conf *s)
{
    struct sl_redis_url u;
    size_t nerrs = ld->nerrs;
    char why[200];

    if (s->url == NULL || s->kind != SL_STORE_REDIS)
        return true;
    /* the url passed its own check when it was set */
    if (sl_redis_url_parse_flags(s->url, SL_REDIS_URL_PASSWORD_LATER, &u, why, sizeof(why)) != 0)
        return true;
    check_password(ld, s, &u);
    sl_conf_check_store_sentinel(ld, s, &u);
    if (s->tls.is_set && !u.is_tls) {
        sl_conf_push_key(ld, "tls");
        if (u.is_cluster)
            fail(ld, "tls is for a rediss-cluster:// url (write url = "
                     "\"rediss-cluster://host:port,host:port\")");
        else
            fail(ld, "tls is for a rediss:// url (write url = \"rediss://host:port\")");
        sl_conf_pop_key(ld);
    } else if (u.is_tls && ld->nerrs == nerrs) {
        (void)build_ctx(ld, &s->tls);
    }
    sl_redis_url_fini(&u);
    return ld->nerrs == nerrs;
}
