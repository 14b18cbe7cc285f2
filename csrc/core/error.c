/* error.c — the one table of messages for the codes the core returns. */
#include <errno.h>
#include <string.h>

#include "zdshm/error.h"

const char *zd_strerror(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
	case 0: return "success";
	case EINVAL: return "invalid argument";
	case ENAMETOOLONG: return "segment name too long";
	case EOVERFLOW: return "value too large (segment geometry, or sequence numbers used up)";
	case EAGAIN: return "nothing available right now (no free slot or no unread sample)";
	case ETIMEDOUT: return "deadline passed";
	case EMSGSIZE: return "sample larger than the slot capacity";
	case ERANGE: return "slot or reader index outside the segment";
	case ESTALE: return "not a live loan or view of this handle";
	case ENODATA: return "slot holds no committed sample";
	case EBUSY: return "slot or reader still pinned by a view";
	case EUSERS: return "every reader or attachment entry of the segment is taken";
	case ENOTCONN: return "reader is disconnected";
	case EBADMSG: return "segment or slot header is corrupt";
	case EPROTO: return "segment layout version not supported";
	case EINPROGRESS: return "segment is still being created";
	case EPIPE: return "segment creator has closed it";
	case EOWNERDEAD: return "segment creator died without closing it";
	case EINTR: return "interrupted by a signal";
	case EEXIST: return "segment already exists";
	case ENOENT: return "no such segment";
	case EACCES: return "permission denied";
	case ELOOP: return "segment name is a symbolic link";
	case ENOSPC: return "no space left for the segment";
	case ENOMEM: return "out of memory";
	case EMFILE: return "too many open files";
	case ZD_EOWNER: return "segment owner or mode not trusted";
	default: return "unknown error";
	}
}
