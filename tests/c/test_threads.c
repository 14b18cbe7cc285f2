/* test_threads.c — several writer and reader threads on one handle, and on
 * two handles (two mappings) of one posix segment.  This is the program
 * the TSan build is for.
 *
 * Every reader must receive every message of every writer exactly once,
 * intact, in each writer's order.  A last case checks the global order
 * by sequence number that requirement 2 asks for ("a reader receives
 * samples oldest-first by sequence number") while two writers commit
 * concurrently.
 */
#include "zdtest.h"

#define NWRITERS 3
#define NREADERS 2
#define PER_WRITER 25000u

struct wctx {
	zd_segment_t *seg;
	uint64_t id;
	int *go;
	int rc;
	uint64_t sent;
};

struct rctx {
	zd_segment_t *seg;
	zd_reader_t r;
	zdt_rx_t rx;
	uint64_t n_writers;
};

static void *writer_thread(void *arg)
{
	struct wctx *w = arg;

	while (!__atomic_load_n(w->go, __ATOMIC_ACQUIRE))
		sched_yield();
	for (uint64_t i = 0; i < PER_WRITER; i++) {
		w->rc = zdt_send(w->seg, w->id, i, zd_now_ns() + 20 * ZDT_S, NULL);
		if (w->rc != 0)
			break;
		w->sent++;
	}
	return NULL;
}

static void *reader_thread(void *arg)
{
	struct rctx *r = arg;

	zdt_receive(r->seg, &r->r, &r->rx, 20 * ZDT_S, 0);
	return NULL;
}

/* Runs NWRITERS writers and NREADERS readers; writer i uses wseg[i %
 * nseg], reader j rseg[j % nseg]. */
static uint64_t run_stream(zd_segment_t **segs, int nseg, int n_writers,
			   int n_readers)
{
	uint64_t sn_back = 0;
	struct wctx w[NWRITERS];
	struct rctx *r = calloc((size_t)n_readers, sizeof(*r));
	pthread_t wt[NWRITERS], rt[NREADERS];
	int go = 0;
	uint64_t t0;
	zd_segment_info_t info;

	REQUIRE(r != NULL);
	REQUIRE(n_writers <= NWRITERS && n_readers <= NREADERS);
	REQUIRE_OK(zd_segment_info(segs[0], &info));
	for (int j = 0; j < n_readers; j++) {
		r[j].seg = segs[j % nseg];
		REQUIRE_OK(zd_reader_open(r[j].seg, 0, &r[j].r));
		zdt_rx_init(&r[j].rx, j, (uint64_t)n_writers, PER_WRITER);
		REQUIRE(pthread_create(&rt[j], NULL, reader_thread, &r[j]) == 0);
	}
	for (int i = 0; i < n_writers; i++) {
		w[i].seg = segs[i % nseg];
		w[i].id = (uint64_t)i;
		w[i].go = &go;
		w[i].rc = 0;
		w[i].sent = 0;
		REQUIRE(pthread_create(&wt[i], NULL, writer_thread, &w[i]) == 0);
	}
	t0 = zdt_now_ns();
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < n_writers; i++)
		pthread_join(wt[i], NULL);
	for (int j = 0; j < n_readers; j++)
		pthread_join(rt[j], NULL);
	printf("# %d writers x %u to %d readers over %d handle(s): %.2f s\n",
	       n_writers, PER_WRITER, n_readers, nseg,
	       (double)(zdt_now_ns() - t0) / 1e9);
	for (int i = 0; i < n_writers; i++) {
		CHECK_OK(w[i].rc);
		CHECK_EQ(w[i].sent, PER_WRITER);
	}
	for (int j = 0; j < n_readers; j++) {
		zdt_rx_print(&r[j].rx.rep);
		CHECK_RX(&r[j].rx.rep, (uint64_t)n_writers * PER_WRITER);
		sn_back += r[j].rx.rep.sn_back;
		CHECK_OK(zd_reader_close(r[j].seg, &r[j].r));
	}
	{
		zd_segment_info_t after;

		CHECK_OK(zd_segment_info(segs[0], &after));
		CHECK_EQ(after.counters.commits - info.counters.commits,
			 (uint64_t)n_writers * PER_WRITER);
		CHECK_EQ(after.counters.corrupt_dropped, 0);
		CHECK_EQ(after.counters.reclaims, 0);
	}
	free(r);
	return sn_back;
}

static void one_handle(zdt_ctx_t *c)
{
	zd_segment_t *segs[1] = { c->seg };

	run_stream(segs, 1, NWRITERS, NREADERS);
}

static void two_handles(zdt_ctx_t *c)
{
	zd_segment_t *segs[2] = { c->seg, zdt_attach(c) };

	run_stream(segs, 2, NWRITERS, NREADERS);
}

/* One writer: the sequence numbers a reader sees strictly increase. */
static void one_writer_sn_order(zdt_ctx_t *c)
{
	zd_segment_t *segs[1] = { c->seg };

	CHECK_EQ(run_stream(segs, 1, 1, NREADERS), 0);
}

/* Two writers: requirement 2 says a reader receives samples oldest-first
 * by sequence number.  An inversion needs a commit to be overtaken between
 * taking its sequence number and publishing, so the case runs rounds for
 * up to 5 s (stopping at the first inversion) and counts every sequence
 * number that went backwards. */
static void two_writers_sn_order(zdt_ctx_t *c)
{
	zd_segment_t *segs[1] = { c->seg };
	uint64_t t0 = zdt_now_ns(), back = 0;
	int rounds = 0;

	do {
		back += run_stream(segs, 1, 2, 1);
		rounds++;
	} while (back == 0 && zdt_now_ns() - t0 < 5 * ZDT_S && rounds < 500);
	printf("# %d rounds, %llu sequence numbers went backwards\n", rounds,
	       (unsigned long long)back);
	CHECK_EQ(back, 0);
}

/* Readers opening and closing while writers run: the registry is used
 * concurrently from several threads of one handle. */
struct churn {
	zd_segment_t *seg;
	int *stop;
	int errors;
	uint64_t opens;
};

static void *churn_thread(void *arg)
{
	struct churn *ch = arg;

	while (!__atomic_load_n(ch->stop, __ATOMIC_ACQUIRE)) {
		zd_reader_t r;
		zd_view_t v;
		int rc = zd_reader_open(ch->seg, 2, &r);

		if (rc == -EUSERS)
			continue;
		if (rc != 0) {
			ch->errors++;
			continue;
		}
		ch->opens++;
		for (int k = 0; k < 3; k++) {
			rc = zd_reader_take(ch->seg, &r, &v);
			if (rc == 0)
				rc = zd_slot_release(ch->seg, &v);
			else if (rc == -EAGAIN || rc == -EBADMSG)
				rc = 0;
			if (rc != 0)
				ch->errors++;
		}
		if (zd_reader_close(ch->seg, &r) != 0)
			ch->errors++;
	}
	return NULL;
}

static void readers_churn_while_streaming(zdt_ctx_t *c)
{
	zd_segment_t *segs[1] = { c->seg };
	struct churn ch[2];
	pthread_t th[2];
	int stop = 0;

	for (int i = 0; i < 2; i++) {
		ch[i].seg = c->seg;
		ch[i].stop = &stop;
		ch[i].errors = 0;
		ch[i].opens = 0;
		REQUIRE(pthread_create(&th[i], NULL, churn_thread, &ch[i]) == 0);
	}
	run_stream(segs, 1, 2, 1);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(ch[i].errors, 0);
		CHECK_GT(ch[i].opens, 0);
	}
	CHECK_EQ(zd_segment_active_mask(c->seg), 0);
}

/* A view pins its slot: while it is held the bytes it shows never
 * change, however hard writers recycle (RECLAIM, no reader holding
 * anything).  Viewers acquire random slots, check the payload is uniform,
 * yield, check again, release; writers fill whole slots with one byte and
 * commit, until every viewer has held PIN_VIEWS views while the writers made
 * PIN_COMMITS commits between them (8 s cap): on a loaded machine the
 * viewers keep viewing until the writers have recycled that often. */
#define PIN_VIEWS 1000u
#define PIN_COMMITS 200u
#define PIN_CAP 64u

struct pin_shared {
	int viewers_done;
	uint64_t commits;       /* both writers' */
	uint64_t deadline;
};

struct pin_writer {
	zd_segment_t *seg;
	struct pin_shared *sh;
	uint64_t commits;
	int errors;
};

struct pin_viewer {
	zd_segment_t *seg;
	struct pin_shared *sh;
	uint64_t views, torn, errors;
	uint32_t seed;
};

static void *pin_writer_thread(void *arg)
{
	struct pin_writer *w = arg;

	while (__atomic_load_n(&w->sh->viewers_done, __ATOMIC_ACQUIRE) < 2 &&
	       zdt_now_ns() < w->sh->deadline) {
		uint32_t slot;
		void *data = NULL;
		int rc = zd_writer_loan(w->seg, ZD_OVERFLOW_RECLAIM,
					zd_now_ns() + 10 * ZDT_S, 0, &slot);

		if (rc != 0 ||
		    zd_slot_data_ptr(w->seg, slot, &data, NULL, NULL) != 0) {
			w->errors++;
			break;
		}
		memset(data, (int)(w->commits & 0xff), PIN_CAP);
		if (zd_slot_commit_in_place(w->seg, slot, PIN_CAP, NULL) != 0)
			w->errors++;
		w->commits++;
		__atomic_fetch_add(&w->sh->commits, 1, __ATOMIC_RELAXED);
		/* leave committed slots around long enough to be pinned */
		if (w->commits % 4 == 0)
			sched_yield();
	}
	return NULL;
}

static void *pin_viewer_thread(void *arg)
{
	struct pin_viewer *v = arg;

	while ((v->views < PIN_VIEWS ||
		__atomic_load_n(&v->sh->commits, __ATOMIC_RELAXED) < PIN_COMMITS) &&
	       zdt_now_ns() < v->sh->deadline) {
		zd_view_t view;
		const unsigned char *d;
		unsigned char b;
		int rc;

		v->seed = v->seed * 1103515245u + 12345u;
		rc = zd_slot_acquire(v->seg, (v->seed >> 16) % 4u, &view);
		if (rc == -ENODATA)
			continue;
		if (rc != 0) {
			v->errors++;
			continue;
		}
		d = view.data;
		b = d[0];
		for (int round = 0; round < 3; round++) {
			for (uint32_t k = 0; k < PIN_CAP; k++)
				if (d[k] != b) {
					v->torn++;
					break;
				}
			sched_yield();
		}
		if (zd_slot_release(v->seg, &view) != 0)
			v->errors++;
		v->views++;
	}
	__atomic_fetch_add(&v->sh->viewers_done, 1, __ATOMIC_ACQ_REL);
	return NULL;
}

static void pinned_views_are_never_recycled(zdt_ctx_t *c)
{
	zd_segment_t *other = c->backend == ZD_BACKEND_POSIX ? zdt_attach(c) : c->seg;
	struct pin_shared sh = { 0, 0, zdt_now_ns() + 8 * ZDT_S };
	struct pin_writer w[2];
	struct pin_viewer v[2];
	pthread_t wt[2], vt[2];

	for (int i = 0; i < 2; i++) {
		w[i].seg = i ? other : c->seg;
		w[i].sh = &sh;
		w[i].commits = 0;
		w[i].errors = 0;
		REQUIRE(pthread_create(&wt[i], NULL, pin_writer_thread, &w[i]) == 0);
	}
	for (int i = 0; i < 2; i++) {
		v[i].seg = i ? other : c->seg;
		v[i].sh = &sh;
		v[i].views = v[i].torn = v[i].errors = 0;
		v[i].seed = 7u + (uint32_t)i;
		REQUIRE(pthread_create(&vt[i], NULL, pin_viewer_thread, &v[i]) == 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(vt[i], NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(w[i].errors, 0);
		CHECK_GT(w[i].commits, 0);
		CHECK_EQ(v[i].errors, 0);
		CHECK_EQ(v[i].torn, 0);
		CHECK_GE(v[i].views, PIN_VIEWS);
	}
	CHECK_GE(w[0].commits + w[1].commits, PIN_COMMITS);
	printf("# %llu + %llu commits recycled around %llu + %llu views\n",
	       (unsigned long long)w[0].commits, (unsigned long long)w[1].commits,
	       (unsigned long long)v[0].views, (unsigned long long)v[1].views);
}

int main(void)
{
	zd_config_t cfg = zdt_cfg(16, 200);

	zdt_run_both("one_handle_3_writers_2_readers", &cfg, one_handle);
	zdt_run_posix("two_handles_3_writers_2_readers", &cfg, two_handles);
	zdt_run_both("one_writer_sn_order", &cfg, one_writer_sn_order);
	zdt_run_both("readers_churn_while_streaming", &cfg,
		     readers_churn_while_streaming);
	{
		zd_config_t small = zdt_cfg(4, PIN_CAP);

		zdt_run_both("pinned_views_are_never_recycled", &small,
			     pinned_views_are_never_recycled);
	}
	zdt_run_both("two_writers_sn_order", &cfg, two_writers_sn_order);
	return zdt_finish();
}
