/*
 * model.c - deterministic synthetic transformer models and their sharding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model_fill stores elements with native stores and assumes a little-endian host"
#endif

/* ---- element generator ------------------------------------------------- */

/* SplitMix64's finalizer: a bijective mix with good avalanche, so consecutive
 * indices give unrelated elements. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t model_name_key(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t stream_base(uint64_t seed, uint64_t key)
{
    return mix64(seed ^ mix64(key + 0x9e3779b97f4a7c15ULL));
}

/* Sign, a 3-bit exponent step e (0..7) and mantissa bits from one hash word. */
#define SIGN(h)  ((h) >> 63)
#define ESTEP(h) (((h) >> 60) & 7)

static uint32_t f32_bits(uint64_t h)
{
    return (uint32_t)(SIGN(h) << 31 | (118 + ESTEP(h)) << 23 | (h & 0x7fffff));
}

static uint64_t value_at(uint64_t base, sts_dtype dt, uint64_t index)
{
    uint64_t h = mix64(base + (index + 1) * 0x9e3779b97f4a7c15ULL);
    switch (dt) {
    case STS_BOOL:
        return h & 1;
    case STS_BF16: /* 2^-9 .. 2^-2: exponent 118..125 with bias 127 */
        return SIGN(h) << 15 | (118 + ESTEP(h)) << 7 | (h & 0x7f);
    case STS_F16: /* same range, bias 15 */
        return SIGN(h) << 15 | (6 + ESTEP(h)) << 10 | (h & 0x3ff);
    case STS_F32:
        return f32_bits(h);
    case STS_F64:
        return SIGN(h) << 63 | (1014 + ESTEP(h)) << 52 | (h & 0xfffffffffffffULL);
    case STS_C64: /* real and imaginary F32 parts */
        return (uint64_t)f32_bits(mix64(h)) << 32 | f32_bits(h);
    case STS_F8_E4M3: /* biased exponent 1..6 keeps clear of NaN (0x7f) and subnormals */
        return SIGN(h) << 7 | (1 + ESTEP(h) % 6) << 3 | (h & 7);
    case STS_F8_E5M2:
        return SIGN(h) << 7 | (6 + ESTEP(h)) << 2 | (h & 3);
    case STS_F4:
    case STS_F6_E2M3:
    case STS_F6_E3M2:
    case STS_U8:
    case STS_I8:
    case STS_F8_E8M0:
    case STS_F8_E4M3FNUZ:
    case STS_F8_E5M2FNUZ:
    case STS_I16:
    case STS_U16:
    case STS_I32:
    case STS_U32:
    case STS_I64:
    case STS_U64:
    case STS_DTYPE_COUNT:
        break;
    }
    return h;
}

uint64_t model_value(uint64_t seed, uint64_t key, sts_dtype dt, uint64_t index)
{
    return value_at(stream_base(seed, key), dt, index);
}

/* Writes n consecutive elements starting at global index first. */
static unsigned char *fill_run(unsigned char *p, uint64_t base, sts_dtype dt, unsigned esize,
                               uint64_t first, uint64_t n)
{
    for (uint64_t j = 0; j < n; j++) {
        uint64_t v = value_at(base, dt, first + j);
        switch (esize) {
        case 1:
            *p = (unsigned char)v;
            break;
        case 2: {
            uint16_t s = (uint16_t)v;
            memcpy(p, &s, 2);
            break;
        }
        case 4: {
            uint32_t s = (uint32_t)v;
            memcpy(p, &s, 4);
            break;
        }
        default:
            memcpy(p, &v, 8);
            break;
        }
        p += esize;
    }
    return p;
}

void model_fill(uint64_t seed, uint64_t key, sts_dtype dt, uint32_t ndim, const uint64_t *gshape,
                const uint64_t *offsets, const uint64_t *shape, void *dst)
{
    uint64_t base = stream_base(seed, key);
    unsigned esize = sts_dtype_bits(dt) / 8;
    uint64_t idx[MODEL_MAX_DIMS] = {0}, rows = 1, inner;
    unsigned char *p = dst;

    if (ndim == 0) {
        fill_run(p, base, dt, esize, 0, 1);
        return;
    }
    for (uint32_t d = 0; d + 1 < ndim; d++)
        rows *= shape[d];
    inner = shape[ndim - 1];
    if (rows == 0 || inner == 0)
        return;
    /* Walk the block's rows (all dimensions but the last) like an odometer; each
     * row is a contiguous run of the global tensor. */
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t g = 0;
        for (uint32_t d = 0; d + 1 < ndim; d++)
            g = g * gshape[d] + offsets[d] + idx[d];
        g = g * gshape[ndim - 1] + offsets[ndim - 1];
        p = fill_run(p, base, dt, esize, g, inner);
        for (uint32_t d = ndim - 1; d-- > 0;) {
            if (++idx[d] < shape[d])
                break;
            idx[d] = 0;
        }
    }
}

/* ---- presets ----------------------------------------------------------- */

typedef struct builder {
    model *m;
    size_t cap;
    sts_dtype dt;
    int failed;
} builder;

static void add_tensor(builder *b, const char *name, sts_dtype dt, model_role role, uint32_t ndim,
                       uint64_t d0, uint64_t d1, uint64_t d2, uint64_t d3)
{
    model_tensor *t;
    uint64_t dims[MODEL_MAX_DIMS] = {d0, d1, d2, d3};
    if (b->failed)
        return;
    if (b->m->count == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        model_tensor *n = realloc(b->m->tensors, cap * sizeof *n);
        if (!n) {
            b->failed = 1;
            return;
        }
        b->m->tensors = n;
        b->cap = cap;
    }
    t = &b->m->tensors[b->m->count++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = ndim;
    t->role = role;
    memcpy(t->shape, dims, sizeof dims);
    t->key = model_name_key(t->name);
    b->m->total_bytes += model_block_bytes(t, t->shape);
}

static uint64_t round_up(uint64_t x, uint64_t m)
{
    return (x + m - 1) / m * m;
}

/* Depth, FFN width and key/value width that go with a hidden size. */
static void llama_dims(uint64_t h, model_dims *d)
{
    uint64_t layers = (h + 64) / 128;
    d->hidden = h;
    d->layers = layers < 2 ? 2 : layers > 96 ? 96 : layers;
    d->intermediate = round_up(8 * h / 3, 64);
    d->kv_dim = h >= 1024 ? h / 4 : h; /* grouped-query attention from 1024 on */
    d->vocab = 0;
}

/* Parameters outside the vocabulary-sized matrices. */
static uint64_t llama_body_params(const model_dims *d)
{
    uint64_t h = d->hidden;
    uint64_t layer = 2 * h * h + 2 * d->kv_dim * h + 3 * h * d->intermediate + 2 * h;
    return d->layers * layer + h;
}

/*
 * The widest model whose vocabulary still has min_vocab rows.  Real
 * tokenizers have 32k-128k tokens, so that is tried first; tiny targets fall
 * back to 1000.
 */
static int llama_fit_vocab(uint64_t params, uint64_t min_vocab, model_dims *out)
{
    int found = 0;
    for (uint64_t h = 64; h <= 16384; h += 64) {
        model_dims d;
        uint64_t body;
        llama_dims(h, &d);
        body = llama_body_params(&d);
        if (body >= params || (params - body) / (2 * h) < min_vocab)
            break;
        d.vocab = (params - body) / (2 * h);
        *out = d;
        found = 1;
    }
    return found ? 0 : -1;
}

static int llama_fit(uint64_t params, model_dims *out)
{
    if (llama_fit_vocab(params, 32000, out) == 0)
        return 0;
    return llama_fit_vocab(params, 1000, out);
}

/* The tensors of one decoder layer (model_role_of consults the roles too). */
static const struct {
    const char *suffix; /* after "model.layers.<l>." */
    int kind;           /* 0 q/o [h,h], 1 k/v [kv,h], 2 gate/up [I,h], 3 down [h,I], 4 norm [h] */
    model_role role;
} per_layer[] = {
    {"self_attn.q_proj.weight", 0, MODEL_ROLE_COLUMN},
    {"self_attn.k_proj.weight", 1, MODEL_ROLE_COLUMN},
    {"self_attn.v_proj.weight", 1, MODEL_ROLE_COLUMN},
    {"self_attn.o_proj.weight", 0, MODEL_ROLE_ROW},
    {"mlp.gate_proj.weight", 2, MODEL_ROLE_COLUMN},
    {"mlp.up_proj.weight", 2, MODEL_ROLE_COLUMN},
    {"mlp.down_proj.weight", 3, MODEL_ROLE_ROW},
    {"input_layernorm.weight", 4, MODEL_ROLE_REPLICATED},
    {"post_attention_layernorm.weight", 4, MODEL_ROLE_REPLICATED},
};

static void add_llama(builder *b, const model_dims *d)
{
    uint64_t h = d->hidden, in = d->intermediate;
    char name[MODEL_NAME_MAX];

    add_tensor(b, "model.embed_tokens.weight", b->dt, MODEL_ROLE_VOCAB, 2, d->vocab, h, 0, 0);
    for (uint64_t l = 0; l < d->layers; l++) {
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) {
            uint64_t rows[] = {h, d->kv_dim, in, h, h}, cols[] = {h, h, h, in, 0};
            int k = per_layer[i].kind;
            snprintf(name, sizeof name, "model.layers.%llu.%s", (unsigned long long)l,
                     per_layer[i].suffix);
            add_tensor(b, name, b->dt, per_layer[i].role, k == 4 ? 1 : 2, rows[k], cols[k], 0, 0);
        }
    }
    add_tensor(b, "model.norm.weight", b->dt, MODEL_ROLE_REPLICATED, 1, h, 0, 0, 0);
    add_tensor(b, "lm_head.weight", b->dt, MODEL_ROLE_COLUMN, 2, d->vocab, h, 0, 0);
}

model_role model_role_of(const char *name, uint32_t ndim)
{
    size_t len = strlen(name);
    if (ndim <= 1)
        return MODEL_ROLE_REPLICATED;
    if (strcmp(name, "model.embed_tokens.weight") == 0)
        return MODEL_ROLE_VOCAB;
    for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) {
        size_t sl = strlen(per_layer[i].suffix);
        if (len > sl && name[len - sl - 1] == '.' &&
            strcmp(name + len - sl, per_layer[i].suffix) == 0)
            return per_layer[i].role;
    }
    return MODEL_ROLE_COLUMN;
}

/* Buffers of other dtypes and ranks that real checkpoints carry beside the weights. */
static void add_extras(builder *b)
{
    add_tensor(b, "model.rotary_emb.inv_freq", STS_F32, MODEL_ROLE_REPLICATED, 1, 32, 0, 0, 0);
    add_tensor(b, "model.step", STS_I64, MODEL_ROLE_REPLICATED, 0, 0, 0, 0, 0);
    add_tensor(b, "model.norm.fp8_scale", STS_F8_E4M3, MODEL_ROLE_REPLICATED, 1, 7, 0, 0, 0);
    add_tensor(b, "model.attn_mask", STS_BOOL, MODEL_ROLE_COLUMN, 2, 127, 129, 0, 0);
    add_tensor(b, "model.pos_bucket", STS_I32, MODEL_ROLE_COLUMN, 3, 5, 33, 10, 0);
    add_tensor(b, "model.conv.weight", STS_F16, MODEL_ROLE_ROW, 4, 16, 9, 3, 3);
}

int model_build(const char *spec, sts_dtype dt, model *out, char *err, size_t errlen)
{
    builder b = {out, 0, dt, 0};
    const char *colon = spec ? strchr(spec, ':') : NULL;
    uint64_t target = 0, extra = 0;
    unsigned bits = sts_dtype_bits(dt);
    model_dims d;
    int mixed;

    memset(out, 0, sizeof *out);
    if (!colon || cli_parse_size(colon + 1, &target) != 0) {
        snprintf(err, errlen, "model '%s' is not PRESET:SIZE (e.g. llama:1GiB)", spec ? spec : "");
        return -1;
    }
    mixed = (size_t)(colon - spec) == 5 && strncmp(spec, "mixed", 5) == 0;
    if (!mixed && !((size_t)(colon - spec) == 5 && strncmp(spec, "llama", 5) == 0)) {
        snprintf(err, errlen, "unknown model preset '%.*s' (known: llama, mixed)",
                 (int)(colon - spec), spec);
        return -1;
    }
    if (bits < 8 || bits % 8 != 0) {
        snprintf(err, errlen, "model dtype must have whole bytes per element");
        return -1;
    }
    if (mixed) {
        add_extras(&b);
        extra = out->total_bytes;
    }
    if (target <= extra || llama_fit((target - extra) / (bits / 8), &d) != 0) {
        snprintf(err, errlen, "model size %llu bytes is too small for preset '%.*s'",
                 (unsigned long long)target, (int)(colon - spec), spec);
        model_free(out);
        return -1;
    }
    add_llama(&b, &d);
    out->dims = d;
    if (b.failed) {
        snprintf(err, errlen, "out of memory");
        model_free(out);
        return -2;
    }
    return 0;
}

void model_free(model *m)
{
    free(m->tensors);
    memset(m, 0, sizeof *m);
}

/* ---- strategies -------------------------------------------------------- */

static const char *const strategy_names[] = {"tp", "row", "col", "mesh2d"};

int model_strategy_parse(const char *s, model_strategy *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, strategy_names[i]) == 0) {
            *out = (model_strategy)i;
            return 0;
        }
    }
    return -1;
}

const char *model_strategy_name(model_strategy s)
{
    return (unsigned)s < 4 ? strategy_names[s] : "?";
}

void model_mesh_grid(int nranks, int *rows, int *cols)
{
    int r = 1;
    for (int i = 1; (long)i * i <= nranks; i++)
        if (nranks % i == 0)
            r = i;
    *rows = r;
    *cols = nranks / r;
}

/* Part i of n of a dimension of length len (the first len % n parts are one longer). */
static void split(uint64_t len, int n, int i, uint64_t *off, uint64_t *size)
{
    uint64_t base = len / (uint64_t)n, rem = len % (uint64_t)n, u = (uint64_t)i;
    *size = base + (u < rem);
    *off = u * base + (u < rem ? u : rem);
}

uint64_t model_block_bytes(const model_tensor *t, const uint64_t *shape)
{
    uint64_t numel = 1, bytes = 0;
    for (uint32_t d = 0; d < t->ndim; d++)
        if (__builtin_mul_overflow(numel, shape[d], &numel))
            return 0;
    return sts_dtype_nbytes(t->dtype, numel, &bytes) == STS_OK ? bytes : 0;
}

int model_local_block(const model_tensor *t, model_strategy s, int rank, int nranks,
                      uint64_t *offsets, uint64_t *shape, int *replicated)
{
    int dim0 = -1, dim1 = -1, n0 = nranks, i0 = rank, n1 = 1, i1 = 0;
    uint64_t numel = 1;

    for (uint32_t d = 0; d < t->ndim; d++) {
        offsets[d] = 0;
        shape[d] = t->shape[d];
        numel *= t->shape[d];
    }
    *replicated = 0;
    if (numel == 0) /* nothing to split: rank 0 alone stores the empty tensor */
        return rank == 0;
    if (t->ndim == 0 || (s == MODEL_TP && t->role == MODEL_ROLE_REPLICATED)) {
        *replicated = 1;
        return 1;
    }
    if (s == MODEL_TP)
        dim0 = (t->role == MODEL_ROLE_ROW && t->ndim >= 2) ? 1 : 0;
    else if (s == MODEL_COLS)
        dim0 = t->ndim >= 2 ? 1 : 0;
    else if (s == MODEL_MESH2D && t->ndim >= 2) {
        int rows, cols;
        model_mesh_grid(nranks, &rows, &cols);
        dim0 = 0, n0 = rows, i0 = rank / cols;
        dim1 = 1, n1 = cols, i1 = rank % cols;
    } else
        dim0 = 0;
    split(t->shape[dim0], n0, i0, &offsets[dim0], &shape[dim0]);
    if (dim1 >= 0)
        split(t->shape[dim1], n1, i1, &offsets[dim1], &shape[dim1]);
    return shape[dim0] > 0 && (dim1 < 0 || shape[dim1] > 0);
}
