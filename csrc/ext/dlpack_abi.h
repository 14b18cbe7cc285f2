/* dlpack_abi.h — the DLPack tensor-exchange ABI (version 1.x), as far as
 * zdshm exports CPU tensors through it.
 *
 * DLPack is a C struct layout that array libraries (numpy, torch, JAX,
 * CuPy, ...) agree on to share memory without copying.  A producer hands a
 * consumer a PyCapsule that owns one managed tensor:
 *
 *   capsule name          holds                      since
 *   "dltensor"            DLManagedTensor            0.x (legacy)
 *   "dltensor_versioned"  DLManagedTensorVersioned   1.0 (version, flags)
 *
 * A consumer takes the pointer, renames the capsule to "used_dltensor" /
 * "used_dltensor_versioned" and calls the tensor's deleter when it no
 * longer needs the memory; a capsule that is never consumed calls the
 * deleter from its own destructor.  The deleter may be called from any
 * thread, with or without the GIL.
 *
 * The layouts below are an ABI: fixed-width fields in the order the
 * specification gives, with their sizes and offsets asserted for LP64.
 * Only what zdshm produces is declared (device CPU; the integer, float,
 * complex and bool type codes).
 */
#ifndef ZDSHM_DLPACK_ABI_H
#define ZDSHM_DLPACK_ABI_H

#include <stddef.h>
#include <stdint.h>

/* The version of the ABI the versioned capsules claim (major 1: the
 * structs below; consumers refuse another major). */
#define DLPACK_MAJOR_VERSION 1
#define DLPACK_MINOR_VERSION 0

/* DLManagedTensorVersioned.flags */
#define DLPACK_FLAG_BITMASK_READ_ONLY (UINT64_C(1) << 0)  /* do not write    */
#define DLPACK_FLAG_BITMASK_IS_COPIED (UINT64_C(1) << 1)  /* a private copy  */

/* DLDevice.device_type (an enum in the specification: int-sized). */
#define DLPACK_DEVICE_CPU 1

/* DLDataType.code */
#define DLPACK_CODE_INT 0
#define DLPACK_CODE_UINT 1
#define DLPACK_CODE_FLOAT 2
#define DLPACK_CODE_COMPLEX 5
#define DLPACK_CODE_BOOL 6

/* The capsule names. */
#define DLPACK_CAPSULE_LEGACY "dltensor"
#define DLPACK_CAPSULE_VERSIONED "dltensor_versioned"

typedef struct DLPackVersion {
	uint32_t major;
	uint32_t minor;
} DLPackVersion;

typedef struct DLDevice {
	int32_t device_type;     /* DLPACK_DEVICE_*                          */
	int32_t device_id;       /* 0 for the CPU                            */
} DLDevice;

typedef struct DLDataType {
	uint8_t code;            /* DLPACK_CODE_*                            */
	uint8_t bits;            /* of one lane: 8, 16, 32, 64, 128          */
	uint16_t lanes;          /* 1 for scalars                            */
} DLDataType;

typedef struct DLTensor {
	void *data;              /* the first element is at data+byte_offset */
	DLDevice device;
	int32_t ndim;
	DLDataType dtype;
	int64_t *shape;          /* ndim entries                             */
	int64_t *strides;        /* ndim entries, in elements (not bytes)    */
	uint64_t byte_offset;
} DLTensor;

/* The legacy managed tensor ("dltensor" capsules). */
typedef struct DLManagedTensor {
	DLTensor dl_tensor;
	void *manager_ctx;
	void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

/* The versioned managed tensor ("dltensor_versioned" capsules). */
typedef struct DLManagedTensorVersioned {
	DLPackVersion version;
	void *manager_ctx;
	void (*deleter)(struct DLManagedTensorVersioned *self);
	uint64_t flags;          /* DLPACK_FLAG_BITMASK_*                    */
	DLTensor dl_tensor;
} DLManagedTensorVersioned;

_Static_assert(sizeof(DLPackVersion) == 8, "DLPackVersion is two uint32");
_Static_assert(sizeof(DLDevice) == 8, "DLDevice is two 32-bit fields");
_Static_assert(sizeof(DLDataType) == 4, "DLDataType is 4 bytes");
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(offsetof(DLTensor, device) == 8 &&
	       offsetof(DLTensor, ndim) == 16 &&
	       offsetof(DLTensor, dtype) == 20 &&
	       offsetof(DLTensor, shape) == 24 &&
	       offsetof(DLTensor, strides) == 32 &&
	       offsetof(DLTensor, byte_offset) == 40 &&
	       sizeof(DLTensor) == 48, "DLTensor layout (LP64)");
_Static_assert(offsetof(DLManagedTensor, manager_ctx) == 48 &&
	       offsetof(DLManagedTensor, deleter) == 56 &&
	       sizeof(DLManagedTensor) == 64, "DLManagedTensor layout (LP64)");
_Static_assert(offsetof(DLManagedTensorVersioned, manager_ctx) == 8 &&
	       offsetof(DLManagedTensorVersioned, deleter) == 16 &&
	       offsetof(DLManagedTensorVersioned, flags) == 24 &&
	       offsetof(DLManagedTensorVersioned, dl_tensor) == 32 &&
	       sizeof(DLManagedTensorVersioned) == 80,
	       "DLManagedTensorVersioned layout (LP64)");
#endif

#endif
