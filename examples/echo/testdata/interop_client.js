// Interop client for examples/echo: Node's `ws` package (npm install ws).
//
// Echo of a text, a binary and a 64 KiB and a 200 KB message, then a close handshake the
// client starts (1000): the server must answer with 1000 and the close must be clean.
// Prints OK and exits 0, or says what went wrong and exits 1.
// Usage: NODE_PATH=<dir>/node_modules node interop_client.js ws://host:port/ws
'use strict';
const WebSocket = require('ws');

function fail(msg) {
  console.log('FAIL: ' + msg);
  process.exit(1);
}

const timer = setTimeout(() => fail('timed out after 20s'), 20000);
const ws = new WebSocket(process.argv[2], { maxPayload: 1 << 20 });
const msgs = ['hello', Buffer.from([...Array(256).keys()]), 'x'.repeat(64 << 10), Buffer.alloc(200000)];
let next = 0;

function sendNext() {
  if (next < msgs.length) {
    ws.send(msgs[next]);
    return;
  }
  ws.close(1000, 'bye');
}

ws.on('open', sendNext);
ws.on('error', (err) => fail('error: ' + err.message));
ws.on('message', (data, isBinary) => {
  const want = msgs[next];
  const isText = typeof want === 'string';
  if (isBinary === isText) fail(`message ${next}: got binary=${isBinary}`);
  const same = isText ? data.toString() === want : Buffer.compare(data, want) === 0;
  if (!same) fail(`message ${next}: echo differs (${data.length} bytes)`);
  next++;
  sendNext();
});
ws.on('close', (code, reason) => {
  clearTimeout(timer);
  if (next !== msgs.length) fail(`closed after ${next} echoes with ${code}`);
  if (code !== 1000) fail(`the server closed with ${code} ${reason}, want 1000`);
  console.log('OK');
});
