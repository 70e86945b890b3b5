package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// KeyBundle is the public part of a user's end-to-end encryption keys that others fetch to
// start a session with the user. The store treats every byte field as opaque.
type KeyBundle struct {
	IdentityKey           []byte
	SignedPrekey          []byte
	SignedPrekeySignature []byte
	SignedPrekeyTimestamp uint64 // meaningful only when HasTimestamp is set
	HasTimestamp          bool
}

// bundleRecord is the value stored under 'k' user. The pool of one-time prekeys is the range
// of 'p' user 0x00 index keys with firstPrekey <= index < nextPrekey, so the oldest prekey is
// always at firstPrekey and an upload appends at nextPrekey.
type bundleRecord struct {
	bundle      KeyBundle
	firstPrekey uint64
	nextPrekey  uint64
}

func (r *bundleRecord) poolSize() uint64 {
	return r.nextPrekey - r.firstPrekey
}

const bundleHasTimestamp = 1 << 0

// encode returns firstPrekey(8) nextPrekey(8) flags(1) timestamp(8) followed by the identity
// key, the signed prekey and its signature, each as uvarint(length) bytes.
func (r *bundleRecord) encode() []byte {
	b := &r.bundle
	v := make([]byte, 0, 25+3*binary.MaxVarintLen64+len(b.IdentityKey)+len(b.SignedPrekey)+len(b.SignedPrekeySignature))
	v = binary.BigEndian.AppendUint64(v, r.firstPrekey)
	v = binary.BigEndian.AppendUint64(v, r.nextPrekey)
	var flags byte
	if b.HasTimestamp {
		flags |= bundleHasTimestamp
	}
	v = append(v, flags)
	v = binary.BigEndian.AppendUint64(v, b.SignedPrekeyTimestamp)
	v = appendBytes(v, b.IdentityKey)
	v = appendBytes(v, b.SignedPrekey)
	return appendBytes(v, b.SignedPrekeySignature)
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

// decodeBundle decodes a bundle record. The keys are copied, because Pebble reuses the value's
// memory.
func decodeBundle(v []byte) (bundleRecord, error) {
	d := opsDecoder{data: v, errKind: ErrCorrupted}
	r := bundleRecord{firstPrekey: d.uint64(), nextPrekey: d.uint64()}
	flags := d.byte()
	r.bundle = KeyBundle{
		SignedPrekeyTimestamp: d.uint64(),
		HasTimestamp:          flags&bundleHasTimestamp != 0,
		IdentityKey:           d.bytes(),
		SignedPrekey:          d.bytes(),
		SignedPrekeySignature: d.bytes(),
	}
	switch {
	case d.err != nil:
		return bundleRecord{}, fmt.Errorf("key bundle: %w", d.err)
	case d.off != len(v):
		return bundleRecord{}, fmt.Errorf("%w: key bundle has %d trailing bytes", ErrCorrupted, len(v)-d.off)
	case flags&^bundleHasTimestamp != 0 || r.firstPrekey > r.nextPrekey:
		return bundleRecord{}, fmt.Errorf("%w: key bundle has flags %#x and prekey range [%d, %d)", ErrCorrupted, flags, r.firstPrekey, r.nextPrekey)
	}
	return r, nil
}

// getBundle reads user's bundle record through the batch.
func (a *applier) getBundle(user string) (rec bundleRecord, found bool, err error) {
	value, closer, err := a.batch.Get(bundleKey(user))
	if errors.Is(err, pebble.ErrNotFound) {
		return bundleRecord{}, false, nil
	}
	if err != nil {
		return bundleRecord{}, false, err
	}
	defer closer.Close()
	rec, err = decodeBundle(value)
	if err != nil {
		return bundleRecord{}, false, fmt.Errorf("user %q: %w", user, err)
	}
	return rec, true, nil
}

func validateKeyUpload(op *Op) error {
	if b := op.Bundle; b != nil {
		for _, field := range []struct {
			name string
			key  []byte
		}{
			{"identity key", b.IdentityKey},
			{"signed prekey", b.SignedPrekey},
			{"signed prekey signature", b.SignedPrekeySignature},
		} {
			if len(field.key) > maxKeyLen {
				return fmt.Errorf("%w: %s of %d bytes exceeds the maximum of %d", ErrInvalidRequest, field.name, len(field.key), maxKeyLen)
			}
		}
	}
	for i, prekey := range op.Prekeys {
		// A fetch returns a nil Prekey for an empty pool, so an empty prekey would look the same.
		if len(prekey) == 0 {
			return fmt.Errorf("%w: one-time prekey %d is empty", ErrInvalidRequest, i)
		}
		if len(prekey) > maxKeyLen {
			return fmt.Errorf("%w: one-time prekey %d of %d bytes exceeds the maximum of %d", ErrInvalidRequest, i, len(prekey), maxKeyLen)
		}
	}
	return nil
}

// uploadKeys applies OpKeyUpload. A rejected upload changes nothing, neither the bundle nor
// the pool.
func (a *applier) uploadKeys(op *Op) (Result, error) {
	if err := validateKeyUpload(op); err != nil {
		return Result{Err: fmt.Errorf("%s for %q: %w", op.Kind, op.User, err)}, nil
	}
	rec, found, err := a.getBundle(op.User)
	if err != nil {
		return Result{}, err
	}
	if !found && op.Bundle == nil {
		return Result{Err: fmt.Errorf("%w: user %q has no key bundle; upload one before adding prekeys alone", ErrNotFound, op.User)}, nil
	}

	size := rec.poolSize()
	limit := uint64(a.store.opts.MaxPrekeys)
	if size+uint64(len(op.Prekeys)) > limit {
		return Result{
			Count: int(size),
			Err: fmt.Errorf("%w: user %q has %d one-time prekeys, and %d more would exceed the maximum of %d",
				ErrPoolFull, op.User, size, len(op.Prekeys), limit),
		}, nil
	}

	if op.Bundle != nil {
		rec.bundle = *op.Bundle
	}
	for _, prekey := range op.Prekeys {
		if err := a.batch.Set(prekeyKey(op.User, rec.nextPrekey), prekey, nil); err != nil {
			return Result{}, err
		}
		rec.nextPrekey++
	}
	if err := a.setWritten(bundleKey(op.User), rec.encode()); err != nil {
		return Result{}, err
	}
	return Result{Count: int(rec.poolSize())}, nil
}

// fetchKeys applies OpKeyFetch. The prekey is deleted in the same batch that hands it out,
// so no two fetches, whether in one batch or in different ones, get the same prekey.
func (a *applier) fetchKeys(user string) (Result, error) {
	rec, found, err := a.getBundle(user)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{Err: fmt.Errorf("%w: user %q has no key bundle", ErrNotFound, user)}, nil
	}

	// decodeBundle copied the keys, so the result shares no memory with Pebble.
	res := Result{Bundle: &rec.bundle}
	if rec.poolSize() > 0 {
		key := prekeyKey(user, rec.firstPrekey)
		value, closer, err := a.batch.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			return Result{}, fmt.Errorf("%w: user %q is missing one-time prekey %d of the range [%d, %d)",
				ErrCorrupted, user, rec.firstPrekey, rec.firstPrekey, rec.nextPrekey)
		}
		if err != nil {
			return Result{}, err
		}
		res.Prekey = append([]byte{}, value...)
		closer.Close()

		if err := a.batch.Delete(key, nil); err != nil {
			return Result{}, err
		}
		rec.firstPrekey++
		if err := a.setWritten(bundleKey(user), rec.encode()); err != nil {
			return Result{}, err
		}
	}
	res.Count = int(rec.poolSize())
	return res, nil
}

// setWritten sets key in the batch and hides it from readers until the batch is committed.
func (a *applier) setWritten(key, value []byte) error {
	a.markWritten(key)
	return a.batch.Set(key, value, nil)
}

// markWritten makes readers of key wait until the batch is committed (see
// Store.readCommitted). For a change to the user-to-group index, key is the user's index
// prefix, which is what UserGroups waits on.
func (a *applier) markWritten(key []byte) {
	if a.written == nil {
		a.written = make(map[string]bool)
	}
	a.written[string(key)] = true
}

// KeyBundle returns user's key bundle and the number of one-time prekeys in the pool. It
// returns an error wrapping ErrNotFound when the user has never uploaded a bundle.
func (s *Store) KeyBundle(user string) (*KeyBundle, int, error) {
	if err := validateUser(user); err != nil {
		return nil, 0, err
	}
	key := bundleKey(user)
	var rec bundleRecord
	err := s.readCommitted(key, func(db *pebble.DB) error {
		value, closer, err := db.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("%w: user %q has no key bundle", ErrNotFound, user)
		}
		if err != nil {
			return fmt.Errorf("storage: read key bundle of %q: %w", user, err)
		}
		defer closer.Close()
		rec, err = decodeBundle(value)
		if err != nil {
			return fmt.Errorf("storage: user %q: %w", user, err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return &rec.bundle, int(rec.poolSize()), nil
}
