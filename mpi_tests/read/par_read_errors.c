/*
 * par_read_errors.c - every failure of the reader reaches every rank with the
 * same code and a message that names what failed, and no rank hangs:
 *  - requests: a missing tensor, a block out of range, a wrong dtype, a
 *    wrong rank, a sub-byte block off byte boundaries, each asked by ONE rank;
 *  - open: no such path, an empty directory, rank files with a gap, with an
 *    overlap, with two dtypes for one tensor, an index naming a tensor no
 *    file holds.
 * After a failed read the reader still works.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "par_read_util.h"
#include "test_util.h"

static const tr_tensor A = {"layer.w", STS_F32, 2, {16, 12}};
static const tr_tensor B = {"layer.b", STS_BF16, 1, {12}};
static const tr_tensor Q = {"quant", STS_F4, 2, {4, 8}};
static const tr_tensor A16 = {"layer.w", STS_F16, 2, {16, 12}};

static char g_dir[128];

static const char *sub(const char *name)
{
    return tr_path(g_dir, name);
}

static tr_block blk(const tr_tensor *t, uint64_t r0, uint64_t nr)
{
    tr_block b;
    memset(&b, 0, sizeof b);
    b.t = t;
    memcpy(b.shape, t->shape, sizeof b.shape);
    if (t->ndim > 0) {
        b.off[0] = r0;
        b.shape[0] = nr;
    }
    return b;
}

static int write_inputs(void)
{
    int bad = 0;
    tr_block good[3] = {blk(&A, 0, 16), blk(&B, 0, 12), blk(&Q, 0, 4)};
    tr_block g1[1] = {blk(&A, 0, 8)}, g2[1] = {blk(&A, 10, 6)};  /* rows 8..9 missing */
    tr_block o1[1] = {blk(&A, 0, 9)}, o2[1] = {blk(&A, 8, 8)};   /* row 8 twice */
    tr_block d1[1] = {blk(&A, 0, 8)}, d2[1] = {blk(&A16, 8, 8)}; /* F32 and F16 halves */
    FILE *f;
    mkdir(g_dir, 0777);
    mkdir(sub("empty"), 0777);
    mkdir(sub("gap"), 0777);
    mkdir(sub("overlap"), 0777);
    mkdir(sub("dtypes"), 0777);
    mkdir(sub("index"), 0777);
    bad |= tr_write_file(sub("good.safetensors"), good, 3, 0);
    bad |= tr_write_file(sub("gap/shard-00001-model-00001-of-00001.safetensors"), g1, 1, 1);
    bad |= tr_write_file(sub("gap/shard-00002-model-00001-of-00001.safetensors"), g2, 1, 1);
    bad |= tr_write_file(sub("overlap/shard-00001-model-00001-of-00001.safetensors"), o1, 1, 1);
    bad |= tr_write_file(sub("overlap/shard-00002-model-00001-of-00001.safetensors"), o2, 1, 1);
    bad |= tr_write_file(sub("dtypes/shard-00001-model-00001-of-00001.safetensors"), d1, 1, 1);
    bad |= tr_write_file(sub("dtypes/shard-00002-model-00001-of-00001.safetensors"), d2, 1, 1);
    bad |= tr_write_file(sub("index/model-00001-of-00001.safetensors"), good, 2, 0);
    f = fopen(sub("index/model.safetensors.index.json"), "w");
    if (!f)
        return -1;
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {\"layer.w\": "
               "\"model-00001-of-00001.safetensors\", \"layer.b\": "
               "\"model-00001-of-00001.safetensors\", \"ghost\": "
               "\"model-00001-of-00001.safetensors\"}}\n");
    return (fclose(f) != 0 || bad) ? -1 : 0;
}

/* Opening path fails with want on every rank, and the message contains needle. */
static void expect_open(MPI_Comm comm, const char *path, int want, const char *needle)
{
    sts_reader *r = NULL;
    sts_diag d;
    int rc = tr_reader_open(comm, path, MPI_INFO_NULL, &r, &d);
    CHECK_RC(rc, want);
    CHECK(r == NULL);
    if (!strstr(d.message, needle)) {
        fprintf(stderr, "open %s: message '%s' lacks '%s'\n", path, d.message, needle);
        test_failures++;
    }
    sts_reader_free(r);
    TEST_AGREE(comm);
}

/*
 * Rank `who` makes request *bad, the others a good one; every rank must get
 * want and a message containing needle.
 */
static void expect_read(MPI_Comm comm, sts_reader *r, int me, int who, const sts_read_req *bad,
                        int want, const char *needle)
{
    static uint64_t zero[2] = {0, 0};
    static float buf[16 * 12];
    sts_read_req good = {"layer.w", STS_F32, 2, zero, A.shape, buf};
    int rc = sts_reader_read(r, me == who ? bad : &good, 1);
    CHECK_RC(rc, want);
    if (!strstr(sts_reader_errmsg(r), needle)) {
        fprintf(stderr, "rank %d: message '%s' lacks '%s'\n", me, sts_reader_errmsg(r), needle);
        test_failures++;
    }
    TEST_AGREE(comm);
}

static void test_requests(MPI_Comm comm, int me, int np)
{
    sts_reader *r = NULL;
    sts_diag d;
    static unsigned char buf[4096];
    uint64_t off[2] = {0, 0}, shp[2] = {16, 12}, off2[2] = {10, 4}, shp2[2] = {7, 2};
    uint64_t qoff[2] = {0, 1}, qshp[2] = {2, 2};
    int last = np - 1;
    CHECK_OK(tr_reader_open(comm, sub("good.safetensors"), MPI_INFO_NULL, &r, &d));
    if (!r)
        return;
    CHECK(tr_reader_mode_ok(r));
    sts_read_req missing = {"layer.missing", STS_F32, 2, off, shp, buf};
    sts_read_req range = {"layer.w", STS_F32, 2, off2, shp2, buf};
    sts_read_req dtype = {"layer.w", STS_BF16, 2, off, shp, buf};
    sts_read_req rank = {"layer.b", STS_BF16, 2, off, shp, buf};
    sts_read_req nibble = {"quant", STS_F4, 2, qoff, qshp, buf};
    sts_read_req nobuf = {"layer.w", STS_F32, 2, off, shp, NULL};
    expect_read(comm, r, me, last, &missing, STS_E_NO_TENSOR, "layer.missing");
    expect_read(comm, r, me, 0, &range, STS_E_BLOCK_RANGE, "dimension 0");
    expect_read(comm, r, me, last, &dtype, STS_E_DTYPE_MISMATCH,
                "is F32, the request asks for BF16");
    expect_read(comm, r, me, 0, &rank, STS_E_BLOCK_RANGE, "has 1 dimensions");
    expect_read(comm, r, me, last, &nibble, STS_E_UNSUPPORTED, "multiple of 2");
    expect_read(comm, r, me, 0, &nobuf, STS_E_ARG, "NULL buffer");
    /* The failing rank is named, so a user can find it. */
    {
        char want[32];
        snprintf(want, sizeof want, "rank %d", last);
        expect_read(comm, r, me, last, &missing, STS_E_NO_TENSOR, want);
    }
    /* Still usable: a whole read after all those failures returns the right bytes. */
    {
        unsigned char want[16 * 12 * 4];
        sts_read_req ok = {"layer.w", STS_F32, 2, off, shp, buf};
        tr_fill(&A, off, shp, want);
        CHECK_OK(sts_reader_read(r, &ok, 1));
        CHECK(memcmp(want, buf, sizeof want) == 0);
    }
    sts_reader_free(r);
    TEST_AGREE(comm);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    int me, np, wrc = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    snprintf(g_dir, sizeof g_dir, "par_read_errors_np%d%s", np, tr_dir_suffix());
    if (me == 0)
        wrc = write_inputs();
    MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
    CHECK(wrc == 0);
    if (wrc == 0) {
        test_requests(comm, me, np);
        expect_open(comm, sub("no/such/dir"), STS_E_NOENT, "no/such/dir");
        expect_open(comm, sub("empty"), STS_E_EMPTY_INPUT, "empty");
        expect_open(comm, sub("gap"), STS_E_COVERAGE_GAP, "no block covers [8:10, 0:12]");
        expect_open(comm, sub("overlap"), STS_E_COVERAGE_OVERLAP, "overlap");
        expect_open(comm, sub("dtypes"), STS_E_DTYPE_MISMATCH, "layer.w");
        expect_open(comm, sub("index"), STS_E_INDEX, "ghost");
    }
    TEST_AGREE(comm);
    if (me == 0)
        printf("par_read_errors: %s (%d ranks)\n", test_failures ? "FAILED" : "ok", np);
    MPI_Finalize();
    return TEST_EXIT();
}
