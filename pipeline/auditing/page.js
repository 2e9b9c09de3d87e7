// The audit page. Row texts are untrusted model output: they only ever reach the page through
// textContent, never innerHTML.
"use strict";

const token = document.querySelector('meta[name="audit-token"]').content;
const LABELS = { "1": "right", "2": "partial", "3": "wrong" };
const FOLD = 600; // a longer question (an NQ passage) starts folded
let rows = [];
let at = 0;
let seed = null;
let auditor = "";

function el(id) { return document.getElementById(id); }

function text(node, value) { node.textContent = value == null ? "" : String(value); }

async function api(path, body) {
  const response = await fetch(path, {
    method: body ? "POST" : "GET",
    headers: { "X-Audit-Token": token, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function pct(value) { return value == null ? "–" : (100 * value).toFixed(1) + " %"; }

function showFigures(figures) {
  const table = el("figures");
  table.replaceChildren();
  const head = table.insertRow();
  for (const name of ["targets", "precision", "95 % interval", "labelled", "right / partial / wrong"]) {
    const th = document.createElement("th");
    text(th, name);
    head.appendChild(th);
  }
  const groups = Object.entries(figures.by_source).concat([["non-gold", figures.non_gold]]);
  for (const [name, g] of groups) {
    const tr = table.insertRow();
    tr.dataset.source = name;
    const interval = g.ci95 ? `[${pct(g.ci95[0])}, ${pct(g.ci95[1])}]` : "–";
    for (const cell of [name, pct(g.precision), interval, `${g.labelled} of ${g.rows}`,
                        `${g.right} / ${g.partial} / ${g.wrong}`]) {
      text(tr.insertCell(), cell);
    }
  }
  const done = rows.filter((r) => r.label).length;
  text(el("progress"), `${done} / ${rows.length} labelled by ${auditor} · seed ${seed}`);
}

function showRow() {
  const row = rows[at];
  el("row").hidden = false;
  text(el("source"), row.source);
  text(el("rule"), row.rule);
  text(el("position"), `${at + 1} of ${rows.length}`);
  text(el("row-id"), row.id);
  const question = el("question");
  question.replaceChildren();
  const pre = document.createElement("pre");
  text(pre, row.question);
  if (row.question.length > FOLD) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    // The question itself is usually at the end, after the passage: show that part.
    text(summary, `… ${row.question.slice(-240)} (${row.question.length} characters: open to read all)`);
    details.append(summary, pre);
    question.appendChild(details);
  } else {
    question.appendChild(pre);
  }
  text(el("gold"), row.gold);
  text(el("target-text"), row.target);
  // A text an LLM judge ruled on is not a target: say what is being labelled.
  text(el("target-name"), row.source === "judged" ? `Answer the LLM judge called ${
    row.rule === "llm:correct" ? "right" : "wrong"} (label it yourself)` : "Target (trained on)");
  text(el("reason"), row.reason);
  const label = el("label");
  text(label, row.label || "none");
  label.className = row.label || "";
  el("note").value = row.note || "";
}

async function give(label, note) {
  const row = rows[at];
  try {
    const data = await api("/api/label", { id: row.id, label, note: note ?? row.note ?? "" });
    row.label = label;
    row.note = note ?? row.note ?? "";
    text(el("error"), "");
    showFigures(data.figures);
    return true;
  } catch (error) {
    text(el("error"), `not saved: ${error.message}`);
    return false;
  }
}

function move(step) {
  at = Math.min(rows.length - 1, Math.max(0, at + step));
  showRow();
}

document.addEventListener("keydown", async (event) => {
  const note = el("note");
  if (document.activeElement === note) {
    if (event.key === "Enter") {
      event.preventDefault();
      const row = rows[at];
      if (!row.label) { text(el("error"), "label the row (1, 2 or 3) before its note"); return; }
      if (await give(row.label, note.value)) note.blur();
    } else if (event.key === "Escape") {
      note.blur();
    }
    return;
  }
  if (event.key in LABELS) {
    event.preventDefault();
    if (await give(LABELS[event.key])) move(1);
  } else if (event.key === "n") {
    event.preventDefault();
    note.focus();
  } else if (event.key === "ArrowRight") {
    move(1);
  } else if (event.key === "ArrowLeft") {
    move(-1);
  }
});

async function start() {
  try {
    const state = await api("/api/state");
    rows = state.rows;
    seed = state.seed;
    auditor = state.auditor;
    text(el("title"), `s3ft audit · ${state.run} · ${state.auditor}`);
    const first = rows.findIndex((r) => !r.label);
    at = first === -1 ? Math.max(0, rows.length - 1) : first; // resume where labelling stopped
    showFigures(state.figures);
    if (rows.length) showRow();
  } catch (error) {
    text(el("error"), `could not load the sample: ${error.message}`);
  }
}

start();
