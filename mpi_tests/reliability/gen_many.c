/*
 * gen_many.c - the stress inputs of the reliability suite, and the check of
 * whatever was made from them.  Serial (no MPI calls).
 *
 *   gen_many --write DIR --ranks P --tensors T
 *       the rank files of P ranks (docs/format.md §3) holding T tensors plus a scalar
 *       "step" (stored by rank 0).  Tensor t is "layers.<t/16>.p<t%16>", its
 *       dtype cycles through F32, BF16, I64, U8, it has 1 to 3 dimensions and
 *       is split over the P ranks along dimension 0, or along dimension 1 for
 *       every fourth tensor of 2+ dimensions (strided blocks).
 *   gen_many --check DIR --ranks P --tensors T
 *       reads every .safetensors file in DIR (a consolidated checkpoint or a
 *       rank-file one) and checks every element of every tensor or block
 *       against the generator's formula, and that the elements found add up
 *       to exactly every element of the T + 1 global tensors: nothing lost,
 *       nothing duplicated, nothing changed.  Data is read in bounded chunks.
 *
 * Element bytes depend only on (tensor, global element index, byte), so the
 * expected content of any block of any layout can be computed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stshard.h"

#define MAXD 3

typedef struct gspec {
    sts_dtype dtype;
    uint32_t ndim;
    uint32_t split; /* dimension split over the ranks */
    uint64_t global[MAXD];
} gspec;

static const sts_dtype dtypes[4] = {STS_F32, STS_BF16, STS_I64, STS_U8};

/* Global description of tensor t (t == T is the scalar "step"). */
static void spec_of(uint64_t t, uint64_t T, uint64_t P, gspec *g)
{
    memset(g, 0, sizeof *g);
    if (t == T) {
        g->dtype = STS_I64;
        return;
    }
    g->dtype = dtypes[t % 4];
    g->ndim = 1 + (uint32_t)(t % 3);
    g->split = (g->ndim >= 2 && t % 4 == 1) ? 1 : 0;
    for (uint32_t d = 0; d < g->ndim; d++)
        g->global[d] = 2 + (t + d) % 2;
    g->global[g->split] = P * (1 + t % 2);
}

static void name_of(uint64_t t, uint64_t T, char *buf, size_t len)
{
    if (t == T)
        snprintf(buf, len, "step");
    else
        snprintf(buf, len, "layers.%llu.p%llu", (unsigned long long)(t / 16),
                 (unsigned long long)(t % 16));
}

/* Inverse of name_of; returns 0 for a name the generator does not make. */
static int tensor_of(const char *name, uint64_t T, uint64_t *t)
{
    unsigned long long a, b;
    char tail;
    if (strcmp(name, "step") == 0) {
        *t = T;
        return 1;
    }
    if (sscanf(name, "layers.%llu.p%llu%c", &a, &b, &tail) != 2 || b >= 16)
        return 0;
    *t = a * 16 + b;
    return *t < T;
}

static unsigned char byte_of(uint64_t t, uint64_t g, unsigned k)
{
    uint64_t x = (t + 1) * 0x9e3779b97f4a7c15ULL ^ (g + 1) * 0xc2b2ae3d27d4eb4fULL;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 32;
    return (unsigned char)(x >> (8 * k));
}

/* Fills buf with elements [e0, e0 + n) of block (off, shp) of tensor t (row-major in the block). */
static void fill(uint64_t t, const gspec *g, const uint64_t *off, const uint64_t *shp, uint64_t e0,
                 uint64_t n, unsigned char *buf)
{
    unsigned es = sts_dtype_bits(g->dtype) / 8;
    for (uint64_t e = e0; e < e0 + n; e++) {
        uint64_t r = e, gi = 0, idx[MAXD] = {0}, stride = 1;
        for (uint32_t d = g->ndim; d-- > 0;) {
            idx[d] = r % shp[d];
            r /= shp[d];
        }
        for (uint32_t d = g->ndim; d-- > 0;) {
            gi += (off[d] + idx[d]) * stride;
            stride *= g->global[d];
        }
        for (unsigned k = 0; k < es; k++)
            *buf++ = byte_of(t, gi, k);
    }
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "gen_many: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* --write                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct local {
    char name[48];
    uint64_t t;
    gspec g;
    uint64_t off[MAXD], shp[MAXD];
} local;

/* The block rank r holds of tensor t; 0 when it holds none. */
static int block_of(uint64_t t, uint64_t T, uint64_t r, uint64_t P, local *b)
{
    spec_of(t, T, P, &b->g);
    if (t == T && r != 0)
        return 0;
    b->t = t;
    name_of(t, T, b->name, sizeof b->name);
    memcpy(b->shp, b->g.global, sizeof b->shp);
    memset(b->off, 0, sizeof b->off);
    if (t < T) {
        uint64_t per = b->g.global[b->g.split] / P;
        b->shp[b->g.split] = per;
        b->off[b->g.split] = r * per;
    }
    return 1;
}

/* DCP_SHARDING_INFO in PyTorch's spacing. */
static char *sharding_json(const local *b, size_t n)
{
    size_t cap = 64 + n * 128, at = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    at += (size_t)snprintf(s + at, cap - at, "{");
    for (size_t i = 0; i < n; i++) {
        at += (size_t)snprintf(s + at, cap - at, "%s\"%s\": {\"saved_offsets\": [", i ? ", " : "",
                               b[i].name);
        for (uint32_t d = 0; d < b[i].g.ndim; d++)
            at += (size_t)snprintf(s + at, cap - at, "%s%llu", d ? ", " : "",
                                   (unsigned long long)b[i].off[d]);
        at += (size_t)snprintf(s + at, cap - at, "]}");
    }
    snprintf(s + at, cap - at, "}");
    return s;
}

static int write_rank(const char *dir, uint64_t r, uint64_t P, uint64_t T)
{
    int rc = 1, fd = -1;
    size_t n = 0, hlen = 0;
    local *b = calloc(T + 1, sizeof *b);
    sts_tensor_desc *td = calloc(T + 1, sizeof *td);
    uint64_t *begin = calloc(T + 1, sizeof *begin), *end = calloc(T + 1, sizeof *end);
    unsigned char *buf = NULL;
    char *info = NULL, path[4096];
    void *hdr = NULL;
    if (!b || !td || !begin || !end)
        goto done;
    for (uint64_t t = 0; t <= T; t++) {
        if (block_of(t, T, r, P, &b[n])) {
            td[n] = (sts_tensor_desc){b[n].name, b[n].g.dtype, b[n].g.ndim, b[n].shp};
            n++;
        }
    }
    info = sharding_json(b, n);
    if (!info)
        goto done;
    {
        sts_meta_entry meta[3] = {
            {"DCP_SHARDING_INFO", info}, {"DCP_VERSION", "1.0"}, {"format", "pt"}};
        sts_diag d;
        if (sts_header_encode(td, n, meta, 3, STS_LAYOUT_CANONICAL, 0, &hdr, &hlen, begin, end,
                              &d) != STS_OK) {
            fail("encode: %s", d.message);
            goto done;
        }
    }
    snprintf(path, sizeof path, "%s/shard-%05llu-model-00001-of-00001.safetensors", dir,
             (unsigned long long)r + 1);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || pwrite(fd, hdr, hlen, 0) != (ssize_t)hlen) {
        fail("%s: %s", path, strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1, len = end[i] - begin[i];
        for (uint32_t d = 0; d < b[i].g.ndim; d++)
            numel *= b[i].shp[d];
        free(buf);
        buf = malloc(len ? len : 1);
        if (!buf)
            goto done;
        fill(b[i].t, &b[i].g, b[i].off, b[i].shp, 0, numel, buf);
        if (pwrite(fd, buf, len, (off_t)(hlen + begin[i])) != (ssize_t)len) {
            fail("%s: %s", path, strerror(errno));
            goto done;
        }
    }
    rc = 0;
done:
    if (fd >= 0 && close(fd) != 0)
        rc = 1;
    sts_free(hdr);
    free(info);
    free(buf);
    free(b);
    free(td);
    free(begin);
    free(end);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* --check                                                                   */
/* ------------------------------------------------------------------------ */

/* Checks one tensor or block of file fd against the formula; adds its elements to *count. */
static int check_tensor(int fd, uint64_t data_start, const sts_tensor_info *ti, uint64_t t,
                        uint64_t T, uint64_t P, uint64_t *count, const char *path)
{
    enum { CHUNK = 1 << 16 };
    static unsigned char got[CHUNK * 8], want[CHUNK * 8];
    gspec g;
    uint64_t zero[MAXD] = {0}, numel = 1;
    const uint64_t *off = ti->saved_offsets ? ti->saved_offsets : zero;
    unsigned es;
    spec_of(t, T, P, &g);
    es = sts_dtype_bits(g.dtype) / 8;
    if (ti->dtype != g.dtype || ti->ndim != g.ndim)
        return fail("%s: tensor %s has the wrong dtype or rank", path, ti->name);
    for (uint32_t d = 0; d < g.ndim; d++) {
        if (off[d] + ti->shape[d] > g.global[d])
            return fail("%s: tensor %s lies outside its global shape", path, ti->name);
        numel *= ti->shape[d];
    }
    for (uint64_t e = 0; e < numel; e += CHUNK) {
        uint64_t n = numel - e < CHUNK ? numel - e : CHUNK;
        off_t at = (off_t)(data_start + ti->begin + e * es);
        if (pread(fd, got, n * es, at) != (ssize_t)(n * es))
            return fail("%s: short read in tensor %s", path, ti->name);
        fill(t, &g, off, ti->shape, e, n, want);
        if (memcmp(got, want, n * es) != 0)
            return fail("%s: tensor %s holds wrong bytes", path, ti->name);
    }
    count[t] += numel;
    return 0;
}

static int check_file(const char *path, uint64_t T, uint64_t P, uint64_t *count)
{
    sts_header *h = NULL;
    uint64_t start = 0;
    sts_diag d;
    int rc = 0, fd;
    if (sts_header_read_file(path, &h, &start, &d) != STS_OK)
        return fail("%s: %s", path, d.message);
    if (sts_header_meta_get(h, "DCP_SHARDING_INFO") && sts_header_decode_sharding(h, &d) != STS_OK)
        rc = fail("%s: %s", path, d.message);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        rc = fail("%s: %s", path, strerror(errno));
    for (size_t i = 0; rc == 0 && i < sts_header_count(h); i++) {
        const sts_tensor_info *ti = sts_header_tensor(h, i);
        uint64_t t;
        if (!tensor_of(ti->name, T, &t))
            rc = fail("%s: unexpected tensor %s", path, ti->name);
        else
            rc = check_tensor(fd, start, ti, t, T, P, count, path);
    }
    if (fd >= 0)
        close(fd);
    sts_header_free(h);
    return rc;
}

static int check_dir(const char *dir, uint64_t T, uint64_t P)
{
    uint64_t *count = calloc(T + 1, sizeof *count), files = 0;
    DIR *dp = opendir(dir);
    struct dirent *e;
    int rc = 0;
    char path[4096];
    if (!count || !dp)
        return fail("%s: %s", dir, strerror(errno));
    while (rc == 0 && (e = readdir(dp)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rc = check_file(path, T, P, count);
        files++;
    }
    closedir(dp);
    for (uint64_t t = 0; rc == 0 && t <= T; t++) {
        gspec g;
        uint64_t numel = 1;
        char name[48];
        spec_of(t, T, P, &g);
        for (uint32_t d = 0; d < g.ndim; d++)
            numel *= g.global[d];
        name_of(t, T, name, sizeof name);
        if (count[t] != numel)
            rc = fail("%s: tensor %s: wrong number of elements (missing or duplicated)", dir, name);
    }
    if (rc == 0)
        printf("gen_many: %s: %llu files, all %llu tensors complete and correct\n", dir,
               (unsigned long long)files, (unsigned long long)T + 1);
    free(count);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    uint64_t P = 0, T = 0;
    int write = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--write") == 0 || strcmp(argv[i], "--check") == 0) {
            write = strcmp(argv[i], "--write") == 0;
            dir = argv[i + 1];
        } else if (strcmp(argv[i], "--ranks") == 0) {
            P = strtoull(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--tensors") == 0) {
            T = strtoull(argv[i + 1], NULL, 10);
        }
    }
    if (!dir || P == 0 || P > 99999) {
        fprintf(stderr, "usage: gen_many --write|--check DIR --ranks P --tensors T\n");
        return 2;
    }
    if (!write)
        return check_dir(dir, T, P);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return fail("%s: %s", dir, strerror(errno));
    for (uint64_t r = 0; r < P; r++) {
        if (write_rank(dir, r, P, T) != 0)
            return 1;
    }
    printf("gen_many: %llu rank files, %llu tensors in %s\n", (unsigned long long)P,
           (unsigned long long)T + 1, dir);
    return 0;
}
