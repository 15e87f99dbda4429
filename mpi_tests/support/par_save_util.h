/*
 * par_save_util.h - file helpers shared by the sharded-save tests (header
 * only; every function is static).
 */
#ifndef STS_PAR_SAVE_UTIL_H
#define STS_PAR_SAVE_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

/* Reads len bytes at off of path into buf; 0 on success. */
static inline int su_pread(const char *path, uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    size_t got = 0;
    if (fd < 0)
        return -1;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return got == len ? 0 : -1;
}

/* Size of path, or -1. */
static inline long long su_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* Number of entries of dir whose name contains needle (all entries when NULL). */
static inline int su_count(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (!needle || strstr(e->d_name, needle))
            n++;
    }
    closedir(d);
    return n;
}

/* Removes the files (and empty directories) directly inside dir. */
static inline void su_clear_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0 && errno == EISDIR)
            rmdir(path);
    }
    closedir(d);
}

/* Collective over MPI_COMM_WORLD.  "BASE/NAME" in out, created and emptied by rank 0. */
static inline void su_subdir(char *out, size_t len, const char *base, const char *name)
{
    int me = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    snprintf(out, len, "%s/%s", base, name);
    if (me == 0) {
        mkdir(out, 0777);
        su_clear_dir(out);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

/* "DIR/shard-RRRRR-model-KKKKK-of-NNNNN.safetensors" for rank (0-based). */
static inline void su_rank_file(char *buf, size_t len, const char *dir, int rank, unsigned k,
                                unsigned n)
{
    snprintf(buf, len, "%s/shard-%05d-model-%05u-of-%05u.safetensors", dir, rank + 1, k, n);
}

#endif /* STS_PAR_SAVE_UTIL_H */
