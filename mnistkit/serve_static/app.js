// mnistkit serve: draw a digit, send it to /api/predict, show what every run thinks.
// Plain JavaScript, nothing fetched from elsewhere.
"use strict";

const STROKE = 20;          // px on the 280x280 pad: about MNIST's stroke after fitting to 20x20
const DEBOUNCE_MS = 120;    // live predictions while drawing, at most this often
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const statusLine = document.getElementById("status");
const runsBox = document.getElementById("runs");
let runs = [];
let drawing = false, inked = false, lastPoint = null;
let showingPicture = false;     // a test digit or upload is on the pad: the next stroke clears it
let timer = null, inFlight = false, queued = null;
let generation = 0;             // bumped by Clear: answers to older requests are dropped

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function clearPad() {
  generation += 1;
  clearTimeout(timer);
  timer = null;
  queued = null;
  updateIdle();
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  showingPicture = false;
}

// --- drawing -------------------------------------------------------------------------

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

function strokeTo(point) {
  ctx.strokeStyle = "#fff";
  ctx.fillStyle = "#fff";
  ctx.lineWidth = STROKE;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  if (lastPoint) {
    ctx.moveTo(lastPoint[0], lastPoint[1]);
    ctx.lineTo(point[0], point[1]);
    ctx.stroke();
  } else {
    ctx.arc(point[0], point[1], STROKE / 2, 0, 2 * Math.PI);
    ctx.fill();
  }
  lastPoint = point;
  inked = true;
}

pad.addEventListener("pointerdown", (event) => {
  if (showingPicture) clearPad();
  drawing = true;
  lastPoint = null;
  pad.setPointerCapture(event.pointerId);
  strokeTo(padPoint(event));
  schedule();
  event.preventDefault();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of (events.length ? events : [event])) strokeTo(padPoint(e));
  schedule();
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => {
    if (!drawing) return;
    drawing = false;
    lastPoint = null;
    clearTimeout(timer);
    timer = null;
    predictPad();
  });
}

// --- drawing with the keyboard: arrows move the pen, Space lifts or lowers it -----------

const KEY_STEP = 14;
const MOVES = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] };
const cursor = document.getElementById("cursor");
let keyPen = { x: 140, y: 70, down: true };

function showCursor() {
  cursor.hidden = document.activeElement !== pad;
  cursor.classList.toggle("up", !keyPen.down);
  cursor.style.left = `${(100 * keyPen.x) / pad.width}%`;
  cursor.style.top = `${(100 * keyPen.y) / pad.height}%`;
}

pad.addEventListener("focus", showCursor);
pad.addEventListener("blur", showCursor);
pad.addEventListener("keydown", (event) => {
  const move = MOVES[event.key];
  if (event.key === " ") {
    keyPen.down = !keyPen.down;
    setStatus(keyPen.down ? "Pen down: the arrow keys draw." : "Pen up: the arrow keys move.");
  } else if (move) {
    if (showingPicture) clearPad();
    const from = [keyPen.x, keyPen.y];
    keyPen.x = Math.min(Math.max(keyPen.x + move[0] * KEY_STEP, 0), pad.width);
    keyPen.y = Math.min(Math.max(keyPen.y + move[1] * KEY_STEP, 0), pad.height);
    if (keyPen.down) {
      lastPoint = from;
      strokeTo([keyPen.x, keyPen.y]);
      lastPoint = null;
      schedule();
    }
  } else {
    return;
  }
  showCursor();
  event.preventDefault();  // no page scrolling while drawing
});

function schedule() {
  if (timer === null) {
    timer = setTimeout(() => { timer = null; predictPad(); }, DEBOUNCE_MS);
  }
  updateIdle();
}

// body[data-idle=true]: no prediction waiting or on its way (the browser tests wait for it)
function updateIdle() {
  document.body.dataset.idle = String(!inFlight && queued === null && timer === null);
}

function predictPad() {
  if (!inked) return;
  predict({ image: pad.toDataURL("image/png") }, "your drawing");
}

// --- talking to the server -----------------------------------------------------------

async function predict(body, what) {
  if (inFlight) { queued = [body, what]; updateIdle(); return; }  // only the latest matters
  inFlight = true;
  updateIdle();
  const asked = generation;
  try {
    const answer = await postJson("/api/predict", body);
    if (asked !== generation) return;   // cleared meanwhile
    showAnswer(answer);
    const notes = answer.warnings.length ? ` Note: ${answer.warnings.join("; ")}.` : "";
    if (what !== null) setStatus(`Showing ${what}.${notes}`);
  } catch (error) {
    if (asked === generation) setStatus(error.message, true);
  } finally {
    inFlight = false;
    if (queued) { const [b, w] = queued; queued = null; predict(b, w); }
    updateIdle();
  }
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  return readJson(response);
}

async function readJson(response) {
  let data;
  try { data = await response.json(); } catch { data = {}; }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

// --- showing the answer --------------------------------------------------------------

function showAnswer(answer) {
  drawSeen(answer.input);
  answer.runs.forEach((result, i) => showRun(runsBox.children[i], runs[i], result));
}

function drawSeen(rows) {
  const seen = document.getElementById("seen");
  const c = seen.getContext("2d");
  const img = c.createImageData(28, 28);
  rows.flat().forEach((v, i) => { img.data.set([v, v, v, 255], 4 * i); });
  c.putImageData(img, 0, 0);
}

function showRun(card, run, result) {
  const best = result.top;
  card.querySelector(".top-class").textContent = result.top_class;
  card.querySelector(".top-probability").textContent = percent(result.probabilities[best]);
  card.dataset.top = result.top_class;
  card.querySelectorAll(".bar").forEach((bar, k) => {
    const p = result.probabilities[k];
    bar.dataset.probability = String(p);
    bar.classList.toggle("top", k === best);
    bar.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    bar.querySelector(".value").textContent = percent(p);
    bar.setAttribute("aria-label", `${run.class_names[k]}: ${percent(p)}`);
  });
  if (result.hidden) showActivations(card, run, result);
}

function percent(p) {
  return p >= 0.995 ? `${(100 * p).toFixed(1)}%` : `${(100 * p).toFixed(p < 0.1 ? 1 : 0)}%`;
}

function showActivations(card, run, result) {
  const grid = card.querySelector(".hidden-grid");
  const n = result.hidden.length, cols = Math.ceil(Math.sqrt(n)), rows = Math.ceil(n / cols);
  grid.width = cols; grid.height = rows;
  const c = grid.getContext("2d");
  const img = c.createImageData(cols, rows);
  const top = Math.max(...result.hidden) || 1;
  result.hidden.forEach((v, i) => { img.data.set([...viridis(v / top), 255], 4 * i); });
  c.putImageData(img, 0, 0);
  if (!result.top_units) return;
  const list = card.querySelector(".units");
  list.replaceChildren(...result.top_units.map(({ unit, activation }) => {
    const item = document.createElement("li");
    const pic = document.createElement("img");
    pic.src = `/api/runs/${run.id}/units/${unit}.png`;
    pic.alt = `template of hidden unit ${unit}`;
    item.append(pic, `#${unit}: ${activation.toFixed(2)}`);
    return item;
  }));
}

function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
  return VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
}

function buildRuns() {
  const template = document.getElementById("run-template");
  runsBox.replaceChildren(...runs.map((run) => {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.run = String(run.id);
    card.querySelector(".run-name").textContent = run.name;
    const accuracy = run.test_accuracy === null ? "test accuracy unknown"
      : `test accuracy ${(100 * run.test_accuracy).toFixed(2)}%`;
    const hidden = run.hidden_units ? `, ${run.hidden_units} hidden units` : "";
    card.querySelector(".run-info").textContent = `${run.model}${hidden}, ${accuracy}`;
    card.querySelector(".bars").replaceChildren(...run.class_names.map((name, k) => {
      const bar = document.createElement("li");
      bar.className = "bar";
      bar.dataset.class = String(k);
      bar.innerHTML = '<span class="name"></span><span class="track"><span class="fill">'
        + '</span></span><span class="value">–</span>';
      bar.querySelector(".name").textContent = name;
      return bar;
    }));
    card.querySelector(".activations").hidden = !run.hidden_units;
    card.querySelector(".templates").hidden = !run.templates;
    return card;
  }));
}

// --- the buttons ---------------------------------------------------------------------

async function randomDigit() {
  try {
    const digit = await readJson(await fetch("/api/digit"));
    const c = document.createElement("canvas");
    c.width = 28; c.height = 28;
    const img = c.getContext("2d").createImageData(28, 28);
    digit.pixels.flat().forEach((v, i) => { img.data.set([v, v, v, 255], 4 * i); });
    c.getContext("2d").putImageData(img, 0, 0);
    clearPad();
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(c, 0, 0, pad.width, pad.height);
    showingPicture = true;
    setStatus(`Test image #${digit.index}, true label ${digit.class_name}.`);
    await predict({ pixels: digit.pixels }, null);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function uploadFile(file) {
  const reader = new FileReader();
  reader.onload = () => {
    const picture = new Image();
    picture.onload = () => {
      clearPad();
      const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
      const w = picture.width * scale, h = picture.height * scale;
      ctx.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
      showingPicture = true;
      predict({ image: reader.result }, file.name);
    };
    picture.onerror = () => {  // a picture the browser cannot show: the server still says why
      clearPad();
      predict({ image: reader.result }, file.name);
    };
    picture.src = reader.result;
  };
  reader.onerror = () => setStatus(`Could not read ${file.name}.`, true);
  reader.readAsDataURL(file);
}

const upload = document.getElementById("upload");
const uploadLabel = document.querySelector("label[for=upload]");
upload.addEventListener("change", () => { if (upload.files[0]) uploadFile(upload.files[0]); upload.value = ""; });
upload.addEventListener("focus", () => uploadLabel.classList.add("focus"));
upload.addEventListener("blur", () => uploadLabel.classList.remove("focus"));
document.getElementById("clear").addEventListener("click", () => {
  clearPad();
  resetRuns();
  setStatus("Cleared. Draw a digit.");
});

function resetRuns() {
  for (const card of runsBox.children) {
    card.querySelector(".top-class").textContent = "–";
    card.querySelector(".top-probability").textContent = "";
    delete card.dataset.top;
    card.querySelectorAll(".bar").forEach((bar) => {
      delete bar.dataset.probability;
      bar.classList.remove("top");
      bar.querySelector(".fill").style.width = "0";
      bar.querySelector(".value").textContent = "–";
    });
  }
  document.getElementById("seen").getContext("2d").clearRect(0, 0, 28, 28);
}
document.getElementById("random").addEventListener("click", randomDigit);
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  if (key === "c") document.getElementById("clear").click();
  else if (key === "r") randomDigit();
  else if (key === "u") upload.click();
});

async function start() {
  clearPad();
  try {
    runs = (await readJson(await fetch("/api/runs"))).runs;
    buildRuns();
    document.body.dataset.ready = "true";
  } catch (error) {
    setStatus(`Could not load the runs: ${error.message}`, true);
  }
}
start();
