/*
 * cload: a load generator in C, so the client is not what limits a benchmark.
 *
 * The bench's Python load processes spend about as much CPU per round trip as
 * the server they measure; on a 2-core machine that caps every rate near the
 * client's own speed.  This one epoll loop costs about a microsecond per
 * operation, so rates reflect the servers.  Compiled by bench/cload.py with the
 * system's cc at bench time; the Python generators remain the fallback.
 *
 * usage: cload echo    HOST PORT CONNS SIZE DURATION MAX_OPS
 *        cload connect HOST PORT CONNS EXPECT DURATION MAX_OPS
 *
 *   echo:    CONNS connections, each sends SIZE bytes and waits for SIZE bytes
 *            back before sending again (closed loop).
 *   connect: CONNS short connections in flight at once, each: connect, read
 *            to EOF (at least EXPECT bytes), close, start another.
 *
 * Protocol with the parent: after setup it prints "ready"; it starts on a line
 * "go" on stdin, runs DURATION seconds (or MAX_OPS operations), prints one line
 * "ops=N errors=N elapsed=S cpu=S", then exits when stdin closes.  Loopback
 * addresses only: it refuses any other host.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 20000

static struct sockaddr_in addr;
static int epfd;
static long ops, errors, max_ops;
static int size;
static char buf[65536];
static char payload[65536];
static long got[MAX_CONNS + 1024];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int open_conn(int blocking) {
    int fd = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    if (blocking) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void watch(int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void wait_go(void) {
    char line[16];
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) exit(0);
}

static void start_connect(void) {
    int fd = open_conn(0);
    if (fd < 0) { errors++; return; }
    if (fd >= MAX_CONNS + 1024) { close(fd); errors++; return; }
    got[fd] = 0;
    watch(fd, EPOLLIN);
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: cload echo|connect HOST PORT CONNS SIZE|EXPECT DURATION MAX_OPS\n");
        return 2;
    }
    int echo = strcmp(argv[1], "echo") == 0;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1 || (ntohl(addr.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "cload: only IPv4 loopback addresses (127.0.0.0/8)\n");
        return 2;
    }
    int conns = atoi(argv[4]);
    size = atoi(argv[5]);
    double duration = atof(argv[6]);
    max_ops = atol(argv[7]);
    if (conns < 1 || conns > MAX_CONNS || size < 0 || size > (int)sizeof payload) {
        fprintf(stderr, "cload: bad CONNS or SIZE\n");
        return 2;
    }
    memset(payload, 'x', sizeof payload);
    epfd = epoll_create1(0);
    struct epoll_event events[512];

    if (echo) {
        for (int i = 0; i < conns; i++) {
            int fd = open_conn(1);
            if (fd < 0 || fd >= MAX_CONNS + 1024) { fprintf(stderr, "cload: connect failed\n"); return 1; }
            watch(fd, EPOLLIN);
            got[fd] = -1; /* not started */
        }
        wait_go();
        double cpu0 = cpu(), t0 = now(), deadline = t0 + duration;
        for (int fd = 0; fd < MAX_CONNS + 1024; fd++)
            if (got[fd] == -1) { got[fd] = 0; if (write(fd, payload, size) != size) errors++; }
        while (now() < deadline && ops < max_ops) {
            int n = epoll_wait(epfd, events, 512, 100);
            for (int i = 0; i < n; i++) {
                int fd = events[i].data.fd;
                ssize_t r = read(fd, buf, sizeof buf);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN) continue;
                    errors++;
                    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                    continue;
                }
                got[fd] += r;
                if (got[fd] >= size) {
                    ops++;
                    got[fd] = 0;
                    if (write(fd, payload, size) != size) errors++;
                }
            }
        }
        printf("ops=%ld errors=%ld elapsed=%.6f cpu=%.6f\n", ops, errors, now() - t0, cpu() - cpu0);
    } else {
        wait_go();
        double cpu0 = cpu(), t0 = now(), deadline = t0 + duration;
        for (int i = 0; i < conns; i++) start_connect();
        while (now() < deadline && ops < max_ops) {
            int n = epoll_wait(epfd, events, 512, 100);
            for (int i = 0; i < n; i++) {
                int fd = events[i].data.fd;
                ssize_t r = read(fd, buf, sizeof buf);
                if (r < 0 && errno == EAGAIN) continue;
                if (r > 0) { got[fd] += r; continue; }
                if (r == 0 && got[fd] >= size) ops++; else errors++;
                epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                start_connect();
            }
        }
        printf("ops=%ld errors=%ld elapsed=%.6f cpu=%.6f\n", ops, errors, now() - t0, cpu() - cpu0);
    }
    fflush(stdout);
    while (fgets(buf, sizeof buf, stdin)) {
    }
    return 0;
}
