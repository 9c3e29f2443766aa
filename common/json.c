/* Writing JSON strings: common/json.h. */
#include "json.h"

size_t
json_escape(char *out, size_t cap, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		char e[6];
		size_t n;

		if (ch == '"' || ch == '\\') {
			e[0] = '\\';
			e[1] = (char)ch;
			n = 2;
		} else if (ch < 0x20) {
			e[0] = '\\';
			e[1] = 'u';
			e[2] = '0';
			e[3] = '0';
			e[4] = hex[ch >> 4];
			e[5] = hex[ch & 15];
			n = 6;
		} else {
			e[0] = (char)ch;
			n = 1;
		}
		for (size_t k = 0; k < n; k++, o++)
			if (o + 1 < cap)
				out[o] = e[k];
	}
	if (cap > 0)
		out[o < cap ? o : cap - 1] = '\0';
	return o;
}

void
json_write_string(FILE *fp, const char *s, size_t len)
{
	char buf[256];

	fputc('"', fp);
	while (len > 0) {
		/* at most 6 output bytes per input byte: 40 bytes always fit */
		size_t take = len < 40 ? len : 40;
		size_t n = json_escape(buf, sizeof(buf), s, take);

		fwrite(buf, 1, n, fp);
		s += take;
		len -= take;
	}
	fputc('"', fp);
}
