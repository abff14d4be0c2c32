package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"
)

// The repository's signature test vectors, checked by the Node signer and verifier too.
const vectorsFile = "../../libs/contracts/src/signature-vectors.json"

type vector struct {
	Name           string      `json:"name"`
	Subject        string      `json:"subject"`
	Payload        string      `json:"payload"`
	SignedAt       string      `json:"signedAt"`
	SignedBytesHex string      `json:"signedBytesHex"`
	Signature      string      `json:"signature"`
	Signer         string      `json:"signer"`
	NowMs          json.Number `json:"nowMs"`
	Reason         string      `json:"reason"`
}

type vectors struct {
	PublicKey     string   `json:"publicKey"`
	MaxAgeSeconds int      `json:"maxAgeSeconds"`
	Valid         []vector `json:"valid"`
	MustFail      []vector `json:"mustFail"`
	// The same cases as given, to tell a field set to "" from one left out.
	Given []map[string]json.RawMessage `json:"-"`
}

func loadVectors(t *testing.T) vectors {
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatalf("reading %s: %v", vectorsFile, err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("parsing %s: %v", vectorsFile, err)
	}
	var given struct {
		MustFail []map[string]json.RawMessage `json:"mustFail"`
	}
	_ = json.Unmarshal(raw, &given)
	v.Given = given.MustFail
	if len(v.Valid) == 0 || len(v.MustFail) == 0 {
		t.Fatal("no vectors")
	}
	return v
}

func verifierAt(t *testing.T, v vectors, nowMs string) *Verifier {
	ms, err := strconv.ParseInt(nowMs, 10, 64)
	if err != nil {
		t.Fatalf("bad time %q", nowMs)
	}
	verifier, err := NewVerifier([]string{v.PublicKey}, time.Duration(v.MaxAgeSeconds)*time.Second, func() time.Time { return time.UnixMilli(ms) })
	if err != nil {
		t.Fatal(err)
	}
	return verifier
}

func TestValidVectorsVerify(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Valid {
		if got := hex.EncodeToString(SignedBytes(c.Subject, c.SignedAt, []byte(c.Payload))); got != c.SignedBytesHex {
			t.Errorf("%s: signed bytes differ", c.Name)
		}
		if err := verifierAt(t, v, c.SignedAt).Verify(c.Subject, v.PublicKey, c.SignedAt, c.Signature, []byte(c.Payload)); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}

var reasons = map[string]error{
	"bad_signature":      errBadSignature,
	"unsupported_scheme": errBadSignature,
	"untrusted":          errUntrusted,
	"unsigned":           errUnsigned,
	"too_old":            errTooOld,
	"too_new":            errFuture,
}

func TestMustFailVectorsFail(t *testing.T) {
	v := loadVectors(t)
	for i, c := range v.MustFail {
		// Each case is the first valid vector with the fields it names changed.
		base := v.Valid[0]
		subject, payload, signedAt, signature, signer, now := base.Subject, base.Payload, base.SignedAt, base.Signature, v.PublicKey, base.SignedAt
		if c.Subject != "" {
			subject = c.Subject
		}
		if c.Payload != "" {
			payload = c.Payload
		}
		if c.SignedAt != "" {
			signedAt = c.SignedAt
		}
		if c.NowMs != "" {
			now = c.NowMs.String()
		}
		raw := v.Given[i]
		if _, given := raw["signature"]; given {
			signature = c.Signature
		}
		if _, given := raw["signer"]; given {
			signer = c.Signer
		}
		err := verifierAt(t, v, now).Verify(subject, signer, signedAt, signature, []byte(payload))
		want, known := reasons[c.Reason]
		if !known {
			t.Errorf("%s: unknown reason %q", c.Name, c.Reason)
		} else if !errors.Is(err, want) {
			t.Errorf("%s: want %v, got %v", c.Name, want, err)
		}
	}
}
