/*
 * unit_header.c - the header codec against docs/format.md §1: golden vectors
 * byte for byte, both layouts, escapes, round trips, every validation rule
 * with its exact code, the legal edge cases, reading real files, and the
 * DCP_SHARDING_INFO decoder.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* ---- helpers ------------------------------------------------------------- */

static int parse_text(const char *json, uint64_t data_size, sts_header **h)
{
    sts_diag d;
    int rc = sts_header_parse(json, strlen(json), data_size, h, &d);
    if (rc != STS_OK) {
        CHECK(d.code == rc);
        CHECK(d.message[0] != '\0');
    }
    return rc;
}

/* Expects json to fail with want; the message must name the rule. */
static void expect_fail(const char *json, uint64_t data_size, int want, int line)
{
    sts_header *h = NULL;
    sts_diag d;
    int rc = sts_header_parse(json, strlen(json), data_size, &h, &d);
    if (rc != want) {
        fprintf(stderr, "line %d: expected %s, got %s (%s) for %s\n", line, sts_errname(want),
                sts_errname(rc), rc ? d.message : "", json);
        test_failures++;
    } else if (!strstr(d.message, sts_errname(want))) {
        fprintf(stderr, "line %d: message does not name %s: %s\n", line, sts_errname(want),
                d.message);
        test_failures++;
    }
    CHECK(h == NULL);
    sts_header_free(h);
}
#define EXPECT_FAIL(json, ds, want) expect_fail((json), (ds), (want), __LINE__)

static void expect_ok(const char *json, uint64_t data_size, size_t ntensors, int line)
{
    sts_header *h = NULL;
    sts_diag d;
    int rc = sts_header_parse(json, strlen(json), data_size, &h, &d);
    if (rc != STS_OK || sts_header_count(h) != ntensors) {
        fprintf(stderr, "line %d: expected success with %zu tensors, got %s (%s) for %s\n", line,
                ntensors, sts_errname(rc), rc ? d.message : "", json);
        test_failures++;
    }
    sts_header_free(h);
}
#define EXPECT_OK(json, ds, n) expect_ok((json), (ds), (n), __LINE__)

static int encode(const sts_tensor_desc *t, size_t n, const sts_meta_entry *m, size_t nm,
                  sts_layout layout, uint64_t align, char **buf, size_t *len, uint64_t *b,
                  uint64_t *e)
{
    void *p = NULL;
    int rc = sts_header_encode(t, n, m, nm, layout, align, &p, len, b, e, NULL);
    *buf = p;
    return rc;
}

static uint64_t prefix_of(const char *buf)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | (unsigned char)buf[i];
    return v;
}

/* The header of buf must be exactly json followed by pad spaces. */
static void check_bytes(const char *buf, size_t len, const char *json, size_t pad, int line)
{
    size_t jl = strlen(json);
    int ok = len == 8 + jl + pad && prefix_of(buf) == jl + pad && memcmp(buf + 8, json, jl) == 0;
    for (size_t i = 0; ok && i < pad; i++)
        ok = buf[8 + jl + i] == ' ';
    if (!ok) {
        fprintf(stderr, "line %d: encoded header differs\n  want: %s (+%zu spaces)\n  got:  %.*s\n",
                line, json, pad, (int)(len > 8 ? len - 8 : 0), buf + 8);
        test_failures++;
    }
}
#define CHECK_BYTES(buf, len, json, pad) check_bytes((buf), (len), (json), (pad), __LINE__)

/* ---- golden vectors and layouts ------------------------------------------ */

static void test_golden(void)
{
    static const uint64_t s123[] = {1, 2, 3}, s1123[] = {1, 1, 2, 3}, s22[] = {2, 2};
    sts_tensor_desc t1 = {"attn.0", STS_F32, 3, s123};
    sts_tensor_desc t2 = {"attn0", STS_F32, 4, s1123};
    sts_tensor_desc two[2] = {{"test2", STS_F16, 2, s22}, {"test1", STS_I32, 2, s22}};
    uint64_t b[2], e[2];
    char *buf = NULL;
    size_t len = 0;

    CHECK_OK(encode(&t1, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, b, e));
    CHECK(len == 8 + 64);
    CHECK_BYTES(buf, len,
                "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", 0);
    sts_free(buf);

    CHECK_OK(encode(&t2, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, b, e));
    CHECK(len == 8 + 72);
    CHECK_BYTES(buf, len,
                "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}", 7);
    sts_free(buf);

    /* I32 ranks above F16: written first, whatever the caller's order. */
    CHECK_OK(encode(two, 2, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, b, e));
    CHECK(b[1] == 0 && e[1] == 16 && b[0] == 16 && e[0] == 24);
    CHECK_BYTES(buf, len,
                "{\"test1\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                "\"test2\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[16,24]}}",
                (8 - 122 % 8) % 8);
    sts_free(buf);
}

static void test_layouts(void)
{
    static const uint64_t s2[] = {2}, s34[] = {3, 4};
    sts_tensor_desc t[3] = {
        {"b", STS_BF16, 1, s2}, {"a", STS_BF16, 2, s34}, {"z", STS_F32, 0, NULL}};
    sts_meta_entry m[2] = {{"format", "pt"}, {"DCP_VERSION", "1.0"}};
    uint64_t b[3], e[3];
    char *buf = NULL;
    size_t len = 0;

    /* Canonical: metadata keys sorted bytewise (uppercase first), F32 before BF16, a before b. */
    CHECK_OK(encode(t, 3, m, 2, STS_LAYOUT_CANONICAL, 0, &buf, &len, b, e));
    CHECK_BYTES(buf, len,
                "{\"__metadata__\":{\"DCP_VERSION\":\"1.0\",\"format\":\"pt\"},"
                "\"z\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                "\"a\":{\"dtype\":\"BF16\",\"shape\":[3,4],\"data_offsets\":[4,28]},"
                "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[28,32]}}",
                (8 - 217 % 8) % 8);
    CHECK(b[2] == 0 && e[2] == 4 && b[1] == 4 && e[1] == 28 && b[0] == 28 && e[0] == 32);
    CHECK((len - 8) % 8 == 0);
    sts_free(buf);

    /* PyTorch: caller's order, Python spacing, shape before dtype, no padding. */
    CHECK_OK(encode(t, 3, NULL, 0, STS_LAYOUT_PYTORCH, 0, &buf, &len, b, e));
    CHECK_BYTES(buf, len,
                "{\"b\": {\"shape\": [2], \"dtype\": \"BF16\", \"data_offsets\": [0, 4]}, "
                "\"a\": {\"shape\": [3, 4], \"dtype\": \"BF16\", \"data_offsets\": [4, 28]}, "
                "\"z\": {\"shape\": [], \"dtype\": \"F32\", \"data_offsets\": [28, 32]}}",
                0);
    CHECK(b[0] == 0 && e[0] == 4 && b[2] == 28 && e[2] == 32);
    sts_free(buf);

    /* PyTorch with metadata: given order, first. */
    CHECK_OK(encode(t, 1, m, 2, STS_LAYOUT_PYTORCH, 0, &buf, &len, b, e));
    CHECK_BYTES(buf, len,
                "{\"__metadata__\": {\"format\": \"pt\", \"DCP_VERSION\": \"1.0\"}, "
                "\"b\": {\"shape\": [2], \"dtype\": \"BF16\", \"data_offsets\": [0, 4]}}",
                0);
    sts_free(buf);

    /* Empty header. */
    CHECK_OK(encode(NULL, 0, NULL, 0, STS_LAYOUT_PYTORCH, 0, &buf, &len, NULL, NULL));
    CHECK_BYTES(buf, len, "{}", 0);
    sts_free(buf);
    CHECK_OK(encode(NULL, 0, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL));
    CHECK_BYTES(buf, len, "{}", 6);
    sts_free(buf);

    /* align: the data section starts on the boundary, in both layouts. */
    for (int py = 0; py < 2; py++) {
        sts_header *h = NULL;
        CHECK_OK(encode(t, 3, m, 2, py ? STS_LAYOUT_PYTORCH : STS_LAYOUT_CANONICAL, 4096, &buf,
                        &len, b, e));
        CHECK(len == 4096);
        CHECK(prefix_of(buf) == 4088);
        CHECK(buf[len - 1] == ' ');
        CHECK_OK(sts_header_parse(buf + 8, len - 8, 32, &h, NULL));
        CHECK(sts_header_count(h) == 3);
        sts_header_free(h);
        sts_free(buf);
        CHECK_OK(encode(t, 3, m, 2, py ? STS_LAYOUT_PYTORCH : STS_LAYOUT_CANONICAL, 8, &buf, &len,
                        b, e));
        CHECK(len % 8 == 0);
        sts_free(buf);
    }
    buf = NULL;
    CHECK_RC(encode(t, 3, m, 2, STS_LAYOUT_CANONICAL, 12, &buf, &len, b, e), STS_E_ARG);
    CHECK(buf == NULL);
}

static void test_escapes(void)
{
    /* quote, backslash, LF, U+0001, DEL, e-acute, U+1F600 */
    static const char name[] = "a\"\\\n\x01\x7f\xc3\xa9\xf0\x9f\x98\x80";
    static const uint64_t s2[] = {2};
    sts_tensor_desc t = {name, STS_F32, 1, s2};
    sts_header *h = NULL;
    char *buf = NULL;
    size_t len = 0;

    /* serde_json: short escapes, \u00XX lowercase for other controls, the rest raw. */
    CHECK_OK(encode(&t, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL));
    CHECK(len > 8 &&
          strstr(buf + 8, "\"a\\\"\\\\\\n\\u0001\x7f\xc3\xa9\xf0\x9f\x98\x80\":") != NULL);
    CHECK_OK(sts_header_parse(buf + 8, len - 8, 8, &h, NULL));
    CHECK(sts_header_count(h) == 1 && strcmp(sts_header_tensor(h, 0)->name, name) == 0);
    sts_header_free(h);
    sts_free(buf);

    /* Python ensure_ascii: DEL and non-ASCII escaped, astral planes as surrogate pairs. */
    CHECK_OK(encode(&t, 1, NULL, 0, STS_LAYOUT_PYTORCH, 0, &buf, &len, NULL, NULL));
    CHECK_BYTES(buf, len,
                "{\"a\\\"\\\\\\n\\u0001\\u007f\\u00e9\\ud83d\\ude00\": {\"shape\": [2], \"dtype\": "
                "\"F32\", \"data_offsets\": [0, 8]}}",
                0);
    CHECK_OK(sts_header_parse(buf + 8, len - 8, 8, &h, NULL));
    CHECK(h && strcmp(sts_header_tensor(h, 0)->name, name) == 0);
    sts_header_free(h);
    sts_free(buf);

    /* Decoding: every escape form, uppercase hex, and U+0000 inside a name. */
    {
        static const char js[] =
            "{\"\\u0041\\/\\b\\f\\r\\t\\u00E9\\uD83D\\uDE00\\u0000x\":{"
            "\"\\u0064type\":\"F\\u00332\",\"shape\":[],\"data_offsets\":[0,4]}}";
        static const char want[] = "A/\b\f\r\t\xc3\xa9\xf0\x9f\x98\x80\0x";
        CHECK_OK(sts_header_parse(js, sizeof js - 1, 4, &h, NULL));
        CHECK(h && sts_header_tensor(h, 0)->name_len == sizeof want - 1);
        CHECK(h && memcmp(sts_header_tensor(h, 0)->name, want, sizeof want) == 0);
        CHECK(h && sts_header_find(h, want, sizeof want - 1) == 0);
        CHECK(h && sts_header_find(h, want, 12) == -1);
        CHECK(h && sts_header_tensor(h, 0)->dtype == STS_F32);
        sts_header_free(h);
    }
}

/* A deterministic generator for the randomized round trip. */
static uint64_t rng_state = 0x853c49e6748fea9bULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_round_trip(void)
{
    enum { N = 500 };
    static char names[N][24];
    static uint64_t shapes[N][4];
    static sts_tensor_desc t[N];
    static uint64_t b[N], e[N];
    sts_meta_entry m[2] = {{"k\xc3\xa9y", "v\"al\n"}, {"DCP_VERSION", "1.0"}};
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "layer.%d.w%c", (int)(rng() % 100000), 'a' + i % 26);
        t[i].name = names[i];
        t[i].dtype = (sts_dtype)(rng() % STS_DTYPE_COUNT);
        t[i].ndim = (uint32_t)(rng() % 5);
        for (uint32_t d = 0; d < t[i].ndim; d++)
            shapes[i][d] = (rng() % 7) * 2; /* even sizes keep sub-byte dtypes whole */
        t[i].shape = shapes[i];
        /* Sub-byte dtypes need numel * bits % 8 == 0: a multiple of 4 elements does it. */
        if (sts_dtype_bits(t[i].dtype) < 8) {
            t[i].ndim = t[i].ndim ? t[i].ndim : 1;
            shapes[i][0] = (rng() % 4) * 4;
        }
    }
    for (int py = 0; py < 2; py++) {
        sts_layout lay = py ? STS_LAYOUT_PYTORCH : STS_LAYOUT_CANONICAL;
        sts_header *h = NULL;
        char *buf = NULL, *buf2 = NULL;
        size_t len = 0, len2 = 0, total = 0;
        uint64_t prev_end = 0;
        int unique = 1;
        /* Random names may collide: then encode must say so; retry with unique suffixes. */
        int rc = encode(t, N, m, 2, lay, 0, &buf, &len, b, e);
        if (rc == STS_E_DUPLICATE_NAME) {
            unique = 0;
            for (int i = 0; i < N; i++)
                snprintf(names[i], sizeof names[i], "layer.%d.u%d", (int)(rng() % 100), i);
            rc = encode(t, N, m, 2, lay, 0, &buf, &len, b, e);
        }
        (void)unique;
        CHECK_OK(rc);
        if (rc != STS_OK)
            continue;
        for (int i = 0; i < N; i++)
            total += (size_t)(e[i] - b[i]);
        CHECK_OK(sts_header_parse(buf + 8, len - 8, total, &h, NULL));
        CHECK(sts_header_count(h) == N);
        CHECK(sts_header_meta_count(h) == 2);
        CHECK(sts_header_meta_get(h, "k\xc3\xa9y") &&
              !strcmp(sts_header_meta_get(h, "k\xc3\xa9y"), "v\"al\n"));
        for (int i = 0; h && i < N; i++) {
            long k = sts_header_find(h, t[i].name, strlen(t[i].name));
            const sts_tensor_info *ti = sts_header_tensor(h, (size_t)(k < 0 ? 0 : k));
            CHECK(k >= 0);
            CHECK(ti->dtype == t[i].dtype && ti->ndim == t[i].ndim);
            CHECK(ti->begin == b[i] && ti->end == e[i]);
            CHECK(ti->ndim == 0 || memcmp(ti->shape, t[i].shape, ti->ndim * 8) == 0);
            CHECK(ti->saved_offsets == NULL);
        }
        /* Accessor order is data-offset order. */
        for (size_t i = 0; h && i < sts_header_count(h); i++) {
            CHECK(sts_header_tensor(h, i)->begin == prev_end);
            prev_end = sts_header_tensor(h, i)->end;
        }
        CHECK(sts_header_data_size(h) == total);
        CHECK(sts_header_tensor(h, N) == NULL);
        /* Canonical output is a fixed point: re-encoding the parse gives the same bytes. */
        if (!py && h) {
            sts_tensor_desc *t2 = calloc(N, sizeof *t2);
            sts_meta_entry m2[2];
            for (size_t i = 0; i < N; i++) {
                const sts_tensor_info *ti = sts_header_tensor(h, i);
                t2[i] = (sts_tensor_desc){ti->name, ti->dtype, ti->ndim, ti->shape};
            }
            for (size_t i = 0; i < 2; i++)
                CHECK_OK(sts_header_meta_at(h, i, &m2[i].key, &m2[i].value));
            CHECK_OK(encode(t2, N, m2, 2, lay, 0, &buf2, &len2, NULL, NULL));
            CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
            sts_free(buf2);
            free(t2);
        }
        sts_header_free(h);
        sts_free(buf);
    }
}

static void test_encode_errors(void)
{
    static const uint64_t s2[] = {2}, s3[] = {3}, huge[] = {1ULL << 62, 8}, half[] = {1ULL << 63};
    sts_tensor_desc dup[2] = {{"x", STS_F32, 1, s2}, {"x", STS_I8, 1, s2}};
    sts_tensor_desc res = {"__metadata__", STS_F32, 1, s2};
    sts_tensor_desc bad_dt = {"x", STS_DTYPE_COUNT, 1, s2};
    sts_tensor_desc ovf = {"x", STS_U8, 2, huge};
    sts_tensor_desc bits_ovf = {"x", STS_F64, 1, huge};
    sts_tensor_desc mis = {"x", STS_F4, 1, s3};
    sts_tensor_desc bad_utf8 = {"\xff", STS_F32, 1, s2};
    sts_tensor_desc sum_ovf[2] = {{"a", STS_U8, 1, half}, {"b", STS_U8, 1, half}};
    sts_meta_entry mdup[2] = {{"k", "1"}, {"k", "2"}};
    sts_meta_entry mnull = {"k", NULL};
    char *buf = NULL;
    size_t len;
    CHECK_RC(encode(dup, 2, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL),
             STS_E_DUPLICATE_NAME);
    CHECK_RC(encode(&res, 1, NULL, 0, STS_LAYOUT_PYTORCH, 0, &buf, &len, NULL, NULL),
             STS_E_RESERVED_NAME);
    CHECK_RC(encode(&bad_dt, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL),
             STS_E_ARG);
    CHECK_RC(encode(&ovf, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL),
             STS_E_VALIDATION_OVERFLOW);
    CHECK_RC(encode(&bits_ovf, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL),
             STS_E_VALIDATION_OVERFLOW);
    CHECK_RC(encode(&mis, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL),
             STS_E_MISALIGNED_SLICE);
    CHECK_RC(encode(&bad_utf8, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL),
             STS_E_ARG);
    CHECK_RC(encode(sum_ovf, 2, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL),
             STS_E_VALIDATION_OVERFLOW);
    CHECK_RC(encode(dup, 1, mdup, 2, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL),
             STS_E_DUPLICATE_NAME);
    CHECK_RC(encode(dup, 1, &mnull, 1, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL), STS_E_ARG);
    CHECK_RC(encode(dup, 1, NULL, 0, (sts_layout)7, 0, &buf, &len, NULL, NULL), STS_E_ARG);
    CHECK(buf == NULL);
    /* A header over the limit: about 1.2 MB of metadata x 90 entries. */
    {
        enum { NM = 90 };
        sts_meta_entry *mm = calloc(NM, sizeof *mm);
        char *val = malloc(1200001);
        char(*keys)[8] = calloc(NM, 8);
        memset(val, 'v', 1200000);
        val[1200000] = '\0';
        for (int i = 0; i < NM; i++) {
            snprintf(keys[i], 8, "k%d", i);
            mm[i].key = keys[i];
            mm[i].value = val;
        }
        CHECK_RC(encode(NULL, 0, mm, NM, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL),
                 STS_E_HEADER_TOO_LARGE);
        CHECK_OK(encode(NULL, 0, mm, 80, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL));
        sts_free(buf);
        free(mm);
        free(val);
        free(keys);
    }
}

/* ---- parse rules ----------------------------------------------------------- */

#define T4(name, b, e)                                                                             \
    "\"" name "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" #b "," #e "]}"

static void test_rules(void)
{
    const uint64_t any = UINT64_MAX;
    /* InvalidHeader: not UTF-8 (bad byte, overlong, surrogate, truncated sequence). */
    EXPECT_FAIL("{\"\xff\":1}", any, STS_E_INVALID_HEADER);
    EXPECT_FAIL("{\"\xc0\xaf\":1}", any, STS_E_INVALID_HEADER);
    EXPECT_FAIL("{\"\xed\xa0\x80\":1}", any, STS_E_INVALID_HEADER);
    EXPECT_FAIL("{}\xe2\x82", any, STS_E_INVALID_HEADER);
    EXPECT_FAIL("{\"\xf4\x90\x80\x80\":1}", any, STS_E_INVALID_HEADER);

    /* InvalidHeaderDeserialization: syntax, types, keys, numbers, control characters. */
    static const char *const deser[] = {
        "",
        "   ",
        "[]",
        "null",
        "{",
        "{} {}",
        "{}x",
        "{,}",
        "{" T4("a", 0, 4) ",}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],}}",
        "{\"a\" {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}",
        "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":[\"F32\",[1],[0,4]]}",
        "{\"a\":null}",
        "{\"a\":\"F32\"}",
        "{\"__metadata__\":[]}",
        "{\"__metadata__\":\"x\"}",
        "{\"__metadata__\":{\"k\":1}}",
        "{\"__metadata__\":{\"k\":null}}",
        "{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}",
        "{\"a\\x\":1}",
        "{\"a\\ud800\":1}",
        "{\"a\\udc00\":1}",
        "{\"a\\ud800\\u0041\":1}",
        "{\"a\\u12\":1}",
        "{\"a\tb\":1}",
        "{\"a\x01\":1}",
        "{\x0b}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":[}}",
        "{\"unterminated",
    };
    for (size_t i = 0; i < sizeof deser / sizeof deser[0]; i++)
        EXPECT_FAIL(deser[i], any, STS_E_INVALID_HEADER_DESERIALIZATION);
    {
        /* NUL bytes need an explicit length. */
        static const char nul_ws[] = "{ \0}", nul_end[] = "{}\0", nul_start[] = "\0{}";
        sts_header *h = NULL;
        CHECK_RC(sts_header_parse(nul_ws, sizeof nul_ws - 1, any, &h, NULL),
                 STS_E_INVALID_HEADER_DESERIALIZATION);
        CHECK_RC(sts_header_parse(nul_end, sizeof nul_end - 1, any, &h, NULL),
                 STS_E_INVALID_HEADER_DESERIALIZATION);
        CHECK_RC(sts_header_parse(nul_start, sizeof nul_start - 1, any, &h, NULL),
                 STS_E_INVALID_HEADER_DESERIALIZATION);
    }

    /* Our stricter rules. */
    EXPECT_FAIL("{" T4("a", 0, 4) "," T4("a", 4, 8) "}", 8, STS_E_DUPLICATE_NAME);
    EXPECT_FAIL(
        "{" T4("a", 0, 4) ",\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
        8, STS_E_DUPLICATE_NAME);
    EXPECT_FAIL("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, STS_E_DUPLICATE_NAME);
    EXPECT_FAIL("{\"__metadata__\":{},\"__metadata__\":{}}", 0, STS_E_DUPLICATE_NAME);
    EXPECT_FAIL("{\"__metadata__\":null,\"__metadata__\":null}", 0, STS_E_DUPLICATE_NAME);
    EXPECT_FAIL("{\"__metadata__\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                STS_E_RESERVED_NAME);
    EXPECT_FAIL("{" T4("a", 0, 4) ",\"__metadata__\":{\"shape\":[],\"dtype\":\"U8\","
                                  "\"data_offsets\":[4,5]}}",
                5, STS_E_RESERVED_NAME);
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4,
                STS_E_UNKNOWN_KEY);
    EXPECT_FAIL(
        "{\"a\":{\"Dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        STS_E_UNKNOWN_KEY);
    /* A syntax error later in the text takes precedence over a strict rule. */
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}", 4,
                STS_E_INVALID_HEADER_DESERIALIZATION);
    /* A string map under __metadata__ with tensor-like key names is still metadata. */
    EXPECT_OK("{\"__metadata__\":{\"dtype\":\"F32\",\"shape\":\"[1]\"}}", 0, 0);

    /* Offsets, sizes, overflow. */
    EXPECT_FAIL("{" T4("a", 0, 4) "," T4("b", 8, 12) "}", any, STS_E_INVALID_OFFSET);
    EXPECT_FAIL("{" T4("a", 0, 4) "," T4("b", 2, 6) "}", any, STS_E_INVALID_OFFSET);
    EXPECT_FAIL("{" T4("a", 4, 8) "}", any, STS_E_INVALID_OFFSET);
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                any, STS_E_INVALID_OFFSET);
    EXPECT_FAIL(
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", any,
        STS_E_VALIDATION_OVERFLOW);
    EXPECT_FAIL(
        "{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", any,
        STS_E_VALIDATION_OVERFLOW);
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", any,
                STS_E_MISALIGNED_SLICE);
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F6_E2M3\",\"shape\":[2,3],\"data_offsets\":[0,4]}}", any,
                STS_E_MISALIGNED_SLICE);
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", any,
                STS_E_TENSOR_INVALID_INFO);
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", any,
                STS_E_TENSOR_INVALID_INFO);
    EXPECT_FAIL("{" T4("a", 0, 4) "}", 5, STS_E_METADATA_INCOMPLETE_BUFFER);
    EXPECT_FAIL("{" T4("a", 0, 4) "}", 3, STS_E_METADATA_INCOMPLETE_BUFFER);
    EXPECT_FAIL("{}", 1, STS_E_METADATA_INCOMPLETE_BUFFER);

    /* The message names the tensor. */
    {
        sts_header *h = NULL;
        sts_diag d;
        const char *js = "{" T4("first", 0, 4) "," T4("second", 8, 12) "}";
        CHECK_RC(sts_header_parse(js, strlen(js), any, &h, &d), STS_E_INVALID_OFFSET);
        CHECK(strstr(d.message, "'second'") != NULL && strstr(d.message, "InvalidOffset"));
        js = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4}}";
        CHECK_RC(sts_header_parse(js, strlen(js), any, &h, &d),
                 STS_E_INVALID_HEADER_DESERIALIZATION);
        CHECK(strstr(d.message, "at byte 51") != NULL);
    }
}

static void test_legal(void)
{
    const uint64_t any = UINT64_MAX;
    sts_header *h = NULL;
    EXPECT_OK("{}", 0, 0);
    EXPECT_OK(" \t\r\n{}\n\r\t ", 0, 0);
    EXPECT_OK("{\"__metadata__\":null}", 0, 0);
    EXPECT_OK("{\"__metadata__\":{}}", 0, 0);
    EXPECT_OK("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8, 1);
    EXPECT_OK("{\"z\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[0,0]}}", 0, 1);
    /* Zero-size tensors may share an offset, before, between and after others. */
    EXPECT_OK("{\"z1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}," T4(
                  "a", 0, 4) ",\"z2\":{\"dtype\":\"I8\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
                             "\"z0\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[0,0]}," T4(
                                 "b", 4, 8) "}",
              8, 5);
    /* Key order inside an entry is free; shape/dtype/offsets any order; spacing free. */
    EXPECT_OK("{ \"a\" : { \"data_offsets\" : [ 0 , 4 ] , \"shape\" : [ 1 ] , \"dtype\" : \"F32\" "
              "} }",
              4, 1);
    EXPECT_OK("{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, 1);
    EXPECT_FAIL("{\"a\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[18446744073709551607,"
                "18446744073709551615]}}",
                any, STS_E_INVALID_OFFSET);
    /* Exact 64-bit integers: 2^64 - 1 survives. */
    {
        sts_diag d;
        const char *js = "{\"a\":{\"dtype\":\"U8\",\"shape\":[2305843009213693951],"
                         "\"data_offsets\":[0,2305843009213693951]},"
                         "\"z\":{\"dtype\":\"U8\",\"shape\":[0,18446744073709551615],"
                         "\"data_offsets\":[2305843009213693951,2305843009213693951]}}";
        CHECK_OK(sts_header_parse(js, strlen(js), any, &h, &d));
        CHECK(h && sts_header_tensor(h, 0)->end == (1ULL << 61) - 1);
        CHECK(h && sts_header_tensor(h, 1)->shape[1] == UINT64_MAX);
        CHECK(sts_header_data_size(h) == (1ULL << 61) - 1);
        sts_header_free(h);
    }
    /* Metadata in file order, lookups by key. */
    {
        const char *js = "{\"__metadata__\":{\"z\":\"1\",\"a\":\"\",\"m\":\"x\\u0000y\"}}";
        const char *k, *v;
        CHECK_OK(parse_text(js, 0, &h));
        CHECK(sts_header_meta_count(h) == 3);
        CHECK_OK(sts_header_meta_at(h, 0, &k, &v));
        CHECK(!strcmp(k, "z") && !strcmp(v, "1"));
        CHECK_OK(sts_header_meta_at(h, 1, &k, &v));
        CHECK(!strcmp(k, "a") && !strcmp(v, ""));
        CHECK_RC(sts_header_meta_at(h, 3, &k, &v), STS_E_ARG);
        CHECK(sts_header_meta_get(h, "m") && !strcmp(sts_header_meta_get(h, "m"), "x"));
        CHECK(sts_header_meta_get(h, "q") == NULL);
        CHECK(sts_header_find(h, "z", 1) == -1);
        sts_header_free(h);
    }
}

/* ---- files --------------------------------------------------------------- */

static void write_file(const char *path, const void *a, size_t an, const void *b, size_t bn)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(a, 1, an, f) == an);
    if (bn)
        CHECK(fwrite(b, 1, bn, f) == bn);
    CHECK(fclose(f) == 0);
}

static void test_files(void)
{
    static const uint64_t s3[] = {3};
    static const unsigned char data[12] = {0};
    sts_tensor_desc t = {"w", STS_F32, 1, s3};
    sts_header *h = NULL;
    sts_diag d;
    uint64_t start = 0;
    char *buf = NULL;
    size_t len = 0;
    unsigned char pre[8] = {0};

    CHECK_OK(encode(&t, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL));
    write_file("hdr_ok.safetensors", buf, len, data, sizeof data);
    CHECK_OK(sts_header_read_file("hdr_ok.safetensors", &h, &start, &d));
    CHECK(start == len && sts_header_count(h) == 1 && sts_header_data_size(h) == 12);
    sts_header_free(h);

    /* One data byte too many or too few. */
    write_file("hdr_long.safetensors", buf, len, data, sizeof data);
    {
        FILE *f = fopen("hdr_long.safetensors", "ab");
        CHECK(f && fputc(0, f) == 0 && fclose(f) == 0);
    }
    CHECK_RC(sts_header_read_file("hdr_long.safetensors", &h, NULL, &d),
             STS_E_METADATA_INCOMPLETE_BUFFER);
    CHECK(strncmp(d.message, "hdr_long.safetensors: ", 22) == 0);
    CHECK(h == NULL);
    write_file("hdr_short.safetensors", buf, len, data, sizeof data - 1);
    CHECK_RC(sts_header_read_file("hdr_short.safetensors", &h, NULL, &d),
             STS_E_METADATA_INCOMPLETE_BUFFER);

    /* Prefix rules. */
    write_file("hdr_tiny.safetensors", buf, 7, NULL, 0);
    CHECK_RC(sts_header_read_file("hdr_tiny.safetensors", &h, NULL, &d), STS_E_HEADER_TOO_SMALL);
    CHECK(strstr(d.message, "hdr_tiny.safetensors: HeaderTooSmall") == d.message);
    write_file("hdr_trunc.safetensors", buf, len - 1, NULL, 0);
    CHECK_RC(sts_header_read_file("hdr_trunc.safetensors", &h, NULL, &d),
             STS_E_INVALID_HEADER_LENGTH);
    write_file("hdr_empty.safetensors", buf, 0, NULL, 0);
    CHECK_RC(sts_header_read_file("hdr_empty.safetensors", &h, NULL, &d), STS_E_HEADER_TOO_SMALL);
    CHECK_RC(sts_header_read_file("hdr_missing.safetensors", &h, NULL, &d), STS_E_NOENT);
    CHECK(strncmp(d.message, "hdr_missing.safetensors: ", 25) == 0);
    CHECK_RC(sts_header_read_file(".", &h, NULL, &d), STS_E_IO);
    sts_free(buf);

    CHECK_RC(sts_header_check_prefix(NULL, 7, &start), STS_E_HEADER_TOO_SMALL);
    CHECK_RC(sts_header_check_prefix(pre, 7, &start), STS_E_HEADER_TOO_SMALL);
    CHECK_OK(sts_header_check_prefix(pre, 8, &start));
    CHECK(start == 0);
    pre[0] = 0x00, pre[1] = 0xE1, pre[2] = 0xF5, pre[3] = 0x05; /* 100,000,000 */
    CHECK_RC(sts_header_check_prefix(pre, 100000007, &start), STS_E_INVALID_HEADER_LENGTH);
    CHECK_OK(sts_header_check_prefix(pre, 100000008, &start));
    CHECK(start == 100000000);
    pre[0] = 0x01; /* 100,000,001 */
    CHECK_RC(sts_header_check_prefix(pre, UINT64_MAX, &start), STS_E_HEADER_TOO_LARGE);
    memset(pre, 0xFF, 8);
    CHECK_RC(sts_header_check_prefix(pre, UINT64_MAX, &start), STS_E_HEADER_TOO_LARGE);
}

/* ---- DCP_SHARDING_INFO ----------------------------------------------------- */

static int with_sharding(const char *info_json_escaped, sts_header **h, sts_diag *d)
{
    char js[2048];
    snprintf(js, sizeof js,
             "{\"__metadata__\":{\"DCP_SHARDING_INFO\":\"%s\",\"DCP_VERSION\":\"1.0\","
             "\"format\":\"pt\"},"
             "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
             "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[24,28]}}",
             info_json_escaped);
    *h = NULL;
    CHECK_OK(sts_header_parse(js, strlen(js), 28, h, NULL));
    return sts_header_decode_sharding(*h, d);
}

static void test_sharding(void)
{
    sts_header *h = NULL;
    sts_diag d;
    const sts_tensor_info *w;
    static const struct {
        const char *info;
        const char *needle; /* in the message */
    } bad[] = {
        {"{\\\"w\\\": {\\\"saved_offsets\\\": [4, 0]}}", "'s'"},
        {"{\\\"w\\\": {\\\"saved_offsets\\\": [4]}, \\\"s\\\": {\\\"saved_offsets\\\": []}}",
         "'w'"},
        {"{\\\"w\\\": {\\\"saved_offsets\\\": [4, 0, 0]}, \\\"s\\\": {\\\"saved_offsets\\\": []}}",
         "'w'"},
        {"{\\\"w\\\": {\\\"saved_offsets\\\": [4, -1]}, \\\"s\\\": {\\\"saved_offsets\\\": []}}",
         "'w'"},
        {"{\\\"w\\\": {\\\"saved_offsets\\\": [4, 1.5]}, \\\"s\\\": {\\\"saved_offsets\\\": []}}",
         "'w'"},
        {"{\\\"w\\\": {\\\"offsets\\\": [4, 0]}, \\\"s\\\": {\\\"saved_offsets\\\": []}}", "'w'"},
        {"{\\\"w\\\": {\\\"saved_offsets\\\": [0, 0]}, \\\"s\\\": {\\\"saved_offsets\\\": []}, "
         "\\\"x\\\": {\\\"saved_offsets\\\": []}}",
         "'x'"},
        {"{\\\"w\\\": {\\\"saved_offsets\\\": [0, 0]}, \\\"w\\\": {\\\"saved_offsets\\\": [0, 0]}}",
         "'w'"},
        {"{\\\"w\\\": {\\\"saved_offsets\\\": [0, 18446744073709551615]}, \\\"s\\\": "
         "{\\\"saved_offsets\\\": []}}",
         "'w'"},
        {"{\\\"w\\\": {\\\"saved_offsets\\\": [0, 0]}, \\\"s\\\": {\\\"saved_offsets\\\": []}} x",
         "DCP_SHARDING_INFO"},
        {"[]", "DCP_SHARDING_INFO"},
        {"", "DCP_SHARDING_INFO"},
    };

    /* Python spacing, as PyTorch writes it. */
    CHECK_OK(with_sharding("{\\\"w\\\": {\\\"saved_offsets\\\": [4, 0]}, "
                           "\\\"s\\\": {\\\"saved_offsets\\\": []}}",
                           &h, &d));
    w = sts_header_tensor(h, (size_t)sts_header_find(h, "w", 1));
    CHECK(w->saved_offsets && w->saved_offsets[0] == 4 && w->saved_offsets[1] == 0);
    CHECK(sts_header_tensor(h, (size_t)sts_header_find(h, "s", 1))->saved_offsets != NULL);
    sts_header_free(h);

    /* Compact and odd spacing, and an extra key inside an entry (ignored). */
    CHECK_OK(with_sharding("\\n{\\\"s\\\":{\\\"saved_offsets\\\":[]},\\\"w\\\":{\\\"v\\\":[1],"
                           "\\\"saved_offsets\\\":[ 0 ,\\t7 ]}} ",
                           &h, &d));
    w = sts_header_tensor(h, (size_t)sts_header_find(h, "w", 1));
    CHECK(w->saved_offsets && w->saved_offsets[0] == 0 && w->saved_offsets[1] == 7);
    sts_header_free(h);

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = with_sharding(bad[i].info, &h, &d);
        if (rc != STS_E_SHARDING_INFO || !strstr(d.message, bad[i].needle) ||
            !strstr(d.message, "InvalidShardingInfo")) {
            fprintf(stderr, "sharding case %zu: got %s: %s\n", i, sts_errname(rc), d.message);
            test_failures++;
        }
        /* All or nothing: no tensor got offsets. */
        for (size_t k = 0; h && k < sts_header_count(h); k++)
            CHECK(sts_header_tensor(h, k)->saved_offsets == NULL);
        sts_header_free(h);
    }

    /* No metadata at all. */
    CHECK_OK(parse_text("{}", 0, &h));
    CHECK_RC(sts_header_decode_sharding(h, &d), STS_E_SHARDING_INFO);
    sts_header_free(h);
    CHECK_RC(sts_header_decode_sharding(NULL, &d), STS_E_ARG);
}

int main(void)
{
    test_golden();
    test_layouts();
    test_escapes();
    test_round_trip();
    test_encode_errors();
    test_rules();
    test_legal();
    test_files();
    test_sharding();
    if (test_failures)
        fprintf(stderr, "unit_header: %d failure(s)\n", test_failures);
    return TEST_EXIT();
}
