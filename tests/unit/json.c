/*
 * common/json.c: JSON string bodies as the sink, interestctl replay and
 * interest-eval write them, parsed back by Jansson.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "fixture.h"

/* s[0..len) through json_write_string and back through Jansson. */
static int
round_trip(const char *s, size_t len)
{
	char *text = NULL;
	size_t text_len = 0;
	FILE *fp = open_memstream(&text, &text_len);
	json_t *j;
	int ok;

	json_write_string(fp, s, len);
	fclose(fp);
	j = json_loadb(text, text_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	ok = j != NULL && json_is_string(j) && json_string_length(j) == len &&
	    memcmp(json_string_value(j), s, len) == 0;
	json_decref(j);
	free(text);
	return ok;
}

int
main(void)
{
	int fails = 0;
	const char in[] = "a\"b\\c\x01\n\xc3\xa9";
	char out[64], small[5];
	size_t n = json_escape(out, sizeof(out), in, sizeof(in) - 1);
	char big[300];

	CHECK(n == strlen("a\\\"b\\\\c\\u0001\\u000a\xc3\xa9") &&
		strcmp(out, "a\\\"b\\\\c\\u0001\\u000a\xc3\xa9") == 0,
	    "quote, backslash and control bytes escaped, UTF-8 kept: %s", out);
	CHECK(json_escape(small, sizeof(small), in, sizeof(in) - 1) == n &&
		strcmp(small, "a\\\"b") == 0,
	    "a short buffer: truncated and terminated, the full length returned");
	CHECK(json_escape(NULL, 0, in, sizeof(in) - 1) == n, "length only with no buffer");
	CHECK(round_trip(in, sizeof(in) - 1), "json_write_string reads back with Jansson");
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i % 3 == 0 ? '"' : i % 3 == 1 ? 1 : 'x');
	CHECK(round_trip(big, sizeof(big)), "300 bytes, two in three escaped, read back whole");
	CHECK(round_trip("\0nul", 4), "a NUL byte as \\u0000");
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
