package wire

// Error is a rejected frame. Reason is a short snake_case ASCII string meant
// for the body of an ERROR (0xFE) frame. When Fatal is false, the decoder has
// skipped the frame and the connection can go on. When Fatal is true, the
// decoder cannot find where the next frame starts, so the connection must be
// closed.
type Error struct {
	Reason string
	Fatal  bool
}

// Error returns the reason, marked when the error is fatal.
func (e *Error) Error() string {
	if e.Fatal {
		return "wire: " + e.Reason + " (fatal)"
	}
	return "wire: " + e.Reason
}

// Errors the Decoder returns. They are shared values, so callers can compare
// them with errors.Is and must not modify them.
var (
	// ErrUnknownOpcode is a frame whose opcode no client may send.
	ErrUnknownOpcode = &Error{Reason: "unknown_opcode", Fatal: true}
	// ErrBufferOverflow is a peer that sent more bytes than Limits.RecvBuffer
	// allows to be held.
	ErrBufferOverflow = &Error{Reason: "buffer_overflow", Fatal: true}
	// ErrInvalidLogin is a LOGIN whose user name is empty, too long or
	// invalid. It is fatal because a LOGIN has no length field.
	ErrInvalidLogin = &Error{Reason: "invalid_user_name", Fatal: true}
	// ErrLoginTokenTooLong is a LOGIN whose token exceeds Limits.MaxToken.
	ErrLoginTokenTooLong = &Error{Reason: "token_too_long", Fatal: true}

	// ErrInvalidUserName is a user name that is empty, too long, not UTF-8,
	// or contains ':' or a control character.
	ErrInvalidUserName = &Error{Reason: "invalid_user_name"}
	// ErrInvalidTarget is a recipient that is not a valid user name.
	ErrInvalidTarget = &Error{Reason: "invalid_target"}
	// ErrInvalidSender is a read receipt's original sender that is not a
	// valid user name.
	ErrInvalidSender = &Error{Reason: "invalid_sender"}
	// ErrTokenTooLong is a LOGIN2 token longer than Limits.MaxToken.
	ErrTokenTooLong = &Error{Reason: "token_too_long"}
	// ErrMessageTooLarge is a message or ciphertext longer than
	// Limits.MaxMessage, also inside a batch.
	ErrMessageTooLarge = &Error{Reason: "message_too_large"}
	// ErrCBORTooLarge is a CBOR_MSG payload longer than Limits.MaxCBOR.
	ErrCBORTooLarge = &Error{Reason: "cbor_too_large"}
	// ErrBatchTooLarge is a batch blob longer than Limits.MaxBatchBytes.
	ErrBatchTooLarge = &Error{Reason: "batch_too_large"}
	// ErrBatchTooManyEntries is a batch of more than Limits.MaxBatchEntries.
	ErrBatchTooManyEntries = &Error{Reason: "batch_too_many_entries"}
	// ErrInvalidBatch is a batch blob whose entries do not fill it exactly.
	ErrInvalidBatch = &Error{Reason: "invalid_batch"}
	// ErrKeyBundleTooLarge is a key bundle longer than Limits.MaxKeyBundle.
	ErrKeyBundleTooLarge = &Error{Reason: "key_bundle_too_large"}
	// ErrHeaderTooLarge is an E2EE header longer than Limits.MaxE2EEHeader.
	ErrHeaderTooLarge = &Error{Reason: "header_too_large"}
	// ErrInvalidGroupID is a group id that is empty or longer than
	// Limits.MaxGroupID.
	ErrInvalidGroupID = &Error{Reason: "invalid_group_id"}
	// ErrInvalidGroupName is a group name that is empty, too long, not
	// UTF-8, or contains a control character.
	ErrInvalidGroupName = &Error{Reason: "invalid_group_name"}
	// ErrSenderKeyTooLarge is sender-key data longer than Limits.MaxSenderKey.
	ErrSenderKeyTooLarge = &Error{Reason: "sender_key_too_large"}
	// ErrInvalidMessageID is a read receipt's message id that is empty or
	// longer than Limits.MaxMessageID.
	ErrInvalidMessageID = &Error{Reason: "invalid_message_id"}
)
