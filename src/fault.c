/*
 * fault.c - fault injection for the reliability tests.  Compiled only when
 * the build sets STS_FAULT_INJECTION (CMake option of the same name, which
 * scripts/test.sh turns on); in any other build STS_FAULT() is the constant
 * STS_OK and this file is not part of the library.
 *
 * The environment variable STSHARD_FAULT holds one or more specs separated
 * by ';', each a comma-separated list of key=value:
 *
 *   point=NAME   the injection point (required); "NAME*" matches a prefix
 *   rank=N       only on MPI_COMM_WORLD rank N (default: every rank)
 *   hit=N        only the N-th time this process reaches the point
 *                (default: every time)
 *   action=A     fail (default): return the error `code`;
 *                kill: SIGKILL this process (a crash, as the OOM killer or a
 *                node failure would cause it);
 *                pause: wait for the file `wait` to exist, then carry on
 *   code=NAME    the error for fail, by symbolic name (IoError, NoSpace, ...)
 *                or alias (io, nospace, access, noent, mpi, nomem, internal);
 *                default IoError
 *   mark=PATH    create PATH when the point fires (tests wait for it)
 *   wait=PATH    for pause: the file whose creation resumes the run
 *
 * e.g. STSHARD_FAULT="point=write,rank=1,code=nospace" or
 *      STSHARD_FAULT="point=write,hit=3,action=kill".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "mpiio.h"

#define MAX_SPECS 8
#define MAX_TEXT  1024

/* A paused rank gives up waiting after this long, so a broken test cannot hang forever. */
#define PAUSE_LIMIT_S 600

typedef enum action { ACT_FAIL, ACT_KILL, ACT_PAUSE } action;

typedef struct spec {
    char point[128];
    int rank; /* -1: any */
    unsigned long hit;
    action act;
    int code;
    char mark[256], wait[256];
} spec;

/* Parsed specs and per-spec hit counters, kept while STSHARD_FAULT stays the same. */
static struct {
    char text[MAX_TEXT];
    spec specs[MAX_SPECS];
    unsigned long seen[MAX_SPECS];
    size_t n;
    int valid;
} cache;

static int code_from_name(const char *name)
{
    static const struct {
        const char *alias;
        int code;
    } aliases[] = {{"io", STS_E_IO},
                   {"nospace", STS_E_NOSPACE},
                   {"access", STS_E_ACCESS},
                   {"noent", STS_E_NOENT},
                   {"mpi", STS_E_MPI},
                   {"nomem", STS_E_NOMEM},
                   {"internal", STS_E_INTERNAL},
                   {"peer", STS_E_PEER}};
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        if (strcmp(name, aliases[i].alias) == 0)
            return aliases[i].code;
    }
    for (int c = STS_E_MIN_ + 1; c < 0; c++) {
        if (strcmp(name, sts_errname(c)) == 0)
            return c;
    }
    return STS_E_IO;
}

static void copy_value(char *dst, size_t len, const char *v)
{
    snprintf(dst, len, "%s", v);
}

/* Parses one "key=value,key=value" spec in place; returns 0 when it names no point. */
static int parse_spec(char *text, spec *s)
{
    char *save = NULL;
    memset(s, 0, sizeof *s);
    s->rank = -1;
    s->act = ACT_FAIL;
    s->code = STS_E_IO;
    for (char *kv = strtok_r(text, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *v = strchr(kv, '=');
        if (!v)
            continue;
        *v++ = '\0';
        if (strcmp(kv, "point") == 0 || strcmp(kv, "phase") == 0)
            copy_value(s->point, sizeof s->point, v);
        else if (strcmp(kv, "rank") == 0)
            s->rank = strcmp(v, "*") == 0 ? -1 : atoi(v);
        else if (strcmp(kv, "hit") == 0)
            s->hit = strtoul(v, NULL, 10);
        else if (strcmp(kv, "action") == 0)
            s->act = strcmp(v, "kill") == 0    ? ACT_KILL
                     : strcmp(v, "pause") == 0 ? ACT_PAUSE
                                               : ACT_FAIL;
        else if (strcmp(kv, "code") == 0)
            s->code = code_from_name(v);
        else if (strcmp(kv, "mark") == 0)
            copy_value(s->mark, sizeof s->mark, v);
        else if (strcmp(kv, "wait") == 0)
            copy_value(s->wait, sizeof s->wait, v);
    }
    return s->point[0] != '\0';
}

static void load(const char *env)
{
    char buf[MAX_TEXT], *save = NULL;
    if (cache.valid && strcmp(cache.text, env) == 0)
        return;
    memset(&cache, 0, sizeof cache);
    copy_value(cache.text, sizeof cache.text, env);
    copy_value(buf, sizeof buf, env);
    for (char *one = strtok_r(buf, ";", &save); one && cache.n < MAX_SPECS;
         one = strtok_r(NULL, ";", &save)) {
        if (parse_spec(one, &cache.specs[cache.n]))
            cache.n++;
    }
    cache.valid = 1;
}

static int matches(const char *pattern, const char *point)
{
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*')
        return strncmp(pattern, point, n - 1) == 0;
    return strcmp(pattern, point) == 0;
}

/* MPI_COMM_WORLD rank, or -1 outside MPI (a failing query matches no rank= spec). */
static int world_rank(void)
{
    int rc = STS_OK, init = 0, fin = 0, me = -1;
    STS_MPI_CALL(NULL, MPI_Initialized, (&init));
    STS_MPI_CALL(NULL, MPI_Finalized, (&fin));
    if (init && !fin)
        STS_MPI_CALL(NULL, MPI_Comm_rank, (MPI_COMM_WORLD, &me));
done:
    return rc == STS_OK ? me : -1;
}

static void touch(const char *path)
{
    FILE *f = path[0] ? fopen(path, "w") : NULL;
    if (f)
        fclose(f);
}

static void pause_until(const char *path)
{
    const struct timespec step = {0, 10 * 1000 * 1000};
    for (long i = 0; i < PAUSE_LIMIT_S * 100L; i++) {
        if (path[0] && access(path, F_OK) == 0)
            return;
        nanosleep(&step, NULL);
    }
}

int sts__fault_at(const char *point, sts_diag *diag)
{
    const char *env = getenv("STSHARD_FAULT");
    int me;
    if (!env || !*env)
        return STS_OK;
    load(env);
    me = world_rank();
    for (size_t i = 0; i < cache.n; i++) {
        const spec *s = &cache.specs[i];
        if (!matches(s->point, point) || (s->rank >= 0 && s->rank != me))
            continue;
        cache.seen[i]++;
        if (s->hit != 0 && cache.seen[i] != s->hit)
            continue;
        touch(s->mark);
        switch (s->act) {
        case ACT_KILL:
            fprintf(stderr, "stshard: fault injection: killing rank %d at '%s'\n", me, point);
            fflush(stderr);
            raise(SIGKILL);
            break;
        case ACT_PAUSE:
            pause_until(s->wait);
            break;
        case ACT_FAIL:
            return sts__fail(diag, s->code, "injected fault at '%s' on rank %d (STSHARD_FAULT)",
                             point, me);
        }
    }
    return STS_OK;
}
