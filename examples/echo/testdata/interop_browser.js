// Interop client for examples/echo run by Chromium (the test evaluates it in a page of the
// echo server's origin): the browser's WebSocket. Echo of a text, a binary and a 64 KiB and
// a 200 KB message, then a close handshake the page starts (1000): the server must answer
// with 1000 and the close must be clean. Resolves to "OK" or to "FAIL: ...".
(async (url) => {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const inbox = [];
  let waiter = null;
  ws.onmessage = (e) => { inbox.push(e.data); if (waiter) { waiter(); waiter = null; } };
  const closed = new Promise((resolve) => { ws.onclose = resolve; });
  const next = () => inbox.length ? Promise.resolve(inbox.shift())
    : new Promise((resolve) => { waiter = () => resolve(inbox.shift()); });
  try {
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('connect failed')); });
    const bin = new Uint8Array(256).map((_, i) => i);
    const msgs = ['hello', bin, 'x'.repeat(64 << 10), new Uint8Array(200000)];
    for (const [i, m] of msgs.entries()) {
      ws.send(m);
      const got = await next();
      if (typeof m === 'string') {
        if (got !== m) return `FAIL: message ${i}: text echo differs`;
      } else {
        const g = new Uint8Array(got);
        if (g.length !== m.length || g.some((b, j) => b !== m[j])) return `FAIL: message ${i}: binary echo differs`;
      }
    }
    ws.close(1000, 'bye');
    const e = await closed;
    if (e.code !== 1000 || !e.wasClean) return `FAIL: closed with ${e.code}, clean ${e.wasClean}; want 1000, clean`;
    return 'OK';
  } catch (err) {
    return 'FAIL: ' + err.message;
  }
})
