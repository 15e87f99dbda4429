/*
 * path.h - file names and directories the writers and the consolidator need:
 * joining, the hidden names outputs are written under, mkdir -p, directory
 * fsync, renames and the free-space check.  Format layer (src/layer.h): plain
 * POSIX calls, no MPI; the rename with its fault-injection point stays in
 * mpiio.h (sts__mpiio_rename).
 */
#ifndef STS_PATH_H
#define STS_PATH_H

#include "internal.h"

/* Local.  "<dir>/<name>" as a malloc'd string, or NULL. */
char *sts__path_join(const char *dir, const char *name);

/* Local.  "<dir>/.<base><suffix>" for final_path "<dir>/<base>"; malloc'd or NULL. */
char *sts__path_hidden(const char *final_path, const char *suffix);

/*
 * Local.  The temporary name a final output path is written under:
 * "<dir>/.<base>.stshard-partial".  It is hidden and does not end in
 * ".safetensors", so it is never mistaken for output.  Returns a malloc'd
 * string or NULL.
 */
char *sts__path_tmp(const char *final_path);

/* Local.  mkdir -p; an existing directory is fine, an existing non-directory is STS_E_EXIST. */
int sts__path_mkdir_p(const char *path, sts_diag *diag);

/* Local.  fsync of a directory so renames inside it are durable. */
int sts__path_fsync_dir(const char *dir, sts_diag *diag);

/* Local.  rename(tmp, final); with the errno mapped and both names in the message. */
int sts__path_rename(const char *tmp, const char *final_path, sts_diag *diag);

/*
 * Local.  Checks, before anything is written, that the file system holding
 * dir (or its nearest existing ancestor) has need bytes free for an
 * unprivileged writer (statvfs f_bavail).  File systems that report no sizes
 * pass.  Errors: STS_E_NOSPACE naming dir, the bytes needed and the shortfall.
 */
int sts__path_check_space(const char *dir, uint64_t need, sts_diag *diag);

#endif /* STS_PATH_H */
