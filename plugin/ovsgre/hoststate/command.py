"""Bounded subprocesses, and the errors every reader raises."""

import subprocess


class ProbeError(Exception):
    """One piece of state could not be read (message says why)."""


class ProbeUnavailable(ProbeError):
    """The probe itself could not run (tool missing), as opposed to the
    thing probed being broken."""



def run_argv(argv, timeout, input_text=None):
    """(returncode, stdout, stderr) of argv, bounded; ProbeError when it
    cannot run at all or takes too long."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, input=input_text,
                              stdin=None if input_text is not None
                              else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise ProbeUnavailable(f"{argv[0]} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} "
                         f"did not answer within {timeout:g}s") from exc
    except OSError as exc:
        raise ProbeError(f"{argv[0]}: {exc}") from exc
    return proc.returncode, proc.stdout, proc.stderr

