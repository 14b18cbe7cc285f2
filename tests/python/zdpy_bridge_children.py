"""Processes of the bridge tests (run as scripts: ``python zdpy_bridge_children.py ROLE ...``).

The iceoryx2 roles use iceoryx2's own API only (no zdshm import): they
declare the frame header themselves, as a Rust or C++ peer would.  Every
role prints ``ready`` once it may be fed, and one JSON line with what it saw
at the end.  Frame i of a stream is ``BASE + i`` (float32), so content,
order and loss are all checked from the frame itself.
"""
from __future__ import annotations

import ctypes
import json
import sys
import time


def base(shape):
    import numpy as np
    n = 1
    for d in shape:
        n *= d
    return (np.arange(n, dtype=np.float32) % 1000).reshape(shape)


def say(obj):
    print(obj if isinstance(obj, str) else json.dumps(obj), flush=True)


class Header(ctypes.Structure):
    # The frame header as an iceoryx2 peer declares it.
    _fields_ = [("magic", ctypes.c_uint32), ("version", ctypes.c_uint16),
                ("ndim", ctypes.c_uint8), ("flags", ctypes.c_uint8),
                ("format", ctypes.c_char * 16), ("shape", ctypes.c_uint64 * 6),
                ("sn", ctypes.c_uint64), ("commit_ns", ctypes.c_uint64),
                ("nbytes", ctypes.c_uint64)]

    @staticmethod
    def type_name():
        return "zdshm::FrameHeader"


def iox_service(prefix, service, depth=8, create=True):
    import iceoryx2 as iox
    iox.set_log_level(iox.LogLevel.Error)
    cfg = iox.config.global_config()
    cfg.global_cfg.prefix = iox.FileName.new(prefix)
    node = iox.NodeBuilder.new().config(cfg).create(iox.ServiceType.Ipc)
    svc = (node.service_builder(iox.ServiceName.new(service))
           .publish_subscribe(iox.Slice[ctypes.c_uint8]).user_header(Header)
           .subscriber_max_buffer_size(depth).history_size(0)
           .enable_safe_overflow(False).open_or_create())
    return iox, node, svc


def iox_pub(prefix, service, n, pace, *shape):
    """Publishes n float32 frames of shape through iceoryx2 (RetryUntilDelivered),
    pausing pace seconds after each."""
    import gc

    import numpy as np
    shape = tuple(int(d) for d in shape)
    n, pace = int(n), float(pace)
    iox, node, svc = iox_service(prefix, service)
    pub = (svc.publisher_builder().initial_max_slice_len(int(np.prod(shape)) * 4)
           .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered).create())
    say("ready")
    while svc.dynamic_config.number_of_subscribers == 0:
        time.sleep(0.005)
    pub.update_connections()
    b = base(shape)
    nbytes = b.nbytes
    T = ctypes.c_uint8 * nbytes
    resent = 0
    for i in range(n):
        # iceoryx2 0.10's RetryUntilDelivered does not wait for a subscriber
        # in another process whose buffer is full: send() then reports 0
        # receivers, and the frame is sent again.
        while True:
            out = pub.loan_slice_uninit(nbytes)
            a = np.frombuffer(T.from_address(out.payload_ptr), np.float32).reshape(shape)
            np.add(b, np.float32(i), out=a)
            del a
            h = out.user_header().contents
            h.magic, h.version, h.flags, h.ndim = 0x52464458, 1, 1, len(shape)
            h.format = b"f"
            for k, d in enumerate(shape):
                h.shape[k] = d
            h.sn, h.commit_ns, h.nbytes = i, time.monotonic_ns(), nbytes
            if out.assume_init().send() >= 1:
                break
            resent += 1
            time.sleep(0.0002)
        if pace:
            time.sleep(pace)
    # Stay until the test says the stream arrived (stdin closes).
    sys.stdin.read()
    pub.delete()
    del svc, node
    gc.collect()
    say({"sent": n, "resent": resent})


def iox_sub(prefix, service, n, *shape):
    """Receives n frames through iceoryx2; checks header, order and content."""
    import gc

    import numpy as np
    shape = tuple(int(d) for d in shape)
    n = int(n)
    iox, node, svc = iox_service(prefix, service)
    sub = svc.subscriber_builder().buffer_size(8).create()
    say("ready")
    b = base(shape)
    got, first_sn, errors = 0, None, []
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        s = sub.receive()
        if s is None:
            time.sleep(0.0002)
            continue
        h = s.user_header().contents
        k = int(s.header.number_of_elements)
        a = np.frombuffer((ctypes.c_uint8 * k).from_address(s.payload_ptr), np.float32)
        i = int(a[0])
        if first_sn is None:
            first_sn = h.sn - i
        if (h.format != b"f" or tuple(h.shape[:h.ndim]) != shape or h.nbytes != k
                or i != got or h.sn - first_sn != i
                or not np.array_equal(a.reshape(shape), b + np.float32(i))):
            errors.append(f"frame {got}: i={i} sn={h.sn} fmt={h.format} "
                          f"shape={tuple(h.shape[:h.ndim])}")
            if len(errors) > 5:
                break
        del a
        s.delete()
        got += 1
    sub.delete()
    del svc, node
    gc.collect()
    say({"received": got, "errors": errors})


def zd_writer(name, n, pace, *shape):
    """Creates segment name (posix), waits for one reader, writes n frames
    (pausing pace seconds after each), then keeps the segment until stdin
    closes."""
    import numpy as np

    import zdshm
    shape = tuple(int(d) for d in shape)
    n, pace = int(n), float(pace)
    b = base(shape)
    seg = zdshm.PosixSegment.create(name, 8, b.nbytes + 64)
    w = seg.writer(overflow="block", timeout=60)
    say("ready")
    w.wait_for_readers(1, timeout=60)
    t0 = time.monotonic()
    for i in range(n):
        with w.loan_array(shape, np.float32) as a:
            np.add(b, np.float32(i), out=a)
        if pace:
            time.sleep(pace)
    t1 = time.monotonic()
    a = None
    sys.stdin.read()
    w.close()
    seg.close()
    seg.unlink()
    say({"sent": n, "seconds": t1 - t0})


def zd_reader(name, create, n, idle, slow, *shape):
    """Reads frames of shape from segment name (created with 8 slots when
    create == "1", else attached) until frame n-1 or idle seconds without a
    frame; checks dtype, shape, content, order and the origin record."""
    import numpy as np

    import zdshm
    from zdshm import bridge as zb
    shape = tuple(int(d) for d in shape)
    n, idle, slow = int(n), float(idle), float(slow)
    b = base(shape)
    if create == "1":
        seg = zdshm.PosixSegment.create(name, 8, b.nbytes + zb.ORIGIN_SIZE)
    else:
        deadline = time.monotonic() + 30
        while True:
            try:
                seg = zdshm.PosixSegment.attach(name)
                break
            except zdshm.SegmentNotFoundError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    r = seg.reader()
    say("ready")
    got, last_i, errors, offset, seen = 0, -1, [], None, []
    first_wait = 120.0
    while True:
        try:
            s = r.take(timeout=first_wait if got == 0 else idle)
        except (zdshm.WaitTimeoutError, zdshm.SegmentClosedError):
            break
        a = np.asarray(s)
        o = zb.origin(s, seg)
        i = int(a.flat[0])
        if offset is None and o is not None:
            offset = o.sn - i
        ok = (a.dtype == np.float32 and a.shape == shape and o is not None
              and o.sn - offset == i and i > last_i
              and np.array_equal(a, b + np.float32(i)))
        if not ok:
            errors.append(f"frame {got}: i={i} dtype={a.dtype} shape={a.shape} origin={o}")
        seen.append(i)
        del a
        s.release()
        got += 1
        last_i = i
        if slow:
            time.sleep(slow)
        if i >= n - 1 or len(errors) > 5:
            break
    say({"received": got, "last": last_i, "errors": errors,
         "gaps": sum(1 for x, y in zip(seen, seen[1:]) if y != x + 1)})
    sys.stdin.read()
    r.close()
    seg.close()
    if create == "1":
        seg.unlink()


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
