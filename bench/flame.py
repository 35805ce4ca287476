"""Summarize py-spy collapsed stacks (`bench.run --profile DIR` output): where the server's time goes.

    .venv/bin/python -m bench.flame FILE [--top 25] [--merge] [--busy]

Prints, per thread group, the share of samples of the hottest frames, inclusive (the frame is on the
stack) and self (the frame is on top). --busy drops the samples whose top frame is an idle wait
(select/epoll, a queue or lock wait), to see where CPU goes."""
from __future__ import annotations

import argparse
import collections
import re

IDLE_HINTS = ("select (selectors.py", "poll (selectors.py", "_worker (concurrent/futures/thread.py",
              "wait (threading.py", "get (queue.py", "epoll", "doPoll", "_run_once (asyncio/base_events.py")


def frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    match = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame.strip())
    if not match:
        return frame.strip()
    function, path = match.groups()
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{function} ({short})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--busy", action="store_true", help="ignore samples idling in a wait")
    parser.add_argument("--merge", action="store_true", help="one group for all threads")
    args = parser.parse_args()
    per_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    self_counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    totals: collections.Counter = collections.Counter()
    with open(args.file) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            # py-spy --threads: the first frame is 'thread (0x7f...): name' (or 'process ...')
            thread = frames[0].split(": ", 1)[-1]
            thread_group = "all threads" if args.merge else re.sub(r"\d+", "N", thread)
            body = [frame_name(f) for f in frames[1:]]
            if args.busy and body and any(hint in frames[-1] for hint in IDLE_HINTS):
                continue
            n = int(count)
            totals[thread_group] += n
            for name in set(body):
                per_thread[thread_group][name] += n
            if body:
                self_counts[thread_group][body[-1]] += n
    for group, total in totals.most_common():
        print(f"== {group}: {total} samples")
        print("  inclusive:")
        for name, n in per_thread[group].most_common(args.top):
            print(f"    {100 * n / total:5.1f}%  {name}")
        print("  self:")
        for name, n in self_counts[group].most_common(min(args.top, 15)):
            print(f"    {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
