// The console's only script: follows new events live on the events page. The server renders the
// rows (escaped); this appends them. Nothing is loaded from anywhere but this server.
"use strict";

(function () {
  const table = document.querySelector("table[data-follow-url]");
  if (!table) {
    return;
  }
  const body = table.tBodies[0];
  const status = document.getElementById("follow-status");
  let after = Number(table.dataset.after || "0");
  const say = (text) => {
    if (status) {
      status.textContent = text;
    }
  };
  const poll = async () => {
    const url = table.dataset.followUrl + (table.dataset.followUrl.includes("?") ? "&" : "?") + "after=" + after;
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    } catch (e) {
      say("server unreachable; retrying");
      return true;
    }
    if (!response.ok || response.redirected) {
      say("stopped (" + (response.redirected ? "logged out" : response.status) + "): reload the page");
      return false;
    }
    const html = await response.text();
    if (html.trim() !== "") {
      body.insertAdjacentHTML("beforeend", html);
      const last = body.rows[body.rows.length - 1];
      after = Number(last.dataset.sequence);
      last.scrollIntoView({ block: "nearest" });
    }
    say("following; last event #" + after + " at " + new Date().toLocaleTimeString());
    return true;
  };
  const loop = async () => {
    if (await poll()) {
      setTimeout(loop, 1000);
    }
  };
  loop();
})();
