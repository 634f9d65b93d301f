// The UniAnimate web page: the same HTTP calls as any client (docs/api.md), with the key the user typed.
// No framework and no build step. Everything the API sends is put on the page as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "unianimate.apiKey";
const MODEL_STORE = "unianimate.model";  // the model the workers hold (GET /models), or the last job here ran on
const EXAMPLE = {photo: "person.png", photoKeypoints: "person_keypoints.json", motion: "dance_openpose.json"};
// dance_openpose.json is OpenPose output, which states no frame rate: it is drawn at 15 fps (scripts/make_examples.py)
const EXAMPLE_FPS = 15;
// what the untrained tiny model renders quickly on a CPU; its output is noise whatever the size
const TINY_DEFAULTS = {height: 128, steps: 4, segment_frames: 8};
const INTEGER_PARAMS = new Set(["width", "height", "steps", "seed", "segment_frames"]);
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

// ------------------------------------------------------------------ talking to the API

function authHeaders() {
  const key = localStorage.getItem(KEY_STORE) || "";
  return key ? {Authorization: `Bearer ${key}`} : {};
}

function sameOrigin(url) {
  return new URL(url, location.href).origin === location.origin;
}

class ApiError extends Error {
  constructor(problem) {
    super(problem.detail || problem.title || "request failed");
    this.problem = problem;
  }
}

// fetch() that turns any non-2xx answer into an ApiError carrying the RFC 9457 problem as the API sent it
async function api(path, options = {}) {
  const headers = {...(sameOrigin(path) ? authHeaders() : {}), ...(options.headers || {})};
  let response;
  try {
    response = await fetch(path, {...options, headers});
  } catch (err) {
    throw new ApiError({title: "Network error", detail: `${path}: ${err.message}`});
  }
  if (response.ok) return response;
  let problem;
  try {
    problem = await response.json();
  } catch {
    problem = {title: `${response.status} ${response.statusText}`, detail: ""};
  }
  problem.status = problem.status || response.status;
  throw new ApiError(problem);
}

function randomKey() {
  // crypto.randomUUID exists only on https or localhost pages; getRandomValues everywhere
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ showing things

function showError(err) {
  const box = $("error");
  box.replaceChildren();
  const problem = err instanceof ApiError ? err.problem : {title: "Error", detail: String(err.message || err)};
  const title = document.createElement("strong");
  title.textContent = problem.status ? `${problem.title || "Error"} (${problem.status})` : (problem.title || "Error");
  const detail = document.createElement("p");
  detail.className = "detail";
  detail.textContent = problem.detail || "";
  box.append(title, detail);
  for (const item of problem.errors || []) {
    const line = document.createElement("p");
    line.textContent = `${item.field}: ${item.message}`;
    if (line.textContent !== problem.detail) box.append(line);
  }
  box.hidden = false;
  box.scrollIntoView({block: "nearest"});
}

function clearError() {
  $("error").hidden = true;
}

function setFacts(dl, pairs) {
  dl.replaceChildren();
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    dl.append(dt, dd);
  }
}

function listItems(ul, lines) {
  ul.replaceChildren(...lines.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function modelText(model) {
  return model.untrained && !/untrained/i.test(model.name) ? `${model.name} (untrained)` : model.name;
}

function showModel(model) {
  if (!model) return;
  localStorage.setItem(MODEL_STORE, JSON.stringify(model));
  $("untrained-banner").hidden = !model.untrained;
}

// ------------------------------------------------------------------ the form

function motionField(file) {
  const json = file.type === "application/json" || file.name.toLowerCase().endsWith(".json");
  return json ? "pose_keypoints" : "pose_video";
}

function readParams() {
  const params = {};
  for (const input of document.querySelectorAll("[data-param]")) {
    const text = input.value.trim();
    if (text === "") continue;
    const name = input.dataset.param;
    params[name] = INTEGER_PARAMS.has(name) ? parseInt(text, 10) : parseFloat(text);
  }
  return params;
}

function formBody() {
  const body = new FormData();
  const photo = $("reference-image").files[0];
  const motion = $("motion").files[0];
  const photoKeypoints = $("reference-keypoints").files[0];
  if (photo) body.append("reference_image", photo);
  if (motion) body.append(motionField(motion), motion);
  if (photoKeypoints) body.append("reference_keypoints", photoKeypoints);
  const params = readParams();
  if (Object.keys(params).length) body.append("params", JSON.stringify(params));
  return body;
}

function applyTinyDefaults() {
  const model = JSON.parse(localStorage.getItem(MODEL_STORE) || "null");
  if (!model || !model.untrained) return;
  $("untrained-banner").hidden = false;
  for (const input of document.querySelectorAll("[data-param]")) {
    const value = TINY_DEFAULTS[input.dataset.param];
    if (value !== undefined && input.value === "") input.value = value;
  }
}

function putFile(input, file) {
  const list = new DataTransfer();
  list.items.add(file);
  input.files = list.files;
}

async function useExample() {
  clearError();
  $("example-state").textContent = "loading the example…";
  try {
    const fetchFile = async (name) => {
      const blob = await (await api(`/examples/${name}`)).blob();
      return new File([blob], name, {type: blob.type});
    };
    putFile($("reference-image"), await fetchFile(EXAMPLE.photo));
    putFile($("reference-keypoints"), await fetchFile(EXAMPLE.photoKeypoints));
    putFile($("motion"), await fetchFile(EXAMPLE.motion));
    if ($("p-fps").value === "") $("p-fps").value = EXAMPLE_FPS;
    $("example-state").textContent = `${EXAMPLE.photo}, ${EXAMPLE.photoKeypoints}, ${EXAMPLE.motion}`;
  } catch (err) {
    $("example-state").textContent = "";
    showError(err);
  }
}

// The workers announce their model (GET /models): label an untrained one before any job runs.
// None yet (workers still loading): ask again, for a minute.
async function learnModel(triesLeft = 12) {
  try {
    const models = (await (await api("/models")).json()).models;
    const model = models.find((m) => m.untrained) || models[0];
    if (model) {
      showModel(model);
      applyTinyDefaults();
      return;
    }
  } catch {
    // no answer: ask again
  }
  if (triesLeft > 1) setTimeout(() => learnModel(triesLeft - 1), 5000);
  else applyTinyDefaults();  // never an answer: what the last job here showed
}

async function offerExample() {
  try {
    const names = (await (await api("/examples")).json()).examples;
    $("use-example").hidden = !Object.values(EXAMPLE).every((name) => names.includes(name));
  } catch {
    $("use-example").hidden = true;  // a server without examples: the page works with uploads alone
  }
}

// ------------------------------------------------------------------ preflight

function missingLines(report) {
  const lines = [];
  for (const entry of (report.pose && report.pose.missing_joints) || []) {
    const parts = Object.entries(entry).filter(([k]) => k !== "frame")
      .map(([part, joints]) => `${part}: ${Array.isArray(joints) ? joints.join(", ") : joints}`);
    lines.push(`frame ${entry.frame}: ${parts.join("; ")}`);
  }
  return lines;
}

function showPreflight(report) {
  const pose = report.pose || {};
  const plan = report.segments;
  setFacts($("preflight-facts"), [
    ["input", report.input], ["frames", pose.frames], ["source fps", pose.source_fps],
    ["frame interval", pose.frame_interval], ["output fps", pose.output_fps],
    ["duration", pose.duration_s !== undefined ? `${pose.duration_s} s` : null],
    ["size", report.params && report.params.width ? `${report.params.width} × ${report.params.height}` : null],
    ["frames without a person", (pose.frames_without_person || []).length || null],
  ]);
  listItems($("preflight-warnings"), [...(report.warnings || []), ...(pose.warnings || [])]);
  const missing = missingLines(report);
  listItems($("preflight-missing"), missing.slice(0, 200));
  $("preflight-missing-box").hidden = missing.length === 0;
  $("preflight-missing-box").querySelector("summary").textContent = `Missing joints (${missing.length} frames)`;
  $("preflight-segments").textContent = plan
    ? `${plan.count} segment${plan.count === 1 ? "" : "s"} of up to ${plan.segment_frames} frames ` +
      `(${plan.mode}), ${plan.total_frames} frames in all`
    : "no plan (the poses are detected when the job runs)";
  const rows = (report.estimates || []).map((e) => {
    const tr = document.createElement("tr");
    for (const value of [e.worker_class, e.gpu_seconds, e.peak_gpu_memory_gib, e.fits ? "yes" : "no", e.calibrated_on]) {
      const td = document.createElement("td");
      td.textContent = value === null || value === undefined ? "" : String(value);
      tr.append(td);
    }
    return tr;
  });
  $("preflight-estimates").tBodies[0].replaceChildren(...rows);
  const preview = report.preview;
  $("preview-image").hidden = !preview;
  $("preview-clip").hidden = !preview;
  if (preview) {
    $("preview-image").src = preview.strip_url;
    $("preview-link").href = preview.strip_url;
    $("preview-clip").href = preview.clip_url;
  }
  $("preflight").hidden = false;
}

async function check() {
  clearError();
  $("check").disabled = true;
  try {
    const response = await api("/animate/preflight", {method: "POST", body: formBody()});
    showPreflight(await response.json());
  } catch (err) {
    showError(err);
  } finally {
    $("check").disabled = false;
  }
}

// ------------------------------------------------------------------ the job

let current = null;  // {id, live: LivePlayer|null, stop: boolean}

async function render() {
  clearError();
  $("render").disabled = true;
  try {
    const response = await api("/animate", {method: "POST", body: formBody(),
                                            headers: {"Idempotency-Key": randomKey()}});
    const answer = await response.json();
    follow(answer.job_id);
    $("job").scrollIntoView({behavior: "smooth", block: "start"});
  } catch (err) {
    showError(err);
  } finally {
    $("render").disabled = false;
  }
}

function follow(jobId) {
  if (current) {  // the job shown before: close its event stream and its live player
    current.stop = true;
    current.abort.abort();
    if (current.live) current.live.stop();
  }
  current = {id: jobId, live: null, stop: false, abort: new AbortController()};
  history.replaceState(null, "", `#job=${jobId}`);
  $("job").hidden = false;
  $("job-id").textContent = jobId;
  $("live-box").hidden = true;
  $("result-box").hidden = true;
  $("job-progress").value = 0;
  $("job-progress-text").textContent = "";
  $("live-state").textContent = "";
  const job = current;
  // a job already over has nothing to stream: its result is shown (the stream would replay it all)
  refreshJob(job).then((view) => TERMINAL.has(view.status) ? onFinished(job, view) : followEvents(job))
    .catch((err) => job.stop || showError(err));
}

async function refreshJob(job) {
  const view = await (await api(`/jobs/${job.id}`)).json();
  if (job.stop) return view;
  showJob(view);
  return view;
}

function showJob(view) {
  $("job-status").textContent = view.status;
  $("job-queue").textContent = queueText(view.queue_position);
  $("job-params").textContent = JSON.stringify(view.params, null, 2);
  $("cancel").hidden = TERMINAL.has(view.status);
  if (view.progress) showProgress(view.progress, view.status);
  showModel(view.model);
  $("job-error").hidden = !view.error;
  if (view.error) $("job-error").textContent = `${view.error.code}: ${view.error.message}`;
  if (view.status === "succeeded" && view.result) showResult(view).catch(showError);
}

function queueText(position) {
  if (position === null || position === undefined) return "";
  return position === 0 ? "· next in the queue" : `· ${position} job${position === 1 ? "" : "s"} before it in the queue`;
}

function showProgress(progress, status) {
  const fraction = status === "succeeded" ? 1 : (progress.fraction || 0);
  $("job-progress").value = fraction;
  const parts = [`${Math.round(fraction * 100)} %`];
  if (progress.segments_total) parts.push(`segment ${(progress.segment || 0) + 1} of ${progress.segments_total}`);
  if (progress.steps_total) parts.push(`step ${progress.step || 0} of ${progress.steps_total}`);
  if (progress.frames_total) parts.push(`${progress.frames_done || 0} of ${progress.frames_total} frames`);
  if (progress.eta_s !== null && progress.eta_s !== undefined && status !== "succeeded") {
    parts.push(`about ${duration(progress.eta_s)} left`);
  }
  $("job-progress-text").textContent = parts.join(" · ");
}

// GET /jobs/{id}/events read with fetch(): EventSource cannot send the Authorization header.
async function followEvents(job) {
  let lastId = null;
  for (let attempt = 0; attempt < 20 && !job.stop; attempt++) {
    try {
      const headers = {Accept: "text/event-stream", ...(lastId ? {"Last-Event-ID": lastId} : {})};
      const response = await api(`/jobs/${job.id}/events`, {headers, signal: job.abort.signal});
      for await (const event of sseEvents(response.body)) {
        if (job.stop) return;
        if (event.id) lastId = event.id;
        if (await onEvent(job, event)) return;
      }
      const view = await refreshJob(job);  // the stream ended: the job is final (or the server restarted)
      if (TERMINAL.has(view.status)) return onFinished(job, view);
    } catch (err) {
      if (job.stop) return;  // another job is shown now (its fetch was aborted)
      if (err instanceof ApiError && err.problem.status && err.problem.status < 500) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * 2 ** attempt, 15000)));
  }
}

// Server-Sent Events framing: lines `event:`, `data:`, `id:`; a blank line ends an event; `:` is a comment
async function* sseEvents(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  try {
    yield* sseFrames(reader);
  } finally {
    reader.cancel().catch(() => {});  // a consumer that stops early closes the connection
  }
}

async function* sseFrames(reader) {
  let buffer = "";
  let event = {type: "message", data: [], id: null};
  while (true) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r\n|\r|\n/)) !== -1) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
      if (line === "") {
        if (event.data.length) yield {type: event.type, id: event.id, data: event.data.join("\n")};
        event = {type: "message", data: [], id: null};
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.type = value;
      else if (field === "data") event.data.push(value);
      else if (field === "id") event.id = value;
    }
  }
}

// true when the job is over
async function onEvent(job, event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return false;
  }
  if ("queue_position" in data) $("job-queue").textContent = queueText(data.queue_position);
  if (event.type === "progress") showProgress(data, $("job-status").textContent);
  if (event.type === "segment") playLive(job);
  if (event.type === "status") {
    $("job-status").textContent = data.status;
    if (data.status === "running") $("job-queue").textContent = "";
    if (TERMINAL.has(data.status)) {
      onFinished(job, await refreshJob(job));
      return true;
    }
    if (data.status === "running") refreshJob(job).catch(() => {});  // the model it runs on
  }
  return false;
}

function onFinished(job, view) {
  if (job.live) job.live.refresh();  // the closed playlist: end the live stream
  $("cancel").hidden = true;
  if (view.status === "canceled") $("job-progress-text").textContent = "canceled";
}

async function cancel() {
  if (!current) return;
  try {
    showJob(await (await api(`/jobs/${current.id}/cancel`, {method: "POST"})).json());
  } catch (err) {
    showError(err);
  }
}

// ------------------------------------------------------------------ live playback (MediaSource)

// the `segment` event's live_url is this route; the path alone also works behind a proxy that renames the host
function liveUrl(job) {
  return `/jobs/${job.id}/live.m3u8`;
}

function playLive(job) {
  if (!("MediaSource" in window)) return;  // e.g. an iPhone: the final MP4 still plays
  if (!job.live) {
    job.live = new LivePlayer($("live-video"), liveUrl(job), (text) => { $("live-state").textContent = text; });
    $("live-box").hidden = false;
  }
  job.live.refresh();
}

// the H.264 codec string from the init section's avcC box: profile, constraints, level
function codecOf(init) {
  const bytes = new Uint8Array(init);
  for (let i = 4; i + 8 < bytes.length; i++) {
    if (bytes[i] === 0x61 && bytes[i + 1] === 0x76 && bytes[i + 2] === 0x63 && bytes[i + 3] === 0x43) {  // "avcC"
      const hex = (b) => b.toString(16).padStart(2, "0");
      return `avc1.${hex(bytes[i + 5])}${hex(bytes[i + 6])}${hex(bytes[i + 7])}`;
    }
  }
  return "avc1.64001f";
}

function parsePlaylist(text, base) {
  const lines = text.split(/\r?\n/).map((line) => line.trim());
  const map = lines.find((line) => line.startsWith("#EXT-X-MAP:"));
  const init = map && /URI="([^"]+)"/.exec(map);
  return {
    init: init ? new URL(init[1], base).href : null,
    fragments: lines.filter((line) => line && !line.startsWith("#")).map((line) => new URL(line, base).href),
    ended: lines.includes("#EXT-X-ENDLIST"),
  };
}

async function fetchBytes(url) {
  return (await api(url)).arrayBuffer();
}

// The HLS playlist's fMP4 fragments appended to a MediaSource as they are listed (Chromium plays no HLS itself).
class LivePlayer {
  constructor(video, playlistUrl, say) {
    this.video = video;
    this.playlistUrl = playlistUrl;
    this.say = say;
    this.appended = 0;
    this.buffer = null;
    this.done = false;
    this.queue = Promise.resolve();
  }

  refresh() {
    this.queue = this.queue.then(() => this.update())
      .catch((err) => this.done || this.say(`live playback stopped: ${err.message}`));
    return this.queue;
  }

  stop() {
    this.done = true;
    this.video.removeAttribute("src");
    this.video.load();
  }

  async update() {
    if (this.done) return;
    const response = await api(this.playlistUrl);
    const playlist = parsePlaylist(await response.text(), response.url);
    if (!playlist.init || playlist.fragments.length === 0) return;
    if (!this.buffer) await this.open(await fetchBytes(playlist.init));
    while (this.appended < playlist.fragments.length && !this.done) {
      await this.appendKeepingLittle(await fetchBytes(playlist.fragments[this.appended]));
      this.appended += 1;
      this.say(`${this.appended} segment${this.appended === 1 ? "" : "s"} received`);
      this.video.play().catch(() => {});
    }
    if (playlist.ended && this.source.readyState === "open") {
      this.source.endOfStream();
      this.done = true;
      this.say(`all ${this.appended} segments received`);
    }
  }

  async open(init) {
    this.source = new MediaSource();
    const url = URL.createObjectURL(this.source);
    this.video.src = url;
    await new Promise((resolve) => this.source.addEventListener("sourceopen", resolve, {once: true}));
    URL.revokeObjectURL(url);  // attached: the URL is no longer needed
    const type = `video/mp4; codecs="${codecOf(init)}"`;
    if (!MediaSource.isTypeSupported(type)) throw new Error(`this browser cannot play ${type}`);
    this.buffer = this.source.addSourceBuffer(type);
    await this.append(init);
  }

  // A minute of video would outgrow the browser's buffer quota: what was played long ago is dropped first.
  async appendKeepingLittle(bytes) {
    await this.trim(30);
    try {
      await this.append(bytes);
    } catch (err) {
      if (err.name !== "QuotaExceededError") throw err;
      await this.trim(2);
      await this.append(bytes);
    }
  }

  async trim(keepSeconds) {
    const until = this.video.currentTime - keepSeconds;
    if (until <= 0 || this.buffer.buffered.length === 0 || this.buffer.buffered.start(0) >= until) return;
    await new Promise((resolve) => {
      this.buffer.addEventListener("updateend", resolve, {once: true});
      this.buffer.remove(0, until);
    });
  }

  append(bytes) {
    return new Promise((resolve, reject) => {
      const done = () => { this.buffer.removeEventListener("error", failed); resolve(); };
      const failed = () => { this.buffer.removeEventListener("updateend", done); reject(new Error("the browser refused a fragment")); };
      this.buffer.addEventListener("updateend", done, {once: true});
      this.buffer.addEventListener("error", failed, {once: true});
      try {
        this.buffer.appendBuffer(bytes);  // throws QuotaExceededError when the buffer is full
      } catch (err) {
        this.buffer.removeEventListener("updateend", done);
        this.buffer.removeEventListener("error", failed);
        reject(err);
      }
    });
  }
}

// ------------------------------------------------------------------ the result

let resultUrl = null;  // the blob: URL of a video fetched through the API (local storage)

async function showResult(view) {
  const result = view.result;
  setFacts($("result-facts"), [
    ["frames", result.frames], ["fps", result.fps], ["size", `${result.width} × ${result.height}`],
    ["duration", `${result.duration_s} s`], ["file size", `${(result.size_bytes / 1048576).toFixed(2)} MiB`],
    ["sha256", result.sha256], ["model", view.model ? modelText(view.model) : null],
  ]);
  $("result-box").hidden = false;
  if (sameOrigin(result.url)) {
    // the API serves the file itself and wants the key: fetch it, then play the copy in memory
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(await (await api(result.url)).blob());
    $("result-video").src = resultUrl;
    $("download").href = resultUrl;
  } else {
    $("result-video").src = result.url;  // a presigned object-storage URL: no key needed
    $("download").href = result.url;
  }
  $("download").download = `unianimate-${view.id}.mp4`;
  $("result-video").play().catch(() => {});
}

// A link's `download` name works only for same-origin (or blob:) URLs, so a presigned URL on another
// origin is fetched first (object storage must allow this page's origin: CORS, see docs/api.md).
async function download(event) {
  const link = $("download");
  if (link.href.startsWith("blob:") || !current) return;
  event.preventDefault();
  let url = link.href;
  try {
    const view = await (await api(`/jobs/${current.id}`)).json();  // a fresh presigned URL
    url = view.result.url;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`storage answered ${response.status}`);
    const blob = await response.blob();
    const save = document.createElement("a");
    save.href = URL.createObjectURL(blob);
    save.download = link.download;
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(save.href), 60000);
  } catch {
    window.open(url, "_blank", "noopener");  // storage without CORS: let the browser open it
  }
}

// ------------------------------------------------------------------ start

function showKeyState() {
  $("key-state").textContent = localStorage.getItem(KEY_STORE) ? "A key is saved in this browser." : "No key saved.";
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = localStorage.getItem(KEY_STORE) || "";
  showKeyState();
  learnModel();  // then the small defaults, if the workers hold the untrained model
  offerExample();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
    showKeyState();
  });
  $("job-form").addEventListener("submit", (event) => event.preventDefault());
  $("use-example").addEventListener("click", useExample);
  $("check").addEventListener("click", check);
  $("render").addEventListener("click", render);
  $("cancel").addEventListener("click", cancel);
  $("download").addEventListener("click", download);
  const resumed = /^#job=([0-9a-f]{32})$/.exec(location.hash);
  if (resumed) follow(resumed[1]);
});
