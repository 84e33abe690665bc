// The merchant dashboard's one ceremony: a refund, approved with the owner's passkey.
//
// The form asks the API for the refund (POST /v1/invoices/{id}/refunds, with an
// Idempotency-Key kept while the form is unchanged: a retry never asks twice), then — for the
// owner, whose wallet pays it — runs the passkey approval of that refund
// (/v1/refunds/{id}/approval-options → the phone's prompt → …/approve) and goes back to the
// payment, which lists the refund. A manager's request waits there for the owner.
// Everything else on the dashboard is plain forms and links.

import { approveWithPasskey, postJSON } from "./webauthn.js";

const readJSON = (id) => {
  try {
    return JSON.parse(document.getElementById(id)?.textContent ?? "{}");
  } catch {
    return {};
  }
};

const ui = readJSON("ui-messages");
const texts = readJSON("refund-messages");
const say = (key) => texts[key] ?? ui[key] ?? ui.generic ?? "Something went wrong.";

const AMOUNT = /^(?:\d+(?:\.\d{0,6})?|\.\d{1,6})$/;

function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Same-origin paths only: never follow a value off-site. */
function local(path) {
  try {
    const url = new URL(path, window.location.href);
    return url.origin === window.location.origin ? url.href : null;
  } catch {
    return null;
  }
}

function explain(error) {
  const problem = error?.problem ?? {};
  switch (problem.code ?? "") {
    case "payment.refund_exceeds_refundable":
      return say("too_much");
    case "payment.insufficient_balance":
      return say("insufficient");
    case "payment.refund_over_limit":
    case "payment.not_permitted":
      return say("over_limit");
    case "payment.invoice_not_refundable":
    case "payment.refund_not_awaiting_approval":
      return say("not_refundable");
    case "signer.approval_refused":
    case "accounts.ceremony_invalid":
      return say("approval_refused");
    case "amount.invalid":
      return say("amount_invalid");
    default:
      break;
  }
  if (error?.reason && error.reason !== "server") return say(error.reason);
  const detail = error?.serverMessage || problem.detail || "";
  return detail ? detail.charAt(0).toUpperCase() + detail.slice(1) : say("generic");
}

function wireRefund(box) {
  const form = box.querySelector("[data-refund]");
  const button = box.querySelector("[data-refund-submit]");
  const errorArea = box.querySelector("[data-error]");
  const amount = form.elements.namedItem("amount");
  const reason = form.elements.namedItem("reason");
  // Where it goes: one address (a hidden field), or the one picked among several that paid.
  const payer = () => {
    const field = form.elements.namedItem("payer");
    return field ? field.value || null : null;
  };
  const approves = "approve" in box.dataset;
  const done = local(box.dataset.doneUrl) ?? window.location.href;
  let key = newKey();
  for (const field of [amount, reason]) {
    field.addEventListener("input", () => {
      key = newKey(); // another amount or reason is another refund
      field.removeAttribute("aria-invalid");
    });
  }
  form.addEventListener("change", (event) => {
    if (event.target.name === "payer") key = newKey(); // another payer is another refund
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (button.getAttribute("aria-busy") === "true") return;
    errorArea.textContent = "";
    const text = amount.value.trim().replace(",", ".");
    if (!AMOUNT.test(text)) {
      errorArea.textContent = say("amount_invalid");
      amount.setAttribute("aria-invalid", "true");
      amount.focus();
      return;
    }
    if (!/[1-9]/.test(text)) {
      errorArea.textContent = say("amount_zero");
      amount.setAttribute("aria-invalid", "true");
      amount.focus();
      return;
    }
    if (form.elements.namedItem("payer") && !payer()) {
      errorArea.textContent = say("payer_missing");
      return;
    }
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    if (approves) {
      const toast = document.getElementById("live-status");
      if (toast) {
        toast.textContent = ui.working ?? "";
        toast.classList.add("is-visible");
      }
    }
    try {
      const refund = await postJSON(
        box.dataset.createUrl,
        { amount: text, reason: reason.value.trim(), payer: payer() },
        { headers: { "Idempotency-Key": key } },
      );
      if (approves && refund.status === "awaiting_approval") {
        const id = encodeURIComponent(refund.id);
        await approveWithPasskey({
          optionsUrl: `/v1/refunds/${id}/approval-options`,
          finishUrl: `/v1/refunds/${id}/approve`,
        });
      }
      window.location.assign(done);
    } catch (error) {
      errorArea.textContent = explain(error);
      button.disabled = false;
      button.removeAttribute("aria-busy");
      document.getElementById("live-status")?.classList.remove("is-visible");
    }
  });
}

document.querySelectorAll("[data-refund-form]").forEach(wireRefund);

// An invoice's page follows it live: a refund settling (or failing), the payment settling, the
// invoice expiring — the page is read again, from the server, when the invoice's stream says so.
// The stream starts after the last event the page showed, so nothing is replayed into a loop.
const LIVE_TYPES = [
  "invoice.processing",
  "invoice.settled",
  "invoice.expired",
  "invoice.invalid",
  "invoice.refunded",
  "invoice.partially_refunded",
  "invoice.anomaly",
  "refund.signed",
  "refund.settled",
  "refund.failed",
];

function followInvoice(root) {
  if (typeof EventSource === "undefined") return;
  const events = new EventSource(root.dataset.invoiceEvents, { withCredentials: true });
  const refresh = () => {
    events.close();
    window.location.reload();
  };
  for (const type of LIVE_TYPES) events.addEventListener(type, refresh);
  window.addEventListener("pagehide", () => events.close());
}

document.querySelectorAll("[data-invoice-events]").forEach(followInvoice);
