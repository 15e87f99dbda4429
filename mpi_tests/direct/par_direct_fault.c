/*
 * par_direct_fault.c - error agreement of the direct save and of the one-call
 * save + consolidate at every phase: a failure injected on ONE rank (fault
 * switch STSHARD_FAULT, test builds with STS_FAULT_INJECTION) must come back
 * from sts_writer_commit on EVERY rank with the same code and message, and
 * leave no final-named and no temporary file in the output directory; the
 * save after it, into the same directory, must succeed.
 *
 * Usage: par_direct_fault WORKDIR.  Run with 2..4 ranks.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

typedef struct fcase {
    const char *spec; /* STSHARD_FAULT without the rank */
    int code;         /* expected */
    int rank0_only;   /* the point is reached by rank 0 only (publish) */
} fcase;

/* Points of the direct save: collective open, independent writes, collective rounds, plan, publish.
 */
static const fcase direct_cases[] = {
    {"point=open,code=noent", STS_E_NOENT, 0},
    {"point=open,hit=3,code=access", STS_E_ACCESS, 0},
    {"point=write,code=nospace", STS_E_NOSPACE, 0},
    {"point=write,hit=2,code=io", STS_E_IO, 0},
    {"point=direct.round,code=io", STS_E_IO, 0},
    {"point=direct.round,hit=4,code=nospace", STS_E_NOSPACE, 0},
    {"point=direct.planned,code=nomem", STS_E_NOMEM, 0},
    {"point=rename,code=access", STS_E_ACCESS, 1},
    {"point=rename,hit=2,code=io", STS_E_IO, 1},
};

static int me, np;
static char root[512];

/* Names in dir that look like output: final model files or index, and temporaries. */
static void count_outputs(const char *dir, int *finals, int *partials)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    *finals = *partials = 0;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 16 && strcmp(e->d_name + n - 16, ".stshard-partial") == 0)
            (*partials)++;
        else if (strncmp(e->d_name, "model", 5) == 0)
            (*finals)++;
    }
    closedir(d);
}

/* Every rank holds the same code and message. */
static int same_everywhere(int rc, const char *msg)
{
    char mine[1024], *all = malloc(sizeof mine * (size_t)np);
    int *codes = malloc(sizeof(int) * (size_t)np), ok = all && codes;
    memset(mine, 0, sizeof mine);
    snprintf(mine, sizeof mine, "%s", msg);
    if (ok) {
        MPI_Allgather(&rc, 1, MPI_INT, codes, 1, MPI_INT, MPI_COMM_WORLD);
        MPI_Allgather(mine, (int)sizeof mine, MPI_CHAR, all, (int)sizeof mine, MPI_CHAR,
                      MPI_COMM_WORLD);
        for (int r = 1; r < np; r++)
            ok &= codes[r] == codes[0] && strcmp(all + r * sizeof mine, all) == 0;
    }
    free(all);
    free(codes);
    return ok;
}

/*
 * This rank's blocks: a column-split tensor (5 collective rounds of 4 KiB per
 * rank through views, more exchange rounds of 2 KiB chunks), two row-split ones of 1 MiB per rank
 * (each one independent write, past the staging buffer), a replica.
 */
typedef struct data {
    uint64_t gcol[2], ocol[2], scol[2], grow[2], orow[2], srow[2], gnorm[1], znorm[1];
    unsigned char *col, *row, *norm;
} data;

static void make_data(data *x)
{
    uint64_t cw = 96 / (uint64_t)np;
    memset(x, 0, sizeof *x);
    x->gcol[0] = 300;
    x->gcol[1] = cw * (uint64_t)np;
    x->scol[0] = 300;
    x->scol[1] = cw;
    x->ocol[1] = cw * (uint64_t)me;
    x->grow[0] = 64 * (uint64_t)np;
    x->grow[1] = 4096;
    x->orow[0] = 64 * (uint64_t)me;
    x->srow[0] = 64;
    x->srow[1] = 4096;
    x->gnorm[0] = 100;
    x->col = malloc(300 * cw * 2);
    x->row = malloc(64 * 4096 * 4);
    x->norm = malloc(100 * 4);
    for (size_t i = 0; i < 300 * cw * 2; i++)
        x->col[i] = (unsigned char)(i * 7 + (size_t)me);
    for (size_t i = 0; i < 64 * 4096 * 4; i++)
        x->row[i] = (unsigned char)(i * 13 + (size_t)me);
    for (size_t i = 0; i < 400; i++)
        x->norm[i] = (unsigned char)i;
}

static int save(const data *x, const char *dir, const char *cons_dir, int direct, char *msg,
                size_t len)
{
    sts_save_opts o;
    sts_consolidate_opts co;
    sts_writer *w = NULL;
    sts_block b[4] = {
        {"w.col", STS_BF16, 2, x->gcol, x->ocol, x->scol, x->col},
        {"w.row", STS_F32, 2, x->grow, x->orow, x->srow, x->row},
        {"w.row2", STS_F32, 2, x->grow, x->orow, x->srow, x->row},
        {"w.norm", STS_F32, 1, x->gnorm, x->znorm, x->gnorm, x->norm},
    };
    int rc;
    sts_consolidate_opts_init(&co);
    co.max_file_size = 40000; /* several output files */
    co.buffer_size = 4096;    /* exchange chunks of 2 KiB: many rounds */
    sts_save_opts_init(&o);
    o.direct = direct;
    o.consolidate_dir = cons_dir;
    o.consolidate = &co;
    o.force = 1;
    msg[0] = '\0';
    rc = sts_writer_create(MPI_COMM_WORLD, dir, &o, &w);
    if (rc != STS_OK)
        return rc;
    for (int i = 0; i < 4; i++)
        sts_writer_add(w, &b[i]);
    rc = sts_writer_commit(w, NULL);
    snprintf(msg, len, "%s", sts_writer_errmsg(w));
    sts_writer_free(w);
    return rc;
}

static void one_case(const data *x, const fcase *c, int target, size_t k, const char *mode)
{
    char spec[256], dir[1200], msg[1024];
    int rc, finals = 0, partials = 0, want = c->code;
    snprintf(dir, sizeof dir, "%s/%s%zu_r%d", root, mode, k, target);
    snprintf(spec, sizeof spec, "%s,rank=%d", c->spec, target);
    if (c->rank0_only && target != 0)
        want = STS_OK; /* only rank 0 renames: the point is never reached */
    setenv("STSHARD_FAULT", spec, 1);
    rc = save(x, dir, NULL, 1, msg, sizeof msg);
    unsetenv("STSHARD_FAULT");
    if (rc != want || !same_everywhere(rc, msg)) {
        fprintf(stderr, "rank %d: %s: got %s (%s), want %s on every rank\n", me, spec,
                sts_errname(rc), msg, sts_errname(want));
        test_failures++;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    count_outputs(dir, &finals, &partials);
    if (want != STS_OK && me == 0 && (finals != 0 || partials != 0)) {
        fprintf(stderr, "%s: %d final and %d temporary files left in %s\n", spec, finals, partials,
                dir);
        test_failures++;
    }
    if (me == 0 && rc != STS_OK)
        printf("%s: %s: %s\n", spec, sts_errname(rc), msg);
    /* The directory is usable again. */
    rc = save(x, dir, NULL, 1, msg, sizeof msg);
    CHECK_OK(rc);
    MPI_Barrier(MPI_COMM_WORLD);
    count_outputs(dir, &finals, &partials);
    if (me == 0)
        CHECK(finals > 1 && partials == 0);
}

/* The one-call mode: a fault in the save keeps everything out; one in the consolidation keeps
 * the rank files (a complete checkpoint) and publishes no output. */
static void one_call_cases(const data *x)
{
    char dir[1200], out[1200], msg[1024], spec[128];
    int rc, finals, partials;
    snprintf(dir, sizeof dir, "%s/call/shards", root);
    snprintf(out, sizeof out, "%s/call/out", root);
    snprintf(spec, sizeof spec, "point=cons.planned,code=nomem,rank=%d", np - 1);
    setenv("STSHARD_FAULT", spec, 1);
    rc = save(x, dir, out, 0, msg, sizeof msg);
    unsetenv("STSHARD_FAULT");
    CHECK_RC(rc, STS_E_NOMEM);
    CHECK(same_everywhere(rc, msg));
    CHECK(strstr(msg, "rank files are kept") != NULL);
    MPI_Barrier(MPI_COMM_WORLD);
    count_outputs(out, &finals, &partials);
    if (me == 0) {
        DIR *d = opendir(dir);
        int shards = 0;
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL)
            shards += strncmp(e->d_name, "shard-", 6) == 0;
        if (d)
            closedir(d);
        CHECK(shards == np);
        CHECK(finals == 0 && partials == 0);
    }
    snprintf(spec, sizeof spec, "point=write,hit=2,code=io,rank=%d", np - 1);
    setenv("STSHARD_FAULT", spec, 1);
    rc = save(x, dir, out, 0, msg, sizeof msg);
    unsetenv("STSHARD_FAULT");
    CHECK_RC(rc, STS_E_IO);
    CHECK(same_everywhere(rc, msg));
    MPI_Barrier(MPI_COMM_WORLD);
    count_outputs(out, &finals, &partials);
    if (me == 0)
        CHECK(finals == 0 && partials == 0);
    rc = save(x, dir, out, 0, msg, sizeof msg);
    CHECK_OK(rc);
}

int main(int argc, char **argv)
{
    data x;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    if (argc != 2 || np < 2) {
        if (me == 0)
            fprintf(stderr, "usage: mpiexec -n 2..4 par_direct_fault WORKDIR\n");
        MPI_Finalize();
        return 2;
    }
    if (snprintf(root, sizeof root, "%s_np%d", argv[1], np) >= (int)sizeof root) {
        MPI_Finalize();
        return 2;
    }
    if (me == 0) {
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", root, root);
        CHECK(system(cmd) == 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    make_data(&x);
    /* Strided blocks by exchange (the default), then through file views. */
    for (size_t k = 0; k < sizeof direct_cases / sizeof direct_cases[0]; k++) {
        one_case(&x, &direct_cases[k], 0, k, "exchange");
        one_case(&x, &direct_cases[k], np - 1, k, "exchange");
    }
    setenv("STSHARD_DIRECT_STRIDED", "view", 1);
    setenv("STSHARD_DIRECT_ROUND", "4096", 1); /* many collective rounds per file */
    for (size_t k = 0; k < sizeof direct_cases / sizeof direct_cases[0]; k++) {
        one_case(&x, &direct_cases[k], 0, k, "view");
        one_case(&x, &direct_cases[k], np - 1, k, "view");
    }
    unsetenv("STSHARD_DIRECT_STRIDED");
    one_call_cases(&x);
    free(x.col);
    free(x.row);
    free(x.norm);
    TEST_AGREE(MPI_COMM_WORLD);
    if (me == 0)
        printf("par_direct_fault np=%d: %s\n", np, test_failures ? "FAILED" : "ok");
    MPI_Finalize();
    return TEST_EXIT();
}
