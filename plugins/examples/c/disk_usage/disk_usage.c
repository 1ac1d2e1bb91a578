/*
 * disk_usage: an example sluice handler plugin, in C.
 *
 * Aggregates `disk_usage` payloads, JSON objects that map a mount point to
 * its used fraction (`{"/": 0.71, "/home": 0.42}`), into the largest
 * fraction seen for each mount point and the number of payloads applied.
 * It renders as `{"max":{"/":0.71,"/home":0.42},"count":1}`.
 *
 * This file is the glue between the component's `handler` exports (the C
 * bindings that `wit-bindgen c` generates from wit/plugin.wit, plugin.h)
 * and the aggregate itself (aggregate.c), which knows nothing of them.
 *
 * Ownership, as the generated bindings have it: each exported function
 * owns its arguments and frees them, with the generated `*_free` helpers.
 * What it returns is freed by the generated post-return functions, with
 * free(), once the host has copied it out: every returned string and list
 * that is not empty must come from malloc.
 */
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "plugin.h"

#define HANDLER_NAME "disk_usage"
#define HANDLER_VERSION "0.1.0"

/* Reason given for each payload of a batch of another type. */
#define UNSUPPORTED_TYPE "unsupported type"

/* Sets `out` to a new copy of `prefix` followed by `text`. */
static bool string_new(plugin_string_t *out, const char *prefix, const char *text) {
    size_t a = strlen(prefix), b = strlen(text);
    uint8_t *p = malloc(a + b + 1);
    if (p == NULL)
        return false;
    memcpy(p, prefix, a);
    memcpy(p + a, text, b + 1);
    out->ptr = p;
    out->len = a + b;
    return true;
}

/* Sets the error of a call and returns false, for `return fail(...)`. */
static bool fail(plugin_string_t *err, const char *prefix, const char *why) {
    /* Without even the few bytes of an error there is no way to answer:
     * trap, and the host retries on a fresh instance. */
    if (!string_new(err, prefix, why))
        abort();
    return false;
}

/* Number of payloads in a batch, whatever their type. */
static size_t batch_len(const sluice_plugin_types_batch_t *batch) {
    switch (batch->tag) {
    case SLUICE_PLUGIN_TYPES_BATCH_LOAD_AVG:
        return batch->val.load_avg.len;
    case SLUICE_PLUGIN_TYPES_BATCH_CPU_USAGE:
        return batch->val.cpu_usage.lengths.len;
    case SLUICE_PLUGIN_TYPES_BATCH_LAST_KERNEL_UPGRADE:
        return batch->val.last_kernel_upgrade.len;
    case SLUICE_PLUGIN_TYPES_BATCH_JSON:
        return batch->val.json.values.len;
    default:
        return 0;
    }
}

/* Whether a batch holds `disk_usage` payloads. */
static bool is_disk_usage(const sluice_plugin_types_batch_t *batch) {
    if (batch->tag != SLUICE_PLUGIN_TYPES_BATCH_JSON)
        return false;
    const plugin_string_t *kind = &batch->val.json.kind;
    return kind->len == strlen(HANDLER_NAME) &&
           memcmp(kind->ptr, HANDLER_NAME, kind->len) == 0;
}

void exports_sluice_plugin_handler_metadata(
    exports_sluice_plugin_handler_handler_metadata_t *ret) {
    /* Called once, on a fresh instance: running out of memory here is a
     * broken plugin, and plugin_string_dup traps on it too. */
    plugin_string_t *types = malloc(sizeof *types);
    if (types == NULL)
        abort();
    plugin_string_dup(&types[0], HANDLER_NAME);
    plugin_string_dup(&ret->name, HANDLER_NAME);
    plugin_string_dup(&ret->version, HANDLER_VERSION);
    ret->types.ptr = types;
    ret->types.len = 1;
}

bool exports_sluice_plugin_handler_apply(plugin_list_u8_t *state,
                                         exports_sluice_plugin_handler_batch_t *batch,
                                         exports_sluice_plugin_handler_applied_t *ret,
                                         plugin_string_t *err) {
    du_aggregate agg;
    du_init(&agg);
    char why[DU_REASON_MAX];
    bool readable = du_read_state(&agg, state->ptr, state->len, why);
    plugin_list_u8_free(state);
    if (!readable) {
        exports_sluice_plugin_handler_batch_free(batch);
        return fail(err, "cannot read state: ", why);
    }

    /* At most one rejection per payload. */
    bool ours = is_disk_usage(batch);
    size_t n = batch_len(batch);
    sluice_plugin_types_rejection_t *rejected = NULL;
    size_t rejected_len = 0;
    if (n > 0) {
        if (n > SIZE_MAX / sizeof *rejected ||
            (rejected = malloc(n * sizeof *rejected)) == NULL)
            goto out_of_memory;
    }

    for (size_t i = 0; i < n; i++) {
        char reason[DU_REASON_MAX];
        if (!ours) {
            strcpy(reason, UNSUPPORTED_TYPE);
        } else {
            const plugin_string_t *value = &batch->val.json.values.ptr[i];
            if (du_apply(&agg, (const char *)value->ptr, value->len, reason))
                continue;
        }
        if (!string_new(&rejected[rejected_len].reason, "", reason))
            goto out_of_memory;
        rejected[rejected_len].index = (uint32_t)i;
        rejected_len++;
    }

    uint8_t *bytes;
    size_t bytes_len;
    if (!du_write(&agg, true, &bytes, &bytes_len))
        goto out_of_memory;
    du_free(&agg);
    exports_sluice_plugin_handler_batch_free(batch);

    ret->state.ptr = bytes;
    ret->state.len = bytes_len;
    if (rejected_len == 0) {
        /* An empty list is not freed after the call: free it now. */
        free(rejected);
        rejected = NULL;
    }
    ret->rejected.ptr = rejected;
    ret->rejected.len = rejected_len;
    return true;

out_of_memory:
    /* Nothing was returned, so the host keeps the state it had. */
    for (size_t i = 0; i < rejected_len; i++)
        sluice_plugin_types_rejection_free(&rejected[i]);
    free(rejected);
    du_free(&agg);
    exports_sluice_plugin_handler_batch_free(batch);
    return fail(err, "out of memory", "");
}

bool exports_sluice_plugin_handler_render(plugin_list_u8_t *state,
                                          plugin_string_t *ret,
                                          plugin_string_t *err) {
    du_aggregate agg;
    du_init(&agg);
    char why[DU_REASON_MAX];
    bool readable = du_read_state(&agg, state->ptr, state->len, why);
    plugin_list_u8_free(state);
    if (!readable)
        return fail(err, "cannot read state: ", why);

    uint8_t *text;
    size_t len;
    bool written = du_write(&agg, false, &text, &len);
    du_free(&agg);
    if (!written)
        return fail(err, "out of memory", "");
    ret->ptr = text;
    ret->len = len;
    return true;
}
