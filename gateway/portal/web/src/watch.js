// Sallyport watch page: a read-only terminal showing a live session's output.
(() => {
  "use strict";
  const statusEl = document.getElementById("status");
  const term = new Terminal({ disableStdin: true, scrollback: 5000, fontSize: 14 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  window.sallyportTerminal = term;
  const socket = new WebSocket(`wss://${location.host}${document.body.dataset.wsPath}`);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("open", () => {
    statusEl.dataset.state = "watching";
    statusEl.textContent = "Watching (read-only).";
  });
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") term.write(new Uint8Array(event.data));
  });
  socket.addEventListener("close", () => {
    statusEl.dataset.state = "ended";
    statusEl.textContent = "The session ended.";
  });
})();
