/*
 * json.h - a strict pull scanner for JSON text (RFC 8259), private to the
 * library.
 *
 * Why not cJSON (docs/design.md): safetensors offsets are 64-bit integers and
 * cJSON stores numbers as doubles, keeps duplicate keys silently and does not
 * check UTF-8.  This scanner builds no tree: the caller walks the document
 * with the calls below, so a 100 MB header is parsed in one pass without an
 * intermediate allocation per value.
 *
 * Every scanning call returns 0 on success or -1 on a syntax or type error,
 * after which j->err (static text) and j->err_pos (byte offset into the input)
 * describe the first failure; the caller maps -1 onto its own error code.
 * The input must already be valid UTF-8 (sts__json_utf8_check): the scanner then
 * only has to reject control characters and bad escapes inside strings.
 * Whitespace is exactly space, tab, CR and LF, as in the reference loader.
 */
#ifndef STS_JSON_H
#define STS_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Nesting limit for skipped values, the same as serde_json's recursion limit. */
#define STS_JSON_MAX_DEPTH 128

typedef struct sts__json {
    const unsigned char *buf;
    size_t len;
    size_t pos;
    const char *err; /* first error, static text; NULL while none */
    size_t err_pos;
    /* Scratch space for strings containing escapes (owned; sts__json_fini frees it). */
    char *scratch;
    size_t scratch_cap;
} sts__json;

/* Starts scanning buf[0..len).  buf is borrowed. */
void sts__json_init(sts__json *j, const void *buf, size_t len);
/* Frees the scratch buffer. */
void sts__json_fini(sts__json *j);

/* Records msg at the current position (first error wins) and returns -1. */
int sts__json_fail(sts__json *j, const char *msg);

/* Skips whitespace and returns the next byte without consuming it, or -1 at the end. */
int sts__json_peek(sts__json *j);
/* Skips whitespace and consumes byte c, else fails with "expected <what>". */
int sts__json_eat(sts__json *j, char c, const char *what);
/* Skips whitespace and fails unless the input ends here. */
int sts__json_end(sts__json *j);
/* Consumes the literal null if it comes next; returns 1 if it did, 0 if not, -1 on error. */
int sts__json_null(sts__json *j);

/*
 * Scans a string.  *s receives its decoded bytes and *n their count (the
 * text may hold U+0000).  *s points into the input when the string has no
 * escapes, else into the scanner's scratch buffer, valid until the next
 * string call; it is not NUL-terminated.  Decodes every escape, including
 * surrogate pairs, to UTF-8; rejects lone surrogates and raw control
 * characters.  Fails with -2 (not -1) only when memory runs out.
 */
int sts__json_string(sts__json *j, const char **s, size_t *n);

/*
 * Scans a number that must be a non-negative integer fitting 64 bits:
 * negative numbers, fractions, exponents and overflow all fail, with the
 * number checked against the full JSON number grammar first.
 */
int sts__json_u64(sts__json *j, uint64_t *v);

/* Skips one value of any type (validating it), nested at most STS_JSON_MAX_DEPTH deep. */
int sts__json_skip(sts__json *j);

/*
 * Object and array walking.  sts__json_open consumes the opening bracket
 * (open '{' or '[') and sets *more to 0 when the container is empty (its
 * closing bracket consumed too).  sts__json_next, called after each member,
 * consumes ',' (*more = 1) or the closing bracket (*more = 0).
 */
int sts__json_open(sts__json *j, char open, int *more);
int sts__json_next(sts__json *j, char close, int *more);

/*
 * Checks that buf[0..len) is well-formed UTF-8 as Rust's str::from_utf8
 * defines it (no overlong forms, no surrogates, nothing above U+10FFFF).
 * Returns 0, or -1 with the offset of the first bad byte in *bad (may be NULL).
 */
int sts__json_utf8_check(const void *buf, size_t len, size_t *bad);

#endif /* STS_JSON_H */
