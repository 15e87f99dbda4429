/*
 * cmd_load.c - `stshard load`: every rank loads its share of a checkpoint
 * under a new sharding with offset reads, in bounded memory, and reports the
 * bytes read against the bytes needed (the reader's count and the kernel's
 * /proc/self/io rchar) and the throughput.  With --check-seed every element
 * is compared with the generator of `stshard save`.  With --compare-whole
 * the same run also reads, on every rank, each whole file its share touches
 * (what the reference design's reader does) for a throughput baseline.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "loadpass.h"
#include "share.h"

typedef struct load_args {
    const char *dir, *strided, *exchange, *metadata;
    share_opts so;
    uint64_t batch, seed, repeat, xbuf;
    int check, whole, json, drop;
} load_args;

static void load_usage(FILE *f)
{
    fprintf(f, "Usage: mpirun -n M stshard load INDIR [options]\n\n"
               "Loads a checkpoint into a new sharding over the M ranks: each rank reads only\n"
               "its blocks, with MPI-IO offset reads of exactly the bytes they need.  INDIR is\n"
               "a consolidated checkpoint (index.json + model files), a model.safetensors (or\n"
               "its directory), or a directory of rank files.  Prints bytes needed, bytes read\n"
               "(reader and kernel counts) and GiB/s.\n\n"
               "Options:\n"
               "  --strategy S      tp, row (default), col, mesh2d: as `stshard save`\n"
               "  --dim D           with row: split dimension D instead of 0\n"
               "  --check-seed S    compare every element with `stshard save --seed S`\n"
               "  --batch SIZE      bytes read per rank per collective round (default 64MiB);\n"
               "                    bounds the memory of the load\n"
               "  --compare-whole   also read every file the share touches whole (baseline)\n"
               "  --strided-reads M runs (default: one exact read per run of a strided block)\n"
               "                    or view (MPI-IO subarray file views; exact with ROMIO)\n"
               "  --exchange M      auto (default: where the ranks together need whole rows of\n"
               "                    a stored block, each reads a contiguous part and the ranks\n"
               "                    exchange the pieces with MPI) or off (every rank reads its\n"
               "                    own runs)\n"
               "  --exchange-buffer SIZE  staging memory per rank for the exchange (2MiB)\n"
               "  --metadata M      distributed (default: each tensor's block list is held by\n"
               "                    one owner rank and fetched by the reads that need it) or\n"
               "                    replicated (every rank holds every block record;\n"
               "                    --compare-whole needs it and selects it)\n"
               "  --repeat N        run the passes N times (default 1)\n"
               "  --drop-caches     sync and drop the page cache before every timed pass, so\n"
               "                    reads come from the storage (needs root; one rank per node)\n"
               "  --json            print the summary as JSON\n"
               "  --help            this text\n");
}

static int parse_args(int argc, char **argv, load_args *a, int me)
{
    enum {
        O_STRATEGY = 256,
        O_DIM,
        O_SEED,
        O_BATCH,
        O_WHOLE,
        O_REPEAT,
        O_JSON,
        O_STRIDED,
        O_EXCHANGE,
        O_XBUF,
        O_DROP,
        O_META
    };
    static const struct option opts[] = {{"strategy", required_argument, NULL, O_STRATEGY},
                                         {"dim", required_argument, NULL, O_DIM},
                                         {"check-seed", required_argument, NULL, O_SEED},
                                         {"batch", required_argument, NULL, O_BATCH},
                                         {"compare-whole", no_argument, NULL, O_WHOLE},
                                         {"repeat", required_argument, NULL, O_REPEAT},
                                         {"json", no_argument, NULL, O_JSON},
                                         {"strided-reads", required_argument, NULL, O_STRIDED},
                                         {"exchange", required_argument, NULL, O_EXCHANGE},
                                         {"exchange-buffer", required_argument, NULL, O_XBUF},
                                         {"drop-caches", no_argument, NULL, O_DROP},
                                         {"metadata", required_argument, NULL, O_META},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c, dim_set = 0;
    memset(a, 0, sizeof *a);
    a->so.strategy = MODEL_ROWS;
    a->so.dim = 0;
    a->batch = (uint64_t)64 << 20;
    a->repeat = 1;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_STRATEGY:
            if (model_strategy_parse(optarg, &a->so.strategy) != 0)
                return me ? CLI_USAGE : cli_usage_error("load", "unknown strategy '%s'", optarg);
            break;
        case O_DIM:
            if (share_parse_dim(optarg, &a->so.dim) != 0)
                return me ? CLI_USAGE
                          : cli_usage_error("load", "--dim must be 0..%d", MODEL_MAX_DIMS - 1);
            dim_set = 1;
            break;
        case O_SEED:
            if (cli_parse_u64(optarg, &a->seed) != 0)
                return me ? CLI_USAGE : cli_usage_error("load", "bad seed '%s'", optarg);
            a->check = 1;
            break;
        case O_BATCH:
            if (cli_parse_size(optarg, &a->batch) != 0 || a->batch == 0)
                return me ? CLI_USAGE : cli_usage_error("load", "bad --batch '%s'", optarg);
            break;
        case O_REPEAT:
            if (cli_parse_u64(optarg, &a->repeat) != 0 || a->repeat == 0 || a->repeat > 1000)
                return me ? CLI_USAGE : cli_usage_error("load", "bad --repeat '%s'", optarg);
            break;
        case O_WHOLE:
            a->whole = 1;
            break;
        case O_STRIDED:
            if (strcmp(optarg, "runs") != 0 && strcmp(optarg, "view") != 0)
                return me ? CLI_USAGE
                          : cli_usage_error("load", "--strided-reads is runs or view, not '%s'",
                                            optarg);
            a->strided = optarg;
            break;
        case O_EXCHANGE:
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "off") != 0)
                return me ? CLI_USAGE
                          : cli_usage_error("load", "--exchange is auto or off, not '%s'", optarg);
            a->exchange = optarg;
            break;
        case O_JSON:
            a->json = 1;
            break;
        case O_XBUF:
            if (cli_parse_size(optarg, &a->xbuf) != 0 || a->xbuf == 0)
                return me ? CLI_USAGE
                          : cli_usage_error("load", "bad --exchange-buffer '%s'", optarg);
            break;
        case O_DROP:
            a->drop = 1;
            break;
        case O_META:
            if (strcmp(optarg, "distributed") != 0 && strcmp(optarg, "replicated") != 0)
                return me ? CLI_USAGE
                          : cli_usage_error("load",
                                            "--metadata is distributed or replicated, "
                                            "not '%s'",
                                            optarg);
            a->metadata = optarg;
            break;
        case 'h':
            if (me == 0)
                load_usage(stdout);
            return -1;
        default:
            return me ? CLI_USAGE
                      : cli_usage_error("load", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return me ? CLI_USAGE : cli_usage_error("load", "expected exactly one INDIR");
    if (dim_set && a->so.strategy != MODEL_ROWS)
        return me ? CLI_USAGE : cli_usage_error("load", "--dim applies to --strategy row only");
    /* The whole-file baseline lists each tensor's stored blocks with sts_reader_block. */
    if (a->whole && a->metadata && strcmp(a->metadata, "distributed") == 0)
        return me ? CLI_USAGE
                  : cli_usage_error("load", "--compare-whole needs --metadata replicated");
    if (!a->metadata)
        a->metadata = a->whole ? "replicated" : "distributed";
    a->dir = argv[optind];
    return CLI_OK;
}

/* ---- the whole-file baseline ------------------------------------------------ */

static int boxes_meet(uint32_t nd, const uint64_t *ao, const uint64_t *as, const uint64_t *bo,
                      const uint64_t *bs)
{
    for (uint32_t d = 0; d < nd; d++)
        if (ao[d] >= bo[d] + bs[d] || bo[d] >= ao[d] + as[d] || as[d] == 0 || bs[d] == 0)
            return 0;
    return 1;
}

/* Marks every file that holds a byte of this rank's share. */
static void touched_files(const sts_reader *r, const share_block *bl, size_t nb, char *touch)
{
    for (size_t i = 0; i < nb; i++) {
        for (size_t k = 0; k < bl[i].t->nblocks; k++) {
            sts_stored_block sb;
            if (sts_reader_block(r, bl[i].tensor, k, &sb) == STS_OK &&
                boxes_meet(bl[i].t->ndim, bl[i].off, bl[i].shape, sb.offsets, sb.shape))
                touch[sb.file] = 1;
        }
    }
}

/* Whole files are read in reads of this size (large enough that the call count is noise). */
#define WHOLE_CHUNK ((uint64_t)64 << 20)

/* Reads path whole through buf, as the reference reader's stream.read() does. */
static int read_whole(const char *path, unsigned char *buf, uint64_t cap, uint64_t *bytes,
                      char *err, size_t errlen)
{
    MPI_File fh;
    MPI_Offset size = 0;
    int mrc = MPI_File_open(MPI_COMM_SELF, path, MPI_MODE_RDONLY, MPI_INFO_NULL, &fh);
    if (mrc != MPI_SUCCESS) {
        snprintf(err, errlen, "%s: cannot open", path);
        return STS_E_IO;
    }
    mrc = MPI_File_get_size(fh, &size);
    for (MPI_Offset off = 0; mrc == MPI_SUCCESS && off < size;) {
        int n = (int)((uint64_t)(size - off) < cap ? (uint64_t)(size - off) : cap), got = 0;
        MPI_Status st;
        mrc = MPI_File_read_at(fh, off, buf, n, MPI_BYTE, &st);
        if (mrc == MPI_SUCCESS && (MPI_Get_count(&st, MPI_BYTE, &got) != MPI_SUCCESS || got != n))
            mrc = MPI_ERR_IO;
        off += n;
    }
    MPI_File_close(&fh);
    if (mrc != MPI_SUCCESS) {
        snprintf(err, errlen, "%s: read failed", path);
        return STS_E_IO;
    }
    *bytes += (uint64_t)size;
    return STS_OK;
}

/* Collective.  Every rank reads whole each file its share touches; agreed code. */
static int whole_pass(MPI_Comm comm, const sts_reader *r, load_bufs *m, const share_block *bl,
                      size_t nb, load_pass *p, char *err, size_t errlen)
{
    size_t nf = sts_reader_file_count(r);
    char *touch = calloc(nf ? nf : 1, 1);
    long long k0 = load_read_rchar();
    int rc = touch ? STS_OK : STS_E_NOMEM;
    uint64_t chunk = m->arena_cap < WHOLE_CHUNK ? m->arena_cap : WHOLE_CHUNK;
    double t0 = MPI_Wtime();
    if (touch)
        touched_files(r, bl, nb, touch);
    for (size_t f = 0; rc == STS_OK && f < nf; f++)
        if (touch[f])
            rc = read_whole(sts_reader_file_path(r, f), m->arena, chunk, &p->read, err, errlen);
    p->seconds = MPI_Wtime() - t0;
    p->rchar = (uint64_t)(load_read_rchar() - k0);
    free(touch);
    return share_agree(comm, rc, err, errlen);
}

/* ---- reporting ----------------------------------------------------------------- */

typedef struct totals {
    uint64_t needed, read, rchar, transfers, elements, mismatches, unchecked, received;
    uint64_t vmhwm_kib;          /* max over ranks: peak resident set */
    double seconds, worst_ratio; /* max over ranks: time, and kernel bytes / needed bytes */
} totals;

static void reduce_pass(MPI_Comm comm, const load_pass *p, totals *t)
{
    uint64_t rss = cli_peak_rss_kib();
    uint64_t mine[8] = {p->needed,   p->read,       p->rchar,     p->transfers,
                        p->elements, p->mismatches, p->unchecked, p->received};
    uint64_t sum[8];
    double dm[2] = {p->seconds, p->needed ? (double)p->rchar / (double)p->needed : 0.0}, dx[2];
    MPI_Allreduce(mine, sum, 8, MPI_UINT64_T, MPI_SUM, comm);
    MPI_Allreduce(dm, dx, 2, MPI_DOUBLE, MPI_MAX, comm);
    t->needed = sum[0], t->read = sum[1], t->rchar = sum[2], t->transfers = sum[3];
    t->elements = sum[4], t->mismatches = sum[5], t->unchecked = sum[6], t->received = sum[7];
    t->seconds = dx[0], t->worst_ratio = dx[1];
    MPI_Allreduce(&rss, &t->vmhwm_kib, 1, MPI_UINT64_T, MPI_MAX, comm);
}

static double gibs(uint64_t bytes, double s)
{
    return s > 0 ? (double)bytes / s / (1024.0 * 1024.0 * 1024.0) : 0.0;
}

static void report(const load_args *a, int np, size_t tensors, uint64_t rep, const totals *o,
                   const totals *w)
{
    char b1[32], b2[32], b3[32], b4[32];
    if (a->json) {
        printf("{\"command\": \"load\", \"dir\": ");
        cli_json_string(stdout, a->dir);
        printf(", \"strategy\": \"%s\", \"ranks\": %d, \"tensors\": %zu, \"repeat\": %llu, "
               "\"bytes_needed\": %llu, \"bytes_read\": %llu, \"kernel_rchar\": %llu, "
               "\"worst_rank_read_ratio\": %.4f, \"read_calls\": %llu, \"seconds\": %.6f, "
               "\"gib_per_s\": %.4f, \"batch\": %llu, \"max_vmhwm_kib\": %llu, "
               "\"bytes_received\": %llu, \"exchange\": \"%s\", \"metadata\": \"%s\", "
               "\"drop_caches\": %s",
               model_strategy_name(a->so.strategy), np, tensors, (unsigned long long)rep,
               (unsigned long long)o->needed, (unsigned long long)o->read,
               (unsigned long long)o->rchar, o->worst_ratio, (unsigned long long)o->transfers,
               o->seconds, gibs(o->needed, o->seconds), (unsigned long long)a->batch,
               (unsigned long long)o->vmhwm_kib, (unsigned long long)o->received,
               a->exchange ? a->exchange : "auto", a->metadata, a->drop ? "true" : "false");
        if (a->check)
            printf(", \"checked_elements\": %llu, \"mismatches\": %llu, \"unchecked_bytes\": %llu",
                   (unsigned long long)o->elements, (unsigned long long)o->mismatches,
                   (unsigned long long)o->unchecked);
        if (a->whole)
            printf(", \"whole_bytes_read\": %llu, \"whole_seconds\": %.6f, "
                   "\"whole_gib_per_s\": %.4f",
                   (unsigned long long)w->read, w->seconds, gibs(w->read, w->seconds));
        printf("}\n");
        return;
    }
    printf("load: %s needed, %s read (kernel: %s, worst rank %.3fx its share; %s read by "
           "another rank and exchanged) in %.3f s, %.2f GiB/s, %d ranks, %zu tensors, %s; "
           "peak RSS %.0f MiB/rank\n",
           cli_format_bytes(o->needed, b1, sizeof b1), cli_format_bytes(o->read, b2, sizeof b2),
           cli_format_bytes(o->rchar, b3, sizeof b3), o->worst_ratio,
           cli_format_bytes(o->received, b4, sizeof b4), o->seconds, gibs(o->needed, o->seconds),
           np, tensors, model_strategy_name(a->so.strategy), (double)o->vmhwm_kib / 1024.0);
    if (a->check)
        printf("check: %llu elements compared, %llu differ%s\n", (unsigned long long)o->elements,
               (unsigned long long)o->mismatches,
               o->unchecked ? " (sub-byte tensors not checked)" : "");
    if (a->whole)
        printf("whole files: %s read in %.3f s, %.2f GiB/s; offset load runs at %.2fx that\n",
               cli_format_bytes(w->read, b1, sizeof b1), w->seconds, gibs(w->read, w->seconds),
               gibs(w->read, w->seconds) > 0
                   ? gibs(o->needed, o->seconds) / gibs(w->read, w->seconds)
                   : 0.0);
}

/*
 * Collective.  Before a timed pass: one rank per node syncs and, with
 * --drop-caches, drops the node's page cache; the barrier keeps every rank
 * from starting before every node is done.  A refused drop is an error, so
 * a cold-cache figure is never silently a warm one.
 */
static int settle(MPI_Comm comm, const load_args *a, char *err, size_t errlen)
{
    MPI_Comm node;
    int nme = 0, rc = STS_OK;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &nme);
    if (nme == 0 && a->drop) {
        sync();
        if (!cli_drop_page_cache(err, errlen))
            rc = STS_E_ACCESS;
    }
    MPI_Comm_free(&node);
    return share_agree(comm, rc, err, errlen);
}

/* Collective.  The passes and their reports; *bad_data is set when an element differs. */
static int run(MPI_Comm comm, const load_args *a, sts_reader *r, const share_block *bl, size_t nb,
               int *bad_data, char *err, size_t errlen)
{
    load_bufs m;
    int me = 0, np = 1, rc;
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    rc = load_bufs_init(comm, &m, a->batch, err, errlen);
    for (uint64_t rep = 0; rc == STS_OK && rep < a->repeat; rep++) {
        load_pass op, wp;
        totals ot, wt;
        memset(&op, 0, sizeof op);
        memset(&wp, 0, sizeof wp);
        memset(&wt, 0, sizeof wt);
        rc = settle(comm, a, err, errlen);
        if (rc == STS_OK)
            rc = load_pass_run(comm, r, bl, nb, a->batch, a->check, a->seed, &m, &op, err, errlen);
        if (rc == STS_OK && a->whole)
            rc = settle(comm, a, err, errlen);
        if (rc == STS_OK && a->whole) {
            rc = whole_pass(comm, r, &m, bl, nb, &wp, err, errlen);
        }
        if (rc != STS_OK)
            break;
        reduce_pass(comm, &op, &ot);
        reduce_pass(comm, &wp, &wt);
        if (me == 0)
            report(a, np, sts_reader_count(r), rep + 1, &ot, &wt);
        if (ot.mismatches) {
            fflush(stdout);
            load_report_mismatch(comm, "load", &op);
            *bad_data = 1;
            break;
        }
    }
    load_bufs_free(&m);
    return rc;
}

int cmd_load(int argc, char **argv)
{
    load_args a;
    sts_reader *r = NULL;
    share_block *bl = NULL;
    size_t nb = 0;
    sts_diag d;
    char err[1100] = "";
    int me = 0, np = 1, rc, mine, all = 0, bad_data = 0;
    MPI_Comm comm = MPI_COMM_WORLD;
    MPI_Info info = MPI_INFO_NULL;

    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    rc = parse_args(argc, argv, &a, me);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    MPI_Info_create(&info);
    MPI_Info_set(info, "stshard_metadata", a.metadata);
    if (a.xbuf) {
        char v[32];
        snprintf(v, sizeof v, "%llu", (unsigned long long)a.xbuf);
        MPI_Info_set(info, "stshard_exchange_buffer", v);
    }
    if (a.strided)
        MPI_Info_set(info, "stshard_strided_reads", a.strided);
    if (a.exchange)
        MPI_Info_set(info, "stshard_exchange", a.exchange);
    rc = sts_reader_open(comm, a.dir, info, &r, &d);
    if (rc != STS_OK) {
        snprintf(err, sizeof err, "%s", d.message);
        goto done;
    }
    mine = share_of(r, &a.so, me, np, &bl, &nb, err, sizeof err) == 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm);
    if (!all) {
        rc = STS_E_UNSUPPORTED;
        if (mine)
            snprintf(err, sizeof err, "another rank could not plan its share");
        goto done;
    }
    rc = run(comm, &a, r, bl, nb, &bad_data, err, sizeof err);
done:
    if (me == 0 && rc != STS_OK)
        cli_error("load", rc, "%s", err);
    free(bl);
    sts_reader_free(r);
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
    return rc == STS_OK && bad_data ? CLI_INVALID : sts_exit_status(rc);
}
