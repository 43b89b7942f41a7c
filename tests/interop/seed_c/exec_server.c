/* Seed 000 §12-2-3 (socket dup2'd onto stdin/stdout, then exec "han") and
 * §12-2-4 (socket number passed in argv, then exec "bit") servers, restated.
 * usage: exec_server PORT stdio|fd PROGRAM COUNT
 * Children are reaped (the seed leaves zombies). */
#include "common.h"
#include <sys/wait.h>

int main(int argc, char **argv) {
    struct sockaddr_in cli;
    socklen_t clientlen = sizeof(cli);
    int sd, ns, i, count;
    char buf[32];
    if (argc != 5) { fprintf(stderr, "usage: exec_server PORT stdio|fd PROGRAM COUNT\n"); return 2; }
    count = atoi(argv[4]);
    sd = seed_listen(SOCK_STREAM, atoi(argv[1]));
    for (i = 0; i < count; i++) {
        if ((ns = accept(sd, (struct sockaddr *)&cli, &clientlen)) == -1) { perror("accept"); exit(1); }
        switch (fork()) {
        case 0:
            close(sd);
            if (strcmp(argv[2], "stdio") == 0) {
                dup2(ns, STDIN_FILENO);
                dup2(ns, STDOUT_FILENO);
                close(ns);
                execl(argv[3], "han", (char *)0);
            } else {
                sprintf(buf, "%d", ns);
                execl(argv[3], "bit", buf, (char *)0);
            }
            perror("exec");
            exit(127);
        case -1:
            perror("fork");
            exit(1);
        }
        close(ns);
    }
    while (wait(NULL) > 0) {}
    return 0;
}
