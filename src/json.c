/*
 * json.c - strict JSON pull scanner with exact 64-bit integers (json.h).
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"

void sts__json_init(sts__json *j, const void *buf, size_t len)
{
    memset(j, 0, sizeof *j);
    j->buf = buf;
    j->len = len;
}

void sts__json_fini(sts__json *j)
{
    free(j->scratch);
    j->scratch = NULL;
    j->scratch_cap = 0;
}

int sts__json_fail(sts__json *j, const char *msg)
{
    if (!j->err) {
        j->err = msg;
        j->err_pos = j->pos;
    }
    return -1;
}

static void skip_ws(sts__json *j)
{
    const unsigned char *b = j->buf;
    size_t p = j->pos;
    while (p < j->len && (b[p] == ' ' || b[p] == '\n' || b[p] == '\r' || b[p] == '\t'))
        p++;
    j->pos = p;
}

int sts__json_peek(sts__json *j)
{
    skip_ws(j);
    return j->pos < j->len ? j->buf[j->pos] : -1;
}

int sts__json_eat(sts__json *j, char c, const char *what)
{
    if (sts__json_peek(j) != (unsigned char)c)
        return sts__json_fail(j, what);
    j->pos++;
    return 0;
}

int sts__json_end(sts__json *j)
{
    if (sts__json_peek(j) != -1)
        return sts__json_fail(j, "trailing characters after the top-level value");
    return 0;
}

static int eat_literal(sts__json *j, const char *lit)
{
    size_t n = strlen(lit);
    if (j->len - j->pos < n || memcmp(j->buf + j->pos, lit, n) != 0)
        return sts__json_fail(j, "invalid literal");
    j->pos += n;
    return 0;
}

int sts__json_null(sts__json *j)
{
    if (sts__json_peek(j) != 'n')
        return 0;
    return eat_literal(j, "null") == 0 ? 1 : -1;
}

static int hex4(const unsigned char *p, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        x = x << 4 | d;
    }
    *v = x;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the \u escape at j->pos (the backslash) into o; handles surrogate pairs. */
static int unicode_escape(sts__json *j, char *o, size_t *olen)
{
    const unsigned char *b = j->buf;
    unsigned cp, lo;
    if (j->len - j->pos < 6 || hex4(b + j->pos + 2, &cp) != 0)
        return sts__json_fail(j, "invalid \\u escape");
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return sts__json_fail(j, "lone trailing surrogate in \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (j->len - j->pos < 12 || b[j->pos + 6] != '\\' || b[j->pos + 7] != 'u' ||
            hex4(b + j->pos + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
            return sts__json_fail(j, "lone leading surrogate in \\u escape");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        j->pos += 6;
    }
    j->pos += 6;
    *olen = put_utf8(o, cp);
    return 0;
}

/* Makes room for at least need bytes of decoded text in the scratch buffer. */
static int scratch_reserve(sts__json *j, size_t need)
{
    size_t cap = j->scratch_cap ? j->scratch_cap : 256;
    char *p;
    if (need <= j->scratch_cap)
        return 0;
    while (cap < need)
        cap *= 2;
    p = realloc(j->scratch, cap);
    if (!p)
        return -2;
    j->scratch = p;
    j->scratch_cap = cap;
    return 0;
}

/* Decodes the escaped string starting at j->pos (just after the quote) into scratch. */
static int decode_escaped(sts__json *j, const char **s, size_t *n)
{
    const unsigned char *b = j->buf;
    size_t o = 0;
    for (;;) {
        unsigned char c;
        size_t k = 0;
        /* One step writes at most 4 bytes (a surrogate pair's UTF-8). */
        if (scratch_reserve(j, o + 4) != 0)
            return -2;
        if (j->pos >= j->len)
            return sts__json_fail(j, "unterminated string");
        c = b[j->pos];
        if (c == '"') {
            j->pos++;
            break;
        }
        if (c < 0x20)
            return sts__json_fail(j, "control character in string");
        if (c != '\\') {
            j->scratch[o++] = (char)c;
            j->pos++;
            continue;
        }
        if (j->pos + 1 >= j->len)
            return sts__json_fail(j, "unterminated string");
        switch (b[j->pos + 1]) {
        case '"':
            c = '"';
            break;
        case '\\':
            c = '\\';
            break;
        case '/':
            c = '/';
            break;
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'n':
            c = '\n';
            break;
        case 'r':
            c = '\r';
            break;
        case 't':
            c = '\t';
            break;
        case 'u':
            if (unicode_escape(j, j->scratch + o, &k) != 0)
                return -1;
            o += k;
            continue;
        default:
            return sts__json_fail(j, "invalid escape");
        }
        j->scratch[o++] = (char)c;
        j->pos += 2;
    }
    *s = j->scratch;
    *n = o;
    return 0;
}

int sts__json_string(sts__json *j, const char **s, size_t *n)
{
    const unsigned char *b = j->buf;
    size_t p, start;
    if (sts__json_eat(j, '"', "expected a string") != 0)
        return -1;
    start = j->pos;
    /* Fast path: most strings have no escapes and are returned in place. */
    for (p = start; p < j->len; p++) {
        unsigned char c = b[p];
        if (c == '"') {
            *s = (const char *)b + start;
            *n = p - start;
            j->pos = p + 1;
            return 0;
        }
        if (c == '\\' || c < 0x20)
            break;
    }
    return decode_escaped(j, s, n);
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

int sts__json_u64(sts__json *j, uint64_t *v)
{
    const unsigned char *b = j->buf;
    size_t p;
    uint64_t x = 0;
    int neg = 0, frac = 0, overflow = 0;
    int c = sts__json_peek(j);
    if (c != '-' && !is_digit(c))
        return sts__json_fail(j, "expected a non-negative integer");
    p = j->pos;
    if (b[p] == '-') {
        neg = 1;
        p++;
    }
    if (p >= j->len || !is_digit(b[p]))
        return sts__json_fail(j, "invalid number");
    if (b[p] == '0') {
        p++;
    } else {
        for (; p < j->len && is_digit(b[p]); p++) {
            unsigned d = b[p] - '0';
            if (x > (UINT64_MAX - d) / 10)
                overflow = 1;
            x = x * 10 + d;
        }
    }
    /* Validate the rest of the number token so "1.5" fails as a type error, not syntax. */
    if (p < j->len && b[p] == '.') {
        frac = 1;
        if (++p >= j->len || !is_digit(b[p]))
            return sts__json_fail(j, "invalid number");
        while (p < j->len && is_digit(b[p]))
            p++;
    }
    if (p < j->len && (b[p] == 'e' || b[p] == 'E')) {
        frac = 1;
        if (++p < j->len && (b[p] == '+' || b[p] == '-'))
            p++;
        if (p >= j->len || !is_digit(b[p]))
            return sts__json_fail(j, "invalid number");
        while (p < j->len && is_digit(b[p]))
            p++;
    }
    if (p < j->len && is_digit(b[p]))
        return sts__json_fail(j, "invalid number (leading zero)");
    if (neg || frac)
        return sts__json_fail(j, neg ? "expected a non-negative integer, found a negative number"
                                     : "expected a non-negative integer, found a float");
    if (overflow)
        return sts__json_fail(j, "integer does not fit 64 bits");
    j->pos = p;
    *v = x;
    return 0;
}

static int skip_number(sts__json *j)
{
    const unsigned char *b = j->buf;
    size_t p = j->pos;
    if (p < j->len && b[p] == '-')
        p++;
    if (p >= j->len || !is_digit(b[p]))
        return sts__json_fail(j, "invalid number");
    if (b[p] == '0')
        p++;
    else
        while (p < j->len && is_digit(b[p]))
            p++;
    if (p < j->len && b[p] == '.') {
        if (++p >= j->len || !is_digit(b[p]))
            return sts__json_fail(j, "invalid number");
        while (p < j->len && is_digit(b[p]))
            p++;
    }
    if (p < j->len && (b[p] == 'e' || b[p] == 'E')) {
        if (++p < j->len && (b[p] == '+' || b[p] == '-'))
            p++;
        if (p >= j->len || !is_digit(b[p]))
            return sts__json_fail(j, "invalid number");
        while (p < j->len && is_digit(b[p]))
            p++;
    }
    j->pos = p;
    return 0;
}

static int skip_value(sts__json *j, unsigned depth)
{
    const char *s;
    size_t n;
    int more, rc;
    if (depth > STS_JSON_MAX_DEPTH)
        return sts__json_fail(j, "nesting too deep");
    switch (sts__json_peek(j)) {
    case '"':
        return sts__json_string(j, &s, &n);
    case 't':
        return eat_literal(j, "true");
    case 'f':
        return eat_literal(j, "false");
    case 'n':
        return eat_literal(j, "null");
    case '{':
        if (sts__json_open(j, '{', &more) != 0)
            return -1;
        while (more) {
            if ((rc = sts__json_string(j, &s, &n)) != 0)
                return rc;
            if (sts__json_eat(j, ':', "expected ':'") != 0)
                return -1;
            if ((rc = skip_value(j, depth + 1)) != 0)
                return rc;
            if (sts__json_next(j, '}', &more) != 0)
                return -1;
        }
        return 0;
    case '[':
        if (sts__json_open(j, '[', &more) != 0)
            return -1;
        while (more) {
            if ((rc = skip_value(j, depth + 1)) != 0)
                return rc;
            if (sts__json_next(j, ']', &more) != 0)
                return -1;
        }
        return 0;
    default:
        return skip_number(j);
    }
}

int sts__json_skip(sts__json *j)
{
    return skip_value(j, 1);
}

int sts__json_open(sts__json *j, char open, int *more)
{
    char close = open == '{' ? '}' : ']';
    if (sts__json_eat(j, open, open == '{' ? "expected an object" : "expected an array") != 0)
        return -1;
    if (sts__json_peek(j) == (unsigned char)close) {
        j->pos++;
        *more = 0;
    } else {
        *more = 1;
    }
    return 0;
}

int sts__json_next(sts__json *j, char close, int *more)
{
    int c = sts__json_peek(j);
    if (c == ',') {
        j->pos++;
        /* A trailing comma is not JSON. */
        if (sts__json_peek(j) == (unsigned char)close)
            return sts__json_fail(j, "trailing comma");
        *more = 1;
        return 0;
    }
    if (c == (unsigned char)close) {
        j->pos++;
        *more = 0;
        return 0;
    }
    return sts__json_fail(j, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

int sts__json_utf8_check(const void *buf, size_t len, size_t *bad)
{
    const unsigned char *b = buf;
    size_t i = 0;
    while (i < len) {
        unsigned c = b[i];
        unsigned lo = 0x80, hi = 0xBF;
        size_t need;
        /* ASCII fast path, eight bytes at a time. */
        if (c < 0x80) {
            uint64_t w;
            while (i + 8 <= len) {
                memcpy(&w, b + i, 8);
                if (w & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            while (i < len && b[i] < 0x80)
                i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            goto fail;
        }
        if (len - i <= need)
            goto fail;
        if (b[i + 1] < lo || b[i + 1] > hi)
            goto fail;
        for (size_t k = 2; k <= need; k++)
            if ((b[i + k] & 0xC0) != 0x80)
                goto fail;
        i += need + 1;
    }
    return 0;
fail:
    if (bad)
        *bad = i;
    return -1;
}
