"""Limits and a sandbox for the kernel that runs a submitted notebook.

``limit_resources`` caps the kernel's address space (``RLIMIT_AS``, the memory limit), the size of
any file it writes and core dumps. ``landlock`` confines the process with Linux's Landlock LSM
(unprivileged, Linux >= 5.13, inherited by every child): it may read only the Python installation,
system folders and the few paths the grader names, write only in its own working folder, bind only
its own kernel ports and connect to none (ABI >= 4), and signal or ptrace no process outside its
sandbox (ABI >= 6; ptrace from the start). So a notebook cannot touch the submissions, the CSV, the
solutions or another student's kernel. Where Landlock is missing, ``landlock`` returns 0 and the
grader says the kernels are not sandboxed. Landlock binds only the calling thread and the threads it
starts later, so it must run while the process has a single thread.
"""
from __future__ import annotations

import ctypes
import os
import resource
import sys
from pathlib import Path

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446      # the same on every architecture
_PR_SET_NO_NEW_PRIVS = 38
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2

# filesystem rights, by the ABI that introduced them
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_V1 = (1 << 13) - 1                      # execute ... make_sym
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
BIND_TCP, CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
READ = EXECUTE | READ_FILE | READ_DIR

SYSTEM_READ = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/opt")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version of the running kernel; 0 where there is none (macOS, old Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        abi = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(abi), 0)


def limit_resources(memory_bytes: int | None, file_bytes: int | None = None) -> None:
    """Cap this process's address space and the size of any file it writes, and turn off core dumps
    (children inherit all three)."""
    limits = [(resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_FSIZE, file_bytes), (resource.RLIMIT_CORE, 0)]
    for kind, value in limits:
        if value is None or (value <= 0 and kind != resource.RLIMIT_CORE):
            continue
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            if sys.platform.startswith("linux"):
                raise
            # macOS refuses RLIMIT_AS: that system grades without a memory limit


def python_read_paths() -> list[str]:
    """The Python installation, its site-packages and the folders of packages already imported from
    elsewhere (an editable iai_core): only the package folder, never the project around it."""
    import site
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # pragma: no cover - a stripped-down site module
        pass
    roots = {os.path.realpath(r) for r in roots if r and os.path.isdir(r)}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not f:
            continue
        f = os.path.realpath(f)
        if any(f.startswith(r + os.sep) for r in roots):
            continue
        top = sys.modules.get(mod.__name__.split(".")[0])
        path = getattr(top, "__path__", None)
        roots.add(os.path.realpath(list(path)[0]) if path else f)
    return sorted(roots)


def landlock(read: list[str], write: list[str], *, read_files: list[str] = (), write_files: list[str] = (),
             bind_ports: list[int] = ()) -> int:
    """Confine this thread (and all it starts) as described in the module docstring.

    read: folders to read and execute from; write: folders with every right (the working folder);
    read_files, write_files: single files (a connection file, /dev/null); bind_ports: the TCP ports
    the kernel may bind. Returns the ABI used, 0 if Landlock is unavailable. Raises ``RuntimeError``
    when the process already runs several threads (they would escape the sandbox).
    """
    abi = landlock_abi()
    if abi == 0:
        return 0
    n_threads = len(os.listdir("/proc/self/task"))
    if n_threads != 1:
        raise RuntimeError(f"cannot sandbox a process that already runs {n_threads} threads")
    fs = _FS_V1 | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0) | (IOCTL_DEV if abi >= 5 else 0)
    net = (BIND_TCP | CONNECT_TCP) if abi >= 4 else 0
    scoped = (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0
    libc = _libc()
    attr = _RulesetAttr(fs, net, scoped)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        rules = [(p, READ) for p in read] + [(p, fs) for p in write]
        rules += [(p, READ_FILE) for p in read_files] + [(p, READ_FILE | WRITE_FILE) for p in write_files]
        for path, rights in rules:
            _add_path_rule(libc, ruleset, path, rights & fs)
        for port in bind_ports if net else ():
            rule = _NetPortAttr(BIND_TCP, int(port))
            if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                raise OSError(ctypes.get_errno(), f"landlock_add_rule(port {port}): {os.strerror(ctypes.get_errno())}")
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi


def _add_path_rule(libc, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return                                   # a folder this system does not have (e.g. /lib32)
    try:
        if not Path(path).is_dir():
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(rights, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Give up every Linux capability (a grader run as root must not hand root's powers to a notebook)."""
    if not sys.platform.startswith("linux"):
        return
    libc = _libc()
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)            # PR_CAPBSET_DROP; fails harmlessly past the last capability
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()      # _LINUX_CAPABILITY_VERSION_3
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), f"capset: {os.strerror(ctypes.get_errno())}")
