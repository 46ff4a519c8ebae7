// Package harvest is the spec's third data source, "Data Source Setup":
// flatfiler asks a partner's XML endpoint for a user's data
// (<PartnerRequest> with a UserList, AccountList or TransactionList) and
// applies the signed <PartnerResponse>s through the pipeline, as files are.
package harvest

import (
	"bytes"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
)

// KeySize is the shared key's length in bytes: the signature XORs it with
// a SHA-512 hash, so it is as long as one (the spec's example key has 128
// hex digits).
const KeySize = sha512.Size

// ParseKey decodes a partner's shared key from hex.
func ParseKey(s string) ([]byte, error) {
	key, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("harvest key: not hex: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("harvest key: %d bytes (%d hex digits); the signature needs %d (%d hex digits)",
			len(key), len(s), KeySize, 2*KeySize)
	}
	return key, nil
}

// Canonical is what a signature covers, as the spec's "Signature
// Generation" steps 1 and 2 say: the inner body of the top-level element
// with leading and trailing whitespace removed from each line and the
// newlines removed.
func Canonical(inner []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(inner))
	for line := range bytes.Lines(inner) {
		out.Write(bytes.TrimSpace(line))
	}
	return out.Bytes()
}

// xorHash is the spec's steps 3 to 5 over a hash: each byte XORed with
// the key's.
func xorHash(sum, key []byte) []byte {
	out := make([]byte, len(sum))
	for i := range sum {
		out[i] = sum[i] ^ key[i]
	}
	return out
}

// Sign is the signature of a document whose top-level element holds inner:
// SHA-512 of Canonical(inner), XORed with the key, in hex.
func Sign(inner, key []byte) string {
	sum := sha512.Sum512(Canonical(inner))
	return hex.EncodeToString(xorHash(sum[:], key))
}

// ErrSignature is a response whose signature is not the one its body and
// the partner's key give.
var ErrSignature = errors.New("signature does not match the body and the partner's key")

// Verify checks a signature made by Sign, in constant time; hex digits in
// either case.
func Verify(inner, key []byte, signature string) error {
	got, err := hex.DecodeString(signature)
	if err != nil || len(got) != sha512.Size {
		return fmt.Errorf("%w: %q is not %d bytes of hex", ErrSignature, signature, sha512.Size)
	}
	sum := sha512.Sum512(Canonical(inner))
	if subtle.ConstantTimeCompare(got, xorHash(sum[:], key)) != 1 {
		return ErrSignature
	}
	return nil
}
