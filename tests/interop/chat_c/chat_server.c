/*
 * The seed's chat server (002, assignment 1), restated for inetkit's interop tests.
 *
 * Same exchange as the seed: wait for one client, then strictly alternate:
 * read() once and print "Client: %s\n", then fgets() one line from stdin,
 * send() it (newline included) and loop; a message starting with "exit"
 * from either side ends the chat.
 *
 * Differences, all outside the exchange itself:
 *   - binds 127.0.0.1 (tests stay on loopback) on the port given in argv[1];
 *     port 0 picks a free one and reports it on stderr ("port N");
 *   - stdout is unbuffered, so a test sees each prompt when it is printed
 *     (the bytes are the seed's; only their timing on a pipe changes);
 *   - read() takes at most BUFFER_SIZE - 1 bytes so the buffer stays a
 *     NUL-terminated string (the seed could print past its end);
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
    int server_fd, new_socket;
    struct sockaddr_in address;
    socklen_t addrlen = sizeof(address);
    char buffer[BUFFER_SIZE] = {0};

    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);

    if ((server_fd = socket(AF_INET, SOCK_STREAM, 0)) < 0) {
        error("socket failed");
    }

    memset(&address, 0, sizeof(address));
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons((unsigned short)atoi(argv[1]));

    if (bind(server_fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
        error("bind failed");
    }

    if (listen(server_fd, 3) < 0) {
        error("listen failed");
    }
    if (getsockname(server_fd, (struct sockaddr *)&address, &addrlen) == 0) {
        fprintf(stderr, "port %d\n", ntohs(address.sin_port));
    }

    printf("Waiting for a connection...\n");

    addrlen = sizeof(address);
    if ((new_socket = accept(server_fd, (struct sockaddr *)&address, &addrlen)) < 0) {
        error("accept failed");
    }

    printf("Connection established with client.\n");

    while (1) {
        memset(buffer, 0, BUFFER_SIZE);
        int read_bytes = read(new_socket, buffer, BUFFER_SIZE - 1);
        if (read_bytes <= 0 || strncmp(buffer, "exit", 4) == 0) {
            break;
        }
        printf("Client: %s\n", buffer);

        printf("Server: ");
        if (fgets(buffer, BUFFER_SIZE, stdin) == NULL) {
            break;
        }
        send(new_socket, buffer, strlen(buffer), 0);
        if (strncmp(buffer, "exit", 4) == 0) {
            break;
        }
    }

    close(new_socket);
    close(server_fd);

    return 0;
}
