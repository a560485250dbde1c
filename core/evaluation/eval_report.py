"""report.md of ``maskstream eval``: the paper's Tables 1–2 with bootstrap intervals."""
from __future__ import annotations

from pathlib import Path

PAPER = {  # Örnek & Ceylan 2024, their own (non-public) data, ResNet18: mean IoU / Dice
    "gradcam": (0.1922, 0.3153), "gradcam++": (0.2472, 0.3923), "layercam": (0.2476, 0.3928),
    "eigencam": (0.3386, 0.5003), "haycam": (0.3487, 0.5098), "haycam+": (0.3740, 0.5376),
}


def _by_size(b: dict | None) -> list[str]:
    """Classification per face-size bucket (``classification.by_face_size``) as a table."""
    if not b:
        return []
    names = list(dict.fromkeys(k for v in b.values() for k in v.get("recall", {})))
    rows = ["| face size in the photo | n | accuracy | balanced accuracy | "
            + " | ".join(f"{n} recall" for n in names) + " |", "|" + "---|" * (4 + len(names))]
    for k, v in b.items():
        rec = v.get("recall", {})
        rows.append(f"| {k} | {v['n']} | {_f(v['accuracy'])} | {_f(v['balanced_accuracy'])} | "
                    + " | ".join(_f(rec.get(n)) for n in names) + " |")
    return [*rows, ""]


def _extent(loc: dict, methods: list[str]) -> list[str]:
    """Localisation per bucket of the face's share of the window (``localization.<m>.by_face_share``)."""
    per = {m: loc[m].get("by_face_share") for m in methods if loc[m].get("by_face_share")}
    if not per:
        return []
    first = next(iter(per.values()))
    buckets = list(first)
    lines = ["## Does the box follow the face's size?", "",
             "Per bucket of the face's share of the window: mean IoU, the median predicted/true box area "
             "(1.00× = right size) and, in brackets, the mean IoU a perfect per-crop threshold would give. "
             "A map whose blob followed the face would keep the area ratio near 1× in every column.", "",
             "| method | " + " | ".join(f"face {b} of the window (n = {first[b]['n']})" for b in buckets) + " |",
             "|" + "---|" * (1 + len(buckets))]
    for m, b in per.items():
        cells = []
        for k in buckets:
            e = b[k]
            if not e.get("n"):
                cells.append("–")
                continue
            cell = f"{e['iou']:.3f}, {e['area_ratio']:.2f}×"
            if e.get("oracle_iou") is not None:
                cell += f" ({e['oracle_iou']:.3f})"
            cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _ci(v: list | None) -> str:
    if not v or v[0] is None:
        return "–"
    return f"[{v[0]:.3f}, {v[1]:.3f}]"


def _f(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def _thr(e: dict) -> str:
    if e.get("threshold_mode") == "otsu":
        t = "otsu"
    elif e.get("threshold_mode") == "percentile":
        t = f"p{e['threshold']:.0f}"
    else:
        t = f"{e['threshold']:.2f}·max"
    return t + ("" if e.get("calibrated") else " (not calibrated)")


def _table(loc: dict, methods: list[str], with_paper: bool) -> list[str]:
    head = "| method | IoU | IoU 95% CI | Dice | Dice 95% CI | CorLoc | MaxBoxAccV2 | no box | threshold |"
    if with_paper:
        head += " paper IoU / Dice |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    best = max(methods, key=lambda m: loc[m].get("iou", -1))
    for m in methods:
        e = loc[m]
        if not e.get("n"):
            continue
        name = f"**{m}**" if m == best else m
        row = (f"| {name} | {_f(e['iou'])} | {_ci(e['iou_ci95'])} | {_f(e['dice'])} | {_ci(e['dice_ci95'])} | "
               f"{_f(e['corloc'])} | {_f(e['maxboxacc_v2'])} | {e['no_box_rate']:.3f} | {_thr(e)} |")
        if with_paper:
            p = PAPER.get(m)
            row += f" {p[0]:.4f} / {p[1]:.4f} |" if p else " – |"
        lines.append(row)
    return lines


def write_markdown(path: str | Path, report: dict) -> Path:
    """Write the human-readable report (tables overall and per class, comparison, setup)."""
    s = report["setup"]
    loc = report["localization"]
    methods = list(loc)
    c = report["classification"]
    out = [
        "# maskstream evaluation",
        "",
        (f"Data `{s['data']}`, split **{s['split']}** ({s['n_images']} images, {s['n_crops']} context crops, "
         f"crop seed {s['seed']}); checkpoint `{s['checkpoint']}` ({s['backbone']}, {s['input_size']} px)."),
        (f"Gradient methods explain the **{s['target']}** class; the predicted box is the "
        f"{'top-scoring' if s['box_select'] == 'score' else 'largest'} connected component above the method's "
        "threshold; no box scores IoU = Dice = 0. CIs: percentile bootstrap over crops "
        f"({s['n_boot']} resamples, seed {s['seed']}). MaxBoxAccV2: map thresholds step {s['cam_threshold_step']}, "
        "IoU 0.3/0.5/0.7, any component counts (Choe et al. 2020)."),
        "",
        "## Classification",
        "",
        f"accuracy **{_f(c['accuracy'])}**, balanced accuracy **{_f(c['balanced_accuracy'])}** on n = {c['n']} crops"
        + ("; recall per class: " + ", ".join(f"{k} {v:.4f}" for k, v in c.get('recall', {}).items())
           if c.get("recall") else "") + ".",
        "",
        *_by_size(c.get("by_face_size")),
        *([f"Misclassified crops, most confident first, zoomed on the face: ![errors]({s['errors_figure']})", ""]
          if s.get("errors_figure") else []),
        "## Localisation, all crops (paper Tables 1–2: IoU and Dice)",
        "",
        *_table(loc, methods, True),
        "",
        "Paper numbers are on the authors' own non-public data (ResNet18), for orientation only.",
        "",
    ]
    prior = (report.get("reference") or {}).get("fixed_box_prior")
    if prior:
        out += [(f"Reference without any map: one fixed box for every crop ({prior['fitted_on']}, "
                 f"{[round(v, 1) for v in prior['box']]}) scores IoU {prior['iou']:.4f} {_ci(prior['iou_ci95'])}, "
                 f"Dice {prior['dice']:.4f}, CorLoc {prior['corloc']:.4f}."), ""]
    out += _extent(loc, methods)
    if s.get("extent_figure"):
        out += [f"![box area over face area against face size, one dot per crop]({s['extent_figure']})", ""]
    for lb, per in report.get("per_class", {}).items():
        n = next((e.get("n", 0) for e in per.values()), 0)
        out += [f"## Localisation, class `{lb}` (n = {n})", "", *_table({**per, **{
            m: {**per[m], "threshold": loc[m]["threshold"], "threshold_mode": loc[m]["threshold_mode"],
                "calibrated": loc[m]["calibrated"]} for m in per}}, methods, False), ""]
    cmp_ = report.get("comparison") or {}
    if cmp_:
        if not cmp_["excludes_zero"]:
            verdict = "includes zero (no significant difference)"
        elif cmp_["iou_diff"] > 0:
            verdict = f"excludes zero: {cmp_['best_maskstream']} is better"
        else:
            verdict = f"excludes zero: {cmp_['best_maskstream']} is WORSE than {cmp_['best_baseline']}"
        out += [
            "## Best maskstream map vs best baseline (paired bootstrap)",
            "",
            (f"Best maskstream map **{cmp_['best_maskstream']}**, best baseline **{cmp_['best_baseline']}** "
             f"(chosen on: {cmp_['chosen_on']})."),
            (f"IoU difference {cmp_['iou_diff']:+.4f}, 95% CI {_ci(cmp_['iou_diff_ci95'])}: {verdict}; "
             f"Dice difference {cmp_['dice_diff']:+.4f}, 95% CI {_ci(cmp_['dice_diff_ci95'])} (n = {cmp_['n']})."),
            "",
            "Ranking by mean IoU: " + " > ".join(cmp_.get("ranking_by_iou", [])),
            "",
        ]
    hr = loc.get("haycam+hr")
    if hr:
        out += ["## haycam+hr (beyond the paper)", "",
                f"Variant {hr.get('options')}; threshold {_thr(hr)}"
                + (f"; val IoU {hr['val_iou']:.4f}" if hr.get("val_iou") is not None else "") + ".", ""]
    out += ["## Thresholds", "", "| method | threshold | calibrated on val | val IoU |", "|---|---|---|---|"]
    for m in methods:
        e = loc[m]
        out.append(f"| {m} | {_thr(e).replace(' (not calibrated)', '')} | {'yes' if e['calibrated'] else 'NO (default)'}"
                   f" | {_f(e.get('val_iou'))} |")
    if s.get("calibrated_checkpoint"):
        out += ["", f"Calibrated thresholds were written to `{s['calibrated_checkpoint']}`."]
    out += ["", "![examples](figure.png)", "",
            f"_Green: ground truth; white: predicted box; IoU per map. Elapsed {s.get('elapsed_s')} s._", ""]
    path = Path(path)
    path.write_text("\n".join(out))
    return path
