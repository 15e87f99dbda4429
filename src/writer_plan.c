/*
 * writer_plan.c - the collective decisions of a sharded save: who stores a
 * replicated tensor, the DCP_SHARDING_INFO text, and the rank files already
 * in the output directory.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exchange.h"
#include "json_write.h"
#include "mpiio.h"
#include "writer_int.h"

/* ---- replicated tensors ------------------------------------------------- */

/*
 * A whole-tensor block travels as a record of native-endian fields (all ranks
 * of one job share a byte order):
 *   u32 name bytes incl. NUL | name | u32 dtype | u32 ndim | u64 global dims[ndim] | u64 nbytes
 */
typedef struct rec {
    const char *name;
    int rank;
    uint32_t dtype, ndim;
    const unsigned char *dims; /* ndim unaligned u64 */
    uint64_t nbytes;
} rec;

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Serializes this rank's part: u64 load (the bytes of its other blocks), then the records of
 * its whole blocks. */
static int pack_whole(const sts_writer *w, sts_bytes *out)
{
    uint64_t load = 0;
    int rc;
    for (size_t i = 0; i < w->count; i++) {
        if (!w->blocks[i].whole)
            load += w->blocks[i].nbytes;
    }
    rc = sts__bytes_put(out, &load, sizeof load);
    for (size_t i = 0; i < w->count && rc == STS_OK; i++) {
        const sts__writer_block *b = &w->blocks[i];
        uint32_t nl = (uint32_t)strlen(b->name) + 1, dt = (uint32_t)b->dtype;
        if (!b->whole)
            continue;
        rc = sts__bytes_put(out, &nl, 4);
        rc = rc ? rc : sts__bytes_put(out, b->name, nl);
        rc = rc ? rc : sts__bytes_put(out, &dt, 4);
        rc = rc ? rc : sts__bytes_put(out, &b->ndim, 4);
        rc = rc ? rc : sts__bytes_put(out, b->dims, 8 * (size_t)b->ndim);
        rc = rc ? rc : sts__bytes_put(out, &b->nbytes, 8);
    }
    return rc;
}

/* Every rank's part (start[r], len[r] bytes): its load into load[r], its records into *out. */
static int parse_records(const unsigned char *buf, const uint64_t *start, const uint64_t *len,
                         int nranks, uint64_t *load, rec **out, size_t *nrec, sts_diag *diag)
{
    size_t n = 0, cap = 0;
    rec *recs = NULL;
    for (int r = 0; r < nranks; r++) {
        const unsigned char *p = buf + start[r], *end = p + len[r];
        if (len[r] < 8) {
            free(recs);
            return sts__fail(diag, STS_E_INTERNAL, "record of rank %d is truncated", r);
        }
        load[r] = get_u64(p);
        p += 8;
        while (p < end) {
            rec x;
            uint32_t nl = get_u32(p);
            x.name = (const char *)p + 4;
            p += 4 + nl;
            x.rank = r;
            x.dtype = get_u32(p);
            x.ndim = get_u32(p + 4);
            x.dims = p + 8;
            p += 8 + 8 * (size_t)x.ndim;
            x.nbytes = get_u64(p);
            p += 8;
            rec *g = sts__grow(recs, &cap, n + 1, sizeof *g, 64);
            if (!g) {
                free(recs);
                return sts__fail(diag, STS_E_NOMEM, "out of memory");
            }
            recs = g;
            recs[n++] = x;
        }
    }
    *out = recs;
    *nrec = n;
    return STS_OK;
}

static int rec_cmp(const void *pa, const void *pb)
{
    const rec *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    return c ? c : (a->rank > b->rank) - (a->rank < b->rank);
}

/* A replicated tensor: records recs[first .. first + n), holders in rank order. */
typedef struct group {
    size_t first, n;
    uint64_t nbytes;
    const char *name;
} group;

static int group_cmp(const void *pa, const void *pb)
{
    const group *a = pa, *b = pb;
    if (a->nbytes != b->nbytes)
        return a->nbytes > b->nbytes ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* Groups the sorted records by name and checks that holders agree. */
static int make_groups(const rec *recs, size_t nrec, group *groups, size_t *ngroups, sts_diag *diag)
{
    size_t ng = 0;
    for (size_t i = 0; i < nrec; i++) {
        const rec *a = &recs[i], *f;
        if (i == 0 || strcmp(a->name, recs[i - 1].name) != 0) {
            groups[ng].first = i;
            groups[ng].n = 0;
            groups[ng].nbytes = a->nbytes;
            groups[ng].name = a->name;
            ng++;
        }
        groups[ng - 1].n++;
        f = &recs[groups[ng - 1].first];
        if (a->dtype != f->dtype)
            return sts__fail(diag, STS_E_DTYPE_MISMATCH,
                             "replicated tensor '%s': rank %d has dtype %s, rank %d has %s",
                             a->name, f->rank, sts_dtype_name((sts_dtype)f->dtype), a->rank,
                             sts_dtype_name((sts_dtype)a->dtype));
        if (a->ndim != f->ndim || memcmp(a->dims, f->dims, 8 * (size_t)a->ndim) != 0)
            return sts__fail(diag, STS_E_ARG,
                             "replicated tensor '%s': ranks %d and %d give different global shapes",
                             a->name, f->rank, a->rank);
    }
    *ngroups = ng;
    return STS_OK;
}

/* Greedy balance: each tensor, largest first, goes to its least-loaded holder. */
static void assign(sts_writer *w, const rec *recs, group *groups, size_t ng, uint64_t *load)
{
    if (ng > 0)
        qsort(groups, ng, sizeof *groups, group_cmp);
    for (size_t g = 0; g < ng; g++) {
        const rec *h = &recs[groups[g].first];
        int best = h[0].rank;
        for (size_t i = 1; i < groups[g].n; i++)
            if (load[h[i].rank] < load[best])
                best = h[i].rank;
        load[best] += groups[g].nbytes;
        for (size_t i = 0; i < groups[g].n; i++) {
            if (h[i].rank == w->rank)
                w->blocks[sts__writer_core_find(w, h[i].name)].keep = best == w->rank;
        }
    }
}

int sts__writer_plan_resolve_replicas(sts_writer *w)
{
    int rc = STS_OK, np = w->nranks;
    sts_bytes mine = {NULL, 0, 0};
    unsigned char *all = NULL;
    uint64_t *start = sts__malloc_array((size_t)np, sizeof *start);
    uint64_t *len = sts__malloc_array((size_t)np, sizeof *len);
    uint64_t *load = sts__malloc_array((size_t)np, sizeof *load);
    rec *recs = NULL;
    group *groups = NULL;
    size_t nrec = 0, ng = 0;

    if (!start || !len || !load || pack_whole(w, &mine) != STS_OK)
        rc = sts__fail(&w->diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(sts__exchange_allgather(w->comm, rc, &mine, &all, start, len, &w->diag));
    rc = parse_records(all, start, len, np, load, &recs, &nrec, &w->diag);
    if (rc == STS_OK) {
        if (nrec > 0)
            qsort(recs, nrec, sizeof *recs, rec_cmp);
        groups = sts__malloc_array(nrec, sizeof *groups);
        rc = groups ? make_groups(recs, nrec, groups, &ng, &w->diag)
                    : sts__fail(&w->diag, STS_E_NOMEM, "out of memory");
    }
    if (rc == STS_OK) {
        assign(w, recs, groups, ng, load);
        w->bytes_local = load[w->rank];
        w->bytes_total = 0;
        for (int r = 0; r < np; r++)
            w->bytes_total += load[r];
    }
    rc = sts__mpiio_agree(w->comm, rc, &w->diag);
done:
    sts__bytes_free(&mine);
    free(all);
    free(start);
    free(len);
    free(load);
    free(recs);
    free(groups);
    return rc;
}

/* ---- DCP_SHARDING_INFO ---------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    char *q;
    if (b->oom)
        return;
    q = sts__grow(b->p, &b->cap, b->len + n + 1, 1, 256);
    if (!q) {
        b->oom = 1;
        return;
    }
    b->p = q;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_write(void *ud, const char *s, size_t n)
{
    sb_put(ud, s, n);
}

int sts__writer_plan_sharding_json(sts_writer *w, const sts__writer_file *f, char **out)
{
    sbuf b = {NULL, 0, 0, 0};
    char num[32];
    sb_put(&b, "{", 1);
    for (size_t i = 0; i < f->nblocks; i++) {
        const sts__writer_block *k = w->order[f->first + i];
        if (i > 0)
            sb_put(&b, ", ", 2);
        /* Python's json.dumps bytes, as DCP writes this metadata. */
        sts__json_write_string(k->name, strlen(k->name), STS_JSON_ASCII, sb_write, &b);
        sb_puts(&b, ": {\"saved_offsets\": [");
        for (uint32_t d = 0; d < k->ndim; d++) {
            snprintf(num, sizeof num, d ? ", %llu" : "%llu",
                     (unsigned long long)k->dims[k->ndim + d]);
            sb_puts(&b, num);
        }
        sb_puts(&b, "]}");
    }
    sb_put(&b, "}", 1);
    if (b.oom) {
        free(b.p);
        return sts__fail(&w->diag, STS_E_NOMEM, "out of memory");
    }
    *out = b.p;
    return STS_OK;
}

/* ---- rank files already in the directory -------------------------------- */

/* True for a name of the form shard-*-model-*-of-*.safetensors. */
static int is_rank_file(const char *n)
{
    size_t len = strlen(n);
    return strncmp(n, "shard-", 6) == 0 && strstr(n, "-model-") && strstr(n, "-of-") && len > 12 &&
           strcmp(n + len - 12, ".safetensors") == 0;
}

int sts__writer_plan_check_dir(sts_writer *w)
{
    int rc = STS_OK;
    DIR *d = NULL;
    struct dirent *e;
    if (w->rank != 0)
        return STS_OK;
    d = opendir(w->dir);
    STS_GOTO_IF(!d, &w->diag, sts__err_from_errno(errno), "%s: cannot list: %s", w->dir,
                strerror(errno));
    while ((e = readdir(d)) != NULL) {
        STS_GOTO_IF(is_rank_file(e->d_name) && !w->opts.force, &w->diag, STS_E_EXIST,
                    "%s/%s: a rank file already exists (use force to replace the checkpoint)",
                    w->dir, e->d_name);
    }
done:
    if (d)
        closedir(d);
    return rc;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Rank 0: the names of every file this save produced, sorted. */
static int produced_names(const sts_writer *w, const unsigned char *idx, const uint64_t *start,
                          const uint64_t *len, char ***out, size_t *n)
{
    unsigned total = w->opts.mapping ? sts_mapping_file_count(w->opts.mapping) : 1;
    size_t k = 0, all = 0;
    char **names;
    for (int r = 0; r < w->nranks; r++)
        all += (size_t)(len[r] / sizeof(unsigned));
    names = sts__calloc_array(all, sizeof *names);
    if (!names)
        return STS_E_NOMEM;
    for (int r = 0; r < w->nranks; r++) {
        for (uint64_t i = 0; i < len[r] / sizeof(unsigned); i++, k++) {
            char buf[128];
            unsigned fi;
            memcpy(&fi, idx + start[r] + i * sizeof fi, sizeof fi);
            snprintf(buf, sizeof buf, STS_RANK_FILE_FMT, r + 1, fi, total);
            names[k] = sts__strdup(buf);
            if (!names[k]) {
                *out = names;
                *n = k;
                return STS_E_NOMEM;
            }
        }
    }
    if (all > 0)
        qsort(names, all, sizeof *names, str_cmp);
    *out = names;
    *n = all;
    return STS_OK;
}

static int remove_unlisted(sts_writer *w, char **names, size_t n)
{
    int rc = STS_OK;
    DIR *d = opendir(w->dir);
    struct dirent *e;
    STS_GOTO_IF(!d, &w->diag, sts__err_from_errno(errno), "%s: cannot list: %s", w->dir,
                strerror(errno));
    while ((e = readdir(d)) != NULL) {
        const char *key = e->d_name;
        char *path;
        if (!is_rank_file(key) || (n > 0 && bsearch(&key, names, n, sizeof *names, str_cmp)))
            continue;
        path = sts__path_join(w->dir, key);
        STS_GOTO_IF(!path, &w->diag, STS_E_NOMEM, "out of memory");
        if (unlink(path) != 0 && errno != ENOENT)
            rc = sts__fail(&w->diag, sts__err_from_errno(errno),
                           "%s: cannot remove a rank file of the replaced checkpoint: %s", path,
                           strerror(errno));
        free(path);
        if (rc != STS_OK)
            goto done;
    }
done:
    if (d)
        closedir(d);
    return rc;
}

int sts__writer_plan_remove_stale(sts_writer *w)
{
    int rc = STS_OK;
    sts_bytes mine = {NULL, 0, 0};
    unsigned char *all = NULL;
    uint64_t *start = NULL, *len = NULL;
    char **names = NULL;
    size_t nnames = 0;
    if (!w->opts.force)
        return STS_OK;
    start = sts__malloc_array((size_t)w->nranks, sizeof *start);
    len = sts__malloc_array((size_t)w->nranks, sizeof *len);
    if (!start || !len)
        rc = STS_E_NOMEM;
    for (size_t i = 0; i < w->nfiles && rc == STS_OK; i++)
        rc = sts__bytes_put(&mine, &w->files[i].index, sizeof(unsigned));
    if (rc != STS_OK)
        rc = sts__fail(&w->diag, rc, "out of memory");
    /* Rank 0 alone lists the directory, from every rank's file indices. */
    STS_CHECK(sts__exchange_gather(w->comm, 0, rc, &mine, &all, start, len, &w->diag));
    if (w->rank == 0) {
        rc = produced_names(w, all, start, len, &names, &nnames);
        STS_GOTO_IF(rc != STS_OK, &w->diag, rc, "out of memory");
        STS_CHECK(remove_unlisted(w, names, nnames));
    }
done:
    for (size_t i = 0; names && i < nnames; i++)
        free(names[i]);
    free(names);
    sts__bytes_free(&mine);
    free(all);
    free(start);
    free(len);
    return rc;
}
