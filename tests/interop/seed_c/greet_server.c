/* Seed 000 §12-2-1 (iterative) and §12-2-2 (fork) servers, restated.
 * usage: greet_server PORT MESSAGE iterative|fork COUNT
 * Serves COUNT clients, then exits (fork: after reaping its children). */
#include "common.h"
#include <sys/wait.h>

static void serve(int ns, const char *message) {
    char buf[256];
    memset(buf, 0, sizeof(buf));
    strcpy(buf, message);
    if (send(ns, buf, strlen(buf) + 1, 0) == -1) { perror("send"); exit(1); }
    /* one read, as in the seed; the seed's strlen(greeting) limit would cut
     * "I want a HTTP service" after 17 bytes on the fork server, so (like the
     * 003 copy of the chapter) the whole buffer is offered, minus a NUL */
    memset(buf, 0, sizeof(buf));
    if (recv(ns, buf, sizeof(buf) - 1, 0) == -1) { perror("recv"); exit(1); }
    printf("** from client : %s\n", buf);
    fflush(stdout);
}

int main(int argc, char **argv) {
    struct sockaddr_in cli;
    socklen_t clientlen = sizeof(cli);
    int sd, ns, i, count;
    if (argc != 5 || strlen(argv[2]) > 200) { fprintf(stderr, "usage: greet_server PORT MESSAGE iterative|fork COUNT\n"); return 2; }
    count = atoi(argv[4]);
    sd = seed_listen(SOCK_STREAM, atoi(argv[1]));
    for (i = 0; i < count; i++) {
        if ((ns = accept(sd, (struct sockaddr *)&cli, &clientlen)) == -1) { perror("accept"); exit(1); }
        printf("*** send a message to client(%s)\n", inet_ntoa(cli.sin_addr));
        fflush(stdout);
        if (strcmp(argv[3], "fork") == 0) {
            switch (fork()) {
            case 0:
                close(sd);
                serve(ns, argv[2]);
                close(ns);
                exit(0);
            case -1:
                perror("fork");
                exit(1);
            }
        } else {
            serve(ns, argv[2]);
        }
        close(ns);
    }
    while (wait(NULL) > 0) {}
    close(sd);
    return 0;
}
