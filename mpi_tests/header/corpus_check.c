/*
 * corpus_check.c - runs sts_header_read_file over every *.safetensors file of
 * a directory and checks the outcome against the file's name.
 *
 *   corpus_check --bad DIR    each file <ErrorName>__<defect>.safetensors must
 *                             fail with exactly <ErrorName>, and every format
 *                             rule must have at least two files
 *   corpus_check --good DIR   each file must be accepted (and its sharding
 *                             info decode, when it has any)
 *   corpus_check --big DIR    writes a file whose header is exactly
 *                             100,000,000 bytes ("{}" and spaces) into DIR,
 *                             checks it is accepted, and deletes it
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

static const char *const rules[] = {"HeaderTooSmall",
                                    "HeaderTooLarge",
                                    "InvalidHeaderLength",
                                    "InvalidHeader",
                                    "InvalidHeaderDeserialization",
                                    "InvalidOffset",
                                    "ValidationOverflow",
                                    "MisalignedSlice",
                                    "TensorInvalidInfo",
                                    "MetadataIncompleteBuffer",
                                    "DuplicateName",
                                    "ReservedName",
                                    "UnknownKey"};
#define NRULES (sizeof rules / sizeof rules[0])

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The *.safetensors names of dir, sorted; NULL-terminated, caller frees. */
static char **list_dir(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **v = NULL;
    size_t cap = 0;
    *n = 0;
    if (!d) {
        fprintf(stderr, "cannot open directory %s\n", dir);
        return NULL;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0)
            continue;
        if (*n + 1 >= cap) {
            cap = cap ? cap * 2 : 64;
            v = realloc(v, cap * sizeof *v);
            if (!v)
                break;
        }
        v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (v)
        qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

static int check_one(const char *dir, const char *file, int good, size_t *per_rule)
{
    char path[4096];
    sts_header *h = NULL;
    sts_diag diag;
    int rc, ok;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    rc = sts_header_read_file(path, &h, NULL, &diag);
    if (good) {
        ok = rc == STS_OK;
        if (ok && sts_header_meta_get(h, "DCP_SHARDING_INFO")) {
            rc = sts_header_decode_sharding(h, &diag);
            ok = rc == STS_OK;
        }
    } else {
        const char *sep = strstr(file, "__");
        size_t plen = sep ? (size_t)(sep - file) : 0;
        const char *got = sts_errname(rc);
        ok = sep && strlen(got) == plen && strncmp(file, got, plen) == 0;
        /* The message must carry the path and the rule's name. */
        ok = ok && strstr(diag.message, path) == diag.message && strstr(diag.message, got);
        for (size_t r = 0; ok && r < NRULES; r++)
            if (strcmp(rules[r], got) == 0)
                per_rule[r]++;
    }
    printf("%-4s %-60s %s%s%s\n", ok ? "ok" : "FAIL", file, sts_errname(rc), rc ? ": " : "",
           rc ? diag.message : "");
    sts_header_free(h);
    return ok;
}

static int check_dir(const char *dir, int good)
{
    size_t n = 0, per_rule[NRULES] = {0};
    char **files = list_dir(dir, &n);
    if (!files || n == 0) {
        fprintf(stderr, "no .safetensors files in %s\n", dir);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        CHECK(check_one(dir, files[i], good, per_rule));
        free(files[i]);
    }
    free(files);
    for (size_t r = 0; !good && r < NRULES; r++) {
        if (per_rule[r] < 2) {
            fprintf(stderr, "rule %s has %zu corpus file(s); want at least 2\n", rules[r],
                    per_rule[r]);
            test_failures++;
        }
    }
    printf("%zu files, %d failure(s)\n", n, test_failures);
    return TEST_EXIT();
}

/* The largest legal header: N = 100,000,000, "{}" then spaces; no data. */
static int check_big(const char *dir)
{
    char path[4096];
    const size_t n = (size_t)STS_MAX_HEADER_SIZE;
    unsigned char pre[8];
    char *buf = malloc(n);
    sts_header *h = NULL;
    sts_diag diag;
    uint64_t start = 0;
    FILE *f;
    snprintf(path, sizeof path, "%s/header_100000000.safetensors", dir);
    CHECK(buf != NULL);
    if (!buf)
        return 1;
    memset(buf, ' ', n);
    buf[0] = '{';
    buf[1] = '}';
    for (int i = 0; i < 8; i++)
        pre[i] = (unsigned char)((uint64_t)n >> (8 * i));
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        CHECK(fwrite(pre, 1, 8, f) == 8 && fwrite(buf, 1, n, f) == n);
        CHECK(fclose(f) == 0);
        CHECK_OK(sts_header_read_file(path, &h, &start, &diag));
        CHECK(start == 8 + n && sts_header_count(h) == 0);
        sts_header_free(h);
        /* One byte more is HeaderTooLarge, even with the bytes present. */
        f = fopen(path, "r+b");
        pre[0]++;
        CHECK(f && fwrite(pre, 1, 8, f) == 8 && fseek(f, 0, SEEK_END) == 0 && fputc(' ', f) == ' ');
        CHECK(f && fclose(f) == 0);
        CHECK_RC(sts_header_read_file(path, &h, &start, &diag), STS_E_HEADER_TOO_LARGE);
        remove(path);
    }
    free(buf);
    return TEST_EXIT();
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--bad") == 0)
        return check_dir(argv[2], 0);
    if (argc == 3 && strcmp(argv[1], "--good") == 0)
        return check_dir(argv[2], 1);
    if (argc == 3 && strcmp(argv[1], "--big") == 0)
        return check_big(argv[2]);
    fprintf(stderr, "usage: corpus_check --bad|--good|--big DIR\n");
    return 2;
}
