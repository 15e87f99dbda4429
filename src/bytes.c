/*
 * bytes.c - the growable byte buffer of bytes.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"

int sts__bytes_put(sts_bytes *b, const void *p, size_t n)
{
    unsigned char *grown;
    if (n > SIZE_MAX - b->len)
        return STS_E_NOMEM;
    grown = sts__grow(b->buf, &b->cap, b->len + n, 1, 4096);
    if (!grown)
        return STS_E_NOMEM;
    b->buf = grown;
    if (n)
        memcpy(b->buf + b->len, p, n);
    b->len += n;
    return STS_OK;
}

int sts__bytes_put_u64(sts_bytes *b, uint64_t v)
{
    return sts__bytes_put(b, &v, sizeof v);
}

int sts__bytes_put_str(sts_bytes *b, const char *s, size_t len)
{
    static const char zeros[8];
    int rc = sts__bytes_put(b, s, len);
    if (rc == STS_OK)
        rc = sts__bytes_put(b, zeros, 8 - len % 8);
    return rc;
}

size_t sts__bytes_str_space(size_t len)
{
    return len + 8 - len % 8;
}

void sts__bytes_free(sts_bytes *b)
{
    if (!b)
        return;
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
}
