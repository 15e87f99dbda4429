/*
 * plan_layout.c - the planner's second stage (see plan.h): output files,
 * their headers, tensor offsets and the stream, from one summary per tensor.
 * Pure: no MPI, no I/O.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

/* ---- output files ------------------------------------------------------- */

/* The reference writer's order: dtype rank descending, then name bytewise. */
static int cmp_canonical(size_t a, size_t b, const void *ctx)
{
    const builder *B = ctx;
    const tacc *x = &B->t[a], *y = &B->t[b];
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return sts__plan_name_cmp(x->name, x->name_len, y->name, y->name_len);
}

/* Appends "'name'" to a list of at most 3 names for a message. */
static void list_name(char *buf, size_t len, size_t count, const char *name)
{
    size_t k = strlen(buf);
    if (count < 3)
        snprintf(buf + k, len - k, "%s'%s'", count ? ", " : "", name);
    else if (count == 3)
        snprintf(buf + k, len - k, ", ...");
}

static int assign_mapping(builder *B)
{
    char missing[512] = "", unmapped[512] = "";
    size_t nmissing = 0, nunmapped = 0;
    for (size_t i = 0; i < B->o->nmap; i++) {
        const sts_plan_map_entry *e = &B->o->map[i];
        long id = sts__plan_lookup(B, e->name, strlen(e->name));
        if (e->file_index == 0)
            return sts__fail(B->diag, STS_E_MAPPING, "mapping: tensor '%s' has file index 0",
                             e->name);
        if (e->file_index > B->file_count)
            B->file_count = e->file_index;
        if (id < 0) {
            list_name(missing, sizeof missing, nmissing++, e->name);
            continue;
        }
        B->t[id].file = e->file_index;
        B->t[id].fill_key = i;
    }
    if (nmissing)
        return sts__fail(B->diag, STS_E_MAPPING,
                         "the mapping names %zu tensor(s) that no input file has: %s", nmissing,
                         missing);
    for (size_t t = 0; t < B->nt; t++) {
        if (B->t[t].file)
            continue;
        if (B->o->drop_unmapped)
            B->ndropped++;
        else
            list_name(unmapped, sizeof unmapped, nunmapped++, B->t[t].name);
    }
    if (nunmapped)
        return sts__fail(B->diag, STS_E_MAPPING,
                         "%zu tensor(s) of the input are missing from the mapping: %s (they can "
                         "be dropped on request)",
                         nunmapped, unmapped);
    return STS_OK;
}

/*
 * Hugging Face's split: walk the tensors in order; one larger than the limit
 * becomes a shard of its own at once, while the open shard stays open;
 * otherwise a tensor that would push the open shard over the limit closes
 * it first.  Shards are numbered in the order they are closed.
 */
static int assign_size(builder *B)
{
    int rc = STS_OK;
    size_t *ord = sts__malloc_array(B->nt, sizeof *ord);
    size_t *tmp = sts__malloc_array(B->nt, sizeof *tmp);
    uint64_t max = B->o->max_file_size, cur = 0;
    unsigned nshards = 0;
    size_t cur_first = 0, cur_n = 0;
    STS_GOTO_IF(!ord || !tmp, B->diag, STS_E_NOMEM, "out of memory");
    for (size_t t = 0; t < B->nt; t++)
        ord[t] = t;
    sts__plan_sort_idx(ord, B->nt, tmp, cmp_canonical, B);
    /* The open shard's members are ord entries moved to tmp[cur_first..] as they join. */
    for (size_t i = 0; i < B->nt; i++) {
        tacc *T = &B->t[ord[i]];
        T->fill_key = i;
        if (T->nbytes > max) {
            T->file = ++nshards;
            continue;
        }
        if (cur_n > 0 && cur + T->nbytes > max) {
            ++nshards;
            for (size_t m = cur_first; m < cur_first + cur_n; m++)
                B->t[tmp[m]].file = nshards;
            cur_first += cur_n;
            cur_n = 0;
            cur = 0;
        }
        tmp[cur_first + cur_n++] = ord[i];
        cur += T->nbytes;
    }
    if (cur_n > 0) {
        ++nshards;
        for (size_t m = cur_first; m < cur_first + cur_n; m++)
            B->t[tmp[m]].file = nshards;
    }
    B->file_count = nshards;
done:
    free(ord);
    free(tmp);
    return rc;
}

static int assign_files(builder *B)
{
    if (B->o->map)
        return assign_mapping(B);
    if (B->o->max_file_size > 0)
        return assign_size(B);
    for (size_t t = 0; t < B->nt; t++) {
        B->t[t].file = 1;
        B->t[t].fill_key = t; /* first appearance: input file order, then header order */
    }
    B->file_count = 1;
    return STS_OK;
}

static int cmp_given(size_t a, size_t b, const void *ctx)
{
    const tacc *x = &((const builder *)ctx)->t[a], *y = &((const builder *)ctx)->t[b];
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    return x->fill_key < y->fill_key ? -1 : x->fill_key > y->fill_key;
}

static int cmp_offset(size_t a, size_t b, const void *ctx)
{
    const tacc *x = &((const builder *)ctx)->t[a], *y = &((const builder *)ctx)->t[b];
    if (x->out_off != y->out_off)
        return x->out_off < y->out_off ? -1 : 1;
    return x->fill_key < y->fill_key ? -1 : x->fill_key > y->fill_key;
}

/* Ranks that never write a header only measure it: its bytes would be a copy per rank. */
static int encode_header(const builder *B, sts_plan_file *F, const sts_tensor_desc *d, size_t n,
                         uint64_t *begin, uint64_t *end)
{
    static const sts_meta_entry fmt_pt = {"format", "pt"};
    const sts_meta_entry *meta = B->o->layout == STS_LAYOUT_CANONICAL ? &fmt_pt : NULL;
    size_t nmeta = meta ? 1 : 0;
    if (B->o->measure_only)
        return sts__header_encode_measure(d, n, meta, nmeta, B->o->layout, B->o->align,
                                          &F->header_len, begin, end, B->diag);
    return sts_header_encode(d, n, meta, nmeta, B->o->layout, B->o->align, &F->header,
                             &F->header_len, begin, end, B->diag);
}

/* Encodes one output file's header for tensors ids[0..n) and fixes their offsets. */
static int encode_file(builder *B, sts_plan_file *F, unsigned index, const size_t *ids, size_t n)
{
    int rc = STS_OK;
    sts_tensor_desc *d = sts__malloc_array(n, sizeof *d);
    uint64_t *begin = sts__malloc_array(n, sizeof *begin), *end = sts__malloc_array(n, sizeof *end);
    char name[64];
    STS_GOTO_IF(!d || !begin || !end, B->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const tacc *f = &B->t[ids[i]];
        d[i].name = f->name;
        d[i].dtype = f->dtype;
        d[i].ndim = f->ndim;
        d[i].shape = B->t[ids[i]].shape;
    }
    snprintf(name, sizeof name, "model-%05u-of-%05u.safetensors", index, B->file_count);
    F->name = sts__strdup(name);
    STS_GOTO_IF(!F->name, B->diag, STS_E_NOMEM, "out of memory");
    rc = encode_header(B, F, d, n, begin, end);
    if (rc != STS_OK) {
        sts__diag_prefix(B->diag, "output file %s", name);
        goto done;
    }
    F->data_size = 0;
    for (size_t i = 0; i < n; i++) {
        B->t[ids[i]].out_off = F->header_len + begin[i];
        if (end[i] > F->data_size)
            F->data_size = end[i];
    }
done:
    free(d);
    free(begin);
    free(end);
    return rc;
}

static void fill_tensor(const tacc *T, size_t fidx, sts_plan_tensor *o)
{
    o->name = T->name;
    o->name_len = T->name_len;
    o->dtype = T->dtype;
    o->ndim = T->ndim;
    o->shape = T->shape;
    o->nbytes = T->nbytes;
    o->file = (uint32_t)fidx;
    o->out_off = T->out_off;
    o->key = T->key;
    o->given = T->fill_key;
    o->first_block = T->first;
    o->nblocks = T->n;
    o->cost_blocks = T->cost_blocks ? T->cost_blocks : T->n;
    o->flags = T->flags;
}

/* Lays out one output file holding tensors ids[0..n) (sorted into output order here). */
static int add_file(builder *B, sts_plan *P, unsigned index, size_t *ids, size_t n, size_t first,
                    size_t *tmp, uint64_t *stream)
{
    int rc = STS_OK;
    sts_plan_file *F = &P->files[P->nfiles++];
    STS_CHECK(encode_file(B, F, index, ids, n));
    sts__plan_sort_idx(ids, n, tmp, cmp_offset, B);
    F->stream_off = *stream;
    F->first_tensor = first;
    F->ntensors = n;
    for (size_t m = 0; m < n; m++) {
        fill_tensor(&B->t[ids[m]], P->nfiles - 1, &P->tensors[first + m]);
        P->tensors[first + m].stream_off = *stream + (B->t[ids[m]].out_off - F->header_len);
    }
    STS_GOTO_IF(sts__add_u64(*stream, F->data_size, stream), B->diag, STS_E_VALIDATION_OVERFLOW,
                "output size overflows 64 bits");
done:
    return rc;
}

/* Groups the kept tensors into files, encodes the headers and lays out the stream. */
static int build_files(builder *B, sts_plan *P)
{
    int rc = STS_OK;
    size_t kept = B->nt - B->ndropped, n = 0;
    size_t *ids = sts__malloc_array(kept, sizeof *ids), *tmp = sts__malloc_array(kept, sizeof *tmp);
    uint64_t stream = 0;
    STS_GOTO_IF(!ids || !tmp, B->diag, STS_E_NOMEM, "out of memory");
    for (size_t t = 0; t < B->nt; t++)
        if (B->t[t].file)
            ids[n++] = t;
    sts__plan_sort_idx(ids, n, tmp, cmp_given, B);
    P->tensors = sts__calloc_array(n, sizeof *P->tensors);
    P->files = sts__calloc_array(n ? n : 1, sizeof *P->files);
    STS_GOTO_IF(!P->tensors || !P->files, B->diag, STS_E_NOMEM, "out of memory");
    if (B->file_count == 0)
        B->file_count = 1;
    P->file_count = B->file_count;
    P->layout = B->o->layout;
    P->ntensors = n;
    P->ndropped = B->ndropped;
    if (n == 0) /* nothing to consolidate: still one valid, empty file */
        STS_CHECK(add_file(B, P, 1, ids, 0, 0, tmp, &stream));
    for (size_t i = 0, j; i < n; i = j) {
        unsigned index = B->t[ids[i]].file;
        for (j = i; j < n && B->t[ids[j]].file == index; j++)
            ;
        STS_CHECK(add_file(B, P, index, ids + i, j - i, i, tmp, &stream));
    }
    P->total_bytes = stream;
    if (P->nfiles < n) { /* sized for the worst case, one file a tensor */
        sts_plan_file *f = sts__realloc_array(P->files, P->nfiles, sizeof *f);
        if (f)
            P->files = f;
    }
done:
    free(ids);
    free(tmp);
    return rc;
}

int sts__plan_layout(builder *B, sts_plan *P)
{
    int rc = assign_files(B);
    return rc == STS_OK ? build_files(B, P) : rc;
}

int sts__plan_layout_from_summaries(const sts_plan_summary *s, size_t n, const sts_plan_opts *opts,
                                    sts_plan **out, sts_diag *diag)
{
    int rc = STS_OK;
    builder B;
    sts_plan *P = calloc(1, sizeof *P);
    memset(&B, 0, sizeof B);
    B.o = opts;
    B.diag = diag;
    *out = NULL;
    B.t = sts__calloc_array(n ? n : 1, sizeof *B.t);
    STS_GOTO_IF(!P || !B.t, diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        tacc *T = &B.t[i];
        T->name = s[i].name;
        T->name_len = s[i].name_len;
        T->dtype = s[i].dtype;
        T->ndim = s[i].ndim;
        T->key = s[i].key;
        T->first = s[i].first_block;
        T->n = s[i].nblocks;
        T->cost_blocks = s[i].cost_blocks;
        T->flags = s[i].flags;
        T->shape = s[i].shape;
        T->nbytes = s[i].nbytes;
        B.nt = i + 1;
        STS_GOTO_IF(sts__plan_table_add(&B, i) != STS_OK, diag, STS_E_NOMEM, "out of memory");
    }
    STS_CHECK(sts__plan_layout(&B, P));
    *out = P;
    P = NULL;
done:
    sts__plan_free(P);
    sts__hashtab_free(&B.names);
    free(B.t);
    return rc;
}

static int cmp_tensor_given(const void *a, const void *b)
{
    const sts_plan_tensor *x = *(const sts_plan_tensor *const *)a;
    const sts_plan_tensor *y = *(const sts_plan_tensor *const *)b;
    return x->given < y->given ? -1 : x->given > y->given;
}

int sts__plan_layout_header(const sts_plan *p, size_t f, const sts_plan_opts *opts, void **out,
                            sts_diag *diag)
{
    static const sts_meta_entry fmt_pt = {"format", "pt"};
    const sts_meta_entry *meta = opts->layout == STS_LAYOUT_CANONICAL ? &fmt_pt : NULL;
    const sts_plan_file *F = &p->files[f];
    size_t n = F->ntensors, len = 0;
    const sts_plan_tensor **t = sts__malloc_array(n ? n : 1, sizeof *t);
    sts_tensor_desc *d = sts__malloc_array(n ? n : 1, sizeof *d);
    uint64_t *begin = sts__malloc_array(n ? n : 1, sizeof *begin);
    uint64_t *end = sts__malloc_array(n ? n : 1, sizeof *end);
    void *hdr = NULL;
    int rc = STS_OK;
    *out = NULL;
    STS_GOTO_IF(!t || !d || !begin || !end, diag, STS_E_NOMEM, "out of memory");
    /* The order encode_file() gave the encoder: the file's given order. */
    for (size_t i = 0; i < n; i++)
        t[i] = &p->tensors[F->first_tensor + i];
    qsort(t, n, sizeof *t, cmp_tensor_given);
    for (size_t i = 0; i < n; i++) {
        d[i].name = t[i]->name;
        d[i].dtype = t[i]->dtype;
        d[i].ndim = t[i]->ndim;
        d[i].shape = t[i]->shape;
    }
    rc = sts__header_encode_sized(d, n, meta, meta ? 1 : 0, opts->layout, opts->align,
                                  F->header_len, &hdr, &len, begin, end, diag);
    if (rc != STS_OK) {
        sts__diag_prefix(diag, "output file %s", F->name);
        goto done;
    }
    STS_GOTO_IF(len != F->header_len, diag, STS_E_INTERNAL,
                "output file %s: header of %zu bytes, %zu laid out", F->name, len, F->header_len);
    for (size_t i = 0; i < n; i++)
        STS_GOTO_IF(len + begin[i] != t[i]->out_off, diag, STS_E_INTERNAL,
                    "output file %s: tensor %s moved in the header", F->name, t[i]->name);
    *out = hdr;
    hdr = NULL;
done:
    sts_free(hdr);
    free(t);
    free(d);
    free(begin);
    free(end);
    return rc;
}
