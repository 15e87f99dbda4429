/*
 * unit_dtype.c - the dtype table against docs/format.md §1 (names, bits, rank
 * order) and the sub-byte size rule.
 */
#include <string.h>

#include "test_util.h"

int main(void)
{
    /* docs/format.md §1, in rank order. */
    static const struct {
        const char *name;
        unsigned bits;
    } want[] = {{"BOOL", 8},    {"F4", 4},          {"F6_E2M3", 6},     {"F6_E3M2", 6},
                {"U8", 8},      {"I8", 8},          {"F8_E5M2", 8},     {"F8_E4M3", 8},
                {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16},
                {"U16", 16},    {"F16", 16},        {"BF16", 16},       {"I32", 32},
                {"U32", 32},    {"F32", 32},        {"C64", 64},        {"F64", 64},
                {"I64", 64},    {"U64", 64}};
    uint64_t nb = 0;
    sts_dtype dt;

    CHECK(sizeof want / sizeof want[0] == STS_DTYPE_COUNT);
    for (unsigned i = 0; i < STS_DTYPE_COUNT; i++) {
        CHECK(strcmp(sts_dtype_name((sts_dtype)i), want[i].name) == 0);
        CHECK(sts_dtype_bits((sts_dtype)i) == want[i].bits);
        CHECK_OK(sts_dtype_from_name(want[i].name, strlen(want[i].name), &dt));
        CHECK(dt == (sts_dtype)i);
    }
    CHECK_RC(sts_dtype_from_name("F8", 2, &dt), STS_E_ARG);
    CHECK_RC(sts_dtype_from_name("BF16 ", 5, &dt), STS_E_ARG);
    CHECK_RC(sts_dtype_from_name("bf16", 4, &dt), STS_E_ARG);
    CHECK(sts_dtype_name(STS_DTYPE_COUNT) == NULL);
    CHECK(sts_dtype_bits(STS_DTYPE_COUNT) == 0);

    /* Sub-byte rule: numel * bits must be a multiple of 8. */
    CHECK_OK(sts_dtype_nbytes(STS_F4, 2, &nb));
    CHECK(nb == 1);
    CHECK_RC(sts_dtype_nbytes(STS_F4, 3, &nb), STS_E_MISALIGNED_SLICE);
    CHECK_OK(sts_dtype_nbytes(STS_F6_E2M3, 4, &nb));
    CHECK(nb == 3);
    CHECK_RC(sts_dtype_nbytes(STS_F6_E3M2, 2, &nb), STS_E_MISALIGNED_SLICE);
    CHECK_OK(sts_dtype_nbytes(STS_BF16, 0, &nb));
    CHECK(nb == 0);
    CHECK_OK(sts_dtype_nbytes(STS_C64, 3, &nb));
    CHECK(nb == 24);
    CHECK_RC(sts_dtype_nbytes(STS_U64, UINT64_MAX / 8, &nb), STS_E_VALIDATION_OVERFLOW);

    /* Error names are the reference loader's and every code has a message. */
    CHECK(strcmp(sts_errname(STS_E_INVALID_OFFSET), "InvalidOffset") == 0);
    CHECK(strcmp(sts_errname(STS_E_HEADER_TOO_SMALL), "HeaderTooSmall") == 0);
    CHECK(strcmp(sts_errname(-999), "UnknownError") == 0);
    CHECK(sts_exit_status(STS_OK) == 0);
    CHECK(sts_exit_status(STS_E_INVALID_OFFSET) == 1);
    CHECK(sts_exit_status(STS_E_USAGE) == 2);
    CHECK(sts_exit_status(STS_E_NOSPACE) == 3);
    CHECK(sts_exit_status(STS_E_INTERNAL) == 4);
    return TEST_EXIT();
}
