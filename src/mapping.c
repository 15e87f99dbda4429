/*
 * mapping.c - the tensor -> output file mapping: an insertion-ordered table
 * with hash lookup, its JSON form, and the mapping of a reference model
 * directory (docs/format.md §4).
 *
 * cJSON is enough here: mapping and index files hold small integers and
 * names, never 64-bit offsets (docs/design.md explains why headers are not
 * parsed with it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "ckptscan.h"
#include "hashtab.h"
#include "internal.h"
#include "json_write.h"
#include "path.h"

/* An index or mapping file larger than this is not a mapping we should read whole. */
#define MAX_JSON_FILE (1ULL << 30)

#define INDEX_NAME  "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

typedef struct entry {
    char *name;
    size_t len;
    unsigned index;
} entry;

struct sts_mapping {
    entry *entries; /* insertion order */
    size_t count;
    size_t cap;
    sts__hashtab names; /* name -> position in entries */
};

static const char *entry_key(const void *ctx, size_t k, size_t *len)
{
    const sts_mapping *m = ctx;
    *len = m->entries[k].len;
    return m->entries[k].name;
}

int sts_mapping_create(sts_mapping **out)
{
    sts_mapping *m;
    if (!out)
        return STS_E_ARG;
    *out = NULL;
    m = calloc(1, sizeof *m);
    if (!m)
        return STS_E_NOMEM;
    sts__hashtab_init(&m->names, entry_key, m);
    *out = m;
    return STS_OK;
}

void sts_mapping_free(sts_mapping *m)
{
    if (!m)
        return;
    for (size_t k = 0; k < m->count; k++)
        free(m->entries[k].name);
    free(m->entries);
    sts__hashtab_free(&m->names);
    free(m);
}

int sts_mapping_set(sts_mapping *m, const char *name, unsigned file_index)
{
    size_t len;
    long k;
    entry *e;
    int rc;
    if (!m || !name || file_index == 0)
        return STS_E_ARG;
    len = strlen(name);
    k = sts__hashtab_find(&m->names, name, len);
    if (k >= 0) {
        m->entries[k].index = file_index;
        return STS_OK;
    }
    e = sts__grow(m->entries, &m->cap, m->count + 1, sizeof *e, 64);
    if (!e)
        return STS_E_NOMEM;
    m->entries = e;
    e = &m->entries[m->count];
    e->name = sts__strdup(name);
    if (!e->name)
        return STS_E_NOMEM;
    e->len = len;
    e->index = file_index;
    rc = sts__hashtab_insert(&m->names, m->count, sts__hashtab_hash(name, len), NULL);
    if (rc != STS_OK) {
        free(e->name);
        return rc < 0 ? rc : STS_E_NOMEM;
    }
    m->count++;
    return STS_OK;
}

unsigned sts_mapping_get(const sts_mapping *m, const char *name)
{
    long k;
    if (!m || !name)
        return 0;
    k = sts__hashtab_find(&m->names, name, strlen(name));
    return k >= 0 ? m->entries[k].index : 0;
}

size_t sts_mapping_count(const sts_mapping *m)
{
    return m ? m->count : 0;
}

int sts_mapping_at(const sts_mapping *m, size_t i, const char **name, unsigned *file_index)
{
    if (!m || i >= m->count)
        return STS_E_ARG;
    if (name)
        *name = m->entries[i].name;
    if (file_index)
        *file_index = m->entries[i].index;
    return STS_OK;
}

unsigned sts_mapping_file_count(const sts_mapping *m)
{
    unsigned hi = 0;
    for (size_t k = 0; m && k < m->count; k++)
        hi = m->entries[k].index > hi ? m->entries[k].index : hi;
    return hi;
}

/* ------------------------------------------------------------------------ */
/* JSON files                                                                */
/* ------------------------------------------------------------------------ */

int sts__mapping_read_json(const char *path, cJSON **out, sts_diag *diag)
{
    int rc = STS_OK;
    FILE *f = NULL;
    char *text = NULL;
    struct stat st;
    size_t got;
    *out = NULL;
    f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        rc = sts__fail(diag, sts__err_from_errno(e), "%s: %s", path, strerror(e));
        goto done;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = sts__fail(diag, STS_E_IO, "%s: not a regular file", path);
        goto done;
    }
    STS_GOTO_IF((uint64_t)st.st_size > MAX_JSON_FILE, diag, STS_E_IO,
                "%s: %lld bytes is too large for a JSON index or mapping", path,
                (long long)st.st_size);
    text = malloc((size_t)st.st_size + 1);
    STS_GOTO_IF(!text, diag, STS_E_NOMEM, "%s: out of memory", path);
    got = fread(text, 1, (size_t)st.st_size, f);
    STS_GOTO_IF(got != (size_t)st.st_size || ferror(f), diag, STS_E_IO, "%s: short read", path);
    *out = cJSON_ParseWithLength(text, got);
    if (!*out) {
        const char *at = cJSON_GetErrorPtr();
        long pos = at && at >= text && at <= text + got ? (long)(at - text) : -1;
        rc = sts__fail(diag, STS_E_MAPPING, "%s: not valid JSON (near byte %ld)", path, pos);
        goto done;
    }
done:
    if (f)
        fclose(f);
    free(text);
    return rc;
}

/* A JSON number that is an integer in [lo, hi]; doubles hold these exactly up to 2^53. */
int sts__mapping_json_uint(const cJSON *item, double lo, double hi, uint64_t *out)
{
    double v;
    if (!cJSON_IsNumber(item))
        return 0;
    v = item->valuedouble;
    if (!(v >= lo && v <= hi) || v != (double)(uint64_t)v)
        return 0;
    *out = (uint64_t)v;
    return 1;
}

int sts_mapping_load_json(const char *path, sts_mapping **out, sts_diag *diag)
{
    int rc = STS_OK;
    cJSON *root = NULL;
    const cJSON *item;
    sts_mapping *m = NULL;
    sts__diag_clear(diag);
    if (!path || !out)
        return sts__fail(diag, STS_E_ARG, "sts_mapping_load_json: NULL argument");
    *out = NULL;
    STS_CHECK(sts__mapping_read_json(path, &root, diag));
    STS_GOTO_IF(!cJSON_IsObject(root), diag, STS_E_MAPPING,
                "%s: a mapping must be a JSON object {\"tensor\": file_index}", path);
    STS_CHECK(sts_mapping_create(&m));
    cJSON_ArrayForEach(item, root)
    {
        uint64_t v;
        STS_GOTO_IF(!sts__mapping_json_uint(item, 1, 4294967295.0, &v), diag, STS_E_MAPPING,
                    "%s: value of \"%s\" is not a positive integer file index", path, item->string);
        STS_GOTO_IF(sts_mapping_get(m, item->string) != 0, diag, STS_E_MAPPING,
                    "%s: key \"%s\" appears twice", path, item->string);
        rc = sts_mapping_set(m, item->string, (unsigned)v);
        STS_GOTO_IF(rc != STS_OK, diag, rc, "%s: out of memory", path);
    }
    *out = m;
    m = NULL;
done:
    sts_mapping_free(m);
    cJSON_Delete(root);
    return rc;
}

/* Writes s as a JSON string; non-ASCII bytes pass through (the text stays UTF-8). */
static void write_json_string(FILE *f, const char *s)
{
    /* Errors show in ferror(f), which the caller checks once at the end. */
    (void)sts__json_write_file(f, s, STS__JSON_LONG_BF);
}

int sts_mapping_write_json(const sts_mapping *m, const char *path, sts_diag *diag)
{
    int to_stdout;
    FILE *f;
    int bad;
    sts__diag_clear(diag);
    if (!m || !path)
        return sts__fail(diag, STS_E_ARG, "sts_mapping_write_json: NULL argument");
    to_stdout = strcmp(path, "-") == 0;
    f = to_stdout ? stdout : fopen(path, "w");
    if (!f) {
        int e = errno;
        return sts__fail(diag, sts__err_from_errno(e), "%s: %s", path, strerror(e));
    }
    /* Python's json.dump(indent=2) shape, so diffs against HF tooling stay small. */
    fputc('{', f);
    for (size_t k = 0; k < m->count; k++) {
        fputs(k ? ",\n  " : "\n  ", f);
        write_json_string(f, m->entries[k].name);
        fprintf(f, ": %u", m->entries[k].index);
    }
    fputs(m->count ? "\n}\n" : "}\n", f);
    bad = ferror(f) != 0;
    bad |= to_stdout ? fflush(f) != 0 : fclose(f) != 0;
    if (bad)
        return sts__fail(diag, STS_E_IO, "%s: write failed", path);
    return STS_OK;
}

/* ------------------------------------------------------------------------ */
/* Reference model directories                                               */
/* ------------------------------------------------------------------------ */

/* Trailing run of ASCII digits of s[0..end); returns its start. */
static size_t digits_before(const char *s, size_t end)
{
    while (end > 0 && s[end - 1] >= '0' && s[end - 1] <= '9')
        end--;
    return end;
}

static int parse_uint(const char *s, size_t len, unsigned *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > 4294967295ULL)
            return 0;
    }
    *out = (unsigned)v;
    return 1;
}

int sts__mapping_parse_file_index(const char *name, unsigned *k, unsigned *n)
{
    static const char ext[] = ".safetensors";
    size_t len = strlen(name);
    size_t e = sizeof ext - 1;
    size_t nb, kb;
    /* Matches the regex -(\d+)-of-(\d+)\.safetensors$ from the right. */
    if (len < e || strcmp(name + len - e, ext) != 0)
        return 0;
    len -= e;
    nb = digits_before(name, len);
    if (nb == len || nb < 4 || memcmp(name + nb - 4, "-of-", 4) != 0)
        return 0;
    kb = digits_before(name, nb - 4);
    if (kb == nb - 4 || kb == 0 || name[kb - 1] != '-')
        return 0;
    return parse_uint(name + kb, nb - 4 - kb, k) && parse_uint(name + nb, len - nb, n);
}

typedef struct ref_file {
    const char *name; /* owned by the index JSON tree */
    unsigned index;
} ref_file;

static int cmp_ref_name(const void *a, const void *b)
{
    return strcmp(((const ref_file *)a)->name, ((const ref_file *)b)->name);
}

static int cmp_ref_index(const void *a, const void *b)
{
    unsigned x = ((const ref_file *)a)->index, y = ((const ref_file *)b)->index;
    return x < y ? -1 : x > y;
}

/*
 * Gives every distinct file its index: the parsed K when the parsed indices
 * are exactly 1..N, else its position among the names sorted bytewise.
 */
static void number_files(ref_file *files, size_t n)
{
    int parsed = 1;
    if (n == 0)
        return;
    for (size_t i = 0; i < n && parsed; i++) {
        unsigned total;
        parsed = sts__mapping_parse_file_index(files[i].name, &files[i].index, &total);
    }
    if (parsed) {
        qsort(files, n, sizeof *files, cmp_ref_index);
        for (size_t i = 0; i < n && parsed; i++)
            parsed = files[i].index == i + 1;
    }
    if (!parsed) {
        qsort(files, n, sizeof *files, cmp_ref_name);
        for (size_t i = 0; i < n; i++)
            files[i].index = (unsigned)(i + 1);
    }
    /* Lookups below go by name. */
    qsort(files, n, sizeof *files, cmp_ref_name);
}

static unsigned file_index_of(const ref_file *files, size_t n, const char *name)
{
    ref_file key = {name, 0};
    const ref_file *f = n ? bsearch(&key, files, n, sizeof *files, cmp_ref_name) : NULL;
    return f ? f->index : 0;
}

/* The distinct file names of weight_map (first-seen order), sorted by name. */
static int collect_files(const cJSON *wmap, ref_file **out, size_t *nout, const char *path,
                         sts_diag *diag)
{
    int rc = STS_OK;
    size_t n = 0, cap = 0;
    ref_file *files = NULL;
    sts_mapping *seen = NULL;
    const cJSON *item;
    STS_CHECK(sts_mapping_create(&seen));
    cJSON_ArrayForEach(item, wmap)
    {
        STS_GOTO_IF(!cJSON_IsString(item), diag, STS_E_INDEX,
                    "%s: weight_map[\"%s\"] is not a file name", path, item->string);
        if (sts_mapping_get(seen, item->valuestring) != 0)
            continue;
        STS_CHECK(sts_mapping_set(seen, item->valuestring, 1));
        {
            ref_file *f = sts__grow(files, &cap, n + 1, sizeof *f, 16);
            STS_GOTO_IF(!f, diag, STS_E_NOMEM, "%s: out of memory", path);
            files = f;
        }
        files[n].name = item->valuestring;
        files[n].index = 0;
        n++;
    }
    number_files(files, n);
    *out = files;
    *nout = n;
    files = NULL;
done:
    free(files);
    sts_mapping_free(seen);
    return rc;
}

static int mapping_from_index(const char *path, sts_mapping **out, sts_diag *diag)
{
    int rc = STS_OK;
    cJSON *root = NULL;
    const cJSON *wmap, *item;
    ref_file *files = NULL;
    size_t nfiles = 0;
    sts_mapping *m = NULL;
    rc = sts__mapping_read_json(path, &root, diag);
    if (rc == STS_E_MAPPING) {
        rc = STS_E_INDEX;
        if (diag)
            diag->code = rc;
    }
    if (rc != STS_OK)
        goto done;
    wmap = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    STS_GOTO_IF(!cJSON_IsObject(wmap), diag, STS_E_INDEX, "%s: no \"weight_map\" object", path);
    STS_CHECK(collect_files(wmap, &files, &nfiles, path, diag));
    STS_CHECK(sts_mapping_create(&m));
    cJSON_ArrayForEach(item, wmap)
    {
        STS_GOTO_IF(sts_mapping_get(m, item->string) != 0, diag, STS_E_INDEX,
                    "%s: weight_map names tensor \"%s\" twice", path, item->string);
        rc = sts_mapping_set(m, item->string, file_index_of(files, nfiles, item->valuestring));
        STS_GOTO_IF(rc != STS_OK, diag, rc, "%s: out of memory", path);
    }
    *out = m;
    m = NULL;
done:
    sts_mapping_free(m);
    free(files);
    cJSON_Delete(root);
    return rc;
}

static int mapping_from_single(const char *path, sts_mapping **out, sts_diag *diag)
{
    int rc = STS_OK;
    sts_header *h = NULL;
    sts_mapping *m = NULL;
    STS_CHECK(sts_header_read_file(path, &h, NULL, diag));
    STS_CHECK(sts_mapping_create(&m));
    for (size_t i = 0; i < sts_header_count(h); i++) {
        const sts_tensor_info *t = sts_header_tensor(h, i);
        STS_GOTO_IF(strlen(t->name) != t->name_len, diag, STS_E_MAPPING,
                    "%s: tensor name with an embedded NUL cannot be mapped", path);
        rc = sts_mapping_set(m, t->name, 1);
        STS_GOTO_IF(rc != STS_OK, diag, rc, "%s: out of memory", path);
    }
    *out = m;
    m = NULL;
done:
    sts_mapping_free(m);
    sts_header_free(h);
    return rc;
}

int sts_mapping_from_reference(const char *dir, sts_mapping **out, sts_diag *diag)
{
    int rc = STS_OK;
    char *index = NULL, *single = NULL;
    struct stat st;
    sts__ckptscan scan = {0};
    sts__diag_clear(diag);
    if (!dir || !out)
        return sts__fail(diag, STS_E_ARG, "sts_mapping_from_reference: NULL argument");
    *out = NULL;
    if (stat(dir, &st) != 0) {
        int e = errno;
        return sts__fail(diag, sts__err_from_errno(e), "%s: %s", dir, strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return sts__fail(diag, STS_E_NOENT, "%s: not a directory", dir);
    /* The reference is read as the reader would read it (ckptscan.c): an index, else
     * model.safetensors; rank files alone carry no file mapping. */
    rc = sts__ckptscan_dir(dir, &scan, diag);
    if (rc == STS_OK && scan.kind == STS_CKPT_SHARDED)
        rc = STS_E_EMPTY_INPUT;
    if (rc == STS_E_EMPTY_INPUT) {
        rc = sts__fail(diag, STS_E_NOENT, "%s: neither %s nor %s found", dir, INDEX_NAME,
                       SINGLE_NAME);
        goto done;
    }
    if (rc != STS_OK)
        goto done;
    index = sts__path_join(dir, INDEX_NAME);
    single = sts__path_join(dir, SINGLE_NAME);
    STS_GOTO_IF(!index || !single, diag, STS_E_NOMEM, "%s: out of memory", dir);
    if (scan.kind == STS_CKPT_INDEXED)
        rc = mapping_from_index(index, out, diag);
    else
        rc = mapping_from_single(single, out, diag);
done:
    sts__ckptscan_free(&scan);
    free(index);
    free(single);
    return rc;
}
