/*
 * unit_plan.c - serial tests of the consolidation planner (src/plan.c,
 * src/plan_chunk.c): coverage (gaps, overlaps, duplicates, N-D blocks,
 * empty blocks, scalars), global shapes, dtype/rank agreement, output files
 * (mapping, size limit, layouts), and the data walk: for every rank count
 * and several budgets the chunks tile every output tensor, the pieces of a
 * chunk tile it, each rank's share is balanced, no chunk exceeds the budget,
 * and scattering the pieces reproduces the expected bytes.
 *
 * Input "files" live in memory; the value of byte i of tensor t's byte view
 * is a fixed function of (t, i), so expected output needs no reference data.
 */
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "test_util.h"

#define MAXT 16
#define MAXB 64
#define MAXF 8

typedef struct tspec {
    const char *name;
    sts_dtype dt;
    uint32_t ndim;
    uint64_t shape[4];
} tspec;

typedef struct bspec {
    int t;
    uint32_t file;
    uint64_t off[4];
    uint64_t sh[4];
} bspec;

typedef struct world {
    tspec t[MAXT];
    size_t nt;
    bspec b[MAXB];
    size_t nb;
    sts_plan_block rec[MAXB];
    unsigned char *file[MAXF];
    uint64_t fsize[MAXF];
} world;

static unsigned char value(int t, uint64_t i)
{
    return (unsigned char)(i * 131u + (uint64_t)t * 7u + 11u + (i >> 8));
}

/* Byte-view shape of n dims (last dim scaled to bytes; a scalar is its bytes). */
static uint32_t byteview(const uint64_t *in, uint32_t ndim, sts_dtype dt, uint64_t *out)
{
    unsigned bits = sts_dtype_bits(dt);
    if (ndim == 0) {
        out[0] = bits / 8;
        return 1;
    }
    for (uint32_t k = 0; k < ndim; k++)
        out[k] = in[k];
    out[ndim - 1] = in[ndim - 1] * bits / 8;
    return ndim;
}

static uint64_t vol(const uint64_t *s, uint32_t n)
{
    uint64_t v = 1;
    for (uint32_t k = 0; k < n; k++)
        v *= s[k];
    return v;
}

static void tensor(world *w, const char *name, sts_dtype dt, uint32_t ndim, const uint64_t *shape)
{
    tspec *t = &w->t[w->nt++];
    t->name = name;
    t->dt = dt;
    t->ndim = ndim;
    for (uint32_t k = 0; k < ndim; k++)
        t->shape[k] = shape[k];
}

static void block(world *w, int t, uint32_t file, const uint64_t *off, const uint64_t *sh)
{
    bspec *b = &w->b[w->nb++];
    b->t = t;
    b->file = file;
    for (uint32_t k = 0; k < w->t[t].ndim; k++) {
        b->off[k] = off[k];
        b->sh[k] = sh[k];
    }
}

/* Writes block bi's bytes (in byte view) at the end of its file and fills its record. */
static void materialise(world *w, size_t bi)
{
    bspec *b = &w->b[bi];
    tspec *t = &w->t[b->t];
    uint64_t g[4], bo[4], bs[4], idx[4] = {0};
    uint32_t n = byteview(t->shape, t->ndim, t->dt, g);
    uint64_t len;
    byteview(b->off, t->ndim, t->dt, bo);
    byteview(b->sh, t->ndim, t->dt, bs);
    if (t->ndim == 0)
        bo[0] = 0;
    len = vol(bs, n);
    w->file[b->file] = realloc(w->file[b->file], w->fsize[b->file] + len + 1);
    for (uint64_t i = 0; i < len; i++) {
        uint64_t flat = 0;
        for (uint32_t k = 0; k < n; k++)
            flat = flat * g[k] + bo[k] + idx[k];
        w->file[b->file][w->fsize[b->file] + i] = value(b->t, flat);
        for (uint32_t k = n; k-- > 0;) {
            if (++idx[k] < bs[k])
                break;
            idx[k] = 0;
        }
    }
    w->rec[bi].name = t->name;
    w->rec[bi].name_len = (uint32_t)strlen(t->name);
    w->rec[bi].file = b->file;
    w->rec[bi].dtype = t->dt;
    w->rec[bi].ndim = t->ndim;
    w->rec[bi].offsets = b->off;
    w->rec[bi].shape = b->sh;
    w->rec[bi].data_off = w->fsize[b->file];
    w->fsize[b->file] += len;
}

static void world_free(world *w)
{
    for (int f = 0; f < MAXF; f++)
        free(w->file[f]);
    memset(w, 0, sizeof *w);
}

static int build(world *w, const sts_plan_opts *o, sts_plan **p, sts_diag *d)
{
    sts_plan_opts def;
    memset(&def, 0, sizeof def);
    for (size_t i = 0; i < w->nb; i++)
        if (w->rec[i].name == NULL)
            materialise(w, i);
    sts__diag_clear(d);
    return sts__plan_build(w->rec, w->nb, o ? o : &def, p, d);
}

/* The index of tensor name in the plan, or -1. */
static long find(const sts_plan *p, const char *name)
{
    for (size_t i = 0; i < p->ntensors; i++)
        if (strcmp(p->tensors[i].name, name) == 0)
            return (long)i;
    return -1;
}

/*
 * Runs the data walk for nranks ranks with a budget and checks it against the
 * expected bytes of every kept tensor.
 */
static void walk(const world *w, const sts_plan *p, int nranks, uint64_t budget)
{
    unsigned char **out = calloc(p->nfiles, sizeof *out);
    unsigned char *hits = calloc(p->total_bytes + 1, 1);
    unsigned char *buf = malloc(budget), *stage = malloc(budget);
    sts_diag d;
    for (size_t f = 0; f < p->nfiles; f++)
        out[f] = calloc(p->files[f].header_len + p->files[f].data_size + 1, 1);
    for (int r = 0; r < nranks; r++) {
        sts_plan_iter it;
        sts_plan_chunk c;
        sts_plan_pieces ps;
        uint64_t mine = 0, lo, hi;
        memset(&ps, 0, sizeof ps);
        sts__plan_chunk_iter_init(&it, p, r, nranks, budget);
        while (sts__plan_chunk_iter_next(&it, &c)) {
            const sts_plan_file *F = &p->files[c.file];
            uint64_t sum = 0;
            CHECK(c.len > 0 && c.len <= budget);
            memset(buf, 0xA5, c.len);
            CHECK_OK(sts__plan_chunk_pieces(p, &c, &ps, &d));
            for (size_t i = 0; i < ps.n; i++) {
                const sts_plan_piece *pc = &ps.v[i];
                CHECK(pc->len <= c.len && pc->pos < c.len);
                CHECK(pc->in_off + pc->len <= w->fsize[pc->file]);
                memcpy(stage, w->file[pc->file] + pc->in_off, pc->len);
                sts__plan_chunk_scatter(p, &c, pc, stage, buf);
                sum += pc->len;
            }
            CHECK(sum == c.len); /* with full coverage checked below: the pieces tile it */
            memcpy(out[c.file] + c.out_off, buf, c.len);
            for (uint64_t i = 0; i < c.len; i++)
                hits[F->stream_off + (c.out_off - F->header_len) + i]++;
            mine += c.len;
        }
        sts__plan_chunk_pieces_free(&ps);
        sts__plan_chunk_rank_range(p, r, nranks, &lo, &hi);
        /* Rounding to rows moves each end by less than one row (<= budget). */
        CHECK(mine + 2 * budget >= hi - lo && mine <= hi - lo + 2 * budget);
    }
    for (uint64_t i = 0; i < p->total_bytes; i++)
        if (hits[i] != 1) {
            CHECK(hits[i] == 1);
            fprintf(stderr, "  stream byte %llu written %u times (P=%d budget=%llu)\n",
                    (unsigned long long)i, hits[i], nranks, (unsigned long long)budget);
            break;
        }
    for (size_t i = 0; i < p->ntensors; i++) {
        const sts_plan_tensor *t = &p->tensors[i];
        int ti = -1;
        for (size_t k = 0; k < w->nt; k++)
            if (strcmp(w->t[k].name, t->name) == 0)
                ti = (int)k;
        for (uint64_t j = 0; j < t->nbytes; j++)
            if (out[t->file][t->out_off + j] != value(ti, j)) {
                CHECK(out[t->file][t->out_off + j] == value(ti, j));
                fprintf(stderr, "  tensor %s byte %llu wrong (P=%d budget=%llu)\n", t->name,
                        (unsigned long long)j, nranks, (unsigned long long)budget);
                break;
            }
    }
    for (size_t f = 0; f < p->nfiles; f++)
        free(out[f]);
    free(out);
    free(hits);
    free(buf);
    free(stage);
}

static void walk_all(const world *w, const sts_plan *p)
{
    static const uint64_t budgets[] = {8, 24, 64, 1000, 1 << 20};
    for (int np = 1; np <= 5; np++)
        for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++)
            walk(w, p, np, budgets[b]);
}

/* ---- coverage -------------------------------------------------------------- */

static void test_row_col_grid(void)
{
    world w;
    sts_plan *p = NULL;
    sts_diag d;
    memset(&w, 0, sizeof w);
    tensor(&w, "row", STS_F32, 2, (uint64_t[]){10, 3});
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){4, 3});
    block(&w, 0, 1, (uint64_t[]){4, 0}, (uint64_t[]){4, 3});
    block(&w, 0, 2, (uint64_t[]){8, 0}, (uint64_t[]){2, 3});
    tensor(&w, "col", STS_BF16, 2, (uint64_t[]){7, 10});
    block(&w, 1, 2, (uint64_t[]){0, 0}, (uint64_t[]){7, 3});
    block(&w, 1, 0, (uint64_t[]){0, 3}, (uint64_t[]){7, 3});
    block(&w, 1, 1, (uint64_t[]){0, 6}, (uint64_t[]){7, 4});
    tensor(&w, "grid", STS_F16, 2, (uint64_t[]){6, 8});
    block(&w, 2, 0, (uint64_t[]){0, 0}, (uint64_t[]){4, 5});
    block(&w, 2, 1, (uint64_t[]){0, 5}, (uint64_t[]){4, 3});
    block(&w, 2, 2, (uint64_t[]){4, 0}, (uint64_t[]){2, 5});
    block(&w, 2, 3, (uint64_t[]){4, 5}, (uint64_t[]){2, 3});
    tensor(&w, "cube", STS_I32, 3, (uint64_t[]){4, 5, 6});
    for (uint64_t a = 0; a < 2; a++)
        for (uint64_t b = 0; b < 2; b++)
            for (uint64_t c = 0; c < 3; c++)
                block(&w, 3, (uint32_t)((a * 6 + b * 3 + c) % 4), (uint64_t[]){a * 2, b * 3, c * 2},
                      (uint64_t[]){2, b ? 2 : 3, 2});
    CHECK_OK(build(&w, NULL, &p, &d));
    if (!p)
        goto done;
    CHECK(p->ntensors == 4 && p->nfiles == 1 && p->file_count == 1);
    CHECK(strcmp(p->files[0].name, "model-00001-of-00001.safetensors") == 0);
    /* Canonical order (dtype rank descending): F32 row, I32 cube, BF16 col, F16 grid. */
    CHECK(strcmp(p->tensors[0].name, "row") == 0 && strcmp(p->tensors[1].name, "cube") == 0);
    CHECK(strcmp(p->tensors[2].name, "col") == 0 && strcmp(p->tensors[3].name, "grid") == 0);
    CHECK(p->tensors[1].shape[0] == 4 && p->tensors[1].shape[1] == 5 &&
          p->tensors[1].shape[2] == 6);
    CHECK(p->tensors[1].out_off == p->tensors[0].out_off + 120);
    CHECK(p->total_bytes == 4 * 5 * 6 * 4 + 10 * 3 * 4 + 7 * 10 * 2 + 6 * 8 * 2);
    CHECK(p->tensors[0].out_off == p->files[0].header_len);
    CHECK(p->files[0].header_len % 8 == 0);
    walk_all(&w, p);
done:
    sts__plan_free(p);
    world_free(&w);
}

static void test_replicas_scalars_empty(void)
{
    world w;
    sts_plan *p = NULL;
    sts_diag d;
    long i;
    memset(&w, 0, sizeof w);
    tensor(&w, "rep", STS_U8, 1, (uint64_t[]){5});
    for (uint32_t f = 0; f < 3; f++)
        block(&w, 0, f, (uint64_t[]){0}, (uint64_t[]){5});
    tensor(&w, "scalar", STS_F64, 0, NULL);
    block(&w, 1, 1, NULL, NULL);
    block(&w, 1, 3, NULL, NULL);
    tensor(&w, "zero_rows", STS_F32, 2, (uint64_t[]){0, 4});
    block(&w, 2, 0, (uint64_t[]){0, 0}, (uint64_t[]){0, 4});
    block(&w, 2, 1, (uint64_t[]){0, 0}, (uint64_t[]){0, 4});
    tensor(&w, "zero_cols", STS_I64, 2, (uint64_t[]){3, 0});
    block(&w, 3, 2, (uint64_t[]){0, 0}, (uint64_t[]){3, 0});
    /* Uneven split with an empty block at the end and a duplicated column block. */
    tensor(&w, "uneven", STS_C64, 2, (uint64_t[]){5, 3});
    block(&w, 4, 0, (uint64_t[]){0, 0}, (uint64_t[]){5, 2});
    block(&w, 4, 1, (uint64_t[]){0, 2}, (uint64_t[]){5, 1});
    block(&w, 4, 3, (uint64_t[]){0, 2}, (uint64_t[]){5, 1});
    block(&w, 4, 2, (uint64_t[]){5, 0}, (uint64_t[]){0, 3});
    tensor(&w, "flag", STS_BOOL, 1, (uint64_t[]){9});
    block(&w, 5, 0, (uint64_t[]){0}, (uint64_t[]){4});
    block(&w, 5, 1, (uint64_t[]){4}, (uint64_t[]){5});
    tensor(&w, "f8", STS_F8_E4M3, 2, (uint64_t[]){3, 3});
    block(&w, 6, 1, (uint64_t[]){0, 0}, (uint64_t[]){3, 1});
    block(&w, 6, 0, (uint64_t[]){0, 1}, (uint64_t[]){3, 2});
    tensor(&w, "u64", STS_U64, 1, (uint64_t[]){3});
    block(&w, 7, 2, (uint64_t[]){0}, (uint64_t[]){3});
    tensor(&w, "u16", STS_U16, 2, (uint64_t[]){2, 2});
    block(&w, 8, 3, (uint64_t[]){0, 0}, (uint64_t[]){2, 2});
    tensor(&w, "u32", STS_U32, 1, (uint64_t[]){2});
    block(&w, 9, 3, (uint64_t[]){1}, (uint64_t[]){1});
    block(&w, 9, 2, (uint64_t[]){0}, (uint64_t[]){1});
    CHECK_OK(build(&w, NULL, &p, &d));
    if (!p)
        goto done;
    CHECK(p->ntensors == 10);
    i = find(p, "scalar");
    CHECK(i >= 0 && p->tensors[i].ndim == 0 && p->tensors[i].nbytes == 8);
    CHECK(i >= 0 && p->tensors[i].nblocks == 1);
    i = find(p, "rep");
    CHECK(i >= 0 && p->tensors[i].nblocks == 1 && p->tensors[i].nbytes == 5);
    /* The replica kept is the one of the lowest file. */
    CHECK(i >= 0 && p->blocks[p->order[p->tensors[i].first_block]].file == 0);
    i = find(p, "zero_rows");
    CHECK(i >= 0 && p->tensors[i].nbytes == 0 && p->tensors[i].nblocks == 0);
    i = find(p, "uneven");
    CHECK(i >= 0 && p->tensors[i].nblocks == 2 && p->tensors[i].shape[0] == 5);
    walk_all(&w, p);
done:
    sts__plan_free(p);
    world_free(&w);
}

static void expect_error(world *w, int code, const char *needle)
{
    sts_plan *p = NULL;
    sts_diag d;
    CHECK_RC(build(w, NULL, &p, &d), code);
    CHECK(p == NULL);
    if (needle && !strstr(d.message, needle)) {
        CHECK(strstr(d.message, needle) != NULL);
        fprintf(stderr, "  message was: %s\n", d.message);
    }
    sts__plan_free(p);
    world_free(w);
}

static void test_errors(void)
{
    world w;
    memset(&w, 0, sizeof w);
    /* Gap: rows 4..6 of 10 missing. */
    tensor(&w, "gap", STS_F32, 2, (uint64_t[]){10, 3});
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){4, 3});
    block(&w, 0, 1, (uint64_t[]){6, 0}, (uint64_t[]){4, 3});
    expect_error(&w, STS_E_COVERAGE_GAP, "no block covers [4:6, 0:3]");
    /* Gap inside a 2-D grid (one of four blocks missing). */
    tensor(&w, "hole", STS_F32, 2, (uint64_t[]){4, 4});
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 2});
    block(&w, 0, 1, (uint64_t[]){0, 2}, (uint64_t[]){2, 2});
    block(&w, 0, 2, (uint64_t[]){2, 0}, (uint64_t[]){2, 2});
    expect_error(&w, STS_E_COVERAGE_GAP, "no block covers [2:4, 2:4]");
    /* A zero-size block that widens the global shape leaves a gap. */
    tensor(&w, "wide", STS_F32, 2, (uint64_t[]){2, 2});
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 2});
    block(&w, 0, 1, (uint64_t[]){2, 0}, (uint64_t[]){0, 5});
    expect_error(&w, STS_E_COVERAGE_GAP, "wide");
    /* Overlap: rows 3..4 in both. */
    tensor(&w, "over", STS_F32, 2, (uint64_t[]){8, 3});
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){4, 3});
    block(&w, 0, 1, (uint64_t[]){3, 0}, (uint64_t[]){5, 3});
    expect_error(&w, STS_E_COVERAGE_OVERLAP, "input file #1");
    /* Staggered overlap that only a full box test finds. */
    tensor(&w, "stagger", STS_F32, 2, (uint64_t[]){4, 4});
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 4});
    block(&w, 0, 1, (uint64_t[]){1, 1}, (uint64_t[]){2, 2});
    block(&w, 0, 2, (uint64_t[]){2, 0}, (uint64_t[]){2, 1});
    expect_error(&w, STS_E_COVERAGE_OVERLAP, "stagger");
    /* Same offsets, different shapes: not a duplicate, an overlap. */
    tensor(&w, "notdup", STS_F32, 1, (uint64_t[]){6});
    block(&w, 0, 0, (uint64_t[]){0}, (uint64_t[]){4});
    block(&w, 0, 1, (uint64_t[]){0}, (uint64_t[]){6});
    expect_error(&w, STS_E_COVERAGE_OVERLAP, "notdup");
    /* dtype mismatch names both files. */
    tensor(&w, "mixed", STS_F32, 1, (uint64_t[]){4});
    tensor(&w, "mixed", STS_F16, 1, (uint64_t[]){4});
    block(&w, 0, 0, (uint64_t[]){0}, (uint64_t[]){2});
    block(&w, 1, 3, (uint64_t[]){2}, (uint64_t[]){2});
    expect_error(&w, STS_E_DTYPE_MISMATCH, "F16 in input file #3");
    /* Rank mismatch. */
    tensor(&w, "rank", STS_F32, 1, (uint64_t[]){4});
    tensor(&w, "rank", STS_F32, 2, (uint64_t[]){4, 1});
    block(&w, 0, 0, (uint64_t[]){0}, (uint64_t[]){4});
    block(&w, 1, 1, (uint64_t[]){0, 0}, (uint64_t[]){4, 1});
    expect_error(&w, STS_E_SHARDING_INFO, "dimensions");
    /* Sub-byte blocks that split a byte. */
    tensor(&w, "f4", STS_F4, 2, (uint64_t[]){2, 6});
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 3});
    block(&w, 0, 1, (uint64_t[]){0, 3}, (uint64_t[]){2, 3});
    expect_error(&w, STS_E_UNSUPPORTED, "byte boundary");
    /* Offset + size overflowing 64 bits. */
    tensor(&w, "huge", STS_U8, 1, (uint64_t[]){1});
    block(&w, 0, 0, (uint64_t[]){UINT64_MAX}, (uint64_t[]){2});
    expect_error(&w, STS_E_VALIDATION_OVERFLOW, "overflows");
}

/* Block bi with the global shape its writer declared (a direct save). */
static void declare(world *w, size_t bi, const uint64_t *shape)
{
    materialise(w, bi);
    w->rec[bi].declared = shape;
}

/* Declared global shapes must agree, and the blocks must span them. */
static void test_declared(void)
{
    static const uint64_t g44[] = {4, 4}, g45[] = {4, 5}, g84[] = {8, 4};
    world w;
    sts_plan *p = NULL;
    sts_diag d;
    memset(&w, 0, sizeof w);
    /* Halves that span what they declare; one block declares nothing: a plain plan. */
    tensor(&w, "ok", STS_F32, 2, g44);
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 4});
    block(&w, 0, 1, (uint64_t[]){2, 0}, (uint64_t[]){2, 4});
    block(&w, 0, 2, (uint64_t[]){2, 0}, (uint64_t[]){2, 4}); /* an identical duplicate */
    declare(&w, 0, g44);
    declare(&w, 2, g44);
    CHECK_OK(build(&w, NULL, &p, &d));
    CHECK(p && p->ntensors == 1 && p->tensors[0].shape[0] == 4 && p->tensors[0].nblocks == 2);
    if (p)
        walk(&w, p, 2, 16);
    sts__plan_free(p);
    p = NULL;
    world_free(&w);
    /* Two declarations that differ: named with both inputs, first in input order first. */
    tensor(&w, "two", STS_F32, 2, g44);
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 4});
    block(&w, 0, 1, (uint64_t[]){2, 0}, (uint64_t[]){2, 4});
    declare(&w, 0, g44);
    declare(&w, 1, g45);
    expect_error(&w, STS_E_ARG,
                 "input file #0 gives the global shape [4, 4], input file #1 gives [4, 5]");
    /* The blocks cover only the first half of what they declare: the end is a gap. */
    tensor(&w, "short", STS_BF16, 2, g44);
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 4});
    block(&w, 0, 1, (uint64_t[]){2, 0}, (uint64_t[]){2, 4});
    declare(&w, 0, g84);
    declare(&w, 1, g84);
    expect_error(&w, STS_E_COVERAGE_GAP, "(global shape [8, 4]): the blocks cover only [4, 4]");
}

static void test_subbyte(void)
{
    world w;
    sts_plan *p = NULL;
    sts_diag d;
    memset(&w, 0, sizeof w);
    tensor(&w, "f4", STS_F4, 2, (uint64_t[]){3, 8});
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){3, 2});
    block(&w, 0, 1, (uint64_t[]){0, 2}, (uint64_t[]){3, 6});
    tensor(&w, "f6", STS_F6_E2M3, 2, (uint64_t[]){2, 8});
    block(&w, 1, 0, (uint64_t[]){0, 0}, (uint64_t[]){1, 8});
    block(&w, 1, 1, (uint64_t[]){1, 0}, (uint64_t[]){1, 8});
    CHECK_OK(build(&w, NULL, &p, &d));
    if (p) {
        CHECK(p->tensors[find(p, "f4")].nbytes == 12 && p->tensors[find(p, "f6")].nbytes == 12);
        walk_all(&w, p);
    }
    sts__plan_free(p);
    world_free(&w);
}

/* ---- files --------------------------------------------------------------- */

static void four_tensors(world *w)
{
    memset(w, 0, sizeof *w);
    tensor(w, "d", STS_F32, 1, (uint64_t[]){10});  /* 40 B */
    tensor(w, "b", STS_F32, 1, (uint64_t[]){100}); /* 400 B */
    tensor(w, "a", STS_F32, 1, (uint64_t[]){10});
    tensor(w, "c", STS_F32, 1, (uint64_t[]){10});
    tensor(w, "e", STS_U8, 1, (uint64_t[]){7});
    for (int t = 0; t < 5; t++)
        block(w, t, (uint32_t)t % 2, (uint64_t[]){0}, w->t[t].shape);
}

static void test_max_file_size(void)
{
    world w;
    sts_plan *p = NULL;
    sts_plan_opts o;
    sts_diag d;
    memset(&o, 0, sizeof o);
    four_tensors(&w);
    /* Canonical order a, b, c, d, e; limit 100: b alone first, then {a, c}, then {d, e}. */
    o.max_file_size = 100;
    CHECK_OK(build(&w, &o, &p, &d));
    if (p) {
        CHECK(p->nfiles == 3 && p->file_count == 3);
        CHECK(strcmp(p->files[0].name, "model-00001-of-00003.safetensors") == 0);
        CHECK(p->files[0].ntensors == 1 && strcmp(p->tensors[0].name, "b") == 0);
        CHECK(p->files[1].ntensors == 2 && strcmp(p->tensors[1].name, "a") == 0 &&
              strcmp(p->tensors[2].name, "c") == 0);
        CHECK(p->files[2].ntensors == 2 && strcmp(p->tensors[3].name, "d") == 0 &&
              strcmp(p->tensors[4].name, "e") == 0);
        CHECK(p->files[1].stream_off == 400 && p->files[2].stream_off == 480);
        CHECK(p->total_bytes == 527);
        walk_all(&w, p);
    }
    sts__plan_free(p);
    p = NULL;
    /* A limit larger than everything: one file. */
    o.max_file_size = 5000000000ULL;
    CHECK_OK(build(&w, &o, &p, &d));
    CHECK(p && p->nfiles == 1 && p->file_count == 1);
    sts__plan_free(p);
    world_free(&w);
}

static void test_mapping(void)
{
    world w;
    sts_plan *p = NULL;
    sts_plan_opts o;
    sts_diag d;
    sts_plan_map_entry map[5] = {{"e", 2}, {"a", 1}, {"d", 2}, {"c", 1}, {"b", 2}};
    sts_plan_map_entry bad[2] = {{"a", 1}, {"nope", 1}};
    memset(&o, 0, sizeof o);
    four_tensors(&w);
    o.map = map;
    o.nmap = 5;
    o.layout = STS_LAYOUT_PYTORCH;
    CHECK_OK(build(&w, &o, &p, &d));
    if (p) {
        /* PyTorch layout: mapping order inside each file, no padding. */
        CHECK(p->nfiles == 2 && p->file_count == 2);
        CHECK(strcmp(p->tensors[0].name, "a") == 0 && strcmp(p->tensors[1].name, "c") == 0);
        CHECK(strcmp(p->tensors[2].name, "e") == 0 && strcmp(p->tensors[3].name, "d") == 0 &&
              strcmp(p->tensors[4].name, "b") == 0);
        CHECK(strcmp(p->files[1].name, "model-00002-of-00002.safetensors") == 0);
        walk_all(&w, p);
    }
    sts__plan_free(p);
    p = NULL;
    /* Canonical layout with the same mapping: canonical order inside each file. */
    o.layout = STS_LAYOUT_CANONICAL;
    o.align = 4096;
    CHECK_OK(build(&w, &o, &p, &d));
    if (p) {
        CHECK(strcmp(p->tensors[2].name, "b") == 0 && strcmp(p->tensors[4].name, "e") == 0);
        CHECK(p->files[0].header_len == 4096 && p->tensors[0].out_off == 4096);
        walk_all(&w, p);
    }
    sts__plan_free(p);
    p = NULL;
    /* Tensors missing from the mapping: an error, or dropped on request. */
    o.nmap = 3;
    CHECK_RC(build(&w, &o, &p, &d), STS_E_MAPPING);
    CHECK(strstr(d.message, "2 tensor(s)") && strstr(d.message, "'c'"));
    o.drop_unmapped = 1;
    CHECK_OK(build(&w, &o, &p, &d));
    CHECK(p && p->ntensors == 3 && p->ndropped == 2 && p->total_bytes == 40 + 40 + 7);
    if (p)
        walk_all(&w, p);
    sts__plan_free(p);
    p = NULL;
    /* A mapping name no input has. */
    o.map = bad;
    o.nmap = 2;
    CHECK_RC(build(&w, &o, &p, &d), STS_E_MAPPING);
    CHECK(strstr(d.message, "'nope'") != NULL);
    world_free(&w);
}

/* No mapping and the PyTorch layout: first appearance over the input files. */
static void test_first_appearance(void)
{
    world w;
    sts_plan *p = NULL;
    sts_plan_opts o;
    sts_diag d;
    memset(&o, 0, sizeof o);
    four_tensors(&w);
    o.layout = STS_LAYOUT_PYTORCH;
    CHECK_OK(build(&w, &o, &p, &d));
    if (p) {
        CHECK(strcmp(p->tensors[0].name, "d") == 0 && strcmp(p->tensors[4].name, "e") == 0);
        CHECK(p->tensors[0].out_off == p->files[0].header_len);
    }
    sts__plan_free(p);
    world_free(&w);
}

/* ---- chunking -------------------------------------------------------------- */

static void test_rows(void)
{
    sts_plan_tensor t;
    uint64_t shape[3] = {1048576, 128, 0};
    uint32_t d;
    uint64_t rb, nr;
    memset(&t, 0, sizeof t);
    t.dtype = STS_BF16;
    t.ndim = 2;
    t.shape = shape;
    t.nbytes = 1048576ULL * 128 * 2;
    sts__plan_chunk_rows(&t, 128 << 20, &d, &rb, &nr);
    CHECK(d == 0 && rb == 256 && nr == 1048576);
    /* A row larger than the budget: split inside the last dimension. */
    sts__plan_chunk_rows(&t, 100, &d, &rb, &nr);
    CHECK(d == 1 && rb == 1 && nr == t.nbytes);
    shape[0] = 2;
    shape[1] = 100;
    shape[2] = 1000;
    t.ndim = 3;
    t.dtype = STS_F32;
    t.nbytes = 2 * 100 * 1000 * 4;
    sts__plan_chunk_rows(&t, 10000, &d, &rb, &nr);
    CHECK(d == 1 && rb == 4000 && nr == 200);
}

/* Many blocks: 1-D split in 1000 pieces and a 16 x 16 grid, walked with small budgets. */
static void test_many_blocks(void)
{
    world w;
    sts_plan *p = NULL;
    sts_diag d;
    memset(&w, 0, sizeof w);
    tensor(&w, "grid", STS_F32, 2, (uint64_t[]){16, 16});
    for (uint64_t a = 0; a < 8; a++)
        for (uint64_t b = 0; b < 7; b++)
            block(&w, 0, (uint32_t)(a % 8), (uint64_t[]){a * 2, b * 2},
                  (uint64_t[]){2, b == 6 ? 4 : 2});
    CHECK_OK(build(&w, NULL, &p, &d));
    if (p) {
        CHECK(p->tensors[0].nblocks == 56);
        walk_all(&w, p);
    }
    sts__plan_free(p);
    world_free(&w);
}

/*
 * Shares are cut by bytes + STS_PLAN_BLOCK_COST per block: one large tensor
 * in one block, then eight 8-byte tensors of seven blocks each.  By bytes
 * alone rank 0 of 2 would get half of the large tensor and rank 1 every
 * tiny block; weighted, rank 0 takes the large tensor and some of the tiny
 * ones, and both ranks hold blocks.
 */
static void test_weighted_shares(void)
{
    static const char *names[8] = {"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"};
    world w;
    sts_plan *p = NULL;
    sts_diag d;
    uint64_t lo0, hi0, lo1, hi1;
    memset(&w, 0, sizeof w);
    tensor(&w, "big", STS_F32, 2, (uint64_t[]){256, 64});
    block(&w, 0, 0, (uint64_t[]){0, 0}, (uint64_t[]){256, 64});
    for (int t = 1; t <= 8; t++) {
        tensor(&w, names[t - 1], STS_U8, 1, (uint64_t[]){8});
        block(&w, t, (uint32_t)(t % 4), (uint64_t[]){0}, (uint64_t[]){2});
        for (uint64_t e = 2; e < 8; e++)
            block(&w, t, (uint32_t)(t % 4), (uint64_t[]){e}, (uint64_t[]){1});
    }
    CHECK_OK(build(&w, NULL, &p, &d));
    if (p) {
        size_t blocks1 = 0;
        CHECK(p->ntensors == 9 && p->tensors[0].nbytes == 65536 && p->total_bytes == 65536 + 64);
        sts__plan_chunk_rank_range(p, 0, 2, &lo0, &hi0);
        sts__plan_chunk_rank_range(p, 1, 2, &lo1, &hi1);
        CHECK(lo0 == 0 && hi0 == lo1 && hi1 == p->total_bytes);
        CHECK(hi0 > 65536 && hi0 < 65536 + 64); /* the cut falls among the tiny tensors */
        for (size_t i = 1; i < p->ntensors; i++)
            if (p->tensors[i].stream_off + p->tensors[i].nbytes > lo1)
                blocks1 += p->tensors[i].cost_blocks;
        CHECK(blocks1 >= 14 && blocks1 <= 42); /* a fair part of the 56 tiny blocks */
        walk_all(&w, p);
    }
    sts__plan_free(p);
    world_free(&w);
}

int main(void)
{
    test_row_col_grid();
    test_replicas_scalars_empty();
    test_errors();
    test_declared();
    test_subbyte();
    test_max_file_size();
    test_mapping();
    test_first_appearance();
    test_rows();
    test_many_blocks();
    test_weighted_shares();
    if (test_failures)
        fprintf(stderr, "unit_plan: %d failure(s)\n", test_failures);
    return TEST_EXIT();
}
