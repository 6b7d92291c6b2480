/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The limits phase: sl_limiter_check's decision as a phase. A refusal is
 * answered here (429, or 503 when the store failed and on_error = "deny")
 * with the limiter's header lines (Retry-After, RateLimit fields) and its
 * problem+json body; an admitted request passes with those lines attached
 * to whatever response it gets. With Server-Timing on for the route, the
 * limiter's share is attached too. The policy itself is limiter.c's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/accesslog.h"
#include "sluice/config.h"
#include "sluice/limiter.h"
#include "sluice/metrics.h"
#include "sluice/phase.h"
#include "util/alloc.h"

struct limit_conf {
    struct sl_limiter *limiter;
    const struct sl_route_conf *route;
    struct sl_metrics_worker *metrics;
    unsigned route_slot;
};

struct limit_state {
    struct sl_phase_run *run;
    const struct limit_conf *conf;
    const char *outcome; /* static, from the decision */
    const char *reason;  /* why it answered, for the access log; NULL: it passed */
    double limiter_ms;
    bool is_checked;     /* some limit applied: limiter_ms means something */
};

/* Every route: a route without limits still gets its "none" in the access
 * log and its (zero) limiter time in the metrics, as before phases. */
static bool
limit_setup(const struct sl_phase_env *env, const struct sl_route_conf *route, void **conf)
{
    struct limit_conf *lc = sl_xcalloc(1, sizeof(*lc));

    lc->limiter = env->limiter;
    lc->route = route;
    lc->metrics = env->metrics;
    lc->route_slot = env->route_slots[route - env->cfg->routes];
    *conf = lc;
    return true;
}

static void
limit_teardown(void *conf)
{
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

static void
on_decision(void *arg, const struct sl_decision *d)
{
    struct limit_state *st = arg;
    struct sl_phase_run *run = st->run;
    const struct limit_conf *lc = st->conf;

    if (sl_phase_is_abandoned(run)) {
        sl_phase_pass(run); /* the client is gone: nothing to count or answer */
        return;
    }
    st->outcome = d->outcome;
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
    const struct limit_conf *lc = conf;

    st->run = run;
    st->conf = lc;
    /* on_decision may run before this returns (embedded store) */
    sl_limiter_check(lc->limiter, lc->route, sl_phase_request(run), on_decision, st);
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
