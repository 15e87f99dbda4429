/*
 * fuzz_sharding.c - libFuzzer harness for sts_header_decode_sharding.
 *
 * The input becomes the DCP_SHARDING_INFO string of a rank-file header with
 * three tensors (2-d, 1-d, scalar), written by the encoder and parsed back.
 * On success every tensor must carry ndim offsets that do not overflow with
 * its shape; on failure no tensor may carry any (all or nothing), and the
 * code must be InvalidShardingInfo.
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
            fprintf(stderr, "fuzz_sharding: invariant failed: %s (line %d)\n", #c, __LINE__);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t s23[] = {2, 3}, s4[] = {4};
    const sts_tensor_desc t[3] = {
        {"w", STS_BF16, 2, s23}, {"b", STS_F32, 1, s4}, {"step", STS_I64, 0, NULL}};
    char *info = malloc(size + 1);
    sts_meta_entry m[2] = {{"DCP_SHARDING_INFO", info}, {"format", "pt"}};
    void *buf = NULL;
    size_t len = 0;
    sts_header *h = NULL;
    sts_diag d;
    int rc;
    REQUIRE(info);
    memcpy(info, data, size);
    info[size] = '\0';
    /* Inputs that are not UTF-8 cannot be a JSON string: the encoder refuses them. */
    rc = sts_header_encode(t, 3, m, 2, STS_LAYOUT_CANONICAL, 0, &buf, &len, NULL, NULL, NULL);
    if (rc == STS_E_ARG)
        goto done;
    REQUIRE(rc == STS_OK);
    REQUIRE(sts_header_parse((const char *)buf + 8, len - 8, UINT64_MAX, &h, NULL) == STS_OK);
    REQUIRE(strcmp(sts_header_meta_get(h, "DCP_SHARDING_INFO"), info) == 0);
    rc = sts_header_decode_sharding(h, &d);
    for (size_t i = 0; i < sts_header_count(h); i++) {
        const sts_tensor_info *ti = sts_header_tensor(h, i);
        if (rc == STS_OK) {
            REQUIRE(ti->saved_offsets != NULL);
            for (uint32_t k = 0; k < ti->ndim; k++)
                REQUIRE(ti->saved_offsets[k] <= UINT64_MAX - ti->shape[k]);
        } else {
            REQUIRE(ti->saved_offsets == NULL);
        }
    }
    REQUIRE(rc == STS_OK || rc == STS_E_SHARDING_INFO || rc == STS_E_NOMEM);
    REQUIRE(rc == STS_OK || (d.code == rc && strstr(d.message, "InvalidShardingInfo")) ||
            rc == STS_E_NOMEM);
done:
    sts_header_free(h);
    sts_free(buf);
    free(info);
    return 0;
}
