package wire

import "fmt"

// Limits caps the size of each field a client may send, in bytes unless noted.
// A zero field means the value from DefaultLimits, which NewDecoder fills in.
// A frame whose field exceeds its cap is skipped with a non-fatal *Error.
type Limits struct {
	// MaxUserName caps the user name in LOGIN, LOGIN2, prekey fetch, group
	// add member and the original sender of a read receipt. Default 256.
	// Values above MaxUserNameLen have no effect.
	MaxUserName int
	// MaxTarget caps the recipient of SEND, BATCH_SEND, GET_STATUS,
	// SEND_SEQ, SEND2, CBOR_MSG, E2EE and typing frames. Default 256. Values
	// above MaxUserNameLen have no effect.
	MaxTarget int
	// MaxToken caps the JWT in LOGIN and LOGIN2. Default 4096.
	MaxToken int
	// MaxMessage caps one message: the body of SEND, SEND_SEQ and SEND2,
	// each BATCH_SEND entry, and the ciphertext of E2EE and group messages.
	// Default 65536.
	MaxMessage int
	// MaxCBOR caps the CBOR map of CBOR_MSG. Default 262144.
	MaxCBOR int
	// MaxKeyBundle caps the CBOR key bundle of a prekey upload. Default 8192.
	MaxKeyBundle int
	// MaxE2EEHeader caps the header of E2EE and group messages. Default 1024.
	MaxE2EEHeader int
	// MaxBatchBytes caps the blob of BATCH_SEND. Default 1048576.
	MaxBatchBytes int
	// MaxBatchEntries caps the number of messages in one BATCH_SEND.
	// Default 1000.
	MaxBatchEntries int
	// MaxGroupID caps a group id. Default 128.
	MaxGroupID int
	// MaxGroupName caps the name given at group creation. Default 256.
	MaxGroupName int
	// MaxSenderKey caps the key data of a sender-key frame. Default 8192.
	MaxSenderKey int
	// MaxMessageID caps the message id in a read receipt. Default 256.
	MaxMessageID int
	// RecvBuffer caps the bytes a Decoder holds that Next has not returned
	// yet, not counting the frame at the head of the buffer as far as its
	// length fields have arrived. One frame whose fields fit their own limits
	// may therefore be larger, such as a full 1 MiB batch. Default 1048576.
	RecvBuffer int
}

// DefaultLimits returns the protocol's default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxUserName:     256,
		MaxTarget:       256,
		MaxToken:        4 << 10,
		MaxMessage:      64 << 10,
		MaxCBOR:         256 << 10,
		MaxKeyBundle:    8 << 10,
		MaxE2EEHeader:   1 << 10,
		MaxBatchBytes:   1 << 20,
		MaxBatchEntries: 1000,
		// NOTE: the protocol fixes no cap for group ids, names, sender keys,
		// tokens or receipt message ids. These defaults are judgement calls:
		// ids the server generates are far shorter than 128 bytes, and a
		// sender-key distribution message is smaller than a whole key bundle.
		MaxGroupID:   128,
		MaxGroupName: 256,
		MaxSenderKey: 8 << 10,
		MaxMessageID: 256,
		RecvBuffer:   1 << 20,
	}
}

// Validate reports the first negative field. Zero fields are valid because
// they mean the default.
func (l Limits) Validate() error {
	for _, f := range l.fields() {
		if *f.value < 0 {
			return fmt.Errorf("wire: invalid limit %s = %d: set 0 for the default or a positive value", f.name, *f.value)
		}
	}
	return nil
}

// withDefaults returns l with every zero or negative field set to its default.
func (l Limits) withDefaults() Limits {
	defaults := DefaultLimits()
	own := l.fields()
	def := defaults.fields()
	for i := range own {
		if *own[i].value <= 0 {
			*own[i].value = *def[i].value
		}
	}
	return l
}

type namedLimit struct {
	name  string
	value *int
}

// fields lists the limits in declaration order for Validate and withDefaults.
// A test checks that it names every field of Limits.
func (l *Limits) fields() []namedLimit {
	return []namedLimit{
		{"MaxUserName", &l.MaxUserName},
		{"MaxTarget", &l.MaxTarget},
		{"MaxToken", &l.MaxToken},
		{"MaxMessage", &l.MaxMessage},
		{"MaxCBOR", &l.MaxCBOR},
		{"MaxKeyBundle", &l.MaxKeyBundle},
		{"MaxE2EEHeader", &l.MaxE2EEHeader},
		{"MaxBatchBytes", &l.MaxBatchBytes},
		{"MaxBatchEntries", &l.MaxBatchEntries},
		{"MaxGroupID", &l.MaxGroupID},
		{"MaxGroupName", &l.MaxGroupName},
		{"MaxSenderKey", &l.MaxSenderKey},
		{"MaxMessageID", &l.MaxMessageID},
		{"RecvBuffer", &l.RecvBuffer},
	}
}
