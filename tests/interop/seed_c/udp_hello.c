/* Seed 000 §12-3 UDP server and client, restated.
 * usage: udp_hello server PORT COUNT   |   udp_hello client PORT */
#include "common.h"

int main(int argc, char **argv) {
    char buf[256];
    struct sockaddr_in sin, cli;
    socklen_t clientlen = sizeof(cli);
    int sd, n, i;
    if (argc == 4 && strcmp(argv[1], "server") == 0) {
        sd = seed_listen(SOCK_DGRAM, atoi(argv[2]));
        for (i = 0; i < atoi(argv[3]); i++) {
            memset(buf, 0, sizeof(buf));
            clientlen = sizeof(cli);
            if (recvfrom(sd, buf, 255, 0, (struct sockaddr *)&cli, &clientlen) == -1) { perror("recvfrom"); exit(1); }
            printf("** From client : %s\n", buf);
            fflush(stdout);
            strcpy(buf, "Hello Client");
            if (sendto(sd, buf, strlen(buf) + 1, 0, (struct sockaddr *)&cli, sizeof(cli)) == -1) { perror("sendto"); exit(1); }
        }
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "client") == 0) {
        struct timeval tv = {5, 0};
        if ((sd = socket(AF_INET, SOCK_DGRAM, 0)) == -1) { perror("socket"); exit(1); }
        setsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        memset((char *)&sin, '\0', sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons(atoi(argv[2]));
        sin.sin_addr.s_addr = inet_addr("127.0.0.1");
        strcpy(buf, "I am a client");
        if (sendto(sd, buf, strlen(buf) + 1, 0, (struct sockaddr *)&sin, sizeof(sin)) == -1) { perror("sendto"); exit(1); }
        n = recvfrom(sd, buf, 255, 0, NULL, NULL);
        if (n < 0) { perror("recvfrom"); exit(1); }
        buf[n] = '\0';
        printf("** From Server : %s\n", buf);
        return 0;
    }
    fprintf(stderr, "usage: udp_hello server PORT COUNT | client PORT\n");
    return 2;
}
