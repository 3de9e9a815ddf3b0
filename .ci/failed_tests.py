"""After a failed test run: each failing test's name and the tail of its output, read from pytest's JUnit XML.

So that the end of a CI log says what failed, however long the run's output was.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

TAIL = 40  # lines of each failure's report and captured output


def tail(text: str | None, lines: int = TAIL) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


def main(path: str) -> int:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        print(f"failed tests: no readable results in {path} ({exc}); the run stopped before pytest wrote them")
        return 1
    failed = []
    for case in root.iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is not None:
            failed.append((f"{case.get('classname')}::{case.get('name')}", problem, case))
    print(f"\n===== {len(failed)} failed test(s) =====")
    for name, problem, case in failed:
        print(f"\n--- {name}: {problem.get('message', '').splitlines()[0] if problem.get('message') else ''}")
        print(tail(problem.text))
        for stream in ("system-out", "system-err"):
            captured = case.find(stream)
            if captured is not None and (captured.text or "").strip():
                print(f"[{stream}, last lines]")
                print(tail(captured.text, 20))
    print(f"\n===== failed: {', '.join(name for name, _, _ in failed) or 'none recorded'} =====")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
