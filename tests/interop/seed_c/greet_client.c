/* Seed 000 §12-2-1 / §12-2-2 client ("http"), §12-2-3 han client ("han") and
 * §12-2-4 bit client ("telnet"), restated.  usage: greet_client PORT http|han|telnet
 * The seed sends sizeof(buf)+1 = 257 bytes from a 256-byte buffer; here the
 * buffer is 257 zeroed bytes, so the padding after the NUL is zeros. */
#include "common.h"

int main(int argc, char **argv) {
    int sd, len;
    char buf[257];
    int arrow;
    if (argc != 3) { fprintf(stderr, "usage: greet_client PORT http|han|telnet\n"); return 2; }
    arrow = strcmp(argv[2], "http") != 0;
    if (arrow) printf("==> create socket\n");
    sd = seed_connect(atoi(argv[1]));
    if (arrow) printf("==> connect server\n");
    memset(buf, 0, sizeof(buf));
    if ((len = recv(sd, buf, sizeof(buf) - 1, 0)) == -1) { perror("recv"); exit(1); }
    buf[len] = '\0';
    if (arrow) printf("==>from server : %s\n", buf);
    else printf("** From server : %s\n", buf);
    fflush(stdout);
    if (strcmp(argv[2], "han") != 0) {
        memset(buf, 0, sizeof(buf));
        strcpy(buf, strcmp(argv[2], "telnet") == 0 ? "I want a Telnet service" : "I want a HTTP service");
        if (send(sd, buf, sizeof(buf), 0) == -1) { perror("send"); exit(1); }
    }
    close(sd);
    return 0;
}
