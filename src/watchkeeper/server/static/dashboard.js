// watchkeeper dashboard: refreshes the page's parts in place and acknowledges or silences
// incidents through the JSON API. No dependencies, nothing loaded from elsewhere; text from
// the server is set with textContent, HTML parts come escaped from the server.
"use strict";

(function () {
  const HEADERS = { "X-Watchkeeper": "1" };
  const body = document.body;
  const model = body.dataset.model || null;
  const every = Number(body.dataset.refresh || 0);
  const prefix = every > 0 ? "refreshing every " + every + " s · " : "";
  const last = new Map();
  let busy = false;

  function say(text, problem) {
    const el = document.getElementById("wk-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("problem", Boolean(problem));
  }

  function clock() {
    return new Date().toLocaleTimeString([], { hour12: false });
  }

  // Which <details> are open, so that a refresh does not fold them back.
  function openDetails(region) {
    const keys = new Set();
    region.querySelectorAll("details[open]").forEach((d, i) => {
      const owner = d.closest("[data-incident]");
      keys.add(owner ? "incident:" + owner.dataset.incident : "n:" + i);
    });
    return keys;
  }

  function reopen(region, keys) {
    region.querySelectorAll("details").forEach((d, i) => {
      const owner = d.closest("[data-incident]");
      if (keys.has(owner ? "incident:" + owner.dataset.incident : "n:" + i)) d.open = true;
    });
  }

  async function refresh() {
    const regions = document.querySelectorAll("[data-src]");
    for (const region of regions) {
      let answer;
      try {
        answer = await fetch(region.dataset.src, { headers: HEADERS, cache: "no-store" });
      } catch (err) {
        say("server unreachable at " + clock(), true);
        return;
      }
      if (answer.status === 401) { location.reload(); return; }
      if (!answer.ok) { say("refresh failed (" + answer.status + ") at " + clock(), true); return; }
      const text = await answer.text();
      if (last.get(region) !== text) {  // unchanged parts are left alone: no flicker
        const keys = openDetails(region);
        region.innerHTML = text;  // HTML built and escaped by the server
        reopen(region, keys);
        last.set(region, text);
      }
    }
    say(prefix + "updated " + clock(), false);
  }

  // Ask for the write token in the page's dialog; resolves true once the session has it.
  function askToken() {
    const dialog = document.getElementById("wk-token");
    const form = dialog.querySelector("form");
    const input = form.querySelector("input[name=token]");
    const error = document.getElementById("wk-token-error");
    error.textContent = "";
    input.value = "";
    return new Promise((resolve) => {
      async function submitted(event) {
        event.preventDefault();
        if (event.submitter && event.submitter.value === "cancel") {
          finish(false);
          return;
        }
        const answer = await fetch("/login", {
          method: "POST",
          headers: { ...HEADERS, "Content-Type": "application/json" },
          body: JSON.stringify({ token: input.value }),
        });
        input.value = "";
        if (!answer.ok) { error.textContent = "That token is not valid for this server."; return; }
        const doc = await answer.json();
        if (doc.access !== "write") { error.textContent = "That is the read token: the write token is needed."; return; }
        finish(true);
      }
      function finish(ok) {
        form.removeEventListener("submit", submitted);
        dialog.removeEventListener("cancel", cancelled);
        dialog.close();
        resolve(ok);
      }
      function cancelled() { finish(false); }
      form.addEventListener("submit", submitted);
      dialog.addEventListener("cancel", cancelled);
      dialog.showModal();
      input.focus();
    });
  }

  // POST to the API with the session cookie; on 401/403 ask for the write token once.
  async function post(url, payload) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const options = { method: "POST", headers: { ...HEADERS } };
      if (payload !== undefined) {
        options.headers["Content-Type"] = "application/json";
        options.body = JSON.stringify(payload);
      }
      const answer = await fetch(url, options);
      if (answer.ok) return answer.json();
      if ((answer.status === 401 || answer.status === 403) && attempt === 0) {
        if (await askToken()) continue;
        throw new Error("cancelled");
      }
      let detail = String(answer.status);
      try { detail = (await answer.json()).detail || detail; } catch (err) { /* not JSON */ }
      throw new Error(detail);
    }
    throw new Error("not allowed");
  }

  async function act(button) {
    const id = button.dataset.id;
    const base = "/v1/models/" + encodeURIComponent(model);
    if (button.dataset.action === "ack") {
      await post(base + "/incidents/" + encodeURIComponent(id) + "/ack?by=dashboard");
      return "incident " + id + " acknowledged";
    }
    const silences = JSON.parse(button.dataset.silences || "[]");
    for (const s of silences) {
      await post(base + "/silences", {
        matchers: s.matchers, hours: 2, created_by: "dashboard",
        comment: "silenced from the dashboard (incident " + id + ")",
      });
    }
    return "incident " + id + " silenced for 2 hours";
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !model || busy) return;
    busy = true;
    button.disabled = true;
    try {
      say(await act(button), false);
      await refresh();
    } catch (err) {
      button.disabled = false;
      say(err.message === "cancelled" ? "cancelled" : "failed: " + err.message, true);
    } finally {
      busy = false;
    }
  });

  if (document.querySelector("[data-src]")) say(prefix + "loaded " + clock(), false);
  if (every > 0) {
    setInterval(() => {
      if (!busy && !document.hidden) refresh();
    }, every * 1000);
  }
})();
