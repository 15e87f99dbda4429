/*
 * util.c - checked allocation, array growth and element-count arithmetic.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void *sts__malloc_array(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return NULL;
    return malloc(bytes ? bytes : 1);
}

void *sts__calloc_array(size_t n, size_t size)
{
    return calloc(n ? n : 1, size ? size : 1);
}

void *sts__realloc_array(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return NULL;
    return realloc(p, bytes ? bytes : 1);
}

void *sts__grow(void *p, size_t *cap, size_t need, size_t size, size_t first)
{
    size_t n = *cap ? *cap : (first ? first : 1);
    void *q;
    if (p && need <= *cap)
        return p;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return NULL;
        n *= 2;
    }
    q = sts__realloc_array(p, n, size);
    if (q)
        *cap = n;
    return q;
}

char *sts__strdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *d = malloc(len);
    if (d)
        memcpy(d, s, len);
    return d;
}

void sts_free(void *p)
{
    free(p);
}

int sts__numel(const uint64_t *shape, uint32_t ndim, uint64_t *numel)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        if (sts__mul_u64(n, shape[d], &n))
            return STS_E_VALIDATION_OVERFLOW;
    }
    *numel = n;
    return STS_OK;
}
