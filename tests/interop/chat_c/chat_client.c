/*
 * The seed's chat client (002, assignment 1), restated for inetkit's interop tests.
 *
 * Same exchange as the seed: connect, then strictly alternate: fgets() one
 * line from stdin and send() it (newline included), then read() once and
 * print "Server: %s\n"; a message starting with "exit" from either side
 * ends the chat.
 *
 * Differences, all outside the exchange itself:
 *   - connects to 127.0.0.1 on the port given in argv[1];
 *   - stdout is unbuffered, so a test sees each prompt when it is printed;
 *   - read() takes at most BUFFER_SIZE - 1 bytes so the buffer stays a
 *     NUL-terminated string;
 *   - fgets() at end of input stops instead of resending a stale buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#define BUFFER_SIZE 1024

void error(const char *msg) {
    perror(msg);
    exit(1);
}

int main(int argc, char **argv) {
    int sock = 0;
    struct sockaddr_in serv_addr;
    char buffer[BUFFER_SIZE] = {0};

    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);

    if ((sock = socket(AF_INET, SOCK_STREAM, 0)) < 0) {
        error("socket failed");
    }

    memset(&serv_addr, 0, sizeof(serv_addr));
    serv_addr.sin_family = AF_INET;
    serv_addr.sin_port = htons((unsigned short)atoi(argv[1]));

    if (inet_pton(AF_INET, "127.0.0.1", &serv_addr.sin_addr) <= 0) {
        error("Invalid address or Address not supported");
    }

    if (connect(sock, (struct sockaddr *)&serv_addr, sizeof(serv_addr)) < 0) {
        error("Connection failed");
    }

    printf("Connected to server.\n");

    while (1) {
        printf("Client: ");
        if (fgets(buffer, BUFFER_SIZE, stdin) == NULL) {
            break;
        }
        send(sock, buffer, strlen(buffer), 0);
        if (strncmp(buffer, "exit", 4) == 0) {
            break;
        }

        memset(buffer, 0, BUFFER_SIZE);
        int read_bytes = read(sock, buffer, BUFFER_SIZE - 1);
        if (read_bytes <= 0 || strncmp(buffer, "exit", 4) == 0) {
            break;
        }
        printf("Server: %s\n", buffer);
    }

    close(sock);

    return 0;
}
