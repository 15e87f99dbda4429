/*
 * reader.c - opening a checkpoint for offset reads: find its files, read each
 * header once, exchange the parsed headers, and build one tensor table that
 * is identical on every rank.
 *
 * Phases of sts_reader_open (each ends with an error agreement):
 *  1. rank 0 inspects the path (file, index.json, model.safetensors or a
 *     directory of rank files) and broadcasts the file list;
 *  2. file i's header is read by rank i mod P and packed into a compact
 *     record (names, dtypes, shapes, saved offsets, absolute data offsets);
 *  3. sts__exchange_allgather (exchange.c) gives every rank every record;
 *  4. every rank builds the same table from the same bytes: blocks sorted by
 *     tensor, identical duplicates dropped, global shapes and coverage;
 *  5. rank 0 checks the index's weight_map against the headers.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "mpiio.h"
#include "reader.h"

/* Header records are sequences of u64 in a byte buffer (exchange.h). */
static int wbuf_put(sts_bytes *b, uint64_t v)
{
    return sts__bytes_put(b, &v, sizeof v);
}

/* Appends len bytes and a NUL, zero-padded to whole words. */
static int wbuf_put_bytes(sts_bytes *b, const char *s, size_t len)
{
    static const char zeros[8];
    int rc = sts__bytes_put(b, s, len);
    return rc == STS_OK ? sts__bytes_put(b, zeros, 8 - len % 8) : rc;
}

/* Broadcasts kind and file list from rank 0: [kind, nfiles, total length] then the names. */
static int bcast_files(sts_reader *r, sts__strlist *files, sts_diag *diag)
{
    int rc = STS_OK;
    uint64_t head[3] = {0, 0, 0};
    char *packed = NULL;
    if (r->rank == 0) {
        head[0] = (uint64_t)r->kind;
        head[1] = files->n;
        for (size_t i = 0; i < files->n; i++)
            head[2] += strlen(files->v[i]) + 1;
    }
    STS_MPI_CALL(diag, MPI_Bcast, (head, 3, MPI_UINT64_T, 0, r->comm));
    STS_GOTO_IF(head[2] > INT_MAX, diag, STS_E_UNSUPPORTED, "file list too long");
    packed = malloc(head[2] ? head[2] : 1);
    STS_GOTO_IF(!packed, diag, STS_E_NOMEM, "out of memory");
    if (r->rank == 0) {
        char *p = packed;
        for (size_t i = 0; i < files->n; i++) {
            size_t l = strlen(files->v[i]) + 1;
            memcpy(p, files->v[i], l);
            p += l;
        }
    }
    STS_MPI_CALL(diag, MPI_Bcast, (packed, (int)head[2], MPI_CHAR, 0, r->comm));
    r->kind = (sts_ckpt_kind)head[0];
    r->paths = sts__calloc_array(head[1], sizeof *r->paths);
    r->fh = sts__malloc_array(head[1], sizeof *r->fh);
    STS_GOTO_IF(!r->paths || !r->fh, diag, STS_E_NOMEM, "out of memory");
    r->nfiles = head[1];
    for (size_t i = 0, off = 0; i < r->nfiles; i++) {
        r->fh[i] = MPI_FILE_NULL;
        r->paths[i] = sts__strdup(packed + off);
        STS_GOTO_IF(!r->paths[i], diag, STS_E_NOMEM, "out of memory");
        off += strlen(packed + off) + 1;
    }
done:
    free(packed);
    return rc;
}

/* ---- phase 2: one header -> one record ---------------------------------- */

/*
 * Record layout, all u64: file index, tensor count, then per tensor: dtype,
 * ndim, absolute data offset, name length, shape[ndim], offsets[ndim], and the
 * name with a NUL, padded to whole words.
 */
static int pack_header(sts_bytes *b, uint32_t file, const sts_header *h, uint64_t data_start)
{
    size_t n = sts_header_count(h);
    int rc = STS_OK;
    STS_CHECK(wbuf_put(b, file));
    STS_CHECK(wbuf_put(b, n));
    for (size_t i = 0; i < n; i++) {
        const sts_tensor_info *t = sts_header_tensor(h, i);
        STS_CHECK(wbuf_put(b, (uint64_t)t->dtype));
        STS_CHECK(wbuf_put(b, t->ndim));
        STS_CHECK(wbuf_put(b, data_start + t->begin));
        STS_CHECK(wbuf_put(b, t->name_len));
        for (uint32_t d = 0; d < t->ndim; d++)
            STS_CHECK(wbuf_put(b, t->shape[d]));
        for (uint32_t d = 0; d < t->ndim; d++)
            STS_CHECK(wbuf_put(b, t->saved_offsets ? t->saved_offsets[d] : 0));
        STS_CHECK(wbuf_put_bytes(b, t->name, t->name_len));
    }
done:
    return rc;
}

/* Reads and packs the headers of the files this rank is responsible for. */
static int read_my_headers(sts_reader *r, sts_bytes *b, sts_diag *diag)
{
    int rc = STS_OK;
    sts_header *h = NULL;
    for (size_t i = (size_t)r->rank; i < r->nfiles; i += (size_t)r->nranks) {
        uint64_t data_start = 0;
        STS_CHECK(sts_header_read_file(r->paths[i], &h, &data_start, diag));
        r->stats.header_bytes += data_start;
        /* Rank files carry their block positions; plain files hold whole tensors.  In a
         * directory of rank files every file must say where its blocks go: taking a file
         * without DCP_SHARDING_INFO as whole tensors could silently accept a wrong shape. */
        if (r->kind == STS_CKPT_SHARDED || sts_header_meta_get(h, "DCP_SHARDING_INFO") != NULL) {
            rc = sts_header_decode_sharding(h, diag);
            if (rc != STS_OK) {
                sts__diag_prefix(diag, "%s", r->paths[i]);
                goto done;
            }
        }
        STS_GOTO_IF(pack_header(b, (uint32_t)i, h, data_start) != STS_OK, diag, STS_E_NOMEM,
                    "out of memory");
        sts_header_free(h);
        h = NULL;
    }
done:
    sts_header_free(h);
    return rc;
}

/* ---- phase 3: exchange -------------------------------------------------- */

/* Collective, agreed (rc: this rank's result so far).  Every rank's records, back to back. */
static int exchange(sts_reader *r, int rc, sts_bytes *mine, sts_diag *diag)
{
    uint64_t *start = sts__malloc_array((size_t)r->nranks, sizeof *start);
    uint64_t *len = sts__malloc_array((size_t)r->nranks, sizeof *len);
    if (rc == STS_OK && (!start || !len))
        rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    rc = sts__exchange_allgather(r->comm, rc, mine, &r->records, start, len, diag);
    if (rc == STS_OK)
        r->records_len = sts__exchange_compact(r->records, start, len, r->nranks);
    free(start);
    free(len);
    return rc;
}

/* ---- phase 4: the tensor table ------------------------------------------ */

typedef struct rblock_tmp {
    sts__rblock b;
    const char *name;
    uint64_t name_len;
    sts_dtype dtype;
    uint32_t ndim;
} rblock_tmp;

static int cmp_block(const void *pa, const void *pb)
{
    const rblock_tmp *a = pa, *b = pb;
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, n);
    if (c != 0)
        return c;
    if (a->name_len != b->name_len)
        return a->name_len < b->name_len ? -1 : 1;
    for (uint32_t d = 0; d < a->ndim && d < b->ndim; d++) {
        if (a->b.offsets[d] != b->b.offsets[d])
            return a->b.offsets[d] < b->b.offsets[d] ? -1 : 1;
    }
    for (uint32_t d = 0; d < a->ndim && d < b->ndim; d++) {
        if (a->b.shape[d] != b->b.shape[d])
            return a->b.shape[d] < b->b.shape[d] ? -1 : 1;
    }
    if (a->ndim != b->ndim)
        return a->ndim < b->ndim ? -1 : 1;
    return a->b.file < b->b.file ? -1 : (a->b.file > b->b.file);
}

/* Walks the records; with out == NULL it only counts and bounds-checks. */
static int decode_records(const unsigned char *records, size_t len, rblock_tmp *out, size_t *count,
                          sts_diag *diag)
{
    const uint64_t *w = (const uint64_t *)(const void *)records;
    size_t nw = len / 8, k = 0, pos = 0;
    while (pos < nw) {
        uint64_t file, nt;
        if (nw - pos < 2)
            return sts__fail(diag, STS_E_INTERNAL, "truncated header record");
        file = w[pos++];
        nt = w[pos++];
        for (uint64_t i = 0; i < nt; i++) {
            uint64_t ndim, nlen;
            if (nw - pos < 4)
                return sts__fail(diag, STS_E_INTERNAL, "truncated header record");
            ndim = w[pos + 1];
            nlen = w[pos + 3];
            if (ndim > (nw - pos) / 2 || nlen / 8 + 1 > nw - pos - 4 - 2 * ndim)
                return sts__fail(diag, STS_E_INTERNAL, "truncated header record");
            if (out) {
                rblock_tmp *t = &out[k];
                t->dtype = (sts_dtype)w[pos];
                t->ndim = (uint32_t)ndim;
                t->b.file = (uint32_t)file;
                t->b.data_off = w[pos + 2];
                t->name_len = nlen;
                t->b.shape = w + pos + 4;
                t->b.offsets = w + pos + 4 + ndim;
                t->name = (const char *)(w + pos + 4 + 2 * ndim);
            }
            pos += 4 + 2 * ndim + nlen / 8 + 1;
            k++;
        }
    }
    *count = k;
    return STS_OK;
}

static int same_box(const rblock_tmp *a, const rblock_tmp *b)
{
    return a->ndim == b->ndim &&
           memcmp(a->b.offsets, b->b.offsets, a->ndim * sizeof(uint64_t)) == 0 &&
           memcmp(a->b.shape, b->b.shape, a->ndim * sizeof(uint64_t)) == 0;
}

static int same_name(const rblock_tmp *a, const rblock_tmp *b)
{
    return a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0;
}

/* The first coverage problem of a tensor, turned into a message naming files or a region. */
typedef struct cov_report {
    const sts_reader *r;
    const rblock_tmp *v;
    uint32_t ndim;
    int have;
    char text[600];
} cov_report;

static void on_coverage_issue(void *ud, const sts__coverage_issue *is)
{
    cov_report *c = ud;
    size_t len = 0;
    if (c->have || is->more)
        return;
    c->have = 1;
    if (is->code == STS_E_COVERAGE_OVERLAP) {
        snprintf(c->text, sizeof c->text, "blocks in %s and %s overlap",
                 c->r->paths[c->v[is->a].b.file], c->r->paths[c->v[is->b].b.file]);
        return;
    }
    len = (size_t)snprintf(c->text, sizeof c->text, "no block covers");
    for (uint32_t d = 0; is->lo && d < c->ndim && len < sizeof c->text; d++)
        len += (size_t)snprintf(c->text + len, sizeof c->text - len, "%s%llu:%llu", d ? ", " : " [",
                                (unsigned long long)is->lo[d], (unsigned long long)is->hi[d]);
    if (is->lo && len < sizeof c->text)
        snprintf(c->text + len, sizeof c->text - len, "]");
}

/* Blocks of one tensor agree on dtype and rank. */
static int check_kinds(const sts_global_tensor *t, const rblock_tmp *v, size_t n, sts_diag *diag)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].dtype != t->dtype)
            return sts__fail(diag, STS_E_DTYPE_MISMATCH, "tensor '%s': blocks are %s and %s",
                             t->name, sts_dtype_name(t->dtype), sts_dtype_name(v[i].dtype));
        if (v[i].ndim != t->ndim)
            return sts__fail(diag, STS_E_SHARDING_INFO,
                             "tensor '%s': blocks have %u and %u dimensions", t->name, t->ndim,
                             v[i].ndim);
    }
    return STS_OK;
}

/*
 * Completes tensor t from its blocks v[0..n): one dtype and rank, the global
 * shape (per dimension the largest offset + size) and an exact tiling of it
 * (coverage.c: no gap, no overlap).
 */
static int finish_tensor(const sts_reader *r, sts_global_tensor *t, uint64_t *gshape,
                         const rblock_tmp *v, size_t n, sts_diag *diag)
{
    int rc = STS_OK;
    uint64_t numel = 0, *offs = NULL, *shps = NULL;
    cov_report cov = {r, v, v[0].ndim, 0, ""};
    t->name = v[0].name;
    t->dtype = v[0].dtype;
    t->ndim = v[0].ndim;
    t->shape = gshape;
    t->nblocks = n;
    STS_CHECK(check_kinds(t, v, n, diag));
    /* coverage.c takes the blocks as two n x ndim arrays. */
    offs = sts__malloc_array(n * t->ndim + 1, sizeof *offs);
    shps = sts__malloc_array(n * t->ndim + 1, sizeof *shps);
    STS_GOTO_IF(!offs || !shps, diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        memcpy(offs + i * t->ndim, v[i].b.offsets, t->ndim * sizeof *offs);
        memcpy(shps + i * t->ndim, v[i].b.shape, t->ndim * sizeof *shps);
    }
    rc = sts__coverage_check(t->ndim, n, offs, shps, 1, on_coverage_issue, &cov, gshape);
    STS_GOTO_IF(rc == STS_E_VALIDATION_OVERFLOW, diag, rc, "tensor '%s': offset overflow", t->name);
    STS_GOTO_IF(rc == STS_E_NOMEM, diag, rc, "out of memory");
    STS_GOTO_IF(rc != STS_OK, diag, rc, "tensor '%s': %s", t->name,
                cov.have ? cov.text : sts_strerror(rc));
    STS_GOTO_IF(sts__numel(gshape, t->ndim, &numel) != STS_OK ||
                    sts_dtype_nbytes(t->dtype, numel, &t->nbytes) != STS_OK,
                diag, STS_E_VALIDATION_OVERFLOW, "tensor '%s': global size overflow", t->name);
done:
    free(offs);
    free(shps);
    return rc;
}

/* Notes which tensor failed and in which pass, for reader_meta.c's agreement. */
static int failed(sts__rfail *f, int pass, const rblock_tmp *v, int rc)
{
    if (f && rc != STS_OK) {
        f->pass = pass;
        f->name = v ? v->name : "";
        f->len = v ? (size_t)v->name_len : 0;
    }
    return rc;
}

/* Drops identical duplicates of the sorted blocks; counts tensors and shape words. */
static int dedupe(rblock_tmp *v, size_t n, size_t *nb, size_t *nt, size_t *nshape, sts__rfail *f,
                  sts_diag *diag)
{
    *nb = *nt = *nshape = 0;
    for (size_t i = 0; i < n; i++) {
        /* A replicated tensor may be stored by several ranks: one copy is enough. */
        if (*nb > 0 && same_name(&v[*nb - 1], &v[i]) && same_box(&v[*nb - 1], &v[i])) {
            if (v[*nb - 1].dtype != v[i].dtype)
                return failed(f, 1, &v[i],
                              sts__fail(diag, STS_E_DTYPE_MISMATCH,
                                        "tensor '%s': blocks are %s and %s", v[i].name,
                                        sts_dtype_name(v[*nb - 1].dtype),
                                        sts_dtype_name(v[i].dtype)));
            continue;
        }
        if (*nb == 0 || !same_name(&v[*nb - 1], &v[i])) {
            (*nt)++;
            *nshape += v[i].ndim;
        }
        v[(*nb)++] = v[i];
    }
    return STS_OK;
}

/* Sorts blocks by tensor, drops identical duplicates and fills the table. */
static int build_table(const sts_reader *r, rblock_tmp *v, size_t n, sts__rtable *tb, sts__rfail *f,
                       sts_diag *diag)
{
    int rc = STS_OK;
    size_t nb = 0, nt = 0, nshape = 0;
    qsort(v, n, sizeof *v, cmp_block);
    STS_CHECK(dedupe(v, n, &nb, &nt, &nshape, f, diag));
    tb->tensors = sts__calloc_array(nt, sizeof *tb->tensors);
    tb->first = sts__malloc_array(nt + 1, sizeof *tb->first);
    tb->blocks = sts__malloc_array(nb, sizeof *tb->blocks);
    tb->gshapes = sts__malloc_array(nshape, sizeof *tb->gshapes);
    STS_GOTO_IF(!tb->tensors || !tb->first || !tb->blocks || !tb->gshapes, diag, STS_E_NOMEM,
                "out of memory");
    nshape = 0;
    for (size_t i = 0, t = 0; i < nb; t++) {
        size_t j = i + 1;
        while (j < nb && same_name(&v[i], &v[j]))
            j++;
        tb->first[t] = i;
        rc = finish_tensor(r, &tb->tensors[t], tb->gshapes + nshape, v + i, j - i, diag);
        STS_CHECK(failed(f, 2, &v[i], rc));
        nshape += v[i].ndim;
        for (size_t k = i; k < j; k++)
            tb->blocks[k] = v[k].b;
        i = j;
    }
    tb->first[nt] = nb;
    tb->ntensors = nt;
done:
    return rc;
}

int sts__reader_table(const sts_reader *r, const unsigned char *records, size_t len,
                      sts__rtable *tb, sts__rfail *f, sts_diag *diag)
{
    int rc = STS_OK;
    size_t n = 0;
    rblock_tmp *v = NULL;
    memset(tb, 0, sizeof *tb);
    /* An error not about one tensor (pass 0) comes before any that is. */
    if (f)
        *f = (sts__rfail){0, "", 0};
    STS_CHECK(decode_records(records, len, NULL, &n, diag));
    v = sts__malloc_array(n, sizeof *v);
    STS_GOTO_IF(!v, diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(decode_records(records, len, v, &n, diag));
    STS_CHECK(build_table(r, v, n, tb, f, diag));
    if (f)
        f->pass = 3;
done:
    free(v);
    return rc;
}

void sts__reader_table_free(sts__rtable *tb)
{
    free(tb->tensors);
    free(tb->first);
    free(tb->blocks);
    free(tb->gshapes);
    memset(tb, 0, sizeof *tb);
}

/* Every rank builds the same table from every record. */
static int make_table(sts_reader *r, sts_diag *diag)
{
    sts__rtable tb;
    int rc = sts__reader_table(r, r->records, r->records_len, &tb, NULL, diag);
    r->ntensors = tb.ntensors;
    r->tensors = tb.tensors;
    r->first = tb.first;
    r->blocks = tb.blocks;
    r->gshapes = tb.gshapes;
    return rc;
}

/* ---- open / accessors / free -------------------------------------------- */

/*
 * The caller's keys other than ours go to MPI_File_open.  An info with only
 * stshard_* keys leaves r->info null, so STSHARD_MPI_HINTS still applies.
 */
static int copy_hints(sts_reader *r, MPI_Info user, sts_diag *diag)
{
    int rc = STS_OK, n = 0, flag = 0;
    char key[MPI_MAX_INFO_KEY + 1], val[MPI_MAX_INFO_VAL + 1];
    if (user != MPI_INFO_NULL)
        STS_MPI_CALL(diag, MPI_Info_get_nkeys, (user, &n));
    for (int i = 0; i < n; i++) {
        STS_MPI_CALL(diag, MPI_Info_get_nthkey, (user, i, key));
        if (strncmp(key, "stshard_", 8) == 0)
            continue;
        STS_MPI_CALL(diag, MPI_Info_get, (user, key, MPI_MAX_INFO_VAL, val, &flag));
        if (r->info == MPI_INFO_NULL)
            STS_MPI_CALL(diag, MPI_Info_create, (&r->info));
        STS_MPI_CALL(diag, MPI_Info_set, (r->info, key, val));
    }
done:
    return rc;
}

/*
 * The caller's hints go to every MPI_File_open (with none, mpiio.c applies
 * STSHARD_MPI_HINTS).  In view mode the strided file side goes through a
 * subarray view, so data sieving must be off: ROMIO honours romio_ds_read;
 * Open MPI's OMPIO has no such hint (see reader_io.c).
 */
static int make_info(sts_reader *r, MPI_Info user, sts_diag *diag)
{
    int rc = STS_OK, flag = 0;
    char val[32] = "";
    if (user != MPI_INFO_NULL)
        STS_MPI_CALL(diag, MPI_Info_get,
                     (user, "stshard_strided_reads", (int)sizeof val - 1, val, &flag));
    STS_GOTO_IF(flag && strcmp(val, "view") != 0 && strcmp(val, "runs") != 0, diag, STS_E_ARG,
                "stshard_strided_reads must be \"runs\" or \"view\", not \"%s\"", val);
    r->view_mode = flag && strcmp(val, "view") == 0;
    flag = 0;
    if (user != MPI_INFO_NULL)
        STS_MPI_CALL(diag, MPI_Info_get,
                     (user, "stshard_exchange", (int)sizeof val - 1, val, &flag));
    STS_GOTO_IF(flag && strcmp(val, "auto") != 0 && strcmp(val, "off") != 0, diag, STS_E_ARG,
                "stshard_exchange must be \"auto\" or \"off\", not \"%s\"", val);
    r->exchange = !(flag && strcmp(val, "off") == 0);
    flag = 0;
    if (user != MPI_INFO_NULL)
        STS_MPI_CALL(diag, MPI_Info_get,
                     (user, "stshard_metadata", (int)sizeof val - 1, val, &flag));
    STS_GOTO_IF(flag && strcmp(val, "replicated") != 0 && strcmp(val, "distributed") != 0, diag,
                STS_E_ARG, "stshard_metadata must be \"replicated\" or \"distributed\", not \"%s\"",
                val);
    r->dist = flag && strcmp(val, "distributed") == 0;
    /* Small rounds keep the staged rows in cache until they are sent: measured faster
     * than 8 or 32 MiB (docs/benchmarks.md, "Loading"). */
    r->exchange_buffer = (uint64_t)2 << 20;
    flag = 0;
    if (user != MPI_INFO_NULL)
        STS_MPI_CALL(diag, MPI_Info_get,
                     (user, "stshard_exchange_buffer", (int)sizeof val - 1, val, &flag));
    if (flag) {
        char *end = NULL;
        unsigned long long v = strtoull(val, &end, 10);
        STS_GOTO_IF(val[0] < '0' || val[0] > '9' || *end != '\0' || v == 0, diag, STS_E_ARG,
                    "stshard_exchange_buffer must be a positive number of bytes, not \"%s\"", val);
        r->exchange_buffer = v;
    }
    STS_CHECK(copy_hints(r, user, diag));
    if (r->view_mode && r->info == MPI_INFO_NULL)
        STS_MPI_CALL(diag, MPI_Info_create, (&r->info));
    if (r->view_mode)
        STS_MPI_CALL(diag, MPI_Info_set, (r->info, "romio_ds_read", "disable"));
done:
    return rc;
}

/*
 * Collective.  Every rank must plan two-phase reads the same way, so the
 * ranks agree on the exchange settings: off if any rank asked for off, and
 * the smallest buffer any rank gave (a caller passing different info on
 * different ranks would otherwise make the ranks' plans, and their
 * MPI_Alltoallw calls, disagree).
 */
static int agree_exchange(sts_reader *r, sts_diag *diag)
{
    int rc = STS_OK, on = r->exchange, dist = r->dist;
    uint64_t buf = r->exchange_buffer;
    STS_MPI_CALL(diag, MPI_Allreduce, (&on, &r->exchange, 1, MPI_INT, MPI_MIN, r->comm));
    /* Distributed only if every rank asked for it: the mode decides the collectives. */
    STS_MPI_CALL(diag, MPI_Allreduce, (&dist, &r->dist, 1, MPI_INT, MPI_MIN, r->comm));
    STS_MPI_CALL(diag, MPI_Allreduce,
                 (&buf, &r->exchange_buffer, 1, MPI_UINT64_T, MPI_MIN, r->comm));
done:
    return rc;
}

static int open_phases(sts_reader *r, const char *path, sts_diag *diag)
{
    int rc = STS_OK;
    sts__strlist files = {0};
    void *index = NULL;
    sts_bytes mine = {NULL, 0, 0};
    if (r->rank == 0)
        rc = sts__ckptdir_discover(path, &r->kind, &files, &index, diag);
    STS_CHECK(sts__mpiio_agree(r->comm, rc, diag));
    STS_CHECK(bcast_files(r, &files, diag));
    rc = read_my_headers(r, &mine, diag);
    if (r->dist) {
        /* Agreed inside, with the path already named in the message. */
        STS_CHECK(sts__reader_meta_open(r, rc, &mine, path, diag));
    } else {
        STS_CHECK(exchange(r, rc, &mine, diag));
        rc = make_table(r, diag);
    }
    if (rc == STS_OK && r->rank == 0 && index)
        rc = sts__ckptdir_check_index(r, index, diag);
    if (rc != STS_OK)
        sts__diag_prefix(diag, "%s", path);
    STS_CHECK(sts__mpiio_agree(r->comm, rc, diag));
done:
    sts__ckptdir_strlist_free(&files);
    sts__ckptdir_index_free(index);
    sts__bytes_free(&mine);
    return rc;
}

int sts_reader_open(MPI_Comm comm, const char *path, MPI_Info info, sts_reader **out,
                    sts_diag *diag)
{
    int rc = STS_OK;
    sts_reader *r = NULL;
    sts__diag_clear(diag);
    *out = NULL;
    /* The arguments must be valid on every rank before anyone enters a collective. */
    if (!path || comm == MPI_COMM_NULL)
        return sts__fail(diag, STS_E_ARG, "sts_reader_open: NULL path or communicator");
    r = calloc(1, sizeof *r);
    if (r) {
        /* MPI's null handles need not be all-zero bits. */
        r->comm = MPI_COMM_NULL;
        r->info = MPI_INFO_NULL;
    } else {
        rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    }
    rc = sts__mpiio_agree(comm, rc, diag);
    if (rc != STS_OK)
        goto done;
    STS_CHECK(sts__mpiio_comm_dup(comm, &r->comm, diag));
    STS_MPI_CALL(diag, MPI_Comm_rank, (r->comm, &r->rank));
    STS_MPI_CALL(diag, MPI_Comm_size, (r->comm, &r->nranks));
    rc = make_info(r, info, diag);
    STS_CHECK(sts__mpiio_agree(r->comm, rc, diag));
    STS_CHECK(agree_exchange(r, diag));
    STS_CHECK(open_phases(r, path, diag));
    *out = r;
    r = NULL;
done:
    sts_reader_free(r);
    return rc;
}

sts_ckpt_kind sts_reader_kind(const sts_reader *r)
{
    return r->kind;
}

size_t sts_reader_file_count(const sts_reader *r)
{
    return r->nfiles;
}

size_t sts_reader_count(const sts_reader *r)
{
    return r->ntensors;
}

const sts_global_tensor *sts_reader_tensor(const sts_reader *r, size_t i)
{
    return i < r->ntensors ? &r->tensors[i] : NULL;
}

long sts_reader_find(const sts_reader *r, const char *name)
{
    /* Binary search with the table's order: bytewise, shorter name first on a tie. */
    size_t lo = 0, hi = r->ntensors, len = strlen(name);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = r->tensors[mid].name;
        size_t mlen = strlen(m);
        int c = memcmp(m, name, mlen < len ? mlen : len);
        if (c == 0 && mlen != len)
            c = mlen < len ? -1 : 1;
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const char *sts_reader_file_path(const sts_reader *r, size_t i)
{
    return i < r->nfiles ? r->paths[i] : NULL;
}

int sts_reader_block(const sts_reader *r, size_t i, size_t k, sts_stored_block *out)
{
    const sts__rblock *b;
    if (r->dist)
        return STS_E_UNSUPPORTED; /* the blocks are on their owners */
    if (i >= r->ntensors || k >= r->first[i + 1] - r->first[i])
        return STS_E_ARG;
    b = &r->blocks[r->first[i] + k];
    out->file = b->file;
    out->data_offset = b->data_off;
    out->offsets = b->offsets;
    out->shape = b->shape;
    return STS_OK;
}

uint32_t sts__reader_file0(const sts_reader *r, size_t t)
{
    return r->dist ? r->file0[t] : r->blocks[r->first[t]].file;
}

void sts_reader_stats(const sts_reader *r, sts_read_stats *out)
{
    *out = r->stats;
}

const char *sts_reader_errmsg(const sts_reader *r)
{
    return r ? r->diag.message : "";
}

int sts__reader_file(sts_reader *r, uint32_t i, MPI_File *fh, sts_diag *diag)
{
    int rc = STS_OK;
    if (r->fh[i] == MPI_FILE_NULL) {
        STS_CHECK(sts__mpiio_open_self(r->paths[i], 0, r->info, &r->fh[i], diag));
        r->nopen++;
    }
    *fh = r->fh[i];
done:
    return rc;
}

int sts__reader_close_files(sts_reader *r, sts_diag *diag)
{
    int rc = STS_OK;
    for (size_t i = 0; i < r->nfiles && r->fh; i++) {
        int c = sts__mpiio_close(&r->fh[i], diag);
        if (rc == STS_OK)
            rc = c;
    }
    r->nopen = 0;
    return rc;
}

void sts_reader_free(sts_reader *r)
{
    if (!r)
        return;
    sts__reader_close_files(r, NULL);
    for (size_t i = 0; i < r->nfiles; i++)
        free(r->paths[i]);
    free(r->paths);
    free(r->fh);
    free(r->tensors);
    free(r->first);
    free(r->blocks);
    free(r->gshapes);
    free(r->records);
    sts__reader_meta_free(r);
    free(r->bounce);
    free(r->stage);
    if (r->info != MPI_INFO_NULL)
        MPI_Info_free(&r->info);
    if (r->comm != MPI_COMM_NULL)
        MPI_Comm_free(&r->comm);
    free(r);
}
