// Sallyport desktop page: the connect form, then the remote desktop on a canvas over the desktop WebSocket.
//
// Protocol (sallyport-core's display module): text messages are JSON control (connect, resize and
// clipboard up; connected, error, clipboard and clipboard_refused down); binary messages up are input
// events, binary messages down are display updates, both encoded and read by desktop-protocol.js (loaded
// before this file). The password goes to the gateway once, in the connect.
(() => {
  "use strict";
  const form = document.getElementById("connect-form");
  const statusEl = document.getElementById("status");
  const area = document.getElementById("desktop-area");
  const canvas = document.getElementById("desktop");
  const ctx = canvas.getContext("2d");
  const clipPanel = document.getElementById("clipboard-panel");
  const clipText = document.getElementById("clipboard-text");
  const clipStatus = document.getElementById("clipboard-status");
  // The text both sides last agreed on, so focus changes do not resend it.
  let lastSent = null;

  const setStatus = (state, text) => {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  };

  // KeyboardEvent.code (the physical key) to PC/AT set-1 scancodes; 0xE0xx are extended keys. The
  // target's keyboard layout turns them into characters, so AltGr, dead keys and non-US layouts work as on
  // a local keyboard. Keys missing here fall back to Unicode.
  const SCANCODES = {
    Escape: 0x01, Digit1: 0x02, Digit2: 0x03, Digit3: 0x04, Digit4: 0x05, Digit5: 0x06, Digit6: 0x07,
    Digit7: 0x08, Digit8: 0x09, Digit9: 0x0a, Digit0: 0x0b, Minus: 0x0c, Equal: 0x0d, Backspace: 0x0e,
    Tab: 0x0f, KeyQ: 0x10, KeyW: 0x11, KeyE: 0x12, KeyR: 0x13, KeyT: 0x14, KeyY: 0x15, KeyU: 0x16,
    KeyI: 0x17, KeyO: 0x18, KeyP: 0x19, BracketLeft: 0x1a, BracketRight: 0x1b, Enter: 0x1c,
    ControlLeft: 0x1d, KeyA: 0x1e, KeyS: 0x1f, KeyD: 0x20, KeyF: 0x21, KeyG: 0x22, KeyH: 0x23, KeyJ: 0x24,
    KeyK: 0x25, KeyL: 0x26, Semicolon: 0x27, Quote: 0x28, Backquote: 0x29, ShiftLeft: 0x2a,
    Backslash: 0x2b, KeyZ: 0x2c, KeyX: 0x2d, KeyC: 0x2e, KeyV: 0x2f, KeyB: 0x30, KeyN: 0x31, KeyM: 0x32,
    Comma: 0x33, Period: 0x34, Slash: 0x35, ShiftRight: 0x36, NumpadMultiply: 0x37, AltLeft: 0x38,
    Space: 0x39, CapsLock: 0x3a, F1: 0x3b, F2: 0x3c, F3: 0x3d, F4: 0x3e, F5: 0x3f, F6: 0x40, F7: 0x41,
    F8: 0x42, F9: 0x43, F10: 0x44, NumLock: 0x45, ScrollLock: 0x46, Numpad7: 0x47, Numpad8: 0x48,
    Numpad9: 0x49, NumpadSubtract: 0x4a, Numpad4: 0x4b, Numpad5: 0x4c, Numpad6: 0x4d, NumpadAdd: 0x4e,
    Numpad1: 0x4f, Numpad2: 0x50, Numpad3: 0x51, Numpad0: 0x52, NumpadDecimal: 0x53, IntlBackslash: 0x56,
    F11: 0x57, F12: 0x58, IntlRo: 0x73, IntlYen: 0x7d,
    NumpadEnter: 0xe01c, ControlRight: 0xe01d, NumpadDivide: 0xe035, PrintScreen: 0xe037,
    AltRight: 0xe038, Home: 0xe047, ArrowUp: 0xe048, PageUp: 0xe049, ArrowLeft: 0xe04b,
    ArrowRight: 0xe04d, End: 0xe04f, ArrowDown: 0xe050, PageDown: 0xe051, Insert: 0xe052,
    Delete: 0xe053, MetaLeft: 0xe05b, MetaRight: 0xe05c, ContextMenu: 0xe05d,
  };

  const { input, parseUpdate } = globalThis.sallyportDesktopProtocol;

  const areaSize = () => {
    const r = area.getBoundingClientRect();
    return { width: Math.max(200, Math.floor(r.width)), height: Math.max(200, Math.floor(r.height)) };
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const connect = { type: "connect", username: form.username.value, password: form.password.value };
    if (form.domain.value) connect.domain = form.domain.value;
    form.password.value = "";
    form.hidden = true;
    document.getElementById("desktop-page").hidden = false;
    start(connect);
  });

  function start(connect) {
    const socket = new WebSocket(`wss://${location.host}${document.body.dataset.wsPath}`);
    socket.binaryType = "arraybuffer";
    let ended = false;
    let frames = 0;
    // Display updates are painted strictly in order; PNG decoding is asynchronous.
    let painting = Promise.resolve();
    const send = (bytes) => socket.readyState === WebSocket.OPEN && socket.send(new Uint8Array(bytes));
    window.sallyportDesktop = { canvas, frames: () => frames, socket };
    setStatus("connecting", "Connecting…");

    socket.addEventListener("open", () => {
      Object.assign(connect, areaSize());
      socket.send(JSON.stringify(connect));
    });

    const paint = async (buffer) => {
      const update = parseUpdate(buffer);
      if (!update) return;
      const { width, height } = update;
      if (canvas.width !== width || canvas.height !== height) {
        canvas.width = width;
        canvas.height = height;
      }
      const pending = [];
      for (const { x, y, w, h, encoding, data } of update.rects) {
        if (encoding === 1) {
          pending.push(Promise.resolve(() => {
            ctx.fillStyle = `rgb(${data[0]},${data[1]},${data[2]})`;
            ctx.fillRect(x, y, w, h);
          }));
        } else if (encoding === 2 || encoding === 3) {
          const type = encoding === 2 ? "image/png" : "image/jpeg";
          pending.push(createImageBitmap(new Blob([data], { type })).then((bitmap) => () => {
            ctx.drawImage(bitmap, x, y);
            bitmap.close();
          }));
        }
      }
      for (const draw of await Promise.all(pending)) draw();
      frames += 1;
      canvas.dataset.width = String(width);
      canvas.dataset.height = String(height);
      canvas.dataset.frames = String(frames);
    };

    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") {
        const buffer = event.data;
        painting = painting.then(() => paint(buffer)).catch((error) => console.error("paint", error));
        return;
      }
      const control = JSON.parse(event.data);
      if (control.type === "connected") {
        const pinned = control.host_key_first_seen ? " (key seen for the first time and pinned)" : "";
        setStatus("connected", `Connected. Recorded as session ${control.session_id}. Key ${control.host_key_fingerprint}${pinned}`);
        canvas.focus();
      } else if (control.type === "clipboard") {
        // Text copied on the remote desktop: into the panel, and into the local clipboard when the
        // browser allows it (it needs focus and, in some browsers, a permission).
        clipText.value = control.text;
        lastSent = control.text;
        clipStatus.textContent = `Copied on the remote desktop (${control.text.length} characters).`;
        clipPanel.dataset.received = String(Number(clipPanel.dataset.received || 0) + 1);
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(control.text).catch(() => {});
        }
      } else if (control.type === "clipboard_refused") {
        clipStatus.textContent = control.message;
        clipPanel.dataset.refused = control.message;
      } else if (control.type === "error") {
        ended = true;
        setStatus("error", `Error: ${control.message}`);
        statusEl.dataset.kind = control.kind;
      }
    });
    socket.addEventListener("close", () => {
      if (!ended) setStatus("closed", "The connection closed.");
    });

    // Pointer: canvas pixels are desktop pixels; CSS scales the picture to fit the area, keeping its
    // aspect (object-fit: contain), so the picture is a centred box inside the element.
    const picture = () => {
      const r = canvas.getBoundingClientRect();
      const scale = Math.min(r.width / canvas.width, r.height / canvas.height);
      const w = canvas.width * scale, h = canvas.height * scale;
      return { left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, scale };
    };
    const at = (event) => {
      const p = picture();
      const x = Math.floor((event.clientX - p.left) / p.scale);
      const y = Math.floor((event.clientY - p.top) / p.scale);
      return [Math.min(Math.max(x, 0), canvas.width - 1), Math.min(Math.max(y, 0), canvas.height - 1)];
    };
    // Where a desktop pixel is on the page (for tests and tools).
    window.sallyportDesktop.toViewport = (x, y) => {
      const p = picture();
      return [p.left + (x + 0.5) * p.scale, p.top + (y + 0.5) * p.scale];
    };
    canvas.addEventListener("mousemove", (event) => send(input.move(...at(event))));
    canvas.addEventListener("mousedown", (event) => {
      event.preventDefault();
      canvas.focus();
      send(input.button(event.button, true, ...at(event)));
    });
    canvas.addEventListener("mouseup", (event) => {
      event.preventDefault();
      send(input.button(event.button, false, ...at(event)));
    });
    canvas.addEventListener("contextmenu", (event) => event.preventDefault());
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const notches = (d) => Math.max(-8, Math.min(8, Math.round(-d / 100) || -Math.sign(d)));
      if (event.deltaY) send(input.wheel(true, notches(event.deltaY) * 120));
      if (event.deltaX) send(input.wheel(false, -notches(event.deltaX) * 120));
    }, { passive: false });

    // Keyboard: scancodes by physical key, Unicode for keys the table does not know.
    const key = (down) => (event) => {
      event.preventDefault();
      const scancode = SCANCODES[event.code];
      if (scancode !== undefined) {
        send(input.key(scancode, down));
      } else if ([...event.key].length === 1) {
        send(input.unicode(event.key.codePointAt(0), down));
      }
    };
    canvas.addEventListener("keydown", key(true));
    canvas.addEventListener("keyup", key(false));
    canvas.addEventListener("blur", () => send(input.releaseAll()));

    // Clipboard: the panel sends its text to the remote clipboard; the local clipboard goes along
    // automatically whenever the desktop gets focus, where the browser lets the page read it.
    const sendClipboard = (text) => {
      if (socket.readyState !== WebSocket.OPEN || text === lastSent) return;
      lastSent = text;
      socket.send(JSON.stringify({ type: "clipboard", text }));
      clipStatus.textContent = `Sent to the remote clipboard (${text.length} characters).`;
    };
    document.getElementById("clipboard-toggle").addEventListener("click", () => {
      clipPanel.hidden = !clipPanel.hidden;
      if (!clipPanel.hidden) clipText.focus();
    });
    document.getElementById("clipboard-send").addEventListener("click", () => {
      sendClipboard(clipText.value);
      canvas.focus();
    });
    canvas.addEventListener("focus", () => {
      if (!navigator.clipboard || !navigator.clipboard.readText) return;
      navigator.clipboard.readText().then((text) => {
        if (text) {
          clipText.value = text;
          sendClipboard(text);
        }
      }).catch(() => {});
    });

    document.getElementById("ctrl-alt-del").addEventListener("click", () => {
      send(input.ctrlAltDel());
      canvas.focus();
    });
    document.getElementById("fullscreen").addEventListener("click", () => {
      (document.fullscreenElement ? document.exitFullscreen() : area.requestFullscreen()).catch(() => {});
      canvas.focus();
    });

    // The remote desktop follows the browser's area (display control), a moment after it stops changing.
    let resizeTimer = null;
    new ResizeObserver(() => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "resize", ...areaSize() }));
      }, 300);
    }).observe(area);
  }
})();
