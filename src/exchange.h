/*
 * exchange.h - the one way the library moves variable-sized records between
 * ranks (headers, block records, request lists, file indices).
 *
 * Every exchange here is collective and carries its own error agreement: it
 * starts by agreeing on the caller's code (so a rank that failed while
 * packing still joins, and nobody sends), agrees again before the data moves
 * (so a rank that could not allocate its receive buffer never leaves the
 * others waiting in the transfer), and ends with an agreement, so every rank
 * returns the same code.  Sizes are 64-bit throughout; parts and totals past
 * 2 GiB work (MPI counts are int, see exchange.c for how they are avoided).
 */
#ifndef STS_EXCHANGE_H
#define STS_EXCHANGE_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_IO
#error "exchange.h belongs to the MPI I/O layer (src/layer.h); a lower layer may not include it"
#endif

#include <mpi.h>

#include "bytes.h"
#include "internal.h"

/*
 * Collective over comm.  First agrees on rc_in (if any rank's rc_in is an
 * error, every rank returns that agreed error and nothing is exchanged; start
 * and len may then be NULL).  Then every rank receives every rank's `mine`
 * bytes: *all (malloc'd, caller frees with free(); non-NULL even when empty)
 * holds rank r's part at *all + start[r], len[r] bytes.  start and len are
 * caller-provided arrays of comm-size entries.  Every part starts 8-byte
 * aligned.  mine may get padding appended (its len grows).  Ends with an
 * agreement: every rank returns the same code (STS_OK, the agreed rc_in,
 * STS_E_NOMEM, STS_E_UNSUPPORTED for a total no unit can describe, STS_E_MPI);
 * on error *all is NULL.
 */
int sts__exchange_allgather(MPI_Comm comm, int rc_in, sts_bytes *mine, unsigned char **all,
                            uint64_t *start, uint64_t *len, sts_diag *diag);

/*
 * Collective over comm.  Personalized exchange: mine holds the parts for
 * ranks 0..P-1 back to back, part r being scount[r] bytes.  Receives *all
 * (malloc'd, non-NULL on success) with the part from rank r at rstart[r],
 * rlen[r] bytes, every part 8-byte aligned.  Same agreement and size rules
 * as sts__exchange_allgather; scount[] summing past mine->len is STS_E_INTERNAL.
 */
int sts__exchange_alltoall(MPI_Comm comm, int rc_in, sts_bytes *mine, const uint64_t *scount,
                           unsigned char **all, uint64_t *rstart, uint64_t *rlen, sts_diag *diag);

/*
 * Collective over comm.  Like sts__exchange_allgather, but only `root` receives:
 * other ranks get *all == NULL (start and len are filled on every rank).
 */
int sts__exchange_gather(MPI_Comm comm, int root, int rc_in, sts_bytes *mine, unsigned char **all,
                         uint64_t *start, uint64_t *len, sts_diag *diag);

/*
 * Local, pure.  The transfer unit for parts of len[0..np) bytes: the smallest
 * power of two U >= 8 for which the parts, each rounded up to whole units,
 * total at most `limit` units (INT_MAX for MPI's int counts and
 * displacements) and U itself fits an int.  Sets *unit and *units (the total
 * in units).  STS_E_UNSUPPORTED when no such U exists or U * units overflows.
 */
int sts__exchange_unit(const uint64_t *len, int np, uint64_t limit, uint64_t *unit,
                       uint64_t *units);

/*
 * Local.  Moves the parts of an exchange result back to back (part r to the
 * sum of len[0..r)), updating start[], and returns that total: for callers
 * that walk every rank's records as one stream.  Parts whose lengths are
 * multiples of 8 stay 8-byte aligned.
 */
uint64_t sts__exchange_compact(unsigned char *all, uint64_t *start, const uint64_t *len, int np);

#endif /* STS_EXCHANGE_H */
