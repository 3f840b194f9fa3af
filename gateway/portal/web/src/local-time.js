// Sallyport pages with times: shows each <time datetime="…Z"> in the viewer's time zone (the exact UTC
// time stays on hover), shows the date pickers of a filter form in that zone too, and sends their
// times as Unix milliseconds (the server reads a picker's text as UTC, not knowing the viewer's zone).
(() => {
  "use strict";
  const two = (n) => String(n).padStart(2, "0");

  // A date picker's value for `ms` in the viewer's zone: 2026-12-02T02:02:03(.456).
  const pickerValue = (ms) => {
    const at = new Date(ms);
    const base = `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())}` +
      `T${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`;
    const millis = at.getMilliseconds();
    return millis === 0 ? base : `${base}.${String(millis).padStart(3, "0")}`;
  };

  for (const el of document.querySelectorAll("time[datetime]")) {
    const iso = el.getAttribute("datetime");
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) continue;
    el.title = iso;
    el.textContent = at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  for (const el of document.querySelectorAll("[data-time-zone]")) {
    el.textContent = `(${zone})`;
  }

  const pickers = document.querySelectorAll('input[type="datetime-local"][data-unix-ms]');
  for (const input of pickers) {
    const ms = Number.parseInt(input.dataset.unixMs, 10);
    if (!Number.isNaN(ms)) input.value = pickerValue(ms);
  }

  // On submit, each picker's local time goes as Unix ms under the picker's name.
  const forms = new Set(Array.from(pickers, (input) => input.form).filter(Boolean));
  for (const form of forms) {
    form.addEventListener("submit", () => {
      for (const input of form.querySelectorAll('input[type="datetime-local"][data-unix-ms]')) {
        if (!input.name) continue;
        const ms = input.value ? new Date(input.value).getTime() : Number.NaN;
        if (Number.isNaN(ms)) continue;
        const hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = input.name;
        hidden.value = String(ms);
        input.removeAttribute("name");
        form.appendChild(hidden);
      }
    });
  }
})();
