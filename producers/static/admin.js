// eventq admin page: calls the JSON API with the session cookie and the session's CSRF token.
// User data (event names, payloads, errors) is only ever set with textContent or .value.
"use strict";

(function () {
  const page = { csrf: "", cursor: null, query: "", entry: null, polling: null, armed: null };
  const $ = (id) => document.getElementById(id);

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function when(epochSeconds) {
    if (!epochSeconds) return "";
    return new Date(epochSeconds * 1000).toISOString().replace(".000Z", "Z");
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

  // ---- job lookup ----------------------------------------------------------------------

  function renderJob(job) {
    $("job-state").textContent = job.state;
    $("job-attempts").textContent = job.attempts;
    $("job-object-id").textContent = job.objectId || "";
    $("job-last-error").textContent = job.lastError || "";
    $("job-created").textContent = when(job.createdAt);
    $("job-updated").textContent = when(job.updatedAt);
    const items = (job.history || []).map((a) =>
      el("li", [when(a.at), "attempt " + a.attempt, a.outcome, a.httpStatus || "", a.detail || ""]
        .filter((part) => part !== "").join(" · ")));
    $("job-history").replaceChildren(...items);
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

  // ---- dead-letter list ----------------------------------------------------------------

  function filterQuery() {
    const params = new URLSearchParams();
    const reason = $("filter-reason").value;
    const status = $("filter-status").value.trim();
    const text = $("filter-text").value.trim();
    if (reason) params.set("reason", reason);
    if (status) params.set("httpStatus", status);
    if (text) params.set("text", text);
    for (const name of ["since", "until"]) {
      const value = $("filter-" + name).value;
      if (value) params.set(name, new Date(value).toISOString());
    }
    return params;
  }

  function entryRow(entry) {
    const row = document.createElement("tr");
    row.setAttribute("data-id", entry.id);
    const name = entry.payload && typeof entry.payload.eventName === "string"
      ? entry.payload.eventName : "(no eventName)";
    const open = el("button", "Open");
    open.type = "button";
    for (const cell of [when(entry.deadLetteredAt), entry.reason, entry.httpStatus || "", name, entry.jobId]) {
      row.appendChild(el("td", cell));
    }
    const last = el("td");
    last.appendChild(open);
    row.appendChild(last);
    row.addEventListener("click", () => openEntry(entry.id));
    return row;
  }

  async function loadEntries(more) {
    const params = more ? new URLSearchParams(page.query) : filterQuery();
    if (!more) page.query = params.toString();
    if (more && page.cursor) params.set("cursor", page.cursor);
    const answer = await api("GET", "/v1/dead-letters?" + params.toString());
    if (!answer.ok) {
      if (answer.status === 422) notice(answer.data.message);
      return;
    }
    notice("");
    const rows = answer.data.entries.map(entryRow);
    if (more) $("dlq-rows").append(...rows);
    else $("dlq-rows").replaceChildren(...rows);
    page.cursor = answer.data.nextCursor;
    $("dlq-more").hidden = !page.cursor;
    $("dlq-empty").hidden = $("dlq-rows").children.length > 0;
  }

  // ---- one entry -----------------------------------------------------------------------

  function renderEntry(entry) {
    page.entry = entry;
    const name = entry.payload && typeof entry.payload.eventName === "string"
      ? entry.payload.eventName : "(no eventName)";
    $("entry-title").textContent = name;
    $("entry-id").textContent = entry.id;
    $("entry-job-id").textContent = entry.jobId;
    $("entry-reason").textContent = entry.reason;
    $("entry-http-status").textContent = entry.httpStatus || "";
    $("entry-time").textContent = when(entry.deadLetteredAt);
    $("entry-error").textContent = (entry.error && entry.error.message) || "";
    const attempts = (entry.attempts || []).map((a) =>
      el("li", [when(a.at), "attempt " + a.attempt, a.outcome, a.httpStatus || "", a.detail || ""]
        .filter((part) => part !== "").join(" · ")));
    $("entry-attempts").replaceChildren(...attempts);
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
    }
  }

  // ---- start ---------------------------------------------------------------------------

  async function start() {
    const session = await api("GET", "/admin/session");
    if (!session.ok) return;
    page.csrf = session.data.csrfToken;
    $("key-name").textContent = session.data.keyName;
    $("dlq-filters").addEventListener("submit", (event) => { event.preventDefault(); loadEntries(false); });
    $("dlq-more").addEventListener("click", () => loadEntries(true));
    $("job-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const jobId = $("job-id").value.trim();
      if (jobId) trackJob(jobId);
    });
    $("replay").addEventListener("click", () => replay({}));
    $("dry-run").addEventListener("click", () => replay({ dryRun: true }));
    $("replay-edited").addEventListener("click", replayEdited);
    $("delete").addEventListener("click", deleteEntry);
    $("logout").addEventListener("click", async () => {
      await api("POST", "/admin/logout");
      window.location.assign("/admin/login");
    });
    loadEntries(false);
  }

  start();
})();
