// The wallet's pay screen: what the counter's QR code opens.
//
// "Pay" prepares the payment (POST /v1/invoices/{id}/pay: the server checks expiry, balance,
// limits and answers the intent to approve), runs the passkey ceremony for that attempt
// (/v1/payment-attempts/{id}/approval-options → the phone's prompt → …/approve), then follows
// the invoice's status as server-sent events (/pay/{id}/events) and re-reads the page's live
// part from the server on each change, until it is paid. Every word shown comes from the page.

import { approveWithPasskey, postJSON } from "./webauthn.js";

const readJSON = (id) => {
  try {
    return JSON.parse(document.getElementById(id)?.textContent ?? "{}");
  } catch {
    return {};
  }
};

const ui = readJSON("ui-messages");
const texts = readJSON("pay-messages");
const say = (key, values = {}) =>
  (texts[key] ?? ui[key] ?? ui.generic ?? "Something went wrong.").replace(
    /\{(\w+)\}/g,
    (whole, name) => (name in values ? String(values[name]) : whole),
  );

const FINAL = new Set(["paid", "paid_elsewhere", "expired", "closed", "own"]);

function announce(text) {
  const toast = document.getElementById("live-status");
  if (!toast || !text) return;
  toast.textContent = text;
  toast.classList.add("is-visible");
  setTimeout(() => toast.classList.remove("is-visible"), 2400);
}

/** What a refused payment means to the payer. */
function explain(error) {
  const problem = error?.problem ?? {};
  switch (problem.code ?? "") {
    case "payment.invoice_expired":
      return say("invoice_expired");
    case "payment.invoice_already_paid":
      return say("already_paid");
    case "payment.invoice_being_paid":
      return say("being_paid");
    case "payment.insufficient_balance":
      return say("insufficient");
    case "compliance.denied":
      return problem.rule === "limits.per_transfer" ? say("limit") : say("denied");
    case "payment.self_payment":
      return say("self");
    case "payment.invoice_foreign":
      return say("foreign");
    case "payment.invoice_not_payable":
    case "payment.attempt_not_awaiting_approval":
      return say("not_payable");
    case "signer.approval_refused":
    case "accounts.ceremony_invalid":
      return say("approval_refused");
    default:
      break;
  }
  if (error?.reason && error.reason !== "server") return say(error.reason);
  const detail = error?.serverMessage || problem.detail || "";
  return detail ? detail.charAt(0).toUpperCase() + detail.slice(1) : say("generic");
}

/** Codes after which the page's own state says it best (expired, paid elsewhere…). */
const SHOWS_STATE = new Set([
  "payment.invoice_expired",
  "payment.invoice_already_paid",
  "payment.invoice_not_payable",
]);

let live = document.querySelector("[data-pay-live]");
let timer = null;
let events = null;
let reading = null;

async function reread() {
  const response = await fetch(window.location.href, {
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "text/html" },
  });
  if (!response.ok) throw new Error(`status ${response.status}`);
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.querySelector("[data-pay-live]");
  if (!fresh) throw new Error("no live part in the page");
  const before = live.dataset.state;
  const adopted = document.importNode(fresh, true);
  live.replaceWith(adopted);
  live = adopted;
  adopted.dispatchEvent(new CustomEvent("seiwallet:updated", { bubbles: true }));
  wire();
  if (adopted.dataset.state !== before) {
    announce(adopted.querySelector("[data-pay-headline]")?.textContent?.trim());
  }
}

function refresh() {
  if (reading) {
    reading.again = true;
    return;
  }
  reading = { again: false };
  reread()
    .catch(() => announce(say("reconnecting")))
    .finally(() => {
      const again = reading?.again;
      reading = null;
      if (again) refresh();
    });
}

function follow() {
  if (events || !live.dataset.eventsUrl) return;
  events = new EventSource(live.dataset.eventsUrl, { withCredentials: true });
  events.addEventListener("status", refresh);
  events.addEventListener("open", refresh);
  events.addEventListener("error", () => {
    if (events?.readyState === EventSource.CONNECTING) announce(say("reconnecting"));
  });
}

function stopFollowing() {
  events?.close();
  events = null;
}

function countdown() {
  if (timer) clearInterval(timer);
  timer = null;
  const text = live.querySelector("[data-countdown-text]");
  const expires = Date.parse(live.dataset.expiresAt ?? "");
  if (!text || !Number.isFinite(expires)) return;
  const tick = () => {
    const left = expires - Date.now();
    if (left <= 0) {
      clearInterval(timer);
      timer = null;
      text.textContent = say("expired_now");
      live.querySelector("[data-countdown]")?.classList.add("pay-expiry-over");
      setTimeout(refresh, 1500);
      return;
    }
    const seconds = Math.ceil(left / 1000);
    text.textContent = say("expires_in", {
      time: `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`,
    });
    live.querySelector("[data-countdown]")?.classList.toggle("pay-expiry-soon", seconds <= 20);
  };
  tick();
  timer = setInterval(tick, 250);
}

function wire() {
  const state = live.dataset.state;
  countdown();
  if (state === "processing") follow();
  if (FINAL.has(state)) stopFollowing();
  const button = live.querySelector("[data-pay]");
  const errorArea = live.querySelector("[data-error]");
  if (!button) return;
  button.addEventListener("click", async () => {
    if (button.getAttribute("aria-busy") === "true") return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    errorArea.textContent = "";
    announce(ui.working);
    const invoice = encodeURIComponent(live.dataset.invoice);
    try {
      const attempt = await postJSON(`/v1/invoices/${invoice}/pay`, {});
      if (attempt.status === "awaiting_approval") {
        const id = encodeURIComponent(attempt.id);
        await approveWithPasskey({
          optionsUrl: `/v1/payment-attempts/${id}/approval-options`,
          finishUrl: `/v1/payment-attempts/${id}/approve`,
        });
      }
      follow();
      await reread();
    } catch (error) {
      errorArea.textContent = explain(error);
      errorArea.scrollIntoView({ block: "center", behavior: "smooth" });
      button.disabled = false;
      button.removeAttribute("aria-busy");
      if (SHOWS_STATE.has(error?.problem?.code)) setTimeout(refresh, 2500);
    }
  });
}

if (live) {
  wire();
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !FINAL.has(live.dataset.state)) refresh();
  });
}
