// Rules of the Iris server that the chat page applies to what it sends. They
// are the size limits and name rules the server checks, the errors after
// which it closes a connection, and when a message without a reply is given
// up. The server closes the connection for some faults, so a page that sent
// the same message again after every reconnect would be closed without end.
"use strict";

(function () {
  const utf8Encoder = new TextEncoder();

  // A message without ACCEPTED or REJECTED goes out on at most this many
  // connections. After that it is marked rejected instead of sent again.
  const MAX_SENDS = 5;

  // A message is rejected once this many connections closed, for no reason
  // the page can tell, while it was the largest message without a reply.
  // Such a close is often the server rejecting the message. The listener
  // (gws v1.8.9) writes its 1009 close frame and closes the socket while the
  // rest of the message is still arriving, and the TCP reset that follows
  // can discard that frame, so the page gets close code 1006. Headless
  // Chromium 156 sending a 1.1 MB message to a node on loopback got 1006 in
  // about half of 25 such closes.
  const MAX_SUSPECT_CLOSES = 2;

  // The server's limits in bytes with the default config, for a
  // chat/config.json without limits. The keys are those of the limits
  // section of the node's config.
  const DEFAULT_LIMITS = Object.freeze({ message: 65536, user_name: 256, target: 256, receive_buffer: 1048576 });

  // limitsOf returns the limits in config, with the default for each one
  // that is missing or not a positive integer.
  function limitsOf(config) {
    const configured = (config && config.limits) || {};
    const limits = {};
    for (const [key, fallback] of Object.entries(DEFAULT_LIMITS)) {
      const value = configured[key];
      limits[key] = Number.isSafeInteger(value) && value > 0 ? value : fallback;
    }
    return Object.freeze(limits);
  }

  // nameProblem returns why the server would reject name as a user name or
  // target of at most maxBytes bytes, or "" when it would not. The rules are
  // the server's: 1 to maxBytes bytes of UTF-8, no ":" and no control
  // character (C0, DEL or C1).
  function nameProblem(name, maxBytes) {
    const size = utf8Encoder.encode(name).length;
    if (size === 0) {
      return "it is empty";
    }
    if (size > maxBytes) {
      return `it is ${size} bytes long and the server accepts at most ${maxBytes}`;
    }
    if (name.includes(":")) {
      return `it contains ":"`;
    }
    if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) {
      return "it contains a control character";
    }
    return "";
  }

  // send2Size returns the size in bytes of the SEND2 frame of a message
  // whose target and text are targetBytes and textBytes long: opcode, cid,
  // two length fields and the two fields.
  function send2Size(targetBytes, textBytes) {
    return 1 + 8 + 2 + targetBytes + 4 + textBytes;
  }

  // send2Problem returns the reason and explanation with which a server
  // with limits would reject a SEND2 of text to target, or null when it
  // would take it. Checking before sending matters most for a SEND2 larger
  // than limits.receive_buffer, because the server closes the connection
  // for it instead of sending REJECTED.
  function send2Problem(target, text, limits) {
    const targetProblem = nameProblem(target, limits.target);
    if (targetProblem !== "") {
      return { reason: "invalid_target", explanation: `the recipient is not a valid user name because ${targetProblem}` };
    }
    const textBytes = utf8Encoder.encode(text).length;
    if (textBytes > limits.message) {
      return {
        reason: "message_too_large",
        explanation: `it is ${textBytes} bytes in UTF-8 and the server accepts at most ${limits.message}`,
      };
    }
    const frameBytes = send2Size(utf8Encoder.encode(target).length, textBytes);
    if (frameBytes > limits.receive_buffer) {
      return {
        reason: "message_too_large",
        explanation: `its frame is ${frameBytes} bytes and the server reads at most ${limits.receive_buffer} in one WebSocket message`,
      };
    }
    return null;
  }

  // Errors after which logging in again would fail the same way, or would
  // close another session of the same user that replaced this one.
  const finalReasons = new Set([
    "auth_failed",
    "invalid_user_name",
    "token_too_long",
    "too_many_login_failures",
    "replaced_by_new_login",
  ]);

  // Other errors after which the server closes a logged-in connection. The
  // page names them when the connection ends, and reconnects.
  const closingReasons = new Set([
    "unknown_opcode",
    "buffer_overflow",
    "server_full",
    "too_many_connections",
    "too_many_connections_from_address",
    "server_busy",
    "slow_consumer",
    "frame_timeout",
    "idle_timeout",
    "server_shutting_down",
    "login_timeout",
    "service_unavailable",
    "invalid_frame",
  ]);

  // Errors of the list above that the server sends because of bytes the page
  // sent. The message taken to have caused one is rejected, not sent again.
  const pageFaultReasons = new Set(["unknown_opcode", "buffer_overflow", "invalid_frame"]);

  // WebSocket close codes with which a server ends a connection because of a
  // message it received (RFC 6455, section 7.4.1), and the reason the page
  // shows for the message that caused one. The Iris listener closes with
  // 1009 when a message exceeds limits.receive_buffer.
  const pageFaultCloseCodes = new Map([
    [1002, "protocol_error"],
    [1003, "unsupported_data"],
    [1007, "invalid_payload_data"],
    [1009, "message_too_large"],
  ]);

  // unsendableAfterClose returns the messages of a closed connection that
  // must not be sent again, each as { entry, reason, explanation }. The
  // unanswered entries are those sent on the connection without a reply yet,
  // each with its SEND2 size in bytes, its sends and its suspectCloses. The
  // close is { code, serverError, closedByPage }: the WebSocket close code,
  // the reason of the ERROR that came before it or "", and whether the page
  // closed the connection itself.
  //
  // The server reads frames in order and closes at the one it cannot take,
  // so the culprit is among the unanswered messages. It is taken to be the
  // largest of them, because a SEND2 is the only frame of the page whose
  // size the user controls. When the server named the message's fault, with
  // an ERROR or a close code, the suspect is rejected at once. A close
  // without an ERROR adds one to the suspect's suspectCloses, and it is
  // rejected at MAX_SUSPECT_CLOSES. Any message is rejected after MAX_SENDS
  // sends.
  function unsendableAfterClose(unanswered, close) {
    if (unanswered.length === 0) {
      return [];
    }
    const verdicts = [];
    const suspect = unanswered.reduce((largest, entry) => (entry.bytes > largest.bytes ? entry : largest));

    let reason = pageFaultCloseCodes.get(close.code);
    let closedBy = `with WebSocket close code ${close.code}`;
    if (pageFaultReasons.has(close.serverError)) {
      reason = close.serverError;
      closedBy = `with the error ${close.serverError}`;
    }
    if (reason !== undefined) {
      verdicts.push({ entry: suspect, reason, explanation: `the server closed the connection ${closedBy} after it was sent` });
    } else if (close.serverError === "" && !close.closedByPage) {
      // An ERROR such as server_shutting_down gives a reason that clears the message.
      suspect.suspectCloses += 1;
      if (suspect.suspectCloses >= MAX_SUSPECT_CLOSES) {
        const explanation = `${suspect.suspectCloses} connections closed while it was the largest message without a reply`;
        verdicts.push({ entry: suspect, reason: "no_reply", explanation });
      }
    }

    for (const entry of unanswered) {
      if (entry.sends >= MAX_SENDS && !verdicts.some((verdict) => verdict.entry === entry)) {
        verdicts.push({ entry, reason: "no_reply", explanation: `the server did not reply on ${entry.sends} connections` });
      }
    }
    return verdicts;
  }

  // The rules are shared with chat.js, and visible to tests and the browser
  // console, as window.IrisChatRules.
  window.IrisChatRules = Object.freeze({
    DEFAULT_LIMITS,
    limitsOf,
    nameProblem,
    send2Size,
    send2Problem,
    finalReasons,
    closingReasons,
    unsendableAfterClose,
  });
})();
