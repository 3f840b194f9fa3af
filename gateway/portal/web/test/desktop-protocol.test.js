// The browser's desktop codec (src/desktop-protocol.js) against the golden vectors shared with the
// gateway (gateway/core/tests/golden/desktop.json): each input message's events encode to its bytes and
// each display update parses to its rectangles. Run by gateway/portal/tests/desktop_protocol_js.rs as
// `node desktop-protocol.test.js GOLDEN.json`; exits non-zero on the first mismatch.
"use strict";
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { input, parseUpdate } = require(path.join(__dirname, "..", "src", "desktop-protocol.js"));

const goldenPath = process.argv[2];
if (!goldenPath) {
  console.error("usage: node desktop-protocol.test.js GOLDEN.json");
  process.exit(2);
}
const golden = JSON.parse(fs.readFileSync(goldenPath, "utf8"));
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const ENCODINGS = { solid: 1, png: 2, jpeg: 3 };

// One golden event as desktop.js sends it.
const encodeEvent = (e) => {
  switch (e.type) {
    case "key": return input.key(e.scancode, e.down);
    case "unicode": return input.unicode(e.ch.codePointAt(0), e.down);
    case "mouse_move": return input.move(e.x, e.y);
    case "mouse_button": return input.button(e.button, e.down, e.x, e.y);
    case "wheel": return input.wheel(e.vertical, e.units);
    case "ctrl_alt_del": return input.ctrlAltDel();
    case "release_all": return input.releaseAll();
    default: throw new Error(`unknown event type ${e.type}`);
  }
};

let checked = 0;
assert.ok(golden.input.length > 0 && golden.update.length > 0, "no vectors");
for (const vector of golden.input) {
  const bytes = vector.events.flatMap(encodeEvent);
  assert.ok(bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 255), `${vector.name}: not bytes`);
  assert.equal(hex(bytes), vector.hex, `encoding ${vector.name}`);
  checked += 1;
}
for (const vector of golden.update) {
  const bytes = Buffer.from(vector.hex, "hex");
  // An ArrayBuffer of exactly the message, as a WebSocket delivers it.
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  const update = parseUpdate(buffer);
  assert.ok(update, `${vector.name}: not read as an update`);
  assert.deepEqual(
    {
      width: update.width,
      height: update.height,
      rects: update.rects.map((r) => ({ x: r.x, y: r.y, w: r.w, h: r.h, encoding: r.encoding, data: hex(r.data) })),
    },
    {
      width: vector.width,
      height: vector.height,
      rects: vector.rects.map((r) => ({ ...r, encoding: ENCODINGS[r.encoding] })),
    },
    `parsing ${vector.name}`,
  );
  checked += 1;
}
// Not a display update: the page ignores it.
assert.equal(parseUpdate(new Uint8Array([2, 0, 8, 0, 2, 0, 0]).buffer), null, "a non-update was read");
console.log(`desktop-protocol.js: ${checked} golden vectors match`);
