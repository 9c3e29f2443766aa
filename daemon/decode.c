/*
 * BehaviourEvent decoder: framing detection, per-writer-schema resolution
 * plans compiled once at registration (Avro "Schema Resolution" rules), and
 * an allocation-free bounds-checked interpreter that runs a plan over a
 * message. Framing rules: schemas/README.md.
 */
#include "decode.h"
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "avsc.h"
#include "binary.h"
#include "modelfile.h"

/* Largest schema file decoder_new() reads. */
#define DECODE_MAX_SCHEMA_BYTES (1024 * 1024)
/* Nesting limit for skipped records/arrays/maps of unknown writer fields. */
#define DECODE_MAX_DEPTH 32
/* Enum map entry of a writer symbol the reader can't represent. */
#define DECODE_NO_SYMBOL 0xff
/* Single-object header: C3 01 + 8-byte little-endian fingerprint. */
#define DECODE_SO_HEADER 10
/* Confluent header: 00 + 4-byte big-endian schema id. */
#define DECODE_CF_HEADER 5

/* Where a resolved value lands in struct event. */
enum decode_slot {
	SLOT_NONE = 0,
	SLOT_EVENT_ID,
	SLOT_USER_ID,
	SLOT_ITEM_ID,
	SLOT_TYPE,
	SLOT_TS,
	SLOT_DWELL,
	SLOT_VALUE,
	SLOT_COUNT
};

static const char *const decode_slot_names[SLOT_COUNT] = {
	[SLOT_EVENT_ID] = "event_id",
	[SLOT_USER_ID] = "user_id",
	[SLOT_ITEM_ID] = "item_id",
	[SLOT_TYPE] = "type",
	[SLOT_TS] = "ts",
	[SLOT_DWELL] = "dwell_ms",
	[SLOT_VALUE] = "value",
};

/* How to read one writer value: the writer's encoding, the reader's slot. */
enum decode_op_kind {
	OP_NULL = 0,
	OP_INT,
	OP_LONG,
	OP_FLOAT,
	OP_DOUBLE,
	OP_STRING, /* string or bytes */
	OP_ENUM,
	OP_UNION,
	OP_ERROR /* a writer union branch the reader can't read */
};

struct decode_op {
	uint8_t kind;               /* enum decode_op_kind */
	uint8_t slot;               /* enum decode_slot */
	uint32_t n;                 /* enum symbols / union branches */
	uint8_t *enum_map;          /* [n]: writer symbol -> model type or DECODE_NO_SYMBOL */
	struct decode_op *branches; /* [n] for OP_UNION */
};

/* One writer field, in writer order: read into a slot, or skip. */
struct decode_step {
	const char *field;            /* writer field name, for details */
	const struct avsc_node *skip; /* non-NULL: skip a value of this writer type */
	struct decode_op op;
};

/* Everything needed to decode a body written with one writer schema. */
struct decode_plan {
	struct avsc *writer;
	uint64_t fingerprint;
	struct decode_step *steps;
	size_t n_steps;
	struct event defaults; /* reader defaults for fields the writer lacks */
};

struct decode_id {
	int32_t confluent_id;
	struct decode_plan *plan;
};

struct decoder {
	struct avsc *reader;
	const struct avsc_node *slot_type[SLOT_COUNT]; /* reader type per slot */
	const struct avsc_field *slot_field[SLOT_COUNT];
	uint8_t reader_enum_map[256]; /* reader symbol index -> model type */
	int reader_enum_default;      /* model type, or -1 when the enum has none */
	struct decode_plan **plans;   /* registered writers (single-object, ids) */
	size_t n_plans;
	struct decode_id *ids;
	size_t n_ids;
	struct decode_plan *plain;
};

/* Read cursor; why names the first problem for the detail string. */
struct decode_cur {
	const uint8_t *p;
	const uint8_t *end;
	const char *why;
	uint32_t map_entries;
	uint32_t array_items;
};

const char *
decode_err_name(enum decode_err err)
{
	switch (err) {
	case DECODE_OK:
		return "ok";
	case DECODE_TRUNCATED:
		return "truncated";
	case DECODE_BAD_MAGIC:
		return "bad_magic";
	case DECODE_UNKNOWN_FINGERPRINT:
		return "unknown_fingerprint";
	case DECODE_UNKNOWN_SCHEMA_ID:
		return "unknown_schema_id";
	case DECODE_MALFORMED:
		return "malformed";
	case DECODE_TOO_LARGE:
		return "too_large";
	case DECODE_MISSING_USER:
		return "missing_user";
	}
	return "unknown";
}

/* ---- plan compilation ---- */

static void
decode_op_fini(struct decode_op *op)
{
	if (op->branches != NULL)
		for (uint32_t i = 0; i < op->n; i++)
			decode_op_fini(&op->branches[i]);
	free(op->branches);
	free(op->enum_map);
	op->branches = NULL;
	op->enum_map = NULL;
}

static void
decode_plan_free(struct decode_plan *plan)
{
	if (plan == NULL)
		return;
	for (size_t i = 0; i < plan->n_steps; i++)
		decode_op_fini(&plan->steps[i].op);
	free(plan->steps);
	avsc_free(plan->writer);
	free(plan);
}

/* A schema node's name for error messages. */
static const char *
decode_type_name(const struct avsc_node *node)
{
	if (node->fullname != NULL)
		return node->fullname;
	return avsc_type_name(node->type);
}

/* Avro promotion rules plus identity, for non-named, non-union types. */
static int
decode_promotes(enum avsc_type w, enum avsc_type r)
{
	if (w == r)
		return 1;
	switch (r) {
	case AVSC_LONG:
		return w == AVSC_INT;
	case AVSC_FLOAT:
		return w == AVSC_INT || w == AVSC_LONG;
	case AVSC_DOUBLE:
		return w == AVSC_INT || w == AVSC_LONG || w == AVSC_FLOAT;
	case AVSC_STRING:
		return w == AVSC_BYTES;
	case AVSC_BYTES:
		return w == AVSC_STRING;
	default:
		return 0;
	}
}

/* Record pairs already compared (or being compared) during one check: keeps
 * recursive and widely shared record types linear instead of exponential. */
#define DECODE_COMPAT_MEMO 64
struct decode_compat {
	const struct avsc_node *w[DECODE_COMPAT_MEMO];
	const struct avsc_node *r[DECODE_COMPAT_MEMO];
	int ok[DECODE_COMPAT_MEMO]; /* 1 also while in progress (co-inductive) */
	size_t n;
};

static int decode_compatible_in(
    struct decode_compat *memo, const struct avsc_node *w, const struct avsc_node *r, int depth);

static int
decode_compatible_record(
    struct decode_compat *memo, const struct avsc_node *w, const struct avsc_node *r, int depth)
{
	size_t slot = memo->n;
	int ok = 1;

	for (size_t i = 0; i < memo->n; i++)
		if (memo->w[i] == w && memo->r[i] == r)
			return memo->ok[i];
	if (slot < DECODE_COMPAT_MEMO) {
		memo->w[slot] = w;
		memo->r[slot] = r;
		memo->ok[slot] = 1;
		memo->n++;
	}
	for (size_t i = 0; i < r->n && ok; i++) {
		const struct avsc_field *rf = &r->fields[i];
		size_t k;
		for (k = 0; k < w->n; k++)
			if (strcmp(w->fields[k].name, rf->name) == 0)
				break;
		ok = k == w->n ? rf->def != NULL
			       : decode_compatible_in(memo, w->fields[k].type, rf->type, depth + 1);
	}
	if (slot < DECODE_COMPAT_MEMO)
		memo->ok[slot] = ok;
	return ok;
}

/* 1 when a value of writer type w can be read as reader type r. */
static int
decode_compatible_in(
    struct decode_compat *memo, const struct avsc_node *w, const struct avsc_node *r, int depth)
{
	if (depth > DECODE_MAX_DEPTH)
		return 1; /* recursive types: checked further up */
	if (w->type == AVSC_UNION) {
		for (size_t i = 0; i < w->n; i++)
			if (decode_compatible_in(memo, w->branches[i], r, depth + 1))
				return 1;
		return 0;
	}
	if (r->type == AVSC_UNION) {
		for (size_t i = 0; i < r->n; i++)
			if (decode_compatible_in(memo, w, r->branches[i], depth + 1))
				return 1;
		return 0;
	}
	if (r->fullname != NULL) {
		if (w->type != r->type || strcmp(w->name, r->name) != 0)
			return 0;
		if (r->type == AVSC_FIXED)
			return w->size == r->size;
		if (r->type == AVSC_RECORD)
			return decode_compatible_record(memo, w, r, depth);
		return 1; /* enums: symbols are resolved when read */
	}
	if (r->type == AVSC_ARRAY || r->type == AVSC_MAP)
		return w->type == r->type &&
		    decode_compatible_in(memo, w->items, r->items, depth + 1);
	return decode_promotes(w->type, r->type);
}

static int
decode_compatible(const struct avsc_node *w, const struct avsc_node *r)
{
	struct decode_compat memo;

	memo.n = 0;
	return decode_compatible_in(&memo, w, r, 0);
}

/* Resolves a non-union writer type against the non-union reader type of slot. */
static int
decode_resolve_prim(struct decoder *dec, const struct avsc_node *w, const struct avsc_node *r,
    enum decode_slot slot, struct decode_op *op, char *errstr, size_t errstr_size)
{
	memset(op, 0, sizeof(*op));
	op->slot = (uint8_t)slot;
	if (r->type == AVSC_ENUM) {
		if (w->type != AVSC_ENUM || strcmp(w->name, r->name) != 0)
			goto incompatible;
		op->kind = OP_ENUM;
		op->n = (uint32_t)w->n;
		if ((op->enum_map = malloc(w->n)) == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			return -1;
		}
		for (size_t i = 0; i < w->n; i++) {
			int ri = -1;
			for (size_t k = 0; k < r->n; k++)
				if (strcmp(w->symbols[i], r->symbols[k]) == 0)
					ri = (int)k;
			op->enum_map[i] = ri >= 0           ? dec->reader_enum_map[ri]
			    : dec->reader_enum_default >= 0 ? (uint8_t)dec->reader_enum_default
							    : DECODE_NO_SYMBOL;
		}
		return 0;
	}
	if (w->fullname != NULL || !decode_promotes(w->type, r->type))
		goto incompatible;
	switch (w->type) {
	case AVSC_NULL:
		op->kind = OP_NULL;
		break;
	case AVSC_INT:
		op->kind = OP_INT;
		break;
	case AVSC_LONG:
		op->kind = OP_LONG;
		break;
	case AVSC_FLOAT:
		op->kind = OP_FLOAT;
		break;
	case AVSC_DOUBLE:
		op->kind = OP_DOUBLE;
		break;
	case AVSC_STRING:
	case AVSC_BYTES:
		op->kind = OP_STRING;
		break;
	default:
		goto incompatible;
	}
	return 0;
incompatible:
	snprintf(errstr, errstr_size, "field %s: writer type %s can't be read as %s",
	    decode_slot_names[slot], decode_type_name(w), decode_type_name(r));
	return -1;
}

/* Non-union writer against the slot's reader type: picks the reader branch
 * (exact type first, then the first promotion), as Avro does. */
static int
decode_resolve_one(struct decoder *dec, const struct avsc_node *w, enum decode_slot slot,
    struct decode_op *op, char *errstr, size_t errstr_size)
{
	const struct avsc_node *r = dec->slot_type[slot];

	if (r->type == AVSC_UNION) {
		const struct avsc_node *pick = NULL;
		for (size_t i = 0; i < r->n && pick == NULL; i++)
			if (r->branches[i]->type == w->type)
				pick = r->branches[i];
		for (size_t i = 0; i < r->n && pick == NULL; i++)
			if (decode_compatible(w, r->branches[i]))
				pick = r->branches[i];
		if (pick == NULL) {
			snprintf(errstr, errstr_size,
			    "field %s: no reader union branch for the writer type",
			    decode_slot_names[slot]);
			return -1;
		}
		r = pick;
	}
	return decode_resolve_prim(dec, w, r, slot, op, errstr, errstr_size);
}

static int
decode_resolve(struct decoder *dec, const struct avsc_node *w, enum decode_slot slot,
    struct decode_op *op, char *errstr, size_t errstr_size)
{
	size_t ok = 0;

	if (w->type != AVSC_UNION)
		return decode_resolve_one(dec, w, slot, op, errstr, errstr_size);
	memset(op, 0, sizeof(*op));
	op->kind = OP_UNION;
	op->slot = (uint8_t)slot;
	op->n = (uint32_t)w->n;
	if ((op->branches = calloc(w->n, sizeof(*op->branches))) == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	/* A branch the reader can't read is an error only when a message picks it. */
	for (size_t i = 0; i < w->n; i++) {
		char ignored[8];
		if (decode_resolve_one(dec, w->branches[i], slot, &op->branches[i], ignored,
			sizeof(ignored)) == 0) {
			ok++;
		} else {
			decode_op_fini(&op->branches[i]);
			memset(&op->branches[i], 0, sizeof(op->branches[i]));
			op->branches[i].kind = OP_ERROR;
			op->branches[i].slot = (uint8_t)slot;
		}
	}
	if (ok == 0) {
		snprintf(errstr, errstr_size, "field %s: no branch of the writer union can be read",
		    decode_slot_names[slot]);
		return -1;
	}
	return 0;
}

/* Applies the reader default of a slot field the writer lacks. */
static int
decode_apply_default(
    struct decoder *dec, enum decode_slot slot, struct event *ev, char *errstr, size_t errstr_size)
{
	const json_t *d = dec->slot_field[slot]->def;
	const struct avsc_node *r = dec->slot_type[slot];

	/* A union's default belongs to its first branch. */
	if (r->type == AVSC_UNION)
		r = r->branches[0];
	switch (slot) {
	case SLOT_EVENT_ID:
	case SLOT_USER_ID:
	case SLOT_ITEM_ID:
		if (!json_is_string(d))
			goto bad;
		if (slot == SLOT_EVENT_ID) {
			ev->event_id = json_string_value(d);
			ev->event_id_len = json_string_length(d);
		} else if (slot == SLOT_USER_ID) {
			ev->user_id = json_string_value(d);
			ev->user_id_len = json_string_length(d);
		} else {
			ev->item_id = json_string_value(d);
			ev->item_id_len = json_string_length(d);
		}
		return 0;
	case SLOT_TYPE:
		if (!json_is_string(d))
			goto bad;
		for (size_t i = 0; i < r->n; i++)
			if (strcmp(r->symbols[i], json_string_value(d)) == 0) {
				ev->type = dec->reader_enum_map[i];
				return 0;
			}
		goto bad;
	case SLOT_TS:
		if (!json_is_integer(d))
			goto bad;
		ev->ts_ms = json_integer_value(d);
		return 0;
	case SLOT_DWELL:
		if (r->type == AVSC_NULL && json_is_null(d)) {
			ev->dwell_ms = -1;
			return 0;
		}
		if (r->type != AVSC_INT || !json_is_integer(d) ||
		    json_integer_value(d) > INT32_MAX || json_integer_value(d) < INT32_MIN)
			goto bad;
		ev->dwell_ms = json_integer_value(d) < 0 ? -1 : (int32_t)json_integer_value(d);
		return 0;
	case SLOT_VALUE:
		if (r->type == AVSC_NULL && json_is_null(d)) {
			ev->has_value = 0;
			return 0;
		}
		if (r->type == AVSC_NULL || !json_is_number(d))
			goto bad;
		ev->has_value = 1;
		ev->value = (float)json_number_value(d);
		return 0;
	default:
		break;
	}
bad:
	snprintf(errstr, errstr_size, "reader field %s: default does not match its type",
	    decode_slot_names[slot]);
	return -1;
}

static enum decode_slot
decode_slot_of(const char *name)
{
	for (int s = SLOT_EVENT_ID; s < SLOT_COUNT; s++)
		if (strcmp(decode_slot_names[s], name) == 0)
			return (enum decode_slot)s;
	return SLOT_NONE;
}

/* Compiles the plan for writer schema text; takes nothing on failure. */
static struct decode_plan *
decode_plan_new(struct decoder *dec, const char *json, size_t len, char *errstr, size_t errstr_size)
{
	const struct avsc_node *w, *r = avsc_root(dec->reader);
	struct decode_plan *plan;
	char why[256];

	if ((plan = calloc(1, sizeof(*plan))) == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	if ((plan->writer = avsc_parse(json, len, why, sizeof(why))) == NULL) {
		snprintf(errstr, errstr_size, "writer schema: %s", why);
		goto fail;
	}
	plan->fingerprint = avsc_fingerprint(plan->writer);
	w = avsc_root(plan->writer);
	if (w->type != AVSC_RECORD || strcmp(w->name, r->name) != 0) {
		snprintf(errstr, errstr_size, "writer schema: top level is not a record named %s",
		    r->name);
		goto fail;
	}
	if ((plan->steps = calloc(w->n + 1, sizeof(*plan->steps))) == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	plan->defaults.dwell_ms = -1;
	/* Writer fields in writer order, matched to reader fields by name. */
	for (size_t i = 0; i < w->n; i++) {
		const struct avsc_field *wf = &w->fields[i];
		struct decode_step *st = &plan->steps[plan->n_steps++];
		const struct avsc_field *rf = NULL;
		enum decode_slot slot;

		st->field = wf->name;
		for (size_t k = 0; k < r->n && rf == NULL; k++)
			if (strcmp(r->fields[k].name, wf->name) == 0)
				rf = &r->fields[k];
		slot = rf != NULL ? decode_slot_of(rf->name) : SLOT_NONE;
		if (rf != NULL && slot == SLOT_NONE && !decode_compatible(wf->type, rf->type)) {
			snprintf(errstr, errstr_size,
			    "writer field %s: type not readable as the reader's", wf->name);
			goto fail;
		}
		if (slot == SLOT_NONE) {
			st->skip = wf->type;
			continue;
		}
		if (decode_resolve(dec, wf->type, slot, &st->op, why, sizeof(why)) != 0) {
			snprintf(errstr, errstr_size, "%s", why);
			goto fail;
		}
	}
	/* Reader fields the writer lacks take the reader's default. */
	for (size_t k = 0; k < r->n; k++) {
		const struct avsc_field *rf = &r->fields[k];
		enum decode_slot slot;
		size_t i;

		for (i = 0; i < w->n; i++)
			if (strcmp(w->fields[i].name, rf->name) == 0)
				break;
		if (i < w->n)
			continue;
		if (rf->def == NULL) {
			snprintf(errstr, errstr_size,
			    "reader field %s is not in the writer schema and has no default",
			    rf->name);
			goto fail;
		}
		slot = decode_slot_of(rf->name);
		if (slot != SLOT_NONE &&
		    decode_apply_default(dec, slot, &plan->defaults, errstr, errstr_size) != 0)
			goto fail;
	}
	return plan;
fail:
	decode_plan_free(plan);
	return NULL;
}

/* Checks the reader schema's fields against struct event and indexes them. */
static int
decode_check_reader(struct decoder *dec, char *errstr, size_t errstr_size)
{
	const struct avsc_node *r = avsc_root(dec->reader);

	if (r->type != AVSC_RECORD) {
		snprintf(errstr, errstr_size, "reader schema: top level is not a record");
		return -1;
	}
	for (size_t k = 0; k < r->n; k++) {
		const struct avsc_field *rf = &r->fields[k];
		enum decode_slot slot = decode_slot_of(rf->name);
		const struct avsc_node *t = rf->type, *nn = t;
		int ok;

		if (slot == SLOT_NONE)
			continue;
		dec->slot_type[slot] = t;
		dec->slot_field[slot] = rf;
		/* dwell_ms and value may be optional: [null, T] in either order. */
		if (t->type == AVSC_UNION && t->n == 2 &&
		    (slot == SLOT_DWELL || slot == SLOT_VALUE)) {
			if (t->branches[0]->type == AVSC_NULL)
				nn = t->branches[1];
			else if (t->branches[1]->type == AVSC_NULL)
				nn = t->branches[0];
		}
		switch (slot) {
		case SLOT_EVENT_ID:
		case SLOT_USER_ID:
		case SLOT_ITEM_ID:
			ok = t->type == AVSC_STRING;
			break;
		case SLOT_TYPE:
			ok = t->type == AVSC_ENUM && t->n <= 255;
			break;
		case SLOT_TS:
			ok = t->type == AVSC_LONG || t->type == AVSC_INT;
			break;
		case SLOT_DWELL:
			ok = nn->type == AVSC_INT;
			break;
		default:
			ok = nn->type == AVSC_FLOAT || nn->type == AVSC_DOUBLE;
			break;
		}
		if (!ok) {
			snprintf(errstr, errstr_size,
			    "reader schema: field %s has a type the decoder can't store", rf->name);
			return -1;
		}
	}
	for (int s = SLOT_EVENT_ID; s <= SLOT_TS; s++)
		if (dec->slot_type[s] == NULL) {
			snprintf(errstr, errstr_size, "reader schema: no field %s",
			    decode_slot_names[s]);
			return -1;
		}
	{
		const struct avsc_node *e = dec->slot_type[SLOT_TYPE];
		for (size_t i = 0; i < e->n; i++) {
			size_t m;
			for (m = 0; m < MODEL_N_TYPES; m++)
				if (strcmp(e->symbols[i], model_event_type_name((uint32_t)m)) == 0)
					break;
			if (m == MODEL_N_TYPES) {
				snprintf(errstr, errstr_size,
				    "reader schema: event type %s unknown to the model",
				    e->symbols[i]);
				return -1;
			}
			dec->reader_enum_map[i] = (uint8_t)m;
		}
		dec->reader_enum_default =
		    e->enum_default >= 0 ? dec->reader_enum_map[e->enum_default] : -1;
	}
	return 0;
}

/* Registers plan (taking it) unless its fingerprint is known; returns the
 * registered plan with that fingerprint, or NULL when out of memory. */
static struct decode_plan *
decode_register(struct decoder *dec, struct decode_plan *plan)
{
	struct decode_plan **plans;

	for (size_t i = 0; i < dec->n_plans; i++)
		if (dec->plans[i]->fingerprint == plan->fingerprint) {
			decode_plan_free(plan);
			return dec->plans[i];
		}
	if ((plans = realloc(dec->plans, (dec->n_plans + 1) * sizeof(*plans))) == NULL) {
		decode_plan_free(plan);
		return NULL;
	}
	dec->plans = plans;
	plans[dec->n_plans++] = plan;
	return plan;
}

struct decoder *
decoder_new(const char *reader_path, char *errstr, size_t errstr_size)
{
	struct decoder *dec = NULL;
	char *text = NULL;
	size_t len;
	char why[256];

	if ((text = file_read_all(
		 reader_path, DECODE_MAX_SCHEMA_BYTES, &len, errstr, errstr_size)) == NULL)
		return NULL;
	if ((dec = calloc(1, sizeof(*dec))) == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	if ((dec->reader = avsc_parse(text, len, why, sizeof(why))) == NULL) {
		snprintf(errstr, errstr_size, "%s: %s", reader_path, why);
		goto fail;
	}
	if (decode_check_reader(dec, why, sizeof(why)) != 0) {
		snprintf(errstr, errstr_size, "%s: %s", reader_path, why);
		goto fail;
	}
	/* The reader schema is also a writer: plain default and single-object. */
	if ((dec->plain = decode_plan_new(dec, text, len, why, sizeof(why))) == NULL) {
		snprintf(errstr, errstr_size, "%s: %s", reader_path, why);
		goto fail;
	}
	if (decoder_add_writer(dec, text, -1, why, sizeof(why)) != 0) {
		snprintf(errstr, errstr_size, "%s: %s", reader_path, why);
		goto fail;
	}
	free(text);
	return dec;
fail:
	free(text);
	decoder_free(dec);
	return NULL;
}

void
decoder_free(struct decoder *dec)
{
	if (dec == NULL)
		return;
	for (size_t i = 0; i < dec->n_plans; i++)
		decode_plan_free(dec->plans[i]);
	free(dec->plans);
	free(dec->ids);
	decode_plan_free(dec->plain);
	avsc_free(dec->reader);
	free(dec);
}

int
decoder_add_writer(struct decoder *dec, const char *schema_json, int32_t confluent_id, char *errstr,
    size_t errstr_size)
{
	struct decode_plan *plan;
	struct decode_id *ids;

	plan = decode_plan_new(dec, schema_json, strlen(schema_json), errstr, errstr_size);
	if (plan == NULL)
		return -1;
	if ((plan = decode_register(dec, plan)) == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	if (confluent_id < 0)
		return 0;
	for (size_t i = 0; i < dec->n_ids; i++)
		if (dec->ids[i].confluent_id == confluent_id) {
			if (dec->ids[i].plan == plan)
				return 0;
			snprintf(errstr, errstr_size,
			    "schema id %d is already registered for another schema",
			    (int)confluent_id);
			return -1;
		}
	if ((ids = realloc(dec->ids, (dec->n_ids + 1) * sizeof(*ids))) == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	dec->ids = ids;
	ids[dec->n_ids].confluent_id = confluent_id;
	ids[dec->n_ids].plan = plan;
	dec->n_ids++;
	return 0;
}

int
decoder_set_plain_writer(
    struct decoder *dec, const char *schema_json, char *errstr, size_t errstr_size)
{
	struct decode_plan *plan;

	plan = decode_plan_new(dec, schema_json, strlen(schema_json), errstr, errstr_size);
	if (plan == NULL)
		return -1;
	decode_plan_free(dec->plain);
	dec->plain = plan;
	return 0;
}

/* ---- decoding ---- */

/* Zigzag varint long (avro/binary.h), with the reason when it is bad. */
static enum decode_err
decode_long(struct decode_cur *cur, int64_t *out)
{
	switch (avro_read_long(&cur->p, cur->end, out)) {
	case AVRO_READ_OK:
		return DECODE_OK;
	case AVRO_READ_TRUNCATED:
		cur->why = "varint cut short";
		return DECODE_TRUNCATED;
	case AVRO_READ_MALFORMED:
		break;
	}
	cur->why = "varint longer than 64 bits"; /* a tenth byte above 1 */
	return DECODE_MALFORMED;
}

static enum decode_err
decode_int(struct decode_cur *cur, int32_t *out)
{
	int64_t v;
	enum decode_err err = decode_long(cur, &v);

	if (err != DECODE_OK)
		return err;
	if (v < INT32_MIN || v > INT32_MAX) {
		cur->why = "int out of range";
		return DECODE_MALFORMED;
	}
	*out = (int32_t)v;
	return DECODE_OK;
}

/* A length prefix: negative is malformed, over max too large, past the end
 * truncated. */
static enum decode_err
decode_len(struct decode_cur *cur, size_t max, size_t *out)
{
	int64_t v;
	enum decode_err err = decode_long(cur, &v);

	if (err != DECODE_OK)
		return err;
	if (v < 0) {
		cur->why = "negative length";
		return DECODE_MALFORMED;
	}
	if ((uint64_t)v > max) {
		cur->why = "string or bytes over the size limit";
		return DECODE_TOO_LARGE;
	}
	if ((uint64_t)v > (uint64_t)(cur->end - cur->p)) {
		cur->why = "string or bytes past the end";
		return DECODE_TRUNCATED;
	}
	*out = (size_t)v;
	return DECODE_OK;
}

static enum decode_err
decode_need(struct decode_cur *cur, size_t n)
{
	if ((size_t)(cur->end - cur->p) < n) {
		cur->why = "value past the end";
		return DECODE_TRUNCATED;
	}
	return DECODE_OK;
}

static float
decode_le_float(const uint8_t *p)
{
	uint32_t u =
	    (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static uint64_t
decode_le64(const uint8_t *p)
{
	uint64_t u = 0;

	for (int i = 7; i >= 0; i--)
		u = u << 8 | p[i];
	return u;
}

static double
decode_le_double(const uint8_t *p)
{
	uint64_t u = decode_le64(p);
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

/* Skips one value of writer type node (a field the reader does not store). */
static enum decode_err
decode_skip(struct decode_cur *cur, const struct avsc_node *node, int depth)
{
	enum decode_err err = DECODE_OK;
	int64_t v;
	int32_t i32;
	size_t n;

	if (depth > DECODE_MAX_DEPTH) {
		cur->why = "nested too deep";
		return DECODE_TOO_LARGE;
	}
	switch (node->type) {
	case AVSC_NULL:
		return DECODE_OK;
	case AVSC_BOOLEAN:
		if ((err = decode_need(cur, 1)) != DECODE_OK)
			return err;
		if (*cur->p++ > 1) {
			cur->why = "boolean not 0 or 1";
			return DECODE_MALFORMED;
		}
		return DECODE_OK;
	case AVSC_INT:
		return decode_int(cur, &i32);
	case AVSC_LONG:
		return decode_long(cur, &v);
	case AVSC_FLOAT:
	case AVSC_DOUBLE:
		n = node->type == AVSC_FLOAT ? 4 : 8;
		if ((err = decode_need(cur, n)) == DECODE_OK)
			cur->p += n;
		return err;
	case AVSC_BYTES:
	case AVSC_STRING:
		if ((err = decode_len(cur, DECODE_MAX_STRING_BYTES, &n)) == DECODE_OK)
			cur->p += n;
		return err;
	case AVSC_FIXED:
		if ((uint64_t)node->size > (uint64_t)(cur->end - cur->p)) {
			cur->why = "fixed past the end";
			return DECODE_TRUNCATED;
		}
		cur->p += node->size;
		return DECODE_OK;
	case AVSC_ENUM:
		if ((err = decode_long(cur, &v)) != DECODE_OK)
			return err;
		if (v < 0 || (uint64_t)v >= node->n) {
			cur->why = "enum index out of range";
			return DECODE_MALFORMED;
		}
		return DECODE_OK;
	case AVSC_UNION:
		if ((err = decode_long(cur, &v)) != DECODE_OK)
			return err;
		if (v < 0 || (uint64_t)v >= node->n) {
			cur->why = "union index out of range";
			return DECODE_MALFORMED;
		}
		return decode_skip(cur, node->branches[v], depth + 1);
	case AVSC_RECORD:
		for (size_t k = 0; k < node->n && err == DECODE_OK; k++)
			err = decode_skip(cur, node->fields[k].type, depth + 1);
		return err;
	case AVSC_ARRAY:
	case AVSC_MAP:
		/* Blocks of count items, 0 ends; a negative count is followed by
		 * the block's byte size. Items are counted per message. */
		for (;;) {
			uint32_t *used =
			    node->type == AVSC_MAP ? &cur->map_entries : &cur->array_items;
			uint32_t limit = node->type == AVSC_MAP ? DECODE_MAX_MAP_ENTRIES
								: DECODE_MAX_ARRAY_ITEMS;
			if ((err = decode_long(cur, &v)) != DECODE_OK)
				return err;
			if (v == 0)
				return DECODE_OK;
			if (v < 0) {
				int64_t bytes;
				if (v == INT64_MIN) {
					cur->why = "bad block count";
					return DECODE_MALFORMED;
				}
				v = -v;
				if ((err = decode_long(cur, &bytes)) != DECODE_OK)
					return err;
				if (bytes < 0) {
					cur->why = "negative block size";
					return DECODE_MALFORMED;
				}
			}
			if ((uint64_t)v > limit - *used) {
				cur->why = node->type == AVSC_MAP ? "too many map entries"
								  : "too many array items";
				return DECODE_TOO_LARGE;
			}
			*used += (uint32_t)v;
			for (int64_t k = 0; k < v; k++) {
				if (node->type == AVSC_MAP &&
				    (err = decode_len(cur, DECODE_MAX_STRING_BYTES, &n)) ==
					DECODE_OK)
					cur->p += n;
				if (err == DECODE_OK)
					err = decode_skip(cur, node->items, depth + 1);
				if (err != DECODE_OK)
					return err;
			}
		}
	}
	cur->why = "unknown schema node";
	return DECODE_MALFORMED;
}

/* Stores a number/null read by op into its slot (types checked at compile). */
static void
decode_store_num(struct event *ev, uint8_t slot, int is_null, int64_t i, double d, int is_int)
{
	switch (slot) {
	case SLOT_TS:
		ev->ts_ms = i;
		break;
	case SLOT_DWELL:
		/* Negative durations carry no information: same as null. */
		ev->dwell_ms = is_null || i < 0 ? -1 : (int32_t)i;
		break;
	case SLOT_VALUE:
		ev->has_value = !is_null;
		ev->value = is_null ? 0.0f : is_int ? (float)i : (float)d;
		break;
	default:
		break;
	}
}

static enum decode_err
decode_run_op(struct decode_cur *cur, const struct decode_op *op, struct event *ev)
{
	enum decode_err err;
	int64_t v;
	int32_t i32;
	size_t n;

	switch (op->kind) {
	case OP_NULL:
		decode_store_num(ev, op->slot, 1, 0, 0.0, 1);
		return DECODE_OK;
	case OP_INT:
		if ((err = decode_int(cur, &i32)) != DECODE_OK)
			return err;
		decode_store_num(ev, op->slot, 0, i32, 0.0, 1);
		return DECODE_OK;
	case OP_LONG:
		if ((err = decode_long(cur, &v)) != DECODE_OK)
			return err;
		decode_store_num(ev, op->slot, 0, v, 0.0, 1);
		return DECODE_OK;
	case OP_FLOAT:
		if ((err = decode_need(cur, 4)) != DECODE_OK)
			return err;
		decode_store_num(ev, op->slot, 0, 0, decode_le_float(cur->p), 0);
		cur->p += 4;
		return DECODE_OK;
	case OP_DOUBLE:
		if ((err = decode_need(cur, 8)) != DECODE_OK)
			return err;
		decode_store_num(ev, op->slot, 0, 0, decode_le_double(cur->p), 0);
		cur->p += 8;
		return DECODE_OK;
	case OP_STRING:
		if ((err = decode_len(cur, DECODE_MAX_STRING_BYTES, &n)) != DECODE_OK)
			return err;
		if (op->slot == SLOT_EVENT_ID) {
			ev->event_id = (const char *)cur->p;
			ev->event_id_len = n;
		} else if (op->slot == SLOT_USER_ID) {
			ev->user_id = (const char *)cur->p;
			ev->user_id_len = n;
		} else {
			ev->item_id = (const char *)cur->p;
			ev->item_id_len = n;
		}
		cur->p += n;
		return DECODE_OK;
	case OP_ENUM:
		if ((err = decode_long(cur, &v)) != DECODE_OK)
			return err;
		if (v < 0 || (uint64_t)v >= op->n) {
			cur->why = "enum index out of range";
			return DECODE_MALFORMED;
		}
		if (op->enum_map[v] == DECODE_NO_SYMBOL) {
			cur->why = "enum symbol unknown to the reader, which has no default";
			return DECODE_MALFORMED;
		}
		ev->type = op->enum_map[v];
		return DECODE_OK;
	case OP_UNION:
		if ((err = decode_long(cur, &v)) != DECODE_OK)
			return err;
		if (v < 0 || (uint64_t)v >= op->n) {
			cur->why = "union index out of range";
			return DECODE_MALFORMED;
		}
		return decode_run_op(cur, &op->branches[v], ev);
	default:
		cur->why = "writer union branch not readable by the reader";
		return DECODE_MALFORMED;
	}
}

/* Writes the three parts of a failure detail, when the caller wants one. */
static void
decode_detail(char *detail, size_t detail_size, const char *a, const char *b, const char *c)
{
	if (detail != NULL && detail_size > 0)
		snprintf(detail, detail_size, "%s%s%s", a, b, c);
}

enum decode_err
decoder_decode(struct decoder *dec, const void *buf, size_t len, struct event *ev, char *detail,
    size_t detail_size)
{
	const uint8_t *b = buf;
	const struct decode_plan *plan = NULL;
	struct decode_cur cur;
	struct event out;
	enum decode_err err;
	char num[32];

	if (len == 0) {
		decode_detail(detail, detail_size, "empty message", "", "");
		return DECODE_BAD_MAGIC;
	}
	if (len > DECODE_MAX_MESSAGE_BYTES) {
		decode_detail(detail, detail_size, "message over the size limit", "", "");
		return DECODE_TOO_LARGE;
	}
	cur.end = b + len;
	if (b[0] == 0xc3) {
		/* A plain body can't start with C3: that is a negative length. */
		if (len >= 2 && b[1] != 0x01) {
			decode_detail(detail, detail_size, "C3 not followed by 01", "", "");
			return DECODE_BAD_MAGIC;
		}
		if (len < DECODE_SO_HEADER) {
			decode_detail(
			    detail, detail_size, "single-object header cut short", "", "");
			return DECODE_TRUNCATED;
		}
		uint64_t fp = decode_le64(b + 2);
		for (size_t i = 0; i < dec->n_plans && plan == NULL; i++)
			if (dec->plans[i]->fingerprint == fp)
				plan = dec->plans[i];
		if (plan == NULL) {
			/* Wire byte order, as fastavro and Java print fingerprints. */
			for (int i = 0; i < 8; i++)
				snprintf(
				    num + 2 * i, sizeof(num) - 2 * (size_t)i, "%02x", b[2 + i]);
			decode_detail(detail, detail_size, "fingerprint ", num, "");
			return DECODE_UNKNOWN_FINGERPRINT;
		}
		cur.p = b + DECODE_SO_HEADER;
	} else if (b[0] == 0x00) {
		if (len < DECODE_CF_HEADER) {
			decode_detail(detail, detail_size, "Confluent header cut short", "", "");
			return DECODE_TRUNCATED;
		}
		int32_t id = (int32_t)((uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 |
		    (uint32_t)b[3] << 8 | b[4]);
		for (size_t i = 0; i < dec->n_ids && plan == NULL; i++)
			if (dec->ids[i].confluent_id == id)
				plan = dec->ids[i].plan;
		if (plan == NULL) {
			snprintf(num, sizeof(num), "%ld", (long)id);
			decode_detail(detail, detail_size, "schema id ", num, "");
			return DECODE_UNKNOWN_SCHEMA_ID;
		}
		cur.p = b + DECODE_CF_HEADER;
	} else {
		plan = dec->plain;
		cur.p = b;
	}
	cur.why = NULL;
	cur.map_entries = 0;
	cur.array_items = 0;
	out = plan->defaults;
	for (size_t i = 0; i < plan->n_steps; i++) {
		const struct decode_step *st = &plan->steps[i];
		err = st->skip != NULL ? decode_skip(&cur, st->skip, 0)
				       : decode_run_op(&cur, &st->op, &out);
		if (err != DECODE_OK) {
			decode_detail(detail, detail_size, st->field, ": ", cur.why);
			return err;
		}
	}
	if (cur.p != cur.end) {
		decode_detail(detail, detail_size, "trailing bytes after the record", "", "");
		return DECODE_MALFORMED;
	}
	if (out.user_id_len == 0 || out.item_id_len == 0) {
		decode_detail(detail, detail_size, out.user_id_len == 0 ? "user_id" : "item_id",
		    " empty", "");
		return DECODE_MISSING_USER;
	}
	if (out.event_id_len == 0) {
		decode_detail(detail, detail_size, "event_id empty", "", "");
		return DECODE_MALFORMED;
	}
	*ev = out;
	return DECODE_OK;
}
