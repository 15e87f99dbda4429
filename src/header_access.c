/*
 * header_access.c - accessors of a parsed header, reading a header from a
 * file, and decoding the DCP_SHARDING_INFO metadata of rank files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "header_int.h"
#include "json.h"

/* ---- accessors ---------------------------------------------------------- */

size_t sts_header_count(const sts_header *h)
{
    return h ? h->n : 0;
}

const sts_tensor_info *sts_header_tensor(const sts_header *h, size_t i)
{
    return h && i < h->n ? &h->t[i] : NULL;
}

long sts_header_find(const sts_header *h, const char *name, size_t len)
{
    if (!h)
        return -1;
    return sts__hashtab_find(&h->names, name, len);
}

uint64_t sts_header_data_size(const sts_header *h)
{
    return h ? h->data_size : 0;
}

size_t sts_header_meta_count(const sts_header *h)
{
    return h ? h->nmeta : 0;
}

int sts_header_meta_at(const sts_header *h, size_t i, const char **key, const char **value)
{
    if (!h || i >= h->nmeta)
        return STS_E_ARG;
    if (key)
        *key = h->meta[i].key;
    if (value)
        *value = h->meta[i].value;
    return STS_OK;
}

/* Binary search of the sorted metadata index. */
static const sts__meta_kv *meta_find(const sts_header *h, const char *key, size_t klen)
{
    size_t lo = 0, hi = h ? h->nmeta : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const sts__meta_kv *m = h->meta_sorted[mid];
        int c = sts__header_bytes_cmp(m->key, m->klen, key, klen);
        if (c == 0)
            return m;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *sts_header_meta_get(const sts_header *h, const char *key)
{
    const sts__meta_kv *m = key ? meta_find(h, key, strlen(key)) : NULL;
    return m ? m->value : NULL;
}

/* ---- the 8-byte prefix and reading a file ------------------------------- */

int sts_header_check_prefix(const unsigned char *prefix, uint64_t file_size, uint64_t *n)
{
    uint64_t v = 0;
    if (file_size < 8 || !prefix)
        return STS_E_HEADER_TOO_SMALL;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | prefix[i];
    /* The reference checks the size cap before the file bound; keep that order. */
    if (v > STS_MAX_HEADER_SIZE)
        return STS_E_HEADER_TOO_LARGE;
    if (8 + v > file_size)
        return STS_E_INVALID_HEADER_LENGTH;
    if (n)
        *n = v;
    return STS_OK;
}

/* Reads exactly len bytes at off, in chunks of at most 64 MiB. */
static int pread_full(int fd, void *buf, size_t len, uint64_t off, sts_diag *diag)
{
    unsigned char *p = buf;
    while (len > 0) {
        size_t chunk = len < ((size_t)64 << 20) ? len : ((size_t)64 << 20);
        ssize_t got = pread(fd, p, chunk, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            return sts__fail(diag, sts__err_from_errno(e), "read failed at byte %llu: %s",
                             (unsigned long long)off, strerror(e));
        }
        if (got == 0)
            return sts__fail(diag, STS_E_IO, "file shrank while reading (byte %llu)",
                             (unsigned long long)off);
        p += got;
        len -= (size_t)got;
        off += (uint64_t)got;
    }
    return STS_OK;
}

static int prefix_fail(sts_diag *diag, int rc, uint64_t size, const unsigned char *pre)
{
    uint64_t n = 0;
    for (int i = 7; pre && i >= 0; i--)
        n = n << 8 | pre[i];
    if (rc == STS_E_HEADER_TOO_SMALL)
        return sts__header_rule_fail(diag, rc, "the file has %llu byte(s), fewer than 8",
                                     (unsigned long long)size);
    if (rc == STS_E_HEADER_TOO_LARGE)
        return sts__header_rule_fail(diag, rc, "header length %llu exceeds %llu",
                                     (unsigned long long)n, STS_MAX_HEADER_SIZE);
    return sts__header_rule_fail(diag, rc,
                                 "header length %llu runs past the end of the %llu-byte "
                                 "file",
                                 (unsigned long long)n, (unsigned long long)size);
}

int sts_header_read_file(const char *path, sts_header **out, uint64_t *data_start, sts_diag *diag)
{
    int rc = STS_OK, fd = -1;
    unsigned char pre[8];
    unsigned char *buf = NULL;
    uint64_t n = 0, size;
    struct stat st;
    sts__diag_clear(diag);
    if (!path || !out)
        return sts__fail(diag, STS_E_ARG, "sts_header_read_file: NULL argument");
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        rc = sts__fail(diag, sts__err_from_errno(e), "cannot open: %s", strerror(e));
        goto done;
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        rc = sts__fail(diag, sts__err_from_errno(e), "fstat failed: %s", strerror(e));
        goto done;
    }
    STS_GOTO_IF(!S_ISREG(st.st_mode), diag, STS_E_IO, "not a regular file");
    size = (uint64_t)st.st_size;
    if (size >= 8)
        STS_CHECK(pread_full(fd, pre, 8, 0, diag));
    rc = sts_header_check_prefix(size >= 8 ? pre : NULL, size, &n);
    if (rc != STS_OK) {
        prefix_fail(diag, rc, size, size >= 8 ? pre : NULL);
        goto done;
    }
    /* Only the header is read; the data section is never touched. */
    buf = malloc(n ? (size_t)n : 1);
    STS_GOTO_IF(!buf, diag, STS_E_NOMEM, "out of memory for a %llu-byte header",
                (unsigned long long)n);
    STS_CHECK(pread_full(fd, buf, (size_t)n, 8, diag));
    STS_CHECK(sts_header_parse(buf, (size_t)n, size - 8 - n, out, diag));
    if (data_start)
        *data_start = 8 + n;
done:
    if (rc != STS_OK)
        sts__diag_prefix(diag, "%s", path);
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- DCP_SHARDING_INFO -------------------------------------------------- */

typedef struct shard_ctx {
    sts__json j;
    sts_header *h;
    uint64_t **offs; /* per tensor, decoded offsets (arena) or NULL */
    uint64_t *tmp;
    size_t tmp_cap;
    long cur; /* tensor of the entry being read, -1 before one is known */
} shard_ctx;

static int shard_fail(shard_ctx *c, sts_diag *diag, const char *what)
{
    const sts_tensor_info *t = c->cur >= 0 ? &c->h->t[c->cur] : NULL;
    return sts__header_rule_fail(diag, STS_E_SHARDING_INFO,
                                 "%s at byte %zu of DCP_SHARDING_INFO%s%.200s%s",
                                 what ? what : "invalid JSON", c->j.err ? c->j.err_pos : c->j.pos,
                                 t ? " (tensor '" : "", t ? t->name : "", t ? "')" : "");
}

/* Reads {"saved_offsets": [...], ...} for tensor c->cur; other keys are skipped. */
static int shard_entry(shard_ctx *c, sts_diag *diag)
{
    const sts_tensor_info *t = &c->h->t[c->cur];
    size_t cnt = 0;
    int more, have = 0;
    if (sts__json_open(&c->j, '{', &more) != 0)
        return shard_fail(c, diag, c->j.err);
    while (more) {
        const char *k;
        size_t kn;
        int rc = sts__json_string(&c->j, &k, &kn);
        if (rc == -2)
            return sts__fail(diag, STS_E_NOMEM, "out of memory");
        if (rc != 0 || sts__json_eat(&c->j, ':', "expected ':'") != 0)
            return shard_fail(c, diag, c->j.err);
        if (kn == 13 && memcmp(k, "saved_offsets", 13) == 0) {
            if (have++) {
                sts__json_fail(&c->j, "duplicate saved_offsets");
                return shard_fail(c, diag, c->j.err);
            }
            if (sts__json_open(&c->j, '[', &more) != 0)
                return shard_fail(c, diag, c->j.err);
            for (cnt = 0; more; cnt++) {
                uint64_t *nt = sts__grow(c->tmp, &c->tmp_cap, cnt + 1, sizeof *nt, 8);
                if (!nt)
                    return sts__fail(diag, STS_E_NOMEM, "out of memory");
                c->tmp = nt;
                if (sts__json_u64(&c->j, &c->tmp[cnt]) != 0 ||
                    sts__json_next(&c->j, ']', &more) != 0)
                    return shard_fail(c, diag, c->j.err);
            }
        } else if (sts__json_skip(&c->j) != 0) {
            return shard_fail(c, diag, c->j.err);
        }
        if (sts__json_next(&c->j, '}', &more) != 0)
            return shard_fail(c, diag, c->j.err);
    }
    if (!have)
        return shard_fail(c, diag, "entry has no saved_offsets");
    if (cnt != t->ndim) {
        char msg[96];
        snprintf(msg, sizeof msg, "saved_offsets has %zu entries for a %u-dimensional tensor", cnt,
                 (unsigned)t->ndim);
        return shard_fail(c, diag, msg);
    }
    for (size_t d = 0; d < cnt; d++) {
        uint64_t e;
        if (sts__add_u64(c->tmp[d], t->shape[d], &e))
            return shard_fail(c, diag, "offset + block size overflows 64 bits");
    }
    c->offs[c->cur] = sts__header_arena_alloc(&c->h->arena, cnt * sizeof(uint64_t));
    if (!c->offs[c->cur])
        return sts__fail(diag, STS_E_NOMEM, "out of memory");
    if (cnt)
        memcpy(c->offs[c->cur], c->tmp, cnt * sizeof(uint64_t));
    return STS_OK;
}

static int shard_top(shard_ctx *c, sts_diag *diag)
{
    int more, rc;
    if (sts__json_open(&c->j, '{', &more) != 0)
        return shard_fail(c, diag, c->j.err);
    while (more) {
        const char *k;
        size_t kn;
        c->cur = -1;
        rc = sts__json_string(&c->j, &k, &kn);
        if (rc == -2)
            return sts__fail(diag, STS_E_NOMEM, "out of memory");
        if (rc != 0)
            return shard_fail(c, diag, c->j.err);
        c->cur = sts_header_find(c->h, k, kn);
        if (c->cur < 0)
            return sts__header_rule_fail(diag, STS_E_SHARDING_INFO,
                                         "entry for unknown tensor '%.*s'",
                                         (int)(kn > 200 ? 200 : kn), k);
        if (c->offs[c->cur])
            return sts__header_rule_fail(diag, STS_E_SHARDING_INFO,
                                         "tensor '%.200s' has two entries", c->h->t[c->cur].name);
        if (sts__json_eat(&c->j, ':', "expected ':'") != 0)
            return shard_fail(c, diag, c->j.err);
        if ((rc = shard_entry(c, diag)) != STS_OK)
            return rc;
        if (sts__json_next(&c->j, '}', &more) != 0)
            return shard_fail(c, diag, c->j.err);
    }
    c->cur = -1;
    if (sts__json_end(&c->j) != 0)
        return shard_fail(c, diag, c->j.err);
    return STS_OK;
}

int sts_header_decode_sharding(sts_header *h, sts_diag *diag)
{
    int rc = STS_OK;
    const sts__meta_kv *m;
    shard_ctx c;
    memset(&c, 0, sizeof c);
    sts__diag_clear(diag);
    if (!h)
        return sts__fail(diag, STS_E_ARG, "sts_header_decode_sharding: NULL header");
    m = meta_find(h, "DCP_SHARDING_INFO", 17);
    if (!m)
        return sts__header_rule_fail(diag, STS_E_SHARDING_INFO,
                                     "__metadata__ has no DCP_SHARDING_INFO");
    sts__json_init(&c.j, m->value, m->vlen);
    c.h = h;
    c.cur = -1;
    /* Offsets are attached only once the whole text is known good: all or nothing. */
    c.offs = sts__calloc_array(h->n, sizeof *c.offs);
    STS_GOTO_IF(!c.offs, diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(shard_top(&c, diag));
    for (size_t i = 0; i < h->n; i++)
        if (!c.offs[i]) {
            rc = sts__header_rule_fail(diag, STS_E_SHARDING_INFO,
                                       "tensor '%.200s' has no entry in DCP_SHARDING_INFO",
                                       h->t[i].name);
            goto done;
        }
    for (size_t i = 0; i < h->n; i++)
        h->t[i].saved_offsets = c.offs[i];
done:
    sts__json_fini(&c.j);
    free(c.offs);
    free(c.tmp);
    return rc;
}
