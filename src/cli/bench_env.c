/*
 * bench_env.c - what a benchmark report must say about where it ran: host,
 * nodes, date, the MPI library, the MPI-IO component and the hints in effect,
 * and the page-cache drops between phases.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

void bench_env_now(char *buf)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void bench_env_loadavg(double *out)
{
    FILE *f = fopen("/proc/loadavg", "r");
    out[0] = out[1] = out[2] = -1;
    if (!f)
        return;
    if (fscanf(f, "%lf %lf %lf", &out[0], &out[1], &out[2]) != 3)
        out[0] = out[1] = out[2] = -1;
    fclose(f);
}

void bench_env_free(bench_env *e)
{
    free(e->nodes);
    e->nodes = NULL;
}

/* Rank 0 gets the distinct processor names, comma-separated, and their count. */
static int gather_nodes(bench_run *r)
{
    char mine[MPI_MAX_PROCESSOR_NAME] = "";
    char *all = NULL;
    int len = 0, rc = STS_OK;
    MPI_Get_processor_name(mine, &len);
    if (r->me == 0)
        all = calloc((size_t)r->np, MPI_MAX_PROCESSOR_NAME);
    MPI_Gather(mine, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0,
               r->comm);
    if (r->me != 0)
        return STS_OK;
    r->env.nodes = calloc((size_t)r->np, MPI_MAX_PROCESSOR_NAME + 1);
    if (!all || !r->env.nodes) {
        rc = STS_E_NOMEM;
        goto done;
    }
    for (int i = 0; i < r->np; i++) {
        const char *name = all + (size_t)i * MPI_MAX_PROCESSOR_NAME;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(name, all + (size_t)j * MPI_MAX_PROCESSOR_NAME) == 0;
        if (seen)
            continue;
        if (r->env.nnodes++)
            strcat(r->env.nodes, ",");
        strcat(r->env.nodes, name);
    }
done:
    free(all);
    return rc;
}

/* An Open MPI control variable (MCA parameter) through the MPI tool interface. */
static int cvar_read(const char *name, char *sval, size_t slen, int *ival)
{
    int idx, verb, bind, scope, nl = 256, dl = 1024, count = 0, rc = -1;
    char nbuf[256], dbuf[1024];
    MPI_Datatype dt;
    MPI_T_enum en;
    MPI_T_cvar_handle h;
    if (MPI_T_cvar_get_index(name, &idx) != MPI_SUCCESS)
        return -1;
    if (MPI_T_cvar_get_info(idx, nbuf, &nl, &verb, &dt, &en, dbuf, &dl, &bind, &scope) !=
            MPI_SUCCESS ||
        bind != MPI_T_BIND_NO_OBJECT)
        return -1;
    if (MPI_T_cvar_handle_alloc(idx, NULL, &h, &count) != MPI_SUCCESS)
        return -1;
    if (dt == MPI_CHAR && sval && count > 0) {
        char *buf = calloc((size_t)count + 1, 1);
        if (buf && MPI_T_cvar_read(h, buf) == MPI_SUCCESS) {
            snprintf(sval, slen, "%s", buf);
            rc = 0;
        }
        free(buf);
    } else if (dt == MPI_INT && ival && count == 1) {
        rc = MPI_T_cvar_read(h, ival) == MPI_SUCCESS ? 0 : -1;
    }
    MPI_T_cvar_handle_free(&h);
    return rc;
}

/* Whether component c passes Open MPI's selection list sel ("a,b" or "^a,b"). */
static int selected(const char *sel, const char *c)
{
    int exclude = sel[0] == '^';
    const char *p = sel + exclude;
    size_t n = strlen(c);
    int listed = 0;
    if (!*sel)
        return 1;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, c, n) == 0)
            listed = 1;
        p += len + (p[len] == ',');
    }
    return exclude ? !listed : listed;
}

/* "io=romio321; priorities: romio321 10, ompio excluded" */
static void describe_selection(bench_env *e, const char *sel, const int *prio,
                               const char *const *comps)
{
    size_t len;
    snprintf(e->io_selection, sizeof e->io_selection,
             "%s%s; priorities:", *sel ? "io=" : "io unset, Open MPI's default", sel);
    for (int i = 0; i < 2; i++) {
        len = strlen(e->io_selection);
        if (prio[i] >= 0)
            snprintf(e->io_selection + len, sizeof e->io_selection - len, "%s %s %d", i ? "," : "",
                     comps[i], prio[i]);
        else
            snprintf(e->io_selection + len, sizeof e->io_selection - len, "%s %s %s", i ? "," : "",
                     comps[i], prio[i] == -1 ? "excluded" : "absent");
    }
}

/*
 * The io component Open MPI's framework picks: the highest priority among
 * the components its "io" variable allows.  A component may still change its
 * priority when it sees the file system at open time; that is not visible
 * from here, so the report says how the answer was reached.
 */
static void io_component(bench_env *e)
{
    static const char *const comps[] = {"ompio", "romio321"};
    char sel[128] = "";
    int prio[2] = {-1, -1}, best = -1, provided;
    snprintf(e->io_component, sizeof e->io_component, "unknown");
    snprintf(e->io_selection, sizeof e->io_selection, "no Open MPI io variables");
    if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS)
        return;
    if (cvar_read("io", sel, sizeof sel, NULL) == 0) {
        char name[64];
        for (int i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "io_%s_priority", comps[i]);
            if (cvar_read(name, NULL, 0, &prio[i]) != 0)
                prio[i] = -2; /* no such variable: not built into this Open MPI */
            else if (!selected(sel, comps[i]))
                prio[i] = -1;
            if (prio[i] >= 0 && (best < 0 || prio[i] > prio[best]))
                best = i;
        }
        if (best >= 0)
            snprintf(e->io_component, sizeof e->io_component, "%s", comps[best]);
        describe_selection(e, sel, prio, comps);
    }
    MPI_T_finalize();
}

static void mpi_library(bench_env *e)
{
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    v[0] = '\0';
    MPI_Get_library_version(v, &len);
    v[strcspn(v, "\n")] = '\0';
    snprintf(e->mpi_library, sizeof e->mpi_library, "%s", v);
}

/*
 * Opens a probe file in the work directory on every rank, with the hints the
 * library uses, and keeps what MPI_File_get_info reports.  It also proves
 * the directory is writable on every rank before anything is timed.
 */
static int probe_hints(bench_run *r, char *err, size_t errlen)
{
    MPI_Info hints = MPI_INFO_NULL, got = MPI_INFO_NULL;
    MPI_File fh = MPI_FILE_NULL;
    sts_diag d;
    char *path = NULL;
    int rc, n = 0;
    const char *env = getenv("STSHARD_MPI_HINTS");
    snprintf(r->env.hints_env, sizeof r->env.hints_env, "%s", env ? env : "");
    memset(&d, 0, sizeof d);
    rc = sts_mpiio_env_hints(&hints, &d);
    if (rc != STS_OK) {
        snprintf(err, errlen, "%s", d.message);
        goto done;
    }
    path = malloc(strlen(r->work) + 16);
    if (!path) {
        rc = STS_E_NOMEM;
        goto done;
    }
    sprintf(path, "%s/hints-probe", r->work);
    if (MPI_File_open(r->comm, path, MPI_MODE_CREATE | MPI_MODE_WRONLY | MPI_MODE_DELETE_ON_CLOSE,
                      hints, &fh) != MPI_SUCCESS) {
        snprintf(err, errlen, "%s: cannot create a file there with MPI-IO", r->work);
        rc = STS_E_IO;
        goto done;
    }
    if (MPI_File_get_info(fh, &got) == MPI_SUCCESS && MPI_Info_get_nkeys(got, &n) == MPI_SUCCESS) {
        for (int i = 0; i < n && r->env.nhints < BENCH_MAX_HINTS; i++) {
            int flag = 0, k = r->env.nhints;
            if (MPI_Info_get_nthkey(got, i, r->env.hint_key[k]) != MPI_SUCCESS)
                continue;
            MPI_Info_get(got, r->env.hint_key[k], (int)sizeof r->env.hint_val[k] - 1,
                         r->env.hint_val[k], &flag);
            r->env.nhints += flag;
        }
    }
    MPI_File_close(&fh);
done:
    if (got != MPI_INFO_NULL)
        MPI_Info_free(&got);
    if (hints != MPI_INFO_NULL)
        MPI_Info_free(&hints);
    free(path);
    return rc;
}

int bench_env_init(bench_run *r, char *err, size_t errlen)
{
    bench_env *e = &r->env;
    int rc, all = STS_OK;
    e->nranks = r->np;
    gethostname(e->host, sizeof e->host - 1);
    bench_env_now(e->began);
    bench_env_loadavg(e->load_began);
    mpi_library(e);
    io_component(e);
    rc = gather_nodes(r);
    if (rc == STS_OK)
        rc = probe_hints(r, err, errlen);
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, r->comm);
    if (all != STS_OK && rc == STS_OK)
        snprintf(err, errlen, "another rank could not set up the run");
    return all;
}

void bench_settle(bench_run *r)
{
    MPI_Comm node;
    int nme = 0, done = 0;
    uint64_t mine[2] = {0, 0}, sum[2] = {0, 0};
    char note[256] = "";
    /* One rank per node flushes (and drops) its node's cache; the others wait at
     * the reduction, so no rank starts the next operation before every node is done. */
    MPI_Comm_split_type(r->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &nme);
    if (nme == 0) {
        sync();
        if (r->a.drop_caches) {
            done = cli_drop_page_cache(note, sizeof note);
            mine[done ? 0 : 1] = 1;
        }
    }
    MPI_Comm_free(&node);
    MPI_Reduce(mine, sum, 2, MPI_UINT64_T, MPI_SUM, 0, r->comm);
    if (r->me == 0) {
        r->env.drops_done += sum[0];
        r->env.drops_skipped += sum[1];
        if (!done && r->a.drop_caches && !r->env.drop_note[0])
            snprintf(r->env.drop_note, sizeof r->env.drop_note, "%s", note);
        else if (sum[1] && !r->env.drop_note[0])
            snprintf(r->env.drop_note, sizeof r->env.drop_note, "not permitted on some node");
    }
}
