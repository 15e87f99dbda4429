/*
 * par_read.c - the offset-read loader on real files with real ranks.
 *
 * One set of tensors (every rank 0..4, odd sizes, F4 and BOOL, a zero-size
 * tensor, a scalar) is stored in the three checkpoint forms: a single
 * model.safetensors, index.json plus two model files, and three rank files
 * with mixed sharding and a replicated tensor stored twice.  Every rank reads
 * whole tensors and pseudo-random boxes, one request at a time and many per
 * call, and compares every byte with the generator of par_read_util.h.  The
 * subarray-view mode must return the same bytes.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "par_read_util.h"
#include "test_util.h"

static const tr_tensor T[] = {
    {"w.col", STS_F32, 2, {64, 48}}, {"w.emb", STS_BF16, 2, {37, 20}},
    {"b.vec", STS_F16, 1, {101}},    {"step", STS_I64, 0, {0}},
    {"cube", STS_I32, 3, {5, 6, 7}}, {"conv", STS_U8, 4, {3, 4, 5, 6}},
    {"empty", STS_F32, 2, {0, 4}},   {"fp4", STS_F4, 2, {6, 8}},
    {"mask", STS_BOOL, 2, {9, 11}},
};
#define NT (sizeof T / sizeof T[0])

static char g_dir[256];

static char *path_in(const char *sub, const char *name)
{
    static char buf[4][512];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s%s%s", g_dir, sub, *name ? "/" : "", name);
    return buf[k];
}

static tr_block whole(const tr_tensor *t)
{
    tr_block b;
    memset(&b, 0, sizeof b);
    b.t = t;
    memcpy(b.shape, t->shape, sizeof b.shape);
    return b;
}

/* Part i of n along dimension d (the first len % n parts one longer), aligned to u. */
static tr_block part(const tr_tensor *t, uint32_t d, uint64_t i, uint64_t n, uint64_t u)
{
    tr_block b = whole(t);
    uint64_t len = t->shape[d] / u, base = len / n, rem = len % n;
    b.shape[d] = (base + (i < rem)) * u;
    b.off[d] = (i * base + (i < rem ? i : rem)) * u;
    return b;
}

/* Three rank files: rows, columns, a 2-D split, a replicated tensor stored twice. */
static int write_sharded(const char *dir)
{
    tr_block f[3][16];
    size_t n[3] = {0, 0, 0};
    char name[512];
    for (uint64_t r = 0; r < 3; r++) {
        f[r][n[r]++] = part(&T[0], 1, r, 3, 1); /* w.col: columns */
        f[r][n[r]++] = part(&T[1], 0, r, 3, 1); /* w.emb: rows, 37 = 13+12+12 */
        if (r < 2)
            f[r][n[r]++] = whole(&T[2]); /* b.vec replicated in files 0 and 1 */
        if (r == 2)
            f[r][n[r]++] = whole(&T[3]);
        f[r][n[r]++] = part(&T[4], 2, r, 3, 1); /* cube: innermost dim */
        if (r == 0)
            f[r][n[r]++] = whole(&T[6]);
        f[r][n[r]++] = part(&T[7], 1, r, 3, 2); /* fp4: columns in pairs (whole bytes) */
        f[r][n[r]++] = part(&T[8], 0, r, 3, 1);
    }
    /* conv: a 2x2 grid over dims 1 and 2 spread over the files. */
    for (uint64_t i = 0; i < 4; i++) {
        tr_block b = part(&T[5], 1, i / 2, 2, 1);
        tr_block c = part(&T[5], 2, i % 2, 2, 1);
        b.off[2] = c.off[2];
        b.shape[2] = c.shape[2];
        f[i % 3][n[i % 3]++] = b;
    }
    mkdir(dir, 0777);
    for (int r = 0; r < 3; r++) {
        /* Each conv block needs a distinct name in one file: file 0 holds two, so the
         * second goes to a fourth file. */
        size_t k = 0;
        tr_block keep[16], extra[4];
        size_t ne = 0;
        int seen_conv = 0;
        for (size_t i = 0; i < n[r]; i++) {
            if (f[r][i].t == &T[5] && seen_conv++)
                extra[ne++] = f[r][i];
            else
                keep[k++] = f[r][i];
        }
        snprintf(name, sizeof name, "%s/shard-%05d-model-00001-of-00001.safetensors", dir, r + 1);
        if (tr_write_file(name, keep, k, 1) != 0)
            return -1;
        if (ne) {
            snprintf(name, sizeof name, "%s/shard-%05d-model-00001-of-00001.safetensors", dir,
                     r + 4);
            if (tr_write_file(name, extra, ne, 1) != 0)
                return -1;
        }
    }
    return 0;
}

static int write_index(const char *dir)
{
    tr_block a[NT], b[NT];
    size_t na = 0, nb = 0;
    char p[512];
    FILE *f;
    mkdir(dir, 0777);
    for (size_t i = 0; i < NT; i++) {
        if (i % 2)
            a[na++] = whole(&T[i]);
        else
            b[nb++] = whole(&T[i]);
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
    fprintf(f, "{\n  \"metadata\": {\"total_size\": 0},\n  \"weight_map\": {\n");
    for (size_t i = 0; i < NT; i++)
        fprintf(f, "    \"%s\": \"model-0000%d-of-00002.safetensors\"%s\n", T[i].name,
                i % 2 ? 1 : 2, i + 1 < NT ? "," : "");
    fprintf(f, "  }\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

static int write_single(const char *dir)
{
    tr_block a[NT];
    char p[512];
    mkdir(dir, 0777);
    for (size_t i = 0; i < NT; i++)
        a[i] = whole(&T[i]);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    return tr_write_file(p, a, NT, 0);
}

/* ---- reading and checking ----------------------------------------------- */

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* A pseudo-random box of t (last dimension aligned to whole bytes). */
static void random_box(const tr_tensor *t, uint64_t *seed, uint64_t *off, uint64_t *shape)
{
    uint64_t u = tr_group(t->dtype);
    for (uint32_t d = 0; d < t->ndim; d++) {
        uint64_t len = d + 1 == t->ndim ? t->shape[d] / u : t->shape[d];
        uint64_t a = len ? lcg(seed) % len : 0, b = len ? lcg(seed) % (len + 1) : 0;
        if (b < a) {
            uint64_t x = a;
            a = b;
            b = x;
        }
        off[d] = (d + 1 == t->ndim ? u : 1) * a;
        shape[d] = (d + 1 == t->ndim ? u : 1) * (b - a + (b == a && a < len));
    }
}

typedef struct req_set {
    sts_read_req req[2 * NT];
    uint64_t dims[2 * NT][2][TR_MAX_DIMS];
    unsigned char *buf[2 * NT];
    size_t n;
} req_set;

static void add_req(req_set *s, const tr_tensor *t, const uint64_t *off, const uint64_t *shape)
{
    size_t i = s->n++;
    memcpy(s->dims[i][0], off, sizeof s->dims[i][0]);
    memcpy(s->dims[i][1], shape, sizeof s->dims[i][1]);
    s->buf[i] = malloc(tr_box_bytes(t, shape) + 1);
    s->req[i].name = t->name;
    s->req[i].dtype = t->dtype;
    s->req[i].ndim = t->ndim;
    s->req[i].offsets = s->dims[i][0];
    s->req[i].shape = s->dims[i][1];
    s->req[i].buf = s->buf[i];
}

static int check_set(req_set *s)
{
    int bad = 0;
    for (size_t i = 0; i < s->n; i++) {
        const tr_tensor *t = NULL;
        for (size_t k = 0; k < NT; k++)
            if (strcmp(T[k].name, s->req[i].name) == 0)
                t = &T[k];
        uint64_t len = tr_box_bytes(t, s->dims[i][1]);
        unsigned char *want = malloc(len + 1);
        tr_fill(t, s->dims[i][0], s->dims[i][1], want);
        if (memcmp(want, s->buf[i], len) != 0) {
            fprintf(stderr, "mismatch in %s box %zu\n", t->name, i);
            bad++;
        }
        free(want);
        free(s->buf[i]);
    }
    s->n = 0;
    return bad;
}

static void check_table(const sts_reader *r, sts_ckpt_kind kind)
{
    CHECK(sts_reader_kind(r) == kind);
    CHECK(sts_reader_count(r) == NT);
    for (size_t i = 0; i < NT; i++) {
        long k = sts_reader_find(r, T[i].name);
        const sts_global_tensor *g = k >= 0 ? sts_reader_tensor(r, (size_t)k) : NULL;
        CHECK(g != NULL);
        if (!g)
            continue;
        CHECK(strcmp(g->name, T[i].name) == 0);
        CHECK(g->dtype == T[i].dtype);
        CHECK(g->ndim == T[i].ndim);
        CHECK(g->nbytes == tr_box_bytes(&T[i], T[i].shape));
        for (uint32_t d = 0; d < g->ndim; d++)
            CHECK(g->shape[d] == T[i].shape[d]);
    }
    CHECK(sts_reader_find(r, "w.co") == -1);
    CHECK(sts_reader_tensor(r, NT) == NULL);
}

/*
 * The local calls work on replicated metadata; with distributed metadata a
 * rank may not hold the blocks, so they must refuse (STS_E_UNSUPPORTED).
 */
static void check_local_calls(sts_reader *r)
{
    sts_stored_block sb;
    uint64_t zero[TR_MAX_DIMS] = {0};
    const tr_tensor *t = &T[1];
    uint64_t len = tr_box_bytes(t, t->shape);
    unsigned char *buf = malloc(len), *want = malloc(len);
    sts_read_req q = {t->name, t->dtype, t->ndim, zero, t->shape, buf};
    long k = sts_reader_find(r, t->name);
    CHECK(k >= 0);
    tr_fill(t, zero, t->shape, want);
    if (tr_metadata_distributed()) {
        CHECK_RC(sts_reader_block(r, (size_t)(k >= 0 ? k : 0), 0, &sb), STS_E_UNSUPPORTED);
        CHECK_RC(sts_reader_read_local(r, &q, 1), STS_E_UNSUPPORTED);
    } else {
        int rc = sts_reader_block(r, (size_t)(k >= 0 ? k : 0), 0, &sb);
        CHECK_OK(rc);
        CHECK(rc != STS_OK || sb.file < sts_reader_file_count(r));
        CHECK_OK(sts_reader_read_local(r, &q, 1));
        CHECK(memcmp(buf, want, len) == 0);
    }
    free(buf);
    free(want);
}

/* Whole tensors one call each, then random boxes all in one call. */
static void read_everything(MPI_Comm comm, sts_reader *r, int me)
{
    req_set s;
    uint64_t seed = 12345 + (uint64_t)me * 7919, off[TR_MAX_DIMS], shape[TR_MAX_DIMS];
    s.n = 0;
    for (size_t i = 0; i < NT; i++) {
        uint64_t zero[TR_MAX_DIMS] = {0};
        add_req(&s, &T[i], zero, T[i].shape);
        CHECK_OK(sts_reader_read(r, s.req, 1));
        CHECK(check_set(&s) == 0);
    }
    for (int round = 0; round < 8; round++) {
        for (size_t i = 0; i < NT; i++) {
            random_box(&T[i], &seed, off, shape);
            add_req(&s, &T[i], off, shape);
            random_box(&T[i], &seed, off, shape);
            add_req(&s, &T[i], off, shape);
        }
        /* Odd ranks sit out every other round: empty lists still join. */
        size_t n = (me % 2 && round % 2) ? 0 : s.n;
        int rc = sts_reader_read(r, s.req, n);
        CHECK_OK(rc);
        if (rc != STS_OK)
            fprintf(stderr, "%s\n", sts_reader_errmsg(r));
        if (n == 0) {
            for (size_t i = 0; i < s.n; i++)
                free(s.buf[i]);
            s.n = 0;
        } else {
            CHECK(check_set(&s) == 0);
        }
    }
    TEST_AGREE(comm);
}

static void test_form(MPI_Comm comm, int me, const char *path, sts_ckpt_kind kind, size_t nfiles,
                      int view)
{
    sts_reader *r = NULL;
    sts_diag d;
    MPI_Info info = MPI_INFO_NULL;
    if (view) {
        MPI_Info_create(&info);
        MPI_Info_set(info, "stshard_strided_reads", "view");
    }
    int rc = tr_reader_open(comm, path, info, &r, &d);
    CHECK_OK(rc);
    if (rc != STS_OK) {
        fprintf(stderr, "open %s: %s\n", path, d.message);
    } else {
        check_table(r, kind);
        CHECK(sts_reader_file_count(r) == nfiles);
        check_local_calls(r);
        read_everything(comm, r, me);
    }
    sts_reader_free(r);
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    int me, np, wrc = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    snprintf(g_dir, sizeof g_dir, "par_read_np%d%s", np, tr_dir_suffix());
    if (me == 0) {
        mkdir(g_dir, 0777);
        wrc |= write_single(path_in("single", ""));
        wrc |= write_index(path_in("indexed", ""));
        wrc |= write_sharded(path_in("sharded", ""));
    }
    MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
    CHECK(wrc == 0);
    if (wrc == 0) {
        test_form(comm, me, path_in("single", ""), STS_CKPT_FILE, 1, 0);
        test_form(comm, me, path_in("single", "model.safetensors"), STS_CKPT_FILE, 1, 0);
        test_form(comm, me, path_in("indexed", ""), STS_CKPT_INDEXED, 2, 0);
        test_form(comm, me, path_in("sharded", ""), STS_CKPT_SHARDED, 4, 0);
        test_form(comm, me, path_in("sharded", ""), STS_CKPT_SHARDED, 4, 1);
        test_form(comm, me, path_in("indexed", ""), STS_CKPT_INDEXED, 2, 1);
    }
    TEST_AGREE(comm);
    if (me == 0)
        printf("par_read: %s (%d ranks, metadata %s)\n", test_failures ? "FAILED" : "ok", np,
               tr_metadata_env() ? tr_metadata_env() : "default");
    MPI_Finalize();
    return TEST_EXIT();
}
