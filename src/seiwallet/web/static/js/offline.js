// The offline page is static (the service worker serves it with no server to ask), so it holds
// every language; show the reader's first supported one. Without this script it shows English.
const supported = ["en", "zh-Hant", "fr"];

function pick() {
  for (const tag of navigator.languages ?? [navigator.language]) {
    const lower = tag.toLowerCase();
    if (/^zh-(hant|tw|hk|mo)/.test(lower)) return "zh-Hant";
    const base = lower.split("-")[0];
    if (base === "en" || base === "fr") return base;
  }
  return "en";
}

const chosen = pick();
for (const block of document.querySelectorAll("[data-offline-lang]")) {
  block.hidden = block.dataset.offlineLang !== chosen;
}
if (supported.includes(chosen)) document.documentElement.lang = chosen;
document.querySelectorAll("[data-reload]").forEach((button) => {
  button.addEventListener("click", () => window.location.reload());
});
