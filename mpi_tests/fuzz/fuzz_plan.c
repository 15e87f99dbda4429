/*
 * fuzz_plan.c - libFuzzer harness for the consolidation planner (plan.c):
 * coverage validation, output layout, the split of the work over ranks, and
 * the runs that move every byte, all in memory.
 *
 * The input describes up to four tensors (dtype, rank, global shape), each
 * cut into blocks by a guillotine partition with one perturbation (drop,
 * duplicate, grow, shift, other dtype, other rank), spread over virtual
 * input files whose bytes are a function of each byte's global position;
 * plus plan options (mapping, drop_unmapped, size split, layout, align),
 * a rank count, a chunk budget and the global shapes blocks declare.  Checks:
 *  - sts__plan_build fails exactly when some tensor has a defect that the
 *    reference finds (dtype or rank disagreement, a gap or overlap by
 *    sts__coverage_check, a sub-byte block off the byte grid or a global
 *    tensor that is not whole bytes, an unmapped tensor, declared global
 *    shapes that differ from each other or from the spanned one), and then with one
 *    of those defects' codes;
 *  - a plan has the reference global shapes, and its output headers parse
 *    and agree with it;
 *  - every rank's chunks, filled from their pieces and scattered, write
 *    every data byte of every output file exactly once, and the outputs hold
 *    exactly the bytes of the global tensors.
 * Violations abort, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_plan: invariant failed: %s (line %d)\n", #c, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAXT     4
#define MAXB     48
#define MAXD     3
#define MAXDEPTH 6 /* deepest guillotine split */
#define NFILES   5

typedef struct src {
    const uint8_t *p;
    size_t n;
} src;

static unsigned next_byte(src *s)
{
    if (s->n == 0)
        return 0;
    s->n--;
    return *s->p++;
}

static const char *const names[MAXT] = {"model.embed.weight", "layers.0.w", "layers.0.b", "step"};
static const sts_dtype dtypes[6] = {STS_U8, STS_BF16, STS_F32, STS_F64, STS_F4, STS_F6_E2M3};

typedef struct tens {
    sts_dtype dt;
    uint32_t ndim;
    uint64_t global[MAXD];
    uint64_t unit; /* elements per whole byte group in the last dimension (sub-byte dtypes) */
} tens;

typedef struct world {
    size_t nt, nb;
    tens t[MAXT];
    int tid[MAXB]; /* tensor of each block */
    uint64_t off[MAXB][MAXD], shp[MAXB][MAXD];
    uint64_t decl[MAXB][MAXD]; /* declared global shapes (sts_plan_block.declared) */
    sts_plan_block b[MAXB];
} world;

/* ------------------------------------------------------------------------ */
/* Input                                                                     */
/* ------------------------------------------------------------------------ */

static void add_block(world *w, int t, const uint64_t *lo, const uint64_t *hi)
{
    size_t i = w->nb++;
    if (i >= MAXB)
        abort(); /* the room check in partition() is wrong */
    w->tid[i] = t;
    for (uint32_t d = 0; d < w->t[t].ndim; d++) {
        w->off[i][d] = lo[d];
        w->shp[i][d] = hi[d] - lo[d];
    }
}

/* Guillotine cuts of [lo, hi); sub-byte last dimensions are cut on whole bytes. */
static void partition(src *s, world *w, int t, uint64_t *lo, uint64_t *hi, int depth)
{
    const tens *T = &w->t[t];
    uint32_t d = T->ndim ? next_byte(s) % T->ndim : 0;
    uint64_t step = (T->ndim && d == T->ndim - 1) ? T->unit : 1, span, cut, saved;
    span = T->ndim ? (hi[d] - lo[d]) / step : 0;
    /* Room stays for every later tensor (one block and one copy each) and for
     * this one's open right halves: once the room check fails, each of the
     * up to MAXDEPTH + 1 pending halves still adds a block. */
    if (T->ndim == 0 || span < 2 || depth > MAXDEPTH ||
        w->nb + 2 > MAXB - 2 * MAXT - (MAXDEPTH + 2) || next_byte(s) % 3 == 0) {
        add_block(w, t, lo, hi);
        return;
    }
    cut = lo[d] + step * (1 + next_byte(s) % (span - 1));
    saved = hi[d];
    hi[d] = cut;
    partition(s, w, t, lo, hi, depth + 1);
    hi[d] = saved;
    saved = lo[d];
    lo[d] = cut;
    partition(s, w, t, lo, hi, depth + 1);
    lo[d] = saved;
}

static void perturb(src *s, world *w, size_t first)
{
    size_t k = first + next_byte(s) % (w->nb - first);
    int t = w->tid[k];
    uint32_t nd = w->t[t].ndim, d = nd ? next_byte(s) % nd : 0;
    switch (next_byte(s) % 10) {
    case 1: /* drop block k */
        w->nb--;
        w->tid[k] = w->tid[w->nb];
        memcpy(w->off[k], w->off[w->nb], sizeof w->off[k]);
        memcpy(w->shp[k], w->shp[w->nb], sizeof w->shp[k]);
        break;
    case 2: /* an identical copy: still exact */
        w->tid[w->nb] = t;
        memcpy(w->off[w->nb], w->off[k], sizeof w->off[k]);
        memcpy(w->shp[w->nb], w->shp[k], sizeof w->shp[k]);
        w->nb++;
        break;
    case 3: /* grow */
        if (nd)
            w->shp[k][d] += (d == nd - 1) ? w->t[t].unit : 1;
        break;
    case 4: /* shift back by one element (off the byte grid for sub-byte dtypes) */
        if (nd && w->off[k][d] > 0)
            w->off[k][d]--;
        break;
    case 5: /* another dtype for a block other than the tensor's first */
        if (k > first)
            w->b[k].dtype = dtypes[next_byte(s) % 4];
        return;
    default:
        break;
    }
}

/* Decodes the world; returns the input file layout in the blocks' data_off. */
static void decode(src *s, world *w)
{
    memset(w, 0, sizeof *w);
    w->nt = 1 + next_byte(s) % MAXT;
    for (size_t t = 0; t < w->nt; t++) {
        tens *T = &w->t[t];
        uint64_t lo[MAXD] = {0}, hi[MAXD];
        size_t first = w->nb;
        T->dt = dtypes[next_byte(s) % 6];
        T->ndim = next_byte(s) % (MAXD + 1);
        T->unit = T->dt == STS_F4 ? 2 : T->dt == STS_F6_E2M3 ? 4 : 1;
        if (T->ndim == 0 && T->unit > 1)
            T->dt = STS_U8, T->unit = 1; /* a sub-byte scalar is not a whole byte */
        for (uint32_t d = 0; d < T->ndim; d++) {
            hi[d] = 1 + next_byte(s) % 5;
            if (d == T->ndim - 1)
                hi[d] *= T->unit;
        }
        partition(s, w, (int)t, lo, hi, 0);
        for (size_t i = first; i < w->nb; i++)
            w->b[i].dtype = T->dt;
        perturb(s, w, first);
    }
    for (size_t i = 0; i < w->nb; i++) {
        const tens *T = &w->t[w->tid[i]];
        w->b[i].name = names[w->tid[i]];
        w->b[i].name_len = (uint32_t)strlen(names[w->tid[i]]);
        w->b[i].ndim = T->ndim;
        w->b[i].offsets = w->off[i];
        w->b[i].shape = w->shp[i];
        if (w->b[i].dtype == 0 && T->dt != 0)
            w->b[i].dtype = T->dt;
    }
    /* Occasionally the last block, when it is not its tensor's first, with another rank. */
    if (w->nb > 1 && w->tid[w->nb - 2] == w->tid[w->nb - 1] && next_byte(s) % 16 == 0)
        w->b[w->nb - 1].ndim = w->b[w->nb - 1].ndim ? w->b[w->nb - 1].ndim - 1 : 1;
}

/* ------------------------------------------------------------------------ */
/* Reference                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct expect {
    int ok_codes[5 * MAXT]; /* reference_tensor() allows at most five codes a tensor */
    size_t ncodes;
    uint64_t global[MAXT][MAXD];
    uint64_t nbytes[MAXT];
    int present[MAXT];
} expect;

static void allow(expect *e, int code)
{
    for (size_t i = 0; i < e->ncodes; i++)
        if (e->ok_codes[i] == code)
            return;
    if (e->ncodes == sizeof e->ok_codes / sizeof e->ok_codes[0])
        abort(); /* the bound on ok_codes is wrong */
    e->ok_codes[e->ncodes++] = code;
}

static uint64_t block_bytes(const sts_plan_block *b)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < b->ndim; d++)
        n *= b->shape[d];
    return n * sts_dtype_bits(b->dtype) / 8;
}

/* The defects of tensor t, as codes the planner may report. */
static void reference_tensor(const world *w, size_t t, expect *e)
{
    const tens *T = &w->t[t];
    uint64_t offs[MAXB * MAXD], shps[MAXB * MAXD], numel = 1;
    size_t n = 0;
    int dtype_bad = 0, rank_bad = 0, sub_bad = 0;
    unsigned bits = sts_dtype_bits(T->dt);
    for (size_t i = 0; i < w->nb; i++) {
        const sts_plan_block *b = &w->b[i];
        if (w->tid[i] != (int)t)
            continue;
        e->present[t] = 1;
        dtype_bad |= b->dtype != T->dt;
        rank_bad |= b->ndim != T->ndim;
        if (b->ndim != T->ndim)
            continue;
        memcpy(offs + n * T->ndim, b->offsets, T->ndim * 8);
        memcpy(shps + n * T->ndim, b->shape, T->ndim * 8);
        if (T->ndim && bits % 8 &&
            ((b->offsets[T->ndim - 1] * bits) % 8 || (b->shape[T->ndim - 1] * bits) % 8))
            sub_bad = 1;
        n++;
    }
    if (!e->present[t])
        return;
    if (dtype_bad)
        allow(e, STS_E_DTYPE_MISMATCH);
    if (rank_bad)
        allow(e, STS_E_SHARDING_INFO);
    if (rank_bad)
        return;
    {
        int rc = sts__coverage_check(T->ndim, n, offs, shps, 1, NULL, NULL, e->global[t]);
        if (rc != STS_OK)
            allow(e, rc);
    }
    for (uint32_t d = 0; d < T->ndim; d++)
        numel *= e->global[t][d];
    if (T->ndim && bits % 8 && (e->global[t][T->ndim - 1] * bits) % 8)
        sub_bad = 1;
    if (sub_bad)
        allow(e, STS_E_UNSUPPORTED);
    /* The global tensor itself is not a whole number of bytes. */
    if ((numel * bits) % 8)
        allow(e, STS_E_MISALIGNED_SLICE);
    e->nbytes[t] = numel * bits / 8;
}

/*
 * Global shapes the blocks declare, as a direct save's do; read last, so
 * that the bytes before keep their meaning for the corpus.  Per block: none,
 * the shape the blocks span, or that shape one larger in one dimension.
 * Two different declarations allow STS_E_ARG; agreeing ones that differ
 * from the spanned shape, STS_E_COVERAGE_GAP.
 */
static void declare(src *s, world *w, expect *e)
{
    if (next_byte(s) % 4 == 0)
        return;
    for (size_t i = 0; i < w->nb; i++) {
        const tens *T = &w->t[w->tid[i]];
        unsigned c = next_byte(s) % 4;
        if (c == 0 || w->b[i].ndim != T->ndim)
            continue;
        memcpy(w->decl[i], e->global[w->tid[i]], sizeof w->decl[i]);
        if (c == 3 && T->ndim)
            w->decl[i][next_byte(s) % T->ndim]++;
        w->b[i].declared = w->decl[i];
    }
    for (size_t t = 0; t < w->nt; t++) {
        const uint64_t *first = NULL;
        size_t len = 8 * (size_t)w->t[t].ndim;
        int differ = 0;
        for (size_t i = 0; i < w->nb; i++) {
            if (w->tid[i] != (int)t || !w->b[i].declared)
                continue;
            if (!first)
                first = w->b[i].declared;
            else
                differ |= memcmp(first, w->b[i].declared, len) != 0;
        }
        if (differ)
            allow(e, STS_E_ARG);
        else if (first && memcmp(first, e->global[t], len) != 0)
            allow(e, STS_E_COVERAGE_GAP);
    }
}

/* ------------------------------------------------------------------------ */
/* Virtual files                                                             */
/* ------------------------------------------------------------------------ */

static unsigned char value(size_t t, uint64_t i)
{
    uint64_t x = (t + 1) * 0x9e3779b97f4a7c15ULL + i * 0xc2b2ae3d27d4eb4fULL;
    x ^= x >> 31;
    return (unsigned char)(x * 0xbf58476d1ce4e5b9ULL >> 56);
}

/* Byte-view coordinates: the last dimension counts bytes (a scalar is a vector of them). */
static uint64_t global_byte(const world *w, const expect *e, size_t i, uint64_t lb)
{
    const tens *T = &w->t[w->tid[i]];
    const sts_plan_block *b = &w->b[i];
    unsigned bits = sts_dtype_bits(T->dt);
    uint64_t lsh[MAXD + 1], goff[MAXD + 1], gsh[MAXD + 1], idx[MAXD + 1], g = 0;
    uint32_t nd = T->ndim ? T->ndim : 1;
    for (uint32_t d = 0; d < nd; d++) {
        int last = d == nd - 1;
        lsh[d] = T->ndim ? b->shape[d] : 1;
        goff[d] = T->ndim ? b->offsets[d] : 0;
        gsh[d] = T->ndim ? e->global[w->tid[i]][d] : 1;
        if (last) {
            lsh[d] = lsh[d] * bits / 8;
            goff[d] = goff[d] * bits / 8;
            gsh[d] = gsh[d] * bits / 8;
        }
    }
    for (uint32_t d = nd; d-- > 0;) {
        idx[d] = lb % lsh[d];
        lb /= lsh[d];
    }
    for (uint32_t d = 0; d < nd; d++)
        g = g * gsh[d] + goff[d] + idx[d];
    return g;
}

/* The input files: each block's bytes at its data_off, packed per file. */
static unsigned char *make_inputs(world *w, const expect *e, src *s, uint64_t *len)
{
    uint64_t end[NFILES] = {0}, base[NFILES], total = 0;
    unsigned char *buf;
    for (size_t i = 0; i < w->nb; i++) {
        w->b[i].file = next_byte(s) % NFILES;
        w->b[i].data_off = 24 + end[w->b[i].file];
        end[w->b[i].file] += block_bytes(&w->b[i]);
    }
    /* All files in one buffer: file f starts at base[f]; data_off is absolute within a file. */
    for (int f = 0; f < NFILES; f++) {
        base[f] = total;
        total += 24 + end[f];
    }
    buf = calloc(1, total + 1);
    REQUIRE(buf);
    for (size_t i = 0; i < w->nb; i++) {
        uint64_t nb = block_bytes(&w->b[i]);
        for (uint64_t lb = 0; lb < nb; lb++)
            buf[base[w->b[i].file] + w->b[i].data_off + lb] =
                value((size_t)w->tid[i], global_byte(w, e, i, lb));
        /* data_off becomes the absolute position in the shared buffer for reading. */
    }
    for (size_t i = 0; i < w->nb; i++)
        w->b[i].data_off += base[w->b[i].file];
    *len = total;
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Running the plan                                                          */
/* ------------------------------------------------------------------------ */

static long tensor_of(const world *w, const char *name)
{
    for (size_t t = 0; t < w->nt; t++)
        if (strcmp(names[t], name) == 0)
            return (long)t;
    return -1;
}

static void check_plan(const world *w, const expect *e, const sts_plan *p)
{
    uint64_t stream = 0;
    for (size_t f = 0; f < p->nfiles; f++) {
        const sts_plan_file *F = &p->files[f];
        sts_header *h = NULL;
        REQUIRE(F->stream_off == stream);
        stream += F->data_size;
        REQUIRE(sts_header_parse((const char *)F->header + 8, F->header_len - 8, F->data_size, &h,
                                 NULL) == STS_OK);
        REQUIRE(sts_header_count(h) == F->ntensors);
        for (size_t i = 0; i < F->ntensors; i++) {
            const sts_plan_tensor *T = &p->tensors[F->first_tensor + i];
            long at = sts_header_find(h, T->name, T->name_len);
            const sts_tensor_info *ti = sts_header_tensor(h, (size_t)(at < 0 ? 0 : at));
            long t = tensor_of(w, T->name);
            REQUIRE(at >= 0 && t >= 0 && T->file == f);
            REQUIRE(ti->begin == T->out_off - F->header_len && ti->dtype == T->dtype);
            REQUIRE(T->ndim == w->t[t].ndim && T->nbytes == e->nbytes[t]);
            REQUIRE(memcmp(T->shape, e->global[t], T->ndim * 8) == 0);
            REQUIRE(ti->ndim == T->ndim && memcmp(ti->shape, T->shape, T->ndim * 8) == 0);
        }
        sts_header_free(h);
    }
    REQUIRE(stream == p->total_bytes);
}

/* Every rank's chunks, filled from their pieces, into the output files. */
static void run_plan(const world *w, const expect *e, const sts_plan *p, const unsigned char *in,
                     int nranks, uint64_t budget)
{
    uint64_t *fbase = calloc(p->nfiles + 1, sizeof *fbase), total = 0;
    unsigned char *out, *count, *chunk = malloc(budget + 1), *run = malloc(budget + 1);
    sts_plan_pieces ps;
    memset(&ps, 0, sizeof ps);
    REQUIRE(fbase && chunk && run);
    for (size_t f = 0; f < p->nfiles; f++) {
        fbase[f] = total;
        total += p->files[f].header_len + p->files[f].data_size;
    }
    out = calloc(1, total + 1);
    count = calloc(1, total + 1);
    REQUIRE(out && count);
    for (int r = 0; r < nranks; r++) {
        sts_plan_iter it;
        sts_plan_chunk c;
        sts__plan_chunk_iter_init(&it, p, r, nranks, budget);
        while (sts__plan_chunk_iter_next(&it, &c)) {
            const sts_plan_file *F = &p->files[c.file];
            REQUIRE(c.file < p->nfiles && c.len > 0 && c.len <= budget);
            REQUIRE(c.out_off >= F->header_len &&
                    c.out_off + c.len <= F->header_len + F->data_size);
            memset(chunk, 0xa5, c.len);
            REQUIRE(sts__plan_chunk_pieces(p, &c, &ps, NULL) == STS_OK);
            for (size_t k = 0; k < ps.n; k++) {
                const sts_plan_piece *pc = &ps.v[k];
                REQUIRE(pc->len > 0 && pc->len <= c.len && pc->pos < c.len);
                memcpy(run, in + pc->in_off, pc->len);
                if (pc->contiguous) {
                    REQUIRE(pc->pos + pc->len <= c.len);
                    memcpy(chunk + pc->pos, run, pc->len);
                } else {
                    sts__plan_chunk_scatter(p, &c, pc, run, chunk);
                }
            }
            memcpy(out + fbase[c.file] + c.out_off, chunk, c.len);
            for (uint64_t i = 0; i < c.len; i++)
                count[fbase[c.file] + c.out_off + i]++;
        }
    }
    /* Every data byte exactly once, and the right one. */
    for (size_t f = 0; f < p->nfiles; f++) {
        const sts_plan_file *F = &p->files[f];
        for (uint64_t i = 0; i < F->data_size; i++)
            REQUIRE(count[fbase[f] + F->header_len + i] == 1);
        for (size_t k = 0; k < F->ntensors; k++) {
            const sts_plan_tensor *T = &p->tensors[F->first_tensor + k];
            size_t t = (size_t)tensor_of(w, T->name);
            for (uint64_t i = 0; i < T->nbytes; i++)
                REQUIRE(out[fbase[f] + T->out_off + i] == value(t, i));
        }
    }
    (void)e;
    sts__plan_chunk_pieces_free(&ps);
    free(fbase);
    free(out);
    free(count);
    free(chunk);
    free(run);
}

/* What the planner was given, for the report of a failed invariant. */
static void dump(const world *w, const expect *e, int rc, const sts_diag *d)
{
    fprintf(stderr, "planner: %s (%s); reference allows:", sts_errname(rc), d->message);
    for (size_t k = 0; k < e->ncodes; k++)
        fprintf(stderr, " %s", sts_errname(e->ok_codes[k]));
    fprintf(stderr, "\n");
    for (size_t t = 0; t < w->nt; t++)
        fprintf(stderr, "  tensor %s: %s, %u dims\n", names[t], sts_dtype_name(w->t[t].dt),
                w->t[t].ndim);
    for (size_t i = 0; i < w->nb; i++) {
        const sts_plan_block *b = &w->b[i];
        fprintf(stderr, "  %s %s file %u:", b->name, sts_dtype_name(b->dtype), b->file);
        for (uint32_t k = 0; k < b->ndim; k++)
            fprintf(stderr, " %llu+%llu", (unsigned long long)b->offsets[k],
                    (unsigned long long)b->shape[k]);
        fprintf(stderr, "\n");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static world w;
    src s = {data, size};
    expect e;
    sts_plan_opts o;
    sts_plan_map_entry map[MAXT];
    sts_plan *p = NULL;
    unsigned char *in;
    uint64_t inlen, budget;
    unsigned flags;
    int rc, nranks, unmapped = 0;
    sts_diag diag;

    decode(&s, &w);
    memset(&e, 0, sizeof e);
    for (size_t t = 0; t < w.nt; t++)
        reference_tensor(&w, t, &e);
    flags = next_byte(&s);
    memset(&o, 0, sizeof o);
    o.layout = (flags & 1) ? STS_LAYOUT_PYTORCH : STS_LAYOUT_CANONICAL;
    o.align = (flags & 2) && !(flags & 1) ? 64 : 0;
    o.max_file_size = (flags & 4) ? 8 + next_byte(&s) * 4 : 0;
    if (flags & 8) {
        /* A mapping over the tensors that exist, perhaps leaving one out. */
        size_t skip = (flags & 16) ? next_byte(&s) % w.nt : SIZE_MAX;
        for (size_t t = 0; t < w.nt; t++) {
            if (t == skip && e.present[t]) {
                unmapped = 1;
                continue;
            }
            if (e.present[t])
                map[o.nmap++] = (sts_plan_map_entry){names[t], 1 + next_byte(&s) % 3};
        }
        o.map = map;
        o.drop_unmapped = (flags & 32) != 0;
        if (unmapped && !o.drop_unmapped)
            allow(&e, STS_E_MAPPING);
    }
    nranks = 1 + (int)(next_byte(&s) % 5);
    budget = 8 + next_byte(&s) % 120;
    in = make_inputs(&w, &e, &s, &inlen);
    declare(&s, &w, &e);

    rc = sts__plan_build(w.b, w.nb, &o, &p, &diag);
    if (e.ncodes > 0) {
        int known = 0;
        for (size_t k = 0; k < e.ncodes; k++)
            known |= rc == e.ok_codes[k];
        if (!known)
            dump(&w, &e, rc, &diag);
        REQUIRE(known);
        REQUIRE(p == NULL);
    } else {
        if (rc != STS_OK)
            dump(&w, &e, rc, &diag);
        REQUIRE(rc == STS_OK && p != NULL);
        check_plan(&w, &e, p);
        run_plan(&w, &e, p, in, nranks, budget);
    }
    sts__plan_free(p);
    free(in);
    return 0;
}
