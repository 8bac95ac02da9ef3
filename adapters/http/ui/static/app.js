// The Job Manager web UI: plain DOM, no build step. Data comes from the JSON API and the
// /ui/stream server-sent events; every value from the server is put in the page as text.
"use strict";

const API = "/api/jobmanager/v3";
const STATUSES = ["SUBMITTED", "STARTING", "RUNNING", "STOPPING", "SUCCEEDED", "FAILED", "STOPPED"];
const FINAL = new Set(["SUCCEEDED", "FAILED", "STOPPED"]);
const PAGE_SIZE = 20;
const FIELDS = {
  modelId: "Model",
  configurationId: "Configuration",
  inputFolderId: "Input folder",
  outputFolderId: "Output folder",
  maximumExecutionTimeInSeconds: "Maximum time (seconds)",
};

let session = null;

// -- helpers -------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else if (key in node && key !== "list" && key !== "form") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(status) {
  return el("span", { className: `badge badge-${status}`, text: status });
}

function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  // A fresh text node after a tick, so screen readers announce repeats too.
  setTimeout(() => { region.textContent = text; }, 30);
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toLocaleString(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

function jobDuration(job) {
  const start = Date.parse(job.creationDate);
  const end = job.finishedAt ? Date.parse(job.finishedAt) : Date.now();
  return (end - start) / 1000;
}

class ApiFailure extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-XSRF-TOKEN"] = cookie("XSRF-TOKEN");
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (answer.status === 204) return null;
  let payload = null;
  try { payload = await answer.json(); } catch (_) { payload = null; }
  if (!answer.ok) {
    const error = payload && payload.errors && payload.errors[0];
    const failure = new ApiFailure(
      answer.status, error ? error.message : `HTTP ${answer.status}`, error ? error.code : "");
    if (answer.status === 401 && !path.startsWith("/ui/login")) showLogin(failure.message);
    throw failure;
  }
  return payload;
}

function setMain(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children);
  return main;
}

function errorAlert(message) {
  return el("p", { className: "alert", role: "alert", text: message });
}

// Live changes of the tenant's jobs; reconnects by itself (EventSource), and calls onOpen on
// every (re)connect so the page can reload what it may have missed meanwhile.
function follow(onJob, onOpen) {
  const indicator = el("span", { className: "live", "data-state": "connecting", text: "live" });
  const source = new EventSource("/ui/stream");
  source.addEventListener("open", () => { indicator.dataset.state = "open"; onOpen(); });
  source.addEventListener("error", () => { indicator.dataset.state = "closed"; });
  source.addEventListener("job", (event) => onJob(JSON.parse(event.data)));
  window.addEventListener("pagehide", () => source.close());
  return indicator;
}

function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

// -- login ---------------------------------------------------------------------------------

function showLogin(reason) {
  document.getElementById("who").replaceChildren();
  const message = el("p", { id: "login-error", className: "error", role: "alert" });
  if (reason && session !== null) message.textContent = reason;
  const token = el("textarea", {
    id: "token", name: "token", required: true, autocomplete: "off", spellcheck: false,
    "aria-describedby": "token-help login-error",
  });
  const form = el("form", { className: "form login", "aria-labelledby": "login-title" },
    el("label", { for: "token", text: "Access token" }),
    token,
    el("p", { id: "token-help", className: "note" },
      "Paste a Job Manager token (for local use, ", el("code", { text: "jobmanager token" }),
      " prints one). The gateway checks it and keeps it in an HTTP-only session cookie."),
    message,
    el("div", {}, el("button", { type: "submit", className: "primary", text: "Sign in" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      await call("POST", "/ui/login", { token: token.value });
      const next = location.pathname === "/ui/login" ? "/ui/" : location.pathname + location.search;
      location.assign(next);
    } catch (failure) {
      message.textContent = failure.message;
      token.setAttribute("aria-invalid", "true");
      token.focus();
    }
  });
  document.title = "Sign in · Job Manager";
  setMain(el("h1", { id: "login-title", text: "Sign in" }), form);
  token.focus();
}

function showWho() {
  const logout = el("button", {
    type: "button", text: "Sign out",
    onclick: async () => { await call("POST", "/ui/logout"); location.assign("/ui/login"); },
  });
  const parts = [el("span", { text: `${session.user} · tenant ${session.tenant}` })];
  if (!session.canWrite) parts.push(el("span", { className: "badge badge-STOPPED", text: "read-only" }));
  document.getElementById("who").replaceChildren(...parts, logout);
}

// -- jobs list -----------------------------------------------------------------------------

function jobsFilter(params) {
  const filter = {};
  if (params.get("status")) filter.status = params.get("status");
  if (params.get("model")) filter.modelId = params.get("model");
  if (params.get("configuration")) filter.configurationId = params.get("configuration");
  if (params.get("q")) filter.message = { contains: params.get("q") };
  return Object.keys(filter).length ? JSON.stringify(filter) : "";
}

const JOB_COLUMNS = [
  ["Job", (job) => el("a", { href: `/ui/jobs/${encodeURIComponent(job.id)}`, text: job.id }), "id"],
  ["Status", (job) => badge(job.status), "status"],
  ["Message", (job) => job.message, "message"],
  ["Model", (job) => job.modelId, "mono"],
  ["Configuration", (job) => job.configurationId, "mono"],
  ["Input folder", (job) => job.inputFolderId, "mono"],
  ["Output folder", (job) => job.outputFolderId, "mono"],
  ["Environment", (job) => job.environmentId || "", "mono"],
  ["Created", (job) => el("time", { dateTime: job.creationDate, text: formatTime(job.creationDate) }), "created"],
  ["Created by", (job) => job.createdBy, "createdBy"],
  ["Max time", (job) => formatDuration(Number(job.maximumExecutionTimeInSeconds)), "maxTime"],
  ["Duration", (job) => formatDuration(jobDuration(job)), "duration"],
  ["Schedule", (job) => job.scheduleId
    ? el("a", { href: `/ui/schedules#schedule-${encodeURIComponent(job.scheduleId)}`, text: job.scheduleId })
    : "", "schedule"],
];

function jobRow(job) {
  const row = el("tr", { "data-job-id": job.id, "data-status": job.status });
  for (const [, cell, name] of JOB_COLUMNS) {
    row.append(el(name === "id" ? "th" : "td", { className: name, scope: name === "id" ? "row" : null }, cell(job)));
  }
  row.job = job;
  return row;
}

function showJobs() {
  document.title = "Jobs · Job Manager";
  const params = new URLSearchParams(location.search);
  const pageNumber = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  const status = el("select", { id: "f-status", name: "status" },
    el("option", { value: "", text: "Any status" }),
    STATUSES.map((s) => el("option", { value: s, text: s, selected: params.get("status") === s })));
  const filters = el("form", { className: "filters", method: "get", action: "/ui/", role: "search", "aria-label": "Filter jobs" },
    el("label", { for: "f-status" }, "Status", status),
    el("label", { for: "f-model" }, "Model",
      el("input", { id: "f-model", name: "model", value: params.get("model") || "" })),
    el("label", { for: "f-configuration" }, "Configuration",
      el("input", { id: "f-configuration", name: "configuration", value: params.get("configuration") || "" })),
    el("label", { for: "f-q" }, "Message contains",
      el("input", { id: "f-q", name: "q", type: "search", value: params.get("q") || "" })),
    el("button", { type: "submit", text: "Filter" }),
    el("a", { href: "/ui/", text: "Clear" }));
  const body = el("tbody");
  const table = el("table", { id: "jobs" },
    el("caption", { id: "jobs-caption", text: "Jobs, newest first" }),
    el("thead", {}, el("tr", {}, JOB_COLUMNS.map(([name]) => el("th", { scope: "col", text: name })))),
    body);
  const pager = el("nav", { className: "pager", "aria-label": "Pages" });
  const problem = el("div");
  const filter = jobsFilter(params);

  async function load() {
    const query = new URLSearchParams({ pageNumber: String(pageNumber), pageSize: String(PAGE_SIZE) });
    if (filter) query.set("filter", filter);
    try {
      const page = await call("GET", `/ui/api/jobs?${query}`);
      problem.replaceChildren();
      body.replaceChildren(...page.content.map(jobRow));
      if (!page.content.length) {
        body.append(el("tr", {}, el("td", { colSpan: JOB_COLUMNS.length, className: "note", text: "No jobs match." })));
      }
      renderPager(page);
    } catch (failure) {
      if (failure.status !== 401) problem.replaceChildren(errorAlert(failure.message));
    }
  }

  function renderPager(page) {
    const link = (number, text) => {
      const next = new URLSearchParams(params);
      next.set("page", String(number));
      return el("a", { href: `/ui/?${next}`, text });
    };
    const total = page.totalPages || 1;
    pager.replaceChildren(
      page.first ? el("span", { className: "note", text: "‹ Newer" }) : link(pageNumber - 1, "‹ Newer"),
      el("span", { text: `Page ${pageNumber + 1} of ${total} · ${page.totalElements} jobs` }),
      page.last ? el("span", { className: "note", text: "Older ›" }) : link(pageNumber + 1, "Older ›"));
  }

  const reload = debounce(load, 150);
  const live = follow((job) => {
    const row = body.querySelector(`tr[data-job-id="${CSS.escape(job.id)}"]`);
    if (row) {
      if (row.dataset.status !== job.status) announce(`Job ${job.id} is now ${job.status}.`);
      row.replaceWith(jobRow(job));
      if (filter) reload(); // the job may have left (or entered) the filtered set
    } else if (pageNumber === 0 || filter) {
      reload(); // a new job: it belongs at the top of the first page
    }
  }, load);
  // Durations of jobs still running tick in the browser; no request is made for them.
  const ticker = setInterval(() => {
    for (const row of body.querySelectorAll("tr[data-job-id]")) {
      if (row.job && !FINAL.has(row.job.status)) {
        row.querySelector("td.duration").textContent = formatDuration(jobDuration(row.job));
      }
    }
  }, 1000);
  window.addEventListener("pagehide", () => clearInterval(ticker));

  setMain(
    el("div", { className: "job-head" }, el("h1", { text: "Jobs" }), live),
    filters, problem, el("div", { className: "scroll" }, table), pager);
}

// -- one job -------------------------------------------------------------------------------

function outputPart(part) {
  if (part.type === "TABLE") {
    const table = el("table", { className: "output-table" },
      el("thead", {}, el("tr", {}, part.columns.map((c) => el("th", { scope: "col", text: c })))),
      el("tbody", {}, part.rows.map((r) => el("tr", {}, r.map((c) => el("td", { text: c }))))));
    return el("div", { className: "scroll" }, table,
      part.omittedRows ? el("p", { className: "note", text: `${part.omittedRows} more rows not shown.` }) : null);
  }
  if (part.type === "HTML") {
    // sandbox="" gives the HTML an opaque origin with scripts, forms, popups and plugins off:
    // markup and inline styles render, nothing in it can run or reach this page.
    const frame = el("iframe", { className: "html-output", title: "HTML output", sandbox: "" });
    frame.setAttribute("sandbox", "");
    frame.srcdoc = '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; ' +
      'style-src \'unsafe-inline\'; img-src data:">' + part.data;
    return frame;
  }
  return el("pre", { className: "output-text", text: part.data });
}

function paragraphCard(p) {
  const seconds = p.startedAt && p.finishedAt ? (Date.parse(p.finishedAt) - Date.parse(p.startedAt)) / 1000 : null;
  const card = el("section", { className: "paragraph", "data-paragraph-status": p.status, "aria-labelledby": `p-${p.index}` },
    el("header", {},
      el("h3", { id: `p-${p.index}`, text: `${p.index + 1}. ${p.label}` }),
      badge(p.status),
      el("span", { className: "meta", text: [p.interpreter && `%${p.interpreter}`, seconds !== null && formatDuration(seconds)].filter(Boolean).join(" · ") })),
    p.outputs.map(outputPart));
  if (p.error) {
    card.append(el("div", { className: "error-box", role: "group", "aria-label": "Error" },
      el("strong", { className: "paragraph-error", text: p.error }),
      p.traceback ? el("details", {}, el("summary", { text: "Traceback" }), el("pre", { text: p.traceback })) : null));
  }
  return card;
}

function showJob(jobId) {
  document.title = `Job ${jobId} · Job Manager`;
  const content = el("div");
  let lastStatus = null;

  async function load() {
    try {
      const data = await call("GET", `/ui/api/jobs/${encodeURIComponent(jobId)}`);
      render(data);
    } catch (failure) {
      if (failure.status !== 401) content.replaceChildren(errorAlert(failure.message));
    }
  }

  function render(data) {
    const job = data.job;
    if (lastStatus !== null && lastStatus !== job.status) announce(`Job is now ${job.status}.`);
    lastStatus = job.status;
    const stopError = el("p", { className: "error", role: "alert" });
    const stop = !FINAL.has(job.status) && session.canWrite && job.status !== "STOPPING"
      ? el("button", {
        type: "button", className: "danger", id: "stop", text: "Stop job",
        onclick: async (event) => {
          event.target.disabled = true;
          try {
            const answer = await call("POST", `${API}/jobs/${encodeURIComponent(jobId)}/stop`);
            announce(`Stop requested; job is ${answer.status}.`);
          } catch (failure) {
            stopError.textContent = failure.message;
            event.target.disabled = false;
          }
        },
      })
      : null;
    const fact = (name, value) => [el("dt", { text: name }), el("dd", {}, value === null || value === undefined || value === "" ? "—" : value)];
    const folder = (id) => el("a", { className: "mono", href: `/ui/folders/${encodeURIComponent(id)}`, text: id });
    const facts = el("dl", { className: "facts" },
      fact("Message", el("span", { id: "job-message", text: job.message })),
      fact("Model", el("span", { className: "mono", text: job.modelId })),
      fact("Configuration", el("span", { className: "mono", text: job.configurationId })),
      fact("Input folder", folder(job.inputFolderId)),
      fact("Output folder", folder(job.outputFolderId)),
      fact("Environment", job.environmentId),
      fact("Created", formatTime(job.creationDate)),
      fact("Created by", job.createdBy),
      fact("Started", formatTime(job.startedAt)),
      fact("Finished", formatTime(job.finishedAt)),
      fact("Duration", el("span", { id: "job-duration", text: formatDuration(jobDuration(job)) })),
      fact("Maximum time", formatDuration(Number(job.maximumExecutionTimeInSeconds))),
      job.scheduleId ? fact("Schedule", el("a", { href: `/ui/schedules#schedule-${encodeURIComponent(job.scheduleId)}`, text: job.scheduleId })) : null);
    const timeline = el("ol", { className: "timeline", id: "timeline" },
      data.timeline.map((entry) => el("li", { className: entry.moved ? "move" : "step" },
        el("time", { dateTime: entry.at, text: formatTime(entry.at) }),
        entry.moved ? badge(entry.status) : null, " ", entry.message)));
    const paragraphs = data.paragraphs.length
      ? data.paragraphs.map(paragraphCard)
      : [el("p", { className: "note", text: FINAL.has(job.status) ? "No paragraph ran." : "No paragraph has finished yet." })];
    content.replaceChildren(
      el("div", { className: "job-head" }, el("span", { id: "job-status" }, badge(job.status)), stop),
      stopError, facts,
      el("h2", { text: "Timeline" }),
      data.timeline.length ? timeline : el("p", { className: "note", text: "Waiting for the first event." }),
      el("h2", { text: "Paragraphs" }),
      el("div", { id: "paragraphs" }, paragraphs));
    content.job = job;
  }

  const reload = debounce(load, 100); // a burst of events (paragraphs) is one reload
  const live = follow((job) => { if (job.id === jobId) reload(); }, load);
  const ticker = setInterval(() => {
    const job = content.job;
    const target = document.getElementById("job-duration");
    if (job && target && !FINAL.has(job.status)) target.textContent = formatDuration(jobDuration(job));
  }, 1000);
  window.addEventListener("pagehide", () => clearInterval(ticker));
  setMain(
    el("p", {}, el("a", { href: "/ui/", text: "‹ All jobs" })),
    el("div", { className: "job-head" }, el("h1", {}, "Job ", el("span", { className: "mono", text: jobId })), live),
    content);
}

// -- one folder ----------------------------------------------------------------------------

async function showFolder(folderId) {
  document.title = `Folder ${folderId} · Job Manager`;
  const content = el("div", {}, el("p", { text: "Loading…" }));
  setMain(
    el("p", {}, el("a", { href: "/ui/", text: "‹ All jobs" })),
    el("h1", {}, "Folder ", el("span", { className: "mono", text: folderId })),
    content);
  let listing;
  try {
    listing = await call("GET", `/ui/api/folders/${encodeURIComponent(folderId)}`);
  } catch (failure) {
    if (failure.status !== 401) content.replaceChildren(errorAlert(failure.message));
    return;
  }
  if (!listing.files.length) {
    content.replaceChildren(el("p", { className: "note", text: "This folder is empty." }));
    return;
  }
  const base = `/ui/api/folders/${encodeURIComponent(folderId)}/files/`;
  const href = (path) => base + path.split("/").map(encodeURIComponent).join("/");
  content.replaceChildren(el("div", { className: "scroll" }, el("table", { id: "files" },
    el("caption", { text: listing.truncated ? "Files (the first 1000)" : "Files" }),
    el("thead", {}, el("tr", {}, ["File", "Size (bytes)", "Modified"].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, listing.files.map((f) => el("tr", {},
      el("th", { scope: "row" }, el("a", { href: href(f.path), download: f.path.split("/").pop(), text: f.path })),
      el("td", { text: String(f.size) }),
      el("td", {}, el("time", { dateTime: f.modified, text: formatTime(f.modified) }))))))));
}

// -- submit --------------------------------------------------------------------------------

async function showSubmit() {
  document.title = "Submit a job · Job Manager";
  const summary = el("div", { id: "submit-errors" });
  const inputs = {};
  const rows = Object.entries(FIELDS).map(([name, label]) => {
    const input = el("input", {
      id: `s-${name}`, name, autocomplete: "off",
      "aria-describedby": `s-${name}-error`,
      list: name === "maximumExecutionTimeInSeconds" ? null : `s-${name}-list`,
      inputMode: name === "maximumExecutionTimeInSeconds" ? "numeric" : null,
      value: name === "maximumExecutionTimeInSeconds" ? "7200" : "",
    });
    inputs[name] = input;
    // The error sits outside the label, so it describes the input rather than renaming it.
    return el("div", { className: "field" },
      el("label", { for: input.id }, label, input),
      el("datalist", { id: `s-${name}-list` }),
      el("span", { id: `s-${name}-error`, className: "field-error" }));
  });
  const button = el("button", { type: "submit", className: "primary", text: "Submit job" });
  const form = el("form", { className: "form", noValidate: true, "aria-labelledby": "submit-title" },
    rows, summary, el("div", {}, button));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    summary.replaceChildren();
    for (const [name, input] of Object.entries(inputs)) {
      input.removeAttribute("aria-invalid");
      document.getElementById(`s-${name}-error`).textContent = "";
    }
    const body = {};
    for (const [name, input] of Object.entries(inputs)) {
      if (input.value.trim() !== "") body[name] = input.value.trim();
    }
    button.disabled = true;
    try {
      const job = await call("POST", `${API}/jobs`, body);
      location.assign(`/ui/jobs/${encodeURIComponent(job.id)}`);
    } catch (failure) {
      button.disabled = false;
      // The API names the field first ("modelId: is required; ..."): show each at its input.
      let first = null;
      for (const part of failure.message.split("; ")) {
        const match = /^([A-Za-z]+): (.*)$/.exec(part);
        if (match && inputs[match[1]]) {
          inputs[match[1]].setAttribute("aria-invalid", "true");
          document.getElementById(`s-${match[1]}-error`).textContent = match[2];
          first = first || inputs[match[1]];
        }
      }
      summary.replaceChildren(errorAlert(failure.message));
      (first || button).focus();
    }
  });
  setMain(el("h1", { id: "submit-title", text: "Submit a job" }), form);
  inputs.modelId.focus();
  // Suggestions from the tenant's recent jobs; typing any id works as well.
  try {
    const page = await call("GET", `${API}/jobs?pageSize=100`);
    for (const name of ["modelId", "configurationId", "inputFolderId", "outputFolderId"]) {
      const values = [...new Set(page.content.map((job) => job[name]))];
      document.getElementById(`s-${name}-list`).replaceChildren(...values.map((v) => el("option", { value: v })));
    }
  } catch (_) { /* suggestions are optional */ }
}

// -- schedules -----------------------------------------------------------------------------

async function showSchedules() {
  document.title = "Schedules · Job Manager";
  const content = el("div", {}, el("p", { text: "Loading…" }));
  setMain(el("h1", { text: "Schedules" }), content);
  async function load() {
    let page;
    try {
      page = await call("GET", `${API}/schedules?pageSize=100`);
    } catch (failure) {
      if (failure.status === 404 || failure.status === 405) {
        content.replaceChildren(el("p", { className: "note", id: "no-schedules-api", text: "This gateway has no schedules API." }));
      } else if (failure.status !== 401) {
        content.replaceChildren(errorAlert(failure.message));
      }
      return;
    }
    const schedules = page.schedules || page.content || [];
    if (!schedules.length) {
      content.replaceChildren(el("p", { className: "note", text: "No schedules yet." }));
      return;
    }
    const problem = el("div");
    const rows = schedules.map((s) => {
      const running = s.status === "RUNNING";
      const action = session.canWrite ? el("button", {
        type: "button", text: running ? "Stop" : "Start", "aria-label": `${running ? "Stop" : "Start"} schedule ${s.name || s.id}`,
        onclick: async (event) => {
          event.target.disabled = true;
          try {
            await call("POST", `${API}/schedules/${encodeURIComponent(s.id)}/${running ? "stop" : "start"}`);
            announce(`Schedule ${s.name || s.id} ${running ? "stopped" : "started"}.`);
            await load();
          } catch (failure) {
            problem.replaceChildren(errorAlert(failure.message));
            event.target.disabled = false;
          }
        },
      }) : null;
      const next = (s.nextFireTimes || []).slice(0, 3);
      return el("tr", { id: `schedule-${s.id}` },
        el("th", { scope: "row", text: s.name || s.id }),
        el("td", { className: "mono", text: s.modelId || "" }),
        el("td", { className: "mono", text: s.scheduleString || "" }),
        el("td", { text: s.timezone || "" }),
        el("td", {}, badge(s.status || "")),
        el("td", {}, next.length ? el("ul", {}, next.map((t) => el("li", {}, el("time", { dateTime: t, text: formatTime(t) })))) : "—"),
        el("td", {}, action));
    });
    content.replaceChildren(problem, el("div", { className: "scroll" }, el("table", { id: "schedules" },
      el("caption", { text: "Schedules of this tenant" }),
      el("thead", {}, el("tr", {}, ["Name", "Model", "Schedule", "Timezone", "Status", "Next fire times", "Action"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows))));
    if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  }
  await load();
}

// -- start ---------------------------------------------------------------------------------

async function start() {
  const path = location.pathname;
  const section = path.startsWith("/ui/jobs/") ? "jobs" : path === "/ui/submit" ? "submit"
    : path === "/ui/schedules" ? "schedules" : "jobs";
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    if (link.dataset.nav === section && path !== "/ui/login") link.setAttribute("aria-current", "page");
  }
  try {
    session = await call("GET", "/ui/api/session");
  } catch (failure) {
    if (failure.status !== 401) setMain(errorAlert(failure.message));
    return; // a 401 shows the sign-in form
  }
  showWho();
  if (path === "/ui/login") location.assign("/ui/");
  else if (path.startsWith("/ui/jobs/")) showJob(decodeURIComponent(path.slice("/ui/jobs/".length)));
  else if (path.startsWith("/ui/folders/")) showFolder(decodeURIComponent(path.slice("/ui/folders/".length)));
  else if (path === "/ui/submit") showSubmit();
  else if (path === "/ui/schedules") showSchedules();
  else showJobs();
}

document.addEventListener("DOMContentLoaded", start);
