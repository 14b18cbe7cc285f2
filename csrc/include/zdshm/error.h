/* zdshm/error.h — the error convention of the C core.
 *
 * Every function of the core returns 0 on success or a negative errno value;
 * results come back through out-parameters.  System-call failures are turned
 * into -errno once, at the call site.  The codes carry these meanings
 * throughout the library (a function's comment lists the ones it returns):
 *
 *   -EINVAL        an argument is out of its documented range
 *   -ENAMETOOLONG  a segment name is longer than ZD_NAME_MAX
 *   -EOVERFLOW     the requested geometry does not fit in size_t / the layout
 *   -EAGAIN        nothing to do right now: no free slot, no unread sample
 *   -ETIMEDOUT     a deadline passed
 *   -EMSGSIZE      a sample is larger than the slot capacity
 *   -ERANGE        a slot or reader index is outside the segment
 *   -ESTALE        the slot is not a live loan of this handle (committed,
 *                  discarded, or reclaimed after this process was presumed dead)
 *   -ENODATA       the slot holds no committed sample
 *   -EBUSY         the slot is pinned by the maximum number of views;
 *                  zd_segment_unlink_stale_posix: the segment is alive
 *   -EUSERS        every reader (or attachment) entry of the segment is taken
 *   -ENOTCONN      the reader was disconnected (closed, or presumed dead)
 *   -EBADMSG       the segment or a slot header is corrupt (bad field value)
 *   -EPROTO        the segment was made by an incompatible layout version
 *   -EINPROGRESS   the segment is still being created (init flag not set)
 *   -EPIPE         the segment's creator has closed it (goodbye flag)
 *   -EOWNERDEAD    the segment's creator died without closing it (its
 *                  liveness lock is free, no goodbye)
 *   -EEXIST, -ENOENT, -EACCES, -ELOOP, -ENOSPC, -ENOMEM, -EMFILE: from the system
 *
 * One code is the library's own, above every errno value:
 *
 *   -ZD_EOWNER     attach or describe by name refused the object: its owner
 *                  or its mode is outside the caller's policy (see
 *                  zd_attach_opts_t).  Distinct from -EACCES (the system
 *                  refused to open it) and -EPERM (attach_fd: sealed
 *                  against writes).
 */
#ifndef ZDSHM_ERROR_H
#define ZDSHM_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define ZD_EOWNER 4096

/* A static, human-readable message for a code returned by this library
 * (either sign is accepted).  Never NULL. */
const char *zd_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
