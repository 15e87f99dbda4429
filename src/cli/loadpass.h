/*
 * loadpass.h - one offset-read pass over a rank's share of an open
 * checkpoint, in rounds of bounded size, optionally comparing every element
 * with the generator of `stshard save`.  Shared by `stshard load` and
 * `stshard bench`.
 */
#ifndef STS_CLI_LOADPASS_H
#define STS_CLI_LOADPASS_H

#include <stddef.h>
#include <stdint.h>

#include "share.h"
#include "stshard.h"

/* This rank's measurements of one pass. */
typedef struct load_pass {
    uint64_t needed, read, rchar, transfers, elements, mismatches, unchecked;
    uint64_t received; /* bytes other ranks read for this one (two-phase reads) */
    double seconds;
    char first_bad[256];
} load_pass;

/* The buffers of a pass: round tables, the read arena, the generator's copy. */
typedef struct load_bufs {
    share_chunk *chunks;
    sts_read_req *reqs;
    uint64_t *at;
    unsigned char *arena, *want;
    uint64_t arena_cap, want_cap;
} load_bufs;

/*
 * Collective over comm.  Allocates the buffers for rounds of batch bytes and
 * faults the arena in, so no timed pass pays for first touches.  Returns an
 * agreed STS_OK or STS_E_NOMEM (with a message in err); free with
 * load_bufs_free either way.
 */
int load_bufs_init(MPI_Comm comm, load_bufs *m, uint64_t batch, char *err, size_t errlen);
void load_bufs_free(load_bufs *m);

/*
 * Collective over comm.  One offset-read pass over this rank's blocks bl[nb]
 * of r, in rounds of at most batch bytes.  The rounds are local reads (no
 * collective between them, so a rank never waits for a slower one mid-pass);
 * one agreement at the end gives every rank the same code and the failing
 * rank's message in err.  With check, every element is compared with
 * model_value(seed, ...); that comparison is kept out of p->seconds.
 */
int load_pass_run(MPI_Comm comm, sts_reader *r, const share_block *bl, size_t nb, uint64_t batch,
                  int check, uint64_t seed, load_bufs *m, load_pass *p, char *err, size_t errlen);

/*
 * Collective over comm.  Prints, from the lowest rank that has one, its
 * count of differing elements and the first of them ("stshard CMD:
 * DataMismatch: ...").
 */
void load_report_mismatch(MPI_Comm comm, const char *cmd, const load_pass *p);

/* Local.  The kernel's count of bytes this process read (/proc/self/io rchar), or 0. */
long long load_read_rchar(void);

#endif /* STS_CLI_LOADPASS_H */
