// Offline reading (issue 23): the book's service worker, written into the site by the build
// (_ext/book_speed.py fills in the build id and the list of files).
//
// Installed after a reader's first visit, it downloads this edition's pages, figures, styles,
// scripts and MathJax into one cache named after a hash of their content. A new publish has a
// new hash: its worker installs a new cache, takes over and deletes the old one, so nobody is
// left reading an old edition. The scope is the folder of the book, and cache names carry it,
// so editions published side by side (/1.0.0/, /1.1.0/) keep separate caches.
//
// Pages come from the network when there is one (a reader online always gets the published
// page) and from the cache otherwise; everything else comes from the cache first.

const BUILD_ID = "__BUILD_ID__";
const FILES = __FILES__;
const PREFIX = `tinyformer:${self.registration.scope}:`;
const CACHE = PREFIX + BUILD_ID;

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(FILES.map((file) => new Request(file, { cache: "reload" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

async function fromCache(request) {
  const cache = await caches.open(CACHE);
  // Links carry ?v=<hash> or ?digest=...; within one build the file is the same without it.
  return (await cache.match(request)) || cache.match(request, { ignoreSearch: true });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || !request.url.startsWith(self.registration.scope)) return;
  if (request.mode === "navigate") {
    event.respondWith(fetch(request).catch(async () => (await fromCache(request)) || Response.error()));
    return;
  }
  event.respondWith((async () => (await fromCache(request)) || fetch(request))());
});
