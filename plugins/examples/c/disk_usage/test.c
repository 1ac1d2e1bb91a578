/*
 * Native tests of the aggregate and the JSON reader: run ./test.sh.
 *
 * test.sh builds aggregate.c and json.c with malloc, calloc and realloc
 * renamed to the test_* functions below, so that allocations can be made
 * to fail on purpose, and with the address and undefined-behaviour
 * sanitizers.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "json.h"

/* ---- Allocation failure on demand ------------------------------------- */

/* Allocations left before they fail; negative: never fail. */
static long allocations_left = -1;

static bool allocation_fails(void) {
    if (allocations_left < 0)
        return false;
    if (allocations_left == 0)
        return true;
    allocations_left--;
    return false;
}

void *test_malloc(size_t n) { return allocation_fails() ? NULL : malloc(n); }
void *test_calloc(size_t n, size_t size) {
    return allocation_fails() ? NULL : calloc(n, size);
}
void *test_realloc(void *p, size_t n) {
    return allocation_fails() ? NULL : realloc(p, n);
}

/* ---- A tiny test runner ------------------------------------------------ */

static int passed, failed;

static void check(bool ok, const char *fmt, ...) {
    if (ok) {
        passed++;
        return;
    }
    failed++;
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n");
    va_end(args);
}

/* The state bytes or the rendering of `agg`, NUL-terminated; the caller frees. */
static char *written(const du_aggregate *agg, bool with_version) {
    uint8_t *out;
    size_t len;
    if (!du_write(agg, with_version, &out, &len))
        return NULL;
    char *s = malloc(len + 1);
    memcpy(s, out, len);
    s[len] = '\0';
    free(out);
    return s;
}

/* Applies the payloads in order; returns the rendering (caller frees). */
static char *render_after(const char *const *payloads, size_t n) {
    du_aggregate agg;
    du_init(&agg);
    char reason[DU_REASON_MAX];
    for (size_t i = 0; i < n; i++)
        du_apply(&agg, payloads[i], strlen(payloads[i]), reason);
    char *out = written(&agg, false);
    du_free(&agg);
    return out;
}

/* ---- Tests -------------------------------------------------------------- */

static void test_numbers(void) {
    static const struct {
        double value;
        const char *text;
    } cases[] = {
        {0.0, "0.0"},         {-0.0, "-0.0"},   {1.0, "1.0"},
        {0.1, "0.1"},         {0.71, "0.71"},   {1.5e-7, "0.00000015"},
        {-2.25, "-2.25"},     {1e21, "1000000000000000000000.0"},
        {1.0 / 3, "0.3333333333333333"},        {0.30000000000000004, "0.30000000000000004"},
        {NAN, "null"},        {INFINITY, "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[JSON_DOUBLE_MAX];
        json_format_double(text, cases[i].value);
        check(strcmp(text, cases[i].text) == 0, "format %g: %s, not %s",
              cases[i].value, text, cases[i].text);
    }
    const double extremes[] = {DBL_MAX, DBL_MIN, 5e-324, 123456.789, 0x1p-30};
    for (size_t i = 0; i < sizeof extremes / sizeof extremes[0]; i++) {
        char text[JSON_DOUBLE_MAX];
        size_t n = json_format_double(text, extremes[i]);
        check(n < JSON_DOUBLE_MAX && strtod(text, NULL) == extremes[i],
              "%s does not read back", text);
    }
}

/* Applies one payload to an empty aggregate: the reason, or "" when applied. */
static const char *refusal(const char *payload, size_t len) {
    static char reason[DU_REASON_MAX];
    du_aggregate agg;
    du_init(&agg);
    if (du_apply(&agg, payload, len, reason))
        reason[0] = '\0';
    else
        check(agg.count == 0 && agg.mounts.len == 0, "%s changed the aggregate", payload);
    du_free(&agg);
    return reason;
}

/* A payload whose value for "/" nests `levels` arrays deep. */
static char *nested(size_t levels, bool closed) {
    char *text = malloc(2 * levels + 8);
    memcpy(text, "{\"/\":", 5);
    memset(text + 5, '[', levels);
    if (closed) {
        memset(text + 5 + levels, ']', levels);
        strcpy(text + 5 + 2 * levels, "}");
    } else {
        text[5 + levels] = '\0';
    }
    return text;
}

static void test_apply(void) {
    const char *payloads[] = {"{\"/\": 0.71, \"/home\": 0.42}", "{}",
                              " {\"/home\" : 0.5 , \"/var\":0} ", "{\"/\":0.7}",
                              /* a repeated mount point: the last value counts */
                              "{\"/boot\": 7, \"/boot\": -0}"};
    char *out = render_after(payloads, 5);
    check(out && strcmp(out, "{\"max\":{\"/\":0.71,\"/boot\":0.0,\"/home\":0.5,\"/var\":0.0},"
                             "\"count\":5}") == 0,
          "rendering: %s", out);
    free(out);

    static const struct {
        const char *payload;
        const char *reason;
    } refused[] = {
        {"", "not valid json"},
        {"  ", "not valid json"},
        {"nope", "not valid json"},
        {"[0.5]", "not a json object"},
        {"0.5", "not a json object"},
        {"null", "not a json object"},
        {"{\"/home\": 1.5}", "mount \"/home\": 1.5 is outside 0..=1"},
        {"{\"/\": 2}", "mount \"/\": 2.0 is outside 0..=1"},
        {"{\"/\": -0.1}", "mount \"/\": -0.1 is outside 0..=1"},
        {"{\"/\": 1e400}", "mount \"/\": not a finite number"},
        {"{\"/\": -1e400}", "mount \"/\": not a finite number"},
        {"{\"/\": \"0.5\"}", "mount \"/\": not a number"},
        {"{\"/\": true}", "mount \"/\": not a number"},
        {"{\"/\": {}}", "mount \"/\": not a number"},
        /* the first mount point in code point order is named */
        {"{\"/z\": 2, \"/a\": null, \"/m\": 0.5}", "mount \"/a\": not a number"},
        {"{\"/\": 0.1, \"/\": 2}", "mount \"/\": 2.0 is outside 0..=1"},
        {"{\"\\ud800\": 0.1}", "mount point is not valid unicode"},
        {"{\"\\udc00\\ud800\": 0.1}", "mount point is not valid unicode"},
        {"{\"\\ud800\": 0.1, \"a\": 5}", "mount \"a\": 5.0 is outside 0..=1"},
        {"{\"\\ud800\": 0.1, \"\\ue000\": 5}", "mount point is not valid unicode"},
        {"{\"\\ud83d\\ude00\": 2}", "mount \"\xf0\x9f\x98\x80\": 2.0 is outside 0..=1"},
        {"{\"a\\\"b\\\\c\\nd\\u0001\x7f\": 2}", "mount \"a\\\"b\\\\c\\nd\\u0001\x7f\": 2.0 is outside 0..=1"},
        {"{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaz\": 2}",
         "mount \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xe2\x80\xa6\": 2.0 is outside 0..=1"},
        {"{\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\\u0001\": 2}",
         "mount \"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xe2\x80\xa6\": 2.0 is outside 0..=1"},
        {"{\"/\": 0.1,}", "not valid json"},
        {"{\"/\": 0.1} {}", "not valid json"},
        {"{\"/\": 01}", "not valid json"},
        {"{\"/\": .5}", "not valid json"},
        {"{\"/\": 1.}", "not valid json"},
        {"{\"/\": NaN}", "not valid json"},
        {"{\"/\": Infinity}", "not valid json"},
        {"{\"/\\x\": 0.1}", "not valid json"},
        {"{\"\\u12\": 0.1}", "not valid json"},
        {"{\"\xc3\x28\": 0.1}", "not valid json"},
        {"{\"\xed\xa0\x80\": 0.1}", "not valid json"},
        {"{\"\xc0\xaf\": 0.1}", "not valid json"},
        {"{\"a\tb\": 0.1}", "not valid json"},
        {"{\"/\": 2, \"x\": [}", "not valid json"},
        {"{'/': 0.1}", "not valid json"},
        {"{\"/\\", "not valid json"},
        {"\"\\", "not valid json"},
        {"\xef\xbb\xbf{}", "not valid json"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *reason = refusal(refused[i].payload, strlen(refused[i].payload));
        check(strcmp(reason, refused[i].reason) == 0, "%s: %s", refused[i].payload,
              reason[0] ? reason : "(applied)");
    }
    /* A NUL byte inside a string must be escaped. */
    check(strcmp(refusal("{\"a\0\": 0.1}", 10), "not valid json") == 0, "raw NUL accepted");

    /* Nesting: 128 levels are read, 129 are not, whatever the syntax. */
    char *deep = nested(127, true);
    check(strcmp(refusal(deep, strlen(deep)), "mount \"/\": not a number") == 0, "127 deep");
    free(deep);
    deep = nested(128, true);
    check(strcmp(refusal(deep, strlen(deep)), "nested deeper than 128 levels") == 0, "128 deep");
    free(deep);
    deep = nested(100000, false);
    check(strcmp(refusal(deep, strlen(deep)), "nested deeper than 128 levels") == 0, "unclosed");
    free(deep);
    /* Brackets in a string do not count; after an unclosed quote they do. */
    char text[400] = "\"";
    memset(text + 1, '[', 200);
    check(strcmp(refusal(text, strlen(text)), "nested deeper than 128 levels") == 0, "open quote");
    strcat(text, "\"");
    check(strcmp(refusal(text, strlen(text)), "not a json object") == 0, "string of brackets");
    memcpy(text, "\"\\\"", 3); /* an escaped quote does not end the string */
    check(strcmp(refusal(text, strlen(text)), "not a json object") == 0, "escaped quote");

    /* Numbers in reasons are written out in full. */
    char expected[400] = "mount \"/\": 1";
    memset(expected + strlen(expected), '0', 300);
    strcpy(expected + strlen("mount \"/\": 1") + 300, ".0 is outside 0..=1");
    check(strcmp(refusal("{\"/\": 1e300}", 12), expected) == 0, "1e300");

    /* A refused payload leaves what came before it as it was. */
    du_aggregate agg;
    du_init(&agg);
    char reason[DU_REASON_MAX];
    const char *good = "{\"/\": 0.5}", *bad = "{\"/\": 0.9, \"/new\": 7}";
    du_apply(&agg, good, strlen(good), reason);
    check(!du_apply(&agg, bad, strlen(bad), reason), "bad payload applied");
    out = written(&agg, false);
    check(out && strcmp(out, "{\"max\":{\"/\":0.5},\"count\":1}") == 0, "after refusal: %s", out);
    free(out);
    du_free(&agg);
}

static void test_strings(void) {
    const char *payloads[] = {
        "{\"/m\\u00e9dia\": 0.5, \"\\\"q\\\"\\n\": 0.25, \"\\ud83d\\ude00\": 0.125, "
        "\"tab\\there\": 0.1, \"nul\\u0000\": 0.2, \"\xe2\x82\xac\": 1, \"\\/\": 0.3}"};
    char *out = render_after(payloads, 1);
    check(out && strcmp(out, "{\"max\":{\"\\\"q\\\"\\n\":0.25,\"/\":0.3,\"/m\xc3\xa9" "dia\":0.5,"
                             "\"nul\\u0000\":0.2,\"tab\\there\":0.1,\"\xe2\x82\xac\":1.0,"
                             "\"\xf0\x9f\x98\x80\":0.125},\"count\":1}") == 0,
          "escapes: %s", out);
    free(out);
}

static void test_state(void) {
    du_aggregate agg;
    du_init(&agg);
    char why[DU_REASON_MAX];
    check(du_read_state(&agg, (const uint8_t *)"", 0, why), "empty state");
    char *out = written(&agg, true);
    check(out && strcmp(out, "{\"v\":1,\"max\":{},\"count\":0}") == 0, "empty: %s", out);
    free(out);

    /* Written by another writer: spaces, another order, numbers as floats. */
    const char *text = " { \"count\" : 9007199254740991, \"max\": {\"/b\": 0.5, \"/a\": 1,"
                       " \"/z\": -0.0}, \"v\": 1.0 } ";
    check(du_read_state(&agg, (const uint8_t *)text, strlen(text), why), "%s", why);
    char *state = written(&agg, true);
    check(state && strcmp(state, "{\"v\":1,\"max\":{\"/a\":1.0,\"/b\":0.5,\"/z\":0.0},"
                                 "\"count\":9007199254740991}") == 0,
          "state: %s", state);
    /* The count stops at 2^53 - 1. */
    du_apply(&agg, "{}", 2, why);
    check(agg.count == DU_MAX_COUNT, "count went past 2^53 - 1");
    du_free(&agg);

    /* What it writes, it reads back. */
    du_init(&agg);
    check(du_read_state(&agg, (const uint8_t *)state, strlen(state), why), "%s", why);
    out = written(&agg, true);
    check(out && strcmp(out, state) == 0, "round trip: %s", out);
    free(out);
    free(state);
    du_free(&agg);

    static const char *const readable[] = {
        "{\"v\":1,\"v\":1,\"max\":{},\"count\":0}",
        "{\"v\":1,\"max\":{\"/\":1,\"/\":1},\"count\":1}",
        "{\"v\":1,\"max\":[],\"max\":{},\"count\":1e3}",
        "{\"v\":1,\"max\":{},\"count\":-0}",
    };
    for (size_t i = 0; i < sizeof readable / sizeof readable[0]; i++) {
        du_init(&agg);
        check(du_read_state(&agg, (const uint8_t *)readable[i], strlen(readable[i]), why),
              "state %s: %s", readable[i], why);
        du_free(&agg);
    }

    static const struct {
        const char *state;
        const char *why;
    } unreadable[] = {
        {"x", "not valid json"},
        {"\xff", "not utf-8"},
        {"{\"v\":1,\"max\":{\"\xed\xa0\x80\":1},\"count\":0}", "not utf-8"},
        {"\xef\xbb\xbf{}", "not valid json"},
        {"[]", "not a json object"},
        {"{\"v\":2,\"max\":[],\"count\":0}", "version 2 is not supported"},
        {"{\"v\":-0,\"count\":0}", "version 0 is not supported"},
        {"{\"v\":2,", "not valid json"},
        {"{\"v\":1.5,\"max\":{},\"count\":0}", "\"v\" is not a version number"},
        {"{\"v\":\"1\",\"max\":{},\"count\":0}", "\"v\" is not a version number"},
        {"{\"v\":true,\"max\":{},\"count\":0}", "\"v\" is not a version number"},
        {"{\"max\":{},\"count\":0}", "no \"v\" field"},
        {"{\"v\":1,\"count\":0}", "no \"max\" field"},
        {"{\"v\":1,\"max\":{}}", "no \"count\" field"},
        {"{\"v\":1,\"max\":{},\"count\":0,\"zz\":0,\"extra\":0}", "unknown field \"extra\""},
        {"{\"v\":1,\"\\ud800\":0}", "unknown field \"\\ud800\""},
        {"{\"v\":1,\"max\":[],\"count\":0}", "\"max\" is not an object"},
        {"{\"v\":1,\"max\":{},\"max\":null,\"count\":0}", "\"max\" is not an object"},
        {"{\"v\":1,\"max\":{\"/\":1.5},\"count\":1}", "mount \"/\": 1.5 is outside 0..=1"},
        {"{\"v\":1,\"max\":{\"\\udfff\":1},\"count\":1}", "mount point is not valid unicode"},
        {"{\"v\":1,\"max\":{},\"count\":-1}", "\"count\" is not a whole number of payloads"},
        {"{\"v\":1,\"max\":{},\"count\":0.5}", "\"count\" is not a whole number of payloads"},
        {"{\"v\":1,\"max\":{},\"count\":\"1\"}", "\"count\" is not a whole number of payloads"},
        {"{\"v\":1,\"max\":{},\"count\":9007199254740992}",
         "\"count\" is not a whole number of payloads"},
        {"{\"v\":1,\"max\":{},\"count\":0} x", "not valid json"},
    };
    for (size_t i = 0; i < sizeof unreadable / sizeof unreadable[0]; i++) {
        du_init(&agg);
        bool ok = du_read_state(&agg, (const uint8_t *)unreadable[i].state,
                                strlen(unreadable[i].state), why);
        check(!ok && strcmp(why, unreadable[i].why) == 0, "state %s: %s",
              unreadable[i].state, ok ? "(read)" : why);
        check(agg.count == 0 && agg.mounts.len == 0, "failed read left entries");
        du_free(&agg);
    }
}

/* Random bytes and mutated payloads: nothing may crash, and whatever is
 * applied must survive a round trip through the state bytes. */
static void test_fuzz(void) {
    static const char *seeds[] = {
        "{\"/\": 0.71, \"/home\": 0.42}", "{\"a\\u00e9\\ud83d\\ude00\": 1e-3}",
        "{\"/\": [1, {\"x\": null}], \"b\": true}", "{}", "[\"/\", 0.5]",
        "{\"v\":1,\"max\":{\"/\":0.5},\"count\":3}",
    };
    const char alphabet[] = "{}[]\":,\\u0123456789.eE+-tfnrl /\x80\xc3\xa9\xed\xf0";
    unsigned long seed = 12345;
    char buf[256];
    int survived = 1;
    for (int iter = 0; iter < 200000; iter++) {
        seed = seed * 6364136223846793005ul + 1442695040888963407ul;
        const char *src = seeds[(seed >> 33) % (sizeof seeds / sizeof seeds[0])];
        size_t len = strlen(src);
        memcpy(buf, src, len);
        for (int m = (int)((seed >> 40) % 4); m >= 0; m--) {
            seed = seed * 6364136223846793005ul + 1442695040888963407ul;
            size_t at = len ? (seed >> 33) % len : 0;
            char c = alphabet[(seed >> 20) % (sizeof alphabet - 1)];
            switch ((seed >> 50) % 3) {
            case 0: if (len) buf[at] = c; break;
            case 1: if (len < sizeof buf - 1) { memmove(buf + at + 1, buf + at, len - at); buf[at] = c; len++; } break;
            case 2: if (len) { memmove(buf + at, buf + at + 1, len - at - 1); len--; } break;
            }
        }
        du_aggregate agg, again;
        du_init(&agg);
        du_init(&again);
        char reason[DU_REASON_MAX];
        bool applied = du_apply(&agg, buf, len, reason);
        if (!applied && (strlen(reason) == 0 || strlen(reason) >= DU_REASON_MAX))
            survived = 0;
        du_read_state(&again, (const uint8_t *)buf, len, reason);
        du_free(&again);
        char *state = written(&agg, true);
        du_init(&again);
        if (!state || !du_read_state(&again, (const uint8_t *)state, strlen(state), reason))
            survived = 0;
        char *state2 = written(&again, true);
        if (!state2 || strcmp(state, state2) != 0)
            survived = 0;
        free(state);
        free(state2);
        du_free(&agg);
        du_free(&again);
    }
    check(survived, "fuzzed payloads");
}

/* Every allocation in turn fails: the call refuses, and changes nothing. */
static void test_allocation_failure(void) {
    const char *state = "{\"v\":1,\"max\":{\"/\":0.5,\"/boot\":0.25},\"count\":2}";
    const char *payload = "{\"/\": 0.75, \"/home\": 0.5, \"/var\": 0.125, \"/x\\u00e9\": 1}";
    bool completed = false;
    for (long n = 0; n < 1000 && !completed; n++) {
        du_aggregate agg;
        du_init(&agg);
        char why[DU_REASON_MAX];
        char *before = NULL;
        allocations_left = n;
        if (du_read_state(&agg, (const uint8_t *)state, strlen(state), why)) {
            allocations_left = -1;
            before = written(&agg, true);
            allocations_left = n;
            if (!du_apply(&agg, payload, strlen(payload), why)) {
                allocations_left = -1;
                char *after = written(&agg, true);
                check(strcmp(why, "out of memory") == 0, "refusal after %ld: %s", n, why);
                check(after && before && strcmp(after, before) == 0,
                      "refused payload changed the state after %ld allocations", n);
                free(after);
            } else {
                uint8_t *out;
                size_t len;
                if (du_write(&agg, true, &out, &len)) {
                    free(out);
                    completed = true;
                }
            }
        } else {
            check(strcmp(why, "out of memory") == 0, "state read after %ld: %s", n, why);
        }
        allocations_left = -1;
        free(before);
        du_free(&agg);
    }
    check(completed, "never completed with enough allocations");
}

int main(void) {
    test_numbers();
    test_apply();
    test_strings();
    test_state();
    test_fuzz();
    test_allocation_failure();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
