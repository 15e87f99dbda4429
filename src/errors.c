/*
 * errors.c - error names, messages, exit statuses and the mapping of errno
 * and MPI error classes onto STS_E_* codes (PnetCDF's error_mpi2nc idea).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define STS_NAME_CASE_(e, v, name, msg)                                                            \
    case e:                                                                                        \
        return name;
#define STS_MSG_CASE_(e, v, name, msg)                                                             \
    case e:                                                                                        \
        return msg;

const char *sts_errname(int code)
{
    switch ((sts_error)code) {
        STS_ERROR_LIST(STS_NAME_CASE_)
    case STS_E_MIN_:
        break;
    }
    return "UnknownError";
}

const char *sts_strerror(int code)
{
    switch ((sts_error)code) {
        STS_ERROR_LIST(STS_MSG_CASE_)
    case STS_E_MIN_:
        break;
    }
    return "unknown error code";
}

int sts_exit_status(int code)
{
    if (code == STS_OK)
        return 0;
    /* Switch on int: the default branch covers the format codes on purpose. */
    switch (code) {
    case STS_E_USAGE:
    case STS_E_ARG:
        return 2;
    case STS_E_IO:
    case STS_E_MPI:
    case STS_E_NOENT:
    case STS_E_ACCESS:
    case STS_E_NOSPACE:
    case STS_E_EXIST:
        return 3;
    case STS_E_NOMEM:
    case STS_E_INTERNAL:
    case STS_E_PEER:
    case STS_E_UNSUPPORTED:
        return 4;
    default:
        /* Every remaining code is a defect of the input: format, sharding, mapping. */
        return 1;
    }
}

unsigned sts_version_number(void)
{
    return STS_VERSION_NUMBER;
}

const char *sts_version_string(void)
{
#define STS_STR2_(x) #x
#define STS_STR_(x)  STS_STR2_(x)
    return STS_STR_(STS_VERSION_MAJOR) "." STS_STR_(STS_VERSION_MINOR) "." STS_STR_(
        STS_VERSION_PATCH);
#undef STS_STR_
#undef STS_STR2_
}

void sts__diag_clear(sts_diag *diag)
{
    if (diag) {
        diag->code = STS_OK;
        diag->message[0] = '\0';
    }
}

int sts__vfail(sts_diag *diag, int code, const char *fmt, va_list ap)
{
    if (diag) {
        diag->code = code;
        vsnprintf(diag->message, sizeof diag->message, fmt, ap);
    }
    return code;
}

int sts__fail(sts_diag *diag, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sts__vfail(diag, code, fmt, ap);
    va_end(ap);
    return code;
}

void sts__diag_prefix(sts_diag *diag, const char *fmt, ...)
{
    char old[sizeof diag->message];
    size_t n;
    va_list ap;
    if (!diag)
        return;
    memcpy(old, diag->message, sizeof old);
    va_start(ap, fmt);
    vsnprintf(diag->message, sizeof diag->message, fmt, ap);
    va_end(ap);
    n = strlen(diag->message);
    if (n + 2 < sizeof diag->message) {
        memcpy(diag->message + n, ": ", 2);
        n += 2;
        /* Truncation of the old text is acceptable: the prefix (the file) matters most. */
        memcpy(diag->message + n, old, sizeof diag->message - n - 1);
        diag->message[sizeof diag->message - 1] = '\0';
    }
}

int sts__err_from_errno(int errnum)
{
    switch (errnum) {
    case ENOENT:
    case ENOTDIR:
        return STS_E_NOENT;
    case EACCES:
    case EPERM:
    case EROFS:
        return STS_E_ACCESS;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return STS_E_NOSPACE;
    case EEXIST:
        return STS_E_EXIST;
    case ENOMEM:
        return STS_E_NOMEM;
    default:
        return STS_E_IO;
    }
}
