/*
 * par_writer_stream_errors.c - failures of the streaming writer: each case
 * checks that every rank gets the same non-zero code from the commit (or
 * begin), that no final-named file appears, and that no temporary file is
 * left behind.  A failure is caused on one rank only where the API allows
 * it, so the test proves the agreement, not just a local check:
 *  - a put out of range on the last rank;
 *  - a missing piece (shortfall) on the last rank; a piece put twice;
 *  - a put before begin on rank 0; an add after begin on the last rank;
 *  - begin with opts.direct (Unsupported);
 *  - a plain commit with a block declared without data (on the last rank);
 *  - a put of a block added with data; begin and commit called twice (the
 *    published files stay); a writer freed after begin without a commit;
 *  - with "--fault": an I/O error injected into a put's write on rank 1
 *    (STSHARD_FAULT, fault-injection builds).
 *
 * Usage: par_writer_stream_errors WORKDIR [--fault]
 */
#include "par_save_util.h"
#include "test_util.h"

static int me, np;
static char base[1024];

#define ROWS 64
#define COLS 8192 /* F32: 32 KiB a row */

static float *data;
static uint64_t gshape[2], off[2], shape[2], nbytes;

/* Collective.  BASE/NAME, empty. */
static void subdir(char *out, size_t len, const char *name)
{
    su_subdir(out, len, base, name);
}

/* Every rank got want (same code everywhere). */
static void check_all(int rc, int want, const char *what)
{
    int lo = 0, hi = 0;
    MPI_Allreduce(&rc, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&rc, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rc != want || lo != hi)
        fprintf(stderr, "rank %d: %s: got %s, want %s on every rank\n", me, what, sts_errname(rc),
                sts_errname(want));
    CHECK(rc == want && lo == hi);
}

/* Nothing of the save is left in dir: no rank file, no temporary file. */
static void check_empty(const char *dir, const char *what)
{
    int n = su_count(dir, NULL);
    if (me == 0 && n > 0) {
        fprintf(stderr, "%s: %d files left in %s\n", what, n, dir);
        test_failures++;
    }
}

/* A writer with this rank's row block of "w" and the replicated "r", both declared. */
static sts_writer *declared(const char *dir, const sts_save_opts *o)
{
    static const uint64_t rs[1] = {16}, rz[1] = {0};
    sts_writer *w = NULL;
    sts_save_opts d;
    sts_block b = {"w", STS_F32, 2, gshape, off, shape, NULL};
    sts_block r = {"r", STS_F32, 1, rs, rz, rs, NULL};
    sts_save_opts_init(&d);
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, o ? o : &d, &w));
    CHECK_OK(sts_writer_add(w, &b));
    CHECK_OK(sts_writer_add(w, &r));
    return w;
}

/* Puts the declared blocks in 4 pieces each; skip_last leaves out the last piece of "w". */
static void put_all(sts_writer *w, int skip_last)
{
    uint64_t q = nbytes / 4;
    for (int i = 0; i < 4; i++) {
        uint64_t o = (uint64_t)i * q, len = i == 3 ? nbytes - o : q;
        if (!(skip_last && i == 3))
            CHECK_OK(sts_writer_put(w, "w", o, (const char *)data + o, len));
    }
    CHECK_OK(sts_writer_put(w, "r", 0, data, 64));
}

static void test_out_of_range(void)
{
    char dir[1200];
    sts_writer *w;
    subdir(dir, sizeof dir, "range");
    w = declared(dir, NULL);
    CHECK_OK(sts_writer_begin(w));
    put_all(w, 0);
    if (me == np - 1)
        CHECK_RC(sts_writer_put(w, "w", nbytes - 3, data, 4), STS_E_ARG);
    check_all(sts_writer_commit(w, NULL), STS_E_ARG, "put out of range");
    CHECK(strstr(sts_writer_errmsg(w), "lie outside") != NULL);
    sts_writer_free(w);
    check_empty(dir, "put out of range");
}

static void test_shortfall(int twice)
{
    char dir[1200];
    sts_writer *w;
    subdir(dir, sizeof dir, twice ? "twice" : "short");
    w = declared(dir, NULL);
    CHECK_OK(sts_writer_begin(w));
    put_all(w, me == np - 1 && !twice);
    if (twice && me == np - 1)
        CHECK_OK(sts_writer_put(w, "w", 0, data, 8)); /* in range: only the count shows it */
    check_all(sts_writer_commit(w, NULL), STS_E_ARG, twice ? "a piece put twice" : "shortfall");
    CHECK(strstr(sts_writer_errmsg(w), "tensor 'w'") != NULL);
    CHECK(strstr(sts_writer_errmsg(w), "bytes were put") != NULL);
    sts_writer_free(w);
    check_empty(dir, twice ? "a piece put twice" : "shortfall");
}

static void test_order(void)
{
    char dir[1200];
    int stores = -1;
    sts_writer *w;
    sts_block late = {"late", STS_F32, 2, gshape, off, shape, NULL};
    /* A put before begin on rank 0: the begin fails everywhere, so does the commit. */
    subdir(dir, sizeof dir, "before");
    w = declared(dir, NULL);
    CHECK_RC(sts_writer_stores(w, "w", &stores), STS_E_ARG);
    CHECK(stores == 0);
    if (me == 0)
        CHECK_RC(sts_writer_put(w, "w", 0, data, 8), STS_E_ARG);
    check_all(sts_writer_begin(w), STS_E_ARG, "begin after a put before begin");
    CHECK_RC(sts_writer_put(w, "w", 0, data, 8), STS_E_ARG);
    check_all(sts_writer_commit(w, NULL), STS_E_ARG, "put before begin");
    sts_writer_free(w);
    check_empty(dir, "put before begin");

    /* An add after begin on the last rank. */
    subdir(dir, sizeof dir, "after");
    w = declared(dir, NULL);
    CHECK_OK(sts_writer_begin(w));
    if (me == np - 1)
        CHECK_RC(sts_writer_add(w, &late), STS_E_ARG);
    put_all(w, 0);
    check_all(sts_writer_commit(w, NULL), STS_E_ARG, "add after begin");
    sts_writer_free(w);
    check_empty(dir, "add after begin");
}

static void test_direct_and_plain(void)
{
    char dir[1200];
    sts_writer *w;
    sts_save_opts o;
    sts_block b = {"w", STS_F32, 2, gshape, off, shape, NULL};
    sts_save_opts_init(&o);
    o.direct = 1;
    subdir(dir, sizeof dir, "direct");
    w = declared(dir, &o);
    check_all(sts_writer_begin(w), STS_E_UNSUPPORTED, "begin in direct mode");
    CHECK(strstr(sts_writer_errmsg(w), "direct") != NULL);
    check_all(sts_writer_commit(w, NULL), STS_E_UNSUPPORTED, "commit after a direct begin");
    sts_writer_free(w);
    check_empty(dir, "direct");

    /* A plain commit: the last rank declared its block, the others gave data. */
    subdir(dir, sizeof dir, "plain");
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, NULL, &w));
    b.data = me == np - 1 ? NULL : data;
    CHECK_OK(sts_writer_add(w, &b));
    check_all(sts_writer_commit(w, NULL), STS_E_ARG, "commit without begin");
    CHECK(strstr(sts_writer_errmsg(w), "without data") != NULL);
    sts_writer_free(w);
    check_empty(dir, "commit without begin");
}

static void test_misuse(void)
{
    char dir[1200], path[1400];
    int stores = -1;
    sts_writer *w = NULL;
    sts_block b = {"w", STS_F32, 2, gshape, off, shape, NULL};
    /* A put into a block added with data. */
    subdir(dir, sizeof dir, "withdata");
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, NULL, &w));
    b.data = data;
    CHECK_OK(sts_writer_add(w, &b));
    CHECK_OK(sts_writer_begin(w));
    CHECK_OK(sts_writer_stores(w, "w", &stores));
    CHECK(stores == 1);
    CHECK_RC(sts_writer_put(w, "w", 0, data, 8), STS_E_ARG);
    CHECK_RC(sts_writer_put(w, "nope", 0, data, 8), STS_E_ARG);
    CHECK_RC(sts_writer_put(w, NULL, 0, data, 8), STS_E_ARG);
    CHECK_RC(sts_writer_put(NULL, "w", 0, data, 8), STS_E_ARG);
    CHECK_RC(sts_writer_stores(w, NULL, &stores), STS_E_ARG);
    CHECK(stores == 0);
    check_all(sts_writer_commit(w, NULL), STS_E_ARG, "put into a block added with data");
    sts_writer_free(w);
    check_empty(dir, "put into a block added with data");

    /* Begin twice fails the save; a second commit leaves the published files alone. */
    subdir(dir, sizeof dir, "twice_begin");
    w = declared(dir, NULL);
    CHECK_OK(sts_writer_begin(w));
    check_all(sts_writer_begin(w), STS_E_ARG, "begin twice");
    put_all(w, 0);
    check_all(sts_writer_commit(w, NULL), STS_E_ARG, "commit after begin twice");
    sts_writer_free(w);
    check_empty(dir, "begin twice");

    subdir(dir, sizeof dir, "twice_commit");
    w = declared(dir, NULL);
    CHECK_OK(sts_writer_begin(w));
    put_all(w, 0);
    check_all(sts_writer_commit(w, NULL), STS_OK, "a good streaming commit");
    check_all(sts_writer_commit(w, NULL), STS_E_ARG, "commit twice");
    CHECK_RC(sts_writer_put(w, "w", 0, data, 8), STS_E_ARG);
    sts_writer_free(w);
    su_rank_file(path, sizeof path, dir, me, 1, 1);
    CHECK(su_size(path) > (long long)nbytes);
    MPI_Barrier(MPI_COMM_WORLD);
    if (me == 0)
        CHECK(su_count(dir, NULL) == np);

    /* Freed after begin: the temporary files go with the writer. */
    subdir(dir, sizeof dir, "abandoned");
    w = declared(dir, NULL);
    CHECK_OK(sts_writer_begin(w));
    put_all(w, 0);
    sts_writer_free(w);
    MPI_Barrier(MPI_COMM_WORLD);
    check_empty(dir, "writer freed after begin");
}

/* STSHARD_FAULT makes rank 1's second MPI-IO write fail: the header is the first, the
 * first piece of "w" (8 rows, 256 KiB, straight to the file) the second. */
static void test_fault(void)
{
    char dir[1200];
    sts_writer *w;
    int rc;
    subdir(dir, sizeof dir, "fault");
    w = declared(dir, NULL);
    CHECK_OK(sts_writer_begin(w));
    rc = sts_writer_put(w, "w", 0, data, nbytes / 2);
    CHECK_RC(rc, me == 1 ? STS_E_IO : STS_OK);
    if (me == 1)
        CHECK(strstr(sts_writer_errmsg(w), "tensor 'w'") && strstr(sts_writer_errmsg(w), dir));
    CHECK_RC(sts_writer_put(w, "w", nbytes / 2, (char *)data + nbytes / 2, nbytes - nbytes / 2),
             STS_OK);
    CHECK_RC(sts_writer_put(w, "r", 0, data, 64), STS_OK);
    check_all(sts_writer_commit(w, NULL), STS_E_IO, "a failed write in a put");
    CHECK(strstr(sts_writer_errmsg(w), "rank 1") != NULL);
    sts_writer_free(w);
    check_empty(dir, "a failed write in a put");
}

int main(int argc, char **argv)
{
    int fault;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    fault = argc == 3 && strcmp(argv[2], "--fault") == 0;
    if (argc != 2 && !fault) {
        if (me == 0)
            fprintf(stderr, "usage: par_writer_stream_errors WORKDIR [--fault]\n");
        MPI_Finalize();
        return 2;
    }
    snprintf(base, sizeof base, "%s_np%d%s", argv[1], np, fault ? "_fault" : "");
    if (me == 0)
        mkdir(base, 0777);
    gshape[0] = ROWS * (uint64_t)np;
    gshape[1] = shape[1] = COLS;
    off[0] = ROWS * (uint64_t)me;
    off[1] = 0;
    shape[0] = ROWS;
    nbytes = ROWS * COLS * 4;
    data = malloc(nbytes);
    for (uint64_t i = 0; i < ROWS * COLS; i++)
        data[i] = (float)(i + (uint64_t)me);
    if (fault) {
        test_fault();
    } else {
        test_out_of_range();
        test_shortfall(0);
        test_shortfall(1);
        test_order();
        test_direct_and_plain();
        test_misuse();
    }
    free(data);
    TEST_AGREE(MPI_COMM_WORLD);
    if (me == 0)
        printf("par_writer_stream_errors np=%d%s: %s\n", np, fault ? " --fault" : "",
               test_failures ? "FAILED" : "ok");
    MPI_Finalize();
    return TEST_EXIT();
}
