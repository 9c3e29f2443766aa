/*
 * Changing the serving model in place: SIGHUP (reloadable config keys and
 * the model file, loaded aside and swapped after a flush with the old
 * model) and live catalog items from topic.items (the model file extended).
 */
#include "consumer_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "config.h"
#include "items.h"
#include "log.h"
#include "modelfile.h"
#include "notify.h"
#include "sink_redis.h"
#include "state.h"
#include "users.h"
#include "userview.h"

/* Takes the reloadable values of nc into the running config (the rest needs a restart). */
static void
consumer_take_reloadable(struct consumer *c, struct config *nc)
{
	struct config *cfg = c->cfg;
	char *tmp;

	cfg->poll_timeout_ms = nc->poll_timeout_ms;
	cfg->redis_top_n = nc->redis_top_n;
	cfg->flush_interval_ms = nc->flush_interval_ms;
	cfg->flush_when_caught_up = nc->flush_when_caught_up;
	cfg->tiers_calibrate = nc->tiers_calibrate;
	cfg->topn_search = nc->topn_search;
	cfg->topn_probe_items = nc->topn_probe_items;
	cfg->events_max_age_s = nc->events_max_age_s;
	cfg->events_max_future_s = nc->events_max_future_s;
	cfg->events_key_mismatch = nc->events_key_mismatch;
	cfg->snapshot_every_events = nc->snapshot_every_events;
	cfg->snapshot_max_interval_s = nc->snapshot_max_interval_s;
	cfg->log_level = nc->log_level;
	cfg->shutdown_timeout_ms = nc->shutdown_timeout_ms;
	cfg->items_apply_interval_ms = nc->items_apply_interval_ms;
	tmp = cfg->model_path;
	cfg->model_path = nc->model_path;
	nc->model_path = tmp;
	log_set_level((enum log_level)cfg->log_level);
}

/*
 * Swaps in a new serving model m2 over the model file base2 (base2 may be
 * the current base, m2 may be base2): flushes every dirty user with the old
 * model, commits, rebuilds the model-sized objects, swaps, frees what the
 * old pair no longer shares. Takes base2 and m2 (freed on failure; the old
 * model keeps serving). Returns 0, CONSUMER_SWAP_REDIS (the pre-swap flush
 * failed: the outage mode is on) or CONSUMER_SWAP_NOMEM, err set.
 */
#define CONSUMER_SWAP_REDIS (-1)
#define CONSUMER_SWAP_NOMEM (-2)
static int
consumer_swap_model(struct consumer *c, struct model *base2, struct model *m2, const char *what,
    char *err, size_t err_size)
{
	struct updater *up2;
	struct userview *uv2;
	struct user_state *scratch2;
	struct model *old_m, *old_base;
	float *vec2;
	int ret;

	/* Everything dirty goes out with the model that computed it. */
	if (consumer_flush(c, err, err_size) != 0) {
		consumer_redis_down(c, what, err);
		ret = CONSUMER_SWAP_REDIS;
		goto fail;
	}
	consumer_commit(c, -1, 0);
	if (consumer_model_objects(c, m2, &up2, &uv2, &scratch2, &vec2) != 0) {
		snprintf(err, err_size, "out of memory");
		ret = CONSUMER_SWAP_NOMEM;
		goto fail;
	}
	if (users_set_hparams(c->users, model_hparams(m2)) != 0)
		users_drop_all(c->users); /* all clean after the flush: they reload from Redis */
	updater_free(c->up);
	userview_free(c->uv);
	state_free(c->scratch);
	free(c->vec);
	old_m = c->m;
	old_base = c->base;
	c->up = up2;
	c->uv = uv2;
	c->scratch = scratch2;
	c->vec = vec2;
	c->base = base2;
	c->m = m2;
	c->model_version = model_hparams(m2)->model_version;
	consumer_online_swapped(c, old_m);
	if (old_m != old_base)
		model_free(old_m); /* an extension: never shared */
	if (old_base != base2)
		model_free(old_base);
	if (c->items != NULL)
		items_set_base(c->items, c->base);
	consumer_set_snap_limit(c);
	c->tier_names_pending = 1;
	if (!c->redis_down && sink_redis_write_tier_names(c->sink, c->m, err, err_size) == 0)
		c->tier_names_pending = 0;
	else if (!c->redis_down)
		log_warn("event=tier_names_write_failed error=\"%s\" action=retry_later", err);
	return 0;
fail:
	if (m2 != base2)
		model_free(m2);
	if (base2 != c->base)
		model_free(base2);
	return ret;
}

/*
 * The serving model for base: base extended by the live items it lacks, or
 * base itself (also when the live items cannot be added: logged).
 */
static struct model *
consumer_with_live_items(struct consumer *c, struct model *base)
{
	char err[CONSUMER_ERR_MAX];
	struct model *ext = NULL;

	if (c->items == NULL)
		return base;
	if (items_build(c->items, base, &ext, err, sizeof(err)) != 0) {
		log_error("event=live_items_not_applied error=\"%s\" action=model_file_alone", err);
		return base;
	}
	return ext != NULL ? ext : base;
}

/*
 * Live items changed: swaps in the model file plus the current live items
 * (same model_version: users are not re-warmed). Retried later on failure.
 */
void
consumer_apply_live_items(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX];
	struct model *m2;
	uint32_t before = model_n_items(c->m);

	m2 = consumer_with_live_items(c, c->base);
	if (m2 == c->base && c->m == c->base) {
		items_applied(c->items); /* nothing to add, nothing was added */
		return;
	}
	if (consumer_swap_model(c, c->base, m2, "live_items", err, sizeof(err)) != 0) {
		log_error("event=live_items_swap_failed error=\"%s\" action=retry_later", err);
		return;
	}
	items_applied(c->items);
	log_info("event=live_items_applied live_items=%zu items=%" PRIu32 " before=%" PRIu32
		 " base_items=%" PRIu32,
	    items_live(c->items), model_n_items(c->m), before, model_n_items(c->base));
}

/*
 * SIGHUP: re-reads the config (reloadable keys), loads the model aside,
 * extends it with the live items, flushes every user with the old model,
 * swaps. Users re-warm on their next event. On any failure the old model
 * keeps serving.
 */
void
consumer_reload(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX], names[CONSUMER_ERR_MAX];
	double load_s;
	struct model *m2;
	uint64_t old_version = c->model_version;
	int ret;

	notify_reloading(c->notify);
	c->n.reloads++;
	if (c->loader != NULL) {
		struct config *nc = c->loader(c->loader_opaque, err, sizeof(err));

		if (nc == NULL) {
			log_error("config reload FAILED: %s", err);
			c->n.reload_failures++;
			notify_ready(c->notify, "config reload failed; old configuration kept");
			return;
		}
		if (config_restart_keys(c->cfg, nc, names, sizeof(names)) > 0)
			log_warn(
			    "event=reload restart_needed=\"%s\" action=kept_running_values", names);
		consumer_take_reloadable(c, nc);
		config_free(nc);
	}
	load_s = clock_mono_s();
	m2 = model_load(c->cfg->model_path, err, sizeof(err));
	load_s = clock_mono_s() - load_s;
	if (m2 != NULL && !model_has_weights(m2)) {
		snprintf(err, sizeof(err), "%s is a catalog, not a model (no HPAR/WGHT sections)",
		    c->cfg->model_path);
		model_free(m2);
		m2 = NULL;
	}
	if (m2 == NULL) {
		log_error("model reload FAILED: %s", err); /* err names the file and section */
		c->n.reload_failures++;
		notify_ready(c->notify, "model reload failed; old model kept");
		return;
	}
	ret =
	    consumer_swap_model(c, m2, consumer_with_live_items(c, m2), "reload", err, sizeof(err));
	if (ret != 0) {
		if (ret == CONSUMER_SWAP_REDIS)
			log_error(
			    "model reload FAILED: redis unavailable for the pre-swap flush: %s",
			    err);
		else
			log_error("model reload FAILED: %s", err);
		c->n.reload_failures++;
		notify_ready(c->notify, "model reload failed; old model kept");
		return;
	}
	if (c->items != NULL)
		items_applied(c->items);
	c->model_load_s = load_s;
	c->model_loaded_ms = clock_wall_ms();
	log_info("event=model_reloaded path=%s old_version=%" PRIu64 " version=%" PRIu64
		 " items=%" PRIu32 " users_cached=%zu",
	    c->cfg->model_path, old_version, c->model_version, model_n_items(c->m),
	    users_count(c->users));
	notify_ready(c->notify, "consuming");
}
