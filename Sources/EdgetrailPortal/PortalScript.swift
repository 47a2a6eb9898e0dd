/// The portal's one script (served at /static/portal.js; no build step). Pages work without
/// it; with it, the editor checks as you type and progress and trace logs arrive live. It only
/// ever sets `textContent`, so nothing it shows can become markup.
enum PortalScript {
    static let javascript = #"""
        "use strict";
        (function () {
          const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

          function item(text, className) {
            const li = document.createElement("li");
            li.textContent = text;
            if (className) li.className = className;
            return li;
          }

          // The CNF editor: check the spec and files as they are typed, with the messages and
          // positions of `edgetrail cnf validate`.
          const editor = document.getElementById("editor");
          if (editor) {
            const problems = document.getElementById("problems");
            const state = document.getElementById("check-state");
            let timer = null;
            let sent = 0;
            const check = async function () {
              const files = {};
              editor.querySelectorAll("textarea[data-file]").forEach(function (area) { files[area.dataset.file] = area.value; });
              const body = { name: editor.dataset.cnf, spec: document.getElementById("spec").value, files: files };
              const number = ++sent;
              const response = await fetch("/api/v1/drafts/check", {
                method: "POST", credentials: "same-origin",
                headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
                body: JSON.stringify(body),
              });
              if (number !== sent || !response.ok) return;
              const report = await response.json();
              problems.replaceChildren();
              report.problems.forEach(function (p) {
                const text = p.file + ":" + p.line + ":" + p.column + ": " + (p.warning ? "warning: " : "") + p.message;
                problems.appendChild(item(text, p.warning ? "warning" : "error"));
              });
              state.textContent = report.ok ? "Checks: no errors." : "Checks: not deployable until fixed.";
              state.className = report.ok ? "flash" : "error";
            };
            editor.addEventListener("input", function () {
              clearTimeout(timer);
              timer = setTimeout(check, 300);
            });
          }

          // The Filters page: lint the rules as they are typed.
          const rules = document.getElementById("rules");
          if (rules) {
            const problems = document.getElementById("problems");
            const state = document.getElementById("check-state");
            let timer = null;
            let sent = 0;
            const lint = async function () {
              const number = ++sent;
              const response = await fetch("/api/v1/filters/lint", {
                method: "POST", credentials: "same-origin",
                headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
                body: JSON.stringify({ text: rules.value }),
              });
              if (number !== sent || !response.ok) return;
              const report = await response.json();
              problems.replaceChildren();
              report.problems.forEach(function (p) {
                problems.appendChild(item(p.file + ":" + p.line + ":" + p.column + ": " + p.message, "error"));
              });
              state.textContent = report.ok ? "Lint: ok (" + report.rules + " rules)." : "Lint: the file has errors; it cannot be activated.";
              state.className = report.ok ? "flash" : "error";
            };
            rules.addEventListener("input", function () {
              clearTimeout(timer);
              timer = setTimeout(lint, 300);
            });
          }

          // A deploy's progress, live.
          const progress = document.getElementById("progress");
          if (progress && progress.dataset.done === "no") {
            const outcome = document.getElementById("outcome");
            const source = new EventSource(progress.dataset.events);
            let first = true;
            source.addEventListener("step", function (event) {
              if (first) { progress.replaceChildren(); first = false; }
              progress.appendChild(item(event.data));
            });
            source.addEventListener("outcome", function (event) {
              source.close();
              const result = JSON.parse(event.data);
              if (result.ok) {
                outcome.textContent = "Version " + result.version + " is running.";
                outcome.className = "flash";
              } else {
                outcome.textContent = (result.rolledBack ? "Rolled back: version " + result.version + " keeps running. " : "") + (result.error || "failed");
                outcome.className = "error";
              }
              progress.dataset.done = "yes";
            });
          }

          // The live trace log: sessions as central stores them, a row each, newest on top.
          const log = document.getElementById("live-log");
          if (log) {
            const body = log.querySelector("tbody");
            const start = document.getElementById("start-trace");
            const stop = document.getElementById("stop-trace");
            const clear = document.getElementById("clear-trace");
            const state = document.getElementById("live-state");
            const counts = document.getElementById("live-counts");
            const keep = 2000;
            let source = null;
            let shown = 0;
            let lost = 0;
            const cell = function (row, text) {
              const td = document.createElement("td");
              td.textContent = text;
              row.appendChild(td);
              return td;
            };
            const time = function (ns) {
              if (!ns) return "-";
              return new Date(Number(BigInt(ns) / 1000000n)).toISOString().replace("T", " ").replace("Z", "");
            };
            const count = function () {
              counts.textContent = shown + " sessions shown" + (lost ? ", " + lost + " not shown (the log fell behind)" : "");
            };
            const add = function (batch) {
              lost += batch.lost;
              const fragment = document.createDocumentFragment();
              for (let i = batch.sessions.length - 1; i >= 0; i--) {
                const s = batch.sessions[i];
                const row = document.createElement("tr");
                row.className = s.error ? "error" : "";
                cell(row, time(s.firstNs));
                const link = document.createElement("a");
                link.href = "/tracing/sessions/" + s.cookie;
                link.textContent = s.cookie;
                link.className = "cookie";
                cell(row, "").appendChild(link);
                cell(row, s.cnf);
                cell(row, s.node);
                cell(row, s.services.join(", "));
                cell(row, String(s.spans));
                cell(row, String(s.flows));
                cell(row, String(s.snapshots));
                cell(row, s.error ? "error" : "");
                fragment.appendChild(row);
              }
              body.insertBefore(fragment, body.firstChild);
              shown += batch.sessions.length;
              while (body.rows.length > keep) body.deleteRow(body.rows.length - 1);
              count();
            };
            const stopTrace = function (why) {
              if (source) source.close();
              source = null;
              start.disabled = false;
              stop.disabled = true;
              state.textContent = why || "stopped";
            };
            start.addEventListener("click", function () {
              if (source) return;
              const cnf = document.getElementById("live-cnf").value.trim();
              source = new EventSource("/api/v1/live" + (cnf ? "?cnf=" + encodeURIComponent(cnf) : ""));
              start.disabled = true;
              stop.disabled = false;
              state.textContent = "following " + (cnf || "all CNFs");
              source.addEventListener("sessions", function (event) { add(JSON.parse(event.data)); });
              source.addEventListener("problem", function (event) { stopTrace(event.data); });
              source.onerror = function () { if (source && source.readyState === EventSource.CLOSED) stopTrace("central closed the log"); };
            });
            stop.addEventListener("click", function () { stopTrace(); });
            clear.addEventListener("click", function () { body.replaceChildren(); shown = 0; lost = 0; count(); });
          }
        })();
        """#
}
