/*
 * daemon/online.c: the rank of an item in a top-N, the rank turned into
 * hit@10, hit@N, reciprocal rank and NDCG@10 (repeats apart), and the
 * table's /metrics text per model version and event type.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "modelfile.h"
#include "online.h"

static int
near(double a, double b)
{
	return fabs(a - b) <= 1e-12 * fmax(1.0, fabs(b));
}

static int
test_rank(void)
{
	int fails = 0;
	const uint32_t list[] = { 9, 4, 7, 100, 2 };

	CHECK(online_rank(list, 5, 9) == 1, "rank of the first item is 1");
	CHECK(online_rank(list, 5, 2) == 5, "rank of the last item is N");
	CHECK(online_rank(list, 5, 5) == 0, "an absent item has rank 0");
	CHECK(online_rank(list, 0, 9) == 0, "an empty list has no rank");
	return fails;
}

static int
test_count(void)
{
	int fails = 0;
	struct online_counts oc = { 0 };
	double rr = 1.0 + 1.0 / 3 + 1.0 / 10 + 1.0 / 11;
	double ndcg = 1.0 + 1.0 / log2(4.0) + 1.0 / log2(11.0);

	online_count(&oc, 1, 0);
	online_count(&oc, 3, 0);
	online_count(&oc, 10, 0);
	online_count(&oc, 11, 0); /* in the list, past 10 */
	online_count(&oc, 0, 0);  /* absent */
	online_count(&oc, 0, 1);  /* repeats: apart, whatever their rank */
	online_count(&oc, 2, 1);
	CHECK(oc.events == 5 && oc.repeats == 2, "5 events measured, 2 repeats apart");
	CHECK(oc.hits_k == 3 && oc.hits_n == 4, "hit@10 at ranks 1, 3, 10; hit@N also at 11");
	CHECK(near(oc.rr_sum, rr), "reciprocal rank: 1 + 1/3 + 1/10 + 1/11");
	CHECK(near(oc.ndcg_sum, ndcg), "NDCG@10: 1/log2(r+1) for r = 1, 3, 10; 0 at 11");
	return fails;
}

static int
test_table(void)
{
	int fails = 0;
	struct online_table *t = online_table_new();
	char buf[8192];
	size_t o = 0;
	int a, b;

	CHECK(t != NULL, "table made");
	if (t == NULL)
		return fails;
	a = online_table_row(t, 7);
	b = online_table_row(t, 42);
	CHECK(a >= 0 && b >= 0 && a != b && online_table_row(t, 7) == a,
	    "one row per model version, found again");
	online_count(online_table_counts(t, a, MODEL_EV_CLICK), 1, 0);
	online_count(online_table_counts(t, a, MODEL_EV_CLICK), 12, 0);
	online_count(online_table_counts(t, b, MODEL_EV_VIEW), 0, 1);
	online_table_unmeasured(t);
	online_table_render(t, buf, sizeof(buf), &o);
	buf[o < sizeof(buf) ? o : sizeof(buf) - 1] = '\0';
	CHECK(strstr(buf, "# TYPE interestd_online_events_total counter\n") != NULL,
	    "events family typed counter");
	CHECK(strstr(buf,
		  "interestd_online_events_total{model_version=\"7\",type=\"CLICK\"} 2\n") != NULL,
	    "events of version 7, CLICK");
	CHECK(strstr(buf,
		  "interestd_online_hits_total{model_version=\"7\",type=\"CLICK\",k=\"10\"} "
		  "1\n") != NULL &&
		strstr(buf,
		    "interestd_online_hits_total{model_version=\"7\",type=\"CLICK\",k=\"n\"} "
		    "2\n") != NULL,
	    "hits k=10 and k=n");
	CHECK(strstr(buf,
		  "interestd_online_reciprocal_rank_sum{model_version=\"7\",type=\"CLICK\"} "
		  "1.0833333333333333\n") != NULL,
	    "reciprocal rank sum 1 + 1/12");
	CHECK(strstr(buf,
		  "interestd_online_repeats_total{model_version=\"42\",type=\"VIEW\"} 1\n") != NULL,
	    "repeats of version 42, VIEW");
	CHECK(strstr(buf, "type=\"LIKE\"") == NULL, "types never counted are left out");
	CHECK(strstr(buf, "interestd_online_unmeasured_total 1\n") != NULL, "unmeasured");
	online_table_free(t);
	online_table_free(NULL);
	return fails;
}

int
main(void)
{
	int fails = test_rank() + test_count() + test_table();

	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
