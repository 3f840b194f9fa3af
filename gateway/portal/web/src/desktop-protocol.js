// Sallyport desktop protocol, the browser's side (sallyport-core's display module is the gateway's):
// input events the page sends, and the reader of the display updates it receives. desktop.js uses it in
// the page (the page loads this file first); under Node.js it is a module, so the golden-vector test
// (web/test/desktop-protocol.test.js, run by `cargo test -p sallyport-portal`) checks these very functions
// against gateway/core/tests/golden/desktop.json.
//
// Input, each event a u8 tag then big-endian fields: 1 key (down, u16 scancode, 0xE0xx extended),
// 2 unicode (down, u32 code point), 3 move (u16 x, y), 4 button (down, u8 button, u16 x, y),
// 5 wheel (vertical, i16 units), 6 Ctrl+Alt+Del, 7 release all.
// Updates: u8 1 | u16 width | u16 height | u16 count, then per rectangle u16 x, y, w, h | u8 encoding
// (1 solid RGBA, 2 PNG, 3 JPEG for photo-like rectangles) | u32 length | bytes.
(() => {
  "use strict";

  // Input events as byte arrays, one event each.
  const input = {
    key: (scancode, down) => [1, down ? 1 : 0, scancode >> 8, scancode & 0xff],
    unicode: (cp, down) => [2, down ? 1 : 0, (cp >>> 24) & 0xff, (cp >>> 16) & 0xff, (cp >>> 8) & 0xff, cp & 0xff],
    move: (x, y) => [3, x >> 8, x & 0xff, y >> 8, y & 0xff],
    button: (b, down, x, y) => [4, down ? 1 : 0, b, x >> 8, x & 0xff, y >> 8, y & 0xff],
    wheel: (vertical, units) => [5, vertical ? 1 : 0, (units >> 8) & 0xff, units & 0xff],
    ctrlAltDel: () => [6],
    releaseAll: () => [7],
  };

  // A display update from an ArrayBuffer: { width, height, rects: [{ x, y, w, h, encoding, data }] } with
  // `data` a view into the buffer; null when the message is not a display update.
  const parseUpdate = (buffer) => {
    const view = new DataView(buffer);
    if (view.getUint8(0) !== 1) return null;
    const width = view.getUint16(1), height = view.getUint16(3), count = view.getUint16(5);
    const rects = [];
    let at = 7;
    for (let i = 0; i < count; i++) {
      const x = view.getUint16(at), y = view.getUint16(at + 2), w = view.getUint16(at + 4), h = view.getUint16(at + 6);
      const encoding = view.getUint8(at + 8), len = view.getUint32(at + 9);
      const data = new Uint8Array(buffer, at + 13, len);
      at += 13 + len;
      rects.push({ x, y, w, h, encoding, data });
    }
    return { width, height, rects };
  };

  const protocol = { input, parseUpdate };
  if (typeof module !== "undefined" && module.exports) {
    module.exports = protocol;
  } else {
    globalThis.sallyportDesktopProtocol = protocol;
  }
})();
