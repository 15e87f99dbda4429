/*
 * json_write.h - the one JSON string writer of the library and the CLI.
 *
 * Two styles, chosen by flags (STS_JSON_ASCII is public, stshard.h):
 *  - serde_json (flags 0), used by canonical headers: quote, backslash and
 *    control characters escaped (\" \\ \b \f \n \r \t short, the rest
 *    \u00xx), everything else - DEL and UTF-8 included - written as is;
 *  - Python json.dumps with ensure_ascii=True (STS_JSON_ASCII), used by
 *    pytorch-layout headers, the index file and the sharding metadata: the
 *    same short escapes, and DEL and every non-ASCII character as \uXXXX,
 *    above U+FFFF as a surrogate pair.
 * Hex digits are lowercase, as both serde_json and Python write them.  Bytes
 * that are not valid UTF-8 (the library validates names first, the CLI may
 * pass any path) are copied as is in serde style and written as \ufffd, one
 * per byte, in ASCII style, so ASCII output is always valid JSON.
 * Format layer (src/layer.h): no MPI.
 */
#ifndef STS_JSON_WRITE_H
#define STS_JSON_WRITE_H

#include <stdio.h>

#include "internal.h"

/*
 * Internal flag: \b and \f as \u0008 and \u000c, the escaping the mapping
 * file (sts_mapping_write_json) has always had; kept so that file stays
 * byte-identical.
 */
#define STS__JSON_LONG_BF 0x100u

/* Receives the output in pieces. */
typedef void (*sts__json_write_fn)(void *ud, const char *s, size_t n);

/* Local.  Writes s[0..n) (may hold NUL) as a quoted JSON string through put. */
void sts__json_write_string(const char *s, size_t n, unsigned flags, sts__json_write_fn put,
                            void *ud);

/*
 * Local.  Writes the NUL-terminated s as a quoted JSON string to f; any
 * flags, internal ones included.  Returns STS_OK, or STS_E_IO when a write
 * to f failed.
 */
int sts__json_write_file(FILE *f, const char *s, unsigned flags);

#endif /* STS_JSON_WRITE_H */
