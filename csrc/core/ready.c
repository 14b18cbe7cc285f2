/* ready.c — readiness descriptors: one abstract AF_UNIX datagram socket per
 * armed entry (see zdshm/ready.h for the contract and the reasons).
 *
 * Ordering (per channel, all seq_cst; the same pair as notify.c's):
 *   waiter:   exchange(entry.ready_armed, 1), fetch_add(channel.armed) if
 *             it was 0, then load(channel.gen) and compare with `last`
 *   notifier: fetch_add(channel.gen) (in wake), then load(channel.armed);
 *             if not 0, exchange(entry.ready_armed, 0) of each entry, and
 *             the one that got 1 sends and does fetch_sub(channel.armed)
 * The token is stored (release) before the entry is ever armed and read
 * after the notifier's exchange, so the notifier sees it.  An entry whose
 * owner died while armed costs one failed send (ready_send_errors) and is
 * disarmed by it; the reap clears it as well.
 *
 * The armed count is a hint that a hostile segment may spoil: a wrong
 * count costs a scan of the entries (or a missed datagram, which is why
 * waiters also re-check on a timer); every index comes from our own loop.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define ZDI_READY_BIND_TRIES 8

static uint32_t *armed_word(zd_segment_t *seg, int space, uint32_t i)
{
	return space ? &seg->attach[i].ready_armed : &seg->readers[i].ready_armed;
}

static uint64_t *token_word(zd_segment_t *seg, int space, uint32_t i)
{
	return space ? &seg->attach[i].ready_token : &seg->readers[i].ready_token;
}

static struct zdi_channel *channel(zd_segment_t *seg, int space)
{
	return space ? &seg->hdr->space : &seg->hdr->data;
}

/* The abstract name of entry i's socket; returns the address length. */
static socklen_t ready_name(const zd_segment_t *seg, int space, uint32_t i,
			    uint64_t token, struct sockaddr_un *sa)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	/* sun_path[0] stays 0: the abstract namespace. */
	n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1,
		     "zdshm-ready/%016" PRIx64 "/%" PRId32 "/%c%" PRIu32 "/%016" PRIx64,
		     seg->created_realtime_ns, seg->owner_pid, space ? 'a' : 'r',
		     i, token);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1u + (size_t)n);
}

static uint64_t new_token(void)
{
	uint64_t t = 0;

	if (getrandom(&t, sizeof(t), GRND_NONBLOCK) != (ssize_t)sizeof(t))
		t = zd_now_ns() ^ ((uint64_t)(uint32_t)getpid() << 32) ^
		    (uint64_t)(uintptr_t)&t * UINT64_C(0x9e3779b97f4a7c15);
	return t != 0 ? t : 1;
}

/* Binds a socket for entry i and publishes its token.  Returns the fd or
 * -errno. */
static int bind_entry(zd_segment_t *seg, int space, uint32_t i)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	for (int tries = 0; tries < ZDI_READY_BIND_TRIES; tries++) {
		uint64_t token = new_token();
		socklen_t len = ready_name(seg, space, i, token, &sa);

		if (bind(fd, (struct sockaddr *)&sa, len) == 0) {
			/* Release: pairs with the notifier's load after its
			 * seq_cst exchange of the armed flag. */
			zdi_store_release_u64(token_word(seg, space, i), token);
			return fd;
		}
		if (errno != EADDRINUSE)
			break;
	}
	{
		int rc = -errno;

		close(fd);
		return rc;
	}
}

/* The socket (fd + 1) in *slot, bound on first use. */
static int entry_fd(zd_segment_t *seg, int space, uint32_t i, uint32_t *slot)
{
	uint32_t have = zdi_load_acquire_u32(slot);
	int fd;

	if (have != 0)
		return (int)(have - 1u);
	fd = bind_entry(seg, space, i);
	if (fd < 0)
		return fd;
	zdi_store_release_u32(slot, (uint32_t)fd + 1u);
	return fd;
}

/* One recv: arming is one-shot, so at most one datagram is usually
 * queued; a second one only makes the next wait return early, and that
 * wait drains it. */
static void drain(int fd)
{
	char buf[16];

	(void)recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
}

static void disarm(zd_segment_t *seg, int space, uint32_t i)
{
	uint32_t *armed = armed_word(seg, space, i);

	/* Only the owner sets the flag, so a 0 it reads stays 0 (notifiers
	 * only clear it): no read-modify-write on the common path. */
	if (zdi_load_relaxed_u32(armed) != 0 &&
	    zdi_exchange_seqcst_u32(armed, 0) != 0)
		zdi_fetch_sub_seqcst_u32(&channel(seg, space)->armed, 1);
}

static int arm(zd_segment_t *seg, int space, uint32_t i, uint32_t *slot,
	       uint32_t last)
{
	struct zdi_channel *ch = channel(seg, space);
	int fd = entry_fd(seg, space, i, slot);

	if (fd < 0)
		return fd;
	drain(fd);
	if (zdi_exchange_seqcst_u32(armed_word(seg, space, i), 1) == 0)
		zdi_fetch_add_seqcst_u32(&ch->armed, 1);
	/* Seq_cst: pairs with the notifier's bump of gen before its load of
	 * the armed count (wake in notify.c). */
	return zdi_load_seqcst_u32(&ch->gen) != last ? 1 : 0;
}

int zd_reader_ready_fd(zd_segment_t *seg, const zd_reader_t *r)
{
	int rc = zdi_reader_live(seg, r);

	if (rc < 0)
		return rc;
	return entry_fd(seg, 0, r->index, &seg->ready_rx[r->index]);
}

int zd_reader_ready_arm(zd_segment_t *seg, const zd_reader_t *r, uint64_t last)
{
	int rc = zdi_reader_live(seg, r);

	if (rc < 0)
		return rc;
	return arm(seg, 0, r->index, &seg->ready_rx[r->index], (uint32_t)last);
}

void zd_reader_ready_disarm(zd_segment_t *seg, const zd_reader_t *r)
{
	if (zdi_reader_live(seg, r) == 0)
		disarm(seg, 0, r->index);
}

int zd_writer_ready_fd(zd_segment_t *seg)
{
	if (seg == NULL)
		return -EINVAL;
	if (seg->attach_index >= ZD_ATTACH_MAX)
		return -ENOTCONN;
	return entry_fd(seg, 1, seg->attach_index, &seg->ready_space_rx);
}

int zd_writer_ready_arm(zd_segment_t *seg, uint64_t last)
{
	if (seg == NULL)
		return -EINVAL;
	if (seg->attach_index >= ZD_ATTACH_MAX)
		return -ENOTCONN;
	return arm(seg, 1, seg->attach_index, &seg->ready_space_rx,
		   (uint32_t)(last >> 32));
}

void zd_writer_ready_disarm(zd_segment_t *seg)
{
	if (seg != NULL && seg->attach_index < ZD_ATTACH_MAX)
		disarm(seg, 1, seg->attach_index);
}

/* The unbound socket this handle sends from, made on first use. */
static int tx_socket(zd_segment_t *seg)
{
	uint32_t have = zdi_load_acquire_u32(&seg->ready_tx);
	int fd;

	if (have != 0)
		return (int)(have - 1u);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (!zdi_cas_acq_rel_u32(&seg->ready_tx, &have, (uint32_t)fd + 1u)) {
		close(fd);              /* another thread was first */
		return (int)(have - 1u);
	}
	return fd;
}

/* One datagram to entry i's socket, counted. */
static void send_to(zd_segment_t *seg, int space, uint32_t i)
{
	uint64_t token = zdi_load_acquire_u64(token_word(seg, space, i));
	int fd = tx_socket(seg);
	struct sockaddr_un sa;
	socklen_t len;

	if (token == 0 || fd < 0) {
		ZDI_HCOUNT(seg, ready_send_errors);
		return;
	}
	len = ready_name(seg, space, i, token, &sa);
	/* EAGAIN: its queue is full, so it is readable already. */
	if (sendto(fd, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL,
		   (struct sockaddr *)&sa, len) == 1 || errno == EAGAIN)
		ZDI_HCOUNT(seg, ready_sends);
	else
		ZDI_HCOUNT(seg, ready_send_errors);
}

void zdi_ready_send(zd_segment_t *seg, int space)
{
	struct zdi_channel *ch = channel(seg, space);
	uint32_t n = space ? ZD_ATTACH_MAX : ZD_READER_MAX;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t *armed = armed_word(seg, space, i);

		if (zdi_load_relaxed_u32(armed) == 0 ||
		    zdi_exchange_seqcst_u32(armed, 0) == 0)
			continue;
		/* The exchange made us the one that sends (the token was
		 * stored before the arm, see the top). */
		zdi_fetch_sub_seqcst_u32(&ch->armed, 1);
		send_to(seg, space, i);
	}
}

int zd_reader_ready_poke(zd_segment_t *seg, const zd_reader_t *r)
{
	int fd = zd_reader_ready_fd(seg, r);

	if (fd < 0)
		return fd;
	disarm(seg, 0, r->index);
	send_to(seg, 0, r->index);
	return 0;
}

void zdi_ready_clear(zd_segment_t *seg, uint32_t r, uint32_t a)
{
	if (r < ZD_READER_MAX) {
		disarm(seg, 0, r);
		zdi_store_release_u64(&seg->readers[r].ready_token, 0);
	}
	if (a < ZD_ATTACH_MAX) {
		disarm(seg, 1, a);
		zdi_store_release_u64(&seg->attach[a].ready_token, 0);
	}
}

static void close_slot(uint32_t *slot)
{
	uint32_t have = zdi_exchange_seqcst_u32(slot, 0);

	if (have != 0)
		close((int)(have - 1u));
}

void zdi_ready_close_reader(zd_segment_t *seg, uint32_t r)
{
	if (r < ZD_READER_MAX)
		close_slot(&seg->ready_rx[r]);
}

void zdi_ready_close_all(zd_segment_t *seg)
{
	for (uint32_t r = 0; r < ZD_READER_MAX; r++)
		close_slot(&seg->ready_rx[r]);
	close_slot(&seg->ready_space_rx);
	close_slot(&seg->ready_tx);
}
