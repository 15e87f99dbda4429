/*
 * path.c - file names and directories: joining, hidden temporary names,
 * mkdir -p, directory fsync, renames and the free-space check (path.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "path.h"

int sts__path_mkdir_p(const char *path, sts_diag *diag)
{
    int rc = STS_OK;
    struct stat sb;
    char *buf = sts__strdup(path);
    STS_GOTO_IF(!buf, diag, STS_E_NOMEM, "out of memory");
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            STS_GOTO_IF(1, diag, sts__err_from_errno(errno), "%s: cannot create directory: %s", buf,
                        strerror(errno));
        *p = c;
        if (c == '\0')
            break;
    }
    STS_GOTO_IF(stat(path, &sb) != 0, diag, sts__err_from_errno(errno), "%s: %s", path,
                strerror(errno));
    STS_GOTO_IF(!S_ISDIR(sb.st_mode), diag, STS_E_EXIST, "%s: exists and is not a directory", path);
done:
    free(buf);
    return rc;
}

int sts__path_fsync_dir(const char *dir, sts_diag *diag)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return sts__fail(diag, sts__err_from_errno(errno), "%s: cannot open directory: %s", dir,
                         strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        return sts__fail(diag, sts__err_from_errno(e), "%s: fsync failed: %s", dir, strerror(e));
    }
    close(fd);
    return STS_OK;
}

char *sts__path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s)
        return NULL;
    memcpy(s, dir, a);
    s[a] = '/';
    memcpy(s + a + 1, name, b + 1);
    return s;
}

char *sts__path_hidden(const char *final_path, const char *suffix)
{
    const char *slash = strrchr(final_path, '/');
    size_t dirlen = slash ? (size_t)(slash - final_path) + 1 : 0;
    const char *base = final_path + dirlen;
    size_t blen = strlen(base), slen = strlen(suffix);
    char *s = malloc(dirlen + 1 + blen + slen + 1);
    if (!s)
        return NULL;
    memcpy(s, final_path, dirlen);
    s[dirlen] = '.';
    memcpy(s + dirlen + 1, base, blen);
    memcpy(s + dirlen + 1 + blen, suffix, slen + 1);
    return s;
}

char *sts__path_tmp(const char *final_path)
{
    return sts__path_hidden(final_path, ".stshard-partial");
}

int sts__path_rename(const char *tmp, const char *final_path, sts_diag *diag)
{
    if (rename(tmp, final_path) != 0)
        return sts__fail(diag, sts__err_from_errno(errno), "rename %s -> %s: %s", tmp, final_path,
                         strerror(errno));
    return STS_OK;
}

int sts__path_check_space(const char *dir, uint64_t need, sts_diag *diag)
{
    struct statvfs sv;
    uint64_t avail;
    char *at = sts__strdup(dir);
    int rc = STS_OK;
    if (!at)
        return sts__fail(diag, STS_E_NOMEM, "out of memory");
    /* The directory may not exist yet: its nearest existing ancestor holds the file system. */
    while (statvfs(at, &sv) != 0) {
        char *slash = strrchr(at, '/');
        if (!slash || slash == at)
            goto done; /* nothing to ask: the write itself will report */
        *slash = '\0';
    }
    /* Some file systems (FUSE, some parallel ones) report no block counts: nothing to check. */
    if (sv.f_blocks == 0 || sv.f_frsize == 0)
        goto done;
    avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    if (avail < need)
        rc = sts__fail(diag, STS_E_NOSPACE,
                       "%s: not enough free space: %llu bytes needed, %llu available (%llu short)",
                       dir, (unsigned long long)need, (unsigned long long)avail,
                       (unsigned long long)(need - avail));
done:
    free(at);
    return rc;
}
