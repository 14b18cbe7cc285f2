/* atomics.h — memory-order-named wrappers over the GCC __atomic builtins.
 *
 * Shared-memory words are plain fixed-width integers in the layout (an ABI);
 * every access that can race goes through one of these, and the name says
 * the ordering.  Pairings are stated at the call sites.
 */
#ifndef ZDSHM_ATOMICS_H
#define ZDSHM_ATOMICS_H

#include <stdbool.h>
#include <stdint.h>

#define ZDI_DEFINE_ATOMICS(T, S)                                               \
	static inline T zdi_load_relaxed_##S(const T *p)                       \
	{ return __atomic_load_n(p, __ATOMIC_RELAXED); }                       \
	static inline T zdi_load_acquire_##S(const T *p)                       \
	{ return __atomic_load_n(p, __ATOMIC_ACQUIRE); }                       \
	static inline T zdi_load_seqcst_##S(const T *p)                        \
	{ return __atomic_load_n(p, __ATOMIC_SEQ_CST); }                       \
	static inline void zdi_store_relaxed_##S(T *p, T v)                    \
	{ __atomic_store_n(p, v, __ATOMIC_RELAXED); }                          \
	static inline void zdi_store_release_##S(T *p, T v)                    \
	{ __atomic_store_n(p, v, __ATOMIC_RELEASE); }                          \
	static inline T zdi_fetch_add_relaxed_##S(T *p, T v)                   \
	{ return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }                 \
	static inline T zdi_fetch_add_seqcst_##S(T *p, T v)                    \
	{ return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }                 \
	static inline T zdi_fetch_sub_seqcst_##S(T *p, T v)                    \
	{ return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }                 \
	static inline T zdi_fetch_or_acq_rel_##S(T *p, T v)                    \
	{ return __atomic_fetch_or(p, v, __ATOMIC_ACQ_REL); }                  \
	static inline T zdi_fetch_or_seqcst_##S(T *p, T v)                     \
	{ return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }                  \
	static inline T zdi_fetch_and_acq_rel_##S(T *p, T v)                   \
	{ return __atomic_fetch_and(p, v, __ATOMIC_ACQ_REL); }                 \
	static inline T zdi_fetch_and_seqcst_##S(T *p, T v)                    \
	{ return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }                 \
	static inline T zdi_exchange_seqcst_##S(T *p, T v)                     \
	{ return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }                \
	/* On failure *expected gets the current value. */                      \
	static inline bool zdi_cas_acq_rel_##S(T *p, T *expected, T desired)   \
	{ return __atomic_compare_exchange_n(p, expected, desired, false,      \
		__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE); }                          \
	static inline bool zdi_cas_seqcst_##S(T *p, T *expected, T desired)    \
	{ return __atomic_compare_exchange_n(p, expected, desired, false,      \
		__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }

ZDI_DEFINE_ATOMICS(uint32_t, u32)
ZDI_DEFINE_ATOMICS(uint64_t, u64)

/* Orders every load before it (a pread's copy included) before every
 * load and store after it. */
static inline void zdi_fence_acquire(void)
{
#if defined(__SANITIZE_THREAD__)
	/* gcc refuses fences under TSan, which models none; the loads this
	 * orders are the kernel's copies, which TSan does not see anyway. */
	__asm__ __volatile__("" ::: "memory");
#else
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
#endif
}

static inline void zdi_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
