/*
 * bytes.h - a growable byte buffer, for the messages ranks exchange
 * (exchange.c) and decode: fixed-size fields stay 8-byte aligned because
 * strings are padded to a multiple of 8.
 * Format layer (src/layer.h): no MPI.
 */
#ifndef STS_BYTES_H
#define STS_BYTES_H

#include "internal.h"

/* A growable byte buffer. */
typedef struct sts_bytes {
    unsigned char *buf;
    size_t len, cap;
} sts_bytes;

/* Local.  Appends n bytes (p may be NULL when n is 0).  STS_OK or STS_E_NOMEM (b unchanged). */
int sts__bytes_put(sts_bytes *b, const void *p, size_t n);
/* Local.  Appends v in host byte order (the ranks of a job share one architecture); STS_E_NOMEM. */
int sts__bytes_put_u64(sts_bytes *b, uint64_t v);
/*
 * Local.  Appends a string of len bytes, NUL-terminated and padded with NULs
 * to a multiple of 8, so the fields after it stay 8-byte aligned; STS_E_NOMEM.
 */
int sts__bytes_put_str(sts_bytes *b, const char *s, size_t len);
/* Local.  The space sts__bytes_put_str takes for len bytes. */
size_t sts__bytes_str_space(size_t len);
/* Local.  Frees the bytes and resets b to empty; NULL-safe. */
void sts__bytes_free(sts_bytes *b);

#endif /* STS_BYTES_H */
