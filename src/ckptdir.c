/*
 * ckptdir.c - what a checkpoint path holds: a file, an index.json and the
 * model files its weight_map names, a model.safetensors, or a directory of
 * rank files; and, once the headers are known, whether the index agrees with
 * them.  Which form a directory holds is ckptscan.c's answer.  Runs on rank 0
 * only (reader.c broadcasts the result).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "ckptscan.h"
#include "mpiio.h"
#include "reader.h"

/* An index.json is small (one line per tensor); refuse absurd ones instead of reading them. */
#define MAX_INDEX_BYTES ((long)1 << 30)

static int flist_add(sts__strlist *l, const char *s)
{
    char **p = sts__grow(l->v, &l->cap, l->n + 1, sizeof *p, 16);
    if (!p)
        return STS_E_NOMEM;
    l->v = p;
    l->v[l->n] = sts__strdup(s);
    return l->v[l->n++] ? STS_OK : STS_E_NOMEM;
}

void sts__ckptdir_strlist_free(sts__strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_regular(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The rank files of a SHARDED scan, as paths under dir (the scan sorted them). */
static int rank_paths(const char *dir, const sts__ckptscan *scan, sts__strlist *out, sts_diag *diag)
{
    int rc = STS_OK;
    char *full = NULL;
    for (size_t i = 0; i < scan->n; i++) {
        full = sts__path_join(dir, scan->names[i]);
        STS_GOTO_IF(!full || flist_add(out, full) != STS_OK, diag, STS_E_NOMEM, "out of memory");
        free(full);
        full = NULL;
    }
done:
    free(full);
    return rc;
}

/* Reads a small JSON file whole (the index is metadata, not tensor data). */
static int read_small_json(const char *path, cJSON **out, sts_diag *diag)
{
    int rc = STS_OK;
    char *text = NULL;
    long size;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    STS_GOTO_IF(!f, diag, sts__err_from_errno(errno), "%s: %s", path, strerror(errno));
    STS_GOTO_IF(fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0, diag, STS_E_IO,
                "%s: cannot size file", path);
    STS_GOTO_IF(size > MAX_INDEX_BYTES, diag, STS_E_INDEX, "%s: %ld bytes is too large", path,
                size);
    rewind(f);
    text = malloc((size_t)size + 1);
    STS_GOTO_IF(!text, diag, STS_E_NOMEM, "out of memory");
    STS_GOTO_IF(fread(text, 1, (size_t)size, f) != (size_t)size, diag, STS_E_IO, "%s: short read",
                path);
    text[size] = '\0';
    *out = cJSON_Parse(text);
    STS_GOTO_IF(!*out, diag, STS_E_INDEX, "%s: not valid JSON", path);
done:
    free(text);
    if (f)
        fclose(f);
    return rc;
}

/* The distinct file names of the index's weight_map (sorted), as paths under dir. */
static int index_files(const char *dir, const cJSON *root, const char *ipath, sts__strlist *out,
                       sts_diag *diag)
{
    int rc = STS_OK;
    sts__strlist names = {0};
    char *full = NULL;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    const cJSON *it;
    STS_GOTO_IF(!cJSON_IsObject(map), diag, STS_E_INDEX, "%s: no \"weight_map\" object", ipath);
    cJSON_ArrayForEach(it, map)
    {
        STS_GOTO_IF(!cJSON_IsString(it) || strchr(it->valuestring, '/'), diag, STS_E_INDEX,
                    "%s: weight_map[\"%s\"] is not a file name in the directory", ipath,
                    it->string);
        STS_GOTO_IF(flist_add(&names, it->valuestring) != STS_OK, diag, STS_E_NOMEM,
                    "out of memory");
    }
    STS_GOTO_IF(names.n == 0, diag, STS_E_INDEX, "%s: weight_map is empty", ipath);
    qsort(names.v, names.n, sizeof *names.v, cmp_str);
    for (size_t i = 0; i < names.n; i++) {
        if (i > 0 && strcmp(names.v[i], names.v[i - 1]) == 0)
            continue;
        full = sts__path_join(dir, names.v[i]);
        STS_GOTO_IF(!full, diag, STS_E_NOMEM, "out of memory");
        STS_GOTO_IF(!is_regular(full), diag, STS_E_INDEX, "%s: names %s, which does not exist",
                    ipath, full);
        STS_GOTO_IF(flist_add(out, full) != STS_OK, diag, STS_E_NOMEM, "out of memory");
        free(full);
        full = NULL;
    }
done:
    free(full);
    sts__ckptdir_strlist_free(&names);
    return rc;
}

int sts__ckptdir_discover(const char *path, sts_ckpt_kind *kind, sts__strlist *files, void **index,
                          sts_diag *diag)
{
    int rc = STS_OK;
    struct stat sb;
    char *ipath = NULL, *single = NULL;
    cJSON *json = NULL;
    sts__ckptscan scan = {0};
    *index = NULL;
    STS_GOTO_IF(stat(path, &sb) != 0, diag, sts__err_from_errno(errno), "%s: %s", path,
                strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        *kind = STS_CKPT_FILE;
        STS_GOTO_IF(flist_add(files, path) != STS_OK, diag, STS_E_NOMEM, "out of memory");
        goto done;
    }
    STS_CHECK(sts__ckptscan_dir(path, &scan, diag));
    *kind = scan.kind;
    if (scan.kind == STS_CKPT_INDEXED) {
        ipath = sts__path_join(path, STS_INDEX_NAME);
        STS_GOTO_IF(!ipath, diag, STS_E_NOMEM, "out of memory");
        STS_CHECK(read_small_json(ipath, &json, diag));
        *index = json;
        STS_CHECK(index_files(path, json, ipath, files, diag));
    } else if (scan.kind == STS_CKPT_FILE) {
        single = sts__path_join(path, STS_SINGLE_NAME);
        STS_GOTO_IF(!single || flist_add(files, single) != STS_OK, diag, STS_E_NOMEM,
                    "out of memory");
    } else {
        STS_CHECK(rank_paths(path, &scan, files, diag));
    }
done:
    sts__ckptscan_free(&scan);
    free(ipath);
    free(single);
    return rc;
}

/* ---- the index agrees with the headers --------------------------------- */

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int sts__ckptdir_check_index(const sts_reader *r, const void *index, sts_diag *diag)
{
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
    const cJSON *it;
    size_t n = 0;
    cJSON_ArrayForEach(it, map)
    {
        long t = sts_reader_find(r, it->string);
        const char *real;
        if (t < 0)
            return sts__fail(diag, STS_E_INDEX,
                             "index weight_map names tensor '%s', which is in no file", it->string);
        real = base_name(r->paths[sts__reader_file0(r, (size_t)t)]);
        if (strcmp(real, it->valuestring) != 0)
            return sts__fail(diag, STS_E_INDEX, "index puts tensor '%s' in %s, but it is in %s",
                             it->string, it->valuestring, real);
        n++;
    }
    /* Equal counts with every entry found means no tensor is missing from the map
     * (cJSON keeps duplicate keys, so a repeated name would make n too large). */
    if (n != r->ntensors)
        return sts__fail(diag, STS_E_INDEX, "index weight_map has %zu entries for %zu tensors", n,
                         r->ntensors);
    return STS_OK;
}

void sts__ckptdir_index_free(void *index)
{
    cJSON_Delete(index);
}
