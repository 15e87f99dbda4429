/*
 * unit_json_write.c - the JSON string writer (src/json_write.c): every escape
 * class in serde_json and Python ensure_ascii style, the mapping file's \b \f
 * variant, surrogate pairs, bytes that are not UTF-8, and the public
 * sts_json_write_string's argument and write errors.  Every case compares
 * exact bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_write.h"
#include "test_util.h"

typedef struct sink {
    char buf[1024];
    size_t len;
    size_t pieces;
} sink;

static void sink_put(void *ud, const char *s, size_t n)
{
    sink *k = ud;
    if (k->len + n <= sizeof k->buf) {
        memcpy(k->buf + k->len, s, n);
        k->len += n;
    } else {
        k->len = sizeof k->buf + 1; /* overflow: never equals an expectation */
    }
    k->pieces++;
}

/* Expects s[0..n) written with flags to be exactly want (quotes included). */
static void expect_n(const char *s, size_t n, unsigned flags, const char *want, int line)
{
    sink k = {{0}, 0, 0};
    sts__json_write_string(s, n, flags, sink_put, &k);
    if (k.len != strlen(want) || memcmp(k.buf, want, k.len) != 0) {
        fprintf(stderr, "%s:%d: flags %#x: got '%.*s', want '%s'\n", __FILE__, line, flags,
                (int)(k.len <= sizeof k.buf ? k.len : sizeof k.buf), k.buf, want);
        test_failures++;
    }
}

#define EXPECT(s, flags, want) expect_n((s), strlen(s), (flags), (want), __LINE__)
/* Both styles write the same bytes. */
#define EXPECT_BOTH(s, want)                                                                       \
    do {                                                                                           \
        EXPECT((s), 0, (want));                                                                    \
        EXPECT((s), STS_JSON_ASCII, (want));                                                       \
    } while (0)

static void test_ascii_common(void)
{
    EXPECT_BOTH("", "\"\"");
    EXPECT_BOTH("model.layers.0.weight", "\"model.layers.0.weight\"");
    EXPECT_BOTH(" ~!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}",
                "\" ~!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}\"");
    EXPECT_BOTH("a\"b", "\"a\\\"b\"");
    EXPECT_BOTH("a\\b", "\"a\\\\b\"");
    EXPECT_BOTH("\"\\", "\"\\\"\\\\\"");
    EXPECT_BOTH("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"");
    EXPECT_BOTH("\x01\x1f\x0b\x1b", "\"\\u0001\\u001f\\u000b\\u001b\"");
}

static void test_styles_differ(void)
{
    /* DEL: raw in serde style, escaped by Python. */
    EXPECT("x\x7fy", 0, "\"x\x7fy\"");
    EXPECT("x\x7fy", STS_JSON_ASCII, "\"x\\u007fy\"");
    /* 2-, 3- and 4-byte UTF-8 (U+00E9, U+20AC, U+1F600). */
    EXPECT("caf\xc3\xa9", 0, "\"caf\xc3\xa9\"");
    EXPECT("caf\xc3\xa9", STS_JSON_ASCII, "\"caf\\u00e9\"");
    EXPECT("\xe2\x82\xac", 0, "\"\xe2\x82\xac\"");
    EXPECT("\xe2\x82\xac", STS_JSON_ASCII, "\"\\u20ac\"");
    EXPECT("\xf0\x9f\x98\x80", 0, "\"\xf0\x9f\x98\x80\"");
    EXPECT("\xf0\x9f\x98\x80", STS_JSON_ASCII, "\"\\ud83d\\ude00\"");
    /* Edges: U+0080, U+07FF, U+0800, U+FFFF, U+10000, U+10FFFF. */
    EXPECT("\xc2\x80\xdf\xbf", STS_JSON_ASCII, "\"\\u0080\\u07ff\"");
    EXPECT("\xe0\xa0\x80\xef\xbf\xbf", STS_JSON_ASCII, "\"\\u0800\\uffff\"");
    EXPECT("\xf0\x90\x80\x80", STS_JSON_ASCII, "\"\\ud800\\udc00\"");
    EXPECT("\xf4\x8f\xbf\xbf", STS_JSON_ASCII, "\"\\udbff\\udfff\"");
    /* Mixed: the raw runs around escapes are kept in order. */
    EXPECT("a\xc3\xa9\"b\n\xf0\x9f\x98\x80z", STS_JSON_ASCII,
           "\"a\\u00e9\\\"b\\n\\ud83d\\ude00z\"");
    EXPECT("a\xc3\xa9\"b\n\xf0\x9f\x98\x80z", 0, "\"a\xc3\xa9\\\"b\\n\xf0\x9f\x98\x80z\"");
}

static void test_nul_and_long_bf(void)
{
    /* Names may hold U+0000: the length form writes it as \u0000. */
    expect_n("a\0b", 3, 0, "\"a\\u0000b\"", __LINE__);
    expect_n("a\0b", 3, STS_JSON_ASCII, "\"a\\u0000b\"", __LINE__);
    /* The mapping file's variant: \b and \f long, the other short escapes kept. */
    EXPECT("\b\f\n\"", STS__JSON_LONG_BF, "\"\\u0008\\u000c\\n\\\"\"");
    EXPECT("\b\xc3\xa9", STS__JSON_LONG_BF | STS_JSON_ASCII, "\"\\u0008\\u00e9\"");
}

static void test_invalid_utf8(void)
{
    /* serde style copies every byte >= 0x20 as it is, valid or not. */
    EXPECT("a\x80z", 0, "\"a\x80z\"");
    EXPECT("\xc0\xaf\xed\xa0\x80\xff", 0, "\"\xc0\xaf\xed\xa0\x80\xff\"");
    /* ASCII style: one \ufffd per byte that does not start a well-formed sequence. */
    EXPECT("a\x80z", STS_JSON_ASCII, "\"a\\ufffdz\"");                   /* stray continuation */
    EXPECT("\xc0\xaf", STS_JSON_ASCII, "\"\\ufffd\\ufffd\"");            /* overlong '/' */
    EXPECT("\xe0\x80\xaf", STS_JSON_ASCII, "\"\\ufffd\\ufffd\\ufffd\""); /* overlong, 3 bytes */
    EXPECT("\xed\xa0\x80", STS_JSON_ASCII, "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate U+D800 */
    EXPECT("\xf4\x90\x80\x80", STS_JSON_ASCII,
           "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* above U+10FFFF */
    EXPECT("\xf5\xff", STS_JSON_ASCII, "\"\\ufffd\\ufffd\"");
    EXPECT("\xe2\x82", STS_JSON_ASCII, "\"\\ufffd\\ufffd\"");     /* truncated at the end */
    EXPECT("\xe2\x82z", STS_JSON_ASCII, "\"\\ufffd\\ufffdz\"");   /* truncated before 'z' */
    EXPECT("\xc3\xa9\xc3", STS_JSON_ASCII, "\"\\u00e9\\ufffd\""); /* valid, then cut */
    /* A sequence cut by the length argument, not by a NUL. */
    expect_n("\xe2\x82\xac", 2, STS_JSON_ASCII, "\"\\ufffd\\ufffd\"", __LINE__);
}

static void test_pieces(void)
{
    /* A run without escapes goes out as one piece: quote, run, quote. */
    sink k = {{0}, 0, 0};
    sts__json_write_string("plain text", 10, 0, sink_put, &k);
    CHECK(k.pieces == 3);
    CHECK(k.len == 12 && memcmp(k.buf, "\"plain text\"", 12) == 0);
}

static void test_public(void)
{
    FILE *f = tmpfile();
    char buf[64];
    size_t n;
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK_OK(sts_json_write_string(f, "\xc3\xa9\b", 0));
    CHECK_OK(sts_json_write_string(f, "\xc3\xa9\b", STS_JSON_ASCII));
    CHECK_RC(sts_json_write_string(f, "x", 2u), STS_E_ARG);
    CHECK_RC(sts_json_write_string(f, "x", STS__JSON_LONG_BF), STS_E_ARG);
    CHECK_RC(sts_json_write_string(NULL, "x", 0), STS_E_ARG);
    CHECK_RC(sts_json_write_string(f, NULL, 0), STS_E_ARG);
    rewind(f);
    n = fread(buf, 1, sizeof buf, f);
    CHECK(n == 16 && memcmp(buf, "\"\xc3\xa9\\b\"\"\\u00e9\\b\"", 16) == 0);
    fclose(f);

    /* A write that fails (the device is full, and unbuffered so fwrite sees it). */
    f = fopen("/dev/full", "w");
    if (f) {
        setvbuf(f, NULL, _IONBF, 0);
        CHECK_RC(sts_json_write_string(f, "abc", 0), STS_E_IO);
        fclose(f);
    }
}

int main(void)
{
    test_ascii_common();
    test_styles_differ();
    test_nul_and_long_bf();
    test_invalid_utf8();
    test_pieces();
    test_public();
    if (test_failures)
        fprintf(stderr, "unit_json_write: %d failure(s)\n", test_failures);
    return TEST_EXIT();
}
