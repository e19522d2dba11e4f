// The labelling page of `alignkit label serve`. Model text is only ever set with
// textContent, never parsed as HTML: an answer containing a script is shown, not run.
"use strict";

const NAME_KEY = "alignkit.annotator";
const KEYS = { a: "left", ArrowLeft: "left", b: "right", ArrowRight: "right", t: "tie", s: "skip", u: "undo" };
const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
let current = null; // the pair on screen
let queue = Promise.resolve(); // actions run one after another, in the order given

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["X-Alignkit-Token"] = token;
  const response = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function annotator() {
  return $("annotator").value.trim();
}

function block(role, text) {
  const div = document.createElement("div");
  div.className = "message";
  const label = document.createElement("div");
  label.className = "role";
  label.textContent = role;
  const content = document.createElement("div");
  content.className = "content";
  content.textContent = text;
  div.append(label, content);
  return div;
}

function show(state) {
  current = state.pair;
  $("progress").max = Math.max(state.total, 1);
  $("progress").value = state.labelled;
  $("progress-text").textContent = `${state.labelled} / ${state.total} labelled`;
  $("finished").hidden = current !== null;
  $("answers").hidden = current === null;
  $("prompt").replaceChildren();
  if (current === null) return;
  const prompt = current.prompt;
  const messages = typeof prompt === "string" ? [{ role: "prompt", content: prompt }] : prompt;
  for (const m of messages) $("prompt").append(block(m.role, m.content));
  $("left").textContent = current.left;
  $("right").textContent = current.right;
}

async function refresh() {
  if (!annotator()) {
    $("message").textContent = "Type your name in the Annotator field first.";
    return;
  }
  const query = new URLSearchParams({ annotator: annotator() });
  show(await api("GET", `/api/state?${query}`));
}

async function act(choice) {
  if (!annotator()) return refresh();
  try {
    if (choice === "undo") {
      show(await api("POST", "/api/undo", { annotator: annotator() }));
    } else if (current !== null) {
      const body = { annotator: annotator(), pair_id: current.pair_id, choice };
      show(await api("POST", "/api/verdict", body));
    }
  } catch (error) {
    await refresh().catch(() => {}); // e.g. another tab labelled this pair: show the next one
    throw error;
  }
}

function run(action) {
  queue = queue
    .then(() => {
      $("message").textContent = "";
      return action();
    })
    .catch((error) => {
      $("message").textContent = error.message;
    });
}

function nameChanged() {
  localStorage.setItem(NAME_KEY, annotator());
  run(refresh);
}

async function start() {
  const config = await api("GET", "/api/config");
  $("annotator").value = localStorage.getItem(NAME_KEY) || config.annotator || "";
  $("annotator").addEventListener("change", nameChanged);
  $("annotator").addEventListener("keydown", (event) => {
    if (event.key === "Enter") event.target.blur();
  });
  for (const choice of ["left", "right", "tie", "skip", "undo"]) {
    $(`btn-${choice}`).addEventListener("click", () => run(() => act(choice)));
  }
  document.addEventListener("keydown", (event) => {
    const choice = KEYS[event.key];
    if (!choice || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof HTMLInputElement) return; // typing a name
    event.preventDefault();
    run(() => act(choice));
  });
  await refresh();
}

run(start);
