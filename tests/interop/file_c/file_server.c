/* The lecture-004 file server, restated for the interop tests.
 *
 * usage: file_server PORT FILE
 * Binds 127.0.0.1:PORT (0: any free port; the port is printed as "PORT n"
 * on stdout once listening), accepts one client, sends FILE with read/write,
 * half-closes with shutdown(SHUT_WR), reads the client's reply and writes it
 * to stdout: the seed's exchange, minus its typos.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSIZE 65536

static void error_handling(const char *message)
{
    perror(message);
    exit(1);
}

static void write_all(int fd, const char *buf, ssize_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, (size_t)len);
        if (n < 0)
            error_handling("write() error");
        buf += n;
        len -= n;
    }
}

int main(int argc, char **argv)
{
    int serv_sd, clnt_sd, fd;
    char buf[BUFSIZE];
    struct sockaddr_in serv_addr, clnt_addr;
    socklen_t addr_size;
    ssize_t len;

    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT FILE\n", argv[0]);
        return 2;
    }
    fd = open(argv[2], O_RDONLY);
    if (fd == -1)
        error_handling("open() error");
    serv_sd = socket(PF_INET, SOCK_STREAM, 0);
    if (serv_sd == -1)
        error_handling("socket() error");
    memset(&serv_addr, 0, sizeof(serv_addr));
    serv_addr.sin_family = AF_INET;
    serv_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    serv_addr.sin_port = htons((unsigned short)atoi(argv[1]));
    if (bind(serv_sd, (struct sockaddr *)&serv_addr, sizeof(serv_addr)) == -1)
        error_handling("bind() error");
    if (listen(serv_sd, 5) == -1)
        error_handling("listen() error");
    addr_size = sizeof(serv_addr);
    getsockname(serv_sd, (struct sockaddr *)&serv_addr, &addr_size);
    printf("PORT %d\n", ntohs(serv_addr.sin_port));
    fflush(stdout);

    addr_size = sizeof(clnt_addr);
    clnt_sd = accept(serv_sd, (struct sockaddr *)&clnt_addr, &addr_size);
    if (clnt_sd == -1)
        error_handling("accept() error");
    /* send the file's contents to the client */
    while ((len = read(fd, buf, BUFSIZE)) > 0)
        write_all(clnt_sd, buf, len);
    if (len < 0)
        error_handling("read() error");
    /* done sending: close our output stream only */
    if (shutdown(clnt_sd, SHUT_WR) == -1)
        error_handling("shutdown() error");
    /* receive the client's "Thank you" */
    len = read(clnt_sd, buf, BUFSIZE);
    if (len > 0)
        write_all(1, buf, len);
    close(fd);
    close(clnt_sd);
    close(serv_sd);
    return 0;
}
