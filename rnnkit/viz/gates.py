"""What the units of a trained char-level language model do, character by character.

:func:`trace_gates` runs the model's recurrent layers over a text one step at a time
with the cell's own ``step`` (rnnkit/cells) and keeps, for every layer, step and unit,
the gate activations (LSTM i, f, o and the candidate g; GRU r, z and the candidate n),
the cell state c (LSTM) and the hidden state h. :func:`rank_units` correlates every
unit's state with a signal of the text (inside a quotation, position in the line,
bracket depth), the way Karpathy found his quote and line-length cells.
:func:`plot_gates` draws the heatmaps; :func:`gates_html` writes one self-contained page
that colours the text by a chosen unit. Reads models, never trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["trace_gates", "text_signal", "rank_units", "plot_gates", "gates_html",
           "SIGNALS"]

SIGNALS = ("quotes", "line-position", "brackets")
# where each family's step puts its gates in the cache it returns (rnnkit/cells/*.py)
_CACHE_GATES = {"lstm": {"i": 3, "f": 4, "g": 5, "o": 6},
                "gru": {"r": 3, "z": 4, "n": 5}, "rnn": {}}


def _layer_params(layer, index):
    return {name: getattr(layer, attribute)
            for name, attribute in layer._param_names[index].items()}


@torch.no_grad()
def trace_gates(model, ids):
    """Run ``model`` (a LanguageModel, unidirectional) over the token ``ids`` (a 1-D
    LongTensor). Returns one dict per layer: ``{"gates": {name: (T, H)}, "cell": (T, H)
    (LSTM only), "hidden": (T, H)}``."""
    rnn = model.rnn
    if rnn.bidirectional or getattr(rnn, "proj_size", 0):
        raise ValueError("plot gates: the model must be unidirectional without projection")
    family = rnn.family
    if family not in _CACHE_GATES:
        raise ValueError(f"plot gates: the model's cell must be rnn, lstm or gru, got "
                         f"{family!r}")
    inputs = model.embedding(ids.view(-1, 1))                  # (T, 1, E)
    layers = []
    for index, spec in enumerate(rnn._specs):
        params = _layer_params(rnn, index)
        x_proj = spec.project_input(inputs, params)            # (T, 1, G)
        state = tuple(inputs.new_zeros(1, size) for size in spec.state_sizes)
        record = {"gates": {g: [] for g in _CACHE_GATES[family]}, "hidden": []}
        if family == "lstm":
            record["cell"] = []
        for x_t in x_proj:
            h, state, cache = spec.step(x_t, state, params)
            for gate, position in _CACHE_GATES[family].items():
                record["gates"][gate].append(cache[position][0])
            record["hidden"].append(h[0])
            if family == "lstm":
                record["cell"].append(state[1][0])
        layers.append(_stacked(record))
        inputs = torch.stack(record["hidden"]).unsqueeze(1)     # (T, 1, H): next layer's
    return layers


def _stacked(record):
    out = {"gates": {g: torch.stack(v) for g, v in record["gates"].items()},
           "hidden": torch.stack(record["hidden"])}
    if "cell" in record:
        out["cell"] = torch.stack(record["cell"])
    return out


def state_of(layer):
    """The series a unit is judged by: the LSTM's cell state, else the hidden state."""
    return layer.get("cell", layer["hidden"])


def text_signal(text, signal):
    """One number per character: 1 inside double quotes (the quote characters
    included) else 0 (``quotes``); characters since the last newline
    (``line-position``); the depth of ( [ { nesting (``brackets``)."""
    values, inside, column, depth = [], False, 0, 0
    for ch in text:
        if signal == "quotes":
            if ch == '"':
                inside = not inside
                values.append(1.0)
                continue
            values.append(float(inside))
        elif signal == "line-position":
            values.append(float(column))
            column = 0 if ch == "\n" else column + 1
        elif signal == "brackets":
            depth += ch in "([{"
            values.append(float(depth))
            depth = max(depth - (ch in ")]}"), 0)
        else:
            raise ValueError(f"plot gates: --find must be one of {', '.join(SIGNALS)}, "
                             f"got {signal!r}")
    return torch.tensor(values, dtype=torch.float64)


def rank_units(layers, signal_values, top=10):
    """Units sorted by |Pearson correlation| of their state (:func:`state_of`) with
    ``signal_values`` (T,): ``[{"layer", "unit", "correlation"}]``, the best ``top``."""
    s = signal_values - signal_values.mean()
    if float(s.norm()) == 0:
        raise ValueError("plot gates: the signal is constant over this text (no quotes, "
                         "lines or brackets to follow); give a text that has some")
    ranked = []
    for index, layer in enumerate(layers):
        x = state_of(layer).double()                             # (T, H)
        x = x - x.mean(0)
        denominator = x.norm(dim=0) * s.norm()
        corr = torch.where(denominator > 0, (x * s[:, None]).sum(0) / denominator,
                           torch.zeros_like(denominator))
        ranked += [{"layer": index, "unit": unit, "correlation": float(c)}
                   for unit, c in enumerate(corr)]
    ranked.sort(key=lambda r: -abs(r["correlation"]))
    return ranked[:top]


def _rows(layer):
    rows = [(f"{g} gate" if g not in "gn" else f"candidate {g}", v, (0, 1) if g not in "gn"
             else (-1, 1)) for g, v in layer["gates"].items()]
    if "cell" in layer:
        rows.append(("cell c", layer["cell"], None))
    rows.append(("hidden h", layer["hidden"], (-1, 1)))
    return rows


def plot_gates(layers, text, png_path, layer_index=-1, units=None, title=None):
    """Heatmaps (units down, characters across) of every gate, the cell and the hidden
    state of one layer; ``units``: the unit indices shown (default the first 32)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    layer_index %= len(layers)
    layer = layers[layer_index]
    hidden = layer["hidden"].size(1)
    units = list(units) if units is not None else list(range(min(hidden, 32)))
    rows = _rows(layer)
    width = max(8.0, min(0.12 * len(text) + 2, 40.0))
    height = 1.6 + 0.09 * len(units) * len(rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width, height), dpi=110, sharex=True,
                             squeeze=False)
    for ax, (name, values, limits) in zip(axes[:, 0], rows):
        data = values[:, units].T.float().numpy()               # (units, T)
        low, high = limits if limits else (-abs(data).max(), abs(data).max())
        image = ax.imshow(data, aspect="auto", cmap="coolwarm", vmin=low, vmax=high,
                          interpolation="nearest")
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    if len(text) <= 200:
        axes[-1, 0].set_xticks(range(len(text)), [c if c != "\n" else "⏎" for c in text],
                               fontsize=7, family="monospace")
    axes[0, 0].set_title(title or f"layer {layer_index}: units {units[0]}.."
                                  f"{units[-1]} (rows) over the text (columns)")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)


def gates_html(layers, text, html_path, ranked=None, signal=None, title="rnnkit gates"):
    """One self-contained HTML page (inline data and script, no server, no network):
    the text coloured by the state of a chosen unit (red positive, blue negative), with
    a layer/unit picker and, when ``ranked`` is given, the units ranked by correlation
    with ``signal``."""
    data = {"text": text, "series": "cell c" if "cell" in layers[0] else "hidden h",
            "layers": [[[round(float(v), 3) for v in unit]
                        for unit in state_of(layer).T.tolist()] for layer in layers],
            "ranked": ranked or [], "signal": signal or ""}
    page = _HTML.replace("__TITLE__", _escape(title)).replace(
        "__DATA__", json.dumps(data, separators=(",", ":")).replace("</", "<\\/"))
    Path(html_path).write_text(page, encoding="utf-8")
    return Path(html_path)


def _escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font-family: sans-serif; margin: 1.5em; max-width: 70em; }
#text { font-family: monospace; white-space: pre-wrap; line-height: 1.5; font-size: 14px;
        border: 1px solid #ccc; padding: 0.8em; }
#text span { padding: 1px 0; }
#ranked li { cursor: pointer; color: #036; }
#ranked li:hover { text-decoration: underline; }
</style></head><body>
<h2>__TITLE__</h2>
<p>Each character is coloured by the <b id="series"></b> of one unit after reading it:
red positive, blue negative, white near zero (scaled by the unit's largest |value| over
this text). Hover a character for the value.</p>
<p>layer <select id="layer"></select> unit <input id="unit" type="number" min="0" value="0"
style="width:5em"> <button id="prev">&larr;</button><button id="next">&rarr;</button>
<span id="info"></span></p>
<div id="rankbox"><p>Units ranked by |correlation| with <b id="signal"></b>:</p>
<ol id="ranked"></ol></div>
<div id="text"></div>
<script>
const DATA = __DATA__;
const layerBox = document.getElementById("layer"), unitBox = document.getElementById("unit");
document.getElementById("series").textContent = DATA.series;
DATA.layers.forEach((_, i) => { const o = document.createElement("option");
  o.value = i; o.textContent = i; layerBox.appendChild(o); });
const spans = [];
const box = document.getElementById("text");
for (const ch of DATA.text) { const s = document.createElement("span");
  s.textContent = ch === "\\n" ? "\\u21b5\\n" : ch; box.appendChild(s); spans.push(s); }
function colour(v) { const a = Math.min(Math.abs(v), 1);
  return v >= 0 ? `rgba(220,40,40,${a})` : `rgba(40,90,220,${a})`; }
function show() {
  const layer = DATA.layers[+layerBox.value];
  let unit = Math.max(0, Math.min(layer.length - 1, +unitBox.value || 0));
  unitBox.value = unit; unitBox.max = layer.length - 1;
  const values = layer[unit];
  // a loop, not Math.max(...values): spreading ~125k arguments overflows the stack
  const scale = values.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-9);
  spans.forEach((s, t) => { s.style.background = colour(values[t] / scale);
    s.title = `t=${t} value ${values[t]}`; });
  document.getElementById("info").textContent =
    `layer ${layerBox.value}, unit ${unit} of ${layer.length}, max |value| ${scale.toFixed(3)}`;
}
function pick(layer, unit) { layerBox.value = layer; unitBox.value = unit; show(); }
layerBox.onchange = show; unitBox.oninput = show;
document.getElementById("prev").onclick = () => { unitBox.value = +unitBox.value - 1; show(); };
document.getElementById("next").onclick = () => { unitBox.value = +unitBox.value + 1; show(); };
if (DATA.ranked.length) {
  document.getElementById("signal").textContent = DATA.signal;
  const list = document.getElementById("ranked");
  DATA.ranked.forEach(r => { const li = document.createElement("li");
    li.textContent = `layer ${r.layer} unit ${r.unit}: r = ${r.correlation.toFixed(3)}`;
    li.onclick = () => pick(r.layer, r.unit); list.appendChild(li); });
  pick(DATA.ranked[0].layer, DATA.ranked[0].unit);
} else { document.getElementById("rankbox").style.display = "none"; show(); }
</script></body></html>
"""
