/*
 * par_writer_stream.c - the streaming writer (sts_writer_begin / _stores /
 * _put) gives byte for byte the files of the one-call flow (add with data,
 * commit) for the same blocks:
 *  - row-split 2-D and 3-D tensors (F32, BF16, one of 1.5 MiB a rank so that
 *    pieces go both through the staging buffer and straight to the file), a
 *    tensor replicated on every rank, a zero-size tensor, a scalar, a tensor
 *    of this rank only, and one block added with data among the declared ones;
 *  - the bytes put in pieces of pseudo-random sizes, in a scrambled order,
 *    interleaved across blocks and files; blocks another rank stores are put
 *    too (the writer drops them) or skipped, as sts_writer_stores says;
 *  - three layouts: one file a rank, a mapping onto two files (the staging
 *    buffer switching files), and consolidate_dir (the consolidated output
 *    compared too).
 *
 * Usage: par_writer_stream WORKDIR
 */
#include "par_save_util.h"
#include "test_util.h"

static int me, np;
static char base[1024];

/* A tensor of the test and this rank's block of it. */
typedef struct tensor {
    char name[64];
    sts_dtype dt;
    uint32_t ndim;
    uint64_t gshape[3], off[3], shape[3];
    int with_data; /* added with data in the streaming flow too */
    unsigned char *data;
    uint64_t nbytes;
} tensor;

#define NT 8
static tensor T[NT];

/* Collective.  BASE/NAME, empty. */
static void subdir(char *out, size_t len, const char *name)
{
    su_subdir(out, len, base, name);
}

/* Rows [*off, *off + *n) of `rows` for this rank: uneven, the first ranks get one more. */
static void split_rows(uint64_t rows, uint64_t *off, uint64_t *n)
{
    uint64_t q = rows / (uint64_t)np, r = rows % (uint64_t)np, k = (uint64_t)me;
    *n = q + (k < r);
    *off = k * q + (k < r ? k : r);
}

static void define(int i, const char *name, sts_dtype dt, uint32_t ndim, const uint64_t *gshape,
                   int split)
{
    tensor *t = &T[i];
    uint64_t numel = 1, rowbytes = 1;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dt = dt;
    t->ndim = ndim;
    for (uint32_t d = 0; d < ndim; d++) {
        t->gshape[d] = t->shape[d] = gshape[d];
        t->off[d] = 0;
    }
    if (split)
        split_rows(gshape[0], &t->off[0], &t->shape[0]);
    for (uint32_t d = 0; d < ndim; d++)
        numel *= t->shape[d];
    sts_dtype_nbytes(dt, numel, &t->nbytes);
    if (ndim > 0 && t->shape[0] > 0)
        rowbytes = t->nbytes / t->shape[0];
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    /* Bytes follow the global byte index, so every holder of a replica gives the same. */
    for (uint64_t b = 0; b < t->nbytes; b++) {
        uint64_t g = (ndim > 0 ? t->off[0] * rowbytes : 0) + b;
        t->data[b] = (unsigned char)(g * 2654435761u >> 7 ^ (uint64_t)i * 37);
    }
}

static void make_tensors(void)
{
    uint64_t a[] = {4 * (uint64_t)np + 3, 6}, b[] = {3 * (uint64_t)np + 1, 5, 3},
             big[] = {96 * (uint64_t)np, 4096}, repl[] = {7, 3}, empty[] = {0, 4}, own[] = {5};
    char name[64];
    define(0, "a.weight", STS_F32, 2, a, 1);
    define(1, "b.weight", STS_BF16, 3, b, 1);
    define(2, "big.weight", STS_F32, 2, big, 1);
    define(3, "c.replicated", STS_F32, 2, repl, 0);
    define(4, "d.empty", STS_F32, 2, empty, 0);
    define(5, "e.scalar", STS_F64, 0, NULL, 0);
    snprintf(name, sizeof name, "rank%d.bias", me);
    define(6, name, STS_I64, 1, own, 0);
    define(7, "f.with_data", STS_I16, 2, a, 1);
    T[7].with_data = 1;
}

/* A piece of a block: bytes [off, off + len) of tensor t. */
typedef struct piece {
    int t;
    uint64_t off, len;
} piece;

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Cuts every declared block into pieces of 1 byte to ~700 KB and shuffles them all. */
static piece *cut_pieces(size_t *n)
{
    size_t cap = 64, k = 0;
    piece *p = malloc(cap * sizeof *p);
    for (int i = 0; i < NT; i++) {
        uint64_t at = 0;
        if (T[i].with_data)
            continue;
        do {
            uint64_t len = next_rand() % (i == 2 ? 700000 : 40) + 1;
            len = len < T[i].nbytes - at ? len : T[i].nbytes - at;
            if (k == cap)
                p = realloc(p, (cap *= 2) * sizeof *p);
            p[k++] = (piece){i, at, len};
            at += len;
        } while (at < T[i].nbytes);
    }
    for (size_t i = k; i > 1; i--) {
        size_t j = (size_t)(next_rand() % i);
        piece x = p[i - 1];
        p[i - 1] = p[j];
        p[j] = x;
    }
    *n = k;
    return p;
}

static void add_all(sts_writer *w, int declare)
{
    for (int i = 0; i < NT; i++) {
        const tensor *t = &T[i];
        sts_block b = {t->name,
                       t->dt,
                       t->ndim,
                       t->gshape,
                       t->off,
                       t->shape,
                       declare && !t->with_data ? NULL : t->data};
        CHECK_OK(sts_writer_add(w, &b));
    }
}

static sts_mapping *make_mapping(void)
{
    sts_mapping *m = NULL;
    char name[64];
    CHECK_OK(sts_mapping_create(&m));
    for (int r = 0; r < np; r++) {
        snprintf(name, sizeof name, "rank%d.bias", r);
        CHECK_OK(sts_mapping_set(m, name, 2));
    }
    for (int i = 0; i < NT; i++)
        if (i != 6)
            CHECK_OK(sts_mapping_set(m, T[i].name, i % 2 ? 2 : 1));
    return m;
}

static void save(const char *dir, const sts_save_opts *o, int stream, uint64_t *stored)
{
    sts_writer *w = NULL;
    sts_save_stats st;
    piece *p = NULL;
    size_t n = 0;
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, o, &w));
    add_all(w, stream);
    if (stream) {
        CHECK_OK(sts_writer_begin(w));
        p = cut_pieces(&n);
        for (size_t i = 0; i < n; i++) {
            const tensor *t = &T[p[i].t];
            int s = -1;
            CHECK_OK(sts_writer_stores(w, t->name, &s));
            CHECK(s == 0 || s == 1);
            /* Half of the blocks stored elsewhere are put anyway: the writer drops them. */
            if (s == 1 || p[i].t % 2)
                CHECK_OK(sts_writer_put(w, t->name, p[i].off, t->data + p[i].off, p[i].len));
            if (s == 1)
                *stored += p[i].len;
        }
        {
            int s = -1;
            /* An error is never "stored": the status says error, the answer says 0. */
            CHECK_RC(sts_writer_stores(w, "no.such", &s), STS_E_ARG);
            CHECK(s == 0);
            CHECK_RC(sts_writer_stores(w, T[7].name, NULL), STS_E_ARG);
            CHECK_OK(sts_writer_stores(w, T[7].name, &s));
            CHECK(s == 1);
        }
    }
    if (sts_writer_commit(w, &st) != STS_OK) {
        fprintf(stderr, "rank %d: commit (%s): %s\n", me, stream ? "stream" : "one call",
                sts_writer_errmsg(w));
        test_failures++;
    }
    sts_writer_free(w);
    free(p);
}

/* Rank 0: the files of a and b, byte for byte (same names, sizes, bytes). */
static int same_dirs(const char *a, const char *b)
{
    DIR *d = opendir(a);
    struct dirent *e;
    int files = 0, bad = 0;
    char pa[2048], pb[2048];
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        long long sa, sb;
        unsigned char *x, *y;
        if (e->d_name[0] == '.')
            continue;
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        sa = su_size(pa);
        sb = su_size(pb);
        files++;
        if (sa < 0 || sa != sb) {
            fprintf(stderr, "%s: size %lld, streamed %lld\n", e->d_name, sa, sb);
            bad++;
            continue;
        }
        x = malloc((size_t)sa + 1);
        y = malloc((size_t)sa + 1);
        if (su_pread(pa, 0, x, (size_t)sa) != 0 || su_pread(pb, 0, y, (size_t)sa) != 0 ||
            memcmp(x, y, (size_t)sa) != 0) {
            fprintf(stderr, "%s: contents differ\n", e->d_name);
            bad++;
        }
        free(x);
        free(y);
    }
    closedir(d);
    if (su_count(a, NULL) != su_count(b, NULL)) {
        fprintf(stderr, "%s and %s hold different numbers of files\n", a, b);
        bad++;
    }
    return bad ? -1 : files;
}

static void run_case(const char *label, int mapped, int consolidate)
{
    char da[1200], db[1200], ca[1300], cb[1300], name[64];
    sts_save_opts o;
    sts_mapping *m = mapped ? make_mapping() : NULL;
    uint64_t stored = 0, all = 0, expect = 0;
    sts_save_opts_init(&o);
    o.mapping = m;
    snprintf(name, sizeof name, "%s_call", label);
    subdir(da, sizeof da, name);
    snprintf(name, sizeof name, "%s_stream", label);
    subdir(db, sizeof db, name);
    snprintf(ca, sizeof ca, "%s_cons", da);
    snprintf(cb, sizeof cb, "%s_cons", db);
    if (me == 0) {
        su_clear_dir(ca);
        su_clear_dir(cb);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    o.consolidate_dir = consolidate ? ca : NULL;
    o.keep_shards = 1;
    save(da, &o, 0, &stored);
    o.consolidate_dir = consolidate ? cb : NULL;
    save(db, &o, 1, &stored);
    /* Every byte of every declared block was put once, by the rank that stores it:
     * replicated tensors (3, 4, 5) once, the others by every rank. */
    MPI_Allreduce(&stored, &all, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    for (int i = 0; i < NT; i++) {
        uint64_t mine = !T[i].with_data && (me == 0 || i < 3 || i > 5) ? T[i].nbytes : 0, sum = 0;
        MPI_Allreduce(&mine, &sum, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
        expect += sum;
    }
    CHECK(all == expect);
    if (me == 0) {
        int n = same_dirs(da, db);
        CHECK(n == np * (mapped ? 2 : 1) || (mapped && n >= np + 1));
        if (n < 0)
            fprintf(stderr, "%s: the streamed rank files differ\n", label);
        if (consolidate) {
            n = same_dirs(ca, cb);
            CHECK(n >= 2); /* model file(s) and the index */
        }
    }
    TEST_AGREE(MPI_COMM_WORLD);
    sts_mapping_free(m);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    if (argc != 2) {
        if (me == 0)
            fprintf(stderr, "usage: par_writer_stream WORKDIR\n");
        MPI_Finalize();
        return 2;
    }
    /* The rank counts run side by side under ctest -j: one directory each. */
    snprintf(base, sizeof base, "%s_np%d", argv[1], np);
    if (me == 0)
        mkdir(base, 0777);
    rng += (uint64_t)me * 7919;
    make_tensors();
    run_case("plain", 0, 0);
    run_case("mapped", 1, 0);
    run_case("cons", 0, 1);
    for (int i = 0; i < NT; i++)
        free(T[i].data);
    TEST_AGREE(MPI_COMM_WORLD);
    if (me == 0)
        printf("par_writer_stream np=%d: %s\n", np, test_failures ? "FAILED" : "ok");
    MPI_Finalize();
    return TEST_EXIT();
}
