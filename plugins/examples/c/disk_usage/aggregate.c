/* The disk_usage aggregate: see aggregate.h. */
#include "aggregate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* ---- The mount table ------------------------------------------------- */

/* FNV-1a, 32 bits. */
static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static void table_free(du_table *t) {
    for (size_t i = 0; i < t->len; i++)
        free(t->entries[i].mount);
    free(t->entries);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* Index of the entry for `mount`, or SIZE_MAX when there is none. */
static size_t table_find(const du_table *t, const char *mount, size_t len) {
    if (t->slot_count == 0)
        return SIZE_MAX;
    size_t mask = t->slot_count - 1;
    for (size_t s = hash_bytes(mount, len) & mask;; s = (s + 1) & mask) {
        uint32_t slot = t->slots[s];
        if (slot == 0)
            return SIZE_MAX;
        const du_entry *e = &t->entries[slot - 1];
        if (e->mount_len == len && memcmp(e->mount, mount, len) == 0)
            return slot - 1;
    }
}

/* Puts entry `index` in the first free slot of its probe sequence. */
static void index_entry(uint32_t *slots, size_t slot_count, const du_entry *e,
                        size_t index) {
    size_t mask = slot_count - 1;
    size_t s = hash_bytes(e->mount, e->mount_len) & mask;
    while (slots[s] != 0)
        s = (s + 1) & mask;
    slots[s] = (uint32_t)(index + 1);
}

/*
 * Makes room for `n` entries, so that table_push cannot fail. On failure
 * the table is unchanged in content and still valid.
 */
static bool table_reserve(du_table *t, size_t n) {
    /* Keep counts well inside uint32_t and size_t arithmetic. */
    if (n > (UINT32_MAX >> 2) || n > SIZE_MAX / 4 / sizeof(du_entry))
        return false;
    if (n > t->cap) {
        size_t cap = t->cap < 8 ? 8 : t->cap;
        while (cap < n)
            cap *= 2;
        du_entry *entries = realloc(t->entries, cap * sizeof *entries);
        if (entries == NULL)
            return false;
        t->entries = entries;
        t->cap = cap;
    }
    if (t->slot_count / 2 < n) {
        size_t count = 16;
        while (count / 2 < n)
            count *= 2;
        uint32_t *slots = calloc(count, sizeof *slots);
        if (slots == NULL)
            return false;
        for (size_t i = 0; i < t->len; i++)
            index_entry(slots, count, &t->entries[i], i);
        free(t->slots);
        t->slots = slots;
        t->slot_count = count;
    }
    return true;
}

/* Adds an entry, taking ownership of `mount`; room must be reserved. */
static void table_push(du_table *t, char *mount, size_t len, double max) {
    du_entry *e = &t->entries[t->len];
    e->mount = mount;
    e->mount_len = len;
    e->max = max;
    e->is_number = true;
    index_entry(t->slots, t->slot_count, e, t->len);
    t->len++;
}

/* ---- Reasons --------------------------------------------------------- */

/* Names quoted in a reason are cut to this many characters (code points). */
#define QUOTE_MAX_CHARS 64
/* Room for a quoted name: each character escaped as \u00XX at worst, the
 * quotes, an ellipsis and the NUL. */
#define QUOTED_SIZE (QUOTE_MAX_CHARS * 6 + 8)

/*
 * Writes `name` (decoded JSON: UTF-8, with lone surrogates in their
 * three-byte form) as a JSON string, cut to QUOTE_MAX_CHARS characters and
 * an ellipsis, as the other versions of this plugin do: `"`, `\` and the
 * control characters escaped, a lone surrogate as `\udXXX`.
 */
static void quote_name(char out[QUOTED_SIZE], const char *name, size_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, chars = 0, i = 0;
    out[o++] = '"';
    for (; i < len && chars < QUOTE_MAX_CHARS; chars++) {
        uint8_t c = (uint8_t)name[i];
        size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (n > len - i)
            n = len - i;
        unsigned long cp = c;
        switch (c) {
        case '"': memcpy(out + o, "\\\"", 2); o += 2; break;
        case '\\': memcpy(out + o, "\\\\", 2); o += 2; break;
        case '\b': memcpy(out + o, "\\b", 2); o += 2; break;
        case '\f': memcpy(out + o, "\\f", 2); o += 2; break;
        case '\n': memcpy(out + o, "\\n", 2); o += 2; break;
        case '\r': memcpy(out + o, "\\r", 2); o += 2; break;
        case '\t': memcpy(out + o, "\\t", 2); o += 2; break;
        default:
            if (n == 3 && c == 0xED && (uint8_t)name[i + 1] >= 0xA0)
                cp = 0xD000 | ((unsigned long)(name[i + 1] & 0x3F) << 6) |
                     (unsigned long)(name[i + 2] & 0x3F);
            if (cp < 0x20 || (cp >= 0xD800 && cp <= 0xDFFF)) {
                out[o++] = '\\';
                out[o++] = 'u';
                for (int shift = 12; shift >= 0; shift -= 4)
                    out[o++] = hex[(cp >> shift) & 0xF];
            } else {
                memcpy(out + o, name + i, n);
                o += n;
            }
        }
        i += n;
    }
    if (i < len) {
        memcpy(out + o, "\xe2\x80\xa6", 3); /* U+2026 HORIZONTAL ELLIPSIS */
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* Writes the reason for text that could not be read, or out of memory. */
static void describe_status(char out[DU_REASON_MAX], json_status st) {
    snprintf(out, DU_REASON_MAX, "%s", st == JSON_NOMEM ? "out of memory" : "not valid json");
}

/* ---- Reading --------------------------------------------------------- */

/*
 * Reads the members of an object whose `{` was read, mount point to value,
 * into `t`: a number, or a note that the value was something else. A
 * repeated mount point keeps its last value. Values may nest `depth`
 * levels deep.
 */
static json_status read_mounts(json_reader *r, du_table *t, int depth) {
    json_status st;
    bool more;
    for (bool first = true;; first = false) {
        if ((st = json_object_next(r, first, &more)) != JSON_OK || !more)
            return st;
        char *mount = NULL;
        size_t len = 0;
        if ((st = json_string(r, &mount, &len)) != JSON_OK)
            return st;
        double value = 0;
        bool is_number = false;
        if ((st = json_expect(r, ':')) == JSON_OK) {
            is_number = json_peek(r) == JSON_T_NUMBER;
            st = is_number ? json_number(r, &value) : json_skip(r, depth);
        }
        if (st != JSON_OK) {
            free(mount);
            return st;
        }

        size_t at = table_find(t, mount, len);
        if (at == SIZE_MAX) {
            if (!table_reserve(t, t->len + 1)) {
                free(mount);
                return JSON_NOMEM;
            }
            table_push(t, mount, len, value);
            at = t->len - 1;
        } else {
            free(mount);
            t->entries[at].max = value;
        }
        t->entries[at].is_number = is_number;
    }
}

/* Orders two mount points by their bytes: code point order. */
static int compare_names(const char *a, size_t a_len, const char *b, size_t b_len) {
    int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
    if (c != 0)
        return c;
    return (a_len > b_len) - (a_len < b_len);
}

/* What can be wrong with a mount point and its value. */
typedef enum { FINE, NOT_UNICODE, NOT_A_NUMBER, NOT_FINITE, OUT_OF_RANGE } fault;

static fault entry_fault(const du_entry *e) {
    if (!json_well_formed(e->mount, e->mount_len))
        return NOT_UNICODE;
    if (!e->is_number)
        return NOT_A_NUMBER;
    if (!isfinite(e->max))
        return NOT_FINITE;
    if (!(e->max >= 0.0 && e->max <= 1.0))
        return OUT_OF_RANGE;
    return FINE;
}

/*
 * Checks the mount points read by read_mounts. Returns false, with the
 * reason, for the first one in sorted order whose value is not a fraction.
 */
static bool check_mounts(const du_table *t, char reason[DU_REASON_MAX]) {
    const du_entry *first = NULL;
    fault why = FINE;
    for (size_t i = 0; i < t->len; i++) {
        const du_entry *e = &t->entries[i];
        fault f = entry_fault(e);
        if (f != FINE && (first == NULL || compare_names(e->mount, e->mount_len, first->mount,
                                                         first->mount_len) < 0)) {
            first = e;
            why = f;
        }
    }
    if (first == NULL)
        return true;

    char quoted[QUOTED_SIZE];
    char number[JSON_DOUBLE_MAX];
    quote_name(quoted, first->mount, first->mount_len);
    switch (why) {
    case NOT_UNICODE:
        snprintf(reason, DU_REASON_MAX, "mount point is not valid unicode");
        break;
    case NOT_A_NUMBER:
        snprintf(reason, DU_REASON_MAX, "mount %s: not a number", quoted);
        break;
    case NOT_FINITE:
        snprintf(reason, DU_REASON_MAX, "mount %s: not a finite number", quoted);
        break;
    default:
        json_format_double(number, first->max);
        snprintf(reason, DU_REASON_MAX, "mount %s: %s is outside 0..=1", quoted, number);
    }
    return false;
}

/*
 * Reads a JSON text that must be an object, up to its `{`. Otherwise,
 * writes why: too deep, not JSON, or JSON but not an object.
 */
static bool open_object(json_reader *r, const void *text, size_t len,
                        char why[DU_REASON_MAX]) {
    if (json_too_deep(text, len, DU_MAX_DEPTH)) {
        snprintf(why, DU_REASON_MAX, "nested deeper than %d levels", DU_MAX_DEPTH);
        return false;
    }
    json_reader_init(r, text, len);
    if (json_peek(r) == JSON_T_OBJECT)
        return json_expect(r, '{') == JSON_OK;
    json_status st = json_skip(r, JSON_MAX_DEPTH);
    if (st == JSON_OK)
        st = json_end(r);
    if (st != JSON_OK)
        describe_status(why, st);
    else
        snprintf(why, DU_REASON_MAX, "not a json object");
    return false;
}

void du_init(du_aggregate *agg) { memset(agg, 0, sizeof *agg); }

void du_free(du_aggregate *agg) {
    table_free(&agg->mounts);
    agg->count = 0;
}

bool du_apply(du_aggregate *agg, const char *text, size_t len,
              char reason[DU_REASON_MAX]) {
    reason[0] = '\0';
    json_reader r;
    if (!open_object(&r, text, len, reason))
        return false;

    /* Read and check the payload on its own first, so that a refused one
     * changes nothing. */
    du_table seen = {0};
    json_status st = read_mounts(&r, &seen, JSON_MAX_DEPTH - 1);
    if (st == JSON_OK)
        st = json_end(&r);
    if (st != JSON_OK)
        describe_status(reason, st);
    else if (check_mounts(&seen, reason) &&
             !table_reserve(&agg->mounts, agg->mounts.len + seen.len))
        snprintf(reason, DU_REASON_MAX, "out of memory");
    if (reason[0] != '\0') {
        table_free(&seen);
        return false;
    }

    /* Merge: room is reserved, so nothing below can fail. */
    for (size_t i = 0; i < seen.len; i++) {
        du_entry *e = &seen.entries[i];
        /* Adding zero turns -0.0 into 0.0, so that zero is written one way. */
        double fraction = e->max + 0.0;
        size_t at = table_find(&agg->mounts, e->mount, e->mount_len);
        if (at == SIZE_MAX) {
            table_push(&agg->mounts, e->mount, e->mount_len, fraction);
        } else {
            du_entry *kept = &agg->mounts.entries[at];
            if (fraction > kept->max)
                kept->max = fraction;
            free(e->mount);
        }
        e->mount = NULL;
    }
    table_free(&seen);
    if (agg->count < DU_MAX_COUNT)
        agg->count++;
    return true;
}

/* What a state's member held, as read. */
typedef enum { ABSENT, NUMBER, OBJECT, OTHER } member_kind;

/* The members of a state object, in the order they are written. */
enum { FIELD_V, FIELD_MAX, FIELD_COUNT, FIELD_COUNT_OF };
static const char *const state_fields[FIELD_COUNT_OF] = {"v", "max", "count"};

/* Reads the state object; on failure, writes why to `why`. */
static bool read_state(du_aggregate *agg, const uint8_t *bytes, size_t len,
                       char why[DU_REASON_MAX]) {
    if (!json_utf8_valid(bytes, len)) {
        snprintf(why, DU_REASON_MAX, "not utf-8");
        return false;
    }
    json_reader r;
    if (!open_object(&r, bytes, len, why))
        return false;

    /* Read the whole object first; a repeated field: the last one counts. */
    member_kind kind[FIELD_COUNT_OF] = {ABSENT, ABSENT, ABSENT};
    double v = 0, count = 0;
    char *unknown = NULL; /* the first unknown field, in sorted order */
    size_t unknown_len = 0;
    json_status st;
    bool more;
    for (bool first = true;; first = false) {
        if ((st = json_object_next(&r, first, &more)) != JSON_OK || !more)
            break;
        char *name;
        size_t name_len;
        if ((st = json_string(&r, &name, &name_len)) != JSON_OK)
            break;
        int field = 0;
        while (field < FIELD_COUNT_OF &&
               compare_names(name, name_len, state_fields[field], strlen(state_fields[field])) != 0)
            field++;
        if (field < FIELD_COUNT_OF) {
            free(name);
        } else if (unknown == NULL || compare_names(name, name_len, unknown, unknown_len) < 0) {
            free(unknown);
            unknown = name;
            unknown_len = name_len;
        } else {
            free(name);
        }
        if ((st = json_expect(&r, ':')) != JSON_OK)
            break;

        json_type type = json_peek(&r);
        if (field == FIELD_MAX) {
            /* A repeated "max": only the last one counts. */
            table_free(&agg->mounts);
            if (type == JSON_T_OBJECT) {
                kind[field] = OBJECT;
                if ((st = json_expect(&r, '{')) != JSON_OK ||
                    (st = read_mounts(&r, &agg->mounts, JSON_MAX_DEPTH - 2)) != JSON_OK)
                    break;
                continue;
            }
        }
        if (field < FIELD_COUNT_OF)
            kind[field] = type == JSON_T_NUMBER ? NUMBER : OTHER;
        if (type == JSON_T_NUMBER && (field == FIELD_V || field == FIELD_COUNT))
            st = json_number(&r, field == FIELD_V ? &v : &count);
        else
            st = json_skip(&r, JSON_MAX_DEPTH - 1);
        if (st != JSON_OK)
            break;
    }
    if (st == JSON_OK)
        st = json_end(&r);
    if (st != JSON_OK) {
        describe_status(why, st);
        free(unknown);
        return false;
    }

    /* Then check it, in the order the other versions of this plugin do. */
    char quoted[QUOTED_SIZE];
    bool ok = false;
    if (kind[FIELD_V] == ABSENT) {
        snprintf(why, DU_REASON_MAX, "no \"v\" field");
    } else if (kind[FIELD_V] != NUMBER || v != DU_STATE_VERSION) {
        if (kind[FIELD_V] == NUMBER && isfinite(v) && floor(v) == v)
            snprintf(why, DU_REASON_MAX, "version %.0f is not supported", v + 0.0);
        else
            snprintf(why, DU_REASON_MAX, "\"v\" is not a version number");
    } else if (unknown != NULL) {
        quote_name(quoted, unknown, unknown_len);
        snprintf(why, DU_REASON_MAX, "unknown field %s", quoted);
    } else if (kind[FIELD_MAX] == ABSENT) {
        snprintf(why, DU_REASON_MAX, "no \"max\" field");
    } else if (kind[FIELD_MAX] != OBJECT) {
        snprintf(why, DU_REASON_MAX, "\"max\" is not an object");
    } else if (!check_mounts(&agg->mounts, why)) {
        /* `why` names the mount point */
    } else if (kind[FIELD_COUNT] == ABSENT) {
        snprintf(why, DU_REASON_MAX, "no \"count\" field");
    } else if (kind[FIELD_COUNT] != NUMBER || !(count >= 0 && count <= (double)DU_MAX_COUNT) ||
               floor(count) != count) {
        snprintf(why, DU_REASON_MAX, "\"count\" is not a whole number of payloads");
    } else {
        agg->count = (uint64_t)count;
        /* Adding zero turns -0.0 into 0.0, so that zero is written one way. */
        for (size_t i = 0; i < agg->mounts.len; i++)
            agg->mounts.entries[i].max += 0.0;
        ok = true;
    }
    free(unknown);
    return ok;
}

bool du_read_state(du_aggregate *agg, const uint8_t *bytes, size_t len,
                   char why[DU_REASON_MAX]) {
    why[0] = '\0';
    if (len == 0)
        return true;
    if (read_state(agg, bytes, len, why))
        return true;
    du_free(agg);
    return false;
}

/* ---- Writing --------------------------------------------------------- */

/* Orders entries by the bytes of their mount point. */
static int compare_entries(const void *a, const void *b) {
    const du_entry *x = *(const du_entry *const *)a;
    const du_entry *y = *(const du_entry *const *)b;
    return compare_names(x->mount, x->mount_len, y->mount, y->mount_len);
}

bool du_write(const du_aggregate *agg, bool with_version, uint8_t **out,
              size_t *out_len) {
    const du_table *t = &agg->mounts;
    const du_entry **sorted = NULL;
    if (t->len > 0) {
        if (t->len > SIZE_MAX / sizeof *sorted)
            return false;
        sorted = malloc(t->len * sizeof *sorted);
        if (sorted == NULL)
            return false;
        for (size_t i = 0; i < t->len; i++)
            sorted[i] = &t->entries[i];
        qsort(sorted, t->len, sizeof *sorted, compare_entries);
    }

    json_buf b = {0};
    if (with_version) {
        json_buf_str(&b, "{\"v\":");
        json_buf_u64(&b, DU_STATE_VERSION);
        json_buf_str(&b, ",\"max\":{");
    } else {
        json_buf_str(&b, "{\"max\":{");
    }
    for (size_t i = 0; i < t->len; i++) {
        if (i > 0)
            json_buf_bytes(&b, ",", 1);
        json_buf_string(&b, sorted[i]->mount, sorted[i]->mount_len);
        json_buf_bytes(&b, ":", 1);
        json_buf_double(&b, sorted[i]->max);
    }
    json_buf_str(&b, "},\"count\":");
    json_buf_u64(&b, agg->count);
    json_buf_bytes(&b, "}", 1);
    free(sorted);

    if (b.failed) {
        json_buf_free(&b);
        return false;
    }
    *out = b.data;
    *out_len = b.len;
    return true;
}
