/*
 * header.c - safetensors header parsing and validation (docs/format.md).
 *
 * One pass over the JSON text fills a tensor array whose names and shapes
 * live in an arena; then the tensors are put in data-offset order, names are
 * indexed in an open-addressing hash table (which also finds duplicates) and
 * the offset rules of the reference loader are checked in that order.
 *
 * Error precedence follows the reference loader: anything that stops the
 * JSON from deserializing wins; our stricter rules (UnknownKey, ReservedName,
 * DuplicateName) come next; the offset and size rules last.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "header_int.h"
#include "json.h"

/* ---- arena: stable storage for names, metadata strings and shapes ------- */

struct sts__arena_blk {
    struct sts__arena_blk *next;
    size_t used, cap;
    uint64_t data[]; /* uint64_t so every allocation is 8-byte aligned */
};

void *sts__header_arena_alloc(sts__arena_blk **a, size_t bytes)
{
    sts__arena_blk *b = *a;
    size_t need = (bytes + 7) & ~(size_t)7;
    if (need < bytes)
        return NULL;
    if (need == 0)
        need = 8;
    if (!b || b->cap - b->used < need) {
        /* Blocks double up to 16 MiB so a big header costs few mallocs. */
        size_t cap = b ? b->cap * 2 : 4096;
        if (cap > ((size_t)16 << 20))
            cap = (size_t)16 << 20;
        if (cap < need)
            cap = need;
        if (cap > SIZE_MAX - sizeof *b)
            return NULL;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = *a;
        b->used = 0;
        b->cap = cap;
        *a = b;
    }
    b->used += need;
    return (unsigned char *)b->data + b->used - need;
}

char *sts__header_arena_strdup(sts__arena_blk **a, const char *s, size_t n)
{
    char *d = sts__header_arena_alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void arena_free(sts__arena_blk *a)
{
    while (a) {
        sts__arena_blk *next = a->next;
        free(a);
        a = next;
    }
}

int sts__header_rule_fail(sts_diag *diag, int code, const char *fmt, ...)
{
    char msg[sizeof diag->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sts__fail(diag, code, "%s: %s", sts_errname(code), msg);
}

int sts__header_bytes_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0)
        return c;
    return an < bn ? -1 : an > bn;
}

/* ---- parser --------------------------------------------------------------- */

typedef struct parser {
    sts__json j;
    sts_header *h;
    const char *entry; /* the entry being parsed, for messages */
    int pending;       /* first strict-rule failure, reported once the JSON is known good */
    char pending_msg[512];
    sts_dtype last_dtype; /* headers use few dtypes: try the previous one first */
    uint64_t *tmp;        /* growable scratch for shapes */
    size_t tmp_cap;
    int nomem;
} parser;

static const char meta_key[] = "__metadata__";
#define META_KEY_LEN (sizeof meta_key - 1)

static void set_pending(parser *p, int code, const char *fmt, ...) STS_PRINTF(3, 4);

static void set_pending(parser *p, int code, const char *fmt, ...)
{
    va_list ap;
    if (p->pending)
        return;
    p->pending = code;
    va_start(ap, fmt);
    vsnprintf(p->pending_msg, sizeof p->pending_msg, fmt, ap);
    va_end(ap);
}

static int grow_tmp(parser *p, size_t need)
{
    uint64_t *t = sts__grow(p->tmp, &p->tmp_cap, need, sizeof *t, 16);
    if (!t) {
        p->nomem = 1;
        return -1;
    }
    p->tmp = t;
    return 0;
}

/* Reads an array of integers into p->tmp; *count receives its length. */
static int parse_u64_array(parser *p, size_t *count)
{
    size_t k = 0;
    int more;
    if (sts__json_open(&p->j, '[', &more) != 0)
        return -1;
    while (more) {
        if (grow_tmp(p, k + 1) != 0 || sts__json_u64(&p->j, &p->tmp[k]) != 0)
            return -1;
        k++;
        if (sts__json_next(&p->j, ']', &more) != 0)
            return -1;
    }
    *count = k;
    return 0;
}

static int dtype_lookup(parser *p, const char *v, size_t vn, sts_dtype *dt)
{
    const char *last = sts_dtype_name(p->last_dtype);
    if (strlen(last) == vn && memcmp(last, v, vn) == 0) {
        *dt = p->last_dtype;
        return 0;
    }
    if (sts_dtype_from_name(v, vn, dt) != STS_OK)
        return -1;
    p->last_dtype = *dt;
    return 0;
}

static int key_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* Parses one tensor entry object into *t (name already set). */
static int parse_tensor(parser *p, sts_tensor_info *t)
{
    sts__json *j = &p->j;
    unsigned seen = 0;
    int more;
    if (sts__json_open(j, '{', &more) != 0)
        return -1;
    while (more) {
        const char *k, *v;
        size_t kn, vn, cnt;
        int rc = sts__json_string(j, &k, &kn);
        if (rc != 0)
            return p->nomem = (rc == -2), -1;
        if (sts__json_eat(j, ':', "expected ':'") != 0)
            return -1;
        if (key_is(k, kn, "dtype")) {
            if (seen & 1)
                return sts__json_fail(j, "duplicate field `dtype`");
            seen |= 1;
            if ((rc = sts__json_string(j, &v, &vn)) != 0)
                return p->nomem = (rc == -2), -1;
            if (dtype_lookup(p, v, vn, &t->dtype) != 0) {
                j->pos -= 1; /* point inside the value */
                return sts__json_fail(j, "unknown dtype");
            }
        } else if (key_is(k, kn, "shape")) {
            uint64_t *shape;
            if (seen & 2)
                return sts__json_fail(j, "duplicate field `shape`");
            seen |= 2;
            if (parse_u64_array(p, &cnt) != 0)
                return -1;
            if (cnt > UINT32_MAX)
                return sts__json_fail(j, "too many dimensions");
            shape = sts__header_arena_alloc(&p->h->arena, cnt * sizeof *shape);
            if (!shape)
                return p->nomem = 1, -1;
            if (cnt)
                memcpy(shape, p->tmp, cnt * sizeof *shape);
            t->shape = shape;
            t->ndim = (uint32_t)cnt;
        } else if (key_is(k, kn, "data_offsets")) {
            if (seen & 4)
                return sts__json_fail(j, "duplicate field `data_offsets`");
            seen |= 4;
            if (parse_u64_array(p, &cnt) != 0)
                return -1;
            if (cnt != 2)
                return sts__json_fail(j, "data_offsets must hold exactly 2 integers");
            t->begin = p->tmp[0];
            t->end = p->tmp[1];
        } else {
            /* The reference loader ignores unknown keys; we refuse them (docs/format.md §1). */
            set_pending(p, STS_E_UNKNOWN_KEY,
                        "tensor '%.200s' has an unknown key '%.*s' (byte %zu of the header)",
                        p->entry, (int)(kn > 200 ? 200 : kn), k, j->pos);
            if (sts__json_skip(j) != 0)
                return -1;
        }
        if (sts__json_next(j, '}', &more) != 0)
            return -1;
    }
    if (seen != 7)
        return sts__json_fail(j, !(seen & 1)   ? "missing field `dtype`"
                                 : !(seen & 2) ? "missing field `shape`"
                                               : "missing field `data_offsets`");
    return 0;
}

static int add_meta(parser *p, const char *k, size_t kn, const char *v, size_t vn)
{
    sts_header *h = p->h;
    sts__meta_kv *e;
    if (h->nmeta == h->meta_cap) {
        sts__meta_kv *m = sts__grow(h->meta, &h->meta_cap, h->nmeta + 1, sizeof *m, 8);
        if (!m)
            return p->nomem = 1, -1;
        h->meta = m;
    }
    e = &h->meta[h->nmeta];
    e->klen = kn;
    e->vlen = vn;
    if (!(e->key = sts__header_arena_strdup(&h->arena, k, kn)))
        return p->nomem = 1, -1;
    if (!(e->value = sts__header_arena_strdup(&h->arena, v, vn)))
        return p->nomem = 1, -1;
    h->nmeta++;
    return 0;
}

/*
 * When __metadata__ holds a non-string value, the entry may be a tensor that
 * was named __metadata__ (ReservedName, our rule); otherwise it is the
 * reference loader's type error.  Rewinds and tries the tensor reading.
 */
static int meta_not_strings(parser *p, size_t start, size_t nmeta0)
{
    sts__json *j = &p->j;
    size_t bad = j->pos;
    sts_tensor_info t;
    memset(&t, 0, sizeof t);
    p->h->nmeta = nmeta0;
    j->pos = start;
    if (parse_tensor(p, &t) == 0 && !p->nomem) {
        set_pending(p, STS_E_RESERVED_NAME,
                    "a tensor entry is named __metadata__ (byte %zu of the header)", start);
        return 0;
    }
    if (p->nomem)
        return -1;
    j->err = NULL;
    j->pos = bad;
    return sts__json_fail(j, "__metadata__ must map strings to strings");
}

static int parse_meta(parser *p)
{
    sts__json *j = &p->j;
    size_t start, nmeta0 = p->h->nmeta;
    int more, rc;
    if (p->h->has_meta++)
        set_pending(p, STS_E_DUPLICATE_NAME, "__metadata__ appears twice (byte %zu of the header)",
                    j->pos);
    rc = sts__json_null(j);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    start = j->pos;
    if (sts__json_peek(j) != '{')
        return sts__json_fail(j, "__metadata__ must be an object or null");
    if (sts__json_open(j, '{', &more) != 0)
        return -1;
    while (more) {
        const char *k, *v;
        size_t kn, vn;
        char *kcopy;
        if ((rc = sts__json_string(j, &k, &kn)) != 0)
            return p->nomem = (rc == -2), -1;
        /* The value's scan reuses the scratch buffer: keep the key first. */
        if (!(kcopy = sts__header_arena_strdup(&p->h->arena, k, kn)))
            return p->nomem = 1, -1;
        if (sts__json_eat(j, ':', "expected ':'") != 0)
            return -1;
        if (sts__json_peek(j) != '"')
            return meta_not_strings(p, start, nmeta0);
        if ((rc = sts__json_string(j, &v, &vn)) != 0)
            return p->nomem = (rc == -2), -1;
        if (add_meta(p, kcopy, kn, v, vn) != 0)
            return -1;
        if (sts__json_next(j, '}', &more) != 0)
            return -1;
    }
    return 0;
}

static sts_tensor_info *new_tensor(parser *p)
{
    sts_header *h = p->h;
    sts_tensor_info *t = sts__grow(h->t, &h->cap, h->n + 1, sizeof *t, 64);
    if (!t)
        return NULL;
    h->t = t;
    memset(&h->t[h->n], 0, sizeof h->t[0]);
    return &h->t[h->n++];
}

static int parse_top(parser *p)
{
    sts__json *j = &p->j;
    int more, rc;
    if (sts__json_open(j, '{', &more) != 0)
        return -1;
    while (more) {
        const char *k;
        size_t kn;
        if ((rc = sts__json_string(j, &k, &kn)) != 0)
            return p->nomem = (rc == -2), -1;
        if (kn == META_KEY_LEN && memcmp(k, meta_key, kn) == 0) {
            p->entry = meta_key;
            if (sts__json_eat(j, ':', "expected ':'") != 0 || parse_meta(p) != 0)
                return -1;
        } else {
            sts_tensor_info *t = new_tensor(p);
            char *name = t ? sts__header_arena_strdup(&p->h->arena, k, kn) : NULL;
            if (!name)
                return p->nomem = 1, -1;
            t->name = name;
            t->name_len = kn;
            p->entry = name;
            if (sts__json_eat(j, ':', "expected ':'") != 0 || parse_tensor(p, t) != 0)
                return -1;
        }
        p->entry = NULL;
        if (sts__json_next(j, '}', &more) != 0)
            return -1;
    }
    return sts__json_end(j);
}

/* ---- ordering, name index, validation ------------------------------------ */

static int cmp_offsets(const void *a, const void *b)
{
    const sts_tensor_info *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    /* Ties are zero-size tensors sharing an offset: order them by name so results are stable. */
    return sts__header_bytes_cmp(x->name, x->name_len, y->name, y->name_len);
}

static void sort_by_offsets(sts_header *h)
{
    /* Files written in canonical or PyTorch order are already sorted: skip the sort then. */
    for (size_t i = 1; i < h->n; i++) {
        if (cmp_offsets(&h->t[i - 1], &h->t[i]) > 0) {
            qsort(h->t, h->n, sizeof h->t[0], cmp_offsets);
            return;
        }
    }
}

static const char *tensor_key(const void *ctx, size_t i, size_t *len)
{
    const sts_header *h = ctx;
    *len = h->t[i].name_len;
    return h->t[i].name;
}

static int build_index(sts_header *h, sts_diag *diag)
{
    enum { AHEAD = 16 };
    uint64_t *hashes;
    int rc;
    if (h->n > STS_MAX_TENSORS)
        return sts__fail(diag, STS_E_UNSUPPORTED, "more than %llu tensors in one header",
                         STS_MAX_TENSORS);
    sts__hashtab_init(&h->names, tensor_key, h);
    hashes = sts__malloc_array(h->n, sizeof *hashes);
    if (!hashes || sts__hashtab_reserve(&h->names, h->n) != STS_OK) {
        free(hashes);
        return STS_E_NOMEM;
    }
    for (size_t i = 0; i < h->n; i++)
        hashes[i] = sts__hashtab_hash(h->t[i].name, h->t[i].name_len);
    for (size_t i = 0; i < h->n; i++) {
        size_t first = 0;
        /* Slots are hit at random: fetch a later one now so its miss overlaps this work. */
        if (i + AHEAD < h->n)
            sts__hashtab_prefetch(&h->names, hashes[i + AHEAD]);
        rc = sts__hashtab_insert(&h->names, i, hashes[i], &first);
        if (rc != STS_OK) {
            free(hashes);
            return rc == 1 ? sts__header_rule_fail(diag, STS_E_DUPLICATE_NAME,
                                                   "tensor '%.200s' appears twice", h->t[i].name)
                           : rc;
        }
    }
    free(hashes);
    return STS_OK;
}

static int cmp_meta_ptr(const void *a, const void *b)
{
    const sts__meta_kv *x = *(const sts__meta_kv *const *)a;
    const sts__meta_kv *y = *(const sts__meta_kv *const *)b;
    return sts__header_bytes_cmp(x->key, x->klen, y->key, y->klen);
}

/* Sorts pointers to the metadata entries by key (for lookup and canonical output); finds
 * duplicate keys, which the reference loader would silently collapse. */
static int index_meta(sts_header *h, sts_diag *diag)
{
    h->meta_sorted = sts__malloc_array(h->nmeta, sizeof *h->meta_sorted);
    if (!h->meta_sorted)
        return STS_E_NOMEM;
    for (size_t i = 0; i < h->nmeta; i++)
        h->meta_sorted[i] = &h->meta[i];
    qsort(h->meta_sorted, h->nmeta, sizeof *h->meta_sorted, cmp_meta_ptr);
    for (size_t i = 1; i < h->nmeta; i++) {
        const sts__meta_kv *x = h->meta_sorted[i - 1], *y = h->meta_sorted[i];
        if (sts__header_bytes_cmp(x->key, x->klen, y->key, y->klen) == 0)
            return sts__header_rule_fail(diag, STS_E_DUPLICATE_NAME,
                                         "__metadata__ key '%.200s' appears twice", x->key);
    }
    return STS_OK;
}

static int validate(sts_header *h, uint64_t data_size, sts_diag *diag)
{
    uint64_t start = 0;
    for (size_t i = 0; i < h->n; i++) {
        const sts_tensor_info *t = &h->t[i];
        uint64_t numel, nbytes;
        int rc;
        if (t->begin != start)
            return sts__header_rule_fail(diag, STS_E_INVALID_OFFSET,
                                         "tensor '%.200s' has data_offsets [%llu, %llu] but "
                                         "must begin at %llu, where the previous tensor ends",
                                         t->name, (unsigned long long)t->begin,
                                         (unsigned long long)t->end, (unsigned long long)start);
        if (t->end < t->begin)
            return sts__header_rule_fail(diag, STS_E_INVALID_OFFSET,
                                         "tensor '%.200s' has data_offsets [%llu, %llu]: it "
                                         "ends before it begins",
                                         t->name, (unsigned long long)t->begin,
                                         (unsigned long long)t->end);
        start = t->end;
        rc = sts__numel(t->shape, t->ndim, &numel);
        if (rc == STS_OK)
            rc = sts_dtype_nbytes(t->dtype, numel, &nbytes);
        if (rc != STS_OK)
            return sts__header_rule_fail(diag, rc, "tensor '%.200s' (%s, %u dims)%s", t->name,
                                         sts_dtype_name(t->dtype), (unsigned)t->ndim,
                                         rc == STS_E_MISALIGNED_SLICE
                                             ? ": size in bits is not a multiple of 8"
                                             : ": element or bit count overflows 64 bits");
        if (t->end - t->begin != nbytes)
            return sts__header_rule_fail(diag, STS_E_TENSOR_INVALID_INFO,
                                         "tensor '%.200s' spans %llu bytes but %s x %llu "
                                         "elements need %llu",
                                         t->name, (unsigned long long)(t->end - t->begin),
                                         sts_dtype_name(t->dtype), (unsigned long long)numel,
                                         (unsigned long long)nbytes);
    }
    h->data_size = start;
    if (data_size != UINT64_MAX && start != data_size)
        return sts__header_rule_fail(diag, STS_E_METADATA_INCOMPLETE_BUFFER,
                                     "tensors end at byte %llu of the data section "
                                     "but it holds %llu bytes",
                                     (unsigned long long)start, (unsigned long long)data_size);
    return STS_OK;
}

static int parse_fail(parser *p, sts_diag *diag)
{
    if (p->nomem)
        return sts__fail(diag, STS_E_NOMEM, "out of memory parsing the header");
    return sts__header_rule_fail(
        diag, STS_E_INVALID_HEADER_DESERIALIZATION, "%s at byte %zu of the header%s%.200s%s",
        p->j.err ? p->j.err : "invalid JSON", p->j.err_pos, p->entry ? " (entry '" : "",
        p->entry ? p->entry : "", p->entry ? "')" : "");
}

int sts_header_parse(const void *json, size_t len, uint64_t data_size, sts_header **out,
                     sts_diag *diag)
{
    int rc = STS_OK;
    size_t bad = 0;
    parser p;
    memset(&p, 0, sizeof p);
    sts__diag_clear(diag);
    if (!out || (!json && len))
        return sts__fail(diag, STS_E_ARG, "sts_header_parse: NULL argument");
    *out = NULL;
    if (sts__json_utf8_check(json, len, &bad) != 0)
        return sts__header_rule_fail(diag, STS_E_INVALID_HEADER,
                                     "header is not valid UTF-8 (byte %zu)", bad);
    sts__json_init(&p.j, json, len);
    p.h = calloc(1, sizeof *p.h);
    STS_GOTO_IF(!p.h, diag, STS_E_NOMEM, "out of memory");
    if (parse_top(&p) != 0) {
        rc = parse_fail(&p, diag);
        goto done;
    }
    if (p.pending) {
        rc = sts__header_rule_fail(diag, p.pending, "%s", p.pending_msg);
        goto done;
    }
    STS_CHECK(index_meta(p.h, diag));
    sort_by_offsets(p.h);
    STS_CHECK(build_index(p.h, diag));
    STS_CHECK(validate(p.h, data_size, diag));
    *out = p.h;
    p.h = NULL;
done:
    if (rc == STS_E_NOMEM && diag && !diag->message[0])
        sts__fail(diag, rc, "out of memory parsing the header");
    sts__json_fini(&p.j);
    free(p.tmp);
    sts_header_free(p.h);
    return rc;
}

void sts_header_free(sts_header *h)
{
    if (!h)
        return;
    arena_free(h->arena);
    free(h->t);
    free(h->meta);
    free(h->meta_sorted);
    sts__hashtab_free(&h->names);
    free(h);
}
