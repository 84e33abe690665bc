// seiwallet's page behaviour: copy buttons, confirmations, passkey buttons, language switch,
// and the service worker. No framework and no build step; every page works without it except
// the passkey ceremonies, which need JavaScript by nature.

import { approveWithPasskey, postJSON, registerPasskey } from "./webauthn.js";

document.documentElement.classList.add("js");

const messages = (() => {
  try {
    return JSON.parse(document.getElementById("ui-messages")?.textContent ?? "{}");
  } catch {
    return {};
  }
})();

const message = (key) => messages[key] ?? messages.generic ?? "Something went wrong.";

// ---------- Status announcements (a toast that is also an aria-live region) ----------

let toastTimer;
function announce(text) {
  const toast = document.getElementById("live-status");
  if (!toast) return;
  toast.textContent = text;
  toast.classList.add("is-visible");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => toast.classList.remove("is-visible"), 2400);
}

// ---------- Copy to clipboard ----------

async function writeClipboard(text) {
  if (navigator.clipboard?.writeText && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Fallback for contexts without the async clipboard (plain http on a LAN address).
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy failed");
}

function wireCopy(button) {
  const label = button.querySelector("[data-copy-label]");
  const idle = label?.textContent || message("copy");
  let resetTimer;
  button.addEventListener("click", async () => {
    try {
      await writeClipboard(button.dataset.copy ?? "");
    } catch {
      announce(message("copy_failed"));
      return;
    }
    button.classList.add("is-copied");
    if (label) label.textContent = message("copied");
    announce(message("copied_address"));
    clearTimeout(resetTimer);
    resetTimer = setTimeout(() => {
      button.classList.remove("is-copied");
      if (label) label.textContent = idle;
    }, 2000);
  });
}

// ---------- Confirmation dialog ----------

/** Ask before a consequential action; resolves true to go ahead. */
export function confirmDialog(text, confirmLabel) {
  if (typeof HTMLDialogElement !== "function") return Promise.resolve(window.confirm(text));
  return new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.className = "dialog";
    dialog.setAttribute("aria-labelledby", "dialog-message");
    const form = document.createElement("form");
    form.method = "dialog";
    const paragraph = document.createElement("p");
    paragraph.className = "dialog-message";
    paragraph.id = "dialog-message";
    paragraph.textContent = text;
    const actions = document.createElement("div");
    actions.className = "dialog-actions";
    const cancel = document.createElement("button");
    cancel.className = "btn btn-secondary";
    cancel.value = "cancel";
    cancel.textContent = message("cancel");
    const confirm = document.createElement("button");
    confirm.className = "btn btn-danger";
    confirm.value = "confirm";
    confirm.textContent = confirmLabel || message("confirm");
    actions.append(cancel, confirm);
    form.append(paragraph, actions);
    dialog.append(form);
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    });
    dialog.showModal();
    cancel.focus(); // the safe choice has focus
  });
}

// ---------- Passkey buttons ----------

/** The [data-error] nearest to an element: its own scope first, then outwards. */
function errorAreaFor(element) {
  for (let node = element; node; node = node.parentElement) {
    const area = node.querySelector?.("[data-error]");
    if (area) return area;
  }
  return null;
}

function hideStatus() {
  clearTimeout(toastTimer);
  document.getElementById("live-status")?.classList.remove("is-visible");
}

function showError(element, text) {
  hideStatus();
  const area = errorAreaFor(element);
  if (!area) {
    announce(text);
    return;
  }
  area.textContent = text;
  area.scrollIntoView({ block: "center", behavior: "smooth" });
}

function clearError(element) {
  const area = errorAreaFor(element);
  if (area) area.textContent = "";
}

function describeFailure(error) {
  if (error?.reason === "server" && error.serverMessage) return error.serverMessage;
  if (error?.reason && error.reason !== "server") return message(error.reason);
  return message("generic");
}

/** A same-origin URL to go to next, or null (never follow a server redirect off-site). */
function safeDestination(candidate) {
  if (!candidate) return null;
  try {
    const url = new URL(candidate, window.location.href);
    return url.origin === window.location.origin ? url.href : null;
  } catch {
    return null;
  }
}

function finish(button, result) {
  const next = safeDestination(result?.redirect) ?? safeDestination(button.dataset.next);
  if (next) window.location.assign(next);
  else window.location.reload();
}

/** A name for the passkey the person will recognise in Devices, the same in every language. */
function deviceLabel() {
  const ua = navigator.userAgent;
  const platform = navigator.userAgentData?.platform ?? "";
  if (/iPhone/.test(ua)) return "iPhone";
  if (/iPad/.test(ua)) return "iPad";
  if (/Android/.test(ua) || platform === "Android") return "Android";
  if (/Mac OS X/.test(ua) || platform === "macOS") return "Mac";
  if (/Windows/.test(ua) || platform === "Windows") return "Windows";
  if (/CrOS/.test(ua) || platform === "Chrome OS") return "Chromebook";
  if (/Linux/.test(ua) || platform === "Linux") return "Linux";
  return "Passkey";
}

async function runCeremony(button, ceremony) {
  if (button.getAttribute("aria-busy") === "true") return;
  const confirmText = button.dataset.confirm;
  if (confirmText && !(await confirmDialog(confirmText, button.dataset.confirmLabel))) return;
  clearError(button);
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  if ("passkeyRegister" in button.dataset || "passkeyApprove" in button.dataset) {
    announce(message("working"));
  }
  try {
    finish(button, await ceremony());
  } catch (error) {
    showError(button, describeFailure(error));
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function wireRegister(button) {
  button.addEventListener("click", () =>
    runCeremony(button, () =>
      registerPasskey({
        optionsUrl: button.dataset.optionsUrl,
        finishUrl: button.dataset.finishUrl,
        label: button.dataset.label || deviceLabel(),
      }),
    ),
  );
}

const jsonData = (value) => (value ? JSON.parse(value) : {});

function wireApprove(button) {
  button.addEventListener("click", () =>
    runCeremony(button, () =>
      approveWithPasskey({
        optionsUrl: button.dataset.optionsUrl,
        optionsBody: jsonData(button.dataset.optionsBody),
        finishUrl: button.dataset.finishUrl,
        finishBody: jsonData(button.dataset.finishBody),
      }),
    ),
  );
}

/** A button that POSTs JSON (with the CSRF header) and follows the answer's redirect. */
function wirePostJSON(button) {
  button.addEventListener("click", () =>
    runCeremony(button, () => postJSON(button.dataset.postJson, jsonData(button.dataset.body))),
  );
}

// ---------- Forms ----------

function wireConfirmForm(form) {
  form.addEventListener("submit", async (event) => {
    if (form.dataset.confirmed === "true") return;
    event.preventDefault();
    if (await confirmDialog(form.dataset.confirm, form.dataset.confirmLabel)) {
      form.dataset.confirmed = "true";
      form.requestSubmit(event.submitter ?? undefined);
    }
  });
}

function wireSubmitOnce(form) {
  // A second tap while the first submission is on its way would post twice.
  form.addEventListener("submit", (event) => {
    if (event.defaultPrevented) return;
    for (const button of form.querySelectorAll("button[type=submit], button:not([type])")) {
      if ("busyOnSubmit" in button.dataset) button.setAttribute("aria-busy", "true");
      setTimeout(() => {
        button.disabled = true;
      });
    }
  });
}

/** A token choice (radios named "token") shows its symbol beside the form's amount. */
function wireTokenChoice(radio) {
  radio.addEventListener("change", () => {
    const symbol = radio.form?.querySelector(".amount-input-symbol");
    if (symbol && radio.checked) symbol.textContent = radio.value;
    if (radio.closest("[data-autosubmit-form]")) radio.form?.requestSubmit();
  });
}

// ---------- Sharing (the Web Share API, where the phone has it) ----------

function wireShare(button) {
  if (typeof navigator.share !== "function") return; // stays hidden: the copy button remains
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.share({
        title: button.dataset.shareTitle || document.title,
        text: button.dataset.shareText || undefined,
        url: button.dataset.shareUrl,
      });
    } catch {
      // Closing the share sheet is not an error worth a message.
    }
  });
}

// ---------- Start ----------

/** Wire the behaviours of everything under `root` (the page, or content swapped into it). */
function wireWithin(root) {
  root.querySelectorAll("[data-copy]").forEach(wireCopy);
  root.querySelectorAll("[data-passkey-register]").forEach(wireRegister);
  root.querySelectorAll("[data-passkey-approve]").forEach(wireApprove);
  root.querySelectorAll("[data-post-json]").forEach(wirePostJSON);
  root.querySelectorAll("form[data-confirm]").forEach(wireConfirmForm);
  root.querySelectorAll("form[method=post]").forEach(wireSubmitOnce);
  root.querySelectorAll("input[type=radio][name=token]").forEach(wireTokenChoice);
  root.querySelectorAll("[data-share]").forEach(wireShare);
  root.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form?.requestSubmit());
  });
}

function init() {
  wireWithin(document);
  // Page scripts that replace part of the page (a transfer's live status) announce it.
  document.addEventListener("seiwallet:updated", (event) => {
    if (event.target instanceof Element) wireWithin(event.target);
  });
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", init);
} else {
  init();
}

if ("serviceWorker" in navigator && window.isSecureContext) {
  window.addEventListener("load", () => {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {
      // The app works without it; only offline support is lost.
    });
  });
}

// Pages restored from the back/forward cache keep disabled buttons: re-enable them.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  document.querySelectorAll("button[disabled]:not([data-keep-disabled])").forEach((button) => {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  });
});
