package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// resultsFormatVersion is the first byte of MarshalResults output. A decoder rejects other
// versions, so a node never misreads the results of a node that runs a newer format.
const resultsFormatVersion = 1

// Flags of an encoded result.
const (
	resultDuplicate    = 1 << 0
	resultHasSeqTag    = 1 << 1
	resultHasBundle    = 1 << 2
	resultHasTimestamp = 1 << 3
	resultHasPrekey    = 1 << 4
	resultHasGroup     = 1 << 5
	resultHasErr       = 1 << 6

	resultKnownFlags = resultDuplicate | resultHasSeqTag | resultHasBundle | resultHasTimestamp |
		resultHasPrekey | resultHasGroup | resultHasErr
)

// Codes of the storage sentinel errors in an encoded Result.Err. Nodes of different versions
// exchange them, so never change or reuse a code. A new sentinel gets the next unused number.
const (
	errCodeClosed         = 1
	errCodeInboxFull      = 2
	errCodeOutOfOrder     = 3
	errCodeInvalidRequest = 4
	errCodeCommitFailed   = 5
	errCodeUnavailable    = 6
	errCodeCorrupted      = 7
	errCodeNotFound       = 8
	errCodePoolFull       = 9
	errCodeExists         = 10
	errCodeTooManyGroups  = 11
	errCodeNotAdmin       = 12
	errCodeGroupFull      = 13
	errCodeNotMember      = 14
)

// sentinelCodes pairs each wire code with its sentinel error.
var sentinelCodes = [...]struct {
	code     uint64
	sentinel error
}{
	{errCodeClosed, ErrClosed},
	{errCodeInboxFull, ErrInboxFull},
	{errCodeOutOfOrder, ErrOutOfOrder},
	{errCodeInvalidRequest, ErrInvalidRequest},
	{errCodeCommitFailed, ErrCommitFailed},
	{errCodeUnavailable, ErrUnavailable},
	{errCodeCorrupted, ErrCorrupted},
	{errCodeNotFound, ErrNotFound},
	{errCodePoolFull, ErrPoolFull},
	{errCodeExists, ErrExists},
	{errCodeTooManyGroups, ErrTooManyGroups},
	{errCodeNotAdmin, ErrNotAdmin},
	{errCodeGroupFull, ErrGroupFull},
	{errCodeNotMember, ErrNotMember},
}

var (
	// ErrBadResults is wrapped by UnmarshalResults errors.
	ErrBadResults = errors.New("storage: invalid encoded results")
	// ErrRemote is wrapped by a Result.Err decoded by UnmarshalResults when the error on the
	// sending node wrapped none of the storage sentinel errors. Its message is the original one.
	ErrRemote = errors.New("storage: error from another node")
)

// remoteError is a Result.Err decoded by UnmarshalResults. It has the message of the original
// error and wraps the sentinels that the original wrapped, or ErrRemote.
type remoteError struct {
	message   string
	sentinels []error
}

func (e *remoteError) Error() string   { return e.message }
func (e *remoteError) Unwrap() []error { return e.sentinels }

// MarshalResults encodes results compactly, for a leader's reply to forwarded ops:
//
//	version(1) uvarint(count) result...
//	result: flags(1) [seq tag(8)] count [bundle] [prekey] [group] [err]
//	bundle: identityKey signedPrekey signature timestamp
//	group:  id name createdMS uvarint(count) admin... uvarint(count) member...
//	err:    uvarint(count) code... message
//
// Result.Count is a zigzag varint, other integers are uvarints and the tag is 8 bytes,
// big-endian. Strings and byte strings are uvarint(length) followed by the bytes. Flags bit 0
// is Duplicate, and bits 1 to 6 mark that the seq and tag, a bundle, HasTimestamp, a prekey,
// a group and an error follow. The seq and tag are omitted when both are zero.
//
// An error is sent as its message and the codes of every storage sentinel it wraps, so
// errors.Is works on the receiving node. Other wrapped errors are lost. UnmarshalResults
// states what the decoded fields look like.
//
// The error result is always nil in this version. It keeps the signature of MarshalOps, so a
// later format can reject values it cannot encode.
func MarshalResults(results []Result) ([]byte, error) {
	size := 1 + binary.MaxVarintLen64
	for i := range results {
		r := &results[i]
		size += 64 + len(r.Prekey)
		if b := r.Bundle; b != nil {
			size += 4*binary.MaxVarintLen64 + len(b.IdentityKey) + len(b.SignedPrekey) + len(b.SignedPrekeySignature)
		}
		if g := r.Group; g != nil {
			size += 4*binary.MaxVarintLen64 + len(g.ID) + len(g.Name)
			for _, user := range g.Admins {
				size += binary.MaxVarintLen64 + len(user)
			}
			for _, user := range g.Members {
				size += binary.MaxVarintLen64 + len(user)
			}
		}
	}
	buf := make([]byte, 0, size)
	buf = append(buf, resultsFormatVersion)
	buf = binary.AppendUvarint(buf, uint64(len(results)))
	for i := range results {
		buf = appendResult(buf, &results[i])
	}
	return buf, nil
}

func appendResult(buf []byte, r *Result) []byte {
	flags := resultFlags(r)
	buf = append(buf, flags)
	if flags&resultHasSeqTag != 0 {
		buf = binary.AppendUvarint(buf, r.Seq)
		buf = binary.BigEndian.AppendUint64(buf, r.Tag)
	}
	buf = binary.AppendVarint(buf, int64(r.Count))

	if b := r.Bundle; b != nil {
		buf = appendBytes(buf, b.IdentityKey)
		buf = appendBytes(buf, b.SignedPrekey)
		buf = appendBytes(buf, b.SignedPrekeySignature)
		buf = binary.AppendUvarint(buf, b.SignedPrekeyTimestamp)
	}
	if r.Prekey != nil {
		buf = appendBytes(buf, r.Prekey)
	}
	if g := r.Group; g != nil {
		buf = appendString(buf, g.ID)
		buf = appendString(buf, g.Name)
		buf = binary.AppendUvarint(buf, g.CreatedMS)
		buf = appendStrings(buf, g.Admins)
		buf = appendStrings(buf, g.Members)
	}
	if r.Err != nil {
		buf = appendResultErr(buf, r.Err)
	}
	return buf
}

func resultFlags(r *Result) byte {
	var flags byte
	if r.Duplicate {
		flags |= resultDuplicate
	}
	if r.Seq != 0 || r.Tag != 0 {
		flags |= resultHasSeqTag
	}
	if r.Bundle != nil {
		flags |= resultHasBundle
		if r.Bundle.HasTimestamp {
			flags |= resultHasTimestamp
		}
	}
	if r.Prekey != nil {
		flags |= resultHasPrekey
	}
	if r.Group != nil {
		flags |= resultHasGroup
	}
	if r.Err != nil {
		flags |= resultHasErr
	}
	return flags
}

func appendStrings(buf []byte, list []string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(list)))
	for _, s := range list {
		buf = appendString(buf, s)
	}
	return buf
}

// appendResultErr appends the codes of the sentinels that err wraps, then its message. An
// error can wrap several, such as ErrUnavailable around ErrCorrupted.
func appendResultErr(buf []byte, err error) []byte {
	var codes []uint64
	for _, sc := range sentinelCodes {
		if errors.Is(err, sc.sentinel) {
			codes = append(codes, sc.code)
		}
	}
	buf = binary.AppendUvarint(buf, uint64(len(codes)))
	for _, code := range codes {
		buf = binary.AppendUvarint(buf, code)
	}
	return appendString(buf, err.Error())
}

// UnmarshalResults decodes the output of MarshalResults. Byte strings are copied, so data may
// be reused afterwards. Errors wrap ErrBadResults, and those inside a result give the offset
// of the invalid byte.
//
// Decoding keeps every field except these normalisations. An empty key of a bundle and an
// empty Admins or Members list decode as nil. Prekey keeps the difference between nil and
// empty. A Result.Err decodes as an error with the original message that wraps the same
// storage sentinels as the original. A bare sentinel decodes as the sentinel itself. An error that wrapped no sentinel known to this version decodes as an error
// wrapping ErrRemote, so unknown codes from a newer node are accepted, not rejected.
func UnmarshalResults(data []byte) ([]Result, error) {
	d := opsDecoder{data: data, errKind: ErrBadResults}
	if version := d.byte(); d.err == nil && version != resultsFormatVersion {
		return nil, fmt.Errorf("%w: format version %d, expected %d", ErrBadResults, version, resultsFormatVersion)
	}
	count := d.uvarint()
	// Every result takes at least two bytes (flags and count), which bounds the allocation
	// for hostile input.
	if d.err == nil && count > uint64(len(d.data)-d.off)/2 {
		return nil, fmt.Errorf("%w: result count %d exceeds the %d bytes left", ErrBadResults, count, len(d.data)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}

	results := make([]Result, count)
	for i := range results {
		d.decodeResult(&results[i])
		if d.err != nil {
			return nil, fmt.Errorf("result %d: %w", i, d.err)
		}
	}
	if d.off != len(d.data) {
		return nil, fmt.Errorf("%w: %d trailing bytes after %d results", ErrBadResults, len(d.data)-d.off, count)
	}
	return results, nil
}

func (d *opsDecoder) decodeResult(r *Result) {
	flags := d.byte()
	if d.err != nil {
		return
	}
	if flags&^resultKnownFlags != 0 || (flags&resultHasTimestamp != 0 && flags&resultHasBundle == 0) {
		d.fail(fmt.Sprintf("result flags %#x: only bits 0 to 6 are defined, and bit 3 (timestamp) needs bit 2 (bundle)", flags))
		return
	}

	r.Duplicate = flags&resultDuplicate != 0
	if flags&resultHasSeqTag != 0 {
		r.Seq = d.uvarint()
		r.Tag = d.uint64()
	}
	r.Count = d.int()

	if flags&resultHasBundle != 0 {
		r.Bundle = &KeyBundle{
			IdentityKey:           d.bytes(),
			SignedPrekey:          d.bytes(),
			SignedPrekeySignature: d.bytes(),
			SignedPrekeyTimestamp: d.uvarint(),
			HasTimestamp:          flags&resultHasTimestamp != 0,
		}
	}
	if flags&resultHasPrekey != 0 {
		r.Prekey = d.bytes()
		if d.err == nil && r.Prekey == nil {
			r.Prekey = []byte{}
		}
	}
	if flags&resultHasGroup != 0 {
		r.Group = &Group{ID: d.string(), Name: d.string(), CreatedMS: d.uvarint()}
		r.Group.Admins = d.strings("admin")
		r.Group.Members = d.strings("member")
	}
	if flags&resultHasErr != 0 {
		r.Err = d.resultErr()
	}
}

// int reads a zigzag varint that must fit an int.
func (d *opsDecoder) int() int {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.data[d.off:])
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	if int64(int(v)) != v {
		d.fail(fmt.Sprintf("count %d does not fit an int", v))
		return 0
	}
	d.off += n
	return int(v)
}

// strings reads a uvarint count and that many strings, or nil for a count of zero. role
// names the strings in errors.
func (d *opsDecoder) strings(role string) []string {
	count := d.uvarint()
	if d.err != nil || count == 0 {
		return nil
	}
	// Every string takes at least its length byte, which bounds the allocation.
	if count > uint64(len(d.data)-d.off) {
		d.fail(fmt.Sprintf("%s count %d exceeds the %d bytes left", role, count, len(d.data)-d.off))
		return nil
	}
	list := make([]string, count)
	for i := range list {
		list[i] = d.string()
	}
	return list
}

// resultErr reads the sentinel codes and message written by appendResultErr.
func (d *opsDecoder) resultErr() error {
	count := d.uvarint()
	// Every code takes one byte at least, and the message length one more.
	if d.err == nil && count >= uint64(len(d.data)-d.off) {
		d.fail(fmt.Sprintf("error code count %d exceeds the %d bytes left", count, len(d.data)-d.off))
	}
	if d.err != nil {
		return nil
	}

	var sentinels []error
	for range count {
		code := d.uvarint()
		for _, sc := range sentinelCodes {
			if sc.code == code {
				sentinels = append(sentinels, sc.sentinel)
				break
			}
		}
	}
	message := d.string()
	if d.err != nil {
		return nil
	}

	switch {
	case len(sentinels) == 0:
		sentinels = []error{ErrRemote}
	case len(sentinels) == 1 && message == sentinels[0].Error():
		return sentinels[0]
	}
	return &remoteError{message: message, sentinels: sentinels}
}
