// eventq admin page, part 2: the dead-letter list (triage, sort, keyboard, bulk actions with a
// dry-run preview), one entry, the audit log and the job lookup. Calls the JSON API with the
// session cookie and the session's CSRF token. User data (event names, payloads, errors) is only
// ever set with textContent or .value.
"use strict";

(function () {
  const page = {
    csrf: "", cursor: null, query: "", entry: null, polling: null, armed: null,
    entries: [], selected: new Set(), sortKey: "deadLetteredAt", sortDir: -1, pending: null,
  };
  const $ = (id) => document.getElementById(id);
  const MAX_PER_ACTION = 1000;  // the API's most entries per replay or delete call

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function when(epochSeconds) {
    if (!epochSeconds) return "";
    return new Date(epochSeconds * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  }

  function notice(message) {
    const box = $("notice");
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = page.csrf;
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      window.location.assign("/admin/login");
      throw new Error("session ended");
    }
    const data = response.status === 204 ? null : await response.json();
    if (!response.ok && response.status !== 404 && response.status !== 422) {
      notice((data && data.message) || "request failed (" + response.status + ")");
    }
    return { status: response.status, ok: response.ok, data };
  }

  function attemptLine(a) {
    return [when(a.at), "attempt " + a.attempt, a.outcome, a.httpStatus || "",
      a.latencyMs != null ? a.latencyMs + " ms" : "",
      a.correlationId ? "correlationId " + a.correlationId : "", a.detail || ""]
      .filter((part) => part !== "").join(" · ");
  }

  // ---- job lookup ----------------------------------------------------------------------

  function renderJob(job) {
    $("job-summary").textContent = job.summary || "";
    $("job-state").textContent = job.state;
    $("job-attempts").textContent = job.attempts;
    $("job-object-id").textContent = job.objectId || "";
    $("job-last-error").textContent = job.lastError || "";
    $("job-created").textContent = when(job.createdAt);
    $("job-updated").textContent = when(job.updatedAt);
    const history = job.history || [];
    $("job-timeline").replaceChildren(window.eventqOverview.attemptTimeline(history));
    $("job-history").replaceChildren(...history.map((a) => el("li", attemptLine(a), "outcome-" + a.outcome)));
    const open = $("job-open-entry");
    open.hidden = !(job.state === "dead_lettered" && job.deadLetterId);
    open.onclick = () => openEntry(job.deadLetterId);
    $("job-result").hidden = false;
  }

  async function lookUpJob(jobId) {
    const answer = await api("GET", "/v1/jobs/" + encodeURIComponent(jobId));
    if (answer.status === 404) {
      $("job-result").hidden = true;
      notice("No job " + jobId + " (unknown or expired).");
      return null;
    }
    if (answer.ok) renderJob(answer.data);
    return answer.ok ? answer.data : null;
  }

  function trackJob(jobId) {
    $("job-id").value = jobId;
    if (page.polling) clearInterval(page.polling);
    let rounds = 0;
    const poll = async () => {
      rounds += 1;
      const job = await lookUpJob(jobId);
      const done = job && (job.state === "delivered" || job.state === "dead_lettered");
      if (done || rounds >= 120) clearInterval(page.polling);
    };
    page.polling = setInterval(poll, 1000);
    poll();
  }

  // ---- dead-letter list: filters, triage columns, sort, keyboard -----------------------

  function filterObject() {
    const filter = {};
    const reason = $("filter-reason").value;
    const status = $("filter-status").value.trim();
    const text = $("filter-text").value.trim();
    const message = $("filter-message").value;
    if (reason) filter.reason = reason;
    if (status) filter.httpStatus = Number(status);
    if (text) filter.text = text;
    if (message) filter.message = message;
    for (const name of ["since", "until"]) {
      const value = $("filter-" + name).value;
      if (value) filter[name] = new Date(value).toISOString();
    }
    return filter;
  }

  function filterQuery() {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(filterObject())) params.set(name, String(value));
    return params;
  }

  function facts(entry) {
    const attempts = entry.attempts || [];
    const error = entry.error || {};
    return {
      deadLetteredAt: entry.deadLetteredAt,
      reason: entry.reason,
      httpStatus: entry.httpStatus || 0,
      message: error.message || "",
      category: error.category || "",
      attempts: attempts.length,
      firstAt: attempts.length ? attempts[0].at : 0,
      lastAt: attempts.length ? attempts[attempts.length - 1].at : 0,
      eventName: entry.payload && typeof entry.payload.eventName === "string"
        ? entry.payload.eventName : "(no eventName)",
    };
  }

  function entryRow(entry) {
    const f = facts(entry);
    const row = document.createElement("tr");
    row.setAttribute("data-id", entry.id);
    row.tabIndex = 0;
    const check = el("input");
    check.type = "checkbox";
    check.className = "pick";
    check.checked = page.selected.has(entry.id);
    check.setAttribute("aria-label", "Select entry " + entry.id);
    check.addEventListener("click", (event) => event.stopPropagation());
    check.addEventListener("change", () => pick(entry.id, check.checked));
    const first = el("td");
    first.appendChild(check);
    row.appendChild(first);
    for (const cell of [when(f.deadLetteredAt), f.reason, f.httpStatus || "", f.message, f.category,
      f.attempts, when(f.firstAt), when(f.lastAt), f.eventName]) {
      row.appendChild(el("td", cell));
    }
    const ids = el("td");
    ids.append(el("code", entry.id, "id"), el("br"), el("code", entry.jobId, "id"));
    row.appendChild(ids);
    row.classList.toggle("selected", page.entry !== null && page.entry.id === entry.id);
    row.addEventListener("click", () => openEntry(entry.id));
    return row;
  }

  function sorted(entries) {
    const key = page.sortKey, dir = page.sortDir;
    return [...entries].sort((a, b) => {
      const x = facts(a)[key], y = facts(b)[key];
      if (x < y) return -dir;
      if (x > y) return dir;
      return 0;
    });
  }

  function renderRows() {
    $("dlq-rows").replaceChildren(...sorted(page.entries).map(entryRow));
    $("dlq-empty").hidden = page.entries.length > 0;
    for (const button of document.querySelectorAll("button.sort")) {
      const on = button.getAttribute("data-sort") === page.sortKey;
      button.parentElement.setAttribute("aria-sort", on ? (page.sortDir > 0 ? "ascending" : "descending") : "none");
    }
    showSelected();
  }

  function sortBy(key) {
    page.sortDir = page.sortKey === key ? -page.sortDir : 1;
    page.sortKey = key;
    renderRows();
  }

  function pick(entryId, on) {
    if (on) page.selected.add(entryId);
    else page.selected.delete(entryId);
    showSelected();
  }

  function showSelected() {
    $("bulk-selected").textContent = page.selected.size + " selected";
    const listed = page.entries.map((e) => e.id);
    $("select-all").checked = listed.length > 0 && listed.every((id) => page.selected.has(id));
  }

  function onRowKey(event) {
    const row = event.target.closest && event.target.closest("tr");
    if (!row || row.parentElement !== $("dlq-rows") || event.target.tagName === "INPUT") return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const next = event.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling;
      if (next) next.focus();
      event.preventDefault();
    } else if (event.key === " ") {
      const box = row.querySelector("input.pick");
      box.checked = !box.checked;
      pick(row.getAttribute("data-id"), box.checked);
      event.preventDefault();
    } else if (event.key === "Enter") {
      openEntry(row.getAttribute("data-id"));
    }
  }

  async function loadEntries(more) {
    const params = more ? new URLSearchParams(page.query) : filterQuery();
    if (!more) page.query = params.toString();
    if (more && page.cursor) params.set("cursor", page.cursor);
    params.set("limit", "200");
    const answer = await api("GET", "/v1/dead-letters?" + params.toString());
    if (!answer.ok) {
      if (answer.status === 422) notice(answer.data.message);
      return;
    }
    notice("");
    page.entries = more ? page.entries.concat(answer.data.entries) : answer.data.entries;
    page.cursor = answer.data.nextCursor;
    $("dlq-more").hidden = !page.cursor;
    renderRows();
  }

  function showGroup(reason, message) {
    $("filter-reason").value = reason;
    $("filter-message").value = message;
    for (const name of ["status", "text", "since", "until"]) $("filter-" + name).value = "";
    page.selected.clear();
    return loadEntries(false);
  }

  async function actOnGroup(reason, message) {
    await showGroup(reason, message);
    $("bulk-scope").value = "filter";
    $("bulk").scrollIntoView({ block: "nearest" });
    $("bulk-action").focus();
  }

  // ---- bulk actions: dry run, then one confirm -----------------------------------------

  function bulkSelection() {
    if ($("bulk-scope").value === "selected") {
      if (!page.selected.size) return { error: "Select rows first (Space on a row, or its box)." };
      return { ids: [...page.selected] };
    }
    return { filter: filterObject() };
  }

  function bulkPatch() {
    const text = $("bulk-patch").value.trim();
    if (!text) return { patch: undefined };
    try {
      const patch = JSON.parse(text);
      if (patch === null || typeof patch !== "object" || Array.isArray(patch)) {
        return { error: "The patch must be a JSON object (a JSON merge patch)." };
      }
      return { patch };
    } catch (error) {
      return { error: "The patch is not valid JSON: " + error.message };
    }
  }

  function showBulk(summary, refusals, confirmLabel) {
    $("bulk-summary").textContent = summary;
    $("bulk-refusals").replaceChildren(...refusals);
    $("bulk-confirm").hidden = !confirmLabel;
    $("bulk-confirm").textContent = confirmLabel || "";
    $("bulk-result").hidden = false;
  }

  function refusalItem(result) {
    const item = el("li");
    item.appendChild(el("code", result.id, "id"));
    const errors = (result.errors || []).map((e) => e.field + ": " + e.message);
    item.appendChild(el("span", " " + (errors.join("; ") || result.detail || result.status)));
    return item;
  }

  function count(counts, name) {
    return (counts && counts[name]) || 0;
  }

  async function previewBulk() {
    const action = $("bulk-action").value;
    const selection = bulkSelection();
    const patched = action === "replay" ? bulkPatch() : { patch: undefined };
    if (selection.error || patched.error) {
      showBulk(selection.error || patched.error, [], null);
      return;
    }
    const body = Object.assign({ dryRun: true }, selection);
    if (patched.patch) body.patch = patched.patch;
    const path = action === "replay" ? "/v1/dead-letters/replay" : "/v1/dead-letters/delete";
    const answer = await api("POST", path, body);
    if (!answer.ok) {
      if (answer.status === 422) showBulk("Refused: " + answer.data.message, [], null);
      return;
    }
    const results = answer.data.results;
    const go = action === "replay" ? "would_replay" : "would_delete";
    const ids = results.filter((r) => r.status === go).map((r) => r.id);
    const refused = results.filter((r) => r.status === "invalid");
    const counts = answer.data.counts;
    const summary = action === "replay"
      ? `Dry run of ${results.length}: ${ids.length} would be replayed, ${refused.length} refused` +
        ` (invalid after re-validation), ${count(counts, "missing")} gone.`
      : `Dry run of ${results.length}: ${ids.length} would be deleted, ${count(counts, "missing")} gone.`;
    const capped = results.length >= MAX_PER_ACTION
      ? ` Only the first ${MAX_PER_ACTION} matching entries are taken per action: run it again for the rest.` : "";
    page.pending = ids.length ? { path, body: Object.assign({ ids }, patched.patch ? { patch: patched.patch } : {}), action } : null;
    const label = ids.length ? `Confirm: ${action} ${ids.length} ${ids.length === 1 ? "entry" : "entries"}` : null;
    showBulk(summary + capped, refused.map(refusalItem), label);
  }

  async function confirmBulk() {
    const pending = page.pending;
    if (!pending) return;
    page.pending = null;
    $("bulk-confirm").hidden = true;
    const answer = await api("POST", pending.path, pending.body);
    if (!answer.ok) return;
    const parts = Object.entries(answer.data.counts).map(([name, n]) => `${n} ${name.replace("_", " ")}`);
    const refused = answer.data.results.filter((r) => r.status === "invalid");
    showBulk("Done: " + parts.join(", ") + ".", refused.map(refusalItem), null);
    page.selected.clear();
    await loadEntries(false);
    loadAudit();
    window.eventqOverview.refresh();
  }

  // ---- one entry -----------------------------------------------------------------------

  function renderEntry(entry) {
    page.entry = entry;
    $("entry-title").textContent = facts(entry).eventName;
    $("entry-id").textContent = entry.id;
    $("entry-job-id").textContent = entry.jobId;
    $("entry-reason").textContent = entry.reason;
    $("entry-http-status").textContent = entry.httpStatus || "";
    $("entry-time").textContent = when(entry.deadLetteredAt);
    $("entry-error").textContent = (entry.error && entry.error.message) || "";
    $("entry-attempts").replaceChildren(...(entry.attempts || []).map((a) => el("li", attemptLine(a))));
    $("entry-payload").value = JSON.stringify(entry.payload, null, 2);
    $("action-result").hidden = true;
    disarmDelete();
    $("entry-detail").hidden = false;
    for (const row of $("dlq-rows").children) {
      row.classList.toggle("selected", row.getAttribute("data-id") === entry.id);
    }
  }

  async function openEntry(entryId) {
    const answer = await api("GET", "/v1/dead-letters/" + encodeURIComponent(entryId));
    if (answer.status === 404) {
      notice("That entry is gone (replayed or deleted).");
      $("entry-detail").hidden = true;
      return;
    }
    if (answer.ok) renderEntry(answer.data);
  }

  function showResult(status, errors, jobId) {
    $("action-status").textContent = status;
    $("action-errors").replaceChildren(...(errors || []).map((e) => el("li", e.field + ": " + e.message)));
    $("action-result").hidden = false;
    if (jobId) trackJob(jobId);
  }

  async function replay(options) {
    if (!page.entry) return;
    const body = Object.assign({ ids: [page.entry.id] }, options);
    const answer = await api("POST", "/v1/dead-letters/replay", body);
    if (answer.status === 422) {
      showResult("Refused: " + answer.data.message, answer.data.errors);
      return;
    }
    if (!answer.ok) return;
    const result = answer.data.results[0];
    const words = { replayed: "Replayed as job ", would_replay: "Valid; would replay job ",
      already_live: "Already live as job ", invalid: "Still invalid", missing: "Entry is gone" };
    const label = (words[result.status] || result.status) + (result.jobId || "");
    const replayed = result.status === "replayed" || result.status === "already_live";
    showResult(label, result.errors, replayed ? result.jobId : null);
    if (replayed) loadEntries(false);
    loadAudit();
  }

  function replayEdited() {
    let payload;
    try {
      payload = JSON.parse($("entry-payload").value);
    } catch (error) {
      showResult("The payload is not valid JSON: " + error.message, []);
      return;
    }
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
      showResult("The payload must be a JSON object.", []);
      return;
    }
    replay({ payload });
  }

  function disarmDelete() {
    page.armed = null;
    $("delete").textContent = "Delete";
  }

  async function deleteEntry() {
    if (!page.entry) return;
    if (page.armed !== page.entry.id) {
      page.armed = page.entry.id;
      $("delete").textContent = "Click again to delete";
      return;
    }
    const answer = await api("DELETE", "/v1/dead-letters/" + encodeURIComponent(page.entry.id));
    disarmDelete();
    if (answer.ok || answer.status === 404) {
      $("entry-detail").hidden = true;
      page.entry = null;
      loadEntries(false);
      loadAudit();
    }
  }

  // ---- audit log -----------------------------------------------------------------------

  function auditRow(entry) {
    const row = el("tr");
    for (const cell of [when(entry.at), entry.keyName, entry.via, entry.action, entry.ids.length,
      entry.outcome, entry.patched ? "yes" : ""]) {
      row.appendChild(el("td", cell));
    }
    row.title = entry.ids.join(" ");
    return row;
  }

  async function loadAudit() {
    const answer = await api("GET", "/v1/audit?limit=20");
    if (answer.ok) $("audit-rows").replaceChildren(...answer.data.entries.map(auditRow));
  }

  // ---- start ---------------------------------------------------------------------------

  async function start() {
    const session = await api("GET", "/admin/session");
    if (!session.ok) return;
    page.csrf = session.data.csrfToken;
    $("key-name").textContent = session.data.keyName;
    $("dlq-filters").addEventListener("submit", (event) => { event.preventDefault(); loadEntries(false); });
    $("filter-clear").addEventListener("click", () => { $("dlq-filters").reset(); loadEntries(false); });
    $("dlq-more").addEventListener("click", () => loadEntries(true));
    $("dlq-rows").addEventListener("keydown", onRowKey);
    for (const button of document.querySelectorAll("button.sort")) {
      button.addEventListener("click", () => sortBy(button.getAttribute("data-sort")));
    }
    $("select-all").addEventListener("change", () => {
      for (const entry of page.entries) pick(entry.id, $("select-all").checked);
      renderRows();
    });
    $("bulk-preview").addEventListener("click", previewBulk);
    $("bulk-confirm").addEventListener("click", confirmBulk);
    $("bulk-cancel").addEventListener("click", () => { page.pending = null; $("bulk-result").hidden = true; });
    $("job-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const jobId = $("job-id").value.trim();
      if (jobId) trackJob(jobId);
    });
    $("replay").addEventListener("click", () => replay({}));
    $("dry-run").addEventListener("click", () => replay({ dryRun: true }));
    $("replay-edited").addEventListener("click", replayEdited);
    $("delete").addEventListener("click", deleteEntry);
    $("audit-refresh").addEventListener("click", loadAudit);
    $("logout").addEventListener("click", async () => {
      await api("POST", "/admin/logout");
      window.location.assign("/admin/login");
    });
    window.eventqOverview.start({ api, el, when, showGroup, actOnGroup });
    loadEntries(false);
    loadAudit();
  }

  start();
})();
