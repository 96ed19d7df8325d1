/* The instructions one sluice_check costs: N checks of 16 keys in the global category of a
 * one-rule policy, each at an explicit time, through the public header. tests/c/run.sh
 * builds it and runs it once as a smoke test; to count:
 *
 *   valgrind --tool=callgrind --callgrind-out-file=cg.out target/c/callgrind_check 40000
 *   callgrind_annotate --inclusive=yes cg.out | grep -E 'sluice_check|check_at'
 *
 * sluice_check's inclusive count minus Limiter::check_at's, over N, is what the C boundary
 * costs per call (argument checks, the decision's size, copying the decision out). */
#include "sluice.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    struct sluice *s = NULL;
    char err[256];
    if (sluice_open("global 100/1s", NULL, &s, err, sizeof err) != SLUICE_OK) {
        fprintf(stderr, "sluice_open: %s\n", err);
        return 1;
    }
    char keys[16][16];
    for (int i = 0; i < 16; i++) {
        snprintf(keys[i], sizeof keys[i], "10.0.0.%d", i);
    }
    long admitted = 0;
    for (long i = 0; i < n; i++) {
        struct sluice_decision d;
#if SLUICE_VERSION_MAJOR > 0 || SLUICE_VERSION_MINOR >= 2
        d.size = sizeof d;
#endif
        const char *k = keys[i & 15];
        if (sluice_check(s, 0, k, strlen(k), 1767225600000 + i, &d) != SLUICE_OK) {
            fprintf(stderr, "sluice_check failed\n");
            return 1;
        }
        admitted += d.allowed;
    }
    sluice_close(s);
    printf("%ld of %ld admitted\n", admitted, n);
    return admitted == n ? 0 : 1;
}
