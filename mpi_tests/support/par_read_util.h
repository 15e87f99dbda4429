/*
 * par_read_util.h - test-side checkpoint files for the reader tests.
 *
 * Every byte of a test tensor is a pure function of (tensor name, global byte
 * position in the row-major tensor), so any block of any tensor can be
 * recomputed and compared with what the reader returns, whatever files and
 * blocks the tensor was stored in.  Files are written with the codec
 * (sts_header_encode) and plain stdio, independently of the reader.
 */
#ifndef STS_PAR_READ_UTIL_H
#define STS_PAR_READ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stshard.h"

#define TR_MAX_DIMS 4

typedef struct tr_tensor {
    const char *name;
    sts_dtype dtype;
    uint32_t ndim;
    uint64_t shape[TR_MAX_DIMS]; /* global shape */
} tr_tensor;

/* A block of a tensor to store in a file. */
typedef struct tr_block {
    const tr_tensor *t;
    uint64_t off[TR_MAX_DIMS];
    uint64_t shape[TR_MAX_DIMS];
} tr_block;

static inline uint64_t tr_key(const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ULL;
    return h;
}

/* The byte at global byte position p of the tensor with key k. */
static inline unsigned char tr_byte(uint64_t k, uint64_t p)
{
    uint64_t x = k ^ (p * 0x9e3779b97f4a7c15ULL);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    return (unsigned char)x;
}

/* Elements per whole-byte group: 1, or 2 (4-bit), or 4 (6-bit). */
static inline uint64_t tr_group(sts_dtype dt)
{
    unsigned bits = sts_dtype_bits(dt);
    return bits % 8 == 0 ? 1 : (bits % 4 == 0 ? 2 : 4);
}

/*
 * Fills dst with the dense row-major bytes of box (off, shape) of tensor t.
 * The last dimension is walked in whole-byte groups (it must be aligned).
 */
static inline void tr_fill(const tr_tensor *t, const uint64_t *off, const uint64_t *shape,
                           unsigned char *dst)
{
    uint64_t u = tr_group(t->dtype), gbytes = u * sts_dtype_bits(t->dtype) / 8;
    uint64_t key = tr_key(t->name), idx[TR_MAX_DIMS] = {0}, gs[TR_MAX_DIMS], o[TR_MAX_DIMS],
             s[TR_MAX_DIMS], total = 1;
    uint32_t n = t->ndim;
    for (uint32_t d = 0; d < n; d++) {
        int last = d + 1 == n;
        gs[d] = last ? t->shape[d] / u : t->shape[d];
        o[d] = last ? off[d] / u : off[d];
        s[d] = last ? shape[d] / u : shape[d];
        total *= s[d];
    }
    for (uint64_t i = 0; i < total; i++) {
        uint64_t g = 0, rem = i;
        for (uint32_t d = n; d-- > 0;) {
            idx[d] = rem % s[d];
            rem /= s[d];
        }
        for (uint32_t d = 0; d < n; d++)
            g = g * gs[d] + o[d] + idx[d];
        for (uint64_t j = 0; j < gbytes; j++)
            dst[i * gbytes + j] = tr_byte(key, g * gbytes + j);
    }
}

static inline uint64_t tr_box_bytes(const tr_tensor *t, const uint64_t *shape)
{
    uint64_t n = 1, b = 0;
    for (uint32_t d = 0; d < t->ndim; d++)
        n *= shape[d];
    sts_dtype_nbytes(t->dtype, n, &b);
    return b;
}

/*
 * Writes a safetensors file holding blocks[0..n).  With sharded != 0 the
 * header carries DCP_SHARDING_INFO with each block's offsets (a rank file);
 * otherwise every block must be a whole tensor.  Returns 0 or -1.
 */
static inline int tr_write_file(const char *path, const tr_block *blocks, size_t n, int sharded)
{
    sts_tensor_desc *desc = calloc(n + 1, sizeof *desc);
    uint64_t *begin = calloc(n + 1, sizeof *begin), *end = calloc(n + 1, sizeof *end);
    char *info = malloc(64 + n * 256);
    sts_meta_entry meta[3] = {
        {"DCP_SHARDING_INFO", info}, {"DCP_VERSION", "1.0"}, {"format", "pt"}};
    void *hdr = NULL;
    size_t hlen = 0, pos;
    int rc = -1;
    FILE *f = NULL;
    pos = (size_t)sprintf(info, "{");
    for (size_t i = 0; i < n; i++) {
        desc[i].name = blocks[i].t->name;
        desc[i].dtype = blocks[i].t->dtype;
        desc[i].ndim = blocks[i].t->ndim;
        desc[i].shape = blocks[i].shape;
        pos += (size_t)sprintf(info + pos, "%s\"%s\": {\"saved_offsets\": [", i ? ", " : "",
                               blocks[i].t->name);
        for (uint32_t d = 0; d < blocks[i].t->ndim; d++)
            pos += (size_t)sprintf(info + pos, "%s%llu", d ? ", " : "",
                                   (unsigned long long)blocks[i].off[d]);
        pos += (size_t)sprintf(info + pos, "]}");
    }
    sprintf(info + pos, "}");
    if (sts_header_encode(desc, n, sharded ? meta : meta + 2, sharded ? 3 : 1, STS_LAYOUT_CANONICAL,
                          0, &hdr, &hlen, begin, end, NULL) != STS_OK)
        goto done;
    f = fopen(path, "wb");
    if (!f || fwrite(hdr, 1, hlen, f) != hlen)
        goto done;
    /* Canonical order is not the caller's: write each block at its own offset. */
    for (size_t i = 0; i < n; i++) {
        uint64_t len = end[i] - begin[i];
        unsigned char *buf = malloc(len ? len : 1);
        tr_fill(blocks[i].t, blocks[i].off, blocks[i].shape, buf);
        if (fseek(f, (long)(hlen + begin[i]), SEEK_SET) != 0 || fwrite(buf, 1, len, f) != len) {
            free(buf);
            goto done;
        }
        free(buf);
    }
    rc = 0;
done:
    if (f && fclose(f) != 0)
        rc = -1;
    sts_free(hdr);
    free(desc);
    free(begin);
    free(end);
    free(info);
    return rc;
}

/*
 * The reader's metadata mode under test: STS_TEST_READER_METADATA (the
 * *_mdist copies of the reader tests set it to "distributed"); NULL when
 * unset or empty, and then the tests open exactly as they always did.
 */
static inline const char *tr_metadata_env(void)
{
    const char *v = getenv("STS_TEST_READER_METADATA");
    return v && *v ? v : NULL;
}

static inline int tr_metadata_distributed(void)
{
    const char *v = tr_metadata_env();
    return v && strcmp(v, "distributed") == 0;
}

/* dir/name in one of eight rotating buffers: a call's result lives for seven more calls. */
static inline const char *tr_path(const char *dir, const char *name)
{
    static char buf[8][320];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Appended to a test's work directory, so that a test and its _mdist copy never share files. */
static inline const char *tr_dir_suffix(void)
{
    return tr_metadata_env() ? "_mdist" : "";
}

/*
 * sts_reader_open with the test's own info (may be MPI_INFO_NULL), plus
 * "stshard_metadata" from the environment when that is set.  The caller's
 * info is left as it was.
 */
static inline int tr_reader_open(MPI_Comm comm, const char *path, MPI_Info base, sts_reader **out,
                                 sts_diag *diag)
{
    const char *mode = tr_metadata_env();
    MPI_Info info = MPI_INFO_NULL;
    int rc;
    if (!mode)
        return sts_reader_open(comm, path, base, out, diag);
    if (base != MPI_INFO_NULL)
        MPI_Info_dup(base, &info);
    else
        MPI_Info_create(&info);
    MPI_Info_set(info, "stshard_metadata", mode);
    rc = sts_reader_open(comm, path, info, out, diag);
    MPI_Info_free(&info);
    return rc;
}

/*
 * 1 when r behaves as the environment's mode says: with distributed metadata
 * the local sts_reader_block refuses (STS_E_UNSUPPORTED), with replicated it
 * works.  Keeps an _mdist copy from passing on a library that ignores the hint.
 */
static inline int tr_reader_mode_ok(const sts_reader *r)
{
    sts_stored_block sb;
    int rc;
    if (sts_reader_count(r) == 0)
        return 1;
    rc = sts_reader_block(r, 0, 0, &sb);
    return tr_metadata_distributed() ? rc == STS_E_UNSUPPORTED : rc == STS_OK;
}

#endif /* STS_PAR_READ_UTIL_H */
