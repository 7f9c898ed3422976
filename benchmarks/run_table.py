"""The rows and the Markdown table of benchmarks/run.py: every ratio is ours / reference, with the
goal the issue sets where it sets one."""

from __future__ import annotations

import bench_startup
from bench_checkpoints import MiB


def row(rid, operation, ours, reference, ours_text, reference_text, goal=None, goal_text="-", **extra):
    """One table row; every goal is an upper bound on ratio = ours / reference (None: no goal)."""
    ratio = ours / reference if reference else float("inf")
    met = None if goal is None else bool(ratio <= goal)
    return {"id": rid, "operation": operation, "ours": ours, "reference": reference, "ours_text": ours_text,
            "reference_text": reference_text, "ratio": ratio, "goal": goal, "goal_text": goal_text, "met": met,
            **extra}  # fmt: skip


def fmt_s(t: float) -> str:
    return f"{t:.3f} s" if t < 10 else f"{t:.1f} s"


def fmt_n(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n:,}"


def build_rows(res: dict, ckpts: dict) -> list[dict]:
    rows = []
    for n, r in res["cheader"].items():
        rows.append(row(f"cheader_writer_{n}", f"cheader writer, {fmt_n(int(n))} int8 codes",
                        r["qexport_seconds"], r["xxd_seconds"], fmt_s(r["qexport_seconds"]),
                        f"`xxd -i`: {fmt_s(r['xxd_seconds'])}", 3.0, "<= 3x", unit="s"))  # fmt: skip
    e2e = res["end_to_end"]
    base = e2e["baseline_peak_bytes"]
    for key, e in e2e["checkpoints"].items():
        what = f"{e['label']} ({fmt_n(e['params'])} params, {e['file_bytes'] / MiB:.1f} MiB)"
        rows.append(row(f"e2e_cheader_{key}", f"end to end `qexport cheader --bits 8`, {what}",
                        e["ours_seconds"], e["reference_seconds"], fmt_s(e["ours_seconds"]),
                        f"torch.load(mmap) + raw write: {fmt_s(e['reference_seconds'])}", unit="s"))  # fmt: skip
        net = e["ours_peak_bytes"] - base
        rows.append(row(f"peak_memory_{key}", f"peak memory of that export above the import baseline, {what}",
                        net, e["file_bytes"],
                        f"+{net / MiB:.0f} MiB (peak {e['ours_peak_bytes'] / MiB:.0f} MiB = "
                        f"{e['ours_peak_bytes'] / e['file_bytes']:.1f}x the file)",
                        f"checkpoint file {e['file_bytes'] / MiB:.1f} MiB", 2.5, "<= 2.5x", unit="bytes",
                        absolute_peak_bytes=e["ours_peak_bytes"], baseline_peak_bytes=base,
                        absolute_ratio=e["ours_peak_bytes"] / e["file_bytes"],
                        reference_process_peak_bytes=e["reference_peak_bytes"]))  # fmt: skip
    refs = {"mat": "`scipy.io.savemat`", "npy": "`numpy.save` per array", "npz": "`numpy.savez`",
            "h5": "`h5py` create_dataset", "txt": "`numpy.savetxt`"}  # fmt: skip
    for w in res["data_writers"]:
        for name, p in w["pairs"].items():
            goal, goal_text = (0.2, "<= 0.2x (>= 5x faster)") if name == "txt" else (1.5, "<= 1.5x")
            speed = f" ({1 / p['ratio_ours_over_reference']:.1f}x faster)" if name == "txt" else ""
            rows.append(row(f"writer_{name}_{w['params']}", f"`qexport {name}` writer, {fmt_n(w['params'])} params",
                            p["ours_seconds"], p["reference_seconds"], fmt_s(p["ours_seconds"]) + speed,
                            f"{refs[name]}: {fmt_s(p['reference_seconds'])}", goal, goal_text, unit="s"))  # fmt: skip
    q = res["quantizers"]
    for r in q["results"]:
        floor = r["judged_against"]
        rows.append(row(f"quantizer_{r['name'].replace(' ', '_')}", f"quantizer {r['name']}, {fmt_n(q['n'])} weights",
                        r["seconds"], r["floors"][floor]["seconds"], fmt_s(r["seconds"]),
                        f"numpy `{floor}`: {fmt_s(r['floors'][floor]['seconds'])}", 4.0, "<= 4x", unit="s"))  # fmt: skip
    s = res["startup"]
    judged = next(r for r in s["results"] if r["judged"])
    plain = next(r for r in s["results"] if r["name"] == "python -c pass")
    rows.append(row("startup_help", "`python -m qexport.cli --help` start-up", judged["seconds"], plain["seconds"],
                    fmt_s(judged["seconds"]), f"`python -c pass`: {fmt_s(plain['seconds'])}", bench_startup.GOAL, f"<= {bench_startup.GOAL:g}x",
                    unit="s"))  # fmt: skip
    script = next((r for r in s["results"] if r["name"].startswith("qexport --help")), None)
    if script:
        rows.append(row("startup_help_script", "`qexport --help` (console script) start-up", script["seconds"],
                        plain["seconds"], fmt_s(script["seconds"]), f"`python -c pass`: {fmt_s(plain['seconds'])}",
                        unit="s"))  # fmt: skip
    c = res["cifar"]
    t = c["timings"]
    rows.append(row("cifar_bmp", f"`cifar-bmp`, {c['n']:,} images (in {c['where']})", t["qexport"]["median_s"], t["floor"]["median_s"],
                    fmt_s(t["qexport"]["median_s"]), f"os.open/write/close floor: {fmt_s(t['floor']['median_s'])}",
                    2.0, "<= 2x", unit="s",
                    median_round_ratio=c["median_round_ratio_to_floor"]["qexport"]))  # fmt: skip
    rows.append(row("cifar_bmp_vs_atomic", f"`cifar-bmp`, {c['n']:,} images, vs the atomic-write floor",
                    t["qexport"]["median_s"], t["atomic_floor"]["median_s"], fmt_s(t["qexport"]["median_s"]),
                    f"temporary name + write + rename floor: {fmt_s(t['atomic_floor']['median_s'])}",
                    unit="s"))  # fmt: skip
    rows.append(row("cifar_bmp_vs_pillow", f"`cifar-bmp`, {c['n']:,} images, vs the seed's Pillow loop",
                    t["qexport"]["median_s"], t["pillow"]["median_s"], fmt_s(t["qexport"]["median_s"]),
                    f"pickle + PIL `Image.save`: {fmt_s(t['pillow']['median_s'])}", unit="s"))  # fmt: skip
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    counts = sorted(set(meta["repeat"].values()))
    runs = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    lines = [f"Benchmarks ({meta['mode']}), {meta['cpus']} CPUs, Python {meta['python']}, torch {meta['torch']}, "
             f"numpy {meta['numpy']}; medians of {runs} runs; ratio = ours / reference; "
             f"total {meta['duration_seconds']:.0f} s.", "",
             "| operation | ours | reference | ratio | goal | met? |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        met = "-" if r["met"] is None else "yes" if r["met"] else "**no**"
        lines.append(f"| {r['operation']} | {r['ours_text']} | {r['reference_text']} | {r['ratio']:.2f}x | "
                     f"{r['goal_text']} | {met} |")  # fmt: skip
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
