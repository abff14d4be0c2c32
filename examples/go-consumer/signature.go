package main

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// The three headers of signature scheme 2. A reader that knows trusted keys refuses any
// token reply or event without them.
const (
	signerHeader    = "Tokenkeeper-Signer"
	signedAtHeader  = "Tokenkeeper-Signed-At"
	signatureHeader = "Tokenkeeper-Signature"
	schemePrefix    = "v2."
	// How far ahead of this machine's clock a signing time may be (clock skew).
	maxFutureSkew = 60 * time.Second
)

// Verifier checks scheme-2 signatures: Ed25519 by one of the trusted NATS user keys over
// "tokenkeeper/2\n<subject>\n<signed-at>\n" followed by the exact payload bytes.
type Verifier struct {
	trusted map[string]nkeys.KeyPair
	maxAge  time.Duration
	now     func() time.Time
}

var (
	errUnsigned     = errors.New("unsigned")
	errUntrusted    = errors.New("signed by an untrusted key")
	errBadSignature = errors.New("signature does not verify over this subject and payload")
	errTooOld       = errors.New("signed too long ago")
	errFuture       = errors.New("signed in the future")
)

// NewVerifier takes the trusted signers' public keys (U...). An empty list is refused:
// a reader without trusted keys verifies nothing, and this example is about verifying.
func NewVerifier(publicKeys []string, maxAge time.Duration, now func() time.Time) (*Verifier, error) {
	trusted := map[string]nkeys.KeyPair{}
	for _, key := range publicKeys {
		key = strings.TrimSpace(key)
		if key == "" {
			continue
		}
		kp, err := nkeys.FromPublicKey(key)
		if err != nil || !nkeys.IsValidPublicUserKey(key) {
			return nil, errors.New("a trusted signer is not a NATS user public key (U...)")
		}
		trusted[key] = kp
	}
	if len(trusted) == 0 {
		return nil, errors.New("no trusted signer keys given")
	}
	return &Verifier{trusted: trusted, maxAge: maxAge, now: now}, nil
}

// SignedBytes is what the signer signed for a message on subject, signed at signedAt.
func SignedBytes(subject, signedAt string, payload []byte) []byte {
	head := "tokenkeeper/2\n" + subject + "\n" + signedAt + "\n"
	out := make([]byte, 0, len(head)+len(payload))
	return append(append(out, head...), payload...)
}

// Verify checks one message. subject is the subject the signature must cover: an event's
// own subject, or for a token.get reply the subject the request was sent to.
func (v *Verifier) Verify(subject string, signer, signedAt, signature string, payload []byte) error {
	if signer == "" || signedAt == "" || signature == "" {
		return errUnsigned
	}
	kp, ok := v.trusted[signer]
	if !ok {
		return errUntrusted
	}
	if !strings.HasPrefix(signature, schemePrefix) {
		return errBadSignature
	}
	raw, err := base64.RawURLEncoding.DecodeString(signature[len(schemePrefix):])
	if err != nil || len(raw) != 64 {
		return errBadSignature
	}
	millis, err := strconv.ParseInt(signedAt, 10, 64)
	if err != nil || strconv.FormatInt(millis, 10) != signedAt {
		return errBadSignature
	}
	if err := kp.Verify(SignedBytes(subject, signedAt, payload), raw); err != nil {
		return errBadSignature
	}
	// The time is checked after the signature, so a forged time is never taken on trust.
	at := time.UnixMilli(millis)
	now := v.now()
	if now.Sub(at) > v.maxAge {
		return errTooOld
	}
	if at.Sub(now) > maxFutureSkew {
		return errFuture
	}
	return nil
}
