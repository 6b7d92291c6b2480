/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The idempotency records in Redis: one script, three modes, each one
 * atomic step on one key. The value is "C" + token for a claim, "R" +
 * fingerprint + response for a record, each with its PX expiry (the claim's
 * lock, the record's ttl). Only the claim's holder, by its token, completes
 * or releases it, so a claim that expired and was taken again is never
 * overwritten by a late first holder.
 *
 * Sent with EVAL: the script is some 600 bytes more per command, against
 * an EVALSHA that needs a NOSCRIPT round trip after every Redis restart or
 * SCRIPT FLUSH; with one command per non-idempotent request carrying a key,
 * the bytes are the cheaper side (docs/idempotency.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "sluice/idem.h"
#include "sluice/metrics.h"
#include "sluice/store.h"
#include "util/alloc.h"

static const char script[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if ARGV[1] == 'claim' then\n"
    "  if not v then\n"
    "    redis.call('SET', KEYS[1], 'C' .. ARGV[2], 'PX', ARGV[3])\n"
    "    return 'C'\n"
    "  end\n"
    "  if string.sub(v, 1, 1) == 'C' then return 'I' end\n"
    "  return v\n"
    "end\n"
    "if v ~= 'C' .. ARGV[2] then return 0 end\n"
    "if ARGV[1] == 'complete' then\n"
    "  redis.call('SET', KEYS[1], 'R' .. ARGV[4], 'PX', ARGV[3])\n"
    "else\n"
    "  redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 1\n";

static int
send(struct sl_store *store, const char *mode, const char *name, size_t name_len,
     const uint8_t *token, uint64_t ms, const char *data, size_t data_len,
     sl_store_reply_cb *cb, void *arg)
{
    char msbuf[24];
    const char *argv[8] = { "EVAL", script, "1", name, mode, (const char *)token, msbuf, data };
    size_t lens[8] = { 4, sizeof(script) - 1, 1, name_len, strlen(mode), SL_IDEM_TOKEN_LEN, 0,
                       data_len };

    lens[6] = (size_t)snprintf(msbuf, sizeof(msbuf), "%llu", (unsigned long long)ms);
    return sl_store_redis_call(store, name, name_len, data != NULL ? 8 : 7, argv, lens, cb, arg);
}

int
sl_idem_redis_claim(struct sl_store *store, const char *name, size_t name_len,
                    const uint8_t *token, uint64_t lock_ms, sl_store_reply_cb *cb, void *arg)
{
    return send(store, "claim", name, name_len, token, lock_ms, NULL, 0, cb, arg);
}

enum sl_idem_result
sl_idem_redis_claim_result(const struct redisReply *reply,
                           const struct sl_idem_record **record)
{
    struct sl_idem_record *rec;

    *record = NULL;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING || reply->len < 1)
        return SL_IDEM_ERROR;
    if (reply->len == 1 && reply->str[0] == 'C')
        return SL_IDEM_CLAIMED;
    if (reply->len == 1 && reply->str[0] == 'I')
        return SL_IDEM_IN_FLIGHT;
    if (reply->str[0] != 'R' || reply->len < 1 + SL_SHA256_LEN)
        return SL_IDEM_ERROR;
    rec = sl_idem_record_new(reply->len - 1 - SL_SHA256_LEN);
    memcpy(rec->fingerprint, reply->str + 1, SL_SHA256_LEN);
    memcpy(rec->response, reply->str + 1 + SL_SHA256_LEN, rec->len);
    *record = rec;
    return SL_IDEM_DONE;
}

static void
completed(void *arg, const struct redisReply *reply)
{
    bool ok = reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;

    sl_metrics_idem(arg, ok ? SL_METRICS_IDEM_STORED : SL_METRICS_IDEM_RELEASED);
}

static void
ignored(void *arg, const struct redisReply *reply)
{
    (void)arg;
    (void)reply;
}

void
sl_idem_redis_complete(struct sl_store *store, const char *name, size_t name_len,
                       const uint8_t *token, const uint8_t *fingerprint, const char *response,
                       size_t len, uint64_t ttl_ms, struct sl_metrics_worker *metrics)
{
    /* "R" is the script's; fingerprint and response go as one argument */
    char *data = sl_xmalloc(SL_SHA256_LEN + len);

    memcpy(data, fingerprint, SL_SHA256_LEN);
    memcpy(data + SL_SHA256_LEN, response, len);
    if (send(store, "complete", name, name_len, token, ttl_ms, data, SL_SHA256_LEN + len,
             completed, metrics)
        != 0)
        sl_metrics_idem(metrics, SL_METRICS_IDEM_RELEASED); /* the claim's lock ends it */
    free(data);
}

void
sl_idem_redis_release(struct sl_store *store, const char *name, size_t name_len,
                      const uint8_t *token)
{
    /* a claim not released here (Redis away) ends with its lock */
    (void)send(store, "release", name, name_len, token, 0, NULL, 0, ignored, NULL);
}
