"""Write the run's results to docs/benchmarks.md and docs/benchmarks.png (every number comes from the run).

The run also saves its results in bench/results.json: ``python bench/report.py`` writes the page and the plot again
from them, without measuring anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from benchkit import TIMES, Results, Row
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
PAGE = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks.png"

SECTION_TITLES = {
    "overhead": "1. Per-request overhead on a cache hit",
    "herd": "2. Cold-start herd",
    "rollover": "3. Token rollover with a 50 ms signer",
    "signers": "4. Token acquisition per signer",
    "imports": "5. Import cost and cloud SDKs",
    "fleet": "6. A fleet of processes on a shared store",
    "customers": "7. Many customers: one auth family, a view per customer",
    "otel": "8. OpenTelemetry on a cache hit",
}

METHOD = {
    "overhead": (
        "Every variant of a client kind is timed in the same run, in interleaved rounds whose order rotates, with "
        "the token already cached. The ratio is the median over rounds of (variant / no auth) in the same round. "
        "In-process transports (httpx.MockTransport, a requests adapter answering in-process) are timed with this "
        "thread's CPU time, which other processes on the machine do not inflate; the loopback rows use wall-clock "
        "time against a keep-alive server in its own process. The hand-written static bearer auth sets the same "
        "header from a constant: it is the least any bearer-token auth can cost."
    ),
    "herd": (
        "Each herd runs against a new MaskinportenAuth (empty cache) and then again with its token cached; the "
        "ratio is cold over warm time to the last response, median over the repetitions. The target is one grant "
        "per cold herd."
    ),
    "rollover": (
        "Workers send requests back to back through one MaskinportenAuth whose signer sleeps 50 ms per signature. "
        "Steady state: the token outlives the phase. Rollover: the emulator issues short-lived tokens, so the token "
        "is refreshed several times per phase. The target applies to `background_refresh=True`, the setting "
        "MaskinportenAuth documents for this case (no caller waits on the signer); the default is reported beside it."
    ),
    "signers": (
        "One MaskinportenAuth per signer; each acquisition clears its token cache first, so it signs a new grant and "
        "posts it to the emulator over a warm connection; the ratio is against the local key, interleaved in the "
        "same run. Remote backends run against the test servers their own test suites use, started with those "
        "suites' code."
    ),
    "customers": (
        "One MaskinportenAuth per run (empty cache) and a view per customer (`with_consumer_org`), against an "
        "emulator in its own process with every customer delegated. Every view asks for its first token at once: "
        "from a thread pool (`get_token()`), or from one event loop (`asyncio.gather` over `aget_token()`). The rate "
        "is customers over the time to the last token, median over repetitions whose order rotates; a ratio is the "
        "median of the ratios within each repetition. The library's rate is held against the floor measured in the "
        "same run: the same thread pool signing each grant and posting it through one pooled httpx.Client, without "
        "the library (the local signer's own rate is noted, not a ceiling on two cores: a token is a signature plus "
        "an HTTP exchange plus the emulator's work). With every token request 100 ms away, where the requests in "
        "flight decide the rate, the default async path is held to its ceiling (32 requests in flight over the "
        "latency: as fast as the faster thread pool can be); on loopback, where CPU decides it, async and sync at "
        "as many requests in flight are reported without a target. The emulator counts the grants; the provider "
        "reports the peak of token requests in flight; CPU time per token shows which side bounds the rate. Memory "
        "is measured with tracemalloc over making the views and over filling a cache by real fetches; cache hits "
        "are timed on views picked at random, in rounds interleaved between families with 1, 1,000 and 10,000 "
        "tokens cached, beside a plain dict lookup of the same keys (the floor the memory hierarchy sets), and "
        "held flat on the hit less that lookup."
    ),
    "imports": (
        "Fresh interpreters, alternating; start-up of a bare interpreter subtracted. The cloud SDK check looks at "
        "`sys.modules` in a fresh interpreter after the import."
    ),
    "otel": (
        "`get_token()` on a cached token, with no `on_event`, with a callback doing nothing, and with a "
        "`TokenTelemetry` on the OpenTelemetry SDK (an in-memory metric reader), timed in interleaved rounds whose "
        "order rotates; the ratios are per round against no `on_event`. Apart, the telemetry's handling of one hit "
        "event against a bare `counter.add(1, attributes)` on the same SDK: what the integration costs beyond the "
        "counter add it has to make."
    ),
    "fleet": (
        "8 processes forked from the benchmark (as gunicorn forks workers) each ask for the tokens of 100 customers "
        "in rounds for three token lifetimes: first each with its own cache, then sharing a RedisTokenCache on a "
        "valkey-server on loopback; the emulator counts the grants of the last two lifetimes (after the cold "
        "start), halved. Cache hits are timed in one process, per-process cache and shared store in interleaved "
        "rounds; a new process's first token is timed against a warm store and against a fetch."
    ),
}


MINUS = "\u2212"  # the minus sign, for a difference that came out negative
_ASCII_MARKS = ((re.compile(r"<="), "≤"), (re.compile(r">="), "≥"), (re.compile(r"(?<=\d) ?x\b"), TIMES))
_BETWEEN_TIMES = re.compile(r" x (?=\d)")


def typeset(text: str) -> str:
    """One notation on the page: the signs for ``<=`` and ``>=``, TIMES for a ratio's or a product's ``x``."""
    text = _BETWEEN_TIMES.sub(f" {TIMES} ", text)
    for pattern, mark in _ASCII_MARKS:
        text = pattern.sub(mark, text)
    return text.replace("+-", MINUS)


def _is_ratio_target(row: Row) -> bool:
    """Whether the row's target bounds its ratio (``<= 1.3x``), rather than its value or something else."""
    return row.ratio is not None and re.search(rf"\d{TIMES}", typeset(row.target)) is not None


def _below_nothing(row: Row) -> bool:
    """Whether an auth variant measured faster than no auth, which it cannot be: a difference within the noise."""
    return row.section == "overhead" and row.ratio is not None and row.ratio < 1.0 and row.baseline == "no auth"


NOISE_MARK = "†"
NOISE_NOTE = (
    f"{NOISE_MARK} Below 1{TIMES}: the auth measured faster than no auth, which it cannot be, since it does the same "
    "work and more. The difference is this run's noise, not a result: read it as no measurable overhead."
)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"


def _verdict(row: Row) -> str:
    return {None: "", True: "met", False: "**missed**"}[row.passed]


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return ""
    return f"{row.ratio:.3f}{TIMES}{NOISE_MARK if _below_nothing(row) else ''}"


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| Measurement | Value | Ratio | Against | Target | Result | Notes |",
        "| --- | ---: | ---: | --- | --- | --- | --- |",
    ]
    for row in rows:
        value = "skipped" if row.value is None else f"{_fmt(row.value, 4)} {row.unit}"
        cells = [row.name, value, _ratio(row), row.baseline, row.target, _verdict(row), row.note]
        lines.append("| " + " | ".join(typeset(cell) for cell in cells) + " |")
    if any(_below_nothing(row) for row in rows):
        lines += ["", NOISE_NOTE]
    return lines


def _measured(row: Row, rows: list[Row]) -> str:
    """What a target is held against: the ratio for a ratio target, else the value, and what the target names."""
    if _is_ratio_target(row):
        return f"{row.ratio:.3f}{TIMES} {row.baseline}"
    measured = f"{_fmt(row.value, 4)} {row.unit}"
    named = next((other for other in rows if other is not row and row.target.endswith(other.name)), None)
    if named is None:
        return measured
    # a bound on something else than the value (the time a command adds to start-up): the note says what it is
    return f"{measured}, {row.note}; {named.name}: {_fmt(named.value, 4)} {named.unit}"


def _overhead_matrix(charts: Mapping[str, Mapping[str, float]], rows: list[Row]) -> list[str]:
    bars: list[str] = []
    for group in charts.values():
        bars.extend(name for name in group if name not in bars)
    lines = [
        "| Client, transport | no auth (µs/request) | " + " | ".join(bars) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in bars) + " |",
    ]
    base = {row.name.split(": ")[0]: row.value for row in rows if row.name.endswith(": no auth")}
    for kind, group in charts.items():
        cells = [
            f"{group[name]:.3f}{TIMES}{NOISE_MARK if group[name] < 1.0 else ''}" if name in group else "n/a"
            for name in bars
        ]
        lines.append(f"| {kind} | {_fmt(base.get(kind), 4)} | " + " | ".join(cells) + " |")
    if any(value < 1.0 for group in charts.values() for value in group.values()):
        lines += ["", NOISE_NOTE]
    return lines


def write_markdown(results: Results, path: Path, *, environment: list[str], image: str, seconds: float) -> None:
    targets = [row for row in results.rows if row.passed is not None]
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `nox -s bench` (bench/run.py); do not edit by hand: rerun the session. -->",
        "",
        "Every number on this page comes from one run of `nox -s bench`, and every ratio is against a baseline "
        "measured in that same run, because absolute times drift on shared machines. Rerun it with:",
        "",
        "```sh",
        "nox -s bench",
        "```",
        "",
        "The session fails when a target is missed.",
        "",
        "## This run",
        "",
        *[f"- {item}" for item in environment],
        f"- whole run: {seconds:.0f} s",
        "",
        "## Targets",
        "",
        "| Target | Measured | Result |",
        "| --- | --- | --- |",
    ]
    for row in targets:
        target = typeset(f"{row.name}: {row.target}")
        lines.append(f"| {target} | {typeset(_measured(row, results.rows))} | {_verdict(row)} |")
    lines += [
        "",
        f"Each bar runs from 1{TIMES}, the baseline named under its chart, to the ratio measured, on a log scale: "
        f"2{TIMES} and 0.5{TIMES} are equally long. A dashed red line marks a target; its shaded side misses it.",
        "",
        f"![Benchmark ratios, one chart per section]({image})",
        "",
    ]
    for section, title in SECTION_TITLES.items():
        rows = [row for row in results.rows if row.section == section]
        if not rows and section not in results.notes:
            continue
        lines += [f"## {title}", "", METHOD[section], ""]
        if section == "overhead":
            overhead_chart = next((c for t, c in results.charts.items() if t.startswith("Per-request")), None)
            if overhead_chart:
                lines += ["Ratios to no auth, same client and transport:", ""]
                lines += [*_overhead_matrix(overhead_chart, rows), ""]
        lines += [*_table(rows), ""]
        lines += [f"- {typeset(note)}" for note in results.notes.get(section, [])]
        lines.append("")
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")


#: Where the log-scaled ratio axis may have ticks, as far as it reaches.
RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: The least an axis reaches on either side of 1.0x, so that noise-sized ratios look noise-sized.
MIN_SPAN = 1.25
_TITLE = re.compile(r"^(?P<what>.*?)(?:, | \()(?P<ratio>ratio to .*?)\)?$")


def _ticks(span: float, most: int = 10) -> list[float]:
    """Ticks outward from 1.0x, each at least 1/most of the axis from the last one kept."""
    gap = 2 * math.log(span) / most
    kept = [1.0]
    for side in (
        sorted(t for t in RATIO_TICKS if 1 < t <= span),
        sorted((t for t in RATIO_TICKS if 1 / span <= t < 1), reverse=True),
    ):
        last = 1.0
        for tick in side:
            if abs(math.log(tick / last)) >= gap:
                kept.append(tick)
                last = tick
    return sorted(kept)


def _ratio_axis(axis: Axes, values: list[float], target: float | None) -> None:
    """Log scale centred on 1.0x: a ratio and its inverse (2x slower, 2x faster) reach equally far."""
    reach = max(abs(math.log(value)) for value in [*values, target or 1.0])
    span = max(math.exp(reach * 1.35), MIN_SPAN)  # room for the value printed beyond the longest bar
    axis.set_xscale("log")
    axis.set_xlim(1 / span, span)
    axis.xaxis.set_major_locator(FixedLocator(_ticks(span)))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda tick, _: f"{tick:g}{TIMES}"))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.tick_params(axis="x", labelsize=8)
    axis.grid(axis="x", color="0.9", linewidth=0.6)
    axis.set_axisbelow(True)


def write_plot(results: Results, path: Path) -> None:
    """Horizontal bars from 1.0x (the chart's baseline) to each ratio, on a log scale, with the target marked."""
    order = ["Per-request", "Rollover", "Cold start", "Token acquisition", "Many customers"]
    charts = sorted(
        ((title, groups) for title, groups in results.charts.items() if groups),
        key=lambda chart: next((i for i, prefix in enumerate(order) if chart[0].startswith(prefix)), len(order)),
    )
    if not charts:
        return
    heights = [1.3 + 0.3 * sum(len(bars) + 1.6 for bars in groups.values()) for _, groups in charts]
    figure, axes = plt.subplots(
        len(charts), 1, figsize=(8, sum(heights) + 0.6 * len(charts)), squeeze=False, height_ratios=heights
    )
    palette = plt.get_cmap("tab10")
    for axis, (title, groups) in zip(axes[:, 0], charts, strict=True):
        bar_names: list[str] = []
        for bars in groups.values():
            bar_names.extend(name for name in bars if name not in bar_names)
        labels: list[str] = []
        positions: list[float] = []
        headings: list[int] = []  # the group names among the labels, above their bars
        y = 0.0
        for group, bars in groups.items():
            if len(groups) > 1:
                headings.append(len(labels))
                labels.append(typeset(group))
                positions.append(y)
                y += 1
            for name, value in bars.items():
                axis.barh(y, value - 1.0, left=1.0, color=palette(bar_names.index(name) % 10), height=0.8)
                axis.text(
                    value, y, f" {value:.3f}{TIMES} ", va="center", ha="left" if value >= 1 else "right", fontsize=8
                )
                labels.append(typeset(name))
                positions.append(y)
                y += 1
            y += 0.6
        axis.set_yticks(positions, labels, fontsize=8)
        axis.tick_params(axis="y", length=0)
        for index in headings:
            axis.get_yticklabels()[index].set_fontweight("bold")
        axis.set_ylim(y - 0.9, -0.7)  # top to bottom, half a bar of margin at either end
        target = results.chart_targets.get(title)
        _ratio_axis(axis, [value for bars in groups.values() for value in bars.values()], target)
        axis.axvline(1.0, color="black", linewidth=1)
        if target is not None:
            bound = results.chart_target_bounds.get(title, "≤")
            axis.axvline(target, color="red", linestyle="--", linewidth=1)
            low, high = axis.get_xlim()
            axis.axvspan(*((target, high) if bound == "≤" else (low, target)), color="red", alpha=0.06, linewidth=0)
            axis.set_title(f"target {bound} {target:g}{TIMES}", fontsize=8, color="red", loc="right")
        parts = _TITLE.match(title)
        what, ratio = (typeset(parts["what"]), typeset(parts["ratio"])) if parts else (typeset(title), "ratio")
        axis.set_title(what, fontsize=10, loc="left", fontweight="bold")
        axis.set_xlabel(f"{ratio[0].upper()}{ratio[1:]}; log scale, black line at 1{TIMES} (equal to it)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_docs(results: Results, *, environment: list[str], seconds: float) -> None:
    """Write the page, its plot, and the results they come from (to draw them again later)."""
    write_plot(results, PLOT)
    write_markdown(results, PAGE, environment=environment, image=PLOT.name, seconds=seconds)
    saved = {"environment": environment, "seconds": seconds, **dataclasses.asdict(results)}
    RESULTS.write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    argparse.ArgumentParser(
        description="Write docs/benchmarks.md and its plot again from bench/results.json."
    ).parse_args()
    saved = json.loads(RESULTS.read_text(encoding="utf-8"))
    environment, seconds = saved.pop("environment"), saved.pop("seconds")
    rows = [Row(**row) for row in saved.pop("rows")]
    write_docs(Results(rows=rows, **saved), environment=environment, seconds=seconds)
    print(f"wrote {PAGE} and {PLOT} from {RESULTS}")


if __name__ == "__main__":
    main()
