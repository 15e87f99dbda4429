/*
 * internal.h - private helpers shared by the library's modules.
 *
 * Naming: non-static library-internal functions are sts__<module>_<verb>
 * (double underscore: not part of the public API).
 */
#ifndef STS_INTERNAL_H
#define STS_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "stshard.h"

#if defined(__GNUC__)
#define STS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define STS_PRINTF(f, a)
#endif

/*
 * Sets diag (if any) to code and a formatted message, and returns code, so a
 * failing leaf can write `return sts__fail(diag, STS_E_X, "...", ...)`.
 */
int sts__fail(sts_diag *diag, int code, const char *fmt, ...) STS_PRINTF(3, 4);
/* Same with a va_list. */
int sts__vfail(sts_diag *diag, int code, const char *fmt, va_list ap) STS_PRINTF(3, 0);
/* Prepends "prefix: " to diag's message (used to add a file name on the way out). */
void sts__diag_prefix(sts_diag *diag, const char *fmt, ...) STS_PRINTF(2, 3);
/* Clears diag. */
void sts__diag_clear(sts_diag *diag);

/* Maps an errno value to an STS_E_* code. */
int sts__err_from_errno(int errnum);
/* Jumps to done: with rc = code and a message when cond holds. */
#define STS_GOTO_IF(cond, diag, code, ...)                                                         \
    do {                                                                                           \
        if (cond) {                                                                                \
            rc = sts__fail((diag), (code), __VA_ARGS__);                                           \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/* Jumps to done: when expr returns an error (the callee already filled diag). */
#define STS_CHECK(expr)                                                                            \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (rc != STS_OK)                                                                          \
            goto done;                                                                             \
    } while (0)

/* Checked 64-bit arithmetic: return 0 on success, 1 on overflow. */
static inline int sts__mul_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_mul_overflow(a, b, r);
}
static inline int sts__add_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_add_overflow(a, b, r);
}

/* Product of shape[0..ndim) (1 for a scalar).  Returns STS_E_VALIDATION_OVERFLOW on overflow. */
int sts__numel(const uint64_t *shape, uint32_t ndim, uint64_t *numel);

/* malloc/calloc/realloc wrappers that fail cleanly on size overflow. */
void *sts__malloc_array(size_t n, size_t size);
void *sts__calloc_array(size_t n, size_t size);
void *sts__realloc_array(void *p, size_t n, size_t size);
char *sts__strdup(const char *s);
/*
 * Room for need elements of size bytes in the array p of *cap elements: when
 * need > *cap (or p is NULL) the capacity doubles, from first when it was 0,
 * until it holds need, and p is reallocated.  Returns the array (p itself
 * when it was big enough), or NULL when out of memory or on size overflow;
 * p and *cap are then unchanged.  Usage:
 *   T *v = sts__grow(a->v, &a->cap, a->n + 1, sizeof *v, 16); if (!v) ...; a->v = v;
 */
void *sts__grow(void *p, size_t *cap, size_t need, size_t size, size_t first);

/* mapping.c helpers shared with verify.c (cJSON stays out of the public API). */
struct cJSON;
/* Reads and parses a small JSON file whole.  Errors: STS_E_NOENT, STS_E_ACCESS, STS_E_IO,
 * STS_E_NOMEM, STS_E_MAPPING (not JSON).  *out is freed with cJSON_Delete. */
int sts__mapping_read_json(const char *path, struct cJSON **out, sts_diag *diag);
/* 1 when item is a JSON number holding an integer in [lo, hi] (exact up to 2^53), else 0. */
int sts__mapping_json_uint(const struct cJSON *item, double lo, double hi, uint64_t *out);
/* 1 when name ends in -K-of-N.safetensors (docs/format.md §4), K and N < 2^32; else 0. */
int sts__mapping_parse_file_index(const char *name, unsigned *k, unsigned *n);

/* coverage.c: the exact-tiling check of a tensor's blocks (pure arithmetic, no I/O). */
typedef struct sts__coverage_issue {
    int code;                /* STS_E_COVERAGE_GAP or STS_E_COVERAGE_OVERLAP */
    size_t a, b;             /* overlapping blocks (caller's numbering); SIZE_MAX for a gap */
    const uint64_t *lo, *hi; /* the region, ndim entries each; NULL when not located */
    int more;                /* 1: the report limit was reached, further issues not listed */
} sts__coverage_issue;
typedef void (*sts__coverage_fn)(void *ud, const sts__coverage_issue *issue);
/*
 * Checks that n blocks of an ndim-dimensional tensor tile its global box
 * exactly.  offsets and shapes hold n rows of ndim entries.  The global shape,
 * stored in global (ndim entries, may be NULL), is per dimension the largest
 * offset + size.  Identical duplicate blocks count once; empty blocks only
 * widen the global shape.  Reports up to max_each gaps and max_each overlaps
 * through fn (then one issue with more = 1).  Work stays near
 * O(n log^2 n) for grid-like shardings.  Returns STS_OK for an exact tiling,
 * STS_E_COVERAGE_OVERLAP (any overlap), STS_E_COVERAGE_GAP,
 * STS_E_VALIDATION_OVERFLOW (offset + size overflows) or STS_E_NOMEM.
 */
int sts__coverage_check(uint32_t ndim, size_t n, const uint64_t *offsets, const uint64_t *shapes,
                        size_t max_each, sts__coverage_fn fn, void *ud, uint64_t *global);

/*
 * Fault injection (src/fault.c, test builds only: CMake option STS_FAULT_INJECTION).
 * STS_FAULT("point", diag) is one line at a named point of the code: it returns
 * STS_OK, or the error that STSHARD_FAULT asks for at that point (with diag
 * filled), or kills/pauses the process.  A failing point must be handled
 * exactly like a real failure there (same error agreement), so a caller writes
 * e.g. `if (rc == STS_OK) rc = STS_FAULT("write", diag);`.  In other builds it
 * is the constant STS_OK and costs nothing.
 */
#ifdef STS_FAULT_INJECTION
int sts__fault_at(const char *point, sts_diag *diag);
#define STS_FAULT(point, diag) sts__fault_at((point), (diag))
#else
#define STS_FAULT(point, diag) ((void)(diag), STS_OK)
#endif

/*
 * Local.  sts_header_encode() without the bytes: the same checks, *buf_len
 * and offsets, for ranks that need a header's layout but never write it.
 */
int sts__header_encode_measure(const sts_tensor_desc *tensors, size_t n, const sts_meta_entry *meta,
                               size_t nmeta, sts_layout layout, uint64_t align, size_t *buf_len,
                               uint64_t *begin, uint64_t *end, sts_diag *diag);

/*
 * Local.  sts_header_encode() into a buffer of hint bytes allocated at once
 * (the measured length; it still grows if the header turns out longer).
 */
int sts__header_encode_sized(const sts_tensor_desc *tensors, size_t n, const sts_meta_entry *meta,
                             size_t nmeta, sts_layout layout, uint64_t align, size_t hint,
                             void **buf, size_t *buf_len, uint64_t *begin, uint64_t *end,
                             sts_diag *diag);

#endif /* STS_INTERNAL_H */
