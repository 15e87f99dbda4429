/*
 * par_save_check.c - checks a checkpoint written by `stshard save` against
 * the synthetic model it was built from, without storing the model:
 *  - the directory passes sts_verify_path;
 *  - every rank file has the expected name (rank, file index of the mapping,
 *    file count) and holds exactly the blocks the strategy gives its rank,
 *    with saved_offsets equal to the block offsets;
 *  - each replicated tensor is stored exactly once, each other block once;
 *  - the blocks of every tensor tile it exactly (each element once);
 *  - the data equals the generator: whole blocks against model_fill, and
 *    sampled elements against model_value at independently computed indices.
 *
 * Usage: par_save_check OUTDIR MODEL STRATEGY NP SEED DTYPE [MAPPING.json]
 *        par_save_check --write-mapping MODEL DTYPE FILES OUT.json
 */
#include "model.h"
#include "par_save_util.h"
#include "test_util.h"

typedef struct expect {
    int stored;           /* blocks seen for this tensor */
    unsigned char *cover; /* per element, small models only */
} expect;

static model M;
static expect *E;
static sts_mapping *map;
static uint64_t seed;

static long find_tensor(const char *name)
{
    for (size_t t = 0; t < M.count; t++)
        if (strcmp(M.tensors[t].name, name) == 0)
            return (long)t;
    return -1;
}

/* Global linear index of element j (row-major) of the block (off, shape). */
static uint64_t global_index(const model_tensor *t, const uint64_t *off, const uint64_t *shape,
                             uint64_t j)
{
    uint64_t g = 0, stride = 1;
    for (uint32_t d = t->ndim; d-- > 0;) {
        uint64_t i = j % shape[d];
        j /= shape[d];
        g += (off[d] + i) * stride;
        stride *= t->shape[d];
    }
    return g;
}

static void check_data(const char *path, uint64_t start, const sts_tensor_info *ti,
                       const model_tensor *t)
{
    uint64_t n = ti->end - ti->begin, numel = 1, esize = sts_dtype_bits(t->dtype) / 8;
    unsigned char *got = malloc(n + 1), *want = malloc(n + 1);
    for (uint32_t d = 0; d < t->ndim; d++)
        numel *= ti->shape[d];
    CHECK(su_pread(path, start + ti->begin, got, n) == 0);
    model_fill(seed, t->key, t->dtype, t->ndim, t->shape, ti->saved_offsets, ti->shape, want);
    CHECK(memcmp(got, want, n) == 0);
    /* Spot checks that do not go through model_fill's indexing. */
    for (uint64_t s = 0; numel > 0 && s < 64; s++) {
        uint64_t j = s == 0 ? 0 : s == 1 ? numel - 1 : (s * 2654435761ULL) % numel, v = 0;
        memcpy(&v, got + j * esize, esize);
        CHECK(v == (model_value(seed, t->key, t->dtype,
                                global_index(t, ti->saved_offsets, ti->shape, j)) &
                    (esize == 8 ? ~0ULL : (1ULL << (8 * esize)) - 1)));
    }
    free(got);
    free(want);
}

static void mark(const model_tensor *t, expect *e, const uint64_t *off, const uint64_t *shape)
{
    uint64_t numel = 1;
    for (uint32_t d = 0; d < t->ndim; d++)
        numel *= shape[d];
    for (uint64_t j = 0; j < numel; j++)
        e->cover[global_index(t, off, shape, j)]++;
}

/* One rank file: its tensors against the strategy's blocks of that rank. */
static void check_file(const char *path, int rank, unsigned file, model_strategy s, int np)
{
    sts_header *h = NULL;
    sts_diag d;
    uint64_t start = 0, off[MODEL_MAX_DIMS], shape[MODEL_MAX_DIMS];
    CHECK_OK(sts_header_read_file(path, &h, &start, &d));
    CHECK(h && sts_header_decode_sharding(h, &d) == STS_OK);
    CHECK(h && sts_header_count(h) > 0);
    for (size_t i = 0; h && i < sts_header_count(h); i++) {
        const sts_tensor_info *ti = sts_header_tensor(h, i);
        long k = find_tensor(ti->name);
        int repl = 0;
        const model_tensor *t;
        CHECK(k >= 0);
        if (k < 0 || !ti->saved_offsets)
            continue;
        t = &M.tensors[k];
        CHECK(model_local_block(t, s, rank, np, off, shape, &repl));
        CHECK(ti->dtype == t->dtype && ti->ndim == t->ndim);
        CHECK((map ? sts_mapping_get(map, t->name) : 1) == file);
        for (uint32_t dd = 0; dd < t->ndim; dd++) {
            CHECK(ti->saved_offsets[dd] == off[dd]);
            CHECK(ti->shape[dd] == shape[dd]);
        }
        E[k].stored++;
        mark(t, &E[k], off, shape);
        check_data(path, start, ti, t);
    }
    sts_header_free(h);
}

static int check(const char *dir, const char *strategy, int np)
{
    model_strategy s;
    unsigned nfiles = map ? sts_mapping_file_count(map) : 1;
    char path[4096];
    int files = 0;
    CHECK(model_strategy_parse(strategy, &s) == 0);
    E = calloc(M.count, sizeof *E);
    for (size_t t = 0; t < M.count; t++) {
        uint64_t n = 1;
        for (uint32_t d = 0; d < M.tensors[t].ndim; d++)
            n *= M.tensors[t].shape[d];
        E[t].cover = calloc(n + 1, 1);
    }
    for (int r = 0; r < np; r++) {
        for (unsigned k = 1; k <= nfiles; k++) {
            su_rank_file(path, sizeof path, dir, r, k, nfiles);
            if (su_size(path) < 0)
                continue;
            files++;
            check_file(path, r, k, s, np);
        }
    }
    CHECK(su_count(dir, NULL) == files);
    for (size_t t = 0; t < M.count; t++) {
        const model_tensor *mt = &M.tensors[t];
        uint64_t off[MODEL_MAX_DIMS], shape[MODEL_MAX_DIMS], n = 1;
        int repl = 0, holders = 0, ok = 1;
        for (int r = 0; r < np; r++)
            holders += model_local_block(mt, s, r, np, off, shape, &repl);
        CHECK(E[t].stored == (repl ? 1 : holders));
        for (uint32_t d = 0; d < mt->ndim; d++)
            n *= mt->shape[d];
        for (uint64_t j = 0; j < n; j++)
            ok &= E[t].cover[j] == 1;
        CHECK(ok);
        if (!ok || E[t].stored != (repl ? 1 : holders))
            fprintf(stderr, "tensor %s: stored %d times, tiling %s\n", mt->name, E[t].stored,
                    ok ? "ok" : "broken");
        free(E[t].cover);
    }
    free(E);
    CHECK_OK(sts_verify_path(dir, NULL, NULL, NULL));
    printf("par_save_check: %s: %d files, %zu tensors checked\n", dir, files, M.count);
    return TEST_EXIT();
}

/* A mapping that spreads the tensors over `files` files round-robin. */
static int write_mapping(const char *out, unsigned files)
{
    FILE *f = fopen(out, "w");
    if (!f)
        return 1;
    fprintf(f, "{");
    for (size_t t = 0; t < M.count; t++)
        fprintf(f, "%s\"%s\": %u", t ? ", " : "", M.tensors[t].name, 1 + (unsigned)(t % files));
    fprintf(f, "}\n");
    return fclose(f) == 0 ? 0 : 1;
}

static int build(const char *spec, const char *dtname)
{
    sts_dtype dt;
    char err[256];
    if (sts_dtype_from_name(dtname, strlen(dtname), &dt) != STS_OK ||
        model_build(spec, dt, &M, err, sizeof err) != 0) {
        fprintf(stderr, "par_save_check: bad model %s / %s\n", spec, dtname);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    sts_diag d;
    int rc;
    if (argc == 6 && strcmp(argv[1], "--write-mapping") == 0) {
        if (build(argv[2], argv[3]) != 0)
            return 2;
        rc = write_mapping(argv[5], (unsigned)atoi(argv[4]));
        model_free(&M);
        return rc;
    }
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: par_save_check OUTDIR MODEL STRATEGY NP SEED DTYPE [MAPPING]\n");
        return 2;
    }
    if (build(argv[2], argv[6]) != 0)
        return 2;
    seed = strtoull(argv[5], NULL, 10);
    if (argc == 8 && sts_mapping_load_json(argv[7], &map, &d) != STS_OK) {
        fprintf(stderr, "par_save_check: %s\n", d.message);
        return 2;
    }
    rc = check(argv[1], argv[3], atoi(argv[4]));
    sts_mapping_free(map);
    model_free(&M);
    return rc;
}
