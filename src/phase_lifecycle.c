/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The version policy phase: routes that end. A route with a `sunset` says so
 * on every response from the start (Sunset, RFC 8594, and Link rel="sunset");
 * from its `deprecation` date on it also says Deprecation (RFC 9745, a
 * structured-field Date, "@" and Unix seconds) and Link rel="deprecation".
 * After the sunset, and inside a brownout window before it, the route answers
 * 410 Gone itself with a problem+json body naming the migration link: the
 * upstream is never called. It runs before the limits, so a 410 spends no
 * tokens (docs/api-lifecycle.md says why). Every request is counted by
 * consumer for the route's owner (sl_metrics_consumer) and the access log.
 *
 * Dates are compared with the wall clock (sl_clock_wall_at): they are
 * calendar dates written by people, not durations.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reqfield.h"
#include "sluice/accesslog.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/metrics.h"
#include "sluice/phase.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/datetime.h"
#include "util/sha256.h"
#include "util/topk.h"

#define CONSUMER_MAX SL_TOPK_KEY_MAX
#define BODY_MAX 2048 /* a link is at most 1024 bytes; the rest is short */
#define MAX_SEE 1040  /* "; see " and the link */

struct lifecycle_conf {
    const struct sl_lifecycle_conf *lc;
    struct sl_metrics_worker *metrics;
    unsigned route_slot;
    bool is_secret;            /* the consumer selector reads a credential: hash it */
    char *sunset_lines;        /* Sunset and Link rel="sunset"; NULL without a sunset */
    size_t sunset_len;
    char *deprecation_lines;   /* Deprecation and Link rel="deprecation" */
    size_t deprecation_len;
};

struct lifecycle_state {
    const char *word;   /* "active", "deprecated", "brownout", "sunset" */
    const char *reason; /* set when it answered */
    char consumer[CONSUMER_MAX + 1];
};

/* Where a route stands at `now`; *brownout is the window we are in. */
enum stage { STAGE_ACTIVE, STAGE_DEPRECATED, STAGE_BROWNOUT, STAGE_SUNSET };

static enum stage
stage_at(const struct sl_lifecycle_conf *lc, int64_t now, const struct sl_brownout **brownout)
{
    *brownout = NULL;
    if (lc->has_sunset && now >= lc->sunset_s)
        return STAGE_SUNSET;
    for (size_t i = 0; i < lc->nbrownouts; i++) {
        if (now >= lc->brownouts[i].from_s && now < lc->brownouts[i].to_s) {
            *brownout = &lc->brownouts[i];
            return STAGE_BROWNOUT;
        }
    }
    if (lc->has_deprecation && now >= lc->deprecation_s)
        return STAGE_DEPRECATED;
    return STAGE_ACTIVE;
}

static const char *const stage_words[] = { "active", "deprecated", "brownout", "sunset" };

/* ---- consumers ------------------------------------------------------------ */

/* A name that carries a credential by convention. Hashing hides the secret,
 * not who it is: an owner hashes the keys they issued to match them. */
static bool
is_secret_name(const char *name)
{
    static const char *const words[] = { "auth", "token", "secret", "key", "session",
                                         "password", "cookie", "signature" };

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcasestr(name, words[i]) != NULL) /* query names keep their case */
            return true;
    }
    return false;
}

static bool
is_secret_selector(const struct sl_key_part *p)
{
    switch (p->kind) {
    case SL_KEY_COOKIE:
        return true; /* cookies are sessions more often than not */
    case SL_KEY_HEADER:
    case SL_KEY_QUERY:
        return is_secret_name(p->name);
    default:
        return false;
    }
}

/* A value that could pass for one of our own labels, or that a label
 * should not carry as it is. */
static bool
needs_hash(const char *v, size_t len)
{
    if (len > CONSUMER_MAX || v[0] == '(' || (len == 5 && memcmp(v, "other", 5) == 0))
        return true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return true;
    }
    return false;
}

/* The consumer as metrics and the access log show it: the value, "(none)",
 * or "sha256:" and 16 hex digits of the value's SHA-256. */
static void
consumer_label(const struct lifecycle_conf *conf, const struct sl_request *req,
               char out[CONSUMER_MAX + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t digest[SL_SHA256_LEN];
    const char *v = NULL;
    size_t len = 0;

    if (!sl_reqfield_selector(req, &conf->lc->consumer, &v, &len) || len == 0) {
        memcpy(out, "(none)", sizeof("(none)"));
        return;
    }
    if (!conf->is_secret && !needs_hash(v, len)) {
        memcpy(out, v, len);
        out[len] = '\0';
        return;
    }
    sl_sha256(v, len, digest);
    memcpy(out, "sha256:", 7);
    for (size_t i = 0; i < 8; i++) {
        out[7 + 2 * i] = hex[digest[i] >> 4];
        out[8 + 2 * i] = hex[digest[i] & 15];
    }
    out[23] = '\0';
}

/* ---- setup ---------------------------------------------------------------- */

static char *
lines_printf(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *
lines_printf(size_t *len, const char *fmt, ...)
{
    char buf[BODY_MAX];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    *len = n < 0 ? 0 : (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    return sl_xstrndup(buf, *len);
}

static bool
lifecycle_setup(const struct sl_phase_env *env, const struct sl_route_conf *route, void **conf)
{
    const struct sl_lifecycle_conf *lc = &route->lifecycle;
    struct lifecycle_conf *c;
    char date[SL_IMF_FIXDATE_SIZE];
    const char *link = lc->link != NULL ? lc->link : "";

    if (!sl_route_has_lifecycle(route))
        return false;
    c = sl_xcalloc(1, sizeof(*c));
    c->lc = lc;
    c->metrics = env->metrics;
    c->route_slot = env->route_slots[route - env->cfg->routes];
    c->is_secret = is_secret_selector(&lc->consumer);
    if (lc->has_sunset) {
        sl_datetime_format_imf(lc->sunset_s, date);
        c->sunset_lines = lines_printf(&c->sunset_len, "Sunset: %s\r\n%s%s%s", date,
                                       *link ? "Link: <" : "", link,
                                       *link ? ">; rel=\"sunset\"\r\n" : "");
    }
    if (lc->has_deprecation)
        c->deprecation_lines = lines_printf(
            &c->deprecation_len, "Deprecation: @%" PRId64 "\r\n%s%s%s", lc->deprecation_s,
            *link ? "Link: <" : "", link, *link ? ">; rel=\"deprecation\"\r\n" : "");
    *conf = c;
    return true;
}

static void
lifecycle_teardown(void *conf)
{
    struct lifecycle_conf *c = conf;

    free(c->sunset_lines);
    free(c->deprecation_lines);
    free(c);
}

/* ---- requests ------------------------------------------------------------- */

/* 410 with a problem+json body (RFC 9457, about:blank and extension members).
 * Nothing here comes from the request; the link is URI characters only. */
static void
answer_gone(struct sl_phase_run *run, const struct sl_lifecycle_conf *lc,
            const struct sl_brownout *brownout)
{
    char body[BODY_MAX], sunset[SL_RFC3339_SIZE], until[SL_RFC3339_SIZE], see[MAX_SEE];
    int n;

    sl_datetime_format_rfc3339(lc->sunset_s, sunset);
    snprintf(see, sizeof(see), "%s%s", lc->link ? "; see " : "", lc->link ? lc->link : "");
    if (brownout != NULL) {
        sl_datetime_format_rfc3339(brownout->to_s, until);
        /* a 410 is cacheable by default (RFC 9110 15.5.11): not this one */
        sl_phase_attach(run, SL_LIT("Cache-Control: no-store\r\n"));
        n = snprintf(body, sizeof(body),
                     "{\"type\":\"about:blank\",\"title\":\"Gone\",\"status\":410,"
                     "\"detail\":\"this API is unavailable during a planned brownout until %s, "
                     "and for good from %s%s\",\"brownout_until\":\"%s\",\"sunset\":\"%s\"",
                     until, sunset, see, until, sunset);
    } else {
        n = snprintf(body, sizeof(body),
                     "{\"type\":\"about:blank\",\"title\":\"Gone\",\"status\":410,"
                     "\"detail\":\"this API was retired on %s%s\",\"sunset\":\"%s\"",
                     sunset, see, sunset);
    }
    if (lc->link != NULL)
        n += snprintf(body + n, sizeof(body) - (size_t)n, ",\"link\":\"%s\"", lc->link);
    n += snprintf(body + n, sizeof(body) - (size_t)n, "}");
    sl_phase_answer(run, 410, body, (size_t)n);
}

static void
lifecycle_request(struct sl_phase_run *run, void *conf, void *state)
{
    const struct lifecycle_conf *c = conf;
    struct lifecycle_state *st = state;
    const struct sl_brownout *brownout;
    int64_t now = (int64_t)floor(sl_clock_wall_at(sl_clock_cached_us()));
    enum stage stage = stage_at(c->lc, now, &brownout);

    st->word = stage_words[stage];
    consumer_label(c, sl_phase_request(run), st->consumer);
    sl_metrics_consumer(c->metrics, c->route_slot, st->consumer, strlen(st->consumer));
    if (c->sunset_lines != NULL)
        sl_phase_attach(run, c->sunset_lines, c->sunset_len);
    if (c->deprecation_lines != NULL && c->lc->has_deprecation && now >= c->lc->deprecation_s)
        sl_phase_attach(run, c->deprecation_lines, c->deprecation_len);
    if (stage == STAGE_SUNSET || stage == STAGE_BROWNOUT) {
        st->reason = stage == STAGE_SUNSET ? "sunset" : "brownout";
        answer_gone(run, c->lc, brownout);
        return;
    }
    sl_phase_pass(run);
}

static void
lifecycle_end(struct sl_phase_run *run, void *conf, void *state, const char *reason,
              struct sl_access_entry *log)
{
    const struct lifecycle_state *st = state;

    (void)run;
    (void)conf;
    if (log == NULL)
        return;
    log->lifecycle = st->word;
    log->consumer = st->consumer;
    if (st->reason != NULL && reason == NULL)
        log->reason = st->reason;
}

const struct sl_phase sl_phase_lifecycle = {
    .name = "lifecycle",
    .state_size = sizeof(struct lifecycle_state),
    .setup = lifecycle_setup,
    .teardown = lifecycle_teardown,
    .on_request = lifecycle_request,
    .on_end = lifecycle_end,
};
