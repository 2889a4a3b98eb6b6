"""Waiting with a deadline: what the integration tests use instead of fixed sleeps.

A fixed sleep is either too short on a loaded two-core machine (the test fails for nothing) or
too long everywhere else. These helpers poll the condition the test really needs -- a row count,
a line in a process's log, a predicate -- and fail with what was awaited, and the process's last
log lines when there is one, once a generous deadline passes or the process exits first.
"""

import signal
import threading
import time


def wait_for(pred, timeout=60, what=None, proc=None, log=None, interval=0.1):
    """Poll pred() until it returns a true value, and return that value. AssertionError naming
    `what` when `timeout` seconds pass first, or when `proc` (a Popen) exits meanwhile; the
    message ends with the last lines of `log` (a LogLines) if given."""
    deadline = time.monotonic() + timeout
    label = what or getattr(pred, "__name__", "a condition")
    while True:
        value = pred()
        if value:
            return value
        tail = "" if log is None else "\n" + log.text()[-6000:]
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {label}{tail}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {label} within {timeout} s{tail}")
        time.sleep(interval)


def wait_for_rows(tc, query, n, timeout=120, proc=None, log=None):
    """Wait until the single number `query` returns (in tc's schema) reaches n; return it."""
    return wait_for(lambda: (lambda v: v if v is not None and v >= n else None)(tc.sql(query)[0][0]),
                    timeout=timeout, what=f"{n} from {query!r}", proc=proc, log=log)


class LogLines:
    """The lines a process writes to a stream (its stderr), collected by a thread so the process
    never blocks on a full pipe; wait() for a line that contains a text."""

    def __init__(self, stream):
        self.lines = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def text(self):
        return "".join(self.lines)

    def has(self, needle):
        return any(needle in line for line in list(self.lines))

    def wait(self, needle, timeout=120, proc=None):
        return wait_for(lambda: self.has(needle), timeout=timeout, what=f"log line with {needle!r}",
                        proc=proc, log=self)

    def join(self, timeout=30):
        self._thread.join(timeout=timeout)


def stop_process(proc, log, timeout=60):
    """Stop a process the test spawned (SIGTERM: the clean shutdown under test), wait for it,
    collect the rest of its log and close its pipes; return the whole log text. The caller asserts
    on proc.returncode and on the text."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=timeout)
    log.join()
    proc.stdout.close()
    proc.stderr.close()
    return log.text()
