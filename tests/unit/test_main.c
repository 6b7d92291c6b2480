/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * main: the pieces of `sluice -s` that must never signal the wrong process:
 * the name-to-signal table and the pidfile reader (a pid of 0 or below would
 * make kill(2) signal a process group or everything). main.c is included to
 * reach its statics; its main() is renamed out of the way. The command line
 * as a whole is tested by tests/integration/a_control.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int sluice_main(int argc, char **argv);
#define main sluice_main
#include "../../src/main.c"
#undef main

static char tmpdir[64];

static const char *
pidfile_with(const char *text)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/pid", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void
test_signal_names(void **state)
{
    (void)state;
    assert_int_equal(control_signal("reload"), SIGHUP);
    assert_int_equal(control_signal("reopen"), SIGUSR1);
    assert_int_equal(control_signal("stop"), SIGTERM);
    assert_int_equal(control_signal("quit"), SIGTERM);
    assert_int_equal(control_signal("Reload"), 0);
    assert_int_equal(control_signal(""), 0);
    assert_int_equal(control_signal("kill"), 0);
}

static void
test_pidfile_good(void **state)
{
    char err[256];
    pid_t pid = 0;

    (void)state;
    assert_int_equal(read_pidfile(pidfile_with("1234\n"), &pid, err, sizeof(err)), 0);
    assert_int_equal(pid, 1234);
    assert_int_equal(read_pidfile(pidfile_with("77"), &pid, err, sizeof(err)), 0);
    assert_int_equal(pid, 77);
}

static void
test_pidfile_bad(void **state)
{
    static const char *bad[] = { "", "\n", "0\n", "-1\n", "-1234\n", "12x\n", "12\n13\n",
                                 "abc", "99999999999999999999\n", " \n" };
    char err[256];
    pid_t pid = 42;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(read_pidfile(pidfile_with(bad[i]), &pid, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "not a pid"));
        assert_int_equal(pid, 42);
    }
}

static void
test_pidfile_missing(void **state)
{
    char err[256], path[128];
    pid_t pid;

    (void)state;
    snprintf(path, sizeof(path), "%s/none.pid", tmpdir);
    assert_int_equal(read_pidfile(path, &pid, err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file or directory (is sluice running?)"));
}

/* -T checks (as -t) and prints; it cannot be combined with -s. */
static void
test_dump_option(void **state)
{
    char *argv_t[] = { "sluice", "-T", "-c", "x.conf", NULL };
    char *argv_st[] = { "sluice", "-T", "-s", "reload", NULL };
    struct opts o;
    FILE *saved = stderr;

    (void)state;
    optind = 1;
    assert_int_equal(parse_args(4, argv_t, &o), -1);
    assert_true(o.is_dump);
    assert_true(o.is_check_only);
    assert_string_equal(o.conf_path, "x.conf");
    optind = 1;
    stderr = fopen("/dev/null", "w"); /* the usage it prints */
    assert_int_equal(parse_args(4, argv_st, &o), 2);
    fclose(stderr);
    stderr = saved;
}

static int
setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sl-main-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    char path[128];

    (void)state;
    snprintf(path, sizeof(path), "%s/pid", tmpdir);
    unlink(path);
    return rmdir(tmpdir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_names),
        cmocka_unit_test(test_pidfile_good),
        cmocka_unit_test(test_pidfile_bad),
        cmocka_unit_test(test_pidfile_missing),
        cmocka_unit_test(test_dump_option),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
