// The send page: check the payment with the server, show it for review, approve it with the
// phone's passkey, then follow it on its own page.
//
// 1. The form is posted as JSON to /v1/transfers with the Idempotency-Key the page was rendered
//    with: a double tap, or a retry after a lost answer, gets the same transfer back — money is
//    never sent twice. The server checks everything (recipient, amount, balance, limits) and
//    answers the transfer awaiting approval, or a problem (RFC 9457) shown beside the form.
// 2. The review shows what was checked: who (as typed, and the address it resolved to), how
//    much, the fee (none: seiwallet pays it).
// 3. "Approve with passkey": the server's challenge for this transfer's intent, the passkey, the
//    assertion back; then the transfer's page, which follows it to completion.
// Editing after a review makes a new key: it is a different payment.

import { approveWithPasskey, postJSON } from "./webauthn.js";

const readJSON = (id) => {
  try {
    return JSON.parse(document.getElementById(id)?.textContent ?? "{}");
  } catch {
    return {};
  }
};

const ui = readJSON("ui-messages");
const texts = readJSON("send-messages");
const say = (key, values = {}) =>
  (texts[key] ?? ui[key] ?? ui.generic ?? "Something went wrong.").replace(
    /\{(\w+)\}/g,
    (whole, name) => (name in values ? String(values[name]) : whole),
  );

const AMOUNT = /^(?:\d+(?:\.\d*)?|\.\d+)$/;
const MAX_DECIMALS = 6;
const FINAL_STATUSES = new Set(["signed", "submitted", "confirmed", "failed", "expired"]);
const GLYPHS = { USDC: "$", EURC: "€" };

function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function shortAddress(value) {
  if (!value) return "";
  const head = value.startsWith("sei1") ? 7 : 6;
  return value.length <= head + 5 ? value : `${value.slice(0, head)}…${value.slice(-4)}`;
}

function announce(text) {
  const toast = document.getElementById("live-status");
  if (!toast) return;
  toast.textContent = text;
  toast.classList.add("is-visible");
  setTimeout(() => toast.classList.remove("is-visible"), 2400);
}

/** A same-origin URL, or null. */
function sameOrigin(candidate) {
  if (!candidate) return null;
  try {
    const url = new URL(candidate, window.location.href);
    return url.origin === window.location.origin ? url.href : null;
  } catch {
    return null;
  }
}

function init(root) {
  const form = root.querySelector("[data-send-form]");
  const formStep = root.querySelector('[data-step="form"]');
  const reviewStep = root.querySelector('[data-step="review"]');
  const keyInput = form.querySelector("[data-idempotency-key]");
  const reviewButton = form.querySelector("[data-review-button]");
  const approveButton = reviewStep.querySelector("[data-approve-transfer]");
  const formError = formStep.querySelector("[data-error]");
  const reviewError = reviewStep.querySelector("[data-error]");
  const fields = {
    to: form.elements.namedItem("to"),
    amount: form.elements.namedItem("amount"),
    note: form.elements.namedItem("note"),
  };
  const { locale, currency } = root.dataset;
  const decimalComma = root.dataset.decimal === ",";
  const tokenFormat = new Intl.NumberFormat(locale, {
    minimumFractionDigits: 2,
    maximumFractionDigits: MAX_DECIMALS,
  });
  const moneyFormat = currency
    ? new Intl.NumberFormat(locale, { style: "currency", currency })
    : null;
  let transfer = null;
  let pushed = false;

  const chosenToken = () => form.querySelector("input[name=token]:checked");

  /** What was typed, as the API reads amounts: digits and one "." (a decimal comma allowed). */
  function normalisedAmount() {
    let text = fields.amount.value.trim();
    if (decimalComma) {
      const compact = text.replace(/[\s\u00a0\u202f]/g, "");
      if ((compact.match(/,/g) ?? []).length === 1 && !compact.includes(".")) {
        text = compact.replace(",", ".");
      }
    }
    return text;
  }

  function fiatOf(amountText, radio) {
    const rate = Number(radio?.dataset.rate);
    const value = Number(amountText);
    if (!moneyFormat || !rate || !Number.isFinite(value) || !AMOUNT.test(amountText)) return "";
    return `≈ ${moneyFormat.format(value * rate)}`;
  }

  function showValue() {
    const radio = chosenToken();
    const symbol = root.querySelector("[data-amount-symbol]");
    if (symbol && radio) symbol.textContent = radio.value;
    const output = root.querySelector("[data-amount-value]");
    if (output) output.textContent = fiatOf(normalisedAmount(), radio);
  }

  function clearErrors() {
    formError.textContent = "";
    reviewError.textContent = "";
    for (const field of Object.values(fields)) field.removeAttribute("aria-invalid");
  }

  function fail(area, text, field) {
    area.textContent = text;
    if (field) {
      field.setAttribute("aria-invalid", "true");
      field.focus({ preventScroll: true });
    }
    area.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  /** What a refused request means to the person, and which field it is about. */
  function explain(error) {
    const problem = error?.problem ?? {};
    const code = problem.code ?? "";
    const token = chosenToken()?.value ?? "";
    const detail = error?.serverMessage || problem.detail || "";
    switch (code) {
      case "transfer.recipient_invalid":
        return [say("recipient_invalid"), fields.to];
      case "transfer.recipient_unknown":
        return [
          say(fields.to.value.trim().toLowerCase().startsWith("sei1") ? "sei_unknown" : "recipient_unknown"),
          fields.to,
        ];
      case "transfer.self":
        return [say("self"), fields.to];
      case "transfer.insufficient_balance": {
        const available = Number(chosenToken()?.dataset.available);
        return Number.isFinite(available) && chosenToken()?.dataset.available
          ? [say("insufficient", { token, available: `${tokenFormat.format(available)} ${token}` }), fields.amount]
          : [say("insufficient_unknown", { token }), fields.amount];
      }
      case "amount.invalid":
        return [say("amount_invalid"), fields.amount];
      case "compliance.denied":
        if (problem.rule === "limits.per_transfer") return [say("limit"), fields.amount];
        if (problem.rule === "sanctions.recipient") return [say("sanctions"), fields.to];
        return [say("blocked"), null];
      case "transfer.unknown_token":
        return [say("token"), null];
      case "transfer.lookup_rate_limited":
        return [say("rate_limited"), null];
      case "transfer.invitation_rate_limited":
        return [say("invitation_limited"), fields.to];
      case "transfer.not_awaiting_approval":
        return [say("expired"), null];
      case "signer.approval_refused":
      case "accounts.ceremony_invalid":
        return [say("approval_refused"), null];
      case "input.invalid":
        if (/amount/i.test(detail)) return [say("amount_zero"), fields.amount];
        if (/note/i.test(detail)) return [say("note_long"), fields.note];
        break;
      default:
        break;
    }
    if (error?.reason && error.reason !== "server") return [say(error.reason), null];
    if (detail) return [detail.charAt(0).toUpperCase() + detail.slice(1), null];
    return [say("generic"), null];
  }

  /** The checks a phone can make itself, before asking the server. */
  function localProblem(amountText) {
    if (!fields.to.value.trim()) return [say("recipient_missing"), fields.to];
    if (!amountText) return [say("amount_missing"), fields.amount];
    if (!AMOUNT.test(amountText)) return [say("amount_invalid"), fields.amount];
    const fraction = amountText.split(".")[1] ?? "";
    if (fraction.length > MAX_DECIMALS) return [say("amount_invalid"), fields.amount];
    if (!/[1-9]/.test(amountText)) return [say("amount_zero"), fields.amount];
    if (fields.note.value.length > Number(fields.note.maxLength || 140)) {
      return [say("note_long"), fields.note];
    }
    return null;
  }

  function busy(button, on) {
    button.disabled = on;
    if (on) button.setAttribute("aria-busy", "true");
    else button.removeAttribute("aria-busy");
  }

  function showStep(step) {
    const review = step === "review";
    formStep.hidden = review;
    reviewStep.hidden = !review;
    window.scrollTo({ top: 0 });
    (review ? reviewStep : formStep.querySelector("h1"))?.focus?.({ preventScroll: true });
  }

  function fillReview(created) {
    const radio = chosenToken();
    const symbol = created.token;
    const amount = `${tokenFormat.format(Number(created.amount))} ${symbol}`;
    root.querySelector("[data-review-amount]").textContent = amount;
    root.querySelector("[data-review-fiat]").textContent = fiatOf(created.amount, radio);
    const icon = root.querySelector("[data-review-icon]");
    icon.className = `review-token token-icon token-icon-lg token-${symbol.toLowerCase()}`;
    icon.textContent = GLYPHS[symbol] ?? symbol.charAt(0);
    icon.setAttribute("aria-hidden", "true");
    const typed = fields.to.value.trim();
    const sameAsTyped = typed.toLowerCase() === String(created.to).toLowerCase();
    root.querySelector("[data-review-recipient]").textContent = sameAsTyped
      ? shortAddress(created.to)
      : typed;
    const address = root.querySelector("[data-review-address]");
    address.textContent = sameAsTyped ? "" : shortAddress(created.to);
    address.title = created.to;
    const note = created.note ?? "";
    root.querySelector("[data-review-note]").textContent = note;
    root.querySelector("[data-review-note-row]").hidden = !note;
    // Someone not on seiwallet yet: the money waits in the invitation escrow until they join.
    const invitation = created.invitation;
    const box = root.querySelector("[data-review-invitation]");
    const arrives = root.querySelector("[data-review-arrives]");
    arrives.dataset.plain ??= arrives.textContent;
    box.hidden = !invitation;
    if (invitation) {
      address.textContent = "";
      const date = new Intl.DateTimeFormat(locale, { dateStyle: "long" }).format(
        new Date(invitation.deadline),
      );
      root.querySelector("[data-review-invitation-text]").textContent = say("invitation", {
        alias: typed,
        date,
      });
      arrives.textContent = say("arrives_invitation");
    } else {
      arrives.textContent = arrives.dataset.plain;
    }
  }

  fields.amount.addEventListener("input", showValue);
  form.querySelectorAll("input[name=token]").forEach((radio) => {
    radio.addEventListener("change", showValue);
  });
  for (const field of Object.values(fields)) {
    field.addEventListener("input", () => field.removeAttribute("aria-invalid"));
  }
  showValue();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (reviewButton.disabled) return; // a second tap while the first is on its way
    clearErrors();
    const amount = normalisedAmount();
    const problem = localProblem(amount);
    if (problem) {
      fail(formError, ...problem);
      return;
    }
    busy(reviewButton, true);
    try {
      const created = await postJSON(
        "/v1/transfers",
        {
          recipient: fields.to.value.trim(),
          token: chosenToken()?.value ?? "",
          amount,
          note: fields.note.value.trim(),
        },
        { headers: { "Idempotency-Key": keyInput.value } },
      );
      if (FINAL_STATUSES.has(created.status)) {
        // This key's payment was approved already (a page restored from history): show it.
        window.location.assign(`/transfers/${encodeURIComponent(created.id)}`);
        return;
      }
      transfer = created;
      fillReview(created);
      window.history.pushState({ sendStep: "review" }, "");
      pushed = true;
      showStep("review");
    } catch (error) {
      fail(formError, ...explain(error));
    } finally {
      busy(reviewButton, false);
    }
  });

  function backToForm() {
    transfer = null;
    pushed = false;
    keyInput.value = newKey(); // a changed payment is a new payment
    clearErrors();
    showStep("form");
  }

  root.querySelector("[data-edit]").addEventListener("click", () => {
    if (pushed) window.history.back(); // popstate brings the form back
    else backToForm();
  });
  window.addEventListener("popstate", () => {
    if (!reviewStep.hidden) backToForm();
  });

  approveButton.addEventListener("click", async () => {
    if (!transfer || approveButton.disabled) return;
    clearErrors();
    busy(approveButton, true);
    announce(say("working"));
    const id = encodeURIComponent(transfer.id);
    try {
      const approved = await approveWithPasskey({
        optionsUrl: `/v1/transfers/${id}/approval-options`,
        optionsBody: {},
        finishUrl: `/v1/transfers/${id}/approve`,
      });
      window.location.replace(sameOrigin(approved.redirect) ?? `/transfers/${id}`);
    } catch (error) {
      fail(reviewError, explain(error)[0], null);
      busy(approveButton, false);
    }
  });
}

const root = document.querySelector("[data-send]");
if (root) init(root);
