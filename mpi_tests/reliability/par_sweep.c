/*
 * par_sweep.c - the bad-input sweep through the library, every case in one
 * MPI job (so the sanitizer build can afford all of them): for each case of
 * make_bad_inputs.py's manifest,
 *  - sts_consolidate (cases marked c) and sts_reader_open (cases marked r,
 *    the first step of `stshard reshard` and `stshard load`) return the
 *    expected error, with the same code and the same message on every rank;
 *  - consolidate leaves nothing in its output directory;
 *  - the valid control cases succeed (and the consolidated output verifies).
 * Usage: par_sweep CASES_DIR WORKDIR (2..4 ranks; outputs go to WORKDIR/np<size>).
 */
#include <dirent.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"

typedef struct scase {
    char name[256], tools[8], expected[256];
} scase;

/* Every rank reads the manifest itself (a small local file). */
static scase *read_manifest(const char *dir, size_t *n)
{
    char path[4096], line[1024];
    size_t cap = 0;
    scase *v = NULL;
    FILE *f;
    snprintf(path, sizeof path, "%s/cases.tsv", dir);
    f = fopen(path, "r");
    *n = 0;
    if (!f)
        return NULL;
    while (fgets(line, sizeof line, f)) {
        scase c;
        if (sscanf(line, "%255[^\t]\t%7[^\t]\t%255[^\n]", c.name, c.tools, c.expected) != 3)
            continue;
        if (*n == cap) {
            scase *w = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
            if (!w)
                break;
            v = w;
        }
        v[(*n)++] = c;
    }
    fclose(f);
    return v;
}

/* The error name matches the case's expected alternatives exactly. */
static int name_matches(const char *expected, int rc)
{
    char re[300];
    regex_t r;
    int ok;
    if (strcmp(expected, "-") == 0)
        return rc == STS_OK;
    snprintf(re, sizeof re, "^(%s)$", expected);
    if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB) != 0)
        return 0;
    ok = regexec(&r, sts_errname(rc), 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

static int same_everywhere(MPI_Comm comm, int rc, const char *msg, size_t len)
{
    int np, ok = 1;
    MPI_Comm_size(comm, &np);
    int *codes = malloc(sizeof(int) * (size_t)np);
    char *msgs = malloc(len * (size_t)np);
    MPI_Allgather(&rc, 1, MPI_INT, codes, 1, MPI_INT, comm);
    MPI_Allgather(msg, (int)len, MPI_CHAR, msgs, (int)len, MPI_CHAR, comm);
    for (int r = 1; r < np; r++)
        ok &= codes[r] == codes[0] && strncmp(msgs + (size_t)r * len, msgs, len) == 0;
    free(codes);
    free(msgs);
    return ok;
}

/* Entries left in dir (0 when it does not exist). */
static int leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void report(int me, const char *tool, const scase *c, int rc, const char *msg)
{
    if (me == 0)
        fprintf(stderr, "FAIL %s %s: got %s (%s), expected %s\n", tool, c->name, sts_errname(rc),
                msg, c->expected);
}

static int sweep_consolidate(const scase *c, const char *cases, const char *work, int me)
{
    char in[4096], out[4400];
    sts_diag d;
    int rc, bad = 0;
    snprintf(in, sizeof in, "%s/%s", cases, c->name);
    snprintf(out, sizeof out, "%s/cons-%s", work, c->name);
    memset(&d, 0, sizeof d);
    rc = sts_consolidate(MPI_COMM_WORLD, in, out, NULL, NULL, &d);
    if (!same_everywhere(MPI_COMM_WORLD, rc, d.message, sizeof d.message)) {
        bad = 1;
        if (me == 0)
            fprintf(stderr, "FAIL consolidate %s: ranks disagree\n", c->name);
    }
    if (!name_matches(c->expected, rc)) {
        bad = 1;
        report(me, "consolidate", c, rc, d.message);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (me == 0 && rc != STS_OK && leftovers(out) != 0) {
        bad = 1;
        fprintf(stderr, "FAIL consolidate %s: files left in %s\n", c->name, out);
    }
    if (me == 0 && rc == STS_OK && sts_verify_path(out, NULL, NULL, NULL) != STS_OK) {
        bad = 1;
        fprintf(stderr, "FAIL consolidate %s: the output does not verify\n", c->name);
    }
    return bad;
}

static int sweep_reader(const scase *c, const char *cases, int me)
{
    char in[4096];
    sts_reader *r = NULL;
    sts_diag d;
    int rc, bad = 0;
    snprintf(in, sizeof in, "%s/%s", cases, c->name);
    memset(&d, 0, sizeof d);
    rc = sts_reader_open(MPI_COMM_WORLD, in, MPI_INFO_NULL, &r, &d);
    if (!same_everywhere(MPI_COMM_WORLD, rc, d.message, sizeof d.message)) {
        bad = 1;
        if (me == 0)
            fprintf(stderr, "FAIL reader %s: ranks disagree\n", c->name);
    }
    if (!name_matches(c->expected, rc)) {
        bad = 1;
        report(me, "reader", c, rc, d.message);
    }
    CHECK((rc == STS_OK) == (r != NULL));
    sts_reader_free(r);
    return bad;
}

int main(int argc, char **argv)
{
    int me, np;
    char work[4096];
    size_t n = 0, ncons = 0, nread = 0, failed = 0;
    scase *cases;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (argc != 3) {
        if (me == 0)
            fprintf(stderr, "usage: par_sweep CASES_DIR WORKDIR\n");
        MPI_Finalize();
        return 2;
    }
    /* A work directory per job size, so jobs of several sizes can run side by side. */
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    snprintf(work, sizeof work, "%s/np%d", argv[2], np);
    cases = read_manifest(argv[1], &n);
    CHECK(cases != NULL && n >= 50);
    for (size_t i = 0; i < n; i++) {
        if (strchr(cases[i].tools, 'c')) {
            failed += (size_t)sweep_consolidate(&cases[i], argv[1], work, me);
            ncons++;
        }
        if (strchr(cases[i].tools, 'r')) {
            failed += (size_t)sweep_reader(&cases[i], argv[1], me);
            nread++;
        }
    }
    test_failures += (int)failed;
    /* Not vacuous: most of the manifest went through both. */
    CHECK(ncons >= 50 && nread >= 50);
    TEST_AGREE(MPI_COMM_WORLD);
    if (me == 0)
        printf("par_sweep: %zu consolidate and %zu reader cases, %zu failed\n", ncons, nread,
               failed);
    free(cases);
    MPI_Finalize();
    return TEST_EXIT();
}
