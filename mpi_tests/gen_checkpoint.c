/*
 * gen_checkpoint.c - writes small deterministic checkpoints, good or broken
 * on purpose, for scripts/run.sh and the tests.  Serial: no MPI calls.
 *
 *   gen_checkpoint OUT.safetensors [--defect wrong-length]
 *       one canonical file of seven tensors in seven dtypes.
 *   gen_checkpoint --index DIR [--defect D]
 *       model-0000K-of-00002.safetensors (K = 1, 2) + model.safetensors.index.json.
 *       D: index-missing | index-extra | index-file | total-size | wrong-length
 *   gen_checkpoint --ranks DIR P [--files 2] [--defect D]
 *       the rank files of P ranks (SPEC 2) with DCP_SHARDING_INFO in Python
 *       spacing: a row-sharded, a column-sharded and a last-dim-sharded tensor,
 *       a replicated vector and a scalar (both stored by rank 0).  --files 2
 *       splits the tensors over two output file indices.
 *       D: gap | overlap | dtype | missing-sharding | bad-sharding |
 *          wrong-length | replica (a valid duplicate of the replicated tensor)
 *
 * Element values depend only on the tensor and the element's global index
 * (tensor id * 1000 + index, in the dtype), so a consolidated tensor can be
 * checked against the same formula.  Headers come from sts_header_encode.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stshard.h"

#define MAXD 4

typedef struct gtensor {
    const char *name;
    sts_dtype dtype;
    unsigned id; /* seeds the values */
    uint32_t ndim;
    uint64_t shape[MAXD];  /* the stored (local) block */
    uint64_t global[MAXD]; /* the global tensor */
    uint64_t offset[MAXD]; /* block start in the global tensor */
} gtensor;

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "gen_checkpoint: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Element values                                                            */
/* ------------------------------------------------------------------------ */

/* IEEE half of an integer in [0, 2048): exact. */
static uint16_t half_of(unsigned v)
{
    unsigned e = 0;
    if (v == 0)
        return 0;
    while ((v >> (e + 1)) != 0)
        e++;
    return (uint16_t)(((e + 15) << 10) | ((v << (10 - e)) & 0x3ff));
}

/* Encodes the value of global element g of tensor id into out (little-endian); returns bytes. */
static size_t element(sts_dtype dt, unsigned id, uint64_t g, unsigned char *out)
{
    uint64_t v = (uint64_t)id * 1000 + g, bits = 0;
    size_t n = sts_dtype_bits(dt) / 8;
    float f = (float)v;
    double d = (double)v;
    uint32_t fb;
    memcpy(&fb, &f, sizeof fb);
    switch (dt) {
    case STS_BOOL:
        bits = v & 1;
        break;
    case STS_F32:
        bits = fb;
        break;
    case STS_BF16:
        bits = fb >> 16;
        break;
    case STS_F16:
        bits = half_of((unsigned)(v % 2048));
        break;
    case STS_F64:
    case STS_C64:
        memcpy(&bits, &d, sizeof bits);
        break;
    case STS_F4:
    case STS_F6_E2M3:
    case STS_F6_E3M2:
    case STS_U8:
    case STS_I8:
    case STS_F8_E5M2:
    case STS_F8_E4M3:
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
        bits = v;
        break;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(bits >> (8 * i));
    return n;
}

/* Writes the block's elements in row-major order, each valued by its global index. */
static int write_block(FILE *f, const gtensor *t)
{
    unsigned char buf[65536];
    size_t used = 0;
    uint64_t numel = 1, idx[MAXD] = {0};
    for (uint32_t d = 0; d < t->ndim; d++)
        numel *= t->shape[d];
    for (uint64_t k = 0; k < numel; k++) {
        uint64_t g = 0;
        for (uint32_t d = 0; d < t->ndim; d++)
            g = g * t->global[d] + t->offset[d] + idx[d];
        if (used + 8 > sizeof buf) {
            if (fwrite(buf, 1, used, f) != used)
                return -1;
            used = 0;
        }
        used += element(t->dtype, t->id, g, buf + used);
        for (uint32_t d = t->ndim; d-- > 0;) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return fwrite(buf, 1, used, f) == used ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

/* One canonical safetensors file; extra appends that many stray bytes. */
static int write_file(const char *path, const gtensor *t, size_t n, const sts_meta_entry *meta,
                      size_t nmeta, int extra)
{
    sts_tensor_desc desc[16];
    uint64_t begin[16], end[16], at = 0;
    size_t order[16];
    void *hdr = NULL;
    size_t hlen = 0;
    sts_diag diag;
    FILE *f;
    int rc;
    for (size_t i = 0; i < n; i++)
        desc[i] = (sts_tensor_desc){t[i].name, t[i].dtype, t[i].ndim, t[i].shape};
    rc = sts_header_encode(desc, n, meta, nmeta, STS_LAYOUT_CANONICAL, 0, &hdr, &hlen, begin, end,
                           &diag);
    if (rc != STS_OK)
        return die("%s: header: %s", path, diag.message);
    f = fopen(path, "wb");
    if (!f) {
        sts_free(hdr);
        return die("cannot create %s: %s", path, strerror(errno));
    }
    rc = fwrite(hdr, 1, hlen, f) == hlen ? 0 : -1;
    sts_free(hdr);
    /* Canonical packing leaves no holes: write the tensors in data-offset order. */
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && begin[order[j]] < begin[order[j - 1]]; j--) {
            size_t x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (end[order[i]] == begin[order[i]])
            continue;
        if (begin[order[i]] != at) {
            fclose(f);
            return die("%s: tensor %s does not start where the last ended", path, t[order[i]].name);
        }
        rc = write_block(f, &t[order[i]]);
        at = end[order[i]];
    }
    for (int i = 0; rc == 0 && i < extra; i++)
        rc = fputc(0, f) == EOF ? -1 : 0;
    if (fclose(f) != 0 || rc != 0)
        return die("write error on %s", path);
    return 0;
}

static int make_dir(const char *dir)
{
    char p[4096];
    size_t n = strlen(dir);
    if (n >= sizeof p)
        return die("path too long: %s", dir);
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return die("cannot create directory %s", p);
        p[i] = dir[i];
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The three modes                                                           */
/* ------------------------------------------------------------------------ */

static const gtensor demo[] = {
    {"lm_head.step", STS_I64, 1, 0, {0}, {0}, {0}},
    {"model.embed_tokens.weight", STS_BF16, 2, 2, {16, 8}, {16, 8}, {0}},
    {"model.layers.0.attn.q_proj.weight", STS_F32, 3, 2, {8, 8}, {8, 8}, {0}},
    {"model.layers.0.mlp.up_proj.bias", STS_F16, 4, 1, {12}, {12}, {0}},
    {"model.mask", STS_BOOL, 5, 2, {3, 5}, {3, 5}, {0}},
    {"model.norm.weight", STS_F64, 6, 1, {8}, {8}, {0}},
    {"model.quant.scales", STS_U8, 7, 1, {7}, {7}, {0}},
};
#define NDEMO (sizeof demo / sizeof demo[0])

static const sts_meta_entry pt_meta[] = {{"format", "pt"}};

static int gen_single(const char *path, const char *defect)
{
    return write_file(path, demo, NDEMO, pt_meta, 1, defect && !strcmp(defect, "wrong-length"));
}

static uint64_t nbytes_of(const gtensor *t)
{
    uint64_t numel = 1, b = 0;
    for (uint32_t d = 0; d < t->ndim; d++)
        numel *= t->shape[d];
    sts_dtype_nbytes(t->dtype, numel, &b);
    return b;
}

/* Tensors 0..3 in file 1, 4..6 in file 2; the index lists them sorted, as HF does. */
static int gen_index(const char *dir, const char *defect)
{
    static const char *const files[] = {"model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors"};
    char path[4096];
    uint64_t total = 0;
    FILE *f;
    int d_missing = defect && !strcmp(defect, "index-missing");
    int d_extra = defect && !strcmp(defect, "index-extra");
    int d_file = defect && !strcmp(defect, "index-file");
    int d_total = defect && !strcmp(defect, "total-size");
    int d_len = defect && !strcmp(defect, "wrong-length");
    if (make_dir(dir))
        return 1;
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[k]);
        if (write_file(path, demo + (k ? 4 : 0), k ? NDEMO - 4 : 4, pt_meta, 1, k && d_len))
            return 1;
    }
    for (size_t i = 0; i < NDEMO; i++)
        total += nbytes_of(&demo[i]);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    f = fopen(path, "w");
    if (!f)
        return die("cannot create %s", path);
    fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {",
            (unsigned long long)(total + (uint64_t)d_total));
    for (size_t i = 0; i < NDEMO; i++) {
        const char *file = files[i >= 4];
        if (d_extra && i == 2)
            continue;
        if (d_file && i == 5)
            file = "model-00003-of-00002.safetensors";
        fprintf(f, "%s\n    \"%s\": \"%s\"", i ? "," : "", demo[i].name, file);
    }
    if (d_missing)
        fprintf(f, ",\n    \"model.ghost.weight\": \"%s\"", files[0]);
    fprintf(f, "\n  }\n}\n");
    return fclose(f) == 0 ? 0 : die("write error on %s", path);
}

/* Appends one tensor's entry of DCP_SHARDING_INFO in Python's json.dumps spacing. */
static void sharding_entry(char *buf, size_t len, const gtensor *t, uint32_t noffsets)
{
    size_t at = strlen(buf);
    at += (size_t)snprintf(buf + at, len - at, "%s\"%s\": {\"saved_offsets\": [",
                           at > 1 ? ", " : "", t->name);
    for (uint32_t d = 0; d < noffsets; d++)
        at += (size_t)snprintf(buf + at, len - at, "%s%llu", d ? ", " : "",
                               (unsigned long long)t->offset[d]);
    snprintf(buf + at, len - at, "]}");
}

/* The blocks rank r of p stores (SPEC 2), with the defect applied. */
static size_t rank_blocks(unsigned r, unsigned p, const char *defect, gtensor *t)
{
    size_t n = 0;
    int is_last = r + 1 == p;
    t[n++] = (gtensor){"model.embed.weight", STS_BF16, 1, 2, {2, 8}, {2 * p, 8}, {2 * r, 0}};
    t[n++] = (gtensor){"layers.0.mlp.weight", STS_F32, 2, 2, {4, 3}, {4, 3 * p}, {0, 3 * r}};
    t[n++] =
        (gtensor){"layers.0.conv.weight", STS_F32, 3, 3, {2, 3, 2}, {2, 3, 2 * p}, {0, 0, 2 * r}};
    if (r == 0 || (is_last && defect && !strcmp(defect, "replica"))) {
        t[n++] = (gtensor){"model.norm.weight", STS_F16, 4, 1, {8}, {8}, {0}};
        if (r == 0)
            t[n++] = (gtensor){"step", STS_I64, 5, 0, {0}, {0}, {0}};
    }
    if (!defect)
        return n;
    if (!strcmp(defect, "gap") && r == 0)
        t[0].shape[0] = 1; /* row 1 of the embedding is lost */
    if (!strcmp(defect, "overlap") && r == 1) {
        t[0].offset[0] = 1; /* rank 1 also claims row 1 */
        t[0].shape[0] = 3;
    }
    if (!strcmp(defect, "dtype") && is_last)
        t[1].dtype = STS_F16;
    return n;
}

static int gen_rank_file(const char *dir, unsigned r, unsigned p, unsigned nfiles, unsigned k,
                         const char *defect)
{
    gtensor all[8], t[8];
    char info[4096] = "{", path[4096];
    size_t nall = rank_blocks(r, p, defect, all), n = 0;
    int d = defect != NULL;
    sts_meta_entry meta[3] = {
        {"DCP_SHARDING_INFO", info}, {"DCP_VERSION", "1.0"}, {"format", "pt"}};
    for (size_t i = 0; i < nall; i++) {
        /* With two output files: embedding and norm go to file 1, the rest to file 2. */
        unsigned file = nfiles == 1 || all[i].id == 1 || all[i].id == 4 ? 1 : 2;
        if (file != k)
            continue;
        t[n] = all[i];
        sharding_entry(info, sizeof info, &t[n],
                       d && !strcmp(defect, "bad-sharding") && r == 0 && n == 0 ? t[n].ndim - 1
                                                                                : t[n].ndim);
        n++;
    }
    strcat(info, "}");
    if (n == 0)
        return 0;
    snprintf(path, sizeof path, "%s/shard-%05u-model-%05u-of-%05u.safetensors", dir, r + 1, k,
             nfiles);
    if (d && !strcmp(defect, "missing-sharding") && r == 0)
        return write_file(path, t, n, meta + 1, 2, 0);
    return write_file(path, t, n, meta, 3, d && !strcmp(defect, "wrong-length") && r + 1 == p);
}

static int gen_ranks(const char *dir, const char *pstr, unsigned nfiles, const char *defect)
{
    char *end = NULL;
    unsigned long p = strtoul(pstr, &end, 10);
    if (!*pstr || *end || p < 1 || p > 99999)
        return die("bad rank count '%s'", pstr);
    if (defect && (!strcmp(defect, "gap") || !strcmp(defect, "overlap")) && p < 2)
        return die("defect '%s' needs at least 2 ranks", defect);
    if (make_dir(dir))
        return 1;
    for (unsigned r = 0; r < p; r++)
        for (unsigned k = 1; k <= nfiles; k++)
            if (gen_rank_file(dir, r, (unsigned)p, nfiles, k, defect))
                return 1;
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const defects[] = {
        "gap",          "overlap",      "dtype",     "missing-sharding",
        "bad-sharding", "wrong-length", "replica",   "index-missing",
        "index-extra",  "index-file",   "total-size"};
    const char *defect = NULL, *mode = NULL, *dir = NULL, *pstr = NULL;
    unsigned nfiles = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--defect") && i + 1 < argc) {
            int known = 0;
            defect = argv[++i];
            for (size_t k = 0; k < sizeof defects / sizeof defects[0]; k++)
                known |= !strcmp(defect, defects[k]);
            if (!known)
                return die("unknown defect '%s'", defect);
        } else if (!strcmp(argv[i], "--files") && i + 1 < argc) {
            i++;
            if (strcmp(argv[i], "1") != 0 && strcmp(argv[i], "2") != 0)
                return die("--files takes 1 or 2, not '%s'", argv[i]);
            nfiles = argv[i][0] == '2' ? 2 : 1;
        } else if (!strcmp(argv[i], "--index") && i + 1 < argc) {
            mode = "index";
            dir = argv[++i];
        } else if (!strcmp(argv[i], "--ranks") && i + 2 < argc) {
            mode = "ranks";
            dir = argv[++i];
            pstr = argv[++i];
        } else if (argv[i][0] != '-' && !mode) {
            mode = "single";
            dir = argv[i];
        } else {
            return die("usage: gen_checkpoint OUT.safetensors | --index DIR | --ranks DIR P "
                       "[--files 2] [--defect D]  (bad argument '%s')",
                       argv[i]);
        }
    }
    if (!mode)
        return die("%s", "usage: gen_checkpoint OUT.safetensors | --index DIR | --ranks DIR P "
                         "[--files 2] [--defect D]");
    if (!strcmp(mode, "single"))
        return gen_single(dir, defect);
    if (!strcmp(mode, "index"))
        return gen_index(dir, defect);
    return gen_ranks(dir, pstr, nfiles, defect);
}
