"""Prints the torture figures (trials, faults injected, data lost) at the end of a run."""

from .harness import STATS


def pytest_terminal_summary(terminalreporter):
    if STATS:
        terminalreporter.write_sep("-", "zcas torture figures")
        for kind, counts in sorted(STATS.items()):
            terminalreporter.write_line(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
