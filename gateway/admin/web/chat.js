// Iris chat page: log in, send and receive messages, show the target's
// presence and the state of each sent message. The frames come from
// chat-wire.js and the server's rules from chat-rules.js, which the page
// runs first.
"use strict";

(function () {
  const {
    Op,
    KIND_PLAIN,
    kindNames,
    ReceiveBuffer,
    encodeLogin2,
    encodeSend2,
    encodeAck2,
    encodeGetStatus,
    encodeReadReceipt,
    encodeTyping,
  } = window.IrisChat;
  const { DEFAULT_LIMITS, limitsOf, nameProblem, send2Size, send2Problem, finalReasons, closingReasons, unsendableAfterClose } =
    window.IrisChatRules;

  const utf8Encoder = new TextEncoder();
  const utf8Decoder = new TextDecoder();

  const PRESENCE_INTERVAL_MS = 5000;
  const TARGET_SETTLE_MS = 400; // pause in typing a target before its presence is requested
  const TYPING_IDLE_MS = 3000; // pause in typing a message before TYPING_STOP is sent
  const PEER_TYPING_TIMEOUT_MS = 10000; // hides a typing notice whose TYPING_STOP was lost
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 15000;
  // A connection that stays logged in this long, or an ACCEPTED, ends a run
  // of failed connections, so the next drop reconnects after RECONNECT_MIN_MS
  // again. A LOGIN_OK alone does not, because a server that closes every
  // connection soon after login would otherwise get two logins a second.
  const STABLE_CONNECTION_MS = 10000;
  const MAX_PENDING_BYTES = 64 << 20; // largest unfinished frame held, far above the server's limits.message
  const MAX_TOKEN_BYTES = 4096;

  const el = (id) => document.getElementById(id);
  const ui = {
    user: el("user"),
    token: el("token"),
    login: el("login"),
    logout: el("logout"),
    state: el("state"),
    target: el("target"),
    presence: el("presence"),
    typing: el("typing"),
    text: el("text"),
    send: el("send"),
    notice: el("notice"),
    log: el("log"),
  };

  // SEND2 cids must not repeat within the server's dedup window, 10 minutes
  // by default, or a message would be taken for an earlier one and dropped.
  // So the first cid of a page load is the clock in milliseconds, shifted
  // left 20 bits, plus 20 random bits, and every send adds one. That stays
  // below 2^64 until the year 2527.
  function firstCid() {
    const random = BigInt(Math.floor(Math.random() * 0x100000));
    return (BigInt(Date.now()) << 20n) | random;
  }

  const chat = {
    config: null, // the document of chat/config.json
    limits: DEFAULT_LIMITS, // the server's limits from the last config read
    conn: null, // the current connection, see connect
    wantOnline: false, // the user asked to be logged in, so drops reconnect
    user: "", // the user whose conversation the log shows
    token: "",
    attempts: 0, // reconnect attempts since a stable connection or an ACCEPTED
    reconnectTimer: null,
    presenceTimer: null,
    targetTimer: null,
    nextCid: firstCid(),
    outgoing: new Map(), // cid (decimal) -> sent entry without ACCEPTED or REJECTED yet, in cid order
    unread: new Map(), // reader -> Set of accepted entries sent to them and not yet read
    readUpTo: new Map(), // reader -> highest seq of our messages they reported read (BigInt)
    shownSeqs: new Map(), // inbox seq (decimal) -> "sender ts" of the entry shown with it
    highestSeq: 0n, // highest inbox seq shown
    typingTo: "", // the target that the last TYPING_START went to
    typingTimer: null,
    peerTypingTimer: null,
  };

  // ---------------------------------------------------------------------
  // Page elements

  function setState(state) {
    ui.state.textContent = state;
    ui.state.dataset.state = state;
    document.body.dataset.state = state;
    ui.logout.disabled = state === "offline" && !chat.wantOnline;
  }

  function notify(text, kind) {
    ui.notice.textContent = text;
    ui.notice.dataset.kind = kind || "info";
  }

  function setPresence(text, state) {
    ui.presence.textContent = text;
    ui.presence.dataset.state = state;
  }

  function showPeerTyping(sender, typing) {
    clearTimeout(chat.peerTypingTimer);
    ui.typing.hidden = !typing;
    ui.typing.textContent = typing ? `${sender} is typing…` : "";
    if (typing) {
      chat.peerTypingTimer = setTimeout(() => showPeerTyping(sender, false), PEER_TYPING_TIMEOUT_MS);
    }
  }

  function formatTime(millis) {
    return new Date(millis).toLocaleTimeString();
  }

  function span(className, text) {
    const node = document.createElement("span");
    node.className = className;
    node.textContent = text;
    return node;
  }

  // appendMessage adds an li.msg to the log, scrolls it into view and
  // returns the item and its status element.
  function appendMessage(dir, meta, text) {
    const item = document.createElement("li");
    item.className = "msg";
    item.dataset.dir = dir;
    const status = span("status", "");
    item.appendChild(span("meta", meta));
    item.appendChild(span("text", text));
    item.appendChild(status);
    ui.log.appendChild(item);
    ui.log.scrollTop = ui.log.scrollHeight;
    return { item, status };
  }

  // setEntryState moves a sent message to "sending", "accepted", "read" or
  // "rejected". The detail, such as a rejection reason, is shown beside it.
  function setEntryState(entry, state, detail) {
    entry.state = state;
    entry.item.dataset.state = state;
    entry.status.textContent = detail ? `${state}: ${detail}` : state;
  }

  // isValidTarget reports whether the server would accept text as a target.
  // Background frames (presence polls, typing) go only to valid targets, so
  // an invalid one does not get an error reply every few seconds.
  function isValidTarget(text) {
    return nameProblem(text, chat.limits.target) === "";
  }

  // describeContent returns the text shown for a delivered entry. Only plain
  // messages are text. The other kinds are shown by name and size.
  function describeContent(kind, msg) {
    if (kind === KIND_PLAIN) {
      return utf8Decoder.decode(msg);
    }
    const name = kindNames.get(kind) || `kind 0x${kind.toString(16).padStart(2, "0")}`;
    return `[${name} content, ${msg.length} bytes]`;
  }

  // ---------------------------------------------------------------------
  // Connection

  // loadConfig reads chat/config.json and takes the server's limits from it.
  async function loadConfig() {
    const response = await fetch("chat/config.json", { cache: "no-store" });
    if (!response.ok) {
      throw new Error(`chat/config.json returned HTTP ${response.status}`);
    }
    const config = await response.json();
    chat.limits = limitsOf(config);
    return config;
  }

  function socketURL(config) {
    const scheme = config.tls ? "wss" : "ws";
    let path = config.ws_path || "/ws";
    if (!path.startsWith("/")) {
      path = `/${path}`;
    }
    return `${scheme}://${location.hostname}:${config.ws_port}${path}`;
  }

  // send writes one frame if the connection is open, and reports whether it did.
  function send(conn, frame) {
    if (conn === null || conn.socket.readyState !== WebSocket.OPEN) {
      return false;
    }
    conn.socket.send(frame);
    return true;
  }

  function loggedIn() {
    return chat.conn !== null && chat.conn.loggedIn;
  }

  // sendEntry writes the SEND2 of an outgoing entry and records it on the
  // connection, so that a close the message causes can be traced to it.
  function sendEntry(conn, entry) {
    if (send(conn, encodeSend2(entry.cid, entry.target, entry.text))) {
      entry.sends += 1;
      conn.sent.add(entry);
    }
  }

  async function connect() {
    chat.reconnectTimer = null;
    if (!chat.wantOnline) {
      return;
    }
    setState("connecting");

    if (chat.config === null) {
      try {
        chat.config = await loadConfig();
      } catch (err) {
        scheduleReconnect(`Cannot read the chat configuration: ${err.message}.`);
        return;
      }
    }
    if (!chat.config.ws_port) {
      chat.wantOnline = false;
      setState("offline");
      notify("This node has no WebSocket listener, so the chat cannot connect here. Open /chat on an edge node.", "error");
      return;
    }
    if (!chat.wantOnline || chat.conn !== null) {
      return; // the user logged out, or logged in again, while the config loaded
    }

    let socket;
    try {
      socket = new WebSocket(socketURL(chat.config));
    } catch (err) {
      // A malformed URL throws here. Retrying cannot fix it.
      chat.wantOnline = false;
      setState("offline");
      notify(`Cannot open ${socketURL(chat.config)}: ${err.message}`, "error");
      return;
    }
    socket.binaryType = "arraybuffer";
    // Each connection has its own receive buffer and acknowledgement state.
    // Handlers of a replaced connection find chat.conn changed and return.
    const conn = {
      socket,
      receive: new ReceiveBuffer(MAX_PENDING_BYTES),
      loggedIn: false,
      loggedInAt: 0, // performance.now() at LOGIN_OK
      serverError: "", // the reason of an ERROR after which the server closes
      closedByPage: false, // the page closed it after a protocol error in the server's bytes
      sent: new Set(), // outgoing entries sent on this connection
    };
    chat.conn = conn;

    socket.onopen = () => {
      if (chat.conn === conn) {
        send(conn, encodeLogin2(chat.user, chat.token));
      }
    };
    socket.onmessage = (event) => {
      if (chat.conn === conn) {
        receive(conn, event.data);
      }
    };
    socket.onclose = (event) => {
      if (chat.conn === conn) {
        dropped(event);
      }
    };
  }

  function closeConnection() {
    const conn = chat.conn;
    chat.conn = null;
    if (conn !== null) {
      conn.socket.close(1000);
    }
    stopPresenceTimer();
    stopTyping();
    showPeerTyping("", false);
  }

  // dropped handles the end of the current connection: it rejects the
  // messages that must not be sent again, and reconnects unless the user
  // logged out or the server gave a final error.
  function dropped(event) {
    const conn = chat.conn;
    chat.conn = null;
    stopPresenceTimer();
    chat.typingTo = "";
    clearTimeout(chat.typingTimer);
    showPeerTyping("", false);
    setPresence("unknown", "unknown");
    setState("offline");
    const rejections = rejectUnsendable(conn, event.code);
    if (!chat.wantOnline) {
      return;
    }

    if (conn.loggedIn && performance.now() - conn.loggedInAt >= STABLE_CONNECTION_MS) {
      chat.attempts = 0;
    }
    // The listener may come back on another port, for example after a
    // restart with port 0, so the next attempt reads the config again.
    chat.config = null;
    let cause = `Cannot connect to ${conn.socket.url}.`;
    if (conn.serverError !== "") {
      cause = `Disconnected by the server: ${conn.serverError}.`;
    } else if (conn.loggedIn) {
      cause = `Connection lost (WebSocket close code ${event.code}).`;
    }
    scheduleReconnect([...rejections, cause].join(" "));
  }

  // rejectUnsendable marks rejected, and drops from the outgoing queue, the
  // unanswered messages of a closed connection that must not be sent again.
  // It returns a sentence for each.
  function rejectUnsendable(conn, closeCode) {
    const unanswered = [...conn.sent].filter((entry) => chat.outgoing.get(entry.cid.toString()) === entry);
    const close = { code: closeCode, serverError: conn.serverError, closedByPage: conn.closedByPage };
    return unsendableAfterClose(unanswered, close).map(({ entry, reason, explanation }) => rejectEntry(entry, reason, explanation));
  }

  // rejectEntry marks an outgoing entry rejected for reason and removes it
  // from the outgoing queue. It returns a sentence with the explanation for
  // the notice.
  function rejectEntry(entry, reason, explanation) {
    chat.outgoing.delete(entry.cid.toString());
    setEntryState(entry, "rejected", reason);
    return `Message to ${entry.target} rejected: ${explanation}.`;
  }

  // scheduleReconnect connects again after an exponential backoff with
  // jitter, so that clients dropped together do not return together.
  function scheduleReconnect(cause) {
    if (!chat.wantOnline || chat.reconnectTimer !== null) {
      return;
    }
    setState("offline");
    const backoff = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(chat.attempts, 16));
    const delay = Math.round(backoff * (0.8 + 0.4 * Math.random()));
    chat.attempts += 1;
    notify(`${cause} Reconnecting in ${(delay / 1000).toFixed(1)} s.`, "error");
    chat.reconnectTimer = setTimeout(connect, delay);
  }

  function cancelReconnect() {
    clearTimeout(chat.reconnectTimer);
    chat.reconnectTimer = null;
  }

  // ---------------------------------------------------------------------
  // Incoming frames

  function receive(conn, data) {
    let frames;
    try {
      frames = conn.receive.push(data);
    } catch (err) {
      // The stream cannot be split into frames any more, so only a new
      // connection can go on. The server resends what was not acknowledged.
      notify(`Protocol error: ${err.message}.`, "error");
      conn.closedByPage = true;
      conn.socket.close(4000);
      return;
    }

    const batch = { ackNeeded: false, receipts: new Map() };
    for (const frame of frames) {
      if (chat.conn !== conn) {
        return; // a frame, such as a final error, ended this connection
      }
      handleFrame(conn, frame, batch);
    }
    finishBatch(conn, batch);
  }

  function handleFrame(conn, frame, batch) {
    switch (frame.op) {
      case Op.LOGIN_OK:
        onLoginOK(conn);
        break;
      case Op.DELIVER:
        onDeliver(frame, batch);
        break;
      case Op.ACCEPTED:
        onAccepted(frame);
        break;
      case Op.REJECTED:
        onRejected(frame);
        break;
      case Op.STATUS:
        onStatus(frame);
        break;
      case Op.RECEIPT:
        onReceipt(frame);
        break;
      case Op.TYPING:
        if (frame.sender === ui.target.value) {
          showPeerTyping(frame.sender, frame.state === 1);
        }
        break;
      case Op.ERROR:
        onError(conn, frame.reason);
        break;
      case Op.RATE_LIMITED:
        notify(`Rate limited: sending again is possible in ${frame.retryAfterMs} ms.`, "error");
        break;
      default:
        // Group notices, key bundles and v1 deliveries are not part of this page.
        break;
    }
  }

  function onLoginOK(conn) {
    conn.loggedIn = true;
    conn.loggedInAt = performance.now();
    setState("online");
    notify(`Logged in as ${chat.user}.`);
    requestPresence();
    startPresenceTimer();

    // Messages still unanswered after a drop are sent again with the same
    // cid. The server stores a repeated cid once and sends its ACCEPTED again.
    // The limits are checked again, because they may have changed with the
    // config read for this connection.
    for (const entry of [...chat.outgoing.values()]) {
      const problem = send2Problem(entry.target, entry.text, chat.limits);
      if (problem !== null) {
        notify(rejectEntry(entry, problem.reason, problem.explanation), "error");
        continue;
      }
      sendEntry(conn, entry);
    }
  }

  // onDeliver shows an inbox entry once. Delivery is at least once, so a
  // DELIVER whose seq was already shown is a repeat and is only acknowledged.
  function onDeliver(frame, batch) {
    batch.ackNeeded = true;
    const key = frame.seq.toString();
    const identity = `${frame.sender} ${frame.ts}`;
    const known = chat.shownSeqs.get(key);
    if (known === identity) {
      return;
    }
    if (known !== undefined) {
      // The same seq with another sender or time means the server's inbox
      // started over, for example on a node with a new data directory.
      chat.shownSeqs.clear();
      chat.highestSeq = 0n;
      notify("The server's inbox was reset, so message numbers start again.", "error");
    }

    chat.shownSeqs.set(key, identity);
    if (frame.seq > chat.highestSeq) {
      chat.highestSeq = frame.seq;
    }
    const { item } = appendMessage("in", `${frame.sender} · ${formatTime(Number(frame.ts))}`, describeContent(frame.kind, frame.msg));
    item.dataset.seq = key;
    item.dataset.sender = frame.sender;
    if (frame.sender === ui.target.value) {
      showPeerTyping(frame.sender, false);
    }

    if (frame.kind === KIND_PLAIN) {
      const previous = batch.receipts.get(frame.sender);
      if (previous === undefined || frame.seq > previous) {
        batch.receipts.set(frame.sender, frame.seq);
      }
    }
  }

  // finishBatch acknowledges and reports read what one WebSocket message
  // delivered, with one ACK2 and one receipt per sender.
  //
  // ACK2 is cumulative, so it carries the highest seq shown. That is safe
  // because the server writes new entries to a connection in seq order: an
  // entry below it was shown already, or another session of this user
  // acknowledged it and the server does not send it here.
  //
  // The receipt's message id is the entry's inbox seq in decimal, the number
  // the sender received in its ACCEPTED. It stands for every message of that
  // sender up to that seq, which this page has all shown.
  function finishBatch(conn, batch) {
    if (!batch.ackNeeded || chat.highestSeq === 0n) {
      return;
    }
    send(conn, encodeAck2(chat.highestSeq));
    for (const [sender, seq] of batch.receipts) {
      send(conn, encodeReadReceipt(seq.toString(), sender));
    }
  }

  function onAccepted(frame) {
    const entry = chat.outgoing.get(frame.cid.toString());
    if (entry === undefined) {
      return; // a second ACCEPTED, for a cid sent again after a drop
    }
    chat.outgoing.delete(frame.cid.toString());
    chat.attempts = 0; // the connection works, so the next drop reconnects after the shortest delay
    entry.seq = frame.seq;
    entry.item.dataset.seq = frame.seq.toString();

    const readUpTo = chat.readUpTo.get(entry.target);
    if (readUpTo !== undefined && frame.seq <= readUpTo) {
      setEntryState(entry, "read"); // the receipt came before the ACCEPTED
      return;
    }
    setEntryState(entry, "accepted");
    if (!chat.unread.has(entry.target)) {
      chat.unread.set(entry.target, new Set());
    }
    chat.unread.get(entry.target).add(entry);
  }

  function onRejected(frame) {
    const entry = chat.outgoing.get(frame.cid.toString());
    if (entry === undefined) {
      return;
    }
    notify(rejectEntry(entry, frame.reason, frame.reason), "error");
  }

  // onReceipt marks read every accepted message to the reader up to the seq
  // in the receipt. Receipts whose id is not a decimal seq come from other
  // clients and are ignored.
  function onReceipt(frame) {
    if (!/^[0-9]{1,20}$/.test(frame.messageId)) {
      return;
    }
    const seq = BigInt(frame.messageId);
    const reader = frame.reader;
    const previous = chat.readUpTo.get(reader);
    if (previous === undefined || seq > previous) {
      chat.readUpTo.set(reader, seq);
    }

    const unread = chat.unread.get(reader);
    if (unread === undefined) {
      return;
    }
    for (const entry of unread) {
      if (entry.seq <= seq) {
        setEntryState(entry, "read", formatTime(Number(frame.ts)));
        unread.delete(entry);
      }
    }
  }

  function onStatus(frame) {
    if (frame.user !== ui.target.value) {
      return; // the STATUS of a target that has changed since
    }
    if (frame.state === 1) {
      setPresence("online", "online");
    } else if (frame.seen === 0n) {
      setPresence("offline", "offline");
    } else {
      setPresence(`last seen ${new Date(Number(frame.seen) * 1000).toLocaleString()}`, "offline");
    }
  }

  // onError shows an ERROR frame. Before LOGIN_OK, and for the reasons that
  // end a session, the server closes the connection after it.
  function onError(conn, reason) {
    if (!conn.loggedIn || finalReasons.has(reason) || closingReasons.has(reason)) {
      conn.serverError = reason;
    }
    if (finalReasons.has(reason)) {
      chat.wantOnline = false;
      cancelReconnect();
      const detail = reason === "replaced_by_new_login" ? "this user logged in somewhere else" : reason;
      notify(`${conn.loggedIn ? "Logged out" : "Login failed"}: ${detail}.`, "error");
      return;
    }
    notify(`Server error: ${reason}.`, "error");
  }

  // ---------------------------------------------------------------------
  // Presence and typing

  function requestPresence() {
    const target = ui.target.value;
    if (isValidTarget(target) && loggedIn()) {
      send(chat.conn, encodeGetStatus(target));
    }
  }

  function startPresenceTimer() {
    stopPresenceTimer();
    chat.presenceTimer = setInterval(requestPresence, PRESENCE_INTERVAL_MS);
  }

  function stopPresenceTimer() {
    clearInterval(chat.presenceTimer);
    chat.presenceTimer = null;
  }

  function targetChanged() {
    clearTimeout(chat.targetTimer);
    stopTyping();
    showPeerTyping("", false);
    setPresence("unknown", "unknown");
    chat.targetTimer = setTimeout(requestPresence, TARGET_SETTLE_MS);
  }

  // onTextInput sends TYPING_START to the target once per burst of keys, and
  // TYPING_STOP after a pause. Each costs a send token.
  function onTextInput() {
    const target = ui.target.value;
    if (!isValidTarget(target) || !loggedIn()) {
      return;
    }
    if (chat.typingTo !== target) {
      stopTyping();
      if (send(chat.conn, encodeTyping(true, target))) {
        chat.typingTo = target;
      }
    }
    clearTimeout(chat.typingTimer);
    chat.typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(chat.typingTimer);
    if (chat.typingTo !== "" && loggedIn()) {
      send(chat.conn, encodeTyping(false, chat.typingTo));
    }
    chat.typingTo = "";
  }

  // ---------------------------------------------------------------------
  // User actions

  // resetConversation empties the log and clears every seq and cid, for a
  // login as another user.
  function resetConversation() {
    ui.log.textContent = "";
    chat.outgoing.clear();
    chat.unread.clear();
    chat.readUpTo.clear();
    chat.shownSeqs.clear();
    chat.highestSeq = 0n;
  }

  function login() {
    const user = ui.user.value;
    const problem = nameProblem(user, chat.limits.user_name);
    if (problem !== "") {
      notify(`The user name is not valid because ${problem}. Enter 1 to ${chat.limits.user_name} bytes without ":" or control characters.`, "error");
      ui.user.focus();
      return;
    }
    if (utf8Encoder.encode(ui.token.value).length > MAX_TOKEN_BYTES) {
      notify(`The token is longer than ${MAX_TOKEN_BYTES} bytes.`, "error");
      ui.token.focus();
      return;
    }
    if (user !== chat.user) {
      resetConversation();
    }
    chat.user = user;
    chat.token = ui.token.value;
    chat.wantOnline = true;
    chat.attempts = 0;
    cancelReconnect();
    closeConnection();
    notify("");
    connect();
  }

  function logout() {
    chat.wantOnline = false;
    cancelReconnect();
    closeConnection();
    setPresence("unknown", "unknown");
    setState("offline");
    notify("Logged out.");
  }

  // sendMessage sends the text to the target, or shows it rejected at once
  // when the server would reject it.
  function sendMessage() {
    const text = ui.text.value;
    const target = ui.target.value;
    if (text === "") {
      return;
    }
    if (target === "") {
      notify("Enter a recipient in the To field.", "error");
      ui.target.focus();
      return;
    }
    if (!chat.wantOnline) {
      notify("Log in to send messages.", "error");
      return;
    }

    const cid = chat.nextCid;
    chat.nextCid += 1n;
    const { item, status } = appendMessage("out", `to ${target}`, text);
    const bytes = send2Size(utf8Encoder.encode(target).length, utf8Encoder.encode(text).length);
    // bytes is the size of the SEND2, sends counts the connections it went
    // out on, and suspectCloses the closes unsendableAfterClose suspected it of.
    const entry = { cid, target, text, bytes, sends: 0, suspectCloses: 0, seq: null, state: "", item, status };
    setEntryState(entry, "sending");
    ui.text.value = "";
    stopTyping();

    const problem = send2Problem(target, text, chat.limits);
    if (problem !== null) {
      notify(rejectEntry(entry, problem.reason, problem.explanation), "error");
      return;
    }
    chat.outgoing.set(cid.toString(), entry);
    // While the page reconnects, the message waits in chat.outgoing and
    // goes out at LOGIN_OK.
    if (loggedIn()) {
      sendEntry(chat.conn, entry);
    }
  }

  function prefill() {
    const params = new URLSearchParams(location.search);
    for (const name of ["user", "token", "target"]) {
      const value = params.get(name);
      if (value !== null) {
        ui[name].value = value;
      }
    }
    return params.get("autologin") === "1";
  }

  async function start() {
    ui.login.addEventListener("click", login);
    ui.logout.addEventListener("click", logout);
    ui.send.addEventListener("click", sendMessage);
    ui.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        sendMessage();
      }
    });
    ui.text.addEventListener("input", onTextInput);
    ui.target.addEventListener("input", targetChanged);
    for (const input of [ui.user, ui.token]) {
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          login();
        }
      });
    }

    // A page kept in the back/forward cache would otherwise keep its
    // WebSocket and show the user online after they left. It reconnects
    // when it is shown again.
    window.addEventListener("pagehide", () => {
      cancelReconnect();
      closeConnection();
    });
    window.addEventListener("pageshow", (event) => {
      if (event.persisted && chat.wantOnline && chat.conn === null) {
        connect();
      }
    });

    setState("offline");
    setPresence("unknown", "unknown");
    const autologin = prefill();

    try {
      chat.config = await loadConfig();
      if (!chat.config.ws_port) {
        notify("This node has no WebSocket listener, so the chat cannot connect here. Open /chat on an edge node.", "error");
      }
    } catch (err) {
      notify(`Cannot read the chat configuration: ${err.message}`, "error");
    }
    document.body.dataset.ready = "1";
    if (autologin) {
      login();
    }
  }

  start();
})();
