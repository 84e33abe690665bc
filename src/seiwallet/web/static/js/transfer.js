// A transfer's page follows it live: GET /v1/transfers/{id} every second until it is final
// (completed, failed or expired); when anything a person sees changes, the page's live part is
// read again from the server and swapped in, so every word stays the server's (and translated).

const FINAL = new Set(["confirmed", "failed", "expired"]);
const FAST_MS = 1000;
const SLOW_MS = 5000;
const SLOW_AFTER_MS = 120_000;
const RETRY_MS = 3000;

const signature = (data) =>
  [data.status, data.delayed ?? "", data.tx_hash ?? "", data.failure_reason ?? ""].join("|");

function announce(text) {
  const toast = document.getElementById("live-status");
  if (!toast || !text) return;
  toast.textContent = text;
  toast.classList.add("is-visible");
  setTimeout(() => toast.classList.remove("is-visible"), 2400);
}

async function getJSON(url) {
  const response = await fetch(url, {
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) throw new Error(`status ${response.status}`);
  return response.json();
}

/** Read the page again and put its fresh live part in place of the old one. */
async function refresh(live) {
  const response = await fetch(window.location.href, {
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "text/html" },
  });
  if (!response.ok) throw new Error(`status ${response.status}`);
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.querySelector("[data-transfer-live]");
  if (!fresh) throw new Error("no live part in the page");
  const adopted = document.importNode(fresh, true);
  live.replaceWith(adopted);
  adopted.dispatchEvent(new CustomEvent("seiwallet:updated", { bubbles: true }));
  announce(adopted.querySelector("[data-status-headline]")?.textContent?.trim());
  return adopted;
}

function follow(initial) {
  let live = initial;
  let seen = live.dataset.signature ?? "";
  const url = live.dataset.pollUrl;
  const started = Date.now();
  let timer;
  let running = false;
  let done = false;

  async function tick() {
    timer = undefined;
    if (document.hidden || running || done) return; // resumes on visibilitychange
    running = true;
    let delay = Date.now() - started > SLOW_AFTER_MS ? SLOW_MS : FAST_MS;
    try {
      const data = await getJSON(url);
      const now = signature(data);
      if (now !== seen) {
        live = await refresh(live);
        seen = live.dataset.signature ?? now;
      }
      done = FINAL.has(data.status); // done: stop asking
    } catch {
      delay = RETRY_MS; // offline for a moment, or the server restarting: try again
    } finally {
      running = false;
    }
    if (!done) timer = setTimeout(tick, delay);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === undefined) tick();
  });
  tick();
}

const live = document.querySelector("[data-transfer-live]");
if (live?.dataset.pollUrl && !live.hasAttribute("data-final")) follow(live);
