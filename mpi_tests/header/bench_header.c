/*
 * bench_header.c - header codec throughput on a 1,000,000-tensor header
 * (about 100 MB of JSON), against baselines over the same buffer in the same
 * run: a memchr pass counting quotes and a memcpy.  Prints figures only;
 * nothing is asserted on time (docs/benchmarks.md records the results).
 * Correctness of what was parsed is checked, so the benchmark can fail.
 *
 *   bench_header [ntensors]     (default 1000000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_util.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best of three runs of the measured expression (seconds). */
#define BEST_OF_3(out, stmt)                                                                       \
    do {                                                                                           \
        (out) = 1e30;                                                                              \
        for (int rep_ = 0; rep_ < 3; rep_++) {                                                     \
            double t0_ = now();                                                                    \
            stmt;                                                                                  \
            double dt_ = now() - t0_;                                                              \
            if (dt_ < (out))                                                                       \
                (out) = dt_;                                                                       \
        }                                                                                          \
    } while (0)

static size_t count_quotes(const char *p, size_t n)
{
    size_t c = 0;
    const char *end = p + n;
    while ((p = memchr(p, '"', (size_t)(end - p))) != NULL) {
        c++;
        p++;
    }
    return c;
}

/*
 * The same tensors written by hand with the JSON order reversed against the
 * offset order, so the parser must really sort (canonical files skip it).
 */
static char *reversed_header(const sts_tensor_desc *t, const uint64_t *b, const uint64_t *e,
                             size_t n, size_t *len)
{
    size_t cap = n * 160 + 16, o = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[o++] = '{';
    for (size_t k = 0; k < n; k++) {
        size_t i = n - 1 - k;
        o += (size_t)snprintf(s + o, cap - o,
                              "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%llu,%llu],"
                              "\"data_offsets\":[%llu,%llu]}",
                              k ? "," : "", t[i].name, (unsigned long long)t[i].shape[0],
                              (unsigned long long)t[i].shape[1], (unsigned long long)b[i],
                              (unsigned long long)e[i]);
    }
    s[o++] = '}';
    *len = o;
    return s;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000000;
    char(*names)[64] = calloc(n, sizeof *names);
    uint64_t(*shapes)[2] = calloc(n, sizeof *shapes);
    sts_tensor_desc *t = calloc(n, sizeof *t);
    uint64_t *b = calloc(n, sizeof *b), *e = calloc(n, sizeof *e);
    char *copy = NULL, *rev = NULL;
    void *buf = NULL;
    size_t len = 0, rev_len = 0, quotes = 0, found = 0;
    uint64_t total = 0;
    double t_enc, t_parse, t_rev, t_find, t_chr, t_cpy;
    sts_header *h = NULL;

    if (!names || !shapes || !t || !b || !e)
        return 1;
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "layers.%zu.experts.%zu.w", i / 64, i % 64);
        shapes[i][0] = 1 + i % 7;
        shapes[i][1] = 8;
        t[i] = (sts_tensor_desc){names[i], STS_BF16, 2, shapes[i]};
    }
    BEST_OF_3(t_enc, sts_free(buf); buf = NULL; CHECK_OK(sts_header_encode(
        t, n, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, b, e, NULL)));
    if (!buf)
        return 1;
    for (size_t i = 0; i < n; i++)
        total = e[i] > total ? e[i] : total;
    copy = malloc(len);
    BEST_OF_3(t_cpy, memcpy(copy, buf, len));
    BEST_OF_3(t_chr, quotes = count_quotes(copy, len));
    BEST_OF_3(t_parse, sts_header_free(h); h = NULL;
              CHECK_OK(sts_header_parse((char *)buf + 8, len - 8, total, &h, NULL)));
    CHECK(sts_header_count(h) == n);
    BEST_OF_3(t_find, found = 0; for (size_t i = 0; i < n; i++) found +=
                                 sts_header_find(h, names[i], strlen(names[i])) >= 0);
    CHECK(found == n);
    sts_header_free(h);
    h = NULL;
    rev = reversed_header(t, b, e, n, &rev_len);
    BEST_OF_3(t_rev, sts_header_free(h); h = NULL;
              CHECK_OK(sts_header_parse(rev, rev_len, total, &h, NULL)));
    CHECK(sts_header_count(h) == n && sts_header_tensor(h, 0)->begin == 0);
    sts_header_free(h);

    printf("bench_header: %zu tensors, header %.1f MB (%zu quotes)\n", n, (double)(len - 8) / 1e6,
           quotes);
    printf("  memcpy baseline      %8.3f s  %8.0f MB/s\n", t_cpy, (double)len / 1e6 / t_cpy);
    printf("  memchr('\"') baseline %8.3f s  %8.0f MB/s\n", t_chr, (double)len / 1e6 / t_chr);
    printf("  parse (sorted)       %8.3f s  %8.0f MB/s  %6.1fx memchr  %6.1fx memcpy\n", t_parse,
           (double)len / 1e6 / t_parse, t_parse / t_chr, t_parse / t_cpy);
    printf("  parse (needs sort)   %8.3f s  %8.0f MB/s  %6.1fx memchr\n", t_rev,
           (double)rev_len / 1e6 / t_rev, t_rev / t_chr);
    printf("  encode (canonical)   %8.3f s  %8.0f MB/s  %6.1fx memchr\n", t_enc,
           (double)len / 1e6 / t_enc, t_enc / t_chr);
    printf("  find, every name     %8.3f s  %8.0f ns/lookup\n", t_find, t_find * 1e9 / (double)n);
    sts_free(buf);
    free(copy);
    free(rev);
    free(names);
    free(shapes);
    free(t);
    free(b);
    free(e);
    return TEST_EXIT();
}
