// Frames of the Iris client protocol for the chat page: encoders for the
// frames the page sends and a receive buffer that decodes the server's.
//
// A frame is an opcode byte followed by a body whose layout the opcode fixes.
// There is no frame-level length field, and every integer is unsigned
// big-endian. The server may put several frames in one WebSocket message and
// may split a frame across messages, so incoming bytes go through a receive
// buffer that hands out whole frames only. docs/protocol.md in the Iris
// repository describes every frame.
"use strict";

(function () {
  const Op = Object.freeze({
    // Client to server.
    GET_STATUS: 0x05,
    LOGIN2: 0x08,
    SEND2: 0x09,
    ACK2: 0x12,
    TYPING_START: 0x70,
    TYPING_STOP: 0x71,
    READ_RECEIPT: 0x74,
    // Server to client.
    LOGIN_OK: 0x03,
    STATUS: 0x06,
    ACCEPTED: 0x0b,
    REJECTED: 0x0c,
    RELIABLE: 0x10,
    DELIVER: 0x11,
    PREKEY_RESPONSE: 0x22,
    E2EE_DELIVER: 0x24,
    GROUP_MEMBER: 0x31,
    GROUP_LEAVE_OK: 0x32,
    GROUP_DELIVER: 0x34,
    GROUP_ROSTER: 0x35,
    SENDER_KEY: 0x36,
    TYPING: 0x72,
    RECEIPT: 0x75,
    ERROR: 0xfe,
    RATE_LIMITED: 0xff,
  });

  // Content kinds of a DELIVER: the opcode the content would have live.
  const kindNames = new Map([
    [0x02, "plain"],
    [0x10, "CBOR"],
    [0x24, "E2EE"],
    [0x34, "group"],
    [0x36, "sender key"],
  ]);
  const KIND_PLAIN = 0x02;

  const utf8Encoder = new TextEncoder();
  const utf8Decoder = new TextDecoder();

  // ProtocolError is the error for a byte stream that cannot be split into
  // frames.
  class ProtocolError extends Error {}

  // FrameWriter builds one client frame from its fields.
  class FrameWriter {
    constructor(op) {
      this.parts = [Uint8Array.of(op)];
      this.length = 1;
    }

    push(bytes) {
      this.parts.push(bytes);
      this.length += bytes.length;
      return this;
    }

    u64(value) {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, BigInt(value));
      return this.push(bytes);
    }

    bytes16(bytes) {
      if (bytes.length > 0xffff) {
        throw new RangeError(`field of ${bytes.length} bytes does not fit a u16 length`);
      }
      const prefix = new Uint8Array(2);
      new DataView(prefix.buffer).setUint16(0, bytes.length);
      return this.push(prefix).push(bytes);
    }

    bytes32(bytes) {
      if (bytes.length > 0xffffffff) {
        throw new RangeError(`field of ${bytes.length} bytes does not fit a u32 length`);
      }
      const prefix = new Uint8Array(4);
      new DataView(prefix.buffer).setUint32(0, bytes.length);
      return this.push(prefix).push(bytes);
    }

    text16(text) {
      return this.bytes16(utf8Encoder.encode(text));
    }

    text32(text) {
      return this.bytes32(utf8Encoder.encode(text));
    }

    finish() {
      const frame = new Uint8Array(this.length);
      let at = 0;
      for (const part of this.parts) {
        frame.set(part, at);
        at += part.length;
      }
      return frame;
    }
  }

  // `08 ulen:u16 user tlen:u16 token`; an empty token is sent as tlen 0.
  function encodeLogin2(user, token) {
    return new FrameWriter(Op.LOGIN2).text16(user).text16(token).finish();
  }

  // `09 cid:u64 tlen:u16 target mlen:u32 msg`
  function encodeSend2(cid, target, text) {
    return new FrameWriter(Op.SEND2).u64(cid).text16(target).text32(text).finish();
  }

  // `12 seq:u64`, cumulative: everything up to and including seq is handled.
  function encodeAck2(seq) {
    return new FrameWriter(Op.ACK2).u64(seq).finish();
  }

  // `05 tlen:u16 target`
  function encodeGetStatus(target) {
    return new FrameWriter(Op.GET_STATUS).text16(target).finish();
  }

  // `74 mlen:u16 msgid slen:u16 original_sender`
  function encodeReadReceipt(messageId, originalSender) {
    return new FrameWriter(Op.READ_RECEIPT).text16(messageId).text16(originalSender).finish();
  }

  // `70 tlen:u16 target` when typing starts, `71 tlen:u16 target` when it stops.
  function encodeTyping(started, target) {
    return new FrameWriter(started ? Op.TYPING_START : Op.TYPING_STOP).text16(target).finish();
  }

  // Field types of server frame layouts. Integers are read as numbers, except
  // u64, which is a BigInt because it may exceed 2^53.
  const U8 = { int: 1 };
  const U32 = { int: 4 };
  const U64 = { int: 8 };
  const TEXT16 = { prefix: 2, text: true };
  const BYTES16 = { prefix: 2 };
  const BYTES32 = { prefix: 4 };
  const fixedBytes = (size) => ({ fixed: size });

  // Body layouts of every frame the server sends, as [name, type] pairs. The
  // E2EE and group frames normally arrive only inside a DELIVER, but they are
  // listed so that one arriving live is skipped instead of ending the stream.
  const serverLayouts = new Map([
    [Op.LOGIN_OK, [["word", fixedBytes(8)]]],
    [Op.STATUS, [["user", TEXT16], ["state", U8], ["seen", U64]]],
    [Op.ACCEPTED, [["cid", U64], ["seq", U64]]],
    [Op.REJECTED, [["cid", U64], ["reason", TEXT16]]],
    [Op.RELIABLE, [["id", BYTES16], ["msg", BYTES32]]],
    [Op.DELIVER, [["seq", U64], ["kind", U8], ["sender", TEXT16], ["ts", U64], ["msg", BYTES32]]],
    [Op.PREKEY_RESPONSE, [["bundle", BYTES32]]],
    [Op.E2EE_DELIVER, [["sender", TEXT16], ["header", BYTES16], ["cipher", BYTES32]]],
    [Op.GROUP_MEMBER, [["group", TEXT16], ["user", TEXT16]]],
    [Op.GROUP_LEAVE_OK, [["word", fixedBytes(2)]]],
    [Op.GROUP_DELIVER, [["group", TEXT16], ["sender", TEXT16], ["header", BYTES16], ["cipher", BYTES32]]],
    [Op.GROUP_ROSTER, [["group", TEXT16], ["roster", BYTES32]]],
    [Op.SENDER_KEY, [["group", TEXT16], ["sender", TEXT16], ["key", BYTES32]]],
    [Op.TYPING, [["sender", TEXT16], ["state", U8]]],
    [Op.RECEIPT, [["messageId", TEXT16], ["reader", TEXT16], ["ts", U64]]],
    [Op.ERROR, [["reason", TEXT16]]],
    [Op.RATE_LIMITED, [["retryAfterMs", U32]]],
  ]);

  function readInt(view, at, size) {
    switch (size) {
      case 1:
        return view.getUint8(at);
      case 2:
        return view.getUint16(at);
      case 4:
        return view.getUint32(at);
      default:
        return view.getBigUint64(at);
    }
  }

  // decodeFrame decodes the server frame that starts at bytes[start]. It
  // returns { frame, end }, with end the index after the frame, or null when
  // the frame is not complete in bytes yet. An opcode without a layout throws
  // ProtocolError, because its end cannot be found.
  function decodeFrame(bytes, start) {
    const op = bytes[start];
    const layout = serverLayouts.get(op);
    if (layout === undefined) {
      throw new ProtocolError(`unknown server opcode 0x${op.toString(16).padStart(2, "0")}`);
    }

    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const frame = { op };
    let at = start + 1;
    for (const [name, type] of layout) {
      if (type.int !== undefined) {
        if (at + type.int > bytes.length) {
          return null;
        }
        frame[name] = readInt(view, at, type.int);
        at += type.int;
        continue;
      }

      let size = type.fixed;
      if (type.prefix !== undefined) {
        if (at + type.prefix > bytes.length) {
          return null;
        }
        size = readInt(view, at, type.prefix);
        at += type.prefix;
      }
      if (at + size > bytes.length) {
        return null;
      }
      const field = bytes.slice(at, at + size);
      frame[name] = type.text ? utf8Decoder.decode(field) : field;
      at += size;
    }
    return { frame, end: at };
  }

  // ReceiveBuffer turns the binary messages of one WebSocket into frames. A
  // message may contain several frames and end in the middle of one. The bytes
  // of an unfinished frame wait for the next message.
  class ReceiveBuffer {
    // maxPending caps the bytes held for one unfinished frame, so a corrupt
    // length cannot make the page buffer without end.
    constructor(maxPending) {
      this.pending = new Uint8Array(0);
      this.maxPending = maxPending;
    }

    // push appends one message (an ArrayBuffer or a Uint8Array) and returns
    // the frames it completes, in order.
    push(message) {
      const incoming = message instanceof Uint8Array ? message : new Uint8Array(message);
      let bytes = incoming;
      if (this.pending.length > 0) {
        bytes = new Uint8Array(this.pending.length + incoming.length);
        bytes.set(this.pending, 0);
        bytes.set(incoming, this.pending.length);
      }

      const frames = [];
      let at = 0;
      while (at < bytes.length) {
        const decoded = decodeFrame(bytes, at);
        if (decoded === null) {
          break;
        }
        frames.push(decoded.frame);
        at = decoded.end;
      }

      this.pending = bytes.slice(at);
      if (this.pending.length > this.maxPending) {
        throw new ProtocolError(`unfinished frame larger than ${this.maxPending} bytes`);
      }
      return frames;
    }
  }

  // The codec is shared with chat.js, and visible to tests and the browser
  // console, as window.IrisChat.
  window.IrisChat = Object.freeze({
    Op,
    KIND_PLAIN,
    kindNames,
    ProtocolError,
    ReceiveBuffer,
    decodeFrame,
    encodeLogin2,
    encodeSend2,
    encodeAck2,
    encodeGetStatus,
    encodeReadReceipt,
    encodeTyping,
  });
})();
