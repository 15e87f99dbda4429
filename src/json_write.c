/*
 * json_write.c - JSON strings in serde_json or Python ensure_ascii style
 * (json_write.h).
 */
#include <string.h>

#include "json_write.h"

static const char hexdig[] = "0123456789abcdef";

static void put_u(sts__json_write_fn put, void *ud, uint32_t cp)
{
    char e[6] = {
        '\\',           'u', hexdig[cp >> 12 & 15], hexdig[cp >> 8 & 15], hexdig[cp >> 4 & 15],
        hexdig[cp & 15]};
    put(ud, e, sizeof e);
}

/* The letter of c's two-character escape, or 0 when c has none. */
static char short_escape(unsigned char c, unsigned flags)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    case '\b':
        return flags & STS__JSON_LONG_BF ? 0 : 'b';
    case '\f':
        return flags & STS__JSON_LONG_BF ? 0 : 'f';
    default:
        return 0;
    }
}

/*
 * The length of the well-formed UTF-8 sequence at s (n > 0 bytes left) with
 * its code point in *cp, or 0 when s does not start one: a stray continuation
 * byte, an overlong form, a surrogate, a value above U+10FFFF or a truncated
 * sequence.
 */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t v, min;
    if (s[0] < 0xC2 || s[0] > 0xF4)
        return 0;
    len = s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    if (len > n)
        return 0;
    v = s[0] & (0x7Fu >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[k] & 0x3Fu);
    }
    min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* Escapes the non-ASCII character at s (n bytes left); returns the bytes it used. */
static size_t put_non_ascii(const unsigned char *s, size_t n, sts__json_write_fn put, void *ud)
{
    uint32_t cp = 0;
    size_t len = utf8_decode(s, n, &cp);
    if (len == 0) {
        put_u(put, ud, 0xFFFD);
        return 1;
    }
    if (cp >= 0x10000) {
        cp -= 0x10000;
        put_u(put, ud, 0xD800 | cp >> 10);
        put_u(put, ud, 0xDC00 | (cp & 0x3FF));
    } else {
        put_u(put, ud, cp);
    }
    return len;
}

void sts__json_write_string(const char *s, size_t n, unsigned flags, sts__json_write_fn put,
                            void *ud)
{
    const unsigned char *b = (const unsigned char *)s;
    int ascii = (flags & STS_JSON_ASCII) != 0;
    size_t run = 0, i = 0;
    put(ud, "\"", 1);
    while (i < n) {
        unsigned char c = b[i];
        char esc;
        /* Runs of bytes written as they are go out in one piece. */
        if (c >= 0x20 && c != '"' && c != '\\' && (c < 0x7F || !ascii)) {
            i++;
            continue;
        }
        if (i > run)
            put(ud, s + run, i - run);
        esc = short_escape(c, flags);
        if (esc) {
            char e[2] = {'\\', esc};
            put(ud, e, 2);
            i++;
        } else if (c < 0x80) {
            put_u(put, ud, c);
            i++;
        } else {
            i += put_non_ascii(b + i, n - i, put, ud);
        }
        run = i;
    }
    if (n > run)
        put(ud, s + run, n - run);
    put(ud, "\"", 1);
}

typedef struct file_sink {
    FILE *f;
    int failed;
} file_sink;

static void file_put(void *ud, const char *s, size_t n)
{
    file_sink *k = ud;
    if (!k->failed && fwrite(s, 1, n, k->f) != n)
        k->failed = 1;
}

int sts__json_write_file(FILE *f, const char *s, unsigned flags)
{
    file_sink k = {f, 0};
    sts__json_write_string(s, strlen(s), flags, file_put, &k);
    return k.failed ? STS_E_IO : STS_OK;
}

int sts_json_write_string(FILE *f, const char *s, unsigned flags)
{
    if (!f || !s || (flags & ~STS_JSON_ASCII) != 0)
        return STS_E_ARG;
    return sts__json_write_file(f, s, flags);
}
