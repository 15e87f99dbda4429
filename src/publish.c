/*
 * publish.c - publishing a Hugging Face checkpoint (publish.h): the output
 * names, the checks before anything is written, the temporaries, and the
 * renames with the index last.  Nothing appears under a final name before
 * every file is complete, and with force a failed publish puts the earlier
 * checkpoint back.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "consolidate.h"
#include "mpiio.h"
#include "publish.h"

/* Every rank: the final and temporary path of each output file. */
static int make_names(sts__publish *o, sts_diag *diag)
{
    size_t n = o->plan->nfiles;
    o->final_paths = sts__calloc_array(n, sizeof *o->final_paths);
    o->tmp_paths = sts__calloc_array(n, sizeof *o->tmp_paths);
    if (!o->final_paths || !o->tmp_paths)
        return sts__fail(diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        o->final_paths[i] = sts__path_join(o->dir, o->plan->files[i].name);
        o->tmp_paths[i] = o->final_paths[i] ? sts__path_tmp(o->final_paths[i]) : NULL;
        if (!o->tmp_paths[i])
            return sts__fail(diag, STS_E_NOMEM, "out of memory");
    }
    return STS_OK;
}

/* Existing final names are an error unless force. */
static int check_existing(const sts__publish *o, sts_diag *diag)
{
    struct stat sb;
    char *index;
    int rc = STS_OK;
    if (o->force)
        return STS_OK;
    for (size_t i = 0; i < o->plan->nfiles; i++)
        if (lstat(o->final_paths[i], &sb) == 0)
            return sts__fail(diag, STS_E_EXIST, "%s already exists (force replaces it)",
                             o->final_paths[i]);
    index = sts__path_join(o->dir, "model.safetensors.index.json");
    if (!index)
        return sts__fail(diag, STS_E_NOMEM, "out of memory");
    if (lstat(index, &sb) == 0)
        rc = sts__fail(diag, STS_E_EXIST, "%s already exists (force replaces it)", index);
    free(index);
    return rc;
}

/* Every output file, headers included. */
static uint64_t output_bytes(const sts_plan *p)
{
    uint64_t n = 0;
    for (size_t i = 0; i < p->nfiles; i++)
        n += p->files[i].header_len + p->files[i].data_size;
    return n;
}

/* Rank 0: from success on, the temporaries are this rank's to remove on failure. */
static int prepare(sts__publish *o, sts_diag *diag)
{
    int rc = sts__path_mkdir_p(o->dir, diag);
    if (rc == STS_OK)
        rc = check_existing(o, diag);
    if (rc == STS_OK)
        rc = sts__path_check_space(o->dir, output_bytes(o->plan), diag);
    o->created = rc == STS_OK;
    return rc;
}

static void discard(sts__publish *o)
{
    if (!o->created || !o->tmp_paths)
        return;
    for (size_t i = 0; i < o->plan->nfiles; i++)
        if (o->tmp_paths[i])
            unlink(o->tmp_paths[i]);
    o->created = 0;
}

static void free_names(sts__publish *o)
{
    for (size_t i = 0; o->plan && o->final_paths && i < o->plan->nfiles; i++) {
        free(o->final_paths[i]);
        free(o->tmp_paths ? o->tmp_paths[i] : NULL);
    }
    free(o->final_paths);
    free(o->tmp_paths);
    o->final_paths = o->tmp_paths = NULL;
}

/* "model-KKKKK-of-NNNNN.safetensors" with at least five digits each. */
static int is_model_file(const char *n)
{
    size_t k = 0;
    if (strncmp(n, "model-", 6) != 0)
        return 0;
    n += 6;
    for (k = 0; n[k] >= '0' && n[k] <= '9'; k++)
        ;
    if (k < 5 || strncmp(n + k, "-of-", 4) != 0)
        return 0;
    n += k + 4;
    for (k = 0; n[k] >= '0' && n[k] <= '9'; k++)
        ;
    return k >= 5 && strcmp(n + k, ".safetensors") == 0;
}

/*
 * With force, after the new index is in place: removes model files of an
 * earlier run that the new index does not name (a run that split into more
 * files), so the directory holds one checkpoint.  Best effort.
 */
static void remove_stale_outputs(const sts__publish *o)
{
    DIR *d = opendir(o->dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        int ours = 0;
        char *path;
        if (!is_model_file(e->d_name))
            continue;
        for (size_t i = 0; i < o->plan->nfiles && !ours; i++)
            ours = strcmp(e->d_name, o->plan->files[i].name) == 0;
        if (ours || (path = sts__path_join(o->dir, e->d_name)) == NULL)
            continue;
        unlink(path);
        free(path);
    }
    closedir(d);
}

/*
 * With force, the output files and index an earlier run left under this
 * run's final names are first renamed aside (".<name>.stshard-old"), so a
 * failure while publishing can put them back instead of leaving neither
 * checkpoint.  Returns the number of paths moved, or a negative code.
 */
static int move_aside(char **from, char **aside, size_t n, sts_diag *diag)
{
    int rc = STS_OK;
    struct stat sb;
    for (size_t i = 0; i < n; i++) {
        /* A directory under a final name is not an earlier output: the rename
         * over it fails below and the run fails, as without force. */
        if (lstat(from[i], &sb) != 0 || S_ISDIR(sb.st_mode))
            continue;
        aside[i] = sts__path_hidden(from[i], ".stshard-old");
        STS_GOTO_IF(!aside[i], diag, STS_E_NOMEM, "out of memory");
        rc = sts__mpiio_rename(from[i], aside[i], diag);
        if (rc != STS_OK) {
            free(aside[i]);
            aside[i] = NULL;
            goto done;
        }
    }
done:
    return rc;
}

/* Puts back what move_aside moved (failure) or removes it (success). */
static void settle_aside(char **from, char **aside, size_t n, int restore)
{
    for (size_t i = 0; i < n; i++) {
        if (!aside[i])
            continue;
        if (restore)
            (void)rename(aside[i], from[i]);
        else
            unlink(aside[i]);
        free(aside[i]);
        aside[i] = NULL;
    }
}

/* Rank 0: the renames, the index last, the directory sync. */
static int publish(sts__publish *o, sts_diag *diag)
{
    int rc = STS_OK, wrote_index = 0;
    size_t n = o->plan->nfiles, done_n = 0;
    /* The final names this run takes: the model files, then the index. */
    char **from = sts__calloc_array(n + 1, sizeof *from);
    char **aside = sts__calloc_array(n + 1, sizeof *aside);
    STS_GOTO_IF(!from || !aside, diag, STS_E_NOMEM, "out of memory");
    memcpy(from, o->final_paths, n * sizeof *from);
    from[n] = sts__path_join(o->dir, "model.safetensors.index.json");
    STS_GOTO_IF(!from[n], diag, STS_E_NOMEM, "out of memory");
    if (o->force)
        STS_CHECK(move_aside(from, aside, n + 1, diag));
    for (; done_n < n; done_n++)
        STS_CHECK(sts__mpiio_rename(o->tmp_paths[done_n], o->final_paths[done_n], diag));
    STS_CHECK(sts__consolidate_index_write(o->plan, o->dir, o->fsync, diag));
    wrote_index = 1;
    STS_CHECK(sts__path_fsync_dir(o->dir, diag));
    if (o->force)
        remove_stale_outputs(o);
    o->created = 0;
done:
    if (rc != STS_OK) {
        /* Take back what this run published, so no partial set is left, and put the
         * earlier checkpoint back where it was. */
        for (size_t i = 0; i < done_n; i++)
            unlink(o->final_paths[i]);
        if (wrote_index)
            unlink(from[n]);
    }
    if (from && aside)
        settle_aside(from, aside, n + 1, rc != STS_OK);
    if (from)
        free(from[n]);
    free(from);
    free(aside);
    return rc;
}

/* Rank 0: creates output i fresh under its temporary name and writes its header. */
static int create_file(const sts__publish *o, size_t i, sts_diag *diag)
{
    int rc = STS_OK;
    const sts_plan_file *F = &o->plan->files[i];
    MPI_File fh = MPI_FILE_NULL;
    void *encoded = NULL;
    const void *header = F->header;
    if (!header) {
        /* A plan laid out without headers must come with the options to encode them. */
        STS_GOTO_IF(!o->encode, diag, STS_E_INTERNAL, "output %zu has no header to write", i);
        STS_CHECK(sts__plan_layout_header(o->plan, i, o->encode, &encoded, diag));
        header = encoded;
    }
    STS_CHECK(sts__mpiio_open_self(o->tmp_paths[i], 1, MPI_INFO_NULL, &fh, diag));
    rc = sts__mpiio_write_at(fh, 0, header, F->header_len, diag);
    if (rc == STS_OK && o->fsync && MPI_File_sync(fh) != MPI_SUCCESS)
        rc = sts__fail(diag, STS_E_IO, "MPI_File_sync failed");
    if (rc != STS_OK)
        sts__diag_prefix(diag, "%s", o->tmp_paths[i]);
done:
    if (fh != MPI_FILE_NULL) {
        int crc = sts__mpiio_close(&fh, diag);
        if (rc == STS_OK)
            rc = crc;
    }
    sts_free(encoded);
    return rc;
}

int sts__publish_open(sts__publish *o, int write_headers, sts_diag *diag)
{
    int rc = make_names(o, diag);
    if (rc == STS_OK && o->rank == 0) {
        rc = prepare(o, diag);
        for (size_t i = 0; write_headers && rc == STS_OK && i < o->plan->nfiles; i++)
            rc = create_file(o, i, diag);
    }
    return sts__mpiio_agree(o->comm, rc, diag);
}

int sts__publish_commit(sts__publish *o, sts_diag *diag)
{
    int rc = o->rank == 0 ? publish(o, diag) : STS_OK;
    return sts__mpiio_agree(o->comm, rc, diag);
}

void sts__publish_free(sts__publish *o)
{
    if (o->rank == 0)
        discard(o);
    free_names(o);
}
