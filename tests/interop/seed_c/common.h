/* Shared by the restated seed programs: listen on 127.0.0.1:PORT (0 = any free
 * port) and report the port on stdout, so a test can wait for it instead of
 * sleeping.  The seeds hard-code 192.168.162.133 and fixed ports; these take
 * the port from argv and use 127.0.0.1, with the typos fixed. */
#ifndef SEED_COMMON_H
#define SEED_COMMON_H
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

__attribute__((unused)) static int seed_listen(int type, int port) {
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int one = 1;
    int sd = socket(AF_INET, type, 0);
    if (sd == -1) { perror("socket"); exit(1); }
    setsockopt(sd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset((char *)&sin, '\0', sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = inet_addr("127.0.0.1");
    if (bind(sd, (struct sockaddr *)&sin, sizeof(sin))) { perror("bind"); exit(1); }
    if (type == SOCK_STREAM && listen(sd, 5)) { perror("listen"); exit(1); }
    getsockname(sd, (struct sockaddr *)&sin, &len);
    printf("listening on %d\n", ntohs(sin.sin_port));
    fflush(stdout);
    return sd;
}

__attribute__((unused)) static int seed_connect(int port) {
    struct sockaddr_in sin;
    int sd;
    memset((char *)&sin, '\0', sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = inet_addr("127.0.0.1");
    if ((sd = socket(AF_INET, SOCK_STREAM, 0)) == -1) { perror("socket"); exit(1); }
    if (connect(sd, (struct sockaddr *)&sin, sizeof(sin))) { perror("connect"); exit(1); }
    return sd;
}
#endif
