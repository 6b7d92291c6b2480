/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * A main() for the fuzz drivers without libFuzzer: runs
 * LLVMFuzzerTestOneInput once over every file named on the command line, or
 * over every file of a directory named there (sorted, dot files skipped). A
 * broken invariant or a sanitizer report aborts, so ctest sees the failure;
 * the last "replay:" line on stderr names the input. A missing directory
 * counts as empty, but a run that found no input at all fails.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "util/alloc.h"

static int
run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t len = 0, cap = 0, got;

    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    do {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            data = sl_xrealloc(data, cap);
        }
        got = fread(data + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    if (ferror(f)) {
        fprintf(stderr, "replay: %s: read error\n", path);
        fclose(f);
        free(data);
        return -1;
    }
    fclose(f);
    /* an exact-size copy, so that reading past the input is caught as it is
     * under libFuzzer */
    {
        uint8_t *exact = sl_xmalloc(len ? len : 1);
        memcpy(exact, data, len);
        free(data);
        fprintf(stderr, "replay: %s\n", path);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    return 0;
}

static int
skip_dot(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* Returns the number of inputs run, or -1 on an error. */
static long
run_path(const char *path)
{
    struct dirent **names;
    struct stat st;
    long count = 0;
    int n;

    if (stat(path, &st) != 0) {
        if (errno == ENOENT) {
            fprintf(stderr, "replay: %s: no such directory, nothing to run\n", path);
            return 0;
        }
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path) == 0 ? 1 : -1;
    n = scandir(path, &names, skip_dot, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t plen = strlen(path) + 1 + strlen(names[i]->d_name) + 1;
        char *full = sl_xmalloc(plen);
        long r;
        snprintf(full, plen, "%s/%s", path, names[i]->d_name);
        r = run_path(full);
        free(full);
        free(names[i]);
        if (r < 0) {
            count = -1;
            for (int j = i + 1; j < n; j++)
                free(names[j]);
            break;
        }
        count += r;
    }
    free(names);
    return count;
}

int
main(int argc, char **argv)
{
    long total = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        long r = run_path(argv[i]);
        if (r < 0)
            return 1;
        total += r;
    }
    if (total == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    fprintf(stderr, "replay: %ld inputs, all passed\n", total);
    return 0;
}
