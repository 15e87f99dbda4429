/*
 * consolidate_index.c - model.safetensors.index.json, byte for byte what
 * Python writes, non-ASCII escaped as \uXXXX with surrogate pairs:
 *  - canonical layout: json.dumps(index, indent=2, sort_keys=True) + "\n"
 *    (the Hugging Face save_pretrained form), names in code-point order
 *    (= UTF-8 byte order);
 *  - pytorch layout: json.dump(index, f, indent=2) as PyTorch's
 *    consolidate_safetensors_files writes it (_write_overall_metadata_file):
 *    no final newline, and weight_map in the order its dict was filled -
 *    output file after output file, each file's tensors in its header order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "consolidate.h"
#include "json_write.h"
#include "mpiio.h"

/* Writes s as a JSON string with Python's ensure_ascii escaping. */
static void put_string(FILE *f, const char *s)
{
    /* A failed write shows in ferror(f), which the caller checks before the rename. */
    (void)sts__json_write_file(f, s, STS_JSON_ASCII);
}

static int cmp_name(const void *x, const void *y)
{
    const sts_plan_tensor *a = *(const sts_plan_tensor *const *)x;
    const sts_plan_tensor *b = *(const sts_plan_tensor *const *)y;
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, n);
    if (c)
        return c;
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

/*
 * PyTorch fills weight_map file by file (its output files in the order the
 * mapping first names them) and, within a file, in the file's header order,
 * which is the mapping's order.  The plan lists a file's tensors by data
 * offset, which in this layout is that same order (ties of empty tensors
 * included); files go by the place their first tensor has in the mapping.
 */
static int cmp_first_given(const void *x, const void *y)
{
    const sts_plan_tensor *a = *(const sts_plan_tensor *const *)x;
    const sts_plan_tensor *b = *(const sts_plan_tensor *const *)y;
    return a->given < b->given ? -1 : a->given > b->given;
}

/* PyTorch's order into v: files by their first tensor's place, then each file's tensors. */
static int pytorch_order(const sts_plan *p, const sts_plan_tensor **v)
{
    size_t n = 0;
    const sts_plan_tensor **first;
    if (p->ntensors == 0)
        return STS_OK;
    first = sts__malloc_array(p->nfiles, sizeof *first);
    if (!first)
        return STS_E_NOMEM;
    for (size_t i = 0; i < p->nfiles; i++)
        first[i] = &p->tensors[p->files[i].first_tensor];
    qsort(first, p->nfiles, sizeof *first, cmp_first_given);
    for (size_t i = 0; i < p->nfiles; i++) {
        const sts_plan_file *F = &p->files[first[i]->file];
        for (size_t m = 0; m < F->ntensors; m++)
            v[n++] = &p->tensors[F->first_tensor + m];
    }
    free(first);
    return STS_OK;
}

static int write_body(FILE *f, const sts_plan *p, sts_diag *diag)
{
    int pytorch = p->layout == STS_LAYOUT_PYTORCH;
    const sts_plan_tensor **v = sts__malloc_array(p->ntensors, sizeof *v);
    if (!v)
        return sts__fail(diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < p->ntensors; i++)
        v[i] = &p->tensors[i];
    if (!pytorch)
        qsort(v, p->ntensors, sizeof *v, cmp_name);
    else if (pytorch_order(p, v) != STS_OK) {
        free(v);
        return sts__fail(diag, STS_E_NOMEM, "out of memory");
    }
    fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {",
            (unsigned long long)p->total_bytes);
    for (size_t i = 0; i < p->ntensors; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        put_string(f, v[i]->name);
        fputs(": ", f);
        put_string(f, p->files[v[i]->file].name);
    }
    fputs(p->ntensors ? "\n  }\n}" : "}\n}", f);
    if (!pytorch)
        fputc('\n', f);
    free(v);
    return STS_OK;
}

int sts__consolidate_index_write(const sts_plan *p, const char *dir, int fsync_it, sts_diag *diag)
{
    int rc = STS_OK;
    char *final_path = sts__path_join(dir, "model.safetensors.index.json");
    char *tmp = final_path ? sts__path_tmp(final_path) : NULL;
    FILE *f = NULL;
    STS_GOTO_IF(!final_path || !tmp, diag, STS_E_NOMEM, "out of memory");
    unlink(tmp);
    f = fopen(tmp, "wx");
    STS_GOTO_IF(!f, diag, sts__err_from_errno(errno), "%s: %s", tmp, strerror(errno));
    STS_CHECK(write_body(f, p, diag));
    STS_GOTO_IF(fflush(f) != 0 || ferror(f), diag, sts__err_from_errno(errno), "%s: %s", tmp,
                strerror(errno));
    STS_GOTO_IF(fsync_it && fsync(fileno(f)) != 0, diag, sts__err_from_errno(errno),
                "%s: fsync failed: %s", tmp, strerror(errno));
    STS_GOTO_IF(fclose(f) != 0, diag, sts__err_from_errno(errno), "%s: %s", tmp, strerror(errno));
    f = NULL;
    STS_CHECK(sts__mpiio_rename(tmp, final_path, diag));
done:
    if (f)
        fclose(f);
    if (rc != STS_OK && tmp)
        unlink(tmp);
    free(tmp);
    free(final_path);
    return rc;
}
