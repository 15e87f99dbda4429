/*
 * test_util.h - assertion helpers shared by the tests.
 *
 * CHECK(cond) records a failure (with file:line and the condition text) and
 * carries on, so one run reports every broken expectation.  In MPI tests,
 * TEST_AGREE() reduces the failure count over all ranks (PnetCDF's
 * CHECK_ERR_ALL idea) so that no rank is left waiting in a collective, and
 * TEST_EXIT() turns the count into the process exit status.
 */
#ifndef STS_TEST_UTIL_H
#define STS_TEST_UTIL_H

#include <stdio.h>
#include <string.h>

#include "stshard.h"

static int test_failures = 0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            test_failures++;                                                                       \
        }                                                                                          \
    } while (0)

/* Expects rc to be exactly the code `want`; prints both names otherwise. */
#define CHECK_RC(rc, want)                                                                         \
    do {                                                                                           \
        int got_ = (rc);                                                                           \
        if (got_ != (want)) {                                                                      \
            fprintf(stderr, "%s:%d: expected %s, got %s (%s)\n", __FILE__, __LINE__,               \
                    sts_errname(want), sts_errname(got_), #rc);                                    \
            test_failures++;                                                                       \
        }                                                                                          \
    } while (0)

#define CHECK_OK(rc) CHECK_RC(rc, STS_OK)

/*
 * Every rank's test_failures becomes the largest count of any rank: non-zero
 * wherever some rank failed.  Not the sum: a test agrees many times, and
 * summing counts that earlier agreements already summed multiplies them by P
 * each time, until the int wraps to 0 (4^16 = 2^32: 16 agreements at 4 ranks
 * turned a failed run into a pass).
 */
#define TEST_AGREE(comm)                                                                           \
    do {                                                                                           \
        int all_ = 0;                                                                              \
        MPI_Allreduce(&test_failures, &all_, 1, MPI_INT, MPI_MAX, (comm));                         \
        test_failures = all_;                                                                      \
    } while (0)

#define TEST_EXIT() (test_failures == 0 ? 0 : 1)

#endif /* STS_TEST_UTIL_H */
