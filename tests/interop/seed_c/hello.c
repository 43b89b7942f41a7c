/* Seed 002 "basics" TCP and UDP hello servers and clients, restated.
 * usage: hello server tcp|udp PORT   |   hello client tcp|udp PORT
 * The servers answer one client and exit, as in the seed. */
#include "common.h"
#include <sys/time.h>

int main(int argc, char **argv) {
    char buffer[1024] = {0};
    const char *hello;
    struct sockaddr_in addr;
    socklen_t addrlen = sizeof(addr);
    struct timeval tv = {5, 0};
    int udp, sd, ns, n;
    if (argc != 4) { fprintf(stderr, "usage: hello server|client tcp|udp PORT\n"); return 2; }
    udp = strcmp(argv[2], "udp") == 0;
    if (strcmp(argv[1], "server") == 0) {
        hello = "Hello from server";
        sd = seed_listen(udp ? SOCK_DGRAM : SOCK_STREAM, atoi(argv[3]));
        if (udp) {
            n = recvfrom(sd, buffer, 1023, 0, (struct sockaddr *)&addr, &addrlen);
            if (n < 0) { perror("recvfrom"); exit(1); }
            printf("Message from client: %s\n", buffer);
            sendto(sd, hello, strlen(hello), 0, (struct sockaddr *)&addr, addrlen);
        } else {
            if ((ns = accept(sd, (struct sockaddr *)&addr, &addrlen)) < 0) { perror("accept"); exit(1); }
            n = read(ns, buffer, 1023);
            if (n < 0) { perror("read"); exit(1); }
            printf("Message from client: %s\n", buffer);
            send(ns, hello, strlen(hello), 0);
            close(ns);
        }
        printf("Hello message sent\n");
        close(sd);
        return 0;
    }
    hello = "Hello from client";
    if (udp) {
        if ((sd = socket(AF_INET, SOCK_DGRAM, 0)) < 0) { perror("socket"); exit(1); }
        setsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        memset(&addr, 0, sizeof(addr));
        addr.sin_family = AF_INET;
        addr.sin_port = htons(atoi(argv[3]));
        addr.sin_addr.s_addr = inet_addr("127.0.0.1");
        sendto(sd, hello, strlen(hello), 0, (struct sockaddr *)&addr, sizeof(addr));
        printf("Hello message sent\n");
        n = recvfrom(sd, buffer, 1023, 0, NULL, NULL);
    } else {
        sd = seed_connect(atoi(argv[3]));
        setsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        send(sd, hello, strlen(hello), 0);
        printf("Hello message sent\n");
        n = read(sd, buffer, 1023);
    }
    if (n < 0) { perror("read"); exit(1); }
    printf("Message from server: %s\n", buffer);
    close(sd);
    return 0;
}
