/*
 * sinks.c -- the sinks a build knows, by name, and the parsing of pipeline.sinks; see sink.h.
 *
 * A table rather than self-registration from each sink's file: what a build can run is written
 * in one place, and a sink added to the tree without an entry here is simply not reachable.
 */
#include "process/sink.h"

#include <stdio.h>
#include <string.h>

#include "features/sink_online.h"
#include "lake/sink_lake.h"
#include "process/sink_testfail.h"
#include "quality/sink.h"
#include "store/sink_rollup.h"
#include "store/sink_store.h"

static const struct tc_sink_entry {
    const char *name;
    tc_sink_new_fn make;
    int primary; /* made and driven by the pipeline itself (TC_SINK_PRIMARY), not by the set */
} tc_sink_table[] = {
    {"store", tc_sink_store_new, 1},     {"lake", tc_sink_lake_new, 0},
    {"rollups", tc_sink_rollup_new, 0},  {"testfail", tc_sink_testfail_new, 0},
    {"quality", tc_quality_sink_new, 0}, {"features", tc_feat_online_sink_new, 0},
};

#define TC_SINK_TABLE_N (sizeof(tc_sink_table) / sizeof(tc_sink_table[0]))

static const struct tc_sink_entry *tc_sink_entry_find(const char *name)
{
    for (size_t i = 0; i < TC_SINK_TABLE_N; i++) {
        if (!strcmp(tc_sink_table[i].name, name))
            return &tc_sink_table[i];
    }
    return NULL;
}

tc_sink_new_fn tc_sink_find(const char *name)
{
    const struct tc_sink_entry *e = tc_sink_entry_find(name);

    return e && !e->primary ? e->make : NULL;
}

tc_sink_new_fn tc_sink_find_primary(const char *list, char *name, size_t name_size)
{
    char names[TC_SINKS_MAX][TC_SINK_NAME_MAX], errstr[TC_ERRSTR_MAX];
    size_t n = 0;

    if (tc_sink_parse_list(list, names, &n, errstr, sizeof(errstr)) != TC_OK)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const struct tc_sink_entry *e = tc_sink_entry_find(names[i]);
        if (e && e->primary) {
            snprintf(name, name_size, "%s", e->name);
            return e->make;
        }
    }
    return NULL;
}

tc_err tc_sink_parse_list(const char *list, char (*names)[TC_SINK_NAME_MAX], size_t *n,
                          char *errstr, size_t errstr_size)
{
    const char *p = list ? list : "";

    *n = 0;
    while (*p) {
        size_t len;
        char name[TC_SINK_NAME_MAX];

        while (*p == ' ' || *p == ',')
            p++;
        len = strcspn(p, ", ");
        if (len == 0)
            break;
        if (len >= TC_SINK_NAME_MAX)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "pipeline.sinks: \"%.*s\" is not a sink (names are short)", (int)len,
                              p);
        memcpy(name, p, len);
        name[len] = '\0';
        p += len;
        if (!tc_sink_entry_find(name))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "pipeline.sinks: unknown sink \"%s\" (known: store, lake, rollups, "
                              "testfail, quality, features)",
                              name);
        for (size_t i = 0; i < *n; i++) {
            if (!strcmp(names[i], name))
                return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                  "pipeline.sinks: \"%s\" is listed twice", name);
        }
        if (*n == TC_SINKS_MAX)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "pipeline.sinks: more than %d sinks", TC_SINKS_MAX);
        snprintf(names[(*n)++], TC_SINK_NAME_MAX, "%s", name);
    }
    if (*n == 0)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "pipeline.sinks is empty: name at least one sink (store, lake, rollups)");
    return TC_OK;
}
