"""Run-directory safety: one training per directory, no silent overwrite, clear resume errors.

* :class:`RunDirLock` -- an exclusive lock file ``<run_dir>/.tfrestore.lock``
  (holding PID, host and start time) for the whole run. A second training
  into the same directory stops at once with :class:`RunDirError` naming the
  directory and the holder. A lock left by a dead process on this host is
  detected (PID gone, or reused by another process) and taken over.
* :func:`existing_results` / :func:`check_reuse` -- a directory that already
  holds results (a finished run, or an interrupted one) is only written to
  when resuming the same config, or with ``overwrite=True``
  (``--overwrite``, ``output.overwrite: true``).

A damaged backup is reported by :func:`tfrestore.training.backup.read_backup` as a
:class:`RunDirError` (this module imports nothing of the backup's).

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> with RunDirLock(d):
...     RunDirLock(d).acquire()
Traceback (most recent call last):
...
tfrestore.training.rundir.RunDirError: run directory ... is in use by another training (pid ...
"""

from __future__ import annotations

import json
import os
import socket
import time

from tfrestore.training.schema import ConfigError

__all__ = [
    "RunDirError",
    "RunDirLock",
    "LOCK_NAME",
    "existing_results",
    "check_reuse",
    "clear_results",
    "describe_holder",
]

LOCK_NAME = ".tfrestore.lock"

# A lock file still empty after this long was left by a process killed between
# creating and writing it (the two happen microseconds apart).
_EMPTY_LOCK_GRACE_S = 30.0


class RunDirError(ConfigError):
    """The run directory cannot be used as asked (locked, holds other results, corrupt backup).

    Subclasses :class:`ConfigError` so callers that report config problems
    (exit code 2 on the command line) report these too.
    """


# --------------------------------------------------------------------------- lock


def _process_start(pid):
    """Start time of ``pid`` in clock ticks since boot (Linux), or None when unknown.

    Stored with the PID so that a PID reused by an unrelated process after a
    crash is not mistaken for the lock holder.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
        # Field 22; the command name (field 2) may hold spaces, so split after its ')'.
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def describe_holder(holder):
    if not holder:
        return "an unknown process"
    since = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{when}"


class RunDirLock:
    """Exclusive lock of a run directory for the duration of a training.

    Use as a context manager, or :meth:`acquire` / :meth:`release`.
    ``acquire`` raises :class:`RunDirError` when a live process holds the
    lock (or one on another host: its liveness cannot be checked from here,
    so the message says to delete the lock file if that run is gone).
    """

    def __init__(self, run_dir):
        self.run_dir = os.path.abspath(os.fspath(run_dir))
        self.path = os.path.join(self.run_dir, LOCK_NAME)
        self.taken_over = None  # the stale holder replaced by acquire(), if any
        self._held = False

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None, False
        try:
            holder = json.loads(text)
            if not isinstance(holder, dict):
                raise ValueError
            return holder, True
        except ValueError:
            return {}, True

    def _stale(self, holder):
        """Whether the lock described by ``holder`` belongs to a dead process."""
        if not holder:  # empty/garbled: stale once old enough (see _EMPTY_LOCK_GRACE_S)
            try:
                return time.time() - os.path.getmtime(self.path) > _EMPTY_LOCK_GRACE_S
            except OSError:
                return True
        if holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return True
        if not _pid_alive(pid):
            return True
        start = holder.get("start")
        return start is not None and _process_start(pid) not in (None, start)

    def acquire(self):
        os.makedirs(self.run_dir, exist_ok=True)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start": _process_start(os.getpid()),
            "started": time.time(),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder, exists = self._read()
                if not exists:
                    continue  # released meanwhile: try again
                if not self._stale(holder):
                    where = (
                        ""
                        if not holder or holder.get("host") == socket.gethostname()
                        else "; if that run is gone, delete the lock file"
                    )
                    raise RunDirError(
                        f"run directory {self.run_dir} is in use by another training "
                        f"({describe_holder(holder)}; lock file {self.path}){where}; wait for it "
                        "to finish or choose another --output-dir"
                    ) from None
                self.taken_over = holder
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self._held = True
            return self
        raise RunDirError(
            f"run directory {self.run_dir}: cannot take the lock file {self.path} (another "
            "training keeps re-creating it); choose another --output-dir"
        )

    def release(self):
        if not self._held:
            return
        self._held = False
        holder, exists = self._read()
        if exists and holder and holder.get("pid") == os.getpid():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


# --------------------------------------------------------------------------- reuse


def _history_rows(path):
    try:
        with open(path, encoding="utf-8") as f:
            return max(0, sum(1 for line in f if line.strip()) - 1)
    except OSError:
        return 0


def existing_results(paths):
    """Names of the results a previous run left in the run directory (``run_paths`` dict).

    A directory with only ``config.yaml``/``run.yaml`` (a run stopped before
    its first epoch ended) holds no results worth protecting.
    """
    found = []
    for key in ("final", "best"):
        if os.path.isfile(paths[key]):
            found.append(os.path.basename(paths[key]))
    rows = _history_rows(paths["history"]) if os.path.isfile(paths["history"]) else 0
    if rows:
        found.append(f"history.csv ({rows} epoch{'s' if rows != 1 else ''})")
    if os.path.isfile(paths["metrics_csv"]):
        found.append("report/")
    if _run_files(paths["backup"], RUN_FOLDER_FILES["backup"]):
        found.append("backup/")
    return found


def _run_files(folder, patterns):
    import glob

    return [p for pattern in patterns for p in glob.glob(os.path.join(folder, pattern))]


def check_reuse(run_dir, paths, cfg, saved_cfg, resume, free_keys):
    """Refuse to write into a directory holding results, unless resuming the same config.

    Args:
        run_dir, paths: str, dict. The run directory and its ``run_paths``.
        cfg: dict. The resolved config of this run.
        saved_cfg: dict or None. The resolved ``config.yaml`` found there.
        resume: BackupState or None. The
            :class:`~tfrestore.training.backup.BackupState` the run resumes from
            (None: nothing to resume).
        free_keys: iterable of str. Dotted keys allowed to differ on resumption.

    Raises:
        RunDirError: naming the directory, what it holds, the differing keys
            and the flags that proceed (``--overwrite``, another ``--output-dir``).
    """
    from tfrestore.training.config import config_diff

    diff = None
    if saved_cfg is not None:
        diff = [
            k
            for k in config_diff(saved_cfg, cfg)
            if not any(k == f or k.startswith(f + ".") for f in free_keys)
        ]
    if resume is not None:
        if diff:
            where = f"epoch {resume.epoch}" + (f", step {resume.step}" if resume.step else "")
            raise RunDirError(
                f"{run_dir} holds an interrupted run ({where}) with a different "
                f"config (keys differ: {', '.join(diff)}); resume with the same config, or pass "
                "--overwrite to discard it, or use another --output-dir"
            )
        return
    found = existing_results(paths)
    if not found:
        return
    state = "a finished run" if os.path.isfile(paths["final"]) else "an earlier run"
    if diff is None:
        why = "no config.yaml, so the config that made them is unknown"
    elif diff:
        why = f"its config differs in: {', '.join(diff)}"
    else:
        why = "with the same config"
    raise RunDirError(
        f"{run_dir} already holds the results of {state} ({', '.join(found)}; {why}); pass "
        "--overwrite to replace them (output.overwrite: true / train(overwrite=True)), or "
        "choose another --output-dir"
    )


#: What a run writes inside its folders (glob patterns relative to each folder): ``--overwrite``
#: deletes these and nothing else, so files a user put into ``logs/``, ``report/`` or
#: ``backup/`` survive.
RUN_FOLDER_FILES = {
    "backup": (
        "training_metadata.json",
        "training_metadata.json.tmp",
        "step-*.weights.h5",
        "latest.weights.h5",  # the name older versions wrote
    ),
    "logs": (
        "train/events.out.tfevents.*",
        "validation/events.out.tfevents.*",
        "images/events.out.tfevents.*",
    ),
    "report": ("metrics.csv", "grid.png", "loss_curve.png"),
}
#: The run's own files at the top of its directory (``config.yaml`` is rewritten, not deleted).
RUN_TOP_FILES = ("history", "best", "final", "run_info")


def clear_results(paths):
    """Delete what a previous run wrote (``--overwrite``): its files at the top of the run
    directory and the files of :data:`RUN_FOLDER_FILES`; folders left empty go too.

    Returns:
        The other files found in those folders (kept), relative to the run directory.
    """
    for key in RUN_TOP_FILES:
        if os.path.isfile(paths[key]):
            os.remove(paths[key])
    kept = []
    for key, patterns in RUN_FOLDER_FILES.items():
        folder = paths[key]
        if not os.path.isdir(folder):
            continue
        for path in _run_files(folder, patterns):
            if os.path.isfile(path):
                os.remove(path)
        for root, dirs, files in os.walk(folder, topdown=False):
            kept += [os.path.relpath(os.path.join(root, f), os.path.dirname(folder)) for f in files]
            if not os.listdir(root):
                os.rmdir(root)
    return sorted(kept)


def save_model_atomically(model, path):
    """``model.save(path)`` through a temporary file in the same folder, flushed to disk and
    renamed: ``path`` is either the old file or the complete new one, never half written."""
    from tfrestore.utils.files import atomic_output

    with atomic_output(path, suffix=".keras") as tmp:
        model.save(tmp)
    return path


def clear_backup(backup_dir):
    """Remove a finished run's backup files (other files in ``backup/`` stay)."""
    for path in _run_files(backup_dir, RUN_FOLDER_FILES["backup"]):
        os.remove(path)
    if os.path.isdir(backup_dir) and not os.listdir(backup_dir):
        os.rmdir(backup_dir)

