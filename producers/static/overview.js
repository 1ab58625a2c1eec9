// eventq admin page, part 1: the overview (refreshed every few seconds) and the SVG charts
// (minute bars, a job's attempt timeline), drawn by this code with DOM calls: no library, no
// innerHTML. Data is only ever set with textContent. admin.js starts it with its helpers.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const REFRESH_MS = 5000;
  const $ = (id) => document.getElementById(id);
  let deps = null;
  let shownGroups = "";  // the group rows are redrawn only when they change (keeps focus)

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function titled(node, text) {
    node.appendChild(svg("title", {}, text));
    return node;
  }

  // ---- charts --------------------------------------------------------------------------

  function minuteBars(minutes) {
    const width = 600, height = 130, top = 8, bottom = 20, left = 30;
    const plot = height - top - bottom;
    const totals = minutes.map((m) => m.delivered + m.retried + m.deadLettered);
    const peak = Math.max(1, ...totals);
    const step = (width - left) / Math.max(1, minutes.length);
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, role: "img", class: "bars",
      "aria-label": "Delivered, retried and dead-lettered per minute over the last hour",
    });
    chart.appendChild(svg("line", { x1: left, y1: top + plot, x2: width, y2: top + plot, class: "axis" }));
    chart.appendChild(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end", class: "tick" }, peak));
    chart.appendChild(svg("text", { x: left - 4, y: top + plot, "text-anchor": "end", class: "tick" }, 0));
    chart.appendChild(svg("text", { x: left, y: height - 4, class: "tick" }, "60 min ago"));
    chart.appendChild(svg("text", { x: width, y: height - 4, "text-anchor": "end", class: "tick" }, "now"));
    minutes.forEach((m, i) => {
      const group = titled(svg("g", {}), `${deps.when(m.at)}: ${m.delivered} delivered, ` +
        `${m.retried} retried, ${m.deadLettered} dead-lettered`);
      let y = top + plot;
      for (const [value, kind] of [[m.delivered, "delivered"], [m.retried, "retried"], [m.deadLettered, "dead"]]) {
        if (!value) continue;
        const h = Math.max(1, (value / peak) * plot);
        y -= h;
        group.appendChild(svg("rect", { x: left + i * step + 0.5, y, width: Math.max(1, step - 1), height: h, class: kind }));
      }
      chart.appendChild(group);
    });
    return chart;
  }

  function outcomeClass(outcome) {
    if (outcome === "delivered" || outcome === "found") return "delivered";
    if (outcome === "dead_letter") return "dead";
    if (outcome === "retry") return "retried";
    return "other";
  }

  function attemptTimeline(history) {
    const width = 600, height = 56, pad = 16;
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, role: "img", class: "timeline-chart",
      "aria-label": "The job's attempts over time",
    });
    if (!history.length) return chart;
    const first = history[0].at, last = history[history.length - 1].at;
    const span = Math.max(1, last - first);
    chart.appendChild(svg("line", { x1: pad, y1: 24, x2: width - pad, y2: 24, class: "axis" }));
    history.forEach((a, i) => {
      const x = history.length === 1 ? width / 2 : pad + ((a.at - first) / span) * (width - 2 * pad);
      const detail = [deps.when(a.at), "attempt " + a.attempt, a.outcome, a.httpStatus || "",
        a.latencyMs != null ? a.latencyMs + " ms" : "", a.detail || ""].filter((p) => p !== "").join(" · ");
      const dot = titled(svg("circle", { cx: x, cy: 24, r: 7, class: outcomeClass(a.outcome) }), detail);
      chart.appendChild(dot);
      chart.appendChild(svg("text", { x, y: 50, "text-anchor": "middle", class: "tick" }, i + 1));
    });
    return chart;
  }

  // ---- the overview --------------------------------------------------------------------

  function figure(id, value) {
    $(id).textContent = value === null || value === undefined ? "n/a" : String(value);
  }

  function bucketItem(b) {
    const item = deps.el("li");
    item.appendChild(deps.el("strong", b.label));
    item.appendChild(deps.el("span", ` ${b.used} of ${b.budget} per ${b.windowS} s` +
      (b.reserved ? `, ${b.reserved} reserved` : "")));
    const meter = deps.el("meter");
    meter.min = 0; meter.max = Math.max(1, b.budget); meter.value = Math.min(b.used, b.budget);
    meter.setAttribute("aria-label", `${b.label}: ${b.used} of ${b.budget} used`);
    item.appendChild(meter);
    if (b.pausedUntil) {
      item.appendChild(deps.el("span", `paused (${b.pauseReason || "?"}) until ${deps.when(b.pausedUntil)}`, "warn bucket-pause"));
    }
    return item;
  }

  function breakerItem(b) {
    const item = deps.el("li");
    item.appendChild(deps.el("span", b.state, "state " + b.state.replace("_", "-")));
    item.appendChild(deps.el("span", " " + b.target));
    if (b.state === "open" && b.openUntil) item.appendChild(deps.el("span", ` until ${deps.when(b.openUntil)}`));
    else if (b.failures) item.appendChild(deps.el("span", ` (${b.failures} failures in a row)`));
    return item;
  }

  function groupRow(g) {
    const row = deps.el("tr");
    row.appendChild(deps.el("td", `${g.count} ×`, "num"));
    row.appendChild(deps.el("td", g.reason));
    row.appendChild(deps.el("td", g.message || "(no message)"));
    const cell = deps.el("td");
    const show = deps.el("button", "Show");
    show.type = "button";
    show.setAttribute("aria-label", `Show the ${g.count} entries: ${g.reason}: ${g.message}`);
    show.addEventListener("click", () => deps.showGroup(g.reason, g.message));
    const act = deps.el("button", "Act on group");
    act.type = "button";
    act.setAttribute("aria-label", `Act on the ${g.count} entries: ${g.reason}: ${g.message}`);
    act.addEventListener("click", () => deps.actOnGroup(g.reason, g.message));
    cell.append(show, act);
    row.appendChild(cell);
    return row;
  }

  function render(o) {
    figure("ov-live", o.queues.live);
    figure("ov-bulk", o.queues.bulk);
    figure("ov-schedule", o.queues.retrySchedule);
    figure("ov-dlq-total", o.deadLetters.total);
    const sum = (key) => o.minutes.reduce((n, m) => n + m[key], 0);
    figure("ov-hour-delivered", sum("delivered"));
    figure("ov-hour-retried", sum("retried"));
    figure("ov-hour-dead", sum("deadLettered"));
    $("ov-chart").replaceChildren(minuteBars(o.minutes));
    const buckets = o.buckets.map(bucketItem);
    $("ov-buckets").replaceChildren(...(buckets.length ? buckets : [deps.el("li", "no bucket known to this service")]));
    $("ov-breakers").replaceChildren(...o.breakers.map(breakerItem));
    const reasons = [];
    for (const reason of ["invalid", "rejected", "auth", "exhausted"]) {
      const count = deps.el("dd", o.deadLetters.byReason[reason] || 0);
      count.id = "ov-reason-" + reason;
      reasons.push(deps.el("dt", reason), count);
    }
    $("ov-reasons").replaceChildren(...reasons);
    const groups = JSON.stringify(o.deadLetters.groups);
    if (groups !== shownGroups) {
      shownGroups = groups;
      $("group-rows").replaceChildren(...o.deadLetters.groups.map(groupRow));
    }
    $("ov-updated").textContent = "updated " + deps.when(o.at);
  }

  async function refresh() {
    const answer = await deps.api("GET", "/v1/overview");
    if (answer.ok) render(answer.data);
  }

  function start(helpers) {
    deps = helpers;
    refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  }

  window.eventqOverview = { start, refresh, attemptTimeline };
})();
