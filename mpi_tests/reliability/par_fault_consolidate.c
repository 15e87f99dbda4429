/*
 * par_fault_consolidate.c - error agreement of sts_consolidate at every
 * phase: a failure injected on ONE rank (fault switch, test builds) must come
 * back from the collective call on EVERY rank with the same code and the same
 * message, and leave no final-named and no temporary file behind; the run
 * after it, into the same directory, must succeed.
 *
 * Usage: par_fault_consolidate INDIR WORKDIR (INDIR: rank files, e.g. from
 * gen_many).  Run with 2..8 ranks.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"

typedef struct fcase {
    const char *spec; /* STSHARD_FAULT without the rank */
    int code;         /* expected, or STS_OK when the rank may not reach the point */
    int may_miss;
} fcase;

static const fcase cases[] = {
    {"point=open,code=noent", STS_E_NOENT, 1},
    {"point=read,code=io", STS_E_IO, 1},
    {"point=read,hit=2,code=io", STS_E_IO, 1},
    {"point=write,code=nospace", STS_E_NOSPACE, 1},
    {"point=write,hit=3,code=nospace", STS_E_NOSPACE, 1},
    {"point=rename,code=access", STS_E_ACCESS, 1},
    {"point=cons.*,code=internal", STS_E_INTERNAL, 1},
    {"point=cons.planned,code=nomem", STS_E_NOMEM, 1},
    /* The record exchange's receive buffer: one rank out of memory must not leave the
     * others inside the gather (every rank reaches this point, so it must fire). */
    {"point=xchg.alloc,code=nomem", STS_E_NOMEM, 0},
    /* The metadata plane (meta.c): its fourth exchange (block replies) and its end. */
    {"point=xchg.alloc,hit=4,code=nomem", STS_E_NOMEM, 0},
    {"point=meta.fetched,code=nomem", STS_E_NOMEM, 0},
};

/* Names in dir that look like output (final or temporary); 0 when dir is absent. */
static int count_outputs(const char *dir, int *finals, int *partials)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    *finals = *partials = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 16 && strcmp(e->d_name + n - 16, ".stshard-partial") == 0)
            (*partials)++;
        else if (strncmp(e->d_name, "model", 5) == 0)
            (*finals)++;
    }
    closedir(d);
    return 1;
}

/* Every rank holds the same code and message. */
static int same_everywhere(int rc, const sts_diag *d, int np)
{
    int ok = 1;
    int *codes = malloc(sizeof(int) * (size_t)np);
    char *msgs = malloc(sizeof d->message * (size_t)np);
    MPI_Allgather(&rc, 1, MPI_INT, codes, 1, MPI_INT, MPI_COMM_WORLD);
    MPI_Allgather(d->message, (int)sizeof d->message, MPI_CHAR, msgs, (int)sizeof d->message,
                  MPI_CHAR, MPI_COMM_WORLD);
    for (int r = 1; r < np; r++)
        ok &= codes[r] == codes[0] && strcmp(msgs + r * sizeof d->message, msgs) == 0;
    free(codes);
    free(msgs);
    return ok;
}

static int run(const char *in, const char *out, sts_diag *d)
{
    sts_consolidate_opts o;
    sts_consolidate_opts_init(&o);
    o.buffer_size = 64 * 1024; /* many data transfers per rank */
    o.max_file_size = 1000000; /* several output files */
    memset(d, 0, sizeof *d);
    return sts_consolidate(MPI_COMM_WORLD, in, out, &o, NULL, d);
}

int main(int argc, char **argv)
{
    int me, np, fired = 0;
    char spec[256], out[4096];
    sts_diag d;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    if (argc != 3) {
        if (me == 0)
            fprintf(stderr, "usage: par_fault_consolidate INDIR WORKDIR\n");
        MPI_Finalize();
        return 2;
    }
    snprintf(out, sizeof out, "%s/out", argv[2]);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int victim = 0; victim<np; victim += np> 1 ? np - 1 : 1) {
            int rc, finals, partials;
            snprintf(spec, sizeof spec, "%s,rank=%d", cases[c].spec, victim);
            setenv("STSHARD_FAULT", spec, 1);
            rc = run(argv[1], out, &d);
            unsetenv("STSHARD_FAULT");
            CHECK(same_everywhere(rc, &d, np));
            if (rc == STS_OK && cases[c].may_miss) {
                /* This rank never reached the point: the run must simply have worked. */
                if (me == 0)
                    printf("  %-40s not reached\n", spec);
                MPI_Barrier(MPI_COMM_WORLD);
                if (me == 0) {
                    char cmd[8300];
                    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
                    CHECK(system(cmd) == 0);
                }
                MPI_Barrier(MPI_COMM_WORLD);
                continue;
            }
            fired++;
            CHECK_RC(rc, cases[c].code);
            CHECK(strstr(d.message, "injected fault") != NULL);
            count_outputs(out, &finals, &partials);
            CHECK(finals == 0 && partials == 0);
            if (me == 0)
                printf("  %-40s -> %s: %.120s\n", spec, sts_errname(rc), d.message);
            if (finals || partials)
                fprintf(stderr, "rank %d: %s left %d final and %d temporary files\n", me, spec,
                        finals, partials);
            MPI_Barrier(MPI_COMM_WORLD);
        }
    }
    /* Every point fired on some rank (the cases are not vacuous). */
    CHECK(fired >= (int)(sizeof cases / sizeof cases[0]));
    /* After all those failures, the same output directory takes a clean run. */
    CHECK_OK(run(argv[1], out, &d));
    TEST_AGREE(MPI_COMM_WORLD);
    if (me == 0)
        printf("par_fault_consolidate: %d injected failures agreed; %s\n", fired,
               test_failures ? "FAILED" : "ok");
    MPI_Finalize();
    return TEST_EXIT();
}
