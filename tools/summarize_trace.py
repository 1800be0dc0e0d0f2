#!/usr/bin/env python3
"""Ranks LibTorch operators in a Chrome trace by self time per iteration.

    bazel-bin/tools/main_moco ... --profile_trace=/tmp/trace.json
    tools/summarize_trace.py /tmp/trace.json [--iterations 10] [--top 30] [--callers OP ...]

Self time is an event's duration less that of the events nested in it on the same
thread, so each millisecond is counted once, under the innermost operator. --callers
lists, for the named operators, which enclosing operators their time was spent under.
"""
import argparse
import collections
import json
import sys


def nested(events):
    """Yields (event, enclosing events, innermost last) in start order, per thread."""
    by_thread = collections.defaultdict(list)
    for event in events:
        if event.get("ph") == "X":
            by_thread[event["tid"]].append(event)
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for event in thread_events:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= event["ts"]:
                stack.pop()
            yield event, stack
            stack.append(event)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trace")
    parser.add_argument("--iterations", type=int, default=10,
                        help="iterations the trace covers (main_moco's --profile_trace: 10)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--callers", nargs="*", default=[])
    args = parser.parse_args()
    try:
        with open(args.trace) as f:
            events = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"summarize_trace: cannot read {args.trace} as a Chrome trace: {e}")
    self_us = collections.Counter()
    calls = collections.Counter()
    callers = collections.Counter()
    caller_calls = collections.Counter()
    for event, stack in nested(events):
        name = event["name"]
        self_us[name] += event["dur"]
        calls[name] += 1
        if stack:
            self_us[stack[-1]["name"]] -= event["dur"]
        if name in args.callers:
            chain = " < ".join(e["name"] for e in reversed(stack[-3:])) or "(top level)"
            callers[(name, chain)] += event["dur"]
            caller_calls[(name, chain)] += 1
    n = args.iterations
    total = sum(self_us.values())
    print(f"{total / n / 1000:.1f} ms of operator time per iteration ({n} iterations)")
    print(f"{'ms/iter':>8} {'share':>6} {'calls/iter':>10}  operator")
    for name, us in self_us.most_common(args.top):
        print(f"{us / n / 1000:8.2f} {100 * us / total:5.1f}% {calls[name] / n:10.1f}  {name}")
    for (name, chain), us in callers.most_common():
        print(f"{us / n / 1000:8.2f} ms/iter {caller_calls[(name, chain)] / n:6.1f} calls/iter  "
              f"{name} under {chain}")


if __name__ == "__main__":
    main()
