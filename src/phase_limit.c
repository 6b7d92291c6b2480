/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The limits phase: sl_limiter_check's decision as a phase. A refusal is
 * answered here (429, or 503 when the store failed and on_error = "deny")
 * with the limiter's header lines (Retry-After, RateLimit fields) and its
 * problem+json body; an admitted request passes with those lines attached
 * to whatever response it gets. With Server-Timing on for the route, the
 * limiter's share is attached too. The policy itself is limiter.c's.
 *
 * A DELAY decision (a limit's `delay`) parks the request on a timer of its
 * own until its tokens are due, then checks again; the limiter bounds how
 * many wait per worker and how long in all. Nothing is attached until the
 * last decision, so the client sees only that one's fields.
 *
 * Limits apply to cache hits too (this phase runs before the cache's); a
 * limit with cache_hits = false is left out for a request the route's cache
 * holds a fresh answer to, as the cache says when asked here.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "sluice/accesslog.h"
#include "sluice/cache.h"
#include "sluice/config.h"
#include "sluice/limiter.h"
#include "sluice/metrics.h"
#include "sluice/phase.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/timeval.h"

struct limit_state;

struct limit_conf {
    struct sl_limiter *limiter;
    struct event_base *base;
    const struct sl_route_conf *route;
    struct sl_metrics_worker *metrics;
    unsigned route_slot;
    struct limit_state *waiting; /* delayed requests of this route, for teardown */
    /* With a cache and a limit that says cache_hits = false: the route as
     * seen by a request the cache will answer, without those limits. */
    struct sl_cache *cache;
    struct sl_route_conf *hit_route;
};

struct limit_state {
    struct sl_phase_run *run;
    struct limit_conf *conf;
    const struct sl_route_conf *route; /* lc->route, or lc->hit_route for a cache hit */
    const char *outcome; /* static, from the decision */
    const char *reason;  /* why it answered, for the access log; NULL: it passed */
    double limiter_ms;
    bool is_checked;     /* some limit applied: limiter_ms means something */
    struct event *delay_timer; /* only while waiting out a delay */
    struct limit_state *next, *prev; /* conf->waiting */
    uint64_t wait_start_us;
    uint64_t waited_ms;
};

/* Every route: a route without limits still gets its "none" in the access
 * log and its (zero) limiter time in the metrics, as before phases. */
static bool
limit_setup(const struct sl_phase_env *env, const struct sl_route_conf *route, void **conf)
{
    struct limit_conf *lc = sl_xcalloc(1, sizeof(*lc));

    lc->limiter = env->limiter;
    lc->base = env->base;
    lc->route = route;
    lc->metrics = env->metrics;
    lc->route_slot = env->route_slots[route - env->cfg->routes];
    for (size_t i = 0; route->cache != NULL && i < route->nlimits; i++) {
        if (env->cfg->limits[route->limits[i]].is_cache_hits)
            continue;
        lc->hit_route = sl_xmalloc(sizeof(*lc->hit_route));
        *lc->hit_route = *route;
        lc->hit_route->limits = sl_xcalloc(route->nlimits, sizeof(*route->limits));
        lc->hit_route->nlimits = 0;
        for (size_t j = 0; j < route->nlimits; j++) {
            if (env->cfg->limits[route->limits[j]].is_cache_hits)
                lc->hit_route->limits[lc->hit_route->nlimits++] = route->limits[j];
        }
        lc->cache = sl_phase_cache_store(route);
        break;
    }
    *conf = lc;
    return true;
}

static void
waiting_unlink(struct limit_state *st)
{
    struct limit_conf *lc = st->conf;

    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        lc->waiting = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    st->next = st->prev = NULL;
    event_del(st->delay_timer);
    free(st->delay_timer);
    st->delay_timer = NULL;
}

/* Only a request that ended can still wait when its generation goes (a
 * live one holds the generation); the limiter is gone by then, so the wait
 * just ends. */
static void
limit_teardown(void *conf)
{
    struct limit_conf *lc = conf;

    while (lc->waiting != NULL) {
        struct limit_state *st = lc->waiting;
        waiting_unlink(st);
        sl_phase_pass(st->run);
    }
    if (lc->hit_route != NULL)
        free(lc->hit_route->limits);
    free(lc->hit_route);
    sl_cache_put(lc->cache);
    free(conf);
}

/* Server-Timing (W3C): the limiter's share; the upstream's is added by the
 * proxy to the response head. Attached, so local answers carry it too. */
static void
attach_server_timing(struct sl_phase_run *run, double limiter_ms)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "Server-Timing: limiter;dur=%.3f\r\n", limiter_ms);

    sl_phase_attach(run, text, (size_t)n);
}

static void on_decision(void *arg, const struct sl_decision *d);

static void
on_delay_over(evutil_socket_t fd, short what, void *arg)
{
    struct limit_state *st = arg;
    struct limit_conf *lc = st->conf;

    (void)fd;
    (void)what;
    waiting_unlink(st);
    sl_limiter_delay_end(lc->limiter);
    st->waited_ms += (sl_clock_now_us() - st->wait_start_us) / 1000;
    if (sl_phase_is_abandoned(st->run)) {
        sl_phase_pass(st->run);
        return;
    }
    sl_limiter_recheck(lc->limiter, st->route, sl_phase_request(st->run), st->waited_ms,
                       on_decision, st);
}

static void
start_delay(struct limit_state *st, uint64_t wait_ms)
{
    struct limit_conf *lc = st->conf;
    struct timeval tv = sl_timeval_from_ms(wait_ms);

    st->delay_timer = sl_xmalloc(event_get_struct_event_size());
    evtimer_assign(st->delay_timer, lc->base, on_delay_over, st);
    st->wait_start_us = sl_clock_now_us();
    st->next = lc->waiting;
    st->prev = NULL;
    if (lc->waiting != NULL)
        lc->waiting->prev = st;
    lc->waiting = st;
    evtimer_add(st->delay_timer, &tv);
}

static void
on_decision(void *arg, const struct sl_decision *d)
{
    struct limit_state *st = arg;
    struct sl_phase_run *run = st->run;
    const struct limit_conf *lc = st->conf;

    if (d->verdict == SL_VERDICT_DELAY && !sl_phase_is_abandoned(run)) {
        start_delay(st, d->wait_ms);
        return;
    }
    if (d->verdict == SL_VERDICT_DELAY)
        sl_limiter_delay_end(lc->limiter);
    if (sl_phase_is_abandoned(run)) {
        sl_phase_pass(run); /* the client is gone: nothing to count or answer */
        return;
    }
    st->outcome = d->outcome;
    /* admitted after waiting: the access log tells the wait apart */
    if (st->waited_ms > 0 && d->verdict == SL_VERDICT_ALLOW && strcmp(d->outcome, "admitted") == 0)
        st->outcome = "delayed";
    st->limiter_ms = d->limiter_ms;
    /* "none": no limit applied to this request, so no limiter time to report */
    st->is_checked = strcmp(d->outcome, "none") != 0;
    sl_metrics_limiter(lc->metrics, lc->route_slot, (uint64_t)(d->limiter_ms * 1000.0));
    sl_phase_attach(run, d->headers, d->headers_len);
    if (lc->route->has_server_timing && st->is_checked)
        attach_server_timing(run, d->limiter_ms);
    if (d->verdict == SL_VERDICT_DENY) {
        st->reason = "rate limited";
        sl_phase_answer(run, 429, d->problem, d->problem_len);
    } else if (d->verdict == SL_VERDICT_UNAVAILABLE) {
        st->reason = "store unavailable";
        sl_phase_answer(run, 503, d->problem, d->problem_len);
    } else {
        sl_phase_pass(run);
    }
}

static void
limit_request(struct sl_phase_run *run, void *conf, void *state)
{
    struct limit_state *st = state;
    struct limit_conf *lc = conf;

    st->run = run;
    st->conf = lc;
    st->route = lc->route;
    /* A peek, not a hold: an entry that goes before the cache phase looks
     * makes this one request go upstream without those limits. */
    if (lc->hit_route != NULL && sl_phase_cache_is_hit(lc->cache, sl_phase_request(run)))
        st->route = lc->hit_route;
    /* on_decision may run before this returns (embedded store) */
    sl_limiter_check(lc->limiter, st->route, sl_phase_request(run), on_decision, st);
}

static void
limit_end(struct sl_phase_run *run, void *conf, void *state, const char *reason,
          struct sl_access_entry *log)
{
    const struct limit_state *st = state;

    (void)run;
    (void)conf;
    (void)reason;
    if (log == NULL)
        return;
    log->limit = st->outcome;
    if (st->reason != NULL && reason == NULL)
        log->reason = st->reason;
    log->limiter_ms = st->is_checked ? st->limiter_ms : -1.0;
}

const struct sl_phase sl_phase_limit = {
    .name = "limit",
    .state_size = sizeof(struct limit_state),
    .setup = limit_setup,
    .teardown = limit_teardown,
    .on_request = limit_request,
    .on_end = limit_end,
};
