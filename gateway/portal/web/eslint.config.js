// ESLint for the portal's own browser code (src/*.js), run by `cargo xtask ci`: the recommended rules,
// browser globals, the two globals xterm.js's script tags define, and `module` for desktop-protocol.js,
// which is also the Node module the golden-vector test loads.
"use strict";

const js = require("@eslint/js");
const globals = require("globals");

module.exports = [
  {
    files: ["src/**/*.js"],
    ...js.configs.recommended,
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "script",
      globals: {
        ...globals.browser,
        Terminal: "readonly",
        FitAddon: "readonly",
        module: "readonly",
      },
    },
  },
];
