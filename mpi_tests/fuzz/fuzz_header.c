/*
 * fuzz_header.c - libFuzzer harness for the header codec.
 *
 * Each input is tried twice: as a whole safetensors file (8-byte prefix, then
 * the header, then data) and as bare header JSON.  Whenever a header parses,
 * the invariants of a valid header are checked, and it is re-encoded in both
 * layouts and re-parsed: the round trip must keep every tensor, and a
 * canonical encoding of the re-parse must reproduce the same bytes.
 * Violations abort, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stshard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_header: invariant failed: %s (line %d)\n", #c, __LINE__);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A parsed header is sorted, contiguous, indexed, and sized consistently. */
static void check_invariants(const sts_header *h, uint64_t data_size)
{
    uint64_t pos = 0;
    size_t n = sts_header_count(h);
    for (size_t i = 0; i < n; i++) {
        const sts_tensor_info *t = sts_header_tensor(h, i);
        uint64_t numel = 1, nbytes = 0;
        REQUIRE(t && t->begin == pos && t->end >= t->begin);
        REQUIRE(t->name[t->name_len] == '\0');
        REQUIRE(sts_header_find(h, t->name, t->name_len) == (long)i);
        REQUIRE(sts_dtype_name(t->dtype) != NULL);
        for (uint32_t d = 0; d < t->ndim; d++)
            REQUIRE(!__builtin_mul_overflow(numel, t->shape[d], &numel));
        REQUIRE(sts_dtype_nbytes(t->dtype, numel, &nbytes) == STS_OK);
        REQUIRE(t->end - t->begin == nbytes);
        REQUIRE(t->saved_offsets == NULL);
        pos = t->end;
    }
    REQUIRE(sts_header_tensor(h, n) == NULL);
    REQUIRE(sts_header_data_size(h) == pos);
    REQUIRE(data_size == UINT64_MAX || data_size == pos);
    for (size_t i = 0; i < sts_header_meta_count(h); i++) {
        const char *k = NULL, *v = NULL;
        REQUIRE(sts_header_meta_at(h, i, &k, &v) == STS_OK && k && v);
    }
}

/* Encodes h; returns the code, with the buffer in *buf. */
static int encode_header(const sts_header *h, sts_layout layout, uint64_t align, void **buf,
                         size_t *len)
{
    size_t n = sts_header_count(h), nm = sts_header_meta_count(h);
    sts_tensor_desc *t = calloc(n ? n : 1, sizeof *t);
    sts_meta_entry *m = calloc(nm ? nm : 1, sizeof *m);
    int rc;
    REQUIRE(t && m);
    for (size_t i = 0; i < n; i++) {
        const sts_tensor_info *ti = sts_header_tensor(h, i);
        t[i] = (sts_tensor_desc){ti->name, ti->dtype, ti->ndim, ti->shape};
    }
    for (size_t i = 0; i < nm; i++)
        sts_header_meta_at(h, i, &m[i].key, &m[i].value);
    rc = sts_header_encode(t, n, m, nm, layout, align, buf, len, NULL, NULL, NULL);
    free(t);
    free(m);
    return rc;
}

/* Names holding U+0000 cannot pass through the NUL-terminated encoder API. */
static int has_inner_nul(const sts_header *h)
{
    for (size_t i = 0; i < sts_header_count(h); i++) {
        const sts_tensor_info *t = sts_header_tensor(h, i);
        if (strlen(t->name) != t->name_len)
            return 1;
    }
    return 0;
}

static void round_trip(const sts_header *h)
{
    static const sts_layout layouts[2] = {STS_LAYOUT_CANONICAL, STS_LAYOUT_PYTORCH};
    if (has_inner_nul(h))
        return;
    for (int l = 0; l < 2; l++) {
        void *buf = NULL, *buf2 = NULL;
        size_t len = 0, len2 = 0;
        sts_header *h2 = NULL;
        int rc = encode_header(h, layouts[l], l ? 64 : 0, &buf, &len);
        /* Metadata strings with U+0000 are cut at the NUL by the C API and may then collide. */
        if (rc == STS_E_DUPLICATE_NAME)
            return;
        REQUIRE(rc == STS_OK);
        REQUIRE(len >= 8 && (l == 0 ? (len - 8) % 8 == 0 : len % 64 == 0));
        rc = sts_header_parse((const char *)buf + 8, len - 8, sts_header_data_size(h), &h2, NULL);
        REQUIRE(rc == STS_OK);
        REQUIRE(sts_header_count(h2) == sts_header_count(h));
        REQUIRE(sts_header_meta_count(h2) == sts_header_meta_count(h));
        for (size_t i = 0; i < sts_header_count(h); i++) {
            const sts_tensor_info *a = sts_header_tensor(h, i);
            long k = sts_header_find(h2, a->name, a->name_len);
            const sts_tensor_info *b = sts_header_tensor(h2, (size_t)(k < 0 ? 0 : k));
            REQUIRE(k >= 0 && a->dtype == b->dtype && a->ndim == b->ndim);
            REQUIRE(a->ndim == 0 || memcmp(a->shape, b->shape, a->ndim * sizeof *a->shape) == 0);
            REQUIRE(a->end - a->begin == b->end - b->begin);
        }
        if (l == 0) {
            REQUIRE(encode_header(h2, STS_LAYOUT_CANONICAL, 0, &buf2, &len2) == STS_OK);
            REQUIRE(len2 == len && memcmp(buf, buf2, len) == 0);
        }
        sts_free(buf);
        sts_free(buf2);
        sts_header_free(h2);
    }
}

static void try_header(const uint8_t *json, size_t len, uint64_t data_size)
{
    sts_header *h = NULL;
    sts_diag d;
    int rc = sts_header_parse(json, len, data_size, &h, &d);
    if (rc != STS_OK) {
        REQUIRE(h == NULL && d.code == rc && d.message[0] != '\0');
        REQUIRE(strstr(d.message, sts_errname(rc)) != NULL || rc == STS_E_NOMEM);
        return;
    }
    check_invariants(h, data_size);
    round_trip(h);
    /* Must not crash whatever the metadata holds; the sharding fuzzer checks the results. */
    (void)sts_header_decode_sharding(h, NULL);
    sts_header_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t n = 0;
    if (sts_header_check_prefix(size >= 8 ? data : NULL, size, &n) == STS_OK)
        try_header(data + 8, (size_t)n, size - 8 - n);
    try_header(data, size, UINT64_MAX);
    return 0;
}
