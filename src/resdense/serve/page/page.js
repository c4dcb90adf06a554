// The page of `resdense serve`: plain JavaScript, no framework and nothing from the internet.
// It reads the model card from GET /model, sends the chosen image to POST /predict as multipart,
// and draws the top classes with bars (and the explanation map when the server offers one).
"use strict";

const $ = (id) => document.getElementById(id);
let card = null;

function showCard(c) {
  $("model-name").textContent = c.model;
  const t = c.trained || {};
  const rows = [
    ["architecture", c.model + (c.options && Object.keys(c.options).length ? " " + JSON.stringify(c.options) : "")],
    ["trained on", t.dataset || "not recorded"],
    ["stated test accuracy", t.test_accuracy != null ? (100 * t.test_accuracy).toFixed(2) + "%" + (t.test_set ? " (" + t.test_set + ")" : "") : "not recorded"],
    ["recipe", t.recipe], ["epochs", t.epochs], ["weights", t.weights || c.source],
    ["classes", c.classes.length + ": " + c.classes.join(", ")],
    ["input", c.preprocess.in_chans + " x " + c.preprocess.input_size + " x " + c.preprocess.input_size +
      " (" + c.preprocess.fit + ")" + (c.tta_flip ? ", test-time flip" : "")],
    ["runs on", c.backend],
  ];
  const dl = $("card-list");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    if (v == null || v === "") continue;
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = String(v);
    dl.append(dt, dd);
  }
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function showTop(prediction) {
  const ol = $("top");
  ol.replaceChildren();
  for (const t of prediction.top) {
    const li = document.createElement("li");
    li.dataset.class = t.class;
    li.dataset.probability = String(t.probability);
    const name = document.createElement("span"); name.className = "class"; name.textContent = t.class;
    const bar = document.createElement("span"); bar.className = "bar";
    const fill = document.createElement("span"); fill.style.width = (100 * t.probability).toFixed(1) + "%";
    bar.append(fill);
    const p = document.createElement("span"); p.className = "prob"; p.textContent = (100 * t.probability).toFixed(1) + "%";
    li.append(name, bar, p);
    ol.append(li);
  }
  // The explanation hook: a server started with an explainer adds "explanation" (a data: URL).
  const panel = $("explanation-panel");
  panel.hidden = !prediction.explanation;
  if (prediction.explanation) $("explanation").src = prediction.explanation;
}

async function send(file) {
  $("result").hidden = false;
  $("preview").src = URL.createObjectURL(file);
  $("file-name").textContent = file.name;
  // a new question clears the last answer: its classes and its map must not stand beside this image
  // (or beside an error about it)
  clearAnswer();
  document.body.dataset.state = "asking";
  status("asking the model...", false);
  const form = new FormData();
  form.append("file", file, file.name);
  const query = card && card.explain ? "?top=5&explain=true" : "?top=5";
  try {
    const response = await fetch("predict" + query, { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) { failed(body.error || response.statusText); return; }
    const prediction = body.predictions[0];
    showTop(prediction);
    status(prediction.inverted ? "light background: inverted to match the training images" : "done", false);
    document.body.dataset.state = "answered";
  } catch (e) {
    failed("no answer from the server: " + e);
  }
}

function clearAnswer() {
  $("top").replaceChildren();
  $("explanation-panel").hidden = true;
  $("explanation").removeAttribute("src");
}

function failed(text) {
  clearAnswer();
  status(text, true);
  document.body.dataset.state = "error";
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => { if (e.target.files.length) send(e.target.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]);
  });
  fetch("model").then((r) => r.json()).then((c) => { card = c; showCard(c); })
    .catch((e) => status("cannot read the model card: " + e, true));
}

setUp();
