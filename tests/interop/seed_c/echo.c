/* Lecture 004 TCP echo server and recvn echo client, restated (POSIX, not Winsock).
 * usage: echo server PORT   (one client, then exit)  |  echo client PORT  (lines on stdin) */
#include "common.h"
#include <sys/time.h>

#define BUFSIZE 512

static int recvn(int s, char *buf, int len, int flags) {
    int received;
    char *ptr = buf;
    int left = len;
    while (left > 0) {
        received = recv(s, ptr, left, flags);
        if (received == -1) return -1;
        else if (received == 0) break;
        left -= received;
        ptr += received;
    }
    return len - left;
}

int main(int argc, char **argv) {
    char buf[BUFSIZE + 1];
    struct sockaddr_in cli;
    socklen_t addrlen = sizeof(cli);
    int sd, ns, retval, len;
    if (argc != 3) { fprintf(stderr, "usage: echo server|client PORT\n"); return 2; }
    if (strcmp(argv[1], "server") == 0) {
        sd = seed_listen(SOCK_STREAM, atoi(argv[2]));
        if ((ns = accept(sd, (struct sockaddr *)&cli, &addrlen)) == -1) { perror("accept"); exit(1); }
        printf("[TCP server] client connected: IP=%s, port=%d\n", inet_ntoa(cli.sin_addr), ntohs(cli.sin_port));
        while (1) {
            retval = recv(ns, buf, BUFSIZE, 0);
            if (retval <= 0) break;
            buf[retval] = '\0';
            printf("[TCP/%s:%d] %s\n", inet_ntoa(cli.sin_addr), ntohs(cli.sin_port), buf);
            if (send(ns, buf, retval, 0) == -1) { perror("send"); break; }
        }
        close(ns);
        printf("[TCP server] client closed: IP=%s, port=%d\n", inet_ntoa(cli.sin_addr), ntohs(cli.sin_port));
        close(sd);
        return 0;
    }
    sd = seed_connect(atoi(argv[2]));
    {
        struct timeval tv = {5, 0};
        setsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    while (1) {
        memset(buf, 0, sizeof(buf));
        if (fgets(buf, BUFSIZE + 1, stdin) == NULL) break;
        len = strlen(buf);
        if (len > 0 && buf[len - 1] == '\n') buf[len - 1] = '\0';
        if (strlen(buf) == 0) break;
        retval = send(sd, buf, strlen(buf), 0);
        if (retval == -1) { perror("send"); break; }
        printf("[TCP client] %d bytes sent\n", retval);
        retval = recvn(sd, buf, retval, 0);
        if (retval == -1) { perror("recv"); break; }
        else if (retval == 0) break;
        buf[retval] = '\0';
        printf("[TCP client] %d bytes received\n", retval);
        printf("[received data] %s\n", buf);
    }
    close(sd);
    return 0;
}
