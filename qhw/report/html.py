"""One self-contained HTML page from a :class:`~qhw.report.data.ReportData`.

The page has inline CSS and inline SVG charts only: no script, no image
file, no font or style sheet fetched from anywhere. Where a section's data
is absent it says which command produces it.
"""

from __future__ import annotations

from html import escape
from typing import Iterable, Sequence

from qhw import __version__

from . import plots
from .data import FAMILY_NAMES, ReportData

CSS = """
body { font-family: 'DejaVu Sans', Verdana, sans-serif; font-size: 14px; color: #222; background: #fff;
       margin: 0 auto; padding: 16px 24px 40px; max-width: 1120px; }
h1 { font-size: 22px; margin: 4px 0 6px; } h2 { font-size: 18px; margin: 28px 0 8px;
       border-bottom: 1px solid #ccc; padding-bottom: 3px; }
p, li { line-height: 1.4; } .meta { color: #555; } code { background: #f3f3f3; padding: 0 3px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: left; } th { background: #f0f0f0; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.bottleneck td { background: #fde2e2; } .tag { color: #d62728; font-weight: bold; }
.absent { background: #fff8e1; border-left: 4px solid #f5b400; padding: 6px 10px; }
.bad { color: #d62728; font-weight: bold; } .ok { color: #2e7d32; font-weight: bold; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 4px 0 8px; }
"""


def _cell(v) -> str:
    if v is None:
        return "<td></td>"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f'<td class="n">{v:g}</td>' if isinstance(v, float) else f'<td class="n">{v}</td>'
    return f"<td>{v}</td>"  # already HTML


def _table(head: Sequence[str], rows: Iterable[Sequence], row_classes: Sequence[str] | None = None) -> str:
    rows = list(rows)
    classes = row_classes or [""] * len(rows)
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for cls, r in zip(classes, rows):
        attr = f' class="{cls}"' if cls else ""
        out.append(f"<tr{attr}>" + "".join(_cell(v) for v in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _absent(what: str, command: str) -> str:
    return f'<p class="absent">No {escape(what)} yet. <code>{escape(command)}</code> produces it; then run ' \
           "<code>qhw report</code> again.</p>"


def _ratio(e, m) -> str:
    return "" if e is None or not m else f"{e / m:.2f}"


def _header(d: ReportData) -> str:
    fam = FAMILY_NAMES[d.family]
    tot = d.totals[d.family]
    lines = [f"<h1>qhw report: {escape(d.top)}</h1>",
             f'<p class="meta">build <code>{escape(d.build)}</code>; network '
             f"<code>{escape(d.network_path or '(not named)')}</code>, digest <code>{d.network_digest[:16]}</code>; "
             f"qhw {escape(__version__)}</p>",
             f"<p><b>{d.cycles_per_frame}</b> cycles per frame, bottleneck <b>{escape(d.bottleneck)}</b>; "
             f"estimate on {escape(fam)}: <b>{tot['lut']}</b> LUT, <b>{tot['ff']}</b> FF, "
             f"<b>{tot['bram']}</b> BRAM, {tot.get('dsp', 0)} DSP.</p>"]
    rows = [[escape(FAMILY_NAMES[f]), t["lut"], t["ff"], t["bram"], t.get("dsp", 0)] for f, t in d.totals.items()]
    lines.append(_table(["family (estimate, whole network)", "LUT", "FF", "BRAM", "DSP"], rows))
    if d.fifos:
        lines.append("<p>skip FIFOs: " + ", ".join(f"{escape(f['dst'])}[{f['port']}] {f['depth']}"
                                                   for f in d.fifos) + "</p>")
    return "\n".join(lines)


def _layers(d: ReportData) -> str:
    marks = set(d.bottleneck_layers)
    rows, classes = [], []
    for l in d.layers:
        e = l.estimate[d.family]
        name = escape(l.name) + (' <span class="tag">◀ bottleneck</span>' if l.name == d.bottleneck else "")
        rows.append([name, escape(l.kind), escape(l.pe or ""), escape(l.weights or ""), escape(l.acts_in),
                     escape(l.acts_out), escape(l.fold), l.cycles_per_frame, e["lut"], e["ff"], e["bram"]])
        classes.append("bottleneck" if l.name in marks else "")
    out = ["<h2>Layers</h2>",
           f"<p>Estimates on {escape(FAMILY_NAMES[d.family])}; weights and activations as "
           "<code>code:bits</code>; cycles per frame of each engine alone; red rows run at the network's rate.</p>",
           _table(["layer", "kind", "PE", "weights", "acts in", "acts out", "fold", "cycles/frame", "LUT", "FF",
                   "BRAM"], rows, classes)]
    if d.network_note:
        out.append(f'<p class="absent">weight bits unknown: {escape(d.network_note)}</p>')
    names = [l.name for l in d.layers]
    out.append("<h2>Cycles per frame</h2>")
    out.append(plots.cycles_chart(names, [l.cycles_per_frame for l in d.layers], d.bottleneck, d.cycles_per_frame))
    out.append("<h2>Resources per layer and family</h2>")
    out.append(plots.resources_chart(names, [l.estimate for l in d.layers], list(d.totals)))
    return "\n".join(out)


def _sim(d: ReportData) -> str:
    out = ["<h2>Simulation: estimate vs measured cycles per frame</h2>"]
    if not d.sim:
        return "\n".join(out + [_absent("simulation result", f"qhw sim {d.build} --images 4")])
    for stem, r in d.sim.items():
        cpf = r.get("cycles_per_frame")
        verdict = '<span class="ok">bit-exact</span>' if r.get("ok") else \
            f'<span class="bad">FAILED: {escape(str(r.get("failure") or "mismatches"))}</span>'
        measured = f"<b>{cpf:g}</b>" if cpf is not None else "not measured (one frame)"
        ratio = f" (estimate / measured {_ratio(r['manifest_cycles_per_frame'], cpf)})" if cpf else ""
        out.append(
            f"<p><b>{escape(r['simulator'])}</b>, {r['images']} images, stall {r['stall']:g}: {verdict}; "
            f"{r['values_compared']} values compared, {r['mismatches']} mismatches, class agreement "
            f"{r['class_agreement']:.1f} %. Measured cycles per frame {measured}, estimate "
            f"{r['manifest_cycles_per_frame']}{ratio}; latency "
            f"{'n/a' if r.get('latency') is None else str(r['latency']) + ' cycles'} "
            f"(<code>results/{escape(stem)}.json</code>).</p>")
        layers = r.get("layers", [])
        est_cpf = r["manifest_cycles_per_frame"]
        # in the pipeline every engine runs at the bottleneck's rate, so that is each one's estimated frame
        # interval; the chart shows the network and only the engines whose measured interval differs
        off = [l for l in layers if l.get("interval") != est_cpf]
        same = len(layers) - len(off)
        names = ["network (m_axis)"] + [l["name"] for l in off]
        mea = [cpf] + [l.get("interval") for l in off]
        title = (f"{r['simulator']}: cycles per frame, estimate {est_cpf} vs simulated; "
                 + (f"all {same} engines' measured frame intervals equal the estimate" if not off else
                    f"{same} of {len(layers)} engines' frame intervals equal it, the others are shown"))
        out.append(plots.compare_chart(f"sim-{stem}", names, [est_cpf] * len(names), mea, what="cycles per frame",
                                       measured_label="simulated", title=title))
        rows = [[escape(l["name"]), l["cycles_per_frame"], l.get("interval"), round(100 * l["busy"], 1),
                 round(100 * l["ideal_busy"], 1), round(100 * l["stalled"], 1), l["mismatches"]] for l in layers]
        out.append(_table(["layer", "cycles/frame (est)", "measured interval", "busy %", "ideal %", "stalled %",
                           "mismatches"], rows))
    return "\n".join(out)


def _synth(d: ReportData) -> str:
    out = ["<h2>Synthesis: estimate vs yosys</h2>"]
    if not d.synth:
        return "\n".join(out + [_absent("synthesis result", f"qhw synth {d.build} --target {d.family}")])
    for stem, r in d.synth.items():
        t, te = r["total"], r["estimate"]
        out.append(f"<p><b>{escape(r['target'])}</b> ({'per layer' if r['per_layer'] else 'flat, totals only'}, "
                   f"yosys {r['seconds']:.0f} s): {t['lut_sites']} LUT (estimate {te['lut']}, ratio "
                   f"{_ratio(te['lut'], t['lut_sites'])}), {t['ff']} FF (estimate {te['ff']}), {t['bram']} BRAM "
                   f"(estimate {te['bram']}), {t['dsp']} DSP (estimate {te['dsp']}) "
                   f"(<code>results/{escape(stem)}.json</code>).</p>")
        if not r["layers"]:
            continue
        names = [l["layer"] for l in r["layers"]] + ["glue", "total"]
        est = [l["estimate"]["lut"] for l in r["layers"]] + [r["glue_estimate"].get("lut"), te["lut"]]
        mea = [l["lut_sites"] for l in r["layers"]] + [r["glue_total"]["lut_sites"], t["lut_sites"]]
        out.append(plots.compare_chart(f"synth-{stem}", names, est, mea, what="LUTs", measured_label="yosys",
                                       title=f"{r['target']}: LUTs per layer, estimate vs yosys"))
        rows = [[escape(l["layer"]), l["estimate"]["lut"], l["lut_sites"], _ratio(l["estimate"]["lut"], l["lut_sites"]),
                 l["estimate"]["ff"], l["ff"], _ratio(l["estimate"]["ff"], l["ff"]), l["estimate"]["bram"], l["bram"],
                 l["estimate"]["dsp"], l["dsp"]] for l in r["layers"]]
        out.append(_table(["layer", "LUT est", "LUT yosys", "ratio", "FF est", "FF yosys", "ratio", "BRAM est",
                           "BRAM yosys", "DSP est", "DSP yosys"], rows))
        dsp = [l["layer"] for l in r["layers"] if l["dsp"] > (l["estimate"]["dsp"] or 0)]
        if dsp:
            out.append(f"<p>yosys put multipliers into DSP blocks the estimate counts in LUTs in "
                       f"{escape(', '.join(dsp))} (<code>qhw synth --no-dsp</code> keeps them in LUTs).</p>")
    return "\n".join(out)


def _pnr(d: ReportData) -> str:
    out = ["<h2>Place and route: Fmax against the board clock</h2>"]
    if not d.pnr:
        return "\n".join(out + [_absent("place-and-route result", f"qhw board flash-file {d.build} --board "
                                        "icebreaker")])
    rs = list(d.pnr.values())
    out.append(plots.fmax_chart([r["board"] for r in rs], [r["fmax_mhz"] for r in rs], [r["clock_mhz"] for r in rs]))
    rows = [[escape(r["board"]), escape(r["device"]), r["fmax_mhz"], r["clock_mhz"],
             '<span class="ok">met</span>' if r["timing_met"] else '<span class="bad">NOT met</span>',
             escape(", ".join(f"{k} {v['used']}/{v['available']}" for k, v in r["utilization"].items() if v["used"]))]
            for r in rs]
    out.append(_table(["board", "device", "Fmax MHz", "clock MHz", "timing", "utilization"], rows))
    return "\n".join(out)


def _train(d: ReportData) -> str:
    out = ["<h2>Trained configurations: accuracy vs BitOPs and LUTs</h2>"]
    if not d.train:
        return "\n".join(out + [_absent("training result", f"qhw report {d.build} --train DIR  (DIR: a "
                                        "'qhw train --out DIR' directory)")])
    p = d.train
    out.append(plots.train_chart([t.label for t in p], [t.top1 for t in p], [t.bitops for t in p],
                                 [t.lut for t in p], d.family))
    rows = [[escape(t.label), t.top1, t.bitops, t.lut, escape(t.lut_build or "")] for t in p]
    out.append(_table(["configuration", "top-1 %", "BitOPs", f"LUT (estimate, {d.family})", "from build"], rows))
    if any(t.lut is None for t in p):
        out.append('<p class="absent">LUTs only for configurations with a build of their network: '
                   "<code>qhw export DIR/checkpoint.pt --out NET.json</code>, <code>qhw build NET.json --out "
                   "B</code>, then <code>--train-build B</code>.</p>")
    return "\n".join(out)


def render(d: ReportData) -> str:
    """The whole page (deterministic: the same data give the same bytes)."""
    body = "\n".join([_header(d), _layers(d), _sim(d), _synth(d), _pnr(d), _train(d)])
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>qhw report: {escape(d.top)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
            "</body>\n</html>\n")
