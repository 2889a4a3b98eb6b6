/*
 * durable.c -- crash-safe directory creation, directory fsync and atomic small-file replacement;
 * see durable.h.
 */
#include "core/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/path.h"

tc_err tc_durable_sync_dir(const char *dir, char *errstr, size_t errstr_size)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc, saved;

    if (fd < 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not open directory \"%s\": %s",
                          dir, strerror(errno));
    rc = fsync(fd);
    saved = errno;
    close(fd);
    if (rc != 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not fsync directory \"%s\": %s",
                          dir, strerror(saved));
    return TC_OK;
}

tc_err tc_durable_mkdirs(const char *path, char *errstr, size_t errstr_size)
{
    char buf[TC_PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "bad directory path \"%.200s\"",
                          path);
    memcpy(buf, path, len + 1);
    /* Walk the components left to right; a new one is made durable by fsyncing its parent. */
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0755) == 0) {
            char *cut = strrchr(buf, '/');
            tc_err err;
            if (cut == buf) {
                err = tc_durable_sync_dir("/", errstr, errstr_size);
            } else if (cut) {
                *cut = '\0';
                err = tc_durable_sync_dir(buf, errstr, errstr_size);
                *cut = '/';
            } else {
                err = tc_durable_sync_dir(".", errstr, errstr_size);
            }
            if (err != TC_OK)
                return err;
        } else if (errno != EEXIST) {
            return tc_err_set(TC_ERR_IO, errstr, errstr_size,
                              "could not create directory \"%s\": %s", buf, strerror(errno));
        }
        if (i < len)
            buf[i] = '/';
    }
    return TC_OK;
}

tc_err tc_durable_replace(const char *dir, const char *name, const char *text, char *errstr,
                          size_t errstr_size)
{
    char tmp[TC_PATH_MAX], dest[TC_PATH_MAX];
    size_t len = strlen(text), done = 0;
    int fd;

    if (tc_path_fmt(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) < 0 ||
        tc_path_fmt(dest, sizeof(dest), "%s/%s", dir, name) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "path too long: %.200s/%s", dir,
                          name);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not create \"%s\": %s", tmp,
                          strerror(errno));
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    if (done < len || fsync(fd) != 0) {
        tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not write \"%s\": %s", tmp,
                   strerror(errno));
        close(fd);
        unlink(tmp);
        return TC_ERR_IO;
    }
    close(fd);
    if (rename(tmp, dest) != 0) {
        tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not rename \"%s\" to \"%s\": %s", tmp,
                   dest, strerror(errno));
        unlink(tmp);
        return TC_ERR_IO;
    }
    return tc_durable_sync_dir(dir, errstr, errstr_size);
}
