/*
 * dtype.c - the safetensors dtype table.
 *
 * The enum order is the reference writer's dtype rank (sts_dtype in
 * stshard.h), which the canonical layout sorts by, so the table is indexed by
 * the enum value directly.
 */
#include <string.h>

#include "internal.h"

static const struct {
    const char *name;
    unsigned bits;
} dtype_table[STS_DTYPE_COUNT] = {
    [STS_BOOL] = {"BOOL", 8},
    [STS_F4] = {"F4", 4},
    [STS_F6_E2M3] = {"F6_E2M3", 6},
    [STS_F6_E3M2] = {"F6_E3M2", 6},
    [STS_U8] = {"U8", 8},
    [STS_I8] = {"I8", 8},
    [STS_F8_E5M2] = {"F8_E5M2", 8},
    [STS_F8_E4M3] = {"F8_E4M3", 8},
    [STS_F8_E8M0] = {"F8_E8M0", 8},
    [STS_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [STS_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [STS_I16] = {"I16", 16},
    [STS_U16] = {"U16", 16},
    [STS_F16] = {"F16", 16},
    [STS_BF16] = {"BF16", 16},
    [STS_I32] = {"I32", 32},
    [STS_U32] = {"U32", 32},
    [STS_F32] = {"F32", 32},
    [STS_C64] = {"C64", 64},
    [STS_F64] = {"F64", 64},
    [STS_I64] = {"I64", 64},
    [STS_U64] = {"U64", 64},
};

const char *sts_dtype_name(sts_dtype dt)
{
    if ((unsigned)dt >= STS_DTYPE_COUNT)
        return NULL;
    return dtype_table[dt].name;
}

unsigned sts_dtype_bits(sts_dtype dt)
{
    if ((unsigned)dt >= STS_DTYPE_COUNT)
        return 0;
    return dtype_table[dt].bits;
}

int sts_dtype_from_name(const char *name, size_t len, sts_dtype *out)
{
    for (unsigned i = 0; i < STS_DTYPE_COUNT; i++) {
        const char *n = dtype_table[i].name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) {
            *out = (sts_dtype)i;
            return STS_OK;
        }
    }
    return STS_E_ARG;
}

int sts_dtype_nbytes(sts_dtype dt, uint64_t numel, uint64_t *nbytes)
{
    uint64_t bits;
    unsigned b = sts_dtype_bits(dt);
    if (b == 0)
        return STS_E_ARG;
    /* Same order of checks as the reference validator: overflow first, then the byte rule. */
    if (sts__mul_u64(numel, b, &bits))
        return STS_E_VALIDATION_OVERFLOW;
    if (bits % 8 != 0)
        return STS_E_MISALIGNED_SLICE;
    *nbytes = bits / 8;
    return STS_OK;
}
