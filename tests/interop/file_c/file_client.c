/* The lecture-004 file client, restated for the interop tests.
 *
 * usage: file_client IP PORT OUTFILE
 * Connects, reads until EOF writing everything to OUTFILE, then answers
 * "Thank you\n" and closes: the seed's exchange, minus its typos.
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

int main(int argc, char **argv)
{
    int sd, fd;
    char buf[BUFSIZE];
    struct sockaddr_in serv_addr;
    ssize_t len;

    if (argc != 4) {
        fprintf(stderr, "usage: %s IP PORT OUTFILE\n", argv[0]);
        return 2;
    }
    fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd == -1)
        error_handling("open() error");
    sd = socket(PF_INET, SOCK_STREAM, 0);
    if (sd == -1)
        error_handling("socket() error");
    memset(&serv_addr, 0, sizeof(serv_addr));
    serv_addr.sin_family = AF_INET;
    serv_addr.sin_addr.s_addr = inet_addr(argv[1]);
    serv_addr.sin_port = htons((unsigned short)atoi(argv[2]));
    if (connect(sd, (struct sockaddr *)&serv_addr, sizeof(serv_addr)) == -1)
        error_handling("connect() error");

    while ((len = read(sd, buf, BUFSIZE)) != 0) {
        if (len < 0)
            error_handling("read() error");
        char *p = buf;
        while (len > 0) {
            ssize_t n = write(fd, p, (size_t)len);
            if (n < 0)
                error_handling("write() error");
            p += n;
            len -= n;
        }
    }
    /* the whole file is here: answer the server */
    if (write(sd, "Thank you\n", 10) != 10)
        error_handling("write() error");
    close(fd);
    close(sd);
    return 0;
}
