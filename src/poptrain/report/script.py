"""The dashboard's one script, served at /static/dashboard.js (the pages run no inline script).

The list of experiments: the experiments ticked make the comparison page's address. An experiment
page: the whole run once, then every few seconds only what is new (`live.updates`): its traces are
appended to the ones drawn (Plotly.extendTraces, matched by trace name and axis), the figures sent
whole are redrawn, and now and then (at most every tenth poll) everything is read again. The filters
(status, members) hide the other members' traces and rows and live in the address, as does the
comparison's choice of experiments. HTML from the server (members_html, summary_html) is escaped there.
"""

SCRIPT = r"""
"use strict";
const live = document.getElementById("live");
const statusLine = document.getElementById("status");
const CONFIG = {displaylogo: false};

async function getJSON(url, options) {
  const response = await fetch(url, {cache: "no-store", ...options});
  if (!response.ok) { throw new Error(`the store did not answer (HTTP ${response.status})`); }
  return response.json();
}

async function drawAll(figures) {
  const failed = [];
  for (const [name, figure] of Object.entries(figures)) {
    const chart = document.getElementById("chart-" + name);
    try {
      if (!chart) { throw new Error("the page has no place for it"); }
      await Plotly.react(chart, figure.data, figure.layout, CONFIG);
    } catch (err) {
      failed.push(name);
      console.error(`poptrain dashboard: the figure ${name} could not be drawn: ${err}`);
    }
  }
  return failed;
}

// the list of experiments: the ones ticked make the comparison's address
const picks = Array.from(document.querySelectorAll("input.pick"));
const compareLink = document.getElementById("compare");
function choose() {
  const chosen = picks.filter(p => p.checked).map(p => p.value);
  const query = new URLSearchParams(chosen.map(name => ["experiment", name]));
  compareLink.href = "/compare?" + query.toString();
  compareLink.hidden = chosen.length < 2;
  document.getElementById("chosen").textContent = chosen.length < 2 ? "tick two experiments or more to compare them" : "";
}
if (compareLink) { picks.forEach(p => p.addEventListener("change", choose)); choose(); }

// an experiment page's filters: members by status and by id, kept in the address
const params = new URLSearchParams(location.search);
const statusFilter = document.getElementById("filter-status");
const memberFilter = document.getElementById("filter-member");
let memberStatus = {}, wasFiltered = false;
function wantedMembers() {
  const ids = (memberFilter ? memberFilter.value : "").split(/[\s,]+/).filter(Boolean).map(Number)
    .filter(Number.isInteger);
  return ids.length ? new Set(ids) : null;
}
function isShown(member) {
  const status = statusFilter ? statusFilter.value : "", wanted = wantedMembers();
  return (!status || memberStatus[member] === status) && (!wanted || wanted.has(member));
}
function filtered() { return (statusFilter && statusFilter.value) || wantedMembers() !== null; }
async function applyFilter() {
  if (!statusFilter || !(filtered() || wasFiltered)) { return; }  // no filter: the legend's own toggles stay
  wasFiltered = filtered();
  for (const chart of document.querySelectorAll("div.chart.js-plotly-plot")) {
    const grouped = [], visible = [], pointed = [], selected = [];
    chart.data.forEach((trace, i) => {
      const named = /^member (\d+)$/.exec(trace.name || "");
      if (named) { grouped.push(i); visible.push(isShown(Number(named[1]))); }
      else if (Array.isArray(trace.customdata)) {
        pointed.push(i);
        selected.push(filtered() ? trace.customdata.flatMap((m, k) => isShown(Number(m)) ? [k] : []) : null);
      }
    });
    if (grouped.length) { await Plotly.restyle(chart, {visible: visible}, grouped); }
    if (pointed.length) { await Plotly.restyle(chart, {selectedpoints: selected}, pointed); }
  }
  let shown = 0, total = 0;
  for (const row of document.querySelectorAll("#members tr")) {
    if (!row.cells.length || row.cells[0].tagName !== "TD") { continue; }
    total += 1;
    row.hidden = !isShown(Number(row.cells[0].textContent));
    shown += row.hidden ? 0 : 1;
  }
  document.getElementById("shown").textContent = filtered() ? `showing ${shown} of ${total} members` : "";
}
function keepInAddress() {
  for (const [key, value] of [["status", statusFilter.value], ["member", memberFilter.value.trim()]]) {
    if (value) { params.set(key, value); } else { params.delete(key); }
  }
  const query = params.toString();
  history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  applyFilter();
}
if (statusFilter) {
  statusFilter.value = params.get("status") || "";
  memberFilter.value = params.get("member") || "";
  statusFilter.addEventListener("change", keepInAddress);
  memberFilter.addEventListener("input", keepInAddress);
}

// new traces appended to the drawn ones: matched by name and axis; a member sent again whole (rolled back) replaced
function traceKey(trace) { return `${trace.name}|${trace.yaxis || "y"}`; }
async function append(name, traces, reset) {
  const chart = document.getElementById("chart-" + name);
  if (!chart || !chart.data || !traces.length) { return; }
  const at = new Map(chart.data.map((trace, i) => [traceKey(trace), i]));
  const extend = {x: [], y: []}, indices = [], added = [];
  for (const trace of traces) {
    const i = at.get(traceKey(trace)), member = /^member (\d+)$/.exec(trace.name || "");
    if (i === undefined) { added.push(trace); }
    else if (member && reset.includes(Number(member[1]))) { await Plotly.restyle(chart, {x: [trace.x], y: [trace.y]}, [i]); }
    else if (trace.name === "exploit") {
      const y = trace.y.map((v, k) => v !== null ? v : scoreAt(chart, trace.customdata[k], trace.x[k]));
      await Plotly.extendTraces(chart, {x: [trace.x], y: [y], text: [trace.text], customdata: [trace.customdata]}, [i]);
    } else { extend.x.push(trace.x); extend.y.push(trace.y); indices.push(i); }
  }
  if (indices.length) { await Plotly.extendTraces(chart, extend, indices); }
  if (added.length) { await Plotly.addTraces(chart, added); }
}
function scoreAt(chart, member, step) {  // an exploit's score, reported in an earlier update
  const trace = chart.data.find(t => t.name === `member ${member}` && (t.yaxis || "y") === "y");
  if (!trace) { return null; }
  const k = Array.from(trace.x).lastIndexOf(step);
  return k < 0 ? null : trace.y[k];
}

function show(data, failed) {
  memberStatus = data.members;
  document.getElementById("steps").textContent = data.steps_done;
  document.getElementById("members").innerHTML = data.members_html;
  statusLine.textContent = failed.length ? `${data.status} · could not draw: ${failed.join(", ")}` : data.status;
}

async function experimentPage() {
  const every = parseInt(live.dataset.every, 10);
  let cursor = null, best = null, wholeAfter = 0, wholeCost = 0;
  async function readWhole() {
    const started = performance.now();
    const data = await getJSON(live.dataset.api);
    wholeCost = performance.now() - started;
    wholeAfter = Date.now() + Math.max(10 * every, 10 * wholeCost);  // a whole read, at most a tenth of the time
    cursor = data.cursor;
    best = data.best;
    show(data, await drawAll(data.figures));
    return data;
  }
  async function refresh() {
    let data;
    try {
      if (cursor === null) {
        data = await readWhole();
      } else {
        data = await getJSON(live.dataset.updates, {method: "POST", headers: {"Content-Type": "application/json"},
                                                    body: JSON.stringify(cursor)});
        const changed = data.new_events > 0 || data.best !== best || Object.values(data.append).some(t => t.length);
        const wanted = changed && Date.now() >= wholeAfter;
        if (wanted || !data.live) {
          data = await readWhole();  // the winning lineage, the tree, the front: they need the whole run
        } else {
          const failed = [];
          for (const [name, traces] of Object.entries(data.append)) {
            try { await append(name, traces, data.reset); }
            catch (err) { failed.push(name); console.error(`poptrain dashboard: ${name} could not be extended: ${err}`); }
          }
          cursor = data.cursor;
          show(data, failed.concat(await drawAll(data.figures)));
        }
      }
    } catch (err) {
      statusLine.textContent = "waiting for the dashboard server";
      setTimeout(refresh, every);
      return;
    }
    await applyFilter();
    if (data.live) { setTimeout(refresh, every); }
  }
  refresh();
}

async function comparePage() {
  const every = parseInt(live.dataset.every, 10);
  async function refresh() {
    let data;
    try {
      data = await getJSON(live.dataset.api);
    } catch (err) {
      statusLine.textContent = "waiting for the dashboard server";
      setTimeout(refresh, every);
      return;
    }
    const failed = await drawAll(data.figures);
    document.getElementById("summary").innerHTML = data.summary_html;
    statusLine.textContent = (data.live ? "live: redrawn every few seconds" : "every experiment is done or stopped")
      + (failed.length ? ` · could not draw: ${failed.join(", ")}` : "");
    if (data.live) { setTimeout(refresh, Math.max(every, 5000)); }
  }
  refresh();
}

if (live && live.dataset.page === "experiment") { experimentPage(); }
if (live && live.dataset.page === "compare") { comparePage(); }
// members_html: the members table, escaped by the server, replaces #members on every answer
"""
