/*
 * ckptscan.c - lists a checkpoint directory once and says which form it
 * holds: an index checkpoint, a single model.safetensors, or rank files.
 * Every command that takes a checkpoint directory as input asks here, so no
 * two of them can judge the same directory differently.
 *
 * Entries are classified by name and stat() only; no file is opened, so an
 * entry that is not a regular file (a FIFO would block a reader) is refused
 * before anything reads it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckptscan.h"
#include "path.h"

#define SUFFIX ".safetensors"

static int has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int sts__ckptscan_is_rank_name(const char *name)
{
    static const char *const parts[] = {"shard-", "-model-", "-of-"};
    const char *p = name;
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(parts[i]), digits = 0;
        if (strncmp(p, parts[i], len) != 0)
            return 0;
        p += len;
        while (p[digits] >= '0' && p[digits] <= '9')
            digits++;
        /* Zero-padded to five digits; wider numbers are written in full (docs/format.md §3). */
        if (digits < 5)
            return 0;
        p += digits;
    }
    return strcmp(p, SUFFIX) == 0;
}

/* What a non-regular entry is, for the message; st is NULL when stat failed. */
static const char *entry_kind(const struct stat *st)
{
    if (!st)
        return "a dangling link";
    if (S_ISDIR(st->st_mode))
        return "a directory";
    if (S_ISFIFO(st->st_mode))
        return "a FIFO";
    if (S_ISSOCK(st->st_mode))
        return "a socket";
    return S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) ? "a device" : "not a regular file";
}

/* A checkpoint entry must be a regular file: skipping it would drop its data without a word. */
static int check_regular(const char *dir, const char *name, sts__ckptscan *s, sts_diag *diag)
{
    struct stat st;
    char *full = sts__path_join(dir, name);
    int found;
    if (!full)
        return sts__fail(diag, STS_E_NOMEM, "out of memory");
    found = stat(full, &st) == 0;
    if (found && S_ISREG(st.st_mode)) {
        free(full);
        return STS_OK;
    }
    s->culprit = full;
    return sts__fail(diag, STS_E_IO, "%s: is %s, not a regular file", full,
                     entry_kind(found ? &st : NULL));
}

static int add_name(sts__ckptscan *s, size_t *cap, const char *name)
{
    char **p = sts__grow(s->names, cap, s->n + 1, sizeof *p, 32);
    if (!p)
        return STS_E_NOMEM;
    s->names = p;
    s->names[s->n] = sts__strdup(name);
    return s->names[s->n++] ? STS_OK : STS_E_NOMEM;
}

/* Pass over the entries: hidden and unrelated ones are counted, the rest kept. */
static int list_entries(const char *dir, sts__ckptscan *s, int *has_index, sts_diag *diag)
{
    int rc = STS_OK;
    size_t cap = 0;
    struct dirent *e;
    DIR *d = opendir(dir);
    STS_GOTO_IF(!d, diag, sts__err_from_errno(errno), "%s: cannot list directory: %s", dir,
                strerror(errno));
    while ((e = readdir(d)) != NULL) {
        int is_index = strcmp(e->d_name, STS_INDEX_NAME) == 0;
        /* Hidden names are never checkpoint files: ours are ".<name>.stshard-partial"
         * (a write in progress) and ".<name>.stshard-old" (a replaced output). */
        if (e->d_name[0] == '.') {
            s->nhidden += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
            continue;
        }
        if (!is_index && !has_suffix(e->d_name, SUFFIX)) {
            s->nother++;
            continue;
        }
        STS_CHECK(check_regular(dir, e->d_name, s, diag));
        if (is_index)
            *has_index = 1;
        else
            STS_GOTO_IF(add_name(s, &cap, e->d_name) != STS_OK, diag, STS_E_NOMEM, "out of memory");
    }
    if (s->n > 1)
        qsort(s->names, s->n, sizeof *s->names, cmp_str);
done:
    if (d)
        closedir(d);
    return rc;
}

/* Both a Hugging Face checkpoint and rank files: no command may pick one silently. */
static int ambiguous(const char *dir, const sts__ckptscan *s, int has_index, sts_diag *diag)
{
    const char *first = NULL;
    size_t nrank = 0;
    for (size_t i = 0; i < s->n; i++)
        if (sts__ckptscan_is_rank_name(s->names[i]) && nrank++ == 0)
            first = s->names[i];
    if (nrank == 0)
        return STS_OK;
    return sts__fail(diag, STS_E_AMBIGUOUS_INPUT,
                     "%s: ambiguous checkpoint directory: holds both a Hugging Face checkpoint "
                     "(%s) and rank files (%s%s); move one of them elsewhere",
                     dir, has_index ? STS_INDEX_NAME : STS_SINGLE_NAME, first,
                     nrank > 1 ? " and more" : "");
}

static int has_name(const sts__ckptscan *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return 1;
    return 0;
}

int sts__ckptscan_dir(const char *dir, sts__ckptscan *s, sts_diag *diag)
{
    int rc = STS_OK, has_index = 0;
    memset(s, 0, sizeof *s);
    STS_CHECK(list_entries(dir, s, &has_index, diag));
    if (has_index)
        s->kind = STS_CKPT_INDEXED;
    else if (has_name(s, STS_SINGLE_NAME))
        s->kind = STS_CKPT_FILE;
    else
        s->kind = STS_CKPT_SHARDED;
    if (s->kind != STS_CKPT_SHARDED)
        STS_CHECK(ambiguous(dir, s, has_index, diag));
    STS_GOTO_IF(!has_index && s->n == 0, diag, STS_E_EMPTY_INPUT, "%s: no .safetensors files", dir);
done:
    return rc;
}

void sts__ckptscan_free(sts__ckptscan *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
    free(s->culprit);
    memset(s, 0, sizeof *s);
}

int sts_ckpt_scan(const char *dir, sts_ckpt_kind *kind, char ***names, size_t *n, sts_diag *diag)
{
    int rc;
    sts__ckptscan s;
    sts__diag_clear(diag);
    if (!dir || !kind || !names || !n)
        return sts__fail(diag, STS_E_ARG, "sts_ckpt_scan: NULL argument");
    *names = NULL;
    *n = 0;
    rc = sts__ckptscan_dir(dir, &s, diag);
    if (rc == STS_OK) {
        *kind = s.kind;
        *names = s.names;
        *n = s.n;
        s.names = NULL;
        s.n = 0;
    }
    sts__ckptscan_free(&s);
    return rc;
}

void sts_ckpt_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}
