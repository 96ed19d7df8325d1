/* example.c - rate limiting a server's requests with sluice, from C.
 *
 * The shape of a real integration:
 *   1. at start-up, open one limiter (a table and its policy) and resolve the category names
 *      you use to ids, once;
 *   2. per request, call sluice_check with the client's key (an IP address, an API token, a
 *      user id) and the request's category; if the decision says no, answer HTTP 429 with
 *      the headers sluice_headers formats;
 *   3. on a wrong password, call sluice_failure (enough of them lock the key out of the
 *      category); on a right one, sluice_success;
 *   4. at shutdown, sluice_close.
 *
 * The limiter is thread-safe and lock-free: share the one handle between all your threads.
 * Nothing here allocates per request except the header buffer of a refusal.
 *
 * Build: see examples/c/README.md. Run: ./example (it simulates a few clients and prints
 * what a server would answer).
 */
#include "sluice.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Category ids, resolved once at start-up. */
static int g_write;
static int g_auth;

/* Answer a refused request: the status line and the rate-limit headers.
 * sluice_headers returns the length the block needs; call it once with no buffer to size
 * one (length + 1 for the terminating NUL), then again to fill it. */
static void send_429(const struct sluice *limiter, const struct sluice_decision *d) {
    int len = sluice_headers(limiter, d, SLUICE_HEADERS_X_RATELIMIT, NULL, 0);
    if (len < 0) {
        fprintf(stderr, "sluice_headers: %s\n", sluice_strerror(len));
        return;
    }
    char *headers = malloc((size_t)len + 1);
    if (headers == NULL) {
        return;
    }
    if (sluice_headers(limiter, d, SLUICE_HEADERS_X_RATELIMIT, headers, (size_t)len + 1) ==
        len) {
        /* The block is "Name: value\r\n" lines, ready to go on the wire. */
        printf("HTTP/1.1 429 Too Many Requests\r\n%s\r\n", headers);
    }
    free(headers);
}

/* One request of `client` in `category` at `now_ms` (Unix milliseconds, or SLUICE_NOW for
 * the library's wall clock). Returns 1 if the request may go ahead. */
static int admit(const struct sluice *limiter, int category, const char *client, int64_t now_ms) {
    struct sluice_decision d;
    d.size = sizeof d; /* the library needs it (the struct may grow; see sluice.h) */
    /* Keys are bytes: pass a pointer and a length (1 to 65535 bytes). */
    int rc = sluice_check(limiter, category, client, strlen(client), now_ms, &d);
    if (rc != SLUICE_OK) {
        /* A bad argument (empty key, unknown category, ...): a bug in the caller. Decide
         * yourself whether to fail open or closed; here we fail closed. */
        fprintf(stderr, "sluice_check: %s\n", sluice_strerror(rc));
        return 0;
    }
    if (!d.allowed) {
        send_429(limiter, &d);
        return 0;
    }
    /* Admitted. d.remaining is how many more the tightest rule allows right now; you may
     * send the headers on successful responses too. */
    return 1;
}

/* A login attempt with a wrong password: record the failure. Returns 1 if the key is now
 * locked out of `auth`. */
static int wrong_password(const struct sluice *limiter, const char *client, int64_t now_ms) {
    struct sluice_decision d;
    d.size = sizeof d;
    int rc = sluice_failure(limiter, g_auth, client, strlen(client), now_ms,
                            &d);
    if (rc != SLUICE_OK) {
        fprintf(stderr, "sluice_failure: %s\n", sluice_strerror(rc));
        return 0;
    }
    if (d.status == SLUICE_STATUS_LOCKED) {
        printf("%s: wrong password; locked out for %u s\n", client, (unsigned)d.retry_after);
        return 1;
    }
    printf("%s: wrong password; %u more before a lockout\n", client, (unsigned)d.remaining);
    return 0;
}

int main(void) {
    /* Warn if the program was compiled against a different header than the library. */
    if (strcmp(sluice_version(), SLUICE_VERSION) != 0) {
        fprintf(stderr, "warning: sluice.h is %s but the library is %s\n", SLUICE_VERSION,
                sluice_version());
    }

    /* 1. Open the limiter with the shipped default policy (policies/default.policy; a real
     *    server would read its own policy from a file). The second argument is NULL: a
     *    table in this process's memory (a path shares it with every process opening that
     *    path). On failure the message names the policy's line and column. */
    struct sluice *limiter = NULL;
    char err[256];
    int rc = sluice_open(sluice_default_policy(), NULL, &limiter, err, sizeof err);
    if (rc != SLUICE_OK) {
        fprintf(stderr, "sluice_open: %s (%s)\n", err, sluice_strerror(rc));
        return 1;
    }

    /*    Resolve categories once; "global" is always 0. */
    g_write = sluice_category(limiter, "write");
    g_auth = sluice_category(limiter, "auth");
    if (g_write < 0 || g_auth < 0) {
        fprintf(stderr, "sluice_category: %s\n", sluice_strerror(g_write < 0 ? g_write : g_auth));
        sluice_close(limiter);
        return 1;
    }

    /* 2. Requests. A real server passes SLUICE_NOW; a simulation (or a replay of a log)
     *    passes explicit Unix milliseconds, as below. */
    if (admit(limiter, 0, "203.0.113.5", SLUICE_NOW)) {
        printf("203.0.113.5: GET / -> 200\n");
    }

    /* A client posting every 100 ms: `write 30/1m` admits 30 and refuses the 31st. */
    const int64_t t0 = INT64_C(1767225600000); /* 2026-01-01T00:00:00Z */
    int admitted = 0;
    for (int i = 0; i < 31; i++) {
        if (admit(limiter, g_write, "198.51.100.7", t0 + i * 100)) {
            admitted++;
        } else {
            printf("198.51.100.7: POST #%d refused (above)\n", i + 1);
        }
    }
    printf("198.51.100.7: %d of 31 posts admitted\n", admitted);

    /* 3. Brute force: 5 wrong passwords within 15 minutes lock the key out of auth for 15
     *    minutes; the next login attempt is refused before the password is even checked. */
    int64_t t = t0 + 5000;
    for (int i = 0; i < 5; i++) {
        if (!admit(limiter, g_auth, "192.0.2.44", t)) {
            break;
        }
        wrong_password(limiter, "192.0.2.44", t);
        t += 1000;
    }
    if (!admit(limiter, g_auth, "192.0.2.44", t)) {
        printf("192.0.2.44: login refused while locked out\n");
    }
    /* A correct password would clear the failure count (the lock level is kept):
     *     sluice_success(limiter, g_auth, key, key_len, now_ms);
     * and the support desk's "unlock" is sluice_reset. */

    /* 4. Close. No other thread may use the handle during or after this. */
    sluice_close(limiter);
    return 0;
}
