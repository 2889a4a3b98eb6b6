/*
 * scheduled.c -- a pass of a scheduled export; see scheduled.h.
 */
#include "export/scheduled.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "core/log.h"
#include "core/path.h"
#include "core/timeutil.h"

/* A manifest read back for its lake_digest: far below the export's manifest cap for a period,
 * but a period of a year of a big lake lists many files. */
#define TC_EXPORT_MANIFEST_READ_MAX ((size_t)64 << 20)

void tc_export_period_name(int64_t start_s, char out[32])
{
    struct tm tm;
    time_t t = (time_t)start_s;

    gmtime_r(&t, &tm);
    snprintf(out, 32, "%04d%02d%02dT%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min);
}

/* The lake_digest of dir/manifest.json into hex; 0 when there is none (no export, unreadable). */
static int tc_export_manifest_digest(const char *dir, char hex[65])
{
    char path[TC_PATH_MAX], err[128];
    struct stat st;
    char *buf;
    int fd, ok = 0;
    ssize_t n;

    tc_path_fmt(path, sizeof(path), "%s/manifest.json", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) != 0 || st.st_size <= 0 ||
        (size_t)st.st_size > TC_EXPORT_MANIFEST_READ_MAX || !(buf = malloc((size_t)st.st_size))) {
        close(fd);
        return 0;
    }
    n = read(fd, buf, (size_t)st.st_size);
    close(fd);
    if (n == st.st_size) {
        tc_json_doc *doc = tc_json_parse(buf, (size_t)n, NULL, NULL, err, sizeof(err));
        const char *d = doc ? tc_json_string(tc_json_get(tc_json_root(doc), "lake_digest")) : NULL;
        if (d && strlen(d) == 64) {
            memcpy(hex, d, 65);
            ok = 1;
        }
        tc_json_free(doc);
    }
    free(buf);
    return ok;
}

/* The options of sp for [start_s, end_s). */
static void tc_export_sched_options(const tc_export_sched_env *env, const tc_export_spec *sp,
                                    int64_t start_s, int64_t end_s, const char *dir,
                                    const char *period, tc_export_options *o)
{
    memset(o, 0, sizeof(*o));
    o->lake_dir = env->lake_dir;
    o->from_us = start_s * TC_USEC_PER_SEC;
    o->to_us = end_s * TC_USEC_PER_SEC;
    o->devices = sp->devices[0] ? sp->devices : NULL;
    o->ntags = sp->ntags;
    for (size_t t = 0; t < sp->ntags; t++) {
        o->tag_key[t] = sp->tag_key[t];
        o->tag_value[t] = sp->tag_value[t];
    }
    o->metrics = sp->metrics[0] ? sp->metrics : NULL;
    o->format = sp->format;
    o->compress = sp->compress;
    o->profile = sp->profile;
    o->mask = (tc_mask_level)tc_export_profile_level(sp->profile, env->viewer_level);
    o->personal_columns = env->personal_columns;
    o->personal_digits = env->personal_digits;
    o->out_dir = dir;
    o->schedule = sp->name;
    o->period = period;
}

int tc_export_sched_pass(const tc_export_sched_env *env, const tc_export_spec *sp, int64_t now_s,
                         tc_export_sched_stats *st, pthread_mutex_t *lock)
{
    int64_t ends[TC_EXPORT_LOOKBACK_MAX + 1];
    int nends = 0, failures = 0;
    int64_t t = now_s;

    /* The lookback latest runs at or before now, newest first; each ends a closed period. */
    while (nends < sp->lookback + 1 && tc_sched_prev(&sp->schedule, t, &ends[nends]) == TC_OK) {
        t = ends[nends] - 1;
        nends++;
    }
    /* Oldest first, so the latest period is exported last and last_period_end_us advances. */
    for (int i = nends - 2; i >= 0; i--) {
        int64_t start = ends[i + 1], end = ends[i];
        char name[32], dir[TC_PATH_MAX], period[96], ts[TC_TIME_RFC3339_MAX],
            te[TC_TIME_RFC3339_MAX], old[65], now_digest[65], errstr[1024];
        tc_export_options o;
        tc_export_result res;
        int had, late;
        tc_err err;

        tc_export_period_name(start, name);
        tc_path_fmt(dir, sizeof(dir), "%s/%s", sp->out, name);
        tc_time_format_rfc3339(start * TC_USEC_PER_SEC, ts, sizeof(ts));
        tc_time_format_rfc3339(end * TC_USEC_PER_SEC, te, sizeof(te));
        snprintf(period, sizeof(period), "%s/%s", ts, te);
        tc_export_sched_options(env, sp, start, end, dir, period, &o);
        had = tc_export_manifest_digest(dir, old);
        if (had) {
            if (tc_export_lake_digest(&o, now_digest, errstr, sizeof(errstr)) != TC_OK) {
                tc_log_error("export", "export %s period %s: reading the lake: %s", sp->name,
                             period, errstr);
                failures++;
                continue;
            }
            if (!strcmp(old, now_digest))
                continue; /* exported, and its lake files unchanged */
        }
        late = had;
        err = tc_export_run(&o, &res, errstr, sizeof(errstr));
        if (lock)
            pthread_mutex_lock(lock);
        if (st && err == TC_OK) {
            st->exports++;
            st->late_reexports += (uint64_t)late;
            st->rows += res.rows;
            st->last_success_us = tc_time_now_us();
            if (end * TC_USEC_PER_SEC > st->last_period_end_us)
                st->last_period_end_us = end * TC_USEC_PER_SEC;
        } else if (st) {
            st->failures++;
        }
        if (lock)
            pthread_mutex_unlock(lock);
        if (err != TC_OK) {
            tc_log_error("export", "export %s period %s failed (retried at the next pass): %s",
                         sp->name, period, errstr);
            failures++;
        } else {
            tc_log_info("export",
                        "export %s period %s%s: %llu rows in %llu files from %llu lake files "
                        "to %s",
                        sp->name, period, late ? " re-exported (its lake files changed)" : "",
                        (unsigned long long)res.rows, (unsigned long long)res.files,
                        (unsigned long long)res.lake_files, dir);
        }
    }
    return failures;
}
