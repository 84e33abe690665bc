// seiwallet's service worker, served at /sw.js (scope /) from static/sw.js.
//
// What it caches: the app shell (stylesheet, scripts, icons, an offline page). What it never
// caches: pages (they carry personal data and CSRF tokens), the API under /v1/, and anything
// that is not a same-origin GET. Bump VERSION when SHELL changes; old caches go on activate.

const VERSION = "2";
const CACHE = `seiwallet-shell-v${VERSION}`;
const OFFLINE_URL = "/static/offline.html";
const SHELL = [
  OFFLINE_URL,
  "/static/css/app.css",
  "/static/js/app.js",
  "/static/js/webauthn.js",
  "/static/js/send.js",
  "/static/js/transfer.js",
  "/static/js/offline.js",
  "/static/icons/favicon.svg",
  "/static/icons/icon-192.png",
  "/static/icons/icon-512.png",
  "/static/icons/maskable-192.png",
  "/static/manifest.webmanifest",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((url) => new Request(url, { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names
            .filter((name) => name.startsWith("seiwallet-") && name !== CACHE)
            .map((name) => caches.delete(name)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return; // POSTs and the rest: straight to the network
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/v1/") || url.pathname === "/v1") return; // the API: never cached

  if (request.mode === "navigate") {
    event.respondWith(networkFirstNavigation(request));
    return;
  }
  if (url.pathname.startsWith("/static/")) {
    // A ?v= URL names one version of a file forever: cache first. Unversioned URLs (module
    // imports, the offline page's assets) are served from cache and refreshed behind.
    event.respondWith(url.searchParams.has("v") ? cacheFirst(request) : staleWhileRevalidate(event, request));
  }
});

async function networkFirstNavigation(request) {
  try {
    return await fetch(request);
  } catch {
    const offline = await caches.match(OFFLINE_URL);
    return offline ?? Response.error();
  }
}

function cacheable(response) {
  return response.ok && response.type === "basic";
}

async function cacheFirst(request) {
  const cached = await caches.match(request);
  if (cached) return cached;
  const response = await fetch(request);
  if (cacheable(response)) {
    const cache = await caches.open(CACHE);
    await cache.put(request, response.clone());
  }
  return response;
}

async function staleWhileRevalidate(event, request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request);
  const refresh = fetch(request)
    .then(async (response) => {
      if (cacheable(response)) await cache.put(request, response.clone());
      return response;
    })
    .catch(() => undefined);
  if (cached) {
    event.waitUntil(refresh);
    return cached;
  }
  return (await refresh) ?? Response.error();
}
