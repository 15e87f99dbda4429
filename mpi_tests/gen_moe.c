/*
 * gen_moe.c - rank files shaped like a mixture-of-experts checkpoint: many
 * tiny tensors, every one split by rows over every file, so FILES x TENSORS
 * blocks in all.  This is the shape that makes consolidation metadata (not
 * data) the cost, for scripts/bench-meta.sh.  Serial: no MPI calls.
 *
 *   gen_moe DIR FILES TENSORS [--seed S]
 *       writes DIR/shard-RRRRR-model-00001-of-00001.safetensors, R = 1..FILES
 *       (SPEC 2), each holding one row block of each of the TENSORS tensors.
 *   gen_moe --check OUTDIR FILES TENSORS [--seed S]
 *       checks a consolidation of those files: every model-*.safetensors in
 *       OUTDIR together hold exactly the TENSORS tensors, each with its dtype,
 *       global shape and bytes.  Exit 0 if so, 1 with a message if not.
 *
 * Tensor t is model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight
 * (128 experts a layer), dtype BF16, F32 or F8_E4M3, 2..6 columns, and
 * 1..3 rows in each file (the same in every file).  Byte i of a tensor's
 * row-major bytes is a function of t, the seed and i only, so any
 * consolidation can be checked without keeping the input.
 *
 * Memory: the names and the shapes of one file's tensors, its header and a
 * write buffer; files are written one at a time, data in data-offset order.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stshard.h"

#define EXPERTS      128
#define NAME_MAX_LEN 80

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "gen_moe: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The model: names, dtypes, shapes and bytes, all a function of t and seed  */
/* ------------------------------------------------------------------------ */

typedef struct moe {
    unsigned long files, ntensors, seed;
    char *names;      /* ntensors x NAME_MAX_LEN */
    uint64_t *shapes; /* ntensors x 2: the block shape (rows per file, columns) */
} moe;

static void tensor_name(unsigned long t, char *out)
{
    static const char *const proj[] = {"gate_proj", "up_proj", "down_proj"};
    snprintf(out, NAME_MAX_LEN, "model.layers.%lu.mlp.experts.%lu.%s.weight", t / (EXPERTS * 3),
             (t / 3) % EXPERTS, proj[t % 3]);
}

static sts_dtype tensor_dtype(const moe *m, unsigned long t)
{
    static const sts_dtype dt[] = {STS_BF16, STS_F32, STS_F8_E4M3};
    return dt[(t + m->seed) % 3];
}

static uint64_t rows_per_file(const moe *m, unsigned long t)
{
    return 1 + (t * 5 + m->seed) % 3;
}

static uint64_t columns(const moe *m, unsigned long t)
{
    return 2 + (t * 7 + m->seed) % 5;
}

/* Byte i of tensor t's row-major bytes. */
static unsigned char byte_at(const moe *m, unsigned long t, uint64_t i)
{
    uint64_t s = t * 2654435761u + m->seed * 40503u;
    return (unsigned char)((i * 131 + s * 7 + 11 + (i >> 8) + (s >> 16)) & 0xFF);
}

static uint64_t row_bytes(const moe *m, unsigned long t)
{
    return columns(m, t) * sts_dtype_bits(tensor_dtype(m, t)) / 8;
}

static int moe_init(moe *m)
{
    m->names = malloc(m->ntensors * NAME_MAX_LEN);
    m->shapes = malloc(m->ntensors * 2 * sizeof *m->shapes);
    if (!m->names || !m->shapes)
        return die("out of memory for %lu tensors", m->ntensors);
    for (unsigned long t = 0; t < m->ntensors; t++) {
        tensor_name(t, m->names + t * NAME_MAX_LEN);
        m->shapes[2 * t] = rows_per_file(m, t);
        m->shapes[2 * t + 1] = columns(m, t);
    }
    return 0;
}

static void moe_free(moe *m)
{
    free(m->names);
    free(m->shapes);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */
/* ------------------------------------------------------------------------ */

/* DCP_SHARDING_INFO of file f in Python's json.dumps spacing. */
static char *sharding_info(const moe *m, unsigned long f)
{
    size_t cap = m->ntensors * (NAME_MAX_LEN + 48) + 4, at = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[at++] = '{';
    for (unsigned long t = 0; t < m->ntensors; t++)
        at += (size_t)snprintf(s + at, cap - at, "%s\"%s\": {\"saved_offsets\": [%llu, 0]}",
                               t ? ", " : "", m->names + t * NAME_MAX_LEN,
                               (unsigned long long)(f * rows_per_file(m, t)));
    snprintf(s + at, cap - at, "}");
    return s;
}

/* qsort has no context argument: the data offsets being sorted by (serial tool). */
static const uint64_t *g_begin;
static int cmp_order(const void *x, const void *y)
{
    uint64_t a = g_begin[*(const size_t *)x], b = g_begin[*(const size_t *)y];
    return a < b ? -1 : a > b;
}

static int write_data(FILE *fp, const moe *m, unsigned long f, const size_t *order)
{
    unsigned char buf[1 << 16];
    size_t used = 0;
    for (unsigned long k = 0; k < m->ntensors; k++) {
        unsigned long t = order[k];
        uint64_t rb = row_bytes(m, t), n = rb * rows_per_file(m, t);
        uint64_t first = f * n; /* rows are whole: the block is one run of the tensor's bytes */
        if (used + n > sizeof buf) {
            if (fwrite(buf, 1, used, fp) != used)
                return -1;
            used = 0;
        }
        for (uint64_t i = 0; i < n; i++)
            buf[used++] = byte_at(m, t, first + i);
    }
    return fwrite(buf, 1, used, fp) == used ? 0 : -1;
}

static int write_file(const char *dir, const moe *m, unsigned long f, sts_tensor_desc *desc,
                      uint64_t *begin, uint64_t *end, size_t *order)
{
    char path[4096];
    char *info = sharding_info(m, f);
    sts_meta_entry meta[3] = {
        {"DCP_SHARDING_INFO", info}, {"DCP_VERSION", "1.0"}, {"format", "pt"}};
    void *hdr = NULL;
    size_t hlen = 0;
    sts_diag diag;
    FILE *fp = NULL;
    int rc = 1;
    if (!info)
        return die("out of memory");
    if (sts_header_encode(desc, m->ntensors, meta, 3, STS_LAYOUT_CANONICAL, 0, &hdr, &hlen, begin,
                          end, &diag) != STS_OK) {
        die("header of file %lu: %s", f + 1, diag.message);
        goto done;
    }
    /* Every file has the same shapes, so the same data order: sort once. */
    if (f == 0) {
        for (size_t i = 0; i < m->ntensors; i++)
            order[i] = i;
        g_begin = begin;
        qsort(order, m->ntensors, sizeof *order, cmp_order);
    }
    snprintf(path, sizeof path, "%s/shard-%05lu-model-00001-of-00001.safetensors", dir, f + 1);
    fp = fopen(path, "wb");
    if (!fp) {
        die("cannot create %s: %s", path, strerror(errno));
        goto done;
    }
    if (fwrite(hdr, 1, hlen, fp) != hlen || write_data(fp, m, f, order) != 0) {
        die("write error on %s", path);
        goto done;
    }
    rc = 0;
done:
    if (fp && fclose(fp) != 0 && rc == 0)
        rc = die("write error on %s", path);
    sts_free(hdr);
    free(info);
    return rc;
}

/* mkdir -p */
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
            return die("cannot create directory %s: %s", p, strerror(errno));
        p[i] = dir[i];
    }
    return 0;
}

static int generate(const char *dir, moe *m)
{
    sts_tensor_desc *desc = malloc(m->ntensors * sizeof *desc);
    uint64_t *begin = malloc(m->ntensors * sizeof *begin);
    uint64_t *end = malloc(m->ntensors * sizeof *end);
    size_t *order = malloc(m->ntensors * sizeof *order);
    int rc = 1;
    if (make_dir(dir))
        goto done;
    if (!desc || !begin || !end || !order) {
        die("out of memory");
        goto done;
    }
    for (unsigned long t = 0; t < m->ntensors; t++)
        desc[t] = (sts_tensor_desc){m->names + t * NAME_MAX_LEN, tensor_dtype(m, t), 2,
                                    m->shapes + 2 * t};
    rc = 0;
    for (unsigned long f = 0; rc == 0 && f < m->files; f++)
        rc = write_file(dir, m, f, desc, begin, end, order);
done:
    free(desc);
    free(begin);
    free(end);
    free(order);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Checking a consolidation                                                  */
/* ------------------------------------------------------------------------ */

/* The tensor index of a generated name, or -1. */
static long tensor_of(const moe *m, const char *name)
{
    static const char *const proj[] = {"gate_proj", "up_proj", "down_proj"};
    unsigned long layer, expert;
    char p[16], again[NAME_MAX_LEN];
    if (sscanf(name, "model.layers.%lu.mlp.experts.%lu.%15[a-z_].weight", &layer, &expert, p) != 3)
        return -1;
    for (unsigned long k = 0; k < 3; k++) {
        unsigned long t = layer * EXPERTS * 3 + expert * 3 + k;
        if (strcmp(p, proj[k]) != 0 || expert >= EXPERTS || t >= m->ntensors)
            continue;
        tensor_name(t, again);
        if (strcmp(again, name) == 0)
            return (long)t;
    }
    return -1;
}

/* Checks one tensor entry of an output file against the formula. */
static int check_tensor(FILE *fp, const char *path, uint64_t data_start, const moe *m,
                        const sts_tensor_info *ti, unsigned char *seen)
{
    long t = tensor_of(m, ti->name);
    uint64_t rows, n;
    if (t < 0)
        return die("%s: unexpected tensor '%s'", path, ti->name);
    if (seen[t]++)
        return die("%s: tensor '%s' appears twice", path, ti->name);
    rows = rows_per_file(m, (unsigned long)t) * m->files;
    if (ti->dtype != tensor_dtype(m, (unsigned long)t) || ti->ndim != 2 || ti->shape[0] != rows ||
        ti->shape[1] != columns(m, (unsigned long)t))
        return die("%s: tensor '%s' has the wrong dtype or shape", path, ti->name);
    n = rows * row_bytes(m, (unsigned long)t);
    if (ti->end - ti->begin != n || fseek(fp, (long)(data_start + ti->begin), SEEK_SET) != 0)
        return die("%s: tensor '%s': bad data offsets", path, ti->name);
    for (uint64_t i = 0; i < n; i++) {
        int c = fgetc(fp);
        if (c != byte_at(m, (unsigned long)t, i))
            return die("%s: tensor '%s': byte %llu is wrong", path, ti->name,
                       (unsigned long long)i);
    }
    return 0;
}

static int check_file(const char *path, const moe *m, unsigned char *seen)
{
    sts_header *h = NULL;
    uint64_t data_start = 0;
    sts_diag diag;
    FILE *fp;
    int rc = 0;
    if (sts_header_read_file(path, &h, &data_start, &diag) != STS_OK)
        return die("%s: %s", path, diag.message);
    fp = fopen(path, "rb");
    if (!fp)
        rc = die("cannot open %s: %s", path, strerror(errno));
    for (size_t i = 0; rc == 0 && i < sts_header_count(h); i++)
        rc = check_tensor(fp, path, data_start, m, sts_header_tensor(h, i), seen);
    if (fp)
        fclose(fp);
    sts_header_free(h);
    return rc;
}

static int check(const char *dir, const moe *m)
{
    unsigned char *seen = calloc(m->ntensors ? m->ntensors : 1, 1);
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t nfiles = 0, len;
    int rc = 0;
    if (!seen || !d) {
        free(seen);
        if (d)
            closedir(d);
        return die("cannot read %s", dir);
    }
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char path[4096];
        len = strlen(e->d_name);
        if (strncmp(e->d_name, "model-", 6) != 0 || len < 12 ||
            strcmp(e->d_name + len - 12, ".safetensors") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rc = check_file(path, m, seen);
        nfiles++;
    }
    closedir(d);
    for (unsigned long t = 0; rc == 0 && t < m->ntensors; t++)
        if (!seen[t])
            rc = die("tensor '%s' is missing from %s", m->names + t * NAME_MAX_LEN, dir);
    if (rc == 0)
        printf("gen_moe: %s: %lu tensors in %zu file(s) are correct\n", dir, m->ntensors, nfiles);
    free(seen);
    return rc;
}

static int count_arg(const char *s, const char *what, unsigned long min, unsigned long max,
                     unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    *out = strtoul(s, &end, 10);
    if (!*s || *s == '-' || *end || errno || *out < min || *out > max)
        return die("bad %s '%s' (%lu..%lu)", what, s, min, max);
    return 0;
}

int main(int argc, char **argv)
{
    const char *pos[3] = {NULL, NULL, NULL};
    int npos = 0, checking = 0, rc;
    moe m;
    memset(&m, 0, sizeof m);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check")) {
            checking = 1;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            if (count_arg(argv[++i], "seed", 0, 1000000, &m.seed))
                return 2;
        } else if (argv[i][0] != '-' && npos < 3) {
            pos[npos++] = argv[i];
        } else {
            npos = -1;
            break;
        }
    }
    if (npos != 3)
        return die("usage: gen_moe [--check] DIR FILES TENSORS [--seed S]"), 2;
    if (count_arg(pos[1], "file count", 1, 99999, &m.files) ||
        count_arg(pos[2], "tensor count", 1, 10000000, &m.ntensors))
        return 2;
    if (moe_init(&m)) {
        moe_free(&m);
        return 1;
    }
    rc = checking ? check(pos[0], &m) : generate(pos[0], &m);
    moe_free(&m);
    return rc;
}
