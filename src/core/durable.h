/*
 * durable.h -- file-system steps that survive a crash: directories created with their parents'
 * entries fsynced, directory fsync, a small file replaced atomically.
 *
 * POSIX makes a rename or a new directory entry durable only once its directory is fsynced; these
 * helpers do that every time so callers cannot forget. Errors name the path.
 */
#ifndef TC_CORE_DURABLE_H
#define TC_CORE_DURABLE_H

#include <stddef.h>

#include "core/error.h"

/* mkdir -p path (mode 0755); each directory it creates is made durable in its parent. */
tc_err tc_durable_mkdirs(const char *path, char *errstr, size_t errstr_size);

/* fsync the directory dir. */
tc_err tc_durable_sync_dir(const char *dir, char *errstr, size_t errstr_size);

/* Replace dir/name with text: written to dir/.name.tmp, fsynced, renamed, dir fsynced. A crash
 * leaves the old content or the new one, and at most the temporary file. */
tc_err tc_durable_replace(const char *dir, const char *name, const char *text, char *errstr,
                          size_t errstr_size);

#endif
