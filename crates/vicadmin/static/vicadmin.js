// Follows a log live: what the server streams from /logs/NAME/raw?follow=1 (the log's
// last lines, then what is appended) is added to the page as text, never as HTML.
"use strict";
(function () {
  const pre = document.getElementById("log");
  const box = document.getElementById("follow");
  const state = document.getElementById("state");
  if (!pre || !box) return;
  const MAX_CHARS = 1 << 20; // what the page keeps of a long-running follow
  let controller = null;

  function show(text) {
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 4;
    pre.textContent += text;
    if (pre.textContent.length > MAX_CHARS) {
      pre.textContent = pre.textContent.slice(-MAX_CHARS / 2);
    }
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
  }

  async function follow() {
    controller = new AbortController();
    const mine = controller;
    state.textContent = "following";
    try {
      const resp = await fetch(pre.dataset.raw + "?follow=1", { signal: mine.signal, credentials: "same-origin" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      pre.textContent = "";
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        show(decoder.decode(value, { stream: true }));
      }
      state.textContent = "the follow ended";
    } catch (e) {
      if (mine.signal.aborted) return;
      state.textContent = "not following: " + e.message;
    }
    if (box.checked && controller === mine) setTimeout(follow, 1000);
  }

  box.addEventListener("change", function () {
    if (box.checked) {
      follow();
    } else if (controller) {
      controller.abort();
      controller = null;
      state.textContent = "paused";
    }
  });
  if (box.checked) follow();
})();
