/*
 * unit_model.c - the synthetic model of `stshard save` (src/cli/model.c):
 * pinned generator values (a checkpoint saved today must check tomorrow),
 * finite float values, preset sizes and shapes, and that every strategy's
 * blocks tile every tensor at 1..8 ranks.
 */
#include "model.h"
#include "test_util.h"

static void test_generator(void)
{
    uint64_t key = model_name_key("model.embed_tokens.weight");
    uint64_t shape[3] = {3, 4, 5}, off[3] = {1, 1, 2}, bs[3] = {2, 3, 3};
    uint16_t blk[18];
    size_t k = 0;
    /* FNV-1a 64 of "a", a published test vector. */
    CHECK(model_name_key("a") == 0xaf63dc4c8601ec8cULL);
    CHECK(model_value(0, key, STS_BF16, 0) == model_value(0, key, STS_BF16, 0));
    CHECK(model_value(0, key, STS_BF16, 0) != model_value(1, key, STS_BF16, 0));
    /* Pinned: changing the generator breaks checks of saved checkpoints. */
    CHECK(model_value(0, key, STS_BF16, 0) == 0x3b47);
    CHECK(model_value(7, key, STS_BF16, 12345) == 0xbe47);
    CHECK(model_value(7, key, STS_U64, 1) == 0xe17a3c06552c95dbULL);
    for (uint64_t i = 0; i < 200000; i++) {
        uint64_t b = model_value(3, key, STS_BF16, i), e = (b >> 7) & 0xff;
        uint64_t f = model_value(3, key, STS_F32, i), fe = (f >> 23) & 0xff;
        uint64_t h = model_value(3, key, STS_F16, i), he = (h >> 10) & 0x1f;
        uint64_t q = model_value(3, key, STS_F8_E4M3, i);
        CHECK(e >= 118 && e <= 125 && b < 0x10000);
        CHECK(fe >= 118 && fe <= 125 && f < 0x100000000ULL);
        CHECK(he >= 6 && he <= 13);
        CHECK((q & 0x7f) != 0x7f && q < 0x100);
        CHECK(model_value(3, key, STS_BOOL, i) <= 1);
    }
    /* model_fill writes model_value at the global row-major index of each element. */
    model_fill(5, key, STS_BF16, 3, shape, off, bs, blk);
    for (uint64_t a = 0; a < 2; a++)
        for (uint64_t b = 0; b < 3; b++)
            for (uint64_t c = 0; c < 3; c++, k++)
                CHECK(blk[k] == model_value(5, key, STS_BF16,
                                            ((off[0] + a) * 4 + off[1] + b) * 5 + off[2] + c));
}

static void test_presets(void)
{
    static const struct {
        const char *spec;
        uint64_t target;
    } sizes[] = {{"llama:64MiB", 64ULL << 20},
                 {"llama:1GiB", 1ULL << 30},
                 {"llama:8GiB", 8ULL << 30},
                 {"mixed:4MiB", 4ULL << 20},
                 {"llama:5GB", 5000000000ULL}};
    char err[256];
    model m;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        model_dims d;
        CHECK(model_build(sizes[i].spec, STS_BF16, &m, err, sizeof err) == 0);
        d = m.dims;
        /* The vocabulary absorbs the remainder: within two embedding rows of the target. */
        CHECK(m.total_bytes <= sizes[i].target);
        CHECK(m.total_bytes + 2 * 2 * 2 * d.hidden > sizes[i].target);
        CHECK(d.hidden % 64 == 0 && d.intermediate % 64 == 0 && d.layers >= 2);
        CHECK(d.hidden % d.kv_dim == 0 && d.vocab >= 1000);
        CHECK(m.count == 9 * d.layers + 3 + (i == 3 ? 6 : 0));
        printf("%-12s hidden %5llu layers %2llu ffn %5llu kv %4llu vocab %6llu: %llu bytes\n",
               sizes[i].spec, (unsigned long long)d.hidden, (unsigned long long)d.layers,
               (unsigned long long)d.intermediate, (unsigned long long)d.kv_dim,
               (unsigned long long)d.vocab, (unsigned long long)m.total_bytes);
        model_free(&m);
    }
    CHECK(model_build("llama", STS_BF16, &m, err, sizeof err) != 0);
    CHECK(model_build("gpt:1MiB", STS_BF16, &m, err, sizeof err) != 0 && strstr(err, "gpt"));
    CHECK(model_build("llama:lots", STS_BF16, &m, err, sizeof err) != 0);
    CHECK(model_build("llama:100KiB", STS_BF16, &m, err, sizeof err) != 0 &&
          strstr(err, "too small"));
    CHECK(model_build("llama:1MiB", STS_F4, &m, err, sizeof err) != 0);
}

/* Blocks of one tensor at np ranks: inside it, disjoint, covering it (or whole on every rank). */
static void check_tiling(const model_tensor *t, model_strategy s, int np)
{
    uint64_t off[8][MODEL_MAX_DIMS], shape[8][MODEL_MAX_DIMS], numel = 1, sum = 0;
    int has[8], repl[8], nrep = 0;
    for (uint32_t d = 0; d < t->ndim; d++)
        numel *= t->shape[d];
    for (int r = 0; r < np; r++) {
        uint64_t n = 1;
        has[r] = model_local_block(t, s, r, np, off[r], shape[r], &repl[r]);
        for (uint32_t d = 0; d < t->ndim; d++) {
            CHECK(off[r][d] + shape[r][d] <= t->shape[d]);
            n *= shape[r][d];
        }
        nrep += has[r] && repl[r];
        if (has[r] && !repl[r])
            sum += n;
    }
    if (nrep > 0) {
        CHECK(nrep == np);
        return;
    }
    CHECK(sum == numel);
    for (int a = 0; a < np; a++)
        for (int b = a + 1; b < np; b++) {
            int overlap = has[a] && has[b] && numel > 0;
            for (uint32_t d = 0; d < t->ndim; d++)
                overlap &=
                    off[a][d] < off[b][d] + shape[b][d] && off[b][d] < off[a][d] + shape[a][d];
            CHECK(!overlap);
        }
}

static void test_strategies(void)
{
    char err[256];
    model m;
    int rows, cols;
    uint64_t off[MODEL_MAX_DIMS], shape[MODEL_MAX_DIMS];
    int repl;
    CHECK(model_build("mixed:4MiB", STS_BF16, &m, err, sizeof err) == 0);
    for (int s = MODEL_TP; s <= MODEL_MESH2D; s++)
        for (int np = 1; np <= 8; np++)
            for (size_t t = 0; t < m.count; t++)
                check_tiling(&m.tensors[t], (model_strategy)s, np);
    /* Megatron roles at 4 ranks: rank 1's parts. */
    for (size_t t = 0; t < m.count; t++) {
        const model_tensor *x = &m.tensors[t];
        model_local_block(x, MODEL_TP, 1, 4, off, shape, &repl);
        if (strstr(x->name, "q_proj") || strstr(x->name, "embed_tokens"))
            CHECK(off[0] > 0 && shape[1] == x->shape[1]);
        if (strstr(x->name, "o_proj") || strstr(x->name, "down_proj"))
            CHECK(off[1] > 0 && shape[0] == x->shape[0]);
        if (strstr(x->name, "layernorm"))
            CHECK(repl);
        model_local_block(x, MODEL_MESH2D, 3, 4, off, shape, &repl);
        if (strstr(x->name, "gate_proj"))
            CHECK(off[0] > 0 && off[1] > 0);
    }
    model_free(&m);
    model_mesh_grid(1, &rows, &cols);
    CHECK(rows == 1 && cols == 1);
    model_mesh_grid(4, &rows, &cols);
    CHECK(rows == 2 && cols == 2);
    model_mesh_grid(6, &rows, &cols);
    CHECK(rows == 2 && cols == 3);
    model_mesh_grid(7, &rows, &cols);
    CHECK(rows == 1 && cols == 7);
    model_mesh_grid(12, &rows, &cols);
    CHECK(rows == 3 && cols == 4);
}

int main(void)
{
    test_generator();
    test_presets();
    test_strategies();
    return TEST_EXIT();
}
