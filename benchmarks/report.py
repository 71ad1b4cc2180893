"""The benchmark's outputs: the terminal table, the JSON of every figure, raw samples,
PNG histograms, and the table in the README."""
import json
import re
from pathlib import Path

import numpy as np

TARGETS = {
    "step_vs_torch": 20.0,      # numba at least this many times faster than nn.LSTM
    "step_vs_bound": 1.5,       # numba within this factor of the bandwidth bound
    "mood_p99_us": 2000.0,
    "jitter_p99_us": 500.0,
    "jitter_max_us": 2000.0,
    "ack_p99_us": 1000.0,
    "sessions": 64,
    "ensemble_sessions": 64,            # real-time sessions in the engine, every voice playing
    "ensemble_first_note_us": 1000.0,   # each voice's first note within this of one line's
}
README_BEGIN, README_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _backend(path):
    """'native' or 'rtmidi, baseline' for a result key ("jack", "jack_rtmidi")."""
    return "rtmidi, baseline" if path.endswith("rtmidi") else "native"


def _f(x, unit=""):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:,.0f}{unit}"
    return f"{x:.3g}{unit}" if abs(x) < 10 else f"{x:.1f}{unit}"


def _met(ok):
    return "-" if ok is None else ("yes" if ok else "NO")


def rows(res):
    """[(section, what, p50, p99, max, note, target, met)] from the results dict."""
    out = []
    add = lambda *r: out.append(tuple(r))
    st = res.get("step")
    if st:
        n = st["numba_us"]
        b = st["bound"]
        ratio_bound = b["numba_p50_vs_bound_weights_size"]
        add("step", "numba lstm_step, batch 1 (µs)", n["p50"], n["p99"], n["max"],
            f"{b['numba_GFLOPs_at_p50']:.1f} GFLOP/s", "", "")
        if "numba_after_gap_us" in st:
            g = st["numba_after_gap_us"]
            add("step", "numba lstm_step after an idle 20-80 ms (µs)", g["p50"], g["p99"], g["max"],
                f"weights at {st['model']['weight_bytes'] / g['p50'] / 1e3:.1f} GB/s", "", "")
        if "parts" in st:
            p = st["parts"]
            add("step", "  profile: gate GEMVs | nonlinearity | head (µs)", None, None, None,
                f"{p['gate_gemv_us_p50']:.1f} | {p['gate_nonlinearity_us_p50']:.1f} | "
                f"{p['head_gemv_us_p50']:.1f}", "", "")
        for key, t in st["torch"].items() if isinstance(st["torch"], dict) else ():
            th = key.split("_")[1]
            add("step", f"torch nn.LSTM, {th} thread(s) (µs)", t["lstm_us"]["p50"], t["lstm_us"]["p99"],
                t["lstm_us"]["max"], f"{t['lstm_vs_numba_p50']:.1f}× numba",
                "≥ 20×" if th == "1" else "", _met(t["lstm_vs_numba_p50"] >= TARGETS["step_vs_torch"])
                if th == "1" else "")
            add("step", f"torch LSTMCell, {th} thread(s) (µs)", t["cell_us"]["p50"], t["cell_us"]["p99"],
                t["cell_us"]["max"], f"{t['cell_vs_numba_p50']:.1f}× numba", "", "")
        if st.get("torch_profile"):
            top = st["torch_profile"][0]
            add("step", "  profile: nn.LSTM step's top op", None, None, None,
                f"{top['op']} {100 * top['share']:.0f}%", "", "")
        add("step", "bound: weights ÷ copy bw, weights' size (µs)", b["bound_us_weights_size"], None, None,
            f"{b['copy_GBps_weights_size']:.0f} GB/s; numba {ratio_bound:.2f}×", "≤ 1.5×",
            _met(ratio_bound <= TARGETS["step_vs_bound"]))
        if "read_us_weights_size" in b:
            add("step", "  a read-only pass over the weights' bytes (µs)", b["read_us_weights_size"],
                None, None, f"{b['read_GBps_weights_size']:.0f} GB/s", "", "")
        add("step", f"bound: weights ÷ copy bw, {b['large_buffer_MB']} MB (µs)", b["bound_us_large"], None, None,
            f"{b['copy_GBps_large']:.0f} GB/s; numba {b['numba_p50_vs_bound_large']:.2f}×", "", "")
    se = res.get("sessions")
    if se:
        en = se.get("ensemble")
        for S, r in se["step"].items():
            for label, x in (("", r), ("ensemble ", (en or {}).get("step", {}).get(S))):
                if x:
                    add("sessions", f"{label}lstm_step, {S} sessions (µs)", x["step_us"]["p50"],
                        x["step_us"]["p99"], x["step_us"]["max"], _step_note(x), "", "")
        rates = (("one line", se["rate"]), ("one line", (en or {}).get("rate_line")),
                 ("ensemble", (en or {}).get("rate")))
        for label, x in rates:
            if x:
                add("sessions", f"{label}: events a session needs ({x['preset']}, {x['bpm']:g} bpm)",
                    None, None, None, _rate_note(x), "", "")
        for label, x in rates:
            if x and "advance_us_per_beat" in x:
                add("sessions", f"{label}: generator time per session per beat, batch 1 (µs)",
                    x["advance_us_per_beat"], None, None,
                    f"{x['preset']}; {100 * x['advance_us_per_beat'] * x['bpm'] / 60e6:.2f}% "
                    "of a core a session", "", "")
        for S, r in se["server"].items():
            j = r["zmq_us"]
            add("sessions", f"serve, {S} sessions: jitter (µs)", j.get("p50"), j.get("p99"), j.get("max"),
                f"{r['notes_per_s']:.0f} notes/s", "p99 < 1 ms", _met(r["realtime"]))
        add("sessions", "real-time sessions over ZeroMQ (largest count met)", None, None, None,
            str(se["realtime_sessions"]), "≥ 64", _met(se["realtime_sessions"] >= TARGETS["sessions"]))
        for S, r in se.get("engine", {}).items():
            e = r["send_lateness_us"]
            add("sessions", f"engine alone, {S} sessions: send − scheduled (µs)", e.get("p50"),
                e.get("p99"), e.get("max"), f"{r['sessions_heard']} heard", "p99 < 1 ms",
                _met(r["realtime"]))
            x = (en or {}).get("engine", {}).get(S)
            if x:
                e = x["send_lateness_us"]
                add("sessions", f"ensemble ({en['state']}), engine alone, {S} sessions: send − "
                    "scheduled (µs)", e.get("p50"), e.get("p99"), e.get("max"),
                    f"{x['sessions_heard']} heard; sessions hearing " + ", ".join(
                        f"{v} {x.get('voices_heard', {}).get(v, 0)}" for v in en["voices"])
                    + f"; all four {x.get('sessions_every_voice', 0)}",
                    "p99 < 1 ms, every voice", _met(x["realtime"]))
                b = x.get("bursts", {})
                if b.get("large"):
                    add("sessions", f"ensemble, {S} sessions: messages due at one instant "
                        "(per message)", b["size"]["p50"], b["size"]["p99"], b["size"]["max"],
                        f"{b['large']} instants of >= 20: first sent late p50 / p99 "
                        f"{b['first_late_us']['p50']:.0f} / {b['first_late_us']['p99']:.0f} µs, "
                        f"{b['per_message_us']['p50']:.2f} µs a message", "", "")
        if "realtime_sessions_engine" in se:
            add("sessions", "real-time sessions in the engine (largest count met)", None, None, None,
                str(se["realtime_sessions_engine"]), "", "")
        if en:
            n = en["realtime_sessions_engine"]
            add("sessions", f"ensemble: real-time sessions in the engine, every session in "
                f"{en['state']} (largest count met)", None, None, None, str(n), "≥ 64",
                _met(n >= TARGETS["ensemble_sessions"]))
        cr = se.get("critic")
        if cr:
            for r in cr["cost"].values():
                add("critic", f"{r['sessions']} sessions at K={r['k']}: µs per event", None, None,
                    None, f"{r['per_event_us']:.0f} µs, {100 * r['core_share']:.1f} % of a core",
                    "", "")
            for k, n in cr["realtime_sessions"].items():
                add("critic", f"real-time sessions in the engine at K={k}", None, None, None,
                    str(n), "≥ 32" if k != "0" else "", _met(n >= 32) if k != "0" else "")
    mo = res.get("mood")
    if mo:
        for path, r in mo.items():
            if path == "ensemble":
                continue  # after the one-line ZeroMQ figure, below
            if not isinstance(r, dict):
                add("mood→note", f"{path}", None, None, None, r, "", "")
                continue
            f = r["first_note_us"]
            note = f"{r['changes']} changes"
            if "marker_us" in r:
                note += f"; marker p50 {r['marker_us']['p50']:.0f} µs"
            if path == "zmq":
                add("mood→note", "ZeroMQ first note (µs)", f["p50"], f["p99"], f["max"], note,
                    "p99 ≤ 2 ms", _met(f["p99"] <= TARGETS["mood_p99_us"]))
                a = r.get("ack_roundtrip_us")
                if a and a.get("n"):
                    add("ack", "mood (\"now\") acknowledgement round trip, one session (µs)",
                        a["p50"], a["p99"], a["max"], f"{a['n']} requests", "", "")
                if "ensemble" in mo:
                    out.extend(_voice_rows(mo["ensemble"], f))
                continue
            jack = res.get("jack") if isinstance(res.get("jack"), dict) else {}
            period_us = 1e6 * (jack.get("period") or 0) / (jack.get("rate") or 1)
            target = period_us + 1000
            add("mood→note", f"JACK ({_backend(path)}) first note at its frame (µs)", f["p50"],
                f["p99"], f["max"], note, "p99 ≤ a period + 1 ms" if period_us else "",
                _met(f["p99"] <= target) if period_us and path == "jack" else "")
    ji = res.get("jitter")
    if ji:
        for load, r in ji.items():
            for path in ("zmq", "jack"):
                j = r.get(path + "_us")
                if not j or not j.get("n"):
                    continue
                note = f"{j['n']} notes"
                if path == "zmq":
                    if load.endswith("_rtmidi"):
                        continue  # the same stream as the native run's: one row is enough
                    b = r.get("zmq_us_with_requests")
                    if b and b.get("n"):
                        add("jitter", f"ZeroMQ, {r['sessions']} session(s), a mood request "
                            "every 20-80 ms meanwhile (µs)", b["p50"], b["p99"], b["max"],
                            f"{b['n']} notes", "", "")
                    a = r.get("ack_us")
                    if a and a.get("n"):
                        add("ack", f"mood acknowledgement round trip, {r['sessions']} "
                            "session(s) playing (µs)", a["p50"], a["p99"], a["max"],
                            f"{a['n']} requests 20-80 ms apart", "p99 ≤ 1 ms" if r["sessions"] > 1
                            else "", _met(a["p99"] <= TARGETS["ack_p99_us"]) if r["sessions"] > 1
                            else "")
                    ok = j["p99"] <= TARGETS["jitter_p99_us"] and j["max"] <= TARGETS["jitter_max_us"]
                    add("jitter", f"ZeroMQ, {r['sessions']} session(s) (µs)", j["p50"], j["p99"],
                        j["max"], note, "p99 ≤ 0.5, max ≤ 2 ms", _met(ok))
                    continue
                fr = r["jack_frames"]
                backend = r.get("jack_backend", "native")
                note += (f" of {r['jack_stream_notes']} paired; frames p50 {fr['p50']:.1f} / p99 "
                         f"{fr['p99']:.1f} at -p {r['jack_period']}; "
                         f"{r['jack_late_frames']} over a frame late")
                add("jitter", f"JACK ({backend}), {r['sessions']} session(s): frame time − "
                    "scheduled (µs)", j["p50"], j["p99"], j["max"], note,
                    "p99 ≤ 1 frame" if backend == "native" else "baseline",
                    _met(abs(fr["p99"]) <= 1 and abs(fr["min"]) <= 1) if backend == "native" else "")
    bd = res.get("breakdown")
    if bd:
        for key in ("engine_1", "engine_loaded"):
            r = bd[key]
            e = r["send_lateness_us"]
            add("breakdown", f"engine alone, {r['sessions']} session(s): "
                "send − scheduled (µs)", e.get("p50"), e.get("p99"), e.get("max"),
                f"{e['n']} notes", "", "")
        if "mood_first_note_us" in bd["engine_1"]:
            m = bd["engine_1"]["mood_first_note_us"]
            add("breakdown", "engine alone: mood call → first note sent (µs)", m["p50"], m["p99"],
                m["max"], f"{m['n']} changes", "", "")
        for key, label in (("zmq_gapped", "20-80 ms apart"), ("zmq_1ms", "1 ms apart")):
            z = bd[key]
            add("breakdown", f"ZeroMQ PUB→SUB one way, {label} (µs)", z.get("p50"), z.get("p99"),
                z.get("max"), f"{z['n']} messages", "", "")
        if "timer_wakeup_us" in bd:
            w = bd["timer_wakeup_us"]
            add("breakdown", "Event.wait(20-80 ms) wakes late by (µs)", w.get("p50"), w.get("p99"),
                w.get("max"), f"{w['n']} waits", "", "")
    su = res.get("startup")
    if su:
        for kind in ("cold", "warm"):
            s = su[kind + "_first_note_s"]
            if s.get("n"):
                add("start-up", f"{kind} numba cache: start → first note (s)", s["p50"], None, s["max"],
                    f"{s['n']} run(s); ready p50 {su[kind + '_ready_s']['p50']:.2f} s", "", "")
    return out


def _step_note(r):
    note = f"{r['per_session_us_p50']:.1f} µs/session, "
    if "us_per_beat" in r:
        note += f"{r['us_per_beat']:.0f} µs/session/beat, "
    return note + f"{100 * r['core_share']:.1f}% core"


def _rate_note(rate):
    note = f"{rate['tokens_per_s']:.1f} steps/s, {rate['tokens_per_beat']:.2f}/beat"
    by = rate.get("note_ons_per_beat_by_voice")
    if by:
        note += "; note-ons/beat " + ", ".join(f"{v} {n:.2f}" for v, n in by.items())
    elif "note_ons_per_beat" in rate:
        note += f"; note-ons/beat {rate['note_ons_per_beat']:.2f}"
    return note


def _voice_rows(en, line):
    """Rows of the ensemble's first note of each voice, each beside ``line`` (the one-line
    figure of the same run): met when its p50 and p99 are within 1 ms of line's."""
    out = []
    limit = TARGETS["ensemble_first_note_us"]
    for v in en["voices"]:
        f = en["first_note_us"][v]
        if not f.get("n"):
            out.append(("mood→note", f"ensemble ({en['state']}), ZeroMQ first {v} note (µs)", None,
                        None, None, f"not heard in {en['changes']} changes", "within 1 ms of one "
                        "line", _met(False)))
            continue
        d50, d99 = f["p50"] - line["p50"], f["p99"] - line["p99"]
        note = (f"{f['n']} of {en['changes']} changes; vs one line p50 {d50:+,.0f}, "
                f"p99 {d99:+,.0f} µs")
        if en["velocity_class_mismatches"].get(v):
            note += f"; {en['velocity_class_mismatches'][v]} in the old velocity class"
        out.append(("mood→note", f"ensemble ({en['state']}), ZeroMQ first {v} note (µs)", f["p50"],
                    f["p99"], f["max"], note, "within 1 ms of one line",
                    _met(f["n"] == en["changes"] and abs(d50) <= limit and abs(d99) <= limit)))
    e = en["every_voice_us"]
    out.append(("mood→note", "ensemble: ZeroMQ every voice heard (µs)", e.get("p50"), e.get("p99"),
                e.get("max"), f"{e.get('n', 0)} of {en['changes']} changes; marker p50 "
                f"{en['marker_us']['p50']:.0f} µs", "", ""))
    same = en.get("line_same_state")
    if same and e.get("n"):
        f = same["first_note_us"]
        out.append(("mood→note", f"one line ({en['state']}), ZeroMQ first note (µs)", f["p50"],
                    f["p99"], f["max"], f"{f['n']} changes; marker p50 "
                    f"{same['marker_us']['p50']:.0f} µs; ensemble's every voice vs it p50 "
                    f"{e['p50'] - f['p50']:+,.0f}, p99 {e['p99'] - f['p99']:+,.0f} µs", "", ""))
    return out


HEAD = ("section", "what", "p50", "p99", "max", "note", "target", "met")


def _cells(r):
    return [r[0], r[1], _f(r[2]), _f(r[3]), _f(r[4]), r[5], r[6], r[7]]


def text_table(res):
    body = [_cells(r) for r in rows(res)]
    widths = [max(len(str(c)) for c in col) for col in zip(HEAD, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < 2 or i > 4 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(HEAD), line(["-" * w for w in widths])] + [line(c) for c in body])


def markdown_table(res):
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(str(c) for c in _cells(r)) + " |" for r in rows(res)]
    return "\n".join(lines)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items() if not k.startswith("_")}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def samples(res, prefix=""):
    """{'section.path': array} of every raw sample kept under a ``_samples`` key."""
    out = {}
    if isinstance(res, dict):
        for k, v in res.items():
            if k == "_samples":
                out.update({f"{prefix}{name}": np.asarray(a, np.float32) for name, a in v.items()})
            else:
                out.update(samples(v, f"{prefix}{k}."))
    return out


def write(res, out_dir):
    """latest.json, samples.npz, latest.md and the PNGs; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "latest.json", out_dir / "samples.npz", out_dir / "latest.md"]
    paths[0].write_text(json.dumps(_jsonable(res), indent=1, allow_nan=False) + "\n")
    np.savez_compressed(paths[1], **samples(res))
    paths[2].write_text(readme_block(res) + "\n")
    paths += plots(res, out_dir)
    return paths


def readme_block(res):
    m = res["machine"]
    return (f"Measured {m['date_utc']} on {m['cpu']} ({m['cores']} cores, load average "
            f"{m['loadavg_at_start']} at start), Python {m['python']}, numba {m['numba']}, "
            f"torch {m['torch']}; model {res['model']}"
            + (f", ensemble {res['ensemble_model']}" if res.get("ensemble_model") else "")
            + f".\n\n```\n{m['command']}\n```\n\n"
            + markdown_table(res))


def update_readme(res, readme):
    """Replace the text between the README's bench markers with this run's table."""
    readme = Path(readme)
    text = readme.read_text()
    pattern = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no {README_BEGIN} ... {README_END} markers")
    readme.write_text(pattern.sub(lambda _: f"{README_BEGIN}\n{readme_block(res)}\n{README_END}", text))


def _hist(ax, data_us, title, targets=()):
    data = np.asarray(data_us, np.float64)
    if data.size == 0:
        ax.set_title(title + " (no data)")
        return
    hi = np.percentile(data, 99.9)
    ax.hist(np.clip(data, None, hi), bins=80, color="#4a7ab5")
    for q, style in ((50, "-"), (99, "--")):
        v = np.percentile(data, q)
        ax.axvline(v, color="k", ls=style, lw=1, label=f"p{q} {v:,.0f} µs")
    for t in targets:
        ax.axvline(t, color="#c0392b", lw=1, label=f"target {t:,.0f} µs")
    ax.set_title(f"{title} (n={data.size}, max {data.max():,.0f} µs)", fontsize=9)
    ax.set_xlabel("µs")
    ax.legend(fontsize=7)


def plots(res, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    mo = {k: v for k, v in res.get("mood", {}).items() if isinstance(v, dict) and k != "ensemble"}
    en = res.get("mood", {}).get("ensemble")
    if mo:
        fig, axes = plt.subplots(1, len(mo) + bool(en), figsize=(6 * (len(mo) + bool(en)), 3.6),
                                 squeeze=False)
        for ax, (path, r) in zip(axes[0], mo.items()):
            _hist(ax, r["_samples"][path], f"mood → first note, {path}", (TARGETS["mood_p99_us"],))
        if en:
            ax = axes[0][-1]
            for name, data in [("one line", mo["zmq"]["_samples"]["zmq"])] + [
                    (v, en["_samples"][f"zmq_{v}"]) for v in en["voices"]]:
                if len(data):
                    ax.hist(data, bins=60, histtype="step", label=f"{name} (p50 "
                            f"{np.percentile(data, 50):,.0f} µs)")
            ax.set_title("mood → first note of each voice, ZeroMQ", fontsize=9)
            ax.set_xlabel("µs")
            ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out_dir / "mood_latency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    ji = res.get("jitter")
    if ji:
        cells = [(f"{path if path == 'zmq' else 'JACK ' + r.get('jack_backend', '')}, "
                  f"{r['sessions']} session(s)", r["_samples"][path])
                 for key, r in ji.items() for path in ("zmq", "jack")
                 if path in r["_samples"] and not (path == "zmq" and key.endswith("_rtmidi"))]
        fig, axes = plt.subplots(2, (len(cells) + 1) // 2, figsize=(12, 7), squeeze=False)
        for ax, (title, data) in zip(axes.T.flat, cells):
            _hist(ax, data, "jitter " + title, (TARGETS["jitter_p99_us"],))
        fig.tight_layout()
        written.append(out_dir / "jitter.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    se = res.get("sessions")
    if se and se["server"]:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
        S = [int(s) for s in se["step"]]
        a.plot(S, [r["per_session_us_p50"] for r in se["step"].values()], "o-", label="one line")
        if se.get("ensemble"):
            a.plot([int(s) for s in se["ensemble"]["step"]],
                   [r["per_session_us_p50"] for r in se["ensemble"]["step"].values()], "s--",
                   label="ensemble")
            a.legend(fontsize=7)
        a.set_xscale("log", base=2)
        a.set_xlabel("sessions stepped together")
        a.set_ylabel("µs per session-step (p50)")
        a.set_title("batched lstm_step", fontsize=9)
        S = [int(s) for s in se["server"]]
        b.plot(S, [r["zmq_us"].get("p99", np.nan) for r in se["server"].values()], "o-",
               label="p99, event stream")
        if se.get("engine"):
            b.plot([int(s) for s in se["engine"]],
                   [r["send_lateness_us"].get("p99", np.nan) for r in se["engine"].values()], "s--",
                   label="p99, engine alone")
        if se.get("ensemble"):
            eng = se["ensemble"]["engine"]
            b.plot([int(s) for s in eng], [r["send_lateness_us"].get("p99", np.nan)
                                           for r in eng.values()], "^:",
                   label=f"p99, engine alone, ensemble ({se['ensemble']['state']})")
        b.axhline(1000, color="#c0392b", lw=1, label="1 ms")
        b.set_xscale("log", base=2)
        b.set_yscale("log")
        b.set_xlabel("sessions open in ostinato serve")
        b.set_ylabel("p99 of arrival or send − scheduled (µs)")
        b.legend(fontsize=7)
        b.set_title("jitter p99 against sessions", fontsize=9)
        fig.tight_layout()
        written.append(out_dir / "sessions.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written
