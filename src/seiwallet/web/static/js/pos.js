// The point of sale: a keypad, the QR code of the sale, and "paid" the moment it is.
//
// 1. The keypad builds the amount in minor units (1, 2, 5, 0 → 12.50), as card terminals do;
//    it is shown in the store's currency in the reader's locale.
// 2. "Charge" creates the invoice (POST /v1/stores/{store}/invoices) with an Idempotency-Key
//    made once per sale: a double tap, or a retry after a lost answer, gets the same invoice.
// 3. The sale (QR code, amounts, expiry) is rendered by the server (/pos/{terminal}/sales/{id})
//    and put on screen; the page then listens to the invoice's server-sent events
//    (/v1/invoices/{id}/events): no polling. Each event re-reads the sale from the server; when
//    it is paid the screen turns green and a short chime plays (WebAudio, no sound file).
// The cashier's tap on "Charge" unlocks the audio, so the chime may play later on its own.

import { postJSON } from "./webauthn.js";

const readJSON = (id) => {
  try {
    return JSON.parse(document.getElementById(id)?.textContent ?? "{}");
  } catch {
    return {};
  }
};

const ui = readJSON("ui-messages");
const texts = readJSON("pos-messages");
const say = (key, values = {}) =>
  (texts[key] ?? ui[key] ?? ui.generic ?? "Something went wrong.").replace(
    /\{(\w+)\}/g,
    (whole, name) => (name in values ? String(values[name]) : whole),
  );

const MAX_DIGITS = 11;
const FINAL = new Set(["paid", "failed"]);
const EVENT_TYPES = [
  "invoice.processing",
  "invoice.settled",
  "invoice.expired",
  "invoice.invalid",
  "invoice.refunded",
  "invoice.partially_refunded",
  "invoice.anomaly",
];

function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function announce(text) {
  const toast = document.getElementById("live-status");
  if (!toast || !text) return;
  toast.textContent = text;
  toast.classList.add("is-visible");
  setTimeout(() => toast.classList.remove("is-visible"), 2400);
}

// ---------- The chime ----------

let audio = null;

/** Create (or wake) the audio context: only a user's gesture may, so "Charge" does it. */
function unlockAudio() {
  const Context = window.AudioContext ?? window.webkitAudioContext;
  if (!Context) return;
  audio ??= new Context();
  if (audio.state === "suspended") audio.resume().catch(() => {});
}

/** Two rising notes: a friendly "paid" that a busy counter hears. */
function chime() {
  if (!audio || audio.state !== "running") return false;
  const start = audio.currentTime + 0.02;
  [
    [880, 0],
    [1318.5, 0.16],
  ].forEach(([frequency, offset]) => {
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    oscillator.type = "sine";
    oscillator.frequency.value = frequency;
    const at = start + offset;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.35, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.42);
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start(at);
    oscillator.stop(at + 0.45);
  });
  return true;
}

// ---------- The page ----------

function init(root) {
  const { locale, currency, createUrl, saleUrl, terminal } = root.dataset;
  const precision = Number(root.dataset.precision ?? 2);
  const keypadStep = root.querySelector('[data-step="keypad"]');
  const saleStep = root.querySelector('[data-step="sale"]');
  const display = root.querySelector("[data-amount-display]");
  const chargeButton = root.querySelector("[data-charge]");
  const chargeLabel = root.querySelector("[data-charge-label]");
  const errorArea = keypadStep.querySelector("[data-error]");
  const saleBox = root.querySelector("[data-sale]");
  const newSale = root.querySelector("[data-new-sale]");
  const cancelSale = root.querySelector("[data-cancel-sale]");
  const soundButton = root.querySelector("[data-sound]");
  const orderInput = root.querySelector("[data-order-id]");
  const noteInput = root.querySelector("[data-note]");
  const money = new Intl.NumberFormat(locale, {
    style: "currency",
    currency,
    minimumFractionDigits: precision,
    maximumFractionDigits: precision,
  });

  let digits = "";
  let key = newKey();
  let invoiceId = null;
  let events = null;
  let timer = null;
  let reading = null;
  let state = null;
  let chimed = false;

  /** The amount typed, as the API reads it ("12.50"), or "" for nothing. */
  function amountText() {
    const trimmed = digits.replace(/^0+/, "");
    if (!trimmed) return "";
    if (precision === 0) return trimmed;
    const padded = trimmed.padStart(precision + 1, "0");
    return `${padded.slice(0, -precision)}.${padded.slice(-precision)}`;
  }

  function showAmount() {
    const text = amountText();
    const shown = money.format(text ? Number(text) : 0);
    display.textContent = shown;
    chargeButton.disabled = !text;
    chargeLabel.textContent = text ? say("charge", { amount: shown }) : say("charge", { amount: "" }).trim();
    errorArea.textContent = "";
  }

  function press(value) {
    if (value === "back") digits = digits.slice(0, -1);
    else if (digits.replace(/^0+/, "").length + value.length <= MAX_DIGITS) digits += value;
    else {
      errorArea.textContent = say("too_large");
      return;
    }
    key = newKey(); // another amount is another sale
    showAmount();
  }

  root.querySelectorAll("[data-key]").forEach((button) => {
    button.addEventListener("click", () => press(button.dataset.key));
  });
  root.querySelector("[data-clear]").addEventListener("click", () => {
    digits = "";
    key = newKey();
    showAmount();
  });
  document.addEventListener("keydown", (event) => {
    if (keypadStep.hidden || event.target instanceof HTMLInputElement) return;
    if (/^[0-9]$/.test(event.key)) press(event.key);
    else if (event.key === "Backspace") press("back");
    else if (event.key === "Enter" && !chargeButton.disabled) chargeButton.click();
    else return;
    event.preventDefault();
  });

  function explain(error) {
    const code = error?.problem?.code ?? "";
    if (code === "payment.unsupported_currency") return say("unsupported_currency");
    if (code === "payment.not_permitted" || code === "payment.store_not_found") return say("not_permitted");
    if (code === "payment.terminal_not_found") return say("terminal");
    if (error?.reason === "network") return say("network");
    const detail = error?.serverMessage || error?.problem?.detail || "";
    return detail ? detail.charAt(0).toUpperCase() + detail.slice(1) : say("generic");
  }

  chargeButton.addEventListener("click", async () => {
    const amount = amountText();
    if (!amount || chargeButton.getAttribute("aria-busy") === "true") return;
    unlockAudio();
    chargeButton.setAttribute("aria-busy", "true");
    chargeButton.disabled = true;
    errorArea.textContent = "";
    const body = { amount, terminal_id: terminal };
    const order = orderInput.value.trim();
    const note = noteInput.value.trim();
    if (order) body.order_id = order;
    if (note) body.metadata = { note };
    try {
      const invoice = await postJSON(createUrl, body, { headers: { "Idempotency-Key": key } });
      await startSale(invoice.id);
    } catch (error) {
      errorArea.textContent = explain(error);
    } finally {
      chargeButton.removeAttribute("aria-busy");
      chargeButton.disabled = !amountText();
    }
  });

  // ---------- A sale ----------

  async function readSale() {
    const id = invoiceId;
    const response = await fetch(`${saleUrl}${encodeURIComponent(id)}`, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" },
    });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const html = await response.text();
    if (id !== invoiceId) return; // a new sale started meanwhile
    const page = new DOMParser().parseFromString(html, "text/html");
    const view = page.querySelector("[data-sale-view]");
    if (!view) throw new Error("no sale in the answer");
    const adopted = document.importNode(view, true);
    saleBox.replaceChildren(adopted);
    adopted.dispatchEvent(new CustomEvent("seiwallet:updated", { bubbles: true }));
    show(adopted.dataset.state, adopted);
  }

  /** Read the sale again; several events at once make one read. */
  function refresh() {
    if (reading) {
      reading.again = true;
      return;
    }
    reading = { again: false };
    readSale()
      .catch(() => announce(say("connection")))
      .finally(() => {
        const again = reading?.again;
        reading = null;
        if (again) refresh();
      });
  }

  function show(next, view) {
    const previous = state;
    state = next;
    document.body.classList.toggle("pos-paid", next === "paid");
    document.body.classList.toggle("pos-failed", next === "failed" || next === "expired");
    newSale.hidden = next === "waiting" || next === "processing";
    cancelSale.hidden = next !== "waiting";
    if (next === "waiting") startCountdown(view);
    else stopCountdown();
    if (next === "paid" && previous !== "paid") {
      if (!chimed) {
        chimed = true;
        soundButton.hidden = chime();
      }
      announce(say("paid", { amount: view.dataset.price ?? "" }));
      newSale.focus({ preventScroll: true });
    }
    if (FINAL.has(next)) closeEvents();
  }

  function startCountdown(view) {
    stopCountdown();
    const expires = Date.parse(view.dataset.expiresAt ?? "");
    if (!Number.isFinite(expires)) return;
    const text = view.querySelector("[data-countdown-text]");
    const bar = view.querySelector("[data-timer-bar]");
    const total = Math.max(1, expires - Date.now());
    const tick = () => {
      const left = expires - Date.now();
      if (left <= 0) {
        stopCountdown();
        text.textContent = say("expired");
        // The server decides: expired, or a payment that was approved just in time.
        setTimeout(refresh, 1500);
        return;
      }
      const seconds = Math.ceil(left / 1000);
      const time = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
      text.textContent = say("expires_in", { time });
      if (bar) bar.style.transform = `scaleX(${Math.min(1, left / total)})`;
      view.classList.toggle("sale-ending", seconds <= 20);
    };
    tick();
    timer = setInterval(tick, 250);
  }

  function stopCountdown() {
    if (timer) clearInterval(timer);
    timer = null;
  }

  function openEvents(id) {
    closeEvents();
    events = new EventSource(`/v1/invoices/${encodeURIComponent(id)}/events`, {
      withCredentials: true,
    });
    for (const type of EVENT_TYPES) events.addEventListener(type, refresh);
    events.addEventListener("open", () => {
      // (Re)connected: anything missed while away is replayed, but read the sale anyway.
      if (state && state !== "waiting") refresh();
    });
    events.addEventListener("error", () => {
      if (events?.readyState === EventSource.CONNECTING) announce(say("connection"));
    });
  }

  function closeEvents() {
    events?.close();
    events = null;
  }

  async function startSale(id) {
    invoiceId = id;
    state = null;
    chimed = false;
    saleBox.replaceChildren();
    keypadStep.hidden = true;
    saleStep.hidden = false;
    soundButton.hidden = true;
    openEvents(id);
    await readSale();
    window.scrollTo({ top: 0 });
    saleStep.focus({ preventScroll: true });
  }

  function backToKeypad({ keepAmount }) {
    closeEvents();
    stopCountdown();
    invoiceId = null;
    state = null;
    document.body.classList.remove("pos-paid", "pos-failed");
    saleBox.replaceChildren();
    saleStep.hidden = true;
    keypadStep.hidden = false;
    if (!keepAmount) {
      digits = "";
      orderInput.value = "";
      noteInput.value = "";
    }
    key = newKey();
    showAmount();
    window.scrollTo({ top: 0 });
  }

  newSale.addEventListener("click", () => backToKeypad({ keepAmount: false }));
  cancelSale.addEventListener("click", () => backToKeypad({ keepAmount: true }));
  soundButton.addEventListener("click", () => {
    unlockAudio();
    chime();
    soundButton.hidden = true;
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && invoiceId) refresh();
  });

  showAmount();
}

const root = document.querySelector("[data-pos]");
if (root) init(root);
