/*
 * verify.c - strict validation of a safetensors file or a checkpoint
 * directory, reading headers only (never tensor data).
 *
 * A directory is checked as what it holds (ckptscan.c decides, for every
 * command): an index with its model files, a single model.safetensors, or a
 * set of rank files whose blocks must tile every global tensor exactly.  Every problem is reported,
 * not only the first.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "ckptscan.h"
#include "internal.h"
#include "path.h"

#define INDEX_NAME  "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define SHARDING    "DCP_SHARDING_INFO"

/* Per tensor, at most this many gaps, overlaps or dtype mismatches are listed. */
#define MAX_LISTED 16

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return sts__add_u64(a, b, &r) ? UINT64_MAX : r;
}

/* ------------------------------------------------------------------------ */
/* Problem reporting                                                         */
/* ------------------------------------------------------------------------ */

typedef struct vctx {
    sts_problem_fn fn;
    void *ud;
    size_t count;
    int first;
} vctx;

static void problem(vctx *v, const char *file, int code, const char *fmt, ...) STS_PRINTF(4, 5);

static void problem(vctx *v, const char *file, int code, const char *fmt, ...)
{
    char msg[sizeof((sts_diag *)0)->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (v->count++ == 0)
        v->first = code;
    if (v->fn)
        v->fn(v->ud, file, code, msg);
}

/* A library diag about file, without the "file: " and "ErrorName: " prefixes that the
 * callback's file and code already give. */
static void problem_diag(vctx *v, const char *file, const sts_diag *diag)
{
    const char *m = diag->message, *name = sts_errname(diag->code);
    size_t n = strlen(file);
    if (strncmp(m, file, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
        m += n + 2;
    n = strlen(name);
    if (strncmp(m, name, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
        m += n + 2;
    problem(v, file, diag->code, "%s", m);
}

/* Appends "[a:b, c:d]" for the region lo..hi (or offsets + shape when hi is NULL). */
static void fmt_region(char *buf, size_t len, uint32_t ndim, const uint64_t *lo, const uint64_t *hi,
                       const uint64_t *shape)
{
    size_t at = strlen(buf);
    at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "[");
    for (uint32_t d = 0; d < ndim && at < len; d++) {
        uint64_t end = hi ? hi[d] : lo[d] + shape[d];
        at += (size_t)snprintf(buf + at, len - at, "%s%llu:%llu", d ? ", " : "",
                               (unsigned long long)lo[d], (unsigned long long)end);
    }
    if (at < len)
        snprintf(buf + at, len - at, "]");
}

static void fmt_shape(char *buf, size_t len, uint32_t ndim, const uint64_t *shape)
{
    size_t at = (size_t)snprintf(buf, len, "[");
    for (uint32_t d = 0; d < ndim && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, "%s%llu", d ? ", " : "",
                               (unsigned long long)shape[d]);
    if (at < len)
        snprintf(buf + at, len - at, "]");
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Validates one file; decodes its sharding info when present or required.
 * Returns the header (caller frees) or NULL when the file is broken.
 */
static sts_header *check_file(vctx *v, const char *path, int need_sharding)
{
    sts_diag diag;
    sts_header *h = NULL;
    int rc = sts_header_read_file(path, &h, NULL, &diag);
    if (rc != STS_OK) {
        problem_diag(v, path, &diag);
        return NULL;
    }
    if (need_sharding || sts_header_meta_get(h, SHARDING)) {
        rc = sts_header_decode_sharding(h, &diag);
        if (rc != STS_OK) {
            problem_diag(v, path, &diag);
            sts_header_free(h);
            return NULL;
        }
    }
    return h;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

static void free_headers(sts_header **h, size_t n)
{
    for (size_t i = 0; h && i < n; i++)
        sts_header_free(h[i]);
    free(h);
}

/* ------------------------------------------------------------------------ */
/* Index + model files                                                       */
/* ------------------------------------------------------------------------ */

/* Reads the index; reports and returns NULL when it is unusable. */
static cJSON *read_index(vctx *v, const char *path, uint64_t *total, int *has_total)
{
    sts_diag diag;
    cJSON *root = NULL;
    const cJSON *meta;
    int rc = sts__mapping_read_json(path, &root, &diag);
    if (rc != STS_OK) {
        diag.code = rc == STS_E_MAPPING ? STS_E_INDEX : rc;
        problem_diag(v, path, &diag);
        return NULL;
    }
    meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    *has_total = sts__mapping_json_uint(cJSON_GetObjectItemCaseSensitive(meta, "total_size"), 0,
                                        18446744073709549568.0, total);
    if (!cJSON_IsObject(meta))
        problem(v, path, STS_E_INDEX, "no \"metadata\" object");
    else if (!*has_total)
        problem(v, path, STS_E_INDEX, "metadata.total_size is not a non-negative integer");
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "weight_map"))) {
        problem(v, path, STS_E_INDEX, "no \"weight_map\" object");
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* tmap: tensor -> position + 1 in files; files: the distinct file names, borrowed from wmap. */
static int index_tables(vctx *v, const char *path, const cJSON *wmap, sts_mapping *tmap,
                        const char ***files, size_t *nfiles)
{
    int rc = STS_OK;
    sts_mapping *fmap = NULL;
    const cJSON *item;
    size_t cap = 0;
    STS_CHECK(sts_mapping_create(&fmap));
    cJSON_ArrayForEach(item, wmap)
    {
        unsigned fi;
        if (!cJSON_IsString(item)) {
            problem(v, path, STS_E_INDEX, "weight_map[\"%s\"] is not a file name", item->string);
            continue;
        }
        if (sts_mapping_get(tmap, item->string) != 0) {
            problem(v, path, STS_E_INDEX, "weight_map names tensor \"%s\" twice", item->string);
            continue;
        }
        fi = sts_mapping_get(fmap, item->valuestring);
        if (fi == 0) {
            const char **p = sts__grow(*files, &cap, *nfiles + 1, sizeof *p, 16);
            STS_GOTO_IF(!p, NULL, STS_E_NOMEM, "out of memory");
            *files = p;
            (*files)[(*nfiles)++] = item->valuestring;
            fi = (unsigned)*nfiles;
            STS_CHECK(sts_mapping_set(fmap, item->valuestring, fi));
        }
        STS_CHECK(sts_mapping_set(tmap, item->string, fi));
    }
done:
    sts_mapping_free(fmap);
    return rc;
}

/* Every tensor of the mapped files must be in weight_map, pointing at its own file. */
static uint64_t check_file_tensors(vctx *v, const sts_mapping *tmap, const char *const *files,
                                   char **paths, sts_header **h, size_t nfiles)
{
    uint64_t sum = 0;
    for (size_t f = 0; f < nfiles; f++) {
        for (size_t i = 0; h[f] && i < sts_header_count(h[f]); i++) {
            const sts_tensor_info *t = sts_header_tensor(h[f], i);
            unsigned fi = sts_mapping_get(tmap, t->name);
            sum = sat_add(sum, t->end - t->begin);
            if (fi == 0)
                problem(v, paths[f], STS_E_INDEX, "tensor \"%s\" is not in the index weight_map",
                        t->name);
            else if (fi != f + 1)
                problem(v, paths[f], STS_E_INDEX,
                        "tensor \"%s\" is in this file but weight_map maps it to \"%s\"", t->name,
                        files[fi - 1]);
        }
    }
    return sum;
}

/*
 * Safetensors files in an index checkpoint's directory that its weight_map
 * does not name: loaders never read them, so they are leftovers (an earlier
 * save into more files) or the index lost entries.  (Rank files beside an
 * index make the directory ambiguous, an error before this is reached.)
 */
static void unnamed_files(vctx *v, const char *dir, char **names, size_t n, const char **files,
                          size_t nfiles)
{
    for (size_t i = 0; i < n; i++) {
        int named = 0;
        for (size_t f = 0; f < nfiles && !named; f++)
            named = strcmp(files[f], names[i]) == 0;
        if (!named) {
            char *p = sts__path_join(dir, names[i]);
            problem(v, p ? p : dir, STS_E_INDEX,
                    "%s does not name this file: no loader reads it (left from an earlier save?)",
                    INDEX_NAME);
            free(p);
        }
    }
}

static int check_index(vctx *v, const char *dir, char **names, size_t n)
{
    int rc = STS_OK;
    char *path = sts__path_join(dir, INDEX_NAME);
    cJSON *root = NULL;
    sts_mapping *tmap = NULL;
    const char **files = NULL;
    char **paths = NULL;
    sts_header **h = NULL;
    size_t nfiles = 0, nok = 0;
    uint64_t total = 0, sum;
    int has_total = 0;
    STS_GOTO_IF(!path, NULL, STS_E_NOMEM, "out of memory");
    root = read_index(v, path, &total, &has_total);
    if (!root)
        goto done;
    STS_CHECK(sts_mapping_create(&tmap));
    STS_CHECK(index_tables(v, path, cJSON_GetObjectItemCaseSensitive(root, "weight_map"), tmap,
                           &files, &nfiles));
    paths = sts__calloc_array(nfiles, sizeof *paths);
    h = sts__calloc_array(nfiles, sizeof *h);
    STS_GOTO_IF(!paths || !h, NULL, STS_E_NOMEM, "out of memory");
    for (size_t f = 0; f < nfiles; f++) {
        struct stat st;
        paths[f] = sts__path_join(dir, files[f]);
        STS_GOTO_IF(!paths[f], NULL, STS_E_NOMEM, "out of memory");
        if (stat(paths[f], &st) != 0 || !S_ISREG(st.st_mode))
            problem(v, path, STS_E_INDEX, "weight_map names \"%s\", which does not exist",
                    files[f]);
        else if ((h[f] = check_file(v, paths[f], 0)) != NULL)
            nok++;
    }
    for (size_t i = 0; i < sts_mapping_count(tmap); i++) {
        const char *name;
        unsigned fi;
        sts_mapping_at(tmap, i, &name, &fi);
        if (h[fi - 1] && sts_header_find(h[fi - 1], name, strlen(name)) < 0)
            problem(v, paths[fi - 1], STS_E_INDEX,
                    "weight_map maps tensor \"%s\" to this file, which does not hold it", name);
    }
    unnamed_files(v, dir, names, n, files, nfiles);
    sum = check_file_tensors(v, tmap, files, paths, h, nfiles);
    if (nok == nfiles && has_total && sum != total)
        problem(v, path, STS_E_INDEX,
                "metadata.total_size is %llu but the tensors of the mapped files hold %llu bytes",
                (unsigned long long)total, (unsigned long long)sum);
done:
    if (rc == STS_E_NOMEM)
        problem(v, dir, rc, "out of memory while checking %s", INDEX_NAME);
    free_headers(h, nfiles);
    free_names(paths, nfiles);
    free(files);
    sts_mapping_free(tmap);
    cJSON_Delete(root);
    free(path);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Rank files                                                                */
/* ------------------------------------------------------------------------ */

typedef struct rblock {
    size_t file;
    const sts_tensor_info *t;
} rblock;

typedef struct tensor_ctx {
    vctx *v;
    const char *dir;
    char *const *paths;
    const rblock *b;
    const uint64_t *global;
    int incomplete; /* a rank file was unreadable: its blocks are unknown, so gaps prove nothing */
} tensor_ctx;

static void coverage_problem(void *ud, const sts__coverage_issue *is)
{
    const tensor_ctx *c = ud;
    const sts_tensor_info *t = c->b[0].t;
    char r1[256] = "", r2[256] = "", r3[256] = "", g[256];
    if (is->code == STS_E_COVERAGE_GAP && c->incomplete)
        return;
    fmt_shape(g, sizeof g, t->ndim, c->global);
    if (is->code == STS_E_COVERAGE_OVERLAP && is->more) {
        problem(c->v, c->dir, is->code, "tensor \"%s\": further overlapping blocks not listed",
                t->name);
    } else if (is->code == STS_E_COVERAGE_OVERLAP) {
        const rblock *a = &c->b[is->a], *b = &c->b[is->b];
        fmt_region(r1, sizeof r1, t->ndim, a->t->saved_offsets, NULL, a->t->shape);
        fmt_region(r2, sizeof r2, t->ndim, b->t->saved_offsets, NULL, b->t->shape);
        fmt_region(r3, sizeof r3, t->ndim, is->lo, is->hi, NULL);
        problem(c->v, c->paths[a->file], is->code,
                "tensor \"%s\": block %s overlaps block %s of %s in %s", t->name, r1, r2,
                base_name(c->paths[b->file]), r3);
    } else if (is->more) {
        problem(c->v, c->dir, is->code, "tensor \"%s\": further uncovered regions not listed",
                t->name);
    } else if (!is->lo) {
        problem(c->v, c->dir, is->code,
                "tensor \"%s\": the blocks cover only part of the global shape %s", t->name, g);
    } else {
        fmt_region(r3, sizeof r3, t->ndim, is->lo, is->hi, NULL);
        problem(c->v, c->dir, is->code, "tensor \"%s\" (global shape %s): no block covers %s",
                t->name, g, r3);
    }
}

/* One global tensor: its blocks agree on rank and dtype, and tile the global box. */
static int check_tensor(vctx *v, const char *dir, char *const *paths, const rblock *b, size_t n,
                        int incomplete)
{
    int rc = STS_OK;
    const sts_tensor_info *t0 = b[0].t;
    uint64_t *offs = NULL, *shps = NULL, *global = NULL;
    size_t nd = t0->ndim, listed = 0;
    tensor_ctx c = {v, dir, paths, b, NULL, incomplete};
    for (size_t i = 1; i < n; i++) {
        if (b[i].t->ndim != t0->ndim) {
            problem(v, paths[b[i].file], STS_E_SHARDING_INFO,
                    "tensor \"%s\" has %u dimensions here but %u in %s", t0->name, b[i].t->ndim,
                    t0->ndim, base_name(paths[b[0].file]));
            rc = STS_E_SHARDING_INFO;
        } else if (b[i].t->dtype != t0->dtype && listed++ < MAX_LISTED) {
            problem(v, paths[b[i].file], STS_E_DTYPE_MISMATCH,
                    "tensor \"%s\" is %s here but %s in %s", t0->name,
                    sts_dtype_name(b[i].t->dtype), sts_dtype_name(t0->dtype),
                    base_name(paths[b[0].file]));
        }
    }
    if (listed > MAX_LISTED)
        problem(v, dir, STS_E_DTYPE_MISMATCH, "tensor \"%s\": further dtype mismatches not listed",
                t0->name);
    if (rc != STS_OK)
        return STS_OK;
    offs = sts__malloc_array(n * nd + 1, sizeof *offs);
    shps = sts__malloc_array(n * nd + 1, sizeof *shps);
    global = sts__malloc_array(nd + 1, sizeof *global);
    STS_GOTO_IF(!offs || !shps || !global, NULL, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        memcpy(offs + i * nd, b[i].t->saved_offsets, nd * sizeof *offs);
        memcpy(shps + i * nd, b[i].t->shape, nd * sizeof *shps);
    }
    c.global = global;
    rc = sts__coverage_check(t0->ndim, n, offs, shps, MAX_LISTED, coverage_problem, &c, global);
    if (rc == STS_E_VALIDATION_OVERFLOW)
        problem(v, dir, rc, "tensor \"%s\": a block's offset + size overflows 64 bits", t0->name);
    rc = rc == STS_E_NOMEM ? rc : STS_OK;
done:
    free(offs);
    free(shps);
    free(global);
    return rc;
}

/* Groups the blocks of all valid rank files by tensor name (first-seen order). */
static int group_blocks(sts_header **h, size_t nfiles, rblock **out, size_t **start,
                        size_t *ntensors)
{
    int rc = STS_OK;
    sts_mapping *tmap = NULL;
    size_t nblocks = 0, k = 0;
    size_t *tid = NULL, *fill = NULL;
    rblock *b = NULL;
    STS_CHECK(sts_mapping_create(&tmap));
    for (size_t f = 0; f < nfiles; f++)
        nblocks += h[f] ? sts_header_count(h[f]) : 0;
    tid = sts__malloc_array(nblocks, sizeof *tid);
    b = sts__malloc_array(nblocks, sizeof *b);
    STS_GOTO_IF(!tid || !b, NULL, STS_E_NOMEM, "out of memory");
    for (size_t f = 0; f < nfiles; f++) {
        for (size_t i = 0; h[f] && i < sts_header_count(h[f]); i++) {
            const sts_tensor_info *t = sts_header_tensor(h[f], i);
            unsigned id = sts_mapping_get(tmap, t->name);
            if (id == 0) {
                id = (unsigned)sts_mapping_count(tmap) + 1;
                STS_CHECK(sts_mapping_set(tmap, t->name, id));
            }
            tid[k] = id - 1;
            b[k++] = (rblock){f, t};
        }
    }
    /* Counting sort by tensor: start[t]..start[t+1] are tensor t's blocks, in file order. */
    *ntensors = sts_mapping_count(tmap);
    *start = sts__calloc_array(*ntensors + 1, sizeof **start);
    fill = sts__calloc_array(*ntensors + 1, sizeof *fill);
    *out = sts__malloc_array(nblocks, sizeof **out);
    STS_GOTO_IF(!*start || !fill || !*out, NULL, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < nblocks; i++)
        (*start)[tid[i] + 1]++;
    for (size_t t = 0; t < *ntensors; t++)
        (*start)[t + 1] += (*start)[t];
    for (size_t i = 0; i < nblocks; i++)
        (*out)[(*start)[tid[i]] + fill[tid[i]]++] = b[i];
done:
    free(tid);
    free(fill);
    free(b);
    sts_mapping_free(tmap);
    return rc;
}

static int check_ranks(vctx *v, const char *dir, char **names, size_t n)
{
    int rc = STS_OK;
    char **paths = sts__calloc_array(n, sizeof *paths);
    sts_header **h = sts__calloc_array(n, sizeof *h);
    rblock *b = NULL;
    size_t *start = NULL, ntensors = 0, nfiles = 0;
    int incomplete = 0;
    STS_GOTO_IF(!paths || !h, NULL, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        paths[nfiles] = sts__path_join(dir, names[i]);
        STS_GOTO_IF(!paths[nfiles], NULL, STS_E_NOMEM, "out of memory");
        h[nfiles] = check_file(v, paths[nfiles], 1);
        incomplete |= h[nfiles] == NULL;
        nfiles++;
    }
    STS_CHECK(group_blocks(h, nfiles, &b, &start, &ntensors));
    for (size_t t = 0; t < ntensors; t++)
        STS_CHECK(check_tensor(v, dir, paths, b + start[t], start[t + 1] - start[t], incomplete));
done:
    if (rc == STS_E_NOMEM)
        problem(v, dir, rc, "out of memory while checking the rank files");
    free(b);
    free(start);
    free_headers(h, n);
    free_names(paths, n);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Entry point                                                               */
/* ------------------------------------------------------------------------ */

/* The directory is checked as what ckptscan.c says it holds, as every command reads it. */
static void check_dir(vctx *v, const char *dir)
{
    sts_diag diag;
    sts__ckptscan scan;
    int rc = sts__ckptscan_dir(dir, &scan, &diag);
    char *p = NULL;
    if (rc == STS_E_EMPTY_INPUT) {
        problem(v, dir, rc, "no safetensors files in the directory");
    } else if (rc != STS_OK) {
        problem_diag(v, scan.culprit ? scan.culprit : dir, &diag);
    } else if (scan.kind == STS_CKPT_INDEXED) {
        check_index(v, dir, scan.names, scan.n);
    } else if (scan.kind == STS_CKPT_FILE) {
        p = sts__path_join(dir, SINGLE_NAME);
        if (p)
            sts_header_free(check_file(v, p, 0));
        else
            problem(v, dir, STS_E_NOMEM, "out of memory");
    } else {
        check_ranks(v, dir, scan.names, scan.n);
    }
    free(p);
    sts__ckptscan_free(&scan);
}

int sts_verify_path(const char *path, sts_problem_fn fn, void *ud, size_t *nproblems)
{
    vctx v = {fn, ud, 0, STS_OK};
    struct stat st;
    if (!path) {
        problem(&v, "", STS_E_ARG, "no path given");
    } else if (stat(path, &st) != 0) {
        int e = errno;
        problem(&v, path, sts__err_from_errno(e), "%s", strerror(e));
    } else if (S_ISDIR(st.st_mode)) {
        check_dir(&v, path);
    } else {
        sts_header_free(check_file(&v, path, sts__ckptscan_is_rank_name(base_name(path))));
    }
    if (nproblems)
        *nproblems = v.count;
    return v.count ? v.first : STS_OK;
}
