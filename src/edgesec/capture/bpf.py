"""libpcap filter expressions compiled to classic BPF for a kernel socket.

Only ``pcap_compile`` is used from libpcap (through ctypes, on a "dead"
Ethernet handle), so the filter syntax is exactly tcpdump's while the
capture itself runs on our own AF_PACKET ring. ``attach(sock, expr)``
installs the program with ``SO_ATTACH_FILTER``: packets that do not match
are dropped in the kernel and never copied to user space.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
from functools import cache

SO_ATTACH_FILTER = 26
DLT_EN10MB = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class BpfError(Exception):
    """The filter expression does not compile."""


class _Insn(ctypes.Structure):
    _fields_ = (("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32))


class _Program(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn)))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn)))


@cache
def _libpcap() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise BpfError(f"libpcap not available ({name}): {exc}") from exc
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
    lib.pcap_compile.argtypes = (ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32)
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
    lib.pcap_freecode.argtypes = (ctypes.POINTER(_Program),)
    lib.pcap_close.argtypes = (ctypes.c_void_p,)
    return lib


def compile_filter(expr: str, snaplen: int = 65535) -> list[tuple[int, int, int, int]]:
    """Compile ``expr`` (tcpdump syntax) to ``[(code, jt, jf, k), ...]``."""
    lib = _libpcap()
    handle = lib.pcap_open_dead(DLT_EN10MB, snaplen)
    if not handle:
        raise BpfError("pcap_open_dead failed")
    prog = _Program()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1,
                            PCAP_NETMASK_UNKNOWN) != 0:
            msg = (lib.pcap_geterr(handle) or b"syntax error").decode(errors="replace")
            raise BpfError(f"bad capture filter {expr!r}: {msg}")
        try:
            return [(prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf,
                     prog.bf_insns[i].k) for i in range(prog.bf_len)]
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)


def attach(sock: socket.socket, expr: str) -> int:
    """Attach the compiled ``expr`` to ``sock``; returns the instruction count."""
    insns = compile_filter(expr)
    arr = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
    fprog = _SockFprog(len(insns), ctypes.cast(arr, ctypes.POINTER(_Insn)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    return len(insns)
