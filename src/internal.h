/*
 * internal.h - private helpers shared by the library's modules.
 *
 * Naming: non-static library-internal functions are sts__<module>_<verb>
 * (double underscore: not part of the public API, see STYLE.md).
 */
#ifndef STS_INTERNAL_H
#define STS_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "stshard.h"

#if defined(__GNUC__)
#define STS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define STS_PRINTF(f, a)
#endif

/*
 * Sets diag (if any) to code and a formatted message, and returns code, so a
 * failing leaf can write `return sts__fail(diag, STS_E_X, "...", ...)`.
 */
int sts__fail(sts_diag *diag, int code, const char *fmt, ...) STS_PRINTF(3, 4);
/* Same with a va_list. */
int sts__vfail(sts_diag *diag, int code, const char *fmt, va_list ap) STS_PRINTF(3, 0);
/* Prepends "prefix: " to diag's message (used to add a file name on the way out). */
void sts__diag_prefix(sts_diag *diag, const char *fmt, ...) STS_PRINTF(2, 3);
/* Clears diag. */
void sts__diag_clear(sts_diag *diag);

/* Maps an errno value to an STS_E_* code. */
int sts__err_from_errno(int errnum);
/* Maps an MPI error code (by its error class) to an STS_E_* code. */
int sts__err_from_mpi(int mpi_code);
/* Writes "<call>: <MPI_Error_string>" into diag and returns the mapped code. */
int sts__mpi_fail(sts_diag *diag, const char *call, int mpi_code);

/*
 * STS_MPI_CALL(diag, MPI_Fn, (args)): the one way the library calls MPI.
 * It runs the call, and on failure records the call's name and MPI's error
 * text in diag, maps the error class to an STS_E_* code in `rc` and jumps to
 * the function's `done:` label.  The enclosing function must declare
 * `int rc` and a `done:` label.  MPI-IO errors return (the default file
 * error handler is MPI_ERRORS_RETURN); communicator errors return because
 * sts__comm_dup sets MPI_ERRORS_RETURN on every communicator we own.
 */
#define STS_MPI_CALL(diag, fn, args)                                                               \
    do {                                                                                           \
        int sts_mpi_rc_ = fn args;                                                                 \
        if (sts_mpi_rc_ != MPI_SUCCESS) {                                                          \
            rc = sts__mpi_fail((diag), #fn, sts_mpi_rc_);                                          \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/* Jumps to done: with rc = code and a message when cond holds. */
#define STS_GOTO_IF(cond, diag, code, ...)                                                         \
    do {                                                                                           \
        if (cond) {                                                                                \
            rc = sts__fail((diag), (code), __VA_ARGS__);                                           \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/* Jumps to done: when expr returns an error (the callee already filled diag). */
#define STS_CHECK(expr)                                                                            \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (rc != STS_OK)                                                                          \
            goto done;                                                                             \
    } while (0)

/* Checked 64-bit arithmetic: return 0 on success, 1 on overflow. */
static inline int sts__mul_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_mul_overflow(a, b, r);
}
static inline int sts__add_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_add_overflow(a, b, r);
}

/* Product of shape[0..ndim) (1 for a scalar).  Returns STS_E_VALIDATION_OVERFLOW on overflow. */
int sts__numel(const uint64_t *shape, uint32_t ndim, uint64_t *numel);

/* malloc/calloc/realloc wrappers that fail cleanly on size overflow. */
void *sts__malloc_array(size_t n, size_t size);
void *sts__calloc_array(size_t n, size_t size);
void *sts__realloc_array(void *p, size_t n, size_t size);
char *sts__strdup(const char *s);

#endif /* STS_INTERNAL_H */
