/* C test suite for the sluice C ABI (include/sluice.h).
 *
 * Plain C11, no framework. Every CHECK counts one assertion; a failing one prints
 * file:line and what was expected. The last line of output is always
 * "N passed, M failed" and the exit status is non-zero if M > 0.
 *
 * Built and run (shared, static and under valgrind) by tests/c/run.sh.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* pthread_barrier_t, clock_gettime */
#endif
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* setgroups, to drop privileges in a child */
#endif

/* Types are spelled with their struct tags (`struct sluice_decision`, not the typedef
 * `sluice_decision`): the tags work whichever way cbindgen is told to emit the structs. */
#include "sluice.h"

#include <limits.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the checking machinery --------------------------------------------------------- */

static int g_passed;
static int g_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            g_passed++;                                                              \
        } else {                                                                     \
            g_failed++;                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/* Integer equality, printing both values on failure. */
#define CHECK_EQ(actual, expected)                                                          \
    do {                                                                                    \
        long long a_ = (long long)(actual);                                                 \
        long long e_ = (long long)(expected);                                               \
        if (a_ == e_) {                                                                     \
            g_passed++;                                                                     \
        } else {                                                                            \
            g_failed++;                                                                     \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s: got %lld, expected %lld\n", \
                    __FILE__, __LINE__, #actual, #expected, a_, e_);                        \
        }                                                                                   \
    } while (0)

/* Print a string with control characters and quotes escaped, for failure messages. */
static void print_escaped(FILE *f, const char *s) {
    if (s == NULL) {
        fputs("(NULL)", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\r') {
            fputs("\\r", f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < 0x20 || c >= 0x7f) {
            fprintf(f, "\\x%02x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void check_str(const char *file, int line, const char *what, const char *actual,
                      const char *expected) {
    if (actual != NULL && expected != NULL && strcmp(actual, expected) == 0) {
        g_passed++;
        return;
    }
    g_failed++;
    fprintf(stderr, "%s:%d: CHECK_STR failed: %s\n  got:      ", file, line, what);
    print_escaped(stderr, actual);
    fputs("\n  expected: ", stderr);
    print_escaped(stderr, expected);
    fputc('\n', stderr);
}
#define CHECK_STR(actual, expected) check_str(__FILE__, __LINE__, #actual, (actual), (expected))

static void check_contains(const char *file, int line, const char *what, const char *haystack,
                           const char *needle) {
    if (haystack != NULL && strstr(haystack, needle) != NULL) {
        g_passed++;
        return;
    }
    g_failed++;
    fprintf(stderr, "%s:%d: CHECK_CONTAINS failed: %s\n  got:     ", file, line, what);
    print_escaped(stderr, haystack);
    fputs("\n  missing: ", stderr);
    print_escaped(stderr, needle);
    fputc('\n', stderr);
}
#define CHECK_CONTAINS(haystack, needle) \
    check_contains(__FILE__, __LINE__, #haystack, (haystack), (needle))

/* Every field of a decision, printing the whole decision on failure. */
static void check_decision(const char *file, int line, const struct sluice_decision *d, int allowed,
                           int status, uint32_t limit, uint32_t remaining, uint32_t reset_after,
                           int64_t reset, uint32_t retry_after, int32_t rule,
                           int64_t window_ms) {
    if (d->allowed == allowed && d->status == status && d->limit == limit &&
        d->remaining == remaining && d->reset_after == reset_after && d->reset == reset &&
        d->retry_after == retry_after && d->rule == rule && d->window_ms == window_ms) {
        g_passed++;
        return;
    }
    g_failed++;
    fprintf(stderr,
            "%s:%d: CHECK_DECISION failed\n"
            "  got:      allowed=%d status=%d limit=%u remaining=%u reset_after=%u reset=%lld "
            "retry_after=%u rule=%d window_ms=%lld\n"
            "  expected: allowed=%d status=%d limit=%u remaining=%u reset_after=%u reset=%lld "
            "retry_after=%u rule=%d window_ms=%lld\n",
            file, line, d->allowed, d->status, (unsigned)d->limit, (unsigned)d->remaining,
            (unsigned)d->reset_after, (long long)d->reset, (unsigned)d->retry_after,
            (int)d->rule, (long long)d->window_ms, allowed, status, (unsigned)limit,
            (unsigned)remaining, (unsigned)reset_after, (long long)reset, (unsigned)retry_after,
            (int)rule, (long long)window_ms);
}
/* CHECK_DECISION(&d, allowed, status, limit, remaining, reset_after, reset, retry_after,
 *                rule, window_ms) */
#define CHECK_DECISION(d, ...) check_decision(__FILE__, __LINE__, (d), __VA_ARGS__)

/* ---- helpers ------------------------------------------------------------------------ */

/* A string literal as the (key, key_len) argument pair: KEY("k") -> "k", 1 */
#define KEY(lit) (lit), (sizeof(lit) - 1)

/* 2026-01-01T00:00:00Z in Unix milliseconds, as in tests/scenarios.rs. */
#define T0 INT64_C(1767225600000)
#define T0_S INT64_C(1767225600)

/* Largest valid now_ms: 2^42 - 2. */
#define MAX_TIME_MS ((INT64_C(1) << 42) - 2)

/* A byte pattern written over out-parameters before a call that must not touch them. */
#define SENTINEL 0xA5

/* Fill `count` structs at `p` with SENTINEL bytes, each keeping its `size` set to sizeof the
 * struct (as the library requires of every struct that grows; see sluice.h). */
#define SENTINEL_FILL(p, count)                                    \
    do {                                                           \
        memset((p), SENTINEL, sizeof(p)[0] * (size_t)(count));     \
        for (size_t fill_ = 0; fill_ < (size_t)(count); fill_++) { \
            (p)[fill_].size = sizeof(p)[0];                        \
        }                                                          \
    } while (0)

/* The `size` of a batch request, first in each request's initialiser. */
#define RQ sizeof(struct sluice_request)

/* policies/default.policy, verbatim. */
static const char DEFAULT_POLICY[] =
    "# sluice default policy: per-client limits for an HTTP API with route categories.\n"
    "# requests per sliding window; `global` applies to every category\n"
    "global     300/1m\n"
    "media       60/1m\n"
    "analytics  120/1m\n"
    "write       30/1m\n"
    "write      500/1h\n"
    "auth        10/1m\n"
    "# 5 failed attempts within 15 minutes lock the key for 15 minutes,\n"
    "# doubling on each further lockout, at most 24 hours\n"
    "auth       lockout 5/15m for 15m..24h\n"
    "capacity   65536\n";

/* Open a limiter that must open; aborts the suite if it does not (nothing else can run). */
static struct sluice *open_ok(const char *policy) {
    struct sluice *s = NULL;
    char err[256] = {0};
    int rc = sluice_open(policy, NULL, &s, err, sizeof err);
    if (rc != SLUICE_OK || s == NULL) {
        fprintf(stderr, "sluice_open failed (%d, %s) for policy:\n%s\n", rc, err, policy);
        fprintf(stderr, "%d passed, %d failed\n", g_passed, g_failed + 1);
        exit(1);
    }
    return s;
}

static int category_ok(const struct sluice *s, const char *name) {
    int id = sluice_category(s, name);
    if (id < 0) {
        fprintf(stderr, "sluice_category(%s) failed: %d\n", name, id);
        fprintf(stderr, "%d passed, %d failed\n", g_passed, g_failed + 1);
        exit(1);
    }
    return id;
}

/* Fields of two decisions equal (not memcmp: the struct has padding). */
static int decision_eq(const struct sluice_decision *a, const struct sluice_decision *b) {
    return a->allowed == b->allowed && a->status == b->status && a->limit == b->limit &&
           a->remaining == b->remaining && a->reset_after == b->reset_after &&
           a->reset == b->reset && a->retry_after == b->retry_after && a->rule == b->rule &&
           a->window_ms == b->window_ms;
}

/* Wall clock in Unix milliseconds, as the library's SLUICE_NOW reads it. */
static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Calls that must fail and leave `*out` as it was: the out-parameter is filled with a
 * sentinel pattern first and compared byte for byte afterwards. */
typedef int (*decide_fn)(const struct sluice *, int, const void *, size_t, int64_t,
                         struct sluice_decision *);

static void check_decide_error(const char *file, int line, decide_fn fn, const struct sluice *s,
                               int category, const void *key, size_t key_len, int64_t now,
                               int use_out, int expected_rc) {
    struct sluice_decision d, pristine;
    d.size = sizeof d;
    pristine.size = sizeof pristine;
    SENTINEL_FILL(&d, 1);
    SENTINEL_FILL(&pristine, 1);
    int rc = fn(s, category, key, key_len, now, use_out ? &d : NULL);
    if (rc == expected_rc) {
        g_passed++;
    } else {
        g_failed++;
        fprintf(stderr, "%s:%d: expected return code %d (%s), got %d (%s)\n", file, line,
                expected_rc, sluice_strerror(expected_rc), rc, sluice_strerror(rc));
    }
    if (!use_out) {
        return; /* no out-parameter was passed: nothing to compare */
    }
    if (memcmp(&d, &pristine, sizeof d) == 0) {
        g_passed++;
    } else {
        g_failed++;
        fprintf(stderr, "%s:%d: out-parameter was written by a failing call\n", file, line);
    }
}
/* CHECK_DECIDE_ERROR(fn, handle, category, key, key_len, now, use_out, expected_rc); the key
 * and its length may come from one KEY("...") (hence variadic). */
#define CHECK_DECIDE_ERROR(fn, s, cat, ...) \
    check_decide_error(__FILE__, __LINE__, (fn), (s), (cat), __VA_ARGS__)

/* ---- sluice_version / sluice_strerror ------------------------------------------------ */

static void test_version(void) {
    const char *v = sluice_version();
    CHECK(v != NULL);
    CHECK_STR(v, SLUICE_VERSION);
    char built[64];
    snprintf(built, sizeof built, "%d.%d.%d", SLUICE_VERSION_MAJOR, SLUICE_VERSION_MINOR,
             SLUICE_VERSION_PATCH);
    CHECK_STR(SLUICE_VERSION, built);
    CHECK(sluice_version() == v); /* static: the same pointer every time */

    /* The shipped default policy opens, and its write rule is 30/1m. */
    const char *policy = sluice_default_policy();
    CHECK(policy != NULL && strstr(policy, "write       30/1m") != NULL);
    struct sluice *s = NULL;
    CHECK_EQ(sluice_open(policy, NULL, &s, NULL, 0), SLUICE_OK);
    struct sluice_decision d;
    d.size = sizeof d;
    CHECK_EQ(sluice_check(s, sluice_category(s, "write"), "k", 1, T0, &d), SLUICE_OK);
    CHECK_EQ(d.limit, 30u);
    CHECK_EQ(d.remaining, 29u);
    sluice_close(s);
}

static void test_strerror(void) {
    static const int codes[] = {
        SLUICE_OK,          SLUICE_ERR_NULL,           SLUICE_ERR_UTF8,
        SLUICE_ERR_EMPTY_KEY, SLUICE_ERR_KEY_TOO_LONG, SLUICE_ERR_TIME,
        SLUICE_ERR_ARGUMENT, SLUICE_ERR_POLICY,        SLUICE_ERR_POLICY_TOO_LARGE,
        SLUICE_ERR_UNKNOWN_CATEGORY, SLUICE_ERR_NO_LOCKOUT, SLUICE_ERR_IO,
        SLUICE_ERR_UNSUPPORTED, SLUICE_ERR_NOT_A_TABLE, SLUICE_ERR_FORMAT_VERSION,
        SLUICE_ERR_POLICY_MISMATCH, SLUICE_ERR_NO_TABLE, SLUICE_ERR_PANIC,
        SLUICE_ERR_SIZE,    SLUICE_ERR_READ_ONLY,      SLUICE_ERR_MIGRATION,
    };
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *m = sluice_strerror(codes[i]);
        CHECK(m != NULL && m[0] != '\0');
        CHECK(m != NULL && strcmp(m, "unknown error code") != 0);
        /* every code has its own message */
        for (size_t j = 0; j < i; j++) {
            CHECK(strcmp(m, sluice_strerror(codes[j])) != 0);
        }
    }
    CHECK_STR(sluice_strerror(SLUICE_OK), "success");
    CHECK_STR(sluice_strerror(SLUICE_ERR_EMPTY_KEY), "empty key: keys are 1 to 65535 bytes");
    static const int unknown[] = {1, 42, -8, -12, -22, -38, -100, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK_STR(sluice_strerror(unknown[i]), "unknown error code");
    }
}

/* ---- sluice_open / sluice_close ------------------------------------------------------ */

static void test_open(void) {
    char err[512];
    static int dummy;
    struct sluice *const untouched = (struct sluice *)(void *)&dummy; /* never dereferenced */

    /* The default policy opens; the handle is usable and closes. */
    struct sluice *s = NULL;
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open(DEFAULT_POLICY, NULL, &s, err, sizeof err), SLUICE_OK);
    CHECK(s != NULL);
    sluice_close(s);

    /* err_buf may be NULL on success. */
    s = NULL;
    CHECK_EQ(sluice_open("global 1/1s", NULL, &s, NULL, 0), SLUICE_OK);
    CHECK(s != NULL);
    sluice_close(s);

    /* An invalid policy: SLUICE_ERR_POLICY, line and column in the message, out untouched. */
    s = untouched;
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open("global 300/1 minute", NULL, &s, err, sizeof err), SLUICE_ERR_POLICY);
    CHECK(s == untouched);
    CHECK(memchr(err, '\0', sizeof err) != NULL);
    CHECK_STR(err, "invalid policy: line 1, column 12: expected a duration such as 1m or 30s, "
                   "found \"1 minute\"");
    CHECK_CONTAINS(err, "line 1, column 12");

    /* The error names the right line when it is not the first. */
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open("global 300/1m\n# comment\nwrite 30/1 minute\n", NULL, &s, err,
                         sizeof err),
             SLUICE_ERR_POLICY);
    CHECK(s == untouched);
    CHECK_CONTAINS(err, "line 3, column 10");

    /* An invalid policy with no error buffer: just the code. */
    CHECK_EQ(sluice_open("global 300/1 minute", NULL, &s, NULL, 0), SLUICE_ERR_POLICY);
    CHECK_EQ(sluice_open("global 300/1 minute", NULL, &s, NULL, 100), SLUICE_ERR_POLICY);
    CHECK(s == untouched);

    /* NULL policy. */
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open(NULL, NULL, &s, err, sizeof err), SLUICE_ERR_NULL);
    CHECK(s == untouched);
    CHECK_CONTAINS(err, "policy is NULL");

    /* NULL out. */
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open(DEFAULT_POLICY, NULL, NULL, err, sizeof err), SLUICE_ERR_NULL);
    CHECK_CONTAINS(err, "out is NULL");

    /* An empty path is an argument error, not a file in the current directory. */
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open(DEFAULT_POLICY, "", &s, err, sizeof err), SLUICE_ERR_ARGUMENT);
    CHECK(s == untouched);
    CHECK_CONTAINS(err, "path is empty");

    /* Policy text that is not UTF-8. */
    CHECK_EQ(sluice_open("global 1/1s\n# \xff\xfe\n", NULL, &s, err, sizeof err),
             SLUICE_ERR_UTF8);
    CHECK(s == untouched);

    /* Parses but cannot be laid out: 17 window rules for one category (at most 16). */
    {
        char many[1024] = {0};
        for (int i = 1; i <= 17; i++) {
            char line[32];
            snprintf(line, sizeof line, "global %d/%ds\n", i, i);
            strcat(many, line);
        }
        memset(err, 'Z', sizeof err);
        CHECK_EQ(sluice_open(many, NULL, &s, err, sizeof err), SLUICE_ERR_POLICY_TOO_LARGE);
        CHECK(s == untouched);
        CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
    }

    /* A tiny err_cap truncates and still NUL-terminates; nothing past err_cap is written. */
    {
        char small[16];
        memset(small, 'Z', sizeof small);
        CHECK_EQ(sluice_open("global 300/1 minute", NULL, &s, small, 8), SLUICE_ERR_POLICY);
        CHECK_STR(small, "invalid"); /* 7 bytes and a NUL */
        CHECK(small[8] == 'Z' && small[15] == 'Z');

        memset(small, 'Z', sizeof small);
        CHECK_EQ(sluice_open("global 300/1 minute", NULL, &s, small, 1), SLUICE_ERR_POLICY);
        CHECK(small[0] == '\0');
        CHECK(small[1] == 'Z');

        memset(small, 'Z', sizeof small);
        CHECK_EQ(sluice_open("global 300/1 minute", NULL, &s, small, 0), SLUICE_ERR_POLICY);
        CHECK(small[0] == 'Z'); /* err_cap 0: nothing written */
        CHECK(s == untouched);
    }

    /* Truncation never splits a UTF-8 character of the message. */
    {
        char full[512], cut[512];
        const char *bad = "global 300/\xc3\xa9t\xc3\xa9"; /* "été" */
        CHECK_EQ(sluice_open(bad, NULL, &s, full, sizeof full), SLUICE_ERR_POLICY);
        const char *e_acute = strstr(full, "\xc3\xa9");
        CHECK(e_acute != NULL);
        if (e_acute != NULL) {
            size_t pos = (size_t)(e_acute - full);
            /* room for pos bytes + half of the 2-byte character + NUL */
            memset(cut, 'Z', sizeof cut);
            CHECK_EQ(sluice_open(bad, NULL, &s, cut, pos + 2), SLUICE_ERR_POLICY);
            CHECK_EQ(strlen(cut), pos);
            CHECK(strncmp(cut, full, pos) == 0);
            /* room for the whole character */
            memset(cut, 'Z', sizeof cut);
            CHECK_EQ(sluice_open(bad, NULL, &s, cut, pos + 3), SLUICE_ERR_POLICY);
            CHECK_EQ(strlen(cut), pos + 2);
        }
        CHECK(s == untouched);
    }

    /* The empty policy is valid: only the (rule-less) global category. */
    s = NULL;
    CHECK_EQ(sluice_open("", NULL, &s, err, sizeof err), SLUICE_OK);
    CHECK(s != NULL);
    sluice_close(s);

    /* Closing NULL does nothing: in a child (so that a crash is a failed check, not the end
     * of the suite), it returns, twice, and the child exits normally; in this process, a
     * handle open around it is unaffected. */
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        sluice_close(NULL);
        sluice_close(NULL);
        _exit(42);
    }
    int status = 0;
    CHECK_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);
    s = open_ok("global 1/1m");
    struct sluice_decision d;
    d.size = sizeof d;
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0, &d), SLUICE_OK);
    sluice_close(NULL);
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 1, &d), SLUICE_OK);
    CHECK_EQ(d.allowed, 0); /* the same table: the first check still counts */
    sluice_close(s);
}

/* ---- sluice_open_flags ----------------------------------------------------------------- */

/* How many mappings of this process are advised for transparent huge pages ("hg" among the
 * VmFlags of /proc/self/smaps), or -1 if that cannot be read. */
static int huge_page_mappings(void) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (f == NULL) {
        return -1;
    }
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " hg") != NULL) {
            n++;
        }
    }
    fclose(f);
    return n;
}

static void test_open_flags(void) {
    char err[512];
    static int dummy;
    struct sluice *const untouched = (struct sluice *)(void *)&dummy; /* never dereferenced */
    const char *policy = "global 10/1s\ncapacity 100000";
    struct sluice_decision d;
    d.size = sizeof d;
    /* A kernel built without transparent huge pages takes no advice (and shows no "hg"). */
    const int thp = access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0;
    const int before = huge_page_mappings();

    /* Flags 0: what sluice_open does, no huge pages asked for. */
    struct sluice *s = NULL;
    CHECK_EQ(sluice_open_flags(policy, NULL, 0, &s, err, sizeof err), SLUICE_OK);
    CHECK(s != NULL);
    if (before >= 0) {
        CHECK_EQ(huge_page_mappings(), before);
    }
    sluice_close(s);

    /* SLUICE_OPEN_HUGE_PAGES: the table's one mapping is advised, and it decides as any. */
    s = NULL;
    CHECK_EQ(sluice_open_flags(policy, NULL, SLUICE_OPEN_HUGE_PAGES, &s, err, sizeof err),
             SLUICE_OK);
    CHECK(s != NULL);
    if (before >= 0) {
        CHECK_EQ(huge_page_mappings(), before + (thp ? 1 : 0));
    }
    for (int i = 0; i < 11; i++) {
        CHECK_EQ(sluice_check(s, 0, "198.51.100.7", 12, 1767225600000 + i, &d), SLUICE_OK);
        CHECK_EQ(d.allowed, i < 10);
    }
    sluice_close(s);
    if (before >= 0) {
        CHECK_EQ(huge_page_mappings(), before); /* unmapped by close */
    }

    /* Bits the library does not know: SLUICE_ERR_ARGUMENT naming them, out untouched. */
    s = untouched;
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open_flags(policy, NULL, 0xd, &s, err, sizeof err), SLUICE_ERR_ARGUMENT);
    CHECK(s == untouched);
    CHECK_STR(err, "sluice_open_flags: unknown flag bits 0xc in flags 0xd "
                   "(known: SLUICE_OPEN_HUGE_PAGES = 0x1, SLUICE_OPEN_READ_ONLY = 0x2)");

    /* Messages name the function called. */
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open_flags(NULL, NULL, SLUICE_OPEN_HUGE_PAGES, &s, err, sizeof err),
             SLUICE_ERR_NULL);
    CHECK(s == untouched);
    CHECK_CONTAINS(err, "sluice_open_flags: policy is NULL");

    /* With a path: bad flags create nothing; good ones give the same shared table as
     * sluice_open. */
    char dir[] = "/tmp/sluice-c-flags-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/t.sluice", dir);
    CHECK_EQ(sluice_open_flags("global 1/1m", path, 0x80000000u, &s, err, sizeof err),
             SLUICE_ERR_ARGUMENT);
    CHECK(s == untouched);
    CHECK(access(path, F_OK) != 0);
    CHECK_CONTAINS(err, "unknown flag bits 0x80000000");

    struct sluice *a = NULL, *b = NULL;
    CHECK_EQ(sluice_open_flags("global 1/1m", path, SLUICE_OPEN_HUGE_PAGES, &a, err, sizeof err),
             SLUICE_OK);
    CHECK_EQ(sluice_open(NULL, path, &b, err, sizeof err), SLUICE_OK);
    if (a != NULL && b != NULL) {
        CHECK_EQ(sluice_check(a, 0, "k", 1, 1767225600000, &d), SLUICE_OK);
        CHECK_EQ(d.allowed, 1);
        CHECK_EQ(sluice_check(b, 0, "k", 1, 1767225600001, &d), SLUICE_OK);
        CHECK_EQ(d.allowed, 0); /* one table: the other handle's request counts */
    }
    sluice_close(a);
    sluice_close(b);
    CHECK_EQ(unlink(path), 0);
    CHECK_EQ(rmdir(dir), 0);
}

/* ---- sluice_category ----------------------------------------------------------------- */

/* ---- tables shared through a file ------------------------------------------------------ */

static void test_shared_file(void) {
    char dir[] = "/tmp/sluice-c-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], zeros[256], missing[256];
    snprintf(path, sizeof path, "%s/t.sluice", dir);
    snprintf(zeros, sizeof zeros, "%s/zeros.sluice", dir);
    snprintf(missing, sizeof missing, "%s/no/such/dir/t.sluice", dir);
    const char *policy = "global 2/1m\ncapacity 100\n";
    char err[512];
    struct sluice_decision d;
    d.size = sizeof d;

    /* Created on first open, mode 0600. */
    sluice *a = NULL;
    CHECK_EQ(sluice_open(policy, path, &a, err, sizeof err), SLUICE_OK);
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(sluice_check(a, 0, "k", 1, T0, &d), SLUICE_OK);
    CHECK(d.allowed);

    /* A second handle on the same path (NULL policy: the file's own) shares the limits. */
    sluice *b = NULL;
    CHECK_EQ(sluice_open(NULL, path, &b, err, sizeof err), SLUICE_OK);
    CHECK_STR(sluice_policy(b), policy); /* the policy stored in the file */
    CHECK_STR(sluice_policy(a), policy);
    CHECK(sluice_policy(NULL) == NULL);
    CHECK_EQ(sluice_check(b, 0, "k", 1, T0 + 1, &d), SLUICE_OK);
    CHECK(d.allowed);
    CHECK_EQ(d.remaining, 0u);
    CHECK_EQ(sluice_check(a, 0, "k", 1, T0 + 2, &d), SLUICE_OK);
    CHECK(!d.allowed);
    sluice_close(a);
    sluice_close(b);

    /* Closed and reopened: the state is still there. */
    CHECK_EQ(sluice_open(policy, path, &a, err, sizeof err), SLUICE_OK);
    CHECK_EQ(sluice_peek(a, 0, "k", 1, T0 + 3, &d), SLUICE_OK);
    CHECK(!d.allowed);
    sluice_close(a);

    /* Another policy: refused, naming the path and the rule. */
    sluice *untouched = (sluice *)&untouched;
    sluice *s = untouched;
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open("global 3/1m\ncapacity 100\n", path, &s, err, sizeof err),
             SLUICE_ERR_POLICY_MISMATCH);
    CHECK(s == untouched);
    CHECK_CONTAINS(err, path);
    CHECK_CONTAINS(err, "`global 2/1m` where the given one has `global 3/1m`");

    /* A file of zeros: not a table, and left as it was. */
    FILE *f = fopen(zeros, "wb");
    CHECK(f != NULL);
    static const char nothing[4096];
    CHECK_EQ(fwrite(nothing, 1, sizeof nothing, f), sizeof nothing);
    fclose(f);
    CHECK_EQ(sluice_open(policy, zeros, &s, err, sizeof err), SLUICE_ERR_NOT_A_TABLE);
    CHECK_CONTAINS(err, "all zeros");
    CHECK_EQ(stat(zeros, &st), 0);
    CHECK_EQ(st.st_size, 4096);

    /* A missing directory; a missing file without a policy. */
    CHECK_EQ(sluice_open(policy, missing, &s, err, sizeof err), SLUICE_ERR_IO);
    CHECK_CONTAINS(err, "does the directory exist");
    snprintf(missing, sizeof missing, "%s/absent.sluice", dir);
    CHECK_EQ(sluice_open(NULL, missing, &s, err, sizeof err), SLUICE_ERR_NO_TABLE);
    CHECK_CONTAINS(err, "no policy was given");
    CHECK(s == untouched);

    unlink(path);
    unlink(zeros);
    rmdir(dir);
}

static void test_category(void) {
    struct sluice *s = open_ok(DEFAULT_POLICY);
    CHECK_EQ(sluice_category(s, "global"), 0);
    CHECK_EQ(sluice_category(s, "media"), 1);
    CHECK_EQ(sluice_category(s, "analytics"), 2);
    CHECK_EQ(sluice_category(s, "write"), 3);
    CHECK_EQ(sluice_category(s, "auth"), 4);
    CHECK_EQ(sluice_category(s, "uploads"), SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_EQ(sluice_category(s, ""), SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_EQ(sluice_category(s, "Global"), SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_EQ(sluice_category(s, "auth "), SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_EQ(sluice_category(s, NULL), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_category(NULL, "global"), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_category(NULL, NULL), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_category(s, "\xff"), SLUICE_ERR_UTF8);
    sluice_close(s);

    /* "global" is 0 even when the policy never mentions it. */
    s = open_ok("write 2/1m\nwrite 500/1h");
    CHECK_EQ(sluice_category(s, "global"), 0);
    CHECK_EQ(sluice_category(s, "write"), 1);
    CHECK_EQ(sluice_category(s, "auth"), SLUICE_ERR_UNKNOWN_CATEGORY);
    sluice_close(s);

    s = open_ok("");
    CHECK_EQ(sluice_category(s, "global"), 0);
    sluice_close(s);
}

/* ---- sluice_describe_category / sluice_describe_rule ------------------------------------ */

static void test_describe(void) {
    struct sluice *s = open_ok("global 300/1m\n"
                               "auth 10/1m strict\n"
                               "auth lockout 5/15m for 15m..24h\n"
                               "media 60/1m dry-run\n"
                               "login lockout 3/1m for 10m\n");
    struct sluice_category_info c;
    struct sluice_rule_info r;

    c.size = sizeof c;
    CHECK_EQ(sluice_describe_category(s, 0, &c), SLUICE_OK);
    CHECK_EQ(c.size, sizeof c);
    CHECK_STR(c.name, "global");
    CHECK_EQ(c.rules, 1);
    CHECK_EQ(c.lockout_rule, -1);
    CHECK_EQ(sluice_describe_category(s, sluice_category(s, "auth"), &c), SLUICE_OK);
    CHECK_STR(c.name, "auth");
    CHECK_EQ(c.rules, 2); /* global 300/1m and its own 10/1m */
    CHECK_EQ(c.lockout_rule, 2);
    CHECK_EQ(sluice_describe_category(s, sluice_category(s, "media"), &c), SLUICE_OK);
    CHECK_EQ(c.lockout_rule, -1);
    CHECK_EQ(sluice_describe_category(s, sluice_category(s, "login"), &c), SLUICE_OK);
    CHECK_EQ(c.rules, 1);
    CHECK_EQ(c.lockout_rule, 4);

    r.size = sizeof r;
    CHECK_EQ(sluice_describe_rule(s, 1, &r), SLUICE_OK);
    CHECK_EQ(r.size, sizeof r);
    CHECK_STR(r.category_name, "auth");
    CHECK_EQ(r.category, sluice_category(s, "auth"));
    CHECK_EQ(r.kind, SLUICE_RULE_WINDOW);
    CHECK_EQ(r.flags, SLUICE_RULE_STRICT);
    CHECK_EQ(r.limit, 10);
    CHECK_EQ(r.window_ms, 60000);
    CHECK_EQ(r.ban_ms, 0);
    CHECK_EQ(r.line, 2);
    CHECK_EQ(sluice_describe_rule(s, 2, &r), SLUICE_OK);
    CHECK_EQ(r.kind, SLUICE_RULE_LOCKOUT);
    CHECK_EQ(r.flags, 0);
    CHECK_EQ(r.limit, 5);
    CHECK_EQ(r.window_ms, 15 * 60000);
    CHECK_EQ(r.ban_ms, 15 * 60000);
    CHECK_EQ(r.max_ban_ms, 24 * 3600000LL);
    CHECK_EQ(sluice_describe_rule(s, 3, &r), SLUICE_OK);
    CHECK_STR(r.category_name, "media");
    CHECK_EQ(r.flags, SLUICE_RULE_DRY_RUN);
    CHECK_EQ(sluice_describe_rule(s, 4, &r), SLUICE_OK);
    CHECK_EQ(r.max_ban_ms, r.ban_ms); /* no escalation */
    CHECK_EQ(r.line, 5);

    /* Bad input: an error code, nothing written. */
    struct sluice_rule_info pristine;
    memset(&r, SENTINEL, sizeof r);
    r.size = sizeof r;
    pristine = r;
    CHECK_EQ(sluice_describe_rule(s, 5, &r), SLUICE_ERR_ARGUMENT);
    CHECK_EQ(sluice_describe_rule(s, -1, &r), SLUICE_ERR_ARGUMENT);
    CHECK_EQ(sluice_describe_rule(NULL, 0, &r), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_describe_rule(s, 0, NULL), SLUICE_ERR_NULL);
    CHECK(memcmp(&r, &pristine, sizeof r) == 0);
    r.size = 0;
    CHECK_EQ(sluice_describe_rule(s, 0, &r), SLUICE_ERR_SIZE);
    CHECK_EQ(sluice_describe_category(s, 5, &c), SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_EQ(sluice_describe_category(s, -1, &c), SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_EQ(sluice_describe_category(NULL, 0, &c), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_describe_category(s, 0, NULL), SLUICE_ERR_NULL);
    c.size = 4;
    CHECK_EQ(sluice_describe_category(s, 0, &c), SLUICE_ERR_SIZE);

    /* Every rule is described, and the categories' counts add up with the table's. */
    struct sluice_table_stats st;
    st.size = sizeof st;
    CHECK_EQ(sluice_stats(s, T0, &st), SLUICE_OK);
    CHECK_EQ(st.rules, 5);
    CHECK_EQ(st.categories, 4);
    r.size = sizeof r;
    for (uint32_t i = 0; i < st.rules; i++) {
        CHECK_EQ(sluice_describe_rule(s, (int32_t)i, &r), SLUICE_OK);
        CHECK(r.category >= 0 && (uint32_t)r.category < st.categories);
    }
    sluice_close(s);
}

/* ---- sluice_check -------------------------------------------------------------------- */

static void test_check_sequence(void) {
    /* At most 3 requests in any 10 s window. */
    struct sluice *s = open_ok("global 3/10s");
    struct sluice_decision d;
    d.size = sizeof d;

    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 3, 2, 10, T0_S + 10, 0, 0, 10000);
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 1000, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 3, 1, 9, T0_S + 10, 0, 0, 10000);
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 2000, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 3, 0, 8, T0_S + 10, 0, 0, 10000);

    /* 1 ms before the first request leaves the window: refused, retry in 1 s. */
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 9999, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_LIMITED, 3, 0, 1, T0_S + 10, 1, 0, 10000);

    /* The refusal recorded nothing: exactly at T0 + 10 s one slot is free again. */
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 10000, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 3, 0, 1, T0_S + 11, 0, 0, 10000);

    /* Another key is independent. Keys are bytes: embedded NULs are fine. */
    CHECK_EQ(sluice_check(s, 0, KEY("k\0other"), T0 + 10000, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 3, 2, 10, T0_S + 20, 0, 0, 10000);
    sluice_close(s);

    /* The most restrictive rule decides; a refusal is logged by no rule. */
    s = open_ok("global 5/1m\nwrite 2/1m\nwrite 3/1h");
    int w = category_ok(s, "write");
    CHECK_EQ(w, 1);
    CHECK_EQ(sluice_check(s, w, KEY("k"), T0, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 2, 1, 60, T0_S + 60, 0, 1, 60000);
    CHECK_EQ(sluice_check(s, w, KEY("k"), T0 + 1, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 2, 0, 60, T0_S + 60, 0, 1, 60000);
    CHECK_EQ(sluice_check(s, w, KEY("k"), T0 + 2, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_LIMITED, 2, 0, 60, T0_S + 60, 60, 1, 60000);
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 3, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 5, 2, 60, T0_S + 60, 0, 0, 60000);
    /* A minute later the per-minute rule frees up; the hour rule has 2 of 3 logged. */
    CHECK_EQ(sluice_check(s, w, KEY("k"), T0 + 60001, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 3, 0, 3540, T0_S + 3600, 0, 2, 3600000);
    /* Refused by both write rules: the one with the largest retry_after (the hour) decides. */
    CHECK_EQ(sluice_check(s, w, KEY("k"), T0 + 120002, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_LIMITED, 3, 0, 3480, T0_S + 3600, 3480, 2, 3600000);
    sluice_close(s);

    /* A category without window rules: admitted, no rule. */
    s = open_ok("");
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 1, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 0, 0, 0, T0_S + 1, 0, -1, 0);
    sluice_close(s);
}

static void test_check_now(void) {
    struct sluice *s = open_ok("global 3/10s\nauth lockout 2/1m for 1m");
    struct sluice_decision d;
    d.size = sizeof d;
    time_t before = time(NULL);
    CHECK_EQ(sluice_check(s, 0, KEY("now"), SLUICE_NOW, &d), SLUICE_OK);
    time_t after = time(NULL);
    CHECK_EQ(d.allowed, 1);
    CHECK_EQ(d.remaining, 2);
    CHECK(d.reset >= (int64_t)before + 10 && d.reset <= (int64_t)after + 11);
    CHECK_EQ(d.reset_after, 10);

    /* SLUICE_NOW and explicit wall-clock times agree: two more fill the window. */
    CHECK_EQ(sluice_check(s, 0, KEY("now"), wall_ms(), &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 1);
    CHECK_EQ(sluice_peek(s, 0, KEY("now"), SLUICE_NOW, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 0);
    CHECK_EQ(sluice_check(s, 0, KEY("now"), SLUICE_NOW, &d), SLUICE_OK);
    CHECK_EQ(d.allowed, 1);
    CHECK_EQ(d.remaining, 0);
    CHECK_EQ(sluice_check(s, 0, KEY("now"), SLUICE_NOW, &d), SLUICE_OK);
    CHECK_EQ(d.allowed, 0);
    CHECK_EQ(d.status, SLUICE_STATUS_LIMITED);
    CHECK(d.retry_after >= 1 && d.retry_after <= 10);

    /* The lockout functions take SLUICE_NOW too. */
    int a = category_ok(s, "auth");
    CHECK_EQ(sluice_failure(s, a, KEY("now"), SLUICE_NOW, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 1);
    CHECK_EQ(sluice_success(s, a, KEY("now"), SLUICE_NOW), SLUICE_OK);
    CHECK_EQ(sluice_reset(s, a, KEY("now"), SLUICE_NOW), SLUICE_OK);
    sluice_close(s);
}

static void test_check_errors(void) {
    struct sluice *s = open_ok(DEFAULT_POLICY);
    struct sluice *other = open_ok("global 1/1s");
    struct sluice_decision d;
    d.size = sizeof d;

    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 299);

    decide_fn fns[] = {sluice_check, sluice_peek};
    for (size_t i = 0; i < 2; i++) {
        decide_fn fn = fns[i];
        /* empty key, with a real pointer and with a pointer to nothing */
        CHECK_DECIDE_ERROR(fn, s, 0, KEY(""), T0, 1, SLUICE_ERR_EMPTY_KEY);
        CHECK_DECIDE_ERROR(fn, s, 0, "k", 0, T0, 1, SLUICE_ERR_EMPTY_KEY);
        /* NULL key, out, handle */
        CHECK_DECIDE_ERROR(fn, s, 0, NULL, 1, T0, 1, SLUICE_ERR_NULL);
        CHECK_DECIDE_ERROR(fn, s, 0, NULL, 0, T0, 1, SLUICE_ERR_NULL);
        CHECK_DECIDE_ERROR(fn, s, 0, KEY("k"), T0, 0, SLUICE_ERR_NULL);
        CHECK_DECIDE_ERROR(fn, NULL, 0, KEY("k"), T0, 1, SLUICE_ERR_NULL);
        /* category ids that are not this policy's */
        CHECK_DECIDE_ERROR(fn, s, 5, KEY("k"), T0, 1, SLUICE_ERR_UNKNOWN_CATEGORY);
        CHECK_DECIDE_ERROR(fn, s, 99, KEY("k"), T0, 1, SLUICE_ERR_UNKNOWN_CATEGORY);
        CHECK_DECIDE_ERROR(fn, s, -1, KEY("k"), T0, 1, SLUICE_ERR_UNKNOWN_CATEGORY);
        CHECK_DECIDE_ERROR(fn, s, INT_MIN, KEY("k"), T0, 1, SLUICE_ERR_UNKNOWN_CATEGORY);
        CHECK_DECIDE_ERROR(fn, other, 1, KEY("k"), T0, 1, SLUICE_ERR_UNKNOWN_CATEGORY);
        /* times out of range */
        CHECK_DECIDE_ERROR(fn, s, 0, KEY("k"), -1, 1, SLUICE_ERR_TIME);
        CHECK_DECIDE_ERROR(fn, s, 0, KEY("k"), INT64_MIN + 1, 1, SLUICE_ERR_TIME);
        CHECK_DECIDE_ERROR(fn, s, 0, KEY("k"), MAX_TIME_MS + 1, 1, SLUICE_ERR_TIME);
        CHECK_DECIDE_ERROR(fn, s, 0, KEY("k"), INT64_MAX, 1, SLUICE_ERR_TIME);
    }

    /* Key length: 65535 bytes is the longest key, 65536 is too long. */
    uint8_t *long_key = malloc(65536);
    CHECK(long_key != NULL);
    if (long_key != NULL) {
        memset(long_key, 'x', 65536);
        CHECK_DECIDE_ERROR(sluice_check, s, 0, long_key, 65536, T0, 1, SLUICE_ERR_KEY_TOO_LONG);
        CHECK_DECIDE_ERROR(sluice_peek, s, 0, long_key, 65536, T0, 1, SLUICE_ERR_KEY_TOO_LONG);
        CHECK_DECIDE_ERROR(sluice_check, s, 0, long_key, SIZE_MAX, T0, 1,
                           SLUICE_ERR_KEY_TOO_LONG);
        CHECK_EQ(sluice_check(s, 0, long_key, 65535, T0, &d), SLUICE_OK);
        CHECK_EQ(d.allowed, 1);
        CHECK_EQ(d.remaining, 299);
        free(long_key);
    }

    /* The edges of the time range are valid. */
    CHECK_EQ(sluice_check(s, 0, KEY("t"), 0, &d), SLUICE_OK);
    CHECK_EQ(d.reset, 60);
    CHECK_EQ(sluice_check(s, 0, KEY("t"), MAX_TIME_MS, &d), SLUICE_OK);
    CHECK_EQ(d.allowed, 1);

    /* None of the failing calls recorded anything for "k": one request logged. */
    CHECK_EQ(sluice_peek(s, 0, KEY("k"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 298);

    sluice_close(other);
    sluice_close(s);
}

/* ---- sluice_peek --------------------------------------------------------------------- */

static void test_peek(void) {
    struct sluice *s = open_ok("global 2/1m");
    struct sluice_decision p, c;
    p.size = sizeof p;
    c.size = sizeof c;

    /* A key never seen: peek gives what check will give. */
    CHECK_EQ(sluice_peek(s, 0, KEY("k"), T0, &p), SLUICE_OK);
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0, &c), SLUICE_OK);
    CHECK(decision_eq(&p, &c));
    CHECK_DECISION(&p, 1, SLUICE_STATUS_PASSED, 2, 1, 60, T0_S + 60, 0, 0, 60000);

    /* Peeking any number of times records nothing. */
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(sluice_peek(s, 0, KEY("k"), T0 + 1, &p), SLUICE_OK);
        CHECK_EQ(p.allowed, 1);
        CHECK_EQ(p.remaining, 0);
    }
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 1, &c), SLUICE_OK);
    CHECK_EQ(c.allowed, 1);
    CHECK(decision_eq(&p, &c));

    /* Refused: peek and check agree, and neither records. */
    CHECK_EQ(sluice_peek(s, 0, KEY("k"), T0 + 2, &p), SLUICE_OK);
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 2, &c), SLUICE_OK);
    CHECK(decision_eq(&p, &c));
    CHECK_DECISION(&c, 0, SLUICE_STATUS_LIMITED, 2, 0, 60, T0_S + 60, 60, 0, 60000);

    /* A peeked key takes no slot; peeks count in no rule. */
    CHECK_EQ(sluice_peek(s, 0, KEY("never-checked"), T0, &p), SLUICE_OK);
    struct sluice_table_stats st;
    st.size = sizeof st;
    struct sluice_rule_counts rs;
    rs.size = sizeof rs;
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &st), SLUICE_OK);
    CHECK_EQ(st.live_keys, 1);
    CHECK_EQ(sluice_rule_stats(s, 0, &rs), SLUICE_OK);
    CHECK_EQ(rs.passed, 2);
    CHECK_EQ(rs.limited, 1);
    sluice_close(s);
}

/* ---- sluice_allow -------------------------------------------------------------------- */

static void test_allow(void) {
    /* 1 = may go ahead, 0 = not: the check's answer, recorded and counted as one. */
    struct sluice *s = open_ok("global 2/1m\nwrite 1/1m\nauth lockout 1/1m for 1m");
    const int write = category_ok(s, "write");
    const int auth = category_ok(s, "auth");
    struct sluice_decision d;
    d.size = sizeof d;
    CHECK_EQ(sluice_allow(s, 0, KEY("k"), T0), 1);
    CHECK_EQ(sluice_allow(s, 0, KEY("k"), T0 + 1), 1);
    CHECK_EQ(sluice_allow(s, 0, KEY("k"), T0 + 2), 0);
    /* What allow recorded is what a check sees: the window is full until T0 + 60 s. */
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 3, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_LIMITED, 2, 0, 60, T0_S + 60, 60, 0, 60000);
    CHECK_EQ(sluice_allow(s, 0, KEY("k"), T0 + 60000), 1);
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 60000, &d), SLUICE_OK);
    CHECK_EQ(d.allowed, 0);

    /* Several rules: the global one and the category's; a refusal is recorded by none. */
    CHECK_EQ(sluice_allow(s, write, KEY("w"), T0), 1);
    CHECK_EQ(sluice_allow(s, write, KEY("w"), T0 + 1), 0);
    CHECK_EQ(sluice_peek(s, 0, KEY("w"), T0 + 2, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 0); /* global: "w" at T0 logged, and this peek's own request */

    /* A locked key is refused. */
    CHECK_EQ(sluice_failure(s, auth, KEY("l"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK_EQ(sluice_allow(s, auth, KEY("l"), T0 + 1), 0);

    /* Counted as checks are: global passed k x3 + w, limited k x1 (allow) + k x2 (check). */
    struct sluice_rule_counts rs;
    rs.size = sizeof rs;
    CHECK_EQ(sluice_rule_stats(s, 0, &rs), SLUICE_OK);
    CHECK_EQ(rs.passed, 4);
    CHECK_EQ(rs.limited, 3);
    CHECK_EQ(sluice_rule_stats(s, 1, &rs), SLUICE_OK);
    CHECK_EQ(rs.passed, 1);
    CHECK_EQ(rs.limited, 1);
    CHECK_EQ(sluice_rule_stats(s, 2, &rs), SLUICE_OK);
    CHECK_EQ(rs.locked, 1);

    /* Errors as for sluice_check, and nothing recorded by a failing call. */
    CHECK_EQ(sluice_allow(NULL, 0, KEY("k"), T0), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_allow(s, 0, NULL, 1, T0), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_allow(s, 0, KEY(""), T0), SLUICE_ERR_EMPTY_KEY);
    CHECK_EQ(sluice_allow(s, 7, KEY("e"), T0), SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_EQ(sluice_allow(s, 0, KEY("e"), -1), SLUICE_ERR_TIME);
    CHECK_EQ(sluice_peek(s, 0, KEY("e"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 1);
    sluice_close(s);
}

/* ---- sluice_failure / sluice_success / sluice_reset ---------------------------------- */

static void test_lockout(void) {
    /* 3 failures within 15 minutes lock the key for 1 minute, doubling up to 4 minutes. */
    struct sluice *s = open_ok("auth 100/1m\nauth lockout 3/15m for 1m..4m");
    const int a = category_ok(s, "auth");
    CHECK_EQ(a, 1);
    struct sluice_decision d;
    d.size = sizeof d;
    struct sluice_rule_counts rs;
    rs.size = sizeof rs;

    /* Failures left before a lockout: 2, then 1; the third locks for 60 s. */
    CHECK_EQ(sluice_failure(s, a, KEY("u"), T0, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 3, 2, 900, T0_S + 900, 0, 1, 900000);
    CHECK_EQ(sluice_failure(s, a, KEY("u"), T0 + 1, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 3, 1, 900, T0_S + 900, 0, 1, 900000);
    CHECK_EQ(sluice_failure(s, a, KEY("u"), T0 + 2, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_LOCKED, 3, 0, 60, T0_S + 61, 60, 1, 900000);

    /* Locked: check refuses with the rest of the lock and charges nothing. */
    CHECK_EQ(sluice_check(s, a, KEY("u"), T0 + 30002, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_LOCKED, 3, 0, 30, T0_S + 61, 30, 1, 900000);
    /* peek says the same */
    CHECK_EQ(sluice_peek(s, a, KEY("u"), T0 + 30002, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_LOCKED, 3, 0, 30, T0_S + 61, 30, 1, 900000);
    /* a failure while locked neither counts nor extends the lock */
    CHECK_EQ(sluice_failure(s, a, KEY("u"), T0 + 30002, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_LOCKED, 3, 0, 30, T0_S + 61, 30, 1, 900000);
    /* 1 ms before the end: still locked, retry_after at least 1 */
    CHECK_EQ(sluice_check(s, a, KEY("u"), T0 + 60001, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK_EQ(d.retry_after, 1);

    /* Another category of the same key is not locked. */
    CHECK_EQ(sluice_check(s, 0, KEY("u"), T0 + 30002, &d), SLUICE_OK);
    CHECK_EQ(d.allowed, 1);

    CHECK_EQ(sluice_rule_stats(s, 1, &rs), SLUICE_OK);
    CHECK_EQ(rs.lockouts, 1);
    CHECK_EQ(rs.locked, 2); /* the two checks while locked (not the peek) */
    CHECK_EQ(sluice_rule_stats(s, 0, &rs), SLUICE_OK);
    CHECK_EQ(rs.passed, 0); /* the checks while locked charged nothing */

    /* The lock ends: admitted. The second lockout doubles the ban to 120 s. */
    int64_t t = T0 + 60002;
    CHECK_EQ(sluice_check(s, a, KEY("u"), t, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_PASSED, 100, 99, 60, T0_S + 121, 0, 0, 60000);
    CHECK_EQ(sluice_failure(s, a, KEY("u"), t, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 2);
    CHECK_EQ(sluice_failure(s, a, KEY("u"), t + 1, &d), SLUICE_OK);
    CHECK_EQ(sluice_failure(s, a, KEY("u"), t + 2, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_LOCKED, 3, 0, 120, T0_S + 181, 120, 1, 900000);

    /* reset (the support desk's unlock) clears the lock and its level. */
    CHECK_EQ(sluice_reset(s, a, KEY("u"), t + 3), SLUICE_OK);
    CHECK_EQ(sluice_check(s, a, KEY("u"), t + 4, &d), SLUICE_OK);
    CHECK_EQ(d.allowed, 1);
    CHECK_EQ(d.status, SLUICE_STATUS_PASSED);
    CHECK_EQ(d.remaining, 99); /* the auth rule's log was cleared too */
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(sluice_failure(s, a, KEY("u"), t + 10 + i, &d), SLUICE_OK);
    }
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK_EQ(d.retry_after, 60); /* back to the first ban */

    /* success clears the failure log: after 2 failures and a success, 2 are left again. */
    CHECK_EQ(sluice_failure(s, a, KEY("v"), T0, &d), SLUICE_OK);
    CHECK_EQ(sluice_failure(s, a, KEY("v"), T0 + 1, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 1);
    CHECK_EQ(sluice_success(s, a, KEY("v"), T0 + 2), SLUICE_OK);
    CHECK_EQ(sluice_failure(s, a, KEY("v"), T0 + 3, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 2);
    /* success on a key never seen is fine; so is reset */
    CHECK_EQ(sluice_success(s, a, KEY("nobody"), T0), SLUICE_OK);
    CHECK_EQ(sluice_reset(s, a, KEY("nobody"), T0), SLUICE_OK);
    CHECK_EQ(sluice_reset(s, 0, KEY("nobody"), T0), SLUICE_OK);

    /* failure/success on a category without a lockout: SLUICE_ERR_NO_LOCKOUT. */
    CHECK_DECIDE_ERROR(sluice_failure, s, 0, KEY("u"), T0, 1, SLUICE_ERR_NO_LOCKOUT);
    CHECK_EQ(sluice_success(s, 0, KEY("u"), T0), SLUICE_ERR_NO_LOCKOUT);

    /* Argument errors of failure (out untouched), success and reset. */
    CHECK_DECIDE_ERROR(sluice_failure, NULL, a, KEY("u"), T0, 1, SLUICE_ERR_NULL);
    CHECK_DECIDE_ERROR(sluice_failure, s, a, NULL, 1, T0, 1, SLUICE_ERR_NULL);
    CHECK_DECIDE_ERROR(sluice_failure, s, a, KEY("u"), T0, 0, SLUICE_ERR_NULL);
    CHECK_DECIDE_ERROR(sluice_failure, s, a, KEY(""), T0, 1, SLUICE_ERR_EMPTY_KEY);
    CHECK_DECIDE_ERROR(sluice_failure, s, 7, KEY("u"), T0, 1, SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_DECIDE_ERROR(sluice_failure, s, a, KEY("u"), -5, 1, SLUICE_ERR_TIME);
    CHECK_EQ(sluice_success(NULL, a, KEY("u"), T0), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_success(s, a, NULL, 1, T0), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_success(s, a, KEY(""), T0), SLUICE_ERR_EMPTY_KEY);
    CHECK_EQ(sluice_success(s, 7, KEY("u"), T0), SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_EQ(sluice_success(s, a, KEY("u"), -5), SLUICE_ERR_TIME);
    CHECK_EQ(sluice_reset(NULL, a, KEY("u"), T0), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_reset(s, a, NULL, 1, T0), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_reset(s, a, KEY(""), T0), SLUICE_ERR_EMPTY_KEY);
    CHECK_EQ(sluice_reset(s, -1, KEY("u"), T0), SLUICE_ERR_UNKNOWN_CATEGORY);
    CHECK_EQ(sluice_reset(s, a, KEY("u"), MAX_TIME_MS + 1), SLUICE_ERR_TIME);

    /* None of the failing calls above touched "u" (locked since t + 12 for 60 s). */
    CHECK_EQ(sluice_check(s, a, KEY("u"), t + 13, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK_EQ(d.retry_after, 60);
    CHECK_EQ(sluice_rule_stats(s, 1, &rs), SLUICE_OK);
    CHECK_EQ(rs.lockouts, 3);
    sluice_close(s);

    /* locked_keys is judged at the wall clock (sluice_stats has no time argument), so this
     * part uses wall-clock times. */
    s = open_ok("global 10/1m\nauth lockout 2/1m for 1h");
    const int a2 = category_ok(s, "auth");
    struct sluice_table_stats st;
    st.size = sizeof st;
    int64_t now = wall_ms();
    CHECK_EQ(sluice_failure(s, a2, KEY("x"), now, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 1);
    CHECK_EQ(sluice_failure(s, a2, KEY("x"), now + 1, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK_EQ(d.retry_after, 3600);
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &st), SLUICE_OK);
    CHECK_EQ(st.live_keys, 1);
    CHECK_EQ(st.locked_keys, 1);
    CHECK_EQ(sluice_reset(s, a2, KEY("x"), now + 2), SLUICE_OK);
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &st), SLUICE_OK);
    CHECK_EQ(st.live_keys, 1);
    CHECK_EQ(st.locked_keys, 0);
    CHECK_EQ(sluice_check(s, a2, KEY("x"), now + 3, &d), SLUICE_OK);
    CHECK_EQ(d.allowed, 1);
    sluice_close(s);
}

/* ---- sluice_check_batch -------------------------------------------------------------- */

static void test_batch(void) {
    struct sluice *s = open_ok(DEFAULT_POLICY);
    const int media = category_ok(s, "media");
    const int write = category_ok(s, "write");
    struct sluice_decision out[8], pristine[8], d;
    for (size_t i_ = 0; i_ < sizeof out / sizeof out[0]; i_++) {
        out[i_].size = sizeof out[i_];
    }
    for (size_t i_ = 0; i_ < sizeof pristine / sizeof pristine[0]; i_++) {
        pristine[i_].size = sizeof pristine[i_];
    }
    d.size = sizeof d;
    SENTINEL_FILL(pristine, 8);

    /* n = 0: fine, with or without arrays; nothing written. */
    SENTINEL_FILL(out, 8);
    CHECK_EQ(sluice_check_batch(s, NULL, 0, T0, NULL, NULL), SLUICE_OK);
    struct sluice_request one = {RQ, 0, KEY("k")};
    CHECK_EQ(sluice_check_batch(s, &one, 0, T0, out, NULL), SLUICE_OK);
    CHECK(memcmp(out, pristine, sizeof out) == 0);
    CHECK_EQ(sluice_check_batch(NULL, NULL, 0, T0, NULL, NULL), SLUICE_ERR_NULL);

    /* Mixed keys and categories, all at T0; "a" twice in media. */
    struct sluice_request reqs[] = {
        {RQ, media, KEY("a")},
        {RQ, write, KEY("b")},
        {RQ, 0, KEY("c")},
        {RQ, media, KEY("a")},
    };
    CHECK_EQ(sluice_check_batch(s, reqs, 4, T0, out, NULL), SLUICE_OK);
    CHECK_DECISION(&out[0], 1, SLUICE_STATUS_PASSED, 60, 59, 60, T0_S + 60, 0, 1, 60000);
    CHECK_DECISION(&out[1], 1, SLUICE_STATUS_PASSED, 30, 29, 60, T0_S + 60, 0, 3, 60000);
    CHECK_DECISION(&out[2], 1, SLUICE_STATUS_PASSED, 300, 299, 60, T0_S + 60, 0, 0, 60000);
    CHECK_DECISION(&out[3], 1, SLUICE_STATUS_PASSED, 60, 58, 60, T0_S + 60, 0, 1, 60000);
    CHECK(memcmp(&out[4], pristine, 4 * sizeof out[0]) == 0); /* only n were written */
    /* They were recorded, as by sluice_check. */
    CHECK_EQ(sluice_peek(s, media, KEY("a"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 57);

    /* A batch that trips a limit mid-way: "global 1/1m" admits the first of each key. */
    struct sluice *one_per_min = open_ok("global 1/1m");
    struct sluice_request abc[] = {{RQ, 0, KEY("a")}, {RQ, 0, KEY("b")}, {RQ, 0, KEY("a")}};
    CHECK_EQ(sluice_check_batch(one_per_min, abc, 3, T0, out, NULL), SLUICE_OK);
    CHECK_EQ(out[0].allowed, 1);
    CHECK_EQ(out[1].allowed, 1);
    CHECK_EQ(out[2].allowed, 0);
    CHECK_EQ(out[2].status, SLUICE_STATUS_LIMITED);
    CHECK_EQ(out[2].retry_after, 60);
    sluice_close(one_per_min);

    /* One invalid request: that error, no decision written, nothing recorded. */
    uint8_t *long_key = calloc(65536, 1);
    CHECK(long_key != NULL);
    struct {
        struct sluice_request bad;
        int64_t now;
        int rc;
    } cases[] = {
        {{RQ, 0, KEY("")}, T0, SLUICE_ERR_EMPTY_KEY},
        {{RQ, 0, NULL, 3}, T0, SLUICE_ERR_NULL},
        {{RQ, 5, KEY("z")}, T0, SLUICE_ERR_UNKNOWN_CATEGORY},
        {{RQ, -1, KEY("z")}, T0, SLUICE_ERR_UNKNOWN_CATEGORY},
        {{RQ, 0, long_key, 65536}, T0, SLUICE_ERR_KEY_TOO_LONG},
        {{RQ, 0, KEY("z")}, -1, SLUICE_ERR_TIME},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].bad.key == NULL && cases[i].rc == SLUICE_ERR_KEY_TOO_LONG) {
            continue; /* calloc failed */
        }
        struct sluice_request mixed[] = {
            {RQ, media, KEY("fresh")},
            {RQ, 0, KEY("fresh")},
            cases[i].bad,
            {RQ, write, KEY("fresh")},
        };
        SENTINEL_FILL(out, 8);
        size_t bad = SIZE_MAX;
        int rc = sluice_check_batch(s, mixed, 4, cases[i].now, out, &bad);
        if (rc != cases[i].rc) {
            fprintf(stderr, "batch case %zu:\n", i);
        }
        CHECK_EQ(rc, cases[i].rc);
        CHECK(memcmp(out, pristine, sizeof out) == 0);
        /* Which request was invalid; a bad time is about none of them. */
        if (cases[i].rc == SLUICE_ERR_TIME) {
            CHECK(bad == SIZE_MAX);
        } else {
            CHECK_EQ(bad, 2);
        }
    }
    free(long_key);
    /* "fresh" was never recorded: a peek finds the full quota. */
    CHECK_EQ(sluice_peek(s, media, KEY("fresh"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 59);
    CHECK_EQ(sluice_peek(s, 0, KEY("fresh"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 299);
    struct sluice_table_stats st;
    st.size = sizeof st;
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &st), SLUICE_OK);
    CHECK_EQ(st.live_keys, 3); /* a, b, c */

    /* NULL arrays with n > 0, a NULL handle. */
    SENTINEL_FILL(out, 8);
    CHECK_EQ(sluice_check_batch(s, NULL, 1, T0, out, NULL), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_check_batch(s, reqs, 1, T0, NULL, NULL), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_check_batch(NULL, reqs, 1, T0, out, NULL), SLUICE_ERR_NULL);
    CHECK(memcmp(out, pristine, sizeof out) == 0);

    /* More requests than one chunk (64) of the library's: the same decisions as one by one
     * on a twin table, in order, repeated keys included. */
    {
        enum { N = 150 };
        static const char *names[] = {"k0", "k1", "k2", "k3", "k4", "k5", "k6"};
        struct sluice *batched = open_ok("global 3/1m\nwrite 25/1m");
        struct sluice *serial = open_ok("global 3/1m\nwrite 25/1m");
        struct sluice_request many[N];
        struct sluice_decision got[N], want;
        for (size_t i_ = 0; i_ < sizeof got / sizeof got[0]; i_++) {
            got[i_].size = sizeof got[i_];
        }
        want.size = sizeof want;
        for (int i = 0; i < N; i++) {
            const char *k = names[(i * 5) % 7];
            many[i] = (struct sluice_request){RQ, i % 2, k, strlen(k)};
        }
        size_t bad = SIZE_MAX;
        CHECK_EQ(sluice_check_batch(batched, many, N, T0, got, &bad), SLUICE_OK);
        CHECK(bad == SIZE_MAX);
        int same = 0, admitted = 0;
        for (int i = 0; i < N; i++) {
            CHECK_EQ(sluice_check(serial, many[i].category, many[i].key, many[i].key_len, T0, &want),
                     SLUICE_OK);
            same += decision_eq(&got[i], &want);
            admitted += got[i].allowed;
        }
        CHECK_EQ(same, N);
        CHECK_EQ(admitted, 7 * 3); /* global 3/1m per key */
        /* An invalid request in the third chunk: its index, and nothing of the batch recorded. */
        many[140].key_len = 0;
        bad = SIZE_MAX;
        CHECK_EQ(sluice_check_batch(batched, many, N, T0 + 60000, got, &bad), SLUICE_ERR_EMPTY_KEY);
        CHECK_EQ(bad, 140);
        CHECK_EQ(sluice_peek(batched, 0, KEY("k0"), T0 + 60000, &want), SLUICE_OK);
        CHECK_EQ(want.remaining, 2);
        sluice_close(batched);
        sluice_close(serial);
    }

    /* SLUICE_NOW. */
    struct sluice_request now_req = {RQ, 0, KEY("batch-now")};
    CHECK_EQ(sluice_check_batch(s, &now_req, 1, SLUICE_NOW, out, NULL), SLUICE_OK);
    CHECK_EQ(out[0].allowed, 1);
    CHECK_EQ(out[0].remaining, 299);
    sluice_close(s);
}

/* ---- sluice_headers ------------------------------------------------------------------ */

static void test_headers(void) {
    struct sluice *s = open_ok("write 2/1m\nwrite 500/1h");
    const int w = category_ok(s, "write");
    struct sluice_decision first, third, d;
    first.size = sizeof first;
    third.size = sizeof third;
    d.size = sizeof d;
    char buf[512];

    static const char X_FIRST[] =
        "X-RateLimit-Limit: 2\r\nX-RateLimit-Remaining: 1\r\nX-RateLimit-Reset: 1767225660\r\n";
    static const char IETF_FIRST[] =
        "RateLimit-Policy: \"write\";q=2;w=60\r\nRateLimit: \"write\";r=1;t=60\r\n";
    static const char X_THIRD[] = "X-RateLimit-Limit: 2\r\nX-RateLimit-Remaining: 0\r\n"
                                  "X-RateLimit-Reset: 1767225660\r\nRetry-After: 40\r\n";
    static const char IETF_THIRD[] = "RateLimit-Policy: \"write\";q=2;w=60\r\n"
                                     "RateLimit: \"write\";r=0;t=40\r\nRetry-After: 40\r\n";
    const int x_len = (int)strlen(X_FIRST);

    CHECK_EQ(sluice_check(s, w, KEY("k"), T0, &first), SLUICE_OK);
    memset(buf, 'Z', sizeof buf);
    CHECK_EQ(sluice_headers(s, &first, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf), x_len);
    CHECK_STR(buf, X_FIRST);
    CHECK(buf[x_len + 1] == 'Z');
    CHECK_EQ(sluice_headers(s, &first, SLUICE_HEADERS_IETF, buf, sizeof buf),
             (int)strlen(IETF_FIRST));
    CHECK_STR(buf, IETF_FIRST);

    CHECK_EQ(sluice_check(s, w, KEY("k"), T0 + 10000, &d), SLUICE_OK);
    CHECK_EQ(sluice_check(s, w, KEY("k"), T0 + 20500, &third), SLUICE_OK);
    CHECK_EQ(third.allowed, 0);
    CHECK_EQ(sluice_headers(s, &third, SLUICE_HEADERS_IETF, buf, sizeof buf),
             (int)strlen(IETF_THIRD));
    CHECK_STR(buf, IETF_THIRD);
    CHECK_EQ(sluice_headers(s, &third, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf),
             (int)strlen(X_THIRD));
    CHECK_STR(buf, X_THIRD);

    /* Sizing: NULL buffer with cap 0 returns the length and writes nothing. */
    CHECK_EQ(sluice_headers(s, &first, SLUICE_HEADERS_X_RATELIMIT, NULL, 0), x_len);

    /* Too small (cap < len) and cap == len (no room for the NUL): no partial block, only an
     * empty string (a NUL at buf[0]), and nothing past cap. */
    const size_t caps[] = {1, 10, (size_t)x_len - 1, (size_t)x_len};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        char small[512];
        memset(small, 'Z', sizeof small);
        CHECK_EQ(sluice_headers(s, &first, SLUICE_HEADERS_X_RATELIMIT, small, caps[i]), x_len);
        CHECK(small[0] == '\0');
        size_t untouched = 1;
        while (untouched < sizeof small && small[untouched] == 'Z') {
            untouched++;
        }
        CHECK_EQ(untouched, sizeof small); /* the rest of buf and the canary past cap */
    }
    /* cap == len + 1: exactly fits, canary right after the NUL survives. */
    {
        char exact[512];
        memset(exact, 'Z', sizeof exact);
        CHECK_EQ(sluice_headers(s, &first, SLUICE_HEADERS_X_RATELIMIT, exact,
                                (size_t)x_len + 1),
                 x_len);
        CHECK_STR(exact, X_FIRST);
        CHECK(exact[x_len + 1] == 'Z');
    }
    /* The two-call pattern a C programmer uses: size, allocate, format. */
    {
        int need = sluice_headers(s, &third, SLUICE_HEADERS_IETF, NULL, 0);
        CHECK(need > 0);
        char *heap = malloc((size_t)need + 1);
        CHECK(heap != NULL);
        if (heap != NULL) {
            CHECK_EQ(sluice_headers(s, &third, SLUICE_HEADERS_IETF, heap, (size_t)need + 1),
                     need);
            CHECK_STR(heap, IETF_THIRD);
            free(heap);
        }
    }

    /* Errors. */
    memset(buf, 'Z', sizeof buf);
    CHECK_EQ(sluice_headers(s, &first, 2, buf, sizeof buf), SLUICE_ERR_ARGUMENT);
    CHECK_EQ(sluice_headers(s, &first, -1, buf, sizeof buf), SLUICE_ERR_ARGUMENT);
    CHECK_EQ(sluice_headers(s, NULL, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf),
             SLUICE_ERR_NULL);
    CHECK_EQ(sluice_headers(NULL, &first, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf),
             SLUICE_ERR_NULL);
    CHECK_EQ(sluice_headers(s, &first, SLUICE_HEADERS_X_RATELIMIT, NULL, sizeof buf),
             SLUICE_ERR_NULL);
    d = first;
    d.status = 5; /* not a SLUICE_STATUS_* */
    CHECK_EQ(sluice_headers(s, &d, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf),
             SLUICE_ERR_ARGUMENT);
    CHECK(buf[0] == 'Z');

    /* No rule applies: no rate-limit headers, an empty block (length 0, a lone NUL). */
    struct sluice *empty = open_ok("");
    CHECK_EQ(sluice_check(empty, 0, KEY("k"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.rule, -1);
    CHECK_EQ(sluice_headers(empty, &d, SLUICE_HEADERS_X_RATELIMIT, NULL, 0), 0);
    buf[0] = 'Z';
    buf[1] = 'Z';
    CHECK_EQ(sluice_headers(empty, &d, SLUICE_HEADERS_IETF, buf, 1), 0);
    CHECK(buf[0] == '\0' && buf[1] == 'Z');
    /* A refused decision with no rule carries only Retry-After. */
    d.allowed = 0;
    d.status = SLUICE_STATUS_LIMITED;
    d.retry_after = 7;
    CHECK_EQ(sluice_headers(empty, &d, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf), 16);
    CHECK_STR(buf, "Retry-After: 7\r\n");
    sluice_close(empty);

    /* Locked: only Retry-After (the lockout's numbers are failures, not a request quota). */
    struct sluice *auth = open_ok("auth lockout 2/15m for 1m");
    const int a = category_ok(auth, "auth");
    CHECK_EQ(sluice_failure(auth, a, KEY("u"), T0, &d), SLUICE_OK);
    CHECK_EQ(sluice_failure(auth, a, KEY("u"), T0 + 1, &d), SLUICE_OK);
    CHECK_EQ(sluice_check(auth, a, KEY("u"), T0 + 20001, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK_EQ(sluice_headers(auth, &d, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf) > 0, 1);
    CHECK_STR(buf, "Retry-After: 40\r\n");
    CHECK_EQ(sluice_headers(auth, &d, SLUICE_HEADERS_IETF, buf, sizeof buf) > 0, 1);
    CHECK_STR(buf, "Retry-After: 40\r\n");
    sluice_close(auth);

    sluice_close(s);
}

/* ---- sluice_stats / sluice_rule_stats ------------------------------------------------ */

static void test_stats(void) {
    struct sluice *s = open_ok(DEFAULT_POLICY);
    const int write = category_ok(s, "write");
    const int auth = category_ok(s, "auth");
    struct sluice_table_stats st;
    st.size = sizeof st;
    struct sluice_rule_counts rs;
    rs.size = sizeof rs;
    struct sluice_decision d;
    d.size = sizeof d;

    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &st), SLUICE_OK);
    CHECK_EQ(st.capacity, 65536);
    CHECK_EQ(st.bytes_per_key, 8328); /* README: 1,025 logged requests x 8 + 128 */
    CHECK_EQ(st.rules, 7);            /* 6 window rules and 1 lockout */
    CHECK_EQ(st.live_keys, 0);
    CHECK_EQ(st.locked_keys, 0);
    CHECK_EQ(st.evictions, 0);
    CHECK_EQ(st.reclaimed, 0);
    CHECK_EQ(st.full, 0);
    for (uint32_t r = 0; r < st.rules; r++) {
        SENTINEL_FILL(&rs, 1);
        CHECK_EQ(sluice_rule_stats(s, r, &rs), SLUICE_OK);
        CHECK(rs.passed == 0 && rs.limited == 0 && rs.dry_run_limited == 0 && rs.locked == 0 &&
              rs.lockouts == 0);
    }

    /* global a x2, write b, auth d, a failure of e, a peek of c. */
    CHECK_EQ(sluice_check(s, 0, KEY("a"), T0, &d), SLUICE_OK);
    CHECK_EQ(sluice_check(s, 0, KEY("a"), T0 + 1, &d), SLUICE_OK);
    CHECK_EQ(sluice_check(s, write, KEY("b"), T0 + 2, &d), SLUICE_OK);
    CHECK_EQ(sluice_check(s, auth, KEY("d"), T0 + 3, &d), SLUICE_OK);
    CHECK_EQ(sluice_failure(s, auth, KEY("e"), T0 + 4, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 4);
    CHECK_EQ(sluice_peek(s, 0, KEY("c"), T0 + 5, &d), SLUICE_OK);

    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &st), SLUICE_OK);
    CHECK_EQ(st.live_keys, 4); /* a, b, d, e: not the peeked c */
    CHECK_EQ(st.locked_keys, 0);
    CHECK_EQ(st.evictions, 0);
    CHECK_EQ(st.full, 0);
    /* passed per rule in policy order: global, media, analytics, write/1m, write/1h, auth,
     * auth lockout */
    const uint64_t passed[7] = {4, 0, 0, 1, 1, 1, 0};
    for (uint32_t r = 0; r < 7; r++) {
        CHECK_EQ(sluice_rule_stats(s, r, &rs), SLUICE_OK);
        CHECK_EQ(rs.passed, passed[r]);
        CHECK_EQ(rs.limited, 0);
        CHECK_EQ(rs.lockouts, 0);
    }

    /* Out of range, NULLs: error and out untouched. */
    struct sluice_rule_counts pristine;
    pristine.size = sizeof pristine;
    SENTINEL_FILL(&pristine, 1);
    SENTINEL_FILL(&rs, 1);
    CHECK_EQ(sluice_rule_stats(s, 7, &rs), SLUICE_ERR_ARGUMENT);
    CHECK_EQ(sluice_rule_stats(s, -1, &rs), SLUICE_ERR_ARGUMENT);
    CHECK_EQ(sluice_rule_stats(NULL, 0, &rs), SLUICE_ERR_NULL);
    CHECK(memcmp(&rs, &pristine, sizeof rs) == 0);
    CHECK_EQ(sluice_rule_stats(s, 0, NULL), SLUICE_ERR_NULL);
    struct sluice_table_stats st_pristine;
    st_pristine.size = sizeof st_pristine;
    SENTINEL_FILL(&st_pristine, 1);
    SENTINEL_FILL(&st, 1);
    CHECK_EQ(sluice_stats(NULL, SLUICE_NOW, &st), SLUICE_ERR_NULL);
    CHECK(memcmp(&st, &st_pristine, sizeof st) == 0);
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, NULL), SLUICE_ERR_NULL);
    sluice_close(s);

    /* limited and dry_run_limited counts. */
    s = open_ok("global 2/1m\nmedia 1/1m dry-run");
    const int media = category_ok(s, "media");
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(sluice_check(s, 0, KEY("g"), T0 + i, &d), SLUICE_OK);
    }
    CHECK_EQ(d.status, SLUICE_STATUS_LIMITED);
    CHECK_EQ(sluice_check(s, media, KEY("m"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_PASSED);
    CHECK_EQ(sluice_check(s, media, KEY("m"), T0 + 1, &d), SLUICE_OK);
    /* admitted, but the dry-run rule would have refused: it is reported */
    CHECK_DECISION(&d, 1, SLUICE_STATUS_DRY_RUN_LIMITED, 1, 0, 60, T0_S + 60, 0, 1, 60000);
    CHECK_EQ(sluice_check(s, media, KEY("m"), T0 + 2, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LIMITED); /* global refuses: 2 already */
    CHECK_EQ(d.rule, 0);
    CHECK_EQ(sluice_rule_stats(s, 0, &rs), SLUICE_OK);
    CHECK_EQ(rs.passed, 4);
    CHECK_EQ(rs.limited, 2);
    CHECK_EQ(rs.dry_run_limited, 0);
    CHECK_EQ(sluice_rule_stats(s, 1, &rs), SLUICE_OK);
    CHECK_EQ(rs.passed, 1);
    CHECK_EQ(rs.limited, 0);
    CHECK_EQ(rs.dry_run_limited, 1);
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &st), SLUICE_OK);
    CHECK_EQ(st.rules, 2);
    CHECK_EQ(st.live_keys, 2);
    sluice_close(s);

    /* A table of one key: eviction, reclaiming, and a full table (an active lockout is never
     * evicted; when-full deny refuses). */
    s = open_ok("capacity 1\nglobal 10/1m\nauth lockout 1/1m for 1h");
    const int a = category_ok(s, "auth");
    CHECK_EQ(sluice_check(s, 0, KEY("a"), T0, &d), SLUICE_OK);
    CHECK_EQ(sluice_check(s, 0, KEY("b"), T0 + 1, &d), SLUICE_OK); /* evicts a (in window) */
    CHECK_EQ(d.allowed, 1);
    CHECK_EQ(sluice_check(s, 0, KEY("c"), T0 + 120000, &d), SLUICE_OK); /* b has expired */
    CHECK_EQ(d.allowed, 1);
    CHECK_EQ(sluice_failure(s, a, KEY("c"), T0 + 120001, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK_EQ(sluice_check(s, 0, KEY("d"), T0 + 120002, &d), SLUICE_OK);
    CHECK_DECISION(&d, 0, SLUICE_STATUS_FULL, 0, 0, 0, T0_S + 121, 1, -1, 0);
    {
        char buf[64];
        CHECK_EQ(sluice_headers(s, &d, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf), 16);
        CHECK_STR(buf, "Retry-After: 1\r\n");
    }
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &st), SLUICE_OK);
    CHECK_EQ(st.capacity, 1);
    CHECK_EQ(st.live_keys, 1);
    CHECK_EQ(st.evictions, 1);
    CHECK_EQ(st.reclaimed, 1);
    CHECK_EQ(st.full, 1);
    sluice_close(s);

    /* when-full allow: admitted, status FULL, no headers at all. */
    s = open_ok("capacity 1\nwhen-full allow\nauth lockout 1/1m for 1h");
    CHECK_EQ(sluice_failure(s, 1, KEY("c"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK_EQ(sluice_check(s, 0, KEY("d"), T0 + 1, &d), SLUICE_OK);
    CHECK_DECISION(&d, 1, SLUICE_STATUS_FULL, 0, 0, 0, T0_S + 1, 0, -1, 0);
    CHECK_EQ(sluice_headers(s, &d, SLUICE_HEADERS_IETF, NULL, 0), 0);
    sluice_close(s);
}

/* ---- two threads, one key ------------------------------------------------------------- */

#define HAMMER_CHECKS 1000 /* per thread on the one hot key */
#define ROUNDS 200         /* then one fresh key per round, both threads at once */
#define ROUND_CHECKS 20

struct hammer {
    const struct sluice *s;
    pthread_barrier_t *barrier;
    long hot_admitted;
    int round_admitted[ROUNDS];
    int errors;    /* calls that did not return SLUICE_OK */
    int malformed; /* decisions that contradict themselves */
};

static void hammer_one(struct hammer *h, const void *key, size_t len, int64_t now,
                       int *admitted) {
    struct sluice_decision d;
    d.size = sizeof d;
    int rc = sluice_check(h->s, 0, key, len, now, &d);
    if (rc != SLUICE_OK) {
        h->errors++;
        return;
    }
    if (d.allowed) {
        ++*admitted;
        if (d.status != SLUICE_STATUS_PASSED || d.retry_after != 0) {
            h->malformed++;
        }
    } else if (d.status != SLUICE_STATUS_LIMITED || d.retry_after < 1 || d.remaining != 0) {
        h->malformed++;
    }
}

static void *hammer_main(void *arg) {
    struct hammer *h = arg;
    int hot = 0;
    pthread_barrier_wait(h->barrier);
    /* Every check within one 10 s window: at most 5 may be admitted, across both threads. */
    for (int i = 0; i < HAMMER_CHECKS; i++) {
        hammer_one(h, KEY("hot"), T0 + i, &hot);
    }
    h->hot_admitted = hot;
    for (int r = 0; r < ROUNDS; r++) {
        char key[32];
        int n = snprintf(key, sizeof key, "round-%d", r);
        int admitted = 0;
        pthread_barrier_wait(h->barrier); /* start each round together */
        for (int i = 0; i < ROUND_CHECKS; i++) {
            hammer_one(h, key, (size_t)n, T0 + i, &admitted);
        }
        h->round_admitted[r] = admitted;
    }
    return NULL;
}

static void test_two_threads(void) {
    struct sluice *s = open_ok("global 5/10s");
    pthread_barrier_t barrier;
    CHECK_EQ(pthread_barrier_init(&barrier, NULL, 2), 0);
    static struct hammer h[2];
    pthread_t tid[2];
    for (int t = 0; t < 2; t++) {
        memset(&h[t], 0, sizeof h[t]);
        h[t].s = s;
        h[t].barrier = &barrier;
    }
    int started = 0;
    for (int t = 0; t < 2; t++) {
        if (pthread_create(&tid[t], NULL, hammer_main, &h[t]) == 0) {
            started++;
        }
    }
    CHECK_EQ(started, 2);
    if (started != 2) {
        /* Cannot run without both threads (the barrier would never open). */
        fprintf(stderr, "%d passed, %d failed\n", g_passed, g_failed);
        exit(1);
    }
    for (int t = 0; t < 2; t++) {
        pthread_join(tid[t], NULL);
    }
    pthread_barrier_destroy(&barrier);

    CHECK_EQ(h[0].errors + h[1].errors, 0);
    CHECK_EQ(h[0].malformed + h[1].malformed, 0);
    CHECK_EQ(h[0].hot_admitted + h[1].hot_admitted, 5);
    int over = 0, under = 0;
    long total = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int sum = h[0].round_admitted[r] + h[1].round_admitted[r];
        total += sum;
        if (sum > 5) {
            over++;
            fprintf(stderr, "round %d admitted %d (> 5)\n", r, sum);
        } else if (sum < 5) {
            under++;
            fprintf(stderr, "round %d admitted %d (< 5)\n", r, sum);
        }
    }
    CHECK_EQ(over, 0);  /* never more than 5 */
    CHECK_EQ(under, 0); /* and with 40 checks per round, exactly 5 */
    CHECK_EQ(total, 5L * ROUNDS);

    /* The table agrees: 5 admitted per key, every other check limited. */
    struct sluice_rule_counts rs;
    rs.size = sizeof rs;
    CHECK_EQ(sluice_rule_stats(s, 0, &rs), SLUICE_OK);
    CHECK_EQ(rs.passed, 5 * (ROUNDS + 1));
    sluice_close(s);
}

/* ---- main ----------------------------------------------------------------------------- */

/* ---- structs that grow: the size field --------------------------------------------- */

/* A struct as a newer header might declare it: this header's, then a field more. */
struct decision_next {
    struct sluice_decision d;
    int64_t future;
};
struct table_stats_next {
    struct sluice_table_stats st;
    uint64_t future;
};
struct rule_counts_next {
    struct sluice_rule_counts rs;
    uint64_t future;
};
struct request_next {
    struct sluice_request r;
    uint64_t future;
};
struct packed_request_next {
    struct sluice_packed_request r;
    uint64_t future;
};
struct open_options_next {
    struct sluice_open_options o;
    uint64_t future;
};

/* No struct that grows has tail padding (a field added in it would not change sizeof). */
#define CHECK_NO_TAIL_PADDING(type, last) \
    CHECK_EQ(offsetof(type, last) + sizeof(((type *)0)->last), sizeof(type))

static void test_sizes(void) {
    CHECK_NO_TAIL_PADDING(struct sluice_decision, window_ms);
    CHECK_NO_TAIL_PADDING(struct sluice_table_stats, categories);
    CHECK_NO_TAIL_PADDING(struct sluice_rule_counts, lockouts);
    CHECK_NO_TAIL_PADDING(struct sluice_request, key_len);
    CHECK_NO_TAIL_PADDING(struct sluice_packed_request, category);
    CHECK_NO_TAIL_PADDING(struct sluice_open_options, mode);
    CHECK_NO_TAIL_PADDING(struct sluice_category_info, lockout_rule);
    CHECK_NO_TAIL_PADDING(struct sluice_rule_info, max_ban_ms);
    /* The size field comes first, where every version of the struct has it. */
    CHECK_EQ(offsetof(struct sluice_decision, size), 0);
    CHECK_EQ(offsetof(struct sluice_table_stats, size), 0);
    CHECK_EQ(offsetof(struct sluice_rule_counts, size), 0);
    CHECK_EQ(offsetof(struct sluice_request, size), 0);
    CHECK_EQ(offsetof(struct sluice_packed_request, size), 0);
    CHECK_EQ(offsetof(struct sluice_open_options, size), 0);
    CHECK_EQ(offsetof(struct sluice_category_info, size), 0);
    CHECK_EQ(offsetof(struct sluice_rule_info, size), 0);

    struct sluice *s = open_ok("global 3/1m");
    struct sluice_decision d, pristine;

    /* A size left unset (0), too small, or not a multiple of the alignment: SLUICE_ERR_SIZE,
     * nothing written, nothing recorded. */
    const size_t bad_sizes[] = {0, 8, sizeof d - 8, sizeof d + 1, sizeof d + 4, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        memset(&d, SENTINEL, sizeof d);
        d.size = bad_sizes[i];
        pristine = d;
        CHECK_EQ(sluice_check(s, 0, KEY("k"), T0, &d), SLUICE_ERR_SIZE);
        CHECK(memcmp(&d, &pristine, sizeof d) == 0);
        CHECK_EQ(sluice_peek(s, 0, KEY("k"), T0, &d), SLUICE_ERR_SIZE);
        CHECK_EQ(sluice_failure(s, 0, KEY("k"), T0, &d), SLUICE_ERR_SIZE);
        CHECK(memcmp(&d, &pristine, sizeof d) == 0);
    }
    d.size = sizeof d;
    CHECK_EQ(sluice_peek(s, 0, KEY("k"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 2); /* a fresh key's: none of the refused calls was recorded */
    CHECK_STR(sluice_strerror(SLUICE_ERR_SIZE),
              "a struct's size field is not set to sizeof the struct (or is smaller than its "
              "first version)");

    /* The library sets size to the bytes it wrote: a larger (newer) struct gets this
     * library's fields, size says how many bytes, and the rest is left alone. */
    struct decision_next next;
    memset(&next, SENTINEL, sizeof next);
    next.d.size = sizeof next;
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0, &next.d), SLUICE_OK);
    CHECK_EQ(next.d.size, sizeof(struct sluice_decision));
    CHECK_DECISION(&next.d, 1, SLUICE_STATUS_PASSED, 3, 2, 60, T0_S + 60, 0, 0, 60000);
    int64_t untouched_future;
    memset(&untouched_future, SENTINEL, sizeof untouched_future);
    CHECK(next.future == untouched_future);
    /* A decision keeps its size across calls: reuse needs no new assignment. */
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0 + 1, &next.d), SLUICE_OK);
    CHECK_EQ(next.d.remaining, 1);

    /* Headers: the decision's size must be usable; fields past this library's are not read. */
    char buf[256];
    next.d.size = sizeof next;
    CHECK(sluice_headers(s, &next.d, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf) > 0);
    CHECK_CONTAINS(buf, "X-RateLimit-Remaining: 1\r\n");
    next.d.size = 0;
    CHECK_EQ(sluice_headers(s, &next.d, SLUICE_HEADERS_X_RATELIMIT, buf, sizeof buf),
             SLUICE_ERR_SIZE);

    /* Stats and rule counts: the same rule. */
    struct table_stats_next stn;
    memset(&stn, SENTINEL, sizeof stn);
    stn.st.size = 0;
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &stn.st), SLUICE_ERR_SIZE);
    CHECK_EQ(stn.st.size, 0);
    stn.st.size = sizeof stn;
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &stn.st), SLUICE_OK);
    CHECK_EQ(stn.st.size, sizeof(struct sluice_table_stats));
    CHECK_EQ(stn.st.live_keys, 1);
    CHECK_EQ(stn.st.rules, 1);
    CHECK_EQ(stn.st.categories, 1);
    CHECK_EQ(stn.st.installing, 0);
    uint64_t untouched_u64;
    memset(&untouched_u64, SENTINEL, sizeof untouched_u64);
    CHECK(stn.future == untouched_u64);
    struct rule_counts_next rsn;
    memset(&rsn, SENTINEL, sizeof rsn);
    rsn.rs.size = sizeof rsn.rs - 8;
    CHECK_EQ(sluice_rule_stats(s, 0, &rsn.rs), SLUICE_ERR_SIZE);
    rsn.rs.size = sizeof rsn;
    CHECK_EQ(sluice_rule_stats(s, 0, &rsn.rs), SLUICE_OK);
    CHECK_EQ(rsn.rs.size, sizeof(struct sluice_rule_counts));
    CHECK_EQ(rsn.rs.passed, 2);
    CHECK(rsn.future == untouched_u64);

    /* A batch: the first decision's size is the array's element size, and every decision
     * gets its size set; each request's size must be the first one's. */
    struct decision_next outs[3];
    memset(outs, SENTINEL, sizeof outs);
    outs[0].d.size = sizeof outs[0];
    struct sluice_request reqs[3] = {{RQ, 0, KEY("x")}, {RQ, 0, KEY("y")}, {RQ, 0, KEY("x")}};
    CHECK_EQ(sluice_check_batch(s, reqs, 3, T0, &outs[0].d, NULL), SLUICE_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(outs[i].d.size, sizeof(struct sluice_decision));
        CHECK(outs[i].future == untouched_future);
    }
    CHECK_EQ(outs[0].d.remaining, 2);
    CHECK_EQ(outs[1].d.remaining, 2);
    CHECK_EQ(outs[2].d.remaining, 1);
    size_t bad = SIZE_MAX;
    outs[0].d.size = 0;
    CHECK_EQ(sluice_check_batch(s, reqs, 3, T0, &outs[0].d, &bad), SLUICE_ERR_SIZE);
    CHECK(bad == SIZE_MAX); /* about the decisions, not a request */
    outs[0].d.size = sizeof outs[0];
    reqs[2].size = sizeof(struct request_next);
    CHECK_EQ(sluice_check_batch(s, reqs, 3, T0, &outs[0].d, &bad), SLUICE_ERR_SIZE);
    CHECK_EQ(bad, 2);
    reqs[2].size = RQ;
    reqs[0].size = 0;
    CHECK_EQ(sluice_check_batch(s, reqs, 3, T0, &outs[0].d, &bad), SLUICE_ERR_SIZE);
    CHECK_EQ(bad, 0);
    reqs[0].size = RQ;
    /* Requests from a newer header: zero in the fields this library lacks is fine (their
     * defaults); anything else asks for what this library cannot do. */
    struct request_next rn[2];
    memset(rn, 0, sizeof rn);
    for (int i = 0; i < 2; i++) {
        rn[i].r.size = sizeof rn[i];
        rn[i].r.key = "z";
        rn[i].r.key_len = 1;
    }
    CHECK_EQ(sluice_check_batch(s, &rn[0].r, 2, T0, &outs[0].d, &bad), SLUICE_OK);
    CHECK_EQ(outs[1].d.remaining, 1);
    rn[1].future = 1;
    bad = SIZE_MAX;
    CHECK_EQ(sluice_check_batch(s, &rn[0].r, 2, T0, &outs[0].d, &bad), SLUICE_ERR_UNSUPPORTED);
    CHECK_EQ(bad, 1);
    d.size = sizeof d;
    CHECK_EQ(sluice_peek(s, 0, KEY("z"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 0); /* the two of the first batch only: the refused one recorded
                               * nothing (a third would make this a refusal) */
    CHECK_EQ(d.allowed, 1);
    sluice_close(s);
}

/* ---- sluice_check_packed ----------------------------------------------------------- */

/* A packed request for `keys[off .. off + len]` in category `cat`. */
static struct sluice_packed_request packed(uint64_t off, uint32_t len, int32_t cat) {
    struct sluice_packed_request r;
    memset(&r, 0, sizeof r);
    r.size = sizeof r;
    r.key_offset = off;
    r.key_len = len;
    r.category = cat;
    return r;
}

static void test_packed(void) {
    struct sluice *s = open_ok(DEFAULT_POLICY);
    const int media = category_ok(s, "media");
    const int write = category_ok(s, "write");
    /* "a" "b" "c" in one buffer; "a" is named twice (the same span). */
    static const char keys[] = "abc";
    struct sluice_packed_request reqs[4] = {packed(0, 1, media), packed(1, 1, write),
                                            packed(2, 1, 0), packed(0, 1, media)};
    struct sluice_decision out[8], pristine[8], d;
    SENTINEL_FILL(out, 8);
    SENTINEL_FILL(pristine, 8);
    d.size = sizeof d;

    /* n = 0 is fine with NULLs; NULLs with n > 0 are not. */
    CHECK_EQ(sluice_check_packed(s, NULL, 0, NULL, 0, T0, NULL, NULL), SLUICE_OK);
    CHECK_EQ(sluice_check_packed(NULL, keys, 3, reqs, 0, T0, out, NULL), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_check_packed(s, NULL, 3, reqs, 1, T0, out, NULL), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_check_packed(s, keys, 3, NULL, 1, T0, out, NULL), SLUICE_ERR_NULL);
    CHECK_EQ(sluice_check_packed(s, keys, 3, reqs, 1, T0, NULL, NULL), SLUICE_ERR_NULL);
    CHECK(memcmp(out, pristine, sizeof out) == 0);

    /* The decisions of sluice_check_batch's test, from spans. */
    CHECK_EQ(sluice_check_packed(s, keys, 3, reqs, 4, T0, out, NULL), SLUICE_OK);
    CHECK_DECISION(&out[0], 1, SLUICE_STATUS_PASSED, 60, 59, 60, T0_S + 60, 0, 1, 60000);
    CHECK_DECISION(&out[1], 1, SLUICE_STATUS_PASSED, 30, 29, 60, T0_S + 60, 0, 3, 60000);
    CHECK_DECISION(&out[2], 1, SLUICE_STATUS_PASSED, 300, 299, 60, T0_S + 60, 0, 0, 60000);
    CHECK_DECISION(&out[3], 1, SLUICE_STATUS_PASSED, 60, 58, 60, T0_S + 60, 0, 1, 60000);
    CHECK(memcmp(&out[4], &pristine[4], 4 * sizeof out[0]) == 0); /* only n were written */

    /* One invalid request: its error and index; nothing recorded, no decision written. */
    static const char more[] = "freshfresh";
    struct {
        struct sluice_packed_request bad;
        int rc;
    } cases[] = {
        {packed(0, 0, 0), SLUICE_ERR_EMPTY_KEY},
        {packed(6, 5, 0), SLUICE_ERR_ARGUMENT},                /* ends past the buffer */
        {packed(11, 1, 0), SLUICE_ERR_ARGUMENT},               /* starts past it */
        {packed(UINT64_MAX, 2, 0), SLUICE_ERR_ARGUMENT},       /* offset + len overflows */
        {packed(UINT64_MAX - 1, 1, 0), SLUICE_ERR_ARGUMENT},
        {packed(0, 5, 9), SLUICE_ERR_UNKNOWN_CATEGORY},
        {packed(0, 5, -1), SLUICE_ERR_UNKNOWN_CATEGORY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sluice_packed_request mixed[4] = {packed(0, 5, media), packed(5, 5, 0),
                                                 cases[i].bad, packed(0, 5, write)};
        SENTINEL_FILL(out, 8);
        size_t bad = SIZE_MAX;
        int rc = sluice_check_packed(s, more, 10, mixed, 4, T0, out, &bad);
        if (rc != cases[i].rc) {
            fprintf(stderr, "packed case %zu:\n", i);
        }
        CHECK_EQ(rc, cases[i].rc);
        CHECK_EQ(bad, 2);
        CHECK(memcmp(out, pristine, sizeof out) == 0);
    }
    /* A key too long for the library, inside the buffer. */
    uint8_t *long_key = calloc(65536, 1);
    CHECK(long_key != NULL);
    if (long_key != NULL) {
        struct sluice_packed_request two[2] = {packed(0, 5, 0), packed(0, 65536, 0)};
        size_t bad = SIZE_MAX;
        CHECK_EQ(sluice_check_packed(s, long_key, 65536, two, 2, T0, out, &bad),
                 SLUICE_ERR_KEY_TOO_LONG);
        CHECK_EQ(bad, 1);
        free(long_key);
    }
    /* A bad time is about no request. */
    {
        size_t bad = SIZE_MAX;
        CHECK_EQ(sluice_check_packed(s, more, 10, reqs, 1, -1, out, &bad), SLUICE_ERR_TIME);
        CHECK(bad == SIZE_MAX);
    }
    CHECK_EQ(sluice_peek(s, media, KEY("fresh"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 59);
    CHECK_EQ(sluice_peek(s, 0, KEY("fresh"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 299);

    /* Sizes: every request's must be the first's; from a newer header, unknown fields must
     * be zero. */
    {
        struct packed_request_next rn[2];
        memset(rn, 0, sizeof rn);
        rn[0].r = packed(0, 5, 0);
        rn[1].r = packed(5, 5, 0);
        rn[0].r.size = rn[1].r.size = sizeof rn[0];
        CHECK_EQ(sluice_check_packed(s, more, 10, &rn[0].r, 2, T0, out, NULL), SLUICE_OK);
        rn[1].future = 7;
        size_t bad = SIZE_MAX;
        CHECK_EQ(sluice_check_packed(s, more, 10, &rn[0].r, 2, T0, out, &bad),
                 SLUICE_ERR_UNSUPPORTED);
        CHECK_EQ(bad, 1);
        rn[1].future = 0;
        rn[1].r.size = sizeof(struct sluice_packed_request);
        CHECK_EQ(sluice_check_packed(s, more, 10, &rn[0].r, 2, T0, out, &bad), SLUICE_ERR_SIZE);
        CHECK_EQ(bad, 1);
    }
    sluice_close(s);

    /* More than one chunk (64): the same decisions as sluice_check one by one on a twin
     * table, in order, with repeated keys. */
    enum { N = 150 };
    struct sluice *packed_t = open_ok("global 3/1m\nwrite 25/1m");
    struct sluice *serial = open_ok("global 3/1m\nwrite 25/1m");
    static const char names[] = "k0k1k2k3k4k5k6";
    struct sluice_packed_request many[N];
    struct sluice_decision got[N];
    got[0].size = sizeof got[0]; /* the first decision's size serves the array */
    for (int i = 0; i < N; i++) {
        many[i] = packed((uint64_t)((i * 5) % 7) * 2, 2, i % 2);
    }
    CHECK_EQ(sluice_check_packed(packed_t, names, sizeof names - 1, many, N, T0, got, NULL),
             SLUICE_OK);
    int same = 0;
    for (int i = 0; i < N; i++) {
        CHECK_EQ(got[i].size, sizeof got[i]);
        CHECK_EQ(sluice_check(serial, i % 2, names + many[i].key_offset, 2, T0, &d), SLUICE_OK);
        same += decision_eq(&got[i], &d);
    }
    CHECK_EQ(same, N);
    sluice_close(packed_t);
    sluice_close(serial);
}

/* ---- sluice_open_with: options ------------------------------------------------------ */

static struct sluice_open_options options(uint32_t flags, uint32_t mode) {
    struct sluice_open_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.flags = flags;
    o.mode = mode;
    return o;
}

static void test_open_with(void) {
    char err[512];
    static int dummy;
    struct sluice *const untouched = (struct sluice *)(void *)&dummy; /* never dereferenced */
    struct sluice *s = NULL;
    struct sluice_decision d;
    d.size = sizeof d;

    /* NULL options: sluice_open. Zeroed options with size set: the same. */
    CHECK_EQ(sluice_open_with("global 1/1m", NULL, NULL, &s, err, sizeof err), SLUICE_OK);
    CHECK_EQ(sluice_check(s, 0, KEY("k"), T0, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 0);
    sluice_close(s);
    struct sluice_open_options o = options(0, 0);
    s = NULL;
    CHECK_EQ(sluice_open_with("global 1/1m", NULL, &o, &s, err, sizeof err), SLUICE_OK);
    CHECK(s != NULL);
    sluice_close(s);
    o = options(SLUICE_OPEN_HUGE_PAGES, 0);
    s = NULL;
    CHECK_EQ(sluice_open_with("global 1/1m", NULL, &o, &s, err, sizeof err), SLUICE_OK);
    CHECK(s != NULL);
    sluice_close(s);

    /* Bad options: the code, a message naming the problem, nothing opened. */
    struct {
        struct sluice_open_options o;
        int with_path;
        int rc;
        const char *says;
    } cases[] = {
        {options(0x8, 0), 1, SLUICE_ERR_ARGUMENT,
         "sluice_open_with: unknown flag bits 0x8 in flags 0x8"},
        {options(0, 01660), 1, SLUICE_ERR_ARGUMENT, "mode 01660 has bits outside 0666 (01000)"},
        {options(0, 0700), 1, SLUICE_ERR_ARGUMENT, "mode 0700 has bits outside 0666 (0100)"},
        {options(0, 0660), 0, SLUICE_ERR_ARGUMENT, "a mode needs a path"},
        {options(SLUICE_OPEN_READ_ONLY, 0), 0, SLUICE_ERR_ARGUMENT,
         "SLUICE_OPEN_READ_ONLY needs a path"},
        {options(SLUICE_OPEN_READ_ONLY, 0640), 1, SLUICE_ERR_ARGUMENT,
         "mode 0640 with SLUICE_OPEN_READ_ONLY"},
    };
    char dir[] = "/tmp/sluice-c-open-with-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/t.sluice", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s = untouched;
        memset(err, 'Z', sizeof err);
        int rc = sluice_open_with("global 1/1m", cases[i].with_path ? path : NULL, &cases[i].o,
                                  &s, err, sizeof err);
        if (rc != cases[i].rc) {
            fprintf(stderr, "open_with case %zu:\n", i);
        }
        CHECK_EQ(rc, cases[i].rc);
        CHECK(s == untouched);
        CHECK_CONTAINS(err, cases[i].says);
        CHECK(access(path, F_OK) != 0); /* nothing created */
    }

    /* size: unset, too small, or unaligned is SLUICE_ERR_SIZE with a message. */
    o = options(0, 0);
    o.size = 0;
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open_with("global 1/1m", NULL, &o, &s, err, sizeof err), SLUICE_ERR_SIZE);
    CHECK(s == untouched);
    CHECK_CONTAINS(err, "sluice_open_with: options.size is 0: set it to sizeof(struct "
                        "sluice_open_options)");
    o.size = sizeof o + 2;
    CHECK_EQ(sluice_open_with("global 1/1m", NULL, &o, &s, err, sizeof err), SLUICE_ERR_SIZE);

    /* Options of a newer header: zero in what this library does not know is its default;
     * anything else cannot be honoured, and nothing is created. */
    struct open_options_next next;
    memset(&next, 0, sizeof next);
    next.o.size = sizeof next;
    s = NULL;
    CHECK_EQ(sluice_open_with("global 1/1m", path, &next.o, &s, err, sizeof err), SLUICE_OK);
    CHECK(s != NULL);
    sluice_close(s);
    CHECK_EQ(unlink(path), 0);
    next.future = 1;
    s = untouched;
    memset(err, 'Z', sizeof err);
    CHECK_EQ(sluice_open_with("global 1/1m", path, &next.o, &s, err, sizeof err),
             SLUICE_ERR_UNSUPPORTED);
    CHECK(s == untouched);
    CHECK_CONTAINS(err, "options has fields past the 16 bytes this library");
    CHECK(access(path, F_OK) != 0);

    /* Read-only: every recording call is refused with SLUICE_ERR_READ_ONLY and records
     * nothing; peek, stats, rule stats, headers and the policy work. */
    struct sluice *rw = NULL, *ro = NULL;
    CHECK_EQ(sluice_open("global 5/1m\nauth 5/1m\nauth lockout 3/1m for 1m", path, &rw, err,
                         sizeof err),
             SLUICE_OK);
    CHECK_EQ(sluice_check(rw, 0, KEY("k"), T0, &d), SLUICE_OK);
    o = options(SLUICE_OPEN_READ_ONLY, 0);
    CHECK_EQ(sluice_open_with(NULL, path, &o, &ro, err, sizeof err), SLUICE_OK);
    if (rw != NULL && ro != NULL) {
        const int auth = category_ok(ro, "auth");
        struct sluice_decision pristine;
        SENTINEL_FILL(&d, 1);
        pristine = d;
        CHECK_EQ(sluice_check(ro, 0, KEY("k"), T0 + 1, &d), SLUICE_ERR_READ_ONLY);
        CHECK_EQ(sluice_failure(ro, auth, KEY("k"), T0 + 1, &d), SLUICE_ERR_READ_ONLY);
        CHECK(memcmp(&d, &pristine, sizeof d) == 0);
        CHECK_EQ(sluice_allow(ro, 0, KEY("k"), T0 + 1), SLUICE_ERR_READ_ONLY);
        CHECK_EQ(sluice_success(ro, auth, KEY("k"), T0 + 1), SLUICE_ERR_READ_ONLY);
        CHECK_EQ(sluice_reset(ro, 0, KEY("k"), T0 + 1), SLUICE_ERR_READ_ONLY);
        struct sluice_request req = {RQ, 0, KEY("k")};
        CHECK_EQ(sluice_check_batch(ro, &req, 1, T0 + 1, &d, NULL), SLUICE_ERR_READ_ONLY);
        struct sluice_packed_request preq = packed(0, 1, 0);
        CHECK_EQ(sluice_check_packed(ro, "k", 1, &preq, 1, T0 + 1, &d, NULL),
                 SLUICE_ERR_READ_ONLY);
        CHECK(memcmp(&d, &pristine, sizeof d) == 0);
        d.size = sizeof d;
        CHECK_EQ(sluice_peek(ro, 0, KEY("k"), T0 + 1, &d), SLUICE_OK);
        CHECK_EQ(d.remaining, 3); /* the read-write handle's check, and nothing else */
        char hbuf[256];
        CHECK(sluice_headers(ro, &d, SLUICE_HEADERS_X_RATELIMIT, hbuf, sizeof hbuf) > 0);
        struct sluice_table_stats st;
        st.size = sizeof st;
        CHECK_EQ(sluice_stats(ro, SLUICE_NOW, &st), SLUICE_OK);
        CHECK_EQ(st.live_keys, 1);
        CHECK_EQ(st.categories, 2);
        struct sluice_rule_counts rs;
        rs.size = sizeof rs;
        CHECK_EQ(sluice_rule_stats(ro, 0, &rs), SLUICE_OK);
        CHECK_EQ(rs.passed, 1);
        CHECK_CONTAINS(sluice_policy(ro), "auth lockout 3/1m for 1m");
        CHECK_EQ(sluice_check(rw, 0, KEY("k"), T0 + 2, &d), SLUICE_OK);
        CHECK_EQ(d.remaining, 3); /* the read-write handle still records */
        CHECK_STR(sluice_strerror(SLUICE_ERR_READ_ONLY),
                  "the table was opened read-only; nothing was recorded");
    }
    sluice_close(ro);
    sluice_close(rw);
    CHECK_EQ(unlink(path), 0);
    CHECK_EQ(rmdir(dir), 0);
}

/* ---- table files: mode and read-only, as the file sees them ----------------------------- */

/* The permission bits of `path`, or -1. */
static int file_mode(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* Open `path` with options (flags, mode) and a small policy, or NULL; rc into *rc. */
static struct sluice *open_file_with(const char *policy, const char *path, uint32_t flags,
                                     uint32_t mode, int *rc, char *err, size_t err_cap) {
    struct sluice_open_options o = options(flags, mode);
    struct sluice *s = NULL;
    *rc = sluice_open_with(policy, path, &o, &s, err, err_cap);
    return *rc == SLUICE_OK ? s : NULL;
}

/* What a child that dropped to `nobody` (or, not root, a file it may only read) found, as bits
 * of its exit status. */
enum {
    RO_READ_WRITE_REFUSED = 1,  /* a read-write open gave SLUICE_ERR_IO */
    RO_OPENED = 2,              /* a read-only open succeeded */
    RO_PEEK_WORKS = 4,          /* and its peek saw the table */
    RO_CHECK_REFUSED = 8,       /* and its check was SLUICE_ERR_READ_ONLY */
    RO_ALL = 15,
};

static int read_only_probe(const char *path) {
    int found = 0;
    char err[512];
    struct sluice *s = NULL;
    int rc = sluice_open(NULL, path, &s, err, sizeof err);
    if (rc == SLUICE_ERR_IO) {
        found |= RO_READ_WRITE_REFUSED;
    } else {
        fprintf(stderr, "read-write open by a reader: %d (%s)\n", rc, err);
        sluice_close(s);
    }
    s = open_file_with(NULL, path, SLUICE_OPEN_READ_ONLY, 0, &rc, err, sizeof err);
    if (s != NULL) {
        found |= RO_OPENED;
        struct sluice_decision d;
        d.size = sizeof d;
        if (sluice_peek(s, 0, KEY("k"), T0 + 1, &d) == SLUICE_OK && d.remaining == 3) {
            found |= RO_PEEK_WORKS;
        }
        if (sluice_check(s, 0, KEY("k"), T0 + 1, &d) == SLUICE_ERR_READ_ONLY) {
            found |= RO_CHECK_REFUSED;
        }
        sluice_close(s);
    } else {
        fprintf(stderr, "read-only open by a reader: %d (%s)\n", rc, err);
    }
    return found;
}

static void test_file_options(void) {
    char dir[] = "/tmp/sluice-c-file-options-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ(chmod(dir, 0755), 0); /* so that `nobody` can reach the file below */
    char path[256], err[512];
    int rc;
    snprintf(path, sizeof path, "%s/t.sluice", dir);
    const char *policy = "global 5/1m\ncapacity 64";
    const mode_t old_umask = umask(077);

    /* mode 0 is 0600; a mode is the file's bits exactly, whatever the umask. */
    struct sluice *s = open_file_with(policy, path, 0, 0, &rc, err, sizeof err);
    CHECK_EQ(rc, SLUICE_OK);
    sluice_close(s);
    CHECK_EQ(file_mode(path), 0600);
    CHECK_EQ(unlink(path), 0);
    const uint32_t modes[] = {0640, 0660, 0644, 0666, 0400};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        s = open_file_with(policy, path, 0, modes[i], &rc, err, sizeof err);
        CHECK_EQ(rc, SLUICE_OK);
        sluice_close(s);
        if (file_mode(path) != (int)modes[i]) {
            fprintf(stderr, "created with mode 0%o under umask 077:\n", (unsigned)modes[i]);
        }
        CHECK_EQ(file_mode(path), (int)modes[i]);
        CHECK_EQ(unlink(path), 0);
    }
    umask(old_umask);

    /* An existing file keeps its own mode. */
    s = open_file_with(policy, path, 0, 0640, &rc, err, sizeof err);
    CHECK_EQ(rc, SLUICE_OK);
    sluice_close(s);
    CHECK_EQ(chmod(path, 0604), 0);
    s = open_file_with(policy, path, 0, 0660, &rc, err, sizeof err);
    CHECK_EQ(rc, SLUICE_OK);
    sluice_close(s);
    CHECK_EQ(file_mode(path), 0604);
    CHECK_EQ(unlink(path), 0);

    /* Read-only never creates: a missing file is an error, with or without a policy. */
    s = open_file_with(policy, path, SLUICE_OPEN_READ_ONLY, 0, &rc, err, sizeof err);
    CHECK_EQ(rc, SLUICE_ERR_NO_TABLE);
    CHECK(s == NULL);
    CHECK(access(path, F_OK) != 0);
    sluice_close(s);
    s = open_file_with(NULL, path, SLUICE_OPEN_READ_ONLY, 0, &rc, err, sizeof err);
    CHECK_EQ(rc, SLUICE_ERR_NO_TABLE);
    CHECK(access(path, F_OK) != 0);
    sluice_close(s);
    unlink(path); /* in case one of the opens above made it */

    /* A read-only attach, peek and stats leave the file's bytes as they were. */
    struct sluice *rw = open_file_with(policy, path, 0, 0644, &rc, err, sizeof err);
    CHECK_EQ(rc, SLUICE_OK);
    struct sluice_decision d;
    d.size = sizeof d;
    CHECK_EQ(sluice_check(rw, 0, KEY("k"), T0, &d), SLUICE_OK);
    sluice_close(rw);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    static unsigned char before[1 << 20], after[1 << 20];
    size_t n_before = f != NULL ? fread(before, 1, sizeof before, f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    CHECK(n_before > 0 && n_before < sizeof before);
    s = open_file_with(NULL, path, SLUICE_OPEN_READ_ONLY, 0, &rc, err, sizeof err);
    CHECK_EQ(rc, SLUICE_OK);
    CHECK_EQ(sluice_peek(s, 0, KEY("k"), T0 + 1, &d), SLUICE_OK);
    CHECK_EQ(d.remaining, 3);
    struct sluice_table_stats st;
    st.size = sizeof st;
    CHECK_EQ(sluice_stats(s, SLUICE_NOW, &st), SLUICE_OK);
    sluice_close(s);
    f = fopen(path, "rb");
    size_t n_after = f != NULL ? fread(after, 1, sizeof after, f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    CHECK(n_after == n_before && memcmp(before, after, n_before) == 0);

    /* A user who may only read the file: a read-write open is refused (SLUICE_ERR_IO), a
     * read-only one works. As root, in a child that drops to `nobody` (root may write any
     * file, which would prove nothing); otherwise, in this process, on a file made 0444. */
    if (geteuid() == 0) {
        struct passwd *nobody = getpwnam("nobody");
        CHECK(nobody != NULL);
        if (nobody != NULL) {
            uid_t uid = nobody->pw_uid;
            gid_t gid = nobody->pw_gid;
            /* The child's findings come back through a pipe, not its exit status (which a
             * tool such as valgrind may replace with its own). */
            int fds[2];
            CHECK_EQ(pipe(fds), 0);
            fflush(NULL);
            pid_t child = fork();
            CHECK(child >= 0);
            if (child == 0) {
                close(fds[0]);
                unsigned char found = 0;
                if (setgroups(0, NULL) == 0 && setgid(gid) == 0 && setuid(uid) == 0) {
                    found = (unsigned char)read_only_probe(path);
                } else {
                    found = 100;
                }
                if (write(fds[1], &found, 1) != 1) {
                    _exit(1);
                }
                close(fds[1]);
                _exit(0);
            }
            close(fds[1]);
            unsigned char byte = 0;
            int found = read(fds[0], &byte, 1) == 1 ? byte : -1;
            close(fds[0]);
            int status = 0;
            CHECK_EQ(waitpid(child, &status, 0), child);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            if (found != RO_ALL) {
                fprintf(stderr, "read-only probe as nobody found %d of %d\n", found, RO_ALL);
            }
            CHECK_EQ(found & RO_READ_WRITE_REFUSED, RO_READ_WRITE_REFUSED);
            CHECK_EQ(found & RO_OPENED, RO_OPENED);
            CHECK_EQ(found & RO_PEEK_WORKS, RO_PEEK_WORKS);
            CHECK_EQ(found & RO_CHECK_REFUSED, RO_CHECK_REFUSED);
        }
    } else {
        CHECK_EQ(chmod(path, 0444), 0);
        CHECK_EQ(read_only_probe(path), RO_ALL);
    }
    CHECK_EQ(unlink(path), 0);
    CHECK_EQ(rmdir(dir), 0);
}

/* ---- sluice_migrate / sluice_superseded ---------------------------------------------- */

static void test_migrate(void) {
    char dir[] = "/tmp/sluice-c-migrate-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char from[256], to[256], junk[256];
    snprintf(from, sizeof from, "%s/old.sluice", dir);
    snprintf(to, sizeof to, "%s/new.sluice", dir);
    snprintf(junk, sizeof junk, "%s/junk", dir);
    const char *old_policy = "global 10/1m\nauth lockout 2/15m for 15m\ncapacity 100\n";
    const char *new_policy = "global 20/1m\nmedia 5/1m\nauth lockout 2/15m for 15m\ncapacity 100\n";
    char err[512], buf[512];
    struct sluice_decision d;
    d.size = sizeof d;
    sluice *old = NULL;
    CHECK_EQ(sluice_open(old_policy, from, &old, err, sizeof err), SLUICE_OK);
    int auth = sluice_category(old, "auth");
    CHECK(auth > 0);
    CHECK_EQ(sluice_failure(old, auth, KEY("mallory"), SLUICE_NOW, &d), SLUICE_OK);
    CHECK_EQ(sluice_failure(old, auth, KEY("mallory"), SLUICE_NOW, &d), SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK_EQ(sluice_superseded(old, buf, sizeof buf), 0);
    CHECK_STR(buf, "");

    /* Bad input: nothing created. */
    struct sluice_migration r;
    memset(&r, 0, sizeof r);
    r.size = sizeof r;
    CHECK_EQ(sluice_migrate(from, to, "global 10/1 minute\n", &r, err, sizeof err),
             SLUICE_ERR_POLICY);
    CHECK_CONTAINS(err, "line 1");
    CHECK_EQ(sluice_migrate(NULL, to, NULL, NULL, err, sizeof err), SLUICE_ERR_NULL);
    r.size = 0;
    CHECK_EQ(sluice_migrate(from, to, NULL, &r, err, sizeof err), SLUICE_ERR_SIZE);
    FILE *f = fopen(junk, "w");
    CHECK(f != NULL);
    fputs("not a table", f);
    fclose(f);
    CHECK_EQ(sluice_migrate(junk, to, NULL, NULL, err, sizeof err), SLUICE_ERR_NOT_A_TABLE);
    CHECK_EQ(sluice_migrate(from, junk, NULL, NULL, err, sizeof err), SLUICE_ERR_MIGRATION);
    CHECK_CONTAINS(err, "exists");
    struct stat st;
    CHECK(stat(to, &st) != 0);

    r.size = sizeof r;
    CHECK_EQ(sluice_migrate(from, to, new_policy, &r, err, sizeof err), SLUICE_OK);
    CHECK_EQ(r.size, sizeof r);
    CHECK_EQ(r.keys, 1u);
    CHECK_EQ(r.locked_keys, 1u);
    CHECK_EQ(r.in_place, 0);
    CHECK_EQ(r.from_format, 1u);

    /* The old handle is told where the table went; the new table holds the lock. */
    int n = sluice_superseded(old, NULL, 0);
    CHECK(n > 0);
    CHECK_EQ(sluice_superseded(old, buf, sizeof buf), n);
    CHECK_STR(buf, to);
    CHECK_EQ(sluice_superseded(NULL, buf, sizeof buf), SLUICE_ERR_NULL);
    sluice *fresh = NULL;
    CHECK_EQ(sluice_open(new_policy, to, &fresh, err, sizeof err), SLUICE_OK);
    CHECK_EQ(sluice_check(fresh, sluice_category(fresh, "auth"), KEY("mallory"), SLUICE_NOW, &d),
             SLUICE_OK);
    CHECK_EQ(d.status, SLUICE_STATUS_LOCKED);
    CHECK(d.retry_after > 800);

    /* In place: the path then names the new table. */
    r.size = sizeof r;
    CHECK_EQ(sluice_migrate(to, to, old_policy, &r, err, sizeof err), SLUICE_OK);
    CHECK_EQ(r.in_place, 1);
    CHECK_EQ(r.locked_keys, 1u);
    CHECK_EQ(sluice_superseded(fresh, buf, sizeof buf), (int)strlen(to));
    sluice *again = NULL;
    CHECK_EQ(sluice_open(old_policy, to, &again, err, sizeof err), SLUICE_OK);
    CHECK_EQ(sluice_superseded(again, buf, sizeof buf), 0);
    sluice_close(again);
    sluice_close(fresh);
    sluice_close(old);
    unlink(from);
    unlink(to);
    unlink(junk);
    rmdir(dir);
}

int main(void) {
    test_version();
    test_strerror();
    test_open();
    test_open_flags();
    test_open_with();
    test_file_options();
    test_sizes();
    test_shared_file();
    test_category();
    test_describe();
    test_check_sequence();
    test_check_now();
    test_check_errors();
    test_peek();
    test_allow();
    test_lockout();
    test_batch();
    test_packed();
    test_headers();
    test_stats();
    test_two_threads();
    test_migrate();
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
