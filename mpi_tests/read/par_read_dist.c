/*
 * par_read_dist.c - distributed reader metadata ("stshard_metadata":
 * "distributed") against the replicated default.
 *
 * In distributed mode a tensor's block list lives on one owner rank and
 * sts_reader_read fetches what its requests need, so everything a caller can
 * see must be what replicated mode gives:
 *  - the tensor tables and file lists of rank-file, indexed and single-file
 *    checkpoints (F4, BOOL, a scalar, a zero-size tensor, a replicated
 *    tensor stored three times, row, column and grid splits, and enough
 *    small tensors that every rank owns some);
 *  - the bytes of whole tensors, column slices (strided in row-split blocks:
 *    two-phase reads) and random boxes, each rank its own list, some ranks
 *    none, with the exchange on and off;
 *  - the local calls refuse (STS_E_UNSUPPORTED) in distributed mode only, and
 *    an unknown mode fails open with STS_E_ARG;
 *  - open errors: broken rank-file checkpoints of 40 tensors (gaps, overlaps,
 *    dtype and rank conflicts, identical boxes with two dtypes; names in an
 *    order unlike the files'), bad headers and bad indexes give the same
 *    code, and the same message once a leading "rank N: " is stripped.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "par_read_util.h"
#include "test_util.h"

#define NF    4  /* rank files of the good checkpoint */
#define NPAD  24 /* small tensors spread over the files */
#define NMAIN 11
#define NT    (NMAIN + NPAD)
#define MAXQ  48

static const tr_tensor MAIN[NMAIN] = {
    {"a.rows", STS_F32, 2, {40, 24}},    {"b.cols", STS_BF16, 2, {30, 32}},
    {"c.cube", STS_I32, 3, {12, 10, 8}}, {"d.rep", STS_F16, 1, {50}},
    {"e.step", STS_I64, 0, {0}},         {"f.empty", STS_F32, 2, {0, 4}},
    {"g.fp4", STS_F4, 2, {8, 16}},       {"h.mask", STS_BOOL, 2, {9, 11}},
    {"i.grid", STS_U8, 2, {33, 50}},     {"j.f64", STS_F64, 2, {20, 6}},
    {"k.fp4cols", STS_F4, 2, {6, 16}},
};
static tr_tensor T[NT];
static char pad_names[NPAD][16];
static char g_dir[128];

static const char *sub(const char *name)
{
    return tr_path(g_dir, name);
}

static void make_tensors(void)
{
    static const sts_dtype dts[] = {STS_F32, STS_U8, STS_BF16};
    memcpy(T, MAIN, sizeof MAIN);
    for (int k = 0; k < NPAD; k++) {
        tr_tensor *t = &T[NMAIN + k];
        /* Names interleave with the main ones ("b.", "c.", ... "p.") in name order. */
        snprintf(pad_names[k], sizeof pad_names[k], "%c.pad%02d", 'b' + (k * 5) % 15, k);
        t->name = pad_names[k];
        t->dtype = dts[k % 3];
        t->ndim = 2;
        t->shape[0] = 3 + (uint64_t)(k % 5);
        t->shape[1] = 4 + 2 * (uint64_t)(k % 3);
    }
}

static tr_block whole(const tr_tensor *t)
{
    tr_block b;
    memset(&b, 0, sizeof b);
    b.t = t;
    memcpy(b.shape, t->shape, sizeof b.shape);
    return b;
}

/* Part i of n along dimension d, aligned to u elements. */
static tr_block part(const tr_tensor *t, uint32_t d, uint64_t i, uint64_t n, uint64_t u)
{
    tr_block b = whole(t);
    uint64_t len = t->shape[d] / u, base = len / n, rem = len % n;
    b.shape[d] = (base + (i < rem)) * u;
    b.off[d] = (i * base + (i < rem ? i : rem)) * u;
    return b;
}

/* File f's blocks of the good rank-file checkpoint. */
static size_t file_blocks(int f, tr_block *out)
{
    size_t n = 0;
    uint64_t uf = (uint64_t)f;
    out[n++] = part(&T[0], 0, uf, NF, 1); /* a.rows: rows */
    out[n++] = part(&T[1], 1, uf, NF, 1); /* b.cols: columns */
    if (f > 0)
        out[n++] = part(&T[2], 0, uf - 1, 3, 1); /* c.cube: rows in files 1..3 */
    if (f < 3)
        out[n++] = whole(&T[3]); /* d.rep: stored three times */
    if (f >= 2)
        out[n++] = whole(&T[4]); /* e.step: a scalar stored twice */
    if (f == 1)
        out[n++] = whole(&T[5]);
    out[n++] = part(&T[6], 0, uf, NF, 1); /* g.fp4: rows */
    if (f < 3)
        out[n++] = part(&T[7], 0, uf, 3, 1);
    {
        tr_block b = part(&T[8], 0, uf / 2, 2, 1), c = part(&T[8], 1, uf % 2, 2, 1);
        b.off[1] = c.off[1];
        b.shape[1] = c.shape[1];
        out[n++] = b; /* i.grid: a 2 x 2 grid */
    }
    if (f >= 2)
        out[n++] = part(&T[9], 0, uf - 2, 2, 1);
    out[n++] = part(&T[10], 1, uf, NF, 2); /* k.fp4cols: column pairs */
    for (int k = 0; k < NPAD; k++) {
        const tr_tensor *t = &T[NMAIN + k];
        if (k % 3 == 0 && f == k % NF)
            out[n++] = whole(t);
        else if (k % 3 != 0 && (f == k % NF || f == (k + 1) % NF))
            out[n++] = part(t, 0, f == k % NF ? 0 : 1, 2, 1);
    }
    return n;
}

static int write_good(void)
{
    tr_block b[NT], a[NT], c[NT];
    char p[320];
    size_t na = 0, nc = 0;
    FILE *fp;
    mkdir(sub("sharded"), 0777);
    mkdir(sub("indexed"), 0777);
    mkdir(sub("single"), 0777);
    for (int f = 0; f < NF; f++) {
        size_t n = file_blocks(f, b);
        snprintf(p, sizeof p, "%s/shard-%05d-model-00001-of-00001.safetensors", sub("sharded"),
                 f + 1);
        if (tr_write_file(p, b, n, 1) != 0)
            return -1;
    }
    for (int i = 0; i < NT; i++) {
        if (i % 2)
            a[na++] = whole(&T[i]);
        else
            c[nc++] = whole(&T[i]);
    }
    if (tr_write_file(sub("indexed/model-00001-of-00002.safetensors"), a, na, 0) != 0 ||
        tr_write_file(sub("indexed/model-00002-of-00002.safetensors"), c, nc, 0) != 0)
        return -1;
    for (int i = 0; i < NT; i++)
        b[i] = whole(&T[i]);
    if (tr_write_file(sub("single/model.safetensors"), b, NT, 0) != 0)
        return -1;
    fp = fopen(sub("indexed/model.safetensors.index.json"), "w");
    if (!fp)
        return -1;
    fprintf(fp, "{\"metadata\": {}, \"weight_map\": {\n");
    for (int i = 0; i < NT; i++)
        fprintf(fp, "  \"%s\": \"model-0000%d-of-00002.safetensors\"%s\n", T[i].name, i % 2 ? 1 : 2,
                i + 1 < NT ? "," : "");
    fprintf(fp, "}}\n");
    return fclose(fp) == 0 ? 0 : -1;
}

/* ---- opening ------------------------------------------------------------ */

/* mode NULL: no info at all (the default); exchange NULL: the default. */
static int open_mode(MPI_Comm comm, const char *path, const char *mode, const char *exchange,
                     sts_reader **r, sts_diag *d)
{
    MPI_Info info = MPI_INFO_NULL;
    int rc;
    if (mode || exchange) {
        MPI_Info_create(&info);
        if (mode)
            MPI_Info_set(info, "stshard_metadata", mode);
        if (exchange)
            MPI_Info_set(info, "stshard_exchange", exchange);
    }
    rc = sts_reader_open(comm, path, info, r, d);
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
    return rc;
}

/*
 * Every rank must agree on whether the open worked: a reader open on some
 * ranks only would hang the next collective, so that ends the test at once.
 */
static void agree_open(MPI_Comm comm, const sts_reader *r, const char *what)
{
    int mine = r != NULL, lo = 0, hi = 0;
    MPI_Allreduce(&mine, &lo, 1, MPI_INT, MPI_MIN, comm);
    MPI_Allreduce(&mine, &hi, 1, MPI_INT, MPI_MAX, comm);
    if (lo != hi) {
        fprintf(stderr, "%s: the open worked on some ranks only (this one: %d)\n", what, mine);
        MPI_Abort(comm, 1);
    }
}

/* ---- tables ------------------------------------------------------------- */

static void check_expected_table(const sts_reader *r, sts_ckpt_kind kind, size_t nfiles)
{
    CHECK(sts_reader_kind(r) == kind);
    CHECK(sts_reader_count(r) == NT);
    CHECK(sts_reader_file_count(r) == nfiles);
    for (int i = 0; i < NT; i++) {
        long k = sts_reader_find(r, T[i].name);
        const sts_global_tensor *g = k >= 0 ? sts_reader_tensor(r, (size_t)k) : NULL;
        CHECK(g != NULL);
        if (!g)
            continue;
        CHECK(g->dtype == T[i].dtype && g->ndim == T[i].ndim);
        CHECK(g->nbytes == tr_box_bytes(&T[i], T[i].shape));
        for (uint32_t d = 0; d < g->ndim && d < TR_MAX_DIMS; d++)
            CHECK(g->shape[d] == T[i].shape[d]);
    }
}

/* Everything the table says, compared field by field. */
static void compare_tables(const sts_reader *a, const sts_reader *b, const char *what)
{
    int bad = 0;
    size_t n = sts_reader_count(a), nf = sts_reader_file_count(a);
    bad |= sts_reader_kind(a) != sts_reader_kind(b);
    bad |= n != sts_reader_count(b) || nf != sts_reader_file_count(b);
    for (size_t i = 0; !bad && i < nf; i++) {
        const char *pa = sts_reader_file_path(a, i), *pb = sts_reader_file_path(b, i);
        bad |= !pa || !pb || strcmp(pa, pb) != 0;
    }
    for (size_t i = 0; !bad && i < n; i++) {
        const sts_global_tensor *x = sts_reader_tensor(a, i), *y = sts_reader_tensor(b, i);
        bad |= !x || !y;
        if (bad)
            break;
        bad |= strcmp(x->name, y->name) != 0 || x->dtype != y->dtype || x->ndim != y->ndim;
        bad |= x->nbytes != y->nbytes || x->nblocks != y->nblocks;
        for (uint32_t d = 0; !bad && d < x->ndim; d++)
            bad |= x->shape[d] != y->shape[d];
        bad |= sts_reader_find(b, x->name) != (long)i;
        if (bad)
            fprintf(stderr, "%s: tensor %zu ('%s') differs\n", what, i, x->name);
    }
    bad |= sts_reader_tensor(b, n) != NULL;
    if (bad)
        fprintf(stderr, "%s: the tables differ\n", what);
    CHECK(!bad);
}

/* ---- requests ----------------------------------------------------------- */

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

typedef struct qlist {
    const tr_tensor *t[MAXQ];
    uint64_t off[MAXQ][TR_MAX_DIMS], shape[MAXQ][TR_MAX_DIMS];
    size_t n;
} qlist;

static void add_q(qlist *q, const tr_tensor *t, const uint64_t *off, const uint64_t *shape)
{
    if (q->n == MAXQ)
        return;
    q->t[q->n] = t;
    memcpy(q->off[q->n], off, sizeof q->off[0]);
    memcpy(q->shape[q->n], shape, sizeof q->shape[0]);
    q->n++;
}

/* Columns [lo, hi) of the last dimension (in whole-byte groups), all rows. */
static void col_slice(const tr_tensor *t, uint64_t lo, uint64_t hi, uint64_t *off, uint64_t *shp)
{
    uint64_t u = tr_group(t->dtype);
    memset(off, 0, TR_MAX_DIMS * sizeof *off);
    memcpy(shp, t->shape, TR_MAX_DIMS * sizeof *shp);
    if (t->ndim == 0)
        return;
    off[t->ndim - 1] = lo * u;
    shp[t->ndim - 1] = (hi - lo) * u;
}

static void random_box(const tr_tensor *t, uint64_t *seed, uint64_t *off, uint64_t *shape)
{
    uint64_t u = tr_group(t->dtype);
    memset(off, 0, TR_MAX_DIMS * sizeof *off);
    memset(shape, 0, TR_MAX_DIMS * sizeof *shape);
    for (uint32_t d = 0; d < t->ndim; d++) {
        uint64_t g = d + 1 == t->ndim ? u : 1, len = t->shape[d] / g;
        uint64_t a = len ? lcg(seed) % len : 0, b = len ? lcg(seed) % (len + 1) : 0;
        if (b < a) {
            uint64_t x = a;
            a = b;
            b = x;
        }
        off[d] = g * a;
        shape[d] = g * (b - a + (b == a && a < len));
    }
}

/*
 * Round 0: every tensor whole.  Round 1: rank k of P takes column part k of
 * every tensor (together whole rows: two-phase reads of the row-split ones).
 * Later rounds: a per-rank random mix of whole tensors, column slices and
 * boxes; each rank sits out one round in three.
 */
static void make_round(qlist *q, int round, int me, int P)
{
    uint64_t seed = 0x5eed0000ULL + (uint64_t)me * 7919 + (uint64_t)round * 104729;
    uint64_t off[TR_MAX_DIMS], shp[TR_MAX_DIMS];
    q->n = 0;
    if (round == 0) {
        for (int i = 0; i < NT; i++)
            add_q(q, &T[i], (uint64_t[TR_MAX_DIMS]){0}, T[i].shape);
        return;
    }
    if (round == 1) {
        for (int i = 0; i < NT; i++) {
            uint64_t len;
            if (T[i].ndim < 2)
                continue;
            len = T[i].shape[T[i].ndim - 1] / tr_group(T[i].dtype);
            col_slice(&T[i], len * (uint64_t)me / (uint64_t)P,
                      len * (uint64_t)(me + 1) / (uint64_t)P, off, shp);
            add_q(q, &T[i], off, shp);
        }
        return;
    }
    if ((me + round) % 3 == 0)
        return;
    for (uint64_t k = 0, n = 1 + lcg(&seed) % 16; k < n; k++) {
        const tr_tensor *t = &T[lcg(&seed) % NT];
        uint64_t kind = lcg(&seed) % 4;
        if (kind == 0) {
            add_q(q, t, (uint64_t[TR_MAX_DIMS]){0}, t->shape);
            continue;
        }
        if (kind == 1 && t->ndim > 0) {
            uint64_t len = t->shape[t->ndim - 1] / tr_group(t->dtype);
            uint64_t a = len ? lcg(&seed) % len : 0;
            uint64_t b = len ? a + 1 + lcg(&seed) % (len - a) : 0;
            col_slice(t, a, b, off, shp);
        } else {
            random_box(t, &seed, off, shp);
        }
        add_q(q, t, off, shp);
    }
}

/* Reads q with reader r into freshly allocated buffers, pre-filled with fill. */
static unsigned char **read_list(sts_reader *r, const qlist *q, unsigned char fill, int *rc)
{
    sts_read_req req[MAXQ];
    unsigned char **buf = calloc(MAXQ, sizeof *buf);
    for (size_t i = 0; i < q->n; i++) {
        uint64_t len = tr_box_bytes(q->t[i], q->shape[i]);
        buf[i] = malloc(len + 1);
        memset(buf[i], fill, len + 1);
        req[i] = (sts_read_req){q->t[i]->name, q->t[i]->dtype, q->t[i]->ndim,
                                q->off[i],     q->shape[i],    buf[i]};
    }
    *rc = sts_reader_read(r, req, q->n);
    if (*rc != STS_OK)
        fprintf(stderr, "read: %s\n", sts_reader_errmsg(r));
    return buf;
}

static void free_bufs(unsigned char **buf)
{
    for (int i = 0; buf && i < MAXQ; i++)
        free(buf[i]);
    free(buf);
}

#define NMODES 3
static const char *const MODE[NMODES] = {"replicated", "distributed", "distributed"};
static const char *const XCHG[NMODES] = {"auto", "auto", "off"};

/* One checkpoint: tables, local calls and the reads of every round, in the three modes. */
static void test_form(MPI_Comm comm, int me, int P, const char *path, sts_ckpt_kind kind,
                      size_t nfiles)
{
    sts_reader *r[NMODES] = {NULL}, *plain = NULL;
    sts_diag d;
    uint64_t received = 0, sum = 0;
    for (int m = 0; m < NMODES; m++) {
        CHECK_OK(open_mode(comm, path, MODE[m], XCHG[m], &r[m], &d));
        if (!r[m])
            fprintf(stderr, "open %s (%s): %s\n", path, MODE[m], d.message);
        agree_open(comm, r[m], path);
    }
    CHECK_OK(open_mode(comm, path, NULL, NULL, &plain, &d));
    agree_open(comm, plain, path);
    if (r[0] && r[1] && r[2] && plain) {
        check_expected_table(r[0], kind, nfiles);
        compare_tables(r[0], r[1], path);
        compare_tables(r[0], r[2], path);
        compare_tables(r[0], plain, path);
        for (int round = 0; round < 10; round++) {
            qlist q;
            unsigned char **b[NMODES];
            int rc[NMODES];
            make_round(&q, round, me, P);
            for (int m = 0; m < NMODES; m++) {
                b[m] = read_list(r[m], &q, (unsigned char)(0x11 * (m + 1)), &rc[m]);
                CHECK_OK(rc[m]);
            }
            for (size_t i = 0; i < q.n; i++) {
                uint64_t len = tr_box_bytes(q.t[i], q.shape[i]);
                unsigned char *want = malloc(len + 1);
                tr_fill(q.t[i], q.off[i], q.shape[i], want);
                for (int m = 0; m < NMODES; m++) {
                    if (memcmp(want, b[m][i], len) != 0) {
                        fprintf(stderr, "%s round %d: %s (%s, exchange %s) wrong bytes\n", path,
                                round, q.t[i]->name, MODE[m], XCHG[m]);
                        test_failures++;
                    }
                }
                for (int m = 1; m < NMODES; m++)
                    CHECK(memcmp(b[0][i], b[m][i], len) == 0);
                free(want);
            }
            for (int m = 0; m < NMODES; m++)
                free_bufs(b[m]);
        }
        /* The column round must reach the two-phase path, or it proves nothing about it. */
        {
            sts_read_stats st;
            sts_reader_stats(r[0], &st);
            received = st.bytes_received;
        }
        MPI_Allreduce(&received, &sum, 1, MPI_UINT64_T, MPI_SUM, comm);
        if (P > 1 && kind == STS_CKPT_SHARDED)
            CHECK(sum > 0);
    }
    for (int m = 0; m < NMODES; m++)
        sts_reader_free(r[m]);
    sts_reader_free(plain);
    TEST_AGREE(comm);
}

/* The local calls work in replicated mode and refuse in distributed mode. */
static void test_local_calls(MPI_Comm comm)
{
    const tr_tensor *t = &T[0];
    uint64_t zero[TR_MAX_DIMS] = {0}, len = tr_box_bytes(t, t->shape);
    unsigned char *buf = malloc(len), *want = malloc(len);
    sts_read_req q = {t->name, t->dtype, t->ndim, zero, t->shape, buf};
    tr_fill(t, zero, t->shape, want);
    for (int m = 0; m < 2; m++) {
        sts_reader *r = NULL;
        sts_diag d;
        sts_stored_block sb;
        CHECK_OK(open_mode(comm, sub("sharded"), MODE[m], NULL, &r, &d));
        agree_open(comm, r, "local calls");
        if (!r)
            continue;
        long k = sts_reader_find(r, t->name);
        CHECK(k >= 0);
        k = k >= 0 ? k : 0;
        memset(buf, 0, len);
        if (m == 0) {
            int rc = sts_reader_block(r, (size_t)k, 0, &sb);
            CHECK_OK(rc);
            CHECK(rc != STS_OK || (sb.file < NF && sb.offsets[0] == 0));
            CHECK_OK(sts_reader_block(r, (size_t)k, NF - 1, &sb));
            CHECK_RC(sts_reader_block(r, (size_t)k, NF, &sb), STS_E_ARG);
            CHECK_OK(sts_reader_read_local(r, &q, 1));
            CHECK(memcmp(buf, want, len) == 0);
        } else {
            CHECK_RC(sts_reader_block(r, (size_t)k, 0, &sb), STS_E_UNSUPPORTED);
            CHECK_RC(sts_reader_read_local(r, &q, 1), STS_E_UNSUPPORTED);
            /* The collective read still works after the refusals. */
            CHECK_OK(sts_reader_read(r, &q, 1));
            CHECK(memcmp(buf, want, len) == 0);
        }
        sts_reader_free(r);
    }
    free(buf);
    free(want);
    TEST_AGREE(comm);
}

static void test_bad_mode(MPI_Comm comm)
{
    static const char *const bad[] = {"bogus", "Distributed", "none"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sts_reader *r = NULL;
        sts_diag d;
        CHECK_RC(open_mode(comm, sub("sharded"), bad[i], NULL, &r, &d), STS_E_ARG);
        CHECK(r == NULL);
        agree_open(comm, r, "bad mode");
        sts_reader_free(r);
    }
    TEST_AGREE(comm);
}

/* ---- open errors -------------------------------------------------------- */

/*
 * 40 tensors e00.w .. e39.w, each two row blocks (files j % 4 and (j + 1) %
 * 4), some also stored a third time (file (j + 2) % 4) as an identical
 * duplicate.  Tensor j is named e<(7j + 3) % 40>, so name order is not file
 * order.  A case breaks some tensors in one way each.
 */
#define NE 40
enum { OK_, GAP, OVERLAP, DTYPE, DUPDT, NDIM };

typedef struct brk {
    int j, how;
} brk;

typedef struct ecase {
    const char *name;
    brk b[6];
    int want; /* the code replicated mode must give (0: any error) */
} ecase;

/* j = 11 is named e00, j = 28 e39. */
static const ecase CASES[] = {
    {"gap", {{29, GAP}}, STS_E_COVERAGE_GAP},
    {"overlap", {{6, OVERLAP}}, STS_E_COVERAGE_OVERLAP},
    {"dtype", {{17, DTYPE}}, STS_E_DTYPE_MISMATCH},
    {"dupdtype", {{33, DUPDT}}, STS_E_DTYPE_MISMATCH},
    {"ndim", {{22, NDIM}}, STS_E_SHARDING_INFO},
    {"many", {{5, GAP}, {14, OVERLAP}, {23, DTYPE}, {36, DUPDT}, {2, NDIM}}, 0},
    {"two_coverage", {{30, GAP}, {9, OVERLAP}}, 0},
    {"gap_first_dup_last", {{11, GAP}, {28, DUPDT}}, 0},
    {"dup_first_gap_last", {{11, DUPDT}, {28, GAP}}, 0},
    {"dtype_and_dup", {{3, DTYPE}, {25, DUPDT}, {38, OVERLAP}}, 0},
};
#define NCASES (sizeof CASES / sizeof CASES[0])

static char e_names[NE][16];
static tr_tensor E[NE], E16[NE], EB16[NE], E3[NE];

static void make_etensors(void)
{
    for (int j = 0; j < NE; j++) {
        snprintf(e_names[j], sizeof e_names[j], "e%02d.w", (7 * j + 3) % NE);
        E[j] = (tr_tensor){e_names[j], STS_F32, 2, {8, 4}};
        E16[j] = (tr_tensor){e_names[j], STS_F16, 2, {8, 4}};
        EB16[j] = (tr_tensor){e_names[j], STS_BF16, 2, {8, 4}};
        E3[j] = (tr_tensor){e_names[j], STS_F32, 3, {8, 4, 1}};
    }
}

static tr_block rows(const tr_tensor *t, uint64_t r0, uint64_t n)
{
    tr_block b = whole(t);
    b.off[0] = r0;
    b.shape[0] = n;
    return b;
}

static int how_broken(const ecase *c, int j)
{
    for (int i = 0; i < 6; i++)
        if (c->b[i].how != OK_ && c->b[i].j == j)
            return c->b[i].how;
    return OK_;
}

/* Tensor j's blocks in file f under case c (0, 1 or 2 of them). */
static size_t eblocks(const ecase *c, int j, int f, tr_block *out)
{
    int how = c ? how_broken(c, j) : OK_;
    size_t n = 0;
    if (f == j % 4)
        out[n++] = rows(&E[j], 0, 4);
    if (f == (j + 1) % 4) {
        if (how == GAP)
            out[n++] = rows(&E[j], 5, 3);
        else if (how == OVERLAP)
            out[n++] = rows(&E[j], 3, 5);
        else if (how == DTYPE)
            out[n++] = rows(&E16[j], 4, 4);
        else if (how == NDIM)
            out[n++] = rows(&E3[j], 4, 4);
        else
            out[n++] = rows(&E[j], 4, 4);
    }
    if (f == (j + 2) % 4 && (how == DUPDT || j % 5 == 0))
        out[n++] = rows(how == DUPDT ? &EB16[j] : &E[j], 0, 4);
    return n;
}

static int write_efiles(const char *dir, const ecase *c)
{
    char p[400];
    tr_block b[2 * NE];
    mkdir(dir, 0777);
    for (int f = 0; f < 4; f++) {
        size_t n = 0;
        for (int j = 0; j < NE; j++)
            n += eblocks(c, j, f, b + n);
        snprintf(p, sizeof p, "%s/shard-%05d-model-00001-of-00001.safetensors", dir, f + 1);
        if (tr_write_file(p, b, n, 1) != 0)
            return -1;
    }
    return 0;
}

static int write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int bad = !f || fwrite(data, 1, len, f) != len;
    if (f && fclose(f) != 0)
        bad = 1;
    return bad ? -1 : 0;
}

/* An index over two model files of whole e tensors; extra is spliced into the weight_map. */
static int write_eindex(const char *dir, int wrong_file, const char *extra)
{
    char p[400];
    tr_block a[NE], b[NE];
    size_t na = 0, nb = 0;
    FILE *f;
    mkdir(dir, 0777);
    for (int j = 0; j < NE; j++) {
        if (j % 2)
            a[na++] = whole(&E[j]);
        else
            b[nb++] = whole(&E[j]);
    }
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    if (tr_write_file(p, a, na, 0) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    if (tr_write_file(p, b, nb, 0) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    f = fopen(p, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {%s", extra);
    for (int j = 0; j < NE; j++) {
        int file = j % 2 ? 1 : 2;
        if (j == wrong_file)
            file = 3 - file;
        fprintf(f, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", j ? ", " : "", E[j].name,
                file);
    }
    fprintf(f, "}}\n");
    return fclose(f) == 0 ? 0 : -1;
}

static int write_broken(void)
{
    char dir[300];
    static const unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{'};
    static const unsigned char junk[16] = {6, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'x', '"', ':', '1'};
    int bad = 0;
    make_etensors();
    for (size_t i = 0; i < NCASES; i++) {
        snprintf(dir, sizeof dir, "%s/err_%s", g_dir, CASES[i].name);
        bad |= write_efiles(dir, &CASES[i]);
    }
    /* Headers: a short file after the good ones; then also a bad length in file 2. */
    bad |= write_efiles(sub("err_hdr_short"), NULL);
    bad |= write_bytes(sub("err_hdr_short/shard-00005-model-00001-of-00001.safetensors"), "xy", 2);
    bad |= write_efiles(sub("err_hdr_two"), NULL);
    bad |= write_bytes(sub("err_hdr_two/shard-00005-model-00001-of-00001.safetensors"), "xy", 2);
    bad |= write_bytes(sub("err_hdr_two/shard-00002-model-00001-of-00001.safetensors"), huge, 9);
    bad |= write_efiles(sub("err_hdr_json"), NULL);
    bad |= write_bytes(sub("err_hdr_json/shard-00003-model-00001-of-00001.safetensors"), junk, 14);
    /* Indexes: a tensor no file holds; a tensor mapped to the wrong file. */
    bad |= write_eindex(sub("err_index_ghost"), -1,
                        "\"ghost\": \"model-00001-of-00002.safetensors\", ");
    bad |= write_eindex(sub("err_index_wrong"), 13, "");
    return bad ? -1 : 0;
}

/* The message without a leading "rank <digits>: ". */
static const char *strip_rank(const char *m)
{
    const char *p = m;
    if (strncmp(p, "rank ", 5) != 0)
        return m;
    p += 5;
    if (*p < '0' || *p > '9')
        return m;
    while (*p >= '0' && *p <= '9')
        p++;
    return strncmp(p, ": ", 2) == 0 ? p + 2 : m;
}

/* Opens dir in both modes: the same code and message; want (if not 0) in replicated mode. */
static void expect_same_error(MPI_Comm comm, const char *dir, int want, const char *needle)
{
    sts_reader *r[2] = {NULL, NULL};
    sts_diag d[2];
    int rc[2], me = 0;
    MPI_Comm_rank(comm, &me);
    for (int m = 0; m < 2; m++) {
        rc[m] = open_mode(comm, dir, MODE[m], NULL, &r[m], &d[m]);
        agree_open(comm, r[m], dir);
    }
    if (want)
        CHECK_RC(rc[0], want);
    else
        CHECK(rc[0] != STS_OK);
    CHECK_RC(rc[1], rc[0]);
    CHECK(r[0] == NULL && r[1] == NULL);
    if (strcmp(strip_rank(d[0].message), strip_rank(d[1].message)) != 0) {
        fprintf(stderr, "%s: messages differ\n  replicated:  %s\n  distributed: %s\n", dir,
                d[0].message, d[1].message);
        test_failures++;
    }
    if (me == 0)
        printf("%s: %s: %s\n", dir, sts_errname(rc[0]), strip_rank(d[0].message));
    if (needle && !strstr(d[0].message, needle)) {
        fprintf(stderr, "%s: '%s' does not name '%s'\n", dir, d[0].message, needle);
        test_failures++;
    }
    for (int m = 0; m < 2; m++)
        sts_reader_free(r[m]);
    TEST_AGREE(comm);
}

static void test_broken(MPI_Comm comm)
{
    char dir[300];
    for (size_t i = 0; i < NCASES; i++) {
        const ecase *c = &CASES[i];
        snprintf(dir, sizeof dir, "%s/err_%s", g_dir, c->name);
        expect_same_error(comm, dir, c->want, c->want ? E[c->b[0].j].name : NULL);
    }
    expect_same_error(comm, sub("err_hdr_short"), STS_E_HEADER_TOO_SMALL, "shard-00005");
    expect_same_error(comm, sub("err_hdr_two"), 0, NULL);
    expect_same_error(comm, sub("err_hdr_json"), 0, "shard-00003");
    expect_same_error(comm, sub("err_index_ghost"), STS_E_INDEX, "ghost");
    expect_same_error(comm, sub("err_index_wrong"), STS_E_INDEX, E[13].name);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    int me, np, wrc = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    make_tensors();
    snprintf(g_dir, sizeof g_dir, "par_read_dist_np%d", np);
    if (me == 0) {
        mkdir(g_dir, 0777);
        wrc = write_good() != 0 || write_broken() != 0;
    }
    MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
    CHECK(wrc == 0);
    if (wrc == 0) {
        test_form(comm, me, np, sub("sharded"), STS_CKPT_SHARDED, NF);
        test_form(comm, me, np, sub("indexed"), STS_CKPT_INDEXED, 2);
        test_form(comm, me, np, sub("single"), STS_CKPT_FILE, 1);
        test_local_calls(comm);
        test_bad_mode(comm);
        test_broken(comm);
    }
    TEST_AGREE(comm);
    if (me == 0)
        printf("par_read_dist: %s (%d ranks)\n", test_failures ? "FAILED" : "ok", np);
    MPI_Finalize();
    return TEST_EXIT();
}
