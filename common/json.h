/*
 * Writing JSON strings, written once (the sink's top-N, interestctl replay's
 * user ids, interest-eval's names). Reading JSON is Jansson's.
 */
#ifndef INTERESTD_JSON_H
#define INTERESTD_JSON_H

#include <stddef.h>
#include <stdio.h>

/*
 * s[0..len) as the body of a JSON string (no quotes): '"' and '\\' escaped,
 * bytes below 0x20 as \u00XX, everything else (UTF-8 included) as is. Writes
 * at most cap bytes to out, NUL-terminated when cap > 0, and returns the
 * length the whole body needs (without the NUL), as snprintf does.
 */
size_t json_escape(char *out, size_t cap, const char *s, size_t len);

/* s[0..len) as a JSON string, quotes included, to fp. */
void json_write_string(FILE *fp, const char *s, size_t len);

#endif
