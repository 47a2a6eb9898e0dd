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
        })();
        """#
}
