/*
 * Avro schema JSON (read by Jansson) -> schema tree, Parsing Canonical Form
 * and CRC-64-AVRO fingerprint. The schema tree lives in one arena and points
 * into the Jansson document; both are freed at once. This runs at start-up
 * and reload only, never per message.
 */
#include "avsc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Nesting limit for schema trees (a schema is small). */
#define AVSC_MAX_DEPTH   64
#define AVSC_ARENA_BLOCK 8192
#define AVSC_ALIGN       16

struct avsc_block {
	struct avsc_block *next;
	size_t size;
	size_t used;
	unsigned char data[];
};

struct avsc {
	struct avsc_block *blocks;
	json_t *doc; /* names, symbols and defaults point into it */
	struct avsc_node *root;
	char *canonical;
	uint64_t fingerprint;
};

/* Parse state: the named types seen so far, the error. */
struct avsc_parser {
	struct avsc *sc;
	struct avsc_node **named;
	size_t n_named;
	size_t cap_named;
	char *errstr;
	size_t errstr_size;
	int failed;
};

/* Growable text buffer for the canonical form. */
struct avsc_buf {
	char *s;
	size_t len;
	size_t cap;
	int oom;
};

static void *
avsc_alloc(struct avsc *sc, size_t size)
{
	struct avsc_block *b = sc->blocks;
	size_t need = (size + AVSC_ALIGN - 1) & ~(size_t)(AVSC_ALIGN - 1);
	void *ptr;

	if (need == 0)
		need = AVSC_ALIGN;
	if (b == NULL || b->size - b->used < need) {
		size_t bsize = need > AVSC_ARENA_BLOCK ? need : AVSC_ARENA_BLOCK;
		b = malloc(sizeof(*b) + bsize);
		if (b == NULL)
			return NULL;
		b->size = bsize;
		b->used = 0;
		b->next = sc->blocks;
		sc->blocks = b;
	}
	ptr = b->data + b->used;
	b->used += need;
	memset(ptr, 0, need);
	return ptr;
}

static void avsc_fail(struct avsc_parser *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
avsc_fail(struct avsc_parser *ps, const char *fmt, ...)
{
	va_list ap;

	if (ps->failed)
		return; /* keep the innermost, first reason */
	ps->failed = 1;
	va_start(ap, fmt);
	vsnprintf(ps->errstr, ps->errstr_size, fmt, ap);
	va_end(ap);
}

static void *
avsc_palloc(struct avsc_parser *ps, size_t size)
{
	void *ptr = avsc_alloc(ps->sc, size);

	if (ptr == NULL)
		avsc_fail(ps, "out of memory");
	return ptr;
}

/* ---- schema ---- */

static const char *const avsc_type_names[] = {
	[AVSC_NULL] = "null",
	[AVSC_BOOLEAN] = "boolean",
	[AVSC_INT] = "int",
	[AVSC_LONG] = "long",
	[AVSC_FLOAT] = "float",
	[AVSC_DOUBLE] = "double",
	[AVSC_BYTES] = "bytes",
	[AVSC_STRING] = "string",
	[AVSC_RECORD] = "record",
	[AVSC_ENUM] = "enum",
	[AVSC_ARRAY] = "array",
	[AVSC_MAP] = "map",
	[AVSC_UNION] = "union",
	[AVSC_FIXED] = "fixed",
};

const char *
avsc_type_name(enum avsc_type t)
{
	return avsc_type_names[t];
}

static int
avsc_primitive(const char *name)
{
	for (int t = AVSC_NULL; t <= AVSC_STRING; t++)
		if (strcmp(avsc_type_names[t], name) == 0)
			return t;
	return -1;
}

/* Avro name rule: [A-Za-z_][A-Za-z0-9_]*, each dot-separated part. */
static int
avsc_valid_name(const char *s, int dotted)
{
	int start = 1;

	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		char c = *s;
		if (dotted && c == '.') {
			if (start)
				return 0;
			start = 1;
			continue;
		}
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
			(!start && c >= '0' && c <= '9')))
			return 0;
		start = 0;
	}
	return !start;
}

/* A string without NULs (JSON may hold "\u0000"), else NULL. */
static const char *
avsc_plain_string(const json_t *v)
{
	const char *str = json_string_value(v);

	return str != NULL && strlen(str) == json_string_length(v) ? str : NULL;
}

static const char *
avsc_str_attr(struct avsc_parser *ps, const json_t *obj, const char *key, int required)
{
	const json_t *v = json_object_get(obj, key);
	const char *str;

	if (v == NULL) {
		if (required)
			avsc_fail(ps, "schema: missing \"%s\"", key);
		return NULL;
	}
	if ((str = avsc_plain_string(v)) == NULL) {
		avsc_fail(ps, "schema: \"%s\" is not a string", key);
		return NULL;
	}
	return str;
}

static struct avsc_node *
avsc_lookup(struct avsc_parser *ps, const char *fullname)
{
	for (size_t i = 0; i < ps->n_named; i++)
		if (strcmp(ps->named[i]->fullname, fullname) == 0)
			return ps->named[i];
	return NULL;
}

static char *
avsc_join(struct avsc_parser *ps, const char *ns, const char *name)
{
	size_t nl = ns != NULL ? strlen(ns) : 0, ml = strlen(name);
	char *s = avsc_palloc(ps, nl + ml + 2);

	if (s == NULL)
		return NULL;
	if (nl > 0) {
		memcpy(s, ns, nl);
		s[nl] = '.';
		memcpy(s + nl + 1, name, ml + 1);
	} else {
		memcpy(s, name, ml + 1);
	}
	return s;
}

/* A reference by name: relative to the enclosing namespace, else absolute. */
static struct avsc_node *
avsc_reference(struct avsc_parser *ps, const char *name, const char *ns)
{
	struct avsc_node *node = NULL;

	if (!avsc_valid_name(name, 1)) {
		avsc_fail(ps, "schema: bad type name \"%s\"", name);
		return NULL;
	}
	if (strchr(name, '.') == NULL && ns != NULL && *ns != '\0') {
		char *full = avsc_join(ps, ns, name);
		if (full == NULL)
			return NULL;
		node = avsc_lookup(ps, full);
	}
	if (node == NULL)
		node = avsc_lookup(ps, name);
	if (node == NULL)
		avsc_fail(ps, "schema: unknown type \"%s\"", name);
	return node;
}

/* Sets fullname/name of a named type and registers it; returns its namespace. */
static const char *
avsc_define(struct avsc_parser *ps, struct avsc_node *node, const json_t *obj, const char *ns)
{
	const char *name = avsc_str_attr(ps, obj, "name", 1);
	const char *own_ns;
	const char *dot;
	char *full;

	if (name == NULL)
		return NULL;
	own_ns = avsc_str_attr(ps, obj, "namespace", 0);
	if (ps->failed)
		return NULL;
	if (!avsc_valid_name(name, 1)) {
		avsc_fail(ps, "schema: bad name \"%s\"", name);
		return NULL;
	}
	if ((dot = strrchr(name, '.')) != NULL) {
		full = avsc_join(ps, NULL, name);
		node->name = dot + 1;
	} else {
		if (own_ns != NULL)
			ns = own_ns;
		if (ns != NULL && *ns != '\0' && !avsc_valid_name(ns, 1)) {
			avsc_fail(ps, "schema: bad namespace \"%s\"", ns);
			return NULL;
		}
		full = avsc_join(ps, ns, name);
		node->name = name;
	}
	if (full == NULL)
		return NULL;
	if (avsc_primitive(full) >= 0 || avsc_lookup(ps, full) != NULL) {
		avsc_fail(ps, "schema: type \"%s\" defined twice or reserved", full);
		return NULL;
	}
	node->fullname = full;
	if (ps->n_named == ps->cap_named) {
		size_t ncap = ps->cap_named ? ps->cap_named * 2 : 16;
		struct avsc_node **named = realloc(ps->named, ncap * sizeof(*named));
		if (named == NULL) {
			avsc_fail(ps, "out of memory");
			return NULL;
		}
		ps->named = named;
		ps->cap_named = ncap;
	}
	ps->named[ps->n_named++] = node;
	/* The namespace that names inside this type are relative to. */
	if (dot != NULL) {
		size_t nl = (size_t)(dot - name);
		char *nsbuf = avsc_palloc(ps, nl + 1);
		if (nsbuf == NULL)
			return NULL;
		memcpy(nsbuf, name, nl);
		nsbuf[nl] = '\0';
		return nsbuf;
	}
	return ns != NULL ? ns : "";
}

static struct avsc_node *avsc_schema(
    struct avsc_parser *ps, const json_t *j, const char *ns, int depth);

static struct avsc_node *
avsc_record(
    struct avsc_parser *ps, struct avsc_node *node, const json_t *obj, const char *ns, int depth)
{
	const json_t *fields = json_object_get(obj, "fields");

	if ((ns = avsc_define(ps, node, obj, ns)) == NULL)
		return NULL;
	if (!json_is_array(fields)) {
		avsc_fail(
		    ps, "schema: record %s: \"fields\" missing or not an array", node->fullname);
		return NULL;
	}
	node->n = json_array_size(fields);
	node->fields = avsc_palloc(ps, (node->n + 1) * sizeof(*node->fields));
	if (node->fields == NULL)
		return NULL;
	for (size_t i = 0; i < node->n; i++) {
		const json_t *f = json_array_get(fields, i);
		struct avsc_field *fd = &node->fields[i];
		const json_t *ftype;

		if (!json_is_object(f)) {
			avsc_fail(
			    ps, "schema: record %s: field %zu is not an object", node->fullname, i);
			return NULL;
		}
		if ((fd->name = avsc_str_attr(ps, f, "name", 1)) == NULL)
			return NULL;
		if (!avsc_valid_name(fd->name, 0)) {
			avsc_fail(ps, "schema: record %s: bad field name \"%s\"", node->fullname,
			    fd->name);
			return NULL;
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(node->fields[k].name, fd->name) == 0) {
				avsc_fail(ps, "schema: record %s: field %s twice", node->fullname,
				    fd->name);
				return NULL;
			}
		if ((ftype = json_object_get(f, "type")) == NULL) {
			avsc_fail(ps, "schema: record %s: field %s has no type", node->fullname,
			    fd->name);
			return NULL;
		}
		if ((fd->type = avsc_schema(ps, ftype, ns, depth + 1)) == NULL)
			return NULL;
		fd->def = json_object_get(f, "default");
	}
	return node;
}

static struct avsc_node *
avsc_enum(struct avsc_parser *ps, struct avsc_node *node, const json_t *obj, const char *ns)
{
	const json_t *syms = json_object_get(obj, "symbols");
	const char *def;

	if (avsc_define(ps, node, obj, ns) == NULL)
		return NULL;
	if (!json_is_array(syms) || json_array_size(syms) == 0) {
		avsc_fail(ps, "schema: enum %s: \"symbols\" missing or empty", node->fullname);
		return NULL;
	}
	node->n = json_array_size(syms);
	if ((node->symbols = avsc_palloc(ps, node->n * sizeof(char *))) == NULL)
		return NULL;
	for (size_t i = 0; i < node->n; i++) {
		const char *sym = json_string_value(json_array_get(syms, i));
		if (sym == NULL || !avsc_valid_name(sym, 0)) {
			avsc_fail(ps, "schema: enum %s: bad symbol %zu", node->fullname, i);
			return NULL;
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(node->symbols[k], sym) == 0) {
				avsc_fail(
				    ps, "schema: enum %s: symbol %s twice", node->fullname, sym);
				return NULL;
			}
		node->symbols[i] = sym;
	}
	node->enum_default = -1;
	def = avsc_str_attr(ps, obj, "default", 0);
	if (ps->failed)
		return NULL;
	if (def != NULL) {
		for (size_t i = 0; i < node->n; i++)
			if (strcmp(node->symbols[i], def) == 0)
				node->enum_default = (int)i;
		if (node->enum_default < 0) {
			avsc_fail(
			    ps, "schema: enum %s: default %s is not a symbol", node->fullname, def);
			return NULL;
		}
	}
	return node;
}

static struct avsc_node *
avsc_union(
    struct avsc_parser *ps, struct avsc_node *node, const json_t *arr, const char *ns, int depth)
{
	node->type = AVSC_UNION;
	node->n = json_array_size(arr);
	if (node->n == 0) {
		avsc_fail(ps, "schema: empty union");
		return NULL;
	}
	if ((node->branches = avsc_palloc(ps, node->n * sizeof(*node->branches))) == NULL)
		return NULL;
	for (size_t i = 0; i < node->n; i++) {
		struct avsc_node *b = avsc_schema(ps, json_array_get(arr, i), ns, depth + 1);
		if (b == NULL)
			return NULL;
		if (b->type == AVSC_UNION) {
			avsc_fail(ps, "schema: union directly inside a union");
			return NULL;
		}
		for (size_t k = 0; k < i; k++) {
			const struct avsc_node *o = node->branches[k];
			int named = b->fullname != NULL;
			if (named ? (o->fullname != NULL && strcmp(o->fullname, b->fullname) == 0)
				  : (o->type == b->type)) {
				avsc_fail(ps, "schema: union has two branches of type %s",
				    named ? b->fullname : avsc_type_names[b->type]);
				return NULL;
			}
		}
		node->branches[i] = b;
	}
	return node;
}

static struct avsc_node *
avsc_schema(struct avsc_parser *ps, const json_t *j, const char *ns, int depth)
{
	struct avsc_node *node;
	const char *type;
	int prim;

	if (depth > AVSC_MAX_DEPTH) {
		avsc_fail(ps, "schema: nested too deep");
		return NULL;
	}
	if (json_is_string(j)) {
		const char *name = avsc_plain_string(j);
		if (name == NULL) {
			avsc_fail(ps, "schema: NUL in type name");
			return NULL;
		}
		if ((prim = avsc_primitive(name)) >= 0) {
			if ((node = avsc_palloc(ps, sizeof(*node))) == NULL)
				return NULL;
			node->type = (enum avsc_type)prim;
			return node;
		}
		return avsc_reference(ps, name, ns);
	}
	if ((node = avsc_palloc(ps, sizeof(*node))) == NULL)
		return NULL;
	if (json_is_array(j))
		return avsc_union(ps, node, j, ns, depth);
	if (!json_is_object(j)) {
		avsc_fail(ps, "schema: a type must be a string, array or object");
		return NULL;
	}
	{
		const json_t *tj = json_object_get(j, "type");
		if (tj == NULL) {
			avsc_fail(ps, "schema: object without \"type\"");
			return NULL;
		}
		if (!json_is_string(tj)) /* {"type": {...}}: a wrapped type */
			return avsc_schema(ps, tj, ns, depth + 1);
		type = json_string_value(tj);
	}
	if ((prim = avsc_primitive(type)) >= 0) {
		node->type = (enum avsc_type)prim; /* logicalType etc. are ignored */
		return node;
	}
	if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0) {
		node->type = AVSC_RECORD;
		return avsc_record(ps, node, j, ns, depth);
	}
	if (strcmp(type, "enum") == 0) {
		node->type = AVSC_ENUM;
		return avsc_enum(ps, node, j, ns);
	}
	if (strcmp(type, "fixed") == 0) {
		const json_t *size = json_object_get(j, "size");
		node->type = AVSC_FIXED;
		if (avsc_define(ps, node, j, ns) == NULL)
			return NULL;
		if (!json_is_integer(size) || json_integer_value(size) < 0) {
			avsc_fail(ps, "schema: fixed %s: bad size", node->fullname);
			return NULL;
		}
		node->size = json_integer_value(size);
		return node;
	}
	if (strcmp(type, "array") == 0 || strcmp(type, "map") == 0) {
		const char *key = type[0] == 'a' ? "items" : "values";
		const json_t *sub = json_object_get(j, key);
		node->type = type[0] == 'a' ? AVSC_ARRAY : AVSC_MAP;
		if (sub == NULL) {
			avsc_fail(ps, "schema: %s without \"%s\"", type, key);
			return NULL;
		}
		node->items = avsc_schema(ps, sub, ns, depth + 1);
		return node->items != NULL ? node : NULL;
	}
	return avsc_reference(ps, type, ns);
}

/* ---- Parsing Canonical Form ---- */

static void
avsc_put(struct avsc_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 256;
		char *ns;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		if ((ns = realloc(b->s, ncap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->s = ns;
		b->cap = ncap;
	}
	memcpy(b->s + b->len, s, n + 1);
	b->len += n;
}

/* Names and symbols are [A-Za-z0-9_.] only, so no JSON escaping is needed. */
static void
avsc_put_quoted(struct avsc_buf *b, const char *s)
{
	avsc_put(b, "\"");
	avsc_put(b, s);
	avsc_put(b, "\"");
}

static void
avsc_pcf(struct avsc_buf *b, const struct avsc_node *node, const struct avsc_node ***seen,
    size_t *n_seen)
{
	char num[32];

	if (node->fullname != NULL) {
		for (size_t i = 0; i < *n_seen; i++)
			if ((*seen)[i] == node) {
				avsc_put_quoted(b, node->fullname);
				return;
			}
		{
			const struct avsc_node **ns =
			    realloc(*seen, (*n_seen + 1) * sizeof(**seen));
			if (ns == NULL) {
				b->oom = 1;
				return;
			}
			*seen = ns;
			ns[(*n_seen)++] = node;
		}
		avsc_put(b, "{\"name\":");
		avsc_put_quoted(b, node->fullname);
	}
	switch (node->type) {
	case AVSC_RECORD:
		avsc_put(b, ",\"type\":\"record\",\"fields\":[");
		for (size_t i = 0; i < node->n; i++) {
			avsc_put(b, i ? ",{\"name\":" : "{\"name\":");
			avsc_put_quoted(b, node->fields[i].name);
			avsc_put(b, ",\"type\":");
			avsc_pcf(b, node->fields[i].type, seen, n_seen);
			avsc_put(b, "}");
		}
		avsc_put(b, "]}");
		break;
	case AVSC_ENUM:
		avsc_put(b, ",\"type\":\"enum\",\"symbols\":[");
		for (size_t i = 0; i < node->n; i++) {
			if (i)
				avsc_put(b, ",");
			avsc_put_quoted(b, node->symbols[i]);
		}
		avsc_put(b, "]}");
		break;
	case AVSC_FIXED:
		snprintf(num, sizeof(num), "%lld", (long long)node->size);
		avsc_put(b, ",\"type\":\"fixed\",\"size\":");
		avsc_put(b, num);
		avsc_put(b, "}");
		break;
	case AVSC_ARRAY:
	case AVSC_MAP:
		avsc_put(b,
		    node->type == AVSC_ARRAY ? "{\"type\":\"array\",\"items\":"
					     : "{\"type\":\"map\",\"values\":");
		avsc_pcf(b, node->items, seen, n_seen);
		avsc_put(b, "}");
		break;
	case AVSC_UNION:
		avsc_put(b, "[");
		for (size_t i = 0; i < node->n; i++) {
			if (i)
				avsc_put(b, ",");
			avsc_pcf(b, node->branches[i], seen, n_seen);
		}
		avsc_put(b, "]");
		break;
	default:
		avsc_put_quoted(b, avsc_type_names[node->type]);
		break;
	}
}

/* ---- CRC-64-AVRO ---- */

uint64_t
avsc_crc64(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t table[256];
	uint64_t fp = AVSC_CRC64_EMPTY;

	/* The specification's table-driven Rabin fingerprint. The table is built
	 * per call: schemas are hashed only at registration. */
	for (unsigned i = 0; i < 256; i++) {
		uint64_t t = i;
		for (int k = 0; k < 8; k++)
			t = (t >> 1) ^ (AVSC_CRC64_EMPTY & (0 - (t & 1)));
		table[i] = t;
	}
	for (size_t i = 0; i < len; i++)
		fp = (fp >> 8) ^ table[(fp ^ p[i]) & 0xff];
	return fp;
}

/* ---- public ---- */

struct avsc *
avsc_parse(const char *json, size_t len, char *errstr, size_t errstr_size)
{
	struct avsc_parser ps = { 0 };
	struct avsc_buf b = { 0 };
	const struct avsc_node **seen = NULL;
	size_t n_seen = 0;
	json_error_t jerr;
	struct avsc *sc;

	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	ps.sc = sc;
	ps.errstr = errstr;
	ps.errstr_size = errstr_size;
	/* A bare "name" is a schema too; "\u0000" may occur in a default, never in a name. */
	sc->doc =
	    json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (sc->doc == NULL) {
		avsc_fail(&ps, "JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
		goto fail;
	}
	if ((sc->root = avsc_schema(&ps, sc->doc, "", 0)) == NULL)
		goto fail;
	avsc_pcf(&b, sc->root, &seen, &n_seen);
	free(seen);
	if (b.oom || b.s == NULL) {
		avsc_fail(&ps, "out of memory");
		goto fail;
	}
	sc->canonical = b.s;
	b.s = NULL;
	sc->fingerprint = avsc_crc64(sc->canonical, strlen(sc->canonical));
	free(ps.named);
	return sc;
fail:
	free(b.s);
	free(ps.named);
	avsc_free(sc);
	return NULL;
}

void
avsc_free(struct avsc *sc)
{
	struct avsc_block *b, *next;

	if (sc == NULL)
		return;
	for (b = sc->blocks; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	json_decref(sc->doc);
	free(sc->canonical);
	free(sc);
}

const struct avsc_node *
avsc_root(const struct avsc *sc)
{
	return sc->root;
}

const char *
avsc_canonical(const struct avsc *sc)
{
	return sc->canonical;
}

uint64_t
avsc_fingerprint(const struct avsc *sc)
{
	return sc->fingerprint;
}
