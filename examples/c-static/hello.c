/* A statically linked C program: runs in an image with nothing else. */
#include <stdio.h>
#include <sys/utsname.h>

int main(void) {
    struct utsname u;
    if (uname(&u) != 0) {
        perror("uname");
        return 1;
    }
    printf("hello from static C on %s\n", u.sysname);
    return 0;
}
