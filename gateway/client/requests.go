package client

import (
	"context"
	"fmt"
)

// Login logs in with the v1 LOGIN frame and waits for LOGIN_OK. A rejected
// login returns a *ServerError, after which the server closes the
// connection. Messages waiting in the inbox follow LOGIN_OK as OpReliable
// frames and are left for Next.
func (c *Conn) Login(ctx context.Context, user string) error {
	return c.login(ctx, user, AppendLogin(nil, user))
}

// LoginToken logs in with the v1 LOGIN frame carrying "user:jwt".
func (c *Conn) LoginToken(ctx context.Context, user, jwt string) error {
	return c.login(ctx, user, AppendLoginToken(nil, user, jwt))
}

// Login2 logs in with the v2 LOGIN2 frame. After LOGIN_OK the session
// receives OpDeliver frames instead of OpReliable.
func (c *Conn) Login2(ctx context.Context, user, token string) error {
	request, err := AppendLogin2(nil, user, token)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return c.login(ctx, user, request)
}

// login writes request alone and waits for the reply before returning, which
// v1 needs: its LOGIN has no length, so any byte written behind it in the
// same read would become part of the user name.
func (c *Conn) login(ctx context.Context, user string, request []byte) error {
	_, err := c.waitFor(ctx, request, func(f Frame) bool { return f.Op == OpLoginOK })
	if err != nil {
		return fmt.Errorf("client: login as %q failed: %w", user, err)
	}
	c.userMu.Lock()
	c.user = user
	c.userMu.Unlock()
	return nil
}

// Send sends a v1 plain message. The server does not reply.
func (c *Conn) Send(target string, msg []byte) error {
	return c.writeFrame(AppendSend(nil, target, msg))
}

// SendSeq sends a v1 plain message that carries the sender's own sequence
// number.
func (c *Conn) SendSeq(target string, seq uint64, msg []byte) error {
	return c.writeFrame(AppendSendSeq(nil, target, seq, msg))
}

// BatchSend sends several plain messages to one target in one frame.
func (c *Conn) BatchSend(target string, msgs [][]byte) error {
	return c.writeFrame(AppendBatchSend(nil, target, msgs))
}

// Ack acknowledges the OpReliable delivery with this id.
func (c *Conn) Ack(id []byte) error {
	return c.WriteRaw(AppendAck(nil, id))
}

// SendCBOR sends a message whose payload is an encoded CBOR map. The server
// delivers the bytes unchanged.
func (c *Conn) SendCBOR(target string, cbor []byte) error {
	return c.writeFrame(AppendCBORMessage(nil, target, cbor))
}

// Send2 sends a v2 message. The server replies with OpAccepted or
// OpRejected carrying cid, which Next returns.
func (c *Conn) Send2(cid uint64, target string, msg []byte) error {
	return c.writeFrame(AppendSend2(nil, cid, target, msg))
}

// Ack2 acknowledges every v2 delivery up to and including seq.
func (c *Conn) Ack2(seq uint64) error {
	return c.WriteRaw(AppendAck2(nil, seq))
}

// SendE2EE sends an end-to-end encrypted message. The server relays header
// and cipher byte for byte.
func (c *Conn) SendE2EE(recipient string, header, cipher []byte) error {
	return c.writeFrame(AppendE2EESend(nil, recipient, header, cipher))
}

// SendGroup sends an encrypted message to every other member of a group.
func (c *Conn) SendGroup(group string, header, cipher []byte) error {
	return c.writeFrame(AppendGroupSend(nil, group, header, cipher))
}

// SendSenderKey distributes this user's sender key for a group.
func (c *Conn) SendSenderKey(group string, key []byte) error {
	return c.writeFrame(AppendGroupSenderKey(nil, group, key))
}

// AddGroupMember adds user to a group; only the group admin may. Every
// member, the new one included, then receives an OpGroupMember frame.
func (c *Conn) AddGroupMember(group, user string) error {
	return c.writeFrame(AppendGroupAddMember(nil, group, user))
}

// TypingStart notifies target that this user started typing. Delivery is best
// effort.
func (c *Conn) TypingStart(target string) error {
	return c.writeFrame(AppendTyping(nil, target, true))
}

// TypingStop notifies target that this user stopped typing.
func (c *Conn) TypingStop(target string) error {
	return c.writeFrame(AppendTyping(nil, target, false))
}

// ReadReceipt notifies the original sender of a message that it was read.
// Delivery is best effort.
func (c *Conn) ReadReceipt(messageID []byte, originalSender string) error {
	return c.writeFrame(AppendReadReceipt(nil, messageID, originalSender))
}

// Status is the presence of a user as the server reports it.
type Status struct {
	// State is 1 while the user has an open connection, 0 otherwise.
	State byte
	// Seen is 0 while online or if the user was never seen, else the
	// last-seen time in Unix seconds.
	Seen uint64
}

// GetStatus requests the presence of target and waits for the reply.
func (c *Conn) GetStatus(ctx context.Context, target string) (Status, error) {
	request, err := AppendGetStatus(nil, target)
	if err != nil {
		return Status{}, fmt.Errorf("client: %w", err)
	}
	f, err := c.waitFor(ctx, request, func(f Frame) bool {
		return f.Op == OpStatus && f.User == target
	})
	if err != nil {
		return Status{}, fmt.Errorf("client: status of %q failed: %w", target, err)
	}
	return Status{State: f.State, Seen: f.Seen}, nil
}

// UploadPrekeys uploads an encoded CBOR key bundle and returns the server's
// CBOR reply map.
func (c *Conn) UploadPrekeys(ctx context.Context, bundle []byte) ([]byte, error) {
	request, err := AppendPrekeyUpload(nil, bundle)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	f, err := c.waitFor(ctx, request, func(f Frame) bool { return f.Op == OpPrekeyReply })
	if err != nil {
		return nil, fmt.Errorf("client: prekey upload failed: %w", err)
	}
	return f.Payload, nil
}

// FetchPrekeys fetches the key bundle of user and returns the server's CBOR
// reply map. Each fetch consumes one of the user's one-time prekeys.
func (c *Conn) FetchPrekeys(ctx context.Context, user string) ([]byte, error) {
	request, err := AppendPrekeyFetch(nil, user)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	f, err := c.waitFor(ctx, request, func(f Frame) bool { return f.Op == OpPrekeyReply })
	if err != nil {
		return nil, fmt.Errorf("client: prekey fetch for %q failed: %w", user, err)
	}
	return f.Payload, nil
}

// CreateGroup creates a group with this user as admin and returns its id.
// It waits for the OpGroupMember frame that names this user, so it must
// follow a login.
func (c *Conn) CreateGroup(ctx context.Context, name string) (string, error) {
	request, err := AppendGroupCreate(nil, name)
	if err != nil {
		return "", fmt.Errorf("client: %w", err)
	}
	self := c.User()
	f, err := c.waitFor(ctx, request, func(f Frame) bool {
		return f.Op == OpGroupMember && f.User == self
	})
	if err != nil {
		return "", fmt.Errorf("client: create group %q failed: %w", name, err)
	}
	return f.Group, nil
}

// LeaveGroup leaves a group and waits for the server's OK.
func (c *Conn) LeaveGroup(ctx context.Context, group string) error {
	request, err := AppendGroupLeave(nil, group)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if _, err := c.waitFor(ctx, request, func(f Frame) bool { return f.Op == OpGroupOK }); err != nil {
		return fmt.Errorf("client: leave group %q failed: %w", group, err)
	}
	return nil
}

// GroupRoster returns a group's member names as the server's encoded CBOR
// array.
func (c *Conn) GroupRoster(ctx context.Context, group string) ([]byte, error) {
	request, err := AppendGroupRosterGet(nil, group)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	f, err := c.waitFor(ctx, request, func(f Frame) bool {
		return f.Op == OpGroupRoster && f.Group == group
	})
	if err != nil {
		return nil, fmt.Errorf("client: roster of group %q failed: %w", group, err)
	}
	return f.Payload, nil
}
