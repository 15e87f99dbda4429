/*
 * mpiio.c - MPI-IO helpers: communicator set-up, error agreement, file
 * open/close, chunked transfers and the rename with its fault point (the
 * plain path helpers are in path.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpiio.h"

/* Maps an MPI error code (by its error class) to an STS_E_* code. */
static int err_from_mpi(int mpi_code)
{
    int cls = MPI_ERR_OTHER;
    if (MPI_Error_class(mpi_code, &cls) != MPI_SUCCESS)
        return STS_E_MPI;
    switch (cls) {
    case MPI_ERR_NO_SUCH_FILE:
        return STS_E_NOENT;
    case MPI_ERR_ACCESS:
    case MPI_ERR_READ_ONLY:
        return STS_E_ACCESS;
    case MPI_ERR_NO_SPACE:
    case MPI_ERR_QUOTA:
        return STS_E_NOSPACE;
    case MPI_ERR_FILE_EXISTS:
        return STS_E_EXIST;
    case MPI_ERR_NO_MEM:
        return STS_E_NOMEM;
    case MPI_ERR_IO:
    case MPI_ERR_FILE:
    case MPI_ERR_BAD_FILE:
    case MPI_ERR_AMODE:
    case MPI_ERR_FILE_IN_USE:
    case MPI_ERR_DUP_DATAREP:
    case MPI_ERR_CONVERSION:
    case MPI_ERR_UNSUPPORTED_DATAREP:
    case MPI_ERR_UNSUPPORTED_OPERATION:
        return STS_E_IO;
    default:
        return STS_E_MPI;
    }
}

int sts__mpiio_fail(sts_diag *diag, const char *call, int mpi_code)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    int code = err_from_mpi(mpi_code);
    if (MPI_Error_string(mpi_code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", mpi_code);
    return sts__fail(diag, code, "%s failed: %s", call, text);
}

int sts__mpiio_comm_dup(MPI_Comm comm, MPI_Comm *out, sts_diag *diag)
{
    int rc = STS_OK;
    *out = MPI_COMM_NULL;
    STS_MPI_CALL(diag, MPI_Comm_dup, (comm, out));
    STS_MPI_CALL(diag, MPI_Comm_set_errhandler, (*out, MPI_ERRORS_RETURN));
done:
    return rc;
}

int sts__mpiio_agree(MPI_Comm comm, int rc, sts_diag *diag)
{
    /* MINLOC over (code, rank): codes are negative, so the minimum is an error if any
     * rank has one, and ties go to the lowest rank, which all ranks then agree on. */
    struct {
        int code;
        int rank;
    } mine, worst;
    char msg[sizeof diag->message];
    int me = 0;

    if (MPI_Comm_rank(comm, &me) != MPI_SUCCESS)
        return STS_E_MPI;
    mine.code = rc;
    mine.rank = me;
    if (MPI_Allreduce(&mine, &worst, 1, MPI_2INT, MPI_MINLOC, comm) != MPI_SUCCESS)
        return sts__fail(diag, STS_E_MPI, "error agreement (MPI_Allreduce) failed");
    if (worst.code == STS_OK)
        return STS_OK;

    /* Only the failing rank's message is worth printing; send it to everyone. */
    memset(msg, 0, sizeof msg);
    if (me == worst.rank && diag)
        memcpy(msg, diag->message, sizeof msg);
    if (me == worst.rank && (!diag || msg[0] == '\0'))
        snprintf(msg, sizeof msg, "%s", sts_strerror(worst.code));
    if (MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, worst.rank, comm) != MPI_SUCCESS)
        return sts__fail(diag, STS_E_MPI, "error agreement (MPI_Bcast) failed");
    msg[sizeof msg - 1] = '\0';
    if (strncmp(msg, "rank ", 5) == 0)
        return sts__fail(diag, worst.code, "%s", msg);
    return sts__fail(diag, worst.code, "rank %d: %s", worst.rank, msg);
}

/*
 * MPI-IO hints from the environment: STSHARD_MPI_HINTS="key=value,key=value"
 * (e.g. striping_factor=8,striping_unit=4194304,cb_nodes=4,romio_cb_write=enable).
 * They apply to every file the library opens when the caller passed
 * MPI_INFO_NULL, so Slurm scripts can tune Lustre/GPFS without code changes.
 * Unknown keys are ignored by MPI, as the standard requires.  A file opened
 * by one rank (MPI_COMM_SELF) takes that rank's environment; a collective
 * open takes rank 0's (shared_hints), since mpirun passes a variable to other
 * hosts only with -x and MPI-IO wants the same hints on every rank.
 */
static int hints_from(const char *text, MPI_Info *info, sts_diag *diag)
{
    int rc = STS_OK;
    char *copy = NULL, *save = NULL;
    *info = MPI_INFO_NULL;
    if (!text || !*text)
        return STS_OK;
    copy = sts__strdup(text);
    STS_GOTO_IF(!copy, diag, STS_E_NOMEM, "out of memory");
    STS_MPI_CALL(diag, MPI_Info_create, (info));
    for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        STS_GOTO_IF(!eq || eq == kv, diag, STS_E_ARG, "STSHARD_MPI_HINTS: '%s' is not key=value",
                    kv);
        *eq = '\0';
        STS_MPI_CALL(diag, MPI_Info_set, (*info, kv, eq + 1));
    }
done:
    if (rc != STS_OK && *info != MPI_INFO_NULL)
        MPI_Info_free(info);
    free(copy);
    return rc;
}

static int env_hints(MPI_Info *info, sts_diag *diag)
{
    return hints_from(getenv("STSHARD_MPI_HINTS"), info, diag);
}

/* Longest STSHARD_MPI_HINTS a collective open shares (hint lists are a few dozen bytes). */
#define HINTS_MAX 4096

/* Collective (not agreed): rank 0's STSHARD_MPI_HINTS as an MPI_Info on every rank. */
static int shared_hints(MPI_Comm comm, int me, MPI_Info *info, sts_diag *diag)
{
    int rc = STS_OK;
    char text[HINTS_MAX];
    memset(text, 0, sizeof text);
    *info = MPI_INFO_NULL;
    if (me == 0) {
        const char *env = getenv("STSHARD_MPI_HINTS");
        if (env && strlen(env) >= sizeof text)
            rc = sts__fail(diag, STS_E_ARG, "STSHARD_MPI_HINTS: longer than %d bytes",
                           HINTS_MAX - 1);
        else if (env)
            memcpy(text, env, strlen(env));
    }
    STS_MPI_CALL(diag, MPI_Bcast, (text, (int)sizeof text, MPI_CHAR, 0, comm));
    /* Every rank parses the same text, so a malformed list fails everywhere alike. */
    if (rc == STS_OK)
        rc = hints_from(text, info, diag);
done:
    return rc;
}

/* MPI_File_open with exactly the info given. */
static int plain_open(MPI_Comm comm, const char *path, int amode, MPI_Info info, MPI_File *fh,
                      sts_diag *diag)
{
    int rc = STS_OK;
    STS_MPI_CALL(diag, MPI_File_open, (comm, path, amode, info, fh));
done:
    return rc;
}

/* Opens with the caller's info, or this rank's environment's hints when it passed none. */
static int file_open(MPI_Comm comm, const char *path, int amode, MPI_Info info, MPI_File *fh,
                     sts_diag *diag)
{
    int rc = STS_OK;
    MPI_Info env = MPI_INFO_NULL;
    if (info == MPI_INFO_NULL) {
        STS_CHECK(env_hints(&env, diag));
        info = env;
    }
    STS_MPI_CALL(diag, MPI_File_open, (comm, path, amode, info, fh));
done:
    if (env != MPI_INFO_NULL)
        MPI_Info_free(&env);
    return rc;
}

static int open_mode(int write)
{
    return write ? (MPI_MODE_WRONLY | MPI_MODE_CREATE | MPI_MODE_EXCL) : MPI_MODE_RDONLY;
}

static int remove_stale(const char *path, sts_diag *diag)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return sts__fail(diag, sts__err_from_errno(errno), "%s: cannot remove stale file: %s", path,
                         strerror(errno));
    return STS_OK;
}

int sts__mpiio_open_self(const char *path, int write, MPI_Info info, MPI_File *fh, sts_diag *diag)
{
    int rc = STS_OK;
    *fh = MPI_FILE_NULL;
    /* remove_stale's message names the path already; only the rest needs the prefix. */
    if (write && (rc = remove_stale(path, diag)) != STS_OK)
        return rc;
    STS_CHECK(STS_FAULT("open", diag));
    STS_CHECK(file_open(MPI_COMM_SELF, path, open_mode(write), info, fh, diag));
done:
    if (rc != STS_OK)
        sts__diag_prefix(diag, "%s", path);
    return rc;
}

int sts__mpiio_open_existing(const char *path, MPI_Info info, MPI_File *fh, sts_diag *diag)
{
    int rc = STS_OK;
    *fh = MPI_FILE_NULL;
    rc = file_open(MPI_COMM_SELF, path, MPI_MODE_WRONLY, info, fh, diag);
    if (rc != STS_OK)
        sts__diag_prefix(diag, "%s", path);
    return rc;
}

int sts__mpiio_open_all(MPI_Comm comm, const char *path, int write, MPI_Info info, MPI_File *fh,
                        sts_diag *diag)
{
    int rc = STS_OK;
    int me = 0;
    MPI_Info env = MPI_INFO_NULL;
    *fh = MPI_FILE_NULL;
    STS_MPI_CALL(diag, MPI_Comm_rank, (comm, &me));
    if (write && me == 0)
        rc = remove_stale(path, diag);
    if (info == MPI_INFO_NULL) {
        int hrc = shared_hints(comm, me, &env, diag);
        rc = rc == STS_OK ? hrc : rc;
    }
    STS_CHECK(sts__mpiio_agree(comm, rc, diag));
    /* MPI_File_open is collective; on failure MPI returns the error on every rank
     * (the standard requires the same amode everywhere), but we still agree below. */
    rc = plain_open(comm, path, open_mode(write), env != MPI_INFO_NULL ? env : info, fh, diag);
    /* Injected after the collective open, as a real failure would be: every rank still joins it. */
    if (rc == STS_OK)
        rc = STS_FAULT("open", diag);
    if (rc != STS_OK)
        sts__diag_prefix(diag, "%s", path);
    rc = sts__mpiio_agree(comm, rc, diag);
    if (rc != STS_OK && *fh != MPI_FILE_NULL)
        MPI_File_close(fh);
done:
    if (env != MPI_INFO_NULL)
        MPI_Info_free(&env);
    return rc;
}

int sts__mpiio_close(MPI_File *fh, sts_diag *diag)
{
    int rc = STS_OK;
    if (*fh == MPI_FILE_NULL)
        return STS_OK;
    STS_MPI_CALL(diag, MPI_File_close, (fh));
done:
    *fh = MPI_FILE_NULL;
    return rc;
}

/* Checks that a finished transfer moved exactly want bytes. */
static int check_count(const MPI_Status *st, int want, const char *what, uint64_t off,
                       sts_diag *diag)
{
    int got = 0;
    if (MPI_Get_count(st, MPI_BYTE, &got) != MPI_SUCCESS)
        return sts__fail(diag, STS_E_MPI, "MPI_Get_count failed after %s", what);
    if (got != want)
        return sts__fail(diag, STS_E_IO, "short %s at byte offset %llu: %d of %d bytes", what,
                         (unsigned long long)off, got, want);
    return STS_OK;
}

int sts__mpiio_write_at(MPI_File fh, uint64_t off, const void *buf, uint64_t len, sts_diag *diag)
{
    int rc = STS_OK;
    const char *p = buf;
    while (len > 0) {
        int n = (int)(len < STS_MPIIO_CHUNK ? len : STS_MPIIO_CHUNK);
        MPI_Status st;
        STS_CHECK(STS_FAULT("write", diag));
        STS_MPI_CALL(diag, MPI_File_write_at, (fh, (MPI_Offset)off, p, n, MPI_BYTE, &st));
        STS_CHECK(check_count(&st, n, "write", off, diag));
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
done:
    return rc;
}

int sts__mpiio_read_at(MPI_File fh, uint64_t off, void *buf, uint64_t len, sts_diag *diag)
{
    int rc = STS_OK;
    char *p = buf;
    while (len > 0) {
        int n = (int)(len < STS_MPIIO_CHUNK ? len : STS_MPIIO_CHUNK);
        MPI_Status st;
        STS_CHECK(STS_FAULT("read", diag));
        STS_MPI_CALL(diag, MPI_File_read_at, (fh, (MPI_Offset)off, p, n, MPI_BYTE, &st));
        STS_CHECK(check_count(&st, n, "read", off, diag));
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
done:
    return rc;
}

int sts__mpiio_write_at_all(MPI_File fh, MPI_Comm comm, uint64_t off, const void *buf, uint64_t len,
                            sts_diag *diag)
{
    int rc = STS_OK;
    const char *p = buf;
    unsigned long long mine = (len + STS_MPIIO_CHUNK - 1) / STS_MPIIO_CHUNK, rounds = 0;
    /* Every rank must make the same number of collective calls. */
    STS_MPI_CALL(diag, MPI_Allreduce, (&mine, &rounds, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm));
    for (unsigned long long r = 0; r < rounds; r++) {
        int n = (int)(len < STS_MPIIO_CHUNK ? len : STS_MPIIO_CHUNK);
        MPI_Status st;
        int mrc;
        if (rc == STS_OK)
            rc = STS_FAULT("write", diag);
        mrc = MPI_File_write_at_all(fh, (MPI_Offset)off, p, n, MPI_BYTE, &st);
        /* A failure must not make this rank skip the remaining rounds that the
         * other ranks will still enter: record it and keep joining with what is left. */
        if (rc == STS_OK && mrc != MPI_SUCCESS)
            rc = sts__mpiio_fail(diag, "MPI_File_write_at_all", mrc);
        else if (rc == STS_OK && n > 0)
            rc = check_count(&st, n, "write", off, diag);
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
done:
    return rc;
}

int sts__mpiio_size(MPI_File fh, uint64_t *size, sts_diag *diag)
{
    int rc = STS_OK;
    MPI_Offset s = 0;
    STS_MPI_CALL(diag, MPI_File_get_size, (fh, &s));
    *size = (uint64_t)s;
done:
    return rc;
}

int sts__mpiio_rename(const char *tmp, const char *final_path, sts_diag *diag)
{
    int rc = STS_FAULT("rename", diag);
    if (rc != STS_OK)
        return rc;
    return sts__path_rename(tmp, final_path, diag);
}

int sts_mpiio_env_hints(MPI_Info *out, sts_diag *diag)
{
    if (!out)
        return sts__fail(diag, STS_E_ARG, "sts_mpiio_env_hints: NULL output");
    return env_hints(out, diag);
}
