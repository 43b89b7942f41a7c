/* Seed 000 §12-2-4 "bit": argv[1] is the client socket's descriptor number. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char buf[256];
    int ns;
    if (argc != 2) { fprintf(stderr, "usage: bit FD\n"); return 2; }
    ns = atoi(argv[1]);
    memset(buf, 0, sizeof(buf));
    strcpy(buf, "welcome to server, from bit");
    if (send(ns, buf, strlen(buf) + 1, 0) == -1) { perror("send"); exit(1); }
    if (recv(ns, buf, strlen(buf), 0) == -1) { perror("recv"); exit(1); }
    fprintf(stderr, "@@ [bit] from client : %s\n", buf);
    close(ns);
    return 0;
}
