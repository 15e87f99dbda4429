/*
 * header_encode.c - writing safetensors headers (docs/format.md, "Layouts").
 *
 * canonical: what the reference writer produces, byte for byte: compact JSON
 *   (serde_json), __metadata__ first with sorted keys, tensors by dtype rank
 *   descending then name ascending, packed back to back, padded with spaces
 *   so the header length is a multiple of 8.
 * pytorch: what PyTorch's consolidate_safetensors_files produces: tensors in
 *   the caller's order, Python json.dumps spacing and ASCII-only escaping,
 *   keys shape/dtype/data_offsets, no padding.
 */
#include <stdlib.h>
#include <string.h>

#include "header_int.h"
#include "json.h"
#include "json_write.h"

typedef struct out_buf {
    char *p;
    size_t len, cap;
    int nomem;
    int count_only; /* measure: len grows, nothing is stored */
} out_buf;

static void put(out_buf *o, const char *s, size_t n)
{
    if (o->nomem)
        return;
    if (o->count_only) {
        o->len += n;
        return;
    }
    if (o->cap - o->len < n) {
        char *p = n <= SIZE_MAX - o->len ? sts__grow(o->p, &o->cap, o->len + n, 1, 256) : NULL;
        if (!p) {
            o->nomem = 1;
            return;
        }
        o->p = p;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out_buf *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(out_buf *o, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, tmp + i, sizeof tmp - i);
}

static void put_piece(void *ud, const char *s, size_t n)
{
    put(ud, s, n);
}

/* s as a JSON string: serde_json style, or Python's (ascii_only) for the pytorch layout. */
static void put_string(out_buf *o, const char *s, size_t n, int ascii_only)
{
    sts__json_write_string(s, n, ascii_only ? STS_JSON_ASCII : 0, put_piece, o);
}

/* ---- argument checks and ordering --------------------------------------- */

typedef struct enc {
    const sts_tensor_desc *t;
    size_t n;
    const sts_meta_entry *meta;
    size_t nmeta;
} enc;

/* qsort has no context pointer; sort pointers to the descriptors instead of indices. */
static int cmp_desc_name(const void *a, const void *b)
{
    const sts_tensor_desc *x = *(const sts_tensor_desc *const *)a;
    const sts_tensor_desc *y = *(const sts_tensor_desc *const *)b;
    return strcmp(x->name, y->name); /* strcmp compares as unsigned char: bytewise */
}

static int cmp_desc_canonical(const void *a, const void *b)
{
    const sts_tensor_desc *x = *(const sts_tensor_desc *const *)a;
    const sts_tensor_desc *y = *(const sts_tensor_desc *const *)b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_meta_key(const void *a, const void *b)
{
    const sts_meta_entry *x = *(const sts_meta_entry *const *)a;
    const sts_meta_entry *y = *(const sts_meta_entry *const *)b;
    return strcmp(x->key, y->key);
}

static int check_tensor(const sts_tensor_desc *t, uint64_t *nbytes, sts_diag *diag)
{
    uint64_t numel;
    int rc;
    if (!t->name || (t->ndim && !t->shape))
        return sts__fail(diag, STS_E_ARG, "tensor descriptor with a NULL name or shape");
    if (sts__json_utf8_check(t->name, strlen(t->name), NULL) != 0)
        return sts__fail(diag, STS_E_ARG, "tensor name '%.200s' is not valid UTF-8", t->name);
    if (strcmp(t->name, "__metadata__") == 0)
        return sts__header_rule_fail(diag, STS_E_RESERVED_NAME, "a tensor is named __metadata__");
    if (!sts_dtype_name(t->dtype))
        return sts__fail(diag, STS_E_ARG, "tensor '%.200s': invalid dtype %d", t->name,
                         (int)t->dtype);
    rc = sts__numel(t->shape, t->ndim, &numel);
    if (rc == STS_OK)
        rc = sts_dtype_nbytes(t->dtype, numel, nbytes);
    if (rc != STS_OK)
        return sts__header_rule_fail(diag, rc, "tensor '%.200s'", t->name);
    return STS_OK;
}

/* Sorts pointers by cmp and reports the first adjacent equal pair under cmp_eq. */
static const void *sorted_dup(const void **v, size_t n, int (*cmp)(const void *, const void *))
{
    qsort(v, n, sizeof *v, cmp);
    for (size_t i = 1; i < n; i++)
        if (cmp(&v[i - 1], &v[i]) == 0)
            return v[i];
    return NULL;
}

static int check_meta(const enc *e, const void **ptrs, sts_diag *diag)
{
    const sts_meta_entry *dup;
    for (size_t i = 0; i < e->nmeta; i++) {
        const sts_meta_entry *m = &e->meta[i];
        if (!m->key || !m->value)
            return sts__fail(diag, STS_E_ARG, "__metadata__ entry %zu has a NULL key or value", i);
        if (sts__json_utf8_check(m->key, strlen(m->key), NULL) != 0 ||
            sts__json_utf8_check(m->value, strlen(m->value), NULL) != 0)
            return sts__fail(diag, STS_E_ARG, "__metadata__ entry '%.200s' is not valid UTF-8",
                             m->key);
        ptrs[i] = m;
    }
    dup = sorted_dup(ptrs, e->nmeta, cmp_meta_key);
    if (dup)
        return sts__header_rule_fail(diag, STS_E_DUPLICATE_NAME,
                                     "__metadata__ key '%.200s' appears twice", dup->key);
    return STS_OK;
}

/* ---- emitting ------------------------------------------------------------ */

static void emit_meta(out_buf *o, const enc *e, const void *const *mptrs, int py)
{
    put_string(o, "__metadata__", 12, py);
    puts_(o, py ? ": {" : ":{");
    for (size_t i = 0; i < e->nmeta; i++) {
        const sts_meta_entry *m = py ? &e->meta[i] : mptrs[i];
        if (i)
            puts_(o, py ? ", " : ",");
        put_string(o, m->key, strlen(m->key), py);
        puts_(o, py ? ": " : ":");
        put_string(o, m->value, strlen(m->value), py);
    }
    puts_(o, "}");
}

static void emit_shape(out_buf *o, const sts_tensor_desc *t, int py)
{
    puts_(o, "[");
    for (uint32_t d = 0; d < t->ndim; d++) {
        if (d)
            puts_(o, py ? ", " : ",");
        put_u64(o, t->shape[d]);
    }
    puts_(o, "]");
}

static void emit_tensor(out_buf *o, const sts_tensor_desc *t, uint64_t b, uint64_t e, int py)
{
    const char *dt = sts_dtype_name(t->dtype);
    put_string(o, t->name, strlen(t->name), py);
    if (py) {
        puts_(o, ": {\"shape\": ");
        emit_shape(o, t, 1);
        puts_(o, ", \"dtype\": \"");
        puts_(o, dt);
        puts_(o, "\", \"data_offsets\": [");
        put_u64(o, b);
        puts_(o, ", ");
    } else {
        puts_(o, ":{\"dtype\":\"");
        puts_(o, dt);
        puts_(o, "\",\"shape\":");
        emit_shape(o, t, 0);
        puts_(o, ",\"data_offsets\":[");
        put_u64(o, b);
        puts_(o, ",");
    }
    put_u64(o, e);
    puts_(o, "]}");
}

/* Spaces after the JSON so the data section starts on the required boundary. */
static uint64_t padding(uint64_t json_len, sts_layout layout, uint64_t align)
{
    if (align)
        return (align - (8 + json_len) % align) % align;
    if (layout == STS_LAYOUT_CANONICAL)
        return (8 - json_len % 8) % 8;
    return 0;
}

/*
 * With buf NULL only measures: *buf_len and the offsets are those the bytes
 * would have.  hint > 0: the expected length, allocated at once (a header of
 * millions of tensors would otherwise end in a buffer up to twice its size).
 */
static int encode(const sts_tensor_desc *tensors, size_t n, const sts_meta_entry *meta,
                  size_t nmeta, sts_layout layout, uint64_t align, void **buf, size_t *buf_len,
                  size_t hint, uint64_t *begin, uint64_t *end, sts_diag *diag)
{
    int rc = STS_OK, py = layout == STS_LAYOUT_PYTORCH;
    const void **tptrs = NULL, **mptrs = NULL, *dup;
    uint64_t *bs = NULL, off = 0, pad, hlen;
    out_buf o = {NULL, 0, 0, 0, buf == NULL};
    enc e = {tensors, n, meta, nmeta};
    sts__diag_clear(diag);
    if (!buf_len || (n && !tensors) || (nmeta && !meta) ||
        (layout != STS_LAYOUT_CANONICAL && layout != STS_LAYOUT_PYTORCH) || align % 8 != 0)
        return sts__fail(diag, STS_E_ARG, "sts_header_encode: invalid argument");
    if (buf)
        *buf = NULL;
    *buf_len = 0;
    if (buf && hint) {
        o.p = malloc(hint);
        o.cap = o.p ? hint : 0;
    }
    tptrs = sts__malloc_array(n, sizeof *tptrs);
    mptrs = sts__malloc_array(nmeta, sizeof *mptrs);
    bs = sts__malloc_array(n, 2 * sizeof *bs); /* size, then begin, per tensor */
    STS_GOTO_IF(!tptrs || !mptrs || !bs, diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        STS_CHECK(check_tensor(&tensors[i], &bs[2 * i], diag));
        tptrs[i] = &tensors[i];
    }
    dup = sorted_dup(tptrs, n, cmp_desc_name);
    if (dup) {
        rc = sts__header_rule_fail(diag, STS_E_DUPLICATE_NAME, "tensor '%.200s' appears twice",
                                   ((const sts_tensor_desc *)dup)->name);
        goto done;
    }
    STS_CHECK(check_meta(&e, mptrs, diag));
    if (py) {
        for (size_t i = 0; i < n; i++)
            tptrs[i] = &tensors[i];
    } else {
        qsort(tptrs, n, sizeof *tptrs, cmp_desc_canonical);
    }
    /* Offsets in output order, kept per tensor in the caller's order. */
    for (size_t k = 0; k < n; k++) {
        size_t i = (size_t)((const sts_tensor_desc *)tptrs[k] - tensors);
        bs[2 * i + 1] = off;
        STS_GOTO_IF(sts__add_u64(off, bs[2 * i], &off), diag, STS_E_VALIDATION_OVERFLOW,
                    "%s: total data size overflows 64 bits",
                    sts_errname(STS_E_VALIDATION_OVERFLOW));
    }
    put(&o, "\0\0\0\0\0\0\0\0{", 9);
    if (nmeta) {
        emit_meta(&o, &e, mptrs, py);
        if (n)
            puts_(&o, py ? ", " : ",");
    }
    for (size_t k = 0; k < n; k++) {
        const sts_tensor_desc *t = tptrs[k];
        size_t i = (size_t)(t - tensors);
        if (k)
            puts_(&o, py ? ", " : ",");
        emit_tensor(&o, t, bs[2 * i + 1], bs[2 * i + 1] + bs[2 * i], py);
        if (o.nomem || o.len > STS_MAX_HEADER_SIZE + 8)
            break; /* too large already: stop before building an even larger buffer */
    }
    puts_(&o, "}");
    STS_GOTO_IF(o.nomem, diag, STS_E_NOMEM, "out of memory encoding the header");
    hlen = o.len - 8;
    pad = padding(hlen, layout, align);
    STS_GOTO_IF(hlen + pad > STS_MAX_HEADER_SIZE, diag, STS_E_HEADER_TOO_LARGE,
                "%s: the header would take %llu bytes (limit %llu)",
                sts_errname(STS_E_HEADER_TOO_LARGE), (unsigned long long)(hlen + pad),
                STS_MAX_HEADER_SIZE);
    for (uint64_t k = 0; k < pad; k++)
        put(&o, " ", 1);
    STS_GOTO_IF(o.nomem, diag, STS_E_NOMEM, "out of memory encoding the header");
    hlen += pad;
    for (int k = 0; o.p && k < 8; k++)
        o.p[k] = (char)(hlen >> (8 * k) & 0xFF);
    for (size_t i = 0; i < n; i++) {
        if (begin)
            begin[i] = bs[2 * i + 1];
        if (end)
            end[i] = bs[2 * i + 1] + bs[2 * i];
    }
    if (buf)
        *buf = o.p;
    *buf_len = o.len;
    o.p = NULL;
done:
    free(o.p);
    free(tptrs);
    free(mptrs);
    free(bs);
    return rc;
}

int sts_header_encode(const sts_tensor_desc *tensors, size_t n, const sts_meta_entry *meta,
                      size_t nmeta, sts_layout layout, uint64_t align, void **buf, size_t *buf_len,
                      uint64_t *begin, uint64_t *end, sts_diag *diag)
{
    if (!buf)
        return sts__fail(diag, STS_E_ARG, "sts_header_encode: invalid argument");
    return encode(tensors, n, meta, nmeta, layout, align, buf, buf_len, 0, begin, end, diag);
}

int sts__header_encode_measure(const sts_tensor_desc *tensors, size_t n, const sts_meta_entry *meta,
                               size_t nmeta, sts_layout layout, uint64_t align, size_t *buf_len,
                               uint64_t *begin, uint64_t *end, sts_diag *diag)
{
    return encode(tensors, n, meta, nmeta, layout, align, NULL, buf_len, 0, begin, end, diag);
}

int sts__header_encode_sized(const sts_tensor_desc *tensors, size_t n, const sts_meta_entry *meta,
                             size_t nmeta, sts_layout layout, uint64_t align, size_t hint,
                             void **buf, size_t *buf_len, uint64_t *begin, uint64_t *end,
                             sts_diag *diag)
{
    if (!buf)
        return sts__fail(diag, STS_E_ARG, "sts_header_encode: invalid argument");
    return encode(tensors, n, meta, nmeta, layout, align, buf, buf_len, hint, begin, end, diag);
}
