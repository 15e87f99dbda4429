/*
 * mpiio.h - the thin MPI and MPI-IO layer every collective module uses.
 *
 * Transfers are split below 2 GiB because Open MPI 4.1 has no large-count
 * MPI-IO calls (an int count of MPI_BYTE caps one call at INT_MAX bytes).
 * Collective transfers are split into the same number of calls on every
 * rank, because MPI requires all ranks of a file handle to make matching
 * collective calls.
 */
#ifndef STS_MPIIO_H
#define STS_MPIIO_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_IO
#error "mpiio.h belongs to the MPI I/O layer (src/layer.h); a lower layer may not include it"
#endif

#include <mpi.h>

#include "internal.h"
#include "path.h"

/* Writes "<call> failed: <MPI_Error_string>" into diag and returns the STS_E_* code of its class.
 */
int sts__mpiio_fail(sts_diag *diag, const char *call, int mpi_code);

/*
 * STS_MPI_CALL(diag, MPI_Fn, (args)): the one way the library calls MPI.
 * It runs the call, and on failure records the call's name and MPI's error
 * text in diag, maps the error class to an STS_E_* code in `rc` and jumps to
 * the function's `done:` label.  The enclosing function must declare
 * `int rc` and a `done:` label.  MPI-IO errors return (the default file
 * error handler is MPI_ERRORS_RETURN); communicator errors return because
 * sts__mpiio_comm_dup sets MPI_ERRORS_RETURN on every communicator we own.
 * It lives here, not in internal.h, so that the format and plan layers
 * cannot call MPI.
 */
#define STS_MPI_CALL(diag, fn, args)                                                               \
    do {                                                                                           \
        int sts_mpi_rc_ = fn args;                                                                 \
        if (sts_mpi_rc_ != MPI_SUCCESS) {                                                          \
            rc = sts__mpiio_fail((diag), #fn, sts_mpi_rc_);                                        \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/* Largest single MPI-IO transfer we issue (1 GiB keeps well clear of INT_MAX). */
#define STS_MPIIO_CHUNK ((uint64_t)1 << 30)

/*
 * Collective over comm.  Duplicates comm (so library traffic never matches
 * the caller's messages) and sets MPI_ERRORS_RETURN on the copy, so failures
 * come back as codes instead of aborting the job.
 */
int sts__mpiio_comm_dup(MPI_Comm comm, MPI_Comm *out, sts_diag *diag);

/*
 * Collective over comm.  The error agreement that ends every collective
 * phase: MPI_Allreduce with MPI_MINLOC over (code, rank) finds the most
 * severe code (codes are negative) and the lowest rank that has it; that
 * rank's diag message is broadcast, so every rank returns the same code and
 * the same text, prefixed with the failing rank.  Returns STS_OK when every
 * rank passed STS_OK.  If the agreement itself fails, returns STS_E_MPI.
 */
int sts__mpiio_agree(MPI_Comm comm, int rc, sts_diag *diag);

/*
 * Local.  Opens path with MPI_COMM_SELF.  For writing (write != 0) the file
 * is created fresh: an existing file is removed first and MPI_MODE_EXCL
 * guarantees we never truncate someone else's file in place.
 */
int sts__mpiio_open_self(const char *path, int write, MPI_Info info, MPI_File *fh, sts_diag *diag);

/*
 * Local.  Opens an existing file with MPI_COMM_SELF for writing, without
 * creating or truncating it: for ranks that fill their own regions of a file
 * another rank created.
 */
int sts__mpiio_open_existing(const char *path, MPI_Info info, MPI_File *fh, sts_diag *diag);

/*
 * Collective over comm.  Opens path on every rank of comm.  For writing the
 * file must not exist (rank 0 removes a stale one first); MPI_MODE_EXCL makes
 * the create fail rather than reuse a file.
 */
int sts__mpiio_open_all(MPI_Comm comm, const char *path, int write, MPI_Info info, MPI_File *fh,
                        sts_diag *diag);

/* Local or collective as the handle's open was.  Closes *fh if open; sets it to MPI_FILE_NULL. */
int sts__mpiio_close(MPI_File *fh, sts_diag *diag);

/* Independent.  Writes/reads len bytes at off, split into chunks; a short transfer is an error. */
int sts__mpiio_write_at(MPI_File fh, uint64_t off, const void *buf, uint64_t len, sts_diag *diag);
int sts__mpiio_read_at(MPI_File fh, uint64_t off, void *buf, uint64_t len, sts_diag *diag);

/*
 * Collective over the handle's communicator.  Each rank writes its own
 * (off, len); ranks with len == 0 still join.  All ranks make the same
 * number of MPI_File_write_at_all calls (the maximum chunk count, agreed with
 * MPI_Allreduce).
 */
int sts__mpiio_write_at_all(MPI_File fh, MPI_Comm comm, uint64_t off, const void *buf, uint64_t len,
                            sts_diag *diag);

/* Local.  File size via MPI_File_get_size. */
int sts__mpiio_size(MPI_File fh, uint64_t *size, sts_diag *diag);

/*
 * Local.  sts__path_rename with the fault-injection point "rename" (fault.c
 * belongs to this layer, so the format-layer rename cannot carry it).
 */
int sts__mpiio_rename(const char *tmp, const char *final_path, sts_diag *diag);

#endif /* STS_MPIIO_H */
