// Sallyport's passkey ceremonies: each is two JSON calls to the portal around the browser's WebAuthn
// prompt. A button marked data-passkey-sign-in signs in (without a password, or as the second factor)
// with the challenge from its data-options and sends the answer to its data-finish; the form
// #passkey-register adds a passkey the same way. The browser's own JSON forms of the options and the
// answers (parse…FromJSON, toJSON) are what webauthn-rs reads and writes, so no bytes are encoded here.
(() => {
  "use strict";

  const problem = (message) => {
    const el = document.getElementById("passkey-error");
    if (!el) return;
    el.textContent = message;
    el.hidden = false;
  };

  // POSTs `body` as JSON and returns the JSON answer; a refusal throws with the portal's words.
  const post = async (url, body) => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body ?? {}),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(answer.message || `the portal answered ${response.status}`);
    }
    return answer;
  };

  // The browser's refusals (the prompt closed, no passkey for this site) in a person's words.
  const words = (error) =>
    error.name === "NotAllowedError"
      ? "No passkey was used (the prompt was closed or timed out, or none is registered for this site)."
      : error.message;

  const busy = async (control, ceremony) => {
    control.disabled = true;
    try {
      await ceremony();
    } catch (error) {
      problem(words(error));
    } finally {
      control.disabled = false;
    }
  };

  for (const button of document.querySelectorAll("[data-passkey-sign-in]")) {
    button.addEventListener("click", () =>
      busy(button, async () => {
        const options = await post(button.dataset.options);
        const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey);
        const credential = await navigator.credentials.get({ publicKey });
        const done = await post(button.dataset.finish, credential.toJSON());
        window.location.assign(done.next);
      }),
    );
  }

  const register = document.getElementById("passkey-register");
  if (register) {
    register.addEventListener("submit", (event) => {
      event.preventDefault();
      const submit = register.querySelector("button[type=submit]");
      busy(submit, async () => {
        const name = register.elements.name.value;
        const options = await post(register.dataset.options, { name });
        const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey);
        const credential = await navigator.credentials.create({ publicKey });
        await post(register.dataset.finish, credential.toJSON());
        window.location.reload();
      });
    });
  }
})();
