// The chat page: one WebSocket to /ws, JSON messages with a "type" field, reconnection with
// backoff. Everything a user typed is rendered with textContent, never as HTML.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const validRoom = (r) => /^[A-Za-z0-9_-]{1,32}$/.test(r);

  let room = validRoom(params.get("room") || "") ? params.get("room") : "lobby";
  let nick = params.get("nick") || localStorage.getItem("nick") || "guest-" + Math.floor(Math.random() * 10000);
  let ws = null;
  let backoff = 500;
  let me = "";

  function setStatus(state, text) {
    const el = $("status");
    el.className = "status " + state;
    el.textContent = text;
    el.dataset.state = state;
    $("send").disabled = state !== "open";
  }

  function addLine(kind, parts) {
    const li = document.createElement("li");
    li.className = kind;
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      if (cls) span.className = cls;
      span.textContent = text; // text, never HTML
      li.appendChild(span);
    }
    const list = $("messages");
    list.appendChild(li);
    while (list.children.length > 500) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
  }

  function showMessage(m) {
    const t = m.time ? new Date(m.time).toLocaleTimeString() : "";
    addLine("message", [["time", t], ["from", m.from + ":"], ["text", m.text]]);
  }

  function showMembers(members) {
    const ul = $("members");
    ul.replaceChildren();
    for (const name of members) {
      const li = document.createElement("li");
      li.textContent = name;
      if (name === me) li.className = "me";
      ul.appendChild(li);
    }
  }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  function updateURL() {
    const u = new URL(location.href);
    u.searchParams.set("room", room);
    history.replaceState(null, "", u);
    $("room-name").textContent = room;
    $("room-input").value = room;
    document.title = "#" + room + " · dispatchkit chat";
  }

  function connect() {
    setStatus("connecting", "connecting…");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(proto + "//" + location.host + "/ws");
    ws.onopen = () => {
      backoff = 500;
      setStatus("open", "connected");
      send({ type: "join", room: room, nick: nick });
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      switch (m.type) {
        case "welcome": me = m.nick; break;
        case "history":
          $("messages").replaceChildren();
          for (const h of m.messages || []) showMessage(h);
          break;
        case "message": showMessage(m); break;
        case "system": addLine("system", [["", m.text]]); break;
        case "presence": if (m.room === room) showMembers(m.members || []); break;
        case "error": addLine("error", [["", "error: " + m.error]]); break;
      }
    };
    ws.onclose = () => {
      setStatus("closed", "disconnected, retrying…");
      ws = null;
      const wait = backoff + Math.floor(Math.random() * backoff / 2);
      backoff = Math.min(backoff * 2, 10000);
      setTimeout(connect, wait);
    };
  }

  $("send-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    send({ type: "message", text: text });
    $("text").value = "";
  });
  $("room-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const r = $("room-input").value.trim();
    if (!validRoom(r) || r === room) return;
    room = r;
    updateURL();
    send({ type: "join", room: room, nick: nick });
  });
  $("nick-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const n = $("nick-input").value.trim();
    if (!n) return;
    nick = n;
    localStorage.setItem("nick", nick);
    send({ type: "nick", nick: nick });
  });

  $("nick-input").value = nick;
  updateURL();
  connect();
})();
