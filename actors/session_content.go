package actors

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/fxamacker/cbor/v2"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/gateway/wire"
)

// Kinds of inbox entries besides plain and CBOR messages: the opcode the
// content has when it reaches a client live.
const (
	kindE2EE      = wire.OpE2EEDeliver
	kindGroupMsg  = wire.OpGroupDeliver
	kindSenderKey = wire.OpGroupSenderKey
)

// Reasons for rejected content frames.
const (
	reasonInvalidCBOR   = "invalid_cbor"
	reasonInvalidBundle = "invalid_key_bundle"
	reasonOverloaded    = "overloaded"
)

// cborLimits bound what a client's CBOR may make the server do: nesting
// depth and element counts are checked before anything is allocated.
var cborLimits = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:  16,
		MaxArrayElements: 4096,
		MaxMapPairs:      4096,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// cborEncoding writes the server's CBOR replies with sorted map keys.
var cborEncoding = func() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// isCBORMap reports whether b is exactly one well-formed CBOR map within
// cborLimits, without duplicate keys in any of its maps. Only decoding
// finds duplicates (Wellformed does not look for them); the message size
// limit bounds the work.
func isCBORMap(b []byte) bool {
	const majorMap = 5
	if len(b) == 0 || b[0]>>5 != majorMap || cborLimits.Wellformed(b) != nil {
		return false
	}
	var v any
	return cborLimits.Unmarshal(b, &v) == nil
}

// sendCBOR stores a CBOR_MSG for its target, byte for byte.
func (s *session) sendCBOR(ctx actor.Context, f *wire.Frame) {
	if !isCBORMap(f.Msg) {
		s.rejectReason(reasonInvalidCBOR)
		return
	}
	s.send(ctx, f.Target, kindCBOR, f.Msg, false, 0, "", 0)
}

// sendE2EE stores an E2EE message for its recipient as the body of the
// 0x24 frame the recipient gets, with header and ciphertext unchanged.
func (s *session) sendE2EE(ctx actor.Context, f *wire.Frame) {
	body := make([]byte, 0, 2+len(s.user)+2+len(f.Header)+4+len(f.Cipher))
	body = appendLen16(body, []byte(s.user))
	body = appendLen16(body, f.Header)
	body = appendLen32(body, f.Cipher)
	s.send(ctx, f.Target, kindE2EE, body, false, 0, "", 0)
}

// relay pushes a frame to the live sessions of user, best effort.
func (s *session) relay(ctx actor.Context, user string, frame []byte) {
	s.toShard(ctx, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Relay{Relay: &irispb.Relay{User: user, Frame: frame}}})
}

// typing relays a typing state. It is the first thing shed under load and
// costs a token like a send, so that it cannot flood its target.
func (s *session) typing(ctx actor.Context, f *wire.Frame) {
	if s.shed(shedTyping, &s.cfg.Stats.TypingShed) {
		return
	}
	if _, ok := s.bucket.Take(1); !ok {
		s.cfg.Stats.RateLimited.Add(1)
		return
	}
	s.relay(ctx, string(f.Target), wire.AppendTyping(nil, s.user, f.State))
}

// receipt relays a read receipt to the message's original sender.
func (s *session) receipt(ctx actor.Context, f *wire.Frame) {
	if s.shed(shedReceipts, &s.cfg.Stats.ReceiptShed) {
		return
	}
	if _, ok := s.bucket.Take(1); !ok {
		s.cfg.Stats.RateLimited.Add(1)
		return
	}
	s.relay(ctx, string(f.Sender), wire.AppendReceipt(nil, f.MsgID, s.user, uint64(time.Now().UnixMilli())))
}

// getStatus requests the target's presence from its shard, unless presence queries
// are being shed.
func (s *session) getStatus(ctx actor.Context, f *wire.Frame) {
	if s.shed(shedPresence, &s.cfg.Stats.StatusShed) {
		s.rejectReason(reasonOverloaded)
		return
	}
	s.askStatus(ctx, string(f.Target))
}

// Shedding levels: under overload, typing goes first, then presence
// queries, then read receipts. Messages are never shed.
const (
	shedTyping   = 1
	shedPresence = 2
	shedReceipts = 3
)

// shed reports whether work of the given level is dropped now, counting it.
func (s *session) shed(level int, counter interface{ Add(uint64) uint64 }) bool {
	if s.cfg.Load == nil || s.cfg.Load.Level() < level {
		return false
	}
	counter.Add(1)
	return true
}

// bundleUpload is the CBOR map of a prekey upload.
type bundleUpload struct {
	IdentityKey           []byte   `cbor:"identity_key"`
	SignedPrekey          []byte   `cbor:"signed_prekey"`
	SignedPrekeySignature []byte   `cbor:"signed_prekey_signature"`
	SignedPrekeyTimestamp *uint64  `cbor:"signed_prekey_timestamp"`
	OneTimePrekeys        [][]byte `cbor:"one_time_prekeys"`
}

// Sizes of key bundle fields (X25519 keys and an XEdDSA signature).
const (
	keySize       = 32
	signatureSize = 64
)

// uploadKeys validates a key bundle upload and sends it to the user's
// shard. An upload without identity and signed prekey fields adds one-time
// prekeys to the stored bundle; with an empty list it only reports the pool
// size, which is how a client learns that its pool is running low.
func (s *session) uploadKeys(ctx actor.Context, f *wire.Frame) {
	if wait, ok := s.bucket.Take(1); !ok { // an upload changes the store
		s.rateLimited(false, 0, wait)
		return
	}
	var up bundleUpload
	if err := cborLimits.Unmarshal(f.Bundle, &up); err != nil {
		s.writeKeyError("invalid_cbor")
		return
	}
	req := &irispb.KeyRequest{User: s.user}
	full := up.IdentityKey != nil || up.SignedPrekey != nil || up.SignedPrekeySignature != nil
	if full {
		if len(up.IdentityKey) != keySize || len(up.SignedPrekey) != keySize || len(up.SignedPrekeySignature) != signatureSize {
			s.writeKeyError("invalid_key_size") // identity_key and signed_prekey 32 bytes, signature 64
			return
		}
		req.HasBundle = true
		req.IdentityKey, req.SignedPrekey, req.SignedPrekeySignature = up.IdentityKey, up.SignedPrekey, up.SignedPrekeySignature
		if up.SignedPrekeyTimestamp != nil {
			req.HasTimestamp, req.SignedPrekeyTimestamp = true, *up.SignedPrekeyTimestamp
		}
	}
	for _, k := range up.OneTimePrekeys {
		if len(k) != keySize {
			s.writeKeyError("invalid_prekey_size") // one-time prekeys are 32 bytes
			return
		}
	}
	req.OneTimePrekeys = up.OneTimePrekeys
	s.toShard(ctx, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Key{Key: req}})
}

// fetchKeys requests from the owner's shard the owner's bundle and one one-time
// prekey.
func (s *session) fetchKeys(ctx actor.Context, f *wire.Frame) {
	// Each fetch uses up one of the owner's one-time prekeys, so fetches
	// cost a token like a send: a client cannot drain a pool at will.
	if wait, ok := s.bucket.Take(1); !ok {
		s.rateLimited(false, 0, wait)
		return
	}
	s.toShard(ctx, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Key{Key: &irispb.KeyRequest{User: string(f.User), Fetch: true}}})
}

func (s *session) writeKeyError(reason string) {
	s.cfg.Stats.BadFrames.Add(1)
	s.writeKeyReply(map[string]any{"status": "error", "reason": reason})
}

func (s *session) writeKeyReply(m map[string]any) {
	b, err := cborEncoding.Marshal(m)
	if err != nil {
		s.cfg.Logger.Error("encode key reply failed", "user", s.user, "err", err)
		return
	}
	s.out = wire.AppendPrekeyResponse(s.out, b)
}

// finishKeys replies to an upload or fetch with the CBOR map of 0x22.
func (s *session) finishKeys(r *irispb.KeyReply, fetch bool) {
	switch {
	case r.Status == "not_found":
		s.writeKeyReply(map[string]any{"status": "not_found"})
	case r.Status != "ok" && r.Count > 0:
		s.writeKeyReply(map[string]any{"status": "error", "reason": r.Reason, "one_time_prekeys": r.Count})
	case r.Status != "ok":
		s.writeKeyReply(map[string]any{"status": "error", "reason": r.Reason})
	case !fetch:
		s.writeKeyReply(map[string]any{"status": "ok", "one_time_prekeys": r.Count})
	default:
		m := map[string]any{
			"status":                  "ok",
			"identity_key":            r.IdentityKey,
			"signed_prekey":           r.SignedPrekey,
			"signed_prekey_signature": r.SignedPrekeySignature,
			"one_time_prekeys_left":   r.Count,
		}
		if r.HasTimestamp {
			m["signed_prekey_timestamp"] = r.SignedPrekeyTimestamp
		}
		if len(r.OneTimePrekey) > 0 {
			m["one_time_prekey"] = r.OneTimePrekey
		}
		s.writeKeyReply(m)
	}
}

// groupRequest sends a group operation to the group's grain.
func (s *session) groupRequest(ctx actor.Context, req *irispb.GroupRequest) {
	req.User = s.user
	req.TimeMs = uint64(time.Now().UnixMilli())
	ctx.Request(s.cfg.Routers.For(req.Group), &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Group{Group: req}})
}

// handleGroupFrame turns a group frame into a request to the group grain.
func (s *session) handleGroupFrame(ctx actor.Context, f *wire.Frame) {
	if f.Op == wire.OpGroupCreate || f.Op == wire.OpGroupLeave || f.Op == wire.OpGroupAddMember {
		// Each changes the store, so each costs a token like a send.
		if wait, ok := s.bucket.Take(1); !ok {
			s.rateLimited(false, 0, wait)
			return
		}
	}
	switch f.Op {
	case wire.OpGroupCreate:
		s.groupRequest(ctx, &irispb.GroupRequest{Op: irispb.GroupOp_GROUP_OP_CREATE, Group: newGroupID(), Name: string(f.Name)})
	case wire.OpGroupLeave:
		s.groupRequest(ctx, &irispb.GroupRequest{Op: irispb.GroupOp_GROUP_OP_LEAVE, Group: string(f.Group)})
	case wire.OpGroupRoster:
		s.groupRequest(ctx, &irispb.GroupRequest{Op: irispb.GroupOp_GROUP_OP_ROSTER, Group: string(f.Group)})
	case wire.OpGroupAddMember:
		s.groupRequest(ctx, &irispb.GroupRequest{Op: irispb.GroupOp_GROUP_OP_ADD, Group: string(f.Group), Member: string(f.User)})
	case wire.OpGroupMessage, wire.OpGroupSenderKey:
		s.cfg.Stats.Received.Add(1)
		if wait, ok := s.bucket.Take(1); !ok {
			s.rateLimited(false, 0, wait)
			return
		}
		req := &irispb.GroupRequest{Op: irispb.GroupOp_GROUP_OP_MESSAGE, Group: string(f.Group),
			Header: clone(f.Header), Cipher: clone(f.Cipher)}
		if f.Op == wire.OpGroupSenderKey {
			req = &irispb.GroupRequest{Op: irispb.GroupOp_GROUP_OP_SENDER_KEY, Group: string(f.Group), Key: clone(f.Key)}
		}
		s.groupRequest(ctx, req)
	}
}

// finishGroup writes the reply to a group operation.
func (s *session) finishGroup(r *irispb.GroupReply) {
	if r.Error != "" {
		s.rejectReason(r.Error)
		return
	}
	switch r.Op {
	case irispb.GroupOp_GROUP_OP_CREATE:
		s.out = wire.AppendGroupMember(s.out, r.Group, s.user)
	case irispb.GroupOp_GROUP_OP_ADD:
		if r.AlreadyMember {
			// The other members get no second notice, but the requester gets its reply.
			s.out = wire.AppendGroupMember(s.out, r.Group, r.Member)
		}
	case irispb.GroupOp_GROUP_OP_LEAVE:
		s.out = wire.AppendGroupLeaveOK(s.out)
	case irispb.GroupOp_GROUP_OP_ROSTER:
		roster, err := cborEncoding.Marshal(r.Members)
		if err != nil {
			s.cfg.Logger.Error("encode roster failed", "user", s.user, "group", r.Group, "err", err)
			return
		}
		s.out = wire.AppendGroupRoster(s.out, r.Group, roster)
	}
}

// newGroupID returns a random group id of 16 hex digits.
func newGroupID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func appendLen16(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

func appendLen32(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}
