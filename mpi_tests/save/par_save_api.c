/*
 * par_save_api.c - the writer API beyond the fixtures:
 *  - thousands of tiny tensors of mixed dtypes with a few large ones among
 *    them (the staging buffer's coalescing and flushing), read back exactly;
 *  - ranks with no data write no file, and a save where no rank has data;
 *  - replica assignment on a small readable case (largest first, least
 *    loaded holder, ties to the lowest rank);
 *  - sub-byte dtypes, invalid names, misuse (NULLs, add after commit,
 *    commit twice), fsync, and the progress callback (rank 0 only,
 *    non-decreasing, ends at the total).
 *
 * Usage: par_save_api WORKDIR
 */
#include "par_save_util.h"
#include "test_util.h"

static int me, np;
static char base[1024];

/* Collective.  BASE/NAME, empty. */
static void subdir(char *out, size_t len, const char *name)
{
    su_subdir(out, len, base, name);
}

static unsigned char pattern(size_t tensor, size_t byte)
{
    return (unsigned char)(tensor * 131 + byte * 7 + (size_t)me * 29 + 1);
}

/* Tiny tensors (1-7 elements of 5 dtypes) and, every 700th, one of 1.5 MiB. */
#define NTINY 3000
static const sts_dtype tiny_dt[] = {STS_U8, STS_I16, STS_F32, STS_F64, STS_BOOL};

static void test_many_tiny(void)
{
    char dir[1200], path[1400], name[64];
    static char names[NTINY][64];
    static uint64_t shapes[NTINY];
    static unsigned char *data[NTINY];
    sts_writer *w = NULL;
    sts_save_opts o;
    sts_header *h = NULL;
    sts_diag d;
    uint64_t zero = 0, start = 0;
    size_t bad = 0;
    subdir(dir, sizeof dir, "tiny");
    sts_save_opts_init(&o);
    o.fsync = 1;
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, &o, &w));
    for (size_t i = 0; i < NTINY; i++) {
        sts_dtype dt = tiny_dt[i % 5];
        uint64_t bytes;
        sts_block b;
        snprintf(names[i], sizeof names[i], "rank%d.t%05zu", me, i);
        shapes[i] = i % 700 == 350 ? (3ULL << 19) : 1 + i % 7; /* 1.5 MiB of U8 */
        if (i % 700 == 350)
            dt = STS_U8;
        CHECK_OK(sts_dtype_nbytes(dt, shapes[i], &bytes));
        data[i] = malloc(bytes);
        for (uint64_t k = 0; k < bytes; k++)
            data[i][k] = pattern(i, k);
        b = (sts_block){names[i], dt, 1, &shapes[i], &zero, &shapes[i], data[i]};
        CHECK_OK(sts_writer_add(w, &b));
    }
    CHECK_OK(sts_writer_commit(w, NULL));
    sts_writer_free(w);
    su_rank_file(path, sizeof path, dir, me, 1, 1);
    CHECK_OK(sts_header_read_file(path, &h, &start, &d));
    CHECK(h && sts_header_count(h) == NTINY);
    for (size_t i = 0; h && i < NTINY; i++) {
        long k = sts_header_find(h, names[i], strlen(names[i]));
        const sts_tensor_info *ti = k >= 0 ? sts_header_tensor(h, (size_t)k) : NULL;
        unsigned char *got;
        CHECK(ti != NULL);
        if (!ti)
            continue;
        got = malloc(ti->end - ti->begin + 1);
        CHECK(su_pread(path, start + ti->begin, got, ti->end - ti->begin) == 0);
        for (uint64_t b = 0; b < ti->end - ti->begin; b++)
            bad += got[b] != pattern(i, b);
        free(got);
    }
    CHECK(bad == 0);
    snprintf(name, sizeof name, ".stshard-partial");
    CHECK(su_count(dir, name) == 0);
    sts_header_free(h);
    for (size_t i = 0; i < NTINY; i++)
        free(data[i]);
}

typedef struct prog {
    int calls, decreasing;
    uint64_t last, total;
} prog;

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
    prog *p = ud;
    p->decreasing |= done < p->last;
    p->calls++;
    p->last = done;
    p->total = total;
}

/* Rank r holds one row block of "rows" if r is even; replicas A, B, C on every rank. */
static void test_replicas_and_empty(void)
{
    char dir[1200], path[1400];
    uint64_t g[1], off[1] = {0}, sh[1], rg[2] = {(uint64_t)np, 4}, ro[2] = {(uint64_t)me, 0},
                   rs[2] = {1, 4};
    static unsigned char buf[1000];
    const struct {
        const char *name;
        uint64_t n;
    } rep[] = {{"A", 1000}, {"B", 600}, {"C", 500}};
    sts_writer *w = NULL;
    sts_save_opts o;
    sts_save_stats st;
    prog p = {0, 0, 0, 0};
    subdir(dir, sizeof dir, "replicas");
    sts_save_opts_init(&o);
    o.progress = on_progress;
    o.progress_ud = &p;
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, &o, &w));
    for (int i = 0; i < 3; i++) {
        sts_block b = {rep[i].name, STS_U8, 1, g, off, sh, buf};
        g[0] = sh[0] = rep[i].n;
        CHECK_OK(sts_writer_add(w, &b));
    }
    CHECK_OK(sts_writer_commit(w, &st));
    sts_writer_free(w);
    /* A (1000) -> rank 0; B (600) -> rank 1 (load 0); C (500) -> rank 2, or rank 1 at np 2
     * (600 < 1000).  At np 1 rank 0 stores all three. */
    CHECK(st.bytes_total == 2100);
    CHECK(st.files_total == (uint64_t)(np < 3 ? np : 3));
    CHECK(st.bytes_local == (uint64_t)(np == 1   ? 2100
                                       : me == 0 ? 1000
                                       : me == 1 ? (np == 2 ? 1100 : 600)
                                       : me == 2 ? 500
                                                 : 0));
    su_rank_file(path, sizeof path, dir, me, 1, 1);
    CHECK((su_size(path) >= 0) == (st.bytes_local > 0));
    if (me == 0) {
        CHECK(p.calls >= 2 && !p.decreasing && p.last == 2100 && p.total == 2100);
    } else {
        CHECK(p.calls == 0);
    }

    /* Only even ranks have data: odd ranks write no file. */
    subdir(dir, sizeof dir, "sparse");
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, NULL, &w));
    if (me % 2 == 0) {
        sts_block b = {"rows", STS_U8, 2, rg, ro, rs, buf};
        CHECK_OK(sts_writer_add(w, &b));
    }
    CHECK_OK(sts_writer_commit(w, &st));
    sts_writer_free(w);
    CHECK(st.files_total == (uint64_t)(np + 1) / 2);
    su_rank_file(path, sizeof path, dir, me, 1, 1);
    CHECK((su_size(path) >= 0) == (me % 2 == 0));

    /* Nobody has data: success, no file. */
    subdir(dir, sizeof dir, "nothing");
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, NULL, &w));
    CHECK_OK(sts_writer_commit(w, &st));
    sts_writer_free(w);
    CHECK(st.files_total == 0 && st.bytes_total == 0);
    CHECK(su_count(dir, NULL) == 0);
}

static void test_dtypes_and_names(void)
{
    char dir[1200], path[1400];
    uint64_t odd[1] = {5}, even[1] = {6}, zero[1] = {0};
    static unsigned char buf[16];
    sts_writer *w = NULL;
    sts_header *h = NULL;
    sts_diag d;
    uint64_t start;
    sts_block b = {"f4.odd", STS_F4, 1, odd, zero, odd, buf};
    subdir(dir, sizeof dir, "dtypes");
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, NULL, &w));
    CHECK_RC(sts_writer_add(w, &b), STS_E_MISALIGNED_SLICE);
    CHECK(strstr(sts_writer_errmsg(w), "f4.odd") != NULL);
    sts_writer_free(w);
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, NULL, &w));
    b = (sts_block){"bad\xc3(name", STS_U8, 1, even, zero, even, buf};
    CHECK_RC(sts_writer_add(w, &b), STS_E_ARG);
    b = (sts_block){"bad\xed\xa0\x80surrogate", STS_U8, 1, even, zero, even, buf};
    CHECK_RC(sts_writer_add(w, &b), STS_E_ARG);
    /* NULL data declares a block for the streaming flow (sts_writer_begin / _put); a plain
     * commit of it fails (par_writer_stream_errors). */
    b = (sts_block){"no.data", STS_U8, 1, even, zero, even, NULL};
    CHECK_OK(sts_writer_add(w, &b));
    b = (sts_block){"dtype", (sts_dtype)99, 1, even, zero, even, buf};
    CHECK_RC(sts_writer_add(w, &b), STS_E_ARG);
    b = (sts_block){"shapes", STS_U8, 1, NULL, zero, even, buf};
    CHECK_RC(sts_writer_add(w, &b), STS_E_ARG);
    /* The first failure is the one the commit reports, on every rank. */
    CHECK_RC(sts_writer_commit(w, NULL), STS_E_ARG);
    CHECK(strstr(sts_writer_errmsg(w), "not valid UTF-8") != NULL);
    sts_writer_free(w);
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, NULL, &w));
    b = (sts_block){"f4.even", STS_F4, 1, even, zero, even, buf};
    CHECK_OK(sts_writer_add(w, &b));
    CHECK_OK(sts_writer_commit(w, NULL));
    sts_writer_free(w);
    /* Every rank holds it whole: a replica, stored by rank 0 (all loads equal). */
    su_rank_file(path, sizeof path, dir, me, 1, 1);
    if (me == 0) {
        CHECK_OK(sts_header_read_file(path, &h, &start, &d));
        CHECK(h && sts_header_tensor(h, 0)->end == 3); /* 6 four-bit elements */
        sts_header_free(h);
    } else {
        CHECK(su_size(path) < 0);
    }
}

static void test_misuse(void)
{
    char dir[1200];
    uint64_t s[1] = {4}, z[1] = {0};
    static unsigned char buf[4];
    sts_block b = {"x", STS_U8, 1, s, z, s, buf};
    sts_writer *w = NULL;
    subdir(dir, sizeof dir, "misuse");
    CHECK_RC(sts_writer_add(NULL, &b), STS_E_ARG);
    CHECK_RC(sts_writer_commit(NULL, NULL), STS_E_ARG);
    CHECK(strcmp(sts_writer_errmsg(NULL), "") == 0);
    sts_writer_free(NULL);
    CHECK_RC(sts_writer_create(MPI_COMM_WORLD, NULL, NULL, &w), STS_E_ARG);
    CHECK(w == NULL);
    CHECK_RC(sts_writer_create(MPI_COMM_WORLD, "", NULL, &w), STS_E_ARG);
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, NULL, &w));
    CHECK_OK(sts_writer_add(w, &b));
    CHECK_RC(sts_writer_add(w, NULL), STS_E_ARG);
    /* The failed add fails the commit, which writes nothing. */
    CHECK_RC(sts_writer_commit(w, NULL), STS_E_ARG);
    CHECK(strstr(sts_writer_errmsg(w), "block without a name") != NULL);
    CHECK(su_count(dir, NULL) == 0);
    CHECK_RC(sts_writer_add(w, &b), STS_E_ARG);
    CHECK_RC(sts_writer_commit(w, NULL), STS_E_ARG);
    CHECK(strstr(sts_writer_errmsg(w), "twice") != NULL);
    sts_writer_free(w);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    snprintf(base, sizeof base, "%s_np%d", argc > 1 ? argv[1] : "par_save_api", np);
    if (me == 0)
        mkdir(base, 0777);
    MPI_Barrier(MPI_COMM_WORLD);
    test_many_tiny();
    test_replicas_and_empty();
    test_dtypes_and_names();
    test_misuse();
    TEST_AGREE(MPI_COMM_WORLD);
    MPI_Finalize();
    return TEST_EXIT();
}
