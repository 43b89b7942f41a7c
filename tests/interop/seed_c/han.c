/* Seed 000 §12-2-3 "han": stdout is the client socket.  (The seed then sleeps
 * 5 s for ps; printf's buffer reaches the client at exit either way.) */
#include <stdio.h>

int main(void) {
    printf("welcome to server, from han!");
    return 0;
}
