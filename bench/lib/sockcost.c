/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * What one small message costs the kernel on loopback TCP, by system call:
 * a connected pair, ROUNDS rounds of a 200-byte write on one end and a read
 * on the other, the process's CPU time (user + system) per round. Used to
 * choose between send/recv and writev/readv in util/stream.c; run by
 * bench/sockcost.sh.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define ROUNDS 300000
#define MSG 200

static double
cpu_seconds(void)
{
    struct rusage r;

    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6
           + (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec / 1e6;
}

static void
connected_pair(int *a, int *b)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

    if (l < 0 || bind(l, (struct sockaddr *)&sa, len) != 0 || listen(l, 1) != 0
        || getsockname(l, (struct sockaddr *)&sa, &len) != 0) {
        perror("listen");
        exit(1);
    }
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (*a < 0 || connect(*a, (struct sockaddr *)&sa, len) != 0 || (*b = accept(l, NULL, NULL)) < 0) {
        perror("connect");
        exit(1);
    }
    setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    close(l);
}

static double
run(int how)
{
    static char msg[MSG], buf[16384];
    int w, r;
    double t0;

    connected_pair(&w, &r);
    memset(msg, 'x', sizeof(msg));
    t0 = cpu_seconds();
    for (int i = 0; i < ROUNDS; i++) {
        struct iovec out = { msg, MSG }, in = { buf, sizeof(buf) };
        ssize_t n = how == 0 ? send(w, msg, MSG, 0) : writev(w, &out, 1);
        if (n != MSG || (how == 0 ? recv(r, buf, sizeof(buf), 0) : readv(r, &in, 1)) != MSG) {
            perror("io");
            exit(1);
        }
    }
    close(w);
    close(r);
    return (cpu_seconds() - t0) / ROUNDS * 1e6;
}

int
main(void)
{
    /* interleaved, three times: the machine is noisy */
    for (int i = 0; i < 3; i++) {
        printf("send+recv    %.2f us per message\n", run(0));
        printf("writev+readv %.2f us per message\n", run(1));
    }
    return 0;
}
