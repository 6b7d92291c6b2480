/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * POST /cache/purge on the admin listener (see admin_cache.h): the JSON
 * body read with cJSON, the purge done in every route's store through the
 * cache registry, the count answered.
 */
#include "sluice/admin_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>

#include "sluice/admin_buckets.h"
#include "sluice/cache.h"
#include "util/alloc.h"

#define BODY_MAX 4096u

int
sl_admin_cache_parse(const char *body, size_t len, char **value, size_t *value_len,
                     int *is_prefix, char *err, size_t err_size)
{
    cJSON *doc = cJSON_ParseWithLength(body, len);
    const cJSON *key, *prefix, *v;
    int rc = -1;

    *value = NULL;
    if (doc == NULL || !cJSON_IsObject(doc)) {
        snprintf(err, err_size, "the body must be a JSON object {\"key\": ...} or "
                                "{\"prefix\": ...}");
        goto done;
    }
    key = cJSON_GetObjectItemCaseSensitive(doc, "key");
    prefix = cJSON_GetObjectItemCaseSensitive(doc, "prefix");
    if ((key == NULL) == (prefix == NULL) || cJSON_GetArraySize(doc) != 1) {
        snprintf(err, err_size, "give exactly one of \"key\" and \"prefix\"");
        goto done;
    }
    v = key != NULL ? key : prefix;
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        snprintf(err, err_size, "\"%s\" must be a non-empty string", key ? "key" : "prefix");
        goto done;
    }
    *value_len = strlen(v->valuestring);
    *value = sl_xstrndup(v->valuestring, *value_len);
    *is_prefix = prefix != NULL;
    rc = 0;
done:
    cJSON_Delete(doc);
    return rc;
}

static void
reply(struct evhttp_request *req, int status, const char *type, const char *body)
{
    struct evbuffer *out = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evbuffer_add(out, body, strlen(body));
    evhttp_send_reply(req, status, NULL, out);
    evbuffer_free(out);
}

static void
reply_problem(struct evhttp_request *req, int status, const char *title, const char *detail)
{
    char *body = sl_admin_problem_json(status, title, detail);

    reply(req, status, "application/problem+json", body);
    free(body);
}

void
sl_admin_cache_purge(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char err[160], out[64];
    char *value;
    size_t value_len;
    int is_prefix;
    size_t n;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        reply_problem(req, 405, "Method Not Allowed", "purge with POST");
        return;
    }
    if (len > BODY_MAX) {
        reply_problem(req, 400, "Bad Request", "the body is too large");
        return;
    }
    if (sl_admin_cache_parse((const char *)evbuffer_pullup(in, -1), len, &value, &value_len,
                             &is_prefix, err, sizeof(err)) != 0) {
        reply_problem(req, 400, "Bad Request", err);
        return;
    }
    n = sl_cache_purge_all(value, value_len, is_prefix != 0);
    free(value);
    snprintf(out, sizeof(out), "{\"purged\":%zu}\n", n);
    reply(req, 200, "application/json", out);
}
