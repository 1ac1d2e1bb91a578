/* A small, strict JSON reader and writer: see json.h. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Reader ---------------------------------------------------------- */

void json_reader_init(json_reader *r, const void *data, size_t len) {
    r->start = data;
    r->p = r->start;
    r->end = r->start + len;
    r->error = NULL;
    r->error_at = 0;
}

/* Records a syntax error at `at`, unless one was recorded already. */
static json_status fail_at(json_reader *r, const uint8_t *at, const char *what) {
    if (r->error == NULL) {
        r->error = what;
        r->error_at = (size_t)(at - r->start);
    }
    return JSON_SYNTAX;
}

static json_status fail(json_reader *r, const char *what) {
    return fail_at(r, r->p, r->p < r->end ? what : "unexpected end of input");
}

static void skip_ws(json_reader *r) {
    while (r->p < r->end &&
           (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

json_type json_peek(json_reader *r) {
    skip_ws(r);
    if (r->p == r->end)
        return JSON_T_NONE;
    switch (*r->p) {
    case '{': return JSON_T_OBJECT;
    case '[': return JSON_T_ARRAY;
    case '"': return JSON_T_STRING;
    case 't': case 'f': case 'n': return JSON_T_LITERAL;
    case '-': return JSON_T_NUMBER;
    default: return *r->p >= '0' && *r->p <= '9' ? JSON_T_NUMBER : JSON_T_NONE;
    }
}

json_status json_expect(json_reader *r, char c) {
    static const char *const messages[] = {"expected '{'", "expected '['",
                                           "expected ':'", "unexpected character"};
    skip_ws(r);
    if (r->p < r->end && *r->p == (uint8_t)c) {
        r->p++;
        return JSON_OK;
    }
    return fail(r, messages[c == '{' ? 0 : c == '[' ? 1 : c == ':' ? 2 : 3]);
}

json_status json_object_next(json_reader *r, bool first, bool *more) {
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        *more = false;
        return JSON_OK;
    }
    if (!first) {
        if (r->p == r->end || *r->p != ',')
            return fail(r, "expected ',' or '}'");
        r->p++;
    }
    *more = true;
    return JSON_OK;
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads the four hex digits of a `\u` escape at `p` (within `end`). */
static long read_hex4(const uint8_t *p, const uint8_t *end) {
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Appends code point `cp` (at most U+10FFFF) as UTF-8, or a surrogate in
 * the same three-byte form. */
static uint8_t *put_utf8(uint8_t *o, unsigned long cp) {
    if (cp < 0x80) {
        *o++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *o++ = (uint8_t)(0xC0 | (cp >> 6));
        *o++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (uint8_t)(0xE0 | (cp >> 12));
        *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (uint8_t)(0xF0 | (cp >> 18));
        *o++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (uint8_t)(0x80 | (cp & 0x3F));
    }
    return o;
}

/*
 * Length of the well-formed UTF-8 sequence at `p` that starts with a byte
 * of 0x80 or more, or 0 when it is not one (overlong forms, surrogates and
 * code points past U+10FFFF included).
 */
static size_t utf8_sequence(const uint8_t *p, const uint8_t *end) {
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        n = 2;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        if (p[0] == 0xE0) lo = 0xA0;
        if (p[0] == 0xED) hi = 0x9F;
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        if (p[0] == 0xF0) lo = 0x90;
        if (p[0] == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

bool json_utf8_valid(const void *data, size_t len) {
    const uint8_t *p = data, *end = p + len;
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t n = utf8_sequence(p, end);
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

bool json_well_formed(const char *s, size_t len) {
    /* Only a surrogate is written ED A0..ED BF: valid UTF-8 has none. */
    for (size_t i = 0; i + 1 < len; i++)
        if ((uint8_t)s[i] == 0xED && (uint8_t)s[i + 1] >= 0xA0)
            return false;
    return true;
}

/*
 * Counts the nesting of brackets in `s[from..len)`, outside strings when
 * `strings` is set, from `*depth`; returns true when it goes past `max`.
 * `*quote` is set to where the last unclosed string began.
 */
static bool scan_depth(const uint8_t *s, size_t from, size_t len, bool strings,
                       long *depth, long max, size_t *quote, long *depth_at_quote,
                       bool *in_string) {
    for (size_t i = from; i < len; i++) {
        uint8_t c = s[i];
        if (c == '\\') {
            i++; /* a backslash and the byte after it count for nothing */
        } else if (c == '"' && strings) {
            *in_string = !*in_string;
            if (*in_string) {
                *quote = i;
                *depth_at_quote = *depth;
            }
        } else if (!*in_string) {
            if (c == '[' || c == '{') {
                if (++*depth > max)
                    return true;
            } else if (c == ']' || c == '}') {
                --*depth;
            }
        }
    }
    return false;
}

bool json_too_deep(const void *data, size_t len, int max_depth) {
    const uint8_t *s = data;
    long depth = 0, depth_at_quote = 0;
    size_t quote = 0;
    bool in_string = false;
    if (scan_depth(s, 0, len, true, &depth, max_depth, &quote, &depth_at_quote, &in_string))
        return true;
    if (!in_string)
        return false;
    /* An unclosed string is no string: count the brackets after its quote. */
    in_string = false;
    depth = depth_at_quote;
    return scan_depth(s, quote + 1, len, false, &depth, max_depth, &quote,
                      &depth_at_quote, &in_string);
}

json_status json_string(json_reader *r, char **out, size_t *len) {
    skip_ws(r);
    if (r->p == r->end || *r->p != '"')
        return fail(r, "expected a string");
    const uint8_t *s = ++r->p;

    /* Find the closing quote. The decoded string is never longer than its
     * text, so this also bounds the allocation. */
    const uint8_t *q = s;
    while (q < r->end && *q != '"')
        q += (*q == '\\' && r->end - q >= 2) ? 2 : 1;
    if (q == r->end)
        return fail_at(r, r->end, "unexpected end of input");

    uint8_t *buf = NULL, *o = NULL;
    if (out != NULL) {
        buf = malloc((size_t)(q - s) + 1);
        if (buf == NULL)
            return JSON_NOMEM;
        o = buf;
    }

    const uint8_t *p = s;
    while (p < q) {
        uint8_t c = *p;
        if (c < 0x20) {
            free(buf);
            return fail_at(r, p, "control character in string");
        }
        if (c >= 0x80) {
            size_t n = utf8_sequence(p, q);
            if (n == 0) {
                free(buf);
                return fail_at(r, p, "invalid utf-8");
            }
            if (o != NULL) {
                memcpy(o, p, n);
                o += n;
            }
            p += n;
            continue;
        }
        if (c != '\\') {
            if (o != NULL)
                *o++ = c;
            p++;
            continue;
        }
        /* An escape: `q` lies past the byte after the backslash. */
        const uint8_t *at = p;
        uint8_t e = p[1];
        p += 2;
        unsigned long cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            long u = read_hex4(p, q);
            if (u < 0) {
                free(buf);
                return fail_at(r, at, "invalid \\u escape");
            }
            p += 4;
            cp = (unsigned long)u;
            /* A high surrogate and a low one make one code point; a lone
             * surrogate is kept as it is (see json.h). */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo = (q - p >= 6 && p[0] == '\\' && p[1] == 'u')
                              ? read_hex4(p + 2, q) : -1;
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
                }
            }
            break;
        }
        default:
            free(buf);
            return fail_at(r, at, "invalid escape");
        }
        if (o != NULL)
            o = put_utf8(o, cp);
    }
    r->p = q + 1;
    if (out != NULL) {
        *o = '\0';
        *out = (char *)buf;
        *len = (size_t)(o - buf);
    }
    return JSON_OK;
}

static const uint8_t *skip_digits(const uint8_t *p, const uint8_t *end) {
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p;
}

json_status json_number(json_reader *r, double *value) {
    skip_ws(r);
    const uint8_t *s = r->p, *p = s, *end = r->end;

    /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (p < end && *p >= '1' && *p <= '9')
        p = skip_digits(p, end);
    else
        return fail_at(r, p, p < end ? "invalid number" : "unexpected end of input");
    if (p < end && *p == '.') {
        const uint8_t *d = ++p;
        p = skip_digits(p, end);
        if (p == d)
            return fail_at(r, p, p < end ? "invalid number" : "unexpected end of input");
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const uint8_t *d = p;
        p = skip_digits(p, end);
        if (p == d)
            return fail_at(r, p, p < end ? "invalid number" : "unexpected end of input");
    }

    /* strtod wants a NUL-terminated string: copy the text, which is known
     * to be a valid number, onto the stack when it is short. */
    size_t n = (size_t)(p - s);
    char small[64];
    char *copy = n < sizeof small ? small : malloc(n + 1);
    if (copy == NULL)
        return JSON_NOMEM;
    memcpy(copy, s, n);
    copy[n] = '\0';
    *value = strtod(copy, NULL);
    if (copy != small)
        free(copy);

    r->p = p;
    return JSON_OK;
}

static json_status skip_literal(json_reader *r) {
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(r->end - r->p) >= n && memcmp(r->p, words[i], n) == 0) {
            r->p += n;
            return JSON_OK;
        }
    }
    return fail(r, "unexpected character");
}

json_status json_skip(json_reader *r, int depth) {
    json_status st;
    double ignored;
    bool more;
    switch (json_peek(r)) {
    case JSON_T_STRING:
        return json_string(r, NULL, NULL);
    case JSON_T_NUMBER:
        return json_number(r, &ignored);
    case JSON_T_LITERAL:
        return skip_literal(r);
    case JSON_T_OBJECT:
        if (depth <= 0)
            return fail(r, "nested too deep");
        r->p++;
        for (bool first = true;; first = false) {
            if ((st = json_object_next(r, first, &more)) != JSON_OK || !more)
                return st;
            if ((st = json_string(r, NULL, NULL)) != JSON_OK ||
                (st = json_expect(r, ':')) != JSON_OK ||
                (st = json_skip(r, depth - 1)) != JSON_OK)
                return st;
        }
    case JSON_T_ARRAY:
        if (depth <= 0)
            return fail(r, "nested too deep");
        r->p++;
        for (bool first = true;; first = false) {
            skip_ws(r);
            if (r->p < r->end && *r->p == ']') {
                r->p++;
                return JSON_OK;
            }
            if (!first) {
                if (r->p == r->end || *r->p != ',')
                    return fail(r, "expected ',' or ']'");
                r->p++;
            }
            if ((st = json_skip(r, depth - 1)) != JSON_OK)
                return st;
        }
    case JSON_T_NONE:
    default:
        return fail(r, "unexpected character");
    }
}

json_status json_end(json_reader *r) {
    skip_ws(r);
    return r->p == r->end ? JSON_OK : fail(r, "trailing characters");
}

/* ---- Writers --------------------------------------------------------- */

void json_buf_bytes(json_buf *b, const void *bytes, size_t len) {
    if (b->failed || len == 0)
        return;
    if (len > b->cap - b->len) {
        if (len > SIZE_MAX / 2 - b->len) {
            b->failed = true;
            return;
        }
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < len)
            cap *= 2;
        uint8_t *data = realloc(b->data, cap);
        if (data == NULL) {
            b->failed = true;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, len);
    b->len += len;
}

void json_buf_str(json_buf *b, const char *s) { json_buf_bytes(b, s, strlen(s)); }

void json_buf_string(json_buf *b, const char *bytes, size_t len) {
    static const char hex[] = "0123456789abcdef";
    json_buf_bytes(b, "\"", 1);
    size_t run = 0; /* start of the bytes that need no escaping */
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)bytes[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        json_buf_bytes(b, bytes + run, i - run);
        char esc[6] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            n = 6;
        }
        json_buf_bytes(b, esc, n);
        run = i + 1;
    }
    json_buf_bytes(b, bytes + run, len - run);
    json_buf_bytes(b, "\"", 1);
}

/*
 * Rewrites `sci`, a number as printf's %e writes it ("-d.ddde+x"), as the
 * decimal one unit of its last digit further from zero, with as many
 * digits.
 */
static void bump_last_digit(char *sci, size_t size) {
    char *e = strchr(sci, 'e');
    for (char *p = e - 1;; p--) {
        if (*p == '.')
            continue;
        if (*p < '9') {
            (*p)++;
            return;
        }
        *p = '0';
        if (p == sci || p[-1] == '-') {
            /* 9.99e5 becomes 10.00e5, written 1.000e6. */
            *p = '1';
            snprintf(e, size - (size_t)(e - sci), "e%+d", atoi(e + 1) + 1);
            return;
        }
    }
}

size_t json_format_double(char out[JSON_DOUBLE_MAX], double value) {
    if (!isfinite(value)) {
        memcpy(out, "null", 5);
        return 4;
    }

    /* Find the fewest significant digits that read back exactly; 17
     * always do. Rounded to that many digits, a value is as near as it can
     * be, except just above a power of two: the doubles below it are twice
     * as dense, and the decimal one unit higher may read back where the
     * nearest does not. */
    int exponent;
    bool power_of_two = fabs(frexp(value, &exponent)) == 0.5;
    char sci[40];
    for (int precision = 0; precision < 17; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision, value);
        if (strtod(sci, NULL) == value)
            break;
        if (power_of_two) {
            bump_last_digit(sci, sizeof sci);
            if (strtod(sci, NULL) == value)
                break;
        }
    }

    /* Split "[-]d.ddde[+-]x" into its sign, digits and exponent. */
    const char *s = sci;
    char *o = out;
    if (*s == '-')
        *o++ = *s++;
    char digits[20];
    size_t nd = 0;
    for (; *s != 'e'; s++)
        if (*s != '.')
            digits[nd++] = *s;
    int exp = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;

    /* Write it out without an exponent: the value is 0.DIGITS * 10^(exp+1). */
    if (exp < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > exp; i--)
            *o++ = '0';
        memcpy(o, digits, nd);
        o += nd;
    } else {
        size_t whole = (size_t)exp + 1; /* digits before the point */
        for (size_t i = 0; i < whole; i++)
            *o++ = i < nd ? digits[i] : '0';
        *o++ = '.';
        if (nd > whole) {
            memcpy(o, digits + whole, nd - whole);
            o += nd - whole;
        } else {
            *o++ = '0';
        }
    }
    *o = '\0';
    return (size_t)(o - out);
}

void json_buf_double(json_buf *b, double value) {
    char text[JSON_DOUBLE_MAX];
    json_buf_bytes(b, text, json_format_double(text, value));
}

void json_buf_u64(json_buf *b, uint64_t value) {
    char text[24];
    int n = snprintf(text, sizeof text, "%llu", (unsigned long long)value);
    json_buf_bytes(b, text, (size_t)n);
}

void json_buf_free(json_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}
