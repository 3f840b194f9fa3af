// Sallyport terminal page: the connect form, then xterm.js over the session WebSocket.
//
// Protocol (sallyport-core's frames module): binary messages are terminal bytes, text messages are JSON
// control messages. The credential typed in the form goes to the gateway once, in the first message,
// and is cleared from the form straight away.
(() => {
  "use strict";
  const form = document.getElementById("connect-form");
  const statusEl = document.getElementById("status");
  const termEl = document.getElementById("terminal");
  const authKind = () => form.querySelector("input[name=auth]:checked").value;

  const setStatus = (state, text) => {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  };

  const toggleAuthFields = () => {
    const key = authKind() === "key";
    document.getElementById("password-fields").hidden = key;
    document.getElementById("key-fields").hidden = !key;
  };
  form.querySelectorAll("input[name=auth]").forEach((el) => el.addEventListener("change", toggleAuthFields));
  toggleAuthFields();

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const connect = { type: "connect", username: form.username.value };
    if (authKind() === "key") {
      connect.private_key = form.private_key.value;
      if (form.passphrase.value) connect.passphrase = form.passphrase.value;
    } else {
      connect.password = form.password.value;
    }
    form.password.value = "";
    form.private_key.value = "";
    form.passphrase.value = "";
    form.hidden = true;
    termEl.hidden = false;
    start(connect);
  });

  function start(connect) {
    const term = new Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14 });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(termEl);
    fit.fit();
    term.focus();
    window.sallyportTerminal = term;

    const encoder = new TextEncoder();
    const socket = new WebSocket(`wss://${location.host}${document.body.dataset.wsPath}`);
    socket.binaryType = "arraybuffer";
    let ended = false;
    setStatus("connecting", "Connecting…");

    socket.addEventListener("open", () => {
      connect.cols = term.cols;
      connect.rows = term.rows;
      socket.send(JSON.stringify(connect));
    });
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") {
        term.write(new Uint8Array(event.data));
        return;
      }
      const control = JSON.parse(event.data);
      if (control.type === "connected") {
        const pinned = control.host_key_first_seen ? " (host key seen for the first time and pinned)" : "";
        setStatus("connected", `Connected. Recorded as session ${control.session_id}. Host key ${control.host_key_fingerprint}${pinned}`);
      } else if (control.type === "exit") {
        ended = true;
        setStatus("exited", `The remote shell exited with status ${control.status}.`);
      } else if (control.type === "error") {
        ended = true;
        setStatus("error", `Error: ${control.message}`);
        statusEl.dataset.kind = control.kind;
        term.write(`\r\n\x1b[31m${control.message}\x1b[0m\r\n`);
      }
    });
    socket.addEventListener("close", () => {
      if (!ended) setStatus("closed", "The connection closed.");
    });

    term.onData((data) => socket.readyState === WebSocket.OPEN && socket.send(encoder.encode(data)));
    term.onBinary((data) => socket.readyState === WebSocket.OPEN && socket.send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    term.onResize(({ cols, rows }) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "resize", cols, rows }));
    });
    new ResizeObserver(() => fit.fit()).observe(termEl);
  }
})();
