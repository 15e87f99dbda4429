/*
 * par_direct.c - saving straight into a Hugging Face checkpoint through the
 * writer API, at any rank count.
 *
 *  - full-tensor save: whole tensors of eleven dtypes and every rank count of
 *    dimensions (scalar to 4-D, one of zero size) owned by arbitrary ranks, a
 *    third of them passed whole by a second rank too: each is stored once,
 *    every element is read back with the reader, and the direct output equals
 *    the one-call output (rank files kept, then consolidated) byte for byte,
 *    in the default and in a split, aligned PyTorch layout;
 *  - strided blocks: 2-D and 3-D grids over all ranks, an F4 tensor split on
 *    bytes, long runs (one write per run) and a block spanning several
 *    collective rounds (STSHARD_DIRECT_ROUND), against the one-call output;
 *  - the one-call mode without keep_shards removes the rank files and the
 *    directory it made; a failed consolidation keeps them;
 *  - errors, each with the same code and message on every rank and no
 *    final-named or temporary file left: overlapping, gapped, dtype- and
 *    shape-disagreeing blocks, sub-byte blocks off byte boundaries, existing
 *    output, a rank whose writes fail in the middle of the data phase
 *    (RLIMIT_FSIZE; an existing checkpoint under force stays intact), a
 *    publish that fails after some files were renamed, misuse.
 */
#include <mpi.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "par_save_util.h"
#include "test_util.h"

static int me, np;
static MPI_Comm comm;
static char root[2048];

/* ---- data: every byte is a function of the tensor name and its byte-view index ---- */

static unsigned char gen_byte(const char *name, uint64_t i)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    h ^= i * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    return (unsigned char)(h >> 29);
}

/* A tensor description plus one block of it. */
typedef struct tb {
    const char *name;
    sts_dtype dtype;
    uint32_t ndim;
    uint64_t gshape[4], off[4], shape[4];
    unsigned char *data;
    uint64_t nbytes;
} tb;

/* Byte-view size of a box (last dimension in bytes); elements must cover whole bytes. */
static uint64_t bytes_of(const tb *t, const uint64_t *shape)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->ndim; d++)
        n *= d + 1 == t->ndim ? shape[d] * sts_dtype_bits(t->dtype) / 8 : shape[d];
    return t->ndim ? n : sts_dtype_bits(t->dtype) / 8;
}

/* Fills t->data with the generator's bytes of its block. */
static void fill(tb *t)
{
    uint64_t G[4], S[4], O[4], idx[4] = {0, 0, 0, 0};
    unsigned bits = sts_dtype_bits(t->dtype);
    t->nbytes = bytes_of(t, t->shape);
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (t->ndim == 0) {
        for (uint64_t i = 0; i < t->nbytes; i++)
            t->data[i] = gen_byte(t->name, i);
        return;
    }
    for (uint32_t d = 0; d < t->ndim; d++) {
        G[d] = t->gshape[d];
        S[d] = t->shape[d];
        O[d] = t->off[d];
    }
    G[t->ndim - 1] = G[t->ndim - 1] * bits / 8;
    S[t->ndim - 1] = S[t->ndim - 1] * bits / 8;
    O[t->ndim - 1] = O[t->ndim - 1] * bits / 8;
    for (uint64_t i = 0; i < t->nbytes; i++) {
        uint64_t g = 0;
        for (uint32_t d = 0; d < t->ndim; d++)
            g = g * G[d] + O[d] + idx[d];
        t->data[i] = gen_byte(t->name, g);
        for (uint32_t d = t->ndim; d-- > 0;)
            if (++idx[d] < S[d])
                break;
            else
                idx[d] = 0;
    }
}

static sts_block as_block(const tb *t)
{
    sts_block b = {t->name, t->dtype, t->ndim, t->gshape, t->off, t->shape, t->data};
    return b;
}

/* ---- helpers: agreement of messages, files left behind ----------------------------- */

/* Every rank returned rc == want with the same message. */
static void check_agreed(int rc, int want, const char *msg, const char *needle, const char *what)
{
    uint64_t h = 0xcbf29ce484222325ULL, lo = 0, hi = 0;
    int rlo = 0, rhi = 0;
    for (const char *p = msg; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, comm);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, comm);
    MPI_Allreduce(&rc, &rlo, 1, MPI_INT, MPI_MIN, comm);
    MPI_Allreduce(&rc, &rhi, 1, MPI_INT, MPI_MAX, comm);
    if (me == 0 && rc != STS_OK)
        printf("%s: %s: %s\n", what, sts_errname(rc), msg);
    if (rc != want || lo != hi || rlo != rhi || (needle && !strstr(msg, needle))) {
        fprintf(stderr, "rank %d: %s: got %s (%s), want %s%s%s\n", me, what, sts_errname(rc), msg,
                sts_errname(want), needle ? " with " : "", needle ? needle : "");
        test_failures++;
    }
}

/* Rank 0: the directory holds no model file, no index and no temporary. */
static void check_nothing_final(const char *dir, const char *what)
{
    if (me != 0)
        return;
    if (su_count(dir, "model-") > 0 || su_count(dir, "index.json") > 0 ||
        su_count(dir, "stshard-partial") > 0) {
        fprintf(stderr, "%s: files left in %s\n", what, dir);
        test_failures++;
    }
}

/* buf = a + b; a truncated path would test the wrong file, so it is a failure. */
static void cat2(char *buf, size_t len, const char *a, const char *b)
{
    if (snprintf(buf, len, "%s%s", a, b) >= (int)len) {
        fprintf(stderr, "path too long: %s%s\n", a, b);
        test_failures++;
    }
}

static void path(char *buf, size_t len, const char *name)
{
    if (snprintf(buf, len, "%s/%s", root, name) >= (int)len) {
        fprintf(stderr, "path too long: %s/%s\n", root, name);
        test_failures++;
    }
}

/* Rank 0: every entry of a also in b with equal bytes, and the same number of entries. */
static void check_same_dir(const char *a, const char *b, const char *what)
{
    DIR *d;
    struct dirent *e;
    if (me != 0)
        return;
    d = opendir(a);
    CHECK(d != NULL);
    if (!d)
        return;
    CHECK(su_count(a, NULL) == su_count(b, NULL));
    while ((e = readdir(d)) != NULL) {
        char pa[4096], pb[4096];
        long long sa, sb;
        unsigned char *x, *y;
        if (e->d_name[0] == '.')
            continue;
        cat2(pa, sizeof pa, a, "/");
        cat2(pa + strlen(pa), sizeof pa - strlen(pa), e->d_name, "");
        cat2(pb, sizeof pb, b, "/");
        cat2(pb + strlen(pb), sizeof pb - strlen(pb), e->d_name, "");
        sa = su_size(pa);
        sb = su_size(pb);
        x = malloc(sa > 0 ? (size_t)sa : 1);
        y = malloc(sa > 0 ? (size_t)sa : 1);
        if (sa != sb || su_pread(pa, 0, x, (size_t)sa) != 0 || su_pread(pb, 0, y, (size_t)sa) ||
            memcmp(x, y, (size_t)sa) != 0) {
            fprintf(stderr, "%s: %s and %s differ\n", what, pa, pb);
            test_failures++;
        }
        free(x);
        free(y);
    }
    closedir(d);
}

/* Reads every tensor of tens back from dir with the reader and compares with the generator. */
static void check_read_back(const char *dir, const tb *tens, size_t n, const char *what)
{
    sts_reader *r = NULL;
    sts_diag d;
    int rc = sts_reader_open(comm, dir, MPI_INFO_NULL, &r, &d);
    CHECK_OK(rc);
    if (rc != STS_OK) {
        fprintf(stderr, "%s: %s\n", what, d.message);
        return;
    }
    CHECK(sts_reader_count(r) == n);
    for (size_t i = 0; i < n; i++) {
        const tb *t = &tens[i];
        tb whole = *t;
        sts_read_req q;
        uint64_t zero[4] = {0, 0, 0, 0};
        memcpy(whole.off, zero, sizeof zero);
        memcpy(whole.shape, t->gshape, sizeof whole.shape);
        fill(&whole);
        unsigned char *buf = malloc(whole.nbytes ? whole.nbytes : 1);
        q.name = t->name;
        q.dtype = t->dtype;
        q.ndim = t->ndim;
        q.offsets = zero;
        q.shape = t->gshape;
        q.buf = buf;
        /* Rank i % np reads tensor i: every rank checks some. */
        rc = sts_reader_read(r, &q, (size_t)((int)(i % (size_t)np) == me));
        CHECK_OK(rc);
        if ((int)(i % (size_t)np) == me && memcmp(buf, whole.data, whole.nbytes) != 0) {
            fprintf(stderr, "%s: tensor '%s' differs\n", what, t->name);
            test_failures++;
        }
        free(buf);
        free(whole.data);
    }
    sts_reader_free(r);
}

/* One save of blocks[0..n) into dir with opts; returns the agreed code, message in msg. */
static int save(const char *dir, const sts_save_opts *o, const tb *blocks, size_t n,
                sts_save_stats *st, char *msg, size_t msglen)
{
    sts_writer *w = NULL;
    int rc = sts_writer_create(comm, dir, o, &w);
    if (rc != STS_OK) {
        snprintf(msg, msglen, "create failed");
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        sts_block b = as_block(&blocks[i]);
        sts_writer_add(w, &b);
    }
    rc = sts_writer_commit(w, st);
    snprintf(msg, msglen, "%s", sts_writer_errmsg(w));
    sts_writer_free(w);
    return rc;
}

static void free_blocks(tb *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].data);
}

/* ---- full-tensor save ---------------------------------------------------------------- */

typedef struct spec {
    const char *name;
    sts_dtype dtype;
    uint32_t ndim;
    uint64_t shape[4];
} spec;

static const spec FULL[] = {
    {"model.embed_tokens.weight", STS_BF16, 2, {37, 16}},
    {"model.norm.weight", STS_F32, 1, {16}},
    {"model.step", STS_I64, 0, {0}},
    {"layers.0.conv.weight", STS_F16, 4, {3, 2, 3, 3}},
    {"layers.0.mask", STS_BOOL, 2, {5, 7}},
    {"layers.0.q4", STS_F4, 2, {3, 10}},
    {"layers.0.scale", STS_F8_E4M3, 1, {9}},
    {"layers.0.bucket", STS_I32, 3, {2, 3, 5}},
    {"layers.0.cplx", STS_C64, 1, {4}},
    {"layers.0.f64", STS_F64, 2, {3, 3}},
    {"layers.0.empty", STS_F32, 2, {0, 4}},
    {"layers.0.bytes", STS_U8, 1, {1000}},
    {"layers.1.weight", STS_BF16, 2, {64, 48}},
    {"layers.1.bias", STS_BF16, 1, {48}},
    {"a \"quoted\"\\name", STS_U16, 1, {3}},
    {"\xc3\xbc.emoji\xf0\x9f\x98\x80", STS_I8, 1, {5}},
};
#define NFULL (sizeof FULL / sizeof FULL[0])

static tb whole_of(const spec *s)
{
    tb t;
    memset(&t, 0, sizeof t);
    t.name = s->name;
    t.dtype = s->dtype;
    t.ndim = s->ndim;
    memcpy(t.gshape, s->shape, sizeof t.gshape);
    memcpy(t.shape, s->shape, sizeof t.shape);
    return t;
}

/* Rank 0: how many rank files in dir store each FULL tensor (must be 1 each). */
static void check_stored_once(const char *dir)
{
    int count[NFULL];
    DIR *d;
    struct dirent *e;
    if (me != 0)
        return;
    memset(count, 0, sizeof count);
    d = opendir(dir);
    CHECK(d != NULL);
    while (d && (e = readdir(d)) != NULL) {
        char p[4096];
        sts_header *h = NULL;
        if (strncmp(e->d_name, "shard-", 6) != 0)
            continue;
        cat2(p, sizeof p, dir, "/");
        cat2(p + strlen(p), sizeof p - strlen(p), e->d_name, "");
        CHECK_OK(sts_header_read_file(p, &h, NULL, NULL));
        for (size_t i = 0; h && i < sts_header_count(h); i++)
            for (size_t k = 0; k < NFULL; k++)
                count[k] += strcmp(sts_header_tensor(h, i)->name, FULL[k].name) == 0;
        sts_header_free(h);
    }
    if (d)
        closedir(d);
    for (size_t k = 0; k < NFULL; k++)
        if (count[k] != 1) {
            fprintf(stderr, "tensor '%s' stored %d times\n", FULL[k].name, count[k]);
            test_failures++;
        }
}

/* Direct save of blocks into <name>, one-call save into <name>_two/{shards,out}: equal bytes. */
static void direct_vs_two_step(const char *name, const sts_consolidate_opts *co, const tb *blocks,
                               size_t n, const tb *all, size_t nall, sts_save_stats *st)
{
    char dir[4096], shards[4096], out[4096], msg[1024];
    sts_save_opts o;
    sts_save_stats st2;
    int rc;
    path(dir, sizeof dir, name);
    cat2(shards, sizeof shards, dir, "_two/shards");
    cat2(out, sizeof out, dir, "_two/out");
    sts_save_opts_init(&o);
    o.direct = 1;
    o.consolidate = co;
    rc = save(dir, &o, blocks, n, st, msg, sizeof msg);
    check_agreed(rc, STS_OK, msg, NULL, name);
    sts_save_opts_init(&o);
    o.consolidate_dir = out;
    o.consolidate = co;
    o.keep_shards = 1;
    rc = save(shards, &o, blocks, n, &st2, msg, sizeof msg);
    check_agreed(rc, STS_OK, msg, NULL, "one-call save");
    CHECK(st->files_total == 0);
    CHECK(st2.files_total > 0);
    CHECK(st->output_files == st2.output_files && st->output_files > 0);
    CHECK(st->output_tensors == nall && st2.output_tensors == nall);
    CHECK(st->output_bytes == st2.output_bytes);
    CHECK(st2.consolidate_seconds > 0 && st->consolidate_seconds == 0);
    MPI_Barrier(comm);
    check_same_dir(dir, out, name);
    if (me == 0) {
        CHECK(su_count(dir, "shard-") == 0);
        CHECK(su_count(dir, "stshard-partial") == 0);
        CHECK(su_count(dir, NULL) == (int)st->output_files + 1);
    }
    check_read_back(dir, all, nall, name);
}

static void test_full(void)
{
    tb mine[NFULL], all[NFULL];
    size_t n = 0;
    uint64_t bytes = 0;
    sts_consolidate_opts co;
    sts_save_stats st;
    char shards[4096];
    for (size_t i = 0; i < NFULL; i++) {
        int owner = (int)((i * 5 + 1) % (size_t)np), dup = (int)((i + 2) % (size_t)np);
        all[i] = whole_of(&FULL[i]);
        bytes += bytes_of(&all[i], all[i].gshape);
        /* A third of the tensors are passed whole by a second rank too. */
        if (me == owner || (i % 3 == 0 && me == dup)) {
            mine[n] = whole_of(&FULL[i]);
            fill(&mine[n++]);
        }
    }
    direct_vs_two_step("full", NULL, mine, n, all, NFULL, &st);
    CHECK(st.output_files == 1);
    CHECK(st.output_bytes == bytes);
    path(shards, sizeof shards, "full_two/shards");
    check_stored_once(shards);
    /* Split over several files, PyTorch layout, aligned data sections. */
    sts_consolidate_opts_init(&co);
    co.max_file_size = 1500;
    co.layout = STS_LAYOUT_PYTORCH;
    co.align = 64;
    direct_vs_two_step("full_split", &co, mine, n, all, NFULL, &st);
    CHECK(st.output_files > 3);
    free_blocks(mine, n);
}

/* ---- strided blocks -------------------------------------------------------------------- */

/* Part i of n of a length L: the first L mod n parts are one longer. */
static void part(uint64_t L, int n, int i, uint64_t *off, uint64_t *len)
{
    uint64_t q = L / (uint64_t)n, r = L % (uint64_t)n, u = (uint64_t)i;
    *len = q + (u < r);
    *off = u * q + (u < r ? u : r);
}

/* A grid a x b = np with a <= b as square as possible. */
static void grid(int *a, int *b)
{
    *a = 1;
    for (int k = 1; k * k <= np; k++)
        if (np % k == 0)
            *a = k;
    *b = np / *a;
}

/* A tensor split along dims d0 (over a parts) and d1 (over b parts); unit scales d1. */
static tb split2(const char *name, sts_dtype dt, uint32_t ndim, const uint64_t *shape, int d0,
                 int a, int d1, int b, uint64_t unit)
{
    tb t;
    uint64_t len;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.dtype = dt;
    t.ndim = ndim;
    memcpy(t.gshape, shape, ndim * sizeof *shape);
    memcpy(t.shape, shape, ndim * sizeof *shape);
    if (d0 >= 0)
        part(shape[d0], a, me / b, &t.off[d0], &t.shape[d0]);
    if (d1 >= 0) {
        part(shape[d1] / unit, b, me % b, &t.off[d1], &len);
        t.off[d1] *= unit;
        t.shape[d1] = len * unit;
    }
    return t;
}

static void test_strided(void)
{
    int a, b;
    uint64_t s3[] = {5, 7, 6}, scol[] = {300, 257}, srow[] = {101, 33}, sf4[] = {6, 16};
    uint64_t sc[] = {4, 9}, sruns[] = {3, (uint64_t)np, 1u << 20},
             sround[] = {2000, 64 * (uint64_t)np};
    uint64_t s4[] = {4, 3, 5, 2}, snorm[] = {16}, sdup[] = {8, 4}, sdcol[] = {16, 64};
    tb t[13], all[13];
    size_t firsts = 0;
    sts_consolidate_opts co;
    sts_save_stats st;
    size_t n = 0;
    grid(&a, &b);
    t[n++] = split2("s.w3d", STS_F32, 3, s3, 1, a, 2, b, 1);
    t[n++] = split2("s.col", STS_BF16, 2, scol, -1, 1, 1, np, 1);
    t[n++] = split2("s.row", STS_F16, 2, srow, 0, np, -1, 1, 1);
    t[n++] = split2("s.f4", STS_F4, 2, sf4, -1, 1, 1, np, 2); /* whole bytes: 2 elements */
    t[n++] = split2("s.c64", STS_C64, 2, sc, -1, 1, 1, np, 1);
    t[n++] = split2("s.runs", STS_U8, 3, sruns, -1, 1, 1, np, 1); /* 1 MiB runs */
    t[n++] = split2("s.rounds", STS_BF16, 2, sround, -1, 1, 1, np, 1);
    t[n++] = split2("s.mesh4d", STS_I16, 4, s4, 0, a, 2, b, 1);
    t[n++] = split2("s.norm", STS_F32, 1, snorm, -1, 1, -1, 1, 1); /* replicated */
    /* Identical partial blocks on several ranks: ranks of equal parity hold the same half. */
    t[n] = split2("s.dup", STS_U8, 2, sdup, -1, 1, -1, 1, 1);
    if (np > 1)
        part(sdup[0], 2, me % 2, &t[n].off[0], &t[n].shape[0]);
    n++;
    /* The same again, row halves and (exchanged) column halves, but ranks 2 and up hold other
     * bytes: the planner keeps the lowest rank's copy, as consolidate keeps the first rank
     * file's, so a copy written by a rank whose block was not kept would show. */
    firsts = n;
    t[n] = split2("s.dupfirst", STS_U8, 2, sdup, -1, 1, -1, 1, 1);
    if (np > 1)
        part(sdup[0], 2, me % 2, &t[n].off[0], &t[n].shape[0]);
    n++;
    t[n] = split2("s.dupcol", STS_BF16, 2, sdcol, -1, 1, -1, 1, 1);
    if (np > 1) {
        part(sdcol[1], 2, me % 2, &t[n].off[1], &t[n].shape[1]);
    }
    n++;
    for (size_t i = 0; i < n; i++) {
        all[i] = t[i];
        memset(all[i].off, 0, sizeof all[i].off);
        memcpy(all[i].shape, all[i].gshape, sizeof all[i].shape);
        fill(&t[i]);
        for (uint64_t k = 0; i >= firsts && me >= 2 && k < t[i].nbytes; k++)
            t[i].data[k] ^= 0x5A;
    }
    /* The exchange (default): default chunks, split output, and 512-byte chunks that cut
     * rows inside the last dimension. */
    direct_vs_two_step("strided", NULL, t, n, all, n, &st);
    sts_consolidate_opts_init(&co);
    co.max_file_size = 200000;
    direct_vs_two_step("strided_split", &co, t, n, all, n, &st);
    CHECK(st.output_files > 2);
    sts_consolidate_opts_init(&co);
    co.buffer_size = 1024;
    direct_vs_two_step("strided_tiny_chunks", &co, t, n, all, n, &st);
    /* File views and collective writes: tiny rounds (the column blocks span many), then
     * the default rounds. */
    setenv("STSHARD_DIRECT_STRIDED", "view", 1);
    setenv("STSHARD_DIRECT_ROUND", "4096", 1);
    direct_vs_two_step("strided_view", NULL, t, n, all, n, &st);
    sts_consolidate_opts_init(&co);
    co.max_file_size = 200000;
    direct_vs_two_step("strided_view_split", &co, t, n, all, n, &st);
    unsetenv("STSHARD_DIRECT_ROUND");
    direct_vs_two_step("strided_view_big_rounds", NULL, t, n, all, n, &st);
    unsetenv("STSHARD_DIRECT_STRIDED");
    free_blocks(t, n);
}

/* ---- one call: removal of the rank files ------------------------------------------------ */

static void test_one_call(void)
{
    char dir[4096], out[4096], msg[1024];
    sts_save_opts o;
    sts_save_stats st;
    tb t;
    uint64_t shape[] = {40, 24};
    int rc;
    t = split2("c.w", STS_F32, 2, shape, 0, np, -1, 1, 1);
    fill(&t);
    path(dir, sizeof dir, "call/shards");
    path(out, sizeof out, "call/out");
    sts_save_opts_init(&o);
    o.consolidate_dir = out;
    rc = save(dir, &o, &t, 1, &st, msg, sizeof msg);
    check_agreed(rc, STS_OK, msg, NULL, "one call");
    MPI_Barrier(comm);
    if (me == 0) {
        CHECK(access(dir, F_OK) != 0); /* the rank files and the directory the save made */
        CHECK(su_count(out, "model-00001-of-00001.safetensors") == 1);
        CHECK(su_count(out, "model.safetensors.index.json") == 1);
    }
    CHECK(st.files_total == (uint64_t)np && st.output_files == 1);
    /* A failing consolidation (into the input directory) keeps the rank files. */
    path(dir, sizeof dir, "call_same");
    o.consolidate_dir = dir;
    rc = save(dir, &o, &t, 1, &st, msg, sizeof msg);
    check_agreed(rc, STS_E_USAGE, msg, "rank files are kept", "consolidation into the input");
    MPI_Barrier(comm);
    if (me == 0)
        CHECK(su_count(dir, "shard-") == np);
    free(t.data);
}

/* ---- errors ------------------------------------------------------------------------------ */

/* A direct save of one block per rank that must fail with want on every rank. */
static void expect_fail(const char *name, const tb *blk, int have, int want, const char *needle)
{
    char dir[4096], msg[1024];
    sts_save_opts o;
    sts_save_stats st;
    int rc;
    path(dir, sizeof dir, name);
    sts_save_opts_init(&o);
    o.direct = 1;
    rc = save(dir, &o, blk, have ? 1 : 0, &st, msg, sizeof msg);
    check_agreed(rc, want, msg, needle, name);
    MPI_Barrier(comm);
    check_nothing_final(dir, name);
}

static void test_plan_errors(void)
{
    uint64_t g4[] = {4}, g84[] = {8, 4}, g44[] = {4, 4}, g45[] = {4, 5}, g23[] = {2, 3};
    tb t;
    memset(&t, 0, sizeof t);
    /* The blocks leave the end of the declared global shape uncovered. */
    t = split2("e.gap", STS_F32, 2, g84, -1, 1, -1, 1, 1);
    part(4, np, me, &t.off[0], &t.shape[0]);
    fill(&t);
    expect_fail("err_gap", &t, 1, STS_E_COVERAGE_GAP, "cover only");
    free(t.data);
    if (np < 2)
        return;
    /* Rank 0 holds [0, 3), rank 1 [2, 4): an overlap, named with both ranks. */
    t = split2("e.overlap", STS_U8, 1, g4, -1, 1, -1, 1, 1);
    t.off[0] = me == 0 ? 0 : 2;
    t.shape[0] = me == 0 ? 3 : 2;
    fill(&t);
    expect_fail("err_overlap", &t, me < 2, STS_E_COVERAGE_OVERLAP, "rank 1");
    free(t.data);
    /* The ranks declare different global shapes. */
    t = split2("e.shape", STS_F32, 2, me == 0 ? g44 : g45, -1, 1, -1, 1, 1);
    t.off[0] = me == 0 ? 0 : 2;
    t.shape[0] = 2;
    fill(&t);
    expect_fail("err_shape", &t, me < 2, STS_E_ARG, "global shape");
    free(t.data);
    /* The ranks disagree on the dtype. */
    t = split2("e.dtype", me == 0 ? STS_F32 : STS_I32, 2, g44, -1, 1, -1, 1, 1);
    t.off[0] = me == 0 ? 0 : 2;
    t.shape[0] = 2;
    fill(&t);
    expect_fail("err_dtype", &t, me < 2, STS_E_DTYPE_MISMATCH, "e.dtype");
    free(t.data);
    /* F4 blocks of 1 and 2 elements per row: not on byte boundaries. */
    t = split2("e.f4", STS_F4, 2, g23, -1, 1, -1, 1, 1);
    t.off[1] = me == 0 ? 0 : 1;
    t.shape[1] = me == 0 ? 1 : 2;
    t.nbytes = 1;
    t.data = calloc(2, 1);
    expect_fail("err_f4", &t, me < 2, STS_E_UNSUPPORTED, "byte boundary");
    free(t.data);
}

/* Existing output: without force AlreadyExists, and the old files stay. */
static void test_existing(void)
{
    char dir[4096], msg[1024];
    sts_save_opts o;
    sts_save_stats st;
    uint64_t shape[] = {12, 8};
    tb t = split2("x.w", STS_F32, 2, shape, 0, np, -1, 1, 1);
    int rc;
    fill(&t);
    path(dir, sizeof dir, "existing");
    sts_save_opts_init(&o);
    o.direct = 1;
    rc = save(dir, &o, &t, 1, &st, msg, sizeof msg);
    check_agreed(rc, STS_OK, msg, NULL, "first save");
    rc = save(dir, &o, &t, 1, &st, msg, sizeof msg);
    check_agreed(rc, STS_E_EXIST, msg, "already exists", "second save");
    MPI_Barrier(comm);
    if (me == 0)
        CHECK(su_count(dir, NULL) == 2);
    o.force = 1;
    rc = save(dir, &o, &t, 1, &st, msg, sizeof msg);
    check_agreed(rc, STS_OK, msg, NULL, "forced save");
    free(t.data);
}

/* Rank file of rank 0: the bytes of path, or NULL. */
static unsigned char *slurp(const char *p, long long *n)
{
    unsigned char *buf;
    *n = su_size(p);
    if (*n < 0)
        return NULL;
    buf = malloc((size_t)*n + 1);
    if (buf && su_pread(p, 0, buf, (size_t)*n) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/*
 * The last rank cannot write past 4 KiB (RLIMIT_FSIZE, SIGXFSZ ignored):
 * its data writes fail in the middle of the data phase while the other
 * ranks succeed.  Every rank must report that failure; the checkpoint that
 * was there (replaced under force) stays intact.
 */
static void test_rank_fails(void)
{
    char dir[4096], model[4096], msg[1024], needle[32];
    sts_save_opts o;
    sts_save_stats st;
    uint64_t shape[] = {64 * (uint64_t)np, 1024};
    tb t = split2("f.w", STS_F32, 2, shape, 0, np, -1, 1, 1);
    struct rlimit old, lim;
    unsigned char *before = NULL, *after = NULL;
    long long nb = 0, na = 0;
    int rc;
    fill(&t);
    path(dir, sizeof dir, "err_rank");
    cat2(model, sizeof model, dir, "/model-00001-of-00001.safetensors");
    sts_save_opts_init(&o);
    o.direct = 1;
    rc = save(dir, &o, &t, 1, &st, msg, sizeof msg);
    check_agreed(rc, STS_OK, msg, NULL, "good save");
    if (me == 0)
        before = slurp(model, &nb);
    for (uint64_t i = 0; i < t.nbytes; i++)
        t.data[i] ^= 0x5a; /* new values: a replacement must be visible */
    o.force = 1;
    if (me == np - 1) {
        signal(SIGXFSZ, SIG_IGN);
        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = 4096;
        CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    }
    rc = save(dir, &o, &t, 1, &st, msg, sizeof msg);
    if (me == np - 1)
        setrlimit(RLIMIT_FSIZE, &old);
    snprintf(needle, sizeof needle, "rank %d:", np - 1);
    {
        int all = 0;
        MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, comm);
        CHECK(all < 0); /* failed on every rank */
    }
    check_agreed(rc, rc, msg, needle, "a rank fails while writing");
    MPI_Barrier(comm);
    if (me == 0) {
        after = slurp(model, &na);
        CHECK(before && after && na == nb && memcmp(before, after, (size_t)nb) == 0);
        CHECK(su_count(dir, "stshard-partial") == 0);
        CHECK(su_count(dir, NULL) == 2);
    }
    free(before);
    free(after);
    free(t.data);
}

/* The index cannot be published (its name is a non-empty directory): the renamed files go again. */
static void test_publish_fails(void)
{
    char dir[4096], idx[4096], inner[4096], msg[1024];
    sts_save_opts o;
    sts_save_stats st;
    sts_consolidate_opts co;
    uint64_t shape[] = {16, 16};
    tb t = split2("p.w", STS_F32, 2, shape, 0, np, -1, 1, 1);
    int rc;
    fill(&t);
    path(dir, sizeof dir, "err_publish");
    cat2(idx, sizeof idx, dir, "/model.safetensors.index.json");
    cat2(inner, sizeof inner, idx, "/keep");
    if (me == 0) {
        mkdir(dir, 0777);
        mkdir(idx, 0777);
        fclose(fopen(inner, "w"));
    }
    MPI_Barrier(comm);
    sts_consolidate_opts_init(&co);
    co.max_file_size = 256; /* several files, renamed before the index fails */
    sts_save_opts_init(&o);
    o.direct = 1;
    o.force = 1;
    o.consolidate = &co;
    rc = save(dir, &o, &t, 1, &st, msg, sizeof msg);
    {
        int all = 0;
        MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, comm);
        CHECK(all < 0);
    }
    check_agreed(rc, rc, msg, "index.json", "publish fails");
    MPI_Barrier(comm);
    if (me == 0) {
        CHECK(su_count(dir, "model-0") == 0);
        CHECK(su_count(dir, "stshard-partial") == 0);
        unlink(inner);
        rmdir(idx);
    }
    free(t.data);
}

static void test_misuse(void)
{
    char dir[4096], msg[1024];
    sts_save_opts o;
    sts_consolidate_opts co;
    sts_save_stats st;
    int rc;
    path(dir, sizeof dir, "misuse");
    sts_save_opts_init(&o);
    o.direct = 1;
    o.consolidate_dir = dir;
    rc = save(dir, &o, NULL, 0, &st, msg, sizeof msg);
    check_agreed(rc, STS_E_ARG, msg, "exclude each other", "direct + consolidate_dir");
    sts_consolidate_opts_init(&co);
    co.align = 12;
    o.consolidate_dir = NULL;
    o.consolidate = &co;
    rc = save(dir, &o, NULL, 0, &st, msg, sizeof msg);
    check_agreed(rc, STS_E_ARG, msg, "multiple of 8", "align 12");
    /* No tensor at all: still one valid, empty model file and an index. */
    co.align = 0;
    rc = save(dir, &o, NULL, 0, &st, msg, sizeof msg);
    check_agreed(rc, STS_OK, msg, NULL, "empty direct save");
    CHECK(st.output_files == 1 && st.output_tensors == 0);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    comm = MPI_COMM_WORLD;
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    if (argc != 2) {
        if (me == 0)
            fprintf(stderr, "usage: par_direct WORKDIR\n");
        MPI_Finalize();
        return 2;
    }
    snprintf(root, sizeof root, "%s_np%d", argv[1], np);
    if (me == 0) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", root, root);
        CHECK(system(cmd) == 0);
    }
    MPI_Barrier(comm);
    test_full();
    test_strided();
    test_one_call();
    test_plan_errors();
    test_existing();
    test_rank_fails();
    test_publish_fails();
    test_misuse();
    TEST_AGREE(comm);
    if (me == 0)
        printf("par_direct np=%d: %s\n", np, test_failures ? "FAILED" : "ok");
    MPI_Finalize();
    return TEST_EXIT();
}
