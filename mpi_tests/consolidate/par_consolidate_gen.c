/*
 * par_consolidate_gen.c - rank-file generator and output checker for the
 * consolidation tests (see par_consolidate_gen.h).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "par_consolidate_gen.h"

static uint32_t seed(const char *name)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h & 0xFFFF;
}

static unsigned char value_seeded(uint32_t s, uint64_t i)
{
    return (unsigned char)(i * 131u + s * 7u + 11u + (i >> 8));
}

unsigned char gen_value(const char *name, uint64_t i)
{
    return value_seeded(seed(name), i);
}

void gen_init(gen_model *m, uint32_t nfiles)
{
    memset(m, 0, sizeof *m);
    m->nfiles = nfiles;
}

void gen_free(gen_model *m)
{
    for (size_t i = 0; i < m->nt; i++)
        free(m->t[i].name);
    free(m->t);
    free(m->b);
    memset(m, 0, sizeof *m);
}

size_t gen_tensor_add(gen_model *m, const char *name, sts_dtype dt, uint32_t ndim,
                      const uint64_t *shape)
{
    gen_tensor *t;
    if (m->nt == m->capt) {
        m->capt = m->capt ? m->capt * 2 : 64;
        m->t = realloc(m->t, m->capt * sizeof *m->t);
    }
    t = &m->t[m->nt];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->dt = dt;
    t->ndim = ndim;
    for (uint32_t k = 0; k < ndim; k++)
        t->shape[k] = shape[k];
    return m->nt++;
}

void gen_block_add(gen_model *m, size_t t, uint32_t file, const uint64_t *off, const uint64_t *sh)
{
    gen_block *b;
    if (m->nb == m->capb) {
        m->capb = m->capb ? m->capb * 2 : 64;
        m->b = realloc(m->b, m->capb * sizeof *m->b);
    }
    b = &m->b[m->nb++];
    memset(b, 0, sizeof *b);
    b->t = t;
    b->file = file;
    for (uint32_t k = 0; k < m->t[t].ndim; k++) {
        b->off[k] = off[k];
        b->sh[k] = sh[k];
    }
}

/* torch.chunk: part i of n split in k. */
static void chunk(uint64_t n, uint64_t k, uint64_t i, uint64_t *lo, uint64_t *len)
{
    uint64_t step = n ? (n + k - 1) / k : 0;
    *lo = i * step < n ? i * step : n;
    *len = (*lo + step < n ? *lo + step : n) - *lo;
}

static void split_dims(gen_model *m, size_t t, const uint32_t *dims, const uint64_t *parts, int nd)
{
    const gen_tensor *T = &m->t[t];
    uint64_t total = 1;
    for (int i = 0; i < nd; i++)
        total *= parts[i];
    for (uint64_t j = 0; j < total; j++) {
        uint64_t off[GEN_MAXDIM] = {0}, sh[GEN_MAXDIM], rest = j;
        for (uint32_t k = 0; k < T->ndim; k++)
            sh[k] = T->shape[k];
        for (int i = nd; i-- > 0;) {
            chunk(T->shape[dims[i]], parts[i], rest % parts[i], &off[dims[i]], &sh[dims[i]]);
            rest /= parts[i];
        }
        gen_block_add(m, t, (uint32_t)(j % m->nfiles), off, sh);
    }
}

void gen_split(gen_model *m, size_t t, gen_how how)
{
    const gen_tensor *T = &m->t[t];
    uint64_t zero[GEN_MAXDIM] = {0}, P = m->nfiles;
    uint32_t dims[3] = {0, 1, 2};
    uint64_t parts[3] = {P, 1, 1};
    switch (how) {
    case GEN_ROW:
        split_dims(m, t, dims, parts, 1);
        break;
    case GEN_COL:
        dims[0] = T->ndim - 1;
        split_dims(m, t, dims, parts, 1);
        break;
    case GEN_GRID:
        /* P = a * b (* c): the most even factorisation, over up to three dimensions. */
        parts[0] = 1;
        for (uint64_t a = 1; a * a <= P; a++)
            if (P % a == 0)
                parts[0] = a;
        parts[1] = P / parts[0];
        if (T->ndim >= 3 && parts[1] % 2 == 0) {
            parts[1] /= 2;
            parts[2] = 2;
        }
        split_dims(m, t, dims, parts, T->ndim >= 3 ? 3 : 2);
        break;
    case GEN_REPLICA:
        for (uint32_t f = 0; f < m->nfiles; f++)
            gen_block_add(m, t, f, zero, T->shape);
        break;
    case GEN_ONE:
        gen_block_add(m, t, (uint32_t)(t % m->nfiles), zero, T->shape);
        break;
    }
}

/* ---- writing rank files ------------------------------------------------------- */

static uint32_t byteview(const gen_tensor *T, const uint64_t *in, uint64_t *out)
{
    unsigned bits = sts_dtype_bits(T->dt);
    if (T->ndim == 0) {
        out[0] = bits / 8;
        return 1;
    }
    for (uint32_t k = 0; k < T->ndim; k++)
        out[k] = in[k];
    out[T->ndim - 1] = in[T->ndim - 1] * bits / 8;
    return T->ndim;
}

static int write_all(int fd, const unsigned char *buf, uint64_t len, uint64_t off)
{
    for (uint64_t done = 0; done < len;) {
        ssize_t w = pwrite(fd, buf + done, len - done, (off_t)(off + done));
        if (w <= 0)
            return -1;
        done += (uint64_t)w;
    }
    return 0;
}

/* Streams block b's bytes to fd at off (its data is contiguous there), batching rows. */
static int write_block(const gen_model *m, const gen_block *b, int fd, uint64_t off)
{
    const gen_tensor *T = &m->t[b->t];
    uint64_t g[GEN_MAXDIM], bo[GEN_MAXDIM] = {0}, bs[GEN_MAXDIM], idx[GEN_MAXDIM] = {0};
    uint32_t n = byteview(T, T->shape, g);
    uint64_t rows = 1, run, cap, fill = 0, at = off;
    uint32_t s = seed(T->name);
    unsigned char *buf;
    int rc = 0;
    byteview(T, b->sh, bs);
    if (T->ndim)
        byteview(T, b->off, bo);
    run = bs[n - 1];
    for (uint32_t k = 0; k + 1 < n; k++)
        rows *= bs[k];
    if (run == 0 || rows == 0)
        return 0;
    cap = run > (4u << 20) ? run : (4u << 20) / run * run;
    if (cap > rows * run)
        cap = rows * run;
    buf = malloc(cap);
    for (uint64_t r = 0; r < rows && rc == 0; r++) {
        uint64_t flat = 0;
        for (uint32_t k = 0; k < n; k++)
            flat = flat * g[k] + bo[k] + idx[k];
        for (uint64_t j = 0; j < run; j++)
            buf[fill + j] = value_seeded(s, flat + j);
        fill += run;
        if (fill + run > cap || r + 1 == rows) {
            rc = write_all(fd, buf, fill, at);
            at += fill;
            fill = 0;
        }
        for (uint32_t k = n - 1; k-- > 0;) {
            if (++idx[k] < bs[k])
                break;
            idx[k] = 0;
        }
    }
    free(buf);
    return rc;
}

/* DCP_SHARDING_INFO of file f: {"name": {"saved_offsets": [..]}, ...}. */
static char *sharding_info(const gen_model *m, uint32_t f)
{
    const char *sep = m->python_spacing ? ", " : ",", *col = m->python_spacing ? ": " : ":";
    size_t cap = 256, len = 0;
    char *s = malloc(cap);
    len += (size_t)snprintf(s, cap, "{");
    for (size_t i = 0, n = 0; i < m->nb; i++) {
        const gen_block *b = &m->b[i];
        if (b->file != f)
            continue;
        if (cap - len < strlen(m->t[b->t].name) + 64 + 24 * GEN_MAXDIM) {
            cap = cap * 2 + strlen(m->t[b->t].name) + 64 + 24 * GEN_MAXDIM;
            s = realloc(s, cap);
        }
        len += (size_t)snprintf(s + len, cap - len, "%s\"%s\"%s{\"saved_offsets\"%s[",
                                n++ ? sep : "", m->t[b->t].name, col, col);
        for (uint32_t k = 0; k < m->t[b->t].ndim; k++)
            len += (size_t)snprintf(s + len, cap - len, "%s%llu", k ? sep : "",
                                    (unsigned long long)b->off[k]);
        len += (size_t)snprintf(s + len, cap - len, "]}");
    }
    s = realloc(s, len + 2);
    strcpy(s + len, "}");
    return s;
}

static int write_file(const gen_model *m, const char *dir, uint32_t f)
{
    size_t n = 0, hlen = 0;
    sts_tensor_desc *d = calloc(m->nb + 1, sizeof *d);
    const gen_block **bl = calloc(m->nb + 1, sizeof *bl);
    uint64_t *begin = calloc(m->nb + 1, sizeof *begin), *end = calloc(m->nb + 1, sizeof *end);
    char *info = sharding_info(m, f), path[4096];
    sts_meta_entry meta[3] = {
        {"DCP_SHARDING_INFO", info}, {"DCP_VERSION", "1.0"}, {"format", "pt"}};
    void *hdr = NULL;
    int fd = -1, rc = -1;
    for (size_t i = 0; i < m->nb; i++) {
        if (m->b[i].file != f)
            continue;
        bl[n] = &m->b[i];
        d[n].name = m->t[m->b[i].t].name;
        d[n].dtype = m->t[m->b[i].t].dt;
        d[n].ndim = m->t[m->b[i].t].ndim;
        d[n++].shape = m->b[i].sh;
    }
    if (n == 0) { /* a rank with no data writes no file */
        rc = 0;
        goto done;
    }
    if (sts_header_encode(d, n, meta, 3, STS_LAYOUT_CANONICAL, 0, &hdr, &hlen, begin, end, NULL))
        goto done;
    snprintf(path, sizeof path, "%s/shard-%05u-model-00001-of-00001.safetensors", dir, f + 1);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || pwrite(fd, hdr, hlen, 0) != (ssize_t)hlen)
        goto done;
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = write_block(m, bl[i], fd, hlen + begin[i]);
done:
    if (fd >= 0)
        close(fd);
    sts_free(hdr);
    free(d);
    free(bl);
    free(begin);
    free(end);
    free(info);
    return rc;
}

int gen_write(const gen_model *m, const char *dir)
{
    mkdir(dir, 0777);
    for (uint32_t f = 0; f < m->nfiles; f++)
        if (write_file(m, dir, f) != 0)
            return -1;
    return 0;
}

/* ---- expectations -------------------------------------------------------------- */

static int dropped(const char *name, const char *const *drop)
{
    for (; drop && *drop; drop++)
        if (strcmp(*drop, name) == 0)
            return 1;
    return 0;
}

static uint64_t tensor_bytes(const gen_tensor *T)
{
    uint64_t n = 1, nb = 0;
    for (uint32_t k = 0; k < T->ndim; k++)
        n *= T->shape[k];
    sts_dtype_nbytes(T->dt, n, &nb);
    return nb;
}

int gen_expected(const gen_model *m, const char *const *drop, unsigned char **buf, size_t *len)
{
    sts_tensor_desc *d = calloc(m->nt + 1, sizeof *d);
    uint64_t *begin = calloc(m->nt + 1, sizeof *begin), *end = calloc(m->nt + 1, sizeof *end);
    size_t *ids = calloc(m->nt + 1, sizeof *ids), n = 0, hlen = 0;
    sts_meta_entry meta = {"format", "pt"};
    void *hdr = NULL;
    int rc = -1;
    uint64_t total = 0;
    for (size_t i = 0; i < m->nt; i++) {
        if (dropped(m->t[i].name, drop))
            continue;
        ids[n] = i;
        d[n].name = m->t[i].name;
        d[n].dtype = m->t[i].dt;
        d[n].ndim = m->t[i].ndim;
        d[n++].shape = m->t[i].shape;
        total += tensor_bytes(&m->t[i]);
    }
    if (sts_header_encode(d, n, &meta, 1, STS_LAYOUT_CANONICAL, 0, &hdr, &hlen, begin, end, NULL))
        goto done;
    *len = hlen + total;
    *buf = malloc(*len + 1);
    memcpy(*buf, hdr, hlen);
    for (size_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < end[i] - begin[i]; j++)
            (*buf)[hlen + begin[i] + j] = gen_value(m->t[ids[i]].name, j);
    rc = 0;
done:
    sts_free(hdr);
    free(d);
    free(begin);
    free(end);
    free(ids);
    return rc;
}

unsigned char *gen_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    buf[n < 0 ? 0 : n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

void gen_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            gen_rmtree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- checking a consolidated checkpoint -------------------------------------- */

typedef struct wentry {
    const char *name, *file;
} wentry;

typedef struct checker {
    wentry *wm; /* the index's weight_map, sorted by name */
    size_t nwm;
    const gen_model *m;
    const char *const *drop;
    size_t *sorted; /* model tensors by name */
    int *found;
    uint64_t sample;
    int bad;
} checker;

static const gen_model *sort_model;

static int cmp_model_name(const void *a, const void *b)
{
    return strcmp(sort_model->t[*(const size_t *)a].name, sort_model->t[*(const size_t *)b].name);
}

static int cmp_wentry(const void *a, const void *b)
{
    return strcmp(((const wentry *)a)->name, ((const wentry *)b)->name);
}

static const char *mapped_file(const checker *K, const char *name)
{
    wentry key = {name, NULL}, *e = bsearch(&key, K->wm, K->nwm, sizeof key, cmp_wentry);
    return e ? e->file : NULL;
}

static long find_tensor(const checker *K, const char *name)
{
    size_t lo = 0, hi = K->m->nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(K->m->t[K->sorted[mid]].name, name);
        if (c == 0)
            return (long)K->sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static void problem(checker *K, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(checker *K, const char *fmt, ...)
{
    va_list ap;
    if (K->bad++ >= 10)
        return;
    fprintf(stderr, "  check: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Compares the bytes [lo, hi) of a tensor stored at off in fd. */
static int check_range(int fd, uint64_t off, const char *name, uint64_t lo, uint64_t hi)
{
    unsigned char buf[1 << 16];
    uint32_t s = seed(name);
    while (lo < hi) {
        size_t n = hi - lo < sizeof buf ? (size_t)(hi - lo) : sizeof buf;
        if (pread(fd, buf, n, (off_t)(off + lo)) != (ssize_t)n)
            return -1;
        for (size_t j = 0; j < n; j++)
            if (buf[j] != value_seeded(s, lo + j))
                return -1;
        lo += n;
    }
    return 0;
}

static void check_data(checker *K, int fd, uint64_t off, const char *name, uint64_t len)
{
    int bad = 0;
    if (K->sample == 0 || len <= 2 * 65536 + K->sample) {
        bad = check_range(fd, off, name, 0, len);
    } else {
        bad |= check_range(fd, off, name, 0, 65536);
        bad |= check_range(fd, off, name, len - 65536, len);
        for (uint64_t j = 0; j < K->sample && !bad; j++) {
            uint64_t at = 65536 + (len - 2 * 65536) / K->sample * j + (j * 7919) % 4096;
            bad |= check_range(fd, off, name, at, at + 1);
        }
    }
    if (bad)
        problem(K, "tensor '%s': wrong bytes", name);
}

static void check_file(checker *K, const char *dir, const char *fname)
{
    char path[4096];
    sts_header *h = NULL;
    uint64_t start = 0;
    int fd;
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    if (sts_header_read_file(path, &h, &start, NULL) != STS_OK) {
        problem(K, "%s: not a valid safetensors file", path);
        return;
    }
    fd = open(path, O_RDONLY);
    for (size_t i = 0; i < sts_header_count(h); i++) {
        const sts_tensor_info *ti = sts_header_tensor(h, i);
        long t = find_tensor(K, ti->name);
        const gen_tensor *T = t >= 0 ? &K->m->t[t] : NULL;
        const char *w = mapped_file(K, ti->name);
        if (!T || dropped(T->name, K->drop)) {
            problem(K, "%s: unexpected tensor '%s'", path, ti->name);
            continue;
        }
        if (K->found[t]++)
            problem(K, "tensor '%s' appears twice (in %s)", ti->name, path);
        if (!w || strcmp(w, fname) != 0)
            problem(K, "index does not map '%s' to %s", ti->name, fname);
        if (ti->dtype != T->dt || ti->ndim != T->ndim ||
            memcmp(ti->shape, T->shape, T->ndim * sizeof(uint64_t)) != 0) {
            problem(K, "tensor '%s': wrong dtype or shape in %s", ti->name, path);
            continue;
        }
        check_data(K, fd, start + ti->begin, T->name, ti->end - ti->begin);
    }
    close(fd);
    sts_header_free(h);
}

int gen_check_dir(const gen_model *m, const char *dir, const char *const *drop, uint64_t sample)
{
    checker K = {NULL, 0, m, drop, NULL, NULL, sample, 0};
    char path[4096];
    size_t len = 0, nfiles = 0;
    unsigned char *text;
    cJSON *root = NULL, *wmap, *e, *tot;
    const char *seen[1024];
    uint64_t total = 0;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    text = gen_read_file(path, &len);
    root = text ? cJSON_Parse((const char *)text) : NULL;
    wmap = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    tot = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "metadata"),
                                           "total_size");
    if (!cJSON_IsObject(wmap) || !cJSON_IsNumber(tot)) {
        problem(&K, "%s: missing or invalid index", path);
        goto done;
    }
    K.sorted = malloc((m->nt + 1) * sizeof *K.sorted);
    K.found = calloc(m->nt + 1, sizeof *K.found);
    for (size_t i = 0; i < m->nt; i++)
        K.sorted[i] = i;
    sort_model = m;
    qsort(K.sorted, m->nt, sizeof *K.sorted, cmp_model_name);
    K.wm = calloc((size_t)cJSON_GetArraySize(wmap) + 1, sizeof *K.wm);
    cJSON_ArrayForEach(e, wmap)
    {
        if (cJSON_IsString(e)) {
            K.wm[K.nwm].name = e->string;
            K.wm[K.nwm++].file = e->valuestring;
        }
    }
    qsort(K.wm, K.nwm, sizeof *K.wm, cmp_wentry);
    cJSON_ArrayForEach(e, wmap)
    {
        size_t k = 0;
        if (!cJSON_IsString(e))
            continue;
        while (k < nfiles && strcmp(seen[k], e->valuestring) != 0)
            k++;
        if (k == nfiles && nfiles < 1024) {
            seen[nfiles++] = e->valuestring;
            check_file(&K, dir, e->valuestring);
        }
    }
    for (size_t i = 0; i < m->nt; i++) {
        if (dropped(m->t[i].name, drop))
            continue;
        total += tensor_bytes(&m->t[i]);
        if (K.found[i] != 1)
            problem(&K, "tensor '%s' is missing from the output", m->t[i].name);
    }
    if ((uint64_t)tot->valuedouble != total)
        problem(&K, "index total_size is %.0f, not %llu", tot->valuedouble,
                (unsigned long long)total);
done:
    cJSON_Delete(root);
    free(text);
    free(K.sorted);
    free(K.found);
    free(K.wm);
    return K.bad;
}
