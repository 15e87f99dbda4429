/*
 * par_reshard_check.c - checks a checkpoint written by `stshard reshard`
 * against the HDF5 reference tensors:
 *  - it is a set of rank files shard-RRRRR-model-00001-of-00001.safetensors
 *    holding every reference tensor with its dtype and global shape;
 *  - every tensor read back whole equals the HDF5 dataset byte for byte;
 *  - the blocks are the new sharding's: rank q's file holds exactly rank q's
 *    block of each sharded tensor (share_of, the helper the command uses), and
 *    a replicated tensor is stored once, whole.
 *
 * Usage: par_reshard_check FIXTURES.h5 DIR M STRATEGY DIM
 */
#include "cli.h"
#include "par_reshard_util.h"
#include "share.h"
#include "test_util.h"

static rf_set S;

/* Rank q (0-based) of a rank file name, or -1. */
static int file_rank(const char *path)
{
    const char *base = strrchr(path, '/');
    int r = 0, k = 0;
    unsigned a = 0, b = 0;
    base = base ? base + 1 : path;
    if (sscanf(base, "shard-%d-model-%u-of-%u.safetensors%n", &r, &a, &b, &k) != 3 ||
        base[k] != '\0' || a != 1 || b != 1)
        return -1;
    return r - 1;
}

static void check_data(sts_reader *r, int me, int np)
{
    for (size_t i = 0; i < S.n; i++) {
        const rf_tensor *t = &S.t[i];
        long k = sts_reader_find(r, t->name);
        uint64_t zero[4] = {0, 0, 0, 0};
        unsigned char *got, *want;
        CHECK(k >= 0);
        if (k < 0)
            continue;
        const sts_global_tensor *g = sts_reader_tensor(r, (size_t)k);
        CHECK(g->dtype == t->dtype && g->ndim == t->ndim && g->nbytes == t->nbytes);
        for (uint32_t d = 0; d < t->ndim; d++)
            CHECK(g->shape[d] == t->shape[d]);
        if ((int)(i % (size_t)np) != me)
            continue;
        got = malloc(t->nbytes + 1);
        want = malloc(t->nbytes + 1);
        sts_read_req q = {t->name, t->dtype, t->ndim, zero, t->shape, got};
        CHECK_OK(sts_reader_read_local(r, &q, 1));
        CHECK(rf_read(&S, t, zero, t->shape, want) == 0);
        if (memcmp(got, want, t->nbytes) != 0) {
            fprintf(stderr, "tensor '%s' differs from the reference\n", t->name);
            test_failures++;
        }
        free(got);
        free(want);
    }
}

/* Stored block sb of tensor t must be rank q's expected block. */
static int same_block(const share_block *e, const sts_stored_block *sb, uint32_t nd)
{
    for (uint32_t d = 0; d < nd; d++)
        if (e->off[d] != sb->offsets[d] || e->shape[d] != sb->shape[d])
            return 0;
    return 1;
}

static void check_layout(sts_reader *r, int m, const share_opts *o)
{
    share_block **exp = calloc((size_t)m, sizeof *exp);
    size_t *nexp = calloc((size_t)m, sizeof *nexp);
    char err[256];
    CHECK(sts_reader_kind(r) == STS_CKPT_SHARDED);
    CHECK(sts_reader_file_count(r) <= (size_t)m);
    for (size_t f = 0; f < sts_reader_file_count(r); f++)
        CHECK(file_rank(sts_reader_file_path(r, f)) >= 0);
    for (int q = 0; q < m; q++)
        CHECK(share_of(r, o, q, m, &exp[q], &nexp[q], err, sizeof err) == 0);
    for (size_t k = 0; k < sts_reader_count(r); k++) {
        const sts_global_tensor *g = sts_reader_tensor(r, k);
        size_t want = 0;
        int repl = 0;
        for (int q = 0; q < m; q++)
            for (size_t j = 0; j < nexp[q]; j++)
                if (exp[q][j].tensor == k) {
                    want++;
                    repl |= exp[q][j].replicated;
                }
        if (repl)
            want = 1; /* stored once, by the rank the writer picks */
        if (g->nblocks != want)
            fprintf(stderr, "tensor '%s': %zu blocks stored, %zu expected\n", g->name, g->nblocks,
                    want);
        CHECK(g->nblocks == want);
        for (size_t b = 0; b < g->nblocks; b++) {
            sts_stored_block sb;
            int q, found = 0;
            CHECK_OK(sts_reader_block(r, k, b, &sb));
            q = file_rank(sts_reader_file_path(r, sb.file));
            for (size_t j = 0; q >= 0 && q < m && j < nexp[q]; j++)
                if (exp[q][j].tensor == k && same_block(&exp[q][j], &sb, g->ndim))
                    found = 1;
            if (!found)
                fprintf(stderr, "tensor '%s': a block in rank %d's file is not its block\n",
                        g->name, q);
            CHECK(found);
        }
    }
    for (int q = 0; q < m; q++)
        free(exp[q]);
    free(exp);
    free(nexp);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    sts_reader *r = NULL;
    sts_diag d;
    share_opts o = {MODEL_ROWS, 0};
    uint64_t m = 0;
    int me, np;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    S.file = -1;
    if (argc != 6 || rf_open(argv[1], &S) != 0 || cli_parse_u64(argv[3], &m) != 0 ||
        model_strategy_parse(argv[4], &o.strategy) != 0 || share_parse_dim(argv[5], &o.dim) != 0) {
        fprintf(stderr, "usage: par_reshard_check FIXTURES.h5 DIR M STRATEGY DIM\n");
        test_failures++;
    } else if (sts_reader_open(comm, argv[2], MPI_INFO_NULL, &r, &d) != STS_OK) {
        fprintf(stderr, "open %s: %s\n", argv[2], d.message);
        test_failures++;
    } else {
        CHECK(sts_reader_count(r) == S.n);
        check_data(r, me, np);
        check_layout(r, (int)m, &o);
    }
    sts_reader_free(r);
    rf_close(&S);
    TEST_AGREE(comm);
    if (me == 0)
        printf("par_reshard_check %s: %s\n", argc > 2 ? argv[2] : "",
               test_failures ? "FAILED" : "ok");
    MPI_Finalize();
    return TEST_EXIT();
}
