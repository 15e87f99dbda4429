/*
 * exchange.c - record exchange between ranks with the error agreement built
 * in (see exchange.h for the contract).
 *
 * Each exchange runs in the same four steps on every rank:
 *   1. agree on the caller's code; on an error every rank returns it;
 *   2. exchange the sizes (one fixed-size collective) and prepare locally:
 *      counts, padding, the receive buffer, the MPI datatype, requests;
 *   3. agree again, so a rank whose allocation failed in step 2 makes every
 *      rank skip the transfer instead of leaving the others inside it;
 *   4. move the bytes, and agree on the result.
 *
 * Sizes past 2 GiB.  MPI_Allgatherv / MPI_Gatherv take int counts and int
 * displacements counted in the receive type's extent.  We send in units of a
 * contiguous datatype of U bytes, U the smallest power of two >= 8 that
 * keeps the total below INT_MAX units; each rank pads its own part to whole
 * units, so parts start at multiples of U (8-byte aligned, which the record
 * decoders rely on).  The personalized exchange has one displacement per
 * peer in bytes (MPI_Alltoallw's are int too), so it uses point-to-point
 * messages instead: each part travels in chunks of at most 1 GiB, posted as
 * MPI_Irecv/MPI_Isend on the library's own communicator.  Messages between
 * one pair of ranks with one tag are not overtaken, so chunks arrive in order.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "mpiio.h"

/* The largest point-to-point message of the personalized exchange. */
#define XCHG_CHUNK ((uint64_t)1 << 30)
/* Tag of the personalized exchange's messages (no other library message uses tags). */
#define XCHG_TAG 4242

static uint64_t units_of(uint64_t n, uint64_t unit)
{
    return n / unit + (n % unit != 0);
}

int sts__exchange_unit(const uint64_t *len, int np, uint64_t limit, uint64_t *unit, uint64_t *units)
{
    for (uint64_t u = 8; u <= INT_MAX; u *= 2) {
        uint64_t t = 0, bytes = 0;
        int r;
        /* t stays <= limit before each addition, and len / 8 < 2^61: no overflow. */
        for (r = 0; r < np && t <= limit; r++)
            t += units_of(len[r], u);
        if (t > limit)
            continue;
        if (sts__mul_u64(t, u, &bytes) || bytes > SIZE_MAX)
            return STS_E_UNSUPPORTED;
        *unit = u;
        *units = t;
        return STS_OK;
    }
    return STS_E_UNSUPPORTED;
}

uint64_t sts__exchange_compact(unsigned char *all, uint64_t *start, const uint64_t *len, int np)
{
    uint64_t at = 0;
    /* start[r] >= at always (parts only got padding between them), so moving down is safe. */
    for (int r = 0; r < np; r++) {
        if (len[r] && start[r] != at)
            memmove(all + at, all + start[r], len[r]);
        start[r] = at;
        at += len[r];
    }
    return at;
}

/* The receive buffer: never NULL on success, so callers need no special case for 0 bytes. */
static int alloc_all(unsigned char **all, uint64_t bytes, sts_diag *diag)
{
    int rc;
    *all = bytes <= SIZE_MAX ? malloc(bytes ? (size_t)bytes : 8) : NULL;
    if (!*all)
        return sts__fail(diag, STS_E_NOMEM, "cannot allocate %llu bytes to exchange records",
                         (unsigned long long)bytes);
    rc = STS_FAULT("xchg.alloc", diag);
    if (rc != STS_OK) {
        free(*all);
        *all = NULL;
    }
    return rc;
}

static int rank_size(MPI_Comm comm, int *me, int *np, sts_diag *diag)
{
    int rc = STS_OK;
    STS_MPI_CALL(diag, MPI_Comm_rank, (comm, me));
    STS_MPI_CALL(diag, MPI_Comm_size, (comm, np));
done:
    return rc;
}

/* ---- gathers (every rank or one root receives every part) ------------------------- */

typedef struct layout {
    int *counts, *displs; /* in units */
    uint64_t unit, units;
    MPI_Datatype type; /* contiguous, unit bytes */
} layout;

static void layout_free(layout *L)
{
    if (L->type != MPI_DATATYPE_NULL)
        MPI_Type_free(&L->type);
    free(L->counts);
    free(L->displs);
}

/* Every rank's part length into len[]. */
static int gather_sizes(MPI_Comm comm, uint64_t mine, uint64_t *len, sts_diag *diag)
{
    int rc = STS_OK;
    STS_MPI_CALL(diag, MPI_Allgather, (&mine, 1, MPI_UINT64_T, len, 1, MPI_UINT64_T, comm));
done:
    return rc;
}

/* Local: counts and displacements in units, start[] in bytes, mine padded, the unit type. */
static int plan_units(int np, const uint64_t *len, uint64_t *start, sts_bytes *mine, layout *L,
                      sts_diag *diag)
{
    static const unsigned char zeros[64];
    int rc = sts__exchange_unit(len, np, INT_MAX, &L->unit, &L->units);
    uint64_t at = 0;
    STS_GOTO_IF(rc != STS_OK, diag, rc, "records of %d ranks are too large to exchange", np);
    L->counts = sts__calloc_array((size_t)np, sizeof *L->counts);
    L->displs = sts__calloc_array((size_t)np, sizeof *L->displs);
    STS_GOTO_IF(!L->counts || !L->displs, diag, STS_E_NOMEM, "out of memory");
    for (int r = 0; r < np; r++) {
        L->counts[r] = (int)units_of(len[r], L->unit);
        L->displs[r] = (int)at;
        start[r] = at * L->unit;
        at += (uint64_t)L->counts[r];
    }
    /* Padding is never parsed: len[] bounds each part. */
    while (rc == STS_OK && mine->len % L->unit) {
        uint64_t pad = L->unit - mine->len % L->unit;
        rc = sts__bytes_put(mine, zeros, pad < sizeof zeros ? (size_t)pad : sizeof zeros);
    }
    STS_GOTO_IF(rc != STS_OK, diag, STS_E_NOMEM, "out of memory");
    STS_MPI_CALL(diag, MPI_Type_contiguous, ((int)L->unit, MPI_BYTE, &L->type));
    STS_MPI_CALL(diag, MPI_Type_commit, (&L->type));
done:
    return rc;
}

static int move_gather(MPI_Comm comm, int root, int me, const sts_bytes *mine, unsigned char *all,
                       const layout *L, sts_diag *diag)
{
    int rc = STS_OK;
    if (root < 0)
        STS_MPI_CALL(diag, MPI_Allgatherv,
                     (mine->buf, L->counts[me], L->type, all, L->counts, L->displs, L->type, comm));
    else
        STS_MPI_CALL(
            diag, MPI_Gatherv,
            (mine->buf, L->counts[me], L->type, all, L->counts, L->displs, L->type, root, comm));
done:
    return rc;
}

/* root < 0: every rank receives (allgather); else only root. */
static int collect(MPI_Comm comm, int root, int rc_in, sts_bytes *mine, unsigned char **all,
                   uint64_t *start, uint64_t *len, sts_diag *diag)
{
    int rc, me = 0, np = 1;
    layout L = {NULL, NULL, 0, 0, MPI_DATATYPE_NULL};
    *all = NULL;
    rc = sts__mpiio_agree(comm, rc_in, diag);
    if (rc != STS_OK)
        return rc;
    rc = rank_size(comm, &me, &np, diag);
    if (rc == STS_OK)
        rc = gather_sizes(comm, mine->len, len, diag);
    if (rc == STS_OK)
        rc = plan_units(np, len, start, mine, &L, diag);
    if (rc == STS_OK && (root < 0 || me == root))
        rc = alloc_all(all, L.units * L.unit, diag);
    rc = sts__mpiio_agree(comm, rc, diag);
    if (rc == STS_OK)
        rc = move_gather(comm, root, me, mine, *all, &L, diag);
    rc = sts__mpiio_agree(comm, rc, diag);
    layout_free(&L);
    if (rc != STS_OK) {
        free(*all);
        *all = NULL;
    }
    return rc;
}

int sts__exchange_allgather(MPI_Comm comm, int rc_in, sts_bytes *mine, unsigned char **all,
                            uint64_t *start, uint64_t *len, sts_diag *diag)
{
    return collect(comm, -1, rc_in, mine, all, start, len, diag);
}

int sts__exchange_gather(MPI_Comm comm, int root, int rc_in, sts_bytes *mine, unsigned char **all,
                         uint64_t *start, uint64_t *len, sts_diag *diag)
{
    return collect(comm, root < 0 ? 0 : root, rc_in, mine, all, start, len, diag);
}

/* ---- personalized exchange ----------------------------------------------------------- */

/* Local: where each incoming part goes (8-byte aligned), the receive buffer, the requests. */
static int plan_a2a(int me, int np, const sts_bytes *mine, const uint64_t *scount,
                    const uint64_t *rlen, uint64_t *rstart, unsigned char **all, MPI_Request **req,
                    sts_diag *diag)
{
    uint64_t sent = 0, at = 0, nreq = 0;
    for (int r = 0; r < np; r++) {
        if (sts__add_u64(sent, scount[r], &sent))
            return sts__fail(diag, STS_E_INTERNAL, "exchange: send counts overflow");
        rstart[r] = at;
        if (sts__add_u64(at, (rlen[r] + 7) / 8 * 8, &at) || rlen[r] > UINT64_MAX - 7)
            return sts__fail(diag, STS_E_UNSUPPORTED, "exchange: received parts overflow");
        if (r != me)
            nreq += units_of(scount[r], XCHG_CHUNK) + units_of(rlen[r], XCHG_CHUNK);
    }
    if (sent > mine->len)
        return sts__fail(diag, STS_E_INTERNAL, "exchange: %llu bytes to send, %zu packed",
                         (unsigned long long)sent, mine->len);
    *req = sts__malloc_array((size_t)nreq + 1, sizeof **req);
    if (!*req)
        return sts__fail(diag, STS_E_NOMEM, "out of memory");
    return alloc_all(all, at, diag);
}

/* Posts one part's messages in chunks; *k counts the requests. */
static int post(MPI_Comm comm, int send, int peer, unsigned char *p, uint64_t n, MPI_Request *req,
                size_t *k, sts_diag *diag)
{
    int rc = STS_OK;
    for (uint64_t off = 0; off < n; off += XCHG_CHUNK) {
        int c = (int)(n - off < XCHG_CHUNK ? n - off : XCHG_CHUNK);
        if (send)
            STS_MPI_CALL(diag, MPI_Isend, (p + off, c, MPI_BYTE, peer, XCHG_TAG, comm, &req[*k]));
        else
            STS_MPI_CALL(diag, MPI_Irecv, (p + off, c, MPI_BYTE, peer, XCHG_TAG, comm, &req[*k]));
        (*k)++;
    }
done:
    return rc;
}

static int wait_all(size_t k, MPI_Request *req, sts_diag *diag)
{
    int rc = STS_OK;
    STS_MPI_CALL(diag, MPI_Waitall, ((int)k, req, MPI_STATUSES_IGNORE));
done:
    return rc;
}

static int move_a2a(MPI_Comm comm, int me, int np, const sts_bytes *mine, const uint64_t *scount,
                    unsigned char *all, const uint64_t *rstart, const uint64_t *rlen,
                    MPI_Request *req, sts_diag *diag)
{
    int rc = STS_OK;
    size_t k = 0;
    uint64_t soff = 0;
    /* Receives first, so no send waits on an unexpected-message buffer. */
    for (int r = 0; r < np && rc == STS_OK; r++) {
        if (r != me)
            rc = post(comm, 0, r, all + rstart[r], rlen[r], req, &k, diag);
    }
    for (int r = 0; r < np && rc == STS_OK; soff += scount[r], r++) {
        if (r == me && scount[r])
            memcpy(all + rstart[r], mine->buf + soff, scount[r]);
        else if (r != me && scount[r]) /* mine->buf may be NULL when nothing is sent */
            rc = post(comm, 1, r, mine->buf + soff, scount[r], req, &k, diag);
    }
    /* Also after a failed post: the posted requests must finish before their buffers go. */
    if (k > 0) {
        int wrc = wait_all(k, req, diag);
        rc = rc == STS_OK ? wrc : rc;
    }
    return rc;
}

static int a2a_sizes(MPI_Comm comm, const uint64_t *scount, uint64_t *rlen, sts_diag *diag)
{
    int rc = STS_OK;
    STS_MPI_CALL(diag, MPI_Alltoall, (scount, 1, MPI_UINT64_T, rlen, 1, MPI_UINT64_T, comm));
done:
    return rc;
}

int sts__exchange_alltoall(MPI_Comm comm, int rc_in, sts_bytes *mine, const uint64_t *scount,
                           unsigned char **all, uint64_t *rstart, uint64_t *rlen, sts_diag *diag)
{
    int rc, me = 0, np = 1;
    MPI_Request *req = NULL;
    *all = NULL;
    rc = sts__mpiio_agree(comm, rc_in, diag);
    if (rc != STS_OK)
        return rc;
    rc = rank_size(comm, &me, &np, diag);
    if (rc == STS_OK)
        rc = a2a_sizes(comm, scount, rlen, diag);
    if (rc == STS_OK)
        rc = plan_a2a(me, np, mine, scount, rlen, rstart, all, &req, diag);
    rc = sts__mpiio_agree(comm, rc, diag);
    if (rc == STS_OK)
        rc = move_a2a(comm, me, np, mine, scount, *all, rstart, rlen, req, diag);
    rc = sts__mpiio_agree(comm, rc, diag);
    free(req);
    if (rc != STS_OK) {
        free(*all);
        *all = NULL;
    }
    return rc;
}
