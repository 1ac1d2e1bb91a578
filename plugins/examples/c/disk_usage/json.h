/*
 * A small, strict JSON reader (RFC 8259) and the few writers the plugin
 * needs.
 *
 * The reader is a cursor over a byte buffer that need not be
 * NUL-terminated. It never reads past the end of the buffer, never recurses
 * deeper than JSON_MAX_DEPTH, and reports allocation failure as a status of
 * its own rather than aborting. Strings are checked to be valid UTF-8 and
 * decoded, escapes included, with `\uXXXX` surrogate pairs joined.
 *
 * JSON may spell a lone surrogate (`"\ud800"`), which no UTF-8 text holds.
 * Like the JSON readers of JavaScript and Python, the reader accepts it; a
 * decoded string keeps it in the three-byte form UTF-8 would give it
 * (WTF-8), and json_well_formed() tells whether a string holds one.
 *
 * The writers append to a growing buffer. A failed allocation is remembered
 * in the buffer and every later write is ignored, so that a caller checks
 * once, at the end.
 */
#ifndef DISK_USAGE_JSON_H
#define DISK_USAGE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of arrays and objects the reader accepts. */
#define JSON_MAX_DEPTH 128

typedef enum {
    JSON_OK = 0,
    /* The text is not JSON; the reader's `error` and `error_at` say why. */
    JSON_SYNTAX,
    /* An allocation failed. */
    JSON_NOMEM,
} json_status;

/* What the next value is, judged from its first byte. */
typedef enum {
    JSON_T_NONE,    /* end of input, or a byte no value starts with */
    JSON_T_OBJECT,
    JSON_T_ARRAY,
    JSON_T_STRING,
    JSON_T_NUMBER,
    JSON_T_LITERAL, /* true, false or null */
} json_type;

typedef struct {
    const uint8_t *start;
    const uint8_t *p;
    const uint8_t *end;
    /* Set with JSON_SYNTAX: what was wrong (a static string) and where. */
    const char *error;
    size_t error_at;
} json_reader;

void json_reader_init(json_reader *r, const void *data, size_t len);

/* Skips whitespace and tells what the next value is, without reading it. */
json_type json_peek(json_reader *r);

/* Skips whitespace and reads the byte `c` (`{`, `:`, ...). */
json_status json_expect(json_reader *r, char c);

/*
 * Steps through the members of an object whose `{` was read: reads the
 * `,` or `}` that follows a member (none before the first) and sets
 * `*more` to whether a member follows. `first` is true before the first
 * member only.
 */
json_status json_object_next(json_reader *r, bool first, bool *more);

/*
 * Reads a string. With `out`, stores its decoded bytes in a new allocation
 * that the caller frees (NUL-terminated for convenience, but a string may
 * itself hold NUL bytes: use `*len`). With `out` NULL, only checks it.
 */
json_status json_string(json_reader *r, char **out, size_t *len);

/* Reads a number: its value, an infinity when it overflows a double. */
json_status json_number(json_reader *r, double *value);

/* Whether `data` is valid UTF-8. */
bool json_utf8_valid(const void *data, size_t len);

/* Whether a decoded string holds only Unicode scalar values: no lone
 * surrogate. */
bool json_well_formed(const char *s, size_t len);

/*
 * Whether the brackets and braces of a JSON text nest deeper than
 * `max_depth`, counted as the other versions of this plugin count them
 * before they parse: a backslash hides the byte after it, brackets between
 * a pair of quotes do not count, and those after an unclosed quote do.
 * For JSON text this is its nesting; for other text it decides whether
 * "too deep" or "not JSON" is the reason given.
 */
bool json_too_deep(const void *data, size_t len, int max_depth);

/* Reads and checks any value, which is allowed `depth` more levels. */
json_status json_skip(json_reader *r, int depth);

/* Checks that only whitespace is left. */
json_status json_end(json_reader *r);

/* A growing output buffer. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed: the contents are incomplete */
} json_buf;

void json_buf_bytes(json_buf *b, const void *bytes, size_t len);
void json_buf_str(json_buf *b, const char *s);
/* Appends `bytes` (valid UTF-8) as a JSON string, quoted and escaped. */
void json_buf_string(json_buf *b, const char *bytes, size_t len);
/* Appends a JSON number; see json_format_double. */
void json_buf_double(json_buf *b, double value);
void json_buf_u64(json_buf *b, uint64_t value);
void json_buf_free(json_buf *b);

/* Room json_format_double needs, terminating NUL included. */
#define JSON_DOUBLE_MAX 400

/*
 * Formats `value` as the shortest decimal that reads back as the same
 * double, without an exponent, and with a fractional part even when it is
 * integral (`1.0`, `0.00001`, `0.71`); `null` when it is not finite.
 * Returns the length written to `out`, which holds JSON_DOUBLE_MAX bytes.
 */
size_t json_format_double(char out[JSON_DOUBLE_MAX], double value);

#endif
