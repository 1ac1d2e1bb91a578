/*
 * The disk_usage aggregate: the largest used fraction seen for each mount
 * point, and how many payloads were applied.
 *
 * This is plain C with no dependency on the component bindings, so that it
 * builds and is tested natively (test.c) as well as in the plugin
 * (disk_usage.c).
 *
 * State bytes are UTF-8 JSON, `{"v":1,"max":{"/":0.71},"count":1}`; the
 * rendering is the same object without `v`. Keys are written sorted by
 * their UTF-8 bytes (code point order).
 *
 * Every version of this plugin (C, JavaScript, Python, Rust) reads and
 * writes the same state, and refuses the same payloads with the same
 * reasons: a payload or a state is read as JSON first (a repeated key: the
 * last one counts), then checked, mount points in sorted order.
 */
#ifndef DISK_USAGE_AGGREGATE_H
#define DISK_USAGE_AGGREGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Version written as `v`, and the only one read. */
#define DU_STATE_VERSION 1

/* The largest count that every version of this plugin holds exactly (a
 * JavaScript number is a double): the count stops there. */
#define DU_MAX_COUNT 9007199254740991u /* 2^53 - 1 */

/* The deepest nesting of arrays and objects read, in a payload or a state. */
#define DU_MAX_DEPTH 128

/* Room for a rejection reason or a state error, terminating NUL included. */
#define DU_REASON_MAX 1024

/* One mount point and its largest fraction. */
typedef struct {
    char *mount; /* UTF-8, NUL-terminated, but may hold NUL bytes */
    size_t mount_len;
    double max;
    /* While a payload is read: whether its value was a number at all. */
    bool is_number;
} du_entry;

/*
 * Mount points in the order they were first seen, with an open-addressing
 * hash index over them.
 */
typedef struct {
    du_entry *entries;
    size_t len;
    size_t cap;
    uint32_t *slots; /* entry index + 1, or 0 for an empty slot */
    size_t slot_count; /* a power of two, at least twice the entries reserved */
} du_table;

typedef struct {
    du_table mounts;
    uint64_t count; /* payloads applied */
} du_aggregate;

/* An empty aggregate: the aggregate of no payloads. */
void du_init(du_aggregate *agg);

void du_free(du_aggregate *agg);

/*
 * Reads state bytes into `agg`, which must be freshly initialised. Empty
 * bytes are the empty aggregate. On failure, returns false, leaves `agg`
 * empty and writes why to `why`.
 */
bool du_read_state(du_aggregate *agg, const uint8_t *bytes, size_t len,
                   char why[DU_REASON_MAX]);

/*
 * Applies one payload, the JSON text of a `disk_usage` value. A payload is
 * applied whole or not at all: when it is refused, returns false, leaves
 * `agg` as it was and writes the reason to `reason`.
 */
bool du_apply(du_aggregate *agg, const char *text, size_t len,
              char reason[DU_REASON_MAX]);

/*
 * Writes the state bytes (`with_version`) or the rendering, into a new
 * allocation that the caller frees. Returns false when out of memory.
 */
bool du_write(const du_aggregate *agg, bool with_version, uint8_t **out,
              size_t *out_len);

#endif
